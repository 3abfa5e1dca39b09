"""Incremental exports: verification of the genuine layout, and applying windows.

Folders are hand-built in AWS's layout or emulated from a moto table's stream
(tests/support/incremental.py); windows are applied onto a moto table and
compared, item for item, with snapshots taken at each boundary.
"""

from __future__ import annotations

import datetime as dt
import gzip
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest

from ddb_backup.aws import AwsClients
from ddb_backup.changes import (
    ChangeKind,
    MicrosWindow,
    key_identity,
    parse_change_line,
    resolve_window,
)
from ddb_backup.digest import canonical_number
from ddb_backup.errors import (
    ChecksumMismatchError,
    CorruptDataError,
    DataFileMissingError,
    DdbBackupError,
    ItemCountMismatchError,
    ManifestError,
    UnsafeNameError,
)
from ddb_backup.incremental import (
    VerifiedWindow,
    iter_window_requests,
    micros,
    verify_incremental_folder,
)
from ddb_backup.storage import S3Storage
from tests.support.data import SECRET_MARKER, canonical, create_table, every_type_items, scan_all
from tests.support.incremental import (
    TABLE_ID,
    apply_requests,
    boundary,
    change_line,
    edit_manifest_files,
    emulate_incremental_export,
    enable_stream,
    rewrite_manifest,
    streams_client,
    write_incremental_export,
)

T0 = dt.datetime(2026, 11, 28, 3, 0, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(minutes=15)
T2 = T1 + dt.timedelta(minutes=15)
ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/pitr-src"
KEY_TYPES = {"pk": "S", "sk": "S"}
PREFIX = "native-exports/incremental/pitr-src/exports"

ITEMS = every_type_items(4)


def _keys(item: dict[str, Any]) -> dict[str, Any]:
    return {"pk": item["pk"], "sk": item["sk"]}


def _ts(when: dt.datetime, plus_s: int = 0) -> int:
    return micros(when) + plus_s * 1_000_000


def _window_lines() -> list[bytes]:
    """Insert (every type, binary), update that drops attributes, delete."""
    a, b, c, _ = ITEMS
    dropped = {k: v for k, v in b.items() if k not in {"label", "tags", "blobs"}}
    return [
        change_line(_keys(a), ts_micros=_ts(T0, 1), new=a),
        change_line(_keys(b), ts_micros=_ts(T0, 2), old=b, new=dropped),
        change_line(_keys(c), ts_micros=_ts(T0, 3), old=c),
    ]


async def _build(aws: AwsClients, bucket: str, lines: list[bytes], **kw: Any) -> dict[str, Any]:
    params: dict[str, Any] = {"export_from": T0, "export_to": T1, "table_arn": ARN, **kw}
    return await write_incremental_export(aws.s3, bucket, PREFIX, lines, **params)


async def _verify(aws: AwsClients, bucket: str, folder: str, **kw: Any) -> VerifiedWindow:
    return await verify_incremental_folder(
        S3Storage(aws.s3, bucket), folder, key_types=KEY_TYPES, **kw
    )


async def _requests(aws: AwsClients, bucket: str, window: VerifiedWindow) -> list[dict[str, Any]]:
    storage = S3Storage(aws.s3, bucket)
    return [
        r
        async for block in iter_window_requests(storage, window, key_types=KEY_TYPES)
        for r in block
    ]


async def test_genuine_layout_verifies_with_shared_data_folder(
    aws: AwsClients, bucket: str
) -> None:
    first = await _build(aws, bucket, _window_lines(), files=2, empty_files=1)
    empty = await _build(aws, bucket, [], files=0, empty_files=1, export_from=T1, export_to=T2)
    # Both exports' data live in one shared folder, outside either export's own folder.
    shared = f"{PREFIX}/AWSDynamoDB/data/"
    assert all(k.startswith(shared) for k in first["data_keys"] + empty["data_keys"])

    window = await _verify(aws, bucket, first["folder"], table_arn=ARN, table_id=TABLE_ID)
    assert (window.records, window.puts, window.deletes) == (3, 2, 1)
    assert [f.key for f in window.files] == first["data_keys"]  # only this export's files
    assert [f.item_count for f in window.files] == [2, 1, 0]
    assert window.files[-1].size == 20  # AWS's empty partition
    assert (window.summary.export_from_time, window.summary.export_to_time) == (T0, T1)

    nothing = await _verify(aws, bucket, empty["folder"])
    assert (nothing.records, nothing.puts, nothing.deletes) == (0, 0, 0)
    assert await _requests(aws, bucket, nothing) == []


async def _get(aws: AwsClients, bucket: str, key: str) -> bytes:
    data: bytes = await (await aws.s3.get_object(Bucket=bucket, Key=key))["Body"].read()
    return data


async def _edit_summary(aws: AwsClients, bucket: str, folder: str, **changes: Any) -> str:
    key = f"{folder}/manifest-summary.json"
    doc = orjson.loads(await _get(aws, bucket, key))
    await rewrite_manifest(aws.s3, bucket, key, orjson.dumps({**doc, **changes}))
    return key


Damage = Callable[[AwsClients, str, dict[str, Any]], Awaitable[str]]


async def _bad_md5(aws: AwsClients, bucket: str, export: dict[str, Any]) -> str:
    key = str(export["data_keys"][0])
    lines = gzip.decompress(await _get(aws, bucket, key))
    await aws.s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(lines, mtime=1))
    return key


