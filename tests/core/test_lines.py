"""Lines are data, never syntax: the one per-line check, request bodies built from
its value, and item sizes by DynamoDB's documented rules (issue 10, points 1, 2, 6)."""

from __future__ import annotations

import base64
import gzip
import json
import math
import random
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ddb_backup.errors import ChecksumMismatchError, CorruptDataError, ItemCountMismatchError
from ddb_backup.export_folder import ExpectedFile
from ddb_backup.items import (
    MAX_ITEM_BYTES,
    canonical_puts,
    check_item_line,
    check_item_lines,
    item_of_verified_line,
    wire_item_size,
)
from ddb_backup.restore.sender import batch_body
from ddb_backup.restore.writer import put_request
from ddb_backup.storage import LocalStorage
from ddb_backup.verify import verify_file
from tests.support.data import SMUGGLING, every_type_items, export_lines, gzip_lines, md5_b64
from tests.support.strategies import numbers, values, wire_items

LINES = export_lines(every_type_items(12))
KEYS = (("pk", "S"), ("sk", "S"))
TARGET = "target-table"
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(line: bytes, keys: Any = KEYS) -> dict[str, Any]:
    return check_item_line(line, key="data/x.json.gz", line_no=7, keys=keys)


def test_every_type_passes_and_is_returned_as_parsed() -> None:
    for line in LINES:
        assert check(line) == orjson.loads(line)["Item"]


@pytest.mark.parametrize("line", SMUGGLING)
def test_smuggling_lines_are_refused(line: bytes) -> None:
    with pytest.raises(CorruptDataError, match="line 7 is not JSON"):
        check(line)


GOOD = {"pk": {"S": "a"}, "sk": {"S": "b"}}


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({"Item": GOOD, "ReturnValues": "ALL_OLD"}, "not an item"),  # a second member
        ({"Item": {}}, "not an item"),
        ([{"Item": GOOD}], "not an item"),
        ({"Item": {**GOOD, "x": {"X": "1"}}}, "not DynamoDB JSON"),  # unknown type tag
        ({"Item": {**GOOD, "x": {"S": "1", "N": "1"}}}, "not DynamoDB JSON"),
        ({"Item": {**GOOD, "x": {"S": 1}}}, "not DynamoDB JSON"),
        ({"Item": {**GOOD, "x": {"N": "12abc"}}}, "not DynamoDB JSON"),
        ({"Item": {**GOOD, "x": {"N": 12}}}, "not DynamoDB JSON"),
        ({"Item": {**GOOD, "x": {"B": "not base64!"}}}, "not DynamoDB JSON"),
        ({"Item": {**GOOD, "x": {"B": "QQ"}}}, "not DynamoDB JSON"),  # padding missing
        ({"Item": {**GOOD, "x": {"BS": ["QQ==", "@@@@"]}}}, "not DynamoDB JSON"),
        ({"Item": {**GOOD, "x": {"SS": []}}}, "not DynamoDB JSON"),
        ({"Item": {**GOOD, "x": {"SS": ["a", "a"]}}}, "not DynamoDB JSON"),
        ({"Item": {**GOOD, "x": {"NS": ["1", "x"]}}}, "not DynamoDB JSON"),
        ({"Item": {**GOOD, "x": {"BOOL": "true"}}}, "not DynamoDB JSON"),
        ({"Item": {**GOOD, "x": {"NULL": False}}}, "not DynamoDB JSON"),
        ({"Item": {**GOOD, "x": {"L": [{"S": "a"}, {"B": "%%%%"}]}}}, "not DynamoDB JSON"),
        ({"Item": {**GOOD, "x": {"M": {"k": {"Q": "a"}}}}}, "not DynamoDB JSON"),
        ({"Item": {**GOOD, "x": {"L": {"S": "a"}}}}, "not DynamoDB JSON"),
        ({"Item": {**GOOD, "": {"S": "a"}}}, "not DynamoDB JSON"),
        ({"Item": {"sk": {"S": "b"}}}, "lacks key attribute 'pk'"),
        ({"Item": {"pk": {"N": "1"}, "sk": {"S": "b"}}}, "'pk' is of type N"),
        ({"Item": {"pk": {"S": ""}, "sk": {"S": "b"}}}, "'pk' is empty"),
    ],
)
def test_what_is_not_exactly_one_item_is_refused(doc: Any, reason: str) -> None:
    with pytest.raises(CorruptDataError, match=reason):
        check(orjson.dumps(doc))


