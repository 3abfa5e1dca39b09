"""The next window to export (boundaries, AWS's bounds) and its export's client token (pure)."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from ddb_backup.chain.model import time_stamp
from ddb_backup.errors import ConfigError

#: AWS's bounds on one incremental export's window.
MIN_WINDOW = dt.timedelta(minutes=15)
MAX_WINDOW = dt.timedelta(hours=24)
#: INCREMENTAL_INTERVAL_MINUTES bounds.
MIN_INTERVAL_MINUTES = 15
MAX_INTERVAL_MINUTES = 1440

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def check_interval(minutes: int) -> int:
    """INCREMENTAL_INTERVAL_MINUTES: 15 to 1440 (AWS's window bounds)."""
    if not MIN_INTERVAL_MINUTES <= minutes <= MAX_INTERVAL_MINUTES:
        raise ConfigError(
            f"INCREMENTAL_INTERVAL_MINUTES must be {MIN_INTERVAL_MINUTES} to "
            f"{MAX_INTERVAL_MINUTES}, not {minutes}"
        )
    return minutes


def floor_boundary(when: dt.datetime, interval_minutes: int) -> dt.datetime:
    """The last window boundary at or before ``when``: multiples of the interval
    since the epoch (so UTC midnight is one whenever the interval divides a day)."""
    step = dt.timedelta(minutes=check_interval(interval_minutes))
    return _EPOCH + ((when - _EPOCH) // step) * step


@dataclass(frozen=True, slots=True)
class PlannedWindow:
    export_from: dt.datetime
    export_to: dt.datetime


def plan_next_window(
    head: dt.datetime, *, safe_until: dt.datetime, interval_minutes: int
) -> PlannedWindow | None:
    """The next window to export, or ``None`` while it is not due (pure).

    ``head``: the end of the chain's last window, or the full backup's
    ``ExportTime`` for a new chain. ``safe_until``: the latest time whose data
    is surely exportable, e.g. ``min(now - a few minutes,
    LatestRestorableDateTime)``. The window ends at the last boundary at or
    before ``safe_until``, at most 24 hours after ``head`` (a chain that fell
    behind catches up one such window per call, in order) and at least
    15 minutes after it (AWS's bounds).
    """
    to = floor_boundary(min(safe_until, head + MAX_WINDOW), interval_minutes)
    if to - head < MIN_WINDOW:
        return None
    return PlannedWindow(head, to)


def incremental_client_token(bucket: str, prefix: str, table: str, window: PlannedWindow) -> str:
    """ClientToken of one window's export (64 hex characters, no ``$``):
    a retried invocation gets the same export back instead of a second one."""
    material = "\n".join(
        (
            "ddb-backup/incremental/v1",
            bucket,
            prefix.strip("/"),
            table,
            time_stamp(window.export_from),
            time_stamp(window.export_to),
        )
    )
    return hashlib.sha256(material.encode()).hexdigest()
