"""The demo's second act: a bad write undone by a restore to the 15-minute
boundary just before it (point-in-time recovery into the existing table).

moto 5.2 has no incremental export, so the demo installs the same emulation the
tests use (``tests/support/moto_incremental.py``: incremental folders written
from the table's DynamoDB stream) and walks moto's clock through yesterday, so
the 15-minute windows need no waiting. The daily backup and the incremental
rounds are library calls given that time (``now=``); the restore is the Lambda
handler with ``restore_to``, exactly as an operator would send it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Any

from ddb_backup.aws import aws_clients
from ddb_backup.backup import Polling, run_backup, run_incremental_backup
from ddb_backup.config import BackupConfig, IncrementalConfig
from tests.support.moto_incremental import CLOCK

TABLE_KIND = "webauthn"
ITEMS = 120
FAST = Polling(initial=0.01, maximum=0.05, factor=2.0)

Invoke = Callable[[str, Callable[..., Any], Any], dict[str, Any]]
Snapshot = Callable[[Any, str], list[str]]


def _item(i: int, version: int) -> dict[str, Any]:
    return {
        "pk": {"S": f"user-{i:04d}"},
        "sk": {"S": "webauthn#0"},
        "credential": {"B": f"credential-{i}-v{version}".encode()},
        "sign_count": {"N": str(version)},
        "label": {"S": f"key {version}"},
    }


def _at(base: dt.datetime, minutes: int) -> dt.datetime:
    CLOCK.set(base + dt.timedelta(minutes=minutes))
    return CLOCK.now()


def run(
    ddb: Any, bucket: str, environment: str, table: str, invoke: Invoke, snapshot: Snapshot
) -> bool:
    """Print the act's account; True when the table came back item for item."""
    # Yesterday at midnight: every time below is in the past, as restore_to requires,
    # and on yesterday's date whatever the hour now (the first act's backup has today's).
    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    t0 = dt.datetime.combine(yesterday, dt.time(), tzinfo=dt.UTC)
    CLOCK.set(t0)
    ddb.create_table(
        TableName=table,
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    ddb.update_continuous_backups(
        TableName=table, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
    )
    for i in range(ITEMS):
        ddb.put_item(TableName=table, Item=_item(i, 1))

    daily = BackupConfig(bucket=bucket, environment=environment, tables=(table,))
    windows = IncrementalConfig(
        bucket=bucket, environment=environment, tables=(table,), interval_minutes=15
    )

    async def backup(at: dt.datetime) -> int:
        async with aws_clients() as aws:
            return (await run_backup(daily, aws, now=at, polling=FAST)).status_code

    async def incremental(at: dt.datetime) -> list[str]:
        async with aws_clients() as aws:
            result = await run_incremental_backup(windows, aws, now=at, polling=FAST)
        return [
            f"{str(r['window_from'])[11:16]}-{str(r['window_to'])[11:16]} "
            f"({r['puts']} puts, {r['deletes']} deletes)"
            for r in result.body["results"]
            if r.get("window_to")
        ]

    full_at = _at(t0, 60)
    print("\nPoint in time (moto's clock walks through yesterday; windows of 15 minutes):")
    print(f"{table}: {ITEMS} items; daily backup at {full_at:%H:%M} UTC yesterday:", end=" ")
    print(f"statusCode {asyncio.run(backup(full_at))}")

    _at(t0, 65)  # ordinary traffic: key rotations, a revoked key, a new enrolment
    for i in range(0, 30):
        ddb.put_item(TableName=table, Item=_item(i, 2))
    ddb.delete_item(TableName=table, Key={"pk": {"S": "user-0100"}, "sk": {"S": "webauthn#0"}})
    ddb.put_item(TableName=table, Item=_item(ITEMS, 1))
    print("  windows exported and verified:", ", ".join(asyncio.run(incremental(_at(t0, 100)))))

    _at(t0, 95)
    ddb.put_item(TableName=table, Item=_item(31, 2))
    boundary = t0 + dt.timedelta(minutes=105)
    before = snapshot(ddb, table)  # the table as it stands at that boundary

    bad_at = _at(t0, 108)  # the bad write: a deploy bug wipes credentials, deletes users
    for i in range(40, 80):
        ddb.put_item(TableName=table, Item={**_item(i, 9), "credential": {"B": b"\x00"}})
    for i in range(80, 90):
        key = {"pk": {"S": f"user-{i:04d}"}, "sk": {"S": "webauthn#0"}}
        ddb.delete_item(TableName=table, Key=key)
    print(f"  bad write at {bad_at:%H:%M}: 40 items corrupted, 10 deleted")
    for minutes in (111, 126):
        print(
            "  windows exported and verified:",
            ", ".join(asyncio.run(incremental(_at(t0, minutes)))),
        )

    CLOCK.reset()
    event = {
        "restore_to": boundary.isoformat(),
        "tables": [table],
        "clear_existing_data": True,
        "max_workers": 8,
    }
    from handlers import restore as restore_handler

    response = invoke("restore_to", restore_handler.handler, event)
    body = response["body"]
    results = body.get("restore_results") or [{}]
    pit = results[0].get("point_in_time") or body.get("point_in_time") or {}
    print(
        f"restore_to {boundary:%H:%M} (the boundary before the bad write): "
        f"statusCode {response['statusCode']}, restored to {pit.get('restored_to')}, "
        f"{len(pit.get('windows') or [])} windows applied"
    )
    same = response["statusCode"] == 200 and snapshot(ddb, table) == before
    print(f"{table}: {'IDENTICAL to its state at ' + f'{boundary:%H:%M}' if same else 'DIFFERENT'}")
    return same
