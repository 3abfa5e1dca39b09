"""The DynamoDB side of a backup, without a run: tokens, requests, schema capture."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from ddb_backup.aws import AwsClients
from ddb_backup.errors import PitrDisabledError, TableNotFoundError
from ddb_backup.export import (
    ExportRequest,
    capture_schema,
    client_token,
    describe_source_table,
    find_existing_export,
    folder_from_export_manifest,
)
from tests.support.data import create_table

DATE = dt.date(2026, 1, 2)
WHEN = dt.datetime(2026, 1, 2, 3, 0, tzinfo=dt.UTC)


def test_client_token_is_stable_and_distinct_per_input() -> None:
    token = client_token("bucket", "native-exports", DATE, "t1")
    assert token == client_token("bucket", "native-exports/", DATE, "t1")
    assert len(token) == 64
    others = {
        client_token("other", "native-exports", DATE, "t1"),
        client_token("bucket", "other", DATE, "t1"),
        client_token("bucket", "native-exports", DATE + dt.timedelta(days=1), "t1"),
        client_token("bucket", "native-exports", DATE, "t2"),
    }
    assert token not in others
    assert len(others) == 4


def test_export_request_parameters() -> None:
    base = ExportRequest(
        table="t1",
        table_arn="arn:aws:dynamodb:us-east-1:123456789012:table/t1",
        bucket="bucket",
        s3_prefix="native-exports/2026-01-02/t1/",
        export_time=WHEN,
        client_token="tok",
    )
    assert base.params() == {
        "TableArn": "arn:aws:dynamodb:us-east-1:123456789012:table/t1",
        "ExportTime": WHEN,
        "ClientToken": "tok",
        "S3Bucket": "bucket",
        "S3Prefix": "native-exports/2026-01-02/t1",
        "ExportFormat": "DYNAMODB_JSON",
        "ExportType": "FULL_EXPORT",
    }
    full = dataclasses.replace(
        base,
        bucket_owner="123456789012",
        kms_key_id="arn:aws:kms:us-east-1:123456789012:key/abc",
    )
    params = full.params()
    assert params["S3BucketOwner"] == "123456789012"
    assert params["S3SseAlgorithm"] == "KMS"
    assert params["S3SseKmsKeyId"] == "arn:aws:kms:us-east-1:123456789012:key/abc"


def test_capture_schema_keeps_what_create_table_needs() -> None:
    described: dict[str, Any] = {
        "TableName": "t1",
        "TableArn": "arn:aws:dynamodb:us-east-1:123456789012:table/t1",
        "TableStatus": "ACTIVE",
        "ItemCount": 42,
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "AttributeDefinitions": [
            {"AttributeName": "pk", "AttributeType": "B"},
            {"AttributeName": "g", "AttributeType": "N"},
            {"AttributeName": "l", "AttributeType": "S"},
        ],
        "ProvisionedThroughput": {
            "NumberOfDecreasesToday": 0,
            "ReadCapacityUnits": 7,
            "WriteCapacityUnits": 3,
        },
        "GlobalSecondaryIndexes": [
            {
                "IndexName": "g-index",
                "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["x"]},
                "IndexStatus": "ACTIVE",
                "ItemCount": 3,
                "ProvisionedThroughput": {
                    "NumberOfDecreasesToday": 0,
                    "ReadCapacityUnits": 2,
                    "WriteCapacityUnits": 1,
                },
            }
        ],
        "LocalSecondaryIndexes": [
            {
                "IndexName": "l-index",
                "KeySchema": [
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "l", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
                "IndexSizeBytes": 10,
            }
        ],
        "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
        "SSEDescription": {"Status": "ENABLED", "SSEType": "KMS", "KMSMasterKeyArn": "k"},
        "TableClassSummary": {"TableClass": "STANDARD_INFREQUENT_ACCESS"},
        "DeletionProtectionEnabled": True,
    }
    schema = capture_schema(
        described, {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    )
    doc = schema.model_dump(by_alias=True)
    assert doc == {
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "AttributeDefinitions": described["AttributeDefinitions"],
        "BillingMode": "PROVISIONED",
        "ProvisionedThroughput": {"ReadCapacityUnits": 7, "WriteCapacityUnits": 3},
        "GlobalSecondaryIndexes": [
            {
                "IndexName": "g-index",
                "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["x"]},
                "ProvisionedThroughput": {"ReadCapacityUnits": 2, "WriteCapacityUnits": 1},
            }
        ],
        "LocalSecondaryIndexes": [
            {
                "IndexName": "l-index",
                "KeySchema": described["LocalSecondaryIndexes"][0]["KeySchema"],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
        "SSEDescription": {"Status": "ENABLED", "SSEType": "KMS", "KMSMasterKeyArn": "k"},
        "TableClass": "STANDARD_INFREQUENT_ACCESS",
        "TimeToLive": {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"},
        "DeletionProtectionEnabled": True,
    }
    assert schema.key_names == ("pk",)
    assert schema.key_types == {"pk": "B"}


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        ("p/t/AWSDynamoDB/0171-ab/manifest-summary.json", "p/t/AWSDynamoDB/0171-ab"),
        ("elsewhere/AWSDynamoDB/0171-ab/manifest-summary.json", None),
        ("p/t/AWSDynamoDB/../x/manifest-summary.json", None),
        (None, None),
        ("manifest-summary.json", None),
    ],
)
def test_folder_from_export_manifest(manifest: str | None, expected: str | None) -> None:
    assert folder_from_export_manifest(manifest, "p/t") == expected


async def test_describe_source_table_checks_pitr_and_existence(aws: AwsClients) -> None:
    await create_table(aws.dynamodb, "with-pitr")
    await create_table(aws.dynamodb, "without-pitr", pitr=False)
    source = await describe_source_table(aws.dynamodb, "with-pitr")
    assert source.arn.endswith(":table/with-pitr")
    assert source.schema.key_names == ("pk", "sk")
    assert source.schema.time_to_live == {"TimeToLiveStatus": "DISABLED"}
    with pytest.raises(PitrDisabledError, match="point-in-time recovery") as info:
        await describe_source_table(aws.dynamodb, "without-pitr")
    assert info.value.table == "without-pitr"
    with pytest.raises(TableNotFoundError, match="does not exist"):
        await describe_source_table(aws.dynamodb, "missing-table")


async def test_find_existing_export_matches_bucket_and_prefix(aws: AwsClients, bucket: str) -> None:
    await create_table(aws.dynamodb, "src-table")
    source = await describe_source_table(aws.dynamodb, "src-table")
    resp = await aws.dynamodb.export_table_to_point_in_time(
        TableArn=source.arn, S3Bucket=bucket, S3Prefix="p/2026-01-02/src-table"
    )
    arn = resp["ExportDescription"]["ExportArn"]

    async def find(prefix: str, in_bucket: str = bucket) -> str | None:
        found = await find_existing_export(
            aws.dynamodb,
            table="src-table",
            table_arn=source.arn,
            bucket=in_bucket,
            s3_prefix=prefix,
        )
        return found.export_arn if found else None

    assert await find("p/2026-01-02/src-table") == arn
    assert await find("p/2026-01-03/src-table") is None
    assert await find("p/2026-01-02/src-table", "other-bucket") is None
