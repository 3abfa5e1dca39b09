"""Restore: verify first, then clear (if asked), then stream every item back.

Order of a run, per table::

    resolve the backup -> check the target table (exists, same keys) ->
    read back and verify every data file -> [create table] ->
    [clear existing data] -> stream files -> batches of 25 -> BatchWriter

A table whose backup does not verify, or whose target is missing or has
other keys, is neither cleared nor written. Files are streamed (S3 chunks ->
gunzip -> lines -> items) with a bound on files in flight and on batches in
flight, so memory does not grow with a file's size.

With a deadline (seconds), the run stops taking new work in time, lets the
batches in flight finish, writes a checkpoint and answers 202 with a
``resume_token``; a run given that token continues exactly there.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ddb_backup.aws import AwsClients, client_config
from ddb_backup.catalog import load_backup, resolve_backup
from ddb_backup.checkpoint import load_checkpoint, save_checkpoint
from ddb_backup.clear import clear_existing_data, count_items
from ddb_backup.concurrency import run_workers
from ddb_backup.config import RestoreConfig
from ddb_backup.errors import (
    BackupNotFoundError,
    CheckpointError,
    ChecksumMismatchError,
    DdbBackupError,
    ExportError,
    ItemCountMismatchError,
    ManifestError,
    TableError,
    TableNotFoundError,
    UnsafeNameError,
    UnsupportedFormatError,
)
from ddb_backup.events import RestoreRequest
from ddb_backup.export_folder import ExportListing, read_export_folder
from ddb_backup.items import parse_item_line
from ddb_backup.keys import check_prefix, dead_letter_prefix
from ddb_backup.log import get_logger
from ddb_backup.manifest import BackupManifest, TableBackup, TableStatus
from ddb_backup.progress import (
    FileState,
    Phase,
    RestoreState,
    SkippedDate,
    TablePhase,
    TableProgress,
    TableState,
)
from ddb_backup.progress import TableStatus as ResultStatus
from ddb_backup.storage import S3Storage, Storage
from ddb_backup.stream import StreamStats, iter_lines
from ddb_backup.tables import (
    TargetTable,
    check_key_schema,
    create_table_from_schema,
    describe_target,
    missing_table_error,
)
from ddb_backup.verify import verify_files, verify_table_backup
from ddb_backup.writer import (
    MAX_BATCH,
    BatchSender,
    BatchWriter,
    DeadLetterSink,
    RetryPolicy,
    WireRequest,
    default_sender,
)

__all__ = [
    "RestoreResult",
    "TableProgress",
    "new_restore_id",
    "restore_clients",
    "restore_export",
    "run_restore",
]

log = get_logger("restore")

T = TypeVar("T")
ProgressCallback = Callable[[TableProgress], None]

#: Data files streamed at once per table (each holds one S3 chunk and its lines).
DEFAULT_FILES_IN_FLIGHT = 2
#: Files verified at once.
VERIFY_CONCURRENCY = 4
#: Seconds between progress log lines.
PROGRESS_INTERVAL = 10.0

# Errors that mean "the request cannot be served as asked" (400), not a fault.
_REQUEST_ERRORS = (
    BackupNotFoundError,
    CheckpointError,
    ManifestError,
    UnsafeNameError,
    UnsupportedFormatError,
    ExportError,
)


@dataclass(frozen=True, slots=True)
class RestoreResult:
    """``status_code`` (200/202/207/400/500) and the response ``body``."""

    status_code: int
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.status_code == 200


def new_restore_id() -> str:
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


@contextlib.asynccontextmanager
async def restore_clients(max_workers: int = 5) -> AsyncIterator[AwsClients]:
    """Clients for a restore: DynamoDB without botocore retries (the writer's
    :class:`RetryPolicy` decides alone), S3 with botocore's standard retries."""
    from aiobotocore.session import get_session

    session = get_session()
    pool = max(10, max_workers * 2 + 4)
    async with (
        session.create_client("dynamodb", config=client_config(pool, max_attempts=1)) as ddb,
        session.create_client("s3", config=client_config(pool)) as s3,
    ):
        yield AwsClients(dynamodb=ddb, s3=s3)


