"""A real daily backup of a small table (moto's export), and tampering with it
after the fact, for the drill and diff tests."""

from __future__ import annotations

import datetime as dt
import gzip
from typing import Any

import orjson

from ddb_backup import BackupConfig, run_backup
from ddb_backup.aws import AwsClients
from ddb_backup.backup import Polling
from ddb_backup.config import RestoreConfig
from ddb_backup.manifest import BackupManifest, DataFile
from tests.support.backups import put_manifest
from tests.support.data import create_table, every_type_items, gzip_lines, md5_b64, put_items

ENV = "test"
PREFIX = "native-exports"
SOURCE = "mfa-api_test_totp_global"
NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def restore_config(bucket: str) -> RestoreConfig:
    return RestoreConfig(bucket=bucket, environment=ENV, prefix=PREFIX)


async def backed_up_table(
    aws: AwsClients, bucket: str, items: list[dict[str, Any]] | None = None
) -> tuple[BackupManifest, list[dict[str, Any]]]:
    """``SOURCE`` holding ``items`` (default: 12 of every type), backed up by the
    daily backup (digest recorded); the manifest and the items."""
    items = items if items is not None else every_type_items(12)
    await create_table(aws.dynamodb, SOURCE)
    await put_items(aws.dynamodb, SOURCE, items)
    result = await run_backup(
        BackupConfig(bucket=bucket, environment=ENV, prefix=PREFIX, tables=(SOURCE,)),
        aws,
        now=NOW,
        polling=Polling(initial=0.01, maximum=0.05, factor=2.0),
    )
    assert result.status_code == 200, result.body
    assert result.manifest is not None
    return result.manifest, items


async def alter_one_item_keeping_md5s(
    aws: AwsClients, bucket: str, manifest: BackupManifest
) -> None:
    """Change one attribute of one item in a data file after the backup, and
    update the manifest's MD5 and size to match: only a content proof sees it."""
    (table,) = manifest.tables
    assert table.files is not None
    target = next(f for f in table.files if f.item_count)
    raw = await (await aws.s3.get_object(Bucket=bucket, Key=target.key))["Body"].read()
    lines = gzip.decompress(raw).splitlines()
    doc = orjson.loads(lines[0])
    doc["Item"]["ratio"] = {"N": "9.75"}
    lines[0] = orjson.dumps(doc)
    data = gzip_lines(lines)
    await aws.s3.put_object(Bucket=bucket, Key=target.key, Body=data)
    files = [
        DataFile(key=f.key, item_count=f.item_count, md5=md5_b64(data), size=len(data))
        if f.key == target.key
        else f
        for f in table.files
    ]
    altered = manifest.model_copy(update={"tables": [table.model_copy(update={"files": files})]})
    await put_manifest(aws.s3, bucket, PREFIX, altered)
