"""``ddb-backup vault-copy DATE`` and ``ddb-backup vault-status [--json]``.

``vault-copy`` runs what the vault function runs
(:func:`ddb_backup.vault.copy_date_and_windows`): the date (``latest``: the newest
final one), then every point-in-time chain's verified windows and records; it
exits 1 unless both are complete and verified. ``--json``: the function's body.

``vault-status`` shows a line per date (copy complete, verified, locked until when)
and, when there are point-in-time chains, a line per table (windows copied,
verified, missing, end of the newest verified window); it exits 1 if anything
final in the primary has no verified copy. ``--json``: ``{"dates": [...],
"windows": [...]}``.

The vault is configured by flags or the vault Lambda's variables (``VAULT_BUCKET``,
``VAULT_BUCKET_OWNER``, ``VAULT_KMS_KEY_ID``, ``VAULT_RETENTION_DAYS``,
``VAULT_LOCK_MODE``); see :mod:`ddb_backup.vault`. Restores, ``list``, ``show``,
``verify`` and ``download`` read the vault with ``--bucket VAULT_BUCKET``.
"""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from ddb_backup.cli import settings
from ddb_backup.cli.display import Output
from ddb_backup.keys import check_date
from ddb_backup.vault import (
    VaultConfig,
    copy_date_and_windows,
    vault_status,
    verify_vault_windows,
)

__all__ = ["VAULT_COMMANDS", "add_vault_parsers", "cmd_vault_copy", "cmd_vault_status"]

_FLAGS = (
    ("vault_bucket", "VAULT_BUCKET"),
    ("vault_bucket_owner", "VAULT_BUCKET_OWNER"),
    ("vault_kms_key_id", "VAULT_KMS_KEY_ID"),
    ("retention_days", "VAULT_RETENTION_DAYS"),
    ("lock_mode", "VAULT_LOCK_MODE"),
)

#: vault-status per table: windows in the primary's records, in the vault's, ...
_WINDOW_COLUMNS = (
    "table",
    "windows",
    "copied",
    "verified",
    "missing",
    "last window end",
    "problems",
)


def add_vault_parsers(sub: Any, common: argparse.ArgumentParser, date_arg: Any) -> None:
    """Register the vault subcommands on the CLI's subparsers."""
    vault = argparse.ArgumentParser(add_help=False)
    g = vault.add_argument_group("the vault (flags win over the environment)")
    g.add_argument("--vault-bucket", help="vault bucket (VAULT_BUCKET)")
    g.add_argument("--vault-bucket-owner", help="vault account id (VAULT_BUCKET_OWNER)")
    g.add_argument("--vault-kms-key-id", help="SSE-KMS key in the vault (VAULT_KMS_KEY_ID)")
    g.add_argument("--retention-days", help="Object Lock retention (VAULT_RETENTION_DAYS)")
    g.add_argument("--lock-mode", choices=["GOVERNANCE", "COMPLIANCE"], help="VAULT_LOCK_MODE")

    p = sub.add_parser(
        "vault-copy",
        parents=[common, vault],
        help="copy a final backup, then the point-in-time windows, to the vault, "
        "verified and locked (resumable)",
    )
    p.add_argument("date", type=date_arg, metavar="DATE", help="YYYY-MM-DD or latest")
    p.add_argument("--json", action="store_true", help="the result as JSON")

    p = sub.add_parser(
        "vault-status",
        parents=[common, vault],
        help="per date: vault copy complete and verified, locked until when; "
        "per table: point-in-time windows copied, verified, missing",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")


def vault_config(args: argparse.Namespace) -> VaultConfig:
    env = settings.cli_environ(args)
    for attr, var in _FLAGS:
        value = getattr(args, attr, None)
        if value:
            env[var] = str(value)
    if args.command == "vault-status":
        env.setdefault("VAULT_RETENTION_DAYS", "1")  # status locks nothing: unused
    return VaultConfig.from_environ(env)


async def cmd_vault_copy(args: argparse.Namespace, out: Output) -> int:
    """The vault function's run (a date, then the point-in-time windows) from the shell."""
    config = vault_config(args)
    date = None if args.date == "latest" else check_date(args.date)
    async with settings.clients(args) as aws:
        run = await copy_date_and_windows(config, aws, date)
    body = run.body()
    if args.json:
        out.json(body)
        return 0 if run.status_code == 200 else 1
    windows = body["windows"]
    out.line(
        f"{body['backup_date']}: {body['status'].lower()}: {_counts(body)}"
        + (f"; locked until {body['locked_until']}" if body["locked_until"] else "")
    )
    out.line(f"point-in-time windows: {windows['windows']}, {_counts(windows)}")
    for failure in body["failures"] + windows["failures"]:
        out.line(f"  {failure['key']}: {failure['reason']}")
    out.line(f"in s3://{config.vault_bucket}")
    return 0 if run.status_code == 200 else 1


def _counts(body: dict[str, Any]) -> str:
    return (
        f"{body['copied']} copied, {body['skipped']} already in the vault, {body['failed']} failed"
        + (f", {body['remaining']} left (run again)" if body["remaining"] else "")
    )


def _when(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ") if value else "-"


async def cmd_vault_status(args: argparse.Namespace, out: Output) -> int:
    config = vault_config(args)
    async with settings.clients(args) as aws:
        statuses = await vault_status(config, aws)
        windows = await verify_vault_windows(config, aws)
    if args.json:
        out.json({"dates": [s.doc() for s in statuses], "windows": [w.doc() for w in windows]})
    else:
        out.table(
            ["date", "final", "in vault", "verified", "locked until", "problems"],
            [
                [
                    s.date.isoformat(),
                    "yes" if s.final_in_primary else "no",
                    "yes" if s.in_vault else "no",
                    "yes" if s.verified else "no",
                    _when(s.locked_until),
                    _first(s.problems),
                ]
                for s in statuses
            ],
            title=f"s3://{config.vault_bucket}/{config.prefix}/",
        )
        if windows:
            out.table(
                _WINDOW_COLUMNS,
                [
                    [
                        w.table,
                        "-" if w.in_primary is None else str(w.in_primary),
                        str(w.copied),
                        str(w.verified),
                        str(w.missing),
                        _when(w.last_window_end),
                        _first(w.problems),
                    ]
                    for w in windows
                ],
                title=f"point-in-time windows in s3://{config.vault_bucket}/{config.prefix}/",
                right=["windows", "copied", "verified", "missing"],
            )
    # A final backup or a verified window without a verified copy is what the
    # operator must act on.
    return 0 if all(s.verified for s in statuses) and all(w.ok for w in windows) else 1


def _first(problems: list[str]) -> str:
    return "; ".join(problems[:3]) + (" ..." if len(problems) > 3 else "")


VAULT_COMMANDS = {"vault-copy": cmd_vault_copy, "vault-status": cmd_vault_status}
