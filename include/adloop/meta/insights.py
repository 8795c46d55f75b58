"""Reading Ads Insights through the facebook-business SDK: async report runs, paced and retried.

`InsightsClient.ad_days(account, since, until)` yields one flat row per ad and day. It runs an
async report (`AdAccount.get_insights(is_async=True)`, an `AdReportRun`), polls it with a growing
delay, and reads its pages. A job that fails, is skipped, or stalls (no progress for a while, or
too long overall) is split into two halves of its date range, down to single days; a single day
that keeps failing raises `InsightsJobFailed`.

Every HTTP call goes through `_PacedApi.call`, the SDK's one door to the network. There the
client reads Meta's usage headers on each response (`X-Business-Use-Case-Usage`,
`X-Ad-Account-Usage`, `X-FB-Ads-Insights-Throttle`) and pauses before Meta throttles, and retries
throttling (codes 4, 17, 32, 613, 80000-80014), transient errors and 5xx with exponential backoff.

Which action types count (reference/meta-apis.md §3.1: pick one per conversion, or totals double):
the Pixel's own events, `offsite_conversion.fb_pixel_purchase` and its `complete_registration`,
and `schedule_website` / `subscribe_website` for the Schedule and Subscribe standard events.
[inference] The exact action_type names Meta returns for Schedule and Subscribe are not in the
reference; they are constants here so one edit changes them.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from adloop.meta.errors import MetaError, MetaRefused, from_sdk_error, usage_wait_seconds
from adloop.settings import MetaSettings

log = logging.getLogger(__name__)

# Figure name in the warehouse -> the action_type adloop counts for it.
ACTION_TYPES = {
    "purchases": "offsite_conversion.fb_pixel_purchase",
    "bookings": "schedule_website",
    "signups": "offsite_conversion.fb_pixel_complete_registration",
    "subscribes": "subscribe_website",
}
VALUE_TYPES = {
    "purchase_value": "offsite_conversion.fb_pixel_purchase",
    "subscribe_value": "subscribe_website",
}
# Windows Meta still serves (7d_view and 28d_view stopped on 2026-01-12). `value`, the ad set's own
# attribution setting, is what the figures use; the others are kept in `actions` for reference.
ATTRIBUTION_WINDOWS = ("1d_click", "7d_click", "28d_click", "1d_view")
AD_FIELDS = (
    "account_id",
    "account_currency",
    "ad_id",
    "ad_name",
    "adset_id",
    "adset_name",
    "campaign_id",
    "campaign_name",
    "spend",
    "impressions",
    "clicks",
    "reach",
    "actions",
    "action_values",
    "attribution_setting",
)
ACCOUNT_FIELDS = ("spend", "impressions")
DONE, FAILED, SKIPPED = "Job Completed", "Job Failed", "Job Skipped"


class InsightsError(MetaRefused):
    """Meta refused the request for a reason no retry can fix (token, permission, bad query)."""


class InsightsRetriesExhausted(RuntimeError):
    """Meta kept failing transiently; a later run (or a task retry) picks the window up again."""


class InsightsJobFailed(RuntimeError):
    """A report for a single day failed or stalled every time it was submitted."""


class _JobDidNotFinish(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class InsightsOptions:
    """Tuning; the defaults suit the real API. Tests shrink the waits."""

    page_size: int = 500
    poll_initial_seconds: float = 2.0
    poll_max_seconds: float = 30.0
    job_timeout_seconds: float = 1800.0  # Meta: async jobs can take up to an hour with retries
    stall_seconds: float = 600.0  # no change in percent completion for this long: a hung job
    day_attempts: int = 3  # submissions of a one-day report before giving up

    @classmethod
    def from_extra(cls, extra: dict | None) -> InsightsOptions:
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in (extra or {}).items() if k in known})


@dataclass
class InsightsStats:
    requests: int = 0
    report_runs: int = 0
    split_jobs: int = 0
    retries: int = 0
    throttled: int = 0
    pages: int = 0
    rows: int = 0
    waited_seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "failures"} | {"failures": len(self.failures)}


@dataclass(frozen=True)
class AdAccount:
    account_id: str  # act_...
    currency: str
    timezone_name: str
    name: str = ""


def _api_class():
    from facebook_business.api import FacebookAdsApi

    class PacedApi(FacebookAdsApi):
        """The SDK's API object, with usage pacing and retries around every call."""

        def __init__(self, session, api_version, client: InsightsClient):
            super().__init__(session, api_version)
            self._client = client

        def call(self, method, path, params=None, headers=None, files=None, url_override=None, api_version=None):
            response = self._client._call_with_retry(
                lambda: super(PacedApi, self).call(method, path, params, headers, files, url_override, api_version)
            )
            if method == "GET" and str(path[-1] if isinstance(path, tuple | list) else path).endswith("insights"):
                self._client.stats.pages += 1
            return response

    return PacedApi


