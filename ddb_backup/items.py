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
import collections
import functools
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NewType, cast

import jsonschema_rs
import orjson

from ddb_backup.errors import CorruptDataError

__all__ = [
    "KEY_TYPES",
    "MAX_ITEM_BYTES",
    "CanonicalLine",
    "KeySpec",
    "Request",
    "WireItem",
    "WireRequest",
    "canonical_puts",
    "check_item_line",
    "check_item_lines",
    "check_wire_item",
    "from_botocore",
    "item_of_verified_line",
    "key_spec",
    "number_size",
    "request_from_botocore",
    "request_to_botocore",
    "to_botocore",
    "wire_item_size",
    "wire_request",
]

WireItem = dict[str, Any]
#: A ``PutRequest``/``DeleteRequest`` of BatchWriteItem, its item or key a wire item.
WireRequest = dict[str, Any]


#: An export line that :func:`check_item_lines` proved canonical in this process
#: (it passed the rules and is the shortest text of its value: no name twice),
#: read again from the same pinned object: its bytes are that checked value, so
#: no parser can read anything else in them, and it is a put request's value as
#: it stands (``{"PutRequest":LINE}``). A type for the checker only (no copy at
#: run time): a request that is ``bytes`` is one, and only :func:`canonical_puts` makes them.
CanonicalLine = NewType("CanonicalLine", bytes)

#: A request as the writer carries it: parsed, or a proven line.
Request = WireRequest | CanonicalLine


def wire_request(request: Request) -> WireRequest:
    """``request`` as a parsed wire request (a :data:`CanonicalLine` parsed)."""
    if type(request) is bytes:
        return {"PutRequest": orjson.loads(request)}
    assert isinstance(request, dict)
    return request


def canonical_puts(lines: list[bytes]) -> list[Request]:
    """Put requests carrying ``lines`` as they stand: only for lines of a file
    every line of which :func:`check_item_lines` proved canonical, read from the
    object it verified (see :data:`CanonicalLine`)."""
    return cast("list[Request]", lines)


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
_NUMBER = r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
# Base64 as encoders write it: groups of four, padded (binascii's strict mode, less
# its stray "=" after a whole group).
_BASE64 = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"


def key_spec(key_names: Sequence[str], types: Mapping[str, str]) -> KeySpec:
    """``(name, type)`` per key attribute, HASH first, from a table's definitions."""
    return tuple((name, types.get(name, "")) for name in key_names)


# The shape of DynamoDB JSON as a JSON Schema, validated by jsonschema-rs (Rust):
# about a microsecond per line where a Python walk over every attribute took four,
# and the rules read as a declaration rather than as code. Nesting is unrolled
# into one definition per level, so L and M stop at DynamoDB's 32 levels.
def _set_of(element: dict[str, Any]) -> dict[str, Any]:
    # DynamoDB refuses empty sets and duplicates; no export writes them.
    return {"type": "array", "minItems": 1, "uniqueItems": True, "items": element}


def _value_schema(depth: int) -> dict[str, Any]:
    """One typed value (``{"S": "..."}`` and so on) at nesting ``depth``."""
    number = {"type": "string", "pattern": _NUMBER}
    binary = {"type": "string", "pattern": _BASE64}
    types: dict[str, Any] = {
        "S": {"type": "string"},
        "N": number,
        "B": binary,
        "BOOL": {"type": "boolean"},
        "NULL": {"const": True},
        "SS": _set_of({"type": "string"}),
        "NS": _set_of(number),
        "BS": _set_of(binary),
    }
    if depth < _MAX_DEPTH:
        inner = {"$ref": f"#/$defs/v{depth + 1}"}
        types["L"] = {"type": "array", "items": inner}
        types["M"] = {"type": "object", "additionalProperties": inner}
    return {
        "type": "object",
        "minProperties": 1,
        "maxProperties": 1,
        "additionalProperties": False,
        "properties": types,
    }


