"""SQLite state shared by the sandbox emulators, the demo data generator and the tests.

One file holds everything, so a server process, the generator and a test can all look at the same
state, and millions of Stripe objects fit without being held in memory.

- ``stripe_objects``: every Stripe object as the Stripe API returns it, unexpanded (references are
  ids). Lists read it through the ``(object, created, id)`` index, newest first, one page at a time.
- ``meta_requests``: every Graph API request the Meta emulator answered (control routes excluded).
- ``capi_events``: every Conversions API event of an accepted request, with whether Meta would
  *count* it or discard it as a duplicate of an event received within the previous 48 hours.

WAL mode lets readers run beside the single writer. Connections come from a small pool so each
server thread uses its own connection for the length of a request.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS stripe_objects (
    id TEXT PRIMARY KEY,
    object TEXT NOT NULL,
    created INTEGER NOT NULL,
    livemode INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS stripe_objects_list ON stripe_objects (object, created, id);

CREATE TABLE IF NOT EXISTS meta_requests (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    received_at REAL NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    pixel_id TEXT,
    status INTEGER NOT NULL,
    events_in_request INTEGER NOT NULL DEFAULT 0,
    events_counted INTEGER NOT NULL DEFAULT 0,
    events_deduplicated INTEGER NOT NULL DEFAULT 0,
    error_code INTEGER,
    error_subcode INTEGER,
    error_message TEXT,
    fault TEXT,
    test_event_code TEXT
);
CREATE INDEX IF NOT EXISTS meta_requests_pixel ON meta_requests (pixel_id, seq);

CREATE TABLE IF NOT EXISTS capi_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    pixel_id TEXT NOT NULL,
    event_name TEXT NOT NULL,
    event_id TEXT,
    event_time INTEGER NOT NULL,
    action_source TEXT,
    received_at REAL NOT NULL,
    counted INTEGER NOT NULL,
    request_id TEXT NOT NULL,
    test_event_code TEXT,
    event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS capi_events_dedup ON capi_events (pixel_id, event_id, event_name, received_at);
CREATE INDEX IF NOT EXISTS capi_events_pixel ON capi_events (pixel_id, seq);
"""

# Expression indexes behind the list filters that pick a few objects out of millions. They are
# built by ``ensure_filter_indexes`` when a sandbox starts, not with the table: maintaining them
# while a generator bulk-loads a million objects more than halves its insert rate, while building
# them afterwards takes about a second per index per 500,000 rows.
FILTER_INDEXES = """
CREATE INDEX IF NOT EXISTS stripe_objects_customer
    ON stripe_objects (object, json_extract(data, '$.customer'), created, id);
CREATE INDEX IF NOT EXISTS stripe_objects_payment_intent
    ON stripe_objects (object, json_extract(data, '$.payment_intent'), created, id);
CREATE INDEX IF NOT EXISTS stripe_objects_subscription
    ON stripe_objects (object, json_extract(data, '$.parent.subscription_details.subscription'), created, id);
"""

# Fields whose value is a reference (an id) in an unexpanded Stripe object. A fixture recorded with
# ``expand`` holds the whole object there; the store keeps the id and stores the object on its own.
REFERENCE_FIELDS = (
    "customer",
    "subscription",
    "latest_invoice",
    "payment_intent",
    "invoice",
    "charge",
    "latest_charge",
)

DEDUP_WINDOW_SECONDS = 48 * 3600
_IN_CHUNK = 500


