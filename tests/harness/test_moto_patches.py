"""The moto internals the incremental-export emulation patches or relies on are pinned.

Like aiobotocore's ``tests/test_patches.py``: the source of every moto function
:mod:`tests.support.moto_incremental` replaces or mirrors is hashed; a moto
upgrade that changes one fails here, by name, so the emulation is checked
again instead of silently emulating something else. After checking the new
source, update the digest.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import inspect
from typing import Any

import moto
import pytest
from botocore.exceptions import ClientError

from ddb_backup.aws import AwsClients
from ddb_backup.incremental import verify_incremental_folder
from ddb_backup.storage import S3Storage
from tests.support.data import create_table, every_type_items, put_items
from tests.support.incremental import enable_stream
from tests.support.moto_incremental import CLOCK, ORIGINALS, RELIED_ON

DIGESTS = {
    "moto.dynamodb.models.table.utcnow": "f3205b989198da2f0608d0e29b5f06cdd03ebe09",
    "moto.dynamodb.models.unix_time": "fe2f1b2fe5114ece462ceb0cd925a23c821aee51",
    "Table.describe": "9ab4479a959542f7ac70e880af963edefb66cd23",
    "DynamoDBBackend.describe_continuous_backups": "ba498c2048e840015f106ed8d228571129b3788e",
    "DynamoHandler.export_table_to_point_in_time": "05748f83f64fe709e28f8623e3d9d7d3a5386abf",
    "TableExport.__init__": "37fa57fb79524fe8c74d1799b759ccaa2dcf812e",
    "TableExport.response": "fc6ee3b91297fc65c9595c5cbf7ec4ec551bcff6",
    "StreamRecord.__init__": "beac86fc7cc0d220b8f155d69ff4c2f4c48cf3cc",
    "StreamShard.add": "1b181674494d3df6e8fd2c2c419f1e7a6c8c88e1",
    "DynamoDBBackend.export_table": "77707d5d904b19d1cf7758dca118bf2580695e44",
    "DynamoDBBackend.update_continuous_backups": "42065a7cc19d93ddb0e948771d621db5cf7c13ec",
    "DynamoHandler.describe_export": "4d41626f13c5d6dcfe737e4aa15874cbe7e44a2d",
    "DynamoHandler.list_exports": "bfd47312175d4add9d1ef21fdd9b4bea03d375fa",
}

TABLE = "pinned-src"


@pytest.mark.parametrize("name", sorted({**ORIGINALS, **RELIED_ON}))
def test_moto_internal_is_unchanged(name: str) -> None:
    func = {**ORIGINALS, **RELIED_ON}[name]
    digest = hashlib.sha1(inspect.getsource(func).encode()).hexdigest()
    assert digest == DIGESTS[name], (
        f"moto {moto.__version__} changed {name}: check tests/support/moto_incremental.py "
        "against the new source, then update DIGESTS"
    )


def test_every_patch_is_pinned() -> None:
    assert set(DIGESTS) == {*ORIGINALS, *RELIED_ON}


async def _export(aws: AwsClients, bucket: str, a: dt.datetime, b: dt.datetime, token: str) -> Any:
    arn = (await aws.dynamodb.describe_table(TableName=TABLE))["Table"]["TableArn"]
    return await aws.dynamodb.export_table_to_point_in_time(
        TableArn=arn,
        S3Bucket=bucket,
        S3Prefix="pinned/exports",
        ExportType="INCREMENTAL_EXPORT",
        ClientToken=token,
        IncrementalExportSpecification={
            "ExportFromTime": a,
            "ExportToTime": b,
            "ExportViewType": "NEW_AND_OLD_IMAGES",
        },
    )


async def test_emulated_export_is_a_verified_aws_shaped_folder(
    aws: AwsClients, bucket: str
) -> None:
    start = dt.datetime(2026, 11, 28, 3, 0, tzinfo=dt.UTC)
    CLOCK.set(start - dt.timedelta(minutes=5))
    await create_table(aws.dynamodb, TABLE)
    await enable_stream(aws.dynamodb, TABLE)
    CLOCK.set(start + dt.timedelta(minutes=5))
    await put_items(aws.dynamodb, TABLE, every_type_items(4))
    CLOCK.set(start + dt.timedelta(minutes=40))
    end = start + dt.timedelta(minutes=30)
    desc = (await _export(aws, bucket, start, end, "t1"))["ExportDescription"]
    assert desc["ExportStatus"] == "COMPLETED"
    spec = desc["IncrementalExportSpecification"]
    assert (spec["ExportFromTime"], spec["ExportToTime"]) == (start, end)
    described = (await aws.dynamodb.describe_table(TableName=TABLE))["Table"]
    window = await verify_incremental_folder(
        S3Storage(aws.s3, bucket),
        desc["ExportManifest"].rsplit("/", 1)[0],
        key_types={"pk": "S", "sk": "S"},
        table_arn=described["TableArn"],
        table_id=described["TableId"],
    )
    assert (window.records, window.puts, window.deletes) == (4, 4, 0)
    # ClientToken: the same window gives the same export; other times are refused.
    again = (await _export(aws, bucket, start, end, "t1"))["ExportDescription"]
    assert again["ExportArn"] == desc["ExportArn"]
    with pytest.raises(ClientError, match="IdempotentParameterMismatch"):
        await _export(aws, bucket, start, end + dt.timedelta(minutes=15), "t1")
    with pytest.raises(ClientError, match="InvalidExportTime"):  # in the future
        await _export(aws, bucket, end, end + dt.timedelta(minutes=30), "t2")
