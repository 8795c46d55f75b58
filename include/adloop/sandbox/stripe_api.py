"""An emulator of the Stripe API's read endpoints, written from Stripe's API reference.

The real ``stripe`` SDK runs against it unchanged::

    StripeClient("sk_test_...", base_addresses={"api": sandbox.stripe_url})

It serves lists and retrieves of Checkout Sessions, Subscriptions, Invoices, Refunds, Customers,
PaymentIntents and Charges from ``SandboxStore.stripe_objects``, plus a Checkout Session's line
items. Lists follow Stripe's documented semantics: newest first, ``limit`` 1-100 (default 10),
``starting_after`` / ``ending_before`` cursors, ``has_more``, ``created`` as an integer or a range,
per-resource filters, and ``expand`` (``expand[]`` and indexed ``expand[0]``) of references that
are in the store. Errors use Stripe's shape ``{"error": {"type", "message", "code", "param"}}``.
Every page is one indexed SQL query with a LIMIT, whatever the size of the store.

The emulator is read-only: creating or updating objects is not emulated.

It does not partition objects by key mode: a ``sk_test_`` key sees live objects too. Stripe would
never mix them, so every object keeps its own ``livemode`` flag and the client's own livemode guard
is what gets exercised.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import Any

from adloop.sandbox.faults import FaultRule
from adloop.sandbox.store import SandboxStore
from adloop.sandbox.stripe_webhooks import StripeWebhooks
from adloop.sandbox.web import App, HTTPError, Request, Response, new_id

API_VERSION = "2026-10-28.endive"
MAX_LIMIT = 100
DEFAULT_LIMIT = 10
MAX_EXPAND_DEPTH = 4
_KEY_PATTERN = re.compile(r"^(sk|rk)_(test|live)_[A-Za-z0-9_]+$")
_ID_PATTERN = r"[A-Za-z0-9_\-]+"
# Embedded lists Stripe leaves out of an object unless they are expanded.
_HIDDEN_UNLESS_EXPANDED = {"checkout.session": ("line_items",)}
_HIDDEN_KEY = "\x00hidden"


@dataclass(frozen=True)
class Filter:
    """A list filter: its JSON path in the object and, optionally, the values Stripe accepts."""

    json_path: str
    choices: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Resource:
    object: str
    filters: dict[str, Filter] = field(default_factory=dict)
    # Parameters Stripe accepts on this list that the sandbox does not implement: rejected with a
    # clear message rather than silently ignored, so a client never trusts an unfiltered page.
    unsupported: tuple[str, ...] = ()
    default_exclude: dict[str, tuple[str, ...]] = field(default_factory=dict)


SUBSCRIPTION_STATUSES = (
    "active",
    "canceled",
    "incomplete",
    "incomplete_expired",
    "past_due",
    "paused",
    "trialing",
    "unpaid",
)

RESOURCES: dict[str, Resource] = {
    "checkout/sessions": Resource(
        "checkout.session",
        filters={
            "customer": Filter("$.customer"),
            "payment_intent": Filter("$.payment_intent"),
            "payment_link": Filter("$.payment_link"),
            "subscription": Filter("$.subscription"),
            "status": Filter("$.status", ("complete", "expired", "open")),
            "customer_details[email]": Filter("$.customer_details.email"),
        },
        unsupported=("customer_account",),
    ),
    "subscriptions": Resource(
        "subscription",
        filters={
            "customer": Filter("$.customer"),
            "status": Filter("$.status", (*SUBSCRIPTION_STATUSES, "all", "ended")),
            "collection_method": Filter("$.collection_method", ("charge_automatically", "send_invoice")),
        },
        unsupported=(
            "price",
            "current_period_start",
            "current_period_end",
            "automatic_tax",
            "test_clock",
            "customer_account",
        ),
        default_exclude={"$.status": ("canceled",)},
    ),
    "invoices": Resource(
        "invoice",
        filters={
            "customer": Filter("$.customer"),
            "status": Filter("$.status", ("draft", "open", "paid", "uncollectible", "void")),
            # Since API version 2025-03-31.basil an invoice's subscription lives under its parent.
            "subscription": Filter("$.parent.subscription_details.subscription"),
            "collection_method": Filter("$.collection_method", ("charge_automatically", "send_invoice")),
        },
        unsupported=("due_date", "customer_account"),
    ),
    "refunds": Resource(
        "refund",
        filters={"charge": Filter("$.charge"), "payment_intent": Filter("$.payment_intent")},
    ),
    "customers": Resource("customer", filters={"email": Filter("$.email")}, unsupported=("test_clock",)),
    "payment_intents": Resource(
        "payment_intent", filters={"customer": Filter("$.customer")}, unsupported=("customer_account",)
    ),
    "charges": Resource(
        "charge",
        filters={"customer": Filter("$.customer"), "payment_intent": Filter("$.payment_intent")},
        unsupported=("transfer_group",),
    ),
}
_COMMON_LIST_PARAMS = ("limit", "starting_after", "ending_before", "expand", "created")
_RESOURCE_PATTERN = "|".join(re.escape(k) for k in sorted(RESOURCES, key=len, reverse=True))


def stripe_error(
    status: int,
    message: str,
    *,
    type_: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
) -> Response:
    error: dict[str, Any] = {"type": type_, "message": message}
    if code:
        error["code"] = code
        error["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
    if param:
        error["param"] = param
    return Response.json({"error": error}, status)


def _bad_request(message: str, param: str | None = None, code: str | None = None) -> HTTPError:
    return HTTPError(stripe_error(400, message, param=param, code=code))


def parse_stripe_params(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's bracket form encoding: ``created[gte]=1`` -> {"created": {"gte": "1"}};
    ``expand[]=a&expand[0]=b`` -> {"expand": [...]}; ``customer_details[email]`` stays flat-keyed
    under its parent. One level of nesting is all list parameters need."""
    params: dict[str, Any] = {}
    indexed: dict[str, dict[int, str]] = {}
    for key, value in pairs:
        match = re.fullmatch(r"([A-Za-z0-9_]+)(?:\[([A-Za-z0-9_]*)\])?", key)
        if match is None:
            raise _bad_request(f"Invalid parameter name: {key}", param=key)
        name, sub = match.group(1), match.group(2)
        if sub is None:
            params[name] = value
        elif sub == "":
            params.setdefault(name, [])
            if not isinstance(params[name], list):
                raise _bad_request(f"Invalid array: {name}", param=name)
            params[name].append(value)
        elif sub.isdigit():
            indexed.setdefault(name, {})[int(sub)] = value
        else:
            params.setdefault(name, {})
            if not isinstance(params[name], dict):
                raise _bad_request(f"Invalid hash: {name}", param=name)
            params[name][sub] = value
    for name, by_index in indexed.items():
        existing = params.get(name, [])
        if not isinstance(existing, list):
            raise _bad_request(f"Invalid array: {name}", param=name)
        params[name] = existing + [by_index[i] for i in sorted(by_index)]
    return params


