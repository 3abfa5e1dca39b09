"""The incremental windows of a point-in-time restore, in the restore run.

A ``restore_to`` table (:class:`~ddb_backup.restore.state.PointInTimeState`)
goes through the same run as any other: its full backup is verified, then
:func:`verify_table_windows` reads every window of its chain back (MD5s,
counts, every change record, contiguity, the chain's table ARN and id) before
the target is created, cleared or written; a missing or damaged window fails
the table untouched, the error naming the file. After the full backup is
written (cleared first when asked), :func:`window_step` applies the windows
strictly in order (:func:`~ddb_backup.point_in_time.apply.apply_window`: a
window is finished before the next starts), counting every batch as work for
the budget and keeping each window's mark in the state, so a round cut by the
deadline resumes exactly there. A resumed round verifies the windows it has
not finished again (their winners are never stored), each data file and
manifest pinned to the object read in the first round. After a window (or
the full backup) with writes that failed, no further window is applied:
their dead letters, restored later, must not undo a later change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ddb_backup.incremental import VerifiedWindow, manifest_keys
from ddb_backup.keys import dead_letter_prefix
from ddb_backup.restore.state import (
    PointInTimeState,
    TablePhase,
    TableState,
    WindowCounts,
    WindowProgress,
    pinned_objects,
    record_pins,
    reuse_pins,
)

if TYPE_CHECKING:
    from ddb_backup.restore.run import RestoreRun

__all__ = ["verify_table_windows", "window_step"]

#: Window files verified at once.
VERIFY_CONCURRENCY = 4


def _key_types(ts: TableState) -> dict[str, str]:
    """The key attributes and types recorded when the full backup verified, HASH first."""
    return dict(zip(ts.key_names, ts.key_types, strict=True))


async def _verify(
    run: RestoreRun, ts: TableState, pit: PointInTimeState, skip: frozenset[str]
) -> dict[str, VerifiedWindow]:
    # point_in_time imports the restore package: imported when first used.
    from ddb_backup.point_in_time.plan import verify_windows

    verified = await verify_windows(
        run.storage,
        ts.source_table,
        pit.full_export_time,
        pit.windows,
        key_types=_key_types(ts),
        table_arn=pit.table_arn,
        table_id=pit.table_id,
        concurrency=VERIFY_CONCURRENCY,
        skip=skip,
    )
    return {v.folder: v for v in verified}


async def verify_table_windows(run: RestoreRun, ts: TableState) -> None:
    """Verify every window of a point-in-time table (after its full backup,
    before anything is created, cleared or written); raises the error naming
    the damaged or missing file."""
    pit = ts.point_in_time
    if pit is None or not pit.windows:
        return
    verified = await _verify(run, ts, pit, frozenset())
    pit.marks = [WindowProgress.of(verified[w.folder]) for w in pit.windows]
    for mark in pit.marks:
        record_pins(run.storage, mark.files)
        # A resumed round reads the manifests again: of these objects only.
        mark.manifests = pinned_objects(run.storage, manifest_keys(mark.folder))
    run.verified_windows[ts.target_table] = verified


async def _verified_again(
    run: RestoreRun, ts: TableState, pit: PointInTimeState
) -> dict[str, VerifiedWindow]:
    """A resumed round: the windows not finished, verified again from the objects
    the first round read, manifests included (a file replaced since fails with
    the file named)."""
    for mark in pit.marks:
        if not mark.done:
            reuse_pins(run.storage, [*mark.files, *mark.manifests])
    done = frozenset(m.folder for m in pit.marks if m.done)
    verified = await _verify(run, ts, pit, done)
    run.verified_windows[ts.target_table] = verified
    return verified


def _halt(ts: TableState, pit: PointInTimeState, why: str) -> None:
    """Apply no further window; the table ends PARTIAL, naming what was not applied."""
    pit.halted = why
    ts.errors.append(f"{why}; windows not applied: {', '.join(pit.not_done())}")
    ts.phase = TablePhase.FAILED


async def _apply(
    run: RestoreRun, ts: TableState, mark: WindowProgress, window: VerifiedWindow
) -> WindowCounts:
    from ddb_backup.point_in_time.apply import apply_window
    from ddb_backup.point_in_time.dead_letters import ChangeDeadLetterSink

    st = run.state
    sink = ChangeDeadLetterSink.for_window(
        run.scope.dead_letter_storage,
        dead_letter_prefix(run.scope.dead_letter_root, st.restore_id, ts.target_table),
        window,
        key_names=tuple(ts.key_names),
        part_prefix=f"round{st.round:03d}",
        files=mark.dead_letter_files,
    )
    budget = run.budget

    def on_batch() -> None:
        budget.batches += 1
        budget.work_units += 1

    try:
        async with run.batch_writer(ts.target_table, sink) as writer:
            return await apply_window(
                run.storage,
                window,
                writer,
                key_types=_key_types(ts),
                progress=mark,
                should_stop=run.should_stop,
                on_batch=on_batch,
            )
    finally:
        await sink.flush()
        mark.dead_letter_files = list(sink.files)
        if sink.files:
            mark.dead_letter_folder = sink.export_folder


async def window_step(run: RestoreRun, ts: TableState) -> bool:
    """After the full backup: each window in order; True when all are applied."""
    pit = ts.point_in_time
    if pit is None:
        return True
    if pit.halted is None and ts.items_failed:
        _halt(
            ts,
            pit,
            f"{ts.items_failed} item(s) of the full backup failed (dead-lettered in "
            f"{ts.dead_letter_folder})",
        )
    if pit.halted is not None:
        return False
    pit.full_written = True
    pending = [m for m in pit.marks if not m.done]
    if not pending:
        return True
    run.progress.phase(ts, TablePhase.WRITING)
    verified = run.verified_windows.get(ts.target_table) or await _verified_again(run, ts, pit)
    for mark in pending:
        if run.should_stop():
            return False
        counts = await _apply(run, ts, mark, verified[mark.folder])
        if not counts.done:
            return False
        if counts.failed:
            _halt(
                ts,
                pit,
                f"window {mark.folder}: {counts.failed} write(s) failed (dead-lettered in "
                f"{mark.dead_letter_folder})",
            )
            return False
    return True
