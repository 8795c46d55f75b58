"""From a verified Stripe event (or an app report) to a ledger row, in one transaction.

Which events mean a conversion is the nightly reconciliation's predicate, restated for single
events (reference/stripe.md §2.1):

- Purchase: a Checkout Session in payment mode that is paid, from `checkout.session.completed`
  (a delayed payment method completes unpaid) or `checkout.session.async_payment_succeeded`.
- Subscribe: the first invoice of a membership (`billing_reason = subscription_create`), from
  `invoice.paid`; renewals are not new conversions.

The event's object becomes a conversion through `stripe_source` and is hashed by
`hash_conversions`, the code path the backfill uses, so both send Meta the same `event_id` and the
same hashes. Exclusions mirror `reconcile.plan_backfill`'s, in the same order; an excluded or
expired conversion gets no ledger row (the plan decides the same about it on its own).

Each Stripe event id is recorded once in `stripe_webhook_events`, in the transaction that writes
the ledger row, so a redelivered event changes nothing and a failed one leaves no trace (Stripe
retries it). The ledger row is written `pending` before any send; the sender moves it on.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from adloop import consent, events, stripe_source
from adloop.reconcile import EXPIRY_MARGIN_SECONDS
from adloop.warehouse.db import _insert_for
from adloop.warehouse.schema import capi_events, quarantine
from adloop.warehouse.webhook_schema import app_conversions, stripe_webhook_events

log = logging.getLogger(__name__)

PURCHASE_EVENTS = ("checkout.session.completed", "checkout.session.async_payment_succeeded")
SUBSCRIBE_EVENTS = ("invoice.paid",)
CLEAR_KEYS = ("email", "phone", "first_name", "last_name", "city", "state", "zip", "country")


class BadRequest(ValueError):
    """The body is not what the endpoint takes; the message says what is wrong (no customer data)."""


@dataclass(frozen=True)
class Result:
    outcome: str  # queued | duplicate | already_in_ledger:<status> | excluded:<reason> | expired | ...
    event_name: str | None = None
    event_id: str | None = None
    row: dict | None = None  # the hashed conversion to send, when queued

    def public(self) -> dict:
        return {"outcome": self.outcome, "event_name": self.event_name, "event_id": self.event_id}


def conversion_from_event(event: dict) -> tuple[dict | None, str | None]:
    """(conversion with clear customer fields, None) or (None, why the event is not one)."""
    kind = event["type"]
    obj = event["data"]["object"]
    if kind in PURCHASE_EVENTS:
        if obj.get("object") != "checkout.session":
            raise BadRequest(f"{kind} carries a {obj.get('object')!r}, expected a checkout.session")
        if obj.get("mode") != "payment":
            return None, "ignored:not_payment_mode"  # a membership counts once, from its first invoice
        if obj.get("payment_status") != "paid":
            return None, "ignored:unpaid"  # a delayed payment: async_payment_succeeded follows
        return stripe_source.purchase_from_session(obj, {}), None
    if kind in SUBSCRIBE_EVENTS:
        if obj.get("object") != "invoice":
            raise BadRequest(f"{kind} carries a {obj.get('object')!r}, expected an invoice")
        if obj.get("billing_reason") != "subscription_create":
            return None, "ignored:renewal"
        return stripe_source.subscribe_from_invoice(obj, None), None
    return None, "ignored:event_type"


def exclusion_reason(row: dict, *, opted_out: bool, paid_event: bool = True) -> str | None:
    """Why a conversion must not be sent, in the order `reconcile.plan_backfill` checks."""
    if paid_event:
        if not row["livemode"]:
            return "test_mode"
        if row["payment_status"] != "paid":
            return "unpaid"
        if row["amount_minor"] <= 0:
            return "zero_amount"
        if row["amount_refunded_minor"] >= row["amount_minor"]:
            return "fully_refunded"
    if opted_out:
        return "opted_out"
    if not any(row.get(k) for k in ("em", "ph", "external_id", "fbp", "fbc")):
        return "no_customer_data"
    return None


class Intake:
    def __init__(self, engine, *, pixel_id: str | None, default_country: str, clock=time.time):
        self.engine = engine
        self.pixel_id = pixel_id
        self.default_country = default_country
        self.clock = clock

    # -- Stripe --------------------------------------------------------------------------------

    def stripe_event(self, event: dict) -> Result:
        (result,) = self.stripe_events([event])
        if isinstance(result, Exception):
            raise result
        return result

    def stripe_events(self, deliveries: list) -> list[Result | Exception]:
        """Several deliveries at once, each answered as `stripe_event` would answer it alone.

        Their conversions are hashed in one `hash_conversions` call (its pandas set-up costs as
        much for one row as for fifty) and written in one transaction (one SQLite write lock).
        A delivery that is not a Stripe event gets its `BadRequest`; if the shared transaction
        fails, each delivery is written again in its own, so one bad write fails only its own
        request (a 500, and Stripe delivers it again).
        """
        prepared: list[_Delivery | Exception] = []
        for event in deliveries:
            try:
                prepared.append(_prepare(event))
            except BadRequest as exc:
                prepared.append(exc)
        self._hash_deliveries([d for d in prepared if isinstance(d, _Delivery) and d.conversion])

        pending = [d for d in prepared if isinstance(d, _Delivery) and d.failure is None]
        try:
            with self.engine.begin() as conn:
                written = {id(d): self._write(conn, d) for d in pending}
        except Exception as exc:
            if len(pending) == 1:
                written = {id(pending[0]): exc}
            else:
                log.warning("webhook: writing %s deliveries together failed; writing them one by one", len(pending))
                written = {id(d): self._write_alone(d) for d in pending}

        results = []
        for d in prepared:
            result = d if isinstance(d, Exception) else d.failure or written[id(d)]
            if isinstance(result, Result):
                self._log_outcome(d, result)
            results.append(result)
        return results

    def _hash_deliveries(self, deliveries: list[_Delivery]) -> None:
        """Set each delivery's hashed `row`, or its `failure` if its conversion cannot be hashed."""
        if not deliveries:
            return
        try:
            # hash_conversions takes the clear fields out of what it is given: copies keep them
            # for the one-by-one retry below.
            rows = self._hash_all([dict(d.conversion) for d in deliveries])
        except Exception as exc:
            if len(deliveries) == 1:
                rows = [exc]
            else:
                log.warning("webhook: hashing %s conversions together failed; hashing them one by one",
                            len(deliveries))
                rows = [_or_exception(self._hash, dict(d.conversion), "webhook") for d in deliveries]
        for d, row in zip(deliveries, rows, strict=True):
            if isinstance(row, Exception):
                d.failure = row
            else:
                d.row = dict(row, run_id=f"webhook:{d.event_id}")

    def _write(self, conn, d: _Delivery) -> Result:
        if d.problem is not None:
            return self._quarantine(conn, d.record, d.problem)
        if not self._claim_event(conn, d.record):
            return Result("duplicate", *_key(d.row))
        outcome = d.ignored or self._admit(conn, d.row)
        self._set_outcome(conn, d.event_id, outcome, d.row)
        return Result(outcome, *_key(d.row), row=d.row if outcome == "queued" else None)

    def _write_alone(self, d: _Delivery) -> Result | Exception:
        def write():
            with self.engine.begin() as conn:
                return self._write(conn, d)

        return _or_exception(write)

    def _log_outcome(self, d: _Delivery, result: Result) -> None:
        if d.problem is not None:
            if result.outcome == "quarantined":
                log.warning("webhook %s: quarantined %s %s: %s", d.event_id, d.problem.record_type,
                            d.problem.record_id, d.problem.reason)
            return
        if result.outcome != "duplicate":
            log.info("webhook %s %s: %s %s", d.event_id, d.kind, " ".join(_key(d.row)) or "-", result.outcome)

    def _claim_event(self, conn, record: dict) -> bool:
        stmt = _insert_for(self.engine, stripe_webhook_events).on_conflict_do_nothing(index_elements=["event_id"])
        values = dict(record, received_at=datetime.now(UTC), outcome="processing")
        return conn.execute(stmt, values).rowcount == 1

    def _set_outcome(self, conn, event_id: str, outcome: str, row: dict | None) -> None:
        t = stripe_webhook_events
        conn.execute(
            t.update().where(t.c.event_id == event_id).values(
                outcome=outcome,
                conversion_event_name=row["event_name"] if row else None,
                conversion_event_id=row["event_id"] if row else None,
            )
        )

    def _quarantine(self, conn, record: dict, problem: stripe_source.RecordProblem) -> Result:
        # Retrying cannot fix the object, so Stripe gets its 200; the nightly DAG quarantines it too.
        if not self._claim_event(conn, record):
            return Result("duplicate")
        self._set_outcome(conn, record["event_id"], "quarantined", None)
        conn.execute(quarantine.insert().values(
            run_id=f"webhook:{record['event_id']}", stage="webhook", record_type=problem.record_type,
            record_id=problem.record_id, reason=problem.reason, detected_at=datetime.now(UTC)))
        return Result("quarantined")

    # -- the app -------------------------------------------------------------------------------

    def schedule(self, body: dict) -> Result:
        """A booking the app confirmed, as Schedule with the booking id as event_id."""
        conversion = _schedule_conversion(body)
        row = self._hash(conversion, "webhook:app")
        with self.engine.begin() as conn:
            outcome = self._admit(conn, row, paid_event=False, keep_in=app_conversions)
        log.info("app: Schedule %s %s", row["event_id"], outcome)
        return Result(outcome, *_key(row), row=row if outcome == "queued" else None)

    def opt_out(self, body: dict, *, source: str = "app") -> int:
        emails, hashed, customers = (_str_list(body, k) for k in ("emails", "hashed_emails", "customer_ids"))
        for single, bucket in (("email", emails), ("em", hashed), ("customer_id", customers)):
            if isinstance(body.get(single), str):
                bucket.append(body[single])
        try:
            rows = consent.opt_out_rows(emails=emails, hashed_emails=hashed, customer_ids=customers, source=source)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        if not rows:
            raise BadRequest("give an email, em (hashed email) or customer_id to opt out")
        with self.engine.begin() as conn:
            added = consent.record(conn, rows)
        log.info("consent: %s opt-outs recorded from %s", len(rows), source)
        return added

    # -- shared --------------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Load the hashing code (pandas, numpy) before the first delivery, not during it."""
        self._hash(_schedule_conversion({"booking_id": "warm-up", "event_time": 0,
                                         "customer": {"email": "warm.up@example.com"}}), "warm-up")

    def _hash(self, conversion: dict, run_id: str) -> dict:
        return self._hash_all([conversion], run_id)[0]

    def _hash_all(self, conversions: list[dict], run_id: str = "webhook") -> list[dict]:
        return stripe_source.hash_conversions(conversions, run_id=run_id, default_country=self.default_country)

    def _admit(self, conn, row: dict, *, paid_event: bool = True, keep_in=None) -> str:
        """Write the pending ledger row of a conversion that may be sent; the outcome either way."""
        opted_out = consent.is_opted_out(conn, em=row.get("em"), customer_id=row.get("customer_id"))
        reason = exclusion_reason(row, opted_out=opted_out, paid_event=paid_event)
        if reason:
            return f"excluded:{reason}"
        min_sendable = int(self.clock()) - events.CAPI_MAX_EVENT_AGE_SECONDS + EXPIRY_MARGIN_SECONDS
        if row["event_time"] < min_sendable:
            return "expired"
        if keep_in is not None:
            conn.execute(_insert_for(self.engine, keep_in).on_conflict_do_nothing(), row)
        now = datetime.now(UTC)
        stmt = _insert_for(self.engine, capi_events).on_conflict_do_nothing(index_elements=["event_id", "event_name"])
        inserted = conn.execute(stmt, {
            "event_id": row["event_id"], "event_name": row["event_name"], "pixel_id": self.pixel_id,
            "source": "webhook", "status": "pending", "event_time": row["event_time"], "attempts": 0,
            "run_id": row["run_id"], "first_attempt_at": now,
        }).rowcount
        if inserted:
            return "queued"
        e = capi_events
        status = conn.execute(
            select(e.c.status).where(e.c.event_id == row["event_id"], e.c.event_name == row["event_name"])
        ).scalar()
        return f"already_in_ledger:{status}"


