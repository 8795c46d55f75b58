"""Audiences as code: every Custom Audience adloop keeps on Meta, declared here.

Adding an audience is adding an `Audience` to `AUDIENCES`; the DAG's form, the nightly refresh,
the gates and the CLI pick it up from this list. Each one says:

- `key`: a short snake_case name, stable forever (it keys the warehouse rows of the audience);
- `name` and `description`: what Meta shows in Ads Manager (the audience is found by this name,
  so renaming one here makes a new audience on Meta);
- `use`: what the audience is for, which sets the smallest size worth syncing (see `USES`);
- `segment`: a SELECT over the warehouse, with the bound parameter `:as_of` (unix seconds, the end
  of the run's data interval), returning one row per person to include with the columns
  `source_id, customer_id, em, ph, fn, ln, ct, st, zp, country`. The keys are already hashed in
  the warehouse; `customer_id` (a Stripe customer id, or NULL) lets opt-outs by customer apply.
  People who opted out (`consent_opt_outs`) are always removed after the segment runs;
- `lookalikes`: the Lookalikes to derive from it, as (country, ratio);
- `max_shrink`: the share of the last sync's members the audience may lose in one sync before the
  gate stops it (a run can allow it with the `allow_shrink` Param).

Segments read hashed data only: `stripe_conversions` (landed by the reconciliation DAG),
`app_users`, `app_bookings` and `app_memberships` (landed from the app database by this DAG).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DAY = 86_400

# Smallest size for an audience's use. A Lookalike needs a seed of at least 100 people from one
# country (Meta's rule, reference §2.6). For targeting, 100 is adloop's floor: Ads Manager will not
# deliver to a custom audience that small, and syncing one is a sign the segment is wrong. An
# exclusion list is useful at any size, so an empty one is allowed.
USES = {"lookalike_seed": 100, "targeting": 100, "exclusion": 0}

# Lookalike sizes Meta accepts: 1% to 20% of the country, in steps of 1%.
LOOKALIKE_RATIOS = tuple(round(r / 100, 2) for r in range(1, 21))


@dataclass(frozen=True)
class Lookalike:
    country: str  # ISO 3166-1 alpha-2, as Meta takes it in lookalike_spec.country ("CA")
    ratio: float  # 0.01 is the 1% of the country most like the seed

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Z]{2}", self.country):
            raise ValueError(f"lookalike country {self.country!r} must be an uppercase ISO alpha-2 code")
        if round(self.ratio, 2) not in LOOKALIKE_RATIOS:
            raise ValueError(f"lookalike ratio {self.ratio} must be 0.01 to 0.20 in steps of 0.01")

    @property
    def label(self) -> str:
        return f"{self.country} {round(self.ratio * 100)}%"


@dataclass(frozen=True)
class Audience:
    key: str
    name: str
    description: str
    use: str
    segment: str
    lookalikes: tuple[Lookalike, ...] = ()
    max_shrink: float = 0.2
    title: str = ""  # how the trigger form names it; defaults to `name`

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_]{2,39}", self.key):
            raise ValueError(f"audience key {self.key!r} must be snake_case, 3 to 40 characters")
        if self.use not in USES:
            raise ValueError(f"audience {self.key}: use {self.use!r} is not one of {sorted(USES)}")
        if not self.segment.lstrip().upper().startswith("SELECT"):
            raise ValueError(f"audience {self.key}: the segment must be a SELECT")
        if not 0 <= self.max_shrink <= 1:
            raise ValueError(f"audience {self.key}: max_shrink must be a share between 0 and 1")
        if self.lookalikes and self.use != "lookalike_seed":
            raise ValueError(f"audience {self.key}: only a lookalike_seed audience may declare lookalikes")

    @property
    def min_size(self) -> int:
        return USES[self.use]

    @property
    def form_title(self) -> str:
        return self.title or self.name

    def lookalike_name(self, lookalike: Lookalike) -> str:
        return f"{self.name} - Lookalike {lookalike.label}"


# -- reusable pieces of SQL ------------------------------------------------------------------------

_USER_COLUMNS = """u.user_id AS source_id, u.stripe_customer_id AS customer_id,
       u.em, u.ph, u.fn, u.ln, u.ct, u.st, u.zp, u.country"""

# A live, paid, not fully refunded conversion read from Stripe, in the window before :as_of.
_PAID_CONVERSION = """c.livemode = {true} AND c.payment_status = 'paid' AND c.amount_minor > 0
         AND c.amount_refunded_minor < c.amount_minor
         AND c.event_time >= :as_of - {window} AND c.event_time < :as_of"""

_ACTIVE_MEMBERSHIP = """EXISTS (SELECT 1 FROM app_memberships AS m
                WHERE m.user_id = u.user_id AND m.status IN ('active', 'trialing', 'past_due'))"""


def _paid_conversion(window_days: int) -> str:
    # SQLite stores booleans as 0/1 and PostgreSQL as boolean; both accept TRUE as a literal.
    return _PAID_CONVERSION.format(true="TRUE", window=window_days * DAY)


PAYING_CUSTOMERS_180D = f"""
SELECT {_USER_COLUMNS}
FROM app_users AS u
WHERE EXISTS (SELECT 1 FROM app_bookings AS b
              WHERE b.user_id = u.user_id AND b.status = 'paid' AND b.amount_minor > 0
                AND b.booked_at >= :as_of - {180 * DAY} AND b.booked_at < :as_of)
   OR EXISTS (SELECT 1 FROM stripe_conversions AS c
              WHERE c.customer_id = u.stripe_customer_id AND {_paid_conversion(180)})
