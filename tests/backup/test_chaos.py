"""Chaos tests of the backup half: DescribeExport failing, S3 misbehaving during verification.

Each test ends with the backup checked item for item: the manifest's counts and
checksums against the data files, and the items in the data files against the
source table.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
from typing import Any

import orjson
import pytest

from ddb_backup.aws import AwsClients, aws_clients
from ddb_backup.backup import BackupResult, Polling, run_backup
from ddb_backup.config import BackupConfig
from ddb_backup.items import check_item_line, to_botocore
from ddb_backup.keys import manifest_key
from ddb_backup.manifest import BackupManifest, TableStatus, load_manifest
from tests.support.backups import BUCKET
from tests.support.data import canonical, create_table, every_type_items, put_items, to_wire
from tests.support.fault_fixtures import record_figures
from tests.support.faults import Fault, FaultProxy

PREFIX = "native-exports"
NOW = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.UTC)
FAST = Polling(initial=0.01, maximum=0.05, factor=2.0)
TABLES = {"chaos_u2f_global": 40, "chaos_totp_global": 25, "chaos_empty_global": 0}


def wire_canonical(items: list[dict[str, Any]]) -> list[bytes]:
    return canonical([to_wire(i) for i in items])


async def setup_tables(aws: AwsClients) -> dict[str, list[dict[str, Any]]]:
    await aws.s3.create_bucket(Bucket=BUCKET)
    contents = {}
    for name, n in TABLES.items():
        await create_table(aws.dynamodb, name)
        items = every_type_items(n)
        await put_items(aws.dynamodb, name, items)
        contents[name] = items
    return contents


async def backup(aws: AwsClients, **kw: Any) -> BackupResult:
    cfg = BackupConfig(bucket=BUCKET, environment="chaos", tables=tuple(TABLES))
    kw.setdefault("now", NOW)
    return await run_backup(cfg, aws, polling=FAST, **kw)


async def check_backup(
    proxy: FaultProxy, aws: AwsClients, contents: dict[str, list[dict[str, Any]]]
) -> int:
    """The manifest and the data files against the source; returns the items checked."""
    with proxy.faults_off():
        key = manifest_key(PREFIX, NOW.date())
        raw = await _get(aws, key)
        manifest: BackupManifest = load_manifest(raw, key=key, prefix=PREFIX)
        checked = 0
        for name, items in contents.items():
            table = manifest.table(name)
            assert table is not None
            assert table.status is TableStatus.COMPLETED, table.error
            assert table.item_count == len(items)
            assert table.files is not None
            found: list[dict[str, Any]] = []
            for f in table.files:
                blob = await _get(aws, f.key)
                assert f.md5 == base64.b64encode(hashlib.md5(blob).digest()).decode()
                lines = [x for x in gzip.decompress(blob).splitlines() if x.strip()]
                assert f.item_count == len(lines)
                found += [
                    to_botocore(check_item_line(x, key=f.key, line_no=n))
                    for n, x in enumerate(lines, 1)
                ]
            assert wire_canonical(found) == wire_canonical(items)
            checked += len(found)
    return checked


async def _get(aws: AwsClients, key: str) -> bytes:
    resp = await aws.s3.get_object(Bucket=BUCKET, Key=key)
    async with resp["Body"] as body:
        return bytes(await body.read())


def _record(request: pytest.FixtureRequest, proxy: FaultProxy, checked: int) -> None:
    record_figures(request.node.nodeid, items_checked=checked, items_lost=0)


async def test_describe_export_failing_intermittently_still_finalizes(
    faulty_aws: FaultProxy, fast_retries: None, request: pytest.FixtureRequest
) -> None:
    async with aws_clients() as aws:
        contents = await setup_tables(aws)
        faulty_aws.set_faults(
            Fault.throttle(code="ThrottlingException", operation="DescribeExport", every=2),
            Fault.http_error(500, service="dynamodb", operation="DescribeExport", rate=0.2),
            Fault.latency(0.01, service="dynamodb", operation="DescribeExport", rate=0.3),
        )
        result = await backup(aws)
        assert result.status_code == 200, result.body
        assert result.body["total_items_exported"] == sum(len(v) for v in contents.values())
        assert result.body["successful_exports"] == len(TABLES)
        checked = await check_backup(faulty_aws, aws, contents)
    assert faulty_aws.total_injected > 0
    _record(request, faulty_aws, checked)


async def test_describe_export_errors_reach_the_run_and_it_recovers(
    faulty_aws: FaultProxy, request: pytest.FixtureRequest
) -> None:
    """No botocore retries: every injected failure is seen by the run's own polling."""
    async with aws_clients(max_attempts=1) as aws:
        contents = await setup_tables(aws)
        faulty_aws.set_faults(
            Fault.http_error(503, service="dynamodb", operation="DescribeExport", limit=3),
            Fault.throttle(operation="DescribeExport", skip=3, limit=2),
        )
        result = await backup(aws)
        assert result.status_code == 200, result.body
        checked = await check_backup(faulty_aws, aws, contents)
    assert faulty_aws.counts["http_503"] == 3
    assert faulty_aws.counts["throttle_ProvisionedThroughputExceededException"] == 2
    _record(request, faulty_aws, checked)


