"""The scheduled incremental round against the moto server (issue 12, backup side).

moto's DynamoDB is patched by the fixtures (tests/support/moto_incremental.py):
incremental exports are written from the table's stream, and ``CLOCK`` moves
moto's clock, so a test walks through 15-minute windows without waiting.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
from collections import Counter
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from ddb_backup.aws import AwsClients, aws_clients
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
from ddb_backup.errors import BackupNotFoundError
from ddb_backup.keys import chain_prefix, window_state_key
from ddb_backup.log import configure_logging
from ddb_backup.point_in_time import plan_point_in_time
from ddb_backup.point_in_time.timeline import build_timeline
from ddb_backup.storage import S3Storage
from tests.support.backups import BUCKET, SCHEMA
from tests.support.data import (
    SECRET_MARKER,
    canonical,
    create_table,
    every_type_items,
    put_items,
    scan_all,
)
from tests.support.faults import FaultProxy
from tests.support.incremental import enable_stream, restore_plan
from tests.support.moto_incremental import CLOCK

ENV = "test"
PREFIX = "native-exports"
TABLE = "pitr-src"
FAST = Polling(initial=0.01, maximum=0.05, factor=2.0)
T0 = dt.datetime(2026, 11, 28, 2, 0, tzinfo=dt.UTC)  # table created, PITR on
FULL = dt.datetime(2026, 11, 28, 3, 0, 7, tzinfo=dt.UTC)  # the daily backup's ExportTime
DAY = dt.timedelta(days=1)
ITEMS = every_type_items(9)
KEY_TYPES = SCHEMA.key_types


def _at(base: dt.datetime, hours: int = 0, minutes: int = 0) -> dt.datetime:
    return base.replace(second=0, microsecond=0) + dt.timedelta(hours=hours, minutes=minutes)


def config(bucket: str) -> IncrementalConfig:
    return IncrementalConfig(bucket=bucket, environment=ENV, tables=(TABLE,), interval_minutes=15)


async def make_table(aws: AwsClients, at: dt.datetime = T0, name: str = TABLE) -> None:
    CLOCK.set(at)
    await create_table(aws.dynamodb, name)
    await enable_stream(aws.dynamodb, name)
    await put_items(aws.dynamodb, name, ITEMS[:5])


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
    assert second.status_code == 200, second.body
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
    assert result.status_code == 500, result.body
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
    assert result.status_code == 500, result.body  # a table without a chain is a failure
    (row,) = result.body["results"]
    assert (row["status"], row["chain_id"]) == ("PENDING", None)
    assert "no verified full backup" in str(row["message"])
    assert await chains(aws, bucket) == []


async def test_a_table_without_a_full_backup_waits_and_the_others_are_chained(
    aws: AwsClients, bucket: str
) -> None:
    """Like a failed table of the daily backup: 207, the waiting table named with
    its reason, the other table's window exported and chained all the same."""
    await make_table(aws, name="pitr-new")
    await make_table(aws)
    await full_backup(aws, bucket)  # of TABLE alone
    await change(aws, _at(FULL, minutes=5), puts=2)
    cfg = IncrementalConfig(
        bucket=bucket, environment=ENV, tables=("pitr-new", TABLE), interval_minutes=15
    )
    CLOCK.set(_at(FULL, minutes=40))
    result = await run_incremental_backup(cfg, aws, now=_at(FULL, minutes=40), polling=FAST)
    assert result.status_code == 207, result.body
    body = result.body
    assert (body["status"], body["pending_tables"], body["windows_verified"]) == ("PARTIAL", 1, 1)
    rows = {r["table_name"]: r for r in body["results"]}
    assert (rows["pitr-new"]["status"], rows["pitr-new"]["chain_id"]) == ("PENDING", None)
    assert "no verified full backup" in str(rows["pitr-new"]["message"])
    assert rows[TABLE]["status"] == "COMPLETED"
    (chain,) = await chains(aws, bucket)
    assert windows(chain) == [(FULL, _at(FULL, minutes=30))]
    assert [w.puts for w in chain.windows] == [2]
    assert await list_chains(S3Storage(aws.s3, bucket), PREFIX, "pitr-new") == []


