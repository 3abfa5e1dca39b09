"""The HTTP under the direct sender's BatchWriteItem calls: reqwest where it can.

aiohttp's client costs about 107 µs of CPU per call (the floor pays it too);
reqwest (Rust, through pyreqwest) on uvloop's event loop
(:func:`ddb_backup.concurrency.run`) about 61 (``benchmarks/http_calls.py``), and
with it a restore spends a fifth less CPU than on aiohttp
(``benchmarks/restore_throughput.py``, docs/performance.md). Signing, the body and
the answer's checks stay the direct sender's; this only moves bytes.

:func:`reqwest_poster` builds one for a DynamoDB client whose settings it can
honour, and yields None otherwise, so the direct sender posts through the
client's own aiohttp session as before:

* a proxy for the endpoint, or a client certificate: None (aiohttp's path);
* the certificate check: the client's CA bundle (botocore's default one when
  none is set) is trusted, every certificate in it added to reqwest's built-in
  roots (so a bundle widens, never narrows, what is trusted), and
  ``verify=False`` is honoured;
* the client's pool size, connect and read timeouts; HTTP/1.1, no redirects,
  no decompression (DynamoDB is asked for identity bodies).

Connection failures and timeouts leave as botocore's own exceptions
(``EndpointConnectionError``, ``ConnectTimeoutError``, ``ReadTimeoutError``,
``ConnectionClosedError``), which :func:`ddb_backup.aws.is_retryable` treats as
transient, so the writer retries them as it does aiohttp's.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

from botocore.exceptions import (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from botocore.httpsession import get_cert_path

from ddb_backup.log import get_logger

__all__ = ["Answer", "ReqwestPoster", "reqwest_poster"]

log = get_logger("transport")

#: What a POST answered: status, headers, body.
Answer = tuple[int, Mapping[str, str], bytes]

_PEM_END = b"-----END CERTIFICATE-----"


class ReqwestPoster:
    """POSTs through one pyreqwest client (owned by :func:`reqwest_poster`)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        from pyreqwest import exceptions

        # Most specific first: a timeout is also a transport error.
        self._translations: tuple[tuple[type[BaseException], Callable[..., Exception]], ...] = (
            (exceptions.ConnectTimeoutError, ConnectTimeoutError),
            (exceptions.RequestTimeoutError, ReadTimeoutError),
            (exceptions.ConnectError, EndpointConnectionError),
            (exceptions.TransportError, ConnectionClosedError),
        )
        self._errors = exceptions.RequestError

    async def post(self, url: str, headers: Mapping[str, str], body: bytes) -> Answer:
        """One POST; its status, headers and body (connection errors as botocore's)."""
        try:
            request = self._client.post(url).headers(headers).body_bytes(body).build()
            response = await request.send()
            data = bytes(await response.bytes())
        except self._errors as exc:
            raise self._translated(exc, url) from exc
        return int(response.status), response.headers, data

    def _translated(self, exc: BaseException, url: str) -> Exception:
        for theirs, ours in self._translations:
            if isinstance(exc, theirs):
                return ours(endpoint_url=url, error=exc)
        return ConnectionClosedError(endpoint_url=url)  # any other failure of the exchange


def _supported(dynamodb: Any) -> bool:
    """Whether the client's settings are ones :func:`reqwest_poster` honours."""
    config = dynamodb.meta.config
    session = dynamodb._endpoint.http_session
    proxies = getattr(session, "_proxy_config", None)
    if proxies is None or proxies.proxy_url_for(dynamodb.meta.endpoint_url):
        return False
    return not config.client_cert


def _roots(bundle: str) -> list[bytes]:
    """Every certificate of a PEM bundle (reqwest adds one at a time)."""
    text = Path(bundle).read_bytes()
    return [block.strip() + b"\n" + _PEM_END + b"\n" for block in text.split(_PEM_END)[:-1]]


@contextlib.asynccontextmanager
async def reqwest_poster(dynamodb: Any) -> AsyncIterator[ReqwestPoster | None]:
    """A poster for ``dynamodb``'s BatchWriteItem calls, closed on leaving; None
    where pyreqwest is missing or the client's settings need aiohttp's path."""
    try:
        from pyreqwest.client import ClientBuilder
        from pyreqwest.exceptions import PyreqwestError
    except ImportError:  # a platform without its wheels: aiohttp writes
        yield None
        return
    if not _supported(dynamodb):
        yield None
        return
    try:
        client = _builder(ClientBuilder(), dynamodb).build()
    except (PyreqwestError, OSError) as exc:  # e.g. a CA bundle reqwest cannot read
        log.warning("reqwest unavailable, writing through aiohttp", extra={"error": str(exc)})
        yield None
        return
    async with client:
        yield ReqwestPoster(client)


def _builder(builder: Any, dynamodb: Any) -> Any:
    """``builder`` set as the client's settings say (see the module docstring)."""
    config = dynamodb.meta.config
    builder = builder.http1_only().follow_redirects(False).gzip(False)
    builder = builder.max_connections(int(config.max_pool_connections))
    if config.connect_timeout is not None:
        builder = builder.connect_timeout(dt.timedelta(seconds=float(config.connect_timeout)))
    if config.read_timeout is not None:
        builder = builder.read_timeout(dt.timedelta(seconds=float(config.read_timeout)))
    verify = dynamodb._endpoint.http_session._verify
    if verify is False:
        return builder.danger_accept_invalid_certs(True)
    # The roots aiohttp would check against (the client's bundle, else botocore's
    # default one) beside reqwest's own: a host without system roots still verifies.
    bundle = get_cert_path(verify)
    for root in _roots(bundle) if bundle else ():
        builder = builder.add_root_certificate_pem(root)
    return builder
