"""Tables of the real-time receiver (`adloop webhook`).

- `stripe_webhook_events`: one row per Stripe event id the receiver accepted, with what it did
  about it. Stripe delivers at least once and sometimes twice, so this is the duplicate guard:
  a second delivery of the same event id finds its row and changes nothing.
- `app_conversions`: conversions the app reports itself (a confirmed booking as Schedule), hashed
  on arrival, with the same columns as `stripe_conversions`. The nightly DAG reads Stripe only,
  so the receiver keeps what it needs here to resend a Schedule whose first send failed.

Ledger rows (`capi_events`) written by the receiver have `source = 'webhook'`.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, DateTime, Index, String, Table

from adloop.warehouse.schema import metadata, stripe_conversions

stripe_webhook_events = Table(
    "stripe_webhook_events",
    metadata,
    Column("event_id", String(255), primary_key=True),  # evt_...
    Column("type", String(64), nullable=False),
    Column("livemode", Boolean),
    Column("object_id", String(255)),  # the Checkout Session or Invoice the event is about
    Column("created", BigInteger),  # when Stripe created the event, unix seconds
    Column("received_at", DateTime(timezone=True), nullable=False),
    # queued | already_in_ledger:<status> | excluded:<reason> | expired | ignored:<reason>
    Column("outcome", String(64), nullable=False),
    Column("conversion_event_name", String(32)),
    Column("conversion_event_id", String(255)),
)
Index("ix_stripe_webhook_events_received_at", stripe_webhook_events.c.received_at)

app_conversions = Table(
    "app_conversions",
    metadata,
    *(column._copy() for column in stripe_conversions.columns),
)
