"""The decoder, the key guards, the export-folder reader and file verification."""

from __future__ import annotations

import gzip

import pytest

from ddb_backup.aws import AwsClients
from ddb_backup.errors import (
    ChecksumMismatchError,
    CorruptDataError,
    ItemCountMismatchError,
    ManifestError,
    UnsafeNameError,
)
from ddb_backup.export_folder import ExpectedFile, locate_export_folder, read_export_folder
from ddb_backup.items import check_item_line, to_botocore
from ddb_backup.keys import check_date, check_key_inside, check_table_name, table_export_prefix
from ddb_backup.storage import S3Storage
from ddb_backup.stream import GzipLineDecoder
from ddb_backup.verify import verify_files
from tests.support.data import every_type_items, export_lines, gzip_lines, write_aws_export


def test_decoder_yields_lines_for_any_chunking() -> None:
    lines = [f'{{"Item": {{"pk": {{"S": "{i}"}}}}}}'.encode() for i in range(50)]
    blob = gzip_lines(lines) + gzip_lines(lines[:3])  # two gzip members
    for size in (1, 7, 64, len(blob)):
        dec = GzipLineDecoder("k")
        out: list[bytes] = []
        for i in range(0, len(blob), size):
            out += dec.feed(blob[i : i + size])
        out += dec.finish()
        assert out == lines + lines[:3]


