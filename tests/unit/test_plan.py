"""The backfill plan: one set-based diff, checked on hand-built conversions, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import func, select, update

from adloop import reconcile
from adloop.settings import Settings
from adloop.warehouse import connect, upsert_rows
from adloop.warehouse.schema import (
    backfill_plan,
    capi_events,
    consent_opt_outs,
    reconciliation_runs,
    stripe_conversions,
)

AS_OF = datetime(2026, 12, 3, 12, tzinfo=UTC)
NOW = int(AS_OF.timestamp())
DAY = 86400
H = "a" * 64


def conversion(event_id, **over):
    row = {
        "event_id": event_id, "event_name": "Purchase", "object_type": "checkout.session", "customer_id": "cus_1",
        "livemode": True, "status": "complete", "payment_status": "paid", "event_time": NOW - DAY,
        "currency": "cad", "amount_minor": 2500, "value": Decimal("25.00"), "amount_refunded_minor": 0,
        "action_source": "website", "event_source_url": "https://s.example", "client_user_agent": "UA",
        "client_ip_address": None, "fbp": None, "fbc": None, "ad_id": None,
        "em": H, "ph": None, "fn": None, "ln": None, "ct": None, "st": None, "zp": None, "country": None,
        "external_id": None, "hash_errors": None, "normalization_version": 1, "run_id": "run-1",
        "extracted_at": AS_OF,
    }
    row.update(over)
    return row


def test_plan_decides_each_conversion_once(warehouse_url):
    engine = connect(warehouse_url)
    rows = [
        conversion("cs_send"),
        conversion("cs_soon", event_time=NOW - 6 * DAY - 3600),
        conversion("cs_expired", event_time=NOW - 7 * DAY + 60),  # inside 7 days, but inside the margin
        conversion("cs_sent"),
        conversion("cs_sent_refunded", amount_refunded_minor=2500),  # sent, then refunded: still excluded
        conversion("cs_quarantined"),
        conversion("cs_inflight"),
        conversion("cs_test", livemode=False),
        conversion("cs_unpaid", payment_status="unpaid"),
        conversion("cs_zero", amount_minor=0, value=Decimal(0)),
        conversion("cs_refunded", amount_refunded_minor=2500),
        conversion("cs_partial_refund", amount_refunded_minor=1000),
        conversion("cs_opted_email", em="b" * 64),
        conversion("cs_opted_customer", customer_id="cus_opted"),
        conversion("cs_nokeys", em=None),
        conversion("cs_other_run", run_id="run-0"),
        conversion("sub_1", event_name="Subscribe", object_type="subscription"),
    ]
    with engine.begin() as conn:
        upsert_rows(conn, stripe_conversions, rows)
        upsert_rows(conn, capi_events, [
            {"event_id": "cs_sent", "event_name": "Purchase", "source": "webhook", "status": "sent",
             "event_time": NOW - DAY, "attempts": 1},
            {"event_id": "cs_sent_refunded", "event_name": "Purchase", "source": "webhook", "status": "sent",
             "event_time": NOW - DAY, "attempts": 1},
            {"event_id": "cs_quarantined", "event_name": "Purchase", "source": "backfill",
             "status": "quarantined", "event_time": NOW - DAY, "attempts": 1},
            {"event_id": "cs_inflight", "event_name": "Purchase", "source": "backfill", "status": "in_flight",
             "event_time": NOW - DAY, "attempts": 1},
            # Same id, other event name: not the same event for Meta.
            {"event_id": "sub_1", "event_name": "Purchase", "source": "webhook", "status": "sent",
             "event_time": NOW - DAY, "attempts": 1},
        ])
        upsert_rows(conn, consent_opt_outs, [
            {"key_type": "em", "key_value": "b" * 64, "source": "t", "recorded_at": AS_OF},
            {"key_type": "customer_id", "key_value": "cus_opted", "source": "t", "recorded_at": AS_OF},
        ])
        conn.execute(reconciliation_runs.insert().values(
            run_id="run-1", window_start=AS_OF, window_end=AS_OF, dry_run=False, status="extracted"))

    summary = reconcile.plan_backfill(Settings(warehouse_url=warehouse_url), "run-1", as_of=AS_OF)

    with engine.connect() as conn:
        plan = {r.event_id: (r.decision, r.reason, r.expiring_soon)
                for r in conn.execute(select(backfill_plan).where(backfill_plan.c.run_id == "run-1"))}
    # Already-sent conversions (cs_sent) are counted, not written: the plan holds only the rest.
    assert plan == {
        "cs_send": ("send", None, False),
        "cs_soon": ("send", None, True),
        "cs_expired": ("expired", None, False),
        "cs_sent_refunded": ("excluded", "fully_refunded", False),
        "cs_quarantined": ("excluded", "quarantined_earlier", False),
        "cs_inflight": ("send", None, False),
        "cs_test": ("excluded", "test_mode", False),
        "cs_unpaid": ("excluded", "unpaid", False),
        "cs_zero": ("excluded", "zero_amount", False),
        "cs_refunded": ("excluded", "fully_refunded", False),
        "cs_partial_refund": ("send", None, False),
        "cs_opted_email": ("excluded", "opted_out", False),
        "cs_opted_customer": ("excluded", "opted_out", False),
        "cs_nokeys": ("excluded", "no_customer_data", False),
        "sub_1": ("send", None, False),
    }
    assert summary["send"] == 5 and summary["expiring_soon"] == 1
    assert summary["already_sent"] == 1 and summary["expired"] == 1 and summary["excluded"] == 9
    assert summary["excluded_by_reason"] == {
        "fully_refunded": 2, "no_customer_data": 1, "opted_out": 2, "quarantined_earlier": 1, "test_mode": 1,
        "unpaid": 1, "zero_amount": 1,
    }

    with engine.connect() as conn:
        run = conn.execute(select(reconciliation_runs).where(reconciliation_runs.c.run_id == "run-1")).one()
    assert (run.already_sent, run.to_send, run.expiring_soon, run.expired, run.excluded) == (1, 5, 1, 1, 9)
    assert json.loads(run.excluded_by_reason) == summary["excluded_by_reason"]

    # Planning again replaces the plan rather than adding to it.
    again = reconcile.plan_backfill(Settings(warehouse_url=warehouse_url), "run-1", as_of=AS_OF)
    assert again == summary
    assert plan_rows(engine, "run-1") == (15, 15)


def plan_rows(engine, run_id):
    """The run's plan rows, and how many distinct conversions they name."""
    p = backfill_plan
    with engine.connect() as conn:
        rows = conn.execute(select(func.count()).where(p.c.run_id == run_id)).scalar_one()
        keys = conn.execute(
            select(func.count()).select_from(
                select(p.c.event_id, p.c.event_name).where(p.c.run_id == run_id).distinct().subquery()
            )
        ).scalar_one()
    return rows, keys


