"""The command line, driven in-process (``main([...])``) against the moto server.

Reading commands: list, show, verify, download (and the local-directory mode
with no server at all), usage errors and exit codes.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import orjson
import pytest

from ddb_backup.cli import main
from tests.support.backups import BUCKET, PREFIX
from tests.support.cli_data import (
    on_aws,
    write_backup,
    write_in_progress,
    write_unreadable,
)
from tests.support.cli_data import (
    run_cli as run,
)
from tests.support.data import every_type_items

T1, T2 = "mfa-api_test_totp_global", "mfa-api_test_u2f_global"


@pytest.fixture
def env(moto: str, cli_env: None) -> str:
    """A clean moto with the bucket, configured through the handlers' variables."""
    on_aws(lambda aws: aws.s3.create_bucket(Bucket=BUCKET))
    return moto


@pytest.fixture
def dates(env: str) -> None:
    """Four dates: complete, partial, in progress, unreadable."""

    async def go(aws: Any) -> None:
        await write_backup(aws.s3, BUCKET, "2026-11-20", {T1: every_type_items(8)})
        await write_backup(
            aws.s3,
            BUCKET,
            "2026-11-21",
            {T1: every_type_items(5)},
            failed={T2: "point-in-time recovery must be enabled"},
        )
        await write_in_progress(aws.s3, BUCKET, "2026-11-22")
        await write_unreadable(aws.s3, BUCKET, "2026-11-23")

    on_aws(go)


# -- list / show -----------------------------------------------------------------------


@pytest.mark.usefixtures("dates")
def test_list_json_every_date_newest_first(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "list", "--json")
    assert code == 0
    doc = orjson.loads(out)
    assert [(d["date"], d["state"]) for d in doc] == [
        ("2026-11-23", "unreadable"),
        ("2026-11-22", "in_progress"),
        ("2026-11-21", "partial"),
        ("2026-11-20", "complete"),
    ]
    complete = doc[3]
    assert complete["tables"] == [T1]
    assert complete["item_count"] == 8
    assert complete["size_bytes"] > 0
    assert doc[2]["tables"] == [T1, T2]
    assert doc[2]["item_count"] == 5  # only the completed table counts
    assert "not JSON" in doc[0]["error"]


@pytest.mark.usefixtures("dates")
def test_list_human_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"backups under s3://{BUCKET}/{PREFIX}/"
    assert lines[1].split() == ["date", "state", "tables", "items", "size", "note"]
    rows = [line.split() for line in lines[3:]]
    assert [r[0] for r in rows] == ["2026-11-23", "2026-11-22", "2026-11-21", "2026-11-20"]
    assert rows[1][1:3] == ["in", "progress"]
    assert rows[3][1:4] == ["complete", "1", "8"]
    assert f"failed: {T2}" in lines[5]


def test_list_empty_bucket(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "list")
    assert (code, out) == (0, f"no backups under s3://{BUCKET}/{PREFIX}/\n")


@pytest.mark.usefixtures("dates")
def test_show_json_is_the_manifest(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "show", "2026-11-21", "--json")
    assert code == 0
    doc = orjson.loads(out)
    assert doc["backup_date"] == "2026-11-21"
    assert doc["status"] == "PARTIAL"
    t1, t2 = doc["tables"]
    assert (t1["table_name"], t1["status"], t1["item_count"]) == (T1, "COMPLETED", 5)
    assert len(t1["files"]) == 3
    assert sum(f["item_count"] for f in t1["files"]) == 5
    assert all(f["md5"] and f["size"] for f in t1["files"])
    assert t1["schema"]["KeySchema"][0]["AttributeName"] == "pk"
    assert (t2["status"], t2["error"]) == ("FAILED", "point-in-time recovery must be enabled")


@pytest.mark.usefixtures("dates")
def test_show_human_per_table_and_file(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "show", "latest")
    assert code == 0
    assert out.startswith(f"backup 2026-11-20  (s3://{BUCKET}/{PREFIX}/)\n  status       COMPLETE")
    assert f"{T1}: files under {PREFIX}/2026-11-20/{T1}/AWSDynamoDB/" in out
    file_rows = [line for line in out.splitlines() if line.startswith("data/")]
    assert len(file_rows) == 3
    assert sorted(int(r.split()[1]) for r in file_rows) == [0, 4, 4]


