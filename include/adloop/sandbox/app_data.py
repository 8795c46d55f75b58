"""The studio app's own database, as the generated business would have filled it (demo and tests).

The app keeps its users (everyone who signed up: leads, bookers and members, with the contact
details they typed, in clear, as an app database holds them), their class bookings and their
memberships. `write_app_db` derives all three from a generated `Business` through its public
stream of Stripe objects, and writes them to a SQLite file in the layout adloop's `app_db`
extraction reads by default:

    users(user_id, email, phone, first_name, last_name, city, state, postal_code, country,
          stripe_customer_id, created_at)
    bookings(booking_id, user_id, status, booked_at, amount_minor, currency)
    memberships(membership_id, user_id, plan, status, started_at, ended_at)

Times are unix seconds. A booking is `paid`, `pending` (a delayed payment not settled yet) or
`abandoned` (Checkout left unpaid). Test-mode customers are QA accounts and are left out.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    user_id TEXT PRIMARY KEY,
    email TEXT,
    phone TEXT,
    first_name TEXT,
    last_name TEXT,
    city TEXT,
    state TEXT,
    postal_code TEXT,
    country TEXT,
    stripe_customer_id TEXT,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS bookings (
    booking_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    status TEXT NOT NULL,
    booked_at INTEGER NOT NULL,
    amount_minor INTEGER,
    currency TEXT
);
CREATE TABLE IF NOT EXISTS memberships (
    membership_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    plan TEXT,
    status TEXT NOT NULL,
    started_at INTEGER,
    ended_at INTEGER
);
"""

_CHUNK = 5_000


def _user(customer: dict) -> tuple:
    name = (customer.get("name") or "").strip()
    first, _, last = name.partition(" ")
    address = customer.get("address") or {}
    user_id = (customer.get("metadata") or {}).get("studio_user_id") or customer["id"]
    return (
        user_id,
        customer.get("email"),
        customer.get("phone"),
        first or None,
        last.strip() or None,
        address.get("city"),
        address.get("state"),
        address.get("postal_code"),
        address.get("country"),
        customer["id"],
        int(customer["created"]),
    )


def _booking(session: dict, user_id: str) -> tuple | None:
    booking_id = (session.get("metadata") or {}).get("booking_id")
    if session.get("mode") != "payment" or not booking_id:
        return None
    if session.get("payment_status") in ("paid", "no_payment_required"):
        status = "paid"
    elif session.get("status") == "complete":
        status = "pending"
    else:
        status = "abandoned"
    return (
        booking_id,
        user_id,
        status,
        int(session["created"]),
        session.get("amount_total"),
        session.get("currency"),
    )


def _membership(subscription: dict, user_id: str) -> tuple:
    items = (subscription.get("items") or {}).get("data") or [{}]
    plan = ((items[0].get("price") or {}).get("product")) if items else None
    return (
        subscription["id"],
        user_id,
        plan,
        subscription.get("status") or "active",
        subscription.get("start_date"),
        subscription.get("ended_at"),
    )


def app_rows(objects: Iterable[dict]) -> Iterable[tuple[str, tuple]]:
    """("users" | "bookings" | "memberships", row) for each app record in a stream of Stripe objects."""
    users: dict[str, str] = {}
    for obj in objects:
        kind = obj.get("object")
        if not obj.get("livemode"):
            continue
        if kind == "customer":
            row = _user(obj)
            users[obj["id"]] = row[0]
            yield "users", row
        elif kind == "checkout.session" and obj.get("customer") in users:
            booking = _booking(obj, users[obj["customer"]])
            if booking is not None:
                yield "bookings", booking
        elif kind == "subscription" and obj.get("customer") in users:
            yield "memberships", _membership(obj, users[obj["customer"]])


def write_app_db(business, path: str | Path) -> dict[str, int]:
    """Write the app's users, bookings and memberships of `business` to the SQLite file at `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    counts = {"users": 0, "bookings": 0, "memberships": 0}
    inserts = {
        "users": "INSERT OR REPLACE INTO users VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        "bookings": "INSERT OR REPLACE INTO bookings VALUES (?,?,?,?,?,?)",
        "memberships": "INSERT OR REPLACE INTO memberships VALUES (?,?,?,?,?,?)",
    }
    conn = sqlite3.connect(path)
    try:
        conn.executescript(SCHEMA)
        pending: dict[str, list[tuple]] = {table: [] for table in inserts}
        for table, row in app_rows(business.stripe_objects()):
            pending[table].append(row)
            counts[table] += 1
            if len(pending[table]) >= _CHUNK:
                conn.executemany(inserts[table], pending[table])
                pending[table] = []
        for table, rows in pending.items():
            conn.executemany(inserts[table], rows)
        conn.commit()
    finally:
        conn.close()
    return counts
