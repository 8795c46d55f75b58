"""The SQLite state: fixture formats, bulk inserts, expanded references."""

from __future__ import annotations

import json

import pytest
from sandbox_helpers import checkout_session, customer

from adloop.sandbox.store import SandboxStore

BASE = 1_780_000_000


@pytest.fixture
def store(tmp_path):
    opened = SandboxStore(tmp_path / "state.db")
    yield opened
    opened.close()


def _objects():
    return [customer(1, BASE), checkout_session(1, BASE + 10, customer_id="cus_00000001")]


def test_fixture_as_json_list(store, tmp_path):
    path = tmp_path / "list.json"
    path.write_text(json.dumps(_objects(), indent=2))
    assert store.load_fixture(path) == 2
    assert store.get_stripe_object("cs_test_00000001")["customer"] == "cus_00000001"


def test_fixture_as_list_envelope(store, tmp_path):
    path = tmp_path / "envelope.json"
    path.write_text(
        json.dumps({"object": "list", "data": _objects(), "has_more": False, "url": "/v1/x"}, indent=1)
    )
    assert store.load_fixture(path) == 2
    assert store.count_stripe_objects("customer") == 1


def test_fixture_as_one_line_envelope(store, tmp_path):
    path = tmp_path / "envelope.json"
    path.write_text(json.dumps({"object": "list", "data": _objects()}))
    assert store.load_fixture(path) == 2


def test_fixture_as_json_lines(store, tmp_path):
    path = tmp_path / "objects.jsonl"
    path.write_text("\n".join(json.dumps(o) for o in _objects()) + "\n\n")
    assert store.load_fixture(path) == 2
    assert store.count_stripe_objects() == 2


def test_expanded_reference_is_stored_as_id_and_object(store):
    session = checkout_session(2, BASE, customer_id=None)
    session["customer"] = customer(9, BASE - 5)
    store.insert_stripe_objects([session])

    assert store.get_stripe_object(session["id"])["customer"] == "cus_00000009"
    assert store.get_stripe_object("cus_00000009")["email"] == "customer9@example.com"


def test_insert_in_chunks_and_replace(store):
    rows = [customer(n, BASE + n) for n in range(2_500)]
    assert store.insert_stripe_objects(iter(rows), chunk=1_000) == 2_500
    store.insert_stripe_objects([{**rows[0], "email": "changed@example.com"}])

    assert store.count_stripe_objects("customer") == 2_500
    assert store.get_stripe_object("cus_00000000")["email"] == "changed@example.com"


def test_list_pages_are_newest_first(store):
    store.insert_stripe_objects(customer(n, BASE + n // 3) for n in range(30))
    page, has_more = store.list_stripe_objects("customer", limit=5)
    assert has_more
    assert [p["id"] for p in page] == [f"cus_{n:08d}" for n in (29, 28, 27, 26, 25)]


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"object": "customer", "created": 1}, "without an id"),
        ({"id": "cus_1", "created": 1}, "no 'object'"),
        ({"id": "cus_1", "object": "customer", "created": "2026-01-01"}, "created="),
    ],
)
def test_invalid_objects_are_refused(store, obj, message):
    with pytest.raises(ValueError, match=message):
        store.insert_stripe_objects([obj])


def test_fixture_with_wrong_shape(store, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="expected Stripe objects"):
        store.load_fixture(path)
