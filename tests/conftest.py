"""Fixtures every folder uses: one moto server per session (reset before every test),
clients, the bucket, a Lambda context and the restore functions' environment. What only
one folder uses lives in that folder's conftest.py."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from ddb_backup.aws import AwsClients, aws_clients
from tests.support.backups import BUCKET, ENVIRONMENT, PREFIX
from tests.support.moto_server import aws_environment, moto_server, reset_moto

pytest_plugins = ["tests.support.fault_fixtures"]


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Handlers call ``configure_logging()``: give the next test pytest's logging back."""
    yield
    logger = logging.getLogger("ddb_backup")
    for handler in list(logger.handlers):
        if getattr(handler, "_ddb_backup", False):
            logger.removeHandler(handler)
    logger.propagate = True


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint, aws_environment(endpoint):
        yield endpoint


@pytest.fixture
def moto(moto_endpoint: str) -> str:
    """A clean moto server (every table and bucket forgotten)."""
    reset_moto(moto_endpoint)
    return moto_endpoint


@pytest.fixture
async def aws(moto: str) -> AsyncIterator[AwsClients]:
    async with aws_clients() as clients:
        yield clients


@pytest.fixture
async def bucket(aws: AwsClients) -> str:
    await aws.s3.create_bucket(Bucket=BUCKET)
    return BUCKET


@pytest.fixture
def lambda_context() -> Any:
    from tests.support.lambda_context import FakeContext

    return FakeContext(remaining_ms=900_000)


@pytest.fixture
def restore_handler_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment Terraform gives the restore functions: the test bucket,
    environment and prefix, no bucket owner pinned."""
    monkeypatch.setenv("BACKUP_BUCKET", BUCKET)
    monkeypatch.setenv("ENVIRONMENT", ENVIRONMENT)
    monkeypatch.setenv("S3_EXPORTS_PREFIX", PREFIX)
    monkeypatch.delenv("BACKUP_BUCKET_OWNER", raising=False)
