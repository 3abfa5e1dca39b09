"""The state machines as the deploy tests run them: deploy/render_asl.py and
deploy/asl_local.py loaded by path, the sample function ARNs, and small helpers."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from tests.support.paths import ROOT

DEPLOY = ROOT / "deploy"
STATEMACHINES = DEPLOY / "statemachine"


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

RESTORE_ARNS = render_asl.SAMPLE_VARS["restore.asl.json"]
BACKUP_ARNS = render_asl.SAMPLE_VARS["backup.asl.json"]


def iter_states(definition: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every state, those inside Map/Parallel included."""
    for name, state in definition["States"].items():
        yield name, state
        if "ItemProcessor" in state:
            yield from iter_states(state["ItemProcessor"])
        for branch in state.get("Branches", []):
            yield from iter_states(branch)


def reply(status: int, body: dict[str, Any]) -> dict[str, Any]:
    """A handler's answer as the state machines see it."""
    return {"statusCode": status, "body": body}


def payloads(execution: Any, arn: object) -> list[Any]:
    """What one function was invoked with, in order."""
    return [i.payload for i in execution.invocations if i.function_arn == arn]
