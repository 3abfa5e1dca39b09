"""Fan-out restore: plan -> shards (separate processes, at once) -> finalize,
every item exactly once, exact totals, one clear."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import pytest

from ddb_backup.aws import AwsClients
from ddb_backup.config import RestoreConfig
from ddb_backup.errors import ConfigError
from ddb_backup.events import RestoreRequest, ShardRef
from ddb_backup.manifest import DataFile
from ddb_backup.restore import finalize_restore, plan_restore, run_restore
from ddb_backup.restore import shards as shards_module
from ddb_backup.restore.checkpoint import load_state, plan_key
from ddb_backup.restore.shards import (
    MAX_SHARDS,
    SHARD_ANSWER_BYTES,
    STATE_PAYLOAD_BYTES,
    make_shards,
)
from ddb_backup.restore.state import FileState, TableProgress, TableState
from ddb_backup.restore.writer import RetryPolicy
from ddb_backup.storage import S3Storage
from tests.support.backups import ENVIRONMENT, PREFIX, make_backup
from tests.support.data import (
    canonical,
    create_table,
    every_type_items,
    put_items,
    scan_all,
    table_name,
)
from tests.support.paths import ROOT

FAST = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.004)
T1 = table_name(ENVIRONMENT, "totp")
T2 = table_name(ENVIRONMENT, "u2f")
STALE = [{"pk": {"S": f"stale-{i}"}, "sk": {"S": "x"}} for i in range(12)]

SHARD_SCRIPT = """
import json, sys
from handlers.restore import handler
result = handler(json.loads(sys.argv[1]), None)
print("RESULT " + json.dumps(result))
"""


async def setup_backup(aws: AwsClients, bucket: str) -> dict[str, list[dict[str, Any]]]:
    data = {T1: every_type_items(160), T2: every_type_items(70, marker="u2f")}
    await make_backup(aws.s3, bucket, PREFIX, "2026-11-27", data, files=4, empty_files=1)
    for t in data:
        await create_table(aws.dynamodb, t)
    await put_items(aws.dynamodb, T1, STALE)
    return data


async def shard_in_process(bucket: str, ref: dict[str, Any]) -> dict[str, Any]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "BACKUP_BUCKET": bucket,
        "ENVIRONMENT": ENVIRONMENT,
        "S3_EXPORTS_PREFIX": PREFIX,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SHARD_SCRIPT,
        json.dumps({"shard": ref}),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-2000:]
    (line,) = [x for x in out.decode().splitlines() if x.startswith("RESULT ")]
    result: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    return result


async def test_plan_shards_in_processes_finalize(
    aws: AwsClients, bucket: str, config: RestoreConfig
) -> None:
    data = await setup_backup(aws, bucket)

    plan = await plan_restore(
        config,
        RestoreRequest(clear_existing_data=True, items_per_shard=60),
        aws,
        retry=FAST,
    )

    assert plan.status_code == 200, plan.body
    shards = plan.body["shards"]
    assert len(shards) >= 4
    # The plan cleared (once) and wrote nothing yet.
    assert plan.body["total_items_cleared"] == len(STALE)
    assert await scan_all(aws.dynamodb, T1) == []

    results = await asyncio.gather(*(shard_in_process(bucket, ref) for ref in shards))

    assert [r["statusCode"] for r in results] == [200] * len(shards)
    assert sum(r["body"]["total_items_written"] for r in results) == 230
    assert all(len(json.dumps(r["body"])) < 1024 for r in results)

    final = await finalize_restore(
        config,
        plan.body["restore_id"],
        aws,
        shard_results=[r["body"] for r in results],
    )

    assert final.status_code == 200, final.body
    body = final.body
    assert body["status"] == "COMPLETED"
    assert body["total_items_written"] == body["total_items_processed"] == 230
    assert body["total_items_failed"] == 0
    assert body["total_items_cleared"] == len(STALE)
    by_table = {r["table"]: r for r in body["restore_results"]}
    assert by_table[T1]["items_expected"] == by_table[T1]["items_written"] == 160
    assert by_table[T1]["files_processed"] == by_table[T1]["files_total"] == 5
    assert by_table[T2]["items_written"] == 70
    for t, items in data.items():
        assert canonical(await scan_all(aws.dynamodb, t)) == canonical(items)


async def test_shard_resumes_repeats_and_missing_shards(
    aws: AwsClients, bucket: str, config: RestoreConfig
) -> None:
    data = await setup_backup(aws, bucket)
    plan = await plan_restore(config, RestoreRequest(items_per_shard=80), aws, retry=FAST)
    assert plan.status_code == 200
    rid = plan.body["restore_id"]
    first, *others = plan.body["shards"]

    # Shard 0 with a small batch budget: 202 rounds, then done.
    answer = await run_restore(
        config, RestoreRequest(shard=ShardRef(**first)), aws, retry=FAST, max_batches=1
    )
    rounds = 1
    while answer.status_code == 202:
        rounds += 1
        token = answer.body["resume_token"]
        answer = await run_restore(
            config, RestoreRequest(resume_token=token), aws, retry=FAST, max_batches=1
        )
    assert rounds >= 3
    assert answer.status_code == 200
    once = answer.body["total_items_written"]
    # Invoked again (a state machine retry): the same answer, nothing counted twice.
    again = await run_restore(config, RestoreRequest(shard=ShardRef(**first)), aws, retry=FAST)
    assert again.status_code == 200
    assert again.body["total_items_written"] == once

    # Finalize before the other shards ran: never a 200.
    early = await finalize_restore(
        config,
        rid,
        aws,
        shard_results=[
            {"shard": others[0], "shard_failed": True, "error": {"Error": "Lambda.Unknown"}}
        ],
    )
    assert early.status_code == 207
    errors = " ".join(r["error"] or "" for r in early.body["restore_results"])
    assert f"shard {others[0]['shard_id']} did not finish: failed (Lambda.Unknown)" in errors

    for ref in others:
        r = await run_restore(config, RestoreRequest(shard=ShardRef(**ref)), aws, retry=FAST)
        assert r.status_code == 200
    final = await finalize_restore(config, rid, aws)
    assert final.status_code == 200, final.body
    assert final.body["total_items_written"] == 230
    assert final.body["total_items_cleared"] == 0  # no clear asked: the stale items stay
    assert canonical(await scan_all(aws.dynamodb, T1)) == canonical([*data[T1], *STALE])
    assert canonical(await scan_all(aws.dynamodb, T2)) == canonical(data[T2])


async def test_plan_resumes_after_deadline(
    aws: AwsClients, bucket: str, config: RestoreConfig
) -> None:
    await setup_backup(aws, bucket)
    answer = await plan_restore(
        config, RestoreRequest(clear_existing_data=True), aws, retry=FAST, deadline_seconds=0.0
    )
    assert answer.status_code == 202
    # A plan's token goes to the planning step, not to a restore (refused, unspent).
    wrong = await run_restore(
        config, RestoreRequest(resume_token=answer.body["resume_token"]), aws, retry=FAST
    )
    assert wrong.status_code == 400
    assert "belongs to a plan" in wrong.body["error"]
    rounds = 1
    while answer.status_code == 202:
        rounds += 1
        answer = await plan_restore(
            config,
            RestoreRequest(resume_token=answer.body["resume_token"]),
            aws,
            retry=FAST,
            deadline_seconds=0.0,
        )
    assert rounds >= 2
    assert answer.status_code == 200
    assert answer.body["total_items_cleared"] == len(STALE)
    assert len(answer.body["shards"]) == 1  # default bound: one shard for 230 items
    assert await scan_all(aws.dynamodb, T1) == []  # cleared once, nothing written yet


async def test_each_shard_holds_its_share_of_its_tables_write_budget(
    aws: AwsClients, bucket: str, config: RestoreConfig
) -> None:
    data = await setup_backup(aws, bucket)
    budget = 3001  # per table; high enough to keep the test fast, odd to test the rounding
    plan = await plan_restore(
        config, RestoreRequest(items_per_shard=60, max_write_units=budget), aws, retry=FAST
    )
    assert plan.status_code == 200, plan.body
    rid = plan.body["restore_id"]
    recorded = await load_state(S3Storage(aws.s3, bucket), plan_key(PREFIX, rid), config, rid)
    assert recorded is not None
    holders = {t: sum(any(f.table == t for f in s.files) for s in recorded.shards) for t in data}
    assert holders[T1] >= 2  # the budget really is split
    assert {t.source_table: t.write_shards for t in recorded.tables} == holders

    # What each shard applies to each table, as its progress reports it.
    applied: dict[str, list[int]] = {t: [] for t in data}
    for ref in plan.body["shards"]:
        seen: dict[str, int] = {}

        def note(progress: TableProgress, seen: dict[str, int] = seen) -> None:
            if progress.max_write_units is not None:
                seen[progress.table] = progress.max_write_units

        answer = await run_restore(
            config, RestoreRequest(shard=ShardRef(**ref)), aws, retry=FAST, on_progress=note
        )
        assert answer.status_code == 200, answer.body
        for table, units in seen.items():
            applied[table].append(units)
    for table in data:
        # Every shard of the table holds the same share, together at most the budget.
        assert applied[table] == [budget // holders[table]] * holders[table], table
        assert sum(applied[table]) <= budget
    assert (await finalize_restore(config, rid, aws)).status_code == 200


async def test_unknown_shard_refused(aws: AwsClients, bucket: str, config: RestoreConfig) -> None:
    await setup_backup(aws, bucket)
    plan = await plan_restore(config, RestoreRequest(items_per_shard=1000), aws, retry=FAST)
    bad = await run_restore(
        config,
        RestoreRequest(shard=ShardRef(restore_id=plan.body["restore_id"], shard_id=99)),
        aws,
    )
    assert bad.status_code == 400
    assert "no shard 99" in bad.body["error"]
    none = await run_restore(
        config, RestoreRequest(shard=ShardRef(restore_id="nope", shard_id=0)), aws
    )
    assert none.status_code == 400
    assert await scan_all(aws.dynamodb, T2) == []


def test_make_shards_balanced_and_bounded() -> None:
    sizes = [500, 400, 300, 300, 200, 100, 100, 50, 0, 0, 1200]
    ts = TableState(
        source_table="t-one",
        target_table="t-one",
        files=[
            FileState.from_data_file(DataFile(key=f"k{i}", item_count=n, size=n * 10))
            for i, n in enumerate(sizes)
        ],
    )
    shards = make_shards([ts], 600)
    keys = sorted(f.key for s in shards for f in s.files)
    assert keys == sorted(f"k{i}" for i in range(len(sizes)))  # every file exactly once
    assert sum(s.items for s in shards) == sum(sizes)
    for s in shards:
        assert s.items <= 600 or len(s.files) == 1  # only an oversized file stands alone
    assert [s.shard_id for s in shards] == list(range(len(shards)))


def one_item_files(count: int) -> TableState:
    return TableState(
        source_table="t-one",
        target_table="t-one",
        files=[
            FileState.from_data_file(DataFile(key=f"k{i}", item_count=1, size=10))
            for i in range(count)
        ],
    )


def test_make_shards_ceiling_keeps_answers_within_the_payload() -> None:
    # Every answer within SHARD_ANSWER_BYTES, MAX_SHARDS of them fit in 256 KiB.
    assert MAX_SHARDS * SHARD_ANSWER_BYTES < STATE_PAYLOAD_BYTES == 256 * 1024
    assert len(make_shards([one_item_files(MAX_SHARDS)], 1)) == MAX_SHARDS
    with pytest.raises(ConfigError, match=rf"makes {MAX_SHARDS + 1} shards; at most {MAX_SHARDS}"):
        make_shards([one_item_files(MAX_SHARDS + 1)], 1)
    # The error's advice works.
    assert len(make_shards([one_item_files(MAX_SHARDS + 1)], 2)) <= MAX_SHARDS


async def test_plan_refuses_too_many_shards_before_clearing(
    aws: AwsClients, bucket: str, config: RestoreConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    await setup_backup(aws, bucket)
    monkeypatch.setattr(shards_module, "MAX_SHARDS", 2)

    plan = await plan_restore(
        config, RestoreRequest(clear_existing_data=True, items_per_shard=60), aws, retry=FAST
    )

    assert plan.status_code == 400, plan.body
    assert "at most 2 fit in a state machine's 256 KiB payload" in plan.body["error"]
    # A dry run checks it too: what the real plan would refuse, the dry run refuses.
    dry = await plan_restore(
        config,
        RestoreRequest(clear_existing_data=True, items_per_shard=60, dry_run=True),
        aws,
        retry=FAST,
    )
    assert dry.status_code == 400, dry.body
    assert "at most 2 fit" in dry.body["error"]
    # Nothing cleared, nothing written: the stale items are all still there, alone.
    assert canonical(await scan_all(aws.dynamodb, T1)) == canonical(STALE)
    assert await scan_all(aws.dynamodb, T2) == []
