"""Render the state machine templates the way Terraform's ``templatefile`` does.

CI validates the rendered JSON (asl-validator, tests/deploy/), since the
templates hold unquoted numbers (``${max_concurrency}``) and are not JSON
until rendered. Only the subset of the template language the files use is
supported: ``${name}`` interpolation and the ``$${`` escape; anything else
(``%{`` directives, expressions) is refused so the two never drift apart.

    python deploy/render_asl.py build/asl      # writes build/asl/<name>.asl.json
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
STATEMACHINE_DIR = HERE / "statemachine"

_ACCOUNT = "123456789012"
_REGION = "eu-west-1"


def _fn(name: str) -> str:
    return f"arn:aws:lambda:{_REGION}:{_ACCOUNT}:function:ddb-backup-prod-{name}"


#: Sample values with the same keys main.tf passes to templatefile().
SAMPLE_VARS: dict[str, dict[str, object]] = {
    "restore.asl.json": {
        "plan_function_arn": _fn("restore-plan"),
        "restore_function_arn": _fn("restore"),
        "finalize_function_arn": _fn("restore-finalize"),
        "max_concurrency": 10,
        "tolerated_failure_percentage": 100,
        "resume_wait_seconds": 5,
        "max_resume_rounds": 50,
    },
    "backup.asl.json": {
        "backup_function_arn": _fn("backup"),
        "backup_wait_seconds": 120,
        "backup_max_rounds": 12,
    },
}

_TOKEN = re.compile(r"\$\$\{|\$\{([^}]*)\}|%\{")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def render(template: str, variables: Mapping[str, object]) -> str:
    """Substitute ``${name}``; an unknown name or an unsupported construct is an error."""

    def sub(match: re.Match[str]) -> str:
        found = match.group(0)
        if found == "$${":
            return "${"
        if found == "%{":
            raise ValueError("template directives (%{...}) are not supported")
        name = match.group(1).strip()
        if not _NAME.fullmatch(name):
            raise ValueError(f"only plain variables are supported, not ${{{name}}}")
        if name not in variables:
            raise KeyError(f"template variable {name!r} is not given")
        return str(variables[name])

    return _TOKEN.sub(sub, template)


def placeholders(template: str) -> set[str]:
    """Every ``${name}`` a template uses."""
    return {m.group(1).strip() for m in _TOKEN.finditer(template) if m.group(1) is not None}


def render_file(name: str, variables: Mapping[str, object] | None = None) -> dict[str, Any]:
    """Render ``statemachine/<name>`` and parse it as JSON."""
    text = (STATEMACHINE_DIR / name).read_text(encoding="utf-8")
    rendered = render(text, SAMPLE_VARS[name] if variables is None else variables)
    document: dict[str, Any] = json.loads(rendered)
    return document


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else Path("build/asl")
    out.mkdir(parents=True, exist_ok=True)
    for name in sorted(SAMPLE_VARS):
        document = render_file(name)
        (out / name).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"rendered {out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
