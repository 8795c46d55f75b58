"""The gates of the nightly reconciliation DAG (`stripe_capi_reconciliation`).

1. `conversions_suite` checks what one run extracted from Stripe, before it is diffed and planned.
2. `backfill_plan_suite` checks the plan of that run, before anything is sent to the Conversions API.

One invalid event makes Meta reject the whole request of up to 1,000 events, so these gates are
strict: a failure stops the run rather than sending a batch that will bounce.
"""

from __future__ import annotations

from adloop.events import ACTION_SOURCES
from adloop.quality.gate import Param, Suite, between, in_set, lacks, matches, not_null, unique

# Meta's user_data keys, SHA-256 hashed by adloop before they reach the warehouse.
HASHED_COLUMNS = ("em", "ph", "fn", "ln", "ct", "st", "zp", "country", "external_id")
SHA256_HEX = r"^[0-9a-f]{64}$"


# Free-text columns that are sent or stored as they are. An '@' in one of them is an email that
# escaped hashing. event_source_url is left out: a URL may carry '@' legitimately.
UNHASHED_TEXT_COLUMNS = (
    "fbp",
    "fbc",
    "ad_id",
    "client_user_agent",
    "client_ip_address",
    "customer_id",
    "hash_errors",
)

# Known shortcoming: stripe_conversions has no index on run_id, so each of the gate's aggregate
# queries scans the whole table, not just the run's rows; an index would fix it (schema change).
CONVERSIONS_QUERY = """
SELECT event_id, event_name, event_time, currency, livemode, amount_minor, value, amount_refunded_minor,
       action_source, event_source_url, client_user_agent, client_ip_address, fbp, fbc, ad_id, customer_id,
       hash_errors, em, ph, fn, ln, ct, st, zp, country, external_id
FROM stripe_conversions
WHERE run_id = :run_id
"""


def conversions_suite() -> Suite:
    """The conversions one run extracted from Stripe. Params: run_id, window_start_ts, window_end_ts."""
    return Suite(
        name="stripe_conversions",
        query=CONVERSIONS_QUERY,
        expectations=(
            not_null("event_id"),
            not_null("event_name"),
            not_null("event_time"),
            not_null("currency"),
            not_null("livemode"),
            # Meta deduplicates on (event_id, event_name): a duplicate would be counted once at best.
            unique("event_id", "event_name"),
            in_set("event_name", ("Purchase", "Subscribe"), samples=True),
            # Only what the run asked Stripe for; an event outside the window means a wrong filter.
            between("event_time", Param("window_start_ts"), Param("window_end_ts"), strict_max=True),
            # CAPI wants ISO 4217 in lowercase; "CAD " or "" would reject the whole request.
            matches("currency", r"^[a-z]{3}$", samples=True),
            between("amount_minor", 0),
            between("value", 0),
            between("amount_refunded_minor", 0),
            in_set("action_source", ACTION_SOURCES, samples=True),
            # Meta requires both for website events and rejects the request without them.
            not_null("client_user_agent", where=("action_source", "website")),
            not_null("event_source_url", where=("action_source", "website")),
            # A value that is not 64 hex characters was not hashed: it may be a clear email or phone.
            # Known shortcoming: PostgreSQL's regex engine takes about 7 µs a row on "{64}" (six
            # seconds a column at a million rows); "^[0-9a-f]+$" plus a length check would be ten
            # times faster, at the cost of two expectations per column.
            *(matches(column, SHA256_HEX) for column in HASHED_COLUMNS),
            *(lacks(column, "@") for column in UNHASHED_TEXT_COLUMNS),
        ),
    )


BACKFILL_PLAN_QUERY = """
SELECT p.event_id, p.event_name, p.decision, p.reason, p.event_time,
       CASE WHEN c.event_id IS NOT NULL THEN 1 ELSE 0 END AS has_conversion,
       CASE WHEN c.livemode THEN 1 ELSE 0 END AS is_livemode,
       CASE WHEN c.payment_status = 'paid' OR (c.event_name = 'Subscribe' AND c.status = 'active')
            THEN 1 ELSE 0 END AS is_paid,
       CASE WHEN c.amount_minor > 0 AND c.value > 0 THEN 1 ELSE 0 END AS has_positive_amount,
       CASE WHEN c.em IS NOT NULL OR c.ph IS NOT NULL OR c.external_id IS NOT NULL
                 OR c.fbp IS NOT NULL OR c.fbc IS NOT NULL
            THEN 1 ELSE 0 END AS has_customer_key
FROM backfill_plan AS p
LEFT JOIN stripe_conversions AS c ON c.event_id = p.event_id AND c.event_name = p.event_name
WHERE p.run_id = :run_id
"""

SEND = ("decision", "send")


def backfill_plan_suite() -> Suite:
    """The backfill plan of one run. Params: run_id, min_sendable_ts (Meta's 7-day limit at plan time)."""
    return Suite(
        name="backfill_plan",
        query=BACKFILL_PLAN_QUERY,
        expectations=(
            in_set("decision", ("send", "already_sent", "expired", "excluded"), samples=True),
            # An exclusion without a reason cannot be explained in the run's summary.
            not_null("reason", where=("decision", "excluded")),
            # One event older than 7 days makes Meta reject the whole request.
            between("event_time", Param("min_sendable_ts"), where=SEND),
            # A send row must point at a conversion, or there is nothing to build the event from.
            in_set("has_conversion", (1,), where=SEND),
            # Test-mode payments must never reach the live pixel.
            in_set("is_livemode", (1,), where=SEND),
            # Stripe pays a Checkout Session once payment_status is paid; unpaid ones may still fail.
            # A Subscribe counts once its subscription is active (or its first invoice paid).
            in_set("is_paid", (1,), where=SEND),
            in_set("has_positive_amount", (1,), where=SEND),
            # Without em, ph, external_id, fbp or fbc Meta cannot match the event to anyone.
            in_set("has_customer_key", (1,), where=SEND),
            unique("event_id", "event_name"),
        ),
    )
