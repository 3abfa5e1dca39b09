"""The BatchWriteItem fast path against the generic botocore path, on the moto server."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiobotocore.awsrequest import AioAWSResponse
from botocore.exceptions import ClientError

from ddb_backup.aws import AwsClients, aws_clients, error_code, is_retryable
from ddb_backup.errors import ConfigError
from ddb_backup.fastpath import fast_sender, from_botocore, supports_fast_path
from ddb_backup.items import to_botocore
from tests.support.data import (
    canonical,
    create_table,
    every_type_items,
    export_lines,
    scan_all,
    to_wire,
)

TABLE = "fastpath-target"
EVENT = "before-send.dynamodb.BatchWriteItem"


def puts(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"PutRequest": {"Item": to_wire(it)}} for it in items]


def as_botocore(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"PutRequest": {"Item": to_botocore(r["PutRequest"]["Item"])}} for r in requests]


class Capture:
    """A ``before-send`` hook that records each request as sent (and lets it through)."""

    def __init__(self) -> None:
        self.requests: list[Any] = []

    def __call__(self, request: Any, **_: Any) -> None:
        self.requests.append(request)


class _Body:
    """The raw side of a canned response (``raw_headers`` as aiobotocore 2.x reads them)."""

    def __init__(self, data: bytes, headers: dict[str, str]) -> None:
        self._data = data
        self.raw_headers = [(k.encode(), v.encode()) for k, v in headers.items()]

    async def read(self) -> bytes:
        return self._data


def canned(status: int, body: dict[str, Any]) -> Any:
    """A ``before-send`` hook answering every request with this HTTP response."""
    data = orjson.dumps(body)
    calls: list[int] = []

    def answer(request: Any, **_: Any) -> AioAWSResponse:
        calls.append(1)
        headers = {"content-type": "application/x-amz-json-1.0", "x-amzn-requestid": "t"}
        return AioAWSResponse(request.url, status, headers, _Body(data, headers))

    answer.calls = calls  # type: ignore[attr-defined]
    return answer


async def test_same_request_as_generic_path(aws: AwsClients) -> None:
    await create_table(aws.dynamodb, TABLE, pitr=False)
    requests = puts(every_type_items(25))
    capture = Capture()
    aws.dynamodb.meta.events.register(EVENT, capture)

    await aws.dynamodb.batch_write_item(RequestItems={TABLE: as_botocore(requests)})
    assert await fast_sender(aws.dynamodb)(TABLE, requests) == []

    generic, fast = capture.requests
    assert orjson.loads(fast.body) == orjson.loads(generic.body)
    assert fast.url == generic.url
    assert fast.method == generic.method == "POST"
    for name in ("X-Amz-Target", "Content-Type", "User-Agent", "amz-sdk-request"):
        assert fast.headers[name] == generic.headers[name], name
    assert fast.headers["X-Amz-Target"] == b"DynamoDB_20120810.BatchWriteItem"
    # Signed the same way: same credential scope and signed headers.
    auth_f, auth_g = fast.headers["Authorization"], generic.headers["Authorization"]
    assert auth_f.split(b"Signature=")[0] == auth_g.split(b"Signature=")[0]


async def test_raw_export_lines_make_the_same_request(aws: AwsClients) -> None:
    """The restore's RawPut (the export line embedded as is) and parsed wire items
    give the same body, and the same stored items."""
    from ddb_backup.writer import RawPut

    await create_table(aws.dynamodb, TABLE, pitr=False)
    items = every_type_items(25)
    capture = Capture()
    aws.dynamodb.meta.events.register(EVENT, capture)
    send = fast_sender(aws.dynamodb)
    assert await send(TABLE, [RawPut(line) for line in export_lines(items)]) == []
    await aws.dynamodb.batch_write_item(RequestItems={TABLE: as_botocore(puts(items))})

    raw, generic = capture.requests
    assert orjson.loads(raw.body) == orjson.loads(generic.body)
    stored = await scan_all(aws.dynamodb, TABLE)
    assert canonical([to_wire(i) for i in stored]) == canonical([to_wire(i) for i in items])


async def test_items_land_identically(aws: AwsClients) -> None:
    await create_table(aws.dynamodb, TABLE, pitr=False)
    items = every_type_items(60)
    send = fast_sender(aws.dynamodb)
    requests = puts(items)
    for i in range(0, len(requests), 25):
        assert await send(TABLE, requests[i : i + 25]) == []
    # canonical() of wire form: to_wire is one-to-one, and keeps BS sortable as text.
    stored = await scan_all(aws.dynamodb, TABLE)
    assert canonical([to_wire(i) for i in stored]) == canonical([to_wire(i) for i in items])

    # Deletes go through the same path.
    keys = [{"DeleteRequest": {"Key": to_wire({"pk": it["pk"], "sk": it["sk"]})}} for it in items]
    for i in range(0, len(keys), 25):
        assert await send(TABLE, keys[i : i + 25]) == []
    assert await scan_all(aws.dynamodb, TABLE) == []


async def test_unprocessed_items_come_back_in_wire_form(aws: AwsClients) -> None:
    requests = puts(every_type_items(3))
    answer = canned(200, {"UnprocessedItems": {TABLE: requests[1:]}})
    aws.dynamodb.meta.events.register(EVENT, answer)

    unprocessed = await fast_sender(aws.dynamodb)(TABLE, requests)
    assert unprocessed == requests[1:]  # binary still base64 text, exactly as sent

    # The generic path reads the same response as bytes; converted back, they agree.
    resp = await aws.dynamodb.batch_write_item(RequestItems={TABLE: as_botocore(requests)})
    generic = resp["UnprocessedItems"][TABLE]
    assert [{"PutRequest": {"Item": from_botocore(r["PutRequest"]["Item"])}} for r in generic] == (
        unprocessed
    )


async def test_missing_table_is_a_client_error(aws: AwsClients) -> None:
    with pytest.raises(ClientError) as info:
        await fast_sender(aws.dynamodb)("no-such-table", puts(every_type_items(1)))
    assert error_code(info.value) == "ResourceNotFoundException"
    assert isinstance(info.value, aws.dynamodb.exceptions.ResourceNotFoundException)
    assert not is_retryable(info.value)


async def test_invalid_item_is_a_validation_error(aws: AwsClients) -> None:
    await create_table(aws.dynamodb, TABLE, pitr=False)
    bad = [{"PutRequest": {"Item": {"pk": {"S": "a"}}}}]  # no sort key
    with pytest.raises(ClientError) as info:
        await fast_sender(aws.dynamodb)(TABLE, bad)
    assert error_code(info.value) == "ValidationException"
    assert await scan_all(aws.dynamodb, TABLE) == []


async def test_throttling_is_retried_by_the_client_then_raised(moto: str) -> None:
    throttled = canned(
        400,
        {
            "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
            "message": "slow down",
        },
    )
    requests = puts(every_type_items(1))
    async with aws_clients(max_attempts=2) as clients:
        clients.dynamodb.meta.events.register(EVENT, throttled)
        with pytest.raises(ClientError) as generic:
            await clients.dynamodb.batch_write_item(RequestItems={TABLE: as_botocore(requests)})
        generic_attempts = len(throttled.calls)
        with pytest.raises(ClientError) as info:
            await fast_sender(clients.dynamodb)(TABLE, requests)
    assert error_code(info.value) == "ProvisionedThroughputExceededException"
    assert is_retryable(info.value)
    # The client's own retry policy ran, exactly as for the generic call.
    assert generic_attempts > 1
    assert len(throttled.calls) - generic_attempts == generic_attempts
    meta = info.value.response["ResponseMetadata"]
    assert meta["RetryAttempts"] == generic.value.response["ResponseMetadata"]["RetryAttempts"]
    assert meta["HTTPStatusCode"] == 400


async def test_refuses_a_client_of_another_service(aws: AwsClients) -> None:
    assert supports_fast_path(aws.dynamodb)
    assert not supports_fast_path(aws.s3)
    with pytest.raises(ConfigError):
        fast_sender(aws.s3)
