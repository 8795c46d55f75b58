"""An emulator of the Meta Graph API, written from Meta's documentation.

The real ``facebook-business`` SDK runs against it unchanged once ``FacebookSession.GRAPH`` points
at the emulator's URL. Today it serves the Conversions API, ``POST /{version}/{pixel_id}/events``;
custom audiences and ads insights are later routes on the same app (``MetaApp.add_route``).

What the Conversions API route enforces (Meta's documented rules; see reference/meta-apis.md §1):

- an access token (query, form field or ``Authorization`` header);
- ``data``: a JSON array of 1 to 1,000 events, each an object or a JSON-encoded object (the SDK
  sends the latter);
- per event: ``event_name``; integer ``event_time`` not older than 7 days (62 days for
  ``physical_store``) and not more than 5 minutes in the future; ``action_source`` from Meta's list;
  ``user_data`` with at least one key; ``client_user_agent`` and ``event_source_url`` for website
  events; SHA-256 (64 lowercase hex) values for the hashed keys; the ``fbp``/``fbc`` formats;
  ``custom_data.currency`` (3 letters) and ``value`` (a number), both required for ``Purchase``.

One invalid event rejects the whole request, with a Graph error whose message names the event
(``data[17]``) and nothing is stored as received. Accepted events are all stored, each marked as
counted or deduplicated: Meta discards an event whose pixel, ``event_name`` and ``event_id`` match
one it received in the previous 48 hours (measured from the first one).

Every response carries ``X-App-Usage``, ``X-Ad-Account-Usage`` and ``X-Business-Use-Case-Usage``,
derived from a rolling count of requests so that they rise under load.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections import deque
from typing import Any

from adloop.sandbox.faults import FaultRule
from adloop.sandbox.store import SandboxStore
from adloop.sandbox.web import App, HTTPError, Request, Response, new_id

MAX_EVENTS_PER_REQUEST = 1000
MAX_EVENT_AGE_SECONDS = 7 * 86400
MAX_EVENT_AGE_PHYSICAL_STORE_SECONDS = 62 * 86400
MAX_EVENT_FUTURE_SECONDS = 300
ACTION_SOURCES = frozenset(
    {
        "email",
        "website",
        "app",
        "phone_call",
        "chat",
        "physical_store",
        "system_generated",
        "business_messaging",
        "other",
    }
)
HASHED_KEYS = ("em", "ph", "fn", "ln", "ge", "db", "ct", "st", "zp", "country", "external_id")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FBP = re.compile(r"^fb\.\d\.\d{10,13}\.\d+(\.[A-Za-z0-9_-]+)?$")
_FBC = re.compile(r"^fb\.\d\.\d{10,13}\.\S+$")
_CURRENCY = re.compile(r"^[A-Za-z]{3}$")

# Graph error subcodes. 2804016 is documented in public reports of Meta's own responses (reference
# §1.6); the sandbox leaves error_subcode out where it has no confirmed value instead of inventing one.
SUBCODE_NOT_HASHED = 2804016

THROTTLE_DEFAULTS: dict[int, tuple[int | None, str]] = {
    4: (1504022, "(#4) Application request limit reached"),
    17: (2446079, "(#17) User request limit reached"),
    32: (None, "(#32) Page request limit reached"),
    613: (1487742, "(#613) Calls to this api have exceeded the rate limit."),
}
_BUC_MESSAGE = "(#{code}) There have been too many calls from this ad-account. Wait a bit and try again."


def graph_error(
    status: int,
    message: str,
    code: int,
    *,
    subcode: int | None = None,
    title: str | None = None,
    user_msg: str | None = None,
    is_transient: bool = False,
    type_: str = "OAuthException",
) -> Response:
    """A response in the Graph API error envelope."""
    error: dict[str, Any] = {"message": message, "type": type_, "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    error["is_transient"] = is_transient
    if title is not None:
        error["error_user_title"] = title
    if user_msg is not None:
        error["error_user_msg"] = user_msg
    error["fbtrace_id"] = new_id(11)
    return Response.json({"error": error}, status)


class InvalidEvent(Exception):
    def __init__(self, index: int, field: str, title: str, detail: str, subcode: int | None = None):
        super().__init__(f"data[{index}].{field}: {detail}")
        self.index, self.field, self.title, self.detail, self.subcode = index, field, title, detail, subcode


class UsageMeter:
    """Rolling count of Graph calls, as the percentages Meta's usage headers report.

    ``capacity`` calls within ``window_seconds`` is 100%. Known shortcoming: Meta weighs calls by
    type (reads 1 point, writes 3) and by CPU and wall time; the sandbox counts calls only.
    """

    def __init__(self, capacity: int = 10_000, window_seconds: float = 300.0):
        self.capacity = capacity
        self.window_seconds = window_seconds
        self._calls: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, now: float) -> None:
        with self._lock:
            calls = self._calls.setdefault(key, deque())
            calls.append(now)
            self._trim(calls, now)

    def usage(self, key: str, now: float) -> tuple[int, int]:
        """(percent used, seconds until the oldest call leaves the window)."""
        with self._lock:
            calls = self._calls.get(key) or deque()
            self._trim(calls, now)
            pct = min(100, math.ceil(100 * len(calls) / self.capacity)) if self.capacity else 100
            reset = max(0, math.ceil(calls[0] + self.window_seconds - now)) if calls else 0
        return pct, reset

    def _trim(self, calls: deque[float], now: float) -> None:
        while calls and calls[0] <= now - self.window_seconds:
            calls.popleft()

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()


class MetaApp(App):
    name = "meta"

    def __init__(self, store: SandboxStore, *, require_hashed_external_id: bool = True):
        super().__init__()
        self.store = store
        # Meta recommends hashing external_id but accepts it clear; adloop always hashes it, so the
        # sandbox holds it to the stricter rule by default to catch a client that forgot.
        self.require_hashed_external_id = require_hashed_external_id
        self.clock_offset = 0.0
        self.usage_meter = UsageMeter()
        version = r"(?:/(?P<version>v\d+\.\d+))?"
        self.add_route("POST", version + r"/(?P<pixel_id>[^/]+)/events/?", self.post_events, "events")
        self.add_control_route("GET", "received", self._received)
        self.add_control_route("GET", "summary", self._summary)
        self.add_control_route("POST", "reset", self._reset)
        self.add_control_route("POST", "clock", self._set_clock)
        self.add_control_route("GET", "config", self._config)
        self.add_control_route("POST", "config", self._set_config)
        # Custom audiences and the ads side (insights) live in their own modules, which import this one.
        from adloop.sandbox import meta_audiences, meta_insights

        meta_audiences.register(self)
        meta_insights.register(self)

    def now(self) -> float:
        """The emulator's clock: wall time plus an offset tests can move (``POST /_sandbox/clock``)."""
        return time.time() + self.clock_offset

    # -- hooks ---------------------------------------------------------------------------------------

    def before_route(self, request: Request) -> Response | None:
        self.usage_meter.hit("app", self.now())
        self.usage_meter.hit(_object_id(request.path), self.now())
        if not _access_token(request):
            response = graph_error(400, "An access token is required to request this resource.", 104)
            self._record_request(request, response)
            return response
        return None

    def not_found(self, request: Request) -> Response:
        object_id = _object_id(request.path)
        return graph_error(
            400,
            f"Unsupported {request.method.lower()} request. Object with ID '{object_id}' does not exist, "
            "cannot be loaded due to missing permissions, or does not support this operation.",
            100,
            subcode=33,
            type_="GraphMethodException",
        )

    def internal_error(self, request: Request, exc: BaseException) -> Response:
        return graph_error(500, f"Sandbox error: {type(exc).__name__}: {exc}", 1, is_transient=True)

    def fault_response(self, request: Request, rule: FaultRule) -> Response:
        self.usage_meter.hit("app", self.now())
        self.usage_meter.hit(_object_id(request.path), self.now())
        if rule.kind == "throttle":
            code = rule.code or 17
            subcode, message = THROTTLE_DEFAULTS.get(code, (None, _BUC_MESSAGE.format(code=code)))
            response = graph_error(
                rule.status or 400, message, code, subcode=rule.error_subcode or subcode, is_transient=True
            )
        else:
            response = graph_error(
                rule.status or int(rule.kind.removeprefix("http_")),
                "An unexpected error has occurred. Please retry your request later.",
                2,
                is_transient=True,
            )
        self._record_request(request, response, fault=rule.kind)
        return response

    def on_unanswered(self, request: Request) -> None:
        self.store.record_meta_request(
            {
                "request_id": new_id(11),
                "received_at": self.now(),
                "method": request.method,
                "path": request.path,
                "pixel_id": _pixel_id(request.path),
                "status": 0,
                "fault": "timeout",
            }
        )

    def finish(self, request: Request, response: Response) -> Response:
        now = self.now()
        throttled = request.fault is not None and request.fault.kind == "throttle"
        object_id = _object_id(request.path)
        app_pct, _ = self.usage_meter.usage("app", now)
        pct, reset = self.usage_meter.usage(object_id, now)
        regain = 0
        if throttled:
            app_pct = pct = 100
            regain = request.fault.regain_minutes
            reset = max(reset, regain * 60)
        elif pct >= 100:
            regain = max(1, math.ceil(reset / 60))
        cpu, total = max(0, pct * 3 // 5), max(0, pct * 4 // 5)
        response.headers["X-App-Usage"] = _compact(
            {"call_count": app_pct, "total_cputime": app_pct * 3 // 5, "total_time": app_pct * 4 // 5}
        )
        response.headers["X-Ad-Account-Usage"] = _compact(
            {"acc_id_util_pct": pct, "reset_time_duration": reset, "ads_api_access_tier": "standard_access"}
        )
        response.headers["X-Business-Use-Case-Usage"] = _compact(
            {
                object_id: [
                    {
                        "type": "ads_management",
                        "call_count": pct,
                        "total_cputime": cpu,
                        "total_time": total,
                        "estimated_time_to_regain_access": regain,
                        "ads_api_access_tier": "standard_access",
                    }
                ]
            }
        )
        trace = _trace_id(response) or new_id(11)
        response.headers["x-fb-trace-id"] = trace
        response.headers["x-fb-request-id"] = new_id(20)
        return response

    def health(self) -> dict[str, Any]:
        return {"clock_offset_seconds": self.clock_offset}

    # -- Conversions API -----------------------------------------------------------------------------

    def post_events(self, request: Request) -> Response:
        pixel_id = request.params["pixel_id"]
        fields = _request_fields(request)
        test_event_code = fields.get("test_event_code") or None
        now = self.now()

        try:
            events = self._parse_events(fields.get("data"))
        except InvalidEvent as exc:
            response = graph_error(
                400,
                f"Invalid parameter: data[{exc.index}].{exc.field}: {exc.detail}",
                100,
                subcode=exc.subcode,
                title=exc.title,
                user_msg=f"Event data[{exc.index}], parameter {exc.field}: {exc.detail}",
            )
            self._record_request(request, response, events_in_request=_count_events(fields.get("data")))
            return response
        except HTTPError as exc:
            self._record_request(request, exc.response, events_in_request=_count_events(fields.get("data")))
            return exc.response

        response = Response.json({"events_received": len(events), "messages": [], "fbtrace_id": new_id(11)})
        counted, deduplicated = self.store.record_capi_events(
            pixel_id, events, request_id=_trace_id(response), received_at=now, test_event_code=test_event_code
        )
        self._record_request(
            request,
            response,
            events_in_request=len(events),
            counted=counted,
            deduplicated=deduplicated,
            test_event_code=test_event_code,
        )
        return response

    def _parse_events(self, data: Any) -> list[dict[str, Any]]:
        if data is None or data == "":
            raise HTTPError(graph_error(400, "(#100) The parameter data is required", 100))
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except ValueError:
                raise HTTPError(
                    graph_error(400, "(#100) Param data must be a JSON array of events", 100)
                ) from None
        if not isinstance(data, list):
            raise HTTPError(graph_error(400, "(#100) Param data must be a JSON array of events", 100))
        if not data:
            raise HTTPError(graph_error(400, "(#100) Param data must contain at least one event", 100))
        if len(data) > MAX_EVENTS_PER_REQUEST:
            raise HTTPError(
                graph_error(
                    400,
                    f"(#100) Param data must contain at most {MAX_EVENTS_PER_REQUEST} events; "
                    f"this request has {len(data)}",
                    100,
                    title="Too Many Events",
                    user_msg=f"Send at most {MAX_EVENTS_PER_REQUEST} events per request.",
                )
            )

        now = self.now()
        events = []
        for index, raw in enumerate(data):
            event = raw
            if isinstance(raw, str):
                try:
                    event = json.loads(raw)
                except ValueError:
                    raise InvalidEvent(index, "", "Invalid Event", "the event is not valid JSON") from None
            if not isinstance(event, dict):
                raise InvalidEvent(index, "", "Invalid Event", "each event must be a JSON object")
            self._check_event(index, event, now)
            events.append(event)
        return events

    def _check_event(self, i: int, event: dict[str, Any], now: float) -> None:
        name = event.get("event_name")
        if not isinstance(name, str) or not name.strip():
            raise InvalidEvent(i, "event_name", "Missing Event Name", "event_name is required")

        action_source = event.get("action_source")
        if action_source is None:
            raise InvalidEvent(i, "action_source", "Missing Action Source", "action_source is required")
        if action_source not in ACTION_SOURCES:
            raise InvalidEvent(
                i,
                "action_source",
                "Invalid Action Source",
                f"{action_source!r} is not one of {', '.join(sorted(ACTION_SOURCES))}",
            )

        event_time = event.get("event_time")
        if not isinstance(event_time, int) or isinstance(event_time, bool):
            raise InvalidEvent(
                i, "event_time", "Invalid Event Time", "event_time must be a Unix timestamp in seconds"
            )
        max_age = (
            MAX_EVENT_AGE_PHYSICAL_STORE_SECONDS
            if action_source == "physical_store"
            else MAX_EVENT_AGE_SECONDS
        )
        if event_time < now - max_age:
            raise InvalidEvent(
                i,
                "event_time",
                "Event Timestamp Too Old",
                f"event_time {event_time} is more than {max_age // 86400} days before the request; "
                "the whole request was rejected",
            )
        if event_time > now + MAX_EVENT_FUTURE_SECONDS:
            raise InvalidEvent(
                i,
                "event_time",
                "Event Timestamp In The Future",
                f"event_time {event_time} is more than {MAX_EVENT_FUTURE_SECONDS} seconds in the future",
            )

        if "event_id" in event and not isinstance(event["event_id"], str | int):
            raise InvalidEvent(i, "event_id", "Invalid Event ID", "event_id must be a string")

        self._check_user_data(i, event.get("user_data"), action_source)
        if action_source == "website":
            url = event.get("event_source_url")
            if not isinstance(url, str) or not url.strip():
                raise InvalidEvent(
                    i,
                    "event_source_url",
                    "Missing Event Source URL",
                    "event_source_url is required for events with action_source 'website'",
                )
        self._check_custom_data(i, name, event.get("custom_data"))

    def _check_user_data(self, i: int, user_data: Any, action_source: str) -> None:
        if not isinstance(user_data, dict) or not any(v not in (None, "", []) for v in user_data.values()):
            raise InvalidEvent(
                i,
                "user_data",
                "Missing User Data",
                "user_data with at least one customer parameter is required",
            )
        if action_source == "website":
            agent = user_data.get("client_user_agent")
            if not isinstance(agent, str) or not agent.strip():
                raise InvalidEvent(
                    i,
                    "user_data.client_user_agent",
                    "Missing Client User Agent",
                    "client_user_agent is required for events with action_source 'website'",
                )
        for key in HASHED_KEYS:
            if key not in user_data or (key == "external_id" and not self.require_hashed_external_id):
                continue
            values = user_data[key]
            values = values if isinstance(values, list) else [values]
            for value in values:
                if not isinstance(value, str) or not _SHA256.match(value):
                    raise InvalidEvent(
                        i,
                        f"user_data.{key}",
                        "User Parameter Not Hashed",
                        f"{key} must be a SHA-256 hash (64 lowercase hex characters) of the normalized value",
                        subcode=SUBCODE_NOT_HASHED,
                    )
        for key, pattern, shape in (
            ("fbp", _FBP, "fb.{subdomain_index}.{creation_time}.{random_number}"),
            ("fbc", _FBC, "fb.{subdomain_index}.{creation_time}.{fbclid}"),
        ):
            value = user_data.get(key)
            if value is not None and (not isinstance(value, str) or not pattern.match(value)):
                raise InvalidEvent(
                    i,
                    f"user_data.{key}",
                    f"Invalid {key} Format",
                    f"{key} must look like {shape}, not hashed",
                )

    def _check_custom_data(self, i: int, event_name: str, custom_data: Any) -> None:
        if custom_data is None:
            custom_data = {}
        if not isinstance(custom_data, dict):
            raise InvalidEvent(i, "custom_data", "Invalid Custom Data", "custom_data must be an object")
        currency = custom_data.get("currency")
        if currency is not None and (not isinstance(currency, str) or not _CURRENCY.match(currency)):
            raise InvalidEvent(
                i,
                "custom_data.currency",
                "Invalid Currency",
                f"{currency!r} is not an ISO 4217 currency code",
            )
        value = custom_data.get("value")
        if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
            raise InvalidEvent(i, "custom_data.value", "Invalid Value", f"value {value!r} must be a number")
        if event_name == "Purchase" and (currency is None or value is None):
            raise InvalidEvent(
                i,
                "custom_data",
                "Missing Purchase Value",
                "Purchase events require custom_data.value and custom_data.currency",
            )

    def _record_request(
        self,
        request: Request,
        response: Response,
        *,
        events_in_request: int = 0,
        counted: int = 0,
        deduplicated: int = 0,
        test_event_code: str | None = None,
        fault: str | None = None,
    ) -> None:
        body = json.loads(response.body) if response.body else {}
        error = body.get("error") if isinstance(body, dict) else None
        if fault is None and request.fault is not None:
            fault = request.fault.kind
        self.store.record_meta_request(
            {
                "request_id": _trace_id(response) or new_id(11),
                "received_at": self.now(),
                "method": request.method,
                "path": request.path,
                "pixel_id": _pixel_id(request.path),
                "status": response.status,
                "events_in_request": events_in_request,
                "events_counted": counted,
                "events_deduplicated": deduplicated,
                "error_code": error.get("code") if error else None,
                "error_subcode": error.get("error_subcode") if error else None,
                "error_message": error.get("message") if error else None,
                "fault": fault,
                "test_event_code": test_event_code,
            }
        )

    # -- control routes ------------------------------------------------------------------------------

    def _received(self, request: Request) -> Response:
        query = dict(request.query_pairs())
        pixel_id = query.get("pixel_id") or None
        limit = int(query.get("limit", 1000))
        offset = int(query.get("offset", 0))
        counted = {"true": True, "false": False}.get(query.get("counted", "").lower())
        return Response.json(
            {
                "summary": self.store.meta_summary(pixel_id),
                "events": self.store.received_events(
                    pixel_id, event_id=query.get("event_id"), counted=counted, limit=limit, offset=offset
                ),
                "requests": self.store.meta_requests(pixel_id, limit=limit, offset=offset),
            }
        )

    def _summary(self, request: Request) -> Response:
        pixel_id = dict(request.query_pairs()).get("pixel_id") or None
        return Response.json(self.store.meta_summary(pixel_id))

    def _reset(self, request: Request) -> Response:
        self.store.reset_meta()
        self.usage_meter.reset()
        self.reset_stats()
        self.clock_offset = 0.0
        return Response.json({"reset": True})

    def _set_clock(self, request: Request) -> Response:
        body = request.json() or {}
        if not isinstance(body.get("offset_seconds"), int | float):
            return Response.json({"error": 'POST {"offset_seconds": <number>}'}, 400)
        self.clock_offset = float(body["offset_seconds"])
        return Response.json({"offset_seconds": self.clock_offset, "now": self.now()})

    def _config(self, request: Request) -> Response:
        return Response.json(
            {
                "usage_capacity": self.usage_meter.capacity,
                "usage_window_seconds": self.usage_meter.window_seconds,
                "require_hashed_external_id": self.require_hashed_external_id,
            }
        )

    def _set_config(self, request: Request) -> Response:
        body = request.json() or {}
        if "usage_capacity" in body:
            self.usage_meter.capacity = int(body["usage_capacity"])
        if "usage_window_seconds" in body:
            self.usage_meter.window_seconds = float(body["usage_window_seconds"])
        if "require_hashed_external_id" in body:
            self.require_hashed_external_id = bool(body["require_hashed_external_id"])
        return self._config(request)


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _access_token(request: Request) -> str:
    for key, value in request.query_pairs():
        if key == "access_token" and value:
            return value
    auth = request.headers.get("Authorization") or ""
    scheme, _, token = auth.partition(" ")
    if scheme.lower() in ("bearer", "oauth") and token.strip():
        return token.strip()
    try:
        return str(request.body_fields().get("access_token") or "")
    except ValueError:
        return ""


def _request_fields(request: Request) -> dict[str, Any]:
    fields: dict[str, Any] = dict(request.query_pairs())
    try:
        fields.update(request.body_fields())
    except (ValueError, UnicodeDecodeError):
        raise HTTPError(graph_error(400, "(#100) The request body could not be parsed", 100)) from None
    return fields


def _object_id(path: str) -> str:
    parts = [p for p in path.split("/") if p]
    if parts and re.fullmatch(r"v\d+\.\d+", parts[0]):
        parts = parts[1:]
    return parts[0] if parts else ""


def _pixel_id(path: str) -> str | None:
    return _object_id(path) if path.rstrip("/").endswith("/events") else None


def _trace_id(response: Response) -> str | None:
    try:
        body = json.loads(response.body)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    return body.get("fbtrace_id") or (body.get("error") or {}).get("fbtrace_id")


def _count_events(data: Any) -> int:
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            return 0
    return len(data) if isinstance(data, list) else 0
