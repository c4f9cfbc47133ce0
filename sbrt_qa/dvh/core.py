"""compute_dvh: a structure and a dose grid -> a cumulative DVH.

Conventions
-----------
Extent along z
    The structure reaches from half a spacing below its first plane to half a spacing above its
    last, where the spacing is the structure's median plane spacing (for a single-plane
    structure: the structure set's median spacing). A jump of more than ``GAP_FACTOR`` times the
    median spacing between two planes is a gap (separate parts), each side extending half a
    median spacing. This is the convention of the Nelms 2015 analytic benchmark.
Shape between planes (default: ``interpolate=True``)
    Beyond the end planes (the caps, half a spacing) the end contour is held constant. Between two
    adjacent planes the shape is interpolated from the contours (shape-based interpolation of an
    implicit function built on the in-plane signed distance, monotone cubic in z through the
    neighbouring planes; see ``_kernels.py``): spheres, cones and cylinders in any orientation
    are reproduced, which is what Nelms' analytic values describe between the end planes. With
    ``interpolate=False`` every plane is a slab reaching half-way to its neighbours (each region
    constant over its slab), the classic model; its volume is the sum of contour areas times slab
    thickness.
In-plane
    Scan lines with exact even-odd x-intervals (islands and holes), ``rows`` lines per dose-grid
    row spacing chosen so that the structure spans at least ``min_rows`` lines (adaptive to
    size), at most ``MAX_ROW_SUBDIVISION`` per grid row, and an even number where the grid's
    cover ends inside the structure's y range (the cover's edge is then a band's edge); each line
    weighted by the exact area of its band, so contour areas are exact. A polygon between two
    lines is one element at its centroid, a hole there a cut in its band's weights.
Dose
    Trilinear interpolation of the grid, exact for fields linear within a cell. Within the covered
    region (grid nodes +- half a voxel) the dose beyond the outermost nodes is held constant.
    Volume outside the covered region has no dose: it is reported (``uncovered``), never
    rescaled into the histogram.
Histogram
    Cumulative, exact at edges spaced ``bin_width_gy`` (default 0.005 Gy), linear in between;
    Dmean comes from the elements directly. Dmin and Dmax are the extremes of the trilinear dose
    over the structure (exact for slabs and on the planes; between planes, over samples of the
    interpolated surface), so the cumulative curve may reach zero slightly below Dmax: a point
    has no volume.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import SbrtQaError
from ..models import DVH, DoseGrid, Finding, Plan, Structure

log = logging.getLogger(__name__)

GAP_FACTOR = 2.5
MAX_ROW_SUBDIVISION = 16
DEFAULT_MIN_ROWS = 32
DEFAULT_BIN_WIDTH_GY = 0.005
#: histogram size limit (two float64 arrays of this many bins per structure and thread): 100 kGy
#: at the default bin width
MAX_BINS = 20_000_000
#: uncovered volume below this fraction of the structure is numerical noise, not a finding
UNCOVERED_TOLERANCE = 1e-6
#: a structure's layers are cut into ranges of at least this many layers, which run on the
#: engine's threads (the kernels release the GIL); the number of ranges is a power of two, at
#: most ``MAX_CHUNKS``. The cut depends on the structure alone, and the ranges are summed in
#: order, so a DVH is bit for bit the same whatever the number of threads. A power of two shares
#: out evenly on two, four or eight threads (three ranges on two threads leave one thread idle a
#: third of the time), and each range builds the tables of its own planes, so fewer, longer
#: ranges repeat less of that work: on two threads, 9-18 % faster than ranges of 16 layers
LAYERS_PER_CHUNK = 32
#: a structure of ``2 * MIN_LAYERS_PER_CHUNK`` to ``2 * LAYERS_PER_CHUNK`` layers still gets two
#: ranges: a small structure's tables are cheap, so two threads nearly halve its time
MIN_LAYERS_PER_CHUNK = 8
MAX_CHUNKS = 8

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def default_threads() -> int:
    """Threads the DVH engine uses: ``$SBRT_QA_THREADS`` if set, else the CPUs this process may
    run on."""
    env = os.environ.get("SBRT_QA_THREADS", "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise SbrtQaError(f"SBRT_QA_THREADS={env!r} is not a whole number of threads") from None
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def _executor() -> ThreadPoolExecutor:
    """The engine's worker threads (see :func:`_shared_map`). Their tasks never wait on other
    tasks, so callers that are themselves running on threads (the plan evaluator) cannot deadlock
    on it."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=max(2, default_threads()),
                                       thread_name_prefix="sbrt-qa-dvh")
        return _pool