class SandboxStore:
    """The sandbox's SQLite state file. Safe to share between threads; each call borrows a connection."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._pool: list[sqlite3.Connection] = []
        self._pool_lock = threading.Lock()
        self._all: list[sqlite3.Connection] = []
        with self.connection() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)

    # -- connections -------------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=60000")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    @contextlib.contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """Borrow a connection for the current thread; it goes back to the pool afterwards."""
        with self._pool_lock:
            conn = self._pool.pop() if self._pool else None
        if conn is None:
            conn = self._open()
            with self._pool_lock:
                self._all.append(conn)
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.rollback()
            with self._pool_lock:
                self._pool.append(conn)

    @contextlib.contextmanager
    def transaction(self, immediate: bool = False) -> Iterator[sqlite3.Connection]:
        with self.connection() as conn:
            conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    def ensure_filter_indexes(self) -> None:
        """Build the indexes of the customer, payment_intent and subscription list filters, if missing.

        Lists are correct without them, only slower when such a filter matches few of many objects.
        """
        started = time.monotonic()
        with self.connection() as conn:
            conn.executescript(FILTER_INDEXES)
        if time.monotonic() - started > 1:
            log.info("sandbox: built the Stripe filter indexes in %.1f s", time.monotonic() - started)

    def close(self) -> None:
        with self._pool_lock:
            for conn in self._all:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._all.clear()
            self._pool.clear()

    # -- Stripe objects ----------------------------------------------------------------------------

    def insert_stripe_objects(self, objects: Iterable[Mapping[str, Any]], chunk: int = 10_000) -> int:
        """Insert or replace Stripe objects, streaming them in chunks of ``chunk`` rows per transaction.

        An object needs ``id``, ``object`` and an integer ``created``. Expanded references (a whole
        customer where Stripe would put ``cus_...``) are stored as ids, and the referenced object is
        stored too if the store does not have it yet. Returns the number of objects written.
        """
        total = 0
        rows: list[tuple[str, str, int, int, str]] = []
        nested: list[tuple[str, str, int, int, str]] = []
        with self.connection() as conn:
            for obj in objects:
                row, found = _stripe_row(obj)
                rows.append(row)
                nested.extend(found)
                if len(rows) >= chunk:
                    total += _write_stripe_rows(conn, rows, nested)
                    rows, nested = [], []
            if rows or nested:
                total += _write_stripe_rows(conn, rows, nested)
        return total

    def load_fixture(self, path: str | Path) -> int:
        """Load Stripe objects from a JSON list, a Stripe list envelope or JSON Lines."""
        count = self.insert_stripe_objects(iter_fixture(path))
        log.info("sandbox: loaded %s Stripe objects from %s", count, path)
        return count

    def get_stripe_object(self, object_id: str) -> dict[str, Any] | None:
        with self.connection() as conn:
            row = conn.execute("SELECT data FROM stripe_objects WHERE id = ?", (object_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def get_stripe_objects(self, object_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Objects by id for the ids that exist (one query per 500 ids)."""
        found: dict[str, dict[str, Any]] = {}
        ids = list(dict.fromkeys(object_ids))
        with self.connection() as conn:
            for start in range(0, len(ids), _IN_CHUNK):
                part = ids[start : start + _IN_CHUNK]
                marks = ",".join("?" * len(part))
                sql = f"SELECT id, data FROM stripe_objects WHERE id IN ({marks})"
                for object_id, data in conn.execute(sql, part):
                    found[object_id] = json.loads(data)
        return found

    def stripe_cursor(self, object_id: str) -> tuple[str, int] | None:
        """(object type, created) of an object, for list cursors."""
        with self.connection() as conn:
            row = conn.execute(
                "SELECT object, created FROM stripe_objects WHERE id = ?", (object_id,)
            ).fetchone()
        return (row[0], row[1]) if row else None

    def list_stripe_objects(
        self,
        object_type: str,
        *,
        limit: int,
        created: Mapping[str, int] | None = None,
        equals: Mapping[str, str] | None = None,
        not_in: Mapping[str, Sequence[str]] | None = None,
        is_in: Mapping[str, Sequence[str]] | None = None,
        starting_after: tuple[int, str] | None = None,
        ending_before: tuple[int, str] | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page of objects of a type, newest first (created desc, id desc), and whether more follow.

        ``created`` maps ``gt``/``gte``/``lt``/``lte``/``eq`` to epoch seconds. ``equals``, ``is_in``
        and ``not_in`` map a JSON path inside the object (``$.customer``) to the wanted value(s).
        ``starting_after`` and ``ending_before`` are the (created, id) of the cursor object.

        The query walks the (object, created, id) index, or the expression index of a customer,
        payment_intent or subscription filter (see ``ensure_filter_indexes``), in order and stops after ``limit + 1`` rows, so a
        page costs the same at any depth. Known shortcoming: other filters (status, email, charge)
        have no index and scan the created-ordered index until the page fills, which is slow only
        when they match a small share of millions of objects.
        """
        where = ["object = ?"]
        args: list[Any] = [object_type]
        ops = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "eq": "="}
        for key, value in (created or {}).items():
            where.append(f"created {ops[key]} ?")
            args.append(int(value))
        # The JSON path is written into the SQL (not bound) so SQLite can match the expression
        # indexes on customer, payment_intent and the invoice's subscription.
        for json_path, value in (equals or {}).items():
            where.append(f"{_json_field(json_path)} = ?")
            args.append(value)
        for json_path, values in (is_in or {}).items():
            where.append(f"{_json_field(json_path)} IN ({','.join('?' * len(values))})")
            args += list(values)
        for json_path, values in (not_in or {}).items():
            where.append(f"coalesce({_json_field(json_path)}, '') NOT IN ({','.join('?' * len(values))})")
            args += list(values)

        backwards = ending_before is not None and starting_after is None
        if starting_after is not None:
            where.append("(created, id) < (?, ?)")
            args += list(starting_after)
        if ending_before is not None:
            where.append("(created, id) > (?, ?)")
            args += list(ending_before)
        order = "created ASC, id ASC" if backwards else "created DESC, id DESC"
        sql = f"SELECT data FROM stripe_objects WHERE {' AND '.join(where)} ORDER BY {order} LIMIT ?"
        args.append(limit + 1)

        with self.connection() as conn:
            rows = [json.loads(r[0]) for r in conn.execute(sql, args)]
        has_more = len(rows) > limit
        rows = rows[:limit]
        if backwards:
            rows.reverse()
        return rows, has_more

    def count_stripe_objects(self, object_type: str | None = None) -> int:
        with self.connection() as conn:
            if object_type is None:
                return conn.execute("SELECT count(*) FROM stripe_objects").fetchone()[0]
            sql = "SELECT count(*) FROM stripe_objects WHERE object = ?"
            return conn.execute(sql, (object_type,)).fetchone()[0]

    def delete_stripe_objects(self) -> None:
        with self.connection() as conn:
            conn.execute("DELETE FROM stripe_objects")

    # -- Meta: received requests and CAPI events --------------------------------------------------

    def record_meta_request(self, request: Mapping[str, Any]) -> None:
        columns = (
            "request_id",
            "received_at",
            "method",
            "path",
            "pixel_id",
            "status",
            "events_in_request",
            "events_counted",
            "events_deduplicated",
            "error_code",
            "error_subcode",
            "error_message",
            "fault",
            "test_event_code",
        )
        with self.connection() as conn:
            conn.execute(
                f"INSERT INTO meta_requests ({','.join(columns)}) VALUES ({','.join('?' * len(columns))})",
                [request.get(c, 0 if c.startswith("events_") else None) for c in columns],
            )

    def record_capi_events(
        self,
        pixel_id: str,
        events: Sequence[Mapping[str, Any]],
        *,
        request_id: str,
        received_at: float,
        test_event_code: str | None = None,
    ) -> tuple[int, int]:
        """Store an accepted batch and decide, event by event, whether Meta would count it.

        An event is a duplicate when an event of the same pixel with the same ``event_name`` and
        ``event_id`` was counted within the 48 hours before it. Events without ``event_id`` are
        always counted. Runs in one write transaction, so concurrent batches dedup correctly.
        Returns (counted, deduplicated).
        """
        since = received_at - DEDUP_WINDOW_SECONDS
        with self.transaction(immediate=True) as conn:
            first_seen = _first_counted(conn, pixel_id, events, since)
            rows = []
            counted = 0
            for event in events:
                event_id = event.get("event_id")
                event_id = None if event_id is None else str(event_id)
                key = (str(event["event_name"]), event_id)
                is_counted = event_id is None or key not in first_seen
                if is_counted:
                    counted += 1
                    if event_id is not None:
                        first_seen[key] = received_at
                rows.append(
                    (
                        pixel_id,
                        key[0],
                        event_id,
                        int(event["event_time"]),
                        event.get("action_source"),
                        received_at,
                        int(is_counted),
                        request_id,
                        test_event_code,
                        json.dumps(event, separators=(",", ":")),
                    )
                )
            conn.executemany(
                "INSERT INTO capi_events (pixel_id, event_name, event_id, event_time, action_source, "
                "received_at, counted, request_id, test_event_code, event) VALUES (?,?,?,?,?,?,?,?,?,?)",
                rows,
            )
        return counted, len(events) - counted

    def received_events(
        self,
        pixel_id: str | None = None,
        *,
        event_id: str | None = None,
        counted: bool | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        where, args = _filters(pixel_id=pixel_id, event_id=event_id, counted=counted)
        sql = (
            "SELECT seq, pixel_id, event_name, event_id, event_time, action_source, received_at, counted, "
            f"request_id, test_event_code, event FROM capi_events {where} ORDER BY seq LIMIT ? OFFSET ?"
        )
        args += [-1 if limit is None else limit, offset]
        with self.connection() as conn:
            cur = conn.execute(sql, args)
            names = [d[0] for d in cur.description]
            out = []
            for row in cur:
                item = dict(zip(names, row, strict=True))
                item["counted"] = bool(item["counted"])
                item["event"] = json.loads(item["event"])
                out.append(item)
        return out

    def meta_requests(
        self, pixel_id: str | None = None, *, limit: int | None = None, offset: int = 0
    ) -> list[dict[str, Any]]:
        where, args = _filters(pixel_id=pixel_id)
        sql = f"SELECT * FROM meta_requests {where} ORDER BY seq LIMIT ? OFFSET ?"
        args += [-1 if limit is None else limit, offset]
        with self.connection() as conn:
            cur = conn.execute(sql, args)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur]

    def meta_summary(self, pixel_id: str | None = None) -> dict[str, int]:
        where, args = _filters(pixel_id=pixel_id)
        with self.connection() as conn:
            requests, rejected, faulted = conn.execute(
                "SELECT count(*), coalesce(sum(status >= 400 AND fault IS NULL), 0), "
                f"coalesce(sum(fault IS NOT NULL), 0) FROM meta_requests {where}",
                args,
            ).fetchone()
            received, counted = conn.execute(
                f"SELECT count(*), coalesce(sum(counted), 0) FROM capi_events {where}", args
            ).fetchone()
        return {
            "requests": requests,
            "rejected_requests": rejected,
            "faulted_requests": faulted,
            "events_received": received,
            "events_counted": counted,
            "events_deduplicated": received - counted,
        }

    def reset_meta(self) -> None:
        with self.transaction(immediate=True) as conn:
            conn.execute("DELETE FROM capi_events")
            conn.execute("DELETE FROM meta_requests")


def iter_fixture(path: str | Path) -> Iterator[dict[str, Any]]:
    """Stripe objects from a fixture file: a JSON list, a list envelope, or JSON Lines (streamed)."""
    with open(path, encoding="utf-8") as fh:
        first = fh.readline()
        stripped = first.strip()
        one_line_object = None
        if stripped.startswith("{"):
            try:
                one_line_object = json.loads(stripped)
            except ValueError:
                one_line_object = None
        if one_line_object is not None:
            # JSON Lines (or a one-line envelope): stream the rest line by line.
            yield from _unwrap(one_line_object, path, 1)
            for number, line in enumerate(fh, start=2):
                if line.strip():
                    yield from _unwrap(json.loads(line), path, number)
            return
        document = json.loads(first + fh.read())
    yield from _unwrap(document, path, None)


def _unwrap(document: Any, path: str | Path, line: int | None) -> Iterator[dict[str, Any]]:
    where = f"{path}:{line}" if line else str(path)
    if isinstance(document, list):
        items = document
    elif isinstance(document, dict) and document.get("object") == "list":
        items = document.get("data") or []
    elif isinstance(document, dict):
        items = [document]
    else:
        raise ValueError(f"{where}: expected a Stripe object, a list of them or a list envelope")
    for item in items:
        if not isinstance(item, dict):
            raise ValueError(f"{where}: expected Stripe objects, found {type(item).__name__}")
        yield item


def _stripe_row(obj: Mapping[str, Any]) -> tuple[tuple[str, str, int, int, str], list[tuple]]:
    object_id, object_type, created = obj.get("id"), obj.get("object"), obj.get("created")
    if not isinstance(object_id, str) or not object_id:
        raise ValueError(f"Stripe object without an id: {str(obj)[:120]}")
    if not isinstance(object_type, str) or not object_type:
        raise ValueError(f"Stripe object {object_id} has no 'object' type")
    if not isinstance(created, int) or isinstance(created, bool):
        raise ValueError(f"Stripe object {object_id} has created={created!r}, expected epoch seconds")

    data = dict(obj)
    nested: list[tuple] = []
    for field in REFERENCE_FIELDS:
        value = data.get(field)
        if isinstance(value, dict) and isinstance(value.get("id"), str):
            data[field] = value["id"]
            if isinstance(value.get("object"), str) and isinstance(value.get("created"), int):
                row, deeper = _stripe_row(value)
                nested.append(row)
                nested.extend(deeper)
    row = (
        object_id,
        object_type,
        created,
        int(bool(data.get("livemode"))),
        json.dumps(data, separators=(",", ":")),
    )
    return row, nested


def _write_stripe_rows(conn: sqlite3.Connection, rows: list[tuple], nested: list[tuple]) -> int:
    conn.execute("BEGIN")
    try:
        conn.executemany("INSERT OR REPLACE INTO stripe_objects VALUES (?,?,?,?,?)", rows)
        if nested:
            conn.executemany("INSERT OR IGNORE INTO stripe_objects VALUES (?,?,?,?,?)", nested)
    except BaseException:
        conn.rollback()
        raise
    conn.commit()
    return len(rows)


def _json_field(json_path: str) -> str:
    if not re.fullmatch(r"\$(\.[A-Za-z0-9_]+)+", json_path):
        raise ValueError(f"unsupported JSON path {json_path!r}")
    return f"json_extract(data, '{json_path}')"


def _first_counted(
    conn: sqlite3.Connection, pixel_id: str, events: Sequence[Mapping[str, Any]], since: float
) -> dict[tuple[str, str], float]:
    """(event_name, event_id) -> when it was first counted, for counted events newer than ``since``."""
    ids = sorted({str(e["event_id"]) for e in events if e.get("event_id") is not None})
    found: dict[tuple[str, str], float] = {}
    for start in range(0, len(ids), _IN_CHUNK):
        part = ids[start : start + _IN_CHUNK]
        sql = (
            "SELECT event_name, event_id, min(received_at) FROM capi_events "
            f"WHERE pixel_id = ? AND counted = 1 AND received_at > ? AND event_id IN ({','.join('?' * len(part))}) "
            "GROUP BY event_name, event_id"
        )
        for name, event_id, first in conn.execute(sql, [pixel_id, since, *part]):
            found[(name, event_id)] = first
    return found


def _filters(
    pixel_id: str | None = None, event_id: str | None = None, counted: bool | None = None
) -> tuple[str, list[Any]]:
    clauses, args = [], []
    if pixel_id is not None:
        clauses.append("pixel_id = ?")
        args.append(pixel_id)
    if event_id is not None:
        clauses.append("event_id = ?")
        args.append(event_id)
    if counted is not None:
        clauses.append("counted = ?")
        args.append(int(counted))
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", args
