"""Deadline-aware restore: 202 + resume_token, rounds until done, exact counts,
never a second clear, and checkpoints that do not belong are refused."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from ddb_backup.aws import AwsClients
from ddb_backup.config import RestoreConfig
from ddb_backup.events import RestoreRequest
from ddb_backup.restore import RestoreResult, run_restore
from ddb_backup.restore.checkpoint import checkpoint_key
from ddb_backup.restore.writer import RetryPolicy
from tests.support.backups import ENVIRONMENT, PREFIX, make_backup
from tests.support.data import (
    canonical,
    create_table,
    every_type_items,
    put_items,
    scan_all,
    table_name,
)

FAST = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.004)
T1 = table_name(ENVIRONMENT, "totp")
T2 = table_name(ENVIRONMENT, "api-key")
STALE = [{"pk": {"S": f"stale-{i}"}, "sk": {"S": "x"}} for i in range(30)]
CANARY = {"pk": {"S": "written-after-round-1"}, "sk": {"S": "x"}}


async def rounds(
    config: RestoreConfig,
    aws: AwsClients,
    first: RestoreRequest,
    *,
    between: Any = None,
    **kwargs: Any,
) -> list[RestoreResult]:
    """Invoke, then resume with each 202's token until the restore answers otherwise."""
    out = [await run_restore(config, first, aws, retry=FAST, **kwargs)]
    while out[-1].status_code == 202:
        assert len(out) < 60, "no progress"
        if between is not None:
            await between(len(out))
        token = out[-1].body["resume_token"]
        out.append(
            await run_restore(config, RestoreRequest(resume_token=token), aws, retry=FAST, **kwargs)
        )
    return out


async def test_many_rounds_exact_counts_and_one_clear(
    aws: AwsClients, bucket: str, config: RestoreConfig
) -> None:
    source = every_type_items(200)
    small = every_type_items(40, marker="api")
    await make_backup(aws.s3, bucket, PREFIX, "2026-11-27", {T1: source, T2: small}, files=3)
    for t in (T1, T2):
        await create_table(aws.dynamodb, t)
    await put_items(aws.dynamodb, T1, STALE)

    async def someone_writes(n: int) -> None:
        if n == 1:  # a second clear would delete it
            await put_items(aws.dynamodb, T1, [CANARY])

    results = await rounds(
        config,
        aws,
        RestoreRequest(clear_existing_data=True, max_workers=3),
        between=someone_writes,
        max_batches=3,
    )

    assert len(results) >= 4
    assert [r.status_code for r in results] == [202] * (len(results) - 1) + [200]
    restore_ids = {r.body["restore_id"] for r in results}
    assert len(restore_ids) == 1
    assert [r.body["round"] for r in results] == list(range(1, len(results) + 1))
    final = results[-1].body
    assert final["status"] == "COMPLETED"
    by_table = {r["table"]: r for r in final["restore_results"]}
    r1 = by_table[T1]
    assert r1["items_expected"] == r1["items_read"] == r1["items_written"] == 200
    assert r1["items_failed"] == 0
    assert r1["items_cleared"] == len(STALE)
    assert r1["files_processed"] == r1["files_total"] == 4
    assert by_table[T2]["items_written"] == by_table[T2]["items_read"] == 40
    assert final["total_items_written"] == final["total_items_processed"] == 240
    assert canonical(await scan_all(aws.dynamodb, T1)) == canonical([*source, CANARY])
    assert canonical(await scan_all(aws.dynamodb, T2)) == canonical(small)
    # Every 202 said where it was; progress only grows.
    written = [sum(t["items_written"] for t in r.body["restore_results"]) for r in results]
    assert written == sorted(written)


