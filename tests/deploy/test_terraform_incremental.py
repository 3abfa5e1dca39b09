"""The Terraform of the incremental windows (deploy/terraform/incremental.tf): its
function, schedule, least-privilege role and alarms on the metrics the handler emits."""

from __future__ import annotations

import json

from ddb_backup.config import IncrementalConfig
from deploy.checks.hcl import unquote
from tests.deploy.terraform_support import NO_RESOURCE_LEVEL, Module, actions_of, resources_of
from tests.support.paths import ROOT


def test_interval_is_validated_and_reaches_the_function(tf: Module) -> None:
    variable = tf.variables["incremental_interval_minutes"]
    assert variable["default"] == 15
    (validation,) = variable["validation"]
    assert unquote(validation["condition"]) == (
        "${var.incremental_interval_minutes >= 15 && var.incremental_interval_minutes <= 1440}"
    )
    fn = tf.locals["functions"]["incremental"]
    assert "INCREMENTAL_INTERVAL_MINUTES = tostring(var.incremental_interval_minutes)" in fn["env"]
    assert "DYNAMODB_TABLES = jsonencode(var.dynamodb_tables)" in fn["env"]
    # What Terraform sets, read by the real config loader.
    config = IncrementalConfig.from_environ(
        {
            "BACKUP_BUCKET": "ddb-backup-test-bucket",
            "ENVIRONMENT": "prod",
            "DYNAMODB_TABLES": json.dumps(["mfa-api_prod_totp_global"]),
            "INCREMENTAL_INTERVAL_MINUTES": "15",
        }
    )
    assert config.interval_minutes == 15


def test_schedule_invokes_the_function_every_interval(tf: Module) -> None:
    call = tf.modules["incremental_schedule"]
    assert unquote(call["schedule_expression"]) == (
        "rate(${var.incremental_interval_minutes} minutes)"
    )
    assert call["function_arn"] == '${aws_lambda_function.this["incremental"].arn}'
    module = tf.child("incremental_schedule")
    schedule = module.resource("aws_scheduler_schedule", "this")
    assert schedule["schedule_expression"] == "${var.schedule_expression}"
    (target,) = schedule["target"]
    assert target["arn"] == "${var.function_arn}"
    assert target["input"] == "${jsonencode({})}"  # what the handler accepts
    invokes = [
        resources_of(st)
        for st in module.policy_statements("this")
        if "lambda:InvokeFunction" in actions_of(st)
    ]
    assert invokes == [["${var.function_arn}"]]


def test_role_is_least_privilege_and_deletes_nothing(tf: Module) -> None:
    statements = tf.policy_statements("incremental")
    by_action = {a: resources_of(st) for st in statements for a in actions_of(st)}
    for action in (
        "dynamodb:DescribeTable",
        "dynamodb:DescribeContinuousBackups",
        "dynamodb:ExportTableToPointInTime",
    ):
        assert by_action[action] == ["${local.backup_table_arns}"], action
    assert by_action["s3:PutObject"] == ["${local.incremental_arn}"]
    assert unquote(tf.locals["incremental_arn"]) == (
        "${local.bucket_arn}/${var.exports_prefix}/incremental/*"
    )
    assert by_action["s3:GetObject"] == ["${local.exports_arn}"]
    for st in statements:
        actions = actions_of(st)
        assert not any(a.startswith("s3:Delete") for a in actions), actions
        if "*" in resources_of(st):
            assert set(actions) <= NO_RESOURCE_LEVEL, actions


def test_windows_expire_with_or_after_the_full_backup_they_build_on(tf: Module) -> None:
    """One age rule covers both the daily backups and the incremental prefix, and no
    rule expires or moves the windows separately: every object of a chain is written
    after its full backup, so it expires at the same midnight or later."""
    lifecycle = tf.resource("aws_s3_bucket_lifecycle_configuration", "backups")
    (expiring,) = [r for r in lifecycle["rule"] if r.get("expiration")]
    (filt,) = expiring["filter"]
    rule_prefix = unquote(filt["prefix"])
    incremental = unquote(tf.locals["incremental_arn"]).removeprefix("${local.bucket_arn}/")
    assert incremental.startswith(rule_prefix)  # the windows fall under the same rule
    assert unquote(tf.locals["exports_arn"]).endswith(f"/{rule_prefix}*")  # so do backups
    for rule in lifecycle["rule"]:
        assert "transition" not in rule
        prefixes = [unquote(f.get("prefix", "")) for f in rule.get("filter", [])]
        assert not any("incremental" in p for p in prefixes), rule


def test_alarms_watch_metrics_the_handler_emits(tf: Module) -> None:
    source = (ROOT / "handlers" / "incremental.py").read_text(encoding="utf-8")
    assert '"Function": "incremental", "Environment"' in source
    lag = tf.resource("aws_cloudwatch_metric_alarm", "chain_lag")
    metrics = [unquote(lag["metric_name"])]
    metrics += [unquote(m) for m in tf.locals["incremental_alarms"].values()]
    assert set(metrics) == {
        "max_chain_lag_seconds",
        "chain_breaks",
        "window_failures",
        "tables_without_chain",
    }
    for metric in metrics:
        assert f'"{metric}"' in source, metric
    assert unquote(lag["treat_missing_data"]) == "breaching"  # a silent schedule alarms too
    alarms = tf.resource("aws_cloudwatch_metric_alarm", "incremental")
    for alarm in (lag, alarms):
        assert {k: unquote(v) for k, v in alarm["dimensions"].items()} == {
            "Environment": "${var.environment}",
            "Function": "incremental",
        }
