"""The direct BatchWriteItem sender against the generic botocore path, on the moto server."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from botocore.exceptions import ClientError

from ddb_backup.aws import AwsClients, error_code, is_retryable
from ddb_backup.errors import ConfigError
from ddb_backup.items import check_item_line, to_botocore
from ddb_backup.restore.sender import batch_body, direct_sender, supports_direct_path
from ddb_backup.restore.writer import put_request
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


async def test_checked_export_lines_make_the_same_request(aws: AwsClients) -> None:
    """The direct sender's body (built from each checked line's item) is botocore's
    body for the same items, and the items it stores are those items."""

    await create_table(aws.dynamodb, TABLE, pitr=False)
    items = every_type_items(25)
    checked = [_checked(line) for line in export_lines(items)]
    assert await direct_sender(aws.dynamodb)(TABLE, checked) == []
    stored = await scan_all(aws.dynamodb, TABLE)
    assert canonical([to_wire(i) for i in stored]) == canonical([to_wire(i) for i in items])

    capture = Capture()
    aws.dynamodb.meta.events.register(EVENT, capture)
    await aws.dynamodb.batch_write_item(
        RequestItems={TABLE: as_botocore(puts(items))}, ReturnConsumedCapacity="TOTAL"
    )
    (generic,) = capture.requests
    assert orjson.loads(batch_body(TABLE, checked)) == orjson.loads(generic.body)


async def test_refuses_a_client_of_another_service(aws: AwsClients) -> None:
    assert supports_direct_path(aws.dynamodb)
    assert not supports_direct_path(aws.s3)
    with pytest.raises(ConfigError):
        direct_sender(aws.s3)


# --- direct_sender: one signed POST per batch with the client's own parts ---------


async def test_direct_items_land_identically_to_the_generic_path(aws: AwsClients) -> None:
    """Every type (binary included), as wire items and as checked export lines."""

    other = "fastpath-generic"
    await create_table(aws.dynamodb, TABLE, pitr=False)
    await create_table(aws.dynamodb, other, pitr=False)
    items = every_type_items(60)
    send = direct_sender(aws.dynamodb)
    wire = puts(items[:30])
    raw = [_checked(line) for line in export_lines(items[30:])]
    batches: list[list[Any]] = [wire[:25], wire[25:], raw[:25], raw[25:]]
    for batch in batches:
        assert await send(TABLE, batch) == []
    for i in range(0, len(items), 25):
        await aws.dynamodb.batch_write_item(
            RequestItems={other: as_botocore(puts(items[i : i + 25]))}
        )
    direct, generic = await scan_all(aws.dynamodb, TABLE), await scan_all(aws.dynamodb, other)
    assert canonical([to_wire(i) for i in direct]) == canonical([to_wire(i) for i in generic])
    assert canonical([to_wire(i) for i in direct]) == canonical([to_wire(i) for i in items])

    keys = [{"DeleteRequest": {"Key": to_wire({"pk": it["pk"], "sk": it["sk"]})}} for it in items]
    for i in range(0, len(keys), 25):
        assert await send(TABLE, keys[i : i + 25]) == []
    assert await scan_all(aws.dynamodb, TABLE) == []


async def test_direct_errors_are_the_clients_modelled_errors(aws: AwsClients) -> None:
    send = direct_sender(aws.dynamodb)
    with pytest.raises(ClientError) as missing:
        await send("no-such-table", puts(every_type_items(1)))
    assert error_code(missing.value) == "ResourceNotFoundException"
    assert isinstance(missing.value, aws.dynamodb.exceptions.ResourceNotFoundException)
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert not is_retryable(missing.value)

    await create_table(aws.dynamodb, TABLE, pitr=False)
    with pytest.raises(ClientError) as invalid:
        await send(TABLE, [{"PutRequest": {"Item": {"pk": {"S": "a"}}}}])  # no sort key
    assert error_code(invalid.value) == "ValidationException"
    assert await scan_all(aws.dynamodb, TABLE) == []


class FakeDynamoDB:
    """A local HTTP endpoint answering with queued (status, body) pairs and
    recording each request (headers, body) as it arrived."""

    def __init__(self, answers: list[tuple[int, bytes]]) -> None:
        self.answers = answers
        self.requests: list[tuple[dict[str, str], bytes, str]] = []
        self.url = ""
        self._runner: Any = None

    async def _handle(self, request: Any) -> Any:
        from aiohttp import web

        body = await request.read()
        self.requests.append((dict(request.headers), body, str(request.url)))
        status, answer = self.answers.pop(0) if self.answers else (200, b'{"UnprocessedItems":{}}')
        return web.Response(
            status=status,
            body=answer,
            headers={"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": "r1"},
        )

    async def __aenter__(self) -> FakeDynamoDB:
        from aiohttp import web

        app = web.Application()
        app.router.add_post("/", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()


def fake_client(url: str) -> Any:
    from aiobotocore.config import AioConfig
    from aiobotocore.session import AioSession

    return AioSession().create_client(
        "dynamodb",
        region_name="eu-west-1",
        endpoint_url=url,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret-example",
        aws_session_token="session-token-example",
        config=AioConfig(retries={"total_max_attempts": 1}),
    )


def assert_signed(headers: dict[str, str], body: bytes, url: str) -> None:
    """Recompute the SigV4 signature of a request as it arrived, with botocore."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    auth = headers["Authorization"]
    signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
    assert {"x-amz-security-token", "x-amz-target", "host"} <= set(signed)
    assert "/eu-west-1/dynamodb/aws4_request" in auth
    request = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={k: v for k, v in headers.items() if k.lower() in signed},
    )
    request.context["timestamp"] = headers["X-Amz-Date"]
    sigv4 = SigV4Auth(
        Credentials("AKIDEXAMPLE", "secret-example", "session-token-example"),
        "dynamodb",
        "eu-west-1",
    )
    string_to_sign = sigv4.string_to_sign(request, sigv4.canonical_request(request))
    assert auth.endswith("Signature=" + sigv4.signature(string_to_sign, request))


