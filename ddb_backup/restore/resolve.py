"""Which backup, which tables: the state a run starts from.

A new request resolves its backup (a date or ``latest``) and its tables into
a fresh :class:`RestoreState` (reads only). A resume token loads the
checkpoint it names; a shard event cuts the shard's files from its plan.
Every refusal here happens before anything is written.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Literal

from ddb_backup.catalog import load_backup, resolve_backup
from ddb_backup.config import RestoreConfig
from ddb_backup.errors import BackupNotFoundError, CheckpointError, ManifestError, RequestError
from ddb_backup.events import RestoreRequest
from ddb_backup.keys import check_date
from ddb_backup.manifest import BackupManifest, TableStatus
from ddb_backup.restore.checkpoint import load_checkpoint
from ddb_backup.restore.shards import shard_state
from ddb_backup.restore.state import RestoreState, SkippedDate, TablePhase, TableState
from ddb_backup.storage import Storage

__all__ = ["Mode", "Resolved", "new_restore_id", "new_state", "resolve"]

#: What an entry point was asked to do: restore (whole, a shard, or resume) or plan shards.
Mode = Literal["restore", "plan"]


def new_restore_id() -> str:
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True, slots=True)
class Resolved:
    """The state to work on, the backup's manifest (while tables are still to
    verify), the restore's original request, and the workers to write with."""

    state: RestoreState
    manifest: BackupManifest | None
    request: RestoreRequest
    max_workers: int
    max_write_units: int | None = None


async def resolve(
    mode: Mode, config: RestoreConfig, request: RestoreRequest, storage: Storage
) -> Resolved:
    """The state ``request`` names: resumed, a shard's, or new."""
    manifest: BackupManifest | None = None
    if request.resume_token is not None:
        state = await load_checkpoint(storage, config, request.resume_token)
        if (mode == "plan") != (state.kind == "plan"):
            raise CheckpointError(
                "this resume_token belongs to "
                + (
                    "a plan: send it to the planning step"
                    if state.kind == "plan"
                    else "a restore, not a plan"
                )
            )
        state.round += 1
        original = RestoreRequest.model_validate(state.request)
        if any(t.phase is TablePhase.PENDING for t in state.tables):
            assert state.backup_date is not None
            manifest = await load_backup(storage, config.prefix, state.backup_date)
    elif request.shard is not None:
        if mode == "plan":
            raise RequestError("the planning step takes a restore event, not a shard")
        state = await shard_state(storage, config, request.shard.restore_id, request.shard.shard_id)
        original = RestoreRequest.model_validate(state.request)
    else:
        state, manifest = await new_state(config, request, storage)
        original = request
        if mode == "plan":
            state.kind = "plan"
    # A resume or a shard may change max_workers (the rest is the restore's own).
    max_workers = (
        request.max_workers if "max_workers" in request.model_fields_set else original.max_workers
    )
    # The write budget likewise (e.g. lowered while production traffic rises).
    budget = (
        request.max_write_units
        if "max_write_units" in request.model_fields_set
        else original.max_write_units
    )
    return Resolved(state, manifest, original, max_workers, budget)


async def new_state(
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
        raise RequestError(f"two tables would be restored into {', '.join(sorted(clash))}")
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
        started_at=dt.datetime.now(dt.UTC),
    )
    return state, manifest
