"""Promises of the whole system: `make demo`, and no secret in any log line or response."""
