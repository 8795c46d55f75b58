"""Airflow glue: adloop's settings from the Connections `stripe_default`, `meta_default` and
`warehouse_default`.

Airflow puts this folder on sys.path, so DAG tasks import it as `adloop_hooks`. The domain code in
include/adloop never imports Airflow; this module is the only bridge.

Connection shapes (see README, "Point adloop at real accounts"):
- stripe_default: password = the secret key (sk_live_...); host = API base, blank for Stripe's.
- meta_default: password = a system-user access token; host = Graph URL, blank for Meta's;
  extra = {"pixel_id": "...", "api_version": "v26.0", "test_event_code": null,
           "ad_account_ids": ["act_..."], "default_country": "CA"}.
- warehouse_default: extra {"url": "<SQLAlchemy URL>"}, or a postgres / sqlite Connection.
"""

from __future__ import annotations

from adloop.settings import META_GRAPH_URL, STRIPE_API_BASE, MetaSettings, Settings, StripeSettings


def _connection(conn_id: str):
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
        conn = _connection("stripe_default")
        if not conn.password:
            raise RuntimeError("Connection 'stripe_default' has no password: put the Stripe secret key there")
        stripe_cfg = StripeSettings(api_key=conn.password, api_base=(conn.host or STRIPE_API_BASE).rstrip("/"))
    if meta:
        conn = _connection("meta_default")
        meta_extra = conn.extra_dejson or {}
        if not conn.password:
            raise RuntimeError("Connection 'meta_default' has no password: put the Meta access token there")
        tuning = {k: meta_extra[k] for k in ("timeout_seconds", "max_attempts", "batch_size", "backoff_base_seconds",
                                              "backoff_max_seconds") if k in meta_extra}
        meta_cfg = MetaSettings(
            access_token=conn.password,
            pixel_id=str(meta_extra.get("pixel_id") or ""),
            graph_url=(conn.host or META_GRAPH_URL).rstrip("/"),
            api_version=meta_extra.get("api_version") or MetaSettings.api_version,
            test_event_code=meta_extra.get("test_event_code") or None,
            ad_account_ids=tuple(meta_extra.get("ad_account_ids") or ()),
            **tuning,
        )
    return Settings(
        warehouse_url=warehouse_url(_connection("warehouse_default")),
        stripe=stripe_cfg,
        meta=meta_cfg,
        default_country=meta_extra.get("default_country") or "CA",
    )
