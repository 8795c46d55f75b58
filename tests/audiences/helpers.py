"""Shared set-up for the audience tests: a generated studio in the app DB, warehouse and sandbox."""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

END = datetime(2026, 6, 1, tzinfo=UTC)
AS_OF = int(END.timestamp())
AD_ACCOUNT = "act_100200300400"


def land_studio(
    warehouse_url: str,
    tmp_path: Path,
    *,
    customers: int = 400,
    seed: int = 3,
    days: int = 200,
    end: datetime = END,
):
    """Generate a studio, write its app DB, land it hashed in the warehouse, record its opt-outs."""
    from adloop.audiences import app_source
    from adloop.consent import record_opt_outs
    from adloop.sandbox.app_data import write_app_db
    from adloop.sandbox.generator import generate

    business = generate(seed=seed, customers=customers, days=days, end=end)
    app_db = tmp_path / "app.db"
    write_app_db(business, app_db)
    app_source.extract_app_data(warehouse_url, f"sqlite:///{app_db}", default_country="CA")
    record_opt_outs(warehouse_url, emails=business.opt_out_emails(), source="test")
    return business, app_db


def meta_settings(meta_url: str, **overrides):
    from adloop.settings import MetaSettings

    values = {
        "access_token": "EAAB-test",
        "graph_url": meta_url,
        "ad_account_ids": (AD_ACCOUNT,),
        "backoff_base_seconds": 0.01,
        "backoff_max_seconds": 0.05,
        "max_attempts": 3,
    }
    values.update(overrides)
    return MetaSettings(**values)


def control(meta_url: str, route: str) -> dict:
    with urllib.request.urlopen(f"{meta_url}/_sandbox/{route}", timeout=10) as response:
        return json.loads(response.read())


def audience_on_meta(meta_url: str, name: str) -> dict | None:
    for audience in control(meta_url, "audiences")["audiences"]:
        if audience["name"] == name:
            return audience
    return None


def emails_on_meta(meta_url: str, audience_id: str) -> list[str]:
    return control(meta_url, f"audiences/{audience_id}/members")["emails"]