def _key_value_schema(want: str) -> dict[str, Any]:
    """A key attribute's value: of the key's type (any key type if unknown), not empty."""
    wanted = [want] if want else sorted(KEY_TYPES)
    return {
        "propertyNames": {"enum": wanted},
        "properties": {t: {"type": "string", "minLength": 1} for t in wanted},
    }


def _item_schema(keys: KeySpec) -> dict[str, Any]:
    value = {"$ref": "#/$defs/v0"}
    return {
        "type": "object",
        "minProperties": 1,
        "propertyNames": {"minLength": 1},
        "additionalProperties": value,
        "properties": {name: {"allOf": [value, _key_value_schema(t)]} for name, t in keys},
        "required": [name for name, _ in keys],
    }


def _with_values(schema: dict[str, Any]) -> dict[str, Any]:
    return {"$defs": {f"v{d}": _value_schema(d) for d in range(_MAX_DEPTH + 1)}, **schema}


@functools.lru_cache(maxsize=64)
def _line_validator(keys: KeySpec) -> Callable[[Any], bool]:
    """``is_valid`` for a parsed line: one member, ``Item``, an item with ``keys``."""
    line = {
        "type": "object",
        "required": ["Item"],
        "additionalProperties": False,
        "properties": {"Item": _item_schema(keys)},
    }
    is_valid: Callable[[Any], bool] = jsonschema_rs.validator_for(_with_values(line)).is_valid
    return is_valid


@functools.lru_cache(maxsize=64)
def _item_validator(keys: KeySpec) -> Callable[[Any], bool]:
    """``is_valid`` for a bare item (a change record's ``Keys`` or image)."""
    is_valid: Callable[[Any], bool] = jsonschema_rs.validator_for(
        _with_values(_item_schema(keys))
    ).is_valid
    return is_valid


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
    if not _line_validator(keys)(doc):
        inner = doc.get("Item") if type(doc) is dict and len(doc) == 1 else None
        raise _refusal(inner, key=key, line_no=line_no, keys=keys, what="an item")
    item: WireItem = doc["Item"]
    return _within_size(item, key=key, line_no=line_no, line_bytes=len(line))


def check_item_lines(
    lines: Sequence[bytes],
    *,
    key: str,
    first_line_no: int,
    keys: KeySpec = (),
    on_item: Callable[[WireItem], None] | None = None,
    canonical: bool = False,
) -> bool:
    """:func:`check_item_line` on every line of a block (the first numbered
    ``first_line_no``), calling ``on_item`` with each item when given.

    The rules run in compiled code (parse and schema) with no Python step per
    line but ``on_item``; a block that fails, or holds a line long enough to need
    measuring, is checked line by line, for the error naming the line.

    Returns, when ``canonical`` is asked, whether every line is ``orjson.dumps``
    of what it parsed to (:func:`_encodes_as`): such a line holds no name
    twice, no space, no needless escape, nothing a parser could read another
    way (:data:`CanonicalLine`). Else False.
    """
    is_valid = _line_validator(keys)
    if lines and max(map(len, lines)) > MAX_ITEM_BYTES:
        docs: list[Any] = []
        for line_no, line in enumerate(lines, first_line_no):  # long lines are measured
            item = check_item_line(line, key=key, line_no=line_no, keys=keys)
            if on_item is not None:
                on_item(item)
            if canonical:
                docs.append({"Item": item})
        return canonical and _encodes_as(docs, lines)
    try:
        every_canonical = canonical
        for at in range(0, len(lines), _PARSED_AT_ONCE):
            part = lines[at : at + _PARSED_AT_ONCE]
            docs = list(map(orjson.loads, part))
            if not all(map(is_valid, docs)):
                break
            if on_item is not None:
                # Consumed in C: the only Python step per item is on_item itself.
                collections.deque(map(on_item, map(_ITEM, docs)), maxlen=0)
            every_canonical = every_canonical and _encodes_as(docs, part)
        else:
            return every_canonical
    except orjson.JSONDecodeError:
        pass
    # A line was refused: the same check line by line names it (the file fails,
    # whatever ``on_item`` saw before).
    for line_no, line in enumerate(lines, first_line_no):
        check_item_line(line, key=key, line_no=line_no, keys=keys)
    raise CorruptDataError(f"lines {first_line_no} on were refused", key=key)  # not reached


