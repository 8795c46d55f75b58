"""The one-machine setup used by `adloop demo`, `adloop ui` and the end-to-end tests.

Everything lives in the project folder and is ignored by git: `.adloop/` holds the sandbox state
and the SQLite warehouse, `.airflow/` is AIRFLOW_HOME with its SQLite metadata database. The
Airflow Connections point at the sandbox emulators through `AIRFLOW_CONN_*` variables, exactly as
a deployment would point them at Stripe and Meta.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SANDBOX_PIXEL_ID = "1234567890123456"
SANDBOX_AD_ACCOUNT = "act_100200300400"
SANDBOX_STRIPE_KEY = "sk_test_adloop_sandbox"
SANDBOX_META_TOKEN = "EAAB-adloop-sandbox-token"


@dataclass(frozen=True)
class Layout:
    root: Path = ROOT

    @property
    def state_dir(self) -> Path:
        return Path(os.environ.get("ADLOOP_STATE_DIR", self.root / ".adloop"))

    @property
    def airflow_home(self) -> Path:
        return Path(os.environ.get("ADLOOP_AIRFLOW_HOME", self.root / ".airflow"))

    @property
    def sandbox_state(self) -> Path:
        return self.state_dir / "sandbox.db"

    @property
    def app_db_url(self) -> str:
        """The generated studio's own app database (users, bookings, memberships), for audiences."""
        return f"sqlite:///{self.state_dir / 'app.db'}"

    @property
    def warehouse_url(self) -> str:
        return os.environ.get("ADLOOP_WAREHOUSE_URL", f"sqlite:///{self.state_dir / 'warehouse.db'}")


def connections_env(warehouse_url: str, stripe_url: str, meta_url: str, *, app_db_url: str | None = None,
                    **meta_extra) -> dict[str, str]:
    """AIRFLOW_CONN_* variables pointing the Connections at the sandbox (and the generated app DB)."""
    meta = {"pixel_id": SANDBOX_PIXEL_ID, "ad_account_ids": [SANDBOX_AD_ACCOUNT], "default_country": "CA"}
    meta.update(meta_extra)
    app_db = {"AIRFLOW_CONN_APP_DB": json.dumps({"conn_type": "generic", "extra": {"url": app_db_url}})}
    return ({} if app_db_url is None else app_db) | {
        "AIRFLOW_CONN_STRIPE_DEFAULT": json.dumps(
            {"conn_type": "generic", "host": stripe_url, "password": SANDBOX_STRIPE_KEY}),
        "AIRFLOW_CONN_META_DEFAULT": json.dumps(
            {"conn_type": "generic", "host": meta_url, "password": SANDBOX_META_TOKEN, "extra": meta}),
        "AIRFLOW_CONN_WAREHOUSE_DEFAULT": json.dumps(
            {"conn_type": "generic", "extra": {"url": warehouse_url}}),
    }


def airflow_env(airflow_home: Path, connections: dict[str, str], *, root: Path = ROOT) -> dict[str, str]:
    home = airflow_home
    env = dict(os.environ)
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(root / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(root / "plugins"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="True",
        AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",
        PYTHONPATH=os.pathsep.join(filter(None, [str(root / "plugins"), env.get("PYTHONPATH")])),
        # `airflow standalone` starts its components as `airflow ...` from PATH.
        PATH=os.pathsep.join(filter(None, [str(Path(sys.executable).parent), env.get("PATH")])),
        **connections,
    )
    return env


def airflow_bin() -> str:
    return str(Path(sys.executable).with_name("airflow"))


def migrate_airflow(env: dict[str, str], log_path: Path) -> None:
    """`airflow db migrate`, once per AIRFLOW_HOME (it takes a while the first time)."""
    home = Path(env["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    stamp = home / ".migrated"
    if stamp.exists() and (home / "airflow.db").exists():
        return
    with open(log_path, "a") as log:
        subprocess.run([airflow_bin(), "db", "migrate"], env=env, check=True, stdout=log, stderr=subprocess.STDOUT)
    stamp.touch()


class SandboxProcess:
    """The Stripe and Meta emulators in their own process, as a deployment's services would be."""

    def __init__(self, state: Path, *, stripe_port: int = 0, meta_port: int = 0, log_path: Path | None = None):
        self.state = state
        self.stripe_port = stripe_port
        self.meta_port = meta_port
        self.log_path = log_path or state.with_suffix(".log")
        self.ready_file = state.with_suffix(".ready.json")
        self.proc: subprocess.Popen | None = None
        self.stripe_url = self.meta_url = ""

    def start(self, timeout: float = 30.0) -> SandboxProcess:
        self.ready_file.unlink(missing_ok=True)
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "adloop.sandbox", "--state", str(self.state),
             "--stripe-port", str(self.stripe_port), "--meta-port", str(self.meta_port),
             "--ready-file", str(self.ready_file)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the sandbox exited at start; see {self.log_path}")
            if self.ready_file.exists():
                try:
                    ready = json.loads(self.ready_file.read_text())
                except ValueError:
                    ready = None
                if ready:
                    self.stripe_url, self.meta_url = ready["stripe_url"], ready["meta_url"]
                    _wait_healthy(self.meta_url)
                    return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the sandbox did not start within {timeout:.0f} s; see {self.log_path}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc = None

    def __enter__(self) -> SandboxProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _wait_healthy(url: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_sandbox/health", timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
