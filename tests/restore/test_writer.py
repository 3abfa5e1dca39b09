"""BatchWriter on the moto server, with senders that misbehave on purpose:
UnprocessedItems and throttling are retried until written; what still fails
ends in a dead-letter object that restores the missing items later."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import orjson
import pytest

from ddb_backup.aws import AwsClients
from ddb_backup.config import RestoreConfig
from ddb_backup.events import RestoreRequest
from ddb_backup.items import check_item_line
from ddb_backup.restore import restore_export, run_restore
from ddb_backup.restore.writer import (
    BatchWriter,
    DeadLetterSink,
    RetryPolicy,
    WireRequest,
    generic_sender,
    put_request,
)
from ddb_backup.storage import S3Storage
from ddb_backup.stream import iter_lines
from tests.support.backups import PREFIX, make_backup
from tests.support.data import canonical, create_table, every_type_items, scan_all, to_wire
from tests.support.senders import client_error, poisoned, puts, refusing_sender, write_all

FAST = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.004)
TABLE = "writer-target"


async def test_unprocessed_items_retried_until_written(aws: AwsClients) -> None:
    await create_table(aws.dynamodb, TABLE, pitr=False)
    items = every_type_items(110)
    real = generic_sender(aws.dynamodb)
    rng = random.Random(7)
    calls = 0

    async def flaky(table: str, requests: list[WireRequest]) -> list[WireRequest]:
        nonlocal calls
        calls += 1
        # Accept a random part, hand back the rest as UnprocessedItems.
        keep = [r for r in requests if rng.random() < 0.5]
        send = [r for r in requests if r not in keep]
        if not send:
            # Always some progress: the retry budget (calls without progress)
            # is another test's subject, and would make this one a coin toss.
            send, keep = keep[:1], keep[1:]
        return (await real(table, send) if send else []) + keep

    writer = BatchWriter(TABLE, flaky, max_workers=3, retry=FAST)
    done = await write_all(writer, puts(items))
    assert sum(w for w, _ in done) == 110
    assert all(f == 0 for _, f in done)
    assert writer.stats.written == 110
    assert writer.stats.failed == 0
    assert writer.stats.retried_calls > 0
    assert canonical(await scan_all(aws.dynamodb, TABLE)) == canonical(items)


@pytest.mark.parametrize(
    "code",
    ["ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"],
)
async def test_throttling_retried(aws: AwsClients, code: str) -> None:
    await create_table(aws.dynamodb, TABLE, pitr=False)
    items = every_type_items(60)
    real = generic_sender(aws.dynamodb)
    failures: dict[str, int] = {}

    async def throttled(table: str, requests: list[WireRequest]) -> list[WireRequest]:
        first = requests[0]["PutRequest"]["Item"]["pk"]["S"]
        failures[first] = failures.get(first, 0) + 1
        if failures[first] <= 2:  # under the budget of 4 calls without progress
            raise client_error(code)
        return await real(table, requests)

    writer = BatchWriter(TABLE, throttled, max_workers=2, retry=FAST)
    await write_all(writer, puts(items))
    assert writer.stats.failed == 0
    assert writer.stats.error_codes == {code: 2 * 3}
    assert canonical(await scan_all(aws.dynamodb, TABLE)) == canonical(items)


async def test_server_errors_and_resets_retried(aws: AwsClients) -> None:
    await create_table(aws.dynamodb, TABLE, pitr=False)
    items = every_type_items(30)
    real = generic_sender(aws.dynamodb)
    seq = iter([client_error("InternalServerError", 500), ConnectionResetError(), None] * 10)

    async def unstable(table: str, requests: list[WireRequest]) -> list[WireRequest]:
        exc = next(seq)
        if exc is not None:
            raise exc
        return await real(table, requests)

    writer = BatchWriter(TABLE, unstable, max_workers=1, retry=FAST)
    await write_all(writer, puts(items))
    assert writer.stats.failed == 0
    assert canonical(await scan_all(aws.dynamodb, TABLE)) == canonical(items)


async def test_budget_spent_goes_to_dead_letters(aws: AwsClients, bucket: str) -> None:
    await create_table(aws.dynamodb, TABLE, pitr=False)
    items = every_type_items(80)
    poison = poisoned(items, 7)
    storage = S3Storage(aws.s3, bucket)
    sink = DeadLetterSink(storage, "dl/test/dead-letter/writer-target")
    writer = BatchWriter(
        TABLE,
        refusing_sender(generic_sender(aws.dynamodb), poison),
        max_workers=4,
        retry=FAST,
        dead_letters=sink,
    )
    done = await write_all(writer, puts(items))
    await sink.flush()
    assert sum(f for _, f in done) == len(poison) == writer.stats.failed
    assert sum(w for w, _ in done) == 80 - len(poison)
    # The dead-letter object holds exactly the failed items, in export format.
    (part,) = sink.files
    assert part.item_count == len(poison)
    dead = [
        check_item_line(line, key=part.key, line_no=0)
        async for line in iter_lines(storage.stream(part.key), key=part.key)
    ]
    assert sorted(it["pk"]["S"] for it in dead) == sorted(poison)
    want = [to_wire(it) for it in items if it["pk"]["S"] in poison]
    assert canonical(dead) == canonical(want)


async def test_refused_item_isolated_from_its_batch(aws: AwsClients, bucket: str) -> None:
    await create_table(aws.dynamodb, TABLE, pitr=False)
    items = every_type_items(25)
    real = generic_sender(aws.dynamodb)

    async def validating(table: str, requests: list[WireRequest]) -> list[WireRequest]:
        if any(r["PutRequest"]["Item"]["pk"]["S"] == "user-00013" for r in requests):
            raise client_error("ValidationException")
        return await real(table, requests)

    sink = DeadLetterSink(S3Storage(aws.s3, bucket), "dl/x/dead-letter/writer-target")
    writer = BatchWriter(TABLE, validating, retry=FAST, dead_letters=sink)
    await write_all(writer, puts(items))
    await sink.flush()
    assert (writer.stats.written, writer.stats.failed) == (24, 1)
    good = [it for it in items if it["pk"]["S"] != "user-00013"]
    assert canonical(await scan_all(aws.dynamodb, TABLE)) == canonical(good)
    assert sink.count == 1


async def test_concurrency_is_bounded() -> None:
    in_flight = 0
    peak = 0

    async def slow(table: str, requests: list[WireRequest]) -> list[WireRequest]:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.002)
        in_flight -= 1
        return []

    writer = BatchWriter(TABLE, slow, max_workers=3, retry=FAST)
    requests = [{"PutRequest": {"Item": {"pk": {"S": str(i)}}}} for i in range(500)]
    await write_all(writer, requests)
    assert peak == 3
    assert writer.stats.written == 500


def test_full_jitter_delays() -> None:
    policy = RetryPolicy(max_attempts=5, base_delay=0.1, max_delay=1.0)
    rng = random.Random(1)
    for attempt in range(1, 10):
        cap = min(1.0, 0.1 * 2**attempt)
        delays = [policy.delay(attempt, rng) for _ in range(200)]
        assert all(0 <= d <= cap for d in delays)
        assert max(delays) > cap * 0.8  # spread over the whole range, not fixed
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


async def test_restore_with_dead_letters_then_restore_them(
    aws: AwsClients, bucket: str, config: RestoreConfig
) -> None:
    """207, the failed items in the dead-letter folder; restoring it completes the table."""
    table = "mfa-api_test_totp_global"
    items = every_type_items(90)
    await make_backup(aws.s3, bucket, PREFIX, "2026-11-27", {table: items})
    await create_table(aws.dynamodb, table)
    poison = poisoned(items, 9)

    result = await run_restore(
        config,
        RestoreRequest(),
        aws,
        retry=FAST,
        sender=refusing_sender(generic_sender(aws.dynamodb), poison),
    )

    assert result.status_code == 207, result.body
    r = result.body["restore_results"][0]
    assert r["status"] == "PARTIAL"
    assert r["items_failed"] == len(poison) == result.body["total_items_failed"]
    assert r["items_written"] == 90 - len(poison)
    assert r["dead_letter_keys"]
    folder = r["dead_letter_folder"]
    assert folder.startswith(f"{PREFIX}/_restore/{result.body['restore_id']}/dead-letter/")
    assert len(await scan_all(aws.dynamodb, table)) == 90 - len(poison)

    again = await restore_export(S3Storage(aws.s3, bucket), folder, table, aws, retry=FAST)

    assert again.status_code == 200, again.body
    assert again.body["restore_results"][0]["items_written"] == len(poison)
    assert canonical(await scan_all(aws.dynamodb, table)) == canonical(items)
    assert b"S3CR3T" not in orjson.dumps(result.body)


async def test_checked_lines_sent_as_their_items(aws: AwsClients, bucket: str) -> None:
    """Checked export lines go out as their parsed items (fast path) or decoded once
    (generic path); one that fails lands in the dead letters as the same item."""
    from ddb_backup.restore.writer import default_sender
    from tests.support.data import export_lines

    items = every_type_items(40)
    lines = export_lines(items)
    for sender in (default_sender(aws.dynamodb), generic_sender(aws.dynamodb)):
        await create_table(aws.dynamodb, TABLE, pitr=False)
        writer = BatchWriter(TABLE, sender, retry=FAST)
        await write_all(writer, [_put(line) for line in lines])
        assert canonical(await scan_all(aws.dynamodb, TABLE)) == canonical(items)
        await aws.dynamodb.delete_table(TableName=TABLE)

    storage = S3Storage(aws.s3, bucket)
    sink = DeadLetterSink(storage, "dl/raw/dead-letter/t")
    await sink.add([_put(lines[3]), {"PutRequest": {"Item": to_wire(items[4])}}])
    await sink.flush()
    (part,) = sink.files
    got = [line async for line in iter_lines(storage.stream(part.key), key=part.key)]
    assert orjson.loads(got[0]) == orjson.loads(lines[3])
    assert orjson.loads(got[1]) == {"Item": to_wire(items[4])}


async def test_bad_base64_on_the_generic_path_is_isolated(aws: AwsClients, bucket: str) -> None:
    """base64 that does not decode refuses one item, not the run: it is dead-lettered."""
    await create_table(aws.dynamodb, TABLE, pitr=False)
    items = every_type_items(25)
    requests = puts(items)
    requests[7]["PutRequest"]["Item"]["secret"] = {"B": "***not base64***"}
    sink = DeadLetterSink(S3Storage(aws.s3, bucket), "dl/x/dead-letter/writer-target")
    writer = BatchWriter(TABLE, generic_sender(aws.dynamodb), retry=FAST, dead_letters=sink)
    await write_all(writer, requests)
    await sink.flush()
    assert (writer.stats.written, writer.stats.failed) == (24, 1)
    good = [it for i, it in enumerate(items) if i != 7]
    assert canonical(await scan_all(aws.dynamodb, TABLE)) == canonical(good)
    assert sink.count == 1


def _put(line: bytes) -> dict[str, Any]:
    return put_request(check_item_line(line, key="k", line_no=1))
