"""Versioned warehouse migrations: Alembic, run from the package, no alembic.ini.

`ensure_schema` brings the warehouse to the newest revision at the start of every task that
writes to it, and `adloop warehouse upgrade` does the same from a shell, before a deployment's
new workers start. The warehouse's revision is kept in its own table, `adloop_schema_version`,
so it never meets another Alembic history (Airflow keeps its own in `alembic_version`).

Revisions are `versions/NNNN_<slug>.py`, numbered in order, each revising the one before (no
branches). 0001 is the baseline: the tables as adloop made them before it had migrations.

To change a warehouse table:

1. Change its Table in `adloop/warehouse/*schema.py`.
2. Run `adloop warehouse revision -m "what changed"`. It brings a scratch SQLite database (or
   the empty one `--scratch-url` names) to the newest revision, compares it with the Tables and
   writes `versions/NNNN_what_changed.py`.
3. Read the revision and fix what autogenerate cannot know: a renamed column shows as a drop and
   an add, data is never moved, and a changed partial-index condition is not seen at all. Changes
   to existing tables go through `op.batch_alter_table`, which SQLite needs and PostgreSQL runs
   as plain ALTERs.
4. Commit it with the Table change.

`tests/warehouse/test_migrations.py` builds a warehouse from the revisions alone, on SQLite and
PostgreSQL, and fails when it differs from the Tables (columns, types, indexes down to their
partial-index conditions), so a forgotten or incomplete revision fails the suite.

Alembic is imported inside the functions that need it: `ensure_schema` at head only reads the
version table, and every Airflow task process would otherwise pay for importing Alembic.
"""

from __future__ import annotations

import logging
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, inspect, text

# Alembic announces each of its plugins at INFO whenever it runs; the revisions it runs are what
# an operator wants to read (alembic.runtime.migration keeps saying those).
logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)

VERSION_TABLE = "adloop_schema_version"
BASELINE = "0001"
HERE = Path(__file__).resolve().parent
VERSIONS = HERE / "versions"

# Options of every Alembic context on the warehouse, here and in env.py. Batch mode lets one
# revision ALTER tables on SQLite as well as on PostgreSQL.
CONTEXT_OPTIONS = {"version_table": VERSION_TABLE, "compare_type": True, "render_as_batch": True}

# Any number works as long as nothing else sharing the warehouse database takes the same lock.
_LOCK_KEY = zlib.crc32(VERSION_TABLE.encode())


class MigrationError(RuntimeError):
    """The warehouse cannot be brought to the newest revision without someone deciding how."""


def head() -> str:
    """The newest revision, read from the file names, which is cheap enough for every task start.

    The test suite holds it equal to Alembic's own head.
    """
    return max(path.name.split("_", 1)[0] for path in VERSIONS.glob("[0-9][0-9][0-9][0-9]_*.py"))


def current_revision(conn: Connection) -> str | None:
    """The warehouse's revision, or None when it has no version table or an empty one."""
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    found = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(found) > 1:
        raise MigrationError(f"{VERSION_TABLE} holds revisions {', '.join(found)}, but adloop's revisions "
                             "form one line: keep the row of the revision the tables are at, delete the others")
    return found[0] if found else None