def test_decoder_refuses_truncated_gzip() -> None:
    blob = gzip_lines([b'{"Item": {"pk": {"S": "x"}}}'] * 100)
    dec = GzipLineDecoder("data/x.json.gz")
    dec.feed(blob[: len(blob) // 2])
    with pytest.raises(CorruptDataError, match=r"data/x.json.gz: truncated"):
        dec.finish()


def test_binary_round_trips_once() -> None:
    item = every_type_items(1)[0]
    wire = check_item_line(export_lines([item])[0], key="k", line_no=1)
    assert to_botocore(wire) == item


@pytest.mark.parametrize(
    "line", [b"not json", b'{"Item": 3}', b'{"Other": {}}', b'{"Item": {"a": {"X": 1}}}']
)
def test_non_items_are_refused(line: bytes) -> None:
    with pytest.raises(CorruptDataError, match="line 4"):
        check_item_line(line, key="k", line_no=4)


@pytest.mark.parametrize("name", ["../etc", "a/b", "..", "ab", "x" * 256, "t%2e%2e", "/abs"])
def test_unsafe_table_names_refused(name: str) -> None:
    with pytest.raises(UnsafeNameError):
        check_table_name(name)


@pytest.mark.parametrize("date", ["2026-13-01", "26-01-01", "2026-01-01/..", "latest"])
def test_bad_dates_refused(date: str) -> None:
    with pytest.raises(UnsafeNameError):
        check_date(date)


@pytest.mark.parametrize("key", ["other/x", "p/../x", "p/%2e%2e/x", "/p/x", "p//x", "p/./x"])
def test_keys_outside_prefix_refused(key: str) -> None:
    with pytest.raises(UnsafeNameError):
        check_key_inside(key, "p")


def test_export_prefix_layout() -> None:
    import datetime as dt

    assert (
        table_export_prefix("native-exports", dt.date(2026, 1, 2), "mfa-api_x_totp_global")
        == "native-exports/2026-01-02/mfa-api_x_totp_global"
    )


async def test_reads_and_verifies_aws_shaped_export(aws: AwsClients, bucket: str) -> None:
    items = every_type_items(20)
    written = await write_aws_export(aws.s3, bucket, "ext/src", items, files=3, empty_files=1)
    storage = S3Storage(aws.s3, bucket)
    folder = await locate_export_folder(storage, "ext/src", export_arn=written["export_arn"])
    assert folder == written["folder"]
    listing = await read_export_folder(storage, folder)
    assert listing.has_aws_manifest
    assert len(listing.files) == 4
    assert sorted(f.item_count or 0 for f in listing.files) == [0, 6, 7, 7]
    verdicts = await verify_files(storage, listing.files, concurrency=2)
    assert [v.error for v in verdicts] == [None] * 4
    assert sum(v.data_file.item_count for v in verdicts if v.data_file) == 20
    empty = next(f for f in listing.files if f.item_count == 0)
    assert empty.size == 20  # AWS's empty partition: a 20-byte gzip file


async def test_verification_names_the_bad_file(aws: AwsClients, bucket: str) -> None:
    items = every_type_items(9)
    written = await write_aws_export(aws.s3, bucket, "ext/src", items, files=3, empty_files=0)
    storage = S3Storage(aws.s3, bucket)
    listing = await read_export_folder(storage, written["folder"])
    bad, wrong_count, good = listing.files
    await aws.s3.put_object(Bucket=bucket, Key=bad.key, Body=gzip.compress(b"garbage\n"))
    verdicts = await verify_files(
        storage,
        [bad, ExpectedFile(wrong_count.key, 99, wrong_count.md5), good],
    )
    assert isinstance(verdicts[0].error, ChecksumMismatchError | CorruptDataError)
    assert bad.key in str(verdicts[0].error)
    assert isinstance(verdicts[1].error, ItemCountMismatchError)
    assert "holds 3 items, the manifest says 99" in str(verdicts[1].error)
    assert verdicts[2].error is None


async def test_manifest_sidecar_mismatch_refused(aws: AwsClients, bucket: str) -> None:
    written = await write_aws_export(aws.s3, bucket, "ext/src", every_type_items(3))
    await aws.s3.put_object(
        Bucket=bucket, Key=f"{written['folder']}/manifest-files.md5", Body=b"AAAA"
    )
    with pytest.raises(ManifestError, match="sidecar"):
        await read_export_folder(S3Storage(aws.s3, bucket), written["folder"])


async def test_stream_survives_cut_bodies_by_range(aws: AwsClients, bucket: str) -> None:
    data = bytes(range(256)) * 4000
    await aws.s3.put_object(Bucket=bucket, Key="blob", Body=data)
    storage = S3Storage(aws.s3, bucket)
    got = b"".join([c async for c in storage.stream("blob", chunk_size=1000)])
    assert got == data


async def test_legacy_table_verified_through_aws_manifest(aws: AwsClients, bucket: str) -> None:
    from ddb_backup.manifest import TableBackup, TableStatus
    from ddb_backup.verify import verify_table_backup

    prefix = "native-exports/2026-11-19/tbl-a"
    items = every_type_items(12)
    # A stray older export in the same prefix must not be picked.
    await write_aws_export(aws.s3, bucket, prefix, every_type_items(2), files=1)
    written = await write_aws_export(aws.s3, bucket, prefix, items, files=2)
    table = TableBackup(
        table_name="tbl-a",
        status=TableStatus.COMPLETED,
        s3_prefix=prefix,
        export_arn=written["export_arn"],
        item_count=12,
    )
    storage = S3Storage(aws.s3, bucket)
    verdict = await verify_table_backup(storage, table, keys=(("pk", "S"), ("sk", "S")))
    assert verdict.errors == []
    assert verdict.item_count == 12

    await aws.s3.put_object(Bucket=bucket, Key=written["data_keys"][0], Body=b"\x1f\x8b oops")
    verdict = await verify_table_backup(storage, table)
    assert len(verdict.errors) == 1
    assert written["data_keys"][0] in verdict.errors[0]


def test_gzip_bomb_inflates_in_bounded_blocks() -> None:
    from ddb_backup.stream import MAX_BLOCK_BYTES, GzipDecoder

    blob = gzip.compress(b"\n" * (50 * MAX_BLOCK_BYTES), compresslevel=9)
    assert len(blob) < 100_000  # the whole bomb fits in one S3 chunk
    dec = GzipDecoder("bomb.json.gz")
    sizes = [len(b) for b in dec.feed_blocks(blob)]
    assert max(sizes) <= MAX_BLOCK_BYTES
    assert sum(sizes) + len(dec.finish()) == 50 * MAX_BLOCK_BYTES


async def test_export_folder_copied_under_another_prefix(aws: AwsClients, bucket: str) -> None:
    """AWS's manifest keys keep the original s3Prefix; a copied folder still reads."""
    written = await write_aws_export(aws.s3, bucket, "orig/prefix", every_type_items(6), files=2)
    copied = written["folder"].replace("orig/prefix/", "", 1)  # AWSDynamoDB/<id> at the root
    listing = await aws.s3.list_objects_v2(Bucket=bucket, Prefix=written["folder"])
    for obj in listing["Contents"]:
        body = await (await aws.s3.get_object(Bucket=bucket, Key=obj["Key"]))["Body"].read()
        new_key = obj["Key"].replace("orig/prefix/", "", 1)
        await aws.s3.put_object(Bucket=bucket, Key=new_key, Body=body)
    storage = S3Storage(aws.s3, bucket)
    read = await read_export_folder(storage, copied)
    assert all(f.key.startswith(copied + "/data/") for f in read.files)
    verdicts = await verify_files(storage, read.files)
    assert [v.error for v in verdicts] == [None] * len(read.files)
    assert sum(v.data_file.item_count for v in verdicts if v.data_file) == 6


def test_aws_errors_never_quote_parameters() -> None:
    from botocore.exceptions import ParamValidationError

    from ddb_backup.aws import raise_aws_error
    from ddb_backup.errors import AwsError

    exc = ParamValidationError(report="Invalid type for parameter Item.s, value: S3CR3T-value")
    with pytest.raises(AwsError) as info:
        raise_aws_error(exc, operation="BatchWriteItem", table="tbl-a")
    assert "S3CR3T" not in str(info.value)
    assert "ParamValidationError" in str(info.value)


async def test_task_group_raises_the_first_error_itself() -> None:
    import asyncio

    from ddb_backup.concurrency import task_group
    from ddb_backup.errors import ExportError

    async def fail(n: int) -> None:
        await asyncio.sleep(0)
        raise ExportError(f"boom {n}")

    async def two_failures() -> None:
        async with task_group() as tg:
            tg.create_task(fail(1))
            tg.create_task(fail(2))

    with pytest.raises(ExportError, match="boom"):
        await two_failures()
