"""The ads side of the Meta emulator: ad accounts, campaigns, ad sets, ads and Ads Insights.

Written from Meta's Insights docs (reference/meta-apis.md §3), sharing nothing with adloop's client.
`register(app)` adds these routes to a `MetaApp` (the version prefix is optional):

- `GET /act_{id}`: the ad account (`currency`, `timezone_name`, `name`).
- `GET /act_{id}/campaigns|adsets|ads`: the structure, cursor-paged.
- `GET /act_{id}/insights`: synchronous insights. `level` (ad, adset, campaign, account),
  `time_range` (`{"since","until"}`) or `date_preset`, `time_increment` (1 or all_days), `fields`,
  `action_attribution_windows`, `limit` and `after`. Too many rows for one synchronous call is
  Meta's error 100/1487534.
- `POST /act_{id}/insights`: an async report run, `{"report_run_id": ...}`.
- `GET /{report_run_id}`: the job, moving through `Job Not Started`, `Job Started`, `Job Running`
  (100 % can show while still running, as Meta's does) to `Job Completed`, one state per poll.
  A job can be told to fail (`Job Failed` with `error_code`), stall forever, or be skipped.
- `GET /{report_run_id}/insights`: the job's rows, cursor-paged.

Figures come from the delivery rows of `adloop.sandbox.ad_delivery`, stored in the sandbox
state. Recent days restate: the emulator's day (its clock, which tests move) is the "generation"
of the figures, and days younger than `restate_days` drift a little from one generation to the
next (late billing and late conversions); days older than 28 days never change. Overrides set
through the control route replace a row's figures outright.

Every insights response carries `X-FB-Ads-Insights-Throttle` from the account's rolling call count
(the app adds `X-Ad-Account-Usage` and `X-Business-Use-Case-Usage`); at 100 % calls are refused
with error 80000 until the window rolls. Throttling and 5xx on demand come from the app's faults.

Control routes under `/_sandbox/insights/`: `POST delivery` (accounts, ads, delivery rows),
`POST jobs` (job behaviour), `POST override` (replace figures), `GET summary`.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import threading
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from adloop.sandbox.store import SandboxStore
from adloop.sandbox.web import HTTPError, Request, Response

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta_ad_accounts (
    account_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    currency TEXT NOT NULL,
    timezone_name TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta_ads (
    ad_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    ad_name TEXT NOT NULL,
    adset_id TEXT NOT NULL,
    adset_name TEXT NOT NULL,
    campaign_id TEXT NOT NULL,
    campaign_name TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta_ad_delivery (
    account_id TEXT NOT NULL,
    day TEXT NOT NULL,
    ad_id TEXT NOT NULL,
    spend_cents INTEGER NOT NULL,
    impressions INTEGER NOT NULL,
    clicks INTEGER NOT NULL,
    reach INTEGER NOT NULL,
    actions TEXT NOT NULL,
    PRIMARY KEY (account_id, day, ad_id)
);
CREATE TABLE IF NOT EXISTS meta_insights_overrides (
    account_id TEXT NOT NULL,
    day TEXT NOT NULL,
    ad_id TEXT NOT NULL,          -- '' for the account-level totals only
    figures TEXT NOT NULL,
    PRIMARY KEY (account_id, day, ad_id)
);
CREATE TABLE IF NOT EXISTS meta_report_runs (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    params TEXT NOT NULL,
    behaviour TEXT NOT NULL,      -- normal | fail | stall | skip
    polls INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    completed_at REAL
);
"""

SYNC_MAX_ROWS = 5000
MAX_PAGE_SIZE = 5000
DEFAULT_PAGE_SIZE = 25
RESTATEMENT_HORIZON_DAYS = 28
# Windows Meta still returns (since 2026-01-12, 7d_view and 28d_view are not).
SERVED_WINDOWS = ("1d_click", "7d_click", "28d_click", "1d_view", "1d_ev")
LEVELS = ("ad", "adset", "campaign", "account")
# Action types Meta reports for each delivery kind: the pixel event and its roll-ups. A client
# that adds them up counts each conversion two or three times.
ACTION_TYPES = {
    "purchase": ("offsite_conversion.fb_pixel_purchase", "purchase", "omni_purchase"),
    "schedule": ("schedule_website", "schedule_total"),
    "complete_registration": ("offsite_conversion.fb_pixel_complete_registration", "complete_registration"),
    "subscribe": ("subscribe_website", "subscribe_total"),
}
VALUE_KINDS = {"purchase": "purchase_value", "subscribe": "subscribe_value"}
STATES = ("Job Not Started", "Job Started", "Job Running")
FAILED_SUBCODE = 2490547


