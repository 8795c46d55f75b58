"""A marketer's dry run from the Airflow UI, in a real browser (headless Debian Chromium via Playwright).

The test starts Airflow itself (`airflow standalone` on SQLite in a temporary AIRFLOW_HOME, every
visitor an admin), unpauses `meta_audience_refresh`, opens its trigger form, checks that the form
offers the declared audiences, keeps one, triggers a dry run and waits for the run to succeed.
Needs /usr/bin/chromium (Debian package `chromium`).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from adloop import local
from adloop.audiences.definitions import AUDIENCES
from adloop.warehouse import connect
from adloop.warehouse.audience_schema import audience_sync_runs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "audiences"))
from helpers import control, land_studio  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DAG_ID = "meta_audience_refresh"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AirflowUI:
    def __init__(self, env: dict[str, str], log: Path):
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {
            **env,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__API__PORT": str(self.port),
            # Task workers reach the API server here; the default assumes port 8080.
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base}/execution/",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            # Unpausing must not start the nightly (real) sync: only the triggered run may run.
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        }
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self) -> AirflowUI:
        local.migrate_airflow(self.env, self.log)
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen(
                [local.airflow_bin(), "standalone"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def api(self, method: str, path: str, body: dict | None = None) -> dict:
        # In all-admins mode the API server authenticates every request itself.
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def wait_for(self, what: str, check, timeout: float):
        deadline = time.monotonic() + timeout
        while True:
            try:
                result = check()
                if result:
                    return result
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise AssertionError(f"airflow standalone exited; see {self.log}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; see {self.log}")
            time.sleep(1)


@pytest.fixture
def airflow_ui(tmp_path):
    from adloop.sandbox.server import Sandbox

    warehouse_url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    # The studio's business ends now: a manual run takes its segments as of its logical date (now).
    _, app_db = land_studio(warehouse_url, tmp_path, end=datetime.now(UTC).replace(microsecond=0))
    with Sandbox(tmp_path / "sandbox.db") as sandbox:
        conns = local.connections_env(warehouse_url, sandbox.stripe_url, sandbox.meta_url)
        conns["AIRFLOW_CONN_APP_DB"] = json.dumps(
            {"conn_type": "generic", "extra": {"url": f"sqlite:///{app_db}"}}
        )
        ui = AirflowUI(local.airflow_env(tmp_path / "airflow", conns), tmp_path / "airflow.log").start()
        try:
            yield ui, warehouse_url, sandbox
        finally:
            ui.stop()


def test_a_dry_run_triggered_from_the_form_succeeds(airflow_ui):
    from playwright.sync_api import expect, sync_playwright

    ui, warehouse_url, sandbox = airflow_ui
    ui.wait_for("the DAG to be parsed", lambda: ui.api("GET", f"/api/v2/dags/{DAG_ID}"), timeout=240)
    ui.api("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False})

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{ui.base}/dags/{DAG_ID}")
            page.get_by_role("button", name="Trigger").first.click()
            dialog = page.get_by_role("dialog")
            expect(dialog.get_by_text("Audiences to refresh")).to_be_visible(timeout=30_000)
            for audience in AUDIENCES:  # every declared audience is offered, selected by default
                expect(dialog.get_by_text(audience.form_title, exact=True)).to_be_visible()
            expect(dialog.get_by_text("Dry run: only show what would change")).to_be_visible()

            # Keep one audience; leave the dry run on, as it is by default.
            for audience in AUDIENCES[1:]:
                dialog.locator(f'[aria-label="Remove {audience.form_title}"] [role="button"]').click()
            expect(dialog.get_by_text(AUDIENCES[1].form_title, exact=True)).to_have_count(0)
            dialog.get_by_test_id("trigger-dag-submit").click()
            expect(dialog).to_be_hidden(timeout=30_000)
        finally:
            browser.close()

    def finished_run():
        runs = [
            r
            for r in ui.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns")["dag_runs"]
            if r["run_type"] == "manual"
        ]
        return runs[0] if runs and runs[0]["state"] in ("success", "failed") else None

    run = ui.wait_for("the dry run to finish", finished_run, timeout=240)
    assert run["state"] == "success", f"run {run['dag_run_id']} {run['state']}; see {ui.log}"
    assert run["conf"]["dry_run"] is True
    assert run["conf"]["audiences"] == [AUDIENCES[0].key]

    with connect(warehouse_url).connect() as conn:
        syncs = [dict(r._mapping) for r in conn.execute(select(audience_sync_runs))]
    assert [(s["audience_key"], s["status"]) for s in syncs] == [(AUDIENCES[0].key, "dry_run")]
    assert syncs[0]["planned_adds"] > 100
    assert control(sandbox.meta_url, "audiences")["audiences"] == []  # a dry run sends nothing
