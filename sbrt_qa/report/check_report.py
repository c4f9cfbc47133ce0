"""Render an :class:`~sbrt_qa.evaluate.Evaluation`: terminal table, JSON, CSV, self-contained HTML."""

from __future__ import annotations

import csv
import html
import io
import json
import math

import numpy as np

from ..models import CATEGORIES

VERDICT_TEXT = {
    "per_protocol": "PER PROTOCOL",
    "minor_deviation": "MINOR DEVIATION (variation acceptable)",
    "major_deviation": "MAJOR DEVIATION (deviation unacceptable)",
    "not_evaluable": "NOT EVALUABLE (required input missing)",
}
RESULT_TEXT = {"pass": "pass", "minor": "MINOR", "major": "MAJOR", "not_evaluated": "NOT EVALUATED"}
_ANSI = {"pass": "32", "minor": "33", "major": "31;1", "not_evaluated": "35",
         "per_protocol": "32;1", "minor_deviation": "33;1", "major_deviation": "31;1",
         "not_evaluable": "35;1"}
_HTML_COLOUR = {"pass": "#1a7f37", "minor": "#b7791f", "major": "#c53030", "not_evaluated": "#6b46c1",
                "per_protocol": "#1a7f37", "minor_deviation": "#b7791f", "major_deviation": "#c53030",
                "not_evaluable": "#6b46c1"}


def _fmt_value(v, unit) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if unit in ("Gy", "cc"):
        return f"{v:.3f} {unit}" if abs(v) < 1 else f"{v:.2f} {unit}"
    if unit == "%":
        return f"{v:.1f} %"
    if unit in ("", None, "ratio"):
        return f"{v:.2f}" if isinstance(v, float) else str(v)
    return f"{v:g} {unit}"


def render_json(ev) -> str:
    return json.dumps(ev.to_dict(), indent=2)


def render_csv(ev) -> str:
    buf = io.StringIO()
    cols = ["id", "category", "structure", "roi_name", "metric", "value", "unit", "limit", "result",
            "source", "message"]
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for c in ev.checks:
        w.writerow(c.to_dict())
    return buf.getvalue()


def render_table(ev, *, color: bool = False) -> str:
    """A terminal report grouped by category, verdict first; ANSI colours when ``color``."""
    def paint(text, key):
        return f"\x1b[{_ANSI[key]}m{text}\x1b[0m" if color and key in _ANSI else text

    p = ev.plan
    lines = [paint(f"VERDICT: {VERDICT_TEXT[ev.verdict]}", ev.verdict),
             f"plan: {p.get('plan_label') or '?'}   patient: {p.get('patient_id') or '?'}   "
             f"Rx: {_fmt_value(p.get('total_dose_gy'), 'Gy')} in {p.get('fractions') or '?'} fx "
             f"({_fmt_value(p.get('dose_per_fraction_gy'), 'Gy')}/fx)   protocol: {ev.protocol}",
             ""]
    lines += _target_lines(ev)
    counts = {r: sum(c.result == r for c in ev.checks) for r in RESULT_TEXT}
    lines.append("checks: " + ", ".join(f"{n} {RESULT_TEXT[r].lower()}" for r, n in counts.items() if n))
    for cat in CATEGORIES:
        rows = [c for c in ev.checks if c.category == cat]
        if not rows:
            continue
        lines.append("")
        lines.append(cat.upper())
        table = [(c.structure or "-", c.metric or c.id, _fmt_value(c.value, c.unit), c.limit or "",
                  c.result) for c in rows]
        w = [max(len(r[i]) for r in table) for i in range(4)]
        for (s, m, v, lim, res), c in zip(table, rows):
            lines.append(f"  {s.ljust(w[0])}  {m.ljust(w[1])}  {v.rjust(w[2])}  {lim.ljust(w[3])}  "
                         f"{paint(RESULT_TEXT[res], res)}")
            if res != "pass" and c.message:
                lines.append(f"      {c.message}")
    if ev.findings:
        lines.append("")
        lines.append("FINDINGS")
        for f in ev.findings:
            lines.append(f"  {f.severity}: {f.message}")
    return "\n".join(lines) + "\n"


_TARGET_COLUMNS = [("volume", "volume_cc", "cc"), ("D98%", "d98_gy", "Gy"), ("D95%", "d95_gy", "Gy"),
                   ("Dmax", "dmax_gy", "Gy"), ("R100", "r100", ""), ("Paddick CI", "paddick_ci", ""),
                   ("R50", "r50", ""), ("Paddick GI", "paddick_gi", ""), ("D2cm", "d2cm_pct", "%")]


