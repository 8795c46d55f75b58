"""Failure alerts: what failed, and what to do about it, for the engineer on call.

`alert_from_context` turns what Airflow hands a failure callback (the task instance, the run,
and the exception under `context["exception"]`) into an `Alert`: what failed, the details that
pin it down, and the next steps. It recognises

- a Great Expectations gate (`GateFailed`): the failed expectations with their counts, where the
  results are kept (`dq_results`, `quarantine`), and the override the DAG offers, if any;
- Meta refusing the access token (codes 102, 104, 190 and their subcodes): renew it in the
  `meta_default` Connection;
- Meta refusing a permission (codes 3, 10, 200-299): which permission or asset to grant;
- Meta throttling (4, 17, 32, 613, 80000-80014), or failing until the retries ran out: the next
  run resumes, and how to lower the pace;
- Stripe refusing the secret key, or a restricted key lacking a permission;
- the backfill's verification (`VerificationFailed`);
- a task that ended without an exception reaching its callback (killed, or its worker lost).

Anything else is reported as its exception type and message.

`deliver` logs the alert and hands it to the sender named by `AlertSettings.channel`: "webhook"
(a POST of Slack-compatible `{"text": ...}`) and "email" (smtplib) are built in, `register_sender`
adds another, and "package.module:function" loads one by name. Without settings the alert is only
logged. Delivery never raises: an alert that cannot be sent is logged, and the task's own failure
stands.

Secrets and customer data: every text an alert carries passes `scrub`, which blanks access tokens
(`access_token=...`, `EAA...`, `Bearer ...`), Stripe keys, passwords in URLs, emails and phone
numbers. A gate's sample values appear only where the gate allows samples (ids, codes, statuses;
never the customer-data columns).

Like the rest of include/adloop this module never imports Airflow, and it imports nothing heavy:
the exception classes of adloop's gates, Stripe and Meta are looked up in `sys.modules`, since an
exception of a class cannot exist before its module has been imported.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
import smtplib
import sys
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from adloop.meta.errors import PERMISSION_CODES, THROTTLE_CODES, TOKEN_CODES
from adloop.settings import AlertSettings

log = logging.getLogger(__name__)

MAX_LISTED = 10  # failed expectations named in one alert; dq_results has them all
MAX_MESSAGE = 1500  # characters of an exception message carried by an alert

# --- what went wrong ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Diagnosis:
    """One failure, in the words that fit it."""

    # gate_failed, meta_token, meta_permission, meta_throttled, meta_unavailable, meta_error,
    # stripe_auth, stripe_permission, verification_failed, no_exception or error
    kind: str
    label: str  # a few words for the title: "data-quality gate failed"
    what: str  # what failed, one sentence
    details: tuple[str, ...] = ()
    todo: tuple[str, ...] = ()


@dataclass(frozen=True)
class Alert:
    dag_id: str
    task_id: str
    run_id: str
    diagnosis: Diagnosis
    try_number: int | None = None
    tries: int | None = None  # attempts the task was allowed: retries + 1
    log_url: str | None = None
    map_label: str | None = None  # which mapped instance: the audience, the ad account
    redact: Callable[[str], str] | None = field(default=None, compare=False, repr=False)

    @property
    def kind(self) -> str:
        return self.diagnosis.kind

    @property
    def title(self) -> str:
        task = f"{self.task_id} [{self.map_label}]" if self.map_label else self.task_id
        return self._clean(f"adloop: {self.dag_id} › {task} failed: {self.diagnosis.label}")[:200]

    def text(self) -> str:
        d = self.diagnosis
        lines = [self.title, "", f"What failed: {d.what}"]
        lines += [f"  • {detail}" for detail in d.details]
        if d.todo:
            lines += ["", "What to do:"]
            lines += [f"  {n}. {step}" for n, step in enumerate(d.todo, 1)]
        run = [f"run {self.run_id}"]
        if self.try_number and self.tries and self.try_number < self.tries:
            # The callback runs on the final failure only, so an early one skipped the retries.
            run.append(f"try {self.try_number} of {self.tries}, not retried: a retry cannot fix this")
        elif self.try_number:
            run.append(f"try {self.try_number} of {self.tries}" if self.tries else f"try {self.try_number}")
        if self.log_url:
            run.append(f"log: {self.log_url}")
        lines += ["", " · ".join(run)]
        return self._clean("\n".join(lines))

    def _clean(self, text: str) -> str:
        text = scrub(text)
        return self.redact(text) if self.redact else text


def alert_from_context(context: Mapping[str, Any], *, redact: Callable[[str], str] | None = None) -> Alert:
    """The alert for the failed task described by an Airflow callback context.

    `redact` runs over every text after `scrub` (inside Airflow: the secrets masker, which knows
    the exact passwords this process has read).
    """
    ti = context.get("ti") or context.get("task_instance")
    dag_id = _attr(ti, "dag_id") or _attr(context.get("dag"), "dag_id") or "?"
    task_id = _attr(ti, "task_id") or _attr(context.get("task"), "task_id") or "?"
    run_id = context.get("run_id") or _attr(ti, "run_id") or "?"
    max_tries = _attr(ti, "max_tries")
    map_index = _attr(ti, "map_index")
    map_label = _attr(ti, "rendered_map_index") or (
        str(map_index) if isinstance(map_index, int) and map_index >= 0 else None
    )

    diagnosis = diagnose(context.get("exception"), dag_id=dag_id, run_id=run_id)
    return Alert(
        dag_id=str(dag_id),
        task_id=str(task_id),
        run_id=str(run_id),
        diagnosis=diagnosis,
        try_number=_attr(ti, "try_number"),
        tries=max_tries + 1 if isinstance(max_tries, int) else None,
        log_url=_attr(ti, "log_url"),
        map_label=str(map_label) if map_label else None,
        redact=redact,
    )


def _attr(obj, name: str):
    # The task instance of a callback run by the DAG processor (a killed task) is built from less
    # than a live one; a property that cannot be computed is left out, not fatal.
    try:
        return getattr(obj, name, None)
    except Exception:
        return None


def diagnose(
    exc: BaseException | str | None, *, dag_id: str | None = None, run_id: str | None = None
) -> Diagnosis:
    """What `exc` means for adloop and what to do, following `raise ... from` to the cause."""
    if exc is None:
        return _no_exception()
    if isinstance(exc, str):  # a reason given by whoever failed the task, not a raised exception
        return _other(exc, "TaskFailed")

    for e in _causes(exc):
        for recognise in (_gate, _meta, _stripe, _verification):
            diagnosis = recognise(e, dag_id, run_id)
            if diagnosis is not None:
                return diagnosis
    reported = exc
    # The DAGs wrap failures a retry cannot fix in AirflowFailException; the cause says more.
    if type(exc).__module__.startswith("airflow") and exc.__cause__ is not None:
        reported = exc.__cause__
    elif type(exc).__name__ == "AirflowFailException":
        return _stopped_by_the_dag(str(exc))
    return _other(str(reported), type(reported).__name__)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 10:
        seen.add(id(current))
        yield current
        current = current.__cause__


def _is(exc: BaseException, module: str, name: str) -> bool:
    cls = getattr(sys.modules.get(module), name, None)
    return isinstance(cls, type) and isinstance(exc, cls)


# --- Great Expectations gates -------------------------------------------------------------------

# The way past a gate a DAG offers, where one exists. A gate in front of a send to Meta that cannot
# be undone has none on purpose.
GATE_OVERRIDES = {
    "stripe_capi_reconciliation": (
        "There is no override: this gate stands in front of a send to Meta, which cannot be undone."
    ),
    "meta_audience_refresh": (
        "There is no override for a segment that is too small or holds unhashed data: fix its data, or its "
        "definition in include/adloop/audiences/definitions.py."
    ),
}
# The one audience check a person may overrule: the audience shrinking past its allowed share.
SHRINK_OVERRIDE = (
    "If the drop is expected (a cleanup, a season), trigger meta_audience_refresh for this audience with "
    "“Allow an audience to shrink a lot” (allow_shrink) on."
)


def _gate(exc: BaseException, dag_id: str | None, run_id: str | None) -> Diagnosis | None:
    if not _is(exc, "adloop.quality.gate", "GateFailed"):
        return None
    result = exc.result
    failed = list(result.failed)

    details = [_expectation(entry) for entry in failed[:MAX_LISTED]]
    if len(failed) > MAX_LISTED:
        details.append(f"… and {len(failed) - MAX_LISTED} more in dq_results")
    meaning = _gate_meaning(exc)
    if meaning:
        details.insert(0, f"In short: {meaning}")
    where = f"run_id = '{run_id}'" if run_id else "this run's run_id"
    details.append(
        f"Results: dq_results (where {where} and step = '{result.step}'); records set aside with "
        f"their reasons: quarantine (where {where})"
    )

    todo = [
        f"Inspect the failed checks: SELECT failed_expectations FROM dq_results WHERE {where} "
        f"AND step = '{result.step}'; and SELECT stage, record_id, reason FROM quarantine WHERE {where}.",
        "Fix the data upstream, where it was made (the checkout that writes the Stripe metadata, the app's "
        "database, the segment's SQL), not in the warehouse copy.",
        "Clear the failed task to run the gate again, or let the next scheduled run re-read the window.",
    ]
    if dag_id == "meta_audience_refresh" and any(f.get("column") == "shrink_share" for f in failed):
        todo.append(SHRINK_OVERRIDE)
    elif dag_id in GATE_OVERRIDES:
        todo.append(GATE_OVERRIDES[dag_id])
    return Diagnosis(
        kind="gate_failed",
        label="data-quality gate failed",
        what=(
            f"gate {result.suite} ({result.step}) failed {len(failed)} of {result.evaluated} expectations "
            f"over {result.row_count:,} rows; the steps after it did not run, so nothing was sent to Meta"
        ),
        details=tuple(details),
        todo=tuple(todo),
    )


def _expectation(entry: Mapping[str, Any]) -> str:
    """A failed expectation as the gate recorded it: the check and the count of rows breaking it."""
    check = entry.get("check") or entry.get("expectation") or "?"
    if "error" in entry:
        return f"{check}: could not be evaluated ({entry['error']})"
    observed = entry.get("observed") or {}
    text = f"{check}: {observed.get('unexpected', 0):,} of {observed.get('of', 0):,} rows do not"
    samples = observed.get("samples")
    if samples:  # the gate only keeps samples of ids, codes and statuses
        text += f" (e.g. {', '.join(repr(s) for s in samples[:5])})"
    return text


def _gate_meaning(exc: BaseException) -> str:
    """What a gate failure means in a marketer's words, when the raiser put them first (audiences)."""
    gate_failed = sys.modules["adloop.quality.gate"].GateFailed
    text, plain = str(exc), str(gate_failed(exc.result))
    if type(exc) is gate_failed or not text.endswith(plain):
        return ""
    return text[: -len(plain)].rstrip("; ")


