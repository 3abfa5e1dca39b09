"""Point-in-time recovery, restore side, against moto: a table changed in several
windows (inserts, updates dropping attributes, deletes, a key deleted and
re-created, binary values) restored to each boundary equals, item for item, a
snapshot taken at that boundary; refusals name what is missing and write
nothing; a cut window resumes to the same result with exact counts; failed
deletes are dead-lettered in a form that restores; ``restore-export
--incremental`` and ``timeline`` from the command line.
"""

from __future__ import annotations

import datetime as dt
import gzip
import itertools
import re
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from ddb_backup.aws import AwsClients
from ddb_backup.chain import (
    BreakReason,
    ChainBreak,
    ChainStart,
    ChainWindow,
    chain_id_for,
    record_break,
    start_chain,
    time_stamp,
)
from ddb_backup.errors import (
    BackupNotFoundError,
    ChainError,
    CheckpointError,
    ManifestError,
    VerificationError,
)
from ddb_backup.events import RestoreRequest
from ddb_backup.incremental import micros, verify_incremental_folder
from ddb_backup.keys import chain_prefix
from ddb_backup.point_in_time import (
    ChangeDeadLetterSink,
    PointInTimePlan,
    WindowCounts,
    WindowProgress,
    apply_window,
    plan_point_in_time,
    restore_export_chain,
    verify_point_in_time,
)
from ddb_backup.restore import restore_export
from ddb_backup.restore.writer import (
    BatchWriter,
    RetryPolicy,
    generic_sender,
)
from ddb_backup.storage import S3Storage
from tests.support.backups import BUCKET, PREFIX, make_backup
from tests.support.cli_data import on_aws, run_cli
from tests.support.data import canonical, create_table, every_type_items, put_items, scan_all
from tests.support.incremental import TABLE_ID, change_line, write_incremental_export
from tests.support.pitr import (
    ARN,
    DAY1,
    DAY2,
    KEY_TYPES,
    NOW,
    SOURCE,
    Scenario,
)
from tests.support.pitr import first_data_file as _first_data_file
from tests.support.pitr import keys_of as _keys
from tests.support.pitr import make_changes as _changes
from tests.support.pitr import record_chain as _record_chain
from tests.support.pitr import refusing as _refusing
from tests.support.pitr import rewrite as _rewrite
from tests.support.pitr import verified as _verified


async def _restore(
    aws: AwsClients, storage: S3Storage, plan: PointInTimePlan, target: str
) -> list[WindowCounts]:
    """Verify every window, restore the full backup with the existing restore,
    then apply the windows in order."""
    verified = await verify_point_in_time(storage, plan, key_types=KEY_TYPES)
    await create_table(aws.dynamodb, target, pitr=False)
    assert plan.backup.export_folder is not None
    full = await restore_export(storage, plan.backup.export_folder, target, aws)
    assert full.status_code == 200, full.body
    counts = []
    for window in verified:
        async with BatchWriter(target, generic_sender(aws.dynamodb)) as writer:
            counts.append(await apply_window(storage, window, writer, key_types=KEY_TYPES))
    return counts


async def test_restore_to_each_boundary_equals_the_snapshot(aws: AwsClients, bucket: str) -> None:
    storage = S3Storage(aws.s3, bucket)
    sc = await _changes(aws, bucket)
    await _record_chain(storage, sc)
    for i, at in enumerate(sc.bounds):
        plan = await plan_point_in_time(storage, PREFIX, SOURCE, at)
        assert (plan.restored_to, len(plan.windows)) == (at, i)
        assert plan.point.full.backup_date == DAY1
        counts = await _restore(aws, storage, plan, f"pitr-target-{i}")
        assert canonical(await scan_all(aws.dynamodb, f"pitr-target-{i}")) == canonical(
            sc.snapshots[i]
        )
        assert [(c.puts, c.deletes, c.failed, c.done) for c in counts] == [
            (w.puts, w.deletes, 0, True) for w in plan.windows
        ]
    assert [(w.puts, w.deletes) for w in plan.windows] == [(3, 1), (3, 0), (1, 1)]
    # Between boundaries: the last boundary before, and how far behind it is.
    half = sc.bounds[2] + (sc.bounds[3] - sc.bounds[2]) / 2
    answer = (await plan_point_in_time(storage, PREFIX, SOURCE, half)).answer()
    assert answer.restored_to == sc.bounds[2]
    assert answer.behind_asked_seconds == (half - sc.bounds[2]).total_seconds() > 0
    assert (answer.puts, answer.deletes) == (6, 1)
    latest = await plan_point_in_time(storage, PREFIX, SOURCE, "latest")
    assert (latest.restored_to, latest.answer().behind_asked_seconds) == (sc.bounds[3], 0)


