"""A restore's answer: the response body, modelled once with its wire names.

Pure functions of the restore's state: the run (:mod:`.run`) processes and
records; this module only describes what it recorded. The handlers, the CLI
and library callers read the same :class:`RestoreAnswer`; a field that is not
set is not on the wire (an answer carries only what its kind has), and the
status labels are mapped from the status code in one place,
:func:`status_label`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from ddb_backup.errors import (
    BackupNotFoundError,
    ChainError,
    CheckpointError,
    ExportError,
    ManifestError,
    RequestError,
    UnsupportedFormatError,
)
from ddb_backup.log import get_logger
from ddb_backup.restore.point_answer import PointInTimeAnswer
from ddb_backup.restore.state import (
    Outcome,
    RestoreState,
    RestoreStatus,
    TablePhase,
    TableState,
)

__all__ = [
    "REQUEST_ERRORS",
    "RestoreAnswer",
    "RestoreResult",
    "ShardRef",
    "SkippedBackup",
    "TableResult",
    "dry_run_left_message",
    "error_result",
    "plan_result",
    "run_result",
    "status_code",
    "status_label",
    "summary",
    "table_result",
]

log = get_logger("restore")

# Errors that mean "the request cannot be served as asked" (400), not a fault.
REQUEST_ERRORS = (
    BackupNotFoundError,
    ChainError,  # point in time: the windows cannot reach the time asked
    CheckpointError,
    ManifestError,
    RequestError,
    UnsupportedFormatError,
    ExportError,
)


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def wire(self) -> dict[str, Any]:
        """The JSON object on the wire: the fields set, in their declared order."""
        return self.model_dump(mode="json", exclude_unset=True)


class TableResult(_Wire):
    """One entry of ``restore_results`` (names and counts only, never values)."""

    table: str
    target_table: str
    status: RestoreStatus
    items_expected: int | None
    items_read: int
    items_written: int
    items_failed: int
    items_cleared: int
    files_processed: int
    files_total: int
    dead_letter_keys: list[str]
    dead_letter_folder: str | None
    dead_letter_folders: list[str]
    table_created: bool
    duration_seconds: float
    error: str | None
    # Only when they say something:
    items_clear_failed: int | None = None
    verified_against_manifest: bool | None = None
    items_to_write: int | None = None  # dry run
    items_to_clear: int | None = None  # dry run
    notes: list[str] | None = None
    point_in_time: PointInTimeAnswer | None = None  # a restore_to restore
    windows_not_applied: list[str] | None = None  # ... that ended before its last window


class SkippedBackup(_Wire):
    date: str
    reason: str


class ShardRef(_Wire):
    """One shard of a plan, as the state machine passes it to a shard invocation."""

    restore_id: str
    shard_id: int


class RestoreAnswer(_Wire):
    """The body of every restore response (run, shard, plan, finalize, export, errors)."""

    restore_id: str | None = None
    backup_date: str | None = None
    environment: str | None = None
    s3_bucket: str | None = None
    s3_prefix: str | None = None
    dry_run: bool | None = None
    round: int | None = None
    duration_seconds: float | None = None
    tables_requested: list[str] | None = None
    successful_restores: int | None = None
    partial_restores: int | None = None
    failed_restores: int | None = None
    skipped_restores: int | None = None
    total_items_written: int | None = None
    total_items_processed: int | None = None
    total_items_failed: int | None = None
    total_items_cleared: int | None = None
    configuration: dict[str, Any] | None = None
    restore_results: list[TableResult] | None = None
    skipped_backups: list[SkippedBackup] | None = None
    skipped_tables: list[dict[str, str]] | None = None
    shard_id: int | None = None
    shards: list[ShardRef] | None = None
    items_per_shard: int | None = None
    resume_token: str | None = None
    status: RestoreStatus | None = None
    message: str | None = None
    error: str | None = None
    error_type: str | None = None
    reason: str | None = None
    export_folder: str | None = None
    target_table: str | None = None
    incremental_folders: list[str] | None = None
    point_in_time: PointInTimeAnswer | None = None
    windows_not_applied: list[str] | None = None

    def with_(self, **fields: Any) -> RestoreAnswer:
        """A copy with ``fields`` set (and so on the wire)."""
        data = {name: getattr(self, name) for name in self.model_fields_set}
        return RestoreAnswer(**{**data, **fields})

    def compact(self) -> RestoreAnswer:
        """What a shard's answer keeps: the state machine passes every shard's
        answer to finalize within 256 KiB, and finalize reads the exact counts
        from S3 anyway."""
        kept = {n: getattr(self, n) for n in _SHARD_FIELDS if n in self.model_fields_set}
        if isinstance(kept.get("error"), str):
            kept["error"] = kept["error"][:512]  # bounded: see shards.SHARD_ANSWER_BYTES
        return RestoreAnswer(**kept)


_SHARD_FIELDS = (
    "restore_id",
    "shard_id",
    "status",
    "round",
    "duration_seconds",
    "total_items_written",
    "total_items_processed",
    "total_items_failed",
    "resume_token",
    "error",
)


@dataclass(frozen=True, slots=True)
class RestoreResult:
    """``status_code`` (200/202/207/400/409/500) and the response ``body``, the
    JSON object the handlers return; :attr:`answer` reads it typed."""

    status_code: int
    body: dict[str, Any]

    @classmethod
    def of(cls, status_code: int, answer: RestoreAnswer) -> RestoreResult:
        return cls(status_code, answer.wire())

    @property
    def answer(self) -> RestoreAnswer:
        return RestoreAnswer.model_validate(self.body)

    @property
    def ok(self) -> bool:
        return self.status_code == 200


def status_label(code: int, *, dry_run: bool = False, plan: bool = False) -> RestoreStatus:
    """The ``status`` of an answer with ``code`` (the one place the labels are chosen)."""
    if code == 202:
        return RestoreStatus.IN_PROGRESS
    if dry_run and code == 200:
        return RestoreStatus.DRY_RUN
    if code == 200:
        return RestoreStatus.PLANNED if plan else RestoreStatus.COMPLETED
    if code == 207:
        return RestoreStatus.PLANNED_PARTIAL if plan else RestoreStatus.PARTIAL
    return RestoreStatus.FAILED


def table_result(ts: TableState, dry_run: bool) -> TableResult:
    """The per-table entry of ``restore_results``."""
    extra: dict[str, Any] = {}
    if ts.items_clear_failed:
        extra["items_clear_failed"] = ts.items_clear_failed
    if not ts.verified_against_manifest:
        extra["verified_against_manifest"] = False
    if dry_run:
        extra["items_to_write"] = ts.items_expected
        extra["items_to_clear"] = ts.items_to_clear
    if ts.notes:
        extra["notes"] = list(ts.notes)
    pit = ts.point_in_time
    if pit is not None:
        extra["point_in_time"] = pit.answer(dry_run=dry_run)
        # Ended (failed or stopped by an error) before its last window; a 202 is not.
        if not dry_run and (ts.phase is TablePhase.FAILED or ts.all_errors):
            extra["windows_not_applied"] = pit.not_done()
    return TableResult(
        table=ts.source_table,
        target_table=ts.target_table,
        status=ts.status(dry_run),
        items_expected=ts.items_expected,
        items_read=ts.items_read,
        items_written=ts.items_written,
        items_failed=ts.items_failed,
        items_cleared=ts.items_cleared,
        files_processed=ts.files_done,
        files_total=len(ts.files),
        dead_letter_keys=[f.key for f in ts.dead_letter_files],
        dead_letter_folder=ts.dead_letter_folder if ts.dead_letter_files else None,
        dead_letter_folders=ts.dead_letter_folders
        or ([ts.dead_letter_folder] if ts.dead_letter_files and ts.dead_letter_folder else []),
        table_created=ts.created,
        duration_seconds=round(ts.duration_seconds, 3),
        error="; ".join(ts.all_errors) or None,
        **extra,
    )


def summary(
    st: RestoreState, *, dry_run: bool, duration: float, configuration: dict[str, Any]
) -> RestoreAnswer:
    """The counts of a restore's state, without a status (see :func:`status_code`)."""
    results = [table_result(t, dry_run) for t in st.tables]
    statuses = [r.status for r in results]
    ok = {RestoreStatus.COMPLETED, RestoreStatus.DRY_RUN}
    answer = RestoreAnswer(
        restore_id=st.restore_id,
        backup_date=st.backup_date.isoformat() if st.backup_date else None,
        environment=st.environment,
        s3_bucket=st.bucket,
        s3_prefix=st.prefix,
        dry_run=dry_run,
        round=st.round,
        duration_seconds=round(duration, 3),
        tables_requested=[t.source_table for t in st.tables],
        successful_restores=sum(s in ok for s in statuses),
        partial_restores=statuses.count(RestoreStatus.PARTIAL),
        failed_restores=statuses.count(RestoreStatus.FAILED),
        skipped_restores=len(st.skipped_tables),
        total_items_written=sum(t.items_written for t in st.tables),
        total_items_processed=sum(t.items_read for t in st.tables),
        total_items_failed=sum(t.items_failed for t in st.tables),
        total_items_cleared=sum(t.items_cleared for t in st.tables),
        configuration={**st.request, **configuration},
        restore_results=results,
        skipped_backups=[
            SkippedBackup(date=s.date.isoformat(), reason=s.reason) for s in st.skipped_backups
        ],
        skipped_tables=list(st.skipped_tables),
    )
    not_applied = [w for r in results for w in r.windows_not_applied or []]
    if not_applied:
        answer = answer.with_(windows_not_applied=not_applied)
    return answer if st.shard_id is None else answer.with_(shard_id=st.shard_id)


