"""The AWS provider's configuration schema, taken from ``@cdktf/provider-aws`` (npm).

That package is generated from the provider's own schema: its ``.jsii`` type manifest
holds, for every resource and data source, each argument (with the snake_case name in
its registry link), whether it is required, and the nested blocks. The package is
~400 MB unpacked, so ``make`` fetches the tarball with ``npm pack`` and this script
keeps only a compact JSON per provider version (a few MB)::

    python -m deploy.checks.provider_schema PACKAGE.tgz OUT_DIR

``load_schemas(OUT_DIR)`` reads them back for the checker.
"""

from __future__ import annotations

import json
import re
import sys
import tarfile
from pathlib import Path
from typing import Any

#: Where ``make provider-schemas`` leaves one ``aws-<provider version>.json`` per package.
SCHEMA_DIR = Path(__file__).resolve().parent.parent / ".tools" / "provider-schemas"

_LINK = re.compile(r"/docs/(resources|data-sources)/(\w+)(?:#(\w+))?[ }]")
_RESOURCE_BASES = {"cdktf.TerraformResource": "resource", "cdktf.TerraformDataSource": "data"}

Struct = dict[str, Any]


def _snake(camel: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()


def _tf_name(prop: dict[str, Any]) -> str:
    """The Terraform name of a jsii property: the anchor of its registry link."""
    docs = prop.get("docs", {})
    for text in (docs.get("summary", ""), docs.get("remarks", "")):
        match = _LINK.search(text)
        if match and match.group(3):
            return match.group(3)
    return _snake(prop["name"])


def _struct_ref(typ: dict[str, Any], types: dict[str, Any]) -> str | None:
    """The fqn of the nested block a property's type is, or None for a plain attribute."""
    if "fqn" in typ:
        fqn = typ["fqn"]
        return fqn if types.get(fqn, {}).get("datatype") else None
    if "collection" in typ:
        return _struct_ref(typ["collection"]["elementtype"], types)
    if "union" in typ:
        for member in typ["union"]["types"]:
            ref = _struct_ref(member, types)
            if ref:
                return ref
    return None


def _short(fqn: str) -> str:
    return fqn.removeprefix("@cdktf/provider-aws.")


def compact(jsii: dict[str, Any]) -> dict[str, Any]:
    """Resources, data sources and their structs, reduced to what the checker needs."""
    types: dict[str, Any] = jsii["types"]
    structs: dict[str, Struct] = {}

    def struct(fqn: str) -> str:
        key = _short(fqn)
        if key in structs:
            return key
        out: Struct = {"attributes": {}, "blocks": {}}
        structs[key] = out
        for prop in types[fqn].get("properties", []):
            required = not prop.get("optional", False)
            ref = _struct_ref(prop["type"], types)
            if ref is None:
                out["attributes"][_tf_name(prop)] = required
            else:
                out["blocks"][_tf_name(prop)] = {"required": required, "struct": struct(ref)}
        return key

    kinds: dict[str, dict[str, Any]] = {"resource": {}, "data": {}}
    for typ in types.values():
        kind = _RESOURCE_BASES.get(typ.get("base", ""))
        if kind is None or "initializer" not in typ:
            continue
        match = _LINK.search(typ["docs"].get("summary", ""))
        if not match:
            continue
        tf_type = "aws_" + match.group(2)
        config = next(p for p in typ["initializer"]["parameters"] if p["name"] == "config")
        readable = {
            _snake(p["name"])
            for p in typ.get("properties", [])
            if not p.get("static") and not p["name"].endswith("Input")
        }
        kinds[kind][tf_type] = {
            "config": struct(config["type"]["fqn"]),
            "readable": sorted(readable),
        }
    return {
        "package_version": jsii["version"],
        "provider_version": _provider_version(jsii),
        "resource": kinds["resource"],
        "data": kinds["data"],
        "structs": structs,
    }


def _provider_version(jsii: dict[str, Any]) -> str:
    for typ in jsii["types"].values():
        found = re.search(r"/providers/hashicorp/aws/([0-9.]+)/docs/", json.dumps(typ["docs"]))
        if found:
            return found.group(1)
    raise ValueError("no provider version in the package's docs links")


def build(tarball: Path, out_dir: Path) -> Path:
    """Read ``package/.jsii`` out of the npm tarball; write ``aws-<version>.json``."""
    with tarfile.open(tarball, "r:gz") as tar:
        member = tar.extractfile("package/.jsii")
        if member is None:
            raise ValueError(f"{tarball}: no package/.jsii")
        schema = compact(json.load(member))
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"aws-{schema['provider_version']}.json"
    target.write_text(json.dumps(schema, sort_keys=True), encoding="utf-8")
    return target


def load_schemas(directory: Path = SCHEMA_DIR) -> list[dict[str, Any]]:
    """Every provider schema built into ``directory``, oldest provider first."""
    files = sorted(directory.glob("aws-*.json"))
    schemas = [json.loads(p.read_text(encoding="utf-8")) for p in files]

    def key(schema: dict[str, Any]) -> tuple[int, ...]:
        return tuple(int(x) for x in schema["provider_version"].split("."))

    return sorted(schemas, key=key)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    target = build(Path(argv[0]), Path(argv[1]))
    schema = json.loads(target.read_text(encoding="utf-8"))
    print(
        f"{target}: hashicorp/aws {schema['provider_version']} "
        f"(@cdktf/provider-aws {schema['package_version']}): "
        f"{len(schema['resource'])} resource types, {len(schema['data'])} data sources"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
