"""Bad input of every kind: a clear error, the first problem named, nothing touched.

* Events (through the Lambda handler): wrong types, strings for booleans and
  numbers, out-of-range ``max_workers``, malformed and future dates, unsafe or
  unknown table names, unknown fields, empty and non-object events, oversized
  lists -> 400, nothing read or written, no traceback in the response.
* Backups (through the restore core, always with ``clear_existing_data``):
  a missing or broken manifest, one pointing outside the backup's prefix,
  missing or damaged data files, non-items, a key attribute missing, an item
  over 400 KB, checksum and count mismatches -> an error naming the problem
  and the file, and the target table exactly as it was.
* The foundation guards on their own (``load_manifest``, ``read_export_folder``,
  ``verify_file``, ``check_key_inside``) with crafted names and documents.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiobotocore.session import get_session

from ddb_backup.aws import AwsClients, aws_clients
from ddb_backup.config import RestoreConfig
from ddb_backup.errors import (
    ChecksumMismatchError,
    CorruptDataError,
    DataFileMissingError,
    ItemCountMismatchError,
    ManifestError,
    UnsafeNameError,
)
from ddb_backup.events import RestoreRequest
from ddb_backup.export_folder import ExpectedFile, read_export_folder
from ddb_backup.keys import check_key_inside, manifest_key
from ddb_backup.manifest import BackupManifest, load_manifest
from ddb_backup.restore import RestoreResult, restore_export, run_restore
from ddb_backup.restore.lease import LeaseRecord
from ddb_backup.restore.writer import RetryPolicy
from ddb_backup.storage import S3Storage
from ddb_backup.verify import verify_file
from handlers.restore import handler
from tests.support.backups import BUCKET, ENVIRONMENT, PREFIX, make_backup, put_manifest
from tests.support.data import (
    canonical,
    create_table,
    every_type_items,
    gzip_lines,
    md5_b64,
    put_items,
    scan_all,
    table_name,
    to_wire,
    write_aws_export,
)
from tests.support.lambda_context import FakeContext

DATE = "2026-11-27"
TABLE = table_name(ENVIRONMENT, "totp")
SOURCE = every_type_items(30)
BEFORE = [{"pk": {"S": f"old-{i}"}, "sk": {"S": "x"}, "v": {"N": str(i)}} for i in range(6)]
FAST = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.002)
CONFIG = RestoreConfig(bucket=BUCKET, environment=ENVIRONMENT, prefix=PREFIX)
#: One session for the sync (handler) tests: its service models are loaded once.
SESSION = get_session()


async def _setup(aws: AwsClients) -> BackupManifest:
    await aws.s3.create_bucket(Bucket=BUCKET)
    manifest = await make_backup(aws.s3, BUCKET, PREFIX, DATE, {TABLE: SOURCE})
    await create_table(aws.dynamodb, TABLE)
    await put_items(aws.dynamodb, TABLE, BEFORE)
    return manifest


async def _snapshot(aws: AwsClients) -> tuple[list[bytes], list[tuple[str, str]]]:
    """The table's items and every S3 object (key, ETag), but for restore leases,
    which must all be released (a refused restore leaves its lease released)."""
    items = canonical(await scan_all(aws.dynamodb, TABLE))
    objects: list[tuple[str, str]] = []
    async for page in aws.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for o in page.get("Contents", []):
            if "/_restore/_leases/" in o["Key"]:
                body = await (await aws.s3.get_object(Bucket=BUCKET, Key=o["Key"]))["Body"].read()
                assert LeaseRecord.model_validate_json(body).released, o["Key"]
                continue
            objects.append((o["Key"], o["ETag"]))
    return items, sorted(objects)


def _no_traceback(doc: Any) -> None:
    text = json.dumps(doc)
    assert "Traceback" not in text
    assert 'File "' not in text
    assert ".py" not in text


# -- events -------------------------------------------------------------------------


@pytest.fixture
def handler_env(moto: str, restore_handler_env: None) -> None:
    async def setup() -> None:
        async with aws_clients(session=SESSION) as aws:
            await _setup(aws)

    asyncio.run(setup())


def snapshot() -> tuple[list[bytes], list[tuple[str, str]]]:
    async def go() -> tuple[list[bytes], list[tuple[str, str]]]:
        async with aws_clients(session=SESSION) as aws:
            return await _snapshot(aws)

    return asyncio.run(go())


_MANY = [f"table-{i:03d}" for i in range(101)]

BAD_EVENTS: list[tuple[str, Any, str]] = [
    # (id, event, the field the first problem names)
    ("bool-as-string", {"clear_existing_data": "false"}, "clear_existing_data"),
    ("bool-as-True-string", {"clear_existing_data": "True"}, "clear_existing_data"),
    ("bool-as-int", {"clear_existing_data": 0}, "clear_existing_data"),
    ("dry-run-string", {"dry_run": "false", "clear_existing_data": True}, "dry_run"),
    ("dry-run-null", {"dry_run": None, "clear_existing_data": True}, "dry_run"),
    ("create-string", {"create_missing_tables": "yes"}, "create_missing_tables"),
    ("workers-string", {"max_workers": "5"}, "max_workers"),
    ("workers-float", {"max_workers": 5.5}, "max_workers"),
    ("workers-whole-float", {"max_workers": 5.0}, "max_workers"),
    ("workers-bool", {"max_workers": True}, "max_workers"),
    ("workers-negative", {"max_workers": -1}, "max_workers"),
    ("workers-zero", {"max_workers": 0}, "max_workers"),
    ("workers-65", {"max_workers": 65}, "max_workers"),
    ("workers-huge", {"max_workers": 10**30}, "max_workers"),
    ("date-month-13", {"backup_date": "2026-13-01"}, "backup_date"),
    ("date-feb-30", {"backup_date": "2026-02-30"}, "backup_date"),
    ("date-short", {"backup_date": "2026-1-1"}, "backup_date"),
    ("date-word", {"backup_date": "yesterday"}, "backup_date"),
    ("date-empty", {"backup_date": ""}, "backup_date"),
    ("date-timestamp", {"backup_date": "2026-11-27T00:00:00Z"}, "backup_date"),
    ("date-number", {"backup_date": 20261127}, "backup_date"),
    ("date-future", {"backup_date": "2999-01-01"}, "backup_date"),
    ("date-traversal", {"backup_date": "../2026-11-27"}, "backup_date"),
    ("date-suffix-traversal", {"backup_date": "2026-11-27/../../x"}, "backup_date"),
    ("date-encoded", {"backup_date": "%2e%2e%2f2026-11-27"}, "backup_date"),
    ("date-latest-case", {"backup_date": "LATEST"}, "backup_date"),
    ("tables-string", {"tables": TABLE}, "tables"),
    ("tables-empty", {"tables": []}, "tables"),
    ("tables-number", {"tables": [42]}, "tables"),
    ("tables-traversal", {"tables": ["../etc/passwd"]}, "tables"),
    ("tables-slash", {"tables": ["a/b"]}, "tables"),
    ("tables-absolute", {"tables": ["/native-exports"]}, "tables"),
    ("tables-encoded", {"tables": ["%2e%2e%2fsecret"]}, "tables"),
    ("tables-dots", {"tables": ["..."]}, "tables"),
    ("tables-too-long", {"tables": ["x" * 256]}, "tables"),
    ("tables-duplicate", {"tables": [TABLE, TABLE]}, "tables"),
    ("tables-oversized", {"tables": _MANY}, "tables"),
    ("mapping-traversal", {"table_mapping": {TABLE: "../x"}}, "table_mapping"),
    ("mapping-list", {"table_mapping": [TABLE]}, "table_mapping"),
    ("mapping-oversized", {"table_mapping": {t: t + "-x" for t in _MANY}}, "table_mapping"),
    ("unknown-field", {"clear_existing_dat": True}, "clear_existing_dat"),
    ("unknown-case", {"Tables": [TABLE], "clear_existing_data": True}, "Tables"),
    ("unknown-dash", {"dry-run": True}, "dry-run"),
    ("token-traversal", {"resume_token": "../../_restore/x"}, "resume_token"),
    ("shard-string", {"shard": "0"}, "shard"),
    ("non-object-list", [], "event"),
    ("non-object-list-of-event", [{"tables": [TABLE]}], "event"),
    ("non-object-string", "restore", "event"),
    ("non-object-number", 42, "event"),
    ("non-object-null", None, "event"),
    ("non-object-bool", True, "event"),
]


@pytest.mark.parametrize(
    ("event", "field"), [(e, f) for _, e, f in BAD_EVENTS], ids=[i for i, _, _ in BAD_EVENTS]
)
def test_bad_event_is_400_naming_the_first_problem(
    restore_handler_env: None, event: Any, field: str
) -> None:
    result = handler(event, FakeContext(remaining_ms=900_000))
    assert result["statusCode"] == 400, result
    body = result["body"]
    assert body["error"] == "invalid event"
    assert body["problems"], body
    assert body["problems"][0].split(":")[0].split(".")[0] == field, body["problems"]
    _no_traceback(result)


def test_bad_events_touch_nothing(handler_env: None) -> None:
    """Every bad event above, against a real backup and a table with data in it."""
    before = snapshot()
    for name, event, _ in BAD_EVENTS:
        event = {"clear_existing_data": True, **event} if isinstance(event, dict) else event
        result = handler(event, FakeContext(remaining_ms=900_000))
        assert result["statusCode"] == 400, (name, result)
    assert snapshot() == before


def test_every_problem_is_listed_first_one_first(handler_env: None) -> None:
    event = {"backup_date": "nope", "dry_run": "yes", "max_workers": 0, "oops": 1}
    result = handler(event, None)
    assert result["statusCode"] == 400
    fields = [p.split(":")[0] for p in result["body"]["problems"]]
    assert fields[0] == "backup_date"
    assert set(fields) == {"backup_date", "dry_run", "max_workers", "oops"}


@pytest.mark.parametrize(
    "event",
    [
        {"tables": ["mfa-api_test_nosuch_global"], "clear_existing_data": True},
        {"backup_date": "2026-11-20", "clear_existing_data": True},
    ],
    ids=["unknown-table", "date-without-backup"],
)
def test_well_formed_event_for_nothing_is_400_and_touches_nothing(
    handler_env: None, event: Any
) -> None:
    before = snapshot()
    result = handler(event, FakeContext(remaining_ms=900_000))
    assert result["statusCode"] == 400, result
    error = result["body"]["error"]
    assert ("nosuch" in error) or ("2026-11-20" in error), error
    _no_traceback(result)
    assert snapshot() == before


def test_values_from_events_are_not_echoed_into_problems(handler_env: None) -> None:
    secret = "S3CR3T-in-an-event"
    result = handler({"max_workers": secret, secret: 1}, None)
    assert result["statusCode"] == 400
    problems = " ".join(result["body"]["problems"])
    # The unknown field's NAME is the problem; the value given is never repeated.
    assert problems.count(secret) == 1
    assert f"{secret}: " in problems


# -- backups ------------------------------------------------------------------------

Damage = Callable[[AwsClients, BackupManifest], Awaitable[str]]


async def _get(aws: AwsClients, key: str) -> bytes:
    resp = await aws.s3.get_object(Bucket=BUCKET, Key=key)
    async with resp["Body"] as body:
        return bytes(await body.read())


async def _put(aws: AwsClients, key: str, data: bytes) -> None:
    await aws.s3.put_object(Bucket=BUCKET, Key=key, Body=data)


def _first_file(m: BackupManifest) -> str:
    files = m.tables[0].files
    assert files is not None
    return files[0].key


async def _rewrite_manifest(aws: AwsClients, m: BackupManifest, **table_update: Any) -> None:
    tb = m.tables[0].model_copy(update=table_update)
    await put_manifest(aws.s3, BUCKET, PREFIX, m.model_copy(update={"tables": [tb]}))


async def _replace_first_file(aws: AwsClients, m: BackupManifest, lines: list[bytes]) -> str:
    """A new first data file, its MD5 and count updated in the manifest (so only the
    content itself is wrong)."""
    key = _first_file(m)
    blob = gzip_lines(lines)
    await _put(aws, key, blob)
    files = list(m.tables[0].files or [])
    files[0] = files[0].model_copy(update={"md5": md5_b64(blob), "item_count": len(lines)})
    total = sum(f.item_count for f in files)
    await _rewrite_manifest(aws, m, files=files, item_count=total)
    return key


def _line(item: dict[str, Any]) -> bytes:
    return orjson.dumps({"Item": to_wire(item)})


async def missing_manifest(aws: AwsClients, m: BackupManifest) -> str:
    await aws.s3.delete_object(Bucket=BUCKET, Key=manifest_key(PREFIX, m.backup_date))
    return DATE


async def manifest_not_json(aws: AwsClients, m: BackupManifest) -> str:
    await _put(aws, manifest_key(PREFIX, m.backup_date), b'{"format_version": 2, "tables": [')
    return "not JSON"


async def manifest_not_object(aws: AwsClients, m: BackupManifest) -> str:
    await _put(aws, manifest_key(PREFIX, m.backup_date), b"[1, 2, 3]")
    return "not a JSON object"


async def manifest_invalid(aws: AwsClients, m: BackupManifest) -> str:
    doc = orjson.loads(m.to_json())
    doc["tables"][0]["files"][0]["item_count"] = -5
    await _put(aws, manifest_key(PREFIX, m.backup_date), orjson.dumps(doc))
    return "item_count"


async def manifest_future_version(aws: AwsClients, m: BackupManifest) -> str:
    doc = orjson.loads(m.to_json())
    doc["format_version"] = 3
    await _put(aws, manifest_key(PREFIX, m.backup_date), orjson.dumps(doc))
    return "format_version"


async def _file_elsewhere(aws: AwsClients, m: BackupManifest, key: str) -> str:
    """A perfectly valid data file, but at ``key``, and the manifest pointing there."""
    blob = await _get(aws, _first_file(m))
    await _put(aws, key, blob)
    files = list(m.tables[0].files or [])
    files[0] = files[0].model_copy(update={"key": key})
    await _rewrite_manifest(aws, m, files=files)
    return "outside"


async def file_outside_prefix(aws: AwsClients, m: BackupManifest) -> str:
    return await _file_elsewhere(aws, m, "other-team/private/data.json.gz")


async def file_dotdot(aws: AwsClients, m: BackupManifest) -> str:
    prefix = m.tables[0].s3_prefix
    return await _file_elsewhere(aws, m, f"{prefix}/../../../other-team/data.json.gz")


async def file_encoded_dotdot(aws: AwsClients, m: BackupManifest) -> str:
    prefix = m.tables[0].s3_prefix
    return await _file_elsewhere(aws, m, f"{prefix}/%2e%2e/%2E%2E/x/data.json.gz")


async def file_absolute(aws: AwsClients, m: BackupManifest) -> str:
    return await _file_elsewhere(aws, m, "/" + _first_file(m))


async def table_prefix_outside(aws: AwsClients, m: BackupManifest) -> str:
    """The table's whole export prefix moved outside the date's folder (and files with it)."""
    old_prefix = m.tables[0].s3_prefix
    new_prefix = "other-team/exports/2026-11-27/x"
    files = []
    for f in m.tables[0].files or []:
        new_key = new_prefix + f.key.removeprefix(old_prefix)
        await _put(aws, new_key, await _get(aws, f.key))
        files.append(f.model_copy(update={"key": new_key}))
    await _rewrite_manifest(
        aws,
        m,
        s3_prefix=new_prefix,
        export_folder=(m.tables[0].export_folder or "").replace(old_prefix, new_prefix),
        files=files,
    )
    return "outside"


async def missing_data_file(aws: AwsClients, m: BackupManifest) -> str:
    await aws.s3.delete_object(Bucket=BUCKET, Key=_first_file(m))
    return "not found"


async def truncated_gzip(aws: AwsClients, m: BackupManifest) -> str:
    key = _first_file(m)
    blob = await _get(aws, key)
    await _put(aws, key, blob[: len(blob) // 2])
    return "truncated"


async def line_not_json(aws: AwsClients, m: BackupManifest) -> str:
    await _replace_first_file(aws, m, [_line(SOURCE[0]), b"{not json at all", _line(SOURCE[1])])
    return "line 2 is not JSON"


async def line_not_item(aws: AwsClients, m: BackupManifest) -> str:
    await _replace_first_file(aws, m, [_line(SOURCE[0]), b'{"NotItem": {"pk": {"S": "a"}}}'])
    return "line 2 is not an item"


async def line_not_dynamodb_json(aws: AwsClients, m: BackupManifest) -> str:
    await _replace_first_file(aws, m, [b'{"Item": {"pk": "plain", "sk": {"S": "x"}}}'])
    return "line 1 has an attribute that is not DynamoDB JSON"


async def item_missing_key(aws: AwsClients, m: BackupManifest) -> str:
    item = {k: v for k, v in SOURCE[0].items() if k != "sk"}
    await _replace_first_file(aws, m, [_line(SOURCE[1]), _line(item)])
    return "line 2 lacks key attribute 'sk'"


async def item_too_large(aws: AwsClients, m: BackupManifest) -> str:
    item = {**SOURCE[0], "blob": {"S": "x" * (401 * 1024)}}
    await _replace_first_file(aws, m, [_line(item)])
    return "400 KB"


async def checksum_mismatch(aws: AwsClients, m: BackupManifest) -> str:
    key = _first_file(m)
    lines = gzip.decompress(await _get(aws, key)).splitlines()
    # Same number of valid items, one value changed: only the MD5 can tell.
    doc = orjson.loads(lines[0])
    doc["Item"]["counter"] = {"N": "999999"}
    lines[0] = orjson.dumps(doc)
    await _put(aws, key, gzip_lines(lines))
    return "MD5"


async def count_mismatch(aws: AwsClients, m: BackupManifest) -> str:
    files = list(m.tables[0].files or [])
    files[0] = files[0].model_copy(update={"item_count": files[0].item_count + 1})
    await _rewrite_manifest(aws, m, files=files)
    return "the manifest says"


async def total_count_mismatch(aws: AwsClients, m: BackupManifest) -> str:
    await _rewrite_manifest(aws, m, item_count=len(SOURCE) + 3)
    return f"the manifest says {len(SOURCE) + 3}"


DAMAGES: list[Damage] = [
    missing_manifest,
    manifest_not_json,
    manifest_not_object,
    manifest_invalid,
    manifest_future_version,
    file_outside_prefix,
    file_dotdot,
    file_encoded_dotdot,
    file_absolute,
    table_prefix_outside,
    missing_data_file,
    truncated_gzip,
    line_not_json,
    line_not_item,
    line_not_dynamodb_json,
    item_missing_key,
    item_too_large,
    checksum_mismatch,
    count_mismatch,
    total_count_mismatch,
]


def _error_text(result: RestoreResult) -> str:
    body = result.body
    parts = [str(body.get("error") or "")]
    parts += [str(r.get("error") or "") for r in body.get("restore_results", [])]
    return " | ".join(p for p in parts if p)


@pytest.mark.parametrize(
    "damage",
    [pytest.param(d, id=d.__name__) for d in DAMAGES],
)
async def test_bad_backup_is_refused_and_the_table_untouched(
    aws: AwsClients, damage: Damage
) -> None:
    manifest = await _setup(aws)
    problem = await damage(aws, manifest)
    before = await _snapshot(aws)

    result = await run_restore(
        CONFIG,
        RestoreRequest(backup_date=DATE, clear_existing_data=True),
        aws,
        retry=FAST,
    )

    assert result.status_code in (400, 500), result.body
    assert result.body.get("total_items_written", 0) == 0
    error = _error_text(result)
    assert problem in error, error
    _no_traceback(result.body)
    for r in result.body.get("restore_results", []):
        assert r["status"] == "FAILED"
        assert r["items_written"] == r["items_cleared"] == 0
    assert await _snapshot(aws) == before  # table as it was, nothing written to S3


# -- an AWS export folder given to restore-export ------------------------------------


async def test_export_manifest_pointing_outside_its_folder_is_refused(aws: AwsClients) -> None:
    await aws.s3.create_bucket(Bucket=BUCKET)
    await create_table(aws.dynamodb, TABLE)
    await put_items(aws.dynamodb, TABLE, BEFORE)
    written = await write_aws_export(aws.s3, BUCKET, "ext/src", SOURCE, files=2, empty_files=0)
    folder = written["folder"]
    # A sound data file outside the folder, and manifest-files.json pointing at it.
    blob = await _get(aws, written["data_keys"][0])
    await _put(aws, "ext/elsewhere/data.json.gz", blob)
    entry = {
        "itemCount": 15,
        "md5Checksum": md5_b64(blob),
        "dataFileS3Key": f"{folder}/../../elsewhere/data.json.gz",
    }
    files_json = orjson.dumps(entry) + b"\n"
    await _put(aws, f"{folder}/manifest-files.json", files_json)
    await _put(aws, f"{folder}/manifest-files.md5", md5_b64(files_json).encode())
    before = await _snapshot(aws)

    result = await restore_export(S3Storage(aws.s3, BUCKET), folder, TABLE, aws, retry=FAST)

    assert result.status_code == 400, result.body
    assert "outside" in _error_text(result)
    _no_traceback(result.body)
    assert await _snapshot(aws) == before


@pytest.mark.parametrize(
    ("folder", "table"),
    [
        ("ext/src/AWSDynamoDB/x", "../evil"),
        ("ext/src/AWSDynamoDB/x", "a/b"),
        ("../ext/AWSDynamoDB/x", TABLE),
        ("ext/%2e%2e/AWSDynamoDB/x", TABLE),
        ("ext/%252E%252e/AWSDynamoDB/x", TABLE),
        ("ext/a%2fb/../AWSDynamoDB/x", TABLE),
        ("ext//AWSDynamoDB/x", TABLE),
    ],
)
async def test_restore_export_refuses_unsafe_names(
    aws: AwsClients, folder: str, table: str
) -> None:
    await aws.s3.create_bucket(Bucket=BUCKET)
    result = await restore_export(S3Storage(aws.s3, BUCKET), folder, table, aws, retry=FAST)
    assert result.status_code == 400, result.body
    _no_traceback(result.body)


# -- the foundation guards on their own --------------------------------------------


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"null", "not a JSON object"),
        (b'"manifest"', "not a JSON object"),
        (b"{}", "no format_version or exports"),
        (b'{"format_version": 2}', "manifest is invalid at"),
        (b'{"format_version": "2", "backup_date": "2026-11-27"}', "manifest is invalid at"),
        (b'{"exports": "x", "backup_date": "2026-11-27", "environment": "e"}', "exports"),
        (b'{"exports": [], "backup_date": "2026-13-45", "environment": "e"}', "backup_date"),
    ],
)
def test_load_manifest_names_the_first_problem(data: bytes, problem: str) -> None:
    with pytest.raises(ManifestError, match=r"native-exports/2026-11-27/manifest\.json") as info:
        load_manifest(data, key="native-exports/2026-11-27/manifest.json", prefix=PREFIX)
    assert problem in str(info.value)


@pytest.mark.parametrize(
    "key",
    [
        "p/../q/x",
        "p/a/../../q",
        "p/%2e%2e/q",
        "p/%2E%2E/q",
        "p/..%2fq",
        "p/%252e%252e/q",
        "p\\..\\q",
        "p/a\\..\\..\\q",
        "/p/x",
        "//p/x",
        "p//x",
        "p/./x",
        "p/x\x00.gz",
        "p",
        "pq/x",
        "P/x",
        "s3://bucket/p/x",
        "",
    ],
)
def test_check_key_inside_refuses_escapes(key: str) -> None:
    with pytest.raises(UnsafeNameError):
        check_key_inside(key, "p")


@pytest.mark.parametrize(
    "key",
    [
        "p/x",
        "p/a/b.json.gz",
        "p/a..b/c",
        "p/.hidden",
        "p/a b/x",
        "p/été/x",
        "p/100%/x",
        "p/a%20b/x",
        "p/a+b/x",
        "p/%/x",
    ],
)
def test_check_key_inside_accepts_plain_keys(key: str) -> None:
    assert check_key_inside(key, "p/") == key


async def test_read_export_folder_refuses_keys_outside(aws: AwsClients) -> None:
    await aws.s3.create_bucket(Bucket=BUCKET)
    written = await write_aws_export(aws.s3, BUCKET, "ext/src", SOURCE, files=1, empty_files=0)
    folder = written["folder"]
    for bad in (
        "ext/other/data.json.gz",
        f"{folder}/../x.json.gz",
        f"/{folder}/data/x.gz",
        f"ext/x/../{folder}/data/x.json.gz",  # never cleaned into the folder
    ):
        files_json = orjson.dumps({"itemCount": 1, "md5Checksum": "x", "dataFileS3Key": bad})
        await _put(aws, f"{folder}/manifest-files.json", files_json)
        await _put(aws, f"{folder}/manifest-files.md5", md5_b64(files_json).encode())
        with pytest.raises(UnsafeNameError):
            await read_export_folder(S3Storage(aws.s3, BUCKET), folder)


@pytest.mark.parametrize(
    ("body", "expected", "error"),
    [
        (None, ExpectedFile("d/missing.json.gz"), DataFileMissingError),
        (b"", ExpectedFile("d/x.json.gz"), CorruptDataError),
        (b"plain text, not gzip\n", ExpectedFile("d/x.json.gz"), CorruptDataError),
        (
            gzip_lines([b'{"Item": {"pk": {"S": "a"}}}'])[:-5],
            ExpectedFile("d/x.json.gz"),
            CorruptDataError,
        ),
        (
            gzip_lines([b'{"Item": {"pk": {"S": "a"}}}']),
            ExpectedFile("d/x.json.gz", md5="AAAA"),
            ChecksumMismatchError,
        ),
        (
            gzip_lines([b'{"Item": {"pk": {"S": "a"}}}']),
            ExpectedFile("d/x.json.gz", item_count=2),
            ItemCountMismatchError,
        ),
        (
            gzip_lines([b'{"Item": {"sk": {"S": "a"}}}']),
            ExpectedFile("d/x.json.gz"),
            CorruptDataError,
        ),
    ],
    ids=["missing", "empty", "not-gzip", "truncated", "md5", "count", "no-key"],
)
async def test_verify_file_names_the_file(
    aws: AwsClients, body: bytes | None, expected: ExpectedFile, error: type[Exception]
) -> None:
    await aws.s3.create_bucket(Bucket=BUCKET)
    if body is not None:
        await _put(aws, expected.key, body)
    with pytest.raises(error, match=expected.key):
        await verify_file(S3Storage(aws.s3, BUCKET), expected, keys=(("pk", "S"),))


def test_md5_is_of_the_raw_bytes() -> None:
    """The sidecar/manifest MD5 convention: base64 of the digest of the .gz bytes."""
    blob = gzip_lines([b"x"])
    assert md5_b64(blob) == base64.b64encode(hashlib.md5(blob).digest()).decode()
