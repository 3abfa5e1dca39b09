"""Verified copies of final backups in a vault bucket under S3 Object Lock.

Once a backup date is final (``manifest.json`` exists), :func:`copy_to_vault`
copies every object of that date (data files, AWS's manifests and ``.md5``
sidecars, our manifest) to ``VAULT_BUCKET`` under the same keys, server-side
(``CopyObject``; ``UploadPartCopy`` above 5 GB), each with Object Lock retention
and a checksum header. Each copy is checked against the MD5 the source is known
to have (AWS's ``md5Checksum`` / our manifest for data files, else the source's
own MD5): from the ETag where S3 gives the MD5 that way (single-part, not
SSE-KMS), else by reading the copy. The vault manifest is written last::

    <prefix>/<date>/vault-manifest.json    (vault: every object, checksum, retention)
    <prefix>/<date>/_vault/state.json      (primary: objects verified so far, to resume)

A key already in the vault with the right MD5 is skipped; a different object
under a locked key is a conflict, reported and never overwritten.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ddb_backup.aws import AwsClients, error_code, raise_aws_error
from ddb_backup.aws import _client_error_message as client_error_message
from ddb_backup.catalog import list_backups, load_backup
from ddb_backup.concurrency import run_workers
from ddb_backup.config import DEFAULT_PREFIX, AccountId, Bucket, RestoreConfig, _build, _Config
from ddb_backup.config import _required as required_env
from ddb_backup.errors import BackupNotFoundError, DdbBackupError, ManifestError
from ddb_backup.keys import check_key_inside, date_prefix
from ddb_backup.log import get_logger
from ddb_backup.manifest import BackupManifest, parse_aws_manifest_files
from ddb_backup.storage import ObjectPin, S3Storage, content_md5

__all__ = [
    "MULTIPART_THRESHOLD",
    "VaultConfig",
    "VaultDateStatus",
    "VaultFailure",
    "VaultManifest",
    "VaultObject",
    "VaultResult",
    "copy_to_vault",
    "latest_final_date",
    "vault_manifest_key",
    "vault_state_key",
    "vault_status",
    "verify_vault_copy",
]

log = get_logger("ddb_backup.vault")

#: Above this, CopyObject is refused by S3: the object is copied in parts.
MULTIPART_THRESHOLD = 5 * 1024**3
#: Part size of a multipart copy (S3 allows 5 MB to 5 GB, at most 10,000 parts).
PART_SIZE = 512 * 1024**2
#: Checksum S3 computes and stores for every write (its header is on every write).
CHECKSUM_ALGORITHM = "SHA256"
#: Objects copied at once.
COPY_CONCURRENCY = 8

LockMode = Literal["GOVERNANCE", "COMPLIANCE"]


class VaultConfig(_Config):
    """The primary bucket (``bucket``...) and the vault it is copied to."""

    vault_bucket: Bucket
    vault_bucket_owner: AccountId | None = None
    vault_kms_key_id: str | None = None
    retention_days: int = Field(ge=1, le=36_500)
    lock_mode: LockMode = "GOVERNANCE"

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> VaultConfig:
        """``BACKUP_BUCKET``, ``ENVIRONMENT``, ``S3_EXPORTS_PREFIX``, ``BACKUP_BUCKET_OWNER``,
        ``VAULT_BUCKET``, ``VAULT_RETENTION_DAYS`` (required), ``VAULT_BUCKET_OWNER``,
        ``VAULT_KMS_KEY_ID``, ``VAULT_LOCK_MODE`` (GOVERNANCE or COMPLIANCE, default GOVERNANCE)."""
        return _build(
            cls,
            {
                "bucket": ("BACKUP_BUCKET", required_env(env, "BACKUP_BUCKET")),
                "environment": ("ENVIRONMENT", required_env(env, "ENVIRONMENT")),
                "prefix": ("S3_EXPORTS_PREFIX", env.get("S3_EXPORTS_PREFIX") or DEFAULT_PREFIX),
                "expected_bucket_owner": ("BACKUP_BUCKET_OWNER", env.get("BACKUP_BUCKET_OWNER")),
                "vault_bucket": ("VAULT_BUCKET", required_env(env, "VAULT_BUCKET")),
                "vault_bucket_owner": ("VAULT_BUCKET_OWNER", env.get("VAULT_BUCKET_OWNER")),
                "vault_kms_key_id": ("VAULT_KMS_KEY_ID", env.get("VAULT_KMS_KEY_ID")),
                "retention_days": (
                    "VAULT_RETENTION_DAYS",
                    required_env(env, "VAULT_RETENTION_DAYS"),
                ),
                "lock_mode": ("VAULT_LOCK_MODE", env.get("VAULT_LOCK_MODE") or "GOVERNANCE"),
            },
        )

    def restore_config(self) -> RestoreConfig:
        """Restore (list, show, verify) from the vault alone."""
        return RestoreConfig(
            bucket=self.vault_bucket,
            environment=self.environment,
            prefix=self.prefix,
            expected_bucket_owner=self.vault_bucket_owner,
        )


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class VaultObject(_Model):
    """One object of a vault copy, as verified."""

    key: str
    size: int = Field(ge=0)
    md5: str = Field(description="base64 MD5 of the bytes, as Content-MD5 / md5Checksum")
    sha256: str | None = Field(default=None, description="S3's ChecksumSHA256 of the copy")
    version_id: str | None = None
    retain_until: dt.datetime
    verified_by: Literal["etag", "read"]


class VaultManifest(_Model):
    format_version: Literal[1] = 1
    backup_date: dt.date
    environment: str
    source_bucket: str
    vault_bucket: str
    prefix: str
    lock_mode: LockMode
    created_at: dt.datetime
    objects: list[VaultObject]

    @property
    def locked_until(self) -> dt.datetime | None:
        """The earliest retention date of the copy (it is whole until then)."""
        return min((o.retain_until for o in self.objects), default=None)


class _VaultState(_Model):
    backup_date: dt.date
    vault_bucket: str
    objects: dict[str, VaultObject] = Field(default_factory=dict)


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


def vault_manifest_key(prefix: str, date: dt.date) -> str:
    return f"{date_prefix(prefix, date)}/vault-manifest.json"


def vault_state_key(prefix: str, date: dt.date) -> str:
    return f"{date_prefix(prefix, date)}/_vault/state.json"


def _not_copied(key: str, base: str) -> bool:
    """Run state and the vault's own records stay where they are."""
    rest = key[len(base) :]
    return rest.startswith(("_run/", "_vault/")) or rest == "vault-manifest.json"


