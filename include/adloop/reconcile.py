"""The nightly reconciliation: what Stripe says was paid, against what Meta was sent.

Each public function is one task of the `stripe_capi_reconciliation` DAG and returns only counts
(they travel through XCom, which the Airflow UI shows). Everything else, including the plan, lives
in the warehouse, so a retried or cleared task starts from what is recorded there:

    extract_conversions -> plan_backfill -> send_backfill -> verify_backfill -> finish_run

The window of a run comes from its data interval or its Params. The one clock reading is Meta's
own rule: an event can be sent only within 7 days of it happening, measured when it is sent.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import and_, bindparam, case, delete, func, not_, or_, select, update

from adloop import events, stripe_source
from adloop.settings import Settings
from adloop.stripe_source import RecordProblem, Window, hash_conversions, iter_conversions, stripe_client
from adloop.warehouse import connect, ensure_schema, upsert_rows
from adloop.warehouse.schema import (
    backfill_plan,
    capi_events,
    consent_opt_outs,
    quarantine,
    reconciliation_runs,
    stripe_conversions,
)

log = logging.getLogger(__name__)

CHUNK_ROWS = 5_000
# Leave this much of Meta's 7 days unused, so an event planned at the edge is not rejected
# (with its whole batch) for having aged during the run.
EXPIRY_MARGIN_SECONDS = 3600
EXPIRING_SOON_SECONDS = 24 * 3600
HASHED_KEYS = stripe_source.HASHED_KEYS
# The connection-local table plan_backfill writes the diff into before appending it to the plan.
DIFF_TABLE = "backfill_diff"

EXCLUSION_REASONS = (
    "test_mode",
    "unpaid",
    "zero_amount",
    "fully_refunded",
    "opted_out",
    "no_customer_data",
    "quarantined_earlier",
)


def _now() -> datetime:
    return datetime.now(UTC)


def _start_run(conn, run_id: str, window: Window, dry_run: bool) -> None:
    upsert_rows(
        conn,
        reconciliation_runs,
        [
            {
                "run_id": run_id,
                "window_start": datetime.fromtimestamp(window.start, UTC),
                "window_end": datetime.fromtimestamp(window.end, UTC),
                "dry_run": dry_run,
                "status": "extracting",
                "started_at": _now(),
            }
        ],
        update=["window_start", "window_end", "dry_run", "status", "started_at"],
    )


def _set_run(conn, run_id: str, **values) -> None:
    conn.execute(update(reconciliation_runs).where(reconciliation_runs.c.run_id == run_id).values(**values))


# --- extract -----------------------------------------------------------------------------------


def extract_conversions(
    settings: Settings, window: Window, run_id: str, *, dry_run: bool = False, client=None
) -> dict:
    """Land the window's conversions in `stripe_conversions`, hashed as they are read."""
    engine = connect(settings.warehouse_url)
    ensure_schema(engine)
    client = client or stripe_client(settings.stripe)
    with engine.begin() as conn:
        _start_run(conn, run_id, window, dry_run)

    problems: list[RecordProblem] = []
    counts: Counter = Counter()
    chunk: list[dict] = []
    for conversion in iter_conversions(client, window, on_problem=problems.append):
        chunk.append(conversion)
        if len(chunk) >= CHUNK_ROWS:
            counts.update(_land_chunk(engine, chunk, run_id, settings.default_country))
            chunk = []
    counts.update(_land_chunk(engine, chunk, run_id, settings.default_country))

    with engine.begin() as conn:
        for p in problems:
            log.warning("extract: quarantined %s %s: %s", p.record_type, p.record_id, p.reason)
        if problems:
            now = _now()
            conn.execute(
                quarantine.insert(),
                [
                    {"run_id": run_id, "stage": "extract", "record_type": p.record_type,
                     "record_id": p.record_id, "reason": p.reason, "detected_at": now}
                    for p in problems
                ],
            )
        _set_run(conn, run_id, found=counts["found"], quarantined_at_extraction=len(problems),
                 status="extracted")
    log.info(
        "extract %s: %s conversions (%s Purchase, %s Subscribe), %s with unusable customer fields, "
        "%s quarantined",
        window.describe(), counts["found"], counts[events.PURCHASE], counts[events.SUBSCRIBE],
        counts["hash_errors"], len(problems),
    )
    return {"found": counts["found"], "quarantined": len(problems), "hash_errors": counts["hash_errors"]}


