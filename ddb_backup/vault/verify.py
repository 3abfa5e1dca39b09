"""Checking a date's vault copy against its vault manifest."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ddb_backup.aws import AwsClients
from ddb_backup.concurrency import run_workers
from ddb_backup.storage import ObjectPin
from ddb_backup.vault.config import VaultConfig
from ddb_backup.vault.copy_object import (
    COPY_CONCURRENCY,
    MULTIPART_THRESHOLD,
    PART_SIZE,
    Copier,
    _etag_md5,
    _read_md5,
    locked,
)
from ddb_backup.vault.manifest import (
    VaultManifest,
    VaultObject,
    vault_manifest_key,
)


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
    copier = Copier(
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
        if not locked(head, when):
            status.problems.append(f"{obj.key}: not locked")

    await run_workers(manifest.objects, check, concurrency=COPY_CONCURRENCY)
    status.problems.sort()
    status.verified = not status.problems
    status.locked_until = manifest.locked_until
    return status
