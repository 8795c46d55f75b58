from __future__ import annotations

from decimal import Decimal

import pytest

from adloop import events


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (2500, "cad", Decimal("25.00")),
        (1999, "CAD", Decimal("19.99")),
        (1500, "jpy", Decimal("1500")),
        (25000, "krw", Decimal("25000")),
        (1234, "kwd", Decimal("1.234")),
        (0, "usd", Decimal("0")),
    ],
)
def test_minor_units_become_major_units(amount, currency, expected):
    assert events.to_major_units(amount, currency) == expected


def test_event_id_is_the_business_object():
    assert events.event_id_for("Purchase", "cs_live_abc") == "cs_live_abc"
    assert events.event_id_for("Subscribe", "sub_123") == "sub_123"


@pytest.mark.parametrize(("name", "obj"), [("Refund", "re_1"), ("Purchase", ""), ("Purchase", None)])
def test_event_id_refuses_what_it_cannot_name(name, obj):
    with pytest.raises(ValueError):
        events.event_id_for(name, obj)
