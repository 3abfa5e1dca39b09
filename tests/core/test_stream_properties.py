"""Property-based tests of the streaming decoder and the item parser.

* Any chunking of any valid export (one or several gzip members, any
  compression level) yields exactly its lines and items, and the MD5 that
  :class:`StreamStats` computes is the MD5 of the raw bytes.
* Any corruption (a flipped bit anywhere, a truncation anywhere) is detected:
  the decoder raises :class:`CorruptDataError` or yields exactly the original
  items (a flip in a gzip header field zlib does not check); and verification
  against the manifest's MD5 always fails. Nothing ever silently yields
  different items.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import io
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ddb_backup.errors import CorruptDataError, VerificationError
from ddb_backup.export_folder import ExpectedFile
from ddb_backup.items import check_item_line, to_botocore
from ddb_backup.storage import Storage
from ddb_backup.stream import GzipLineDecoder, LineSplitter, StreamStats, iter_lines
from ddb_backup.verify import verify_file
from tests.support.data import every_type_items, export_lines, to_wire
from tests.support.strategies import wire_items

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def exports(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[bytes], bytes, list[int]]:
    """Items, their lines, the gzip bytes (maybe several members) and member boundaries."""
    items = draw(st.lists(wire_items, max_size=15))
    lines = [orjson.dumps({"Item": it}) for it in items]
    cuts = sorted(draw(st.lists(st.integers(0, len(lines)), max_size=3)))
    level = draw(st.integers(0, 9))
    blob = b""
    boundaries = []
    start = 0
    for end in [*cuts, len(lines)]:
        buf = io.BytesIO()
        with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=level) as gz:
            gz.write(b"".join(line + b"\n" for line in lines[start:end]))
        blob += buf.getvalue()
        boundaries.append(len(blob))
        start = end
    return items, lines, blob, boundaries


def chunked(data: bytes, sizes: list[int]) -> list[bytes]:
    out, i, k = [], 0, 0
    while i < len(data):
        size = sizes[k % len(sizes)] if sizes else len(data)
        out.append(data[i : i + size])
        i += size
        k += 1
    return out


chunk_sizes = st.lists(st.integers(1, 300), min_size=1, max_size=8)


def decode(chunks: list[bytes]) -> list[bytes]:
    dec = GzipLineDecoder("data/x.json.gz")
    out: list[bytes] = []
    for c in chunks:
        out += dec.feed(c)
    return out + dec.finish()


async def _aiter(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for c in chunks:
        yield c


class MemoryStorage:
    """Just enough of the Storage protocol for verify_file: one object, chunked."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self._chunks = chunked(data, sizes)

    def stream(self, key: str, *, chunk_size: int = 0) -> AsyncIterator[bytes]:
        return _aiter(self._chunks)


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def verify(data: bytes, sizes: list[int], *, md5: str | None, count: int | None) -> int:
    expected = ExpectedFile("data/x.json.gz", item_count=count, md5=md5)
    result = asyncio.run(
        verify_file(cast(Storage, MemoryStorage(data, sizes)), expected, keys=(("pk", "S"),))
    )
    return result.item_count


def parse_all(lines: list[bytes]) -> list[dict[str, Any]]:
    return [
        check_item_line(line, key="data/x.json.gz", line_no=n)
        for n, line in enumerate((x for x in lines if x.strip()), start=1)
    ]


# -- valid exports ------------------------------------------------------------------


@SETTINGS
@given(exports(), chunk_sizes)
def test_any_chunking_yields_exactly_the_items(export: Any, sizes: list[int]) -> None:
    items, lines, blob, _ = export
    assert decode(chunked(blob, sizes)) == lines
    assert parse_all(decode(chunked(blob, sizes))) == items


@SETTINGS
@given(exports(), chunk_sizes)
def test_iter_lines_counts_and_hashes_the_raw_bytes(export: Any, sizes: list[int]) -> None:
    items, lines, blob, _ = export
    stats = StreamStats()

    async def collect() -> list[bytes]:
        return [x async for x in iter_lines(_aiter(chunked(blob, sizes)), key="k", stats=stats)]

    assert asyncio.run(collect()) == lines
    assert stats.lines == len(items)
    assert stats.compressed_bytes == len(blob)
    assert stats.md5_base64 == md5_b64(blob)
    assert verify(blob, sizes, md5=md5_b64(blob), count=len(items)) == len(items)


@SETTINGS
@given(
    st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=20),
    st.booleans(),
    chunk_sizes,
)
def test_line_splitter_any_chunking(parts: list[bytes], trailing: bool, sizes: list[int]) -> None:
    data = b"\n".join(parts) + (b"\n" if trailing else b"")
    splitter = LineSplitter()
    out: list[bytes] = []
    for c in chunked(data, sizes):
        out += splitter.feed(c)
    out += splitter.flush()
    want = data.split(b"\n")
    if want and want[-1] == b"":
        want.pop()
    assert out == want


