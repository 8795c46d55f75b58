"""The docker-compose topology as plain processes: Airflow on the CeleryExecutor, on this machine.

docker-compose.yaml runs PostgreSQL, Redis, an init step, the api-server, scheduler,
dag-processor, triggerer and Celery workers as containers. `CeleryCluster` starts the same Airflow
components as processes against a PostgreSQL and a Redis that are already running, with the same
settings the compose file gives them (one JWT secret, the execution API URL, Connections from the
environment). The deployment test uses it to prove the topology where Docker cannot run.

Each cluster gets its own Celery queue name, so several clusters (or test runs) can share one
Redis database without taking each other's tasks.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from adloop import local

# The retry delay of the DAGs (minutes) is right for production and too long for a test that waits
# for a retry; a cluster policy, Airflow's own mechanism for deployment-wide task settings, can
# shorten it without touching the DAGs. Written to $AIRFLOW_HOME/config only when asked for.
_RETRY_POLICY = '''"""Written by adloop.cluster: every task retries after {seconds} s (a test deployment)."""
import datetime


def task_policy(task):
    task.retry_delay = datetime.timedelta(seconds={seconds})
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Component:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        log.close()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def descendants(self) -> list[int]:
        """This component's process and everything it started, task processes included."""
        import psutil

        if not self.alive:
            return []
        try:
            root = psutil.Process(self.proc.pid)
            return [root.pid] + [p.pid for p in root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> None:
        """SIGKILL the whole tree at once, as a lost machine or an OOM-killed container would die.

        Task processes run in their own process groups (Airflow's supervisor puts them there), so
        killing the component's group alone would leave them running; every descendant is killed.
        """
        for pid in self.descendants():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc:
            self.proc.wait()

    def stop(self, timeout: float = 20.0) -> None:
        if not self.alive:
            return
        tree = self.descendants()
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        for pid in tree:  # anything that outlived a polite stop
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc.poll() is None:
            self.proc.wait()


@dataclass
class CeleryCluster:
    """Airflow's api-server, scheduler, dag-processor and Celery workers against PostgreSQL and Redis.

    `metadata_url` is Airflow's own database (a SQLAlchemy URL to PostgreSQL); `broker_url` is
    Redis. `connections` are the `AIRFLOW_CONN_*` variables every component sees, as the compose
    file's `.env` gives them. The warehouse is whatever `warehouse_default` points at.
    """

    home: Path
    metadata_url: str
    broker_url: str
    connections: dict[str, str]
    workers: int = 2
    worker_concurrency: int = 2
    triggerer: bool = False
    retry_delay_seconds: int | None = None
    settings: dict[str, str] = field(default_factory=dict)
    api_port: int = 0
    queue: str = field(default_factory=lambda: f"adloop_{secrets.token_hex(4)}")
    jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    components: dict[str, Component] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def env(self) -> dict[str, str]:
        env = local.airflow_env(self.home, self.connections)
        result_backend = "db+" + self.metadata_url.replace("+psycopg2", "")
        env.update(
            AIRFLOW__CORE__EXECUTOR="CeleryExecutor",
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=self.metadata_url,
            AIRFLOW__CELERY__BROKER_URL=self.broker_url,
            AIRFLOW__CELERY__RESULT_BACKEND=result_backend,
            AIRFLOW__OPERATORS__DEFAULT_QUEUE=self.queue,
            # One secret for every component: the api-server signs the tokens tasks use to talk
            # to the execution API, and the workers' task processes present them.
            AIRFLOW__API_AUTH__JWT_SECRET=self.jwt_secret,
            AIRFLOW__API__SECRET_KEY=self.jwt_secret,
            AIRFLOW__API__BASE_URL=self.api_url,
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{self.api_url}/execution/",
            AIRFLOW__CORE__AUTH_MANAGER="airflow.api_fastapi.auth.managers.simple.simple_auth_manager"
                                        ".SimpleAuthManager",
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin",
        )
        env.update(self.settings)
        return env

    def migrate(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / "migrate.log", "a") as log:
            subprocess.run([local.airflow_bin(), "db", "migrate"], env=self.env(), check=True,
                           stdout=log, stderr=subprocess.STDOUT)

    def start(self, timeout: float = 180.0) -> CeleryCluster:
        self.home.mkdir(parents=True, exist_ok=True)
        if self.retry_delay_seconds is not None:
            config = self.home / "config"
            config.mkdir(exist_ok=True)
            (config / "airflow_local_settings.py").write_text(_RETRY_POLICY.format(seconds=self.retry_delay_seconds))
        self.api_port = self.api_port or free_port()
        env = self.env()
        airflow = local.airflow_bin()
        plan = {
            "api-server": [airflow, "api-server", "--port", str(self.api_port), "--workers", "1"],
            "scheduler": [airflow, "scheduler"],
            "dag-processor": [airflow, "dag-processor"],
        }
        if self.triggerer:
            plan["triggerer"] = [airflow, "triggerer"]
        for name, argv in plan.items():
            self.components[name] = Component(name, argv, env, self.home / f"{name}.log")
        for i in range(1, self.workers + 1):
            self.add_worker(i, start=False)
        for component in self.components.values():
            component.start()
        self.wait_until_ready(timeout)
        return self

    def add_worker(self, index: int, *, start: bool = True) -> Component:
        # Each worker serves its task logs to the api-server on its own port.
        env = self.env() | {"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())}
        argv = [local.airflow_bin(), "celery", "worker", "--queues", self.queue,
                "--concurrency", str(self.worker_concurrency), "--celery-hostname", f"worker{index}@%h"]
        worker = Component(f"worker{index}", argv, env, self.home / f"worker{index}.log")
        self.components[worker.name] = worker
        if start:
            worker.start()
        return worker

    @property
    def worker_names(self) -> list[str]:
        return [n for n in self.components if n.startswith("worker")]

    def wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            dead = [c.name for c in self.components.values() if not c.alive]
            if dead:
                raise RuntimeError(f"{', '.join(dead)} exited at start; see the logs in {self.home}")
            try:
                health = self.api.get("/api/v2/monitor/health")
                if health.get("scheduler", {}).get("status") == "healthy":
                    return
            except (OSError, RuntimeError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster was not healthy within {timeout:.0f} s; see the logs in {self.home}")
            time.sleep(1)

    @property
    def api(self) -> AirflowApi:
        return AirflowApi(self.api_url, password_file=self.home / "simple_auth_manager_passwords.json.generated")

    def worker_running(self, pid: int) -> str | None:
        """The name of the worker whose process tree holds `pid` (a task's process), if any."""
        for name in self.worker_names:
            if pid in self.components[name].descendants():
                return name
        return None

    def stop(self) -> None:
        for component in reversed(list(self.components.values())):
            component.stop()

    def logs(self, tail: int = 40) -> str:
        parts = []
        for component in self.components.values():
            lines = component.log_path.read_text(errors="replace").splitlines() if component.log_path.exists() else []
            parts.append(f"--- {component.name} ---\n" + "\n".join(lines[-tail:]))
        return "\n".join(parts)

    def __enter__(self) -> CeleryCluster:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class AirflowApi:
    """A small client for Airflow 3's REST API (/api/v2), authenticated with a token from /auth/token."""

    def __init__(self, url: str, *, username: str = "admin", password: str | None = None,
                 password_file: Path | None = None):
        self.url = url.rstrip("/")
        self.username = username
        self.password = password
        self.password_file = password_file
        self._token: str | None = None

    def _password(self) -> str:
        if self.password is None and self.password_file and self.password_file.exists():
            self.password = json.loads(self.password_file.read_text())[self.username]
        if self.password is None:
            raise RuntimeError("no password for the Airflow API yet (the api-server writes it at start)")
        return self.password

    def token(self) -> str:
        if self._token is None:
            answer = self._call("POST", "/auth/token", {"username": self.username, "password": self._password()},
                                auth=False)
            self._token = answer["access_token"]
        return self._token

    def _call(self, method: str, path: str, body: dict | None = None, *, auth: bool = True) -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if auth:
            request.add_header("Authorization", f"Bearer {self.token()}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"{method} {path}: HTTP {e.code} {e.read()[:500]!r}") from e

    def get(self, path: str) -> dict:
        return self._call("GET", path, auth=not path.startswith("/api/v2/monitor/"))

    def unpause(self, dag_id: str) -> None:
        self._call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, *, logical_date: str | None = None, conf: dict | None = None) -> str:
        body = {"logical_date": logical_date, "conf": conf or {}}
        return self._call("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)["dag_run_id"]

    def dag_ids(self) -> set[str]:
        return {d["dag_id"] for d in self.get("/api/v2/dags?limit=100")["dags"]}

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{urllib.request.quote(run_id)}")["state"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{urllib.request.quote(run_id)}/taskInstances?limit=1000"
        return self.get(path)["task_instances"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            state = self.run_state(dag_id, run_id)
            if state in ("success", "failed"):
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(f"{dag_id} {run_id} still {state} after {timeout:.0f} s")
            time.sleep(2)
