"""What is written is what was verified (issue 10, point 5): pinned reads.

A restore records each data file's ETag (and VersionId in a versioned
bucket) when it verifies it, keeps it in its checkpoint, and sends it with
every GET, range requests included; likewise the manifests of a
point-in-time restore's windows, which a resumed round reads again. A file
replaced in S3 after verification stops its table before any replaced item
is written, with the file named.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from ddb_backup.aws import AwsClients
from ddb_backup.config import RestoreConfig
from ddb_backup.errors import DataFileChangedError
from ddb_backup.events import RestoreRequest
from ddb_backup.restore import RestoreResult, restore_clients, run_restore
from ddb_backup.restore.checkpoint import checkpoint_key
from ddb_backup.restore.writer import RetryPolicy, WireRequest, default_sender
from ddb_backup.storage import ObjectPin, S3Storage
from tests.support.backups import PREFIX, make_backup
from tests.support.data import (
    canonical,
    create_table,
    every_type_items,
    export_lines,
    gzip_lines,
    put_items,
    scan_all,
)
from tests.support.faults import Fault, FaultProxy
from tests.support.incremental import rewrite_manifest
from tests.support.pitr import SOURCE, make_changes, record_chain

FAST = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.002)
T = "mfa-api_test_totp_global"
DATE = "2026-11-27"
STALE = [{"pk": {"S": f"stale-{i}"}, "sk": {"S": "x"}} for i in range(30)]
N = 100


async def backed_up(aws: AwsClients, bucket: str, *, versioned: bool) -> tuple[list[Any], str]:
    """One data file of N items, a table holding STALE; the file's key."""
    if versioned:
        await aws.s3.put_bucket_versioning(
            Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
        )
    items = every_type_items(N)
    manifest = await make_backup(aws.s3, bucket, PREFIX, DATE, {T: items}, files=1, empty_files=0)
    await create_table(aws.dynamodb, T)
    await put_items(aws.dynamodb, T, STALE)
    [data_file] = manifest.tables[0].files or []
    return items, data_file.key


def foreign_items() -> list[dict[str, Any]]:
    """Same count, same keys shape, other content (and other keys)."""
    return [
        {**it, "pk": {"S": f"foreign-{i}"}} for i, it in enumerate(every_type_items(N, marker="x"))
    ]


async def replace(aws: AwsClients, bucket: str, key: str) -> None:
    body = gzip_lines(export_lines(foreign_items()))
    await aws.s3.put_object(Bucket=bucket, Key=key, Body=body)


async def cut_after_clear_and_two_batches(config: RestoreConfig, aws: AwsClients) -> RestoreResult:
    request = RestoreRequest(backup_date=DATE, clear_existing_data=True, max_workers=1)
    first = await run_restore(config, request, aws, retry=FAST, max_batches=2, files_in_flight=1)
    assert first.status_code == 202, first.body
    [table] = first.body["restore_results"]
    assert (table["items_cleared"], table["items_written"]) == (len(STALE), 50)
    return first


def no_foreign_items(items: list[dict[str, Any]]) -> bool:
    return not any(i["pk"]["S"].startswith("foreign-") for i in items)


async def resumed_partially(
    config: RestoreConfig, aws: AwsClients, first: RestoreResult
) -> dict[str, Any]:
    """Resume ``first``; the round must end PARTIAL (207) with nothing left to
    resume (a changed object is final). Returns the one table's result."""
    second = await run_restore(
        config, RestoreRequest(resume_token=first.body["resume_token"]), aws, retry=FAST
    )
    assert second.status_code == 207, second.body
    assert "resume_token" not in second.body
    [table] = second.body["restore_results"]
    assert table["status"] == "PARTIAL"
    result: dict[str, Any] = table
    return result


