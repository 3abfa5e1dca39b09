"""Run state in S3: the models, and the store that claims, leases and saves it.

A run's state object exists from the moment the run starts, so an invocation
cut off, a retried one and the next scheduled one all pick the same run up
(AWS's ``ClientToken`` only lasts 8 hours, and moto ignores it)::

    load()            -> the state, or None (checked: it belongs to this run)
    claim(state)      -> conditional create (If-None-Match: *); None if created,
                         else the state another invocation created first
    take_lease(state) -> "I am starting exports until ...": others start nothing
    save(state)       -> overwrite (only the claimer or a resumer writes)

The daily run (:mod:`ddb_backup.backup.run`) and the incremental windows
(:mod:`ddb_backup.backup.windows`) both keep their state with
:class:`RunStateStore`; each brings its own model (a :class:`StoredRun`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ddb_backup.errors import ManifestError
from ddb_backup.log import get_logger
from ddb_backup.manifest import (
    BackupManifest,
    BackupStatus,
    DataFile,
    TableBackup,
    TableSchema,
    TableStatus,
)
from ddb_backup.storage import S3Storage

__all__ = [
    "FINAL_STATUSES",
    "NOT_STARTED",
    "STARTING_LEASE",
    "ProgressCallback",
    "RunState",
    "RunStateStore",
    "StoredRun",
    "TableRun",
    "fail_table",
    "manifest_of",
    "state_of",
]

log = get_logger(__name__)

#: ``on_progress(table, state)``: every change of a table's state.
ProgressCallback = Callable[[str, str], None]

FINAL_STATUSES = frozenset({TableStatus.COMPLETED, TableStatus.FAILED})
NOT_STARTED = frozenset({TableStatus.PENDING, TableStatus.STARTING})

#: How long an invocation starting exports keeps others from starting them too
#: (far longer than the few calls it takes; a crashed one is taken over after).
STARTING_LEASE = dt.timedelta(minutes=5)


class _StateModel(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, validate_assignment=False)


class TableRun(_StateModel):
    """One table's export in a run, as saved in the run state."""

    table_name: str
    status: TableStatus = TableStatus.PENDING
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
    content_digest: str | None = None


class StoredRun(_StateModel):
    """What every run state has: when, how often resumed, who is starting exports."""

    started_at: dt.datetime
    updated_at: dt.datetime
    invocations: int = 1
    starting_until: dt.datetime | None = Field(
        default=None,
        description="an invocation is starting exports until then; others start nothing",
    )

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json", by_alias=True))


class RunState(StoredRun):
    """The daily run in progress for one date, at ``keys.run_state_key``."""

    state_version: Literal[1] = 1
    backup_date: dt.date
    environment: str
    bucket: str
    prefix: str
    export_time: dt.datetime
    tables: list[TableRun]


S = TypeVar("S", bound=StoredRun)


@dataclass(frozen=True, slots=True)
class RunStateStore(Generic[S]):
    """One run's state object at ``key``. ``belongs(state)`` names why a loaded
    state is not this run's (another environment, bucket, date...), or None."""

    storage: S3Storage
    key: str
    model: type[S]
    belongs: Callable[[S], str | None]
    what: str = "backup run state"

    def parse(self, raw: bytes) -> S:
        try:
            state = self.model.model_validate_json(raw)
        except ValidationError as exc:
            raise ManifestError(f"{self.what} is invalid", key=self.key) from exc
        problem = self.belongs(state)
        if problem is not None:
            raise ManifestError(f"{self.what} {problem}", key=self.key)
        return state

    async def load(self) -> S | None:
        raw = await self.storage.get_bytes_or_none(self.key)
        return None if raw is None else self.parse(raw)

    async def claim(self, state: S) -> S | None:
        """Create the state only if absent, so two invocations started together
        cannot both start exports: None if created, else the one already there."""
        if await self.storage.put_bytes_if_absent(self.key, state.to_json()):
            return None
        log.warning("run already claimed by another invocation", extra={"key": self.key})
        return self.parse(await self.storage.get_bytes(self.key))

    async def save(self, state: S) -> None:
        state.updated_at = dt.datetime.now(dt.UTC)
        await self.storage.put_bytes(self.key, state.to_json())

    @staticmethod
    def take_lease(state: StoredRun) -> None:
        state.starting_until = dt.datetime.now(dt.UTC) + STARTING_LEASE

    @staticmethod
    def leased(state: StoredRun) -> bool:
        """Another live invocation may be starting this run's exports right now."""
        until = state.starting_until
        return until is not None and until > dt.datetime.now(dt.UTC)


def fail_table(
    table: TableRun, exc: BaseException | str, on_progress: ProgressCallback | None
) -> None:
    """Mark ``table`` FAILED with the error's message (never an attribute value)."""
    table.status = TableStatus.FAILED
    table.error = str(exc)
    log.error(
        "table backup failed",
        extra={
            "table": table.table_name,
            "error": table.error,
            "error_type": type(exc).__name__ if not isinstance(exc, str) else None,
        },
    )
    if on_progress is not None:
        on_progress(table.table_name, "FAILED")


def manifest_of(state: RunState, status: BackupStatus) -> BackupManifest:
    """The final manifest of a run whose every table is COMPLETED or FAILED."""
    return BackupManifest(
        backup_date=state.backup_date,
        environment=state.environment,
        bucket=state.bucket,
        prefix=state.prefix,
        export_time=state.export_time,
        created_at=dt.datetime.now(dt.UTC),
        status=status,
        tables=[_table_backup(t, state.export_time) for t in state.tables],
    )


def state_of(manifest: BackupManifest, *, bucket: str, now: dt.datetime) -> RunState:
    """A final manifest read back as the state it was written from (to answer again)."""
    export_time = manifest.export_time or now
    return RunState(
        backup_date=manifest.backup_date,
        environment=manifest.environment,
        bucket=manifest.bucket or bucket,
        prefix=manifest.prefix,
        export_time=export_time,
        started_at=export_time,
        updated_at=manifest.created_at or export_time,
        tables=[_table_run(t) for t in manifest.tables],
    )


def _table_backup(t: TableRun, export_time: dt.datetime) -> TableBackup:
    completed = t.status is TableStatus.COMPLETED
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
        content_digest=t.content_digest if completed else None,
    )


def _table_run(t: TableBackup) -> TableRun:
    completed = t.status is TableStatus.COMPLETED
    return TableRun(
        table_name=t.table_name,
        status=TableStatus.COMPLETED if completed else TableStatus.FAILED,
        error=t.error,
        s3_prefix=t.s3_prefix,
        export_arn=t.export_arn,
        export_folder=t.export_folder,
        item_count=t.item_count,
        billed_size_bytes=t.billed_size_bytes,
        files=t.files,
        schema=t.table_schema,
        content_digest=t.content_digest,
    )
