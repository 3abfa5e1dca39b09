"""The chain of incremental windows: its append-only record in S3, contiguity,
breaks, window planning and restore-point resolution (pure, fixed times)."""

from __future__ import annotations

import datetime as dt
import itertools
import re

import pytest

from ddb_backup.aws import AwsClients
from ddb_backup.chain import (
    BreakReason,
    Chain,
    ChainBreak,
    ChainStart,
    ChainSuperseded,
    ChainWindow,
    FullBackupPoint,
    PlannedWindow,
    append_window,
    chain_id_for,
    check_contiguity,
    detect_break,
    floor_boundary,
    incremental_client_token,
    list_chains,
    load_chain,
    newest_chain,
    plan_next_window,
    record_break,
    record_superseded,
    resolve_restore_point,
    start_chain,
)
from ddb_backup.errors import BackupNotFoundError, ChainError, ConfigError, DataFileMissingError
from ddb_backup.incremental import verify_incremental_folder
from ddb_backup.keys import chain_prefix
from ddb_backup.storage import S3Storage
from tests.support.incremental import TABLE_ID, write_incremental_export

TABLE = "pitr-src"
ARN = f"arn:aws:dynamodb:us-east-1:123456789012:table/{TABLE}"
PREFIX = "native-exports"
NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)
FULL = dt.datetime(2026, 11, 28, 3, 0, 7, tzinfo=dt.UTC)  # a full backup's ExportTime
Q = dt.timedelta(minutes=15)


def _at(hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 11, 28, hour, minute, tzinfo=dt.UTC)


def _start(base: dt.datetime = FULL, table_id: str = TABLE_ID) -> ChainStart:
    return ChainStart(
        table=TABLE,
        chain_id=chain_id_for(base),
        table_arn=ARN,
        table_id=table_id,
        base_backup_date=base.date(),
        base_export_time=base,
        started_at=NOW,
    )


def _window(start: ChainStart, a: dt.datetime, b: dt.datetime, **kw: object) -> ChainWindow:
    fields: dict[str, object] = {
        "table": TABLE,
        "chain_id": start.chain_id,
        "export_from_time": a,
        "export_to_time": b,
        "export_arn": f"{ARN}/export/{a:%H%M}",
        "folder": f"x/AWSDynamoDB/{a:%H%M}",
        "table_arn": ARN,
        "table_id": TABLE_ID,
        "files": [],
        "records": 0,
        "puts": 0,
        "deletes": 0,
        "verified_at": NOW,
        **kw,
    }
    return ChainWindow.model_validate(fields)


def _chain(start: ChainStart, bounds: list[dt.datetime]) -> Chain:
    return Chain(start, [_window(start, a, b) for a, b in itertools.pairwise(bounds)])


