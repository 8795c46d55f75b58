"""
### Stripe to Meta CAPI reconciliation and backfill

Every night, reads what Stripe says was paid in the last 7 days (paid Checkout Sessions as
**Purchase**, the first paid invoice of a membership as **Subscribe**), compares it with the
ledger of Conversions API events already sent (`capi_events`), and sends Meta the ones it never
received, with the same `event_id` the Pixel used, so Meta counts each conversion once.

**Steps**: `extract_conversions` (hashed at extraction) → `gate_conversions` (Great Expectations)
→ `plan_backfill` (a set-based diff: send, already sent, expired, excluded with a reason) →
`gate_plan` → `send_backfill` (batches of up to 1,000, oldest first, ledger written before and
after each request) → `verify_backfill` → `finish_run`.

**Needs**: Connections `stripe_default` (secret key), `meta_default` (access token; extra
`pixel_id`), `warehouse_default` (SQLAlchemy URL); optionally `adloop_alerts`, where a failed
task's alert (what failed, what to do) is sent.

**Changes**: events on the Meta pixel; tables `stripe_conversions`, `capi_events`,
`backfill_plan`, `reconciliation_runs`, `quarantine`, `dq_results`.

**Manual runs**: set a window and keep *Dry run* on to see the plan without sending anything.

**Known limitations**: events older than 7 days cannot be sent (Meta's rule) and are recorded as
expired; a refund made after a run's window is seen only by a later run; refunds of membership
invoices are not netted yet.
"""

from __future__ import annotations

import datetime as dt

import pendulum
from airflow.sdk import Asset, Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

DAG_ID = "stripe_capi_reconciliation"
LOOKBACK = dt.timedelta(days=7)  # Meta accepts events up to 7 days old
# Downstream DAGs (the ROAS rebuild) run when a reconciliation has landed.
RECONCILIATION_RUNS = Asset(name="adloop_reconciliation_runs", uri="adloop://warehouse/reconciliation_runs")


def _run() -> tuple:
    """The settings, window, run id and dry-run flag of the current run."""
    from adloop.stripe_source import Window
    from adloop_hooks import adloop_settings

    ctx = get_current_context()
    params = ctx["params"]
    # A manual run in Airflow 3 may have no data interval; it then ends when it was asked to run.
    end = params.get("window_end") or ctx.get("data_interval_end") or ctx["dag_run"].run_after
    end = dt.datetime.fromisoformat(end) if isinstance(end, str) else end
    start = params.get("window_start")
    start = dt.datetime.fromisoformat(start) if start else end - LOOKBACK
    return adloop_settings(), Window.of(start, end), ctx["run_id"], bool(params.get("dry_run"))


def _no_retry(call, *args, **kwargs):
    """Run a step; failures that a retry cannot fix (bad data, a refused token) fail the task at once."""
    from adloop.meta.capi import CapiFatalError
    from adloop.quality.gate import GateFailed
    from adloop.reconcile import VerificationFailed

    try:
        return call(*args, **kwargs)
    except (GateFailed, CapiFatalError, VerificationFailed) as exc:
        raise AirflowFailException(str(exc)) from exc


def _alert_on_failure(context) -> None:
    """Tell the engineer what failed and what to do (README, "Alerts"); loads nothing until a task fails."""
    from adloop_hooks import alert_on_failure

    alert_on_failure(context)


@dag(
    dag_id=DAG_ID,
    schedule="30 3 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="America/Edmonton"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["adloop", "conversions"],
    default_args={
        "owner": "data-engineering",
        "retries": 2,
        "retry_delay": dt.timedelta(minutes=2),
        "on_failure_callback": _alert_on_failure,
    },
    params={
        "window_start": Param(
            None,
            type=["null", "string"],
            format="date-time",
            title="Window start",
            description="First moment of the window (inclusive). Empty: 7 days before the window end.",
        ),
        "window_end": Param(
            None,
            type=["null", "string"],
            format="date-time",
            title="Window end",
            description="End of the window (exclusive). Empty: the run's data interval end.",
        ),
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Extract and plan, record the plan, and send nothing to Meta.",
        ),
    },
)
def stripe_capi_reconciliation():
    @task
    def extract_conversions() -> dict:
        from adloop import reconcile

        settings, window, run_id, dry_run = _run()
        return reconcile.extract_conversions(settings, window, run_id, dry_run=dry_run)

    @task
    def gate_conversions(extracted: dict) -> dict:
        from adloop.quality import gates

        settings, window, run_id, _ = _run()
        return _no_retry(gates.check_conversions, settings.warehouse_url, run_id, window, dag_id=DAG_ID)

    @task
    def plan_backfill(gated: dict) -> dict:
        from adloop import reconcile

        settings, _, run_id, _ = _run()
        return reconcile.plan_backfill(settings, run_id)

    @task
    def gate_plan(plan: dict) -> dict:
        from adloop.quality import gates

        settings, _, run_id, _ = _run()
        return _no_retry(gates.check_plan, settings.warehouse_url, run_id, plan["min_sendable_ts"], dag_id=DAG_ID)

    @task
    def send_backfill(gated: dict) -> dict:
        from adloop import reconcile

        settings, _, run_id, dry_run = _run()
        return _no_retry(reconcile.send_backfill, settings, run_id, dry_run=dry_run)

    @task
    def verify_backfill(sent: dict) -> dict:
        from adloop import reconcile

        settings, _, run_id, dry_run = _run()
        return _no_retry(reconcile.verify_backfill, settings, run_id, dry_run=dry_run)

    @task(outlets=[RECONCILIATION_RUNS])
    def finish_run(verified: dict) -> dict:
        from adloop import reconcile

        settings, _, run_id, dry_run = _run()
        return reconcile.finish_run(settings, run_id, dry_run=dry_run)

    finish_run(verify_backfill(send_backfill(gate_plan(plan_backfill(gate_conversions(extract_conversions()))))))


stripe_capi_reconciliation()
