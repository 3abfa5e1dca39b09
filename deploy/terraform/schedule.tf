# The daily backup: EventBridge Scheduler starts the backup state machine, which drives
# the backup function through its 202 rounds until the run is final.

resource "aws_scheduler_schedule" "backup" {
  name        = "${local.name}-daily-backup"
  description = "Daily verified backup of ${join(", ", var.dynamodb_tables)}"
  state       = var.schedule_enabled ? "ENABLED" : "DISABLED"

  schedule_expression          = var.schedule_expression
  schedule_expression_timezone = var.schedule_timezone
  kms_key_arn                  = var.infra_kms_key_arn

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = aws_sfn_state_machine.backup.arn
    role_arn = aws_iam_role.scheduler.arn
    # The first round's backup event: today's run (UTC date).
    input = jsonencode({})

    retry_policy {
      maximum_event_age_in_seconds = 3600
      maximum_retry_attempts       = 3
    }

    dead_letter_config {
      arn = aws_sqs_queue.failures.arn
    }
  }
}