async def test_direct_request_is_signed_with_temporary_credentials() -> None:
    requests = puts(every_type_items(3))
    async with FakeDynamoDB([]) as fake, fake_client(fake.url) as client:
        assert await direct_sender(client)(TABLE, requests) == []
    ((headers, body, url),) = fake.requests
    assert headers["X-Amz-Security-Token"] == "session-token-example"
    assert headers["X-Amz-Target"] == "DynamoDB_20120810.BatchWriteItem"
    assert headers["Content-Type"] == "application/x-amz-json-1.0"
    assert headers["User-Agent"].startswith("aiobotocore/")
    assert orjson.loads(body) == {
        "RequestItems": {TABLE: requests},
        "ReturnConsumedCapacity": "TOTAL",
    }
    assert_signed(headers, body, url)


async def test_direct_unprocessed_items_come_back_in_wire_form() -> None:
    requests = puts(every_type_items(3))
    answer = orjson.dumps({"UnprocessedItems": {TABLE: requests[1:]}})
    async with FakeDynamoDB([(200, answer)]) as fake, fake_client(fake.url) as client:
        assert await direct_sender(client)(TABLE, requests) == requests[1:]


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (
            400,
            b'{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",'
            b'"message":"slow down"}',
            "ProvisionedThroughputExceededException",
        ),
        (
            400,
            b'{"__type":"com.amazon.coral.availability#ThrottlingException"}',
            "ThrottlingException",
        ),
        (
            500,
            b'{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError"}',
            "InternalServerError",
        ),
        (503, b"", "503"),
    ],
)
async def test_direct_throttling_and_5xx_are_retryable_client_errors(
    status: int, body: bytes, code: str
) -> None:
    async with FakeDynamoDB([(status, body)]) as fake, fake_client(fake.url) as client:
        with pytest.raises(ClientError) as info:
            await direct_sender(client)(TABLE, puts(every_type_items(1)))
    assert len(fake.requests) == 1  # no retries of its own: the writer decides
    assert error_code(info.value) == code
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert is_retryable(info.value)


async def test_writer_retries_the_direct_sender_until_written() -> None:
    from ddb_backup.restore.writer import BatchWriter, RetryPolicy

    throttled = b'{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException"}'
    requests = puts(every_type_items(5))
    left = orjson.dumps({"UnprocessedItems": {TABLE: requests[3:]}})
    answers = [(400, throttled), (500, b""), (200, left), (200, b'{"UnprocessedItems":{}}')]
    async with (
        FakeDynamoDB(answers) as fake,
        fake_client(fake.url) as client,
        BatchWriter(
            TABLE, direct_sender(client), retry=RetryPolicy(base_delay=0.0, max_delay=0.0)
        ) as writer,
    ):
        await writer.submit(requests)
    assert (writer.stats.written, writer.stats.failed) == (5, 0)
    bodies = [orjson.loads(body)["RequestItems"][TABLE] for _, body, _ in fake.requests]
    assert bodies == [requests, requests, requests, requests[3:]]


async def test_default_sender_is_the_direct_path(aws: AwsClients) -> None:
    from ddb_backup.restore.sender import _DirectSender
    from ddb_backup.restore.writer import default_sender

    assert supports_direct_path(aws.dynamodb)
    assert isinstance(default_sender(aws.dynamodb), _DirectSender)
    assert not supports_direct_path(aws.s3)
    with pytest.raises(ConfigError):
        direct_sender(aws.s3)


async def test_direct_through_the_http_sessions_send(aws: AwsClients) -> None:
    """Without aiobotocore's aiohttp session at hand (older aiobotocore), the
    direct path posts through the HTTP session's own ``send``: same items."""
    from ddb_backup.restore.sender import _DirectSender

    await create_table(aws.dynamodb, TABLE, pitr=False)
    items = every_type_items(25)
    send = direct_sender(aws.dynamodb)
    assert isinstance(send, _DirectSender)
    send._aiohttp_checked = True  # as when ``_get_session`` is missing
    assert await send(TABLE, puts(items)) == []
    stored = await scan_all(aws.dynamodb, TABLE)
    assert canonical([to_wire(i) for i in stored]) == canonical([to_wire(i) for i in items])
    with pytest.raises(ClientError) as missing:
        await send("no-such-table", puts(items[:1]))
    assert error_code(missing.value) == "ResourceNotFoundException"


def _checked(line: bytes) -> dict[str, Any]:
    return put_request(check_item_line(line, key="k", line_no=1))
