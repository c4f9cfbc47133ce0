"""Pure numba kernels of the DVH engine: arrays in, arrays out; no I/O, no objects.

Geometry of one structure reaches the kernels as flat arrays (see :class:`sbrt_qa.models.Structure`)
with polygons sorted by plane; the dose grid as a ``[z, y, x]`` float64 array with ascending node
coordinates.

Method (see ``sbrt_qa/dvh/core.py`` for the conventions):

* Each contour plane is a slab ``[slab_lo, slab_hi]``; the slab is split at the dose grid's z nodes
  into sub-slabs, each lying in one cell layer.
* Scan lines run in x at row centres ``row_y0 + (j + 0.5) * row_dy``; ``row_dy`` divides the grid's
  y spacing, so a row band never straddles a y node. Crossings follow the half-open rule
  (an edge counts when ``min(y1, y2) <= y < max(y1, y2)``), and the even-odd rule pairs them into
  exact x-intervals, so islands and holes need no special case.
* Each x-interval is split at the grid's x nodes. A piece x band x sub-slab is one *element*; its
  dose is trilinear interpolation at its centre and its spread is the local gradient times its
  extent, ``W = sqrt((gx Lx)^2 + (gy Ly)^2 + (gz Lz)^2)``. The element's volume is spread uniformly
  over ``[c - W/2, c + W/2]``: exact for a dose linear along one axis (trilinear interpolation is
  linear along x within a cell, and a slab has a constant cross-section along z) and matching the
  mean and variance otherwise.
* The cumulative histogram is accumulated exactly at bin edges: a uniform spread is a ramp in the
  cumulative curve, written as two second-difference entries; spreads narrower than half a bin
  are point masses (first differences).
"""

from __future__ import annotations

import numpy as np

from .._jit import inline_kernel, kernel


@inline_kernel
def _cell(coords, v):
    """Cell index ``i`` (``coords[i] <= v <= coords[i+1]``), fraction ``t``, and whether clamped."""
    n = coords.size
    if n == 1:
        return 0, 0.0, True
    if v <= coords[0]:
        return 0, 0.0, True
    if v >= coords[n - 1]:
        return n - 2, 1.0, True
    i = np.searchsorted(coords, v, side="right") - 1
    if i > n - 2:
        i = n - 2
    return i, (v - coords[i]) / (coords[i + 1] - coords[i]), False


@inline_kernel
def _trilinear_grad(dose, xs, ys, zs, x, y, z):
    """Trilinear dose and its partial derivatives (Gy/mm) at one point.

    Outside the node hull the dose is held constant (derivative 0) along that axis.
    """
    i, tx, cx = _cell(xs, x)
    j, ty, cy = _cell(ys, y)
    k, tz, cz = _cell(zs, z)
    i1 = i + 1 if xs.size > 1 else i
    j1 = j + 1 if ys.size > 1 else j
    k1 = k + 1 if zs.size > 1 else k
    c000 = dose[k, j, i]
    c001 = dose[k, j, i1]
    c010 = dose[k, j1, i]
    c011 = dose[k, j1, i1]
    c100 = dose[k1, j, i]
    c101 = dose[k1, j, i1]
    c110 = dose[k1, j1, i]
    c111 = dose[k1, j1, i1]
    c00 = c000 + tx * (c001 - c000)
    c01 = c010 + tx * (c011 - c010)
    c10 = c100 + tx * (c101 - c100)
    c11 = c110 + tx * (c111 - c110)
    c0 = c00 + ty * (c01 - c00)
    c1 = c10 + ty * (c11 - c10)
    val = c0 + tz * (c1 - c0)
    gx = 0.0
    if not cx:
        a0 = (c001 - c000) + ty * ((c011 - c010) - (c001 - c000))
        a1 = (c101 - c100) + ty * ((c111 - c110) - (c101 - c100))
        gx = (a0 + tz * (a1 - a0)) / (xs[i1] - xs[i])
    gy = 0.0
    if not cy:
        gy = ((c01 - c00) + tz * ((c11 - c10) - (c01 - c00))) / (ys[j1] - ys[j])
    gz = 0.0
    if not cz:
        gz = (c1 - c0) / (zs[k1] - zs[k])
    return val, gx, gy, gz


@inline_kernel
def _ramp_edge(ramp2, lo, bw, t, s):
    # adds s * (d - t)_+ sampled at the edges lo + k*bw, as second differences
    u = (t - lo) / bw
    k0 = int(np.floor(u))
    r = (k0 + 1 - u) * bw
    ramp2[k0 + 1] += s * r
    ramp2[k0 + 2] += s * (bw - r)


@inline_kernel
def _accumulate(ramp2, step1, lo, hi, bw, a, b, w):
    """Spread volume ``w`` uniformly over doses ``[a, b]``."""
    if a < lo:
        a = lo
    if b > hi:
        b = hi
    if b - a < 0.5 * bw:
        k = int(np.floor((0.5 * (a + b) - lo) / bw)) + 1
        step1[k] += w
    else:
        s = w / (b - a)
        _ramp_edge(ramp2, lo, bw, a, s)
        _ramp_edge(ramp2, lo, bw, b, -s)