_ITEM = operator.itemgetter("Item")

#: Lines parsed before they are checked and dropped: parsed items are objects the
#: cyclic collector tracks, and a whole block of them alive at once (thousands)
#: made it run often enough to cost more than the parse itself.
_PARSED_AT_ONCE = 64


def _encodes_as(docs: list[Any], lines: Sequence[bytes]) -> bool:
    """Whether each line is ``orjson.dumps`` of what it parsed to, judged by length.

    For a line the rules passed (no bare JSON numbers: DynamoDB's are strings),
    ``orjson.dumps`` of its value is the shortest text of that value: no space,
    each name once, strings escaped only where JSON requires it, with the
    shortest escape. Any other text of the value is longer, a repeated name (the
    one thing two parsers can read differently) included, except a ``\\u00XX``
    escape of a control character spelled in the other case, which every parser
    reads alike. So the block's lines hold no more bytes than their values
    encoded (one ``dumps`` of the block, no per-line bytes) exactly when each is
    its value's text.
    """
    if not lines:
        return True
    try:
        # dumps(docs) is "[" + the encoded lines joined by "," + "]".
        return len(orjson.dumps(docs)) == sum(map(len, lines)) + len(lines) + 1
    except orjson.JSONEncodeError:  # e.g. a lone surrogate escape: not canonical
        return False


def item_of_verified_line(line: bytes, *, key: str, line_no: int) -> WireItem:
    """The item of a line :func:`check_item_line` passed in this restore, read
    again from the same pinned object (S3 VersionId, else ETag).

    The pin guarantees the bytes, and the end of the file re-checks its MD5 and
    line count, so the rules are not evaluated a second time; the line is still
    parsed, so a request can only ever carry this line's own ``Item``.
    """
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise CorruptDataError(f"line {line_no} is not JSON", key=key) from exc
    item = doc.get("Item") if type(doc) is dict and len(doc) == 1 else None
    if type(item) is not dict or not item:
        raise CorruptDataError(f"line {line_no} is not an item", key=key)
    return item


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
    if not _item_validator(keys)(item):
        raise _refusal(item, key=key, line_no=line_no, keys=keys, what=what)
    checked: WireItem = item
    return _within_size(checked, key=key, line_no=line_no, line_bytes=line_bytes)


def _refusal(item: Any, *, key: str, line_no: int, keys: KeySpec, what: str) -> CorruptDataError:
    """Why a line the schema refused is not an item, in words that name no value
    (key names come from the table's schema, not from the data: safe to name)."""
    if type(item) is not dict or not item:
        return CorruptDataError(f"line {line_no} is not {what}", key=key)
    for name, want in keys:
        value = item.get(name)
        if value is None:
            return CorruptDataError(f"line {line_no} lacks key attribute {name!r}", key=key)
        if type(value) is not dict or len(value) != 1:
            break
        ((t, x),) = value.items()
        if t not in KEY_TYPES or (want and t != want):
            return CorruptDataError(
                f"line {line_no}: key attribute {name!r} is of type {t}, "
                f"the table's key is {want or 'S, N or B'}",
                key=key,
            )
        if x == "":
            return CorruptDataError(f"line {line_no}: key attribute {name!r} is empty", key=key)
    return CorruptDataError(f"line {line_no} has an attribute that is not DynamoDB JSON", key=key)


def _within_size(item: WireItem, *, key: str, line_no: int, line_bytes: int | None) -> WireItem:
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