async def test_file_replaced_between_rounds_is_refused_with_its_name(
    aws: AwsClients, bucket: str, config: RestoreConfig
) -> None:
    items, key = await backed_up(aws, bucket, versioned=False)
    first = await cut_after_clear_and_two_batches(config, aws)
    # The checkpoint carries the ETag verified, for later rounds.
    checkpoint = orjson.loads(
        await (
            await aws.s3.get_object(
                Bucket=bucket, Key=checkpoint_key(PREFIX, first.body["restore_id"])
            )
        )["Body"].read()
    )
    [file_state] = checkpoint["tables"][0]["files"]
    assert file_state["etag"]
    assert file_state["version_id"] is None

    await replace(aws, bucket, key)
    second = await run_restore(
        config, RestoreRequest(resume_token=first.body["resume_token"]), aws, retry=FAST
    )

    assert second.status_code == 207, second.body
    assert "resume_token" not in second.body  # final: it would only fail again
    [table] = second.body["restore_results"]
    assert table["status"] == "PARTIAL"
    assert table["items_written"] == 50
    assert f"{key}: the S3 object changed since it was verified" in table["error"]
    in_table = await scan_all(aws.dynamodb, T)
    assert no_foreign_items(in_table)
    assert canonical(in_table) == canonical(items[:50])  # exactly the verified first batches


async def test_versioned_bucket_reads_the_verified_version_after_a_replacement(
    aws: AwsClients, bucket: str, config: RestoreConfig
) -> None:
    items, key = await backed_up(aws, bucket, versioned=True)
    first = await cut_after_clear_and_two_batches(config, aws)
    await replace(aws, bucket, key)  # a new version; the verified one is still there

    second = await run_restore(
        config, RestoreRequest(resume_token=first.body["resume_token"]), aws, retry=FAST
    )

    assert second.status_code == 200, second.body
    assert canonical(await scan_all(aws.dynamodb, T)) == canonical(items)


async def test_versioned_bucket_refuses_when_the_verified_version_is_gone(
    aws: AwsClients, bucket: str, config: RestoreConfig
) -> None:
    items, key = await backed_up(aws, bucket, versioned=True)
    first = await cut_after_clear_and_two_batches(config, aws)
    [version] = (await aws.s3.list_object_versions(Bucket=bucket, Prefix=key))["Versions"]
    await replace(aws, bucket, key)
    await aws.s3.delete_object(Bucket=bucket, Key=key, VersionId=version["VersionId"])

    table = await resumed_partially(config, aws, first)
    assert f"{key}: the S3 object changed since it was verified (VersionId" in table["error"]
    assert canonical(await scan_all(aws.dynamodb, T)) == canonical(items[:50])


async def test_file_replaced_during_the_clear_writes_none_of_it(
    aws: AwsClients, bucket: str, config: RestoreConfig
) -> None:
    """The clear comes after verification: a long clear is a window too."""
    _, key = await backed_up(aws, bucket, versioned=False)
    real = default_sender(aws.dynamodb)
    replaced: list[bool] = []

    async def replace_during_clear(table: str, requests: list[WireRequest]) -> list[WireRequest]:
        if not replaced:
            assert "DeleteRequest" in requests[0]  # the clear's first batch
            await replace(aws, bucket, key)
            replaced.append(True)
        return await real(table, requests)

    result = await run_restore(
        config,
        RestoreRequest(backup_date=DATE, clear_existing_data=True),
        aws,
        retry=FAST,
        sender=replace_during_clear,
    )

    assert result.status_code == 207, result.body
    [table] = result.body["restore_results"]
    assert (table["status"], table["items_cleared"], table["items_written"]) == (
        "PARTIAL",
        len(STALE),
        0,
    )
    assert f"{key}: the S3 object changed since it was verified" in table["error"]
    assert await scan_all(aws.dynamodb, T) == []


