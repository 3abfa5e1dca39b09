"""Restore drills, the content digest and diff
(ddb_backup/drill.py, drill_tables.py, digest.py, diff.py)."""
