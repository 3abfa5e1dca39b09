"""The write budget (``max_write_units``) and the adaptive concurrency (issue 13).

The token bucket, the AIMD controller and the rate they set are driven by a
fake clock whose sleeps advance it: no test here waits for real time or
asserts on it. The restore itself runs against moto: a budgeted restore
writes every item, and a batch refused for capacity while the table keeps
taking others is never dead-lettered.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import ValidationError

from ddb_backup.aws import AwsClients
from ddb_backup.config import RestoreConfig
from ddb_backup.events import RestoreRequest
from ddb_backup.restore import run_restore
from ddb_backup.restore.ratelimit import Aimd, RateMeter, TokenBucket, WriteControl, request_cost
from ddb_backup.restore.state import TablePhase, TableProgress
from ddb_backup.restore.writer import BatchWriter, RetryPolicy, WireRequest, generic_sender
from tests.support.backups import BUCKET, ENVIRONMENT, PREFIX, make_backup
from tests.support.data import canonical, create_table, every_type_items, scan_all, table_name
from tests.support.senders import client_error, puts, write_all

TABLE = table_name(ENVIRONMENT, "totp")
FAST = RetryPolicy(max_attempts=2, base_delay=0.001, max_delay=0.002)


class FakeClock:
    """Time that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


# -- the token bucket ---------------------------------------------------------------


async def test_bucket_never_lets_more_than_the_rate_through() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100, clock=clock, sleep=clock.sleep)
    taken = 0
    for _ in range(40):
        await bucket.acquire(25)
        taken += 25
        # It starts empty, so at every moment what was let through is at most rate x time.
        assert taken <= 100 * clock.now + 1e-9
    assert clock.now == pytest.approx(40 * 25 / 100)


async def test_bucket_settles_with_what_was_consumed() -> None:
    clock = FakeClock()
    bucket = TokenBucket(50, clock=clock, sleep=clock.sleep)
    clock.advance(1.0)  # a full bucket: 50
    await bucket.acquire(40)
    assert bucket.tokens == pytest.approx(10)
    bucket.settle(40, 4)  # the estimate was high: 36 given back
    assert bucket.tokens == pytest.approx(46)
    await bucket.acquire(40)
    bucket.settle(40, 90)  # it was low: 50 owed
    assert bucket.tokens == pytest.approx(-44)
    waited = clock.now
    await bucket.acquire(10)  # the debt is paid first
    assert clock.now - waited == pytest.approx((44 + 10) / 50)


async def test_a_batch_dearer_than_a_full_bucket_waits_for_a_full_one() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, clock=clock, sleep=clock.sleep)
    await bucket.acquire(25)
    assert clock.now == pytest.approx(1.0)
    assert bucket.tokens == pytest.approx(-15)
    await bucket.acquire(1)
    assert clock.now == pytest.approx(2.6)


async def test_an_unlimited_bucket_never_waits() -> None:
    clock = FakeClock()
    bucket = TokenBucket(None, clock=clock, sleep=clock.sleep)
    for _ in range(100):
        await bucket.acquire(10_000)
    assert clock.sleeps == []


def test_cost_is_one_unit_per_started_kilobyte() -> None:
    small = {"pk": {"S": "a"}, "sk": {"S": "b"}}
    big = {"pk": {"S": "a"}, "sk": {"S": "b"}, "blob": {"S": "x" * 1500}}
    exact = {"pk": {"S": "a" * (1024 - 2)}}  # name 2 bytes + value: exactly 1 KB
    assert request_cost({"PutRequest": {"Item": small}}) == 1
    assert request_cost({"PutRequest": {"Item": big}}) == 2
    assert request_cost({"PutRequest": {"Item": exact}}) == 1
    assert request_cost({"DeleteRequest": {"Key": big}}) == 1


# -- adaptive concurrency ------------------------------------------------------------


def test_aimd_halves_once_per_overload_and_grows_by_one_per_window() -> None:
    aimd = Aimd(32)
    assert aimd.allowed == 32
    assert aimd.refused(aimd.epoch)
    assert aimd.allowed == 16
    # Calls sent before that decrease report the same overload: no second halving.
    assert not aimd.refused(0)
    assert aimd.allowed == 16
    aimd.refused(aimd.epoch)
    assert aimd.allowed == 8
    for _ in range(8):  # one window of calls accepted: one more
        aimd.success()
    assert aimd.allowed == 9
    for _ in range(10):
        aimd.refused(aimd.epoch)
    assert aimd.allowed == 1  # never below the minimum
    for _ in range(10_000):
        aimd.success()
    assert aimd.allowed == 32  # nor above max_workers


