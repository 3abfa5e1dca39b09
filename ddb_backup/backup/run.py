"""The daily backup run: export every table, read every export back, write the manifest.

One run per UTC date. Its state lives in S3 (``keys.run_state_key``, kept by
:class:`~ddb_backup.backup.state.RunStateStore`) from the moment it starts::

    manifest final?  -> answer from it, start nothing
    state in S3?     -> resume it (same ExportTime, same exports)
    else             -> claim the date (conditional create), start a new run

    PENDING -> STARTING (state saved) -> IN_PROGRESS (state saved, ARN known)
            -> EXPORTED (AWS finished) -> COMPLETED (verified) | FAILED

The manifest is written last, once every table is COMPLETED or FAILED. An
export still running is never counted as a success: the run answers 202.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from ddb_backup import keys
from ddb_backup.aws import AwsClients
from ddb_backup.backup.answer import (
    BackupResult,
    RunIds,
    backup_status,
    error_body,
    run_body,
    status_code,
    summary,
)
from ddb_backup.backup.exports import Exporter
from ddb_backup.backup.polling import Deadline, Polling, poll_until
from ddb_backup.backup.state import (
    FINAL_STATUSES,
    NOT_STARTED,
    ProgressCallback,
    RunState,
    RunStateStore,
    TableRun,
    manifest_of,
    state_of,
)
from ddb_backup.backup.verification import verify_exported
from ddb_backup.concurrency import run_workers
from ddb_backup.config import BackupConfig
from ddb_backup.errors import BackupNotFoundError, DdbBackupError, ManifestError
from ddb_backup.log import get_logger
from ddb_backup.manifest import TableStatus, load_manifest
from ddb_backup.storage import S3Storage

__all__ = ["run_backup"]

log = get_logger(__name__)


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def backup_storage(config: BackupConfig, clients: AwsClients) -> S3Storage:
    return S3Storage(
        clients.s3,
        config.bucket,
        expected_owner=config.expected_bucket_owner,
        sse_kms_key_id=config.kms_key_id,
    )


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
    storage = backup_storage(config, clients)
    ids = RunIds(
        backup_date=date,
        environment=config.environment,
        bucket=config.bucket,
        prefix=config.prefix,
        state_key=keys.run_state_key(config.prefix, date),
        manifest_key=keys.manifest_key(config.prefix, date),
    )
    run = _BackupRun(
        config=config,
        storage=storage,
        store=RunStateStore(storage, ids.state_key, RunState, _belongs(ids)),
        ids=ids,
        now=started,
        deadline=Deadline.after(deadline_seconds),
        polling=polling or Polling(),
        exporter=Exporter(config, clients, date, started, on_progress),
    )
    try:
        return await run.execute()
    except DdbBackupError as exc:
        log.error(
            "backup run could not proceed",
            extra={"backup_date": date.isoformat(), "error": str(exc)},
        )
        if run.state is None:
            return BackupResult(500, error_body(ids, len(config.tables), str(exc)))
        # Cut off mid-run (e.g. S3 refused the state): report what is known.
        body = run_body(ids, run.state)
        body["error"] = str(exc)
        body["manifest_s3_key"] = None  # whatever happened, it was not written by this call
        return BackupResult(500, body)


def _belongs(ids: RunIds) -> Callable[[RunState], str | None]:
    """Why a stored state is not this run's (another environment, bucket, date), if so."""

    def check(state: RunState) -> str | None:
        mine = (ids.environment, ids.bucket, ids.prefix, ids.backup_date)
        if (state.environment, state.bucket, state.prefix, state.backup_date) == mine:
            return None
        return (
            f"belongs to environment {state.environment}, "
            f"s3://{state.bucket}/{state.prefix} on {state.backup_date.isoformat()}"
        )

    return check


