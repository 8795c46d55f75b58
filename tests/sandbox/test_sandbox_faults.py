"""Fault injection, seen through the real SDKs: 5xx, throttling, slow answers and timeouts."""

from __future__ import annotations

import json
import time

import pytest
import requests
import stripe
from sandbox_helpers import ACCESS_TOKEN, PIXEL_ID, capi_event, customer, sdk_event

from adloop.sandbox.client import SandboxControlError
from adloop.sandbox.faults import FaultInjector


def _send_sdk(events):
    from facebook_business.adobjects.serverside.event_request import EventRequest

    return EventRequest(pixel_id=PIXEL_ID, events=events).execute()


def _post_raw(sandbox, events, timeout=10.0):
    return requests.post(
        f"{sandbox.meta_url}/v26.0/{PIXEL_ID}/events",
        params={"access_token": ACCESS_TOKEN},
        data={"data": json.dumps(events)},
        timeout=timeout,
    )


def test_next_two_calls_fail_with_500_then_succeed(meta_api, control):
    from facebook_business.exceptions import FacebookRequestError

    control.add_fault("meta", "http_500", count=2, path_contains="/events")

    for _ in range(2):
        with pytest.raises(FacebookRequestError) as error:
            _send_sdk([sdk_event(1)])
        assert error.value.http_status() == 500
        assert error.value.api_transient_error() is True
    assert _send_sdk([sdk_event(1)]).events_received == 1

    summary = control.summary()
    assert (summary["requests"], summary["faulted_requests"], summary["events_counted"]) == (3, 2, 1)
    assert control.faults("meta") == []  # the rule retired itself after two calls


def test_throttle_code_17_with_usage_headers_at_100(meta_api, control):
    from facebook_business.exceptions import FacebookRequestError

    control.add_fault("meta", "throttle", code=17, count=1, regain_minutes=3)

    with pytest.raises(FacebookRequestError) as error:
        _send_sdk([sdk_event(1)])

    assert error.value.api_error_code() == 17
    assert error.value.api_error_subcode() == 2446079
    assert error.value.http_status() == 400
    headers = error.value.http_headers()
    buc = json.loads(headers["X-Business-Use-Case-Usage"])[PIXEL_ID][0]
    assert buc["call_count"] == 100
    assert buc["estimated_time_to_regain_access"] == 3
    assert json.loads(headers["X-Ad-Account-Usage"])["acc_id_util_pct"] == 100
    assert control.summary()["events_received"] == 0
    assert _send_sdk([sdk_event(1)]).events_received == 1


@pytest.mark.parametrize(("code", "status"), [(4, 400), (613, 400), (80004, 429)])
def test_other_throttle_codes(sandbox, control, code, status):
    control.add_fault("meta", "throttle", code=code, status=status, count=1)
    response = _post_raw(sandbox, [capi_event()])
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_stripe_429_is_a_rate_limit_error_and_not_retried(sandbox, control):
    sandbox.store.insert_stripe_objects([customer(1, 1_780_000_000)])
    client = stripe.StripeClient(
        "sk_test_x", base_addresses={"api": sandbox.stripe_url}, max_network_retries=2
    )
    control.add_fault("stripe", "throttle", count=1)

    with pytest.raises(stripe.RateLimitError) as error:
        client.v1.customers.list()

    assert error.value.http_status == 429
    assert error.value.json_body["error"]["code"] == "rate_limit"
    assert control.stats("stripe")["requests"] == 1  # stripe-python does not retry a plain 429
    assert len(client.v1.customers.list().data) == 1


def test_stripe_500s_are_retried_by_the_sdk(sandbox, control):
    sandbox.store.insert_stripe_objects([customer(1, 1_780_000_000)])
    client = stripe.StripeClient(
        "sk_test_x", base_addresses={"api": sandbox.stripe_url}, max_network_retries=2
    )
    control.add_fault("stripe", "http_503", count=1)

    assert len(client.v1.customers.list().data) == 1
    assert control.stats("stripe")["status:503"] == 1


