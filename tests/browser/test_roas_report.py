"""The ROAS report in a real browser (headless Debian Chromium through Playwright).

A studio's insights are landed from the sandbox, with Stripe conversions for some ads, the ROAS
tables are built and the report rendered; the page is then loaded twice, as the file and as the
Airflow UI plugin serves it, and its charts and table are checked against the warehouse.
"""

from __future__ import annotations

import socket
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from adloop import insights
from adloop.meta.insights import InsightsOptions
from adloop.roas import build, report
from adloop.sandbox import meta_insights
from adloop.sandbox.generator import generate
from adloop.sandbox.server import Sandbox
from adloop.settings import MetaSettings, Settings
from adloop.warehouse import connect, ensure_schema
from adloop.warehouse.insights_schema import ad_recommendations, roas_daily
from adloop.warehouse.schema import stripe_conversions

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
ACCOUNT = "act_100200300400"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium at /usr/bin/chromium")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """A warehouse with a studio's insights, Stripe conversions, ROAS tables and the rendered report."""
    tmp = tmp_path_factory.mktemp("report")
    url = f"sqlite:///{tmp / 'warehouse.db'}"
    engine = connect(url)
    ensure_schema(engine)
    end = datetime.now(UTC).replace(microsecond=0)
    business = generate(seed=5, customers=200, days=21, end=end)
    with Sandbox(tmp / "sandbox.db") as sandbox:
        meta_insights.seed_business(sandbox.store, business)
        settings = Settings(warehouse_url=url, meta=MetaSettings(access_token="t", graph_url=sandbox.meta_url))
        insights.fetch_insights(settings, ACCOUNT, "run-1", end, options=InsightsOptions(poll_initial_seconds=0.01))
        insights.gate_insights(url, "run-1", ACCOUNT)
        insights.load_insights(url, "run-1", ACCOUNT)
    # What a reconciliation run would have extracted: the live conversions with their ad ids.
    with engine.begin() as conn:
        conn.execute(stripe_conversions.insert(), [
            {"event_id": c.event_id, "event_name": c.event_name, "object_type": "checkout.session",
             "livemode": True, "event_time": c.event_time, "currency": c.currency, "amount_minor": c.value,
             "value": Decimal(c.value) / 100, "amount_refunded_minor": c.refunded, "action_source": "website",
             "ad_id": c.ad_id, "normalization_version": 1, "run_id": "rec", "extracted_at": end}
            for c in business.conversions() if c.livemode and c.ad_id and c.currency == "cad"
        ])
    build.build_roas(url)
    build.recommend_ads(url, "run-1", build.Targets(target_roas=2.0, min_spend=50, window_days=14))
    out = report.render_report(url, "run-1", report_dir=tmp / "reports")
    with engine.connect() as conn:
        calls = {r.ad_id: r._asdict() for r in conn.execute(select(ad_recommendations))}
        days = conn.execute(select(func.count(func.distinct(roas_daily.c.day)))).scalar()
    return {"url": url, "path": Path(out["path"]), "calls": calls, "days": days}


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


def check_page(page, rendered) -> None:
    calls = rendered["calls"]
    assert page.title().startswith("adloop: ROAS")
    summary = page.locator("#summary")
    assert summary.get_attribute("data-ads") == str(len(calls))
    for decision in ("kill", "scale", "hold"):
        assert summary.get_attribute(f"data-{decision}") == str(sum(c["decision"] == decision for c in calls.values()))

    # Chart 1: two bars per ad, each the ad's ROAS as the warehouse has it, and the target line.
    chart = page.locator("#chart-roas")
    assert chart.is_visible() and chart.bounding_box()["height"] > 100
    stripe_bars = page.locator("#chart-roas rect.stripe_roas")
    assert stripe_bars.count() == len(calls) and page.locator("#chart-roas rect.meta_roas").count() == len(calls)
    for i in range(stripe_bars.count()):
        bar = stripe_bars.nth(i)
        expected = calls[bar.get_attribute("data-ad-id")]["stripe_roas"]
        assert float(bar.get_attribute("data-value")) == pytest.approx(expected, abs=1e-4)
    assert float(page.locator("#target-line").get_attribute("data-value")) == 2.0

    # Chart 2: one point per day; chart 3: one bar per ad with bookings.
    assert page.locator("#chart-timeline circle.day").count() == rendered["days"]
    assert page.locator("#chart-timeline polyline.series").count() == 3
    with_bookings = [c for c in calls.values() if c["cost_per_booking"] is not None]
    assert page.locator("#chart-cpb rect.cpb").count() == len(with_bookings)

    # The table: one row per ad with its call and figures.
    rows = page.locator("#recommendations tbody tr")
    assert rows.count() == len(calls)
    for i in range(rows.count()):
        row = rows.nth(i)
        call = calls[row.get_attribute("data-ad-id")]
        assert row.get_attribute("data-decision") == call["decision"]
        assert row.locator("span.call").inner_text() == call["decision"]
        assert row.locator('td[data-col="spend"]').inner_text() == f"{float(call['spend']):,.2f}"
        assert row.locator("td.why").inner_text() == call["reason"]


def test_report_file_renders_charts_and_table(browser, rendered):
    assert {c["decision"] for c in rendered["calls"].values()} >= {"kill"}, "the studio should have a loser"
    page = browser.new_page()
    page.goto(rendered["path"].as_uri())
    check_page(page, rendered)
    page.close()


def test_report_served_by_the_airflow_plugin(browser, rendered, monkeypatch):
    import uvicorn
    from adloop_report_plugin import create_app

    monkeypatch.setenv("ADLOOP_WAREHOUSE_URL", rendered["url"])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "the plugin app did not start"
            time.sleep(0.05)
        page = browser.new_page()
        response = page.goto(f"http://127.0.0.1:{port}/roas")
        assert response.status == 200
        check_page(page, rendered)
        page.close()
    finally:
        server.should_exit = True
        thread.join(5)
