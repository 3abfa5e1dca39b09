"""``python -m ddb_backup``: the ``ddb-backup`` command line."""

import sys

from ddb_backup.cli import main

if __name__ == "__main__":
    sys.exit(main())
