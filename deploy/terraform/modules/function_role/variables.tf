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
  description = "Role name suffix and name of its inline policy (backup, restore, ...)."
  type        = string
}

variable "assume_role_policy" {
  description = "Trust policy (JSON) of the role: Lambda, from this account."
  type        = string
}

variable "policy_json" {
  description = "The function's own statements (an aws_iam_policy_document's json); their Sids must not be AsyncFailures, InfraKey, Logs or Tracing."
  type        = string
}

variable "log_group_arns" {
  description = "ARNs of the log groups of the functions that run with this role (they may write only there)."
  type        = list(string)
}
