"""Restore against the moto server: verify first, touch nothing that failed,
bring every item back exactly."""

from __future__ import annotations

import datetime as dt
import gzip
from typing import Any

import orjson
import pytest

from ddb_backup.aws import AwsClients
from ddb_backup.config import RestoreConfig
from ddb_backup.events import RestoreRequest
from ddb_backup.keys import manifest_key, run_state_key
from ddb_backup.restore import run_restore
from ddb_backup.restore.writer import RetryPolicy
from tests.support.backups import ENVIRONMENT, PREFIX, make_backup, make_legacy_backup
from tests.support.data import (
    SECRET_MARKER,
    canonical,
    create_table,
    every_type_items,
    put_items,
    scan_all,
    table_name,
)

FAST = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.005)
T1 = table_name(ENVIRONMENT, "totp")
T2 = table_name(ENVIRONMENT, "u2f")


async def restore(config: RestoreConfig, aws: AwsClients, **event: Any) -> Any:
    return await run_restore(config, RestoreRequest(**event), aws, retry=FAST)


def old_items(n: int) -> list[dict[str, Any]]:
    """Items that are not in the backup (and one that the backup overwrites)."""
    items = [{"pk": {"S": f"stale-{i}"}, "sk": {"S": "x"}, "v": {"N": "1"}} for i in range(n)]
    items.append({"pk": {"S": "user-00001"}, "sk": {"S": "device#1"}, "v": {"S": "overwritten"}})
    return items


async def test_full_cycle_item_for_item(
    aws: AwsClients, bucket: str, config: RestoreConfig
) -> None:
    source = every_type_items(120)
    other = every_type_items(30, marker="other")
    await make_backup(aws.s3, bucket, PREFIX, "2026-11-27", {T1: source, T2: other})
    for t in (T1, T2):
        await create_table(aws.dynamodb, t)
    await put_items(aws.dynamodb, T1, old_items(40))

    result = await restore(config, aws, clear_existing_data=True)

    assert result.status_code == 200, result.body
    body = result.body
    assert body["backup_date"] == "2026-11-27"
    assert body["successful_restores"] == 2
    assert body["failed_restores"] == body["partial_restores"] == body["skipped_restores"] == 0
    assert body["total_items_written"] == 150
    assert body["total_items_processed"] == 150
    by_table = {r["table"]: r for r in body["restore_results"]}
    r1 = by_table[T1]
    assert r1["status"] == "COMPLETED"
    assert r1["items_expected"] == r1["items_read"] == r1["items_written"] == 120
    assert r1["items_failed"] == 0
    assert r1["items_cleared"] == 41
    assert r1["files_processed"] == r1["files_total"] == 4
    assert r1["dead_letter_keys"] == []
    assert by_table[T2]["items_cleared"] == 0
    assert canonical(await scan_all(aws.dynamodb, T1)) == canonical(source)
    assert canonical(await scan_all(aws.dynamodb, T2)) == canonical(other)
    assert SECRET_MARKER not in orjson.dumps(body).decode()


async def test_latest_skips_incomplete_newer_date(
    aws: AwsClients, bucket: str, config: RestoreConfig
) -> None:
    good = every_type_items(20)
    await make_backup(aws.s3, bucket, PREFIX, "2026-11-25", {T1: good})
    # Newer: a run still in progress, and a partial backup lacking T1.
    await aws.s3.put_object(
        Bucket=bucket, Key=run_state_key(PREFIX, dt.date(2026, 11, 27)), Body=b"{}"
    )
    await make_backup(
        aws.s3,
        bucket,
        PREFIX,
        "2026-11-26",
        {T2: every_type_items(3)},
        failed_tables=(T1,),
    )
    await create_table(aws.dynamodb, T1)

    result = await restore(config, aws, tables=[T1])

    assert result.status_code == 200, result.body
    assert result.body["backup_date"] == "2026-11-25"
    skipped = {s["date"]: s["reason"] for s in result.body["skipped_backups"]}
    assert set(skipped) == {"2026-11-27", "2026-11-26"}
    assert "in_progress" in skipped["2026-11-27"]
    assert T1 in skipped["2026-11-26"]
    assert canonical(await scan_all(aws.dynamodb, T1)) == canonical(good)