def _land_chunk(engine, chunk: list[dict], run_id: str, default_country: str) -> Counter:
    """Hash one chunk's customer fields and upsert it; the clear fields die with the chunk."""
    if not chunk:
        return Counter()
    rows = hash_conversions(chunk, run_id=run_id, default_country=default_country)
    with engine.begin() as conn:
        upsert_rows(conn, stripe_conversions, rows)
    counts: Counter = Counter(found=len(rows))
    for row in rows:
        counts[row["event_name"]] += 1
        counts["hash_errors"] += bool(row["hash_errors"])
    return counts


# --- plan --------------------------------------------------------------------------------------


def plan_backfill(settings: Settings, run_id: str, *, as_of: datetime | None = None) -> dict:
    """Decide what happens to each conversion the run extracted, in two set-based statements.

    The diff against the ledger is a join in the warehouse, so planning a million conversions
    costs one query, not a million lookups. The plan keeps only the conversions that need a
    decision beyond "already sent" (send, expired, excluded with its reason); the already-sent
    ones, most of a night's conversions, are counted, not written (see `plan_summary`).

    The join writes its rows into a temporary table with CREATE TABLE ... AS, then one INSERT
    appends them to `backfill_plan` with their decisions. PostgreSQL (as of 15) never runs the
    SELECT of an INSERT in parallel, but does run the SELECT of a CREATE TABLE ... AS on several
    workers. At a million conversions the join takes 1.3 s and appending the 23 % of rows that
    survive it 0.3 s (BENCHMARKS.md, section 2).

    Known shortcoming: on a server with no parallel workers to spare this route is about a fifth
    slower than one INSERT ... SELECT was. That INSERT narrowed the conversions to four columns in
    a subquery PostgreSQL could not fold into the join (OFFSET 0), so fewer bytes spilled through
    the join's batches; the same fence here would keep the join from running in parallel.
    """
    engine = connect(settings.warehouse_url)
    as_of = as_of or _now()
    min_sendable = int(as_of.timestamp()) - events.CAPI_MAX_EVENT_AGE_SECONDS + EXPIRY_MARGIN_SECONDS
    soon = min_sendable + EXPIRING_SOON_SECONDS

    c, e = stripe_conversions, capi_events
    # Opt-outs are uncorrelated IN subqueries, which PostgreSQL hashes once (and SQLite indexes
    # once): a correlated EXISTS probed an index a million times, and LEFT JOINs cost two hash
    # join nodes over every conversion.
    opted_out_emails = select(consent_opt_outs.c.key_value).where(consent_opt_outs.c.key_type == "em")
    opted_out_customers = select(consent_opt_outs.c.key_value).where(
        consent_opt_outs.c.key_type == "customer_id"
    )
    no_keys = and_(*(c.c[k].is_(None) for k in ("em", "ph", "external_id", "fbp", "fbc")))
    # Order matters: a test-mode session is "test_mode" even if it was also refunded. A reason
    # excludes a conversion whatever the ledger says, so one sent and later refunded in full is
    # reported as excluded, not as already sent.
    reason = case(
        (not_(c.c.livemode), "test_mode"),
        (c.c.payment_status != "paid", "unpaid"),
        (c.c.amount_minor <= 0, "zero_amount"),
        (c.c.amount_refunded_minor >= c.c.amount_minor, "fully_refunded"),
        (or_(c.c.em.in_(opted_out_emails), c.c.customer_id.in_(opted_out_customers)), "opted_out"),
        (no_keys, "no_customer_data"),
        else_=None,
    )
    # What the ledger already has as sent, and nothing excludes, is "already sent": not kept (three
    # in four conversions on a typical night). The ledger's status is tested first, so the
    # reasons are worked out twice only for the rows that are kept.
    diff = (
        select(c.c.event_id, c.c.event_name, c.c.event_time, e.c.status.label("ledger_status"), reason.label("reason"))
        .select_from(c.outerjoin(e, and_(e.c.event_id == c.c.event_id, e.c.event_name == c.c.event_name)))
        .where(c.c.run_id == run_id, or_(func.coalesce(e.c.status, "") != "sent", reason.is_not(None)))
        .into(DIFF_TABLE, temporary=True)
    )
    d = diff.table.alias("diff")
    d_reason = func.coalesce(
        d.c.reason, case((d.c.ledger_status == "quarantined", "quarantined_earlier"), else_=None)
    )
    sendable = and_(
        d_reason.is_(None),
        func.coalesce(d.c.ledger_status, "") != "expired",
        d.c.event_time >= min_sendable,
    )
    decisions = select(
        bindparam("run_id", run_id).label("run_id"),
        d.c.event_id,
        d.c.event_name,
        case((d_reason.is_not(None), "excluded"), (not_(sendable), "expired"), else_="send").label("decision"),
        d_reason.label("reason"),
        case((and_(sendable, d.c.event_time < soon), True), else_=False).label("expiring_soon"),
        d.c.event_time,
    )
    with engine.begin() as conn:
        # The plan has no primary key, so the run's record is locked first: a second attempt
        # planning the same run at the same time (a zombie beside its retry) waits here, then
        # replaces this plan instead of adding a copy of it. (SQLite has one writer at a time.)
        conn.execute(
            select(reconciliation_runs.c.run_id).where(reconciliation_runs.c.run_id == run_id).with_for_update()
        )
        conn.execute(delete(backfill_plan).where(backfill_plan.c.run_id == run_id))
        # Temporary tables belong to the connection, so no other attempt sees this one. A failed
        # attempt's table goes with its rolled-back transaction; the DROP IF EXISTS only guards a
        # pooled connection on which something else left a table of that name.
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {DIFF_TABLE}")
        conn.execute(diff)
        conn.execute(
            backfill_plan.insert().from_select(
                ["run_id", "event_id", "event_name", "decision", "reason", "expiring_soon", "event_time"], decisions
            )
        )
        conn.exec_driver_sql(f"DROP TABLE {DIFF_TABLE}")
        summary = plan_summary(conn, run_id)
        _set_run(
            conn, run_id, as_of=as_of, status="planned",
            already_sent=summary["already_sent"], to_send=summary["send"],
            expiring_soon=summary["expiring_soon"], expired=summary["expired"],
            excluded=summary["excluded"], excluded_by_reason=json.dumps(summary["excluded_by_reason"]),
        )
    log.info(
        "plan: %s to send (%s expiring within 24 h), %s already sent, %s expired, %s excluded %s",
        summary["send"], summary["expiring_soon"], summary["already_sent"], summary["expired"],
        summary["excluded"], summary["excluded_by_reason"],
    )
    return summary | {"min_sendable_ts": min_sendable}


