"""Hostile and odd input against the moto server, in AWS-shaped folders whose
manifests' MD5s and counts match, so only the per-line and key checks can tell
(issue 10, points 1, 2, 3 and the first of 10)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from ddb_backup.audit import verify_backup
from ddb_backup.aws import AwsClients, aws_clients
from ddb_backup.config import RestoreConfig
from ddb_backup.events import RestoreRequest
from ddb_backup.items import canonical_puts
from ddb_backup.restore import RestoreResult, restore_export, run_restore
from ddb_backup.restore import write as write_pass
from ddb_backup.restore.writer import RetryPolicy
from ddb_backup.storage import LocalStorage, S3Storage
from handlers.restore import handler
from tests.support.backups import (
    BUCKET,
    PREFIX,
    make_backup,
    make_legacy_backup,
    put_manifest,
)
from tests.support.data import (
    BAD_LINES,
    SMUGGLING,
    create_table,
    every_type_items,
    export_lines,
    gzip_lines,
    md5_b64,
    put_items,
    scan_all,
    write_aws_export,
)
from tests.support.lambda_context import FakeContext

FAST = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.004)
TABLE = "hostile-target"
OTHER = "other-table"  # the table SMUGGLING's second line aims at
DATE = "2026-11-27"
VICTIM = {"pk": {"S": "victim"}, "sk": {"S": "v"}, "secret": {"S": "keep me"}}
OTHER_ITEM = {"pk": {"S": "o"}, "sk": {"S": "o"}, "secret": {"S": "keep me too"}}
#: A (pk, sk) table's items: 20 partition keys with 10 sort keys each.
PK_SK_ITEMS = [
    {"pk": {"S": f"user-{i // 10}"}, "sk": {"S": f"dev-{i % 10}"}, "n": {"N": str(i)}}
    for i in range(200)
]


async def victims(aws: AwsClients) -> None:
    """The target holds VICTIM, the other table OTHER_ITEM: both must survive."""
    await create_table(aws.dynamodb, TABLE, pitr=False)
    await create_table(aws.dynamodb, OTHER, pitr=False)
    await put_items(aws.dynamodb, TABLE, [VICTIM])
    await put_items(aws.dynamodb, OTHER, [OTHER_ITEM])


async def assert_untouched(aws: AwsClients) -> None:
    assert await scan_all(aws.dynamodb, TABLE) == [VICTIM]
    assert await scan_all(aws.dynamodb, OTHER) == [OTHER_ITEM]


def refused(result: RestoreResult) -> str:
    """The one table's error; it must have failed with nothing written."""
    assert result.status_code == 500, result.body
    (r,) = result.body["restore_results"]
    assert r["status"] == "FAILED"
    assert r["items_written"] == r["items_cleared"] == 0
    assert "keep me" not in orjson.dumps(result.body).decode()
    error: str = r["error"]
    return error


# -- point 1: smuggled requests -------------------------------------------------------


@pytest.mark.parametrize("dry_run", [False, True], ids=["real", "dry-run"])
async def test_smuggling_lines_refused_by_restore_export(
    aws: AwsClients, bucket: str, dry_run: bool
) -> None:
    """The issue's lines, MD5s and counts matching: refused alike by a real and a
    dry run, naming the file and line; the victim and the other table untouched."""
    await victims(aws)
    items = every_type_items(10)
    export = await write_aws_export(
        aws.s3, bucket, "exports/hostile", items, files=2, extra_lines=SMUGGLING
    )
    result = await restore_export(
        S3Storage(aws.s3, bucket), export["folder"], TABLE, aws, retry=FAST, dry_run=dry_run
    )
    error = refused(result)
    assert f"{export['data_keys'][0]}: line {len(items[0::2]) + 1} is not JSON" in error
    await assert_untouched(aws)


