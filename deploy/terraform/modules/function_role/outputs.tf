output "arn" {
  description = "ARN of the role. Waits for the policy: a function created with it can act at once."
  value       = aws_iam_role.this.arn
  depends_on  = [aws_iam_role_policy.this]
}
