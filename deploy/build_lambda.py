"""Build the Lambda deployment zip: the package, the handlers and the runtime
dependencies for the Lambda platform (Linux x86_64, CPython 3.12 by default).

    python deploy/build_lambda.py                  # -> build/ddb-backup-lambda.zip
    python deploy/build_lambda.py --python-version 3.11 --platform manylinux2014_aarch64

Steps: build the project's own wheel (pure Python), then let pip resolve and
install it with its dependencies as binary wheels for the target platform
(``--platform ... --only-binary=:all:``), so compiled parts (pydantic-core,
orjson, aiohttp, ...) match the Lambda runtime and not this machine. The zip
is reproducible: sorted entries, fixed timestamps, no ``__pycache__``.

botocore is shipped on purpose: aiobotocore pins a narrow botocore range, and
the copy in the Lambda runtime moves with AWS's schedule, not ours. boto3 is
not a dependency and is not shipped.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "build" / "ddb-backup-lambda.zip"

#: Modules the Terraform module names as handlers (deploy/README.md, "Contract").
HANDLER_MODULES = ("handlers/backup.py", "handlers/incremental.py", "handlers/restore.py")
REQUIRED = (
    "ddb_backup/__init__.py",
    "ddb_backup/py.typed",
    "handlers/__init__.py",
    "handlers/common.py",
    *HANDLER_MODULES,
    "aiobotocore/__init__.py",
    "botocore/__init__.py",
    "pydantic/__init__.py",
    "orjson/__init__.py",
    "aiofiles/__init__.py",
)
#: The zip's date: 1980-01-01, the earliest a zip can hold (reproducible builds).
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
#: Lambda's limit for a directly uploaded zip.
MAX_ZIP_BYTES = 50 * 1024 * 1024
#: Lambda's limit for the unzipped function.
MAX_UNZIPPED_BYTES = 250 * 1024 * 1024


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)  # noqa: S603 (our own fixed argv)


#: What the project's wheel is built from (copied, so no stale build/ or egg-info of the
#: work tree can leak into it).
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "ddb_backup", "handlers")


def build_wheel(workdir: Path) -> Path:
    src = workdir / "src"
    src.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif path.is_file():
            shutil.copy2(path, src / name)
    wheel_dir = workdir / "wheel"
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(wheel_dir),
            str(src),
        ]
    )
    wheels = sorted(wheel_dir.glob("ddb_backup-*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"expected one project wheel, found {[w.name for w in wheels]}")
    return wheels[0]


def install(wheel: Path, target: Path, *, platform: str, python_version: str) -> None:
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-compile",
            "--target",
            str(target),
            "--platform",
            platform,
            "--implementation",
            "cp",
            "--python-version",
            python_version,
            "--only-binary=:all:",
            "--upgrade",
            str(wheel),
        ]
    )


def prune(target: Path) -> None:
    """Drop what the runtime never reads: byte code caches, pip's script shims, and
    pip's install records that name the temporary build folder (they would change the
    zip's hash, and so redeploy the functions, on every build)."""
    for cache in sorted(target.rglob("__pycache__"), reverse=True):
        shutil.rmtree(cache, ignore_errors=True)
    for pyc in target.rglob("*.pyc"):
        pyc.unlink()
    for dist_info in target.glob("*.dist-info"):
        dropped = {"direct_url.json", "REQUESTED"}
        for name in dropped:
            (dist_info / name).unlink(missing_ok=True)
        record = dist_info / "RECORD"
        if record.is_file():
            lines = record.read_text(encoding="utf-8").splitlines(keepends=True)
            kept = [ln for ln in lines if ln.split(",", 1)[0].rsplit("/", 1)[-1] not in dropped]
            record.write_text("".join(kept), encoding="utf-8")
    shutil.rmtree(target / "bin", ignore_errors=True)


def check(target: Path) -> None:
    missing = [rel for rel in REQUIRED if not (target / rel).is_file()]
    if missing:
        raise SystemExit(f"the package is missing {missing}")


def write_zip(target: Path, out: Path) -> tuple[int, int]:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".zip.tmp")
    unzipped = 0
    files = sorted(p for p in target.rglob("*") if p.is_file())
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for path in files:
            rel = path.relative_to(target).as_posix()
            info = zipfile.ZipInfo(rel, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            # Readable by Lambda's sandbox user; keep the executable bit of shared objects.
            mode = 0o755 if os.access(path, os.X_OK) else 0o644
            info.external_attr = (0o100000 | mode) << 16
            data = path.read_bytes()
            unzipped += len(data)
            zf.writestr(info, data)
    tmp.replace(out)
    return out.stat().st_size, unzipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--python-version", default="3.12", help="Lambda runtime, e.g. 3.12")
    parser.add_argument(
        "--platform",
        default="manylinux2014_x86_64",
        help="manylinux2014_x86_64 (architectures = x86_64) or manylinux2014_aarch64 (arm64)",
    )
    parser.add_argument("--keep", type=Path, help="also leave the unzipped tree here")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="ddb-backup-build-") as tmp:
        work = Path(tmp)
        target = args.keep or work / "package"
        if target.exists():
            shutil.rmtree(target)
        wheel = build_wheel(work)
        install(wheel, target, platform=args.platform, python_version=args.python_version)
        prune(target)
        check(target)
        zipped, unzipped = write_zip(target, args.out)

    print(
        f"built {args.out} for python{args.python_version} {args.platform}: "
        f"{zipped / 1e6:.1f} MB zipped, {unzipped / 1e6:.1f} MB unzipped"
    )
    if zipped > MAX_ZIP_BYTES:
        print("note: over 50 MB, so Terraform must upload it through S3 (lambda_s3_bucket)")
    if unzipped > MAX_UNZIPPED_BYTES:
        raise SystemExit("the unzipped package exceeds Lambda's 250 MB limit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
