"""The vault manifest (what a finished copy holds) and the resume state kept in the primary."""

from __future__ import annotations

import datetime as dt
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ddb_backup.keys import date_prefix
from ddb_backup.log import get_logger
from ddb_backup.storage import S3Storage
from ddb_backup.vault.config import LockMode, VaultConfig

log = get_logger("ddb_backup.vault")


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


def vault_manifest_key(prefix: str, date: dt.date) -> str:
    return f"{date_prefix(prefix, date)}/vault-manifest.json"


def vault_state_key(prefix: str, date: dt.date) -> str:
    return f"{date_prefix(prefix, date)}/_vault/state.json"


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


def _same_objects(a: VaultManifest, b: VaultManifest) -> bool:
    return [(o.key, o.md5) for o in a.objects] == [(o.key, o.md5) for o in b.objects]