def _target_rows(ev) -> list[list[str]]:
    rows = []
    for t in ev.targets:
        f = t.figures
        rows.append([t.name, t.target_class, _fmt_value(t.rx_gy, "Gy")]
                    + [_fmt_value(f.get(key), unit) for _, key, unit in _TARGET_COLUMNS])
    return rows


def _target_lines(ev) -> list[str]:
    rows = _target_rows(ev)
    if not rows:
        return []
    header = ["target", "class", "Rx"] + [h for h, _, _ in _TARGET_COLUMNS]
    w = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    out = ["TARGETS"]
    for r in [header] + rows:
        out.append("  " + "  ".join(c.ljust(w[i]) if i < 2 else c.rjust(w[i]) for i, c in enumerate(r)))
    return out + [""]


# --- HTML --------------------------------------------------------------------------------------

_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf"]


def _dvh_svg(ev, width=760, height=420) -> str:
    """Cumulative DVHs (volume % vs dose Gy) with the constraint points, as inline SVG."""
    dvhs = {n: d for n, d in ev.dvhs.items() if d.covered_volume_cc > 0}
    if not dvhs:
        return "<p>No DVH to show.</p>"
    dmax = max(d.dmax_gy for d in dvhs.values())
    xmax = max(5.0, math.ceil(dmax / 5.0) * 5.0)
    left, right, top, bottom = 55, 170, 15, 45
    pw, ph = width - left - right, height - top - bottom

    def X(d):
        return left + pw * d / xmax

    def Y(pct):
        return top + ph * (1 - pct / 100.0)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">']
    step = 5 if xmax <= 60 else 10
    for g in np.arange(0, xmax + 1e-9, step):
        out.append(f'<line x1="{X(g):.1f}" y1="{top}" x2="{X(g):.1f}" y2="{top + ph}" stroke="#ddd"/>'
                   f'<text x="{X(g):.1f}" y="{top + ph + 14}" text-anchor="middle">{g:g}</text>')
    for g in range(0, 101, 20):
        out.append(f'<line x1="{left}" y1="{Y(g):.1f}" x2="{left + pw}" y2="{Y(g):.1f}" stroke="#ddd"/>'
                   f'<text x="{left - 6}" y="{Y(g) + 4:.1f}" text-anchor="end">{g}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{height - 8}" text-anchor="middle">Dose [Gy]</text>')
    out.append(f'<text x="14" y="{top + ph / 2}" text-anchor="middle" '
               f'transform="rotate(-90 14 {top + ph / 2})">Volume [%]</text>')
    colours = {}
    for i, (name, d) in enumerate(sorted(dvhs.items())):
        col = _PALETTE[i % len(_PALETTE)]
        colours[name] = col
        pct = d.cumulative_percent
        idx = np.unique(np.linspace(0, d.dose_gy.size - 1, min(d.dose_gy.size, 300)).astype(int))
        pts = " ".join(f"{X(x):.1f},{Y(y):.1f}" for x, y in zip(d.dose_gy[idx], pct[idx]))
        pts = f"{X(0):.1f},{Y(100):.1f} " + pts
        out.append(f'<polyline fill="none" stroke="{col}" stroke-width="1.5" points="{pts}">'
                   f'<title>{html.escape(name)}</title></polyline>')
        ly = top + 12 + 14 * i
        out.append(f'<line x1="{left + pw + 10}" y1="{ly - 4}" x2="{left + pw + 28}" y2="{ly - 4}" '
                   f'stroke="{col}" stroke-width="2"/><text x="{left + pw + 32}" y="{ly}">'
                   f'{html.escape(name)}</text>')
    for c in ev.checks:
        pt = _constraint_point(c, ev.dvhs.get(c.structure or ""))
        if pt is None:
            continue
        x, y = pt
        if not (0 <= x <= xmax and 0 <= y <= 100):
            continue
        col = _HTML_COLOUR[c.result]
        out.append(f'<circle cx="{X(x):.1f}" cy="{Y(y):.1f}" r="4" fill="white" stroke="{col}" '
                   f'stroke-width="2"><title>{html.escape(f"{c.structure} {c.metric}: {c.limit} ({c.result})")}'
                   f'</title></circle>')
    out.append("</svg>")
    return "\n".join(out)


def _constraint_point(c, dvh):
    """(dose Gy, volume %) of a constraint's limit on the DVH plot, or None."""
    from ..metrics import parse_metric

    if dvh is None or c.metric is None or c.limit_value is None or dvh.covered_volume_cc <= 0:
        return None
    try:
        m = parse_metric(c.metric)
    except Exception:
        return None
    vol = dvh.covered_volume_cc
    if m.kind == "D" and m.out_unit == "Gy":
        v = m.x if m.x_unit == "%" else 100.0 * m.x / vol
        return c.limit_value, v
    if m.kind in ("Dmax",) and m.out_unit == "Gy":
        return c.limit_value, 0.0
    if m.kind == "V" and m.x_unit == "Gy":
        v = c.limit_value if m.out_unit == "%" else 100.0 * c.limit_value / vol
        return m.x, v
    if m.kind == "CV" and m.x_unit == "Gy" and m.out_unit == "cc":
        return m.x, 100.0 * (vol - c.limit_value) / vol
    return None


