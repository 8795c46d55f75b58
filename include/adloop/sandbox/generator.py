"""A realistic, reproducible business for the sandbox: a yoga and fitness studio in Edmonton.

`generate()` describes the business; nothing is built until it is iterated. Every part streams
customer by customer, and each customer draws from its own RNG seeded with `"{seed}:{index}"`,
so any slice of customers is reproducible on its own and memory stays flat at any scale.

What it produces:

- `Business.stripe_objects()`: Stripe API objects as plain dicts, shaped as API version
  `2026-10-28.endive` returns them, unexpanded (references by id): `customer`,
  `checkout.session`, `payment_intent`, `subscription`, `invoice`, `refund`. Objects come
  customer by customer (a customer first, then its objects in time order), not globally sorted.
- `Business.ads`: the Meta campaign structure bookings are attributed to (with a skew).
- `Business.conversions()`, `Business.webhook_ledger()`: what Meta should have received and what
  the real-time webhook did deliver.
- `Business.opt_out_emails()`, `Business.truth()`, `Business.expected_in_window()`: ground truth
  to test the reconciler, the audience sync and the demo against.

The conversion predicate (adloop's, restated here so the sandbox shares no code with the client):
a Purchase is a Checkout Session with `mode == "payment"`, `status == "complete"` and
`payment_status == "paid"`, with `event_id` = the session id; a Subscribe is a Subscription whose
first invoice (`billing_reason == "subscription_create"`) is paid, with `event_id` = the
subscription id. `event_time` is when the money arrived: the PaymentIntent's `created` for card
payments, later for delayed methods (acss_debit), the first invoice's
`status_transitions.paid_at` for a Subscribe.

The webhook never sends the conversions of customers who declined tracking (their emails are
in `opt_out_emails()`); of the rest it misses about `unsent_share`, chosen at random per
conversion. Test-mode conversions are treated like live ones on that path.

All personal data is fictional: phone numbers are in the 555-01xx range, emails are on
reserved `.example` / `example.com` domains, IP addresses are in the documentation ranges
(192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32).
"""

from __future__ import annotations

import calendar
import json
import random
import unicodedata
from base64 import urlsafe_b64encode
from binascii import b2a_base64
from bisect import bisect
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from itertools import accumulate
from pathlib import Path

API_VERSION = "2026-10-28.endive"

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_FOLD_B64 = bytes.maketrans(b"+/=", b"kQz")
_DAY = 86_400
_SCRAMBLE_CUSTOMER = 3**18  # coprime with 62, so multiplying by it permutes residues modulo 62**5
_SCRAMBLE_SEQUENCE = 3**10

# Shares of the population; tuned so a 400-customer business shows every case a few times.
_MEMBER_SHARE = 0.22
_LEAD_SHARE = 0.12
_AD_ACQUIRED_SHARE = 0.55
_RETARGETED_SHARE = 0.2
_ABANDON_SHARE = 0.07
_DELAYED_SHARE = 0.04
_DELAYED_FAIL_SHARE = 0.15
_ZERO_AMOUNT_SHARE = 0.025
_REFUND_SHARE = 0.07
_CANCEL_SHARE = 0.25
_NO_PHONE_SHARE = 0.08
_NO_NAME_SHARE = 0.03
_NO_FBP_SHARE = 0.08
_NO_FBC_SHARE = 0.06
_GST = 0.05

# (currency, cumulative share, CAD-cents -> minor-unit factor, rounding step in minor units)
_CURRENCIES = (
    ("cad", 0.965, 1.0, 1),
    ("usd", 0.985, 0.72, 100),
    ("jpy", 0.993, 1.08, 100),  # zero-decimal: CAD cents * 1.08 = yen, at about 108 JPY per CAD
    ("eur", 1.0, 0.66, 50),
)

# (slug, description, CAD cents before GST, weight)
_BOOKINGS = (
    ("drop-in/hot-vinyasa", "Drop-in: Hot Vinyasa", 2500, 24),
    ("drop-in/yin", "Drop-in: Yin & Restore", 2300, 12),
    ("drop-in/spin-45", "Drop-in: Spin 45", 2200, 10),
    ("drop-in/barre", "Drop-in: Barre Burn", 2500, 8),
    ("intro-offer", "Intro offer: 3 classes", 3900, 14),
    ("class-pack/5", "5-class pack", 11000, 10),
    ("class-pack/10", "10-class pack", 20000, 9),
    ("class-pack/20", "20-class pack", 36000, 3),
    ("workshop/inversions", "Workshop: Inversions 101", 4500, 5),
    ("workshop/sound-bath", "Sound bath", 3500, 4),
    ("private/60", "Private session (60 min)", 9500, 3),
)
_BOOKING_CUM = tuple(accumulate(b[3] for b in _BOOKINGS))
_MEMBER_EXTRAS = _BOOKINGS[8:]  # members still buy workshops and privates
_BOOKINGS_PER_CUSTOMER_CUM = tuple(accumulate((30, 25, 18, 12, 9, 6)))

# (slug, description, CAD cents a month before GST, weight)
_PLANS = (
    ("unlimited", "Unlimited monthly", 16900, 5),
    ("eight-a-month", "8 classes a month", 12900, 3),
    ("student-unlimited", "Student unlimited", 11900, 2),
)
_PLAN_CUM = tuple(accumulate(p[3] for p in _PLANS))

