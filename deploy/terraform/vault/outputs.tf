output "bucket_name" {
  description = "VAULT_BUCKET for the backup account's vault function (var.vault_bucket_name)."
  value       = aws_s3_bucket.vault.id
}

output "bucket_owner_account_id" {
  description = "VAULT_BUCKET_OWNER (var.vault_bucket_owner_account_id)."
  value       = local.account_id
}

output "kms_key_arn" {
  description = "VAULT_KMS_KEY_ID (var.vault_kms_key_arn)."
  value       = aws_kms_key.vault.arn
}
