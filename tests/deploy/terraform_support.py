"""The Terraform module as the deploy tests read it: every block of every .tf file,
keyed the way Terraform addresses them (and the local modules it calls), and the
actions and resources of a statement."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import hcl2

from deploy.checks.hcl import unquote
from tests.support.paths import ROOT

TERRAFORM = ROOT / "deploy" / "terraform"

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


class Module:
    """Every block of every .tf file, keyed the way Terraform addresses them."""

    def __init__(self, directory: Path) -> None:
        self.resources: dict[tuple[str, str], dict[str, Any]] = {}
        self.data: dict[tuple[str, str], dict[str, Any]] = {}
        self.variables: dict[str, dict[str, Any]] = {}
        self.locals: dict[str, Any] = {}
        #: ``module "<name>"`` blocks: the call's arguments (source, count, variables).
        self.modules: dict[str, dict[str, Any]] = {}
        self.moved: list[dict[str, Any]] = []
        self.directory = directory
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
            for block in doc.get("module", []):
                for name, body in block.items():
                    self.modules[unquote(name)] = body
            self.moved.extend(doc.get("moved", []))
            for block in doc.get("locals", []):
                self.locals.update({k: v for k, v in block.items() if k != "__comments__"})

    def resource(self, rtype: str, name: str) -> dict[str, Any]:
        return self.resources[(rtype, name)]

    def child(self, call: str) -> Module:
        """The local module that ``module "<call>"`` runs."""
        source = unquote(self.modules[call]["source"])
        assert source.startswith("./"), source
        return Module(self.directory / source)

    def policy_statements(self, name: str) -> list[dict[str, Any]]:
        """Statements of ``data.aws_iam_policy_document.<name>``, dynamic ones included."""
        doc = self.data[("aws_iam_policy_document", name)]
        out = list(doc.get("statement", []))
        for dyn in doc.get("dynamic", []):
            for label, body in dyn.items():
                assert unquote(label) == "statement"
                out.extend(body["content"])
        return out


def actions_of(statement: dict[str, Any]) -> list[str]:
    actions = unquote(statement.get("actions", []))
    if isinstance(actions, str):  # an expression, e.g. concat([...], cond ? [...] : [])
        return re.findall(r'"([a-z0-9-]+:[A-Za-z*]+)"', actions)
    return [str(a) for a in actions]


def resources_of(statement: dict[str, Any]) -> list[str]:
    res = unquote(statement.get("resources", []))
    return [str(r) for r in (res if isinstance(res, list) else [res])]