async def test_chain_crossing_a_daily_full_backup_uses_the_newer_one(
    aws: AwsClients, bucket: str
) -> None:
    storage = S3Storage(aws.s3, bucket)
    sc = await _changes(aws, bucket)
    await _record_chain(storage, sc)
    await make_backup(
        aws.s3, bucket, PREFIX, DAY2, {SOURCE: sc.snapshots[2]}, export_time=sc.bounds[2]
    )
    plan = await plan_point_in_time(storage, PREFIX, SOURCE, sc.bounds[3])
    assert plan.point.full.backup_date == DAY2
    assert [w.export_from_time for w in plan.windows] == [sc.bounds[2]]
    await _restore(aws, storage, plan, "pitr-target")
    assert canonical(await scan_all(aws.dynamodb, "pitr-target")) == canonical(sc.snapshots[3])
    # Before the newer full backup, the older one and its windows.
    earlier = await plan_point_in_time(storage, PREFIX, SOURCE, sc.bounds[1])
    assert (earlier.point.full.backup_date, len(earlier.windows)) == (DAY1, 1)


async def test_damaged_or_missing_window_refuses_naming_it(aws: AwsClients, bucket: str) -> None:
    storage = S3Storage(aws.s3, bucket)
    sc = await _changes(aws, bucket)
    await _record_chain(storage, sc)
    damaged = await _first_data_file(aws, bucket, sc.windows[1])
    await _rewrite(aws, bucket, damaged, gzip.compress(b'{"Metadata":{}}\n'))
    plan = await plan_point_in_time(storage, PREFIX, SOURCE, sc.bounds[3])
    with pytest.raises(VerificationError, match=damaged):
        await verify_point_in_time(storage, plan, key_types=KEY_TYPES)
    await aws.s3.delete_object(Bucket=bucket, Key=f"{sc.windows[2]}/manifest-summary.json")
    plan = await plan_point_in_time(storage, PREFIX, SOURCE, sc.bounds[3])
    with pytest.raises(ManifestError, match=f"{sc.windows[2]}/manifest-summary.json"):
        await verify_point_in_time(
            storage, plan, key_types=KEY_TYPES, skip=frozenset(sc.windows[:2])
        )
    # The windows before the damage still restore.
    early = await plan_point_in_time(storage, PREFIX, SOURCE, sc.bounds[1])
    assert len(await verify_point_in_time(storage, early, key_types=KEY_TYPES)) == 1


async def _put_window(
    storage: S3Storage, start: ChainStart, a: dt.datetime, b: dt.datetime
) -> None:
    """A window in the chain record written directly (as a gap can only come about
    from a record written by hand or by an older version)."""
    window = ChainWindow(
        table=SOURCE,
        chain_id=start.chain_id,
        export_from_time=a,
        export_to_time=b,
        export_arn=f"{ARN}/export/{time_stamp(a)}",
        folder=f"x/AWSDynamoDB/{time_stamp(a)}",
        table_arn=ARN,
        table_id=TABLE_ID,
        files=[],
        records=0,
        puts=0,
        deletes=0,
        verified_at=NOW,
    )
    stamps = f"{time_stamp(a)}_{time_stamp(b)}"
    key = f"{chain_prefix(PREFIX, SOURCE, start.chain_id)}/windows/{stamps}.json"
    await storage.put_bytes(key, window.model_dump_json().encode())


