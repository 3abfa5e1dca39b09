"""Test-only incremental exports: moto 5.2 has none, so they are made here.

* :func:`write_incremental_export` writes a folder in AWS's genuine layout
  (manifests and sidecars in ``AWSDynamoDB/<id>/``, data files in the shared
  ``AWSDynamoDB/data/``, empty partitions of 20 bytes) from change lines.
* :func:`emulate_incremental_export` makes those lines from the writes that
  really happened on a moto table, read from its DynamoDB stream
  (``NEW_AND_OLD_IMAGES``). moto stamps each stream record with
  ``ApproximateCreationDateTime`` at millisecond precision (checked: the
  client receives ``datetime`` with whole milliseconds); that is the record's
  ``WriteTimestampMicros``, and the stream's sequence numbers give the order.
  Like AWS, a key changed several times in a window appears once: its
  OldImage from before the window's first change, its NewImage after the last.
  :func:`boundary` returns a time after every record so far and waits until
  the clock has passed it, so later writes fall in the next window.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import orjson
from aiobotocore.session import get_session

from ddb_backup.aws import AwsClients
from ddb_backup.export_folder import sidecar_key
from ddb_backup.incremental import micros
from ddb_backup.items import to_botocore
from ddb_backup.point_in_time import (
    PointInTimePlan,
    WindowCounts,
    apply_window,
    verify_point_in_time,
)
from ddb_backup.restore import restore_export
from ddb_backup.restore.writer import BatchWriter, generic_sender
from ddb_backup.storage import S3Storage
from tests.support.data import (
    create_table,
    md5_b64,
    to_wire,
    write_data_files,
    write_manifests,
)

TABLE_ID = "8a5c7f3e-0b1d-4c2e-9f60-1d2e3f4a5b6c"

_MS = dt.timedelta(milliseconds=1)


def change_line(
    keys: dict[str, Any],
    *,
    ts_micros: int,
    old: dict[str, Any] | None = None,
    new: dict[str, Any] | None = None,
) -> bytes:
    """One change record from botocore-form items (bytes for B)."""
    doc: dict[str, Any] = {
        "Metadata": {"WriteTimestampMicros": {"N": str(ts_micros)}},
        "Keys": to_wire(keys),
    }
    if old is not None:
        doc["OldImage"] = to_wire(old)
    if new is not None:
        doc["NewImage"] = to_wire(new)
    return orjson.dumps(doc)


def iso(when: dt.datetime) -> str:
    """AWS's manifest time format (milliseconds, ``Z``)."""
    return (
        when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
    )


async def write_incremental_export(
    s3: Any,
    bucket: str,
    s3_prefix: str,
    lines: list[bytes],
    *,
    export_from: dt.datetime,
    export_to: dt.datetime,
    table_arn: str,
    table_id: str = TABLE_ID,
    files: int = 2,
    empty_files: int = 1,
    view: str = "NEW_AND_OLD_IMAGES",
    export_id: str | None = None,
    summary_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An incremental export folder as AWS writes it; returns
    ``{"folder", "export_arn", "data_keys", "export_id"}``."""
    export_id = export_id or f"{micros(export_to) // 1000:014d}-{uuid.uuid4().hex[:8]}"
    base = f"{s3_prefix.strip('/')}/AWSDynamoDB"
    folder = f"{base}/{export_id}"
    chunks = [lines[i::files] for i in range(files)] + [[] for _ in range(empty_files)]
    files_json, data_keys = await write_data_files(s3, bucket, f"{base}/data", chunks)
    summary = {
        "version": "2023-08-01",
        "exportArn": f"{table_arn}/export/{export_id}",
        "startTime": iso(export_to + dt.timedelta(minutes=1)),
        "endTime": iso(export_to + dt.timedelta(minutes=3)),
        "tableArn": table_arn,
        "tableId": table_id,
        "exportFromTime": iso(export_from),
        "exportToTime": iso(export_to),
        "s3Bucket": bucket,
        "s3Prefix": s3_prefix.strip("/"),
        "s3SseAlgorithm": "AES256",
        "s3SseKmsKeyId": None,
        "manifestFilesS3Key": f"{folder}/manifest-files.json",
        "billedSizeBytes": sum(len(line) for line in lines),
        "itemCount": len(lines),
        "outputFormat": "DYNAMODB_JSON",
        "outputView": view,
        "exportType": "INCREMENTAL_EXPORT",
        **(summary_overrides or {}),
    }
    await write_manifests(s3, bucket, folder, files_json, orjson.dumps(summary), sidecars=True)
    return {
        "folder": folder,
        "export_arn": summary["exportArn"],
        "data_keys": data_keys,
        "export_id": export_id,
    }


async def rewrite_manifest(s3: Any, bucket: str, key: str, body: bytes) -> None:
    """Replace a manifest and its ``.md5`` sidecar consistently, as AWS would
    have written them (so a check of the sidecar alone cannot catch it)."""
    await s3.put_object(Bucket=bucket, Key=key, Body=body)
    await s3.put_object(Bucket=bucket, Key=sidecar_key(key), Body=md5_b64(body).encode())


async def edit_manifest_files(
    s3: Any, bucket: str, folder: str, edit: Callable[[dict[str, Any]], None]
) -> str:
    """Edit the first entry of a folder's ``manifest-files.json`` (see
    :func:`rewrite_manifest`); the manifest's key."""
    key = f"{folder}/manifest-files.json"
    raw = await (await s3.get_object(Bucket=bucket, Key=key))["Body"].read()
    entries = [orjson.loads(line) for line in raw.splitlines()]
    edit(entries[0])
    await rewrite_manifest(s3, bucket, key, b"".join(orjson.dumps(e) + b"\n" for e in entries))
    return key


