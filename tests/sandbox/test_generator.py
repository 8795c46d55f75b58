"""The demo business generator: reproducible, shaped like Stripe's API, realistic, and honest about
its own ground truth.

The checks below recount everything from the Stripe objects with their own code (the conversion
predicate included), so a bug in the generator's bookkeeping cannot hide behind itself.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from adloop.sandbox.generator import generate, write_fixture

END = datetime(2026, 11, 1, 7, tzinfo=UTC)
END_TS = int(END.timestamp())
DAYS = 60
START_TS = END_TS - DAYS * 86_400

ID_PREFIX = {
    "customer": "cus_",
    "payment_intent": "pi_",
    "subscription": "sub_",
    "invoice": "in_",
    "refund": "re_",
}
REQUIRED = {
    "customer": {"id", "object", "created", "livemode", "email", "name", "phone", "address", "metadata"},
    "checkout.session": {
        "id", "object", "created", "livemode", "mode", "status", "payment_status", "amount_subtotal",
        "amount_total", "currency", "customer", "customer_details", "payment_intent", "subscription",
        "invoice", "metadata", "payment_method_types", "total_details", "expires_at",
    },
    "payment_intent": {"id", "object", "created", "livemode", "amount", "amount_received", "currency",
                       "customer", "status", "latest_charge"},
    "subscription": {"id", "object", "created", "livemode", "status", "customer", "items", "latest_invoice",
                     "metadata", "start_date", "canceled_at", "ended_at", "currency"},
    "invoice": {"id", "object", "created", "livemode", "status", "customer", "billing_reason", "amount_due",
                "amount_paid", "amount_remaining", "total", "currency", "parent", "status_transitions", "lines"},
    "refund": {"id", "object", "created", "amount", "currency", "payment_intent", "charge", "status"},
}  # fmt: skip
POSTAL_CODE = re.compile(r"^[ABCEGHJ-NPRSTVXY]\d[ABCEGHJ-NPRSTV-Z] ?\d[ABCEGHJ-NPRSTV-Z]\d$", re.IGNORECASE)
FICTIONAL_PHONE = re.compile(r"555\D?01\d\d$")
DOC_IP = re.compile(r"^(192\.0\.2\.|198\.51\.100\.|203\.0\.113\.)\d{1,3}$|^2001:db8:", re.IGNORECASE)


@pytest.fixture(scope="module")
def business():
    return generate(seed=7, customers=1500, days=DAYS, end=END)


@pytest.fixture(scope="module")
def objects(business):
    return list(business.stripe_objects())


@pytest.fixture(scope="module")
def by_type(objects):
    grouped: dict[str, list[dict]] = {}
    for obj in objects:
        grouped.setdefault(obj["object"], []).append(obj)
    return grouped


def is_purchase(session: dict) -> bool:
    return (
        session["mode"] == "payment"
        and session["status"] == "complete"
        and session["payment_status"] == "paid"
    )


def first_invoices(by_type: dict) -> dict[str, dict]:
    """Each subscription's `subscription_create` invoice, keyed by subscription id."""
    return {
        invoice["parent"]["subscription_details"]["subscription"]: invoice
        for invoice in by_type["invoice"]
        if invoice["billing_reason"] == "subscription_create"
    }


def recount_conversions(by_type: dict) -> dict[str, dict]:
    """event_id -> {event_name, created, livemode, customer}, by adloop's predicate, from objects only."""
    found = {}
    for session in by_type["checkout.session"]:
        if is_purchase(session):
            found[session["id"]] = {
                "event_name": "Purchase",
                "created": session["created"],
                "livemode": session["livemode"],
                "customer": session["customer"],
            }
    for sub_id, invoice in first_invoices(by_type).items():
        if invoice["status"] == "paid":
            sub = next(s for s in by_type["subscription"] if s["id"] == sub_id)
            found[sub_id] = {
                "event_name": "Subscribe",
                "created": sub["created"],
                "livemode": sub["livemode"],
                "customer": sub["customer"],
            }
    return found


# -- determinism ----------------------------------------------------------------------------------


def test_same_seed_gives_identical_objects_and_ledger():
    a = generate(seed=11, customers=120, end=END)
    b = generate(seed=11, customers=120, end=END)

    assert list(a.stripe_objects()) == list(b.stripe_objects())
    assert list(a.webhook_ledger()) == list(b.webhook_ledger())
    assert a.ads == b.ads
    assert a.opt_out_emails() == b.opt_out_emails()


