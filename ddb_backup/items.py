"""DynamoDB JSON items as they stand in an export, checked and converted.

A *wire item* is the ``{"attr": {"S": "..."}, ...}`` mapping of an export
line, binary values still base64 text. It is what BatchWriteItem's JSON body
carries too; the generic botocore path needs :func:`to_botocore` (base64 text
to bytes, once, never twice).

Lines are data, never syntax: :func:`check_item_line` is the one check every
line of every file passes before it can reach a request (backup verification,
``verify``, dry runs and real restores all call it), and requests are built
from the value it returns, never from the line's bytes.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from ddb_backup.errors import CorruptDataError

__all__ = [
    "KEY_TYPES",
    "MAX_ITEM_BYTES",
    "KeySpec",
    "WireItem",
    "WireRequest",
    "check_item_line",
    "check_wire_item",
    "from_botocore",
    "key_spec",
    "number_size",
    "request_from_botocore",
    "request_to_botocore",
    "to_botocore",
    "wire_item_size",
]

WireItem = dict[str, Any]
#: A ``PutRequest``/``DeleteRequest`` of BatchWriteItem, its item or key a wire item.
WireRequest = dict[str, Any]
#: The key attributes an item must carry: ``(name, "S" | "N" | "B" | "")``,
#: HASH first (an empty type accepts any of the three, for old checkpoints).
KeySpec = tuple[tuple[str, str], ...]

#: DynamoDB's item size limit.
MAX_ITEM_BYTES = 400 * 1024
#: The types a key attribute can have.
KEY_TYPES = frozenset({"S", "N", "B"})
#: DynamoDB's nesting limit for L and M.
_MAX_DEPTH = 32

# A number as DynamoDB reads it (Java BigDecimal syntax, ASCII digits only).
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)


def key_spec(key_names: Sequence[str], types: Mapping[str, str]) -> KeySpec:
    """``(name, type)`` per key attribute, HASH first, from a table's definitions."""
    return tuple((name, types.get(name, "")) for name in key_names)


def _is_base64(text: str) -> bool:
    try:
        binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):  # ValueError: non-ASCII text
        return False
    return True


def _is_number(text: Any) -> bool:
    return type(text) is str and _NUMBER.fullmatch(text) is not None


def _is_set(x: Any) -> bool:
    # A non-empty list of strings without duplicates (DynamoDB refuses the rest;
    # no export writes them).
    return type(x) is list and bool(x) and all(type(e) is str for e in x) and len(set(x)) == len(x)


def _valid_value(value: Any, depth: int) -> bool:
    """True when ``value`` is one typed DynamoDB JSON value, nested values included."""
    if type(value) is not dict or len(value) != 1:
        return False
    ((t, x),) = value.items()
    if t == "S":
        return type(x) is str
    if t == "N":
        return _is_number(x)
    if t == "B":
        return type(x) is str and _is_base64(x)
    if t == "BOOL":
        return type(x) is bool
    if t == "NULL":
        return x is True
    if t == "SS":
        return _is_set(x)
    if t == "NS":
        return _is_set(x) and all(map(_is_number, x))
    if t == "BS":
        return _is_set(x) and all(map(_is_base64, x))
    if depth >= _MAX_DEPTH:
        return False
    if t == "L":
        return type(x) is list and all(_valid_value(e, depth + 1) for e in x)
    if t == "M":
        return type(x) is dict and all(_valid_value(e, depth + 1) for e in x.values())
    return False


def check_item_line(line: bytes, *, key: str, line_no: int, keys: KeySpec = ()) -> WireItem:
    """Parse one export line and prove it is exactly one item; return the item.

    The line must be one JSON object with the single member ``Item`` (nothing
    before or after it), whose value is a non-empty object of typed
    attributes: every value, nested ones included, of DynamoDB's shape (``N``
    a number, ``B``/``BS`` valid base64, sets non-empty lists without
    duplicates, ``L``/``M`` at most 32 deep). ``keys`` must be present with
    their types and not empty; the item must be within 400 KB by DynamoDB's
    rules. Raises :class:`CorruptDataError` naming the file and the line,
    never a value (attribute names of data are not named either).
    """
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise CorruptDataError(f"line {line_no} is not JSON", key=key) from exc
    item = doc.get("Item") if type(doc) is dict and len(doc) == 1 else None
    return check_wire_item(item, key=key, line_no=line_no, keys=keys, line_bytes=len(line))


