# ---------------------------------------------------------------------------
# What to back up, and where
# ---------------------------------------------------------------------------

variable "environment" {
  description = "Environment name (ENVIRONMENT); part of every resource name and of the backup's identity."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,64}$", var.environment))
    error_message = "environment must be 1-64 of [A-Za-z0-9_-]."
  }
}

variable "name_prefix" {
  description = "Prefix of every resource name; resources are named <name_prefix>-<environment>-<part>."
  type        = string
  default     = "ddb-backup"
}

variable "dynamodb_tables" {
  description = "Names of the DynamoDB tables to back up (DYNAMODB_TABLES). Each needs point-in-time recovery enabled."
  type        = list(string)

  validation {
    condition     = length(var.dynamodb_tables) > 0 && alltrue([for t in var.dynamodb_tables : can(regex("^[A-Za-z0-9_.-]{3,255}$", t))])
    error_message = "dynamodb_tables must hold at least one valid DynamoDB table name."
  }
}

variable "restore_target_tables" {
  description = "Tables the restore functions may write to (and scan to clear). Defaults to dynamodb_tables; add the targets of any table_mapping you intend to use."
  type        = list(string)
  default     = null
}

variable "allow_create_missing_tables" {
  description = "Grant dynamodb:CreateTable on the restore targets, for restores with create_missing_tables = true."
  type        = bool
  default     = false
}

variable "create_bucket" {
  description = "Create the backup bucket (true) or use the existing bucket named bucket_name (false)."
  type        = bool
  default     = true
}

variable "bucket_name" {
  description = "Name of the backup bucket (BACKUP_BUCKET), created or existing."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be a valid S3 bucket name."
  }
}

variable "bucket_owner_account_id" {
  description = "Account id that must own the bucket (BACKUP_BUCKET_OWNER, sent as ExpectedBucketOwner/S3BucketOwner). Defaults to the deploying account."
  type        = string
  default     = null
}

variable "exports_prefix" {
  description = "Key prefix of every backup (S3_EXPORTS_PREFIX), without slashes at either end. The lifecycle rule, the IAM policies and the functions all use this one value."
  type        = string
  default     = "native-exports"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$", var.exports_prefix))
    error_message = "exports_prefix must be segments of [A-Za-z0-9_.-] joined by '/', without leading or trailing '/'."
  }
}

variable "manage_existing_bucket_lifecycle" {
  description = "With create_bucket = false, also manage the existing bucket's lifecycle configuration. This REPLACES every lifecycle rule the bucket has."
  type        = bool
  default     = false
}

variable "backup_retention_days" {
  description = "Days a backup (everything under exports_prefix, restore checkpoints included) is kept before it expires."
  type        = number
  default     = 35

  validation {
    condition     = var.backup_retention_days >= 1
    error_message = "backup_retention_days must be at least 1."
  }
}

variable "noncurrent_version_retention_days" {
  description = "Days an overwritten or expired object version is kept (the bucket is versioned) before it is deleted for good."
  type        = number
  default     = 7
}

variable "kms_key_arn" {
  description = "Customer managed KMS key for the backups: the bucket's default SSE-KMS key and the exports' S3SseKmsKeyId (EXPORT_KMS_KEY_ID). null: SSE-S3 (AES256)."
  type        = string
  default     = null
}

variable "infra_kms_key_arn" {
  description = "Customer managed KMS key for the SNS topic, the SQS dead-letter queue, the log groups and the functions' environment. Its key policy must allow sns, sqs, logs and cloudwatch. null: AWS managed encryption where it exists."
  type        = string
  default     = null
}

variable "access_log_bucket" {
  description = "Bucket that receives S3 server access logs of the backup bucket (created bucket only); null disables access logging."
  type        = string
  default     = null
}

# ---------------------------------------------------------------------------
# Functions
# ---------------------------------------------------------------------------

variable "lambda_zip_path" {
  description = "Path of the deployment zip made by `make package`."
  type        = string
  default     = null
}

variable "lambda_runtime" {
  description = "Lambda runtime; must match the --python-version the zip was built for."
  type        = string
  default     = "python3.12"
}

variable "lambda_architecture" {
  description = "x86_64 (zip built for manylinux2014_x86_64, the default) or arm64 (build with --platform manylinux2014_aarch64)."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.lambda_architecture)
    error_message = "lambda_architecture must be x86_64 or arm64."
  }
}

variable "backup_memory_mb" {
  description = "Memory of the backup function (it streams and checks every exported file)."
  type        = number
  default     = 1024
}

