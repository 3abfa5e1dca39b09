"""A fan-out restore: the plan's shards, each shard's own state, and finalize.

The planning step (:func:`ddb_backup.restore.plan_restore`) verifies the
backup, then :func:`plan_shards` clears the targets once and records a plan
in S3; :func:`make_shards` groups the files, :func:`share_write_budget` splits
each table's write budget between its shards, and :func:`shard_state` gives
one shard invocation its files (or its checkpoint, when it ran before).
:func:`finalize_restore` adds up the shards' final states. A dry run plans
nothing: the planning step answers the whole dry run (:func:`dry_plan_result`).
"""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING, Any

from ddb_backup.aws import AwsClients
from ddb_backup.config import RestoreConfig
from ddb_backup.errors import CheckpointError, ConfigError, DdbBackupError
from ddb_backup.log import get_logger
from ddb_backup.restore.answer import (
    REQUEST_ERRORS,
    RestoreAnswer,
    RestoreResult,
    error_result,
    plan_result,
    status_code,
    status_label,
    summary,
)
from ddb_backup.restore.checkpoint import (
    checkpoint_key,
    load_state,
    plan_key,
    save_checkpoint,
    save_state,
)
from ddb_backup.restore.clear import clear_table
from ddb_backup.restore.lease import TableLeases
from ddb_backup.restore.state import (
    FileState,
    RestoreState,
    ShardFile,
    ShardPlan,
    TablePhase,
    TableState,
)
from ddb_backup.storage import S3Storage, Storage

if TYPE_CHECKING:
    from ddb_backup.restore.run import RestoreRun

__all__ = [
    "MAX_SHARDS",
    "dry_plan_result",
    "finalize_restore",
    "make_shards",
    "plan_shards",
    "shard_state",
    "share_write_budget",
]

log = get_logger("restore")

#: Step Functions passes at most 256 KiB between states, and every shard's answer
#: reaches Finalize at once. An answer is a compact body (ids, status, counts, an error
#: cut to 512 characters) or a failure record (shard ref and error name, the state
#: machine drops the Cause): under 1 KiB each. 16 KiB is left for the rest of the state.
STATE_PAYLOAD_BYTES = 256 * 1024
SHARD_ANSWER_BYTES = 1024
MAX_SHARDS = (STATE_PAYLOAD_BYTES - 16 * 1024) // SHARD_ANSWER_BYTES  # 240


async def shard_state(
    storage: Storage, config: RestoreConfig, restore_id: str, shard_id: int
) -> RestoreState:
    """A shard's own state: its checkpoint if it ran before, else cut from the plan."""
    plan = await load_state(storage, plan_key(config.prefix, restore_id), config, restore_id)
    if plan is None or plan.kind != "plan" or not plan.finished:
        raise CheckpointError(f"no finished plan for restore {restore_id}")
    shard = next((s for s in plan.shards if s.shard_id == shard_id), None)
    if shard is None:
        raise CheckpointError(f"the plan of restore {restore_id} has no shard {shard_id}")
    key = checkpoint_key(config.prefix, restore_id, shard_id)
    existing = await load_state(storage, key, config, restore_id)
    if existing is not None:
        if existing.kind != "shard" or existing.shard_id != shard_id:
            raise CheckpointError(f"{key} is not the state of shard {shard_id}")
        if not existing.finished:
            existing.round += 1
        return existing
    tables = []
    for ts in plan.tables:
        keys = {f.key for f in shard.files if f.table == ts.source_table}
        if ts.phase is not TablePhase.WRITING or not keys:
            continue
        files = [  # as verified by the plan, pins included; nothing done yet
            FileState.model_validate(f.model_dump(exclude={"lines_done", "done", "error"}))
            for f in ts.files
            if f.key in keys
        ]
        tables.append(
            TableState(
                source_table=ts.source_table,
                target_table=ts.target_table,
                s3_prefix=ts.s3_prefix,
                phase=TablePhase.WRITING,
                key_names=ts.key_names,
                key_types=ts.key_types,
                items_expected=sum(f.item_count or 0 for f in files),
                write_shards=ts.write_shards,
                files=files,
            )
        )
    return RestoreState(
        kind="shard",
        shard_id=shard_id,
        restore_id=restore_id,
        bucket=plan.bucket,
        environment=plan.environment,
        prefix=plan.prefix,
        backup_date=plan.backup_date,
        request=plan.request,
        tables=tables,
        started_at=dt.datetime.now(dt.UTC),
    )