async def test_no_attribute_value_in_logs_or_answers(aws: AwsClients, bucket: str) -> None:
    buf = io.StringIO()
    configure_logging(stream=buf)
    await make_table(aws)
    await full_backup(aws, bucket)
    await change(aws, _at(FULL, minutes=5), puts=3, deletes=2)
    result = await incremental(aws, bucket, _at(FULL, minutes=40))
    assert result.status_code == 200, result.body
    assert result.body["windows_verified"] == 1
    assert SECRET_MARKER not in buf.getvalue()
    assert SECRET_MARKER not in orjson.dumps(result.body).decode()
    assert "user-00000" not in orjson.dumps(result.body).decode()  # nor a key


# -- the daily roll: a new chain from each new full backup ----------------------------

DAY2 = FULL + DAY  # the next daily backup's ExportTime (03:00:07)


@dataclass(frozen=True)
class Rolled:
    old: str  # chain ids
    new: str
    at_0315: list[dict[str, Any]]  # the table as of day 2, 03:15 (a window boundary)


async def _rolled(aws: AwsClients, bucket: str) -> Rolled:
    """Day 1's chain runs up to day 2, the daily backup of day 2 is made, and the
    next rounds roll to a new chain from it (changes before and after it)."""
    await make_table(aws)
    await full_backup(aws, bucket)
    assert (await incremental(aws, bucket, _at(FULL, minutes=40))).status_code == 200
    await change(aws, _at(DAY2, minutes=-30), puts=1)
    assert (await incremental(aws, bucket, _at(DAY2, minutes=-10))).status_code == 200
    await change(aws, _at(DAY2, minutes=-5), puts=1)
    await full_backup(aws, bucket, DAY2)
    await change(aws, _at(DAY2, minutes=5), puts=1, deletes=1)
    at_0315 = await scan_all(aws.dynamodb, TABLE)
    await change(aws, _at(DAY2, minutes=20), puts=1, deletes=2)
    rolled = await incremental(aws, bucket, _at(DAY2, minutes=25))
    # The old chain first reaches the new full backup (a window past its export
    # time), then the new chain starts from it; no break, nothing failed.
    assert rolled.status_code == 200, rolled.body
    (row,) = rolled.body["results"]
    old, new = await chains(aws, bucket)
    assert (row["status"], row["breaks"], row["error"]) == ("COMPLETED", [], None)
    assert (row["superseded_chain_id"], row["chain_id"]) == (old.chain_id, new.chain_id)
    assert row["chain_head"] == DAY2.isoformat()  # its first window is not due yet
    assert rolled.body["chain_breaks"] == 0
    assert windows(old)[-2:] == [
        (_at(FULL, minutes=30), _at(DAY2, minutes=-15)),
        (_at(DAY2, minutes=-15), _at(DAY2, minutes=15)),
    ]
    assert old.superseded is not None
    assert old.broken is None
    assert (old.superseded.superseded_by, old.superseded.head) == (
        new.chain_id,
        _at(DAY2, minutes=15),
    )
    assert (new.start.base_export_time, new.start.base_backup_date) == (DAY2, DAY2.date())
    later = await incremental(aws, bucket, _at(DAY2, minutes=50))
    assert later.status_code == 200, later.body
    assert later.body["results"][0]["superseded_chain_id"] is None
    assert windows((await chains(aws, bucket))[1]) == [(DAY2, _at(DAY2, minutes=45))]
    return Rolled(old.chain_id, new.chain_id, at_0315)