def test_different_seed_gives_a_different_business():
    a = list(generate(seed=11, customers=60, end=END).stripe_objects())
    b = list(generate(seed=12, customers=60, end=END).stripe_objects())

    assert {o["id"] for o in a}.isdisjoint({o["id"] for o in b})
    assert [o.get("email") for o in a if o["object"] == "customer"] != [
        o.get("email") for o in b if o["object"] == "customer"
    ]


def test_any_slice_of_customers_reproduces_on_its_own(business, objects):
    customer_ids = [o["id"] for o in objects if o["object"] == "customer"]
    sliced = list(business.stripe_objects(indices=range(700, 705)))

    start = objects.index(next(o for o in objects if o["id"] == customer_ids[700]))
    assert sliced == objects[start : start + len(sliced)]
    assert [o["id"] for o in sliced if o["object"] == "customer"] == customer_ids[700:705]


def test_unsent_share_changes_the_ledger_but_not_stripe():
    none_missed = generate(seed=3, customers=150, end=END, unsent_share=0.0)
    all_missed = generate(seed=3, customers=150, end=END, unsent_share=1.0)

    assert list(none_missed.stripe_objects()) == list(all_missed.stripe_objects())
    assert list(all_missed.webhook_ledger()) == []
    assert none_missed.truth()["webhook"]["unsent"] <= 2  # only what lands in the last seconds before `end`


def test_the_clock_is_never_read():
    with pytest.raises(ValueError, match="timezone-aware"):
        generate(end=datetime(2026, 11, 1))


# -- shapes -------------------------------------------------------------------------------------


def test_every_object_type_is_present_with_its_required_fields(by_type):
    assert set(by_type) == set(REQUIRED)
    for kind, fields in REQUIRED.items():
        for obj in by_type[kind]:
            missing = fields - obj.keys()
            assert not missing, f"{obj['id']} lacks {sorted(missing)}"


def test_ids_are_unique_and_look_like_stripe(objects):
    ids = [o["id"] for o in objects]
    assert len(ids) == len(set(ids))

    for obj in objects:
        if obj["object"] == "checkout.session":
            prefix = "cs_live_" if obj["livemode"] else "cs_test_"
            assert obj["id"].startswith(prefix + "a1"), obj["id"]
        else:
            assert obj["id"].startswith(ID_PREFIX[obj["object"]]), obj["id"]
        assert re.fullmatch(r"[a-z_]+_[0-9A-Za-z]{14,}", obj["id"]), obj["id"]


def test_created_is_inside_the_window_and_amounts_are_integers(objects):
    for obj in objects:
        assert START_TS <= obj["created"] < END_TS, obj["id"]
        for key in ("amount", "amount_total", "amount_subtotal", "amount_paid", "amount_due", "total"):
            if obj.get(key) is not None:
                assert type(obj[key]) is int and obj[key] >= 0, (obj["id"], key)


def test_references_resolve_by_id(by_type):
    ids = {kind: {o["id"] for o in objs} for kind, objs in by_type.items()}

    for session in by_type["checkout.session"]:
        assert session["customer"] in ids["customer"]
        if session["mode"] == "subscription" and session["status"] == "complete":
            assert session["subscription"] in ids["subscription"]
            assert session["invoice"] in ids["invoice"]
            assert session["payment_intent"] is None
        if session["payment_intent"] is not None:
            assert session["payment_intent"] in ids["payment_intent"]
    for invoice in by_type["invoice"]:
        assert "subscription" not in invoice  # gone since basil; the parent holds it
        assert invoice["parent"]["type"] == "subscription_details"
        assert invoice["parent"]["subscription_details"]["subscription"] in ids["subscription"]
    for sub in by_type["subscription"]:
        assert sub["latest_invoice"] in ids["invoice"]
    for refund in by_type["refund"]:
        assert refund["payment_intent"] in ids["payment_intent"]


def test_subscriptions_and_their_invoices_tell_a_consistent_story(by_type):
    firsts = first_invoices(by_type)
    renewals = [i for i in by_type["invoice"] if i["billing_reason"] == "subscription_cycle"]

    assert set(firsts) == {s["id"] for s in by_type["subscription"]}
    assert renewals, "two months of memberships must renew at least once"
    assert {s["status"] for s in by_type["subscription"]} == {"active", "canceled"}
    for sub in by_type["subscription"]:
        first = firsts[sub["id"]]
        assert first["status"] == "paid"
        assert first["amount_paid"] == first["total"] > 0
        assert sub["created"] <= first["status_transitions"]["paid_at"] < END_TS
        assert sub["metadata"] == first["parent"]["subscription_details"]["metadata"]
        if sub["status"] == "canceled":
            assert sub["canceled_at"] <= sub["ended_at"] < END_TS
    for invoice in renewals:
        if invoice["status"] == "paid":
            assert invoice["status_transitions"]["paid_at"] >= invoice["created"]


