"""The warehouse tables, as SQLAlchemy Core.

The warehouse is the source of truth for what adloop did: every side effect on Meta is written
here before and after it happens. Columns hold hashed customer data only; clear emails, phones
and names never land in any table.

Times of business events are unix seconds (what CAPI takes), times of adloop's own bookkeeping
are timezone-aware timestamps. Both SQLite (the embedded default) and PostgreSQL run this schema.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
)

metadata = MetaData()

HASH = String(64)  # lowercase hex SHA-256

# One row per conversion read from Stripe. The event_id is the Stripe object the conversion
# is about (Checkout Session id for Purchase, Subscription id for Subscribe), so the Pixel, the
# webhook and the backfill all name the same conversion the same way.
stripe_conversions = Table(
    "stripe_conversions",
    metadata,
    Column("event_id", String(255), primary_key=True),
    Column("event_name", String(32), primary_key=True),
    Column("object_type", String(32), nullable=False),
    Column("customer_id", String(255)),
    Column("livemode", Boolean, nullable=False),
    Column("status", String(32)),
    Column("payment_status", String(32)),
    Column("event_time", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("value", Numeric(18, 4), nullable=False),
    Column("amount_refunded_minor", BigInteger, nullable=False, default=0),
    Column("action_source", String(32), nullable=False),
    Column("event_source_url", Text),
    Column("client_user_agent", Text),
    Column("client_ip_address", String(64)),
    Column("fbp", String(255)),
    Column("fbc", String(512)),
    Column("ad_id", String(64)),
    Column("em", HASH),
    Column("ph", HASH),
    Column("fn", HASH),
    Column("ln", HASH),
    Column("ct", HASH),
    Column("st", HASH),
    Column("zp", HASH),
    Column("country", HASH),
    Column("external_id", HASH),
    Column("hash_errors", Text),
    Column("normalization_version", Integer, nullable=False),
    Column("run_id", String(255), nullable=False),
    Column("extracted_at", DateTime(timezone=True), nullable=False),
)
Index("ix_stripe_conversions_event_time", stripe_conversions.c.event_time)
Index("ix_stripe_conversions_run_id", stripe_conversions.c.run_id)

# The ledger of CAPI events: one row per (event_id, event_name), written before a send
# (status in_flight) and after it (sent or quarantined). A retried or cleared task reads it and
# never sends an event whose row says sent.
capi_events = Table(
    "capi_events",
    metadata,
    Column("event_id", String(255), primary_key=True),
    Column("event_name", String(32), primary_key=True),
    Column("pixel_id", String(64)),
    Column("source", String(16), nullable=False),  # webhook | backfill
    Column("status", String(16), nullable=False),  # pending | in_flight | sent | quarantined
    Column("event_time", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("batch_id", String(64)),
    Column("fbtrace_id", String(64)),
    Column("error", Text),
    Column("run_id", String(255)),
    Column("first_attempt_at", DateTime(timezone=True)),
    Column("last_attempt_at", DateTime(timezone=True)),
    Column("sent_at", DateTime(timezone=True)),
)
Index("ix_capi_events_status", capi_events.c.status)

# The backfill plan of one reconciliation run: each conversion of the window that needs a
# decision beyond "already sent" (send, expired, or excluded with its reason). The ones the ledger
# already has as sent, three in four on a typical night, are not written: plan_summary counts them
# as the run's conversions the plan does not hold. The diff that fills it runs in the warehouse:
# one CREATE TEMPORARY TABLE ... AS (which PostgreSQL may run in parallel) and one INSERT ... SELECT
# appending its rows here (reconcile.plan_backfill).
#
# A run's plan is written once, as one batch appended to the table, and only ever read or deleted
# whole, by run_id. So it has no primary key and no B-tree: maintained row by row for a million
# conversions, the key and the former send index (which send_backfill's query never used) added
# 1.0 s to the 1.6 s of writing the plan without them (BENCHMARKS.md, section 2). A BRIN index
# finds a run's block ranges and costs next to nothing on insert (on SQLite it is a plain index).
# Rows are unique by construction: plan_backfill locks the run's record, deletes its plan and
# writes one row per conversion of the run, in one transaction; the plan's gate checks it again.
backfill_plan = Table(
    "backfill_plan",
    metadata,
    Column("run_id", String(255), nullable=False),
    Column("event_id", String(255), nullable=False),
    Column("event_name", String(32), nullable=False),
    Column("decision", String(16), nullable=False),  # send | expired | excluded
    Column("reason", String(64)),
    Column("expiring_soon", Boolean, nullable=False, default=False),
    Column("event_time", BigInteger, nullable=False),
)
Index("ix_backfill_plan_run_id", backfill_plan.c.run_id, postgresql_using="brin")

reconciliation_runs = Table(
    "reconciliation_runs",
    metadata,
    Column("run_id", String(255), primary_key=True),
    Column("window_start", DateTime(timezone=True), nullable=False),
    Column("window_end", DateTime(timezone=True), nullable=False),
    Column("as_of", DateTime(timezone=True)),
    Column("dry_run", Boolean, nullable=False, default=False),
    Column("status", String(16), nullable=False),  # extracted | planned | sent | verified | failed
    Column("found", Integer),
    Column("quarantined_at_extraction", Integer),
    Column("already_sent", Integer),
    Column("to_send", Integer),
    Column("expiring_soon", Integer),
    Column("backfilled", Integer),
    Column("quarantined", Integer),
    Column("expired", Integer),
    Column("excluded", Integer),
    Column("excluded_by_reason", Text),  # JSON object reason -> count
    Column("capi_requests", Integer),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
)

# Records that could not be used, with the reason, so nothing is dropped silently.
quarantine = Table(
    "quarantine",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(255), nullable=False),
    Column("stage", String(32), nullable=False),  # extract | send
    Column("record_type", String(32), nullable=False),
    Column("record_id", String(255), nullable=False),
    Column("reason", Text, nullable=False),
    Column("detected_at", DateTime(timezone=True), nullable=False),
)

# Customers who declined tracking, by hashed email or by Stripe customer id. Honoured by every
# path that sends to Meta.
consent_opt_outs = Table(
    "consent_opt_outs",
    metadata,
    Column("key_type", String(16), primary_key=True),  # em | customer_id
    Column("key_value", String(255), primary_key=True),
    Column("source", String(64)),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)

dq_results = Table(
    "dq_results",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(255), nullable=False),
    Column("dag_id", String(255)),
    Column("step", String(64), nullable=False),
    Column("suite", String(128), nullable=False),
    Column("success", Boolean, nullable=False),
    Column("evaluated", Integer, nullable=False),
    Column("row_count", BigInteger),
    Column("failed_expectations", Text),  # JSON list of {expectation, column, observed}
    Column("checked_at", DateTime(timezone=True), nullable=False),
)
