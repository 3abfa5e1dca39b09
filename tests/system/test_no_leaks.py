"""Secrets never leak: no attribute value (nor non-key attribute name) from an item
reaches a log line or a response, on the happy paths and the error paths; and
every S3 request carries ``ExpectedBucketOwner`` when an owner is configured.

Items carry :data:`tests.support.data.SECRET_MARKER` in strings, in binary
values (whose base64 forms are searched too) and in an attribute name. Every
log line is captured twice: the package's own JSON lines (stdout for the
handlers, a StringIO for the core) and every record through a handler on the
``ddb_backup`` logger at DEBUG (so a leak at any level is seen).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import gzip
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from aiobotocore.session import get_session

import handlers.backup
from ddb_backup.aws import AwsClients, aws_clients
from ddb_backup.backup import Polling, run_backup
from ddb_backup.config import BackupConfig, RestoreConfig
from ddb_backup.events import RestoreRequest
from ddb_backup.log import configure_logging
from ddb_backup.restore import RestoreResult, restore_clients, run_restore
from ddb_backup.restore.writer import RetryPolicy, default_sender
from handlers.restore import handler as restore_handler
from tests.support.backups import BUCKET, ENVIRONMENT, PREFIX, make_backup
from tests.support.data import (
    SECRET_MARKER,
    create_table,
    every_type_items,
    gzip_lines,
    md5_b64,
    put_items,
    table_name,
    to_wire,
)
from tests.support.faults import Fault, FaultProxy
from tests.support.lambda_context import FakeContext
from tests.support.senders import poisoned, refusing_sender

DATE = "2026-11-27"
TABLE = table_name(ENVIRONMENT, "totp")
OWNER = "123456789012"
#: A non-key attribute name: names are data too.
NAME_MARKER = "attrname-S3CR3T-N4ME"
FAST = RetryPolicy(max_attempts=2, base_delay=0.001, max_delay=0.002)
SESSION = get_session()


def secret_items(n: int) -> list[dict[str, Any]]:
    items = every_type_items(n)
    for i, it in enumerate(items):
        it[NAME_MARKER] = {"S": f"{SECRET_MARKER}-value-{i}"}
        it["blob"] = {"B": f"{SECRET_MARKER}-bytes-{i}".encode()}
    return items


SOURCE = secret_items(40)


def _b64_cores(text: str) -> list[str]:
    """The base64 text a marker becomes at each of the 3 byte alignments."""
    out = []
    raw = text.encode()
    for shift in range(3):
        enc = base64.b64encode(b"\0" * shift + raw).decode()
        start = 4 if shift else 0
        out.append(enc[start:-4])
    return out


def forbidden() -> list[str]:
    words = [SECRET_MARKER, NAME_MARKER, *_b64_cores(SECRET_MARKER)]
    # Each item's own binary secrets, as the export (and a careless log) would show them.
    for it in SOURCE[:5]:
        wire = to_wire(it)
        words += [wire["secret"]["B"], wire["blob"]["B"]]
    return words


def assert_clean(logs: str, *texts: str) -> None:
    """No forbidden word in the log records nor in the other texts (output, responses)."""
    assert logs.strip(), "no log record was captured: the check would prove nothing"
    joined = "\n".join([logs, *texts])
    for word in forbidden():
        assert word not in joined, f"leaked: {word[:12]}..."


class _Records(logging.Handler):
    """Every record on the package's loggers, formatted with its extra fields."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        extra = {k: v for k, v in vars(record).items() if k not in ("msg", "args")}
        self.lines.append(f"{record.getMessage()} {extra!r}")


@pytest.fixture
def records() -> Iterator[_Records]:
    logger = logging.getLogger("ddb_backup")
    handler = _Records()
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
def json_lines(records: _Records) -> io.StringIO:
    buf = io.StringIO()
    configure_logging("DEBUG", stream=buf)
    return buf


def text_of(result: Any) -> str:
    return json.dumps(result, default=str)


# -- restore through the handler -------------------------------------------------


async def _setup_restore() -> None:
    async with aws_clients(session=SESSION) as aws:
        await aws.s3.create_bucket(Bucket=BUCKET)
        await make_backup(aws.s3, BUCKET, PREFIX, DATE, {TABLE: SOURCE})
        await create_table(aws.dynamodb, TABLE)
        await put_items(aws.dynamodb, TABLE, secret_items(8)[3:])


@pytest.fixture
def restore_env(moto: str, restore_handler_env: None) -> None:
    asyncio.run(_setup_restore())


