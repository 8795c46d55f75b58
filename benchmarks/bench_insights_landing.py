"""Landing a year of daily Ads Insights for 500 ads into PostgreSQL, and the API requests it takes.

    .venv/bin/python benchmarks/bench_insights_landing.py --ads 500 --days 365

Two measurements, one run:

1. Landing rate. The ad days (500 x 365 = 182,500 rows by default, with their figures, names and
   action JSON) are landed the way `meta_ads_insights` lands them: staged in chunks, then one
   set-based upsert into `ad_insights_daily` with its history, then landed again (every row
   unchanged: the restatement check is part of the cost). Against it, PostgreSQL's own
   `COPY ... FROM STDIN` of the same rows, as CSV, into a table shaped like `ad_insights_daily`.
   The gate (GX) is timed on its own, over what one nightly run gates: the last 28 days.
2. API requests. The same year is read from the sandbox's Meta emulator through the real SDK
   (`InsightsClient.ad_days`, one async report run, pages of --page-size rows, and the account's
   daily totals), counting requests against the minimum for the range: one report run, one status
   read, ceil(rows / page size) result pages, ceil(days / page size) pages of account totals and
   one read of the account.

Needs the PostgreSQL at ADLOOP_BENCH_PG (default postgresql+psycopg2://postgres@127.0.0.1:5432/test);
it creates and drops its own database. Prints a JSON line for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import platform
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "include"))

from adloop import insights  # noqa: E402
from adloop.meta.insights import InsightsClient, InsightsOptions  # noqa: E402
from adloop.sandbox import ad_delivery, meta_insights  # noqa: E402
from adloop.sandbox.server import Sandbox  # noqa: E402
from adloop.settings import MetaSettings  # noqa: E402
from adloop.warehouse import connect, ensure_schema, upsert_rows  # noqa: E402
from adloop.warehouse.insights_schema import FIGURES, insights_account_staging, insights_runs  # noqa: E402

ACCOUNT = "act_900800700"
TZ = "America/Edmonton"
PG = os.environ.get("ADLOOP_BENCH_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")


def fetch_rows(ads: int, days: int, page_size: int, state: Path) -> tuple[list[dict], dict]:
    """The year's ad days read from the emulator through the SDK, and the request counts."""
    today = datetime.now(UTC).astimezone(ZoneInfo(TZ)).date()
    first = today - timedelta(days=days)
    structure = ad_delivery.synthetic_ads(ads, ACCOUNT)
    with Sandbox(state) as sandbox:
        meta_insights.load(sandbox.store, [{"account_id": ACCOUNT, "name": "bench", "currency": "CAD",
                                            "timezone_name": TZ}], structure,
                           ad_delivery.synthetic_delivery(structure, first, days))
        cfg = MetaSettings(access_token="bench", graph_url=sandbox.meta_url, timeout_seconds=120)
        client = InsightsClient(cfg, InsightsOptions(poll_initial_seconds=0.05, page_size=page_size))
        started = time.perf_counter()
        client.account(ACCOUNT)
        rows = list(client.ad_days(ACCOUNT, first, today - timedelta(days=1)))
        totals = list(client.account_days(ACCOUNT, first, today - timedelta(days=1)))
        seconds = time.perf_counter() - started
        polls = sandbox.meta.insights.polls_to_complete + 1
    minimum = 1 + 1 + 1 + math.ceil(len(rows) / page_size) + math.ceil(len(totals) / page_size)
    return rows, {
        "rows": len(rows), "requests": client.stats.requests, "minimum_requests": minimum,
        "status_reads": polls, "fetch_seconds": round(seconds, 1), "fetch_rows_per_s": round(len(rows) / seconds),
        "first_day": first.isoformat(), "account_days": totals,
    }


def land(url: str, rows: list[dict], totals: list[dict], run_id: str, since: date, until: date) -> dict:
    engine = connect(url)
    with engine.begin() as conn:
        upsert_rows(conn, insights_runs, [{"run_id": run_id, "account_id": ACCOUNT, "since": since, "until": until,
                                           "timezone_name": TZ, "currency": "CAD", "status": "fetched",
                                           "rejected_days": "[]"}])
        upsert_rows(conn, insights_account_staging, [{"run_id": run_id, "account_id": ACCOUNT, **t} for t in totals])
    started = time.perf_counter()
    insights.stage_ad_days(engine, run_id, ACCOUNT, rows, currency="CAD")
    staged = time.perf_counter()
    loaded = insights.load_insights(url, run_id, ACCOUNT)
    done = time.perf_counter()
    return {"stage_s": staged - started, "load_s": done - staged, "total_s": done - started, **loaded}


