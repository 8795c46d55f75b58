"""The ROAS report: one self-contained HTML page with inline SVG charts and the kill-or-scale table.

Charts (no JavaScript, no external assets, so it opens from a file, an email or the Airflow UI):

1. ROAS per ad over the recommendation window, Meta's claim beside Stripe's cash, with the target.
2. Spend against revenue per day over every day with insights: spend, Stripe net revenue, Meta value.
3. Cost per booking per ad over the window.

Then the table: per ad, spend, bookings, signups, Meta value, Stripe net revenue, both ROAS, cost
per booking, the decision and the reason. Every number drawn carries a `data-` attribute with its
value, so a test (or a curious marketer's devtools) can check the page against the warehouse.

`render_report` stores the page in `roas_reports` (what the Airflow UI plugin serves) and writes it
to a file.
"""

from __future__ import annotations

import html
import logging
import os
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select

from adloop.warehouse import connect
from adloop.warehouse.insights_schema import ad_recommendations, roas_daily, roas_reports
from adloop.warehouse.schema import reconciliation_runs

log = logging.getLogger(__name__)

REPORT_FILE = "roas_report.html"
COLORS = {"meta": "#4267b2", "stripe": "#1a9c6b", "spend": "#d9822b", "target": "#c23030", "bar": "#6b5fb5"}
DECISION_COLORS = {"kill": "#c23030", "scale": "#1a9c6b", "hold": "#8a8a8a"}


def default_report_dir() -> Path:
    """`ADLOOP_REPORT_DIR`, or `.adloop/reports` in the project (the one-machine setup)."""
    configured = os.environ.get("ADLOOP_REPORT_DIR")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[3] / ".adloop" / "reports"


