"""The weekly smarketing review: the numbers (from the KPI document), as an HTML page with
inline SVG charts and as CSV. Pure: the route gathers, this renders."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, date, datetime, timedelta
from html import escape
from typing import Any

from feedback.domain.funnel import LeadFacts, in_period

_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")
PALETTE = ("#2563eb", "#16a34a", "#dc2626", "#d97706", "#7c3aed", "#0891b2")


def parse_week(text: str) -> date:
    """``2026-W47`` → the Monday of that ISO week; ValueError naming the problem."""
    match = _WEEK.match(text.strip())
    if not match:
        raise ValueError(f"week: {text!r} is not an ISO week like 2026-W47")
    try:
        return date.fromisocalendar(int(match[1]), int(match[2]), 1)
    except ValueError as exc:
        raise ValueError(f"week: {text!r}: {exc}") from exc


def week_bounds(monday: date) -> tuple[datetime, datetime]:
    start = datetime(monday.year, monday.month, monday.day, tzinfo=UTC)
    return start, start + timedelta(days=7)


def daily(leads: list[LeadFacts], start: datetime) -> list[dict[str, Any]]:
    """MQLs and SQLs per day of the week."""
    days = []
    for offset in range(7):
        lo, hi = start + timedelta(days=offset), start + timedelta(days=offset + 1)
        days.append(
            {
                "day": lo.date().isoformat(),
                "mqls": sum(1 for lead in leads if in_period(lead.mql_at, lo, hi)),
                "sqls": sum(1 for lead in leads if in_period(lead.sql_at, lo, hi)),
            }
        )
    return days


def weekly(
    week: str, kpis: dict[str, Any], days: list[dict[str, Any]], labels: dict[str, str]
) -> dict[str, Any]:
    totals = kpis["totals"]
    reasons = [
        {"code": code, "label": labels.get(code, code), "count": count}
        for code, count in sorted(totals["rejection_reasons"].items(), key=lambda kv: -kv[1])
    ]
    return {
        "week": week,
        "from": kpis["from"],
        "to": kpis["to"],
        "contract_version": kpis.get("contract_version"),
        "numbers": {
            "mqls": totals["mqls"],
            "mql_target": totals["mql_target"],
            "sqls": totals["sqls"],
            "customers": totals["customers"],
            "mql_to_sql": totals["mql_to_sql"],
            "mql_to_customer": totals["mql_to_customer"],
            "sla_compliance": totals["sla_compliance"],
            "rejected": totals["rejected"],
        },
        "days": days,
        "reasons": reasons,
    }


def _fmt(key: str, value: Any) -> str:
    if value is None:
        return "–"
    if key in ("mql_to_sql", "mql_to_customer", "sla_compliance"):
        return f"{value * 100:.1f}%"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


LABELS = {
    "mqls": "MQLs",
    "mql_target": "MQL target (prorated)",
    "sqls": "SQLs (accepted)",
    "customers": "Customers",
    "mql_to_sql": "MQL → SQL",
    "mql_to_customer": "MQL → customer",
    "sla_compliance": "SLA compliance (first contact)",
    "rejected": "Rejected",
}


def _bars(days: list[dict[str, Any]]) -> str:
    width, height, pad = 560, 220, 30
    top = max([1, *(max(d["mqls"], d["sqls"]) for d in days)])
    slot = (width - 2 * pad) / len(days)
    parts = [
        f'<svg id="daily-chart" role="img" aria-label="MQLs and SQLs per day" '
        f'width="{width}" height="{height + 40}" viewBox="0 0 {width} {height + 40}">',
        f'<line x1="{pad}" y1="{height}" x2="{width - pad}" y2="{height}" stroke="#334155"/>',
    ]
    for i, day in enumerate(days):
        x = pad + i * slot
        for j, (key, colour) in enumerate((("mqls", PALETTE[0]), ("sqls", PALETTE[1]))):
            h = (height - pad) * day[key] / top
            parts.append(
                f'<rect x="{x + 6 + j * (slot / 2 - 4):.1f}" y="{height - h:.1f}" '
                f'width="{slot / 2 - 8:.1f}" height="{h:.1f}" fill="{colour}">'
                f"<title>{key} {day['day']}: {day[key]}</title></rect>"
            )
        parts.append(
            f'<text x="{x + slot / 2:.1f}" y="{height + 18}" font-size="12" '
            f'text-anchor="middle">{escape(day["day"][5:])}</text>'
        )
    parts.append(
        f'<rect x="{pad}" y="{height + 26}" width="12" height="12" fill="{PALETTE[0]}"/>'
        f'<text x="{pad + 16}" y="{height + 37}" font-size="12">MQLs</text>'
        f'<rect x="{pad + 70}" y="{height + 26}" width="12" height="12" fill="{PALETTE[1]}"/>'
        f'<text x="{pad + 86}" y="{height + 37}" font-size="12">SQLs</text></svg>'
    )
    return "".join(parts)


def _reasons_chart(reasons: list[dict[str, Any]]) -> str:
    width, row = 560, 28
    height = max(1, len(reasons)) * row + 10
    top = max([1, *(r["count"] for r in reasons)])
    parts = [
        f'<svg id="reasons-chart" role="img" aria-label="Rejection reasons" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}">'
    ]
    if not reasons:
        parts.append('<text x="0" y="20" font-size="13">No rejections this week</text>')
    for i, reason in enumerate(reasons):
        w = 300 * reason["count"] / top
        y = 5 + i * row
        parts.append(
            f'<text x="0" y="{y + 17}" font-size="13">{escape(reason["label"])}</text>'
            f'<rect x="200" y="{y + 4}" width="{w:.1f}" height="18" '
            f'fill="{PALETTE[(i + 2) % len(PALETTE)]}"/>'
            f'<text x="{206 + w:.1f}" y="{y + 17}" font-size="13">{reason["count"]}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def render_html(report: dict[str, Any]) -> str:
    numbers = report["numbers"]
    cards = "".join(
        f'<div class="card"><div class="label">{escape(LABELS[k])}</div>'
        f'<div class="value" data-kpi="{k}" data-raw="{"" if v is None else v}">'
        f"{escape(_fmt(k, v))}</div></div>"
        for k, v in numbers.items()
    )
    rows = "".join(
        f"<tr><td>{escape(r['label'])}</td><td><code>{escape(r['code'])}</code></td>"
        f'<td data-reason="{escape(r["code"])}">{r["count"]}</td></tr>'
        for r in report["reasons"]
    )
    week = escape(report["week"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Smarketing weekly review {week}</title>
<style>
body {{ font-family: sans-serif; margin: 24px; color: #0f172a; background: #f8fafc; }}
h1 {{ font-size: 24px; margin: 0 0 4px; }}
.cards {{ display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0; }}
.card {{ background: #fff; border: 1px solid #cbd5e1; border-radius: 8px; padding: 12px 16px;
  min-width: 150px; }}
.label {{ font-size: 12px; color: #475569; }}
.value {{ font-size: 26px; font-weight: bold; color: #1d4ed8; }}
section {{ background: #fff; border: 1px solid #cbd5e1; border-radius: 8px; padding: 12px 16px;
  margin: 12px 0; }}
table {{ border-collapse: collapse; }} td {{ padding: 2px 12px 2px 0; }}
</style></head>
<body>
<h1>Smarketing weekly review — {week}</h1>
<div>{escape(str(report["from"]))[:10]} to {escape(str(report["to"]))[:10]} (exclusive) ·
contract {escape(str(report["contract_version"]))}</div>
<div class="cards">{cards}</div>
<section><h2>MQLs and SQLs per day</h2>{_bars(report["days"])}</section>
<section><h2>Rejection reasons</h2>{_reasons_chart(report["reasons"])}
<table>{rows}</table></section>
</body></html>
"""


def render_csv(report: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["section", "key", "value"])
    writer.writerow(["week", "week", report["week"]])
    for key, value in report["numbers"].items():
        writer.writerow(["kpi", key, "" if value is None else value])
    for day in report["days"]:
        writer.writerow(["day_mqls", day["day"], day["mqls"]])
        writer.writerow(["day_sqls", day["day"], day["sqls"]])
    for reason in report["reasons"]:
        writer.writerow(["rejection_reason", reason["code"], reason["count"]])
    return out.getvalue()
