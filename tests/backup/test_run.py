"""The backup run against the moto server: exports, verification, state, manifest."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import gzip
import io
import zlib
from typing import Any

import orjson
import pytest

import ddb_backup.backup.verification
from ddb_backup import BackupConfig, BackupResult, run_backup
from ddb_backup.aws import AwsClients
from ddb_backup.backup import Polling, RunState
from ddb_backup.keys import manifest_key, run_state_key, table_export_prefix
from ddb_backup.log import configure_logging
from ddb_backup.manifest import BackupStatus, TableStatus, load_manifest
from tests.support.data import (
    BAD_LINES,
    SECRET_MARKER,
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

ENV = "test"
PREFIX = "native-exports"
NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
DATE = NOW.date()
FAST = Polling(initial=0.01, maximum=0.05, factor=2.0)
U2F, TOTP, API_KEY = (table_name(ENV, k) for k in ("u2f", "totp", "api-key"))


def config(bucket: str, *tables: str, **extra: Any) -> BackupConfig:
    return BackupConfig(bucket=bucket, environment=ENV, tables=tables, **extra)


async def backup(
    aws: AwsClients, cfg: BackupConfig, *, progress: list[tuple[str, str]] | None = None, **kw: Any
) -> BackupResult:
    kw.setdefault("now", NOW)
    kw.setdefault("polling", FAST)
    return await run_backup(
        cfg,
        aws,
        on_progress=(lambda t, s: progress.append((t, s))) if progress is not None else None,
        **kw,
    )


async def table_arn(aws: AwsClients, name: str) -> str:
    return str((await aws.dynamodb.describe_table(TableName=name))["Table"]["TableArn"])


async def export_arns(aws: AwsClients, name: str) -> list[str]:
    resp = await aws.dynamodb.list_exports(TableArn=await table_arn(aws, name))
    return [e["ExportArn"] for e in resp["ExportSummaries"]]


async def wait_exports_finished(aws: AwsClients, name: str) -> None:
    """moto's export runs in a thread; wait for it before tampering with its files."""
    for arn in await export_arns(aws, name):
        for _ in range(500):
            desc = (await aws.dynamodb.describe_export(ExportArn=arn))["ExportDescription"]
            if desc["ExportStatus"] != "IN_PROGRESS":
                break
            await asyncio.sleep(0.01)


async def get(aws: AwsClients, bucket: str, key: str) -> bytes:
    resp = await aws.s3.get_object(Bucket=bucket, Key=key)
    async with resp["Body"] as body:
        return bytes(await body.read())


async def keys_under(aws: AwsClients, bucket: str, prefix: str) -> list[str]:
    resp = await aws.s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for o in resp.get("Contents", []))


async def data_keys(aws: AwsClients, bucket: str, table: str) -> list[str]:
    prefix = table_export_prefix(PREFIX, DATE, table) + "/AWSDynamoDB/"
    return [k for k in await keys_under(aws, bucket, prefix) if "/data/" in k]


def lines_of(blob: bytes) -> list[bytes]:
    return [line for line in gzip.decompress(blob).splitlines() if line.strip()]


@pytest.fixture
def json_logs() -> io.StringIO:
    """The package's JSON log lines, captured; the logger restored afterwards."""
    buf = io.StringIO()
    configure_logging(stream=buf)
    return buf


async def three_tables(aws: AwsClients, *, pitr_off: str | None = None) -> dict[str, list[Any]]:
    """u2f (7 items, TTL on), totp (12 items, with a GSI), api-key (empty)."""
    contents = {U2F: every_type_items(7), TOTP: every_type_items(12), API_KEY: []}
    await create_table(aws.dynamodb, U2F, pitr=pitr_off != U2F)
    await aws.dynamodb.update_time_to_live(
        TableName=U2F, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires"}
    )
    await aws.dynamodb.create_table(
        TableName=TOTP,
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": "label", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-label",
                "KeySchema": [{"AttributeName": "label", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
                "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 3},
            }
        ],
        ProvisionedThroughput={"ReadCapacityUnits": 10, "WriteCapacityUnits": 4},
    )
    if pitr_off != TOTP:
        await aws.dynamodb.update_continuous_backups(
            TableName=TOTP,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )
    await create_table(aws.dynamodb, API_KEY, pitr=pitr_off != API_KEY)
    for name, items in contents.items():
        await put_items(aws.dynamodb, name, items)
    return contents