@pytest.mark.parametrize(
    "event",
    [
        {"clear_existing_data": True},
        {"dry_run": True, "clear_existing_data": True},
        {"backup_date": DATE, "tables": [TABLE], "max_workers": 2},
    ],
    ids=["clear", "dry-run", "explicit"],
)
def test_restore_handler_logs_and_response_are_clean(
    restore_env: None,
    records: _Records,
    capsys: pytest.CaptureFixture[str],
    event: dict[str, Any],
) -> None:
    result = restore_handler(event, FakeContext(remaining_ms=900_000))
    assert result["statusCode"] == 200, result
    out = capsys.readouterr()
    assert '"restore progress"' in out.out  # the JSON lines were really captured
    assert_clean("\n".join(records.lines), out.out, out.err, text_of(result))


def test_invalid_event_with_secret_values_is_not_echoed(
    restore_env: None, records: _Records, capsys: pytest.CaptureFixture[str]
) -> None:
    event = {"clear_existing_data": SECRET_MARKER, "max_workers": NAME_MARKER}
    result = restore_handler(event, None)
    assert result["statusCode"] == 400
    out = capsys.readouterr()
    assert_clean("\n".join(records.lines), out.out, out.err, text_of(result))


# -- restore error paths through the core ---------------------------------------------


async def _damage_first_file(aws: AwsClients, lines: list[bytes]) -> None:
    """Replace the first data file; the manifest's MD5 and count updated to match."""
    from ddb_backup.keys import manifest_key

    key = manifest_key(PREFIX, dt.date.fromisoformat(DATE))
    doc = orjson.loads(await (await aws.s3.get_object(Bucket=BUCKET, Key=key))["Body"].read())
    table = doc["tables"][0]
    first = table["files"][0]
    blob = gzip_lines(lines)
    await aws.s3.put_object(Bucket=BUCKET, Key=first["key"], Body=blob)
    table["item_count"] += len(lines) - first["item_count"]
    first["md5"], first["item_count"] = md5_b64(blob), len(lines)
    await aws.s3.put_object(Bucket=BUCKET, Key=key, Body=orjson.dumps(doc))


