"""`roas_daily` and `ad_recommendations`, rebuilt in the warehouse from insights and Stripe.

`roas_daily` has one row per level (`ad`, `adset`, `campaign`), object and day of the ad account's
time zone: what Meta reported (spend, impressions, clicks, bookings = Schedule, signups =
CompleteRegistration, purchases, subscribes, and their values) beside what Stripe says was paid for
conversions whose Checkout Session carried that ad's id (`stripe_conversions.ad_id`): revenue,
refunds and revenue net of refunds. Then cost per booking and per signup, Meta's ROAS (purchase
and subscribe values over spend) and Stripe's (net revenue over spend). A ratio whose denominator
is zero is NULL, never 0 or infinity.

A refund is counted against the conversion it refunds, on the conversion's day, and never for more
than the conversion's amount. Conversions in a currency other than the ad account's are counted in
`stripe_other_currency` and left out of revenue: adloop has no exchange rates.

Known limitation: `stripe_conversions` only holds what reconciliation runs extracted (each night
its 7-day window), so Stripe figures for days no run covered are missing, not zero. The report
names the days Stripe covers.

Both tables are rebuilt whole on each run (delete and insert in one transaction), which keeps the
SQL simple and the result independent of history; at a year of 500 ads that is 180,000 ad rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, select, text

from adloop.warehouse import connect, ensure_schema
from adloop.warehouse.insights_schema import (
    ad_insights_daily,
    ad_recommendations,
    meta_ads,
    roas_daily,
    roas_day_bounds,
)
from adloop.warehouse.schema import reconciliation_runs

log = logging.getLogger(__name__)

DEFAULT_TARGET_ROAS = 2.0
DEFAULT_MIN_SPEND = 100.0
DEFAULT_WINDOW_DAYS = 14
# An ad is scaled when its Stripe ROAS clears the target by this factor, so a lucky week just
# above the target is held rather than given more budget.
SCALE_MARGIN = 1.5

AD_LEVEL_SQL = """
INSERT INTO roas_daily (level, object_id, day, account_id, campaign_id, campaign_name, adset_id, adset_name,
                        ad_id, ad_name, currency, spend, impressions, clicks, bookings, signups, purchases,
                        subscribes, meta_purchase_value, meta_subscribe_value, stripe_conversions, stripe_revenue,
                        stripe_refunds, stripe_net_revenue, stripe_other_currency, built_at)
SELECT 'ad', u.ad_id, u.day, a.account_id, a.campaign_id, a.campaign_name, a.adset_id, a.adset_name,
       u.ad_id, a.ad_name, a.currency,
       sum(u.spend), sum(u.impressions), sum(u.clicks), sum(u.bookings), sum(u.signups), sum(u.purchases),
       sum(u.subscribes), sum(u.purchase_value), sum(u.subscribe_value), sum(u.conversions), sum(u.revenue),
       sum(u.refunds), sum(u.revenue) - sum(u.refunds), sum(u.other_currency), :built_at
FROM (
    SELECT i.ad_id, i.date_start AS day, i.spend, i.impressions, i.clicks, i.bookings, i.signups, i.purchases,
           i.subscribes, i.purchase_value, i.subscribe_value,
           0 AS conversions, 0 AS revenue, 0 AS refunds, 0 AS other_currency
    FROM ad_insights_daily AS i
    UNION ALL
    SELECT c.ad_id, b.day, 0, 0, 0, 0, 0, 0, 0, 0, 0,
           1,
           CASE WHEN lower(c.currency) = lower(b.currency) THEN c.value ELSE 0 END,
           CASE WHEN lower(c.currency) = lower(b.currency) AND c.amount_minor > 0
                THEN c.value * (CASE WHEN c.amount_refunded_minor > c.amount_minor THEN c.amount_minor
                                     ELSE c.amount_refunded_minor END) * 1.0 / c.amount_minor
                ELSE 0 END,
           CASE WHEN lower(c.currency) = lower(b.currency) THEN 0 ELSE 1 END
    FROM stripe_conversions AS c
    JOIN meta_ads AS m ON m.ad_id = c.ad_id
    JOIN roas_day_bounds AS b
      ON b.account_id = m.account_id AND c.event_time >= b.start_ts AND c.event_time < b.end_ts
    WHERE c.livemode
) AS u
JOIN meta_ads AS a ON a.ad_id = u.ad_id
GROUP BY u.ad_id, u.day, a.account_id, a.campaign_id, a.campaign_name, a.adset_id, a.adset_name, a.ad_name,
         a.currency
"""

ROLLUP_SQL = """
INSERT INTO roas_daily (level, object_id, day, account_id, campaign_id, campaign_name, adset_id, adset_name,
                        ad_id, ad_name, currency, spend, impressions, clicks, bookings, signups, purchases,
                        subscribes, meta_purchase_value, meta_subscribe_value, stripe_conversions, stripe_revenue,
                        stripe_refunds, stripe_net_revenue, stripe_other_currency, built_at)
