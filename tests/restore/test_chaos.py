"""Chaos tests of the restore: faults injected between the code and moto.

Every test ends with the target table compared item for item with the
source (``tests.support.data.canonical``) and the reported counts compared
with the truth; figures go to ``.pytest_cache/reliability.json``.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from ddb_backup.aws import AwsClients
from ddb_backup.config import RestoreConfig
from ddb_backup.events import RestoreRequest
from ddb_backup.items import check_item_line, to_botocore
from ddb_backup.restore import RestoreResult, restore_clients, restore_export, run_restore
from ddb_backup.restore.writer import RetryPolicy
from ddb_backup.storage import S3Storage
from ddb_backup.stream import iter_lines
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
from tests.support.fault_fixtures import record_figures
from tests.support.faults import Fault, FaultProxy

DATE = "2026-11-27"
T1 = table_name(ENVIRONMENT, "totp")
T2 = table_name(ENVIRONMENT, "u2f")
#: Short backoff, generous budget: faults at these rates must never cost an item.
PATIENT = RetryPolicy(max_attempts=12, base_delay=0.002, max_delay=0.02)
CONFIG = RestoreConfig(bucket=BUCKET, environment=ENVIRONMENT, prefix=PREFIX)


@pytest.fixture
async def aws(faulty_aws: FaultProxy) -> Any:
    """The restore's own clients (as the handler builds them), through the fault proxy."""
    async with restore_clients(5) as clients:
        yield clients


async def backup_of(aws: AwsClients, tables: dict[str, list[dict[str, Any]]]) -> None:
    await aws.s3.create_bucket(Bucket=BUCKET)
    await make_backup(aws.s3, BUCKET, PREFIX, DATE, tables, files=3, empty_files=1)
    for name in tables:
        await create_table(aws.dynamodb, name)


async def restore(aws: AwsClients, retry: RetryPolicy = PATIENT, **event: Any) -> RestoreResult:
    event.setdefault("backup_date", DATE)
    return await run_restore(CONFIG, RestoreRequest(**event), aws, retry=retry)


def results(result: RestoreResult) -> dict[str, dict[str, Any]]:
    return {r["table"]: r for r in result.body["restore_results"]}


async def check_table(
    proxy: FaultProxy, aws: AwsClients, table: str, source: list[dict[str, Any]]
) -> tuple[int, int]:
    """The table against the source, item for item; returns (items checked, items lost)."""
    with proxy.faults_off():
        stored = await scan_all(aws.dynamodb, table)
    want, got = canonical(source), canonical(stored)
    lost = len(set(want) - set(got))
    assert lost == 0, f"{lost} items lost in {table}"
    assert got == want  # nothing extra, nothing altered
    return len(want), lost


def check_counts(r: dict[str, Any], n: int, *, cleared: int = 0) -> None:
    assert r["status"] == "COMPLETED", r
    assert r["items_expected"] == r["items_read"] == r["items_written"] == n
    assert r["items_failed"] == 0
    assert r["items_cleared"] == cleared
    assert r["files_processed"] == r["files_total"]


def figures(request: pytest.FixtureRequest, checked: int, lost: int, **extra: Any) -> None:
    record_figures(request.node.nodeid, items_checked=checked, items_lost=lost, **extra)


async def test_throttling_and_unprocessed_items_every_other_batch(
    faulty_aws: FaultProxy, aws: AwsClients, fast_retries: None, request: pytest.FixtureRequest
) -> None:
    source, other = every_type_items(300), every_type_items(60, marker="other")
    await backup_of(aws, {T1: source, T2: other})
    faulty_aws.set_faults(
        Fault.throttle(0.3, service="dynamodb", operation="BatchWriteItem"),
        Fault.throttle(0.3, code="ThrottlingException", operation="DescribeTable"),
        Fault.unprocessed(every=2),
    )

    result = await restore(aws, max_workers=8)

    assert result.status_code == 200, result.body
    by_table = results(result)
    check_counts(by_table[T1], 300)
    check_counts(by_table[T2], 60)
    assert result.body["total_items_written"] == 360
    c1, l1 = await check_table(faulty_aws, aws, T1, source)
    c2, l2 = await check_table(faulty_aws, aws, T2, other)
    assert faulty_aws.counts["throttle_ProvisionedThroughputExceededException"] > 0
    assert faulty_aws.counts["unprocessed_items"] > 0
    figures(request, c1 + c2, l1 + l2)


