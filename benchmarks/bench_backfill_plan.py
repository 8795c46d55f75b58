"""How fast adloop plans a backfill on PostgreSQL, against the bare anti-join, and how much memory it takes.

    .venv/bin/python benchmarks/bench_backfill_plan.py --rows 1000000 --sizes 250000,500000
    .venv/bin/python benchmarks/bench_backfill_plan.py --rows 1000000 --sizes '' --serial

For each size N it creates a scratch database (`reconcile_plan_bench` unless --database says otherwise;
dropped at the end), creates the schema with `adloop.warehouse.ensure_schema`, and fills it in the
server with INSERT ... SELECT generate_series (the loading is not measured):

- `stripe_conversions`: N conversions of one run, a Purchase or (1 in 10) a Subscribe each, with
  hashed customer data. Of each 100: 77 already in the ledger as sent, 14 never sent, 1 stalled
  in flight (sent again), 1 quarantined by an earlier run, 1 older than Meta's 7 days, and one
  each excluded as test mode, unpaid, zero amount, fully refunded, opted out, and without
  customer data.
- `capi_events`: N ledger rows: the 79 % of the run's conversions it knows about, and events of
  earlier windows for the rest.
- `consent_opt_outs`: the 1,000 hashed emails the opted-out conversions use.

Then both tables are VACUUM ANALYZEd (as autovacuum would have done in a warehouse that filled
over weeks), and, interleaved, --repeat times each:

(a) adloop: `reconcile.plan_backfill(settings, run_id)` in a fresh Python process, timed around
    the call, which also reports that process's peak RSS (VmHWM in /proc/self/status). Each run starts
    from an empty `backfill_plan` (emptied, untimed, before it), as a nightly run plans once;
(b) the bare anti-join of the issue, the least any diff must do: find the run's conversions the
    ledger has not got and write them to a table,

        INSERT INTO bare_plan (event_id, event_name)
        SELECT c.event_id, c.event_name FROM stripe_conversions c
        LEFT JOIN capi_events e USING (event_id, event_name)
        WHERE e.event_id IS NULL AND c.run_id = :run_id

    into an UNLOGGED table without indexes, emptied before each run. The aim (a <= 1.5 x b) is
    measured against this one;
(c) the bare left join: the same join writing every conversion of the run with its ledger status
    into a logged table without indexes, as adloop's plan did before it stopped writing the
    conversions the ledger already has as sent;
(d) the bare anti-join of (b) given the route plan_backfill takes: CREATE TEMPORARY TABLE ... AS,
    whose SELECT PostgreSQL may run on parallel workers, where it never runs the SELECT of an
    INSERT in parallel. (a) against (d) is the like-for-like ratio: what the plan costs beyond the
    least diff when both may use every core.

plan_backfill does more than (b): it checks opt-outs and the seven exclusions, keeps the excluded
and expired conversions too (about 230,000 rows of each million here, not 210,000), writes them
first into a temporary table as (d) does and then, with their decisions, into a logged table with
a BRIN index on run_id, replaces the run's previous plan, and counts the plan and the run's
conversions for the run's record.
The fastest run of each counts.

--serial forbids parallel workers to every statement timed (PGOPTIONS), as on a server with none
to spare; the worker also reports how many workers PostgreSQL planned for the plan's diff.

It prints, per size, the times, (a) against (b) (aim: at most 1.5), (c) and (d), and the peak RSS
(aim: under 500 MB, flat as N grows), and a JSON line per size for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))

ADMIN_URL = os.environ.get("ADLOOP_BENCH_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
RUN_ID = "bench-run"
# A fixed clock, so the same rows are sendable, expiring or expired on every run.
AS_OF = datetime(2026, 12, 3, 12, tzinfo=UTC)
DAY = 86_400

BARE_LEFT_JOIN = """
INSERT INTO bare_all (event_id, event_name, event_time, status)
SELECT c.event_id, c.event_name, c.event_time, e.status
FROM stripe_conversions c
LEFT JOIN capi_events e USING (event_id, event_name)
WHERE c.run_id = %(run_id)s
"""

BARE_ANTI_JOIN_PARALLEL = """
CREATE TEMPORARY TABLE bare_diff ON COMMIT DROP AS
SELECT c.event_id, c.event_name
FROM stripe_conversions c
LEFT JOIN capi_events e USING (event_id, event_name)
WHERE e.event_id IS NULL AND c.run_id = %(run_id)s
"""

BARE_ANTI_JOIN = """
INSERT INTO bare_plan (event_id, event_name)
SELECT c.event_id, c.event_name
FROM stripe_conversions c
LEFT JOIN capi_events e USING (event_id, event_name)
WHERE e.event_id IS NULL AND c.run_id = %(run_id)s
"""

# One row per conversion; `b` is the row's bucket (of 100), which decides what it tests.
LOAD_CONVERSIONS = """
INSERT INTO stripe_conversions (
    event_id, event_name, object_type, customer_id, livemode, status, payment_status, event_time,
    currency, amount_minor, value, amount_refunded_minor, action_source, event_source_url,
    client_user_agent, client_ip_address, fbp, fbc, ad_id, em, ph, fn, ln, ct, st, zp, country,
    external_id, hash_errors, normalization_version, run_id, extracted_at)