def test_sessions_cover_the_cases_the_reconciler_must_tell_apart(by_type):
    sessions = by_type["checkout.session"]
    payment = [s for s in sessions if s["mode"] == "payment"]

    assert {s["status"] for s in payment if s["payment_status"] == "unpaid"} >= {"open", "expired"}
    zero = [s for s in payment if s["amount_total"] == 0]
    assert zero and all(
        s["payment_status"] == "no_payment_required" and s["payment_intent"] is None
        and s["total_details"]["amount_discount"] == s["amount_subtotal"] > 0
        for s in zero
    )  # fmt: skip
    delayed = [s for s in payment if s["payment_method_types"] == ["acss_debit"]]
    assert {s["payment_status"] for s in delayed} >= {"paid"}
    assert {s["currency"] for s in sessions} >= {"cad", "usd", "jpy"}
    jpy = [s["amount_total"] for s in sessions if s["currency"] == "jpy"]
    assert all(1_000 < amount < 60_000 for amount in jpy), "yen are whole units, not cents"
    assert 0 < sum(not s["livemode"] for s in sessions) < 0.05 * len(sessions)
    refunds = by_type["refund"]
    totals = {s["payment_intent"]: s["amount_total"] for s in payment if s["payment_intent"]}
    assert {r["amount"] == totals[r["payment_intent"]] for r in refunds} == {True, False}, "full and partial"


def test_tracking_metadata_is_what_a_checkout_page_records(by_type, business):
    ad_ids = {ad["ad_id"] for ad in business.ads}
    tracked = by_type["checkout.session"] + by_type["subscription"]

    for obj in tracked:
        meta = obj["metadata"]
        assert meta["event_source_url"].startswith("https://studio.example/")
        assert meta["client_user_agent"].startswith("Mozilla/5.0")
        assert DOC_IP.match(meta["client_ip_address"]), meta["client_ip_address"]
        if "fbp" in meta:
            assert re.fullmatch(r"fb\.1\.\d{13}\.\d{10}", meta["fbp"])
        if "fbc" in meta:
            assert "ad_id" in meta, "fbc comes from an ad click"
            assert re.fullmatch(r"fb\.1\.\d{13}\.IwAR[\w-]+", meta["fbc"])
        if "ad_id" in meta:
            assert meta["ad_id"] in ad_ids
            assert f"utm_content={meta['ad_id']}" in meta["event_source_url"]
        assert all(isinstance(v, str) for v in meta.values()), "Stripe metadata values are strings"
    assert 0.3 < sum("ad_id" in o["metadata"] for o in tracked) / len(tracked) < 0.8
    bookings = [s for s in by_type["checkout.session"] if s["mode"] == "payment"]
    assert all(s["metadata"]["booking_id"] == s["client_reference_id"] for s in bookings)


# -- realism ------------------------------------------------------------------------------------


def test_customers_look_like_edmonton_people(by_type):
    customers = by_type["customer"]
    names = [c["name"] for c in customers if c["name"]]
    phones = [c["phone"] for c in customers if c["phone"]]
    emails = [c["email"] for c in customers]

    assert any(ch in "".join(names) for ch in "ëéçèïñó"), "accented names"
    assert any("'" in n for n in names) and any("-" in n for n in names)
    assert any(n.isupper() for n in names), "some type their name in capitals"
    assert 0 < sum(c["name"] is None for c in customers) < 0.1 * len(customers)
    assert 0 < sum(c["phone"] is None for c in customers) < 0.2 * len(customers)
    assert all(FICTIONAL_PHONE.search(p) for p in phones), "only the fictional 555-01xx range"
    assert sum(not p.startswith(("+", "1-")) for p in phones) > 0.6 * len(phones), "mostly no country code"
    assert any(p.startswith("+1") for p in phones)
    assert len({re.sub(r"\d", "9", p) for p in phones}) >= 5, "mixed formats"
    assert any(e != e.strip() for e in emails) and any(e != e.lower() for e in emails)
    assert len({e.strip().lower() for e in emails}) == len(emails)
    for c in customers:
        address = c["address"]
        assert POSTAL_CODE.match(address["postal_code"]), address["postal_code"]
        assert address["country"] == "CA"
        assert address["state"] in ("AB", "Alberta", "ab")
        assert address["city"].strip().lower() in (
            "edmonton",
            "st. albert",
            "st albert",
            "saint albert",
            "sherwood park",
        )
        assert c["email"].strip().rsplit(".", 1)[-1].lower() in ("example", "com", "net", "org")
        if c["email"].strip().lower().endswith(".com"):
            assert c["email"].strip().lower().endswith("@example.com")
    assert {c["address"]["postal_code"][:3].upper() for c in customers} & {"T8N", "T8A", "T8B", "T8H"}


