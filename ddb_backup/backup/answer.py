"""What a backup run answers: the response bodies, pure functions of the run state.

:class:`BackupBody` is the wire form (the Lambda response's ``body``, the
CLI's ``--json``), shared by the library, ``handlers/backup.py`` and the CLI,
so mypy checks every field they read.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

from ddb_backup.backup.state import RunState, TableRun
from ddb_backup.manifest import BACKUP_TYPE, BackupManifest, BackupStatus, TableStatus

__all__ = [
    "MAX_FILES_IN_RESPONSE",
    "BackupBody",
    "BackupResult",
    "ChainBreakBody",
    "DeferredBody",
    "IncrementalBody",
    "IncrementalResult",
    "RunIds",
    "TableResultBody",
    "WindowTableBody",
    "backup_status",
    "deferred_body",
    "error_body",
    "incremental_result",
    "run_body",
    "status_code",
    "summary",
]

#: Per-table results in a response list at most this many data files (the
#: manifest has them all; a Lambda response is limited to 6 MB).
MAX_FILES_IN_RESPONSE = 1000
#: ``backup_type`` of an incremental round's answer.
INCREMENTAL_BACKUP_TYPE = "DYNAMODB_INCREMENTAL_EXPORT"


class TableResultBody(TypedDict):
    table_name: str
    status: str
    error: str | None
    item_count: int | None
    billed_size_bytes: int | None
    export_arn: str | None
    s3_prefix: str
    export_folder: str | None
    file_count: int
    files: list[dict[str, Any]]  # DataFile as JSON: key, item_count, md5, size
    files_truncated: bool


class BackupBody(TypedDict):
    """The body of every answer of a run (200, 202, 207, 500)."""

    backup_date: str
    environment: str
    backup_type: str
    s3_bucket: str
    s3_prefix: str
    run_state_s3_key: str
    already_final: bool
    not_backed_up: list[str]
    status: str  # BackupStatus, or IN_PROGRESS
    error: NotRequired[str]
    export_time: NotRequired[str]
    total_tables_processed: int
    successful_exports: int
    failed_exports: int
    in_progress_exports: int
    total_items_exported: int
    total_billed_size_bytes: int
    total_size_mb: float
    manifest_s3_key: str | None
    results: list[TableResultBody]
    message: NotRequired[str]


class DeferredBody(TypedDict):
    """202 without an AWS call (too little time left in the invocation)."""

    backup_date: str
    environment: str
    backup_type: str
    status: str
    message: str


@dataclass(frozen=True, slots=True)
class BackupResult:
    """What a run answers: the status code, a JSON-ready body, the manifest once final."""

    status_code: int
    body: BackupBody
    manifest: BackupManifest | None = None


@dataclass(frozen=True, slots=True)
class RunIds:
    """Which run an answer is about (from the configuration, not the state)."""

    backup_date: dt.date
    environment: str
    bucket: str
    prefix: str
    state_key: str
    manifest_key: str


def backup_status(tables: list[TableRun]) -> BackupStatus:
    ok = sum(t.status is TableStatus.COMPLETED for t in tables)
    if tables and ok == len(tables):
        return BackupStatus.COMPLETE
    return BackupStatus.PARTIAL if ok else BackupStatus.FAILED


def status_code(tables: list[TableRun]) -> int:
    return {BackupStatus.COMPLETE: 200, BackupStatus.PARTIAL: 207, BackupStatus.FAILED: 500}[
        backup_status(tables)
    ]


def run_body(ids: RunIds, state: RunState) -> BackupBody:
    tables = state.tables
    ok = [t for t in tables if t.status is TableStatus.COMPLETED]
    failed = [t for t in tables if t.status is TableStatus.FAILED]
    final = len(ok) + len(failed) == len(tables)
    billed = sum(t.billed_size_bytes or 0 for t in ok)
    body = _body(ids, backup_status(tables).value if final else "IN_PROGRESS")
    body["export_time"] = state.export_time.isoformat()
    body["total_tables_processed"] = len(tables)
    body["successful_exports"] = len(ok)
    body["failed_exports"] = len(failed)
    body["in_progress_exports"] = len(tables) - len(ok) - len(failed)
    body["total_items_exported"] = sum(t.item_count or 0 for t in ok)
    body["total_billed_size_bytes"] = billed
    body["total_size_mb"] = round(billed / (1024 * 1024), 6)
    body["manifest_s3_key"] = ids.manifest_key if final else None
    body["results"] = [_table_result(t) for t in tables]
    return body


def error_body(ids: RunIds, tables: int, message: str) -> BackupBody:
    """A run that could not get as far as a state: every configured table failed."""
    body = _body(ids, "FAILED")
    body["error"] = message
    body["total_tables_processed"] = tables
    body["failed_exports"] = tables
    body["results"] = []
    return body


def _body(ids: RunIds, status: str) -> BackupBody:
    """A body with nothing counted yet (keys in the order of the wire form)."""
    return {
        "backup_date": ids.backup_date.isoformat(),
        "environment": ids.environment,
        "backup_type": BACKUP_TYPE,
        "s3_bucket": ids.bucket,
        "s3_prefix": ids.prefix,
        "run_state_s3_key": ids.state_key,
        "already_final": False,
        "not_backed_up": [],
        "status": status,
        "total_tables_processed": 0,
        "successful_exports": 0,
        "failed_exports": 0,
        "in_progress_exports": 0,
        "total_items_exported": 0,
        "total_billed_size_bytes": 0,
        "total_size_mb": 0.0,
        "manifest_s3_key": None,
        "results": [],
    }


def deferred_body(date: dt.date, environment: str, message: str) -> DeferredBody:
    return {
        "backup_date": date.isoformat(),
        "environment": environment,
        "backup_type": BACKUP_TYPE,
        "status": "IN_PROGRESS",
        "message": message,
    }


def _table_result(t: TableRun) -> TableResultBody:
    files = t.files or []
    return {
        "table_name": t.table_name,
        "status": t.status.value,
        "error": t.error,
        "item_count": t.item_count,
        "billed_size_bytes": t.billed_size_bytes,
        "export_arn": t.export_arn,
        "s3_prefix": t.s3_prefix,
        "export_folder": t.export_folder,
        "file_count": len(files),
        "files": [f.model_dump(mode="json") for f in files[:MAX_FILES_IN_RESPONSE]],
        "files_truncated": len(files) > MAX_FILES_IN_RESPONSE,
    }


def summary(body: BackupBody) -> dict[str, Any]:
    """The counts of a response, for a log line (no per-table details)."""
    return {
        "backup_date": body["backup_date"],
        "status": body["status"],
        "total_tables_processed": body["total_tables_processed"],
        "successful_exports": body["successful_exports"],
        "failed_exports": body["failed_exports"],
        "in_progress_exports": body["in_progress_exports"],
        "total_items_exported": body["total_items_exported"],
        "manifest_s3_key": body["manifest_s3_key"],
    }


# -- the incremental windows (ddb_backup.backup.windows) ----------------------------


class ChainBreakBody(TypedDict):
    chain_id: str
    reason: str  # chain.BreakReason
    detail: str
    at: str  # the chain's head when it broke: restorable up to here


class WindowTableBody(TypedDict):
    """One table of an incremental round. ``status``: COMPLETED (chain up to date
    as far as due), IN_PROGRESS (a window's export runs: 202), FAILED (a window
    failed or the table could not be read), PENDING (no chain: no usable full
    backup yet, or PITR off; ``message`` says which)."""

    table_name: str
    status: str
    chain_id: str | None
    window_from: str | None  # the last window this invocation worked on
    window_to: str | None
    export_arn: str | None
    windows_verified: int  # appended to the chain by this invocation
    puts: int  # in the windows verified by this invocation
    deletes: int
    chain_head: str | None  # end of the newest verified window (or the chain's base)
    chain_lag_seconds: float | None  # now - chain_head
    breaks: list[ChainBreakBody]  # detected by this invocation
    # the chain this invocation ended by starting the next one from a newer full
    # backup (the daily roll; not a break, not a failure)
    superseded_chain_id: str | None
    error: str | None
    message: str | None


class IncrementalBody(TypedDict):
    """The body of an incremental round's answer (200, 202, 207, 500)."""

    environment: str
    backup_type: str
    s3_bucket: str
    s3_prefix: str
    interval_minutes: int
    checked_at: str
    status: str  # BackupStatus, or IN_PROGRESS
    total_tables_processed: int
    windows_verified: int
    chain_breaks: int
    failed_tables: int
    pending_tables: int
    in_progress_tables: int
    max_chain_lag_seconds: float | None
    results: list[WindowTableBody]


