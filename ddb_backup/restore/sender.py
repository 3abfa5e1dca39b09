"""BatchWriteItem without botocore's per-attribute work.

Two senders, both serializing the body once with orjson from the parsed
items (:func:`batch_body`; a line's bytes never reach a body):

* :func:`direct_sender` (the restore's default, see
  ``writer.default_sender``): one SigV4-signed POST per batch built from the
  client's own credentials, endpoint, signing name/region, User-Agent and
  HTTP session, no per-request event machinery, no botocore retries (the
  writer's ``RetryPolicy`` retries).
* :func:`fast_sender`: the client's whole per-request machinery (hooks,
  retry handler, error parser), only the serializer replaced; described below.

Export lines are already DynamoDB JSON, which is exactly what BatchWriteItem's
body carries. The generic path turns base64 text into bytes, has botocore
validate and walk every attribute against the service model, re-encode it to
base64 and ``json.dumps`` it again. :func:`fast_sender` serializes the body
once with orjson and hands the client's own machinery everything else:

* the client's ``provide-client-params`` / ``before-parameter-build`` /
  ``before-call`` / ``before-send`` / ``after-call`` hooks (recursion
  detection, retry quota, user hooks, stubbers); hooks see the params in wire
  form (binary as base64 text);
* endpoint resolution through the client's endpoint ruleset (so
  ``AWS_ENDPOINT_URL_DYNAMODB``, FIPS/dual-stack and account-based endpoints
  resolve exactly as for ``client.batch_write_item``), cached per table since
  it depends only on the table and the client;
* the client's User-Agent (built once per table, in a call context, so it
  carries the same feature flags), credentials and request signer (choose-
  signer, before-sign, SigV4 with the resolved region and signing name), retry
  handler (``needs-retry``: mode, quota, backoff; throttling, 5xx and
  connection errors), retry headers, HTTP session and connection pool, and
  botocore's error parser.

It mirrors ``AioBaseClient._make_api_call`` and ``AioEndpoint._send_request``
step by step, with the serializer replaced and two costs left out: the
``request-created`` event (the signer and retry headers it carries are called
directly; it would rebuild the User-Agent string on every request, about a
fifth of a request's CPU) and the success-response shape walk (the body is
read with orjson, so ``UnprocessedItems`` stay in wire form). Errors surface
as the same modelled ``ClientError`` subclasses, with the same codes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import zlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import (
    AWSPreparedRequest,
    AWSRequest,
    create_request_object,
    prepare_request_dict,
)
from botocore.exceptions import ClientError, NoCredentialsError, ResponseStreamingError
from botocore.handlers import add_retry_headers
from botocore.hooks import first_non_none_response

from ddb_backup.errors import ConfigError
from ddb_backup.items import WireItem

__all__ = [
    "BatchSender",
    "WireRequest",
    "batch_body",
    "direct_sender",
    "fast_sender",
    "from_botocore",
    "supports_direct_path",
    "supports_fast_path",
]

WireRequest = dict[str, Any]
BatchSender = Callable[[str, list[WireRequest]], Awaitable[list[WireRequest]]]

_OPERATION = "BatchWriteItem"

# The private members the fast path relies on; all present from aiobotocore
# 2.15 to 3.x. Checked once, so a future change is noticed at construction
# (and ``default_sender`` falls back to the generic path) rather than half-way
# through a restore.
_CLIENT_MEMBERS = (
    "_service_model",
    "_emit_api_params",
    "_resolve_endpoint_ruleset",
    "_user_agent_creator",
    "_request_signer",
    "_endpoint",
    "meta",
    "exceptions",
)
_ENDPOINT_MEMBERS = ("_send", "_update_retries_context", "prepare_request")


def batch_body(table: str, requests: list[WireRequest]) -> bytes:
    """The BatchWriteItem JSON body, encoded from parsed values only: whatever an
    export line held, it can only be the value of its own ``Item``."""
    return orjson.dumps({"RequestItems": {table: requests}})


def _protocol(model: Any) -> str:
    # botocore >= 1.36 resolves a protocol list; older ones have the one protocol.
    return str(getattr(model, "resolved_protocol", None) or model.protocol)


def supports_fast_path(client: Any) -> bool:
    """True when ``client`` is an aiobotocore DynamoDB client the fast path can drive."""
    if not all(hasattr(client, name) for name in _CLIENT_MEMBERS):
        return False
    if not all(hasattr(client._endpoint, name) for name in _ENDPOINT_MEMBERS):
        return False
    if not hasattr(client._endpoint, "_response_parser_factory"):
        return False
    model = client._service_model
    return bool(
        model.service_name == "dynamodb"
        and _protocol(model) == "json"
        and _OPERATION in model.operation_names
    )


class _FastSender:
    """Callable ``(table, requests) -> unprocessed requests``, all in wire form."""

    def __init__(self, client: Any) -> None:
        if not supports_fast_path(client):
            raise ConfigError("fast path needs an aiobotocore DynamoDB client")
        self._client = client
        model = client._service_model
        self._op = model.operation_model(_OPERATION)
        self._service_id = model.service_id.hyphenize()
        self._headers = {
            "X-Amz-Target": f"{self._op.metadata['targetPrefix']}.{_OPERATION}",
            "Content-Type": f"application/x-amz-json-{self._op.metadata['jsonVersion']}",
        }
        self._parser = client._endpoint._response_parser_factory.create_parser(_protocol(model))
        # Per table: endpoint URL, headers, signing context, endpoint properties
        # and User-Agent.
        self._endpoints: dict[str, tuple[str, dict[str, Any], dict[str, Any], Any, str]] = {}

    def _context(self) -> dict[str, Any]:
        client, op = self._client, self._op
        config = client.meta.config
        if getattr(op, "auth", None) and getattr(config, "auth_scheme_preference", None):
            from botocore.auth import resolve_auth_scheme_preference

            auth_type = resolve_auth_scheme_preference(
                config.auth_scheme_preference.split(","), op.auth
            )
        else:
            auth_type = op.resolved_auth_type
        return {
            "client_region": client.meta.region_name,
            "client_config": config,
            "has_streaming_input": op.has_streaming_input,
            "auth_type": auth_type,
            "unsigned_payload": op.unsigned_payload,
            "auth_options": client._service_model.metadata.get("auth"),
        }

    async def _endpoint(
        self, table: str, params: dict[str, Any], context: dict[str, Any]
    ) -> tuple[str, dict[str, Any], str]:
        """Endpoint URL, headers and User-Agent for ``table``.

        The endpoint depends only on the table, region, config and account, so
        the client's ruleset resolves it once. The User-Agent is the client's
        own, built in that same call's context (so it carries the same feature
        flags as a generic call): botocore rebuilds it for every request, about
        a fifth of a request's CPU, though it never changes here.
        """
        cached = self._endpoints.get(table)
        if cached is None:
            async with _call_context():
                fresh: dict[str, Any] = {}
                url, headers, properties = await self._client._resolve_endpoint_ruleset(
                    self._op, params, fresh
                )
                user_agent = self._client._user_agent_creator.to_string()
            cached = (url, dict(headers or {}), fresh, properties, user_agent)
            self._endpoints[table] = cached
        url, headers, ruleset_context, properties, user_agent = cached
        for name, value in ruleset_context.items():
            context[name] = dict(value) if isinstance(value, dict) else value
        if properties:
            context["endpoint_properties"] = properties
        return url, headers, user_agent

    async def __call__(self, table: str, requests: list[WireRequest]) -> list[WireRequest]:
        client, op = self._client, self._op
        context = self._context()
        params: dict[str, Any] = {"RequestItems": {table: requests}}
        params = await client._emit_api_params(
            api_params=params, operation_model=op, context=context
        )
        url, endpoint_headers, user_agent = await self._endpoint(table, params, context)
        request_dict: dict[str, Any] = {
            "url_path": "/",
            "query_string": "",
            "method": "POST",
            "headers": {**self._headers, **endpoint_headers},
            # The one serialization: wire items are already the body's shape.
            "body": orjson.dumps(params),
        }
        prepare_request_dict(request_dict, endpoint_url=url, user_agent=user_agent, context=context)
        events = client.meta.events
        _handler, event_response = await events.emit_until_response(
            f"before-call.{self._service_id}.{_OPERATION}",
            model=op,
            params=request_dict,
            request_signer=client._request_signer,
            context=context,
        )
        if event_response is not None:
            # A stubber or a hook answered, in botocore's (bytes) form.
            http, parsed = event_response
            parsed = {
                **parsed,
                "UnprocessedItems": {
                    t: [from_botocore_request(r) for r in rs]
                    for t, rs in (parsed.get("UnprocessedItems") or {}).items()
                },
            }
        else:
            http, parsed = await self._send(request_dict)
        await events.emit(
            f"after-call.{self._service_id}.{_OPERATION}",
            http_response=http,
            parsed=parsed,
            model=op,
            context=context,
        )
        if http.status_code >= 300:
            code = context.get("error_code_override") or parsed.get("Error", {}).get("Code")
            raise client.exceptions.from_code(code)(parsed, _OPERATION)
        unprocessed: list[WireRequest] = (parsed.get("UnprocessedItems") or {}).get(table, [])
        return unprocessed

    async def _send(self, request_dict: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """``AioEndpoint._send_request`` without the per-request User-Agent rebuild
        and response shape walk: sign, send, parse, and let the client's retry
        handler (``needs-retry``: mode, quota, backoff) decide on every failure."""
        client, op = self._client, self._op
        endpoint = client._endpoint
        context = request_dict["context"]
        attempts = 1
        endpoint._update_retries_context(context, attempts)
        while True:
            request = create_request_object(request_dict)
            await client._request_signer.sign(_OPERATION, request)
            add_retry_headers(request)
            prepared = endpoint.prepare_request(request)
            response: tuple[Any, dict[str, Any]] | None = None
            exception: Exception | None = None
            try:
                # before-send lets a hook answer instead of the network, as for any call.
                http = first_non_none_response(
                    await client.meta.events.emit(
                        f"before-send.{self._service_id}.{_OPERATION}", request=prepared
                    )
                )
                if http is None:
                    http = await endpoint._send(prepared)
                response = (http, await self._parse(http))
            except Exception as exc:  # the retry handler judges every failure, as botocore
                exception = exc
            delay = first_non_none_response(
                await client.meta.events.emit(
                    f"needs-retry.{self._service_id}.{_OPERATION}",
                    response=response,
                    endpoint=endpoint,
                    operation=op,
                    attempts=attempts,
                    caught_exception=exception,
                    request_dict=request_dict,
                )
            )
            if delay is None or delay is False:
                break
            await asyncio.sleep(delay)
            attempts += 1
            endpoint._update_retries_context(context, attempts, response)
        if exception is not None:
            raise exception
        assert response is not None
        response[1]["ResponseMetadata"]["RetryAttempts"] = attempts - 1
        return response

    async def _parse(self, http: Any) -> dict[str, Any]:
        body = await http.content
        status = http.status_code
        if status >= 300:
            # Errors go through botocore's parser: the codes must be exactly its codes.
            response_dict = {
                "headers": http.headers,
                "status_code": status,
                "body": body,
                "context": {"operation_name": _OPERATION},
            }
            parsed = self._parser.parse(response_dict, self._op.output_shape)
            if inspect.isawaitable(parsed):  # aiobotocore's parsers are async from 2.x on
                parsed = await parsed
            return dict(parsed)
        # Success: UnprocessedItems stays in wire form (binary as base64 text).
        parsed = orjson.loads(body) if body else {}
        headers = {k.lower(): v for k, v in http.headers.items()}
        parsed["ResponseMetadata"] = {
            "RequestId": headers.get("x-amzn-requestid", ""),
            "HTTPStatusCode": status,
            "HTTPHeaders": headers,
            "RetryAttempts": 0,
        }
        return parsed


def _call_context() -> contextlib.AbstractAsyncContextManager[None]:
    """The per-call botocore context (feature flags) ``_make_api_call`` opens."""
    try:
        from aiobotocore.context import start_as_current_context
    except ImportError:  # aiobotocore < 2.16: no per-call context, nothing to open
        return contextlib.nullcontext()
    cm: contextlib.AbstractAsyncContextManager[None] = start_as_current_context()
    return cm


def fast_sender(dynamodb_client: Any) -> BatchSender:
    """A :data:`BatchSender` that sends wire items as they are, through ``dynamodb_client``.

    Raises :class:`~ddb_backup.errors.ConfigError` if the client is not an
    aiobotocore DynamoDB client (see :func:`supports_fast_path`).
    """
    return _FastSender(dynamodb_client)


class _DirectSender:
    """Callable ``(table, requests) -> unprocessed requests`` with one signed POST each.

    See :func:`direct_sender`.
    """

    def __init__(self, client: Any) -> None:
        if not supports_direct_path(client):
            raise ConfigError("direct path needs an aiobotocore DynamoDB client")
        self._client = client
        op = client._service_model.operation_model(_OPERATION)
        self._op = op
        self._base_headers = {
            "X-Amz-Target": f"{op.metadata['targetPrefix']}.{_OPERATION}",
            "Content-Type": f"application/x-amz-json-{op.metadata['jsonVersion']}",
        }
        # Per table: URL, headers (endpoint's + ours + User-Agent), signing name, region.
        self._targets: dict[str, tuple[str, dict[str, str], str, str]] = {}
        # The client's aiohttp session with its proxy settings (None: use ``send``).
        self._aiohttp: tuple[Any, str | None, dict[str, str] | None] | None = None
        self._aiohttp_checked = False

    async def _target(self, table: str) -> tuple[str, dict[str, str], str, str]:
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
            cached = (
                url if url.endswith("/") else url + "/",
                headers,
                str(signing.get("signing_name") or signer.signing_name),
                str(signing.get("region") or signer.region_name),
            )
            self._targets[table] = cached
        return cached

    async def __call__(self, table: str, requests: list[WireRequest]) -> list[WireRequest]:
        client = self._client
        url, headers, signing_name, region = await self._target(table)
        body = batch_body(table, requests)
        # The client's credentials, refreshed as aiobotocore refreshes them.
        credentials = client._request_signer._credentials
        if credentials is None:
            raise NoCredentialsError()
        frozen = await credentials.get_frozen_credentials()
        request = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
        SigV4Auth(frozen, signing_name, region).add_auth(request)
        status, answer_headers, data = await self._post(url, dict(request.headers.items()), body)
        if status >= 300:
            raise self._error(status, answer_headers, data)
        crc = answer_headers.get("x-amz-crc32")
        if crc is not None and int(crc) != zlib.crc32(data):
            # DynamoDB's body checksum; botocore retries a mismatch, so does the writer.
            raise ResponseStreamingError(error="x-amz-crc32 does not match the response body")
        parsed = orjson.loads(data) if data else {}
        unprocessed: list[WireRequest] = (parsed.get("UnprocessedItems") or {}).get(table, [])
        return unprocessed

    async def _post(
        self, url: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Mapping[str, str], bytes]:
        """POST through the client's HTTP session: its aiohttp session (connection
        pool, timeouts, TLS and proxy settings) when aiobotocore exposes it, else
        its ``send``. Connection failures stay aiohttp's or botocore's exceptions,
        which :func:`ddb_backup.aws.is_retryable` treats as transient."""
        http_session = self._client._endpoint.http_session
        if not self._aiohttp_checked:
            self._aiohttp = await _aiohttp_session(http_session, url)
            self._aiohttp_checked = True
        if self._aiohttp is None:
            prepared = AWSPreparedRequest("POST", url, headers, body, False)  # type: ignore[arg-type]
            http = await http_session.send(prepared)
            return int(http.status_code), http.headers, await http.content
        session, proxy, proxy_headers = self._aiohttp
        # As aiobotocore asks: no compressed answers (botocore/issues/1255).
        headers["Accept-Encoding"] = "identity"
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
    """True when ``client`` offers what :func:`direct_sender` uses."""
    if not supports_fast_path(client):
        return False
    signer = client._request_signer
    return (
        hasattr(signer, "_credentials")
        and hasattr(signer, "signing_name")
        and hasattr(client._endpoint, "http_session")
        and hasattr(client._endpoint.http_session, "send")
    )


def direct_sender(dynamodb_client: Any) -> BatchSender:
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
    return _DirectSender(dynamodb_client)


def from_botocore(item: dict[str, Any]) -> WireItem:
    """botocore item (bytes for binary) -> wire item (base64 text), the inverse of
    :func:`ddb_backup.items.to_botocore`."""
    return {name: _attr_to_wire(value) for name, value in item.items()}


def from_botocore_request(request: dict[str, Any]) -> WireRequest:
    """A parsed ``PutRequest``/``DeleteRequest`` back to wire form."""
    if "PutRequest" in request:
        return {"PutRequest": {"Item": from_botocore(request["PutRequest"]["Item"])}}
    return {"DeleteRequest": {"Key": from_botocore(request["DeleteRequest"]["Key"])}}


def _attr_to_wire(value: dict[str, Any]) -> dict[str, Any]:
    ((t, v),) = value.items()
    if t == "B":
        return {"B": _b64text(v)}
    if t == "BS":
        return {"BS": [_b64text(b) for b in v]}
    if t == "L":
        return {"L": [_attr_to_wire(x) for x in v]}
    if t == "M":
        return {"M": {k: _attr_to_wire(x) for k, x in v.items()}}
    return value


def _b64text(v: bytes | str) -> str:
    # botocore parses B as bytes; a stubbed response may already hold text.
    return v if isinstance(v, str) else base64.b64encode(v).decode("ascii")