# -- the happy path -------------------------------------------------------------


async def test_three_tables_backed_up_and_manifest_checked_field_by_field(
    aws: AwsClients, bucket: str, json_logs: io.StringIO
) -> None:
    contents = await three_tables(aws)
    progress: list[tuple[str, str]] = []
    result = await backup(aws, config(bucket, U2F, TOTP, API_KEY), progress=progress)

    assert result.status_code == 200, result.body
    body = result.body
    assert body["backup_date"] == "2026-01-02"
    assert body["environment"] == ENV
    assert body["backup_type"] == "DYNAMODB_NATIVE_EXPORT"
    assert body["status"] == "COMPLETE"
    assert body["total_tables_processed"] == 3
    assert body["successful_exports"] == 3
    assert body["failed_exports"] == 0
    assert body["in_progress_exports"] == 0
    assert body["total_items_exported"] == 19
    assert body["manifest_s3_key"] == "native-exports/2026-01-02/manifest.json"
    assert body["s3_bucket"] == bucket
    assert body["export_time"] == NOW.isoformat()
    assert [r["table_name"] for r in body["results"]] == [U2F, TOTP, API_KEY]

    raw = await get(aws, bucket, manifest_key(PREFIX, DATE))
    manifest = load_manifest(raw, key="m", prefix=PREFIX)
    assert manifest == result.manifest
    assert manifest.format_version == 2
    assert manifest.backup_date == DATE
    assert manifest.environment == ENV
    assert manifest.bucket == bucket
    assert manifest.prefix == PREFIX
    assert manifest.export_time == NOW
    assert manifest.status is BackupStatus.COMPLETE
    assert not manifest.legacy
    billed = 0
    for table in manifest.tables:
        name = table.table_name
        (arn,) = await export_arns(aws, name)  # exactly one export per table
        assert table.status is TableStatus.COMPLETED
        assert table.error is None
        assert table.export_arn == arn
        assert table.export_time == NOW
        assert table.s3_prefix == f"native-exports/2026-01-02/{name}"
        assert table.export_folder is not None
        assert table.export_folder.startswith(f"{table.s3_prefix}/AWSDynamoDB/")
        assert table.item_count == len(contents[name])
        desc = (await aws.dynamodb.describe_export(ExportArn=arn))["ExportDescription"]
        assert table.billed_size_bytes == desc["BilledSizeBytes"]
        billed += desc["BilledSizeBytes"]
        # Every data file: the real object's MD5, size and number of items.
        assert table.files is not None
        assert [f.key for f in table.files] == await data_keys(aws, bucket, name)
        exported: list[dict[str, Any]] = []
        for f in table.files:
            blob = await get(aws, bucket, f.key)
            assert f.md5 == md5_b64(blob)
            assert f.size == len(blob)
            assert f.item_count == len(lines_of(blob))
            exported += [orjson.loads(line)["Item"] for line in lines_of(blob)]
        assert sum(f.item_count for f in table.files) == table.item_count
        # The export holds the table, item for item (binary included).
        assert sorted(orjson.dumps(i, option=orjson.OPT_SORT_KEYS) for i in exported) == sorted(
            orjson.dumps(to_wire(i), option=orjson.OPT_SORT_KEYS)
            for i in await scan_all(aws.dynamodb, name)
        )
        result_row = next(r for r in body["results"] if r["table_name"] == name)
        assert result_row["status"] == "COMPLETED"
        assert result_row["error"] is None
        assert result_row["item_count"] == table.item_count
        assert result_row["export_arn"] == arn
        assert result_row["files"] == [f.model_dump(mode="json") for f in table.files]
        # The schema a restore needs.
        schema = table.table_schema
        assert schema is not None
        assert schema.key_names == ("pk", "sk")
        assert schema.key_types == {"pk": "S", "sk": "S"}
    assert body["total_billed_size_bytes"] == billed
    assert body["total_size_mb"] == round(billed / 1048576, 6)

    u2f, totp, api_key = (manifest.table(n) for n in (U2F, TOTP, API_KEY))
    assert u2f
    assert totp
    assert api_key
    assert u2f.table_schema
    assert totp.table_schema
    assert api_key.table_schema
    assert u2f.table_schema.billing_mode == "PAY_PER_REQUEST"
    assert u2f.table_schema.provisioned_throughput is None
    assert u2f.table_schema.time_to_live == {
        "TimeToLiveStatus": "ENABLED",
        "AttributeName": "expires",
    }
    assert totp.table_schema.billing_mode == "PROVISIONED"
    assert totp.table_schema.provisioned_throughput == {
        "ReadCapacityUnits": 10,
        "WriteCapacityUnits": 4,
    }
    assert totp.table_schema.global_secondary_indexes == [
        {
            "IndexName": "by-label",
            "KeySchema": [{"AttributeName": "label", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
            "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 3},
        }
    ]
    assert {"AttributeName": "label", "AttributeType": "S"} in (
        totp.table_schema.attribute_definitions
    )
    assert api_key.item_count == 0
    assert api_key.files
    assert api_key.files[0].item_count == 0

    # The manifest is written last and the run state says the run is over.
    state = RunState.model_validate_json(await get(aws, bucket, run_state_key(PREFIX, DATE)))
    assert [t.status.value for t in state.tables] == ["COMPLETED"] * 3
    assert state.starting_until is None
    # Uploaded with S3 checksums (Content-MD5, and botocore's default CRC32).
    head = await aws.s3.head_object(
        Bucket=bucket, Key=manifest_key(PREFIX, DATE), ChecksumMode="ENABLED"
    )
    assert head["ContentLength"] == len(raw)
    assert head["ChecksumCRC32"] == base64.b64encode(zlib.crc32(raw).to_bytes(4, "big")).decode()

    for name in (U2F, TOTP, API_KEY):
        states = [s for t, s in progress if t == name]
        assert states == ["STARTING", "IN_PROGRESS", "VERIFYING", "COMPLETED"]

    # No item content ever reaches a log line or the response.
    logged = json_logs.getvalue()
    assert "export verified" in logged
    assert SECRET_MARKER not in logged
    assert SECRET_MARKER not in orjson.dumps(body).decode()
    for line in logged.splitlines():
        orjson.loads(line)  # every line is JSON


async def test_same_date_again_answers_from_the_manifest_and_starts_nothing(
    aws: AwsClients, bucket: str
) -> None:
    await three_tables(aws)
    cfg = config(bucket, U2F, TOTP, API_KEY)
    first = await backup(aws, cfg)
    assert first.status_code == 200
    raw = await get(aws, bucket, manifest_key(PREFIX, DATE))
    before = await keys_under(aws, bucket, PREFIX)

    progress: list[tuple[str, str]] = []
    again = await backup(aws, cfg, now=NOW + dt.timedelta(hours=5), progress=progress)

    assert again.status_code == 200
    assert "nothing was started" in again.body["message"]
    assert again.manifest == first.manifest
    assert again.body["results"] == first.body["results"]
    assert again.body["total_items_exported"] == first.body["total_items_exported"]
    assert progress == []
    for name in (U2F, TOTP, API_KEY):
        assert len(await export_arns(aws, name)) == 1
    assert await get(aws, bucket, manifest_key(PREFIX, DATE)) == raw
    assert await keys_under(aws, bucket, PREFIX) == before


async def test_table_configured_after_the_date_is_final_is_named_not_hidden(
    aws: AwsClients, bucket: str
) -> None:
    """README: a table added to DYNAMODB_TABLES once today's manifest is final is not
    backed up today; the answer is 207 naming it, and the final date stays as it was."""
    await three_tables(aws)
    first = await backup(aws, config(bucket, U2F, TOTP))
    assert first.status_code == 200
    raw = await get(aws, bucket, manifest_key(PREFIX, DATE))

    again = await backup(aws, config(bucket, U2F, TOTP, API_KEY), now=NOW + dt.timedelta(hours=1))

    assert again.status_code == 207, again.body
    assert again.body["not_backed_up"] == [API_KEY]
    assert API_KEY in again.body["message"]
    assert again.body["already_final"] is True
    assert again.body["successful_exports"] == 2
    assert await export_arns(aws, API_KEY) == []  # nothing started
    assert await get(aws, bucket, manifest_key(PREFIX, DATE)) == raw
    # The same configuration as the run: a plain 200, nothing named.
    same = await backup(aws, config(bucket, U2F, TOTP), now=NOW + dt.timedelta(hours=2))
    assert (same.status_code, same.body["not_backed_up"]) == (200, [])


# -- PITR -------------------------------------------------------------------------


async def test_table_without_pitr_fails_clearly_and_the_others_are_verified(
    aws: AwsClients, bucket: str
) -> None:
    contents = await three_tables(aws, pitr_off=TOTP)
    result = await backup(aws, config(bucket, U2F, TOTP, API_KEY))

    assert result.status_code == 207
    body = result.body
    assert body["status"] == "PARTIAL"
    assert (body["successful_exports"], body["failed_exports"]) == (2, 1)
    assert body["total_items_exported"] == len(contents[U2F])
    row = next(r for r in body["results"] if r["table_name"] == TOTP)
    assert row["status"] == "FAILED"
    assert "point-in-time recovery" in str(row["error"])
    assert "must be enabled" in str(row["error"])
    assert row["export_arn"] is None
    assert await export_arns(aws, TOTP) == []
    assert result.manifest is not None
    assert result.manifest.status is BackupStatus.PARTIAL
    failed = result.manifest.table(TOTP)
    assert failed
    assert failed.status is TableStatus.FAILED
    assert failed.files is None
    for name in (U2F, API_KEY):
        ok = result.manifest.table(name)
        assert ok
        assert ok.status is TableStatus.COMPLETED
        assert ok.item_count == len(contents[name])


async def test_missing_table_and_no_pitr_anywhere_is_500(aws: AwsClients, bucket: str) -> None:
    await create_table(aws.dynamodb, U2F, pitr=False)
    result = await backup(aws, config(bucket, U2F, "no-such-table"))
    assert result.status_code == 500
    assert result.body["status"] == "FAILED"
    errors = {r["table_name"]: r["error"] for r in result.body["results"]}
    assert "point-in-time recovery" in str(errors[U2F])
    assert "does not exist" in str(errors["no-such-table"])
    assert result.manifest is not None
    assert result.manifest.status is BackupStatus.FAILED


# -- deadline and resumption ----------------------------------------------------------


async def test_deadline_gives_202_with_state_then_a_later_invocation_finishes(
    aws: AwsClients, bucket: str
) -> None:
    contents = await three_tables(aws)
    cfg = config(bucket, U2F, TOTP, API_KEY)

    first = await backup(aws, cfg, deadline_seconds=0)

    assert first.status_code == 202
    assert first.manifest is None
    body = first.body
    assert body["status"] == "IN_PROGRESS"
    assert (body["successful_exports"], body["failed_exports"]) == (0, 0)
    assert body["in_progress_exports"] == 3
    assert body["total_items_exported"] == 0
    assert body["manifest_s3_key"] is None
    assert [r["status"] for r in body["results"]] == ["IN_PROGRESS"] * 3
    assert await keys_under(aws, bucket, manifest_key(PREFIX, DATE)) == []
    state = RunState.model_validate_json(await get(aws, bucket, run_state_key(PREFIX, DATE)))
    assert state.export_time == NOW
    assert state.invocations == 1
    for t in state.tables:
        assert t.status.value == "IN_PROGRESS"
        assert t.export_arn == (await export_arns(aws, t.table_name))[0]
        assert t.table_schema is not None

    # A later invocation (same date, later clock) starts nothing and finishes the run.
    second = await backup(aws, cfg, now=NOW + dt.timedelta(minutes=20))

    assert second.status_code == 200, second.body
    assert second.body["total_items_exported"] == sum(len(v) for v in contents.values())
    assert second.body["export_time"] == NOW.isoformat()  # the run's ExportTime is kept
    for name in contents:
        assert len(await export_arns(aws, name)) == 1
    assert second.manifest is not None
    assert second.manifest.export_time == NOW
    state = RunState.model_validate_json(await get(aws, bucket, run_state_key(PREFIX, DATE)))
    assert state.invocations == 2
    assert await keys_under(aws, bucket, manifest_key(PREFIX, DATE)) == [manifest_key(PREFIX, DATE)]


async def test_run_cut_off_between_start_and_save_finds_its_export(
    aws: AwsClients, bucket: str
) -> None:
    """State says STARTING without an ARN: the export is found, not started again."""
    await three_tables(aws)
    cfg = config(bucket, U2F, TOTP)
    assert (await backup(aws, cfg, deadline_seconds=0)).status_code == 202
    key = run_state_key(PREFIX, DATE)
    doc = orjson.loads(await get(aws, bucket, key))
    for t in doc["tables"]:
        t["status"], t["export_arn"] = "STARTING", None
    doc["starting_until"] = None  # the cut-off invocation's lease has expired
    await aws.s3.put_object(Bucket=bucket, Key=key, Body=orjson.dumps(doc))

    result = await backup(aws, cfg)

    assert result.status_code == 200, result.body
    for name in (U2F, TOTP):
        (arn,) = await export_arns(aws, name)
        assert (
            next(r for r in result.body["results"] if r["table_name"] == name)["export_arn"] == arn
        )


async def test_invocation_while_another_is_starting_exports_starts_nothing(
    aws: AwsClients, bucket: str
) -> None:
    await three_tables(aws)
    cfg = config(bucket, U2F)
    assert (await backup(aws, cfg, deadline_seconds=0)).status_code == 202
    key = run_state_key(PREFIX, DATE)
    doc = orjson.loads(await get(aws, bucket, key))
    doc["tables"][0].update(status="STARTING", export_arn=None)
    doc["starting_until"] = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=3)).isoformat()
    await aws.s3.put_object(Bucket=bucket, Key=key, Body=orjson.dumps(doc))

    result = await backup(aws, cfg)

    assert result.status_code == 202
    assert "another invocation" in result.body["message"]
    assert len(await export_arns(aws, U2F)) == 1