@dataclass
class _Delivery:
    """A Stripe delivery on its way to the ledger: what it is, and its hashed conversion once made."""

    event_id: str
    kind: str
    record: dict  # its `stripe_webhook_events` row
    conversion: dict | None = None
    ignored: str | None = None
    problem: stripe_source.RecordProblem | None = None
    row: dict | None = None
    failure: Exception | None = None


def _prepare(event) -> _Delivery:
    """Check a delivery and read its conversion (clear customer fields), before any hashing."""
    event_id, kind, obj = _check_event(event)
    record = {
        "event_id": event_id, "type": kind, "livemode": event.get("livemode"), "object_id": obj.get("id"),
        "created": event.get("created") if isinstance(event.get("created"), int) else None,
    }
    try:
        conversion, ignored = conversion_from_event(event)
    except stripe_source.RecordProblem as problem:
        return _Delivery(event_id, kind, record, problem=problem)
    return _Delivery(event_id, kind, record, conversion=conversion, ignored=ignored)


def _or_exception(function, *args):
    try:
        return function(*args)
    except Exception as exc:  # the delivery it belongs to fails alone (a 500); the others go on
        return exc


def _key(row: dict | None) -> tuple[str, str] | tuple[()]:
    return (row["event_name"], row["event_id"]) if row else ()


