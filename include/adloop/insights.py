"""Landing Ads Insights: one ad account's ad-level days, staged, gated, and upserted with history.

Each public function is one task of the `meta_ads_insights` DAG, mapped over the ad accounts, and
returns counts only:

    fetch_insights -> gate_insights -> load_insights

The window is the last 28 days of the ad account's own time zone before the run's data interval
end (Meta restates figures for 28 days), or the dates a manual run names. Nothing reads the clock.

Restatement: a day fetched again either matches what `ad_insights_daily` holds (same fingerprint of
its figures; only `fetched_at` moves) or it replaces it, and the new figures are appended to
`ad_insights_history` as the day's next version with the deltas, so how a day moved is kept.
A day that fails the gate is not loaded: it stays as it was, is listed in `insights_runs` and in
`quarantine`, and the next run fetches it again.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, delete, func, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from adloop.settings import Settings
from adloop.warehouse import connect, ensure_schema, upsert_rows
from adloop.warehouse.insights_schema import (
    FIGURES,
    ad_account_daily,
    ad_insights_daily,
    ad_insights_history,
    insights_account_staging,
    insights_runs,
    insights_staging,
    meta_ads,
)
from adloop.warehouse.schema import quarantine

log = logging.getLogger(__name__)

RESTATEMENT_DAYS = 28
CHUNK_ROWS = 5_000
# The ads' spend of a day may differ from the account's total by rounding (each ad rounds to the
# cent): allow a few cents, or half a percent on big days.
SPEND_TOLERANCE_ABS = 0.05
SPEND_TOLERANCE_REL = 0.005


def _now() -> datetime:
    return datetime.now(UTC)


def insights_window(
    timezone_name: str, run_end: datetime, since: date | None = None, until: date | None = None,
    days: int = RESTATEMENT_DAYS,
) -> tuple[date, date]:
    """[since, until] in the account's time zone: the `days` full days before `run_end`, unless given."""
    if run_end.tzinfo is None:
        raise ValueError(f"the run's end must be timezone-aware, got {run_end.isoformat()}")
    today = run_end.astimezone(ZoneInfo(timezone_name)).date()
    until = until or today - timedelta(days=1)
    since = since or until - timedelta(days=days - 1)
    if since > until:
        raise ValueError(f"the window starts ({since}) after it ends ({until}); check the run's Params")
    return since, until


# The text hashed, in FIGURES order: money to the cent, counts as integers. It must not change:
# ad_insights_daily holds fingerprints of it, and a different text would count every day as
# restated on the next run.
_FINGERPRINT_TEXT = "{:.2f}|{}|{}|{}|{}|{:.2f}|{}|{}|{}|{:.2f}".format


def fingerprint(row: dict) -> str:
    """Equal fingerprints mean equal figures; money is compared to the cent."""
    text = _FINGERPRINT_TEXT(
        row["spend"], int(row["impressions"]), int(row["clicks"]), int(row["reach"]), int(row["purchases"]),
        row["purchase_value"], int(row["bookings"]), int(row["signups"]), int(row["subscribes"]),
        row["subscribe_value"],
    )
    return hashlib.sha1(text.encode()).hexdigest()


# --- fetch -------------------------------------------------------------------------------------


