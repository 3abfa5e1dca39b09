"""Copying one final backup date to the vault: resumable, idempotent, manifest last."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from botocore.exceptions import ClientError
from pydantic import ValidationError

from ddb_backup.aws import AwsClients, raise_aws_error
from ddb_backup.catalog import load_backup
from ddb_backup.concurrency import run_workers
from ddb_backup.errors import DdbBackupError, ManifestError
from ddb_backup.keys import check_key_inside, date_prefix
from ddb_backup.log import get_logger
from ddb_backup.manifest import BackupManifest, parse_aws_manifest_files
from ddb_backup.storage import S3Storage, content_md5
from ddb_backup.vault.config import VaultConfig
from ddb_backup.vault.copy_object import (
    COPY_CONCURRENCY,
    MULTIPART_THRESHOLD,
    PART_SIZE,
    Copier,
    CopyFailed,
)
from ddb_backup.vault.manifest import (
    VaultManifest,
    _load_state,
    _same_objects,
    _save_state,
    _VaultState,
    vault_manifest_key,
)

log = get_logger("ddb_backup.vault")


@dataclass(frozen=True, slots=True)
class VaultFailure:
    key: str
    reason: str
    conflict: bool = False


@dataclass(slots=True)
class VaultResult:
    """What one invocation did: exactly which keys were copied, skipped, failed."""

    backup_date: dt.date
    copied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[VaultFailure] = field(default_factory=list)
    remaining: int = 0
    manifest_written: bool = False
    locked_until: dt.datetime | None = None

    @property
    def status_code(self) -> int:
        """200 complete and verified, 202 to be continued, 500 an object failed."""
        if self.failed:
            return 500
        return 202 if self.remaining else 200

    def body(self) -> dict[str, Any]:
        return {
            "backup_date": self.backup_date.isoformat(),
            "status": {200: "COMPLETE", 202: "IN_PROGRESS", 500: "FAILED"}[self.status_code],
            "copied": len(self.copied),
            "skipped": len(self.skipped),
            "failed": len(self.failed),
            "conflicts": sum(f.conflict for f in self.failed),
            "remaining": self.remaining,
            "failures": [{"key": f.key, "reason": f.reason} for f in self.failed],
            "vault_manifest_written": self.manifest_written,
            "locked_until": self.locked_until.isoformat() if self.locked_until else None,
        }


def _not_copied(key: str, base: str) -> bool:
    """Run state and the vault's own records stay where they are."""
    rest = key[len(base) :]
    return rest.startswith(("_run/", "_vault/")) or rest == "vault-manifest.json"


async def _expected_md5s(
    primary: S3Storage, manifest: BackupManifest, keys: list[str], base: str
) -> dict[str, str]:
    """Every data file's MD5 as AWS's manifest-files.json and our manifest state it."""
    expected: dict[str, str] = {}
    for key in keys:
        if key.endswith("/manifest-files.json"):
            for entry in parse_aws_manifest_files(await primary.get_bytes(key), key=key):
                expected[check_key_inside(entry.data_file_s3_key, base)] = entry.md5_checksum
    for table in manifest.tables:
        for f in table.files or []:
            if f.md5 is None:
                continue
            if expected.setdefault(f.key, f.md5) != f.md5:
                raise ManifestError(
                    f"our manifest and AWS's disagree on the MD5 of {f.key}", key=f.key
                )
    return expected


async def copy_to_vault(
    config: VaultConfig,
    clients: AwsClients,
    date: dt.date,
    *,
    deadline_seconds: float | None = None,
    max_objects: int | None = None,
    multipart_threshold: int = MULTIPART_THRESHOLD,
    part_size: int = PART_SIZE,
    now: dt.datetime | None = None,
) -> VaultResult:
    """Copy one final backup date to the vault, verified; resumable (202) and idempotent.

    Stops starting objects after ``deadline_seconds`` (or ``max_objects``), saving
    the objects verified so far in the primary bucket for the next invocation.
    """
    started = time.monotonic()
    copier = Copier(
        config,
        clients,
        now=now or dt.datetime.now(dt.UTC),
        multipart_threshold=multipart_threshold,
        part_size=part_size,
    )
    manifest = await load_backup(copier.primary, config.prefix, date)
    base = date_prefix(config.prefix, date) + "/"
    keys = [o.key async for o in copier.primary.list_objects(base) if not _not_copied(o.key, base)]
    expected = await _expected_md5s(copier.primary, manifest, keys, base)
    state = await _load_state(copier.primary, config, date)
    resumed = bool(state.objects)
    result = VaultResult(backup_date=date)
    started_count = 0

    async def work(key: str) -> None:
        nonlocal started_count
        if key in state.objects:
            result.skipped.append(key)
            return
        out_of_time = (
            deadline_seconds is not None and time.monotonic() - started >= deadline_seconds
        )
        if out_of_time or (max_objects is not None and started_count >= max_objects):
            result.remaining += 1
            return
        started_count += 1
        try:
            entry, copied = await copier.copy_one(key, expected.get(key))
        except CopyFailed as exc:
            result.failed.append(VaultFailure(key, exc.reason, exc.conflict))
            return
        except DdbBackupError as exc:
            result.failed.append(VaultFailure(key, str(exc)))
            return
        state.objects[key] = entry
        (result.copied if copied else result.skipped).append(key)

    await run_workers(sorted(keys), work, concurrency=COPY_CONCURRENCY)
    complete = not result.remaining and not result.failed
    if complete and resumed:
        # Done: the next run checks every object in the vault again, not the state.
        await _save_state(
            copier.primary, config, _VaultState(backup_date=date, vault_bucket=config.vault_bucket)
        )
    elif not complete and (result.copied or state.objects):
        await _save_state(copier.primary, config, state)
    if complete:
        vault_manifest = VaultManifest(
            backup_date=date,
            environment=config.environment,
            source_bucket=config.bucket,
            vault_bucket=config.vault_bucket,
            prefix=config.prefix,
            lock_mode=config.lock_mode,
            created_at=copier.now,
            objects=[state.objects[k] for k in sorted(keys)],
        )
        result.manifest_written = await _write_manifest(copier, vault_manifest)
        result.locked_until = vault_manifest.locked_until
    log.info(
        "vault copy",
        extra={
            "backup_date": date.isoformat(),
            "copied": len(result.copied),
            "skipped": len(result.skipped),
            "failed": len(result.failed),
            "remaining": result.remaining,
        },
    )
    return result


async def _write_manifest(copier: Copier, manifest: VaultManifest) -> bool:
    """Write the vault manifest (locked like the copy) unless the same one is there."""
    key = vault_manifest_key(manifest.prefix, manifest.backup_date)
    old = await copier.vault.get_bytes_or_none(key)
    if old is not None:
        try:
            previous = VaultManifest.model_validate_json(old)
        except ValidationError:
            previous = None
        if previous is not None and _same_objects(previous, manifest):
            return False
    data = orjson.dumps(manifest.model_dump(mode="json"), option=orjson.OPT_INDENT_2)
    try:
        await copier.s3.put_object(
            Bucket=copier.config.vault_bucket,
            Key=key,
            Body=data,
            ContentType="application/json",
            ContentMD5=content_md5(data),
            **copier._lock,
            **copier._vault_owner,
            **copier._kms,
        )
    except ClientError as exc:
        raise_aws_error(exc, operation="PutObject", key=key)
    return True