async def test_a_new_daily_backup_starts_a_new_chain_and_supersedes_the_old(
    aws: AwsClients, bucket: str
) -> None:
    r = await _rolled(aws, bucket)
    storage = S3Storage(aws.s3, bucket)
    # Each restore point from the full backup and chain reaching closest to it.
    expected = {
        _at(FULL, minutes=40): (FULL.date(), r.old, _at(FULL, minutes=30)),
        _at(DAY2, minutes=-1): (FULL.date(), r.old, _at(DAY2, minutes=-15)),
        DAY2: (DAY2.date(), None, DAY2),  # the new full backup alone
        # Before the new chain's first window ends: the old chain's window that
        # holds the new full backup's export time, on that full backup.
        _at(DAY2, minutes=20): (DAY2.date(), r.old, _at(DAY2, minutes=15)),
        _at(DAY2, minutes=55): (DAY2.date(), r.new, _at(DAY2, minutes=45)),
    }
    for at, (date, chain_id, reached) in expected.items():
        plan = await plan_point_in_time(storage, PREFIX, TABLE, at)
        got = (plan.point.full.backup_date, plan.point.chain_id, plan.restored_to)
        assert got == (date, chain_id, reached), at
    latest = await plan_point_in_time(storage, PREFIX, TABLE, "latest")
    assert (latest.point.chain_id, latest.restored_to) == (r.new, _at(DAY2, minutes=45))
    # Restored item for item: the new full backup, then the old chain's window.
    plan = await plan_point_in_time(storage, PREFIX, TABLE, _at(DAY2, minutes=20))
    await restore_plan(aws, storage, plan, "pitr-roll-target", key_types=KEY_TYPES)
    assert canonical(await scan_all(aws.dynamodb, "pitr-roll-target")) == canonical(r.at_0315)
    # The timeline: the old chain superseded (not broken), one restorable range.
    (tl,) = await build_timeline(storage, PREFIX, [TABLE])
    assert [(c.chain_id, c.superseded_by, c.broken) for c in tl.chains] == [
        (r.old, r.new, None),
        (r.new, None, None),
    ]
    assert [(s.start, s.end) for s in tl.restorable] == [(FULL, _at(DAY2, minutes=45))]


async def test_a_window_in_flight_is_finished_before_the_roll(aws: AwsClients, bucket: str) -> None:
    """The chain passed the new backup's export time before its manifest was
    written (the daily run verifies for a while): the window then exporting is
    finished and chained, once, and only then does the next chain start."""
    await make_table(aws)
    await full_backup(aws, bucket)
    assert (await incremental(aws, bucket, _at(DAY2, minutes=25))).status_code == 200
    cut = await incremental(aws, bucket, _at(DAY2, minutes=40), deadline_seconds=0)
    assert cut.status_code == 202
    await full_backup(aws, bucket, DAY2)  # its ExportTime lies behind the chain's head
    result = await incremental(aws, bucket, _at(DAY2, minutes=41))
    assert result.status_code == 200, result.body
    old, new = await chains(aws, bucket)
    assert windows(old)[-1] == (_at(DAY2, minutes=15), _at(DAY2, minutes=30))
    assert old.superseded is not None
    assert old.superseded.head == _at(DAY2, minutes=30)
    assert windows(new) == [(DAY2, _at(DAY2, minutes=30))]
    exports = await incremental_exports(aws)
    froms = [e["IncrementalExportSpecification"]["ExportFromTime"] for e in exports]
    assert froms.count(_at(DAY2, minutes=15)) == 1  # the window in flight: one export


async def _delete_under(aws: AwsClients, bucket: str, prefix: str) -> int:
    storage = S3Storage(aws.s3, bucket)
    keys = [o.key async for o in storage.list_objects(prefix)]
    for key in keys:
        await aws.s3.delete_object(Bucket=bucket, Key=key)
    return len(keys)