# --- Meta ---------------------------------------------------------------------------------------

TOKEN_SUBCODES = {
    458: "the app was removed from the user or system user behind the token",
    459: "the user behind the token is checkpointed: they must log in at facebook.com to clear it",
    460: "the password of the user behind the token changed, which ends their tokens",
    463: "the token has expired",
    464: "the user behind the token is not confirmed",
    467: "the token is invalid (revoked, or its user logged out)",
    492: "the session is invalid (the user lost their role on the asset)",
}
THROTTLE_MEANING = {
    4: "the app's request limit (for Insights, the app-level platform limit)",
    17: "the user's or ad account's request limit",
    32: "the Page's request limit",
    613: "the rate limit on calls to this ad account",
}
# What each DAG needs from the system user behind meta_default's token.
META_NEEDS = {
    "stripe_capi_reconciliation": (
        "the pixel (dataset) in meta_default's pixel_id assigned to the system user, and the "
        "ads_management permission on its token"
    ),
    "meta_audience_refresh": (
        "each ad account in ad_account_ids assigned to the system user with permission to manage "
        "campaigns, the ads_management permission on its token, and the Custom Audience terms accepted "
        "for the ad account"
    ),
    "meta_ads_insights": (
        "each ad account in ad_account_ids assigned to the system user (view performance at least), and "
        "the ads_read permission on its token"
    ),
}
META_PACE = {
    "stripe_capi_reconciliation": (
        "To lower the pace, raise backoff_max_seconds and max_attempts in meta_default's extra, so one "
        "attempt waits a throttle out, and keep other tools that use this app off the 03:30 slot."
    ),
    "meta_audience_refresh": (
        "To lower the pace, refresh fewer audiences at once (pick them on a manual run) and raise "
        "backoff_max_seconds in meta_default's extra."
    ),
    "meta_ads_insights": (
        "To lower the pace, poll report jobs less often (raise insights.poll_initial_seconds and "
        "insights.poll_max_seconds in meta_default's extra), land fewer days per manual run, or move the "
        "schedule away from other tools reading the same ad accounts; Meta's Full access tier has a "
        "larger quota."
    ),
}
# Why a run that Meta stopped loses nothing.
META_RESUME = {
    "stripe_capi_reconciliation": (
        "the events not sent yet stay in the ledger, and the next run sends them (within Meta's 7 days)"
    ),
    "meta_audience_refresh": "the next run diffs the audiences against Meta again and sends what is missing",
    "meta_ads_insights": "the next run reads the whole 28-day window again",
}
# Exception classes of adloop.meta that mean "the client's own retries ran out" (or the answer is in doubt).
_META_GAVE_UP = ("RetriesExhausted", "InsightsJobFailed", "AudienceRequestInDoubt")
_META_CODE = re.compile(r"Meta error (-?\d+)(?:/(\d+))?")


