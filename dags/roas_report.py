"""
### ROAS tables and the kill-or-scale report

Runs whenever fresh Ads Insights land (`meta_ads_insights`) or a reconciliation lands fresh Stripe
conversions (`stripe_capi_reconciliation`), not on a clock of its own.

**Steps**: `build_roas` rebuilds `roas_daily` (per ad and day, and rolled up per ad set and
campaign: spend, impressions, clicks, bookings, signups, purchases, Meta's attributed value,
Stripe's cash revenue and revenue net of refunds through the ad id the checkout stored, cost per
booking and per signup, Meta ROAS and Stripe ROAS) → `recommend_ads` decides kill, scale or hold
per ad over a trailing window from a target Stripe ROAS and a minimum spend → `render_report`
writes the HTML report (charts and the table) to `roas_reports` and to a file.

**Reading the report**: *Browse → ROAS report* in the Airflow UI (the adloop report plugin), or
the file `.adloop/reports/roas_report.html` (`ADLOOP_REPORT_DIR` moves it).

**Targets**: the Airflow Variable `adloop_roas` (JSON: `{"target_roas": 2.0, "min_spend": 100,
"window_days": 14}`) sets them for the scheduled runs; the Params of a manual run override it.

**Needs**: Connection `warehouse_default`; optionally `adloop_alerts`, where a failed task's alert
(what failed, what to do) is sent.

**Changes**: tables `roas_daily`, `roas_day_bounds`, `ad_recommendations`, `roas_reports`; the
report file. Nothing on Meta: the recommendations are advice, not budget changes.

**Known limitations**: Stripe revenue exists only for days a reconciliation run extracted (its
7-day window each night); conversions in a currency other than the ad account's are counted but
not added to revenue; the tables are rebuilt whole on each run.
"""

from __future__ import annotations

import datetime as dt

import pendulum
from airflow.sdk import Asset, Param, dag, get_current_context, task

DAG_ID = "roas_report"
AD_INSIGHTS = Asset(name="adloop_ad_insights_daily", uri="adloop://warehouse/ad_insights_daily")
RECONCILIATION_RUNS = Asset(name="adloop_reconciliation_runs", uri="adloop://warehouse/reconciliation_runs")


def _targets():
    """Params of a manual run, over the `adloop_roas` Variable, over adloop's defaults."""
    from airflow.sdk import Variable

    from adloop.roas.build import Targets

    params = get_current_context()["params"]
    configured = Variable.get("adloop_roas", default={}, deserialize_json=True) or {}
    values = {}
    for name, cast in (("target_roas", float), ("min_spend", float), ("window_days", int)):
        value = params.get(name) if params.get(name) is not None else configured.get(name)
        if value is not None:
            values[name] = cast(value)
    return Targets(**values)


def _warehouse_url() -> str:
    from adloop_hooks import adloop_settings

    return adloop_settings(stripe=False, meta=False).warehouse_url


def _alert_on_failure(context) -> None:
    """Tell the engineer what failed and what to do (README, "Alerts"); loads nothing until a task fails."""
    from adloop_hooks import alert_on_failure

    alert_on_failure(context)


@dag(
    dag_id=DAG_ID,
    schedule=(AD_INSIGHTS | RECONCILIATION_RUNS),
    start_date=pendulum.datetime(2026, 1, 1, tz="America/Edmonton"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["adloop", "roas"],
    default_args={
        "owner": "data-engineering",
        "retries": 1,
        "retry_delay": dt.timedelta(minutes=2),
        "on_failure_callback": _alert_on_failure,
    },
    params={
        "target_roas": Param(
            None,
            type=["null", "number"],
            minimum=0.01,
            title="Target ROAS",
            description="Stripe revenue (net of refunds) per unit of spend an ad must bring. Empty: the "
            "adloop_roas Variable, else 2.0.",
        ),
        "min_spend": Param(
            None,
            type=["null", "number"],
            minimum=0,
            title="Minimum spend",
            description="Spend over the window below which an ad is held, not judged. Empty: the Variable, "
            "else 100.",
        ),
        "window_days": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            maximum=90,
            title="Window (days)",
            description="Trailing days the recommendation looks at. Empty: the Variable, else 14.",
        ),
    },
)
def roas_report():
    @task
    def build_roas() -> dict:
        from adloop.roas import build

        return build.build_roas(_warehouse_url())

    @task
    def recommend_ads(built: dict) -> dict:
        from adloop.roas import build

        return build.recommend_ads(_warehouse_url(), get_current_context()["run_id"], _targets())

    @task
    def render_report(recommended: dict) -> dict:
        from adloop.roas import report

        return report.render_report(_warehouse_url(), get_current_context()["run_id"])

    render_report(recommend_ads(build_roas()))


roas_report()
