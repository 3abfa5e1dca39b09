"""Copying one object to the vault server-side, locked, and proving its MD5."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from ddb_backup.aws import AwsClients, client_error_message, error_code, raise_aws_error
from ddb_backup.log import get_logger
from ddb_backup.storage import ObjectPin, S3Storage
from ddb_backup.vault.config import VaultConfig
from ddb_backup.vault.manifest import VaultObject

log = get_logger("ddb_backup.vault")


#: Above this, CopyObject is refused by S3: the object is copied in parts.
MULTIPART_THRESHOLD = 5 * 1024**3
#: Part size of a multipart copy (S3 allows 5 MB to 5 GB, at most 10,000 parts).
PART_SIZE = 512 * 1024**2
#: Checksum S3 computes and stores for every write (its header is on every write).
CHECKSUM_ALGORITHM = "SHA256"
#: Objects copied at once.
COPY_CONCURRENCY = 8


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


def locked(head: Mapping[str, Any], when: dt.datetime) -> bool:
    """Is the object ``head`` describes under retention after ``when``?"""
    until = head.get("ObjectLockRetainUntilDate")
    return until is not None and bool(until > when)


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


class Copier:
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
        """Copy (or find) one object; ``(entry, copied)``, or raise :class:`CopyFailed`."""
        src = await self.head(self.config.bucket, key, self._src_owner)
        if src is None:
            raise CopyFailed("the object is gone from the primary bucket")
        # The source is read only when nothing else says what its MD5 is: with an
        # expected MD5, the pinned copy's own check proves the source as well.
        source_md5 = _etag_md5(src)
        if expected is not None and source_md5 is not None and source_md5 != expected:
            raise CopyFailed("the primary object differs from its manifest's MD5; not copied")
        want = expected or source_md5 or (await self.md5_of(self.primary, key, src)).md5
        existing = await self.head(self.config.vault_bucket, key, self._vault_owner)
        if existing is not None:
            found = await self.md5_of(self.vault, key, existing)
            if found.md5 == want:
                return await self._entry(key, existing, found, want), False
            until = existing.get("ObjectLockRetainUntilDate")
            if until is not None and until > self.now:
                raise CopyFailed(
                    "conflict: a different object is locked under this key until "
                    f"{until.isoformat()}; not overwritten",
                    conflict=True,
                )
        # Checked is the version this copy wrote, whatever else lands on the key.
        version_id = await self._copy(key, src)
        copy = await self.head(self.config.vault_bucket, key, self._vault_owner, version_id)
        if copy is None:
            raise CopyFailed("the copy is not in the vault after CopyObject")
        found = await self.md5_of(self.vault, key, copy)
        if found.md5 != want:
            raise CopyFailed("the copy's MD5 differs from the source's (corrupted copy)")
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
            raise CopyFailed(_refusal(exc, "PutObjectRetention")) from exc
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
            raise CopyFailed(_refusal(exc, "CopyObject")) from exc
        except (BotoCoreError, OSError) as exc:
            raise CopyFailed(f"CopyObject failed ({type(exc).__name__})") from exc
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


class CopyFailed(Exception):
    """One object not copied (``conflict``: a different, locked object holds its key)."""

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
