"""Run the deploy/ state machines locally, for tests: a small interpreter of the
part of Amazon States Language (JSONPath flavour) that backup.asl.json and
restore.asl.json use, with ``lambda:invoke`` tasks calling Python functions.

It exists to test the wiring between the state machines and the handlers: which
payload each invocation receives, how 202 rounds loop, what a failed shard turns
into and what Finalize is given, with the real handlers on a moto server or with
fakes. It is not Step Functions: Retry is not replayed (an error goes straight to
Catch), Wait does not wait, and a Map runs its items one after the other.
Anything outside the subset (an unknown field, a Map processor mode other than
inline or standard distributed) raises :class:`Unsupported` before the first
state runs, so a definition cannot silently use a feature the tests never exercised.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Execution",
    "ExecutionFailed",
    "Invocation",
    "Unsupported",
    "check_definition",
    "run",
]

Handler = Callable[[Any], Any]

_MAX_TRANSITIONS = 10_000


class Unsupported(Exception):
    """The definition uses something this interpreter does not implement."""


class StatesError(Exception):
    """An error raised inside the machine (``States.*``, a task's error)."""

    def __init__(self, error: str, cause: str) -> None:
        super().__init__(f"{error}: {cause}")
        self.error = error
        self.cause = cause


class ExecutionFailed(Exception):
    """The execution ended in a Fail state or an uncaught error."""

    def __init__(self, error: str, cause: str) -> None:
        super().__init__(f"{error}: {cause}")
        self.error = error
        self.cause = cause
        #: What ran before the failure (set by :func:`run`).
        self.execution: Execution | None = None


@dataclass
class Invocation:
    function_arn: str
    payload: Any


@dataclass
class Execution:
    output: Any
    invocations: list[Invocation] = field(default_factory=list)
    visited: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------
# Paths and intrinsic functions
# ---------------------------------------------------------------------------

_SEGMENT = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]")


def _get(path: str, data: Any, context: Mapping[str, Any]) -> Any:
    if path.startswith("$$"):
        root, rest = context, path[2:]
    elif path.startswith("$"):
        root, rest = data, path[1:]
    else:
        raise Unsupported(f"path {path!r}")
    value: Any = root
    pos = 0
    while pos < len(rest):
        m = _SEGMENT.match(rest, pos)
        if not m:
            raise Unsupported(f"path {path!r}")
        try:
            value = value[m.group(1)] if m.group(1) is not None else value[int(m.group(2))]
        except (KeyError, IndexError, TypeError) as exc:
            raise StatesError("States.Runtime", f"path {path} not found") from exc
        pos = m.end()
    return value


def _present(path: str, data: Any) -> bool:
    try:
        _get(path, data, {})
    except StatesError:
        return False
    return True


def _set(path: str | None, data: Any, result: Any) -> Any:
    """Apply a ResultPath."""
    if path is None:
        return None
    if path == "$":
        return result
    keys = path[2:].split(".") if path.startswith("$.") else None
    if not keys or not isinstance(data, dict):
        raise Unsupported(f"ResultPath {path!r}")
    out = copy.deepcopy(data)
    node = out
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = result
    return out


