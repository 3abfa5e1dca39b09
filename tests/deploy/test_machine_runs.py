"""The state machines run locally (deploy/asl_local.py) with fake functions: the 202
loops, the fan-out through plan, shards and finalize, and every way a run fails."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.deploy.asl_support import (
    BACKUP_ARNS,
    RESTORE_ARNS,
    asl_local,
    payloads,
    render_asl,
    reply,
)


class FakeRestore:
    """Plan (two 202 rounds), three shards (one resumed twice, one raising), finalize."""

    def __init__(self, finalize_status: int = 200) -> None:
        self.finalize_status = finalize_status
        self.finalize_input: Any = None

    def plan(self, event: dict[str, Any]) -> dict[str, Any]:
        token = event.get("resume_token")
        if token is None:
            return reply(202, {"restore_id": "r-1", "resume_token": "plan-1"})
        if token == "plan-1":
            return reply(202, {"restore_id": "r-1", "resume_token": "plan-2"})
        shards = [{"restore_id": "r-1", "shard_id": n} for n in range(3)]
        return reply(200, {"restore_id": "r-1", "shards": shards})

    def restore(self, event: dict[str, Any]) -> dict[str, Any]:
        if "shard" in event:
            shard_id = event["shard"]["shard_id"]
            if shard_id == 0:
                return reply(202, {"resume_token": "s0-1"})
            if shard_id == 1:
                raise RuntimeError("shard 1 crashed")
            return reply(200, {"shard_id": 2, "items_written": 5})
        if event["resume_token"] == "s0-1":
            return reply(202, {"resume_token": "s0-2"})
        return reply(200, {"shard_id": 0, "items_written": 7})

    def finalize(self, event: dict[str, Any]) -> dict[str, Any]:
        self.finalize_input = event
        return reply(self.finalize_status, {"restore_id": event["restore_id"], "total": 12})

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
    assert payloads(execution, RESTORE_ARNS["plan_function_arn"]) == [
        event,
        {"resume_token": "plan-1"},
        {"resume_token": "plan-2"},
    ]
    assert payloads(execution, RESTORE_ARNS["restore_function_arn"]) == [
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
    assert execution.output == reply(200, {"restore_id": "r-1", "total": 12})


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
        return reply(400, {"error": "invalid event", "problems": ["dry_run: not a boolean"]})

    with pytest.raises(asl_local.ExecutionFailed) as info:
        asl_local.run(
            render_asl.render_file("restore.asl.json"),
            {"restore": {"dry_run": "false"}},
            {RESTORE_ARNS["plan_function_arn"]: plan},
        )
    assert info.value.error == "InvalidRestoreEvent"
    assert json.loads(info.value.cause)["problems"] == ["dry_run: not a boolean"]


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (207, {"status": "PARTIAL"}),
        (202, {"status": "IN_PROGRESS", "message": "dry run stopped by its deadline"}),
        (500, {"status": "FAILED"}),
    ],
)
def test_a_dry_run_that_did_not_pass_fails_the_execution_without_shards(
    status: int, body: dict[str, Any]
) -> None:
    def plan(event: Any) -> Any:
        return reply(status, {"restore_id": "r-1", "dry_run": True, **body})

    functions = {**FakeRestore().functions(), RESTORE_ARNS["plan_function_arn"]: plan}
    with pytest.raises(asl_local.ExecutionFailed) as info:
        asl_local.run(
            render_asl.render_file("restore.asl.json"), {"restore": {"dry_run": True}}, functions
        )
    # Not a resume (a dry run's 202 has no token) nor a shard: the dry run's own failure.
    assert info.value.error == "DryRunFailed"
    assert f"statusCode {status}" in info.value.cause
    execution = info.value.execution
    assert execution is not None
    assert [i.function_arn for i in execution.invocations] == [RESTORE_ARNS["plan_function_arn"]]


def test_a_shard_that_never_finishes_becomes_a_failure_record() -> None:
    finalize_input: list[Any] = []

    def plan(event: dict[str, Any]) -> dict[str, Any]:
        return reply(200, {"restore_id": "r-2", "shards": [{"restore_id": "r-2", "shard_id": 0}]})

    def restore(event: dict[str, Any]) -> dict[str, Any]:
        return reply(202, {"resume_token": "again"})

    def finalize(event: dict[str, Any]) -> dict[str, Any]:
        finalize_input.append(event)
        return reply(500, {"restore_id": "r-2"})

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
    shard_calls = payloads(info.value.execution, RESTORE_ARNS["restore_function_arn"])
    assert len(shard_calls) == 1 + RESTORE_ARNS["max_resume_rounds"]
    (record,) = finalize_input[0]["shard_results"]
    assert record["shard_failed"] is True
    assert record["error"]["Error"] == "ShardRoundsExceeded"


def test_backup_machine_finishes_a_run_by_its_date() -> None:
    answers = iter(
        [
            reply(202, {"backup_date": "2026-01-31", "in_progress_exports": 2}),
            reply(202, {"backup_date": "2026-01-31", "in_progress_exports": 1}),
            reply(200, {"backup_date": "2026-01-31", "successful_exports": 2}),
        ]
    )
    execution = asl_local.run(
        render_asl.render_file("backup.asl.json"),
        {},
        {BACKUP_ARNS["backup_function_arn"]: lambda event: next(answers)},
    )
    assert payloads(execution, BACKUP_ARNS["backup_function_arn"]) == [
        {},
        {"backup_date": "2026-01-31"},
        {"backup_date": "2026-01-31"},
    ]
    assert execution.output == reply(200, {"backup_date": "2026-01-31", "successful_exports": 2})


@pytest.mark.parametrize(
    ("status", "error"), [(207, "BackupPartial"), (500, "BackupFailed"), (400, "BackupFailed")]
)
def test_backup_machine_fails_unless_the_backup_says_200(status: int, error: str) -> None:
    with pytest.raises(asl_local.ExecutionFailed) as info:
        asl_local.run(
            render_asl.render_file("backup.asl.json"),
            {},
            {BACKUP_ARNS["backup_function_arn"]: lambda event: reply(status, {})},
        )
    assert info.value.error == error
    assert f"statusCode {status}" in info.value.cause


def test_backup_machine_gives_up_after_max_rounds() -> None:
    def still_running(event: dict[str, Any]) -> dict[str, Any]:
        return reply(202, {"backup_date": "2026-01-31"})

    with pytest.raises(asl_local.ExecutionFailed) as info:
        asl_local.run(
            render_asl.render_file("backup.asl.json"),
            {},
            {BACKUP_ARNS["backup_function_arn"]: still_running},
        )
    assert info.value.error == "BackupStillRunning"
    calls = payloads(info.value.execution, BACKUP_ARNS["backup_function_arn"])
    assert len(calls) == BACKUP_ARNS["backup_max_rounds"]