def check_wire_item(
    item: Any,
    *,
    key: str,
    line_no: int,
    keys: KeySpec = (),
    line_bytes: int | None = None,
    what: str = "an item",
) -> WireItem:
    """``item`` if it is one item as :func:`check_item_line` describes, else
    :class:`CorruptDataError` naming ``what`` (e.g. "a record with NewImage")
    and the line. ``line_bytes``: the length of the line it came from, which
    bounds the item's size (only longer lines are measured)."""
    if type(item) is not dict or not item:
        raise CorruptDataError(f"line {line_no} is not {what}", key=key)
    if "" in item or not all(_valid_value(v, 0) for v in item.values()):
        raise CorruptDataError(
            f"line {line_no} has an attribute that is not DynamoDB JSON", key=key
        )
    for name, want in keys:
        # Key names come from the table's schema, not from the data: safe to name.
        value = item.get(name)
        if value is None:
            raise CorruptDataError(f"line {line_no} lacks key attribute {name!r}", key=key)
        ((t, x),) = value.items()
        if t not in KEY_TYPES or (want and t != want):
            raise CorruptDataError(
                f"line {line_no}: key attribute {name!r} is of type {t}, "
                f"the table's key is {want or 'S, N or B'}",
                key=key,
            )
        if x == "":
            raise CorruptDataError(f"line {line_no}: key attribute {name!r} is empty", key=key)
    # An item's DynamoDB size never exceeds its line's length (names and strings
    # appear whole, base64 is 4/3 of its bytes, numbers and tags are longer as
    # text), so only long lines are measured.
    if (line_bytes is None or line_bytes > MAX_ITEM_BYTES) and wire_item_size(
        item
    ) > MAX_ITEM_BYTES:
        raise CorruptDataError(f"line {line_no} is over DynamoDB's 400 KB limit", key=key)
    return item


def wire_item_size(item: WireItem) -> int:
    """DynamoDB's size of a (checked) item, by the documented rules: names and
    strings in UTF-8 bytes, numbers by significant digits, binaries decoded."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def number_size(text: str) -> int:
    """About 1 byte per 2 significant digits, plus 1 (leading/trailing zeros,
    sign, decimal point and exponent do not count)."""
    mantissa = text.lstrip("+-").split("e", 1)[0].split("E", 1)[0]
    digits = mantissa.replace(".", "").strip("0")
    return (len(digits) + 1) // 2 + 1


def _binary_size(text: str) -> int:
    return len(text) * 3 // 4 - text[-2:].count("=")


def _value_size(value: dict[str, Any]) -> int:
    ((t, v),) = value.items()
    if t == "S":
        return len(v.encode())
    if t == "N":
        return number_size(v)
    if t == "B":
        return _binary_size(v)
    if t in {"BOOL", "NULL"}:
        return 1
    if t == "SS":
        return sum(len(s.encode()) for s in v)
    if t == "NS":
        return sum(map(number_size, v))
    if t == "BS":
        return sum(map(_binary_size, v))
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


def from_botocore(item: dict[str, Any]) -> WireItem:
    """botocore item (bytes for binary) -> wire item (base64 text), the inverse of
    :func:`to_botocore`."""
    return {name: _attr_to_wire(value) for name, value in item.items()}


def request_to_botocore(request: WireRequest) -> dict[str, Any]:
    """A wire ``PutRequest``/``DeleteRequest`` in botocore's form (bytes for binary)."""
    if "PutRequest" in request:
        return {"PutRequest": {"Item": to_botocore(request["PutRequest"]["Item"])}}
    return {"DeleteRequest": {"Key": to_botocore(request["DeleteRequest"]["Key"])}}


def request_from_botocore(request: dict[str, Any]) -> WireRequest:
    """A parsed ``PutRequest``/``DeleteRequest`` back to wire form."""
    if "PutRequest" in request:
        return {"PutRequest": {"Item": from_botocore(request["PutRequest"]["Item"])}}
    return {"DeleteRequest": {"Key": from_botocore(request["DeleteRequest"]["Key"])}}


def _attr_to_wire(value: dict[str, Any]) -> dict[str, Any]:
    ((t, v),) = value.items()
    if t == "B":
        return {"B": _b64text(v)}
    if t == "BS":
        return {"BS": [_b64text(b) for b in v]}
    if t == "L":
        return {"L": [_attr_to_wire(x) for x in v]}
    if t == "M":
        return {"M": {k: _attr_to_wire(x) for k, x in v.items()}}
    return value


def _b64text(v: bytes | str) -> str:
    # botocore parses B as bytes; a stubbed response may already hold text.
    return v if isinstance(v, str) else base64.b64encode(v).decode("ascii")
