"""The BatchWriteItem fast path against the generic botocore path, on the moto server."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiobotocore.awsrequest import AioAWSResponse
from botocore.awsrequest import HTTPHeaders
from botocore.exceptions import ClientError

from ddb_backup.aws import AwsClients, aws_clients, error_code, is_retryable
from ddb_backup.errors import ConfigError
from ddb_backup.items import check_item_line, to_botocore
from ddb_backup.restore.sender import (
    direct_sender,
    fast_sender,
    from_botocore,
    supports_direct_path,
    supports_fast_path,
)
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
        return AioAWSResponse(
            request.url, status, HTTPHeaders.from_dict(headers), _Body(data, headers)
        )

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


async def test_checked_export_lines_make_the_same_request(aws: AwsClients) -> None:
    """The restore's requests (built from each checked line's item) and botocore's
    give the same body, and the same stored items."""

    await create_table(aws.dynamodb, TABLE, pitr=False)
    items = every_type_items(25)
    capture = Capture()
    aws.dynamodb.meta.events.register(EVENT, capture)
    send = fast_sender(aws.dynamodb)
    assert await send(TABLE, [_checked(line) for line in export_lines(items)]) == []
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
    assert orjson.loads(body) == {"RequestItems": {TABLE: requests}}
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