def test_two_attempts_planning_one_run_at_once_write_one_plan(warehouse_url):
    """The plan has no primary key: a zombie attempt beside its retry must not write it twice."""
    engine = connect(warehouse_url)
    with engine.begin() as conn:
        upsert_rows(conn, stripe_conversions, [conversion(f"cs_{n}") for n in range(20)])
        conn.execute(reconciliation_runs.insert().values(
            run_id="run-1", window_start=AS_OF, window_end=AS_OF, dry_run=False, status="extracted"))
    settings = Settings(warehouse_url=warehouse_url)
    errors = []

    def plan():
        try:
            reconcile.plan_backfill(settings, "run-1", as_of=AS_OF)
        except Exception as exc:  # pragma: no cover - reported by the assert below
            errors.append(exc)

    # Hold the run's record, so both attempts are under way before either can finish.
    with engine.begin() as conn:
        conn.execute(update(reconciliation_runs).where(reconciliation_runs.c.run_id == "run-1")
                     .values(status="extracted"))
        attempts = [threading.Thread(target=plan) for _ in range(2)]
        for attempt in attempts:
            attempt.start()
        time.sleep(1)
    for attempt in attempts:
        attempt.join(timeout=60)

    assert errors == []
    assert plan_rows(engine, "run-1") == (20, 20)


def test_pending_batches_are_oldest_first_full_and_skip_what_was_settled_meanwhile(warehouse_url):
    engine = connect(warehouse_url)
    times = {f"cs_{n:02d}": NOW - DAY - (20 - n) * 60 for n in range(20)}  # cs_00 is the oldest
    with engine.begin() as conn:
        upsert_rows(conn, stripe_conversions, [conversion(e, event_time=t) for e, t in times.items()])
        conn.execute(reconciliation_runs.insert().values(
            run_id="run-1", window_start=AS_OF, window_end=AS_OF, dry_run=False, status="extracted"))
    reconcile.plan_backfill(Settings(warehouse_url=warehouse_url), "run-1", as_of=AS_OF)
    # After planning, the webhook sends three of them and an earlier attempt left one in flight.
    settled = {"cs_01": "sent", "cs_02": "sent", "cs_09": "quarantined", "cs_05": "in_flight"}
    with engine.begin() as conn:
        upsert_rows(conn, capi_events, [
            {"event_id": e, "event_name": "Purchase", "source": "webhook", "status": s,
             "event_time": times[e], "attempts": 1} for e, s in settled.items()])

    batches = [[r["event_id"] for r in b] for b in reconcile._pending_batches(engine, "run-1", 4)]

    pending = [e for e in sorted(times, key=times.get) if settled.get(e) in (None, "in_flight")]
    assert [e for b in batches for e in b] == pending  # oldest first, each once, settled ones skipped
    assert [len(b) for b in batches] == [4, 4, 4, 4, 1]  # topped up: as few requests as possible
    assert set(batches[0][0:1]) == {"cs_00"} and "cs_05" in batches[0]
