"""The local state-machine interpreter (deploy/asl_local.py) refuses what it does not
implement, and fails a Map as Step Functions does."""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.asl_support import (
    asl_local,
)


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


def test_boolean_equals_matches_only_a_json_boolean() -> None:
    machine = {
        "StartAt": "Which",
        "States": {
            "Which": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.flag", "BooleanEquals": True, "Next": "Yes"}],
                "Default": "No",
            },
            "Yes": {"Type": "Succeed"},
            "No": {"Type": "Fail", "Error": "No"},
        },
    }
    assert asl_local.run(machine, {"flag": True}, {}).visited == ["Which", "Yes"]
    for value in (False, "true", 1):
        with pytest.raises(asl_local.ExecutionFailed):
            asl_local.run(machine, {"flag": value}, {})
