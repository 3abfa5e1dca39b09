"""``handlers.incremental.handler`` called as Lambda would: strict event, config, EMF metrics."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import pytest

import handlers.incremental
from ddb_backup.aws import aws_clients
from ddb_backup.backup import Polling, run_backup
from ddb_backup.config import BackupConfig
from handlers.incremental import handler
from tests.support.backups import BUCKET
from tests.support.data import create_table, every_type_items, put_items
from tests.support.incremental import enable_stream
from tests.support.lambda_context import FakeContext
from tests.support.moto_incremental import CLOCK
from tests.support.paths import EVENTS

TABLE = "pitr-handler"
GOOD_ENV = {
    "BACKUP_BUCKET": BUCKET,
    "ENVIRONMENT": "test",
    "DYNAMODB_TABLES": json.dumps([TABLE]),
    "S3_EXPORTS_PREFIX": "native-exports",
    "INCREMENTAL_INTERVAL_MINUTES": "15",
}
FAST = Polling(initial=0.01, maximum=0.05, factor=2.0)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, moto: str) -> dict[str, str]:
    for k, v in GOOD_ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(handlers.incremental, "POLLING", FAST)
    return GOOD_ENV


async def _table_with_a_full_backup_an_hour_ago() -> None:
    """Table and PITR from two hours ago, a verified full backup from one hour ago."""
    now = dt.datetime.now(dt.UTC)
    async with aws_clients() as aws:
        await aws.s3.create_bucket(Bucket=BUCKET)
        CLOCK.set(now - dt.timedelta(hours=2))
        await create_table(aws.dynamodb, TABLE)
        await enable_stream(aws.dynamodb, TABLE)
        await put_items(aws.dynamodb, TABLE, every_type_items(3))
        CLOCK.reset()
        cfg = BackupConfig(bucket=BUCKET, environment="test", tables=(TABLE,))
        result = await run_backup(cfg, aws, now=now - dt.timedelta(hours=1), polling=FAST)
        assert result.status_code == 200


def _emf(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]


def test_scheduled_round_verifies_a_window_and_emits_lag_metrics(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_table_with_a_full_backup_an_hour_ago())
    capsys.readouterr()
    event = json.loads((EVENTS / "scheduled_event.json").read_text())
    out = handler(event, FakeContext(remaining_ms=900_000))
    assert out["statusCode"] == 200, out["body"]
    assert out["body"]["windows_verified"] >= 1
    lag = out["body"]["results"][0]["chain_lag_seconds"]
    assert 5 * 60 <= lag <= 20 * 60 + 60  # a window ends 5 to 20 minutes before now
    round_line, table_line = _emf(capsys.readouterr().out)
    assert round_line["Function"] == "incremental"
    assert round_line["windows_verified"] == out["body"]["windows_verified"]
    assert round_line["chain_breaks"] == 0
    assert round_line["max_chain_lag_seconds"] == lag
    assert (table_line["Table"], table_line["chain_lag_seconds"]) == (TABLE, lag)


@pytest.mark.parametrize(
    ("event", "problem"),
    [
        ({"backup_date": "2026-01-02"}, "backup_date"),
        ({"source": "aws.events"}, "missing: version"),
        ({"Detail": {}}, "Detail"),
    ],
)
def test_anything_but_a_scheduled_event_is_refused(
    env: dict[str, str], event: dict[str, Any], problem: str
) -> None:
    out = handler(event, None)
    assert out["statusCode"] == 400
    assert problem in " ".join(out["body"]["problems"])


@pytest.mark.parametrize("minutes", ["14", "1441", "soon"])
def test_interval_outside_15_to_1440_minutes_is_a_config_error(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, minutes: str
) -> None:
    monkeypatch.setenv("INCREMENTAL_INTERVAL_MINUTES", minutes)
    out = handler({}, None)
    assert out["statusCode"] == 500
    assert "INCREMENTAL_INTERVAL_MINUTES" in out["body"]["error"]
