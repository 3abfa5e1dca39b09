"""Check the Terraform module against the AWS provider's schema, offline.

For every ``resource`` and ``data`` block, against each provider version built by
``make provider-schemas`` (the floor and the newest of the ``versions.tf`` constraint):
the type exists, every argument and nested block (``dynamic`` ones included) exists,
every required argument and block is set. Across the module: every ``var.``,
``local.``, ``data.`` and resource reference names something declared, the attribute
read from a resource or data source exists, and every variable and local is used.
Local modules (``source = "./..."``) are checked the same way, once each; a module call
must set every variable the module requires and nothing it does not declare, a
``module.<name>.<output>`` reference must name a declared output, and a ``moved`` block
must lead from an address no longer declared to a resource that is.

    python -m deploy.checks.terraform_schema [MODULE_DIR] [SCHEMA_DIR]

Prints what it checked; exits 1 with ``file:line: problem`` lines on any finding.
What this cannot see (values AWS accepts, quotas, names taken) is left to
``terraform plan`` in an account: see deploy/README.md.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.checks.hcl import (
    MODULE_META,
    Block,
    blocks_of,
    dynamic_blocks,
    expressions,
    load_module,
    local_source,
    strings,
)
from deploy.checks.provider_schema import SCHEMA_DIR, load_schemas

MODULE_DIR = Path(__file__).resolve().parent.parent / "terraform"

#: Arguments Terraform itself gives every resource and data block.
META_ARGUMENTS = {"count", "for_each", "provider", "depends_on", "lifecycle"}

_VAR = re.compile(r"(?<![\w.])var\.(\w+)")
_LOCAL = re.compile(r"(?<![\w.])local\.(\w+)")
_RESOURCE = re.compile(r"(?<![\w.])(data\.)?(aws_\w+)\.(\w+)(?:\[[^\]]*\])?(?:\.(\w+))?")
_MODULE = re.compile(r"(?<![\w.])module\.(\w+)(?:\[[^\]]*\])?(?:\.(\w+))?")
#: ``module.a[0].module.b.aws_x.y[0]``: the module path and the resource of an address.
_ADDRESS = re.compile(r"((?:module\.\w+(?:\[[^\]]*\])?\.)*)(aws_\w+\.\w+)(\[[^\]]*\])?")


@dataclass
class Report:
    """Findings (``file:line: ...``) and counts of what was checked."""

    errors: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    def error(self, block: Block, line: int, message: str) -> None:
        text = f"{block.file or block.path.name}:{line}: {block.address}: {message}"
        if text not in self.errors:
            self.errors.append(text)


def _check_body(
    report: Report,
    block: Block,
    schema: dict[str, Any],
    struct_key: str,
    body: dict[str, Any],
    path: tuple[str, ...],
    version: str,
    top: bool,
) -> None:
    struct = schema["structs"][struct_key]
    attributes: dict[str, bool] = struct["attributes"]
    nested: dict[str, dict[str, Any]] = struct["blocks"]
    dynamic = list(dynamic_blocks(body))
    present = set(body) | {label for label, _ in dynamic}
    for key, value in body.items():
        if key == "dynamic" or (top and key in META_ARGUMENTS):
            continue
        if key in attributes:
            report.counts["arguments"] += 1
        elif key in nested:
            report.counts["nested blocks"] += 1
            for inner in blocks_of(value):
                _check_body(
                    report,
                    block,
                    schema,
                    nested[key]["struct"],
                    inner,
                    (*path, key),
                    version,
                    False,
                )
        else:
            what = ".".join((*path, key))
            report.error(
                block,
                block.line_of(*path, key),
                f"'{what}' is not an argument or block of {block.labels[0]} "
                f"(hashicorp/aws {version})",
            )
    for label, content in dynamic:
        if label not in nested:
            report.error(
                block,
                block.line_of(*path, label),
                f"dynamic '{'.'.join((*path, label))}' is not a block of {block.labels[0]} "
                f"(hashicorp/aws {version})",
            )
            continue
        report.counts["nested blocks"] += 1
        _check_body(
            report, block, schema, nested[label]["struct"], content, (*path, label), version, False
        )
    required = [a for a, req in attributes.items() if req] + [
        b for b, s in nested.items() if s["required"]
    ]
    for name in required:
        if name not in present:
            where = ".".join((*path, name))
            report.error(
                block,
                block.line_of(*path),
                f"required argument '{where}' is missing (hashicorp/aws {version})",
            )


def check_schema(blocks: list[Block], schemas: list[dict[str, Any]], report: Report) -> None:
    """Types, arguments, nested blocks and required arguments of every resource/data block."""
    for block in blocks:
        if block.kind not in ("resource", "data"):
            continue
        report.counts[f"{block.kind} blocks"] += 1
        for index, schema in enumerate(schemas):
            # Counted once: the other versions check the same arguments again.
            into = report if index == 0 else Report(errors=report.errors)
            version = schema["provider_version"]
            known = schema[block.kind]
            if block.labels[0] not in known:
                kind = "resource type" if block.kind == "resource" else "data source"
                into.error(
                    block,
                    block.line,
                    f"unknown {kind} '{block.labels[0]}' (hashicorp/aws {version})",
                )
                continue
            config = known[block.labels[0]]["config"]
            _check_body(into, block, schema, config, block.body, (), version, True)


def check_references(
    blocks: list[Block],
    schemas: list[dict[str, Any]],
    report: Report,
    children: dict[str, list[Block]] | None = None,
) -> None:
    """Every reference resolves to a declared block, and every variable and local is read.
    ``children``: the blocks of each local module call's module, by call name."""
    children = children or {}
    variables = {b.labels[0] for b in blocks if b.kind == "variable"}
    locals_ = {name for b in blocks if b.kind == "locals" for name in b.body}
    declared = {b.address for b in blocks if b.kind in ("resource", "data")}
    calls = {b.labels[0] for b in blocks if b.kind == "module"}
    used_vars: set[str] = set()
    used_locals: set[str] = set()
    for block in blocks:
        if block.kind == "moved":
            continue  # addresses, not references: check_moved
        if block.kind == "variable":
            # Only a validation block reads anything in a variable (its own var.<name>).
            body: Any = block.body.get("validation", [])
        else:
            body = block.body
        for text in strings(body):
            for expr in expressions(text):
                for name in _VAR.findall(expr):
                    used_vars.add(name)
                    report.counts["references"] += 1
                    if name not in variables:
                        line = block.line_containing(f"var.{name}")
                        report.error(block, line, f"var.{name} is not declared")
                for name in _LOCAL.findall(expr):
                    used_locals.add(name)
                    report.counts["references"] += 1
                    if name not in locals_:
                        line = block.line_containing(f"local.{name}")
                        report.error(block, line, f"local.{name} is not declared")
                for data, rtype, name, attr in _RESOURCE.findall(expr):
                    report.counts["references"] += 1
                    address = f"{data}{rtype}.{name}"
                    if address not in declared:
                        report.error(
                            block, block.line_containing(address), f"{address} is not declared"
                        )
                    elif attr:
                        _check_readable(report, block, schemas, data, rtype, address, attr)
                for name, output in _MODULE.findall(expr):
                    report.counts["references"] += 1
                    line = block.line_containing(f"module.{name}")
                    if name not in calls:
                        report.error(block, line, f"module.{name} is not declared")
                    elif output and name in children:
                        outputs = {b.labels[0] for b in children[name] if b.kind == "output"}
                        if output not in outputs:
                            report.error(block, line, f"module.{name} has no output '{output}'")
    for block in blocks:
        if block.kind == "variable" and block.labels[0] not in used_vars:
            report.error(block, block.line, "declared but never used")
        if block.kind == "locals":
            for name in sorted(set(block.body) - used_locals):
                report.error(block, block.line_of(name), f"local.{name} is declared but never used")