def status_code(answer: RestoreAnswer) -> int:
    """200 when every table is restored and none skipped; 207 when something was
    written; else 500."""
    results = answer.restore_results or []
    ok = answer.successful_restores or 0
    if results and ok == len(results) and not answer.skipped_restores:
        return 200
    if ok or answer.partial_restores or answer.total_items_written:
        return 207
    return 500


def error_result(exc: BaseException, code: int, base: RestoreAnswer | None = None) -> RestoreResult:
    """A refusal (400, 409) or failure (500): what is known so far, and the error."""
    log.error("restore refused" if code == 400 else "restore failed", extra={"error": str(exc)})
    answer = (base or RestoreAnswer()).with_(
        status=RestoreStatus.FAILED,
        error=str(exc),
        error_type=type(exc).__name__,
        restore_results=[],
    )
    return RestoreResult.of(code, answer)


def run_result(
    answer: RestoreAnswer, st: RestoreState, outcome: Outcome, *, dry_run: bool
) -> RestoreResult:
    """The answer of a run (or shard): 202 with the resume token when it was
    checkpointed, else its status; 409 when its lease was taken over. A dry run
    the deadline cut short answers 202 without a token (it stored nothing)."""
    if dry_run and outcome.unfinished:
        code = 202
        left = [t.source_table for t in st.tables if t.phase is TablePhase.PENDING]
        answer = answer.with_(status=status_label(code), message=dry_run_left_message(left))
        log.info("dry run cut short", extra={"restore_id": st.restore_id, "tables_left": left})
    elif outcome.resume_token is not None:
        code = 202
        answer = answer.with_(
            resume_token=outcome.resume_token,
            status=status_label(code),
            message=f"deadline reached in round {st.round}: {outcome.unfinished} table(s) "
            "to go; invoke again with the resume_token",
        )
    else:
        code = status_code(answer)
        answer = answer.with_(status=status_label(code, dry_run=dry_run))
        if outcome.lost is not None:
            code = 409
            lost = outcome.lost
            answer = answer.with_(
                error=str(lost), error_type=type(lost).__name__, reason="lease_lost"
            )
        log.info(
            "restore finished",
            extra={
                "restore_id": st.restore_id,
                "status": answer.status,
                "items_written": answer.total_items_written,
                "items_failed": answer.total_items_failed,
            },
        )
    return RestoreResult.of(code, answer.compact() if st.kind == "shard" else answer)


