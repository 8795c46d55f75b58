"""The real-time path: a Stripe webhook receiver that sends conversions to CAPI within seconds.

See `app` (routes), `intake` (event to ledger row), `sender` (background CAPI sends),
`signatures` (Stripe-Signature and the app's Adloop-Signature) and `settings` (environment).
"""

from __future__ import annotations

from adloop.webhook.app import create_app, serve
from adloop.webhook.settings import WebhookSettings

__all__ = ["WebhookSettings", "create_app", "serve"]
