"""A Meta emulator with a small ad account, and adloop's insights client pointed at it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from insights_helpers import ACCOUNT, ADS, DAYS, FAST, TIMEZONE, meta_settings

from adloop.meta.insights import InsightsClient, InsightsOptions
from adloop.sandbox import ad_delivery, meta_insights
from adloop.sandbox.server import Sandbox
from adloop.settings import Settings


@pytest.fixture
def sandbox(tmp_path):
    with Sandbox(tmp_path / "sandbox.db") as running:
        yield running


@pytest.fixture
def account(sandbox):
    """An ad account with ADS ads delivering every day of the last DAYS days (account time zone)."""
    today = datetime.fromtimestamp(sandbox.meta.now(), UTC).astimezone(ZoneInfo(TIMEZONE)).date()
    ads = ad_delivery.synthetic_ads(ADS, ACCOUNT)
    meta_insights.load(
        sandbox.store,
        [{"account_id": ACCOUNT, "name": "Test studio", "currency": "CAD", "timezone_name": TIMEZONE}],
        ads,
        ad_delivery.synthetic_delivery(ads, today - timedelta(days=DAYS), DAYS + 1),
    )
    return {"account_id": ACCOUNT, "today": today, "ads": ads}


@pytest.fixture
def client_factory(sandbox):
    def make(options: InsightsOptions = FAST, **settings) -> InsightsClient:
        slept: list[float] = []
        client = InsightsClient(meta_settings(sandbox, **settings), options, sleep=slept.append)
        client.slept = slept
        return client

    return make


@pytest.fixture
def settings(sandbox, warehouse_url):
    return Settings(warehouse_url=warehouse_url, meta=meta_settings(sandbox))