_FIRST_NAMES = (
    "Zoë",
    "Hélène",
    "François",
    "José",
    "Chloé",
    "Renée",
    "Amélie",
    "Noémie",
    "Raphaël",
    "Anaïs",
    "Mónica",
    "Joël",
    "Siobhán",
    "Björn",
    "Søren",
    "Emma",
    "Liam",
    "Olivia",
    "Noah",
    "Ava",
    "Priya",
    "Arjun",
    "Mei",
    "Wei",
    "Jasmine",
    "Harpreet",
    "Gurpreet",
    "Aiyana",
    "Tyler",
    "Madison",
    "Ethan",
    "Sofia",
    "Mateo",
    "Fatima",
    "Omar",
    "Kateryna",
    "Oksana",
    "Nadia",
    "Daniel",
    "Grace",
    "Mohammed",
    "Aaliyah",
    "Jordan",
    "Brooke",
    "Dakota",
    "Quinn",
    "Marie-Ève",
    "Jean-Luc",
    "Kai",
    "Leah",
)
_LAST_NAMES = (
    "O'Brien",
    "Smith-Jones",
    "Tremblay",
    "Gagnon",
    "Côté",
    "Bélanger",
    "Lévesque",
    "MacDonald",
    "McLeod",
    "Nguyen",
    "Tran",
    "Singh",
    "Sandhu",
    "Gill",
    "Kowalczyk",
    "Kovalenko",
    "Shevchenko",
    "Hrynchuk",
    "Wong",
    "Chen",
    "Li",
    "Patel",
    "D'Souza",
    "Van der Berg",
    "St-Pierre",
    "Cardinal",
    "Okafor",
    "Haddad",
    "García",
    "Muñoz",
    "Müller",
    "Ødegaard",
    "Smith",
    "Johnson",
    "Anderson",
    "Campbell",
    "Fraser",
    "Lee",
    "Brown",
    "Wilson",
    "O'Connor",
    "Martin",
    "Roy",
    "Thompson",
    "Laboucan",
    "Gauthier-Roy",
    "Ng",
    "Kaur",
    "Petrenko",
    "Dubé",
)
_EMAIL_DOMAINS = (
    "mail.example",
    "example.com",
    "example.net",
    "example.org",
    "shaw.example",
    "telus.example",
    "icloud.example",
    "ualberta.example",
)
_AREA_CODES = ("780", "780", "780", "587", "587", "825")
_PHONE_FORMATS = (
    "{a}-555-01{x}",
    "({a}) 555 01{x}",
    "({a}) 555-01{x}",
    "{a} 555-01{x}",
    "{a}.555.01{x}",
    "{a} 555 01{x}",
    "+1 {a} 555 01{x}",
    "1-{a}-555-01{x}",
    "{a}55501{x}",
)
_PROVINCES = ("AB", "AB", "AB", "AB", "AB", "AB", "Alberta", "Alberta", "Alberta", "ab")
_POSTAL_LETTERS = "ABCEGHJKLMNPRSTVWXYZ"  # D, F, I, O, Q and U never appear in Canadian postal codes
_UNDECOMPOSABLE = str.maketrans({"ø": "o", "Ø": "O", "æ": "ae", "ß": "ss", "ł": "l"})
# (city spellings, forward sortation area prefixes, street builder key)
_CITIES = (
    (
        ("Edmonton",) * 8 + ("edmonton", "Edmonton "),
        ("T5J", "T5K", "T5N", "T6E", "T6G", "T6W", "T6R", "T5T", "T6X", "T5H"),
        "grid",
    ),
    (("St. Albert", "St. Albert", "St Albert", "Saint Albert"), ("T8N",), "st_albert"),
    (("Sherwood Park", "Sherwood Park", "sherwood park"), ("T8A", "T8B", "T8H"), "sherwood_park"),
)
_CITY_CUM = tuple(accumulate((75, 14, 11)))
_NAMED_STREETS = {
    "grid": (
        "Jasper Ave NW",
        "Whyte Ave NW",
        "Terwillegar Dr NW",
        "Windermere Blvd SW",
        "Ellerslie Rd SW",
        "Rabbit Hill Rd NW",
        "Summerside Dr SW",
    ),
    "st_albert": ("Perron St", "St. Albert Trail", "Akins Dr", "Boudreau Rd", "Levasseur Rd", "Everitt Dr N"),
    "sherwood_park": (
        "Broadmoor Blvd",
        "Baseline Rd",
        "Clover Bar Rd",
        "Granada Blvd",
        "Wye Rd",
        "Sherwood Dr",
    ),
}
_USER_AGENTS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Mobile/22E240 Instagram 385.0.0.29.90 (iPhone15,3; iOS 18_4; en_CA; en-CA; scale=3.00; 1290x2796)",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Mobile/15E148 [FBAN/FBIOS;FBAV/512.0.0.43.109;FBBV/700000000;FBDV/iPhone14,5;FBMD/iPhone;FBSN/iOS;"
    "FBSV/17.6;FBSS/3;FBCR/;FBID/phone;FBLC/en_US;FBOP/5]",
    "Mozilla/5.0 (Linux; Android 15; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/138.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; SM-S921W) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/137.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.5 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/138.0.0.0 Safari/537.36 Edg/138.0.0.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/138.0.0.0 Safari/537.36",
)
_USER_AGENT_CUM = tuple(accumulate((26, 18, 10, 14, 10, 8, 7, 7)))
_IPV4_NETS = ("192.0.2.", "198.51.100.", "203.0.113.")
_CANCEL_FEEDBACK = ("too_expensive", "unused", "switched_service", "other", "low_quality", None)

_SITE = "https://studio.example"
_OBJECT_TYPES = ("customer", "checkout.session", "payment_intent", "subscription", "invoice", "refund")

# The campaign structure: (campaign, [(ad set, [ad, ...]), ...]), with how well each ad converts
# for bookings and for memberships. Which ads are the good ones is fixed so the demo tells a story.
_CAMPAIGNS = (
    (
        "Intro Offer | Prospecting | Edmonton",
        (
            (
                "Broad 25-45 | Edmonton +25 km",
                (("Hot vinyasa reel 15s", 30, 3), ("Intro 3-for-$39 carousel", 22, 2)),
            ),
            (
                "Interests: yoga, pilates, wellness",
                (("Testimonial: Hélène", 9, 2), ("Studio tour video", 3, 1)),
            ),
            (
                "Lookalike 1% CA | paying customers",
                (("UGC reel: first class", 14, 4), ("Static: sunrise flow", 1, 0.5)),
            ),
        ),
    ),
    (
        "Memberships | Retargeting",
        (
            (
                "Site visitors 30d",
                (("Unlimited: first month offer", 6, 30), ("Member stories carousel", 2, 12)),
            ),
            ("Class-pack buyers 60d", (("Upgrade to unlimited", 4, 22), ("Static: member perks", 0.5, 3))),
        ),
    ),
    (
        "Workshops & Events | Traffic",
        (
            ("St. Albert + Sherwood Park", (("Sound bath night", 5, 1), ("Inversions workshop", 3, 0.5))),
            ("Students | U of A 18-24", (("Student unlimited promo", 2, 6), ("Spin 45 teaser", 0.3, 0.2))),
        ),
    ),
)


@dataclass(frozen=True, slots=True)
class Conversion:
    """One conversion as Meta should see it, with what the webhook did about it."""

    event_id: str
    event_name: str  # "Purchase" or "Subscribe"
    event_time: int  # when the money arrived, unix seconds
    created: int  # `created` of the Checkout Session (Purchase) or Subscription (Subscribe)
    livemode: bool
    customer: str
    currency: str
    value: int  # in the currency's minor unit (yen for JPY)
    ad_id: str | None
    opted_out: bool
    sent: bool
    sent_at: int | None
    refunded: int  # amount refunded by `end`, minor units


@dataclass(slots=True)
class _Story:
    """Everything one customer did in the window."""

    objects: list[dict]
    conversions: list[Conversion]
    email: str
    opted_out: bool


