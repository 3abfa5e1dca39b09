"""Copy a backup out of S3 into a local directory, resumably, and prove the copy.

The directory mirrors the bucket's keys (``DIR/<prefix>/<date>/manifest.json``,
``DIR/<prefix>/<date>/<table>/AWSDynamoDB/<id>/...``), so
``LocalStorage(DIR)`` reads it exactly as :class:`~ddb_backup.storage.S3Storage`
reads the bucket, and verify and restore run on it unchanged.

* Every object of each table's export folder is copied: data files and AWS's
  manifests, ``.md5`` sidecars and ``_started``.
* Files stream in chunks into ``<name>.part`` and are renamed only once
  complete and, where the manifest gives an MD5, once it matches; a file that
  fails is never left under its final name.
* A second run skips data files already present with the right MD5 and
  re-fetches the rest (small metadata files have no checksum to trust).
* ``manifest.json`` is written last, so an interrupted copy never looks like
  a backup; then every file is read back with :func:`verify_backup`. A copy
  of some tables (``tables``) gets a manifest listing only those (with any an
  earlier download of the date put there), ``PARTIAL``, the rest named in
  ``omitted_tables``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiofiles
import aiofiles.os

from ddb_backup.audit import BackupSelection, BackupVerification, select_backup, verify_backup
from ddb_backup.concurrency import run_workers
from ddb_backup.errors import (
    ChecksumMismatchError,
    DdbBackupError,
    ManifestError,
    UnsafeNameError,
)
from ddb_backup.export_folder import ExpectedFile, locate_export_folder
from ddb_backup.keys import check_key_inside, manifest_key
from ddb_backup.log import get_logger
from ddb_backup.manifest import BackupManifest, BackupStatus, TableBackup, load_manifest
from ddb_backup.storage import CHUNK_SIZE, LocalStorage, Storage
from ddb_backup.verify import expected_files

__all__ = ["CopiedFile", "DownloadResult", "download_backup", "local_md5"]

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class CopiedFile:
    """One object: copied, skipped (already there, right MD5), or failed."""

    key: str
    size: int
    skipped: bool = False
    error: str | None = None


@dataclass(frozen=True, slots=True)
class DownloadResult:
    directory: Path
    selection: BackupSelection
    files: list[CopiedFile]
    problems_before_copy: list[str]
    verification: BackupVerification | None

    @property
    def files_copied(self) -> int:
        return sum(1 for f in self.files if not f.skipped and f.error is None)

    @property
    def files_skipped(self) -> int:
        return sum(1 for f in self.files if f.skipped)

    @property
    def bytes_copied(self) -> int:
        return sum(f.size for f in self.files if not f.skipped and f.error is None)

    @property
    def problems(self) -> list[str]:
        out = list(self.problems_before_copy)
        out += [f"{f.key}: {f.error}" for f in self.files if f.error is not None]
        if self.verification is None:
            out.append("manifest.json not written: the copy is incomplete")
        else:
            out += [p for p in self.verification.problems if p not in out]
        return out

    @property
    def ok(self) -> bool:
        return not self.problems


def _root(directory: Path | str) -> Path:
    return Path(directory).resolve()


def _local_path(root: Path, key: str) -> Path:
    path = (root / key).resolve()
    if root not in path.parents:
        raise UnsafeNameError(f"key {key!r} escapes {root}")
    return path


async def local_md5(path: Path) -> str | None:
    """Base64 MD5 of a local file (AWS's ``md5Checksum`` form), ``None`` if absent."""
    digest = hashlib.md5(usedforsecurity=False)
    try:
        async with aiofiles.open(path, "rb") as f:
            while chunk := await f.read(CHUNK_SIZE):
                digest.update(chunk)
    except FileNotFoundError:
        return None
    return base64.b64encode(digest.digest()).decode()


async def _plan_table(source: Storage, table: TableBackup) -> list[ExpectedFile]:
    """The table's data files (with MD5s) plus every other object of its export folder."""
    data = await expected_files(source, table)
    try:
        folder = table.export_folder or await locate_export_folder(
            source, table.s3_prefix, export_arn=table.export_arn
        )
    except DdbBackupError:
        folder = None  # data files are known from our manifest; no extras to copy
    planned = {f.key: f for f in data}
    if folder is not None:
        async for obj in source.list_objects(f"{folder.strip('/')}/"):
            if obj.key not in planned and not obj.key.endswith("/"):
                planned[obj.key] = ExpectedFile(key=obj.key, size=obj.size)
    for key in planned:
        check_key_inside(key, table.s3_prefix)
    return sorted(planned.values(), key=lambda f: f.key)


async def _copy(source: Storage, root: Path, expected: ExpectedFile) -> CopiedFile:
    dest = _local_path(root, expected.key)
    if expected.md5 is not None and await local_md5(dest) == expected.md5:
        return CopiedFile(expected.key, dest.stat().st_size, skipped=True)
    await aiofiles.os.makedirs(dest.parent, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    try:
        async with aiofiles.open(part, "wb") as out:
            async for chunk in source.stream(expected.key):
                digest.update(chunk)
                size += len(chunk)
                await out.write(chunk)
        md5 = base64.b64encode(digest.digest()).decode()
        if expected.md5 is not None and md5 != expected.md5:
            raise ChecksumMismatchError(
                f"MD5 {md5} of the source does not match the manifest's {expected.md5}",
                key=expected.key,
            )
    except DdbBackupError as exc:
        await aiofiles.os.remove(part)
        return CopiedFile(expected.key, size, error=getattr(exc, "reason", str(exc)))
    except BaseException:
        # Cancelled or unexpected: leave no half file under any name we trust.
        if part.exists():
            part.unlink()
        raise
    await aiofiles.os.replace(part, dest)
    return CopiedFile(expected.key, size)


async def download_backup(
    source: Storage,
    directory: Path | str,
    prefix: str,
    backup_date: str = "latest",
    tables: Sequence[str] | None = None,
    *,
    concurrency: int = 4,
    on_file: Callable[[CopiedFile], None] | None = None,
) -> DownloadResult:
    """Copy one backup (``backup_date`` "latest" or YYYY-MM-DD) into ``directory``.

    Tables whose export did not complete have nothing to copy and are named
    as problems; a failed file is named and leaves the copy without its
    ``manifest.json``. The result's ``ok`` is true only when every file was
    copied and the local copy verified.
    """
    root = _root(directory)
    selection = await select_backup(source, prefix, backup_date, tables)
    date = selection.date
    key = manifest_key(prefix, date)
    raw_manifest = await source.get_bytes(key)

    problems: list[str] = []
    planned: list[ExpectedFile] = []
    for table in selection.completed:
        try:
            planned += await _plan_table(source, table)
        except DdbBackupError as exc:
            problems.append(f"{table.table_name}: {exc}")

    async def one(f: ExpectedFile) -> CopiedFile:
        copied = await _copy(source, root, f)
        if on_file is not None:
            on_file(copied)
        return copied

    files = await run_workers(planned, one, concurrency=concurrency)
    copy_failed = any(f.error is not None for f in files)
    log.info(
        "backup copied",
        extra={
            "backup_date": date.isoformat(),
            "files_copied": sum(1 for f in files if not f.skipped and f.error is None),
            "files_skipped": sum(1 for f in files if f.skipped),
            "files_failed": sum(1 for f in files if f.error is not None),
        },
    )
    verification = None
    # manifest.json last, and only over a complete copy: a table that could not
    # even be planned leaves the copy without one too.
    if not copy_failed and not problems:
        local = LocalStorage(root)
        held = await _tables_held(local, key, prefix, selection)
        await local.put_bytes(key, _copy_manifest(raw_manifest, selection.manifest, held))
        verification = await verify_backup(
            local, prefix, date.isoformat(), held, concurrency=concurrency
        )
    return DownloadResult(root, selection, files, problems, verification)


async def _tables_held(
    local: LocalStorage, key: str, prefix: str, selection: BackupSelection
) -> list[str]:
    """The tables the copy holds after this download: the ones selected now plus
    those an earlier download of the same date put there, in the backup's order."""
    held = {t.table_name for t in [*selection.completed, *selection.not_completed]}
    earlier = await local.get_bytes_or_none(key)
    # An unreadable local manifest is replaced; its tables are not vouched for.
    with contextlib.suppress(ManifestError):
        if earlier is not None:
            held |= {t.table_name for t in load_manifest(earlier, key=key, prefix=prefix).tables}
    return [t.table_name for t in selection.manifest.tables if t.table_name in held]


def _copy_manifest(raw: bytes, manifest: BackupManifest, held: list[str]) -> bytes:
    """The source's manifest as it is when the copy holds every table; else one
    listing only the tables copied, ``PARTIAL``, naming the others in
    ``omitted_tables`` (so ``list --from DIR`` cannot show a complete backup)."""
    omitted = [t.table_name for t in manifest.tables if t.table_name not in held]
    if not omitted:
        return raw
    return manifest.model_copy(
        update={
            "tables": [t for t in manifest.tables if t.table_name in held],
            "omitted_tables": omitted,
            "status": BackupStatus.PARTIAL,
        }
    ).to_json()
