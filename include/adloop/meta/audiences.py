"""Custom Audiences and Lookalikes through the facebook-business SDK.

adloop normalizes and hashes customer data itself (adloop.identity) and hands the SDK rows of
64-hex values with `is_raw=True, pre_hashed=True`, so the SDK's own normalizers (which drop
accented letters from names and add no country code to phones) never touch them.

Each call is one Graph request. A request Meta did not process (5xx, throttling, `is_transient`)
is retried with backoff and the same session fields, which is safe because nothing of it was
taken. A request that timed out is in doubt (Meta may have taken it): it is not retried inside
the session, `AudienceRequestInDoubt` is raised, and the caller starts over from its ledger in a
new session. Errors no retry can fix raise `AudienceApiError` with Meta's code and advice.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from adloop.meta.api import graph_api
from adloop.meta.errors import MetaError, from_sdk_error, usage_wait_seconds
from adloop.settings import MetaSettings

log = logging.getLogger(__name__)

# adloop's keys, in order, and Meta's multi-key schema names for them (reference §2.2, §2.4).
SCHEMA_KEYS = {
    "em": "EMAIL",
    "ph": "PHONE",
    "fn": "FN",
    "ln": "LN",
    "ct": "CT",
    "st": "ST",
    "zp": "ZIP",
    "country": "COUNTRY",
}
MAX_ROWS_PER_REQUEST = 10_000
# usersreplace's error code and the subcodes Meta documents for it.
REPLACE_ERROR = 2650
REPLACE_IN_PROGRESS = 1870145
REPLACE_TIMED_OUT = 1870158
DUPLICATE_LOOKALIKE = 2654


class AudienceApiError(RuntimeError):
    """Meta refused an audience call for a reason a retry cannot fix."""

    def __init__(self, error: MetaError, what: str):
        self.error = error
        super().__init__(f"{what}: {error.describe()}; {_advice(error)}")


class AudienceRequestInDoubt(RuntimeError):
    """The request timed out or lost its connection: Meta may or may not have taken it."""


@dataclass
class UploadResult:
    num_received: int
    num_invalid_entries: int
    invalid_entry_samples: list
    session_id: int | None


@dataclass
class ClientStats:
    requests: int = 0
    retries: int = 0
    waited_seconds: float = 0.0
    by_operation: dict[str, int] = field(default_factory=dict)


def _advice(error: MetaError) -> str:
    if error.code == REPLACE_ERROR and error.subcode == REPLACE_IN_PROGRESS:
        return "a replace is still running on this audience: wait until it ends (at most 90 minutes) and run again"
    if error.code == REPLACE_ERROR and error.subcode == REPLACE_TIMED_OUT:
        return (
            "the replace session ran past 90 minutes; the audience holds what was uploaded, run a diff sync"
        )
    if error.code == 200 and error.subcode == 1870090:
        return "accept the Custom Audience terms at https://www.facebook.com/legal/terms/customaudience"
    return error.advice()


class AudienceClient:
    """The audience calls of one ad account."""

    def __init__(self, cfg: MetaSettings, ad_account_id: str, *, sleep: Callable[[float], None] = time.sleep):
        if not ad_account_id:
            raise ValueError("the meta_default Connection has no ad_account_ids in its extra")
        self.cfg = cfg
        self.account = ad_account_id if ad_account_id.startswith("act_") else f"act_{ad_account_id}"
        self._sleep = sleep
        self._api = graph_api(cfg)
        self.stats = ClientStats()

    # -- audiences ----------------------------------------------------------------------------------

    def find_by_name(self, name: str) -> dict | None:
        """The account's audience called `name`, if any (`id`, `name`, `subtype`, ...)."""
        from facebook_business.adobjects.adaccount import AdAccount

        fields = ["id", "name", "subtype", "approximate_count_lower_bound", "operation_status"]

        def list_all():
            cursor = AdAccount(self.account, api=self._api).get_custom_audiences(
                fields=fields, params={"limit": 200}
            )
            return [dict(a.export_all_data()) for a in cursor]

        for audience in self._call("list_audiences", list_all):
            if audience.get("name") == name:
                return audience
        return None

    def create_custom_audience(self, name: str, description: str) -> str:
        from facebook_business.adobjects.adaccount import AdAccount

        params = {
            "name": name,
            "subtype": "CUSTOM",
            "description": description,
            "customer_file_source": "USER_PROVIDED_ONLY",
        }
        created = self._call(
            "create_audience",
            lambda: AdAccount(self.account, api=self._api).create_custom_audience(params=params),
        )
        return str(created["id"])

    def create_lookalike(self, name: str, origin_audience_id: str, country: str, ratio: float) -> str:
        """Create a Lookalike; raises AudienceApiError with code 2654 when it exists already."""
        from facebook_business.adobjects.adaccount import AdAccount

        params = {
            "name": name,
            "subtype": "LOOKALIKE",
            "origin_audience_id": origin_audience_id,
            # One of type or ratio: Meta ignores ratio when both are set.
            "lookalike_spec": json.dumps({"country": country, "ratio": ratio}),
        }
        created = self._call(
            "create_lookalike",
            lambda: AdAccount(self.account, api=self._api).create_custom_audience(params=params),
        )
        return str(created["id"])

    # -- members ------------------------------------------------------------------------------------

    def upload(
        self,
        operation: str,
        audience_id: str,
        schema: Sequence[str],
        rows: Sequence[Sequence[str]],
        session: dict,
    ) -> UploadResult:
        """Send one batch: `operation` is add, remove (`/users`) or replace (`/usersreplace`)."""
        from facebook_business.adobjects.customaudience import CustomAudience

        if len(rows) > MAX_ROWS_PER_REQUEST:
            raise ValueError(f"{len(rows)} rows in one request; Meta takes at most {MAX_ROWS_PER_REQUEST}")
        audience = CustomAudience(audience_id, api=self._api)
        # pre_hashed: the SDK sends the 64-hex values as they are, with no normalization of its own.
        params = CustomAudience.format_params(
            list(schema), [list(r) for r in rows], is_raw=True, pre_hashed=True, session=session
        )
        # Removes go as POST with method=DELETE (Meta documents both): a DELETE carries its
        # parameters in the query string, and 10,000 rows of hashes are megabytes, past URL limits.
        edge = "usersreplace" if operation == "replace" else "users"
        if operation == "remove":
            params["method"] = "DELETE"
        response = self._call(
            operation, lambda: self._api.call("POST", (audience.get_id_assured(), edge), params=params)
        )
        body = response.json() if hasattr(response, "json") else response
        if not isinstance(body, dict) or "num_received" not in body:
            raise AudienceRequestInDoubt(f"{operation}: Meta answered without num_received")
        return UploadResult(
            num_received=int(body.get("num_received") or 0),
            num_invalid_entries=int(body.get("num_invalid_entries") or 0),
            invalid_entry_samples=_samples(body.get("invalid_entry_samples")),
            session_id=body.get("session_id"),
        )

    # -- plumbing -----------------------------------------------------------------------------------

    def _call(self, operation: str, call: Callable):
        import requests
        from facebook_business.exceptions import FacebookRequestError

        reason = ""
        for attempt in range(1, self.cfg.max_attempts + 1):
            self.stats.requests += 1
            self.stats.by_operation[operation] = self.stats.by_operation.get(operation, 0) + 1
            try:
                result = call()
            except FacebookRequestError as exc:
                error = from_sdk_error(exc)
                self._pause(usage_wait_seconds(exc.http_headers()))
                # 2650/1870148 is usersreplace's "something went wrong; retry".
                retryable = error.transient or (error.code == REPLACE_ERROR and error.subcode == 1870148)
                if not retryable:
                    raise AudienceApiError(error, operation) from None
                reason = error.describe()
            except (requests.Timeout, requests.ConnectionError) as exc:
                raise AudienceRequestInDoubt(
                    f"{operation}: {type(exc).__name__} after {self.cfg.timeout_seconds} s; Meta may have taken "
                    "the request"
                ) from None
            else:
                headers = (
                    result.headers() if hasattr(result, "headers") and callable(result.headers) else None
                )
                self._pause(usage_wait_seconds(headers))
                return result
            if attempt == self.cfg.max_attempts:
                break
            self.stats.retries += 1
            delay = min(self.cfg.backoff_max_seconds, self.cfg.backoff_base_seconds * 2 ** (attempt - 1))
            delay *= 0.5 + random.random() / 2
            log.warning(
                "audiences: %s attempt %s of %s failed (%s); retrying in %.1f s",
                operation,
                attempt,
                self.cfg.max_attempts,
                reason,
                delay,
            )
            self._pause(delay)
        raise AudienceRetriesExhausted(
            f"{operation}: Meta failed {self.cfg.max_attempts} times in a row ({reason})"
        )

    def _pause(self, seconds: float) -> None:
        seconds = min(seconds, self.cfg.backoff_max_seconds)
        if seconds > 0:
            self.stats.waited_seconds += seconds
            self._sleep(seconds)


class AudienceRetriesExhausted(RuntimeError):
    """Meta kept failing transiently; the rows stay pending in the plan for the next attempt."""


def _samples(raw) -> list:
    """Meta's invalid_entry_samples (a list or a map) as a list of at most 100 strings."""
    if isinstance(raw, dict):
        raw = list(raw.values()) or list(raw)
    if not isinstance(raw, list):
        return []
    return [str(s) for s in raw[:100]]
