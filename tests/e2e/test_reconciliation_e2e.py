"""The nightly reconciliation through the real Airflow, against the sandbox.

Ground truth comes from the generator: which conversions the webhook never sent, which belong to
customers who opted out, which were fully refunded. Meta's side is what the emulator counted.
"""

from __future__ import annotations

import copy
import json
import os
import signal
from collections import Counter

import pytest
from sqlalchemy import select

from adloop import local
from adloop.warehouse import connect
from adloop.warehouse.schema import capi_events, dq_results, quarantine, reconciliation_runs

pytestmark = pytest.mark.e2e


def runs(studio) -> list[dict]:
    with connect(studio.warehouse_url).connect() as conn:
        rows = conn.execute(select(reconciliation_runs).order_by(reconciliation_runs.c.started_at))
        return [dict(r._mapping) for r in rows]


def ledger(studio) -> dict[str, str]:
    with connect(studio.warehouse_url).connect() as conn:
        return {r.event_id: r.status for r in conn.execute(select(capi_events))}


def test_every_missed_conversion_is_backfilled_exactly_once(studio):
    expected = studio.expected()
    assert len(expected["to_backfill"]) >= 20, "the generated studio should miss a fair number"

    assert studio.run() == 0, studio.log_tail()

    counted = studio.counted_by_meta()
    assert Counter(counted).most_common(1)[0][1] == 1
    assert set(counted) == expected["to_backfill"]
    assert not set(counted) & (expected["sent"] | expected["opted_out"])
    _values_are_in_major_units(studio)
    _no_clear_customer_data_in_warehouse_or_logs(studio)
    first = runs(studio)[-1]
    assert first["status"] == "verified"
    assert first["backfilled"] == len(expected["to_backfill"])
    assert first["capi_requests"] == 1  # fewer than 1,000 events: one request

    # The next night finds nothing left to send.
    assert studio.run() == 0, studio.log_tail()
    assert studio.client.summary()["events_received"] == len(counted)
    second = runs(studio)[-1]
    assert second["backfilled"] == 0 and second["capi_requests"] == 0
    assert second["already_sent"] == first["already_sent"] + first["backfilled"]


def _values_are_in_major_units(studio) -> None:
    from adloop.events import minor_unit_exponent

    truth = {c.event_id: c for c in studio.business.conversions()}
    received = studio.client.received_events(counted=True, limit=100_000)
    currencies = set()
    for event in received:
        conversion = truth[event["event_id"]]
        sent = (event.get("event") or event).get("custom_data") or {}
        assert float(sent["value"]) == pytest.approx(
            conversion.value / 10 ** minor_unit_exponent(conversion.currency)), event["event_id"]
        currencies.add(sent["currency"].lower())
    assert "cad" in currencies


def _no_clear_customer_data_in_warehouse_or_logs(studio) -> None:
    """Emails, phones and names of every generated customer appear nowhere adloop writes."""
    from sqlalchemy import inspect

    clear = set()
    for obj in studio.business.stripe_objects():
        if obj["object"] == "customer":
            clear |= {v.strip() for v in (obj.get("email"), obj.get("phone"), obj.get("name")) if v and v.strip()}
    engine = connect(studio.warehouse_url)
    with engine.connect() as conn:
        dump = "\n".join(
            repr(tuple(row)) for table in inspect(engine).get_table_names()
            for row in conn.exec_driver_sql(f'SELECT * FROM "{table}"')
        )
    logs = studio.log.read_text(errors="replace")
    leaked = sorted(v for v in clear if v in dump or v in logs)
    assert not leaked, f"{len(leaked)} clear customer values found, e.g. {leaked[:3]}"


def test_dry_run_plans_and_sends_nothing(sqlite_studio):
    studio = sqlite_studio
    assert studio.run(conf={"dry_run": True}) == 0, studio.log_tail()

    assert studio.client.summary()["events_received"] == 0
    run = runs(studio)[-1]
    assert run["dry_run"] and run["status"] == "dry_run"
    assert run["to_send"] == len(studio.expected()["to_backfill"])


def test_a_run_killed_while_sending_resumes_without_loss_or_duplicates(sqlite_studio):
    studio = sqlite_studio
    studio.meta_extra = {"batch_size": 10}
    expected = studio.expected()["to_backfill"]
    # Slow answers keep the run inside send_backfill long enough to kill it there.
    studio.client.add_fault("meta", "slow", delay_seconds=1.0, path_contains="/events")

    proc = studio.start()
    studio.wait_for(lambda: studio.client.summary()["requests"] >= 2, timeout=120, what="two CAPI requests")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = studio.client.summary()["events_counted"]
    assert 0 < partial < len(expected)

    studio.client.clear_faults()
    assert studio.run() == 0, studio.log_tail()

    counted = studio.counted_by_meta()
    assert sorted(counted) == sorted(expected)  # each exactly once, none lost
    # The batch in flight at the kill may be sent again; Meta drops the copies (same event_id).
    assert studio.client.summary()["events_deduplicated"] <= 10
    assert {s for e, s in ledger(studio).items() if e in expected} == {"sent"}


