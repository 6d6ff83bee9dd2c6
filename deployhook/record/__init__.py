"""The deployment record: SQLite schema and queries, and the recorder thread."""