async def test_chain_record_is_append_only(aws: AwsClients, bucket: str) -> None:
    storage = S3Storage(aws.s3, bucket)
    start = _start()
    await start_chain(storage, PREFIX, start)
    await start_chain(storage, PREFIX, start.model_copy(update={"started_at": NOW + Q}))  # retry
    chain = await load_chain(storage, PREFIX, TABLE, start.chain_id)
    w1 = _window(start, FULL, _at(3, 30), puts=2)
    chain = await append_window(storage, PREFIX, chain, w1)
    chain = await append_window(storage, PREFIX, chain, _window(start, _at(3, 30), _at(3, 45)))
    # A racing invocation (stale view of the chain) appends the same window again:
    # accepted, nothing rewritten.
    again = Chain(chain.start, [])
    await append_window(storage, PREFIX, again, w1.model_copy(update={"verified_at": NOW + Q}))
    # Another content under the same window key is refused, and the record is unchanged.
    with pytest.raises(ChainError, match="already exists"):
        await append_window(storage, PREFIX, again, w1.model_copy(update={"puts": 7}))
    # A gap or an overlap is refused before anything is written.
    with pytest.raises(ChainError, match="gap"):
        await append_window(storage, PREFIX, chain, _window(start, _at(4), _at(4, 15)))
    with pytest.raises(ChainError, match="overlap"):
        await append_window(storage, PREFIX, chain, _window(start, _at(3, 40), _at(4)))

    loaded = await load_chain(storage, PREFIX, TABLE, start.chain_id)
    assert loaded.windows == chain.windows
    assert loaded.windows[0].puts == 2
    assert loaded.head == _at(3, 45)
    assert loaded.problems == []
    keys = [o.key async for o in storage.list_objects(chain_prefix(PREFIX, TABLE))]
    assert len(keys) == 3  # chain.json and two windows

    brk = ChainBreak(
        table=TABLE,
        chain_id=start.chain_id,
        reason=BreakReason.PITR_RESET,
        detail="d",
        head=loaded.head,
        detected_at=NOW,
    )
    assert await record_break(storage, PREFIX, brk) is True
    assert await record_break(storage, PREFIX, brk.model_copy(update={"detail": "e"})) is False
    broken = await load_chain(storage, PREFIX, TABLE, start.chain_id)
    assert broken.broken == brk  # the first break recorded stays
    with pytest.raises(ChainError, match="broken"):
        await append_window(storage, PREFIX, broken, _window(start, _at(3, 45), _at(4)))

    second = _start(_at(5))
    await start_chain(storage, PREFIX, second)
    assert [c.chain_id for c in await list_chains(storage, PREFIX, TABLE)] == [
        start.chain_id,
        second.chain_id,
    ]


async def test_window_from_a_verified_export_joins_the_chain(aws: AwsClients, bucket: str) -> None:
    storage = S3Storage(aws.s3, bucket)
    start = _start()
    export = await write_incremental_export(
        aws.s3, bucket, "p/exports", [], export_from=FULL, export_to=_at(3, 30), table_arn=ARN
    )
    verified = await verify_incremental_folder(
        storage, export["folder"], key_types={"pk": "S"}, table_arn=ARN, table_id=TABLE_ID
    )
    window = ChainWindow.from_verified(TABLE, start.chain_id, verified, verified_at=NOW)
    assert window.export_arn == export["export_arn"]
    assert [f.key for f in window.files] == export["data_keys"]
    await start_chain(storage, PREFIX, start)
    chain = await append_window(storage, PREFIX, Chain(start, []), window)
    assert chain.head == _at(3, 30)


def test_contiguity_problems_are_named() -> None:
    start = _start()
    ok = [_window(start, FULL, _at(3, 30)), _window(start, _at(3, 30), _at(3, 45))]
    assert check_contiguity(start, ok) == []
    gap = check_contiguity(start, [ok[0], _window(start, _at(3, 45), _at(4))])
    assert [p.reason for p in gap] == [BreakReason.NOT_CONTIGUOUS]
    assert "[2026-11-28T03:30:00+00:00, 2026-11-28T03:45:00+00:00)" in gap[0].detail
    overlap = check_contiguity(start, [ok[0], _window(start, _at(3, 15), _at(3, 45))])
    assert "overlap" in overlap[0].detail
    late_start = check_contiguity(start, [_window(start, _at(3, 15), _at(3, 30))])
    assert "gap" in late_start[0].detail
    other = check_contiguity(start, [ok[0], _window(start, _at(3, 30), _at(3, 45), table_id="new")])
    assert [p.reason for p in other] == [BreakReason.TABLE_RECREATED]
    # Windows past the first problem are not usable.
    chain = Chain(start, [ok[0], _window(start, _at(3, 45), _at(4))], problems=gap)
    assert chain.usable == [ok[0]]
    assert chain.head == _at(3, 30)