variable "backup_timeout_seconds" {
  description = "Timeout of the backup function (60-900 s); it answers 202 before it and the state machine resumes it. Each invocation polls and verifies for its time less 30 s (at most half of it)."
  type        = number
  default     = 900

  # Handlers keep up to 30 s back to save state and answer: below 60 s an
  # invocation has too little time to poll, verify or write anything useful.
  validation {
    condition     = var.backup_timeout_seconds >= 60 && var.backup_timeout_seconds <= 900
    error_message = "backup_timeout_seconds must be between 60 and 900 (Lambda's maximum)."
  }
}

variable "backup_reserved_concurrency" {
  description = "Reserved concurrency of the backup function. 1: one backup run at a time; -1: unreserved (accounts with the minimum concurrency quota cannot reserve any)."
  type        = number
  default     = 1
}

variable "restore_memory_mb" {
  description = "Memory of the restore (shard) function. At 1769 MB Lambda gives a function one full vCPU; the README gives the measured throughput."
  type        = number
  default     = 1769
}

variable "restore_timeout_seconds" {
  description = "Timeout of the restore (shard) function (60-900 s); it checkpoints and answers 202 30 s before it."
  type        = number
  default     = 900

  # Handlers keep up to 30 s back to save state and answer: below 60 s an
  # invocation has too little time to poll, verify or write anything useful.
  validation {
    condition     = var.restore_timeout_seconds >= 60 && var.restore_timeout_seconds <= 900
    error_message = "restore_timeout_seconds must be between 60 and 900 (Lambda's maximum)."
  }
}

variable "plan_memory_mb" {
  description = "Memory of the restore plan function (verifies the backup, clears the targets once, splits into shards)."
  type        = number
  default     = 1769
}

variable "plan_timeout_seconds" {
  description = "Timeout of the restore plan function (60-900 s); it answers 202 with a resume_token 30 s before it."
  type        = number
  default     = 900

  # Handlers keep up to 30 s back to save state and answer: below 60 s an
  # invocation has too little time to poll, verify or write anything useful.
  validation {
    condition     = var.plan_timeout_seconds >= 60 && var.plan_timeout_seconds <= 900
    error_message = "plan_timeout_seconds must be between 60 and 900 (Lambda's maximum)."
  }
}

variable "finalize_memory_mb" {
  description = "Memory of the restore finalize function (adds up the shards' counts)."
  type        = number
  default     = 512
}

variable "finalize_timeout_seconds" {
  description = "Timeout of the restore finalize function."
  type        = number
  default     = 300
}

variable "log_retention_days" {
  description = "Retention of every log group (functions and state machines)."
  type        = number
  default     = 365
}

# ---------------------------------------------------------------------------
# Orchestration
# ---------------------------------------------------------------------------

variable "schedule_expression" {
  description = "EventBridge Scheduler expression of the daily backup. Early in the UTC day, so a run that needs several rounds rarely crosses midnight (it is finished correctly if it does)."
  type        = string
  default     = "cron(0 1 * * ? *)"
}

variable "schedule_timezone" {
  description = "Time zone of schedule_expression."
  type        = string
  default     = "UTC"
}

variable "schedule_enabled" {
  description = "Whether the daily backup schedule is enabled."
  type        = bool
  default     = true
}

variable "backup_wait_seconds" {
  description = "Wait between backup rounds while exports are still running (statusCode 202)."
  type        = number
  default     = 120
}

variable "backup_max_rounds" {
  description = "Most backup invocations in one execution before it gives up with BackupStillRunning (the next execution on the same date picks the run up)."
  type        = number
  default     = 12
}

variable "restore_max_concurrency" {
  description = "Default MaxConcurrency of the restore Distributed Map (shards restored at once); an execution may override it with max_concurrency in its input. Mind the target tables' write capacity."
  type        = number
  default     = 10

  validation {
    condition     = var.restore_max_concurrency >= 1 && var.restore_max_concurrency <= 10000
    error_message = "restore_max_concurrency must be between 1 and 10000."
  }
}

variable "restore_tolerated_failure_percentage" {
  description = "ToleratedFailurePercentage of the restore map. Failures inside a shard are caught and reported to finalize, so this only concerns failures of the map machinery itself."
  type        = number
  default     = 100
}

variable "resume_wait_seconds" {
  description = "Wait before a plan or shard that answered 202 is invoked again with its resume_token."
  type        = number
  default     = 5
}

variable "max_resume_rounds" {
  description = "Most 202 rounds of the plan step, and of each shard, before the execution gives up on it."
  type        = number
  default     = 50
}

variable "states_log_level" {
  description = "Log level of both state machines: ALL, ERROR or FATAL (OFF is refused: executions must leave a trace)."
  type        = string
  default     = "ERROR"

  validation {
    condition     = contains(["ALL", "ERROR", "FATAL"], var.states_log_level)
    error_message = "states_log_level must be ALL, ERROR or FATAL."
  }
}