def plan_summary(conn, run_id: str) -> dict:
    """The plan's counts. "Already sent" is every conversion of the run the plan does not hold."""
    p = backfill_plan
    # One pass over the run's plan, each figure a filtered count: a GROUP BY sorted the freshly
    # written rows on disk, because their table's statistics did not know about them yet. Only
    # excluded rows have a reason, and only sendable ones expire soon.
    figures = {
        "send": p.c.decision == "send",
        "expiring_soon": p.c.expiring_soon,
        "expired": p.c.decision == "expired",
        "excluded": p.c.decision == "excluded",
        **{reason: p.c.reason == reason for reason in EXCLUSION_REASONS},
    }
    counted = conn.execute(
        select(*(func.count().filter(condition).label(name) for name, condition in figures.items()))
        .where(p.c.run_id == run_id)
    ).one()._mapping
    # An index-only count on ix_stripe_conversions_run_id. It relies on stripe_conversions.run_id
    # still naming this run, so the figure is taken when the plan is written; a later run whose
    # window overlaps takes those conversions over, and its own plan counts them.
    conversions = conn.execute(
        select(func.count()).select_from(stripe_conversions).where(stripe_conversions.c.run_id == run_id)
    ).scalar_one()
    return {
        "send": counted["send"],
        "already_sent": conversions - counted["send"] - counted["expired"] - counted["excluded"],
        "expired": counted["expired"],
        "excluded": counted["excluded"],
        "expiring_soon": counted["expiring_soon"],
        "excluded_by_reason": {r: counted[r] for r in sorted(EXCLUSION_REASONS) if counted[r]},
    }