def test_break_detection() -> None:
    chain = _chain(_start(), [FULL, _at(3, 30), _at(4)])

    def reason(
        earliest: dt.datetime | None, *, table_id: str = TABLE_ID, pitr: bool = True
    ) -> BreakReason | None:
        found = detect_break(
            chain, table_arn=ARN, table_id=table_id, pitr_enabled=pitr, earliest_restorable=earliest
        )
        return found.reason if found else None

    assert reason(_at(1)) is None
    assert reason(_at(4)) is None  # restorable from exactly the head: nothing lost
    assert reason(_at(4, 1)) is BreakReason.PITR_RESET  # PITR switched off and on
    assert reason(None, pitr=False) is BreakReason.PITR_DISABLED
    assert reason(_at(1), table_id="other") is BreakReason.TABLE_RECREATED


def test_window_planning() -> None:
    # A new chain from an unaligned full backup: the first boundary 15 minutes on.
    assert plan_next_window(FULL, safe_until=_at(3, 29), interval_minutes=15) is None
    first = plan_next_window(FULL, safe_until=_at(3, 44), interval_minutes=15)
    assert first == PlannedWindow(FULL, _at(3, 30))
    # Up to date: the last boundary safely in the past; nothing while not due.
    assert plan_next_window(
        _at(3, 30), safe_until=_at(3, 59), interval_minutes=15
    ) == PlannedWindow(_at(3, 30), _at(3, 45))
    assert plan_next_window(_at(3, 45), safe_until=_at(3, 59), interval_minutes=15) is None
    assert plan_next_window(_at(3), safe_until=_at(4, 5), interval_minutes=60) == PlannedWindow(
        _at(3), _at(4)
    )
    # A chain three days behind catches up 24 hours at a time, in order.
    head, windows = _at(3), []
    safe = _at(3) + dt.timedelta(days=3, minutes=20)
    while (w := plan_next_window(head, safe_until=safe, interval_minutes=15)) is not None:
        windows.append(w)
        head = w.export_to
    assert [w.export_to - w.export_from for w in windows] == [dt.timedelta(hours=24)] * 3 + [Q]
    with pytest.raises(ConfigError):
        floor_boundary(NOW, 10)
    with pytest.raises(ConfigError):
        floor_boundary(NOW, 1441)
    assert floor_boundary(_at(13, 59), 1440) == _at(0)


def test_client_token_is_per_table_and_window() -> None:
    w = PlannedWindow(_at(3), _at(3, 15))
    token = incremental_client_token("bucket", PREFIX, TABLE, w)
    assert token == incremental_client_token("bucket", "native-exports/", TABLE, w)
    assert re.fullmatch(r"[0-9a-f]{64}", token)
    others = {
        incremental_client_token("bucket", PREFIX, "other-table", w),
        incremental_client_token("bucket", PREFIX, TABLE, PlannedWindow(_at(3), _at(3, 30))),
    }
    assert token not in others
    assert len(others) == 2


def test_restore_point_resolution() -> None:
    day1 = FullBackupPoint(FULL, FULL.date())
    day2_time = FULL + dt.timedelta(days=1)  # the next daily full, inside the chain
    day2 = FullBackupPoint(day2_time, day2_time.date())
    day2_03 = day2_time.replace(second=0)
    start = _start()
    sound = _chain(
        start, [FULL, _at(3, 30), _at(3, 45), _at(4), day2_03, day2_03 + Q, day2_03 + 2 * Q]
    )

    # Between boundaries: the last boundary at or before the time.
    point = resolve_restore_point([day1], [sound], _at(3, 50))
    assert point.full == day1
    assert point.chain_id == start.chain_id
    assert [w.export_to_time for w in point.windows] == [_at(3, 30), _at(3, 45)]
    assert point.restored_to == _at(3, 45)
    assert point.behind_asked == dt.timedelta(minutes=5)
    # Exactly at a boundary.
    assert resolve_restore_point([day1], [sound], _at(4)).behind_asked == dt.timedelta(0)
    # Before the first boundary: the full backup alone.
    alone = resolve_restore_point([day1], [sound], _at(3, 20))
    assert (alone.windows, alone.restored_to, alone.chain_id) == ([], FULL, None)
    # "latest": the end of the newest window.
    latest = resolve_restore_point([day1, day2], [sound], "latest")
    assert latest.restored_to == day2_03 + 2 * Q
    assert latest.full == day2
    assert latest.behind_asked == dt.timedelta(0)

    # A chain crossing the next daily full: a restore past it starts from that
    # full, with the window holding its ExportTime first.
    crossing = resolve_restore_point([day1, day2], [sound], day2_time + Q)
    assert crossing.full == day2
    assert [w.export_from_time for w in crossing.windows] == [day2_03]
    assert crossing.restored_to == day2_03 + Q
    # Just after the daily full, before its window ends: that full alone.
    assert resolve_restore_point([day1, day2], [sound], day2_03 + Q / 2).restored_to == day2_time

    # A gap is never crossed: windows after it are not used.
    gappy = [w for w in sound.windows if w.export_from_time != _at(4)]
    broken = Chain(start, gappy, problems=check_contiguity(start, gappy))
    assert resolve_restore_point([day1], [broken], day2_time + Q).restored_to == _at(4)
    with pytest.raises(BackupNotFoundError, match="no verified full backup"):
        resolve_restore_point([day1, day2], [sound], FULL - dt.timedelta(seconds=1))