@dataclass(frozen=True)
class _MetaFailure:
    code: int | None
    subcode: int | None
    message: str
    gave_up: bool


def _meta_failure(exc: BaseException) -> _MetaFailure | None:
    if _is(exc, "facebook_business.exceptions", "FacebookRequestError"):
        return _MetaFailure(
            exc.api_error_code(), exc.api_error_subcode(), exc.api_error_message() or "", False
        )
    if not type(exc).__module__.startswith("adloop.meta"):
        return None

    gave_up = type(exc).__name__.endswith(_META_GAVE_UP)
    error = getattr(exc, "error", None)  # CapiFatalError, InsightsError, AudienceApiError carry it
    if error is not None and hasattr(error, "code"):
        return _MetaFailure(error.code, error.subcode, str(exc), gave_up)
    # Errors raised without Meta's error object (the retries-exhausted kinds) name it in the message.
    found = _META_CODE.search(str(exc))
    code = int(found.group(1)) if found else None
    subcode = int(found.group(2)) if found and found.group(2) else None
    return _MetaFailure(code, subcode, str(exc), gave_up)


def _meta(exc: BaseException, dag_id: str | None, run_id: str | None) -> Diagnosis | None:
    failure = _meta_failure(exc)
    if failure is None:
        return None
    code, subcode = failure.code, failure.subcode
    said = f"Meta said: {_shorten(failure.message)}"
    clear = (
        "Clear the failed task (or wait for the next run): runs pick up where the ledger says, so "
        "nothing is sent twice."
    )

    if code in TOKEN_CODES:
        why = TOKEN_SUBCODES.get(subcode, "the token is expired, revoked or invalid")
        return Diagnosis(
            kind="meta_token",
            label="Meta access token refused",
            what=(
                f"Meta refused the access token in the meta_default Connection "
                f"(error {_code(code, subcode)}): {why}"
            ),
            details=(said,),
            todo=(
                "Issue a new token: Meta Business Settings › Users › System users › (adloop's system user) › "
                "Generate new token, for adloop's app, with ads_management and ads_read. A system user's "
                "token can be made not to expire; a person's token lasts 60 days at most.",
                "Put it in the Password of the Airflow Connection meta_default (Admin › Connections, or your "
                "secrets backend).",
                clear,
            ),
        )
    if code in PERMISSION_CODES:
        return Diagnosis(
            kind="meta_permission",
            label="Meta permission missing",
            what=f"Meta refused a call for want of a permission (error {_code(code, subcode)})",
            details=(said,),
            todo=(*_permission_steps(code, subcode, dag_id), clear),
        )
    if code in THROTTLE_CODES:
        meaning = THROTTLE_MEANING.get(code, "the ad account's hourly Business Use Case quota (80000-80014)")
        retries = "the retries ran out" if failure.gave_up else "the task stopped"
        return Diagnosis(
            kind="meta_throttled",
            label="Meta throttling",
            what=f"Meta throttled adloop (error {_code(code, subcode)}: {meaning}) and {retries}",
            details=(said,),
            todo=(
                f"Nothing is lost: {META_RESUME.get(dag_id, 'the next run picks up what is left')}. Access "
                "comes back as the quota recovers, within the hour.",
                META_PACE.get(
                    dag_id,
                    "To lower the pace, raise backoff_max_seconds and max_attempts in meta_default's extra.",
                ),
            ),
        )
    if failure.gave_up:
        return Diagnosis(
            kind="meta_unavailable",
            label="Meta unavailable",
            what="Meta kept failing (server errors, timeouts, failed report jobs) until the retries ran out",
            details=(said,),
            todo=(
                f"Nothing is lost: {META_RESUME.get(dag_id, 'the next run picks up what is left')}. If Meta "
                "has an outage (https://metastatus.com), wait it out; otherwise clear the task later.",
                "If it repeats night after night, read the task log for the failing calls and their "
                "fbtrace_id.",
            ),
        )
    return Diagnosis(
        kind="meta_error",
        label=f"Meta error {_code(code, subcode)}",
        what=f"Meta refused a request (error {_code(code, subcode)}) for a reason a retry cannot fix",
        details=(said,),
        todo=(
            "Meta's message says what was wrong with which input; the fbtrace_id identifies the call to Meta "
            "support.",
            "Fix the input, then clear the failed task.",
        ),
    )