async def test_simultaneous_invocations_start_each_export_once(
    aws: AwsClients, bucket: str
) -> None:
    await three_tables(aws)
    cfg = config(bucket, U2F, TOTP, API_KEY)
    results = await asyncio.gather(*(backup(aws, cfg) for _ in range(3)))

    # The invocation that claims the run finishes it; the others either find it
    # being started (202, nothing started) or join it once its exports run.
    assert 200 in [r.status_code for r in results]
    for r in results:
        assert r.status_code in (200, 202)
        if r.status_code == 202:
            assert "another invocation" in r.body["message"]
    for name in (U2F, TOTP, API_KEY):
        assert len(await export_arns(aws, name)) == 1
    final = await backup(aws, cfg)
    assert final.status_code == 200


async def test_past_date_without_a_run_is_refused(aws: AwsClients, bucket: str) -> None:
    await three_tables(aws)
    result = await backup(aws, config(bucket, U2F), backup_date=DATE - dt.timedelta(days=1))
    assert result.status_code == 500
    assert "no backup run for 2026-01-01" in result.body["error"]
    assert await export_arns(aws, U2F) == []


async def test_state_of_another_environment_is_refused(aws: AwsClients, bucket: str) -> None:
    await three_tables(aws)
    assert (await backup(aws, config(bucket, U2F), deadline_seconds=0)).status_code == 202
    other = BackupConfig(bucket=bucket, environment="prod", tables=(U2F,))
    result = await backup(aws, other)
    assert result.status_code == 500
    assert "belongs to environment test" in result.body["error"]
    assert len(await export_arns(aws, U2F)) == 1


