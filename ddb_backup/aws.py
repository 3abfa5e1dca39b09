"""AWS clients, and the one place botocore errors are translated.

Endpoints, region and credentials come only from the standard AWS
configuration (``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_DYNAMODB``,
``AWS_ENDPOINT_URL_S3``, ``AWS_REGION``/``AWS_DEFAULT_REGION``, profiles);
aiobotocore honours all of them, so nothing project-specific is read here.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from ddb_backup.errors import AwsError

if TYPE_CHECKING:
    from ddb_backup.restore.transport import ReqwestPoster

__all__ = [
    "THROTTLING_CODES",
    "TRANSIENT_ERRORS",
    "AwsClients",
    "aws_clients",
    "client_error_message",
    "error_code",
    "is_retryable",
    "raise_aws_error",
]

#: DynamoDB / S3 error codes that mean "slow down and try again".
THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "Throttling",
        "SlowDown",
        "InternalServerError",
        "InternalError",
        "ServiceUnavailable",
        "503",
        "500",
        "502",
        "504",
    }
)

#: Exceptions that mean the connection, not the request, failed.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    EndpointConnectionError,
    ConnectTimeoutError,  # botocore's: not an EndpointConnectionError
    ConnectionClosedError,
    ReadTimeoutError,
    ResponseStreamingError,
    aiohttp.ClientError,
    ConnectionError,
    TimeoutError,
)


def error_code(exc: BaseException) -> str | None:
    """AWS's error code of a ``ClientError``, else ``None``."""
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code")
        return str(code) if code is not None else None
    return None


def is_retryable(exc: BaseException) -> bool:
    """True for throttling, 5xx and connection errors."""
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error_code(exc) in THROTTLING_CODES or int(status) >= 500
    return isinstance(exc, TRANSIENT_ERRORS)


def raise_aws_error(
    exc: BaseException, *, operation: str, table: str | None = None, key: str | None = None
) -> NoReturn:
    """Translate a botocore/aiohttp error into :class:`AwsError` (never with values)."""
    if isinstance(exc, ClientError):
        raise AwsError(
            client_error_message(exc),
            operation=operation,
            code=error_code(exc),
            table=table,
            key=key,
        ) from exc
    if isinstance(exc, BotoCoreError | aiohttp.ClientError | OSError | TimeoutError):
        # Connection errors say where they failed; any other botocore error
        # (e.g. ParamValidationError) may quote a parameter, i.e. item data.
        detail = str(exc) if isinstance(exc, TRANSIENT_ERRORS) else ""
        raise AwsError(
            type(exc).__name__ + (f": {detail}" if detail else ""),
            operation=operation,
            table=table,
            key=key,
        ) from exc
    raise exc


#: A message longer than this is no AWS error message but a page or a dump.
_MAX_MESSAGE = 200


def client_error_message(exc: ClientError) -> str:
    """``Code: message`` kept short and clean: botocore puts a body it cannot
    parse (a proxy's or server's HTML page on a 5xx) into ``Message``, so a
    5xx, or a message that is long, multi-line or markup, becomes the code and
    HTTP status only."""
    err = exc.response.get("Error", {})
    code = str(err.get("Code") or "Unknown")
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    message = str(err.get("Message") or "").strip()
    clean = (
        status < 500 and len(message) <= _MAX_MESSAGE and "\n" not in message and "<" not in message
    )
    if clean and message:
        return f"{code}: {message}"
    return f"{code} (HTTP {status})" if status else code


@dataclass(frozen=True, slots=True)
class AwsClients:
    """The DynamoDB and S3 clients a run uses (owned by :func:`aws_clients`), and
    for a restore the HTTP client of its writes (see ``restore_clients``)."""

    dynamodb: Any
    s3: Any
    write_http: ReqwestPoster | None = None


def client_config(max_pool_connections: int = 32, max_attempts: int = 6) -> AioConfig:
    """Botocore config: a pool matched to our concurrency, adaptive-free standard retries."""
    return AioConfig(
        max_pool_connections=max_pool_connections,
        retries={"total_max_attempts": max_attempts, "mode": "standard"},
        connect_timeout=10,
        read_timeout=60,
    )


@contextlib.asynccontextmanager
async def aws_clients(
    *,
    session: AioSession | None = None,
    max_pool_connections: int = 32,
    max_attempts: int = 6,
) -> AsyncIterator[AwsClients]:
    """Open a DynamoDB and an S3 client for the duration of the block."""
    session = session or get_session()
    config = client_config(max_pool_connections, max_attempts)
    async with (
        session.create_client("dynamodb", config=config) as dynamodb,
        session.create_client("s3", config=config) as s3,
    ):
        yield AwsClients(dynamodb=dynamodb, s3=s3)
