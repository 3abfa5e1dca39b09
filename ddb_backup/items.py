"""DynamoDB JSON items as they stand in an export, checked and converted.

A *wire item* is the ``{"attr": {"S": "..."}, ...}`` mapping of an export
line, binary values still base64 text. It is what BatchWriteItem's JSON body
carries too, so the fast path can send it as is; the generic botocore path
needs :func:`to_botocore` (base64 text to bytes, once, never twice).
"""

from __future__ import annotations

import base64
import binascii
from itertools import chain
from typing import Any

import orjson

from ddb_backup.errors import CorruptDataError

__all__ = [
    "MAX_ITEM_BYTES",
    "WireItem",
    "check_wire_item",
    "line_within_item_limit",
    "parse_item_line",
    "to_botocore",
    "wire_item_size",
]

WireItem = dict[str, Any]

#: DynamoDB's item size limit.
MAX_ITEM_BYTES = 400 * 1024

_TYPES = frozenset({"S", "N", "B", "BOOL", "NULL", "SS", "NS", "BS", "L", "M"})
_DICT = frozenset({dict})
_ONE = frozenset({1})


def parse_item_line(line: bytes, *, key: str, line_no: int) -> WireItem:
    """Parse one export line (``{"Item": {...}}``) and check it is an item."""
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise CorruptDataError(f"line {line_no} is not JSON", key=key) from exc
    item = doc.get("Item") if type(doc) is dict else None
    return check_wire_item(item, key=key, line_no=line_no)


def check_wire_item(item: Any, *, key: str, line_no: int, what: str = "an item") -> WireItem:
    """``item`` if it is a non-empty wire item, else :class:`CorruptDataError` naming
    ``what`` (e.g. "an item", "NewImage") and the line; never a name or value."""
    if type(item) is not dict or not item:
        raise CorruptDataError(f"line {line_no} is not {what}", key=key)
    values = item.values()
    # Every value a one-key dict whose key is a type tag, checked in three
    # C-level passes rather than a Python loop: this runs for every item.
    if not (
        _DICT.issuperset(map(type, values))
        and _ONE.issuperset(map(len, values))
        and _TYPES.issuperset(chain.from_iterable(values))
    ):
        # The attribute name is data too (it could be a secret's label): not logged.
        raise CorruptDataError(
            f"line {line_no} has an attribute that is not DynamoDB JSON", key=key
        )
    return item


def line_within_item_limit(line: bytes, item: WireItem) -> bool:
    """True when the item is within DynamoDB's 400 KB; cheap for ordinary lines.

    An item's DynamoDB size never exceeds its export line's length (names and
    strings appear whole, base64 is 4/3 of the bytes it stands for, numbers and
    type tags are longer as text), so only long lines need measuring.
    """
    return len(line) <= MAX_ITEM_BYTES or wire_item_size(item) <= MAX_ITEM_BYTES


def wire_item_size(item: WireItem) -> int:
    """DynamoDB's size of an item (names + values; base64 counted as raw bytes)."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _value_size(value: dict[str, Any]) -> int:
    ((t, v),) = value.items()
    if t == "S":
        return len(v.encode())
    if t == "N":
        return len(str(v).lstrip("-").lstrip("0") or "0") // 2 + 1
    if t == "B":
        return (len(v) * 3) // 4
    if t in {"BOOL", "NULL"}:
        return 1
    if t == "SS":
        return sum(len(s.encode()) for s in v)
    if t == "NS":
        return sum(len(str(n)) // 2 + 1 for n in v)
    if t == "BS":
        return sum((len(b) * 3) // 4 for b in v)
    if t == "L":
        return 3 + sum(_value_size(x) + 1 for x in v)
    if t == "M":
        return 3 + sum(len(k.encode()) + _value_size(x) + 1 for k, x in v.items())
    return 0


def to_botocore(item: WireItem) -> dict[str, Any]:
    """Wire item to botocore params: base64 text becomes bytes (exactly once)."""
    return {name: _attr_to_botocore(value) for name, value in item.items()}


def _attr_to_botocore(value: dict[str, Any]) -> dict[str, Any]:
    ((t, v),) = value.items()
    if t == "B":
        return {"B": _b64(v)}
    if t == "BS":
        return {"BS": [_b64(b) for b in v]}
    if t == "L":
        return {"L": [_attr_to_botocore(x) for x in v]}
    if t == "M":
        return {"M": {k: _attr_to_botocore(x) for k, x in v.items()}}
    return value


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("binary attribute is not valid base64") from exc
