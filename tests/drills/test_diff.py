"""``diff``: exact added/changed/deleted counts (and keys) of a live table
against its backup, in partitions; and the ``drill``/``diff`` commands."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from ddb_backup.aws import AwsClients
from ddb_backup.diff import diff_table, partitions_for
from ddb_backup.storage import S3Storage
from tests.support.backups import BUCKET
from tests.support.cli_data import on_aws
from tests.support.cli_data import run_cli as run
from tests.support.data import every_type_items, put_items
from tests.support.drills import PREFIX, SOURCE, backed_up_table


def key(i: int) -> dict[str, Any]:
    return {"pk": {"S": f"user-{i:05d}"}, "sk": {"S": f"device#{i % 3}"}}


async def change_in_known_ways(aws: AwsClients) -> dict[str, list[dict[str, Any]]]:
    """3 added, 2 changed (one attribute each), 4 deleted; the keys of each."""
    added = every_type_items(15)[12:]
    await put_items(aws.dynamodb, SOURCE, added)
    for i in (2, 7):
        await aws.dynamodb.update_item(
            TableName=SOURCE,
            Key=key(i),
            UpdateExpression="SET #r = :v",
            ExpressionAttributeNames={"#r": "ratio"},
            ExpressionAttributeValues={":v": {"N": "2.5"}},
        )
    # Same value, other spelling: not a change.
    await aws.dynamodb.update_item(
        TableName=SOURCE,
        Key=key(4),
        UpdateExpression="SET #r = :v",
        ExpressionAttributeNames={"#r": "ratio"},
        ExpressionAttributeValues={":v": {"N": "1.2500"}},
    )
    for i in (0, 5, 9, 11):
        await aws.dynamodb.delete_item(TableName=SOURCE, Key=key(i))
    return {
        "added": [key(i) for i in (12, 13, 14)],
        "changed": [key(i) for i in (2, 7)],
        "deleted": [key(i) for i in (0, 5, 9, 11)],
    }


def sorted_keys(keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(keys, key=orjson.dumps)


@pytest.mark.parametrize("partitions", [None, 3])
async def test_diff_counts_exactly_what_changed_since_the_backup(
    aws: AwsClients, bucket: str, partitions: int | None
) -> None:
    manifest, items = await backed_up_table(aws, bucket)
    (table,) = manifest.tables
    storage = S3Storage(aws.s3, bucket)

    same = await diff_table(storage, table, aws.dynamodb, keys=True, partitions=partitions)
    assert (same.added, same.changed, same.deleted) == (0, 0, 0)
    assert same.identical
    assert same.backup_items == same.live_items == len(items)
    assert same.keys == {"added": [], "changed": [], "deleted": []}

    expected = await change_in_known_ways(aws)
    diff = await diff_table(storage, table, aws.dynamodb, keys=True, partitions=partitions)
    assert (diff.added, diff.changed, diff.deleted) == (3, 2, 4)
    assert not diff.identical
    assert (diff.backup_items, diff.live_items) == (12, 11)
    assert diff.keys == {kind: sorted_keys(ks) for kind, ks in expected.items()}
    # Without --keys, counts only.
    counts = await diff_table(storage, table, aws.dynamodb, partitions=partitions)
    assert counts.keys is None
    assert "keys" not in counts.to_dict()


def test_partitions_grow_with_the_table() -> None:
    assert partitions_for(None) == partitions_for(0) == partitions_for(200_000) == 1
    assert partitions_for(200_001) == 2
    assert partitions_for(10**12) == 4096


def test_diff_and_drill_commands_exit_0_when_equal_and_1_when_not(
    moto: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BACKUP_BUCKET", BUCKET)
    monkeypatch.setenv("ENVIRONMENT", "test")
    monkeypatch.setenv("S3_EXPORTS_PREFIX", PREFIX)

    async def setup(aws: AwsClients) -> None:
        await aws.s3.create_bucket(Bucket=BUCKET)
        await backed_up_table(aws, BUCKET)

    on_aws(setup)
    code, out, _ = run(capsys, "diff", "2026-01-02", "--table", SOURCE, "--json")
    assert code == 0, out
    assert orjson.loads(out)["identical"] is True
    code, out, err = run(capsys, "drill", "--json")
    assert code == 0, out + err
    assert orjson.loads(out)["status"] == "PASSED"

    on_aws(change_in_known_ways)
    code, out, _ = run(capsys, "diff", "latest", "--table", SOURCE)
    assert code == 1
    assert "3 added, 2 changed, 4 deleted" in out
    assert "user-" not in out  # no keys unless asked
    code, out, _ = run(capsys, "diff", "latest", "--table", SOURCE, "--keys", "--json")
    assert code == 1
    doc = orjson.loads(out)
    assert (doc["added"], doc["changed"], doc["deleted"]) == (3, 2, 4)
    assert doc["keys"]["deleted"][0] == key(0)
    assert "ratio" not in out  # never a non-key attribute
