"""The vault's Terraform: the function in the backup account (deploy/terraform/vault.tf),
and the Object Lock bucket in the vault account (deploy/terraform/vault/)."""

from __future__ import annotations

import pytest

from ddb_backup.vault import VaultConfig
from deploy.checks.hcl import unquote
from tests.deploy.terraform_support import TERRAFORM, Module, actions_of, resources_of

DELETES_AND_BYPASS = {"s3:DeleteObject", "s3:DeleteObjectVersion", "s3:BypassGovernanceRetention"}


@pytest.fixture(scope="module")
def tf() -> Module:
    return Module(TERRAFORM)


@pytest.fixture(scope="module")
def vault_tf() -> Module:
    return Module(TERRAFORM / "vault")


def test_vault_function_only_when_a_vault_bucket_is_given(tf: Module) -> None:
    assert tf.variables["vault_bucket_name"]["default"] is None
    assert unquote(tf.locals["vault_enabled"]) == "${var.vault_bucket_name != null}"
    assert "if local.vault_enabled" in tf.locals["vault_functions"]
    assert tf.locals["lambda_functions"] == "${merge(local.functions, local.vault_functions)}"
    only_with_vault = "${local.vault_enabled ? 1 : 0}"
    assert tf.resource("aws_cloudwatch_metric_alarm", "vault_copy_missing")["count"] == (
        only_with_vault
    )
    for call in ("vault_role", "vault_schedule"):  # role, policy, schedule and its role
        assert tf.modules[call]["count"] == only_with_vault


def test_vault_environment_is_what_the_config_reads(tf: Module) -> None:
    env = tf.locals["vault_functions"]
    for var in ("VAULT_BUCKET", "VAULT_RETENTION_DAYS", "VAULT_LOCK_MODE"):
        assert f"{var} " in env
    assert "VAULT_BUCKET_OWNER = var.vault_bucket_owner_account_id" in env
    assert "VAULT_KMS_KEY_ID = var.vault_kms_key_arn" in env
    assert "handlers.vault.handler" in env
    config = VaultConfig.from_environ(
        {
            "BACKUP_BUCKET": "ddb-backup-test-bucket",
            "ENVIRONMENT": "prod",
            "VAULT_BUCKET": "ddb-backup-vault",
            "VAULT_BUCKET_OWNER": "210987654321",
            "VAULT_RETENTION_DAYS": str(tf.variables["vault_retention_days"]["default"]),
            "VAULT_LOCK_MODE": unquote(tf.variables["vault_lock_mode"]["default"]),
        }
    )
    assert (config.retention_days, config.lock_mode) == (35, "COMPLIANCE")


def test_vault_role_cannot_delete_or_bypass_retention(tf: Module) -> None:
    actions = {a for st in tf.policy_statements("vault") for a in actions_of(st)}
    assert not any(a.startswith("s3:Delete") for a in actions)
    assert not actions & DELETES_AND_BYPASS
    writes = [st for st in tf.policy_statements("vault") if "s3:PutObject" in actions_of(st)]
    assert sorted(resources_of(st)[0] for st in writes) == [
        "${local.vault_arn}",
        "${local.vault_state_arn}",
    ]
    assert unquote(tf.locals["vault_state_arn"]) == (
        "${local.bucket_arn}/${var.exports_prefix}/*/_vault/*"
    )


def test_alarm_watches_the_metric_the_handler_emits(tf: Module) -> None:
    alarm = tf.resource("aws_cloudwatch_metric_alarm", "vault_copy_missing")
    assert unquote(alarm["metric_name"]) == "final_backups_without_vault_copy"
    assert {k: unquote(v) for k, v in alarm["dimensions"].items()} == {
        "Environment": "${var.environment}",
        "Function": "vault",
    }
    assert unquote(alarm["treat_missing_data"]) == "breaching"
    assert alarm["evaluation_periods"] == "${var.vault_alarm_delay_hours}"


def test_vault_bucket_is_locked_versioned_private_and_encrypted(vault_tf: Module) -> None:
    assert vault_tf.resource("aws_s3_bucket", "vault")["object_lock_enabled"] is True
    versioning = vault_tf.resource("aws_s3_bucket_versioning", "vault")
    assert unquote(versioning["versioning_configuration"][0]["status"]) == "Enabled"
    lock = vault_tf.resource("aws_s3_bucket_object_lock_configuration", "vault")
    retention = lock["rule"][0]["default_retention"][0]
    assert (retention["mode"], retention["days"]) == ("${var.lock_mode}", "${var.retention_days}")
    pab = vault_tf.resource("aws_s3_bucket_public_access_block", "vault")
    assert all(pab[k] is True for k in ("block_public_acls", "restrict_public_buckets"))
    sse = vault_tf.resource("aws_s3_bucket_server_side_encryption_configuration", "vault")
    default = sse["rule"][0]["apply_server_side_encryption_by_default"][0]
    assert default["kms_master_key_id"] == "${aws_kms_key.vault.arn}"


def test_vault_policy_denies_deletes_to_everyone_and_grants_no_delete(vault_tf: Module) -> None:
    statements = vault_tf.policy_statements("bucket")
    denies = [st for st in statements if unquote(st.get("effect", "Allow")) == "Deny"]
    deny_all = [st for st in denies if set(actions_of(st)) == DELETES_AND_BYPASS]
    assert len(deny_all) == 1
    (principals,) = deny_all[0]["principals"]
    assert unquote(principals["identifiers"]) == ["*"]
    assert "condition" not in deny_all[0]  # unconditional
    allowed = {
        a
        for st in statements
        if unquote(st.get("effect", "Allow")) == "Allow"
        for a in actions_of(st)
    }
    assert not allowed & DELETES_AND_BYPASS
    assert not any(a.startswith("s3:Delete") or a.endswith("*") for a in allowed)


def test_vault_expires_copies_only_after_their_retention(vault_tf: Module) -> None:
    lifecycle = vault_tf.resource("aws_s3_bucket_lifecycle_configuration", "vault")
    expiring = [r for r in lifecycle["rule"] if r.get("expiration")]
    (rule,) = expiring
    after = "${var.retention_days + var.expire_after_retention_days}"
    assert rule["expiration"][0]["days"] == after
    assert rule["noncurrent_version_expiration"][0]["noncurrent_days"] == after
    assert vault_tf.variables["expire_after_retention_days"]["default"] >= 0
