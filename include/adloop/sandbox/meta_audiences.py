"""Custom Audiences and Lookalikes on the Meta emulator, written from Meta's documentation.

Routes (all under an optional ``/v{major}.{minor}`` prefix, all needing an access token):

- ``POST /act_{id}/customaudiences``: create a customer-file audience (``subtype=CUSTOM``, ``name``,
  ``customer_file_source``) or a Lookalike (``subtype=LOOKALIKE``, ``origin_audience_id``,
  ``lookalike_spec`` with ``country`` and ``ratio`` 0.01-0.20 or ``type``).
- ``GET /act_{id}/customaudiences``: the account's audiences, paged (``limit``, ``after``).
- ``GET /{audience_id}``: one audience, with ``approximate_count_*`` and ``operation_status``.
- ``POST /{audience_id}/users`` adds, ``DELETE /{audience_id}/users`` removes; ``payload`` holds
  ``schema`` and ``data``, ``session`` holds ``session_id``, ``batch_seq``, ``last_batch_flag``.
- ``POST /{audience_id}/usersreplace``: replace every member, in a session of batches.

The rules enforced (reference/meta-apis.md §2):

- at most 10,000 rows a request; a multi-key schema from Meta's key list, every row as long as it;
- hashed keys must be SHA-256 as 64 lowercase hex characters: a row with any other value is an
  *invalid entry*, counted in ``num_invalid_entries``, shown in ``invalid_entry_samples`` (at most
  100) and not added;
- a ``/users`` session: ``batch_seq`` runs 1, 2, 3 ... with no repeats or gaps; nothing is taken
  after the batch with ``last_batch_flag``, nor more than 90 minutes after the session's first
  batch; ``num_received`` is the session's running total;
- ``usersreplace``: a session starts with ``batch_seq`` 1 (else 2650/1870147); one replace at a
  time per audience, and no ``/users`` edits meanwhile (2650/1870145); a finished session takes no
  more batches (2650/1870159); after 90 minutes a session is over and the audience is what was
  uploaded (2650/1870158); the audience's members are swapped when the last batch arrives;
- a Lookalike needs a ``CUSTOM`` origin audience with at least 100 members, 100 of them from the
  Lookalike's country unless ``allow_international_seeds``; the same origin, country and size twice
  is ``(#2654) Can't create a duplicate lookalike``.

How members are kept: Meta matches people; the emulator keeps each accepted row, identified by a
digest of its keys and values, with its EMAIL and COUNTRY hashes for tests and the seed rule. A
remove takes out the row with the same keys and values. Where Meta documents no error code (the
``/users`` session rules, a too-small seed) the sandbox answers code 100 with a message and no
subcode rather than inventing one.

Control routes: ``GET /_sandbox/audiences`` (every audience with its counts),
``GET /_sandbox/audiences/{id}/members`` (EMAIL hashes), ``GET /_sandbox/audiences/{id}/sessions``
(per session: batches, rows, rows received more than once), ``GET /_sandbox/audiences/requests``,
``POST /_sandbox/audiences/reset``.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
from typing import TYPE_CHECKING, Any

from adloop.sandbox.web import HTTPError, Request, Response

if TYPE_CHECKING:
    from adloop.sandbox.meta_api import MetaApp

MAX_ROWS_PER_REQUEST = 10_000
SESSION_SECONDS = 90 * 60
MAX_INVALID_SAMPLES = 100
MIN_SEED_SIZE = 100
MAX_AUDIENCE_SIZE = 100_000_000
PAGE_LIMIT = 25

MULTI_KEYS = frozenset(
    {
        "EXTERN_ID",
        "EMAIL",
        "PHONE",
        "GEN",
        "DOBY",
        "DOBM",
        "DOBD",
        "LN",
        "FN",
        "FI",
        "CT",
        "ST",
        "ZIP",
        "MADID",
        "COUNTRY",
    }
)
SINGLE_SCHEMAS = {"EMAIL_SHA256": "EMAIL", "PHONE_SHA256": "PHONE", "MOBILE_ADVERTISER_ID": "MADID"}
UNHASHED_KEYS = frozenset({"EXTERN_ID", "MADID"})
FILE_SOURCES = frozenset({"USER_PROVIDED_ONLY", "PARTNER_PROVIDED_ONLY", "BOTH_USER_AND_PARTNER_PROVIDED"})
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

# usersreplace errors: all code 2650 (reference §2.3).
REPLACE_CODE = 2650
SUB_IN_PROGRESS = 1870145
SUB_TIMED_OUT = 1870158
SUB_FIRST_BATCH = 1870147
SUB_FINISHED = 1870159
SUB_TOO_LARGE = 1870144
DUPLICATE_LOOKALIKE = 2654
# ca_sessions.finished
OPEN, FINISHED, TIMED_OUT = 0, 1, 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS ca_audiences (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT,
    subtype TEXT NOT NULL,
    customer_file_source TEXT,
    origin_audience_id TEXT,
    lookalike_country TEXT,
    lookalike_ratio REAL,
    lookalike_spec TEXT,
    operation_status TEXT NOT NULL DEFAULT 'normal',
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS ca_audiences_account ON ca_audiences (account_id, id);
CREATE TABLE IF NOT EXISTS ca_members (
    audience_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    email TEXT,
    country TEXT,
    PRIMARY KEY (audience_id, digest)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ca_sessions (
    audience_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    started REAL NOT NULL,
    last_seq INTEGER NOT NULL,
    finished INTEGER NOT NULL DEFAULT 0,
    schema TEXT,
    num_received INTEGER NOT NULL DEFAULT 0,
    num_invalid INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (audience_id, session_id, kind)
);
CREATE TABLE IF NOT EXISTS ca_session_rows (
    audience_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    digest TEXT NOT NULL,
    email TEXT,
    country TEXT,
    times INTEGER NOT NULL,
    PRIMARY KEY (audience_id, session_id, kind, digest)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ca_requests (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at REAL NOT NULL,
    audience_id TEXT,
    operation TEXT NOT NULL,
    session_id TEXT,
    batch_seq INTEGER,
    rows INTEGER NOT NULL DEFAULT 0,
    invalid INTEGER NOT NULL DEFAULT 0,
    status INTEGER NOT NULL,
    error_code INTEGER,
    error_subcode INTEGER
);
"""


