"""``restore_export``: any native export folder into an existing table."""

from __future__ import annotations

import orjson
import pytest

from ddb_backup.aws import AwsClients
from ddb_backup.restore import restore_export
from ddb_backup.restore.writer import RetryPolicy, generic_sender
from ddb_backup.storage import S3Storage
from tests.support.data import (
    SECRET_MARKER,
    canonical,
    create_table,
    every_type_items,
    put_items,
    scan_all,
    write_aws_export,
)
from tests.support.senders import poisoned, refusing_sender

FAST = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.004)
TABLE = "console-export-target"


async def test_aws_shaped_folder_restored(aws: AwsClients, bucket: str) -> None:
    items = every_type_items(130)
    export = await write_aws_export(
        aws.s3, bucket, "exports/console", items, files=4, empty_files=1, sidecars=True
    )
    await create_table(aws.dynamodb, TABLE, pitr=False)

    result = await restore_export(
        S3Storage(aws.s3, bucket), export["folder"] + "/", TABLE, aws, retry=FAST, max_workers=3
    )

    assert result.status_code == 200, result.body
    r = result.body["restore_results"][0]
    assert r["status"] == "COMPLETED"
    assert r["items_expected"] == r["items_read"] == r["items_written"] == 130
    assert r["files_processed"] == r["files_total"] == 5
    assert "verified_against_manifest" not in r  # AWS's manifests were there and checked
    assert result.body["export_folder"] == export["folder"]
    assert canonical(await scan_all(aws.dynamodb, TABLE)) == canonical(items)
    assert SECRET_MARKER not in orjson.dumps(result.body).decode()


async def test_dry_run_writes_nothing(aws: AwsClients, bucket: str) -> None:
    export = await write_aws_export(aws.s3, bucket, "exports/console", every_type_items(20))
    await create_table(aws.dynamodb, TABLE, pitr=False)
    result = await restore_export(
        S3Storage(aws.s3, bucket), export["folder"], TABLE, aws, dry_run=True, retry=FAST
    )
    assert result.status_code == 200
    assert result.body["restore_results"][0]["items_to_write"] == 20
    assert await scan_all(aws.dynamodb, TABLE) == []


async def test_ion_refused_before_writing(aws: AwsClients, bucket: str) -> None:
    export = await write_aws_export(
        aws.s3, bucket, "exports/ion", every_type_items(5), sidecars=False
    )
    key = f"{export['folder']}/manifest-summary.json"
    summary = orjson.loads(await (await aws.s3.get_object(Bucket=bucket, Key=key))["Body"].read())
    summary["outputFormat"] = "ION"
    await aws.s3.put_object(Bucket=bucket, Key=key, Body=orjson.dumps(summary))
    await create_table(aws.dynamodb, TABLE, pitr=False)

    result = await restore_export(S3Storage(aws.s3, bucket), export["folder"], TABLE, aws)

    assert result.status_code == 400
    assert result.body["error_type"] == "UnsupportedFormatError"
    assert "ION" in result.body["error"]
    assert await scan_all(aws.dynamodb, TABLE) == []


async def test_tampered_manifest_refused(aws: AwsClients, bucket: str) -> None:
    export = await write_aws_export(aws.s3, bucket, "exports/x", every_type_items(5))
    key = f"{export['folder']}/manifest-files.json"
    body = await (await aws.s3.get_object(Bucket=bucket, Key=key))["Body"].read()
    await aws.s3.put_object(Bucket=bucket, Key=key, Body=body + b"\n")
    await create_table(aws.dynamodb, TABLE, pitr=False)
    result = await restore_export(S3Storage(aws.s3, bucket), export["folder"], TABLE, aws)
    assert result.status_code == 400
    assert ".md5 sidecar" in result.body["error"]
    assert await scan_all(aws.dynamodb, TABLE) == []


