# Vault copies (optional: var.vault_bucket_name): every hour the vault function copies
# the newest final backup, verified, to an Object Lock bucket in another account
# (handlers/vault.py; the bucket is the module in ./vault). The role can write and read
# the vault but holds no delete and no bypass of retention; the vault's bucket policy
# denies both to everyone in any case.

locals {
  vault_enabled    = var.vault_bucket_name != null
  vault_bucket     = coalesce(var.vault_bucket_name, "disabled")
  vault_bucket_arn = "arn:${local.partition}:s3:::${local.vault_bucket}"
  vault_arn        = "${local.vault_bucket_arn}/${var.exports_prefix}/*"
  # The copy's resume state, next to each backup date in the primary bucket.
  vault_state_arn = "${local.bucket_arn}/${var.exports_prefix}/*/_vault/*"

  vault_functions = {
    for name, fn in {
      vault = {
        handler  = "handlers.vault.handler"
        role_arn = local.vault_enabled ? module.vault_role[0].arn : ""
        memory   = var.backup_memory_mb
        timeout  = 900
        reserved = 1
        env = merge(
          local.common_env,
          {
            VAULT_BUCKET         = local.vault_bucket
            VAULT_RETENTION_DAYS = tostring(var.vault_retention_days)
            VAULT_LOCK_MODE      = var.vault_lock_mode
          },
          var.vault_bucket_owner_account_id == null ? {} : { VAULT_BUCKET_OWNER = var.vault_bucket_owner_account_id },
          var.vault_kms_key_arn == null ? {} : { VAULT_KMS_KEY_ID = var.vault_kms_key_arn },
        )
      }
    } : name => fn if local.vault_enabled
  }
  # Every function main.tf deploys.
  lambda_functions = merge(local.functions, local.vault_functions)
}

data "aws_iam_policy_document" "vault" {
  statement {
    sid       = "ListBackupPrefix"
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [var.exports_prefix, "${var.exports_prefix}/*"]
    }
  }

  statement {
    # Source of the copies (CopyObject reads with the caller's permissions; a
    # versioned primary is copied by VersionId).
    sid       = "ReadBackups"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = [local.exports_arn]
  }

  statement {
    sid       = "WriteCopyState"
    actions   = ["s3:PutObject"]
    resources = [local.vault_state_arn]
  }

  statement {
    sid       = "ListVaultPrefix"
    actions   = ["s3:ListBucket"]
    resources = [local.vault_bucket_arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [var.exports_prefix, "${var.exports_prefix}/*"]
    }
  }

  statement {
    # Write, read back and lock the copies. PutObjectRetention without
    # s3:BypassGovernanceRetention can only set or extend a retention, never shorten it.
    sid = "CopyToVault"
    actions = [
      "s3:PutObject",
      "s3:GetObject",
      "s3:GetObjectVersion",
      "s3:GetObjectRetention",
      "s3:PutObjectRetention",
      "s3:AbortMultipartUpload",
    ]
    resources = [local.vault_arn]
  }

  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : [var.kms_key_arn]
    content {
      sid       = "BackupKey"
      actions   = ["kms:Decrypt", "kms:DescribeKey"]
      resources = [statement.value]
    }
  }

  dynamic "statement" {
    for_each = var.vault_kms_key_arn == null ? [] : [var.vault_kms_key_arn]
    content {
      sid       = "VaultKey"
      actions   = ["kms:GenerateDataKey", "kms:Decrypt", "kms:DescribeKey"]
      resources = [statement.value]
    }
  }
}

module "vault_role" {
  source = "./modules/function_role"
  count  = local.vault_enabled ? 1 : 0

  context            = local.module_context
  name               = "vault"
  assume_role_policy = data.aws_iam_policy_document.lambda_trust.json
  policy_json        = data.aws_iam_policy_document.vault.json
  log_group_arns     = [aws_cloudwatch_log_group.lambda["vault"].arn]
}

# ---------------------------------------------------------------------------
# Schedule: {} copies the newest final backup; a copy cut short (202) resumes at the
# next invocation, a finished one is only re-checked.
# ---------------------------------------------------------------------------

module "vault_schedule" {
  source = "./modules/function_schedule"
  count  = local.vault_enabled ? 1 : 0

  context                      = local.module_context
  name                         = "vault"
  assume_role_policy           = data.aws_iam_policy_document.scheduler_trust.json
  function_arn                 = aws_lambda_function.this["vault"].arn
  description                  = "Copy the newest final backup to the vault ${local.vault_bucket}"
  schedule_expression          = var.vault_schedule_expression
  maximum_event_age_in_seconds = 900
  maximum_retry_attempts       = 2
}

# The function reports final_backups_without_vault_copy = 1 on every invocation whose
# copy is not complete and verified (a conflict, a refusal, a copy still going).
resource "aws_cloudwatch_metric_alarm" "vault_copy_missing" {
  count               = local.vault_enabled ? 1 : 0
  alarm_name          = "${local.name}-vault-copy-missing"
  alarm_description   = "ddb-backup vault: the newest final backup has had no complete, verified vault copy for ${var.vault_alarm_delay_hours} h (or the function stopped reporting). The response names each failed key."
  namespace           = "DdbBackup"
  metric_name         = "final_backups_without_vault_copy"
  dimensions          = { Environment = var.environment, Function = "vault" }
  statistic           = "Minimum"
  period              = 3600
  evaluation_periods  = var.vault_alarm_delay_hours
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "breaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.tags
}
