"""Ad delivery for the Meta emulator: what each ad spent and what Meta attributed to it, per day.

`business_delivery(business)` derives delivery from a generated business (its public API only:
`Business.ads`, `Business.conversions()`, the window), so the ads side agrees with the conversions
the generator made:

- every live conversion that carries an ad id (the checkout stored it from `utm_content`) is a
  candidate for Meta's attribution to that ad on the day it happened (in the ad account's time
  zone). Meta attributes most within a 1-day click, some only within 7 or 28 days, and loses a
  few (browsers that block the Pixel and no server event to match);
- a share of conversions without an ad id are claimed by Meta anyway as 1-day view-throughs, so
  Meta's ROAS runs above Stripe's, as it does in life;
- a Purchase is also a booking (`Schedule`); a customer's first attributed conversion is also a
  sign-up (`CompleteRegistration`); a Subscribe is a membership;
- spend follows a daily budget per ad with day-to-day noise, pushed up a little on days the ad
  converts (Meta's budget optimisation), and impressions, clicks and reach follow from spend.

`synthetic_delivery(...)` makes any number of ads and days with no business behind it, for
benchmarks. Everything is deterministic: the same inputs give the same figures.

A delivery row: `account_id, ad_id, day` (ISO date), `spend_cents, impressions, clicks, reach` and
`actions`, a dict from conversion kind to its counts (values in cents for the `*_value` kinds) in
four attribution buckets `[1d click, 2-7d click, 8-28d click, 1d view]`.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

ACCOUNT_ID = "act_100200300400"
ACCOUNT_NAME = "Edmonton studio"
ACCOUNT_CURRENCY = "CAD"
ACCOUNT_TIMEZONE = "America/Edmonton"

KINDS = ("purchase", "purchase_value", "schedule", "complete_registration", "subscribe", "subscribe_value")
BUCKETS = 4  # 1d click, 2-7d click, 8-28d click, 1d view

# Rough conversion of the generator's minor units (cents; yen for JPY) to CAD cents: Meta reports
# values in the ad account's currency.
_TO_CAD_CENTS = {"cad": 1.0, "usd": 1 / 0.72, "jpy": 1 / 1.08, "eur": 1 / 0.66}
# Of conversions that carry an ad id: cumulative shares by bucket; the rest Meta never attributes.
_ATTRIBUTION_CUM = (0.70, 0.88, 0.93)
_VIEW_THROUGH_SHARE = 0.12  # of conversions without an ad id, claimed as a 1-day view
_BLENDED_ROAS = 2.4


def _unit(*parts: object) -> float:
    """A stable number in [0, 1) from the parts."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def account_days(start_ts: int, end_ts: int, timezone_name: str = ACCOUNT_TIMEZONE) -> list[date]:
    """The calendar days of the account's time zone that [start_ts, end_ts) touches."""
    zone = ZoneInfo(timezone_name)
    first = datetime.fromtimestamp(start_ts, UTC).astimezone(zone).date()
    last = datetime.fromtimestamp(max(start_ts, end_ts - 1), UTC).astimezone(zone).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def ads_structure(business, account_id: str = ACCOUNT_ID) -> list[dict]:
    """The business's campaigns, ad sets and ads as rows of the emulator's ads table."""
    return [{**ad, "account_id": account_id} for ad in business.ads]


def _empty_actions() -> dict[str, list[int]]:
    return {kind: [0] * BUCKETS for kind in KINDS}