def _shared_map(fn, items: list, n_threads: int) -> list:
    """``[fn(x) for x in items]`` on the calling thread and up to ``n_threads - 1`` of the engine's
    workers, each taking the next item when it is free; results in the order of ``items``.

    The caller works from the start instead of waiting: a worker that is slow to wake (an idle
    CPU of a virtual machine can take milliseconds) then costs nothing, so this is never much
    slower than one thread. Helpers not started when the caller runs out of items are cancelled.
    """
    if n_threads <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    out: list = [None] * len(items)
    lock = threading.Lock()
    taken = iter(range(len(items)))

    def work():
        while True:
            with lock:
                i = next(taken, None)
            if i is None:
                return
            out[i] = fn(items[i])

    pool = _executor()
    helpers = [pool.submit(work) for _ in range(min(n_threads, len(items)) - 1)]
    try:
        work()
    finally:
        for h in helpers:
            h.cancel()
    for h in helpers:
        if not h.cancelled():
            h.result()
    return out


def chunk_count(n_layers: int) -> int:
    """Number of layer ranges a structure with ``n_layers`` layers is cut into: a power of two.

    Examples
    --------
    >>> [chunk_count(n) for n in (10, 20, 40, 76, 130, 300, 600)]
    [1, 2, 2, 2, 4, 8, 8]
    """
    n = max(n_layers // LAYERS_PER_CHUNK, min(2, n_layers // MIN_LAYERS_PER_CHUNK))
    n = max(1, min(MAX_CHUNKS, n))
    return 1 << (n.bit_length() - 1)


def layer_chunks(layer_a: np.ndarray, layer_b: np.ndarray, plane_rows: np.ndarray,
                 n_chunks: int) -> list[tuple[int, int]]:
    """Cut the layers into at most ``n_chunks`` contiguous ranges of about equal work.

    A layer's work is taken as the scan rows of its planes (both planes of an interpolated layer).

    Examples
    --------
    >>> layer_chunks(np.arange(4), np.arange(4), np.array([1, 1, 1, 1]), 2)
    [(0, 2), (2, 4)]
    """
    n = layer_a.size
    if n_chunks <= 1 or n < 2:
        return [(0, n)]
    work = plane_rows[layer_a] + np.where(layer_a != layer_b, plane_rows[layer_b], 0) + 1.0
    cum = np.cumsum(work, dtype=np.float64)
    cuts = np.searchsorted(cum, cum[-1] * np.arange(1, n_chunks) / n_chunks, side="left") + 1
    bounds = [0, *sorted(set(int(c) for c in cuts if 0 < c < n)), n]
    return list(zip(bounds[:-1], bounds[1:]))


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


def layers(planes_z_mm: np.ndarray, lo: np.ndarray, hi: np.ndarray, *, interpolate: bool = True):
    """Cut a structure into z layers for the kernel.

    Parameters
    ----------
    planes_z_mm : ndarray
        Sorted unique plane positions, mm.
    lo, hi : ndarray
        Slab limits from :func:`slabs`.
    interpolate : bool, optional
        Interpolate the shape between adjacent planes (default); otherwise every plane is a slab.

    Returns
    -------
    a, b : ndarray of int64
        Planes bounding each layer (``a == b``: a slab of plane ``a``).
    z0, z1 : ndarray
        Layer limits, mm.
    below, above : ndarray of int64
        Each plane's neighbour in the same run of planes (no gap between them), or -1.

    Examples
    --------
    >>> z = np.array([0.0, 2.0, 4.0])
    >>> a, b, z0, z1, _, _ = layers(z, *slabs(z)[:2])
    >>> list(zip(a.tolist(), b.tolist(), z0.tolist(), z1.tolist()))
    [(0, 0, -1.0, 0.0), (0, 1, 0.0, 2.0), (1, 2, 2.0, 4.0), (2, 2, 4.0, 5.0)]
    """
    n = planes_z_mm.size
    joined = hi[:-1] == lo[1:]
    below = np.full(n, -1, dtype=np.int64)
    above = np.full(n, -1, dtype=np.int64)
    rows = []
    for k in range(n):
        if not interpolate:
            rows.append((k, k, lo[k], hi[k]))
            continue
        first = k == 0 or not joined[k - 1]
        last = k == n - 1 or not joined[k]
        if first and last:
            rows.append((k, k, lo[k], hi[k]))
            continue
        if first:
            rows.append((k, k, lo[k], planes_z_mm[k]))
        else:
            below[k] = k - 1
        if last:
            rows.append((k, k, planes_z_mm[k], hi[k]))
        else:
            above[k] = k + 1
            rows.append((k, k + 1, planes_z_mm[k], planes_z_mm[k + 1]))
    a = np.array([r[0] for r in rows], dtype=np.int64)
    b = np.array([r[1] for r in rows], dtype=np.int64)
    z0 = np.array([r[2] for r in rows], dtype=np.float64)
    z1 = np.array([r[3] for r in rows], dtype=np.float64)
    return a, b, z0, z1, below, above


_geometry_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _sorted_geometry(structure: Structure):
    """Polygons regrouped by plane: (points, offsets, plane_start, planes). Structures are
    immutable, so this is computed once per structure."""
    cached = _geometry_cache.get(structure)
    if cached is not None:
        return cached
    zr = np.round(structure.polygon_z_mm, 3)
    order = np.argsort(zr, kind="stable")
    counts = np.diff(structure.polygon_offsets)[order]
    offsets = np.zeros(order.size + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(counts)
    # vertex i of the regrouped list comes from polygon order[p] at the same position within it
    shift = np.repeat(structure.polygon_offsets[:-1][order] - offsets[:-1], counts)
    idx = np.arange(offsets[-1]) + shift
    points = np.ascontiguousarray(structure.points_xy_mm[idx])
    planes, first = np.unique(zr[order], return_index=True)
    plane_start = np.append(first, order.size).astype(np.int64)
    out = (points, offsets, plane_start, planes)
    _geometry_cache[structure] = out
    return out


def _node_range(c: np.ndarray, a: float, b: float) -> tuple[int, int]:
    """Slice of the nodes of axis ``c`` whose cells can hold a point of ``[a, b]`` (+1 node)."""
    i0 = int(np.searchsorted(c, a, side="right")) - 2
    i1 = int(np.searchsorted(c, b, side="left")) + 2
    i0 = min(max(i0, 0), c.size - 1)
    return i0, max(min(i1, c.size), i0 + 1)


#: side of the bricks, in grid nodes, whose dose extremes bound a structure's histogram range
BRICK_NODES = 8
_brick_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_brick_lock = threading.Lock()


def _bricks(dose: DoseGrid):
    """Dose extremes per brick of ``BRICK_NODES`` nodes a side, computed once per grid (the
    structures of a plan, running side by side, wait for the first to compute them)."""
    with _brick_lock:
        cached = _brick_cache.get(dose)
        if cached is None:
            from ._kernels import brick_extremes

            cached = brick_extremes(dose.dose_gy, BRICK_NODES)
            _brick_cache[dose] = cached
    return cached


def _local_dose_range(dose: DoseGrid, points: np.ndarray, z_lo: float, z_hi: float):
    """Min and max of the dose over the bricks around the structure: a range holding every dose
    the structure can see, for its histogram, without a pass over the grid per structure."""
    if not dose.dose_gy.size:
        return 0.0, 0.0
    i0, i1 = _node_range(dose.x_mm, float(points[:, 0].min()), float(points[:, 0].max()))
    j0, j1 = _node_range(dose.y_mm, float(points[:, 1].min()), float(points[:, 1].max()))
    k0, k1 = _node_range(dose.z_mm, z_lo, z_hi)
    bmin, bmax = _bricks(dose)
    b = BRICK_NODES
    box = (slice(k0 // b, (k1 - 1) // b + 1), slice(j0 // b, (j1 - 1) // b + 1),
           slice(i0 // b, (i1 - 1) // b + 1))
    return float(bmin[box].min()), float(bmax[box].max())


def dvh_of_structure(structure: Structure, dose: DoseGrid, *,
                     default_thickness_mm: float | None = None,
                     min_rows: int = DEFAULT_MIN_ROWS,
                     bin_width_gy: float = DEFAULT_BIN_WIDTH_GY,
                     interpolate: bool = True, threads: int | None = None) -> DVH:
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
    interpolate : bool, optional
        Shape-based interpolation between adjacent planes (default); ``False`` gives the plain
        slab model (each plane's region constant over its slab). See the module docstring.
    threads : int, optional
        Threads for this structure (default: :func:`default_threads`). The result is the same bit
        for bit whatever the number (see ``LAYERS_PER_CHUNK``).

    Returns
    -------
    DVH
    """
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
    if ys.size > 1:
        dy = float(ys[1] - ys[0])
    else:
        dy = float(dose.x_mm[1] - dose.x_mm[0]) if dose.x_mm.size > 1 else 1.0
    extent_y = float(points[:, 1].max() - points[:, 1].min())
    k = 1
    if extent_y > 0:
        k = int(min(MAX_ROW_SUBDIVISION, max(1, math.ceil(min_rows * dy / extent_y))))
    # the grid covers half a spacing beyond its last y nodes: on an odd number of rows per
    # spacing that is a band's centre, and a band's part inside is known only as a fraction of
    # its height (a cap of a round section cut there: 2.6 % of its covered volume). On an even
    # number the cover ends between two bands. (Where it ends at or beyond the structure's y
    # range, a band cut there holds the structure on one side only: the kernel counts the
    # band's part within the range, all or none)
    y_lo = float(points[:, 1].min())
    y_hi = float(points[:, 1].max())
    ey0, ey1 = (float(v) for v in dose.extent_mm[1])
    if k % 2 == 1 and (y_lo < ey0 < y_hi or y_lo < ey1 < y_hi):
        k += 1
    row_dy = dy / k
    row_y0 = float(ys[0])
    gmin, gmax = _local_dose_range(dose, points, float(lo[0]), float(hi[-1]))
    bin_lo = math.floor(min(0.0, gmin) / bin_width_gy) * bin_width_gy
    n_bins = int(math.ceil((gmax * 1.0001 + 4 * bin_width_gy - bin_lo) / bin_width_gy))
    if n_bins > MAX_BINS:
        raise SbrtQaError(f"the dose around {name!r} spans {bin_lo:.4g} to {gmax:.4g} Gy: over "
                          f"{MAX_BINS} bins of {bin_width_gy:g} Gy; not a radiotherapy dose grid")
    la, lb, lz0, lz1, below, above = layers(planes, lo, hi, interpolate=interpolate)
    ramp2, step1, stats = _histogram(
        (points, offsets, plane_start, planes, la, lb, lz0, lz1, below, above, dose.dose_gy,
         dose.x_mm, dose.y_mm, dose.z_mm, dose.extent_mm, row_y0, row_dy, bin_lo, bin_width_gy,
         n_bins), threads)
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
    from ._kernels import cumulative_curve

    cumulative = cumulative_curve(ramp2, step1, n_bins, covered_cc)
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


def _plane_rows(points: np.ndarray, offsets: np.ndarray, plane_start: np.ndarray,
                row_dy: float) -> np.ndarray:
    """Scan rows each plane spans (its y extent / row spacing): the work estimate of its layers."""
    first = offsets[plane_start[:-1]]
    y = points[:, 1]
    span = np.maximum.reduceat(y, first) - np.minimum.reduceat(y, first)
    return span / row_dy


def _chunk_planes(chunk: tuple[int, int], la, lb, lz0, lz1, zs, n_planes: int) -> tuple[int, int]:
    """Planes whose tables a layer range reads: its own, their neighbours (the surface's slopes),
    and those of every layer sharing a z cell of the grid with it (blocks)."""
    l0, l1 = chunk
    z_lo, z_hi = lz0[l0], lz1[l1 - 1]
    i = int(np.searchsorted(zs, z_lo, side="right")) - 1
    z_lo = zs[i] if i >= 0 else z_lo
    i = int(np.searchsorted(zs, z_hi, side="left"))
    z_hi = zs[i] if i < zs.size else z_hi
    near = (lz1 >= z_lo) & (lz0 <= z_hi)
    near[l0:l1] = True
    p0 = int(la[near].min()) - 1
    p1 = int(lb[near].max()) + 1
    return max(p0, 0), min(p1, n_planes - 1)


def _histogram(args: tuple, threads: int | None):
    """Run the kernels over the structure's layer ranges and sum them in order. On one thread the
    tables are built once; on several, each range builds the tables of the planes it reads (a
    plane's tables do not depend on the others), so that this work runs side by side too.
    Returns ``ramp2, step1, stats`` as :func:`~sbrt_qa.dvh._kernels.structure_dvh_layers`."""
    from ._kernels import structure_dvh_layers, structure_tables

    (points, offsets, plane_start, planes, la, lb, lz0, lz1, below, above, dose_gy, xs, ys, zs,
     extent, row_y0, row_dy, bin_lo, bin_w, n_bins) = args
    work = _plane_rows(points, offsets, plane_start, row_dy)
    chunks = layer_chunks(la, lb, work, chunk_count(la.size))
    n_threads = default_threads() if threads is None else max(1, int(threads))
    if len(chunks) == 1 or n_threads == 1:
        tables = structure_tables(points, offsets, plane_start, la, lb, ys, row_y0, row_dy)
        parts = [structure_dvh_layers(*args, tables, c[0], c[1]) for c in chunks]
    else:
        def run(c):
            p0, p1 = _chunk_planes(c, la, lb, lz0, lz1, zs, planes.size)
            # planes outside p0..p1 get no polygons: their tables are empty
            clipped = np.clip(plane_start, plane_start[p0], plane_start[p1 + 1])
            tables = structure_tables(points, offsets, clipped, la, lb, ys, row_y0, row_dy)
            return structure_dvh_layers(points, offsets, clipped, *args[3:], tables, c[0], c[1])

        parts = _shared_map(run, chunks, n_threads)
    if len(parts) == 1:
        return parts[0]
    ramp2 = parts[0][0].copy()
    step1 = parts[0][1].copy()
    stats = parts[0][2].copy()
    for r2, s1, st in parts[1:]:
        ramp2 += r2
        step1 += s1
        stats[[0, 1, 2, 5]] += st[[0, 1, 2, 5]]
        stats[3] = min(stats[3], st[3])
        stats[4] = max(stats[4], st[4])
    return ramp2, step1, stats


def dvhs_of_structures(items, *, threads: int | None = None, **kwargs) -> list[DVH]:
    """DVHs of several ``(structure, dose)`` pairs, computed concurrently.

    Structures run side by side on ``threads`` threads (default: :func:`default_threads`), each
    structure on one thread: for a plan of many structures this keeps every core busy with less
    overhead than splitting each structure. Results are identical to :func:`dvh_of_structure`.

    Parameters
    ----------
    items : sequence of (Structure, DoseGrid)
    threads : int, optional
    **kwargs
        Passed to :func:`dvh_of_structure` (``default_thickness_mm``, ``interpolate``, ...).

    Returns
    -------
    list of DVH
        In the order of ``items``.
    """
    items = list(items)
    n_threads = default_threads() if threads is None else max(1, int(threads))
    if n_threads == 1 or len(items) < 2:
        return [dvh_of_structure(s, d, threads=n_threads, **kwargs) for s, d in items]
    # largest first, so that a big structure does not start last
    order = sorted(range(len(items)), key=lambda i: -items[i][0].points_xy_mm.shape[0])
    dvhs = _shared_map(lambda i: dvh_of_structure(items[i][0], items[i][1], threads=1, **kwargs),
                       order, n_threads)
    out: list[DVH | None] = [None] * len(items)
    for i, d in zip(order, dvhs):
        out[i] = d
    return out


def _dose_of(plan: Plan, dose: DoseGrid | None) -> DoseGrid:
    """``dose``, else the plan's total dose; an error naming the plan when it has none."""
    dose = dose if dose is not None else plan.dose
    if dose is None:
        raise SbrtQaError("the plan has no dose grid (no RTDOSE found)", path=plan.path)
    return dose


def compute_dvhs(plan: Plan, structure_names=None, *, dose: DoseGrid | None = None,
                 threads: int | None = None, **kwargs) -> dict[str, DVH]:
    """Cumulative DVHs of several structures of a plan, computed concurrently.

    Parameters
    ----------
    plan : Plan
    structure_names : iterable of str, optional
        Default: every structure with contours.
    dose : DoseGrid, optional
        As in :func:`compute_dvh`.
    threads : int, optional
        See :func:`dvhs_of_structures`.
    **kwargs
        ``min_rows``, ``bin_width_gy``, ``interpolate``: see :func:`dvh_of_structure`.

    Returns
    -------
    dict
        Name (as given, or the plan's key) -> DVH.
    """
    dose = _dose_of(plan, dose)
    if structure_names is None:
        named = {n: s for n, s in plan.structures.items() if not s.is_empty}
    else:
        named = {n: plan.structure(n) for n in structure_names}
    dvhs = dvhs_of_structures([(s, dose) for s in named.values()], threads=threads,
                              default_thickness_mm=plan.contour_spacing_mm, **kwargs)
    return dict(zip(named, dvhs))


def compute_dvh(plan: Plan, structure_name: str, *, dose: DoseGrid | None = None,
                min_rows: int = DEFAULT_MIN_ROWS,
                bin_width_gy: float = DEFAULT_BIN_WIDTH_GY,
                interpolate: bool = True, threads: int | None = None) -> DVH:
    """Cumulative DVH of a named structure of a plan.

    Parameters
    ----------
    plan : Plan
        From :func:`sbrt_qa.load_plan`.
    structure_name : str
        ROI name (exact, else case-insensitive).
    dose : DoseGrid, optional
        Dose to use instead of the plan's total dose (e.g. one course of a staged plan).
    min_rows, bin_width_gy, interpolate, threads
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
    dose = _dose_of(plan, dose)
    structure = plan.structure(structure_name)
    return dvh_of_structure(structure, dose, default_thickness_mm=plan.contour_spacing_mm,
                            min_rows=min_rows, bin_width_gy=bin_width_gy, interpolate=interpolate,
                            threads=threads)