BAD_LINES = {
    "not-json": [f'{{"Item": {{"pk": {{"S": "{SECRET_MARKER}"'.encode()],
    "not-dynamodb-json": [
        orjson.dumps({"Item": {"pk": {"S": "a"}, "sk": {"S": "b"}, NAME_MARKER: SECRET_MARKER}})
    ],
    "not-an-item": [orjson.dumps({SECRET_MARKER: {NAME_MARKER: {"S": SECRET_MARKER}}})],
    "bad-base64": [
        orjson.dumps({"Item": {"pk": {"S": "a"}, "sk": {"S": "b"}, "x": {"B": SECRET_MARKER}}})
    ],
    "empty-key": [
        orjson.dumps({"Item": {"pk": {"S": ""}, "sk": {"S": "b"}, NAME_MARKER: {"S": "v"}}}),
        *[orjson.dumps({"Item": to_wire(it)}) for it in SOURCE[:3]],
    ],
    "key-type-mismatch": [
        orjson.dumps(
            {"Item": {"pk": {"N": "1"}, "sk": {"S": SECRET_MARKER}, NAME_MARKER: {"S": "v"}}}
        ),
    ],
    "oversized": [
        orjson.dumps(
            {
                "Item": {
                    "pk": {"S": "a"},
                    "sk": {"S": "b"},
                    NAME_MARKER: {"S": SECRET_MARKER * (410 * 1024 // len(SECRET_MARKER))},
                }
            }
        )
    ],
}


@pytest.mark.parametrize("kind", sorted(BAD_LINES))
async def test_restore_error_paths_are_clean(
    aws: AwsClients, json_lines: io.StringIO, records: _Records, kind: str
) -> None:
    await aws.s3.create_bucket(Bucket=BUCKET)
    await make_backup(aws.s3, BUCKET, PREFIX, DATE, {TABLE: SOURCE})
    await create_table(aws.dynamodb, TABLE)
    await _damage_first_file(aws, BAD_LINES[kind])
    config = RestoreConfig(bucket=BUCKET, environment=ENVIRONMENT, prefix=PREFIX)

    result = await run_restore(
        config, RestoreRequest(backup_date=DATE, clear_existing_data=True), aws, retry=FAST
    )

    # Invalid base64 in a B value is not caught before the write (moto accepts it);
    # every other damage must fail the table.
    assert result.status_code != 200 or kind == "bad-base64", result.body
    assert_clean("\n".join(records.lines), json_lines.getvalue(), text_of(result.body))


# -- under faults: dead letters, and ExpectedBucketOwner on every S3 request ------------


def _s3_requests_since(proxy: FaultProxy, start: int, end: int | None = None) -> list[Any]:
    return [r for r in proxy.requests[start:end] if r.service == "s3"]


async def test_dead_letters_under_faults_are_clean_and_owner_pinned(
    faulty_aws: FaultProxy, json_lines: io.StringIO, records: _Records
) -> None:
    async with restore_clients(4) as aws:
        await aws.s3.create_bucket(Bucket=BUCKET)
        await make_backup(aws.s3, BUCKET, PREFIX, DATE, {TABLE: SOURCE})
        await create_table(aws.dynamodb, TABLE)
        start = len(faulty_aws.requests)
        # Random faults as noise, and every fifth item refused whatever the seed, so
        # there are always dead letters whose logs and writes are checked.
        faulty_aws.set_faults(Fault.unprocessed(0.3, fraction=1.0), Fault.cut_body(0.3))
        poison = poisoned(SOURCE, 5)
        config = RestoreConfig(
            bucket=BUCKET, environment=ENVIRONMENT, prefix=PREFIX, expected_bucket_owner=OWNER
        )
        result: RestoreResult = await run_restore(
            config,
            RestoreRequest(backup_date=DATE),
            aws,
            retry=FAST,
            sender=refusing_sender(default_sender(aws.dynamodb), poison),
        )
    assert result.status_code == 207, result.body
    assert result.body["total_items_failed"] >= len(poison)  # random faults may add some
    assert_clean("\n".join(records.lines), json_lines.getvalue(), text_of(result.body))
    s3 = _s3_requests_since(faulty_aws, start)
    ops = {r.operation for r in s3}
    assert {"GetObject", "PutObject"} <= ops  # data read, dead letters written
    missing = [(r.operation, r.path) for r in s3 if "x-amz-expected-bucket-owner" not in r.headers]
    assert missing == []
    assert {r.headers["x-amz-expected-bucket-owner"] for r in s3} == {OWNER}


async def test_backup_is_clean_and_owner_pinned(
    faulty_aws: FaultProxy, json_lines: io.StringIO, records: _Records
) -> None:
    async with aws_clients() as aws:
        await aws.s3.create_bucket(Bucket=BUCKET)
        await create_table(aws.dynamodb, TABLE)
        await put_items(aws.dynamodb, TABLE, SOURCE)
        start = len(faulty_aws.requests)
        config = BackupConfig(
            bucket=BUCKET,
            environment=ENVIRONMENT,
            tables=(TABLE,),
            expected_bucket_owner=OWNER,
        )
        result = await run_backup(
            config,
            aws,
            now=dt.datetime(2026, 11, 27, 3, tzinfo=dt.UTC),
            polling=Polling(initial=0.01, maximum=0.05, factor=2.0),
        )
        end = len(faulty_aws.requests)
        # The export itself holds the secrets (that is its job)...
        data = [
            o["Key"]
            for o in (await aws.s3.list_objects_v2(Bucket=BUCKET)).get("Contents", [])
            if "/data/" in o["Key"]
        ]
        blob = await (await aws.s3.get_object(Bucket=BUCKET, Key=data[0]))["Body"].read()
    assert SECRET_MARKER.encode() in gzip.decompress(blob)
    assert result.status_code == 200, result.body
    # ...the logs and the response do not.
    assert_clean("\n".join(records.lines), json_lines.getvalue(), text_of(result.body))
    s3 = _s3_requests_since(faulty_aws, start, end)
    assert {"GetObject", "PutObject", "ListObjectsV2"} <= {r.operation for r in s3}
    missing = [(r.operation, r.path) for r in s3 if "x-amz-expected-bucket-owner" not in r.headers]
    assert missing == []
    (export,) = faulty_aws.requests_for("dynamodb", "ExportTableToPointInTime")
    assert orjson.loads(export.body)["S3BucketOwner"] == OWNER


def test_backup_handler_logs_are_clean(
    moto: str,
    monkeypatch: pytest.MonkeyPatch,
    records: _Records,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def setup() -> None:
        async with aws_clients(session=SESSION) as aws:
            await aws.s3.create_bucket(Bucket=BUCKET)
            await create_table(aws.dynamodb, TABLE)
            await put_items(aws.dynamodb, TABLE, SOURCE)

    asyncio.run(setup())
    monkeypatch.setenv("BACKUP_BUCKET", BUCKET)
    monkeypatch.setenv("ENVIRONMENT", ENVIRONMENT)
    monkeypatch.setenv("DYNAMODB_TABLES", json.dumps([TABLE]))
    monkeypatch.setattr(handlers.backup, "POLLING", Polling(initial=0.01, maximum=0.05))
    result = handlers.backup.handler({}, FakeContext(remaining_ms=900_000))
    assert result["statusCode"] == 200, result
    out = capsys.readouterr()
    assert_clean("\n".join(records.lines), out.out, out.err, text_of(result))
