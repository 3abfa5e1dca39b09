"""Streaming a table's verified files into the writer; what fails, to dead letters.

Files are streamed (S3 chunks -> gunzip -> lines -> items) ``files_in_flight``
at a time. A line of a file this round verified and found canonical is sent as
it stands (the read is pinned to the verified object: its bytes are the checked
value, see ``items.CanonicalLine``); other pinned lines are parsed again, and
unpinned ones (a local copy) checked again in full, the request built from the
parsed item.
A file's ``lines_done`` advances over the batches DynamoDB acknowledged (or
dead-lettered), so a resumed round starts exactly there. What DynamoDB will
not take goes to the table's dead-letter folder (restorable with
``restore_export``).
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING

import orjson

from ddb_backup.concurrency import run_workers
from ddb_backup.errors import (
    DataFileChangedError,
    DdbBackupError,
)
from ddb_backup.items import Request, canonical_puts, check_item_line, item_of_verified_line
from ddb_backup.keys import dead_letter_prefix
from ddb_backup.restore.prepare import table_keys
from ddb_backup.restore.state import FileState, TablePhase, TableState
from ddb_backup.restore.writer import (
    MAX_BATCH,
    BatchWriter,
    DeadLetterSink,
    put_request,
)
from ddb_backup.stream import StreamStats, check_streamed_again, closing, iter_line_blocks

if TYPE_CHECKING:
    from ddb_backup.restore.run import RestoreRun

__all__ = ["write_step"]


async def write_step(run: RestoreRun, ts: TableState) -> bool:
    """Write every file not done yet; True when all are done."""
    ts.phase = TablePhase.WRITING
    run.progress.phase(ts, TablePhase.WRITING)
    await _write_files(run, ts)
    return all(f.done for f in ts.files)


def _dead_letters(run: RestoreRun, ts: TableState) -> tuple[DeadLetterSink, str]:
    st = run.state
    folder = dead_letter_prefix(run.scope.dead_letter_root, st.restore_id, ts.target_table)
    if st.shard_id is not None:
        # Shards run at once: each its own folder (and manifest-files.json).
        folder = f"{folder}/shard-{st.shard_id:05d}"
    sink = DeadLetterSink(
        run.scope.dead_letter_storage,
        folder,
        part_prefix=f"round{st.round:03d}",
        files=ts.dead_letter_files,
    )
    return sink, folder


async def _write_files(run: RestoreRun, ts: TableState) -> None:
    sink, folder = _dead_letters(run, ts)
    pending = [f for f in ts.files if not f.done]
    ended: dict[str, int] = {}
    changed: list[DataFileChangedError] = []
    try:
        async with run.batch_writer(ts.target_table, sink) as writer:

            async def one(f: FileState) -> None:
                if changed:
                    return  # the table stopped: a file is not what was verified
                try:
                    lines = await _stream_file(run, ts, f, writer)
                    if lines is not None:
                        ended[f.key] = lines
                        f.error = None
                except DataFileChangedError as exc:
                    f.error = str(exc)
                    changed.append(exc)
                except DdbBackupError as exc:
                    f.error = str(exc)  # the file stays not done: a resume retries it

            await run_workers(pending, one, concurrency=run.files_in_flight)
    finally:
        await sink.flush()
        ts.dead_letter_files = list(sink.files)
        if sink.files:
            ts.dead_letter_folder = folder
    for f in pending:
        if f.key in ended and f.lines_done >= ended[f.key]:
            f.done = True
    if changed:
        # Final, not retried: the backup is not what was verified any more.
        ts.phase = TablePhase.FAILED


async def _stream_file(
    run: RestoreRun, ts: TableState, f: FileState, writer: BatchWriter
) -> int | None:
    """Send one file's items; the number of lines when read to the end, else None."""
    if run.should_stop():
        return None
    key = f.key
    stats = StreamStats()
    skip = f.lines_done
    line_no = 0  # lines read so far
    waiting: list[bytes] = []  # lines read, not sent yet: those after ``sent``
    sent = skip
    keys = table_keys(ts)
    budget = run.budget
    # A pinned read is of the very object verified: parsing its lines suffices.
    # An unpinned one (a local copy) could have changed: every rule again.
    pinned = f.pin is not None
    # Verified this round, every line canonical: the lines are the checked values.
    as_they_stand = pinned and key in run.canonical_files

    async def submit(lines: list[bytes], start: int) -> None:
        # Else requests are built from the parsed items, not from the lines' bytes;
        # parsed a batch at a time, so only the batches in flight hold objects.
        requests: list[Request]
        if as_they_stand:
            requests = canonical_puts(lines)
        elif pinned:
            requests = put_requests_of_verified(lines, key=key, first_line_no=start + 1)
        else:
            requests = [
                put_request(check_item_line(line, key=key, line_no=n, keys=keys))
                for n, line in enumerate(lines, start + 1)
            ]
        end = start + len(lines)
        ts.items_read += len(lines)
        budget.batches += 1
        budget.work_units += 1

        def done(written: int, failed: int) -> None:
            ts.items_written += written
            ts.items_failed += failed
            f.mark(start, end)

        await writer.submit(requests, done)

    # One await per S3 chunk (a block of lines), not per line.
    async with (
        closing(run.storage.stream(key, pin=f.pin)) as chunks,
        closing(iter_line_blocks(chunks, key=key, stats=stats)) as blocks,
    ):
        async for block in blocks:
            first = line_no + 1
            line_no += len(block)
            if line_no <= skip:
                continue  # handled in an earlier round
            if first <= skip:
                block = block[skip - first + 1 :]
            if waiting:
                block, waiting = waiting + block, []
            cut = 0
            while len(block) - cut >= MAX_BATCH:
                if run.should_stop():
                    return None
                await submit(block[cut : cut + MAX_BATCH], sent)
                cut += MAX_BATCH
                sent += MAX_BATCH
            waiting = block[cut:]
        if waiting:
            if run.should_stop():
                return None
            await submit(waiting, sent)
    # The file was verified before; check again what was actually streamed.
    check_streamed_again(
        stats, key=key, lines=line_no, count=f.item_count, md5=f.md5, what="items", step="restore"
    )
    return line_no


def put_requests_of_verified(lines: list[bytes], *, key: str, first_line_no: int) -> list[Request]:
    """:func:`~ddb_backup.items.item_of_verified_line` for a batch of lines, as
    put requests: parsed and framed in compiled code (each line one object whose
    only member is a non-empty ``Item`` object, which is a PutRequest's value as
    it stands); lines that are not go one by one, for the error naming the line."""
    try:
        docs = list(map(orjson.loads, lines))
        items = list(map(_ITEM, docs))
        if set(map(len, docs)) <= {1} and set(map(type, items)) <= {dict} and all(items):
            return [{"PutRequest": doc} for doc in docs]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        pass
    return [
        put_request(item_of_verified_line(line, key=key, line_no=n))
        for n, line in enumerate(lines, first_line_no)
    ]


_ITEM = operator.itemgetter("Item")