async def test_explicit_date_skips_failed_exports(
    aws: AwsClients, bucket: str, config: RestoreConfig
) -> None:
    items = every_type_items(10)
    await make_backup(aws.s3, bucket, PREFIX, "2026-11-26", {T2: items}, failed_tables=(T1,))
    await create_table(aws.dynamodb, T2)
    result = await restore(config, aws, backup_date="2026-11-26")
    assert result.status_code == 207
    assert result.body["successful_restores"] == 1
    assert result.body["skipped_restores"] == 1
    assert result.body["skipped_tables"][0]["table"] == T1


async def test_legacy_manifest_restores(
    aws: AwsClients, bucket: str, config: RestoreConfig
) -> None:
    items = every_type_items(40)
    await make_legacy_backup(aws.s3, bucket, PREFIX, "2026-11-20", {T1: items})
    await create_table(aws.dynamodb, T1)

    result = await restore(config, aws, backup_date="2026-11-20")

    assert result.status_code == 200, result.body
    r = result.body["restore_results"][0]
    assert r["items_expected"] == r["items_written"] == 40
    assert r["files_total"] == 3  # two data files and an empty one, not the decoy's
    assert canonical(await scan_all(aws.dynamodb, T1)) == canonical(items)


async def _corrupt_first_file(aws: AwsClients, bucket: str, key: str, how: str) -> None:
    body = await (await aws.s3.get_object(Bucket=bucket, Key=key))["Body"].read()
    if how == "bytes":
        body = body[:-30] + bytes(30)
    else:  # one item fewer: a valid file whose count is wrong
        lines = gzip.decompress(body).splitlines()[:-1]
        body = gzip.compress(b"".join(line + b"\n" for line in lines))
    await aws.s3.put_object(Bucket=bucket, Key=key, Body=body)


@pytest.mark.parametrize("how", ["bytes", "count"])
async def test_bad_file_leaves_table_untouched(
    aws: AwsClients, bucket: str, config: RestoreConfig, how: str
) -> None:
    manifest = await make_backup(aws.s3, bucket, PREFIX, "2026-11-27", {T1: every_type_items(30)})
    tb = manifest.tables[0]
    assert tb.files is not None
    bad_key = tb.files[0].key
    if how == "count":
        # A manifest whose count disagrees with a sound file.
        files = [f.model_copy(update={"item_count": f.item_count + 1}) for f in tb.files]
        files[1:] = tb.files[1:]
        bad = manifest.model_copy(update={"tables": [tb.model_copy(update={"files": files})]})
        await aws.s3.put_object(
            Bucket=bucket, Key=manifest_key(PREFIX, manifest.backup_date), Body=bad.to_json()
        )
    else:
        await _corrupt_first_file(aws, bucket, bad_key, how)
    await create_table(aws.dynamodb, T1)
    before = old_items(10)
    await put_items(aws.dynamodb, T1, before)

    result = await restore(config, aws, clear_existing_data=True)

    assert result.status_code == 500, result.body
    r = result.body["restore_results"][0]
    assert r["status"] == "FAILED"
    assert bad_key in r["error"]
    assert r["items_cleared"] == r["items_written"] == 0
    assert canonical(await scan_all(aws.dynamodb, T1)) == canonical(before)


async def test_dry_run_writes_nothing(aws: AwsClients, bucket: str, config: RestoreConfig) -> None:
    await make_backup(aws.s3, bucket, PREFIX, "2026-11-27", {T1: every_type_items(35)})
    await create_table(aws.dynamodb, T1)
    before = old_items(7)
    await put_items(aws.dynamodb, T1, before)
    objects_before = await aws.s3.list_objects_v2(Bucket=bucket)

    result = await restore(config, aws, dry_run=True, clear_existing_data=True)

    assert result.status_code == 200, result.body
    assert result.body["status"] == "DRY_RUN_OK"
    r = result.body["restore_results"][0]
    assert r["items_to_write"] == 35
    assert r["items_to_clear"] == 8
    assert r["items_written"] == r["items_cleared"] == 0
    assert result.body["total_items_written"] == 0
    assert canonical(await scan_all(aws.dynamodb, T1)) == canonical(before)
    objects_after = await aws.s3.list_objects_v2(Bucket=bucket)
    assert [o["Key"] for o in objects_after["Contents"]] == [
        o["Key"] for o in objects_before["Contents"]
    ]


async def test_missing_target_table(aws: AwsClients, bucket: str, config: RestoreConfig) -> None:
    await make_backup(aws.s3, bucket, PREFIX, "2026-11-27", {T1: every_type_items(5)})
    result = await restore(config, aws)
    assert result.status_code == 500
    r = result.body["restore_results"][0]
    assert r["status"] == "FAILED"
    assert f"target table {T1} does not exist" in r["error"]
    tables = await aws.dynamodb.list_tables()
    assert tables["TableNames"] == []


