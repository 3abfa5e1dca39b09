"""``restore`` and ``restore-export`` from the command line, against the moto server:
tables compared item for item, the clear confirmation, both progress displays,
and a restore from a local copy with the bucket emptied.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from ddb_backup.config import RestoreConfig
from ddb_backup.events import RestoreRequest
from ddb_backup.restore import run_restore
from ddb_backup.restore.writer import generic_sender
from tests.support.backups import BUCKET
from tests.support.cli_data import TypedStdin, on_aws, write_backup
from tests.support.cli_data import run_cli as run
from tests.support.data import (
    canonical,
    create_table,
    every_type_items,
    put_items,
    scan_all,
    write_aws_export,
)
from tests.support.senders import poisoned, refusing_sender

T1, T2 = "mfa-api_test_totp_global", "mfa-api_test_u2f_global"
SCRATCH = "scratch-totp-copy"
DATE = "2026-11-20"


@pytest.fixture
def backed_up(moto: str, cli_env: None) -> dict[str, list[dict[str, Any]]]:
    """A complete backup of T1 (30 items) and T2 (7); both tables exist, T1 holds
    other items than the backup (a loss), T2 is empty."""
    data = {T1: every_type_items(30), T2: every_type_items(7)}

    async def go(aws: Any) -> None:
        await aws.s3.create_bucket(Bucket=BUCKET)
        await write_backup(aws.s3, BUCKET, DATE, data)
        for name in (T1, T2):
            await create_table(aws.dynamodb, name, pitr=False)
        await put_items(aws.dynamodb, T1, _intruders())

    on_aws(go)
    return data


def _intruders() -> list[dict[str, Any]]:
    return [{"pk": {"S": f"intruder-{i}"}, "sk": {"S": "x"}} for i in range(4)]


def table(name: str) -> list[bytes]:
    return canonical(on_aws(lambda aws: scan_all(aws.dynamodb, name)))


def s3_keys() -> list[str]:
    resp = on_aws(lambda aws: aws.s3.list_objects_v2(Bucket=BUCKET))
    return sorted(o["Key"] for o in resp.get("Contents", []))


# -- restore -----------------------------------------------------------------------------


def test_restore_writes_every_item_with_plain_progress_lines(
    backed_up: dict[str, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "restore", "latest", "--tables", T2, "--json")
    assert code == 0, err
    doc = orjson.loads(out)
    assert doc["statusCode"] == 200
    [result] = doc["body"]["restore_results"]
    assert (result["table"], result["status"], result["items_written"]) == (T2, "COMPLETED", 7)
    assert table(T2) == canonical(backed_up[T2])
    assert table(T1) == canonical(_intruders())  # not asked for: untouched
    # Not a terminal: plain lines per phase on stderr, stdout kept for JSON.
    lines = err.splitlines()
    assert lines[0] == f"restore {T2}: verifying"
    assert any(line.startswith(f"restore {T2}: writing, ") for line in lines)
    assert lines[-1].startswith(f"restore {T2}: done, 7/7 items written, files 3/3")
    assert all(line.startswith(f"restore {T2}: ") for line in lines)


def test_restore_human_report(
    backed_up: dict[str, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "restore", DATE, "--tables", T2, "--max-workers", "2")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"restore of backup {DATE}"
    assert lines[3].split()[:6] == [T2, "COMPLETED", "7", "7", "0", "0"]
    assert "1 successful, 0 partial, 0 failed, 0 skipped" in out


def test_dry_run_writes_nothing(
    backed_up: dict[str, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    before = s3_keys()
    code, out, err = run(capsys, "restore", "latest", "--dry-run", "--clear-existing-data")
    assert code == 0  # a dry run needs no confirmation: nothing is cleared
    assert "(dry run: nothing written)" in out
    assert f"restore {T1}: done (dry run: nothing written)" in err
    rows = {line.split()[0]: line.split() for line in out.splitlines()[3:5]}
    assert rows[T1][1:6] == ["DRY_RUN_OK", "30", "30", "0", "4"]  # would clear the 4 intruders
    assert rows[T2][1:6] == ["DRY_RUN_OK", "7", "7", "0", "0"]
    assert table(T1) == canonical(_intruders())
    assert table(T2) == []
    assert s3_keys() == before


def test_map_restores_into_a_scratch_table(
    backed_up: dict[str, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    on_aws(lambda aws: create_table(aws.dynamodb, SCRATCH, pitr=False))
    code, out, _ = run(capsys, "restore", "latest", "--tables", T1, "--map", f"{T1}={SCRATCH}")
    assert code == 0
    assert f"{T1} -> {SCRATCH}" in out
    assert table(SCRATCH) == canonical(backed_up[T1])
    assert table(T1) == canonical(_intruders())


def test_clear_without_a_terminal_needs_yes(
    backed_up: dict[str, list[dict[str, Any]]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "stdin", TypedStdin(""))
    monkeypatch.setattr(TypedStdin, "isatty", lambda self: False)
    code, out, err = run(capsys, "restore", "latest", "--tables", T1, "--clear-existing-data")
    assert (code, out) == (2, "")
    assert err == (
        "ddb-backup: error: --clear-existing-data deletes every item of the target tables; "
        "without a terminal to confirm on, pass --yes\n"
    )
    assert table(T1) == canonical(_intruders())

    code, _, _ = run(capsys, "restore", "latest", "--tables", T1, "--clear-existing-data", "--yes")
    assert code == 0
    assert table(T1) == canonical(backed_up[T1])  # intruders gone, backup back


def test_clear_on_a_terminal_asks_for_the_names(
    backed_up: dict[str, list[dict[str, Any]]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "stdin", TypedStdin(f"{T1}\n"))
    code, _, err = run(capsys, "restore", "latest", "--clear-existing-data")
    assert code == 2
    assert f"delete every item of 2 table(s) before restoring backup {DATE}: {T1}, {T2}" in err
    assert "type the table name(s) to confirm: " in err
    assert err.endswith(
        "ddb-backup: error: the names typed do not match the tables to clear; nothing was done\n"
    )
    assert table(T1) == canonical(_intruders())
    assert table(T2) == []

    monkeypatch.setattr(sys, "stdin", TypedStdin(f"{T2} {T1}\n"))
    code, out, _ = run(capsys, "restore", "latest", "--clear-existing-data")
    assert code == 0
    assert table(T1) == canonical(backed_up[T1])
    assert table(T2) == canonical(backed_up[T2])
    row = next(line.split() for line in out.splitlines() if line.startswith(T1))
    assert row[1:6] == ["COMPLETED", "30", "30", "0", "4"]

    # Through a mapping the name to type is the target's.
    on_aws(lambda aws: create_table(aws.dynamodb, SCRATCH, pitr=False))
    monkeypatch.setattr(sys, "stdin", TypedStdin(f"{SCRATCH}\n"))
    code, _, err = run(
        capsys,
        "restore",
        "latest",
        "--tables",
        T1,
        "--map",
        f"{T1}={SCRATCH}",
        "--clear-existing-data",
    )
    assert code == 0, err
    assert f": {SCRATCH}\n" in err


def test_terminal_mode_draws_bars_and_tables(
    backed_up: dict[str, list[dict[str, Any]]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DDB_BACKUP_TERMINAL", "1")
    code, out, err = run(capsys, "restore", "latest", "--tables", T2)
    assert code == 0
    assert table(T2) == canonical(backed_up[T2])
    assert "━" in err  # rich's progress bar
    assert "7/7" in err
    assert "items/s" in err
    assert "\x1b[" in err  # drawn with terminal control sequences
    assert "┃" in out or "│" in out  # a rich table, not plain columns
    assert "COMPLETED" in out


def test_a_corrupted_backup_fails_with_exit_1_and_touches_nothing(
    backed_up: dict[str, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    async def corrupt(aws: Any) -> None:
        resp = await aws.s3.list_objects_v2(Bucket=BUCKET, Prefix=f"native-exports/{DATE}/{T1}/")
        key = next(o["Key"] for o in resp["Contents"] if o["Key"].endswith(".json.gz"))
        await aws.s3.put_object(Bucket=BUCKET, Key=key, Body=b"rot")

    on_aws(corrupt)
    code, out, err = run(capsys, "restore", DATE, "--clear-existing-data", "--yes", "--json")
    assert code == 1
    body = orjson.loads(out)["body"]
    results = {r["table"]: r for r in body["restore_results"]}
    assert results[T1]["status"] == "FAILED"
    assert results[T1]["items_cleared"] == 0
    assert table(T1) == canonical(_intruders())
    assert "Traceback" not in err


def test_no_such_backup_is_one_line_exit_1(
    backed_up: dict[str, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "restore", "2026-01-02", "--json")
    assert code == 1
    assert err == (
        "ddb-backup: error: no manifest for backup 2026-01-02 "
        "(native-exports/2026-01-02/manifest.json)\n"
    )


def test_restore_from_a_local_copy_after_the_bucket_is_emptied(
    backed_up: dict[str, list[dict[str, Any]]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    code, _, err = run(capsys, "download", "latest", str(tmp_path))
    assert code == 0, err

    async def empty(aws: Any) -> None:
        for key in s3_keys_async(await aws.s3.list_objects_v2(Bucket=BUCKET)):
            await aws.s3.delete_object(Bucket=BUCKET, Key=key)

    on_aws(empty)
    assert s3_keys() == []
    monkeypatch.delenv("BACKUP_BUCKET")  # no bucket at all: everything local
    code, out, err = run(
        capsys, "restore", "latest", "--from", str(tmp_path), "--clear-existing-data", "--yes"
    )
    assert code == 0, err
    assert "2 successful, 0 partial, 0 failed" in out
    assert table(T1) == canonical(backed_up[T1])
    assert table(T2) == canonical(backed_up[T2])
    assert s3_keys() == []  # nothing read from or written to S3


def s3_keys_async(resp: dict[str, Any]) -> list[str]:
    return [o["Key"] for o in resp.get("Contents", [])]


def test_resume_a_restore_that_a_lambda_left_unfinished(
    backed_up: dict[str, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    async def interrupted(aws: Any) -> Any:
        config = RestoreConfig(bucket=BUCKET, environment="test")
        request = RestoreRequest(tables=[T1], max_workers=1)
        return await run_restore(config, request, aws, max_batches=1)

    first = on_aws(interrupted)
    assert first.status_code == 202
    written = first.body["restore_results"][0]["items_written"]
    assert 0 < written < 30
    code, out, err = run(capsys, "restore", "latest", "--resume-token", first.body["resume_token"])
    assert code == 0, err
    row = next(line.split() for line in out.splitlines() if line.startswith(T1))
    assert row[1] == "COMPLETED"
    # Not cleared (the first request did not ask): the backup's items plus the intruders.
    assert table(T1) == canonical(backed_up[T1] + _intruders())


def test_resume_token_flag_is_passed_as_is(
    backed_up: dict[str, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "restore", "latest", "--resume-token", "not a token!")
    assert code == 2
    assert "resume_token is not a token this service issued" in err


# -- restore-export ----------------------------------------------------------------------


def test_dead_letters_restore_with_the_documented_command(
    backed_up: dict[str, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    """README: ``restore-export s3://BUCKET/<prefix>/_restore/<id>/dead-letter/<table>/``
    writes exactly the items a restore could not write."""
    items = backed_up[T2]
    poison = poisoned(items, 2)

    async def refused(aws: Any) -> Any:
        config = RestoreConfig(bucket=BUCKET, environment="test")
        sender = refusing_sender(generic_sender(aws.dynamodb), poison)
        return await run_restore(config, RestoreRequest(tables=[T2]), aws, sender=sender)

    first = on_aws(refused)
    assert first.status_code == 207, first.body
    folder = first.body["restore_results"][0]["dead_letter_folder"]
    assert folder == f"native-exports/_restore/{first.body['restore_id']}/dead-letter/{T2}"
    kept = [it for it in items if it["pk"]["S"] not in poison]
    assert table(T2) == canonical(kept)

    code, out, err = run(capsys, "restore-export", f"s3://{BUCKET}/{folder}/", "--table", T2)

    assert code == 0, err
    [result] = orjson.loads(out)["body"]["restore_results"]
    assert result["status"] == "COMPLETED"
    assert result["items_written"] == result["items_expected"] == len(poison)
    assert table(T2) == canonical(items)


@pytest.mark.parametrize(
    "uri",
    [
        "s3://b-x/../AWSDynamoDB/x/",
        "s3://b-x/a/%2e%2e/AWSDynamoDB/x/",
        "s3://b-x/a//AWSDynamoDB/x/",
        "s3://b-x/a/AWSDynamoDB/",
        "s3://b-x/a/_restore/r/dead-letter/",
        "s3://b-x/a/other/x/",
    ],
)
def test_restore_export_refuses_other_uris_with_exit_2(
    moto: str, uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "restore-export", uri, "--table", SCRATCH)
    assert code == 2
    assert out == ""
    assert "restore-export" in err


@pytest.fixture
def console_export(moto: str) -> dict[str, Any]:
    """An export made by someone else (AWS-shaped, with an empty data file)."""
    items = every_type_items(11)

    async def go(aws: Any) -> dict[str, Any]:
        await aws.s3.create_bucket(Bucket="someone-elses-exports")
        info = await write_aws_export(
            aws.s3, "someone-elses-exports", "console/2026-11", items, files=3
        )
        await create_table(aws.dynamodb, SCRATCH, pitr=False)
        return {"items": items, **info}

    return on_aws(go)


def test_restore_export_prints_the_report_as_json(
    console_export: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"s3://someone-elses-exports/{console_export['folder']}/"
    code, out, _ = run(capsys, "restore-export", uri, "--table", SCRATCH, "--dry-run")
    assert code == 0
    assert orjson.loads(out)["body"]["restore_results"][0]["status"] == "DRY_RUN_OK"
    assert table(SCRATCH) == []

    code, out, err = run(capsys, "restore-export", uri, "--table", SCRATCH, "--max-workers", "3")
    assert code == 0, err
    doc = orjson.loads(out)
    assert doc["statusCode"] == 200
    [result] = doc["body"]["restore_results"]
    assert (result["items_expected"], result["items_written"], result["files_total"]) == (
        11,
        11,
        4,
    )
    assert table(SCRATCH) == canonical(console_export["items"])
    assert err.splitlines()[-1].startswith(f"restore-export {SCRATCH}: done, 11/11 items written")


def test_restore_export_of_a_damaged_export_exits_1_and_writes_nothing(
    console_export: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    on_aws(
        lambda aws: aws.s3.put_object(
            Bucket="someone-elses-exports", Key=console_export["data_keys"][0], Body=b"rot"
        )
    )
    uri = f"s3://someone-elses-exports/{console_export['folder']}"
    code, out, err = run(capsys, "restore-export", uri, "--table", SCRATCH)
    assert code == 1
    assert orjson.loads(out)["statusCode"] != 200
    assert table(SCRATCH) == []
    assert err.splitlines()[-1].startswith("ddb-backup: error: ") or "FAILED" in out


def test_restore_export_into_a_missing_table_exits_1(
    console_export: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"s3://someone-elses-exports/{console_export['folder']}/"
    code, out, _ = run(capsys, "restore-export", uri, "--table", "no-such-table")
    assert code == 1
    [result] = orjson.loads(out)["body"]["restore_results"]
    assert result["status"] == "FAILED"
    assert "no-such-table" in result["error"]


@pytest.mark.parametrize("prefix", ["console exports/2026 11", "été/π", "100%/a%20b", "a+b/c"])
def test_restore_export_of_a_folder_under_an_odd_prefix(
    moto: str, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    items = every_type_items(9)

    async def go(aws: Any) -> dict[str, Any]:
        await aws.s3.create_bucket(Bucket="someone-elses-exports")
        await create_table(aws.dynamodb, SCRATCH, pitr=False)
        return await write_aws_export(aws.s3, "someone-elses-exports", prefix, items, files=2)

    uri = f"s3://someone-elses-exports/{on_aws(go)['folder']}/"
    code, out, err = run(capsys, "restore-export", uri, "--table", SCRATCH, "--dry-run")
    assert code == 0, err
    assert table(SCRATCH) == []
    code, out, err = run(capsys, "restore-export", uri, "--table", SCRATCH)
    assert code == 0, err
    assert orjson.loads(out)["body"]["restore_results"][0]["items_written"] == 9
    assert table(SCRATCH) == canonical(items)
