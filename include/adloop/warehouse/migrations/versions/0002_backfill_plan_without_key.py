"""backfill_plan loses its primary key and send index, and gets a BRIN index on run_id.

A run's plan is appended once and read or deleted whole by run_id; maintaining a primary key and
a partial index row by row cost more than writing the plan (BENCHMARKS.md, section 2). Rows stay
unique because plan_backfill locks the run's record and replaces its plan in one transaction.
SQLite cannot drop a primary key in place, so there the table is rebuilt with its rows.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_COLUMNS = "run_id, event_id, event_name, decision, reason, expiring_soon, event_time"


def _plan_table(name: str, *, keyed: bool) -> None:
    op.create_table(
        name,
        sa.Column("run_id", sa.String(255), primary_key=keyed, nullable=False),
        sa.Column("event_id", sa.String(255), primary_key=keyed, nullable=False),
        sa.Column("event_name", sa.String(32), primary_key=keyed, nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64)),
        sa.Column("expiring_soon", sa.Boolean, nullable=False),
        sa.Column("event_time", sa.BigInteger, nullable=False),
    )


def _rebuild(*, keyed: bool) -> None:
    _plan_table("backfill_plan_rebuilt", keyed=keyed)
    op.execute(f"INSERT INTO backfill_plan_rebuilt ({_COLUMNS}) SELECT {_COLUMNS} FROM backfill_plan")
    op.drop_table("backfill_plan")
    op.rename_table("backfill_plan_rebuilt", "backfill_plan")


def upgrade() -> None:
    op.drop_index("ix_backfill_plan_to_send", table_name="backfill_plan")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("backfill_plan_pkey", "backfill_plan", type_="primary")
    else:
        _rebuild(keyed=False)
    op.create_index("ix_backfill_plan_run_id", "backfill_plan", ["run_id"], postgresql_using="brin")


def downgrade() -> None:
    op.drop_index("ix_backfill_plan_run_id", table_name="backfill_plan")
    if op.get_bind().dialect.name == "postgresql":
        op.create_primary_key("backfill_plan_pkey", "backfill_plan", ["run_id", "event_id", "event_name"])
    else:
        _rebuild(keyed=True)
    op.create_index(
        "ix_backfill_plan_to_send",
        "backfill_plan",
        ["run_id", "event_time"],
        postgresql_where=sa.text("decision = 'send'"),
        sqlite_where=sa.text("decision = 'send'"),
    )