# -- verification failures ----------------------------------------------------------


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (gzip.compress(b"garbage, not an item\n"), "line 1 is not JSON"),
        (gzip_lines([b'{"Item": {"pk": {"S": "x"}, "sk": {"S": "y"}}}'])[:-6], "truncated"),
        (b"not gzip at all", "not valid gzip"),
        (gzip_lines([b'{"Item": {"other": {"S": "x"}}}']), "lacks key attribute"),
    ],
)
async def test_corrupted_data_file_fails_its_table_naming_the_file(
    aws: AwsClients, bucket: str, damage: bytes, reason: str
) -> None:
    await three_tables(aws)
    cfg = config(bucket, U2F, TOTP)
    assert (await backup(aws, cfg, deadline_seconds=0)).status_code == 202
    await wait_exports_finished(aws, U2F)
    (bad_key,) = await data_keys(aws, bucket, U2F)
    await aws.s3.put_object(Bucket=bucket, Key=bad_key, Body=damage)

    result = await backup(aws, cfg)

    assert result.status_code == 207
    row = next(r for r in result.body["results"] if r["table_name"] == U2F)
    assert row["status"] == "FAILED"
    assert bad_key in str(row["error"])
    assert reason in str(row["error"])
    assert row["files"] == []
    ok = next(r for r in result.body["results"] if r["table_name"] == TOTP)
    assert ok["status"] == "COMPLETED"
    assert result.manifest is not None
    assert result.manifest.status is BackupStatus.PARTIAL