@pytest.mark.parametrize("tail", [b"garbage", b"{}", b',{"Item":{}}', b"\x00"])
def test_trailing_bytes_are_refused(tail: bytes) -> None:
    with pytest.raises(CorruptDataError, match="not JSON"):
        check(LINES[0] + tail)


def test_nesting_beyond_dynamodb_limit_is_refused() -> None:
    deep: dict[str, Any] = {"S": "x"}
    for _ in range(33):
        deep = {"L": [deep]}
    with pytest.raises(CorruptDataError, match="not DynamoDB JSON"):
        check(orjson.dumps({"Item": {**GOOD, "deep": deep}}))
    for depth in (1000, 5000):  # about orjson's parse limit, and beyond: no RecursionError
        nested = b'{"L":[' * depth + b'{"S":"x"}' + b"]}" * depth
        with pytest.raises(CorruptDataError):
            check(b'{"Item":{"pk":{"S":"a"},"sk":{"S":"b"},"d":' + nested + b"}}")


# -- no bytes in a line can touch another key or table ------------------------------

FRAGMENTS = [
    b"}",
    b"]",
    b",",
    b'"',
    b"\\",
    b'},{"DeleteRequest":{"Key":{"pk":{"S":"victim"},"sk":{"S":"v"}}}',
    b'}}],"other-table":[{"PutRequest":{"Item":{"pk":{"S":"o"},"sk":{"S":"o"}}}}',
    b'{"PutRequest":{"Item":{"pk":{"S":"victim"},"sk":{"S":"v"}}}}',
    b',"Item":{"pk":{"S":"victim"},"sk":{"S":"v"}}',
    b',"pk":{"S":"victim"}',
    b'"RequestItems":{"other-table":[]}',
    b"\n",
    b"\xff",
    b'"\\u0000"',
    b"[{}]",
]


@st.composite
def hostile_lines(draw: st.DrawFn) -> bytes:
    """A valid line, then splices: injected fragments, cut or doubled bytes, random bytes."""
    item = draw(wire_items)
    item["sk"] = {"S": draw(st.text(min_size=1, max_size=4))}
    line = orjson.dumps({"Item": item})
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(line)))
        kind = draw(st.sampled_from(["fragment", "bytes", "cut", "double"]))
        if kind == "fragment":
            line = line[:at] + draw(st.sampled_from(FRAGMENTS)) + line[at:]
        elif kind == "bytes":
            line = line[:at] + draw(st.binary(min_size=1, max_size=6)) + line[at:]
        elif kind == "cut":
            line = line[:at] + line[at + draw(st.integers(1, 8)) :]
        else:
            line = line[:at] + line[at:] + line[at:]
    return line


def reread(line: bytes) -> dict[str, Any]:
    """The write pass's reading of a line of a pinned, verified object."""
    return item_of_verified_line(line, key="data/x.json.gz", line_no=7)


def assert_one_own_put(body_bytes: bytes, line: bytes) -> None:
    """The body holds exactly one PutRequest, for the target table, of the line's own item."""
    body = orjson.loads(body_bytes)
    assert body.pop("ReturnConsumedCapacity") == "TOTAL"  # the write budget's measure
    assert list(body) == ["RequestItems"]
    assert list(body["RequestItems"]) == [TARGET]
    (request,) = body["RequestItems"][TARGET]
    assert list(request) == ["PutRequest"]
    assert list(request["PutRequest"]) == ["Item"]
    assert request["PutRequest"]["Item"] == orjson.loads(line)["Item"]


