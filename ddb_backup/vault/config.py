"""The vault's settings: the primary bucket and the Object Lock vault it is copied to."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import Field

from ddb_backup.config import DEFAULT_PREFIX, AccountId, Bucket, RestoreConfig, _build, _Config
from ddb_backup.config import _required as required_env

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
