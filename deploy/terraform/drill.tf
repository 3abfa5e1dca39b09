# The weekly restore drill (handlers/drill.py, docs/drills.md): restores the latest
# backup into scratch tables named ddb-backup-drill-<id>-<n>, tagged
# ddb-backup:drill=true, compares count and content digest with the manifest, records
# <prefix>/<date>/_drills/<id>.json and deletes the scratch tables.

locals {
  # Must match ddb_backup.drill.DRILL_PREFIX: the role can create, write, tag and
  # delete only tables with this prefix; the source tables are never named.
  drill_table_arn = "arn:${local.partition}:dynamodb:${local.region}:${local.account_id}:table/ddb-backup-drill-*"
  drills_arn      = "${local.bucket_arn}/${var.exports_prefix}/*/_drills/*"
}

# ---------------------------------------------------------------------------
# Role: read the backups; create, fill, scan, tag and delete drill tables only;
# write the restore's leases/checkpoints below _restore/ and the drill records.
# ---------------------------------------------------------------------------

data "aws_iam_policy_document" "drill" {
  statement {
    # CreateTable with Tags needs TagResource too (AWS's tagging documentation).
    sid = "DrillTablesOnly"
    actions = [
      "dynamodb:CreateTable",
      "dynamodb:TagResource",
      "dynamodb:ListTagsOfResource",
      "dynamodb:DescribeTable",
      "dynamodb:BatchWriteItem",
      "dynamodb:Scan",
      "dynamodb:DeleteTable",
    ]
    resources = [local.drill_table_arn]
  }

  statement {
    # ListTables supports no resource-level permission; it finds drill leftovers.
    sid       = "FindLeftovers"
    actions   = ["dynamodb:ListTables"]
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
    sid       = "ReadBackups"
    actions   = ["s3:GetObject"]
    resources = [local.exports_arn]
  }

  statement {
    # Single-part PUTs only: the restore's leases and checkpoints, the drill's record.
    sid       = "WriteRestoreStateAndDrillRecords"
    actions   = ["s3:PutObject"]
    resources = [local.restore_arn, local.drills_arn]
  }

  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : [var.kms_key_arn]
    content {
      sid       = "BackupKey"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
      resources = [statement.value]
    }
  }
}

module "drill_role" {
  source = "./modules/function_role"

  context            = local.module_context
  name               = "drill"
  assume_role_policy = data.aws_iam_policy_document.lambda_trust.json
  policy_json        = data.aws_iam_policy_document.drill.json
  log_group_arns     = [aws_cloudwatch_log_group.lambda["drill"].arn]
}

# ---------------------------------------------------------------------------
# Schedule: EventBridge Scheduler invokes the function directly with {}.
# ---------------------------------------------------------------------------

module "drill_schedule" {
  source = "./modules/function_schedule"

  context                      = local.module_context
  name                         = "drill"
  assume_role_policy           = data.aws_iam_policy_document.scheduler_trust.json
  function_arn                 = aws_lambda_function.this["drill"].arn
  description                  = "Weekly restore drill of the latest backup into scratch tables"
  enabled                      = var.drill_schedule_enabled
  schedule_expression          = var.drill_schedule_expression
  schedule_timezone            = var.schedule_timezone
  maximum_event_age_in_seconds = 3600
  maximum_retry_attempts       = 0
}

# ---------------------------------------------------------------------------
# Alarms: a drill failed (or could not run), and no drill passed for too long.
# ---------------------------------------------------------------------------

resource "aws_cloudwatch_metric_alarm" "drill_failed" {
  alarm_name          = "${local.name}-drill-failed"
  alarm_description   = "ddb-backup drill: a restore drill failed, was cut off or could not run (its record under <prefix>/<date>/_drills/ names the table and the first difference)."
  namespace           = "DdbBackup"
  metric_name         = "drills_failed"
  dimensions          = { Environment = var.environment, Function = "drill" }
  statistic           = "Sum"
  period              = 3600
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.tags
}

# No passed drill in drill_stale_after_days consecutive days (every daily datapoint
# missing or 0): the schedule stopped, or every drill failed.
resource "aws_cloudwatch_metric_alarm" "drill_stale" {
  count = var.drill_schedule_enabled ? 1 : 0

  alarm_name          = "${local.name}-drill-stale"
  alarm_description   = "ddb-backup drill: no restore drill passed in the last ${var.drill_stale_after_days} days."
  namespace           = "DdbBackup"
  metric_name         = "drills_passed"
  dimensions          = { Environment = var.environment, Function = "drill" }
  statistic           = "Maximum"
  period              = 86400
  evaluation_periods  = var.drill_stale_after_days
  datapoints_to_alarm = var.drill_stale_after_days
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  treat_missing_data  = "breaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.tags
}