async def test_aimd_slots_bound_calls_in_flight() -> None:
    aimd = Aimd(4)
    aimd.refused(aimd.epoch)  # 2 allowed
    release = asyncio.Event()
    peak = 0

    async def call() -> None:
        nonlocal peak
        async with aimd.slot():
            peak = max(peak, aimd.in_flight)
            await release.wait()

    tasks = [asyncio.create_task(call()) for _ in range(6)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert aimd.in_flight == 2
    release.set()
    await asyncio.gather(*tasks)
    assert peak == 2
    assert aimd.in_flight == 0


def test_a_refusal_sets_the_rate_below_what_was_measured_then_it_grows_to_the_budget() -> None:
    clock = FakeClock()
    control = WriteControl(8, 400, clock=clock, sleep=clock.sleep)
    for _ in range(20):  # 300 units/s accepted for 2 s...
        clock.advance(0.1)
        control.accepted(control.after(30, 30.0, puts_of(25), []))
    assert control.rate_limit == 400  # (no refusal yet: the budget)
    control.refused(control.aimd.epoch)  # ...then the table refuses
    assert control.rate_limit == pytest.approx(300 * WriteControl.DECREASE)
    assert control.aimd.allowed == 4
    rate = control.rate_limit
    assert rate is not None
    # Accepted calls add INCREASE x the new rate per second's worth of units.
    clock.advance(1.0)
    control.accepted(rate)
    assert control.rate_limit == pytest.approx(rate + rate * WriteControl.INCREASE)
    for _ in range(2_000):
        control.accepted(control.rate_limit or 0.0)
    assert control.rate_limit == 400  # capped at the budget


def test_without_a_budget_the_rate_is_only_limited_after_a_refusal() -> None:
    clock = FakeClock()
    control = WriteControl(8, None, clock=clock, sleep=clock.sleep)
    assert control.rate_limit is None
    control.refused(control.aimd.epoch)  # nothing measured yet: concurrency only
    assert control.rate_limit is None
    assert control.aimd.allowed == 4
    clock.advance(1.0)
    control.after(0, 50.0, puts_of(25), [])
    control.refused(control.aimd.epoch)
    assert control.rate_limit == pytest.approx(50 * WriteControl.DECREASE)


def test_meter_reports_the_recent_rate() -> None:
    clock = FakeClock()
    meter = RateMeter(window=5.0, clock=clock)
    for _ in range(10):
        clock.advance(1.0)
        meter.add(100)
    assert meter.rate() == pytest.approx(100)
    clock.advance(10.0)
    assert meter.rate() == 0
    assert meter.total == 1000


def test_consumed_below_one_unit_per_write_is_not_believed() -> None:
    control = WriteControl(4, 100)
    # An emulator answering a flat 1.0 for 25 writes: counted as 25.
    assert control.after(25, 1.0, puts_of(25), []) == 25
    assert control.after(60, 80.0, puts_of(25), []) == 80


def puts_of(n: int) -> list[WireRequest]:
    return [{"PutRequest": {"Item": {"pk": {"S": str(i)}}}} for i in range(n)]


# -- against moto --------------------------------------------------------------------


async def test_capacity_refusals_while_the_table_progresses_never_dead_letter(
    aws: AwsClients, bucket: str
) -> None:
    """One batch refused 5 times in a row (more than max_attempts=2), with other
    batches accepted between each refusal: it is written, not dead-lettered."""
    await create_table(aws.dynamodb, TABLE, pitr=False)
    items = every_type_items(250)
    real = generic_sender(aws.dynamodb)
    first = items[0]["pk"]["S"]
    turn = asyncio.Condition()
    refusals = accepted = others = 0

    async def send(table: str, requests: list[WireRequest]) -> list[WireRequest]:
        # In turns: another batch accepted, the first one refused, five times.
        nonlocal refusals, accepted, others
        async with turn:
            if requests[0]["PutRequest"]["Item"]["pk"]["S"] == first and refusals < 5:
                await turn.wait_for(lambda: accepted > refusals)
                refusals += 1
                turn.notify_all()
                raise client_error("ProvisionedThroughputExceededException")
            n, others = others, others + 1
            await turn.wait_for(lambda: n <= refusals or n >= 5)
        unprocessed = await real(table, requests)
        async with turn:
            accepted += 1
            turn.notify_all()
        return unprocessed

    control = WriteControl(4)
    control.aimd = Aimd(4, minimum=4)  # room for the others while the first batch waits
    writer = BatchWriter(TABLE, send, max_workers=4, retry=FAST, control=control)
    done = await write_all(writer, puts(items))
    assert refusals == 5
    assert writer.stats.error_codes == {"ProvisionedThroughputExceededException": 5}
    assert writer.stats.refused_calls == 5
    assert writer.stats.failed == 0
    assert sum(w for w, _ in done) == 250
    assert canonical(await scan_all(aws.dynamodb, TABLE)) == canonical(items)


async def test_refusals_with_no_progress_anywhere_still_spend_the_budget(aws: AwsClients) -> None:
    """The table takes nothing: the retry budget is spent as before (dead letters)."""

    async def never(table: str, requests: list[WireRequest]) -> list[WireRequest]:
        raise client_error("ThrottlingException")

    writer = BatchWriter(TABLE, never, max_workers=2, retry=FAST)
    done = await write_all(writer, puts(every_type_items(50)))
    assert done == [(0, 25), (0, 25)]
    assert writer.stats.calls == 2 * FAST.max_attempts


async def test_restore_with_a_budget_writes_every_item(aws: AwsClients, bucket: str) -> None:
    source = every_type_items(150)
    await make_backup(aws.s3, BUCKET, PREFIX, "2026-11-27", {TABLE: source})
    await create_table(aws.dynamodb, TABLE)
    config = RestoreConfig(bucket=BUCKET, environment=ENVIRONMENT, prefix=PREFIX)
    seen: list[TableProgress] = []
    request = RestoreRequest(backup_date="2026-11-27", max_write_units=150, max_workers=8)

    # The reports asserted on are the ones each phase makes, not timed ticks
    # (a tick, if the run is slow enough for one, reports the same fields).
    result = await run_restore(config, request, aws, on_progress=seen.append)

    assert result.status_code == 200, result.body
    (r,) = result.body["restore_results"]
    assert r["items_written"] == r["items_expected"] == 150
    assert r["items_failed"] == 0
    assert result.body["configuration"]["max_write_units"] == 150
    assert canonical(await scan_all(aws.dynamodb, TABLE)) == canonical(source)
    writing = [p for p in seen if p.phase in {TablePhase.WRITING, TablePhase.DONE}]
    assert writing[0].phase is TablePhase.WRITING
    assert all(p.max_write_units == 150 for p in writing)
    # The table's last report: every item written, at the rate the writes went.
    (done,) = [p for p in seen if p.phase is TablePhase.DONE]
    assert (done.items_written, done.items_failed, done.files_done) == (150, 0, done.files_total)
    assert (done.write_units_per_second or 0) > 0


@pytest.mark.parametrize("bad", [0, -1, 10**7, "100", 1.5])
def test_max_write_units_validated(bad: Any) -> None:
    with pytest.raises(ValidationError, match="max_write_units"):
        RestoreRequest(max_write_units=bad)


def test_a_resume_may_change_the_budget() -> None:
    request = RestoreRequest(resume_token="abc", max_write_units=50)
    assert request.max_write_units == 50


def test_the_rate_is_cut_at_most_once_a_second() -> None:
    """A table refusing part of every call (a hot partition) must not drive the rate to nothing."""
    clock = FakeClock()
    control = WriteControl(64, 1000, clock=clock, sleep=clock.sleep)
    for _ in range(4):  # 1000 units/s for a second (quarters: exact in binary)
        clock.advance(0.25)
        control.after(250, 250.0, puts_of(25), [])
    control.refused(control.aimd.epoch)
    cut = control.rate_limit
    assert cut == pytest.approx(1000 * WriteControl.DECREASE)
    clock.advance(0.5)
    control.refused(control.aimd.epoch)  # a new overload, but within the second
    assert control.rate_limit == cut
    assert control.aimd.decreases == 2  # concurrency still answers each overload


def test_refusals_that_do_not_come_from_the_rate_do_not_drive_it_to_nothing() -> None:
    clock = FakeClock()
    control = WriteControl(8, None, clock=clock, sleep=clock.sleep)
    control.refused(control.aimd.epoch)  # at once: too soon to tell a rate from a burst
    assert control.rate_limit is None
    for _ in range(4):
        clock.advance(0.25)
        control.after(0, 250.0, puts_of(25), [])
    for _ in range(30):  # refused every second whatever the rate (a hot key)
        control.refused(control.aimd.epoch)
        clock.advance(1.0)
        control.after(0, control.rate_limit or 0.0, puts_of(25), [])
    assert control.rate_limit == pytest.approx(1000 * WriteControl.FLOOR)
