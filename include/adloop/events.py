"""The six events adloop sends to Meta, and the deterministic event_id scheme.

Meta counts a conversion once when the Pixel's `eventID` and the server's `event_id` are equal
and the event names match, within 48 hours. So the id must be something the browser, the webhook
and the nightly backfill all know without talking to each other: the business object the
conversion is about.

| event_name            | event_id                     | who sends it                 |
| --------------------- | ---------------------------- | ---------------------------- |
| PageView              | a random id per page load    | Pixel only                   |
| Lead                  | the lead's id in the app     | Pixel, app                   |
| CompleteRegistration  | the account's id in the app  | Pixel, app                   |
| Schedule              | the booking id               | Pixel, app (webhook issue)   |
| Purchase              | the Checkout Session id      | Pixel, webhook, backfill     |
| Subscribe             | the Subscription id          | Pixel, webhook, backfill     |

The Pixel learns the Checkout Session id from Stripe's success URL (`{CHECKOUT_SESSION_ID}`) and
the Subscription id from the same session, so no extra round trip is needed.
"""

from __future__ import annotations

from decimal import Decimal

PAGE_VIEW = "PageView"
LEAD = "Lead"
COMPLETE_REGISTRATION = "CompleteRegistration"
SCHEDULE = "Schedule"
PURCHASE = "Purchase"
SUBSCRIBE = "Subscribe"

EVENT_NAMES = (PAGE_VIEW, LEAD, COMPLETE_REGISTRATION, SCHEDULE, PURCHASE, SUBSCRIBE)

# Events the nightly reconciliation reads from Stripe and backfills.
STRIPE_EVENTS = (PURCHASE, SUBSCRIBE)

ACTION_SOURCES = (
    "email",
    "website",
    "app",
    "phone_call",
    "chat",
    "physical_store",
    "system_generated",
    "business_messaging",
    "other",
)

# Meta rejects the whole request if one event is older than this.
CAPI_MAX_EVENT_AGE_SECONDS = 7 * 24 * 3600
# Meta deduplicates an event_id + event_name pair only within this window.
CAPI_DEDUP_WINDOW_SECONDS = 48 * 3600
CAPI_MAX_EVENTS_PER_REQUEST = 1000

# Stripe amounts are in the currency's minor unit. These have none (zero-decimal) or three.
# Source: Stripe's currency docs, "Zero-decimal currencies" and "Three-decimal currencies".
ZERO_DECIMAL_CURRENCIES = frozenset(
    "bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split()
)
THREE_DECIMAL_CURRENCIES = frozenset("bhd jod kwd omr tnd".split())


def event_id_for(event_name: str, object_id: str) -> str:
    """The event_id of a conversion: the id of the business object, as the Pixel knows it."""
    if event_name not in EVENT_NAMES:
        raise ValueError(f"unknown event_name {event_name!r}, expected one of {', '.join(EVENT_NAMES)}")
    if not object_id:
        raise ValueError(f"{event_name} needs the id of its business object, got {object_id!r}")
    return object_id


def minor_unit_exponent(currency: str) -> int:
    cur = currency.lower()
    if cur in ZERO_DECIMAL_CURRENCIES:
        return 0
    if cur in THREE_DECIMAL_CURRENCIES:
        return 3
    return 2


def to_major_units(amount_minor: int, currency: str) -> Decimal:
    """Stripe's minor-unit integer as the decimal amount Meta expects in `custom_data.value`."""
    return Decimal(int(amount_minor)).scaleb(-minor_unit_exponent(currency))
