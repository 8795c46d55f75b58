"""The real facebook-business SDK (and raw requests) against the Meta emulator's Conversions API."""

from __future__ import annotations

import json
import time

import pytest
import requests
from sandbox_helpers import ACCESS_TOKEN, PIXEL_ID, capi_event, sdk_event


def _send_sdk(events, **kwargs):
    from facebook_business.adobjects.serverside.event_request import EventRequest

    return EventRequest(pixel_id=PIXEL_ID, events=events, **kwargs).execute()


def _post_raw(sandbox, events, token=ACCESS_TOKEN, **fields):
    return requests.post(
        f"{sandbox.meta_url}/v26.0/{PIXEL_ID}/events",
        params={"access_token": token} if token else {},
        data={"data": json.dumps(events), **fields},
        timeout=10,
    )


def test_valid_batch_is_accepted_and_counted(meta_api, control):
    response = _send_sdk([sdk_event(n) for n in range(50)], test_event_code="TEST123", partner_agent="adloop")

    assert response.events_received == 50
    assert response.fbtrace_id
    summary = control.summary(PIXEL_ID)
    assert summary["events_received"] == 50
    assert summary["events_counted"] == 50
    events = control.received_events(PIXEL_ID, limit=5)
    assert events[0]["test_event_code"] == "TEST123"
    assert events[0]["event"]["user_data"]["em"][0] != "customer0@example.com"  # the SDK hashed it


def test_more_than_1000_events_rejects_the_request(meta_api, control):
    from facebook_business.exceptions import FacebookRequestError

    with pytest.raises(FacebookRequestError) as error:
        _send_sdk([sdk_event(n) for n in range(1001)])

    assert error.value.http_status() == 400
    assert error.value.api_error_code() == 100
    assert control.summary()["events_received"] == 0
    assert control.summary()["rejected_requests"] == 1


def test_exactly_1000_events_is_fine(meta_api):
    assert _send_sdk([sdk_event(n) for n in range(1000)]).events_received == 1000


def test_one_event_older_than_7_days_rejects_the_whole_batch(meta_api, control):
    from facebook_business.exceptions import FacebookRequestError

    events = [sdk_event(n) for n in range(30)]
    events[17] = sdk_event(17, event_time=int(time.time()) - 8 * 86400)

    with pytest.raises(FacebookRequestError) as error:
        _send_sdk(events)

    assert "data[17]" in error.value.api_error_message()
    assert error.value.body()["error"]["error_user_title"] == "Event Timestamp Too Old"
    summary = control.summary(PIXEL_ID)
    assert summary["events_counted"] == 0
    assert summary["events_received"] == 0
    request = control.received_requests(PIXEL_ID)[-1]
    assert (request["status"], request["events_in_request"]) == (400, 30)


def test_event_in_the_future_is_rejected(sandbox):
    response = _post_raw(sandbox, [capi_event(event_time=int(time.time()) + 3600)])
    assert response.status_code == 400
    assert "data[0].event_time" in response.json()["error"]["message"]


def test_physical_store_events_may_be_older(sandbox):
    event = capi_event(action_source="physical_store", event_time=int(time.time()) - 20 * 86400)
    assert _post_raw(sandbox, [event]).status_code == 200


def test_website_event_without_client_user_agent_is_rejected(meta_api, control):
    from facebook_business.adobjects.serverside.user_data import UserData
    from facebook_business.exceptions import FacebookRequestError

    with pytest.raises(FacebookRequestError) as error:
        _send_sdk([sdk_event(0), sdk_event(1, user_data=UserData(emails=["a@example.com"]))])

    assert "data[1].user_data.client_user_agent" in error.value.api_error_message()
    assert control.summary()["events_received"] == 0


def test_website_event_without_event_source_url_is_rejected(sandbox):
    event = capi_event()
    del event["event_source_url"]
    response = _post_raw(sandbox, [event])
    assert response.status_code == 400
    assert "event_source_url" in response.json()["error"]["message"]