SELECT
    CASE WHEN i %% 10 = 0 THEN 'sub_' ELSE 'cs_live_' END || lpad(i::text, 9, '0'),
    CASE WHEN i %% 10 = 0 THEN 'Subscribe' ELSE 'Purchase' END,
    CASE WHEN i %% 10 = 0 THEN 'subscription' ELSE 'checkout.session' END,
    'cus_' || (i %% 400000),
    b <> 0,
    'complete',
    CASE WHEN b = 1 THEN 'unpaid' ELSE 'paid' END,
    CASE WHEN b = 6 THEN %(as_of)s - 8 * 86400 ELSE %(as_of)s - 3600 - (i::bigint * 7919) %% (6 * 86400) END,
    'cad',
    CASE WHEN b = 2 THEN 0 ELSE 2500 + (i %% 50) * 100 END,
    CASE WHEN b = 2 THEN 0 ELSE 25 + (i %% 50) END,
    CASE WHEN b = 3 THEN 2500 + (i %% 50) * 100 ELSE 0 END,
    'website',
    'https://studio.example/checkout/success',
    'Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15',
    '203.0.113.' || (i %% 250),
    CASE WHEN b = 5 THEN NULL ELSE 'fb.1.1700000000000.' || i END,
    NULL,
    CASE WHEN i %% 3 = 0 THEN '2385' || (i %% 97) END,
    CASE WHEN b = 5 THEN NULL WHEN b = 4 THEN md5('opt' || (i %% 1000)) || md5('out' || (i %% 1000))
         ELSE md5('em' || i) || md5('em2' || i) END,
    CASE WHEN b = 5 THEN NULL ELSE md5('ph' || i) || md5('ph2' || i) END,
    md5('fn' || (i %% 500)) || md5('fn2' || (i %% 500)),
    md5('ln' || (i %% 900)) || md5('ln2' || (i %% 900)),
    md5('ct' || (i %% 9)) || md5('ct2' || (i %% 9)),
    md5('ab') || md5('ab2'),
    md5('zp' || (i %% 20000)) || md5('zp2' || (i %% 20000)),
    md5('ca') || md5('ca2'),
    CASE WHEN b = 5 THEN NULL ELSE md5('cus' || (i %% 400000)) || md5('cus2' || (i %% 400000)) END,
    NULL, 1, %(run_id)s, now()
FROM (SELECT i, (i * 37) %% 100 AS b FROM generate_series(1, %(rows)s) AS i) AS g
"""

# The ledger: the run's conversions it knows about (b 7: quarantined, 22: in flight, 23-99:
# sent), then events of earlier windows up to N rows.
LOAD_LEDGER = """
INSERT INTO capi_events (event_id, event_name, pixel_id, source, status, event_time, attempts,
                         batch_id, fbtrace_id, error, run_id, first_attempt_at, last_attempt_at, sent_at)
SELECT
    CASE WHEN i %% 10 = 0 THEN 'sub_' ELSE 'cs_live_' END || lpad(i::text, 9, '0'),
    CASE WHEN i %% 10 = 0 THEN 'Subscribe' ELSE 'Purchase' END,
    '1234567890', CASE WHEN b = 7 THEN 'backfill' ELSE 'webhook' END,
    CASE WHEN b = 7 THEN 'quarantined' WHEN b = 22 THEN 'in_flight' ELSE 'sent' END,
    %(as_of)s - 3600 - (i::bigint * 7919) %% (6 * 86400), 1, NULL, 'AbCdEf' || i, NULL, NULL, now(), now(),
    CASE WHEN b >= 23 THEN now() END
FROM (SELECT i, (i * 37) %% 100 AS b FROM generate_series(1, %(rows)s) AS i) AS g
WHERE b = 7 OR b >= 22;

INSERT INTO capi_events (event_id, event_name, pixel_id, source, status, event_time, attempts, fbtrace_id,
                         first_attempt_at, last_attempt_at, sent_at)
SELECT 'cs_old_' || lpad(i::text, 9, '0'), 'Purchase', '1234567890', 'webhook', 'sent',
       %(as_of)s - 30 * 86400 - i, 1, 'Old' || i, now(), now(), now()
FROM generate_series(1, %(rows)s - (SELECT count(*) FROM capi_events)) AS i;