@contextlib.asynccontextmanager
async def streams_client() -> AsyncIterator[Any]:
    """A DynamoDB Streams client on the same endpoint (``AWS_ENDPOINT_URL``)."""
    async with get_session().create_client("dynamodbstreams") as client:
        yield client


async def enable_stream(dynamodb: Any, table: str) -> None:
    await dynamodb.update_table(
        TableName=table,
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )


async def stream_records(dynamodb: Any, streams: Any, table: str) -> list[dict[str, Any]]:
    """Every record of the table's stream so far, in sequence order."""
    arn = (await dynamodb.describe_table(TableName=table))["Table"]["LatestStreamArn"]
    desc = (await streams.describe_stream(StreamArn=arn))["StreamDescription"]
    records: list[dict[str, Any]] = []
    for shard in desc["Shards"]:
        iterator = (
            await streams.get_shard_iterator(
                StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )
        )["ShardIterator"]
        while True:
            page = await streams.get_records(ShardIterator=iterator, Limit=1000)
            if not page["Records"]:
                break
            records.extend(page["Records"])
            iterator = page["NextShardIterator"]
    records.sort(key=lambda r: int(r["dynamodb"]["SequenceNumber"]))
    return records


def _stamp(record: dict[str, Any]) -> dt.datetime:
    when: dt.datetime = record["dynamodb"]["ApproximateCreationDateTime"]
    return when.astimezone(dt.UTC)


async def boundary(dynamodb: Any, streams: Any, table: str) -> dt.datetime:
    """A time after every stream record so far; returns once the clock is past it."""
    records = await stream_records(dynamodb, streams, table)
    now = dt.datetime.now(dt.UTC)
    last = max([_stamp(r) for r in records], default=now)
    cut = max(now, last).replace(microsecond=max(now, last).microsecond // 1000 * 1000) + _MS
    # Records are stamped with moto's clock (this process's): once it reads
    # cut + 1 ms, every later write falls at or after the boundary.
    await asyncio.sleep((cut + 2 * _MS - dt.datetime.now(dt.UTC)).total_seconds())
    return cut


def collapse_window(
    records: list[dict[str, Any]], export_from: dt.datetime, export_to: dt.datetime
) -> list[bytes]:
    """Change lines of ``[export_from, export_to)``: one per key, as AWS writes them."""
    first: dict[bytes, dict[str, Any]] = {}
    last: dict[bytes, dict[str, Any]] = {}
    for record in records:
        if not export_from <= _stamp(record) < export_to:
            continue
        key = orjson.dumps(
            record["dynamodb"]["Keys"], default=bytes.hex, option=orjson.OPT_SORT_KEYS
        )
        first.setdefault(key, record)
        last[key] = record
    lines = []
    for key, end in last.items():
        old = first[key]["dynamodb"].get("OldImage")
        new = end["dynamodb"].get("NewImage")
        if old is None and new is None:
            continue  # created and deleted inside the window: no change to export
        lines.append(
            change_line(end["dynamodb"]["Keys"], ts_micros=micros(_stamp(end)), old=old, new=new)
        )
    return lines


async def emulate_incremental_export(
    dynamodb: Any,
    streams: Any,
    s3: Any,
    bucket: str,
    s3_prefix: str,
    table: str,
    *,
    export_from: dt.datetime,
    export_to: dt.datetime,
    table_id: str = TABLE_ID,
    files: int = 2,
) -> dict[str, Any]:
    """The incremental export AWS would write for the table's changes in the window."""
    described = (await dynamodb.describe_table(TableName=table))["Table"]
    lines = collapse_window(await stream_records(dynamodb, streams, table), export_from, export_to)
    return await write_incremental_export(
        s3,
        bucket,
        s3_prefix,
        lines,
        export_from=export_from,
        export_to=export_to,
        table_arn=described["TableArn"],
        table_id=table_id,
        files=files,
    )


async def apply_requests(dynamodb: Any, table: str, requests: list[dict[str, Any]]) -> None:
    """Send wire-form write requests with BatchWriteItem (what the restore's writer
    will do; kept minimal here: moto never throttles)."""
    for i in range(0, len(requests), 25):
        batch = []
        for r in requests[i : i + 25]:
            if "PutRequest" in r:
                batch.append({"PutRequest": {"Item": to_botocore(r["PutRequest"]["Item"])}})
            else:
                batch.append({"DeleteRequest": {"Key": to_botocore(r["DeleteRequest"]["Key"])}})
        resp = await dynamodb.batch_write_item(RequestItems={table: batch})
        assert not resp.get("UnprocessedItems")


async def restore_plan(
    aws: AwsClients,
    storage: S3Storage,
    plan: PointInTimePlan,
    target: str,
    *,
    key_types: Mapping[str, str],
) -> list[WindowCounts]:
    """Verify every window, restore the full backup with the existing restore
    into a new table ``target``, then apply the windows in order."""
    verified = await verify_point_in_time(storage, plan, key_types=key_types)
    await create_table(aws.dynamodb, target, pitr=False)
    assert plan.backup.export_folder is not None
    full = await restore_export(storage, plan.backup.export_folder, target, aws)
    assert full.status_code == 200, full.body
    counts = []
    for window in verified:
        async with BatchWriter(target, generic_sender(aws.dynamodb)) as writer:
            counts.append(await apply_window(storage, window, writer, key_types=key_types))
    return counts
