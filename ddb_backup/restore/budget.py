"""How long a run may work, and what it says about its progress meanwhile.

:class:`Budget` answers "stop taking new work?": once the deadline (or the
batch budget) is reached, but never before some work was done (every round
makes progress, however short its deadline), and at once when the table
lease was lost. :class:`ProgressTicker` logs a progress line per table phase
and every ``interval`` seconds, and hands the same snapshot to
``on_progress``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from ddb_backup.concurrency import in_background
from ddb_backup.log import get_logger
from ddb_backup.restore.lease import TableLeases
from ddb_backup.restore.options import ProgressCallback
from ddb_backup.restore.state import TablePhase, TableProgress, TableState

__all__ = ["Budget", "ProgressTicker"]

log = get_logger("restore")


class Budget:
    """The time and work budget of one invocation."""

    def __init__(
        self, deadline_seconds: float | None, max_batches: int | None, *, t0: float | None = None
    ) -> None:
        self.t0 = time.monotonic() if t0 is None else t0
        self.deadline = deadline_seconds
        self.max_batches = max_batches
        self.work_units = 0  # verified tables + submitted batches + scan pages this round
        self.batches = 0
        self.stopped = False
        self.lease: TableLeases | None = None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    @property
    def limited(self) -> bool:
        """True when this invocation runs under a deadline or batch budget."""
        return self.deadline is not None or self.max_batches is not None

    def should_stop(self) -> bool:
        """True once the deadline (or batch budget) is reached; always after some work."""
        if self.stopped:
            return True
        if self.lease is not None and self.lease.check() is not None:
            self.stopped = True  # another restore may own the table now: write no more
            return True
        if self.work_units == 0:
            return False  # every round makes progress, however short its deadline
        if self.deadline is not None and self.elapsed >= self.deadline:
            self.stopped = True
        if self.max_batches is not None and self.batches >= self.max_batches:
            self.stopped = True
        return self.stopped


class ProgressTicker:
    """Progress lines (names and counts only) and the ``on_progress`` callback."""

    def __init__(
        self, budget: Budget, on_progress: ProgressCallback | None, interval: float
    ) -> None:
        self._budget = budget
        self._on_progress = on_progress
        self._interval = interval
        self._current: tuple[TableState, TablePhase] | None = None
        #: ``rates(table) -> (write units per second lately, budget)``, set by the run.
        self.rates: Callable[[str], tuple[float | None, int | None]] | None = None

    def phase(self, ts: TableState, phase: TablePhase) -> None:
        """``ts`` enters ``phase``: report it now and on every tick."""
        self._current = (ts, phase)
        self.report(ts, phase)

    def report(self, ts: TableState, phase: TablePhase) -> None:
        elapsed = self._budget.elapsed
        rate = self.rates(ts.target_table) if self.rates is not None else (None, None)
        snap = TableProgress.of(ts, phase, elapsed, rate)
        log.info(
            "restore progress",
            extra={
                "table": ts.target_table,
                "phase": phase.value,
                "items_written": ts.items_written,
                "items_expected": ts.items_expected,
                "items_failed": ts.items_failed,
                "items_cleared": ts.items_cleared,
                "files_done": snap.files_done,
                "files_total": snap.files_total,
                "elapsed_seconds": round(elapsed, 1),
                "items_per_second": round(ts.items_written / elapsed, 1) if elapsed > 0 else 0.0,
                "write_units_per_second": snap.write_units_per_second,
                "max_write_units": snap.max_write_units,
            },
        )
        if self._on_progress is not None:
            self._on_progress(snap)

    def ticking(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Report the current phase every ``interval`` seconds while the block runs."""
        return in_background(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            if self._current is not None:
                self.report(*self._current)