def _error(message: str, code: int = 100, subcode: int | None = None, status: int = 400) -> HTTPError:
    from adloop.sandbox.meta_api import graph_error

    return HTTPError(graph_error(status, message, code, subcode=subcode, type_="OAuthException"))


class Audiences:
    """The audience routes and their state in the sandbox store."""

    def __init__(self, app: MetaApp):
        self.app = app
        self.store = app.store
        # One writer at a time: session bookkeeping must see each batch in order.
        self._lock = threading.Lock()
        with self.store.connection() as conn:
            conn.executescript(SCHEMA)

    # -- helpers -------------------------------------------------------------------------------------

    def _fields(self, request: Request) -> dict[str, Any]:
        from adloop.sandbox.meta_api import _request_fields

        return _request_fields(request)

    def _audience(self, conn, audience_id: str) -> dict[str, Any]:
        conn.row_factory = None
        row = conn.execute("SELECT * FROM ca_audiences WHERE id = ?", (audience_id,)).fetchone()
        if row is None:
            raise _error(
                f"Unsupported request. Object with ID '{audience_id}' does not exist, cannot be loaded due "
                "to missing permissions, or does not support this operation.",
                100,
                33,
            )
        columns = [d[0] for d in conn.execute("SELECT * FROM ca_audiences LIMIT 0").description]
        return dict(zip(columns, row, strict=True))

    def _log(self, conn, *, audience_id, operation, session=None, rows=0, invalid=0, status=200, error=None):
        conn.execute(
            "INSERT INTO ca_requests (received_at, audience_id, operation, session_id, batch_seq, rows, invalid, "
            "status, error_code, error_subcode) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                self.app.now(),
                audience_id,
                operation,
                None if session is None else str(session.get("session_id")),
                None if session is None else session.get("batch_seq"),
                rows,
                invalid,
                status,
                None if error is None else error.get("code"),
                None if error is None else error.get("error_subcode"),
            ),
        )

    def _count(self, conn, audience_id: str) -> int:
        return conn.execute(
            "SELECT count(*) FROM ca_members WHERE audience_id = ?", (audience_id,)
        ).fetchone()[0]

    def _describe(self, conn, audience: dict[str, Any], fields: set[str] | None) -> dict[str, Any]:
        count = self._count(conn, audience["id"]) if audience["subtype"] == "CUSTOM" else 0
        status = audience["operation_status"]
        data = {
            "id": audience["id"],
            "account_id": audience["account_id"].removeprefix("act_"),
            "name": audience["name"],
            "description": audience["description"],
            "subtype": audience["subtype"],
            "customer_file_source": audience["customer_file_source"],
            "approximate_count_lower_bound": count,
            "approximate_count_upper_bound": count,
            "operation_status": {
                "code": 200 if status == "normal" else 300,
                "description": "Normal" if status == "normal" else status,
            },
            "delivery_status": {"code": 200, "description": "This audience is ready for use."},
            "time_created": int(audience["created"]),
        }
        if audience["subtype"] == "LOOKALIKE":
            data["origin_audience_id"] = audience["origin_audience_id"]
            data["lookalike_spec"] = json.loads(audience["lookalike_spec"])
        if fields:
            data = {k: v for k, v in data.items() if k in fields or k == "id"}
        return data

    def _finish_expired_replace(self, conn, audience_id: str) -> None:
        """A replace session past its 90 minutes is over: the audience is what was uploaded."""
        row = conn.execute(
            "SELECT session_id, started FROM ca_sessions WHERE audience_id = ? AND kind = 'replace' "
            "AND finished = 0",
            (audience_id,),
        ).fetchone()
        if row and self.app.now() - row[1] > SESSION_SECONDS:
            self._swap_in_replacement(conn, audience_id, row[0], TIMED_OUT)

    def _swap_in_replacement(self, conn, audience_id: str, session_id: str, how: int) -> None:
        conn.execute("DELETE FROM ca_members WHERE audience_id = ?", (audience_id,))
        conn.execute(
            "INSERT OR IGNORE INTO ca_members (audience_id, digest, email, country) "
            "SELECT audience_id, digest, email, country FROM ca_session_rows "
            "WHERE audience_id = ? AND session_id = ? AND kind = 'replace'",
            (audience_id, session_id),
        )
        conn.execute(
            "UPDATE ca_sessions SET finished = ? WHERE audience_id = ? AND session_id = ? AND kind = 'replace'",
            (how, audience_id, session_id),
        )
        conn.execute("UPDATE ca_audiences SET operation_status = 'normal' WHERE id = ?", (audience_id,))

    # -- create and read -----------------------------------------------------------------------------

    def create(self, request: Request) -> Response:
        account = "act_" + request.params["account"]
        fields = self._fields(request)
        name = (fields.get("name") or "").strip()
        subtype = (fields.get("subtype") or "").upper()
        if not name:
            raise _error("(#100) The parameter name is required")
        with self._lock, self.store.transaction(immediate=True) as conn:
            if subtype == "CUSTOM":
                source = fields.get("customer_file_source")
                if source not in FILE_SOURCES:
                    raise _error(
                        "(#100) customer_file_source must be one of " + ", ".join(sorted(FILE_SOURCES))
                    )
                audience_id = self._new_id(conn)
                conn.execute(
                    "INSERT INTO ca_audiences (id, account_id, name, description, subtype, customer_file_source, "
                    "created) VALUES (?,?,?,?,?,?,?)",
                    (audience_id, account, name, fields.get("description"), "CUSTOM", source, self.app.now()),
                )
            elif subtype == "LOOKALIKE":
                audience_id = self._create_lookalike(conn, account, name, fields)
            else:
                raise _error(f"(#100) subtype {subtype or '(missing)'!r} is not supported by the sandbox")
            self._log(conn, audience_id=audience_id, operation=f"create_{subtype.lower()}")
        return Response.json({"id": audience_id})

    def _new_id(self, conn) -> str:
        while True:
            # 238... with 17 digits: numeric like Meta's ids, and easy to tell apart in a log.
            candidate = "238" + str(secrets.randbelow(10**14)).zfill(14)
            if conn.execute("SELECT 1 FROM ca_audiences WHERE id = ?", (candidate,)).fetchone() is None:
                return candidate

    def _create_lookalike(self, conn, account: str, name: str, fields: dict[str, Any]) -> str:
        origin_id = str(fields.get("origin_audience_id") or "")
        if not origin_id:
            raise _error("(#100) origin_audience_id is required for a lookalike")
        origin = self._audience(conn, origin_id)
        if origin["subtype"] != "CUSTOM":
            raise _error("(#100) The origin audience of a lookalike must be a custom audience")
        spec = fields.get("lookalike_spec")
        try:
            spec = json.loads(spec) if isinstance(spec, str) else spec
        except ValueError:
            spec = None
        if not isinstance(spec, dict):
            raise _error("(#100) lookalike_spec must be a JSON object")
        country = spec.get("country")
        if not isinstance(country, str) or not re.fullmatch(r"[A-Za-z]{2}", country):
            raise _error("(#100) lookalike_spec.country must be a 2-letter country code")
        country = country.upper()
        ratio = spec.get("ratio")
        if ratio is None:
            ratio = {"similarity": 0.01, "reach": 0.05}.get(spec.get("type"))
        if (
            not isinstance(ratio, int | float)
            or not 0.01 <= ratio <= 0.20
            or abs(ratio * 100 - round(ratio * 100)) > 1e-9
        ):
            raise _error("(#100) lookalike_spec.ratio must be between 0.01 and 0.20 in steps of 0.01")
        ratio = round(float(ratio), 2)

        size = self._count(conn, origin_id)
        if size < MIN_SEED_SIZE:
            raise _error(
                f"(#100) The source audience must have at least {MIN_SEED_SIZE} people; it has {size}"
            )
        if not spec.get("allow_international_seeds"):
            country_hash = hashlib.sha256(country.lower().encode()).hexdigest()
            local = conn.execute(
                "SELECT count(*) FROM ca_members WHERE audience_id = ? AND country = ?",
                (origin_id, country_hash),
            ).fetchone()[0]
            if local < MIN_SEED_SIZE:
                raise _error(
                    f"(#100) The source audience needs at least {MIN_SEED_SIZE} people from {country}; it has "
                    f"{local}. Set allow_international_seeds to use people from other countries."
                )
        duplicate = conn.execute(
            "SELECT id FROM ca_audiences WHERE subtype = 'LOOKALIKE' AND origin_audience_id = ? "
            "AND lookalike_country = ? AND abs(lookalike_ratio - ?) < 1e-9",
            (origin_id, country, ratio),
        ).fetchone()
        if duplicate:
            raise _error("(#2654) Can't create a duplicate lookalike", DUPLICATE_LOOKALIKE)

        audience_id = self._new_id(conn)
        stored_spec = {
            "type": "custom_ratio",
            "ratio": ratio,
            "country": country,
            "origin": [{"id": origin_id}],
        }
        conn.execute(
            "INSERT INTO ca_audiences (id, account_id, name, description, subtype, origin_audience_id, "
            "lookalike_country, lookalike_ratio, lookalike_spec, created) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                audience_id,
                account,
                name,
                fields.get("description"),
                "LOOKALIKE",
                origin_id,
                country,
                ratio,
                json.dumps(stored_spec),
                self.app.now(),
            ),
        )
        return audience_id

    def list(self, request: Request) -> Response:
        account = "act_" + request.params["account"]
        fields = self._fields(request)
        wanted = set(str(fields.get("fields") or "id").split(","))
        limit = min(int(fields.get("limit") or PAGE_LIMIT), 500)
        after = str(fields.get("after") or "")
        with self.store.connection() as conn:
            ids = [
                r[0]
                for r in conn.execute(
                    "SELECT id FROM ca_audiences WHERE account_id = ? AND id > ? ORDER BY id LIMIT ?",
                    (account, after, limit + 1),
                )
            ]
            page = [self._describe(conn, self._audience(conn, i), wanted) for i in ids[:limit]]
        body: dict[str, Any] = {"data": page}
        if page:
            body["paging"] = {"cursors": {"before": page[0]["id"], "after": page[-1]["id"]}}
            if len(ids) > limit:
                version = request.params.get("version") or "v26.0"
                body["paging"]["next"] = (
                    f"/{version}/{account}/customaudiences?limit={limit}&after={page[-1]['id']}"
                    f"&fields={','.join(sorted(wanted))}"
                )
        return Response.json(body)

    def read(self, request: Request) -> Response:
        fields = self._fields(request)
        wanted = set(str(fields.get("fields") or "id,name").split(","))
        with self._lock, self.store.transaction(immediate=True) as conn:
            self._finish_expired_replace(conn, request.params["audience_id"])
            audience = self._audience(conn, request.params["audience_id"])
            return Response.json(self._describe(conn, audience, wanted))

    # -- members -------------------------------------------------------------------------------------

    def users(self, request: Request) -> Response:
        return self._upload(request, "remove" if request.method == "DELETE" else "add")

    def users_replace(self, request: Request) -> Response:
        return self._upload(request, "replace")

    def _upload(self, request: Request, operation: str) -> Response:
        audience_id = request.params["audience_id"]
        fields = self._fields(request)
        method = str(fields.get("method") or "").upper()
        if operation == "add" and method == "DELETE":
            operation = "remove"
        session = _json_field(fields, "session")
        with self._lock, self.store.transaction(immediate=True) as conn:
            try:
                response = self._apply(conn, audience_id, operation, _json_field(fields, "payload"), session)
            except HTTPError as exc:
                error = json.loads(exc.response.body)["error"]
                self._log(
                    conn,
                    audience_id=audience_id,
                    operation=operation,
                    session=session,
                    status=exc.response.status,
                    error=error,
                )
                # Errors keep the session's bookkeeping as it was, but the request log must survive.
                conn.commit()
                conn.execute("BEGIN")
                raise
        return response

    def _apply(self, conn, audience_id: str, operation: str, payload: Any, session: Any) -> Response:
        audience = self._audience(conn, audience_id)
        if audience["subtype"] != "CUSTOM":
            raise _error("(#100) Users can only be added to or removed from a custom audience")
        self._finish_expired_replace(conn, audience_id)
        audience = self._audience(conn, audience_id)
        schema, rows = _parse_payload(payload)
        now = self.app.now()

        kind = "replace" if operation == "replace" else "users"
        if operation == "replace":
            if not isinstance(session, dict):
                raise _error("(#100) usersreplace needs a session", REPLACE_CODE, 1870148)
            if self._count(conn, audience_id) >= MAX_AUDIENCE_SIZE:
                raise _error("The audience has 100 million people or more", REPLACE_CODE, SUB_TOO_LARGE)
        elif audience["operation_status"] == "replace_in_progress":
            raise _error(
                "(#2650) A replace is in progress on this audience; wait until it is Normal",
                REPLACE_CODE,
                SUB_IN_PROGRESS,
            )

        session_id = None
        if isinstance(session, dict):
            session_id, seq, last = _session_fields(session)
            state = conn.execute(
                "SELECT started, last_seq, finished, schema FROM ca_sessions "
                "WHERE audience_id = ? AND session_id = ? AND kind = ?",
                (audience_id, session_id, kind),
            ).fetchone()
            if operation == "replace":
                self._check_replace_session(conn, audience_id, session_id, seq, state, now)
            else:
                _check_users_session(seq, state, now)
            if state is not None and state[3] != json.dumps(schema):
                raise _error("(#100) The schema must stay the same across the batches of a session")
            if state is None:
                conn.execute(
                    "INSERT INTO ca_sessions (audience_id, session_id, kind, started, last_seq, schema) "
                    "VALUES (?,?,?,?,0,?)",
                    (audience_id, session_id, kind, now, json.dumps(schema)),
                )
                if operation == "replace":
                    conn.execute(
                        "UPDATE ca_audiences SET operation_status = 'replace_in_progress' WHERE id = ?",
                        (audience_id,),
                    )

        valid, invalid_samples, invalid = _split_rows(schema, rows)
        if session_id is not None:
            conn.executemany(
                "INSERT INTO ca_session_rows (audience_id, session_id, kind, digest, email, country, times) "
                "VALUES (?,?,?,?,?,?,1) ON CONFLICT DO UPDATE SET times = times + 1",
                [(audience_id, session_id, kind, d, e, c) for d, e, c in valid],
            )
        if operation == "add":
            conn.executemany(
                "INSERT OR IGNORE INTO ca_members (audience_id, digest, email, country) VALUES (?,?,?,?)",
                [(audience_id, d, e, c) for d, e, c in valid],
            )
        elif operation == "remove":
            conn.executemany(
                "DELETE FROM ca_members WHERE audience_id = ? AND digest = ?",
                [(audience_id, d) for d, _, _ in valid],
            )

        received = len(rows)
        invalid_total = invalid
        if session_id is not None:
            conn.execute(
                "UPDATE ca_sessions SET last_seq = ?, finished = ?, num_received = num_received + ?, "
                "num_invalid = num_invalid + ? WHERE audience_id = ? AND session_id = ? AND kind = ?",
                (seq, int(last), len(rows), invalid, audience_id, session_id, kind),
            )
            received, invalid_total = conn.execute(
                "SELECT num_received, num_invalid FROM ca_sessions WHERE audience_id = ? AND session_id = ? "
                "AND kind = ?",
                (audience_id, session_id, kind),
            ).fetchone()
            if operation == "replace" and last:
                self._swap_in_replacement(conn, audience_id, session_id, FINISHED)
        self._log(
            conn,
            audience_id=audience_id,
            operation=operation,
            session=session,
            rows=len(rows),
            invalid=invalid,
        )

        body: dict[str, Any] = {
            "session_id": session_id,
            "num_received": received,
            "num_invalid_entries": invalid_total,
            "invalid_entry_samples": invalid_samples,
        }
        if operation == "replace":
            body = {"account_id": audience["account_id"].removeprefix("act_"), **body}
        else:
            body = {"audience_id": audience_id, **body}
        return Response.json(body)

    def _check_replace_session(self, conn, audience_id, session_id, seq, state, now) -> None:
        if state is None:
            if seq != 1:
                raise _error(
                    f"(#2650) A replace session must start with batch_seq 1, not {seq}",
                    REPLACE_CODE,
                    SUB_FIRST_BATCH,
                )
            other = conn.execute(
                "SELECT 1 FROM ca_sessions WHERE audience_id = ? AND kind = 'replace' AND finished = 0",
                (audience_id,),
            ).fetchone()
            if other:
                raise _error(
                    "(#2650) Another replace is in progress on this audience; wait until it is Normal",
                    REPLACE_CODE,
                    SUB_IN_PROGRESS,
                )
            return
        started, last_seq, finished, _ = state
        if finished == FINISHED:
            raise _error("(#2650) This replace session has already finished", REPLACE_CODE, SUB_FINISHED)
        if finished == TIMED_OUT or now - started > SESSION_SECONDS:
            if not finished:
                self._swap_in_replacement(conn, audience_id, session_id, TIMED_OUT)
            raise _error(
                "(#2650) The replace session timed out after 90 minutes; the audience is what was uploaded",
                REPLACE_CODE,
                SUB_TIMED_OUT,
            )
        if seq == 1:
            raise _error(
                "(#2650) batch_seq 1 was already sent in this session", REPLACE_CODE, SUB_FIRST_BATCH
            )
        if seq != last_seq + 1:
            raise _error(f"(#100) batch_seq {seq} does not follow {last_seq} in this session")

    # -- control routes ------------------------------------------------------------------------------

    def control_list(self, request: Request) -> Response:
        with self.store.connection() as conn:
            ids = [r[0] for r in conn.execute("SELECT id FROM ca_audiences ORDER BY created, id")]
            audiences = [self._describe(conn, self._audience(conn, i), None) for i in ids]
        return Response.json({"audiences": audiences})

    def control_members(self, request: Request) -> Response:
        with self.store.connection() as conn:
            audience_id = request.params["audience_id"]
            emails = [
                r[0]
                for r in conn.execute(
                    "SELECT email FROM ca_members WHERE audience_id = ? ORDER BY email", (audience_id,)
                )
            ]
        return Response.json({"audience_id": audience_id, "count": len(emails), "emails": emails})

    def control_sessions(self, request: Request) -> Response:
        audience_id = request.params["audience_id"]
        with self.store.connection() as conn:
            sessions = []
            for session_id, kind, last_seq, finished, received, invalid in conn.execute(
                "SELECT session_id, kind, last_seq, finished, num_received, num_invalid FROM ca_sessions "
                "WHERE audience_id = ? ORDER BY started",
                (audience_id,),
            ):
                rows, repeated = conn.execute(
                    "SELECT count(*), coalesce(sum(times > 1), 0) FROM ca_session_rows "
                    "WHERE audience_id = ? AND session_id = ? AND kind = ?",
                    (audience_id, session_id, kind),
                ).fetchone()
                sessions.append(
                    {
                        "session_id": session_id,
                        "kind": kind,
                        "batches": last_seq,
                        "finished": bool(finished),
                        "num_received": received,
                        "num_invalid_entries": invalid,
                        "distinct_rows": rows,
                        "rows_received_more_than_once": repeated,
                    }
                )
        return Response.json({"audience_id": audience_id, "sessions": sessions})

    def control_requests(self, request: Request) -> Response:
        with self.store.connection() as conn:
            columns = [
                "seq",
                "audience_id",
                "operation",
                "session_id",
                "batch_seq",
                "rows",
                "invalid",
                "status",
                "error_code",
                "error_subcode",
            ]
            rows = [
                dict(zip(columns, r, strict=True))
                for r in conn.execute(f"SELECT {','.join(columns)} FROM ca_requests ORDER BY seq")
            ]
        return Response.json({"requests": rows})

    def control_reset(self, request: Request) -> Response:
        with self._lock, self.store.transaction(immediate=True) as conn:
            for table in ("ca_audiences", "ca_members", "ca_sessions", "ca_session_rows", "ca_requests"):
                conn.execute(f"DELETE FROM {table}")
        return Response.json({"reset": True})


