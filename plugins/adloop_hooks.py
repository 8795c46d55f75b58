"""Airflow glue: adloop's settings from the Connections `stripe_default`, `meta_default`,
`warehouse_default` and `adloop_alerts`, and the failure callback of every adloop DAG.

Airflow puts this folder on sys.path, so DAG tasks import it as `adloop_hooks`. The domain code in
include/adloop never imports Airflow; this module is the only bridge.

Connection shapes (see README, "Point adloop at real accounts" and "Alerts"):
- stripe_default: password = the secret key (sk_live_...); host = API base, blank for Stripe's.
- meta_default: password = a system-user access token; host = Graph URL, blank for Meta's;
  extra = {"pixel_id": "...", "api_version": "v26.0", "test_event_code": null,
           "ad_account_ids": ["act_..."], "default_country": "CA"}, plus optional tuning:
  "timeout_seconds", "max_attempts", "batch_size", "backoff_base_seconds", "backoff_max_seconds",
  "audience_batch_rows" and "insights" (a dict of adloop.meta.insights.InsightsOptions).
- warehouse_default: extra {"url": "<SQLAlchemy URL>"}, or a postgres / sqlite Connection.
- adloop_alerts (optional): a webhook URL as host (or extra "webhook_url"); or an SMTP server as
  host/port/login/password with conn_type smtp and extra {"to": [...], "from": "...",
  "starttls": true, "ssl": false}; or extra {"channel": "package.module:function"}.
"""

from __future__ import annotations

import logging

from adloop.settings import (
    META_GRAPH_URL,
    STRIPE_API_BASE,
    AlertSettings,
    MetaSettings,
    Settings,
    StripeSettings,
)

log = logging.getLogger(__name__)

ALERTS_CONN_ID = "adloop_alerts"
META_TUNING = ("timeout_seconds", "max_attempts", "batch_size", "backoff_base_seconds", "backoff_max_seconds",
               "audience_batch_rows")


def connection(conn_id: str):
    """The Airflow Connection `conn_id`, or a RuntimeError that says where Connections are described."""
    from airflow.sdk import BaseHook

    try:
        return BaseHook.get_connection(conn_id)
    except Exception as exc:  # Airflow raises its own not-found type, which moved between versions
        raise RuntimeError(
            f"Airflow Connection {conn_id!r} is missing or unreadable ({type(exc).__name__}); "
            "see the README section on Connections"
        ) from None


def warehouse_url(conn) -> str:
    extra = conn.extra_dejson or {}
    if extra.get("url"):
        return extra["url"]
    if conn.conn_type == "sqlite":
        return f"sqlite:///{conn.host}"
    if conn.conn_type in ("postgres", "postgresql"):
        auth = conn.login or "postgres"
        if conn.password:
            auth += f":{conn.password}"
        return f"postgresql+psycopg2://{auth}@{conn.host or '127.0.0.1'}:{conn.port or 5432}/{conn.schema or ''}"
    raise RuntimeError(
        f"Connection {conn.conn_id!r} of type {conn.conn_type!r} is not a warehouse adloop can use: "
        "give it an extra {\"url\": \"<SQLAlchemy URL>\"}, or make it a postgres or sqlite Connection"
    )


def adloop_settings(*, stripe: bool = True, meta: bool = True) -> Settings:
    meta_extra = {}
    stripe_cfg = meta_cfg = None
    if stripe:
        conn = connection("stripe_default")
        if not conn.password:
            raise RuntimeError("Connection 'stripe_default' has no password: put the Stripe secret key there")
        stripe_cfg = StripeSettings(api_key=conn.password, api_base=(conn.host or STRIPE_API_BASE).rstrip("/"))
    if meta:
        conn = connection("meta_default")
        meta_extra = conn.extra_dejson or {}
        if not conn.password:
            raise RuntimeError("Connection 'meta_default' has no password: put the Meta access token there")
        tuning = {k: meta_extra[k] for k in META_TUNING if meta_extra.get(k) is not None}
        meta_cfg = MetaSettings(
            access_token=conn.password,
            pixel_id=str(meta_extra.get("pixel_id") or ""),
            graph_url=(conn.host or META_GRAPH_URL).rstrip("/"),
            api_version=meta_extra.get("api_version") or MetaSettings.api_version,
            test_event_code=meta_extra.get("test_event_code") or None,
            ad_account_ids=tuple(meta_extra.get("ad_account_ids") or ()),
            insights=dict(meta_extra.get("insights") or {}),
            **tuning,
        )
    return Settings(
        warehouse_url=warehouse_url(connection("warehouse_default")),
        stripe=stripe_cfg,
        meta=meta_cfg,
        default_country=meta_extra.get("default_country") or "CA",
    )


