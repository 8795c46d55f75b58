"""Failure alerts: each failure adloop knows is told with what to do, secrets never leave, delivery works.

The Meta and Stripe failures come from the real clients (adloop's CAPI, insights and audience
clients, Stripe's SDK) talking to a local server that answers with the error under test, so the
exceptions are the ones a real run raises. Delivery goes to real local HTTP and SMTP servers.
"""

from __future__ import annotations

import email
import email.policy
import json
import logging
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from adloop import alerts
from adloop.quality.gate import GateFailed, GateResult
from adloop.settings import AlertSettings, MetaSettings

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "EAABsbCS1iHgBAOZCxyz0123456789abcdef"
STRIPE_KEY = "sk_live_51HxYzAbCdEf0123456789"
DAG = "stripe_capi_reconciliation"
RUN_ID = "scheduled__2026-05-01T09:30:00+00:00"


# --- local servers ------------------------------------------------------------------------------


class _Server:
    """A threaded HTTP server on 127.0.0.1 that answers every request with `status` and `body`."""

    def __init__(self, status: int = 200, body: dict | None = None, delay: float = 0.0):
        self.status, self.body, self.delay = status, body or {}, delay
        self.received: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.received.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "body": raw,
                        "content_type": self.headers.get("Content-Type"),
                    }
                )
                time.sleep(server.delay)
                data = json.dumps(server.body).encode()
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, *args):
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_port}"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def close(self):
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def server():
    servers = []

    def start(**kwargs) -> _Server:
        servers.append(_Server(**kwargs))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def graph_error(code: int, subcode: int | None = None, message: str = "An error", status: int = 400) -> dict:
    error = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbC123xyz"}
    if subcode:
        error["error_subcode"] = subcode
    return {"status": status, "body": {"error": error}}


# --- real failures from the real clients ---------------------------------------------------------


def meta_settings(url: str) -> MetaSettings:
    return MetaSettings(
        access_token=TOKEN,
        pixel_id="1234567890123456",
        graph_url=url,
        max_attempts=2,
        backoff_base_seconds=0.0,
        backoff_max_seconds=0.0,
        timeout_seconds=5.0,
    )


def capi_failure(url: str) -> Exception:
    from adloop.meta.capi import CapiSender

    row = {
        "event_id": "cs_live_00001",
        "event_name": "Purchase",
        "event_time": int(time.time()) - 3600,
        "action_source": "website",
        "event_source_url": "https://studio.example/book",
        "client_user_agent": "Mozilla/5.0",
        "client_ip_address": "203.0.113.7",
        "fbp": None,
        "fbc": None,
        "currency": "cad",
        "value": 25.0,
        "em": "0" * 64,
        "ph": None,
        "fn": None,
        "ln": None,
        "ct": None,
        "st": None,
        "zp": None,
        "country": None,
        "external_id": None,
    }
    with pytest.raises(Exception) as caught:
        CapiSender(meta_settings(url), sleep=lambda s: None).deliver(
            [row], on_sent=lambda *a: None, on_rejected=lambda *a: None
        )
    return caught.value


def insights_failure(url: str) -> Exception:
    from adloop.meta.insights import InsightsClient

    with pytest.raises(Exception) as caught:
        InsightsClient(meta_settings(url), sleep=lambda s: None).account("act_100200300400")
    return caught.value


def audience_failure(url: str) -> Exception:
    from adloop.meta.audiences import AudienceClient

    with pytest.raises(Exception) as caught:
        AudienceClient(meta_settings(url), "act_100200300400", sleep=lambda s: None).find_by_name(
            "Paying customers"
        )
    return caught.value


def stripe_failure(url: str) -> Exception:
    import stripe

    client = stripe.StripeClient(STRIPE_KEY, base_addresses={"api": url}, max_network_retries=0)
    with pytest.raises(Exception) as caught:
        client.v1.checkout.sessions.list()
    return caught.value


