"""What adloop needs to reach Stripe, Meta and the warehouse, and where its failure alerts go.

Inside Airflow these come from the Connections `stripe_default`, `meta_default`,
`warehouse_default` and `adloop_alerts` (see plugins/adloop_hooks.py); outside it, the CLI builds
them from flags. Kept free of Airflow so every domain module can be tested without it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

STRIPE_API_BASE = "https://api.stripe.com"
META_GRAPH_URL = "https://graph.facebook.com"
META_API_VERSION = "v26.0"


@dataclass(frozen=True)
class StripeSettings:
    api_key: str = field(repr=False)
    api_base: str = STRIPE_API_BASE
    max_network_retries: int = 3


@dataclass(frozen=True)
class MetaSettings:
    access_token: str = field(repr=False)
    pixel_id: str = ""
    graph_url: str = META_GRAPH_URL
    api_version: str = META_API_VERSION
    test_event_code: str | None = None
    # Meta suggests a short client timeout; a batch of 1,000 events needs a little more.
    timeout_seconds: float = 10.0
    # Meta's maximum; smaller only to exercise multi-batch runs in tests.
    batch_size: int = 1000
    max_attempts: int = 6
    backoff_base_seconds: float = 1.0
    backoff_max_seconds: float = 60.0
    ad_account_ids: tuple[str, ...] = ()
    # Rows per audience request: Meta's maximum; smaller only to exercise many batches in tests.
    audience_batch_rows: int = 10_000
    # Tuning of the insights client (adloop.meta.insights.InsightsOptions), e.g. {"page_size": 500}.
    insights: Mapping[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Settings:
    warehouse_url: str
    stripe: StripeSettings | None = None
    meta: MetaSettings | None = None
    # Phones without a country code are taken to be from here (the studio is in Alberta).
    default_country: str = "CA"


@dataclass(frozen=True)
class AlertSettings:
    """Where failure alerts go: the `adloop_alerts` Connection, read by plugins/adloop_hooks.py.

    `channel` names the sender in adloop.alerts: "webhook", "email", or "package.module:function"
    for a sender of your own, which gets the alert and these settings (`options` is the
    Connection's whole extra).
    """

    channel: str
    # A Slack (or compatible) incoming-webhook URL is itself a secret: never shown in a repr or log.
    webhook_url: str = field(default="", repr=False)
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_login: str = ""
    smtp_password: str = field(default="", repr=False)
    smtp_ssl: bool = False  # SMTPS from the first byte (port 465)
    smtp_starttls: bool = True  # upgrade a plain connection with STARTTLS; the server must offer it
    mail_from: str = "adloop@localhost"
    mail_to: tuple[str, ...] = ()
    timeout_seconds: float = 5.0
    options: Mapping[str, Any] = field(default_factory=dict, hash=False, repr=False)