def fetch_insights(
    settings: Settings,
    account_id: str,
    run_id: str,
    run_end: datetime,
    *,
    since: date | None = None,
    until: date | None = None,
    options=None,
    client=None,
) -> dict:
    """Read one account's ad days and daily totals for the window into the staging tables."""
    from adloop.meta.insights import InsightsClient

    engine = connect(settings.warehouse_url)
    ensure_schema(engine)
    client = client or InsightsClient(settings.meta, options)
    account = client.account(account_id)
    since, until = insights_window(account.timezone_name, run_end, since, until)
    started = _now()
    _clear_staging(engine, run_id, account.account_id)

    rows = stage_ad_days(engine, run_id, account.account_id, client.ad_days(account.account_id, since, until),
                         currency=account.currency)
    with engine.begin() as conn:
        totals = [
            {"run_id": run_id, "account_id": account.account_id, **day}
            for day in client.account_days(account.account_id, since, until)
        ]
        upsert_rows(conn, insights_account_staging, totals)
        stats = client.stats
        upsert_rows(conn, insights_runs, [{
            "run_id": run_id, "account_id": account.account_id, "since": since, "until": until,
            "timezone_name": account.timezone_name, "currency": account.currency, "status": "fetched",
            "rows_fetched": rows, "requests": stats.requests, "report_runs": stats.report_runs,
            "split_jobs": stats.split_jobs, "retries": stats.retries, "waited_seconds": stats.waited_seconds,
            "started_at": started, "rejected_days": "[]",
        }])
    log.info(
        "fetch %s %s..%s (%s): %s ad days, %s account days in %s requests (%s report runs, %s split, %s retried, "
        "%.1f s paced)", account.account_id, since, until, account.timezone_name, rows, len(totals), stats.requests,
        stats.report_runs, stats.split_jobs, stats.retries, stats.waited_seconds,
    )
    return {"account_id": account.account_id, "since": since.isoformat(), "until": until.isoformat(),
            "rows": rows, "account_days": len(totals), "requests": stats.requests,
            "report_runs": stats.report_runs, "split_jobs": stats.split_jobs, "retries": stats.retries}


def _clear_staging(engine, run_id: str, account_id: str) -> None:
    """A retried fetch starts from nothing, so a half-staged earlier attempt cannot leak in."""
    with engine.begin() as conn:
        for table in (insights_staging, insights_account_staging):
            conn.execute(delete(table).where(table.c.run_id == run_id, table.c.account_id == account_id))


def stage_ad_days(engine, run_id: str, account_id: str, rows: Iterable[dict], *, currency: str | None = None) -> int:
    """Stream flat insights rows into `insights_staging` in chunks; returns how many were read.

    A key Meta returned twice (a paging or split bug) is kept once with `copies` counting it, so
    the gate can refuse its day.
    """
    postgres = engine.dialect.name == "postgresql"
    staged = _csv_line if postgres else _staged_dict
    total = 0
    # (ad_id, date_start) -> [the staged row, copies]; the first row of a key is the one kept.
    chunk: dict[tuple, list] = {}
    for row in rows:
        values = staged(row, run_id, account_id, currency)
        key = (row.get("ad_id"), row.get("date_start"))
        if key in chunk:
            chunk[key][1] += 1
        else:
            chunk[key] = [values, 1]
        total += 1
        if total % CHUNK_ROWS == 0:
            (_copy_chunk if postgres else _insert_chunk)(engine, chunk)
            chunk = {}
    if chunk:
        (_copy_chunk if postgres else _insert_chunk)(engine, chunk)
    return total


# The row's text columns, its figures, then what staging adds; `copies` is last.
_TEXT_COLUMNS = ("ad_id", "date_start", "ad_name", "adset_id", "adset_name", "campaign_id", "campaign_name",
                 "actions", "attribution_setting")
_COPY_COLUMNS = ", ".join(("run_id", "account_id", *_TEXT_COLUMNS, *FIGURES, "currency", "fingerprint", "copies"))


def _staged_dict(row: dict, run_id: str, account_id: str, currency: str | None) -> dict:
    staged = {k: row.get(k) for k in (*_TEXT_COLUMNS, *FIGURES)}
    staged.update(run_id=run_id, account_id=account_id, currency=row.get("currency") or currency,
                  fingerprint=fingerprint(row))
    return staged