class Business:
    """The studio's Stripe account and Meta ad account over `[end - days, end)`. Build with `generate()`."""

    def __init__(
        self,
        *,
        seed: int,
        customers: int,
        days: int,
        end: datetime,
        unsent_share: float,
        test_mode_share: float,
        opt_out_share: float,
        include_payment_intents: bool,
    ) -> None:
        self.seed = seed
        self.customers = customers
        self.days = days
        self.end = end
        self.start_ts = int(end.timestamp()) - days * _DAY
        self.end_ts = int(end.timestamp())
        self.unsent_share = unsent_share
        self.test_mode_share = test_mode_share
        self.opt_out_share = opt_out_share
        self.include_payment_intents = include_payment_intents
        self._account = _b62_random(random.Random(f"{seed}:account"), 10)
        self.ads, self._booking_ad_weights, self._member_ad_weights = _build_ads(seed)
        self._truth: dict | None = None

    def __repr__(self) -> str:
        return (
            f"Business(seed={self.seed}, customers={self.customers}, days={self.days}, "
            f"end={self.end.isoformat()}, unsent_share={self.unsent_share})"
        )

    # -- streams -------------------------------------------------------------------------------

    def stripe_objects(self, indices: Iterable[int] | None = None) -> Iterator[dict]:
        """Every Stripe object, customer by customer; `indices` picks a slice of customers."""
        for story in self._stories(indices):
            yield from story.objects

    def conversions(self, indices: Iterable[int] | None = None) -> Iterator[Conversion]:
        """Every object that meets the Purchase or Subscribe predicate, test mode included."""
        for story in self._stories(indices):
            yield from story.conversions

    def webhook_ledger(self, indices: Iterable[int] | None = None) -> Iterator[dict]:
        """The conversions the real-time webhook delivered to Meta, as its ledger recorded them."""
        for conversion in self.conversions(indices):
            if conversion.sent:
                yield {
                    "event_id": conversion.event_id,
                    "event_name": conversion.event_name,
                    "event_time": conversion.event_time,
                    "sent_at": conversion.sent_at,
                }

    def opt_out_emails(self, indices: Iterable[int] | None = None) -> list[str]:
        """The emails, as typed (case and stray spaces kept), of customers who declined tracking."""
        emails = []
        for i in self._indices(indices):
            profile = self._profile(i, random.Random(f"{self.seed}:{i}"))
            if profile.opted_out:
                emails.append(profile.email)
        return emails

    # -- ground truth --------------------------------------------------------------------------

    def truth(self) -> dict:
        """Counts to compare a run against, from one pass over the whole business (cached)."""
        if self._truth is None:
            self._truth = self._count(self._stories(None))
        return self._truth

    def expected_in_window(
        self, start: datetime | int, end: datetime | int, *, by: str = "event_time"
    ) -> dict:
        """Event ids of live conversions with `by` (`event_time` or `created`) in `[start, end)`.

        Returns `{"sent": set, "unsent": set, "opted_out": set, "to_backfill": set}`: what the
        webhook delivered, what it never delivered, what must never be sent (the customer opted
        out), and what a correct backfill sends: the unsent ones less those refunded in full.
        Zero-amount and unpaid sessions are never conversions; test-mode ones are left out here.
        """
        if by not in ("event_time", "created"):
            raise ValueError(f'by must be "event_time" or "created", got {by!r}')
        lo, hi = _unix(start), _unix(end)
        window: dict[str, set[str]] = {"sent": set(), "unsent": set(), "opted_out": set()}
        for conversion in self.conversions():
            at = conversion.event_time if by == "event_time" else conversion.created
            if not conversion.livemode or not lo <= at < hi:
                continue
            if conversion.opted_out:
                window["opted_out"].add(conversion.event_id)
            elif conversion.sent:
                window["sent"].add(conversion.event_id)
            else:
                window["unsent"].add(conversion.event_id)
        window["to_backfill"] = window["unsent"] - self.fully_refunded_ids()
        return window

    def fully_refunded_ids(self) -> set[str]:
        """Event ids of conversions refunded in full, which the backfill excludes."""
        return {c.event_id for c in self.conversions() if c.value > 0 and c.refunded >= c.value}

    def _count(self, stories: Iterable[_Story]) -> dict:
        objects: dict[str, int] = dict.fromkeys(_OBJECT_TYPES, 0)
        sessions = dict.fromkeys(
            ("paid", "unpaid", "no_payment_required", "test_mode", "delayed_payment", "non_cad"), 0
        )
        conversions = {"Purchase": 0, "Subscribe": 0}
        live = {"Purchase": 0, "Subscribe": 0}
        refunded = {"full": 0, "partial": 0}
        webhook = {"sent": 0, "unsent": 0, "opted_out": 0}
        renewals = opt_outs = 0
        for story in stories:
            opt_outs += story.opted_out
            for obj in story.objects:
                kind = obj["object"]
                objects[kind] += 1
                if kind == "checkout.session":
                    sessions[obj["payment_status"]] += 1
                    if not obj["livemode"]:
                        sessions["test_mode"] += 1
                    if obj["payment_method_types"] == ["acss_debit"]:
                        sessions["delayed_payment"] += 1
                    if obj["currency"] != "cad":
                        sessions["non_cad"] += 1
                elif kind == "invoice" and obj["billing_reason"] == "subscription_cycle":
                    renewals += 1
            for c in story.conversions:
                conversions[c.event_name] += 1
                if c.livemode:
                    live[c.event_name] += 1
                webhook["opted_out" if c.opted_out else "sent" if c.sent else "unsent"] += 1
                if c.refunded:
                    refunded["full" if c.refunded == c.value else "partial"] += 1
        return {
            "customers": objects["customer"],
            "objects": objects,
            "checkout_sessions": sessions,
            "conversions": conversions,
            "livemode_conversions": live,
            "refunded_conversions": refunded,
            "webhook": webhook,
            "renewal_invoices": renewals,
            "opted_out_customers": opt_outs,
        }

    # -- simulation ----------------------------------------------------------------------------

    def _indices(self, indices: Iterable[int] | None) -> Iterable[int]:
        return range(self.customers) if indices is None else indices

    def _stories(self, indices: Iterable[int] | None) -> Iterator[_Story]:
        for i in self._indices(indices):
            yield _Simulation(self, i).run()

    def _profile(self, i: int, rng: random.Random) -> _Profile:
        return _Profile.draw(self, i, rng)


class _Profile:
    """Who a customer is and how they reach the studio; the first draws of the customer's RNG."""

    __slots__ = (
        "index",
        "livemode",
        "opted_out",
        "name",
        "email",
        "phone",
        "address",
        "locale",
        "user_agent",
        "ip",
        "signup",
        "fbp",
        "acquired_by",
        "kind",
    )

    @classmethod
    def draw(cls, business: Business, i: int, rng: random.Random) -> _Profile:
        p = cls()
        rand = rng.random
        p.index = i
        p.livemode = rand() >= business.test_mode_share
        p.opted_out = rand() < business.opt_out_share
        first, last = _pick(rng, _FIRST_NAMES), _pick(rng, _LAST_NAMES)
        p.name = None if rand() < _NO_NAME_SHARE else _typed_name(rng, first, last)
        p.email = _typed_email(rng, first, last, i) if p.livemode else f"qa+{i}@studio.example"
        p.phone = None if rand() < _NO_PHONE_SHARE else _typed_phone(rng)
        p.address = _address(rng)
        p.locale = "fr-CA" if first in ("Hélène", "François", "Marie-Ève", "Jean-Luc", "Noémie") else "en-CA"
        p.user_agent = _weighted(rng, _USER_AGENTS, _USER_AGENT_CUM)
        if rand() < 0.15:
            p.ip = f"2001:db8:{_between(rng, 0, 0xFFFF):x}:{_between(rng, 0, 0xFFFF):x}::{_between(rng, 1, 0xFFFF):x}"
        else:
            p.ip = f"{_pick(rng, _IPV4_NETS)}{_between(rng, 1, 254)}"

        span = business.end_ts - business.start_ts
        p.signup = business.start_ts + int(rand() * max(span - 3_600, 1))
        first_visit_ms = (p.signup - _between(rng, 60, 7 * _DAY)) * 1000 + _between(rng, 0, 999)
        blocked = p.opted_out or rand() < _NO_FBP_SHARE
        p.fbp = None if blocked else f"fb.1.{first_visit_ms}.{_between(rng, 10**9, 10**10 - 1)}"
        ad_acquired = rand() < _AD_ACQUIRED_SHARE
        roll = rand()
        p.kind = (
            "member" if roll < _MEMBER_SHARE else "lead" if roll < _MEMBER_SHARE + _LEAD_SHARE else "booker"
        )
        weights = business._member_ad_weights if p.kind == "member" else business._booking_ad_weights
        p.acquired_by = _weighted(rng, business.ads, weights)["ad_id"] if ad_acquired else None
        return p