async def test_plan_names_what_is_missing(aws: AwsClients, bucket: str) -> None:
    storage = S3Storage(aws.s3, bucket)
    full = dt.datetime(2026, 11, 27, 3, 0, 7, tzinfo=dt.UTC)
    q = dt.timedelta(minutes=15)
    b = [dt.datetime(2026, 11, 27, 3, 0, tzinfo=dt.UTC) + i * q for i in range(8)]
    await make_backup(aws.s3, bucket, PREFIX, DAY1, {SOURCE: every_type_items(2)}, export_time=full)
    start = ChainStart(
        table=SOURCE,
        chain_id=chain_id_for(full),
        table_arn=ARN,
        table_id=TABLE_ID,
        base_export_time=full,
        started_at=NOW,
    )
    await start_chain(storage, PREFIX, start)
    for a, z in [(full, b[1]), (b[1], b[2]), (b[3], b[4])]:  # nothing covers [b2, b3)
        await _put_window(storage, start, a, z)

    with pytest.raises(BackupNotFoundError, match=f"of {SOURCE} at or before"):
        await plan_point_in_time(storage, PREFIX, SOURCE, full - 5 * q)
    gap = f"gap: nothing covers [{b[2].isoformat()}, {b[3].isoformat()})"
    with pytest.raises(ChainError, match=re.escape(gap)):
        await plan_point_in_time(storage, PREFIX, SOURCE, b[4])
    plan = await plan_point_in_time(storage, PREFIX, SOURCE, b[2] + q / 2)
    assert (plan.restored_to, len(plan.windows)) == (b[2], 2)

    brk = ChainBreak(
        table=SOURCE,
        chain_id=start.chain_id,
        reason=BreakReason.PITR_RESET,
        detail="PITR restorable only from later",
        head=b[2],
        detected_at=NOW,
    )
    await record_break(storage, PREFIX, brk)
    with pytest.raises(ChainError, match="pitr_reset: PITR restorable only from later"):
        await plan_point_in_time(storage, PREFIX, SOURCE, b[2] + q / 2)


def _line(item: dict[str, Any], ts: int, *, old: bool = False, new: bool = True) -> bytes:
    return change_line(
        _keys(item), ts_micros=ts, old=item if old else None, new=item if new else None
    )