@dataclass
class _BackupRun:
    config: BackupConfig
    storage: S3Storage
    store: RunStateStore[RunState]
    ids: RunIds
    now: dt.datetime
    deadline: Deadline
    polling: Polling
    exporter: Exporter
    state: RunState | None = None

    async def execute(self) -> BackupResult:
        raw_manifest = await self.storage.get_bytes_or_none(self.ids.manifest_key)
        if raw_manifest is not None:
            return self._answer_from_manifest(raw_manifest)
        state, claimed = await self._load_or_claim()
        # A resumed run whose exports another live invocation is starting right now.
        if not claimed or (
            state.invocations > 1
            and self.store.leased(state)
            and any(t.status in NOT_STARTED for t in state.tables)
        ):
            body = run_body(self.ids, state)
            body["message"] = "another invocation is starting this run; nothing was started"
            return BackupResult(202, body)
        await self._start_exports(state)
        await poll_until(
            lambda: self._step(state),
            save=lambda: self.store.save(state),
            deadline=self.deadline,
            polling=self.polling,
        )
        return await self._finish(state)

    async def _load_or_claim(self) -> tuple[RunState, bool]:
        """The date's run state, loaded or created; False if another invocation just did."""
        date = self.ids.backup_date
        state = await self.store.load()
        if state is not None:
            self.state = state
            state.invocations += 1
            self.exporter.unconfirmed = {
                t.table_name for t in state.tables if t.status is TableStatus.STARTING
            }
            known = {t.table_name for t in state.tables}
            # Tables added to the configuration since join the run (same ExportTime).
            state.tables += [self._new_table(n) for n in self.config.tables if n not in known]
            log.info(
                "resuming backup run",
                extra={
                    "backup_date": date.isoformat(),
                    "invocation": state.invocations,
                    "tables": [t.table_name for t in state.tables],
                },
            )
            return state, True
        if date != self.now.date():
            raise BackupNotFoundError(
                f"no backup run for {date.isoformat()} at {self.ids.state_key}; "
                "a new run only starts for the current UTC date"
            )
        state = RunState(
            backup_date=date,
            environment=self.config.environment,
            bucket=self.config.bucket,
            prefix=self.config.prefix,
            export_time=self.now,
            started_at=self.now,
            updated_at=self.now,
            tables=[self._new_table(name) for name in self.config.tables],
        )
        self.store.take_lease(state)
        existing = await self.store.claim(state)
        self.state = existing or state
        if existing is not None:
            return existing, False
        log.info(
            "backup run started",
            extra={
                "backup_date": date.isoformat(),
                "export_time": self.now.isoformat(),
                "tables": list(self.config.tables),
            },
        )
        return state, True

    def _new_table(self, name: str) -> TableRun:
        return TableRun(
            table_name=name,
            s3_prefix=keys.table_export_prefix(self.config.prefix, self.ids.backup_date, name),
        )

    async def _start_exports(self, state: RunState) -> None:
        """Describe and start every table not started yet; state saved before and after."""
        todo = [t for t in state.tables if t.status in NOT_STARTED]
        if not todo:
            return
        self.store.take_lease(state)
        concurrency = self.config.concurrency
        await run_workers(
            [t for t in todo if t.table_schema is None or t.table_arn is None],
            self.exporter.describe_table,
            concurrency=concurrency,
        )
        ready = [t for t in todo if t.status is not TableStatus.FAILED]
        for t in ready:
            if t.status is TableStatus.PENDING:
                t.status = TableStatus.STARTING
                self.exporter.progress(t, "STARTING")
        # Saved BEFORE the exports start: a run cut off in between looks for
        # its exports (ListExports) instead of starting them a second time.
        await self.store.save(state)
        await run_workers(ready, self.exporter.start, concurrency=concurrency)
        state.starting_until = None
        await self.store.save(state)

    async def _step(self, state: RunState) -> tuple[bool, bool]:
        """Poll running exports and verify finished ones; (changed, still waiting)."""
        changed = False
        running = [t for t in state.tables if t.status is TableStatus.IN_PROGRESS]
        if running and self.deadline.time_left():
            before = [t.status for t in running]
            await run_workers(running, self.exporter.poll, concurrency=self.config.concurrency)
            changed |= before != [t.status for t in running]
        exported = [t for t in state.tables if t.status is TableStatus.EXPORTED]
        if exported and self.deadline.time_left():
            changed |= await verify_exported(
                self.storage,
                exported,
                concurrency=self.config.concurrency,
                verify_concurrency=self.config.verify_concurrency,
                deadline=self.deadline,
                on_progress=self.exporter.on_progress,
            )
        # Only unconfirmed starts left (or nothing): a later invocation takes them.
        waiting = any(
            t.status in (TableStatus.IN_PROGRESS, TableStatus.EXPORTED) for t in state.tables
        )
        return changed, waiting

    async def _finish(self, state: RunState) -> BackupResult:
        await self.store.save(state)
        if not all(t.status in FINAL_STATUSES for t in state.tables):
            body = run_body(self.ids, state)
            log.info("backup run continues on a later invocation", extra=summary(body))
            return BackupResult(202, body)
        manifest = manifest_of(state, backup_status(state.tables))
        # Written last: its presence means the date is final.
        await self.storage.put_bytes(self.ids.manifest_key, manifest.to_json())
        body = run_body(self.ids, state)
        log.info("backup run final", extra=summary(body))
        return BackupResult(status_code(state.tables), body, manifest)

    def _answer_from_manifest(self, raw: bytes) -> BackupResult:
        key, date = self.ids.manifest_key, self.ids.backup_date
        manifest = load_manifest(raw, key=key, prefix=self.config.prefix)
        if manifest.environment != self.config.environment:
            raise ManifestError(f"manifest belongs to environment {manifest.environment}", key=key)
        self.state = state_of(manifest, bucket=self.config.bucket, now=self.now)
        body = run_body(self.ids, self.state)
        body["message"] = "backup already final for this date; nothing was started"
        body["already_final"] = True
        status = status_code(self.state.tables)
        # A final date is never reopened (its manifest is what restores trust);
        # a table configured since is named, and the answer is not a plain 200.
        missing = [name for name in self.config.tables if manifest.table(name) is None]
        if missing:
            body["not_backed_up"] = missing
            body["message"] += (
                f"; not backed up on {date.isoformat()} (configured after the run "
                f"was final; the next date's run includes them): {', '.join(missing)}"
            )
            status = max(status, 207)
            log.warning(
                "configured tables missing from the final backup",
                extra={"backup_date": date.isoformat(), "tables": missing},
            )
        log.info("backup already final", extra=summary(body))
        return BackupResult(status, body, manifest)
