"""Engines and bulk writes that work the same on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache

from sqlalchemy import Engine, Table, create_engine, event, inspect, text
from sqlalchemy.dialects import postgresql, sqlite

from adloop.warehouse import migrations, schema

log = logging.getLogger(__name__)


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
            _switch_to_wal(cur)
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def _switch_to_wal(cur, *, attempts: int = 200) -> None:
    """WAL mode, which the file keeps once set.

    Setting it on a new file needs the file to itself for a moment, and SQLite answers "database
    is locked" at once instead of waiting out the busy timeout; processes that open a new
    warehouse together (workers starting on a fresh install) try again.
    """
    for attempt in range(attempts):
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05)


# Warehouses this process has seen at the newest revision, so later calls cost a set lookup.
_at_head: set[object] = set()


def ensure_schema(engine: Engine) -> None:
    """Bring the warehouse to the newest revision of `adloop.warehouse.migrations`.

    Called at the start of every task that touches the warehouse. The first call per process
    and warehouse reads the version table; later ones are a set lookup. Only a warehouse behind
    the newest revision (or without one) takes the migration lock and migrates.
    """
    key = _warehouse_key(engine)
    if key in _at_head:
        return

    newest = migrations.head()
    with engine.connect() as conn:
        found = migrations.current_revision(conn)
    if found != newest:
        log.info("warehouse %s: %s", engine.url, migrations.upgrade(engine))

    if key is not None:
        _at_head.add(key)


def _warehouse_key(engine: Engine) -> object:
    """What names one warehouse in this process; None for one not worth remembering.

    A SQLite file is also named by its inode, so a file deleted and made again (the demo starts
    from an empty state folder) is checked again. An in-memory database is new with each engine.
    """
    url = engine.url
    if url.get_backend_name() != "sqlite":
        return url.render_as_string(hide_password=False)
    if url.database in (None, "", ":memory:") or url.query.get("mode") == "memory":
        return None
    try:
        stat = os.stat(url.database)
    except OSError:  # not created yet: the next call names it
        return None
    return (url.database, stat.st_dev, stat.st_ino)


@event.listens_for(schema.metadata, "after_drop")
def _forget_dropped(metadata, connection, **_kw) -> None:
    """`metadata.drop_all` empties a warehouse (the tests reset theirs so): take the version table
    with the tables, so the next `ensure_schema` builds them again rather than trust a revision
    whose tables are gone."""
    _at_head.clear()
    if not set(inspect(connection).get_table_names()) & set(metadata.tables):
        connection.execute(text(f"DROP TABLE IF EXISTS {migrations.VERSION_TABLE}"))


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