def test_prices_are_studio_prices_in_cad(by_type):
    cad = [s for s in by_type["checkout.session"] if s["currency"] == "cad" and s["amount_total"]]
    totals = Counter(s["amount_total"] for s in cad)

    assert totals.most_common(1)[0][0] in (2625, 2415, 2310)  # a drop-in plus GST
    assert all(2_000 <= amount <= 40_000 for amount in totals)
    for session in cad:
        gst = session["total_details"]["amount_tax"]
        assert gst == round(session["amount_subtotal"] * 0.05)
        assert session["amount_total"] == session["amount_subtotal"] + gst


def test_campaign_structure_is_like_meta_and_skewed(business, by_type):
    ads = business.ads
    ids = [ad["ad_id"] for ad in ads] + list(
        {ad["adset_id"] for ad in ads} | {ad["campaign_id"] for ad in ads}
    )

    assert len({ad["campaign_id"] for ad in ads}) == 3
    assert 6 <= len({ad["adset_id"] for ad in ads}) <= 9
    assert all(re.fullmatch(r"1202\d{14}", i) for i in ids) and len(ids) == len(set(ids))
    clicks = Counter(s["metadata"].get("ad_id") for s in by_type["checkout.session"] if is_purchase(s))
    clicks.pop(None, None)
    ranked = [clicks.get(ad["ad_id"], 0) for ad in ads]
    assert max(ranked) > 10 * max(1, min(ranked)), "some ads convert well, some poorly"


# -- conversions, the ledger and the ground truth ------------------------------------------------


def test_conversions_follow_the_predicate(business, by_type):
    expected = recount_conversions(by_type)
    generated = {c.event_id: c for c in business.conversions()}

    assert generated.keys() == expected.keys()
    pis = {pi["id"]: pi for pi in by_type["payment_intent"]}
    sessions = {s["id"]: s for s in by_type["checkout.session"]}
    firsts = first_invoices(by_type)
    for event_id, c in generated.items():
        assert c.event_name == expected[event_id]["event_name"]
        assert c.created == expected[event_id]["created"] and c.livemode == expected[event_id]["livemode"]
        assert c.value > 0
        if c.event_name == "Subscribe":
            assert c.event_time == firsts[event_id]["status_transitions"]["paid_at"]
        elif sessions[event_id]["payment_method_types"] != ["acss_debit"]:
            assert c.event_time == pis[sessions[event_id]["payment_intent"]]["created"]
        else:
            assert c.event_time > c.created + 86_400, "a debit settles days later"


def test_ledger_holds_only_real_conversions_and_misses_about_a_third(business, by_type):
    expected = recount_conversions(by_type)
    ledger = list(business.webhook_ledger())
    opted_out = {e for e in business.opt_out_emails()}
    opted_out_customers = {c["id"] for c in by_type["customer"] if c["email"] in opted_out}

    ids = [row["event_id"] for row in ledger]
    assert len(ids) == len(set(ids))
    assert set(ids) <= expected.keys(), "never an unpaid, zero-amount or subscription-mode session"
    for row in ledger:
        assert row["event_name"] == expected[row["event_id"]]["event_name"]
        assert row["event_time"] < row["sent_at"] < END_TS
        assert expected[row["event_id"]]["customer"] not in opted_out_customers
    eligible = [e for e, c in expected.items() if c["customer"] not in opted_out_customers]
    assert 0.28 < 1 - len(ledger) / len(eligible) < 0.39
    assert any(not expected[e]["livemode"] for e in ids), "test mode is not the webhook's concern"


