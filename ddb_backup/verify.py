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
    ItemCountMismatchError,
    VerificationError,
)
from ddb_backup.export_folder import ExpectedFile
from ddb_backup.items import MAX_ITEM_BYTES, parse_item_line, wire_item_size
from ddb_backup.manifest import DataFile
from ddb_backup.storage import Storage
from ddb_backup.stream import StreamStats, iter_lines

__all__ = ["FileVerdict", "verify_file", "verify_files"]


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