def _int_param(value: Any, param: str) -> int:
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    raise _bad_request(f"Invalid integer: {value}", param=param, code="parameter_invalid_integer")


class StripeApp(App):
    name = "stripe"

    def __init__(self, store: SandboxStore):
        super().__init__()
        self.store = store
        self.add_route("GET", f"/v1/(?P<resource>{_RESOURCE_PATTERN})", self.list_objects, "list")
        self.add_route(
            "GET",
            f"/v1/checkout/sessions/(?P<id>{_ID_PATTERN})/line_items",
            self.list_line_items,
            "line_items",
        )
        self.add_route(
            "GET", f"/v1/(?P<resource>{_RESOURCE_PATTERN})/(?P<id>{_ID_PATTERN})", self.retrieve, "retrieve"
        )
        self.add_control_route("POST", "objects", self._load_objects)
        self.add_control_route("GET", "summary", self._summary)
        self.add_control_route("POST", "reset", self._reset)
        # Signed webhook deliveries of stored objects to a configured endpoint (stripe_webhooks.py).
        self.webhooks = StripeWebhooks(store)
        self.webhooks.register(self)

    # -- hooks ---------------------------------------------------------------------------------------

    def before_route(self, request: Request) -> Response | None:
        key = _api_key(request.headers.get("Authorization") or "")
        if not key:
            return stripe_error(
                401,
                "You did not provide an API key. You need to provide your API key in the Authorization "
                "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
            )
        if not _KEY_PATTERN.match(key):
            masked = key[:8] + "*" * max(0, len(key) - 12) + key[-4:] if len(key) > 12 else "***"
            return stripe_error(401, f"Invalid API Key provided: {masked}")
        return None

    def not_found(self, request: Request) -> Response:
        if request.method != "GET" and any(r.pattern.match(request.path) for r in self.routes):
            return stripe_error(
                400, f"The sandbox Stripe API is read-only; {request.method} {request.path} is not emulated."
            )
        return stripe_error(
            404,
            f"Unrecognized request URL ({request.method}: {request.path}). Please see https://stripe.com/docs "
            "or we can help at https://support.stripe.com/.",
        )

    def internal_error(self, request: Request, exc: BaseException) -> Response:
        return stripe_error(500, f"Sandbox error: {type(exc).__name__}: {exc}", type_="api_error")

    def fault_response(self, request: Request, rule: FaultRule) -> Response:
        if rule.kind == "throttle":
            response = stripe_error(
                rule.status or 429,
                "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.",
                code="rate_limit",
            )
            if rule.should_retry is not None:
                response.headers["Stripe-Should-Retry"] = "true" if rule.should_retry else "false"
            return response
        status = rule.status or int(rule.kind.removeprefix("http_"))
        return stripe_error(
            status,
            "Sorry, something went wrong on Stripe's end (sandbox fault injection).",
            type_="api_error",
        )

    def finish(self, request: Request, response: Response) -> Response:
        response.headers.setdefault("Request-Id", "req_" + new_id())
        response.headers.setdefault("Stripe-Version", request.headers.get("Stripe-Version") or API_VERSION)
        response.headers.setdefault("Content-Type", "application/json")
        return response

    def health(self) -> dict[str, Any]:
        return {"stripe_objects": self.store.count_stripe_objects()}

    # -- API routes ----------------------------------------------------------------------------------

    def list_objects(self, request: Request) -> Response:
        resource = RESOURCES[request.params["resource"]]
        params = parse_stripe_params(request.query_pairs())
        allowed = {*_COMMON_LIST_PARAMS, *(f.split("[")[0] for f in resource.filters)}
        for name in params:
            if name in resource.unsupported:
                raise _bad_request(
                    f"The sandbox does not implement the '{name}' filter of "
                    f"/v1/{request.params['resource']}; filter the results yourself.",
                    param=name,
                )
            if name not in allowed:
                raise _bad_request(f"Received unknown parameter: {name}", param=name)

        limit = _limit(params)
        starting_after, ending_before = self._cursors(params, resource.object)
        created = _created(params.get("created"))
        equals, is_in, not_in = self._filters(params, resource)
        expand = _expand_paths(params, listing=True)

        rows, has_more = self.store.list_stripe_objects(
            resource.object,
            limit=limit,
            created=created,
            equals=equals,
            is_in=is_in,
            not_in=not_in,
            starting_after=starting_after,
            ending_before=ending_before,
        )
        rows = self._present(rows, expand)
        url = f"/v1/{request.params['resource']}"
        return Response.json({"object": "list", "data": rows, "has_more": has_more, "url": url})

    def retrieve(self, request: Request) -> Response:
        resource = RESOURCES[request.params["resource"]]
        params = parse_stripe_params(request.query_pairs())
        for name in params:
            if name != "expand":
                raise _bad_request(f"Received unknown parameter: {name}", param=name)
        obj = self.store.get_stripe_object(request.params["id"])
        if obj is None or obj.get("object") != resource.object:
            raise HTTPError(
                stripe_error(
                    404,
                    f"No such {resource.object}: '{request.params['id']}'",
                    code="resource_missing",
                    param="id",
                )
            )
        return Response.json(self._present([obj], _expand_paths(params, listing=False))[0])

    def list_line_items(self, request: Request) -> Response:
        params = parse_stripe_params(request.query_pairs())
        for name in params:
            if name not in ("limit", "starting_after", "ending_before", "expand"):
                raise _bad_request(f"Received unknown parameter: {name}", param=name)
        session = self.store.get_stripe_object(request.params["id"])
        if session is None or session.get("object") != "checkout.session":
            raise HTTPError(
                stripe_error(
                    404,
                    f"No such checkout.session: '{request.params['id']}'",
                    code="resource_missing",
                    param="session",
                )
            )
        items = list((session.get("line_items") or {}).get("data") or [])
        limit = _limit(params)
        ids = [item.get("id") for item in items]
        start, end = 0, len(items)
        if params.get("starting_after"):
            if params["starting_after"] not in ids:
                raise _bad_request(
                    f"No such line item: '{params['starting_after']}'", "starting_after", "resource_missing"
                )
            start = ids.index(params["starting_after"]) + 1
        if params.get("ending_before") and not params.get("starting_after"):
            if params["ending_before"] not in ids:
                raise _bad_request(
                    f"No such line item: '{params['ending_before']}'", "ending_before", "resource_missing"
                )
            end = ids.index(params["ending_before"])
            start = max(0, end - limit)
            page, has_more = items[start:end], start > 0
        else:
            page, has_more = items[start : start + limit], start + limit < end
        url = f"/v1/checkout/sessions/{request.params['id']}/line_items"
        return Response.json({"object": "list", "data": page, "has_more": has_more, "url": url})

    # -- helpers -------------------------------------------------------------------------------------

    def _cursors(
        self, params: dict[str, Any], object_type: str
    ) -> tuple[tuple[int, str] | None, tuple[int, str] | None]:
        if params.get("starting_after") and params.get("ending_before"):
            raise _bad_request(
                "You may only specify one of these parameters: ending_before, starting_after.",
                param="ending_before",
            )
        found = []
        for name in ("starting_after", "ending_before"):
            cursor_id = params.get(name)
            if not cursor_id:
                found.append(None)
                continue
            if not isinstance(cursor_id, str):
                raise _bad_request(f"Invalid {name}: expected an object id", param=name)
            cursor = self.store.stripe_cursor(cursor_id)
            if cursor is None or cursor[0] != object_type:
                raise _bad_request(
                    f"No such {object_type}: '{cursor_id}'", param=name, code="resource_missing"
                )
            found.append((cursor[1], cursor_id))
        return found[0], found[1]

    def _filters(
        self, params: dict[str, Any], resource: Resource
    ) -> tuple[dict[str, str], dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
        equals: dict[str, str] = {}
        is_in: dict[str, tuple[str, ...]] = {}
        not_in = dict(resource.default_exclude)
        for name, spec in resource.filters.items():
            base, _, sub = name.partition("[")
            value = params.get(base)
            if sub and isinstance(value, dict):
                value = value.get(sub.rstrip("]"))
            elif sub:
                if value is not None:
                    raise _bad_request(f"Invalid hash: {base}", param=base)
                continue
            if value is None:
                continue
            if not isinstance(value, str):
                raise _bad_request(f"Invalid string: {value}", param=name)
            if spec.choices is not None and value not in spec.choices:
                raise _bad_request(
                    f"Invalid {name}: must be one of {', '.join(spec.choices)}",
                    param=name,
                    code="parameter_invalid_string",
                )
            if name == "status" and resource.object == "subscription":
                not_in.pop("$.status", None)
                if value == "all":
                    continue
                if value == "ended":
                    is_in[spec.json_path] = ("canceled", "incomplete_expired")
                    continue
            equals[spec.json_path] = value
        return equals, is_in, not_in

    def _present(self, objects: list[dict[str, Any]], expand: list[list[str]]) -> list[dict[str, Any]]:
        """Objects as the API returns them: hidden lists removed, requested references expanded."""
        shown: list[dict[str, Any]] = []
        objects = [_hide(obj, shown) for obj in objects]
        for path in expand:
            self._expand(objects, path, path, shown)
        for obj in shown:
            obj.pop(_HIDDEN_KEY, None)
        return objects

    def _expand(
        self, objects: list[dict[str, Any]], path: list[str], full: list[str], shown: list[dict[str, Any]]
    ) -> None:
        name, rest = path[0], path[1:]
        dotted = ".".join(full)
        ids = []
        for obj in objects:
            hidden = obj.get(_HIDDEN_KEY) or {}
            if name in hidden:
                obj[name] = hidden[name] if hidden[name] is not None else _empty_line_items(obj)
            if name not in obj:
                raise _bad_request(f"This property cannot be expanded ({dotted}).", param="expand")
            value = obj[name]
            if isinstance(value, str):
                ids.append(value)
            elif value is not None and not isinstance(value, dict):
                raise _bad_request(f"This property cannot be expanded ({dotted}).", param="expand")
        fetched = self.store.get_stripe_objects(ids) if ids else {}
        children = []
        for obj in objects:
            value = obj.get(name)
            if isinstance(value, str) and value in fetched:
                value = obj[name] = _hide(fetched[value], shown)
            if isinstance(value, dict):
                children.append(value)
        if not rest:
            return
        if rest[0] == "data":  # into an embedded list (line_items.data.price)
            children = [
                item for child in children for item in child.get("data") or [] if isinstance(item, dict)
            ]
            rest = rest[1:]
            if not rest:
                return
        self._expand(children, rest, full, shown)

    # -- control routes ------------------------------------------------------------------------------

    def _load_objects(self, request: Request) -> Response:
        document = request.json()
        if isinstance(document, dict) and document.get("object") == "list":
            document = document.get("data") or []
        if not isinstance(document, list):
            return Response.json({"error": "POST a JSON list of Stripe objects or a list envelope"}, 400)
        try:
            count = self.store.insert_stripe_objects(document)
        except ValueError as exc:
            return Response.json({"error": str(exc)}, 400)
        self.webhooks.objects_loaded(document)
        return Response.json({"loaded": count})

    def _summary(self, request: Request) -> Response:
        with self.store.connection() as conn:
            counts = dict(conn.execute("SELECT object, count(*) FROM stripe_objects GROUP BY object"))
        return Response.json({"objects": counts, "requests": self.stats().get("requests", 0)})

    def _reset(self, request: Request) -> Response:
        body = request.json() or {}
        self.faults.clear()
        self.reset_stats()
        if isinstance(body, dict) and body.get("stripe_objects"):
            self.store.delete_stripe_objects()
        return Response.json({"reset": True})


def _api_key(authorization: str) -> str:
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value).decode().partition(":")[0]
        except (ValueError, UnicodeDecodeError):
            return ""
    return ""