async def test_window_manifest_replaced_between_rounds_is_refused_with_its_name(
    aws: AwsClients, bucket: str, config: RestoreConfig
) -> None:
    """A resumed point-in-time round reads the manifests of the windows it has not
    finished again: pinned to the objects the first round verified, like the
    data files. A summary rewritten since (reformatted, its .md5 sidecar too:
    every check of its content would pass it) stops the table, naming the
    manifest, before any write of a window: the table holds the (verified)
    full backup only."""
    sc = await make_changes(aws, bucket)
    await record_chain(S3Storage(aws.s3, bucket), sc)
    request = RestoreRequest(
        restore_to=sc.bounds[3].isoformat(), tables=[SOURCE], clear_existing_data=True
    )
    first = await run_restore(config, request, aws, retry=FAST, max_batches=1)
    assert first.status_code == 202, first.body
    [cut] = first.body["restore_results"]
    pending = [w["folder"] for w in cut["point_in_time"]["windows"] if not w["done"]]
    assert pending == sc.windows
    summary_key = f"{pending[0]}/manifest-summary.json"
    raw = await (await aws.s3.get_object(Bucket=bucket, Key=summary_key))["Body"].read()
    replaced = orjson.dumps(orjson.loads(raw), option=orjson.OPT_INDENT_2)
    await rewrite_manifest(aws.s3, bucket, summary_key, replaced)

    table = await resumed_partially(config, aws, first)
    assert f"{summary_key}: the S3 object changed since it was verified" in table["error"]
    assert table["items_written"] == len(sc.snapshots[0])  # the rest of the full backup
    windows = table["point_in_time"]["windows"]
    assert [(w["puts"], w["deletes"], w["done"]) for w in windows] == [(0, 0, False)] * 3
    assert canonical(await scan_all(aws.dynamodb, SOURCE)) == canonical(sc.snapshots[0])


async def test_range_resume_is_pinned_to_the_first_answer(
    faulty_aws: FaultProxy, aws: AwsClients, bucket: str
) -> None:
    """A body cut part-way is resumed by a range GET with If-Match (moto 5.2
    honours If-Match on range GETs): a replacement in between is refused."""
    key = "native-exports/x/data.json.gz"
    original = gzip_lines(export_lines(every_type_items(300)))
    await aws.s3.put_object(Bucket=bucket, Key=key, Body=original)
    faulty_aws.set_faults(Fault.cut_body(operation="GetObject", limit=1))
    storage = S3Storage(aws.s3, bucket)
    got: list[bytes] = []

    async def read_replacing_after_first_chunk() -> None:
        async for chunk in storage.stream(key, chunk_size=1024):
            if not got:
                await aws.s3.put_object(Bucket=bucket, Key=key, Body=b"other content")
            got.append(chunk)

    with pytest.raises(DataFileChangedError) as caught:
        await read_replacing_after_first_chunk()
    assert caught.value.key == key
    assert faulty_aws.counts["cut_body"] == 1
    assert len(b"".join(got)) < len(original)
    assert b"".join(got) == original[: len(b"".join(got))]  # no byte of the new object


async def test_pinned_get_of_a_replaced_object(aws: AwsClients, bucket: str) -> None:
    key = "native-exports/x/data.json.gz"
    put = await aws.s3.put_object(Bucket=bucket, Key=key, Body=b"verified")
    storage = S3Storage(aws.s3, bucket)
    pin = ObjectPin(etag=put["ETag"])
    assert b"".join([c async for c in storage.stream(key, pin=pin)]) == b"verified"
    await aws.s3.put_object(Bucket=bucket, Key=key, Body=b"replaced")
    with pytest.raises(DataFileChangedError, match=f"^{key}: the S3 object changed"):
        _ = [c async for c in storage.stream(key, pin=pin)]


async def test_5xx_html_page_during_a_clear_gives_a_short_clean_error(
    faulty_aws: FaultProxy, aws: AwsClients, bucket: str, config: RestoreConfig
) -> None:
    """Issue 10, point 10: botocore puts an unparseable body into Message."""
    await backed_up(aws, bucket, versioned=False)
    faulty_aws.set_faults(Fault.http_error(500, service="dynamodb", operation="Scan", html=True))
    request = RestoreRequest(backup_date=DATE, clear_existing_data=True, max_workers=1)
    async with restore_clients(1) as lambda_clients:  # no botocore retries, as in Lambda
        result = await run_restore(config, request, lambda_clients, retry=FAST)
    assert result.status_code == 500, result.body
    [table] = result.body["restore_results"]
    assert table["status"] == "FAILED"
    assert table["error"] == "Scan failed: 500 (HTTP 500) (table=mfa-api_test_totp_global)"
    assert faulty_aws.counts["http_500"] == FAST.max_attempts
    faulty_aws.set_faults()
    assert canonical(await scan_all(aws.dynamodb, T)) == canonical(STALE)  # nothing written