# --- failure alerts -----------------------------------------------------------------------------


def alert_on_failure(context) -> None:
    """The on_failure_callback of every adloop DAG: tell the engineer what failed and what to do.

    Airflow calls it once a task has failed for good, not before a retry (that would be
    on_retry_callback, which adloop leaves unset), with the exception in `context["exception"]`.
    The alert goes to the task log, and to the channel of the `adloop_alerts` Connection when there
    is one. It never raises: Airflow would only log that, and the task's failure must stay the news.
    """
    from adloop import alerts

    try:
        alert = alerts.alert_from_context(context, redact=_mask_known_secrets)
    except Exception:
        log.exception("alerts: could not describe the failure; see the task log above")
        return
    try:
        settings = alert_settings()
    except Exception as exc:
        log.error("alerts: %s", exc)
        settings = None
    alerts.deliver(alert, settings)


def alert_settings() -> AlertSettings | None:
    """Where alerts go, from the `adloop_alerts` Connection; None when there is no such Connection."""
    from airflow.sdk import BaseHook

    try:
        conn = BaseHook.get_connection(ALERTS_CONN_ID)
    except Exception:  # not defined: alerts stay in the task log
        return None
    return alert_settings_from(conn)


def alert_settings_from(conn) -> AlertSettings:
    extra = conn.extra_dejson or {}
    host = conn.host or ""
    webhook = extra.get("webhook_url") or (host if host.startswith(("https://", "http://")) else "")
    if not webhook and conn.conn_type in ("http", "https") and host:
        # A URI (AIRFLOW_CONN_ADLOOP_ALERTS='https://hooks.slack.com/services/...') arrives split into
        # type, host, port and schema.
        port = f":{conn.port}" if conn.port else ""
        webhook = f"{conn.conn_type}://{host}{port}/{(conn.schema or '').lstrip('/')}"
    is_email = conn.conn_type in ("smtp", "email") or bool(extra.get("to"))
    channel = extra.get("channel") or ("webhook" if webhook else "email" if is_email else "")
    if not channel:
        raise RuntimeError(
            f"Connection {ALERTS_CONN_ID!r} names no channel: give it a webhook URL as host, or conn_type "
            "smtp with extra {\"to\": [...]} (see the README section on alerts); alerts stay in the task log"
        )

    to = extra.get("to") or ()
    to = [a.strip() for a in to.split(",")] if isinstance(to, str) else list(to)
    ssl = _flag(extra.get("ssl"), False)
    return AlertSettings(
        channel=channel,
        webhook_url=webhook,
        smtp_host=host if channel == "email" else "",
        smtp_port=int(conn.port or (465 if ssl else 587)),
        smtp_login=conn.login or "",
        smtp_password=conn.password or "",
        smtp_ssl=ssl,
        smtp_starttls=_flag(extra.get("starttls"), not ssl),
        mail_from=extra.get("from") or conn.login or "adloop@localhost",
        mail_to=tuple(a for a in to if a),
        timeout_seconds=float(extra.get("timeout_seconds") or 5.0),
        options=extra,
    )


def _flag(value, default: bool) -> bool:
    # The UI's extra editor makes it easy to write "false" for false.
    if value is None or value == "":
        return default
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _mask_known_secrets(text: str) -> str:
    """Airflow's secrets masker knows every Connection password and extra this process has read."""
    try:
        # Airflow's own code imports redact from here; the old public path is deprecated.
        from airflow.sdk._shared.secrets_masker import redact
    except ImportError:  # moved again: adloop's own scrub has already run
        return text
    return str(redact(text))