def _deviation_list(ev) -> str:
    e = html.escape
    bad = [c for c in ev.checks if c.result != "pass"]
    if not bad:
        return "<p>None: every check passed.</p>"
    return "<ul>" + "".join(
        f"<li><b style='color:{_HTML_COLOUR[c.result]}'>{e(RESULT_TEXT[c.result])}</b> "
        f"{e(c.category)} &middot; {e(c.structure or '-')} &middot; {e(c.metric or c.id)} = "
        f"{e(_fmt_value(c.value, c.unit))} (limit {e(c.limit or 'n/a')}): {e(c.message)}</li>"
        for c in bad) + "</ul>"


def render_html(ev) -> str:
    """One self-contained HTML file (no network): verdict, prescription, checks, DVH plot.

    Every string that comes from DICOM or YAML is escaped.
    """
    e = html.escape
    p = ev.plan
    rows = []
    for c in ev.checks:
        col = _HTML_COLOUR[c.result]
        rows.append(
            f"<tr><td>{e(c.category)}</td><td>{e(c.structure or '-')}"
            f"{'<br><small>ROI: ' + e(c.roi_name) + '</small>' if c.roi_name and c.roi_name != c.structure else ''}"
            f"</td><td>{e(c.metric or c.id)}</td><td class=n>{e(_fmt_value(c.value, c.unit))}</td>"
            f"<td>{e(c.limit or '')}</td><td style='color:{col};font-weight:bold'>"
            f"{e(RESULT_TEXT[c.result])}</td><td><small>{e(c.message)}</small></td>"
            f"<td><small>{e(c.source or '')}</small></td></tr>")
    findings = "".join(f"<li><b>{e(f.severity)}</b>: {e(f.message)}</li>" for f in ev.findings)
    courses = "".join(
        f"<tr><td>{e(str(c.get('label', '')))}</td><td class=n>{e(_fmt_value(c.get('total_dose_gy'), 'Gy'))}</td>"
        f"<td class=n>{e(str(c.get('fractions')))}</td><td class=n>{e(_fmt_value(c.get('dose_per_fraction_gy'), 'Gy'))}</td>"
        f"<td>{e(', '.join(c.get('targets', [])))}</td></tr>" for c in p.get("courses", []))
    vcol = _HTML_COLOUR[ev.verdict]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>sbrt-qa report: {e(str(p.get('plan_label') or ''))}</title>
<style>
body{{font-family:sans-serif;margin:1.5em;color:#222}} table{{border-collapse:collapse;margin:.5em 0}}
td,th{{border:1px solid #ccc;padding:3px 6px;vertical-align:top}} th{{background:#f3f3f3}}
td.n{{text-align:right;white-space:nowrap}} .verdict{{font-size:1.6em;font-weight:bold;color:{vcol}}}
</style></head><body>
<div class="verdict">{e(VERDICT_TEXT[ev.verdict])}</div>
<p>Patient ID: {e(str(p.get('patient_id') or ''))} &middot; Plan: {e(str(p.get('plan_label') or ''))}
 &middot; Protocol: {e(ev.protocol)} &middot; sbrt-qa {e(ev.version)}</p>
<h2>Prescription</h2>
<table><tr><th>Course</th><th>Total dose</th><th>Fractions</th><th>Dose/fx</th><th>Targets</th></tr>
{courses}</table>
<h2>Deviations and checks not evaluated</h2>
{_deviation_list(ev)}
<h2>Targets</h2>
<table><tr><th>Target</th><th>Class</th><th>Rx</th>{''.join(f"<th>{e(h)}</th>" for h, _, _ in _TARGET_COLUMNS)}</tr>
{''.join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in _target_rows(ev))}</table>
<h2>Checks</h2>
<table><tr><th>Category</th><th>Structure</th><th>Metric</th><th>Value</th><th>Limit</th><th>Result</th>
<th>Message</th><th>Source</th></tr>
{''.join(rows)}</table>
<h2>Dose-volume histograms</h2>
{_dvh_svg(ev)}
<p><small>Circles: constraint limits (colour = result). Volumes in % of the part of each structure
inside the dose grid.</small></p>
<h2>Findings</h2><ul>{findings or '<li>none</li>'}</ul>
</body></html>
"""
