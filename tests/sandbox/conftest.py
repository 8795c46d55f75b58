"""Fixtures for the sandbox tests: emulators on ephemeral ports over a temporary state file, and
the real Stripe and Meta SDKs pointed at them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sandbox_helpers import ACCESS_TOKEN

from adloop.sandbox import Sandbox, SandboxClient


@pytest.fixture
def sandbox(tmp_path) -> Iterator[Sandbox]:
    with Sandbox(tmp_path / "sandbox.db") as running:
        yield running


@pytest.fixture
def control(sandbox: Sandbox) -> SandboxClient:
    return sandbox.client()


@pytest.fixture
def stripe_client(sandbox: Sandbox):
    import stripe

    return stripe.StripeClient("sk_test_sandbox", base_addresses={"api": sandbox.stripe_url})


@pytest.fixture
def meta_api(sandbox: Sandbox) -> Iterator[Any]:
    from facebook_business.api import FacebookAdsApi
    from facebook_business.session import FacebookSession

    previous_graph = FacebookSession.GRAPH
    FacebookSession.GRAPH = sandbox.meta_url
    api = FacebookAdsApi.init(access_token=ACCESS_TOKEN, crash_log=False, api_version="v26.0")
    yield api
    FacebookSession.GRAPH = previous_graph
