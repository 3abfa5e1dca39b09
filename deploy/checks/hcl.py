"""The Terraform module as the checks see it: every top-level block with its file and
line, and those of the local modules it calls (``source = "./..."``), parsed with
python-hcl2 (whose versions differ in quoting and block markers, so everything here goes
through ``unquote`` and ``clean``)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hcl2

#: Keys python-hcl2 adds that are not part of the configuration.
_MARKERS = {"__is_block__", "__comments__", "__inline_comments__", "__start_line__", "__end_line__"}


def unquote(value: Any) -> Any:
    """python-hcl2 keeps string literals quoted (``'"x"'``); expressions stay ``${...}``."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if isinstance(value, list):
        return [unquote(v) for v in value]
    return value


def clean(body: dict[str, Any]) -> dict[str, Any]:
    """A block body without python-hcl2's markers, keys unquoted."""
    return {unquote(k): v for k, v in body.items() if k not in _MARKERS}


def blocks_of(value: Any) -> list[dict[str, Any]]:
    """The bodies of a nested block (python-hcl2 gives a list of dicts, or one dict)."""
    if isinstance(value, dict):
        return [clean(value)]
    if isinstance(value, list):
        return [clean(v) for v in value if isinstance(v, dict)]
    return []


def dynamic_blocks(body: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``dynamic "label" { content { ... } }``: (label, content body) pairs."""
    for dyn in blocks_of(body.get("dynamic", [])):
        for label, spec in dyn.items():
            for inner in blocks_of(spec):
                for content in blocks_of(inner.get("content", [])):
                    yield unquote(label), content


def strings(value: Any) -> Iterator[str]:
    """Every string anywhere in a parsed value (keys of objects included)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            if k not in _MARKERS:
                yield k
                yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def expressions(text: str) -> Iterator[str]:
    """The ``${...}`` parts of a string: where references can be (not in literal text)."""
    start = text.find("${")
    while start != -1:
        depth, i = 0, start + 1
        while i < len(text):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    break
            i += 1
        yield text[start + 2 : i]
        start = text.find("${", i)


@dataclass(frozen=True)
class Block:
    """One top-level block: ``resource "type" "name" {...}`` has labels (type, name)."""

    kind: str
    labels: tuple[str, ...]
    body: dict[str, Any]
    path: Path
    line: int
    #: The file as messages name it: relative to the root module (``modules/x/main.tf``).
    file: str = ""

    @property
    def where(self) -> str:
        return f"{self.file or self.path.name}:{self.line}"

    @property
    def address(self) -> str:
        if self.kind == "resource":
            return ".".join(self.labels)
        return ".".join((self.kind, *self.labels))

    def line_of(self, *keys: str) -> int:
        """Line of a nested key path (first match after the block's own line)."""
        lines = self.path.read_text(encoding="utf-8").splitlines()
        line = self.line
        for key in keys:
            pattern = re.compile(rf'^\s*("?){re.escape(key)}\1\s*(=|\{{|")')
            for number in range(line, len(lines) + 1):
                if pattern.match(lines[number - 1]):
                    line = number
                    break
        return line

    def line_containing(self, token: str) -> int:
        """First line at or after the block's own that holds ``token`` (not in a comment)."""
        lines = self.path.read_text(encoding="utf-8").splitlines()
        for number in range(self.line, len(lines) + 1):
            code = lines[number - 1].split("#", 1)[0]
            if re.search(rf"(?<![\w.]){re.escape(token)}(?!\w)", code):
                return number
        return self.line


#: Number of labels each top-level block kind has.
_LABELS = {"resource": 2, "data": 2, "variable": 1, "output": 1, "module": 1, "provider": 1}

#: Arguments of a ``module`` block that are not the child's variables.
MODULE_META = {"source", "version", "count", "for_each", "providers", "depends_on"}


def _header_lines(lines: list[str], kind: str, labels: tuple[str, ...]) -> list[int]:
    parts = [re.escape(kind)] + [rf'"?{re.escape(label)}"?' for label in labels]
    pattern = re.compile(r"^\s*" + r"\s+".join(parts) + r"\s*\{")
    return [n for n, text in enumerate(lines, start=1) if pattern.match(text)] or [1]


def _split(kind: str, value: Any, depth: int) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    if depth == 0:
        for body in blocks_of(value):
            yield (), body
        return
    for item in value if isinstance(value, list) else [value]:
        for label, inner in clean(item).items():
            for labels, body in _split(kind, inner, depth - 1):
                yield (label, *labels), body


def load_module(directory: Path, root: Path | None = None) -> list[Block]:
    """Every top-level block of every ``*.tf`` file, in file order; files are named
    relative to ``root`` (the root module of a child module; default ``directory``)."""
    blocks: list[Block] = []
    for path in sorted(directory.glob("*.tf")):
        file = path.resolve().relative_to((root or directory).resolve()).as_posix()
        lines = path.read_text(encoding="utf-8").splitlines()
        with path.open(encoding="utf-8") as fh:
            doc = hcl2.load(fh)
        seen: dict[tuple[str, ...], int] = {}
        for kind, value in clean(doc).items():
            for labels, body in _split(kind, value, _LABELS.get(kind, 0)):
                # The n-th block of a kind and labels (e.g. several locals) is the n-th header.
                nth = seen.get((kind, *labels), 0)
                seen[(kind, *labels)] = nth + 1
                headers = _header_lines(lines, kind, labels)
                line = headers[min(nth, len(headers) - 1)]
                blocks.append(Block(kind, labels, body, path, line, file))
    return blocks


def local_source(call: Block) -> Path | None:
    """The directory of a ``module`` block's local source (``./`` or ``../``), else None."""
    source = unquote(call.body.get("source", ""))
    if isinstance(source, str) and source.startswith(("./", "../")):
        return (call.path.parent / source).resolve()
    return None
