"""Verification's fast screen agrees with the line-by-line parse, whatever the chunking."""

from __future__ import annotations

import gzip
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ddb_backup.errors import ChecksumMismatchError, CorruptDataError, ItemCountMismatchError
from ddb_backup.export_folder import ExpectedFile
from ddb_backup.items import MAX_ITEM_BYTES
from ddb_backup.storage import LocalStorage
from ddb_backup.verify import _LineScreen, verify_file
from tests.support.data import every_type_items, export_lines, gzip_lines, md5_b64

LINES = export_lines(every_type_items(12))


def screen(data: bytes, cuts: list[int]) -> int | None:
    s = _LineScreen()
    start = 0
    for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
        if cut > start:
            s.feed(data[start:cut])
            start = cut
    return s.lines()


@given(
    n=st.integers(0, len(LINES)),
    cuts=st.lists(st.integers(0, 10_000), max_size=12),
    newline_at_end=st.booleans(),
)
@settings(max_examples=150, deadline=None)
def test_screen_counts_item_lines_under_any_chunking(
    n: int, cuts: list[int], newline_at_end: bool
) -> None:
    data = b"\n".join(LINES[:n]) + (b"\n" if newline_at_end and n else b"")
    assert screen(data, cuts) == n


@pytest.mark.parametrize("size", [1, 3, 9, 10, 11, 97])
@pytest.mark.parametrize("damaged", [False, True])
def test_screen_finds_line_starts_across_small_blocks(size: int, damaged: bool) -> None:
    """Blocks shorter than the line-start pattern, and every boundary offset:
    each start is counted once, wherever the block edges fall."""
    data = b"\n".join(LINES) + b"\n"
    if damaged:
        data = data.replace(b'\n{"Item":{', b'\n{"Item":[', 1)
    s = _LineScreen()
    for i in range(0, len(data), size):
        s.feed(data[i : i + size])
    assert s.lines() == (None if damaged else len(LINES))
    assert s.starts == len(LINES) - (1 if damaged else 0)


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d.replace(b"\n", b"\n\n", 1),  # a blank line
        lambda d: d.replace(b'{"Item":{', b'{"Itam":{', 1),  # not an item
        lambda d: d + b"garbage",  # trailing junk
        lambda d: d + b'{"Item":{"pk":{"S":"' + b"x" * MAX_ITEM_BYTES + b'"}}}\n',  # too long
    ],
)
@given(cuts=st.lists(st.integers(0, 10_000_000), max_size=8))
@settings(max_examples=40, deadline=None)
def test_screen_refuses_what_is_not_plain_item_lines(damage: Any, cuts: list[int]) -> None:
    data = damage(b"\n".join(LINES) + b"\n")
    assert screen(data, cuts) is None


async def _verify(tmp_path: Any, body: bytes, **expected: Any) -> Any:
    (tmp_path / "f.json.gz").write_bytes(body)
    storage = LocalStorage(tmp_path)
    return await verify_file(storage, ExpectedFile(key="f.json.gz", **expected))


async def test_screened_file_matches_parsed_file(tmp_path: Any) -> None:
    body = gzip_lines(LINES)
    screened = await _verify(tmp_path, body, item_count=len(LINES), md5=md5_b64(body))
    storage = LocalStorage(tmp_path)
    parsed = await verify_file(
        storage,
        ExpectedFile(key="f.json.gz", item_count=len(LINES), md5=md5_b64(body)),
        thorough=True,
    )
    assert screened == parsed
    assert screened.item_count == len(LINES)


async def test_odd_line_with_right_md5_is_parsed_and_named(tmp_path: Any) -> None:
    # The MD5 matches (the manifest was written for these bytes), yet one line
    # is not an item: the screen hands over to the parser, which says where.
    # (An object that merely starts and ends like an item passes the screen:
    # the MD5 vouches for it, and the restore parses every line as it writes.)
    lines = [*LINES[:3], orjson.dumps({"Item": "not-an-item"}), *LINES[3:]]
    body = gzip_lines(lines)
    with pytest.raises(CorruptDataError, match="line 4"):
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