def _csv_field(value) -> str:
    """One field as COPY's CSV reads it: None and "" are NULL, as `csv.writer` wrote them; other text is quoted."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        return '"' + value.replace('"', '""') + '"'
    return str(value)


def _csv_line(row: dict, run_id: str, account_id: str, currency: str | None) -> str:
    """The row as one CSV line of _COPY_COLUMNS, without `copies`, built in one pass.

    `csv.writer` spent most of the staging time checking every character of every field; this
    quotes all text instead. The figures are written with str(), as the writer did, once the
    fingerprint has refused any that are not numbers.
    """
    digest = fingerprint(row)
    return ",".join((
        _csv_field(run_id), _csv_field(account_id), *map(_csv_field, map(row.get, _TEXT_COLUMNS)),
        *map(str, map(row.__getitem__, FIGURES)), _csv_field(row.get("currency") or currency), digest,
    ))


def _insert_chunk(engine, chunk: dict[tuple, list]) -> None:
    """SQLite: one executemany; a key staged by an earlier chunk or call adds its copies."""
    stmt = sqlite.insert(insights_staging)
    stmt = stmt.on_conflict_do_update(
        index_elements=[c.name for c in insights_staging.primary_key.columns],
        set_={"copies": insights_staging.c.copies + stmt.excluded.copies},
    )
    with engine.begin() as conn:
        conn.execute(stmt, [{**values, "copies": copies} for values, copies in chunk.values()])


def _copy_chunk(engine, chunk: dict[tuple, list]) -> None:
    """PostgreSQL: COPY the chunk straight into staging.

    A key staged before (Meta returned it in an earlier chunk, or staging was filled twice) makes
    the COPY fail as a whole; then the chunk goes through a temporary table and one INSERT ... ON
    CONFLICT that adds its copies. Going through the temporary table every time took a third of
    the landing.
    """
    from psycopg2 import errors

    data = "".join([f"{line},{copies}\n" for line, copies in chunk.values()])
    try:
        with engine.begin() as conn:
            cursor = conn.connection.driver_connection.cursor()
            cursor.copy_expert(f"COPY insights_staging ({_COPY_COLUMNS}) FROM STDIN WITH (FORMAT csv)",
                               io.StringIO(data))
            cursor.close()
        return
    except errors.UniqueViolation:
        pass
    with engine.begin() as conn:
        cursor = conn.connection.driver_connection.cursor()
        cursor.execute("CREATE TEMP TABLE IF NOT EXISTS insights_copy (LIKE insights_staging) ON COMMIT DELETE ROWS")
        cursor.copy_expert(f"COPY insights_copy ({_COPY_COLUMNS}) FROM STDIN WITH (FORMAT csv)", io.StringIO(data))
        cursor.execute(
            f"INSERT INTO insights_staging ({_COPY_COLUMNS}) SELECT {_COPY_COLUMNS} FROM insights_copy "
            "ON CONFLICT (run_id, account_id, ad_id, date_start) "
            "DO UPDATE SET copies = insights_staging.copies + EXCLUDED.copies"
        )
        cursor.close()


# --- gate --------------------------------------------------------------------------------------

STAGED_QUERY = """
SELECT s.account_id, s.ad_id, s.date_start, s.copies, s.spend, s.impressions, s.clicks, s.reach,
       s.purchases, s.purchase_value, s.bookings, s.signups, s.subscribes, s.subscribe_value,
       CASE WHEN s.date_start >= :since AND s.date_start <= :until THEN 1 ELSE 0 END AS in_window,
       CASE WHEN s.spend >= 0 AND s.impressions >= 0 AND s.clicks >= 0 AND s.reach >= 0 AND s.purchases >= 0
                 AND s.purchase_value >= 0 AND s.bookings >= 0 AND s.signups >= 0 AND s.subscribes >= 0
                 AND s.subscribe_value >= 0
            THEN 1 ELSE 0 END AS non_negative,
       CASE WHEN a.spend IS NOT NULL
                 AND abs(d.ads_spend - a.spend) <= :tolerance_abs + :tolerance_rel * a.spend
            THEN 1 ELSE 0 END AS adds_up
FROM insights_staging AS s
JOIN (SELECT date_start, sum(spend) AS ads_spend FROM insights_staging
      WHERE run_id = :run_id AND account_id = :account_id GROUP BY date_start) AS d
  ON d.date_start = s.date_start
LEFT JOIN insights_account_staging AS a
  ON a.run_id = s.run_id AND a.account_id = s.account_id AND a.date_start = s.date_start