SELECT '{level}', {key}, day, account_id, campaign_id, max(campaign_name), {adset_id}, {adset_name},
       NULL, NULL, max(currency),
       sum(spend), sum(impressions), sum(clicks), sum(bookings), sum(signups), sum(purchases), sum(subscribes),
       sum(meta_purchase_value), sum(meta_subscribe_value), sum(stripe_conversions), sum(stripe_revenue),
       sum(stripe_refunds), sum(stripe_net_revenue), sum(stripe_other_currency), :built_at
FROM roas_daily
WHERE level = 'ad'
GROUP BY {group}
"""

RATIOS_SQL = """
UPDATE roas_daily SET
    cost_per_booking = CASE WHEN bookings > 0 THEN spend * 1.0 / bookings END,
    cost_per_signup = CASE WHEN signups > 0 THEN spend * 1.0 / signups END,
    meta_roas = CASE WHEN spend > 0 THEN (meta_purchase_value + meta_subscribe_value) * 1.0 / spend END,
    stripe_roas = CASE WHEN spend > 0 THEN stripe_net_revenue * 1.0 / spend END
"""


def _now() -> datetime:
    return datetime.now(UTC)


def build_roas(warehouse_url: str) -> dict:
    """Rebuild roas_daily from ad_insights_daily and stripe_conversions."""
    engine = connect(warehouse_url)
    ensure_schema(engine)
    built_at = _now()
    with engine.begin() as conn:
        bounds = _day_bounds(conn)
        conn.execute(delete(roas_day_bounds))
        if bounds:
            conn.execute(roas_day_bounds.insert(), bounds)
        conn.execute(delete(roas_daily))
        conn.execute(text(AD_LEVEL_SQL), {"built_at": built_at})
        conn.execute(text(ROLLUP_SQL.format(level="adset", key="adset_id", adset_id="adset_id",
                                            adset_name="max(adset_name)", group="adset_id, day, account_id, "
                                            "campaign_id")), {"built_at": built_at})
        conn.execute(text(ROLLUP_SQL.format(level="campaign", key="campaign_id", adset_id="NULL", adset_name="NULL",
                                            group="campaign_id, day, account_id")), {"built_at": built_at})
        conn.execute(text(RATIOS_SQL))
        counts = dict(conn.execute(select(roas_daily.c.level, func.count()).group_by(roas_daily.c.level)).all())
    log.info("roas: %s ad days, %s ad set days, %s campaign days over %s account days", counts.get("ad", 0),
             counts.get("adset", 0), counts.get("campaign", 0), len(bounds))
    return {"ad_days": counts.get("ad", 0), "adset_days": counts.get("adset", 0),
            "campaign_days": counts.get("campaign", 0)}


def _first_day_with_stripe_data(conn) -> date | None:
    """The first whole day the reconciliation runs have read Stripe for, if any run has.

    Before it, an ad's Stripe revenue is unknown rather than zero: judging an ad over such days
    would call it a loser for want of data. Runs cover contiguous windows once the nightly schedule
    is on; the day after the earliest window start is the first one surely read in full.
    Known shortcoming: a gap between runs' windows (the DAG paused for over a week) is not seen.
    """
    start = conn.execute(
        select(func.min(reconciliation_runs.c.window_start)).where(reconciliation_runs.c.finished_at.is_not(None))
    ).scalar()
    if start is None:
        return None
    if isinstance(start, str):
        start = datetime.fromisoformat(start)
    return start.date() + timedelta(days=1)


def _day_bounds(conn) -> list[dict]:
    """[start, end) unix seconds of each insights day of each account, in the account's time zone."""
    accounts = conn.execute(
        select(meta_ads.c.account_id, func.max(meta_ads.c.timezone_name), func.max(meta_ads.c.currency))
        .group_by(meta_ads.c.account_id)
    ).all()
    rows = []
    for account_id, timezone_name, currency in accounts:
        first, last = conn.execute(
            select(func.min(ad_insights_daily.c.date_start), func.max(ad_insights_daily.c.date_start))
            .where(ad_insights_daily.c.account_id == account_id)
        ).one()
        if first is None:
            continue
        zone = ZoneInfo(timezone_name or "UTC")
        day = _as_date(first)
        while day <= _as_date(last):
            start = datetime(day.year, day.month, day.day, tzinfo=zone)
            nxt = day + timedelta(days=1)
            end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone)
            rows.append({"account_id": account_id, "day": day, "start_ts": int(start.timestamp()),
                         "end_ts": int(end.timestamp()), "currency": currency})
            day = nxt
    return rows


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


