"""compute_dvh: a structure and a dose grid -> a cumulative DVH.

Conventions
-----------
Volume (slab model)
    Each contour plane stands for a slab reaching half-way to its neighbouring planes; the first
    and last planes extend half a spacing outwards, where the spacing is the structure's median
    plane spacing (for a single-plane structure: the structure set's median spacing). A jump of
    more than ``GAP_FACTOR`` times the median spacing between two planes is a gap (separate parts),
    each side extending half a median spacing. This is the convention of the Nelms 2015 analytic
    benchmark.
In-plane
    Scan lines with exact even-odd x-intervals (islands and holes), ``rows`` lines per dose-grid
    row spacing chosen so that the structure spans at least ``min_rows`` lines (adaptive to
    size), at most ``MAX_ROW_SUBDIVISION`` per grid row.
Dose
    Trilinear interpolation of the grid, exact for fields linear within a cell. Within the covered
    region (grid nodes +- half a voxel) the dose beyond the outermost nodes is held constant.
    Volume outside the covered region has no dose: it is reported (``uncovered``), never
    rescaled into the histogram.
Histogram
    Cumulative, exact at edges spaced ``bin_width_gy`` (default 0.005 Gy), linear in between;
    Dmin, Dmax and Dmean come from the elements directly, not from bins.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from ..errors import SbrtQaError
from ..models import DVH, DoseGrid, Finding, Plan, Structure

log = logging.getLogger(__name__)

GAP_FACTOR = 2.5
MAX_ROW_SUBDIVISION = 16
DEFAULT_MIN_ROWS = 64
DEFAULT_BIN_WIDTH_GY = 0.005
#: uncovered volume below this fraction of the structure is numerical noise, not a finding
UNCOVERED_TOLERANCE = 1e-6


def slabs(planes_z_mm: np.ndarray, default_thickness_mm: float | None = None):
    """Slab limits of contour planes under the half-way convention.

    Parameters
    ----------
    planes_z_mm : ndarray
        Sorted unique plane positions, mm.
    default_thickness_mm : float, optional
        Thickness of a lone plane, mm (the structure set's spacing).

    Returns
    -------
    lo, hi : ndarray
        Slab limits, mm.
    gaps : list of tuple
        ``(z_below, z_above)`` of the gaps found.

    Examples
    --------
    >>> lo, hi, _ = slabs(np.array([0.0, 2.0, 4.0]))
    >>> lo.tolist(), hi.tolist()
    ([-1.0, 1.0, 3.0], [1.0, 3.0, 5.0])
    """
    z = np.asarray(planes_z_mm, dtype=np.float64)
    n = z.size
    if n == 0:
        return np.zeros(0), np.zeros(0), []
    if n == 1:
        t = default_thickness_mm if default_thickness_mm and default_thickness_mm > 0 else 1.0
        return z - t / 2, z + t / 2, []
    d = np.diff(z)
    typical = float(np.median(d))
    lo = np.empty(n)
    hi = np.empty(n)
    gaps = []
    lo[0] = z[0] - typical / 2
    hi[-1] = z[-1] + typical / 2
    for k in range(n - 1):
        if d[k] > GAP_FACTOR * typical:
            hi[k] = z[k] + typical / 2
            lo[k + 1] = z[k + 1] - typical / 2
            gaps.append((float(z[k]), float(z[k + 1])))
        else:
            mid = 0.5 * (z[k] + z[k + 1])
            hi[k] = mid
            lo[k + 1] = mid
    return lo, hi, gaps


def _sorted_geometry(structure: Structure):
    """Polygons regrouped by plane: (points, offsets, plane_start, planes_z)."""
    zr = np.round(structure.polygon_z_mm, 3)
    order = np.argsort(zr, kind="stable")
    counts = np.diff(structure.polygon_offsets)
    starts = structure.polygon_offsets[:-1]
    idx = np.concatenate([np.arange(starts[p], starts[p] + counts[p]) for p in order])
    points = np.ascontiguousarray(structure.points_xy_mm[idx])
    offsets = np.zeros(order.size + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(counts[order])
    planes, first = np.unique(zr[order], return_index=True)
    plane_start = np.append(first, order.size).astype(np.int64)
    return points, offsets, plane_start, planes


def dvh_of_structure(structure: Structure, dose: DoseGrid, *,
                     default_thickness_mm: float | None = None,
                     min_rows: int = DEFAULT_MIN_ROWS,
                     bin_width_gy: float = DEFAULT_BIN_WIDTH_GY) -> DVH:
    """Cumulative DVH of one structure on one dose grid.

    Parameters
    ----------
    structure : Structure
    dose : DoseGrid
    default_thickness_mm : float, optional
        Slab thickness for a structure with a single contour plane, mm.
    min_rows : int, optional
        The structure spans at least this many scan lines in y (fewer only when that would need
        more than 16 lines per grid row).
    bin_width_gy : float, optional
        Spacing of the exact nodes of the cumulative curve, Gy.

    Returns
    -------
    DVH
    """
    from ._kernels import structure_dvh

    name = structure.name
    findings: list[Finding] = []
    if structure.is_empty:
        findings.append(Finding("error", "empty_roi", f"{name!r} has no contours: no DVH",
                                structure=name))
        return DVH(name, np.array([0.0, bin_width_gy]), np.zeros(2), 0.0, 0.0, math.nan, math.nan,
                   math.nan, tuple(findings))
    points, offsets, plane_start, planes = _sorted_geometry(structure)
    lo, hi, gaps = slabs(planes, default_thickness_mm)
    for a, b in gaps:
        findings.append(Finding("info", "contour_gap",
                                f"{name!r} has no contours between z = {a:.2f} and {b:.2f} mm: "
                                "treated as separate parts", structure=name))
    ys = dose.y_mm
    dy = float(ys[1] - ys[0]) if ys.size > 1 else float(dose.x_mm[1] - dose.x_mm[0]) if dose.x_mm.size > 1 else 1.0
    extent_y = float(points[:, 1].max() - points[:, 1].min())
    k = 1 if extent_y <= 0 else int(min(MAX_ROW_SUBDIVISION, max(1, math.ceil(min_rows * dy / extent_y))))
    row_dy = dy / k
    row_y0 = float(ys[0])
    gmin = float(dose.dose_gy.min()) if dose.dose_gy.size else 0.0
    gmax = dose.max_gy
    bin_lo = math.floor(min(0.0, gmin) / bin_width_gy) * bin_width_gy
    n_bins = int(math.ceil((gmax * 1.0001 + 4 * bin_width_gy - bin_lo) / bin_width_gy))
    ramp2, step1, stats = structure_dvh(
        points, offsets, plane_start, lo, hi, dose.dose_gy, dose.x_mm, dose.y_mm, dose.z_mm,
        dose.extent_mm, row_y0, row_dy, bin_lo, bin_width_gy, n_bins)
    covered_cc = stats[0] / 1000.0
    uncovered_cc = stats[1] / 1000.0
    volume_cc = covered_cc + uncovered_cc
    if volume_cc > 0 and uncovered_cc > UNCOVERED_TOLERANCE * volume_cc:
        pct = 100.0 * uncovered_cc / volume_cc
        findings.append(Finding(
            "warning" if covered_cc > 0 else "error", "structure_outside_dose_grid",
            f"{uncovered_cc:.3f} cc ({pct:.1f} %) of {name!r} lies outside the dose grid; its DVH "
            "describes only the covered part", structure=name))
    if covered_cc <= 0:
        return DVH(name, np.array([0.0, bin_width_gy]), np.zeros(2), volume_cc, 0.0, math.nan,
                   math.nan, math.nan, tuple(findings))
    below = np.cumsum(np.cumsum(ramp2[: n_bins + 1])) + np.cumsum(step1[: n_bins + 1])
    below /= 1000.0
    cumulative = np.clip(covered_cc - below, 0.0, covered_cc)
    np.minimum.accumulate(cumulative, out=cumulative)
    edges = bin_lo + bin_width_gy * np.arange(n_bins + 1)
    dmin = float(stats[3])
    dmax = float(stats[4])
    i0 = max(0, int(math.floor((dmin - bin_lo) / bin_width_gy)))
    i1 = min(n_bins, int(math.ceil((dmax - bin_lo) / bin_width_gy)) + 1)
    dose_nodes = edges[i0:i1 + 1].copy()
    cum = cumulative[i0:i1 + 1].copy()
    cum[0] = covered_cc
    cum[-1] = 0.0
    return DVH(name=name, dose_gy=dose_nodes, cumulative_cc=cum, volume_cc=volume_cc,
               covered_volume_cc=covered_cc, dmin_gy=dmin, dmax_gy=dmax,
               dmean_gy=float(stats[2] / stats[0]), findings=tuple(findings))


def compute_dvh(plan: Plan, structure_name: str, *, dose: DoseGrid | None = None,
                min_rows: int = DEFAULT_MIN_ROWS,
                bin_width_gy: float = DEFAULT_BIN_WIDTH_GY) -> DVH:
    """Cumulative DVH of a named structure of a plan.

    Parameters
    ----------
    plan : Plan
        From :func:`sbrt_qa.load_plan`.
    structure_name : str
        ROI name (exact, else case-insensitive).
    dose : DoseGrid, optional
        Dose to use instead of the plan's total dose (e.g. one course of a staged plan).
    min_rows, bin_width_gy
        See :func:`dvh_of_structure`.

    Returns
    -------
    DVH
        ``.volume_cc``, ``.metric("D95%")``, ``.dose_gy`` / ``.cumulative_cc`` arrays.

    Examples
    --------
    >>> plan = sbrt_qa.load_plan("sample_rtplans/01_pvtt_per_protocol")  # doctest: +SKIP
    >>> dvh = sbrt_qa.compute_dvh(plan, "PTV")                          # doctest: +SKIP
    >>> dvh.metric("D95%")                                               # doctest: +SKIP
    """
    dose = dose if dose is not None else plan.dose
    if dose is None:
        raise SbrtQaError("the plan has no dose grid (no RTDOSE found)", path=plan.path)
    structure = plan.structure(structure_name)
    return dvh_of_structure(structure, dose, default_thickness_mm=plan.contour_spacing_mm,
                            min_rows=min_rows, bin_width_gy=bin_width_gy)
