"""``handlers.backup.handler`` called as Lambda would: sync, one ``asyncio.run`` inside."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import orjson
import pytest
from aiobotocore.session import get_session

import handlers.backup
from ddb_backup.aws import aws_clients
from ddb_backup.backup import Polling
from handlers.backup import BackupEvent, handler
from handlers.common import MIN_WORKING_SECONDS, working_seconds
from tests.support.backups import BUCKET
from tests.support.data import SECRET_MARKER, create_table, every_type_items, put_items
from tests.support.lambda_context import FakeContext
from tests.support.paths import EVENTS

MIN_WORKING_MS = int(MIN_WORKING_SECONDS * 1000)
TABLES = ["mfa-api_test_u2f_global", "mfa-api_test_totp_global"]
GOOD_ENV = {
    "BACKUP_BUCKET": BUCKET,
    "ENVIRONMENT": "test",
    "DYNAMODB_TABLES": json.dumps(TABLES),
    "S3_EXPORTS_PREFIX": "native-exports",
}


#: One session for the tests' own set-up and checks: it keeps the loaded
#: service models, so each test does not pay for loading them again.
SESSION = get_session()


def load_event(name: str) -> Any:
    return json.loads((EVENTS / name).read_text())


async def _setup_tables() -> None:
    async with aws_clients(session=SESSION) as aws:
        await aws.s3.create_bucket(Bucket=BUCKET)
        for i, name in enumerate(TABLES):
            await create_table(aws.dynamodb, name)
            await put_items(aws.dynamodb, name, every_type_items(4 + i))


async def _exports_and_objects() -> tuple[int, list[str]]:
    async with aws_clients(session=SESSION) as aws:
        exports = 0
        for name in TABLES:
            arn = (await aws.dynamodb.describe_table(TableName=name))["Table"]["TableArn"]
            exports += len((await aws.dynamodb.list_exports(TableArn=arn))["ExportSummaries"])
        objects = await aws.s3.list_objects_v2(Bucket=BUCKET)
        return exports, [o["Key"] for o in objects.get("Contents", [])]


def exports_and_objects() -> tuple[int, list[str]]:
    return asyncio.run(_exports_and_objects())


@pytest.fixture
def env(moto: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Sample tables on a clean moto server, a good environment, fast polling."""
    asyncio.run(_setup_tables())
    for k, v in GOOD_ENV.items():
        monkeypatch.setenv(k, v)
    for k in ("EXPORT_KMS_KEY_ID", "BACKUP_BUCKET_OWNER"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(handlers.backup, "POLLING", Polling(initial=0.01, maximum=0.05))
    return dict(GOOD_ENV)


def stdout_docs(out: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in out.splitlines() if line.startswith("{")]


def metrics_of(out: str) -> dict[str, Any]:
    (emf,) = [d for d in stdout_docs(out) if "_aws" in d]
    return emf


def test_sample_events_validate() -> None:
    scheduled = BackupEvent.model_validate(load_event("scheduled_event.json"))
    assert scheduled.detail_type == "Scheduled Event"
    assert scheduled.source == "aws.events"
    assert scheduled.backup_date is None
    resume = BackupEvent.model_validate(load_event("backup_resume_event.json"))
    assert resume.backup_date is not None
    assert resume.backup_date.isoformat() == "2026-01-02"
    assert BackupEvent.model_validate({}).detail_type is None


def test_scheduled_event_backs_up_every_table(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    result = handler(load_event("scheduled_event.json"), FakeContext(remaining_ms=900_000))

    assert result["statusCode"] == 200, result
    body = result["body"]
    assert body["successful_exports"] == 2
    assert body["failed_exports"] == 0
    assert body["total_items_exported"] == 4 + 5
    assert body["backup_type"] == "DYNAMODB_NATIVE_EXPORT"
    assert body["manifest_s3_key"] == f"native-exports/{body['backup_date']}/manifest.json"
    exports, objects = exports_and_objects()
    assert exports == 2
    assert body["manifest_s3_key"] in objects
    json.dumps(result)  # the response is JSON-ready

    out = capsys.readouterr().out
    assert SECRET_MARKER not in out
    assert any(d.get("message") == "backup run final" for d in stdout_docs(out))
    emf = metrics_of(out)
    assert emf["Function"] == "backup"
    assert emf["Environment"] == "test"
    assert (emf["tables_succeeded"], emf["tables_failed"], emf["items_exported"]) == (2, 0, 9)
    assert emf["runs_failed"] == 0


def test_empty_event_with_exhausted_context_answers_202_then_finishes(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Too little time to start anything safely: 202 at once, nothing started or
    written; the next invocation (with time) does the whole run."""
    first = handler({}, FakeContext(remaining_ms=MIN_WORKING_MS))

    assert first["statusCode"] == 202, first
    assert "nothing was checked or started" in first["body"]["message"]
    assert exports_and_objects() == (0, [])
    emf = metrics_of(capsys.readouterr().out)
    assert (emf["tables_in_progress"], emf["runs_failed"], emf["runs_partial"]) == (0, 0, 0)

    date = first["body"]["backup_date"]
    second = handler({"backup_date": date}, FakeContext(remaining_ms=900_000))

    assert second["statusCode"] == 200, second
    assert second["body"]["backup_date"] == date
    assert second["body"]["successful_exports"] == 2
    exports, objects = exports_and_objects()
    assert exports == 2
    assert f"native-exports/{date}/manifest.json" in objects

    assert metrics_of(capsys.readouterr().out)["tables_succeeded"] == 2

    third = handler(load_event("scheduled_event.json"), None)
    assert third["statusCode"] == 200
    assert "nothing was started" in third["body"]["message"]
    assert third["body"]["already_final"] is True
    assert exports_and_objects()[0] == 2
    # The run was counted once; a re-read of the final manifest adds nothing.
    emf = metrics_of(capsys.readouterr().out)
    assert emf["runs_already_final"] == 1
    assert "tables_succeeded" not in emf


@pytest.mark.parametrize(
    "event",
    [
        [],
        "run",
        {"detail-type": 3},
        {"backup_date": "2026-13-01"},
        {"backup_date": "../2026-01-01"},
        {"backup_date": 1767225600},
        {"resources": "not-a-list"},
    ],
)
def test_invalid_event_is_refused_and_starts_nothing(env: dict[str, str], event: Any) -> None:
    result = handler(event, FakeContext(remaining_ms=900_000))
    assert result["statusCode"] == 400
    assert result["body"]["error"] == "invalid event"
    assert result["body"]["problems"]
    assert exports_and_objects() == (0, [])


def _scheduled(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = load_event("scheduled_event.json")
    event.update(changes)
    return {k: v for k, v in event.items() if v is not None}


@pytest.mark.parametrize(
    ("event", "problem"),
    [
        ({"backupDate": "2026-11-30"}, "backupDate: Extra inputs are not permitted"),
        ({"backup_date": "2026-01-02", "tables": ["x-y-z"]}, "tables: Extra inputs"),
        ({"detail_type": "Scheduled Event"}, "detail_type: Extra inputs"),
        (_scheduled(**{"replay-name": "x"}), "replay-name: Extra inputs are not permitted"),
        (_scheduled(backup_date="2026-01-02"), "backup_date cannot be combined"),
        ({"source": "aws.events"}, "missing: version, id, detail-type, account, time, region"),
        (_scheduled(detail=None), "missing: detail"),
    ],
)
def test_unknown_fields_are_named_and_nothing_is_started(
    env: dict[str, str], event: dict[str, Any], problem: str
) -> None:
    """README: a mistyped field (e.g. a resume of an older run as ``backupDate``)
    answers 400 naming it; no export started, no object written."""
    result = handler(event, FakeContext(remaining_ms=900_000))
    assert result["statusCode"] == 400, result
    assert any(problem in p for p in result["body"]["problems"]), result["body"]["problems"]
    assert exports_and_objects() == (0, [])


@pytest.mark.parametrize(("remaining", "working"), [(0, 0), (5, 0), (8, 3), (20, 10), (900, 870)])
def test_working_time_keeps_back_at_most_half(remaining: float, working: float) -> None:
    assert working_seconds(FakeContext(remaining_ms=int(remaining * 1000))) == pytest.approx(
        working, abs=0.05
    )


def test_short_invocations_still_finish_the_backup(env: dict[str, str]) -> None:
    """With 20 s left per invocation (less than the 30 s margin) every invocation
    polls and verifies what finished: the run is final within a few invocations."""
    answers: list[dict[str, Any]] = []
    for _ in range(3):
        event = {"backup_date": answers[-1]["body"]["backup_date"]} if answers else {}
        answers.append(handler(event, FakeContext(remaining_ms=20_000)))
        if answers[-1]["statusCode"] != 202:
            break
    assert answers[-1]["statusCode"] == 200, [a["statusCode"] for a in answers]
    assert answers[-1]["body"]["successful_exports"] == 2
    assert answers[-1]["body"]["total_items_exported"] == 4 + 5
    exports, objects = exports_and_objects()
    assert exports == 2  # resumed, never started twice
    assert answers[-1]["body"]["manifest_s3_key"] in objects


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("BACKUP_BUCKET", None, "BACKUP_BUCKET is required"),
        ("BACKUP_BUCKET", "", "BACKUP_BUCKET is required"),
        ("BACKUP_BUCKET", "Not_A_Bucket", "BACKUP_BUCKET is invalid"),
        ("ENVIRONMENT", None, "ENVIRONMENT is required"),
        ("ENVIRONMENT", "has space", "ENVIRONMENT is invalid"),
        ("DYNAMODB_TABLES", None, "DYNAMODB_TABLES is required"),
        ("DYNAMODB_TABLES", "mfa-api_test_u2f_global", "DYNAMODB_TABLES is not valid JSON"),
        ("DYNAMODB_TABLES", '{"a": 1}', "DYNAMODB_TABLES must be a JSON array"),
        ("DYNAMODB_TABLES", '["ok-table", 3]', "DYNAMODB_TABLES must be a JSON array"),
        ("DYNAMODB_TABLES", "[]", "DYNAMODB_TABLES is invalid"),
        ("DYNAMODB_TABLES", '["../etc"]', "DYNAMODB_TABLES is invalid"),
        ("DYNAMODB_TABLES", '["same-name", "same-name"]', "DYNAMODB_TABLES is invalid"),
        ("S3_EXPORTS_PREFIX", "../elsewhere", "S3_EXPORTS_PREFIX is invalid"),
        ("S3_EXPORTS_PREFIX", "a b", "S3_EXPORTS_PREFIX is invalid"),
        ("BACKUP_BUCKET_OWNER", "not-an-account", "BACKUP_BUCKET_OWNER is invalid"),
        ("BACKUP_BUCKET_OWNER", "12345", "BACKUP_BUCKET_OWNER is invalid"),
    ],
)
def test_malformed_environment_gives_500_naming_the_variable(
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    var: str,
    value: str | None,
    message: str,
) -> None:
    if value is None:
        monkeypatch.delenv(var)
    else:
        monkeypatch.setenv(var, value)

    result = handler(load_event("scheduled_event.json"), FakeContext(remaining_ms=900_000))

    assert result["statusCode"] == 500
    assert message in result["body"]["error"]
    assert exports_and_objects() == (0, [])  # nothing started, nothing written
    assert metrics_of(capsys.readouterr().out)["runs_failed"] == 1
