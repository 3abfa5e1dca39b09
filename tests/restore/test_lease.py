"""One restore per table at a time (issue 10, point 4): the S3 lease.

Two restores of one table started together: exactly one proceeds, the other
is refused with 409 touching nothing; an expired lease (a crashed run) is
taken over; the rounds of one restore keep their lease; a lease taken over
while a run writes stops it; ``items_cleared`` counts what was there.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import orjson
import pytest

from ddb_backup.aws import AwsClients
from ddb_backup.config import RestoreConfig
from ddb_backup.errors import LeaseLostError
from ddb_backup.events import RestoreRequest, ShardRef
from ddb_backup.keys import lease_key
from ddb_backup.restore import RestoreResult, finalize_restore, plan_restore, run_restore
from ddb_backup.restore.lease import LeaseRecord, TableLeases
from ddb_backup.restore.writer import BatchSender, RetryPolicy, WireRequest, default_sender
from ddb_backup.storage import S3Storage
from handlers.restore import handler
from tests.support.backups import BUCKET, ENVIRONMENT, PREFIX, make_backup
from tests.support.cli_data import on_aws, write_backup
from tests.support.cli_data import run_cli as run
from tests.support.data import canonical, create_table, every_type_items, put_items, scan_all

FAST = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.004)
T = "mfa-api_test_totp_global"
STALE = [{"pk": {"S": f"stale-{i}"}, "sk": {"S": "x"}} for i in range(30)]
D1, D2 = "2026-11-26", "2026-11-27"


async def lease_record(aws: AwsClients, table: str = T) -> LeaseRecord | None:
    """The lease object as stored (released ones included), or None if there is none."""
    try:
        resp = await aws.s3.get_object(Bucket=BUCKET, Key=lease_key(PREFIX, table))
    except aws.s3.exceptions.NoSuchKey:
        return None
    return LeaseRecord.model_validate_json(await resp["Body"].read())


async def lease_of(aws: AwsClients, table: str = T) -> LeaseRecord | None:
    """The lease a restore holds on ``table``: None when there is none or it was released."""
    record = await lease_record(aws, table)
    return None if record is None or record.released else record


async def put_foreign_lease(aws: AwsClients, *, expires_in: float) -> None:
    """A lease of another restore, as a running (or crashed) one leaves it."""
    record = LeaseRecord(
        restore_id="20261126T000000Z-0ther000",
        owner="elsewhere:1:abc",
        table=T,
        expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=expires_in),
    )
    await aws.s3.put_object(
        Bucket=BUCKET, Key=lease_key(PREFIX, T), Body=record.model_dump_json().encode()
    )


async def two_backups(aws: AwsClients) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    first, second = every_type_items(60, marker="one"), every_type_items(80, marker="two")
    second = [{**item, "pk": {"S": f"two-{i}"}} for i, item in enumerate(second)]
    await make_backup(aws.s3, BUCKET, PREFIX, D1, {T: first}, files=2)
    await make_backup(aws.s3, BUCKET, PREFIX, D2, {T: second}, files=2)
    await create_table(aws.dynamodb, T)
    await put_items(aws.dynamodb, T, STALE)
    return first, second


async def test_two_restores_of_one_table_at_once_exactly_one_proceeds(
    aws: AwsClients, bucket: str, config: RestoreConfig
) -> None:
    backups = dict(zip((D1, D2), await two_backups(aws), strict=True))
    refused = asyncio.Event()
    real = default_sender(aws.dynamodb)

    async def held_until_refused(table: str, requests: list[WireRequest]) -> list[WireRequest]:
        # No delete or put before the other restore was refused: had both taken
        # the table, both would wait here and the test would fail.
        await asyncio.wait_for(refused.wait(), 60)
        return await real(table, requests)

    async def restore(date: str) -> RestoreResult:
        request = RestoreRequest(backup_date=date, clear_existing_data=True, max_workers=2)
        result = await run_restore(config, request, aws, retry=FAST, sender=held_until_refused)
        if result.status_code == 409:
            refused.set()
        return result

    results = dict(zip((D1, D2), await asyncio.gather(restore(D1), restore(D2)), strict=True))

    codes = sorted(r.status_code for r in results.values())
    assert codes == [200, 409], {d: r.body for d, r in results.items()}
    [winner] = [d for d, r in results.items() if r.status_code == 200]
    [loser] = [d for d, r in results.items() if r.status_code == 409]
    no = results[loser].body
    assert no["reason"] == "table_locked"
    assert no["error_type"] == "LeaseHeldError"
    assert (
        f"table {T} is being restored by restore {results[winner].body['restore_id']}"
        in (no["error"])
    )
    assert no["restore_results"] == []
    # The table holds exactly the winner's backup, item for item.
    assert canonical(await scan_all(aws.dynamodb, T)) == canonical(backups[winner])
    [ok] = results[winner].body["restore_results"]
    assert ok["items_cleared"] == len(STALE)  # what was there, not deletes of absent keys
    assert ok["items_written"] == len(backups[winner])
    assert await lease_of(aws) is None  # released at the end
    # Released by overwriting, never deleted (no role may delete in the bucket).
    released = await lease_record(aws)
    assert released is not None
    assert released.released
    assert released.restore_id == results[winner].body["restore_id"]


async def test_handler_answers_409_and_touches_nothing_while_the_table_is_leased(
    aws: AwsClients, bucket: str, lambda_context: Any, restore_handler_env: None
) -> None:
    await two_backups(aws)
    await put_foreign_lease(aws, expires_in=300)
    before = await aws.s3.list_objects_v2(Bucket=bucket)

    event = {"backup_date": D1, "clear_existing_data": True}
    answer = await asyncio.to_thread(handler, event, lambda_context)

    assert answer["statusCode"] == 409
    assert answer["body"]["reason"] == "table_locked"
    assert "restore 20261126T000000Z-0ther000 (owner elsewhere:1:abc" in answer["body"]["error"]
    assert canonical(await scan_all(aws.dynamodb, T)) == canonical(STALE)  # not cleared
    after = await aws.s3.list_objects_v2(Bucket=bucket)
    assert [o["ETag"] for o in after["Contents"]] == [o["ETag"] for o in before["Contents"]]
    assert (await lease_of(aws)) is not None  # the holder's lease is left alone


def test_cli_exits_non_zero_with_a_clear_message_while_leased(
    moto: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def setup(aws: AwsClients) -> None:
        await aws.s3.create_bucket(Bucket=BUCKET)
        await write_backup(aws.s3, BUCKET, D1, {T: every_type_items(5)})
        await create_table(aws.dynamodb, T, pitr=False)
        await put_items(aws.dynamodb, T, STALE)
        await put_foreign_lease(aws, expires_in=300)

    on_aws(setup)
    monkeypatch.setenv("BACKUP_BUCKET", BUCKET)
    monkeypatch.setenv("ENVIRONMENT", ENVIRONMENT)
    monkeypatch.delenv("DDB_BACKUP_TERMINAL", raising=False)
    code, _out, err = run(capsys, "restore", D1, "--tables", T, "--clear-existing-data", "--yes")
    assert code == 3  # busy: nothing was done, the same command can run again later
    assert f"ddb-backup: error: table {T} is being restored by restore 20261126T000000Z" in err
    # Touched nothing: the table as it was (not cleared), the other restore's lease kept.
    assert canonical(on_aws(lambda aws: scan_all(aws.dynamodb, T))) == canonical(STALE)
    held = on_aws(lease_of)
    assert held is not None
    assert held.restore_id == "20261126T000000Z-0ther000"


async def test_expired_lease_of_a_crashed_run_is_taken_over(
    aws: AwsClients, bucket: str, config: RestoreConfig
) -> None:
    first, _ = await two_backups(aws)
    await put_foreign_lease(aws, expires_in=-1)
    result = await run_restore(
        config, RestoreRequest(backup_date=D1, clear_existing_data=True), aws, retry=FAST
    )
    assert result.status_code == 200, result.body
    assert canonical(await scan_all(aws.dynamodb, T)) == canonical(first)
    assert await lease_of(aws) is None


async def test_rounds_of_one_restore_keep_its_lease_and_refuse_others(
    aws: AwsClients, bucket: str, config: RestoreConfig
) -> None:
    first, _ = await two_backups(aws)
    request = RestoreRequest(backup_date=D1, clear_existing_data=True, max_workers=1)
    one = await run_restore(config, request, aws, retry=FAST, max_batches=1)
    assert one.status_code == 202
    held = await lease_of(aws)
    assert held is not None
    assert held.restore_id == one.body["restore_id"]

    # Between two rounds the table is still this restore's.
    other = await run_restore(config, RestoreRequest(backup_date=D1), aws, retry=FAST)
    assert other.status_code == 409

    results = [one]
    while results[-1].status_code == 202:
        assert len(results) < 20, "no progress"
        token = RestoreRequest(resume_token=results[-1].body["resume_token"])
        results.append(await run_restore(config, token, aws, retry=FAST, max_batches=2))
    assert results[-1].status_code == 200, results[-1].body
    assert canonical(await scan_all(aws.dynamodb, T)) == canonical(first)
    assert results[-1].body["total_items_cleared"] == len(STALE)
    assert await lease_of(aws) is None


async def test_a_lease_taken_over_mid_run_stops_the_writes(
    aws: AwsClients, bucket: str, config: RestoreConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _ = await two_backups(aws)
    leases: list[TableLeases] = []

    class Recorded(TableLeases):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            leases.append(self)

    monkeypatch.setattr("ddb_backup.restore.entry.TableLeases", Recorded)
    real: BatchSender = default_sender(aws.dynamodb)
    sent: list[int] = []

    async def steal_on_first_put(table: str, requests: list[WireRequest]) -> list[WireRequest]:
        if not sent:
            # Another restore takes the table (ours "expired"), and the
            # background renewal comes round: it must notice.
            await put_foreign_lease(aws, expires_in=300)
            with pytest.raises(LeaseLostError):
                await leases[0].renew()
        sent.append(len(requests))
        return await real(table, requests)

    result = await run_restore(
        config,
        RestoreRequest(backup_date=D1, max_workers=1),
        aws,
        retry=FAST,
        sender=steal_on_first_put,
        files_in_flight=1,
    )
    assert result.status_code == 409
    assert result.body["reason"] == "lease_lost"
    assert "resume_token" not in result.body
    [table] = result.body["restore_results"]
    assert table["status"] == "PARTIAL"
    assert "restore 20261126T000000Z-0ther000 took the lease" in table["error"]
    # Only what was handed to the writer when the loss was noticed is written
    # (max_workers=1: the batch being sent and at most one queued), no more.
    assert 1 <= len(sent) <= 2
    assert len(await scan_all(aws.dynamodb, T)) == len(STALE) + sum(sent) < len(STALE) + len(first)
    # The other restore's lease is not released by the one that lost it.
    holder = await lease_of(aws)
    assert holder is not None
    assert holder.restore_id == "20261126T000000Z-0ther000"


async def test_lease_record_names_restore_owner_and_expiry(aws: AwsClients, bucket: str) -> None:
    leases = TableLeases(S3Storage(aws.s3, bucket), PREFIX, "20261127T000000Z-aaaaaaaa")
    await leases.acquire([T])
    raw = await (await aws.s3.get_object(Bucket=bucket, Key=lease_key(PREFIX, T)))["Body"].read()
    doc = orjson.loads(raw)
    assert doc["restore_id"] == "20261127T000000Z-aaaaaaaa"
    assert doc["table"] == T
    assert doc["owner"] == leases.owner
    assert dt.datetime.fromisoformat(doc["expires_at"]) > dt.datetime.now(dt.UTC)
    await leases.renew()  # conditional on its own ETag: still ours
    await leases.release()
    assert await lease_of(aws) is None


async def test_fan_out_shards_share_the_plans_lease_until_finalize(
    aws: AwsClients, bucket: str, config: RestoreConfig
) -> None:
    first, _ = await two_backups(aws)
    plan = await plan_restore(
        config,
        RestoreRequest(backup_date=D1, clear_existing_data=True, items_per_shard=25),
        aws,
        retry=FAST,
    )
    assert plan.status_code == 200, plan.body
    shards = plan.body["shards"]
    assert len(shards) >= 2
    held = await lease_of(aws)
    assert held is not None
    assert held.restore_id == plan.body["restore_id"]  # kept for the shards
    assert (await run_restore(config, RestoreRequest(backup_date=D2), aws)).status_code == 409

    # Shards of the same restore run at once on one table: none is refused.
    answers = await asyncio.gather(
        *(run_restore(config, RestoreRequest(shard=ShardRef(**s)), aws, retry=FAST) for s in shards)
    )
    assert [a.status_code for a in answers] == [200] * len(shards), [a.body for a in answers]
    assert await lease_of(aws) is not None  # a shard does not release its siblings' lease
    final = await finalize_restore(config, plan.body["restore_id"], aws)
    assert final.status_code == 200, final.body
    assert canonical(await scan_all(aws.dynamodb, T)) == canonical(first)
    assert await lease_of(aws) is None