# --- send --------------------------------------------------------------------------------------


def _pending_batches(engine, run_id: str, batch_size: int):
    """The plan's sendable events not yet settled in the ledger, oldest first, a batch at a time.

    Each step pages through the run's plan alone, by keyset on (event_time, event_id), and only
    then joins that page to its conversions and the ledger by primary key: a page costs a scan of
    the run's plan, not a hash join of the plan with the whole ledger (about 1 s a batch at a
    million conversions when the join came first). Reading the ledger for every page means events
    another sender settled meanwhile (the webhook, an earlier attempt) are skipped; pages are
    topped up so every batch but the last is full, and the requests stay ceil(events / 1000).
    """
    p, c, e = backfill_plan, stripe_conversions, capi_events
    cols = [c.c[name] for name in (
        "event_id", "event_name", "event_time", "action_source", "event_source_url", "client_user_agent",
        "client_ip_address", "fbp", "fbc", "currency", "value", *HASHED_KEYS)]
    last = None
    batch: list[dict] = []
    while True:
        page = (
            select(p.c.event_id, p.c.event_name, p.c.event_time)
            .where(p.c.run_id == run_id, p.c.decision == "send")
            .order_by(p.c.event_time, p.c.event_id)
            .limit(batch_size - len(batch))
        )
        if last is not None:
            page = page.where(or_(p.c.event_time > last[0], and_(p.c.event_time == last[0], p.c.event_id > last[1])))
        page = page.subquery("page")
        query = (
            select(*cols, page.c.event_time.label("page_time"), page.c.event_id.label("page_id"),
                   e.c.status.label("ledger_status"))
            .select_from(
                page.join(c, and_(c.c.event_id == page.c.event_id, c.c.event_name == page.c.event_name)).outerjoin(
                    e, and_(e.c.event_id == page.c.event_id, e.c.event_name == page.c.event_name)
                )
            )
            .order_by(page.c.event_time, page.c.event_id)
        )
        with engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        if rows:
            last = (rows[-1]["page_time"], rows[-1]["page_id"])
        for row in rows:
            status = row.pop("ledger_status")
            del row["page_time"], row["page_id"]
            if status in (None, "pending", "in_flight"):
                batch.append(row)
        if batch and (len(batch) >= batch_size or not rows):
            yield batch
            batch = []
        elif not rows:
            return


