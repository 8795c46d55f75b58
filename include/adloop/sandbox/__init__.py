"""Local emulators of the Stripe API and the Meta Graph API, for tests and the demo.

Production code never imports this package. The emulators are written from Meta's and Stripe's
documentation and share no validation, hashing or event-building code with adloop's clients.
"""

from __future__ import annotations

from adloop.sandbox.client import SandboxClient
from adloop.sandbox.faults import FaultRule
from adloop.sandbox.server import Sandbox, serve
from adloop.sandbox.store import SandboxStore

__all__ = ["FaultRule", "Sandbox", "SandboxClient", "SandboxStore", "serve"]