def check_module_calls(
    blocks: list[Block], children: dict[str, list[Block]], report: Report
) -> None:
    """A module call sets every variable its module requires and only declared ones."""
    for call in blocks:
        if call.kind != "module" or call.labels[0] not in children:
            continue
        report.counts["module calls"] += 1
        child = {b.labels[0]: b for b in children[call.labels[0]] if b.kind == "variable"}
        given = set(call.body) - MODULE_META
        for name in sorted(given - set(child)):
            report.error(call, call.line_of(name), f"the module has no variable '{name}'")
        for name in sorted(set(child) - given):
            if "default" not in child[name].body:
                report.error(call, call.line, f"required variable '{name}' is not set")


def _resolve(
    address: str, blocks: list[Block], children: dict[str, list[Block]]
) -> tuple[bool, str]:
    """Whether a moved address names a declared resource, and why not."""
    match = _ADDRESS.fullmatch(address)
    if not match:
        return False, "is not a resource address"
    scope, path = blocks, match.group(1)
    for step in re.findall(r"module\.(\w+)(\[[^\]]*\])?\.", path):
        call = next((b for b in scope if b.kind == "module" and b.labels[0] == step[0]), None)
        if call is None:
            return False, f"module.{step[0]} is not declared"
        if bool(step[1]) != bool({"count", "for_each"} & set(call.body)):
            return False, f"module.{step[0]}: the instance key does not match its count/for_each"
        scope = children.get(step[0], [])
    resource = next(
        (b for b in scope if b.kind == "resource" and b.address == match.group(2)), None
    )
    if resource is None:
        return False, f"{match.group(2)} is not declared there"
    if bool(match.group(3)) != bool({"count", "for_each"} & set(resource.body)):
        return False, f"{match.group(2)}: the instance key does not match its count/for_each"
    return True, ""