def failed_as_the_dag_fails_it(exc: Exception) -> Exception:
    """What the callback sees: the DAGs' _no_retry wraps failures a retry cannot fix."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        raise AirflowFailException(str(exc)) from exc
    except AirflowFailException as wrapped:
        return wrapped


def gate_result(**over) -> GateResult:
    values = dict(
        suite="stripe_conversions",
        step="gate_conversions",
        success=False,
        evaluated=27,
        row_count=164,
        failed=[
            {
                "expectation": "expect_column_values_to_not_match_like_pattern",
                "column": "fbp",
                "check": "fbp must not contain '@'",
                "observed": {"unexpected": 1, "of": 164},
            },
            {
                "expectation": "expect_column_values_to_match_regex",
                "column": "currency",
                "check": "currency must match ^[a-z]{3}$",
                "observed": {"unexpected": 2, "of": 164, "samples": ["", "us dollars"]},
            },
        ],
    )
    values.update(over)
    return GateResult(**values)


def context(exc, *, dag_id: str = DAG, task_id: str = "gate_conversions", **ti) -> dict:
    instance = SimpleNamespace(
        dag_id=dag_id,
        task_id=task_id,
        run_id=RUN_ID,
        try_number=1,
        max_tries=2,
        map_index=-1,
        rendered_map_index=None,
        log_url=f"http://airflow.example/dags/{dag_id}/runs/x/tasks/{task_id}?try_number=1",
    )
    for key, value in ti.items():
        setattr(instance, key, value)
    return {"ti": instance, "run_id": RUN_ID, "exception": exc}


def assert_clean(text: str) -> None:
    for secret in (TOKEN, STRIPE_KEY, "EAAB", "sk_live", "zoe.obrien@example.com", "+1 780 555 0142"):
        assert secret not in text, f"{secret!r} leaked into the alert"


# --- classification -----------------------------------------------------------------------------


def test_a_failed_gate_names_its_expectations_where_results_are_and_what_to_do():
    exc = failed_as_the_dag_fails_it(GateFailed(gate_result()))

    alert = alerts.alert_from_context(context(exc))
    text = alert.text()

    assert alert.kind == "gate_failed"
    assert "gate_conversions failed: data-quality gate failed" in alert.title
    assert "fbp must not contain '@': 1 of 164 rows do not" in text
    assert "currency must match ^[a-z]{3}$: 2 of 164 rows do not (e.g. '', 'us dollars')" in text
    assert f"dq_results (where run_id = '{RUN_ID}' and step = 'gate_conversions')" in text
    assert "quarantine" in text and "What to do:" in text and "Fix the data upstream" in text
    assert "There is no override" in text
    assert (
        f"run {RUN_ID} · try 1 of 3, not retried: a retry cannot fix this · log: http://airflow.example/"
        in text
    )


def test_an_audience_gate_says_what_it_means_and_offers_the_dags_override():
    from adloop.audiences.sync import SegmentGateFailed

    result = gate_result(
        suite="segment_size",
        step="gate_segment_size:lapsed_bookers",
        failed=[
            {
                "expectation": "expect_column_values_to_be_between",
                "column": "shrink_share",
                "check": "shrink_share must be <= 0.2",
                "observed": {"unexpected": 1, "of": 1, "samples": [0.61]},
            }
        ],
    )
    words = "lapsed_bookers would shrink from 900 to 351 people (61%, more than the 20% allowed)"
    exc = failed_as_the_dag_fails_it(SegmentGateFailed(result, f"{words}; {GateFailed(result)}"))

    alert = alerts.alert_from_context(
        context(
            exc,
            dag_id="meta_audience_refresh",
            task_id="gate_segment",
            map_index=2,
            rendered_map_index="lapsed_bookers",
        )
    )
    text = alert.text()

    assert alert.kind == "gate_failed"
    assert "gate_segment [lapsed_bookers] failed" in alert.title
    assert f"In short: {words}" in text
    assert "shrink_share must be <= 0.2: 1 of 1 rows do not (e.g. 0.61)" in text
    assert "allow_shrink" in text


def test_an_audience_too_small_is_offered_no_override():
    from adloop.audiences.sync import SegmentGateFailed

    entry = {
        "expectation": "expect_column_values_to_be_between",
        "column": "segment_size",
        "check": "segment_size must be >= :min_size",
        "observed": {"unexpected": 1, "of": 1, "samples": [48]},
    }
    result = gate_result(suite="audience_segment_size", step="gate_segment_size:leads", failed=[entry])
    words = "leads has 48 people; an audience used as targeting needs at least 100, so nothing was sent"
    exc = failed_as_the_dag_fails_it(SegmentGateFailed(result, f"{words}; {GateFailed(result)}"))

    text = alerts.alert_from_context(
        context(exc, dag_id="meta_audience_refresh", task_id="gate_segment")
    ).text()

    assert f"In short: {words}" in text
    assert "There is no override for a segment that is too small" in text and "allow_shrink" not in text


@pytest.mark.parametrize(
    ("subcode", "message", "why"),
    [
        (463, "Error validating access token: Session has expired on Tuesday, 28-Apr-26.", "has expired"),
        (
            460,
            "Error validating access token: The session has been invalidated because the user changed "
            "their password.",
            "password",
        ),
        (467, f"Malformed access token {TOKEN}", "invalid"),
    ],
)
def test_an_expired_or_invalid_meta_token_says_to_renew_it_in_meta_default(server, subcode, message, why):
    graph = server(**graph_error(190, subcode, message))
    exc = failed_as_the_dag_fails_it(capi_failure(graph.url))

    alert = alerts.alert_from_context(context(exc, task_id="send_backfill"))
    text = alert.text()

    assert alert.kind == "meta_token"
    assert f"error 190/{subcode}" in text and why in text
    assert "Password of the Airflow Connection meta_default" in text
    assert_clean(text)


@pytest.mark.parametrize(
    ("failure", "dag_id", "code", "subcode", "grant"),
    [
        (insights_failure, "meta_ads_insights", 278, None, "the ads_read permission"),
        (audience_failure, "meta_audience_refresh", 294, None, "the ads_management permission"),
        (audience_failure, "meta_audience_refresh", 200, 1870090, "legal/terms/customaudience"),
        (capi_failure, DAG, 200, None, "the pixel (dataset) in meta_default's pixel_id"),
        (capi_failure, DAG, 10, None, "The app itself lacks the permission"),
    ],
)
def test_a_missing_meta_permission_says_which_to_grant(server, failure, dag_id, code, subcode, grant):
    graph = server(**graph_error(code, subcode, f"(#{code}) Permissions error", status=403))
    exc = failed_as_the_dag_fails_it(failure(graph.url))

    alert = alerts.alert_from_context(context(exc, dag_id=dag_id, task_id="some_task"))

    assert alert.kind == "meta_permission", alert.text()
    assert grant in alert.text()
    assert_clean(alert.text())


@pytest.mark.parametrize(
    ("failure", "dag_id", "code", "subcode", "pace"),
    [
        (capi_failure, DAG, 17, 2446079, "raise backoff_max_seconds and max_attempts"),
        (insights_failure, "meta_ads_insights", 80004, None, "insights.poll_initial_seconds"),
        (audience_failure, "meta_audience_refresh", 613, 1487742, "refresh fewer audiences at once"),
    ],
)
def test_meta_throttling_until_the_retries_ran_out_says_the_next_run_resumes(
    server, failure, dag_id, code, subcode, pace
):
    graph = server(**graph_error(code, subcode, "User request limit reached"))
    exc = failure(graph.url)  # retried by the client until max_attempts, not wrapped: Airflow retries it

    alert = alerts.alert_from_context(context(exc, dag_id=dag_id, try_number=3))
    text = alert.text()

    assert alert.kind == "meta_throttled", text
    assert f"error {alerts._code(code, subcode)}" in text and "retries ran out" in text
    assert "Nothing is lost" in text and alerts.META_RESUME[dag_id] in text and pace in text
    assert "try 3 of 3" in text


def test_meta_failing_until_the_retries_ran_out_is_not_called_throttling(server):
    graph = server(**graph_error(2, None, "An unexpected error has occurred. Please retry.", status=500))

    alert = alerts.alert_from_context(context(capi_failure(graph.url)))

    assert alert.kind == "meta_unavailable"
    assert "retries ran out" in alert.text() and "Nothing is lost" in alert.text()
    assert "throttl" not in alert.text()


def test_a_refused_stripe_key_says_to_replace_it_in_stripe_default(server):
    api = server(
        status=401,
        body={
            "error": {
                "message": "Invalid API Key provided: sk_live_********6789",
                "type": "invalid_request_error",
            }
        },
    )

    alert = alerts.alert_from_context(context(stripe_failure(api.url), task_id="extract_conversions"))
    text = alert.text()

    assert alert.kind == "stripe_auth"
    assert "Password of the Airflow Connection stripe_default" in text and "restricted key" in text
    assert "sk_live_********6789" not in text
    assert_clean(text)


def test_a_restricted_stripe_key_without_a_permission_says_what_to_grant(server):
    restricted = STRIPE_KEY.replace("sk_", "rk_")
    message = f"The provided key '{restricted}' does not have the required permissions for this endpoint"
    api = server(status=403, body={"error": {"message": message, "type": "invalid_request_error"}})

    alert = alerts.alert_from_context(context(stripe_failure(api.url), task_id="extract_conversions"))

    assert alert.kind == "stripe_permission"
    assert "Read on Checkout Sessions" in alert.text()
    assert "rk_live_51" not in alert.text()


def test_a_failed_verification_says_to_clear_send_backfill():
    from adloop.reconcile import VerificationFailed

    exc = failed_as_the_dag_fails_it(
        VerificationFailed(
            "3 planned events are neither sent nor quarantined (e.g. Purchase cs_live_1); "
            "clear send_backfill to resend them: the ledger keeps what was already sent"
        )
    )

    alert = alerts.alert_from_context(context(exc, task_id="verify_backfill"))

    assert alert.kind == "verification_failed"
    assert "3 planned events are neither sent nor quarantined" in alert.text()
    assert "Clear send_backfill" in alert.text()


def test_a_task_killed_without_an_exception_says_to_read_the_log():
    # What the DAG processor hands the callback of a task whose process died: no "exception" key.
    ctx = context(None)
    del ctx["exception"]

    alert = alerts.alert_from_context(ctx)

    assert alert.kind == "no_exception"
    assert "killed" in alert.text() and "Read the task log" in alert.text()


def test_anything_else_is_told_by_type_and_message_without_secrets():
    exc = failed_as_the_dag_fails_it(
        ValueError(f"could not read zoe.obrien@example.com (phone +1 780 555 0142) with access_token={TOKEN}")
    )

    alert = alerts.alert_from_context(context(exc, task_id="extract_conversions"))
    text = alert.text()

    assert alert.kind == "error"
    assert "extract_conversions failed: ValueError" in alert.title
    assert "ValueError: could not read <email> (phone <phone>) with access_token=<redacted>" in text
    assert_clean(text)


def test_an_airflow_fail_exception_of_its_own_keeps_its_message():
    from airflow.sdk.exceptions import AirflowFailException

    exc = AirflowFailException(
        "the insights gate kept these days out (the other days were loaded): act_1: "
        "2026-04-30. See dq_results and quarantine for the failed checks"
    )

    alert = alerts.alert_from_context(context(exc, dag_id="meta_ads_insights", task_id="check_rejected_days"))

    assert alert.kind == "error"
    assert "check_rejected_days failed: stopped by the DAG" in alert.title
    assert "What failed: the insights gate kept these days out" in alert.text()
    assert "The message is the DAG's own" in alert.text()


@pytest.mark.parametrize(
    "leaky",
    [
        f"GET /v26.0/act_1?fields=name&access_token={TOKEN}&appsecret_proof=9f8e7d6c5b4a",
        f"{{'params': {{'access_token': '{TOKEN}'}}}}",
        f'{{"access_token": "{TOKEN}", "pixel_id": "1234567890123456"}}',
        f"Authorization: Bearer {TOKEN}",
        f"token {TOKEN} was refused",
        "token EAAB-adloop-sandbox-token was refused",
        f"stripe key {STRIPE_KEY} / rk_test_abc123 / whsec_0123456789abcdef",
        "postgresql+psycopg2://adloop:s3cr3t-pw@db.internal:5432/adloop",
        "customer zoe.obrien@example.com, phone +1 (780) 555-0142",
    ],
)
def test_scrub_removes_tokens_keys_passwords_and_contact_details(leaky):
    clean = alerts.scrub(leaky)

    for secret in (
        TOKEN,
        "EAAB",
        STRIPE_KEY,
        "rk_test_abc123",
        "whsec_0123",
        "9f8e7d6c5b4a",
        "s3cr3t-pw",
        "zoe.obrien",
        "555-0142",
    ):
        assert secret not in clean, clean


def test_scrub_leaves_what_the_engineer_needs():
    text = (
        f"Meta error 190/463: Error validating access token: Session has expired (fbtrace_id AbC123xyz); "
        f"run {RUN_ID}; event cs_live_a1b2c3 on pixel 1234567890123456; 1,204 of 9,876 rows; "
        "https://hooks.example/x?y=1"
    )

    assert alerts.scrub(text) == text


def test_the_redact_hook_runs_over_every_text():
    exc = RuntimeError("warehouse password hunter2-but-longer refused")

    alert = alerts.alert_from_context(context(exc), redact=lambda t: t.replace("hunter2-but-longer", "***"))

    assert "hunter2" not in alert.text() and "***" in alert.text()


# --- delivery -----------------------------------------------------------------------------------


def test_a_webhook_receives_the_alert_as_slack_compatible_json(server):
    hook = server(status=200, body={"ok": True})
    alert = alerts.alert_from_context(context(failed_as_the_dag_fails_it(GateFailed(gate_result()))))

    sent = alerts.deliver(alert, AlertSettings(channel="webhook", webhook_url=f"{hook.url}/services/T0/B0/X"))

    assert sent is True
    [request] = hook.received
    assert request["method"] == "POST" and request["path"] == "/services/T0/B0/X"
    assert request["content_type"] == "application/json"
    payload = json.loads(request["body"])
    assert list(payload) == ["text"]
    assert payload["text"] == alert.text()
    assert "fbp must not contain '@'" in payload["text"]


def test_a_webhook_that_fails_or_hangs_is_logged_and_never_raises(server, caplog):
    alert = alerts.alert_from_context(context(RuntimeError("boom")))
    broken = server(status=500, body={"error": "internal"})
    slow = server(status=200, delay=3.0)
    caplog.set_level(logging.INFO, logger="adloop.alerts")

    started = time.monotonic()
    assert (
        alerts.deliver(alert, AlertSettings(channel="webhook", webhook_url=f"{broken.url}/T/secret-path"))
        is False
    )
    assert (
        alerts.deliver(
            alert, AlertSettings(channel="webhook", webhook_url=f"{slow.url}/hook", timeout_seconds=0.5)
        )
        is False
    )
    assert (
        alerts.deliver(
            alert,
            AlertSettings(channel="webhook", webhook_url="http://127.0.0.1:9/hook", timeout_seconds=0.5),
        )
        is False
    )
    assert time.monotonic() - started < 2.5

    failures = [r.getMessage() for r in caplog.records if "could not send" in r.getMessage()]
    assert len(failures) == 3
    assert all("webhook to 127.0.0.1" in f and "secret-path" not in f for f in failures)


class _Smtp(socketserver.StreamRequestHandler):
    """Just enough SMTP (RFC 5321) to take one message; no STARTTLS on offer."""

    def handle(self):
        self._say("220 localhost test ESMTP")
        lines: list[bytes] | None = None
        for line in iter(self.rfile.readline, b""):
            if lines is not None:
                if line.rstrip(b"\r\n") == b".":
                    self.server.messages.append(b"".join(lines))
                    lines = None
                    self._say("250 queued")
                else:
                    lines.append(line)
                continue
            verb = line[:4].upper()
            if verb == b"EHLO":
                self._say("250-localhost\r\n250 8BITMIME")
            elif verb in (b"HELO", b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                self._say("250 ok")
            elif verb == b"DATA":
                lines = []
                self._say("354 go ahead")
            elif verb == b"QUIT":
                self._say("221 bye")
                return
            else:
                self._say("502 not implemented")

    def _say(self, text: str) -> None:
        self.wfile.write(text.encode() + b"\r\n")


@pytest.fixture
def smtp_server():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Smtp)
    server.daemon_threads = True
    server.messages = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_email_goes_through_the_smtp_server_of_the_connection(smtp_server):
    alert = alerts.alert_from_context(context(failed_as_the_dag_fails_it(GateFailed(gate_result()))))
    port = smtp_server.server_address[1]
    settings = AlertSettings(
        channel="email",
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_starttls=False,
        mail_from="adloop@studio.example",
        mail_to=("oncall@studio.example",),
    )

    assert alerts.deliver(alert, settings) is True

    [raw] = smtp_server.messages
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["Subject"] == alert.title
    assert message["To"] == "oncall@studio.example"
    assert "fbp must not contain '@'" in message.get_content()


def test_email_refuses_to_log_in_without_starttls(smtp_server):
    settings = AlertSettings(
        channel="email",
        smtp_host="127.0.0.1",
        smtp_port=smtp_server.server_address[1],
        smtp_login="adloop",
        smtp_password="pw",
        mail_to=("oncall@studio.example",),
    )

    assert alerts.deliver(alerts.alert_from_context(context(RuntimeError("x"))), settings) is False
    assert smtp_server.messages == []


def test_a_deployment_can_add_its_own_channel(server):
    got = []
    alerts.register_sender(
        "pager", lambda alert, settings: got.append((alert.kind, settings.options["team"]))
    )
    alert = alerts.alert_from_context(context(RuntimeError("x")))

    assert alerts.deliver(alert, AlertSettings(channel="pager", options={"team": "data"})) is True
    assert got == [("error", "data")]

    hook = server()
    by_path = AlertSettings(channel="adloop.alerts:post_webhook", webhook_url=hook.url)
    assert alerts.deliver(alert, by_path) is True and len(hook.received) == 1
    assert alerts.deliver(alert, AlertSettings(channel="carrier-pigeon")) is False


# --- the Airflow side: the Connection and the callback -------------------------------------------


def test_the_adloop_alerts_connection_in_its_three_shapes():
    from airflow.sdk import Connection

    from adloop_hooks import alert_settings_from

    as_host = Connection(
        conn_id="adloop_alerts", conn_type="http", host="https://hooks.slack.com/services/T/B/X"
    )
    as_uri = Connection.from_uri("https://hooks.slack.com/services/T/B/X", conn_id="adloop_alerts")
    as_extra = Connection(
        conn_id="adloop_alerts",
        conn_type="generic",
        extra=json.dumps({"webhook_url": "https://chat.example/hook", "timeout_seconds": 2}),
    )
    as_smtp = Connection(
        conn_id="adloop_alerts",
        conn_type="smtp",
        host="smtp.example",
        login="adloop",
        password="pw",
        extra=json.dumps({"to": "a@example.com, b@example.com"}),
    )

    assert alert_settings_from(as_host).webhook_url == "https://hooks.slack.com/services/T/B/X"
    assert alert_settings_from(as_uri).webhook_url == "https://hooks.slack.com/services/T/B/X"
    assert (alert_settings_from(as_extra).channel, alert_settings_from(as_extra).timeout_seconds) == (
        "webhook",
        2.0,
    )
    smtp = alert_settings_from(as_smtp)
    assert (smtp.channel, smtp.smtp_host, smtp.smtp_port, smtp.smtp_starttls) == (
        "email",
        "smtp.example",
        587,
        True,
    )
    assert smtp.mail_to == ("a@example.com", "b@example.com") and "pw" not in repr(smtp)
    smtps = Connection(
        conn_id="adloop_alerts",
        conn_type="smtp",
        host="smtp.example",
        extra=json.dumps({"to": ["a@example.com"], "ssl": "true", "starttls": "false"}),
    )
    assert (alert_settings_from(smtps).smtp_port, alert_settings_from(smtps).smtp_ssl) == (465, True)
    assert alert_settings_from(smtps).smtp_starttls is False
    with pytest.raises(RuntimeError, match="names no channel"):
        alert_settings_from(Connection(conn_id="adloop_alerts", conn_type="generic"))


def test_the_callback_sends_through_the_connection_and_masks_what_airflow_knows(server, monkeypatch):
    from airflow.sdk.log import mask_secret

    from adloop_hooks import alert_on_failure

    hook = server()
    monkeypatch.setenv(
        "AIRFLOW_CONN_ADLOOP_ALERTS", json.dumps({"conn_type": "http", "host": f"{hook.url}/hook"})
    )
    mask_secret("warehouse-pw-8f1d2c")
    exc = failed_as_the_dag_fails_it(RuntimeError("login to the warehouse with warehouse-pw-8f1d2c failed"))

    assert alert_on_failure(context(exc)) is None

    [request] = hook.received
    text = json.loads(request["body"])["text"]
    assert "RuntimeError: login to the warehouse with" in text and "warehouse-pw-8f1d2c" not in text


def test_the_callback_without_a_connection_only_logs(monkeypatch, caplog):
    from adloop_hooks import alert_on_failure

    monkeypatch.delenv("AIRFLOW_CONN_ADLOOP_ALERTS", raising=False)
    caplog.set_level(logging.INFO)

    alert_on_failure(context(failed_as_the_dag_fails_it(GateFailed(gate_result()))))

    messages = [r.getMessage() for r in caplog.records]
    assert any("fbp must not contain '@'" in m for m in messages)
    assert any("only in this log" in m for m in messages)


def test_every_task_of_every_dag_alerts_on_its_final_failure_only():
    from airflow.dag_processing.dagbag import DagBag

    dagbag = DagBag(dag_folder=str(ROOT / "dags"))
    assert dagbag.import_errors == {}

    for dag in dagbag.dags.values():
        for task in dag.tasks:
            # A mapped task keeps the callback as given until it is unmapped to run.
            callbacks = task.on_failure_callback
            callbacks = list(callbacks) if isinstance(callbacks, list | tuple) else [callbacks]
            assert [c.__name__ for c in callbacks] == ["_alert_on_failure"], (dag.dag_id, task.task_id)
            # on_retry_callback would fire before each retry; only the final failure is news.
            assert not task.on_retry_callback, (dag.dag_id, task.task_id)


def test_meta_settings_carry_the_audience_batch_and_insights_tuning(monkeypatch):
    from adloop_hooks import adloop_settings

    extra = {"pixel_id": "1", "audience_batch_rows": 100, "insights": {"page_size": 50}}
    monkeypatch.setenv(
        "AIRFLOW_CONN_META_DEFAULT", json.dumps({"conn_type": "generic", "password": "t", "extra": extra})
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAREHOUSE_DEFAULT", json.dumps({"conn_type": "generic", "extra": {"url": "sqlite://"}})
    )

    meta = adloop_settings(stripe=False).meta

    assert (meta.audience_batch_rows, dict(meta.insights)) == (100, {"page_size": 50})
    assert MetaSettings(access_token="t").audience_batch_rows == 10_000