async def test_zero_deadline_still_progresses(
    aws: AwsClients, bucket: str, config: RestoreConfig
) -> None:
    """A deadline already spent: every round does one unit of work, then stops."""
    source = every_type_items(90)
    await make_backup(aws.s3, bucket, PREFIX, "2026-11-27", {T1: source}, files=2)
    await create_table(aws.dynamodb, T1)
    await put_items(aws.dynamodb, T1, STALE)

    results = await rounds(
        config, aws, RestoreRequest(clear_existing_data=True), deadline_seconds=0.0
    )

    assert len(results) >= 3
    assert results[-1].status_code == 200, results[-1].body
    r = results[-1].body["restore_results"][0]
    assert (r["items_written"], r["items_read"], r["items_cleared"]) == (90, 90, len(STALE))
    assert canonical(await scan_all(aws.dynamodb, T1)) == canonical(source)


async def _first_round(aws: AwsClients, bucket: str, config: RestoreConfig) -> RestoreResult:
    await make_backup(aws.s3, bucket, PREFIX, "2026-11-27", {T1: every_type_items(100)})
    await create_table(aws.dynamodb, T1)
    first = await run_restore(config, RestoreRequest(), aws, retry=FAST, max_batches=1)
    assert first.status_code == 202
    return first


async def test_tampered_checkpoint_refused(
    aws: AwsClients, bucket: str, config: RestoreConfig
) -> None:
    first = await _first_round(aws, bucket, config)
    key = checkpoint_key(PREFIX, first.body["restore_id"])
    doc = orjson.loads(await (await aws.s3.get_object(Bucket=bucket, Key=key))["Body"].read())
    doc["tables"][0]["files"][0]["lines_done"] += 50  # would skip 50 items
    await aws.s3.put_object(Bucket=bucket, Key=key, Body=orjson.dumps(doc))
    before = canonical(await scan_all(aws.dynamodb, T1))

    resumed = await run_restore(
        config, RestoreRequest(resume_token=first.body["resume_token"]), aws, retry=FAST
    )

    assert resumed.status_code == 400
    assert resumed.body["error_type"] == "CheckpointError"
    assert canonical(await scan_all(aws.dynamodb, T1)) == before


@pytest.mark.parametrize("field", ["bucket", "environment", "prefix"])
async def test_foreign_token_refused(
    aws: AwsClients, bucket: str, config: RestoreConfig, field: str
) -> None:
    first = await _first_round(aws, bucket, config)
    other = {
        "bucket": "another-bucket-name",
        "environment": "prod",
        "prefix": "other-prefix",
    }[field]
    foreign = config.model_copy(update={field: other})
    before = canonical(await scan_all(aws.dynamodb, T1))
    resumed = await run_restore(
        foreign, RestoreRequest(resume_token=first.body["resume_token"]), aws, retry=FAST
    )
    assert resumed.status_code == 400
    assert f"another {field}" in resumed.body["error"]
    assert canonical(await scan_all(aws.dynamodb, T1)) == before


async def test_stale_and_garbage_tokens_refused(
    aws: AwsClients, bucket: str, config: RestoreConfig
) -> None:
    first = await _first_round(aws, bucket, config)
    token = first.body["resume_token"]
    second = await run_restore(
        config, RestoreRequest(resume_token=token), aws, retry=FAST, max_batches=1
    )
    assert second.status_code == 202
    stale = await run_restore(config, RestoreRequest(resume_token=token), aws, retry=FAST)
    assert stale.status_code == 400
    assert "not the newest" in stale.body["error"]
    before = canonical(await scan_all(aws.dynamodb, T1))
    for bad in ("v1.bm90IGpzb24", "v2.abc", "v1.e30"):
        garbage = await run_restore(config, RestoreRequest(resume_token=bad), aws, retry=FAST)
        assert garbage.status_code == 400, bad
    assert canonical(await scan_all(aws.dynamodb, T1)) == before
    # The newest token still finishes the job; afterwards it is spent.
    last = await run_restore(
        config, RestoreRequest(resume_token=second.body["resume_token"]), aws, retry=FAST
    )
    assert last.status_code == 200
    assert last.body["restore_results"][0]["items_written"] == 100
    assert canonical(await scan_all(aws.dynamodb, T1)) == canonical(every_type_items(100))
    replay = await run_restore(
        config, RestoreRequest(resume_token=second.body["resume_token"]), aws, retry=FAST
    )
    assert replay.status_code == 400