async def test_wrong_item_count_fails_verification_naming_the_file(
    aws: AwsClients, bucket: str
) -> None:
    await three_tables(aws)
    cfg = config(bucket, U2F, TOTP)
    assert (await backup(aws, cfg, deadline_seconds=0)).status_code == 202
    bad = {}
    for name in (U2F, TOTP):
        await wait_exports_finished(aws, name)
        (key,) = await data_keys(aws, bucket, name)
        lines = lines_of(await get(aws, bucket, key))
        await aws.s3.put_object(Bucket=bucket, Key=key, Body=gzip_lines(lines[:-1]))
        bad[name] = (key, len(lines))

    result = await backup(aws, cfg)

    assert result.status_code == 500  # none succeeded
    assert result.body["status"] == "FAILED"
    for name, (key, n) in bad.items():
        row = next(r for r in result.body["results"] if r["table_name"] == name)
        assert row["status"] == "FAILED"
        assert key in str(row["error"])
        assert f"hold {n - 1} items, DescribeExport ItemCount says {n}" in str(row["error"])


# -- AWS-shaped export folders ---------------------------------------------------------


async def replace_with_aws_folder(
    aws: AwsClients, bucket: str, name: str, items: list[Any], **kw: Any
) -> dict[str, Any]:
    """Swap moto's export folder for one shaped like AWS's, at the same place."""
    await wait_exports_finished(aws, name)
    prefix = table_export_prefix(PREFIX, DATE, name)
    for key in await keys_under(aws, bucket, prefix + "/"):
        await aws.s3.delete_object(Bucket=bucket, Key=key)
    return await write_aws_export(aws.s3, bucket, prefix, items, **kw)


