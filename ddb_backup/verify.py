"""Read every data file back and prove it is what the manifest says.

A file passes when its raw bytes hash to the expected MD5, it decompresses
completely, every line passes :func:`~ddb_backup.items.check_item_line` (the
one per-line check, shared with the restore), and the number of items is the
expected one. Files are verified by a fixed pool of workers fed from a
bounded queue, each streaming its file in constant memory.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass

from ddb_backup.changes import key_parts
from ddb_backup.concurrency import run_workers
from ddb_backup.digest import ContentDigest
from ddb_backup.errors import (
    ChecksumMismatchError,
    CorruptDataError,
    DdbBackupError,
    DuplicateDataFileError,
    ItemCountMismatchError,
    ManifestError,
    VerificationError,
)
from ddb_backup.export_folder import ExpectedFile, locate_export_folder, read_export_folder
from ddb_backup.items import KeySpec, WireItem, check_item_lines, key_spec
from ddb_backup.keys import check_key_inside
from ddb_backup.manifest import DataFile, TableBackup, TableSchema
from ddb_backup.storage import Storage
from ddb_backup.stream import StreamStats, iter_line_blocks

__all__ = [
    "DistinctKeys",
    "FileVerdict",
    "TableVerdict",
    "expected_files",
    "schema_keys",
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


class DistinctKeys:
    """The target keys of one table's files: two lines with one key would leave
    fewer items in the table than were written (a backup of a (pk, sk) table
    restored into one keyed on pk alone).

    Used where no captured schema proves the keys match (restore-export, the
    replaced system's backups). :meth:`add` keeps a 64-bit hash per item in
    compact arrays (8 bytes each: 8 MB per million items, where a set took 60);
    :meth:`check`, once every file is read and before anything is written,
    raises if a key came twice. A hash collision would refuse a sound table, with
    odds of about n**2 / 2**65 (3 in a million at 10 million items), never pass a
    bad one.
    """

    _BUCKETS = 256  # checked a bucket at a time: the set built for it stays small
    _MASK = _BUCKETS - 1

    def __init__(self, keys: KeySpec) -> None:
        self._names = tuple(name for name, _ in keys)
        self._hashes = [array("q") for _ in range(self._BUCKETS)]
        self._key = _key_of(keys)

    def add(self, item: WireItem) -> None:
        """Record a (checked) item's key."""
        h = hash(self._key(item))
        self._hashes[h & self._MASK].append(h)

    def check(self, *, where: str) -> None:
        """Raise :class:`CorruptDataError` (naming ``where``) if a key came twice."""
        for hashes in self._hashes:
            if len(set(hashes)) != len(hashes):
                raise CorruptDataError(
                    "two lines have the same target key: the target table's key "
                    f"({', '.join(self._names)}) is not the backup's",
                    key=where,
                )


def _key_of(keys: KeySpec) -> Callable[[WireItem], Hashable]:
    """The function giving a checked item's key, equal for two items exactly
    when DynamoDB sees one key: :func:`~ddb_backup.changes.key_parts` (numbers
    and binaries in canonical form), or for string keys, whose spelling is
    their value, the strings read directly (one step per item)."""
    names = tuple(name for name, _ in keys)
    if keys and all(t == "S" for _, t in keys):
        if len(names) == 1:
            (only,) = names
            return lambda item: item[only]["S"]
        hash_name, range_name = names
        return lambda item: (item[hash_name]["S"], item[range_name]["S"])
    return lambda item: key_parts(item, names)


async def verify_file(
    storage: Storage,
    expected: ExpectedFile,
    *,
    keys: KeySpec = (),
    distinct: DistinctKeys | None = None,
    digest: ContentDigest | None = None,
    on_item: Callable[[WireItem], None] | None = None,
    canonical: set[str] | None = None,
) -> DataFile:
    """Stream one file and check it; raises :class:`VerificationError` naming the file.

    The MD5 proves the bytes are the ones written, gzip's CRC that they
    inflate whole, and every line is parsed and checked by
    :func:`~ddb_backup.items.check_item_lines` (the one per-line check of
    backups, ``verify``, dry runs and restores), with ``keys`` present and typed, and
    every key recorded in ``distinct`` when given (for its
    :meth:`DistinctKeys.check` once all files are read). Each item is added to
    ``digest`` when given (after the file's checks pass, so a failed file
    adds nothing). ``on_item`` is called with every checked item. The file's
    key is added to ``canonical`` when given and every line of the sound file
    is canonical (:func:`~ddb_backup.items.check_item_lines`): the restore may
    then send those lines as they stand when it reads the same object again.
    """
    stats = StreamStats()
    items = 0
    part = ContentDigest() if digest is not None else None
    take = _all_of(
        distinct.add if distinct is not None else None,
        part.add if part is not None else None,
        on_item,
    )
    every_line_canonical = canonical is not None
    async for lines in iter_line_blocks(
        storage.stream(expected.key), key=expected.key, stats=stats
    ):
        every_line_canonical = check_item_lines(
            lines,
            key=expected.key,
            first_line_no=items + 1,
            keys=keys,
            on_item=take,
            canonical=every_line_canonical,
        )
        items += len(lines)
    verified = _check_totals(expected, stats, items)
    if canonical is not None and every_line_canonical:
        canonical.add(expected.key)
    if digest is not None and part is not None:
        digest.merge(part)
    return verified


def _all_of(
    *takers: Callable[[WireItem], None] | None,
) -> Callable[[WireItem], None] | None:
    """One callable calling each of ``takers`` given (None when none is)."""
    given = [f for f in takers if f is not None]
    if len(given) <= 1:
        return given[0] if given else None

    def take(item: WireItem) -> None:
        for f in given:
            f(item)

    return take


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


async def verify_files(
    storage: Storage,
    files: Iterable[ExpectedFile],
    *,
    concurrency: int = 4,
    keys: KeySpec = (),
    distinct: DistinctKeys | None = None,
    digest: ContentDigest | None = None,
    on_item: Callable[[WireItem], None] | None = None,
    canonical: set[str] | None = None,
) -> list[FileVerdict]:
    """Verify every file; failures are collected, not raised, so all are named.

    A file listed twice is refused (it would be restored twice and counted
    twice) without being read.
    """
    files = list(files)
    listed = Counter(f.key for f in files)
    twice = [
        FileVerdict(k, None, DuplicateDataFileError(f"listed {n} times by the manifest", key=k))
        for k, n in listed.items()
        if n > 1
    ]
    if twice:
        return twice

    async def one(f: ExpectedFile) -> FileVerdict:
        try:
            verified = await verify_file(
                storage,
                f,
                keys=keys,
                distinct=distinct,
                digest=digest,
                on_item=on_item,
                canonical=canonical,
            )
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


def schema_keys(schema: TableSchema | None) -> KeySpec:
    """The key attributes (with types) a captured schema gives, or none."""
    return key_spec(schema.key_names, schema.key_types) if schema is not None else ()


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
    keys: KeySpec | None = None,
    distinct: DistinctKeys | None = None,
    digest: ContentDigest | None = None,
    on_item: Callable[[WireItem], None] | None = None,
    canonical: set[str] | None = None,
) -> TableVerdict:
    """Read every data file of one table's backup back; all problems are collected.

    ``keys`` defaults to the key schema captured in the manifest, so an item
    missing a key attribute is caught before anything is written.
    """
    if keys is None:
        keys = schema_keys(table.table_schema)
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
        storage,
        files,
        concurrency=concurrency,
        keys=keys,
        distinct=distinct,
        digest=digest,
        on_item=on_item,
        canonical=canonical,
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
