"""`adloop demo`: generate a studio, start the sandbox, run the nightly DAG through Airflow, and
show what adloop found and did.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta

from adloop import local

DAG_ID = "stripe_capi_reconciliation"


def dag_test_command(logical_date: datetime, dag_id: str = DAG_ID, conf: dict | None = None) -> list[str]:
    """`airflow dags test`: a real DAG run (real task runner, real metadata DB), in one process."""
    cmd = [local.airflow_bin(), "dags", "test", dag_id, logical_date.isoformat()]
    if conf:
        cmd += ["--conf", json.dumps(conf)]
    return cmd


def run_dag(env: dict[str, str], logical_date: datetime, log_path, dag_id: str = DAG_ID,
            conf: dict | None = None) -> int:
    with open(log_path, "a") as log:
        return subprocess.run(dag_test_command(logical_date, dag_id, conf), env=env, stdout=log,
                              stderr=subprocess.STDOUT).returncode


def latest_run(warehouse_url: str) -> dict | None:
    from sqlalchemy import select

    from adloop.warehouse import connect
    from adloop.warehouse.schema import dq_results, reconciliation_runs

    engine = connect(warehouse_url)
    with engine.connect() as conn:
        row = conn.execute(
            select(reconciliation_runs).order_by(reconciliation_runs.c.started_at.desc()).limit(1)
        ).first()
        if row is None:
            return None
        run = dict(row._mapping)
        run["gates"] = [
            dict(r._mapping)
            for r in conn.execute(
                select(dq_results.c.step, dq_results.c.suite, dq_results.c.success, dq_results.c.evaluated)
                .where(dq_results.c.run_id == run["run_id"])
                .order_by(dq_results.c.id)
            )
        ]
    return run


def main(*, customers: int = 400, days: int = 30, seed: int = 7, unsent_share: float = 1 / 3,
         with_roas: bool = True) -> int:
    from adloop.sandbox.client import SandboxClient
    from adloop.sandbox.generator import generate
    from adloop.seed import seed_business

    layout = local.Layout()
    started = time.monotonic()
    # Each demo starts from a new business; the Airflow home (and its migrated DB) is kept.
    shutil.rmtree(layout.state_dir, ignore_errors=True)
    layout.state_dir.mkdir(parents=True)
    log_path = layout.state_dir / "demo.log"

    now = datetime.now(UTC).replace(microsecond=0)
    print(f"adloop demo: an Edmonton studio with {customers} customers and {days} days of Stripe activity")
    business = generate(seed=seed, customers=customers, days=days, end=now, unsent_share=unsent_share)
    seeded = seed_business(business, sandbox_state=layout.sandbox_state, warehouse_url=layout.warehouse_url,
                           pixel_id=local.SANDBOX_PIXEL_ID, app_db=layout.state_dir / "app.db")
    print(f"  generated {seeded['stripe_objects']:,} Stripe objects; the webhook ledger holds "
          f"{seeded['webhook_sent']:,} conversions; {seeded['opt_outs']} customers opted out")

    with local.SandboxProcess(layout.sandbox_state, log_path=layout.state_dir / "sandbox.log") as sandbox:
        env = local.airflow_env(layout.airflow_home, local.connections_env(layout.warehouse_url, sandbox.stripe_url,
                                                              sandbox.meta_url, app_db_url=layout.app_db_url))
        print(f"  sandbox: Stripe API at {sandbox.stripe_url}, Meta Graph API at {sandbox.meta_url}")
        print("  preparing Airflow (first time only: migrating its database)...")
        local.migrate_airflow(env, log_path)
        print(f"  running {DAG_ID} through Airflow (airflow dags test)...")
        code = run_dag(env, now, log_path)
        meta = SandboxClient(meta_url=sandbox.meta_url).summary()
        roas_code = None
        if code == 0 and with_roas:
            print("  landing Ads Insights (meta_ads_insights) and rebuilding ROAS (roas_report)...")
            roas_code = run_dag(env, now, log_path, dag_id="meta_ads_insights") or run_dag(
                env, now, log_path, dag_id="roas_report")

    run = latest_run(layout.warehouse_url)
    print()
    if code != 0 or run is None:
        print(f"The DAG run failed (exit {code}). Its log: {log_path}")
        return 1
    expected = business.expected_in_window(now - timedelta(days=7), now, by="created")
    print(render_summary(run, meta, account_for(layout.warehouse_url, run["run_id"], expected)))
    if roas_code is not None:
        print()
        print(render_roas(layout.warehouse_url) if roas_code == 0 else
              f"The insights or ROAS run failed (exit {roas_code}); see {log_path}")
    print(f"\nFull Airflow log: {log_path}   Warehouse: {layout.warehouse_url}")
    print(f"Took {time.monotonic() - started:.0f} s. Open the Airflow UI on the same setup with `make ui`.")
    return 0


def account_for(warehouse_url: str, run_id: str, expected: dict) -> dict:
    """Hold the run against the generator's ground truth: every unsent conversion is either
    backfilled or has a recorded reason, and no opted-out customer's conversion was sent."""
    from sqlalchemy import select

    from adloop.warehouse import connect
    from adloop.warehouse.schema import backfill_plan, capi_events, stripe_conversions

    with connect(warehouse_url).connect() as conn:
        backfilled = set(conn.execute(select(capi_events.c.event_id).where(
            capi_events.c.run_id == run_id, capi_events.c.source == "backfill",
            capi_events.c.status == "sent")).scalars())
        found = set(conn.execute(select(stripe_conversions.c.event_id).where(
            stripe_conversions.c.run_id == run_id)).scalars())
        decisions = {r.event_id: r.reason or r.decision for r in conn.execute(
            select(backfill_plan.c.event_id, backfill_plan.c.decision, backfill_plan.c.reason)
            .where(backfill_plan.c.run_id == run_id))}
    others = {}
    for event_id in expected["unsent"] - backfilled:
        # The plan does not hold what the ledger already had as sent (an earlier run's backfill).
        why = decisions.get(event_id) or ("already_sent" if event_id in found else "not found by the run")
        others[why] = others.get(why, 0) + 1
    return {
        "never_sent": len(expected["unsent"]),
        "backfilled": len(expected["unsent"] & backfilled),
        "not_backfilled": dict(sorted(others.items())),
        "opted_out": len(expected["opted_out"]),
        "opted_out_sent": len(expected["opted_out"] & backfilled),
        "sent_twice": len(expected["sent"] & backfilled),
    }


