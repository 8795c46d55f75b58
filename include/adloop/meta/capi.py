"""Sending conversion events to the Conversions API through the facebook-business SDK.

adloop hands the SDK values it has already normalized and hashed (the SDK passes 64-hex values
through unchanged); the SDK's own normalizers have gaps for phones and names.

A request either succeeds whole or fails whole: one invalid event rejects every event in it. So
a rejected batch is split in halves until the bad events stand alone; they are quarantined with
Meta's message and the rest are sent. Transient failures (timeouts, 5xx, throttling) are retried
with exponential backoff, and Meta's usage headers slow the sender down before it is throttled.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from adloop.meta.api import graph_api
from adloop.meta.errors import MetaError, MetaRefused, from_sdk_error, usage_wait_seconds
from adloop.settings import MetaSettings

log = logging.getLogger(__name__)

USER_DATA_LIST_KEYS = {
    "em": "emails",
    "ph": "phones",
    "fn": "first_names",
    "ln": "last_names",
    "ct": "cities",
    "st": "states",
    "zp": "zip_codes",
    "country": "country_codes",
    "external_id": "external_ids",
}


class CapiFatalError(MetaRefused):
    """Meta refused the request for a reason no retry or split can fix (token, permission)."""


class CapiRetriesExhausted(RuntimeError):
    """Meta kept failing transiently; the events stay in flight for the next attempt."""


@dataclass
class DeliveryStats:
    requests: int = 0
    sent: int = 0
    quarantined: int = 0
    retries: int = 0
    waited_seconds: float = 0.0
    fbtrace_ids: list[str] = field(default_factory=list)


def build_event(row: dict):
    """One SDK Event from a conversion row of the warehouse (hashed customer data only)."""
    from facebook_business.adobjects.serverside.action_source import ActionSource
    from facebook_business.adobjects.serverside.custom_data import CustomData
    from facebook_business.adobjects.serverside.event import Event
    from facebook_business.adobjects.serverside.user_data import UserData

    user = {param: [row[key]] for key, param in USER_DATA_LIST_KEYS.items() if row.get(key)}
    for key in ("client_ip_address", "client_user_agent", "fbc", "fbp"):
        if row.get(key):
            user[key] = row[key]
    custom = CustomData(value=float(row["value"]), currency=row["currency"])
    return Event(
        event_name=row["event_name"],
        event_time=int(row["event_time"]),
        event_id=row["event_id"],
        event_source_url=row.get("event_source_url") or None,
        action_source=ActionSource(row["action_source"]),
        user_data=UserData(**user),
        custom_data=custom,
    )


class CapiSender:
    """Delivers rows to one pixel, a request of up to 1,000 events at a time."""

    def __init__(self, cfg: MetaSettings, *, sleep: Callable[[float], None] = time.sleep):
        if not cfg.pixel_id:
            raise ValueError("the meta_default Connection has no pixel_id in its extra")
        self.cfg = cfg
        self._sleep = sleep
        self._api = graph_api(cfg)
        self.stats = DeliveryStats()

    def deliver(
        self,
        rows: Sequence[dict],
        *,
        on_sent: Callable[[Sequence[dict], str | None], None],
        on_rejected: Callable[[dict, MetaError], None],
    ) -> None:
        """Send rows; every row ends in exactly one of on_sent or on_rejected, or this raises."""
        if not rows:
            return
        error = self._post_with_retry(rows)
        if error is None:
            return on_sent(rows, self.stats.fbtrace_ids[-1] if self.stats.fbtrace_ids else None)
        if len(rows) == 1:
            self.stats.quarantined += 1
            return on_rejected(rows[0], error)
        half = len(rows) // 2
        log.info("capi: request of %s events rejected (%s); splitting it", len(rows), error.describe())
        self.deliver(rows[:half], on_sent=on_sent, on_rejected=on_rejected)
        self.deliver(rows[half:], on_sent=on_sent, on_rejected=on_rejected)

    def _post_with_retry(self, rows: Sequence[dict]) -> MetaError | None:
        """None when Meta accepted the request; the error when Meta rejected its data."""
        import requests
        from facebook_business.adobjects.serverside.event_request import EventRequest
        from facebook_business.exceptions import FacebookRequestError

        request = EventRequest(
            pixel_id=self.cfg.pixel_id,
            events=[build_event(r) for r in rows],
            test_event_code=self.cfg.test_event_code,
        )
        params = request.get_params()
        for attempt in range(1, self.cfg.max_attempts + 1):
            self.stats.requests += 1
            try:
                response = self._api.call("POST", (self.cfg.pixel_id, "events"), params=params)
            except FacebookRequestError as exc:
                error = from_sdk_error(exc)
                self._pause(usage_wait_seconds(exc.http_headers()))
                if error.rejects_data:
                    return error
                if not error.transient:
                    raise CapiFatalError(error) from None
                reason = error.describe()
            except (requests.Timeout, requests.ConnectionError) as exc:
                # A timeout is in doubt: Meta may have taken the events. Sending them again is
                # safe because Meta drops an event_id + event_name it saw within 48 hours.
                reason = f"{type(exc).__name__} after {self.cfg.timeout_seconds} s"
            else:
                body = response.json()
                # The SDK calls any non-JSON body a success (an HTML 502 from a proxy, say), so
                # only a 2xx that reports the events received counts as delivered.
                if 200 <= response.status() < 300 and isinstance(body, dict) and "events_received" in body:
                    self.stats.sent += int(body["events_received"] or 0)
                    self.stats.fbtrace_ids.append(body.get("fbtrace_id"))
                    self._pause(usage_wait_seconds(response.headers()))
                    return None
                reason = f"HTTP {response.status()} without events_received"
            if attempt == self.cfg.max_attempts:
                break
            self.stats.retries += 1
            delay = min(self.cfg.backoff_max_seconds, self.cfg.backoff_base_seconds * 2 ** (attempt - 1))
            delay *= 0.5 + random.random() / 2  # jitter, so parallel senders do not retry in step
            log.warning("capi: attempt %s of %s failed (%s); retrying in %.1f s", attempt,
                        self.cfg.max_attempts, reason, delay)
            self._pause(delay)
        raise CapiRetriesExhausted(
            f"Meta failed {self.cfg.max_attempts} times in a row for a request of {len(rows)} events "
            f"(last: {reason}); they stay in flight in the ledger and the next attempt resends them"
        )

    def _pause(self, seconds: float) -> None:
        # Never longer than the backoff cap: when Meta asks for more (an hour to regain access),
        # the attempts run out and the task's own retry, minutes later, takes over.
        seconds = min(seconds, self.cfg.backoff_max_seconds)
        if seconds > 0:
            self.stats.waited_seconds += seconds
            self._sleep(seconds)
