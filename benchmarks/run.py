"""sbrt-qa benchmarks: accuracy (Nelms 2015), DVH speed, CLI cold start, peak memory.

Usage::

    python benchmarks/run.py [--nelms-dir DIR] [--json OUT] [--quick]

Prints a table per section and writes a JSON document (default
``benchmarks/results/latest.json``) for trend tracking in CI. Speed is reported as ratios against
a baseline measured in the same run (dicompyler-core on the same structures, a bare interpreter
start), so the numbers travel between machines; nothing here is a unit-test pass/fail.

Sections
--------
nelms
    Nelms 2015 analytic benchmark: points beyond 3 % for sbrt-qa (default settings) and for
    dicompyler-core (default, and its interpolation mode), all runnable rows and the 1-3 mm
    contour-spacing subset (Nelms "test 2").
speed
    Per-structure and whole-plan DVH time of sbrt-qa against dicompyler-core ``get_dvh`` on a
    synthetic SBRT liver plan (1.5 L liver, 2 mm planes, 2.5 mm dose grid).
cold_start
    Wall time of ``sbrt-qa dvh PLAN --format json`` in a subprocess with a warm numba cache.
memory
    Peak RSS of loading a 512 x 512 x 200 1 mm RTDOSE and computing one DVH, in a subprocess.

From Python (e.g. a smoke test)::

    from benchmarks.run import run_benchmarks
    results = run_benchmarks(quick=True, sections=("nelms",), json_path=None, echo=False)
    results["summary"]  # [{"section", "name", "measured", "target", "status"}, ...]
"""

from __future__ import annotations

import os

# BLAS thread pools (OpenBLAS) busy-wait between calls and would compete with the DVH engine's
# threads for the CPUs; neither calculator timed here relies on BLAS. Set before numpy loads.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import datetime as _dt  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import nelms  # noqa: E402  (benchmarks/ is not a package; the path is set just above)
import synthetic  # noqa: E402

SECTIONS = ("nelms", "speed", "cold_start", "check", "memory")
DEFAULT_JSON = HERE / "results" / "latest.json"

#: acceptance targets, as printed next to the measured values
TARGETS = {
    "nelms_fail_pct": "sbrt-qa <= 3 % of graded Nelms points beyond 3 %",
    "speed_ratio": "dicompyler-core / sbrt-qa >= 50x (liver and whole plan)",
    "cold_start_s": "sbrt-qa dvh --format json <= 1.5 s (warm numba cache)",
    "memory": "peak RSS - baseline < 2 x grid in float64",
    "check_s": "sbrt-qa check --format html, ~20 structures, end to end < 2 s (warm numba cache)",
}
CHECK_MAX_S = 2.0
#: the sample plan with the most structures and targets (20 ROIs, 3 targets)
CHECK_PLAN = "02_pvtt_lung_spine"
NELMS_MAX_FAIL_PCT = 3.0
SPEED_MIN_RATIO = 50.0
COLD_START_MAX_S = 1.5
MEMORY_GRID = (200, 512, 512)
MEMORY_GRID_QUICK = (50, 512, 512)
#: names under which sbrt_qa.samples may offer the liver benchmark case (out_dir -> folder)
LIVER_MAKERS = ("make_liver_benchmark_case", "write_liver_benchmark_case", "liver_benchmark_case")
#: dicompyler-core interpolation mode used for the Nelms comparison: in-plane resolution of a
#: quarter of the dose grid spacing (it must be spacing / 2^n), 2 extra segments between planes,
#: cropped to the structure (its documented usage)
DICOMPYLER_INTERP_DIVISOR = 4
DICOMPYLER_INTERP_SEGMENTS = 2