def _check_event(event) -> tuple[str, str, dict]:
    if not isinstance(event, dict):
        raise BadRequest("the body is not a JSON object")
    event_id, kind = event.get("id"), event.get("type")
    obj = (event.get("data") or {}).get("object") if isinstance(event.get("data"), dict) else None
    if event.get("object") != "event" or not isinstance(event_id, str) or not event_id:
        raise BadRequest("the body is not a Stripe event (no object 'event' with an id)")
    if not isinstance(kind, str) or not isinstance(obj, dict):
        raise BadRequest(f"event {event_id} has no type or no data.object")
    return event_id, kind, obj


def _str_list(body: dict, key: str) -> list[str]:
    value = body.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest(f"{key} must be a list of strings")
    return list(value)


def _schedule_conversion(body) -> dict:
    if not isinstance(body, dict):
        raise BadRequest("the body is not a JSON object")
    booking_id = body.get("booking_id")
    if not isinstance(booking_id, str) or not booking_id.strip():
        raise BadRequest("booking_id is required: the id of the confirmed booking, as the Pixel knows it")
    event_time = body.get("event_time")
    if isinstance(event_time, bool) or not isinstance(event_time, int):
        raise BadRequest(f"booking {booking_id}: event_time must be unix seconds (an integer)")
    currency = body.get("currency") or "cad"
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
        raise BadRequest(f"booking {booking_id}: currency {currency!r} is not an ISO 4217 code")
    amount = body.get("amount_minor") or 0
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
        raise BadRequest(f"booking {booking_id}: amount_minor must be a non-negative integer (minor units)")
    customer = body.get("customer") or {}
    if not isinstance(customer, dict):
        raise BadRequest(f"booking {booking_id}: customer must be an object")
    tracking = {k: (body.get(k) or None) for k in stripe_source.TRACKING_KEYS}
    action_source = "website" if tracking["client_user_agent"] and tracking["event_source_url"] else "app"
    return {
        "event_id": events.event_id_for(events.SCHEDULE, booking_id.strip()),
        "event_name": events.SCHEDULE,
        "object_type": "booking",
        "customer_id": body.get("customer_id") or None,
        "livemode": True,
        "status": "confirmed",
        "payment_status": None,
        "event_time": event_time,
        "currency": currency.lower(),
        "amount_minor": amount,
        "amount_refunded_minor": 0,
        "action_source": action_source,
        **tracking,
        "clear": {**{k: customer.get(k) for k in CLEAR_KEYS}, "external_id": body.get("customer_id") or None},
    }