async def test_aws_shaped_export_checked_file_by_file(aws: AwsClients, bucket: str) -> None:
    contents = await three_tables(aws)
    cfg = config(bucket, U2F, TOTP)
    assert (await backup(aws, cfg, deadline_seconds=0)).status_code == 202
    written = await replace_with_aws_folder(
        aws, bucket, TOTP, contents[TOTP], files=3, empty_files=1
    )

    result = await backup(aws, cfg)

    assert result.status_code == 200, result.body
    assert result.manifest is not None
    table = result.manifest.table(TOTP)
    assert table is not None
    assert table.files is not None
    assert table.export_folder == written["folder"]
    assert table.item_count == len(contents[TOTP])
    expected = {
        orjson.loads(line)["dataFileS3Key"]: orjson.loads(line)
        for line in (await get(aws, bucket, f"{written['folder']}/manifest-files.json")).split(
            b"\n"
        )
        if line
    }
    assert sorted(f.key for f in table.files) == sorted(written["data_keys"])
    for f in table.files:
        blob = await get(aws, bucket, f.key)
        assert f.md5 == expected[f.key]["md5Checksum"] == md5_b64(blob)
        assert f.item_count == expected[f.key]["itemCount"]
        assert f.size == len(blob)
    (empty,) = [f for f in table.files if f.item_count == 0]
    assert empty.size == 20  # AWS's empty partition


async def test_aws_manifest_item_count_mismatch_names_the_file(
    aws: AwsClients, bucket: str
) -> None:
    contents = await three_tables(aws)
    cfg = config(bucket, U2F, TOTP)
    assert (await backup(aws, cfg, deadline_seconds=0)).status_code == 202
    written = await replace_with_aws_folder(
        aws, bucket, TOTP, contents[TOTP], files=3, empty_files=1, sidecars=False
    )
    files_key = f"{written['folder']}/manifest-files.json"
    entries = [orjson.loads(x) for x in (await get(aws, bucket, files_key)).split(b"\n") if x]
    entries[1]["itemCount"] += 2
    await aws.s3.put_object(
        Bucket=bucket, Key=files_key, Body=b"\n".join(orjson.dumps(e) for e in entries)
    )

    result = await backup(aws, cfg)

    assert result.status_code == 207
    row = next(r for r in result.body["results"] if r["table_name"] == TOTP)
    assert row["status"] == "FAILED"
    n = entries[1]["itemCount"]
    assert f"{entries[1]['dataFileS3Key']}: holds {n - 2} items, the manifest says {n}" in str(
        row["error"]
    )


