"""Data-quality gates: validate the rows of a warehouse query with GX Core before an irreversible step.

A gate is declared as a `Suite`: a name, one SQL SELECT with bound `:params`, and a list of
expectations built with the small helpers below (`not_null`, `in_set`, `matches`, `lacks`,
`between`, `unique`). `run_gate` validates the query's rows where they live, records the
outcome in `dq_results`, and raises `GateFailed` when any expectation fails, so the task stops
before anything is sent to Meta.

How GX is used: GX Core's SQL data source runs over the same SQLAlchemy URL as the warehouse.
The suite's query, with its params bound, becomes a short-lived view that GX validates as a table
asset, so every expectation is an aggregate query in SQLite or PostgreSQL and no row is pulled
into Python: memory stays flat however many rows the query returns. (A GX query asset would be
the obvious choice, but GX reads its column names by running the bare query, which psycopg2
buffers whole.) This path was checked with SQLAlchemy 2.1.9 on both dialects; regex checks on
SQLite use the REGEXP function that SQLAlchemy's pysqlite dialect registers. There is no pandas
fallback. GX is imported on the first gate run only (the import takes about 5 s); its ephemeral
context and one data source per warehouse URL are kept for the life of the process.

Customer data: what a gate reports is counts. Sample values are reported only for expectations
declared with `samples=True`, which is refused for the hashed customer columns; a "hash" column
that fails its check may hold a clear email, and that value must not reach a log, an exception
or `dq_results`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from adloop.warehouse.schema import dq_results

log = logging.getLogger(__name__)

# Hashed customer data (Meta's user_data keys). Values of these never appear in a gate's output.
CUSTOMER_DATA_COLUMNS = frozenset({"em", "ph", "fn", "ln", "ct", "st", "zp", "country", "external_id"})

SAMPLE_LIMIT = 5


@dataclass(frozen=True)
class Param:
    """A value taken from the gate run's `params` (e.g. the window bounds of the run)."""

    name: str

    def __str__(self) -> str:
        return f":{self.name}"


@dataclass(frozen=True)
class Expect:
    """One declared expectation. Build it with the helpers below, not by hand."""

    gx_class: str  # class name in great_expectations.expectations
    columns: tuple[str, ...]
    says: str  # what must hold, in words: "currency must match ^[a-z]{3}$"
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    where: tuple[str, Any] | None = None  # (column, value): only rows where column == value
    samples: bool = False  # may failing values be shown? Only for ids, codes and statuses.

    def __post_init__(self) -> None:
        if self.samples and CUSTOMER_DATA_COLUMNS.intersection(self.columns):
            raise ValueError(f"{self.says}: sample values of customer data columns must never be reported")


def _where_words(where: tuple[str, Any] | None) -> str:
    return "" if where is None else f" where {where[0]} = {where[1]!r}"


def not_null(column: str, *, where: tuple[str, Any] | None = None) -> Expect:
    return Expect(
        "ExpectColumnValuesToNotBeNull",
        (column,),
        f"{column} must not be null{_where_words(where)}",
        where=where,
    )


def in_set(
    column: str, values: Sequence[Any], *, where: tuple[str, Any] | None = None, samples: bool = False
) -> Expect:
    shown = ", ".join(str(v) for v in values)
    return Expect(
        "ExpectColumnValuesToBeInSet",
        (column,),
        f"{column} must be one of {{{shown}}}{_where_words(where)}",
        {"value_set": list(values)},
        where=where,
        samples=samples,
    )


def matches(column: str, regex: str, *, samples: bool = False) -> Expect:
    """Null or matching `regex` (GX skips nulls in column map expectations)."""
    return Expect(
        "ExpectColumnValuesToMatchRegex",
        (column,),
        f"{column} must match {regex}",
        {"regex": regex},
        samples=samples,
    )


def lacks(column: str, text: str) -> Expect:
    """Never contains `text`. Used to find clear PII, so failing values are never sampled."""
    return Expect(
        "ExpectColumnValuesToNotMatchLikePattern",
        (column,),
        f"{column} must not contain {text!r}",
        {"like_pattern": f"%{text}%"},
    )


