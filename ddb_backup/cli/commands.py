"""The command registry: one coroutine per subcommand (read the flags, call the core,
show the outcome), defined by what it works on: read_commands, backup_commands,
restore_commands, drill, timeline (vault commands register themselves).

Each returns the process exit code: 0 success, 1 partial or a verification
failure, 2 bad usage (refused before anything was done). Business rules live
in the core; this module only translates.
"""

from __future__ import annotations

from ddb_backup.cli.backup_commands import cmd_backup
from ddb_backup.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Command, UsageError
from ddb_backup.cli.drill import cmd_diff, cmd_drill
from ddb_backup.cli.read_commands import cmd_download, cmd_list, cmd_show, cmd_verify
from ddb_backup.cli.restore_commands import cmd_restore, cmd_restore_export
from ddb_backup.cli.timeline import cmd_timeline

__all__ = [
    "COMMANDS",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "UsageError",
    "cmd_backup",
    "cmd_download",
    "cmd_list",
    "cmd_restore",
    "cmd_restore_export",
    "cmd_show",
    "cmd_verify",
]

COMMANDS: dict[str, Command] = {
    "list": cmd_list,
    "show": cmd_show,
    "verify": cmd_verify,
    "download": cmd_download,
    "backup": cmd_backup,
    "restore": cmd_restore,
    "restore-export": cmd_restore_export,
    "timeline": cmd_timeline,
    "drill": cmd_drill,
    "diff": cmd_diff,
}