def _json_field(fields: dict[str, Any], name: str) -> Any:
    value = fields.get(name)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise _error(f"(#100) Param {name} must be JSON") from None
    return value


def _parse_payload(payload: Any) -> tuple[list[str], list[list[Any]]]:
    if not isinstance(payload, dict):
        raise _error('(#100) The parameter payload is required: {"schema": ..., "data": [...]}')
    schema = payload.get("schema")
    if isinstance(schema, str):
        if schema not in SINGLE_SCHEMAS:
            raise _error(f"(#100) Unknown schema {schema!r}")
        schema = [SINGLE_SCHEMAS[schema]]
    if not isinstance(schema, list) or not schema or any(k not in MULTI_KEYS for k in schema):
        raise _error(
            "(#100) schema must be a single-key schema or a list of keys from "
            + ", ".join(sorted(MULTI_KEYS))
        )
    if len(set(schema)) != len(schema):
        raise _error("(#100) A key appears twice in the schema")
    data = payload.get("data")
    if not isinstance(data, list) or not data:
        raise _error("(#100) payload.data must be a non-empty list of rows")
    if len(data) > MAX_ROWS_PER_REQUEST:
        raise _error(f"(#100) At most {MAX_ROWS_PER_REQUEST} rows a request; this one has {len(data)}")
    rows = []
    for index, row in enumerate(data):
        row = row if isinstance(row, list) else [row]
        if len(row) != len(schema):
            raise _error(f"(#100) Row {index} has {len(row)} values; the schema has {len(schema)} keys")
        rows.append(row)
    return schema, rows


