"""Vault copies against the moto server's Object Lock: verified, locked, resumable,
idempotent; conflicts and corruption reported; restorable with the primary gone."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from collections import Counter
from typing import Any

import orjson
import pytest
from botocore.exceptions import ClientError

from ddb_backup.aws import AwsClients, aws_clients
from ddb_backup.chain import Chain
from ddb_backup.cli import main
from ddb_backup.events import RestoreRequest
from ddb_backup.keys import chain_prefix, date_prefix, incremental_prefix
from ddb_backup.restore import run_restore
from ddb_backup.restore.writer import RetryPolicy
from ddb_backup.storage import S3Storage, content_md5
from ddb_backup.vault import (
    VaultConfig,
    VaultManifest,
    copy_to_vault,
    copy_windows_to_vault,
    vault_manifest_key,
    vault_state_key,
    vault_status,
    verify_vault_copy,
)
from handlers.vault import handler as vault_handler
from tests.support.backups import BUCKET, ENVIRONMENT, PREFIX, make_backup
from tests.support.cli_data import on_aws, run_cli
from tests.support.data import (
    canonical,
    create_table,
    every_type_items,
    put_items,
    scan_all,
    table_name,
)
from tests.support.faults import FaultProxy
from tests.support.lambda_context import FakeContext
from tests.support.pitr import (
    SOURCE,
    Scenario,
    append_to_chain,
    first_data_file,
    make_changes,
    record_chain,
    rewrite,
)

VAULT = "ddb-backup-test-vault"
DATE = dt.date(2026, 11, 27)
T1 = table_name(ENVIRONMENT, "totp")
T2 = table_name(ENVIRONMENT, "u2f")
#: An item no backup holds: a restore with clear_existing_data removes it.
JUNK = {"pk": {"S": "junk"}, "sk": {"S": "x"}, "label": {"S": "not in any backup"}}
FAST = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.005)


@pytest.fixture
async def vault(aws: AwsClients) -> str:
    await aws.s3.create_bucket(Bucket=VAULT, ObjectLockEnabledForBucket=True)
    return VAULT


@pytest.fixture
def config(bucket: str, vault: str) -> VaultConfig:
    return VaultConfig(
        bucket=bucket,
        environment=ENVIRONMENT,
        prefix=PREFIX,
        vault_bucket=vault,
        retention_days=30,
    )


@pytest.fixture
async def source(aws: AwsClients, bucket: str) -> dict[str, list[dict[str, Any]]]:
    tables = {T1: every_type_items(40), T2: every_type_items(10, marker="other")}
    await make_backup(aws.s3, bucket, PREFIX, DATE, tables)
    return tables


async def _under(aws: AwsClients, bucket: str, prefix: str) -> dict[str, bytes]:
    """Every object under ``prefix`` (latest versions) with its bytes."""
    out = {}
    pages = aws.s3.get_paginator("list_objects_v2")
    async for page in pages.paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            body = await (await aws.s3.get_object(Bucket=bucket, Key=obj["Key"]))["Body"].read()
            out[obj["Key"]] = body
    return out


async def drop_bucket(aws: AwsClients, bucket: str) -> None:
    """The primary account gone: every object of the bucket, then the bucket."""
    for key in await _under(aws, bucket, ""):
        await aws.s3.delete_object(Bucket=bucket, Key=key)
    await aws.s3.delete_bucket(Bucket=bucket)


async def keys_of(aws: AwsClients, bucket: str) -> dict[str, bytes]:
    """Every object under the date with its bytes."""
    return await _under(aws, bucket, date_prefix(PREFIX, DATE) + "/")


async def test_backup_copied_to_locked_vault_and_verified(
    aws: AwsClients, config: VaultConfig, source: Any, bucket: str
) -> None:
    primary = await keys_of(aws, bucket)
    result = await copy_to_vault(config, aws, DATE)

    assert result.status_code == 200, result.body()
    assert sorted(result.copied) == sorted(primary)
    assert result.skipped == []
    assert result.failed == []
    copies = await keys_of(aws, VAULT)
    manifest_key = vault_manifest_key(PREFIX, DATE)
    assert copies.pop(manifest_key, None)  # written last, beside the copies
    assert copies == primary  # same keys, same bytes
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=29)
    for key in primary:
        head = await aws.s3.head_object(Bucket=VAULT, Key=key)
        assert head["ObjectLockMode"] == "GOVERNANCE"
        assert head["ObjectLockRetainUntilDate"] > soon
    raw = await (await aws.s3.get_object(Bucket=VAULT, Key=manifest_key))["Body"].read()
    doc = VaultManifest.model_validate_json(raw)
    assert {o.key: o.md5 for o in doc.objects} == {k: content_md5(v) for k, v in primary.items()}
    assert all(o.retain_until > soon for o in doc.objects)
    status = await verify_vault_copy(config, aws, DATE)
    assert status.verified
    assert status.problems == []
    assert status.locked_until is not None
    assert status.locked_until > soon


async def test_second_run_copies_nothing_new(
    aws: AwsClients, config: VaultConfig, source: Any
) -> None:
    first = await copy_to_vault(config, aws, DATE)
    second = await copy_to_vault(config, aws, DATE)

    assert second.status_code == 200
    assert second.copied == []
    assert second.failed == []
    assert sorted(second.skipped) == sorted(first.copied)
    assert not second.manifest_written  # the same manifest is already there


async def test_interrupted_copy_resumes(
    aws: AwsClients, config: VaultConfig, source: Any, bucket: str
) -> None:
    primary = await keys_of(aws, bucket)
    total = len(primary)
    first = await copy_to_vault(config, aws, DATE, max_objects=3)
    assert first.status_code == 202
    assert len(first.copied) == 3
    assert first.remaining == total - 3
    assert first.body()["status"] == "IN_PROGRESS"
    state = await aws.s3.get_object(Bucket=bucket, Key=vault_state_key(PREFIX, DATE))
    assert len(orjson.loads(await state["Body"].read())["objects"]) == 3
    with pytest.raises(ClientError):  # no manifest before every object is verified
        await aws.s3.head_object(Bucket=VAULT, Key=vault_manifest_key(PREFIX, DATE))

    stopped = await copy_to_vault(config, aws, DATE, deadline_seconds=0)
    assert stopped.status_code == 202
    assert stopped.copied == []
    assert sorted(stopped.skipped) == sorted(first.copied)

    last = await copy_to_vault(config, aws, DATE)
    assert last.status_code == 200
    assert last.manifest_written
    assert len(last.copied) == total - 3
    assert sorted(last.skipped) == sorted(first.copied)
    assert (await verify_vault_copy(config, aws, DATE)).verified
    copies = await keys_of(aws, VAULT)
    assert copies.pop(vault_manifest_key(PREFIX, DATE), None)
    assert copies == primary  # every object of the backup, byte for byte


async def test_wrong_object_under_a_locked_key_is_a_conflict(
    aws: AwsClients, config: VaultConfig, source: Any, bucket: str
) -> None:
    key = source_data_key(await keys_of(aws, bucket))
    planted = b"not the backup"
    until = dt.datetime.now(dt.UTC) + dt.timedelta(days=5)
    await aws.s3.put_object(
        Bucket=VAULT,
        Key=key,
        Body=planted,
        ContentMD5=content_md5(planted),
        ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=until,
    )
    result = await copy_to_vault(config, aws, DATE)

    assert result.status_code == 500
    assert [f.key for f in result.failed] == [key]
    assert result.failed[0].conflict
    assert "not overwritten" in result.failed[0].reason
    assert result.body()["conflicts"] == 1
    still = await (await aws.s3.get_object(Bucket=VAULT, Key=key))["Body"].read()
    assert still == planted
    with pytest.raises(ClientError):
        await aws.s3.head_object(Bucket=VAULT, Key=vault_manifest_key(PREFIX, DATE))


async def test_corrupted_copy_detected_and_repaired(
    aws: AwsClients, config: VaultConfig, source: Any, bucket: str
) -> None:
    await copy_to_vault(config, aws, DATE)
    key = source_data_key(await keys_of(aws, bucket))
    bad = b"corrupted"
    # A versioned bucket takes a new version over a locked one (the locked one stays).
    await aws.s3.put_object(Bucket=VAULT, Key=key, Body=bad, ContentMD5=content_md5(bad))

    status = await verify_vault_copy(config, aws, DATE)
    assert not status.verified
    assert status.problems == [
        f"{key}: checksum differs from the vault manifest",
        f"{key}: not locked",
    ]
    again = await copy_to_vault(config, aws, DATE)
    assert again.copied == [key]
    assert again.status_code == 200
    assert (await verify_vault_copy(config, aws, DATE)).verified


async def test_delete_inside_retention_refused_and_reported(
    aws: AwsClients, config: VaultConfig, source: Any, bucket: str
) -> None:
    await copy_to_vault(config, aws, DATE)
    key = source_data_key(await keys_of(aws, bucket))
    head = await aws.s3.head_object(Bucket=VAULT, Key=key)
    with pytest.raises(ClientError) as refused:
        await aws.s3.delete_object(Bucket=VAULT, Key=key, VersionId=head["VersionId"])
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    # A delete without a version only hides the locked version behind a marker:
    # the status says so, and the data is still there.
    await aws.s3.delete_object(Bucket=VAULT, Key=key)
    status = await verify_vault_copy(config, aws, DATE)
    assert status.problems == [f"{key}: missing from the vault"]
    kept = await aws.s3.get_object(Bucket=VAULT, Key=key, VersionId=head["VersionId"])
    assert content_md5(await kept["Body"].read()) == content_md5(
        await (await aws.s3.get_object(Bucket=bucket, Key=key))["Body"].read()
    )


async def test_restore_from_the_vault_alone(
    aws: AwsClients, config: VaultConfig, source: dict[str, list[dict[str, Any]]], bucket: str
) -> None:
    assert (await copy_to_vault(config, aws, DATE)).status_code == 200
    await drop_bucket(aws, bucket)
    for table in source:
        await create_table(aws.dynamodb, table)

    result = await run_restore(
        config.restore_config(), RestoreRequest(backup_date="latest"), aws, retry=FAST
    )

    assert result.status_code == 200, result.body
    for table, items in source.items():
        assert canonical(await scan_all(aws.dynamodb, table)) == canonical(items)
    statuses = await vault_status(config, aws)
    assert [(s.date, s.final_in_primary, s.verified) for s in statuses] == [(DATE, False, True)]


async def test_large_object_copied_in_parts(
    aws: AwsClients, config: VaultConfig, source: Any, bucket: str
) -> None:
    big_key = f"{date_prefix(PREFIX, DATE)}/big.bin"
    big = hashlib.sha256(b"seed").digest() * (6 * 1024 * 1024 // 32)
    await aws.s3.put_object(Bucket=bucket, Key=big_key, Body=big)
    part = 5 * 1024 * 1024

    result = await copy_to_vault(config, aws, DATE, multipart_threshold=part, part_size=part)

    assert result.status_code == 200
    assert big_key in result.copied
    head = await aws.s3.head_object(Bucket=VAULT, Key=big_key)
    assert head["ETag"].strip('"').endswith("-2")  # two parts
    assert head["ObjectLockMode"] == "GOVERNANCE"
    copy = await (await aws.s3.get_object(Bucket=VAULT, Key=big_key))["Body"].read()
    assert copy == big
    raw = await (await aws.s3.get_object(Bucket=VAULT, Key=vault_manifest_key(PREFIX, DATE)))[
        "Body"
    ].read()
    entry = next(o for o in VaultManifest.model_validate_json(raw).objects if o.key == big_key)
    assert entry.verified_by == "read"
    assert entry.md5 == content_md5(big)


async def test_not_final_date_is_refused(aws: AwsClients, config: VaultConfig) -> None:
    from ddb_backup.errors import BackupNotFoundError

    with pytest.raises(BackupNotFoundError):
        await copy_to_vault(config, aws, DATE)
    assert (await aws.s3.list_objects_v2(Bucket=VAULT)).get("KeyCount", 0) == 0


def source_data_key(objects: dict[str, bytes]) -> str:
    return sorted(k for k in objects if k.endswith(".json.gz"))[0]


async def test_damaged_primary_object_is_not_copied(
    aws: AwsClients, config: VaultConfig, source: Any, bucket: str
) -> None:
    key = source_data_key(await keys_of(aws, bucket))
    await aws.s3.put_object(Bucket=bucket, Key=key, Body=b"bit rot")

    result = await copy_to_vault(config, aws, DATE)

    assert [(f.key, f.reason) for f in result.failed] == [
        (key, "the primary object differs from its manifest's MD5; not copied")
    ]
    assert result.status_code == 500
    with pytest.raises(ClientError):
        await aws.s3.head_object(Bucket=VAULT, Key=key)


# -- handler and CLI ----------------------------------------------------------------


@pytest.fixture
def vault_env(moto: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The vault Lambda's environment, and a final backup with its vault bucket."""
    env = {
        "BACKUP_BUCKET": BUCKET,
        "ENVIRONMENT": ENVIRONMENT,
        "S3_EXPORTS_PREFIX": PREFIX,
        "VAULT_BUCKET": VAULT,
        "VAULT_RETENTION_DAYS": "30",
    }
    for var in ("BACKUP_BUCKET_OWNER", "VAULT_BUCKET_OWNER", "VAULT_KMS_KEY_ID", "VAULT_LOCK_MODE"):
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)

    async def setup() -> None:
        async with aws_clients() as clients:
            await clients.s3.create_bucket(Bucket=BUCKET)
            await clients.s3.create_bucket(Bucket=VAULT, ObjectLockEnabledForBucket=True)
            await make_backup(clients.s3, BUCKET, PREFIX, DATE, {T1: every_type_items(5)})

    asyncio.run(setup())
    return env


