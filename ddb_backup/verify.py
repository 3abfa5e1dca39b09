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
from ddb_backup.items import MAX_ITEM_BYTES, line_within_item_limit, parse_item_line
from ddb_backup.keys import check_key_inside
from ddb_backup.manifest import DataFile, TableBackup
from ddb_backup.storage import Storage
from ddb_backup.stream import StreamStats, iter_decompressed, iter_line_blocks

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
    thorough: bool | None = None,
) -> DataFile:
    """Stream one file and check it; raises :class:`VerificationError` naming the file.

    With an expected MD5 (AWS's manifest or ours) the file is *screened*: the
    MD5 proves its bytes are the ones written, gzip's CRC that they inflate
    whole, and every line is counted and checked to be an ``{"Item":{...}}``
    object of a sane length, at memory speed, without parsing it (the restore
    parses every line as it writes). Anything unusual, or no MD5 to hold the
    file to, or ``thorough=True``, parses and checks every line instead.
    """
    if thorough is None:
        thorough = expected.md5 is None
    if not thorough:
        screened = await _screen_file(storage, expected)
        if screened is not None:
            return screened
    return await _parse_file(storage, expected, key_names)


def _check_totals(expected: ExpectedFile, stats: StreamStats, items: int) -> DataFile:
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


async def _parse_file(
    storage: Storage, expected: ExpectedFile, key_names: tuple[str, ...]
) -> DataFile:
    stats = StreamStats()
    items = 0
    async for lines in iter_line_blocks(
        storage.stream(expected.key), key=expected.key, stats=stats
    ):
        for line in lines:
            items += 1
            item = parse_item_line(line, key=expected.key, line_no=items)
            for name in key_names:
                if name not in item:
                    raise CorruptDataError(
                        f"line {items} lacks key attribute {name!r}", key=expected.key
                    )
            if not line_within_item_limit(line, item):
                raise CorruptDataError(
                    f"line {items} is over DynamoDB's 400 KB limit", key=expected.key
                )
    return _check_totals(expected, stats, items)


_ITEM_START = b'\n{"Item":{'
_HEAD = len(_ITEM_START) - 1
# The screen's per-chunk and per-block Python work is a visible share of its
# cost at 256 KB / 1 MB; these sizes still bound memory (per file screened).
_SCREEN_CHUNK = 1024 * 1024
_SCREEN_BLOCK = 4 * 1024 * 1024
# A window this long without a newline means a line too long to be screened.
_WINDOW = MAX_ITEM_BYTES // 2


class _LineScreen:
    """Counts export lines in decompressed blocks with C-speed searches only.

    Every line must start ``{"Item":{``: the count of line starts and of
    newlines must agree (two passes of ``bytes.count`` over each block, in
    place, the cheapest checks there are). A line of ``_WINDOW`` bytes or more
    is "unusual" (it might exceed 400 KB).
    """

    def __init__(self) -> None:
        self.newlines = 0
        self.starts = 0
        self.unusual = False
        self._head = b"\n"  # the data is read as if preceded by a newline
        self._since_newline = 0
        self._last = b"\n"

    def feed(self, block: bytes) -> None:
        # The head (shorter than the pattern) is carried so patterns crossing
        # into this block are found; the block itself is searched in place.
        head = self._head
        if len(block) < _HEAD:
            window = head + block
            self.starts += window.count(_ITEM_START)
            self._head = window[-_HEAD:]
        else:
            self.starts += block.count(_ITEM_START)
            # Only patterns starting in the head fit in head + block[:_HEAD].
            self.starts += (head + block[:_HEAD]).count(_ITEM_START)
            self._head = block[-_HEAD:]
        self.newlines += block.count(b"\n")
        first = block.find(b"\n")
        if first < 0:
            self._since_newline += len(block)
        else:
            if self._since_newline + first >= _WINDOW:
                self.unusual = True
            last = block.rfind(b"\n")
            for start in range(first, last, _WINDOW):
                if start + _WINDOW < last and block.find(b"\n", start + 1, start + _WINDOW) < 0:
                    self.unusual = True
            self._since_newline = len(block) - last - 1
        if self._since_newline >= _WINDOW:
            self.unusual = True
        self._last = block[-1:]

    def lines(self) -> int | None:
        """The number of item lines, or ``None`` if the data is not plainly item lines."""
        # A final line without its newline still counts.
        lines = self.newlines + (1 if self._last != b"\n" else 0)
        if self.unusual or self.starts != lines:
            return None
        return lines


async def _screen_file(storage: Storage, expected: ExpectedFile) -> DataFile | None:
    """Screen a file (see :func:`verify_file`); ``None`` when it needs parsing."""
    stats = StreamStats()
    screen = _LineScreen()
    async for block in iter_decompressed(
        storage.stream(expected.key, chunk_size=_SCREEN_CHUNK),
        key=expected.key,
        stats=stats,
        max_block=_SCREEN_BLOCK,
    ):
        screen.feed(block)
    items = screen.lines()
    if stats.md5_base64 != expected.md5:
        return _check_totals(expected, stats, items or 0)  # raises: the MD5 is reported
    if items is None:
        return None  # odd-looking content: parsed, to say exactly why
    stats.lines = items
    return _check_totals(expected, stats, items)


async def verify_files(
    storage: Storage,
    files: Iterable[ExpectedFile],
    *,
    concurrency: int = 4,
    key_names: tuple[str, ...] = (),
    thorough: bool | None = None,
) -> list[FileVerdict]:
    """Verify every file; failures are collected, not raised, so all are named."""

    async def one(f: ExpectedFile) -> FileVerdict:
        try:
            verified = await verify_file(storage, f, key_names=key_names, thorough=thorough)
            return FileVerdict(f.key, verified, None)
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
    thorough: bool | None = None,
) -> TableVerdict:
    """Read every data file of one table's backup back; all problems are collected.

    ``key_names`` defaults to the key schema captured in the manifest, so an
    item missing a key attribute is caught before anything is written (when
    lines are parsed: ``thorough=True``, see :func:`verify_file`).
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
    verdicts = await verify_files(
        storage, files, concurrency=concurrency, key_names=key_names, thorough=thorough
    )
    errors = [str(v.error) for v in verdicts if v.error is not None]
    good = [v.data_file for v in verdicts if v.data_file is not None]
    if not errors and table.item_count is not None:
        total = sum(f.item_count for f in good)
        if total != table.item_count:
            errors.append(
                f"{table.s3_prefix}: files hold {total} items, the manifest says {table.item_count}"
            )
    return TableVerdict(table.table_name, good, errors)