def _limit(params: dict[str, Any]) -> int:
    if "limit" not in params:
        return DEFAULT_LIMIT
    limit = _int_param(params["limit"], "limit")
    if not 1 <= limit <= MAX_LIMIT:
        raise _bad_request(
            f"Invalid limit: must be between 1 and {MAX_LIMIT}",
            param="limit",
            code="parameter_invalid_integer",
        )
    return limit


def _created(value: Any) -> dict[str, int]:
    if value is None:
        return {}
    if isinstance(value, str):
        return {"eq": _int_param(value, "created")}
    if not isinstance(value, dict):
        raise _bad_request("Invalid created: expected an integer or a hash", param="created")
    out = {}
    for key, bound in value.items():
        if key not in ("gt", "gte", "lt", "lte"):
            raise _bad_request(f"Received unknown parameter: created[{key}]", param=f"created[{key}]")
        out[key] = _int_param(bound, f"created[{key}]")
    return out


def _expand_paths(params: dict[str, Any], listing: bool) -> list[list[str]]:
    raw = params.get("expand", [])
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list):
        raise _bad_request("Invalid array: expand", param="expand")
    paths = []
    for entry in dict.fromkeys(raw):
        parts = [p for p in entry.split(".") if p]
        if listing:
            if not parts or parts[0] != "data" or len(parts) == 1:
                raise _bad_request(
                    f"This property cannot be expanded ({entry}). You may want to try expanding "
                    f"'data.{entry}' instead.",
                    param="expand",
                )
            parts = parts[1:]
        if not parts:
            raise _bad_request("Invalid expand: empty path", param="expand")
        if len(parts) > MAX_EXPAND_DEPTH:
            raise _bad_request(
                f"You cannot expand more than {MAX_EXPAND_DEPTH} levels of a property ({entry}).",
                param="expand",
            )
        paths.append(parts)
    return paths


def _hide(obj: dict[str, Any], shown: list[dict[str, Any]]) -> dict[str, Any]:
    hidden_fields = _HIDDEN_UNLESS_EXPANDED.get(obj.get("object", ""), ())
    if hidden_fields:
        obj = dict(obj)
        obj[_HIDDEN_KEY] = {name: obj.pop(name, None) for name in hidden_fields}
        shown.append(obj)
    return obj


def _empty_line_items(session: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [],
        "has_more": False,
        "url": f"/v1/checkout/sessions/{session.get('id')}/line_items",
    }