T0 = dt.datetime(2026, 11, 28, 3, 0, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(minutes=15)


async def test_cut_window_resumes_to_the_same_result_with_exact_counts(
    aws: AwsClients, bucket: str
) -> None:
    """61 change records (inserts, deletes, updates, a key changed twice) in
    segments of 25; the first round stops after one segment."""
    storage = S3Storage(aws.s3, bucket)
    items = every_type_items(60)
    await create_table(aws.dynamodb, "pitr-resume", pitr=False)
    await put_items(aws.dynamodb, "pitr-resume", items[:30])
    ts = micros(T0)
    changed = [{**it, "label": {"S": "changed"}} for it in items[25:30]]
    lines = [_line(it, ts + i) for i, it in enumerate(items[30:])]
    lines += [_line(it, ts + 100 + i, old=True, new=False) for i, it in enumerate(items[:25])]
    lines += [
        change_line(_keys(it), ts_micros=ts + 200 + i, old=it, new=it)
        for i, it in enumerate(changed)
    ]
    lines.insert(3, _line(items[25], ts + 150))  # superseded by the later update
    export = await write_incremental_export(
        aws.s3, bucket, "incoming", lines, export_from=T0, export_to=T1, table_arn=ARN, files=1
    )
    asked = itertools.count()

    def stop_after_one_segment() -> bool:
        return next(asked) >= 1

    window = await _verified(storage, export["folder"])
    progress = WindowProgress.of(window)
    async with BatchWriter("pitr-resume", generic_sender(aws.dynamodb)) as writer:
        cut = await apply_window(
            storage,
            window,
            writer,
            key_types=KEY_TYPES,
            progress=progress,
            should_stop=stop_after_one_segment,
        )
    # One segment: 25 inserts and the superseded record among them.
    assert cut == progress.counts == WindowCounts(puts=25, deletes=0, failed=0, done=False)
    assert [f.lines_done for f in progress.files] == [26, 0]

    # The next round: the checkpoint read back, the window verified again.
    mark = WindowProgress.model_validate_json(progress.model_dump_json())
    again = await _verified(storage, export["folder"])
    async with BatchWriter("pitr-resume", generic_sender(aws.dynamodb)) as writer:
        done = await apply_window(storage, again, writer, key_types=KEY_TYPES, progress=mark)
    assert done == WindowCounts(puts=35, deletes=25, failed=0, done=True)
    assert (again.puts, again.deletes) == (35, 25)
    expected = changed + items[30:]
    assert canonical(await scan_all(aws.dynamodb, "pitr-resume")) == canonical(expected)

    other = await write_incremental_export(
        aws.s3, bucket, "incoming", lines[:5], export_from=T0, export_to=T1, table_arn=ARN
    )
    async with BatchWriter("pitr-resume", generic_sender(aws.dynamodb)) as writer:
        with pytest.raises(CheckpointError, match=export["folder"]):
            await apply_window(
                storage,
                await _verified(storage, other["folder"]),
                writer,
                key_types=KEY_TYPES,
                progress=mark,
            )


async def test_failed_deletes_and_puts_are_dead_lettered_in_a_form_that_restores(
    aws: AwsClients, bucket: str
) -> None:
    storage = S3Storage(aws.s3, bucket)
    items = every_type_items(8)
    await create_table(aws.dynamodb, "pitr-dead", pitr=False)
    await put_items(aws.dynamodb, "pitr-dead", items[:4])
    ts = micros(T0)
    lines = [_line(it, ts + i, old=True, new=False) for i, it in enumerate(items[:4])]
    lines += [_line(it, ts + 10 + i) for i, it in enumerate(items[4:])]
    export = await write_incremental_export(
        aws.s3, bucket, "incoming", lines, export_from=T0, export_to=T1, table_arn=ARN
    )
    window = await _verified(storage, export["folder"])
    poison = {items[0]["pk"]["S"], items[1]["pk"]["S"], items[4]["pk"]["S"]}
    sink = ChangeDeadLetterSink(storage, "dl/pitr-dead", window.summary, key_names=("pk", "sk"))
    sender = _refusing(generic_sender(aws.dynamodb), poison)
    retry = RetryPolicy(max_attempts=2, base_delay=0, max_delay=0)
    async with BatchWriter("pitr-dead", sender, retry=retry, dead_letters=sink) as writer:
        counts = await apply_window(storage, window, writer, key_types=KEY_TYPES)
    await sink.flush()
    assert counts == WindowCounts(puts=3, deletes=2, failed=3, done=True)
    assert (sink.failed_puts, sink.failed_deletes) == (1, 2)

    dead = await verify_incremental_folder(storage, sink.export_folder, key_types=KEY_TYPES)
    assert (dead.records, dead.puts, dead.deletes) == (3, 1, 2)
    result = await restore_export_chain(storage, sink.export_folder, "pitr-dead", aws)
    assert result.status_code == 200, result.body
    answer = result.body["point_in_time"]
    assert (answer["puts"], answer["deletes"], answer["failed"]) == (1, 2, 0)
    assert canonical(await scan_all(aws.dynamodb, "pitr-dead")) == canonical(items[4:])


# -- the command line ---------------------------------------------------------------------


@pytest.fixture
def cli_env(moto: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DDB_BACKUP_TERMINAL", raising=False)
    monkeypatch.delenv("S3_EXPORTS_PREFIX", raising=False)
    monkeypatch.setenv("BACKUP_BUCKET", BUCKET)
    monkeypatch.setenv("ENVIRONMENT", "test")


def _scenario(*, chain: bool = False) -> Scenario:
    async def go(aws: AwsClients) -> Scenario:
        await aws.s3.create_bucket(Bucket=BUCKET)
        sc = await _changes(aws, BUCKET)
        if chain:
            await _record_chain(S3Storage(aws.s3, BUCKET), sc)
        return sc

    return on_aws(go)


def _table(name: str) -> list[bytes]:
    async def go(aws: AwsClients) -> list[bytes]:
        return canonical(await scan_all(aws.dynamodb, name))

    return on_aws(go)


def _create(*names: str) -> None:
    async def go(aws: AwsClients) -> None:
        for name in names:
            await create_table(aws.dynamodb, name, pitr=False)

    on_aws(go)


def _uri(folder: str) -> str:
    return f"s3://{BUCKET}/{folder}/"


def _restore_export(
    capsys: Any, full: str | None, windows: list[str], table: str, *flags: str
) -> tuple[int, dict[str, Any], str]:
    argv = ["restore-export", _uri(full or windows[0]), "--table", table, *flags]
    for w in windows if full else windows[1:]:
        argv += ["--incremental", _uri(w)]
    code, out, err = run_cli(capsys, *argv)
    return code, orjson.loads(out)["body"] if out else {}, err


def test_restore_export_chain_from_the_command_line(cli_env: None, capsys: Any) -> None:
    sc = _scenario()
    _create("t-all", "t-gap", "t-order", "t-two")
    w1, w2, w3 = sc.windows

    code, body, err = _restore_export(capsys, sc.full_folder, [w1, w2, w3], "t-all")
    assert code == 0, err
    assert _table("t-all") == canonical(sc.snapshots[3])
    pit = body["point_in_time"]
    assert [(w["puts"], w["deletes"]) for w in pit["windows"]] == [(3, 1), (3, 0), (1, 1)]
    assert (pit["puts"], pit["deletes"], pit["failed"], pit["uncovered"]) == (7, 2, 0, [])
    assert body["restore_results"][0]["items_written"] == len(sc.snapshots[0])

    # A dry run verifies everything and counts what each window would write.
    code, body, err = _restore_export(capsys, sc.full_folder, [w1, w2, w3], "t-gap", "--dry-run")
    assert code == 0, err
    pit = body["point_in_time"]
    assert [(w["puts"], w["deletes"]) for w in pit["windows"]] == [(3, 1), (3, 0), (1, 1)]
    assert _table("t-gap") == []

    # A gap: refused, naming the interval, nothing written; then allowed and reported.
    code, body, err = _restore_export(capsys, sc.full_folder, [w1, w3], "t-gap")
    assert code == 1
    assert f"[{sc.bounds[1].isoformat()}, {sc.bounds[2].isoformat()}) uncovered" in err
    assert _table("t-gap") == []
    code, body, err = _restore_export(capsys, sc.full_folder, [w1, w3], "t-gap", "--allow-gaps")
    assert code == 0, err
    [gap] = body["point_in_time"]["uncovered"]
    assert (gap["start"], gap["end"]) == (
        sc.bounds[1].isoformat().replace("+00:00", "Z"),
        sc.bounds[2].isoformat().replace("+00:00", "Z"),
    )

    # Out of order, or a window that does not follow the full export: always refused.
    for windows in ([w2, w1], [w1, w1]):
        code, _, err = _restore_export(capsys, sc.full_folder, windows, "t-order", "--allow-gaps")
        assert code == 1
        assert "out of order" in err
    assert _table("t-order") == []

    # One window alone onto the table as it is.
    code, _, err = _restore_export(capsys, sc.full_folder, [w1, w2], "t-two")
    assert code == 0, err
    assert _table("t-two") == canonical(sc.snapshots[2])
    code, body, err = _restore_export(capsys, None, [w3], "t-two")
    assert code == 0, err
    assert _table("t-two") == canonical(sc.snapshots[3])
    assert body["point_in_time"]["restored_to"] is not None


def test_restore_export_chain_with_a_damaged_window_writes_nothing(
    cli_env: None, capsys: Any
) -> None:
    sc = _scenario()
    _create("t-damaged")

    async def damage(aws: AwsClients) -> str:
        key = await _first_data_file(aws, BUCKET, sc.windows[2])
        await _rewrite(aws, BUCKET, key, gzip.compress(b"not a change record\n"))
        return key

    key = on_aws(damage)
    code, body, err = _restore_export(capsys, sc.full_folder, sc.windows, "t-damaged")
    assert code == 1
    assert key in err
    assert key in body["error"]
    assert _table("t-damaged") == []


def test_timeline(cli_env: None, capsys: Any) -> None:
    sc = _scenario(chain=True)

    async def brk(aws: AwsClients) -> None:
        await record_break(
            S3Storage(aws.s3, BUCKET),
            PREFIX,
            ChainBreak(
                table=SOURCE,
                chain_id=chain_id_for(sc.bounds[0]),
                reason=BreakReason.TABLE_RECREATED,
                detail="table id is another",
                head=sc.bounds[3],
                detected_at=NOW,
            ),
        )

    on_aws(brk)
    code, out, err = run_cli(capsys, "timeline", "--json")
    assert code == 0, err
    [tl] = orjson.loads(out)
    z = [b.isoformat().replace("+00:00", "Z") for b in sc.bounds]
    assert tl["table"] == SOURCE
    assert tl["restorable"] == [{"start": z[0], "end": z[3]}]
    assert [(f["backup_date"], f["reaches"]) for f in tl["full_backups"]] == [("2026-11-27", z[3])]
    [chain] = tl["chains"]
    assert [w["export_to_time"] for w in chain["windows"]] == z[1:]
    assert chain["broken"] == "table_recreated: table id is another"

    code, out, err = run_cli(capsys, "timeline", "--table", SOURCE)
    assert code == 0, err
    assert f"{SOURCE}: restorable " in out
    assert "table_recreated" in out
    code, out, err = run_cli(capsys, "timeline", "--table", "other-table", "--json")
    assert code == 0, err
    assert orjson.loads(out)[0]["restorable"] == []


# -- the event ---------------------------------------------------------------------------


def test_restore_to_is_validated_strictly() -> None:
    r = RestoreRequest.model_validate({"restore_to": "2026-01-02T03:04:05+02:00"})
    assert r.restore_to == "2026-01-02T01:04:05+00:00"
    assert r.restore_point == dt.datetime(2026, 1, 2, 1, 4, 5, tzinfo=dt.UTC)
    assert RestoreRequest.model_validate({"restore_to": "latest"}).restore_point == "latest"
    assert RestoreRequest.model_validate({}).restore_point is None
    assert "restore_to" not in RestoreRequest.model_validate({}).echo()
    assert RestoreRequest.model_validate({"restore_to": "2026-01-02T03:04:05.5Z"}).restore_point
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    for bad, why in [
        ({"restore_to": "2026-01-02T03:04:05"}, "with its offset"),
        ({"restore_to": "2026-01-02"}, "with its offset"),
        ({"restore_to": "yesterday"}, "with its offset"),
        ({"restore_to": "2026-02-30T00:00:00Z"}, "not a valid time"),
        ({"restore_to": future}, "in the future"),
        ({"restore_to": 1764902700}, "string"),
        ({"restore_to": "latest", "backup_date": "latest"}, "alternatives"),
        ({"restore_to": "latest", "resume_token": "abc"}, "do not combine"),
    ]:
        with pytest.raises(ValidationError, match=why):
            RestoreRequest.model_validate(bad)


async def test_no_window_is_applied_after_one_with_dead_letters(
    aws: AwsClients, bucket: str
) -> None:
    """Window 1's failed put restored later must not undo window 2's delete of
    the same key: window 2 waits, named, until the dead letters are restored."""
    storage = S3Storage(aws.s3, bucket)
    items = every_type_items(3)
    await create_table(aws.dynamodb, "pitr-order", pitr=False)
    t2 = T1 + (T1 - T0)
    first = await write_incremental_export(
        aws.s3,
        bucket,
        "incoming",
        [_line(it, micros(T0) + i) for i, it in enumerate(items)],
        export_from=T0,
        export_to=T1,
        table_arn=ARN,
    )
    second = await write_incremental_export(
        aws.s3,
        bucket,
        "incoming",
        [_line(items[0], micros(T1), old=True, new=False)],
        export_from=T1,
        export_to=t2,
        table_arn=ARN,
    )
    refusing = _refusing(generic_sender(aws.dynamodb), {items[0]["pk"]["S"]})
    result = await restore_export_chain(
        storage,
        first["folder"],
        "pitr-order",
        aws,
        incremental=[second["folder"]],
        sender=refusing,
        retry=RetryPolicy(max_attempts=2, base_delay=0, max_delay=0),
    )
    assert result.status_code == 207, result.body
    assert result.body["windows_not_applied"] == [second["folder"]]
    [window] = result.body["point_in_time"]["windows"]
    assert (window["puts"], window["failed"]) == (2, 1)
    assert canonical(await scan_all(aws.dynamodb, "pitr-order")) == canonical(items[1:])

    for folder, expected in ((window["dead_letter_folder"], items), (second["folder"], items[1:])):
        done = await restore_export_chain(storage, folder, "pitr-order", aws)
        assert done.status_code == 200, done.body
        assert canonical(await scan_all(aws.dynamodb, "pitr-order")) == canonical(expected)
