"""Sample tables and items, and AWS-shaped export folders written into S3."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import uuid
from collections.abc import Sequence
from typing import Any

import orjson

TABLE_TYPES = ("u2f", "totp", "api-key")

#: A marker that must never appear in a log line or a response.
SECRET_MARKER = "S3CR3T-MARKER-do-not-log"


def table_name(environment: str, kind: str) -> str:
    return f"mfa-api_{environment}_{kind}_global"


def every_type_items(n: int, *, marker: str = SECRET_MARKER) -> list[dict[str, Any]]:
    """``n`` items in botocore form (bytes for B) using every DynamoDB type."""
    items = []
    for i in range(n):
        secret = hashlib.sha256(f"{marker}-{i}".encode()).digest() + bytes([0, 255, i % 256])
        items.append(
            {
                "pk": {"S": f"user-{i:05d}"},
                "sk": {"S": f"device#{i % 3}"},
                "secret": {"B": secret},
                "label": {"S": f"{marker}-{i}"},
                "counter": {"N": str(i * 7 - 3)},
                "ratio": {"N": "1.25"},
                "enabled": {"BOOL": i % 2 == 0},
                "nothing": {"NULL": True},
                "tags": {"SS": [f"t{i}", "mfa"]},
                "scores": {"NS": ["1", str(i + 2)]},
                "blobs": {"BS": [b"\x00\x01", bytes([i % 256, 7])]},
                "history": {"L": [{"S": "a"}, {"N": "2"}, {"B": b"\xff\xfe"}, {"NULL": True}]},
                "meta": {"M": {"k": {"S": "v"}, "raw": {"B": b"\x10\x20"}, "n": {"N": "-1"}}},
            }
        )
    return items


KEY_SCHEMA = [
    {"AttributeName": "pk", "KeyType": "HASH"},
    {"AttributeName": "sk", "KeyType": "RANGE"},
]
ATTRIBUTE_DEFINITIONS = [
    {"AttributeName": "pk", "AttributeType": "S"},
    {"AttributeName": "sk", "AttributeType": "S"},
]


async def create_table(
    dynamodb: Any,
    name: str,
    *,
    pitr: bool = True,
    key_schema: list[dict[str, str]] | None = None,
    attribute_definitions: list[dict[str, str]] | None = None,
) -> None:
    await dynamodb.create_table(
        TableName=name,
        KeySchema=key_schema or KEY_SCHEMA,
        AttributeDefinitions=attribute_definitions or ATTRIBUTE_DEFINITIONS,
        BillingMode="PAY_PER_REQUEST",
    )
    if pitr:
        await dynamodb.update_continuous_backups(
            TableName=name,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )


async def put_items(dynamodb: Any, name: str, items: list[dict[str, Any]]) -> None:
    for i in range(0, len(items), 25):
        batch = [{"PutRequest": {"Item": it}} for it in items[i : i + 25]]
        resp = await dynamodb.batch_write_item(RequestItems={name: batch})
        assert not resp.get("UnprocessedItems")


async def scan_all(dynamodb: Any, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    paginator = dynamodb.get_paginator("scan")
    async for page in paginator.paginate(TableName=name):
        items.extend(page["Items"])
    return items


def canonical(items: list[dict[str, Any]]) -> list[bytes]:
    """Order-independent comparable form (sets sorted) of botocore items."""

    def norm(v: Any) -> Any:
        if isinstance(v, dict):
            if len(v) == 1:
                ((t, x),) = v.items()
                if t in {"SS", "NS", "BS"}:
                    return {t: [norm(e) for e in sorted(x)]}
            return {k: norm(x) for k, x in v.items()}
        if isinstance(v, list):
            return [norm(x) for x in v]
        if isinstance(v, bytes):
            return {"__bytes__": base64.b64encode(v).decode()}
        return v

    return sorted(orjson.dumps(norm(i), option=orjson.OPT_SORT_KEYS) for i in items)


def to_wire(item: dict[str, Any]) -> dict[str, Any]:
    """botocore item -> export DynamoDB JSON (bytes as base64 text)."""

    def conv(v: Any) -> Any:
        ((t, x),) = v.items()
        if t == "B":
            return {"B": base64.b64encode(x).decode()}
        if t == "BS":
            return {"BS": [base64.b64encode(b).decode() for b in x]}
        if t == "L":
            return {"L": [conv(e) for e in x]}
        if t == "M":
            return {"M": {k: conv(e) for k, e in x.items()}}
        return v

    return {k: conv(v) for k, v in item.items()}


def gzip_lines(lines: list[bytes]) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:
        for line in lines:
            gz.write(line + b"\n")
    return buf.getvalue()


def export_lines(items: list[dict[str, Any]]) -> list[bytes]:
    return [orjson.dumps({"Item": to_wire(it)}) for it in items]


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


async def write_aws_export(
    s3: Any,
    bucket: str,
    s3_prefix: str,
    items: list[dict[str, Any]],
    *,
    files: int = 3,
    empty_files: int = 1,
    export_id: str | None = None,
    sidecars: bool = True,
    table_arn: str = "arn:aws:dynamodb:us-east-1:123456789012:table/source",
    extra_lines: Sequence[bytes] = (),
    export_time: str | None = None,
) -> dict[str, Any]:
    """Write an export folder shaped like AWS's (manifests, sidecars, data files).

    ``extra_lines`` (raw bytes, e.g. hostile lines) end the first data file and
    are counted as items; every MD5 and count in the manifests matches.
    Returns ``{"folder", "export_arn", "data_keys", "export_id"}``.
    """
    export_id = export_id or f"{uuid.uuid4().int % 10**13:013d}-{uuid.uuid4().hex[:8]}"
    folder = f"{s3_prefix.strip('/')}/AWSDynamoDB/{export_id}"
    export_arn = f"{table_arn}/export/{export_id}"
    lines = export_lines(items)
    chunks = [lines[i::files] for i in range(files)] + [[] for _ in range(empty_files)]
    chunks[0] = chunks[0] + list(extra_lines)
    files_json, data_keys = await write_data_files(s3, bucket, f"{folder}/data", chunks)
    summary = orjson.dumps(
        {
            "version": "2020-06-30",
            "exportArn": export_arn,
            "startTime": "2026-11-28T03:00:00.000Z",
            "endTime": "2026-11-28T03:05:00.000Z",
            "tableArn": table_arn,
            "tableId": str(uuid.uuid4()),
            "exportTime": export_time or "2026-11-28T03:00:00.000Z",
            "s3Bucket": bucket,
            "s3Prefix": s3_prefix.strip("/"),
            "s3SseAlgorithm": "AES256",
            "s3SseKmsKeyId": None,
            "manifestFilesS3Key": f"{folder}/manifest-files.json",
            "billedSizeBytes": 1234,
            "itemCount": len(items) + len(extra_lines),
            "outputFormat": "DYNAMODB_JSON",
        }
    )
    await write_manifests(s3, bucket, folder, files_json, summary, sidecars=sidecars)
    return {
        "folder": folder,
        "export_arn": export_arn,
        "data_keys": data_keys,
        "export_id": export_id,
    }


async def write_data_files(
    s3: Any, bucket: str, data_folder: str, chunks: list[list[bytes]]
) -> tuple[bytes, list[str]]:
    """One gzip data file per chunk of lines (an empty chunk: AWS's 20-byte empty
    partition) in ``data_folder``; returns ``manifest-files.json`` and the keys."""
    entries = []
    data_keys = []
    for chunk in chunks:
        body = gzip_lines(chunk) if chunk else gzip.compress(b"", mtime=0)
        key = f"{data_folder}/{uuid.uuid4().hex[:26]}.json.gz"
        await s3.put_object(Bucket=bucket, Key=key, Body=body)
        data_keys.append(key)
        entries.append(
            {
                "itemCount": len(chunk),
                "md5Checksum": md5_b64(body),
                "etag": hashlib.md5(body + b"etag").hexdigest() + "-1",
                "dataFileS3Key": key,
            }
        )
    return b"".join(orjson.dumps(e) + b"\n" for e in entries), data_keys


async def write_manifests(
    s3: Any, bucket: str, folder: str, files_json: bytes, summary: bytes, *, sidecars: bool
) -> None:
    """AWS's manifests of an export folder, their ``.md5`` sidecars and ``_started``."""
    await s3.put_object(Bucket=bucket, Key=f"{folder}/manifest-files.json", Body=files_json)
    await s3.put_object(Bucket=bucket, Key=f"{folder}/manifest-summary.json", Body=summary)
    if sidecars:
        await s3.put_object(
            Bucket=bucket, Key=f"{folder}/manifest-files.md5", Body=md5_b64(files_json).encode()
        )
        await s3.put_object(
            Bucket=bucket, Key=f"{folder}/manifest-summary.md5", Body=md5_b64(summary).encode()
        )
    await s3.put_object(Bucket=bucket, Key=f"{folder}/_started", Body=b"")


# -- hostile lines (issue 10) ---------------------------------------------------------

#: The issue's smuggling lines (aimed at a (pk, sk) target and at ``other-table``):
#: each closes its Item early and adds requests of its own.
SMUGGLING = [
    b'{"Item":{"pk":{"S":"b"},"sk":{"S":"2"}}}},{"DeleteRequest":{"Key":{"pk":{"S":"victim"},'
    b'"sk":{"S":"v"}}}',
    b'{"Item":{"pk":{"S":"c"},"sk":{"S":"3"}}}}],"other-table":[{"DeleteRequest":{"Key":'
    b'{"pk":{"S":"o"},"sk":{"S":"o"}}}}',
]
#: Lines an export must never pass with: no keys, an unknown type tag, trailing garbage.
BAD_LINES = {
    "keyless": b'{"Item":{"label":{"S":"no keys"}}}',
    "unknown-type": b'{"Item":{"pk":{"S":"x"},"sk":{"S":"y"},"v":{"Q":"1"}}}',
    "trailing-garbage": b'{"Item":{"pk":{"S":"x"},"sk":{"S":"y"}}} garbage',
}
