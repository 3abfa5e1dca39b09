"""Invariants of the Terraform module in deploy/terraform/ (parsed with python-hcl2, no
terraform binary needed) that checkov and the provider schema cannot know: least
privilege, one exports prefix everywhere, the handler contract and the alarms."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest

from ddb_backup.config import DEFAULT_PREFIX, BackupConfig, RestoreConfig
from ddb_backup.metrics import NAMESPACE
from deploy.checks.hcl import unquote
from handlers.common import deadline_seconds, working_seconds
from tests.deploy.terraform_support import NO_RESOURCE_LEVEL, Module, actions_of, resources_of
from tests.support.lambda_context import FakeContext
from tests.support.paths import ROOT

#: The handler contract (deploy/README.md): function key in main.tf -> handler.
CONTRACT = {
    "backup": "handlers.backup.handler",
    "incremental": "handlers.incremental.handler",
    "restore": "handlers.restore.handler",
    "restore-plan": "handlers.restore.plan_handler",
    "restore-finalize": "handlers.restore.finalize_handler",
    "drill": "handlers.drill.handler",
}

# ---------------------------------------------------------------------------
# Terraform: parsing and least privilege
# ---------------------------------------------------------------------------


def test_every_tf_file_parses(tf: Module) -> None:
    names = {p.name for p in tf.files}
    assert {"main.tf", "variables.tf", "outputs.tf", "versions.tf", "iam.tf"} <= names
    assert tf.resources, "no resources parsed"


@pytest.mark.parametrize("policy", ["backup", "restore", "backup_states", "restore_states"])
def test_star_resource_only_where_no_arn_exists(tf: Module, policy: str) -> None:
    for statement in tf.policy_statements(policy):
        actions = actions_of(statement)
        assert "*" not in actions, statement
        assert not any(a.endswith(":*") for a in actions), statement
        if "*" in resources_of(statement):
            assert set(actions) <= NO_RESOURCE_LEVEL, (policy, actions)


@pytest.mark.parametrize("policy", ["backup", "restore"])
def test_function_roles_cannot_delete_objects(tf: Module, policy: str) -> None:
    for statement in tf.policy_statements(policy):
        for action in actions_of(statement):
            assert not action.startswith("s3:Delete"), (policy, action)
            assert action not in {"s3:*", "s3:PutLifecycleConfiguration", "s3:PutBucketPolicy"}


def test_backup_role_scopes_dynamodb_to_the_configured_tables(tf: Module) -> None:
    by_action = {
        action: resources_of(st)
        for st in tf.policy_statements("backup")
        for action in actions_of(st)
    }
    for action in (
        "dynamodb:DescribeTable",
        "dynamodb:DescribeContinuousBackups",
        "dynamodb:DescribeTimeToLive",
        "dynamodb:ExportTableToPointInTime",
    ):
        assert by_action[action] == ["${local.backup_table_arns}"], action
    assert by_action["dynamodb:DescribeExport"] == [
        '${[for arn in local.backup_table_arns : "${arn}/export/*"]}'
    ]
    assert "var.dynamodb_tables" in tf.locals["backup_table_arns"]
    assert ":table/${t}" in tf.locals["backup_table_arns"]
    # Writes go to the exports prefix only.
    assert by_action["s3:PutObject"] == ["${local.exports_arn}"]


def test_restore_role_writes_only_below_restore_prefix(tf: Module) -> None:
    statements = tf.policy_statements("restore")
    writes = [
        st for st in statements if {"s3:PutObject", "s3:AbortMultipartUpload"} & set(actions_of(st))
    ]
    assert writes
    for st in writes:
        assert resources_of(st) == ["${local.restore_arn}"]
    assert (
        unquote(tf.locals["restore_arn"]) == "${local.bucket_arn}/${var.exports_prefix}/_restore/*"
    )
    reads = [st for st in statements if "s3:GetObject" in actions_of(st)]
    assert [resources_of(st) for st in reads] == [["${local.exports_arn}"]]
    tables = [st for st in statements if "dynamodb:BatchWriteItem" in actions_of(st)]
    assert [resources_of(st) for st in tables] == [["${local.restore_table_arns}"]]
    assert {"dynamodb:Scan", "dynamodb:DescribeTable"} <= set(actions_of(tables[0]))


def test_list_bucket_is_limited_to_the_exports_prefix(tf: Module) -> None:
    for policy in ("backup", "restore"):
        lists = [st for st in tf.policy_statements(policy) if "s3:ListBucket" in actions_of(st)]
        assert len(lists) == 1
        (condition,) = lists[0]["condition"]
        assert unquote(condition["variable"]) == "s3:prefix"
        assert unquote(condition["values"]) == ["${var.exports_prefix}", "${var.exports_prefix}/*"]


def test_kms_permissions_only_when_a_key_is_given(tf: Module) -> None:
    for policy in ("backup", "restore"):
        doc = tf.data[("aws_iam_policy_document", policy)]
        static = [a for st in doc.get("statement", []) for a in actions_of(st)]
        assert not any(a.startswith("kms:") for a in static), policy
        dynamic_for_each = [body["for_each"] for dyn in doc["dynamic"] for body in dyn.values()]
        assert "${var.kms_key_arn == null ? [] : [var.kms_key_arn]}" in dynamic_for_each


# ---------------------------------------------------------------------------
# Terraform: one exports prefix everywhere
# ---------------------------------------------------------------------------


def test_lifecycle_rule_covers_the_prefix_backups_use(tf: Module) -> None:
    assert unquote(tf.variables["exports_prefix"]["default"]) == DEFAULT_PREFIX
    lifecycle = tf.resource("aws_s3_bucket_lifecycle_configuration", "backups")
    expiring = [r for r in lifecycle["rule"] if r.get("expiration")]
    assert len(expiring) == 1
    (rule,) = expiring
    assert unquote(rule["status"]) == "Enabled"
    (filt,) = rule["filter"]
    assert unquote(filt["prefix"]) == "${var.exports_prefix}/"
    assert rule["expiration"][0]["days"] == "${var.backup_retention_days}"
    # The functions write where the rule looks.
    assert tf.locals["common_env"]["S3_EXPORTS_PREFIX"] == "${var.exports_prefix}"
    assert unquote(tf.locals["exports_arn"]) == "${local.bucket_arn}/${var.exports_prefix}/*"


def test_bucket_is_versioned_private_and_encrypted(tf: Module) -> None:
    versioning = tf.resource("aws_s3_bucket_versioning", "backups")
    assert unquote(versioning["versioning_configuration"][0]["status"]) == "Enabled"
    pab = tf.resource("aws_s3_bucket_public_access_block", "backups")
    for key in (
        "block_public_acls",
        "block_public_policy",
        "ignore_public_acls",
        "restrict_public_buckets",
    ):
        assert pab[key] is True
    sse = tf.resource("aws_s3_bucket_server_side_encryption_configuration", "backups")
    default = sse["rule"][0]["apply_server_side_encryption_by_default"][0]
    assert default["kms_master_key_id"] == "${var.kms_key_arn}"


# ---------------------------------------------------------------------------
# Terraform: functions and the handler contract
# ---------------------------------------------------------------------------


def _defined_functions(module_path: Path) -> set[str]:
    tree = ast.parse(module_path.read_text(encoding="utf-8"))
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


def test_functions_follow_the_handler_contract(tf: Module) -> None:
    functions = tf.locals["functions"]
    assert {k: unquote(v["handler"]) for k, v in functions.items()} == CONTRACT
    for handler in CONTRACT.values():
        module, _, func = handler.rpartition(".")
        path = ROOT / (module.replace(".", "/") + ".py")
        assert path.is_file(), f"{handler}: {path.relative_to(ROOT)} is missing"
        assert func in _defined_functions(path), f"{handler} is not defined"


def test_function_environment_is_what_the_config_reads(tf: Module) -> None:
    common = tf.locals["common_env"]
    backup_env = tf.locals["functions"]["backup"]["env"]
    names = set(common) | set(re.findall(r"\b([A-Z][A-Z0-9_]{3,})\s*=", backup_env))
    assert names == {
        "BACKUP_BUCKET",
        "BACKUP_BUCKET_OWNER",
        "ENVIRONMENT",
        "S3_EXPORTS_PREFIX",
        "DYNAMODB_TABLES",
        "EXPORT_KMS_KEY_ID",
    }
    assert "DYNAMODB_TABLES = jsonencode(var.dynamodb_tables)" in backup_env
    # What Terraform would set, read by the real config loaders.
    env = {
        "BACKUP_BUCKET": "ddb-backup-test-bucket",
        "BACKUP_BUCKET_OWNER": "123456789012",
        "ENVIRONMENT": "prod",
        "S3_EXPORTS_PREFIX": DEFAULT_PREFIX,
        "DYNAMODB_TABLES": json.dumps(["mfa-api_prod_totp_global"]),
        "EXPORT_KMS_KEY_ID": "arn:aws:kms:eu-west-1:123456789012:key/abc",
    }
    backup = BackupConfig.from_environ(env)
    assert backup.tables == ("mfa-api_prod_totp_global",)
    assert backup.kms_key_id == env["EXPORT_KMS_KEY_ID"]
    assert backup.expected_bucket_owner == "123456789012"
    restore = RestoreConfig.from_environ({k: v for k, v in env.items() if k in common})
    assert restore.prefix == DEFAULT_PREFIX


def test_lambda_settings(tf: Module) -> None:
    fn = tf.resource("aws_lambda_function", "this")
    assert fn["for_each"] == "${local.lambda_functions}"
    assert fn["runtime"] == "${var.lambda_runtime}"
    assert unquote(tf.variables["lambda_runtime"]["default"]) in {"python3.11", "python3.12"}
    assert unquote(fn["tracing_config"][0]["mode"]) == "Active"
    assert tf.variables["restore_memory_mb"]["default"] == 1769
    assert tf.variables["backup_timeout_seconds"]["default"] == 900
    assert tf.variables["restore_timeout_seconds"]["default"] == 900
    # No automatic async retry (it could clear a table twice); failures go to the queue.
    invoke = tf.resource("aws_lambda_function_event_invoke_config", "this")
    assert invoke["maximum_retry_attempts"] == 0
    on_failure = invoke["destination_config"][0]["on_failure"][0]
    assert on_failure["destination"] == "${aws_sqs_queue.failures.arn}"
    groups = tf.resource("aws_cloudwatch_log_group", "lambda")
    assert groups["retention_in_days"] == "${var.log_retention_days}"


def _accepts(variable: dict[str, Any], name: str, value: float) -> bool:
    """Evaluate a variable's ``validation`` conditions (comparisons joined by ``&&``)."""
    ok = True
    for block in variable["validation"]:
        condition = block["condition"].removeprefix("${").removesuffix("}")
        for clause in condition.split("&&"):
            m = re.fullmatch(rf"\s*var\.{name}\s*(>=|<=)\s*(\d+)\s*", clause)
            assert m, f"unexpected condition {condition!r}"
            bound = float(m.group(2))
            ok &= value >= bound if m.group(1) == ">=" else value <= bound
    return ok


