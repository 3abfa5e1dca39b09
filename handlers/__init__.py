"""Lambda entry points: thin translators between Lambda and the ``ddb_backup`` core."""
