"""What changed in a live table since a backup: items added, changed, deleted.

Both sides are reduced to ``(key, item hash)`` records: the backup's by
reading (and verifying) every data file, the table's by a consistent
parallel Scan. The key is the item's key attributes in canonical form (a
number as DynamoDB compares it, binary as decoded bytes, see
:mod:`ddb_backup.digest`), the hash the item's 128-bit hash of its canonical
encoding: an item is *changed* when its key is on both sides with different
hashes.

Memory is bounded: records go to ``partitions`` local temporary files by a
hash of the key, and one partition at a time is loaded and compared. Peak
memory is about ``2 * items / partitions * (key length + 80 bytes)``; the
default picks ``partitions`` so that one partition holds about 200,000
items (about 40 MB with short keys), and the temporary files take about
``items * (key length + 25 bytes)`` of disk on each side. Keys are reported
only when asked (``keys=True``); attribute values never.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from ddb_backup.digest import canonical_number, item_hash
from ddb_backup.errors import ManifestError, VerificationError
from ddb_backup.manifest import TableBackup
from ddb_backup.storage import Storage
from ddb_backup.table_scan import scan_items
from ddb_backup.verify import schema_keys, verify_table_backup

__all__ = ["DiffResult", "diff_table", "partitions_for"]

#: Items per partition the default aims at.
ITEMS_PER_PARTITION = 200_000
MAX_PARTITIONS = 4096
_BACKUP, _LIVE = b"B", b"L"
_HEADER = struct.Struct(">cI")


def partitions_for(item_count: int | None) -> int:
    """Partitions for a table of ``item_count`` items (see the module docstring)."""
    return max(1, min(MAX_PARTITIONS, -(-(item_count or 0) // ITEMS_PER_PARTITION)))


@dataclass(slots=True)
class DiffResult:
    """Counts (and, when asked, keys) of the live table against the backup."""

    table: str
    backup_items: int = 0
    live_items: int = 0
    added: int = 0
    changed: int = 0
    deleted: int = 0
    partitions: int = 1
    keys: dict[str, list[Any]] | None = field(default=None)

    @property
    def identical(self) -> bool:
        return not (self.added or self.changed or self.deleted)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "table": self.table,
            "backup_items": self.backup_items,
            "live_items": self.live_items,
            "added": self.added,
            "changed": self.changed,
            "deleted": self.deleted,
            "identical": self.identical,
        }
        if self.keys is not None:
            out["keys"] = self.keys
        return out


def _key_value(t: str, v: Any) -> str:
    if t == "N":
        return canonical_number(v)
    if t == "B":
        raw = v if isinstance(v, bytes) else base64.b64decode(v)
        return base64.b64encode(raw).decode("ascii")
    return str(v)


class _Partitions:
    """``(key, hash)`` records spread over temporary files by key hash."""

    def __init__(self, directory: Path, count: int, key_names: tuple[str, ...]) -> None:
        self.count = count
        self.key_names = key_names
        self.paths = [directory / f"part-{i:05d}" for i in range(count)]
        self._files: list[IO[bytes]] = [p.open("ab") for p in self.paths]

    def add(self, side: bytes, item: dict[str, Any]) -> None:
        key = orjson.dumps(
            [[n, t, _key_value(t, v)] for n in self.key_names for t, v in item[n].items()]
        )
        p = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") % self.count
        f = self._files[p]
        f.write(_HEADER.pack(side, len(key)))
        f.write(key)
        f.write(item_hash(item).to_bytes(16, "big"))

    def close(self) -> None:
        for f in self._files:
            f.close()

    def read(self, i: int) -> Iterator[tuple[bytes, bytes, bytes]]:
        with self.paths[i].open("rb") as f:
            while header := f.read(_HEADER.size):
                side, n = _HEADER.unpack(header)
                key = f.read(n)
                yield side, key, f.read(16)


async def diff_table(
    storage: Storage,
    table: TableBackup,
    dynamodb: Any,
    *,
    live_table: str | None = None,
    keys: bool = False,
    partitions: int | None = None,
    segments: int = 4,
    concurrency: int = 4,
    workdir: str | os.PathLike[str] | None = None,
) -> DiffResult:
    """Compare ``live_table`` (default: the backed-up table's name) with the
    backup of ``table``. The backup is verified as it is read; a file that
    does not verify raises :class:`~ddb_backup.errors.VerificationError`."""
    name = live_table or table.table_name
    key_spec = schema_keys(table.table_schema)
    if not key_spec:
        raise ManifestError("the backup has no captured key schema", key=table.s3_prefix)
    count = partitions or partitions_for(table.item_count)
    result = DiffResult(table=name, partitions=count, keys=None)
    with tempfile.TemporaryDirectory(prefix="ddb-backup-diff-", dir=workdir) as tmp:
        parts = _Partitions(Path(tmp), count, tuple(n for n, _ in key_spec))
        try:
            verdict = await verify_table_backup(
                storage,
                table,
                concurrency=concurrency,
                keys=key_spec,
                on_item=lambda item: parts.add(_BACKUP, item),
            )
            if not verdict.ok:
                raise VerificationError(
                    f"does not verify: {verdict.errors[0]}", key=table.s3_prefix
                )
            async for page in scan_items(dynamodb, name, segments=segments):
                for item in page:
                    parts.add(_LIVE, item)
        finally:
            parts.close()
        found: dict[str, list[Any]] = {"added": [], "changed": [], "deleted": []}
        for i in range(count):
            _compare(parts.read(i), result, found if keys else None)
    if keys:
        result.keys = {kind: sorted(ks, key=orjson.dumps) for kind, ks in found.items()}
    return result


def _compare(
    records: Iterator[tuple[bytes, bytes, bytes]],
    result: DiffResult,
    found: dict[str, list[Any]] | None,
) -> None:
    """Count one partition's differences (its records fit in memory)."""
    backup: dict[bytes, bytes] = {}
    live: dict[bytes, bytes] = {}
    for side, key, h in records:
        (backup if side == _BACKUP else live)[key] = h
    result.backup_items += len(backup)
    result.live_items += len(live)
    for key, h in live.items():
        before = backup.get(key)
        kind = "added" if before is None else "changed" if before != h else None
        if kind is None:
            continue
        setattr(result, kind, getattr(result, kind) + 1)
        if found is not None:
            found[kind].append(_readable(key))
    for key in backup.keys() - live.keys():
        result.deleted += 1
        if found is not None:
            found["deleted"].append(_readable(key))


def _readable(key: bytes) -> dict[str, dict[str, str]]:
    """A key record as DynamoDB JSON: ``{"pk": {"S": "..."}}``."""
    return {n: {t: v} for n, t, v in orjson.loads(key)}