async def test_cut_s3_bodies_are_resumed_without_loss_or_double_count(
    faulty_aws: FaultProxy, aws: AwsClients, fast_retries: None, request: pytest.FixtureRequest
) -> None:
    source = every_type_items(250)
    await backup_of(aws, {T1: source})
    faulty_aws.set_faults(
        Fault.cut_body(every=2),
        Fault.slow_down(0.15, operation="GetObject"),
        Fault.http_error(500, service="s3", operation="HeadObject", rate=0.2),
        Fault.latency(0.005, service="s3", rate=0.2),
    )

    result = await restore(aws)

    assert result.status_code == 200, result.body
    check_counts(results(result)[T1], 250)
    checked, lost = await check_table(faulty_aws, aws, T1, source)
    assert faulty_aws.counts["cut_body"] > 0
    # Every cut body was read again (from the start or by byte range).
    gets = faulty_aws.requests_for("s3", "GetObject")
    assert len(gets) >= faulty_aws.counts["cut_body"] + 4
    figures(request, checked, lost)


async def test_clear_existing_data_under_throttling(
    faulty_aws: FaultProxy, aws: AwsClients, fast_retries: None, request: pytest.FixtureRequest
) -> None:
    source = every_type_items(120)
    await backup_of(aws, {T1: source})
    old: list[dict[str, Any]] = [
        {"pk": {"S": f"stale-{i:04d}"}, "sk": {"S": "x"}, "v": {"N": str(i)}} for i in range(150)
    ]
    # Backup keys holding other values: overwritten, and cleared first.
    old += [{**it, "label": {"S": "tampered"}, "extra": {"BOOL": True}} for it in source[:30]]
    await put_items(aws.dynamodb, T1, old)
    faulty_aws.set_faults(
        Fault.throttle(0.3, service="dynamodb", operation="BatchWriteItem"),
        Fault.throttle(0.3, code="ThrottlingException", operation="Scan"),
        Fault.unprocessed(0.5),
        Fault.reset(0.05, service="dynamodb", operation="BatchWriteItem", after=True),
    )

    result = await restore(aws, clear_existing_data=True)

    assert result.status_code == 200, result.body
    check_counts(results(result)[T1], 120, cleared=len(old))
    checked, lost = await check_table(faulty_aws, aws, T1, source)
    assert faulty_aws.counts["unprocessed_items"] > 0
    figures(request, checked, lost, items_cleared=len(old))


async def test_connection_resets_and_5xx_during_writes(
    faulty_aws: FaultProxy, aws: AwsClients, fast_retries: None, request: pytest.FixtureRequest
) -> None:
    source = every_type_items(200)
    await backup_of(aws, {T1: source})
    faulty_aws.set_faults(
        Fault.reset(service="dynamodb", operation="BatchWriteItem", every=3),
        Fault.http_error(500, service="dynamodb", operation="BatchWriteItem", every=4),
        Fault.http_error(503, service="dynamodb", operation="BatchWriteItem", every=5),
        Fault.latency(0.005, service="dynamodb", rate=0.2),
    )

    result = await restore(aws, max_workers=6)

    assert result.status_code == 200, result.body
    check_counts(results(result)[T1], 200)
    assert faulty_aws.counts["reset"] > 0
    assert faulty_aws.counts["http_500"] + faulty_aws.counts["http_503"] > 0
    checked, lost = await check_table(faulty_aws, aws, T1, source)
    figures(request, checked, lost)


async def test_lost_answers_do_not_double_count(
    faulty_aws: FaultProxy, aws: AwsClients, fast_retries: None, request: pytest.FixtureRequest
) -> None:
    """moto did the write, the answer was lost: the batch is sent again, counted once."""
    source = every_type_items(150)
    await backup_of(aws, {T1: source})
    faulty_aws.set_faults(Fault.reset(operation="BatchWriteItem", after=True, every=2))

    result = await restore(aws)

    assert result.status_code == 200, result.body
    check_counts(results(result)[T1], 150)
    assert faulty_aws.counts["reset_after"] > 0
    checked, lost = await check_table(faulty_aws, aws, T1, source)
    figures(request, checked, lost)


