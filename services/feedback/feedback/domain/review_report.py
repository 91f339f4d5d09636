"""The quarterly contract review as a page (HTML, inline SVG) and as CSV. Pure: renders the
document ``feedback.domain.review.review`` built."""

from __future__ import annotations

import csv
import io
from html import escape
from typing import Any

PALETTE = ("#2563eb", "#16a34a", "#dc2626", "#d97706", "#7c3aed")
MET, MISSED, UNKNOWN = "#16a34a", "#dc2626", "#64748b"
RATIOS = {"first_contact", "attempts", "outcome", "marketing_revenue_share"}
TITLES = {
    "first_contact": "First contact",
    "attempts": "Attempts",
    "outcome": "Outcome",
    "mql_volume": "MQL volume",
    "marketing_revenue_share": "Marketing revenue share",
}


def _raw(value: Any) -> str:
    return "" if value is None else str(value)


def _show(clause: str, value: Any) -> str:
    if value is None:
        return "–"
    if clause in RATIOS or clause in ("mql_to_sql", "mql_to_customer", "floor"):
        return f"{value * 100:.1f}%"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def _verdict(met: bool | None) -> tuple[str, str]:
    if met is None:
        return "no data", UNKNOWN
    return ("met", MET) if met else ("missed", MISSED)


def _card(c: dict[str, Any]) -> str:
    word, colour = _verdict(c["met"])
    name = c["clause"]
    extra = ""
    if "judged" in c:
        extra = (
            f'<div class="small">{c["met_count"]} of {c["judged"]} judged · '
            f"{c['breached']} breached · {c['pending']} pending</div>"
        )
    return (
        f'<div class="card" data-clause="{name}" data-met="{_raw(c["met"])}" '
        f'data-value="{_raw(c["value"])}" data-target="{_raw(c["target"])}">'
        f'<div class="label">{escape(TITLES[name])}</div>'
        f'<div class="small">{escape(c["description"])}</div>'
        f'<div class="value">{escape(_show(name, c["value"]))}</div>'
        f'<div class="small">target {escape(_show(name, c["target"]))}</div>'
        f'<div class="badge" style="background:{colour}">{word}</div>{extra}</div>'
    )


def _decile_chart(bands: list[dict[str, Any]], metric: str, floor: float) -> str:
    width, height, pad = 620, 240, 36
    slot = (width - 2 * pad) / max(1, len(bands))
    top = max([floor, *(b[metric] or 0.0 for b in bands), 0.01])
    parts = [
        f'<svg id="decile-chart" role="img" aria-label="Conversion by score decile" '
        f'width="{width}" height="{height + 30}" viewBox="0 0 {width} {height + 30}">',
        f'<line x1="{pad}" y1="{height}" x2="{width - pad}" y2="{height}" stroke="#334155"/>',
    ]
    for i, band in enumerate(bands):
        x = pad + i * slot
        for j, (key, colour) in enumerate(
            (("mql_to_sql", PALETTE[0]), ("mql_to_customer", PALETTE[1]))
        ):
            value = band[key] or 0.0
            h = (height - pad) * value / top
            parts.append(
                f'<rect x="{x + 4 + j * (slot / 2 - 2):.1f}" y="{height - h:.1f}" '
                f'width="{max(slot / 2 - 6, 1):.1f}" height="{h:.1f}" fill="{colour}">'
                f"<title>{key} from {band['from_points']} points: {_show(key, band[key])}</title>"
                "</rect>"
            )
        parts.append(
            f'<text x="{x + slot / 2:.1f}" y="{height + 18}" font-size="11" '
            f'text-anchor="middle">≥{band["from_points"]}</text>'
        )
    y = height - (height - pad) * floor / top
    parts.append(
        f'<line id="floor-line" x1="{pad}" y1="{y:.1f}" x2="{width - pad}" y2="{y:.1f}" '
        f'stroke="{PALETTE[2]}" stroke-width="2" stroke-dasharray="6 4"/></svg>'
    )
    return "".join(parts)