def test_smuggling_backup_refused_by_the_restore_handler(
    moto: str, restore_handler_env: None
) -> None:
    """Our own manifest (per-file MD5s matching) holding the smuggling lines: the
    handler refuses before clearing, so even clear_existing_data leaves all as it was."""

    async def setup() -> None:
        async with aws_clients() as aws:
            await aws.s3.create_bucket(Bucket=BUCKET)
            await victims(aws)
            await make_backup(
                aws.s3,
                BUCKET,
                PREFIX,
                DATE,
                {TABLE: every_type_items(10)},
                extra_lines={TABLE: SMUGGLING},
            )

    async def check() -> None:
        async with aws_clients() as aws:
            await assert_untouched(aws)

    asyncio.run(setup())
    result = handler(
        {"backup_date": DATE, "tables": [TABLE], "clear_existing_data": True},
        FakeContext(remaining_ms=900_000),
    )
    error = refused(RestoreResult(result["statusCode"], result["body"]))
    assert "is not JSON" in error
    asyncio.run(check())


# -- point 2: per-line checks although AWS's manifest gives MD5s ---------------------


@pytest.mark.parametrize("bad", list(BAD_LINES.values()), ids=list(BAD_LINES))
async def test_verify_and_restore_refuse_bad_lines_despite_matching_md5s(
    aws: AwsClients, bucket: str, config: RestoreConfig, bad: bytes
) -> None:
    await victims(aws)
    manifest = await make_backup(
        aws.s3, bucket, PREFIX, DATE, {TABLE: every_type_items(9)}, extra_lines={TABLE: [bad]}
    )
    tb = manifest.table(TABLE)
    assert tb is not None
    assert tb.files is not None
    where = f"{tb.files[0].key}: line 4 "  # 9 items in 3 files, the bad line last of the first

    verification = await verify_backup(S3Storage(aws.s3, bucket), PREFIX, DATE)
    assert not verification.ok
    (problem,) = verification.problems
    assert where in problem

    for dry_run in (True, False):
        request = RestoreRequest(backup_date=DATE, dry_run=dry_run, clear_existing_data=True)
        assert where in refused(await run_restore(config, request, aws, retry=FAST))
    await assert_untouched(aws)


# -- point 3: the target's keys, for every kind of restore ---------------------------

KEYED_ON = {
    "pk-only": ([{"AttributeName": "pk", "KeyType": "HASH"}], "S", "same target key"),
    "sk-only": ([{"AttributeName": "sk", "KeyType": "HASH"}], "S", "same target key"),
    "absent": ([{"AttributeName": "id", "KeyType": "HASH"}], "S", "lacks key attribute 'id'"),
    "pk-number": ([{"AttributeName": "pk", "KeyType": "HASH"}], "N", "'pk' is of type S"),
}


async def keyed_target(aws: AwsClients, case: str) -> str:
    """TABLE keyed as ``case`` says, holding VICTIM's counterpart."""
    schema, typ, reason = KEYED_ON[case]
    name = schema[0]["AttributeName"]
    await create_table(
        aws.dynamodb,
        TABLE,
        pitr=False,
        key_schema=schema,
        attribute_definitions=[{"AttributeName": name, "AttributeType": typ}],
    )
    return reason


def sentinel(case: str) -> dict[str, Any]:
    name = KEYED_ON[case][0][0]["AttributeName"]
    return {name: {"N" if KEYED_ON[case][1] == "N" else "S": "7"}, "secret": {"S": "keep me"}}


@pytest.mark.parametrize("case", list(KEYED_ON))
async def test_restore_export_into_other_keys_is_refused(
    aws: AwsClients, bucket: str, case: str
) -> None:
    """The issue's case: a (pk, sk) export of 200 items into a table keyed otherwise."""
    reason = await keyed_target(aws, case)
    await put_items(aws.dynamodb, TABLE, [sentinel(case)])
    export = await write_aws_export(aws.s3, bucket, "exports/pk-sk", PK_SK_ITEMS, files=2)
    for dry_run in (True, False):
        result = await restore_export(
            S3Storage(aws.s3, bucket), export["folder"], TABLE, aws, retry=FAST, dry_run=dry_run
        )
        assert reason in refused(result)
    assert await scan_all(aws.dynamodb, TABLE) == [sentinel(case)]


