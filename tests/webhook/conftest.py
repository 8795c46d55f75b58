"""The receiver in-process (Starlette's TestClient runs its lifespan, so the CAPI sender thread runs)
against the Meta emulator, with Stripe objects from the generated studio."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime

import pytest
from webhook_helpers import APP_SECRET, STRIPE_SECRET, Receiver

from adloop import local

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette asks for httpx2; httpx is what is installed
    from starlette.testclient import TestClient


@pytest.fixture(scope="session")
def business():
    from adloop.sandbox.generator import generate

    return generate(seed=5, customers=60, days=6, end=datetime.now(UTC).replace(microsecond=0))


@pytest.fixture(scope="session")
def stripe_objects(business) -> list[dict]:
    return list(business.stripe_objects())


@pytest.fixture
def sandbox(tmp_path):
    from adloop.sandbox.server import Sandbox

    with Sandbox(tmp_path / "sandbox.db") as sb:
        yield sb


@pytest.fixture
def make_receiver(sandbox, tmp_path):
    """Start a receiver; `make_receiver(warehouse_url=..., timeout_seconds=..., meta=False)`."""
    from adloop.webhook import WebhookSettings, create_app
    from adloop.webhook.settings import capi_settings

    clients = []

    def start(warehouse_url: str | None = None, *, meta: bool = True, timeout_seconds: float = 1.5, **extra):
        url = warehouse_url or f"sqlite:///{tmp_path / 'warehouse.db'}"
        meta_cfg = capi_settings(access_token=local.SANDBOX_META_TOKEN, pixel_id=local.SANDBOX_PIXEL_ID,
                                 graph_url=sandbox.meta_url, timeout_seconds=timeout_seconds) if meta else None
        settings = WebhookSettings(warehouse_url=url, stripe_secrets=(STRIPE_SECRET,), app_secrets=(APP_SECRET,),
                                   meta=meta_cfg, **extra)
        app = create_app(settings)
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return Receiver(client, app, sandbox, url)

    yield start
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def receiver(make_receiver):
    return make_receiver()
