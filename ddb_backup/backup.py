"""The daily backup run: export every table, read every export back, write the manifest.

One run per UTC date. Its state lives in S3 (``keys.run_state_key``) from the
moment it starts, so an invocation that runs out of time, a retried one and
the next scheduled one all pick the same run up instead of starting exports
again (AWS's ``ClientToken`` only lasts 8 hours, and moto ignores it)::

    manifest final?  -> answer from it, start nothing
    state in S3?     -> resume it (same ExportTime, same exports)
    else             -> claim the date (conditional create), start a new run

    PENDING -> STARTING (state saved) -> IN_PROGRESS (state saved, ARN known)
            -> EXPORTED (AWS finished) -> COMPLETED (verified) | FAILED

The manifest is written last, once every table is COMPLETED or FAILED. An
export still running is never counted as a success: the run answers 202.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ddb_backup import keys
from ddb_backup.aws import AwsClients, is_retryable
from ddb_backup.concurrency import run_workers
from ddb_backup.config import BackupConfig
from ddb_backup.errors import (
    AwsError,
    BackupNotFoundError,
    DdbBackupError,
    ExportError,
    ItemCountMismatchError,
    ManifestError,
)
from ddb_backup.export import (
    ExportDescription,
    ExportRequest,
    client_token,
    describe_export,
    describe_source_table,
    find_existing_export,
    folder_from_export_manifest,
    start_export,
)
from ddb_backup.export_folder import locate_export_folder, read_export_folder
from ddb_backup.log import get_logger
from ddb_backup.manifest import (
    BACKUP_TYPE,
    BackupManifest,
    BackupStatus,
    DataFile,
    TableBackup,
    TableSchema,
    TableStatus,
    load_manifest,
)
from ddb_backup.storage import S3Storage
from ddb_backup.verify import schema_keys, verify_files

__all__ = [
    "BackupResult",
    "Polling",
    "RunState",
    "RunTableStatus",
    "TableRun",
    "run_backup",
]

log = get_logger(__name__)

#: Per-table results in a response list at most this many data files (the
#: manifest has them all; a Lambda response is limited to 6 MB).
MAX_FILES_IN_RESPONSE = 1000
#: Consecutive DescribeExport failures before a table is given up.
MAX_POLL_ERRORS = 5

ProgressCallback = Callable[[str, str], None]


class RunTableStatus(StrEnum):
    PENDING = "PENDING"  # not started yet
    STARTING = "STARTING"  # ExportTableToPointInTime about to be called, ARN unknown
    IN_PROGRESS = "IN_PROGRESS"  # export running on AWS
    EXPORTED = "EXPORTED"  # AWS finished; not verified yet
    COMPLETED = "COMPLETED"  # exported and verified
    FAILED = "FAILED"


FINAL_STATUSES = frozenset({RunTableStatus.COMPLETED, RunTableStatus.FAILED})
_NOT_STARTED = frozenset({RunTableStatus.PENDING, RunTableStatus.STARTING})

#: How long an invocation starting exports keeps others from starting them too
#: (far longer than the few calls it takes; a crashed one is taken over after).
STARTING_LEASE = dt.timedelta(minutes=5)


class _StateModel(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, validate_assignment=False)


class TableRun(_StateModel):
    """One table of a run, as saved in the run state."""

    table_name: str
    status: RunTableStatus = RunTableStatus.PENDING
    error: str | None = None
    table_arn: str | None = None
    s3_prefix: str
    export_arn: str | None = None
    export_manifest: str | None = None
    export_folder: str | None = None
    export_item_count: int | None = Field(default=None, description="DescribeExport ItemCount")
    item_count: int | None = Field(default=None, description="items verified in the data files")
    billed_size_bytes: int | None = None
    files: list[DataFile] | None = None
    table_schema: TableSchema | None = Field(default=None, alias="schema")


class RunState(_StateModel):
    """The run in progress for one date, at ``keys.run_state_key``."""

    state_version: Literal[1] = 1
    backup_date: dt.date
    environment: str
    bucket: str
    prefix: str
    export_time: dt.datetime
    started_at: dt.datetime
    updated_at: dt.datetime
    invocations: int = 1
    starting_until: dt.datetime | None = Field(
        default=None,
        description="an invocation is starting exports until then; others start nothing",
    )
    tables: list[TableRun]

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json", by_alias=True))


@dataclass(frozen=True, slots=True)
class Polling:
    """DescribeExport backoff: ``initial`` seconds, times ``factor``, at most ``maximum``."""

    initial: float = 5.0
    maximum: float = 60.0
    factor: float = 1.5


@dataclass(frozen=True, slots=True)
class BackupResult:
    """What a run answers: the status code, a JSON-ready body, the manifest once final."""

    status_code: int
    body: dict[str, Any]
    manifest: BackupManifest | None = None


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


async def run_backup(
    config: BackupConfig,
    clients: AwsClients,
    *,
    deadline_seconds: float | None = None,
    now: dt.datetime | None = None,
    on_progress: ProgressCallback | None = None,
    backup_date: dt.date | None = None,
    polling: Polling | None = None,
) -> BackupResult:
    """Run (or resume, or report) the backup of ``config.tables`` for one UTC date.

    ``now`` is the run's start (default: the current time), shared by every
    export as ``ExportTime``, and gives the date; ``backup_date`` picks an
    earlier date's run to resume or report (it never starts one for a past
    date). ``deadline_seconds`` is how long this call may poll and verify;
    when it runs out the state is saved and the answer is 202.
    ``on_progress(table, state)`` hears every change of a table's state.
    """
    started = _utc(now or dt.datetime.now(dt.UTC))
    date = backup_date or started.date()
    run = _BackupRun(
        config=config,
        clients=clients,
        storage=S3Storage(
            clients.s3,
            config.bucket,
            expected_owner=config.expected_bucket_owner,
            sse_kms_key_id=config.kms_key_id,
        ),
        now=started,
        date=date,
        deadline=None
        if deadline_seconds is None
        else asyncio.get_running_loop().time() + max(0.0, deadline_seconds),
        polling=polling or Polling(),
        on_progress=on_progress,
    )
    try:
        return await run.execute()
    except DdbBackupError as exc:
        log.error(
            "backup run could not proceed",
            extra={"backup_date": date.isoformat(), "error": str(exc)},
        )
        if run.state is None:
            return BackupResult(500, run.error_body(str(exc)))
        # Cut off mid-run (e.g. S3 refused the state): report what is known.
        body = run.body()
        body["error"] = str(exc)
        body["manifest_s3_key"] = None  # whatever happened, it was not written by this call
        return BackupResult(500, body)


@dataclass
class _BackupRun:
    config: BackupConfig
    clients: AwsClients
    storage: S3Storage
    now: dt.datetime
    date: dt.date
    deadline: float | None
    polling: Polling
    on_progress: ProgressCallback | None
    state: RunState | None = None
    _resumed_starting: set[str] = field(default_factory=set)
    _poll_errors: dict[str, int] = field(default_factory=dict)
    _resumed: bool = False

    # -- keys ---------------------------------------------------------------

    @property
    def manifest_key(self) -> str:
        return keys.manifest_key(self.config.prefix, self.date)

    @property
    def state_key(self) -> str:
        return keys.run_state_key(self.config.prefix, self.date)

    # -- the run --------------------------------------------------------------

    async def execute(self) -> BackupResult:
        raw_manifest = await self.storage.get_bytes_or_none(self.manifest_key)
        if raw_manifest is not None:
            return self._answer_from_manifest(raw_manifest)
        claimed = await self._load_or_claim()
        if not claimed or self._starting_elsewhere():
            body = self.body()
            body["message"] = "another invocation is starting this run; nothing was started"
            return BackupResult(202, body)
        await self._start_exports()
        await self._drive()
        return await self._finish()

    async def _load_or_claim(self) -> bool:
        """Load the date's run state, or create it; False if another invocation just did."""
        raw = await self.storage.get_bytes_or_none(self.state_key)
        if raw is not None:
            self.state = self._parse_state(raw)
            self.state.invocations += 1
            self._resumed = True
            self._resumed_starting = {
                t.table_name for t in self.state.tables if t.status is RunTableStatus.STARTING
            }
            known = {t.table_name for t in self.state.tables}
            # Tables added to the configuration since join the run (same ExportTime).
            self.state.tables += [
                self._new_table(name) for name in self.config.tables if name not in known
            ]
            log.info(
                "resuming backup run",
                extra={
                    "backup_date": self.date.isoformat(),
                    "invocation": self.state.invocations,
                    "tables": [t.table_name for t in self.state.tables],
                },
            )
            return True
        if self.date != self.now.date():
            raise BackupNotFoundError(
                f"no backup run for {self.date.isoformat()} at {self.state_key}; "
                "a new run only starts for the current UTC date"
            )
        state = RunState(
            backup_date=self.date,
            environment=self.config.environment,
            bucket=self.config.bucket,
            prefix=self.config.prefix,
            export_time=self.now,
            started_at=self.now,
            updated_at=self.now,
            starting_until=dt.datetime.now(dt.UTC) + STARTING_LEASE,
            tables=[self._new_table(name) for name in self.config.tables],
        )
        if await self._create_state_object(state.to_json()):
            self.state = state
            log.info(
                "backup run started",
                extra={
                    "backup_date": self.date.isoformat(),
                    "export_time": self.now.isoformat(),
                    "tables": list(self.config.tables),
                },
            )
            return True
        raw = await self.storage.get_bytes(self.state_key)
        self.state = self._parse_state(raw)
        return False

    def _starting_elsewhere(self) -> bool:
        """A resumed run whose exports another live invocation is starting right now."""
        state = self._state
        return (
            self._resumed
            and state.starting_until is not None
            and state.starting_until > dt.datetime.now(dt.UTC)
            and any(t.status in _NOT_STARTED for t in state.tables)
        )

    def _new_table(self, name: str) -> TableRun:
        return TableRun(
            table_name=name,
            s3_prefix=keys.table_export_prefix(self.config.prefix, self.date, name),
        )

    def _parse_state(self, raw: bytes) -> RunState:
        try:
            state = RunState.model_validate_json(raw)
        except ValidationError as exc:
            raise ManifestError("backup run state is invalid", key=self.state_key) from exc
        if (state.environment, state.bucket, state.prefix, state.backup_date) != (
            self.config.environment,
            self.config.bucket,
            self.config.prefix,
            self.date,
        ):
            raise ManifestError(
                f"backup run state belongs to environment {state.environment}, "
                f"s3://{state.bucket}/{state.prefix} on {state.backup_date.isoformat()}",
                key=self.state_key,
            )
        return state

    async def _create_state_object(self, data: bytes) -> bool:
        """Create the state only if absent (``If-None-Match: *``), so two invocations
        started together cannot both start exports; False if it already exists."""
        if await self.storage.put_bytes_if_absent(self.state_key, data):
            return True
        log.warning(
            "backup run already claimed by another invocation",
            extra={"backup_date": self.date.isoformat(), "key": self.state_key},
        )
        return False

    async def _save_state(self) -> None:
        state = self._state
        state.updated_at = dt.datetime.now(dt.UTC)
        await self.storage.put_bytes(self.state_key, state.to_json())

    @property
    def _state(self) -> RunState:
        assert self.state is not None
        return self.state

    def _progress(self, table: TableRun, state: str) -> None:
        if self.on_progress is not None:
            self.on_progress(table.table_name, state)

    def _fail(self, table: TableRun, exc: BaseException | str) -> None:
        table.status = RunTableStatus.FAILED
        table.error = str(exc)
        log.error(
            "table backup failed",
            extra={
                "table": table.table_name,
                "error": table.error,
                "error_type": type(exc).__name__ if not isinstance(exc, str) else None,
            },
        )
        self._progress(table, "FAILED")

    # -- deadline -----------------------------------------------------------

    def _remaining(self) -> float | None:
        if self.deadline is None:
            return None
        return self.deadline - asyncio.get_running_loop().time()

    def _time_left(self) -> bool:
        remaining = self._remaining()
        return remaining is None or remaining > 0

    # -- starting -------------------------------------------------------------

    async def _start_exports(self) -> None:
        """Describe and start every table not started yet; state saved before and after."""
        todo = [t for t in self._state.tables if t.status in _NOT_STARTED]
        if not todo:
            return
        self._state.starting_until = dt.datetime.now(dt.UTC) + STARTING_LEASE
        await run_workers(
            [t for t in todo if t.table_schema is None or t.table_arn is None],
            self._describe,
            concurrency=self.config.concurrency,
        )
        ready = [t for t in todo if t.status is not RunTableStatus.FAILED]
        for t in ready:
            if t.status is RunTableStatus.PENDING:
                t.status = RunTableStatus.STARTING
                self._progress(t, "STARTING")
        # Saved BEFORE the exports start: a run cut off in between looks for
        # its exports (ListExports) instead of starting them a second time.
        await self._save_state()
        await run_workers(ready, self._start, concurrency=self.config.concurrency)
        self._state.starting_until = None
        await self._save_state()

    async def _describe(self, table: TableRun) -> None:
        try:
            source = await describe_source_table(self.clients.dynamodb, table.table_name)
        except DdbBackupError as exc:
            self._fail(table, exc)
            return
        table.table_arn = source.arn
        table.table_schema = source.schema

    async def _start(self, table: TableRun) -> None:
        assert table.table_arn is not None
        try:
            desc: ExportDescription | None = None
            if table.table_name in self._resumed_starting:
                desc = await find_existing_export(
                    self.clients.dynamodb,
                    table=table.table_name,
                    table_arn=table.table_arn,
                    bucket=self.config.bucket,
                    s3_prefix=table.s3_prefix,
                )
                if desc is not None:
                    log.info(
                        "found the export an earlier invocation started",
                        extra={"table": table.table_name, "export_arn": desc.export_arn},
                    )
            if desc is None:
                desc = await start_export(
                    self.clients.dynamodb,
                    ExportRequest(
                        table=table.table_name,
                        table_arn=table.table_arn,
                        bucket=self.config.bucket,
                        s3_prefix=table.s3_prefix,
                        export_time=self._state.export_time,
                        client_token=client_token(
                            self.config.bucket, self.config.prefix, self.date, table.table_name
                        ),
                        bucket_owner=self.config.expected_bucket_owner,
                        kms_key_id=self.config.kms_key_id,
                    ),
                )
        except DdbBackupError as exc:
            if exc.__cause__ is not None and is_retryable(exc.__cause__):
                # AWS may have accepted the call before the answer was lost: the
                # table stays STARTING and the next invocation looks for the export
                # (ListExports) before it starts one, instead of failing a table
                # whose export may be running.
                table.error = f"start not confirmed ({exc}); retried on the next invocation"
                self._resumed_starting.add(table.table_name)
                log.warning(
                    "export start not confirmed",
                    extra={"table": table.table_name, "error": str(exc)},
                )
                return
            self._fail(table, exc)
            return
        table.export_arn = desc.export_arn
        table.status = RunTableStatus.IN_PROGRESS
        table.error = None
        self._progress(table, "IN_PROGRESS")
        if desc.export_status == "FAILED":
            self._fail(table, f"export failed: {desc.failure}")

    # -- polling and verifying ------------------------------------------------

    async def _drive(self) -> None:
        """Poll and verify until every table is final or the deadline comes."""
        interval = self.polling.initial
        while True:
            changed = False
            running = [t for t in self._state.tables if t.status is RunTableStatus.IN_PROGRESS]
            if running and self._time_left():
                before = [t.status for t in running]
                await run_workers(running, self._poll, concurrency=self.config.concurrency)
                changed |= before != [t.status for t in running]
            exported = [t for t in self._state.tables if t.status is RunTableStatus.EXPORTED]
            if exported and self._time_left():
                changed |= await self._verify_all(exported)
            if all(t.status in FINAL_STATUSES for t in self._state.tables):
                return
            if (
                not running
                and not exported
                and not any(
                    t.status in (RunTableStatus.IN_PROGRESS, RunTableStatus.EXPORTED)
                    for t in self._state.tables
                )
            ):
                return  # only unconfirmed starts left: a later invocation takes them
            if changed:
                await self._save_state()
            remaining = self._remaining()
            if remaining is not None and remaining <= 0:
                return
            await asyncio.sleep(interval if remaining is None else min(interval, remaining))
            interval = min(interval * self.polling.factor, self.polling.maximum)

    async def _poll(self, table: TableRun) -> None:
        assert table.export_arn is not None
        try:
            desc = await describe_export(
                self.clients.dynamodb, table.export_arn, table=table.table_name
            )
        except ExportError as exc:
            self._fail(table, exc)
            return
        except AwsError as exc:
            errors = self._poll_errors.get(table.table_name, 0) + 1
            self._poll_errors[table.table_name] = errors
            log.warning(
                "DescribeExport failed; will retry",
                extra={"table": table.table_name, "error": str(exc), "attempt": errors},
            )
            if errors >= MAX_POLL_ERRORS:
                self._fail(table, exc)
            return
        self._poll_errors.pop(table.table_name, None)
        if desc.export_status == "COMPLETED":
            table.status = RunTableStatus.EXPORTED
            table.export_item_count = desc.item_count
            table.billed_size_bytes = desc.billed_size_bytes
            table.export_manifest = desc.export_manifest
            log.info(
                "export completed",
                extra={
                    "table": table.table_name,
                    "export_arn": table.export_arn,
                    "item_count": desc.item_count,
                    "billed_size_bytes": desc.billed_size_bytes,
                },
            )
        elif desc.export_status == "FAILED":
            self._fail(table, f"export failed: {desc.failure}")

    async def _verify_all(self, tables: list[TableRun]) -> bool:
        """Verify exported tables within the deadline; a table cut off stays EXPORTED."""
        before = [t.status for t in tables]
        try:
            async with asyncio.timeout(self._remaining()):
                await run_workers(tables, self._verify, concurrency=self.config.concurrency)
        except TimeoutError:
            log.warning(
                "deadline reached during verification; it resumes on the next invocation",
                extra={"tables": [t.table_name for t in tables if t.status not in FINAL_STATUSES]},
            )
        return before != [t.status for t in tables]

    async def _verify(self, table: TableRun) -> None:
        self._progress(table, "VERIFYING")
        try:
            folder = (
                table.export_folder
                or folder_from_export_manifest(table.export_manifest, table.s3_prefix)
                or await locate_export_folder(
                    self.storage, table.s3_prefix, export_arn=table.export_arn
                )
            )
            listing = await read_export_folder(self.storage, folder)
            verdicts = await verify_files(
                self.storage,
                listing.files,
                concurrency=self.config.verify_concurrency,
                keys=schema_keys(table.table_schema),
            )
            bad = [v.error for v in verdicts if v.error is not None]
            if bad:
                shown = "; ".join(str(e) for e in bad[:10])
                more = f" (and {len(bad) - 10} more)" if len(bad) > 10 else ""
                self._fail(table, f"verification failed for {len(bad)} data file(s): {shown}{more}")
                return
            files = [v.data_file for v in verdicts if v.data_file is not None]
            total = sum(f.item_count for f in files)
            _check_total(total, table.export_item_count, "DescribeExport ItemCount", files)
            if listing.summary is not None:
                _check_total(total, listing.summary.item_count, "manifest-summary.json", files)
                if table.billed_size_bytes is None:
                    table.billed_size_bytes = listing.summary.billed_size_bytes
        except DdbBackupError as exc:
            self._fail(table, exc)
            return
        table.export_folder = folder
        table.files = files
        table.item_count = total
        table.status = RunTableStatus.COMPLETED
        table.error = None
        log.info(
            "export verified",
            extra={
                "table": table.table_name,
                "export_folder": folder,
                "files": len(files),
                "item_count": total,
                "aws_manifest": listing.has_aws_manifest,
            },
        )
        self._progress(table, "COMPLETED")

    # -- answering ------------------------------------------------------------

    async def _finish(self) -> BackupResult:
        state = self._state
        if not all(t.status in FINAL_STATUSES for t in state.tables):
            await self._save_state()
            body = self.body()
            log.info("backup run continues on a later invocation", extra=_summary(body))
            return BackupResult(202, body)
        await self._save_state()
        manifest = BackupManifest(
            backup_date=self.date,
            environment=state.environment,
            bucket=state.bucket,
            prefix=state.prefix,
            export_time=state.export_time,
            created_at=dt.datetime.now(dt.UTC),
            status=_backup_status(state.tables),
            tables=[_table_backup(t, state.export_time) for t in state.tables],
        )
        # Written last: its presence means the date is final.
        await self.storage.put_bytes(self.manifest_key, manifest.to_json())
        body = self.body()
        log.info("backup run final", extra=_summary(body))
        return BackupResult(_status_code(state.tables), body, manifest)

    def _answer_from_manifest(self, raw: bytes) -> BackupResult:
        manifest = load_manifest(raw, key=self.manifest_key, prefix=self.config.prefix)
        if manifest.environment != self.config.environment:
            raise ManifestError(
                f"manifest belongs to environment {manifest.environment}", key=self.manifest_key
            )
        export_time = manifest.export_time or self.now
        self.state = RunState(
            backup_date=manifest.backup_date,
            environment=manifest.environment,
            bucket=manifest.bucket or self.config.bucket,
            prefix=manifest.prefix,
            export_time=export_time,
            started_at=export_time,
            updated_at=manifest.created_at or export_time,
            tables=[_table_run(t) for t in manifest.tables],
        )
        body = self.body()
        body["message"] = "backup already final for this date; nothing was started"
        body["already_final"] = True
        status = _status_code(self.state.tables)
        # A final date is never reopened (its manifest is what restores trust);
        # a table configured since is named, and the answer is not a plain 200.
        missing = [name for name in self.config.tables if manifest.table(name) is None]
        if missing:
            body["not_backed_up"] = missing
            body["message"] += (
                f"; not backed up on {self.date.isoformat()} (configured after the run "
                f"was final; the next date's run includes them): {', '.join(missing)}"
            )
            status = max(status, 207)
            log.warning(
                "configured tables missing from the final backup",
                extra={"backup_date": self.date.isoformat(), "tables": missing},
            )
        log.info("backup already final", extra=_summary(body))
        return BackupResult(status, body, manifest)

    def body(self) -> dict[str, Any]:
        state = self._state
        tables = state.tables
        ok = [t for t in tables if t.status is RunTableStatus.COMPLETED]
        failed = [t for t in tables if t.status is RunTableStatus.FAILED]
        final = len(ok) + len(failed) == len(tables)
        billed = sum(t.billed_size_bytes or 0 for t in ok)
        return {
            **self._base_body(),
            "status": _backup_status(tables).value if final else "IN_PROGRESS",
            "export_time": state.export_time.isoformat(),
            "total_tables_processed": len(tables),
            "successful_exports": len(ok),
            "failed_exports": len(failed),
            "in_progress_exports": len(tables) - len(ok) - len(failed),
            "total_items_exported": sum(t.item_count or 0 for t in ok),
            "total_billed_size_bytes": billed,
            "total_size_mb": round(billed / (1024 * 1024), 6),
            "manifest_s3_key": self.manifest_key if final else None,
            "results": [_table_result(t) for t in tables],
        }

    def error_body(self, message: str) -> dict[str, Any]:
        n = len(self.config.tables)
        return {
            **self._base_body(),
            "status": "FAILED",
            "error": message,
            "total_tables_processed": n,
            "successful_exports": 0,
            "failed_exports": n,
            "in_progress_exports": 0,
            "total_items_exported": 0,
            "total_billed_size_bytes": 0,
            "total_size_mb": 0.0,
            "manifest_s3_key": None,
            "results": [],
        }

    def _base_body(self) -> dict[str, Any]:
        return {
            "backup_date": self.date.isoformat(),
            "environment": self.config.environment,
            "backup_type": BACKUP_TYPE,
            "s3_bucket": self.config.bucket,
            "s3_prefix": self.config.prefix,
            "run_state_s3_key": self.state_key,
            "already_final": False,
            "not_backed_up": [],
        }


