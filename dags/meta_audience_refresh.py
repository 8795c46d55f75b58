"""
### Refresh Meta Custom Audiences and Lookalikes

Keeps every audience declared in `include/adloop/audiences/definitions.py` in step with the
business: paying customers of the last 180 days (with their Canadian 1% Lookalike), active
members, one-time bookers who went quiet for 60 days, and leads who never bought.

**Manual runs**: pick the audiences, pick how Meta is updated, and keep *Dry run* on to see how
many people would be added and removed (in the `plan_sync` task's log and in
`audience_sync_runs`) before running it for real. Scheduled runs always sync.

**Steps**: `extract_app_data` (the app's users, bookings and memberships, hashed at extraction),
then one `refresh_audience` group per audience, in parallel, each on its own: `build_segment`
(the audience's SQL, minus opt-outs) → `gate_segment` (Great Expectations: hashed keys only, no
clear PII, big enough for its use, no shrink past the allowed share) → `plan_sync` (the adds and
removes against what Meta has) → `apply_sync` (batches of up to 10,000 in one session, or a
whole `usersreplace`) → `create_lookalikes`.

**Needs**: Connections `meta_default` (access token; extra `ad_account_ids`), `warehouse_default`
(SQLAlchemy URL), and `app_db` (the app's database: extra `{"url": ...}`, or a postgres / sqlite
Connection; without it the segments use what the warehouse already has); optionally
`adloop_alerts`, where a failed task's alert (what failed, what to do) is sent.

**Changes**: custom audiences and Lookalikes on the Meta ad account (created when missing, found
by name, never duplicated); tables `app_users`, `app_bookings`, `app_memberships`,
`meta_audiences`, `audience_candidates`, `audience_plan`, `audience_members`,
`audience_sync_runs`, `quarantine`, `dq_results`.

**Known limitations**: Meta takes up to 24 hours to show changes; the first sync of a large
audience goes out in one run of many requests. A replace that fails half way leaves Meta's
audience as what was uploaded once the session times out (90 minutes), and blocks edits until
then; the next run converges. A Lookalike is created once and never resized or deleted here.
"""

from __future__ import annotations

import datetime as dt

import pendulum
from airflow.sdk import Param, dag, get_current_context, task, task_group
from airflow.sdk.exceptions import AirflowFailException

from adloop.audiences.definitions import AUDIENCES

DAG_ID = "meta_audience_refresh"
AUDIENCE_KEYS = [a.key for a in AUDIENCES]


def _run() -> dict:
    """What every task needs: the run id, the moment the segments are taken at, and the run's choices."""
    ctx = get_current_context()
    params = ctx["params"]
    as_of = ctx.get("data_interval_end") or ctx["dag_run"].run_after
    manual = str(ctx["dag_run"].run_type).lower().endswith("manual")
    return {
        "run_id": ctx["run_id"],
        "as_of": int(as_of.timestamp()),
        "mode": params.get("mode") or "diff",
        # The nightly schedule always syncs; a dry run is something a person asks for.
        "dry_run": bool(params.get("dry_run")) and manual,
        "allow_shrink": bool(params.get("allow_shrink")),
    }


def _label(audience_key: str) -> None:
    # Shown as the mapped group's name in the UI instead of an index (see map_index_template).
    get_current_context()["audience_key"] = audience_key


def _no_retry(call, *args, **kwargs):
    """Run a step; failures a retry cannot fix (a failed gate, a refusal from Meta) fail at once."""
    from adloop.meta.audiences import AudienceApiError
    from adloop.quality.gate import GateFailed

    try:
        return call(*args, **kwargs)
    except (GateFailed, AudienceApiError) as exc:
        raise AirflowFailException(str(exc)) from exc


def _alert_on_failure(context) -> None:
    """Tell the engineer what failed and what to do (README, "Alerts"); loads nothing until a task fails."""
    from adloop_hooks import alert_on_failure

    alert_on_failure(context)