class _Simulation:
    """Plays one customer's two months at the studio and renders what Stripe would hold."""

    def __init__(self, business: Business, i: int) -> None:
        self.b = business
        self.rng = random.Random(f"{business.seed}:{i}")
        self.p = business._profile(i, self.rng)
        # Scrambled (a bijection modulo 62**5) so ids look random yet never collide between customers.
        self.core = _b62(i * _SCRAMBLE_CUSTOMER % 62**5, 5)
        self.seq = 0
        self.objects: list[dict] = []
        self.conversions: list[Conversion] = []
        self.pool = ""
        self.customer_id = f"cus_{self.core}{business._account[:3]}{_b62_random(self.rng, 6)}"
        self.invoices = 0
        self.invoice_prefix = _b62_random(self.rng, 8).upper()
        self.visits = 0

    def run(self) -> _Story:
        p, rng, end = self.p, self.rng, self.b.end_ts

        t = p.signup
        if p.kind == "member":
            joined = t + _between(rng, 60, 3 * _DAY)
            t = self.membership(joined) if joined < end else t
            bookings = _pick(rng, (0, 0, 1, 1, 2))
        elif p.kind == "lead":
            bookings = 0
            for _ in range(_pick(rng, (0, 1, 1, 2))):
                t += _between(rng, 600, 10 * _DAY)
                if t < end:
                    self.booking(t, abandon=True)
        else:
            bookings = _weighted(rng, (1, 2, 3, 4, 5, 6), _BOOKINGS_PER_CUSTOMER_CUM)

        for _ in range(bookings):
            t += _between(rng, 1_800, 14 * _DAY) if self.visits else _between(rng, 60, _DAY)
            if t >= end:
                break
            self.booking(t, abandon=rng.random() < _ABANDON_SHARE)

        self.objects.insert(0, self.customer())
        return _Story(self.objects, self.conversions, p.email, p.opted_out)

    # -- ids and tracking ----------------------------------------------------------------------

    def new_id(self, prefix: str) -> str:
        """`prefix` + a Stripe-looking body that is unique per (customer, object) and reproducible."""
        self.seq += 1
        head = self.core + (
            _SEQUENCE_IDS[self.seq] if self.seq < 4096 else _b62(self.seq * _SCRAMBLE_SEQUENCE % 62**3, 3)
        )
        if prefix in ("cs_live_", "cs_test_"):
            return f"{prefix}a1{head}{self.b._account}{self.random_chars(38)}"
        return f"{prefix}1{self.b._account[:6]}{head}{self.random_chars(9)}"

    def random_chars(self, k: int) -> str:
        """`k` random alphanumerics, cut from a pool refilled from the customer's RNG (one draw serves
        many ids, which is most of what makes generation fast)."""
        if len(self.pool) < k:
            self.pool = _b62_random(self.rng, 512)
        chars, self.pool = self.pool[:k], self.pool[k:]
        return chars

    def tracking(self, t: int, path: str, ad_id: str | None) -> dict[str, str]:
        """What the checkout page recorded for Meta when the customer started checkout at `t`."""
        p, rng = self.p, self.rng
        url = f"{_SITE}{path}"
        metadata = {}
        if ad_id is not None:
            fbclid = _fbclid(rng)
            click_ms = (t - _between(rng, 20, 1_800)) * 1000 + _between(rng, 0, 999)
            campaign = _campaign_of(self.b.ads, ad_id)
            url += (
                f"?utm_source=facebook&utm_medium=paid_social&utm_campaign={campaign}"
                f"&utm_content={ad_id}&fbclid={fbclid}"
            )
            if not p.opted_out and rng.random() >= _NO_FBC_SHARE:
                metadata["fbc"] = f"fb.1.{click_ms}.{fbclid}"
            metadata["ad_id"] = ad_id
        if p.fbp is not None:
            metadata["fbp"] = p.fbp
        metadata["client_user_agent"] = p.user_agent
        metadata["client_ip_address"] = p.ip
        metadata["event_source_url"] = url
        return metadata

    def channel(self, member: bool) -> str | None:
        """The ad this visit came from: the acquiring ad on the first visit, retargeting later."""
        self.visits += 1
        if self.visits == 1:
            return self.p.acquired_by
        if self.rng.random() < _RETARGETED_SHARE:
            weights = self.b._member_ad_weights if member else self.b._booking_ad_weights
            return _weighted(self.rng, self.b.ads, weights)["ad_id"]
        return None

    def sending(self, conversion_time: int) -> tuple[bool, int]:
        """Whether the webhook delivered a conversion, and when; always two draws, so shares can change
        without changing any Stripe object."""
        missed = self.rng.random() < self.b.unsent_share
        sent_at = conversion_time + _between(self.rng, 1, 25)
        return (not self.p.opted_out and not missed and sent_at < self.b.end_ts), sent_at

    # -- bookings ------------------------------------------------------------------------------

    def booking(self, t: int, *, abandon: bool) -> None:
        p, rng, end = self.p, self.rng, self.b.end_ts
        product = (
            _pick(rng, _MEMBER_EXTRAS) if p.kind == "member" else _weighted(rng, _BOOKINGS, _BOOKING_CUM)
        )
        slug, _, cad_cents, _ = product
        currency, subtotal = _price(rng, cad_cents)
        tax = round(subtotal * _GST)
        booking_id = f"BKG-{p.index + 1:06d}-{self.seq + 1:03d}"
        metadata = self.tracking(t, f"/book/{slug}", self.channel(member=False))
        metadata["booking_id"] = booking_id
        session_id = self.new_id("cs_live_" if p.livemode else "cs_test_")

        roll = rng.random()
        zero = not abandon and roll < _ZERO_AMOUNT_SHARE
        delayed = (
            not abandon and not zero and currency == "cad" and roll < _ZERO_AMOUNT_SHARE + _DELAYED_SHARE
        )
        submitted = t + _between(rng, 30, 900)  # the customer pays a few minutes after opening Checkout
        settle = submitted + _between(rng, 2 * _DAY, 5 * _DAY) if delayed else submitted
        failed = delayed and rng.random() < _DELAYED_FAIL_SHARE

        if abandon:
            status = "open" if t + _DAY > end else "expired"
            payment_status, pi_status = "unpaid", None
        elif zero:
            status, payment_status, pi_status = "complete", "no_payment_required", None
        elif settle >= end or submitted >= end:
            # The payment (or the submission itself) lands after the window closes: not paid yet.
            status = "complete" if submitted < end else "open"
            payment_status = "unpaid"
            pi_status = "processing" if submitted < end else None
        elif failed:  # the debit bounced: Checkout is complete, but the money never came
            status, payment_status, pi_status = "complete", "unpaid", "requires_payment_method"
        else:
            status, payment_status, pi_status = "complete", "paid", "succeeded"

        discount = subtotal if zero else 0
        total = 0 if zero else subtotal + tax
        pi_id = charge_id = None
        if pi_status is not None:
            pi_id = self.new_id("pi_")
            charge_id = self.new_id("ch_")
            if self.b.include_payment_intents:
                self.objects.append(
                    self.payment_intent(
                        pi_id, charge_id, submitted, currency, total, pi_status, delayed, booking_id
                    )
                )
        promo = self.new_id("promo_") if zero else None
        self.objects.append(
            self.session(
                session_id,
                t,
                mode="payment",
                status=status,
                payment_status=payment_status,
                currency=currency,
                subtotal=subtotal,
                discount=discount,
                tax=tax,
                total=total,
                methods=("acss_debit",) if delayed else ("card", "link"),
                metadata=metadata,
                pi_id=pi_id,
                promo=promo,
            )
        )
        if payment_status != "paid":
            return

        refunded = self.maybe_refund(settle, pi_id, charge_id, currency, total, booking_id)
        sent, sent_at = self.sending(settle)
        self.conversions.append(
            Conversion(
                event_id=session_id,
                event_name="Purchase",
                event_time=settle,
                created=t,
                livemode=p.livemode,
                customer=self.customer_id,
                currency=currency,
                value=total,
                ad_id=metadata.get("ad_id"),
                opted_out=p.opted_out,
                sent=sent,
                sent_at=sent_at if sent else None,
                refunded=refunded,
            )
        )

    def maybe_refund(
        self, paid_at: int, pi_id: str, charge_id: str, currency: str, total: int, booking_id: str
    ) -> int:
        rng = self.rng
        if rng.random() >= _REFUND_SHARE:
            return 0
        created = paid_at + _between(rng, 3_600, 12 * _DAY)
        full = rng.random() < 0.65
        amount = total if full else max(1, round(total * _pick(rng, (0.25, 0.3, 0.5))))
        if created >= self.b.end_ts:
            return 0
        self.objects.append(
            {
                "id": self.new_id("re_"),
                "object": "refund",
                "amount": amount,
                "balance_transaction": self.new_id("txn_"),
                "charge": charge_id,
                "created": created,
                "currency": currency,
                "destination_details": {
                    "card": {
                        "reference": None,
                        "reference_status": "pending",
                        "reference_type": "acquirer_reference_number",
                        "type": "refund",
                    },
                    "type": "card",
                },
                "metadata": {"booking_id": booking_id},
                "payment_intent": pi_id,
                "reason": "requested_by_customer",
                "receipt_number": None,
                "source_transfer_reversal": None,
                "status": "succeeded",
                "transfer_reversal": None,
            }
        )
        return amount

    # -- memberships ---------------------------------------------------------------------------

    def membership(self, t: int) -> int:
        """A Checkout Session in subscription mode, the Subscription and its invoices; returns when
        the customer is next active."""
        p, rng, end = self.p, self.rng, self.b.end_ts
        slug, description, cad_cents, _ = _weighted(rng, _PLANS, _PLAN_CUM)
        tax = round(cad_cents * _GST)
        total = cad_cents + tax
        metadata = self.tracking(t, f"/memberships/{slug}", self.channel(member=True))
        session_id = self.new_id("cs_live_" if p.livemode else "cs_test_")
        started = t + _between(rng, 30, 900)
        cancel_request = (
            started + _between(rng, 5 * _DAY, 80 * _DAY) if rng.random() < _CANCEL_SHARE else None
        )
        sub_id, item_id = self.new_id("sub_"), self.new_id("si_")
        price_id, product_id = f"price_1{self.b._account}{slug.replace('-', '')[:10]}", f"prod_{slug}"

        if started >= end:  # still on the Checkout page when the window closes
            self.objects.append(
                self.session(
                    session_id,
                    t,
                    mode="subscription",
                    status="open",
                    payment_status="unpaid",
                    currency="cad",
                    subtotal=cad_cents,
                    tax=tax,
                    total=total,
                    metadata=metadata,
                )
            )
            return t

        invoices = []
        period_start, k = started, 0
        while True:
            paid_at = period_start + (2 if k == 0 else 3_600 + _between(rng, 5, 300))
            invoices.append(
                self.invoice(
                    sub_id,
                    item_id,
                    price_id,
                    product_id,
                    description,
                    k,
                    period_start,
                    paid_at,
                    cad_cents,
                    tax,
                    metadata,
                )
            )
            next_start = _add_months(started, k + 1)
            if next_start >= end or (cancel_request is not None and cancel_request < next_start):
                break
            period_start, k = next_start, k + 1

        period_end = _add_months(started, k + 1)
        ended_at = None
        if cancel_request is not None and cancel_request < end:
            ended_at = period_end if period_end < end else None
        self.objects.append(
            self.session(
                session_id,
                t,
                mode="subscription",
                status="complete",
                payment_status="paid",
                currency="cad",
                subtotal=cad_cents,
                tax=tax,
                total=total,
                metadata=metadata,
                sub_id=sub_id,
                invoice_id=invoices[0]["id"],
            )
        )
        self.objects.append(
            self.subscription(
                sub_id,
                item_id,
                price_id,
                product_id,
                cad_cents,
                started,
                period_start,
                period_end,
                invoices[-1]["id"],
                metadata,
                canceled_at=cancel_request if cancel_request is not None and cancel_request < end else None,
                ended_at=ended_at,
            )
        )
        self.objects.extend(invoices)

        first_paid = invoices[0]["status_transitions"]["paid_at"]
        sent, sent_at = self.sending(first_paid)
        self.conversions.append(
            Conversion(
                event_id=sub_id,
                event_name="Subscribe",
                event_time=first_paid,
                created=started,
                livemode=p.livemode,
                customer=self.customer_id,
                currency="cad",
                value=total,
                ad_id=metadata.get("ad_id"),
                opted_out=p.opted_out,
                sent=sent,
                sent_at=sent_at if sent else None,
                refunded=0,
            )
        )
        return started

    # -- object shapes -------------------------------------------------------------------------

    def customer(self) -> dict:
        p = self.p
        return {
            "id": self.customer_id,
            "object": "customer",
            "address": p.address,
            "balance": 0,
            "created": p.signup,
            "currency": "cad" if self.invoices else None,
            "default_source": None,
            "delinquent": False,
            "description": None,
            "discount": None,
            "email": p.email,
            "invoice_prefix": self.invoice_prefix,
            "invoice_settings": {
                "custom_fields": None,
                "default_payment_method": None,
                "footer": None,
                "rendering_options": None,
            },
            "livemode": p.livemode,
            "metadata": {"studio_user_id": f"u_{p.index + 1}"},
            "name": p.name,
            "next_invoice_sequence": self.invoices + 1,
            "phone": p.phone,
            "preferred_locales": [p.locale],
            "shipping": None,
            "tax_exempt": "none",
            "test_clock": None,
        }

    def customer_details(self, status: str) -> dict | None:
        p = self.p
        if status == "open":
            return None
        complete = status == "complete"
        return {
            "address": p.address if complete else None,
            "business_name": None,
            "email": p.email,
            "individual_name": None,
            "name": p.name if complete else None,
            "phone": p.phone if complete else None,
            "tax_exempt": "none",
            "tax_ids": [],
        }

    def session(
        self,
        session_id: str,
        created: int,
        *,
        mode: str,
        status: str,
        payment_status: str,
        currency: str,
        subtotal: int,
        tax: int,
        total: int,
        metadata: dict,
        discount: int = 0,
        methods: tuple[str, ...] = ("card", "link"),
        pi_id: str | None = None,
        sub_id: str | None = None,
        invoice_id: str | None = None,
        promo: str | None = None,
    ) -> dict:
        payment = mode == "payment"
        return {
            "id": session_id,
            "object": "checkout.session",
            "adaptive_pricing": {"enabled": False},
            "after_expiration": None,
            "allow_promotion_codes": True,
            "amount_subtotal": subtotal,
            "amount_total": total,
            "automatic_tax": {"enabled": False, "liability": None, "provider": None, "status": None},
            "billing_address_collection": "required",
            "cancel_url": f"{_SITE}/checkout/cancelled",
            "client_reference_id": metadata.get("booking_id"),
            "client_secret": None,
            "collected_information": None,
            "consent": None,
            "consent_collection": None,
            "created": created,
            "currency": currency,
            "currency_conversion": None,
            "custom_fields": [],
            "custom_text": {
                "after_submit": None,
                "shipping_address": None,
                "submit": None,
                "terms_of_service_acceptance": None,
            },
            "customer": self.customer_id,
            "customer_creation": None,
            "customer_details": self.customer_details(status),
            "customer_email": None,
            "discounts": [{"coupon": None, "promotion_code": promo}] if promo else [],
            "expires_at": created + _DAY,
            "invoice": invoice_id,
            "invoice_creation": {"enabled": False, "invoice_data": None} if payment else None,
            "livemode": self.p.livemode,
            "locale": "auto",
            "metadata": metadata,
            "mode": mode,
            "payment_intent": pi_id,
            "payment_link": None,
            "payment_method_collection": "if_required" if payment else "always",
            "payment_method_configuration_details": None,
            "payment_method_options": {},
            "payment_method_types": list(methods),
            "payment_status": payment_status,
            "phone_number_collection": {"enabled": True},
            "recovered_from": None,
            "saved_payment_method_options": None,
            "setup_intent": None,
            "shipping_address_collection": None,
            "shipping_cost": None,
            "shipping_options": [],
            "status": status,
            "submit_type": "book" if payment else None,
            "subscription": sub_id,
            "success_url": f"{_SITE}/checkout/thanks?session_id={{CHECKOUT_SESSION_ID}}",
            "total_details": {"amount_discount": discount, "amount_shipping": 0, "amount_tax": tax},
            "ui_mode": "hosted_page",
            "url": f"https://checkout.stripe.com/c/pay/{session_id}" if status == "open" else None,
        }

    def payment_intent(
        self,
        pi_id: str,
        charge_id: str,
        created: int,
        currency: str,
        amount: int,
        status: str,
        delayed: bool,
        booking_id: str,
    ) -> dict:
        succeeded = status == "succeeded"
        return {
            "id": pi_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_details": {"tip": {}},
            "amount_received": amount if succeeded else 0,
            "application": None,
            "application_fee_amount": None,
            "automatic_payment_methods": None,
            "canceled_at": None,
            "cancellation_reason": None,
            "capture_method": "automatic_async",
            "client_secret": f"{pi_id}_secret_{self.random_chars(25)}",
            "confirmation_method": "automatic",
            "created": created,
            "currency": currency,
            "customer": self.customer_id,
            "description": None,
            "last_payment_error": (
                {
                    "code": "payment_method_not_available",
                    "message": "The bank declined the debit.",
                    "type": "card_error",
                }
                if status == "requires_payment_method"
                else None
            ),
            "latest_charge": charge_id,
            "livemode": self.p.livemode,
            "metadata": {"booking_id": booking_id},
            "next_action": None,
            "on_behalf_of": None,
            "payment_method": self.new_id("pm_"),
            "payment_method_configuration_details": None,
            "payment_method_options": {},
            "payment_method_types": ["acss_debit"] if delayed else ["card", "link"],
            "processing": None,
            "receipt_email": None,
            "review": None,
            "setup_future_usage": None,
            "shipping": None,
            "source": None,
            "statement_descriptor": None,
            "statement_descriptor_suffix": None,
            "status": status,
            "transfer_data": None,
            "transfer_group": None,
        }

    def subscription(
        self,
        sub_id: str,
        item_id: str,
        price_id: str,
        product_id: str,
        unit_amount: int,
        started: int,
        period_start: int,
        period_end: int,
        latest_invoice: str,
        metadata: dict,
        *,
        canceled_at: int | None,
        ended_at: int | None,
    ) -> dict:
        p = self.p
        ended = ended_at is not None
        return {
            "id": sub_id,
            "object": "subscription",
            "application": None,
            "application_fee_percent": None,
            "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
            "billing_cycle_anchor": started,
            "billing_cycle_anchor_config": None,
            "billing_mode": {"flexible": None, "type": "classic"},
            "billing_thresholds": None,
            "cancel_at": period_end if canceled_at is not None else None,
            "cancel_at_period_end": canceled_at is not None and not ended,
            "canceled_at": canceled_at,
            "cancellation_details": {
                "comment": None,
                "feedback": _pick(self.rng, _CANCEL_FEEDBACK) if canceled_at is not None else None,
                "reason": "cancellation_requested" if canceled_at is not None else None,
            },
            "collection_method": "charge_automatically",
            "created": started,
            "currency": "cad",
            "customer": self.customer_id,
            "days_until_due": None,
            "default_payment_method": self.new_id("pm_"),
            "default_source": None,
            "default_tax_rates": [],
            "description": None,
            "discounts": [],
            "ended_at": ended_at,
            "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
            "items": {
                "object": "list",
                "data": [
                    {
                        "id": item_id,
                        "object": "subscription_item",
                        "billing_thresholds": None,
                        "created": started,
                        "current_period_end": period_end,
                        "current_period_start": period_start,
                        "discounts": [],
                        "metadata": {},
                        "price": {
                            "id": price_id,
                            "object": "price",
                            "active": True,
                            "billing_scheme": "per_unit",
                            "currency": "cad",
                            "livemode": p.livemode,
                            "lookup_key": None,
                            "metadata": {},
                            "nickname": None,
                            "product": product_id,
                            "recurring": {
                                "interval": "month",
                                "interval_count": 1,
                                "meter": None,
                                "usage_type": "licensed",
                            },
                            "tax_behavior": "exclusive",
                            "type": "recurring",
                            "unit_amount": unit_amount,
                            "unit_amount_decimal": str(unit_amount),
                        },
                        "quantity": 1,
                        "subscription": sub_id,
                        "tax_rates": [],
                    }
                ],
                "has_more": False,
                "total_count": 1,
                "url": f"/v1/subscription_items?subscription={sub_id}",
            },
            "latest_invoice": latest_invoice,
            "livemode": p.livemode,
            "metadata": metadata,
            "next_pending_invoice_item_invoice": None,
            "on_behalf_of": None,
            "pause_collection": None,
            "payment_settings": {
                "payment_method_options": None,
                "payment_method_types": None,
                "save_default_payment_method": "off",
            },
            "pending_invoice_item_interval": None,
            "pending_setup_intent": None,
            "pending_update": None,
            "schedule": None,
            "start_date": started,
            "status": "canceled" if ended else "active",
            "test_clock": None,
            "transfer_data": None,
            "trial_end": None,
            "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
            "trial_start": None,
        }

    def invoice(
        self,
        sub_id: str,
        item_id: str,
        price_id: str,
        product_id: str,
        description: str,
        cycle: int,
        period_start: int,
        paid_at: int,
        subtotal: int,
        tax: int,
        metadata: dict,
    ) -> dict:
        """The first (`subscription_create`) or a renewal (`subscription_cycle`) invoice. A renewal
        created just before `end` may still be a draft: Stripe finalizes about an hour later."""
        p = self.p
        invoice_id, line_id = self.new_id("in_"), self.new_id("il_")
        total = subtotal + tax
        paid = paid_at < self.b.end_ts
        finalized_at = (period_start if cycle == 0 else paid_at - 5) if paid else None
        self.invoices += 1
        previous_start = _add_months(period_start, -1) if cycle else period_start
        period_end = _add_months(period_start, 1)
        return {
            "id": invoice_id,
            "object": "invoice",
            "account_country": "CA",
            "account_name": "Studio Example Edmonton",
            "account_tax_ids": None,
            "amount_due": total,
            "amount_overpaid": 0,
            "amount_paid": total if paid else 0,
            "amount_remaining": 0 if paid else total,
            "amount_shipping": 0,
            "application": None,
            "attempt_count": 1 if paid else 0,
            "attempted": paid,
            "auto_advance": not paid,
            "automatic_tax": {
                "disabled_reason": None,
                "enabled": False,
                "liability": None,
                "provider": None,
                "status": None,
            },
            "automatically_finalizes_at": None if paid else period_start + 3_600,
            "billing_reason": "subscription_cycle" if cycle else "subscription_create",
            "collection_method": "charge_automatically",
            "created": period_start,
            "currency": "cad",
            "custom_fields": None,
            "customer": self.customer_id,
            "customer_address": p.address,
            "customer_email": p.email,
            "customer_name": p.name,
            "customer_phone": p.phone,
            "customer_shipping": None,
            "customer_tax_exempt": "none",
            "customer_tax_ids": [],
            "default_payment_method": None,
            "default_source": None,
            "default_tax_rates": [],
            "description": None,
            "discounts": [],
            "due_date": None,
            "effective_at": finalized_at,
            "ending_balance": 0 if paid else None,
            "footer": None,
            "from_invoice": None,
            "hosted_invoice_url": f"https://invoice.stripe.com/i/acct_{self.b._account}/{invoice_id}"
            if paid
            else None,
            "invoice_pdf": f"https://pay.stripe.com/invoice/acct_{self.b._account}/{invoice_id}/pdf"
            if paid
            else None,
            "issuer": {"type": "self"},
            "last_finalization_error": None,
            "latest_revision": None,
            "lines": {
                "object": "list",
                "data": [
                    {
                        "id": line_id,
                        "object": "line_item",
                        "amount": subtotal,
                        "currency": "cad",
                        "description": f"1 × {description} (at ${subtotal / 100:.2f} / month)",
                        "discount_amounts": [],
                        "discountable": True,
                        "discounts": [],
                        "invoice": invoice_id,
                        "livemode": p.livemode,
                        "metadata": {},
                        "parent": {
                            "invoice_item_details": None,
                            "subscription_item_details": {
                                "invoice_item": None,
                                "proration": False,
                                "proration_details": {"credited_items": None},
                                "subscription": sub_id,
                                "subscription_item": item_id,
                            },
                            "type": "subscription_item_details",
                        },
                        "period": {"end": period_end, "start": period_start},
                        "pretax_credit_amounts": [],
                        "pricing": {
                            "price_details": {"price": price_id, "product": product_id},
                            "type": "price_details",
                            "unit_amount_decimal": str(subtotal),
                        },
                        "quantity": 1,
                        "taxes": [
                            {
                                "amount": tax,
                                "tax_behavior": "exclusive",
                                "taxability_reason": "standard_rated",
                                "taxable_amount": subtotal,
                                "type": "tax_rate_details",
                            }
                        ],
                    }
                ],
                "has_more": False,
                "total_count": 1,
                "url": f"/v1/invoices/{invoice_id}/lines",
            },
            "livemode": p.livemode,
            "metadata": {},
            "next_payment_attempt": None if paid else period_start + 3_600,
            "number": f"{self.invoice_prefix}-{self.invoices:04d}" if paid else None,
            "on_behalf_of": None,
            "parent": {
                "quote_details": None,
                "subscription_details": {"metadata": metadata, "subscription": sub_id},
                "type": "subscription_details",
            },
            "payment_settings": {
                "default_mandate": None,
                "payment_method_options": None,
                "payment_method_types": None,
            },
            "period_end": period_start,
            "period_start": previous_start,
            "post_payment_credit_notes_amount": 0,
            "pre_payment_credit_notes_amount": 0,
            "receipt_number": None,
            "rendering": None,
            "shipping_cost": None,
            "shipping_details": None,
            "starting_balance": 0,
            "statement_descriptor": None,
            "status": "paid" if paid else "draft",
            "status_transitions": {
                "finalized_at": finalized_at,
                "marked_uncollectible_at": None,
                "paid_at": paid_at if paid else None,
                "voided_at": None,
            },
            "subtotal": subtotal,
            "subtotal_excluding_tax": subtotal,
            "test_clock": None,
            "total": total,
            "total_discount_amounts": [],
            "total_excluding_tax": subtotal,
            "total_pretax_credit_amounts": [],
            "total_taxes": [
                {
                    "amount": tax,
                    "tax_behavior": "exclusive",
                    "taxability_reason": "standard_rated",
                    "taxable_amount": subtotal,
                    "type": "tax_rate_details",
                }
            ],
            "webhooks_delivered_at": period_start if paid else None,
        }


