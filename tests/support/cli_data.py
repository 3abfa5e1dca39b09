"""Backups written straight into moto's S3 for the CLI and download tests.

Each table gets an AWS-shaped export folder (manifests, ``.md5`` sidecars,
several data files and an empty one) and the date gets our ``manifest.json``
listing every file with its count, MD5 and size, as a backup run writes it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson

from ddb_backup.aws import AwsClients, aws_clients
from ddb_backup.keys import manifest_key, run_state_key, table_export_prefix
from ddb_backup.manifest import (
    BackupManifest,
    BackupStatus,
    DataFile,
    TableBackup,
    TableStatus,
)
from tests.support.backups import PREFIX, SCHEMA
from tests.support.data import write_aws_export

T = TypeVar("T")


async def _data_files(s3: Any, bucket: str, folder: str) -> list[DataFile]:
    resp = await s3.get_object(Bucket=bucket, Key=f"{folder}/manifest-files.json")
    async with resp["Body"] as body:
        raw = await body.read()
    out = []
    for line in raw.splitlines():
        entry = orjson.loads(line)
        head = await s3.head_object(Bucket=bucket, Key=entry["dataFileS3Key"])
        out.append(
            DataFile(
                key=entry["dataFileS3Key"],
                item_count=entry["itemCount"],
                md5=entry["md5Checksum"],
                size=int(head["ContentLength"]),
            )
        )
    return out


async def write_backup(
    s3: Any,
    bucket: str,
    date: str,
    tables: dict[str, list[dict[str, Any]]],
    *,
    failed: dict[str, str] | None = None,
    prefix: str = PREFIX,
    environment: str = "test",
    files: int = 2,
) -> BackupManifest:
    """Write every table's export and the date's final manifest; return the manifest."""
    day = dt.date.fromisoformat(date)
    export_time = dt.datetime(day.year, day.month, day.day, 3, 0, tzinfo=dt.UTC)
    entries = []
    for name, items in tables.items():
        s3_prefix = table_export_prefix(prefix, day, name)
        info = await write_aws_export(s3, bucket, s3_prefix, items, files=files)
        data = await _data_files(s3, bucket, info["folder"])
        entries.append(
            TableBackup(
                table_name=name,
                status=TableStatus.COMPLETED,
                export_arn=info["export_arn"],
                export_time=export_time,
                s3_prefix=s3_prefix,
                export_folder=info["folder"],
                item_count=len(items),
                billed_size_bytes=sum(f.size or 0 for f in data),
                files=data,
                schema=SCHEMA,
            )
        )
    for name, error in (failed or {}).items():
        entries.append(
            TableBackup(
                table_name=name,
                status=TableStatus.FAILED,
                error=error,
                s3_prefix=table_export_prefix(prefix, day, name),
            )
        )
    ok = sum(t.status is TableStatus.COMPLETED for t in entries)
    status = (
        BackupStatus.COMPLETE
        if ok == len(entries)
        else BackupStatus.PARTIAL
        if ok
        else BackupStatus.FAILED
    )
    manifest = BackupManifest(
        backup_date=day,
        environment=environment,
        bucket=bucket,
        prefix=prefix,
        export_time=export_time,
        created_at=export_time + dt.timedelta(minutes=10),
        status=status,
        tables=entries,
    )
    await s3.put_object(Bucket=bucket, Key=manifest_key(prefix, day), Body=manifest.to_json())
    return manifest


async def write_in_progress(s3: Any, bucket: str, date: str, prefix: str = PREFIX) -> None:
    """A date with only a run state (a backup still running)."""
    day = dt.date.fromisoformat(date)
    await s3.put_object(Bucket=bucket, Key=run_state_key(prefix, day), Body=b"{}")


async def write_unreadable(s3: Any, bucket: str, date: str, prefix: str = PREFIX) -> None:
    day = dt.date.fromisoformat(date)
    await s3.put_object(Bucket=bucket, Key=manifest_key(prefix, day), Body=b"{not json")


async def get_bytes(s3: Any, bucket: str, key: str) -> bytes:
    resp = await s3.get_object(Bucket=bucket, Key=key)
    async with resp["Body"] as body:
        data: bytes = await body.read()
    return data


def on_aws(work: Callable[[AwsClients], Awaitable[T]]) -> T:
    """Run ``work(clients)`` on fresh clients in a new loop (CLI tests are
    synchronous, since ``main`` runs its own event loop)."""

    async def go() -> T:
        async with aws_clients() as aws:
            return await work(aws)

    return asyncio.run(go())


class TypedStdin(io.StringIO):
    """A stdin that claims to be a terminal, holding what the operator types."""

    def isatty(self) -> bool:
        return True


def run_cli(capsys: Any, *argv: str) -> tuple[int, str, str]:
    """``main(argv)`` in-process: (exit code, stdout, stderr); no secret ever shown."""
    from ddb_backup.cli import main
    from tests.support.data import SECRET_MARKER

    code = main(list(argv))
    captured = capsys.readouterr()
    assert SECRET_MARKER not in captured.out + captured.err
    return code, captured.out, captured.err
