"""``restore_to``: point-in-time restores through the restore Lambda, the library
and ``ddb-backup restore --at``, against moto.

A table changed in several windows (see :mod:`tests.support.pitr`) restored
into itself with ``clear_existing_data`` to each boundary equals, item for
item, the snapshot taken at that boundary; "latest" and a time between
boundaries land on the right boundary and say how far; a damaged or missing
window refuses with the table untouched; a restore cut by the deadline in the
middle of the chain resumes to the same chain (not a window recorded since)
with exact counts; a window with failed writes stops the chain (207, the
windows not applied named, its dead letters restorable); a dry run counts
each window and writes nothing; the fan-out refuses ``restore_to``.
"""

from __future__ import annotations

import datetime as dt
import gzip
import sys
from typing import Any

import orjson
import pytest

from ddb_backup.aws import AwsClients
from ddb_backup.chain import list_chains
from ddb_backup.config import RestoreConfig
from ddb_backup.events import RestoreRequest
from ddb_backup.point_in_time import restore_export_chain
from ddb_backup.restore import run_restore
from ddb_backup.restore.writer import RetryPolicy, generic_sender
from ddb_backup.storage import S3Storage
from handlers.restore import handler, plan_handler
from tests.support.backups import BUCKET, ENVIRONMENT, PREFIX
from tests.support.cli_data import TypedStdin, get_bytes, on_aws, run_cli
from tests.support.data import SECRET_MARKER, canonical, every_type_items, put_items, scan_all
from tests.support.incremental import edit_manifest_files
from tests.support.lambda_context import FakeContext
from tests.support.pitr import (
    DAY1,
    SOURCE,
    Scenario,
    append_to_chain,
    first_data_file,
    make_changes,
    record_chain,
    refusing,
    rewrite,
)

#: (puts, deletes) each window of the scenario makes.
WINDOWS = [(3, 1), (3, 0), (1, 1)]
JUNK = {"pk": {"S": "junk"}, "sk": {"S": "x"}, "label": {"S": "not in any backup"}}


