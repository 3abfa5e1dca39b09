"""A dry run through the Lambda handler writes nothing anywhere (issue 13).

Every request reaches moto through the counting proxy (``faulty_aws``, no
faults set), so "nothing written" is checked where it happens: not one S3 or
DynamoDB write operation is sent, whether the dry run finishes (under a
deadline: no finished checkpoint) or is cut short by it (no checkpoint, no
resume token; the answer names the tables left). The same holds for the
planning step of a fan-out (``plan_handler``): no plan, no checkpoint, no
lease; it answers the whole dry run itself (the state machine ends on it, see
``tests/deploy/test_machine_runs_on_moto.py``).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from aiobotocore.session import get_session

from ddb_backup.aws import aws_clients
from handlers.restore import handler, plan_handler
from tests.support.backups import BUCKET, ENVIRONMENT, PREFIX, make_backup
from tests.support.data import canonical, create_table, every_type_items, put_items, scan_all
from tests.support.data import table_name as name_of
from tests.support.faults import FaultProxy
from tests.support.lambda_context import FakeContext

SESSION = get_session()
TABLES = [name_of(ENVIRONMENT, kind) for kind in ("totp", "u2f", "api-key")]
SOURCE = {t: every_type_items(12 + i) for i, t in enumerate(TABLES)}
BEFORE = [{"pk": {"S": f"old-{i}"}, "sk": {"S": "x"}} for i in range(4)]

#: Every operation that writes, in S3 or DynamoDB.
WRITES = frozenset(
    {
        "PutObject",
        "DeleteObject",
        "DeleteObjects",
        "CopyObject",
        "CreateMultipartUpload",
        "UploadPart",
        "CompleteMultipartUpload",
        "BatchWriteItem",
        "PutItem",
        "DeleteItem",
        "UpdateItem",
        "CreateTable",
        "TransactWriteItems",
    }
)


async def _setup() -> None:
    async with aws_clients(session=SESSION) as aws:
        await aws.s3.create_bucket(Bucket=BUCKET)
        await make_backup(aws.s3, BUCKET, PREFIX, "2026-11-27", SOURCE)
        for t in TABLES:
            await create_table(aws.dynamodb, t, pitr=False)
            await put_items(aws.dynamodb, t, BEFORE)


async def _snapshot() -> tuple[dict[str, list[bytes]], list[str]]:
    async with aws_clients(session=SESSION) as aws:
        tables = {t: canonical(await scan_all(aws.dynamodb, t)) for t in TABLES}
        listing = await aws.s3.list_objects_v2(Bucket=BUCKET)
        return tables, sorted(o["Key"] for o in listing.get("Contents", []))


@pytest.fixture
def env(faulty_aws: FaultProxy, monkeypatch: pytest.MonkeyPatch) -> FaultProxy:
    asyncio.run(_setup())
    monkeypatch.setenv("BACKUP_BUCKET", BUCKET)
    monkeypatch.setenv("ENVIRONMENT", ENVIRONMENT)
    monkeypatch.setenv("S3_EXPORTS_PREFIX", PREFIX)
    monkeypatch.delenv("BACKUP_BUCKET_OWNER", raising=False)
    return faulty_aws


Handler = Callable[[Any, FakeContext], dict[str, Any]]
#: A whole restore, and the planning step of a fan-out: both answer the dry run.
ENTRIES = pytest.mark.parametrize("entry", [handler, plan_handler], ids=["restore", "fan-out-plan"])


def _dry_run(
    proxy: FaultProxy, remaining_ms: int, entry: Handler
) -> tuple[dict[str, Any], Counter[str]]:
    """The handler's answer and the operations it sent (and only those)."""
    before = asyncio.run(_snapshot())
    seen = len(proxy.requests)
    event = {"tables": TABLES, "dry_run": True, "clear_existing_data": True}
    result = entry(event, FakeContext(remaining_ms=remaining_ms))
    ops = Counter(f"{r.operation}" for r in proxy.requests[seen:])
    assert asyncio.run(_snapshot()) == before
    return result, ops


@ENTRIES
def test_dry_run_under_a_deadline_sends_no_write(env: FaultProxy, entry: Handler) -> None:
    result, ops = _dry_run(env, remaining_ms=900_000, entry=entry)
    assert result["statusCode"] == 200, result
    body = result["body"]
    assert body["status"] == "DRY_RUN_OK"
    assert body["dry_run"] is True  # what the state machine routes on
    assert "resume_token" not in body
    assert "shards" not in body  # nothing planned: no shard to run
    got = {r["table"]: (r["items_to_write"], r["items_to_clear"]) for r in body["restore_results"]}
    assert got == {t: (len(SOURCE[t]), len(BEFORE)) for t in TABLES}
    if entry is plan_handler:  # what the real plan would make (default shard size: one)
        assert body["configuration"]["shards"] == 1
    # It did read: every data file, and the targets' counts.
    assert ops["GetObject"] > 0
    assert ops["Scan"] > 0
    assert {op: n for op, n in ops.items() if op in WRITES} == {}


@ENTRIES
def test_dry_run_cut_by_its_deadline_writes_no_state_and_says_what_is_left(
    env: FaultProxy, entry: Handler
) -> None:
    # No time left (Lambda's margin already spent): one table is verified, then it stops.
    result, ops = _dry_run(env, remaining_ms=0, entry=entry)
    assert {op: n for op, n in ops.items() if op in WRITES} == {}
    assert result["statusCode"] == 202, result
    body = result["body"]
    assert body["status"] == "IN_PROGRESS"
    assert "resume_token" not in body
    statuses = {r["table"]: r["status"] for r in body["restore_results"]}
    verified = [t for t, s in statuses.items() if s == "DRY_RUN_OK"]
    left = [t for t, s in statuses.items() if s == "IN_PROGRESS"]
    assert verified
    assert left
    assert sorted(verified + left) == sorted(TABLES)
    for t in left:
        assert t in body["message"]
    assert "no resume_token" in body["message"]
    # Running it again for the tables left finishes them, still writing nothing.
    seen = len(env.requests)
    again = entry(
        {"tables": left, "dry_run": True, "clear_existing_data": True},
        FakeContext(remaining_ms=900_000),
    )
    assert {r.operation for r in env.requests[seen:]} & WRITES == set()
    assert again["statusCode"] == 200, again
    assert {r["table"] for r in again["body"]["restore_results"]} == set(left)
