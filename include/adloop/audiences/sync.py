"""The sync of one audience: build the segment, gate it, plan the diff, apply it, derive Lookalikes.

Each public function is one task of the `meta_audience_refresh` DAG's task group and returns
counts only (they travel through XCom). Everything else lives in the warehouse, keyed by the
sync id (`<run_id>~<audience key>`), so a retried task starts from what is recorded:

    build_segment -> gate_segment -> plan_sync -> apply_sync -> create_lookalikes

How convergence works: `audience_members` holds the rows Meta has accepted, updated after every
accepted batch. A plan is the two set differences between the segment and `audience_members`
(SQL anti-joins), and `apply_sync` sends the plan's pending rows in batches of up to 10,000
under one session, marking each batch applied as Meta takes it. A sync that fails half way
leaves the rest pending: a task retry sends only those, in a new session, and a later run plans
again against what Meta accepted. Within one session no row is sent twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import secrets
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import and_, delete, exists, func, literal, select, text, update

from adloop.audiences import definitions
from adloop.audiences.definitions import Audience
from adloop.quality.gate import GateFailed
from adloop.settings import Settings
from adloop.warehouse import connect, ensure_schema, upsert_rows
from adloop.warehouse.audience_schema import (
    MEMBER_KEYS,
    app_users,
    audience_candidates,
    audience_members,
    audience_plan,
    audience_sync_runs,
    meta_audiences,
)
from adloop.warehouse.schema import quarantine

log = logging.getLogger(__name__)

BATCH_ROWS = 10_000  # Meta's maximum per request
CHUNK_ROWS = 20_000
MODES = ("diff", "replace")


class SegmentGateFailed(GateFailed):
    """An audience's segment failed its gate; the message says what that means and what to do."""

    def __init__(self, result, message: str):
        self.result = result
        Exception.__init__(self, message)


def sync_id_for(run_id: str, audience_key: str) -> str:
    return f"{run_id}~{audience_key}"