class InsightsClient:
    """Insights of one or more ad accounts through one SDK session."""

    def __init__(
        self,
        cfg: MetaSettings,
        options: InsightsOptions | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        from facebook_business.session import FacebookSession

        self.cfg = cfg
        self.options = options or InsightsOptions()
        self._sleep = sleep
        self._clock = clock
        session = FacebookSession(access_token=cfg.access_token, timeout=cfg.timeout_seconds)
        # Set on the instance: this session, and every SDK object bound to it, talks to this URL.
        session.GRAPH = cfg.graph_url.rstrip("/")
        self.api = _api_class()(session, cfg.api_version, self)
        self.stats = InsightsStats()

    # -- public ---------------------------------------------------------------------------------

    def account(self, account_id: str) -> AdAccount:
        from facebook_business.adobjects.adaccount import AdAccount as SdkAdAccount

        node = SdkAdAccount(_act(account_id), api=self.api).api_get(fields=["name", "currency", "timezone_name"])
        return AdAccount(_act(account_id), str(node["currency"]).upper(), node["timezone_name"], node.get("name", ""))

    def ad_days(self, account_id: str, since: date, until: date) -> Iterator[dict]:
        """One flat row per ad and day of [since, until], read through async report runs."""
        params = {
            "level": "ad",
            "time_increment": 1,
            "action_attribution_windows": list(ATTRIBUTION_WINDOWS),
        }
        for row in self._report(_act(account_id), since, until, params, AD_FIELDS, self.options.day_attempts):
            yield flatten(row)

    def account_days(self, account_id: str, since: date, until: date) -> Iterator[dict]:
        """The account's own total per day of [since, until] (a small synchronous read)."""
        from facebook_business.adobjects.adaccount import AdAccount as SdkAdAccount

        params = {
            "level": "account",
            "time_increment": 1,
            "time_range": {"since": since.isoformat(), "until": until.isoformat()},
            "limit": self.options.page_size,
        }
        cursor = SdkAdAccount(_act(account_id), api=self.api).get_insights(fields=list(ACCOUNT_FIELDS), params=params)
        for row in _pages(cursor, self.stats):
            yield {
                "date_start": date.fromisoformat(row["date_start"]),
                "spend": Decimal(str(row.get("spend") or "0")),
                "impressions": int(row.get("impressions") or 0),
            }

    # -- async reports --------------------------------------------------------------------------

    def _report(self, account_id: str, since: date, until: date, params: dict, fields, attempts: int):
        try:
            run = self._run_job(account_id, since, until, params, fields)
        except _JobDidNotFinish as exc:
            span = (until - since).days + 1
            self.stats.failures.append(f"{since}..{until}: {exc.reason}")
            if span > 1:
                middle = since + timedelta(days=span // 2 - 1)
                self.stats.split_jobs += 1
                log.warning("insights %s: report %s..%s %s; splitting it into %s..%s and %s..%s", account_id,
                            since, until, exc.reason, since, middle, middle + timedelta(days=1), until)
                yield from self._report(account_id, since, middle, params, fields, attempts)
                yield from self._report(account_id, middle + timedelta(days=1), until, params, fields, attempts)
                return
            if attempts <= 1:
                raise InsightsJobFailed(
                    f"the insights report of {account_id} for {since} {exc.reason} on every one of "
                    f"{self.options.day_attempts} submissions; Meta may be having trouble, try the run again later"
                ) from None
            log.warning("insights %s: report of %s %s; submitting it again", account_id, since, exc.reason)
            yield from self._report(account_id, since, until, params, fields, attempts - 1)
            return
        cursor = run.get_result(params={"limit": self.options.page_size})
        yield from _pages(cursor, self.stats)

    def _run_job(self, account_id: str, since: date, until: date, params: dict, fields):
        from facebook_business.adobjects.adaccount import AdAccount as SdkAdAccount
        from facebook_business.adobjects.adreportrun import AdReportRun

        job_params = dict(params, time_range={"since": since.isoformat(), "until": until.isoformat()})
        run = SdkAdAccount(account_id, api=self.api).get_insights(fields=list(fields), params=job_params,
                                                                  is_async=True)
        self.stats.report_runs += 1
        started = last_change = self._clock()
        last_percent = -1
        delay = self.options.poll_initial_seconds
        while True:
            self._pause(delay)
            run.api_get(fields=[AdReportRun.Field.async_status, AdReportRun.Field.async_percent_completion])
            status = run[AdReportRun.Field.async_status]
            percent = int(run.get(AdReportRun.Field.async_percent_completion) or 0)
            now = self._clock()
            # "Job Running" at 100 % happens briefly: only "Job Completed" means the rows are ready.
            if status == DONE and percent == 100:
                return run
            if status == FAILED:
                code, subcode = run.get("error_code"), run.get("error_subcode")
                raise _JobDidNotFinish(f"failed (error {code}/{subcode}: {run.get('error_message') or 'no message'})")
            if status == SKIPPED:
                raise _JobDidNotFinish("was skipped by Meta")
            if percent != last_percent:
                last_percent, last_change = percent, now
            if now - last_change > self.options.stall_seconds:
                raise _JobDidNotFinish(f"stalled at {percent} % for {now - last_change:.0f} s")
            if now - started > self.options.job_timeout_seconds:
                raise _JobDidNotFinish(f"did not finish within {self.options.job_timeout_seconds:.0f} s")
            delay = min(self.options.poll_max_seconds, delay * 1.5)

    # -- every HTTP call ------------------------------------------------------------------------

    def _call_with_retry(self, send):
        import requests
        from facebook_business.exceptions import FacebookRequestError

        for attempt in range(1, self.cfg.max_attempts + 1):
            self.stats.requests += 1
            try:
                response = send()
            except FacebookRequestError as exc:
                error = from_sdk_error(exc)
                if not _retryable(error):
                    raise InsightsError(error) from None
                if error.code in _THROTTLE_CODES:
                    self.stats.throttled += 1
                headers_wait = _pace_seconds(exc.http_headers())
                reason = error.describe()
            except (requests.Timeout, requests.ConnectionError) as exc:
                headers_wait = 0.0
                reason = f"{type(exc).__name__} after {self.cfg.timeout_seconds} s"
            else:
                self._pause(min(_pace_seconds(response.headers()), self.cfg.backoff_max_seconds))
                return response
            if attempt == self.cfg.max_attempts:
                break
            self.stats.retries += 1
            delay = min(self.cfg.backoff_max_seconds, self.cfg.backoff_base_seconds * 2 ** (attempt - 1))
            delay *= 0.5 + random.random() / 2
            delay = max(delay, min(headers_wait, self.cfg.backoff_max_seconds))
            log.warning("insights: attempt %s of %s failed (%s); retrying in %.1f s", attempt, self.cfg.max_attempts,
                        reason, delay)
            self._pause(delay)
        raise InsightsRetriesExhausted(
            f"Meta failed {self.cfg.max_attempts} times in a row (last: {reason}); nothing of this window was "
            "loaded, and the task's retry or the next run reads it again"
        )

    def _pause(self, seconds: float) -> None:
        if seconds > 0:
            self.stats.waited_seconds += seconds
            self._sleep(seconds)


_THROTTLE_CODES = frozenset({4, 17, 32, 613}) | frozenset(range(80000, 80015))


def _retryable(error: MetaError) -> bool:
    return error.transient or (error.http_status or 0) >= 500


def _pace_seconds(headers) -> float:
    """The pause Meta's usage headers call for, including the insights-specific throttle header."""
    wait = usage_wait_seconds(headers)
    lowered = {k.lower(): v for k, v in dict(headers or {}).items()}
    raw = lowered.get("x-fb-ads-insights-throttle")
    if raw:
        try:
            throttle = json.loads(raw)
        except ValueError:
            throttle = {}
        used = max(float(throttle.get("app_id_util_pct") or 0), float(throttle.get("acc_id_util_pct") or 0))
        if used >= 95:
            wait = max(wait, 30.0)
        elif used >= 75:
            wait = max(wait, 2.0)
    return wait


def _pages(cursor, stats: InsightsStats) -> Iterator[dict]:
    """Rows of an SDK cursor as plain dicts; the cursor loads the next page as the last one runs out."""
    for item in cursor:
        stats.rows += 1
        yield item.export_all_data() if hasattr(item, "export_all_data") else dict(item)


def _act(account_id: str) -> str:
    return account_id if account_id.startswith("act_") else f"act_{account_id}"


def _action_total(entries, action_type: str) -> Decimal:
    for entry in entries or ():
        if entry.get("action_type") == action_type:
            return Decimal(str(entry.get("value") or "0"))
    return Decimal(0)


def flatten(row: dict) -> dict:
    """A Meta insights row as adloop stores it: figures from the counted action types only."""
    actions, values = row.get("actions") or [], row.get("action_values") or []
    counted = set(ACTION_TYPES.values())
    kept = {
        "actions": [e for e in actions if e.get("action_type") in counted],
        "action_values": [e for e in values if e.get("action_type") in counted],
    }
    flat = {
        "ad_id": str(row["ad_id"]),
        "ad_name": row.get("ad_name"),
        "adset_id": row.get("adset_id"),
        "adset_name": row.get("adset_name"),
        "campaign_id": row.get("campaign_id"),
        "campaign_name": row.get("campaign_name"),
        "currency": (row.get("account_currency") or "").upper() or None,
        "date_start": date.fromisoformat(row["date_start"]),
        "date_stop": date.fromisoformat(row.get("date_stop") or row["date_start"]),
        "spend": Decimal(str(row.get("spend") or "0")),
        "impressions": int(row.get("impressions") or 0),
        "clicks": int(row.get("clicks") or 0),
        "reach": int(row.get("reach") or 0),
        "attribution_setting": row.get("attribution_setting"),
        "actions": json.dumps(kept, sort_keys=True, separators=(",", ":")),
    }
    for name, action_type in ACTION_TYPES.items():
        flat[name] = int(_action_total(actions, action_type))
    for name, action_type in VALUE_TYPES.items():
        flat[name] = _action_total(values, action_type)
    return flat
