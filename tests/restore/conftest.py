"""Fixtures only the restore tests use."""

from __future__ import annotations

import pytest

from ddb_backup.config import RestoreConfig
from tests.support.backups import ENVIRONMENT, PREFIX


@pytest.fixture
def config(bucket: str) -> RestoreConfig:
    """The restore's configuration: the test bucket, environment and prefix."""
    return RestoreConfig(bucket=bucket, environment=ENVIRONMENT, prefix=PREFIX)
