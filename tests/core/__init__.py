"""The shared core (the modules directly in ddb_backup/): decoding, lines and items,
storage, events, the catalog, the chain of incremental windows, downloads."""