def test_transient_failures_are_retried_until_everything_is_sent(sqlite_studio):
    studio = sqlite_studio
    # Six failures in a row fit in one task attempt with eight tries per request.
    studio.meta_extra = {"batch_size": 20, "max_attempts": 8}
    expected = studio.expected()["to_backfill"]
    studio.client.add_fault("meta", "http_500", count=3, path_contains="/events")
    studio.client.add_fault("meta", "throttle", code=17, count=2, path_contains="/events")
    studio.client.add_fault("meta", "throttle", code=80004, count=1, path_contains="/events")
    studio.client.add_fault("stripe", "throttle", count=2)

    assert studio.run() == 0, studio.log_tail()

    assert sorted(studio.counted_by_meta()) == sorted(expected)
    summary = studio.client.summary()
    assert summary["faulted_requests"] == 6
    assert runs(studio)[-1]["capi_requests"] == -(-len(expected) // 20) + 6


def _paid_session(studio) -> dict:
    recent = int(studio.end.timestamp()) - 3 * 86400
    for obj in studio.business.stripe_objects():
        if (obj["object"] == "checkout.session" and obj.get("mode") == "payment" and obj.get("livemode")
                and obj.get("payment_status") == "paid" and obj["created"] > recent):
            return obj
    raise AssertionError("no recent paid session in the generated studio")


def _variant(session: dict, suffix: str, **changes) -> dict:
    obj = copy.deepcopy(session)
    obj["id"] = f"{session['id']}_{suffix}"
    obj["payment_intent"] = None
    obj["customer_details"]["email"] = f"{suffix}@example.com"
    metadata = changes.pop("metadata", {})
    obj["metadata"].update(metadata)
    obj.update(changes)
    return obj


def test_bad_records_are_quarantined_with_reasons_and_the_rest_are_sent(sqlite_studio):
    studio = sqlite_studio
    studio.meta_extra = {"batch_size": 50}
    session = _paid_session(studio)
    bad_currency = _variant(session, "nocurrency", currency="")
    bad_fbc = _variant(session, "badfbc", metadata={"fbc": "not-a-click-id"})
    studio.client.load_stripe_objects([bad_currency, bad_fbc])
    expected = studio.expected()["to_backfill"]

    assert studio.run() == 0, studio.log_tail()

    assert sorted(studio.counted_by_meta()) == sorted(expected)
    with connect(studio.warehouse_url).connect() as conn:
        reasons = {r.record_id: (r.stage, r.reason) for r in conn.execute(select(quarantine))}
    assert reasons[bad_currency["id"]] == ("extract", "has currency '', expected an ISO 4217 code")
    stage, reason = reasons[bad_fbc["id"]]
    assert stage == "send" and "fbc" in reason
    assert ledger(studio)[bad_fbc["id"]] == "quarantined"
    assert runs(studio)[-1]["quarantined"] == 1


def test_a_failed_gate_stops_the_run_before_meta_and_alerts_the_engineer(sqlite_studio, alert_hook):
    studio = sqlite_studio
    studio.extra_env = alert_hook.connection_env()
    session = _paid_session(studio)
    # A misconfigured checkout that put the customer's email where the browser id belongs.
    leaky = _variant(session, "leaky", metadata={"fbp": "zoe.obrien@example.com"})
    studio.client.load_stripe_objects([leaky])

    assert studio.run() != 0

    assert studio.client.summary()["events_received"] == 0
    with connect(studio.warehouse_url).connect() as conn:
        gate = conn.execute(select(dq_results).where(dq_results.c.step == "gate_conversions")).one()
    assert not gate.success
    failed = json.loads(gate.failed_expectations)
    assert any(f.get("column") == "fbp" for f in failed)
    assert "zoe.obrien@example.com" not in gate.failed_expectations
    assert "gate stripe_conversions (gate_conversions) failed" in studio.log.read_text()

    # One alert, for the task that failed (the tasks after it never ran), sent by its failure callback.
    assert len(alert_hook.received) == 1, studio.log_tail()
    text = alert_hook.received[0]["text"]
    assert "stripe_capi_reconciliation › gate_conversions failed: data-quality gate failed" in text
    assert "fbp must not contain '@': 1 of" in text
    assert "dq_results" in text and "step = 'gate_conversions'" in text
    assert "What to do:" in text and "Fix the data upstream" in text and "There is no override" in text
    assert "try 1 of 3, not retried" in text and "log: http" in text
    for secret in (local.SANDBOX_META_TOKEN, local.SANDBOX_STRIPE_KEY, "zoe.obrien@example.com"):
        assert secret not in text
