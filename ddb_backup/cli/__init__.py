"""``ddb-backup``: the operator's command line on the same core as the Lambdas.

Configured by flags or the handlers' environment variables (``BACKUP_BUCKET``,
``ENVIRONMENT``, ``S3_EXPORTS_PREFIX``, ``DYNAMODB_TABLES``...) and the
standard AWS settings (profile, region, ``AWS_ENDPOINT_URL``...).

Exit codes: 0 success, 1 partial or verification failure, 2 bad usage, 3 busy
(another restore holds a target table).
An error is one line on stderr; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import sys
import traceback
from collections.abc import Iterator

from ddb_backup import __version__, concurrency
from ddb_backup.cli.commands import COMMANDS, EXIT_FAILED, EXIT_USAGE, UsageError
from ddb_backup.cli.display import Output
from ddb_backup.cli.drill import add_parsers as add_drill_parsers
from ddb_backup.cli.settings import FLAG_FOR_VARIABLE
from ddb_backup.cli.vault import VAULT_COMMANDS, add_vault_parsers
from ddb_backup.concurrency import first_error
from ddb_backup.errors import ConfigError, DdbBackupError, UnsafeNameError
from ddb_backup.events import parse_restore_to
from ddb_backup.keys import check_date, check_key, check_table_name
from ddb_backup.log import JsonFormatter

__all__ = ["build_parser", "main"]


# -- argument types (argparse turns their ValueError into a usage error, exit 2) --


def _date_arg(value: str) -> str:
    if value == "latest":
        return value
    try:
        check_date(value)
    except UnsafeNameError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return value


def _time_arg(value: str) -> str:
    """``latest`` or an ISO-8601 time with its offset (``restore --at``)."""
    if value == "latest":
        return value
    try:
        return parse_restore_to(value).isoformat()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _day_arg(value: str) -> str:
    try:
        check_date(value)
    except UnsafeNameError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return value


def _table_arg(value: str) -> str:
    try:
        return check_table_name(value)
    except UnsafeNameError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _map_arg(value: str) -> tuple[str, str]:
    source, sep, target = value.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected SOURCE=TARGET, got {value!r}")
    return _table_arg(source.strip()), _table_arg(target.strip())


#: An export folder (``.../AWSDynamoDB/<id>``) or a restore's dead-letter folder
#: (``.../_restore/<id>/dead-letter/<table>[/shard-NNNNN]``); the prefix before
#: either may hold any character S3 allows (spaces, ``%``, ``+``, non-ASCII).
_EXPORT_URI = re.compile(
    r"^s3://([a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])/"
    r"((?:.+/)?(?:AWSDynamoDB/[^/]+|_restore/[^/]+/dead-letter/[^/]+(?:/shard-\d+)?))/?$"
)
_EXPORT_URI_SHAPE = (
    "s3://BUCKET/PREFIX/AWSDynamoDB/EXPORT_ID/ or "
    "s3://BUCKET/PREFIX/_restore/RESTORE_ID/dead-letter/TABLE/"
)


def _export_uri_arg(value: str) -> tuple[str, str]:
    """An export or dead-letter folder URI -> (bucket, folder key)."""
    match = _EXPORT_URI.fullmatch(value.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"expected {_EXPORT_URI_SHAPE}, got {value!r}")
    try:
        folder = check_key(match.group(2).strip("/"))
    except UnsafeNameError as exc:
        raise argparse.ArgumentTypeError(f"{exc} in {value!r}") from exc
    return match.group(1), folder


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from exc
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {n}")
    return n


def _seconds(value: str) -> float:
    try:
        n = float(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected seconds, got {value!r}") from exc
    if n < 0 or n != n:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {value!r}")
    return n


# -- parser ---------------------------------------------------------------------


def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("where backups live (flags win over the environment)")
    g.add_argument("--bucket", help="backup bucket (BACKUP_BUCKET)")
    g.add_argument("--prefix", help="exports prefix (S3_EXPORTS_PREFIX, default native-exports)")
    g.add_argument("--environment", help="environment name (ENVIRONMENT)")
    g.add_argument("--bucket-owner", help="expected bucket owner account id (BACKUP_BUCKET_OWNER)")
    g.add_argument("--profile", help="AWS profile (default: AWS_PROFILE / standard chain)")
    g.add_argument("--region", help="AWS region (default: AWS_REGION / profile)")
    p.add_argument("--debug", action="store_true", help="log the core's lines and tracebacks")
    return p


def _progress_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--progress-interval",
        type=_seconds,
        default=5.0,
        metavar="SECONDS",
        help="without a terminal, a progress line per table at most this often (default 5)",
    )


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="ddb-backup",
        description="Verified backup and restore of DynamoDB tables on the native export to S3.",
        epilog=(
            "Exit codes: 0 success, 1 partial or verification failure, 2 bad usage, "
            "3 busy (another restore holds a target table)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", parents=[common], help="every backup date with its state")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--from", dest="from_dir", metavar="DIR", help="a local copy (download)")

    p = sub.add_parser("show", parents=[common], help="one backup's manifest, per table and file")
    p.add_argument("date", type=_date_arg, metavar="DATE", help="YYYY-MM-DD or latest")
    p.add_argument("--json", action="store_true", help="the manifest as JSON")
    p.add_argument("--from", dest="from_dir", metavar="DIR", help="a local copy (download)")

    p = sub.add_parser("backup", parents=[common], help="run a backup now and wait until final")
    p.add_argument("--tables", nargs="+", metavar="TABLE", type=_table_arg, help="DYNAMODB_TABLES")
    p.add_argument("--kms-key-id", help="SSE-KMS key for the exports (EXPORT_KMS_KEY_ID)")
    p.add_argument(
        "--incremental",
        action="store_true",
        help="one round of incremental windows (point-in-time recovery) instead of the daily run",
    )
    p.add_argument(
        "--interval",
        metavar="MINUTES",
        help="incremental window length, 15-1440 (INCREMENTAL_INTERVAL_MINUTES)",
    )
    p.add_argument(
        "--date",
        type=_day_arg,
        metavar="YYYY-MM-DD",
        help="finish (or report) the run of an earlier UTC date; never starts one",
    )
    p.add_argument(
        "--poll-seconds",
        type=_seconds,
        default=5.0,
        help="first DescribeExport interval (backs off to 60 s)",
    )
    p.add_argument(
        "--timeout",
        type=_seconds,
        default=None,
        help="stop waiting after this many seconds (the run stays resumable)",
    )
    p.add_argument("--json", action="store_true", help="the response as JSON")

    p = sub.add_parser(
        "verify", parents=[common], help="re-read every file of a backup; writes nothing"
    )
    p.add_argument("date", type=_date_arg, metavar="DATE", help="YYYY-MM-DD or latest")
    p.add_argument("--tables", nargs="+", metavar="TABLE", type=_table_arg)
    p.add_argument("--from", dest="from_dir", metavar="DIR", help="a local copy (download)")
    p.add_argument("--concurrency", type=_positive_int, default=4, help="files read at once")
    p.add_argument("--json", action="store_true", help="machine-readable report")

    p = sub.add_parser("restore", parents=[common], help="restore tables from a backup")
    p.add_argument("date", type=_date_arg, metavar="DATE", nargs="?", help="YYYY-MM-DD or latest")
    p.add_argument(
        "--at",
        type=_time_arg,
        metavar="TIME",
        help="point in time instead of DATE: latest, or an ISO-8601 time with its offset "
        "(e.g. 2026-11-28T14:30:00Z); restores the newest full backup before it and the "
        "incremental windows after it up to the last boundary at or before it",
    )
    p.add_argument("--tables", nargs="+", metavar="TABLE", type=_table_arg)
    p.add_argument(
        "--map",
        nargs="+",
        type=_map_arg,
        metavar="SRC=DST",
        help="restore table SRC into table DST",
    )
    p.add_argument(
        "--clear-existing-data",
        action="store_true",
        help="delete every item of the target tables first (after verification)",
    )
    p.add_argument("--dry-run", action="store_true", help="verify and count; write nothing")
    p.add_argument(
        "--max-workers", type=int, default=None, help="concurrent batch writes (1-64, default 5)"
    )
    p.add_argument(
        "--max-write-units",
        type=int,
        default=None,
        metavar="WCU",
        help="write units per second per table at most (default: as much as the table takes)",
    )
    p.add_argument(
        "--create-missing-tables",
        action="store_true",
        help="create a missing target table from the schema in the manifest",
    )
    p.add_argument("--resume-token", help="continue an interrupted restore")
    p.add_argument("--from", dest="from_dir", metavar="DIR", help="a local copy (download)")
    p.add_argument("--yes", action="store_true", help="do not ask before clearing tables")
    p.add_argument("--json", action="store_true", help="the response as JSON")
    _progress_flags(p)

    p = sub.add_parser(
        "restore-export",
        parents=[common],
        help="restore any DynamoDB export (or dead-letter) folder into an existing table",
    )
    p.add_argument("uri", type=_export_uri_arg, metavar="S3_URI", help=_EXPORT_URI_SHAPE)
    p.add_argument("--table", required=True, type=_table_arg, help="target table")
    p.add_argument("--dry-run", action="store_true", help="verify and count; write nothing")
    p.add_argument("--max-workers", type=int, default=5, help="concurrent batch writes (1-64)")
    p.add_argument(
        "--incremental",
        action="append",
        type=_export_uri_arg,
        default=[],
        metavar="S3_URI",
        help="an incremental export applied after S3_URI, in the order given (repeatable)",
    )
    p.add_argument(
        "--allow-gaps",
        action="store_true",
        help="apply incremental exports that leave time uncovered (reported in the result)",
    )
    _progress_flags(p)

    p = sub.add_parser("timeline", parents=[common], help="per table, the points a restore reaches")
    p.add_argument("--table", type=_table_arg, help="one table (default: every table)")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser(
        "download", parents=[common], help="copy a backup to a local directory, resumably"
    )
    p.add_argument("date", type=_date_arg, metavar="DATE", help="YYYY-MM-DD or latest")
    p.add_argument("directory", metavar="DIR", help="destination (mirrors the bucket's keys)")
    p.add_argument("--tables", nargs="+", metavar="TABLE", type=_table_arg)
    p.add_argument("--concurrency", type=_positive_int, default=4, help="files copied at once")
    p.add_argument("--json", action="store_true", help="machine-readable report")

    add_vault_parsers(sub, common, _date_arg)
    add_drill_parsers(sub, common, _date_arg, _table_arg)
    return parser


# -- running --------------------------------------------------------------------


class _StderrHandler(logging.Handler):
    """JSON lines to whatever ``sys.stderr`` is when a record is emitted."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(self.format(record), file=sys.stderr, flush=True)
        except Exception:  # pragma: no cover - logging must never break a command
            self.handleError(record)