@contextlib.asynccontextmanager
async def _closing(it: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """Close an async generator when leaving early (its S3 body with it)."""
    try:
        yield it
    finally:
        aclose = getattr(it, "aclose", None)
        if aclose is not None:
            await aclose()


class _Run:
    """One invocation's work on a :class:`RestoreState`."""

    def __init__(
        self,
        state: RestoreState,
        *,
        clients: AwsClients,
        storage: Storage,
        dead_letter_storage: Storage,
        dead_letter_root: str,
        sender: BatchSender,
        retry: RetryPolicy,
        max_workers: int,
        files_in_flight: int,
        dry_run: bool,
        clear: bool,
        create_missing: bool,
        deadline_seconds: float | None,
        max_batches: int | None,
        on_progress: ProgressCallback | None,
        progress_interval: float,
    ) -> None:
        self.state = state
        self.clients = clients
        self.storage = storage
        self.dead_storage = dead_letter_storage
        self.dead_root = dead_letter_root
        self.sender = sender
        self.retry = retry
        self.max_workers = max_workers
        self.files_in_flight = files_in_flight
        self.dry_run = dry_run
        self.clear = clear
        self.create_missing = create_missing
        self.deadline = deadline_seconds
        self.max_batches = max_batches
        self.on_progress = on_progress
        self.progress_interval = progress_interval
        self.t0 = time.monotonic()
        self.work_units = 0  # verified tables + submitted batches + scan pages this round
        self.batches = 0
        self.stopped = False
        self.current: tuple[TableState, Phase] | None = None

    # -- deadline ---------------------------------------------------------

    def should_stop(self) -> bool:
        """True once the deadline (or batch budget) is reached; always after some work."""
        if self.stopped:
            return True
        if self.work_units == 0:
            return False  # every round makes progress, however short its deadline
        if self.deadline is not None and time.monotonic() - self.t0 >= self.deadline:
            self.stopped = True
        if self.max_batches is not None and self.batches >= self.max_batches:
            self.stopped = True
        return self.stopped

    # -- progress ---------------------------------------------------------

    def _phase(self, ts: TableState, phase: Phase) -> None:
        self.current = (ts, phase)
        self._report(ts, phase)

    def _report(self, ts: TableState, phase: Phase) -> None:
        elapsed = time.monotonic() - self.t0
        snap = TableProgress.of(ts, phase, elapsed)
        log.info(
            "restore progress",
            extra={
                "table": ts.target_table,
                "phase": phase,
                "items_written": ts.items_written,
                "items_expected": ts.items_expected,
                "items_failed": ts.items_failed,
                "items_cleared": ts.items_cleared,
                "files_done": snap.files_done,
                "files_total": snap.files_total,
                "elapsed_seconds": round(elapsed, 1),
                "items_per_second": round(ts.items_written / elapsed, 1) if elapsed > 0 else 0.0,
            },
        )
        if self.on_progress is not None:
            self.on_progress(snap)

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.progress_interval)
            if self.current is not None:
                self._report(*self.current)

    # -- phase 1: verify and check ---------------------------------------

    async def prepare_backup_table(self, ts: TableState, tb: TableBackup) -> None:
        """Target check and verification of one table of a backup; never writes
        unless the table is to be created (and only after it verified)."""
        self._phase(ts, "verifying")
        started = time.monotonic()
        schema = tb.table_schema
        try:
            target = await describe_target(self.clients.dynamodb, ts.target_table, retry=self.retry)
            if target is not None:
                if schema is not None:
                    check_key_schema(target, schema)
                key_names = schema.key_names if schema else target.key_names
            elif not self.create_missing:
                raise missing_table_error(ts.target_table)
            elif schema is None:
                raise TableError(
                    f"target table {ts.target_table} does not exist and the backup captured "
                    "no schema to create it from (legacy backup): create it first",
                    table=ts.target_table,
                )
            else:
                key_names = schema.key_names
            ts.key_names = list(key_names)
            verdict = await verify_table_backup(
                self.storage, tb, concurrency=VERIFY_CONCURRENCY, key_names=tuple(key_names)
            )
            if not verdict.ok:
                ts.errors.extend(verdict.errors)
                ts.phase = TablePhase.FAILED
                return
            ts.files = [FileState.from_data_file(f) for f in verdict.files]
            ts.items_expected = tb.item_count if tb.item_count is not None else verdict.item_count
            await self._finish_prepare(ts, target, schema)
        except DdbBackupError as exc:
            ts.errors.append(str(exc))
            ts.phase = TablePhase.FAILED
        finally:
            self.work_units += 1
            ts.duration_seconds += time.monotonic() - started

    async def prepare_export_table(self, ts: TableState, listing: ExportListing) -> None:
        """The same for one export folder: keys come from the (existing) target."""
        self._phase(ts, "verifying")
        started = time.monotonic()
        try:
            target = await describe_target(self.clients.dynamodb, ts.target_table, retry=self.retry)
            if target is None:
                raise TableNotFoundError(
                    f"target table {ts.target_table} does not exist", table=ts.target_table
                )
            ts.key_names = list(target.key_names)
            verdicts = await verify_files(
                self.storage,
                listing.files,
                concurrency=VERIFY_CONCURRENCY,
                key_names=target.key_names,
            )
            errors = [str(v.error) for v in verdicts if v.error is not None]
            if errors:
                ts.errors.extend(errors)
                ts.phase = TablePhase.FAILED
                return
            files = [v.data_file for v in verdicts if v.data_file is not None]
            ts.files = [FileState.from_data_file(f) for f in files]
            counted = sum(f.item_count for f in files)
            expected = listing.item_count
            if expected is not None and expected != counted:
                ts.errors.append(
                    f"{listing.folder}: data files hold {counted} items, "
                    f"manifest-summary.json says {expected}"
                )
                ts.phase = TablePhase.FAILED
                return
            ts.items_expected = counted
            ts.verified_against_manifest = listing.has_aws_manifest
            if not listing.has_aws_manifest:
                ts.notes.append("no AWS manifest in the folder: counts learnt by reading the files")
            await self._finish_prepare(ts, target, None)
        except DdbBackupError as exc:
            ts.errors.append(str(exc))
            ts.phase = TablePhase.FAILED
        finally:
            self.work_units += 1
            ts.duration_seconds += time.monotonic() - started

    async def _finish_prepare(
        self, ts: TableState, target: TargetTable | None, schema: Any
    ) -> None:
        if target is None:
            if self.dry_run:
                ts.notes.append("target table does not exist: a real run would create it")
                ts.items_to_clear = 0 if self.clear else None
            else:
                await create_table_from_schema(
                    self.clients.dynamodb, ts.target_table, schema, retry=self.retry
                )
                ts.created = True
                ttl = (schema.time_to_live or {}) if schema is not None else {}
                if ttl.get("TimeToLiveStatus") in {"ENABLED", "ENABLING"}:
                    ts.notes.append(
                        f"time to live ({ttl.get('AttributeName')}) was not enabled on the new "
                        "table, so expiry cannot delete restored items; enable it when satisfied"
                    )
        elif self.dry_run and self.clear:
            ts.items_to_clear = await count_items(
                self.clients.dynamodb, ts.target_table, retry=self.retry
            )
        ts.phase = TablePhase.READY

    # -- phase 2: clear and write ------------------------------------------

    async def restore_table(self, ts: TableState) -> None:
        started = time.monotonic()
        try:
            if self.dry_run:
                ts.phase = TablePhase.DONE
                return
            if self.clear and ts.phase in (TablePhase.READY, TablePhase.CLEARING):
                # Resumed in CLEARING: no backup item was written yet, scanning
                # again deletes only what the earlier round left.
                ts.phase = TablePhase.CLEARING
                self._phase(ts, "clearing")

                def deleted(n: int, failed: int) -> None:
                    ts.items_cleared += n
                    ts.items_clear_failed += failed
                    self.work_units += 1

                result = await clear_existing_data(
                    self.clients.dynamodb,
                    ts.target_table,
                    tuple(ts.key_names),
                    sender=self.sender,
                    max_workers=self.max_workers,
                    retry=self.retry,
                    should_stop=self.should_stop,
                    on_deleted=deleted,
                )
                if not result.complete:
                    return
                if ts.items_clear_failed:
                    ts.errors.append(
                        f"{ts.items_clear_failed} existing items could not be deleted "
                        "(retry budget spent)"
                    )
            ts.phase = TablePhase.WRITING
            self._phase(ts, "writing")
            await self._write_files(ts)
            if all(f.done for f in ts.files):
                ts.phase = TablePhase.DONE
        except DdbBackupError as exc:
            ts.errors.append(str(exc))
        finally:
            ts.duration_seconds += time.monotonic() - started
            self._report(ts, "done" if ts.phase is TablePhase.DONE else "writing")

    async def _write_files(self, ts: TableState) -> None:
        folder = dead_letter_prefix(self.dead_root, self.state.restore_id, ts.target_table)
        sink = DeadLetterSink(
            self.dead_storage,
            folder,
            part_prefix=f"round{self.state.round:03d}",
            files=ts.dead_letter_files,
        )
        pending = [f for f in ts.files if not f.done]
        ended: dict[str, int] = {}
        try:
            async with BatchWriter(
                ts.target_table,
                self.sender,
                max_workers=self.max_workers,
                retry=self.retry,
                dead_letters=sink,
            ) as writer:

                async def one(f: FileState) -> None:
                    try:
                        lines = await self._stream_file(ts, f, writer)
                        if lines is not None:
                            ended[f.key] = lines
                    except DdbBackupError as exc:
                        ts.errors.append(str(exc))

                await run_workers(pending, one, concurrency=self.files_in_flight)
        finally:
            await sink.flush()
            ts.dead_letter_files = list(sink.files)
            if sink.files:
                ts.dead_letter_folder = folder
        for f in pending:
            if f.key in ended and f.lines_done >= ended[f.key]:
                f.done = True

    async def _stream_file(self, ts: TableState, f: FileState, writer: BatchWriter) -> int | None:
        """Send one file's items; the number of lines when read to the end, else None."""
        if self.should_stop():
            return None
        key = f.key
        stats = StreamStats()
        skip = f.lines_done
        line_no = 0
        batch: list[WireRequest] = []
        batch_start = skip

        async def submit(start: int, end: int) -> None:
            nonlocal batch
            requests, batch = batch, []
            self.batches += 1
            self.work_units += 1

            def done(written: int, failed: int) -> None:
                ts.items_written += written
                ts.items_failed += failed
                f.mark(start, end)

            await writer.submit(requests, done)

        async with (
            _closing(self.storage.stream(key)) as chunks,
            _closing(iter_lines(chunks, key=key, stats=stats)) as lines,
        ):
            async for line in lines:
                line_no += 1
                if line_no <= skip:
                    continue  # handled in an earlier round
                if not batch and self.should_stop():
                    return None
                batch.append(
                    {"PutRequest": {"Item": parse_item_line(line, key=key, line_no=line_no)}}
                )
                ts.items_read += 1
                if len(batch) == MAX_BATCH:
                    await submit(batch_start, line_no)
                    batch_start = line_no
            if batch:
                await submit(batch_start, line_no)
        # The file was verified before; check again what was actually streamed.
        if f.item_count is not None and line_no != f.item_count:
            raise ItemCountMismatchError(
                f"held {line_no} items while restoring, {f.item_count} when verified", key=key
            )
        if f.md5 is not None and stats.md5_base64 != f.md5:
            raise ChecksumMismatchError("changed between verification and restore", key=key)
        return line_no

    # -- the whole run ----------------------------------------------------

    @contextlib.asynccontextmanager
    async def ticking(self) -> AsyncIterator[None]:
        task = asyncio.create_task(self._ticker())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def body(self) -> dict[str, Any]:
        st = self.state
        results = [t.report(self.dry_run) for t in st.tables]
        statuses = [r["status"] for r in results]
        ok = {ResultStatus.COMPLETED.value, ResultStatus.DRY_RUN.value}
        return {
            "restore_id": st.restore_id,
            "backup_date": st.backup_date.isoformat() if st.backup_date else None,
            "environment": st.environment,
            "s3_bucket": st.bucket,
            "s3_prefix": st.prefix,
            "dry_run": self.dry_run,
            "round": st.round,
            "duration_seconds": round(st.elapsed_seconds + time.monotonic() - self.t0, 3),
            "tables_requested": [t.source_table for t in st.tables],
            "successful_restores": sum(s in ok for s in statuses),
            "partial_restores": statuses.count(ResultStatus.PARTIAL.value),
            "failed_restores": statuses.count(ResultStatus.FAILED.value),
            "skipped_restores": len(st.skipped_tables),
            "total_items_written": sum(t.items_written for t in st.tables),
            "total_items_processed": sum(t.items_read for t in st.tables),
            "total_items_failed": sum(t.items_failed for t in st.tables),
            "total_items_cleared": sum(t.items_cleared for t in st.tables),
            "configuration": {
                **st.request,
                "files_in_flight": self.files_in_flight,
                "retry": {
                    "max_attempts": self.retry.max_attempts,
                    "base_delay": self.retry.base_delay,
                    "max_delay": self.retry.max_delay,
                },
            },
            "restore_results": results,
            "skipped_backups": [
                {"date": s.date.isoformat(), "reason": s.reason} for s in st.skipped_backups
            ],
            "skipped_tables": list(st.skipped_tables),
        }

    async def run(self) -> RestoreResult:
        async with self.ticking():
            for ts in self.state.tables:
                if ts.phase is TablePhase.PENDING:
                    raise AssertionError("prepare tables before run()")  # pragma: no cover
            for ts in self.state.tables:
                if ts.phase in (TablePhase.DONE, TablePhase.FAILED):
                    continue
                if self.should_stop():
                    break
                await self.restore_table(ts)
        return await self.finish()

    async def finish(self) -> RestoreResult:
        st = self.state
        unfinished = [t for t in st.tables if t.phase not in (TablePhase.DONE, TablePhase.FAILED)]
        body = self.body()
        if unfinished and self.stopped:
            st.elapsed_seconds += time.monotonic() - self.t0
            token = await save_checkpoint(self.dead_storage, st)
            body["resume_token"] = token
            body["status"] = "IN_PROGRESS"
            body["message"] = (
                f"deadline reached in round {st.round}: {len(unfinished)} table(s) to go; "
                "invoke again with the resume_token"
            )
            log.info(
                "restore checkpointed",
                extra={"restore_id": st.restore_id, "round": st.round, "tables": len(unfinished)},
            )
            return RestoreResult(202, body)
        if st.round > 1 or self.deadline is not None or self.max_batches is not None:
            # Mark the checkpoint finished so an old token cannot replay the run.
            st.finished = True
            st.elapsed_seconds += time.monotonic() - self.t0
            await save_checkpoint(self.dead_storage, st)
        code = _status_code(body)
        body["status"] = {200: "COMPLETED", 207: "PARTIAL", 500: "FAILED"}[code]
        if self.dry_run and code == 200:
            body["status"] = "DRY_RUN_OK"
        log.info(
            "restore finished",
            extra={
                "restore_id": st.restore_id,
                "status": body["status"],
                "items_written": body["total_items_written"],
                "items_failed": body["total_items_failed"],
            },
        )
        return RestoreResult(code, body)


