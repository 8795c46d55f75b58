"""The revisions themselves: they build exactly the Tables, form one line, and undo cleanly.

If a Table changes without a revision, `test_the_revisions_build_exactly_the_tables` fails: run
`adloop warehouse revision -m "..."` (see `adloop.warehouse.migrations`).
"""

from __future__ import annotations

import re

import sqlalchemy
from migration_helpers import (
    downgrade_by_revisions,
    index_definitions,
    schema_differences,
    upgrade_by_revisions,
)
from sqlalchemy.pool import NullPool

from adloop.warehouse import migrations
from adloop.warehouse.tables import metadata


def test_the_revisions_build_exactly_the_tables(empty_url):
    upgrade_by_revisions(empty_url)

    engine = sqlalchemy.create_engine(empty_url, poolclass=NullPool)
    with engine.connect() as conn:
        differences = schema_differences(conn)
        assert migrations.current_revision(conn) == migrations.head()
    engine.dispose()
    assert differences == [], (
        "The Tables differ from what the revisions build; write a revision with "
        f"`adloop warehouse revision -m ...`: {differences}"
    )


def test_the_revisions_make_the_same_indexes_as_create_all(empty_url):
    """Down to partial-index conditions, which the comparison above cannot see."""
    engine = sqlalchemy.create_engine(empty_url, poolclass=NullPool)
    upgrade_by_revisions(empty_url)
    with engine.connect() as conn:
        by_revisions = index_definitions(conn)
    downgrade_by_revisions(empty_url)
    metadata.create_all(engine)
    with engine.connect() as conn:
        by_create_all = index_definitions(conn)
    engine.dispose()

    assert by_revisions == by_create_all
    if engine.dialect.name == "postgresql":  # the index method, which the comparison above cannot see
        assert "USING brin" in by_revisions["ix_backfill_plan_run_id"]


def test_downgrade_to_base_leaves_an_empty_warehouse(empty_url):
    upgrade_by_revisions(empty_url)
    downgrade_by_revisions(empty_url)

    engine = sqlalchemy.create_engine(empty_url, poolclass=NullPool)
    with engine.connect() as conn:
        assert sqlalchemy.inspect(conn).get_table_names() == [migrations.VERSION_TABLE]
        assert migrations.current_revision(conn) is None
    engine.dispose()


def test_revisions_are_numbered_files_in_one_line():
    """`head()` reads the newest revision off the file names; Alembic must agree with it."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory(str(migrations.HERE))
    assert scripts.get_heads() == [migrations.head()]

    chain = list(reversed(list(scripts.walk_revisions())))
    assert chain[0].revision == migrations.BASELINE and chain[0].down_revision is None
    for number, script in enumerate(chain, start=1):
        assert script.revision == f"{number:04d}"
        assert re.fullmatch(rf"{script.revision}_\w+\.py", script.path.rsplit("/", 1)[1])
        if number > 1:
            assert script.down_revision == chain[number - 2].revision