async def test_an_expired_old_chain_breaks_neither_the_new_chain_nor_a_restore(
    aws: AwsClients, bucket: str
) -> None:
    r = await _rolled(aws, bucket)
    storage = S3Storage(aws.s3, bucket)
    old_chain = chain_prefix(PREFIX, TABLE, r.old)
    # The lifecycle rule expires what was written on day 1 first: the first
    # full backup, then (same age) the old chain's start and first window.
    assert await _delete_under(aws, bucket, f"{PREFIX}/{FULL.date().isoformat()}/") > 0
    (first,) = [
        o.key
        async for o in storage.list_objects(f"{old_chain}/windows/")
        if o.key.endswith(f"{time_stamp(FULL)}_{time_stamp(_at(FULL, minutes=30))}.json")
    ]
    await aws.s3.delete_object(Bucket=bucket, Key=first)
    # Half expired: the old chain has a gap at its start, yet its later window
    # still carries the new full backup.
    plan = await plan_point_in_time(storage, PREFIX, TABLE, _at(DAY2, minutes=20))
    assert (plan.point.chain_id, plan.restored_to) == (r.old, _at(DAY2, minutes=15))
    await aws.s3.delete_object(Bucket=bucket, Key=f"{old_chain}/chain.json")
    # Expired: the old chain is no longer listed; the rest answers as before.
    assert [c.chain_id for c in await chains(aws, bucket)] == [r.new]
    near = await plan_point_in_time(storage, PREFIX, TABLE, _at(DAY2, minutes=20))
    assert (near.point.chain_id, near.restored_to) == (None, DAY2)
    with pytest.raises(BackupNotFoundError, match="no verified full backup"):
        await plan_point_in_time(storage, PREFIX, TABLE, _at(FULL, minutes=40))
    await change(aws, _at(DAY2, minutes=55), puts=1)
    nxt = await incremental(aws, bucket, _at(DAY2, hours=1, minutes=5))
    assert nxt.status_code == 200, nxt.body
    (row,) = nxt.body["results"]
    assert (row["chain_id"], row["breaks"], row["windows_verified"]) == (r.new, [], 1)
    latest = await plan_point_in_time(storage, PREFIX, TABLE, "latest")
    assert (latest.point.chain_id, latest.restored_to) == (r.new, _at(DAY2, hours=1))
    (tl,) = await build_timeline(storage, PREFIX, [TABLE])
    assert [c.chain_id for c in tl.chains] == [r.new]
    assert [(s.start, s.end) for s in tl.restorable] == [(DAY2, _at(DAY2, hours=1))]


@pytest.fixture(autouse=True)
def _real_clock_after() -> Any:
    yield
    CLOCK.reset()


async def test_a_round_reads_the_chain_record_once_even_when_it_rolls(
    faulty_aws: FaultProxy,
) -> None:
    """The round below looks for the chain twice (the old chain reaches the new
    full backup, then rolls): the chain is read from S3 once, kept in memory after."""
    async with aws_clients() as aws:
        bucket = BUCKET
        await aws.s3.create_bucket(Bucket=bucket)
        await make_table(aws)
        await full_backup(aws, bucket)
        assert (await incremental(aws, bucket, _at(FULL, minutes=40))).status_code == 200
        await full_backup(aws, bucket, DAY2)
        (old,) = await chains(aws, bucket)
        faulty_aws.requests.clear()
        rolled = await incremental(aws, bucket, _at(DAY2, minutes=25))
        assert rolled.status_code == 200, rolled.body
        (row,) = rolled.body["results"]
        assert row["superseded_chain_id"] == old.chain_id
        assert row["chain_id"] != old.chain_id
        reads = Counter(
            r.path.split("?", 1)[0]
            for r in faulty_aws.requests_for("s3", "GetObject")
            if r.path.split("?", 1)[0].endswith("/chain.json")
        )
    old_record = f"/{bucket}/{chain_prefix(PREFIX, TABLE, old.chain_id)}/chain.json"
    assert reads == {old_record: 1}
