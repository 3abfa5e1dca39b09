"""The scheduled incremental round against the moto server (issue 12, backup side).

moto's DynamoDB is patched by the fixtures (tests/support/moto_incremental.py):
incremental exports are written from the table's stream, and ``CLOCK`` moves
moto's clock, so a test walks through 15-minute windows without waiting.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
from typing import Any

import orjson
import pytest

from ddb_backup.aws import AwsClients
from ddb_backup.backup import IncrementalResult, Polling, run_backup, run_incremental_backup
from ddb_backup.backup.window_export import WindowState
from ddb_backup.chain import (
    BreakReason,
    Chain,
    PlannedWindow,
    check_contiguity,
    incremental_client_token,
    list_chains,
    time_stamp,
)
from ddb_backup.config import BackupConfig, IncrementalConfig
from ddb_backup.keys import window_state_key
from ddb_backup.log import configure_logging
from ddb_backup.storage import S3Storage
from tests.support.data import SECRET_MARKER, create_table, every_type_items, put_items
from tests.support.incremental import enable_stream
from tests.support.moto_incremental import CLOCK

ENV = "test"
PREFIX = "native-exports"
TABLE = "pitr-src"
FAST = Polling(initial=0.01, maximum=0.05, factor=2.0)
T0 = dt.datetime(2026, 11, 28, 2, 0, tzinfo=dt.UTC)  # table created, PITR on
FULL = dt.datetime(2026, 11, 28, 3, 0, 7, tzinfo=dt.UTC)  # the daily backup's ExportTime
DAY = dt.timedelta(days=1)
ITEMS = every_type_items(9)


def _at(base: dt.datetime, hours: int = 0, minutes: int = 0) -> dt.datetime:
    return base.replace(second=0, microsecond=0) + dt.timedelta(hours=hours, minutes=minutes)


def config(bucket: str) -> IncrementalConfig:
    return IncrementalConfig(bucket=bucket, environment=ENV, tables=(TABLE,), interval_minutes=15)


async def make_table(aws: AwsClients, at: dt.datetime = T0) -> None:
    CLOCK.set(at)
    await create_table(aws.dynamodb, TABLE)
    await enable_stream(aws.dynamodb, TABLE)
    await put_items(aws.dynamodb, TABLE, ITEMS[:5])


async def full_backup(aws: AwsClients, bucket: str, at: dt.datetime = FULL) -> None:
    CLOCK.set(at)
    cfg = BackupConfig(bucket=bucket, environment=ENV, tables=(TABLE,))
    result = await run_backup(cfg, aws, now=at, polling=FAST)
    assert result.status_code == 200, result.body


async def change(aws: AwsClients, at: dt.datetime, *, puts: int = 0, deletes: int = 0) -> None:
    """At ``at`` (moto's clock): ``puts`` new items, ``deletes`` of the first items."""
    CLOCK.set(at)
    new = [dict(i, pk={"S": f"{i['pk']['S']}-{at:%d%H%M}"}) for i in ITEMS[5 : 5 + puts]]
    if new:
        await put_items(aws.dynamodb, TABLE, new)
    for item in ITEMS[:deletes]:
        await aws.dynamodb.delete_item(TableName=TABLE, Key={"pk": item["pk"], "sk": item["sk"]})


async def incremental(
    aws: AwsClients, bucket: str, at: dt.datetime, **kw: Any
) -> IncrementalResult:
    CLOCK.set(at)
    kw.setdefault("polling", FAST)
    return await run_incremental_backup(config(bucket), aws, now=at, **kw)


async def chains(aws: AwsClients, bucket: str) -> list[Chain]:
    return await list_chains(S3Storage(aws.s3, bucket), PREFIX, TABLE)


def windows(chain: Chain) -> list[tuple[dt.datetime, dt.datetime]]:
    return [(w.export_from_time, w.export_to_time) for w in chain.windows]


async def incremental_exports(aws: AwsClients) -> list[dict[str, Any]]:
    arn = (await aws.dynamodb.describe_table(TableName=TABLE))["Table"]["TableArn"]
    summaries = (await aws.dynamodb.list_exports(TableArn=arn))["ExportSummaries"]
    out = []
    for s in summaries:
        if s["ExportType"] == "INCREMENTAL_EXPORT":
            desc = await aws.dynamodb.describe_export(ExportArn=s["ExportArn"])
            out.append(desc["ExportDescription"])
    return out


async def test_windows_follow_each_other_over_several_invocations(
    aws: AwsClients, bucket: str
) -> None:
    await make_table(aws)
    await full_backup(aws, bucket)
    await change(aws, _at(FULL, minutes=5), puts=2, deletes=1)
    first = await incremental(aws, bucket, _at(FULL, minutes=40))
    assert first.status_code == 200, first.body
    (row,) = first.body["results"]
    assert (row["status"], row["windows_verified"], row["puts"], row["deletes"]) == (
        "COMPLETED",
        1,
        2,
        1,
    )
    # The first window starts at the full backup (whole second), ends on a boundary.
    assert (row["window_from"], row["window_to"]) == (
        FULL.isoformat(),
        _at(FULL, minutes=30).isoformat(),
    )
    assert row["chain_lag_seconds"] == 10 * 60
    await change(aws, _at(FULL, minutes=50), puts=1)
    second = await incremental(aws, bucket, _at(FULL, hours=1, minutes=22))
    assert second.body["results"][0]["puts"] == 1
    # Not due yet (the next boundary is less than 15 minutes on): nothing started.
    third = await incremental(aws, bucket, _at(FULL, hours=1, minutes=27))
    assert third.body["windows_verified"] == 0
    assert third.status_code == 200
    (chain,) = await chains(aws, bucket)
    assert windows(chain) == [
        (FULL, _at(FULL, minutes=30)),
        (_at(FULL, minutes=30), _at(FULL, hours=1, minutes=15)),
    ]
    assert check_contiguity(chain.start, chain.windows) == []
    assert [(w.puts, w.deletes) for w in chain.windows] == [(2, 1), (1, 0)]
    exports = await incremental_exports(aws)
    assert len(exports) == 2  # one export per window
    for desc in exports:
        spec = desc["IncrementalExportSpecification"]
        planned = PlannedWindow(spec["ExportFromTime"], spec["ExportToTime"])
        assert spec["ExportViewType"] == "NEW_AND_OLD_IMAGES"
        assert desc["ClientToken"] == incremental_client_token(bucket, PREFIX, TABLE, planned)


async def test_cut_off_window_answers_202_and_a_retry_starts_no_second_export(
    aws: AwsClients, bucket: str
) -> None:
    await make_table(aws)
    await full_backup(aws, bucket)
    await change(aws, _at(FULL, minutes=5), puts=3)
    cut = await incremental(aws, bucket, _at(FULL, minutes=40), deadline_seconds=0)
    assert cut.status_code == 202
    assert cut.body["results"][0]["status"] == "IN_PROGRESS"
    assert (await chains(aws, bucket))[0].windows == []  # not verified: not in the chain
    # The invocation died after saving "about to start" (its lease expired):
    # the retry finds the export by its window instead of starting another.
    (chain,) = await chains(aws, bucket)
    key = window_state_key(PREFIX, TABLE, chain.chain_id, time_stamp(chain.head))
    raw_state = WindowState.model_validate_json(await S3Storage(aws.s3, bucket).get_bytes(key))
    raw_state.window.status = raw_state.window.status.STARTING
    raw_state.window.export_arn = None
    raw_state.starting_until = None
    await aws.s3.put_object(Bucket=bucket, Key=key, Body=raw_state.to_json())
    done = await incremental(aws, bucket, _at(FULL, minutes=41))
    assert done.status_code == 200, done.body
    assert done.body["results"][0]["puts"] == 3
    assert len(await incremental_exports(aws)) == 1
    assert windows((await chains(aws, bucket))[0]) == [(FULL, _at(FULL, minutes=30))]


async def test_a_chain_that_fell_behind_catches_up_in_windows_of_at_most_24_hours(
    aws: AwsClients, bucket: str
) -> None:
    await make_table(aws)
    await full_backup(aws, bucket)
    await change(aws, FULL + dt.timedelta(hours=30), puts=2)
    await change(aws, FULL + dt.timedelta(hours=48, minutes=20), deletes=2)
    now = FULL + DAY * 2 + dt.timedelta(hours=1)
    result = await incremental(aws, bucket, now)
    assert result.status_code == 200, result.body
    (chain,) = await chains(aws, bucket)
    boundary = _at(FULL)  # 03:00 every day
    assert windows(chain) == [
        (FULL, boundary + DAY),
        (boundary + DAY, boundary + 2 * DAY),
        (boundary + 2 * DAY, _at(now, minutes=-15)),
    ]
    assert all(b - a <= DAY for a, b in windows(chain))
    assert [(w.puts, w.deletes) for w in chain.windows] == [(0, 0), (2, 0), (0, 2)]
    assert result.body["results"][0]["windows_verified"] == 3


async def test_pitr_switched_off_and_on_breaks_the_chain_and_a_new_one_starts(
    aws: AwsClients, bucket: str
) -> None:
    await make_table(aws)
    await full_backup(aws, bucket)
    assert (await incremental(aws, bucket, _at(FULL, minutes=40))).status_code == 200
    CLOCK.set(_at(FULL, hours=2))
    for enabled in (False, True):
        await aws.dynamodb.update_continuous_backups(
            TableName=TABLE,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": enabled},
        )
    broken = await incremental(aws, bucket, _at(FULL, hours=3))
    (row,) = broken.body["results"]
    assert [b["reason"] for b in row["breaks"]] == [BreakReason.PITR_RESET.value]
    assert row["status"] == "PENDING"
    assert "daily backup makes one" in str(row["message"])
    assert broken.status_code == 500
    # Reported once: the next round knows the chain is broken and says nothing new.
    again = await incremental(aws, bucket, _at(FULL, hours=3, minutes=20))
    assert again.body["chain_breaks"] == 0
    # The next daily backup carries a new chain.
    await full_backup(aws, bucket, FULL + DAY)
    fresh = await incremental(aws, bucket, _at(FULL + DAY, minutes=40))
    assert fresh.status_code == 200, fresh.body
    old, new = await chains(aws, bucket)
    assert old.broken is not None
    assert old.broken.reason is BreakReason.PITR_RESET
    assert windows(old) == [(FULL, _at(FULL, minutes=30))]  # still restorable up to here
    assert new.start.base_export_time == FULL + DAY
    assert windows(new) == [(FULL + DAY, _at(FULL + DAY, minutes=30))]


async def test_a_recreated_table_breaks_the_chain(aws: AwsClients, bucket: str) -> None:
    await make_table(aws)
    await full_backup(aws, bucket)
    assert (await incremental(aws, bucket, _at(FULL, minutes=40))).status_code == 200
    await aws.dynamodb.delete_table(TableName=TABLE)
    await make_table(aws, _at(FULL, hours=1))
    result = await incremental(aws, bucket, _at(FULL, hours=2))
    (row,) = result.body["results"]
    assert [b["reason"] for b in row["breaks"]] == [BreakReason.TABLE_RECREATED.value]
    assert row["status"] == "PENDING"  # yesterday's full backup is of the old table
    (chain,) = await chains(aws, bucket)
    assert chain.broken is not None


async def test_a_damaged_window_is_not_chained_and_is_reported(
    aws: AwsClients, bucket: str
) -> None:
    await make_table(aws)
    await full_backup(aws, bucket)
    await change(aws, _at(FULL, minutes=5), puts=3)
    cut = await incremental(aws, bucket, _at(FULL, minutes=40), deadline_seconds=0)
    assert cut.status_code == 202
    (desc,) = await incremental_exports(aws)
    folder = desc["ExportManifest"].rsplit("/", 1)[0]
    storage = S3Storage(aws.s3, bucket)
    listed = await storage.get_bytes(f"{folder}/manifest-files.json")
    key = orjson.loads(listed.splitlines()[0])["dataFileS3Key"]
    body = await storage.get_bytes(key)
    # Same lines, other gzip bytes: only the MD5 can tell.
    await aws.s3.put_object(
        Bucket=bucket, Key=key, Body=gzip.compress(gzip.decompress(body), mtime=1)
    )
    result = await incremental(aws, bucket, _at(FULL, minutes=41))
    assert result.status_code == 500
    (row,) = result.body["results"]
    assert row["status"] == "FAILED"
    assert key in str(row["error"])
    assert "MD5" in str(row["error"])
    assert [b["reason"] for b in row["breaks"]] == [BreakReason.WINDOW_FAILED.value]
    (chain,) = await chains(aws, bucket)
    assert chain.windows == []
    assert chain.broken is not None


async def test_no_full_backup_no_chain(aws: AwsClients, bucket: str) -> None:
    await make_table(aws)
    result = await incremental(aws, bucket, _at(FULL, minutes=40))
    (row,) = result.body["results"]
    assert (row["status"], row["chain_id"]) == ("PENDING", None)
    assert "no verified full backup" in str(row["message"])
    assert await chains(aws, bucket) == []


async def test_no_attribute_value_in_logs_or_answers(aws: AwsClients, bucket: str) -> None:
    buf = io.StringIO()
    configure_logging(stream=buf)
    await make_table(aws)
    await full_backup(aws, bucket)
    await change(aws, _at(FULL, minutes=5), puts=3, deletes=2)
    result = await incremental(aws, bucket, _at(FULL, minutes=40))
    assert result.body["windows_verified"] == 1
    assert SECRET_MARKER not in buf.getvalue()
    assert SECRET_MARKER not in orjson.dumps(result.body).decode()
    assert "user-00000" not in orjson.dumps(result.body).decode()  # nor a key


@pytest.fixture(autouse=True)
def _real_clock_after() -> Any:
    yield
    CLOCK.reset()
