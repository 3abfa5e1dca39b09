"""``restore-export FULL --incremental W1 --incremental W2 ...``: a full export and
incremental exports made by anyone, applied in the order given.

Everything is read and checked before anything is written: the windows'
manifests and order first (each window of the same table; the first
covering the full export's ``exportTime``, each next starting at the
previous ``exportToTime``), then every window's files and records, then the
full export (by :func:`ddb_backup.restore.restore_export`, which verifies it
before writing). A damaged file anywhere: nothing written, the file named.
Windows out of order or overlapping, or of another table, are always
refused; a gap (an interval no export covers) is refused unless
``allow_gaps``, and then reported in the answer's ``uncovered``.

``restore-export W --table T`` with ``W`` an incremental export applies that
one window onto the table as it is (e.g. a window's dead letters).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Sequence
from typing import Any

import orjson

from ddb_backup.aws import AwsClients
from ddb_backup.errors import (
    ChainError,
    CheckpointError,
    DdbBackupError,
    ExportError,
    LeaseHeldError,
    ManifestError,
    TableNotFoundError,
    UnsafeNameError,
    UnsupportedFormatError,
)
from ddb_backup.export_folder import read_export_folder
from ddb_backup.incremental import (
    IncrementalListing,
    VerifiedWindow,
    read_incremental_folder,
    verify_incremental_folder,
)
from ddb_backup.keys import check_key, check_table_name, dead_letter_prefix, export_dead_letter_root
from ddb_backup.log import get_logger
from ddb_backup.point_in_time.apply import apply_window
from ddb_backup.point_in_time.dead_letters import ChangeDeadLetterSink
from ddb_backup.restore import RestoreResult, new_restore_id, restore_export
from ddb_backup.restore.lease import TableLeases
from ddb_backup.restore.point_answer import (
    Interval,
    PointInTimeAnswer,
    WindowAnswer,
    WindowCounts,
)
from ddb_backup.restore.tables import describe_target, missing_table_error
from ddb_backup.restore.writer import BatchSender, BatchWriter, RetryPolicy, default_sender
from ddb_backup.storage import S3Storage, Storage

__all__ = ["check_export_order", "is_incremental_folder", "restore_export_chain"]

log = get_logger("point_in_time")

#: The caller's to fix (400): nothing was read past the manifests, nothing written.
_REQUEST_ERRORS = (
    ChainError,
    CheckpointError,
    ExportError,
    ManifestError,
    TableNotFoundError,
    UnsafeNameError,
    UnsupportedFormatError,
)


async def is_incremental_folder(storage: Storage, folder: str) -> bool:
    """True if ``folder``'s ``manifest-summary.json`` says ``INCREMENTAL_EXPORT``."""
    raw = await storage.get_bytes_or_none(f"{folder.strip('/')}/manifest-summary.json")
    try:
        doc = orjson.loads(raw) if raw is not None else None
    except orjson.JSONDecodeError:
        return False  # left to the full export's reader, which names the problem
    return isinstance(doc, dict) and doc.get("exportType") == "INCREMENTAL_EXPORT"


def _span(listing: IncrementalListing) -> str:
    s = listing.summary
    return f"{listing.folder} [{s.export_from_time.isoformat()}, {s.export_to_time.isoformat()})"


def check_export_order(
    start: dt.datetime | None,
    windows: Sequence[IncrementalListing],
    *,
    table_arn: str | None = None,
) -> list[Interval]:
    """The uncovered intervals between ``start`` (the full export's exportTime,
    ``None`` without one) and the windows in the order given (pure).

    Raises :class:`ChainError` for a window of another table (ARN or table id
    differing from the full export's or the first window's), a window
    ending at or before the time already reached (out of order), or one
    starting before it (overlap). The first window may start before
    ``start``: its records are final images, so changes the full export
    already holds are written again harmlessly.
    """
    if not windows:
        return []
    arn = table_arn or windows[0].summary.table_arn
    table_id = windows[0].summary.table_id
    gaps: list[Interval] = []
    head = start
    for i, w in enumerate(windows):
        s = w.summary
        if s.table_arn != arn or (table_id is not None and s.table_id != table_id):
            raise ChainError(f"export {w.folder} is of another table ({s.table_arn}, {s.table_id})")
        if head is not None and s.export_to_time <= head:
            raise ChainError(f"window {_span(w)} is out of order: it ends by {head.isoformat()}")
        if head is not None and i > 0 and s.export_from_time < head:
            raise ChainError(
                f"window {_span(w)} overlaps the previous one, which ends at {head.isoformat()}"
            )
        if head is not None and s.export_from_time > head:
            gaps.append(Interval(start=head, end=s.export_from_time))
        head = s.export_to_time
    return gaps