def test_timeout_without_processing_records_nothing(sandbox, control):
    control.add_fault("meta", "timeout", count=1, hold_seconds=3)

    started = time.monotonic()
    with pytest.raises(requests.exceptions.Timeout):
        _post_raw(sandbox, [capi_event(5)], timeout=0.3)
    assert time.monotonic() - started < 2

    assert control.summary()["events_received"] == 0
    assert control.received_requests()[0]["fault"] == "timeout"
    assert _post_raw(sandbox, [capi_event(5)]).json()["events_received"] == 1


def test_timeout_in_doubt_processes_the_request(sandbox, control):
    control.add_fault("meta", "timeout", count=1, hold_seconds=3, process_first=True)

    with pytest.raises(requests.exceptions.Timeout):
        _post_raw(sandbox, [capi_event(5)], timeout=0.3)

    assert control.summary()["events_counted"] == 1  # Meta has it although the client saw a timeout
    _post_raw(sandbox, [capi_event(5)])
    assert control.summary()["events_deduplicated"] == 1


def test_sdk_timeout_surfaces_as_requests_timeout(sandbox, control):
    from facebook_business.api import FacebookAdsApi
    from facebook_business.session import FacebookSession

    previous = FacebookSession.GRAPH
    FacebookSession.GRAPH = sandbox.meta_url
    try:
        FacebookAdsApi.init(access_token=ACCESS_TOKEN, crash_log=False, api_version="v26.0", timeout=0.3)
        control.add_fault("meta", "timeout", count=1, hold_seconds=3)
        with pytest.raises(requests.exceptions.Timeout):
            _send_sdk([sdk_event(1)])
    finally:
        FacebookSession.GRAPH = previous


def test_stripe_timeout(sandbox, control):
    sandbox.store.insert_stripe_objects([customer(1, 1_780_000_000)])
    client = stripe.StripeClient(
        "sk_test_x",
        base_addresses={"api": sandbox.stripe_url},
        http_client=stripe.RequestsClient(timeout=0.3),
    )
    control.add_fault("stripe", "timeout", count=1, hold_seconds=3)

    with pytest.raises(stripe.APIConnectionError):
        client.v1.customers.list()


def test_slow_answers_after_the_delay(sandbox, control):
    control.add_fault("meta", "slow", delay_seconds=0.4, count=1)

    started = time.monotonic()
    response = _post_raw(sandbox, [capi_event()])

    assert response.status_code == 200
    assert time.monotonic() - started >= 0.4


def test_path_filter_and_clear(sandbox, control):
    control.add_fault("meta", "http_502", path_contains="/act_")
    assert _post_raw(sandbox, [capi_event()]).status_code == 200

    control.add_fault("meta", "http_502")
    assert _post_raw(sandbox, [capi_event()]).status_code == 502
    control.clear_faults()
    assert _post_raw(sandbox, [capi_event()]).status_code == 200


def test_probability_is_deterministic_with_a_seed():
    def fired(seed):
        injector = FaultInjector()
        injector.add(kind="http_500", probability=0.3, seed=seed)
        return [injector.pick("GET", "/v1/customers") is not None for _ in range(200)]

    first = fired(42)
    assert first == fired(42)
    assert 30 < sum(first) < 90
    assert first != fired(43)


def test_python_api_on_the_app(sandbox):
    sandbox.meta.faults.add(kind="http_500", count=1)
    assert _post_raw(sandbox, [capi_event()]).status_code == 500
    assert _post_raw(sandbox, [capi_event()]).status_code == 200


def test_invalid_rule_is_refused(control):
    with pytest.raises(SandboxControlError, match="kind"):
        control.add_fault("meta", "explode")
    with pytest.raises(SandboxControlError, match="code"):
        control.add_fault("meta", "throttle", code=190)
    with pytest.raises(SandboxControlError, match="unknown"):
        control.add_fault("stripe", "slow", delay=3)
