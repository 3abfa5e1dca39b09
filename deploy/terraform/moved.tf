# Where the resources of the function roles and schedules were before they became the
# modules in ./modules: Terraform moves them in the state, so a deployment made before
# plans no destroy or create for them. Safe to delete once every deployment has applied
# a configuration with these blocks (tests/deploy/test_terraform_modules.py checks each
# one still names something that exists).

moved {
  from = aws_iam_role.backup
  to   = module.backup_role.aws_iam_role.this
}

moved {
  from = aws_iam_role_policy.backup
  to   = module.backup_role.aws_iam_role_policy.this
}

moved {
  from = aws_iam_role.restore
  to   = module.restore_role.aws_iam_role.this
}

moved {
  from = aws_iam_role_policy.restore
  to   = module.restore_role.aws_iam_role_policy.this
}

moved {
  from = aws_iam_role.incremental
  to   = module.incremental_role.aws_iam_role.this
}

moved {
  from = aws_iam_role_policy.incremental
  to   = module.incremental_role.aws_iam_role_policy.this
}

moved {
  from = aws_iam_role.drill
  to   = module.drill_role.aws_iam_role.this
}

moved {
  from = aws_iam_role_policy.drill
  to   = module.drill_role.aws_iam_role_policy.this
}

moved {
  from = aws_iam_role.vault[0]
  to   = module.vault_role[0].aws_iam_role.this
}

moved {
  from = aws_iam_role_policy.vault[0]
  to   = module.vault_role[0].aws_iam_role_policy.this
}

moved {
  from = aws_iam_role.drill_scheduler
  to   = module.drill_schedule.aws_iam_role.this
}

moved {
  from = aws_iam_role_policy.drill_scheduler
  to   = module.drill_schedule.aws_iam_role_policy.this
}

moved {
  from = aws_scheduler_schedule.drill
  to   = module.drill_schedule.aws_scheduler_schedule.this
}

moved {
  from = aws_iam_role.incremental_scheduler
  to   = module.incremental_schedule.aws_iam_role.this
}

moved {
  from = aws_iam_role_policy.incremental_scheduler
  to   = module.incremental_schedule.aws_iam_role_policy.this
}

moved {
  from = aws_scheduler_schedule.incremental
  to   = module.incremental_schedule.aws_scheduler_schedule.this
}

moved {
  from = aws_iam_role.vault_scheduler[0]
  to   = module.vault_schedule[0].aws_iam_role.this
}

moved {
  from = aws_iam_role_policy.vault_scheduler[0]
  to   = module.vault_schedule[0].aws_iam_role_policy.this
}

moved {
  from = aws_scheduler_schedule.vault[0]
  to   = module.vault_schedule[0].aws_scheduler_schedule.this
}