def _status_code(body: dict[str, Any]) -> int:
    results = body["restore_results"]
    ok = body["successful_restores"]
    if results and ok == len(results) and not body["skipped_restores"]:
        return 200
    if ok or body["partial_restores"] or body["total_items_written"]:
        return 207
    return 500


def _error_result(
    exc: BaseException, code: int, base: dict[str, Any] | None = None
) -> RestoreResult:
    log.error("restore refused" if code == 400 else "restore failed", extra={"error": str(exc)})
    return RestoreResult(
        code,
        {
            **(base or {}),
            "status": "FAILED",
            "error": str(exc),
            "error_type": type(exc).__name__,
            "restore_results": [],
        },
    )


async def _plan(
    config: RestoreConfig, request: RestoreRequest, storage: Storage
) -> tuple[RestoreState, BackupManifest]:
    """Resolve the backup and list the tables to restore (reads only)."""
    prefix = config.prefix
    skipped_tables: list[dict[str, str]] = []
    skipped_dates: list[SkippedDate] = []
    if request.backup_date == "latest":
        resolved = await resolve_backup(storage, prefix, "latest", request.tables)
        manifest = resolved.manifest
        skipped_dates = [SkippedDate(date=s.date, reason=s.reason) for s in resolved.skipped]
        sources = request.tables or [t.table_name for t in manifest.tables]
    elif request.tables:
        manifest = (
            await resolve_backup(storage, prefix, request.backup_date, request.tables)
        ).manifest
        sources = list(request.tables)
    else:
        from ddb_backup.keys import check_date

        manifest = await load_backup(storage, prefix, check_date(request.backup_date))
        sources = [t.table_name for t in manifest.tables if t.status is TableStatus.COMPLETED]
        skipped_tables = [
            {"table": t.table_name, "reason": f"export {t.status.value}: {t.error or 'no detail'}"}
            for t in manifest.tables
            if t.status is not TableStatus.COMPLETED
        ]
        if not sources:
            raise BackupNotFoundError(f"backup {manifest.backup_date} has no completed table")
    if manifest.environment != config.environment:
        raise ManifestError(
            f"backup {manifest.backup_date} belongs to environment {manifest.environment!r}, "
            f"this deployment is {config.environment!r}"
        )
    unknown = sorted(set(request.table_mapping or {}) - set(sources))
    if unknown:
        raise BackupNotFoundError(
            f"table_mapping names tables not in backup {manifest.backup_date}: {', '.join(unknown)}"
        )
    targets = request.targets(sources)
    clash = {t for t in targets.values() if list(targets.values()).count(t) > 1}
    if clash:
        raise UnsafeNameError(f"two tables would be restored into {', '.join(sorted(clash))}")
    tables = []
    for source in sources:
        tb = manifest.table(source)
        assert tb is not None
        tables.append(
            TableState(source_table=source, target_table=targets[source], s3_prefix=tb.s3_prefix)
        )
    state = RestoreState(
        restore_id=new_restore_id(),
        bucket=config.bucket,
        environment=config.environment,
        prefix=prefix,
        backup_date=manifest.backup_date,
        request=request.echo(),
        tables=tables,
        skipped_backups=skipped_dates,
        skipped_tables=skipped_tables,
    )
    return state, manifest


