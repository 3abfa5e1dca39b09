"""Restore drills, the content digest and diff (ddb_backup/drill.py, digest.py, diff.py)."""