@SETTINGS
@given(wire_items)
def test_check_item_line_round_trips(item: dict[str, Any]) -> None:
    line = orjson.dumps({"Item": item})
    parsed = check_item_line(line, key="k", line_no=1)
    assert parsed == item
    assert to_wire(to_botocore(parsed)) == item  # base64 decoded exactly once


def test_every_type_items_round_trip() -> None:
    items = every_type_items(30)
    lines = export_lines(items)
    assert [to_botocore(x) for x in parse_all(lines)] == items


# -- corruption ---------------------------------------------------------------------


@SETTINGS
@given(exports(), st.data(), chunk_sizes)
def test_flipped_bit_is_never_silent(export: Any, data: st.DataObject, sizes: list[int]) -> None:
    items, _lines, blob, _ = export
    pos = data.draw(st.integers(0, len(blob) - 1), label="byte")
    bit = data.draw(st.integers(0, 7), label="bit")
    bad = bytearray(blob)
    bad[pos] ^= 1 << bit
    bad_blob = bytes(bad)
    # The decoder alone: an error, or (a gzip header field zlib ignores) the same items.
    try:
        got = parse_all(decode(chunked(bad_blob, sizes)))
    except CorruptDataError:
        pass
    else:
        assert got == items
    # Against the manifest's MD5 and count: always refused.
    with pytest.raises(VerificationError):
        verify(bad_blob, sizes, md5=md5_b64(blob), count=len(items))


@SETTINGS
@given(exports(), st.data(), chunk_sizes)
def test_truncation_is_never_silent(export: Any, data: st.DataObject, sizes: list[int]) -> None:
    items, _lines, blob, boundaries = export
    cut = data.draw(st.integers(0, len(blob) - 1), label="cut")
    short = blob[:cut]
    try:
        got = parse_all(decode(chunked(short, sizes)))
    except CorruptDataError:
        pass
    else:
        # Only possible exactly at a gzip member boundary: a prefix of the items,
        # which the manifest's count or MD5 then refuses.
        assert cut in boundaries
        assert got == items[: len(got)]
    with pytest.raises(VerificationError):
        verify(short, sizes, md5=md5_b64(blob), count=len(items))


@SETTINGS
@given(exports(), st.binary(min_size=1, max_size=64))
def test_trailing_garbage_is_refused(export: Any, junk: bytes) -> None:
    items, _lines, blob, _ = export
    try:
        got = parse_all(decode([blob + junk]))
    except CorruptDataError:
        return
    # Only another complete (empty) gzip member could pass; never new items.
    assert got == items


_DAMAGES: dict[str, Callable[[dict[str, Any]], bytes]] = {
    "cut mid-line": lambda it: orjson.dumps({"Item": it})[:-3],
    "JSON, not an item": lambda it: orjson.dumps([{"Item": it}]),
    "empty item": lambda it: b'{"Item": {}}',
    "unknown type tag": lambda it: orjson.dumps({"Item": {**it, "pk": {"Q": "x"}}}),
    "two type tags": lambda it: orjson.dumps({"Item": {**it, "pk": {"S": "x", "N": "1"}}}),
    "not UTF-8": lambda it: b"\xff" + orjson.dumps({"Item": it}),
}


@SETTINGS
@given(
    st.lists(wire_items, min_size=1, max_size=10),
    st.data(),
    st.sampled_from(sorted(_DAMAGES)),
)
def test_damaged_lines_are_refused(
    items: list[dict[str, Any]], data: st.DataObject, damage: str
) -> None:
    lines = [orjson.dumps({"Item": it}) for it in items]
    i = data.draw(st.integers(0, len(lines) - 1), label="line")
    lines[i] = _DAMAGES[damage](items[i])
    with pytest.raises(CorruptDataError, match=f"line {i + 1} "):
        parse_all(lines)


@SETTINGS
@given(
    st.lists(
        st.sampled_from([b"", b" ", b"\t", b"\r", b" \t ", b'{"Item":{}}', b" x", b"\x00y", b"!"]),
        max_size=8,
    )
)
def test_blank_lines_are_dropped_and_every_other_line_kept_in_order(lines: list[bytes]) -> None:
    """The shortcut (the least line starting above a space) agrees with the plain
    rule: a line is dropped exactly when it is empty or only whitespace."""
    from ddb_backup.stream import _non_blank

    assert _non_blank(list(lines)) == [line for line in lines if line.strip()]