def alembic_config(connection: Connection):
    """An Alembic Config for the package's scripts, running on `connection` (see env.py)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine) -> str:
    """Bring the warehouse to the newest revision, one process at a time, and say what was done.

    An empty warehouse gets `create_all` and a stamp of the newest revision (the test suite holds
    that equal to running every revision). Tables without a version table were made by an older
    adloop: they are stamped as the baseline when they match it, and refused with what differs
    when they do not.
    """
    newest = head()
    with _serialized(engine) as conn:
        found = current_revision(conn)
        if found == newest:
            return f"already at revision {newest}"
        if found is not None:
            _check_known(found, newest)
            _run_upgrade(conn)
            return f"upgraded from revision {found} to {newest}"

        from adloop.warehouse.tables import metadata

        if not set(inspect(conn).get_table_names()) & set(metadata.tables):
            metadata.create_all(conn)
            _stamp(conn, newest)
            return f"created the tables at revision {newest}"

        differences = _differences_from_baseline(conn)
        if differences:
            raise MigrationError(
                f"The warehouse {engine.url} has adloop tables but no {VERSION_TABLE} table, so an older "
                f"adloop made them, and they differ from revision {BASELINE}, the schema migrations start "
                f"from: {'; '.join(differences)}. Make them match "
                f"include/adloop/warehouse/migrations/versions/{BASELINE}_baseline.py (or, for a scratch "
                "warehouse, drop them) and run `adloop warehouse upgrade` again."
            )
        _stamp(conn, BASELINE)
        if newest == BASELINE:
            return f"stamped the tables of an older adloop as revision {BASELINE}"
        _run_upgrade(conn)
        return f"stamped the tables of an older adloop as revision {BASELINE}, then upgraded to {newest}"


def revision(message: str, *, scratch_url: str | None = None) -> Path | None:
    """Write the next revision, autogenerated from how the Tables differ from the revisions.

    The revisions run on a scratch database (a temporary SQLite file, or `scratch_url`, whose
    changes are rolled back). Returns the new file, or None when there is nothing to write.
    """
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy.pool import NullPool

    from adloop.warehouse.tables import metadata

    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(scratch_url or f"sqlite:///{tmp}/scratch.db", poolclass=NullPool)
        with engine.connect() as conn:
            conn.begin()  # never committed: closing the connection rolls the scratch database back
            config = alembic_config(conn)
            command.upgrade(config, "head")
            if not compare_metadata(MigrationContext.configure(conn, opts=CONTEXT_OPTIONS), metadata):
                return None
            script = command.revision(config, message=message, autogenerate=True, rev_id=f"{int(head()) + 1:04d}")
        engine.dispose()
    return Path(script.path)


@contextmanager
def _serialized(engine: Engine) -> Iterator[Connection]:
    """A transaction holding the warehouse's migration lock.

    Celery workers starting together all call `ensure_schema`; the first migrates, the others
    wait for its commit and then find the warehouse at the newest revision. DDL is transactional
    on both databases, so a failed migration leaves nothing half done.
    """
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        elif engine.dialect.name == "sqlite":
            # pysqlite would run each CREATE on its own; BEGIN IMMEDIATE takes the database's write
            # lock up front and keeps the DDL in this transaction.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            raise NotImplementedError(f"warehouse dialect {engine.dialect.name!r} is not supported")
        yield conn


@lru_cache(maxsize=1)
def _scripts():
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(HERE))


def _check_known(found: str, newest: str) -> None:
    from alembic.util import CommandError

    try:
        _scripts().get_revision(found)
    except CommandError:
        raise MigrationError(
            f"The warehouse is at revision {found}, which this adloop does not have (its newest is "
            f"{newest}): a newer adloop has upgraded it. Run that newer adloop here too."
        ) from None


def _stamp(conn: Connection, revision: str) -> None:
    from alembic.migration import MigrationContext

    MigrationContext.configure(conn, opts=CONTEXT_OPTIONS).stamp(_scripts(), revision)


def _run_upgrade(conn: Connection) -> None:
    from alembic import command

    command.upgrade(alembic_config(conn), "head")


def _differences_from_baseline(conn: Connection) -> list[str]:
    """What keeps the tables in `conn` from being stamped as the baseline, by name.

    Names of tables, columns and indexes, not types: the tables an older adloop made came from
    the same Table definitions, and what `create_all` left behind over the releases is a table,
    column or index missing or one too many.
    """
    wanted = _baseline_names()
    inspector = inspect(conn)
    present = set(inspector.get_table_names())
    differences = []
    for table, (columns, indexes) in wanted.items():
        if table not in present:
            differences.append(f"table {table} is missing")
            continue
        have = {column["name"] for column in inspector.get_columns(table)}
        differences += [f"{table} has no column {name}" for name in sorted(columns - have)]
        differences += [f"{table} has a column {name} the baseline does not" for name in sorted(have - columns)]
        have = {index["name"] for index in inspector.get_indexes(table)}
        differences += [f"{table} has no index {name}" for name in sorted(indexes - have)]
    return differences


def _baseline_names() -> dict[str, tuple[set[str], set[str]]]:
    """Each table of the baseline with its column and index names, from running it in memory."""
    from alembic import command

    engine = create_engine("sqlite://")
    with engine.connect() as conn:
        command.upgrade(alembic_config(conn), BASELINE)
        inspector = inspect(conn)
        return {
            table: ({c["name"] for c in inspector.get_columns(table)},
                    {i["name"] for i in inspector.get_indexes(table)})
            for table in inspector.get_table_names()
            if table != VERSION_TABLE
        }
