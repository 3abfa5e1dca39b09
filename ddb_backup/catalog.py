"""Which backups exist, what state each is in, and which one "latest" means.

A date folder under the prefix is a backup. Its state comes from what is
there: ``manifest.json`` (final: complete, partial or failed), only a run
state (in progress), or a manifest that cannot be read (unreadable).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from ddb_backup.errors import BackupNotFoundError, DdbBackupError, ManifestError, UnsafeNameError
from ddb_backup.keys import (
    check_date,
    check_key_inside,
    check_prefix,
    check_table_name,
    manifest_key,
    run_state_key,
)
from ddb_backup.manifest import BackupManifest, BackupStatus, TableStatus, load_manifest
from ddb_backup.storage import Storage

__all__ = [
    "BackupEntry",
    "BackupState",
    "ResolvedBackup",
    "SkippedBackup",
    "list_backups",
    "load_backup",
    "resolve_backup",
]


class BackupState(StrEnum):
    COMPLETE = "complete"
    PARTIAL = "partial"
    FAILED = "failed"
    IN_PROGRESS = "in_progress"
    UNREADABLE = "unreadable"


@dataclass(frozen=True, slots=True)
class BackupEntry:
    date: dt.date
    state: BackupState
    manifest: BackupManifest | None = None
    error: str | None = None

    @property
    def tables(self) -> list[str]:
        return [t.table_name for t in self.manifest.tables] if self.manifest else []

    @property
    def item_count(self) -> int | None:
        if not self.manifest:
            return None
        counts = [t.item_count for t in self.manifest.tables if t.status is TableStatus.COMPLETED]
        return sum(c or 0 for c in counts)

    @property
    def size_bytes(self) -> int | None:
        if not self.manifest:
            return None
        total = 0
        for t in self.manifest.tables:
            if t.files:
                total += sum(f.size or 0 for f in t.files)
            elif t.billed_size_bytes:
                total += t.billed_size_bytes
        return total


@dataclass(frozen=True, slots=True)
class SkippedBackup:
    date: dt.date
    reason: str


@dataclass(frozen=True, slots=True)
class ResolvedBackup:
    manifest: BackupManifest
    skipped: list[SkippedBackup] = field(default_factory=list)

    @property
    def date(self) -> dt.date:
        return self.manifest.backup_date


async def _dates(storage: Storage, prefix: str) -> list[dt.date]:
    out = []
    for sub in await storage.list_prefixes(f"{check_prefix(prefix)}/"):
        name = sub.rstrip("/").rsplit("/", 1)[-1]
        try:
            out.append(check_date(name))
        except UnsafeNameError:
            continue  # _restore/ and anything else that is not a date
    return sorted(out, reverse=True)


async def load_backup(storage: Storage, prefix: str, date: dt.date) -> BackupManifest:
    """The final manifest of one date; raises if there is none or it is invalid."""
    key = manifest_key(prefix, date)
    data = await storage.get_bytes_or_none(key)
    if data is None:
        raise BackupNotFoundError(f"no manifest for backup {date.isoformat()} ({key})")
    manifest = load_manifest(data, key=key, prefix=check_prefix(prefix))
    if manifest.backup_date != date:
        raise ManifestError(
            f"manifest says backup_date {manifest.backup_date}, folder is {date}", key=key
        )
    # Everything a manifest points at must stay inside the backup prefix.
    for table in manifest.tables:
        try:
            check_table_name(table.table_name)
            check_key_inside(table.s3_prefix, prefix)
            if table.export_folder:
                check_key_inside(table.export_folder, prefix)
        except UnsafeNameError as exc:
            raise ManifestError(f"manifest points outside the backup: {exc}", key=key) from exc
    return manifest


async def _entry(storage: Storage, prefix: str, date: dt.date) -> BackupEntry:
    try:
        manifest = await load_backup(storage, prefix, date)
    except BackupNotFoundError:
        if await storage.get_bytes_or_none(run_state_key(prefix, date)) is not None:
            return BackupEntry(date, BackupState.IN_PROGRESS, error="backup run not final yet")
        return BackupEntry(date, BackupState.UNREADABLE, error="no manifest.json")
    except DdbBackupError as exc:
        return BackupEntry(date, BackupState.UNREADABLE, error=str(exc))
    state = {
        BackupStatus.COMPLETE: BackupState.COMPLETE,
        BackupStatus.PARTIAL: BackupState.PARTIAL,
        BackupStatus.FAILED: BackupState.FAILED,
    }[manifest.status]
    return BackupEntry(date, state, manifest)


async def list_backups(storage: Storage, prefix: str) -> list[BackupEntry]:
    """Every backup date, newest first, with its state."""
    return [await _entry(storage, prefix, d) for d in await _dates(storage, prefix)]


def _missing_tables(manifest: BackupManifest, tables: Sequence[str] | None) -> list[str]:
    wanted = list(tables) if tables else [t.table_name for t in manifest.tables]
    return [
        name
        for name in wanted
        if (t := manifest.table(name)) is None or t.status is not TableStatus.COMPLETED
    ]


async def resolve_backup(
    storage: Storage, prefix: str, backup_date: str, tables: Sequence[str] | None = None
) -> ResolvedBackup:
    """The manifest for ``backup_date`` ("latest" or YYYY-MM-DD) holding ``tables``.

    "latest" is the newest date whose manifest is final, readable and has every
    requested table (all of them when ``tables`` is empty) COMPLETED; newer
    dates that fail this are skipped and named.
    """
    if backup_date != "latest":
        date = check_date(backup_date)
        manifest = await load_backup(storage, prefix, date)
        missing = _missing_tables(manifest, tables)
        if missing:
            raise BackupNotFoundError(
                f"backup {date} has no completed export of: {', '.join(missing)}"
            )
        return ResolvedBackup(manifest)
    skipped: list[SkippedBackup] = []
    for date in await _dates(storage, prefix):
        entry = await _entry(storage, prefix, date)
        if entry.manifest is None:
            skipped.append(SkippedBackup(date, f"{entry.state.value}: {entry.error}"))
            continue
        missing = _missing_tables(entry.manifest, tables)
        if missing or not entry.manifest.tables:
            reason = f"no completed export of: {', '.join(missing)}" if missing else "no tables"
            skipped.append(SkippedBackup(date, reason))
            continue
        return ResolvedBackup(entry.manifest, skipped)
    detail = "; ".join(f"{s.date}: {s.reason}" for s in skipped) or "no backup dates found"
    raise BackupNotFoundError(f"no complete backup under {prefix}/ ({detail})")