def _session_fields(session: dict[str, Any]) -> tuple[str, int, bool]:
    session_id, seq = session.get("session_id"), session.get("batch_seq")
    if not isinstance(session_id, int) or isinstance(session_id, bool) or not 0 < session_id < 2**63:
        raise _error("(#100) session.session_id must be a positive 64-bit integer")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise _error("(#100) session.batch_seq must be a positive integer")
    return str(session_id), seq, bool(session.get("last_batch_flag"))


def _check_users_session(seq: int, state, now: float) -> None:
    if state is None:
        if seq != 1:
            raise _error(
                f"(#100) A session starts with batch_seq 1; this is a new session at batch_seq {seq}"
            )
        return
    started, last_seq, finished, _ = state
    if finished:
        raise _error("(#100) This session has finished (its last batch was flagged); start a new session")
    if now - started > SESSION_SECONDS:
        raise _error(
            "(#100) This session ended 90 minutes after its first batch; later batches are discarded"
        )
    if seq <= last_seq:
        raise _error(f"(#100) batch_seq {seq} was already received in this session")
    if seq != last_seq + 1:
        raise _error(f"(#100) batch_seq {seq} does not follow {last_seq} in this session")


def _split_rows(
    schema: list[str], rows: list[list[Any]]
) -> tuple[list[tuple[str, str | None, str | None]], list, int]:
    """(valid rows as (digest, EMAIL, COUNTRY), invalid samples, invalid count)."""
    email_at = schema.index("EMAIL") if "EMAIL" in schema else None
    country_at = schema.index("COUNTRY") if "COUNTRY" in schema else None
    valid, samples, invalid = [], [], 0
    for row in rows:
        pairs = []
        bad = None
        for key, value in zip(schema, row, strict=True):
            if value is None or value == "":
                continue
            if not isinstance(value, str) or (key not in UNHASHED_KEYS and not _SHA256.match(value)):
                bad = value
                break
            pairs.append(f"{key}={value}")
        if bad is not None or not pairs:
            invalid += 1
            if len(samples) < MAX_INVALID_SAMPLES:
                samples.append(bad if isinstance(bad, str) else json.dumps(row))
            continue
        digest = hashlib.sha256("\x1f".join(sorted(pairs)).encode()).hexdigest()
        email = row[email_at] or None if email_at is not None else None
        country = row[country_at] or None if country_at is not None else None
        valid.append((digest, email, country))
    return valid, samples, invalid