def _emf(out: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]


def test_handler_copies_the_latest_final_date_and_emits_metrics(
    vault_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    out = vault_handler({}, FakeContext(remaining_ms=900_000))

    assert out["statusCode"] == 200, out["body"]
    body = out["body"]
    assert body["backup_date"] == DATE.isoformat()
    assert body["copied"] > 0
    assert (body["skipped"], body["failed"], body["remaining"]) == (0, 0, 0)
    [metrics] = _emf(capsys.readouterr().out)
    assert metrics["final_backups_without_vault_copy"] == 0
    assert metrics["vault_objects_copied"] == body["copied"]

    assert body["windows"]["windows"] == 0  # no point-in-time chain here

    again = vault_handler({"backup_date": DATE.isoformat()}, None)
    assert again["statusCode"] == 200
    assert (again["body"]["copied"], again["body"]["skipped"]) == (0, body["copied"])


def test_handler_refuses_unknown_fields_and_missing_dates(
    vault_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    bad = vault_handler({"backupDate": DATE.isoformat()}, None)
    assert bad["statusCode"] == 400
    assert any(p.startswith("backupDate:") for p in bad["body"]["problems"])
    missing = vault_handler({"backup_date": "2026-11-20"}, None)
    assert missing["statusCode"] == 404
    assert "2026-11-20" in missing["body"]["error"]


def test_handler_counts_a_missing_copy_when_misconfigured(
    vault_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VAULT_LOCK_MODE", "SOMETIMES")
    out = vault_handler({}, None)
    assert out["statusCode"] == 500
    assert "VAULT_LOCK_MODE" in out["body"]["error"]
    [metrics] = _emf(capsys.readouterr().out)
    assert metrics["final_backups_without_vault_copy"] == 1


def test_cli_vault_copy_and_status(
    vault_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("VAULT_RETENTION_DAYS")
    assert main(["vault-copy", "latest"]) == 2
    assert "VAULT_RETENTION_DAYS" in capsys.readouterr().err

    assert main(["vault-copy", DATE.isoformat(), "--retention-days", "7", "--json"]) == 0
    copied = orjson.loads(capsys.readouterr().out)
    assert copied["status"] == "COMPLETE"
    assert copied["copied"] > 0

    assert main(["vault-status", "--json"]) == 0
    status = orjson.loads(capsys.readouterr().out)
    assert status["windows"] == []  # no point-in-time chain here
    [row] = status["dates"]
    assert row["date"] == DATE.isoformat()
    assert (row["final_in_primary"], row["in_vault"], row["verified"]) == (True, True, True)
    locked = dt.datetime.fromisoformat(row["locked_until"])
    assert locked > dt.datetime.now(dt.UTC) + dt.timedelta(days=6)

    assert main(["vault-status"]) == 0
    assert "yes" in capsys.readouterr().out

    # The read commands work on the vault as on the primary (--bucket).
    assert main(["list", "--bucket", VAULT, "--json"]) == 0
    [entry] = orjson.loads(capsys.readouterr().out)
    assert (entry["date"], entry["state"]) == (DATE.isoformat(), "complete")
    assert main(["verify", DATE.isoformat(), "--bucket", VAULT]) == 0


def test_cli_vault_status_fails_for_a_final_backup_without_copy(
    vault_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["vault-status", "--json"]) == 1
    [row] = orjson.loads(capsys.readouterr().out)["dates"]
    assert (row["final_in_primary"], row["in_vault"], row["verified"]) == (True, False, False)


async def test_a_vault_without_object_lock_is_refused_and_reported(
    aws: AwsClients, bucket: str, source: Any
) -> None:
    await aws.s3.create_bucket(Bucket="ddb-backup-unlocked")
    config = VaultConfig(
        bucket=bucket,
        environment=ENVIRONMENT,
        prefix=PREFIX,
        vault_bucket="ddb-backup-unlocked",
        retention_days=30,
    )

    result = await copy_to_vault(config, aws, DATE)

    assert result.status_code == 500
    assert result.copied == []
    assert len(result.failed) == len(await keys_of(aws, bucket))
    assert all(f.reason.startswith("CopyObject refused by S3 (") for f in result.failed)
    assert all("Object Lock" in f.reason for f in result.failed)
    # Nothing unlocked was written.
    assert (await aws.s3.list_objects_v2(Bucket="ddb-backup-unlocked")).get("KeyCount", 0) == 0


# -- point-in-time windows ------------------------------------------------------------


async def _chain_objects(aws: AwsClients, bucket: str, chain: Chain) -> dict[str, bytes]:
    """What the vault must hold of ``chain``: each window's folder, its data files, the records."""
    want: dict[str, bytes] = {}
    for w in chain.windows:
        want |= await _under(aws, bucket, w.folder + "/")
        for f in w.files:
            want |= await _under(aws, bucket, f.key)
    return want | await _under(aws, bucket, chain_prefix(PREFIX, SOURCE, chain.chain_id) + "/")


async def test_verified_windows_copied_locked_and_unverified_ones_left(
    aws: AwsClients, config: VaultConfig, bucket: str
) -> None:
    sc = await make_changes(aws, bucket)
    storage = S3Storage(aws.s3, bucket)
    chain = await record_chain(storage, sc, windows=2)  # the third is not verified yet
    want = await _chain_objects(aws, bucket, chain)
    record_md5 = {f.key: f.md5 for w in chain.windows for f in w.files}
    assert record_md5
    assert all(record_md5.values())

    result = await copy_windows_to_vault(config, aws)

    assert result.status_code == 200, result.body()
    assert (result.windows, result.failed, result.skipped) == (2, [], [])
    assert sorted(result.copied) == sorted(want)
    in_vault = await _under(aws, VAULT, incremental_prefix(PREFIX, SOURCE) + "/")
    assert in_vault == want  # same keys and bytes; nothing of the unverified window
    assert not any(k.startswith(sc.windows[2] + "/") for k in in_vault)
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=29)
    for key, body in want.items():
        head = await aws.s3.head_object(Bucket=VAULT, Key=key)
        assert head["ObjectLockMode"] == "GOVERNANCE"
        assert head["ObjectLockRetainUntilDate"] > soon
        assert content_md5(body) == record_md5.get(key, content_md5(body))

    again = await copy_windows_to_vault(config, aws)
    assert (again.status_code, again.copied, again.failed) == (200, [], [])
    assert sorted(again.skipped) == sorted(want)

    longer = await append_to_chain(storage, chain, sc.windows[2])  # verified now
    third = await copy_windows_to_vault(config, aws)
    added = set(await _chain_objects(aws, bucket, longer)) - set(want)
    assert third.status_code == 200
    assert sorted(third.copied) == sorted(added)
    assert any(k.startswith(sc.windows[2] + "/") for k in added)


async def test_window_data_file_differing_from_its_record_is_not_copied(
    aws: AwsClients, config: VaultConfig, bucket: str
) -> None:
    sc = await make_changes(aws, bucket)
    chain = await record_chain(S3Storage(aws.s3, bucket), sc, windows=1)
    damaged = await first_data_file(aws, bucket, sc.windows[0])
    await rewrite(aws, bucket, damaged, b"not the exported bytes")

    result = await copy_windows_to_vault(config, aws)

    assert result.status_code == 500
    assert [f.key for f in result.failed] == [damaged]
    assert "differs" in result.failed[0].reason
    # No chain record in the vault names a window the vault does not hold whole.
    records = chain_prefix(PREFIX, SOURCE, chain.chain_id) + "/"
    assert await _under(aws, VAULT, records) == {}
    assert result.remaining == len(await _under(aws, bucket, records))


def test_handler_copies_the_windows_after_the_date(vault_env: dict[str, str]) -> None:
    async def chain() -> Chain:
        async with aws_clients() as clients:
            sc = await make_changes(clients, BUCKET)
            return await record_chain(S3Storage(clients.s3, BUCKET), sc)

    made = asyncio.run(chain())

    out = vault_handler({"backup_date": DATE.isoformat()}, FakeContext(remaining_ms=900_000))

    assert out["statusCode"] == 200, out["body"]
    windows = out["body"]["windows"]
    assert windows["windows"] == len(made.windows) == 3
    assert windows["copied"] > 0
    assert (windows["failed"], windows["remaining"]) == (0, 0)
    again = vault_handler({"backup_date": DATE.isoformat()}, None)
    assert (again["body"]["windows"]["copied"], again["body"]["windows"]["skipped"]) == (
        0,
        windows["copied"],
    )


def test_cli_vault_copy_copies_the_windows_and_chain_records_too(
    vault_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """``vault-copy`` does what the vault function does: the date, then every
    verified window and the chain's records, which land whole in the vault."""

    async def setup(aws: AwsClients) -> Chain:
        sc = await make_changes(aws, BUCKET)
        return await record_chain(S3Storage(aws.s3, BUCKET), sc)

    chain = on_aws(setup)

    code, out, _ = run_cli(capsys, "vault-copy", DATE.isoformat(), "--json")

    assert code == 0, out
    body = orjson.loads(out)
    assert (body["status"], body["failed"]) == ("COMPLETE", 0)
    windows = body["windows"]
    assert (windows["windows"], windows["failed"], windows["remaining"]) == (3, 0, 0)
    want = on_aws(lambda aws: _chain_objects(aws, BUCKET, chain))
    in_vault = on_aws(lambda aws: _under(aws, VAULT, incremental_prefix(PREFIX, SOURCE) + "/"))
    assert in_vault == want  # every window's folder and data files, and the chain records
    assert any(k.startswith(chain_prefix(PREFIX, SOURCE, chain.chain_id) + "/") for k in want)
    assert windows["copied"] == len(want)

    code, out, _ = run_cli(capsys, "vault-copy", "latest")
    assert code == 0
    assert f"point-in-time windows: 3, 0 copied, {len(want)} already in the vault" in out


def test_point_in_time_restore_from_the_vault_alone(
    vault_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The vault function copies the full backup and its windows; with the primary
    bucket gone, ``restore --at`` on the vault (docs/vault.md) lands on the boundary."""

    async def setup(aws: AwsClients) -> Scenario:
        sc = await make_changes(aws, BUCKET)  # DATE's full backup is the chain's base
        await record_chain(S3Storage(aws.s3, BUCKET), sc)
        return sc

    sc = on_aws(setup)
    copied = vault_handler({"backup_date": DATE.isoformat()}, FakeContext(remaining_ms=900_000))
    assert copied["statusCode"] == 200, copied["body"]
    assert copied["body"]["windows"]["windows"] == len(sc.windows)
    on_aws(lambda aws: drop_bucket(aws, BUCKET))
    on_aws(lambda aws: put_items(aws.dynamodb, SOURCE, [JUNK]))
    capsys.readouterr()  # the vault function's metrics line

    flags = ["--bucket", VAULT, "--tables", SOURCE, "--clear-existing-data", "--yes", "--json"]
    for i in (2, 1):  # a boundary inside the chain, then an earlier one
        code, out, err = run_cli(capsys, "restore", "--at", sc.bounds[i].isoformat(), *flags)
        assert code == 0, err
        pit = orjson.loads(out)["body"]["restore_results"][0]["point_in_time"]
        assert dt.datetime.fromisoformat(pit["restored_to"]) == sc.bounds[i]
        assert pit["full_backup_date"] == DATE.isoformat()
        assert len(pit["windows"]) == i
        table = on_aws(lambda aws: scan_all(aws.dynamodb, SOURCE))
        assert canonical(table) == canonical(sc.snapshots[i])  # item for item, junk gone


async def test_each_chain_record_is_read_once_per_copy(
    faulty_aws: FaultProxy, aws: AwsClients, config: VaultConfig, bucket: str
) -> None:
    """With SSE-KMS ETags (no MD5) every source object is read to learn its MD5: a
    chain record already read to plan the copy is not read again."""
    kms = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}
    await aws.s3.put_bucket_encryption(
        Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [kms]}
    )
    chain = await record_chain(S3Storage(aws.s3, bucket), await make_changes(aws, bucket))
    records = await _under(aws, bucket, chain_prefix(PREFIX, SOURCE, chain.chain_id) + "/")
    assert len(records) == 1 + len(chain.windows)  # chain.json and one per window
    head = await aws.s3.head_object(Bucket=bucket, Key=next(iter(records)))
    assert head["ServerSideEncryption"] == "aws:kms"
    faulty_aws.requests.clear()

    async with aws_clients() as through_proxy:
        result = await copy_windows_to_vault(config, through_proxy)

    assert result.status_code == 200, result.body()
    reads = Counter(
        r.path.partition("?")[0].removeprefix(f"/{bucket}/")
        for r in faulty_aws.requests_for("s3", "GetObject")
        if r.path.startswith(f"/{bucket}/")
    )
    assert {k: reads[k] for k in records} == dict.fromkeys(records, 1)
    assert max(reads.values()) == 1  # nor any other object of the primary
    want = await _chain_objects(aws, bucket, chain)
    assert await _under(aws, VAULT, incremental_prefix(PREFIX, SOURCE) + "/") == want


def test_cli_vault_status_counts_each_tables_windows(
    vault_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Per table: windows the primary's records list, copied, verified, missing, and
    the end of the newest verified one; exit 1 until every window has a verified copy."""

    async def setup(aws: AwsClients) -> tuple[Scenario, Chain]:
        sc = await make_changes(aws, BUCKET)
        return sc, await record_chain(S3Storage(aws.s3, BUCKET), sc, windows=2)

    sc, chain = on_aws(setup)

    def windows_status(expect_code: int) -> tuple[Any, ...]:
        code, out, _ = run_cli(capsys, "vault-status", "--json")
        assert code == expect_code
        [row] = orjson.loads(out)["windows"]
        assert row["table"] == SOURCE
        counts = ("windows_in_primary", "copied", "verified", "missing", "last_window_end")
        return tuple(row[k] for k in counts)

    def copy() -> None:
        assert vault_handler({"backup_date": DATE.isoformat()}, None)["statusCode"] == 200
        capsys.readouterr()  # the vault function's metrics line

    assert windows_status(1) == (2, 0, 0, 2, None)
    copy()
    assert windows_status(0) == (2, 2, 2, 0, sc.bounds[2].isoformat())

    on_aws(lambda aws: append_to_chain(S3Storage(aws.s3, BUCKET), chain, sc.windows[2]))
    assert windows_status(1) == (3, 2, 2, 1, sc.bounds[2].isoformat())  # not copied yet
    copy()
    assert windows_status(0) == (3, 3, 3, 0, sc.bounds[3].isoformat())

    # A replaced copy of the newest window's data: that window is no longer verified.
    damaged = on_aws(lambda aws: first_data_file(aws, VAULT, sc.windows[2]))
    on_aws(lambda aws: rewrite(aws, VAULT, damaged, b"not the exported bytes"))
    code, out, _ = run_cli(capsys, "vault-status", "--json")
    assert code == 1
    [row] = orjson.loads(out)["windows"]
    assert (row["copied"], row["verified"], row["missing"]) == (3, 2, 0)
    assert row["last_window_end"] == sc.bounds[2].isoformat()
    assert row["problems"] == [
        f"{damaged}: checksum differs from the window's record",
        f"{damaged}: not locked",
    ]

    code, out, _ = run_cli(capsys, "vault-status")
    assert code == 1
    assert f"point-in-time windows in s3://{VAULT}/{PREFIX}/" in out
    [line] = [x for x in out.splitlines() if x.lstrip().startswith(SOURCE)]
    assert line.split()[:5] == [SOURCE, "3", "3", "2", "0"]
    assert f"{damaged}: checksum differs" in line