@pytest.mark.parametrize("read", [check, reread], ids=["checked", "pinned-reread"])
@SETTINGS
@given(line=st.one_of(hostile_lines(), st.binary(max_size=64), st.sampled_from(SMUGGLING)))
def test_no_line_can_make_a_request_touch_another_key_or_table(
    read: Callable[[bytes], dict[str, Any]], line: bytes
) -> None:
    """Either the line is refused, or the BatchWriteItem body built from it holds
    exactly one PutRequest, for the target table, whose item is the line's own: by
    the full check, and by the parse alone that re-reads of a pinned object get (an
    object swapped behind an ETag pin still could not touch another key or table)."""
    try:
        item = read(line)
    except CorruptDataError:
        return
    assert_one_own_put(batch_body(TARGET, [put_request(item)]), line)


def as_the_restore_sends(line: bytes) -> bytes:
    """The body of a verified line: as it stands when proven canonical, else parsed."""
    canonical = check_item_lines([line], key="data/x.json.gz", first_line_no=1, canonical=True)
    return batch_body(TARGET, canonical_puts([line]) if canonical else [put_request(check(line))])


@SETTINGS
@given(
    line=st.one_of(
        hostile_lines(),
        st.builds(lambda item: orjson.dumps({"Item": item}), wire_items),
        st.sampled_from(SMUGGLING),
    )
)
def test_no_line_sent_as_it_stands_can_touch_another_key_or_table(line: bytes) -> None:
    """The same promise where a canonical line's bytes go into the body as they stand."""
    try:
        check(line, keys=())
    except CorruptDataError:
        return
    assert_one_own_put(as_the_restore_sends(line), line)


@pytest.mark.parametrize(
    "line",
    [
        b'{"Item":{"pk":{"S":"a"},"sk":{"S":"b"},"pk":{"S":"victim"}}}',  # a name twice
        b'{"Item":{"pk":{"S":"victim"},"sk":{"S":"v"}},"Item":{"pk":{"S":"a"},"sk":{"S":"b"}}}',
        b'{"Item": {"pk":{"S":"a"},"sk":{"S":"b"}}}',  # a space
        b'{"Item":{"pk":{"S":"\\u0061"},"sk":{"S":"b"}}}',  # an escape for a plain letter
        b'{"Item":{"pk":{"S":"a"},"sk":{"S":"b"}}}\r',  # a CR before the newline
    ],
    ids=["name-twice", "item-twice", "space", "escape", "cr"],
)
def test_a_line_another_parser_could_read_otherwise_is_not_sent_as_it_stands(
    line: bytes,
) -> None:
    """Valid JSON that is not exactly its parsed value re-encoded is never canonical:
    the body is encoded from the checked value, so DynamoDB gets what was checked."""
    assert not check_item_lines([line], key="k", first_line_no=1, canonical=True)
    body = as_the_restore_sends(line)
    assert orjson.loads(body)["RequestItems"][TARGET] == [{"PutRequest": {"Item": check(line)}}]
    assert body.count(b'"pk"') == 1


def encode_loosely(rng: random.Random, value: Any) -> bytes:
    """Some JSON text of ``value``: spaces, needless escapes in either hex case,
    and names given twice (with another value), at random."""

    def space() -> bytes:
        return rng.choice([b"", b"", b"", b"", b" ", b"\t"])

    if isinstance(value, dict):
        members = list(value.items())
        if members and rng.random() < 0.2:  # a name twice
            name, _ = rng.choice(members)
            other = rng.choice([{"S": "other"}, {"NULL": True}, {}])
            members.insert(rng.randint(0, len(members)), (name, other))
        parts = [
            space() + encode_loosely(rng, name) + space() + b":" + encode_loosely(rng, v)
            for name, v in members
        ]
        return b"{" + b",".join(parts) + space() + b"}"
    if isinstance(value, list):
        return b"[" + b",".join(encode_loosely(rng, v) for v in value) + b"]"
    text = orjson.dumps(value)
    if isinstance(value, str) and value and rng.random() < 0.2:
        at = rng.randrange(len(value))
        if ord(value[at]) < 0xD800:  # one character escaped, in either hex case
            escape = rng.choice(["\\u%04x", "\\u%04X"]) % ord(value[at])
            text = (
                orjson.dumps(value[:at])[:-1] + escape.encode() + orjson.dumps(value[at + 1 :])[1:]
            )
    return text


def strict_json(line: bytes) -> Any:
    """The standard library's reading of ``line``, refusing a name given twice."""

    def members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        names = [name for name, _ in pairs]
        assert len(set(names)) == len(names), "a name twice"
        return dict(pairs)

    return json.loads(line, object_pairs_hook=members)