def render_roas(warehouse_url: str) -> str:
    """The kill-or-scale calls of the ROAS run, and where the report is."""
    from sqlalchemy import select

    from adloop.roas.report import REPORT_FILE, default_report_dir
    from adloop.warehouse import connect
    from adloop.warehouse.insights_schema import ad_recommendations

    with connect(warehouse_url).connect() as conn:
        recs = [dict(r._mapping) for r in conn.execute(
            select(ad_recommendations).order_by(ad_recommendations.c.stripe_roas.desc()))]
    lines = ["ROAS, per ad over the trailing window (Stripe cash net of refunds against Meta's spend)"]
    for rec in recs:
        def ratio(v):
            return "   n/a" if v is None else f"{v:6.2f}"

        lines.append(
            f"  {rec['decision']:<5} {(rec['ad_name'] or rec['ad_id'])[:34]:<34} spend {float(rec['spend']):9.2f}  "
            f"Stripe ROAS {ratio(rec['stripe_roas'])}  Meta ROAS {ratio(rec['meta_roas'])}")
    lines.append(f"Report with charts: {default_report_dir() / REPORT_FILE} (and Browse > ROAS report in `make ui`)")
    return "\n".join(lines)


def render_summary(run: dict, meta: dict, truth: dict) -> str:
    reasons = json.loads(run.get("excluded_by_reason") or "{}")
    reasons_text = ", ".join(f"{k} {v}" for k, v in reasons.items()) or "none"
    lines = [
        f"Reconciliation {run['run_id']}",
        f"  window                         {run['window_start']:%Y-%m-%d %H:%M} to "
        f"{run['window_end']:%Y-%m-%d %H:%M} UTC",
        f"  conversions found in Stripe    {run['found']}",
        f"  already sent (webhook)         {run['already_sent']}",
        f"  backfilled to Meta now         {run['backfilled']}  in {run['capi_requests']} CAPI request(s)",
        f"    of which expiring within 24h {run['expiring_soon']}",
        f"  expired (older than 7 days)    {run['expired']}",
        f"  excluded                       {run['excluded']}  ({reasons_text})",
        f"  quarantined                    {(run['quarantined'] or 0) + (run['quarantined_at_extraction'] or 0)}",
        "  gates                          "
        + ", ".join(f"{g['step']} {'passed' if g['success'] else 'FAILED'} ({g['evaluated']} checks)"
                    for g in run["gates"]),
        "",
        "Meta (sandbox) received         "
        f"{meta.get('events_received', 0)} events, counted {meta.get('events_counted', 0)}, "
        f"deduplicated {meta.get('events_deduplicated', 0)}, rejected requests {meta.get('rejected_requests', 0)}",
        f"Against the generator's truth   {truth['never_sent']} paid conversions in the window were never sent"
        f" by the webhook: {truth['backfilled']} backfilled, the rest "
        + (", ".join(f"{k} {v}" for k, v in truth["not_backfilled"].items()) or "none"),
        f"                                {truth['opted_out']} belong to customers who opted out: "
        f"{truth['opted_out_sent']} sent; {truth['sent_twice']} already-sent conversions sent again",
    ]
    return "\n".join(lines)