def check_moved(blocks: list[Block], children: dict[str, list[Block]], report: Report) -> None:
    """``moved``: from an address nothing declares any more to a declared resource."""
    for block in blocks:
        if block.kind != "moved":
            continue
        report.counts["moved blocks"] += 1
        source, target = (
            str(block.body[k]).removeprefix("${").removesuffix("}") for k in ("from", "to")
        )
        if _resolve(source, blocks, children)[0]:
            report.error(block, block.line_of("from"), f"{source} is still declared")
        found, why = _resolve(target, blocks, children)
        if not found:
            report.error(block, block.line_of("to"), f"{target}: {why}")


def _check_readable(
    report: Report,
    block: Block,
    schemas: list[dict[str, Any]],
    data: str,
    rtype: str,
    address: str,
    attr: str,
) -> None:
    for schema in schemas:
        known = schema["data" if data else "resource"].get(rtype)
        if known is None:
            continue  # reported on the block itself
        readable = {r.replace("_", "") for r in known["readable"]} | {"id"}
        if attr.replace("_", "") not in readable:
            version = schema["provider_version"]
            line = block.line_containing(address)
            report.error(
                block, line, f"{address} has no attribute '{attr}' (hashicorp/aws {version})"
            )


def check(module_dir: Path = MODULE_DIR, schema_dir: Path = SCHEMA_DIR) -> Report:
    """Run every check of this module; the report holds the findings and the counts."""
    schemas = load_schemas(schema_dir)
    if not schemas:
        raise FileNotFoundError(f"no provider schema in {schema_dir}: run `make provider-schemas`")
    report = Report()
    report.counts["provider versions"] = len(schemas)
    _check_module(module_dir, module_dir, schemas, report, set())
    return report


def _check_module(
    directory: Path, root: Path, schemas: list[dict[str, Any]], report: Report, seen: set[Path]
) -> None:
    """One module and, once each, the local modules it calls."""
    seen.add(directory.resolve())
    blocks = load_module(directory, root)
    sources = {b.labels[0]: local_source(b) for b in blocks if b.kind == "module"}
    children = {
        name: load_module(source, root) for name, source in sources.items() if source is not None
    }
    check_schema(blocks, schemas, report)
    check_references(blocks, schemas, report, children)
    check_module_calls(blocks, children, report)
    check_moved(blocks, children, report)
    report.counts["variables"] += sum(1 for b in blocks if b.kind == "variable")
    for source in sources.values():
        if source is not None and source.resolve() not in seen:
            report.counts["modules"] += 1
            _check_module(source, root, schemas, report, seen)


def main(argv: list[str]) -> int:
    module_dir = Path(argv[0]) if argv else MODULE_DIR
    schema_dir = Path(argv[1]) if len(argv) > 1 else SCHEMA_DIR
    report = check(module_dir, schema_dir)
    versions = ", ".join(s["provider_version"] for s in load_schemas(schema_dir))
    c = report.counts
    print(
        f"terraform schema: {c['resource blocks']} resource and {c['data blocks']} data blocks, "
        f"{c['arguments']} arguments and {c['nested blocks']} nested blocks checked against "
        f"hashicorp/aws {versions}; {c['references']} references and {c['variables']} "
        f"variables resolved; {c['modules']} local modules, {c['module calls']} module calls "
        f"and {c['moved blocks']} moved blocks checked"
    )
    for error in report.errors:
        print(error)
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