async def _wrong_count(aws: AwsClients, bucket: str, export: dict[str, Any]) -> str:
    def more(entry: dict[str, Any]) -> None:
        entry["itemCount"] += 1

    await edit_manifest_files(aws.s3, bucket, export["folder"], more)
    await _edit_summary(aws, bucket, export["folder"], itemCount=4)
    return str(export["data_keys"][0])


async def _missing_file(aws: AwsClients, bucket: str, export: dict[str, Any]) -> str:
    await aws.s3.delete_object(Bucket=bucket, Key=export["data_keys"][1])
    return str(export["data_keys"][1])


async def _unknown_version(aws: AwsClients, bucket: str, export: dict[str, Any]) -> str:
    return await _edit_summary(aws, bucket, export["folder"], version="2020-06-30")


async def _full_export_type(aws: AwsClients, bucket: str, export: dict[str, Any]) -> str:
    return await _edit_summary(aws, bucket, export["folder"], exportType="FULL_EXPORT")


async def _sidecar_mismatch(aws: AwsClients, bucket: str, export: dict[str, Any]) -> str:
    key = f"{export['folder']}/manifest-files.json"
    await aws.s3.put_object(Bucket=bucket, Key=f"{export['folder']}/manifest-files.md5", Body=b"x")
    return key


async def _key_outside_data(aws: AwsClients, bucket: str, export: dict[str, Any]) -> str:
    def escape(entry: dict[str, Any]) -> None:
        entry["dataFileS3Key"] = f"{PREFIX}/AWSDynamoDB/../../secrets.json.gz"

    await edit_manifest_files(aws.s3, bucket, export["folder"], escape)
    return "secrets.json.gz"


async def _dotted_key(aws: AwsClients, bucket: str, export: dict[str, Any]) -> str:
    """The right file named through a ``..`` segment: refused, never cleaned into it."""
    dotted = f"elsewhere/../{export['data_keys'][0]}"

    def dot(entry: dict[str, Any]) -> None:
        entry["dataFileS3Key"] = dotted

    await edit_manifest_files(aws.s3, bucket, export["folder"], dot)
    return dotted


@pytest.mark.parametrize(
    ("damage", "error"),
    [
        (_bad_md5, ChecksumMismatchError),
        (_wrong_count, ItemCountMismatchError),
        (_missing_file, DataFileMissingError),
        (_unknown_version, ManifestError),
        (_full_export_type, ManifestError),
        (_sidecar_mismatch, ManifestError),
        (_key_outside_data, UnsafeNameError),
        (_dotted_key, UnsafeNameError),
    ],
)
async def test_damaged_folder_is_refused_naming_the_file(
    aws: AwsClients, bucket: str, damage: Damage, error: type[DdbBackupError]
) -> None:
    export = await _build(aws, bucket, _window_lines(), files=2, empty_files=0)
    named = await damage(aws, bucket, export)
    with pytest.raises(error) as caught:
        await _verify(aws, bucket, export["folder"])
    assert named in str(caught.value)
    assert SECRET_MARKER not in str(caught.value)


