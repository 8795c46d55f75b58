"""One audience's sync against the sandbox, on SQLite and PostgreSQL: plan, apply, converge, guard."""

from __future__ import annotations

import json
import random
import sqlite3

import pytest
from helpers import AS_OF, audience_on_meta, control, emails_on_meta, land_studio, meta_settings
from sqlalchemy import delete, func, select

from adloop.audiences import definitions, sync
from adloop.audiences.sync import SegmentGateFailed
from adloop.settings import Settings
from adloop.warehouse import connect, upsert_rows
from adloop.warehouse.audience_schema import (
    MEMBER_KEYS,
    audience_candidates,
    audience_members,
    audience_plan,
    audience_sync_runs,
)
from adloop.warehouse.schema import consent_opt_outs, quarantine

PAYING = "paying_customers_180d"


def settings_for(warehouse_url, sandbox, **meta) -> Settings:
    return Settings(warehouse_url=warehouse_url, meta=meta_settings(sandbox.meta_url, **meta))


def run_sync(settings, key, run_id, *, dry_run=False, mode="diff", allow_shrink=False, batch_rows=100, **kw):
    built = sync.build_segment(settings.warehouse_url, key, run_id, as_of=AS_OF, mode=mode, dry_run=dry_run)
    sync.gate_segment(settings.warehouse_url, key, run_id, allow_shrink=allow_shrink)
    planned = sync.plan_sync(settings.warehouse_url, key, run_id)
    applied = sync.apply_sync(settings, key, run_id, batch_rows=batch_rows, **kw)
    lookalikes = sync.create_lookalikes(settings, key, run_id)
    return {"built": built, "planned": planned, "applied": applied, "lookalikes": lookalikes}


def segment_emails(warehouse_url, run_id, key=PAYING) -> list[str]:
    with connect(warehouse_url).connect() as conn:
        return sorted(
            conn.execute(
                select(audience_candidates.c.em).where(
                    audience_candidates.c.sync_id == sync.sync_id_for(run_id, key)
                )
            ).scalars()
        )


def sync_run(warehouse_url, run_id, key=PAYING) -> dict:
    with connect(warehouse_url).connect() as conn:
        return dict(
            conn.execute(
                select(audience_sync_runs).where(
                    audience_sync_runs.c.sync_id == sync.sync_id_for(run_id, key)
                )
            )
            .one()
            ._mapping
        )


def opt_out(warehouse_url, emails_hashed) -> None:
    from datetime import UTC, datetime

    with connect(warehouse_url).begin() as conn:
        upsert_rows(
            conn,
            consent_opt_outs,
            [
                {"key_type": "em", "key_value": h, "source": "test", "recorded_at": datetime.now(UTC)}
                for h in emails_hashed
            ],
            update=(),
        )


def meta_emails(sandbox, key=PAYING) -> list[str]:
    audience = audience_on_meta(sandbox.meta_url, definitions.get(key).name)
    return emails_on_meta(sandbox.meta_url, audience["id"]) if audience else []


def no_row_twice_in_a_session(sandbox, key=PAYING) -> bool:
    audience = audience_on_meta(sandbox.meta_url, definitions.get(key).name)
    sessions = control(sandbox.meta_url, f"audiences/{audience['id']}/sessions")["sessions"]
    return all(s["rows_received_more_than_once"] == 0 for s in sessions)


@pytest.fixture
def studio(warehouse_url, tmp_path):
    business, app_db = land_studio(warehouse_url, tmp_path)
    return business, app_db


# --- plan --------------------------------------------------------------------------------------


def _hash(i: int) -> str:
    import hashlib

    return hashlib.sha256(str(i).encode()).hexdigest()


