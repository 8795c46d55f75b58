"""The Stripe emulator's webhook deliveries: which events, signed so Stripe's own SDK accepts them,
and the drop, duplicate and delay shares."""

from __future__ import annotations

import copy
import json
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from adloop.sandbox.stripe_webhooks import events_for

SECRET = "whsec_sandbox_deliveries"


class _Recorder(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((self.headers["Stripe-Signature"], body, time.monotonic()))
        self.send_response(self.server.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.received, server.status = [], 200
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}/stripe/webhook"
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def objects():
    from adloop.sandbox.generator import generate

    business = generate(seed=9, customers=40, days=6, end=datetime.now(UTC).replace(microsecond=0))
    return list(business.stripe_objects())


def _conversion_objects(objects):
    return [o for o in objects if events_for(o)]


def test_every_delivery_is_signed_so_stripes_sdk_accepts_it(sandbox, control, endpoint, objects):
    stripe = pytest.importorskip("stripe")
    sandbox.store.insert_stripe_objects(objects)
    control.configure_webhook_endpoint(endpoint.url, SECRET)

    report = control.deliver_webhooks()

    expected = sum(len(events_for(o)) for o in objects)
    assert report["events"] == report["delivered"] == len(endpoint.received) == expected > 20
    types = set()
    for header, body, _ in endpoint.received:
        event = stripe.Webhook.construct_event(body, header, SECRET)
        types.add(event.type)
    assert {"checkout.session.completed", "invoice.paid"} <= types
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(endpoint.received[0][1], endpoint.received[0][0], "whsec_wrong")


def test_a_delayed_payment_is_announced_unpaid_then_succeeded(objects):
    session = copy.deepcopy(next(o for o in objects if o["object"] == "checkout.session"
                                 and o["payment_status"] == "paid" and o["mode"] == "payment"))
    session["payment_method_types"] = ["acss_debit"]
    completed, succeeded = events_for(session)
    assert (completed["type"], completed["data"]["object"]["payment_status"]) == ("checkout.session.completed",
                                                                                   "unpaid")
    assert (succeeded["type"], succeeded["data"]["object"]["payment_status"]) == (
        "checkout.session.async_payment_succeeded", "paid")
    assert completed["id"] != succeeded["id"]
    assert events_for(session)[0]["id"] == completed["id"]  # ids are stable: a redelivery is recognisable


def test_shares_of_deliveries_are_dropped_duplicated_and_delayed(sandbox, control, endpoint, objects):
    sandbox.store.insert_stripe_objects(objects)
    control.configure_webhook_endpoint(endpoint.url, SECRET, drop_share=0.3, duplicate_share=0.2,
                                       delay_share=0.2, delay_seconds=0.3, seed=4)
    started = time.monotonic()
    report = control.deliver_webhooks()

    assert 0 < report["dropped"] < report["events"]
    assert report["duplicated"] > 0 and report["delayed"] > 0
    posted = [json.loads(body)["id"] for _, body, _ in endpoint.received]
    by_fate = {r["event_id"]: r for r in report["deliveries"]}
    assert not {e for e, r in by_fate.items() if r["fate"] == "dropped"} & set(posted)
    assert len(posted) == report["delivered"] + report["duplicated"]
    assert all(posted.count(e) == 2 for e, r in by_fate.items() if r["duplicated"])
    assert time.monotonic() - started >= 0.3

    # The same seed gives the same fates.
    again = control.deliver_webhooks()
    assert [(r["event_id"], r["fate"], r["duplicated"]) for r in again["deliveries"]] == \
           [(r["event_id"], r["fate"], r["duplicated"]) for r in report["deliveries"]]


def test_objects_loaded_through_the_control_route_are_announced(control, endpoint, objects):
    control.configure_webhook_endpoint(endpoint.url, SECRET, deliver_on_load=True)
    chosen = _conversion_objects(objects)[:5]
    control.load_stripe_objects(chosen)
    deadline = time.monotonic() + 10
    while len(endpoint.received) < sum(len(events_for(o)) for o in chosen) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert {json.loads(b)["data"]["object"]["id"] for _, b, _ in endpoint.received} == {o["id"] for o in chosen}


def test_an_endpoint_that_refuses_is_reported(sandbox, control, endpoint, objects):
    endpoint.status = 400
    sandbox.store.insert_stripe_objects(_conversion_objects(objects)[:3])
    control.configure_webhook_endpoint(endpoint.url, SECRET, max_attempts=2, retry_seconds=0.01)
    report = control.deliver_webhooks()
    assert report["not_acknowledged"] == report["events"]
    assert len(endpoint.received) == 2 * report["events"]