def _bad_lines() -> dict[str, tuple[bytes, str]]:
    a = ITEMS[0]
    k = _keys(a)
    return {
        "before the window": (change_line(k, ts_micros=_ts(T0) - 1, new=a), "outside the window"),
        "at ExportToTime (exclusive)": (change_line(k, ts_micros=_ts(T1), new=a), "outside"),
        "untyped timestamp": (
            orjson.dumps(
                {
                    "Metadata": {"WriteTimestampMicros": _ts(T0, 1)},
                    "Keys": orjson.loads(change_line(k, ts_micros=1))["Keys"],
                }
            ),
            "WriteTimestampMicros",
        ),
        "Keys with an extra attribute": (
            change_line({**k, "label": a["label"]}, ts_micros=_ts(T0, 1), new=a),
            "exactly the key attributes",
        ),
        "Keys missing an attribute": (
            change_line({"pk": a["pk"]}, ts_micros=_ts(T0, 1), new=a),
            "exactly the key attributes",
        ),
        "key of the wrong type": (
            change_line({"pk": a["pk"], "sk": {"N": "1"}}, ts_micros=_ts(T0, 1), new=a),
            "is not of type S",
        ),
        "neither image": (change_line(k, ts_micros=_ts(T0, 1)), "neither NewImage nor OldImage"),
        "image of another key": (
            change_line(k, ts_micros=_ts(T0, 1), new=ITEMS[1]),
            "NewImage does not match Keys",
        ),
        "image not DynamoDB JSON": (
            orjson.dumps(
                {
                    **orjson.loads(change_line(k, ts_micros=_ts(T0, 1))),
                    "NewImage": {"pk": {"S": "x"}, "label": SECRET_MARKER},
                }
            ),
            "not DynamoDB JSON",
        ),
        "not JSON": (b'{"Metadata": ' + SECRET_MARKER.encode(), "not JSON"),
    }


@pytest.mark.parametrize("case", list(_bad_lines()))
async def test_bad_change_record_is_refused_naming_file_and_line(
    aws: AwsClients, bucket: str, case: str
) -> None:
    bad, reason = _bad_lines()[case]
    # One file: the bad record is its line 4, after three good ones.
    export = await _build(aws, bucket, [*_window_lines(), bad], files=1, empty_files=0)
    with pytest.raises(CorruptDataError) as caught:
        await _verify(aws, bucket, export["folder"])
    message = str(caught.value)
    assert export["data_keys"][0] in message
    assert "line 4" in message
    assert reason in message
    assert SECRET_MARKER not in message
    assert "user-0" not in message


async def test_key_changed_twice_the_greater_timestamp_wins(aws: AwsClients, bucket: str) -> None:
    a = ITEMS[0]
    k = _keys(a)
    later = {**a, "counter": {"N": "99"}}
    # Across two files, the later write listed first: order in the files does not matter.
    lines = [
        change_line(k, ts_micros=_ts(T0, 9), old=a, new=later),
        change_line(k, ts_micros=_ts(T0, 2), old=a),
    ]
    export = await _build(aws, bucket, lines, files=2, empty_files=0)
    window = await _verify(aws, bucket, export["folder"])
    assert (window.records, window.puts, window.deletes) == (2, 1, 0)
    requests = await _requests(aws, bucket, window)
    assert requests == [{"PutRequest": {"Item": orjson.loads(lines[0])["NewImage"]}}]

    # The same key twice with the same timestamp: which is later is unknown, refused.
    tie = [lines[0], change_line(k, ts_micros=_ts(T0, 9), old=a)]
    export = await _build(aws, bucket, tie, files=1, empty_files=0)
    with pytest.raises(CorruptDataError, match=r"line 2 .*same WriteTimestampMicros"):
        await _verify(aws, bucket, export["folder"])


def test_numbers_in_keys_are_one_key_whatever_their_spelling() -> None:
    window = MicrosWindow(0, 10)
    types = {"id": "N"}

    def rec(n: str, ts: int, *, put: bool) -> Any:
        doc: dict[str, Any] = {
            "Metadata": {"WriteTimestampMicros": {"N": str(ts)}},
            "Keys": {"id": {"N": n}},
        }
        doc["NewImage" if put else "OldImage"] = {"id": {"N": n}}
        return parse_change_line(
            orjson.dumps(doc), key="f", line_no=1, key_types=types, window=window
        )

    resolver = resolve_window([("f", rec("10", 1, put=True)), ("f", rec("1E+1", 2, put=False))])
    assert (resolver.puts, resolver.deletes) == (0, 1)
    assert rec("10", 1, put=True).kind is ChangeKind.INSERT


# (a, b, one number?): where the key normaliser (Decimal.normalize in a 100-digit
# context) parted from the digest's exact canonical_number: past 100 digits it
# rounded two keys into one, and past its exponent range it raised decimal.Overflow.
_KEY_NUMBERS = [
    ("10", "1E+1", True),
    ("0.10", "1E-1", True),
    ("-0", "0.0E5", True),
    ("1" * 38, "1" * 37 + "2", False),
    ("9" * 120, "9" * 119 + "8", False),
    ("1E1000000", "10E999999", True),
    ("1E-1000000", "2E-1000000", False),
]