def _check_total(total: int, expected: int | None, source: str, files: list[DataFile]) -> None:
    if expected is None or expected == total:
        return
    names = ", ".join(f.key for f in files[:10]) + (" ..." if len(files) > 10 else "")
    raise ItemCountMismatchError(
        f"the data files hold {total} items, {source} says {expected} (files: {names})",
        key=files[0].key.rsplit("/data/", 1)[0] if files else "(no data files)",
    )


def _backup_status(tables: list[TableRun]) -> BackupStatus:
    ok = sum(t.status is RunTableStatus.COMPLETED for t in tables)
    if tables and ok == len(tables):
        return BackupStatus.COMPLETE
    return BackupStatus.PARTIAL if ok else BackupStatus.FAILED


def _status_code(tables: list[TableRun]) -> int:
    return {BackupStatus.COMPLETE: 200, BackupStatus.PARTIAL: 207, BackupStatus.FAILED: 500}[
        _backup_status(tables)
    ]


def _table_backup(t: TableRun, export_time: dt.datetime) -> TableBackup:
    completed = t.status is RunTableStatus.COMPLETED
    return TableBackup(
        table_name=t.table_name,
        status=TableStatus.COMPLETED if completed else TableStatus.FAILED,
        error=t.error,
        export_arn=t.export_arn,
        export_time=export_time if t.export_arn else None,
        s3_prefix=t.s3_prefix,
        export_folder=t.export_folder,
        item_count=t.item_count if completed else None,
        billed_size_bytes=t.billed_size_bytes,
        files=t.files if completed else None,
        schema=t.table_schema,
    )


def _table_run(t: TableBackup) -> TableRun:
    return TableRun(
        table_name=t.table_name,
        status=RunTableStatus.COMPLETED
        if t.status is TableStatus.COMPLETED
        else RunTableStatus.FAILED,
        error=t.error,
        s3_prefix=t.s3_prefix,
        export_arn=t.export_arn,
        export_folder=t.export_folder,
        item_count=t.item_count,
        billed_size_bytes=t.billed_size_bytes,
        files=t.files,
        schema=t.table_schema,
    )


def _table_result(t: TableRun) -> dict[str, Any]:
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


def _summary(body: dict[str, Any]) -> dict[str, Any]:
    """The counts of a response, for a log line (no per-table details)."""
    return {
        k: body.get(k)
        for k in (
            "backup_date",
            "status",
            "total_tables_processed",
            "successful_exports",
            "failed_exports",
            "in_progress_exports",
            "total_items_exported",
            "manifest_s3_key",
        )
    }
