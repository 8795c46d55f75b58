"""End-to-end harness: a generated studio in the sandbox, and the real Airflow running the DAG.

The sandbox runs in this test process (threads); Airflow runs as `airflow dags test` in a child
process, reaching the emulators over HTTP exactly as it would reach Stripe and Meta.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from adloop import demo, local


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory) -> Path:
    """One migrated Airflow metadata database (SQLite) for the whole session."""
    home = tmp_path_factory.mktemp("airflow")
    local.migrate_airflow(local.airflow_env(home, {}), home / "migrate.log")
    return home


@dataclass
class Studio:
    """A generated business loaded into a running sandbox, with a warehouse and Airflow to run it."""

    business: object
    sandbox: object
    warehouse_url: str
    airflow_home: Path
    end: datetime
    log: Path
    meta_extra: dict = field(default_factory=dict)
    # More AIRFLOW_CONN_* (or other) variables for the runs, e.g. an adloop_alerts Connection.
    extra_env: dict = field(default_factory=dict)
    runs: int = 0

    @property
    def client(self):
        from adloop.sandbox.client import SandboxClient

        return SandboxClient(stripe_url=self.sandbox.stripe_url, meta_url=self.sandbox.meta_url)

    def env(self) -> dict[str, str]:
        extra = {"backoff_base_seconds": 0.05, "backoff_max_seconds": 0.5, **self.meta_extra}
        conns = local.connections_env(self.warehouse_url, self.sandbox.stripe_url, self.sandbox.meta_url, **extra)
        return local.airflow_env(self.airflow_home, conns) | self.extra_env

    def next_logical_date(self) -> datetime:
        # Every run gets its own logical date (a minute apart), as nightly runs would.
        self.runs += 1
        return self.end + timedelta(minutes=self.runs)

    def run(self, conf: dict | None = None) -> int:
        return demo.run_dag(self.env(), self.next_logical_date(), self.log, conf=conf)

    def start(self, conf: dict | None = None) -> subprocess.Popen:
        out = open(self.log, "a")
        return subprocess.Popen(demo.dag_test_command(self.next_logical_date(), conf=conf), env=self.env(),
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def expected(self) -> dict:
        """Ground truth for the window of the next runs: what a correct backfill sends."""
        start = self.end - timedelta(days=7)
        return self.business.expected_in_window(start, self.end, by="created")

    def counted_by_meta(self) -> list[str]:
        return [e["event_id"] for e in self.client.received_events(counted=True, limit=100_000)]

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def wait_for(self, predicate, timeout: float = 60.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.2)


def make_studio(tmp_path: Path, airflow_home: Path, warehouse_url: str, *, customers: int = 150,
                seed: int = 11) -> Studio:
    from adloop.sandbox.generator import generate
    from adloop.sandbox.server import Sandbox
    from adloop.seed import seed_business

    end = datetime.now(UTC).replace(microsecond=0)
    business = generate(seed=seed, customers=customers, days=14, end=end)
    state = tmp_path / "sandbox.db"
    seed_business(business, sandbox_state=state, warehouse_url=warehouse_url, pixel_id=local.SANDBOX_PIXEL_ID)
    sandbox = Sandbox(state)
    sandbox.start()
    return Studio(business, sandbox, warehouse_url, airflow_home, end, tmp_path / "airflow.log")


@pytest.fixture
def studio(tmp_path, airflow_home, warehouse_url):
    s = make_studio(tmp_path, airflow_home, warehouse_url)
    yield s
    s.sandbox.stop()


@pytest.fixture
def sqlite_studio(tmp_path, airflow_home):
    """A studio on a SQLite warehouse, for the scenarios that need not run twice."""
    s = make_studio(tmp_path, airflow_home, f"sqlite:///{tmp_path / 'warehouse.db'}")
    yield s
    s.sandbox.stop()


class AlertHook:
    """A chat webhook on 127.0.0.1 that keeps the JSON of every POST it receives."""

    def __init__(self):
        self.received: list[dict] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                received.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0))))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_port}/services/T000/B000/alerts"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def connection_env(self) -> dict[str, str]:
        return {"AIRFLOW_CONN_ADLOOP_ALERTS": json.dumps({"conn_type": "http", "host": self.url})}

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def alert_hook():
    hook = AlertHook()
    yield hook
    hook.close()
