"""Shared fixtures: warehouses on SQLite and on the machine's real PostgreSQL."""

from __future__ import annotations

import os
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Airflow puts plugins/ on sys.path; tests that import the glue need the same.
sys.path.insert(0, str(ROOT / "plugins"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

PG_ADMIN_URL = os.environ.get("ADLOOP_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")


def _pg_available() -> bool:
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(PG_ADMIN_URL)
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:
        return False


@contextmanager
def scratch_pg_database(prefix: str = "adloop_test"):
    """A new, empty PostgreSQL database for the block, dropped (with any open sessions) after it.

    Skips the test when PostgreSQL is not reachable, except on CI, where that is a failure.
    """
    import sqlalchemy

    if not _pg_available():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL}, and CI must test against it")
        pytest.skip(f"PostgreSQL is not reachable at {PG_ADMIN_URL}")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        from adloop.warehouse.db import connect

        connect.cache_clear()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(scope="session")
def new_pg_database():
    """`scratch_pg_database` for tests in other folders (a conftest cannot be imported by name)."""
    return scratch_pg_database


@pytest.fixture(scope="session")
def pg_database():
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    with scratch_pg_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def warehouse_url(request, tmp_path):
    """An empty warehouse, once on SQLite and once on PostgreSQL (schema reset per test)."""
    from adloop.warehouse import connect, ensure_schema
    from adloop.warehouse.schema import metadata

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    else:
        url = request.getfixturevalue("pg_database")
        metadata.drop_all(connect(url))
    ensure_schema(connect(url))
    return url
