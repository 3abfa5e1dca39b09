"""Applying one verified incremental window onto a table, resumably.

A window's records become writes (``NewImage``: a put of the whole item; no
``NewImage``: a delete of ``Keys``; a key changed twice in the window: only
the record with the greater ``WriteTimestampMicros``, see
:mod:`ddb_backup.changes`). Windows are applied strictly one after the other:
:func:`apply_window` drains the writer before it returns.

The checkpoint mark (:class:`~ddb_backup.restore.state.WindowProgress`, kept
with the restore's state so a checkpoint holds it) is the full restore's rule per
data file: ``lines_done`` advances only over a contiguous run of lines whose
writes are known handled (written, or failed and in the dead letters), so a
resumed round starts at that line of each file. Puts and deletes are sent in
separate batches (so each batch's outcome counts exactly as puts or deletes);
the lines of a *segment* (until either kind fills a batch of 25) are marked
and counted together once both its batches are done, so a round cut by the
deadline neither loses nor counts twice. The winners of a window (keys
changed twice, with their winning timestamp) hold key values and are never
stored: a resumed round verifies the window again (which recomputes them)
and then skips what the mark says is done.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ddb_backup.changes import parse_change_line, write_requests
from ddb_backup.incremental import VerifiedWindow
from ddb_backup.manifest import DataFile
from ddb_backup.restore.state import FileState, WindowCounts, WindowProgress
from ddb_backup.restore.writer import MAX_BATCH, BatchWriter, WireRequest
from ddb_backup.storage import Storage
from ddb_backup.stream import StreamStats, check_streamed_again, closing, iter_line_blocks

__all__ = ["WindowCounts", "WindowProgress", "apply_window"]


class _Segment:
    """Lines ``[start, ...)`` of one file and the writes they make, by kind."""

    def __init__(self, start: int) -> None:
        self.start = start
        self.puts: list[WireRequest] = []
        self.deletes: list[WireRequest] = []

    @property
    def full(self) -> bool:
        return len(self.puts) == MAX_BATCH or len(self.deletes) == MAX_BATCH


async def _submit(
    writer: BatchWriter,
    progress: WindowProgress,
    f: FileState,
    seg: _Segment,
    end: int,
    on_batch: Callable[[], None],
) -> None:
    """Send a segment's batches; mark and count its lines once all are done."""
    batches = [(kind, reqs) for kind, reqs in (("put", seg.puts), ("delete", seg.deletes)) if reqs]
    if not batches:
        f.mark(seg.start, end)  # only superseded records: nothing to write
        return
    pending = len(batches)
    tally = {"put": 0, "delete": 0, "failed": 0}

    def on_done_of(kind: str) -> Callable[[int, int], None]:
        def on_done(written: int, failed: int) -> None:
            nonlocal pending
            tally[kind] += written
            tally["failed"] += failed
            pending -= 1
            if pending == 0:
                progress.puts += tally["put"]
                progress.deletes += tally["delete"]
                progress.failed += tally["failed"]
                f.mark(seg.start, end)

        return on_done

    for kind, reqs in batches:
        on_batch()
        await writer.submit(reqs, on_done_of(kind))


async def _apply_file(
    storage: Storage,
    window: VerifiedWindow,
    data_file: DataFile,
    f: FileState,
    writer: BatchWriter,
    progress: WindowProgress,
    *,
    key_types: Mapping[str, str],
    should_stop: Callable[[], bool],
    on_batch: Callable[[], None],
) -> int | None:
    """Send one file's writes after its ``lines_done``; its line count when read
    to the end (MD5 and count checked again), ``None`` when stopped."""
    key = data_file.key
    stats = StreamStats()
    skip = f.lines_done
    line_no = 0
    seg = _Segment(skip)
    summary = window.summary
    # Closed when stopped early, so the S3 body is not left open.
    async with (
        closing(storage.stream(key, pin=f.pin)) as chunks,
        closing(iter_line_blocks(chunks, key=key, stats=stats)) as blocks,
    ):
        async for block in blocks:
            if line_no + len(block) <= skip:
                line_no += len(block)
                continue  # handled in an earlier round (still hashed: the MD5 is checked)
            for line in block:
                line_no += 1
                if line_no <= skip:
                    continue
                if seg.start == line_no - 1 and not (seg.puts or seg.deletes) and should_stop():
                    return None
                record = parse_change_line(
                    line,
                    key=key,
                    line_no=line_no,
                    key_types=key_types,
                    window=summary.window,
                    view=summary.output_view,
                )
                for request in write_requests([record], window.winners):
                    (seg.puts if "PutRequest" in request else seg.deletes).append(request)
                if seg.full:
                    await _submit(writer, progress, f, seg, line_no, on_batch)
                    seg = _Segment(line_no)
    await _submit(writer, progress, f, seg, line_no, on_batch)
    # The file was verified before; check again what was actually streamed.
    check_streamed_again(
        stats,
        key=key,
        lines=line_no,
        count=data_file.item_count,
        md5=data_file.md5,
        what="records",
        step="apply",
    )
    return line_no


def _never() -> bool:
    return False


def _nothing() -> None:
    pass


async def apply_window(
    storage: Storage,
    window: VerifiedWindow,
    writer: BatchWriter,
    *,
    key_types: Mapping[str, str],
    progress: WindowProgress | None = None,
    should_stop: Callable[[], bool] = _never,
    on_batch: Callable[[], None] = _nothing,
) -> WindowCounts:
    """Stream a verified window's writes into ``writer``; the window's counts.

    ``progress``: the window's mark from an earlier round (updated in place as
    batches finish; checked against ``window``, which must have been verified
    again in this round), or ``None`` to start. ``should_stop`` is asked
    before each new segment; once it says so no more is sent, the batches in
    flight finish and the counts come back with ``done`` False. The writer is
    drained before returning: the next window may start right after.
    ``on_batch`` is called for every batch sent (a restore counts its work with it).
    """
    if progress is None:
        progress = WindowProgress.of(window)
    progress.check_matches(window)
    if progress.done:
        return progress.counts
    ended: dict[str, int] = {}
    try:
        for data_file, f in zip(window.files, progress.files, strict=True):
            if f.done:
                continue
            lines = await _apply_file(
                storage,
                window,
                data_file,
                f,
                writer,
                progress,
                key_types=key_types,
                should_stop=should_stop,
                on_batch=on_batch,
            )
            if lines is None:
                break
            ended[f.key] = lines
    finally:
        await writer.drain()
    for f in progress.files:
        if f.key in ended and f.lines_done >= ended[f.key]:
            f.done = True
    progress.done = all(f.done for f in progress.files)
    return progress.counts
