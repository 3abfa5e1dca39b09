"""Restore drills against the moto server: pass on a good backup, fail (naming
the difference) on one altered with its MD5s updated, always remove the
scratch table, and sweep what a killed drill left behind."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

import ddb_backup.drill
from ddb_backup.aws import AwsClients
from ddb_backup.digest import ContentDigest
from ddb_backup.drill import (
    DRILL_PREFIX,
    DRILL_TAG,
    ENVIRONMENT_TAG,
    DrillDeadline,
    DrillStatus,
    delete_drill_table,
    drill_result_key,
    run_drill,
)
from ddb_backup.errors import BackupNotFoundError, DrillError
from ddb_backup.restore.tables import create_table_from_schema
from tests.support.backups import SCHEMA, put_manifest
from tests.support.data import canonical, create_table, scan_all
from tests.support.drills import (
    PREFIX,
    SOURCE,
    alter_one_item_keeping_md5s,
    backed_up_table,
    restore_config,
)
from tests.support.paths import EVENTS


async def drill_tables(aws: AwsClients) -> list[str]:
    names = (await aws.dynamodb.list_tables())["TableNames"]
    return [n for n in names if n.startswith(DRILL_PREFIX)]


async def stored(aws: AwsClients, bucket: str, key: str) -> dict[str, Any]:
    body = await (await aws.s3.get_object(Bucket=bucket, Key=key))["Body"].read()
    doc: dict[str, Any] = orjson.loads(body)
    return doc


async def test_drill_passes_on_a_good_backup_records_it_and_removes_its_table(
    aws: AwsClients, bucket: str
) -> None:
    manifest, items = await backed_up_table(aws, bucket)
    result = await run_drill(restore_config(bucket), aws)

    assert result.status is DrillStatus.PASSED, result.tables
    (t,) = result.tables
    assert t.source_table == SOURCE
    assert t.scratch_table.startswith(f"{DRILL_PREFIX}{result.drill_id}-")
    assert (t.items_expected, t.items_restored) == (len(items), len(items))
    assert t.digest_source == "manifest"
    assert t.digest_expected == t.digest_restored == manifest.tables[0].content_digest
    assert t.difference is None
    assert t.scratch_deleted
    assert t.items_per_second is not None
    assert t.items_per_second > 0
    assert await drill_tables(aws) == []
    # The source table is untouched.
    assert canonical(await scan_all(aws.dynamodb, SOURCE)) == canonical(items)
    key = drill_result_key(PREFIX, manifest.backup_date, result.drill_id)
    assert key == f"{PREFIX}/2026-01-02/_drills/{result.drill_id}.json" == result.result_key
    doc = await stored(aws, bucket, key)
    assert doc["status"] == "PASSED"
    assert doc["tables"][0]["items_restored"] == len(items)


async def test_drill_of_an_older_backup_without_a_digest_reads_it_from_the_files(
    aws: AwsClients, bucket: str
) -> None:
    manifest, _ = await backed_up_table(aws, bucket)
    table = manifest.tables[0].model_copy(update={"content_digest": None})
    await put_manifest(aws.s3, bucket, PREFIX, manifest.model_copy(update={"tables": [table]}))
    result = await run_drill(restore_config(bucket), aws, date="2026-01-02", tables=[SOURCE])
    assert result.status is DrillStatus.PASSED, result.tables
    assert result.tables[0].digest_source == "files"
    assert result.tables[0].digest_expected == manifest.tables[0].content_digest


async def test_drill_fails_on_a_file_altered_with_matching_md5s_and_removes_its_table(
    aws: AwsClients, bucket: str
) -> None:
    manifest, _ = await backed_up_table(aws, bucket)
    await alter_one_item_keeping_md5s(aws, bucket, manifest)

    result = await run_drill(restore_config(bucket), aws)

    assert result.status is DrillStatus.FAILED
    (t,) = result.tables
    assert t.status is DrillStatus.FAILED
    assert t.items_restored == t.items_expected  # the count alone cannot tell
    assert t.digest_restored != t.digest_expected
    assert t.difference is not None
    assert "content digest" in t.difference
    assert "no longer hold what was verified at backup time" in t.difference
    assert t.scratch_deleted
    assert await drill_tables(aws) == []
    doc = await stored(aws, bucket, result.result_key)
    assert doc["status"] == "FAILED"
    assert doc["tables"][0]["difference"] == t.difference
    assert "9.75" not in orjson.dumps(doc).decode()  # no values in the record


async def test_drill_cut_off_by_its_deadline_removes_its_table(
    aws: AwsClients, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The time runs out while the restored scratch table is read back (the
    deadline is ended from there: no real time raced)."""
    _, items = await backed_up_table(aws, bucket)
    deadline = DrillDeadline()
    seen: list[str] = []

    async def hang(dynamodb: Any, table: str, **_: Any) -> ContentDigest:
        seen.append(table)
        assert canonical(await scan_all(aws.dynamodb, table)) == canonical(items)
        deadline.expire()
        await asyncio.Event().wait()  # the scan never ends: the deadline must
        raise AssertionError("unreachable")

    monkeypatch.setattr(ddb_backup.drill, "digest_table", hang)
    result = await run_drill(restore_config(bucket), aws, deadline_seconds=deadline)

    assert result.status is DrillStatus.CUT_OFF
    (t,) = result.tables
    assert seen == [t.scratch_table]  # cut off with the scratch table restored
    assert (t.status, t.difference) == (DrillStatus.CUT_OFF, "the deadline came first")
    assert t.scratch_deleted
    assert await drill_tables(aws) == []