def _permission_steps(code: int, subcode: int | None, dag_id: str | None) -> tuple[str, ...]:
    if code == 200 and subcode == 1870090:
        return (
            "Accept the Custom Audience terms for the ad account: "
            "https://www.facebook.com/legal/terms/customaudience",
        )
    if code == 200 and subcode == 1870050:
        return ("Link the ad account to the business that owns adloop's system user.",)
    if code == 10:
        return (
            "The app itself lacks the permission or feature: have ads_management or ads_read (and Ads "
            "Management Standard Access) approved for the app in App Review.",
        )
    if code == 294:
        need = "The token needs the ads_management permission."
    elif code == 278:
        need = "The token needs the ads_read permission."
    elif dag_id in META_NEEDS:
        need = f"This DAG needs {META_NEEDS[dag_id]}."
    else:
        need = (
            "The token needs ads_management (CAPI, audiences) or ads_read (insights), and the system user "
            "needs the pixel and the ad accounts assigned."
        )
    return (
        need,
        "Grant it in Meta Business Settings (System users › Assign assets; Generate new token with the "
        "permission ticked). A permission added to the token needs a new token, which goes in the Password "
        "of meta_default.",
    )


def _code(code: int | None, subcode: int | None) -> str:
    return f"{code}/{subcode}" if subcode else str(code)


