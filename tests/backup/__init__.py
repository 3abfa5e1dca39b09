"""The backup (ddb_backup/backup/, ddb_backup/export.py, handlers/backup.py and
handlers/incremental.py): full and incremental runs, their handlers, faults on the way."""
