"""The emulator's insights endpoints over plain HTTP: job states, paging, windows, restatement."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from datetime import timedelta

from insights_helpers import ACCOUNT, ADS


def call(sandbox, method, path, **params):
    params["access_token"] = "EAAB-test"
    data = None
    url = f"{sandbox.meta_url}/v26.0/{path}"
    encoded = urllib.parse.urlencode({k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()})
    if method == "GET":
        url += "?" + encoded
    else:
        data = encoded.encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, method=method), timeout=10) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


def test_async_job_moves_through_metas_states(sandbox, account):
    since = (account["today"] - timedelta(days=3)).isoformat()
    until = (account["today"] - timedelta(days=1)).isoformat()
    query = {"level": "ad", "time_increment": 1, "time_range": {"since": since, "until": until},
             "fields": ["ad_id", "spend", "actions"], "action_attribution_windows": ["7d_click", "7d_view"]}
    status, body, headers = call(sandbox, "POST", f"{ACCOUNT}/insights", **query)
    assert status == 200 and "X-FB-Ads-Insights-Throttle" in headers
    run_id = body["report_run_id"]

    status, early, _ = call(sandbox, "GET", f"{run_id}/insights")
    assert status == 400 and "not ready" in early["error"]["message"]
    states = [call(sandbox, "GET", f"{run_id}/")[1] for _ in range(3)]
    assert [(s["async_status"], s["async_percent_completion"]) for s in states] == [
        ("Job Not Started", 0), ("Job Running", 100), ("Job Completed", 100)]

    rows, after = [], None
    while True:
        status, page, _ = call(sandbox, "GET", f"{run_id}/insights", limit=4, **({"after": after} if after else {}))
        rows += page["data"]
        if "next" not in page.get("paging", {}):
            break
        after = page["paging"]["cursors"]["after"]
    assert len(rows) == ADS * 3
    with_actions = [r for r in rows if r.get("actions")]
    assert with_actions
    # 7d_view is no longer served (since 2026-01-12); 7d_click is.
    assert all("7d_click" in e and "7d_view" not in e for r in with_actions for e in r["actions"])


def test_sync_insights_level_account_sums_the_ads(sandbox, account):
    day = (account["today"] - timedelta(days=5)).isoformat()
    window = {"since": day, "until": day}
    _, ads, _ = call(sandbox, "GET", f"{ACCOUNT}/insights", level="ad", time_range=window, fields=["spend"],
                     limit=100)
    _, total, _ = call(sandbox, "GET", f"{ACCOUNT}/insights", level="account", time_range=window, fields=["spend"])
    assert round(sum(float(r["spend"]) for r in ads["data"]), 2) == float(total["data"][0]["spend"])


def test_recent_days_restate_and_old_days_do_not(sandbox, account):
    recent = (account["today"] - timedelta(days=1)).isoformat()
    old = (account["today"] - timedelta(days=35)).isoformat()

    def spend(day):
        _, body, _ = call(sandbox, "GET", f"{ACCOUNT}/insights", level="ad", fields=["spend"],
                          time_range={"since": day, "until": day}, limit=100)
        return [r["spend"] for r in body["data"]]

    before_recent, before_old = spend(recent), spend(old)
    sandbox.meta.clock_offset = 86400
    assert spend(recent) != before_recent
    assert spend(old) == before_old


def test_unknown_account_and_throttled_account(sandbox, account):
    status, body, _ = call(sandbox, "GET", "act_999/insights", level="ad")
    assert status == 400 and body["error"]["code"] == 100
    sandbox.meta.usage_meter.capacity = 1
    status, body, _ = call(sandbox, "GET", f"{ACCOUNT}/insights", level="account")
    assert status == 400 and body["error"]["code"] == 80000