def between(
    column: str,
    min_value: float | Param | None = None,
    max_value: float | Param | None = None,
    *,
    strict_max: bool = False,
    where: tuple[str, Any] | None = None,
    samples: bool = False,
) -> Expect:
    bounds = []
    if min_value is not None:
        bounds.append(f">= {min_value}")
    if max_value is not None:
        bounds.append(f"{'<' if strict_max else '<='} {max_value}")
    return Expect(
        "ExpectColumnValuesToBeBetween",
        (column,),
        f"{column} must be {' and '.join(bounds)}{_where_words(where)}",
        {"min_value": min_value, "max_value": max_value, "strict_max": strict_max},
        where=where,
        samples=samples,
    )


def unique(*columns: str, samples: bool = False) -> Expect:
    if len(columns) == 1:
        return Expect(
            "ExpectColumnValuesToBeUnique", columns, f"{columns[0]} must be unique", samples=samples
        )
    return Expect(
        "ExpectCompoundColumnsToBeUnique",
        tuple(columns),
        f"({', '.join(columns)}) must be unique",
        {"column_list": list(columns)},
        samples=samples,
    )


@dataclass(frozen=True)
class Suite:
    """What one gate checks: the rows of `query` (a SELECT with bound `:params`) against `expectations`."""

    name: str
    query: str
    expectations: tuple[Expect, ...]

    def __post_init__(self) -> None:
        # The name goes into the name of a view (63 characters at most in PostgreSQL).
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", self.name):
            raise ValueError(f"suite name {self.name!r} must be lowercase snake_case, 40 characters at most")
        if not self.query.lstrip().upper().startswith("SELECT"):
            raise ValueError(f"suite {self.name}: the query must be a SELECT")
        object.__setattr__(self, "expectations", tuple(self.expectations))


@dataclass(frozen=True)
class GateResult:
    suite: str
    step: str
    success: bool
    evaluated: int
    row_count: int
    failed: list[dict[str, Any]]


class GateFailed(Exception):
    """The data did not pass a gate. Bad data does not fix itself: do not retry, fix the input."""

    def __init__(self, result: GateResult):
        self.result = result
        reasons = "; ".join(_describe_failure(f) for f in result.failed)
        super().__init__(
            f"gate {result.suite} ({result.step}) failed {len(result.failed)} of {result.evaluated} "
            f"expectations: {reasons}"
        )


def run_gate(
    engine: Engine, suite: Suite, *, params: dict, run_id: str, dag_id: str | None, step: str
) -> GateResult:
    """Validate `suite` over the warehouse behind `engine`, record it in dq_results, raise if it fails.

    `params` binds the query's `:params` and any `Param` in the expectations. The query's
    params are rendered into SQL, so they must be numbers or strings of letters, digits and
    `_.~:+-` (what Airflow allows in a run id). The gate creates and drops a view named `adloop_dq_*`, so the
    warehouse user needs CREATE rights on its schema.
    """
    query = _bind(engine, suite, params)
    outcome = _validate(engine, suite, query, params)
    result = _summarize(suite, step, outcome)
    _record(engine, result, run_id=run_id, dag_id=dag_id)

    if not result.success:
        log.error(
            "gate %s (%s): %s of %s expectations failed over %s rows",
            suite.name,
            step,
            len(result.failed),
            result.evaluated,
            result.row_count,
        )
        raise GateFailed(result)
    log.info(
        "gate %s (%s): %s expectations passed over %s rows",
        suite.name,
        step,
        result.evaluated,
        result.row_count,
    )
    return result


# --- binding ------------------------------------------------------------------------------------

# Params are run ids, timestamps and amounts, never free text. Keeping strings to the characters
# of Airflow's default allowed_run_id_pattern means a rendered literal holds no quote, no '%' and
# nothing else that could change the meaning of the SQL around it, even if quoting had a gap.
_SAFE_TEXT = re.compile(r"^[A-Za-z0-9_.~:+\-]*$")


