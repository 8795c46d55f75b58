"""Empty warehouses for the migration tests: a SQLite file, or a PostgreSQL database of their own.

The root `warehouse_url` fixture hands out warehouses already brought to head; these start with
nothing, and on PostgreSQL each test gets a fresh database, so no revision or lock is shared.
"""

from __future__ import annotations

import pytest


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'warehouse.db'}"
        return
    with request.getfixturevalue("new_pg_database")("adloop_migrations") as url:
        yield url
