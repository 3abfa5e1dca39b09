"""A table changed in several windows, exported like AWS would, for the
point-in-time tests (:mod:`tests.test_point_in_time`, :mod:`tests.test_restore_to`).

:func:`make_changes` makes four boundaries on a moto table with a stream:
inserts, updates dropping attributes, deletes, a key deleted and re-created,
a key changed twice in a window, binary values; a snapshot of the table at
each boundary, an incremental export per window (from the stream, see
:mod:`tests.support.incremental`) and DAY1's full backup as of the first
boundary. :func:`record_chain` writes the chain record a backup run writes.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass
from typing import Any

import orjson

from ddb_backup.aws import AwsClients
from ddb_backup.chain import (
    Chain,
    ChainStart,
    ChainWindow,
    append_window,
    chain_id_for,
    start_chain,
)
from ddb_backup.incremental import VerifiedWindow, verify_incremental_folder
from ddb_backup.keys import incremental_exports_prefix
from ddb_backup.restore.writer import BatchSender, WireRequest
from ddb_backup.storage import S3Storage
from tests.support.backups import PREFIX, SCHEMA, make_backup
from tests.support.data import canonical, create_table, every_type_items, put_items, scan_all
from tests.support.incremental import (
    TABLE_ID,
    boundary,
    emulate_incremental_export,
    enable_stream,
    streams_client,
)

SOURCE = "pitr-src"
ARN = f"arn:aws:dynamodb:us-east-1:123456789012:table/{SOURCE}"
KEY_TYPES = SCHEMA.key_types
DAY1, DAY2 = dt.date(2026, 11, 27), dt.date(2026, 11, 28)
NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


def keys_of(item: dict[str, Any]) -> dict[str, Any]:
    return {"pk": item["pk"], "sk": item["sk"]}


@dataclass
class Scenario:
    bounds: list[dt.datetime]
    snapshots: list[list[dict[str, Any]]]
    windows: list[str]  # incremental export folders, in order
    full_folder: str  # DAY1's export of the table as of bounds[0]


async def make_changes(aws: AwsClients, bucket: str) -> Scenario:
    """Three windows of changes on a moto table, exported like AWS would."""
    ddb = aws.dynamodb
    items = every_type_items(6)
    await create_table(ddb, SOURCE)
    await enable_stream(ddb, SOURCE)
    await put_items(ddb, SOURCE, items[:4])
    bounds: list[dt.datetime] = []
    snapshots: list[list[dict[str, Any]]] = []

    async def update(item: dict[str, Any], expression: str, **values: Any) -> None:
        await ddb.update_item(
            TableName=SOURCE,
            Key=keys_of(item),
            UpdateExpression=expression,
            ExpressionAttributeNames={
                f"#{n}": n for n in ("label", "tags", "blobs", "ratio") if f"#{n}" in expression
            },
            **({"ExpressionAttributeValues": values} if values else {}),
        )

    async with streams_client() as streams:

        async def cut() -> None:
            bounds.append(await boundary(ddb, streams, SOURCE))
            snapshots.append(await scan_all(ddb, SOURCE))

        await cut()  # b0: what the full backup holds
        await ddb.put_item(TableName=SOURCE, Item=items[4])  # insert, every type
        await update(items[0], "REMOVE #label, #tags, #blobs")  # drops attributes
        await ddb.delete_item(TableName=SOURCE, Key=keys_of(items[1]))
        await ddb.put_item(TableName=SOURCE, Item={**items[2], "secret": {"B": b"\x00n\xff"}})
        await update(items[2], "SET #ratio = :r", **{":r": {"N": "2.5"}})  # twice in a window
        await cut()
        await ddb.delete_item(TableName=SOURCE, Key=keys_of(items[3]))
        await ddb.put_item(TableName=SOURCE, Item={**keys_of(items[3]), "fresh": {"BS": [b"\x01"]}})
        await ddb.put_item(TableName=SOURCE, Item=items[1])  # deleted in the window before
        await ddb.put_item(TableName=SOURCE, Item=items[5])
        await ddb.delete_item(TableName=SOURCE, Key=keys_of(items[5]))  # no net change
        await update(items[0], "SET #label = :l", **{":l": {"S": "back"}})
        await cut()
        await ddb.delete_item(TableName=SOURCE, Key=keys_of(items[4]))
        await ddb.put_item(TableName=SOURCE, Item={**items[2], "secret": {"B": b"\xff\x00"}})
        await cut()
        exports = [
            await emulate_incremental_export(
                ddb,
                streams,
                aws.s3,
                bucket,
                incremental_exports_prefix(PREFIX, SOURCE),
                SOURCE,
                export_from=a,
                export_to=b,
            )
            for a, b in itertools.pairwise(bounds)
        ]
    assert (await ddb.describe_table(TableName=SOURCE))["Table"]["TableArn"] == ARN
    manifest = await make_backup(
        aws.s3, bucket, PREFIX, DAY1, {SOURCE: snapshots[0]}, export_time=bounds[0]
    )
    full = manifest.tables[0].export_folder
    assert full is not None
    assert len({tuple(canonical(s)) for s in snapshots}) == len(snapshots)
    return Scenario(bounds, snapshots, [e["folder"] for e in exports], full)


async def verified(storage: S3Storage, folder: str) -> VerifiedWindow:
    return await verify_incremental_folder(
        storage, folder, key_types=KEY_TYPES, table_arn=ARN, table_id=TABLE_ID
    )


async def record_chain(storage: S3Storage, sc: Scenario, *, windows: int | None = None) -> Chain:
    """The chain record a backup run writes: starts at DAY1's full backup, then
    the first ``windows`` windows (all by default)."""
    start = ChainStart(
        table=SOURCE,
        chain_id=chain_id_for(sc.bounds[0]),
        table_arn=ARN,
        table_id=TABLE_ID,
        base_backup_date=DAY1,
        base_export_time=sc.bounds[0],
        started_at=NOW,
    )
    await start_chain(storage, PREFIX, start)
    chain = Chain(start, [])
    for folder in sc.windows[:windows]:
        chain = await append_to_chain(storage, chain, folder)
    return chain


async def append_to_chain(storage: S3Storage, chain: Chain, folder: str) -> Chain:
    """One more verified window in the chain record (what the next backup round does)."""
    window = ChainWindow.from_verified(
        SOURCE, chain.chain_id, await verified(storage, folder), verified_at=NOW
    )
    return await append_window(storage, PREFIX, chain, window)


async def rewrite(aws: AwsClients, bucket: str, key: str, body: bytes) -> None:
    await aws.s3.put_object(Bucket=bucket, Key=key, Body=body)


async def first_data_file(aws: AwsClients, bucket: str, folder: str) -> str:
    resp = await aws.s3.get_object(Bucket=bucket, Key=f"{folder}/manifest-files.json")
    raw = await resp["Body"].read()
    key: str = orjson.loads(raw.splitlines()[0])["dataFileS3Key"]
    return key


def refusing(real: BatchSender, poison: set[str]) -> BatchSender:
    """Never accepts requests (puts or deletes) of the poisoned partition keys."""

    def pk(r: WireRequest) -> str:
        body = r.get("PutRequest", {}).get("Item") or r["DeleteRequest"]["Key"]
        return str(body["pk"]["S"])

    async def send(table: str, requests: list[WireRequest]) -> list[WireRequest]:
        good = [r for r in requests if pk(r) not in poison]
        rest = await real(table, good) if good else []
        return rest + [r for r in requests if pk(r) in poison]

    return send
