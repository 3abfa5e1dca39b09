# Incremental exports for point-in-time recovery: every incremental_interval_minutes,
# the incremental function exports, verifies and chains each table's next window
# (handlers/incremental.py). Windows are kept at least as long as the full backup they
# build on: a chain starts from a verified full backup and rolls to a new chain from
# each newer one (daily), so every object of a chain is written after its base; both
# live under var.exports_prefix, and the one age-based lifecycle rule (s3.tf) expires
# an object backup_retention_days after its creation, i.e. a chain's objects at the
# same midnight as its base or later. The function itself deletes nothing. Do not add
# a shorter rule or a transition on <prefix>/incremental/ (tests/test_incremental_terraform.py).

locals {
  incremental_arn     = "${local.bucket_arn}/${var.exports_prefix}/incremental/*"
  chain_lag_threshold = coalesce(var.chain_lag_alarm_seconds, var.incremental_interval_minutes * 120 + 1800)
}

# ---------------------------------------------------------------------------
# Role: export and describe the tables' windows, read the daily manifests, write
# only below <prefix>/incremental/ (exports, chain records, run state).
# ---------------------------------------------------------------------------

data "aws_iam_policy_document" "incremental" {
  statement {
    sid = "DescribeAndExportTables"
    # DescribeTimeToLive (read-only): the export module the round shares with the daily
    # run reads TTL with the schema; granted so the role holds what its code can call.
    actions = [
      "dynamodb:DescribeTable",
      "dynamodb:DescribeContinuousBackups",
      "dynamodb:DescribeTimeToLive",
      "dynamodb:ExportTableToPointInTime",
    ]
    resources = local.backup_table_arns
  }

  statement {
    sid       = "DescribeExports"
    actions   = ["dynamodb:DescribeExport"]
    resources = [for arn in local.backup_table_arns : "${arn}/export/*"]
  }

  statement {
    # ListExports supports no resource-level permission; it lists export metadata only.
    sid       = "ListExports"
    actions   = ["dynamodb:ListExports"]
    resources = ["*"]
  }

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
    # The daily manifests say where a chain starts.
    sid       = "ReadBackups"
    actions   = ["s3:GetObject"]
    resources = [local.exports_arn]
  }

  statement {
    # The export writes with the caller's permissions; the function writes the chain
    # records and run state next to the windows.
    sid       = "WriteWindows"
    actions   = ["s3:PutObject", "s3:PutObjectAcl", "s3:AbortMultipartUpload"]
    resources = [local.incremental_arn]
  }

  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : [var.kms_key_arn]
    content {
      sid       = "BackupKey"
      actions   = ["kms:GenerateDataKey", "kms:Decrypt", "kms:DescribeKey"]
      resources = [statement.value]
    }
  }
}

module "incremental_role" {
  source = "./modules/function_role"

  context            = local.module_context
  name               = "incremental"
  assume_role_policy = data.aws_iam_policy_document.lambda_trust.json
  policy_json        = data.aws_iam_policy_document.incremental.json
  log_group_arns     = [aws_cloudwatch_log_group.lambda["incremental"].arn]
}

# ---------------------------------------------------------------------------
# Schedule: EventBridge Scheduler invokes the function directly with {} (one round
# per invocation; a round cut short answers 202 and the next one resumes it).
# ---------------------------------------------------------------------------

module "incremental_schedule" {
  source = "./modules/function_schedule"

  context                      = local.module_context
  name                         = "incremental"
  assume_role_policy           = data.aws_iam_policy_document.scheduler_trust.json
  function_arn                 = aws_lambda_function.this["incremental"].arn
  description                  = "Incremental exports of ${join(", ", var.dynamodb_tables)} every ${var.incremental_interval_minutes} minutes"
  enabled                      = var.incremental_schedule_enabled
  schedule_expression          = "rate(${var.incremental_interval_minutes} minutes)"
  maximum_event_age_in_seconds = 900
  maximum_retry_attempts       = 2
}

# ---------------------------------------------------------------------------
# Alarms on the function's EMF metrics (namespace DdbBackup, dimensions
# {Environment, Function = "incremental"}).
# ---------------------------------------------------------------------------

resource "aws_cloudwatch_metric_alarm" "chain_lag" {
  alarm_name          = "${local.name}-incremental-chain-lag"
  alarm_description   = "ddb-backup incremental: a table's newest verified window ended more than ${local.chain_lag_threshold} s ago, or no round reported (point-in-time recovery falls behind)."
  namespace           = "DdbBackup"
  metric_name         = "max_chain_lag_seconds"
  dimensions          = { Environment = var.environment, Function = "incremental" }
  statistic           = "Maximum"
  period              = var.incremental_interval_minutes * 60
  evaluation_periods  = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = local.chain_lag_threshold
  treat_missing_data  = "breaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.tags
}

locals {
  # Any of these > 0 is an alarm: a chain broke, a window failed, a table has no chain.
  incremental_alarms = {
    incremental-chain-breaks         = "chain_breaks"
    incremental-window-failures      = "window_failures"
    incremental-tables-without-chain = "tables_without_chain"
  }
}

resource "aws_cloudwatch_metric_alarm" "incremental" {
  for_each = local.incremental_alarms

  alarm_name          = "${local.name}-${each.key}"
  alarm_description   = "ddb-backup incremental: ${each.value} > 0 (the function's JSON logs and response name the table and reason)."
  namespace           = "DdbBackup"
  metric_name         = each.value
  dimensions          = { Environment = var.environment, Function = "incremental" }
  statistic           = "Sum"
  period              = var.incremental_interval_minutes * 60
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.tags
}
