"""How a fan-out restore is split: shards of data files, and each shard's own state.

The planning step (:func:`ddb_backup.restore.plan_restore`) verifies the
backup, clears the targets once and records a plan in S3; :func:`make_shards`
groups the files, and :func:`shard_state` gives one shard invocation its
files (or its checkpoint, when it ran before).
"""

from __future__ import annotations

import datetime as dt

from ddb_backup.checkpoint import checkpoint_key, load_state, plan_key
from ddb_backup.config import RestoreConfig
from ddb_backup.errors import CheckpointError, ConfigError
from ddb_backup.progress import (
    FileState,
    RestoreState,
    ShardFile,
    ShardPlan,
    TablePhase,
    TableState,
)
from ddb_backup.storage import Storage

__all__ = ["MAX_SHARDS", "make_shards", "shard_state"]

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
