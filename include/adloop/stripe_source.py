"""Conversions read from Stripe: paid Checkout Sessions (Purchase) and first membership invoices
(Subscribe), hashed at the extraction boundary.

Stripe is the record of what was paid, so reconciliation reads objects, not the Events API
(events are kept for 30 days and can fail to be generated at all). Clear customer data lives only
inside `extract_conversions`, one chunk at a time: it is normalized and hashed there and never
stored, logged or returned.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from adloop import events
from adloop.settings import StripeSettings

log = logging.getLogger(__name__)

PAGE_SIZE = 100  # Stripe's maximum
HASHED_KEYS = ("em", "ph", "fn", "ln", "ct", "st", "zp", "country", "external_id")
TRACKING_KEYS = ("fbp", "fbc", "client_user_agent", "client_ip_address", "event_source_url", "ad_id")


@dataclass(frozen=True)
class Window:
    """A half-open interval [start, end) of unix seconds."""

    start: int
    end: int

    @classmethod
    def of(cls, start: datetime, end: datetime) -> Window:
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("window bounds must be timezone-aware")
        if end <= start:
            raise ValueError(f"window end {end.isoformat()} is not after its start {start.isoformat()}")
        return cls(int(start.timestamp()), int(end.timestamp()))

    def describe(self) -> str:
        fmt = "%Y-%m-%d %H:%M UTC"
        s = datetime.fromtimestamp(self.start, UTC).strftime(fmt)
        e = datetime.fromtimestamp(self.end, UTC).strftime(fmt)
        return f"[{s}, {e})"


class RecordProblem(ValueError):
    """A Stripe object that cannot become a conversion; it is quarantined, never dropped."""

    def __init__(self, record_type: str, record_id: str, reason: str):
        super().__init__(f"{record_type} {record_id}: {reason}")
        self.record_type = record_type
        self.record_id = record_id
        self.reason = reason


def stripe_client(cfg: StripeSettings):
    import stripe

    return stripe.StripeClient(
        cfg.api_key,
        base_addresses={"api": cfg.api_base},
        # StripeClient retries nothing unless told to; 5xx and connection errors are retried here.
        max_network_retries=cfg.max_network_retries,
    )


def list_all(
    list_page: Callable[[dict], Any],
    params: dict,
    *,
    max_rate_limit_waits: int = 8,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[dict]:
    """Every object of a Stripe list, page by page, as plain dicts.

    StripeClient never retries HTTP 429, so rate limiting is backed off here, per page, without
    restarting the listing.
    """
    import stripe

    params = dict(params, limit=PAGE_SIZE)
    waits = 0
    while True:
        try:
            page = list_page(params)
        except stripe.RateLimitError:
            waits += 1
            if waits > max_rate_limit_waits:
                raise
            delay = min(2.0**waits, 30.0)
            log.warning("stripe: rate limited, waiting %.1f s before the next page", delay)
            sleep(delay)
            continue
        waits = 0
        data = [obj.to_dict() for obj in page.data]
        yield from data
        if not page.has_more or not data:
            return
        params["starting_after"] = data[-1]["id"]


def _get(obj: dict | None, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _tracking(metadata: dict | None) -> dict:
    metadata = metadata or {}
    return {k: (metadata.get(k) or None) for k in TRACKING_KEYS}


def _split_name(name: str | None) -> tuple[str | None, str | None]:
    """Stripe keeps one `name`; Meta wants first and last. The last word is the last name.

    Known shortcoming: compound surnames written with a space ("De la Cruz") lose their first part.
    """
    if not name or not name.strip():
        return None, None
    parts = name.strip().split()
    if len(parts) == 1:
        return parts[0], None
    return " ".join(parts[:-1]), parts[-1]


def _currency(record_type: str, record_id: str, value: Any) -> str:
    cur = value.strip().lower() if isinstance(value, str) else ""
    if len(cur) != 3 or not cur.isalpha():
        raise RecordProblem(record_type, record_id, f"has currency {value!r}, expected an ISO 4217 code")
    return cur


def _amount(record_type: str, record_id: str, field: str, value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RecordProblem(record_type, record_id, f"has {field} {value!r}, expected a non-negative integer")
    return value


def _action_source(tracking: dict) -> str:
    # Meta requires a user agent and the page URL for website events; a purchase made without
    # adloop's checkout (a Payment Link, the dashboard) has neither and is sent as "other".
    if tracking["client_user_agent"] and tracking["event_source_url"]:
        return "website"
    return "other"


def purchase_from_session(session: dict, refunded_by_payment_intent: dict[str, int]) -> dict:
    """A Checkout Session in payment mode as a Purchase conversion (clear customer fields)."""
    sid = session["id"]
    currency = _currency("Checkout Session", sid, session.get("currency"))
    amount = _amount("Checkout Session", sid, "amount_total", session.get("amount_total"))
    details = session.get("customer_details") or {}
    first, last = _split_name(details.get("name"))
    tracking = _tracking(session.get("metadata"))
    return {
        "event_id": events.event_id_for(events.PURCHASE, sid),
        "event_name": events.PURCHASE,
        "object_type": "checkout.session",
        "customer_id": session.get("customer"),
        "livemode": bool(session.get("livemode")),
        "status": session.get("status"),
        "payment_status": session.get("payment_status"),
        "event_time": int(session["created"]),
        "currency": currency,
        "amount_minor": amount,
        "amount_refunded_minor": refunded_by_payment_intent.get(session.get("payment_intent") or "", 0),
        "action_source": _action_source(tracking),
        **tracking,
        "clear": {
            "email": details.get("email"),
            "phone": details.get("phone"),
            "first_name": first,
            "last_name": last,
            "city": _get(details, "address", "city"),
            "state": _get(details, "address", "state"),
            "zip": _get(details, "address", "postal_code"),
            "country": _get(details, "address", "country"),
            "external_id": session.get("customer"),
        },
    }


def subscribe_from_invoice(invoice: dict, subscription: dict | None) -> dict:
    """The first invoice of a membership as a Subscribe conversion (clear customer fields)."""
    iid = invoice["id"]
    sub_id = _get(invoice, "parent", "subscription_details", "subscription")
    if not sub_id:
        raise RecordProblem("Invoice", iid, "has billing_reason subscription_create but no subscription")
    currency = _currency("Invoice", iid, invoice.get("currency"))
    paid = invoice.get("status") == "paid"
    amount_field = "amount_paid" if paid else "amount_due"
    amount = _amount("Invoice", iid, amount_field, invoice.get(amount_field))
    paid_at = _get(invoice, "status_transitions", "paid_at")
    first, last = _split_name(invoice.get("customer_name"))
    metadata = (subscription or {}).get("metadata") or _get(invoice, "parent", "subscription_details", "metadata")
    tracking = _tracking(metadata)
    address = invoice.get("customer_address") or {}
    return {
        "event_id": events.event_id_for(events.SUBSCRIBE, sub_id),
        "event_name": events.SUBSCRIBE,
        "object_type": "subscription",
        "customer_id": invoice.get("customer"),
        "livemode": bool(invoice.get("livemode")),
        "status": (subscription or {}).get("status"),
        "payment_status": "paid" if paid else "unpaid",
        "event_time": int(paid_at or invoice["created"]),
        "currency": currency,
        "amount_minor": amount,
        "amount_refunded_minor": 0,
        "action_source": _action_source(tracking),
        **tracking,
        "clear": {
            "email": invoice.get("customer_email"),
            "phone": invoice.get("customer_phone"),
            "first_name": first,
            "last_name": last,
            "city": address.get("city"),
            "state": address.get("state"),
            "zip": address.get("postal_code"),
            "country": address.get("country"),
            "external_id": invoice.get("customer"),
        },
    }


def iter_conversions(client, window: Window, *, on_problem: Callable[[RecordProblem], None]) -> Iterator[dict]:
    """Conversions created in the window, with clear customer fields under "clear".

    Refunds are read first (for the window, by payment intent) so each Purchase carries how much
    of it was refunded; membership metadata comes from the subscriptions of the window.
    Known shortcoming: a refund made after the window's end is seen only by a later run whose
    window covers it; refunds of membership invoices are not netted yet.
    """
    created = {"gte": window.start, "lt": window.end}

    refunded: dict[str, int] = {}
    for refund in list_all(client.v1.refunds.list, {"created": {"gte": window.start}}):
        if refund.get("status") in ("succeeded", "pending") and refund.get("payment_intent"):
            pi = refund["payment_intent"]
            refunded[pi] = refunded.get(pi, 0) + int(refund.get("amount") or 0)

    for session in list_all(client.v1.checkout.sessions.list, {"created": created}):
        if session.get("mode") != "payment":
            continue  # memberships are counted once, as Subscribe, from their first invoice
        try:
            yield purchase_from_session(session, refunded)
        except RecordProblem as problem:
            on_problem(problem)

    # Subscriptions start at most a day before their first invoice is created.
    subscriptions = {
        s["id"]: s
        for s in list_all(
            client.v1.subscriptions.list,
            {"created": {"gte": window.start - 86400, "lt": window.end}, "status": "all"},
        )
    }
    for invoice in list_all(client.v1.invoices.list, {"created": created}):
        if invoice.get("billing_reason") != "subscription_create":
            continue  # renewals are not new conversions
        try:
            sub_id = _get(invoice, "parent", "subscription_details", "subscription")
            yield subscribe_from_invoice(invoice, subscriptions.get(sub_id))
        except RecordProblem as problem:
            on_problem(problem)


# Up to this many conversions are hashed row by row (`_hash_clear_rows`); more go through
# `identity.hash_frame`, whose pandas set-up (2-3 ms) costs as much for one row as for thirty.
ROW_BY_ROW_MAX = 16


def hash_conversions(conversions: list[dict], *, run_id: str, default_country: str) -> list[dict]:
    """Conversions as warehouse rows: customer fields normalized and hashed, clear fields dropped.

    The one place a conversion read from Stripe becomes hashed, whoever read it (the nightly
    backfill or the real-time webhook), so both send Meta the same hashes.
    """
    from adloop import identity

    clear = [c.pop("clear") for c in conversions]
    hashed = _hash_clear_rows(clear, default_country) if len(clear) <= ROW_BY_ROW_MAX else None
    if hashed is None:
        import pandas as pd

        frame = pd.DataFrame(clear)
        hashed = identity.hash_frame(frame, default_country=default_country).to_dict("records")
        del frame
    del clear
    now = datetime.now(UTC)
    rows = []
    for conversion, keys in zip(conversions, hashed, strict=True):
        row = dict(conversion)
        for key in HASHED_KEYS:
            value = keys.get(key)
            row[key] = value if isinstance(value, str) and value else None
        row.update(
            value=events.to_major_units(row["amount_minor"], row["currency"]),
            hash_errors=keys.get("errors") or None,
            normalization_version=identity.NORMALIZATION_VERSION,
            run_id=run_id,
            extracted_at=now,
        )
        rows.append(row)
    return rows


def _hash_clear_rows(clear: list[dict], default_country: str) -> list[dict] | None:
    """What `identity.hash_frame` makes of these rows (hashes, and errors joined in its order),
    one value at a time through identity's rules; None when a row is not a plain dict of
    text and None (hash_frame's coercions, such as numbers to text, are left to it).

    The webhook hashes one conversion per delivery, and the frame's set-up was most of its work.
    tests/unit/test_stripe_source.py checks both paths agree on varied and invalid inputs.
    TODO(#5): identity should offer this per-row function itself, so the rules it repeats
    (the row's country for ph, st and zp; the default country for ph; the order of errors) live
    in one module; until then that test is what keeps the two in step.
    """
    import numpy as np

    from adloop import identity

    if not all(isinstance(row, dict) for row in clear):
        return None
    columns = {name: identity.INPUT_COLUMNS.get(name) for row in clear for name in row}
    if None in columns.values() or len(set(columns.values())) != len(columns):
        return None  # columns hash_frame would ignore or have to choose between
    if not all(value is None or (isinstance(value, str) and _encodable(value))
               for row in clear for value in row.values()):
        return None
    default = identity._default_country(default_country)  # raises as hash_frame does
    keys_present = set(columns.values())

    def rule(key: str, value: str | None, country: str | None) -> tuple[str | None, str | None, str | None]:
        """(normalized, hashed, error) of one value, by identity's rules."""
        if value is None:
            return None, None, None
        normalized, errors, is_hash = identity._normalize_by_rule(
            key, np.array([value], dtype=object), None if country is None else np.array([country], dtype=object)
        )
        text, error = normalized[0], errors[0]
        if text is None:
            return None, None, error
        return text, text if is_hash[0] else identity._sha256(text.encode()).hexdigest(), error

    out = []
    for row in clear:
        values = {columns[name]: value for name, value in row.items()}
        hashes: dict[str, str | None] = dict.fromkeys(identity.KEYS)
        errors: list[str] = []
        row_country = None
        # The row's country first: it decides the phone's calling code and the st and zp rules.
        order = ["country", *(k for k in identity.KEYS if k != "country")]
        for key in order:
            if key not in keys_present:
                continue
            country = row_country if key in identity._COUNTRY_DEPENDENT_KEYS else None
            if key == "ph" and country is None:
                country = default
            normalized, hashes[key], error = rule(key, values.get(key), country)
            if key == "country":
                row_country = normalized
            if error is not None:
                errors.append(error)
        out.append({**hashes, "errors": "; ".join(errors)})
    return out


def _encodable(value: str) -> bool:
    if value.isascii():
        return True
    try:
        value.encode()
    except UnicodeEncodeError:  # a lone surrogate: left to hash_frame
        return False
    return True
