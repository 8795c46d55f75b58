"""Webhook deliveries from the Stripe emulator, signed the way Stripe signs them.

For stored objects the emulator builds the events Stripe would send (reference/stripe.md §2.1):

- a complete Checkout Session: `checkout.session.completed`; when it was paid with a delayed
  method (`acss_debit`) the completed event carries `payment_status: "unpaid"` and
  `checkout.session.async_payment_succeeded` (paid) or `..._failed` follows;
- a paid invoice: `invoice.paid` (first invoices and renewals alike).

Each event is POSTed to the configured endpoint with
`Stripe-Signature: t=<now>,v1=<hex HMAC-SHA256(secret, f"{t}.{body}")>`, computed here from
Stripe's documentation (the sandbox shares no code with adloop's verifier). To exercise the
receiver, a share of events can be dropped (never delivered, as when Stripe gives up on an
endpoint that is down), delivered twice (Stripe delivers at least once), or delayed. Which events
get which fate is drawn from `seed` and the event id, so a run can be repeated.

Control routes on the Stripe emulator:

    POST   /_sandbox/webhooks/endpoint   {"url", "secret", "drop_share", "duplicate_share",
                                          "delay_share", "delay_seconds", "seed", "max_attempts",
                                          "deliver_on_load"}
    DELETE /_sandbox/webhooks/endpoint
    POST   /_sandbox/webhooks/deliver    {"object_ids": [...]} or {"created": {"gte", "lt"}}:
                                          deliver the events of stored objects, answer with a report
    GET    /_sandbox/webhooks/deliveries what was delivered, dropped, duplicated, with HTTP statuses

With `deliver_on_load`, objects loaded through `POST /_sandbox/objects` are delivered at once,
in the background, as Stripe would announce them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from typing import Any

from adloop.sandbox.web import App, Request, Response

log = logging.getLogger(__name__)

API_VERSION = "2026-10-28.endive"
DELAYED_METHODS = ("acss_debit",)
USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"


@dataclass
class Endpoint:
    url: str
    secret: str = field(repr=False)
    drop_share: float = 0.0
    duplicate_share: float = 0.0
    delay_share: float = 0.0
    delay_seconds: float = 1.0
    seed: int = 0
    max_attempts: int = 1  # more: retry a non-2xx answer, a little later
    retry_seconds: float = 0.2
    timeout_seconds: float = 10.0
    deliver_on_load: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Endpoint:
        if not isinstance(data, dict) or not data.get("url") or not data.get("secret"):
            raise ValueError("a webhook endpoint needs a url and a secret")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown endpoint field(s) {unknown}; known: {sorted(known)}")
        endpoint = cls(**data)
        for name in ("drop_share", "duplicate_share", "delay_share"):
            if not 0.0 <= float(getattr(endpoint, name)) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if int(endpoint.max_attempts) < 1:
            raise ValueError("max_attempts must be at least 1")
        return endpoint


def signature_header(payload: bytes, secret: str, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def events_for(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The webhook events Stripe sends about one object, in the order it sends them."""
    kind = obj.get("object")
    if kind == "checkout.session" and obj.get("status") == "complete":
        delayed = set(obj.get("payment_method_types") or ()) & set(DELAYED_METHODS)
        if not delayed:
            return [_event("checkout.session.completed", obj)]
        completed = dict(obj, payment_status="unpaid")
        outcome = "succeeded" if obj.get("payment_status") == "paid" else "failed"
        return [_event("checkout.session.completed", completed),
                _event(f"checkout.session.async_payment_{outcome}", obj)]
    if kind == "invoice" and obj.get("status") == "paid":
        return [_event("invoice.paid", obj)]
    return []