class Reporter:
    """Prints progress and tables (or stays silent)."""

    def __init__(self, echo: bool = True):
        self.echo = echo

    def __call__(self, text: str = "") -> None:
        if self.echo:
            print(text, flush=True)

    def table(self, header: list[str], rows: list[list], align: str | None = None) -> None:
        if not self.echo:
            return
        cells = [[str(c) for c in header]] + [[_cell(c) for c in r] for r in rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
        align = align or "l" + "r" * (len(header) - 1)
        for k, r in enumerate(cells):
            print("  " + "  ".join(c.ljust(w) if a == "l" else c.rjust(w)
                                   for c, w, a in zip(r, widths, align)), flush=True)
            if k == 0:
                print("  " + "  ".join("-" * w for w in widths), flush=True)


def _cell(v) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        a = abs(v)
        if a >= 1000:
            return f"{v:.0f}"
        return f"{v:.1f}" if a >= 100 else f"{v:.2f}" if a >= 1 else f"{v:.3g}"
    return str(v)


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else "PASS" if ok else "MISS"


def _interleaved_medians(fns: dict) -> dict:
    """Median wall time of each ``name: (fn, repeats)``, running the functions in turn."""
    times: dict = {k: [] for k in fns}
    for r in range(max(reps for _, reps in fns.values())):
        for k, (fn, reps) in fns.items():
            if r < reps:
                t = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


# ----------------------------------------------------------------------------- dicompyler-core

def dicompyler_backend():
    """``(get_dvh, source)``: ``dicompylercore.dvhcalc.get_dvh`` with pydicom 3 patched in.

    dicompyler-core 0.5.6 imports ``pydicom.dicomio.read_file``, removed in pydicom 3;
    ``sbrt_qa._dicompyler`` sets that alias, once, for the whole project.
    ``dvhcalc.get_dvh`` itself is returned (not the module's path-only wrapper) because it also
    takes datasets: files are read once, so dicompyler-core is not charged for re-reading them
    per structure. Returns ``(None, reason)`` when dicompyler-core is not installed.
    """
    try:
        from sbrt_qa import _dicompyler  # noqa: F401  (sets the pydicom alias)
    except ImportError as exc:
        return None, f"dicompyler-core not importable: {exc}"
    source = "sbrt_qa._dicompyler"
    try:
        from dicompylercore import dvhcalc
    except ImportError as exc:
        return None, f"dicompyler-core not importable: {exc}"
    logging.getLogger("dicompylercore").setLevel(logging.ERROR)
    return dvhcalc.get_dvh, source


def dicompyler_metrics(h) -> dict:
    """Nelms metrics (cc, cGy) from a dicompyler-core cumulative DVH in Gy, via its own API."""
    def stat(name):
        return 100.0 * float(h.statistic(name).value)

    return {"volume_cc": float(h.volume), "dmin_cgy": 100.0 * float(h.min),
            "dmax_cgy": 100.0 * float(h.max), "dmean_cgy": 100.0 * float(h.mean),
            "d99_cgy": stat("D99"), "d95_cgy": stat("D95"), "d5_cgy": stat("D5"),
            "d1_cgy": stat("D1"), "d0.03cc_cgy": stat("D0.03cc")}


def _object_roi_number(rtstruct_path: Path) -> int:
    """ROI number of the Nelms object: the ROI with CLOSED_PLANAR contours (not the point)."""
    import pydicom

    ds = pydicom.dcmread(rtstruct_path)
    for item in ds.ROIContourSequence:
        kinds = {str(c.get("ContourGeometricType", "")) for c in item.get("ContourSequence", [])}
        if "CLOSED_PLANAR" in kinds:
            return int(item.ReferencedROINumber)
    raise ValueError(f"no closed contours in {rtstruct_path}")


# ----------------------------------------------------------------------------- 1. Nelms

def _tally(graded: list[tuple[nelms.Case, dict]], subset=None) -> dict:
    n = fails = 0
    for case, g in graded:
        if subset and case.contour_spacing not in subset:
            continue
        n += len(g)
        fails += sum(1 for _, _, ok in g.values() if not ok)
    return {"graded": n, "beyond_3pct": fails, "pct": 100.0 * fails / n if n else math.nan}


def nelms_section(data_dir: Path | None, *, quick: bool, report: Reporter) -> dict:
    data_dir = Path(data_dir) if data_dir else nelms.default_dir()
    report(f"== 1. Nelms 2015 analytic benchmark ({data_dir})")
    if not (data_dir / "analytical.csv").is_file():
        msg = (f"Nelms data not found at {data_dir} (expected analytical.csv, structures/, "
               "dose_grids/): section skipped. Give --nelms-dir or set SBRT_QA_NELMS_DIR.")
        report("   " + msg)
        na = {"measured": None, "target": f"<= {NELMS_MAX_FAIL_PCT}", "status": "n/a (no data)"}
        return {"skipped": msg, "data_dir": str(data_dir),
                "targets": {"sbrt_qa_fail_pct_all": na, "sbrt_qa_fail_pct_test2": dict(na)}}
    all_cases = nelms.cases(data_dir)
    test2 = ("1mm", "2mm", "3mm")
    out: dict = {"data_dir": str(data_dir), "rows": len(all_cases),
                 "test2_rows": sum(c.contour_spacing in test2 for c in all_cases),
                 "calculators": {}}

    # sbrt-qa, default settings
    t0 = time.perf_counter()
    graded = []
    for c in all_cases:
        s, g = nelms.load_case(data_dir, c)
        graded.append((c, nelms.grade(c, nelms.sbrt_qa_metrics(s, g))))
    t_sbrt = time.perf_counter() - t0
    failing = [{"case": c.key, "contour_spacing": c.contour_spacing, "metric": m,
                "measured": round(v, 4), "truth": c.truth[m], "error_pct": round(100 * e, 2)}
               for c, g in graded for m, (v, e, ok) in g.items() if not ok]
    out["calculators"]["sbrt-qa"] = {
        "settings": "defaults", "all": _tally(graded), "test2": _tally(graded, test2),
        "seconds": t_sbrt, "failing": failing}

    # dicompyler-core
    get_dvh, source = dicompyler_backend()
    out["dicompyler_source"] = source
    if get_dvh is None:
        report(f"   {source}: dicompyler-core rows skipped")
    else:
        from dicompylercore.config import skimage_available

        modes = [("dicompyler-core", {}, all_cases if not quick else all_cases[::3])]
        if not quick and skimage_available:
            modes.append(("dicompyler-core interp", "interp", all_cases))
        elif not skimage_available:
            out["dicompyler_interp_skipped"] = "scikit-image not installed"
        import pydicom

        rois: dict[Path, int] = {}
        datasets: dict[Path, object] = {}

        def dataset(path: Path):
            # read each file once: dicompyler-core accepts datasets and leaves them unchanged, and
            # re-reading the 0.2 mm structure sets would double the section's time
            if path not in datasets:
                datasets[path] = pydicom.dcmread(path)
            return datasets[path]

        for label, kw, subset in modes:
            t0 = time.perf_counter()
            dgraded = []
            errors = []
            for c in subset:
                ss = data_dir / c.structure_file
                if ss not in rois:
                    rois[ss] = _object_roi_number(ss)
                kwargs = kw
                if kw == "interp":
                    g = float(c.grid_mm)
                    kwargs = {"use_structure_extents": True,
                              "interpolation_resolution": g / DICOMPYLER_INTERP_DIVISOR,
                              "interpolation_segments_between_planes": DICOMPYLER_INTERP_SEGMENTS}
                try:
                    h = get_dvh(dataset(ss), dataset(data_dir / c.dose_file), rois[ss], **kwargs)
                    dgraded.append((c, nelms.grade(c, dicompyler_metrics(h))))
                except Exception as exc:  # a failing case is a result, not a crash
                    errors.append(f"{c.key}: {type(exc).__name__}: {exc}")
            settings = ("get_dvh defaults" if not kw else
                        f"use_structure_extents=True, interpolation_resolution=grid/"
                        f"{DICOMPYLER_INTERP_DIVISOR}, interpolation_segments_between_planes="
                        f"{DICOMPYLER_INTERP_SEGMENTS}")
            out["calculators"][label] = {
                "settings": settings + ("" if subset is all_cases else " (every 3rd row, --quick)"),
                "all": _tally(dgraded), "test2": _tally(dgraded, test2),
                "seconds": time.perf_counter() - t0, "errors": errors}

    rows = []
    for label, r in out["calculators"].items():
        rows.append([label, f"{r['all']['beyond_3pct']}/{r['all']['graded']}", r["all"]["pct"],
                     f"{r['test2']['beyond_3pct']}/{r['test2']['graded']}", r["test2"]["pct"],
                     r["seconds"]])
    report(f"   {out['rows']} runnable rows ({out['test2_rows']} with 1-3 mm contour spacing); "
           "9 metrics per row, a point fails beyond 3 % of the analytic value")
    report.table(["calculator", "all: beyond 3%", "%", "1-3 mm: beyond 3%", "%", "time s"], rows)
    for label, r in out["calculators"].items():
        report(f"   {label}: {r['settings']}")
        for e in r.get("errors", [])[:5]:
            report(f"     error {e}")
    sb = out["calculators"]["sbrt-qa"]
    ok_all = sb["all"]["pct"] <= NELMS_MAX_FAIL_PCT
    ok_t2 = sb["test2"]["pct"] <= NELMS_MAX_FAIL_PCT
    out["targets"] = {
        "sbrt_qa_fail_pct_all": {"measured": sb["all"]["pct"], "target": f"<= {NELMS_MAX_FAIL_PCT}",
                                 "status": _verdict(ok_all)},
        "sbrt_qa_fail_pct_test2": {"measured": sb["test2"]["pct"],
                                   "target": f"<= {NELMS_MAX_FAIL_PCT}", "status": _verdict(ok_t2)}}
    report(f"   target {TARGETS['nelms_fail_pct']}: all rows {sb['all']['pct']:.2f} % "
           f"{_verdict(ok_all)}; 1-3 mm subset {sb['test2']['pct']:.2f} % {_verdict(ok_t2)}")
    if failing:
        report(f"   sbrt-qa failing points ({len(failing)}):")
        report.table(["case", "metric", "measured", "truth", "error %"],
                     [[f["case"], f["metric"], f["measured"], f["truth"], f["error_pct"]]
                      for f in failing])
    return out


# ----------------------------------------------------------------------------- plan cases

def liver_cases(tmp: Path, report: Reporter, *, both: bool) -> list[dict]:
    """The liver benchmark plans: ``sbrt_qa.samples``' realistic anatomy when it offers one,
    and (when ``both``, or as the fallback) benchmarks/synthetic.py's ellipsoid plan with
    200-vertex contours. The first is the primary case (cold start, memory)."""
    cases = []
    try:
        from sbrt_qa import samples

        maker = next((getattr(samples, n) for n in LIVER_MAKERS if hasattr(samples, n)), None)
        if maker is not None:
            case = _adapt_samples_case(maker(tmp / "samples_liver"))
            if case is not None:
                case["label"] = "samples"
                cases.append(case)
    except Exception as exc:  # the generator is optional; fall back to our own
        report(f"   sbrt_qa.samples liver case unusable ({type(exc).__name__}: {exc}); "
               "using benchmarks/synthetic.py")
    if both or not cases:
        case = synthetic.write_liver_case(tmp / "synthetic_liver")
        case["source"] = "benchmarks/synthetic.py (ellipsoid liver, 200-vertex contours)"
        case["label"] = "synthetic"
        cases.append(case)
    return cases


def _adapt_samples_case(result) -> dict | None:
    """Accept a folder (or an object naming one) from sbrt_qa.samples; find its RT files."""
    import pydicom

    folder = Path(result if isinstance(result, (str, os.PathLike)) else
                  result.get("dir") if isinstance(result, dict) else getattr(result, "dir", ""))
    if not folder.is_dir():
        return None
    ss = rd = None
    for p in sorted(folder.rglob("*")):
        if not p.is_file():
            continue
        try:
            hdr = pydicom.dcmread(p, stop_before_pixels=True, specific_tags=["Modality"])
            mod = str(hdr.get("Modality", ""))
        except Exception:
            continue
        if mod == "RTSTRUCT" and ss is None:
            ss = p
        elif mod == "RTDOSE" and rd is None:
            rd = p
    if ss is None or rd is None:
        return None
    ds = pydicom.dcmread(ss)
    numbers = {str(i.ROIName): int(i.ROINumber) for i in ds.StructureSetROISequence}
    with_contours = {int(i.ReferencedROINumber) for i in ds.ROIContourSequence
                     if i.get("ContourSequence")}
    return {"dir": folder, "rtstruct": ss, "rtdose": rd,
            "source": "sbrt_qa.samples.make_liver_benchmark_case (realistic anatomy)",
            "roi_numbers": {n: k for n, k in numbers.items() if k in with_contours}}


def _is_liver(name: str) -> bool:
    return name.lower() == "liver" or name.lower().startswith("liver")


# ----------------------------------------------------------------------------- 2. speed

def speed_section(case: dict, *, quick: bool, report: Reporter) -> dict:
    import pydicom

    import sbrt_qa
    from sbrt_qa.dvh import compute_dvh, compute_dvhs
    from sbrt_qa.dvh.core import default_threads

    report(f"== 2. DVH speed: {case['label']} liver plan ({case['source']})")
    threads = default_threads()
    reps_sbrt = 3 if quick else 7
    reps_dcp = 1 if quick else 3
    folder = case["dir"]

    t0 = time.perf_counter()
    plan = sbrt_qa.load_plan(folder)
    t_first_load = time.perf_counter() - t0
    names = [n for n in case["roi_numbers"]
             if n in plan.structures and not plan.structures[n].is_empty]
    dose = plan.dose
    t0 = time.perf_counter()
    compute_dvh(plan, names[0])  # numba: load from the on-disk cache (or compile) once
    t_warm = time.perf_counter() - t0

    get_dvh, source = dicompyler_backend()
    if get_dvh is not None:
        ss_ds = pydicom.dcmread(case["rtstruct"])
        rd_ds = pydicom.dcmread(case["rtdose"])
        get_dvh(ss_ds, rd_ds, case["roi_numbers"][names[0]])  # decode pixel data once

    # the two calculators alternate, so that a load change on the machine hits both medians
    per = {}
    for n in names:
        d = compute_dvh(plan, n)
        st = plan.structures[n]
        per[n] = {"volume_cc": d.volume_cc, "planes": int(st.planes_z_mm.size),
                  "vertices": int(st.points_xy_mm.shape[0])}
        fns = {"sbrt_qa_s": (lambda n=n: compute_dvh(plan, n), reps_sbrt),
               "sbrt_qa_1thread_s": (lambda n=n: compute_dvh(plan, n, threads=1), reps_sbrt)}
        if get_dvh is not None:
            roi = case["roi_numbers"][n]
            per[n]["dicompyler_volume_cc"] = float(get_dvh(ss_ds, rd_ds, roi).volume)
            fns["dicompyler_s"] = (lambda roi=roi: get_dvh(ss_ds, rd_ds, roi), reps_dcp)
        per[n].update(_interleaved_medians(fns))
        if get_dvh is not None:
            per[n]["ratio"] = per[n]["dicompyler_s"] / per[n]["sbrt_qa_s"]

    def sbrt_whole():
        p = sbrt_qa.load_plan(folder)
        compute_dvhs(p, names)

    def dcp_whole():
        s = pydicom.dcmread(case["rtstruct"])
        r = pydicom.dcmread(case["rtdose"])
        for n in names:
            get_dvh(s, r, case["roi_numbers"][n])

    fns = {"sbrt_qa": (sbrt_whole, reps_sbrt),
           "sbrt_qa_dvhs": (lambda: compute_dvhs(plan, names), reps_sbrt),
           "sbrt_qa_dvhs_1thread": (lambda: compute_dvhs(plan, names, threads=1), reps_sbrt),
           "load_plan": (lambda: sbrt_qa.load_plan(folder), reps_sbrt)}
    if get_dvh is not None:
        fns["dicompyler"] = (dcp_whole, 1)  # ~= the per-structure sum; once is enough
    whole = _interleaved_medians(fns)
    t_load = whole["load_plan"]
    t_sbrt_e2e = whole["sbrt_qa"]
    out: dict = {"case_source": case["source"], "grid_shape_zyx": list(dose.shape),
                 "grid_spacing_mm": [float(c[1] - c[0]) for c in (dose.z_mm, dose.y_mm, dose.x_mm)],
                 "repeats": {"sbrt_qa": reps_sbrt, "dicompyler": reps_dcp,
                             "dicompyler_whole_plan": 1},
                 "sbrt_qa_settings": "defaults (same as the Nelms section)",
                 "sbrt_qa_threads": threads,
                 "sbrt_qa_first_load_s": t_first_load, "sbrt_qa_jit_warm_s": t_warm,
                 "sbrt_qa_load_plan_s": t_load, "sbrt_qa_whole_plan_end_to_end_s": t_sbrt_e2e,
                 "dicompyler_source": source, "structures": per}
    if get_dvh is not None:
        out["dicompyler_whole_plan_end_to_end_s"] = whole["dicompyler"]

    # whole plan: sbrt_qa.dvh.compute_dvhs (structures side by side on the engine's threads)
    sb_whole = whole["sbrt_qa_dvhs"]
    out["sbrt_qa_whole_plan_dvh_s"] = sb_whole
    out["sbrt_qa_whole_plan_dvh_1thread_s"] = whole["sbrt_qa_dvhs_1thread"]
    out["sbrt_qa_per_structure_sum_s"] = sum(v["sbrt_qa_s"] for v in per.values())
    rows = [[n, v["volume_cc"], v["planes"], 1000 * v["sbrt_qa_s"], 1000 * v["sbrt_qa_1thread_s"],
             1000 * v.get("dicompyler_s", math.nan), v.get("ratio", math.nan),
             v.get("dicompyler_s", math.nan) / v["sbrt_qa_1thread_s"]]
            for n, v in per.items()]
    targets = {}
    if get_dvh is not None:
        for v in per.values():
            v["ratio_1thread"] = v["dicompyler_s"] / v["sbrt_qa_1thread_s"]
        dcp_sum = sum(v["dicompyler_s"] for v in per.values())
        out["dicompyler_whole_plan_dvh_s"] = dcp_sum
        out["whole_plan_dvh_ratio"] = dcp_sum / sb_whole
        out["whole_plan_dvh_ratio_1thread"] = dcp_sum / whole["sbrt_qa_dvhs_1thread"]
        out["whole_plan_end_to_end_ratio"] = out["dicompyler_whole_plan_end_to_end_s"] / t_sbrt_e2e
        rows.append(["whole plan (DVHs)", sum(v["volume_cc"] for v in per.values()), "",
                     1000 * sb_whole, 1000 * whole["sbrt_qa_dvhs_1thread"], 1000 * dcp_sum,
                     out["whole_plan_dvh_ratio"], out["whole_plan_dvh_ratio_1thread"]])
        rows.append(["whole plan (read + DVHs)", "", "", 1000 * t_sbrt_e2e, "",
                     1000 * out["dicompyler_whole_plan_end_to_end_s"],
                     out["whole_plan_end_to_end_ratio"], ""])
        liver = next((n for n in names if _is_liver(n)), None)
        if liver:
            r = per[liver]["ratio"]
            targets["liver_ratio"] = {"measured": r, "target": f">= {SPEED_MIN_RATIO}",
                                      "status": _verdict(r >= SPEED_MIN_RATIO)}
        r = out["whole_plan_dvh_ratio"]
        targets["whole_plan_ratio"] = {"measured": r, "target": f">= {SPEED_MIN_RATIO}",
                                       "status": _verdict(r >= SPEED_MIN_RATIO)}
    out["targets"] = targets
    report(f"   dose grid {dose.shape[2]} x {dose.shape[1]} x {dose.shape[0]} (x y z) at "
           f"{out['grid_spacing_mm'][2]:g} mm; medians of {reps_sbrt} (sbrt-qa) / {reps_dcp} "
           f"(dicompyler-core get_dvh defaults, datasets read once) repeats")
    report(f"   sbrt-qa on {threads} thread(s) (the default: the CPUs available), and on 1 thread; "
           "dicompyler-core runs on 1")
    report.table(["structure", "volume cc", "planes", "sbrt-qa ms", "1 thread ms",
                  "dicompyler ms", "ratio", "ratio 1 thr"], rows)
    report(f"   sbrt-qa: first load_plan {t_first_load:.3f} s, numba warm-up {t_warm:.3f} s, "
           f"load_plan {1000 * t_load:.0f} ms")
    for k, v in targets.items():
        report(f"   target {TARGETS['speed_ratio']}: {k} {v['measured']:.1f}x {v['status']}")
    report("   sbrt-qa ran at its default settings, the ones graded in section 1")
    report()
    return out


# ----------------------------------------------------------------------------- 3. cold start

def _cli() -> list[str]:
    exe = Path(sys.executable).parent / "sbrt-qa"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "sbrt_qa.cli"]