@SETTINGS
@given(st.integers(0, 2**32), wire_items)
def test_a_line_judged_canonical_reads_alike_in_every_parser(seed: int, item: Any) -> None:
    """The length argument of ``items._encodes_as``: a checked line is judged
    canonical only when it is its value's shortest text, so a parser that refuses
    repeated names reads the very value orjson checked; every other line is not."""
    line = encode_loosely(random.Random(seed), {"Item": item})
    try:
        canonical = check_item_lines([line], key="k", first_line_no=1, canonical=True)
    except CorruptDataError:
        return
    shortest = orjson.dumps(orjson.loads(line))
    if canonical:
        assert strict_json(line) == orjson.loads(line)
        assert line.lower() == shortest.lower()  # at most an escape's hex case differs
    else:
        assert len(line) > len(shortest)


def test_canonical_lines_are_sent_byte_for_byte_and_mixed_bodies_parse_alike() -> None:
    assert check_item_lines(LINES, key="k", first_line_no=1, keys=KEYS, canonical=True)
    assert not check_item_lines(LINES, key="k", first_line_no=1, keys=KEYS)  # not asked
    encoded = canonical_puts(LINES[:3])
    mixed = [*encoded, put_request(check(LINES[3]))]
    body = batch_body(TARGET, mixed)
    for line in LINES[:3]:
        assert b'{"PutRequest":' + line + b"}" in body
    parsed = [put_request(check(line)) for line in LINES[:4]]
    assert orjson.loads(body) == orjson.loads(batch_body(TARGET, parsed))


def test_a_repeated_member_name_sends_the_one_value_that_was_checked() -> None:
    """JSON with a name twice is ambiguous; the body is built from the parsed value,
    so DynamoDB receives exactly the item that was checked, once."""
    line = b'{"Item":{"pk":{"S":"a"},"sk":{"S":"b"},"pk":{"S":"c"}}}'
    item = check(line)
    body = orjson.loads(batch_body(TARGET, [put_request(item)]))
    assert body == {
        "RequestItems": {TARGET: [{"PutRequest": {"Item": item}}]},
        "ReturnConsumedCapacity": "TOTAL",
    }
    assert batch_body(TARGET, [put_request(item)]).count(b'"pk"') == 1


# -- sizes by DynamoDB's documented rules -------------------------------------------
# "DynamoDB item sizes and formats": names and strings in UTF-8 bytes; numbers about
# 1 byte per 2 significant digits + 1 (leading and trailing zeros trimmed); binaries
# by raw bytes; BOOL/NULL 1; L/M 3 bytes + 1 per element; sets: their elements.


def ref_number(text: str) -> int:
    digits = "".join(c for c in text.upper().split("E")[0] if c.isdigit()).strip("0")
    return math.ceil(len(digits) / 2) + 1


def ref_value(value: dict[str, Any]) -> int:
    ((t, v),) = value.items()
    sizes: dict[str, Any] = {
        "S": lambda: len(v.encode("utf-8")),
        "N": lambda: ref_number(v),
        "B": lambda: len(base64.b64decode(v)),
        "BOOL": lambda: 1,
        "NULL": lambda: 1,
        "SS": lambda: sum(len(s.encode("utf-8")) for s in v),
        "NS": lambda: sum(ref_number(n) for n in v),
        "BS": lambda: sum(len(base64.b64decode(b)) for b in v),
        "L": lambda: 3 + sum(1 + ref_value(e) for e in v),
        "M": lambda: 3 + sum(1 + len(k.encode("utf-8")) + ref_value(e) for k, e in v.items()),
    }
    size: int = sizes[t]()
    return size


def ref_item(item: dict[str, Any]) -> int:
    return sum(len(name.encode("utf-8")) + ref_value(v) for name, v in item.items())


@SETTINGS
@given(wire_items)
def test_item_size_follows_the_documented_rules(item: dict[str, Any]) -> None:
    assert wire_item_size(item) == ref_item(item)


