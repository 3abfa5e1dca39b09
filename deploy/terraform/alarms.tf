# Alarms on failed or partial runs, and where failures of asynchronous invocations go.
#
# The handlers emit per-run metrics in CloudWatch Embedded Metric Format: namespace
# DdbBackup, dimension set exactly {Environment, Function} (Function = "backup" or
# "restore"), metrics tables_failed, items_failed, ... (ddb_backup/metrics.py).

resource "aws_sns_topic" "alarms" {
  # Encrypted with infra_kms_key_arn when given (its key policy must let cloudwatch use it).
  # Not with the AWS managed alias/aws/sns: CloudWatch alarms cannot publish to such a topic.
  name              = "${local.name}-alarms"
  kms_master_key_id = var.infra_kms_key_arn
  tags              = local.tags
}

resource "aws_sns_topic_subscription" "email" {
  count = var.alarm_email == null ? 0 : 1

  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

data "aws_iam_policy_document" "alarms_topic" {
  statement {
    sid       = "CloudWatchAlarms"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alarms.arn]

    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_sns_topic_policy" "alarms" {
  arn    = aws_sns_topic.alarms.arn
  policy = data.aws_iam_policy_document.alarms_topic.json
}

# Failed asynchronous invocations (Lambda on-failure destination) and schedule
# deliveries that could not start the backup state machine.
resource "aws_sqs_queue" "failures" {
  name                       = "${local.name}-failures"
  message_retention_seconds  = 1209600
  sqs_managed_sse_enabled    = var.infra_kms_key_arn == null ? true : null
  kms_master_key_id          = var.infra_kms_key_arn
  visibility_timeout_seconds = 60
  tags                       = local.tags
}

locals {
  alarm_actions = [aws_sns_topic.alarms.arn]

  # EMF metrics of the handlers: any failed table or item is an alarm.
  emf_alarms = {
    backup-tables-failed  = { function = "backup", metric = "tables_failed" }
    backup-runs-failed    = { function = "backup", metric = "runs_failed" }
    restore-tables-failed = { function = "restore", metric = "tables_failed" }
    restore-items-failed  = { function = "restore", metric = "items_failed" }
  }

  state_machines = {
    backup  = aws_sfn_state_machine.backup.arn
    restore = aws_sfn_state_machine.restore.arn
  }
  execution_failures = ["ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"]
  states_alarms = {
    for pair in setproduct(keys(local.state_machines), local.execution_failures) :
    "${pair[0]}-${pair[1]}" => { machine = pair[0], metric = pair[1] }
  }
}

resource "aws_cloudwatch_metric_alarm" "emf" {
  for_each = local.emf_alarms

  alarm_name          = "${local.name}-${each.key}"
  alarm_description   = "ddb-backup ${each.value.function}: ${each.value.metric} > 0 (see the function's JSON logs for the table and file)."
  namespace           = "DdbBackup"
  metric_name         = each.value.metric
  dimensions          = { Environment = var.environment, Function = each.value.function }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "states" {
  for_each = local.states_alarms

  alarm_name          = "${local.name}-${each.key}"
  alarm_description   = "ddb-backup ${each.value.machine} state machine: ${each.value.metric} (a Fail state names the cause: partial, failed, still running)."
  namespace           = "AWS/States"
  metric_name         = each.value.metric
  dimensions          = { StateMachineArn = local.state_machines[each.value.machine] }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  tags                = local.tags
}

# A schedule that silently stopped is a failure too: no successful backup in a day.
resource "aws_cloudwatch_metric_alarm" "backup_missing" {
  count = var.schedule_enabled ? 1 : 0

  alarm_name          = "${local.name}-backup-missing"
  alarm_description   = "ddb-backup: no backup execution succeeded in the last 24 hours."
  namespace           = "AWS/States"
  metric_name         = "ExecutionsSucceeded"
  dimensions          = { StateMachineArn = aws_sfn_state_machine.backup.arn }
  statistic           = "Sum"
  period              = 86400
  evaluation_periods  = 1
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  treat_missing_data  = "breaching"
  alarm_actions       = local.alarm_actions
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "lambda_errors" {
  for_each = local.lambda_functions

  alarm_name          = "${local.name}-${each.key}-errors"
  alarm_description   = "ddb-backup ${each.key}: the function raised (an unhandled error, a timeout or out of memory)."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = aws_lambda_function.this[each.key].function_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "failures_queue" {
  alarm_name          = "${local.name}-failures-queue"
  alarm_description   = "ddb-backup: a failed asynchronous invocation or schedule delivery is waiting in ${aws_sqs_queue.failures.name}."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.failures.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  tags                = local.tags
}
