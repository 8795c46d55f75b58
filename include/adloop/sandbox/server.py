"""Run the Stripe and Meta emulators together, in background threads or as a standalone process.

In a test or the demo::

    with Sandbox(tmp_path / "sandbox.db") as sandbox:
        stripe_client = StripeClient("sk_test_x", base_addresses={"api": sandbox.stripe_url})
        FacebookSession.GRAPH = sandbox.meta_url
        sandbox.meta.faults.add(kind="http_500", count=2)

As a process (``python -m adloop.sandbox`` or ``adloop sandbox serve``), ``serve()`` blocks until
SIGINT or SIGTERM and announces its URLs on stdout and, if asked, in a JSON ready file.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from adloop.sandbox.client import SandboxClient
from adloop.sandbox.meta_api import MetaApp
from adloop.sandbox.store import SandboxStore
from adloop.sandbox.stripe_api import StripeApp
from adloop.sandbox.web import EmulatorServer

log = logging.getLogger(__name__)


class Sandbox:
    """Both emulators over one state file. ``stripe`` and ``meta`` are the apps (faults, clock)."""

    def __init__(
        self, state_path: str | Path, stripe_port: int = 0, meta_port: int = 0, host: str = "127.0.0.1"
    ):
        self.store = SandboxStore(state_path)
        self.stripe = StripeApp(self.store)
        self.meta = MetaApp(self.store)
        self._stripe_server = EmulatorServer(self.stripe, host, stripe_port)
        self._meta_server = EmulatorServer(self.meta, host, meta_port)
        self._running = False

    @property
    def stripe_url(self) -> str:
        return self._stripe_server.url

    @property
    def meta_url(self) -> str:
        return self._meta_server.url

    def start(self) -> Sandbox:
        if not self._running:
            self.store.ensure_filter_indexes()
            self._stripe_server.start()
            try:
                self._meta_server.start()
            except BaseException:
                self._stripe_server.stop()
                raise
            self._running = True
        return self

    def stop(self) -> None:
        if self._running:
            self._meta_server.stop()
            self._stripe_server.stop()
            self._running = False
        self.store.close()

    def client(self) -> SandboxClient:
        """A control client for both running emulators."""
        return SandboxClient(stripe_url=self.stripe_url, meta_url=self.meta_url)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def serve(
    state_path: str | Path,
    stripe_port: int = 12111,
    meta_port: int = 12112,
    *,
    host: str = "127.0.0.1",
    stripe_fixtures: Iterable[str | Path] = (),
    ready_file: str | Path | None = None,
    stop_event: threading.Event | None = None,
) -> None:
    """Serve both emulators until SIGINT/SIGTERM (or ``stop_event``), after loading any fixtures.

    Once both are listening it prints one JSON line ``{"stripe_url", "meta_url", "pid", "state"}``
    to stdout and writes the same JSON to ``ready_file`` (atomically), so a parent process can wait
    for the file and read the URLs from it.
    """
    stop_event = stop_event or threading.Event()
    sandbox = Sandbox(state_path, stripe_port, meta_port, host)
    for fixture in stripe_fixtures:
        sandbox.store.load_fixture(fixture)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda *_: stop_event.set())
    try:
        with sandbox:
            ready = {
                "stripe_url": sandbox.stripe_url,
                "meta_url": sandbox.meta_url,
                "pid": os.getpid(),
                "state": str(state_path),
            }
            if ready_file is not None:
                tmp = Path(f"{ready_file}.tmp")
                tmp.write_text(json.dumps(ready))
                tmp.replace(ready_file)
            print(json.dumps(ready), flush=True)
            log.info("sandbox: Stripe at %s, Meta at %s", sandbox.stripe_url, sandbox.meta_url)
            while not stop_event.wait(0.5):
                pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if ready_file is not None:
            Path(ready_file).unlink(missing_ok=True)
        log.info("sandbox: stopped")
