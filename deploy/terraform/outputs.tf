output "bucket_name" {
  description = "The backup bucket (BACKUP_BUCKET)."
  value       = var.bucket_name
}

output "exports_prefix" {
  description = "Key prefix of the backups (S3_EXPORTS_PREFIX); the lifecycle rule covers <exports_prefix>/."
  value       = var.exports_prefix
}

output "function_names" {
  description = "Lambda function names by role: backup, restore, restore-plan, restore-finalize."
  value       = { for k, fn in aws_lambda_function.this : k => fn.function_name }
}

output "function_arns" {
  description = "Lambda function ARNs by role."
  value       = { for k, fn in aws_lambda_function.this : k => fn.arn }
}

output "backup_state_machine_arn" {
  description = "Started daily by the schedule; start it by hand for an extra backup."
  value       = aws_sfn_state_machine.backup.arn
}

output "restore_state_machine_arn" {
  description = "Start with {\"restore\": {<restore event>}, \"max_concurrency\": N} for a fan-out restore."
  value       = aws_sfn_state_machine.restore.arn
}

output "backup_role_arn" {
  description = "Execution role of the backup function (cannot delete objects)."
  value       = module.backup_role.arn
}

output "restore_role_arn" {
  description = "Execution role of the restore, plan and finalize functions."
  value       = module.restore_role.arn
}

output "alarm_topic_arn" {
  description = "SNS topic of every alarm."
  value       = aws_sns_topic.alarms.arn
}

output "failures_queue_url" {
  description = "SQS queue of failed asynchronous invocations and schedule deliveries."
  value       = aws_sqs_queue.failures.url
}

output "vault_role_arn" {
  description = "Role of the vault function (null without var.vault_bucket_name): give it to the vault module's backup_role_arns."
  value       = local.vault_enabled ? module.vault_role[0].arn : null
}
