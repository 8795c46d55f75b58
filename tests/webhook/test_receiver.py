"""What the receiver does with each kind of delivery: the ledger it writes, what reaches Meta, the
consent list, and how it behaves when Meta is slow or down."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select
from webhook_helpers import event, pick

from adloop import consent, stripe_source
from adloop.warehouse import connect
from adloop.warehouse.schema import consent_opt_outs
from adloop.warehouse.webhook_schema import app_conversions, stripe_webhook_events


def _paid_session(stripe_objects, n: int = 0) -> dict:
    sessions = [o for o in stripe_objects if o["object"] == "checkout.session" and o["mode"] == "payment"
                and o["payment_status"] == "paid" and o["livemode"]]
    return pick([sessions[n]])


def _first_invoice(stripe_objects) -> dict:
    return pick(stripe_objects, object="invoice", billing_reason="subscription_create", status="paid")


def test_purchase_and_subscribe_reach_meta_with_the_backfills_id_and_hashes(warehouse_url, make_receiver,
                                                                           stripe_objects):
    receiver = make_receiver(warehouse_url)
    session, invoice = _paid_session(stripe_objects), _first_invoice(stripe_objects)

    purchase = receiver.post_event(event("checkout.session.completed", session))
    subscribe = receiver.post_event(event("invoice.paid", invoice))
    receiver.settle()

    sub_id = invoice["parent"]["subscription_details"]["subscription"]
    assert purchase.json()["outcome"] == subscribe.json()["outcome"] == "queued"
    ledger = receiver.ledger()
    assert set(ledger) == {("Purchase", session["id"]), ("Subscribe", sub_id)}
    assert {(r["source"], r["status"], r["attempts"]) for r in ledger.values()} == {("webhook", "sent", 1)}
    assert all(r["fbtrace_id"] and r["sent_at"] for r in ledger.values())

    # The nightly backfill would build the very same event from the same objects.
    expected = stripe_source.hash_conversions(
        [stripe_source.purchase_from_session(session, {}), stripe_source.subscribe_from_invoice(invoice, None)],
        run_id="compare", default_country="CA")
    received = {e["event_id"]: e["event"] for e in receiver.meta_events()}
    for row in expected:
        sent = received[row["event_id"]]
        assert sent["event_name"] == row["event_name"]
        assert sent["event_time"] == row["event_time"]
        assert sent["user_data"]["em"] == [row["em"]] and sent["user_data"]["ph"] == [row["ph"]]
        assert float(sent["custom_data"]["value"]) == float(row["value"])


def test_events_that_are_not_conversions_are_acknowledged_and_ignored(receiver, stripe_objects):
    renewal = dict(_first_invoice(stripe_objects), billing_reason="subscription_cycle")
    renewal["id"] += "_renewal"
    membership_checkout = pick(stripe_objects, object="checkout.session", mode="subscription")
    outcomes = {
        "renewal": receiver.post_event(event("invoice.paid", renewal)),
        "membership checkout": receiver.post_event(event("checkout.session.completed", membership_checkout)),
        "other type": receiver.post_event(event("customer.created", {"id": "cus_1", "object": "customer"})),
    }
    assert {k: (r.status_code, r.json()["outcome"]) for k, r in outcomes.items()} == {
        "renewal": (200, "ignored:renewal"),
        "membership checkout": (200, "ignored:not_payment_mode"),
        "other type": (200, "ignored:event_type"),
    }
    receiver.settle()
    assert receiver.ledger() == {} and receiver.meta_events() == []


def test_a_delayed_payment_counts_when_it_succeeds(receiver, stripe_objects):
    session = _paid_session(stripe_objects)
    pending = dict(session, payment_status="unpaid")

    completed = receiver.post_event(event("checkout.session.completed", pending))
    succeeded = receiver.post_event(event("checkout.session.async_payment_succeeded", session))
    receiver.settle()

    assert completed.json()["outcome"] == "ignored:unpaid"
    assert succeeded.json()["outcome"] == "queued"
    assert [e["event_id"] for e in receiver.meta_events()] == [session["id"]]


def test_a_conversion_already_in_the_ledger_is_not_sent_again(receiver, stripe_objects):
    session = _paid_session(stripe_objects)
    receiver.post_event(event("checkout.session.completed", session, "evt_first"))
    receiver.settle()
    # A different event about the same session (say, an async success after a completed that was paid).
    again = receiver.post_event(event("checkout.session.async_payment_succeeded", session, "evt_second"))
    receiver.settle()
    assert again.json()["outcome"] == "already_in_ledger:sent"
    assert len(receiver.meta_events()) == 1


def test_test_mode_and_zero_amounts_are_excluded_like_the_backfill_does(receiver, stripe_objects):
    test_mode = dict(_paid_session(stripe_objects, 0), livemode=False)
    free = dict(_paid_session(stripe_objects, 1), amount_total=0)
    assert receiver.post_event(event("checkout.session.completed", test_mode)).json()["outcome"] == \
        "excluded:test_mode"
    assert receiver.post_event(event("checkout.session.completed", free)).json()["outcome"] == "excluded:zero_amount"
    receiver.settle()
    assert receiver.ledger() == {} and receiver.meta_events() == []


def test_opted_out_customers_are_never_sent(receiver, stripe_objects):
    by_email, by_customer = _paid_session(stripe_objects, 0), _paid_session(stripe_objects, 1)
    engine = connect(receiver.warehouse_url)
    with engine.begin() as conn:
        # As the customer typed it at checkout, in another case and with spaces: the hash matches.
        typed = f"  {by_email['customer_details']['email'].upper()} "
        consent.record(conn, consent.opt_out_rows(emails=[typed], source="test"))
        consent.record(conn, consent.opt_out_rows(customer_ids=[by_customer["customer"]], source="test"))

    outcomes = [receiver.post_event(event("checkout.session.completed", s)).json()["outcome"]
                for s in (by_email, by_customer)]
    receiver.settle()

    assert outcomes == ["excluded:opted_out", "excluded:opted_out"]
    assert receiver.ledger() == {} and receiver.meta_events() == []
    recorded = {r["event_id"]: r["outcome"] for r in receiver.table(stripe_webhook_events)}
    assert set(recorded.values()) == {"excluded:opted_out"}


def test_the_app_records_an_opt_out_with_a_signed_call_and_only_the_hash_is_kept(receiver, stripe_objects):
    session = _paid_session(stripe_objects)
    email = session["customer_details"]["email"]

    unsigned = receiver.client.post("/consent/opt-out", json={"email": email})
    wrong = receiver.post_app("/consent/opt-out", {"email": email}, secret="not-the-app-secret")
    ok = receiver.post_app("/consent/opt-out", {"email": email, "customer_id": "cus_other"})

    assert unsigned.status_code == wrong.status_code == 400
    assert ok.status_code == 200 and ok.json() == {"recorded": 2}
    stored = receiver.table(consent_opt_outs)
    assert {r["key_type"] for r in stored} == {"em", "customer_id"}
    assert email not in repr(stored) and email.lower() not in repr(stored)
    assert receiver.post_event(event("checkout.session.completed", session)).json()["outcome"] == \
        "excluded:opted_out"


def test_meta_down_answers_stripe_at_once_and_leaves_the_event_pending(receiver, stripe_objects):
    receiver.sandbox.meta.faults.add(kind="http_503", path_contains="/events")
    session = _paid_session(stripe_objects)

    response = receiver.post_event(event("checkout.session.completed", session))
    receiver.settle()

    assert response.status_code == 200
    row = receiver.ledger()[("Purchase", session["id"])]
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert "CapiRetriesExhausted" in row["error"], row["error"]
    assert receiver.sandbox.client().summary()["events_counted"] == 0


def test_a_slow_meta_never_holds_up_the_answer_to_stripe(make_receiver, stripe_objects):
    receiver = make_receiver(timeout_seconds=0.5)
    receiver.sandbox.meta.faults.add(kind="slow", delay_seconds=3.0, path_contains="/events")
    sessions = [_paid_session(stripe_objects, n) for n in range(5)]

    started = time.monotonic()
    responses = [receiver.post_event(event("checkout.session.completed", s)) for s in sessions]
    answered = time.monotonic() - started
    receiver.settle()

    assert all(r.status_code == 200 for r in responses)
    assert answered < 1.0, f"5 deliveries took {answered:.2f} s with Meta answering in 3 s"
    ledger = receiver.ledger()
    # The one request that timed out is in doubt: pending again, for the nightly DAG.
    assert {r["status"] for r in ledger.values()} <= {"pending", "sent"}
    assert any(r["status"] == "pending" and "Timeout" in (r["error"] or "") for r in ledger.values())


def test_without_meta_settings_the_ledger_is_written_for_the_nightly_dag(make_receiver, stripe_objects):
    receiver = make_receiver(meta=False)
    session = _paid_session(stripe_objects)
    assert receiver.post_event(event("checkout.session.completed", session)).json()["outcome"] == "queued"
    assert receiver.ledger()[("Purchase", session["id"])]["status"] == "pending"
    assert receiver.meta_events() == []


def test_a_warehouse_failure_is_a_500_so_stripe_delivers_again(receiver, stripe_objects, monkeypatch):
    session = _paid_session(stripe_objects)
    intake = receiver.app.state.intake

    def broken(*args, **kwargs):
        raise RuntimeError("warehouse unreachable")

    monkeypatch.setattr(intake, "_admit", broken)
    with pytest.raises(RuntimeError):
        receiver.post_event(event("checkout.session.completed", session))  # TestClient re-raises server errors
    monkeypatch.undo()
    assert receiver.table(stripe_webhook_events) == []  # rolled back: the redelivery is processed
    assert receiver.post_event(event("checkout.session.completed", session)).json()["outcome"] == "queued"


# -- Schedule from the app ------------------------------------------------------------------------


def _booking(**changes) -> dict:
    booking = {
        "booking_id": "BKG-000042-001",
        "event_time": int(time.time()) - 60,
        "amount_minor": 2500,
        "currency": "CAD",
        "customer_id": "cus_schedule_1",
        "customer": {"email": "Ana.Lima@Example.com", "phone": "(780) 555-0123", "first_name": "Ana",
                     "last_name": "Lima", "country": "CA"},
        "event_source_url": "https://studio.example/book/yoga",
        "client_user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
        "fbp": "fb.1.1796166082021.1234567890",
    }
    booking.update(changes)
    return booking


def test_a_confirmed_booking_is_sent_as_schedule_once(receiver):
    unsigned = receiver.client.post("/app/schedule", json=_booking())
    first = receiver.post_app("/app/schedule", _booking())
    again = receiver.post_app("/app/schedule", _booking())
    receiver.settle()

    assert unsigned.status_code == 400
    assert first.status_code == 202 and first.json()["outcome"] == "queued"
    assert again.status_code == 200 and again.json()["outcome"].startswith("already_in_ledger")
    sent = receiver.meta_events()
    assert [(e["event_name"], e["event_id"]) for e in sent] == [("Schedule", "BKG-000042-001")]
    assert sent[0]["event"]["action_source"] == "website"
    assert len(sent[0]["event"]["user_data"]["em"][0]) == 64
    stored = repr(receiver.table(app_conversions))
    assert "Ana.Lima" not in stored and "ana.lima" not in stored and "555-0123" not in stored


def test_a_bad_booking_report_says_what_is_wrong(receiver):
    response = receiver.post_app("/app/schedule", _booking(event_time="yesterday"))
    assert response.status_code == 400
    assert "event_time must be unix seconds" in response.json()["error"]


def test_a_schedule_whose_send_failed_is_sent_by_the_receivers_retry(receiver):
    receiver.sandbox.meta.faults.add(kind="http_500", count=1, path_contains="/events")
    receiver.post_app("/app/schedule", _booking())
    receiver.settle()
    assert receiver.ledger()[("Schedule", "BKG-000042-001")]["status"] == "pending"

    assert receiver.worker.requeue_stale_schedules(older_than_seconds=-1) == 1
    receiver.settle()

    row = receiver.ledger()[("Schedule", "BKG-000042-001")]
    assert row["status"] == "sent" and row["attempts"] == 2
    assert receiver.sandbox.client().summary()["events_counted"] == 1


def test_the_pixel_snippet_is_served(receiver):
    response = receiver.client.get("/pixel.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/javascript")
    assert "window.adloop" in response.text


def test_nothing_is_sent_for_a_customer_opted_out_by_the_cli(receiver, stripe_objects, capsys):
    from adloop import cli

    session = _paid_session(stripe_objects)
    assert cli.main(["opt-out", session["customer_details"]["email"], "--customer-id", "cus_x",
                     "--warehouse", receiver.warehouse_url]) == 0
    assert "recorded 2 opt-outs" in capsys.readouterr().out
    with connect(receiver.warehouse_url).connect() as conn:
        assert conn.execute(select(consent_opt_outs.c.key_type)).scalars().all().count("em") == 1
    assert receiver.post_event(event("checkout.session.completed", session)).json()["outcome"] == \
        "excluded:opted_out"


# -- deliveries written together ------------------------------------------------------------------


def test_deliveries_written_together_are_answered_as_if_alone(make_receiver, stripe_objects, monkeypatch):
    receiver = make_receiver(meta=False)
    intake = receiver.app.state.intake
    first, failing = _paid_session(stripe_objects, 0), _paid_session(stripe_objects, 1)
    broken = dict(_paid_session(stripe_objects, 2), currency="")
    completed = event("checkout.session.completed", first)
    admit = intake._admit

    def admit_unless_failing(conn, row, **kwargs):
        if row["event_id"] == failing["id"]:
            raise RuntimeError("warehouse unreachable")
        return admit(conn, row, **kwargs)

    monkeypatch.setattr(intake, "_admit", admit_unless_failing)
    results = intake.stripe_events([
        completed,
        completed,  # Stripe delivering the same event twice at once
        event("checkout.session.async_payment_succeeded", first),
        {"object": "not an event"},
        event("checkout.session.completed", failing),
        event("checkout.session.completed", broken),
    ])

    assert [r.outcome if hasattr(r, "outcome") else type(r).__name__ for r in results] == [
        "queued", "duplicate", "already_in_ledger:pending", "BadRequest", "RuntimeError", "quarantined"]
    assert set(receiver.ledger()) == {("Purchase", first["id"])}
    recorded = {r["event_id"]: r["outcome"] for r in receiver.table(stripe_webhook_events)}
    assert failing["id"] not in {r["object_id"] for r in receiver.table(stripe_webhook_events)}  # Stripe retries it
    assert sorted(recorded.values()) == ["already_in_ledger:pending", "quarantined", "queued"]

    # The row queued for Meta is the one a delivery alone would have made.
    alone = stripe_source.hash_conversions([stripe_source.purchase_from_session(first, {})], run_id="x",
                                           default_country="CA")[0]
    assert {k: results[0].row[k] for k in stripe_source.HASHED_KEYS} == {k: alone[k] for k in stripe_source.HASHED_KEYS}
    assert results[0].row["run_id"] == f"webhook:{completed['id']}"


def test_concurrent_deliveries_are_batched_and_each_answered(make_receiver, stripe_objects):
    from concurrent.futures import ThreadPoolExecutor

    receiver = make_receiver()
    sessions = [o for o in stripe_objects if o["object"] == "checkout.session" and o["mode"] == "payment"
                and o["payment_status"] == "paid" and o["livemode"]][:12]
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda s: receiver.post_event(event("checkout.session.completed", s)), sessions))
    receiver.settle()

    assert [(a.status_code, a.json()["event_id"], a.json()["outcome"]) for a in answers] == [
        (200, s["id"], "queued") for s in sessions]
    assert {r["status"] for r in receiver.ledger().values()} == {"sent"}
    assert len(receiver.ledger()) == len(sessions)


def test_the_batcher_takes_what_arrived_while_it_was_busy():
    import asyncio
    import threading

    from adloop.webhook.app import Batcher

    sizes, release = [], threading.Event()

    def process(items):
        sizes.append(len(items))
        release.wait(5)
        return [ValueError(item) if item == "bad" else item.upper() for item in items]

    async def main():
        batcher = Batcher(process, max_size=3)
        first = asyncio.create_task(batcher.submit("a"))
        await asyncio.sleep(0.05)  # "a" is being processed alone
        rest = [asyncio.create_task(batcher.submit(x)) for x in ("b", "bad", "c", "d")]
        await asyncio.sleep(0.05)
        release.set()
        return await asyncio.gather(first, *rest, return_exceptions=True)

    results = asyncio.run(main())
    assert sizes == [1, 3, 1]
    assert results[:2] == ["A", "B"] and isinstance(results[2], ValueError) and results[3:] == ["C", "D"]