@pytest.mark.usefixtures("dates")
def test_show_a_missing_or_unreadable_date_fails_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "show", "2026-01-01")
    assert (code, out) == (1, "")
    assert err == (
        "ddb-backup: error: no manifest for backup 2026-01-01 "
        f"({PREFIX}/2026-01-01/manifest.json)\n"
    )
    code, _, err = run(capsys, "show", "2026-11-23")
    assert code == 1
    assert err.count("\n") == 1
    assert "manifest is not JSON" in err
    assert "Traceback" not in err


# -- verify ----------------------------------------------------------------------------


@pytest.mark.usefixtures("dates")
def test_verify_latest_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "verify", "latest", "--json")
    assert code == 0
    doc = orjson.loads(out)
    assert doc["ok"] is True
    assert doc["backup_date"] == "2026-11-20"
    assert doc["location"] == f"s3://{BUCKET}"
    assert [s["date"] for s in doc["skipped_dates"]] == ["2026-11-23", "2026-11-22", "2026-11-21"]
    [table] = doc["tables"]
    assert (table["table_name"], table["ok"], table["files"], table["items"]) == (T1, True, 3, 8)
    assert doc["problems"] == []


@pytest.mark.usefixtures("dates")
def test_verify_partial_date_exits_1_naming_the_failed_table(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "verify", "2026-11-21")
    assert code == 1
    assert f"verified {T1}: ok, 5 items" in err
    assert "backup 2026-11-21: 1 problem(s)" in out
    assert f"  - {T2}: export FAILED: point-in-time recovery must be enabled" in out
    # Restricted to the table that was exported, the same date verifies.
    code, out, _ = run(capsys, "verify", "2026-11-21", "--tables", T1)
    assert code == 0
    assert "every file read back and matches its manifest" in out


