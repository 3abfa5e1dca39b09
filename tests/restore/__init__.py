"""The restore (ddb_backup/restore/, handlers/restore.py): runs, fan-out, leases,
resumes, the writer and its senders, and the input it refuses."""
