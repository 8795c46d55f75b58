"""Serving: the standalone process, concurrency, throughput, clean stops."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
import stripe
from sandbox_helpers import ACCESS_TOKEN, PIXEL_ID, capi_event, checkout_session, customer

from adloop.sandbox import Sandbox, SandboxClient

BASE = 1_780_000_000
REPO = Path(__file__).resolve().parents[2]


def test_standalone_process_with_fixture_and_ready_file(tmp_path):
    fixture = tmp_path / "fixture.jsonl"
    fixture.write_text("\n".join(json.dumps(customer(n, BASE + n)) for n in range(25)))
    ready = tmp_path / "ready.json"
    env = {**os.environ, "PYTHONPATH": str(REPO / "include")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "adloop.sandbox",
            "--state",
            str(tmp_path / "s.db"),
            "--stripe-port",
            "0",
            "--meta-port",
            "0",
            "--stripe-fixture",
            str(fixture),
            "--ready-file",
            str(ready),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, "the sandbox never wrote its ready file"
            time.sleep(0.05)
        urls = json.loads(ready.read_text())
        assert json.loads(process.stdout.readline()) == urls

        client = stripe.StripeClient("sk_test_x", base_addresses={"api": urls["stripe_url"]})
        assert len(list(client.v1.customers.list({"limit": 10}).auto_paging_iter())) == 25
        assert SandboxClient(meta_url=urls["meta_url"]).health("meta")["status"] == "ok"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    assert not ready.exists()


def test_concurrent_clients_and_throughput(sandbox, control):
    sandbox.store.insert_stripe_objects(checkout_session(n, BASE + n) for n in range(500))

    def read_all(_):
        client = stripe.StripeClient("sk_test_x", base_addresses={"api": sandbox.stripe_url})
        return len(list(client.v1.checkout.sessions.list({"limit": 100}).auto_paging_iter()))

    def send_batches(worker):
        session = requests.Session()
        for batch in range(10):
            events = [capi_event(worker * 10_000 + batch * 100 + n) for n in range(100)]
            response = session.post(
                f"{sandbox.meta_url}/v26.0/{PIXEL_ID}/events",
                params={"access_token": ACCESS_TOKEN},
                data={"data": json.dumps(events)},
                timeout=10,
            )
            assert response.status_code == 200, response.text
        return 1000

    with ThreadPoolExecutor(max_workers=8) as pool:
        readers = [pool.submit(read_all, n) for n in range(8)]
        senders = [pool.submit(send_batches, n) for n in range(8)]
        assert [f.result() for f in readers] == [500] * 8
        assert sum(f.result() for f in senders) == 8000
    assert control.summary()["events_counted"] == 8000

    session = requests.Session()
    started = time.monotonic()
    for _ in range(1000):
        response = session.get(
            f"{sandbox.stripe_url}/v1/checkout/sessions",
            params={"limit": 3},
            headers={"Authorization": "Bearer sk_test_x"},
            timeout=5,
        )
        assert response.status_code == 200
    assert time.monotonic() - started < 5  # well under 5 ms a request on one keep-alive connection


def test_stop_closes_keep_alive_connections_and_frees_the_port(tmp_path):
    sandbox = Sandbox(tmp_path / "s.db").start()
    url = sandbox.stripe_url
    session = requests.Session()
    assert session.get(f"{url}/_sandbox/health", timeout=5).status_code == 200

    sandbox.meta.faults.add(kind="timeout", hold_seconds=60)
    started = time.monotonic()
    sandbox.stop()
    assert time.monotonic() - started < 3

    try:
        session.get(f"{url}/_sandbox/health", timeout=2)
    except requests.exceptions.ConnectionError:
        pass
    else:
        raise AssertionError("the emulator still answered after stop()")

    port = int(url.rsplit(":", 1)[1])
    with Sandbox(tmp_path / "s.db", stripe_port=port) as again:
        assert again.stripe_url == url
