"""Event builders shared by the sandbox tests."""

from __future__ import annotations

import hashlib
import time
from typing import Any

PIXEL_ID = "1234567890"
ACCESS_TOKEN = "sandbox-access-token"


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def capi_event(index: int = 0, **overrides: Any) -> dict[str, Any]:
    """A valid website Purchase as raw CAPI JSON, with pre-hashed customer data."""
    event = {
        "event_name": "Purchase",
        "event_time": int(time.time()) - 3600,
        "event_id": f"cs_test_{index:06d}",
        "action_source": "website",
        "event_source_url": "https://studio.example/checkout/success",
        "user_data": {
            "em": [sha256(f"customer{index}@example.com")],
            "client_user_agent": "Mozilla/5.0 (sandbox test)",
            "client_ip_address": "203.0.113.7",
            "fbp": "fb.1.1596403881668.1116446470",
        },
        "custom_data": {"currency": "cad", "value": 25.0},
    }
    event.update(overrides)
    return event


def sdk_event(index: int = 0, event_time: int | None = None, **overrides: Any):
    """The same Purchase built with the facebook-business SDK objects (which hash emails)."""
    from facebook_business.adobjects.serverside.action_source import ActionSource
    from facebook_business.adobjects.serverside.custom_data import CustomData
    from facebook_business.adobjects.serverside.event import Event
    from facebook_business.adobjects.serverside.user_data import UserData

    fields = {
        "event_name": "Purchase",
        "event_time": event_time if event_time is not None else int(time.time()) - 3600,
        "event_id": f"cs_test_{index:06d}",
        "action_source": ActionSource.WEBSITE,
        "event_source_url": "https://studio.example/checkout/success",
        "user_data": UserData(
            emails=[f"customer{index}@example.com"], client_user_agent="Mozilla/5.0 (sandbox test)"
        ),
        "custom_data": CustomData(currency="cad", value=25.0),
    }
    fields.update(overrides)
    return Event(**fields)


def customer(number: int, created: int, livemode: bool = False) -> dict[str, Any]:
    return {
        "id": f"cus_{number:08d}",
        "object": "customer",
        "created": created,
        "livemode": livemode,
        "email": f"customer{number}@example.com",
        "name": f"Customer {number}",
    }


def checkout_session(
    number: int, created: int, customer_id: str | None = None, status: str = "complete", **extra: Any
) -> dict[str, Any]:
    session = {
        "id": f"cs_test_{number:08d}",
        "object": "checkout.session",
        "created": created,
        "livemode": False,
        "mode": "payment",
        "status": status,
        "payment_status": "paid" if status == "complete" else "unpaid",
        "amount_total": 2500,
        "currency": "cad",
        "customer": customer_id,
        "payment_intent": f"pi_{number:08d}",
        "metadata": {},
    }
    session.update(extra)
    return session
