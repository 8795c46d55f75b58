"""How adloop reads Meta's errors: wait and retry, split the batch, or stop and tell a person.

Codes from Meta's Graph API error-handling guide and the Marketing API rate-limiting docs
(see shared/reference/meta-apis.md §1.6 and the throttling section).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

# Temporary on Meta's side, or throttling: wait and retry.
TRANSIENT_CODES = frozenset({1, 2, 4, 17, 32, 341, 613}) | frozenset(range(80000, 80015))
THROTTLE_CODES = frozenset({4, 17, 32, 613}) | frozenset(range(80000, 80015))
# The token is expired or invalid, or lacks a permission: retrying cannot help, a person must act.
TOKEN_CODES = frozenset({102, 104, 190})
PERMISSION_CODES = frozenset({3, 10}) | frozenset(range(200, 300))
# An invalid parameter: with CAPI, one bad event rejects the whole request.
INVALID_PARAMETER = 100


@dataclass(frozen=True)
class MetaError:
    http_status: int | None
    code: int | None
    subcode: int | None
    message: str
    fbtrace_id: str | None
    transient_flag: bool = False

    @property
    def transient(self) -> bool:
        if self.transient_flag or self.code in TRANSIENT_CODES:
            return True
        return self.code is None and (self.http_status is None or self.http_status >= 500)

    @property
    def rejects_data(self) -> bool:
        """True when Meta refused the content of the request rather than the caller or the moment."""
        return self.code == INVALID_PARAMETER

    def describe(self) -> str:
        sub = f"/{self.subcode}" if self.subcode else ""
        trace = f" (fbtrace_id {self.fbtrace_id})" if self.fbtrace_id else ""
        return f"Meta error {self.code}{sub}: {self.message}{trace}"

    def advice(self) -> str:
        if self.code in TOKEN_CODES:
            return "the access token in the meta_default Connection is expired or invalid: issue a new one"
        if self.code in PERMISSION_CODES:
            return "the token lacks a permission for this pixel or ad account: check the system user's assets"
        if self.code in THROTTLE_CODES:
            return "Meta is throttling this app or ad account: the next run picks up what is left"
        return "see the message and fbtrace_id in Events Manager"


class MetaRefused(RuntimeError):
    """Meta refused a request for a reason no retry can fix (token, permission, bad query).

    Meta's error travels with the exception, so callers such as the alerts read its code and
    subcode rather than parse the message.
    """

    def __init__(self, error: MetaError):
        super().__init__(f"{error.describe()}: {error.advice()}")
        self.error = error

    def __reduce__(self):  # pickles by Meta's error, which is what __init__ takes
        return type(self), (self.error,)


def from_sdk_error(err) -> MetaError:
    """A MetaError from the SDK's FacebookRequestError."""
    body = err.body() if callable(getattr(err, "body", None)) else None
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            body = None
    error = (body or {}).get("error", {}) if isinstance(body, dict) else {}
    message = error.get("error_user_msg") or error.get("message") or err.api_error_message() or str(err)
    return MetaError(
        http_status=err.http_status(),
        code=err.api_error_code(),
        subcode=err.api_error_subcode(),
        message=message,
        fbtrace_id=error.get("fbtrace_id"),
        transient_flag=bool(error.get("is_transient")),
    )


def usage_wait_seconds(headers) -> float:
    """How long Meta's usage headers say to pause before the next call; 0 when there is headroom.

    `X-Business-Use-Case-Usage` and `X-Ad-Account-Usage` report percentages of the quota used and,
    when it is exhausted, minutes until access returns. adloop slows down from 75 % on, before
    Meta starts refusing calls.
    """
    if not headers:
        return 0.0
    wait = 0.0
    lowered = {k.lower(): v for k, v in dict(headers).items()}
    buc = _json_header(lowered.get("x-business-use-case-usage"))
    for entries in (buc or {}).values():
        for entry in entries if isinstance(entries, list) else [entries]:
            wait = max(wait, _wait_from_usage(entry))
    account = _json_header(lowered.get("x-ad-account-usage"))
    if isinstance(account, dict):
        wait = max(wait, _wait_from_usage(account))
    app = _json_header(lowered.get("x-app-usage"))
    if isinstance(app, dict):
        wait = max(wait, _wait_from_usage(app))
    return wait


def _json_header(value):
    if not value:
        return None
    try:
        return json.loads(value)
    except ValueError:
        log.warning("meta: could not read a usage header, ignoring it")
        return None


def _wait_from_usage(entry) -> float:
    if not isinstance(entry, dict):
        return 0.0
    minutes = entry.get("estimated_time_to_regain_access") or 0
    if minutes:
        return float(minutes) * 60.0
    reset = entry.get("reset_time_duration")
    used = max(
        float(entry.get(k) or 0)
        for k in ("call_count", "total_cputime", "total_time", "acc_id_util_pct")
    )
    if used >= 95:
        return float(reset) if reset else 30.0
    if used >= 75:
        return 2.0  # headroom is thin: spread the remaining calls out
    return 0.0