@pytest.fixture
def env(moto: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKUP_BUCKET", BUCKET)
    monkeypatch.setenv("ENVIRONMENT", ENVIRONMENT)
    monkeypatch.setenv("S3_EXPORTS_PREFIX", PREFIX)
    monkeypatch.delenv("BACKUP_BUCKET_OWNER", raising=False)
    monkeypatch.delenv("DDB_BACKUP_TERMINAL", raising=False)


def _scenario(*, windows: int | None = None) -> Scenario:
    """The scenario, its chain record (the first ``windows`` windows) and a junk
    item in the table that no backup holds."""

    async def go(aws: AwsClients) -> Scenario:
        await aws.s3.create_bucket(Bucket=BUCKET)
        sc = await make_changes(aws, BUCKET)
        await record_chain(S3Storage(aws.s3, BUCKET), sc, windows=windows)
        await put_items(aws.dynamodb, SOURCE, [JUNK])
        return sc

    return on_aws(go)


def _table() -> list[bytes]:
    async def go(aws: AwsClients) -> list[bytes]:
        return canonical(await scan_all(aws.dynamodb, SOURCE))

    return on_aws(go)


def _invoke(event: dict[str, Any], remaining_ms: int = 900_000) -> tuple[int, dict[str, Any]]:
    result = handler(event, FakeContext(remaining_ms=remaining_ms))
    return result["statusCode"], result["body"]


def _at(when: dt.datetime) -> str:
    return when.isoformat()


def _time(wire: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(wire) if wire is not None else None


def _windows(pit: dict[str, Any]) -> list[tuple[int, int, int, bool]]:
    return [(w["puts"], w["deletes"], w["failed"], w["done"]) for w in pit["windows"]]


def _applied(n: int) -> list[tuple[int, int, int, bool]]:
    return [(p, d, 0, True) for p, d in WINDOWS[:n]]


def test_restore_to_each_boundary_equals_the_snapshot(
    env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    sc = _scenario()
    held = len(sc.snapshots[3]) + 1  # with the junk item
    for i, at in enumerate(sc.bounds):
        code, body = _invoke(
            {"restore_to": _at(at), "tables": [SOURCE], "clear_existing_data": True}
        )
        assert code == 200, body
        assert _table() == canonical(sc.snapshots[i])
        [r] = body["restore_results"]
        assert (r["status"], r["items_written"], r["items_failed"], r["items_cleared"]) == (
            "COMPLETED",
            len(sc.snapshots[0]),
            0,
            held,
        )
        pit = r["point_in_time"]
        assert _time(pit["restored_to"]) == at == _time(pit["asked"])
        assert pit["behind_asked_seconds"] == 0
        assert pit["full_backup_date"] == DAY1.isoformat()
        assert _windows(pit) == _applied(i)
        assert (pit["puts"], pit["deletes"], pit["failed"]) == (
            sum(p for p, _ in WINDOWS[:i]),
            sum(d for _, d in WINDOWS[:i]),
            0,
        )
        assert "windows_not_applied" not in body
        held = len(sc.snapshots[i])

    # "latest", every table of the newest backup: the end of the newest window.
    code, body = _invoke({"restore_to": "latest", "clear_existing_data": True})
    assert code == 200, body
    assert _table() == canonical(sc.snapshots[3])
    pit = body["restore_results"][0]["point_in_time"]
    assert (_time(pit["restored_to"]), pit["asked"], pit["behind_asked_seconds"]) == (
        sc.bounds[3],
        None,
        0,
    )

    # Between two boundaries: the one before, and how far before the time asked.
    half = sc.bounds[2] + (sc.bounds[3] - sc.bounds[2]) / 2
    code, body = _invoke({"restore_to": _at(half), "tables": [SOURCE], "clear_existing_data": True})
    assert code == 200, body
    assert _table() == canonical(sc.snapshots[2])
    pit = body["restore_results"][0]["point_in_time"]
    assert (_time(pit["restored_to"]), _time(pit["asked"])) == (sc.bounds[2], half)
    assert pit["behind_asked_seconds"] == (half - sc.bounds[2]).total_seconds() > 0
    assert _windows(pit) == _applied(2)
    assert SECRET_MARKER not in capsys.readouterr().out


def test_dry_run_counts_each_window_and_a_damaged_or_missing_window_refuses(env: None) -> None:
    sc = _scenario()
    before = _table()
    event = {"restore_to": _at(sc.bounds[3]), "tables": [SOURCE], "clear_existing_data": True}

    code, body = _invoke({**event, "dry_run": True})
    assert code == 200, body
    [r] = body["restore_results"]
    assert (r["status"], r["items_to_write"], r["items_to_clear"]) == (
        "DRY_RUN_OK",
        len(sc.snapshots[0]),
        len(before),
    )
    pit = r["point_in_time"]
    assert [(w["puts"], w["deletes"]) for w in pit["windows"]] == WINDOWS
    assert (pit["puts"], pit["deletes"], _time(pit["restored_to"])) == (7, 2, sc.bounds[3])
    assert _table() == before

    async def damage(aws: AwsClients) -> tuple[str, bytes]:
        key = await first_data_file(aws, BUCKET, sc.windows[1])
        original = await get_bytes(aws.s3, BUCKET, key)
        await rewrite(aws, BUCKET, key, gzip.compress(b'{"Metadata":{}}\n'))
        return key, original

    key, original = on_aws(damage)
    code, body = _invoke(event)
    assert code == 500, body
    [r] = body["restore_results"]
    assert r["status"] == "FAILED"
    assert key in r["error"]
    assert (r["items_cleared"], r["items_written"]) == (0, 0)
    assert r["windows_not_applied"] == sc.windows
    assert _table() == before

    async def remove_last_window(aws: AwsClients) -> None:
        await rewrite(aws, BUCKET, key, original)
        listed = await aws.s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{sc.windows[2]}/")
        for obj in listed["Contents"]:
            await aws.s3.delete_object(Bucket=BUCKET, Key=obj["Key"])

    on_aws(remove_last_window)
    code, body = _invoke(event)
    assert code == 500, body
    [r] = body["restore_results"]
    assert f"{sc.windows[2]}/manifest-summary.json" in r["error"]
    assert (r["items_cleared"], r["items_written"]) == (0, 0)
    assert _table() == before


def test_cut_by_the_deadline_resumes_the_same_chain_with_exact_counts(env: None) -> None:
    """Every round has no time left: each does the least it may, so the chain is
    cut between windows and inside them; a window recorded after the restore
    started is not applied by its later rounds."""
    sc = _scenario(windows=2)
    held = len(_table())
    code, body = _invoke(
        {"restore_to": "latest", "tables": [SOURCE], "clear_existing_data": True}, remaining_ms=0
    )
    assert code == 202, body

    async def next_window_recorded(aws: AwsClients) -> None:
        storage = S3Storage(aws.s3, BUCKET)
        [chain] = await list_chains(storage, PREFIX, SOURCE)
        await append_to_chain(storage, chain, sc.windows[2])

    on_aws(next_window_recorded)
    rounds = [body]
    while code == 202:
        assert len(rounds) < 40, "no progress"
        code, body = _invoke({"resume_token": body["resume_token"]}, remaining_ms=0)
        rounds.append(body)
    assert code == 200, body
    assert _table() == canonical(sc.snapshots[2])
    [r] = body["restore_results"]
    assert (r["status"], r["items_written"], r["items_failed"], r["items_cleared"]) == (
        "COMPLETED",
        len(sc.snapshots[0]),
        0,
        held,
    )
    pit = r["point_in_time"]
    assert (_time(pit["restored_to"]), pit["asked"]) == (sc.bounds[2], None)
    assert _windows(pit) == _applied(2)
    # Some round stopped with the first window applied and the second not.
    marks = [
        [w["done"] for w in b["restore_results"][0]["point_in_time"]["windows"]]
        for b in rounds[:-1]
    ]
    assert [True, False] in marks
    # ... and some inside a window (part of its writes done).
    assert any(
        not w["done"] and w["puts"] + w["deletes"] > 0
        for b in rounds[:-1]
        for w in b["restore_results"][0]["point_in_time"]["windows"]
    )


async def test_a_window_with_failed_writes_stops_the_chain(aws: AwsClients, bucket: str) -> None:
    storage = S3Storage(aws.s3, bucket)
    sc = await make_changes(aws, bucket)
    await record_chain(storage, sc)
    inserted = every_type_items(6)[4]  # put by the first window only
    result = await run_restore(
        RestoreConfig(bucket=bucket, environment=ENVIRONMENT, prefix=PREFIX),
        RestoreRequest(restore_to=_at(sc.bounds[3]), tables=[SOURCE], clear_existing_data=True),
        aws,
        sender=refusing(generic_sender(aws.dynamodb), {inserted["pk"]["S"]}),
        retry=RetryPolicy(max_attempts=2, base_delay=0, max_delay=0),
    )
    assert result.status_code == 207, result.body
    assert result.body["windows_not_applied"] == sc.windows[1:]
    [r] = result.body["restore_results"]
    assert r["status"] == "PARTIAL"
    assert r["windows_not_applied"] == sc.windows[1:]
    pit = r["point_in_time"]
    assert _windows(pit) == [(2, 1, 1, True), (0, 0, 0, False), (0, 0, 0, False)]
    assert _time(pit["restored_to"]) == sc.bounds[0]
    after_first = [i for i in sc.snapshots[1] if i["pk"] != inserted["pk"]]
    assert canonical(await scan_all(aws.dynamodb, SOURCE)) == canonical(after_first)

    # The dead letters restore: the table is then as of the first boundary.
    folder = pit["windows"][0]["dead_letter_folder"]
    done = await restore_export_chain(storage, folder, SOURCE, aws)
    assert done.status_code == 200, done.body
    assert canonical(await scan_all(aws.dynamodb, SOURCE)) == canonical(sc.snapshots[1])


async def test_a_window_manifest_naming_a_dotted_data_key_refuses_untouched(
    aws: AwsClients, bucket: str
) -> None:
    """A window's manifest-files.json naming its data file through ``..`` (the
    right file: a rebase that dropped the segment would take it) refuses the
    table, the key named, before anything is cleared or written."""
    sc = await make_changes(aws, bucket)
    await record_chain(S3Storage(aws.s3, bucket), sc)
    dotted = f"elsewhere/../{await first_data_file(aws, bucket, sc.windows[1])}"

    def dot(entry: dict[str, Any]) -> None:
        entry["dataFileS3Key"] = dotted

    await edit_manifest_files(aws.s3, bucket, sc.windows[1], dot)
    before = canonical(await scan_all(aws.dynamodb, SOURCE))
    result = await run_restore(
        RestoreConfig(bucket=bucket, environment=ENVIRONMENT, prefix=PREFIX),
        RestoreRequest(restore_to=_at(sc.bounds[3]), tables=[SOURCE], clear_existing_data=True),
        aws,
    )
    assert result.status_code == 500, result.body
    [r] = result.body["restore_results"]
    assert r["status"] == "FAILED"
    assert f"unsafe S3 key {dotted!r}" in r["error"]
    assert (r["items_cleared"], r["items_written"]) == (0, 0)
    assert canonical(await scan_all(aws.dynamodb, SOURCE)) == before


def test_restore_at_from_the_command_line(
    env: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sc = _scenario()
    flags = ["--tables", SOURCE, "--clear-existing-data", "--yes"]
    code, out, err = run_cli(capsys, "restore", "--at", _at(sc.bounds[2]), *flags, "--json")
    assert code == 0, err
    assert _table() == canonical(sc.snapshots[2])
    pit = orjson.loads(out)["body"]["restore_results"][0]["point_in_time"]
    assert _time(pit["restored_to"]) == sc.bounds[2]
    assert _windows(pit) == _applied(2)

    # Every table of the newest backup, confirmed on the terminal.
    monkeypatch.setattr(sys, "stdin", TypedStdin(f"{SOURCE}\n"))
    code, out, err = run_cli(capsys, "restore", "--at", "latest", "--clear-existing-data")
    assert code == 0, err
    assert f"delete every item of 1 table(s) before restoring to latest: {SOURCE}" in err
    assert _table() == canonical(sc.snapshots[3])
    assert f"{SOURCE}: restored to {sc.bounds[3].isoformat()}; 3 window(s): 7 puts" in out

    for argv, why in [
        (["restore", "latest", "--at", "latest"], "one of them"),
        (["restore"], "one of them"),
        (["restore", "--at", "yesterday"], 'not "latest" or an ISO-8601 time'),
    ]:
        code, _, err = run_cli(capsys, *argv)
        assert code == 2
        assert why in err
    assert _table() == canonical(sc.snapshots[3])


def test_the_fan_out_refuses_restore_to(env: None) -> None:
    on_aws(lambda aws: aws.s3.create_bucket(Bucket=BUCKET))
    context = FakeContext(remaining_ms=900_000)
    for result in (
        plan_handler({"restore_to": "latest"}, context),
        handler({"restore_to": "latest", "shard": {"restore_id": "r-1", "shard_id": 0}}, context),
    ):
        assert result["statusCode"] == 400, result
        assert "point-in-time restore runs as one resumable restore" in result["body"]["error"]
