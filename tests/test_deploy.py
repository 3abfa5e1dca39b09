"""Invariants of the deployment in deploy/: the Terraform module (parsed with
python-hcl2, no terraform binary needed) and the state machine templates
(rendered the way Terraform's templatefile() renders them).

asl-validator and checkov run in ``make deploy-check``; these tests hold what
those tools cannot know: the handler contract, least privilege, and that the
lifecycle rule, the policies and the functions all use the one exports prefix.
"""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import json
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import hcl2
import pytest

import handlers.backup
import handlers.restore
from ddb_backup.aws import aws_clients
from ddb_backup.backup import Polling
from ddb_backup.config import DEFAULT_PREFIX, BackupConfig, RestoreConfig
from ddb_backup.metrics import NAMESPACE
from handlers.common import deadline_seconds, working_seconds
from tests.conftest import BUCKET
from tests.support.backups import ENVIRONMENT, PREFIX, make_backup
from tests.support.data import (
    canonical,
    create_table,
    every_type_items,
    put_items,
    scan_all,
    table_name,
)
from tests.support.lambda_context import FakeContext

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
TERRAFORM = DEPLOY / "terraform"
STATEMACHINES = DEPLOY / "statemachine"

LAMBDA_ERRORS = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
}
#: Actions that support no resource-level permission, the only ones allowed on "*".
NO_RESOURCE_LEVEL = {
    "dynamodb:ListExports",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
}
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
# Loading
# ---------------------------------------------------------------------------


