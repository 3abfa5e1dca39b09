"""Which full backup and windows bring a table closest to a restore time (pure)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from ddb_backup.chain.model import (
    Chain,
    ChainWindow,
)
from ddb_backup.errors import BackupNotFoundError
from ddb_backup.manifest import BackupManifest, TableStatus


@dataclass(frozen=True, slots=True, order=True)
class FullBackupPoint:
    """A verified full backup of one table, by the time it reflects."""

    export_time: dt.datetime
    backup_date: dt.date


def full_backup_points(manifests: Iterable[BackupManifest], table: str) -> list[FullBackupPoint]:
    """The completed full backups of ``table`` that record their export time."""
    out = []
    for m in manifests:
        t = m.table(table)
        if t is not None and t.status is TableStatus.COMPLETED and t.export_time is not None:
            out.append(FullBackupPoint(t.export_time, m.backup_date))
    return sorted(out)


@dataclass(frozen=True, slots=True)
class RestorePoint:
    """What a restore to ``asked`` applies: a full backup, then windows in order."""

    full: FullBackupPoint
    chain_id: str | None
    windows: list[ChainWindow]
    restored_to: dt.datetime
    asked: dt.datetime | None  # None: "latest"

    @property
    def behind_asked(self) -> dt.timedelta:
        """How far before the asked time the restore lands (zero for "latest")."""
        return self.asked - self.restored_to if self.asked is not None else dt.timedelta(0)


def _windows_from(
    full: FullBackupPoint, chain: Chain, until: dt.datetime | None
) -> list[ChainWindow]:
    """The chain's windows applied on top of ``full``, ending at or before ``until``.

    The first is the window holding the full backup's export time (its records
    are final images, so changes already in the full backup are written again
    harmlessly); each next one starts where the previous ended, up to the first
    problem (gap, overlap, other table id) from there on. What comes before that
    first window does not matter to this full backup: a chain whose oldest
    windows have expired still carries a newer full backup it holds.
    """
    windows = chain.windows
    first = next(
        (
            i
            for i, w in enumerate(windows)
            if w.export_from_time <= full.export_time < w.export_to_time
        ),
        None,
    )
    if first is None:
        return []
    since = windows[first].export_from_time
    cut = min((p.at for p in chain.problems if p.at >= since), default=None)
    out: list[ChainWindow] = []
    for w in windows[first:]:
        if until is not None and w.export_to_time > until:
            break
        if cut is not None and w.export_to_time > cut:
            break
        if out and w.export_from_time != out[-1].export_to_time:
            break
        out.append(w)
    return out


def resolve_restore_point(
    fulls: Sequence[FullBackupPoint],
    chains: Sequence[Chain],
    at: dt.datetime | Literal["latest"],
) -> RestorePoint:
    """The full backup and windows that bring the table closest to ``at`` (pure).

    For a time: among the full backups at or before it, each followed by the
    contiguous verified windows after it up to the last boundary at or before
    the time, the one reaching furthest (the newest full backup on a tie, so
    fewer windows). That is the newest full backup at or before the time, unless
    an older one's chain reaches closer. Any chain may carry any full backup
    whose export time one of its windows holds: just after a daily full backup,
    the chain it superseded often reaches closer than the new chain has got
    yet. "latest": the furthest any chain reaches.
    """
    until = None if at == "latest" else at
    candidates = [f for f in fulls if until is None or f.export_time <= until]
    if not candidates:
        raise BackupNotFoundError(
            f"no verified full backup at or before {at if until is None else until.isoformat()}"
        )
    best: RestorePoint | None = None
    for full in sorted(candidates, reverse=True):  # newest first: it wins ties
        options: list[tuple[str | None, list[ChainWindow]]] = [(None, [])]
        options += [(c.chain_id, _windows_from(full, c, until)) for c in chains]
        for chain_id, windows in options:
            reached = windows[-1].export_to_time if windows else full.export_time
            if best is None or reached > best.restored_to:
                best = RestorePoint(full, chain_id if windows else None, windows, reached, until)
    assert best is not None  # candidates is not empty
    return best
