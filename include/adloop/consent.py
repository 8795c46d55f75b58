"""The one consent list: customers who declined tracking, stored hashed.

A customer is recorded once, by the SHA-256 of their normalized email (Meta's `em` rule) or by
their Stripe customer id, in `consent_opt_outs`. Every path that sends to Meta reads the same
table: the real-time receiver before it writes or sends anything, the nightly plan (an
`opted_out` exclusion in its SQL), and the audience sync (opted-out people are removed from
every audience). Clear emails are hashed here and never stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import and_, exists, or_, select

from adloop.warehouse import upsert_rows
from adloop.warehouse.schema import consent_opt_outs

KEY_TYPES = ("em", "customer_id")


def opt_out_rows(
    *,
    emails: Iterable[str] = (),
    hashed_emails: Iterable[str] = (),
    customer_ids: Iterable[str] = (),
    source: str,
) -> list[dict]:
    """Rows for `consent_opt_outs`. Raises ValueError, naming the key but not the value, for an
    email that is not an email or a hash that is not SHA-256 hex."""
    from adloop import identity

    now = datetime.now(UTC)
    keys: dict[tuple[str, str], None] = {}
    for email in emails:
        hashed = identity.hash_one("em", email)
        if hashed:
            keys[("em", hashed)] = None
    for hashed in hashed_emails:
        if not identity.is_hashed(hashed):
            raise ValueError("em: expected the SHA-256 of a normalized email (64 hex characters)")
        keys[("em", hashed.strip().lower())] = None
    for customer_id in customer_ids:
        if customer_id and customer_id.strip():
            keys[("customer_id", customer_id.strip())] = None
    return [
        {"key_type": kind, "key_value": value, "source": source, "recorded_at": now} for kind, value in keys
    ]


def record(conn, rows: list[dict]) -> int:
    """Insert opt-outs; an opt-out already recorded keeps its first date."""
    return upsert_rows(conn, consent_opt_outs, rows, update=())


def record_opt_outs(warehouse_url: str, *, emails: Iterable[str] = (), customer_ids: Iterable[str] = (),
                    source: str) -> int:
    """Hash and record opt-outs in the warehouse at `warehouse_url`; returns how many were new or kept."""
    from adloop.warehouse import connect, ensure_schema

    rows = opt_out_rows(emails=emails, customer_ids=customer_ids, source=source)
    engine = connect(warehouse_url)
    ensure_schema(engine)
    with engine.begin() as conn:
        return record(conn, rows)


def is_opted_out(conn, *, em: str | None, customer_id: str | None) -> bool:
    o = consent_opt_outs
    keys = []
    if em:
        keys.append(and_(o.c.key_type == "em", o.c.key_value == em))
    if customer_id:
        keys.append(and_(o.c.key_type == "customer_id", o.c.key_value == customer_id))
    if not keys:
        return False
    return bool(conn.execute(select(exists().where(or_(*keys)))).scalar())