# --- recommendations ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Targets:
    """What the marketer asks of an ad: a Stripe ROAS target and the spend needed before judging it."""

    target_roas: float = DEFAULT_TARGET_ROAS
    min_spend: float = DEFAULT_MIN_SPEND
    window_days: int = DEFAULT_WINDOW_DAYS

    def __post_init__(self) -> None:
        if self.target_roas <= 0:
            raise ValueError(f"target ROAS must be above 0, got {self.target_roas}")
        if self.min_spend < 0:
            raise ValueError(f"minimum spend must not be negative, got {self.min_spend}")
        if self.window_days < 1:
            raise ValueError(f"the window must be at least 1 day, got {self.window_days}")


def decide(spend: float, stripe_roas: float | None, meta_roas: float | None, targets: Targets,
           currency: str = "") -> tuple[str, str]:
    """Kill, scale or hold one ad, and why, in words a marketer reads."""
    money = f"{spend:,.2f} {currency}".strip()
    if spend < targets.min_spend:
        return "hold", f"spent {money}, under the {targets.min_spend:,.2f} needed to judge it"
    roas = stripe_roas or 0.0
    meta = f"; Meta claims {meta_roas:.2f}" if meta_roas is not None else ""
    if roas < targets.target_roas:
        return "kill", f"Stripe ROAS {roas:.2f} on {money} is below the {targets.target_roas:.2f} target{meta}"
    if roas >= targets.target_roas * SCALE_MARGIN:
        return "scale", (f"Stripe ROAS {roas:.2f} on {money} clears the {targets.target_roas:.2f} target by "
                         f"{SCALE_MARGIN:.1f}x or more{meta}")
    return "hold", (f"Stripe ROAS {roas:.2f} on {money} meets the {targets.target_roas:.2f} target, not by "
                    f"{SCALE_MARGIN:.1f}x{meta}")


def recommend_ads(warehouse_url: str, run_id: str, targets: Targets, *, as_of: date | None = None) -> dict:
    """One recommendation per ad over the trailing window ending at `as_of` (default: the last day with data)."""
    engine = connect(warehouse_url)
    r = roas_daily
    with engine.begin() as conn:
        last = as_of or conn.execute(select(func.max(r.c.day)).where(r.c.level == "ad")).scalar()
        conn.execute(delete(ad_recommendations))
        if last is None:
            return {"ads": 0, "kill": 0, "scale": 0, "hold": 0}
        last = _as_date(last)
        first = max(last - timedelta(days=targets.window_days - 1), _first_day_with_stripe_data(conn) or date.min)
        first = min(first, last)
        totals = conn.execute(
            select(r.c.ad_id, r.c.account_id, func.max(r.c.ad_name), func.max(r.c.adset_name),
                   func.max(r.c.campaign_name), func.max(r.c.currency), func.sum(r.c.spend), func.sum(r.c.bookings),
                   func.sum(r.c.signups), func.sum(r.c.meta_purchase_value + r.c.meta_subscribe_value),
                   func.sum(r.c.stripe_net_revenue))
            .where(r.c.level == "ad", r.c.day >= first, r.c.day <= last)
            .group_by(r.c.ad_id, r.c.account_id)
        ).all()
        now = _now()
        rows = []
        for ad_id, account_id, ad_name, adset_name, campaign_name, currency, spend, bookings, signups, meta_value, net \
                in totals:
            spend, meta_value, net = float(spend or 0), float(meta_value or 0), float(net or 0)
            stripe_roas = net / spend if spend > 0 else None
            meta_roas = meta_value / spend if spend > 0 else None
            decision, reason = decide(spend, stripe_roas, meta_roas, targets, currency or "")
            rows.append({
                "ad_id": ad_id, "account_id": account_id, "ad_name": ad_name, "adset_name": adset_name,
                "campaign_name": campaign_name, "currency": currency, "window_start": first, "window_end": last,
                "spend": round(spend, 2), "bookings": int(bookings or 0), "signups": int(signups or 0),
                "meta_value": round(meta_value, 2), "stripe_net_revenue": round(net, 2), "meta_roas": meta_roas,
                "stripe_roas": stripe_roas, "cost_per_booking": spend / bookings if bookings else None,
                "target_roas": targets.target_roas, "min_spend": targets.min_spend, "decision": decision,
                "reason": reason, "run_id": run_id, "decided_at": now,
            })
        if rows:
            conn.execute(ad_recommendations.insert(), rows)
    counts = {d: sum(1 for row in rows if row["decision"] == d) for d in ("kill", "scale", "hold")}
    log.info("recommendations %s..%s (target ROAS %.2f, min spend %.2f): %s ads, %s kill, %s scale, %s hold",
             first, last, targets.target_roas, targets.min_spend, len(rows), counts["kill"], counts["scale"],
             counts["hold"])
    return {"ads": len(rows), **counts, "window_start": first.isoformat(), "window_end": last.isoformat()}