def _gap_text(gaps: list[Interval]) -> str:
    return ", ".join(f"[{g.start.isoformat()}, {g.end.isoformat()})" for g in gaps)


class _Checked:
    """What the checks before any write found."""

    def __init__(self) -> None:
        self.full = False
        self.key_types: dict[str, str] = {}
        self.windows: list[VerifiedWindow] = []
        self.gaps: list[Interval] = []


async def _check_everything(
    storage: Storage,
    folder: str,
    folders: list[str],
    table: str,
    clients: AwsClients,
    *,
    allow_gaps: bool,
    retry: RetryPolicy | None,
    max_workers: int,
) -> _Checked:
    checked = _Checked()
    check_table_name(table)
    if not 1 <= max_workers <= 64:
        raise UnsafeNameError("max_workers must be between 1 and 64")
    for f in [folder, *folders]:
        check_key(f)
    checked.full = not await is_incremental_folder(storage, folder)
    window_folders = folders if checked.full else [folder, *folders]
    start: dt.datetime | None = None
    arn: str | None = None
    if checked.full:
        summary = (await read_export_folder(storage, folder)).summary
        arn = summary.table_arn if summary else None
        if summary is None or summary.export_time is None:
            if not allow_gaps:
                raise ChainError(
                    f"the full export {folder} has no exportTime (manifest-summary.json): "
                    "whether the windows follow it cannot be checked (allow gaps to apply anyway)"
                )
        else:
            start = dt.datetime.fromisoformat(summary.export_time.replace("Z", "+00:00"))
    listings = [await read_incremental_folder(storage, f) for f in window_folders]
    checked.gaps = check_export_order(start, listings, table_arn=arn)
    if checked.gaps and not allow_gaps:
        raise ChainError(
            f"the exports leave {_gap_text(checked.gaps)} uncovered: changes made then would be "
            "missing (allow gaps to apply them anyway)"
        )
    target = await describe_target(clients.dynamodb, table, retry=retry)
    if target is None:
        raise missing_table_error(table)
    checked.key_types = dict(target.keys)
    for listing in listings:
        checked.windows.append(
            await verify_incremental_folder(
                storage,
                listing.folder,
                key_types=checked.key_types,
                table_arn=listings[0].summary.table_arn,
                table_id=listings[0].summary.table_id,
            )
        )
    return checked


async def _apply_all(
    storage: Storage,
    dead_storage: Storage,
    checked: _Checked,
    answer: PointInTimeAnswer,
    *,
    table: str,
    root: str,
    restore_id: str,
    sender: BatchSender,
    retry: RetryPolicy,
    max_workers: int,
) -> None:
    """Each window in order, finished before the next; answers appended as they end.

    A window with failed writes ends the run: its dead letters, restored later,
    would undo a later window's change of the same key, so the later windows
    wait until they are restored (the answer names them).
    """
    for v in checked.windows:
        sink = ChangeDeadLetterSink.for_window(
            dead_storage,
            dead_letter_prefix(root, restore_id, table),
            v,
            key_names=tuple(checked.key_types),
        )
        try:
            async with BatchWriter(
                table, sender, max_workers=max_workers, retry=retry, dead_letters=sink
            ) as writer:
                counts = await apply_window(storage, v, writer, key_types=checked.key_types)
        finally:
            await sink.flush()
        answer.windows.append(
            WindowAnswer.of(
                v, counts, dead_letter_folder=sink.export_folder if sink.files else None
            )
        )
        if counts.failed:
            return


def _error(exc: BaseException, code: int, body: dict[str, Any]) -> RestoreResult:
    log.error(
        "restore-export refused" if code == 400 else "restore-export failed",
        extra={"error": str(exc)},
    )
    return RestoreResult(
        code,
        {**body, "status": "FAILED", "error": str(exc), "error_type": type(exc).__name__},
    )


