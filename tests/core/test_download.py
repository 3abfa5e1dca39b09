"""download_backup: a verified, resumable local copy that LocalStorage reads like S3."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import orjson

from ddb_backup.audit import verify_backup
from ddb_backup.aws import AwsClients
from ddb_backup.catalog import BackupState, list_backups
from ddb_backup.download import download_backup, local_md5
from ddb_backup.keys import manifest_key, table_export_prefix
from ddb_backup.storage import LocalStorage, S3Storage
from tests.support.backups import PREFIX
from tests.support.cli_data import get_bytes, write_backup
from tests.support.data import every_type_items, write_aws_export

DATE = "2026-11-20"
T1, T2 = "mfa-api_test_totp_global", "mfa-api_test_u2f_global"


async def _s3_keys(aws: AwsClients, bucket: str, prefix: str) -> list[str]:
    storage = S3Storage(aws.s3, bucket)
    return [o.key async for o in storage.list_objects(prefix)]


def _local_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _local_files_matching(root: Path, pattern: str) -> list[Path]:
    return list(root.rglob(pattern))


async def test_copy_mirrors_the_bucket_and_is_verified(
    aws: AwsClients, bucket: str, tmp_path: Path
) -> None:
    manifest = await write_backup(
        aws.s3, bucket, DATE, {T1: every_type_items(10), T2: every_type_items(5)}
    )
    copied: list[str] = []
    result = await download_backup(
        S3Storage(aws.s3, bucket),
        tmp_path,
        PREFIX,
        "latest",
        on_file=lambda f: copied.append(f.key),
    )
    assert result.ok, result.problems
    assert result.selection.date == dt.date(2026, 11, 20)
    # Every object of the date (data, AWS manifests, sidecars, _started, ours) mirrored.
    in_s3 = await _s3_keys(aws, bucket, f"{PREFIX}/{DATE}/")
    assert _local_files(tmp_path) == sorted(in_s3)
    assert result.files_copied == len(in_s3) - 1 == len(copied)  # manifest.json written apart
    assert result.files_skipped == 0
    for key in in_s3:
        assert (tmp_path / key).read_bytes() == await get_bytes(aws.s3, bucket, key)
    # Verified from the local copy, and readable by the catalog as a backup.
    assert result.verification is not None
    assert [v.item_count for v in result.verification.verdicts] == [10, 5]
    local = LocalStorage(tmp_path)
    [entry] = await list_backups(local, PREFIX)
    assert entry.state is BackupState.COMPLETE
    assert entry.manifest == manifest


async def test_second_run_skips_present_files_and_refetches_a_corrupted_one(
    aws: AwsClients, bucket: str, tmp_path: Path
) -> None:
    manifest = await write_backup(aws.s3, bucket, DATE, {T1: every_type_items(12)})
    source = S3Storage(aws.s3, bucket)
    first = await download_backup(source, tmp_path, PREFIX, DATE)
    data_files = manifest.tables[0].files or []
    assert len(data_files) == 3  # two with items, one empty partition

    second = await download_backup(source, tmp_path, PREFIX, DATE)
    assert second.ok
    skipped = {f.key for f in second.files if f.skipped}
    assert skipped == {f.key for f in data_files}
    # Metadata files carry no checksum to trust, so they are fetched again.
    assert second.files_copied == first.files_copied - len(data_files)

    victim = data_files[0]
    (tmp_path / victim.key).write_bytes(b"not what was backed up")
    assert (await verify_backup(LocalStorage(tmp_path), PREFIX, DATE)).ok is False
    third = await download_backup(source, tmp_path, PREFIX, DATE)
    assert third.ok, third.problems
    recopied = [f for f in third.files if f.key in skipped and not f.skipped]
    assert [f.key for f in recopied] == [victim.key]
    assert await local_md5(tmp_path / victim.key) == victim.md5


async def test_a_corrupted_source_file_is_not_kept_and_no_manifest_is_written(
    aws: AwsClients, bucket: str, tmp_path: Path
) -> None:
    manifest = await write_backup(aws.s3, bucket, DATE, {T1: every_type_items(6)})
    victim = (manifest.tables[0].files or [])[0]
    await aws.s3.put_object(Bucket=bucket, Key=victim.key, Body=b"bit rot")
    result = await download_backup(S3Storage(aws.s3, bucket), tmp_path, PREFIX, DATE)
    assert not result.ok
    assert any(victim.key in p and "MD5" in p for p in result.problems)
    assert result.verification is None
    assert not (tmp_path / victim.key).exists()
    assert not _local_files_matching(tmp_path, "*.part")
    assert not (tmp_path / manifest_key(PREFIX, dt.date(2026, 11, 20))).exists()
    # The other files are complete and will be skipped once the source is mended.
    assert result.files_copied >= 1


async def test_a_partial_backup_copies_what_exists_and_names_what_failed(
    aws: AwsClients, bucket: str, tmp_path: Path
) -> None:
    await write_backup(
        aws.s3,
        bucket,
        DATE,
        {T1: every_type_items(4)},
        failed={T2: "point-in-time recovery must be enabled"},
    )
    result = await download_backup(S3Storage(aws.s3, bucket), tmp_path, PREFIX, DATE)
    assert not result.ok
    assert result.problems == [f"{T2}: export FAILED: point-in-time recovery must be enabled"]
    assert result.verification is not None
    assert [v.table_name for v in result.verification.verdicts] == [T1]
    assert all(v.ok for v in result.verification.verdicts)


async def test_only_the_requested_tables_are_copied(
    aws: AwsClients, bucket: str, tmp_path: Path
) -> None:
    await write_backup(aws.s3, bucket, DATE, {T1: every_type_items(3), T2: every_type_items(3)})
    result = await download_backup(S3Storage(aws.s3, bucket), tmp_path, PREFIX, DATE, [T2])
    assert result.ok
    assert result.files
    assert all(f.key.startswith(f"{PREFIX}/{DATE}/{T2}/") for f in result.files)
    assert not (tmp_path / PREFIX / DATE / T1).exists()
    # T2 arrived whole: every object of its export, plus the manifest.
    t2_keys = await _s3_keys(aws, bucket, f"{PREFIX}/{DATE}/{T2}/")
    assert _local_files(tmp_path) == sorted([*t2_keys, f"{PREFIX}/{DATE}/manifest.json"])


async def test_a_leftover_part_file_is_replaced(
    aws: AwsClients, bucket: str, tmp_path: Path
) -> None:
    manifest = await write_backup(aws.s3, bucket, DATE, {T1: every_type_items(3)})
    key = (manifest.tables[0].files or [])[0].key
    part = tmp_path / (key + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"half a file from an interrupted run")
    result = await download_backup(S3Storage(aws.s3, bucket), tmp_path, PREFIX, DATE)
    assert result.ok
    assert not part.exists()
    assert (tmp_path / key).read_bytes() == await get_bytes(aws.s3, bucket, key)


async def test_a_legacy_backup_is_copied_with_aws_manifests(
    aws: AwsClients, bucket: str, tmp_path: Path
) -> None:
    day = dt.date(2026, 11, 19)
    s3_prefix = table_export_prefix(PREFIX, day, T1)
    info = await write_aws_export(aws.s3, bucket, s3_prefix, every_type_items(7), files=3)
    legacy = {
        "backup_date": day.isoformat(),
        "environment": "test",
        "backup_type": "DYNAMODB_NATIVE_EXPORT",
        "exports": [
            {
                "table_name": T1,
                "s3_prefix": s3_prefix + "/",
                "status": "COMPLETED",
                "export_arn": info["export_arn"],
                "item_count": 7,
            }
        ],
    }
    await aws.s3.put_object(Bucket=bucket, Key=manifest_key(PREFIX, day), Body=orjson.dumps(legacy))
    result = await download_backup(S3Storage(aws.s3, bucket), tmp_path, PREFIX, "latest")
    assert result.ok, result.problems
    assert (tmp_path / info["folder"] / "manifest-files.json").is_file()
    local = await verify_backup(LocalStorage(tmp_path), PREFIX, "latest")
    assert local.ok
    assert local.verdicts[0].item_count == 7
