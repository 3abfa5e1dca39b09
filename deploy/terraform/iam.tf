# Least privilege: every statement names the ARNs it needs. The only "*" resources are
# actions that support no resource-level permission at all (dynamodb:ListExports,
# X-Ray's segment upload, CloudWatch Logs' vended log delivery for Step Functions).
# Neither function role may delete an object.

data "aws_iam_policy_document" "lambda_trust" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

# ---------------------------------------------------------------------------
# Backup role: export, read back, write the manifest. No s3:DeleteObject.
# ---------------------------------------------------------------------------

data "aws_iam_policy_document" "backup" {
  statement {
    sid = "DescribeAndExportTables"
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
    # The export itself writes with the caller's permissions (PutObject, PutObjectAcl,
    # AbortMultipartUpload); the function reads every file back and writes the manifest.
    sid = "WriteAndReadBackups"
    actions = [
      "s3:PutObject",
      "s3:PutObjectAcl",
      "s3:GetObject",
      "s3:AbortMultipartUpload",
    ]
    resources = [local.exports_arn]
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

module "backup_role" {
  source = "./modules/function_role"

  context            = local.module_context
  name               = "backup"
  assume_role_policy = data.aws_iam_policy_document.lambda_trust.json
  policy_json        = data.aws_iam_policy_document.backup.json
  log_group_arns     = [aws_cloudwatch_log_group.lambda["backup"].arn]
}

# ---------------------------------------------------------------------------
# Restore role (restore, plan and finalize functions): read the backups, write the
# target tables, and write only below <prefix>/_restore/ (checkpoints, plans,
# dead letters).
# ---------------------------------------------------------------------------

data "aws_iam_policy_document" "restore" {
  statement {
    sid = "WriteTargetTables"
    actions = concat(
      ["dynamodb:DescribeTable", "dynamodb:Scan", "dynamodb:BatchWriteItem"],
      var.allow_create_missing_tables ? ["dynamodb:CreateTable"] : [],
    )
    resources = local.restore_table_arns
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
    # Single-part PUTs only (ddb_backup/storage/s3.py): no multipart upload to abort.
    sid       = "WriteCheckpointsAndDeadLetters"
    actions   = ["s3:PutObject"]
    resources = [local.restore_arn]
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

module "restore_role" {
  source = "./modules/function_role"

  context            = local.module_context
  name               = "restore"
  assume_role_policy = data.aws_iam_policy_document.lambda_trust.json
  policy_json        = data.aws_iam_policy_document.restore.json
  log_group_arns     = [for fn in ["restore", "restore-plan", "restore-finalize"] : aws_cloudwatch_log_group.lambda[fn].arn]
}

# ---------------------------------------------------------------------------
# Step Functions: one role per state machine.
# ---------------------------------------------------------------------------

data "aws_iam_policy_document" "states_trust" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["states.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

# Vended log delivery and X-Ray support no resource-level permission (AWS documents
# "*" for both in the Step Functions logging and tracing guides).
data "aws_iam_policy_document" "states_observability" {
  statement {
    sid = "LogDelivery"
    actions = [
      "logs:CreateLogDelivery",
      "logs:GetLogDelivery",
      "logs:UpdateLogDelivery",
      "logs:DeleteLogDelivery",
      "logs:ListLogDeliveries",
      "logs:PutResourcePolicy",
      "logs:DescribeResourcePolicies",
      "logs:DescribeLogGroups",
    ]
    resources = ["*"]
  }

  statement {
    sid = "Tracing"
    actions = [
      "xray:PutTraceSegments",
      "xray:PutTelemetryRecords",
      "xray:GetSamplingRules",
      "xray:GetSamplingTargets",
    ]
    resources = ["*"]
  }

  dynamic "statement" {
    for_each = var.infra_kms_key_arn == null ? [] : [var.infra_kms_key_arn]
    content {
      sid       = "InfraKey"
      actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
      resources = [statement.value]
    }
  }
}

resource "aws_iam_role" "backup_states" {
  name               = "${local.name}-backup-states"
  assume_role_policy = data.aws_iam_policy_document.states_trust.json
  tags               = local.tags
}

data "aws_iam_policy_document" "backup_states" {
  source_policy_documents = [data.aws_iam_policy_document.states_observability.json]

  statement {
    sid     = "InvokeBackup"
    actions = ["lambda:InvokeFunction"]
    resources = [
      aws_lambda_function.this["backup"].arn,
      "${aws_lambda_function.this["backup"].arn}:*",
    ]
  }
}

resource "aws_iam_role_policy" "backup_states" {
  name   = "backup-states"
  role   = aws_iam_role.backup_states.id
  policy = data.aws_iam_policy_document.backup_states.json
}

resource "aws_iam_role" "restore_states" {
  name               = "${local.name}-restore-states"
  assume_role_policy = data.aws_iam_policy_document.states_trust.json
  tags               = local.tags
}

data "aws_iam_policy_document" "restore_states" {
  source_policy_documents = [data.aws_iam_policy_document.states_observability.json]

  statement {
    sid     = "InvokeRestoreFunctions"
    actions = ["lambda:InvokeFunction"]
    resources = flatten([
      for fn in ["restore", "restore-plan", "restore-finalize"] : [
        aws_lambda_function.this[fn].arn,
        "${aws_lambda_function.this[fn].arn}:*",
      ]
    ])
  }

  # The Distributed Map runs every shard as a child execution of this state machine.
  # Its ARN is built from the name, so the role does not depend on the state machine.
  statement {
    sid       = "DistributedMapStart"
    actions   = ["states:StartExecution"]
    resources = [local.restore_state_machine_arn]
  }

  statement {
    sid       = "DistributedMapChildren"
    actions   = ["states:DescribeExecution", "states:StopExecution"]
    resources = ["${local.restore_execution_arn_prefix}/*"]
  }
}

resource "aws_iam_role_policy" "restore_states" {
  name   = "restore-states"
  role   = aws_iam_role.restore_states.id
  policy = data.aws_iam_policy_document.restore_states.json
}

# ---------------------------------------------------------------------------
# EventBridge Scheduler: may start the backup state machine, nothing else.
# ---------------------------------------------------------------------------

data "aws_iam_policy_document" "scheduler_trust" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "scheduler" {
  name               = "${local.name}-scheduler"
  assume_role_policy = data.aws_iam_policy_document.scheduler_trust.json
  tags               = local.tags
}

data "aws_iam_policy_document" "scheduler" {
  statement {
    sid       = "StartBackup"
    actions   = ["states:StartExecution"]
    resources = [aws_sfn_state_machine.backup.arn]
  }

  statement {
    sid       = "DeadLetters"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.failures.arn]
  }

  dynamic "statement" {
    for_each = var.infra_kms_key_arn == null ? [] : [var.infra_kms_key_arn]
    content {
      sid       = "InfraKey"
      actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
      resources = [statement.value]
    }
  }
}

resource "aws_iam_role_policy" "scheduler" {
  name   = "scheduler"
  role   = aws_iam_role.scheduler.id
  policy = data.aws_iam_policy_document.scheduler.json
}
