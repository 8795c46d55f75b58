"""Helpers of the receiver tests: signed Stripe events from the generated studio, and a handle on a
running receiver (its HTTP client, its ledger, what the Meta emulator received)."""

from __future__ import annotations

import copy
import json
import time

STRIPE_SECRET = "whsec_test_adloop_receiver"
APP_SECRET = "app_secret_for_tests"


def pick(objects, **wanted) -> dict:
    """The first object with these fields (a callable value is a predicate), deep-copied."""
    for obj in objects:
        if all(v(obj.get(k)) if callable(v) else obj.get(k) == v for k, v in wanted.items()):
            return copy.deepcopy(obj)
    raise AssertionError(f"no generated object with {wanted}")


def event(kind: str, obj: dict, event_id: str | None = None) -> dict:
    return {
        "id": event_id or f"evt_{kind.replace('.', '_')}_{obj['id']}",
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": int(time.time()),
        "livemode": obj.get("livemode", True),
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": kind,
        "data": {"object": obj},
    }


class Receiver:
    def __init__(self, client, app, sandbox, warehouse_url: str):
        self.client, self.app, self.sandbox, self.warehouse_url = client, app, sandbox, warehouse_url

    @property
    def worker(self):
        return self.app.state.worker

    def post_event(self, evt: dict, *, secret: str = STRIPE_SECRET, timestamp: int | None = None,
                   body: bytes | None = None, header: str | None = None):
        from adloop.webhook import signatures

        body = body if body is not None else json.dumps(evt).encode()
        if header is None:
            header = signatures.sign(body, secret, timestamp=timestamp)
        return self.client.post("/stripe/webhook", content=body,
                                headers={"Stripe-Signature": header, "Content-Type": "application/json"})

    def post_app(self, path: str, payload: dict, *, secret: str = APP_SECRET):
        from adloop.webhook import signatures

        body = json.dumps(payload).encode()
        return self.client.post(path, content=body, headers={"Adloop-Signature": signatures.sign(body, secret)})

    def settle(self) -> None:
        assert self.worker.wait_idle(15), "the CAPI sender did not finish"

    def ledger(self) -> dict[tuple[str, str], dict]:
        from sqlalchemy import select

        from adloop.warehouse import connect
        from adloop.warehouse.schema import capi_events

        with connect(self.warehouse_url).connect() as conn:
            return {(r.event_name, r.event_id): dict(r._mapping) for r in conn.execute(select(capi_events))}

    def table(self, table) -> list[dict]:
        from sqlalchemy import select

        from adloop.warehouse import connect

        with connect(self.warehouse_url).connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(table))]

    def meta_events(self) -> list[dict]:
        return self.sandbox.client().received_events(limit=10_000)