UNION ALL
SELECT c.customer_id AS source_id, c.customer_id, c.em, c.ph, c.fn, c.ln, c.ct, c.st, c.zp, c.country
FROM stripe_conversions AS c
WHERE {_paid_conversion(180)}
  AND c.customer_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM app_users AS u WHERE u.stripe_customer_id = c.customer_id)
"""

ACTIVE_MEMBERS = f"""
SELECT {_USER_COLUMNS}
FROM app_users AS u
WHERE {_ACTIVE_MEMBERSHIP}
"""

LAPSED_ONE_TIME_BOOKERS = f"""
SELECT {_USER_COLUMNS}
FROM app_users AS u
JOIN (SELECT user_id, count(*) AS bookings, max(booked_at) AS last_booked_at
      FROM app_bookings
      WHERE status = 'paid' AND booked_at < :as_of
      GROUP BY user_id) AS b ON b.user_id = u.user_id
WHERE b.bookings = 1
  AND b.last_booked_at < :as_of - {60 * DAY}
  AND NOT {_ACTIVE_MEMBERSHIP}
"""

LEADS_NEVER_BOUGHT = f"""
SELECT {_USER_COLUMNS}
FROM app_users AS u
WHERE u.signed_up_at < :as_of
  AND NOT EXISTS (SELECT 1 FROM app_bookings AS b WHERE b.user_id = u.user_id AND b.status = 'paid')
  AND NOT EXISTS (SELECT 1 FROM app_memberships AS m WHERE m.user_id = u.user_id)
  AND NOT EXISTS (SELECT 1 FROM stripe_conversions AS c
                  WHERE c.customer_id = u.stripe_customer_id AND c.payment_status = 'paid')
"""


AUDIENCES: tuple[Audience, ...] = (
    Audience(
        key="paying_customers_180d",
        name="adloop | Paying customers, last 180 days",
        title="Paying customers (last 180 days)",
        description="Everyone who paid for a class, pack or membership in the last 180 days. "
        "The seed of the Canadian 1% Lookalike. Synced daily by adloop.",
        use="lookalike_seed",
        segment=PAYING_CUSTOMERS_180D,
        lookalikes=(Lookalike("CA", 0.01),),
    ),
    Audience(
        key="active_members",
        name="adloop | Active members",
        title="Active members (exclude from acquisition ads)",
        description="People with an active, trialing or past-due membership. Exclude them from "
        "acquisition campaigns. Synced daily by adloop.",
        use="exclusion",
        segment=ACTIVE_MEMBERS,
    ),
    Audience(
        key="lapsed_one_time_bookers",
        name="adloop | One-time bookers, quiet 60 days",
        title="One-time bookers who went quiet (60 days)",
        description="People who booked and paid exactly once, more than 60 days ago, and are not "
        "members. For win-back ads. Synced daily by adloop.",
        use="targeting",
        segment=LAPSED_ONE_TIME_BOOKERS,
    ),
    Audience(
        key="leads_never_bought",
        name="adloop | Leads who never bought",
        title="Leads who never bought",
        description="People who signed up on the app but never paid for anything. For first-class "
        "offers. Synced daily by adloop.",
        use="targeting",
        segment=LEADS_NEVER_BOUGHT,
    ),
)


def _check_unique(audiences: tuple[Audience, ...]) -> None:
    for attribute in ("key", "name"):
        values = [getattr(a, attribute) for a in audiences]
        duplicates = sorted({v for v in values if values.count(v) > 1})
        if duplicates:
            raise ValueError(f"audience {attribute}s must be unique; repeated: {duplicates}")


_check_unique(AUDIENCES)


def audience_keys() -> list[str]:
    return [a.key for a in AUDIENCES]


def get(key: str) -> Audience:
    for audience in AUDIENCES:
        if audience.key == key:
            return audience
    raise KeyError(f"no audience {key!r} is declared; declared: {', '.join(audience_keys())}")