async def test_retry_budget_spent_gives_207_and_dead_letters_restore_the_rest(
    faulty_aws: FaultProxy, aws: AwsClients, fast_retries: None, request: pytest.FixtureRequest
) -> None:
    source = every_type_items(300)
    await backup_of(aws, {T1: source})
    # The table takes nothing for a while (every batch handed back whole): two
    # calls without progress anywhere in the table spend a batch's budget. (A
    # refusal while the table still takes other batches does not: see
    # tests/test_write_budget.py.)
    faulty_aws.set_faults(Fault.unprocessed(1.0, fraction=1.0, skip=4, limit=12))
    stingy = RetryPolicy(max_attempts=2, base_delay=0.001, max_delay=0.002)

    # One batch at a time: with several, another batch's progress between two
    # refusals (a matter of scheduling on a loaded machine) keeps a batch's budget
    # whole, and every item could end up written. Here 6 batches spend theirs.
    result = await restore(aws, retry=stingy, max_workers=1)

    assert result.status_code == 207, result.body
    r = results(result)[T1]
    assert r["status"] == "PARTIAL"
    with faulty_aws.faults_off():
        stored = await scan_all(aws.dynamodb, T1)
    missing = set(canonical(source)) - set(canonical(stored))
    assert set(canonical(stored)) <= set(canonical(source))
    assert len(missing) == 6 * 25
    assert r["items_failed"] == len(missing) == result.body["total_items_failed"]
    assert r["items_written"] == 300 - len(missing)
    assert r["items_read"] == r["items_expected"] == 300

    # The dead-letter objects hold exactly the missing items, in export format.
    storage = S3Storage(aws.s3, BUCKET)
    dead: list[dict[str, Any]] = []
    with faulty_aws.faults_off():
        for key in r["dead_letter_keys"]:
            n = 0
            async for line in iter_lines(storage.stream(key), key=key):
                n += 1
                dead.append(to_botocore(check_item_line(line, key=key, line_no=n)))
    assert set(canonical(dead)) == missing
    assert len(dead) == len(missing)

    # Restoring the dead-letter folder (under milder faults) completes the table.
    faulty_aws.set_faults(Fault.throttle(0.3, operation="BatchWriteItem"), Fault.unprocessed(0.3))
    again = await restore_export(storage, r["dead_letter_folder"], T1, aws, retry=PATIENT)
    assert again.status_code == 200, again.body
    assert again.body["restore_results"][0]["items_written"] == len(missing)
    checked, lost = await check_table(faulty_aws, aws, T1, source)
    figures(request, checked, lost, dead_lettered=len(missing))


async def test_many_faults_at_once_full_cycle(
    faulty_aws: FaultProxy, aws: AwsClients, fast_retries: None, request: pytest.FixtureRequest
) -> None:
    """Every kind at once, two tables, clear first: still exact."""
    source, other = every_type_items(180), every_type_items(45, marker="other")
    await backup_of(aws, {T1: source, T2: other})
    await put_items(aws.dynamodb, T2, every_type_items(20, marker="stale"))
    faulty_aws.set_faults(
        Fault.throttle(0.2, service="dynamodb"),
        Fault.unprocessed(0.4),
        Fault.http_error(503, service="dynamodb", rate=0.05),
        Fault.reset(0.05, service="dynamodb", operation="BatchWriteItem", after=True),
        Fault.cut_body(0.4),
        Fault.slow_down(0.1),
        Fault.latency(0.002, rate=0.2),
    )

    result = await restore(aws, clear_existing_data=True, max_workers=4)

    assert result.status_code == 200, result.body
    by_table = results(result)
    check_counts(by_table[T1], 180)
    # The stale items use the same keys as the first 20 "other" items: 20 cleared.
    check_counts(by_table[T2], 45, cleared=20)
    c1, l1 = await check_table(faulty_aws, aws, T1, source)
    c2, l2 = await check_table(faulty_aws, aws, T2, other)
    assert SECRET_MARKER not in orjson.dumps(result.body).decode()
    figures(request, c1 + c2, l1 + l2)
