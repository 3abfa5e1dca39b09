"""deploy/checks/terraform_schema.py: the Terraform module against the AWS provider's
schema (built from ``@cdktf/provider-aws`` by ``make provider-schemas``). Each defect is
planted in a copy of the module and the check must name its file and line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from deploy.checks.provider_schema import SCHEMA_DIR, load_schemas
from deploy.checks.terraform_schema import MODULE_DIR, Report, check
from tests.support.paths import ROOT


@pytest.fixture(scope="module")
def schema_dir() -> Path:
    """The provider schemas; built with ``make provider-schemas`` (npm) when missing."""
    if not load_schemas(SCHEMA_DIR):
        result = subprocess.run(
            ["make", "-s", "provider-schemas", f"PYTHON={sys.executable}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        if not load_schemas(SCHEMA_DIR):
            reason = (
                f"no provider schema in {SCHEMA_DIR}: make provider-schemas: {result.stderr[-500:]}"
            )
            if os.environ.get("CI"):
                pytest.fail(reason)
            pytest.skip(reason)
    return SCHEMA_DIR


Plant = Callable[[str, str, str], int]


@pytest.fixture
def module(tmp_path: Path) -> Path:
    """A copy of deploy/terraform to plant defects in."""
    copy = tmp_path / "terraform"
    shutil.copytree(MODULE_DIR, copy)
    return copy


@pytest.fixture
def plant(module: Path) -> Plant:
    """Replace ``old`` (exactly once) by ``new`` in ``file``; the 1-based line it is on."""

    def replace(file: str, old: str, new: str) -> int:
        path = module / file
        text = path.read_text(encoding="utf-8")
        assert text.count(old) == 1, f"{old!r} is not unique in {file}"
        path.write_text(text.replace(old, new), encoding="utf-8")
        return text[: text.index(old)].count("\n") + 1

    return replace


def run(module: Path, schema_dir: Path) -> Report:
    return check(module, schema_dir)


def test_real_module_passes_and_counts_what_it_checked(schema_dir: Path) -> None:
    report = check(MODULE_DIR, schema_dir)
    assert report.errors == []
    assert report.counts["provider versions"] == 2
    assert report.counts["resource blocks"] >= 30
    assert report.counts["data blocks"] >= 10
    assert report.counts["arguments"] >= 300
    assert report.counts["nested blocks"] >= 40
    assert report.counts["references"] >= 200


def test_misspelled_argument_is_named_with_its_line(
    module: Path, plant: Plant, schema_dir: Path
) -> None:
    line = plant("main.tf", "  memory_size      ", "  memory_sise      ")
    errors = run(module, schema_dir).errors
    assert errors == [
        f"main.tf:{line}: aws_lambda_function.this: 'memory_sise' is not an argument or block "
        f"of aws_lambda_function (hashicorp/aws {v})"
        for v in ("5.32.0", "6.25.0")
    ]


def test_misspelled_argument_in_a_dynamic_block(
    module: Path, plant: Plant, schema_dir: Path
) -> None:
    old = '      sid       = "BackupKey"\n      actions   = ["kms:GenerateDataKey", '
    line = plant("iam.tf", old, old.replace("actions   =", "action    =")) + 1
    errors = run(module, schema_dir).errors
    assert errors == [
        f"iam.tf:{line}: data.aws_iam_policy_document.backup: 'statement.action' is not an "
        f"argument or block of aws_iam_policy_document (hashicorp/aws {v})"
        for v in ("5.32.0", "6.25.0")
    ]


def test_missing_required_argument(module: Path, plant: Plant, schema_dir: Path) -> None:
    plant("main.tf", "  role                           = each.value.role_arn\n", "")
    errors = run(module, schema_dir).errors
    header = (
        (module / "main.tf")
        .read_text(encoding="utf-8")
        .splitlines()
        .index('resource "aws_lambda_function" "this" {')
    )
    assert (
        f"main.tf:{header + 1}: aws_lambda_function.this: required argument 'role' is missing"
        in ("\n".join(errors))
    ), errors


def test_missing_required_nested_block(module: Path, plant: Plant, schema_dir: Path) -> None:
    plant("schedule.tf", '  flexible_time_window {\n    mode = "OFF"\n  }\n', "")
    errors = run(module, schema_dir).errors
    assert any(
        e.startswith(
            "schedule.tf:4: aws_scheduler_schedule.backup: required argument 'flexible_time_window'"
        )
        for e in errors
    ), errors


def test_unknown_resource_type(module: Path, plant: Plant, schema_dir: Path) -> None:
    line = plant(
        "alarms.tf",
        'resource "aws_sns_topic_subscription" "email"',
        'resource "aws_sns_subscription" "email"',
    )
    errors = run(module, schema_dir).errors
    assert errors == [
        f"alarms.tf:{line}: aws_sns_subscription.email: unknown resource type "
        f"'aws_sns_subscription' (hashicorp/aws {v})"
        for v in ("5.32.0", "6.25.0")
    ]


def test_dangling_variable_reference(module: Path, plant: Plant, schema_dir: Path) -> None:
    line = plant(
        "main.tf",
        "  memory_size                    = each.value.memory",
        "  memory_size = var.memory_mb",
    )
    errors = run(module, schema_dir).errors
    assert errors == [f"main.tf:{line}: aws_lambda_function.this: var.memory_mb is not declared"]


def test_dangling_local_and_resource_references(
    module: Path, plant: Plant, schema_dir: Path
) -> None:
    local_line = plant(
        "outputs.tf", "  value       = var.bucket_name", "  value       = local.bucket"
    )
    res_line = plant("outputs.tf", "aws_sns_topic.alarms.arn", "aws_sns_topic.alarm.arn")
    errors = run(module, schema_dir).errors
    assert f"outputs.tf:{local_line}: output.bucket_name: local.bucket is not declared" in errors
    assert (
        f"outputs.tf:{res_line}: output.alarm_topic_arn: aws_sns_topic.alarm is not declared"
        in errors
    )


def test_attribute_a_resource_does_not_export(module: Path, plant: Plant, schema_dir: Path) -> None:
    line = plant("outputs.tf", "aws_sqs_queue.failures.url", "aws_sqs_queue.failures.uri")
    errors = run(module, schema_dir).errors
    assert errors == [
        f"outputs.tf:{line}: output.failures_queue_url: aws_sqs_queue.failures has no attribute "
        f"'uri' (hashicorp/aws {v})"
        for v in ("5.32.0", "6.25.0")
    ]


def test_unused_variable(module: Path, schema_dir: Path) -> None:
    with (module / "variables.tf").open("a", encoding="utf-8") as fh:
        fh.write('\nvariable "forgotten" {\n  type = string\n}\n')
    lines = (module / "variables.tf").read_text(encoding="utf-8").splitlines()
    line = lines.index('variable "forgotten" {') + 1
    errors = run(module, schema_dir).errors
    assert errors == [f"variables.tf:{line}: variable.forgotten: declared but never used"]


def test_argument_inside_a_local_module_is_named_with_its_path(
    module: Path, plant: Plant, schema_dir: Path
) -> None:
    file = "modules/function_schedule/main.tf"
    line = plant(file, "  schedule_expression = var.", "  schedule_expresion = var.")
    errors = run(module, schema_dir).errors
    for v in ("5.32.0", "6.25.0"):
        assert (
            f"{file}:{line}: aws_scheduler_schedule.this: 'schedule_expresion' is not an "
            f"argument or block of aws_scheduler_schedule (hashicorp/aws {v})"
        ) in errors


def test_module_call_arguments_match_the_module_variables(
    module: Path, plant: Plant, schema_dir: Path
) -> None:
    line = plant("drill.tf", "  maximum_retry_attempts       = 0", "  max_retry_attempts = 0")
    header = plant("drill.tf", 'module "drill_schedule" {', 'module "drill_schedule" {')
    assert run(module, schema_dir).errors == [
        f"drill.tf:{line}: module.drill_schedule: the module has no variable 'max_retry_attempts'",
        f"drill.tf:{header}: module.drill_schedule: required variable 'maximum_retry_attempts' "
        "is not set",
    ]


def test_module_output_that_does_not_exist(module: Path, plant: Plant, schema_dir: Path) -> None:
    line = plant("outputs.tf", "module.backup_role.arn", "module.backup_role.role_arn")
    assert run(module, schema_dir).errors == [
        f"outputs.tf:{line}: output.backup_role_arn: module.backup_role has no output 'role_arn'"
    ]


def test_moved_blocks_lead_from_gone_addresses_to_declared_resources(
    module: Path, plant: Plant, schema_dir: Path
) -> None:
    gone = plant(
        "moved.tf",
        "  to   = module.drill_role.aws_iam_role.this\n",
        "  to   = module.drill_role.aws_iam_role.that\n",
    )
    key = plant(
        "moved.tf",
        "  to   = module.vault_role[0].aws_iam_role.this\n",
        "  to   = module.vault_role.aws_iam_role.this\n",
    )
    still = plant("moved.tf", "  from = aws_iam_role.backup\n", "  from = aws_iam_role.scheduler\n")
    assert sorted(run(module, schema_dir).errors) == sorted(
        [
            f"moved.tf:{gone}: moved: module.drill_role.aws_iam_role.that: "
            "aws_iam_role.that is not declared there",
            f"moved.tf:{key}: moved: module.vault_role.aws_iam_role.this: module.vault_role: "
            "the instance key does not match its count/for_each",
            f"moved.tf:{still}: moved: aws_iam_role.scheduler is still declared",
        ]
    )
