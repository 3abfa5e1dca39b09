"""``handlers.restore.handler`` as Lambda calls it: sync, one ``asyncio.run`` inside."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import orjson
import pytest
from aiobotocore.session import get_session

from ddb_backup.aws import aws_clients
from handlers.restore import handler
from tests.support.backups import BUCKET, ENVIRONMENT, PREFIX, make_backup
from tests.support.data import (
    SECRET_MARKER,
    canonical,
    create_table,
    every_type_items,
    put_items,
    scan_all,
    table_name,
)
from tests.support.lambda_context import FakeContext
from tests.support.paths import EVENTS

TABLE = table_name(ENVIRONMENT, "totp")
SESSION = get_session()
SOURCE = every_type_items(40)
BEFORE = [{"pk": {"S": f"old-{i}"}, "sk": {"S": "x"}} for i in range(5)]


async def _setup() -> None:
    async with aws_clients(session=SESSION) as aws:
        await aws.s3.create_bucket(Bucket=BUCKET)
        await make_backup(aws.s3, BUCKET, PREFIX, "2026-11-27", {TABLE: SOURCE})
        await create_table(aws.dynamodb, TABLE)
        await put_items(aws.dynamodb, TABLE, BEFORE)


async def _table_and_keys() -> tuple[list[dict[str, Any]], list[str]]:
    async with aws_clients(session=SESSION) as aws:
        items = await scan_all(aws.dynamodb, TABLE)
        objects = await aws.s3.list_objects_v2(Bucket=BUCKET)
        return items, [o["Key"] for o in objects.get("Contents", [])]


def table_and_keys() -> tuple[list[dict[str, Any]], list[str]]:
    return asyncio.run(_table_and_keys())


@pytest.fixture
def env(moto: str, restore_handler_env: None) -> None:
    asyncio.run(_setup())


def test_restore_latest_with_clear(env: None, capsys: pytest.CaptureFixture[str]) -> None:
    event = json.loads((EVENTS / "restore_latest.json").read_text())
    result = handler(event, FakeContext(remaining_ms=900_000))
    assert result["statusCode"] == 200, result
    body = result["body"]
    assert body["restore_results"][0]["items_cleared"] == len(BEFORE)
    assert body["total_items_written"] == len(SOURCE)
    items, _ = table_and_keys()
    assert canonical(items) == canonical(SOURCE)
    out = capsys.readouterr().out
    docs = [orjson.loads(line) for line in out.splitlines() if line.startswith("{")]
    (emf,) = [d for d in docs if "_aws" in d]
    assert emf["items_restored"] == len(SOURCE)
    assert emf["tables_succeeded"] == 1
    assert any(d.get("message") == "restore progress" for d in docs)
    assert SECRET_MARKER not in out
    assert SECRET_MARKER not in json.dumps(result)


@pytest.mark.parametrize(
    "event",
    [
        {"clear_existing_data": "false"},
        {"clear_existing_data": True, "dry_run": "false"},
        {"clear_existing_data": True, "tabels": [TABLE]},
        {"clear_existing_data": True, "max_workers": "5"},
        {"backup_date": "../2026-11-27", "clear_existing_data": True},
        [],
        "clear",
        None,
    ],
)
def test_invalid_event_is_400_and_touches_nothing(env: None, event: Any) -> None:
    _, keys_before = table_and_keys()
    result = handler(event, FakeContext(remaining_ms=900_000))
    assert result["statusCode"] == 400
    assert result["body"]["error"] == "invalid event"
    assert result["body"]["problems"]
    assert "Traceback" not in json.dumps(result)
    items, keys_after = table_and_keys()
    assert canonical(items) == canonical(BEFORE)
    assert keys_after == keys_before


def test_every_problem_listed(env: None) -> None:
    event = json.loads((EVENTS / "restore_invalid.json").read_text())
    result = handler(event, None)
    assert result["statusCode"] == 400
    fields = sorted(p.split(":")[0] for p in result["body"]["problems"])
    assert fields == ["backup_date", "clear_existing_data", "max_workers", "tabels"]


@pytest.mark.parametrize(
    ("var", "value"), [("BACKUP_BUCKET", ""), ("ENVIRONMENT", "a b"), ("S3_EXPORTS_PREFIX", "../x")]
)
def test_bad_environment_is_500_naming_the_variable(
    env: None, monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    monkeypatch.setenv(var, value)
    result = handler({"clear_existing_data": True}, None)
    assert result["statusCode"] == 500
    assert var in result["body"]["error"]
    items, _ = table_and_keys()
    assert canonical(items) == canonical(BEFORE)


def test_dry_run_event(env: None) -> None:
    event = json.loads((EVENTS / "restore_dry_run.json").read_text())
    result = handler(event, FakeContext(remaining_ms=900_000))
    assert result["statusCode"] == 200
    r = result["body"]["restore_results"][0]
    assert (r["items_to_write"], r["items_to_clear"]) == (len(SOURCE), len(BEFORE))
    items, _ = table_and_keys()
    assert canonical(items) == canonical(BEFORE)


def test_out_of_time_answers_202_and_resumes(env: None) -> None:
    """No time left (Lambda's 30 s margin already spent): 202 rounds until done."""
    result = handler({"clear_existing_data": True}, FakeContext(remaining_ms=0))
    answers = [result]
    while result["statusCode"] == 202:
        assert len(answers) < 40
        token = result["body"]["resume_token"]
        result = handler({"resume_token": token}, FakeContext(remaining_ms=0))
        answers.append(result)
    assert len(answers) >= 3
    assert result["statusCode"] == 200, result
    r = result["body"]["restore_results"][0]
    assert (r["items_written"], r["items_cleared"]) == (len(SOURCE), len(BEFORE))
    items, _ = table_and_keys()
    assert canonical(items) == canonical(SOURCE)


def test_fan_out_through_the_handlers(env: None, capsys: pytest.CaptureFixture[str]) -> None:
    from handlers.restore import finalize_handler, plan_handler

    plan = plan_handler({"clear_existing_data": True, "items_per_shard": 15}, None)
    assert plan["statusCode"] == 200, plan
    shards = plan["body"]["shards"]
    assert len(shards) >= 2
    results = [handler({"shard": ref}, FakeContext(remaining_ms=900_000)) for ref in shards]
    assert [r["statusCode"] for r in results] == [200] * len(shards)
    final = finalize_handler(
        {"restore_id": plan["body"]["restore_id"], "shard_results": [r["body"] for r in results]},
        None,
    )
    assert final["statusCode"] == 200, final
    assert final["body"]["total_items_written"] == len(SOURCE)
    assert final["body"]["total_items_cleared"] == len(BEFORE)
    items, _ = table_and_keys()
    assert canonical(items) == canonical(SOURCE)
    out = capsys.readouterr().out
    emf = [orjson.loads(x) for x in out.splitlines() if x.startswith("{") and '"_aws"' in x]
    # One line per shard (items) and one for finalize (tables): nothing counted twice.
    assert sum(d.get("items_restored", 0) for d in emf) == len(SOURCE)
    assert sum(d.get("tables_succeeded", 0) for d in emf) == 1


@pytest.mark.parametrize(
    "event",
    [
        {"restore_id": "../x", "shard_results": []},
        {"restore_id": "r1", "shard_results": "all"},
        {"restore_id": "r1", "extra": 1},
        [],
    ],
)
def test_finalize_event_validated(env: None, event: Any) -> None:
    from handlers.restore import finalize_handler

    result = finalize_handler(event, None)
    assert result["statusCode"] == 400
    assert result["body"]["problems"]


def test_plan_event_validated(env: None) -> None:
    from handlers.restore import plan_handler

    result = plan_handler({"clear_existing_data": "true"}, None)
    assert result["statusCode"] == 400
    items, _ = table_and_keys()
    assert canonical(items) == canonical(BEFORE)