def send_backfill(
    settings: Settings,
    run_id: str,
    *,
    dry_run: bool = False,
    batch_size: int | None = None,
    sender=None,
    clock=_now,
) -> dict:
    """Send the plan's events to CAPI, writing the ledger before and after every request."""
    engine = connect(settings.warehouse_url)
    if dry_run:
        with engine.begin() as conn:
            summary = plan_summary(conn, run_id)
            _set_run(conn, run_id, status="dry_run", backfilled=0, quarantined=0, capi_requests=0)
        log.info("send: dry run, %s events would be sent; nothing was sent", summary["send"])
        return {"sent": 0, "quarantined": 0, "expired": 0, "requests": 0, "would_send": summary["send"]}

    if sender is None:
        from adloop.meta.capi import CapiSender

        sender = CapiSender(settings.meta)
    batch_size = min(batch_size or sender.cfg.batch_size, events.CAPI_MAX_EVENTS_PER_REQUEST)
    pixel_id = sender.cfg.pixel_id
    counts: Counter = Counter()

    def on_sent(rows: Sequence[dict], fbtrace_id: str | None) -> None:
        _settle(engine, rows, status="sent", fbtrace_id=fbtrace_id, error=None)
        counts["sent"] += len(rows)

    def on_rejected(row: dict, error) -> None:
        message = error.describe()
        log.warning("send: quarantined %s %s: %s", row["event_name"], row["event_id"], message)
        _settle(engine, [row], status="quarantined", fbtrace_id=error.fbtrace_id, error=message)
        with engine.begin() as conn:
            conn.execute(quarantine.insert().values(
                run_id=run_id, stage="send", record_type=row["event_name"], record_id=row["event_id"],
                reason=message, detected_at=_now()))
        counts["quarantined"] += 1

    for batch in _pending_batches(engine, run_id, batch_size):
        # The batch may have aged since planning; one stale event would sink the whole request.
        min_sendable = int(clock().timestamp()) - events.CAPI_MAX_EVENT_AGE_SECONDS + EXPIRY_MARGIN_SECONDS
        stale = [r for r in batch if r["event_time"] < min_sendable]
        fresh = [r for r in batch if r["event_time"] >= min_sendable]
        if stale:
            _mark(engine, stale, run_id, pixel_id, status="expired",
                  error="older than Meta's 7-day limit when its turn to be sent came")
            counts["expired"] += len(stale)
        if not fresh:
            continue
        batch_id = uuid.uuid4().hex[:16]
        _mark(engine, fresh, run_id, pixel_id, status="in_flight", batch_id=batch_id)
        sender.deliver(fresh, on_sent=on_sent, on_rejected=on_rejected)

    counts["requests"] = sender.stats.requests
    with engine.begin() as conn:
        _set_run(conn, run_id, status="sent", **_settled_counts(conn, run_id),
                 # A retried task adds its requests to those of the attempts before it.
                 capi_requests=func.coalesce(reconciliation_runs.c.capi_requests, 0) + counts["requests"])
    log.info(
        "send: %s sent, %s quarantined, %s expired while waiting, in %s requests (%s retries)",
        counts["sent"], counts["quarantined"], counts["expired"], counts["requests"], sender.stats.retries,
    )
    return {k: counts[k] for k in ("sent", "quarantined", "expired", "requests")}


def _settled_counts(conn, run_id: str) -> dict:
    """The run's outcome as the ledger records it, so retried attempts add up correctly."""
    p, e = backfill_plan, capi_events
    by_status = dict(
        conn.execute(
            select(e.c.status, func.count())
            .select_from(p.join(e, and_(e.c.event_id == p.c.event_id, e.c.event_name == p.c.event_name)))
            .where(p.c.run_id == run_id, p.c.decision == "send", e.c.run_id == run_id)
            .group_by(e.c.status)
        ).all()
    )
    planned_expired = conn.execute(
        select(func.count()).where(p.c.run_id == run_id, p.c.decision == "expired")
    ).scalar_one()
    return {
        "backfilled": by_status.get("sent", 0),
        "quarantined": by_status.get("quarantined", 0),
        "expired": planned_expired + by_status.get("expired", 0),
    }


