"""adloop's insights client against the Meta emulator: async jobs, splitting, throttling, pacing."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from insights_helpers import ACCOUNT, ADS, FAST

from adloop.meta.insights import InsightsJobFailed, InsightsOptions, flatten


def window(account, days=28):
    until = account["today"] - timedelta(days=1)
    return until - timedelta(days=days - 1), until


def test_reads_every_ad_day_through_one_async_job(account, client_factory, sandbox):
    client = client_factory()
    since, until = window(account)
    rows = list(client.ad_days(ACCOUNT, since, until))

    assert len(rows) == ADS * 28
    assert {(r["ad_id"], r["date_start"]) for r in rows} == {
        (ad["ad_id"], since + timedelta(days=d)) for ad in account["ads"] for d in range(28)
    }
    assert client.stats.report_runs == 1 and client.stats.split_jobs == 0
    # One POST, polls until "Job Completed" (not the "Job Running" at 100 % before it), and the pages.
    assert client.stats.pages == -(-len(rows) // FAST.page_size)
    assert sandbox.meta.insights.summary()["report_runs"] == {"normal": 1}


def test_counts_each_conversion_once_across_meta_action_types():
    row = {
        "ad_id": "1", "date_start": "2026-11-01", "spend": "10.00",
        "actions": [
            {"action_type": "offsite_conversion.fb_pixel_purchase", "value": "3", "1d_click": "2"},
            {"action_type": "purchase", "value": "3"},
            {"action_type": "omni_purchase", "value": "3"},
            {"action_type": "schedule_website", "value": "3"},
            {"action_type": "schedule_total", "value": "3"},
        ],
        "action_values": [{"action_type": "offsite_conversion.fb_pixel_purchase", "value": "126.50"},
                          {"action_type": "omni_purchase", "value": "126.50"}],
    }
    flat = flatten(row)
    assert flat["purchases"] == 3 and flat["bookings"] == 3 and flat["signups"] == 0
    assert flat["purchase_value"] == Decimal("126.50")
    kept = json.loads(flat["actions"])
    assert [e["action_type"] for e in kept["actions"]] == ["offsite_conversion.fb_pixel_purchase", "schedule_website"]
    assert kept["actions"][0]["1d_click"] == "2"


def test_account_totals_match_the_ads(account, client_factory):
    client = client_factory()
    since, until = window(account, 7)
    ads = list(client.ad_days(ACCOUNT, since, until))
    totals = {t["date_start"]: t["spend"] for t in client.account_days(ACCOUNT, since, until)}
    for day, spend in totals.items():
        assert sum(r["spend"] for r in ads if r["date_start"] == day) == spend


def test_a_failed_job_is_split_into_smaller_ranges(account, client_factory, sandbox):
    sandbox.meta.insights.fail_next = 2
    client = client_factory()
    since, until = window(account)
    rows = list(client.ad_days(ACCOUNT, since, until))

    assert len(rows) == ADS * 28 and len({(r["ad_id"], r["date_start"]) for r in rows}) == len(rows)
    assert client.stats.split_jobs == 2
    assert sandbox.meta.insights.summary()["report_runs"]["fail"] == 2


def test_a_stalled_job_times_out_and_is_split(account, client_factory, sandbox):
    sandbox.meta.insights.stall_next = 1
    now = [0.0]
    client = client_factory(InsightsOptions(poll_initial_seconds=1, poll_max_seconds=5, stall_seconds=20,
                                            page_size=200))
    client._sleep = lambda s: now.__setitem__(0, now[0] + s)
    client._clock = lambda: now[0]
    since, until = window(account, 10)
    rows = list(client.ad_days(ACCOUNT, since, until))

    assert len(rows) == ADS * 10
    assert client.stats.split_jobs == 1
    assert "stalled at 37 %" in client.stats.failures[0]


def test_a_day_that_fails_every_time_gives_up_with_a_clear_error(account, client_factory, sandbox):
    sandbox.meta.insights.fail_next = 10
    client = client_factory(InsightsOptions(poll_initial_seconds=0.01, day_attempts=2))
    day = account["today"] - timedelta(days=3)
    with pytest.raises(InsightsJobFailed, match=f"for {day} failed"):
        list(client.ad_days(ACCOUNT, day, day))


@pytest.mark.parametrize("code", [4, 17, 613, 80000, 80014])
def test_throttling_is_retried_with_backoff(account, client_factory, sandbox, code):
    sandbox.meta.faults.add(kind="throttle", code=code, count=2, path_contains="/insights")
    client = client_factory()
    since, until = window(account, 3)
    rows = list(client.ad_days(ACCOUNT, since, until))

    assert len(rows) == ADS * 3
    assert client.stats.throttled == 2 and client.stats.retries == 2
    # The throttled responses said access returns in a minute; the client waited its (test) maximum.
    assert client.slept.count(0.05) >= 2


def test_server_errors_are_retried(account, client_factory, sandbox):
    sandbox.meta.faults.add(kind="http_503", count=1, path_contains="/insights")
    sandbox.meta.faults.add(kind="http_500", count=1, method="GET", path_contains="/")
    client = client_factory()
    since, until = window(account, 3)
    assert len(list(client.ad_days(ACCOUNT, since, until))) == ADS * 3
    assert client.stats.retries == 2


def test_usage_headers_slow_the_client_down_before_meta_throttles(account, client_factory, sandbox):
    sandbox.meta.usage_meter.capacity = 6  # six calls in the window is 100 %
    client = client_factory(backoff_max_seconds=60.0)
    since, until = window(account, 2)
    list(client.ad_days(ACCOUNT, since, until))

    # From 75 % the client spreads its calls; it never reached Meta's refusal.
    assert 2.0 in client.slept
    assert client.stats.throttled == 0


def test_an_exhausted_account_quota_is_waited_out(account, client_factory, sandbox):
    sandbox.meta.usage_meter.capacity = 3
    sandbox.meta.usage_meter.window_seconds = 0.3
    client = client_factory(max_attempts=6, backoff_max_seconds=0.5)
    client._sleep = __import__("time").sleep  # really wait, so the emulator's window rolls
    since, until = window(account, 2)
    assert len(list(client.ad_days(ACCOUNT, since, until))) == ADS * 2