def _etag_md5(head: Mapping[str, Any]) -> str | None:
    """The base64 MD5 an ETag proves: a single-part object not encrypted with KMS."""
    etag = str(head.get("ETag", "")).strip('"')
    if (
        len(etag) != 32
        or "-" in etag
        or str(head.get("ServerSideEncryption", "")).startswith("aws:kms")
    ):
        return None
    try:
        return base64.b64encode(bytes.fromhex(etag)).decode()
    except ValueError:
        return None


async def _read_md5(storage: S3Storage, key: str, pin: ObjectPin) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    async for chunk in storage.stream(key, pin=pin):
        digest.update(chunk)
    return base64.b64encode(digest.digest()).decode()


def _refusal(exc: ClientError, operation: str) -> str:
    """A refused vault write, named as such with AWS's own (short) reason."""
    code = error_code(exc) or "Unknown"
    reason = client_error_message(exc)
    if code in {"AccessDenied", "InvalidRequest", "ObjectLocked", "LockNotEnabled"}:
        return (
            f"{operation} refused by S3 ({reason}): the vault's Object Lock settings, "
            "a retention or the bucket policy forbid this write; nothing was overwritten"
        )
    return f"{operation} failed ({reason})"


class _Copier:
    """One invocation's copy of one date (shared clients, settings, retention date)."""

    def __init__(
        self,
        config: VaultConfig,
        clients: AwsClients,
        *,
        now: dt.datetime,
        multipart_threshold: int,
        part_size: int,
    ) -> None:
        self.config = config
        self.s3 = clients.s3
        self.primary = S3Storage(
            clients.s3, config.bucket, expected_owner=config.expected_bucket_owner
        )
        self.vault = S3Storage(
            clients.s3,
            config.vault_bucket,
            expected_owner=config.vault_bucket_owner,
            sse_kms_key_id=config.vault_kms_key_id,
        )
        self.now = now
        self.retain_until = now + dt.timedelta(days=config.retention_days)
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self._src_owner = (
            {"ExpectedBucketOwner": config.expected_bucket_owner}
            if config.expected_bucket_owner
            else {}
        )
        self._vault_owner = (
            {"ExpectedBucketOwner": config.vault_bucket_owner} if config.vault_bucket_owner else {}
        )
        self._kms = (
            {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": config.vault_kms_key_id}
            if config.vault_kms_key_id
            else {}
        )
        self._lock = {
            "ObjectLockMode": config.lock_mode,
            "ObjectLockRetainUntilDate": self.retain_until,
        }
        _checksum_header(clients.s3)

    async def head(
        self, bucket: str, key: str, owner: Mapping[str, str], version_id: str | None = None
    ) -> dict[str, Any] | None:
        version = {"VersionId": version_id} if version_id else {}
        try:
            resp: dict[str, Any] = await self.s3.head_object(
                Bucket=bucket, Key=key, ChecksumMode="ENABLED", **owner, **version
            )
        except ClientError as exc:
            if error_code(exc) in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise_aws_error(exc, operation="HeadObject", key=key)
        return resp

    async def md5_of(self, storage: S3Storage, key: str, head: Mapping[str, Any]) -> VerifiedMd5:
        pin = ObjectPin(etag=head.get("ETag"), version_id=head.get("VersionId"))
        proven = _etag_md5(head)
        if proven is not None:
            return VerifiedMd5(proven, "etag")
        return VerifiedMd5(await _read_md5(storage, key, pin), "read")

    async def copy_one(self, key: str, expected: str | None) -> tuple[VaultObject, bool]:
        """Copy (or find) one object; ``(entry, copied)``, or raise :class:`_Failed`."""
        src = await self.head(self.config.bucket, key, self._src_owner)
        if src is None:
            raise _Failed("the object is gone from the primary bucket")
        # The source is read only when nothing else says what its MD5 is: with an
        # expected MD5, the pinned copy's own check proves the source as well.
        source_md5 = _etag_md5(src)
        if expected is not None and source_md5 is not None and source_md5 != expected:
            raise _Failed("the primary object differs from its manifest's MD5; not copied")
        want = expected or source_md5 or (await self.md5_of(self.primary, key, src)).md5
        existing = await self.head(self.config.vault_bucket, key, self._vault_owner)
        if existing is not None:
            found = await self.md5_of(self.vault, key, existing)
            if found.md5 == want:
                return await self._entry(key, existing, found, want), False
            until = existing.get("ObjectLockRetainUntilDate")
            if until is not None and until > self.now:
                raise _Failed(
                    "conflict: a different object is locked under this key until "
                    f"{until.isoformat()}; not overwritten",
                    conflict=True,
                )
        # Checked is the version this copy wrote, whatever else lands on the key.
        version_id = await self._copy(key, src)
        copy = await self.head(self.config.vault_bucket, key, self._vault_owner, version_id)
        if copy is None:
            raise _Failed("the copy is not in the vault after CopyObject")
        found = await self.md5_of(self.vault, key, copy)
        if found.md5 != want:
            raise _Failed("the copy's MD5 differs from the source's (corrupted copy)")
        return await self._entry(key, copy, found, want), True

    async def _entry(
        self, key: str, head: Mapping[str, Any], found: VerifiedMd5, md5: str
    ) -> VaultObject:
        until = head.get("ObjectLockRetainUntilDate")
        # An object locked by an earlier run keeps its date (reruns never extend it);
        # one without retention (a multipart copy on some S3 emulations) is locked now.
        if until is None or until <= self.now:
            until = await self._lock_version(key, head.get("VersionId"))
        return VaultObject(
            key=key,
            size=int(head.get("ContentLength", 0)),
            md5=md5,
            sha256=head.get("ChecksumSHA256"),
            version_id=head.get("VersionId"),
            retain_until=until,
            verified_by=found.how,
        )

    async def _lock_version(self, key: str, version_id: str | None) -> dt.datetime:
        """Lock a verified object that carries no (or too short a) retention."""
        try:
            await self.s3.put_object_retention(
                Bucket=self.config.vault_bucket,
                Key=key,
                **({"VersionId": version_id} if version_id else {}),
                Retention={"Mode": self.config.lock_mode, "RetainUntilDate": self.retain_until},
                **self._vault_owner,
            )
        except ClientError as exc:
            raise _Failed(_refusal(exc, "PutObjectRetention")) from exc
        return self.retain_until

    async def _copy(self, key: str, src: Mapping[str, Any]) -> str | None:
        """Copy ``key`` as ``src`` describes it; the new version's id (versioned vault)."""
        source = {"Bucket": self.config.bucket, "Key": key}
        if src.get("VersionId"):
            source["VersionId"] = str(src["VersionId"])
        common = {
            "Bucket": self.config.vault_bucket,
            "Key": key,
            "ChecksumAlgorithm": CHECKSUM_ALGORITHM,
            **self._lock,
            **self._vault_owner,
            **self._kms,
        }
        pinned = {
            "CopySource": source,
            "CopySourceIfMatch": src["ETag"],
            **(
                {"ExpectedSourceBucketOwner": o} if (o := self.config.expected_bucket_owner) else {}
            ),
        }
        size = int(src.get("ContentLength", 0))
        try:
            if size <= self.multipart_threshold:
                resp = await self.s3.copy_object(**common, **pinned, MetadataDirective="COPY")
            else:
                resp = await self._copy_parts(key, size, common, pinned)
        except ClientError as exc:
            raise _Failed(_refusal(exc, "CopyObject")) from exc
        except (BotoCoreError, OSError) as exc:
            raise _Failed(f"CopyObject failed ({type(exc).__name__})") from exc
        version = resp.get("VersionId")
        return str(version) if version else None

    async def _copy_parts(
        self, key: str, size: int, common: dict[str, Any], pinned: dict[str, Any]
    ) -> dict[str, Any]:
        upload = await self.s3.create_multipart_upload(**common)
        ids = {
            "Bucket": self.config.vault_bucket,
            "Key": key,
            "UploadId": upload["UploadId"],
            **self._vault_owner,
        }
        try:
            parts = []
            for number, start in enumerate(range(0, size, self.part_size), start=1):
                end = min(size, start + self.part_size) - 1
                resp = await self.s3.upload_part_copy(
                    **ids, **pinned, PartNumber=number, CopySourceRange=f"bytes={start}-{end}"
                )
                result = resp["CopyPartResult"]
                part = {"PartNumber": number, "ETag": result["ETag"]}
                if result.get("ChecksumSHA256"):
                    part["ChecksumSHA256"] = result["ChecksumSHA256"]
                parts.append(part)
            done: dict[str, Any] = await self.s3.complete_multipart_upload(
                **ids, MultipartUpload={"Parts": parts}
            )
            return done
        except BaseException:
            # Never leave billed parts behind; the next run starts the object over.
            try:
                await self.s3.abort_multipart_upload(**ids)
            except (ClientError, BotoCoreError, OSError):
                log.warning("could not abort a multipart copy", extra={"key": key})
            raise


@dataclass(frozen=True, slots=True)
class VerifiedMd5:
    md5: str
    how: Literal["etag", "read"]


class _Failed(Exception):
    def __init__(self, reason: str, *, conflict: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.conflict = conflict


def _checksum_header(s3: Any) -> None:
    """Send ``x-amz-sdk-checksum-algorithm`` with CopyObject too, as botocore does
    with PutObject: Object Lock wants a checksum header on every write with retention."""

    def add(params: dict[str, Any], **_: Any) -> None:
        headers = params.get("headers", {})
        algorithm = headers.get("x-amz-checksum-algorithm")
        if algorithm and "x-amz-sdk-checksum-algorithm" not in headers:
            headers["x-amz-sdk-checksum-algorithm"] = algorithm

    s3.meta.events.register(
        "before-call.s3.CopyObject", add, unique_id="ddb-backup-vault-checksum-header"
    )


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
    copier = _Copier(
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
        except _Failed as exc:
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


async def _load_state(primary: S3Storage, config: VaultConfig, date: dt.date) -> _VaultState:
    raw = await primary.get_bytes_or_none(vault_state_key(config.prefix, date))
    fresh = _VaultState(backup_date=date, vault_bucket=config.vault_bucket)
    if raw is None:
        return fresh
    try:
        state = _VaultState.model_validate_json(raw)
    except ValidationError:
        log.warning("vault state unreadable; starting over", extra={"date": date.isoformat()})
        return fresh
    # State of another vault (the setting changed) says nothing about this one.
    return state if state.vault_bucket == config.vault_bucket else fresh


async def _save_state(primary: S3Storage, config: VaultConfig, state: _VaultState) -> None:
    key = vault_state_key(config.prefix, state.backup_date)
    await primary.put_bytes(key, orjson.dumps(state.model_dump(mode="json")))


async def _write_manifest(copier: _Copier, manifest: VaultManifest) -> bool:
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


def _same_objects(a: VaultManifest, b: VaultManifest) -> bool:
    return [(o.key, o.md5) for o in a.objects] == [(o.key, o.md5) for o in b.objects]


# -- status ---------------------------------------------------------------------


@dataclass(slots=True)
class VaultDateStatus:
    """One date: is the vault copy complete and verified, and locked until when."""

    date: dt.date
    final_in_primary: bool
    in_vault: bool = False
    verified: bool = False
    locked_until: dt.datetime | None = None
    problems: list[str] = field(default_factory=list)

    def doc(self) -> dict[str, Any]:
        return {
            "date": self.date.isoformat(),
            "final_in_primary": self.final_in_primary,
            "in_vault": self.in_vault,
            "verified": self.verified,
            "locked_until": self.locked_until.isoformat() if self.locked_until else None,
            "problems": self.problems,
        }


async def verify_vault_copy(
    config: VaultConfig, clients: AwsClients, date: dt.date, *, now: dt.datetime | None = None
) -> VaultDateStatus:
    """Check a date's vault copy against its vault manifest: every object there,
    its MD5 (ETag) or S3's SHA-256 as recorded (read when neither proves it), locked."""
    when = now or dt.datetime.now(dt.UTC)
    copier = _Copier(
        config, clients, now=when, multipart_threshold=MULTIPART_THRESHOLD, part_size=PART_SIZE
    )
    status = VaultDateStatus(date=date, final_in_primary=False)
    raw = await copier.vault.get_bytes_or_none(vault_manifest_key(config.prefix, date))
    if raw is None:
        status.problems.append("no vault manifest (copy missing or not finished)")
        return status
    status.in_vault = True
    try:
        manifest = VaultManifest.model_validate_json(raw)
    except ValidationError:
        status.problems.append("vault manifest is invalid")
        return status

    async def check(obj: VaultObject) -> None:
        head = await copier.head(config.vault_bucket, obj.key, copier._vault_owner)
        if head is None:
            status.problems.append(f"{obj.key}: missing from the vault")
            return
        sha_ok = obj.sha256 is not None and head.get("ChecksumSHA256") == obj.sha256
        md5 = _etag_md5(head)
        if md5 is None and not sha_ok:
            md5 = await _read_md5(copier.vault, obj.key, ObjectPin(etag=head.get("ETag")))
        if (md5 is not None and md5 != obj.md5) or (md5 is None and not sha_ok):
            status.problems.append(f"{obj.key}: checksum differs from the vault manifest")
        until = head.get("ObjectLockRetainUntilDate")
        if until is None or until <= when:
            status.problems.append(f"{obj.key}: not locked")

    await run_workers(manifest.objects, check, concurrency=COPY_CONCURRENCY)
    status.problems.sort()
    status.verified = not status.problems
    status.locked_until = manifest.locked_until
    return status


async def vault_status(
    config: VaultConfig, clients: AwsClients, *, now: dt.datetime | None = None
) -> list[VaultDateStatus]:
    """Every final date of the primary and every date in the vault, newest first."""
    primary = S3Storage(clients.s3, config.bucket, expected_owner=config.expected_bucket_owner)
    vault = S3Storage(clients.s3, config.vault_bucket, expected_owner=config.vault_bucket_owner)
    try:
        final = {e.date for e in await list_backups(primary, config.prefix) if e.manifest}
    except DdbBackupError as exc:
        # A primary that is gone still leaves the vault to report on.
        log.warning("primary bucket not listed", extra={"error": str(exc)})
        final = set()
    in_vault = {e.date for e in await list_backups(vault, config.prefix) if e.manifest}
    out = []
    for date in sorted(final | in_vault, reverse=True):
        status = await verify_vault_copy(config, clients, date, now=now)
        status.final_in_primary = date in final
        out.append(status)
    return out


async def latest_final_date(config: VaultConfig, clients: AwsClients) -> dt.date:
    """The newest date of the primary whose manifest is final."""
    primary = S3Storage(clients.s3, config.bucket, expected_owner=config.expected_bucket_owner)
    for entry in await list_backups(primary, config.prefix):
        if entry.manifest is not None:
            return entry.date
    raise BackupNotFoundError(f"no final backup under s3://{config.bucket}/{config.prefix}/")