@pytest.mark.parametrize("size", [10, 30_000])
def test_plan_is_exactly_the_two_set_differences(warehouse_url, size):
    from datetime import UTC, datetime

    rng = random.Random(size)
    members = set(rng.sample(range(size * 3), size))
    segment = set(rng.sample(sorted(members), size * 9 // 10)) | set(
        range(size * 3, size * 3 + size // 7 + 1)
    )
    run_id, key = "plan_test", PAYING
    sync_id = sync.sync_id_for(run_id, key)
    now = datetime.now(UTC)
    with connect(warehouse_url).begin() as conn:
        upsert_rows(
            conn,
            audience_sync_runs,
            [
                {
                    "sync_id": sync_id,
                    "run_id": run_id,
                    "audience_key": key,
                    "mode": "diff",
                    "dry_run": True,
                    "status": "built",
                }
            ],
        )
        for start in range(0, size * 2, 5000):
            upsert_rows(
                conn,
                audience_members,
                [
                    {
                        "audience_key": key,
                        "member_key": _hash(i),
                        "em": _hash(i),
                        "sync_id": "old",
                        "added_at": now,
                    }
                    for i in sorted(members)[start : start + 5000]
                ],
            )
            upsert_rows(
                conn,
                audience_candidates,
                [
                    {"sync_id": sync_id, "member_key": _hash(i), "audience_key": key, "em": _hash(i)}
                    for i in sorted(segment)[start : start + 5000]
                ],
            )

    planned = sync.plan_sync(warehouse_url, key, run_id)

    with connect(warehouse_url).connect() as conn:
        plan = {
            action: set(
                conn.execute(
                    select(audience_plan.c.member_key).where(
                        audience_plan.c.sync_id == sync_id, audience_plan.c.action == action
                    )
                ).scalars()
            )
            for action in ("add", "remove")
        }
    assert plan["add"] == {_hash(i) for i in segment - members}
    assert plan["remove"] == {_hash(i) for i in members - segment}
    assert (planned["adds"], planned["removes"]) == (len(segment - members), len(members - segment))


# --- through the sandbox --------------------------------------------------------------------------


def test_dry_run_records_the_plan_and_sends_nothing(warehouse_url, studio, sandbox):
    settings = settings_for(warehouse_url, sandbox)
    result = run_sync(settings, PAYING, "dry", dry_run=True)

    assert result["planned"]["adds"] == result["built"]["segment_size"] > 100
    assert result["applied"] == {"dry_run": True, "requests": 0, "sent_adds": 0, "sent_removes": 0}
    assert control(sandbox.meta_url, "audiences")["audiences"] == []
    assert control(sandbox.meta_url, "audiences/requests")["requests"] == []
    run = sync_run(warehouse_url, "dry")
    assert run["status"] == "dry_run" and run["planned_adds"] == result["planned"]["adds"]


def test_sync_matches_the_segment_then_follows_its_changes(warehouse_url, studio, sandbox):
    business, _ = studio
    settings = settings_for(warehouse_url, sandbox)
    first = run_sync(settings, PAYING, "night1")

    assert first["built"]["opted_out"] > 0  # the generated studio has opt-outs among its customers
    assert meta_emails(sandbox) == segment_emails(warehouse_url, "night1")
    assert first["applied"]["requests"] == -(-first["planned"]["adds"] // 100)  # full batches only
    assert first["lookalikes"] == {"created": 1, "existing": 0, "skipped": 0}
    run = sync_run(warehouse_url, "night1")
    assert run["status"] == "synced" and run["num_received"] == first["planned"]["adds"]
    assert run["num_invalid_entries"] == 0

    # Nothing changed: nothing is sent, and the Lookalike is not made again.
    second = run_sync(settings, PAYING, "night2")
    assert second["applied"]["requests"] == 0 and second["lookalikes"]["existing"] == 1

    # Three people opt out: the next sync removes exactly them.
    leaving = segment_emails(warehouse_url, "night2")[:3]
    opt_out(warehouse_url, leaving)
    third = run_sync(settings, PAYING, "night3")
    assert (third["planned"]["adds"], third["planned"]["removes"]) == (0, 3)
    assert meta_emails(sandbox) == segment_emails(warehouse_url, "night3")
    assert not set(leaving) & set(meta_emails(sandbox))
    lookalikes = [
        a for a in control(sandbox.meta_url, "audiences")["audiences"] if a["subtype"] == "LOOKALIKE"
    ]
    assert len(lookalikes) == 1 and lookalikes[0]["lookalike_spec"]["country"] == "CA"


def test_replace_mode_swaps_the_whole_audience(warehouse_url, studio, sandbox):
    settings = settings_for(warehouse_url, sandbox)
    run_sync(settings, PAYING, "night1")
    opt_out(warehouse_url, segment_emails(warehouse_url, "night1")[:10])

    result = run_sync(settings, PAYING, "replace1", mode="replace")

    assert meta_emails(sandbox) == segment_emails(warehouse_url, "replace1")
    requests = [
        r for r in control(sandbox.meta_url, "audiences/requests")["requests"] if r["operation"] == "replace"
    ]
    assert [r["batch_seq"] for r in requests] == list(range(1, len(requests) + 1))
    assert result["planned"]["removes"] == 10
    with connect(warehouse_url).connect() as conn:
        members = conn.execute(select(func.count()).select_from(audience_members)).scalar_one()
    assert members == len(meta_emails(sandbox))


def test_a_sync_broken_off_half_way_converges_on_retry_and_on_the_next_run(warehouse_url, studio, sandbox):
    settings = settings_for(warehouse_url, sandbox)

    def break_after_two(batch_seq):
        if batch_seq == 2:
            sandbox.meta.faults.add(kind="http_503", count=20, path_contains="/users")

    with pytest.raises(Exception, match="failed 3 times"):
        run_sync(settings, PAYING, "broken", batch_rows=40, on_batch=break_after_two)
    partial = meta_emails(sandbox)
    assert len(partial) == 80
    with connect(warehouse_url).connect() as conn:
        recorded = sorted(conn.execute(select(audience_members.c.em)).scalars())
    assert recorded == partial  # the warehouse knows exactly what Meta took

    # The task's retry sends only what is still pending, in a new session.
    sandbox.meta.faults.clear()
    sync.apply_sync(settings, PAYING, "broken", batch_rows=40)
    assert meta_emails(sandbox) == segment_emails(warehouse_url, "broken")
    assert no_row_twice_in_a_session(sandbox)

    # A later run finds nothing to do.
    assert run_sync(settings, PAYING, "after")["applied"]["requests"] == 0


def test_rows_without_email_or_phone_are_quarantined_with_reasons(warehouse_url, studio, sandbox, tmp_path):
    from adloop.audiences import app_source

    _, app_db = studio
    with sqlite3.connect(app_db) as conn:
        conn.execute(
            "INSERT INTO users VALUES ('u_bad', 'not-an-email', NULL, 'Ann', 'Lee', NULL, NULL, NULL, "
            "'CA', NULL, 1700000000)"
        )
        conn.execute(
            "INSERT INTO bookings VALUES ('BKG-bad', 'u_bad', 'paid', ?, 2500, 'cad')", (AS_OF - 86400,)
        )
    app_source.extract_app_data(warehouse_url, f"sqlite:///{app_db}", default_country="CA")

    built = sync.build_segment(warehouse_url, PAYING, "q", as_of=AS_OF, dry_run=True)

    assert built["quarantined"] == 1
    with connect(warehouse_url).connect() as conn:
        row = conn.execute(select(quarantine).where(quarantine.c.record_id == "u_bad")).one()
    assert "no usable email or phone" in row.reason and "em: not an email address" in row.reason
    assert "not-an-email" not in row.reason


def test_rows_meta_counts_invalid_are_quarantined_and_not_recorded_as_members(warehouse_url, studio, sandbox):
    settings = settings_for(warehouse_url, sandbox)
    sync.build_segment(warehouse_url, PAYING, "bad", as_of=AS_OF, dry_run=False)
    sync_id = sync.sync_id_for("bad", PAYING)
    with connect(warehouse_url).begin() as conn:  # a bug that let an unhashed value through the gate
        first = conn.execute(
            select(audience_candidates.c.member_key).where(audience_candidates.c.sync_id == sync_id).limit(1)
        ).scalar_one()
        conn.execute(
            audience_candidates.update()
            .where(audience_candidates.c.member_key == first)
            .values(ph="7805550123")
        )
    sync.plan_sync(warehouse_url, PAYING, "bad")
    applied = sync.apply_sync(settings, PAYING, "bad")

    assert applied["num_invalid_entries"] == 1
    run = sync_run(warehouse_url, "bad")
    assert json.loads(run["invalid_entry_samples"]) == ["<not a SHA-256 hash: 10 characters>"]
    with connect(warehouse_url).connect() as conn:
        assert (
            conn.execute(select(audience_members).where(audience_members.c.member_key == first)).first()
            is None
        )
        reason = conn.execute(select(quarantine.c.reason).where(quarantine.c.record_id == first)).scalar_one()
    assert "invalid entry" in reason


def test_the_gate_refuses_clear_pii(warehouse_url, studio):
    sync.build_segment(warehouse_url, PAYING, "pii", as_of=AS_OF, dry_run=True)
    with connect(warehouse_url).begin() as conn:
        conn.execute(
            audience_candidates.update()
            .where(audience_candidates.c.sync_id == sync.sync_id_for("pii", PAYING))
            .values({"fn": "Zoë"})
        )
    with pytest.raises(SegmentGateFailed, match="fn must match"):
        sync.gate_segment(warehouse_url, PAYING, "pii")


def test_the_shrink_guard_blocks_a_big_drop_unless_the_run_allows_it(warehouse_url, studio, sandbox):
    settings = settings_for(warehouse_url, sandbox)
    run_sync(settings, PAYING, "night1")
    emails = segment_emails(warehouse_url, "night1")
    opt_out(warehouse_url, emails[: len(emails) // 3])

    with pytest.raises(SegmentGateFailed, match="would shrink from .* allow_shrink"):
        run_sync(settings, PAYING, "night2")
    assert sync_run(warehouse_url, "night2")["status"] == "failed"
    assert len(meta_emails(sandbox)) == len(emails)  # nothing was sent

    run_sync(settings, PAYING, "night3", allow_shrink=True)
    assert meta_emails(sandbox) == segment_emails(warehouse_url, "night3")


def test_too_small_an_audience_is_stopped_by_the_gate(warehouse_url, studio):
    with connect(warehouse_url).begin() as conn:
        conn.execute(delete(audience_members))
    sync.build_segment(warehouse_url, "leads_never_bought", "small", as_of=AS_OF, dry_run=True)
    with pytest.raises(SegmentGateFailed, match="needs at least 100"):
        sync.gate_segment(warehouse_url, "leads_never_bought", "small")


def test_every_declared_segment_runs(warehouse_url, studio):
    for audience in definitions.AUDIENCES:
        built = sync.build_segment(warehouse_url, audience.key, "all", as_of=AS_OF, dry_run=True)
        assert built["segment_size"] > 0, audience.key
    assert MEMBER_KEYS[0] == "em"
