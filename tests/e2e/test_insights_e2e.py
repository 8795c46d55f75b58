"""Ads Insights to ROAS through the real Airflow, against the sandbox.

One generated studio: the nightly reconciliation lands Stripe's conversions, `meta_ads_insights`
lands the ads' days (surviving a failed report job and throttling), `roas_report` builds the
tables and the report, a second insights run a day later records Meta's restatements, and a third
with a day the gate rejects fails while landing the rest. One scenario, because each Airflow run
costs seconds.
"""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from adloop import demo
from adloop.sandbox import meta_insights
from adloop.warehouse import connect
from adloop.warehouse.insights_schema import (
    ad_insights_daily,
    ad_insights_history,
    ad_recommendations,
    insights_runs,
    roas_daily,
    roas_reports,
)

pytestmark = pytest.mark.e2e

ACCOUNT = "act_100200300400"


def run(studio, dag_id: str, conf: dict | None = None) -> int:
    return demo.run_dag(studio.env(), studio.next_logical_date(), studio.log, dag_id=dag_id, conf=conf)


def scalar(studio, query):
    with connect(studio.warehouse_url).connect() as conn:
        return conn.execute(query).scalar()


def test_insights_land_and_the_report_shows_stripe_beside_meta(sqlite_studio, tmp_path, monkeypatch):
    studio = sqlite_studio
    meta_insights.seed_business(studio.sandbox.store, studio.business)
    studio.meta_extra = {"insights": {"poll_initial_seconds": 0.05, "poll_max_seconds": 0.2, "page_size": 100}}
    monkeypatch.setenv("ADLOOP_REPORT_DIR", str(tmp_path / "reports"))
    assert studio.run() == 0, studio.log_tail()  # reconciliation: stripe_conversions with ad ids

    studio.sandbox.meta.insights.fail_next = 1
    studio.sandbox.meta.faults.add(kind="throttle", code=80004, count=2, path_contains="/insights")
    assert run(studio, "meta_ads_insights") == 0, studio.log_tail()

    days = 14 * 2  # the generated business spans 14 days; the window asks for 28
    ads = len(studio.business.ads)
    loaded = scalar(studio, select(func.count()).select_from(ad_insights_daily))
    assert ads * 13 <= loaded <= ads * days
    fetched = scalar(studio, select(func.sum(insights_runs.c.split_jobs)))
    retried = scalar(studio, select(func.sum(insights_runs.c.retries)))
    assert fetched == 1 and retried >= 2

    assert run(studio, "roas_report") == 0, studio.log_tail()
    assert scalar(studio, select(func.count()).select_from(ad_recommendations)) == ads
    revenue = scalar(studio, select(func.sum(roas_daily.c.stripe_net_revenue)).where(roas_daily.c.level == "ad"))
    assert revenue and float(revenue) > 0
    page = scalar(studio, select(roas_reports.c.html).order_by(roas_reports.c.id.desc()).limit(1))
    assert 'id="chart-roas"' in page and 'id="recommendations"' in page
    assert (tmp_path / "reports" / "roas_report.html").read_text() == page

    # A day later Meta has restated its most recent days: the second run records how they moved.
    studio.sandbox.meta.clock_offset = 86400
    until = (studio.end - timedelta(hours=7)).date().isoformat()
    assert run(studio, "meta_ads_insights", conf={"until": until}) == 0, studio.log_tail()
    restated = scalar(studio, select(func.count()).select_from(ad_insights_history)
                      .where(ad_insights_history.c.change == "restated"))
    assert restated > 0
    assert scalar(studio, select(func.max(ad_insights_daily.c.versions))) == 2

    # A day the gate rejects turns the run red; the other days still land, that day keeps its figures.
    bad = (studio.end - timedelta(days=3)).astimezone(ZoneInfo("America/Edmonton")).date()
    ad_id = studio.business.ads[0]["ad_id"]
    studio.client._call("meta", "POST", "insights/override", {"account_id": ACCOUNT, "day": bad.isoformat(),
                                                              "ad_id": ad_id, "figures": {"spend_cents": -100}})
    assert run(studio, "meta_ads_insights", conf={"until": until}) != 0
    assert "the insights gate kept these days out" in studio.log.read_text()
    with connect(studio.warehouse_url).connect() as conn:
        rows = conn.execute(select(ad_insights_daily.c.date_start, ad_insights_daily.c.spend,
                                   ad_insights_daily.c.run_id).where(ad_insights_daily.c.ad_id == ad_id)).all()
    kept = [r for r in rows if r.date_start == bad]
    assert kept and float(kept[0].spend) >= 0
    assert len({r.run_id for r in rows if r.date_start != bad}) == 1 and kept[0].run_id not in {
        r.run_id for r in rows if r.date_start != bad}
