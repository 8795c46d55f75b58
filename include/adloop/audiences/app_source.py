"""Land the app's users, bookings and memberships in the warehouse, hashing contact details on the way.

The app database is reached through a SQLAlchemy URL (the `app_db` Connection). By default its
tables are read as `users`, `bookings` and `memberships` (see `QUERIES`); a Connection extra can
give other SELECTs returning the same columns. Each extraction is a full snapshot: rows the app no
longer has are deleted from the warehouse copy. Emails, phones, names and addresses are hashed
chunk by chunk as they are read and the clear values are dropped with the chunk.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime

from sqlalchemy import delete, text

from adloop.warehouse import connect, ensure_schema, upsert_rows
from adloop.warehouse.audience_schema import MEMBER_KEYS, app_bookings, app_memberships, app_users

log = logging.getLogger(__name__)

CHUNK_ROWS = 20_000

QUERIES = {
    "users": "SELECT user_id, email, phone, first_name, last_name, city, state, postal_code, country, "
    "stripe_customer_id, created_at FROM users",
    "bookings": "SELECT booking_id, user_id, status, booked_at, amount_minor, currency FROM bookings",
    "memberships": "SELECT membership_id, user_id, plan, status, started_at, ended_at FROM memberships",
}

# App column -> identity input column (identity.hash_frame's names).
_CONTACT_COLUMNS = {
    "email": "email",
    "phone": "phone",
    "first_name": "first_name",
    "last_name": "last_name",
    "city": "city",
    "state": "state",
    "postal_code": "zip",
    "country": "country",
}


def extract_app_data(
    warehouse_url: str, app_db_url: str, *, default_country: str, queries: Mapping[str, str] | None = None
) -> dict:
    """Snapshot the app's users (hashed), bookings and memberships into the warehouse; counts only."""
    queries = {**QUERIES, **(queries or {})}
    engine = connect(warehouse_url)
    ensure_schema(engine)
    source = connect(app_db_url)
    now = datetime.now(UTC).replace(microsecond=0)

    counts = {"users": 0, "users_with_hash_errors": 0, "bookings": 0, "memberships": 0}
    with source.connect() as app:
        rows = app.execution_options(stream_results=True, yield_per=CHUNK_ROWS).execute(
            text(queries["users"])
        )
        for chunk in rows.mappings().partitions(CHUNK_ROWS):
            landed, with_errors = _land_users(engine, chunk, now, default_country)
            counts["users"] += landed
            counts["users_with_hash_errors"] += with_errors
        for table, name in ((app_bookings, "bookings"), (app_memberships, "memberships")):
            rows = app.execution_options(stream_results=True, yield_per=CHUNK_ROWS).execute(
                text(queries[name])
            )
            for chunk in rows.mappings().partitions(CHUNK_ROWS):
                records = [{**dict(r), "extracted_at": now} for r in chunk]
                with engine.begin() as conn:
                    counts[name] += upsert_rows(conn, table, records)

    with engine.begin() as conn:
        for table in (app_users, app_bookings, app_memberships):
            conn.execute(delete(table).where(table.c.extracted_at < now))
    log.info(
        "app data: %s users (%s with contact details that could not be hashed), %s bookings, %s memberships",
        counts["users"],
        counts["users_with_hash_errors"],
        counts["bookings"],
        counts["memberships"],
    )
    return counts


def _land_users(engine, chunk, now: datetime, default_country: str) -> tuple[int, int]:
    import pandas as pd

    from adloop import identity

    frame = pd.DataFrame([{_CONTACT_COLUMNS[k]: r[k] for k in _CONTACT_COLUMNS} for r in chunk], dtype=object)
    hashed = identity.hash_frame(frame, default_country=default_country)
    records = []
    errors = 0
    for row, keys in zip(chunk, hashed.to_dict("records"), strict=True):
        record = {key: keys[key] if isinstance(keys[key], str) and keys[key] else None for key in MEMBER_KEYS}
        record.update(
            user_id=str(row["user_id"]),
            stripe_customer_id=row["stripe_customer_id"],
            hash_errors=keys["errors"] or None,
            signed_up_at=int(row["created_at"]) if row["created_at"] is not None else None,
            normalization_version=identity.NORMALIZATION_VERSION,
            extracted_at=now,
        )
        errors += bool(keys["errors"])
        records.append(record)
    with engine.begin() as conn:
        upsert_rows(conn, app_users, records)
    return len(records), errors