@dag(
    dag_id=DAG_ID,
    schedule="0 5 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="America/Edmonton"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["adloop", "audiences"],
    default_args={
        "owner": "marketing",
        "retries": 2,
        "retry_delay": dt.timedelta(minutes=2),
        "on_failure_callback": _alert_on_failure,
    },
    params={
        "audiences": Param(
            AUDIENCE_KEYS,
            type="array",
            items={"type": "string", "enum": AUDIENCE_KEYS},
            minItems=1,
            uniqueItems=True,
            examples=AUDIENCE_KEYS,
            values_display={a.key: a.form_title for a in AUDIENCES},
            title="Audiences to refresh",
            description="Pick one or more. Each audience refreshes on its own: if one fails, the others "
            "still go through.",
        ),
        "mode": Param(
            "diff",
            type="string",
            enum=["diff", "replace"],
            values_display={
                "diff": "Add and remove only the people who changed (recommended)",
                "replace": "Replace everyone in the audience at once",
            },
            title="How to update Meta",
            description="Both end with the same people in the audience. Replacing does not restart the "
            "learning phase of ad sets that use it, but takes longer and blocks other changes while it runs.",
        ),
        "dry_run": Param(
            True,
            type="boolean",
            title="Dry run: only show what would change",
            description="On: count who would be added and removed and record it, without sending anything "
            "to Meta. Turn it off to update the audiences for real.",
        ),
        "allow_shrink": Param(
            False,
            type="boolean",
            title="Allow an audience to shrink a lot",
            description="A sync stops when an audience would lose more than its allowed share of people "
            "(20% unless set otherwise), because that is usually a data problem. Turn this on if the drop "
            "is expected.",
        ),
    },
)
def meta_audience_refresh():
    @task
    def extract_app_data() -> dict:
        from adloop.audiences import app_source
        from adloop_hooks import adloop_settings, warehouse_url

        settings = adloop_settings(stripe=False, meta=False)
        try:
            conn = _app_db_connection()
        except Exception as exc:  # a missing Connection: the segments run on what was landed before
            return {"skipped": f"no app_db Connection ({type(exc).__name__})"}
        extra = conn.extra_dejson or {}
        return app_source.extract_app_data(
            settings.warehouse_url,
            warehouse_url(conn),
            default_country=settings.default_country,
            queries=extra.get("queries"),
        )

    @task
    def select_audiences(extracted: dict) -> list[str]:
        chosen = get_current_context()["params"].get("audiences") or AUDIENCE_KEYS
        unknown = sorted(set(chosen) - set(AUDIENCE_KEYS))
        if unknown:
            raise AirflowFailException(f"unknown audiences {unknown}; declared: {', '.join(AUDIENCE_KEYS)}")
        return [key for key in AUDIENCE_KEYS if key in chosen]

    @task_group
    def refresh_audience(audience_key: str):
        @task(map_index_template="{{ audience_key }}")
        def build_segment(audience_key: str) -> dict:
            from adloop.audiences import sync
            from adloop_hooks import adloop_settings

            _label(audience_key)
            run = _run()
            return sync.build_segment(
                adloop_settings(stripe=False, meta=False).warehouse_url,
                audience_key,
                run["run_id"],
                as_of=run["as_of"],
                mode=run["mode"],
                dry_run=run["dry_run"],
            )

        @task(map_index_template="{{ audience_key }}")
        def gate_segment(audience_key: str, built: dict) -> dict:
            from adloop.audiences import sync
            from adloop_hooks import adloop_settings

            _label(audience_key)
            run = _run()
            return _no_retry(
                sync.gate_segment,
                adloop_settings(stripe=False, meta=False).warehouse_url,
                audience_key,
                run["run_id"],
                allow_shrink=run["allow_shrink"],
                dag_id=DAG_ID,
            )

        @task(map_index_template="{{ audience_key }}")
        def plan_sync(audience_key: str, gated: dict) -> dict:
            from adloop.audiences import sync
            from adloop_hooks import adloop_settings

            _label(audience_key)
            return sync.plan_sync(
                adloop_settings(stripe=False, meta=False).warehouse_url, audience_key, _run()["run_id"]
            )

        @task(map_index_template="{{ audience_key }}")
        def apply_sync(audience_key: str, planned: dict) -> dict:
            from adloop.audiences import sync
            from adloop_hooks import adloop_settings

            _label(audience_key)
            settings = adloop_settings(stripe=False)
            return _no_retry(
                sync.apply_sync,
                settings,
                audience_key,
                _run()["run_id"],
                batch_rows=settings.meta.audience_batch_rows,
            )

        @task(map_index_template="{{ audience_key }}")
        def create_lookalikes(audience_key: str, applied: dict) -> dict:
            from adloop.audiences import sync
            from adloop_hooks import adloop_settings

            _label(audience_key)
            return _no_retry(
                sync.create_lookalikes, adloop_settings(stripe=False), audience_key, _run()["run_id"]
            )

        built = build_segment(audience_key)
        planned = plan_sync(audience_key, gate_segment(audience_key, built))
        create_lookalikes(audience_key, apply_sync(audience_key, planned))

    refresh_audience.expand(audience_key=select_audiences(extract_app_data()))


def _app_db_connection():
    from airflow.sdk import BaseHook

    return BaseHook.get_connection("app_db")


meta_audience_refresh()
