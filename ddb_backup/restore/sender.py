"""BatchWriteItem without botocore's per-attribute work: the direct sender.

:func:`direct_sender` (the restore's default, see ``writer.default_sender``)
makes one SigV4-signed POST per batch (:mod:`~ddb_backup.restore.signing`, the
signing key derived once a day) built from the client's own credentials,
endpoint, signing name/region, User-Agent and HTTP session, with no
per-request event machinery and no botocore retries (the writer's
``RetryPolicy`` retries). The body is serialized once with orjson from the
parsed items (:func:`batch_body`, which asks ``ReturnConsumedCapacity=TOTAL``);
the only bytes of a line that reach a body are those of an
:data:`~ddb_backup.items.CanonicalLine`, a line proven to be its checked value
re-encoded, framed as it stands. The answer is read with one
``orjson.loads`` (``UnprocessedItems`` stay in wire form, the consumed write
units come back on the :class:`Unprocessed` list).

Export lines are already DynamoDB JSON, which is exactly what BatchWriteItem's
body carries; botocore's generic path (``writer.generic_sender``, for users
with hooks or a Stubber) turns base64 text into bytes, validates and walks
every attribute, re-encodes it and ``json.dumps`` it again.

The client parts used are private to aiobotocore (``_service_model``,
``_resolve_endpoint_ruleset``, ``_user_agent_creator``, ``_request_signer``,
``_endpoint.http_session`` and its aiohttp session): :func:`supports_direct_path`
checks them once (else ``default_sender`` takes the generic path), and
``tests/restore/test_patches.py`` pins them so an upgrade that moves one fails loudly.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import orjson
from botocore.awsrequest import AWSPreparedRequest
from botocore.exceptions import ClientError, NoCredentialsError, ResponseStreamingError

from ddb_backup.errors import ConfigError
from ddb_backup.items import Request, WireRequest
from ddb_backup.restore.signing import RequestSigner
from ddb_backup.restore.transport import ReqwestPoster

__all__ = [
    "BatchSender",
    "CanonicalLineSender",
    "Unprocessed",
    "batch_body",
    "consumed_units",
    "direct_sender",
    "supports_direct_path",
]


class Unprocessed(list[WireRequest]):
    """What a BatchWriteItem call left unprocessed (a list, as every sender
    returns), with the write units DynamoDB says the call consumed
    (``consumed``; ``None`` when it did not say, e.g. a wrapper's own list)."""

    consumed: float | None

    def __init__(self, requests: list[WireRequest], consumed: float | None = None) -> None:
        super().__init__(requests)
        self.consumed = consumed


#: ``sender(table, requests) -> unprocessed requests`` (all in wire form; an
#: :class:`Unprocessed` list also carries the consumed capacity).
BatchSender = Callable[[str, list[WireRequest]], Awaitable[list[WireRequest]]]
#: A sender that also takes :data:`~ddb_backup.items.CanonicalLine` requests (and
#: says so with a true ``takes_canonical_lines`` attribute): the direct sender.
CanonicalLineSender = Callable[[str, Sequence[Request]], Awaitable[list[WireRequest]]]

_OPERATION = "BatchWriteItem"

# The client members the direct path relies on (private ones pinned by
# tests/restore/test_patches.py). Checked once, so a future change is noticed at
# construction (and ``default_sender`` takes the generic path) rather than
# half-way through a restore.
_CLIENT_MEMBERS = (
    "_service_model",
    "_resolve_endpoint_ruleset",
    "_user_agent_creator",
    "_request_signer",
    "_endpoint",
    "meta",
    "exceptions",
)


def batch_body(table: str, requests: Sequence[Request]) -> bytes:
    """The BatchWriteItem JSON body, encoded from parsed values: whatever an
    export line held, it can only be the value of its own ``Item``. A
    :data:`~ddb_backup.items.CanonicalLine` is that encoding already, framed as
    it stands. It asks for the consumed capacity (the write budget is measured from it)."""
    if not any(isinstance(r, bytes) for r in requests):
        return orjson.dumps({"RequestItems": {table: requests}, "ReturnConsumedCapacity": "TOTAL"})
    puts = b'},{"PutRequest":'.join(
        [r if isinstance(r, bytes) else orjson.dumps(r["PutRequest"]) for r in requests]
    )
    return b"".join(
        (
            b'{"RequestItems":{',
            orjson.dumps(table),
            b':[{"PutRequest":',
            puts,
            b'}]},"ReturnConsumedCapacity":"TOTAL"}',
        )
    )


def consumed_units(answer: Mapping[str, Any], table: str) -> float | None:
    """The write units ``answer`` (a BatchWriteItem response) says ``table`` consumed."""
    entries = answer.get("ConsumedCapacity")
    if not isinstance(entries, list):
        return None
    units = [
        e.get("CapacityUnits")
        for e in entries
        if isinstance(e, dict) and e.get("TableName", table) == table
    ]
    numbers = [float(u) for u in units if isinstance(u, int | float)]
    return sum(numbers) if numbers else None


def _protocol(model: Any) -> str:
    # botocore >= 1.36 resolves a protocol list; older ones have the one protocol.
    return str(getattr(model, "resolved_protocol", None) or model.protocol)


def _call_context() -> contextlib.AbstractAsyncContextManager[None]:
    """The per-call botocore context (feature flags) ``_make_api_call`` opens."""
    try:
        from aiobotocore.context import start_as_current_context
    except ImportError:  # aiobotocore < 2.16: no per-call context, nothing to open
        return contextlib.nullcontext()
    cm: contextlib.AbstractAsyncContextManager[None] = start_as_current_context()
    return cm


class _DirectSender:
    """Callable ``(table, requests) -> unprocessed requests`` with one signed POST each.

    See :func:`direct_sender`.
    """

    #: It sends :data:`~ddb_backup.items.CanonicalLine` requests as they stand.
    takes_canonical_lines = True

    def __init__(self, client: Any, http: ReqwestPoster | None = None) -> None:
        if not supports_direct_path(client):
            raise ConfigError("direct path needs an aiobotocore DynamoDB client")
        self._client = client
        self._http = http
        op = client._service_model.operation_model(_OPERATION)
        self._op = op
        self._base_headers = {
            "X-Amz-Target": f"{op.metadata['targetPrefix']}.{_OPERATION}",
            "Content-Type": f"application/x-amz-json-{op.metadata['jsonVersion']}",
        }
        # Per table: URL, headers (endpoint's + ours + User-Agent), their signer.
        self._targets: dict[str, tuple[str, dict[str, str], RequestSigner]] = {}
        # The client's aiohttp session with its proxy settings (None: use ``send``).
        self._aiohttp: tuple[Any, str | None, dict[str, str] | None] | None = None
        self._aiohttp_checked = False

    async def _target(self, table: str) -> tuple[str, dict[str, str], RequestSigner]:
        """Resolved once per table through the client's endpoint ruleset (so
        ``AWS_ENDPOINT_URL_DYNAMODB``, FIPS/dual-stack and account-based
        endpoints are the client's), with the client's User-Agent."""
        cached = self._targets.get(table)
        if cached is None:
            client = self._client
            signer = client._request_signer
            context: dict[str, Any] = {
                "client_region": client.meta.region_name,
                "client_config": client.meta.config,
            }
            async with _call_context():
                url, endpoint_headers, _ = await client._resolve_endpoint_ruleset(
                    self._op, {"RequestItems": {table: []}}, context
                )
                user_agent = client._user_agent_creator.to_string()
            signing = context.get("signing") or {}
            headers = {
                **self._base_headers,
                **dict(endpoint_headers or {}),
                "User-Agent": user_agent,
            }
            url = url if url.endswith("/") else url + "/"
            cached = (
                url,
                headers,
                RequestSigner(
                    url,
                    str(signing.get("signing_name") or signer.signing_name),
                    str(signing.get("region") or signer.region_name),
                ),
            )
            self._targets[table] = cached
        return cached

    async def __call__(self, table: str, requests: Sequence[Request]) -> list[WireRequest]:
        client = self._client
        url, headers, signer = await self._target(table)
        body = batch_body(table, requests)
        # The client's credentials, refreshed as aiobotocore refreshes them.
        credentials = client._request_signer._credentials
        if credentials is None:
            raise NoCredentialsError()
        frozen = await credentials.get_frozen_credentials()
        status, answer_headers, data = await self._post(
            url, signer.headers(headers, body, frozen), body
        )
        if status >= 300:
            raise self._error(status, answer_headers, data)
        crc = answer_headers.get("x-amz-crc32")
        if crc is not None and int(crc) != zlib.crc32(data):
            # DynamoDB's body checksum; botocore retries a mismatch, so does the writer.
            raise ResponseStreamingError(error="x-amz-crc32 does not match the response body")
        parsed = orjson.loads(data) if data else {}
        unprocessed: list[WireRequest] = (parsed.get("UnprocessedItems") or {}).get(table, [])
        return Unprocessed(unprocessed, consumed_units(parsed, table))

    async def _post(
        self, url: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Mapping[str, str], bytes]:
        """POST through the client's HTTP session: its aiohttp session (connection
        pool, timeouts, TLS and proxy settings) when aiobotocore exposes it, else
        its ``send``. Connection failures stay aiohttp's or botocore's exceptions,
        which :func:`ddb_backup.aws.is_retryable` treats as transient.
        Through reqwest instead when the sender was given one (its errors are
        translated to the same botocore exceptions)."""
        # As aiobotocore asks: no compressed answers (botocore/issues/1255).
        headers["Accept-Encoding"] = "identity"
        if self._http is not None:
            return await self._http.post(url, headers, body)
        http_session = self._client._endpoint.http_session
        if not self._aiohttp_checked:
            self._aiohttp = await _aiohttp_session(http_session, url)
            self._aiohttp_checked = True
        if self._aiohttp is None:
            prepared = AWSPreparedRequest("POST", url, headers, body, False)  # type: ignore[arg-type]
            http = await http_session.send(prepared)
            return int(http.status_code), http.headers, await http.content
        session, proxy, proxy_headers = self._aiohttp
        async with session.post(
            url, data=body, headers=headers, proxy=proxy, proxy_headers=proxy_headers
        ) as resp:
            return resp.status, resp.headers, await resp.read()

    def _error(self, status: int, headers: Mapping[str, str], data: bytes) -> ClientError:
        """The ``ClientError`` botocore's JSON error parser would raise for this answer."""
        try:
            body = orjson.loads(data) if data else {}
        except orjson.JSONDecodeError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        code = str(body.get("__type") or headers.get("x-amzn-errortype") or status)
        # "com.amazonaws.dynamodb.v20120810#ThrottlingException" -> "ThrottlingException"
        code = code.rsplit("#", 1)[-1].split(":", 1)[0]
        message = body.get("message", body.get("Message", ""))
        response: dict[str, Any] = {
            "Error": {"Code": code, "Message": str(message)},
            "ResponseMetadata": {
                "RequestId": headers.get("x-amzn-requestid", ""),
                "HTTPStatusCode": status,
                "HTTPHeaders": {k.lower(): v for k, v in headers.items()},
                "RetryAttempts": 0,
            },
        }
        error: ClientError = self._client.exceptions.from_code(code)(response, _OPERATION)
        return error


async def _aiohttp_session(
    http_session: Any, url: str
) -> tuple[Any, str | None, dict[str, str] | None] | None:
    """The aiohttp session aiobotocore's HTTP session would send ``url`` through."""
    get_session = getattr(http_session, "_get_session", None)
    proxy_config = getattr(http_session, "_proxy_config", None)
    if get_session is None or proxy_config is None:
        return None
    proxy_url = proxy_config.proxy_url_for(url)
    proxy_headers = proxy_config.proxy_headers_for(url) if proxy_url else None
    session = await get_session(proxy_url)
    return session, proxy_url, proxy_headers or None


def supports_direct_path(client: Any) -> bool:
    """True when ``client`` is an aiobotocore DynamoDB client offering what
    :func:`direct_sender` uses."""
    if not all(hasattr(client, name) for name in _CLIENT_MEMBERS):
        return False
    signer = client._request_signer
    if not (hasattr(signer, "_credentials") and hasattr(signer, "signing_name")):
        return False
    http_session = getattr(client._endpoint, "http_session", None)
    if http_session is None or not hasattr(http_session, "send"):
        return False
    model = client._service_model
    return bool(
        model.service_name == "dynamodb"
        and _protocol(model) == "json"
        and _OPERATION in model.operation_names
    )


def direct_sender(dynamodb_client: Any, http: ReqwestPoster | None = None) -> CanonicalLineSender:
    """A :data:`BatchSender` making one SigV4-signed POST per batch with the client's parts.

    What the client provides is used as is: its credentials (refreshed through
    ``get_frozen_credentials`` as aiobotocore does), its endpoint (resolved by
    its ruleset once per table), its signing name and region, its User-Agent
    and its HTTP session (connection pool, timeouts, proxies, connection
    errors as botocore exceptions). What is left out is the per-request event
    machinery (hooks, stubbers), botocore's retries (the writer's
    :class:`~ddb_backup.restore.writer.RetryPolicy` retries throttling, 5xx and
    connection errors) and the header copies: the body is one ``orjson.dumps``
    of the parsed requests (:func:`batch_body`), the answer one ``orjson.loads``
    (``UnprocessedItems`` in wire form). Errors are the client's modelled
    ``ClientError`` subclasses with the code from the JSON ``__type`` and the
    HTTP status in ``ResponseMetadata``.

    Raises :class:`~ddb_backup.errors.ConfigError` if the client is not an
    aiobotocore DynamoDB client (see :func:`supports_direct_path`).
    """
    return _DirectSender(dynamodb_client, http)
