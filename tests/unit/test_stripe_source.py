from __future__ import annotations

import pytest

from adloop.stripe_source import RecordProblem, Window, purchase_from_session, subscribe_from_invoice


def session(**over):
    s = {
        "id": "cs_live_1", "object": "checkout.session", "mode": "payment", "status": "complete",
        "payment_status": "paid", "amount_total": 2500, "currency": "cad", "created": 1_764_000_000,
        "customer": "cus_1", "livemode": True, "payment_intent": "pi_1",
        "customer_details": {"email": " Zoe@Example.com", "name": "Zoë O'Brien", "phone": "780-555-0134",
                             "address": {"city": "Edmonton", "state": "AB", "postal_code": "T5J 0N3",
                                         "country": "CA"}},
        "metadata": {"fbp": "fb.1.1764000000000.123", "client_user_agent": "Mozilla/5.0",
                     "event_source_url": "https://studio.example/book", "ad_id": "120210000000000001"},
    }
    s.update(over)
    return s


def test_purchase_carries_tracking_and_clear_fields_only_under_clear():
    conv = purchase_from_session(session(), {"pi_1": 500})
    assert conv["event_id"] == "cs_live_1"
    assert conv["event_name"] == "Purchase"
    assert conv["action_source"] == "website"
    assert conv["amount_refunded_minor"] == 500
    assert conv["ad_id"] == "120210000000000001"
    assert conv["clear"]["first_name"] == "Zoë" and conv["clear"]["last_name"] == "O'Brien"
    # Nothing outside "clear" holds the email.
    assert "Zoe@Example.com" not in repr({k: v for k, v in conv.items() if k != "clear"})


def test_purchase_without_user_agent_is_not_a_website_event():
    conv = purchase_from_session(session(metadata={}), {})
    assert conv["action_source"] == "other"


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"currency": ""}, "has currency '', expected an ISO 4217 code"),
        ({"currency": None}, "has currency None"),
        ({"amount_total": -5}, "has amount_total -5"),
        ({"amount_total": "12"}, "has amount_total '12'"),
    ],
)
def test_bad_sessions_name_the_record_and_the_problem(over, message):
    with pytest.raises(RecordProblem) as err:
        purchase_from_session(session(**over), {})
    assert str(err.value).startswith("Checkout Session cs_live_1: ")
    assert message in str(err.value)


def test_subscribe_from_first_invoice():
    invoice = {
        "id": "in_1", "object": "invoice", "billing_reason": "subscription_create", "status": "paid",
        "amount_paid": 9900, "amount_due": 9900, "currency": "cad", "created": 1_764_000_000,
        "status_transitions": {"paid_at": 1_764_000_100}, "customer": "cus_1", "livemode": True,
        "customer_email": "a@b.co", "customer_name": "Ann Lee", "customer_phone": None, "customer_address": None,
        "parent": {"subscription_details": {"subscription": "sub_9"}},
    }
    sub = {"id": "sub_9", "status": "active", "metadata": {"client_user_agent": "UA",
                                                             "event_source_url": "https://s.example/m"}}
    conv = subscribe_from_invoice(invoice, sub)
    assert (conv["event_id"], conv["event_name"], conv["event_time"]) == ("sub_9", "Subscribe", 1_764_000_100)
    assert conv["payment_status"] == "paid" and conv["amount_minor"] == 9900
    assert conv["action_source"] == "website"

    invoice.update(status="open", amount_paid=0)
    unpaid = subscribe_from_invoice(invoice, sub)
    assert unpaid["payment_status"] == "unpaid" and unpaid["amount_minor"] == 9900


def test_window_is_half_open_and_timezone_aware():
    from datetime import UTC, datetime, timedelta

    end = datetime(2026, 12, 3, 10, tzinfo=UTC)
    w = Window.of(end - timedelta(days=7), end)
    assert w.end - w.start == 7 * 86400
    with pytest.raises(ValueError):
        Window.of(end, end)
    with pytest.raises(ValueError):
        Window.of(datetime(2026, 1, 1), datetime(2026, 1, 2))