@SETTINGS
@given(numbers, st.sampled_from(["", "0", "00"]), st.sampled_from(["", "E5", "e-3", "E+0"]))
def test_number_size_counts_significant_digits_only(n: str, zeros: str, exp: str) -> None:
    """Sign, leading and trailing zeros, decimal point and exponent add nothing."""
    text = n.split("E")[0] + exp if "." in n else n + zeros + exp
    assert wire_item_size({"n": {"N": text}}) == 1 + ref_number(text)


@SETTINGS
@given(values)
def test_line_is_never_smaller_than_the_item(value: dict[str, Any]) -> None:
    """Why only lines over 400 KB are measured: the size never exceeds the line."""
    item = {"pk": {"S": "k"}, "v": value}
    assert wire_item_size(item) <= len(orjson.dumps({"Item": item}))


def test_issue_examples_are_accepted() -> None:
    # 60,000 millisecond timestamps (whole seconds and odd milliseconds), padded to
    # 407,903 bytes by the rules: under 400 KB, so accepted (it was sized 480,024).
    stamps = [str(1_764_547_200_000 + i * 1000 + (i % 7 == 0) * 123) for i in range(60_000)]
    item = {"pk": {"S": "user-1"}, "sk": {"S": "log"}, "ts": {"NS": stamps}}
    item["pad"] = {"S": "x" * (407_903 - ref_item(item) - len("pad"))}
    assert wire_item_size(item) == ref_item(item) == 407_903
    assert check(orjson.dumps({"Item": item})) == item

    # 12,000 copies of 1E37 (2 bytes each by the rules, 3 with the list's element
    # overhead) in a list, padded to 171,991 bytes: accepted (it was sized 412,032).
    item = {"pk": {"S": "user-2"}, "sk": {"S": "big"}, "n": {"L": [{"N": "1E37"}] * 12_000}}
    item["pad"] = {"B": base64.b64encode(b"\0" * (171_991 - ref_item(item) - 3)).decode()}
    assert wire_item_size(item) == ref_item(item) == 171_991
    assert check(orjson.dumps({"Item": item})) == item


def test_item_over_400_kb_by_the_rules_is_refused() -> None:
    item = {**GOOD, "pad": {"B": base64.b64encode(b"\0" * MAX_ITEM_BYTES).decode()}}
    with pytest.raises(CorruptDataError, match="over DynamoDB's 400 KB"):
        check(orjson.dumps({"Item": item}))


# -- verify_file: every line through the same check ---------------------------------


async def test_verification_names_the_files_whose_every_line_is_canonical(tmp_path: Any) -> None:
    """Only a sound file all of whose lines are canonical may be sent as it stands."""
    spaced = LINES[0].replace(b'{"Item":', b'{"Item": ', 1)
    files = {"all.json.gz": LINES, "one-spaced.json.gz": [*LINES[1:], spaced]}
    canonical: set[str] = set()
    for name, lines in files.items():
        body = gzip_lines(lines)
        (tmp_path / name).write_bytes(body)
        expected = ExpectedFile(key=name, item_count=len(lines), md5=md5_b64(body))
        await verify_file(LocalStorage(tmp_path), expected, keys=KEYS, canonical=canonical)
    assert canonical == {"all.json.gz"}


async def _verify(tmp_path: Any, body: bytes, **expected: Any) -> Any:
    (tmp_path / "f.json.gz").write_bytes(body)
    return await verify_file(
        LocalStorage(tmp_path), ExpectedFile(key="f.json.gz", **expected), keys=KEYS
    )


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (orjson.dumps({"Item": "not-an-item"}), "line 4 is not an item"),
        (b'{"Item":{"sk":{"S":"x"}}}', "line 4 lacks key attribute 'pk'"),
        (b'{"Item":{"pk":{"S":"x"},"sk":{"S":"y"},"z":{"Z":"1"}}}', "line 4 has an attribute"),
        (LINES[0] + b" trailing", "line 4 is not JSON"),
        (SMUGGLING[0], "line 4 is not JSON"),
    ],
)
async def test_bad_line_with_right_md5_is_named(tmp_path: Any, bad: bytes, reason: str) -> None:
    # The MD5 matches (the manifest was written for these bytes): it cannot help.
    lines = [*LINES[:3], bad, *LINES[3:]]
    body = gzip_lines(lines)
    with pytest.raises(CorruptDataError, match=reason):
        await _verify(tmp_path, body, item_count=len(lines), md5=md5_b64(body))


