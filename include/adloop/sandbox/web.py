"""A small threaded HTTP layer shared by the sandbox emulators.

``App`` holds a route table (method, path regex, handler), the fault injector and the control
routes every emulator serves under ``/_sandbox/``; the Stripe and Meta emulators subclass it and
add their routes, so later work (custom audiences, insights) adds routes to the same app.
``EmulatorServer`` serves an ``App`` from ``http.server.ThreadingHTTPServer`` with HTTP/1.1
keep-alive, in a background thread, and stops cleanly: held requests are released and open
keep-alive connections are closed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from adloop.sandbox.faults import FaultInjector, FaultRule, FaultRuleError

log = logging.getLogger(__name__)

CONTROL_PREFIX = "/_sandbox/"


class DropConnection(Exception):
    """Close the connection without answering (the client sees a timeout or a reset)."""


class HTTPError(Exception):
    """Raised by a handler to answer with an error response built by the app."""

    def __init__(self, response: Response):
        super().__init__(response.status)
        self.response = response


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: Any  # http.client.HTTPMessage: case-insensitive .get()
    body: bytes = b""
    params: dict[str, str] = field(default_factory=dict)  # groups of the matched route
    fault: FaultRule | None = None  # the fault rule applied to this request, if any
    route: str = ""

    def query_pairs(self) -> list[tuple[str, str]]:
        return parse_qsl(self.query, keep_blank_values=True)

    def content_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

    def body_fields(self) -> dict[str, Any]:
        """Body parameters of a form-encoded or JSON POST (JSON values stay decoded)."""
        if not self.body:
            return {}
        if self.content_type() == "application/json":
            decoded = json.loads(self.body)
            if not isinstance(decoded, dict):
                raise ValueError("a JSON body must be an object")
            return decoded
        return dict(parse_qsl(self.body.decode("utf-8"), keep_blank_values=True))

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        body = json.dumps(payload, separators=(",", ":")).encode()
        return cls(status, body, {"Content-Type": "application/json; charset=utf-8", **(headers or {})})


Handler = Callable[[Request], Response]


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    name: str


class App:
    """Route table, faults and control routes of one emulator."""

    name = "app"

    def __init__(self) -> None:
        self.routes: list[Route] = []
        self.control_routes: list[Route] = []
        self.faults = FaultInjector()
        self.stop_event = threading.Event()
        self._stats: Counter[str] = Counter()
        self._stats_lock = threading.Lock()
        self.started_at = time.time()
        self.add_control_route("GET", "health", self._health)
        self.add_control_route("GET", "faults", lambda r: Response.json({"faults": self.faults.rules()}))
        self.add_control_route("POST", "faults", self._add_fault)
        self.add_control_route("DELETE", "faults", self._clear_faults)
        self.add_control_route("DELETE", r"faults/(?P<rule_id>\d+)", self._remove_fault)
        self.add_control_route("GET", "stats", lambda r: Response.json(self.stats()))

    # -- routes ------------------------------------------------------------------------------------

    def add_route(self, method: str, pattern: str, handler: Handler, name: str | None = None) -> None:
        """Serve ``method`` requests whose path matches ``pattern`` (anchored) with ``handler``."""
        self.routes.append(Route(method.upper(), re.compile(f"^{pattern}$"), handler, name or pattern))

    def add_control_route(self, method: str, pattern: str, handler: Handler) -> None:
        full = CONTROL_PREFIX + pattern
        self.control_routes.append(Route(method.upper(), re.compile(f"^{full}/?$"), handler, full))

    # -- hooks for the emulators -------------------------------------------------------------------

    def before_route(self, request: Request) -> Response | None:
        """Checks every API request passes before routing (authentication); None to go on."""
        return None

    def not_found(self, request: Request) -> Response:
        return Response.json({"error": f"no route for {request.method} {request.path}"}, 404)

    def internal_error(self, request: Request, exc: BaseException) -> Response:
        return Response.json({"error": f"sandbox bug: {type(exc).__name__}: {exc}"}, 500)

    def fault_response(self, request: Request, rule: FaultRule) -> Response:
        return Response.json({"error": rule.kind}, rule.status or 500)

    def finish(self, request: Request, response: Response) -> Response:
        """Last touch on every API response (request ids, usage headers)."""
        return response

    def on_unanswered(self, request: Request) -> None:
        """Called when a timeout fault drops a request it did not process."""

    def health(self) -> dict[str, Any]:
        return {}

    # -- request flow ------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        if request.path.startswith(CONTROL_PREFIX):
            return self._dispatch(request, self.control_routes, control=True)

        rule = self.faults.pick(request.method, request.path)
        request.fault = rule
        if rule is None:
            response = self._dispatch(request, self.routes)
        elif rule.kind == "slow":
            self.stop_event.wait(rule.delay_seconds)
            response = self._dispatch(request, self.routes)
        elif rule.kind == "timeout":
            if rule.process_first:
                self._dispatch(request, self.routes)
            else:
                self.on_unanswered(request)
            self._count(request, 0)
            self.stop_event.wait(rule.hold_seconds)
            raise DropConnection
        else:
            response = self.finish(request, self.fault_response(request, rule))
        self._count(request, response.status)
        return response

    def _dispatch(self, request: Request, routes: list[Route], control: bool = False) -> Response:
        if not control:
            early = self.before_route(request)
            if early is not None:
                return self.finish(request, early)
        try:
            for route in routes:
                match = route.pattern.match(request.path)
                if match and route.method == request.method:
                    request.params = {k: v for k, v in match.groupdict().items() if v is not None}
                    request.route = route.name
                    response = route.handler(request)
                    break
            else:
                response = self.not_found(request)
        except HTTPError as exc:
            response = exc.response
        except Exception as exc:  # a sandbox bug must show up as a 500, not a dropped connection
            log.exception("sandbox %s: %s %s failed", self.name, request.method, request.path)
            response = self.internal_error(request, exc)
        return response if control else self.finish(request, response)

    # -- stats and common control routes ------------------------------------------------------------

    def _count(self, request: Request, status: int) -> None:
        with self._stats_lock:
            self._stats["requests"] += 1
            self._stats[f"status:{status}"] += 1
            if request.route:
                self._stats[f"route:{request.method} {request.route}"] += 1
            if request.fault is not None:
                self._stats[f"fault:{request.fault.kind}"] += 1

    def stats(self) -> dict[str, Any]:
        with self._stats_lock:
            return dict(self._stats)

    def reset_stats(self) -> None:
        with self._stats_lock:
            self._stats.clear()

    def _health(self, request: Request) -> Response:
        return Response.json(
            {"status": "ok", "emulator": self.name, "uptime_seconds": round(time.time() - self.started_at, 3)}
            | self.health()
        )

    def _add_fault(self, request: Request) -> Response:
        try:
            rule = self.faults.add(request.json())
        except (FaultRuleError, TypeError, ValueError) as exc:
            return Response.json({"error": str(exc)}, 400)
        return Response.json(rule.to_dict(), 201)

    def _clear_faults(self, request: Request) -> Response:
        self.faults.clear()
        return Response.json({"faults": []})

    def _remove_fault(self, request: Request) -> Response:
        removed = self.faults.remove(int(request.params["rule_id"]))
        return Response.json({"removed": removed}, 200 if removed else 404)


def new_id(length: int = 14) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(length))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "adloop-sandbox"
    timeout = 120  # idle keep-alive connections are closed after this many seconds
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("sandbox %s: " + format, self.server.app.name, *args)

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_DELETE = do_PUT = do_PATCH = do_GET

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        request = Request(self.command, parts.path or "/", parts.query, self.headers, self._read_body())
        try:
            response = self.server.app.handle(request)
        except DropConnection:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._write(response)

    def _write(self, response: Response) -> None:
        try:
            reason = HTTPStatus(response.status).phrase
        except ValueError:
            reason = "Unknown"
        head = [f"HTTP/1.1 {response.status} {reason}", f"Server: {self.server_version}"]
        headers = {"Content-Length": str(len(response.body)), **response.headers}
        if self.close_connection:
            headers["Connection"] = "close"
        head += [f"{k}: {v}" for k, v in headers.items()]
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body
        try:
            self.wfile.write(data)
        except OSError:
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], app: App):
        self.app = app
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, sock: socket.socket) -> None:
        with self._open_lock:
            self._open.add(sock)

    def untrack(self, sock: socket.socket) -> None:
        with self._open_lock:
            self._open.discard(sock)

    def close_open_connections(self) -> None:
        with self._open_lock:
            socks, self._open = list(self._open), set()
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class EmulatorServer:
    """Serves one ``App`` on host:port (0 picks a free port) in a background thread."""

    def __init__(self, app: App, host: str = "127.0.0.1", port: int = 0):
        self.app = app
        self.host = host
        self.port = port
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError(f"the {self.app.name} emulator is not running")
        return f"http://{self.host}:{self._httpd.server_address[1]}"

    def start(self) -> EmulatorServer:
        self.app.stop_event.clear()
        self._httpd = _Server((self.host, self.port), self.app)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.01},
            name=f"sandbox-{self.app.name}",
            daemon=True,
        )
        self._thread.start()
        log.info("sandbox: %s emulator listening on %s", self.app.name, self.url)
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self.app.stop_event.set()  # releases slow and timeout faults that are holding requests
        self._httpd.shutdown()
        self._httpd.close_open_connections()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None
