"""Clearing a table before a restore, and counting what a clear would delete.

Called only after the backup was verified. A parallel Scan (``Segment`` /
``TotalSegments``) reads only the key attributes (names through
``ExpressionAttributeNames``, since keys may be reserved words), and the keys
go to DynamoDB as ``DeleteRequest`` batches through the same
:class:`~ddb_backup.restore.writer.BatchWriter` as the restore's puts, so deletes get
the same retries.

``deleted`` counts the keys the consistent scan returned whose delete
DynamoDB acknowledged. BatchWriteItem acknowledges a delete of a key that is
already gone too, so the count equals what was removed only when nothing
else deletes from the table meanwhile: a restore clears under its table
lease (:mod:`ddb_backup.restore.lease`), so no second restore can; an application
deleting items during the clear could still make it count one twice.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ddb_backup.concurrency import task_group
from ddb_backup.items import from_botocore
from ddb_backup.restore.ratelimit import WriteControl
from ddb_backup.restore.state import TablePhase, TableState
from ddb_backup.restore.writer import (
    MAX_BATCH,
    BatchSender,
    BatchWriter,
    RetryPolicy,
    call_with_retries,
)

if TYPE_CHECKING:
    from ddb_backup.restore.run import RestoreRun

__all__ = [
    "ClearResult",
    "clear_existing_data",
    "clear_step",
    "clear_table",
    "count_items",
    "scan_segment",
]

#: Parallel scan segments at most (each one Scan call in flight at a time).
MAX_SEGMENTS = 16


@dataclass(frozen=True, slots=True)
class ClearResult:
    deleted: int
    failed: int
    complete: bool  # False when stopped early (deadline); scan again to go on


def _projection(key_names: tuple[str, ...]) -> dict[str, Any]:
    names = {f"#k{i}": name for i, name in enumerate(key_names)}
    return {"ProjectionExpression": ", ".join(names), "ExpressionAttributeNames": names}


async def scan_segment(
    dynamodb: Any,
    table: str,
    retry: RetryPolicy,
    segment: int,
    total: int,
    extra: dict[str, Any],
) -> AsyncGenerator[dict[str, Any], None]:
    """The pages of one segment of a consistent parallel Scan, each call retried."""
    start: dict[str, Any] | None = None
    while True:
        params: dict[str, Any] = {
            "TableName": table,
            "Segment": segment,
            "TotalSegments": total,
            "ConsistentRead": True,
            **extra,
        }
        if start:
            params["ExclusiveStartKey"] = start

        async def scan(p: dict[str, Any] = params) -> dict[str, Any]:
            resp: dict[str, Any] = await dynamodb.scan(**p)
            return resp

        page = await call_with_retries(retry, scan, operation="Scan", table=table)
        yield page
        start = page.get("LastEvaluatedKey")
        if not start:
            return


async def clear_existing_data(
    dynamodb: Any,
    table: str,
    key_names: tuple[str, ...],
    *,
    sender: BatchSender,
    max_workers: int = 5,
    retry: RetryPolicy | None = None,
    segments: int | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_deleted: Callable[[int, int], None] | None = None,
    control: WriteControl | None = None,
) -> ClearResult:
    """Delete every item of ``table``; returns the deletes acknowledged (see above).

    ``should_stop`` is polled between scan pages (the deadline); a stopped
    clear is resumed by calling again, which scans what is left.
    ``on_deleted(deleted, failed)`` is called per batch; ``control``: the
    table's write budget (see :mod:`ddb_backup.restore.ratelimit`).
    """
    if not key_names:
        raise ValueError("clear needs the table's key attribute names")
    retry = retry or RetryPolicy()
    total = max(1, min(segments or max_workers, MAX_SEGMENTS))
    projection = _projection(key_names)
    counts = {"deleted": 0, "failed": 0}
    stopped = False

    def done(written: int, failed: int) -> None:
        counts["deleted"] += written
        counts["failed"] += failed
        if on_deleted:
            on_deleted(written, failed)

    async def segment(writer: BatchWriter, seg: int) -> None:
        nonlocal stopped
        async with contextlib.aclosing(
            scan_segment(dynamodb, table, retry, seg, total, projection)
        ) as pages:
            while True:
                # Polled before every page, so a stopped clear leaves no page half-read.
                if should_stop is not None and should_stop():
                    stopped = True
                    return
                page = await anext(pages, None)
                if page is None:
                    return
                keys = [
                    {"DeleteRequest": {"Key": from_botocore(item)}}
                    for item in page.get("Items", [])
                ]
                for i in range(0, len(keys), MAX_BATCH):
                    await writer.submit(keys[i : i + MAX_BATCH], done)

    async with (
        BatchWriter(table, sender, max_workers=max_workers, retry=retry, control=control) as writer,
        task_group() as tg,
    ):
        for seg in range(total):
            tg.create_task(segment(writer, seg))
    return ClearResult(counts["deleted"], counts["failed"], complete=not stopped)


async def count_items(
    dynamodb: Any, table: str, *, retry: RetryPolicy | None = None, segments: int = 4
) -> int:
    """Exact number of items (a ``Select=COUNT`` parallel scan; reads no values)."""
    retry = retry or RetryPolicy()
    totals = [0] * segments

    async def segment(seg: int) -> None:
        async for page in scan_segment(dynamodb, table, retry, seg, segments, {"Select": "COUNT"}):
            totals[seg] += int(page.get("Count", 0))

    async with task_group() as tg:
        for seg in range(segments):
            tg.create_task(segment(seg))
    return sum(totals)


async def clear_step(run: RestoreRun, ts: TableState) -> bool:
    """The restore's step before writing: clear once when asked; False if stopped."""
    if not run.scope.clear or ts.phase not in (TablePhase.READY, TablePhase.CLEARING):
        return True
    return await clear_table(run, ts)


async def clear_table(run: RestoreRun, ts: TableState) -> bool:
    """Clear (once) before any backup item is written; False if stopped early.

    Resumed in CLEARING: no backup item was written yet, so scanning again
    deletes only what the earlier round left.
    """
    ts.phase = TablePhase.CLEARING
    run.progress.phase(ts, TablePhase.CLEARING)

    def deleted(n: int, failed: int) -> None:
        ts.items_cleared += n
        ts.items_clear_failed += failed
        run.budget.work_units += 1

    result = await clear_existing_data(
        run.clients.dynamodb,
        ts.target_table,
        tuple(ts.key_names),
        sender=run.sender,
        max_workers=run.scope.max_workers,
        retry=run.retry,
        should_stop=run.should_stop,
        on_deleted=deleted,
        control=run.control(ts.target_table),
    )
    if not result.complete:
        return False
    if ts.items_clear_failed:
        ts.errors.append(
            f"{ts.items_clear_failed} existing items could not be deleted (retry budget spent)"
        )
    ts.phase = TablePhase.WRITING
    return True
