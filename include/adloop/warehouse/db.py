"""Engines and bulk writes that work the same on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache

from sqlalchemy import Engine, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite


@lru_cache(maxsize=8)
def connect(url: str) -> Engine:
    """One engine per warehouse URL per process.

    SQLite gets WAL mode and a busy timeout, because the Airflow task processes and the demo's
    summary read and write the same file.
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def ensure_schema(engine: Engine) -> None:
    """Create any missing table. Existing tables are left as they are.

    Known shortcoming: there are no versioned migrations yet, so a changed column needs a manual
    ALTER; the deployment issue brings Alembic migrations.
    """
    from adloop.warehouse.tables import metadata

    metadata.create_all(engine, checkfirst=True)


def _insert_for(engine: Engine, table: Table):
    if engine.dialect.name == "postgresql":
        return postgresql.insert(table)
    if engine.dialect.name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"warehouse dialect {engine.dialect.name!r} is not supported")


def upsert_rows(
    conn,
    table: Table,
    rows: Sequence[Mapping] | Iterable[Mapping],
    *,
    keys: Sequence[str] | None = None,
    update: Sequence[str] | None = None,
) -> int:
    """Insert rows, updating the given columns where the primary key already exists.

    One executemany per call; callers pass chunks of a few thousand rows so memory stays flat.
    `update=()` means insert-or-ignore.
    """
    rows = list(rows)
    if not rows:
        return 0
    keys = list(keys or [c.name for c in table.primary_key.columns])
    stmt = _insert_for(conn.engine, table)
    cols = update if update is not None else [c for c in rows[0] if c not in keys]
    if cols:
        stmt = stmt.on_conflict_do_update(
            index_elements=keys, set_={c: getattr(stmt.excluded, c) for c in cols}
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=keys)
    conn.execute(stmt, rows)
    return len(rows)