# --- Stripe -------------------------------------------------------------------------------------

_STRIPE_READS = "Checkout Sessions, Subscriptions, Invoices, Refunds and Customers"


def _stripe(exc: BaseException, dag_id: str | None, run_id: str | None) -> Diagnosis | None:
    if not (_is(exc, "stripe", "AuthenticationError") or _is(exc, "stripe", "PermissionError")):
        return None
    said = f"Stripe said: {_shorten(getattr(exc, 'user_message', None) or str(exc))}"
    if getattr(exc, "request_id", None):
        said += f" (request {exc.request_id})"
    if _is(exc, "stripe", "AuthenticationError"):
        return Diagnosis(
            kind="stripe_auth",
            label="Stripe key refused",
            what=(
                "Stripe refused the secret key in the stripe_default Connection (revoked, rolled, "
                "expired or mistyped)"
            ),
            details=(said,),
            todo=(
                f"Create a restricted key in the Stripe Dashboard (Developers › API keys) with Read on "
                f"{_STRIPE_READS}, in live mode for live data.",
                "Put it in the Password of the Airflow Connection stripe_default.",
                "Clear the failed task.",
            ),
        )
    return Diagnosis(
        kind="stripe_permission",
        label="Stripe permission missing",
        what="the restricted key in stripe_default may not read something adloop needs",
        details=(said,),
        todo=(
            f"Edit the restricted key in the Stripe Dashboard and give it Read on {_STRIPE_READS}.",
            "Clear the failed task.",
        ),
    )


