"""The whole story on one machine: customers pay, the Stripe emulator calls the receiver (`adloop
webhook`, its own process) with a share of deliveries dropped, duplicated or late; the receiver
sends what it gets to the Meta emulator; the nightly DAG, run by the real Airflow, fills the gap.
Meta must then hold each paid conversion exactly once, under the event_id the Pixel uses, and no
clear email, phone or name may appear in the warehouse, XCom, the logs or anything sent to Meta.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect, select

from adloop import consent, demo, local
from adloop.warehouse import connect, ensure_schema
from adloop.warehouse.schema import capi_events

pytestmark = pytest.mark.e2e

STRIPE_SECRET = "whsec_e2e_realtime"
APP_SECRET = "app_secret_e2e"
# A customer the app reports a booking for, with values to look for afterwards.
KNOWN = {"email": "Known.Person+e2e@Example.com", "phone": "(780) 555-0188", "first_name": "Zoë",
         "last_name": "Known-Person", "country": "CA"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ReceiverProcess:
    def __init__(self, env: dict[str, str], log: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env, self.log = env, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> ReceiverProcess:
        out = open(self.log, "a")
        self.proc = subprocess.Popen([sys.executable, "-m", "adloop.cli", "webhook", "--port", str(self.port)],
                                     env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                self.health()
                return self
            except OSError:
                time.sleep(0.2)
        raise AssertionError("the receiver did not start")

    def health(self) -> dict:
        with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
            return json.loads(response.read())

    def wait_settled(self, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            capi = self.health()["capi"]
            if capi["queued"] == 0 and capi["unsettled"] == 0:
                return capi
            time.sleep(0.2)
        raise AssertionError(f"the receiver kept conversions unsent: {self.health()}")

    def post_app(self, path: str, payload: dict) -> dict:
        from adloop.webhook import signatures

        body = json.dumps(payload).encode()
        request = urllib.request.Request(f"{self.url}{path}", data=body, method="POST", headers={
            "Content-Type": "application/json", "Adloop-Signature": signatures.sign(body, APP_SECRET)})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)


@dataclass
class Night:
    """The studio's Stripe and Meta (the sandbox), its warehouse, and the nightly DAG through Airflow."""

    business: object
    sandbox: object
    warehouse_url: str
    airflow_home: Path
    end: datetime
    log: Path

    @property
    def client(self):
        return self.sandbox.client()

    def run(self) -> int:
        conns = local.connections_env(self.warehouse_url, self.sandbox.stripe_url, self.sandbox.meta_url,
                                      backoff_base_seconds=0.05, backoff_max_seconds=0.5)
        return demo.run_dag(local.airflow_env(self.airflow_home, conns), self.end + timedelta(minutes=1), self.log)

    def counted_by_meta(self) -> list[str]:
        return [e["event_id"] for e in self.client.received_events(counted=True, limit=100_000)]

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


@pytest.fixture
def realtime(tmp_path, airflow_home):
    from adloop.sandbox.generator import generate
    from adloop.sandbox.server import Sandbox

    end = datetime.now(UTC).replace(microsecond=0)
    # Six days, so every conversion is inside Meta's 7-day limit for the receiver and the nightly run.
    business = generate(seed=23, customers=150, days=6, end=end, opt_out_share=0.05)
    warehouse_url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    ensure_schema(connect(warehouse_url))
    with connect(warehouse_url).begin() as conn:
        consent.record(conn, consent.opt_out_rows(emails=business.opt_out_emails(), source="e2e"))
    sandbox = Sandbox(tmp_path / "sandbox.db")
    sandbox.store.insert_stripe_objects(business.stripe_objects())
    sandbox.start()
    env = {
        **local.airflow_env(airflow_home, {}),
        "ADLOOP_WAREHOUSE_URL": warehouse_url,
        "ADLOOP_STRIPE_WEBHOOK_SECRET": STRIPE_SECRET,
        "ADLOOP_APP_SECRET": APP_SECRET,
        "ADLOOP_META_ACCESS_TOKEN": local.SANDBOX_META_TOKEN,
        "ADLOOP_META_PIXEL_ID": local.SANDBOX_PIXEL_ID,
        "ADLOOP_META_GRAPH_URL": sandbox.meta_url,
    }
    receiver = ReceiverProcess(env, tmp_path / "receiver.log").start()
    studio = Night(business, sandbox, warehouse_url, airflow_home, end, tmp_path / "airflow.log")
    try:
        yield studio, receiver
    finally:
        receiver.stop()
        sandbox.stop()


