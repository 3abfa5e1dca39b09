# The two state machines. Their definitions are deploy/statemachine/*.asl.json,
# rendered with templatefile(); CI renders them the same way (deploy/render_asl.py)
# and validates the result with asl-validator.

locals {
  backup_state_machine_name  = "${local.name}-backup"
  restore_state_machine_name = "${local.name}-restore"

  restore_state_machine_arn    = "arn:${local.partition}:states:${local.region}:${local.account_id}:stateMachine:${local.restore_state_machine_name}"
  restore_execution_arn_prefix = "arn:${local.partition}:states:${local.region}:${local.account_id}:execution:${local.restore_state_machine_name}"
}

resource "aws_cloudwatch_log_group" "states" {
  for_each = toset(["backup", "restore"])

  # The /aws/vendedlogs/ prefix keeps the log delivery's resource policy small.
  name              = "/aws/vendedlogs/states/${local.name}-${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.infra_kms_key_arn
  tags              = local.tags
}

resource "aws_sfn_state_machine" "backup" {
  name     = local.backup_state_machine_name
  role_arn = aws_iam_role.backup_states.arn
  type     = "STANDARD"

  definition = templatefile("${path.module}/../statemachine/backup.asl.json", {
    backup_function_arn = aws_lambda_function.this["backup"].arn
    backup_wait_seconds = var.backup_wait_seconds
    backup_max_rounds   = var.backup_max_rounds
  })

  logging_configuration {
    log_destination = "${aws_cloudwatch_log_group.states["backup"].arn}:*"
    # Execution data is events and responses: names, keys and counts, never item
    # values (the handlers' rule), so it may be logged.
    include_execution_data = true
    level                  = var.states_log_level
  }

  tracing_configuration {
    enabled = true
  }

  tags = local.tags

  depends_on = [aws_iam_role_policy.backup_states]
}

resource "aws_sfn_state_machine" "restore" {
  name     = local.restore_state_machine_name
  role_arn = aws_iam_role.restore_states.arn
  type     = "STANDARD"

  definition = templatefile("${path.module}/../statemachine/restore.asl.json", {
    plan_function_arn            = aws_lambda_function.this["restore-plan"].arn
    restore_function_arn         = aws_lambda_function.this["restore"].arn
    finalize_function_arn        = aws_lambda_function.this["restore-finalize"].arn
    max_concurrency              = var.restore_max_concurrency
    tolerated_failure_percentage = var.restore_tolerated_failure_percentage
    resume_wait_seconds          = var.resume_wait_seconds
    max_resume_rounds            = var.max_resume_rounds
  })

  logging_configuration {
    log_destination        = "${aws_cloudwatch_log_group.states["restore"].arn}:*"
    include_execution_data = true
    level                  = var.states_log_level
  }

  tracing_configuration {
    enabled = true
  }

  tags = local.tags

  depends_on = [aws_iam_role_policy.restore_states]
}
