"""`meta_audience_refresh` through the real Airflow (`airflow dags test`), against the sandbox.

The studio's app database is a SQLite file reached through the `app_db` Connection, as a real
app database would be; Meta is the emulator. Audiences refresh in parallel mapped task groups.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from adloop import demo, local
from adloop.warehouse import connect
from adloop.warehouse.audience_schema import audience_candidates, audience_sync_runs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "audiences"))
from helpers import END, audience_on_meta, control, emails_on_meta, land_studio  # noqa: E402

pytestmark = pytest.mark.e2e
DAG_ID = "meta_audience_refresh"


@pytest.fixture
def audience_studio(tmp_path, airflow_home):
    from adloop.sandbox.server import Sandbox

    warehouse_url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    _, app_db = land_studio(warehouse_url, tmp_path)
    with Sandbox(tmp_path / "sandbox.db") as sandbox:
        conns = local.connections_env(
            warehouse_url,
            sandbox.stripe_url,
            sandbox.meta_url,
            audience_batch_rows=100,
            backoff_base_seconds=0.05,
            backoff_max_seconds=0.5,
        )
        conns["AIRFLOW_CONN_APP_DB"] = json.dumps(
            {"conn_type": "generic", "extra": {"url": f"sqlite:///{app_db}"}}
        )
        env = local.airflow_env(airflow_home, conns)
        runs = iter(range(1, 100))

        def run(conf: dict) -> int:
            logical_date = END.replace(minute=next(runs))
            return demo.run_dag(env, logical_date, tmp_path / "airflow.log", dag_id=DAG_ID, conf=conf)

        yield run, warehouse_url, sandbox, tmp_path / "airflow.log"


def sync_runs(warehouse_url) -> dict[str, dict]:
    with connect(warehouse_url).connect() as conn:
        rows = conn.execute(select(audience_sync_runs).order_by(audience_sync_runs.c.started_at))
        return {r.audience_key: dict(r._mapping) for r in rows}


def segment(warehouse_url, sync_id) -> list[str]:
    with connect(warehouse_url).connect() as conn:
        return sorted(
            conn.execute(
                select(audience_candidates.c.em).where(audience_candidates.c.sync_id == sync_id)
            ).scalars()
        )


def test_dry_run_then_real_run_with_one_audience_failing_its_gate(audience_studio):
    run, warehouse_url, sandbox, log = audience_studio
    chosen = ["paying_customers_180d", "active_members"]

    assert run({"audiences": chosen, "dry_run": True}) == 0, log.read_text()[-3000:]
    dry = sync_runs(warehouse_url)
    assert set(dry) == set(chosen)
    assert all(r["status"] == "dry_run" and r["planned_adds"] > 0 for r in dry.values())
    assert control(sandbox.meta_url, "audiences")["audiences"] == []

    # For real, with an audience too small for its use: it fails alone, the others sync.
    assert run({"audiences": [*chosen, "leads_never_bought"], "dry_run": False}) != 0
    real = sync_runs(warehouse_url)
    assert real["leads_never_bought"]["status"] == "failed"
    assert "needs at least 100" in real["leads_never_bought"]["error"]
    for key in chosen:
        assert real[key]["status"] == "synced", real[key]
        assert real[key]["requests"] == -(-real[key]["planned_adds"] // 100)
        from adloop.audiences.definitions import get

        audience = audience_on_meta(sandbox.meta_url, get(key).name)
        assert emails_on_meta(sandbox.meta_url, audience["id"]) == segment(
            warehouse_url, real[key]["sync_id"]
        )
    lookalikes = [
        a for a in control(sandbox.meta_url, "audiences")["audiences"] if a["subtype"] == "LOOKALIKE"
    ]
    assert len(lookalikes) == 1
    assert audience_on_meta(sandbox.meta_url, "adloop | Leads who never bought") is None
