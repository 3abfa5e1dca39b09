"""The scheduled incremental run: each table's next windows, exported, verified, chained.

Per configured table (in parallel, ``config.concurrency`` at a time)::

    DescribeTable + DescribeContinuousBackups + the newest chain (read once per
    round, kept in memory after) -> the chain to extend (chains.py:
        breaks detected and recorded, a new chain from the newest full backup;
        daily, once a newer full backup exists and the chain has reached it,
        the next chain starts from it and the old one is marked superseded)
    loop:  head = end of the chain's last window (or its full backup's ExportTime)
        window state at <prefix>/incremental/<table>/runs/<chain>/<head>.json?
            yes -> resume it (same window, same export)
            no  -> plan_next_window(head, now - EXPORT_LAG, interval): not due -> done
                   claim the state (conditional create) with the STARTING lease
        PENDING -> STARTING -> IN_PROGRESS -> EXPORTED -> COMPLETED | FAILED
            ExportTableToPointInTime(INCREMENTAL_EXPORT, [from, to), NEW_AND_OLD_IMAGES,
            ClientToken from table and window), DescribeExport until done, then every
            file and line verified (verify_incremental_folder) with the times AWS reports
        COMPLETED -> appended to the chain; the next window if due (catch-up: up to
                     24 h each, in order), or the roll to the next chain
        FAILED    -> the chain's break is recorded; the next run starts a new chain
        deadline  -> state saved, 202; the next invocation resumes

The state is kept by the same :class:`~ddb_backup.backup.state.RunStateStore`
and the exports started and polled by the same
:class:`~ddb_backup.backup.exports.Exporter` as the daily run. Nothing here
deletes anything: a window is kept as long as the full backup it builds on
(the bucket's lifecycle rule; see docs/backup.md).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field

from ddb_backup.aws import AwsClients
from ddb_backup.backup.answer import (
    IncrementalResult,
    WindowTableBody,
    incremental_result,
)
from ddb_backup.backup.chains import current_chain, record_window_failure
from ddb_backup.backup.polling import Deadline, Polling, poll_until
from ddb_backup.backup.run import backup_storage
from ddb_backup.backup.state import FINAL_STATUSES, NOT_STARTED, RunStateStore
from ddb_backup.backup.window_export import (
    WindowExporter,
    WindowRun,
    WindowState,
    new_window_state,
    verify_window,
    window_store,
)
from ddb_backup.catalog import list_backups
from ddb_backup.chain import (
    Chain,
    ChainProblem,
    append_window,
    newest_chain,
    plan_next_window,
)
from ddb_backup.concurrency import run_workers
from ddb_backup.config import IncrementalConfig
from ddb_backup.errors import DdbBackupError
from ddb_backup.export import (
    PitrTable,
    describe_pitr_table,
)
from ddb_backup.log import get_logger
from ddb_backup.manifest import BackupManifest, TableStatus
from ddb_backup.storage import S3Storage

__all__ = ["EXPORT_LAG", "run_incremental_backup"]

log = get_logger(__name__)

#: A window ends at least this long before now (and never after PITR's
#: LatestRestorableDateTime): what DynamoDB has surely made exportable.
EXPORT_LAG = dt.timedelta(minutes=5)


@dataclass
class _Catalog:
    """The daily backups' manifests, read once per round for every table."""

    storage: S3Storage
    prefix: str
    _manifests: list[BackupManifest] | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def manifests(self) -> list[BackupManifest]:
        async with self._lock:
            if self._manifests is None:
                entries = await list_backups(self.storage, self.prefix)
                self._manifests = [e.manifest for e in entries if e.manifest is not None]
            return self._manifests


@dataclass
class _TableWindows:
    """One table's part of a round: the windows it exports, verifies and chains."""

    config: IncrementalConfig
    clients: AwsClients
    storage: S3Storage
    deadline: Deadline
    polling: Polling
    now: dt.datetime
    name: str
    catalog: _Catalog
    body: WindowTableBody = field(init=False)

    def __post_init__(self) -> None:
        self.body = {
            "table_name": self.name,
            "status": TableStatus.PENDING.value,
            "chain_id": None,
            "window_from": None,
            "window_to": None,
            "export_arn": None,
            "windows_verified": 0,
            "puts": 0,
            "deletes": 0,
            "chain_head": None,
            "chain_lag_seconds": None,
            "breaks": [],
            "superseded_chain_id": None,
            "error": None,
            "message": None,
        }

    async def run(self) -> WindowTableBody:
        try:
            await self._run()
        except DdbBackupError as exc:
            log.error(
                "incremental window failed",
                extra={"table": self.name, "error": str(exc), "error_type": type(exc).__name__},
            )
            self.body["status"] = TableStatus.FAILED.value
            self.body["error"] = str(exc)
        return self.body

    async def _run(self) -> None:
        live = await describe_pitr_table(self.clients.dynamodb, self.name)
        safe_until = self.now - EXPORT_LAG
        if live.latest_restorable is not None:
            safe_until = min(safe_until, live.latest_restorable)
        # Read once per round; kept up to date here (windows appended, the break
        # recorded), not read again when the chain is looked for once more.
        newest: Chain | None = await newest_chain(self.storage, self.config.prefix, self.name)
        # Looked for again after a window fails (the chain broke: a new one) and
        # after a chain reaches a newer full backup (it rolls to the next chain).
        for _ in range(3):
            choice = await current_chain(
                self.storage,
                self.config.prefix,
                self.config.environment,
                live,
                newest,
                now=self.now,
                manifests=self.catalog.manifests,
                busy=self._busy,
            )
            self._breaks(choice.breaks)
            if choice.superseded is not None:
                self.body["superseded_chain_id"] = choice.superseded
            if choice.chain is None:
                self.body["message"] = choice.waiting
                return
            newest = await self._extend(choice.chain, live, safe_until, roll_at=choice.roll_at)
            if newest is None:
                return

    async def _busy(self, chain: Chain) -> bool:
        """A window of ``chain`` is in flight (or finished, not yet chained) at its head."""
        return await window_store(self.storage, self.config, self.name, chain).load() is not None

    async def _extend(
        self, chain: Chain, live: PitrTable, safe_until: dt.datetime, *, roll_at: dt.datetime | None
    ) -> Chain | None:
        """Export, verify and append the chain's due windows; the chain as it now
        is to look for the next one from (a window failed: broken, or it reached
        ``roll_at``), None when the round is done for the table."""
        self._head(chain)
        first = True  # the first due window is started even with no time left (202)
        while first or self.deadline.time_left():
            first = False
            store = window_store(self.storage, self.config, self.name, chain)
            state = await store.load()
            if state is None:
                if roll_at is not None and chain.head >= roll_at:
                    return chain  # the next chain takes over from here
                planned = plan_next_window(
                    chain.head, safe_until=safe_until, interval_minutes=self.config.interval_minutes
                )
                if planned is None:
                    break  # up to date as far as due
                state = new_window_state(self.config, self.name, chain, planned, live.arn, self.now)
                store.take_lease(state)
                if (existing := await store.claim(state)) is not None:
                    self._working_elsewhere(existing.window)
                    return None
            else:
                state.invocations += 1
                if state.window.status in NOT_STARTED and store.leased(state):
                    self._working_elsewhere(state.window)
                    return None
            w = state.window
            await self._drive(store, state, live.key_types)
            self._show(w)
            if w.status is TableStatus.FAILED:
                return await self._break(chain, w)
            if w.status is not TableStatus.COMPLETED or w.verified is None:
                self.body["status"] = TableStatus.IN_PROGRESS.value
                return None
            chain = await append_window(self.storage, self.config.prefix, chain, w.verified)
            self._head(chain)
            self.body["windows_verified"] += 1
            self.body["puts"] += w.verified.puts
            self.body["deletes"] += w.verified.deletes
        self.body["status"] = TableStatus.COMPLETED.value
        return None

    async def _break(self, chain: Chain, w: WindowRun) -> Chain:
        """A failed window ends its chain: the break is recorded (once) and
        reported; returns the chain as broken."""
        self.body["status"] = TableStatus.FAILED.value
        self.body["error"] = w.error
        broken, problem = await record_window_failure(
            self.storage,
            self.config.prefix,
            chain,
            f"window [{w.export_from.isoformat()}, {w.export_to.isoformat()}) failed: {w.error}",
            now=self.now,
        )
        if problem is not None:
            self._breaks([(chain.chain_id, problem)])
        return broken

    def _breaks(self, breaks: list[tuple[str, ChainProblem]]) -> None:
        self.body["breaks"] += [
            {"chain_id": cid, "reason": p.reason.value, "detail": p.detail, "at": p.at.isoformat()}
            for cid, p in breaks
        ]

    async def _drive(
        self, store: RunStateStore[WindowState], state: WindowState, keys: dict[str, str]
    ) -> None:
        """Start (state saved before and after), poll and verify until final or the deadline."""
        w = state.window
        exporter = WindowExporter(self.config, self.clients, self.now.date(), w.export_to)
        if w.status is TableStatus.STARTING:
            exporter.unconfirmed.add(w.table_name)  # its start may have reached AWS
        if w.status in NOT_STARTED:
            w.status = TableStatus.STARTING
            store.take_lease(state)
            await store.save(state)
            await exporter.start(w)
            state.starting_until = None
            await store.save(state)

        async def step() -> tuple[bool, bool]:
            before = w.status
            if w.status is TableStatus.IN_PROGRESS and self.deadline.time_left():
                await exporter.poll(w)
            if w.status is TableStatus.EXPORTED and self.deadline.time_left():
                try:
                    async with asyncio.timeout(self.deadline.remaining()):
                        await verify_window(
                            self.storage,
                            w,
                            key_types=keys,
                            concurrency=self.config.verify_concurrency,
                        )
                except TimeoutError:
                    log.warning(
                        "deadline reached verifying a window", extra={"table": w.table_name}
                    )
            waiting = w.status in (TableStatus.IN_PROGRESS, TableStatus.EXPORTED)
            return before != w.status, waiting

        if w.status not in FINAL_STATUSES:
            await poll_until(
                step, save=lambda: store.save(state), deadline=self.deadline, polling=self.polling
            )
            await store.save(state)

    def _head(self, chain: Chain) -> None:
        self.body["chain_id"] = chain.chain_id
        self.body["chain_head"] = chain.head.isoformat()
        self.body["chain_lag_seconds"] = round((self.now - chain.head).total_seconds(), 3)

    def _show(self, w: WindowRun) -> None:
        self.body["window_from"] = w.export_from.isoformat()
        self.body["window_to"] = w.export_to.isoformat()
        self.body["export_arn"] = w.export_arn

    def _working_elsewhere(self, w: WindowRun) -> None:
        self._show(w)
        self.body["status"] = TableStatus.IN_PROGRESS.value
        self.body["message"] = "another invocation is starting this window; nothing was started"


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