async def test_tables_a_killed_drill_left_are_swept_by_the_next_one_and_nothing_else(
    aws: AwsClients, bucket: str
) -> None:
    await backed_up_table(aws, bucket)
    key, value = DRILL_TAG
    # What a drill killed at Lambda's timeout leaves: a tagged scratch table.
    left = f"{DRILL_PREFIX}20260101T000000Z-0123abcd-0"
    await create_table_from_schema(
        aws.dynamodb, left, SCHEMA, tags={key: value, ENVIRONMENT_TAG: "test"}
    )
    # A table with a drill-like name but no drill tag is not ours to delete,
    # nor is another environment's drill table (it may be running now).
    untagged = f"{DRILL_PREFIX}20260101T000000Z-0123abcd-1"
    await create_table(aws.dynamodb, untagged, pitr=False)
    other = f"{DRILL_PREFIX}20260101T000000Z-0123abcd-2"
    await create_table_from_schema(
        aws.dynamodb, other, SCHEMA, tags={key: value, ENVIRONMENT_TAG: "prod"}
    )

    result = await run_drill(restore_config(bucket), aws)

    assert result.status is DrillStatus.PASSED
    assert result.swept_tables == [left]
    assert await drill_tables(aws) == [untagged, other]
    names = (await aws.dynamodb.list_tables())["TableNames"]
    assert SOURCE in names


async def test_a_drill_refuses_tables_that_are_not_drill_tables(
    aws: AwsClients, bucket: str
) -> None:
    await backed_up_table(aws, bucket)
    with pytest.raises(DrillError, match="not a drill table name"):
        await delete_drill_table(aws.dynamodb, SOURCE, "test")
    untagged = f"{DRILL_PREFIX}20260101T000000Z-0123abcd-1"
    await create_table(aws.dynamodb, untagged, pitr=False)
    with pytest.raises(DrillError, match="lacks the drill tag"):
        await delete_drill_table(aws.dynamodb, untagged, "test")
    with pytest.raises(DrillError, match="invalid drill id"):
        await run_drill(restore_config(bucket), aws, drill_id="x-../mfa-api")
    names = (await aws.dynamodb.list_tables())["TableNames"]
    assert {SOURCE, untagged} <= set(names)


async def test_drill_without_a_backup_raises_and_creates_nothing(
    aws: AwsClients, bucket: str
) -> None:
    with pytest.raises(BackupNotFoundError):
        await run_drill(restore_config(bucket), aws)
    assert await drill_tables(aws) == []


def test_handler_drills_the_latest_backup_and_emits_its_metrics(
    moto: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from handlers.drill import handler
    from tests.support.backups import BUCKET
    from tests.support.cli_data import on_aws
    from tests.support.lambda_context import FakeContext

    async def setup(aws: AwsClients) -> None:
        await aws.s3.create_bucket(Bucket=BUCKET)
        await backed_up_table(aws, BUCKET)

    on_aws(setup)
    monkeypatch.setenv("BACKUP_BUCKET", BUCKET)
    monkeypatch.setenv("ENVIRONMENT", "test")
    monkeypatch.setenv("S3_EXPORTS_PREFIX", PREFIX)
    scheduled = orjson.loads((EVENTS / "scheduled_event.json").read_bytes())

    bad = handler({"tables": [SOURCE]}, FakeContext(900_000))
    assert bad["statusCode"] == 400
    assert bad["body"]["problems"] == ["tables: Extra inputs are not permitted"]

    events: list[dict[str, Any]] = [{}, scheduled]
    for event in events:
        capsys.readouterr()
        answer = handler(event, FakeContext(900_000))
        assert answer["statusCode"] == 200, answer
        assert answer["body"]["status"] == "PASSED"
        assert answer["body"]["tables"][0]["scratch_deleted"] is True
        (emf,) = [orjson.loads(x) for x in capsys.readouterr().out.splitlines() if '"_aws"' in x]
        assert (emf["drills_passed"], emf["drills_failed"], emf["tables_failed"]) == (1, 0, 0)
        assert emf["items_restored"] == 12
        assert emf["Function"] == "drill"
    assert on_aws(drill_tables) == []
