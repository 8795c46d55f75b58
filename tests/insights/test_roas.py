"""ROAS arithmetic on hand-built cases, and the kill-or-scale rules."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from adloop.roas import build
from adloop.roas.build import Targets, decide
from adloop.warehouse import connect
from adloop.warehouse.insights_schema import ad_insights_daily, ad_recommendations, meta_ads, roas_daily
from adloop.warehouse.schema import stripe_conversions

TZ = ZoneInfo("America/Edmonton")
DAY1, DAY2 = date(2026, 11, 2), date(2026, 11, 3)
NOW = datetime(2026, 11, 10, tzinfo=UTC)
FIGURES = dict(spend=Decimal(0), impressions=0, clicks=0, reach=0, purchases=0, purchase_value=Decimal(0),
               bookings=0, signups=0, subscribes=0, subscribe_value=Decimal(0))


def ad(ad_id, adset="as1", campaign="c1"):
    return {"ad_id": ad_id, "account_id": "act_1", "ad_name": f"Ad {ad_id}", "adset_id": adset,
            "adset_name": f"Set {adset}", "campaign_id": campaign, "campaign_name": f"Campaign {campaign}",
            "currency": "CAD", "timezone_name": "America/Edmonton", "last_seen": DAY2}


def day(ad_id, when, **figures):
    row = {"account_id": "act_1", "ad_id": ad_id, "date_start": when, "adset_id": "as1", "campaign_id": "c1",
           "currency": "CAD", **FIGURES, "fingerprint": "x", "versions": 1, "first_fetched_at": NOW,
           "fetched_at": NOW, "run_id": "r"}
    row.update({k: Decimal(str(v)) if isinstance(v, float) else v for k, v in figures.items()})
    return row


def paid(event_id, ad_id, when: datetime, amount_minor, refunded_minor=0, currency="cad", name="Purchase",
         livemode=True):
    return {"event_id": event_id, "event_name": name, "object_type": "checkout.session", "livemode": livemode,
            "event_time": int(when.timestamp()), "currency": currency, "amount_minor": amount_minor,
            "value": Decimal(amount_minor) / 100, "amount_refunded_minor": refunded_minor, "action_source": "website",
            "ad_id": ad_id, "normalization_version": 1, "run_id": "rec", "extracted_at": NOW}


@pytest.fixture
def roas(warehouse_url):
    engine = connect(warehouse_url)
    with engine.begin() as conn:
        conn.execute(meta_ads.insert(), [ad("A"), ad("B"), ad("C"), ad("D", adset="as2")])
        conn.execute(ad_insights_daily.insert(), [
            # A: a normal day with a refund, and a day with conversions but no spend.
            day("A", DAY1, spend=50.0, bookings=2, signups=1, purchases=2, purchase_value=120.0),
            day("A", DAY2, spend=0.0, purchases=1, purchase_value=40.0),
            # B: refunds larger than revenue were recorded (bad data): never more than the amount paid.
            day("B", DAY1, spend=20.0, bookings=1, purchases=1, purchase_value=30.0),
            # C: spend, nothing came of it.
            day("C", DAY1, spend=30.0, impressions=1000, clicks=12),
            # D: another ad set; pays in a currency that is not the account's.
            day("D", DAY1, spend=10.0, subscribes=1, subscribe_value=169.0),
        ])
        conn.execute(stripe_conversions.insert(), [
            # 23:30 in Edmonton on DAY1 is 06:30 UTC on DAY2: it belongs to DAY1 in the account's time zone.
            paid("cs_a1", "A", datetime(2026, 11, 2, 23, 30, tzinfo=TZ), 10000, refunded_minor=2500),
            paid("cs_a2", "A", datetime(2026, 11, 2, 9, 0, tzinfo=TZ), 4000),
            paid("cs_a3", "A", datetime(2026, 11, 3, 12, 0, tzinfo=TZ), 3900),
            paid("cs_test", "A", datetime(2026, 11, 2, 12, 0, tzinfo=TZ), 99900, livemode=False),
            paid("cs_b1", "B", datetime(2026, 11, 2, 12, 0, tzinfo=TZ), 2500, refunded_minor=9000),
            paid("sub_d1", "D", datetime(2026, 11, 2, 12, 0, tzinfo=TZ), 16900, currency="usd", name="Subscribe"),
            paid("cs_other", None, datetime(2026, 11, 2, 12, 0, tzinfo=TZ), 5000),
        ])
    build.build_roas(warehouse_url)
    with engine.connect() as conn:
        rows = {(r.level, r.object_id, r.day): r._asdict() for r in conn.execute(select(roas_daily))}
    return rows


def test_ad_level_arithmetic(roas):
    a1 = roas[("ad", "A", DAY1)]
    assert float(a1["stripe_revenue"]) == 140.0 and float(a1["stripe_refunds"]) == 25.0
    assert float(a1["stripe_net_revenue"]) == 115.0 and a1["stripe_conversions"] == 2
    assert a1["cost_per_booking"] == pytest.approx(25.0) and a1["cost_per_signup"] == pytest.approx(50.0)
    assert a1["meta_roas"] == pytest.approx(120 / 50) and a1["stripe_roas"] == pytest.approx(115 / 50)


def test_zero_spend_has_no_roas_rather_than_infinity(roas):
    a2 = roas[("ad", "A", DAY2)]
    assert float(a2["spend"]) == 0 and float(a2["stripe_net_revenue"]) == 39.0
    assert a2["meta_roas"] is None and a2["stripe_roas"] is None and a2["cost_per_booking"] is None


def test_refunds_larger_than_revenue_never_make_revenue_negative(roas):
    b1 = roas[("ad", "B", DAY1)]
    assert float(b1["stripe_refunds"]) == 25.0 and float(b1["stripe_net_revenue"]) == 0.0
    assert b1["stripe_roas"] == 0.0


def test_no_conversions(roas):
    c1 = roas[("ad", "C", DAY1)]
    assert c1["stripe_conversions"] == 0 and float(c1["stripe_revenue"]) == 0
    assert c1["cost_per_booking"] is None and c1["cost_per_signup"] is None
    assert c1["meta_roas"] == 0.0 and c1["stripe_roas"] == 0.0


def test_other_currencies_are_counted_not_added(roas):
    d1 = roas[("ad", "D", DAY1)]
    assert d1["stripe_other_currency"] == 1 and float(d1["stripe_revenue"]) == 0
    assert d1["meta_roas"] == pytest.approx(16.9)


def test_rollups_add_up_the_ads(roas):
    adset = roas[("adset", "as1", DAY1)]
    assert float(adset["spend"]) == 100.0 and float(adset["stripe_net_revenue"]) == 115.0
    assert adset["bookings"] == 3 and adset["cost_per_booking"] == pytest.approx(100 / 3)
    campaign = roas[("campaign", "c1", DAY1)]
    assert float(campaign["spend"]) == 110.0 and campaign["adset_id"] is None
    assert campaign["stripe_roas"] == pytest.approx(115 / 110)
    assert ("ad", "A", DAY2) in roas and len([k for k in roas if k[0] == "ad"]) == 5


def test_recommendations_from_the_window(warehouse_url, roas):
    result = build.recommend_ads(warehouse_url, "run", Targets(target_roas=2.0, min_spend=15, window_days=7))
    with connect(warehouse_url).connect() as conn:
        calls = {r.ad_id: r._asdict() for r in conn.execute(select(ad_recommendations))}
    assert result["ads"] == 4 and result["window_end"] == DAY2.isoformat()
    assert calls["A"]["decision"] == "scale"  # (115 + 39) / 50 = 3.08: at least 1.5 x the 2.0 target
    assert calls["A"]["stripe_roas"] == pytest.approx(154 / 50)
    assert calls["B"]["decision"] == "kill" and calls["C"]["decision"] == "kill"
    assert calls["D"]["decision"] == "hold" and "under the 15.00 needed" in calls["D"]["reason"]


@pytest.mark.parametrize(
    ("spend", "roas", "expected"),
    [(50, 5.0, "hold"), (500, 0.5, "kill"), (500, 1.99, "kill"), (500, 2.0, "hold"), (500, 2.99, "hold"),
     (500, 3.0, "scale"), (500, None, "kill")],
)
def test_decide(spend, roas, expected):
    decision, reason = decide(spend, roas, 4.0, Targets(target_roas=2.0, min_spend=100))
    assert decision == expected and reason


def test_targets_are_checked():
    with pytest.raises(ValueError, match="target ROAS"):
        Targets(target_roas=0)