def _load(name: str) -> ModuleType:
    """deploy/ is not a package: load its scripts by path."""
    spec = importlib.util.spec_from_file_location(name, DEPLOY / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while being created
    spec.loader.exec_module(module)
    return module


render_asl = _load("render_asl")
asl_local = _load("asl_local")


def unquote(value: Any) -> Any:
    """python-hcl2 keeps string literals quoted (``'"x"'``); expressions stay ``${...}``."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if isinstance(value, list):
        return [unquote(v) for v in value]
    return value


class Module:
    """Every block of every .tf file, keyed the way Terraform addresses them."""

    def __init__(self, directory: Path) -> None:
        self.resources: dict[tuple[str, str], dict[str, Any]] = {}
        self.data: dict[tuple[str, str], dict[str, Any]] = {}
        self.variables: dict[str, dict[str, Any]] = {}
        self.locals: dict[str, Any] = {}
        self.files = sorted(directory.glob("*.tf"))
        for path in self.files:
            with path.open(encoding="utf-8") as fh:
                doc = hcl2.load(fh)
            for kind, target in (("resource", self.resources), ("data", self.data)):
                for block in doc.get(kind, []):
                    for rtype, named in block.items():
                        for name, body in named.items():
                            target[(unquote(rtype), unquote(name))] = body
            for block in doc.get("variable", []):
                for name, body in block.items():
                    self.variables[unquote(name)] = body
            for block in doc.get("locals", []):
                self.locals.update({k: v for k, v in block.items() if k != "__comments__"})

    def resource(self, rtype: str, name: str) -> dict[str, Any]:
        return self.resources[(rtype, name)]

    def policy_statements(self, name: str) -> list[dict[str, Any]]:
        """Statements of ``data.aws_iam_policy_document.<name>``, dynamic ones included."""
        doc = self.data[("aws_iam_policy_document", name)]
        out = list(doc.get("statement", []))
        for dyn in doc.get("dynamic", []):
            for label, body in dyn.items():
                assert unquote(label) == "statement"
                out.extend(body["content"])
        return out


@pytest.fixture(scope="module")
def tf() -> Module:
    return Module(TERRAFORM)


def actions_of(statement: dict[str, Any]) -> list[str]:
    actions = unquote(statement.get("actions", []))
    if isinstance(actions, str):  # an expression, e.g. concat([...], cond ? [...] : [])
        return re.findall(r'"([a-z0-9-]+:[A-Za-z*]+)"', actions)
    return [str(a) for a in actions]


def resources_of(statement: dict[str, Any]) -> list[str]:
    res = unquote(statement.get("resources", []))
    return [str(r) for r in (res if isinstance(res, list) else [res])]


def iter_states(definition: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every state, those inside Map/Parallel included."""
    for name, state in definition["States"].items():
        yield name, state
        if "ItemProcessor" in state:
            yield from iter_states(state["ItemProcessor"])
        for branch in state.get("Branches", []):
            yield from iter_states(branch)


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
    assert fn["for_each"] == "${local.functions}"
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


# ---------------------------------------------------------------------------
# State machines
# ---------------------------------------------------------------------------


def _templatefile_vars(tf: Module, machine: str) -> tuple[str, set[str]]:
    definition = tf.resource("aws_sfn_state_machine", machine)["definition"]
    match = re.fullmatch(
        r'\$\{templatefile\("\$\{path\.module\}/\.\./statemachine/([\w.]+)", \{(.*)\}\)\}',
        definition,
        flags=re.S,
    )
    assert match, definition
    keys = set(re.findall(r"(\w+)\s*=", match.group(2)))
    return match.group(1), keys


@pytest.mark.parametrize("machine", ["backup", "restore"])
def test_state_machines_are_observable_and_templated(tf: Module, machine: str) -> None:
    sm = tf.resource("aws_sfn_state_machine", machine)
    assert sm["tracing_configuration"][0]["enabled"] is True
    logging = sm["logging_configuration"][0]
    assert logging["include_execution_data"] is True
    assert unquote(tf.variables["states_log_level"]["default"]) != "OFF"
    name, keys = _templatefile_vars(tf, machine)
    assert name == f"{machine}.asl.json"
    template = (STATEMACHINES / name).read_text(encoding="utf-8")
    # Terraform errors on an undefined template variable; so does the CI renderer.
    assert render_asl.placeholders(template) == keys
    assert set(render_asl.SAMPLE_VARS[name]) == keys


@pytest.mark.parametrize("name", ["backup.asl.json", "restore.asl.json"])
def test_rendered_definition_is_consistent(name: str) -> None:
    definition = render_asl.render_file(name)
    states = dict(iter_states(definition))
    assert len(states) == sum(1 for _ in iter_states(definition)), "duplicate state names"
    for state_name, state in iter_states(definition):
        for target in [state.get("Next"), state.get("Default")] + [
            c.get("Next") for c in state.get("Choices", []) + state.get("Catch", [])
        ]:
            assert target is None or target in states, (state_name, target)
        if state["Type"] == "Task":
            assert state["Resource"] == "arn:aws:states:::lambda:invoke"
            assert state["Parameters"]["FunctionName"].startswith("arn:aws:lambda:")
            retried = {e for r in state.get("Retry", []) for e in r["ErrorEquals"]}
            assert retried >= LAMBDA_ERRORS, state_name
            assert state["ResultSelector"] == {
                "statusCode.$": "$.Payload.statusCode",
                "body.$": "$.Payload.body",
            }


def test_render_refuses_unknown_variables() -> None:
    with pytest.raises(KeyError):
        render_asl.render("${nope}", {})
    with pytest.raises(ValueError, match="directives"):
        render_asl.render("%{ if x }", {})
    assert render_asl.render("$${literal} ${a}", {"a": 1}) == "${literal} 1"


def _tasks(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in iter_states(definition) if s["Type"] == "Task"}


def test_restore_machine_follows_the_contract() -> None:
    definition = render_asl.render_file("restore.asl.json")
    sample = render_asl.SAMPLE_VARS["restore.asl.json"]
    tasks = _tasks(definition)
    fn = {n: t["Parameters"]["FunctionName"] for n, t in tasks.items()}
    assert fn == {
        "Plan": sample["plan_function_arn"],
        "ResumePlan": sample["plan_function_arn"],
        "RestoreShard": sample["restore_function_arn"],
        "ResumeShard": sample["restore_function_arn"],
        "Finalize": sample["finalize_function_arn"],
    }
    # Plan gets the restore event itself; resumptions only their token.
    assert tasks["Plan"]["Parameters"]["Payload.$"] == "$.settings.restore"
    assert tasks["ResumePlan"]["Parameters"]["Payload"] == {
        "resume_token.$": "$.plan.body.resume_token"
    }
    assert tasks["RestoreShard"]["Parameters"]["Payload"] == {"shard.$": "$.shard"}
    assert tasks["ResumeShard"]["Parameters"]["Payload"] == {"resume_token.$": "$.resume_token"}
    assert tasks["Finalize"]["Parameters"]["Payload"] == {
        "restore_id.$": "$.plan.body.restore_id",
        "shard_results.$": "$.shard_results",
    }

    states = definition["States"]
    map_state = states["RestoreShards"]
    assert map_state["ItemsPath"] == "$.plan.body.shards"
    assert map_state["ItemSelector"]["shard.$"] == "$$.Map.Item.Value"
    assert map_state["ItemProcessor"]["ProcessorConfig"] == {
        "Mode": "DISTRIBUTED",
        "ExecutionType": "STANDARD",
    }
    assert map_state["MaxConcurrencyPath"] == "$.settings.max_concurrency"
    assert map_state["ResultPath"] == "$.shard_results"
    assert map_state["Next"] == "Finalize"
    assert (
        states["Defaults"]["Parameters"]["defaults"]["max_concurrency"] == sample["max_concurrency"]
    )
    # clear_existing_data belongs to Plan: the only task that receives the restore event.
    assert [n for n, t in tasks.items() if "Payload.$" in t["Parameters"]] == ["Plan"]

    inner = map_state["ItemProcessor"]["States"]
    # 202 loops back through a bounded wait to the resume call.
    assert inner["ShardStatus"]["Choices"] == [
        {"Variable": "$.result.statusCode", "NumericEquals": 202, "Next": "CountShardRound"}
    ]
    assert inner["ShardWait"]["Next"] == "ResumeShard"
    assert inner["ResumeShard"]["Next"] == "ShardStatus"
    # Every failure inside a shard is caught, so one bad shard still reaches Finalize.
    for name in ("RestoreShard", "ResumeShard"):
        assert inner[name]["Catch"] == [
            {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "ShardFailed"}
        ]
    assert inner["ShardFailed"]["Parameters"]["shard_failed"] is True
    assert inner["ShardDone"]["OutputPath"] == "$.result.body"

    plan_choices = {c.get("Next") for c in states["PlanStatus"]["Choices"]}
    assert {"RestoreShards", "CountPlanRound", "InvalidRestoreEvent"} <= plan_choices
    assert states["PlanWait"]["Next"] == "ResumePlan"
    assert states["FinalStatus"]["Choices"][0] == {
        "Variable": "$.final.statusCode",
        "NumericEquals": 200,
        "Next": "RestoreSucceeded",
    }
    assert states["RestoreSucceeded"]["OutputPath"] == "$.final"


def test_backup_machine_loops_on_202_and_ends_on_the_status() -> None:
    definition = render_asl.render_file("backup.asl.json")
    sample = render_asl.SAMPLE_VARS["backup.asl.json"]
    states = definition["States"]
    tasks = _tasks(definition)
    assert list(tasks) == ["Backup"]
    assert tasks["Backup"]["Parameters"]["FunctionName"] == sample["backup_function_arn"]
    outcomes = {c["NumericEquals"]: c["Next"] for c in states["BackupStatus"]["Choices"]}
    assert outcomes == {200: "BackupSucceeded", 202: "CountRound", 207: "BackupPartial"}
    assert states["BackupStatus"]["Default"] == "BackupFailed"
    assert states["BackupSucceeded"]["Type"] == "Succeed"
    for name in ("BackupPartial", "BackupFailed", "BackupStillRunning"):
        assert states[name]["Type"] == "Fail"
    # Later rounds name the run's date, so a run crossing midnight is finished, not restarted.
    assert states["CountRound"]["Parameters"]["event"] == {
        "backup_date.$": "$.result.body.backup_date"
    }
    assert states["WaitForExports"]["Seconds"] == sample["backup_wait_seconds"]
    assert states["WaitForExports"]["Next"] == "Backup"
    limit = states["RoundLimit"]["Choices"][0]
    assert limit["NumericGreaterThanEquals"] == sample["backup_max_rounds"]
    assert limit["Next"] == "BackupStillRunning"


# ---------------------------------------------------------------------------
# State machines, run locally (deploy/asl_local.py) with fake functions
# ---------------------------------------------------------------------------

RESTORE_ARNS = render_asl.SAMPLE_VARS["restore.asl.json"]
BACKUP_ARNS = render_asl.SAMPLE_VARS["backup.asl.json"]


def _reply(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "body": body}


def _payloads(execution: Any, arn: object) -> list[Any]:
    return [i.payload for i in execution.invocations if i.function_arn == arn]


class FakeRestore:
    """Plan (two 202 rounds), three shards (one resumed twice, one raising), finalize."""

    def __init__(self, finalize_status: int = 200) -> None:
        self.finalize_status = finalize_status
        self.finalize_input: Any = None

    def plan(self, event: dict[str, Any]) -> dict[str, Any]:
        token = event.get("resume_token")
        if token is None:
            return _reply(202, {"restore_id": "r-1", "resume_token": "plan-1"})
        if token == "plan-1":
            return _reply(202, {"restore_id": "r-1", "resume_token": "plan-2"})
        shards = [{"restore_id": "r-1", "shard_id": n} for n in range(3)]
        return _reply(200, {"restore_id": "r-1", "shards": shards})

    def restore(self, event: dict[str, Any]) -> dict[str, Any]:
        if "shard" in event:
            shard_id = event["shard"]["shard_id"]
            if shard_id == 0:
                return _reply(202, {"resume_token": "s0-1"})
            if shard_id == 1:
                raise RuntimeError("shard 1 crashed")
            return _reply(200, {"shard_id": 2, "items_written": 5})
        if event["resume_token"] == "s0-1":
            return _reply(202, {"resume_token": "s0-2"})
        return _reply(200, {"shard_id": 0, "items_written": 7})

    def finalize(self, event: dict[str, Any]) -> dict[str, Any]:
        self.finalize_input = event
        return _reply(self.finalize_status, {"restore_id": event["restore_id"], "total": 12})

    def functions(self) -> dict[object, Callable[[Any], Any]]:
        return {
            RESTORE_ARNS["plan_function_arn"]: self.plan,
            RESTORE_ARNS["restore_function_arn"]: self.restore,
            RESTORE_ARNS["finalize_function_arn"]: self.finalize,
        }


def test_fan_out_restore_drives_plan_and_shards_through_202_to_finalize() -> None:
    fake = FakeRestore()
    event = {"backup_date": "latest", "clear_existing_data": True}
    execution = asl_local.run(
        render_asl.render_file("restore.asl.json"), {"restore": event}, fake.functions()
    )
    # Plan gets the restore event once (it alone clears), then only its tokens.
    assert _payloads(execution, RESTORE_ARNS["plan_function_arn"]) == [
        event,
        {"resume_token": "plan-1"},
        {"resume_token": "plan-2"},
    ]
    assert _payloads(execution, RESTORE_ARNS["restore_function_arn"]) == [
        {"shard": {"restore_id": "r-1", "shard_id": 0}},
        {"resume_token": "s0-1"},
        {"resume_token": "s0-2"},
        {"shard": {"restore_id": "r-1", "shard_id": 1}},
        {"shard": {"restore_id": "r-1", "shard_id": 2}},
    ]
    # Finalize sees every shard: final bodies, and a failure record for the crashed one.
    assert fake.finalize_input["restore_id"] == "r-1"
    results = fake.finalize_input["shard_results"]
    assert results[0] == {"shard_id": 0, "items_written": 7}
    assert results[1]["shard"] == {"restore_id": "r-1", "shard_id": 1}
    assert results[1]["shard_failed"] is True
    assert results[1]["error"]["Error"] == "RuntimeError"
    assert results[1]["error"] == {"Error": "RuntimeError"}  # no Cause: bounded size
    assert results[2] == {"shard_id": 2, "items_written": 5}
    assert execution.output == _reply(200, {"restore_id": "r-1", "total": 12})


@pytest.mark.parametrize(("status", "error"), [(207, "RestorePartial"), (500, "RestoreFailed")])
def test_fan_out_restore_fails_the_execution_unless_finalize_says_200(
    status: int, error: str
) -> None:
    fake = FakeRestore(finalize_status=status)
    with pytest.raises(asl_local.ExecutionFailed) as info:
        asl_local.run(render_asl.render_file("restore.asl.json"), {"restore": {}}, fake.functions())
    assert info.value.error == error
    assert f"restore r-1 answered statusCode {status}" in info.value.cause


def test_fan_out_restore_refuses_input_without_a_restore_event() -> None:
    fake = FakeRestore()
    with pytest.raises(asl_local.ExecutionFailed) as info:
        asl_local.run(
            render_asl.render_file("restore.asl.json"), {"backup_date": "latest"}, fake.functions()
        )
    assert info.value.error == "InvalidInput"
    assert info.value.execution.invocations == []


def test_fan_out_restore_reports_an_invalid_event_with_its_problems() -> None:
    def plan(event: dict[str, Any]) -> dict[str, Any]:
        return _reply(400, {"error": "invalid event", "problems": ["dry_run: not a boolean"]})

    with pytest.raises(asl_local.ExecutionFailed) as info:
        asl_local.run(
            render_asl.render_file("restore.asl.json"),
            {"restore": {"dry_run": "false"}},
            {RESTORE_ARNS["plan_function_arn"]: plan},
        )
    assert info.value.error == "InvalidRestoreEvent"
    assert json.loads(info.value.cause)["problems"] == ["dry_run: not a boolean"]


def test_a_shard_that_never_finishes_becomes_a_failure_record() -> None:
    finalize_input: list[Any] = []

    def plan(event: dict[str, Any]) -> dict[str, Any]:
        return _reply(200, {"restore_id": "r-2", "shards": [{"restore_id": "r-2", "shard_id": 0}]})

    def restore(event: dict[str, Any]) -> dict[str, Any]:
        return _reply(202, {"resume_token": "again"})

    def finalize(event: dict[str, Any]) -> dict[str, Any]:
        finalize_input.append(event)
        return _reply(500, {"restore_id": "r-2"})

    with pytest.raises(asl_local.ExecutionFailed) as info:
        asl_local.run(
            render_asl.render_file("restore.asl.json"),
            {"restore": {}, "max_concurrency": 3},
            {
                RESTORE_ARNS["plan_function_arn"]: plan,
                RESTORE_ARNS["restore_function_arn"]: restore,
                RESTORE_ARNS["finalize_function_arn"]: finalize,
            },
        )
    assert info.value.error == "RestoreFailed"
    shard_calls = _payloads(info.value.execution, RESTORE_ARNS["restore_function_arn"])
    assert len(shard_calls) == 1 + RESTORE_ARNS["max_resume_rounds"]
    (record,) = finalize_input[0]["shard_results"]
    assert record["shard_failed"] is True
    assert record["error"]["Error"] == "ShardRoundsExceeded"


def test_backup_machine_finishes_a_run_by_its_date() -> None:
    answers = iter(
        [
            _reply(202, {"backup_date": "2026-01-31", "in_progress_exports": 2}),
            _reply(202, {"backup_date": "2026-01-31", "in_progress_exports": 1}),
            _reply(200, {"backup_date": "2026-01-31", "successful_exports": 2}),
        ]
    )
    execution = asl_local.run(
        render_asl.render_file("backup.asl.json"),
        {},
        {BACKUP_ARNS["backup_function_arn"]: lambda event: next(answers)},
    )
    assert _payloads(execution, BACKUP_ARNS["backup_function_arn"]) == [
        {},
        {"backup_date": "2026-01-31"},
        {"backup_date": "2026-01-31"},
    ]
    assert execution.output == _reply(200, {"backup_date": "2026-01-31", "successful_exports": 2})


@pytest.mark.parametrize(
    ("status", "error"), [(207, "BackupPartial"), (500, "BackupFailed"), (400, "BackupFailed")]
)
def test_backup_machine_fails_unless_the_backup_says_200(status: int, error: str) -> None:
    with pytest.raises(asl_local.ExecutionFailed) as info:
        asl_local.run(
            render_asl.render_file("backup.asl.json"),
            {},
            {BACKUP_ARNS["backup_function_arn"]: lambda event: _reply(status, {})},
        )
    assert info.value.error == error
    assert f"statusCode {status}" in info.value.cause


def test_backup_machine_gives_up_after_max_rounds() -> None:
    def still_running(event: dict[str, Any]) -> dict[str, Any]:
        return _reply(202, {"backup_date": "2026-01-31"})

    with pytest.raises(asl_local.ExecutionFailed) as info:
        asl_local.run(
            render_asl.render_file("backup.asl.json"),
            {},
            {BACKUP_ARNS["backup_function_arn"]: still_running},
        )
    assert info.value.error == "BackupStillRunning"
    calls = _payloads(info.value.execution, BACKUP_ARNS["backup_function_arn"])
    assert len(calls) == BACKUP_ARNS["backup_max_rounds"]


# ---------------------------------------------------------------------------
# The backup state machine with the real backup handler on the moto server
# ---------------------------------------------------------------------------

E2E_TABLES = ["mfa-api_test_u2f_global", "mfa-api_test_totp_global"]


async def _backup_tables() -> None:
    async with aws_clients() as aws:
        await aws.s3.create_bucket(Bucket=BUCKET)
        for i, name in enumerate(E2E_TABLES):
            await create_table(aws.dynamodb, name)
            await put_items(aws.dynamodb, name, every_type_items(3 + i))


async def _exports_per_table() -> list[int]:
    async with aws_clients() as aws:
        counts = []
        for name in E2E_TABLES:
            arn = (await aws.dynamodb.describe_table(TableName=name))["Table"]["TableArn"]
            counts.append(len((await aws.dynamodb.list_exports(TableArn=arn))["ExportSummaries"]))
        return counts


@pytest.fixture
def backup_env(moto: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables on a clean moto server and the environment Terraform gives the function."""
    asyncio.run(_backup_tables())
    monkeypatch.setenv("BACKUP_BUCKET", BUCKET)
    monkeypatch.setenv("ENVIRONMENT", "test")
    monkeypatch.setenv("DYNAMODB_TABLES", json.dumps(E2E_TABLES))
    monkeypatch.setenv("S3_EXPORTS_PREFIX", DEFAULT_PREFIX)
    for name in ("EXPORT_KMS_KEY_ID", "BACKUP_BUCKET_OWNER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(handlers.backup, "POLLING", Polling(initial=0.01, maximum=0.05))
    return


def test_backup_machine_drives_the_real_handler_from_202_to_its_manifest(
    backup_env: None,
) -> None:
    contexts = iter([FakeContext(remaining_ms=0)])  # the first round runs out of time at once

    def backup_function(event: Any) -> Any:
        return handlers.backup.handler(event, next(contexts, FakeContext(remaining_ms=900_000)))

    execution = asl_local.run(
        render_asl.render_file("backup.asl.json"),
        {},
        {BACKUP_ARNS["backup_function_arn"]: backup_function},
    )

    calls = _payloads(execution, BACKUP_ARNS["backup_function_arn"])
    assert len(calls) == 2
    date = calls[1]["backup_date"]
    assert calls == [{}, {"backup_date": date}]
    assert execution.output["statusCode"] == 200
    body = execution.output["body"]
    assert body["backup_date"] == date
    assert body["successful_exports"] == 2
    assert body["total_items_exported"] == 3 + 4
    assert body["manifest_s3_key"] == f"{DEFAULT_PREFIX}/{date}/manifest.json"
    # The second round finished the first round's exports; it started none.
    assert asyncio.run(_exports_per_table()) == [1, 1]


# ---------------------------------------------------------------------------
# The fan-out restore state machine with the real restore handlers on moto
# ---------------------------------------------------------------------------

FANOUT_TABLES = {
    table_name(ENVIRONMENT, "totp"): every_type_items(30),
    table_name(ENVIRONMENT, "u2f"): every_type_items(12),
}
STALE = [{"pk": {"S": f"stale-{i}"}, "sk": {"S": "x"}} for i in range(4)]


async def _restore_setup() -> None:
    async with aws_clients() as aws:
        await aws.s3.create_bucket(Bucket=BUCKET)
        await make_backup(aws.s3, BUCKET, PREFIX, "2026-11-27", FANOUT_TABLES, files=4)
        for name in FANOUT_TABLES:
            await create_table(aws.dynamodb, name)
            await put_items(aws.dynamodb, name, STALE)


async def _tables() -> dict[str, list[dict[str, Any]]]:
    async with aws_clients() as aws:
        return {name: await scan_all(aws.dynamodb, name) for name in FANOUT_TABLES}


@pytest.fixture
def restore_env(moto: str, monkeypatch: pytest.MonkeyPatch) -> None:
    asyncio.run(_restore_setup())
    monkeypatch.setenv("BACKUP_BUCKET", BUCKET)
    monkeypatch.setenv("ENVIRONMENT", ENVIRONMENT)
    monkeypatch.setenv("S3_EXPORTS_PREFIX", PREFIX)
    monkeypatch.delenv("BACKUP_BUCKET_OWNER", raising=False)
    return


def test_fan_out_restore_with_the_real_handlers(restore_env: None) -> None:
    plan = handlers.restore.plan_handler
    finalize = handlers.restore.finalize_handler
    seen_shards: set[int] = set()

    def restore(event: Any) -> Any:
        # Each shard's first invocation has no time left, so it must answer 202 and be
        # resumed through its token; later invocations have the full 15 minutes.
        first = "shard" in event and event["shard"]["shard_id"] not in seen_shards
        if first:
            seen_shards.add(event["shard"]["shard_id"])
        context = FakeContext(remaining_ms=0 if first else 900_000)
        return handlers.restore.handler(event, context)

    event = {"backup_date": "latest", "clear_existing_data": True}
    execution = asl_local.run(
        render_asl.render_file("restore.asl.json"),
        {"restore": event},
        {
            RESTORE_ARNS["plan_function_arn"]: lambda e: plan(e, FakeContext(900_000)),
            RESTORE_ARNS["restore_function_arn"]: restore,
            RESTORE_ARNS["finalize_function_arn"]: lambda e: finalize(e, FakeContext(900_000)),
        },
    )

    assert execution.output["statusCode"] == 200, execution.output
    body = execution.output["body"]
    total = sum(len(items) for items in FANOUT_TABLES.values())
    assert body["total_items_written"] == total
    assert body["successful_restores"] == len(FANOUT_TABLES)
    tables = asyncio.run(_tables())
    for name, items in FANOUT_TABLES.items():
        assert canonical(tables[name]) == canonical(items), name
    # The event reached Plan only (the one place that clears); shards got shards/tokens.
    assert _payloads(execution, RESTORE_ARNS["plan_function_arn"])[0] == event
    shard_calls = _payloads(execution, RESTORE_ARNS["restore_function_arn"])
    assert all(set(call) in ({"shard"}, {"resume_token"}) for call in shard_calls)
    assert seen_shards
    assert any(set(call) == {"resume_token"} for call in shard_calls)


def test_fan_out_restore_with_a_crashed_shard_never_reports_success(restore_env: None) -> None:
    answers: list[Any] = []

    def restore(event: Any) -> Any:
        if event.get("shard", {}).get("shard_id") == 0:
            raise RuntimeError("the sandbox died")  # as Lambda reports an unhandled error
        return handlers.restore.handler(event, FakeContext(remaining_ms=900_000))

    def finalize(event: Any) -> Any:
        answers.append(handlers.restore.finalize_handler(event, FakeContext(900_000)))
        return answers[-1]

    with pytest.raises(asl_local.ExecutionFailed) as info:
        asl_local.run(
            render_asl.render_file("restore.asl.json"),
            {"restore": {"backup_date": "latest", "clear_existing_data": True}},
            {
                RESTORE_ARNS["plan_function_arn"]: lambda e: handlers.restore.plan_handler(
                    e, FakeContext(900_000)
                ),
                RESTORE_ARNS["restore_function_arn"]: restore,
                RESTORE_ARNS["finalize_function_arn"]: finalize,
            },
        )
    assert info.value.error in {"RestorePartial", "RestoreFailed"}
    (answer,) = answers
    assert answer["statusCode"] in {207, 500}
    total = sum(len(items) for items in FANOUT_TABLES.values())
    assert answer["body"]["total_items_written"] < total


# ---------------------------------------------------------------------------
# The local interpreter refuses what it does not implement
# ---------------------------------------------------------------------------


def _map_machine(**map_fields: Any) -> dict[str, Any]:
    """One Map over ``$.items`` whose iteration is a Task calling ``fn``."""
    processor = {
        "StartAt": "Call",
        "States": {
            "Call": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": "fn", "Payload.$": "$"},
                "End": True,
            }
        },
    }
    return {
        "StartAt": "Each",
        "States": {
            "Each": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "ItemProcessor": processor,
                "End": True,
                **map_fields,
            }
        },
    }


def _fails_on_two(item: Any) -> Any:
    if item == 2:
        raise ValueError("item two is bad")
    return item


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ItemReader", {"Resource": "arn:aws:states:::s3:getObject"}),
        ("ItemBatcher", {"MaxItemsPerBatch": 2}),
        ("ResultWriter", {"Resource": "arn:aws:states:::s3:putObject"}),
        ("Timeout", 5),
    ],
)
def test_local_runner_refuses_fields_it_does_not_implement(field: str, value: Any) -> None:
    with pytest.raises(asl_local.Unsupported, match=field):
        asl_local.run(_map_machine(**{field: value}), {"items": [1]}, {"fn": _fails_on_two})


@pytest.mark.parametrize(
    "config",
    [{"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"}, {"Mode": "PARALLEL"}],
)
def test_local_runner_refuses_processor_modes_it_does_not_implement(
    config: dict[str, str],
) -> None:
    machine = _map_machine()
    machine["States"]["Each"]["ItemProcessor"]["ProcessorConfig"] = config
    calls: list[Any] = []
    with pytest.raises(asl_local.Unsupported, match="ProcessorConfig"):
        asl_local.run(machine, {"items": [1]}, {"fn": calls.append})
    assert calls == []  # refused before the first state ran


def test_failed_iteration_without_tolerance_fails_the_map_with_its_own_error() -> None:
    with pytest.raises(asl_local.ExecutionFailed) as info:
        asl_local.run(_map_machine(), {"items": [1, 2, 3]}, {"fn": _fails_on_two})
    assert info.value.error == "ValueError"
    assert "item two is bad" in info.value.cause


def test_failed_iteration_within_tolerance_is_a_result() -> None:
    execution = asl_local.run(
        _map_machine(ToleratedFailurePercentage=50), {"items": [1, 2, 3]}, {"fn": _fails_on_two}
    )
    assert [r.get("Payload", r.get("Error")) for r in execution.output] == [1, "ValueError", 3]
    with pytest.raises(asl_local.ExecutionFailed) as info:
        asl_local.run(
            _map_machine(ToleratedFailurePercentage=10), {"items": [1, 2, 3]}, {"fn": _fails_on_two}
        )
    assert info.value.error == "States.ExceedToleratedFailureThreshold"


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
