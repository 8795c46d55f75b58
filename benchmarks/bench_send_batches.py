"""How fast send_backfill reads its next batch at a million conversions, on PostgreSQL.

Loads the same tables as bench_backfill_plan.py (N conversions, an N-row ledger, 1,000 opt-outs),
plans the run with `reconcile.plan_backfill`, then reads the first --batches batches of 1,000
sendable events three ways, interleaved, --repeat times:

(a) adloop: `reconcile._pending_batches`, which pages through the run's plan alone by keyset and
    then joins each page to its conversions and the ledger by primary key;
(b) the obvious query: the plan joined to the conversions and the ledger, filtered to what is
    still unsettled, ordered by (event_time, event_id) with a keyset and LIMIT 1,000, which is
    what adloop did before;
(c) the floor: reading 1,000 rows of the same columns from stripe_conversions by primary-key
    range, the least a batch can cost.

The fastest run of each counts. Sending itself is not timed (Meta's answer dominates it).

    .venv/bin/python benchmarks/bench_send_batches.py --rows 1000000 --batches 10
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_backfill_plan as plan_bench  # noqa: E402

COLUMNS = (
    "event_id", "event_name", "event_time", "action_source", "event_source_url", "client_user_agent",
    "client_ip_address", "fbp", "fbc", "currency", "value", "em", "ph", "fn", "ln", "ct", "st", "zp", "country",
    "external_id",
)

OBVIOUS = f"""
SELECT {", ".join("c." + c for c in COLUMNS)}
FROM backfill_plan p
JOIN stripe_conversions c ON c.event_id = p.event_id AND c.event_name = p.event_name
LEFT JOIN capi_events e ON e.event_id = p.event_id AND e.event_name = p.event_name
WHERE p.run_id = %(run_id)s AND p.decision = 'send'
  AND (e.status IS NULL OR e.status IN ('pending', 'in_flight'))
  AND (c.event_time > %(t)s OR (c.event_time = %(t)s AND c.event_id > %(id)s))
ORDER BY c.event_time, c.event_id
LIMIT 1000
"""

FLOOR = f"""
SELECT {", ".join(COLUMNS)} FROM stripe_conversions
WHERE (event_id, event_name) > (%(id)s, '') ORDER BY event_id, event_name LIMIT 1000
"""


def time_adloop(url: str, batches: int) -> tuple[float, list[str]]:
    from adloop import reconcile
    from adloop.warehouse import connect

    engine = connect(url)
    started = time.perf_counter()
    pages = reconcile._pending_batches(engine, plan_bench.RUN_ID, 1000)
    firsts = [next(pages)[0]["event_id"] for _ in range(batches)]
    pages.close()
    return time.perf_counter() - started, firsts


def time_sql(url: str, statement: str, batches: int) -> tuple[float, list[str]]:
    import psycopg2

    conn = psycopg2.connect(url.replace("postgresql+psycopg2://", "postgresql://"))
    try:
        last = {"run_id": plan_bench.RUN_ID, "t": -1, "id": ""}
        firsts = []
        started = time.perf_counter()
        for _ in range(batches):
            with conn.cursor() as cur:
                cur.execute(statement, last)
                rows = cur.fetchall()
            firsts.append(rows[0][0])
            last = {"run_id": plan_bench.RUN_ID, "t": rows[-1][2], "id": rows[-1][0]}
        return time.perf_counter() - started, firsts
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="conversions and ledger rows")
    parser.add_argument("--batches", type=int, default=10, help="batches of 1,000 read by each")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each, interleaved; the fastest counts")
    parser.add_argument("--database", default="send_batches_bench", help="scratch database, dropped at the end")
    args = parser.parse_args()

    from adloop import reconcile
    from adloop.settings import Settings
    from adloop.warehouse import connect

    url = plan_bench.create_database(args.database)
    try:
        print(f"loading {args.rows:,} conversions and ledger rows, then planning ...", flush=True)
        plan_bench.load(url, args.rows)
        to_send = reconcile.plan_backfill(Settings(warehouse_url=url), plan_bench.RUN_ID, as_of=plan_bench.AS_OF)["send"]
        runs = {"adloop": [], "obvious": [], "floor": []}
        for _ in range(args.repeat):
            runs["adloop"].append(time_adloop(url, args.batches))
            runs["obvious"].append(time_sql(url, OBVIOUS, args.batches))
            runs["floor"].append(time_sql(url, FLOOR, args.batches))
        assert runs["adloop"][0][1] == runs["obvious"][0][1], "adloop and the obvious query disagree on the order"
        best = {k: min(s for s, _ in v) / args.batches for k, v in runs.items()}
        result = {
            "benchmark": "bench_send_batches", "rows": args.rows, "to_send": to_send, "batches": args.batches,
            "ms_per_batch": {k: round(v * 1000, 1) for k, v in best.items()},
            "obvious_vs_adloop": round(best["obvious"] / best["adloop"], 1),
            "adloop_vs_floor": round(best["adloop"] / best["floor"], 1),
        }
        print(f"{args.rows:,} conversions, {to_send:,} to send: a batch of 1,000 takes "
              f"{result['ms_per_batch']['adloop']} ms (adloop), {result['ms_per_batch']['obvious']} ms (obvious "
              f"join, {result['obvious_vs_adloop']}x), {result['ms_per_batch']['floor']} ms (floor; adloop is "
              f"{result['adloop_vs_floor']}x it)")
        print(json.dumps(result))
    finally:
        connect.cache_clear()
        plan_bench.drop_database(args.database)


if __name__ == "__main__":
    main()