async def run_incremental_backup(
    config: IncrementalConfig,
    clients: AwsClients,
    *,
    deadline_seconds: float | None = None,
    now: dt.datetime | None = None,
    polling: Polling | None = None,
) -> IncrementalResult:
    """Export, verify and chain every table's due windows (one scheduled round).

    ``now`` (default: the current time) decides which windows are due and the
    chain lag reported. ``deadline_seconds``: how long this call may work;
    windows still running then are resumed by the next call (202).
    """
    checked_at = _utc(now or dt.datetime.now(dt.UTC))
    storage = backup_storage(config, clients)
    deadline = Deadline.after(deadline_seconds)
    catalog = _Catalog(storage, config.prefix)

    async def one(name: str) -> WindowTableBody:
        table = _TableWindows(
            config, clients, storage, deadline, polling or Polling(), checked_at, name, catalog
        )
        return await table.run()

    results = await run_workers(list(config.tables), one, concurrency=config.concurrency)
    result = incremental_result(
        results,
        environment=config.environment,
        bucket=config.bucket,
        prefix=config.prefix,
        interval_minutes=config.interval_minutes,
        checked_at=checked_at,
    )
    body = result.body
    log.info(
        "incremental round",
        extra={
            "status": body["status"],
            "windows_verified": body["windows_verified"],
            "chain_breaks": body["chain_breaks"],
            "failed_tables": body["failed_tables"],
            "max_chain_lag_seconds": body["max_chain_lag_seconds"],
        },
    )
    return result
