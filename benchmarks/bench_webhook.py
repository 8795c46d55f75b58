"""The real-time receiver under load, from a second process on loopback.

    .venv/bin/python benchmarks/bench_webhook.py --rate 100 --seconds 20 --meta-latency 0.05

Three processes on this machine: the sandbox (the Meta emulator answering every CAPI request after
`--meta-latency` seconds, an injected `slow` fault), the receiver (`adloop webhook`, one uvicorn
worker, SQLite warehouse unless --warehouse-url) and this load generator. The generator sends
signed `checkout.session.completed` deliveries of distinct paid sessions open-loop at `--rate`
per second (each request starts at its scheduled time whether or not earlier ones have answered,
and its latency is counted from that time, so a stalled receiver cannot hide its queue), then:

1. reports requests per second held, p50/p90/p99/max latency and errors, and the receiver's CPU
   time per delivery (on a shared machine, the figure that does not depend on the neighbours);
2. waits for the receiver's background sender and reports how many conversions reached Meta;
3. with Meta down (every CAPI request answered 503), sends `--down-events` more and checks every
   one is in the ledger as pending: acknowledged to Stripe, nothing lost, left for the nightly DAG.

It prints a JSON line for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))

from adloop import local  # noqa: E402
from adloop.webhook import signatures  # noqa: E402

SECRET = "whsec_bench"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def sessions(n: int) -> list[dict]:
    """n distinct paid Checkout Sessions (generated, then cloned with new ids and emails)."""
    from adloop.sandbox.generator import generate

    business = generate(seed=1, customers=200, days=6, end=datetime.now(UTC).replace(microsecond=0))
    base = [o for o in business.stripe_objects() if o["object"] == "checkout.session"
            and o["mode"] == "payment" and o["payment_status"] == "paid" and o["livemode"]]
    out = []
    for i in range(n):
        s = copy.deepcopy(base[i % len(base)])
        s["id"] = f"{s['id'][:40]}{i:08d}"
        s["customer_details"]["email"] = f"bench.{i}@example.com"
        s["created"] = int(time.time()) - 120
        out.append(s)
    return out


def event_body(session: dict, n: int) -> bytes:
    return json.dumps({"id": f"evt_bench_{n:08d}", "object": "event", "type": "checkout.session.completed",
                       "created": int(time.time()), "livemode": True, "data": {"object": session}}).encode()


class RawPoster:
    """HTTP/1.1 POSTs over asyncio streams, keep-alive, a connection per request in flight.

    A tenth of httpx's CPU per request: on two shared cores, the load generator's own CPU is taken
    from the receiver it measures. httpx's pool also degrades when hundreds of requests queue for
    its connections, which turned a receiver falling a little behind into a generator spinning at
    100% CPU (`--client httpx` keeps it, for comparison).
    """

    def __init__(self, url: str, max_connections: int = 1000):
        parts = urllib.parse.urlsplit(url)
        self.host, self.port, self.path = parts.hostname, parts.port, parts.path
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.slots = asyncio.Semaphore(max_connections)

    async def post(self, body: bytes, headers: dict[str, str]) -> int:
        async with self.slots:
            if self.idle:
                status = await self._exchange(*self.idle.pop(), body, headers)
                if status is not None:
                    return status
                # uvicorn closes a connection idle for 5 s; that one goes, the request is sent anew.
            status = await self._exchange(*await asyncio.open_connection(self.host, self.port), body, headers)
            if status is None:
                raise ConnectionResetError("the receiver closed the connection without answering")
            return status

    async def _exchange(self, reader, writer, body: bytes, headers: dict[str, str]) -> int | None:
        try:
            head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            writer.write(f"POST {self.path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: {len(body)}\r\n"
                         f"{head}\r\n".encode() + body)
            status_line = await reader.readline()
            if not status_line:
                writer.close()
                return None
            status = int(status_line.split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
        except BaseException:
            writer.close()
            raise
        self.idle.append((reader, writer))
        return status

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


async def load(url: str, bodies: list[bytes], rate: float, client: str = "raw") -> dict:
    import httpx

    latencies: list[float] = []
    errors: dict[str, int] = {}
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    raw = RawPoster(url) if client == "raw" else None
    async with httpx.AsyncClient(limits=limits, timeout=30) as http:
        start = time.perf_counter() + 0.2

        async def one(i: int, body: bytes) -> None:
            due = start + i / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            headers = {"Stripe-Signature": signatures.sign(body, SECRET), "Content-Type": "application/json"}
            try:
                if raw is not None:
                    status = await asyncio.wait_for(raw.post(body, headers), 30)
                else:
                    status = (await http.post(url, content=body, headers=headers)).status_code
                if status != 200:
                    errors[str(status)] = errors.get(str(status), 0) + 1
            except (TimeoutError, httpx.HTTPError, OSError, ValueError, IndexError, asyncio.IncompleteReadError) as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            latencies.append(time.perf_counter() - due)

        cpu_started = time.process_time()
        await asyncio.gather(*(one(i, b) for i, b in enumerate(bodies)))
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu_started
    if raw is not None:
        raw.close()
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 1)

    return {"requests": len(bodies), "seconds": round(elapsed, 2), "rps_held": round(len(bodies) / elapsed, 1),
            "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99), "max_ms": round(latencies[-1] * 1000, 1),
            "errors": errors, "generator_cpu_ms_per_request": round(cpu * 1000 / len(bodies), 2)}


def ledger_counts(warehouse_url: str) -> dict[str, int]:
    from sqlalchemy import func, select

    from adloop.warehouse import connect
    from adloop.warehouse.schema import capi_events

    with connect(warehouse_url).connect() as conn:
        return dict(conn.execute(select(capi_events.c.status, func.count()).group_by(capi_events.c.status)).all())


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a process has used (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_ms_per(before: float | None, after: float | None, requests: int) -> float | None:
    return round((after - before) * 1000 / requests, 2) if before is not None and after is not None else None


def wait_settled(base: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        capi = _get(f"{base}/health")["capi"]
        if (capi["queued"] == 0 and capi["unsettled"] == 0) or time.monotonic() > deadline:
            return capi
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=100.0, help="deliveries per second (default 100)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--meta-latency", type=float, default=0.05, help="CAPI answer delay, seconds")
    parser.add_argument("--down-events", type=int, default=500, help="deliveries while Meta is down")
    parser.add_argument("--warehouse-url", help="default: a fresh SQLite file")
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw",
                        help="the load generator's HTTP client (default raw: see RawPoster)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="adloop-bench-webhook-"))
    warehouse_url = args.warehouse_url or f"sqlite:///{work / 'warehouse.db'}"
    n = int(args.rate * args.seconds)
    all_sessions = sessions(n + args.down_events)
    bodies = [event_body(s, i) for i, s in enumerate(all_sessions)]

    sandbox = local.SandboxProcess(work / "sandbox.db").start()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "ADLOOP_WAREHOUSE_URL": warehouse_url, "ADLOOP_STRIPE_WEBHOOK_SECRET": SECRET,
           "ADLOOP_META_ACCESS_TOKEN": local.SANDBOX_META_TOKEN, "ADLOOP_META_PIXEL_ID": local.SANDBOX_PIXEL_ID,
           "ADLOOP_META_GRAPH_URL": sandbox.meta_url}
    log = open(work / "receiver.log", "w")
    receiver = subprocess.Popen([sys.executable, "-m", "adloop.cli", "webhook", "--port", str(port)],
                                env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        from adloop.sandbox.client import SandboxClient

        control = SandboxClient(meta_url=sandbox.meta_url)
        deadline = time.monotonic() + 60
        while True:
            try:
                _get(f"{base}/health")
                break
            except OSError:
                if time.monotonic() > deadline or receiver.poll() is not None:
                    raise RuntimeError(f"the receiver did not start; see {work / 'receiver.log'}") from None
                time.sleep(0.2)
        control.add_fault("meta", "slow", delay_seconds=args.meta_latency, path_contains="/events")

        url = f"{base}/stripe/webhook"
        cpu_before = cpu_seconds(receiver.pid)
        loaded = asyncio.run(load(url, bodies[:n], args.rate, args.client))
        settle_started = time.monotonic()
        capi = wait_settled(base)
        settled_s = time.monotonic() - settle_started
        meta = control.summary()
        # Receiving and sending: every delivery's CPU, including its share of the CAPI sends.
        up = {"receiver_cpu_ms_per_delivery": cpu_ms_per(cpu_before, cpu_seconds(receiver.pid), n),
              "ledger": ledger_counts(warehouse_url), "meta_events_counted": meta["events_counted"],
              "capi_requests": meta["requests"], "drain_after_load_s": round(settled_s, 2), "sender": capi}

        control.clear_faults("meta")
        control.add_fault("meta", "http_503", path_contains="/events")
        down_load = asyncio.run(load(url, bodies[n:], args.rate, args.client))
        wait_settled(base)
        ledger = ledger_counts(warehouse_url)
        # Lost: acknowledged with a 200 yet missing from the ledger. A delivery that got no 200 is
        # not lost: Stripe delivers it again.
        acknowledged = (n - sum(loaded["errors"].values())) + (args.down_events - sum(down_load["errors"].values()))
        down = {**down_load, "ledger": ledger, "lost": acknowledged - sum(ledger.values()),
                "meta_events_counted_total": control.summary()["events_counted"]}
    finally:
        receiver.terminate()
        receiver.wait(20)
        sandbox.stop()

    result = {"benchmark": "webhook_receiver", "rate": args.rate, "client": args.client,
              "meta_latency_s": args.meta_latency,
              "warehouse": warehouse_url.split(":")[0], "meta_up": {**loaded, **up}, "meta_down": down,
              "cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2), "python": platform.python_version()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
