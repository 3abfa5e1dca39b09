"""The per-line check's rules are a JSON Schema run by jsonschema-rs (issue 13): it must
agree with DynamoDB JSON as the rules are written, so it is tested against a plain
reference walk of those rules on values built to be nearly right, and its base64 and
number patterns against binascii and Python's ``re``."""

from __future__ import annotations

import binascii
import re
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ddb_backup.errors import CorruptDataError
from ddb_backup.items import check_item_line, check_wire_item
from tests.support.strategies import b64, names, numbers, texts, values

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)


def _b64_ok(text: Any) -> bool:
    # What binascii's strict mode decodes, padded to groups of four: strict mode
    # alone also takes "0000=" (a stray pad after a whole group), no encoder's output.
    if type(text) is not str or len(text) % 4:
        return False
    try:
        binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _number_ok(text: Any) -> bool:
    return type(text) is str and _NUMBER.fullmatch(text) is not None


def _set_ok(x: Any) -> bool:
    return type(x) is list and bool(x) and all(type(e) is str for e in x) and len(set(x)) == len(x)


def reference_value_ok(value: Any, depth: int = 0) -> bool:
    """DynamoDB JSON's rules for one typed value, written out plainly."""
    if type(value) is not dict or len(value) != 1:
        return False
    ((t, x),) = value.items()
    scalar = {
        "S": lambda: type(x) is str,
        "N": lambda: _number_ok(x),
        "B": lambda: _b64_ok(x),
        "BOOL": lambda: type(x) is bool,
        "NULL": lambda: x is True,
        "SS": lambda: _set_ok(x),
        "NS": lambda: _set_ok(x) and all(map(_number_ok, x)),
        "BS": lambda: _set_ok(x) and all(map(_b64_ok, x)),
    }
    if t in scalar:
        return scalar[t]()
    if depth >= 32 or t not in ("L", "M"):
        return False
    if t == "L":
        return type(x) is list and all(reference_value_ok(e, depth + 1) for e in x)
    return type(x) is dict and all(reference_value_ok(e, depth + 1) for e in x.values())


def schema_accepts(item: Any) -> bool:
    try:
        check_wire_item(item, key="k", line_no=1)
    except CorruptDataError:
        return False
    return True


# Values that are nearly DynamoDB JSON: the right tags with wrong payloads, wrong tags,
# two tags, JSON types that Python confuses (1 and True), bad numbers and base64.
junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 2),
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
    st.sampled_from(["1e", "+.5", "1.", ".", "--1", "\u0661", "QQ", "QQ=", "QQ==", "Q===", "=QQ="]),
)
tags = st.sampled_from(["S", "N", "B", "BOOL", "NULL", "SS", "NS", "BS", "L", "M", "X", "s", ""])
near_values = st.recursive(
    st.one_of(
        values,
        st.dictionaries(tags, junk, max_size=2),
        st.tuples(tags, junk).map(lambda tx: {tx[0]: tx[1]}),
        st.dictionaries(tags, st.lists(junk, max_size=3), min_size=1, max_size=1),
        st.lists(numbers | b64, max_size=2).map(lambda v: {"NS": v}),
    ),
    lambda inner: st.one_of(
        st.dictionaries(st.sampled_from(["L", "M", "S"]), st.lists(inner, max_size=3), max_size=1),
        st.dictionaries(
            st.sampled_from(["M", "L"]), st.dictionaries(names, inner, max_size=2), max_size=1
        ),
    ),
    max_leaves=6,
)


@SETTINGS
@given(st.dictionaries(names | st.just(""), near_values, max_size=4))
def test_schema_agrees_with_the_written_rules(item: dict[str, Any]) -> None:
    expected = bool(item) and "" not in item and all(map(reference_value_ok, item.values()))
    assert schema_accepts(item) is expected


@SETTINGS
@given(st.text(alphabet="AQwz09+/=-_ \n\u00e9", max_size=10))
def test_base64_pattern_is_binascii_strict(text: str) -> None:
    assert schema_accepts({"b": {"B": text}}) is _b64_ok(text)


@SETTINGS
@given(st.text(alphabet="0123456789+-.eE \u0661x", max_size=8))
def test_number_pattern_is_dynamodb_number_syntax(text: str) -> None:
    assert schema_accepts({"n": {"N": text}}) is _number_ok(text)


@pytest.mark.parametrize(
    "value",
    [{"BOOL": 1}, {"BOOL": 0}, {"NULL": 1}, {"NULL": False}, {"N": 1}, {"S": 1.5}, {"SS": [1]}],
)
def test_wrong_json_types_are_refused(value: dict[str, Any]) -> None:
    line = orjson.dumps({"Item": {"pk": {"S": "a"}, "x": value}})
    with pytest.raises(CorruptDataError, match="line 3 has an attribute that is not DynamoDB JSON"):
        check_item_line(line, key="k", line_no=3)


def test_nesting_is_allowed_to_exactly_32_levels() -> None:
    deepest: dict[str, Any] = {"S": "x"}
    for _ in range(32):
        deepest = {"L": [deepest]}
    assert schema_accepts({"a": deepest})
    assert reference_value_ok(deepest)
    assert not schema_accepts({"a": {"M": {"m": deepest}}})
