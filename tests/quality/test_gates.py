"""The reconciliation gates on SQLite and on the local PostgreSQL: good rows pass, bad rows fail loudly.

The first gate run in the session pays GX's import (~5 s); the warehouses are made once per
session and every test writes under its own run_id, so tests do not see each other's rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from adloop.quality.gate import Expect, GateFailed, Param, Suite, between, in_set, run_gate
from adloop.quality.suites import backfill_plan_suite, conversions_suite
from adloop.warehouse.db import connect, ensure_schema
from adloop.warehouse.schema import backfill_plan, dq_results, stripe_conversions

PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
WINDOW_START = 1_760_000_000
WINDOW_END = WINDOW_START + 86_400
CLEAR_EMAIL = "jane.doe@example.com"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="session")
def sqlite_engine(tmp_path_factory):
    engine = connect(f"sqlite:///{tmp_path_factory.mktemp('warehouse') / 'adloop.db'}")
    ensure_schema(engine)
    return engine


@pytest.fixture(scope="session")
def postgres_engine():
    schema = f"dq_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_URL)
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.skip(
            f"PostgreSQL at 127.0.0.1:5432 is unreachable ({type(exc).__name__}); start it to run these"
        )

    # The schema goes into the URL, so GX's own engine over the same URL sees the same tables.
    engine = connect(f"{PG_URL}?options=-csearch_path%3D{schema}")
    ensure_schema(engine)
    yield engine
    engine.dispose()
    with admin.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request):
    return request.getfixturevalue(f"{request.param}_engine")


@pytest.fixture
def run_id():
    return f"test_{uuid.uuid4().hex}"


def event_id(run_id: str, n: int) -> str:
    # stripe_conversions is keyed on (event_id, event_name) alone, so ids differ per test.
    return f"cs_test_{run_id[-12:]}_{n:04d}"


def conversion(run_id: str, n: int, **overrides) -> dict:
    row = {
        "event_id": event_id(run_id, n),
        "event_name": "Purchase",
        "object_type": "checkout.session",
        "customer_id": f"cus_{n:06d}",
        "livemode": True,
        "status": "complete",
        "payment_status": "paid",
        "event_time": WINDOW_START + 60 * n,
        "currency": "cad",
        "amount_minor": 4500,
        "value": 45,
        "amount_refunded_minor": 0,
        "action_source": "website",
        "event_source_url": "https://studio.example/checkout",
        "client_user_agent": "Mozilla/5.0",
        "client_ip_address": "203.0.113.7",
        "fbp": "fb.1.1700000000.123",
        "fbc": None,
        "ad_id": "120200000000001",
        "em": sha(f"customer{n}@example.com"),
        "ph": sha(f"1780555{n:04d}"),
        "fn": None,
        "ln": None,
        "ct": sha("edmonton"),
        "st": sha("ab"),
        "zp": None,
        "country": sha("ca"),
        "external_id": sha(f"cus_{n:06d}"),
        "hash_errors": None,
        "normalization_version": 1,
        "run_id": run_id,
        "extracted_at": datetime.now(UTC),
    }
    row.update(overrides)
    return row


def insert(engine, table, rows) -> None:
    with engine.begin() as conn:
        conn.execute(table.insert(), rows)


def conversions_params(run_id: str) -> dict:
    return {"run_id": run_id, "window_start_ts": WINDOW_START, "window_end_ts": WINDOW_END}


def dq_rows(engine, run_id: str) -> list[dict]:
    with engine.connect() as conn:
        return [
            dict(r._mapping) for r in conn.execute(sa.select(dq_results).where(dq_results.c.run_id == run_id))
        ]


def test_good_conversions_pass_and_are_recorded(engine, run_id):
    insert(engine, stripe_conversions, [conversion(run_id, n) for n in range(20)])

    result = run_gate(
        engine,
        conversions_suite(),
        params=conversions_params(run_id),
        run_id=run_id,
        dag_id="d",
        step="gate_conversions",
    )

    assert result.success, result.failed
    assert result.row_count == 20
    assert result.evaluated == len(conversions_suite().expectations)
    [row] = dq_rows(engine, run_id)
    assert row["success"] is True or row["success"] == 1
    assert row["suite"] == "stripe_conversions"
    assert row["step"] == "gate_conversions"
    assert row["row_count"] == 20
    assert json.loads(row["failed_expectations"]) == []
    assert not [v for v in sa.inspect(engine).get_view_names() if v.startswith("adloop_dq_")]


def test_bad_conversions_fail_with_every_reason_and_no_clear_email(engine, run_id, caplog):
    rows = [conversion(run_id, n) for n in range(10)]
    rows += [
        conversion(run_id, 10, em=CLEAR_EMAIL),
        conversion(run_id, 11, currency="CAD "),
        conversion(run_id, 12, currency=""),
        conversion(run_id, 13, value=-45),
        conversion(run_id, 14, client_user_agent=None),
        conversion(run_id, 15, fbc=f"fb.1.{CLEAR_EMAIL}"),
        conversion(run_id, 16, action_source="email", client_user_agent=None),  # fine: not a website event
    ]
    insert(engine, stripe_conversions, rows)

    with caplog.at_level(logging.DEBUG), pytest.raises(GateFailed) as failed:
        run_gate(
            engine,
            conversions_suite(),
            params=conversions_params(run_id),
            run_id=run_id,
            dag_id="stripe_capi_reconciliation",
            step="gate_conversions",
        )

    message = str(failed.value)
    assert message.startswith("gate stripe_conversions (gate_conversions) failed 5 of ")
    assert "em must match ^[0-9a-f]{64}$ — 1 of 17 rows do not" in message
    assert "currency must match ^[a-z]{3}$ — 2 of 17 rows do not" in message
    # Currency codes are not customer data, so samples are shown. PostgreSQL's varchar(3) drops
    # the trailing blank of "CAD ", SQLite keeps it.
    assert "(e.g. '" in message and "'CAD" in message
    assert "value must be >= 0 — 1 of 17 rows do not" in message
    assert (
        "client_user_agent must not be null where action_source = 'website' — 1 of 16 rows do not" in message
    )
    assert "fbc must not contain '@' — 1 of 17 rows do not" in message
    assert "action_source" not in message.replace("where action_source", "")

    [row] = dq_rows(engine, run_id)
    assert not row["success"]
    failures = json.loads(row["failed_expectations"])
    assert {(f["expectation"], f["column"]) for f in failures} == {
        ("expect_column_values_to_match_regex", "em"),
        ("expect_column_values_to_match_regex", "currency"),
        ("expect_column_values_to_be_between", "value"),
        ("expect_column_values_to_not_be_null", "client_user_agent"),
        ("expect_column_values_to_not_match_like_pattern", "fbc"),
    }
    assert failed.value.result.failed == failures

    for text in (message, json.dumps(row, default=str), caplog.text):
        assert CLEAR_EMAIL not in text
        assert "example.com" not in text


def test_event_outside_the_window_fails(engine, run_id):
    insert(engine, stripe_conversions, [conversion(run_id, 1), conversion(run_id, 2, event_time=WINDOW_END)])

    with pytest.raises(
        GateFailed, match=r"event_time must be >= :window_start_ts and < :window_end_ts — 1 of 2"
    ):
        run_gate(
            engine,
            conversions_suite(),
            params=conversions_params(run_id),
            run_id=run_id,
            dag_id=None,
            step="gate",
        )


def plan_row(run_id: str, n: int, decision: str = "send", **overrides) -> dict:
    row = {
        "run_id": run_id,
        "event_id": event_id(run_id, n),
        "event_name": "Purchase",
        "decision": decision,
        "reason": None,
        "expiring_soon": False,
        "event_time": WINDOW_START + 60 * n,
    }
    row.update(overrides)
    return row


def test_backfill_plan_gate(engine, run_id):
    conversions = [conversion(run_id, n) for n in range(8)]
    conversions[5].update(livemode=False)
    conversions[6].update(em=None, ph=None, external_id=None, fbp=None, fbc=None)
    insert(engine, stripe_conversions, conversions)
    good = [
        plan_row(run_id, 0),
        plan_row(run_id, 1, "already_sent"),
        plan_row(run_id, 2, "expired", event_time=WINDOW_START - 8 * 86_400),
        plan_row(run_id, 3, "excluded", reason="refunded"),
        plan_row(run_id, 5, "excluded", reason="test_mode"),
    ]
    insert(engine, backfill_plan, good)
    params = {"run_id": run_id, "min_sendable_ts": WINDOW_START - 7 * 86_400}

    result = run_gate(
        engine, backfill_plan_suite(), params=params, run_id=run_id, dag_id=None, step="gate_plan"
    )
    assert result.success and result.row_count == 5

    insert(
        engine,
        backfill_plan,
        [
            plan_row(run_id, 4, event_time=WINDOW_START - 7 * 86_400 - 1),  # one second past Meta's limit
            plan_row(run_id, 6),  # no customer key
            plan_row(run_id, 7, "excluded"),  # no reason
            plan_row(run_id, 8, "send", event_id="cs_test_missing"),  # no conversion behind it
        ],
    )
    with pytest.raises(GateFailed) as failed:
        run_gate(engine, backfill_plan_suite(), params=params, run_id=run_id, dag_id=None, step="gate_plan")

    message = str(failed.value)
    # The send row without a conversion also fails is_livemode, is_paid and has_positive_amount.
    assert "failed 7 of 9 expectations" in message
    assert "event_time must be >= :min_sendable_ts where decision = 'send' — 1 of 4 rows do not" in message
    assert "reason must not be null where decision = 'excluded' — 1 of 3 rows do not" in message
    assert "has_customer_key must be one of {1} where decision = 'send' — 2 of 4 rows do not" in message
    assert "has_conversion must be one of {1} where decision = 'send' — 1 of 4 rows do not" in message
    assert [r["success"] for r in dq_rows(engine, run_id)] in ([True, False], [1, 0])


def test_test_mode_and_unpaid_sends_fail(engine, run_id):
    insert(
        engine,
        stripe_conversions,
        [
            conversion(run_id, 0, livemode=False),
            conversion(run_id, 1, payment_status="unpaid", amount_minor=0),
        ],
    )
    insert(engine, backfill_plan, [plan_row(run_id, 0), plan_row(run_id, 1)])
    params = {"run_id": run_id, "min_sendable_ts": WINDOW_START}

    with pytest.raises(GateFailed) as failed:
        run_gate(engine, backfill_plan_suite(), params=params, run_id=run_id, dag_id=None, step="gate_plan")

    assert {f["column"] for f in failed.value.result.failed} == {
        "is_livemode",
        "is_paid",
        "has_positive_amount",
    }


def test_missing_param_is_refused_before_anything_runs(sqlite_engine, run_id):
    with pytest.raises(ValueError, match="window_end_ts"):
        run_gate(
            sqlite_engine,
            conversions_suite(),
            params={"run_id": run_id, "window_start_ts": WINDOW_START},
            run_id=run_id,
            dag_id=None,
            step="gate",
        )
    with pytest.raises(TypeError, match="run_id"):
        run_gate(
            sqlite_engine, conversions_suite(), params={"run_id": ["x"]}, run_id=run_id, dag_id=None, step="g"
        )
    assert dq_rows(sqlite_engine, run_id) == []


def test_customer_columns_can_never_show_samples():
    with pytest.raises(ValueError, match="customer data"):
        in_set("em", ["x"], samples=True)
    with pytest.raises(ValueError, match="customer data"):
        Expect("ExpectColumnValuesToBeUnique", ("external_id",), "external_id must be unique", samples=True)


def test_params_are_plain_values_not_sql(sqlite_engine, run_id):
    insert(sqlite_engine, stripe_conversions, [conversion(run_id, 0)])
    suite = Suite(
        name="injection",
        query="SELECT event_id, amount_minor FROM stripe_conversions WHERE run_id = :run_id",
        expectations=(between("amount_minor", Param("floor")),),
    )

    with pytest.raises(TypeError, match="letters, digits"):
        run_gate(
            sqlite_engine,
            suite,
            params={"run_id": f"{run_id}' OR '1'='1", "floor": 0},
            run_id=run_id,
            dag_id=None,
            step="gate",
        )

    # An Airflow run id, colons and all, binds as a value.
    airflow_run_id = "scheduled__2026-01-01T00:00:00+00:00"
    result = run_gate(
        sqlite_engine,
        suite,
        params={"run_id": airflow_run_id, "floor": 0},
        run_id=run_id,
        dag_id=None,
        step="g",
    )
    assert result.success and result.row_count == 0


def test_dag_steps_return_the_result_for_xcom(sqlite_engine, run_id):
    from adloop.quality import gates
    from adloop.stripe_source import Window

    insert(sqlite_engine, stripe_conversions, [conversion(run_id, n) for n in range(3)])
    url = sqlite_engine.url.render_as_string(hide_password=False)

    gated = gates.check_conversions(
        url, run_id, Window(WINDOW_START, WINDOW_END), dag_id="stripe_capi_reconciliation"
    )

    assert gated["success"] and gated["row_count"] == 3 and gated["step"] == "gate_conversions"
    assert gates.check_plan(url, run_id, WINDOW_START - 7 * 86_400)["row_count"] == 0