INSERT INTO consent_opt_outs (key_type, key_value, source, recorded_at)
SELECT 'em', md5('opt' || i) || md5('out' || i), 'bench', now() FROM generate_series(0, 999) AS i;
"""


def _admin():
    import sqlalchemy

    return sqlalchemy.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")


def create_database(name: str) -> str:
    admin = _admin()
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_database(name: str) -> None:
    admin = _admin()
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def load(url: str, rows: int) -> dict:
    """Empty the tables and fill them for N conversions; returns the load's counts."""
    import sqlalchemy

    from adloop.warehouse import ensure_schema

    engine = sqlalchemy.create_engine(url)
    ensure_schema(engine)
    params = {"rows": rows, "run_id": RUN_ID, "as_of": int(AS_OF.timestamp())}
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "TRUNCATE stripe_conversions, capi_events, consent_opt_outs, backfill_plan, reconciliation_runs"
        )
        conn.exec_driver_sql(LOAD_CONVERSIONS, params)
        for statement in LOAD_LEDGER.split(";\n"):
            if statement.strip():
                conn.exec_driver_sql(statement, params)
        conn.exec_driver_sql(
            "INSERT INTO reconciliation_runs (run_id, window_start, window_end, dry_run, status, started_at) "
            "VALUES (%(run_id)s, now() - interval '7 days', now(), false, 'extracted', now())",
            params,
        )
        conn.exec_driver_sql(
            "CREATE UNLOGGED TABLE IF NOT EXISTS bare_plan (event_id varchar(255), event_name varchar(32))"
        )
        conn.exec_driver_sql(
            "CREATE TABLE IF NOT EXISTS bare_all "
            "(event_id varchar(255), event_name varchar(32), event_time bigint, status varchar(16))"
        )
    raw = engine.raw_connection()
    try:
        raw.set_session(autocommit=True)
        with raw.cursor() as cur:
            cur.execute("VACUUM ANALYZE stripe_conversions, capi_events, consent_opt_outs, backfill_plan")
    finally:
        raw.close()
    with engine.connect() as conn:
        counts = {
            "conversions": conn.exec_driver_sql("SELECT count(*) FROM stripe_conversions").scalar_one(),
            "ledger": conn.exec_driver_sql("SELECT count(*) FROM capi_events").scalar_one(),
        }
    engine.dispose()
    counts["load_seconds"] = round(time.perf_counter() - started, 1)
    return counts


def _empty(url: str, table: str) -> None:
    import psycopg2

    conn = psycopg2.connect(url.replace("postgresql+psycopg2://", "postgresql://"))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f"TRUNCATE {table}")
            cur.execute(f"VACUUM {table}")
    finally:
        conn.close()


