"""Run the three benchmarks of BENCHMARKS.md and print their figures as a table and JSON lines.

    .venv/bin/python benchmarks/run_all.py                      # the issue's sizes (make bench)
    .venv/bin/python benchmarks/run_all.py --hash-rows 100000 --plan-rows 100000 --plan-sizes '' \\
        --capi-sizes 999,1000,1001 --repeat 1                   # a quick look

Each benchmark runs in its own process, one after the other, so none competes with another for
the machine; the ratios inside each are measured side by side in that process. The PostgreSQL one
needs the server at ADLOOP_BENCH_PG (default postgresql+psycopg2://postgres@127.0.0.1:5432/test)
and creates and drops its own database.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(script: str, *args: str) -> list[dict]:
    """Run one benchmark, echoing its output, and return its JSON lines."""
    command = [sys.executable, str(HERE / script), *args]
    print(f"$ {' '.join(['.venv/bin/python', f'benchmarks/{script}', *args])}", flush=True)
    process = subprocess.run(command, check=True, capture_output=True, text=True)
    results = []
    for line in process.stdout.splitlines():
        if line.startswith("{"):
            results.append(json.loads(line))
        else:
            print(f"  {line}", flush=True)
    return results


def table(hashing: list[dict], plans: list[dict], capi: list[dict]) -> str:
    rows = [("benchmark", "size", "figure", "aim", "met")]
    for r in hashing:
        rows.append(
            (
                "hashing",
                f"{r['rows']:,} contacts",
                f"{r['adloop_vs_sdk']:.2f}x the SDK",
                ">= 5x",
                "yes" if r["adloop_vs_sdk"] >= 5 else "no",
            )
        )
        rows.append(
            (
                "hashing",
                f"{r['rows']:,} contacts",
                f"{r['adloop_vs_hashlib']:.2f}x bare hashlib",
                ">= 0.5x",
                "yes" if r["adloop_vs_hashlib"] >= 0.5 else "no",
            )
        )
    for r in plans:
        rows.append(
            (
                "backfill plan",
                f"{r['rows']:,} conversions",
                f"{r['plan_vs_bare']:.2f}x the anti-join",
                "<= 1.5x",
                "yes" if r["plan_vs_bare"] <= 1.5 else "no",
            )
        )
        rows.append(
            (
                "backfill plan",
                f"{r['rows']:,} conversions",
                f"{r['peak_rss_mb']:.0f} MB peak RSS",
                "< 500 MB",
                "yes" if r["peak_rss_mb"] < 500 else "no",
            )
        )
    for r in capi:
        rows.append(
            (
                "CAPI requests",
                f"{r['events']:,} events",
                f"{r['requests_send_backfill']} sent / {r['requests_sandbox']} received / "
                f"{r['requests_minimum']} minimum",
                "equal",
                "yes" if r["requests_equal_minimum"] else "no",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--hash-rows", type=int, default=1_000_000, help="contacts to hash (default 1,000,000)"
    )
    parser.add_argument(
        "--sdk-rows", type=int, default=200_000, help="contacts for the SDK's run (default 200,000)"
    )
    parser.add_argument(
        "--plan-rows", type=int, default=1_000_000, help="conversions to plan (default 1,000,000)"
    )
    parser.add_argument(
        "--plan-sizes", default="250000,500000", help="smaller plan sizes, for memory (default %(default)s)"
    )
    parser.add_argument(
        "--capi-sizes", default="999,1000,1001,2500,25000", help="events to send (default %(default)s)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of each timed step; the fastest counts")
    parser.add_argument("--only", choices=("hashing", "plan", "capi"), action="append", help="run only these")
    args = parser.parse_args()
    only = set(args.only or ("hashing", "plan", "capi"))

    hashing = plans = capi = []
    if "hashing" in only:
        hashing = run(
            "bench_hashing.py",
            "--rows",
            str(args.hash_rows),
            "--sdk-rows",
            str(args.sdk_rows),
            "--repeat",
            str(args.repeat),
        )
    if "plan" in only:
        plans = run(
            "bench_backfill_plan.py",
            "--rows",
            str(args.plan_rows),
            "--sizes",
            args.plan_sizes,
            "--repeat",
            str(args.repeat),
        )
    if "capi" in only:
        capi = run("bench_capi_requests.py", "--sizes", args.capi_sizes)

    print()
    print(table(hashing, plans, capi))
    print()
    for result in [*hashing, *plans, *capi]:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