@pytest.mark.parametrize("case", ["pk-only", "absent"])
async def test_legacy_backup_into_other_keys_is_refused(
    aws: AwsClients, bucket: str, config: RestoreConfig, case: str
) -> None:
    """The replaced system's format captured no schema: the lines are checked."""
    reason = await keyed_target(aws, case)
    await put_items(aws.dynamodb, TABLE, [sentinel(case)])
    await make_legacy_backup(aws.s3, bucket, PREFIX, DATE, {TABLE: PK_SK_ITEMS})
    request = RestoreRequest(backup_date=DATE, tables=[TABLE], clear_existing_data=True)
    assert reason in refused(await run_restore(config, request, aws, retry=FAST))
    assert await scan_all(aws.dynamodb, TABLE) == [sentinel(case)]


async def test_our_backup_into_other_keys_is_refused(
    aws: AwsClients, bucket: str, config: RestoreConfig
) -> None:
    """Our format captured the schema: compared before any line is read."""
    await keyed_target(aws, "pk-only")
    await put_items(aws.dynamodb, TABLE, [sentinel("pk-only")])
    await make_backup(aws.s3, bucket, PREFIX, DATE, {TABLE: PK_SK_ITEMS})
    request = RestoreRequest(backup_date=DATE, tables=[TABLE], clear_existing_data=True)
    error = refused(await run_restore(config, request, aws, retry=FAST))
    assert f"table {TABLE} has keys (pk HASH S), the backup has (pk HASH S, sk RANGE S)" in error
    assert await scan_all(aws.dynamodb, TABLE) == [sentinel("pk-only")]


# -- point 10: a data file listed twice ----------------------------------------------


async def test_our_manifest_listing_a_file_twice_is_refused(
    aws: AwsClients, bucket: str, config: RestoreConfig
) -> None:
    await victims(aws)
    manifest = await make_backup(aws.s3, bucket, PREFIX, DATE, {TABLE: PK_SK_ITEMS[:30]})
    (tb,) = manifest.tables
    assert tb.files is not None
    assert tb.item_count is not None
    twice = tb.files[0]
    # The counts agree with the listing: only the file listed twice is wrong.
    tb = tb.model_copy(
        update={"files": [*tb.files, twice], "item_count": tb.item_count + twice.item_count}
    )
    await put_manifest(aws.s3, bucket, PREFIX, manifest.model_copy(update={"tables": [tb]}))

    verification = await verify_backup(S3Storage(aws.s3, bucket), PREFIX, DATE)
    (problem,) = verification.problems
    assert f"{twice.key}: listed 2 times by the manifest" in problem
    request = RestoreRequest(backup_date=DATE, clear_existing_data=True)  # nor cleared
    result = await run_restore(config, request, aws, retry=FAST)
    assert f"{twice.key}: listed 2 times by the manifest" in refused(result)
    await assert_untouched(aws)


async def test_aws_manifest_listing_a_file_twice_is_refused(aws: AwsClients, bucket: str) -> None:
    await victims(aws)
    export = await write_aws_export(aws.s3, bucket, "exports/twice", PK_SK_ITEMS[:30], files=2)
    folder = export["folder"]
    files_key = f"{folder}/manifest-files.json"
    lines = (await (await aws.s3.get_object(Bucket=bucket, Key=files_key))["Body"].read()).split()
    doubled = b"\n".join([*lines, lines[0]]) + b"\n"
    await aws.s3.put_object(Bucket=bucket, Key=files_key, Body=doubled)
    await aws.s3.put_object(
        Bucket=bucket, Key=f"{folder}/manifest-files.md5", Body=md5_b64(doubled).encode()
    )
    result = await restore_export(S3Storage(aws.s3, bucket), folder, TABLE, aws, retry=FAST)
    twice = orjson.loads(lines[0])["dataFileS3Key"]
    assert f"{twice}: listed 2 times by the manifest" in refused(result)
    await assert_untouched(aws)


