"""A whole backup date read back: which tables it covers, and every file verified.

Used by ``ddb-backup verify`` and ``ddb-backup download``; works the same on
S3 or on a local copy (:class:`~ddb_backup.storage.LocalStorage`). Nothing is
written.

"latest" means what it means for a restore (the newest date complete for
the requested tables). An explicit date is taken as it is: tables whose export
failed are reported as problems rather than hidden, so auditing a partial
backup fails loudly.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ddb_backup.catalog import SkippedBackup, load_backup, resolve_backup
from ddb_backup.errors import BackupNotFoundError
from ddb_backup.keys import check_date
from ddb_backup.manifest import BackupManifest, TableBackup, TableStatus
from ddb_backup.storage import Storage
from ddb_backup.verify import TableVerdict, verify_table_backup

__all__ = ["BackupSelection", "BackupVerification", "select_backup", "verify_backup"]


@dataclass(frozen=True, slots=True)
class BackupSelection:
    """A backup's manifest and the tables asked for (``completed`` hold data)."""

    manifest: BackupManifest
    completed: list[TableBackup]
    not_completed: list[TableBackup]
    skipped: list[SkippedBackup] = field(default_factory=list)

    @property
    def date(self) -> dt.date:
        return self.manifest.backup_date


async def select_backup(
    storage: Storage, prefix: str, backup_date: str, tables: Sequence[str] | None = None
) -> BackupSelection:
    """Resolve ``backup_date`` ("latest" or YYYY-MM-DD) and pick ``tables`` (default: all).

    Raises :class:`BackupNotFoundError` for a date without a manifest or a
    requested table the manifest does not name.
    """
    if backup_date == "latest":
        resolved = await resolve_backup(storage, prefix, "latest", tables)
        manifest, skipped = resolved.manifest, resolved.skipped
    else:
        manifest, skipped = await load_backup(storage, prefix, check_date(backup_date)), []
    if tables:
        unknown = [t for t in tables if manifest.table(t) is None]
        if unknown:
            raise BackupNotFoundError(
                f"backup {manifest.backup_date} has no table named: {', '.join(unknown)}"
            )
        chosen = [t for t in manifest.tables if t.table_name in set(tables)]
    else:
        chosen = list(manifest.tables)
    return BackupSelection(
        manifest=manifest,
        completed=[t for t in chosen if t.status is TableStatus.COMPLETED],
        not_completed=[t for t in chosen if t.status is not TableStatus.COMPLETED],
        skipped=skipped,
    )


@dataclass(frozen=True, slots=True)
class BackupVerification:
    """Every selected table of one backup, read back from ``location``."""

    selection: BackupSelection
    location: str
    verdicts: list[TableVerdict]

    @property
    def problems(self) -> list[str]:
        """One line per problem: a table not exported, or a file that failed."""
        out = [
            f"{t.table_name}: export {t.status.value}" + (f": {t.error}" if t.error else "")
            for t in self.selection.not_completed
        ]
        out += [f"{v.table_name}: {e}" for v in self.verdicts for e in v.errors]
        return out

    @property
    def ok(self) -> bool:
        return not self.problems


async def verify_backup(
    storage: Storage,
    prefix: str,
    backup_date: str,
    tables: Sequence[str] | None = None,
    *,
    concurrency: int = 4,
    on_table: Callable[[TableVerdict], None] | None = None,
) -> BackupVerification:
    """Re-read every data file of the selected tables: checksums, counts, items.

    Every problem is collected (none raised) so one run names them all.
    """
    selection = await select_backup(storage, prefix, backup_date, tables)
    verdicts = []
    for table in selection.completed:
        verdict = await verify_table_backup(storage, table, concurrency=concurrency)
        verdicts.append(verdict)
        if on_table is not None:
            on_table(verdict)
    return BackupVerification(selection, storage.location, verdicts)
