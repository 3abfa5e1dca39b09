"""Backups written straight into S3 for restore tests: AWS-shaped export
folders (via :func:`tests.support.data.write_aws_export`) plus our manifest,
or the manifest of the system this replaces."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import orjson

from ddb_backup.keys import manifest_key, table_export_prefix
from ddb_backup.manifest import (
    BackupManifest,
    BackupStatus,
    DataFile,
    TableBackup,
    TableSchema,
    TableStatus,
)
from tests.support.data import ATTRIBUTE_DEFINITIONS, KEY_SCHEMA, write_aws_export
from tests.support.incremental import iso

#: The bucket, environment and exports prefix every test uses (what Terraform would set).
BUCKET = "ddb-backup-test-bucket"
PREFIX = "native-exports"
ENVIRONMENT = "test"

SCHEMA = TableSchema.model_validate(
    {
        "KeySchema": KEY_SCHEMA,
        "AttributeDefinitions": ATTRIBUTE_DEFINITIONS,
        "BillingMode": "PAY_PER_REQUEST",
    }
)


async def write_table_export(
    s3: Any,
    bucket: str,
    prefix: str,
    date: dt.date,
    table: str,
    items: list[dict[str, Any]],
    *,
    files: int = 3,
    empty_files: int = 1,
    extra_lines: Sequence[bytes] = (),
    export_time: dt.datetime | None = None,
) -> tuple[TableBackup, dict[str, Any]]:
    """One table's AWS-shaped export and its entry for our manifest (``extra_lines``:
    see :func:`~tests.support.data.write_aws_export`; ``export_time``: the time the
    export reflects, in its summary and our manifest)."""
    s3_prefix = table_export_prefix(prefix, date, table)
    export = await write_aws_export(
        s3,
        bucket,
        s3_prefix,
        items,
        files=files,
        empty_files=empty_files,
        table_arn=f"arn:aws:dynamodb:us-east-1:123456789012:table/{table}",
        extra_lines=extra_lines,
        export_time=iso(export_time) if export_time else None,
    )
    # Counts and MD5s as AWS's manifest-files.json lists them.
    raw = await (await s3.get_object(Bucket=bucket, Key=f"{export['folder']}/manifest-files.json"))[
        "Body"
    ].read()
    data_files = []
    for line in raw.splitlines():
        entry = orjson.loads(line)
        head = await s3.head_object(Bucket=bucket, Key=entry["dataFileS3Key"])
        data_files.append(
            DataFile(
                key=entry["dataFileS3Key"],
                item_count=entry["itemCount"],
                md5=entry["md5Checksum"],
                size=head["ContentLength"],
            )
        )
    tb = TableBackup(
        table_name=table,
        status=TableStatus.COMPLETED,
        export_arn=export["export_arn"],
        s3_prefix=s3_prefix,
        export_folder=export["folder"],
        export_time=export_time,
        item_count=len(items) + len(extra_lines),
        files=data_files,
        schema=SCHEMA,
    )
    return tb, export


async def make_backup(
    s3: Any,
    bucket: str,
    prefix: str,
    date: str | dt.date,
    tables: dict[str, list[dict[str, Any]]],
    *,
    files: int = 3,
    empty_files: int = 1,
    environment: str = ENVIRONMENT,
    failed_tables: tuple[str, ...] = (),
    extra_lines: dict[str, list[bytes]] | None = None,
    export_time: dt.datetime | None = None,
) -> BackupManifest:
    """Write every table's export and our ``manifest.json``; return the manifest.

    ``extra_lines``: raw lines added to a table's first data file, with every
    MD5 and count matching them."""
    day = date if isinstance(date, dt.date) else dt.date.fromisoformat(date)
    entries = []
    for table, items in tables.items():
        tb, _ = await write_table_export(
            s3,
            bucket,
            prefix,
            day,
            table,
            items,
            files=files,
            empty_files=empty_files,
            extra_lines=(extra_lines or {}).get(table, ()),
            export_time=export_time,
        )
        entries.append(tb)
    for table in failed_tables:
        entries.append(
            TableBackup(
                table_name=table,
                status=TableStatus.FAILED,
                error="export failed",
                s3_prefix=table_export_prefix(prefix, day, table),
            )
        )
    manifest = BackupManifest(
        backup_date=day,
        environment=environment,
        bucket=bucket,
        prefix=prefix,
        status=BackupStatus.COMPLETE if not failed_tables else BackupStatus.PARTIAL,
        tables=entries,
    )
    await put_manifest(s3, bucket, prefix, manifest)
    return manifest


async def put_manifest(s3: Any, bucket: str, prefix: str, manifest: BackupManifest) -> None:
    await s3.put_object(
        Bucket=bucket, Key=manifest_key(prefix, manifest.backup_date), Body=manifest.to_json()
    )


async def make_legacy_backup(
    s3: Any,
    bucket: str,
    prefix: str,
    date: str,
    tables: dict[str, list[dict[str, Any]]],
    *,
    decoy_folder: bool = True,
) -> dict[str, Any]:
    """A backup as the replaced system wrote it: ``exports[]``, no per-file checksums.

    With ``decoy_folder`` a second export folder sits next to the real one, so
    only the export id from the ARN picks the right folder.
    """
    day = dt.date.fromisoformat(date)
    exports = []
    for table, items in tables.items():
        s3_prefix = table_export_prefix(prefix, day, table)
        if decoy_folder:
            await write_aws_export(s3, bucket, s3_prefix, items[:1], files=1, empty_files=0)
        export = await write_aws_export(s3, bucket, s3_prefix, items, files=2, empty_files=1)
        exports.append(
            {
                "table_name": table,
                # The replaced system stored the prefix with a trailing slash.
                "s3_prefix": f"{s3_prefix}/",
                "status": "COMPLETED",
                "export_arn": export["export_arn"],
                "item_count": len(items),
            }
        )
    doc = {
        "backup_date": date,
        "environment": ENVIRONMENT,
        "backup_type": "DYNAMODB_NATIVE_EXPORT",
        "exports": exports,
    }
    await s3.put_object(Bucket=bucket, Key=manifest_key(prefix, day), Body=orjson.dumps(doc))
    return doc