def copy_baseline(url: str, rows: list[dict]) -> float:
    """Seconds for PostgreSQL's COPY of the same rows into a table shaped like ad_insights_daily."""
    engine = connect(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS bench_copy")
        conn.exec_driver_sql("CREATE TABLE bench_copy (LIKE ad_insights_daily INCLUDING ALL)")
    columns = ["account_id", "ad_id", "date_start", "adset_id", "campaign_id", "currency", *FIGURES, "actions",
               "attribution_setting", "fingerprint", "versions", "first_fetched_at", "fetched_at", "run_id"]
    now = datetime.now(UTC).isoformat()
    started = time.perf_counter()
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for r in rows:
        writer.writerow([ACCOUNT, r["ad_id"], r["date_start"], r["adset_id"], r["campaign_id"], "CAD",
                         *(r[f] for f in FIGURES), r["actions"], r["attribution_setting"], "x" * 40, 1, now, now,
                         "copy"])
    buffer.seek(0)
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur:
            cur.copy_expert(f"COPY bench_copy ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)", buffer)
        raw.commit()
    finally:
        raw.close()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ads", type=int, default=500)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--page-size", type=int, default=5000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        rows, api = fetch_rows(args.ads, args.days, args.page_size, Path(tmp) / "sandbox.db")
    totals = api.pop("account_days")
    since, until = min(r["date_start"] for r in rows), max(r["date_start"] for r in rows)
    print(f"fetch: {api['rows']:,} ad days in {api['requests']} requests (minimum {api['minimum_requests']}, "
          f"of which {api['status_reads']} status reads), {api['fetch_rows_per_s']:,} rows/s through the SDK")

    name = f"adloop_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = PG.rsplit("/", 1)[0] + f"/{name}"
    try:
        ensure_schema(connect(url))
        first = land(url, rows, totals, "bench-1", since, until)
        again = land(url, rows, totals, "bench-2", since, until)
        copy_s = min(copy_baseline(url, rows) for _ in range(2))
        from adloop.quality.gate import run_gate

        engine = connect(url)
        # The gate runs over what one nightly run stages: the last 28 days of every ad.
        gate_since = until - timedelta(days=27)
        land_rows = [dict(r) for r in rows if r["date_start"] >= gate_since]
        with engine.begin() as conn:
            upsert_rows(conn, insights_runs, [{"run_id": "bench-3", "account_id": ACCOUNT, "since": since,
                                               "until": until, "status": "fetched", "rejected_days": "[]"}])
            upsert_rows(conn, insights_account_staging, [{"run_id": "bench-3", "account_id": ACCOUNT, **t}
                                                         for t in totals])
        insights.stage_ad_days(engine, "bench-3", ACCOUNT, land_rows, currency="CAD")
        started = time.perf_counter()
        params = {"run_id": "bench-3", "account_id": ACCOUNT, "since": gate_since.isoformat(),
                  "until": until.isoformat(), "tolerance_abs": insights.SPEND_TOLERANCE_ABS,
                  "tolerance_rel": insights.SPEND_TOLERANCE_REL}
        run_gate(engine, insights.insights_suite(), params=params, run_id="bench-3", dag_id=None, step="bench")
        gate_s = time.perf_counter() - started
    finally:
        connect.cache_clear()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    n = len(rows)
    result = {
        "benchmark": "insights_landing", "ads": args.ads, "days": args.days, "rows": n,
        "first_landing_rows_per_s": round(n / first["total_s"]),
        "first_landing_stage_s": round(first["stage_s"], 2), "first_landing_load_s": round(first["load_s"], 2),
        "relanding_rows_per_s": round(n / again["total_s"]), "relanding_unchanged": again["unchanged"],
        "copy_rows_per_s": round(n / copy_s),
        "landing_vs_copy": round(copy_s / first["total_s"], 2),
        "gate_s_28_days": round(gate_s, 2), "gate_rows": len(land_rows),
        **{k: v for k, v in api.items() if k != "rows"},
        "python": platform.python_version(), "postgres_url_host": PG.rsplit("@", 1)[-1].split("/")[0],
    }
    print(f"landing: {result['first_landing_rows_per_s']:,} rows/s first time (stage {first['stage_s']:.1f} s, "
          f"load {first['load_s']:.1f} s), {result['relanding_rows_per_s']:,} rows/s re-landing unchanged; "
          f"COPY {result['copy_rows_per_s']:,} rows/s; landing/COPY = {result['landing_vs_copy']:.2f}; "
          f"gate over {len(land_rows):,} rows (28 days) {gate_s:.1f} s")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
