variable "bucket_name" {
  description = "Name of the vault bucket (in this, the vault account)."
  type        = string
}

variable "backup_role_arns" {
  description = "ARNs of the backup account's vault function roles (the main module's output vault_role_arn) allowed to write and read the vault."
  type        = list(string)

  validation {
    condition     = length(var.backup_role_arns) > 0
    error_message = "backup_role_arns needs at least one role ARN."
  }
}

variable "exports_prefix" {
  description = "The prefix the backups use (S3_EXPORTS_PREFIX); the roles may write below it only."
  type        = string
  default     = "native-exports"
}

variable "retention_days" {
  description = "Default Object Lock retention of the bucket (the function sets its own, VAULT_RETENTION_DAYS, on every copy; keep them equal)."
  type        = number
  default     = 35

  validation {
    condition     = var.retention_days >= 1 && var.retention_days <= 36500
    error_message = "retention_days must be between 1 and 36500."
  }
}

variable "lock_mode" {
  description = "GOVERNANCE (this account's admins with s3:BypassGovernanceRetention may shorten it) or COMPLIANCE (nobody may, not even root, until it ends)."
  type        = string
  default     = "COMPLIANCE"

  validation {
    condition     = contains(["GOVERNANCE", "COMPLIANCE"], var.lock_mode)
    error_message = "lock_mode must be GOVERNANCE or COMPLIANCE."
  }
}

variable "expire_after_retention_days" {
  description = "Days after the retention ends at which lifecycle expires a copy (never earlier: S3 keeps a locked version whatever the rule says)."
  type        = number
  default     = 1
}

variable "access_log_bucket" {
  description = "Bucket for S3 server access logs of the vault (null: none)."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default     = {}
}