@contextlib.contextmanager
def _logging(debug: bool) -> Iterator[None]:
    """The core's JSON log lines on stderr with --debug, else none; restored after."""
    logger = logging.getLogger("ddb_backup")
    saved = (logger.level, logger.propagate, list(logger.handlers))
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter())
    logger.handlers = [handler]
    # Without --debug the command's own output says everything (one error line,
    # the report); the core's JSON log lines would only repeat it.
    logger.setLevel(logging.DEBUG if debug else logging.CRITICAL + 1)
    logger.propagate = False
    try:
        yield
    finally:
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        logger.handlers = saved[2]


def _error(message: str) -> None:
    print(f"ddb-backup: error: {message}", file=sys.stderr, flush=True)


def _config_hint(message: str) -> str:
    for var, flag in FLAG_FOR_VARIABLE.items():
        if f"variable {var} " in message:
            return f"{message} (or pass {flag})"
    return message


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit code (never raises, except on --debug crashes)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help / --version (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    debug = bool(getattr(args, "debug", False))
    out = Output()
    command = {**COMMANDS, **VAULT_COMMANDS}[args.command]
    with _logging(debug):
        try:
            return concurrency.run(command(args, out))
        except UsageError as exc:
            _error(str(exc))
            return EXIT_USAGE
        except (ConfigError, UnsafeNameError) as exc:
            if debug:
                traceback.print_exc()
            _error(_config_hint(str(exc)))
            return EXIT_USAGE
        except DdbBackupError as exc:
            if debug:
                traceback.print_exc()
            _error(str(exc))
            return EXIT_FAILED
        except KeyboardInterrupt:
            _error("interrupted")
            return 130
        except Exception as exc:
            if debug:
                traceback.print_exc()
            leaf = first_error(exc)
            if isinstance(leaf, DdbBackupError):
                _error(str(leaf))
                return EXIT_FAILED
            detail = str(leaf).splitlines()[0] if str(leaf) else ""
            _error(f"{type(leaf).__name__}" + (f": {detail}" if detail else ""))
            return EXIT_FAILED
