"""Stripe-Signature verification at the receiver: only a delivery signed with the endpoint secret,
inside 300 s, is processed; anything else is a 400 that writes nothing."""

from __future__ import annotations

import json
import time

import pytest
from webhook_helpers import STRIPE_SECRET, event, pick

from adloop.warehouse.webhook_schema import stripe_webhook_events
from adloop.webhook import signatures


def _paid_purchase(stripe_objects) -> dict:
    session = pick(stripe_objects, object="checkout.session", mode="payment", payment_status="paid")
    return event("checkout.session.completed", session)


def _nothing_written(receiver) -> None:
    receiver.settle()
    assert receiver.ledger() == {}
    assert receiver.table(stripe_webhook_events) == []
    assert receiver.meta_events() == []


def test_a_validly_signed_delivery_is_processed(receiver, stripe_objects):
    evt = _paid_purchase(stripe_objects)
    response = receiver.post_event(evt)
    assert response.status_code == 200
    assert response.json()["outcome"] == "queued"
    receiver.settle()
    assert [e["event_id"] for e in receiver.meta_events()] == [evt["data"]["object"]["id"]]


def test_stripes_own_signature_header_is_accepted(receiver, stripe_objects):
    stripe = pytest.importorskip("stripe")
    evt = _paid_purchase(stripe_objects)
    body = json.dumps(evt)
    header = stripe.WebhookSignature.generate_signature_header(body, STRIPE_SECRET)
    assert receiver.post_event(evt, body=body.encode(), header=header).status_code == 200


def test_a_tampered_body_is_refused(receiver, stripe_objects):
    evt = _paid_purchase(stripe_objects)
    body = json.dumps(evt).encode()
    header = signatures.sign(body, STRIPE_SECRET)
    tampered = body.replace(b'"amount_total":', b'"amount_total":1', 1)
    assert tampered != body
    response = receiver.post_event(evt, body=tampered, header=header)
    assert response.status_code == 400
    assert "no signature matches" in response.json()["error"]
    _nothing_written(receiver)


def test_a_wrong_secret_is_refused(receiver, stripe_objects):
    response = receiver.post_event(_paid_purchase(stripe_objects), secret="whsec_someone_else")
    assert response.status_code == 400
    _nothing_written(receiver)


def test_a_stale_timestamp_is_refused(receiver, stripe_objects):
    response = receiver.post_event(_paid_purchase(stripe_objects), timestamp=int(time.time()) - 301)
    assert response.status_code == 400
    assert "outside 300 s" in response.json()["error"]
    _nothing_written(receiver)


@pytest.mark.parametrize("header", ["", "t=abc,v1=00", "v1=deadbeef", "t=1700000000"])
def test_a_missing_or_malformed_header_is_refused(receiver, stripe_objects, header):
    evt = _paid_purchase(stripe_objects)
    response = receiver.post_event(evt, body=json.dumps(evt).encode(), header=header)
    assert response.status_code == 400
    _nothing_written(receiver)


def test_a_replayed_event_is_acknowledged_and_changes_nothing(receiver, stripe_objects):
    evt = _paid_purchase(stripe_objects)
    body = json.dumps(evt).encode()
    header = signatures.sign(body, STRIPE_SECRET)
    first = receiver.post_event(evt, body=body, header=header)
    receiver.settle()
    ledger_after_first = receiver.ledger()

    # The same signed request captured and sent again, and Stripe's own redelivery (a new signature).
    replay = receiver.post_event(evt, body=body, header=header)
    redelivery = receiver.post_event(evt)
    receiver.settle()

    assert first.json()["outcome"] == "queued"
    assert replay.status_code == redelivery.status_code == 200
    assert replay.json()["outcome"] == redelivery.json()["outcome"] == "duplicate"
    assert receiver.ledger() == ledger_after_first
    assert len(receiver.table(stripe_webhook_events)) == 1
    assert len(receiver.meta_events()) == 1


def test_while_rolling_secrets_any_listed_secret_verifies():
    body = b'{"id": "evt_1"}'
    now = int(time.time())
    old = signatures.compute("whsec_old", now, body)
    new = signatures.compute("whsec_new", now, body)
    header = f"t={now},v1={new},v1={old},v0=ignored"
    assert signatures.verify(body, header, ["whsec_old"]) == now
    assert signatures.verify(body, header, ["whsec_new"]) == now
    with pytest.raises(signatures.SignatureError):
        signatures.verify(body, header, ["whsec_other"])
    with pytest.raises(signatures.SignatureError, match="no signing secret"):
        signatures.verify(body, header, [])