def render_report(warehouse_url: str, run_id: str, *, report_dir: Path | str | None = None) -> dict:
    """Build the page from the warehouse, store it in roas_reports, and write it to `report_dir`."""
    engine = connect(warehouse_url)
    data = _load(engine)
    page = render_html(data, run_id=run_id, generated_at=datetime.now(UTC))
    with engine.begin() as conn:
        conn.execute(roas_reports.insert().values(run_id=run_id, generated_at=datetime.now(UTC),
                                                  ads=len(data["ads"]), html=page))
    path = Path(report_dir) if report_dir else default_report_dir()
    path.mkdir(parents=True, exist_ok=True)
    target = path / REPORT_FILE
    tmp = target.with_suffix(".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(target)
    log.info("report: %s ads, %s days, written to %s and roas_reports", len(data["ads"]), len(data["days"]), target)
    return {"ads": len(data["ads"]), "days": len(data["days"]), "path": str(target), "bytes": len(page)}


def latest_report(warehouse_url: str) -> str | None:
    """The most recent report's HTML, or None before the first run."""
    with connect(warehouse_url).connect() as conn:
        return conn.execute(select(roas_reports.c.html).order_by(roas_reports.c.id.desc()).limit(1)).scalar()


def _load(engine) -> dict:
    r = roas_daily
    with engine.connect() as conn:
        ads = [dict(row._mapping) for row in conn.execute(
            select(ad_recommendations).order_by(ad_recommendations.c.decision, ad_recommendations.c.spend.desc()))]
        days = [dict(row._mapping) for row in conn.execute(
            select(r.c.day, func.sum(r.c.spend).label("spend"),
                   func.sum(r.c.stripe_net_revenue).label("stripe"),
                   func.sum(r.c.meta_purchase_value + r.c.meta_subscribe_value).label("meta"))
            .where(r.c.level == "ad").group_by(r.c.day).order_by(r.c.day))]
        coverage = conn.execute(select(func.min(reconciliation_runs.c.window_start),
                                       func.max(reconciliation_runs.c.window_end))).one()
    return {"ads": ads, "days": days, "stripe_from": coverage[0], "stripe_to": coverage[1]}


# --- rendering ---------------------------------------------------------------------------------


def _esc(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(value, digits: int = 2) -> str:
    return "—" if value is None else f"{float(value):,.{digits}f}"


def _attr(value) -> str:
    return "" if value is None else f"{float(value):.4f}"


def render_html(data: dict, *, run_id: str, generated_at: datetime) -> str:
    ads, days = data["ads"], data["days"]
    currency = next((a["currency"] for a in ads if a.get("currency")), "")
    window = f"{ads[0]['window_start']} to {ads[0]['window_end']}" if ads else "no data yet"
    target = ads[0]["target_roas"] if ads else None
    counts = {d: sum(1 for a in ads if a["decision"] == d) for d in ("kill", "scale", "hold")}
    if data.get("stripe_from"):
        coverage = (f"Stripe figures cover what reconciliation runs extracted: {data['stripe_from']:%Y-%m-%d} to "
                    f"{data['stripe_to']:%Y-%m-%d} (UTC). Days outside that range show no Stripe revenue.")
    else:
        coverage = "No reconciliation run has extracted Stripe conversions yet: Stripe revenue shows as zero."
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>adloop: ROAS and kill-or-scale</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>ROAS and kill-or-scale</h1>",
        f'<p class="meta" id="summary" data-run-id="{_esc(run_id)}" data-ads="{len(ads)}" '
        f'data-kill="{counts["kill"]}" data-scale="{counts["scale"]}" data-hold="{counts["hold"]}">'
        f"Window {_esc(window)} · {len(ads)} ads: <b>{counts['kill']}</b> to kill, <b>{counts['scale']}</b> to "
        f"scale, <b>{counts['hold']}</b> to hold · target Stripe ROAS {_num(target)} · amounts in "
        f"{_esc(currency)} · generated {generated_at:%Y-%m-%d %H:%M} UTC by run {_esc(run_id)}</p>",
        f'<p class="note">{_esc(coverage)}</p>',
        "<h2>ROAS per ad</h2>",
        _roas_chart(ads, target),
        "<h2>Spend against revenue, per day</h2>",
        _timeline_chart(days),
        "<h2>Cost per booking</h2>",
        _cost_chart(ads),
        "<h2>Kill or scale</h2>",
        _table(ads),
        "</body></html>",
    ]
    return "\n".join(parts)


def _label(ad: dict) -> str:
    name = ad.get("ad_name") or ad["ad_id"]
    return name if len(name) <= 34 else name[:33] + "…"


def _roas_chart(ads: list[dict], target: float | None) -> str:
    if not ads:
        return '<svg id="chart-roas" data-ads="0" width="600" height="40"><text x="0" y="20">No ads yet</text></svg>'
    row_h, left, width = 26, 230, 460
    top = 24
    peak = max([a["meta_roas"] or 0 for a in ads] + [a["stripe_roas"] or 0 for a in ads] + [target or 0, 0.1])
    scale = width / peak
    height = top + row_h * len(ads) + 30
    out = [f'<svg id="chart-roas" data-ads="{len(ads)}" width="{left + width + 80}" height="{height}" '
           f'role="img" aria-label="ROAS per ad">',
           _legend([("Meta ROAS", COLORS["meta"]), ("Stripe ROAS", COLORS["stripe"]), ("target", COLORS["target"])])]
    for i, ad in enumerate(ads):
        y = top + i * row_h
        out.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end" class="label">{_esc(_label(ad))}</text>')
        for j, (key, color) in enumerate((("meta_roas", COLORS["meta"]), ("stripe_roas", COLORS["stripe"]))):
            value = ad[key]
            w = max(0.0, (value or 0) * scale)
            out.append(
                f'<rect class="bar {key}" data-ad-id="{_esc(ad["ad_id"])}" data-value="{_attr(value)}" '
                f'x="{left}" y="{y + 2 + j * 11}" width="{w:.1f}" height="10" fill="{color}">'
                f'<title>{_esc(_label(ad))}: {key.replace("_", " ")} {_num(value)}</title></rect>'
            )
        out.append(f'<text x="{left + max((ad["stripe_roas"] or 0), (ad["meta_roas"] or 0)) * scale + 4:.1f}" '
                   f'y="{y + 15}" class="value">{_num(ad["stripe_roas"])}</text>')
    if target:
        x = left + target * scale
        out.append(f'<line id="target-line" data-value="{_attr(target)}" x1="{x:.1f}" x2="{x:.1f}" y1="{top - 4}" '
                   f'y2="{height - 26}" stroke="{COLORS["target"]}" stroke-dasharray="4 3"/>')
    out.append("</svg>")
    return "".join(out)


def _timeline_chart(days: list[dict]) -> str:
    if not days:
        return '<svg id="chart-timeline" data-days="0" width="600" height="40"><text x="0" y="20">No days yet</text></svg>'
    left, top, width, height = 60, 24, 760, 220
    peak = max(max(float(d["spend"] or 0), float(d["stripe"] or 0), float(d["meta"] or 0)) for d in days) or 1.0
    step = width / max(len(days) - 1, 1)
    out = [f'<svg id="chart-timeline" data-days="{len(days)}" width="{left + width + 20}" height="{top + height + 40}" '
           f'role="img" aria-label="Spend against revenue per day">',
           _legend([("spend", COLORS["spend"]), ("Stripe net revenue", COLORS["stripe"]),
                    ("Meta value", COLORS["meta"])])]
    for k in range(5):
        y = top + height - height * k / 4
        out.append(f'<line x1="{left}" x2="{left + width}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                   f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="axis">{peak * k / 4:,.0f}</text>')
    for key, color in (("spend", COLORS["spend"]), ("stripe", COLORS["stripe"]), ("meta", COLORS["meta"])):
        points = " ".join(
            f"{left + i * step:.1f},{top + height - height * float(d[key] or 0) / peak:.1f}" for i, d in enumerate(days)
        )
        total = sum(float(d[key] or 0) for d in days)
        out.append(f'<polyline class="series" id="series-{key}" data-total="{total:.2f}" points="{points}" '
                   f'fill="none" stroke="{color}" stroke-width="2"/>')
    for i, d in enumerate(days):
        out.append(f'<circle class="day" data-day="{_esc(d["day"])}" data-spend="{float(d["spend"] or 0):.2f}" '
                   f'data-stripe="{float(d["stripe"] or 0):.2f}" cx="{left + i * step:.1f}" '
                   f'cy="{top + height - height * float(d["spend"] or 0) / peak:.1f}" r="2" fill="{COLORS["spend"]}">'
                   f'<title>{_esc(d["day"])}: spend {_num(d["spend"])}, Stripe {_num(d["stripe"])}, '
                   f'Meta {_num(d["meta"])}</title></circle>')
    first, last = days[0]["day"], days[-1]["day"]
    out.append(f'<text x="{left}" y="{top + height + 18}" class="axis">{_esc(first)}</text>'
               f'<text x="{left + width}" y="{top + height + 18}" text-anchor="end" class="axis">{_esc(last)}</text>')
    out.append("</svg>")
    return "".join(out)


def _cost_chart(ads: list[dict]) -> str:
    with_bookings = [a for a in ads if a["cost_per_booking"] is not None]
    left, width, row_h, top = 230, 460, 20, 10
    if not with_bookings:
        return '<svg id="chart-cpb" data-ads="0" width="600" height="40"><text x="0" y="20">No bookings yet</text></svg>'
    peak = max(a["cost_per_booking"] for a in with_bookings) or 1.0
    out = [f'<svg id="chart-cpb" data-ads="{len(with_bookings)}" width="{left + width + 80}" '
           f'height="{top + row_h * len(with_bookings) + 10}" role="img" aria-label="Cost per booking per ad">']
    for i, ad in enumerate(sorted(with_bookings, key=lambda a: a["cost_per_booking"])):
        y = top + i * row_h
        w = width * ad["cost_per_booking"] / peak
        out.append(f'<text x="{left - 8}" y="{y + 13}" text-anchor="end" class="label">{_esc(_label(ad))}</text>'
                   f'<rect class="bar cpb" data-ad-id="{_esc(ad["ad_id"])}" data-value="{_attr(ad["cost_per_booking"])}" '
                   f'x="{left}" y="{y + 2}" width="{w:.1f}" height="14" fill="{COLORS["bar"]}"/>'
                   f'<text x="{left + w + 4:.1f}" y="{y + 13}" class="value">{_num(ad["cost_per_booking"])}</text>')
    out.append("</svg>")
    return "".join(out)


def _legend(items: list[tuple[str, str]]) -> str:
    out, x = [], 0
    for name, color in items:
        out.append(f'<rect x="{x}" y="2" width="12" height="12" fill="{color}"/>'
                   f'<text x="{x + 16}" y="12" class="axis">{_esc(name)}</text>')
        x += 30 + 7 * len(name)
    return "".join(out)


_COLUMNS = (
    ("ad", "Ad"), ("campaign", "Campaign / ad set"), ("spend", "Spend"), ("bookings", "Bookings"),
    ("signups", "Signups"), ("meta_value", "Meta value"), ("stripe_net_revenue", "Stripe net"),
    ("meta_roas", "Meta ROAS"), ("stripe_roas", "Stripe ROAS"), ("cost_per_booking", "Cost / booking"),
    ("decision", "Call"), ("reason", "Why"),
)


def _table(ads: list[dict]) -> str:
    head = "".join(f"<th>{_esc(title)}</th>" for _, title in _COLUMNS)
    rows = []
    for ad in ads:
        cells = [
            f'<td>{_esc(ad["ad_name"])}<div class="id">{_esc(ad["ad_id"])}</div></td>',
            f'<td>{_esc(ad["campaign_name"])}<div class="id">{_esc(ad["adset_name"])}</div></td>',
            f'<td class="n" data-col="spend">{_num(ad["spend"])}</td>',
            f'<td class="n" data-col="bookings">{ad["bookings"]}</td>',
            f'<td class="n" data-col="signups">{ad["signups"]}</td>',
            f'<td class="n" data-col="meta_value">{_num(ad["meta_value"])}</td>',
            f'<td class="n" data-col="stripe_net_revenue">{_num(ad["stripe_net_revenue"])}</td>',
            f'<td class="n" data-col="meta_roas">{_num(ad["meta_roas"])}</td>',
            f'<td class="n" data-col="stripe_roas">{_num(ad["stripe_roas"])}</td>',
            f'<td class="n" data-col="cost_per_booking">{_num(ad["cost_per_booking"])}</td>',
            f'<td><span class="call" style="background:{DECISION_COLORS[ad["decision"]]}">'
            f'{_esc(ad["decision"])}</span></td>',
            f'<td class="why">{_esc(ad["reason"])}</td>',
        ]
        rows.append(f'<tr data-ad-id="{_esc(ad["ad_id"])}" data-decision="{_esc(ad["decision"])}" '
                    f'data-spend="{float(ad["spend"]):.2f}" data-stripe-roas="{_attr(ad["stripe_roas"])}">'
                    + "".join(cells) + "</tr>")
    return f'<table id="recommendations"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


_CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px;margin:0 0 6px}h2{font-size:16px;margin:28px 0 8px}
.meta{color:#444}.note{color:#777;font-size:12px}
svg text{font-size:11px;fill:#333}svg .axis{fill:#777}svg .grid{stroke:#eee}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{padding:5px 8px;border-bottom:1px solid #eee;
vertical-align:top;text-align:left}th{background:#f6f6f6}td.n{text-align:right;font-variant-numeric:tabular-nums}
.id{color:#999;font-size:11px}.call{color:#fff;border-radius:3px;padding:1px 7px;font-weight:600}
.why{color:#555;font-size:12px;max-width:320px}
"""
