"""The real stripe SDK against the Stripe emulator: lists, cursors, filters, expand, retrieve, errors."""

from __future__ import annotations

import pytest
import requests
import stripe
from sandbox_helpers import checkout_session, customer

BASE = 1_780_000_000


@pytest.fixture
def sessions(sandbox):
    """250 sessions, one every 10 minutes, several sharing a second to exercise the id tiebreak."""
    customers = [customer(n, BASE - 86400) for n in range(5)]
    rows = [
        checkout_session(n, BASE + (n // 2) * 600, customer_id=f"cus_{n % 5:08d}", status="complete")
        for n in range(250)
    ]
    sandbox.store.insert_stripe_objects(customers + rows)
    return rows


def _newest_first(rows):
    return sorted(rows, key=lambda r: (r["created"], r["id"]), reverse=True)


def test_auto_paging_iter_walks_every_page_newest_first(stripe_client, sessions, control):
    seen = [s.id for s in stripe_client.v1.checkout.sessions.list({"limit": 100}).auto_paging_iter()]

    assert seen == [r["id"] for r in _newest_first(sessions)]
    assert control.stats("stripe")["route:GET list"] == 3


def test_created_window_across_pages(stripe_client, sessions):
    gte, lt = BASE + 6000, BASE + 60000
    page = stripe_client.v1.checkout.sessions.list({"created": {"gte": gte, "lt": lt}, "limit": 7})
    seen = [s.id for s in page.auto_paging_iter()]

    expected = [r["id"] for r in _newest_first(sessions) if gte <= r["created"] < lt]
    assert len(expected) > 100
    assert seen == expected


def test_created_exact_and_gt_lte(stripe_client, sessions):
    exact = stripe_client.v1.checkout.sessions.list({"created": BASE + 600})
    assert sorted(s.id for s in exact.data) == ["cs_test_00000002", "cs_test_00000003"]

    window = stripe_client.v1.checkout.sessions.list({"created": {"gt": BASE, "lte": BASE + 1200}})
    assert [s.id for s in window.data] == [
        "cs_test_00000005",
        "cs_test_00000004",
        "cs_test_00000003",
        "cs_test_00000002",
    ]


def test_default_limit_has_more_and_url(stripe_client, sessions):
    page = stripe_client.v1.checkout.sessions.list()

    assert len(page.data) == 10
    assert page.has_more is True
    assert page.url == "/v1/checkout/sessions"


def test_ending_before_pages_backwards(stripe_client, sessions):
    ordered = [r["id"] for r in _newest_first(sessions)]
    page = stripe_client.v1.checkout.sessions.list({"ending_before": ordered[30], "limit": 10})

    assert [s.id for s in page.data] == ordered[20:30]
    assert page.has_more is True
    backwards = [s.id for s in page.auto_paging_iter()]
    assert backwards == list(reversed(ordered[:30]))


def test_expand_customer_on_list_and_retrieve(stripe_client, sessions, sandbox):
    page = stripe_client.v1.checkout.sessions.list({"limit": 3, "expand": ["data.customer"]})
    assert all(s.customer.object == "customer" for s in page.data)
    assert page.data[0].customer.email.endswith("@example.com")

    one = stripe_client.v1.checkout.sessions.retrieve("cs_test_00000007", {"expand": ["customer"]})
    assert one.customer.id == "cus_00000002"

    sandbox.store.insert_stripe_objects([checkout_session(999, BASE, customer_id="cus_not_in_store")])
    missing = stripe_client.v1.checkout.sessions.retrieve("cs_test_00000999", {"expand": ["customer"]})
    assert missing.customer == "cus_not_in_store"


def test_expand_on_list_needs_data_prefix(stripe_client, sessions):
    with pytest.raises(stripe.InvalidRequestError) as error:
        stripe_client.v1.checkout.sessions.list({"expand": ["customer"]})
    assert error.value.param == "expand"
    assert "data.customer" in str(error.value)


def test_indexed_expand_on_the_wire(sandbox, sessions):
    response = requests.get(
        f"{sandbox.stripe_url}/v1/checkout/sessions",
        params={"limit": 2, "expand[0]": "data.customer", "expand[1]": "data.payment_intent"},
        headers={"Authorization": "Bearer sk_test_x"},
        timeout=5,
    )
    body = response.json()
    assert response.status_code == 200
    assert body["data"][0]["customer"]["object"] == "customer"
    assert body["data"][0]["payment_intent"].startswith("pi_")  # not in the store: stays an id


def test_subscription_filters_and_invoice_parent(stripe_client, sandbox):
    subs = [
        {
            "id": "sub_a",
            "object": "subscription",
            "created": BASE,
            "livemode": False,
            "status": "active",
            "customer": "cus_1",
            "latest_invoice": "in_a",
        },
        {
            "id": "sub_b",
            "object": "subscription",
            "created": BASE + 1,
            "livemode": False,
            "status": "canceled",
            "customer": "cus_1",
            "latest_invoice": None,
        },
        {
            "id": "sub_c",
            "object": "subscription",
            "created": BASE + 2,
            "livemode": False,
            "status": "incomplete_expired",
            "customer": "cus_2",
            "latest_invoice": None,
        },
    ]
    invoices = [
        {
            "id": "in_a",
            "object": "invoice",
            "created": BASE,
            "livemode": False,
            "status": "paid",
            "customer": "cus_1",
            "parent": {"type": "subscription_details", "subscription_details": {"subscription": "sub_a"}},
        },
        {
            "id": "in_x",
            "object": "invoice",
            "created": BASE + 5,
            "livemode": False,
            "status": "open",
            "customer": "cus_2",
            "parent": None,
        },
    ]
    sandbox.store.insert_stripe_objects(subs + invoices)

    assert [s.id for s in stripe_client.v1.subscriptions.list().data] == ["sub_c", "sub_a"]
    assert [s.id for s in stripe_client.v1.subscriptions.list({"status": "all"}).data] == [
        "sub_c",
        "sub_b",
        "sub_a",
    ]
    assert [s.id for s in stripe_client.v1.subscriptions.list({"status": "ended"}).data] == ["sub_c", "sub_b"]
    assert [s.id for s in stripe_client.v1.subscriptions.list({"customer": "cus_1"}).data] == ["sub_a"]

    by_sub = stripe_client.v1.invoices.list({"subscription": "sub_a"})
    assert [i.id for i in by_sub.data] == ["in_a"]

    expanded = stripe_client.v1.subscriptions.list({"status": "active", "expand": ["data.latest_invoice"]})
    assert expanded.data[0].latest_invoice.status == "paid"

    nested = stripe_client.v1.invoices.retrieve(
        "in_a", {"expand": ["parent.subscription_details.subscription"]}
    )
    assert nested.parent.subscription_details.subscription.status == "active"


def test_refunds_filter_by_payment_intent(stripe_client, sandbox):
    sandbox.store.insert_stripe_objects(
        [
            {
                "id": f"re_{n}",
                "object": "refund",
                "created": BASE + n,
                "livemode": False,
                "amount": 500,
                "payment_intent": f"pi_{n % 2}",
                "charge": f"ch_{n}",
                "status": "succeeded",
            }
            for n in range(6)
        ]
    )
    refunds = stripe_client.v1.refunds.list({"payment_intent": "pi_1"})
    assert [r.id for r in refunds.data] == ["re_5", "re_3", "re_1"]


def test_line_items_endpoint_and_expand(stripe_client, sandbox):
    items = [{"id": f"li_{n}", "object": "item", "amount_total": 100 * n, "quantity": 1} for n in range(15)]
    session = checkout_session(
        1, BASE, line_items={"object": "list", "data": items, "has_more": False, "url": "/x"}
    )
    sandbox.store.insert_stripe_objects([session])

    plain = stripe_client.v1.checkout.sessions.retrieve(session["id"])
    assert "line_items" not in plain

    listed = stripe_client.v1.checkout.sessions.line_items.list(session["id"], {"limit": 4})
    assert [i.id for i in listed.auto_paging_iter()] == [i["id"] for i in items]

    expanded = stripe_client.v1.checkout.sessions.list({"expand": ["data.line_items"]})
    assert len(expanded.data[0].line_items.data) == 15


def test_retrieve_and_livemode_passthrough(stripe_client, sandbox):
    sandbox.store.insert_stripe_objects([customer(1, BASE, livemode=True), customer(2, BASE)])

    live = stripe_client.v1.customers.retrieve("cus_00000001")
    assert live.livemode is True  # not partitioned by key mode: the client's guard must catch this
    assert live.last_response.headers["Request-Id"].startswith("req_")


def test_unknown_id_is_404_resource_missing(stripe_client, sandbox):
    sandbox.store.insert_stripe_objects([customer(1, BASE)])

    with pytest.raises(stripe.InvalidRequestError) as error:
        stripe_client.v1.checkout.sessions.retrieve("cs_test_nope")
    assert error.value.http_status == 404
    assert error.value.code == "resource_missing"

    with pytest.raises(stripe.InvalidRequestError):  # right id, wrong resource
        stripe_client.v1.subscriptions.retrieve("cus_00000001")


def test_bad_api_key_and_missing_key(sandbox):
    bad = stripe.StripeClient("pk_test_publishable", base_addresses={"api": sandbox.stripe_url})
    with pytest.raises(stripe.AuthenticationError) as error:
        bad.v1.customers.list()
    assert error.value.http_status == 401

    response = requests.get(f"{sandbox.stripe_url}/v1/customers", timeout=5)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert response.headers["Request-Id"].startswith("req_")


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"limit": 101}, "limit"),
        ({"limit": 0}, "limit"),
        ({"created": {"gte": "yesterday"}}, "created[gte]"),
        ({"starting_after": "cs_test_missing"}, "starting_after"),
        ({"status": "paid"}, "status"),
        ({"customer_account": "acct_1"}, "customer_account"),
    ],
)
def test_bad_list_params_are_400_with_param(stripe_client, sessions, params, param):
    with pytest.raises(stripe.InvalidRequestError) as error:
        stripe_client.v1.checkout.sessions.list(params)
    assert error.value.http_status == 400
    assert error.value.param == param


def test_unknown_param_rejected(sandbox):
    response = requests.get(
        f"{sandbox.stripe_url}/v1/customers",
        params={"colour": "blue"},
        headers={"Authorization": "Bearer sk_test_x"},
        timeout=5,
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "colour"


def test_a_full_last_page_has_no_more(stripe_client, sandbox, control):
    sandbox.store.insert_stripe_objects(customer(n, BASE + n) for n in range(200))

    second = stripe_client.v1.customers.list({"limit": 100, "starting_after": "cus_00000100"})

    assert len(second.data) == 100
    assert second.has_more is False
    assert len(list(stripe_client.v1.customers.list({"limit": 100}).auto_paging_iter())) == 200
    assert control.stats("stripe")["route:GET list"] == 3
