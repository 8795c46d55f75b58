"""Airflow UI glue: the latest ROAS report, served by the API server and linked from the UI's nav.

`roas_report` stores each report it renders in the warehouse (`roas_reports`); this plugin serves
the newest one at `/adloop/roas` (a FastAPI app mounted in the Airflow API server) and adds
*ROAS report* under *Browse*, shown inside the Airflow UI. Reading from the warehouse rather than
a file means it works when the report was rendered on another machine (Celery or Kubernetes
workers). If the warehouse has none yet, the file in `ADLOOP_REPORT_DIR` (or `.adloop/reports`)
is served, and failing that a page that says how to make one.

Known limitation: Airflow does not put its own authentication in front of plugin FastAPI apps, so
anyone who can reach the API server can read the report (figures per ad, no customer data). Put
the API server behind your SSO proxy, as for the rest of the UI.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from airflow.plugins_manager import AirflowPlugin

log = logging.getLogger(__name__)

URL_PREFIX = "/adloop"


def _warehouse_url() -> str | None:
    if os.environ.get("ADLOOP_WAREHOUSE_URL"):
        return os.environ["ADLOOP_WAREHOUSE_URL"]
    try:
        from airflow.models.connection import Connection

        from adloop_hooks import warehouse_url

        return warehouse_url(Connection.get_connection_from_secrets("warehouse_default"))
    except Exception as exc:  # no Connection yet: fall back to the file
        log.warning("adloop report: no warehouse_default Connection (%s); serving the report file", type(exc).__name__)
        return None


def latest_report_html() -> str | None:
    url = _warehouse_url()
    if url:
        try:
            from adloop.roas.report import latest_report

            page = latest_report(url)
            if page:
                return page
        except Exception as exc:  # a warehouse without the table yet, or unreachable
            log.warning("adloop report: could not read roas_reports (%s); trying the file", type(exc).__name__)
    from adloop.roas.report import REPORT_FILE, default_report_dir

    path = Path(default_report_dir()) / REPORT_FILE
    return path.read_text(encoding="utf-8") if path.exists() else None


_NO_REPORT = """<!doctype html><html><body style="font:14px system-ui;margin:24px">
<h1>No ROAS report yet</h1><p>The report is rendered by the <code>roas_report</code> DAG after
<code>meta_ads_insights</code> or <code>stripe_capi_reconciliation</code> lands data. Trigger
<code>meta_ads_insights</code> to make the first one.</p></body></html>"""


def create_app():
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse

    app = FastAPI(title="adloop reports")

    @app.get("/roas", response_class=HTMLResponse)
    def roas() -> HTMLResponse:
        page = latest_report_html()
        if page is None:
            return HTMLResponse(_NO_REPORT, status_code=404)
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    return app


class AdloopReportPlugin(AirflowPlugin):
    name = "adloop_report"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "adloop reports"}]
    external_views = [
        {
            "name": "ROAS report",
            "href": "adloop/roas",  # relative: the UI may sit behind a proxy path
            "destination": "nav",
            "category": "browse",
            "url_route": "adloop_roas",
        }
    ]