@dataclass(frozen=True, slots=True)
class IncrementalResult:
    status_code: int
    body: IncrementalBody


def incremental_result(
    results: list[WindowTableBody],
    *,
    environment: str,
    bucket: str,
    prefix: str,
    interval_minutes: int,
    checked_at: dt.datetime,
) -> IncrementalResult:
    """202 while an export runs; else 200 if every table is up to date without a
    break, 500 if none is, 207 in between. A PENDING table (no full backup to
    chain from yet) is not up to date, as a failed table is not backed up in the
    daily answer: it makes a round 207 (or 500 alone), never hides as 200."""
    count = {s: sum(r["status"] == s for r in results) for s in TableStatus}
    breaks = sum(len(r["breaks"]) for r in results)
    lags = [r["chain_lag_seconds"] for r in results if r["chain_lag_seconds"] is not None]
    ok = count[TableStatus.COMPLETED]
    if count[TableStatus.IN_PROGRESS]:
        code, status = 202, "IN_PROGRESS"
    elif ok == len(results) and not breaks:
        code, status = 200, BackupStatus.COMPLETE.value
    elif ok:
        code, status = 207, BackupStatus.PARTIAL.value
    else:
        code, status = 500, BackupStatus.FAILED.value
    body: IncrementalBody = {
        "environment": environment,
        "backup_type": INCREMENTAL_BACKUP_TYPE,
        "s3_bucket": bucket,
        "s3_prefix": prefix,
        "interval_minutes": interval_minutes,
        "checked_at": checked_at.isoformat(),
        "status": status,
        "total_tables_processed": len(results),
        "windows_verified": sum(r["windows_verified"] for r in results),
        "chain_breaks": breaks,
        "failed_tables": count[TableStatus.FAILED],
        "pending_tables": count[TableStatus.PENDING],
        "in_progress_tables": count[TableStatus.IN_PROGRESS],
        "max_chain_lag_seconds": max(lags) if lags else None,
        "results": results,
    }
    return IncrementalResult(code, body)