async def test_wrong_md5_and_wrong_count_are_reported(tmp_path: Any) -> None:
    body = gzip_lines(LINES)
    with pytest.raises(ChecksumMismatchError):
        await _verify(tmp_path, body, item_count=len(LINES), md5=md5_b64(b"other"))
    with pytest.raises(ItemCountMismatchError):
        await _verify(tmp_path, body, item_count=len(LINES) + 1, md5=md5_b64(body))


async def test_multi_member_and_empty_files(tmp_path: Any) -> None:
    body = gzip_lines(LINES[:5]) + gzip_lines(LINES[5:])
    verdict = await _verify(tmp_path, body, item_count=len(LINES), md5=md5_b64(body))
    assert verdict.item_count == len(LINES)
    empty = gzip.compress(b"", mtime=0)
    verdict = await _verify(tmp_path, empty, item_count=0, md5=md5_b64(empty))
    assert verdict.item_count == 0


# -- a block of lines at once (verification's path) -----------------------------------


def test_block_check_names_the_line_that_fails() -> None:
    block = [*LINES[:2], SMUGGLING[0], *LINES[2:4]]
    with pytest.raises(CorruptDataError, match="line 12 is not JSON"):
        check_item_lines(block, key="data/x.json.gz", first_line_no=10, keys=KEYS)
    unkeyed = orjson.dumps({"Item": {"sk": {"S": "b"}}})
    with pytest.raises(CorruptDataError, match="line 11 lacks key attribute 'pk'"):
        check_item_lines([LINES[0], unkeyed], key="k", first_line_no=10, keys=KEYS)


def test_block_check_hands_each_item_over_once_in_order() -> None:
    # A line over 400 KB whose item is not (base64 is 4/3 of its bytes) is measured,
    # not refused; its block goes line by line and still hands each item over once.
    big = orjson.dumps(
        {"Item": {**GOOD, "blob": {"B": base64.b64encode(b"\0" * 310_000).decode()}}}
    )
    assert len(big) > MAX_ITEM_BYTES
    for block in (LINES, [LINES[0], big, LINES[1]]):
        seen: list[dict[str, Any]] = []
        check_item_lines(block, key="k", first_line_no=1, keys=KEYS, on_item=seen.append)
        assert seen == [orjson.loads(line)["Item"] for line in block]


@pytest.mark.parametrize(
    ("keys", "first", "second"),
    [
        ((("pk", "S"),), {"S": "a"}, {"S": "a"}),
        ((("pk", "B"),), {"B": "AA=="}, {"B": "AB=="}),  # one byte, two spellings
        ((("pk", "N"),), {"N": "1"}, {"N": "1.0E0"}),
        ((("pk", ""),), {"N": "10"}, {"N": "1E1"}),  # a type unknown to an old checkpoint
    ],
    ids=["string", "binary", "number", "untyped"],
)
def test_two_spellings_of_one_key_are_one_key(
    keys: tuple[tuple[str, str], ...], first: dict[str, str], second: dict[str, str]
) -> None:
    """The duplicate-key check sees keys as DynamoDB does, so a second spelling of
    a key cannot slip a line past it (fewer items would land than were counted);
    so does the key identity of change records (a window's later change of one
    key must supersede its earlier one, whatever the spelling)."""
    from ddb_backup.changes import key_identity
    from ddb_backup.verify import DistinctKeys

    assert key_identity({"pk": first}, ("pk",)) == key_identity({"pk": second}, ("pk",))

    distinct = DistinctKeys(keys)
    distinct.add({"pk": first, "v": {"S": "x"}})
    distinct.check(where="f")  # one key: fine
    distinct.add({"pk": second, "v": {"S": "y"}})
    with pytest.raises(CorruptDataError, match="two lines have the same target key"):
        distinct.check(where="f")
    other = DistinctKeys(keys)
    for value in ("AAE=", "AAI=") if keys[0][1] == "B" else ("1", "2"):
        other.add({"pk": {keys[0][1] or "S": value}})
    other.check(where="f")  # two keys: fine
