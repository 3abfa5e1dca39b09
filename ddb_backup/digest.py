"""An order-independent digest of a table's content, from export files or a live table.

Two tables (or a backup and a table) hold the same items exactly when their
digests are equal (up to a 2**-128 chance), whatever the order of the items,
the split into files, the order of attributes, or the spelling of numbers.

Canonical form
--------------
Each item is encoded as a byte string, then hashed with BLAKE2b (16 bytes);
the table's digest is the **sum mod 2**128** of the item hashes, as 32 hex
digits, plus the item count. A sum (not XOR) so that two equal items do not
cancel out; the digest of no items is ``0``. Encoding of a value (``len`` is a
4-byte big-endian length, ``n`` a 4-byte big-endian count):

* ``S``: ``b"S" len utf8``; ``B``: ``b"B" len bytes`` (the decoded bytes, never
  the base64 text: ``AQ==`` and bytes ``\\x01`` are one value);
* ``N``: ``b"N" len text`` where text is the number as DynamoDB compares it:
  ``0`` for any zero (``-0``, ``0.00``), else ``[-]DIGITS E exponent`` with no
  leading or trailing zeros in DIGITS, computed exactly from
  :meth:`decimal.Decimal.as_tuple` (no context rounding, so all 38
  significant digits count): ``1``, ``1.0``, ``1E0``, ``+1``, ``01`` all
  encode as ``1E0``;
* ``BOOL``: ``b"T"`` / ``b"F"``; ``NULL``: ``b"0"``;
* ``SS``/``NS``/``BS``: the tag, ``n``, then the encodings of the elements
  (canonical as above) **sorted** bytewise: sets have no order;
* ``L``: ``b"L" n`` then the elements in order (lists are ordered);
* ``M`` and the item itself: ``b"M" n`` then per attribute ``len name value``,
  attributes sorted by their UTF-8 name.

Reads wire items (base64 text for binary, as export lines and
:func:`~ddb_backup.items.from_botocore` give them) and botocore items (bytes
for binary) alike. Nothing here logs or returns a value. The digest of a live
table is :func:`ddb_backup.table_scan.digest_table` (kept apart: the daily
backup imports this module and must not need the restore's permissions).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

__all__ = [
    "ContentDigest",
    "canonical_binary",
    "canonical_item",
    "canonical_number",
    "digest_items",
    "item_hash",
]

_MOD = 1 << 128


def canonical_number(text: str) -> str:
    """A DynamoDB number as one text per value (see the module docstring).

    The one normaliser of numbers: digests, diff keys and the key identity of
    change records (:func:`ddb_backup.changes.key_parts`) all use it, so they
    never disagree on whether two spellings are one number. Exact at any length
    or exponent; the text must be a number (callers pass checked items)."""
    sign, digits, exponent = Decimal(text).as_tuple()
    if not isinstance(exponent, int):  # NaN/Infinity: never a DynamoDB number
        raise ValueError("not a finite number")
    ds = "".join(map(str, digits)).lstrip("0")
    if not ds:
        return "0"
    stripped = ds.rstrip("0")
    # Value = ds * 10**exponent; as DIGITS E e with DIGITS integer.
    exp = exponent + (len(ds) - len(stripped))
    return f"{'-' if sign else ''}{stripped}E{exp}"


def canonical_binary(text: str) -> str:
    """A binary's base64 as one text per value: ``AA==`` and ``AB==`` spell one
    byte (the bits after it are not data), as the digest's decoded bytes say.
    Used where a key must be text (the key identity of change records)."""
    return base64.b64encode(base64.b64decode(text)).decode()


def _len(b: bytes) -> bytes:
    return len(b).to_bytes(4, "big")


def _binary(v: bytes | str) -> bytes:
    return v if isinstance(v, bytes) else base64.b64decode(v)


def _scalar(t: str, v: Any) -> bytes:
    b: bytes
    if t == "S":
        b = v.encode()
    elif t == "N":
        b = canonical_number(v).encode()
    else:  # "B"
        b = _binary(v)
    return t.encode() + _len(b) + b


def _encode(value: dict[str, Any]) -> bytes:
    ((t, v),) = value.items()
    if t in ("S", "N", "B"):
        return _scalar(t, v)
    if t == "BOOL":
        return b"T" if v else b"F"
    if t == "NULL":
        return b"0"
    if t in ("SS", "NS", "BS"):
        parts = sorted(_scalar(t[0], x) for x in v)
        return t.encode() + len(parts).to_bytes(4, "big") + b"".join(parts)
    if t == "L":
        return b"L" + len(v).to_bytes(4, "big") + b"".join(_encode(x) for x in v)
    if t == "M":
        return _map(v)
    raise ValueError(f"unknown DynamoDB type {t!r}")


def _map(m: dict[str, Any]) -> bytes:
    out = [b"M", len(m).to_bytes(4, "big")]
    for name in sorted(m, key=lambda n: n.encode()):
        nb = name.encode()
        out += [_len(nb), nb, _encode(m[name])]
    return b"".join(out)


def canonical_item(item: dict[str, Any]) -> bytes:
    """The canonical encoding of one item (wire or botocore form)."""
    return _map(item)


def item_hash(item: dict[str, Any]) -> int:
    """The 128-bit hash of one item's canonical encoding."""
    h = hashlib.blake2b(canonical_item(item), digest_size=16).digest()
    return int.from_bytes(h, "big")


@dataclass(slots=True)
class ContentDigest:
    """A running digest: :meth:`add` items in any order, from any number of
    sources (file workers share one; asyncio runs them on one thread)."""

    total: int = 0
    count: int = 0

    def add(self, item: dict[str, Any]) -> None:
        self.total = (self.total + item_hash(item)) % _MOD
        self.count += 1

    def merge(self, other: ContentDigest) -> None:
        self.total = (self.total + other.total) % _MOD
        self.count += other.count

    @property
    def hexdigest(self) -> str:
        return f"{self.total:032x}"


def digest_items(items: Iterable[dict[str, Any]]) -> ContentDigest:
    """The digest of ``items`` (wire or botocore form)."""
    d = ContentDigest()
    for item in items:
        d.add(item)
    return d
