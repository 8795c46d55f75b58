"""Alembic's entry point for the warehouse, on the connection `alembic_config` hands it.

adloop runs Alembic from `adloop.warehouse.migrations` (and `adloop warehouse ...`), never from an
alembic.ini, so there is no URL to read here and no offline (`--sql`) mode.
"""

from __future__ import annotations

from alembic import context

from adloop.warehouse.migrations import CONTEXT_OPTIONS
from adloop.warehouse.tables import metadata

if context.is_offline_mode():
    raise RuntimeError("adloop's warehouse migrations run against a database; there is no offline mode")

context.configure(connection=context.config.attributes["connection"], target_metadata=metadata, **CONTEXT_OPTIONS)
with context.begin_transaction():
    context.run_migrations()
