"""The reconciliation DAG's gate steps: one call per gated step, returning what goes to XCom.

Each returns the gate's result as a dict (counts only, no customer values), or raises
`GateFailed`, which the DAG turns into a task failure without retries.
"""

from __future__ import annotations

from dataclasses import asdict

from adloop.quality.gate import run_gate
from adloop.quality.suites import backfill_plan_suite, conversions_suite
from adloop.warehouse.db import connect


def check_conversions(warehouse_url: str, run_id: str, window, *, dag_id: str | None = None) -> dict:
    """Gate the conversions extracted by `run_id` from Stripe over `window` ([start, end) unix seconds)."""
    params = {"run_id": run_id, "window_start_ts": int(window.start), "window_end_ts": int(window.end)}
    result = run_gate(
        connect(warehouse_url),
        conversions_suite(),
        params=params,
        run_id=run_id,
        dag_id=dag_id,
        step="gate_conversions",
    )
    return asdict(result)


def check_plan(warehouse_url: str, run_id: str, min_sendable_ts: int, *, dag_id: str | None = None) -> dict:
    """Gate the backfill plan of `run_id`; `min_sendable_ts` is Meta's 7-day limit as of plan time."""
    params = {"run_id": run_id, "min_sendable_ts": int(min_sendable_ts)}
    result = run_gate(
        connect(warehouse_url),
        backfill_plan_suite(),
        params=params,
        run_id=run_id,
        dag_id=dag_id,
        step="gate_plan",
    )
    return asdict(result)
