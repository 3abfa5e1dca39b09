# ddb-backup: the daily verified backup of DynamoDB tables on native export to S3,
# and the fan-out restore, as Lambda functions driven by Step Functions.
# The handler contract is in deploy/README.md.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  name       = "${var.name_prefix}-${var.environment}"
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  # .name is deprecated in provider 6 in favour of .region; .id works in both.
  region = data.aws_region.current.id

  tags = merge({ "project" = "ddb-backup", "environment" = var.environment }, var.tags)

  bucket_arn    = "arn:${local.partition}:s3:::${var.bucket_name}"
  bucket_owner  = coalesce(var.bucket_owner_account_id, local.account_id)
  exports_arn   = "${local.bucket_arn}/${var.exports_prefix}/*"
  restore_arn   = "${local.bucket_arn}/${var.exports_prefix}/_restore/*"
  zip_path      = coalesce(var.lambda_zip_path, "${path.module}/../../build/ddb-backup-lambda.zip")
  restore_table = var.restore_target_tables == null ? var.dynamodb_tables : var.restore_target_tables

  backup_table_arns = [
    for t in var.dynamodb_tables : "arn:${local.partition}:dynamodb:${local.region}:${local.account_id}:table/${t}"
  ]
  restore_table_arns = [
    for t in local.restore_table : "arn:${local.partition}:dynamodb:${local.region}:${local.account_id}:table/${t}"
  ]

  # What every function role and schedule shares (modules/function_role, function_schedule).
  module_context = {
    name_prefix        = local.name
    failures_queue_arn = aws_sqs_queue.failures.arn
    infra_kms_key_arn  = var.infra_kms_key_arn
    tags               = local.tags
  }

  common_env = {
    BACKUP_BUCKET       = var.bucket_name
    BACKUP_BUCKET_OWNER = local.bucket_owner
    ENVIRONMENT         = var.environment
    S3_EXPORTS_PREFIX   = var.exports_prefix
  }

  # The functions share one zip. plan and finalize are separate functions so the
  # state machine can give each its own memory and timeout.
  functions = {
    backup = {
      handler  = "handlers.backup.handler"
      role_arn = module.backup_role.arn
      memory   = var.backup_memory_mb
      timeout  = var.backup_timeout_seconds
      reserved = var.backup_reserved_concurrency
      env = merge(
        local.common_env,
        { DYNAMODB_TABLES = jsonencode(var.dynamodb_tables) },
        var.kms_key_arn == null ? {} : { EXPORT_KMS_KEY_ID = var.kms_key_arn },
      )
    }
    # Every incremental_interval_minutes: each table's next incremental window
    # (incremental.tf: role, schedule, alarms).
    incremental = {
      handler  = "handlers.incremental.handler"
      role_arn = module.incremental_role.arn
      memory   = var.backup_memory_mb
      timeout  = var.incremental_timeout_seconds
      reserved = -1
      env = merge(
        local.common_env,
        {
          DYNAMODB_TABLES              = jsonencode(var.dynamodb_tables)
          INCREMENTAL_INTERVAL_MINUTES = tostring(var.incremental_interval_minutes)
        },
        var.kms_key_arn == null ? {} : { EXPORT_KMS_KEY_ID = var.kms_key_arn },
      )
    }
    restore = {
      handler  = "handlers.restore.handler"
      role_arn = module.restore_role.arn
      memory   = var.restore_memory_mb
      timeout  = var.restore_timeout_seconds
      reserved = -1
      env      = local.common_env
    }
    restore-plan = {
      handler  = "handlers.restore.plan_handler"
      role_arn = module.restore_role.arn
      memory   = var.plan_memory_mb
      timeout  = var.plan_timeout_seconds
      reserved = -1
      env      = local.common_env
    }
    restore-finalize = {
      handler  = "handlers.restore.finalize_handler"
      role_arn = module.restore_role.arn
      memory   = var.finalize_memory_mb
      timeout  = var.finalize_timeout_seconds
      reserved = -1
      env      = local.common_env
    }
    # Weekly restore drill (drill.tf). One at a time: a drill's sweep deletes the
    # drill tables it finds.
    drill = {
      handler  = "handlers.drill.handler"
      role_arn = module.drill_role.arn
      memory   = var.restore_memory_mb
      timeout  = var.drill_timeout_seconds
      reserved = 1
      env      = local.common_env
    }
  }
}

resource "aws_cloudwatch_log_group" "lambda" {
  for_each = local.lambda_functions

  name              = "/aws/lambda/${local.name}-${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.infra_kms_key_arn
  tags              = local.tags
}

resource "aws_lambda_function" "this" {
  for_each = local.lambda_functions
  #checkov:skip=CKV_AWS_117:The functions only call AWS APIs (DynamoDB, S3); a VPC would add NAT or endpoints and no isolation that IAM does not already give.
  #checkov:skip=CKV_AWS_272:Code signing needs a Signer profile the deploying team owns; the zip is built reproducibly by deploy/build_lambda.py.
  #checkov:skip=CKV_AWS_116:Async failures go to the on-failure destination (aws_lambda_function_event_invoke_config.this), which carries the request and the error, unlike a DLQ.

  function_name                  = "${local.name}-${each.key}"
  description                    = "ddb-backup ${each.key} (${var.environment})"
  filename                       = local.zip_path
  source_code_hash               = filebase64sha256(local.zip_path)
  handler                        = each.value.handler
  runtime                        = var.lambda_runtime
  architectures                  = [var.lambda_architecture]
  role                           = each.value.role_arn
  memory_size                    = each.value.memory
  timeout                        = each.value.timeout
  reserved_concurrent_executions = each.value.reserved
  kms_key_arn                    = var.infra_kms_key_arn

  environment {
    variables = each.value.env
  }

  tracing_config {
    mode = "Active"
  }

  logging_config {
    log_format = "JSON"
    log_group  = aws_cloudwatch_log_group.lambda[each.key].name
  }

  tags = local.tags

  # The roles' policies exist before a function can run (all of each role module).
  depends_on = [
    module.backup_role,
    module.restore_role,
    module.vault_role,
  ]
}

# Lambda's own retries of asynchronous invocations are switched off: a retried restore
# could clear a table again (the bug of the system this replaces). Retries come from the
# state machines, which resume from checkpoints. What still fails lands in the queue.
resource "aws_lambda_function_event_invoke_config" "this" {
  for_each = local.lambda_functions

  function_name                = aws_lambda_function.this[each.key].function_name
  maximum_retry_attempts       = 0
  maximum_event_age_in_seconds = 3600

  destination_config {
    on_failure {
      destination = aws_sqs_queue.failures.arn
    }
  }
}