def business_delivery(
    business, *, account_id: str = ACCOUNT_ID, timezone_name: str = ACCOUNT_TIMEZONE
) -> Iterator[dict]:
    """Delivery per ad and day over the business's window, consistent with its conversions."""
    zone = ZoneInfo(timezone_name)
    ads = [ad["ad_id"] for ad in business.ads]
    days = account_days(business.start_ts, business.end_ts, timezone_name)
    actions: dict[tuple[str, date], dict[str, list[int]]] = defaultdict(_empty_actions)
    registered: set[str] = set()

    for conversion in business.conversions():
        if not conversion.livemode:
            continue  # test-mode payments never reach the live pixel
        day = datetime.fromtimestamp(conversion.event_time, UTC).astimezone(zone).date()
        roll = _unit("attribution", conversion.event_id)
        if conversion.ad_id is not None:
            bucket = next((i for i, upto in enumerate(_ATTRIBUTION_CUM) if roll < upto), None)
            ad_id = conversion.ad_id
        elif roll < _VIEW_THROUGH_SHARE:
            bucket, ad_id = 3, ads[int(_unit("view", conversion.event_id) * len(ads))]
        else:
            continue
        if bucket is None:
            continue
        cents = round(conversion.value * _TO_CAD_CENTS.get(conversion.currency, 1.0))
        counts = actions[(ad_id, day)]
        if conversion.event_name == "Purchase":
            counts["purchase"][bucket] += 1
            counts["purchase_value"][bucket] += cents
            counts["schedule"][bucket] += 1
        else:
            counts["subscribe"][bucket] += 1
            counts["subscribe_value"][bucket] += cents
        if conversion.customer not in registered:
            registered.add(conversion.customer)
            counts["complete_registration"][bucket] += 1

    # The studio spends about what its ads bring in over its blended target: budgets scale with the
    # business, so a small studio does not look hopeless and a large one does not look like magic.
    value = sum(sum(c["purchase_value"]) + sum(c["subscribe_value"]) for c in actions.values())
    per_ad_day = max(300, value / _BLENDED_ROAS / max(len(days), 1) / max(len(ads), 1))
    for day in days:
        for ad_id in ads:
            counts = actions.get((ad_id, day)) or _empty_actions()
            budget = round(per_ad_day * (0.5 + _unit("budget", ad_id)))
            yield _delivery_row(account_id, ad_id, day, counts, budget)


def _delivery_row(account_id: str, ad_id: str, day: date, counts: dict[str, list[int]],
                  budget: int | None = None) -> dict:
    budget = budget or 800 + int(_unit("budget", ad_id) * 2700)  # cents a day
    converted = sum(counts["purchase"]) + sum(counts["subscribe"])
    spend = round(budget * (0.75 + 0.5 * _unit("noise", ad_id, day)) + budget * 0.1 * min(converted, 4))
    cpm = 900 + int(_unit("cpm", ad_id) * 600)  # cents per thousand impressions
    ctr = 0.006 + 0.016 * _unit("ctr", ad_id)
    impressions = round(spend * 1000 / cpm)
    clicks = max(round(impressions * ctr * (0.8 + 0.4 * _unit("clicks", ad_id, day))), sum(counts["purchase"][:3]))
    reach = round(impressions / (1.1 + 0.5 * _unit("frequency", ad_id, day)))
    return {
        "account_id": account_id,
        "ad_id": ad_id,
        "day": day.isoformat(),
        "spend_cents": spend,
        "impressions": impressions,
        "clicks": clicks,
        "reach": reach,
        "actions": counts,
    }


def synthetic_ads(ads: int, account_id: str = ACCOUNT_ID) -> list[dict]:
    """`ads` ads in ad sets of 5 and campaigns of 4 ad sets, with 18-digit ids."""
    rows = []
    for i in range(ads):
        adset, campaign = i // 5, i // 20
        rows.append(
            {
                "account_id": account_id,
                "campaign_id": f"120300{campaign:012d}",
                "campaign_name": f"Campaign {campaign + 1}",
                "adset_id": f"120200{adset:012d}",
                "adset_name": f"Ad set {adset + 1}",
                "ad_id": f"120100{i:012d}",
                "ad_name": f"Ad {i + 1}",
            }
        )
    return rows


def synthetic_delivery(ads: list[dict], first_day: date, days: int) -> Iterator[dict]:
    """Delivery for `ads` over `days` days from `first_day`, with made-up conversions."""
    for offset in range(days):
        day = first_day + timedelta(days=offset)
        for ad in ads:
            counts = _empty_actions()
            purchases = int(_unit("purchases", ad["ad_id"], day) * 4)
            counts["purchase"][0] = counts["schedule"][0] = purchases
            counts["purchase_value"][0] = purchases * 4200
            if _unit("subscribe", ad["ad_id"], day) < 0.1:
                counts["subscribe"][1], counts["subscribe_value"][1] = 1, 17745
            counts["complete_registration"][0] = int(_unit("signups", ad["ad_id"], day) * 3)
            yield _delivery_row(ad["account_id"], ad["ad_id"], day, counts)