async def restore_export_chain(
    storage: Storage,
    folder: str,
    table: str,
    clients: AwsClients,
    *,
    incremental: Sequence[str] = (),
    allow_gaps: bool = False,
    dry_run: bool = False,
    max_workers: int = 5,
    retry: RetryPolicy | None = None,
    sender: BatchSender | None = None,
    dead_letter_storage: Storage | None = None,
    **restore_export_options: Any,
) -> RestoreResult:
    """Restore ``folder`` (a full export, or one incremental export), then apply
    the ``incremental`` export folders in the order given (module docstring).

    A full export alone is exactly :func:`~ddb_backup.restore.restore_export`
    (``restore_export_options`` go to it: ``on_progress``, ``files_in_flight``,
    ``progress_interval``). The answer adds ``point_in_time``
    (:class:`~ddb_backup.point_in_time.answer.PointInTimeAnswer`: per window
    puts, deletes, failed, its dead-letter folder; ``uncovered`` intervals).
    Status: 400 refused before anything was read past the manifests, 409 the
    table is being restored by another run, 500 a damaged export (nothing
    written) or a failure while writing, 207 some writes dead-lettered, 200.
    Windows are applied only after the full export restored completely, and
    none after a window with dead letters (``windows_not_applied``): dead
    letters restored later must not undo a later change.
    """
    folder = folder.strip("/")
    folders = [f.strip("/") for f in incremental]
    retry = retry or RetryPolicy()
    common: dict[str, Any] = {
        "dry_run": dry_run,
        "max_workers": max_workers,
        "retry": retry,
        "sender": sender,
    }
    if not folders and not await is_incremental_folder(storage, folder):
        return await restore_export(
            storage,
            folder,
            table,
            clients,
            dead_letter_storage=dead_letter_storage,
            **common,
            **restore_export_options,
        )
    body: dict[str, Any] = {
        "export_folder": folder,
        "incremental_folders": folders,
        "target_table": table,
        "dry_run": dry_run,
        "environment": None,
    }
    try:
        checked = await _check_everything(
            storage,
            folder,
            folders,
            table,
            clients,
            allow_gaps=allow_gaps,
            retry=retry,
            max_workers=max_workers,
        )
    except _REQUEST_ERRORS as exc:
        return _error(exc, 400, body)
    except DdbBackupError as exc:  # a damaged export (named) or AWS: nothing written
        return _error(exc, 500, body)
    answer = PointInTimeAnswer(restored_to=None, uncovered=checked.gaps)
    last = checked.windows[-1].summary if checked.windows else None
    if checked.full:
        result = await restore_export(
            storage,
            folder,
            table,
            clients,
            dead_letter_storage=dead_letter_storage,
            **common,
            **restore_export_options,
        )
        body = {**result.body, **body}
        if result.status_code != 200:
            body["point_in_time"] = answer.model_dump(mode="json")
            return RestoreResult(result.status_code, body)
    body.setdefault("restore_id", new_restore_id())
    if dry_run:
        answer.windows = [WindowAnswer.of(v, WindowCounts.verified(v)) for v in checked.windows]
        answer.restored_to = last.export_to_time if last else None
        body["point_in_time"] = answer.add_totals().model_dump(mode="json")
        body["status"] = "DRY_RUN_OK"
        return RestoreResult(200, body)
    dead_storage = dead_letter_storage or storage
    root = export_dead_letter_root(folder)
    leases = None
    if isinstance(dead_storage, S3Storage):
        leases = TableLeases(dead_storage, root, body["restore_id"])
        try:
            await leases.acquire([table])
        except LeaseHeldError as exc:
            return _error(exc, 409, {**body, "reason": "table_locked"})
        except DdbBackupError as exc:
            return _error(exc, 500, body)
    try:
        async with leases.renewing() if leases is not None else contextlib.nullcontext():
            await _apply_all(
                storage,
                dead_storage,
                checked,
                answer,
                table=table,
                root=root,
                restore_id=body["restore_id"],
                sender=sender or default_sender(clients.dynamodb, clients.write_http),
                retry=retry,
                max_workers=max_workers,
            )
    except DdbBackupError as exc:
        body["point_in_time"] = answer.add_totals().model_dump(mode="json")
        return _error(exc, 500, body)
    finally:
        if leases is not None:
            try:
                await leases.release()
            except DdbBackupError as exc:  # it expires on its own
                log.warning("restore lease not released", extra={"error": str(exc)})
    applied = {w.folder for w in answer.windows}
    body["windows_not_applied"] = [v.folder for v in checked.windows if v.folder not in applied]
    answer.restored_to = answer.windows[-1].export_to_time if answer.windows else None
    body["point_in_time"] = answer.add_totals().model_dump(mode="json")
    partial = bool(answer.failed or body["windows_not_applied"])
    body["status"] = "PARTIAL" if partial else "COMPLETED"
    return RestoreResult(207 if partial else 200, body)