async def run_restore(
    config: RestoreConfig,
    request: RestoreRequest,
    clients: AwsClients,
    *,
    storage: Storage | None = None,
    deadline_seconds: float | None = None,
    on_progress: ProgressCallback | None = None,
    retry: RetryPolicy | None = None,
    sender: BatchSender | None = None,
    files_in_flight: int = DEFAULT_FILES_IN_FLIGHT,
    max_batches: int | None = None,
    progress_interval: float = PROGRESS_INTERVAL,
) -> RestoreResult:
    """Restore the tables of a backup as ``request`` asks; never raises for
    expected failures (they are in the result's status code and body).

    ``deadline_seconds``: stop taking new work after this long, checkpoint and
    answer 202 with a ``resume_token``. ``max_batches``: the same after that
    many batches (a work budget per invocation; tests use it to force rounds).
    """
    started = time.monotonic()
    storage = storage or S3Storage(
        clients.s3, config.bucket, expected_owner=config.expected_bucket_owner
    )
    base = {
        "environment": config.environment,
        "s3_bucket": config.bucket,
        "s3_prefix": config.prefix,
        "backup_date": request.backup_date,
        "tables_requested": request.tables,
        "dry_run": request.dry_run,
    }
    try:
        if request.shard is not None:
            raise UnsupportedFormatError(
                "shard restores need a fan-out plan, which this version does not provide"
            )
        manifest: BackupManifest | None = None
        if request.resume_token is not None:
            state = await load_checkpoint(storage, config, request.resume_token)
            state.round += 1
            original = RestoreRequest.model_validate(state.request)
            max_workers = (
                request.max_workers
                if "max_workers" in request.model_fields_set
                else original.max_workers
            )
            if any(t.phase is TablePhase.PENDING for t in state.tables):
                assert state.backup_date is not None
                manifest = await load_backup(storage, config.prefix, state.backup_date)
        else:
            state, manifest = await _plan(config, request, storage)
            original = request
            max_workers = request.max_workers
    except _REQUEST_ERRORS as exc:
        return _error_result(exc, 400, base)
    except DdbBackupError as exc:
        return _error_result(exc, 500, base)

    run = _Run(
        state,
        clients=clients,
        storage=storage,
        dead_letter_storage=storage,
        dead_letter_root=config.prefix,
        sender=sender or default_sender(clients.dynamodb),
        retry=retry or RetryPolicy(),
        max_workers=max_workers,
        files_in_flight=max(1, files_in_flight),
        dry_run=original.dry_run,
        clear=original.clear_existing_data,
        create_missing=original.create_missing_tables,
        deadline_seconds=deadline_seconds,
        max_batches=max_batches,
        on_progress=on_progress,
        progress_interval=progress_interval,
    )
    run.t0 = started
    log.info(
        "restore started",
        extra={
            "restore_id": state.restore_id,
            "round": state.round,
            "backup_date": str(state.backup_date),
            "tables": len(state.tables),
            "dry_run": original.dry_run,
        },
    )
    try:
        # Phase 1 for every table before any table is cleared or written.
        for ts in state.tables:
            if ts.phase is not TablePhase.PENDING:
                continue
            if run.should_stop():
                break
            assert manifest is not None
            tb = manifest.table(ts.source_table)
            if tb is None:
                ts.errors.append(f"table {ts.source_table} is not in the backup")
                ts.phase = TablePhase.FAILED
                continue
            await run.prepare_backup_table(ts, tb)
        if any(t.phase is TablePhase.PENDING for t in state.tables):
            return await run.finish()
        return await run.run()
    except DdbBackupError as exc:
        return _error_result(exc, 500, {**base, **run.body()})


