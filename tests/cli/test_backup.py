"""``backup`` from the command line (a real export on the moto server, waited
for with a live view of each table's state), and the installed console script."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support.backups import BUCKET
from tests.support.cli_data import on_aws
from tests.support.cli_data import run_cli as run
from tests.support.data import create_table, every_type_items, put_items

T1, T2, NO_PITR = "mfa-api_test_totp_global", "mfa-api_test_u2f_global", "mfa-api_test_x_global"


@pytest.fixture
def tables(moto: str, cli_env: None) -> None:
    async def go(aws: Any) -> None:
        await aws.s3.create_bucket(Bucket=BUCKET)
        await create_table(aws.dynamodb, T1)
        await create_table(aws.dynamodb, T2)
        await create_table(aws.dynamodb, NO_PITR, pitr=False)
        await put_items(aws.dynamodb, T1, every_type_items(12))
        await put_items(aws.dynamodb, T2, every_type_items(5))

    on_aws(go)


FAST = ("--poll-seconds", "0.05")


@pytest.mark.usefixtures("tables")
def test_backup_waits_until_final_showing_each_state(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DYNAMODB_TABLES", orjson.dumps([T1, T2]).decode())
    code, out, err = run(capsys, "backup", *FAST)
    assert code == 0, err
    # A line per state change (not a terminal), each table through to COMPLETED.
    for name in (T1, T2):
        states = [
            line.rsplit(": ", 1)[1]
            for line in err.splitlines()
            if line.split("] ", 1)[-1].startswith(f"backup {name}: ")
        ]
        assert states[-1] == "COMPLETED"
        assert "IN_PROGRESS" in states or "EXPORTED" in states
    assert f"manifest: s3://{BUCKET}/native-exports/" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("mfa")}
    assert rows[T1][1:3] == ["COMPLETED", "12"]
    assert rows[T2][1:3] == ["COMPLETED", "5"]

    # The backup is now listed, complete, and verifies.
    code, out, _ = run(capsys, "list", "--json")
    [entry] = orjson.loads(out)
    assert (entry["state"], entry["item_count"], sorted(entry["tables"])) == (
        "complete",
        17,
        [T1, T2],
    )
    code, out, _ = run(capsys, "verify", "latest", "--json")
    assert code == 0
    assert orjson.loads(out)["ok"] is True

    # A second run on the same date starts nothing and answers from the manifest.
    code, out, _ = run(capsys, "backup", "--json", *FAST)
    assert code == 0
    body = orjson.loads(out)["body"]
    assert body["message"] == "backup already final for this date; nothing was started"

    # A table configured after the date is final: named, exit 1, nothing exported.
    code, out, err = run(capsys, "backup", "--tables", T1, T2, NO_PITR, *FAST)
    assert code == 1
    assert err.splitlines()[-1].startswith("ddb-backup: error: not backed up on ")
    assert err.splitlines()[-1].endswith(f": {NO_PITR}")


@pytest.mark.usefixtures("tables")
def test_backup_with_a_table_without_pitr_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "backup", "--tables", T2, NO_PITR, "--json", *FAST)
    assert code == 1, err
    doc = orjson.loads(out)
    assert doc["statusCode"] == 207
    results = {r["table_name"]: r for r in doc["body"]["results"]}
    assert results[T2]["status"] == "COMPLETED"
    assert results[NO_PITR]["status"] == "FAILED"
    assert "PITR" in results[NO_PITR]["error"] or "point-in-time" in results[NO_PITR]["error"]


@pytest.mark.usefixtures("tables")
def test_backup_live_view_on_a_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DDB_BACKUP_TERMINAL", "1")
    code, out, err = run(capsys, "backup", "--tables", T1, *FAST)
    assert code == 0
    assert "\x1b[" in err  # rich's live table, redrawn in place
    assert "COMPLETED" in err
    assert "┃" in out or "│" in out


def test_backup_without_tables_is_bad_usage(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, cli_env: None
) -> None:
    code, out, err = run(capsys, "backup")
    assert (code, out) == (2, "")
    assert err == (
        "ddb-backup: error: environment variable DYNAMODB_TABLES is required (or pass --tables)\n"
    )
    monkeypatch.setenv("DYNAMODB_TABLES", "not json")
    code, _, err = run(capsys, "backup")
    assert code == 2
    assert "DYNAMODB_TABLES is not valid JSON" in err


def _console_script() -> str | None:
    return shutil.which("ddb-backup", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(_console_script() is None, reason="package not installed (pip install -e .)")
@pytest.mark.usefixtures("tables")
def test_installed_console_script_and_python_m(tmp_path: Path) -> None:
    script = _console_script()
    assert script is not None
    env = {**os.environ, "BACKUP_BUCKET": BUCKET, "ENVIRONMENT": "test"}
    env.pop("DDB_BACKUP_TERMINAL", None)
    done = subprocess.run(
        [script, "backup", "--tables", T2, "--json", *FAST],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout)["statusCode"] == 200
    listed = subprocess.run(
        [sys.executable, "-m", "ddb_backup", "list", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert orjson.loads(listed.stdout)[0]["tables"] == [T2]
    bad = subprocess.run(
        [script, "verify", "not-a-date"], env=env, capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2
    assert "invalid date 'not-a-date'" in bad.stderr


@pytest.mark.usefixtures("tables")
def test_backup_of_an_earlier_date_only_reports(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "backup", "--tables", T2, "--date", "2026-01-05", *FAST)
    assert code == 1
    assert out.startswith("backup 2026-01-05 (FAILED)")
    assert err.startswith("ddb-backup: error: ")
    assert "2026-01-05" in err
    code, _, err = run(capsys, "backup", "--tables", T2, "--date", "latest")
    assert code == 2
    assert "invalid date 'latest'" in err
    # Nothing was exported for that date.
    code, out, _ = run(capsys, "list", "--json")
    assert orjson.loads(out) == []


@pytest.mark.usefixtures("tables")
def test_backup_incremental_starts_a_chain_on_the_full_backup(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(capsys, "backup", "--tables", T1, *FAST)
    assert code == 0, err
    code, out, err = run(capsys, "backup", "--incremental", "--tables", T1, "--json", *FAST)
    assert code == 0, err
    doc = orjson.loads(out)
    (row,) = doc["body"]["results"]
    # The full backup was just taken: a chain starts on it, no window is due yet.
    assert (row["status"], row["windows_verified"], row["breaks"]) == ("COMPLETED", 0, [])
    assert row["chain_id"] is not None
    code, out, _ = run(capsys, "backup", "--incremental", "--tables", T1, *FAST)
    assert code == 0
    assert "incremental round (COMPLETE, 0 window(s))" in out
    code, _, err = run(capsys, "backup", "--incremental", "--date", "2026-01-01", *FAST)
    assert code == 2
    assert "--date" in err
