"""The receiver's settings, from environment variables.

The receiver is a long-running service, not an Airflow task, so it reads no Airflow Connection:

| variable | meaning |
| --- | --- |
| `ADLOOP_WAREHOUSE_URL` | SQLAlchemy URL of the warehouse (default: the local SQLite file) |
| `ADLOOP_STRIPE_WEBHOOK_SECRET` | the endpoint's signing secret `whsec_...`; several, comma-separated, while rolling |
| `ADLOOP_APP_SECRET` | the secret the app signs its booking and consent calls with (comma-separated too) |
| `ADLOOP_META_ACCESS_TOKEN`, `ADLOOP_META_PIXEL_ID` | where conversions go; without them the ledger is written and the nightly DAG sends |
| `ADLOOP_META_GRAPH_URL`, `ADLOOP_META_API_VERSION`, `ADLOOP_META_TEST_EVENT_CODE` | optional |
| `ADLOOP_CAPI_TIMEOUT_SECONDS` | one CAPI attempt waits this long (default 1.5, Meta's suggestion) |
| `ADLOOP_DEFAULT_COUNTRY` | calling code for phones written without one (default CA) |

Secrets and tokens are kept out of `repr()`, so they never reach a log line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from adloop.settings import META_API_VERSION, META_GRAPH_URL, MetaSettings


def _secrets(value: str | None) -> tuple[str, ...]:
    return tuple(s.strip() for s in (value or "").split(",") if s.strip())


@dataclass(frozen=True)
class WebhookSettings:
    warehouse_url: str
    stripe_secrets: tuple[str, ...] = field(default=(), repr=False)
    app_secrets: tuple[str, ...] = field(default=(), repr=False)
    meta: MetaSettings | None = None
    default_country: str = "CA"
    tolerance_seconds: int = 300
    # Conversions waiting for their CAPI send; past this many, new ones wait for the nightly DAG.
    queue_size: int = 10_000
    # Events a background send may carry at once (one CAPI request).
    batch_max: int = 100
    # How often Schedule events whose send failed are tried again (the nightly DAG reads Stripe
    # only, so it cannot resend them).
    retry_interval_seconds: float = 300.0
    retry_after_seconds: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WebhookSettings:
        from adloop import local

        env = os.environ if env is None else env
        meta = None
        if env.get("ADLOOP_META_ACCESS_TOKEN") and env.get("ADLOOP_META_PIXEL_ID"):
            meta = capi_settings(
                access_token=env["ADLOOP_META_ACCESS_TOKEN"],
                pixel_id=env["ADLOOP_META_PIXEL_ID"],
                graph_url=env.get("ADLOOP_META_GRAPH_URL") or META_GRAPH_URL,
                api_version=env.get("ADLOOP_META_API_VERSION") or META_API_VERSION,
                test_event_code=env.get("ADLOOP_META_TEST_EVENT_CODE") or None,
                timeout_seconds=float(env.get("ADLOOP_CAPI_TIMEOUT_SECONDS") or 1.5),
            )
        return cls(
            warehouse_url=env.get("ADLOOP_WAREHOUSE_URL") or local.Layout().warehouse_url,
            stripe_secrets=_secrets(env.get("ADLOOP_STRIPE_WEBHOOK_SECRET")),
            app_secrets=_secrets(env.get("ADLOOP_APP_SECRET")),
            meta=meta,
            default_country=env.get("ADLOOP_DEFAULT_COUNTRY") or "CA",
        )


def capi_settings(*, access_token: str, pixel_id: str, timeout_seconds: float = 1.5, **extra) -> MetaSettings:
    """CAPI settings for the real-time path: one short attempt, never a wait.

    Whatever that attempt does not settle stays pending in the ledger, for the nightly DAG (or,
    for Schedule, the receiver's own retry) to send; so no retry, and no back-off pause that would
    hold up the conversions queued behind it.
    """
    return MetaSettings(
        access_token=access_token,
        pixel_id=pixel_id,
        timeout_seconds=timeout_seconds,
        max_attempts=1,
        backoff_base_seconds=0.0,
        backoff_max_seconds=0.0,
        **extra,
    )