@pytest.mark.parametrize(("a", "b", "same"), _KEY_NUMBERS)
def test_key_numbers_are_one_key_exactly_when_the_digest_says_one_number(
    a: str, b: str, same: bool
) -> None:
    """One normaliser for keys and digests: a window's keys and a table's digest
    never disagree on whether two spellings are one number."""
    ids = [key_identity({"id": {"N": n}}, ("id",)) for n in (a, b)]
    assert (ids[0] == ids[1]) is same
    assert (canonical_number(a) == canonical_number(b)) is same


async def test_new_image_view_deletes_are_keys_only(aws: AwsClients, bucket: str) -> None:
    a, b = ITEMS[:2]
    lines = [
        change_line(_keys(a), ts_micros=_ts(T0, 1), new=a),
        change_line(_keys(b), ts_micros=_ts(T0, 2)),
    ]
    export = await _build(aws, bucket, lines, files=1, empty_files=0, view="NEW_IMAGE")
    window = await _verify(aws, bucket, export["folder"])
    assert (window.puts, window.deletes) == (1, 1)
    with_old = [change_line(_keys(b), ts_micros=_ts(T0, 2), old=b)]
    export = await _build(aws, bucket, with_old, files=1, empty_files=0, view="NEW_IMAGE")
    with pytest.raises(CorruptDataError, match="OldImage in a NEW_IMAGE export"):
        await _verify(aws, bucket, export["folder"])


async def _update(
    dynamodb: Any, table: str, item: dict[str, Any], expression: str, **values: Any
) -> None:
    """UpdateItem; ``#name`` placeholders stand for themselves (reserved words)."""
    names = {f"#{n}": n for n in ("label", "tags", "blobs", "counter")}
    await dynamodb.update_item(
        TableName=table,
        Key=_keys(item),
        UpdateExpression=expression,
        ExpressionAttributeNames={k: v for k, v in names.items() if k in expression},
        **({"ExpressionAttributeValues": values} if values else {}),
    )


async def test_windows_applied_in_order_reproduce_each_boundary(
    aws: AwsClients, bucket: str
) -> None:
    """Inserts, updates dropping attributes, deletes, a key deleted and re-created,
    binary values, a key changed twice in a window, an empty window."""
    ddb = aws.dynamodb
    source, target = "pitr-src", "pitr-target"
    items = every_type_items(6)
    await create_table(ddb, source)
    await enable_stream(ddb, source)
    for item in items[:4]:
        await ddb.put_item(TableName=source, Item=item)
    snapshots: list[list[dict[str, Any]]] = []
    bounds: list[dt.datetime] = []
    async with streams_client() as streams:

        async def cut() -> None:
            bounds.append(await boundary(ddb, streams, source))
            snapshots.append(await scan_all(ddb, source))

        await cut()  # b0: what the full backup holds
        await ddb.put_item(TableName=source, Item=items[4])  # insert, every type
        await _update(ddb, source, items[0], "REMOVE #label, #tags, #blobs")  # drops attributes
        await ddb.delete_item(TableName=source, Key=_keys(items[1]))
        await ddb.put_item(TableName=source, Item={**items[2], "secret": {"B": b"\x00new\xff"}})
        await _update(ddb, source, items[2], "SET #counter = :c", **{":c": {"N": "41"}})  # twice
        await cut()
        await ddb.delete_item(TableName=source, Key=_keys(items[3]))
        await ddb.put_item(TableName=source, Item={**_keys(items[3]), "fresh": {"BS": [b"\x01"]}})
        await ddb.put_item(TableName=source, Item=items[1])  # deleted in the last window
        await ddb.put_item(TableName=source, Item=items[5])
        await ddb.delete_item(TableName=source, Key=_keys(items[5]))  # no net change
        await _update(ddb, source, items[0], "SET #label = :l", **{":l": {"S": "back"}})
        await cut()
        await cut()  # an empty window
        exports = [
            await emulate_incremental_export(
                ddb, streams, aws.s3, bucket, PREFIX, source, export_from=a, export_to=b
            )
            for a, b in itertools.pairwise(bounds)
        ]
    assert len({e["folder"] for e in exports}) == 3

    await create_table(ddb, target)
    for item in snapshots[0]:
        await ddb.put_item(TableName=target, Item=item)
    counts = []
    for export, snapshot in zip(exports, snapshots[1:], strict=True):
        window = await _verify(aws, bucket, export["folder"])
        await apply_requests(ddb, target, await _requests(aws, bucket, window))
        counts.append((window.puts, window.deletes))
        assert canonical(await scan_all(ddb, target)) == canonical(snapshot)
    assert counts == [(3, 1), (3, 0), (0, 0)]
    assert canonical(snapshots[1]) != canonical(snapshots[0])
