"""Audience sync at scale: a 1M-member audience with 1% churn (1% leave, as many join).

Measures, on the warehouse given (SQLite by default, `--warehouse-url postgresql+psycopg2://...`):

- requests sent to Meta against the minimum, ceil(adds / 10,000) + ceil(removes / 10,000);
- planning time (`plan_sync`: two INSERT ... SELECT anti-joins into `audience_plan`) against the
  bare SQL set difference (the two EXCEPT counts, writing nothing);
- build time (`build_segment`: segment SQL streamed, member keys computed, staged) and gate time;
- the peak resident memory of this process (the sandbox runs in its own process).

The audience is declared the way any audience is, as an `Audience` entry; the benchmark adds it
to the declared list at run time. Its people carry email, phone and country hashes.

    .venv/bin/python benchmarks/bench_audience_sync.py [--members 1000000] [--churn 0.01]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import resource
import tempfile
import time
from pathlib import Path

KEY = "bench_members"


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _declare_audience() -> None:
    from adloop.audiences import definitions

    audience = definitions.Audience(
        key=KEY,
        name="adloop | Benchmark members",
        description="benchmark",
        use="exclusion",
        segment="SELECT source_id, NULL AS customer_id, em, ph, NULL AS fn, NULL AS ln, NULL AS ct, "
        "NULL AS st, NULL AS zp, country FROM bench_people",
        max_shrink=0.05,
    )
    definitions.AUDIENCES = (*definitions.AUDIENCES, audience)


def _seed(warehouse_url: str, members: int, churn: float) -> tuple[int, int]:
    """audience_members: people 0..members-1; bench_people: the same minus `churn` of them, plus as many new."""
    from datetime import UTC, datetime

    from sqlalchemy import text

    from adloop.audiences.sync import member_key
    from adloop.warehouse import connect, ensure_schema
    from adloop.warehouse.audience_schema import audience_members

    engine = connect(warehouse_url)
    ensure_schema(engine)
    moved = int(members * churn)
    country = _hash("ca")
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS bench_people")
        conn.exec_driver_sql(
            "CREATE TABLE bench_people (source_id VARCHAR(32) PRIMARY KEY, em VARCHAR(64), ph VARCHAR(64), "
            "country VARCHAR(64))"
        )
    chunk = 50_000
    for start in range(0, members + moved, chunk):
        people = []
        for i in range(start, min(start + chunk, members + moved)):
            em, ph = _hash(f"person{i}@example.com"), _hash(f"1780555{i:07d}")
            people.append({"source_id": f"p{i}", "em": em, "ph": ph, "country": country})
        with engine.begin() as conn:
            old = [p for p in people if int(p["source_id"][1:]) < members]
            if old:
                conn.execute(
                    audience_members.insert(),
                    [
                        {
                            "audience_key": KEY,
                            "member_key": member_key(
                                (p["em"], p["ph"], None, None, None, None, None, p["country"])
                            ),
                            "em": p["em"],
                            "ph": p["ph"],
                            "country": p["country"],
                            "sync_id": "seed",
                            "added_at": now,
                        }
                        for p in old
                    ],
                )
            current = [p for p in people if int(p["source_id"][1:]) >= moved]  # the first `moved` left
            conn.execute(text("INSERT INTO bench_people VALUES (:source_id, :em, :ph, :country)"), current)
    return moved, moved


def _bare_set_difference(warehouse_url: str, sync_id: str) -> float:
    from sqlalchemy import text

    from adloop.warehouse import connect

    started = time.perf_counter()
    with connect(warehouse_url).connect() as conn:
        for query in (
            "SELECT count(*) FROM (SELECT member_key FROM audience_candidates WHERE sync_id = :s "
            "EXCEPT SELECT member_key FROM audience_members WHERE audience_key = :k) AS d",
            "SELECT count(*) FROM (SELECT member_key FROM audience_members WHERE audience_key = :k "
            "EXCEPT SELECT member_key FROM audience_candidates WHERE sync_id = :s) AS d",
        ):
            conn.execute(text(query), {"s": sync_id, "k": KEY}).scalar_one()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--churn", type=float, default=0.01)
    parser.add_argument("--warehouse-url", default=None)
    parser.add_argument(
        "--skip-gate", action="store_true", help="leave out the GX gate (it imports GX, ~5 s)"
    )
    args = parser.parse_args(argv)

    from adloop import local
    from adloop.audiences import sync
    from adloop.settings import MetaSettings, Settings

    _declare_audience()
    workdir = Path(tempfile.mkdtemp(prefix="adloop-bench-audience-"))
    warehouse_url = args.warehouse_url or f"sqlite:///{workdir / 'warehouse.db'}"
    figures: dict = {"members": args.members, "churn": args.churn, "warehouse": warehouse_url.split(":")[0]}

    started = time.perf_counter()
    adds, removes = _seed(warehouse_url, args.members, args.churn)
    figures["seed_seconds"] = round(time.perf_counter() - started, 1)

    with local.SandboxProcess(workdir / "sandbox.db") as sandbox:
        settings = Settings(
            warehouse_url=warehouse_url,
            meta=MetaSettings(
                access_token="EAAB-bench", graph_url=sandbox.meta_url, ad_account_ids=("act_1",)
            ),
        )
        run_id = "bench"
        started = time.perf_counter()
        built = sync.build_segment(warehouse_url, KEY, run_id, as_of=0, dry_run=False)
        figures["build_seconds"] = round(time.perf_counter() - started, 2)
        if not args.skip_gate:
            started = time.perf_counter()
            sync.gate_segment(warehouse_url, KEY, run_id)
            figures["gate_seconds"] = round(time.perf_counter() - started, 2)

        started = time.perf_counter()
        planned = sync.plan_sync(warehouse_url, KEY, run_id)
        figures["plan_seconds"] = round(time.perf_counter() - started, 3)
        figures["bare_set_difference_seconds"] = round(
            _bare_set_difference(warehouse_url, sync.sync_id_for(run_id, KEY)), 3
        )
        figures["plan_vs_bare"] = round(figures["plan_seconds"] / figures["bare_set_difference_seconds"], 2)

        started = time.perf_counter()
        applied = sync.apply_sync(settings, KEY, run_id)
        figures["apply_seconds"] = round(time.perf_counter() - started, 2)

    assert (planned["adds"], planned["removes"]) == (adds, removes), planned
    figures.update(
        segment_size=built["segment_size"],
        adds=planned["adds"],
        removes=planned["removes"],
        requests=applied["requests"],
        minimum_requests=math.ceil(adds / 10_000) + math.ceil(removes / 10_000),
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    )
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