def member_key(keys: tuple) -> str:
    """The identity of a member row: SHA-256 over its hashed keys (empty where a key is missing)."""
    return hashlib.sha256("|".join(k or "" for k in keys).encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


def _set_run(conn, sync_id: str, **values) -> None:
    conn.execute(update(audience_sync_runs).where(audience_sync_runs.c.sync_id == sync_id).values(**values))


def _run_row(conn, sync_id: str) -> dict:
    row = conn.execute(select(audience_sync_runs).where(audience_sync_runs.c.sync_id == sync_id)).first()
    if row is None:
        raise RuntimeError(f"no audience sync {sync_id!r} was built; run build_segment first")
    return dict(row._mapping)


# --- build -------------------------------------------------------------------------------------


def build_segment(
    warehouse_url: str,
    audience_key: str,
    run_id: str,
    *,
    as_of: int,
    mode: str = "diff",
    dry_run: bool = True,
) -> dict:
    """Run the audience's segment SQL, drop opt-outs, quarantine rows Meta could not match, stage the rest."""
    audience = definitions.get(audience_key)
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of {MODES}")
    engine = connect(warehouse_url)
    ensure_schema(engine)
    sync_id = sync_id_for(run_id, audience_key)
    with engine.begin() as conn:
        upsert_rows(
            conn,
            audience_sync_runs,
            [
                {
                    "sync_id": sync_id,
                    "run_id": run_id,
                    "audience_key": audience_key,
                    "mode": mode,
                    "dry_run": dry_run,
                    "status": "building",
                    "as_of": int(as_of),
                    "started_at": _now(),
                    "error": None,
                }
            ],
        )
        # Staged rows of earlier syncs of this audience are not needed once a new one starts.
        conn.execute(delete(audience_candidates).where(audience_candidates.c.audience_key == audience_key))

    counts = {"segment_rows": 0, "opted_out": 0, "quarantined": 0}
    unmatchable: list[str] = []
    query = text(_segment_with_opt_outs(audience))
    with engine.connect() as reader:
        result = reader.execution_options(stream_results=True, yield_per=CHUNK_ROWS).execute(
            query, {"as_of": int(as_of)}
        )
        for chunk in result.partitions(CHUNK_ROWS):
            staged = []
            for row in chunk:
                counts["segment_rows"] += 1
                if row.opted_out:
                    counts["opted_out"] += 1
                    continue
                keys = tuple(getattr(row, k) for k in MEMBER_KEYS)
                if keys[0] is None and keys[1] is None:
                    unmatchable.append(str(row.source_id))
                    continue
                staged.append(
                    {
                        "sync_id": sync_id,
                        "member_key": member_key(keys),
                        "audience_key": audience_key,
                        "source_id": row.source_id,
                        **dict(zip(MEMBER_KEYS, keys, strict=True)),
                    }
                )
            with engine.begin() as conn:
                upsert_rows(conn, audience_candidates, staged, update=())

    counts["quarantined"] = _quarantine_unmatchable(engine, run_id, audience_key, unmatchable)
    if engine.dialect.name == "postgresql":
        # The plan's anti-joins need fresh statistics after a bulk load; autovacuum may not have
        # run yet, and without them PostgreSQL picks index lookups row by row (2.5x slower at 1M).
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE audience_candidates")
            conn.exec_driver_sql("ANALYZE audience_members")
    with engine.begin() as conn:
        size = conn.execute(
            select(func.count())
            .select_from(audience_candidates)
            .where(audience_candidates.c.sync_id == sync_id)
        ).scalar_one()
        previous = _member_count(conn, audience_key)
        _set_run(conn, sync_id, status="built", segment_size=size, previous_size=previous, **counts)
    log.info(
        "segment %s: %s rows, %s opted out, %s quarantined (no usable email or phone), %s members to "
        "sync (Meta has %s)",
        audience_key,
        counts["segment_rows"],
        counts["opted_out"],
        counts["quarantined"],
        size,
        previous,
    )
    return {**counts, "segment_size": size, "previous_size": previous}


def _segment_with_opt_outs(audience: Audience) -> str:
    # The opt-out list applies to every audience, whatever its SQL says.
    return f"""
SELECT s.*,
       CASE WHEN EXISTS (SELECT 1 FROM consent_opt_outs AS o
                         WHERE (o.key_type = 'em' AND o.key_value = s.em)
                            OR (o.key_type = 'customer_id' AND o.key_value = s.customer_id))
            THEN 1 ELSE 0 END AS opted_out
FROM ({audience.segment}) AS s
"""


def _member_count(conn, audience_key: str) -> int:
    return conn.execute(
        select(func.count())
        .select_from(audience_members)
        .where(audience_members.c.audience_key == audience_key)
    ).scalar_one()


def _quarantine_unmatchable(engine, run_id: str, audience_key: str, source_ids: list[str]) -> int:
    """Record the rows without an email or phone, with why (the hashing errors of the app user)."""
    if not source_ids:
        return 0
    reasons: dict[str, str] = {}
    with engine.connect() as conn:
        for start in range(0, len(source_ids), 500):
            part = source_ids[start : start + 500]
            for user_id, errors in conn.execute(
                select(app_users.c.user_id, app_users.c.hash_errors).where(app_users.c.user_id.in_(part))
            ):
                if errors:
                    reasons[user_id] = errors
    now = _now()
    rows = [
        {
            "run_id": run_id,
            "stage": "audience_segment",
            "record_type": f"audience:{audience_key}",
            "record_id": source_id,
            "detected_at": now,
            "reason": "no usable email or phone"
            + (f" ({reasons[source_id]})" if source_id in reasons else ""),
        }
        for source_id in dict.fromkeys(source_ids)
    ]
    with engine.begin() as conn:
        conn.execute(
            delete(quarantine).where(
                and_(quarantine.c.run_id == run_id, quarantine.c.record_type == f"audience:{audience_key}")
            )
        )
        conn.execute(quarantine.insert(), rows)
    return len(rows)


# --- gate --------------------------------------------------------------------------------------


def gate_segment(
    warehouse_url: str,
    audience_key: str,
    run_id: str,
    *,
    allow_shrink: bool = False,
    dag_id: str | None = None,
) -> dict:
    """Gate the staged segment: hashed keys only, no clear PII, big enough, not shrunk past the limit."""
    from adloop.audiences.suites import segment_rows_suite, segment_size_suite
    from adloop.quality.gate import run_gate

    audience = definitions.get(audience_key)
    engine = connect(warehouse_url)
    sync_id = sync_id_for(run_id, audience_key)
    params = {
        "sync_id": sync_id,
        "audience_key": audience_key,
        "min_size": audience.min_size,
        "max_shrink": 1.0 if allow_shrink else audience.max_shrink,
    }
    try:
        rows = run_gate(
            engine,
            segment_rows_suite(),
            params=params,
            run_id=run_id,
            dag_id=dag_id,
            step=f"gate_segment_rows:{audience_key}",
        )
        size = run_gate(
            engine,
            segment_size_suite(),
            params=params,
            run_id=run_id,
            dag_id=dag_id,
            step=f"gate_segment_size:{audience_key}",
        )
    except GateFailed as exc:
        message = _explain_gate_failure(engine, audience, sync_id, params["max_shrink"], exc)
        with engine.begin() as conn:
            _set_run(conn, sync_id, status="failed", error=message[:2000], finished_at=_now())
        raise SegmentGateFailed(exc.result, message) from None
    return {
        "rows_checked": rows.row_count,
        "expectations": rows.evaluated + size.evaluated,
        "min_size": audience.min_size,
        "max_shrink": params["max_shrink"],
    }


def _explain_gate_failure(engine, audience: Audience, sync_id: str, max_shrink: float, exc) -> str:
    """The gate's findings, preceded by what they mean for this audience in a marketer's words."""
    with engine.connect() as conn:
        run = _run_row(conn, sync_id)
    size, previous = run["segment_size"] or 0, run["previous_size"] or 0
    words = []
    if size < audience.min_size:
        words.append(
            f"{audience.key} has {size} people; an audience used as {audience.use.replace('_', ' ')} needs at "
            f"least {audience.min_size}, so nothing was sent"
        )
    if previous and size < previous and (previous - size) / previous > max_shrink:
        words.append(
            f"{audience.key} would shrink from {previous} to {size} people ({(previous - size) / previous:.0%}, "
            f"more than the {max_shrink:.0%} allowed); if that is right, run again with allow_shrink on"
        )
    return "; ".join([*words, str(exc)])


# --- plan --------------------------------------------------------------------------------------


def plan_sync(warehouse_url: str, audience_key: str, run_id: str) -> dict:
    """The adds (segment rows Meta lacks) and removes (rows Meta has, no longer in the segment).

    Two INSERT ... SELECT anti-joins in the warehouse, so planning a million members is two queries.
    A dry run ends here: the plan is recorded and nothing is sent.
    """
    engine = connect(warehouse_url)
    sync_id = sync_id_for(run_id, audience_key)
    c, m, p = audience_candidates, audience_members, audience_plan
    adds = (
        select(
            literal(sync_id).label("sync_id"),
            c.c.member_key,
            literal("add").label("action"),
            literal("pending").label("status"),
        )
        .where(c.c.sync_id == sync_id)
        .where(~exists().where(and_(m.c.audience_key == audience_key, m.c.member_key == c.c.member_key)))
    )
    removes = (
        select(
            literal(sync_id).label("sync_id"),
            m.c.member_key,
            literal("remove").label("action"),
            literal("pending").label("status"),
        )
        .where(m.c.audience_key == audience_key)
        .where(~exists().where(and_(c.c.sync_id == sync_id, c.c.member_key == m.c.member_key)))
    )
    columns = ["sync_id", "member_key", "action", "status"]
    with engine.begin() as conn:
        run = _run_row(conn, sync_id)
        conn.execute(delete(p).where(p.c.sync_id == sync_id))
        conn.execute(p.insert().from_select(columns, adds))
        conn.execute(p.insert().from_select(columns, removes))
        planned = dict(
            conn.execute(
                select(p.c.action, func.count()).where(p.c.sync_id == sync_id).group_by(p.c.action)
            ).all()
        )
        summary = {
            "adds": planned.get("add", 0),
            "removes": planned.get("remove", 0),
            "segment_size": run["segment_size"],
            "previous_size": run["previous_size"],
            "mode": run["mode"],
            "dry_run": run["dry_run"],
        }
        _set_run(
            conn,
            sync_id,
            planned_adds=summary["adds"],
            planned_removes=summary["removes"],
            planned_at=_now(),
            status="dry_run" if run["dry_run"] else "planned",
            finished_at=_now() if run["dry_run"] else None,
        )
    log.info(
        "plan %s%s: %s to add, %s to remove (segment %s, Meta has %s, mode %s)",
        audience_key,
        " (dry run: nothing will be sent)" if summary["dry_run"] else "",
        summary["adds"],
        summary["removes"],
        summary["segment_size"],
        summary["previous_size"],
        summary["mode"],
    )
    return summary


# --- apply -------------------------------------------------------------------------------------


def ensure_audience(engine, client, audience: Audience) -> str:
    """The audience's id on Meta: recorded, else found by name, else created (never a duplicate)."""
    with engine.connect() as conn:
        known = conn.execute(
            select(meta_audiences.c.audience_id).where(meta_audiences.c.audience_key == audience.key)
        ).scalar_one_or_none()
    if known:
        return known
    found = client.find_by_name(audience.name)
    created = found is None
    audience_id = (
        client.create_custom_audience(audience.name, audience.description) if created else str(found["id"])
    )
    with engine.begin() as conn:
        upsert_rows(
            conn,
            meta_audiences,
            [
                {
                    "audience_key": audience.key,
                    "ad_account_id": client.account,
                    "audience_id": audience_id,
                    "name": audience.name,
                    "subtype": "CUSTOM",
                    "created_by_adloop": created,
                    "recorded_at": _now(),
                }
            ],
        )
    log.info(
        "audience %s: %s custom audience %s", audience.key, "created" if created else "found", audience_id
    )
    return audience_id


def apply_sync(
    settings: Settings,
    audience_key: str,
    run_id: str,
    *,
    batch_rows: int = BATCH_ROWS,
    client=None,
    on_batch: Callable[[int], None] | None = None,
) -> dict:
    """Send the plan to Meta: removes then adds through `/users` (diff), or everything through `usersreplace`.

    `on_batch(batch_seq)` is called after each accepted batch (tests use it to inject failures).
    """
    from adloop.meta.audiences import AudienceClient

    if not 1 <= batch_rows <= BATCH_ROWS:
        raise ValueError(f"batch_rows must be 1 to {BATCH_ROWS}")
    audience = definitions.get(audience_key)
    engine = connect(settings.warehouse_url)
    sync_id = sync_id_for(run_id, audience_key)
    with engine.connect() as conn:
        run = _run_row(conn, sync_id)
    if run["dry_run"]:
        log.info("apply %s: dry run, nothing sent", audience_key)
        return {"dry_run": True, "requests": 0, "sent_adds": 0, "sent_removes": 0}
    if run["status"] == "synced":
        return {
            "dry_run": False,
            "requests": 0,
            "sent_adds": run["sent_adds"],
            "sent_removes": run["sent_removes"],
        }

    client = client or AudienceClient(settings.meta, (settings.meta.ad_account_ids or ("",))[0])
    audience_id = ensure_audience(engine, client, audience)
    session_id = secrets.randbelow(2**62) + 1
    with engine.begin() as conn:
        counters = ("requests", "sent_adds", "sent_removes", "num_received", "num_invalid_entries")
        _set_run(
            conn,
            sync_id,
            audience_id=audience_id,
            session_id=str(session_id),
            status="applying",
            error=None,
            **{k: run[k] or 0 for k in counters},
        )
    batches = _Batches(engine, client, run, audience_id, session_id, batch_rows, on_batch)
    try:
        if run["mode"] == "replace":
            batches.replace()
        else:
            batches.diff()
    except Exception as exc:
        with engine.begin() as conn:
            _set_run(conn, sync_id, status="failed", error=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    with engine.begin() as conn:
        _set_run(conn, sync_id, status="synced", finished_at=_now())
        run = _run_row(conn, sync_id)
    log.info(
        "apply %s: %s added, %s removed in %s requests of one session; Meta received %s, %s invalid",
        audience_key,
        run["sent_adds"],
        run["sent_removes"],
        run["requests"],
        run["num_received"],
        run["num_invalid_entries"],
    )
    return {
        "dry_run": False,
        "requests": run["requests"],
        "sent_adds": run["sent_adds"],
        "sent_removes": run["sent_removes"],
        "num_received": run["num_received"],
        "num_invalid_entries": run["num_invalid_entries"],
    }


class _Batches:
    """Sends one sync's rows in batches of one session and records each accepted batch."""

    def __init__(
        self, engine, client, run: dict, audience_id: str, session_id: int, batch_rows: int, on_batch
    ):
        from adloop.meta.audiences import SCHEMA_KEYS

        self.engine, self.client, self.run = engine, client, run
        self.sync_id, self.audience_key = run["sync_id"], run["audience_key"]
        self.audience_id, self.session_id, self.batch_rows = audience_id, session_id, batch_rows
        self.on_batch = on_batch
        self.schema = [SCHEMA_KEYS[k] for k in MEMBER_KEYS]
        self.seq = 0
        self.samples: list[str] = json.loads(run["invalid_entry_samples"] or "[]")
        self.counters = {
            k: run[k] or 0 for k in ("sent_adds", "sent_removes", "requests", "num_invalid_entries")
        }
        self.received = 0

    def _pending(self, conn, action: str) -> int:
        p = audience_plan
        return conn.execute(
            select(func.count()).where(
                p.c.sync_id == self.sync_id, p.c.action == action, p.c.status == "pending"
            )
        ).scalar_one()

    def _next_rows(self, action: str, after: str) -> list:
        p = audience_plan
        source = audience_candidates if action == "add" else audience_members
        on = (
            (source.c.sync_id == self.sync_id)
            if action == "add"
            else (source.c.audience_key == self.audience_key)
        )
        query = (
            select(p.c.member_key, *(source.c[k] for k in MEMBER_KEYS))
            .select_from(p.join(source, and_(on, source.c.member_key == p.c.member_key)))
            .where(
                p.c.sync_id == self.sync_id,
                p.c.action == action,
                p.c.status == "pending",
                p.c.member_key > after,
            )
            .order_by(p.c.member_key)
            .limit(self.batch_rows)
        )
        with self.engine.connect() as conn:
            return list(conn.execute(query))

    def _session(self, last: bool, total: int) -> dict:
        self.seq += 1
        return {
            "session_id": self.session_id,
            "batch_seq": self.seq,
            "last_batch_flag": last,
            "estimated_num_total": total,
        }

    def diff(self) -> None:
        with self.engine.connect() as conn:
            removes, adds = self._pending(conn, "remove"), self._pending(conn, "add")
        total_batches = math.ceil(removes / self.batch_rows) + math.ceil(adds / self.batch_rows)
        for action in ("remove", "add"):
            after = ""
            while rows := self._next_rows(action, after):
                after = rows[-1][0]
                result = self.client.upload(
                    action,
                    self.audience_id,
                    self.schema,
                    [_values(r) for r in rows],
                    self._session(self.seq + 1 == total_batches, removes + adds),
                )
                self._record(action, rows, result)

    def replace(self) -> None:
        c = audience_candidates
        with self.engine.connect() as conn:
            total = conn.execute(select(func.count()).where(c.c.sync_id == self.sync_id)).scalar_one()
        total_batches = math.ceil(total / self.batch_rows)
        after = ""
        uploaded_upto = None
        finished = False
        try:
            while True:
                with self.engine.connect() as conn:
                    rows = list(
                        conn.execute(
                            select(c.c.member_key, *(c.c[k] for k in MEMBER_KEYS))
                            .where(c.c.sync_id == self.sync_id, c.c.member_key > after)
                            .order_by(c.c.member_key)
                            .limit(self.batch_rows)
                        )
                    )
                if not rows:
                    break
                after = rows[-1][0]
                result = self.client.upload(
                    "replace",
                    self.audience_id,
                    self.schema,
                    [_values(r) for r in rows],
                    self._session(self.seq + 1 == total_batches, total),
                )
                uploaded_upto = after
                self._record_replace_batch(rows, result)
            finished = True
        finally:
            # Whether it ended or broke off, Meta's audience becomes what was uploaded (at the end
            # of the session, or when the session times out after 90 minutes).
            if uploaded_upto is not None:
                self._members_become_uploaded(uploaded_upto, finished)

    def _record(self, action: str, rows: list, result) -> None:
        invalid = self._invalid_keys(rows, result)
        now = _now()
        keys = [r[0] for r in rows]
        accepted = [r for r in rows if r[0] not in invalid]
        p, m = audience_plan, audience_members
        with self.engine.begin() as conn:
            for start in range(0, len(keys), 500):
                part = keys[start : start + 500]
                conn.execute(
                    update(p)
                    .where(p.c.sync_id == self.sync_id, p.c.member_key.in_(part))
                    .values(status="applied", applied_at=now)
                )
                if action == "remove":
                    conn.execute(
                        delete(m).where(m.c.audience_key == self.audience_key, m.c.member_key.in_(part))
                    )
            if action == "add":
                upsert_rows(
                    conn,
                    m,
                    [
                        {
                            "audience_key": self.audience_key,
                            "member_key": r[0],
                            **dict(zip(MEMBER_KEYS, r[1:], strict=True)),
                            "sync_id": self.sync_id,
                            "added_at": now,
                        }
                        for r in accepted
                    ],
                    update=(),
                )
            self._mark_invalid(conn, invalid)
            self._count(conn, action, len(rows) - (len(invalid) if action == "add" else 0), result)
        if self.on_batch is not None:
            self.on_batch(self.seq)

    def _record_replace_batch(self, rows: list, result) -> None:
        invalid = self._invalid_keys(rows, result)
        with self.engine.begin() as conn:
            self._mark_invalid(conn, invalid)
            self._count(conn, "add", len(rows) - len(invalid), result)
        if self.on_batch is not None:
            self.on_batch(self.seq)

    def _members_become_uploaded(self, upto: str, finished: bool) -> None:
        c, m, p = audience_candidates, audience_members, audience_plan
        now = _now()
        uploaded = (
            select(
                literal(self.audience_key),
                c.c.member_key,
                *(c.c[k] for k in MEMBER_KEYS),
                literal(self.sync_id),
                literal(now),
            )
            .where(c.c.sync_id == self.sync_id, c.c.member_key <= upto)
            .where(
                ~exists().where(
                    and_(
                        p.c.sync_id == self.sync_id, p.c.member_key == c.c.member_key, p.c.status == "invalid"
                    )
                )
            )
        )
        with self.engine.begin() as conn:
            conn.execute(delete(m).where(m.c.audience_key == self.audience_key))
            conn.execute(
                m.insert().from_select(
                    ["audience_key", "member_key", *MEMBER_KEYS, "sync_id", "added_at"], uploaded
                )
            )
            if finished:
                conn.execute(
                    update(p)
                    .where(p.c.sync_id == self.sync_id, p.c.status == "pending")
                    .values(status="applied", applied_at=now)
                )

    def _invalid_keys(self, rows: list, result) -> set[str]:
        """Member keys of rows Meta named among its invalid entry samples (they were not added)."""
        if not result.num_invalid_entries:
            return set()
        samples = set(result.invalid_entry_samples)
        invalid = {r[0] for r in rows if samples.intersection(v for v in r[1:] if v)}
        if len(invalid) < result.num_invalid_entries:
            log.warning(
                "apply %s: Meta counted %s invalid entries and named %s of them",
                self.audience_key,
                result.num_invalid_entries,
                len(invalid),
            )
        return invalid

    def _mark_invalid(self, conn, invalid: set[str]) -> None:
        if not invalid:
            return
        now = _now()
        conn.execute(
            update(audience_plan)
            .where(audience_plan.c.sync_id == self.sync_id, audience_plan.c.member_key.in_(sorted(invalid)))
            .values(status="invalid", applied_at=now)
        )
        conn.execute(
            quarantine.insert(),
            [
                {
                    "run_id": self.run["run_id"],
                    "stage": "audience_send",
                    "record_type": f"audience:{self.audience_key}",
                    "record_id": key,
                    "reason": "Meta counted the row as an invalid entry (a value is not SHA-256 hex)",
                    "detected_at": now,
                }
                for key in sorted(invalid)
            ],
        )

    def _count(self, conn, action: str, sent: int, result) -> None:
        self.counters["requests"] += 1
        self.counters["sent_adds" if action == "add" else "sent_removes"] += sent
        self.counters["num_invalid_entries"] += result.num_invalid_entries
        self.received = result.num_received
        self.samples = (self.samples + [_safe_sample(s) for s in result.invalid_entry_samples])[:100]
        _set_run(
            conn,
            self.sync_id,
            **self.counters,
            num_received=self.received,
            invalid_entry_samples=json.dumps(self.samples),
        )


def _values(row) -> list[str]:
    return [v or "" for v in row[1:]]


def _safe_sample(sample: str) -> str:
    """Meta echoes invalid values; keep hashes, describe anything else (it could be clear PII)."""
    if len(sample) == 64 and all(ch in "0123456789abcdefABCDEF" for ch in sample):
        return sample
    return f"<not a SHA-256 hash: {len(sample)} characters>"


# --- lookalikes --------------------------------------------------------------------------------


def create_lookalikes(settings: Settings, audience_key: str, run_id: str, *, client=None) -> dict:
    """Create each declared Lookalike that does not exist yet, when the seed has 100 people from its country."""
    from adloop import identity
    from adloop.meta.audiences import AudienceClient

    audience = definitions.get(audience_key)
    engine = connect(settings.warehouse_url)
    sync_id = sync_id_for(run_id, audience_key)
    with engine.connect() as conn:
        run = _run_row(conn, sync_id)
    outcome = {"created": [], "existing": [], "skipped": {}}
    if not audience.lookalikes:
        return {"created": 0, "existing": 0, "skipped": 0}

    for lookalike in audience.lookalikes:
        key = f"{audience.key}:lookalike:{lookalike.country}:{lookalike.ratio:.2f}"
        with engine.connect() as conn:
            known = conn.execute(
                select(meta_audiences.c.audience_id).where(meta_audiences.c.audience_key == key)
            ).scalar_one_or_none()
            country_hash = identity.hash_one("country", lookalike.country)
            seed = conn.execute(
                select(func.count())
                .select_from(audience_members)
                .where(
                    audience_members.c.audience_key == audience.key,
                    audience_members.c.country == country_hash,
                )
            ).scalar_one()
        if known:
            outcome["existing"].append(lookalike.label)
            continue
        if seed < definitions.USES["lookalike_seed"]:
            outcome["skipped"][lookalike.label] = (
                f"the seed has {seed} people from {lookalike.country}; Meta needs at least 100"
            )
            continue
        if run["dry_run"]:
            outcome["skipped"][lookalike.label] = "dry run: would be created"
            continue
        client = client or AudienceClient(settings.meta, (settings.meta.ad_account_ids or ("",))[0])
        created = _create_lookalike(engine, client, audience, lookalike, key)
        outcome["created" if created else "existing"].append(lookalike.label)

    with engine.begin() as conn:
        _set_run(conn, sync_id, lookalikes=json.dumps(outcome))
    for label, reason in outcome["skipped"].items():
        log.warning("lookalike %s of %s not created: %s", label, audience_key, reason)
    log.info(
        "lookalikes of %s: %s created, %s existing, %s skipped",
        audience_key,
        len(outcome["created"]),
        len(outcome["existing"]),
        len(outcome["skipped"]),
    )
    return {
        "created": len(outcome["created"]),
        "existing": len(outcome["existing"]),
        "skipped": len(outcome["skipped"]),
    }


def _create_lookalike(engine, client, audience: Audience, lookalike, key: str) -> bool:
    """True when created now, False when it turned out to exist on Meta already."""
    from adloop.meta.audiences import DUPLICATE_LOOKALIKE, AudienceApiError

    with engine.connect() as conn:
        origin = conn.execute(
            select(meta_audiences.c.audience_id).where(meta_audiences.c.audience_key == audience.key)
        ).scalar_one()
    name = audience.lookalike_name(lookalike)
    found = client.find_by_name(name)
    created = False
    if found is not None:
        lookalike_id = str(found["id"])
    else:
        try:
            lookalike_id = client.create_lookalike(name, origin, lookalike.country, lookalike.ratio)
            created = True
        except AudienceApiError as exc:
            if exc.error.code != DUPLICATE_LOOKALIKE:
                raise
            # Someone made the same Lookalike under another name: keep theirs, make no other.
            log.info("lookalike %s of %s exists on Meta under another name", lookalike.label, audience.key)
            return False
    with engine.begin() as conn:
        upsert_rows(
            conn,
            meta_audiences,
            [
                {
                    "audience_key": key,
                    "ad_account_id": client.account,
                    "audience_id": lookalike_id,
                    "name": name,
                    "subtype": "LOOKALIKE",
                    "origin_audience_id": origin,
                    "country": lookalike.country,
                    "ratio": lookalike.ratio,
                    "created_by_adloop": created,
                    "recorded_at": _now(),
                }
            ],
        )
    return created
