"""Empty warehouses for the migration tests: a SQLite file, or a PostgreSQL database of their own.

The root `warehouse_url` fixture hands out warehouses already brought to head; these start with
nothing, and on PostgreSQL each test gets a fresh database, so no revision or lock is shared.
"""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'warehouse.db'}"
        return

    session_url = request.getfixturevalue("pg_database")  # skips when PostgreSQL is not there
    name = f"adloop_migrations_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(session_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield session_url.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()

