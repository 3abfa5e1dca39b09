"""Which full backup and which windows bring a table to a point in time, verified.

:func:`plan_point_in_time` reads the catalog of daily backups and the
table's chains (S3 only) and picks, with
:func:`ddb_backup.chain.resolve_restore_point`, the full backup and the
contiguous verified windows after it that reach the last boundary at or
before the time asked. It refuses, naming what is missing, when there is no
full backup before the time, or when the windows cannot reach the time
because of a gap, an overlap or a break in the chain; a chain that simply
has not exported that far yet is not an error (``behind_asked`` says how far).

:func:`verify_point_in_time` then reads every window back (MD5s, counts,
every change record, same table) before anything is written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from ddb_backup.catalog import list_backups
from ddb_backup.chain import (
    Chain,
    ChainWindow,
    RestorePoint,
    full_backup_points,
    list_chains,
    resolve_restore_point,
)
from ddb_backup.errors import BackupNotFoundError, ChainError, ManifestError
from ddb_backup.incremental import VerifiedWindow, verify_incremental_folder
from ddb_backup.keys import check_table_name
from ddb_backup.manifest import BackupManifest, TableBackup
from ddb_backup.restore.point_answer import PointInTimeAnswer, WindowAnswer, WindowCounts
from ddb_backup.storage import Storage

__all__ = ["PointInTimePlan", "plan_point_in_time", "verify_point_in_time", "verify_windows"]

RestoreTo = dt.datetime | Literal["latest"]


@dataclass(frozen=True, slots=True)
class PointInTimePlan:
    """A full backup of ``table`` and the windows applied after it, in order."""

    table: str
    point: RestorePoint
    manifest: BackupManifest  # the daily backup holding the full export
    chain: Chain | None  # the chain the windows come from (None: no window)

    @property
    def backup(self) -> TableBackup:
        tb = self.manifest.table(self.table)
        assert tb is not None  # full_backup_points only lists backups holding the table
        return tb

    @property
    def windows(self) -> list[ChainWindow]:
        return self.point.windows

    @property
    def restored_to(self) -> dt.datetime:
        return self.point.restored_to

    def answer(self) -> PointInTimeAnswer:
        """The response fields, windows with the counts verification made (a dry run's)."""
        return PointInTimeAnswer(
            restored_to=self.restored_to,
            asked=self.point.asked,
            behind_asked_seconds=self.point.behind_asked.total_seconds(),
            full_backup_date=self.point.full.backup_date,
            full_export_time=self.point.full.export_time,
            chain_id=self.point.chain_id,
            windows=[WindowAnswer.of(w, WindowCounts.verified(w)) for w in self.windows],
        ).add_totals()


def _check_reach(table: str, point: RestorePoint, chains: list[Chain], asked: dt.datetime) -> None:
    """Refuse when the windows cannot reach the last boundary before ``asked``.

    A verified window ending after the point reached and by ``asked`` that
    cannot be applied means a gap, an overlap or another table id in between;
    a recorded break after the point reached means nothing later will come.
    A chain that has simply not exported that far yet is no error.
    """
    reached = point.restored_to
    where = (
        f"cannot restore {table} to {asked.isoformat()} (the nearest restorable point "
        f"before it is {reached.isoformat()})"
    )
    beyond = [w for c in chains for w in c.windows if reached < w.export_to_time <= asked]
    if beyond:
        found = [(c.chain_id, p) for c in chains for p in c.problems if reached <= p.at < asked]
        if found:
            chain_id, problem = min(found, key=lambda f: f[1].at)
            raise ChainError(f"{where}: chain {chain_id}: {problem.detail}", table=table)
        nxt = min(w.export_from_time for w in beyond)
        detail = (
            f"gap: no verified window covers [{reached.isoformat()}, {nxt.isoformat()})"
            if nxt > reached
            else "the later windows do not continue from it"
        )
        raise ChainError(f"{where}: {detail}", table=table)
    for c in chains:
        b = c.broken
        if b is not None and reached <= b.head < asked:
            raise ChainError(
                f"{where}: chain {c.chain_id} is broken at {b.head.isoformat()} "
                f"({b.reason}: {b.detail}); a new chain starts at the next full backup",
                table=table,
            )


async def plan_point_in_time(
    storage: Storage, prefix: str, table: str, restore_to: RestoreTo
) -> PointInTimePlan:
    """The plan restoring ``table`` as of ``restore_to`` (see the module docstring).

    Raises :class:`BackupNotFoundError` (no completed full backup recording
    its export time at or before the time) or :class:`ChainError` (a gap, an
    overlap, another table id or a recorded break between the reachable
    boundary and the time asked), naming what is missing.
    """
    check_table_name(table)
    if isinstance(restore_to, dt.datetime) and restore_to.tzinfo is None:
        raise ValueError("naive datetime: restore_to must carry its time zone")
    manifests = [e.manifest for e in await list_backups(storage, prefix) if e.manifest]
    fulls = full_backup_points(manifests, table)
    if restore_to != "latest":
        fulls_before = [f for f in fulls if f.export_time <= restore_to]
        if not fulls_before:
            oldest = f" (the oldest is of {fulls[0].export_time.isoformat()})" if fulls else ""
            raise BackupNotFoundError(
                f"no verified full backup of {table} at or before {restore_to.isoformat()}{oldest}"
            )
    elif not fulls:
        raise BackupNotFoundError(f"no verified full backup of {table} records its export time")
    chains = await list_chains(storage, prefix, table)
    point = resolve_restore_point(fulls, chains, restore_to)
    if restore_to != "latest":
        _check_reach(table, point, chains, restore_to)
    manifest = next(m for m in manifests if m.backup_date == point.full.backup_date)
    chain = next((c for c in chains if c.chain_id == point.chain_id), None)
    return PointInTimePlan(table, point, manifest, chain)


def _check_order(table: str, head: dt.datetime, windows: Sequence[ChainWindow]) -> None:
    """The windows start with the one holding the full backup's export time
    (``head``), and each next starts where the previous ended (checked again
    before any write)."""
    for i, w in enumerate(windows):
        ok = w.export_from_time <= head < w.export_to_time if i == 0 else w.export_from_time == head
        if not ok:
            raise ChainError(
                f"window {w.folder} [{w.export_from_time.isoformat()}, "
                f"{w.export_to_time.isoformat()}) does not continue from {head.isoformat()}",
                table=table,
            )
        head = w.export_to_time


async def verify_point_in_time(
    storage: Storage,
    plan: PointInTimePlan,
    *,
    key_types: Mapping[str, str],
    table_arn: str | None = None,
    table_id: str | None = None,
    concurrency: int = 4,
    skip: frozenset[str] = frozenset(),
) -> list[VerifiedWindow]:
    """Read every window of ``plan`` back before anything is written.

    Each window: its folder verified like a full export (MD5s, counts, every
    change record inside the window, ``Keys`` exactly ``key_types``), of the
    chain's table ARN and id (or the ones given), and its files the ones the
    chain record lists. A missing or damaged window raises the verification
    error, which names the file. ``skip``: folders of windows a resumed round
    already finished (they need no winners any more).
    """
    start = plan.chain.start if plan.chain is not None else None
    return await verify_windows(
        storage,
        plan.table,
        plan.point.full.export_time,
        plan.windows,
        key_types=key_types,
        table_arn=table_arn or (start.table_arn if start else None),
        table_id=table_id or (start.table_id if start else None),
        concurrency=concurrency,
        skip=skip,
    )


async def verify_windows(
    storage: Storage,
    table: str,
    full_export_time: dt.datetime,
    windows: Sequence[ChainWindow],
    *,
    key_types: Mapping[str, str],
    table_arn: str | None,
    table_id: str | None,
    concurrency: int = 4,
    skip: frozenset[str] = frozenset(),
) -> list[VerifiedWindow]:
    """:func:`verify_point_in_time` for windows kept in a restore's state (a
    resumed round verifies again the windows it has not finished)."""
    _check_order(table, full_export_time, windows)
    verified = []
    for w in windows:
        if w.folder in skip:
            continue
        v = await verify_incremental_folder(
            storage,
            w.folder,
            key_types=key_types,
            table_arn=table_arn,
            table_id=table_id,
            concurrency=concurrency,
        )
        recorded = [(f.key, f.md5, f.item_count) for f in w.files]
        if (
            v.summary.export_from_time != w.export_from_time
            or v.summary.export_to_time != w.export_to_time
            or [(f.key, f.md5, f.item_count) for f in v.files] != recorded
        ):
            raise ManifestError(
                "the export is not the window the chain record lists (times or files differ)",
                key=f"{w.folder}/manifest-summary.json",
            )
        verified.append(v)
    return verified