async def test_corrupt_data_file_leaves_table_untouched(aws: AwsClients, bucket: str) -> None:
    export = await write_aws_export(aws.s3, bucket, "exports/x", every_type_items(30), files=2)
    bad = export["data_keys"][1]
    body = await (await aws.s3.get_object(Bucket=bucket, Key=bad))["Body"].read()
    await aws.s3.put_object(Bucket=bucket, Key=bad, Body=body[: len(body) // 2])
    await create_table(aws.dynamodb, TABLE, pitr=False)
    await put_items(aws.dynamodb, TABLE, [{"pk": {"S": "keep"}, "sk": {"S": "me"}}])
    result = await restore_export(S3Storage(aws.s3, bucket), export["folder"], TABLE, aws)
    assert result.status_code == 500
    assert bad in result.body["restore_results"][0]["error"]
    assert await scan_all(aws.dynamodb, TABLE) == [{"pk": {"S": "keep"}, "sk": {"S": "me"}}]


async def test_missing_target_table(aws: AwsClients, bucket: str) -> None:
    export = await write_aws_export(aws.s3, bucket, "exports/x", every_type_items(3))
    result = await restore_export(S3Storage(aws.s3, bucket), export["folder"], TABLE, aws)
    assert result.status_code == 500
    assert f"target table {TABLE} does not exist" in result.body["restore_results"][0]["error"]


#: Prefixes a genuine export can have (S3 keys are literal): a space, non-ASCII,
#: ``%`` (even one that looks encoded) and ``+``, in the first segment and later.
ODD_PREFIXES = ["my exports/2026 11", "été/π-ü", "100%/a%20b", "a+b/c+d"]


@pytest.mark.parametrize("prefix", ODD_PREFIXES)
async def test_odd_prefixes_restore_and_their_dead_letters_too(
    aws: AwsClients, bucket: str, prefix: str
) -> None:
    """A folder under any of these prefixes verifies and restores; the items that
    fail land in a dead-letter folder at a plain location, which restores too."""
    items = every_type_items(40)
    export = await write_aws_export(aws.s3, bucket, prefix, items, files=3)
    await create_table(aws.dynamodb, TABLE, pitr=False)
    storage = S3Storage(aws.s3, bucket)
    poison = poisoned(items, 6)

    dry = await restore_export(storage, export["folder"], TABLE, aws, dry_run=True, retry=FAST)
    assert dry.status_code == 200, dry.body
    result = await restore_export(
        storage,
        export["folder"],
        TABLE,
        aws,
        retry=FAST,
        sender=refusing_sender(generic_sender(aws.dynamodb), poison),
    )

    assert result.status_code == 207, result.body
    r = result.body["restore_results"][0]
    assert (r["items_expected"], r["items_written"], r["items_failed"]) == (
        40,
        40 - len(poison),
        len(poison),
    )
    folder = r["dead_letter_folder"]
    assert folder == f"ddb-backup/_restore/{result.body['restore_id']}/dead-letter/{TABLE}"
    again = await restore_export(storage, folder, TABLE, aws, retry=FAST)
    assert again.status_code == 200, again.body
    assert again.body["restore_results"][0]["items_written"] == len(poison)
    assert canonical(await scan_all(aws.dynamodb, TABLE)) == canonical(items)


async def test_dead_letters_sit_under_a_plain_first_segment(aws: AwsClients, bucket: str) -> None:
    items = every_type_items(12)
    export = await write_aws_export(aws.s3, bucket, "exports/odd name", items, files=2)
    await create_table(aws.dynamodb, TABLE, pitr=False)
    result = await restore_export(
        S3Storage(aws.s3, bucket),
        export["folder"],
        TABLE,
        aws,
        retry=FAST,
        sender=refusing_sender(generic_sender(aws.dynamodb), poisoned(items, 4)),
    )
    assert result.status_code == 207, result.body
    assert result.body["restore_results"][0]["dead_letter_folder"].startswith(
        f"exports/_restore/{result.body['restore_id']}/dead-letter/"
    )