@kernel
def structure_dvh(points_xy, poly_offsets, plane_poly_start, slab_lo, slab_hi,
                  dose, xs, ys, zs, extent, row_y0, row_dy, bin_lo, bin_width, n_bins):
    """Histogram one structure's dose.

    Parameters
    ----------
    points_xy : (n, 2) float64
        Polygon vertices, mm, polygons grouped by plane in plane order.
    poly_offsets : (npoly + 1,) int64
        Vertex ranges of the polygons.
    plane_poly_start : (nplanes + 1,) int64
        Polygon ranges of the planes.
    slab_lo, slab_hi : (nplanes,) float64
        z extent of each plane's slab, mm.
    dose : (nz, ny, nx) float64
        Dose at the grid nodes, Gy.
    xs, ys, zs : float64
        Ascending node coordinates, mm.
    extent : (3, 2) float64
        Region counted as covered by the grid, mm (x, y, z rows).
    row_y0, row_dy : float
        Scan-line lattice: rows at ``row_y0 + (j + 0.5) * row_dy``, mm.
    bin_lo, bin_width : float
        Histogram edges ``bin_lo + k * bin_width``, Gy, ``k = 0 .. n_bins``.
    n_bins : int

    Returns
    -------
    ramp2 : (n_bins + 3,) float64
        Second differences of the cumulative-below curve (mm^3).
    step1 : (n_bins + 3,) float64
        First differences of point masses (mm^3).
    stats : (6,) float64
        covered mm^3, uncovered mm^3, sum of dose x volume (Gy mm^3), Dmin, Dmax (Gy),
        number of elements.
    """
    ramp2 = np.zeros(n_bins + 3)
    step1 = np.zeros(n_bins + 3)
    lo = bin_lo
    hi = bin_lo + n_bins * bin_width
    covered = 0.0
    uncovered = 0.0
    dsum = 0.0
    dmin = np.inf
    dmax = -np.inf
    n_el = 0
    n_planes = slab_lo.size
    nmax = points_xy.shape[0]
    ex1 = np.empty(nmax)
    ey1 = np.empty(nmax)
    ex2 = np.empty(nmax)
    ey2 = np.empty(nmax)
    cross = np.empty(nmax + 1)
    sub = np.empty(zs.size + 2)
    nx = xs.size
    for k in range(n_planes):
        # edge table of the plane
        ne = 0
        ylo = np.inf
        yhi = -np.inf
        for p in range(plane_poly_start[k], plane_poly_start[k + 1]):
            a = poly_offsets[p]
            b = poly_offsets[p + 1]
            for v in range(a, b):
                w_ = v + 1 if v + 1 < b else a
                y1 = points_xy[v, 1]
                y2 = points_xy[w_, 1]
                if y1 < ylo:
                    ylo = y1
                if y1 > yhi:
                    yhi = y1
                if y1 == y2:
                    continue
                ex1[ne] = points_xy[v, 0]
                ey1[ne] = y1
                ex2[ne] = points_xy[w_, 0]
                ey2[ne] = y2
                ne += 1
        if ne == 0:
            continue
        # sub-slabs: the slab clipped to the covered z range, split at z nodes
        z0 = slab_lo[k]
        z1 = slab_hi[k]
        zc0 = max(z0, extent[2, 0])
        zc1 = min(z1, extent[2, 1])
        thick = z1 - z0
        cthick = zc1 - zc0 if zc1 > zc0 else 0.0
        ns = 0
        if cthick > 0:
            sub[0] = zc0
            ns = 1
            for m in range(zs.size):
                if zs[m] > zc0 and zs[m] < zc1:
                    sub[ns] = zs[m]
                    ns += 1
            sub[ns] = zc1
        if ns > 0:
            for p in range(plane_poly_start[k], plane_poly_start[k + 1]):
                a = poly_offsets[p]
                b = poly_offsets[p + 1]
                pylo = np.inf
                pyhi = -np.inf
                area2 = 0.0
                cxs = 0.0
                cys = 0.0
                for v in range(a, b):
                    w_ = v + 1 if v + 1 < b else a
                    x1 = points_xy[v, 0]
                    y1 = points_xy[v, 1]
                    x2 = points_xy[w_, 0]
                    y2 = points_xy[w_, 1]
                    cr = x1 * y2 - x2 * y1
                    area2 += cr
                    cxs += (x1 + x2) * cr
                    cys += (y1 + y2) * cr
                    pylo = min(pylo, y1)
                    pyhi = max(pyhi, y1)
                    # surface-exact extremes: every vertex at both ends of the covered slab
                    if (extent[0, 0] <= x1 <= extent[0, 1]) and (extent[1, 0] <= y1 <= extent[1, 1]):
                        for zz in (zc0, zc1):
                            val, gx, gy, gz = _trilinear_grad(dose, xs, ys, zs, x1, y1, zz)
                            if val < dmin:
                                dmin = val
                            if val > dmax:
                                dmax = val
                # a polygon thinner than the row spacing may fall between rows: keep it as one
                # element at its centroid so that its volume and dose are not lost
                jf = int(np.ceil((pylo - row_y0) / row_dy - 0.5))
                if row_y0 + (jf + 0.5) * row_dy >= pyhi and area2 != 0.0:
                    area = 0.5 * abs(area2)
                    pxc = cxs / (3.0 * area2)
                    pyc = cys / (3.0 * area2)
                    if not ((extent[0, 0] <= pxc <= extent[0, 1]) and (extent[1, 0] <= pyc <= extent[1, 1])):
                        uncovered += area * thick
                        continue
                    uncovered += area * (thick - cthick)
                    size = np.sqrt(area)
                    for s in range(ns):
                        h = sub[s + 1] - sub[s]
                        zc = 0.5 * (sub[s] + sub[s + 1])
                        val, gx, gy, gz = _trilinear_grad(dose, xs, ys, zs, pxc, pyc, zc)
                        w = area * h
                        half = 0.5 * np.sqrt((gx * size) ** 2 + (gy * size) ** 2 + (gz * h) ** 2)
                        if val - half < dmin:
                            dmin = val - half
                        if val + half > dmax:
                            dmax = val + half
                        covered += w
                        dsum += w * val
                        n_el += 1
                        _accumulate(ramp2, step1, lo, hi, bin_width, val - half, val + half, w)
        j0 = int(np.floor((ylo - row_y0) / row_dy))
        j1 = int(np.ceil((yhi - row_y0) / row_dy))
        for j in range(j0, j1 + 1):
            yr = row_y0 + (j + 0.5) * row_dy
            if yr < ylo or yr >= yhi:
                continue
            nc = 0
            for e in range(ne):
                a1 = ey1[e]
                a2 = ey2[e]
                if (a1 <= yr and yr < a2) or (a2 <= yr and yr < a1):
                    xc = ex1[e] + (yr - a1) * (ex2[e] - ex1[e]) / (a2 - a1)
                    # insertion into the sorted crossing list
                    q = nc
                    while q > 0 and cross[q - 1] > xc:
                        cross[q] = cross[q - 1]
                        q -= 1
                    cross[q] = xc
                    nc += 1
            row_in = extent[1, 0] <= yr and yr <= extent[1, 1]
            # a row band reaching past the plane's outline spreads dose only over the part inside
            band = min(row_dy, 2.0 * (yr - ylo), 2.0 * (yhi - yr))
            for q in range(0, nc - 1, 2):
                xa = cross[q]
                xb = cross[q + 1]
                length = xb - xa
                if length <= 0.0:
                    continue
                if not row_in or cthick <= 0.0:
                    uncovered += length * row_dy * thick
                    continue
                uncovered += length * row_dy * (thick - cthick)
                xa_c = max(xa, extent[0, 0])
                xb_c = min(xb, extent[0, 1])
                if xb_c <= xa_c:
                    uncovered += length * row_dy * cthick
                    continue
                uncovered += (length - (xb_c - xa_c)) * row_dy * cthick
                xs0 = xa_c
                m = np.searchsorted(xs, xa_c, side="right")
                while True:
                    xe = xb_c
                    if m < nx and xs[m] < xb_c:
                        xe = xs[m]
                    lp = xe - xs0
                    if lp > 0.0:
                        xc = 0.5 * (xs0 + xe)
                        for s in range(ns):
                            h = sub[s + 1] - sub[s]
                            zc = 0.5 * (sub[s] + sub[s + 1])
                            val, gx, gy, gz = _trilinear_grad(dose, xs, ys, zs, xc, yr, zc)
                            w = lp * row_dy * h
                            half = 0.5 * np.sqrt((gx * lp) ** 2 + (gy * band) ** 2 + (gz * h) ** 2)
                            lo_d = val - half
                            hi_d = val + half
                            if lo_d < dmin:
                                dmin = lo_d
                            if hi_d > dmax:
                                dmax = hi_d
                            covered += w
                            dsum += w * val
                            n_el += 1
                            _accumulate(ramp2, step1, lo, hi, bin_width, lo_d, hi_d, w)
                    if xe >= xb_c:
                        break
                    xs0 = xe
                    m += 1
    stats = np.empty(6)
    stats[0] = covered
    stats[1] = uncovered
    stats[2] = dsum
    stats[3] = dmin
    stats[4] = dmax
    stats[5] = n_el
    return ramp2, step1, stats


@kernel
def trilinear_points(dose, xs, ys, zs, points, outside_value):
    """Trilinear dose at ``points`` (n, 3) x/y/z mm; ``outside_value`` beyond the node hull."""
    n = points.shape[0]
    out = np.empty(n)
    for p in range(n):
        x = points[p, 0]
        y = points[p, 1]
        z = points[p, 2]
        if (x < xs[0] or x > xs[xs.size - 1] or y < ys[0] or y > ys[ys.size - 1]
                or z < zs[0] or z > zs[zs.size - 1]):
            out[p] = outside_value
            continue
        val, gx, gy, gz = _trilinear_grad(dose, xs, ys, zs, x, y, z)
        out[p] = val
    return out
