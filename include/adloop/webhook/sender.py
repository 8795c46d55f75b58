"""Sending queued conversions to CAPI in the background of the receiver.

The request that wrote a `pending` ledger row has already answered Stripe; this worker thread
takes the rows from a bounded in-process queue, a batch at a time, and sends each batch once
with a short timeout (`settings.capi_settings`), through the same `CapiSender` and `build_event`
as the nightly backfill. The ledger is written before the request (`in_flight`, one more
attempt) and after it (`sent`, or `quarantined` with Meta's message). A timeout, a 5xx or Meta
being down puts the rows back to `pending` with the error: the nightly DAG sends them (its plan
treats pending and in-flight rows as not yet sent). Rows that do not fit in the queue, or are
still queued when the receiver stops, stay pending the same way.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from datetime import UTC, datetime

from sqlalchemy import and_, select, update

from adloop.reconcile import _settle
from adloop.settings import MetaSettings
from adloop.warehouse.schema import capi_events, quarantine
from adloop.warehouse.webhook_schema import app_conversions

log = logging.getLogger(__name__)

SEND_COLUMNS = (
    "event_id", "event_name", "event_time", "action_source", "event_source_url", "client_user_agent",
    "client_ip_address", "fbp", "fbc", "currency", "value",
    "em", "ph", "fn", "ln", "ct", "st", "zp", "country", "external_id",
)


class CapiWorker:
    def __init__(self, engine, meta: MetaSettings | None, *, queue_size: int = 10_000, batch_max: int = 100,
                 sender_factory=None):
        self.engine = engine
        self.meta = meta
        self.batch_max = batch_max
        self._queue: queue.Queue[dict] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sender_factory = sender_factory
        self._sender = None
        self.counts: Counter = Counter()
        self._idle = threading.Condition()
        self._busy = 0

    @property
    def enabled(self) -> bool:
        return self.meta is not None or self._sender_factory is not None

    def start(self) -> CapiWorker:
        if self.enabled and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="adloop-capi-sender", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Finish the batch being sent; whatever is still queued stays pending in the ledger."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        left = self._queue.qsize()
        if left:
            log.info("capi sender: stopped with %s conversions queued; they stay pending for the nightly DAG", left)

    def submit(self, row: dict) -> bool:
        """Queue a row whose ledger entry is pending; False (it stays pending) if the queue is full."""
        if self._thread is None:
            self.counts["not_queued"] += 1
            return False
        try:
            self._queue.put_nowait(row)
        except queue.Full:
            self.counts["queue_full"] += 1
            return False
        with self._idle:
            self._busy += 1
        return True

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every submitted row has been handled (tests and benchmarks)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)

    def status(self) -> dict:
        return {"enabled": self.enabled, "running": self._thread is not None, "queued": self._queue.qsize(),
                "unsettled": self._busy, **dict(self.counts)}

    # -- the worker thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < self.batch_max:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._send(batch)
            except Exception:  # the thread must survive anything; the rows stay in the ledger
                log.exception("capi sender: a batch of %s failed unexpectedly; left for the nightly DAG", len(batch))
            finally:
                with self._idle:
                    self._busy -= len(batch)
                    self._idle.notify_all()

    def _get_sender(self):
        if self._sender is None:
            if self._sender_factory is not None:
                self._sender = self._sender_factory()
            else:
                from adloop.meta.capi import CapiSender

                self._sender = CapiSender(self.meta)
        return self._sender

    def _send(self, rows: list[dict]) -> None:
        rows = self._claim(rows)
        if not rows:
            return
        sender = self._get_sender()
        started = time.monotonic()

        def on_sent(sent, fbtrace_id):
            _settle(self.engine, sent, status="sent", fbtrace_id=fbtrace_id, error=None)
            self.counts["sent"] += len(sent)

        def on_rejected(row, error):
            message = error.describe()
            _settle(self.engine, [row], status="quarantined", fbtrace_id=error.fbtrace_id, error=message)
            with self.engine.begin() as conn:
                conn.execute(quarantine.insert().values(
                    run_id="webhook", stage="send", record_type=row["event_name"], record_id=row["event_id"],
                    reason=message, detected_at=datetime.now(UTC)))
            self.counts["quarantined"] += 1
            log.warning("capi sender: quarantined %s %s: %s", row["event_name"], row["event_id"], message)

        try:
            sender.deliver(rows, on_sent=on_sent, on_rejected=on_rejected)
        except Exception as exc:
            # Meta slow, down or refusing the token: the rows wait for the nightly DAG.
            self._release(rows, f"{type(exc).__name__}: {exc}"[:500])
            self.counts["left_pending"] += len(rows)
            log.warning("capi sender: %s events left pending after %.2f s (%s)", len(rows),
                        time.monotonic() - started, type(exc).__name__)
            return
        log.info("capi sender: %s events settled in %.2f s", len(rows), time.monotonic() - started)

    def _claim(self, rows: list[dict]) -> list[dict]:
        """Move pending rows to in_flight; rows another sender took meanwhile are skipped."""
        e = capi_events
        now = datetime.now(UTC)
        claimed = []
        with self.engine.begin() as conn:
            for row in rows:
                done = conn.execute(
                    update(e)
                    .where(e.c.event_id == row["event_id"], e.c.event_name == row["event_name"],
                           e.c.status == "pending", e.c.source == "webhook")
                    .values(status="in_flight", attempts=e.c.attempts + 1, last_attempt_at=now)
                ).rowcount
                if done:
                    claimed.append(row)
        return claimed

    def _release(self, rows: list[dict], error: str) -> None:
        e = capi_events
        with self.engine.begin() as conn:
            for row in rows:
                conn.execute(
                    update(e)
                    .where(e.c.event_id == row["event_id"], e.c.event_name == row["event_name"],
                           e.c.status == "in_flight", e.c.source == "webhook")
                    .values(status="pending", error=error)
                )

    # -- retrying Schedule ---------------------------------------------------------------------

    def requeue_stale_schedules(self, older_than_seconds: float) -> int:
        """Queue again the app's Schedule events whose send did not settle.

        The nightly DAG resends Purchase and Subscribe from Stripe, but it never sees a booking
        the app reported, so those are retried here from `app_conversions`.
        """
        e, a = capi_events, app_conversions
        cutoff = datetime.fromtimestamp(time.time() - older_than_seconds, UTC)
        stale = and_(e.c.source == "webhook", e.c.event_name == "Schedule",
                     e.c.status.in_(("pending", "in_flight")),
                     (e.c.last_attempt_at.is_(None) & (e.c.first_attempt_at < cutoff)) | (e.c.last_attempt_at < cutoff))
        with self.engine.begin() as conn:
            rows = [dict(r._mapping) for r in conn.execute(
                select(*(a.c[name] for name in SEND_COLUMNS))
                .select_from(e.join(a, and_(a.c.event_id == e.c.event_id, a.c.event_name == e.c.event_name)))
                .where(stale).limit(self.batch_max * 10))]
            # A send this process lost (it stopped mid-request) is in flight forever otherwise.
            for row in rows:
                conn.execute(update(e).where(e.c.event_id == row["event_id"], e.c.event_name == row["event_name"],
                                             e.c.status == "in_flight").values(status="pending"))
        queued = sum(self.submit(row) for row in rows)
        if rows:
            log.info("capi sender: %s Schedule events queued again (%s did not fit)", queued, len(rows) - queued)
        return queued