async def test_local_copy_swapped_after_verification_is_checked_in_full_again(
    aws: AwsClients, bucket: str, tmp_path: Path
) -> None:
    """A local copy cannot be pinned: the write pass runs every rule again, so a data
    file replaced between verification and writing (same line count) is refused at
    its first bad line, before that line's batch is sent."""
    await victims(aws)
    export = await write_aws_export(
        aws.s3, bucket, "local-src", PK_SK_ITEMS[:3], files=1, empty_files=0
    )
    listing = await aws.s3.list_objects_v2(Bucket=bucket, Prefix=export["folder"])
    for obj in listing["Contents"]:
        body = await (await aws.s3.get_object(Bucket=bucket, Key=obj["Key"]))["Body"].read()
        (tmp_path / obj["Key"]).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / obj["Key"]).write_bytes(body)
    [data_key] = export["data_keys"]
    # Parses as one item (a pinned re-read would send it), but X is no type.
    swapped = [orjson.dumps({"Item": {"pk": {"S": "s"}, "sk": {"S": "1"}, "x": {"X": "1"}}})]
    swapped += export_lines(PK_SK_ITEMS[3:5])

    class SwappedOnSecondRead(LocalStorage):
        reads = 0

        async def stream(self, key: str, **kw: Any) -> AsyncIterator[bytes]:
            if key == data_key:
                SwappedOnSecondRead.reads += 1
                if SwappedOnSecondRead.reads == 2:  # verified once: now swap it
                    (tmp_path / key).write_bytes(gzip_lines(swapped))
            async for chunk in super().stream(key, **kw):
                yield chunk

    storage = SwappedOnSecondRead(tmp_path)
    result = await restore_export(storage, export["folder"], TABLE, aws, retry=FAST)

    assert SwappedOnSecondRead.reads == 2
    assert result.status_code != 200, result.body
    (r,) = result.body["restore_results"]
    assert f"{data_key}: line 1 has an attribute that is not DynamoDB JSON" in str(r["error"])
    assert r["items_written"] == 0
    assert await scan_all(aws.dynamodb, TABLE) == [VICTIM]


async def test_lines_another_parser_could_read_otherwise_write_what_was_checked(
    aws: AwsClients, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Canonical lines are sent as they stand; a line with a name twice, or ``Item``
    twice, is valid JSON that parsers may read differently. Its bytes never reach
    DynamoDB: the table holds exactly what verification checked (the last value of
    each name, as orjson reads it), and the victim is untouched."""
    await victims(aws)
    ambiguous = [
        b'{"Item":{"pk":{"S":"victim"},"sk":{"S":"v"},"pk":{"S":"twice"},"n":{"N":"1"}}}',
        b'{"Item":{"pk":{"S":"victim"},"sk":{"S":"v"}},"Item":{"pk":{"S":"item-twice"},'
        b'"sk":{"S":"v"}}}',
    ]
    export = await write_aws_export(
        aws.s3, bucket, "exports/ambiguous", PK_SK_ITEMS[:30], files=2, extra_lines=ambiguous
    )
    as_they_stand: list[bytes] = []  # the lines the restore framed without parsing

    def spied(lines: list[bytes]) -> Any:
        as_they_stand.extend(lines)
        return canonical_puts(lines)

    monkeypatch.setattr(write_pass, "canonical_puts", spied)
    result = await restore_export(
        S3Storage(aws.s3, bucket), export["folder"], TABLE, aws, retry=FAST
    )

    assert result.status_code == 200, result.body
    # The second file (canonical lines only) went as it stood; the first never did.
    assert len(as_they_stand) == 15
    assert not set(ambiguous) & set(as_they_stand)
    checked = [orjson.loads(line)["Item"] for line in ambiguous]
    assert checked[0]["pk"] == {"S": "twice"}
    assert checked[1]["pk"] == {"S": "item-twice"}

    def by_key(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(items, key=lambda i: (i["pk"]["S"], i["sk"]["S"]))

    want = by_key([VICTIM, *PK_SK_ITEMS[:30], *checked])
    assert by_key(await scan_all(aws.dynamodb, TABLE)) == want
