"""`adloop warehouse ...` as an operator and a developer run it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ADLOOP = str(Path(sys.executable).with_name("adloop"))
RUFF = str(Path(sys.executable).with_name("ruff"))
ROOT = Path(__file__).resolve().parents[2]


def _adloop(*args, **kw):
    return subprocess.run([ADLOOP, "warehouse", *args], capture_output=True, text=True, **kw)


def test_upgrade_builds_the_warehouse_and_current_reports_its_revision(tmp_path):
    from adloop.warehouse import migrations

    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    assert "no revision" in _adloop("current", "--url", url, check=True).stdout

    assert f"created the tables at revision {migrations.head()}" in _adloop("upgrade", "--url", url, check=True).stdout
    assert "already at revision" in _adloop("upgrade", "--url", url, check=True).stdout
    assert f"revision {migrations.head()}, the newest" in _adloop("current", "--url", url, check=True).stdout


def test_upgrade_refuses_tables_it_cannot_vouch_for_and_says_why(tmp_path):
    import sqlalchemy

    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE capi_events (event_id VARCHAR(255) PRIMARY KEY)")
    engine.dispose()

    out = _adloop("upgrade", "--url", url)
    assert out.returncode == 1
    assert "capi_events has no column event_name" in out.stderr
    assert "Traceback" not in out.stderr


def test_revision_with_nothing_changed_writes_nothing(tmp_path):
    # On a copy of the scripts: were the Tables ever ahead of the revisions, the real folder
    # would otherwise gain a revision from a test run.
    script = textwrap.dedent(f"""
        import shutil
        from pathlib import Path

        from adloop import cli
        from adloop.warehouse import migrations

        copy = Path({str(tmp_path)!r}) / "migrations"
        shutil.copytree(migrations.HERE, copy, ignore=shutil.ignore_patterns("__pycache__"))
        migrations.HERE, migrations.VERSIONS = copy, copy / "versions"
        raise SystemExit(cli.main(["warehouse", "revision", "-m", "nothing changed"]))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "there is no revision to write" in out.stdout


def test_revision_writes_the_next_numbered_revision_and_it_builds_the_changed_tables(tmp_path):
    """The developer's loop on a copy of the scripts: change Tables, write the revision, run it."""
    script = textwrap.dedent(f"""
        import shutil
        from pathlib import Path

        import sqlalchemy as sa
        from alembic.autogenerate import compare_metadata
        from alembic.migration import MigrationContext

        from adloop.warehouse import migrations
        from adloop.warehouse.tables import metadata

        copy = Path({str(tmp_path)!r}) / "migrations"
        shutil.copytree(migrations.HERE, copy, ignore=shutil.ignore_patterns("__pycache__"))
        migrations.HERE, migrations.VERSIONS = copy, copy / "versions"
        following = f"{{int(migrations.head()) + 1:04d}}"
        metadata.tables["quarantine"].append_column(sa.Column("note", sa.Text))
        sa.Table("adloop_notes", metadata, sa.Column("id", sa.Integer, primary_key=True))

        print(migrations.revision("quarantine keeps a note"))

        engine = sa.create_engine("sqlite://")
        with engine.begin() as conn:
            migrations._run_upgrade(conn)
            assert compare_metadata(MigrationContext.configure(conn, opts=migrations.CONTEXT_OPTIONS), metadata) == []
            assert migrations.current_revision(conn) == following == migrations.head()
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr

    from adloop.warehouse import migrations

    head = migrations.head()
    following = f"{int(head) + 1:04d}"
    written = Path(out.stdout.strip().splitlines()[-1])
    assert written.name == f"{following}_quarantine_keeps_a_note.py"
    text = written.read_text()
    assert f'revision = "{following}"' in text and f'down_revision = "{head}"' in text
    assert "adloop_notes" in text and "batch_alter_table('quarantine'" in text
    lint = subprocess.run([RUFF, "check", "--no-cache", "--config", str(ROOT / "pyproject.toml"), str(written)],
                          capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout
