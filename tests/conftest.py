"""Fixtures: one moto server per session, reset before every test."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from ddb_backup.aws import AwsClients, aws_clients
from tests.support.moto_server import aws_environment, moto_server, reset_moto

pytest_plugins = ["tests.support.fault_fixtures"]

BUCKET = "ddb-backup-test-bucket"
ENVIRONMENT = "test"


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
