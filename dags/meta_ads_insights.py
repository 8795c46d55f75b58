"""
### Meta Ads Insights, daily, with 28 days of restatement

Every morning, lands ad-level Ads Insights per day for the last 28 days of each ad account's own
time zone (Meta keeps restating figures for 28 days), or for the dates given on a manual run.

**Steps**, one mapped task per ad account: `fetch_insights` (async report runs, polled with
backoff; a failed or stalled job is split into smaller date ranges; Meta's usage headers pace every
call; throttling and 5xx are retried with backoff) → `gate_insights` (Great Expectations: unique
keys, no negative spend or counts, dates inside the window, and per day the ads' spend adds up to
the account's) → `load_insights` (upsert on account, ad and day; every new or restated set of
figures is appended to `ad_insights_history`). Then `finish_insights` marks the
`adloop_ad_insights_daily` Asset as updated, which rebuilds the ROAS report, and
`check_rejected_days` turns the run red if the gate kept any day out.

**Needs**: Connections `meta_default` (access token with `ads_read`; extra `ad_account_ids`,
optional `insights` tuning such as `{"page_size": 500}`) and `warehouse_default`; optionally
`adloop_alerts`, where a failed task's alert (what failed, what to do) is sent.

**Changes**: nothing on Meta (reads only). Tables `ad_insights_daily`, `ad_insights_history`,
`ad_account_daily`, `meta_ads`, `insights_runs`, `insights_staging` (emptied after each load),
`quarantine` (days the gate rejected), `dq_results`.

**Known limitations**: an ad and day that Meta stops returning (its delivery restated to nothing)
keeps its last figures; only the `7d_click`/`1d_view` default attribution feeds the figures, other
windows are kept as JSON in `actions`; a day rejected by the gate stays as previously loaded until
a later run passes it; the polling sleeps in a worker slot (no deferrable trigger yet).
"""

from __future__ import annotations

import datetime as dt

import pendulum
from airflow.sdk import Asset, Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

DAG_ID = "meta_ads_insights"
# The ROAS rebuild (roas_report) runs when this Asset is updated.
AD_INSIGHTS = Asset(name="adloop_ad_insights_daily", uri="adloop://warehouse/ad_insights_daily")


def _run() -> tuple:
    """Settings, run id, the run's end and the Params' dates."""
    from adloop_hooks import adloop_settings

    ctx = get_current_context()
    params = ctx["params"]
    end = ctx.get("data_interval_end") or ctx["dag_run"].run_after
    since = dt.date.fromisoformat(params["since"]) if params.get("since") else None
    until = dt.date.fromisoformat(params["until"]) if params.get("until") else None
    return adloop_settings(stripe=False), ctx["run_id"], end, since, until


def _no_retry(call, *args, **kwargs):
    """Failures a retry cannot fix (a refused token, a bad query) fail the task at once."""
    from adloop.meta.insights import InsightsError

    try:
        return call(*args, **kwargs)
    except InsightsError as exc:
        raise AirflowFailException(str(exc)) from exc


def _alert_on_failure(context) -> None:
    """Tell the engineer what failed and what to do (README, "Alerts"); loads nothing until a task fails."""
    from adloop_hooks import alert_on_failure

    alert_on_failure(context)


@dag(
    dag_id=DAG_ID,
    schedule="15 6 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="America/Edmonton"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["adloop", "insights"],
    default_args={
        "owner": "data-engineering",
        "retries": 2,
        "retry_delay": dt.timedelta(minutes=5),
        "on_failure_callback": _alert_on_failure,
    },
    params={
        "since": Param(
            None,
            type=["null", "string"],
            format="date",
            title="First day",
            description="First day to land, in the ad account's time zone. Empty: 28 days before the last day.",
        ),
        "until": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Last day",
            description="Last day to land (inclusive), in the ad account's time zone. Empty: yesterday.",
        ),
    },
)
def meta_ads_insights():
    @task
    def list_ad_accounts() -> list[str]:
        from adloop_hooks import adloop_settings

        accounts = list(adloop_settings(stripe=False).meta.ad_account_ids)
        if not accounts:
            raise AirflowFailException("the meta_default Connection lists no ad_account_ids in its extra")
        return accounts

    @task(map_index_template="{{ account_id }}")
    def fetch_insights(account_id: str) -> dict:
        from adloop import insights
        from adloop.meta.insights import InsightsOptions

        settings, run_id, end, since, until = _run()
        return _no_retry(insights.fetch_insights, settings, account_id, run_id, end, since=since, until=until,
                         options=InsightsOptions.from_extra(settings.meta.insights))

    @task
    def gate_insights(fetched: dict) -> dict:
        from adloop import insights

        settings, run_id, *_ = _run()
        return insights.gate_insights(settings.warehouse_url, run_id, fetched["account_id"], dag_id=DAG_ID)

    @task
    def load_insights(gated: dict) -> dict:
        from adloop import insights

        settings, run_id, *_ = _run()
        return insights.load_insights(settings.warehouse_url, run_id, gated["account_id"])

    @task(outlets=[AD_INSIGHTS])
    def finish_insights(loaded: list[dict]) -> dict:
        from adloop import insights

        settings, run_id, *_ = _run()
        return insights.summarize_run(settings.warehouse_url, run_id)

    @task
    def check_rejected_days(summary: dict) -> None:
        from adloop import insights

        settings, run_id, *_ = _run()
        rejected = insights.rejected_days(settings.warehouse_url, run_id)
        if rejected:
            listed = "; ".join(f"{account}: {', '.join(days)}" for account, days in rejected.items())
            raise AirflowFailException(
                f"the insights gate kept these days out (the other days were loaded): {listed}. "
                "See dq_results and quarantine for the failed checks; the next run fetches them again."
            )

    fetched = fetch_insights.expand(account_id=list_ad_accounts())
    loaded = load_insights.expand(gated=gate_insights.expand(fetched=fetched))
    check_rejected_days(finish_insights(loaded))


meta_ads_insights()
