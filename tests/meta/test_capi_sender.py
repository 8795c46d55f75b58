"""The CAPI sender against the Meta emulator: batching, splitting rejected batches, retrying."""

from __future__ import annotations

import time

import pytest

from adloop.meta.capi import CapiFatalError, CapiRetriesExhausted, CapiSender
from adloop.meta.errors import usage_wait_seconds
from adloop.sandbox.server import Sandbox
from adloop.settings import MetaSettings

PIXEL = "1234567890123456"
H = "0" * 63


@pytest.fixture
def sandbox(tmp_path):
    with Sandbox(tmp_path / "sandbox.db") as s:
        yield s


def settings(sandbox, **over) -> MetaSettings:
    cfg = dict(access_token="token", pixel_id=PIXEL, graph_url=sandbox.meta_url, backoff_base_seconds=0.01,
               backoff_max_seconds=0.05, max_attempts=4)
    cfg.update(over)
    return MetaSettings(**cfg)


def row(i: int, **over) -> dict:
    r = {
        "event_id": f"cs_live_{i:05d}", "event_name": "Purchase", "event_time": int(time.time()) - 3600,
        "action_source": "website", "event_source_url": "https://studio.example/book",
        "client_user_agent": "Mozilla/5.0", "client_ip_address": "203.0.113.7", "fbp": None, "fbc": None,
        "currency": "cad", "value": 25.0, "em": f"{i:064x}", "ph": None, "fn": None, "ln": None, "ct": None,
        "st": None, "zp": None, "country": None, "external_id": f"{i + 7:064x}",
    }
    r.update(over)
    return r


class Outcomes:
    def __init__(self):
        self.sent: list[str] = []
        self.rejected: dict[str, str] = {}

    def on_sent(self, rows, fbtrace_id):
        assert fbtrace_id
        self.sent += [r["event_id"] for r in rows]

    def on_rejected(self, r, error):
        self.rejected[r["event_id"]] = error.describe()


def test_a_rejected_batch_is_split_until_the_bad_events_stand_alone(sandbox):
    rows = [row(i) for i in range(40)]
    rows[7]["client_user_agent"] = None  # a website event without one: Meta refuses the whole request
    rows[30]["fbc"] = "not-a-click-id"
    out = Outcomes()
    sender = CapiSender(settings(sandbox))

    sender.deliver(rows, on_sent=out.on_sent, on_rejected=out.on_rejected)

    assert sorted(out.rejected) == ["cs_live_00007", "cs_live_00030"]
    assert "client_user_agent" in out.rejected["cs_live_00007"] and "fbc" in out.rejected["cs_live_00030"]
    assert sorted(out.sent) == sorted(r["event_id"] for r in rows if r["event_id"] not in out.rejected)
    counted = {e["event_id"] for e in sandbox.client().received_events(counted=True, limit=100)}
    assert counted == set(out.sent)
    # Two bad events among 40: far fewer requests than one per event.
    assert sender.stats.requests < 20


def test_transient_errors_are_retried_with_backoff(sandbox):
    sandbox.client().add_fault("meta", "http_503", count=2)
    sandbox.client().add_fault("meta", "throttle", code=613, count=1)
    out = Outcomes()
    sender = CapiSender(settings(sandbox))

    sender.deliver([row(i) for i in range(5)], on_sent=out.on_sent, on_rejected=out.on_rejected)

    assert len(out.sent) == 5 and not out.rejected
    assert sender.stats.requests == 4 and sender.stats.retries == 3


def test_retries_run_out_and_leave_the_events_unsettled(sandbox):
    sandbox.client().add_fault("meta", "http_500", count=10)
    out = Outcomes()
    with pytest.raises(CapiRetriesExhausted, match="failed 4 times"):
        CapiSender(settings(sandbox)).deliver([row(1)], on_sent=out.on_sent, on_rejected=out.on_rejected)
    assert not out.sent and not out.rejected


def test_a_refused_token_stops_without_quarantining_anything(sandbox):
    out = Outcomes()
    with pytest.raises(CapiFatalError, match="access token"):
        CapiSender(settings(sandbox, access_token="")).deliver(
            [row(1), row(2)], on_sent=out.on_sent, on_rejected=out.on_rejected)
    assert not out.sent and not out.rejected


def test_usage_headers_slow_the_sender_before_meta_throttles():
    assert usage_wait_seconds({}) == 0
    calm = '{"act_1": [{"type": "ads_management", "call_count": 10, "total_cputime": 5, "total_time": 5}]}'
    assert usage_wait_seconds({"X-Business-Use-Case-Usage": calm}) == 0
    busy = '{"act_1": [{"type": "ads_management", "call_count": 80, "total_cputime": 5, "total_time": 5}]}'
    assert usage_wait_seconds({"X-Business-Use-Case-Usage": busy}) > 0
    locked = '{"call_count": 100, "estimated_time_to_regain_access": 3}'
    assert usage_wait_seconds({"x-ad-account-usage": locked}) == 180