def time_plan(url: str) -> dict:
    """plan_backfill in a fresh process, so its peak RSS is its own."""
    _empty(url, "backfill_plan")
    out = subprocess.run(
        [sys.executable, __file__, "--worker", url], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def peak_rss_mb() -> float:
    """This process's own peak RSS.

    Not getrusage's ru_maxrss: Linux carries it over fork and exec, so a worker started by this
    script would report the script's RSS whenever that is the larger.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(url: str) -> None:
    from sqlalchemy import event

    from adloop import reconcile
    from adloop.settings import Settings
    from adloop.warehouse import connect

    settings = Settings(warehouse_url=url)
    engine = connect(url)
    with engine.connect():  # the pool's first connection, as a task that ran before would have
        pass
    # Keep the diff's CREATE TABLE ... AS, to ask PostgreSQL afterwards how many workers it plans.
    diffs = []

    @event.listens_for(engine, "before_cursor_execute")
    def keep_diff(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("CREATE TEMPORARY TABLE"):
            diffs.append(cursor.mogrify(statement, parameters).decode())

    rss_before = peak_rss_mb()
    started = time.perf_counter()
    summary = reconcile.plan_backfill(settings, RUN_ID, as_of=AS_OF)
    seconds = time.perf_counter() - started
    peak = peak_rss_mb()
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_rss_mb": peak,
                "rss_before_mb": rss_before,
                "diff_workers_planned": [workers_planned(engine, statement) for statement in diffs],
                "summary": summary,
            }
        )
    )


def workers_planned(engine, statement: str) -> int:
    """The parallel workers PostgreSQL plans for `statement` (EXPLAIN without ANALYZE runs nothing)."""
    with engine.connect() as conn:
        lines = conn.exec_driver_sql("EXPLAIN (COSTS OFF) " + statement.replace("%", "%%")).scalars().all()
    return sum(int(line.split(":")[1]) for line in lines if "Workers Planned:" in line)


def time_bare(url: str, statement: str, table: str | None) -> tuple[float, int]:
    import psycopg2

    if table:
        _empty(url, table)
    conn = psycopg2.connect(url.replace("postgresql+psycopg2://", "postgresql://"))
    try:
        started = time.perf_counter()
        with conn.cursor() as cur:
            cur.execute(statement, {"run_id": RUN_ID})
            written = cur.rowcount
        conn.commit()
        return time.perf_counter() - started, written
    finally:
        conn.close()


def measure(url: str, rows: int, repeat: int) -> dict:
    counts = load(url, rows)
    plan_runs, bare_runs, left_runs, parallel_runs = [], [], [], []
    for _ in range(repeat):
        plan_runs.append(time_plan(url))
        bare_runs.append(time_bare(url, BARE_ANTI_JOIN, "bare_plan"))
        left_runs.append(time_bare(url, BARE_LEFT_JOIN, "bare_all"))
        parallel_runs.append(time_bare(url, BARE_ANTI_JOIN_PARALLEL, None))
    best_plan = min(plan_runs, key=lambda r: r["seconds"])
    best_bare, written = min(bare_runs)
    best_left, _ = min(left_runs)
    best_parallel, parallel_written = min(parallel_runs)
    assert parallel_written == written, (parallel_written, written)
    summary = best_plan["summary"]
    return {
        "benchmark": "bench_backfill_plan",
        "rows": rows,
        "ledger_rows": counts["ledger"],
        "plan_seconds": round(best_plan["seconds"], 3),
        "bare_anti_join_seconds": round(best_bare, 3),
        "bare_left_join_seconds": round(best_left, 3),
        "bare_anti_join_parallel_seconds": round(best_parallel, 3),
        "plan_vs_parallel_bare": round(best_plan["seconds"] / best_parallel, 2),
        "plan_vs_bare": round(best_plan["seconds"] / best_bare, 2),
        "plan_vs_left_join": round(best_plan["seconds"] / best_left, 2),
        "plan_runs_seconds": [round(r["seconds"], 3) for r in plan_runs],
        "bare_runs_seconds": [round(s, 3) for s, _ in bare_runs],
        "left_join_runs_seconds": [round(s, 3) for s, _ in left_runs],
        "parallel_bare_runs_seconds": [round(s, 3) for s, _ in parallel_runs],
        "peak_rss_mb": round(max(r["peak_rss_mb"] for r in plan_runs), 1),
        "plan_diff_workers_planned": best_plan["diff_workers_planned"],
        "rss_before_plan_mb": round(max(r["rss_before_mb"] for r in plan_runs), 1),
        "missing_per_bare": written,
        "to_send": summary["send"],
        "already_sent": summary["already_sent"],
        "expired": summary["expired"],
        "excluded": summary["excluded"],
        "excluded_by_reason": summary["excluded_by_reason"],
        "repeat": repeat,
    }


def server_version(url: str) -> str:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    with engine.connect() as conn:
        version = conn.exec_driver_sql("SHOW server_version").scalar_one()
    engine.dispose()
    return version


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        return worker(sys.argv[2])
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="conversions and ledger rows (default 1,000,000)"
    )
    parser.add_argument(
        "--sizes",
        default="250000,500000",
        help="smaller sizes to show memory is flat, comma-separated ('' for none)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, interleaved; the fastest counts")
    parser.add_argument(
        "--database", default="reconcile_plan_bench", help="scratch database, dropped at the end"
    )
    parser.add_argument(
        "--serial",
        action="store_true",
        help="forbid parallel workers (max_parallel_workers_per_gather = 0) for every statement timed, "
        "as on a server with none to spare",
    )
    args = parser.parse_args()
    if args.serial:
        # libpq reads PGOPTIONS for every connection, the worker's included (it inherits it).
        os.environ["PGOPTIONS"] = "-c max_parallel_workers_per_gather=0"

    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()} | {args.rows})
    url = create_database(args.database)
    results = []
    try:
        version = server_version(url)
        for rows in sizes:
            print(f"loading {rows:,} conversions and ledger rows ...", flush=True)
            result = measure(url, rows, args.repeat)
            result["postgres"] = version
            result["serial"] = args.serial
            result["python"] = platform.python_version()
            results.append(result)
            r = result
            print(
                f"{rows:>10,} conversions: plan_backfill {r['plan_seconds']:6.2f} s, "
                f"bare anti-join {r['bare_anti_join_seconds']:6.2f} s, ratio {r['plan_vs_bare']:.2f} "
                f"(aim <= 1.5), bare left join {r['bare_left_join_seconds']:6.2f} s, "
                f"ratio {r['plan_vs_left_join']:.2f}, bare anti-join in parallel "
                f"{r['bare_anti_join_parallel_seconds']:6.2f} s, ratio {r['plan_vs_parallel_bare']:.2f}; peak RSS {r['peak_rss_mb']:.0f} MB (aim < 500); "
                f"{r['to_send']:,} to send; the plan's diff planned with "
                f"{sum(r['plan_diff_workers_planned'])} parallel workers",
                flush=True,
            )
    finally:
        drop_database(args.database)
    for result in results:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
