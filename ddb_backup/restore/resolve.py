"""Which backup, which tables: the state a run starts from.

A new request resolves its backup (a date or ``latest``) and its tables into
a fresh :class:`RestoreState` (reads only); a ``restore_to`` request resolves,
per table, the full backup and the chain of windows reaching the time
(:func:`new_point_state`), kept in the state so every round applies exactly
that chain. A resume token loads the checkpoint it names; a shard event cuts
the shard's files from its plan. Every refusal here happens before anything
is written.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from ddb_backup.catalog import list_backups, load_backup, resolve_backup
from ddb_backup.config import RestoreConfig
from ddb_backup.errors import BackupNotFoundError, CheckpointError, ManifestError, RequestError
from ddb_backup.events import RestoreRequest
from ddb_backup.keys import check_date
from ddb_backup.manifest import BackupManifest, TableStatus
from ddb_backup.restore.checkpoint import load_checkpoint
from ddb_backup.restore.shards import shard_state
from ddb_backup.restore.state import (
    PointInTimeState,
    RestoreState,
    SkippedDate,
    TablePhase,
    TableState,
)
from ddb_backup.storage import Storage

__all__ = ["Mode", "Resolved", "new_point_state", "new_restore_id", "new_state", "resolve"]

#: Why a point-in-time restore is refused by the fan-out (see docs/restore.md).
POINT_IN_TIME_FAN_OUT = (
    "restore_to: a point-in-time restore runs as one resumable restore (the windows are "
    "applied strictly in order after the whole full backup, which shards writing at once "
    "cannot promise); send the event to the restore function, not to the fan-out"
)

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
    #: Point in time: each table's full backup (by source table), as tables may differ.
    point_manifests: dict[str, BackupManifest] = field(default_factory=dict)
    max_write_units: int | None = None


async def resolve(
    mode: Mode, config: RestoreConfig, request: RestoreRequest, storage: Storage
) -> Resolved:
    """The state ``request`` names: resumed, a shard's, or new."""
    manifest: BackupManifest | None = None
    point_manifests: dict[str, BackupManifest] = {}
    if request.restore_to is not None and (mode == "plan" or request.shard is not None):
        raise RequestError(POINT_IN_TIME_FAN_OUT)
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
        pending = [t for t in state.tables if t.phase is TablePhase.PENDING]
        if any(t.point_in_time is not None for t in pending):
            point_manifests = await _point_manifests(storage, config.prefix, pending)
        elif pending:
            assert state.backup_date is not None
            manifest = await load_backup(storage, config.prefix, state.backup_date)
    elif request.shard is not None:
        if mode == "plan":
            raise RequestError("the planning step takes a restore event, not a shard")
        state = await shard_state(storage, config, request.shard.restore_id, request.shard.shard_id)
        original = RestoreRequest.model_validate(state.request)
    elif request.restore_point is not None:
        state, point_manifests = await new_point_state(config, request, storage)
        original = request
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
    return Resolved(state, manifest, original, max_workers, point_manifests, budget)


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
    _check_environment(manifest, config)
    targets = _targets(request, sources, f"backup {manifest.backup_date}")
    tables = []
    for source in sources:
        tb = manifest.table(source)
        assert tb is not None
        tables.append(
            TableState(source_table=source, target_table=targets[source], s3_prefix=tb.s3_prefix)
        )
    state = _new(
        config,
        request,
        tables,
        manifest.backup_date,
        skipped_backups=skipped_dates,
        skipped_tables=skipped_tables,
    )
    return state, manifest


def _new(
    config: RestoreConfig,
    request: RestoreRequest,
    tables: list[TableState],
    backup_date: dt.date | None,
    **fields: Any,
) -> RestoreState:
    return RestoreState(
        restore_id=new_restore_id(),
        bucket=config.bucket,
        environment=config.environment,
        prefix=config.prefix,
        backup_date=backup_date,
        request=request.echo(),
        tables=tables,
        started_at=dt.datetime.now(dt.UTC),
        **fields,
    )


def _check_environment(manifest: BackupManifest, config: RestoreConfig) -> None:
    if manifest.environment != config.environment:
        raise ManifestError(
            f"backup {manifest.backup_date} belongs to environment {manifest.environment!r}, "
            f"this deployment is {config.environment!r}"
        )


def _targets(request: RestoreRequest, sources: list[str], where: str) -> dict[str, str]:
    """``{source: target}``; refused when the mapping names another table or two
    tables would land in one."""
    unknown = sorted(set(request.table_mapping or {}) - set(sources))
    if unknown:
        raise BackupNotFoundError(
            f"table_mapping names tables not in {where}: {', '.join(unknown)}"
        )
    targets = request.targets(sources)
    clash = {t for t in targets.values() if list(targets.values()).count(t) > 1}
    if clash:
        raise RequestError(f"two tables would be restored into {', '.join(sorted(clash))}")
    return targets


async def point_sources(
    storage: Storage, prefix: str, tables: list[str] | None, at: dt.datetime | Literal["latest"]
) -> list[str]:
    """The tables a point-in-time restore restores: those asked, else the
    completed tables of the newest backup that has some at or before ``at``."""
    if tables:
        return list(tables)
    for entry in await list_backups(storage, prefix):  # newest first
        names = [
            t.table_name
            for t in (entry.manifest.tables if entry.manifest else [])
            if t.status is TableStatus.COMPLETED
            and t.export_time is not None
            and (at == "latest" or t.export_time <= at)
        ]
        if names:
            return names
    when = at if at == "latest" else at.isoformat()
    raise BackupNotFoundError(f"no completed full backup under {prefix}/ at or before {when}")


async def new_point_state(
    config: RestoreConfig, request: RestoreRequest, storage: Storage
) -> tuple[RestoreState, dict[str, BackupManifest]]:
    """Per table, the full backup and windows reaching ``request.restore_to``
    (:func:`~ddb_backup.point_in_time.plan.plan_point_in_time`; reads only)."""
    # point_in_time imports the restore package: imported when first used.
    from ddb_backup.point_in_time.plan import plan_point_in_time

    at = request.restore_point
    assert at is not None
    sources = await point_sources(storage, config.prefix, request.tables, at)
    targets = _targets(request, sources, "the tables restored")
    tables, manifests = [], {}
    for source in sources:
        plan = await plan_point_in_time(storage, config.prefix, source, at)
        _check_environment(plan.manifest, config)
        manifests[source] = plan.manifest
        start = plan.chain.start if plan.chain is not None else None
        pit = PointInTimeState(
            asked=plan.point.asked,
            restored_to=plan.restored_to,
            full_backup_date=plan.point.full.backup_date,
            full_export_time=plan.point.full.export_time,
            chain_id=plan.point.chain_id,
            table_arn=start.table_arn if start else None,
            table_id=start.table_id if start else None,
            windows=list(plan.windows),
        )
        tables.append(
            TableState(
                source_table=source,
                target_table=targets[source],
                s3_prefix=plan.backup.s3_prefix,
                point_in_time=pit,
            )
        )
    dates = {m.backup_date for m in manifests.values()}
    return _new(config, request, tables, dates.pop() if len(dates) == 1 else None), manifests


async def _point_manifests(
    storage: Storage, prefix: str, tables: list[TableState]
) -> dict[str, BackupManifest]:
    """A resumed point-in-time restore: the full backup of each table still to verify."""
    out: dict[str, BackupManifest] = {}
    for ts in tables:
        assert ts.point_in_time is not None
        out[ts.source_table] = await load_backup(storage, prefix, ts.point_in_time.full_backup_date)
    return out