async def test_connection_resets_on_describe_export_are_survived(
    faulty_aws: FaultProxy, request: pytest.FixtureRequest
) -> None:
    async with aws_clients(max_attempts=1) as aws:
        contents = await setup_tables(aws)
        faulty_aws.set_faults(Fault.reset(service="dynamodb", operation="DescribeExport", limit=2))
        result = await backup(aws)
        assert result.status_code == 200, result.body
        checked = await check_backup(faulty_aws, aws, contents)
    assert faulty_aws.counts["reset"] == 2
    _record(request, faulty_aws, checked)


async def test_deadline_then_next_invocation_finishes_under_faults(
    faulty_aws: FaultProxy, fast_retries: None, request: pytest.FixtureRequest
) -> None:
    async with aws_clients() as aws:
        contents = await setup_tables(aws)
        faulty_aws.set_faults(
            Fault.throttle(0.5, code="ThrottlingException", operation="DescribeExport")
        )
        first = await backup(aws, deadline_seconds=0)
        assert first.status_code == 202, first.body
        assert first.body["successful_exports"] == 0
        starts = len(faulty_aws.requests_for("dynamodb", "ExportTableToPointInTime"))
        second = await backup(aws, now=NOW + dt.timedelta(minutes=15))
        assert second.status_code == 200, second.body
        # The second invocation started no export of its own.
        assert len(faulty_aws.requests_for("dynamodb", "ExportTableToPointInTime")) == starts
        checked = await check_backup(faulty_aws, aws, contents)
    _record(request, faulty_aws, checked)


async def test_s3_faults_during_verification_do_not_change_the_verdict(
    faulty_aws: FaultProxy, fast_retries: None, request: pytest.FixtureRequest
) -> None:
    async with aws_clients() as aws:
        contents = await setup_tables(aws)
        faulty_aws.set_faults(
            Fault.cut_body(every=2),
            Fault.slow_down(0.2),
            Fault.latency(0.01, service="s3", rate=0.3),
        )
        result = await backup(aws)
        assert result.status_code == 200, result.body
        checked = await check_backup(faulty_aws, aws, contents)
    assert faulty_aws.counts["cut_body"] + faulty_aws.counts["http_503_SlowDown"] > 0
    _record(request, faulty_aws, checked)


async def test_manifest_is_json_object_after_faults(
    faulty_aws: FaultProxy, fast_retries: None
) -> None:
    """The manifest write itself under SlowDown: retried, written once, valid."""
    async with aws_clients() as aws:
        await setup_tables(aws)
        faulty_aws.set_faults(Fault.slow_down(operation="PutObject", limit=1))
        result = await backup(aws)
        assert result.status_code == 200, result.body
        with faulty_aws.faults_off():
            doc = orjson.loads(await _get(aws, manifest_key(PREFIX, NOW.date())))
    assert doc["status"] == "COMPLETE"
    assert faulty_aws.counts["http_503_SlowDown"] == 1


async def test_lost_answer_to_export_start_never_starts_a_second_export(
    faulty_aws: FaultProxy, request: pytest.FixtureRequest
) -> None:
    """AWS started the export but the answer was lost: not FAILED, not started twice."""
    async with aws_clients(max_attempts=1) as aws:
        contents = await setup_tables(aws)
        faulty_aws.set_faults(
            Fault.reset(
                service="dynamodb", operation="ExportTableToPointInTime", after=True, limit=1
            )
        )
        first = await backup(aws)
        assert first.status_code == 202, first.body
        assert first.body["failed_exports"] == 0
        faulty_aws.set_faults()
        second = await backup(aws)
        assert second.status_code == 200, second.body
        checked = await check_backup(faulty_aws, aws, contents)
        for name in TABLES:
            arn = (await aws.dynamodb.describe_table(TableName=name))["Table"]["TableArn"]
            exports = await aws.dynamodb.list_exports(TableArn=arn)
            assert len(exports["ExportSummaries"]) == 1, name
    assert faulty_aws.counts["reset_after"] == 1
    _record(request, faulty_aws, checked)
