"""The state machines run locally (deploy/asl_local.py) with the real handlers on the
moto server: a backup from 202 to its manifest, a fan-out restore item for item."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

import handlers.backup
import handlers.restore
from ddb_backup.aws import aws_clients
from ddb_backup.backup import Polling
from ddb_backup.config import DEFAULT_PREFIX
from tests.deploy.asl_support import (
    BACKUP_ARNS,
    RESTORE_ARNS,
    asl_local,
    payloads,
    render_asl,
)
from tests.support.backups import BUCKET, ENVIRONMENT, PREFIX, make_backup
from tests.support.data import (
    canonical,
    create_table,
    every_type_items,
    put_items,
    scan_all,
    table_name,
)
from tests.support.lambda_context import FakeContext

# ---------------------------------------------------------------------------
# The backup state machine with the real backup handler on the moto server
# ---------------------------------------------------------------------------

E2E_TABLES = ["mfa-api_test_u2f_global", "mfa-api_test_totp_global"]


async def _backup_tables() -> None:
    async with aws_clients() as aws:
        await aws.s3.create_bucket(Bucket=BUCKET)
        for i, name in enumerate(E2E_TABLES):
            await create_table(aws.dynamodb, name)
            await put_items(aws.dynamodb, name, every_type_items(3 + i))


async def _exports_per_table() -> list[int]:
    async with aws_clients() as aws:
        counts = []
        for name in E2E_TABLES:
            arn = (await aws.dynamodb.describe_table(TableName=name))["Table"]["TableArn"]
            counts.append(len((await aws.dynamodb.list_exports(TableArn=arn))["ExportSummaries"]))
        return counts


@pytest.fixture
def backup_env(moto: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables on a clean moto server and the environment Terraform gives the function."""
    asyncio.run(_backup_tables())
    monkeypatch.setenv("BACKUP_BUCKET", BUCKET)
    monkeypatch.setenv("ENVIRONMENT", "test")
    monkeypatch.setenv("DYNAMODB_TABLES", json.dumps(E2E_TABLES))
    monkeypatch.setenv("S3_EXPORTS_PREFIX", DEFAULT_PREFIX)
    for name in ("EXPORT_KMS_KEY_ID", "BACKUP_BUCKET_OWNER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(handlers.backup, "POLLING", Polling(initial=0.01, maximum=0.05))
    return


def test_backup_machine_drives_the_real_handler_from_202_to_its_manifest(
    backup_env: None,
) -> None:
    contexts = iter([FakeContext(remaining_ms=0)])  # the first round runs out of time at once

    def backup_function(event: Any) -> Any:
        return handlers.backup.handler(event, next(contexts, FakeContext(remaining_ms=900_000)))

    execution = asl_local.run(
        render_asl.render_file("backup.asl.json"),
        {},
        {BACKUP_ARNS["backup_function_arn"]: backup_function},
    )

    calls = payloads(execution, BACKUP_ARNS["backup_function_arn"])
    assert len(calls) == 2
    date = calls[1]["backup_date"]
    assert calls == [{}, {"backup_date": date}]
    assert execution.output["statusCode"] == 200
    body = execution.output["body"]
    assert body["backup_date"] == date
    assert body["successful_exports"] == 2
    assert body["total_items_exported"] == 3 + 4
    assert body["manifest_s3_key"] == f"{DEFAULT_PREFIX}/{date}/manifest.json"
    # The second round finished the first round's exports; it started none.
    assert asyncio.run(_exports_per_table()) == [1, 1]


# ---------------------------------------------------------------------------
# The fan-out restore state machine with the real restore handlers on moto
# ---------------------------------------------------------------------------

FANOUT_TABLES = {
    table_name(ENVIRONMENT, "totp"): every_type_items(30),
    table_name(ENVIRONMENT, "u2f"): every_type_items(12),
}
STALE = [{"pk": {"S": f"stale-{i}"}, "sk": {"S": "x"}} for i in range(4)]


async def _restore_setup() -> None:
    async with aws_clients() as aws:
        await aws.s3.create_bucket(Bucket=BUCKET)
        await make_backup(aws.s3, BUCKET, PREFIX, "2026-11-27", FANOUT_TABLES, files=4)
        for name in FANOUT_TABLES:
            await create_table(aws.dynamodb, name)
            await put_items(aws.dynamodb, name, STALE)


async def _tables() -> dict[str, list[dict[str, Any]]]:
    async with aws_clients() as aws:
        return {name: await scan_all(aws.dynamodb, name) for name in FANOUT_TABLES}


@pytest.fixture
def restore_env(moto: str, restore_handler_env: None) -> None:
    asyncio.run(_restore_setup())


def test_fan_out_restore_with_the_real_handlers(restore_env: None) -> None:
    plan = handlers.restore.plan_handler
    finalize = handlers.restore.finalize_handler
    seen_shards: set[int] = set()

    def restore(event: Any) -> Any:
        # Each shard's first invocation has no time left, so it must answer 202 and be
        # resumed through its token; later invocations have the full 15 minutes.
        first = "shard" in event and event["shard"]["shard_id"] not in seen_shards
        if first:
            seen_shards.add(event["shard"]["shard_id"])
        context = FakeContext(remaining_ms=0 if first else 900_000)
        return handlers.restore.handler(event, context)

    event = {"backup_date": "latest", "clear_existing_data": True}
    execution = asl_local.run(
        render_asl.render_file("restore.asl.json"),
        {"restore": event},
        {
            RESTORE_ARNS["plan_function_arn"]: lambda e: plan(e, FakeContext(900_000)),
            RESTORE_ARNS["restore_function_arn"]: restore,
            RESTORE_ARNS["finalize_function_arn"]: lambda e: finalize(e, FakeContext(900_000)),
        },
    )

    assert execution.output["statusCode"] == 200, execution.output
    body = execution.output["body"]
    total = sum(len(items) for items in FANOUT_TABLES.values())
    assert body["total_items_written"] == total
    assert body["successful_restores"] == len(FANOUT_TABLES)
    tables = asyncio.run(_tables())
    for name, items in FANOUT_TABLES.items():
        assert canonical(tables[name]) == canonical(items), name
    # The event reached Plan only (the one place that clears); shards got shards/tokens.
    assert payloads(execution, RESTORE_ARNS["plan_function_arn"])[0] == event
    shard_calls = payloads(execution, RESTORE_ARNS["restore_function_arn"])
    assert all(set(call) in ({"shard"}, {"resume_token"}) for call in shard_calls)
    assert seen_shards
    assert any(set(call) == {"resume_token"} for call in shard_calls)


def test_fan_out_restore_with_a_crashed_shard_never_reports_success(restore_env: None) -> None:
    answers: list[Any] = []

    def restore(event: Any) -> Any:
        if event.get("shard", {}).get("shard_id") == 0:
            raise RuntimeError("the sandbox died")  # as Lambda reports an unhandled error
        return handlers.restore.handler(event, FakeContext(remaining_ms=900_000))

    def finalize(event: Any) -> Any:
        answers.append(handlers.restore.finalize_handler(event, FakeContext(900_000)))
        return answers[-1]

    with pytest.raises(asl_local.ExecutionFailed) as info:
        asl_local.run(
            render_asl.render_file("restore.asl.json"),
            {"restore": {"backup_date": "latest", "clear_existing_data": True}},
            {
                RESTORE_ARNS["plan_function_arn"]: lambda e: handlers.restore.plan_handler(
                    e, FakeContext(900_000)
                ),
                RESTORE_ARNS["restore_function_arn"]: restore,
                RESTORE_ARNS["finalize_function_arn"]: finalize,
            },
        )
    assert info.value.error in {"RestorePartial", "RestoreFailed"}
    (answer,) = answers
    assert answer["statusCode"] in {207, 500}
    total = sum(len(items) for items in FANOUT_TABLES.values())
    assert answer["body"]["total_items_written"] < total


async def _bucket_keys() -> list[str]:
    async with aws_clients() as aws:
        listing = await aws.s3.list_objects_v2(Bucket=BUCKET)
        return sorted(o["Key"] for o in listing.get("Contents", []))


def test_fan_out_dry_run_ends_with_the_plans_answer_and_writes_nothing(
    restore_env: None,
) -> None:
    keys, tables = asyncio.run(_bucket_keys()), asyncio.run(_tables())

    def must_not_run(event: Any) -> Any:
        raise AssertionError(f"a dry run invoked a shard or finalize: {event}")

    event = {"backup_date": "latest", "clear_existing_data": True, "dry_run": True}
    execution = asl_local.run(
        render_asl.render_file("restore.asl.json"),
        {"restore": event},
        {
            RESTORE_ARNS["plan_function_arn"]: lambda e: handlers.restore.plan_handler(
                e, FakeContext(900_000)
            ),
            RESTORE_ARNS["restore_function_arn"]: must_not_run,
            RESTORE_ARNS["finalize_function_arn"]: must_not_run,
        },
    )

    # Plan alone ran; the execution's output is its answer: the whole dry run.
    assert [i.function_arn for i in execution.invocations] == [RESTORE_ARNS["plan_function_arn"]]
    assert "RestoreShards" not in execution.visited
    assert execution.visited[-1] == "DryRunSucceeded"
    assert execution.output["statusCode"] == 200, execution.output
    body = execution.output["body"]
    assert body["status"] == "DRY_RUN_OK"
    got = {r["table"]: (r["items_to_write"], r["items_to_clear"]) for r in body["restore_results"]}
    assert got == {name: (len(items), len(STALE)) for name, items in FANOUT_TABLES.items()}
    # Nothing written anywhere: no plan, checkpoint or lease in the bucket, no table touched.
    assert asyncio.run(_bucket_keys()) == keys
    assert asyncio.run(_tables()) == tables
