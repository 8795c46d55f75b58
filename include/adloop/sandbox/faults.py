"""Fault injection for the sandbox emulators.

Each emulator has one ``FaultInjector``. A rule says what goes wrong (``kind``), to which calls
(``path_contains``, ``method``), how often (``probability`` with an optional ``seed``, and/or the
next ``count`` calls) and with which details. The first rule that fires for a call decides it.
Control routes (``/_sandbox/...``) are never faulted.

Kinds:

- ``http_500``, ``http_502``, ``http_503``: the server error, in the emulated API's error shape.
- ``throttle``: Meta answers with a Graph rate-limit error (code 4, 17, 613 or 80000-80014) and
  usage headers at 100%; Stripe answers HTTP 429 ``rate_limit``.
- ``slow``: wait ``delay_seconds``, then answer normally.
- ``timeout``: hold the connection for ``hold_seconds`` (longer than the client waits), then close
  it without an answer. With ``process_first`` the request is processed before the hold, which is
  the in-doubt case: the client sees a timeout although the server acted on the request.

Rule JSON (``POST /_sandbox/faults``), every field but ``kind`` optional::

    {"kind": "throttle", "count": 3, "probability": 1.0, "seed": 7, "path_contains": "/events",
     "method": "POST", "status": 400, "code": 17, "error_subcode": 2446079, "regain_minutes": 1,
     "delay_seconds": 2.0, "hold_seconds": 30.0, "process_first": false, "should_retry": null}
"""

from __future__ import annotations

import itertools
import random
import threading
from dataclasses import dataclass, field
from typing import Any

KINDS = ("http_500", "http_502", "http_503", "throttle", "slow", "timeout")

# Graph API rate-limit codes Meta documents for the Marketing API (reference/meta-apis.md §3.6).
META_THROTTLE_CODES = frozenset({4, 17, 32, 613, *range(80000, 80015)})


class FaultRuleError(ValueError):
    """A fault rule that cannot be applied; the message says which field is wrong."""


@dataclass
class FaultRule:
    kind: str
    probability: float = 1.0
    seed: int | None = None
    count: int | None = None
    path_contains: str | None = None
    method: str | None = None
    # throttle and http_*: the HTTP status to answer with (defaults per emulator and kind)
    status: int | None = None
    # throttle (Meta): the Graph error code and subcode
    code: int | None = None
    error_subcode: int | None = None
    # throttle (Meta): estimated_time_to_regain_access in the usage headers, minutes
    regain_minutes: int = 1
    # throttle (Stripe): value of the Stripe-Should-Retry header, if any
    should_retry: bool | None = None
    delay_seconds: float = 1.0
    hold_seconds: float = 30.0
    process_first: bool = False
    id: int = 0
    fired: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultRule:
        if not isinstance(data, dict):
            raise FaultRuleError("a fault rule is a JSON object with at least a 'kind'")
        known = {f for f in cls.__dataclass_fields__ if not f.startswith("_") and f not in ("id", "fired")}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FaultRuleError(f"unknown fault rule field(s) {unknown}; known: {sorted(known)}")
        rule = cls(**data)
        rule.validate()
        rule._rng = random.Random(rule.seed)
        return rule

    def validate(self) -> None:
        if self.kind not in KINDS:
            raise FaultRuleError(f"kind {self.kind!r} is not one of {list(KINDS)}")
        if not 0.0 <= float(self.probability) <= 1.0:
            raise FaultRuleError(f"probability {self.probability!r} must be between 0 and 1")
        if self.count is not None and (not isinstance(self.count, int) or self.count < 1):
            raise FaultRuleError(f"count {self.count!r} must be a positive integer (the next N calls)")
        if self.code is not None and self.code not in META_THROTTLE_CODES:
            raise FaultRuleError(
                f"code {self.code!r} is not a Graph rate-limit code (4, 17, 32, 613, 80000-80014)"
            )
        if self.status is not None and not 400 <= int(self.status) <= 599:
            raise FaultRuleError(f"status {self.status!r} must be an HTTP error status (400-599)")
        for name in ("delay_seconds", "hold_seconds"):
            if float(getattr(self, name)) < 0:
                raise FaultRuleError(f"{name} must not be negative")
        if self.method is not None:
            self.method = self.method.upper()

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        return self.path_contains is None or self.path_contains in path

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__ if not name.startswith("_")}
        data["remaining"] = None if self.count is None else self.count - self.fired
        return data


class FaultInjector:
    """The fault rules of one emulator; thread-safe."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def add(self, rule: FaultRule | dict[str, Any] | None = None, **fields: Any) -> FaultRule:
        """Add a rule, given as a ``FaultRule``, a dict, or keyword fields (``add(kind="slow")``)."""
        if rule is None:
            rule = FaultRule.from_dict(fields)
        elif isinstance(rule, dict):
            rule = FaultRule.from_dict({**rule, **fields})
        else:
            rule.validate()
        with self._lock:
            rule.id = next(self._ids)
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def remove(self, rule_id: int) -> bool:
        with self._lock:
            before = len(self._rules)
            self._rules = [r for r in self._rules if r.id != rule_id]
            return len(self._rules) != before

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.to_dict() for r in self._rules]

    def pick(self, method: str, path: str) -> FaultRule | None:
        """The rule that fires for this call, if any; counts it and retires exhausted rules."""
        with self._lock:
            for rule in self._rules:
                if not rule.matches(method, path):
                    continue
                if rule.probability < 1.0 and rule._rng.random() >= rule.probability:
                    continue
                rule.fired += 1
                if rule.count is not None and rule.fired >= rule.count:
                    self._rules.remove(rule)
                return rule
        return None