def test_opt_outs_are_a_small_share_of_customers_as_typed(business, by_type):
    opted_out = business.opt_out_emails()
    emails = {c["email"] for c in by_type["customer"]}

    assert set(opted_out) <= emails
    assert 0.01 < len(opted_out) / len(by_type["customer"]) < 0.06
    sessions = [s for s in by_type["checkout.session"] if s["customer_details"]]
    tracked = [s for s in sessions if s["customer_details"]["email"] in set(opted_out)]
    assert tracked and not any("fbp" in s["metadata"] or "fbc" in s["metadata"] for s in tracked)


def test_truth_agrees_with_a_recount_from_the_stream(business, by_type):
    truth = business.truth()
    expected = recount_conversions(by_type)
    sessions = by_type["checkout.session"]
    ledger = {row["event_id"] for row in business.webhook_ledger()}
    payments = {s["payment_intent"]: s for s in sessions if s["payment_intent"]}
    refunded = Counter()
    for refund in by_type["refund"]:
        session = payments[refund["payment_intent"]]
        refunded["full" if refund["amount"] == session["amount_total"] else "partial"] += 1

    assert truth["customers"] == len(by_type["customer"])
    assert truth["objects"] == {kind: len(objs) for kind, objs in by_type.items()}
    assert truth["conversions"] == dict(Counter(c["event_name"] for c in expected.values()))
    assert truth["livemode_conversions"] == dict(
        Counter(c["event_name"] for c in expected.values() if c["livemode"])
    )
    status = Counter(s["payment_status"] for s in sessions)
    assert truth["checkout_sessions"]["paid"] == status["paid"]
    assert truth["checkout_sessions"]["unpaid"] == status["unpaid"]
    assert truth["checkout_sessions"]["no_payment_required"] == status["no_payment_required"]
    assert truth["checkout_sessions"]["test_mode"] == sum(not s["livemode"] for s in sessions)
    assert truth["refunded_conversions"] == dict(refunded)
    assert truth["webhook"]["sent"] == len(ledger)
    assert sum(truth["webhook"].values()) == len(expected)
    assert truth["opted_out_customers"] == len(business.opt_out_emails())
    assert truth["renewal_invoices"] == sum(
        i["billing_reason"] == "subscription_cycle" for i in by_type["invoice"]
    )


def test_expected_in_window_agrees_with_a_recount(business, by_type):
    expected = recount_conversions(by_type)
    ledger = {row["event_id"] for row in business.webhook_ledger()}
    opted_out = set(business.opt_out_emails())
    opted_out_customers = {c["id"] for c in by_type["customer"] if c["email"] in opted_out}
    start, end = END - timedelta(days=7), END - timedelta(hours=1)
    lo, hi = int(start.timestamp()), int(end.timestamp())

    window = business.expected_in_window(start, end, by="created")

    recount = {"sent": set(), "unsent": set(), "opted_out": set()}
    for event_id, c in expected.items():
        if c["livemode"] and lo <= c["created"] < hi:
            key = (
                "opted_out"
                if c["customer"] in opted_out_customers
                else "sent"
                if event_id in ledger
                else "unsent"
            )
            recount[key].add(event_id)
    # What the backfill sends: the unsent less what was refunded in full, recounted from refunds.
    refunded: dict[str, int] = {}
    for refund in by_type["refund"]:
        refunded[refund["payment_intent"]] = refunded.get(refund["payment_intent"], 0) + refund["amount"]
    paid = {s["id"]: (s["payment_intent"], s["amount_total"]) for s in by_type["checkout.session"]}
    paid |= {sub_id: (i.get("payment_intent"), i["amount_paid"]) for sub_id, i in first_invoices(by_type).items()}
    refunded_in_full = {e for e, (pi, amount) in paid.items() if amount and refunded.get(pi, 0) >= amount}
    recount["to_backfill"] = recount["unsent"] - refunded_in_full
    assert refunded_in_full and business.fully_refunded_ids() == refunded_in_full & set(expected)

    assert window == recount
    assert window["sent"] and window["unsent"]

    by_time = business.expected_in_window(start, end)
    in_time = {c.event_id for c in business.conversions() if c.livemode and lo <= c.event_time < hi}
    assert set().union(*by_time.values()) == in_time
    assert by_time["sent"] <= ledger and not by_time["unsent"] & ledger


def test_fixture_is_json_lines_of_the_same_objects(tmp_path):
    small = generate(seed=5, customers=40, end=END)
    path = tmp_path / "stripe.jsonl"

    written = write_fixture(small, path)

    lines = path.read_text(encoding="utf-8").splitlines()
    assert written == len(lines)
    assert [json.loads(line) for line in lines] == list(small.stripe_objects())