WHERE s.run_id = :run_id AND s.account_id = :account_id
"""


def insights_suite():
    """What one account's staged days must satisfy before they replace what the warehouse holds."""
    from adloop.quality.gate import Suite, between, in_set, not_null

    counts = ("impressions", "clicks", "reach", "purchases", "bookings", "signups", "subscribes")
    return Suite(
        name="ad_insights_daily",
        query=STAGED_QUERY,
        expectations=(
            not_null("ad_id"),
            not_null("date_start"),
            # Unique keys: staging's primary key holds one row per account, ad and day, and `copies`
            # counts how often Meta returned it; more than one means the day's figures cannot be
            # trusted. (GX's compound-unique check self-joins the gate's view: quadratic here.)
            in_set("copies", (1,)),
            between("spend", 0),
            between("purchase_value", 0),
            between("subscribe_value", 0),
            *(between(column, 0) for column in counts),
            in_set("in_window", (1,)),
            # Per day, the ads' spend adds up to the account's own total.
            in_set("adds_up", (1,)),
        ),
    )


def gate_insights(warehouse_url: str, run_id: str, account_id: str, *, dag_id: str | None = None) -> dict:
    """Run the gate over one account's staged days; record the days that fail it, which are not loaded."""
    from adloop.quality.gate import GateFailed, run_gate

    engine = connect(warehouse_url)
    run = _run_row(engine, run_id, account_id)
    params = {"run_id": run_id, "account_id": account_id, "since": run["since"].isoformat(),
              "until": run["until"].isoformat(), "tolerance_abs": SPEND_TOLERANCE_ABS,
              "tolerance_rel": SPEND_TOLERANCE_REL}
    try:
        result = run_gate(engine, insights_suite(), params=params, run_id=run_id, dag_id=dag_id,
                          step=f"gate_insights:{account_id}")
        failed: list[dict] = []
    except GateFailed as exc:
        result, failed = exc.result, exc.result.failed

    rejected = _failing_days(engine, params) if failed else {}
    with engine.begin() as conn:
        conn.execute(update(insights_runs).where(insights_runs.c.run_id == run_id,
                                                 insights_runs.c.account_id == account_id)
                     .values(rejected_days=json.dumps(sorted(rejected)), status="gated"))
        if rejected:
            now = _now()
            conn.execute(quarantine.insert(), [
                {"run_id": run_id, "stage": "insights_gate", "record_type": "insights_day",
                 "record_id": f"{account_id}:{day}", "reason": reason, "detected_at": now}
                for day, reason in sorted(rejected.items())
            ])
    for day, reason in sorted(rejected.items()):
        log.error("gate insights %s: %s is not loaded: %s", account_id, day, reason)
    return {"account_id": account_id, "passed": not failed, "rows": result.row_count,
            "failed_expectations": len(failed), "rejected_days": sorted(rejected)}


def _failing_days(engine, params: dict) -> dict[str, str]:
    """The days with a row that breaks a rule, and which rules, from the gate's own query."""
    from sqlalchemy import text

    sql = text(
        "SELECT date_start, max(CASE WHEN copies <> 1 THEN 1 ELSE 0 END), max(1 - in_window), "
        "max(1 - non_negative), max(1 - adds_up) FROM (" + STAGED_QUERY + ") AS q "
        "WHERE copies <> 1 OR in_window = 0 OR non_negative = 0 OR adds_up = 0 GROUP BY date_start"
    )
    rules = ("an ad appears more than once", "outside the window", "a negative figure",
             "the ads' spend does not add up to the account's")
    with engine.connect() as conn:
        found = conn.execute(sql, params).all()
    return {
        _iso(row[0]): "; ".join(rule for rule, broken in zip(rules, row[1:], strict=True) if broken)
        for row in found
    }


def _iso(value) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)


def _run_row(engine, run_id: str, account_id: str) -> dict:
    with engine.connect() as conn:
        row = conn.execute(select(insights_runs).where(insights_runs.c.run_id == run_id,
                                                       insights_runs.c.account_id == account_id)).first()
    if row is None:
        raise RuntimeError(f"no fetched insights for run {run_id} and account {account_id}: run fetch_insights first")
    return dict(row._mapping)


