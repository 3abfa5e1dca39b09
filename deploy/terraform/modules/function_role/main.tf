# The execution role of one Lambda function (or of several that share it): the
# function's own statements (policy_json, written next to the function where they can be
# reviewed) followed by what every function needs and nothing more: send a failed
# asynchronous invocation to the failures queue, use the infrastructure key when there
# is one, write its own log groups, upload X-Ray traces.

resource "aws_iam_role" "this" {
  name               = "${var.context.name_prefix}-${var.name}"
  assume_role_policy = var.assume_role_policy
  tags               = var.context.tags
}

data "aws_iam_policy_document" "this" {
  # The function's statements come first: the document is the one the role had before
  # the module existed, statement for statement.
  source_policy_documents = [var.policy_json]

  statement {
    sid       = "AsyncFailures"
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

  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [for arn in var.log_group_arns : "${arn}:*"]
  }

  statement {
    # X-Ray has no resources to name.
    sid       = "Tracing"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "this" {
  name   = var.name
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.this.json
}
