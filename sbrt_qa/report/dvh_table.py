"""`sbrt-qa dvh`: DVH metrics of a plan's structures as a table, JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
import math

from ..errors import SbrtQaError
from ..metrics import evaluate_metric, parse_metric
from ..models import Finding, Plan


def prescription_for(plan: Plan, structure_name: str) -> float | None:
    """Prescription dose (Gy) that applies to a structure.

    The dose of the RTPLAN target that references this ROI; otherwise the plan's prescription
    when all courses agree on one value; otherwise None.
    """
    s = plan.structures.get(structure_name)
    ref = plan.referenced_prescription(s) if s is not None else None
    if ref is not None:
        return ref[0]
    doses = {round(c.prescription_gy, 4) for c in plan.courses if c.prescription_gy}
    return doses.pop() if len(doses) == 1 else None


def _clean(v):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), 4)


def dvh_summary(plan: Plan, *, structures: list[str] | None = None, metrics: list[str],
                rx_gy: float | None = None, interpolate: bool = True) -> dict:
    """Metrics per structure, as the pinned ``sbrt-qa dvh --format json`` document.

    Parameters
    ----------
    plan : Plan
    structures : list of str, optional
        Names; default all structures with contours.
    metrics : list of str
        Metric strings (validated first: a malformed one raises MetricSyntaxError).
    rx_gy : float, optional
        Prescription for relative metrics; default per structure from the RTPLAN.
    interpolate : bool, optional
        Shape interpolation between contour planes (default) or the slab model.

    Returns
    -------
    dict
        ``{"structures": [{"name", "volume_cc", "covered_volume_cc", "rx_gy", "metrics": {...}}],
        "findings": [...]}``; values in the unit each metric names, NaN as null.
    """
    from ..dvh import dvhs_of_structures

    parsed = [parse_metric(m) for m in metrics]
    findings: list[Finding] = list(plan.findings)
    if plan.dose is None:
        raise SbrtQaError("the plan has no dose grid (no RTDOSE found)", path=plan.path)
    names = structures or [n for n, s in plan.structures.items() if not s.is_empty]
    found = {}
    for name in names:
        try:
            found[name] = plan.structure(name)
        except KeyError:
            pass
    # every structure's DVH at once, side by side on all CPUs
    dvhs = dict(zip(found, dvhs_of_structures(
        [(s, plan.dose) for s in found.values()], default_thickness_mm=plan.contour_spacing_mm,
        interpolate=interpolate)))
    out = []
    for name in names:
        if name not in found:
            findings.append(Finding("error", "structure_not_found",
                                    f"no structure {name!r} in the plan: not evaluated",
                                    structure=name))
            out.append({"name": name, "volume_cc": None, "covered_volume_cc": None, "rx_gy": None,
                        "metrics": {m: None for m in metrics}, "units": {}})
            continue
        s = found[name]
        d = dvhs[name]
        findings.extend(d.findings)
        rx = rx_gy if rx_gy is not None else prescription_for(plan, s.name)
        values, units = {}, {}
        for text, m in zip(metrics, parsed):
            units[text] = m.out_unit
            if m.needs_rx and rx is None:
                values[text] = None
                findings.append(Finding("warning", "prescription_unknown",
                                        f"{text} of {s.name!r} needs a prescription dose: give --rx",
                                        structure=s.name))
                continue
            values[text] = _clean(evaluate_metric(d, m, rx_gy=rx).value)
        out.append({"name": s.name, "volume_cc": _clean(d.volume_cc),
                    "covered_volume_cc": _clean(d.covered_volume_cc), "rx_gy": _clean(rx),
                    "metrics": values, "units": units})
    return {"plan": plan.path, "structures": out, "findings": [f.to_dict() for f in findings]}


def render(summary: dict, metrics: list[str], fmt: str) -> str:
    """Render a :func:`dvh_summary` as ``table``, ``json`` or ``csv``."""
    if fmt == "json":
        return json.dumps(summary, indent=2)
    header = ["structure", "volume [cc]"] + [f"{m} [{_unit(summary, m)}]" for m in metrics]
    rows = []
    for s in summary["structures"]:
        rows.append([s["name"], _fmt(s["volume_cc"])] + [_fmt(s["metrics"].get(m)) for m in metrics])
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
        return buf.getvalue()
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths))))
    for f in summary["findings"]:
        lines.append(f"{f['severity']}: {f['message']}")
    return "\n".join(lines) + "\n"


def _unit(summary: dict, metric: str) -> str:
    for s in summary["structures"]:
        u = s.get("units", {}).get(metric)
        if u:
            return u
    return parse_metric(metric).out_unit


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    return f"{v:.3f}" if abs(v) < 1 else f"{v:.2f}"


def dvh_report(plan_dir, *, structures: list[str], metrics: str, rx_gy: float | None, fmt: str,
               interpolate: bool = True) -> str:
    """Load a plan and render its DVH metrics (the ``sbrt-qa dvh`` command)."""
    from ..dicom import load_plan

    metric_list = [m.strip() for m in metrics.split(",") if m.strip()]
    for m in metric_list:
        parse_metric(m)  # fail before the slow part
    plan = load_plan(plan_dir)
    return render(dvh_summary(plan, structures=structures, metrics=metric_list, rx_gy=rx_gy,
                              interpolate=interpolate), metric_list, fmt)