def _split_args(text: str) -> list[str]:
    args, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(text):
        if ch == "'" and (i == 0 or text[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        elif not quoted and depth == 0 and ch == ",":
            args.append(text[start:i].strip())
            start = i + 1
    args.append(text[start:].strip())
    return [a for a in args if a]


def _eval(expr: str, data: Any, context: Mapping[str, Any]) -> Any:
    """A path, a quoted string, a number, a boolean, or an intrinsic function."""
    expr = expr.strip()
    if expr.startswith("$"):
        return _get(expr, data, context)
    if expr.startswith("'") and expr.endswith("'"):
        return expr[1:-1].replace("\\'", "'")
    if re.fullmatch(r"-?\d+(\.\d+)?", expr):
        return json.loads(expr)
    if expr in {"true", "false", "null"}:
        return json.loads(expr)
    m = re.fullmatch(r"(States\.[A-Za-z]+)\((.*)\)", expr, flags=re.S)
    if not m:
        raise Unsupported(f"expression {expr!r}")
    name, args = m.group(1), [_eval(a, data, context) for a in _split_args(m.group(2))]
    if name == "States.MathAdd":
        return args[0] + args[1]
    if name == "States.JsonMerge":
        if args[2] is not False:
            raise Unsupported("deep JsonMerge")
        return {**args[0], **args[1]}
    if name == "States.JsonToString":
        return json.dumps(args[0], separators=(",", ":"))
    if name == "States.Format":
        template, values = args[0], args[1:]
        parts = template.split("{}")
        if len(parts) != len(values) + 1:
            raise StatesError("States.IntrinsicFailure", "Format arity")
        out = parts[0]
        for value, part in zip(values, parts[1:], strict=True):
            out += (value if isinstance(value, str) else json.dumps(value)) + part
        return out
    raise Unsupported(name)


def _template(template: Any, data: Any, context: Mapping[str, Any]) -> Any:
    """Parameters / ItemSelector / ResultSelector: keys ending in ``.$`` are evaluated."""
    if isinstance(template, dict):
        out = {}
        for key, value in template.items():
            if key.endswith(".$"):
                out[key[:-2]] = _eval(value, data, context)
            else:
                out[key] = _template(value, data, context)
        return out
    if isinstance(template, list):
        return [_template(v, data, context) for v in template]
    return template


# ---------------------------------------------------------------------------
# Choice rules
# ---------------------------------------------------------------------------

_NUMERIC: dict[str, Callable[[float, float], bool]] = {
    "NumericEquals": lambda a, b: a == b,
    "NumericGreaterThan": lambda a, b: a > b,
    "NumericGreaterThanEquals": lambda a, b: a >= b,
    "NumericLessThan": lambda a, b: a < b,
}


def _matches(rule: Mapping[str, Any], data: Any) -> bool:
    if "Not" in rule:
        return not _matches(rule["Not"], data)
    if "Or" in rule:
        return any(_matches(r, data) for r in rule["Or"])
    if "And" in rule:
        return all(_matches(r, data) for r in rule["And"])
    var = rule["Variable"]
    if "IsPresent" in rule:
        return _present(var, data) is rule["IsPresent"]
    for op, fn in _NUMERIC.items():
        if op in rule:
            value = _get(var, data, {})
            return isinstance(value, int | float) and fn(value, rule[op])
    if "StringEquals" in rule:
        return bool(_get(var, data, {}) == rule["StringEquals"])
    if "BooleanEquals" in rule:
        value = _get(var, data, {})
        return isinstance(value, bool) and value is rule["BooleanEquals"]
    raise Unsupported(f"choice rule {rule}")


# ---------------------------------------------------------------------------
# What the interpreter implements: anything else is refused, never ignored
# ---------------------------------------------------------------------------

_COMMON = frozenset({"Type", "Comment"})
_FLOW = frozenset({"Next", "End"})
_IO = frozenset({"InputPath", "OutputPath"})
_RESULT = frozenset({"Parameters", "ResultSelector", "ResultPath", "Retry", "Catch"})
_FIELDS: dict[str, frozenset[str]] = {
    "Choice": _COMMON | {"Choices", "Default", "InputPath", "OutputPath"},
    "Fail": _COMMON | {"Error", "ErrorPath", "Cause", "CausePath"},
    "Succeed": _COMMON | _IO,
    "Wait": _COMMON | _FLOW | _IO | {"Seconds"},
    "Pass": _COMMON | _FLOW | _IO | {"Parameters", "Result", "ResultPath"},
    "Task": _COMMON | _FLOW | _IO | _RESULT | {"Resource"},
    # MaxConcurrency only bounds parallelism, and this runner runs items one by one.
    "Map": _COMMON
    | _FLOW
    | _IO
    | _RESULT
    | {
        "ItemsPath",
        "ItemSelector",
        "ItemProcessor",
        "Label",
        "MaxConcurrency",
        "MaxConcurrencyPath",
        "ToleratedFailurePercentage",
    },
}
_MACHINE_FIELDS = frozenset({"StartAt", "States", "Comment", "ProcessorConfig"})
_RETRY_FIELDS = frozenset(
    {"ErrorEquals", "IntervalSeconds", "MaxAttempts", "BackoffRate", "MaxDelaySeconds"}
    | {"JitterStrategy"}
)
_CATCH_FIELDS = frozenset({"ErrorEquals", "Next", "ResultPath"})
# Both run each item as its own child execution with the same semantics; only
# scale and billing differ, which a local run does not model.
_PROCESSOR_CONFIGS = (
    {},
    {"Mode": "INLINE"},
    {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
)


def _refuse_unknown(where: str, fields: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise Unsupported(f"{where}: fields {unknown} are not implemented")


def _check_state(name: str, state: Mapping[str, Any]) -> None:
    kind = state.get("Type")
    if kind not in _FIELDS:
        raise Unsupported(f"state {name}: type {kind!r}")
    _refuse_unknown(f"state {name}", state, _FIELDS[kind])
    for retrier in state.get("Retry", []):
        _refuse_unknown(f"state {name} Retry", retrier, _RETRY_FIELDS)
    for catcher in state.get("Catch", []):
        _refuse_unknown(f"state {name} Catch", catcher, _CATCH_FIELDS)
    if kind == "Map":
        processor = state["ItemProcessor"]
        if processor.get("ProcessorConfig", {}) not in _PROCESSOR_CONFIGS:
            raise Unsupported(f"state {name}: ProcessorConfig {processor['ProcessorConfig']}")
        check_definition(processor)


def check_definition(definition: Mapping[str, Any]) -> None:
    """Raise :class:`Unsupported` for any field or mode this interpreter does not run."""
    _refuse_unknown("state machine", definition, _MACHINE_FIELDS)
    for name, state in definition["States"].items():
        _check_state(name, state)


# ---------------------------------------------------------------------------
# The interpreter
# ---------------------------------------------------------------------------


class _Runner:
    def __init__(self, functions: Mapping[str, Handler], execution: Execution) -> None:
        self.functions = functions
        self.execution = execution
        self.transitions = 0

    def machine(self, definition: Mapping[str, Any], data: Any, context: dict[str, Any]) -> Any:
        states = definition["States"]
        name = definition["StartAt"]
        while True:
            self.transitions += 1
            if self.transitions > _MAX_TRANSITIONS:
                raise StatesError("Local.TooManyTransitions", "the machine does not end")
            state = states[name]
            self.execution.visited.append(name)
            try:
                data, following = self.state(state, data, context)
            except StatesError as exc:
                handler = self._catch(state, exc)
                if handler is None:
                    raise
                data = _set(
                    handler.get("ResultPath", "$"), data, {"Error": exc.error, "Cause": exc.cause}
                )
                following = handler["Next"]
            if following is None:
                return data
            name = following

    @staticmethod
    def _catch(state: Mapping[str, Any], exc: StatesError) -> Mapping[str, Any] | None:
        for catcher in state.get("Catch", []):
            errors = catcher["ErrorEquals"]
            if "States.ALL" in errors or exc.error in errors:
                return dict(catcher)
        return None

    def state(
        self, state: Mapping[str, Any], data: Any, context: dict[str, Any]
    ) -> tuple[Any, str | None]:
        kind = state["Type"]
        following = None if state.get("End") else state.get("Next")
        if kind == "Choice":
            for rule in state["Choices"]:
                if _matches(rule, data):
                    return data, rule["Next"]
            if "Default" not in state:
                raise StatesError("States.NoChoiceMatched", "no choice matched")
            return data, state["Default"]
        if kind == "Fail":
            error = state.get("Error") or _eval(state["ErrorPath"], data, context)
            cause = state.get("Cause")
            if cause is None and "CausePath" in state:
                cause = _eval(state["CausePath"], data, context)
            raise ExecutionFailed(str(error), str(cause or ""))
        if kind == "Succeed":
            return self._output(state, data, context), None
        if kind == "Wait":
            return self._output(state, data, context), following

        effective = _get(state["InputPath"], data, context) if "InputPath" in state else data
        if kind == "Pass":
            result = (
                _template(state["Parameters"], effective, context)
                if "Parameters" in state
                else state.get("Result", effective)
            )
        elif kind == "Task":
            result = self.task(state, effective, context)
        elif kind == "Map":
            result = self.map(state, effective, context)
        else:
            raise Unsupported(f"state type {kind}")
        if "ResultSelector" in state:
            result = _template(state["ResultSelector"], result, context)
        data = _set(state.get("ResultPath", "$"), data, result)
        return self._output(state, data, context), following

    @staticmethod
    def _output(state: Mapping[str, Any], data: Any, context: Mapping[str, Any]) -> Any:
        path = state.get("OutputPath", "$")
        return data if path == "$" else _get(path, data, context)

    def task(self, state: Mapping[str, Any], data: Any, context: dict[str, Any]) -> Any:
        if state["Resource"] != "arn:aws:states:::lambda:invoke":
            raise Unsupported(f"task resource {state['Resource']}")
        params = _template(state["Parameters"], data, context)
        arn, payload = params["FunctionName"], params.get("Payload")
        self.execution.invocations.append(Invocation(arn, copy.deepcopy(payload)))
        try:
            function = self.functions[arn]
        except KeyError as exc:
            raise Unsupported(f"no local function for {arn}") from exc
        try:
            # Through JSON both ways, as Lambda does.
            answer = function(json.loads(json.dumps(payload)))
            answer = json.loads(json.dumps(answer))
        except Exception as exc:  # a raised handler is Lambda's "Unhandled" error
            raise StatesError(type(exc).__name__, json.dumps({"errorMessage": str(exc)})) from exc
        return {"Payload": answer, "StatusCode": 200}

    def map(self, state: Mapping[str, Any], data: Any, context: dict[str, Any]) -> Any:
        items = _get(state["ItemsPath"], data, context)
        processor = state["ItemProcessor"]
        results: list[Any] = []
        failures: list[StatesError | ExecutionFailed] = []
        for index, item in enumerate(items):
            item_context = {**context, "Map": {"Item": {"Index": index, "Value": item}}}
            item_input = (
                _template(state["ItemSelector"], data, item_context)
                if "ItemSelector" in state
                else item
            )
            try:
                results.append(self.machine(processor, item_input, item_context))
            except (StatesError, ExecutionFailed) as exc:
                failures.append(exc)
                results.append({"Error": exc.error, "Cause": exc.cause})
        if failures and "ToleratedFailurePercentage" not in state:
            # As Step Functions does: the Map fails with the iteration's own error.
            raise StatesError(failures[0].error, failures[0].cause)
        tolerated = state.get("ToleratedFailurePercentage", 0)
        if items and len(failures) * 100 / len(items) > tolerated:
            raise StatesError("States.ExceedToleratedFailureThreshold", f"{len(failures)} failed")
        return results


def run(
    definition: Mapping[str, Any], execution_input: Any, functions: Mapping[str, Handler]
) -> Execution:
    """Run ``definition`` on ``execution_input``; raise :class:`ExecutionFailed` on failure.

    ``functions`` maps each FunctionName ARN to ``handler(event) -> response``.
    """
    check_definition(definition)
    execution = Execution(output=None)
    context: dict[str, Any] = {"Execution": {"Input": execution_input}}
    runner = _Runner(functions, execution)
    try:
        execution.output = runner.machine(definition, execution_input, context)
    except StatesError as exc:
        failed = ExecutionFailed(exc.error, exc.cause)
        failed.execution = execution
        raise failed from exc
    except ExecutionFailed as exc:
        exc.execution = execution
        raise
    return execution
