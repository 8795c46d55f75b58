"""Constants and helpers shared by the insights tests (imported by name, as pytest puts this folder on sys.path)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from adloop.meta.insights import InsightsOptions
from adloop.settings import MetaSettings

ACCOUNT = "act_555000111"
TIMEZONE = "America/Edmonton"
ADS = 5
DAYS = 40
FAST = InsightsOptions(poll_initial_seconds=0.01, poll_max_seconds=0.05, page_size=50)


def meta_settings(sandbox, **overrides) -> MetaSettings:
    values = {"access_token": "EAAB-test", "graph_url": sandbox.meta_url, "backoff_base_seconds": 0.01,
              "backoff_max_seconds": 0.05, "timeout_seconds": 5.0}
    values.update(overrides)
    return MetaSettings(**values)


def run_end(account) -> datetime:
    """The end of a run on the emulator's today: its window is the 28 days before."""
    today = account["today"]
    return datetime(today.year, today.month, today.day, 6, 15, tzinfo=ZoneInfo(TIMEZONE))