@pytest.mark.parametrize(
    "name", ["backup_timeout_seconds", "restore_timeout_seconds", "plan_timeout_seconds"]
)
def test_function_timeouts_have_a_validated_minimum(tf: Module, name: str) -> None:
    """A timeout too short to work in is refused at plan time: at the minimum (60 s)
    a handler still works 30 s after keeping its margin back."""
    variable = tf.variables[name]
    assert _accepts(variable, name, variable["default"])
    assert [_accepts(variable, name, v) for v in (30, 59, 60, 900, 901)] == [
        False,
        False,
        True,
        True,
        False,
    ]
    context = FakeContext(remaining_ms=60_000)
    assert (working_seconds(context) or 0) >= 29
    assert (deadline_seconds(context) or 0) >= 29


def test_alarms_match_the_emitted_metrics(tf: Module) -> None:
    alarm = tf.resource("aws_cloudwatch_metric_alarm", "emf")
    assert unquote(alarm["namespace"]) == NAMESPACE
    # EMF metrics carry exactly the dimension set the handler emits.
    assert alarm["dimensions"] == {
        "Environment": "${var.environment}",
        "Function": "${each.value.function}",
    }
    emitted = {
        name: (ROOT / "handlers" / f"{name}.py").read_text(encoding="utf-8")
        for name in ("backup", "restore")
    }
    for name, source in emitted.items():
        assert f'"Function": "{name}", "Environment"' in source
    for spec in tf.locals["emf_alarms"].values():
        # Every alarmed metric is one its handler emits (an alarm on a name nobody
        # writes would never fire).
        assert f'"{unquote(spec["metric"])}"' in emitted[unquote(spec["function"])]
    metrics = {
        (unquote(s["function"]), unquote(s["metric"])) for s in tf.locals["emf_alarms"].values()
    }
    assert {
        ("backup", "tables_failed"),
        ("restore", "tables_failed"),
        ("restore", "items_failed"),
    } <= metrics
    assert "ExecutionsFailed" in unquote(tf.locals["execution_failures"])
    for alarm_name in ("emf", "states", "lambda_errors", "failures_queue"):
        alarm = tf.resource("aws_cloudwatch_metric_alarm", alarm_name)
        assert alarm["alarm_actions"] == "${local.alarm_actions}"


