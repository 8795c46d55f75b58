"""Helpers shared by the migration tests."""

from __future__ import annotations


def schema_differences(conn) -> list:
    """What Alembic's autogenerate would write to make the database match the Tables."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from adloop.warehouse.migrations import CONTEXT_OPTIONS
    from adloop.warehouse.tables import metadata

    return compare_metadata(MigrationContext.configure(conn, opts=CONTEXT_OPTIONS), metadata)


def index_definitions(conn) -> dict[str, str]:
    """Each index as the database itself states it, partial-index conditions included.

    Alembic's comparison does not look at a partial index's WHERE; the catalogs do.
    """
    if conn.dialect.name == "postgresql":
        sql = "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
    else:
        sql = "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
    return dict(conn.exec_driver_sql(sql).all())


def upgrade_by_revisions(url: str) -> None:
    """Run the revisions themselves, not the create_all shortcut `ensure_schema` takes when empty."""
    _run(url, "upgrade", "head")


def older_adloop_warehouse(url: str) -> None:
    """What an adloop from before migrations made: revision 0001's tables, and no version table."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    from adloop.warehouse.migrations import BASELINE, VERSION_TABLE

    _run(url, "upgrade", BASELINE)
    engine = create_engine(url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE {VERSION_TABLE}")
    engine.dispose()


def downgrade_by_revisions(url: str) -> None:
    _run(url, "downgrade", "base")


def _run(url: str, direction: str, target: str) -> None:
    from alembic import command
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    from adloop.warehouse.migrations import alembic_config

    engine = create_engine(url, poolclass=NullPool)
    with engine.begin() as conn:
        getattr(command, direction)(alembic_config(conn), target)
    engine.dispose()