def test_restore_point_resolution_across_a_daily_roll() -> None:
    """Day 1's chain runs until it passes day 2's full backup, then day 2's chain
    starts from it: each time resolves to the newest full backup at or before it
    and whichever chain reaches closest to it."""
    day2_time = FULL + dt.timedelta(days=1)
    day1, day2 = FullBackupPoint(FULL, FULL.date()), FullBackupPoint(day2_time, day2_time.date())
    d2 = day2_time.replace(second=0)  # day 2, 03:00
    old_start, new_start = _start(), _start(day2_time)
    old = _chain(old_start, [FULL, _at(3, 30), d2 - Q, d2 + Q])
    new = _chain(new_start, [day2_time, d2 + 2 * Q, d2 + 3 * Q])
    fulls, both = [day1, day2], [old, new]

    def resolved(at: dt.datetime) -> tuple[FullBackupPoint, str | None, dt.datetime]:
        p = resolve_restore_point(fulls, both, at)
        return p.full, p.chain_id, p.restored_to

    assert resolved(_at(3, 40)) == (day1, old.chain_id, _at(3, 30))
    assert resolved(d2 - Q / 3) == (day1, old.chain_id, d2 - Q)
    assert resolved(day2_time) == (day2, None, day2_time)
    # The new chain's first window has not ended: the old chain's window holding
    # the new full backup's export time, applied on the new full backup.
    near = resolve_restore_point(fulls, both, d2 + Q + Q / 3)
    assert (near.full, near.chain_id, near.restored_to) == (day2, old.chain_id, d2 + Q)
    assert [w.export_from_time for w in near.windows] == [d2 - Q]
    assert resolved(d2 + 3 * Q) == (day2, new.chain_id, d2 + 3 * Q)
    assert resolve_restore_point(fulls, both, "latest").chain_id == new.chain_id
    # Day 1's start and first windows expired (a gap at the chain's start): its
    # window holding day 2's export time still carries day 2's full backup.
    tail = old.windows[-1:]
    expired = Chain(old_start, tail, problems=check_contiguity(old_start, tail))
    assert expired.usable == []
    near = resolve_restore_point([day2], [expired, new], d2 + Q + Q / 3)
    assert (near.chain_id, near.restored_to) == (old.chain_id, d2 + Q)
    # A problem after that window still cuts it.
    other = _window(old_start, d2 + Q, d2 + 2 * Q, table_id="another")
    cut = [*tail, other]
    mixed = Chain(old_start, cut, problems=check_contiguity(old_start, cut))
    assert resolve_restore_point([day2], [mixed], d2 + 2 * Q).restored_to == d2 + Q