async def restore_export(
    storage: Storage,
    folder: str,
    table: str,
    clients: AwsClients,
    *,
    dry_run: bool = False,
    max_workers: int = 5,
    on_progress: ProgressCallback | None = None,
    retry: RetryPolicy | None = None,
    dead_letter_storage: Storage | None = None,
    sender: BatchSender | None = None,
    files_in_flight: int = DEFAULT_FILES_IN_FLIGHT,
    progress_interval: float = PROGRESS_INTERVAL,
) -> RestoreResult:
    """Restore one DynamoDB export folder (``.../AWSDynamoDB/<id>``), made by
    anyone, into the existing ``table``: verified against AWS's manifests when
    present, DYNAMODB_JSON only (ION is refused before anything is written).

    Dead letters go to ``<first folder segment>/_restore/<id>/dead-letter/``
    in ``dead_letter_storage`` (default: ``storage``).
    """
    started = time.monotonic()
    folder = folder.strip("/")
    segments = folder.split("/")
    root = segments[0] if len(segments) > 1 else "ddb-backup"
    base = {"export_folder": folder, "target_table": table, "dry_run": dry_run}
    try:
        from ddb_backup.keys import check_table_name

        check_table_name(table)
        check_prefix(root)
        if not 1 <= max_workers <= 64:
            raise UnsafeNameError("max_workers must be between 1 and 64")
        listing = await read_export_folder(storage, folder)
    except _REQUEST_ERRORS as exc:
        return _error_result(exc, 400, base)
    except DdbBackupError as exc:
        return _error_result(exc, 500, base)
    state = RestoreState(
        restore_id=new_restore_id(),
        bucket=storage.location,
        environment="",
        prefix=root,
        request={"export_folder": folder, "table": table, "max_workers": max_workers},
        tables=[TableState(source_table=folder, target_table=table, s3_prefix=folder)],
    )
    run = _Run(
        state,
        clients=clients,
        storage=storage,
        dead_letter_storage=dead_letter_storage or storage,
        dead_letter_root=root,
        sender=sender or default_sender(clients.dynamodb),
        retry=retry or RetryPolicy(),
        max_workers=max_workers,
        files_in_flight=max(1, files_in_flight),
        dry_run=dry_run,
        clear=False,
        create_missing=False,
        deadline_seconds=None,
        max_batches=None,
        on_progress=on_progress,
        progress_interval=progress_interval,
    )
    run.t0 = started
    try:
        await run.prepare_export_table(state.tables[0], listing)
        result = await run.run()
    except DdbBackupError as exc:
        return _error_result(exc, 500, {**base, **run.body()})
    result.body.update(base)
    return result
