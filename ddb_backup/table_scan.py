"""Reading a live table whole: its items page by page, and its content digest
(:mod:`ddb_backup.digest`), from a consistent parallel Scan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from ddb_backup.concurrency import task_group
from ddb_backup.digest import ContentDigest
from ddb_backup.restore.clear import MAX_SEGMENTS, scan_segment
from ddb_backup.restore.writer import RetryPolicy

__all__ = ["digest_table", "scan_items"]


def _segments(
    dynamodb: Any, table: str, segments: int, retry: RetryPolicy | None
) -> list[AsyncIterator[dict[str, Any]]]:
    """The page streams of a consistent parallel Scan, one per segment."""
    retry = retry or RetryPolicy()
    total = max(1, min(segments, MAX_SEGMENTS))
    return [scan_segment(dynamodb, table, retry, seg, total, {}) for seg in range(total)]


async def scan_items(
    dynamodb: Any,
    table: str,
    *,
    segments: int = 4,
    retry: RetryPolicy | None = None,
) -> AsyncIterator[list[dict[str, Any]]]:
    """Every item of ``table`` (botocore form), a page at a time, from a
    consistent Scan of ``segments`` segments read one after the other (one
    consumer; ``segments=1`` for a binary hash key on moto, see below)."""
    for pages in _segments(dynamodb, table, segments, retry):
        async for page in pages:
            yield page.get("Items", [])


async def digest_table(
    dynamodb: Any, table: str, *, segments: int = 4, retry: RetryPolicy | None = None
) -> ContentDigest:
    """The digest of a live table from a consistent parallel Scan.

    ``segments`` Scan segments run at once; pass 1 for a table whose hash key
    is binary when talking to moto (its segmented Scan answers HTTP 500 for
    those; DynamoDB itself has no such limit).
    """
    streams = _segments(dynamodb, table, segments, retry)
    parts = [ContentDigest() for _ in streams]

    async def one(pages: AsyncIterator[dict[str, Any]], part: ContentDigest) -> None:
        async for page in pages:
            for item in page.get("Items", []):
                part.add(item)

    async with task_group() as tg:
        for pages, part in zip(streams, parts, strict=True):
            tg.create_task(one(pages, part))
    result = ContentDigest()
    for p in parts:
        result.merge(p)
    return result
