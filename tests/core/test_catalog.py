"""Backup dates, their states, and what "latest" resolves to."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest

from ddb_backup.aws import AwsClients
from ddb_backup.catalog import BackupState, list_backups, resolve_backup
from ddb_backup.errors import BackupNotFoundError
from ddb_backup.manifest import BackupManifest, BackupStatus, TableBackup, TableStatus
from ddb_backup.storage import S3Storage

PREFIX = "native-exports"


def manifest(date: str, *tables: tuple[str, TableStatus]) -> bytes:
    ok = [s for _, s in tables if s is TableStatus.COMPLETED]
    return BackupManifest(
        backup_date=dt.date.fromisoformat(date),
        environment="test",
        prefix=PREFIX,
        status=BackupStatus.COMPLETE if len(ok) == len(tables) else BackupStatus.PARTIAL,
        tables=[
            TableBackup(table_name=n, status=s, s3_prefix=f"{PREFIX}/{date}/{n}", item_count=1)
            for n, s in tables
        ],
    ).to_json()


@pytest.fixture
async def catalog(aws: AwsClients, bucket: str) -> S3Storage:
    s3 = aws.s3
    put = s3.put_object
    ok, failed = TableStatus.COMPLETED, TableStatus.FAILED
    await put(
        Bucket=bucket,
        Key=f"{PREFIX}/2026-11-20/manifest.json",
        Body=manifest("2026-11-20", ("tbl-a", ok), ("tbl-b", ok)),
    )
    await put(
        Bucket=bucket,
        Key=f"{PREFIX}/2026-11-21/manifest.json",
        Body=manifest("2026-11-21", ("tbl-a", ok), ("tbl-b", failed)),
    )
    await put(Bucket=bucket, Key=f"{PREFIX}/2026-11-22/manifest.json", Body=b"{not json")
    await put(Bucket=bucket, Key=f"{PREFIX}/2026-11-23/_run/state.json", Body=b"{}")
    legacy = {
        "backup_date": "2026-11-19",
        "environment": "test",
        "backup_type": "DYNAMODB_NATIVE_EXPORT",
        "exports": [
            {
                "table_name": "tbl-a",
                "s3_prefix": f"{PREFIX}/2026-11-19/tbl-a/",
                "status": "COMPLETED",
                "export_arn": "arn:x/export/01",
                "item_count": 3,
            }
        ],
    }
    await put(Bucket=bucket, Key=f"{PREFIX}/2026-11-19/manifest.json", Body=orjson.dumps(legacy))
    return S3Storage(s3, bucket)


async def test_list_backups_newest_first_with_states(catalog: S3Storage) -> None:
    entries = await list_backups(catalog, PREFIX)
    assert [(e.date.isoformat(), e.state) for e in entries] == [
        ("2026-11-23", BackupState.IN_PROGRESS),
        ("2026-11-22", BackupState.UNREADABLE),
        ("2026-11-21", BackupState.PARTIAL),
        ("2026-11-20", BackupState.COMPLETE),
        ("2026-11-19", BackupState.COMPLETE),
    ]
    assert "not JSON" in (entries[1].error or "")
    assert entries[4].manifest is not None
    assert entries[4].manifest.legacy


async def test_latest_skips_incomplete_and_names_them(catalog: S3Storage) -> None:
    resolved = await resolve_backup(catalog, PREFIX, "latest", ["tbl-b"])
    assert resolved.date == dt.date(2026, 11, 20)
    assert [s.date.isoformat() for s in resolved.skipped] == [
        "2026-11-23",
        "2026-11-22",
        "2026-11-21",
    ]
    # tbl-a alone is complete on the 21st.
    assert (await resolve_backup(catalog, PREFIX, "latest", ["tbl-a"])).date == dt.date(
        2026, 11, 21
    )


async def test_explicit_date_without_table_is_refused(catalog: S3Storage) -> None:
    with pytest.raises(BackupNotFoundError, match="tbl-b"):
        await resolve_backup(catalog, PREFIX, "2026-11-21", ["tbl-b"])
    with pytest.raises(BackupNotFoundError, match="no manifest"):
        await resolve_backup(catalog, PREFIX, "2026-10-01")