# --- the backfill's verification ----------------------------------------------------------------


def _verification(exc: BaseException, dag_id: str | None, run_id: str | None) -> Diagnosis | None:
    if not _is(exc, "adloop.reconcile", "VerificationFailed"):
        return None
    return Diagnosis(
        kind="verification_failed",
        label="backfill not verified",
        what="events the plan said to send are neither sent nor quarantined in the ledger (capi_events)",
        details=(_shorten(str(exc)),),
        todo=(
            "Clear send_backfill and the tasks after it: the ledger keeps what was sent, so only the "
            "unsettled events go out.",
            "If it fails again, read send_backfill's log for Meta's answers, and look at this run's "
            "capi_events rows with status pending or in_flight.",
        ),
    )


# --- everything else ----------------------------------------------------------------------------


def _no_exception() -> Diagnosis:
    return Diagnosis(
        kind="no_exception",
        label="ended without an exception",
        what=(
            "the task failed without an exception reaching adloop: it was killed (out of memory, a timeout, "
            "a lost worker or heartbeat) or marked failed by hand"
        ),
        todo=(
            "Read the task log and the worker's log around the end of the task.",
            "Clear the task when the cause is dealt with: adloop's tasks resume from the ledger.",
        ),
    )


def _other(message: str, type_name: str) -> Diagnosis:
    first = message.strip().splitlines()[0] if message.strip() else "(no message)"
    details = (_shorten(message),) if len(message.strip()) > len(first) else ()
    return Diagnosis(
        kind="error",
        label=type_name,
        what=f"{type_name}: {_shorten(first, 400)}",
        details=details,
        todo=(
            "Read the task log for the traceback.",
            "Fix the cause, then clear the failed task (or let the next run try again if it was passing).",
        ),
    )


def _stopped_by_the_dag(message: str) -> Diagnosis:
    # Raised by the DAG itself, in its own words: the message is the diagnosis.
    return Diagnosis(
        kind="error",
        label="stopped by the DAG",
        what=_shorten(message),
        todo=(
            "The message is the DAG's own: it says what was wrong and what happens next.",
            "The task log has the details; clear the task once the cause is dealt with, if the message does "
            "not say the next run takes care of it.",
        ),
    )


def _shorten(text: str, limit: int = MAX_MESSAGE) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- scrubbing ----------------------------------------------------------------------------------

_SECRET_KEYS = r"access_token|appsecret_proof|client_secret|api_key|apikey|password|passwd|secret"
_SCRUBS = (
    # key=value in a query string or form, and "key": "value" in JSON or a Python repr
    (re.compile(rf"(?i)\b({_SECRET_KEYS})=[^\s&\"',;)]+"), r"\1=<redacted>"),
    (re.compile(rf"(?i)([\"']({_SECRET_KEYS})[\"']\s*:\s*[\"'])[^\"']*"), r"\1<redacted>"),
    (re.compile(r"(?i)\b(bearer|oauth)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 <redacted>"),
    # Meta access tokens start with EAA; Stripe keys with sk_, rk_ (restricted) or whsec_ (webhooks)
    (re.compile(r"\bEAA[A-Za-z0-9_-]{8,}"), "<meta-token>"),
    (re.compile(r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9_*]+"), "<stripe-key>"),
    (re.compile(r"\bwhsec_[A-Za-z0-9_]+"), "<stripe-webhook-secret>"),
    # user:password@host in a URL (before emails, which look alike)
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]+):[^@\s/]+@"), r"\1:<redacted>@"),
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"), "<email>"),
    # a phone number written with its country code; bare digit runs are ids and counts, left alone
    (re.compile(r"\+\d[\d ().-]{7,}\d"), "<phone>"),
)


