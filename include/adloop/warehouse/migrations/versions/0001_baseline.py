"""Baseline: the warehouse as adloop made it before it had migrations.

Every table and index of `adloop.warehouse.tables` as `metadata.create_all` created them, in the
order of the schema modules. A warehouse made by an older adloop (tables, no version table) is
checked against this revision and stamped with it; see `adloop.warehouse.migrations`.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # schema.py
    op.create_table(
        "stripe_conversions",
        sa.Column("event_id", sa.String(255), primary_key=True),
        sa.Column("event_name", sa.String(32), primary_key=True),
        sa.Column("object_type", sa.String(32), nullable=False),
        sa.Column("customer_id", sa.String(255)),
        sa.Column("livemode", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(32)),
        sa.Column("payment_status", sa.String(32)),
        sa.Column("event_time", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("value", sa.Numeric(18, 4), nullable=False),
        sa.Column("amount_refunded_minor", sa.BigInteger, nullable=False),
        sa.Column("action_source", sa.String(32), nullable=False),
        sa.Column("event_source_url", sa.Text),
        sa.Column("client_user_agent", sa.Text),
        sa.Column("client_ip_address", sa.String(64)),
        sa.Column("fbp", sa.String(255)),
        sa.Column("fbc", sa.String(512)),
        sa.Column("ad_id", sa.String(64)),
        sa.Column("em", sa.String(64)),
        sa.Column("ph", sa.String(64)),
        sa.Column("fn", sa.String(64)),
        sa.Column("ln", sa.String(64)),
        sa.Column("ct", sa.String(64)),
        sa.Column("st", sa.String(64)),
        sa.Column("zp", sa.String(64)),
        sa.Column("country", sa.String(64)),
        sa.Column("external_id", sa.String(64)),
        sa.Column("hash_errors", sa.Text),
        sa.Column("normalization_version", sa.Integer, nullable=False),
        sa.Column("run_id", sa.String(255), nullable=False),
        sa.Column("extracted_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_stripe_conversions_event_time", "stripe_conversions", ["event_time"])
    op.create_index("ix_stripe_conversions_run_id", "stripe_conversions", ["run_id"])

    op.create_table(
        "capi_events",
        sa.Column("event_id", sa.String(255), primary_key=True),
        sa.Column("event_name", sa.String(32), primary_key=True),
        sa.Column("pixel_id", sa.String(64)),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("event_time", sa.BigInteger, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("batch_id", sa.String(64)),
        sa.Column("fbtrace_id", sa.String(64)),
        sa.Column("error", sa.Text),
        sa.Column("run_id", sa.String(255)),
        sa.Column("first_attempt_at", sa.DateTime(timezone=True)),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True)),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_capi_events_status", "capi_events", ["status"])

    op.create_table(
        "backfill_plan",
        sa.Column("run_id", sa.String(255), primary_key=True),
        sa.Column("event_id", sa.String(255), primary_key=True),
        sa.Column("event_name", sa.String(32), primary_key=True),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64)),
        sa.Column("expiring_soon", sa.Boolean, nullable=False),
        sa.Column("event_time", sa.BigInteger, nullable=False),
    )
    op.create_index(
        "ix_backfill_plan_to_send",
        "backfill_plan",
        ["run_id", "event_time"],
        postgresql_where=sa.text("decision = 'send'"),
        sqlite_where=sa.text("decision = 'send'"),
    )

    op.create_table(
        "reconciliation_runs",
        sa.Column("run_id", sa.String(255), primary_key=True),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True)),
        sa.Column("dry_run", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("found", sa.Integer),
        sa.Column("quarantined_at_extraction", sa.Integer),
        sa.Column("already_sent", sa.Integer),
        sa.Column("to_send", sa.Integer),
        sa.Column("expiring_soon", sa.Integer),
        sa.Column("backfilled", sa.Integer),
        sa.Column("quarantined", sa.Integer),
        sa.Column("expired", sa.Integer),
        sa.Column("excluded", sa.Integer),
        sa.Column("excluded_by_reason", sa.Text),
        sa.Column("capi_requests", sa.Integer),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
    )

    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(255), nullable=False),
        sa.Column("stage", sa.String(32), nullable=False),
        sa.Column("record_type", sa.String(32), nullable=False),
        sa.Column("record_id", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
    )

    op.create_table(
        "consent_opt_outs",
        sa.Column("key_type", sa.String(16), primary_key=True),
        sa.Column("key_value", sa.String(255), primary_key=True),
        sa.Column("source", sa.String(64)),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )

    op.create_table(
        "dq_results",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(255), nullable=False),
        sa.Column("dag_id", sa.String(255)),
        sa.Column("step", sa.String(64), nullable=False),
        sa.Column("suite", sa.String(128), nullable=False),
        sa.Column("success", sa.Boolean, nullable=False),
        sa.Column("evaluated", sa.Integer, nullable=False),
        sa.Column("row_count", sa.BigInteger),
        sa.Column("failed_expectations", sa.Text),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
    )

    # audience_schema.py
    op.create_table(
        "app_users",
        sa.Column("user_id", sa.String(255), primary_key=True),
        sa.Column("stripe_customer_id", sa.String(255)),
        sa.Column("em", sa.String(64)),
        sa.Column("ph", sa.String(64)),
        sa.Column("fn", sa.String(64)),
        sa.Column("ln", sa.String(64)),
        sa.Column("ct", sa.String(64)),
        sa.Column("st", sa.String(64)),
        sa.Column("zp", sa.String(64)),
        sa.Column("country", sa.String(64)),
        sa.Column("hash_errors", sa.Text),
        sa.Column("signed_up_at", sa.BigInteger),
        sa.Column("normalization_version", sa.Integer, nullable=False),
        sa.Column("extracted_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_app_users_customer", "app_users", ["stripe_customer_id"])

    op.create_table(
        "app_bookings",
        sa.Column("booking_id", sa.String(255), primary_key=True),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("booked_at", sa.BigInteger, nullable=False),
        sa.Column("amount_minor", sa.BigInteger),
        sa.Column("currency", sa.String(3)),
        sa.Column("extracted_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_app_bookings_user", "app_bookings", ["user_id", "status", "booked_at"])

    op.create_table(
        "app_memberships",
        sa.Column("membership_id", sa.String(255), primary_key=True),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("plan", sa.String(128)),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("started_at", sa.BigInteger),
        sa.Column("ended_at", sa.BigInteger),
        sa.Column("extracted_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_app_memberships_user", "app_memberships", ["user_id", "status"])

    op.create_table(
        "meta_audiences",
        sa.Column("audience_key", sa.String(128), primary_key=True),
        sa.Column("ad_account_id", sa.String(64), nullable=False),
        sa.Column("audience_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("subtype", sa.String(16), nullable=False),
        sa.Column("origin_audience_id", sa.String(64)),
        sa.Column("country", sa.String(2)),
        sa.Column("ratio", sa.Float),
        sa.Column("created_by_adloop", sa.Boolean, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )

    op.create_table(
        "audience_candidates",
        sa.Column("sync_id", sa.String(255), primary_key=True),
        sa.Column("member_key", sa.String(64), primary_key=True),
        sa.Column("audience_key", sa.String(64), nullable=False),
        sa.Column("source_id", sa.String(255)),
        sa.Column("em", sa.String(64)),
        sa.Column("ph", sa.String(64)),
        sa.Column("fn", sa.String(64)),
        sa.Column("ln", sa.String(64)),
        sa.Column("ct", sa.String(64)),
        sa.Column("st", sa.String(64)),
        sa.Column("zp", sa.String(64)),
        sa.Column("country", sa.String(64)),
    )

    op.create_table(
        "audience_plan",
        sa.Column("sync_id", sa.String(255), primary_key=True),
        sa.Column("member_key", sa.String(64), primary_key=True),
        sa.Column("action", sa.String(8), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True)),
    )
    op.create_index(
        "ix_audience_plan_pending",
        "audience_plan",
        ["sync_id", "action", "status", "member_key"],
    )

    op.create_table(
        "audience_members",
        sa.Column("audience_key", sa.String(64), primary_key=True),
        sa.Column("member_key", sa.String(64), primary_key=True),
        sa.Column("em", sa.String(64)),
        sa.Column("ph", sa.String(64)),
        sa.Column("fn", sa.String(64)),
        sa.Column("ln", sa.String(64)),
        sa.Column("ct", sa.String(64)),
        sa.Column("st", sa.String(64)),
        sa.Column("zp", sa.String(64)),
        sa.Column("country", sa.String(64)),
        sa.Column("sync_id", sa.String(255), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
    )

    op.create_table(
        "audience_sync_runs",
        sa.Column("sync_id", sa.String(255), primary_key=True),
        sa.Column("run_id", sa.String(255), nullable=False),
        sa.Column("audience_key", sa.String(64), nullable=False),
        sa.Column("audience_id", sa.String(64)),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("dry_run", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("as_of", sa.BigInteger),
        sa.Column("segment_rows", sa.Integer),
        sa.Column("opted_out", sa.Integer),
        sa.Column("quarantined", sa.Integer),
        sa.Column("segment_size", sa.Integer),
        sa.Column("previous_size", sa.Integer),
        sa.Column("planned_adds", sa.Integer),
        sa.Column("planned_removes", sa.Integer),
        sa.Column("sent_adds", sa.Integer),
        sa.Column("sent_removes", sa.Integer),
        sa.Column("requests", sa.Integer),
        sa.Column("session_id", sa.String(32)),
        sa.Column("num_received", sa.Integer),
        sa.Column("num_invalid_entries", sa.Integer),
        sa.Column("invalid_entry_samples", sa.Text),
        sa.Column("lookalikes", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("planned_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_audience_sync_runs_audience", "audience_sync_runs", ["audience_key", "started_at"])

    # insights_schema.py
    op.create_table(
        "ad_insights_daily",
        sa.Column("account_id", sa.String(32), primary_key=True),
        sa.Column("ad_id", sa.String(32), primary_key=True),
        sa.Column("date_start", sa.Date, primary_key=True),
        sa.Column("adset_id", sa.String(32)),
        sa.Column("campaign_id", sa.String(32)),
        sa.Column("currency", sa.String(3)),
        sa.Column("spend", sa.Numeric(16, 2), nullable=False),
        sa.Column("impressions", sa.BigInteger, nullable=False),
        sa.Column("clicks", sa.BigInteger, nullable=False),
        sa.Column("reach", sa.BigInteger, nullable=False),
        sa.Column("purchases", sa.Integer, nullable=False),
        sa.Column("purchase_value", sa.Numeric(16, 2), nullable=False),
        sa.Column("bookings", sa.Integer, nullable=False),
        sa.Column("signups", sa.Integer, nullable=False),
        sa.Column("subscribes", sa.Integer, nullable=False),
        sa.Column("subscribe_value", sa.Numeric(16, 2), nullable=False),
        sa.Column("actions", sa.Text),
        sa.Column("attribution_setting", sa.String(64)),
        sa.Column("fingerprint", sa.String(40), nullable=False),
        sa.Column("versions", sa.Integer, nullable=False),
        sa.Column("first_fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.String(255), nullable=False),
    )
    op.create_index("ix_ad_insights_daily_date", "ad_insights_daily", ["date_start"])

    op.create_table(
        "ad_insights_history",
        sa.Column("account_id", sa.String(32), primary_key=True),
        sa.Column("ad_id", sa.String(32), primary_key=True),
        sa.Column("date_start", sa.Date, primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("change", sa.String(16), nullable=False),
        sa.Column("spend", sa.Numeric(16, 2), nullable=False),
        sa.Column("impressions", sa.BigInteger, nullable=False),
        sa.Column("clicks", sa.BigInteger, nullable=False),
        sa.Column("reach", sa.BigInteger, nullable=False),
        sa.Column("purchases", sa.Integer, nullable=False),
        sa.Column("purchase_value", sa.Numeric(16, 2), nullable=False),
        sa.Column("bookings", sa.Integer, nullable=False),
        sa.Column("signups", sa.Integer, nullable=False),
        sa.Column("subscribes", sa.Integer, nullable=False),
        sa.Column("subscribe_value", sa.Numeric(16, 2), nullable=False),
        sa.Column("spend_delta", sa.Numeric(16, 2), nullable=False),
        sa.Column("purchases_delta", sa.Integer, nullable=False),
        sa.Column("purchase_value_delta", sa.Numeric(16, 2), nullable=False),
        sa.Column("run_id", sa.String(255), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_ad_insights_history_run", "ad_insights_history", ["run_id"])

    op.create_table(
        "ad_account_daily",
        sa.Column("account_id", sa.String(32), primary_key=True),
        sa.Column("date_start", sa.Date, primary_key=True),
        sa.Column("spend", sa.Numeric(16, 2), nullable=False),
        sa.Column("impressions", sa.BigInteger, nullable=False),
        sa.Column("run_id", sa.String(255), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
    )

    op.create_table(
        "meta_ads",
        sa.Column("ad_id", sa.String(32), primary_key=True),
        sa.Column("account_id", sa.String(32), nullable=False),
        sa.Column("ad_name", sa.Text),
        sa.Column("adset_id", sa.String(32)),
        sa.Column("adset_name", sa.Text),
        sa.Column("campaign_id", sa.String(32)),
        sa.Column("campaign_name", sa.Text),
        sa.Column("currency", sa.String(3)),
        sa.Column("timezone_name", sa.String(64)),
        sa.Column("last_seen", sa.Date),
    )

    op.create_table(
        "insights_staging",
        sa.Column("run_id", sa.String(255), primary_key=True),
        sa.Column("account_id", sa.String(32), primary_key=True),
        sa.Column("ad_id", sa.String(64), primary_key=True),
        sa.Column("date_start", sa.Date, primary_key=True),
        sa.Column("ad_name", sa.Text),
        sa.Column("adset_id", sa.String(32)),
        sa.Column("adset_name", sa.Text),
        sa.Column("campaign_id", sa.String(32)),
        sa.Column("campaign_name", sa.Text),
        sa.Column("currency", sa.String(3)),
        sa.Column("spend", sa.Numeric(16, 2), nullable=False),
        sa.Column("impressions", sa.BigInteger, nullable=False),
        sa.Column("clicks", sa.BigInteger, nullable=False),
        sa.Column("reach", sa.BigInteger, nullable=False),
        sa.Column("purchases", sa.Integer, nullable=False),
        sa.Column("purchase_value", sa.Numeric(16, 2), nullable=False),
        sa.Column("bookings", sa.Integer, nullable=False),
        sa.Column("signups", sa.Integer, nullable=False),
        sa.Column("subscribes", sa.Integer, nullable=False),
        sa.Column("subscribe_value", sa.Numeric(16, 2), nullable=False),
        sa.Column("actions", sa.Text),
        sa.Column("attribution_setting", sa.String(64)),
        sa.Column("fingerprint", sa.String(40), nullable=False),
        sa.Column("copies", sa.Integer, nullable=False),
    )

    op.create_table(
        "insights_account_staging",
        sa.Column("run_id", sa.String(255), primary_key=True),
        sa.Column("account_id", sa.String(32), primary_key=True),
        sa.Column("date_start", sa.Date, primary_key=True),
        sa.Column("spend", sa.Numeric(16, 2), nullable=False),
        sa.Column("impressions", sa.BigInteger, nullable=False),
    )

    op.create_table(
        "insights_runs",
        sa.Column("run_id", sa.String(255), primary_key=True),
        sa.Column("account_id", sa.String(32), primary_key=True),
        sa.Column("since", sa.Date, nullable=False),
        sa.Column("until", sa.Date, nullable=False),
        sa.Column("timezone_name", sa.String(64)),
        sa.Column("currency", sa.String(3)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("rows_fetched", sa.Integer),
        sa.Column("new_rows", sa.Integer),
        sa.Column("restated_rows", sa.Integer),
        sa.Column("unchanged_rows", sa.Integer),
        sa.Column("rejected_days", sa.Text),
        sa.Column("requests", sa.Integer),
        sa.Column("report_runs", sa.Integer),
        sa.Column("split_jobs", sa.Integer),
        sa.Column("retries", sa.Integer),
        sa.Column("waited_seconds", sa.Float),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
    )

    op.create_table(
        "roas_daily",
        sa.Column("level", sa.String(8), primary_key=True),
        sa.Column("object_id", sa.String(32), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("account_id", sa.String(32), nullable=False),
        sa.Column("campaign_id", sa.String(32)),
        sa.Column("campaign_name", sa.Text),
        sa.Column("adset_id", sa.String(32)),
        sa.Column("adset_name", sa.Text),
        sa.Column("ad_id", sa.String(32)),
        sa.Column("ad_name", sa.Text),
        sa.Column("currency", sa.String(3)),
        sa.Column("spend", sa.Numeric(16, 2), nullable=False),
        sa.Column("impressions", sa.BigInteger, nullable=False),
        sa.Column("clicks", sa.BigInteger, nullable=False),
        sa.Column("bookings", sa.Integer, nullable=False),
        sa.Column("signups", sa.Integer, nullable=False),
        sa.Column("purchases", sa.Integer, nullable=False),
        sa.Column("subscribes", sa.Integer, nullable=False),
        sa.Column("meta_purchase_value", sa.Numeric(16, 2), nullable=False),
        sa.Column("meta_subscribe_value", sa.Numeric(16, 2), nullable=False),
        sa.Column("stripe_conversions", sa.Integer, nullable=False),
        sa.Column("stripe_revenue", sa.Numeric(16, 2), nullable=False),
        sa.Column("stripe_refunds", sa.Numeric(16, 2), nullable=False),
        sa.Column("stripe_net_revenue", sa.Numeric(16, 2), nullable=False),
        sa.Column("stripe_other_currency", sa.Integer, nullable=False),
        sa.Column("cost_per_booking", sa.Float),
        sa.Column("cost_per_signup", sa.Float),
        sa.Column("meta_roas", sa.Float),
        sa.Column("stripe_roas", sa.Float),
        sa.Column("built_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_roas_daily_level_day", "roas_daily", ["level", "day"])

    op.create_table(
        "ad_recommendations",
        sa.Column("ad_id", sa.String(32), primary_key=True),
        sa.Column("account_id", sa.String(32), nullable=False),
        sa.Column("ad_name", sa.Text),
        sa.Column("adset_name", sa.Text),
        sa.Column("campaign_name", sa.Text),
        sa.Column("currency", sa.String(3)),
        sa.Column("window_start", sa.Date, nullable=False),
        sa.Column("window_end", sa.Date, nullable=False),
        sa.Column("spend", sa.Numeric(16, 2), nullable=False),
        sa.Column("bookings", sa.Integer, nullable=False),
        sa.Column("signups", sa.Integer, nullable=False),
        sa.Column("meta_value", sa.Numeric(16, 2), nullable=False),
        sa.Column("stripe_net_revenue", sa.Numeric(16, 2), nullable=False),
        sa.Column("meta_roas", sa.Float),
        sa.Column("stripe_roas", sa.Float),
        sa.Column("cost_per_booking", sa.Float),
        sa.Column("target_roas", sa.Float, nullable=False),
        sa.Column("min_spend", sa.Float, nullable=False),
        sa.Column("decision", sa.String(8), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("run_id", sa.String(255), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
    )

    op.create_table(
        "roas_reports",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(255), nullable=False),
        sa.Column("generated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ads", sa.Integer, nullable=False),
        sa.Column("html", sa.Text, nullable=False),
    )

    op.create_table(
        "roas_day_bounds",
        sa.Column("account_id", sa.String(32), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("start_ts", sa.BigInteger, nullable=False),
        sa.Column("end_ts", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3)),
    )

    # webhook_schema.py
    op.create_table(
        "stripe_webhook_events",
        sa.Column("event_id", sa.String(255), primary_key=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("livemode", sa.Boolean),
        sa.Column("object_id", sa.String(255)),
        sa.Column("created", sa.BigInteger),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(64), nullable=False),
        sa.Column("conversion_event_name", sa.String(32)),
        sa.Column("conversion_event_id", sa.String(255)),
    )
    op.create_index("ix_stripe_webhook_events_received_at", "stripe_webhook_events", ["received_at"])

    op.create_table(
        "app_conversions",
        sa.Column("event_id", sa.String(255), primary_key=True),
        sa.Column("event_name", sa.String(32), primary_key=True),
        sa.Column("object_type", sa.String(32), nullable=False),
        sa.Column("customer_id", sa.String(255)),
        sa.Column("livemode", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(32)),
        sa.Column("payment_status", sa.String(32)),
        sa.Column("event_time", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("value", sa.Numeric(18, 4), nullable=False),
        sa.Column("amount_refunded_minor", sa.BigInteger, nullable=False),
        sa.Column("action_source", sa.String(32), nullable=False),
        sa.Column("event_source_url", sa.Text),
        sa.Column("client_user_agent", sa.Text),
        sa.Column("client_ip_address", sa.String(64)),
        sa.Column("fbp", sa.String(255)),
        sa.Column("fbc", sa.String(512)),
        sa.Column("ad_id", sa.String(64)),
        sa.Column("em", sa.String(64)),
        sa.Column("ph", sa.String(64)),
        sa.Column("fn", sa.String(64)),
        sa.Column("ln", sa.String(64)),
        sa.Column("ct", sa.String(64)),
        sa.Column("st", sa.String(64)),
        sa.Column("zp", sa.String(64)),
        sa.Column("country", sa.String(64)),
        sa.Column("external_id", sa.String(64)),
        sa.Column("hash_errors", sa.Text),
        sa.Column("normalization_version", sa.Integer, nullable=False),
        sa.Column("run_id", sa.String(255), nullable=False),
        sa.Column("extracted_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    # Dropping a table drops its indexes with it.
    op.drop_table("app_conversions")
    op.drop_table("stripe_webhook_events")
    op.drop_table("roas_day_bounds")
    op.drop_table("roas_reports")
    op.drop_table("ad_recommendations")
    op.drop_table("roas_daily")
    op.drop_table("insights_runs")
    op.drop_table("insights_account_staging")
    op.drop_table("insights_staging")
    op.drop_table("meta_ads")
    op.drop_table("ad_account_daily")
    op.drop_table("ad_insights_history")
    op.drop_table("ad_insights_daily")
    op.drop_table("audience_sync_runs")
    op.drop_table("audience_members")
    op.drop_table("audience_plan")
    op.drop_table("audience_candidates")
    op.drop_table("meta_audiences")
    op.drop_table("app_memberships")
    op.drop_table("app_bookings")
    op.drop_table("app_users")
    op.drop_table("dq_results")
    op.drop_table("consent_opt_outs")
    op.drop_table("quarantine")
    op.drop_table("reconciliation_runs")
    op.drop_table("backfill_plan")
    op.drop_table("capi_events")
    op.drop_table("stripe_conversions")
