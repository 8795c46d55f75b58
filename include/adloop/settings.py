"""What adloop needs to reach Stripe, Meta and the warehouse.

Inside Airflow these come from the Connections `stripe_default`, `meta_default` and
`warehouse_default` (see plugins/adloop_hooks.py); outside it, the CLI builds them from flags.
Kept free of Airflow so every domain module can be tested without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class Settings:
    warehouse_url: str
    stripe: StripeSettings | None = None
    meta: MetaSettings | None = None
    # Phones without a country code are taken to be from here (the studio is in Alberta).
    default_country: str = "CA"