def register(app: MetaApp) -> Audiences:
    """Add the Custom Audience and Lookalike routes, and their control routes, to the Meta emulator."""
    audiences = Audiences(app)
    version = r"(?:/(?P<version>v\d+\.\d+))?"
    account = r"/act_(?P<account>\d+)"
    audience = r"/(?P<audience_id>238\d{14})"
    app.add_route("POST", version + account + r"/customaudiences/?", audiences.create, "customaudiences")
    app.add_route("GET", version + account + r"/customaudiences/?", audiences.list, "customaudiences")
    app.add_route("GET", version + audience + r"/?", audiences.read, "audience")
    app.add_route("POST", version + audience + r"/users/?", audiences.users, "users")
    app.add_route("DELETE", version + audience + r"/users/?", audiences.users, "users")
    app.add_route("POST", version + audience + r"/usersreplace/?", audiences.users_replace, "usersreplace")
    app.add_control_route("GET", "audiences", audiences.control_list)
    app.add_control_route("GET", "audiences/requests", audiences.control_requests)
    app.add_control_route("POST", "audiences/reset", audiences.control_reset)
    app.add_control_route("GET", r"audiences/(?P<audience_id>\d+)/members", audiences.control_members)
    app.add_control_route("GET", r"audiences/(?P<audience_id>\d+)/sessions", audiences.control_sessions)
    app.audiences = audiences
    return audiences