def _event(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    digest = hashlib.sha256(f"{kind}:{obj['id']}".encode()).hexdigest()[:24]
    return {
        "id": f"evt_1{digest}",
        "object": "event",
        "api_version": API_VERSION,
        "created": int(obj.get("created") or 0),
        "data": {"object": obj},
        "livemode": bool(obj.get("livemode")),
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": kind,
    }


class StripeWebhooks:
    """The webhook endpoint of the Stripe emulator and its delivery log."""

    def __init__(self, store) -> None:
        self.store = store
        self.endpoint: Endpoint | None = None
        self._log: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def register(self, app: App) -> None:
        app.add_control_route("POST", "webhooks/endpoint", self._configure)
        app.add_control_route("DELETE", "webhooks/endpoint", self._remove)
        app.add_control_route("POST", "webhooks/deliver", self._deliver_route)
        app.add_control_route("GET", "webhooks/deliveries", self._deliveries)

    # -- delivering ----------------------------------------------------------------------------

    def objects_loaded(self, objects: list[dict[str, Any]]) -> None:
        endpoint = self.endpoint
        if endpoint is not None and endpoint.deliver_on_load:
            threading.Thread(target=self.deliver, args=(objects, endpoint), daemon=True,
                             name="sandbox-stripe-webhooks").start()

    def deliver(self, objects: list[dict[str, Any]], endpoint: Endpoint | None = None) -> dict[str, Any]:
        """Deliver the events of these objects (oldest first); returns the report of this call."""
        endpoint = endpoint or self.endpoint
        if endpoint is None:
            raise ValueError("no webhook endpoint is configured: POST /_sandbox/webhooks/endpoint first")
        schedule = []
        now = time.monotonic()
        for obj in sorted(objects, key=lambda o: (o.get("created") or 0, o.get("id") or "")):
            for event in events_for(obj):
                rng = random.Random(f"{endpoint.seed}:{event['id']}")
                drop, duplicate, delay = rng.random(), rng.random(), rng.random()
                fate = "dropped" if drop < endpoint.drop_share else "delivered"
                copies = 2 if fate == "delivered" and duplicate < endpoint.duplicate_share else 1
                due = now + (endpoint.delay_seconds if delay < endpoint.delay_share else 0.0)
                record = {"event_id": event["id"], "type": event["type"], "object_id": obj["id"], "fate": fate,
                          "duplicated": copies == 2, "delayed": due > now, "statuses": []}
                schedule.append((due, len(schedule), event, copies, record))
        schedule.sort(key=lambda item: (item[0], item[1]))

        for due, _, event, copies, record in schedule:
            if record["fate"] == "delivered":
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                for _ in range(copies):
                    record["statuses"].append(self._post(endpoint, event))
        records = [item[4] for item in schedule]
        with self._lock:
            self._log.extend(records)
        return _summary(records)

    def _post(self, endpoint: Endpoint, event: dict[str, Any]) -> int:
        payload = json.dumps(event, separators=(",", ":")).encode()
        status = 0
        for attempt in range(1, endpoint.max_attempts + 1):
            header = signature_header(payload, endpoint.secret, int(time.time()))
            request = urllib.request.Request(endpoint.url, data=payload, method="POST", headers={
                "Content-Type": "application/json; charset=utf-8", "Stripe-Signature": header,
                "User-Agent": USER_AGENT})
            try:
                with urllib.request.urlopen(request, timeout=endpoint.timeout_seconds) as response:
                    status = response.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except OSError as exc:
                log.info("sandbox stripe: delivery of %s failed: %s", event["id"], exc)
                status = 0
            if 200 <= status < 300 or attempt == endpoint.max_attempts:
                return status
            time.sleep(endpoint.retry_seconds)
        return status

    # -- control routes ------------------------------------------------------------------------

    def _configure(self, request: Request) -> Response:
        try:
            self.endpoint = Endpoint.from_dict(request.json())
        except (TypeError, ValueError) as exc:
            return Response.json({"error": str(exc)}, 400)
        shown = asdict(self.endpoint)
        shown.pop("secret")
        return Response.json(shown, 201)

    def _remove(self, request: Request) -> Response:
        self.endpoint = None
        return Response.json({"removed": True})

    def _deliver_route(self, request: Request) -> Response:
        body = request.json() or {}
        if self.endpoint is None:
            return Response.json({"error": "no webhook endpoint is configured"}, 400)
        if body.get("object_ids"):
            objects = list(self.store.get_stripe_objects(body["object_ids"]).values())
        else:
            objects = []
            for kind in ("checkout.session", "invoice"):
                objects += self._stored(kind, body.get("created") or {})
        return Response.json(self.deliver(objects))

    def _stored(self, kind: str, created: dict[str, int]) -> list[dict[str, Any]]:
        where, args = ["object = ?"], [kind]
        for key, op in (("gte", ">="), ("gt", ">"), ("lt", "<"), ("lte", "<=")):
            if key in created:
                where.append(f"created {op} ?")
                args.append(int(created[key]))
        with self.store.connection() as conn:
            rows = conn.execute(f"SELECT data FROM stripe_objects WHERE {' AND '.join(where)}", args)
            return [json.loads(r[0]) for r in rows]

    def _deliveries(self, request: Request) -> Response:
        with self._lock:
            records = list(self._log)
        return Response.json(_summary(records))


def _summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "events": len(records),
        "delivered": sum(r["fate"] == "delivered" for r in records),
        "dropped": sum(r["fate"] == "dropped" for r in records),
        "duplicated": sum(r["duplicated"] for r in records),
        "delayed": sum(r["delayed"] and r["fate"] == "delivered" for r in records),
        "not_acknowledged": sum(any(not 200 <= s < 300 for s in r["statuses"]) for r in records),
        "deliveries": records,
    }
