"""How many Conversions API requests a backfill makes, against the minimum, ceil(events / 1000).

    .venv/bin/python benchmarks/bench_capi_requests.py --sizes 999,1000,1001,2500,25000

For each size N, with no faults injected:

1. a fresh SQLite warehouse gets N sendable conversions of one run (Purchases and Subscribes of
   the last 6 days, website events with a hashed email, a user agent and a URL), and
   `reconcile.plan_backfill` plans them (all N are "send");
2. `reconcile.send_backfill` sends them with real `MetaSettings` pointed at the sandbox's Meta
   emulator (`adloop.sandbox.server.Sandbox`, started in this process), through the
   facebook-business SDK, as the nightly DAG does;
3. the requests send_backfill reports and the requests the emulator received (its own count, per
   pixel) are compared with ceil(N / 1000), Meta's limit being 1,000 events a request.

It also reports the events the emulator received and counted, and events/s for the send step
(the SDK building each request, HTTP to 127.0.0.1, the emulator validating and storing every
event, and the warehouse ledger written before and after each request).
Prints a line per size and a JSON line per size for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "include"))

CHUNK = 5_000


def conversions(n: int, run_id: str, now: datetime):
    """N sendable conversions, in chunks, hashed as extraction would leave them."""
    now_ts = int(now.timestamp())
    chunk = []
    for i in range(n):
        subscribe = i % 10 == 0
        chunk.append(
            {
                "event_id": f"sub_bench{i:08d}" if subscribe else f"cs_live_bench{i:08d}",
                "event_name": "Subscribe" if subscribe else "Purchase",
                "object_type": "subscription" if subscribe else "checkout.session",
                "customer_id": f"cus_{i % 7000}",
                "livemode": True,
                "status": "active" if subscribe else "complete",
                "payment_status": "paid",
                "event_time": now_ts - 3600 - (i * 7919) % (6 * 86400),
                "currency": "cad",
                "amount_minor": 2500 + (i % 40) * 100,
                "value": Decimal(25 + i % 40),
                "amount_refunded_minor": 0,
                "action_source": "website",
                "event_source_url": "https://studio.example/checkout/success",
                "client_user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
                "client_ip_address": f"203.0.113.{i % 250}",
                "fbp": f"fb.1.1700000000000.{i}",
                "fbc": None,
                "ad_id": None,
                "em": hashlib.sha256(f"member{i}@example.com".encode()).hexdigest(),
                "ph": hashlib.sha256(f"1780555{i % 10000:04d}".encode()).hexdigest(),
                "fn": None,
                "ln": None,
                "ct": None,
                "st": None,
                "zp": None,
                "country": None,
                "external_id": None,
                "hash_errors": None,
                "normalization_version": 1,
                "run_id": run_id,
                "extracted_at": now,
            }
        )
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def measure(sandbox, n: int, workdir: Path) -> dict:
    from adloop import reconcile
    from adloop.settings import MetaSettings, Settings
    from adloop.warehouse import connect, ensure_schema, upsert_rows
    from adloop.warehouse.schema import reconciliation_runs, stripe_conversions

    now = datetime.now(UTC)
    run_id = f"bench-capi-{n}"
    pixel_id = f"90000000{n}"
    url = f"sqlite:///{workdir / f'warehouse-{n}.db'}"
    engine = connect(url)
    ensure_schema(engine)
    with engine.begin() as conn:
        upsert_rows(
            conn,
            reconciliation_runs,
            [
                {
                    "run_id": run_id,
                    "window_start": now - timedelta(days=7),
                    "window_end": now,
                    "dry_run": False,
                    "status": "extracted",
                    "started_at": now,
                }
            ],
        )
        for chunk in conversions(n, run_id, now):
            upsert_rows(conn, stripe_conversions, chunk)

    meta = MetaSettings(access_token="bench-token", pixel_id=pixel_id, graph_url=sandbox.meta_url)
    settings = Settings(warehouse_url=url, meta=meta)
    plan = reconcile.plan_backfill(settings, run_id, as_of=now)

    started = time.perf_counter()
    sent = reconcile.send_backfill(settings, run_id)
    seconds = time.perf_counter() - started
    received = sandbox.client().summary(pixel_id)

    minimum = math.ceil(plan["send"] / 1000)
    return {
        "benchmark": "bench_capi_requests",
        "events": n,
        "planned_to_send": plan["send"],
        "sent": sent["sent"],
        "requests_minimum": minimum,
        "requests_send_backfill": sent["requests"],
        "requests_sandbox": received["requests"],
        "requests_equal_minimum": sent["requests"] == received["requests"] == minimum,
        "rejected_requests": received["rejected_requests"],
        "faulted_requests": received["faulted_requests"],
        "events_received": received["events_received"],
        "events_counted": received["events_counted"],
        "send_seconds": round(seconds, 2),
        "events_per_second": round(sent["sent"] / seconds) if seconds else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes",
        default="999,1000,1001,2500,25000",
        help="events to send, comma-separated (default %(default)s)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from adloop.sandbox.server import Sandbox

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    results = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-capi-") as tmp,
        Sandbox(Path(tmp) / "sandbox.db") as sandbox,
    ):
        for n in sizes:
            result = measure(sandbox, n, Path(tmp))
            result["python"] = platform.python_version()
            results.append(result)
            print(
                f"{n:>7,} events: {result['requests_send_backfill']} requests by send_backfill, "
                f"{result['requests_sandbox']} received by the sandbox, minimum {result['requests_minimum']} "
                f"({'equal' if result['requests_equal_minimum'] else 'NOT equal'}); "
                f"{result['events_counted']:,} counted; {result['events_per_second']:,} events/s",
                flush=True,
            )
    for result in results:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
