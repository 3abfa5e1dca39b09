"""Change records of an incremental export, checked, and turned into writes.

One line of an incremental export's data file (``NEW_AND_OLD_IMAGES`` view)::

    {"Metadata":{"WriteTimestampMicros":{"N":"1764902700123456"}},
     "Keys":{...},"OldImage":{...},"NewImage":{...}}

insert: Keys + NewImage; update: Keys + OldImage + NewImage; delete: Keys +
OldImage. (``NEW_IMAGE`` view: no OldImage ever; a delete is Keys alone.)

Applying a window: a record with ``NewImage`` becomes a put of the whole
item, one without a delete of ``Keys``. Within one window each key should
appear once; if it appears more than once, **the record with the greater
WriteTimestampMicros wins** (two records of one key with the same timestamp
are refused: nothing says which is the later). This takes two passes over the
window: :class:`WindowResolver` sees every record (during verification) and
remembers the winning timestamp of each key seen twice; :func:`write_requests`
then streams the records again and skips the losers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

import orjson

from ddb_backup.digest import canonical_binary, canonical_number
from ddb_backup.errors import CorruptDataError
from ddb_backup.items import WireItem, check_wire_item

__all__ = [
    "ChangeKind",
    "ChangeRecord",
    "MicrosWindow",
    "OutputView",
    "WindowResolver",
    "WriteRequest",
    "key_identity",
    "key_parts",
    "parse_change_line",
    "resolve_window",
    "write_requests",
]

#: A BatchWriteItem request in wire form (binary values still base64 text).
WriteRequest = dict[str, Any]

_FIELDS: Final = frozenset({"Metadata", "Keys", "OldImage", "NewImage"})


class OutputView(StrEnum):
    """``outputView`` of an incremental export (``ExportViewType``)."""

    NEW_AND_OLD_IMAGES = "NEW_AND_OLD_IMAGES"
    NEW_IMAGE = "NEW_IMAGE"


class ChangeKind(StrEnum):
    INSERT = "insert"
    UPDATE = "update"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class MicrosWindow:
    """``[start, end)`` in microseconds since the epoch (ExportToTime is exclusive)."""

    start: int
    end: int

    def __contains__(self, micros: object) -> bool:
        return isinstance(micros, int) and self.start <= micros < self.end


@dataclass(frozen=True, slots=True)
class ChangeRecord:
    """One checked change line."""

    line_no: int
    timestamp_micros: int
    keys: WireItem
    identity: bytes = field(repr=False)  # canonical key (see key_identity); holds values
    old_image: WireItem | None = field(default=None, repr=False)
    new_image: WireItem | None = field(default=None, repr=False)

    @property
    def kind(self) -> ChangeKind:
        if self.new_image is None:
            return ChangeKind.DELETE
        return ChangeKind.INSERT if self.old_image is None else ChangeKind.UPDATE

    @property
    def is_put(self) -> bool:
        return self.new_image is not None

    def write_request(self) -> WriteRequest:
        """NewImage: a put of the whole item; no NewImage: a delete of Keys."""
        if self.new_image is not None:
            return {"PutRequest": {"Item": self.new_image}}
        return {"DeleteRequest": {"Key": self.keys}}


def key_identity(keys: WireItem, key_names: tuple[str, ...]) -> bytes:
    """The canonical form of a key: its values in key-schema order, numbers
    normalised (``"1.0"`` and ``"1"`` are one key to DynamoDB)."""
    return orjson.dumps(key_parts(keys, key_names))


def key_parts(keys: WireItem, key_names: tuple[str, ...]) -> tuple[tuple[str, Any], ...]:
    """``(type, value)`` per key attribute in key-schema order, numbers and
    binaries in the digest's canonical forms (:func:`~ddb_backup.digest.canonical_number`,
    :func:`~ddb_backup.digest.canonical_binary`): equal for two checked items
    exactly when DynamoDB sees one key (hashable)."""
    parts: list[tuple[str, Any]] = []
    for name in key_names:
        ((type_, value),) = keys[name].items()
        canonical = _CANONICAL.get(type_)
        parts.append((type_, canonical(value) if canonical is not None else value))
    return tuple(parts)


#: Key values DynamoDB compares other than as they are spelt.
_CANONICAL = {"N": canonical_number, "B": canonical_binary}


def parse_change_line(
    line: bytes,
    *,
    key: str,
    line_no: int,
    key_types: Mapping[str, str],
    window: MicrosWindow,
    view: OutputView = OutputView.NEW_AND_OLD_IMAGES,
) -> ChangeRecord:
    """Parse and check one change line; errors name the file and line, never a value.

    ``key_types`` maps the table's key attribute names to their types (``S``,
    ``N``, ``B``), HASH first; ``Keys`` must hold exactly those.
    """
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise CorruptDataError(f"line {line_no} is not JSON", key=key) from exc
    if type(doc) is not dict or not _FIELDS.issuperset(doc):
        raise CorruptDataError(f"line {line_no} is not a change record", key=key)
    micros = _timestamp(doc.get("Metadata"), key=key, line_no=line_no)
    if micros not in window:
        raise CorruptDataError(
            f"line {line_no}: WriteTimestampMicros {micros} is outside the window "
            f"[{window.start}, {window.end})",
            key=key,
        )
    keys = check_wire_item(doc.get("Keys"), key=key, line_no=line_no, what="a record with Keys")
    _check_keys(keys, key_types, key=key, line_no=line_no)
    old = _image(doc, "OldImage", line, keys, key=key, line_no=line_no)
    new = _image(doc, "NewImage", line, keys, key=key, line_no=line_no)
    if view is OutputView.NEW_IMAGE and old is not None:
        raise CorruptDataError(f"line {line_no} has an OldImage in a NEW_IMAGE export", key=key)
    if view is OutputView.NEW_AND_OLD_IMAGES and old is None and new is None:
        raise CorruptDataError(f"line {line_no} has neither NewImage nor OldImage", key=key)
    return ChangeRecord(
        line_no=line_no,
        timestamp_micros=micros,
        keys=keys,
        identity=key_identity(keys, tuple(key_types)),
        old_image=old,
        new_image=new,
    )


def _timestamp(metadata: Any, *, key: str, line_no: int) -> int:
    stamp = metadata.get("WriteTimestampMicros") if type(metadata) is dict else None
    text = stamp.get("N") if type(stamp) is dict and len(stamp) == 1 else None
    if type(text) is not str or not (text.isascii() and text.isdigit()):
        raise CorruptDataError(
            f'line {line_no} has no Metadata.WriteTimestampMicros {{"N": ...}}', key=key
        )
    return int(text)


def _check_keys(keys: WireItem, key_types: Mapping[str, str], *, key: str, line_no: int) -> None:
    if keys.keys() != key_types.keys():
        # Names of unexpected attributes are data: only the expected ones are named.
        raise CorruptDataError(
            f"line {line_no}: Keys do not hold exactly the key attributes {', '.join(key_types)}",
            key=key,
        )
    for name, type_ in key_types.items():
        if type_ not in keys[name]:
            raise CorruptDataError(
                f"line {line_no}: key attribute {name!r} is not of type {type_}", key=key
            )


def _image(
    doc: dict[str, Any], name: str, line: bytes, keys: WireItem, *, key: str, line_no: int
) -> WireItem | None:
    if name not in doc:
        return None
    image = check_wire_item(
        doc[name], key=key, line_no=line_no, line_bytes=len(line), what=f"a record with {name}"
    )
    # The image must be the item Keys names; a put of anything else writes another item.
    for attr, value in keys.items():
        if image.get(attr) != value:
            raise CorruptDataError(f"line {line_no}: {name} does not match Keys", key=key)
    return image


@dataclass(slots=True)
class WindowResolver:
    """Pass 1 over one window's records: which record of each key wins, and the
    net puts and deletes.

    Memory: one entry per distinct key changed in the window (the canonical key
    and an int, roughly 120 bytes plus the key's length), freed with the
    resolver; only keys seen twice are kept in :attr:`winners`. A window that
    changed a million distinct keys needs about 150 MB: size the Lambda (or
    shorten the windows) for the busiest window, not for the table.
    """

    _seen: dict[bytes, int] = field(default_factory=dict)
    #: Keys seen more than once -> the winning WriteTimestampMicros.
    winners: dict[bytes, int] = field(default_factory=dict)
    puts: int = 0
    deletes: int = 0
    records: int = 0

    def observe(self, record: ChangeRecord, *, key: str) -> None:
        """Take one record (``key`` names its file for the error on a tie)."""
        self.records += 1
        # One int per key: the timestamp shifted left, the low bit "is a put",
        # so the net counts can be corrected when a later record wins.
        packed = record.timestamp_micros << 1 | record.is_put
        previous = self._seen.get(record.identity)
        if previous is None:
            self._seen[record.identity] = packed
            self._count(packed, +1)
            return
        if previous >> 1 == record.timestamp_micros:
            raise CorruptDataError(
                f"line {record.line_no} changes a key already changed in this window "
                "with the same WriteTimestampMicros: which one is later is unknown",
                key=key,
            )
        # The greater WriteTimestampMicros wins, whatever the order of the lines.
        if packed >> 1 > previous >> 1:
            self._seen[record.identity] = packed
            self._count(previous, -1)
            self._count(packed, +1)
        self.winners[record.identity] = self._seen[record.identity] >> 1

    def _count(self, packed: int, delta: int) -> None:
        if packed & 1:
            self.puts += delta
        else:
            self.deletes += delta

    def release(self) -> None:
        """Forget the per-key entries; :attr:`winners` and the counts stay."""
        self._seen = {}


def resolve_window(records: Iterable[tuple[str, ChangeRecord]]) -> WindowResolver:
    """Pass 1 over ``(file key, record)`` pairs (see :class:`WindowResolver`)."""
    resolver = WindowResolver()
    for key, record in records:
        resolver.observe(record, key=key)
    resolver.release()
    return resolver


def write_requests(
    records: Iterable[ChangeRecord], winners: Mapping[bytes, int]
) -> Iterator[WriteRequest]:
    """Pass 2: the write of every record that is the last word on its key.

    ``winners`` comes from pass 1 (:attr:`WindowResolver.winners`); a record of
    a key seen twice is written only if it carries the winning timestamp.
    """
    for record in records:
        best = winners.get(record.identity)
        if best is None or best == record.timestamp_micros:
            yield record.write_request()