def generate(
    *,
    seed: int = 7,
    customers: int = 400,
    days: int = 60,
    end: datetime,
    unsent_share: float = 1 / 3,
    test_mode_share: float = 0.015,
    opt_out_share: float = 0.03,
    include_payment_intents: bool = True,
) -> Business:
    """Describe the studio's business over `[end - days, end)`; nothing is generated until iterated.

    `end` must be timezone-aware: the generator never reads the clock, so a demo and a test that pass
    the same arguments see the same business.
    """
    if end.tzinfo is None or end.utcoffset() is None:
        raise ValueError(f"end must be a timezone-aware datetime (UTC), got naive {end.isoformat()}")
    if customers < 0:
        raise ValueError(f"customers must be >= 0, got {customers}")
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    for name, share in (
        ("unsent_share", unsent_share),
        ("test_mode_share", test_mode_share),
        ("opt_out_share", opt_out_share),
    ):
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"{name} must be between 0 and 1, got {share}")
    return Business(
        seed=seed,
        customers=customers,
        days=days,
        end=end.astimezone(UTC),
        unsent_share=unsent_share,
        test_mode_share=test_mode_share,
        opt_out_share=opt_out_share,
        include_payment_intents=include_payment_intents,
    )


def write_fixture(business: Business, path: str | Path) -> int:
    """Write every Stripe object as JSON Lines (UTF-8), streaming; returns how many were written."""
    try:  # msgspec comes with Airflow and encodes about three times faster than the standard library
        from msgspec.json import Encoder

        encode = Encoder().encode
    except ImportError:
        json_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

        def encode(obj: dict) -> bytes:
            return json_encode(obj).encode()

    count = 0
    with open(path, "wb") as out:
        for story in business._stories(None):
            out.write(b"".join(encode(obj) + b"\n" for obj in story.objects))
            count += len(story.objects)
    return count