# --- load --------------------------------------------------------------------------------------


def load_insights(warehouse_url: str, run_id: str, account_id: str) -> dict:
    """Upsert the gated days into ad_insights_daily; append new and restated figures to the history."""
    engine = connect(warehouse_url)
    run = _run_row(engine, run_id, account_id)
    rejected = [date.fromisoformat(d) for d in json.loads(run["rejected_days"] or "[]")]
    s, d = insights_staging, ad_insights_daily
    now = _now()
    keep = [s.c.run_id == run_id, s.c.account_id == account_id]
    if rejected:
        keep.append(s.c.date_start.not_in(rejected))
    # Days outside the window are rejected by the gate; a run without the gate must not load them either.
    keep += [s.c.date_start >= run["since"], s.c.date_start <= run["until"]]
    joined = s.outerjoin(d, and_(d.c.account_id == s.c.account_id, d.c.ad_id == s.c.ad_id,
                                 d.c.date_start == s.c.date_start))

    with engine.begin() as conn:
        counts = conn.execute(
            select(
                func.count(),
                func.coalesce(func.sum(case((d.c.ad_id.is_(None), 1), else_=0)), 0),
                func.coalesce(func.sum(case((and_(d.c.ad_id.is_not(None), d.c.fingerprint != s.c.fingerprint), 1),
                                            else_=0)), 0),
            ).select_from(joined).where(*keep)
        ).one()
        total, new, restated = int(counts[0]), int(counts[1]), int(counts[2])

        history_cols = ["account_id", "ad_id", "date_start", "version", "change", *FIGURES, "spend_delta",
                        "purchases_delta", "purchase_value_delta", "run_id", "fetched_at"]
        conn.execute(ad_insights_history.insert().from_select(history_cols, select(
            s.c.account_id, s.c.ad_id, s.c.date_start,
            func.coalesce(d.c.versions, 0) + 1,
            case((d.c.ad_id.is_(None), "new"), else_="restated"),
            *(s.c[f] for f in FIGURES),
            s.c.spend - func.coalesce(d.c.spend, 0),
            s.c.purchases - func.coalesce(d.c.purchases, 0),
            s.c.purchase_value - func.coalesce(d.c.purchase_value, 0),
            literal(run_id), literal(now, type_=ad_insights_history.c.fetched_at.type),
        ).select_from(joined).where(*keep, or_(d.c.ad_id.is_(None), d.c.fingerprint != s.c.fingerprint))))

        daily_cols = ["account_id", "ad_id", "date_start", "adset_id", "campaign_id", "currency", *FIGURES, "actions",
                      "attribution_setting", "fingerprint", "versions", "first_fetched_at", "fetched_at", "run_id"]
        insert = (postgresql if engine.dialect.name == "postgresql" else sqlite).insert(d)
        source = select(
            s.c.account_id, s.c.ad_id, s.c.date_start, s.c.adset_id, s.c.campaign_id, s.c.currency,
            *(s.c[f] for f in FIGURES), s.c.actions, s.c.attribution_setting, s.c.fingerprint, literal(1),
            literal(now, type_=d.c.fetched_at.type), literal(now, type_=d.c.fetched_at.type), literal(run_id),
        ).where(*keep)
        changed = d.c.fingerprint != insert.excluded.fingerprint
        upsert = insert.from_select(daily_cols, source).on_conflict_do_update(
            index_elements=["account_id", "ad_id", "date_start"],
            set_={
                **{f: insert.excluded[f] for f in (*FIGURES, "adset_id", "campaign_id", "currency", "actions",
                                                   "attribution_setting", "fingerprint", "fetched_at", "run_id")},
                "versions": d.c.versions + case((changed, 1), else_=0),
            },
        )
        conn.execute(upsert)

        _upsert_ads(conn, run_id, account_id, run, keep)
        totals = conn.execute(select(insights_account_staging).where(
            insights_account_staging.c.run_id == run_id, insights_account_staging.c.account_id == account_id,
            *([insights_account_staging.c.date_start.not_in(rejected)] if rejected else []),
        )).all()
        upsert_rows(conn, ad_account_daily, [
            {"account_id": account_id, "date_start": t.date_start, "spend": t.spend, "impressions": t.impressions,
             "run_id": run_id, "fetched_at": now} for t in totals
        ])

        for table in (insights_staging, insights_account_staging):
            conn.execute(delete(table).where(table.c.run_id == run_id, table.c.account_id == account_id))
        unchanged = total - new - restated
        conn.execute(update(insights_runs).where(insights_runs.c.run_id == run_id,
                                                 insights_runs.c.account_id == account_id).values(
            status="loaded", new_rows=new, restated_rows=restated, unchanged_rows=unchanged, finished_at=now))
    log.info("load %s: %s ad days (%s new, %s restated, %s unchanged), %s days rejected by the gate",
             account_id, total, new, restated, unchanged, len(rejected))
    return {"account_id": account_id, "loaded": total, "new": new, "restated": restated, "unchanged": unchanged,
            "rejected_days": len(rejected)}