def dry_run_left_message(left: list[str]) -> str:
    """What a dry run stopped by its deadline says: nothing stored, so no resume
    token; the tables it did not verify, to run again (names only)."""
    return (
        f"dry run stopped by its deadline: {len(left)} table(s) not verified yet "
        f"({', '.join(left)}); a dry run stores nothing, so there is no resume_token: "
        'run the dry run again for those tables (its "tables" field) or with a longer '
        "deadline. The tables in restore_results with status DRY_RUN_OK passed every check."
    )


def plan_result(answer: RestoreAnswer, st: RestoreState, *, items_per_shard: int) -> RestoreResult:
    """The answer of a finished plan: its shards (200, 207 when some tables were
    left out, 500 when none can be written). A dry run plans nothing: it answers
    as a whole dry run (``shards.dry_plan_result``)."""
    failed = [t for t in st.tables if t.phase is TablePhase.FAILED]
    writable = any(t.phase is TablePhase.WRITING for t in st.tables)
    code = 500 if failed and not writable else 207 if failed else 200
    if st.skipped_tables and code == 200:
        code = 207
    answer = answer.with_(
        shards=[ShardRef(restore_id=st.restore_id, shard_id=s.shard_id) for s in st.shards],
        items_per_shard=items_per_shard,
        status=status_label(code, plan=True),
    )
    log.info(
        "restore planned",
        extra={"restore_id": st.restore_id, "shards": len(st.shards), "status": answer.status},
    )
    return RestoreResult.of(code, answer)