# -- helpers -----------------------------------------------------------------------------------


def _b62(n: int, width: int) -> str:
    digits = []
    for _ in range(width):
        n, r = divmod(n, 62)
        digits.append(_B62[r])
    if n:
        raise ValueError(f"{n} does not fit in {width} base-62 digits")
    return "".join(reversed(digits))


_SEQUENCE_IDS = [_b62(n * _SCRAMBLE_SEQUENCE % 62**3, 3) for n in range(4096)]


def _b62_random(rng: random.Random, k: int) -> str:
    """`k` random alphanumerics. Base64 of random bytes with `+` and `/` folded onto two letters is
    several times faster than `rng.choices`, and ids need to look random, not be uniform."""
    return b2a_base64(rng.randbytes(k * 3 // 4 + 3), newline=False).translate(_FOLD_B64)[:k].decode()


def _fbclid(rng: random.Random) -> str:
    return "IwAR" + urlsafe_b64encode(rng.randbytes(42))[:56].decode()


def _between(rng: random.Random, low: int, high: int) -> int:
    """Like `rng.randint(low, high)`, three times faster; the bias is far below what a demo can see."""
    return low + int(rng.random() * (high - low + 1))


def _weighted(rng: random.Random, options, cum_weights):
    """`rng.choices(options, cum_weights=...)[0]` without building a list."""
    return options[bisect(cum_weights, rng.random() * cum_weights[-1])]


def _pick(rng: random.Random, options):
    return options[int(rng.random() * len(options))]


def _unix(moment: datetime | int) -> int:
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            raise ValueError(f"window bounds must be timezone-aware, got naive {moment.isoformat()}")
        return int(moment.timestamp())
    return int(moment)


def _add_months(ts: int, months: int) -> int:
    """`ts` moved by whole calendar months, the day clamped to the month's length (as Stripe bills)."""
    moment = datetime.fromtimestamp(ts, UTC)
    zero_based = moment.month - 1 + months
    year, month = moment.year + zero_based // 12, zero_based % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return int(moment.replace(year=year, month=month, day=day).timestamp())


def _price(rng: random.Random, cad_cents: int) -> tuple[str, int]:
    """A booking's currency and pre-tax amount in that currency's minor unit; most pay in CAD."""
    roll = rng.random()
    for currency, upto, factor, step in _CURRENCIES:
        if roll < upto:
            return currency, max(step, round(cad_cents * factor / step) * step)
    raise AssertionError("currency shares must end at 1.0")


@cache
def _ascii(text: str) -> str:
    """How people spell their name in an email address: Zoë -> Zoe, Søren -> Soren."""
    return unicodedata.normalize("NFKD", text.translate(_UNDECOMPOSABLE)).encode("ascii", "ignore").decode()


def _typed_name(rng: random.Random, first: str, last: str) -> str:
    """A name as people type it into Checkout: mostly proper case, sometimes shouting or sloppy."""
    name = f"{first} {last}"
    roll = rng.random()
    if roll < 0.08:
        return name.upper()
    if roll < 0.13:
        return name.lower()
    if roll < 0.17:
        return f"{first}  {last} "
    if roll < 0.20:
        return f"{first} {last[0]}."
    return name


def _typed_email(rng: random.Random, first: str, last: str, i: int) -> str:
    """A unique email (the customer index is part of it) as typed: case and stray spaces vary."""
    f, s = _ascii(first).lower(), _ascii(last).lower().replace("'", "").replace(" ", "")
    local = _pick(rng, (f"{f}.{s}", f"{f}{s}", f"{f[0]}.{s}", f"{f}_{s}", f"{s}.{f}"))
    email = f"{local}{i}@{_pick(rng, _EMAIL_DOMAINS)}"
    roll = rng.random()
    if roll < 0.10:
        email = email[0].upper() + email[1:]
    elif roll < 0.15:
        at = email.index("@")
        email = email[:at].title() + email[at:].title()
    elif roll < 0.17:
        email = email.upper()
    if rng.random() < 0.06:
        email = _pick(rng, (f" {email}", f"{email} ", f"{email}  "))
    return email


def _typed_phone(rng: random.Random) -> str:
    """An Edmonton-area number in the fictional 555-0100..0199 range, formatted as the customer typed it."""
    return _pick(rng, _PHONE_FORMATS).format(a=_pick(rng, _AREA_CODES), x=f"{_between(rng, 0, 99):02d}")


def _address(rng: random.Random) -> dict:
    cities, prefixes, streets = _weighted(rng, _CITIES, _CITY_CUM)
    if streets == "grid" and rng.random() < 0.7:
        street = _between(rng, 50, 180)
        line1 = (
            f"{street * 100 + _between(rng, 1, 99)} {_between(rng, 23, 137)} {_pick(rng, ('Ave', 'St'))} NW"
        )
    else:
        line1 = f"{_between(rng, 1, 399)} {_pick(rng, _NAMED_STREETS[streets])}"
    letters = _POSTAL_LETTERS
    postal = f"{_pick(rng, prefixes)} {_between(rng, 0, 9)}{_pick(rng, letters)}{_between(rng, 0, 9)}"
    roll = rng.random()
    if roll < 0.10:
        postal = postal.replace(" ", "")
    elif roll < 0.15:
        postal = postal.lower()
    return {
        "city": _pick(rng, cities),
        "country": "CA",
        "line1": line1,
        "line2": _pick(rng, (f"Unit {_between(rng, 101, 2408)}", f"Suite {_between(rng, 1, 9)}00"))
        if rng.random() < 0.2
        else None,
        "postal_code": postal,
        "state": _pick(rng, _PROVINCES),
    }


def _build_ads(seed: int) -> tuple[list[dict], list[float], list[float]]:
    """Meta's campaign > ad set > ad structure with 18-digit ids, and the cumulative weights with which
    bookings and memberships pick an ad."""
    rng = random.Random(f"{seed}:ads")
    used: set[str] = set()

    def meta_id() -> str:
        while True:
            candidate = f"12021{rng.randrange(10**12, 10**13)}"
            if candidate not in used:
                used.add(candidate)
                return candidate

    ads, booking_weights, member_weights = [], [], []
    for campaign_name, ad_sets in _CAMPAIGNS:
        campaign_id = meta_id()
        for adset_name, ad_rows in ad_sets:
            adset_id = meta_id()
            for ad_name, booking_weight, member_weight in ad_rows:
                ads.append(
                    {
                        "campaign_id": campaign_id,
                        "campaign_name": campaign_name,
                        "adset_id": adset_id,
                        "adset_name": adset_name,
                        "ad_id": meta_id(),
                        "ad_name": ad_name,
                    }
                )
                booking_weights.append(booking_weight)
                member_weights.append(member_weight)
    return ads, list(accumulate(booking_weights)), list(accumulate(member_weights))


def _campaign_of(ads: list[dict], ad_id: str) -> str:
    for ad in ads:
        if ad["ad_id"] == ad_id:
            return ad["campaign_id"]
    raise KeyError(ad_id)