def test_verify_a_corrupted_file_exits_1_and_names_it(
    env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async def go(aws: Any) -> str:
        manifest = await write_backup(aws.s3, BUCKET, "2026-11-20", {T1: every_type_items(6)})
        victim = next(f for f in manifest.tables[0].files or [] if f.item_count)
        await aws.s3.put_object(Bucket=BUCKET, Key=victim.key, Body=b"\x1f\x8b garbage")
        return victim.key

    key = on_aws(go)
    before = on_aws(lambda aws: aws.s3.list_objects_v2(Bucket=BUCKET))
    code, out, _ = run(capsys, "verify", "2026-11-20", "--json")
    assert code == 1
    doc = orjson.loads(out)
    assert doc["ok"] is False
    [problem] = doc["problems"]
    assert problem.startswith(f"{T1}: {key}: ")
    # Nothing was written: the bucket holds exactly what it held.
    after = on_aws(lambda aws: aws.s3.list_objects_v2(Bucket=BUCKET))
    assert [(o["Key"], o["ETag"]) for o in after["Contents"]] == [
        (o["Key"], o["ETag"]) for o in before["Contents"]
    ]


def test_verify_unknown_table_exits_1(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    on_aws(lambda aws: write_backup(aws.s3, BUCKET, "2026-11-20", {T1: every_type_items(2)}))
    code, _, err = run(capsys, "verify", "2026-11-20", "--tables", "no-such-table")
    assert code == 1
    assert err == "ddb-backup: error: backup 2026-11-20 has no table named: no-such-table\n"


# -- usage -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["verify", "2026-13-01"], "invalid date '2026-13-01'"),
        (["verify", "yesterday"], "invalid date 'yesterday'"),
        (["restore", "latest", "--tables", "../etc"], "invalid table name '../etc'"),
        (["restore", "latest", "--map", "a-table"], "expected SOURCE=TARGET"),
        (["restore-export", "s3://b/x", "--table", "tbl"], "expected s3://BUCKET/PREFIX"),
        (["restore-export", "s3://bkt/p/AWSDynamoDB/1/"], "--table"),
        (["nonsense"], "invalid choice"),
        ([], "required: COMMAND"),
    ],
)
def test_bad_usage_exits_2(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert fragment in err


def test_missing_bucket_is_bad_usage_naming_variable_and_flag(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "list")
    assert (code, out) == (2, "")
    assert err == (
        "ddb-backup: error: environment variable BACKUP_BUCKET is required (or pass --bucket)\n"
    )


def test_flags_win_over_environment(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    async def go(aws: Any) -> None:
        await aws.s3.create_bucket(Bucket="other-backup-bucket")
        await write_backup(
            aws.s3, "other-backup-bucket", "2026-11-20", {T1: []}, prefix="elsewhere/exports"
        )

    on_aws(go)
    code, out, _ = run(
        capsys, "list", "--json", "--bucket", "other-backup-bucket", "--prefix", "elsewhere/exports"
    )
    assert code == 0
    assert [d["date"] for d in orjson.loads(out)] == ["2026-11-20"]
    code, _, err = run(capsys, "list", "--prefix", "../up")
    assert code == 2
    assert "invalid S3 prefix" in err


def test_help_and_version_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "restore-export" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("ddb-backup 0.")


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_aws_unreachable_is_one_line_and_debug_adds_the_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, moto_endpoint: str
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", _closed_port())
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    code, out, err = run(capsys, "list", "--bucket", BUCKET)
    assert (code, out) == (1, "")
    assert err.startswith("ddb-backup: error: ")
    assert "Could not connect to the endpoint URL" in err
    assert err.count("\n") == 1
    err_plain = err
    code, _, err = run(capsys, "list", "--bucket", BUCKET, "--debug")
    assert code == 1
    assert "Traceback (most recent call last)" in err
    assert err.splitlines()[-1] == err_plain.strip()


# -- download and the local-directory mode ---------------------------------------------


def test_download_then_verify_from_dir_with_no_server(
    env: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    on_aws(
        lambda aws: write_backup(
            aws.s3, BUCKET, "2026-11-20", {T1: every_type_items(9), T2: every_type_items(4)}
        )
    )
    code, out, err = run(capsys, "download", "latest", str(tmp_path))
    assert code == 0, err
    assert out.startswith(f"backup 2026-11-20 -> {tmp_path}: 16 file(s) copied")
    assert err.count("copied  ") == 16
    assert f"read it with: --from {tmp_path}" in out

    code, out, err = run(capsys, "download", "latest", str(tmp_path), "--json")
    assert code == 0
    doc = orjson.loads(out)
    assert (doc["files_copied"], doc["files_skipped"], doc["ok"]) == (10, 6, True)
    assert err.count("skipped ") == 6

    # No server at all from here on: every AWS endpoint is a closed port.
    monkeypatch.setenv("AWS_ENDPOINT_URL", _closed_port())
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.delenv("BACKUP_BUCKET")
    code, out, _ = run(capsys, "verify", "latest", "--from", str(tmp_path), "--json")
    assert code == 0
    doc = orjson.loads(out)
    assert doc["location"] == str(tmp_path.resolve())
    assert [(t["table_name"], t["items"], t["ok"]) for t in doc["tables"]] == [
        (T1, 9, True),
        (T2, 4, True),
    ]
    code, out, _ = run(capsys, "list", "--from", str(tmp_path), "--json")
    assert code == 0
    assert [(d["date"], d["state"]) for d in orjson.loads(out)] == [("2026-11-20", "complete")]
    code, out, _ = run(capsys, "show", "2026-11-20", "--from", str(tmp_path), "--json")
    assert code == 0
    assert orjson.loads(out)["tables"][0]["table_name"] == T1

    # A restore reads the copy offline but must still reach DynamoDB to check
    # (and write) the target tables: with no server, it says so and stops.
    code, out, err = run(capsys, "restore", "latest", "--from", str(tmp_path), "--dry-run")
    assert code == 1
    assert "0 successful, 0 partial, 2 failed" in out
    assert out.count("DescribeTable failed: EndpointConnectionError") == 2
    assert err.splitlines()[-1] == "ddb-backup: error: restore 2 of 2 table(s) not restored"
    assert "Traceback" not in err

    # A local file damaged after the copy is caught offline too.
    victim = next(tmp_path.rglob("*.json.gz"))
    victim.write_bytes(b"damaged")
    code, out, _ = run(capsys, "verify", "latest", "--from", str(tmp_path))
    assert code == 1
    assert victim.relative_to(tmp_path).as_posix() in out


def test_download_of_some_tables_lists_only_those(
    env: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``download --tables T1`` of a two-table backup: ``list --from DIR`` shows a
    partial copy of T1 and names T2 as not copied; downloading T2 too completes it."""
    on_aws(
        lambda aws: write_backup(
            aws.s3, BUCKET, "2026-11-20", {T1: every_type_items(9), T2: every_type_items(4)}
        )
    )
    code, _, err = run(capsys, "download", "latest", str(tmp_path), "--tables", T1)
    assert code == 0, err

    code, out, _ = run(capsys, "list", "--from", str(tmp_path), "--json")
    assert code == 0
    [entry] = orjson.loads(out)
    assert (entry["state"], entry["tables"], entry["omitted_tables"]) == ("partial", [T1], [T2])
    assert entry["item_count"] == 9
    code, out, _ = run(capsys, "list", "--from", str(tmp_path))
    assert code == 0
    assert f"not copied: {T2}" in out
    code, out, _ = run(capsys, "verify", "latest", "--from", str(tmp_path), "--json")
    assert code == 0
    assert [t["table_name"] for t in orjson.loads(out)["tables"]] == [T1]
    code, _, err = run(capsys, "verify", "latest", "--from", str(tmp_path), "--tables", T2)
    assert code != 0
    assert T2 in err

    code, _, err = run(capsys, "download", "latest", str(tmp_path), "--tables", T2)
    assert code == 0, err
    code, out, _ = run(capsys, "list", "--from", str(tmp_path), "--json")
    [entry] = orjson.loads(out)
    assert (entry["state"], entry["tables"], entry["omitted_tables"]) == ("complete", [T1, T2], [])


def test_download_of_a_corrupted_backup_exits_1(
    env: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    async def go(aws: Any) -> str:
        m = await write_backup(aws.s3, BUCKET, "2026-11-20", {T1: every_type_items(3)})
        key = (m.tables[0].files or [])[0].key
        await aws.s3.put_object(Bucket=BUCKET, Key=key, Body=b"rot")
        return key

    key = on_aws(go)
    code, out, err = run(capsys, "download", "2026-11-20", str(tmp_path))
    assert code == 1
    assert f"failed  {key}: MD5 " in err
    assert f"  - {key}: MD5 " in out
    assert "manifest.json not written" in out
    assert not (tmp_path / PREFIX / "2026-11-20" / "manifest.json").exists()


def test_from_dir_that_does_not_exist_is_bad_usage(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(capsys, "verify", "latest", "--from", str(tmp_path / "nope"))
    assert code == 2
    assert "not a directory" in err


def test_terminal_mode_download_and_list(
    env: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    on_aws(lambda aws: write_backup(aws.s3, BUCKET, "2026-11-20", {T1: every_type_items(3)}))
    monkeypatch.setenv("DDB_BACKUP_TERMINAL", "1")
    code, out, err = run(capsys, "download", "latest", str(tmp_path))
    assert code == 0
    assert "download: 8 files" in err
    assert "\x1b[" in err
    assert "copied  " not in err  # no plain lines on a terminal
    code, out, _ = run(capsys, "list")
    assert code == 0
    assert "┃" in out or "│" in out
    assert "2026-11-20" in out
    # --json stays plain JSON even on a terminal.
    code, out, _ = run(capsys, "list", "--json")
    assert orjson.loads(out)[0]["date"] == "2026-11-20"


def test_terminal_tables_show_brackets_literally(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ddb_backup.cli.display import Output

    monkeypatch.setenv("DDB_BACKUP_TERMINAL", "1")
    monkeypatch.setenv("NO_COLOR", "1")
    Output().table(["key", "error"], [["data/[x].gz", "[bold]not markup[/bold]"]], title="[t]")
    out = capsys.readouterr().out
    assert "[bold]not markup[/bold]" in out
    assert "data/[x].gz" in out
    assert "[t]" in out
    monkeypatch.setenv("DDB_BACKUP_TERMINAL", "0")
    Output().table(["key", "n"], [["a", "1"], ["bb", "22"]], right=["n"])
    assert capsys.readouterr().out == "key   n\n---  --\na     1\nbb   22\n"


def test_export_uri_with_and_without_prefix() -> None:
    import argparse

    from ddb_backup.cli import _export_uri_arg

    assert _export_uri_arg("s3://acme-exports/AWSDynamoDB/0171-c488/") == (
        "acme-exports",
        "AWSDynamoDB/0171-c488",
    )
    assert _export_uri_arg("s3://acme-exports/a/b/AWSDynamoDB/0171-c488") == (
        "acme-exports",
        "a/b/AWSDynamoDB/0171-c488",
    )
    for bad in (
        "s3://acme-exports/a/../AWSDynamoDB/1/",
        "s3://acme-exports/a//AWSDynamoDB/1/",
        "s3://acme-exports/AWSDynamoDB/",
        "https://acme-exports/AWSDynamoDB/1/",
    ):
        with pytest.raises(argparse.ArgumentTypeError):
            _export_uri_arg(bad)