def scrub(text: str) -> str:
    """`text` without access tokens, secret keys, passwords in URLs, emails or phone numbers."""
    for pattern, replacement in _SCRUBS:
        text = pattern.sub(replacement, text)
    return text


# --- delivery -----------------------------------------------------------------------------------

Sender = Callable[[Alert, AlertSettings], None]


def post_webhook(alert: Alert, settings: AlertSettings) -> None:
    """POST `{"text": ...}`, which Slack, Mattermost, Rocket.Chat and Google Chat webhooks all take."""
    url = settings.webhook_url
    if not url.startswith(("https://", "http://")):
        raise ValueError("the webhook URL must start with https:// (or http://)")
    request = urllib.request.Request(
        url,
        data=json.dumps({"text": alert.text()}).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "adloop-alerts"},
        method="POST",
    )
    # urlopen raises on a 4xx or 5xx answer
    with urllib.request.urlopen(request, timeout=settings.timeout_seconds) as response:
        response.read(4096)


def send_email(alert: Alert, settings: AlertSettings) -> None:
    """Mail the alert through the SMTP server of the settings (smtplib; STARTTLS unless turned off)."""
    if not settings.smtp_host or not settings.mail_to:
        raise ValueError("the email channel needs the SMTP server as host and the addresses in extra 'to'")
    message = EmailMessage()
    message["Subject"] = alert.title
    message["From"] = settings.mail_from
    message["To"] = ", ".join(settings.mail_to)
    message.set_content(alert.text())

    smtp_class = smtplib.SMTP_SSL if settings.smtp_ssl else smtplib.SMTP
    with smtp_class(settings.smtp_host, settings.smtp_port, timeout=settings.timeout_seconds) as smtp:
        if settings.smtp_starttls and not settings.smtp_ssl:
            smtp.starttls()  # raises if the server does not offer it: a password never travels in clear
        if settings.smtp_login:
            smtp.login(settings.smtp_login, settings.smtp_password)
        smtp.send_message(message)


_SENDERS: dict[str, Sender] = {"webhook": post_webhook, "email": send_email}


def register_sender(channel: str, sender: Sender) -> None:
    """Make `sender` deliver the alerts of `channel` (the `channel` key of adloop_alerts' extra)."""
    _SENDERS[channel] = sender


def sender_for(channel: str) -> Sender:
    if channel in _SENDERS:
        return _SENDERS[channel]
    module, _, name = channel.partition(":")
    if module and name:
        return getattr(importlib.import_module(module), name)
    raise ValueError(f"unknown alert channel {channel!r}: use webhook, email, or package.module:function")


def deliver(alert: Alert, settings: AlertSettings | None) -> bool:
    """Log `alert`, then send it where `settings` say; True once sent. Never raises."""
    log.error("%s", alert.text())
    if settings is None:
        log.info("alerts: no adloop_alerts Connection, so the alert above is only in this log")
        return False
    try:
        sender_for(settings.channel)(alert, settings)
    except Exception as exc:
        # The task has failed already; an alert that cannot be sent must not hide why.
        log.error(
            "alerts: could not send the alert by %s (%s: %s); the task's own failure stands",
            _channel_name(settings),
            type(exc).__name__,
            _shorten(scrub(str(exc)), 300),
        )
        return False
    log.info("alerts: sent the %s alert by %s", alert.kind, _channel_name(settings))
    return True


def _channel_name(settings: AlertSettings) -> str:
    # A webhook's URL is its secret: name its host only.
    if settings.channel == "webhook":
        host = urllib.parse.urlsplit(settings.webhook_url).hostname or "?"
        return f"webhook to {host}"
    if settings.channel == "email":
        return f"email via {settings.smtp_host}"
    return settings.channel
