"""Read every data file back and prove it is what the manifest says.

A file passes when its raw bytes hash to the expected MD5, it decompresses
completely, every line is a DynamoDB item, and the number of items is the
expected one. Files are verified by a fixed pool of workers fed from a
bounded queue, each streaming its file in constant memory.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ddb_backup.concurrency import run_workers
from ddb_backup.errors import (
    ChecksumMismatchError,
    CorruptDataError,
    DdbBackupError,
    ItemCountMismatchError,
    ManifestError,
    VerificationError,
)
from ddb_backup.export_folder import ExpectedFile, locate_export_folder, read_export_folder
from ddb_backup.items import MAX_ITEM_BYTES, parse_item_line, wire_item_size
from ddb_backup.keys import check_key_inside
from ddb_backup.manifest import DataFile, TableBackup
from ddb_backup.storage import Storage
from ddb_backup.stream import StreamStats, iter_lines

__all__ = [
    "FileVerdict",
    "TableVerdict",
    "expected_files",
    "verify_file",
    "verify_files",
    "verify_table_backup",
]


@dataclass(frozen=True, slots=True)
class FileVerdict:
    """The outcome for one file: ``data_file`` when sound, else ``error``."""

    key: str
    data_file: DataFile | None
    error: VerificationError | None


async def verify_file(
    storage: Storage,
    expected: ExpectedFile,
    *,
    key_names: tuple[str, ...] = (),
) -> DataFile:
    """Stream one file and check it; raises :class:`VerificationError` naming the file."""
    stats = StreamStats()
    items = 0
    async for line in iter_lines(storage.stream(expected.key), key=expected.key, stats=stats):
        items += 1
        item = parse_item_line(line, key=expected.key, line_no=items)
        for name in key_names:
            if name not in item:
                raise CorruptDataError(
                    f"line {items} lacks key attribute {name!r}", key=expected.key
                )
        if wire_item_size(item) > MAX_ITEM_BYTES:
            raise CorruptDataError(
                f"line {items} is over DynamoDB's 400 KB limit", key=expected.key
            )
    if expected.md5 is not None and stats.md5_base64 != expected.md5:
        raise ChecksumMismatchError(
            f"MD5 {stats.md5_base64} does not match the manifest's {expected.md5}",
            key=expected.key,
        )
    if expected.item_count is not None and items != expected.item_count:
        raise ItemCountMismatchError(
            f"holds {items} items, the manifest says {expected.item_count}", key=expected.key
        )
    return DataFile(
        key=expected.key, item_count=items, md5=stats.md5_base64, size=stats.compressed_bytes
    )


async def verify_files(
    storage: Storage,
    files: Iterable[ExpectedFile],
    *,
    concurrency: int = 4,
    key_names: tuple[str, ...] = (),
) -> list[FileVerdict]:
    """Verify every file; failures are collected, not raised, so all are named."""

    async def one(f: ExpectedFile) -> FileVerdict:
        try:
            return FileVerdict(f.key, await verify_file(storage, f, key_names=key_names), None)
        except VerificationError as exc:
            return FileVerdict(f.key, None, exc)

    return await run_workers(files, one, concurrency=concurrency)


@dataclass(frozen=True, slots=True)
class TableVerdict:
    """A table of a backup after every one of its files was read back."""

    table_name: str
    files: list[DataFile]
    errors: list[str]

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def item_count(self) -> int:
        return sum(f.item_count for f in self.files)


async def expected_files(storage: Storage, table: TableBackup) -> list[ExpectedFile]:
    """The files a table's backup must have: ours, else AWS's manifest-files.json.

    Legacy manifests carry no per-file checksums; their export folder is found
    from the export id (the ARN's last segment) and AWS's manifest is used.
    """
    if table.files is not None:
        return [ExpectedFile.from_data_file(f) for f in table.files]
    folder = table.export_folder or await locate_export_folder(
        storage, table.s3_prefix, export_arn=table.export_arn
    )
    listing = await read_export_folder(storage, folder)
    if not listing.has_aws_manifest:
        raise ManifestError(
            "no per-file checksums: neither the backup manifest nor AWS's manifest-files.json",
            key=f"{folder}/manifest-files.json",
        )
    return listing.files


async def verify_table_backup(
    storage: Storage,
    table: TableBackup,
    *,
    concurrency: int = 4,
    key_names: tuple[str, ...] | None = None,
) -> TableVerdict:
    """Read every data file of one table's backup back; all problems are collected.

    ``key_names`` defaults to the key schema captured in the manifest, so an
    item missing a key attribute is caught before anything is written.
    """
    if key_names is None:
        key_names = table.table_schema.key_names if table.table_schema else ()
    try:
        files = await expected_files(storage, table)
    except DdbBackupError as exc:
        return TableVerdict(table.table_name, [], [str(exc)])
    for f in files:
        # Keys from a manifest must stay inside the table's own export prefix.
        try:
            check_key_inside(f.key, table.s3_prefix)
        except DdbBackupError as exc:
            return TableVerdict(table.table_name, [], [str(exc)])
    verdicts = await verify_files(storage, files, concurrency=concurrency, key_names=key_names)
    errors = [str(v.error) for v in verdicts if v.error is not None]
    good = [v.data_file for v in verdicts if v.data_file is not None]
    if not errors and table.item_count is not None:
        total = sum(f.item_count for f in good)
        if total != table.item_count:
            errors.append(
                f"{table.s3_prefix}: files hold {total} items, the manifest says {table.item_count}"
            )
    return TableVerdict(table.table_name, good, errors)
