"""Warehouse tables of the audience sync (`meta_audience_refresh`), on the shared `metadata`.

- `app_users`, `app_bookings`, `app_memberships`: the app's own people and what they did, landed
  from the `app_db` Connection with customer data hashed at extraction (as `stripe_conversions`).
- `meta_audiences`: the custom audiences and Lookalikes adloop made (or found) on Meta, by key.
- `audience_candidates`: the segment one sync built, one row per member row to send.
- `audience_plan`: what one sync adds and removes, row by row, with whether Meta has taken it.
- `audience_members`: the rows Meta has accepted for each audience, as Meta has them now.
- `audience_sync_runs`: one row per sync of one audience: planned adds and removes, Meta's
  received and invalid counts.

A member row is identified by `member_key`, the SHA-256 of its hashed keys: a person whose email
or phone changed is a new row (the old one is removed), so adds and removes are exact set
differences of member keys.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, DateTime, Float, Index, Integer, String, Table, Text

from adloop.warehouse.schema import HASH, metadata

# The customer keys adloop sends to Meta, in the order of the multi-key schema.
MEMBER_KEYS = ("em", "ph", "fn", "ln", "ct", "st", "zp", "country")


def _keys() -> list[Column]:
    return [Column(key, HASH) for key in MEMBER_KEYS]


app_users = Table(
    "app_users",
    metadata,
    Column("user_id", String(255), primary_key=True),
    Column("stripe_customer_id", String(255)),
    *_keys(),
    Column("hash_errors", Text),
    Column("signed_up_at", BigInteger),
    Column("normalization_version", Integer, nullable=False),
    Column("extracted_at", DateTime(timezone=True), nullable=False),
)
Index("ix_app_users_customer", app_users.c.stripe_customer_id)

app_bookings = Table(
    "app_bookings",
    metadata,
    Column("booking_id", String(255), primary_key=True),
    Column("user_id", String(255), nullable=False),
    Column("status", String(32), nullable=False),  # paid | pending | abandoned | cancelled
    Column("booked_at", BigInteger, nullable=False),
    Column("amount_minor", BigInteger),
    Column("currency", String(3)),
    Column("extracted_at", DateTime(timezone=True), nullable=False),
)
Index("ix_app_bookings_user", app_bookings.c.user_id, app_bookings.c.status, app_bookings.c.booked_at)

app_memberships = Table(
    "app_memberships",
    metadata,
    Column("membership_id", String(255), primary_key=True),
    Column("user_id", String(255), nullable=False),
    Column("plan", String(128)),
    Column("status", String(32), nullable=False),  # Stripe's subscription statuses
    Column("started_at", BigInteger),
    Column("ended_at", BigInteger),
    Column("extracted_at", DateTime(timezone=True), nullable=False),
)
Index("ix_app_memberships_user", app_memberships.c.user_id, app_memberships.c.status)

meta_audiences = Table(
    "meta_audiences",
    metadata,
    # The definition's key for a custom audience; "<key>:lookalike:<country>:<ratio>" for a Lookalike.
    Column("audience_key", String(128), primary_key=True),
    Column("ad_account_id", String(64), nullable=False),
    Column("audience_id", String(64), nullable=False),
    Column("name", String(255), nullable=False),
    Column("subtype", String(16), nullable=False),  # CUSTOM | LOOKALIKE
    Column("origin_audience_id", String(64)),
    Column("country", String(2)),
    Column("ratio", Float),
    Column("created_by_adloop", Boolean, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)

audience_candidates = Table(
    "audience_candidates",
    metadata,
    Column("sync_id", String(255), primary_key=True),
    Column("member_key", HASH, primary_key=True),
    Column("audience_key", String(64), nullable=False),
    Column("source_id", String(255)),
    *_keys(),
)

audience_plan = Table(
    "audience_plan",
    metadata,
    Column("sync_id", String(255), primary_key=True),
    Column("member_key", HASH, primary_key=True),
    Column("action", String(8), nullable=False),  # add | remove
    Column("status", String(16), nullable=False),  # pending | applied | invalid
    Column("applied_at", DateTime(timezone=True)),
)
Index(
    "ix_audience_plan_pending",
    audience_plan.c.sync_id,
    audience_plan.c.action,
    audience_plan.c.status,
    audience_plan.c.member_key,
)

audience_members = Table(
    "audience_members",
    metadata,
    Column("audience_key", String(64), primary_key=True),
    Column("member_key", HASH, primary_key=True),
    *_keys(),
    Column("sync_id", String(255), nullable=False),
    Column("added_at", DateTime(timezone=True), nullable=False),
)

audience_sync_runs = Table(
    "audience_sync_runs",
    metadata,
    Column("sync_id", String(255), primary_key=True),
    Column("run_id", String(255), nullable=False),
    Column("audience_key", String(64), nullable=False),
    Column("audience_id", String(64)),
    Column("mode", String(8), nullable=False),  # diff | replace
    Column("dry_run", Boolean, nullable=False),
    # built | planned | dry_run | applying | synced | failed
    Column("status", String(16), nullable=False),
    Column("as_of", BigInteger),
    Column("segment_rows", Integer),
    Column("opted_out", Integer),
    Column("quarantined", Integer),
    Column("segment_size", Integer),
    Column("previous_size", Integer),
    Column("planned_adds", Integer),
    Column("planned_removes", Integer),
    Column("sent_adds", Integer),
    Column("sent_removes", Integer),
    Column("requests", Integer),
    Column("session_id", String(32)),
    Column("num_received", Integer),
    Column("num_invalid_entries", Integer),
    Column("invalid_entry_samples", Text),  # JSON list; hashes only, anything else is described
    Column("lookalikes", Text),  # JSON: created, existing, skipped with reasons
    Column("error", Text),
    Column("started_at", DateTime(timezone=True)),
    Column("planned_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
)
Index("ix_audience_sync_runs_audience", audience_sync_runs.c.audience_key, audience_sync_runs.c.started_at)
