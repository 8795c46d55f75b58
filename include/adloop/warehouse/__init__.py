"""The warehouse: schema, connections and bulk writes (SQLite by default, PostgreSQL in production)."""

from __future__ import annotations

from adloop.warehouse.db import connect, ensure_schema, upsert_rows

__all__ = ["connect", "ensure_schema", "upsert_rows"]