def make_shards(tables: list[TableState], items_per_shard: int) -> list[ShardPlan]:
    """Group every file of ``tables`` into shards of at most ``items_per_shard``
    items (a larger file is a shard alone), balanced by items then bytes:
    largest first, each into the lightest shard (LPT). More than ``MAX_SHARDS``
    shards is a ``ConfigError``: their answers could outgrow the state machine's payload."""
    files = [(ts.source_table, f) for ts in tables for f in ts.files]
    if not files:
        return []
    total = sum(f.item_count or 0 for _, f in files)
    count = max(1, min(len(files), -(-total // max(1, items_per_shard))))
    shards = [ShardPlan(shard_id=i, files=[]) for i in range(count)]
    for table, f in sorted(
        files, key=lambda tf: (tf[1].item_count or 0, tf[1].size or 0), reverse=True
    ):
        items = f.item_count or 0
        fits = [s for s in shards if s.items + items <= items_per_shard] or shards
        target = min(fits, key=lambda s: (s.items, s.size, s.shard_id))
        if target.items and target.items + items > items_per_shard:
            target = ShardPlan(shard_id=len(shards), files=[])
            shards.append(target)
        target.files.append(ShardFile(table=table, key=f.key))
        target.items += items
        target.size += f.size or 0
    shards = [s for s in shards if s.files]
    if len(shards) > MAX_SHARDS:
        total_items = sum(s.items for s in shards)
        needed = -(-total_items // MAX_SHARDS)
        raise ConfigError(
            f"items_per_shard={items_per_shard} makes {len(shards)} shards; at most "
            f"{MAX_SHARDS} fit in a state machine's 256 KiB payload: use items_per_shard "
            f">= {needed}"
        )
    return shards


async def plan_shards(run: RestoreRun, items_per_shard: int) -> RestoreResult | None:
    """Plan: clear once where asked, then cut the files into shards and record
    the plan; ``None`` when the budget stopped it first (the caller checkpoints).
    Not for a dry run: it plans nothing (see :func:`dry_plan_result`)."""
    run.lease_lost()
    st = run.state
    make_shards(st.tables, items_per_shard)  # too many shards: refused before any clear
    for ts in st.tables:
        if ts.phase not in (TablePhase.READY, TablePhase.CLEARING):
            continue
        if run.should_stop():
            break
        started = time.monotonic()
        try:
            if not run.scope.clear:
                ts.phase = TablePhase.WRITING
            else:
                await clear_table(run, ts)
        except DdbBackupError as exc:
            ts.errors.append(str(exc))
            ts.phase = TablePhase.FAILED
        finally:
            ts.duration_seconds += time.monotonic() - started
    waiting = {TablePhase.PENDING, TablePhase.READY, TablePhase.CLEARING}
    if any(t.phase in waiting for t in st.tables):
        return None  # stopped: 202 with a resume token
    writable = [t for t in st.tables if t.phase is TablePhase.WRITING]
    st.shards = make_shards(writable, items_per_shard)
    share_write_budget(writable, st.shards)
    st.finished = True
    duration = run.spend()
    await save_state(run.scope.dead_letter_storage, plan_key(st.prefix, st.restore_id), st)
    await save_checkpoint(run.scope.dead_letter_storage, st)  # spends any plan token
    return plan_result(run.summary(duration), st, items_per_shard=items_per_shard)


def share_write_budget(tables: list[TableState], shards: list[ShardPlan]) -> None:
    """Record in each table how many shards write it: each of them holds that
    share of the table's ``max_write_units`` (see ``RestoreRun.write_budget``).

    The divisor is the number of shards holding the table's files, not the Map's
    MaxConcurrency: that bounds all shards, not one table's, and is a setting of
    each execution (its input, a new execution resuming the plan, a shard
    invoked by hand) that the plan cannot hold the shards to. Any number of a
    table's shards may run at once, so only their count keeps their shares
    within the table's budget, whatever runs together."""
    for ts in tables:
        ts.write_shards = max(
            1, sum(any(f.table == ts.source_table for f in s.files) for s in shards)
        )


def dry_plan_result(result: RestoreResult, st: RestoreState, items_per_shard: int) -> RestoreResult:
    """A dry run's plan answers as a whole dry run (the state machine ends on it)
    plus how many shards the plan would make: too many is refused as it would be."""
    writable = [t for t in st.tables if t.phase is not TablePhase.FAILED]
    shards = len(make_shards(writable, items_per_shard))
    answer = result.answer
    configuration = {**(answer.configuration or {}), "shards": shards}
    return RestoreResult.of(
        result.status_code,
        answer.with_(configuration=configuration, items_per_shard=items_per_shard),
    )


def _shard_failures(shard_results: list[dict[str, Any]]) -> dict[int, str]:
    """Shard id -> why it failed, from the failure records the state machine
    wrote (their error names, not their causes)."""
    failures: dict[int, str] = {}
    for record in shard_results:
        ref = record.get("shard") if isinstance(record, dict) else None
        if isinstance(ref, dict) and record.get("shard_failed"):
            err = record.get("error")
            name = err.get("Error") if isinstance(err, dict) else None
            failures[int(ref.get("shard_id", -1))] = f"failed ({name or 'unknown error'})"
    return failures


async def _merge_shards(
    storage: Storage,
    config: RestoreConfig,
    plan: RestoreState,
    failures: dict[int, str],
) -> RestoreState:
    """The plan's tables with every finished shard's counts added."""
    restore_id = plan.restore_id
    merged = {ts.source_table: ts.model_copy(deep=True) for ts in plan.tables}
    for ts in merged.values():
        if ts.phase is TablePhase.WRITING:
            for f in ts.files:
                f.done = False
                f.lines_done = 0
    files_of = {(t, f.key): f for t, ts in merged.items() for f in ts.files}
    for shard in plan.shards:
        key = checkpoint_key(config.prefix, restore_id, shard.shard_id)
        st = await load_state(storage, key, config, restore_id)
        if st is None or not st.finished:
            reason = failures.get(shard.shard_id) or (
                "never ran" if st is None else f"stopped in round {st.round}"
            )
            for table in sorted({f.table for f in shard.files}):
                merged[table].errors.append(f"shard {shard.shard_id} did not finish: {reason}")
            continue
        for sts in st.tables:
            m = merged[sts.source_table]
            m.items_read += sts.items_read
            m.items_written += sts.items_written
            m.items_failed += sts.items_failed
            m.errors.extend(sts.errors)
            m.dead_letter_files.extend(sts.dead_letter_files)
            if sts.dead_letter_files and sts.dead_letter_folder:
                m.dead_letter_folders.append(sts.dead_letter_folder)
            for f in sts.files:
                mine = files_of[(sts.source_table, f.key)]
                mine.done, mine.lines_done, mine.error = f.done, f.lines_done, f.error
    for m in merged.values():
        if m.phase is TablePhase.WRITING and all(f.done for f in m.files):
            m.phase = TablePhase.DONE
    return plan.model_copy(update={"tables": list(merged.values()), "kind": "single"})


async def finalize_restore(
    config: RestoreConfig,
    restore_id: str,
    clients: AwsClients,
    *,
    storage: Storage | None = None,
    shard_results: list[dict[str, Any]] | None = None,
) -> RestoreResult:
    """Add up every shard of a fan-out restore, from their final states in S3.

    Counts come from the shards' own records (exact, whatever the state
    machine passed along); a shard with no final record means missing items,
    so never a 200. ``shard_results`` contributes the failure records the
    state machine wrote (their error names, not their causes).
    """
    started = time.monotonic()
    storage = storage or S3Storage(
        clients.s3, config.bucket, expected_owner=config.expected_bucket_owner
    )
    base = RestoreAnswer(restore_id=restore_id, environment=config.environment)
    try:
        plan = await load_state(storage, plan_key(config.prefix, restore_id), config, restore_id)
        if plan is None or plan.kind != "plan" or not plan.finished:
            raise CheckpointError(f"no finished plan for restore {restore_id}")
        final = await _merge_shards(storage, config, plan, _shard_failures(shard_results or []))
        if isinstance(storage, S3Storage):  # the plan's leases, kept for its shards
            await TableLeases(storage, config.prefix, restore_id).release(
                [t.target_table for t in plan.tables]
            )
    except REQUEST_ERRORS as exc:
        return error_result(exc, 400, base)
    except DdbBackupError as exc:
        return error_result(exc, 500, base)
    wall = (
        (dt.datetime.now(dt.UTC) - plan.started_at).total_seconds()
        if plan.started_at
        else time.monotonic() - started
    )
    answer = summary(
        final, dry_run=False, duration=wall, configuration={"shards": len(plan.shards)}
    )
    code = status_code(answer)
    answer = answer.with_(status=status_label(code))
    log.info(
        "restore finalized",
        extra={
            "restore_id": restore_id,
            "status": answer.status,
            "shards": len(plan.shards),
            "items_written": answer.total_items_written,
        },
    )
    return RestoreResult.of(code, answer)
