"""`ensure_schema` on every warehouse it meets: empty, at head, made by an older adloop, busy."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys

import pytest
import sqlalchemy
from migration_helpers import older_adloop_warehouse, schema_differences
from sqlalchemy.pool import NullPool

from adloop.warehouse import connect, db, ensure_schema, migrations
from adloop.warehouse.schema import backfill_plan, consent_opt_outs
from adloop.warehouse.tables import metadata

WRITES = ("CREATE", "ALTER", "DROP", "INSERT", "UPDATE", "DELETE")


def _engine(url):
    return sqlalchemy.create_engine(url, poolclass=NullPool)


def _revisions(url) -> list[str]:
    engine = _engine(url)
    with engine.connect() as conn:
        found = conn.exec_driver_sql(f"SELECT version_num FROM {migrations.VERSION_TABLE}").scalars().all()
    engine.dispose()
    return found


@pytest.fixture(autouse=True)
def _forget_warehouses():
    """Each test starts as a new process would, knowing no warehouse to be at head."""
    db._at_head.clear()
    yield
    db._at_head.clear()


def test_an_empty_warehouse_gets_every_table_at_the_newest_revision(empty_url):
    engine = _engine(empty_url)
    ensure_schema(engine)

    with engine.connect() as conn:
        assert schema_differences(conn) == []
    engine.dispose()
    assert _revisions(empty_url) == [migrations.head()]


def test_at_head_the_first_call_only_reads_and_later_calls_send_nothing(warehouse_url):
    engine = connect(warehouse_url)
    db._at_head.clear()
    statements = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    sqlalchemy.event.listen(engine, "before_cursor_execute", record)
    try:
        ensure_schema(engine)
        first = list(statements)
        ensure_schema(engine)
    finally:
        sqlalchemy.event.remove(engine, "before_cursor_execute", record)

    assert 1 <= len(first) <= 3, first
    assert not [sql for sql in first if sql.lstrip().upper().startswith(WRITES)]
    assert statements == first


def test_at_head_a_new_process_does_not_import_alembic(tmp_path):
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    ensure_schema(connect(url))

    out = subprocess.run(
        [sys.executable, "-c", "import sys\nfrom adloop.warehouse import connect, ensure_schema\n"
         f"ensure_schema(connect({url!r}))\nprint(sorted(m for m in sys.modules if m.startswith('alembic')))"],
        capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip() == "[]"


def test_a_warehouse_of_an_older_adloop_is_stamped_and_keeps_its_rows(empty_url):
    older_adloop_warehouse(empty_url)
    engine = _engine(empty_url)
    with engine.begin() as conn:
        conn.execute(consent_opt_outs.insert().values(key_type="customer_id", key_value="cus_1", source="manual",
                                                      recorded_at=sqlalchemy.func.now()))
        conn.execute(backfill_plan.insert().values(run_id="r", event_id="cs_1", event_name="Purchase",
                                                   decision="send", expiring_soon=False, event_time=1))

    ensure_schema(engine)  # stamps 0001, then runs the later revisions (0002 rebuilds backfill_plan)

    with engine.connect() as conn:
        assert conn.execute(sqlalchemy.select(consent_opt_outs.c.key_value)).scalars().all() == ["cus_1"]
        assert conn.execute(sqlalchemy.select(backfill_plan.c.event_id)).scalars().all() == ["cs_1"]
        assert schema_differences(conn) == []
    engine.dispose()
    assert _revisions(empty_url) == [migrations.head()]


def test_a_warehouse_of_an_older_adloop_that_differs_is_refused_with_what_differs(empty_url):
    older_adloop_warehouse(empty_url)
    engine = _engine(empty_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE consent_opt_outs DROP COLUMN source")
        conn.exec_driver_sql("DROP INDEX ix_capi_events_status")
        conn.exec_driver_sql("DROP TABLE dq_results")

    with pytest.raises(migrations.MigrationError) as refused:
        ensure_schema(engine)

    message = str(refused.value)
    assert "no adloop_schema_version table" in message
    assert "consent_opt_outs has no column source" in message
    assert "capi_events has no index ix_capi_events_status" in message
    assert "table dq_results is missing" in message
    assert "adloop warehouse upgrade" in message
    with engine.connect() as conn:
        assert migrations.current_revision(conn) is None  # nothing stamped, nothing created
        assert not sqlalchemy.inspect(conn).has_table("dq_results")
    engine.dispose()


def test_a_warehouse_upgraded_by_a_newer_adloop_is_refused(warehouse_url):
    with connect(warehouse_url).begin() as conn:
        conn.exec_driver_sql(f"UPDATE {migrations.VERSION_TABLE} SET version_num = '9999'")
    db._at_head.clear()

    with pytest.raises(migrations.MigrationError, match="revision 9999, which this adloop does not have"):
        ensure_schema(connect(warehouse_url))


def test_drop_all_takes_the_version_table_so_the_warehouse_is_built_again(warehouse_url):
    engine = connect(warehouse_url)
    metadata.drop_all(engine)

    with engine.connect() as conn:
        assert sqlalchemy.inspect(conn).get_table_names() == []
    ensure_schema(engine)
    with engine.connect() as conn:
        assert schema_differences(conn) == []


def _ensure_after(barrier, url):
    from adloop.warehouse import connect, ensure_schema

    engine = connect(url)
    barrier.wait()
    ensure_schema(engine)


def test_workers_starting_together_build_the_warehouse_once(empty_url):
    """Celery workers all call ensure_schema as their first tasks start; the lock makes one migrate."""
    processes = 4
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(processes)
    workers = [spawn.Process(target=_ensure_after, args=(barrier, empty_url)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)

    assert [worker.exitcode for worker in workers] == [0] * processes
    assert _revisions(empty_url) == [migrations.head()]
    engine = _engine(empty_url)
    with engine.connect() as conn:
        assert schema_differences(conn) == []
    engine.dispose()
