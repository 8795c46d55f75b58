"""Landing insights into the warehouse: idempotence, restatement history, and the gate."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from insights_helpers import ACCOUNT, ADS, FAST, run_end
from sqlalchemy import func, select

from adloop import insights
from adloop.warehouse import connect
from adloop.warehouse.insights_schema import (
    ad_account_daily,
    ad_insights_daily,
    ad_insights_history,
    insights_runs,
    meta_ads,
)
from adloop.warehouse.schema import dq_results, quarantine


def land(settings, account, run_id, **window):
    fetched = insights.fetch_insights(settings, ACCOUNT, run_id, run_end(account), options=FAST, **window)
    gated = insights.gate_insights(settings.warehouse_url, run_id, ACCOUNT)
    loaded = insights.load_insights(settings.warehouse_url, run_id, ACCOUNT)
    return fetched, gated, loaded


def table(url, t, *order):
    with connect(url).connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(t).order_by(*order))]


def test_the_window_is_the_28_days_before_the_run_in_the_accounts_time_zone():
    # 05:30 UTC on 3 March is still 2 March in Edmonton (UTC-7): the last full day there is 1 March.
    end = datetime(2026, 3, 3, 5, 30, tzinfo=UTC)
    assert insights.insights_window("America/Edmonton", end) == (date(2026, 2, 2), date(2026, 3, 1))
    assert insights.insights_window("Asia/Tokyo", end) == (date(2026, 2, 3), date(2026, 3, 2))
    assert insights.insights_window("UTC", end, since=date(2026, 1, 1), until=date(2026, 1, 3)) == (
        date(2026, 1, 1), date(2026, 1, 3))
    with pytest.raises(ValueError, match="starts"):
        insights.insights_window("UTC", end, since=date(2026, 2, 1), until=date(2026, 1, 3))


def test_landing_twice_changes_nothing(settings, account):
    url = settings.warehouse_url
    fetched, gated, loaded = land(settings, account, "run-1")
    assert fetched["rows"] == ADS * 28 and gated["passed"]
    assert loaded == {"account_id": ACCOUNT, "loaded": ADS * 28, "new": ADS * 28, "restated": 0, "unchanged": 0,
                      "rejected_days": 0}
    first = table(url, ad_insights_daily, "ad_id", "date_start")
    assert {r["date_start"] for r in first} == {account["today"] - timedelta(days=d) for d in range(1, 29)}

    _, _, again = land(settings, account, "run-2")
    assert again["new"] == 0 and again["restated"] == 0 and again["unchanged"] == ADS * 28
    second = table(url, ad_insights_daily, "ad_id", "date_start")
    drop = ("fetched_at", "run_id")
    assert [{k: v for k, v in r.items() if k not in drop} for r in second] == [
        {k: v for k, v in r.items() if k not in drop} for r in first
    ]
    assert len(table(url, ad_insights_history)) == ADS * 28
    assert len(table(url, meta_ads)) == ADS
    assert len(table(url, ad_account_daily)) == 28


def test_restated_days_replace_old_figures_and_are_recorded_as_moved(settings, account, sandbox):
    url = settings.warehouse_url
    sandbox.meta.insights.restate_days = 0  # no automatic drift: only the override below moves figures
    land(settings, account, "run-1")
    day = account["today"] - timedelta(days=2)
    ad_id = account["ads"][0]["ad_id"]
    before = {(r["ad_id"], r["date_start"]): r for r in table(url, ad_insights_daily)}[(ad_id, day)]

    # Meta restates that ad and day: 12.34 more spend (the account's total follows its ads).
    bump = {"spend_cents": int(before["spend"] * 100) + 1234}
    sandbox.client()._call("meta", "POST", "insights/override", {"account_id": ACCOUNT, "day": day.isoformat(),
                                                                 "ad_id": ad_id, "figures": bump})
    _, gated, loaded = land(settings, account, "run-2")
    assert gated["passed"] and loaded["restated"] == 1 and loaded["new"] == 0

    after = {(r["ad_id"], r["date_start"]): r for r in table(url, ad_insights_daily)}[(ad_id, day)]
    assert Decimal(after["spend"]) == Decimal(before["spend"]) + Decimal("12.34")
    assert after["versions"] == 2 and after["first_fetched_at"] == before["first_fetched_at"]
    history = [h for h in table(url, ad_insights_history, "version") if h["ad_id"] == ad_id and h["date_start"] == day]
    assert [(h["version"], h["change"], h["run_id"]) for h in history] == [(1, "new", "run-1"),
                                                                           (2, "restated", "run-2")]
    assert Decimal(history[1]["spend_delta"]) == Decimal("12.34")


def test_the_emulators_own_restatement_shows_up_as_history(settings, account, sandbox):
    land(settings, account, "run-1")
    sandbox.meta.clock_offset = 86400  # a day later Meta has restated the most recent days
    _, _, loaded = land(settings, account, "run-2", until=account["today"] - timedelta(days=1))
    assert loaded["restated"] > 0
    with connect(settings.warehouse_url).connect() as conn:
        moved = conn.execute(select(func.count()).select_from(ad_insights_history)
                             .where(ad_insights_history.c.change == "restated")).scalar()
        old = conn.execute(select(func.max(ad_insights_history.c.version)).where(
            ad_insights_history.c.date_start < account["today"] - timedelta(days=5))).scalar()
    assert moved == loaded["restated"] and old == 1


def test_a_day_that_fails_the_gate_is_not_loaded(settings, account, sandbox):
    url = settings.warehouse_url
    bad_total = account["today"] - timedelta(days=4)
    negative = account["today"] - timedelta(days=9)
    client = sandbox.client()
    # The account reports 50 more than its ads on one day; one ad reports negative spend on another.
    client._call("meta", "POST", "insights/override", [
        {"account_id": ACCOUNT, "day": bad_total.isoformat(), "ad_id": "", "figures": {"spend_cents": 5_000_000}},
        {"account_id": ACCOUNT, "day": negative.isoformat(), "ad_id": account["ads"][1]["ad_id"],
         "figures": {"spend_cents": -500}},
    ])
    _, gated, loaded = land(settings, account, "run-1")

    assert not gated["passed"]
    assert gated["rejected_days"] == sorted([bad_total.isoformat(), negative.isoformat()])
    assert loaded["loaded"] == ADS * 26
    days = {r["date_start"] for r in table(url, ad_insights_daily)}
    assert bad_total not in days and negative not in days and len(days) == 26
    assert {r["date_start"] for r in table(url, ad_account_daily)} == days
    reasons = {r["record_id"]: r["reason"] for r in table(url, quarantine)}
    assert "does not add up" in reasons[f"{ACCOUNT}:{bad_total}"]
    assert "negative" in reasons[f"{ACCOUNT}:{negative}"]
    gate = table(url, dq_results)[-1]
    assert not gate["success"] and "adds_up" in gate["failed_expectations"]
    run = table(url, insights_runs)[0]
    assert json.loads(run["rejected_days"]) == gated["rejected_days"] and run["status"] == "loaded"
    assert insights.rejected_days(url, "run-1") == {ACCOUNT: gated["rejected_days"]}


def test_a_duplicated_row_fails_its_day(settings, account):
    url = settings.warehouse_url
    from adloop.warehouse import connect as warehouse

    engine = warehouse(url)
    day = account["today"] - timedelta(days=3)
    row = {"ad_id": "1", "date_start": day, "spend": Decimal("1.00"), "impressions": 1, "clicks": 0, "reach": 1,
           "purchases": 0, "purchase_value": Decimal(0), "bookings": 0, "signups": 0, "subscribes": 0,
           "subscribe_value": Decimal(0), "actions": "{}"}
    insights.fetch_insights(settings, ACCOUNT, "run-1", run_end(account), options=FAST)
    insights.stage_ad_days(engine, "run-1", ACCOUNT, [row, dict(row)])
    gated = insights.gate_insights(url, "run-1", ACCOUNT)
    assert gated["rejected_days"] == [day.isoformat()]
