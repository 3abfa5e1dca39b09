"""One invocation's work on a restore's state, step by step.

A :class:`RestoreRun` is the context every step reads (state, clients, the
pinned storage, the scope, sender and retries, the budget and the progress
ticker, the lease). The steps live in their own modules:

* :mod:`.prepare`: verify each table's files and check (or create) its target;
* then, per table, :attr:`RestoreRun.table_steps` in order: :func:`.clear.clear_step`
  (clear once, when asked), :func:`.write.write_step` (stream the files into
  the writer), :func:`.windows.window_step` (a point-in-time table's windows,
  in order). A step returns False when the table is not done (stopped by the
  budget, or failed), and the table is done when every step returned True;
* :meth:`RestoreRun.conclude`: checkpoint (202) or record the final state.

Building the answer is :mod:`.answer`'s, from what the run recorded.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from ddb_backup.aws import AwsClients
from ddb_backup.errors import DdbBackupError, LeaseLostError
from ddb_backup.incremental import VerifiedWindow
from ddb_backup.log import get_logger
from ddb_backup.restore.answer import RestoreAnswer, summary
from ddb_backup.restore.budget import Budget, ProgressTicker
from ddb_backup.restore.checkpoint import save_checkpoint
from ddb_backup.restore.clear import clear_step
from ddb_backup.restore.lease import TableLeases
from ddb_backup.restore.options import RestoreOptions, RunScope
from ddb_backup.restore.ratelimit import WriteControl
from ddb_backup.restore.state import Outcome, RestoreState, TablePhase, TableState
from ddb_backup.restore.windows import window_step
from ddb_backup.restore.write import write_step
from ddb_backup.restore.writer import BatchWriter, DeadLetterSink, RetryPolicy, default_sender
from ddb_backup.storage import PinnedReads, Storage

__all__ = ["FINAL_PHASES", "RestoreRun", "TableStep"]

log = get_logger("restore")

#: Phases a run does not touch again.
FINAL_PHASES = (TablePhase.DONE, TablePhase.FAILED)

#: ``step(run, table) -> go on?``: one step of a table's restore after verification.
TableStep = Callable[["RestoreRun", TableState], Awaitable[bool]]


class RestoreRun:
    """One invocation's work on a :class:`RestoreState`."""

    def __init__(
        self,
        state: RestoreState,
        *,
        clients: AwsClients,
        storage: Storage,
        scope: RunScope,
        options: RestoreOptions,
        t0: float | None = None,
    ) -> None:
        self.state = state
        self.clients = clients
        # Every read pinned to the object verification read (see PinnedReads).
        self.storage = PinnedReads(storage)
        self.scope = scope
        self.sender = options.sender or default_sender(clients.dynamodb, clients.write_http)
        self.retry = options.retry or RetryPolicy()
        self.files_in_flight = max(1, options.files_in_flight)
        self.budget = Budget(options.deadline_seconds, options.max_batches, t0=t0)
        self.progress = ProgressTicker(self.budget, options.on_progress, options.progress_interval)
        self.progress.rates = self.write_rate
        self._controls: dict[str, WriteControl] = {}
        self.table_steps: tuple[TableStep, ...] = (clear_step, write_step, window_step)
        # Point in time: the windows verified this round, by target table (their
        # winners hold key values: kept in memory only, verified again next round).
        self.verified_windows: dict[str, dict[str, VerifiedWindow]] = {}
        # Data files verified this round whose every line is canonical: read again
        # from the same pin, their lines are sent as they stand (items.CanonicalLine).
        # In memory only: a later round (or a forged checkpoint) cannot claim it.
        self.canonical_files: set[str] = set()

    def control(self, table: str) -> WriteControl:
        """The table's write budget and adaptive concurrency, shared by its clear and writes."""
        control = self._controls.get(table)
        if control is None:
            control = WriteControl(self.scope.max_workers, self.write_budget(table))
            self._controls[table] = control
        return control

    def write_budget(self, table: str) -> int | None:
        """Write units per second this invocation may spend on target ``table``:
        ``max_write_units``, or a shard's share of it (``TableState.write_shards``)."""
        budget = self.scope.max_write_units
        shards = next((t.write_shards for t in self.state.tables if t.target_table == table), 1)
        return budget if budget is None else max(1, budget // shards)

    def write_rate(self, table: str) -> tuple[float | None, int | None]:
        """Write units per second lately (None before any write) and the budget."""
        control = self._controls.get(table)
        rate = round(control.meter.rate(), 1) if control is not None else None
        return rate, self.write_budget(table)

    @property
    def lease(self) -> TableLeases | None:
        return self.budget.lease

    @lease.setter
    def lease(self, leases: TableLeases | None) -> None:
        self.budget.lease = leases

    def batch_writer(self, table: str, dead_letters: DeadLetterSink) -> BatchWriter:
        """The writer every table step sends its batches through."""
        return BatchWriter(
            table,
            self.sender,
            max_workers=self.scope.max_workers,
            retry=self.retry,
            dead_letters=dead_letters,
            control=self.control(table),
        )

    def should_stop(self) -> bool:
        return self.budget.should_stop()

    @property
    def duration(self) -> float:
        return self.state.elapsed_seconds + self.budget.elapsed

    def summary(self, duration: float | None = None) -> RestoreAnswer:
        """The counts so far (no status yet); ``duration`` defaults to the time so far."""
        return summary(
            self.state,
            dry_run=self.scope.dry_run,
            duration=self.duration if duration is None else duration,
            configuration={
                "files_in_flight": self.files_in_flight,
                "max_write_units": self.scope.max_write_units,
                "retry": {
                    "max_attempts": self.retry.max_attempts,
                    "base_delay": self.retry.base_delay,
                    "max_delay": self.retry.max_delay,
                },
            },
        )

    @contextlib.asynccontextmanager
    async def ticking(self) -> AsyncIterator[None]:
        """Progress lines, and the lease renewed, while the block runs."""
        async with self.progress.ticking():
            if self.lease is None:
                yield
            else:
                async with self.lease.renewing():
                    yield

    async def restore_tables(self) -> None:
        """Every verified table through :attr:`table_steps`, until the budget stops it."""
        for ts in self.state.tables:
            if ts.phase in FINAL_PHASES:
                continue
            if self.should_stop():
                break
            await self.restore_table(ts)

    async def restore_table(self, ts: TableState) -> None:
        started = time.monotonic()
        try:
            if self.scope.dry_run:
                ts.phase = TablePhase.DONE
                return
            for step in self.table_steps:
                if not await step(self, ts):
                    return
            ts.phase = TablePhase.DONE
        except DdbBackupError as exc:
            ts.errors.append(str(exc))
        finally:
            ts.duration_seconds += time.monotonic() - started
            done = ts.phase is TablePhase.DONE
            self.progress.report(ts, TablePhase.DONE if done else TablePhase.WRITING)

    def lease_lost(self) -> LeaseLostError | None:
        """Fail what is unfinished once the lease is gone (no resume: the table
        may belong to another restore now)."""
        lost = self.lease.check() if self.lease is not None else None
        if lost is not None:
            for ts in self.state.tables:
                if ts.phase not in FINAL_PHASES:
                    ts.errors.append(str(lost))
                    ts.phase = TablePhase.FAILED
        return lost

    def spend(self) -> float:
        """Add this round's time to the state; the duration before it is added."""
        duration = self.duration
        self.state.elapsed_seconds += self.budget.elapsed
        return duration

    async def conclude(self) -> Outcome:
        """Checkpoint a run the budget stopped; record a final one where a
        checkpoint could still name it. A dry run stores nothing."""
        lost = self.lease_lost()
        st = self.state
        unfinished = [t for t in st.tables if t.phase not in FINAL_PHASES]
        if self.scope.dry_run:
            # A dry run writes nothing anywhere, a checkpoint neither (a fan-out's
            # plan neither: the state machine ends on its answer): one cut short
            # says what it verified and what is left (see answer.run_result).
            pending = [t for t in st.tables if t.phase is TablePhase.PENDING]
            return Outcome(self.duration, unfinished=len(pending))
        if unfinished and self.budget.stopped:
            duration = self.spend()
            token = await save_checkpoint(self.scope.dead_letter_storage, st)
            log.info(
                "restore checkpointed",
                extra={"restore_id": st.restore_id, "round": st.round, "tables": len(unfinished)},
            )
            return Outcome(duration, resume_token=token, unfinished=len(unfinished))
        duration = self.duration
        if st.kind == "shard" or st.round > 1 or self.budget.limited:
            # Mark the checkpoint finished so an old token cannot replay the run
            # (and, for a shard, so that finalize finds its counts).
            st.finished = True
            self.spend()
            await save_checkpoint(self.scope.dead_letter_storage, st)
        return Outcome(duration, lost=lost)
