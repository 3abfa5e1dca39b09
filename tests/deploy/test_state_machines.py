"""The state machine templates in deploy/statemachine/, rendered the way Terraform's
templatefile() renders them: consistent definitions that follow the handler contract
(asl-validator checks the language itself in ``make deploy-check``)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from deploy.checks.hcl import unquote
from tests.deploy.asl_support import (
    STATEMACHINES,
    iter_states,
    render_asl,
)
from tests.deploy.terraform_support import Module

LAMBDA_ERRORS = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
}


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

    # A dry run's answer (dry_run true) ends the execution: no shard, no Finalize.
    assert states["Plan"]["Next"] == "PlanDryRun"
    assert states["PlanDryRun"]["Choices"][0]["Next"] == "DryRunStatus"
    assert states["PlanDryRun"]["Default"] == "PlanStatus"
    assert states["DryRunSucceeded"] == {
        "Type": "Succeed",
        "Comment": states["DryRunSucceeded"]["Comment"],
        "OutputPath": "$.plan",
    }
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