async def test_key_schema_mismatch(aws: AwsClients, bucket: str, config: RestoreConfig) -> None:
    await make_backup(aws.s3, bucket, PREFIX, "2026-11-27", {T1: every_type_items(5)})
    await create_table(
        aws.dynamodb,
        T1,
        key_schema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        attribute_definitions=[{"AttributeName": "pk", "AttributeType": "S"}],
    )
    await put_items(aws.dynamodb, T1, [{"pk": {"S": "keep"}}])
    result = await restore(config, aws, clear_existing_data=True)
    assert result.status_code == 500
    r = result.body["restore_results"][0]
    assert "has keys (pk HASH S), the backup has (pk HASH S, sk RANGE S)" in r["error"]
    assert await scan_all(aws.dynamodb, T1) == [{"pk": {"S": "keep"}}]


async def test_create_missing_table(aws: AwsClients, bucket: str, config: RestoreConfig) -> None:
    items = every_type_items(12)
    await make_backup(aws.s3, bucket, PREFIX, "2026-11-27", {T1: items})
    result = await restore(config, aws, create_missing_tables=True)
    assert result.status_code == 200, result.body
    assert result.body["restore_results"][0]["table_created"] is True
    assert canonical(await scan_all(aws.dynamodb, T1)) == canonical(items)


async def test_table_mapping(aws: AwsClients, bucket: str, config: RestoreConfig) -> None:
    items = every_type_items(12)
    await make_backup(aws.s3, bucket, PREFIX, "2026-11-27", {T1: items})
    await create_table(aws.dynamodb, T1)
    await create_table(aws.dynamodb, "scratch-copy")
    result = await restore(config, aws, table_mapping={T1: "scratch-copy"})
    assert result.status_code == 200, result.body
    assert result.body["restore_results"][0]["target_table"] == "scratch-copy"
    assert canonical(await scan_all(aws.dynamodb, "scratch-copy")) == canonical(items)
    assert await scan_all(aws.dynamodb, T1) == []


async def test_mapping_of_table_not_in_backup_refused(
    aws: AwsClients, bucket: str, config: RestoreConfig
) -> None:
    await make_backup(aws.s3, bucket, PREFIX, "2026-11-27", {T1: every_type_items(3)})
    result = await restore(config, aws, table_mapping={"not-backed-up": "scratch-copy"})
    assert result.status_code == 400
    assert "not-backed-up" in result.body["error"]


async def test_no_backup_is_400(aws: AwsClients, bucket: str, config: RestoreConfig) -> None:
    result = await restore(config, aws, backup_date="2026-11-01")
    assert result.status_code == 400
    assert "no manifest for backup 2026-11-01" in result.body["error"]


async def test_foreign_environment_refused(
    aws: AwsClients, bucket: str, config: RestoreConfig
) -> None:
    await make_backup(
        aws.s3, bucket, PREFIX, "2026-11-27", {T1: every_type_items(3)}, environment="prod"
    )
    await create_table(aws.dynamodb, T1)
    result = await restore(config, aws)
    assert result.status_code == 400
    assert "environment 'prod'" in result.body["error"]
    assert await scan_all(aws.dynamodb, T1) == []


async def test_generic_sender_restores_the_same(
    aws: AwsClients, bucket: str, config: RestoreConfig
) -> None:
    """The default (direct) sender and botocore's generic path bring back the same
    items: one backup restored through each, into two tables, compared item for item."""
    from ddb_backup.restore.sender import direct_sender
    from ddb_backup.restore.writer import default_sender, generic_sender

    items = every_type_items(60)
    await make_backup(aws.s3, bucket, PREFIX, "2026-11-27", {T1: items})
    assert isinstance(default_sender(aws.dynamodb), type(direct_sender(aws.dynamodb)))
    stored = []
    for target, sender in (
        ("restored-direct", default_sender(aws.dynamodb)),
        ("restored-generic", generic_sender(aws.dynamodb)),
    ):
        await create_table(aws.dynamodb, target)
        result = await run_restore(
            config,
            RestoreRequest(tables=[T1], table_mapping={T1: target}),
            aws,
            retry=FAST,
            sender=sender,
        )
        assert result.status_code == 200, result.body
        stored.append(canonical(await scan_all(aws.dynamodb, target)))
    assert stored[0] == stored[1] == canonical(items)
