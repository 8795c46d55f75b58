"""Every warehouse table, gathered so `ensure_schema` creates them all.

Each capability keeps its tables in its own module on the shared `metadata`; importing a module
here registers its tables.
"""

from __future__ import annotations

from adloop.warehouse import (
    audience_schema,  # noqa: F401  app data, audiences, sync runs
    insights_schema,  # noqa: F401  insights, ROAS, recommendations
    schema,  # noqa: F401  conversions, ledger, runs, gates
    webhook_schema,  # noqa: F401  webhook events, app conversions
)

metadata = schema.metadata
