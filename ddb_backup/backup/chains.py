"""Which chain a table's next window extends: breaks detected, new chains started.

The newest chain of a table (:func:`ddb_backup.chain.newest_chain`) is checked
against the table as it is now (:func:`ddb_backup.chain.detect_break`: table
id, PITR status, ``EarliestRestorableDateTime``). A break seen for the first
time is recorded (``break.json``, append-only) and reported once. A broken
or absent chain is replaced by a new one that starts at the newest verified
full backup that can carry it: of this table (taken after it was created),
inside the PITR range (an incremental export cannot start before
``EarliestRestorableDateTime``) and newer than the broken chain's base (a
chain is named after its base). Without one, nothing is invented: the table
waits for the next daily backup.

A sound chain rolls daily: once a newer such full backup exists and the chain
has reached its export time with no window in flight, a new chain starts from
it and the old one is marked superseded (``superseded.json``; not a break,
logged at info). A chain thus spans about a day past its base, and every
object of it is younger than that base, so the bucket's age-based lifecycle
rule never expires a base before the windows built on it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from ddb_backup.chain import (
    BreakReason,
    Chain,
    ChainBreak,
    ChainProblem,
    ChainStart,
    ChainSuperseded,
    FullBackupPoint,
    chain_id_for,
    detect_break,
    full_backup_points,
    newest_chain,
    record_break,
    record_superseded,
    start_chain,
)
from ddb_backup.export import PitrTable
from ddb_backup.log import get_logger
from ddb_backup.manifest import BackupManifest
from ddb_backup.storage import S3Storage

__all__ = ["ChainChoice", "current_chain", "record_window_failure"]

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ChainChoice:
    """The chain to extend (None: none possible yet, ``waiting`` says why), and
    the breaks detected by this call (each reported once, when first seen).

    ``roll_at``: a newer full backup exists; extend the chain only until its
    head reaches this time (and the window in flight is finished), then ask
    again: the next chain starts. ``superseded``: the chain this call ended by
    starting ``chain`` from a newer full backup.
    """

    chain: Chain | None
    breaks: list[tuple[str, ChainProblem]] = field(default_factory=list)
    waiting: str | None = None
    roll_at: dt.datetime | None = None
    superseded: str | None = None


def _millis(when: dt.datetime) -> dt.datetime:
    """A full backup's export time, down to the millisecond: AWS reports a window's
    times in milliseconds, and a window that starts a little before the backup only
    writes final images the backup already has."""
    when = when.astimezone(dt.UTC)
    return when.replace(microsecond=when.microsecond // 1000 * 1000)


async def current_chain(
    storage: S3Storage,
    prefix: str,
    environment: str,
    live: PitrTable,
    newest: Chain | None,
    *,
    now: dt.datetime,
    manifests: Callable[[], Awaitable[list[BackupManifest]]],
    busy: Callable[[Chain], Awaitable[bool]],
) -> ChainChoice:
    """The chain the table's next window extends, starting one if needed.

    ``newest``: the table's newest chain (:func:`ddb_backup.chain.newest_chain`,
    read once per round by the caller, then kept up to date in memory: the
    windows it appended, the break it recorded); ``manifests``: the catalog's
    manifests (loaded once per round by the caller); ``busy``: whether a window
    of a chain is in flight at its head.
    """
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
            return await _roll_if_due(
                storage, prefix, environment, live, newest, now=now, manifests=manifests, busy=busy
            )
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
    base = _newest_base(await manifests(), environment, live, newest)
    if base is None:
        after = f" newer than {newest.start.base_export_time.isoformat()}" if newest else ""
        return ChainChoice(
            None,
            breaks,
            f"no verified full backup{after} to start a chain from (inside the PITR range, "
            "after the table was created); the daily backup makes one",
        )
    return ChainChoice(await _start(storage, prefix, live, base, now), breaks)


async def _roll_if_due(
    storage: S3Storage,
    prefix: str,
    environment: str,
    live: PitrTable,
    chain: Chain,
    *,
    now: dt.datetime,
    manifests: Callable[[], Awaitable[list[BackupManifest]]],
    busy: Callable[[Chain], Awaitable[bool]],
) -> ChainChoice:
    """A sound chain, or the next one once a newer full backup exists.

    The roll waits until the chain has reached the newer backup's export time
    (a chain that fell behind first catches up, so no restore point between
    them is lost) and has no window in flight (it is finished, not abandoned).
    """
    if not chain.windows:
        await _mark_previous(storage, prefix, chain, now)
    base = _newest_base(await manifests(), environment, live, chain)
    if base is None:
        return ChainChoice(chain)
    roll_at = _millis(base.export_time)
    if chain.head < roll_at or await busy(chain):
        return ChainChoice(chain, roll_at=roll_at)
    new = await _start(storage, prefix, live, base, now)
    await _supersede(storage, prefix, chain, new, now)
    return ChainChoice(new, superseded=chain.chain_id)


async def _start(
    storage: S3Storage, prefix: str, live: PitrTable, base: FullBackupPoint, now: dt.datetime
) -> Chain:
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
    return Chain(start, [])


async def _supersede(
    storage: S3Storage, prefix: str, old: Chain, new: Chain, now: dt.datetime
) -> None:
    """Mark ``old`` as ended by ``new`` (not a break: info, not error)."""
    record = ChainSuperseded(
        table=old.start.table,
        chain_id=old.chain_id,
        superseded_by=new.chain_id,
        new_base_backup_date=new.start.base_backup_date,
        new_base_export_time=new.start.base_export_time,
        head=old.head,
        recorded_at=now,
    )
    if await record_superseded(storage, prefix, record):
        log.info(
            "incremental chain superseded",
            extra={
                "table": old.start.table,
                "chain_id": old.chain_id,
                "superseded_by": new.chain_id,
                "head": old.head.isoformat(),
            },
        )


async def _mark_previous(storage: S3Storage, prefix: str, chain: Chain, now: dt.datetime) -> None:
    """A roll cut short between its two writes (new ``chain.json``, then the old
    chain's ``superseded.json``) is completed while the new chain has no window."""
    previous = await newest_chain(storage, prefix, chain.start.table, before=chain.chain_id)
    if (
        previous is not None
        and previous.broken is None
        and previous.superseded is None
        and not previous.problems
        and previous.head >= chain.start.base_export_time
    ):
        await _supersede(storage, prefix, previous, chain, now)


def _newest_base(
    manifests: list[BackupManifest], environment: str, live: PitrTable, after: Chain | None
) -> FullBackupPoint | None:
    """The newest full backup of the table that can start a chain: of this
    environment, inside the PITR range, after the table was created, and newer
    than the base of chain ``after``."""
    floor = max(
        (t for t in (live.earliest_restorable, live.created) if t is not None),
        default=None,
    )
    usable = [
        p
        for p in full_backup_points(
            (m for m in manifests if m.environment == environment), live.name
        )
        if (floor is None or _millis(p.export_time) >= floor)
        and (after is None or _millis(p.export_time) > after.start.base_export_time)
    ]
    return usable[-1] if usable else None


async def record_window_failure(
    storage: S3Storage, prefix: str, chain: Chain, detail: str, *, now: dt.datetime
) -> tuple[Chain, ChainProblem | None]:
    """A failed window ends its chain at the head: the break is recorded once.

    Returns the chain as broken (what reading it back would give, unless an
    earlier call recorded another break: broken all the same) and the problem
    to report, or None if an earlier call recorded it."""
    problem = ChainProblem(BreakReason.WINDOW_FAILED, chain.head, detail)
    brk = ChainBreak(
        table=chain.start.table,
        chain_id=chain.chain_id,
        reason=problem.reason,
        detail=problem.detail,
        head=problem.at,
        detected_at=now,
    )
    recorded = await record_break(storage, prefix, brk)
    return replace(chain, broken=chain.broken or brk), problem if recorded else None