def _bind(engine: Engine, suite: Suite, params: Mapping[str, Any]) -> str:
    """The suite's query with its `:params` rendered as literals by SQLAlchemy's compiler.

    The query becomes the body of a view (see `_validate`), and a view cannot take bind
    parameters, so values are quoted by the dialect instead and restricted to plain scalars.
    """
    clause = sa.text(suite.query)
    needed = set(clause.compile().params)
    missing = needed - params.keys()
    if missing:
        raise ValueError(f"suite {suite.name}: missing params {sorted(missing)}")
    for name in needed:
        value = params[name]
        if not isinstance(value, int | float | str) or (
            isinstance(value, str) and not _SAFE_TEXT.match(value)
        ):
            raise TypeError(
                f"suite {suite.name}: param {name} must be a number or a string of letters, digits "
                f"and _.~:+- (got a {type(value).__name__})"
            )
    bound = clause.bindparams(**{name: params[name] for name in needed})
    return str(bound.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))


def _resolve(value: Any, params: Mapping[str, Any]) -> Any:
    if isinstance(value, Param):
        if value.name not in params:
            raise ValueError(f"missing param {value.name}")
        return params[value.name]
    return value


# --- GX -----------------------------------------------------------------------------------------

_ROW_PROBE = -1
_gx_lock = threading.Lock()
_gx_state: dict[str, Any] = {}


def _gx_context():
    """The process's ephemeral GX context, made on first use (this is where the 5 s import is paid)."""
    if "context" not in _gx_state:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        context.enable_analytics(False)
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        _gx_state["context"] = context
        _gx_state["datasources"] = {}
    return _gx_state["context"]


def _gx_datasource(engine: Engine):
    """One GX data source per warehouse URL, so its SQLAlchemy engine is reused across gate runs."""
    context = _gx_context()
    url = engine.url.render_as_string(hide_password=False)
    datasources = _gx_state["datasources"]
    if url not in datasources:
        name = f"warehouse_{hashlib.sha256(url.encode()).hexdigest()[:12]}"
        if engine.dialect.name == "postgresql":
            datasources[url] = context.data_sources.add_postgres(name, connection_string=url)
        elif engine.dialect.name == "sqlite":
            if engine.url.database in (None, "", ":memory:"):
                raise ValueError("gates need a file SQLite warehouse: GX opens its own connection to it")
            datasources[url] = context.data_sources.add_sqlite(name, connection_string=url)
        else:
            datasources[url] = context.data_sources.add_sql(name, connection_string=url)
    return datasources[url]


def _gx_expectations(suite: Suite, params: Mapping[str, Any], only: set[int] | None = None) -> list:
    """GX expectations for the suite's specs (or the specs numbered in `only`)."""
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import Column

    built = []
    for index, spec in enumerate(suite.expectations):
        if only is not None and index not in only:
            continue
        # GX groups results by column, not in suite order; the index maps them back to the specs.
        kwargs = {k: _resolve(v, params) for k, v in spec.kwargs.items()}
        kwargs["meta"] = {"adloop_index": index}
        if len(spec.columns) == 1:
            kwargs["column"] = spec.columns[0]
        if spec.where is not None:
            kwargs["row_condition"] = Column(spec.where[0]) == spec.where[1]
        built.append(getattr(gxe, spec.gx_class)(**kwargs))
    return built