def test_unhashed_email_is_rejected_with_subcode(sandbox, control):
    events = [capi_event(n) for n in range(3)]
    events[2]["user_data"]["em"] = ["customer2@example.com"]

    response = _post_raw(sandbox, events)

    error = response.json()["error"]
    assert response.status_code == 400
    assert (error["code"], error["error_subcode"]) == (100, 2804016)
    assert error["type"] == "OAuthException"
    assert error["error_user_title"] == "User Parameter Not Hashed"
    assert "data[2].user_data.em" in error["message"]
    assert error["fbtrace_id"]
    assert control.summary()["events_received"] == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"user_data": {"em": ["A" * 64], "client_user_agent": "x"}}, "user_data.em"),  # upper-case hex
        ({"user_data": {"external_id": "member-42", "client_user_agent": "x"}}, "user_data.external_id"),
        ({"user_data": {"fbp": "not-a-cookie", "client_user_agent": "x"}}, "user_data.fbp"),
        ({"user_data": {"fbc": "fb.1.abc", "client_user_agent": "x"}}, "user_data.fbc"),
        ({"user_data": {}}, "user_data"),
        ({"custom_data": {"currency": "dollars", "value": 1}}, "custom_data.currency"),
        ({"custom_data": {"currency": "cad", "value": "12"}}, "custom_data.value"),
        ({"custom_data": {"currency": "cad"}}, "custom_data"),  # Purchase needs a value
        ({"action_source": "billboard"}, "action_source"),
        ({"event_time": "1780000000"}, "event_time"),
        ({"event_name": ""}, "event_name"),
    ],
)
def test_invalid_event_fields(sandbox, change, field):
    response = _post_raw(sandbox, [capi_event(0), capi_event(1, **change)])
    assert response.status_code == 400
    assert f"data[1].{field}" in response.json()["error"]["message"]


def test_non_website_event_needs_no_browser_fields(sandbox):
    event = capi_event(action_source="system_generated", event_name="Subscribe")
    del event["event_source_url"]
    event["user_data"] = {"external_id": ["a" * 64]}
    assert _post_raw(sandbox, [event]).json()["events_received"] == 1


def test_json_body_with_event_objects(sandbox):
    response = requests.post(
        f"{sandbox.meta_url}/v26.0/{PIXEL_ID}/events",
        json={"data": [capi_event(1)], "access_token": ACCESS_TOKEN},
        timeout=10,
    )
    assert response.json()["events_received"] == 1


def test_missing_access_token(sandbox):
    response = _post_raw(sandbox, [capi_event()], token=None)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == 104


def test_unknown_graph_route(sandbox):
    response = requests.get(f"{sandbox.meta_url}/v26.0/{PIXEL_ID}/nothing?access_token=x", timeout=5)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == 100


def test_dedup_within_48_hours_then_counted_again(sandbox, control):
    first = capi_event(1)
    assert _post_raw(sandbox, [first, capi_event(1)]).json()["events_received"] == 2
    assert control.summary()["events_deduplicated"] == 1  # same batch, same event_id

    other_name = capi_event(1, event_name="InitiateCheckout", custom_data={})
    _post_raw(sandbox, [other_name])
    assert control.summary()["events_counted"] == 2  # dedup key includes event_name

    control.set_clock_offset(47 * 3600)
    again = capi_event(1, event_time=int(sandbox.meta.now()) - 60)
    _post_raw(sandbox, [again])
    assert control.summary()["events_deduplicated"] == 2

    control.set_clock_offset(49 * 3600)
    late = capi_event(1, event_time=int(sandbox.meta.now()) - 60)
    _post_raw(sandbox, [late])
    summary = control.summary()
    assert (summary["events_received"], summary["events_counted"], summary["events_deduplicated"]) == (
        5,
        3,
        2,
    )

    duplicates = control.received_events(PIXEL_ID, counted=False)
    assert [e["event_id"] for e in duplicates] == ["cs_test_000001", "cs_test_000001"]


def test_dedup_is_per_pixel(sandbox, control):
    _post_raw(sandbox, [capi_event(7)])
    requests.post(
        f"{sandbox.meta_url}/v26.0/999/events",
        params={"access_token": ACCESS_TOKEN},
        data={"data": json.dumps([capi_event(7)])},
        timeout=10,
    )
    assert control.summary()["events_counted"] == 2
    assert control.summary("999")["events_received"] == 1


def test_usage_headers_rise_under_load(sandbox, control):
    control.configure_meta(usage_capacity=50, usage_window_seconds=60)
    session = requests.Session()
    usages = []
    for _ in range(30):
        response = session.post(
            f"{sandbox.meta_url}/v26.0/{PIXEL_ID}/events",
            params={"access_token": ACCESS_TOKEN},
            data={"data": json.dumps([capi_event()])},
            timeout=10,
        )
        buc = json.loads(response.headers["X-Business-Use-Case-Usage"])[PIXEL_ID][0]
        usages.append(buc["call_count"])
        assert set(buc) >= {
            "type",
            "call_count",
            "total_cputime",
            "total_time",
            "estimated_time_to_regain_access",
        }
        assert json.loads(response.headers["X-Ad-Account-Usage"])["acc_id_util_pct"] == buc["call_count"]
        assert "call_count" in json.loads(response.headers["X-App-Usage"])

    assert usages == sorted(usages)
    assert usages[0] <= 4 and usages[-1] == 60


def test_reset_clears_received_state(sandbox, control):
    _post_raw(sandbox, [capi_event()])
    control.reset()
    assert control.summary() == {
        "requests": 0,
        "rejected_requests": 0,
        "faulted_requests": 0,
        "events_received": 0,
        "events_counted": 0,
        "events_deduplicated": 0,
    }
