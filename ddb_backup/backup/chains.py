"""Which chain a table's next window extends: breaks detected, new chains started.

The newest chain of a table (:func:`ddb_backup.chain.list_chains`) is checked
against the table as it is now (:func:`ddb_backup.chain.detect_break`: table
id, PITR status, ``EarliestRestorableDateTime``). A break seen for the first
time is recorded (``break.json``, append-only) and reported once. A broken
or absent chain is replaced by a new one that starts at the newest verified
full backup that can carry it: of this table (taken after it was created),
inside the PITR range (an incremental export cannot start before
``EarliestRestorableDateTime``) and newer than the broken chain's base (a
chain is named after its base). Without one, nothing is invented: the table
waits for the next daily backup.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from ddb_backup.catalog import list_backups
from ddb_backup.chain import (
    Chain,
    ChainBreak,
    ChainProblem,
    ChainStart,
    FullBackupPoint,
    chain_id_for,
    detect_break,
    full_backup_points,
    list_chains,
    record_break,
    start_chain,
)
from ddb_backup.export import PitrTable
from ddb_backup.log import get_logger
from ddb_backup.storage import S3Storage

__all__ = ["ChainChoice", "current_chain"]

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ChainChoice:
    """The chain to extend (None: none possible yet, ``waiting`` says why), and
    the breaks detected by this call (each reported once, when first seen)."""

    chain: Chain | None
    breaks: list[tuple[str, ChainProblem]] = field(default_factory=list)
    waiting: str | None = None


def _millis(when: dt.datetime) -> dt.datetime:
    """A full backup's export time, down to the millisecond: AWS reports a window's
    times in milliseconds, and a window that starts a little before the backup only
    writes final images the backup already has."""
    when = when.astimezone(dt.UTC)
    return when.replace(microsecond=when.microsecond // 1000 * 1000)


async def current_chain(
    storage: S3Storage, prefix: str, environment: str, live: PitrTable, *, now: dt.datetime
) -> ChainChoice:
    """The chain the table's next window extends, starting one if needed."""
    chains = await list_chains(storage, prefix, live.name)
    newest = chains[-1] if chains else None
    breaks: list[tuple[str, ChainProblem]] = []
    if newest is not None:
        problem = detect_break(
            newest,
            table_arn=live.arn,
            table_id=live.table_id,
            pitr_enabled=live.pitr_enabled,
            earliest_restorable=live.earliest_restorable,
        )
        if problem is None:
            return ChainChoice(newest)
        if newest.broken is None:
            brk = ChainBreak(
                table=live.name,
                chain_id=newest.chain_id,
                reason=problem.reason,
                detail=problem.detail,
                head=problem.at,
                detected_at=now,
            )
            if await record_break(storage, prefix, brk):
                breaks.append((newest.chain_id, problem))
                log.error(
                    "incremental chain broken",
                    extra={
                        "table": live.name,
                        "chain_id": newest.chain_id,
                        "reason": problem.reason.value,
                        "detail": problem.detail,
                    },
                )
    if not live.pitr_enabled:
        return ChainChoice(None, breaks, "point-in-time recovery is off; no window can be exported")
    base = await _newest_base(storage, prefix, environment, live, newest)
    if base is None:
        after = f" newer than {newest.start.base_export_time.isoformat()}" if newest else ""
        return ChainChoice(
            None,
            breaks,
            f"no verified full backup{after} to start a chain from (inside the PITR range, "
            "after the table was created); the daily backup makes one",
        )
    start = ChainStart(
        table=live.name,
        chain_id=chain_id_for(_millis(base.export_time)),
        table_arn=live.arn,
        table_id=live.table_id,
        base_backup_date=base.backup_date,
        base_export_time=_millis(base.export_time),
        started_at=now,
    )
    await start_chain(storage, prefix, start)
    log.info(
        "incremental chain started",
        extra={
            "table": live.name,
            "chain_id": start.chain_id,
            "base_backup_date": base.backup_date.isoformat(),
        },
    )
    return ChainChoice(Chain(start, []), breaks)


async def _newest_base(
    storage: S3Storage, prefix: str, environment: str, live: PitrTable, broken: Chain | None
) -> FullBackupPoint | None:
    manifests = [
        e.manifest
        for e in await list_backups(storage, prefix)
        if e.manifest is not None and e.manifest.environment == environment
    ]
    floor = max(
        (t for t in (live.earliest_restorable, live.created) if t is not None),
        default=None,
    )
    usable = [
        p
        for p in full_backup_points(manifests, live.name)
        if (floor is None or _millis(p.export_time) >= floor)
        and (broken is None or _millis(p.export_time) > broken.start.base_export_time)
    ]
    return usable[-1] if usable else None
