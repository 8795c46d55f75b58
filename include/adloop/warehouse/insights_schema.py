"""Warehouse tables of the ROAS loop: Ads Insights as Meta reported them, and the ROAS built on them.

Days are calendar days in the ad account's time zone (Meta reports insights that way), stored as
dates. Money is in the ad account's currency, in major units, as Meta reports it.

- `ad_insights_daily`: one row per account, ad and day, as last reported by Meta.
- `ad_insights_history`: every distinct set of figures a day has had, one version per change, so a
  restated day shows how it moved between fetches.
- `ad_account_daily`: the account's own daily totals, which the gate holds the ads' sum against.
- `meta_ads`: the ads seen in insights, with their ad set and campaign.
- `insights_staging`, `insights_account_staging`: one run's fetched rows before the gate.
- `insights_runs`: one row per run and account: window, API requests, counts.
- `roas_daily`, `ad_recommendations`, `roas_reports`, `roas_day_bounds`: the ROAS tables.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Date, DateTime, Float, Index, Integer, Numeric, String, Table, Text

from adloop.warehouse.schema import metadata

MONEY = Numeric(16, 2)
ID = String(32)


def _figures() -> list[Column]:
    """The figures of one ad and day (a fresh set of Column objects per table)."""
    return [
        Column("spend", MONEY, nullable=False),
        Column("impressions", BigInteger, nullable=False),
        Column("clicks", BigInteger, nullable=False),
        Column("reach", BigInteger, nullable=False),
        Column("purchases", Integer, nullable=False),
        Column("purchase_value", MONEY, nullable=False),
        Column("bookings", Integer, nullable=False),
        Column("signups", Integer, nullable=False),
        Column("subscribes", Integer, nullable=False),
        Column("subscribe_value", MONEY, nullable=False),
    ]


FIGURES = (
    "spend",
    "impressions",
    "clicks",
    "reach",
    "purchases",
    "purchase_value",
    "bookings",
    "signups",
    "subscribes",
    "subscribe_value",
)

ad_insights_daily = Table(
    "ad_insights_daily",
    metadata,
    Column("account_id", ID, primary_key=True),
    Column("ad_id", ID, primary_key=True),
    Column("date_start", Date, primary_key=True),
    Column("adset_id", ID),
    Column("campaign_id", ID),
    Column("currency", String(3)),
    *_figures(),
    # Every action and action value of the four conversion types, with every attribution window
    # Meta returned (JSON), so a different window can be reported without a re-fetch.
    Column("actions", Text),
    Column("attribution_setting", String(64)),
    Column("fingerprint", String(40), nullable=False),  # of the figures: equal means unchanged
    Column("versions", Integer, nullable=False),  # how many distinct sets of figures the day has had
    Column("first_fetched_at", DateTime(timezone=True), nullable=False),
    Column("fetched_at", DateTime(timezone=True), nullable=False),
    Column("run_id", String(255), nullable=False),
)
Index("ix_ad_insights_daily_date", ad_insights_daily.c.date_start)

ad_insights_history = Table(
    "ad_insights_history",
    metadata,
    Column("account_id", ID, primary_key=True),
    Column("ad_id", ID, primary_key=True),
    Column("date_start", Date, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("change", String(16), nullable=False),  # new | restated
    *_figures(),
    Column("spend_delta", MONEY, nullable=False),
    Column("purchases_delta", Integer, nullable=False),
    Column("purchase_value_delta", MONEY, nullable=False),
    Column("run_id", String(255), nullable=False),
    Column("fetched_at", DateTime(timezone=True), nullable=False),
)
Index("ix_ad_insights_history_run", ad_insights_history.c.run_id)

ad_account_daily = Table(
    "ad_account_daily",
    metadata,
    Column("account_id", ID, primary_key=True),
    Column("date_start", Date, primary_key=True),
    Column("spend", MONEY, nullable=False),
    Column("impressions", BigInteger, nullable=False),
    Column("run_id", String(255), nullable=False),
    Column("fetched_at", DateTime(timezone=True), nullable=False),
)

meta_ads = Table(
    "meta_ads",
    metadata,
    Column("ad_id", ID, primary_key=True),
    Column("account_id", ID, nullable=False),
    Column("ad_name", Text),
    Column("adset_id", ID),
    Column("adset_name", Text),
    Column("campaign_id", ID),
    Column("campaign_name", Text),
    Column("currency", String(3)),
    Column("timezone_name", String(64)),
    Column("last_seen", Date),
)

insights_staging = Table(
    "insights_staging",
    metadata,
    Column("run_id", String(255), primary_key=True),
    Column("account_id", ID, primary_key=True),
    Column("ad_id", String(64), primary_key=True),
    Column("date_start", Date, primary_key=True),
    Column("ad_name", Text),
    Column("adset_id", ID),
    Column("adset_name", Text),
    Column("campaign_id", ID),
    Column("campaign_name", Text),
    Column("currency", String(3)),
    *_figures(),
    Column("actions", Text),
    Column("attribution_setting", String(64)),
    Column("fingerprint", String(40), nullable=False),
    # How many rows Meta returned for this key: more than one is a paging or split bug.
    Column("copies", Integer, nullable=False, default=1),
)

insights_account_staging = Table(
    "insights_account_staging",
    metadata,
    Column("run_id", String(255), primary_key=True),
    Column("account_id", ID, primary_key=True),
    Column("date_start", Date, primary_key=True),
    Column("spend", MONEY, nullable=False),
    Column("impressions", BigInteger, nullable=False),
)

insights_runs = Table(
    "insights_runs",
    metadata,
    Column("run_id", String(255), primary_key=True),
    Column("account_id", ID, primary_key=True),
    Column("since", Date, nullable=False),
    Column("until", Date, nullable=False),
    Column("timezone_name", String(64)),
    Column("currency", String(3)),
    Column("status", String(16), nullable=False),  # fetched | loaded | rejected | failed
    Column("rows_fetched", Integer),
    Column("new_rows", Integer),
    Column("restated_rows", Integer),
    Column("unchanged_rows", Integer),
    Column("rejected_days", Text),  # JSON list of ISO dates the gate kept out
    Column("requests", Integer),
    Column("report_runs", Integer),
    Column("split_jobs", Integer),
    Column("retries", Integer),
    Column("waited_seconds", Float),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
)

# One row per level (ad, adset, campaign), object and day.
roas_daily = Table(
    "roas_daily",
    metadata,
    Column("level", String(8), primary_key=True),
    Column("object_id", ID, primary_key=True),
    Column("day", Date, primary_key=True),
    Column("account_id", ID, nullable=False),
    Column("campaign_id", ID),
    Column("campaign_name", Text),
    Column("adset_id", ID),
    Column("adset_name", Text),
    Column("ad_id", ID),
    Column("ad_name", Text),
    Column("currency", String(3)),
    Column("spend", MONEY, nullable=False),
    Column("impressions", BigInteger, nullable=False),
    Column("clicks", BigInteger, nullable=False),
    Column("bookings", Integer, nullable=False),
    Column("signups", Integer, nullable=False),
    Column("purchases", Integer, nullable=False),
    Column("subscribes", Integer, nullable=False),
    Column("meta_purchase_value", MONEY, nullable=False),
    Column("meta_subscribe_value", MONEY, nullable=False),
    Column("stripe_conversions", Integer, nullable=False),
    Column("stripe_revenue", MONEY, nullable=False),
    Column("stripe_refunds", MONEY, nullable=False),
    Column("stripe_net_revenue", MONEY, nullable=False),
    # Conversions in a currency other than the ad account's: counted, not added to revenue.
    Column("stripe_other_currency", Integer, nullable=False),
    Column("cost_per_booking", Float),
    Column("cost_per_signup", Float),
    Column("meta_roas", Float),
    Column("stripe_roas", Float),
    Column("built_at", DateTime(timezone=True), nullable=False),
)
Index("ix_roas_daily_level_day", roas_daily.c.level, roas_daily.c.day)

ad_recommendations = Table(
    "ad_recommendations",
    metadata,
    Column("ad_id", ID, primary_key=True),
    Column("account_id", ID, nullable=False),
    Column("ad_name", Text),
    Column("adset_name", Text),
    Column("campaign_name", Text),
    Column("currency", String(3)),
    Column("window_start", Date, nullable=False),
    Column("window_end", Date, nullable=False),
    Column("spend", MONEY, nullable=False),
    Column("bookings", Integer, nullable=False),
    Column("signups", Integer, nullable=False),
    Column("meta_value", MONEY, nullable=False),
    Column("stripe_net_revenue", MONEY, nullable=False),
    Column("meta_roas", Float),
    Column("stripe_roas", Float),
    Column("cost_per_booking", Float),
    Column("target_roas", Float, nullable=False),
    Column("min_spend", Float, nullable=False),
    Column("decision", String(8), nullable=False),  # kill | scale | hold
    Column("reason", Text, nullable=False),
    Column("run_id", String(255), nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False),
)

roas_reports = Table(
    "roas_reports",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(255), nullable=False),
    Column("generated_at", DateTime(timezone=True), nullable=False),
    Column("ads", Integer, nullable=False),
    Column("html", Text, nullable=False),
)

# The [start, end) unix seconds of each day of each ad account in its own time zone, so Stripe's
# event times join to insights days in SQL on either dialect, daylight saving time included.
roas_day_bounds = Table(
    "roas_day_bounds",
    metadata,
    Column("account_id", ID, primary_key=True),
    Column("day", Date, primary_key=True),
    Column("start_ts", BigInteger, nullable=False),
    Column("end_ts", BigInteger, nullable=False),
    Column("currency", String(3)),
)