async def test_aws_manifest_md5_mismatch_names_the_file(aws: AwsClients, bucket: str) -> None:
    contents = await three_tables(aws)
    cfg = config(bucket, U2F, TOTP)
    assert (await backup(aws, cfg, deadline_seconds=0)).status_code == 202
    written = await replace_with_aws_folder(aws, bucket, TOTP, contents[TOTP], files=2)
    key = written["data_keys"][0]
    blob = await get(aws, bucket, key)
    # Same items, other bytes: only the checksum can tell.
    await aws.s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(gzip.decompress(blob), 1))

    result = await backup(aws, cfg)

    assert result.status_code == 207
    row = next(r for r in result.body["results"] if r["table_name"] == TOTP)
    assert f"{key}: MD5" in str(row["error"])
    assert "does not match the manifest's" in str(row["error"])


@pytest.mark.parametrize("bad", list(BAD_LINES.values()), ids=list(BAD_LINES))
async def test_aws_shaped_export_with_md5s_still_checks_every_line(
    aws: AwsClients, bucket: str, bad: bytes
) -> None:
    """AWS's manifest gives MD5s (moto's exports give none): every line is still
    parsed and checked; the counts all match, so only that check can tell."""
    contents = await three_tables(aws)
    cfg = config(bucket, TOTP)
    assert (await backup(aws, cfg, deadline_seconds=0)).status_code == 202
    items = contents[TOTP][:-1]
    written = await replace_with_aws_folder(
        aws, bucket, TOTP, items, files=2, empty_files=0, extra_lines=[bad]
    )

    result = await backup(aws, cfg)

    assert result.status_code == 500
    row = result.body["results"][0]
    assert row["status"] == "FAILED"
    assert f"{written['data_keys'][0]}: line {len(items[0::2]) + 1} " in str(row["error"])


async def test_aws_summary_item_count_must_match(aws: AwsClients, bucket: str) -> None:
    contents = await three_tables(aws)
    cfg = config(bucket, TOTP)
    assert (await backup(aws, cfg, deadline_seconds=0)).status_code == 202
    # AWS's folder holds fewer items than DescribeExport says were exported.
    await replace_with_aws_folder(aws, bucket, TOTP, contents[TOTP][:-1], files=2)

    result = await backup(aws, cfg)

    assert result.status_code == 500
    row = result.body["results"][0]
    assert f"hold {len(contents[TOTP]) - 1} items, DescribeExport ItemCount says" in str(
        row["error"]
    )


async def test_run_that_cannot_reach_its_bucket_is_500_and_starts_nothing(
    aws: AwsClients, moto: str
) -> None:
    await three_tables(aws)
    result = await backup(aws, config("no-such-bucket-here", U2F))
    assert result.status_code == 500
    assert "NoSuchBucket" in result.body["error"]
    assert result.body["manifest_s3_key"] is None
    assert await export_arns(aws, U2F) == []


async def test_export_failed_on_aws_side_fails_its_table(aws: AwsClients, bucket: str) -> None:
    """moto looks the bucket up in the S3BucketOwner's account: the export FAILS there."""
    await three_tables(aws)
    cfg = config(bucket, U2F, expected_bucket_owner="111111111111")
    result = await backup(aws, cfg)
    assert result.status_code == 500
    (row,) = result.body["results"]
    assert row["status"] == "FAILED"
    assert row["error"] == "export failed: S3NoSuchBucket: The specified bucket does not exist"
    assert row["export_arn"] == (await export_arns(aws, U2F))[0]


async def test_deadline_during_verification_leaves_the_table_to_the_next_invocation(
    aws: AwsClients, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await three_tables(aws)
    cfg = config(bucket, U2F)
    assert (await backup(aws, cfg, deadline_seconds=0)).status_code == 202
    await wait_exports_finished(aws, U2F)

    async def never_done(*_args: Any, **_kw: Any) -> Any:
        await asyncio.Event().wait()  # a verification slower than the time left

    progress: list[tuple[str, str]] = []
    with monkeypatch.context() as m:
        m.setattr(ddb_backup.backup.verification, "verify_files", never_done)
        cut = await backup(aws, cfg, deadline_seconds=1.0, progress=progress)

    assert cut.status_code == 202
    assert progress == [(U2F, "VERIFYING")]
    assert cut.body["results"][0]["status"] == "EXPORTED"
    state = RunState.model_validate_json(await get(aws, bucket, run_state_key(PREFIX, DATE)))
    assert state.tables[0].status.value == "EXPORTED"
    assert await keys_under(aws, bucket, manifest_key(PREFIX, DATE)) == []

    done = await backup(aws, cfg)
    assert done.status_code == 200
    assert done.body["total_items_exported"] == 7
    assert len(await export_arns(aws, U2F)) == 1