def test_schedule_starts_the_backup_state_machine(tf: Module) -> None:
    schedule = tf.resource("aws_scheduler_schedule", "backup")
    (target,) = schedule["target"]
    assert target["arn"] == "${aws_sfn_state_machine.backup.arn}"
    statements = tf.policy_statements("scheduler")
    starts = [st for st in statements if "states:StartExecution" in actions_of(st)]
    assert [resources_of(st) for st in starts] == [["${aws_sfn_state_machine.backup.arn}"]]


def test_drill_role_touches_only_drill_tables_and_its_alarms_read_what_it_emits(
    tf: Module,
) -> None:
    from ddb_backup.drill import DRILL_PREFIX

    statements = tf.policy_statements("drill")
    for st in statements:
        dynamodb = [a for a in actions_of(st) if a.startswith("dynamodb:")]
        if dynamodb and dynamodb != ["dynamodb:ListTables"]:
            assert resources_of(st) == ["${local.drill_table_arn}"], st
        assert not any(a.startswith("s3:Delete") for a in actions_of(st))
    assert {"dynamodb:CreateTable", "dynamodb:DeleteTable", "dynamodb:TagResource"} <= {
        a for st in statements for a in actions_of(st)
    }
    assert unquote(tf.locals["drill_table_arn"]).endswith(f":table/{DRILL_PREFIX}*")
    assert tf.locals["functions"]["drill"]["reserved"] == 1  # one drill at a time
    source = (ROOT / "handlers" / "drill.py").read_text(encoding="utf-8")
    assert '"Function": "drill", "Environment"' in source
    for name in ("drill_failed", "drill_stale"):
        alarm = tf.resource("aws_cloudwatch_metric_alarm", name)
        assert f'"{unquote(alarm["metric_name"])}"' in source
        assert alarm["dimensions"] == {"Environment": "${var.environment}", "Function": '"drill"'}
