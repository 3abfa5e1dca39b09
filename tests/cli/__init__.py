"""The command line (ddb_backup/cli/), driven in-process against the moto server."""
