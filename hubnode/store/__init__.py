"""The SQLite event log."""
