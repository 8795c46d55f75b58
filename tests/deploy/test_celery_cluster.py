"""The CeleryExecutor deployment, proven as processes on this machine (Docker cannot run here).

The same topology as docker-compose.yaml: Airflow's metadata database and the warehouse on the
machine's PostgreSQL, Redis as the Celery broker, then the api-server, scheduler, dag-processor
and two Celery workers. The DAGs are triggered through Airflow's REST API, as an engineer or an
outside scheduler would. While the nightly reconciliation is sending its backfill, the worker
running `send_backfill` is killed outright (SIGKILL on its whole process tree, as a lost machine
would die); the scheduler notices the silent task, retries it on the other worker, and Meta still
counts every missed conversion exactly once.

One scenario, because starting the cluster costs most of a minute.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, func, select

from adloop import local
from adloop.cluster import CeleryCluster

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

REDIS_URL = os.environ.get("ADLOOP_TEST_REDIS", "redis://127.0.0.1:6379/0")
DAGS = ["stripe_capi_reconciliation", "meta_audience_refresh", "meta_ads_insights", "roas_report"]
AUDIENCES = ["paying_customers_180d", "active_members"]
BATCH = 4


@pytest.fixture
def pg_databases(new_pg_database):
    """Two fresh PostgreSQL databases: Airflow's metadata and adloop's warehouse."""
    with new_pg_database("adloop_airflow") as airflow_db, new_pg_database("adloop_warehouse") as warehouse:
        yield [airflow_db, warehouse]


@pytest.fixture
def studio(tmp_path, pg_databases):
    """A generated studio in the sandbox (Stripe, Meta CAPI, audiences, insights) and its app DB."""
    from datetime import UTC, datetime

    from adloop.sandbox import meta_insights
    from adloop.sandbox.generator import generate
    from adloop.sandbox.server import Sandbox
    from adloop.seed import seed_business

    _, warehouse_url = pg_databases
    end = datetime.now(UTC).replace(microsecond=0)
    business = generate(seed=5, customers=400, days=60, end=end)
    state, app_db = tmp_path / "sandbox.db", tmp_path / "app.db"
    seed_business(business, sandbox_state=state, warehouse_url=warehouse_url, pixel_id=local.SANDBOX_PIXEL_ID,
                  app_db=app_db)
    with Sandbox(state) as sandbox:
        meta_insights.seed_business(sandbox.store, business)
        yield business, sandbox, warehouse_url, f"sqlite:///{app_db}", end


@pytest.fixture
def cluster(tmp_path, pg_databases, studio):
    business, sandbox, warehouse_url, app_db_url, _ = studio
    connections = local.connections_env(
        warehouse_url, sandbox.stripe_url, sandbox.meta_url, app_db_url=app_db_url,
        batch_size=BATCH, audience_batch_rows=100, backoff_base_seconds=0.05, backoff_max_seconds=0.5,
        insights={"poll_initial_seconds": 0.1, "poll_max_seconds": 0.5, "page_size": 100},
    )
    c = CeleryCluster(
        home=tmp_path / "airflow", metadata_url=pg_databases[0], broker_url=REDIS_URL,
        connections=connections, workers=2, worker_concurrency=2, retry_delay_seconds=3,
        settings={
            # Only the runs this test triggers: no scheduled or Asset-triggered runs beside them.
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            # How long a task may go silent before the scheduler calls it lost (production: 300 s).
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
        },
    )
    c.migrate()
    try:
        c.start()
        yield c
    finally:
        c.stop()


def wait(predicate, timeout: float, what: str, cluster: CeleryCluster):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{cluster.logs()}")
        time.sleep(0.5)


def test_the_dags_run_on_celery_workers_and_survive_losing_one(cluster, studio):
    from adloop.sandbox.client import SandboxClient
    from adloop.warehouse.audience_schema import audience_sync_runs
    from adloop.warehouse.insights_schema import ad_insights_daily, roas_daily
    from adloop.warehouse.schema import capi_events, reconciliation_runs

    business, sandbox, warehouse_url, _, end = studio
    meta = SandboxClient(stripe_url=sandbox.stripe_url, meta_url=sandbox.meta_url)
    api = cluster.api
    wait(lambda: set(DAGS) <= api.dag_ids(), 180, "the dag-processor to parse the DAGs", cluster)
    for dag_id in DAGS:
        api.unpause(dag_id)

    expected = business.expected_in_window(end - timedelta(days=7), end, by="created")["to_backfill"]
    assert len(expected) > 4 * BATCH

    # Slow answers from Meta keep the backfill sending long enough to kill its worker mid-way.
    meta.add_fault("meta", "slow", delay_seconds=2.0, path_contains="/events")
    logical_date = (end + timedelta(minutes=1)).isoformat()
    runs = {
        "stripe_capi_reconciliation": api.trigger("stripe_capi_reconciliation", logical_date=logical_date),
        "meta_audience_refresh": api.trigger("meta_audience_refresh", logical_date=logical_date,
                                             conf={"audiences": AUDIENCES, "dry_run": False}),
        "meta_ads_insights": api.trigger("meta_ads_insights", logical_date=logical_date),
    }

    def sending():
        tis = {t["task_id"]: t for t in api.task_instances("stripe_capi_reconciliation",
                                                           runs["stripe_capi_reconciliation"])}
        ti = tis.get("send_backfill", {})
        if ti.get("state") == "running" and ti.get("pid") and meta.summary()["requests"] >= 2:
            return ti
        return None

    ti = wait(sending, 300, "send_backfill to be sending", cluster)
    victim = wait(lambda: cluster.worker_running(ti["pid"]), 30, "the worker running send_backfill", cluster)
    cluster.components[victim].kill()
    partial = meta.summary()["events_counted"]
    assert 0 < partial < len(expected)
    meta.clear_faults()

    for dag_id, run_id in runs.items():
        assert api.wait_for_run(dag_id, run_id, timeout=600) == "success", f"{dag_id}\n{cluster.logs()}"
    report = api.trigger("roas_report", logical_date=logical_date)
    assert api.wait_for_run("roas_report", report, timeout=300) == "success", cluster.logs()

    # The killed task was retried, and only the surviving worker was left to run it.
    send = [t for t in api.task_instances("stripe_capi_reconciliation", runs["stripe_capi_reconciliation"])
            if t["task_id"] == "send_backfill"][0]
    assert send["try_number"] >= 2
    assert not cluster.components[victim].alive
    assert [n for n in cluster.worker_names if cluster.components[n].alive] != []

    # Meta counts every missed conversion once: nothing lost, nothing counted twice.
    counted = [e["event_id"] for e in meta.received_events(counted=True, limit=100_000)]
    assert sorted(counted) == sorted(expected)
    # Only the batch in flight at the kill can have been sent again; Meta dropped those copies.
    assert meta.summary()["events_deduplicated"] <= BATCH

    warehouse = create_engine(warehouse_url)
    with warehouse.connect() as conn:
        ledger = dict(conn.execute(select(capi_events.c.event_id, capi_events.c.status)).all())
        assert {ledger[e] for e in expected} == {"sent"}
        statuses = conn.execute(select(reconciliation_runs.c.status)).scalars().all()
        assert statuses == ["verified"], statuses
        synced = dict(conn.execute(select(audience_sync_runs.c.audience_key, audience_sync_runs.c.status)).all())
        assert synced == {key: "synced" for key in AUDIENCES}
        assert conn.execute(select(func.count()).select_from(ad_insights_daily)).scalar() > 0
        assert conn.execute(select(func.count()).select_from(roas_daily)).scalar() > 0
    warehouse.dispose()
