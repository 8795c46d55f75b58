"""A thin client of the sandbox control routes (``/_sandbox/...``), for tests and the demo."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class SandboxControlError(RuntimeError):
    """A control route answered with an error; the message carries the sandbox's explanation."""


class SandboxClient:
    def __init__(self, stripe_url: str | None = None, meta_url: str | None = None, timeout: float = 10.0):
        self.stripe_url = stripe_url.rstrip("/") if stripe_url else None
        self.meta_url = meta_url.rstrip("/") if meta_url else None
        self.timeout = timeout

    # -- faults --------------------------------------------------------------------------------------

    def add_fault(self, emulator: str, kind: str, **rule: Any) -> dict[str, Any]:
        """Add a fault rule to ``emulator`` ("meta" or "stripe"); see ``adloop.sandbox.faults``.

        ``client.add_fault("meta", "throttle", code=17, count=2)``
        """
        return self._call(emulator, "POST", "faults", {"kind": kind, **rule})

    def faults(self, emulator: str) -> list[dict[str, Any]]:
        return self._call(emulator, "GET", "faults")["faults"]

    def clear_faults(self, emulator: str | None = None) -> None:
        """Clear the fault rules of one emulator, or of every emulator this client knows."""
        for name in self._emulators(emulator):
            self._call(name, "DELETE", "faults")

    # -- Meta received state -------------------------------------------------------------------------

    def received(
        self,
        pixel_id: str | None = None,
        *,
        limit: int = 1000,
        offset: int = 0,
        event_id: str | None = None,
        counted: bool | None = None,
    ) -> dict[str, Any]:
        """Summary, events and requests the Meta emulator received."""
        query = {"limit": limit, "offset": offset, "pixel_id": pixel_id, "event_id": event_id}
        if counted is not None:
            query["counted"] = "true" if counted else "false"
        return self._call("meta", "GET", "received", query=query)

    def received_events(self, pixel_id: str | None = None, **filters: Any) -> list[dict[str, Any]]:
        return self.received(pixel_id, **filters)["events"]

    def received_requests(self, pixel_id: str | None = None, **filters: Any) -> list[dict[str, Any]]:
        return self.received(pixel_id, **filters)["requests"]

    def summary(self, pixel_id: str | None = None) -> dict[str, int]:
        """Counts: requests, rejected_requests, faulted_requests, events_received/counted/deduplicated."""
        return self._call("meta", "GET", "summary", query={"pixel_id": pixel_id})

    def reset(self) -> None:
        """Forget what the Meta emulator received (and its usage counters and clock offset)."""
        self._call("meta", "POST", "reset", {})

    def set_clock_offset(self, seconds: float) -> None:
        """Move the Meta emulator's clock (dedup windows, event age) by ``seconds`` from wall time."""
        self._call("meta", "POST", "clock", {"offset_seconds": seconds})

    def configure_meta(self, **config: Any) -> dict[str, Any]:
        """``usage_capacity``, ``usage_window_seconds``, ``require_hashed_external_id``."""
        return self._call("meta", "POST", "config", config)

    # -- Stripe --------------------------------------------------------------------------------------

    def load_stripe_objects(self, objects: list[dict[str, Any]]) -> int:
        return self._call("stripe", "POST", "objects", objects)["loaded"]

    def stripe_summary(self) -> dict[str, Any]:
        return self._call("stripe", "GET", "summary")

    def configure_webhook_endpoint(self, url: str, secret: str, **options: Any) -> dict[str, Any]:
        """Where the Stripe emulator delivers signed events; options as in ``stripe_webhooks.Endpoint``
        (``drop_share``, ``duplicate_share``, ``delay_share``, ``delay_seconds``, ``seed``, ...)."""
        return self._call("stripe", "POST", "webhooks/endpoint", {"url": url, "secret": secret, **options})

    def deliver_webhooks(self, object_ids: list[str] | None = None, created: dict[str, int] | None = None,
                         timeout: float = 120.0) -> dict[str, Any]:
        """Deliver the events of stored objects (all, or these ids, or created in a range); the report."""
        body: dict[str, Any] = {"object_ids": object_ids} if object_ids else {"created": created or {}}
        previous, self.timeout = self.timeout, timeout
        try:
            return self._call("stripe", "POST", "webhooks/deliver", body)
        finally:
            self.timeout = previous

    def webhook_deliveries(self) -> dict[str, Any]:
        return self._call("stripe", "GET", "webhooks/deliveries")

    # -- both ----------------------------------------------------------------------------------------

    def health(self, emulator: str) -> dict[str, Any]:
        return self._call(emulator, "GET", "health")

    def stats(self, emulator: str) -> dict[str, Any]:
        return self._call(emulator, "GET", "stats")

    def _emulators(self, emulator: str | None) -> list[str]:
        if emulator is not None:
            return [emulator]
        return [name for name, url in (("stripe", self.stripe_url), ("meta", self.meta_url)) if url]

    def _call(
        self, emulator: str, method: str, route: str, body: Any = None, query: dict[str, Any] | None = None
    ) -> Any:
        base = {"stripe": self.stripe_url, "meta": self.meta_url}.get(emulator)
        if base is None:
            raise ValueError(f"no URL for the {emulator!r} emulator; pass stripe_url= or meta_url=")
        url = f"{base}/_sandbox/{route}"
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise SandboxControlError(f"{method} {url} -> {exc.code}: {detail}") from None
