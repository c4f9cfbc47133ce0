"""Plan x protocol -> graded checks and a verdict.

Grading
-------
Each check is ``pass``, ``minor``, ``major`` or ``not_evaluated``. The plan verdict is
``not_evaluable`` when a required input is missing (a required structure, the dose grid, a
target's prescription), otherwise the worst graded result: ``per_protocol``, ``minor_deviation``
or ``major_deviation``. A check is never ``pass`` unless its value was computed: a structure
that is not found, or that lies partly outside the dose grid, gives ``not_evaluated``.

Organs at risk that the protocol lists but that are not contoured and not ``required`` are
reported as one finding each (``structure_not_contoured``), not as checks.

Doses: organ-at-risk constraints use the physical dose of all courses summed (``scope: total``),
or each course alone (``scope: course``, worst course graded); ``dose_quantity: eqd2/bed``
converts each course voxel by voxel with the constraint's alpha/beta before summing. Targets
are evaluated on the dose of the course that prescribes them.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from . import __version__
from .conformity import conformity
from .dvh import dvh_of_structure, dvhs_of_structures
from .geometry import subtract, union
from .metrics import evaluate_metric
from .models import DVH, CheckResult, Course, DoseGrid, Finding, Plan, Structure
from .names import resolve_names
from .protocol import Protocol

log = logging.getLogger(__name__)

#: a structure with more than this fraction of its volume outside the dose grid is not evaluated
UNCOVERED_FRACTION_LIMIT = 0.001
_ORDER = {"pass": 0, "minor": 1, "major": 2}


@dataclass
class Target:
    """An SBRT target of the plan."""

    name: str
    target_class: str
    rx_gy: float | None
    course: Course | None
    fractions: int | None
    #: volume_cc, D98%/D95%/D50%/D2% [Gy], Dmin/Dmean/Dmax [Gy], R100, Paddick CI, R50,
    #: Paddick GI, D2cm (Gy and % of Rx), isodose volumes [cc], hot spot (Gy, mm, inside?)
    figures: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        figures = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                   for k, v in self.figures.items()}
        return {"name": self.name, "class": self.target_class, "rx_gy": self.rx_gy,
                "fractions": self.fractions,
                "course": self.course.label if self.course is not None else None,
                "figures": figures}


@dataclass
class Evaluation:
    """Result of :func:`evaluate_plan`."""

    verdict: str
    plan: dict
    checks: list[CheckResult]
    findings: list[Finding]
    targets: list[Target]
    protocol: str
    dvhs: dict[str, DVH] = field(default_factory=dict)
    version: str = __version__

    def to_dict(self) -> dict:
        """The pinned ``sbrt-qa check --format json`` document."""
        return {"verdict": self.verdict, "plan": self.plan,
                "checks": [c.to_dict() for c in self.checks],
                "findings": [f.to_dict() for f in self.findings],
                "targets": [t.to_dict() for t in self.targets],
                "protocol": self.protocol, "sbrt_qa_version": self.version}


def _fmt(v: float, unit: str) -> str:
    return f"{v:.2f} {unit}" if unit in ("Gy", "cc") else f"{v:.1f} {unit}" if unit == "%" else f"{v:.2f}"


class _Evaluator:
    def __init__(self, plan: Plan, protocol: Protocol):
        self.plan = plan
        self.p = protocol
        self.checks: list[CheckResult] = []
        self.findings: list[Finding] = list(plan.findings)
        self.not_evaluable: list[str] = []
        self.dvhs: dict[tuple, DVH] = {}
        self.report_dvhs: dict[str, DVH] = {}
        self._biological: dict[tuple, DoseGrid] = {}
        self._structures: dict[str, tuple] = {}

    # --- helpers ---------------------------------------------------------------------------
    def add(self, **kw) -> None:
        self.checks.append(CheckResult(**kw))

    def dvh(self, s: Structure, dose: DoseGrid) -> DVH:
        k = (s.name, id(dose))
        if k not in self.dvhs:
            self._store(k, dvh_of_structure(s, dose, default_thickness_mm=self.plan.contour_spacing_mm))
        return self.dvhs[k]

    def _store(self, key, d: DVH) -> None:
        self.dvhs[key] = d
        for f in d.findings:
            if f not in self.findings:
                self.findings.append(f)

    def target_dose(self, t: Target) -> DoseGrid:
        return t.course.dose if t.course is not None and t.course.dose is not None else self.plan.dose

    def prefetch(self, pairs) -> None:
        """Compute the DVHs of (structure, dose) pairs side by side on all cores (the kernels
        release the GIL); results do not depend on the thread count."""
        todo = {}
        for st, dose in pairs:
            key = (st.name, id(dose))
            if key not in self.dvhs and key not in todo:
                todo[key] = (st, dose)
        if len(todo) < 2:
            return
        dvhs = dvhs_of_structures(list(todo.values()),
                                  default_thickness_mm=self.plan.contour_spacing_mm)
        for k, d in zip(todo, dvhs):  # insertion order: findings stay in a stable order
            self._store(k, d)

    @staticmethod
    def coverage_problem(d: DVH) -> str | None:
        if d.covered_volume_cc <= 0:
            return f"{d.name!r} has no volume inside the dose grid"
        if d.uncovered_volume_cc > UNCOVERED_FRACTION_LIMIT * d.volume_cc:
            return (f"{d.uncovered_volume_cc:.2f} cc ({100 * d.uncovered_volume_cc / d.volume_cc:.1f} %) "
                    f"of {d.name!r} lies outside the dose grid: dose there unknown")
        return None

    # --- targets and prescription ---------------------------------------------------------
    def targets(self) -> list[Target]:
        out = []
        courses = [c for c in self.plan.courses if c.targets or c.total_prescription_gy]
        for name, s in self.plan.structures.items():
            if s.is_empty or not self.p.is_target(name, s.interpreted_type):
                continue
            rx, course = self.plan.referenced_prescription(s) or (None, None)
            if rx is None and len(courses) == 1 and courses[0].prescription_gy:
                course = courses[0]
                rx = course.prescription_gy
                self.findings.append(Finding(
                    "warning", "target_rx_assumed",
                    f"no dose reference of the RTPLAN names target {name!r}; the course "
                    f"prescription {rx:.2f} Gy is assumed", structure=name))
            out.append(Target(name, self.p.classify_target(name), rx, course,
                              course.fractions if course is not None else None))
        return out

    def prescription_checks(self, targets: list[Target]) -> None:
        rules = self.p.prescription
        src = rules.source
        if not self.plan.courses or not any(c.targets or c.total_prescription_gy for c in self.plan.courses):
            self.not_evaluable.append("no RTPLAN prescription")
            self.add(id="prescription.plan", category="prescription", structure=None,
                     metric="total_dose", value=None, unit="Gy", limit=None,
                     result="not_evaluated", source=src,
                     message="no RTPLAN with a target prescription dose in the folder")
            return
        staged = [c for c in self.plan.courses if c.targets or c.total_prescription_gy]
        if len(staged) > 1 and not rules.staged_courses_allowed:
            self.add(id="prescription.staged", category="prescription", structure=None,
                     metric="courses", value=float(len(staged)), unit="", limit="1 course",
                     result="major", source=src, message="staged courses are not allowed")
        for c in staged:
            cid = _slug(c.label)
            n = c.fractions
            if n is None:
                self.not_evaluable.append(f"fractions of {c.label}")
                res, msg = "not_evaluated", "NumberOfFractionsPlanned missing"
            else:
                res = "pass" if n == rules.fractions else "major"
                msg = f"{c.label}: {n} fractions" + ("" if res == "pass" else f", protocol: {rules.fractions}")
            self.add(id=f"prescription.{cid}.fractions", category="prescription", structure=None,
                     metric="fractions", value=None if n is None else float(n), unit="fx",
                     limit=f"= {rules.fractions} fx", result=res, source=src, message=msg)
            course_targets = [t for t in targets if t.course is c]
            doses = sorted({t.rx_gy for t in course_targets if t.rx_gy} or
                           ({c.prescription_gy} if c.prescription_gy else set()))
            for rx in doses:
                names = [t.name for t in course_targets if t.rx_gy == rx] or [None]
                for name in names:
                    tid = f"{cid}.{_slug(name)}" if name else cid
                    ok = rules.total_dose.contains(rx)
                    self.add(id=f"prescription.{tid}.total_dose", category="prescription",
                             structure=name, metric="total_dose", value=rx, unit="Gy",
                             limit=f"{rules.total_dose.min} to {rules.total_dose.max}",
                             result="pass" if ok else "major", source=src,
                             message=f"{c.label}: {rx:.2f} Gy total")
                    if n:
                        d = rx / n
                        ok = rules.dose_per_fraction.contains(round(d, 6))
                        self.add(id=f"prescription.{tid}.dose_per_fraction", category="prescription",
                                 structure=name, metric="dose_per_fraction", value=d, unit="Gy",
                                 limit=f"{rules.dose_per_fraction.min} to {rules.dose_per_fraction.max}",
                                 result="pass" if ok else "major", source=src,
                                 message=f"{c.label}: {rx:.2f} Gy / {n} fx = {d:.2f} Gy per fraction")
            if c.beam_dose_per_fraction_gy and n and c.prescription_gy:
                planned = c.beam_dose_per_fraction_gy * n
                if abs(planned - c.prescription_gy) > 0.1 * c.prescription_gy:
                    self.findings.append(Finding(
                        "info", "beam_dose_differs",
                        f"{c.label}: beam doses sum to {planned:.2f} Gy over {n} fx at the dose "
                        f"reference point, prescription {c.prescription_gy:.2f} Gy (normal when "
                        "prescribing to an isodose)", path=c.path))
        for t in targets:
            if t.rx_gy is None:
                self.not_evaluable.append(f"prescription of {t.name}")
                self.findings.append(Finding("error", "target_rx_unknown",
                                             f"no prescription dose for target {t.name!r}",
                                             structure=t.name))

    def eligibility(self, targets: list[Target]) -> None:
        rules = self.p.prescription
        n = len(targets)
        res = "pass" if n <= rules.max_targets_per_patient else "major"
        self.add(id="eligibility.n_targets", category="eligibility", structure=None,
                 metric="n_targets", value=float(n), unit="targets",
                 limit=f"<= {rules.max_targets_per_patient} targets", result=res, source=rules.source,
                 message=f"{n} SBRT target(s) over {len(self.plan.courses)} course(s): "
                         + ", ".join(f"{t.name} ({t.target_class})" for t in targets))

    # --- targets: coverage and conformity ---------------------------------------------------
    def target_checks(self, targets: list[Target]) -> None:
        body = self.body()
        self.prefetch([(self.plan.structures[t.name], self.target_dose(t)) for t in targets])
        for t in targets:
            s = self.plan.structures[t.name]
            dose = self.target_dose(t)
            d = self.dvh(s, dose)
            self.report_dvhs[t.name] = d
            problem = self.coverage_problem(d)
            v = d.covered_volume_cc
            t.figures.update({"volume_cc": d.volume_cc, "covered_volume_cc": v,
                              "dmin_gy": d.dmin_gy, "dmean_gy": d.dmean_gy, "dmax_gy": d.dmax_gy,
                              **{f"d{p}_gy": d.dose_at_volume_gy(p / 100 * v) for p in (98, 95, 50, 2)}})
            median = t.figures["d50_gy"]
            if t.rx_gy and v > 0 and not problem and not (0.8 * t.rx_gy <= median <= 1.6 * t.rx_gy):
                self.findings.append(Finding(
                    "warning", "dose_grid_vs_prescription",
                    f"median dose of {t.name!r} is {median:.2f} Gy for a prescription of "
                    f"{t.rx_gy:.2f} Gy: the dose grid may be per fraction, of another plan, or "
                    "scaled differently", structure=t.name))
            for rule in self.p.coverage:
                base = dict(id=f"target.{_slug(t.name)}.{rule.id}", category="target",
                            structure=t.name, metric=rule.metric, unit=rule.unit,
                            limit=rule.describe(), source=_source(rule), comparison=rule.comparison,
                            limit_value=rule.limit.pass_limit.value)
                if problem or t.rx_gy is None:
                    self.add(**base, value=None, result="not_evaluated",
                             message=problem or "target prescription unknown")
                    if problem:
                        self.not_evaluable.append(problem)
                    continue
                v = evaluate_metric(d, rule.metric, rx_gy=t.rx_gy).value
                self.add(**base, value=v, result=rule.grade(v),
                         message=f"{rule.metric} = {_fmt(v, rule.unit)} (Rx {t.rx_gy:.2f} Gy)")
            self.conformity_checks(t, s, d, dose, body, targets, problem)

    def conformity_checks(self, t, s, d, dose, body, targets, problem) -> None:
        rules = self.p.conformity
        src = rules.source
        kinds = [("r100", "R100", ""), ("r50", "R50", ""), ("d2cm", "D2cm", "%"),
                 ("outside_105", "V105%outside[%PTV]", "%")]
        if problem or t.rx_gy is None:
            for kind, metric, unit in kinds:
                self.add(id=f"conformity.{_slug(t.name)}.{kind}", category="conformity",
                         structure=t.name, metric=metric, value=None, unit=unit, limit=None,
                         result="not_evaluated", source=src,
                         message=problem or "target prescription unknown")
            return
        others = [self.plan.structures[o.name] for o in targets if o.name != t.name]
        tv_piv = d.volume_at_dose_cc(t.rx_gy)
        c = conformity(s, d.covered_volume_cc, tv_piv, t.rx_gy, dose, body=body,
                       other_targets=others, default_thickness_mm=self.plan.contour_spacing_mm)
        values = {"r100": c.r100, "r50": c.r50, "d2cm": c.d2cm_pct, "outside_105": c.outside_105_pct}
        for kind, metric, unit in kinds:
            v = values[kind]
            lim = rules.limits(kind, c.ptv_cc)
            if lim is None:
                limit_text = f"PTV {c.ptv_cc:.1f} cc beyond the table"
            else:
                limit_text = f"< {lim[0]:.2f}{' ' + unit if unit else ''}" + (
                    f" (minor up to {lim[1]:.2f}{' ' + unit if unit else ''})" if lim[1] is not None else "")
            if math.isnan(v):
                self.add(id=f"conformity.{_slug(t.name)}.{kind}", category="conformity",
                         structure=t.name, metric=metric, value=None, unit=unit, limit=limit_text,
                         result="not_evaluated", source=src, message="no region to evaluate")
                continue
            res = rules.grade(kind, c.ptv_cc, v)
            self.add(id=f"conformity.{_slug(t.name)}.{kind}", category="conformity", structure=t.name,
                     metric=metric, value=v, unit=unit, limit=limit_text, result=res, source=src,
                     message=f"PTV {c.ptv_cc:.2f} cc, Rx {t.rx_gy:.2f} Gy" + (
                         "; region cut by the dose grid edge" if c.region_truncated else ""))
        t.figures.update({
            "r100": c.r100, "paddick_ci": c.paddick_ci, "r50": c.r50, "paddick_gi": c.paddick_gi,
            "d2cm_gy": c.d2cm_gy, "d2cm_pct": c.d2cm_pct, "piv100_cc": c.piv100_cc,
            "piv50_cc": c.piv50_cc, "tv_piv_cc": c.tv_piv_cc, "hotspot_gy": c.hotspot_gy,
            "hotspot_mm": list(c.hotspot_mm), "hotspot_in_ptv": c.hotspot_in_ptv})
        if rules.dmax_inside_ptv:
            x, y, z = c.hotspot_mm
            self.add(id=f"conformity.{_slug(t.name)}.hotspot_location", category="conformity",
                     structure=t.name, metric="Dmax location", value=100 * c.hotspot_gy / t.rx_gy,
                     unit="%", limit="inside PTV", result="pass" if c.hotspot_in_ptv else "minor",
                     source=src, message=f"hot spot {c.hotspot_gy:.2f} Gy at ({x:.1f}, {y:.1f}, {z:.1f}) mm "
                                         + ("inside" if c.hotspot_in_ptv else "OUTSIDE") + " the PTV")

    def body(self) -> Structure | None:
        for name, s in self.plan.structures.items():
            if s.interpreted_type == "EXTERNAL" and not s.is_empty:
                return s
        for name, s in self.plan.structures.items():
            if name.strip().upper() in ("BODY", "EXTERNAL", "SKIN", "OUTLINE") and not s.is_empty:
                return s
        self.findings.append(Finding("warning", "no_body", "no BODY/External ROI: isodose volumes "
                                     "for conformity are bounded by the dose grid instead"))
        return None

    # --- organs at risk -----------------------------------------------------------------------
    def oar_checks(self, targets: list[Target]) -> None:
        classes = tuple(sorted({t.target_class for t in targets})) or ("pvtt", "extrahepatic")
        constraints = self.p.active_constraints(classes)
        wanted = list(self.p.wanted_structures(classes))
        rois = [n for n, s in self.plan.structures.items()]
        res = resolve_names(rois, wanted, {k: list(v) for k, v in self.p.aliases.items()}, self.p.mapping)
        self.findings.extend(res.findings)
        resolved: dict[str, Structure | None] = {}
        for name in wanted:
            m = res.matches.get(name)
            roi = m.roi if m is not None else None
            s = self.plan.structures.get(roi) if roi else None
            resolved[name] = s if s is not None and not s.is_empty else None
        missing_reported = set()
        pending = []
        for con in constraints:
            st, _ = self.structure_for(con.structure, resolved, targets)
            if st is not None:
                pending += [(st, dose) for _, dose in self.doses_for(con)]
        self.prefetch(pending)
        for con in constraints:
            s, why = self.structure_for(con.structure, resolved, targets)
            base = dict(id=con.id, category="oar", structure=con.structure, metric=con.metric,
                        unit=con.unit, limit=con.describe(), source=_source(con),
                        comparison=con.comparison, limit_value=con.limit.pass_limit.value,
                        roi_name=None if s is None else s.name)
            if s is None:
                if con.required:
                    self.not_evaluable.append(f"required structure {con.structure}")
                    self.add(**base, value=None, result="not_evaluated",
                             message=f"required structure {con.structure} {why}")
                elif con.structure not in missing_reported:
                    missing_reported.add(con.structure)
                    self.findings.append(Finding(
                        "info", "structure_not_contoured",
                        f"{con.structure} {why}: its constraints were not checked ("
                        + ", ".join(c.metric for c in constraints if c.structure == con.structure) + ")",
                        structure=con.structure))
                continue
            values = []
            rx = max((t.rx_gy for t in targets if t.rx_gy), default=None)
            for label, dose in self.doses_for(con):
                d = self.dvh(s, dose)
                problem = self.coverage_problem(d)
                if problem:
                    values = None
                    self.add(**base, value=None, result="not_evaluated", message=problem)
                    break
                needs_rx = con.parsed_metric.needs_rx
                v = evaluate_metric(d, con.metric, rx_gy=rx).value if rx or not needs_rx else math.nan
                values.append((label, v, d))
            if values is None:
                continue
            if con.dose_quantity == "physical" and con.scope == "total":
                self.report_dvhs.setdefault(con.structure, values[0][2])
            if not values or any(math.isnan(v) for _, v, _ in values):
                self.add(**base, value=None, result="not_evaluated", message="metric not computable")
                continue
            graded = [(con.grade(v), label, v) for label, v, _ in values]
            graded.sort(key=lambda g: _ORDER[g[0]])
            grade, label, v = graded[-1]
            extra = f" ({label})" if label else ""
            qty = "" if con.dose_quantity == "physical" else f" {con.dose_quantity.upper()} a/b {con.alpha_beta}"
            self.add(**base, value=v, result=grade,
                     message=f"{s.name}: {con.metric} = {_fmt(v, con.unit)}{qty}{extra}")

    def structure_for(self, name: str, resolved, targets) -> tuple[Structure | None, str]:
        if name not in self._structures:
            self._structures[name] = self._structure_for(name, resolved, targets)
        return self._structures[name]

    def _structure_for(self, name: str, resolved, targets) -> tuple[Structure | None, str]:
        d = self.p.derived(name)
        if d is None or (d.use_plan_roi and resolved.get(name) is not None):
            s = resolved.get(name)
            return s, "" if s is not None else "is not in the plan (no ROI matches its name or aliases)"

        def pick(names):
            out = []
            for n in names:
                if n == "@gtv":
                    out += [s for k, s in self.plan.structures.items()
                            if not s.is_empty and self.p.is_gtv(k, s.interpreted_type)]
                elif n == "@targets":
                    out += [self.plan.structures[t.name] for t in targets]
                else:
                    s, _ = self.structure_for(n, resolved, targets)
                    if s is not None:
                        out.append(s)
            return out

        members = pick(d.union)
        if len(members) < len([n for n in d.union if not n.startswith("@")]) or not members:
            return None, f"cannot be derived ({d.description}): an input is missing"
        minus = pick(d.minus) or pick(d.minus_fallback)
        base = members[0] if len(members) == 1 else union(members, name)
        result = subtract(base, minus, name) if minus else base
        if minus:
            self.findings.append(Finding("info", "derived_structure",
                                         f"{name} derived as {' + '.join(m.name for m in members)} minus "
                                         f"{' + '.join(m.name for m in minus)}", structure=name))
        return result, ""

    def doses_for(self, con) -> list[tuple[str, DoseGrid]]:
        courses = [c for c in self.plan.courses if c.dose is not None]
        if con.scope == "course" and len(courses) > 1:
            return [(c.label, self.biological([c], con)) for c in courses]
        if con.dose_quantity == "physical":
            return [("", self.plan.dose)]
        return [("", self.biological(courses or [], con))]

    def biological(self, courses: list[Course], con) -> DoseGrid:
        if con.dose_quantity == "physical":
            return courses[0].dose
        key = (tuple(id(c) for c in courses), con.dose_quantity, con.alpha_beta.value)
        if key not in self._biological:
            from .dose import sum_grids

            ab = con.alpha_beta.value
            grids = []
            for c in courses:
                n = c.fractions or 1
                D = c.dose.dose_gy
                bed = D * (1.0 + (D / n) / ab)
                val = bed if con.dose_quantity == "bed" else bed / (1.0 + 2.0 / ab)
                grids.append(DoseGrid(val, c.dose.x_mm, c.dose.y_mm, c.dose.z_mm,
                                      c.dose.frame_of_reference_uid, con.dose_quantity.upper(),
                                      c.dose.source_files))
            if not grids:
                grids = [self.plan.dose]
            self._biological[key] = grids[0] if len(grids) == 1 else sum_grids(grids, summation_type="MULTI_PLAN")[0]
        return self._biological[key]


def _slug(text) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in str(text)).strip("_").lower() or "x"


def _source(rule) -> str:
    return rule.source + ("" if getattr(rule, "verified", True) else " (unverified)")


def _plan_summary(plan: Plan, targets: list[Target]) -> dict:
    courses = []
    for c in plan.courses:
        n = c.fractions
        rx = c.prescription_gy
        courses.append({"label": c.label, "fractions": n, "total_dose_gy": rx,
                        "dose_per_fraction_gy": rx / n if rx and n else None,
                        "targets": [t.name for t in targets if t.course is c],
                        "approval_status": c.approval_status, "sop_instance_uid": c.sop_instance_uid})
    main = max((c for c in courses if c["total_dose_gy"]), key=lambda c: c["total_dose_gy"], default=None)
    return {"patient_id": plan.patient_id, "plan_label": plan.label,
            "fractions": main["fractions"] if main else None,
            "total_dose_gy": main["total_dose_gy"] if main else None,
            "dose_per_fraction_gy": main["dose_per_fraction_gy"] if main else None,
            "n_courses": len(courses), "courses": courses, "path": plan.path,
            "frame_of_reference_uid": plan.frame_of_reference_uid}


def evaluate_plan(plan: Plan, protocol: Protocol) -> Evaluation:
    """Grade a plan against a protocol.

    Parameters
    ----------
    plan : Plan
        From :func:`sbrt_qa.load_plan`.
    protocol : Protocol
        From :func:`sbrt_qa.protocol.load_protocol`.

    Returns
    -------
    Evaluation
        ``verdict``, ``plan`` summary, ``checks`` (CheckResult), ``findings``, ``targets`` and
        the DVHs used (``dvhs``, by protocol structure name).
    """
    ev = _Evaluator(plan, protocol)
    targets = ev.targets()
    if plan.dose is None:
        ev.not_evaluable.append("dose grid")
    ev.prescription_checks(targets)
    ev.eligibility(targets)
    if plan.dose is not None:
        ev.target_checks(targets)
        ev.oar_checks(targets)
    if not targets:
        ev.not_evaluable.append("targets")
        ev.findings.append(Finding("error", "no_targets", "no target ROI found (by "
                                   "RTROIInterpretedType or the protocol's name patterns)"))
    worst = max((_ORDER.get(c.result, -1) for c in ev.checks), default=0)
    if ev.not_evaluable:
        verdict = "not_evaluable"
        ev.findings.append(Finding("error", "not_evaluable", "required input missing: "
                                   + "; ".join(dict.fromkeys(ev.not_evaluable))))
    else:
        verdict = ("per_protocol", "minor_deviation", "major_deviation")[max(worst, 0)]
    return Evaluation(verdict=verdict, plan=_plan_summary(plan, targets), checks=ev.checks,
                      findings=ev.findings, targets=targets,
                      protocol=protocol.name + (f" + site {protocol.site}" if protocol.site else ""),
                      dvhs=ev.report_dvhs)