def _sample_plan_dir() -> Path | None:
    base = ROOT / "sample_rtplans"
    if not base.is_dir():
        return None
    for d in sorted(p for p in base.iterdir() if p.is_dir()):
        if any(f.suffix.lower() == ".dcm" for f in d.rglob("*")):
            return d
    return None


def _wall(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    return time.perf_counter() - t, r


def cold_start_section(fallback_dir: Path | None, *, quick: bool, report: Reporter) -> dict:
    plan_dir = _sample_plan_dir() or fallback_dir
    report(f"== 3. CLI cold start ({plan_dir})")
    if plan_dir is None:
        report("   no plan available: skipped")
        return {"skipped": "no plan"}
    cmd = _cli() + ["dvh", str(plan_dir), "--format", "json"]
    reps = 1 if quick else 3
    t_first, r = _wall(cmd)  # warms the numba cache if needed
    out: dict = {"plan": str(plan_dir), "command": " ".join(cmd), "first_run_s": t_first,
                 "returncode": r.returncode}
    if r.returncode != 0:
        out["stderr"] = r.stderr[-2000:]
        report(f"   command failed (exit {r.returncode}): {r.stderr.strip()[-500:]}")
    times = [_wall(cmd)[0] for _ in range(reps)]
    py = [_wall([sys.executable, "-c", "pass"])[0] for _ in range(reps)]
    imp = [_wall([sys.executable, "-c", "import sbrt_qa.cli"])[0] for _ in range(reps)]
    out.update({"median_s": statistics.median(times), "runs_s": times,
                "python_startup_s": statistics.median(py),
                "import_cli_s": statistics.median(imp)})
    out["ratio_to_python_startup"] = out["median_s"] / out["python_startup_s"]
    ok = r.returncode == 0 and out["median_s"] <= COLD_START_MAX_S
    out["targets"] = {"cold_start_s": {"measured": out["median_s"],
                                       "target": f"<= {COLD_START_MAX_S}",
                                       "status": _verdict(ok)}}
    report.table(["what", "seconds", "x python -c pass"],
                 [["python -c pass", out["python_startup_s"], 1.0],
                  ["python -c 'import sbrt_qa.cli'", out["import_cli_s"],
                   out["import_cli_s"] / out["python_startup_s"]],
                  ["sbrt-qa dvh --format json (first)", t_first, t_first / out["python_startup_s"]],
                  [f"sbrt-qa dvh --format json (median of {reps})", out["median_s"],
                   out["ratio_to_python_startup"]]])
    report(f"   target {TARGETS['cold_start_s']}: {out['median_s']:.2f} s {_verdict(ok)}")
    return out


def check_section(*, quick: bool, report: Reporter) -> dict:
    """End-to-end ``sbrt-qa check`` (load, ~20 DVHs, conformity, HTML) as a subprocess."""
    plan_dir = ROOT / "sample_rtplans" / CHECK_PLAN
    report(f"== 3b. sbrt-qa check end to end ({plan_dir.name})")
    if not plan_dir.is_dir():
        report("   sample plan not found: skipped")
        return {"skipped": "no sample plan"}
    with tempfile.TemporaryDirectory() as tmp:
        cmd = _cli() + ["check", str(plan_dir), "--format", "html", "--output", str(Path(tmp) / "r.html")]
        t_first, r = _wall(cmd)  # warms the numba cache if needed
        times = [_wall(cmd)[0] for _ in range(1 if quick else 3)]
    out = {"plan": str(plan_dir), "command": " ".join(cmd), "first_run_s": t_first,
           "returncode": r.returncode, "median_s": statistics.median(times), "runs_s": times}
    ok = r.returncode in (0, 10, 11, 12) and out["median_s"] < CHECK_MAX_S
    out["targets"] = {"check_s": {"measured": out["median_s"], "target": f"< {CHECK_MAX_S}",
                                  "status": _verdict(ok)}}
    report.table(["what", "seconds"], [["sbrt-qa check --format html (first)", t_first],
                                      [f"sbrt-qa check --format html (median of {len(times)})",
                                       out["median_s"]]])
    report(f"   target {TARGETS['check_s']}: {out['median_s']:.2f} s {_verdict(ok)}")
    return out


# ----------------------------------------------------------------------------- 4. memory

_MEMORY_CHILD = r"""
import json, resource, sys, time
def peak():
    # VmHWM is this process's own high-water mark; on Linux ru_maxrss of an exec'd child starts
    # at the parent's peak (the benchmark that wrote the grid), so it is only the fallback
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
import numpy as np
import pydicom
import sbrt_qa
from sbrt_qa.dicom import load_plan
from sbrt_qa.dvh import compute_dvh, dvh_of_structure
from sbrt_qa.models import DoseGrid, Structure
after_imports = peak()
# load the compiled kernel (numba cache) on a tiny case, so JIT memory is not counted as data
c = np.linspace(-5.0, 5.0, 11)
tiny = DoseGrid(np.ones((11, 11, 11)), c, c, c)
sq = np.array([[-2.0, -2.0], [2.0, -2.0], [2.0, 2.0], [-2.0, 2.0]])
dvh_of_structure(Structure.from_polygons("t", [(0.0, sq), (1.0, sq)]), tiny)
after_jit = peak()
t = time.perf_counter()
plan = load_plan(sys.argv[1])
after_load = peak()
d = compute_dvh(plan, sys.argv[2])
after_dvh = peak()
print(json.dumps({"after_imports": after_imports, "after_jit": after_jit, "after_load": after_load,
                  "after_dvh": after_dvh, "seconds": time.perf_counter() - t,
                  "volume_cc": d.volume_cc, "dmax_gy": d.dmax_gy,
                  "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def _measure_memory(plan_dir: Path, structure: str, grid_shape) -> dict:
    r = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, str(plan_dir), structure],
                       capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        return {"error": r.stderr.strip()[-2000:]}
    m = json.loads(r.stdout.strip().splitlines()[-1])
    grid_f64 = int(math.prod(grid_shape)) * 8
    m["grid_shape_zyx"] = list(grid_shape)
    m["grid_float64_bytes"] = grid_f64
    m["peak_minus_imports"] = m["after_dvh"] - m["after_imports"]
    m["peak_minus_jit"] = m["after_dvh"] - m["after_jit"]
    m["ratio_to_grid_float64"] = m["peak_minus_jit"] / grid_f64
    m["target_bytes"] = 2 * grid_f64
    m["status"] = _verdict(m["peak_minus_jit"] < 2 * grid_f64)
    return m


def memory_section(tmp: Path, liver: dict | None, *, quick: bool, report: Reporter) -> dict:
    shape = MEMORY_GRID_QUICK if quick else MEMORY_GRID
    report("== 4. Peak memory (RSS high-water mark, VmHWM, of a subprocess)")
    t0 = time.perf_counter()
    big = synthetic.write_big_grid_case(tmp / "big_grid", shape=shape)
    t_write = time.perf_counter() - t0
    out: dict = {"big_grid": _measure_memory(big["dir"], "Target", shape),
                 "big_grid_write_s": t_write}
    if quick:
        out["note"] = f"--quick: grid {shape[2]} x {shape[1]} x {shape[0]}, not 512 x 512 x 200"
    (tmp / "big_grid" / "rtdose.dcm").unlink()
    if liver is not None:
        rois = list(liver["roi_numbers"])
        name = next((n for n in rois if _is_liver(n)), rois[0])
        import pydicom

        ds = pydicom.dcmread(liver["rtdose"], stop_before_pixels=True)
        lshape = (int(ds.get("NumberOfFrames", 1)), int(ds.Rows), int(ds.Columns))
        out["liver"] = _measure_memory(liver["dir"], name, lshape)
        if "status" in out["liver"]:  # not graded (see below): says how it compares, no verdict
            out["liver"]["status"] = "info"
    rows = []
    mb = 1e6  # decimal MB, as the target (839 MB) is stated
    big_label = f"{shape[2]}x{shape[1]}x{shape[0]} 1 mm grid"
    for label, m in ((big_label, out["big_grid"]), ("liver (for information)", out.get("liver"))):
        if m is None:
            continue
        if "error" in m:
            rows.append([label] + ["error"] + [""] * 7)
            report(f"   {label}: {m['error']}")
            continue
        rows.append([label, m["grid_float64_bytes"] / mb, m["after_imports"] / mb,
                     m["after_jit"] / mb, m["after_dvh"] / mb, m["peak_minus_imports"] / mb,
                     m["peak_minus_jit"] / mb, 2 * m["grid_float64_bytes"] / mb, m["status"]])
    report.table(["case", "grid f64 MB", "imports MB", "+JIT MB", "peak MB", "peak-imports",
                  "peak-JIT", "target <", "verdict"], rows)
    report(f"   target {TARGETS['memory']}; peak = after load_plan + compute_dvh. The baseline is "
           "the interpreter after imports AND after loading the compiled kernel on a tiny case "
           "(numba/LLVM start-up is a fixed cost, not a copy of the grid); peak-imports shows "
           "it included")
    # the acceptance target is the big grid; the liver row is for information (on a 14 MB grid
    # the structure set and interpreter noise weigh as much as the dose)
    m = out["big_grid"]
    out["targets"] = {} if "error" in m else {"big_grid": {
        "measured": m["peak_minus_jit"], "target": f"< {m['target_bytes'] / 1e6:.0f} MB",
        "status": m["status"]}}
    return out


# ----------------------------------------------------------------------------- driver

def _meta(quick: bool) -> dict:
    import numba
    import numpy

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=ROOT).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain"], capture_output=True,
                                    text=True, cwd=ROOT).stdout.strip())
    except OSError:
        commit, dirty = None, None
    try:
        import dicompylercore
        dcp = getattr(dicompylercore, "__version__", "installed")
    except Exception:
        dcp = None
    return {"timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "git_commit": commit, "git_dirty": dirty, "quick": quick,
            "python": platform.python_version(), "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "numpy": numpy.__version__, "numba": numba.__version__,
            "dicompyler_core": dcp, "load_average_start": _loadavg()}


def _loadavg() -> float | None:
    """1-minute load average: timings taken on a busy machine are noisier (ratios less so)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def run_benchmarks(*, nelms_dir: str | Path | None = None, quick: bool = False,
                   json_path: str | Path | None = DEFAULT_JSON, sections=SECTIONS,
                   echo: bool = True) -> dict:
    """Run the benchmark sections and return (and optionally write) the results.

    Parameters
    ----------
    nelms_dir : path, optional
        Nelms 2015 data folder (default ``nelms.default_dir()``).
    quick : bool
        Smoke-sized run (< 1 min): fewer repeats, a subset of dicompyler rows, a smaller grid.
    json_path : path or None
        Where to write the JSON document; ``None`` writes nothing.
    sections : iterable of str
        Any of ``"nelms", "speed", "cold_start", "check", "memory"``.
    echo : bool
        Print tables while running.

    Returns
    -------
    dict
        ``{"meta": ..., "<section>": ..., "summary": [{"target", "measured", "status"}]}``
    """
    report = Reporter(echo)
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    t_start = time.perf_counter()
    results: dict = {"meta": _meta(quick)}
    with tempfile.TemporaryDirectory(prefix="sbrt-qa-bench-") as tmpname:
        tmp = Path(tmpname)
        livers: list[dict] = []
        if "nelms" in sections:
            results["nelms"] = nelms_section(Path(nelms_dir) if nelms_dir else None, quick=quick,
                                             report=report)
            report()
        if {"speed", "cold_start", "memory"} & set(sections):
            livers = liver_cases(tmp, report, both=not quick and "speed" in sections)
        if "speed" in sections:
            per_case = {c["label"]: speed_section(c, quick=quick, report=report) for c in livers}
            results["speed"] = {"cases": per_case,
                                "targets": {f"{k}[{label}]": t for label, r in per_case.items()
                                            for k, t in r.pop("targets").items()}}
        if "cold_start" in sections:
            results["cold_start"] = cold_start_section(livers[0]["dir"] if livers else None,
                                                       quick=quick, report=report)
            report()
        if "check" in sections:
            results["check"] = check_section(quick=quick, report=report)
            report()
        if "memory" in sections:
            results["memory"] = memory_section(tmp, livers[0] if livers else None, quick=quick,
                                               report=report)
            report()
    summary = []
    for sec in SECTIONS:
        for name, t in (results.get(sec) or {}).get("targets", {}).items():
            summary.append({"section": sec, "name": name, **t})
    results["summary"] = summary
    results["meta"]["seconds"] = time.perf_counter() - t_start
    results["meta"]["load_average_end"] = _loadavg()
    report(f"== Summary ({results['meta']['seconds']:.0f} s{', --quick' if quick else ''}; "
           f"load average {results['meta']['load_average_start']} -> "
           f"{results['meta']['load_average_end']} on {os.cpu_count()} CPUs)")
    report.table(["section", "target", "measured", "required", "verdict"],
                 [[s["section"], s["name"], _fmt_measure(s["name"], s["measured"]), s["target"],
                   s["status"]] for s in summary], align="lllll")
    if json_path is not None:
        p = Path(json_path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(_jsonable(results), indent=2, allow_nan=False) + "\n",
                     encoding="utf-8")
        report(f"   results written to {p}")
    return results


def _fmt_measure(name: str, v) -> str:
    if v is None:
        return "-"
    if "pct" in name:
        return f"{v:.2f} %"
    if "ratio" in name:
        return f"{v:.1f}x"
    if name.endswith("_s"):
        return f"{v:.2f} s"
    if name == "big_grid":
        return f"{v / 1e6:.0f} MB"
    return _cell(v)


def _jsonable(o):
    """Plain JSON values: NaN/inf become null (strict JSON), paths and numpy values converted."""
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, bool) or o is None or isinstance(o, (int, str)):
        return o
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if hasattr(o, "tolist"):
        return _jsonable(o.tolist())
    return str(o)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nelms-dir", type=Path, default=None,
                    help=f"Nelms 2015 data (default: {nelms.default_dir()})")
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON, help="results file (JSON)")
    ap.add_argument("--quick", action="store_true", help="smoke-sized run, under a minute")
    ap.add_argument("--sections", default=",".join(SECTIONS),
                    help="comma-separated subset of " + ", ".join(SECTIONS))
    args = ap.parse_args(argv)
    run_benchmarks(nelms_dir=args.nelms_dir, quick=args.quick, json_path=args.json,
                   sections=[s.strip() for s in args.sections.split(",") if s.strip()])
    return 0


if __name__ == "__main__":
    sys.exit(main())
