"""The Meta emulator's audience routes, driven through adloop's SDK client: Meta's documented rules."""

from __future__ import annotations

import hashlib

import pytest
from helpers import control, meta_settings

from adloop.meta.audiences import AudienceApiError, AudienceClient

SCHEMA = ["EMAIL", "PHONE", "COUNTRY"]
CA = hashlib.sha256(b"ca").hexdigest()


def rows(n: int, start: int = 0) -> list[list[str]]:
    return [
        [hashlib.sha256(f"person{i}@example.com".encode()).hexdigest(), "", CA]
        for i in range(start, start + n)
    ]


@pytest.fixture
def client(sandbox):
    return AudienceClient(meta_settings(sandbox.meta_url), "act_100200300400", sleep=lambda s: None)


@pytest.fixture
def audience_id(client):
    return client.create_custom_audience("Test audience", "for the tests")


def session(seq: int, last: bool = False, session_id: int = 77) -> dict:
    return {"session_id": session_id, "batch_seq": seq, "last_batch_flag": last}


def error_of(call) -> tuple[int, int | None]:
    with pytest.raises(AudienceApiError) as caught:
        call()
    return caught.value.error.code, caught.value.error.subcode


def test_audiences_are_created_listed_and_found_by_name(client, sandbox):
    created = client.create_custom_audience("Members", "members")
    assert client.find_by_name("Members")["id"] == created
    assert client.find_by_name("Nobody") is None
    # Listing pages through more than one page of the account's audiences.
    for i in range(30):
        client.create_custom_audience(f"A{i}", "")
    assert client.find_by_name("A29") is not None


def test_users_session_counts_and_rules(client, audience_id, sandbox):
    first = client.upload("add", audience_id, SCHEMA, rows(3), session(1))
    second = client.upload("add", audience_id, SCHEMA, rows(2, 3), session(2))
    assert (first.num_received, second.num_received) == (3, 5)  # the session's running total

    assert error_of(lambda: client.upload("add", audience_id, SCHEMA, rows(1, 9), session(2)))[0] == 100
    assert error_of(lambda: client.upload("add", audience_id, SCHEMA, rows(1, 9), session(4)))[0] == 100
    assert (
        error_of(lambda: client.upload("add", audience_id, SCHEMA, rows(1), session(2, session_id=78)))[0]
        == 100
    )

    client.upload("remove", audience_id, SCHEMA, rows(1), session(3, last=True))
    # Nothing is taken after the flagged last batch.
    assert error_of(lambda: client.upload("add", audience_id, SCHEMA, rows(1, 9), session(4)))[0] == 100
    assert control(sandbox.meta_url, f"audiences/{audience_id}/members")["count"] == 4


def test_a_users_session_ends_ninety_minutes_after_its_first_batch(client, audience_id, sandbox):
    client.upload("add", audience_id, SCHEMA, rows(1), session(1))
    sandbox.meta.clock_offset = 91 * 60
    code, _ = error_of(lambda: client.upload("add", audience_id, SCHEMA, rows(1, 1), session(2)))
    assert code == 100


def test_invalid_entries_are_counted_with_samples_and_not_added(client, audience_id, sandbox):
    data = rows(2) + [["someone@example.com", "", CA], ["ABC" + "0" * 61, "", ""]]
    result = client.upload("add", audience_id, SCHEMA, data, session(1, last=True))
    assert result.num_received == 4 and result.num_invalid_entries == 2
    assert "someone@example.com" in result.invalid_entry_samples
    assert control(sandbox.meta_url, f"audiences/{audience_id}/members")["count"] == 2


def test_at_most_ten_thousand_rows_a_request(client, audience_id):
    with pytest.raises(ValueError):
        client.upload("add", audience_id, SCHEMA, rows(10_001), session(1))
    # The emulator refuses it too, whatever the client does.
    params = {"payload": {"schema": SCHEMA, "data": rows(10_001)}, "session": session(1)}
    code, _ = error_of(
        lambda: client._call("add", lambda: client._api.call("POST", (audience_id, "users"), params))
    )
    assert code == 100


def test_usersreplace_rules(client, audience_id, sandbox):
    client.upload("add", audience_id, SCHEMA, rows(5), session(1, last=True, session_id=1))
    assert error_of(
        lambda: client.upload("replace", audience_id, SCHEMA, rows(2), session(2, session_id=2))
    ) == (2650, 1870147)
    client.upload("replace", audience_id, SCHEMA, rows(2, 10), session(1, session_id=2))
    # One replace at a time, and no /users edits while it runs.
    assert error_of(
        lambda: client.upload("replace", audience_id, SCHEMA, rows(1), session(1, session_id=3))
    ) == (2650, 1870145)
    assert error_of(lambda: client.upload("add", audience_id, SCHEMA, rows(1), session(1, session_id=4))) == (
        2650,
        1870145,
    )
    client.upload("replace", audience_id, SCHEMA, rows(2, 12), session(2, last=True, session_id=2))
    assert error_of(
        lambda: client.upload("replace", audience_id, SCHEMA, rows(1), session(3, session_id=2))
    ) == (2650, 1870159)
    expected = sorted(r[0] for r in rows(4, 10))
    assert control(sandbox.meta_url, f"audiences/{audience_id}/members")["emails"] == expected


def test_an_unfinished_replace_times_out_to_what_was_uploaded(client, audience_id, sandbox):
    client.upload("add", audience_id, SCHEMA, rows(5), session(1, last=True, session_id=1))
    client.upload("replace", audience_id, SCHEMA, rows(3, 100), session(1, session_id=2))
    sandbox.meta.clock_offset = 91 * 60
    assert error_of(
        lambda: client.upload("replace", audience_id, SCHEMA, rows(1), session(2, session_id=2))
    ) == (2650, 1870158)
    assert control(sandbox.meta_url, f"audiences/{audience_id}/members")["count"] == 3


def test_lookalike_seed_size_and_duplicates(client, audience_id, sandbox):
    code, _ = error_of(lambda: client.create_lookalike("LAL", audience_id, "CA", 0.01))
    assert code == 100  # fewer than 100 people in the seed
    client.upload("add", audience_id, SCHEMA, rows(150), session(1, last=True))
    assert (
        error_of(lambda: client.create_lookalike("LAL", audience_id, "US", 0.01))[0] == 100
    )  # not from the US
    client.create_lookalike("LAL", audience_id, "CA", 0.01)
    assert error_of(lambda: client.create_lookalike("LAL 2", audience_id, "CA", 0.01))[0] == 2654
    client.create_lookalike("LAL 2%", audience_id, "CA", 0.02)


def test_faults_apply_to_audience_calls(client, audience_id, sandbox):
    sandbox.meta.faults.add(kind="http_500", count=2, path_contains="/users")
    result = client.upload("add", audience_id, SCHEMA, rows(2), session(1, last=True))
    assert result.num_received == 2 and client.stats.retries == 2