def render_html(doc: dict[str, Any]) -> str:
    cards = "".join(_card(c) for c in doc["clauses"])
    volume = next(c for c in doc["clauses"] if c["clause"] == "mql_volume")
    months = "".join(
        f'<tr data-month="{m["month"]}"><td>{m["month"]}</td><td data-mqls>{m["mqls"]}</td>'
        f"<td>{_show('mql_volume', m['target'])}</td><td>{_verdict(m['met'])[0]}</td></tr>"
        for m in volume["months"]
    )
    rows = "".join(
        f'<tr data-decile="{b["decile"]}" data-from="{b["from_points"]}" data-mqls="{b["mqls"]}" '
        f'data-sqls="{b["sqls"]}" data-customers="{b["customers"]}">'
        f"<td>D{b['decile']}</td><td>{b['from_points']}–{_raw(b['to_points'])}</td>"
        f"<td>{b['mqls']}</td><td>{b['sqls']}</td><td>{b['customers']}</td>"
        f"<td>{_show('mql_to_sql', b['mql_to_sql'])}</td>"
        f"<td>{_show('mql_to_customer', b['mql_to_customer'])}</td></tr>"
        for b in doc["deciles"]
    )
    t = doc["threshold"]
    conv = doc["conversion"]
    colour = _verdict(doc["all_met"])[1]
    quarter = escape(doc["quarter"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Contract review {quarter}</title>
<style>
body {{ font-family: sans-serif; margin: 24px; color: #0f172a; background: #f8fafc; }}
h1 {{ font-size: 24px; margin: 0 0 4px; }}
.cards {{ display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0; }}
.card {{ background: #fff; border: 1px solid #cbd5e1; border-radius: 8px; padding: 12px 16px;
  width: 190px; }}
.label {{ font-size: 14px; font-weight: bold; }}
.small {{ font-size: 12px; color: #475569; }}
.value {{ font-size: 26px; font-weight: bold; color: #1d4ed8; }}
.badge {{ display: inline-block; color: #fff; border-radius: 4px; padding: 2px 8px;
  margin: 4px 0; font-size: 13px; }}
section {{ background: #fff; border: 1px solid #cbd5e1; border-radius: 8px; padding: 12px 16px;
  margin: 12px 0; }}
table {{ border-collapse: collapse; }} td, th {{ padding: 2px 12px 2px 0; text-align: left; }}
</style></head>
<body>
<h1>Quarterly contract review — {quarter}</h1>
<div>{escape(doc["from"][:10])} to {escape(doc["to"][:10])} (exclusive) · contract
{escape(str(doc["contract_version"]))} · clause target {_show("floor", doc["compliance_target"])}
· <span class="badge" id="overall" data-all-met="{doc["all_met"]}"
style="background:{colour}">{"all clauses met" if doc["all_met"] else "not all met"}</span></div>
<div class="cards">{cards}</div>
<section><h2>MQLs by month</h2><table><tr><th>month</th><th>MQLs</th><th>target</th>
<th></th></tr>{months}</table></section>
<section><h2>Conversion by score decile</h2>
<div>Quarter: <span data-conversion="mqls">{conv["mqls"]}</span> MQLs,
MQL → SQL <span data-conversion="mql_to_sql" data-raw="{_raw(conv["mql_to_sql"])}">{
        _show("mql_to_sql", conv["mql_to_sql"])
    }</span>, MQL → customer
<span data-conversion="mql_to_customer" data-raw="{_raw(conv["mql_to_customer"])}">{
        _show("mql_to_customer", conv["mql_to_customer"])
    }</span></div>
{_decile_chart(doc["deciles"], t["metric"], t["floor"])}
<table><tr><th>decile</th><th>points</th><th>MQLs</th><th>SQLs</th><th>customers</th>
<th>MQL → SQL</th><th>MQL → customer</th></tr>{rows}</table>
<p>Threshold now <b data-threshold="current">{_raw(t["current"]) or "–"}</b> points; suggested
<b data-threshold="suggested">{_raw(t["suggested"]) or "–"}</b>. Rule: {escape(t["rule"])}.</p>
</section>
</body></html>
"""


def render_csv(doc: dict[str, Any]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["section", "key", "field", "value"])
    w.writerow(["review", "quarter", "", doc["quarter"]])
    w.writerow(["review", "contract_version", "", doc["contract_version"]])
    w.writerow(["review", "all_met", "", doc["all_met"]])
    for c in doc["clauses"]:
        for field in ("value", "target", "met", "judged", "breached", "pending"):
            if field in c:
                w.writerow(["clause", c["clause"], field, _raw(c[field])])
        for m in c.get("months", []):
            w.writerow(["month", m["month"], "mqls", m["mqls"]])
            w.writerow(["month", m["month"], "target", _raw(m["target"])])
    for key, value in doc["conversion"].items():
        w.writerow(["conversion", key, "", _raw(value)])
    for b in doc["deciles"]:
        for field in (
            "from_points",
            "to_points",
            "mqls",
            "sqls",
            "customers",
            "mql_to_sql",
            "mql_to_customer",
        ):
            w.writerow(["decile", f"D{b['decile']}", field, _raw(b[field])])
    t = doc["threshold"]
    for field in ("current", "suggested", "metric", "floor"):
        w.writerow(["threshold", field, "", _raw(t[field])])
    return out.getvalue()