async def test_superseded_chain_record(aws: AwsClients, bucket: str) -> None:
    storage = S3Storage(aws.s3, bucket)
    old, new = _start(), _start(_at(5))
    for s in (old, new):
        await start_chain(storage, PREFIX, s)
    chain = await append_window(
        storage,
        PREFIX,
        await load_chain(storage, PREFIX, TABLE, old.chain_id),
        _window(old, FULL, _at(5, 15)),
    )
    record = ChainSuperseded(
        table=TABLE,
        chain_id=old.chain_id,
        superseded_by=new.chain_id,
        new_base_backup_date=new.base_backup_date,
        new_base_export_time=new.base_export_time,
        head=chain.head,
        recorded_at=NOW,
    )
    assert await record_superseded(storage, PREFIX, record) is True
    retry = record.model_copy(update={"recorded_at": NOW + Q})
    assert await record_superseded(storage, PREFIX, retry) is False  # a retry: nothing new
    with pytest.raises(ChainError, match="other content"):
        await record_superseded(storage, PREFIX, record.model_copy(update={"superseded_by": "x"}))
    loaded = await load_chain(storage, PREFIX, TABLE, old.chain_id)
    assert (loaded.superseded, loaded.broken) == (record, None)
    with pytest.raises(ChainError, match="superseded"):
        await append_window(storage, PREFIX, loaded, _window(old, _at(5, 15), _at(5, 30)))
    assert (await newest_chain(storage, PREFIX, TABLE)) == await load_chain(
        storage, PREFIX, TABLE, new.chain_id
    )
    # The old chain's start expired (its windows linger): skipped, not an error.
    old_start_key = f"{chain_prefix(PREFIX, TABLE, old.chain_id)}/chain.json"
    await aws.s3.delete_object(Bucket=bucket, Key=old_start_key)
    assert [c.chain_id for c in await list_chains(storage, PREFIX, TABLE)] == [new.chain_id]
    assert await newest_chain(storage, PREFIX, TABLE, before=new.chain_id) is None
    with pytest.raises(DataFileMissingError):
        await load_chain(storage, PREFIX, TABLE, old.chain_id)


def test_incremental_export_request_matches_the_api() -> None:
    """The request passes botocore's own validation of ExportTableToPointInTime,
    and DescribeExport's answer keeps the times AWS reports."""
    from botocore.session import get_session
    from botocore.validate import validate_parameters

    from ddb_backup.backup.window_export import (
        IncrementalExportDescription,
        IncrementalExportRequest,
    )

    window = PlannedWindow(FULL, _at(3, 30))
    request = IncrementalExportRequest(
        table=TABLE,
        table_arn=ARN,
        bucket="bucket",
        s3_prefix=f"{PREFIX}/incremental/{TABLE}/exports/",
        export_time=window.export_to,
        client_token=incremental_client_token("bucket", PREFIX, TABLE, window),
        export_from=window.export_from,
        export_to=window.export_to,
    )
    params = request.params()
    model = get_session().get_service_model("dynamodb")
    shape = model.operation_model("ExportTableToPointInTime").input_shape
    assert shape is not None
    validate_parameters(params, shape)
    assert "ExportTime" not in params
    assert params["ExportType"] == "INCREMENTAL_EXPORT"
    assert params["IncrementalExportSpecification"] == {
        "ExportFromTime": FULL,
        "ExportToTime": _at(3, 30),
        "ExportViewType": "NEW_AND_OLD_IMAGES",
    }
    assert params["S3Prefix"] == f"{PREFIX}/incremental/{TABLE}/exports"
    described = IncrementalExportDescription.model_validate(
        {
            "ExportArn": f"{ARN}/export/01",
            "ExportStatus": "COMPLETED",
            "TableId": TABLE_ID,
            "ExportType": "INCREMENTAL_EXPORT",
            "IncrementalExportSpecification": {
                "ExportFromTime": FULL,
                "ExportToTime": _at(3, 30),
                "ExportViewType": "NEW_AND_OLD_IMAGES",
            },
        }
    )
    assert described.incremental is not None
    assert described.incremental.export_to_time == _at(3, 30)
    assert described.table_id == TABLE_ID