# ---------------------------------------------------------------------------
# Alarms
# ---------------------------------------------------------------------------

variable "alarm_email" {
  description = "E-mail address subscribed to the alarm topic (confirm the subscription mail); null: subscribe something else to the alarm_topic_arn output."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------------------
# Incremental exports (point-in-time recovery): incremental.tf
# ---------------------------------------------------------------------------

variable "incremental_interval_minutes" {
  description = "Length of an incremental window and how often the incremental function runs (15-1440 minutes: AWS's bounds on an incremental export)."
  type        = number
  default     = 15

  validation {
    condition     = var.incremental_interval_minutes >= 15 && var.incremental_interval_minutes <= 1440
    error_message = "incremental_interval_minutes must be between 15 and 1440."
  }
}

variable "incremental_schedule_enabled" {
  description = "Whether the incremental exports schedule is enabled."
  type        = bool
  default     = true
}

variable "incremental_timeout_seconds" {
  description = "Timeout of the incremental function (60-900 s); windows still exporting are resumed by the next scheduled invocation."
  type        = number
  default     = 900

  validation {
    condition     = var.incremental_timeout_seconds >= 60 && var.incremental_timeout_seconds <= 900
    error_message = "incremental_timeout_seconds must be between 60 and 900 (Lambda's maximum)."
  }
}

variable "chain_lag_alarm_seconds" {
  description = "Alarm when a table's newest verified window ended longer ago than this (null: two intervals plus 30 minutes)."
  type        = number
  default     = null
}

# ---------------------------------------------------------------------------
# Vault (vault.tf; the bucket itself is deploy/terraform/vault/ in another account)
# ---------------------------------------------------------------------------

variable "vault_bucket_name" {
  description = "Object Lock bucket (usually in another account, see deploy/terraform/vault/) that final backups are copied to; null: no vault function."
  type        = string
  default     = null
}

variable "vault_bucket_owner_account_id" {
  description = "Account id that owns the vault bucket (ExpectedBucketOwner on every vault call); null: not checked."
  type        = string
  default     = null
}

variable "vault_kms_key_arn" {
  description = "SSE-KMS key of the vault (in the vault account); null: the vault bucket's default encryption."
  type        = string
  default     = null
}

variable "vault_retention_days" {
  description = "Object Lock retention of every vault copy, in days from the copy."
  type        = number
  default     = 35

  validation {
    condition     = var.vault_retention_days >= 1 && var.vault_retention_days <= 36500
    error_message = "vault_retention_days must be between 1 and 36500."
  }
}

variable "vault_lock_mode" {
  description = "Object Lock mode of the vault copies: GOVERNANCE or COMPLIANCE (not even the vault account's root can shorten it)."
  type        = string
  default     = "COMPLIANCE"

  validation {
    condition     = contains(["GOVERNANCE", "COMPLIANCE"], var.vault_lock_mode)
    error_message = "vault_lock_mode must be GOVERNANCE or COMPLIANCE."
  }
}

variable "vault_schedule_expression" {
  description = "How often the vault function copies the newest final backup (idempotent: a copied date is only re-checked)."
  type        = string
  default     = "rate(1 hour)"
}

variable "vault_alarm_delay_hours" {
  description = "Alarm when the newest final backup has had no complete, verified vault copy for this many hours."
  type        = number
  default     = 6
}
variable "drill_schedule_expression" {
  description = "When the restore drill runs (EventBridge Scheduler expression, in schedule_timezone); weekly by default."
  type        = string
  default     = "cron(0 6 ? * SUN *)"
}

variable "drill_schedule_enabled" {
  description = "Whether the weekly restore drill (and its staleness alarm) is enabled."
  type        = bool
  default     = true
}

variable "drill_timeout_seconds" {
  description = "Timeout of the drill function (60-900 s); a drill cut off is recorded as CUT_OFF and its tables deleted."
  type        = number
  default     = 900

  validation {
    condition     = var.drill_timeout_seconds >= 60 && var.drill_timeout_seconds <= 900
    error_message = "drill_timeout_seconds must be between 60 and 900 (Lambda's maximum)."
  }
}

variable "drill_stale_after_days" {
  description = "Alarm when no drill passed for this many days (1-7, CloudWatch's longest evaluation range for daily periods; at least the schedule's interval)."
  type        = number
  default     = 7

  validation {
    condition     = var.drill_stale_after_days >= 1 && var.drill_stale_after_days <= 7
    error_message = "drill_stale_after_days must be between 1 and 7."
  }
}