class InsightsEmulator:
    """State and behaviour of the ads side; one per MetaApp."""

    def __init__(self, app) -> None:
        self.app = app
        self.store: SandboxStore = app.store
        with self.store.connection() as conn:
            conn.executescript(SCHEMA)
        self.restate_days = 3
        self.polls_to_complete = 2
        self.fail_next = 0
        self.stall_next = 0
        self.skip_next = 0
        self.fail_ranges_longer_than_days: int | None = None
        self._lock = threading.Lock()
        self._ids = itertools.count(int(app.now()) * 1000)
        # A finished job's rows, computed once and paged from memory (a few recent jobs only).
        self._results: dict[str, list[dict]] = {}

    # -- data ----------------------------------------------------------------------------------

    def load(self, accounts: Iterable[dict] = (), ads: Iterable[dict] = (), delivery: Iterable[dict] = ()) -> int:
        return load(self.store, accounts, ads, delivery)

    def account(self, account_id: str) -> dict | None:
        with self.store.connection() as conn:
            row = conn.execute(
                "SELECT account_id, name, currency, timezone_name FROM meta_ad_accounts WHERE account_id = ?",
                (account_id,),
            ).fetchone()
        if row is None:
            return None
        return {"account_id": row[0], "name": row[1], "currency": row[2], "timezone_name": row[3]}

    def today(self, account: dict) -> date:
        zone = ZoneInfo(account["timezone_name"])
        return datetime.fromtimestamp(self.app.now(), UTC).astimezone(zone).date()

    def rows(self, account: dict, since: date, until: date) -> tuple[list[dict], dict[str, dict]]:
        """Ad-level delivery of the days [since, until], as it stands now (restated, overridden)."""
        with self.store.connection() as conn:
            ads = {
                r[0]: r
                for r in conn.execute(
                    "SELECT ad_id, ad_name, adset_id, adset_name, campaign_id, campaign_name FROM meta_ads "
                    "WHERE account_id = ?",
                    (account["account_id"],),
                )
            }
            raw = conn.execute(
                "SELECT day, ad_id, spend_cents, impressions, clicks, reach, actions FROM meta_ad_delivery "
                "WHERE account_id = ? AND day >= ? AND day <= ? ORDER BY day, ad_id",
                (account["account_id"], since.isoformat(), until.isoformat()),
            ).fetchall()
            overrides = {
                (r[0], r[1]): json.loads(r[2])
                for r in conn.execute(
                    "SELECT day, ad_id, figures FROM meta_insights_overrides WHERE account_id = ? "
                    "AND day >= ? AND day <= ?",
                    (account["account_id"], since.isoformat(), until.isoformat()),
                )
            }
        today = self.today(account)
        generation = int(self.app.now() // 86400)
        out = []
        for day, ad_id, spend, impressions, clicks, reach, actions in raw:
            ad = ads.get(ad_id)
            row = {
                "day": day,
                "ad_id": ad_id,
                "ad_name": ad[1] if ad else ad_id,
                "adset_id": ad[2] if ad else "",
                "adset_name": ad[3] if ad else "",
                "campaign_id": ad[4] if ad else "",
                "campaign_name": ad[5] if ad else "",
                "spend_cents": spend,
                "impressions": impressions,
                "clicks": clicks,
                "reach": reach,
                "actions": json.loads(actions),
            }
            age = (today - date.fromisoformat(day)).days
            if 0 <= age < self.restate_days:
                _drift(row, generation)
            row.update(overrides.get((day, ad_id), {}))
            out.append(row)
        account_overrides = {day: figures for (day, ad_id), figures in overrides.items() if ad_id == ""}
        return out, account_overrides

    # -- jobs ----------------------------------------------------------------------------------

    def new_job(self, account_id: str, params: dict) -> str:
        with self._lock:
            run_id = str(next(self._ids))
            behaviour = "normal"
            span = _span_days(params)
            if self.fail_next:
                self.fail_next -= 1
                behaviour = "fail"
            elif self.stall_next:
                self.stall_next -= 1
                behaviour = "stall"
            elif self.skip_next:
                self.skip_next -= 1
                behaviour = "skip"
            elif self.fail_ranges_longer_than_days is not None and span > self.fail_ranges_longer_than_days:
                behaviour = "fail"
        with self.store.transaction() as conn:
            conn.execute(
                "INSERT INTO meta_report_runs (id, account_id, params, behaviour, created_at) VALUES (?,?,?,?,?)",
                (run_id, account_id, json.dumps(params), behaviour, self.app.now()),
            )
        return run_id

    def poll(self, run_id: str) -> dict | None:
        with self.store.transaction(immediate=True) as conn:
            row = conn.execute(
                "SELECT account_id, params, behaviour, polls, created_at, completed_at FROM meta_report_runs "
                "WHERE id = ?",
                (run_id,),
            ).fetchone()
            if row is None:
                return None
            account_id, params, behaviour, polls, created_at, completed_at = row
            polls += 1
            done = behaviour == "normal" and polls > self.polls_to_complete
            if done and completed_at is None:
                completed_at = self.app.now()
            conn.execute("UPDATE meta_report_runs SET polls = ?, completed_at = ? WHERE id = ?",
                         (polls, completed_at, run_id))
        params = json.loads(params)
        time_range = _time_range(params)
        job = {
            "id": run_id,
            "account_id": account_id.removeprefix("act_"),
            "time_ref": int(created_at),
            "date_start": time_range[0].isoformat() if time_range else None,
            "date_stop": time_range[1].isoformat() if time_range else None,
        }
        if behaviour == "fail" and polls >= 2:
            job.update(
                async_status="Job Failed",
                async_percent_completion=0,
                error_code=-2,
                error_subcode=FAILED_SUBCODE,
                error_message="The async report failed. Try again later.",
                error_user_title="Report failed",
                error_user_msg="The report could not be completed. Try a smaller date range.",
            )
        elif behaviour == "skip" and polls >= 2:
            job.update(async_status="Job Skipped", async_percent_completion=0)
        elif behaviour == "stall" and polls >= 2:
            job.update(async_status="Job Running", async_percent_completion=37)
        elif done:
            job.update(async_status="Job Completed", async_percent_completion=100,
                       time_completed=int(completed_at))
        else:
            step = min(polls - 1, len(STATES) - 1)
            pct = 100 if polls == self.polls_to_complete else int(100 * (polls - 1) / max(self.polls_to_complete, 1))
            job.update(async_status=STATES[step] if pct < 100 else "Job Running", async_percent_completion=pct)
        return job

    def job(self, run_id: str) -> tuple[str, dict, bool] | None:
        with self.store.connection() as conn:
            row = conn.execute(
                "SELECT account_id, params, completed_at FROM meta_report_runs WHERE id = ?", (run_id,)
            ).fetchone()
        if row is None:
            return None
        return row[0], json.loads(row[1]), row[2] is not None

    def summary(self) -> dict:
        with self.store.connection() as conn:
            jobs = dict(conn.execute("SELECT behaviour, count(*) FROM meta_report_runs GROUP BY behaviour"))
            delivery = conn.execute("SELECT count(*) FROM meta_ad_delivery").fetchone()[0]
        return {"report_runs": jobs, "delivery_rows": delivery}


def load(store: SandboxStore, accounts: Iterable[dict] = (), ads: Iterable[dict] = (),
         delivery: Iterable[dict] = ()) -> int:
    """Write ad accounts, ads and delivery rows into the sandbox state; returns delivery rows written."""
    with store.connection() as conn:
        conn.executescript(SCHEMA)
    with store.transaction() as conn:
        conn.executemany(
            "INSERT OR REPLACE INTO meta_ad_accounts VALUES (?,?,?,?)",
            [(a["account_id"], a.get("name", a["account_id"]), a["currency"], a["timezone_name"])
             for a in accounts],
        )
        conn.executemany(
            "INSERT OR REPLACE INTO meta_ads VALUES (?,?,?,?,?,?,?)",
            [(a["ad_id"], a["account_id"], a["ad_name"], a["adset_id"], a["adset_name"], a["campaign_id"],
              a["campaign_name"]) for a in ads],
        )
    written = 0
    batch: list[tuple] = []
    for row in delivery:
        batch.append((row["account_id"], row["day"], row["ad_id"], row["spend_cents"], row["impressions"],
                      row["clicks"], row["reach"], json.dumps(row["actions"], separators=(",", ":"))))
        if len(batch) >= 20_000:
            written += _write_delivery(store, batch)
            batch = []
    return written + _write_delivery(store, batch)


def _write_delivery(store: SandboxStore, batch: list[tuple]) -> int:
    if batch:
        with store.transaction() as conn:
            conn.executemany("INSERT OR REPLACE INTO meta_ad_delivery VALUES (?,?,?,?,?,?,?,?)", batch)
    return len(batch)


def seed_business(store: SandboxStore, business, *, account_id: str | None = None) -> int:
    """The generated business's ad account, ads and delivery, written into the sandbox state."""
    from adloop.sandbox import ad_delivery

    account_id = account_id or ad_delivery.ACCOUNT_ID
    account = {"account_id": account_id, "name": ad_delivery.ACCOUNT_NAME, "currency": ad_delivery.ACCOUNT_CURRENCY,
               "timezone_name": ad_delivery.ACCOUNT_TIMEZONE}
    return load(store, [account], ad_delivery.ads_structure(business, account_id),
                ad_delivery.business_delivery(business, account_id=account_id))


def _drift(row: dict, generation: int) -> None:
    """Late billing and late conversions: a recent day's figures as of `generation`."""
    h = int.from_bytes(hashlib.blake2b(f"{row['ad_id']}|{row['day']}|{generation}".encode(),
                                       digest_size=4).digest(), "big")
    extra = row["spend_cents"] * (h % 5) // 100
    row["spend_cents"] += extra
    row["impressions"] += row["impressions"] * (h % 5) // 100
    if h % 3 == 0:
        actions = {k: list(v) for k, v in row["actions"].items()}
        actions["purchase"][1] += 1
        actions["schedule"][1] += 1
        actions["purchase_value"][1] += 2625
        row["actions"] = actions


# -- request handling ------------------------------------------------------------------------------


def register(app) -> InsightsEmulator:
    """Add the ads and insights routes (and their control routes) to a MetaApp."""
    emulator = InsightsEmulator(app)
    app.insights = emulator
    version = r"(?:/(?P<version>v\d+\.\d+))?"
    account = r"/(?P<account>act_\d+)"
    app.add_route("GET", version + account + r"/?", lambda r: _get_account(emulator, r), "ad account")
    for edge in ("campaigns", "adsets", "ads"):
        app.add_route("GET", version + account + f"/{edge}/?", _lister(emulator, edge), edge)
    app.add_route("GET", version + account + r"/insights/?", lambda r: _sync_insights(emulator, r), "insights")
    app.add_route("POST", version + account + r"/insights/?", lambda r: _create_job(emulator, r),
                  "insights async")
    app.add_route("GET", version + r"/(?P<run_id>\d+)/?", lambda r: _get_job(emulator, r), "report run")
    app.add_route("GET", version + r"/(?P<run_id>\d+)/insights/?", lambda r: _job_results(emulator, r),
                  "report run insights")
    app.add_control_route("POST", "insights/delivery", lambda r: _control_load(emulator, r))
    app.add_control_route("POST", "insights/jobs", lambda r: _control_jobs(emulator, r))
    app.add_control_route("POST", "insights/override", lambda r: _control_override(emulator, r))
    app.add_control_route("GET", "insights/summary", lambda r: Response.json(emulator.summary()))
    return emulator


def _error(status: int, message: str, code: int, subcode: int | None = None, **extra: Any) -> HTTPError:
    from adloop.sandbox.meta_api import graph_error

    return HTTPError(graph_error(status, message, code, subcode=subcode, **extra))


def _fields(request: Request) -> dict[str, Any]:
    fields: dict[str, Any] = dict(request.query_pairs())
    if request.method == "POST":
        try:
            fields.update(request.body_fields())
        except (ValueError, UnicodeDecodeError):
            raise _error(400, "(#100) The request body could not be parsed", 100) from None
    return fields


def _json_param(fields: dict, name: str, default: Any = None) -> Any:
    value = fields.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            if name == "fields":
                return value.split(",")
            raise _error(400, f"(#100) Param {name} must be JSON", 100) from None
    return value


def _known_account(emulator: InsightsEmulator, request: Request) -> dict:
    account = emulator.account(request.params["account"])
    if account is None:
        raise _error(400, f"(#100) Object with ID '{request.params['account']}' does not exist", 100, subcode=33,
                     type_="GraphMethodException")
    return account


def _guard_usage(emulator: InsightsEmulator, key: str, *, refuse: bool = True) -> dict[str, str]:
    """The insights throttle header for the account; at 100 % the call is refused (error 80000)."""
    now = emulator.app.now()
    app_pct, _ = emulator.app.usage_meter.usage("app", now)
    pct, _ = emulator.app.usage_meter.usage(key, now)
    if refuse and pct >= 100:
        raise _error(400, "(#80000) There have been too many calls from this ad-account. Wait a bit and try again.",
                     80000, subcode=2446079, is_transient=True)
    throttle = {"app_id_util_pct": app_pct, "acc_id_util_pct": pct, "ads_api_access_tier": "standard_access"}
    return {"X-FB-Ads-Insights-Throttle": json.dumps(throttle, separators=(",", ":"))}


def _get_account(emulator: InsightsEmulator, request: Request) -> Response:
    account = _known_account(emulator, request)
    return Response.json({
        "id": account["account_id"],
        "account_id": account["account_id"].removeprefix("act_"),
        "name": account["name"],
        "currency": account["currency"],
        "timezone_name": account["timezone_name"],
    })


def _lister(emulator: InsightsEmulator, edge: str):
    columns = {"campaigns": ("campaign_id", "campaign_name"), "adsets": ("adset_id", "adset_name", "campaign_id"),
               "ads": ("ad_id", "ad_name", "adset_id", "campaign_id")}[edge]

    def handler(request: Request) -> Response:
        account = _known_account(emulator, request)
        with emulator.store.connection() as conn:
            rows = conn.execute(
                f"SELECT DISTINCT {', '.join(columns)} FROM meta_ads WHERE account_id = ? ORDER BY 1",
                (account["account_id"],),
            ).fetchall()
        items = [{"id": r[0], "name": r[1], **dict(zip(columns[2:], r[2:], strict=True))} for r in rows]
        return _page(items, _fields(request), {})

    return handler


def _time_range(params: dict) -> tuple[date, date] | None:
    time_range = _json_param(params, "time_range")
    if not time_range:
        return None
    try:
        return date.fromisoformat(time_range["since"]), date.fromisoformat(time_range["until"])
    except (KeyError, TypeError, ValueError):
        raise _error(400, "(#100) time_range must be {\"since\": \"YYYY-MM-DD\", \"until\": \"YYYY-MM-DD\"}",
                     100) from None


def _span_days(params: dict) -> int:
    time_range = _time_range(params)
    return (time_range[1] - time_range[0]).days + 1 if time_range else 1


def _validate(emulator: InsightsEmulator, account: dict, params: dict) -> dict:
    level = params.get("level") or "account"
    if level not in LEVELS:
        raise _error(400, f"(#100) level must be one of {', '.join(LEVELS)}", 100)
    time_range = _time_range(params)
    if time_range is None:
        preset = params.get("date_preset") or "last_30d"
        today = emulator.today(account)
        days = {"yesterday": 1, "last_7d": 7, "last_14d": 14, "last_28d": 28, "last_30d": 30, "last_90d": 90}
        if preset not in days:
            raise _error(400, f"(#100) date_preset {preset!r} is not supported by the sandbox", 100)
        time_range = (today - timedelta(days=days[preset]), today - timedelta(days=1))
    if time_range[0] > time_range[1]:
        raise _error(400, "(#100) time_range since must not be after until", 100)
    if (time_range[1] - time_range[0]).days > 37 * 31:
        raise _error(400, "(#3018) The start date of the time range cannot be beyond 37 months", 3018)
    increment = str(params.get("time_increment") or "all_days")
    if increment not in ("1", "all_days"):
        raise _error(400, "(#100) the sandbox supports time_increment 1 or all_days", 100)
    windows = _json_param(params, "action_attribution_windows", [])
    fields = _json_param(params, "fields", [])
    if isinstance(fields, str):
        fields = fields.split(",")
    return {"level": level, "since": time_range[0], "until": time_range[1], "daily": increment == "1",
            "windows": [w for w in windows if w in SERVED_WINDOWS], "fields": list(fields)}


def _insights(emulator: InsightsEmulator, account: dict, query: dict) -> list[dict]:
    ad_rows, account_overrides = emulator.rows(account, query["since"], query["until"])
    key_fields = {"ad": ("ad_id", "ad_name", "adset_id", "adset_name", "campaign_id", "campaign_name"),
                  "adset": ("adset_id", "adset_name", "campaign_id", "campaign_name"),
                  "campaign": ("campaign_id", "campaign_name"), "account": ()}[query["level"]]
    groups: dict[tuple, dict] = {}
    for row in ad_rows:
        period = row["day"] if query["daily"] else query["since"].isoformat()
        key = (period, *(row[f] for f in key_fields))
        group = groups.get(key)
        if group is None:
            group = groups[key] = {"day": period, **{f: row[f] for f in key_fields}, "spend_cents": 0,
                                   "impressions": 0, "clicks": 0, "reach": 0, "actions": {}}
        for f in ("spend_cents", "impressions", "clicks", "reach"):
            group[f] += row[f]
        for kind, buckets in row["actions"].items():
            total = group["actions"].setdefault(kind, [0, 0, 0, 0])
            for i, n in enumerate(buckets):
                total[i] += n
    if query["level"] == "account":
        for group in groups.values():
            group.update(account_overrides.get(group["day"], {}))
    out = []
    for key in sorted(groups):
        out.append(_render(account, groups[key], query))
    return out


def _render(account: dict, group: dict, query: dict) -> dict:
    wanted = set(query["fields"]) or {"spend", "impressions"}
    stop = group["day"] if query["daily"] else query["until"].isoformat()
    row: dict[str, Any] = {}
    identity = {"account_id": account["account_id"].removeprefix("act_"), "account_currency": account["currency"],
                "account_name": account["name"]}
    for name in ("account_id", "account_currency", "account_name", "ad_id", "ad_name", "adset_id", "adset_name",
                 "campaign_id", "campaign_name"):
        if name in wanted:
            row[name] = group.get(name, identity.get(name))
    if "spend" in wanted:
        row["spend"] = f"{group['spend_cents'] / 100:.2f}"
    for name in ("impressions", "clicks", "reach"):
        if name in wanted:
            row[name] = str(group[name])
    if "attribution_setting" in wanted and query["level"] == "ad":
        row["attribution_setting"] = "7d_click_1d_view"
    for field_name, value_field in (("actions", False), ("action_values", True)):
        if field_name in wanted:
            entries = _action_entries(group["actions"], query["windows"], values=value_field)
            if entries:
                row[field_name] = entries
    row["date_start"] = group["day"]
    row["date_stop"] = stop
    return row


def _action_entries(actions: dict, windows: list[str], *, values: bool) -> list[dict]:
    entries = []
    for kind, action_types in ACTION_TYPES.items():
        source = VALUE_KINDS.get(kind) if values else kind
        if source is None or source not in actions:
            continue
        c1, c7, c28, v1 = actions[source]
        by_window = {"1d_click": c1, "7d_click": c1 + c7, "28d_click": c1 + c7 + c28, "1d_view": v1, "1d_ev": 0}
        default = c1 + c7 + v1  # the ad sets' attribution setting: 7-day click or 1-day view
        if not default and not any(by_window[w] for w in windows):
            continue
        for action_type in action_types:
            entry = {"action_type": action_type, "value": _number(default, values)}
            for window in windows:
                entry[window] = _number(by_window[window], values)
            entries.append(entry)
    return entries


def _number(n: int, money: bool) -> str:
    return f"{n / 100:.2f}" if money else str(n)


def _page(items: list[dict], fields: dict, headers: dict[str, str]) -> Response:
    try:
        limit = int(fields.get("limit") or DEFAULT_PAGE_SIZE)
        offset = int(base64.urlsafe_b64decode(fields["after"]).decode()) if fields.get("after") else 0
    except (ValueError, TypeError):
        raise _error(400, "(#100) Invalid limit or after cursor", 100) from None
    limit = max(1, min(limit, MAX_PAGE_SIZE))
    page = items[offset: offset + limit]
    body: dict[str, Any] = {"data": page}
    if page:
        cursors = {"before": _cursor(offset), "after": _cursor(offset + len(page))}
        body["paging"] = {"cursors": cursors}
        if offset + len(page) < len(items):
            body["paging"]["next"] = f"https://graph.facebook.com/insights?after={cursors['after']}&limit={limit}"
    return Response.json(body, headers=headers)


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(str(offset).encode()).decode()


def _sync_insights(emulator: InsightsEmulator, request: Request) -> Response:
    account = _known_account(emulator, request)
    headers = _guard_usage(emulator, account["account_id"])
    fields = _fields(request)
    query = _validate(emulator, account, fields)
    rows = _insights(emulator, account, query)
    if len(rows) > SYNC_MAX_ROWS:
        raise _error(400, "(#100) Too many rows requested. Please reduce the date range, the number of ids or "
                     "fields, or use an asynchronous request.", 100, subcode=1487534)
    return _page(rows, fields, headers)


def _create_job(emulator: InsightsEmulator, request: Request) -> Response:
    account = _known_account(emulator, request)
    headers = _guard_usage(emulator, account["account_id"])
    fields = _fields(request)
    _validate(emulator, account, fields)
    params = {k: v for k, v in fields.items() if k != "access_token"}
    return Response.json({"report_run_id": emulator.new_job(account["account_id"], params)}, headers=headers)


def _get_job(emulator: InsightsEmulator, request: Request) -> Response:
    job = emulator.poll(request.params["run_id"])
    if job is None:
        raise _error(400, f"(#100) Object with ID '{request.params['run_id']}' does not exist", 100, subcode=33)
    # Polls count against the ad account's quota, as every call about its data does.
    emulator.app.usage_meter.hit(f"act_{job['account_id']}", emulator.app.now())
    return Response.json(job, headers=_guard_usage(emulator, f"act_{job['account_id']}", refuse=False))


def _job_results(emulator: InsightsEmulator, request: Request) -> Response:
    found = emulator.job(request.params["run_id"])
    if found is None:
        raise _error(400, f"(#100) Object with ID '{request.params['run_id']}' does not exist", 100, subcode=33)
    account_id, params, completed = found
    if not completed:
        raise _error(400, "(#100) The report is not ready yet: poll the report run until Job Completed", 100)
    account = emulator.account(account_id)
    emulator.app.usage_meter.hit(account_id, emulator.app.now())
    headers = _guard_usage(emulator, account_id)
    with emulator._lock:
        rows = emulator._results.get(request.params["run_id"])
    if rows is None:
        rows = _insights(emulator, account, _validate(emulator, account, params))
        with emulator._lock:
            while len(emulator._results) >= 4:
                emulator._results.pop(next(iter(emulator._results)))
            emulator._results[request.params["run_id"]] = rows
    return _page(rows, _fields(request), headers)


# -- control routes -------------------------------------------------------------------------------


def _control_load(emulator: InsightsEmulator, request: Request) -> Response:
    body = request.json() or {}
    loaded = emulator.load(body.get("accounts", ()), body.get("ads", ()), body.get("delivery", ()))
    return Response.json({"delivery_rows": loaded})


def _control_jobs(emulator: InsightsEmulator, request: Request) -> Response:
    body = request.json() or {}
    for name in ("fail_next", "stall_next", "skip_next", "polls_to_complete", "restate_days"):
        if name in body:
            setattr(emulator, name, int(body[name]))
    if "fail_ranges_longer_than_days" in body:
        value = body["fail_ranges_longer_than_days"]
        emulator.fail_ranges_longer_than_days = None if value is None else int(value)
    return Response.json({name: getattr(emulator, name) for name in (
        "fail_next", "stall_next", "skip_next", "polls_to_complete", "restate_days",
        "fail_ranges_longer_than_days")})


def _control_override(emulator: InsightsEmulator, request: Request) -> Response:
    """`{"account_id", "day", "ad_id" ("" for the account totals), "figures": {"spend_cents": ...}}`."""
    body = request.json() or {}
    overrides = body if isinstance(body, list) else [body]
    with emulator.store.transaction() as conn:
        conn.executemany(
            "INSERT OR REPLACE INTO meta_insights_overrides VALUES (?,?,?,?)",
            [(o["account_id"], o["day"], o.get("ad_id", ""), json.dumps(o["figures"])) for o in overrides],
        )
    return Response.json({"overrides": len(overrides)})
