variable "context" {
  description = "What every function shares: name_prefix (<name_prefix>-<environment>), the failures queue, the infrastructure key (null: none) and the tags."
  type = object({
    name_prefix        = string
    failures_queue_arn = string
    infra_kms_key_arn  = string
    tags               = map(string)
  })
}

variable "name" {
  description = "The function's key (drill, incremental, vault); the role's statement is Invoke<Name>."
  type        = string
}

variable "description" {
  description = "Description of the schedule."
  type        = string
}

variable "enabled" {
  description = "Whether the schedule is enabled."
  type        = bool
  default     = true
}

variable "schedule_expression" {
  description = "EventBridge Scheduler expression (cron(...) or rate(...))."
  type        = string
}

variable "schedule_timezone" {
  description = "Time zone of schedule_expression; null: UTC."
  type        = string
  default     = null
}

variable "function_arn" {
  description = "ARN of the function the schedule invokes (the only one its role may invoke)."
  type        = string
}

variable "assume_role_policy" {
  description = "Trust policy (JSON) of the role: EventBridge Scheduler, from this account."
  type        = string
}

variable "maximum_event_age_in_seconds" {
  description = "How long the schedule retries delivering one event."
  type        = number
}

variable "maximum_retry_attempts" {
  description = "How often the schedule retries delivering one event."
  type        = number
}