def test_dropped_webhooks_are_filled_by_the_nightly_dag_and_meta_counts_each_conversion_once(realtime):
    studio, receiver = realtime
    control = studio.client
    control.configure_webhook_endpoint(f"{receiver.url}/stripe/webhook", STRIPE_SECRET, drop_share=0.3,
                                       duplicate_share=0.15, delay_share=0.1, delay_seconds=0.5, seed=3)
    booking = receiver.post_app("/app/schedule", {
        "booking_id": "BKG-E2E-0001", "event_time": int(time.time()) - 30, "amount_minor": 2500,
        "currency": "cad", "customer_id": "cus_e2e_known", "customer": KNOWN})
    assert booking["outcome"] == "queued"

    report = control.deliver_webhooks()
    receiver.wait_settled()

    assert report["not_acknowledged"] == 0
    assert report["dropped"] > 10 and report["duplicated"] > 0
    live_webhook = set(studio.counted_by_meta())
    delivered, dropped = _conversions_by_fate(studio.business, report["deliveries"])
    assert live_webhook == delivered | {"BKG-E2E-0001"}

    assert studio.run() == 0, studio.log_tail()

    counted = studio.counted_by_meta()
    fully_refunded = studio.business.fully_refunded_ids()
    expected = delivered | (dropped - fully_refunded) | {"BKG-E2E-0001"}
    assert Counter(counted).most_common(1)[0][1] == 1
    assert set(counted) == expected
    summary = control.summary()
    assert summary["events_received"] == summary["events_counted"] == len(expected)  # never sent twice
    _ids_are_the_pixels(studio, counted)
    _ledger_tells_who_sent_what(studio, delivered, dropped - fully_refunded)
    _no_clear_customer_data_anywhere(studio, receiver)


def _conversions_by_fate(business, deliveries) -> tuple[set[str], set[str]]:
    """Live, consenting conversions whose conversion-bearing event was delivered, and those dropped."""
    fate = {(d["type"], d["object_id"]): d["fate"] for d in deliveries}
    delivered, dropped = set(), set()
    sessions = {o["id"]: o for o in business.stripe_objects() if o["object"] == "checkout.session"}
    invoices = {o["parent"]["subscription_details"]["subscription"]: o for o in business.stripe_objects()
                if o["object"] == "invoice" and o["billing_reason"] == "subscription_create"}
    for c in business.conversions():
        if not c.livemode or c.opted_out or c.value <= 0:
            continue
        if c.event_name == "Purchase":
            delayed = ("checkout.session.async_payment_succeeded", c.event_id) in fate
            key = ("checkout.session.async_payment_succeeded" if delayed else "checkout.session.completed",
                   sessions[c.event_id]["id"])
        else:
            key = ("invoice.paid", invoices[c.event_id]["id"])
        (delivered if fate[key] == "delivered" else dropped).add(c.event_id)
    return delivered, dropped


def _ids_are_the_pixels(studio, counted) -> None:
    """The Pixel reads a Purchase's id from the success URL (`session_id={CHECKOUT_SESSION_ID}`) and
    a Subscribe's from the session's subscription: the server must have used exactly those."""
    pixel_ids = {"BKG-E2E-0001"}
    for obj in studio.business.stripe_objects():
        if obj["object"] == "checkout.session" and obj["status"] == "complete":
            assert "session_id={CHECKOUT_SESSION_ID}" in obj["success_url"]
            pixel_ids.add(obj["id"] if obj["mode"] == "payment" else obj["subscription"])
    assert set(counted) <= pixel_ids


def _ledger_tells_who_sent_what(studio, delivered, backfilled) -> None:
    with connect(studio.warehouse_url).connect() as conn:
        rows = {r.event_id: r for r in conn.execute(select(capi_events))}
    assert {rows[e].source for e in delivered} == {"webhook"}
    assert {rows[e].source for e in backfilled} == {"backfill"}
    assert {r.status for r in rows.values()} == {"sent"}


def _no_clear_customer_data_anywhere(studio, receiver) -> None:
    clear = {KNOWN["email"], KNOWN["email"].lower(), KNOWN["phone"], "Known-Person", "Zoë Known"}
    for obj in studio.business.stripe_objects():
        if obj["object"] == "customer":
            for value in (obj.get("email"), obj.get("phone"), obj.get("name")):
                if value and value.strip():
                    clear |= {value.strip(), value.strip().lower()}

    engine = connect(studio.warehouse_url)
    with engine.connect() as conn:
        places = {"warehouse": "\n".join(
            repr(tuple(row)) for table in inspect(engine).get_table_names()
            for row in conn.exec_driver_sql(f'SELECT * FROM "{table}"'))}
    with sqlite3.connect(studio.airflow_home / "airflow.db") as db:
        places["xcom"] = "\n".join(repr(row) for row in db.execute("SELECT * FROM xcom"))
    assert places["xcom"], "the DAG run should have left XComs to scan"
    logs = [studio.log, receiver.log, *sorted((studio.airflow_home / "logs").rglob("*.log"))]
    places["logs"] = "\n".join(p.read_text(errors="replace") for p in logs if p.exists())
    with studio.sandbox.store.connection() as db:
        places["meta requests"] = "\n".join(
            [r[0] for r in db.execute("SELECT event FROM capi_events")]
            + [repr(r) for r in db.execute("SELECT * FROM meta_requests")])

    leaks = {where: sorted(v for v in clear if v in text)[:3] for where, text in places.items()}
    assert not any(leaks.values()), f"clear customer values found: {leaks}"
