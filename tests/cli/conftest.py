"""Fixtures only the command-line tests use."""

from __future__ import annotations

import pytest

from tests.support.backups import BUCKET, ENVIRONMENT


@pytest.fixture(autouse=True)
def _plain_output(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain output, and no setting from the shell the tests run in: each test sets its own."""
    monkeypatch.delenv("DDB_BACKUP_TERMINAL", raising=False)
    for var in ("BACKUP_BUCKET", "ENVIRONMENT", "S3_EXPORTS_PREFIX", "DYNAMODB_TABLES"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """An operator's shell: the bucket and environment in the handlers' variables."""
    monkeypatch.setenv("BACKUP_BUCKET", BUCKET)
    monkeypatch.setenv("ENVIRONMENT", ENVIRONMENT)
