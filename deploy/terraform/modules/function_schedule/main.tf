# EventBridge Scheduler invokes one Lambda function directly with {}: its own role,
# which may invoke that function and send undeliverable events to the failures queue,
# nothing else.

resource "aws_iam_role" "this" {
  name               = "${var.context.name_prefix}-${var.name}-scheduler"
  assume_role_policy = var.assume_role_policy
  tags               = var.context.tags
}

data "aws_iam_policy_document" "this" {
  statement {
    sid       = "Invoke${title(var.name)}"
    actions   = ["lambda:InvokeFunction"]
    resources = [var.function_arn]
  }

  statement {
    sid       = "DeadLetters"
    actions   = ["sqs:SendMessage"]
    resources = [var.context.failures_queue_arn]
  }

  dynamic "statement" {
    for_each = var.context.infra_kms_key_arn == null ? [] : [var.context.infra_kms_key_arn]
    content {
      sid       = "InfraKey"
      actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
      resources = [statement.value]
    }
  }
}

resource "aws_iam_role_policy" "this" {
  name   = "${var.name}-scheduler"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.this.json
}

resource "aws_scheduler_schedule" "this" {
  name        = "${var.context.name_prefix}-${var.name}"
  description = var.description
  state       = var.enabled ? "ENABLED" : "DISABLED"

  schedule_expression = var.schedule_expression
  # null: the provider's default, UTC.
  schedule_expression_timezone = var.schedule_timezone
  kms_key_arn                  = var.context.infra_kms_key_arn

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = var.function_arn
    role_arn = aws_iam_role.this.arn
    input    = jsonencode({})

    retry_policy {
      maximum_event_age_in_seconds = var.maximum_event_age_in_seconds
      maximum_retry_attempts       = var.maximum_retry_attempts
    }

    dead_letter_config {
      arn = var.context.failures_queue_arn
    }
  }
}
