"""docker-compose.yaml, .env.example and the Dockerfile agree with each other and with the settings
the process-based cluster test proves (Docker itself cannot run here)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from adloop.cluster import CeleryCluster

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW_SERVICES = ["airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                    "airflow-triggerer", "airflow-worker"]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


def env_example() -> dict[str, str]:
    found = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            found[key.strip()] = value
    return found


def test_every_component_of_the_topology_is_there(compose):
    services = compose["services"]
    assert set(AIRFLOW_SERVICES) | {"postgres", "redis", "webhook"} <= set(services)
    for name in AIRFLOW_SERVICES + ["webhook"]:
        assert services[name]["build"] == ".", f"{name} must run adloop's image"
        assert services[name]["env_file"] == ".env"
    for name in AIRFLOW_SERVICES[1:] + ["webhook"]:
        assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"


def test_every_airflow_component_shares_the_celery_settings_and_the_jwt_secret(compose):
    first = compose["services"]["airflow-init"]["environment"]
    for name in AIRFLOW_SERVICES:
        env = compose["services"][name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == first["AIRFLOW__API_AUTH__JWT_SECRET"]
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:")
        assert "@postgres:5432/airflow" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
        assert "@postgres:5432/adloop_warehouse" in env["AIRFLOW_CONN_WAREHOUSE_DEFAULT"]


def test_compose_sets_what_the_process_cluster_test_sets(compose, tmp_path):
    """The cluster test proves a set of Airflow settings; the compose file must carry each of them."""
    cluster = CeleryCluster(home=tmp_path, metadata_url="postgresql+psycopg2://u@h/airflow",
                            broker_url="redis://h:6379/0", connections={})
    proven = {k for k in cluster.env() if k.startswith("AIRFLOW__")}
    # Paths and the log level are the image's business (Dockerfile ENV) or left at Airflow's default.
    local_only = {"AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__CORE__PLUGINS_FOLDER", "AIRFLOW__LOGGING__LOGGING_LEVEL"}
    common = compose["services"]["airflow-scheduler"]["environment"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    missing = {k for k in proven - local_only - set(common) if k not in dockerfile}
    assert not missing, f"the compose file lacks settings the cluster test relies on: {sorted(missing)}"
    assert {"AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__CORE__PLUGINS_FOLDER"} <= set(re.findall(r"AIRFLOW__\w+", dockerfile))


def test_every_variable_the_compose_file_needs_is_in_the_env_example(compose):
    text = (ROOT / "docker-compose.yaml").read_text()
    required = set(re.findall(r"(?<!\$)\$\{(\w+):\?", text))
    with_default = set(re.findall(r"(?<!\$)\$\{(\w+):-", text))
    plain = set(re.findall(r"(?<!\$)\$\{(\w+)\}", text))
    example = env_example()
    assert required | plain <= set(example), sorted((required | plain) - set(example))
    assert with_default - {"ADLOOP_IMAGE"} <= set(example)
    for conn in ("STRIPE_DEFAULT", "META_DEFAULT", "APP_DB"):
        assert f"AIRFLOW_CONN_{conn}" in example


def test_the_real_env_file_is_never_committed():
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert ".env" in ignored
    assert ".env" in (ROOT / ".dockerignore").read_text().splitlines()


def test_the_image_installs_the_way_the_makefile_does():
    makefile = (ROOT / "Makefile").read_text()
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "-r requirements.txt -c constraints.txt" in makefile
    assert "-r requirements.txt -c constraints.txt" in dockerfile
    assert re.search(r"uv pip install .*-e \.", dockerfile)
    assert "FROM python:3.11" in dockerfile