def _upsert_ads(conn, run_id: str, account_id: str, run: dict, keep) -> None:
    """The ads of the loaded days, with their latest names, ad set and campaign."""
    s = insights_staging
    last = (select(s.c.ad_id.label("ad_id"), func.max(s.c.date_start).label("last_day"))
            .where(*keep).group_by(s.c.ad_id).subquery())
    latest = conn.execute(
        select(s.c.ad_id, s.c.ad_name, s.c.adset_id, s.c.adset_name, s.c.campaign_id, s.c.campaign_name,
               s.c.currency, s.c.date_start)
        .join(last, and_(last.c.ad_id == s.c.ad_id, last.c.last_day == s.c.date_start))
        .where(s.c.run_id == run_id, s.c.account_id == account_id)
    )
    ads = {
        row.ad_id: {"ad_id": row.ad_id, "account_id": account_id, "ad_name": row.ad_name, "adset_id": row.adset_id,
                    "adset_name": row.adset_name, "campaign_id": row.campaign_id,
                    "campaign_name": row.campaign_name, "currency": row.currency,
                    "timezone_name": run["timezone_name"], "last_seen": row.date_start}
        for row in latest
    }
    upsert_rows(conn, meta_ads, list(ads.values()))


# --- the run -----------------------------------------------------------------------------------


def summarize_run(warehouse_url: str, run_id: str) -> dict:
    """Counts over every account of a run, for the last task's XCom and log line."""
    with connect(warehouse_url).connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(insights_runs).where(insights_runs.c.run_id == run_id))]
    rejected = {r["account_id"]: json.loads(r["rejected_days"] or "[]") for r in rows}
    summary = {
        "accounts": len(rows),
        "loaded": sum(r["new_rows"] or 0 for r in rows) + sum(r["restated_rows"] or 0 for r in rows)
        + sum(r["unchanged_rows"] or 0 for r in rows),
        "new": sum(r["new_rows"] or 0 for r in rows),
        "restated": sum(r["restated_rows"] or 0 for r in rows),
        "requests": sum(r["requests"] or 0 for r in rows),
        "rejected_days": sum(len(v) for v in rejected.values()),
    }
    log.info("insights run %s: %s accounts, %s ad days loaded (%s new, %s restated), %s days rejected, "
             "%s API requests", run_id, summary["accounts"], summary["loaded"], summary["new"], summary["restated"],
             summary["rejected_days"], summary["requests"])
    return summary


def rejected_days(warehouse_url: str, run_id: str) -> dict[str, list[str]]:
    with connect(warehouse_url).connect() as conn:
        rows = conn.execute(select(insights_runs.c.account_id, insights_runs.c.rejected_days)
                            .where(insights_runs.c.run_id == run_id)).all()
    return {r.account_id: json.loads(r.rejected_days or "[]") for r in rows if json.loads(r.rejected_days or "[]")}