def _mark(engine, rows, run_id, pixel_id, *, status, batch_id=None, error=None) -> None:
    """Write ledger rows for events about to be sent (or given up), counting the attempt."""
    from adloop.warehouse.db import _insert_for

    now = _now()
    stmt = _insert_for(engine, capi_events)
    stmt = stmt.on_conflict_do_update(
        index_elements=["event_id", "event_name"],
        set_={
            "status": stmt.excluded.status,
            "source": stmt.excluded.source,  # who delivers it now: a stalled webhook send is taken over
            "attempts": capi_events.c.attempts + (1 if status == "in_flight" else 0),
            "batch_id": stmt.excluded.batch_id,
            "run_id": stmt.excluded.run_id,
            "last_attempt_at": stmt.excluded.last_attempt_at,
            "error": stmt.excluded.error,
        },
    )
    values = [
        {
            "event_id": r["event_id"], "event_name": r["event_name"], "pixel_id": pixel_id,
            "source": "backfill", "status": status, "event_time": r["event_time"],
            "attempts": 1 if status == "in_flight" else 0, "batch_id": batch_id, "run_id": run_id,
            "first_attempt_at": now, "last_attempt_at": now, "error": error,
        }
        for r in rows
    ]
    with engine.begin() as conn:
        conn.execute(stmt, values)


def _settle(engine, rows, *, status, fbtrace_id, error) -> None:
    stmt = (
        update(capi_events)
        .where(capi_events.c.event_id == bindparam("k_id"), capi_events.c.event_name == bindparam("k_name"))
        .values(status=status, fbtrace_id=fbtrace_id, error=error,
                sent_at=_now() if status == "sent" else None)
    )
    with engine.begin() as conn:
        conn.execute(stmt, [{"k_id": r["event_id"], "k_name": r["event_name"]} for r in rows])


# --- verify and finish -------------------------------------------------------------------------


class VerificationFailed(RuntimeError):
    pass


def verify_backfill(settings: Settings, run_id: str, *, dry_run: bool = False) -> dict:
    """Every conversion the plan said to send is now sent, quarantined or expired in the ledger."""
    engine = connect(settings.warehouse_url)
    p, e = backfill_plan, capi_events
    status = func.coalesce(e.c.status, "missing")
    with engine.connect() as conn:
        rows = conn.execute(
            select(status, func.count())
            .select_from(p.outerjoin(e, and_(e.c.event_id == p.c.event_id, e.c.event_name == p.c.event_name)))
            .where(p.c.run_id == run_id, p.c.decision == "send")
            .group_by(status)
        ).all()
        by_status = {s: n for s, n in rows}
        unsettled = conn.execute(
            select(p.c.event_name, p.c.event_id)
            .select_from(p.outerjoin(e, and_(e.c.event_id == p.c.event_id, e.c.event_name == p.c.event_name)))
            .where(p.c.run_id == run_id, p.c.decision == "send")
            .where(or_(e.c.status.is_(None), e.c.status.in_(("pending", "in_flight"))))
            .limit(10)
        ).all()
    if unsettled and not dry_run:
        total = by_status.get("missing", 0) + by_status.get("pending", 0) + by_status.get("in_flight", 0)
        sample = ", ".join(f"{n} {i}" for n, i in unsettled)
        raise VerificationFailed(
            f"{total} planned events are neither sent nor quarantined (e.g. {sample}); "
            "clear send_backfill to resend them: the ledger keeps what was already sent"
        )
    log.info("verify: %s", by_status)
    return by_status


def finish_run(settings: Settings, run_id: str, *, dry_run: bool = False) -> dict:
    engine = connect(settings.warehouse_url)
    with engine.begin() as conn:
        _set_run(conn, run_id, status="dry_run" if dry_run else "verified", finished_at=_now())
        row = conn.execute(select(reconciliation_runs).where(reconciliation_runs.c.run_id == run_id)).one()
    record = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row._mapping.items()}
    log.info(
        "reconciliation %s: %s found, %s already sent, %s backfilled, %s quarantined, %s expired, %s excluded",
        run_id, record["found"], record["already_sent"], record["backfilled"], record["quarantined"],
        record["expired"], record["excluded"],
    )
    return record
