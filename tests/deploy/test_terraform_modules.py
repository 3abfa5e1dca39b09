"""The local modules of deploy/terraform/modules/: every function role and direct
schedule is one call of them, each role writes only its own functions' log groups, and
the moved blocks carry every resource a deployment made before the modules holds."""

from __future__ import annotations

import re

from deploy.checks.hcl import unquote
from tests.deploy.terraform_support import (
    NO_RESOURCE_LEVEL,
    TERRAFORM,
    Module,
    actions_of,
    resources_of,
)

#: The addresses before the modules, and where each one lives now.
MOVED = {
    **{
        f"aws_iam_role{kind}.{role}": f"module.{role}_role.aws_iam_role{kind}.this"
        for role in ("backup", "restore", "incremental", "drill")
        for kind in ("", "_policy")
    },
    "aws_iam_role.vault[0]": "module.vault_role[0].aws_iam_role.this",
    "aws_iam_role_policy.vault[0]": "module.vault_role[0].aws_iam_role_policy.this",
    **{
        f"aws_iam_role{kind}.{name}_scheduler": f"module.{name}_schedule.aws_iam_role{kind}.this"
        for name in ("drill", "incremental")
        for kind in ("", "_policy")
    },
    "aws_scheduler_schedule.drill": "module.drill_schedule.aws_scheduler_schedule.this",
    "aws_scheduler_schedule.incremental": "module.incremental_schedule.aws_scheduler_schedule.this",
    "aws_iam_role.vault_scheduler[0]": "module.vault_schedule[0].aws_iam_role.this",
    "aws_iam_role_policy.vault_scheduler[0]": "module.vault_schedule[0].aws_iam_role_policy.this",
    "aws_scheduler_schedule.vault[0]": "module.vault_schedule[0].aws_scheduler_schedule.this",
}

ROLE_NAMES = ("backup", "restore", "incremental", "drill", "vault")


def _expr(value: str) -> str:
    return str(value).removeprefix("${").removesuffix("}")


def test_every_old_address_is_moved_into_its_module(tf: Module) -> None:
    moved = {_expr(m["from"]): _expr(m["to"]) for m in tf.moved}
    assert len(moved) == len(tf.moved)  # no address moved twice
    assert moved == MOVED
    for old, new in moved.items():
        rtype, name = re.sub(r"\[\d+\]$", "", old).split(".")
        assert (rtype, name) not in tf.resources, f"{old} is still declared"
        call = re.match(r"module\.(\w+)", new)
        assert call, new
        child = tf.child(call.group(1))
        rtype, name = new.split(".")[-2:]
        assert (rtype, name) in child.resources, new


def _roles_of_functions(tf: Module) -> dict[str, set[str]]:
    """Role module call -> the functions (keys of local.functions and vault) using it."""
    roles: dict[str, set[str]] = {}
    for key, fn in tf.locals["functions"].items():
        call = re.fullmatch(r"\$\{module\.(\w+)\.arn\}", fn["role_arn"])
        assert call, (key, fn["role_arn"])
        roles.setdefault(call.group(1), set()).add(key)
    assert (
        "role_arn = local.vault_enabled ? module.vault_role[0].arn"
        in (tf.locals["vault_functions"])
    )
    roles["vault_role"] = {"vault"}
    return roles


def test_each_role_writes_only_the_log_groups_of_its_functions(tf: Module) -> None:
    roles = _roles_of_functions(tf)
    calls = {n: c for n, c in tf.modules.items() if c["source"] == '"./modules/function_role"'}
    assert set(calls) == set(roles) == {f"{r}_role" for r in ROLE_NAMES}
    for name, call in calls.items():
        assert unquote(call["name"]) == name.removesuffix("_role")
        assert call["policy_json"] == (
            f"${{data.aws_iam_policy_document.{name.removesuffix('_role')}.json}}"
        )
        logs = str(call["log_group_arns"])
        assert "aws_cloudwatch_log_group.lambda[" in logs
        assert set(re.findall(r'"([a-z-]+)"', logs)) == roles[name], name


def test_function_role_module_adds_only_what_every_function_needs() -> None:
    """The module's own statements: no data access (that is each function's document,
    which the least-privilege check compares with its code), the queue, its logs, X-Ray."""
    role = Module(TERRAFORM / "modules" / "function_role")
    statements = role.policy_statements("this")
    by_sid = {unquote(st["sid"]): st for st in statements}
    assert set(by_sid) == {"AsyncFailures", "InfraKey", "Logs", "Tracing"}
    actions = {a for st in statements for a in actions_of(st)}
    assert not any(a.split(":")[0] in ("s3", "dynamodb") for a in actions), actions
    assert resources_of(by_sid["AsyncFailures"]) == ["${var.context.failures_queue_arn}"]
    assert resources_of(by_sid["Logs"]) == ['${[for arn in var.log_group_arns : "${arn}:*"]}']
    assert resources_of(by_sid["InfraKey"]) == ["${statement.value}"]
    for st in statements:
        if "*" in resources_of(st):
            assert set(actions_of(st)) <= NO_RESOURCE_LEVEL, st
    doc = role.data[("aws_iam_policy_document", "this")]
    assert doc["source_policy_documents"] == ["${var.policy_json}"]


def test_each_schedule_invokes_only_its_own_function(tf: Module) -> None:
    calls = {n: c for n, c in tf.modules.items() if c["source"] == '"./modules/function_schedule"'}
    assert set(calls) == {"drill_schedule", "incremental_schedule", "vault_schedule"}
    for name, call in calls.items():
        key = unquote(call["name"])
        assert name == f"{key}_schedule"
        assert call["function_arn"] == f'${{aws_lambda_function.this["{key}"].arn}}'
    schedule = tf.child("drill_schedule")
    invokes = [
        st for st in schedule.policy_statements("this") if "lambda:InvokeFunction" in actions_of(st)
    ]
    assert [resources_of(st) for st in invokes] == [["${var.function_arn}"]]
    assert {a for st in schedule.policy_statements("this") for a in actions_of(st)} == {
        "lambda:InvokeFunction",
        "sqs:SendMessage",
        "kms:GenerateDataKey",
        "kms:Decrypt",
    }
