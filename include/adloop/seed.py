"""Writing a generated business into the sandbox and the warehouse (demo and tests only).

The generator (adloop.sandbox.generator) invents the studio; this module plays the parts of the
world around adloop: Stripe holds the objects, the real-time webhook has already sent most of the
conversions (its ledger rows), and some customers have opted out of tracking.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from adloop import consent
from adloop.warehouse import connect, ensure_schema, upsert_rows
from adloop.warehouse.schema import capi_events

log = logging.getLogger(__name__)


def seed_business(business, *, sandbox_state, warehouse_url: str, pixel_id: str, app_db: str | None = None) -> dict:
    """Stripe objects and the ad account's delivery into the sandbox; the webhook's ledger and the
    opt-outs into the warehouse; and, given a path, the app's own database of users and bookings."""
    from adloop.sandbox import meta_insights
    from adloop.sandbox.app_data import write_app_db
    from adloop.sandbox.store import SandboxStore

    store = SandboxStore(sandbox_state)
    objects = store.insert_stripe_objects(business.stripe_objects())
    meta_insights.seed_business(store, business)
    if app_db:
        write_app_db(business, app_db)

    engine = connect(warehouse_url)
    ensure_schema(engine)
    sent = 0
    chunk: list[dict] = []
    with engine.begin() as conn:
        for rec in business.webhook_ledger():
            sent_at = datetime.fromtimestamp(rec["sent_at"], UTC) if rec.get("sent_at") else None
            chunk.append({
                "event_id": rec["event_id"], "event_name": rec["event_name"], "pixel_id": pixel_id,
                "source": "webhook", "status": "sent", "event_time": rec["event_time"], "attempts": 1,
                "first_attempt_at": sent_at, "last_attempt_at": sent_at, "sent_at": sent_at,
            })
            if len(chunk) >= 10_000:
                sent += upsert_rows(conn, capi_events, chunk, update=())
                chunk = []
        sent += upsert_rows(conn, capi_events, chunk, update=())
    opted_out = consent.record_opt_outs(warehouse_url, emails=business.opt_out_emails(), source="demo generator")
    log.info("seed: %s Stripe objects, %s conversions already sent by the webhook, %s opt-outs",
             objects, sent, opted_out)
    return {"stripe_objects": objects, "webhook_sent": sent, "opt_outs": opted_out}