def _validate(engine: Engine, suite: Suite, query: str, params: Mapping[str, Any]) -> dict[int, Any]:
    """GX's result for each spec of the suite (by index) and for the row count (`_ROW_PROBE`).

    The rows are exposed to GX as a short-lived view over the bound query rather than as a GX
    query asset: GX reads a query asset's column names by running the bare query, and psycopg2
    then pulls every row into memory (1.2 GB at a million rows). A view's columns are read from
    the catalog, and every check runs as an aggregate query in the warehouse.

    Two passes: all checks with BOOLEAN_ONLY (GX bundles them into a few aggregate queries),
    then only the failed ones with SUMMARY for their counts and samples. A passing gate never
    pays for GX's "fetch some unexpected values" query, which scans the rows once per check.
    """
    import great_expectations as gx
    import great_expectations.expectations as gxe

    view = f"adloop_dq_{suite.name}_{uuid.uuid4().hex[:12]}"
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE VIEW {view} AS {query}")
    try:
        with _gx_lock:
            datasource = _gx_datasource(engine)
            asset = datasource.add_table_asset(view, table_name=view)
            try:
                batch = asset.add_batch_definition_whole_table("all").get_batch()

                checks = gx.ExpectationSuite(name=view, expectations=_gx_expectations(suite, params))
                first = batch.validate(checks, result_format="BOOLEAN_ONLY").results
                failed = {r.expectation_config.meta["adloop_index"] for r in first if not r.success}

                detail = _gx_expectations(suite, params, only=failed)
                detail.append(
                    gxe.ExpectTableRowCountToBeBetween(min_value=0, meta={"adloop_index": _ROW_PROBE})
                )
                result_format = {"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE_LIMIT}
                second = batch.validate(
                    gx.ExpectationSuite(name=f"{view}_detail", expectations=detail),
                    result_format=result_format,
                ).results
            finally:
                datasource.delete_asset(view)
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP VIEW IF EXISTS {view}")

    by_index = {r.expectation_config.meta["adloop_index"]: r for r in first}
    by_index.update({r.expectation_config.meta["adloop_index"]: r for r in second})
    return by_index


# --- results ------------------------------------------------------------------------------------


def _summarize(suite: Suite, step: str, by_index: dict[int, Any]) -> GateResult:
    row_count = int(by_index[_ROW_PROBE].result.get("observed_value") or 0)
    failed = [
        _failure(spec, by_index[i]) for i, spec in enumerate(suite.expectations) if not by_index[i].success
    ]
    return GateResult(
        suite=suite.name,
        step=step,
        success=not failed,
        evaluated=len(suite.expectations),
        row_count=row_count,
        failed=failed,
    )


def _failure(spec: Expect, gx_result) -> dict[str, Any]:
    """A failed expectation as a JSON-safe dict of counts; sample values only where the spec allows."""
    info = gx_result.exception_info or {}
    entry: dict[str, Any] = {
        "expectation": gx_result.expectation_config.type,
        "column": ", ".join(spec.columns),
        "check": spec.says,
    }
    if info.get("raised_exception"):
        entry["error"] = _scrub(str(info.get("exception_message") or "error"))
        return entry

    observed: dict[str, Any] = {
        "unexpected": int(gx_result.result.get("unexpected_count") or 0),
        "of": int(gx_result.result.get("element_count") or 0),
    }
    if spec.samples:
        counts = gx_result.result.get("partial_unexpected_counts") or []
        observed["samples"] = [_jsonable(c["value"]) for c in counts[:SAMPLE_LIMIT]]
    entry["observed"] = observed
    return entry


def _describe_failure(entry: Mapping[str, Any]) -> str:
    if "error" in entry:
        return f"{entry['check']} — could not be evaluated: {entry['error']}"
    observed = entry["observed"]
    text = f"{entry['check']} — {observed['unexpected']:,} of {observed['of']:,} rows do not"
    if observed.get("samples"):
        text += f" (e.g. {', '.join(repr(v) for v in observed['samples'])})"
    return text


_EMAIL_LIKE = re.compile(r"\S+@\S+")


def _scrub(message: str) -> str:
    """An error message cut to its first line and length, with anything email-like blanked.

    GX and database errors normally name columns and SQL, not row values, but a cast error can
    quote a value, so this is belt and braces.
    """
    first_line = message.strip().splitlines()[0] if message.strip() else "error"
    return _EMAIL_LIKE.sub("<redacted>", first_line)[:300]


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _record(engine: Engine, result: GateResult, *, run_id: str, dag_id: str | None) -> None:
    with engine.begin() as conn:
        conn.execute(
            dq_results.insert().values(
                run_id=run_id,
                dag_id=dag_id,
                step=result.step,
                suite=result.suite,
                success=result.success,
                evaluated=result.evaluated,
                row_count=result.row_count,
                failed_expectations=json.dumps(result.failed),
                checked_at=datetime.now(UTC),
            )
        )
