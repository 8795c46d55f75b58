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


# -- hashing: the row-by-row path (the webhook's few rows) against hash_frame (the backfill's) --

EDMONTON_VALUES = {
    "email": [None, "", "  ", " Zoe@Example.com", "zoë@exämple.ca", "n.okafor0@example.com", "no-at-sign",
              "two@@example.com", "a b@example.com", "a@b", "a@.example.com", "a@example..com", "@example.com",
              "tab\t@example.com", "line\nbreak@example.com", "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"],
    "phone": [None, "", "780-555-0134", "(780) 555 0134", "780.555.0188", "7805550134", "+1 780 555 0134",
              "1-780-555-0134", "001 780 555 0134", "011 44 20 7946 0958", "+44 20 7946 0958", "020 7946 0958",
              "780-555-0134 ext. 12", "555-0134", "12", "abc", "+0 123", "０７８０５５５０１３４", "780 555 0134\n",
              "+33 1 23 45 67 89", "06 12 34 56 78", "17805550134", "+999 1234 5678"],
    "first_name": [None, "", "Zoë", "ZOË", "Zoe\u0308", "Mary-Jane", "O'Brien", "  Noah ", "123", "Ève", "李"],
    "last_name": [None, "O'Brien", "De la Cruz", "Nguyễn", "St. John", "--", "Smith Jr."],
    "city": [None, "Edmonton", "Edmonton ", "St. Albert", "Montréal", "Sherwood Park", "T5J", "123", "Québec City"],
    "state": [None, "", "AB", "ab", "Alberta", "Québec", "Quebec", "ON", "Ont.", "TX", "Texas", "Zz", "Bavaria",
              "NSW", "1"],
    "zip": [None, "", "T5J 0N3", "t5j-0n3", "T5J0N3", "12345", "12345-6789", "1234", "SW1A 1AA", "75008",
            "T5J 0N", "ABC!"],
    "country": [None, "", "CA", "ca", "Canada", "US", "USA", "United States", "GB", "UK", "FR", "IT", "Narnia",
                "c.a.", "DE"],
    "external_id": [None, "", "cus_00000omUiHNsK4", " cus_ABC ", "CUS_abc"],
}


def _varied_rows(n: int, seed: int = 5) -> list[dict]:
    import random

    rng = random.Random(seed)
    rows = [{key: values[i % len(values)] for key, values in EDMONTON_VALUES.items()}
            for i in range(max(len(v) for v in EDMONTON_VALUES.values()))]
    rows += [{key: rng.choice(values) for key, values in EDMONTON_VALUES.items()} for _ in range(n)]
    return rows


def _frame_rows(clear: list[dict], default_country: str) -> list[dict]:
    import pandas as pd

    from adloop import identity

    records = identity.hash_frame(pd.DataFrame(clear), default_country=default_country).to_dict("records")
    return [{k: (v if isinstance(v, str) else None) for k, v in r.items()} for r in records]


@pytest.mark.parametrize("default_country", ["CA", "GB"])
def test_row_by_row_hashing_is_hash_frame_exactly(default_country):
    from adloop.stripe_source import _hash_clear_rows

    clear = _varied_rows(400)
    by_row = [_hash_clear_rows([row], default_country)[0] for row in clear]

    assert by_row == _frame_rows(clear, default_country)
    assert any(r["errors"] for r in by_row) and any(r["ph"] for r in by_row)  # both kinds were exercised


def test_row_by_row_hashing_leaves_what_it_does_not_know_to_hash_frame():
    from adloop.stripe_source import _hash_clear_rows

    assert _hash_clear_rows([{"email": "a@b.co", "zip": 12345}], "CA") is None  # a number, not text
    assert _hash_clear_rows([{"email": "a@b.co", "shoe_size": "9"}], "CA") is None  # a column it would ignore
    assert _hash_clear_rows([{"email": "\ud800@b.co"}], "CA") is None  # a lone surrogate
    with pytest.raises(ValueError, match="not an ISO 3166-1 alpha-2 code"):
        _hash_clear_rows([{"email": "a@b.co"}], "Canada")


def test_few_and_many_conversions_hash_alike(monkeypatch):
    from adloop import stripe_source

    clear = _varied_rows(40)
    conversions = [dict(purchase_from_session(session(id=f"cs_live_{i}"), {}), clear=c) for i, c in enumerate(clear)]

    def hashed(max_row_by_row: int) -> list[dict]:
        monkeypatch.setattr(stripe_source, "ROW_BY_ROW_MAX", max_row_by_row)
        rows = []
        for start in range(0, len(conversions), 8):
            chunk = [dict(c) for c in conversions[start:start + 8]]
            rows += stripe_source.hash_conversions(chunk, run_id="r", default_country="CA")
        return [{k: v for k, v in r.items() if k != "extracted_at"} for r in rows]

    assert hashed(16) == hashed(0)
