"""Pure numba kernels of the DVH engine: arrays in, arrays out; no I/O, no objects.

Geometry of one structure reaches the kernels as flat arrays (see :class:`sbrt_qa.models.Structure`)
with polygons sorted by plane; the dose grid as a ``[z, y, x]`` float64 array with ascending node
coordinates.

Method (see ``sbrt_qa/dvh/core.py`` for the conventions):

* The structure is cut into *layers* along z. A layer ``(a, a, z0, z1)`` is a slab: plane ``a``'s
  region held constant over ``[z0, z1]`` (the end caps, a lone plane, and every plane in slab
  mode). A layer ``(a, a + 1, z_a, z_{a+1})`` lies between two adjacent planes and holds the
  shape-based interpolation of their regions (below).
* Scan lines run in x at row centres ``row_y0 + (j + 0.5) * row_dy``; ``row_dy`` divides the grid's
  y spacing, so a row band never straddles a y node. Crossings follow the half-open rule
  (an edge counts when ``min(y1, y2) <= y < max(y1, y2)``), and the even-odd rule pairs them into
  exact x-intervals, so islands and holes need no special case. Each plane's crossings are
  computed once, from an edge table. A row stands for its band ``row_dy`` high: exact while the
  region's width changes linearly across the band, but not at a flat top or bottom (an edge along
  x), so each plane's rows are weighted by the exact band areas (``_row_weights``).
* Between planes ``a`` and ``b`` a row splits into the parts inside both regions (inside for the
  whole layer), inside neither, and inside one only. There, each point ``(x, y)`` is inside for one
  z-interval ending at the interpolated surface: the zero of a monotone cubic Hermite interpolant
  in z (Fritsch-Carlson limited; three-point slopes from
  the neighbouring planes of the run, so a ``phi`` quadratic in z is reproduced; a plane beyond
  the layer whose nearest outline is of the other kind, outer or hole, and more than a spacing
  farther gives none: past a hole's pole it shows the outer outline) of the in-plane
  implicit values ``phi_k(x, y) = s (s + 2 L)``: ``s`` is the signed Euclidean distance to plane
  ``k``'s region (negative inside) and ``L`` the half thickness of the nearest polygon
  (``min(half the smaller bounding-box side, 2 area / perimeter)``; for a hole the roles of inside
  and outside swap). For concentric circles ``phi = rho^2 - r_k^2``, so spheres, cones, cylinders
  and rounded tips, whose ``r^2`` is quadratic in z, come out exactly; for large sections that
  change little between planes it tends to the classic linear interpolation of signed distance.
  A hole that ends between two planes (say, a target cut out of an organ) has no value of its own
  on the plane beyond: it closes where the quadratic through its values on its last three planes
  reaches zero (linear through two; half-way without a trend), so its end is a dome, not a lid.
  Being monotone between two planes, the interpolant keeps a point inside both planes inside
  throughout, so distances are needed only where the two regions differ (nearest-edge search in a
  grid of cells per plane). Along such a part of a row the surface is solved at samples
  ``SAMPLE_ROWS`` rows apart, and is known where the part ends on an outline (no height on the
  inside plane's own outline, full height on the other's); a monotone cubic through these gives
  the column height for every piece of at most one row. An edge that lies on the line of an edge
  of the other plane, with the region on the same side, is a *wall* (``_walls``): the two bound a
  face parallel to z, such as the flat end of a cylinder lying in the axial plane. The distances
  leave walls out (the rest of the outline says where the surface lies), and a part that ends
  on a wall is sampled there instead of dropping to no height: rounded off, the end of a 0.4 cc
  lying cylinder lost 1.1 % of its volume.
* A point outside both planes may still be inside between them: where a round body is widest
  between two planes (a sphere's equator), its section there is larger than on either, and the
  cubic (without the monotone limit; exact for ``phi`` quadratic in z) dips below zero over an
  interval of z. Next to each crossing where a scan line leaves both regions, the dip is followed
  outwards to where it ends (``_bulge``), and the columns of that bulge are histogrammed like
  those under the surface. A 0.5 cc sphere with its equator half-way between planes 3 mm apart
  lost 2.7 % of its volume without them. The search runs only in layers whose section areas
  (``pi rho^2``, interpolated the same way), or the half thickness squared of their thickest
  polygons (a rectangle's area grows with its width, its width squared like a circle's
  ``rho^2``), say the bulge reaches ``BULGE_MIN_ROWS`` (a large organ's: micrometres), and only
  where the planes beyond the layer show the same body: the
  point outside them, their outlines near (``_bulge_at``; a small part next to another part on
  the plane below would otherwise bulge over the gap).
  Beyond both outlines' y extent no scan line has crossings to start from: there (above a
  section's flat top, as of a cylinder lying along x; beyond the tip of a round one) the bulge is
  looked for over the x range of the last row with crossings, in bands a quarter of a row high,
  outwards until a band shows none (``_bulge_row``; a cylinder r 3 mm lying along x, planes
  2 mm apart: -1.64 % of its volume without them, -0.89 % with them). Not followed: the
  converse, a waist (a section smaller between the planes than on them).
* Each piece of region is split at the grid's x and z nodes. A piece x row band x z-range is one
  *element*, except in *blocks*: where several layers share a z cell of the grid, a whole x cell
  of a row that lies inside every plane of those layers is one element over the cell's z range
  (weights integrated over the layers), histogrammed by the first of them and skipped by all;
  about half the elements of a large structure's interior. An element's dose is trilinear
  interpolation at its centre and its spread is the local gradient times its extent,
  ``W = sqrt((gx Lx)^2 + (gy Ly)^2 + (gz Lz)^2)``. An element that ends on an outline (or, between
  planes, under the interpolated surface) is not a box but a trapezoid: its x ends follow the
  outlines' slopes across the row band, its z end the surface's slope along x; its dose is then
  the centroid's and its spread has the trapezoid's variance (``_element``), so that the region
  sends no dose beyond its outline (a 30 mm target in a 6 Gy/mm fall-off: D98 0.21 Gy cold with
  boxes, 0.02 Gy with trapezoids). The element's volume is spread uniformly over
  ``[c - W/2, c + W/2]``: exact for a dose linear along one axis (trilinear interpolation is
  linear along x within a cell, and an element's extent along z is within one z cell) and
  matching the mean and variance otherwise.
* The cumulative histogram is accumulated exactly at bin edges: a uniform spread is a ramp in the
  cumulative curve, written as two second-difference entries; spreads narrower than half a bin
  are point masses (first differences).
* Dmin and Dmax are the extremes of the dose over the structure itself, not over the spread
  histogram: trilinear dose peaks at grid nodes or on the boundary, so the candidates are the
  grid nodes inside the region and, along each edge, the pieces between grid lines (quadratic at
  fixed z), at every z where the dose along z can bend (slab ends, planes, z nodes); between
  planes, the interpolated surface contributes its samples. Element centres seed the search so
  that cells which cannot beat them are skipped.
"""

from __future__ import annotations

import numpy as np

from .._jit import inline_kernel, kernel, loop_kernel
from ..geometry._kernels import plane_lines as _plane_lines

#: spacing of the surface samples between planes, in scan rows (linear in between)
SAMPLE_ROWS = 2.0
#: a part shorter than this (in scan rows) that runs from one plane's outline to the other's has
#: no samples: its surface is taken as linear between the two known heights at its ends
SHORT_PART_ROWS = 0.5
#: largest slope dx/dy with which an element between two outlines leans as a whole
#: (:func:`_end_slopes`): an outline flatter than this crosses the band too far from the row
MAX_LEAN = 3.0
#: bits of :func:`_walls`: the edge is a wall with the plane above / below in its layer; and
#: that wall goes on, the edge it pairs with being a wall with the next plane up / down as well
WALL_UP = 1
WALL_DOWN = 2
WALL_UP_ON = 4
WALL_DOWN_ON = 8
#: the walls the surface's distances leave out on planes a, b, and the outer planes below a and
#: above b (:func:`_phi`)
ROLE_WALLS = (WALL_UP, WALL_DOWN, WALL_UP_ON, WALL_DOWN_ON)
#: distance within which two edges on adjacent planes lie on one line (a wall), mm
WALL_TOL = 1e-3
#: farthest a bulge beyond the outlines (:func:`_bulge`) is followed along a scan line, in scan
#: rows
BULGE_REACH_ROWS = 16.0
#: bulges that the planes' areas say reach less than this, in scan rows, are not looked for
#: (:func:`_bulge_reach`)
BULGE_MIN_ROWS = 0.05
#: elements computed before they are histogrammed together (:func:`_tally_run`)
ELEMENT_BUFFER = 256


@inline_kernel
def _ramp_edge(ramp2, lo, bw, ibw, t, s):
    # adds s * (d - t)_+ sampled at the edges lo + k*bw, as second differences (t >= lo)
    u = (t - lo) * ibw
    k0 = int(u)
    r = (k0 + 1 - u) * bw
    ramp2[k0 + 1] += s * r
    ramp2[k0 + 2] += s * (bw - r)


@inline_kernel
def _accumulate(ramp2, step1, lo, hi, bw, ibw, a, b, w):
    """Spread volume ``w`` uniformly over doses ``[a, b]`` (``ibw = 1 / bw``)."""
    if a < lo:
        a = lo
    if b > hi:
        b = hi
    if b - a < 0.5 * bw:
        k = int((0.5 * (a + b) - lo) * ibw) + 1
        step1[k] += w
    else:
        s = w / (b - a)
        _ramp_edge(ramp2, lo, bw, ibw, a, s)
        _ramp_edge(ramp2, lo, bw, ibw, b, -s)


@inline_kernel
def _axis(c, m, v):
    """Cell of ``v`` on axis ``c`` given ``m = searchsorted(c, v, "right")``.

    Returns the two node indices, the fraction of ``v`` between them and ``1 / spacing``, which is
    0 where the dose is held constant (beyond the outermost nodes, or a single node).
    """
    n = c.size
    if n == 1:
        return 0, 0, 0.0, 0.0
    if m <= 0:
        return 0, 1, 0.0, 0.0
    if m >= n:
        return n - 2, n - 1, 1.0, 0.0
    i = m - 1
    h = c[m] - c[i]
    return i, m, (v - c[i]) / h, 1.0 / h


@inline_kernel
def _guess(c, v):
    """Index near which ``v`` falls on the ascending axis ``c``: exact for a uniform axis."""
    n = c.size
    if n < 2:
        return 0
    u = (v - c[0]) * (n - 1) / (c[n - 1] - c[0])
    if u < 0.0:
        return 0
    if u > n:
        return n
    return int(u)


@inline_kernel
def _right(c, v):
    """``np.searchsorted(c, v, side="right")`` for an ascending axis: a guess from the axis' mean
    spacing, then a walk; one step on the (uniform) axes of a dose grid instead of a binary search
    with unpredictable branches."""
    n = c.size
    g = min(_guess(c, v) + 1, n)
    while g > 0 and c[g - 1] > v:
        g -= 1
    while g < n and c[g] <= v:
        g += 1
    return g


@inline_kernel
def _left(c, v):
    """``np.searchsorted(c, v, side="left")`` for an ascending axis (see :func:`_right`)."""
    n = c.size
    g = _guess(c, v)
    while g > 0 and c[g - 1] >= v:
        g -= 1
    while g < n and c[g] < v:
        g += 1
    return g


@inline_kernel
def _node_column(dose, i, j0, j1, ty, sy, k0, k1, tz, sz):
    """Dose on the grid line ``x = xs[i]`` at cell fractions ``ty, tz`` (bilinear), and its y and z
    derivatives (Gy/mm): trilinear dose is linear in x between two such lines."""
    c00 = dose[k0, j0, i]
    c01 = dose[k0, j1, i]
    c10 = dose[k1, j0, i]
    c11 = dose[k1, j1, i]
    c0 = c00 + ty * (c01 - c00)
    c1 = c10 + ty * (c11 - c10)
    return (c0 + tz * (c1 - c0), ((c01 - c00) + tz * ((c11 - c10) - (c01 - c00))) * sy,
            (c1 - c0) * sz)


@inline_kernel
def _trilinear_cell(dose, i0, i1, tx, sx, j0, j1, ty, sy, k0, k1, tz, sz):
    """Trilinear dose in one cell at fractions ``tx, ty, tz``, and its partial derivatives
    (Gy/mm; ``sx, sy, sz`` are 1/spacing, 0 where the dose is held constant): linear in x between
    the cell's two grid lines (:func:`_node_column`)."""
    v0, gy0, gz0 = _node_column(dose, i0, j0, j1, ty, sy, k0, k1, tz, sz)
    v1, gy1, gz1 = _node_column(dose, i1, j0, j1, ty, sy, k0, k1, tz, sz)
    return (v0 + tx * (v1 - v0), (v1 - v0) * sx, gy0 + tx * (gy1 - gy0),
            gz0 + tx * (gz1 - gz0))


@loop_kernel
def _tally_run(elems, n, acc, ramp2, step1, lo, hi, bw, ibw):
    """Histogram the elements ``elems[:, :n]`` (rows: centre dose, half spread, volume) in order:
    each volume spread uniformly over its centre dose +- its half spread. A centre dose is a point
    of the structure, so a candidate extreme (``acc``: volume, -, dose x volume, min, max, count).

    The elements are computed first and histogrammed here, apart: the histogram's scattered
    updates interleaved with the elements' arithmetic made both wait. Measured on the cells of a
    dose grid: 15 -> 11.5 ns per element; 13.4 -> 6.3 ns per cell for a block row's cells, whose
    arithmetic is then vectorised (:func:`_block_run`)."""
    mn = acc[3]
    mx = acc[4]
    s_w = acc[0]
    s_wv = acc[2]
    s_n = acc[5]
    for c in range(n):
        val = elems[0, c]
        half = elems[1, c]
        w = elems[2, c]
        if val < mn:
            mn = val
        if val > mx:
            mx = val
        s_w += w
        s_wv += w * val
        s_n += 1.0
        _accumulate(ramp2, step1, lo, hi, bw, ibw, val - half, val + half, w)
    acc[0] = s_w
    acc[2] = s_wv
    acc[3] = mn
    acc[4] = mx
    acc[5] = s_n


@inline_kernel
def _element(elems, n, acc, ramp2, step1, lo, hi, bw, ibw, dose, i0, i1, tx, sx, j0, j1, ty, sy,
             k0, k1, tz, sz, w, lx, ly, lz, ca, cb, za, zb):
    """Add an element, volume ``w`` of extent ``lx x ly x lz`` centred at the given cell fractions,
    to the ``n`` buffered in ``elems``; a full buffer is histogrammed (:func:`_tally_run`). Returns
    the new number buffered, the dose x volume for the mean beyond the histogrammed one, and the
    dose at the element's middle (a point of the region: an extreme's candidate). The caller
    sums those in locals (written to ``acc`` here, they cost 8 % of the plan's time).

    ``ca`` and ``cb`` are the slopes ``dx/dy`` of its two x ends across its row band where they
    follow an outline (or lean with one, between planes), 0 where it is cut along a grid line:
    the element is the trapezoid ``a + ca t <= x <= b + cb t``, ``|t| <= ly / 2``; ``za`` and
    ``zb`` are the slopes ``dz/dx`` of its z ends where one is the interpolated surface. With
    all four 0 it is a box. A linear dose over the trapezoid has its mean at the centroid, off the
    row by ``(cb - ca) ly^2 / (12 lx)`` along the ends, and the variance of ``gx`` over
    ``lx^2 + (cb - ca)^2 ly^2 / 4`` and of the derivative along the ends, ``gy + s gx`` (``s =
    (ca + cb) / 2``), over ``ly^2`` (each / 12); likewise for the z ends along x. As a box, an
    element at an oblique outline in a steep fall-off spread its dose as if it reached beyond the
    outline, colder (or hotter) than any point of the region. The slopes are limited
    (:func:`_end_slopes`) where the outline leaves the element's cell within the band; the mean
    dose still takes the moment of the whole trapezoid (the dose x volume returned), which the
    neighbouring elements' boxes complete, so that it stays exact for a linear dose.
    """
    val, gx, gy, gz = _trilinear_cell(dose, i0, i1, tx, sx, j0, j1, ty, sy, k0, k1, tz, sz)
    dm = 0.0
    if ca == 0.0 and cb == 0.0 and za == 0.0 and zb == 0.0:
        elems[0, n] = val
        elems[1, n] = 0.5 * np.sqrt((gx * lx) ** 2 + (gy * ly) ** 2 + (gz * lz) ** 2)
    else:
        za_c, zb_c = _end_slopes(za, zb, lz, lx)
        ca_c, cb_c = _end_slopes(ca, cb, lx, ly)
        ca_r = _lean(ca)
        cb_r = _lean(cb)
        # z ends that slope along x: the mean across the element changes along x by
        # gx + gz (za + zb) / 2. They keep their height along the x ends' slopes: along those
        # the dose changes by gy + s gx
        gxs = gx + 0.5 * (za_c + zb_c) * gz
        gxr = gx + 0.5 * (za + zb) * gz
        s = 0.5 * (ca_c + cb_c)
        s_r = 0.5 * (ca_r + cb_r)
        shift = (gxs * (zb_c - za_c) * lx * lx / (12.0 * lz)
                 + (gy + s * gx) * (cb_c - ca_c) * ly * ly / (12.0 * lx))
        shift_r = (gxr * (zb - za) * lx * lx / (12.0 * lz)
                   + (gy + s_r * gx) * (cb_r - ca_r) * ly * ly / (12.0 * lx))
        # the trapezoid's own volume: a band-area weight (``w``) may make up for a row whose
        # section is degenerate, where the element is no trapezoid
        dm = lx * ly * lz * (shift_r - shift)
        elems[0, n] = val + shift
        elems[1, n] = 0.5 * np.sqrt((gxs * lx) ** 2 + ((gy + s * gx) * ly) ** 2 + (gz * lz) ** 2
                                    + 0.25 * (gxs * (cb_c - ca_c) * ly) ** 2
                                    + 0.25 * (gz * (zb_c - za_c) * lx) ** 2)
    elems[2, n] = w
    n += 1
    if n == elems.shape[1]:
        _tally_run(elems, n, acc, ramp2, step1, lo, hi, bw, ibw)
        n = 0
    return n, dm, val


@inline_kernel
def _lean(c):
    """Slope ``c`` limited to ``MAX_LEAN``."""
    return min(max(c, -MAX_LEAN), MAX_LEAN)


@inline_kernel
def _end_slopes(ca, cb, lx, ly):
    """The end slopes ``dx/dy`` an element of length ``lx`` across a band ``ly`` takes
    (:func:`_element`) for the slopes ``ca`` and ``cb`` of its ends, 0 where it is cut along a
    grid line. Next to such a cut, the other end's slope is limited to ``2 lx / ly``: beyond,
    the outline leaves the cell within the band. With both ends sloping, the element may lean as
    a whole (by at most ``MAX_LEAN``) but its length may change by at most ``lx`` across the
    band."""
    if ly <= 0.0:
        return 0.0, 0.0
    lim = 2.0 * lx / ly
    if ca == 0.0:
        return 0.0, min(max(cb, -lim), lim)
    if cb == 0.0:
        return min(max(ca, -lim), lim), 0.0
    ca = _lean(ca)
    cb = _lean(cb)
    d = cb - ca
    if abs(d) > lim:
        m = 0.5 * (ca + cb)
        h = 0.5 * lim if d > 0.0 else -0.5 * lim
        return m - h, m + h
    return ca, cb


@inline_kernel
def _cell_spread(v0, gy0, gz0, v1, gy1, gz1, ly, lz):
    """Value and half spread (:func:`_element`) of a whole x cell of extent ``ly x lz`` (y, z), from
    the dose and derivatives on its two grid lines (:func:`_node_column`): the trilinear value and
    gradient at the cell's middle."""
    gy = 0.5 * (gy0 + gy1) * ly
    gz = 0.5 * (gz0 + gz1) * lz
    return 0.5 * (v0 + v1), 0.5 * np.sqrt((v1 - v0) ** 2 + gy * gy + gz * gz)


@inline_kernel
def _block_run(dose, xs, i0, i1, j0, j1, ty, sy, k0, k1, tz, sz, row_dy, wz, ly, lz, col, cell,
               acc, ramp2, step1, lo, hi, bw, ibw):
    """Histogram the whole x cells between grid lines ``i0`` and ``i1`` of a block row (volume
    ``(xs[i + 1] - xs[i]) * row_dy * wz`` each), exactly as :func:`_element` one after the other
    would, in three passes: the grid lines' doses, the cells' values, spreads and volumes (neither
    branches, so the compiler vectorises them), then :func:`_tally_run`. ``col`` (3, m) and
    ``cell`` (3, m): work space of at least ``m = i1 - i0 + 1`` columns."""
    n = i1 - i0
    for c in range(n + 1):
        v, gy, gz = _node_column(dose, i0 + c, j0, j1, ty, sy, k0, k1, tz, sz)
        col[0, c] = v
        col[1, c] = gy
        col[2, c] = gz
    for c in range(n):
        val, half = _cell_spread(col[0, c], col[1, c], col[2, c], col[0, c + 1], col[1, c + 1],
                                 col[2, c + 1], ly, lz)
        cell[0, c] = val
        cell[1, c] = half
        cell[2, c] = (xs[i0 + c + 1] - xs[i0 + c]) * row_dy * wz
    _tally_run(cell, n, acc, ramp2, step1, lo, hi, bw, ibw)


@inline_kernel
def _column(n_el, hist, grid, row, cz, covered, xs0, xs1, xc, c0, c1, wd, c_s0, c_s1, s_lo, s_hi,
            moment, v_lo, v_hi):
    """The elements of a column between planes: ``[xs0, xs1]`` on a row band (``band`` of its
    height ``row_dy`` inside; weight ``wd``), from ``z = c0`` to ``c1``, one of them or both on
    the interpolated surface; split at the x nodes and z cells. ``c_s0``, ``c_s1``: slopes dx/dy
    of its x ends (:func:`_element`); ``s_lo``, ``s_hi``: slopes dz/dx of its lower and upper end
    (0 where not on the surface). Its ends and z nodes are candidate extremes. Volume beyond the
    grid's cover (``covered`` False: the row or x range; or beyond ``ez0, ez1`` in z) is added
    to ``acc[1]``. Returns ``n_el``, and ``moment``, ``v_lo``, ``v_hi`` updated (:func:`_element`).

    The other arguments come in tuples (a call of more than 30 arguments compiles to one numba
    cannot inline): ``hist`` (elements buffer, ``acc``, ``ramp2``, ``step1``, bin range and
    width, 1/width), ``grid`` (dose, x and z nodes, covered z range), ``row`` (the row's y cell
    and fraction, 1/spacing, ``row_dy``, ``band``) and ``cz`` (work space of :func:`_zcells`)."""
    elems, acc, ramp2, step1, lo, hi, bin_width, inv_bw = hist
    dose, xs, zs, ez0, ez1 = grid
    iy0, iy1, ty, sy, row_dy, band = row
    cz_i0, cz_i1, cz_t, cz_s, cz_h = cz
    if not c1 > c0:
        return n_el, moment, v_lo, v_hi
    if not covered:
        acc[1] += (xs1 - xs0) * row_dy * wd * (c1 - c0)
        return n_el, moment, v_lo, v_hi
    d0 = max(c0, ez0)
    d1 = min(c1, ez1)
    acc[1] += (xs1 - xs0) * row_dy * wd * ((c1 - c0) - max(d1 - d0, 0.0))
    if d1 <= d0:
        return n_el, moment, v_lo, v_hi
    nx = xs.size
    ncz = _zcells(zs, d0, d1, cz_i0, cz_i1, cz_t, cz_s, cz_h)
    ix0, ix1, tx, sx = _axis(xs, _right(xs, xc), xc)
    zz = d0
    for q in range(ncz):
        if q == 0:
            _update(acc, _bilinear(dose, cz_i0[q], cz_i1[q], _frac(zs, cz_i0[q], cz_i1[q], zz),
                                   iy0, iy1, ix0, ix1, tx, ty))
        zz += cz_h[q]
        _update(acc, _bilinear(dose, cz_i0[q], cz_i1[q], _frac(zs, cz_i0[q], cz_i1[q], zz),
                               iy0, iy1, ix0, ix1, tx, ty))
    x_lo = xs0
    m = _right(xs, xs0)
    while True:
        x_hi = xs1
        if m < nx and xs[m] < xs1:
            x_hi = xs[m]
        lp = x_hi - x_lo
        if lp > 0.0:
            ix0, ix1, tx, sx = _axis(xs, m, 0.5 * (x_lo + x_hi))
            c_lo = c_s0 if x_lo == xs0 else 0.0
            c_hi = c_s1 if x_hi == xs1 else 0.0
            for q in range(ncz):
                # the z piece that ends on the surface slopes with it
                z_lo = s_lo if q == 0 and d0 == c0 else 0.0
                z_hi = s_hi if q == ncz - 1 and d1 == c1 else 0.0
                n_el, dm, v = _element(elems, n_el, acc, ramp2, step1, lo, hi, bin_width, inv_bw,
                                       dose, ix0, ix1, tx, sx, iy0, iy1, ty, sy, cz_i0[q],
                                       cz_i1[q], cz_t[q], cz_s[q], lp * row_dy * wd * cz_h[q],
                                       lp, band, cz_h[q], c_lo, c_hi, z_lo, z_hi)
                moment += dm
                v_lo = min(v_lo, v)
                v_hi = max(v_hi, v)
        if x_hi >= xs1:
            break
        x_lo = x_hi
        m += 1
    return n_el, moment, v_lo, v_hi


@inline_kernel
def _bulge_at(fb, geo, lay, x, j):
    """:func:`_dip` of the implicit values at ``x`` on row ``j``, a point outside both planes of
    the layer ``lay`` = ``(a, b, nlo, nhi, z0, z1, h0, h1, h2)``; ``geo``: the arguments of
    :func:`_phi4` that describe the planes, ``fb``: its ``fv, fs, fd``.

    A plane beyond the layer gives the curvature only where it shows the same body: the point
    must lie outside it, and its outline no farther beyond the point than the nearer of a and
    b's by ``MAX_LEAN`` times the spacing (farther, it is another part of the structure, or a
    part that ends: a small part on a and b only next to a larger one on the plane below would
    otherwise bulge over the gap between them). Else: no dip."""
    fv, fs, fd = fb
    (points_xy, poly_offsets, poly_of_v, half_thick, poly_sign, origin, dims, cell_off, seg, seg_v,
     wall, plane_wall, cell, row0, nrow, row_base, row_off, cross, cross_v, row_y0, row_dy) = geo
    a, b, nlo, nhi, z0, z1, h0, h1, h2 = lay
    _phi4_call(fv, fs, fd, points_xy, poly_offsets, poly_of_v, half_thick, poly_sign, origin,
               dims, cell_off, seg, seg_v, wall, plane_wall, cell, row0, nrow, row_base, row_off,
               cross, cross_v, a, b, nlo, nhi, x, j, row_y0, row_dy)
    near = min(max(fd[0], 0.0), max(fd[1], 0.0))
    if nlo >= 0 and not (0.0 < fd[2] <= near + MAX_LEAN * h0):
        return 1.0, 0.0, 1.0
    if nhi >= 0 and not (0.0 < fd[3] <= near + MAX_LEAN * h2):
        return 1.0, 0.0, 1.0
    # the scan line decides the side; a distance of ~0 cannot flip it
    pa = max(fv[0], 0.0)
    pb = max(fv[1], 0.0)
    ma, mb = _slopes(fv[2], pa, pb, fv[3], nlo >= 0, nhi >= 0, h0, h1, h2)
    return _dip(pa, pb, ma * h1, mb * h1)


@inline_kernel
def _face(w, from_a):
    """Whether a scan-line crossing's edge (wall bits ``w`` of :func:`_walls`, an edge of plane a
    if ``from_a``, else of b) bounds a face across three planes or more: a wall with the layer's
    other plane that goes on beyond it (the flat end of a cylinder lying in the axial plane). No
    bulge passes it: near its corners the implicit values follow the other outline's curvature
    and would round the face off outwards (0.11 mm past a lying cylinder's end, Dmax 0.28 Gy
    high in a 2.5 Gy/mm field). Equal outlines on two planes only (a sphere's equator half-way)
    are no face."""
    if from_a:
        return (w & WALL_UP) != 0 and (w & (WALL_DOWN | WALL_UP_ON)) != 0
    return (w & WALL_DOWN) != 0 and (w & (WALL_UP | WALL_DOWN_ON)) != 0


@inline_kernel
def _plane_area(plane_poly_start, parea, poly_sign, pcx, pcy, k):
    """Area of plane ``k``'s region (holes subtracted), mm^2, and its centroid, mm."""
    area = 0.0
    mx = 0.0
    my = 0.0
    for p in range(plane_poly_start[k], plane_poly_start[k + 1]):
        w = poly_sign[p] * parea[p]
        area += w
        mx += w * pcx[p]
        my += w * pcy[p]
    if area == 0.0:
        return 0.0, 0.0, 0.0
    return area, mx / area, my / area


@inline_kernel
def _thickest(plane_poly_start, half_thick, k):
    """Half thickness of plane ``k``'s thickest polygon, mm (0 for no plane, ``k < 0``)."""
    t = 0.0
    if k >= 0:
        for p in range(plane_poly_start[k], plane_poly_start[k + 1]):
            t = max(t, half_thick[p])
    return t


@inline_kernel
def _bulge_reach(plane_poly_start, parea, poly_sign, pcx, pcy, half_thick, lay):
    """How far, mm, the section of a layer may pass beyond the larger of its two planes' as a
    whole: interpolating the planes' areas ``pi rho^2`` like the implicit values (the cubic
    through ``rho^2`` on the four planes), the growth of ``rho`` from the larger plane's to the
    cubic's maximum between the planes, to first order (a sphere: ``rho^2`` is quadratic in z; a
    0.5 cc one with its equator half-way between planes 3 mm apart: 0.240 mm for 0.234 mm); a
    large organ's, a few micrometres. Sections that shift by ``d`` between the planes (a tilted
    tube: no growth) pass beyond both planes' outlines where those cross, by about
    ``d^2 / (8 rho)``, which is added for compact sections (each plane's thickest polygon at
    least half ``rho`` thick: not a ring such as a chest wall, whose centroid says nothing of
    where its outline goes)."""
    a, b, nlo, nhi, z0, z1, h0, h1, h2 = lay
    if nlo < 0 and nhi < 0:
        return 0.0
    ra, xa, ya = _plane_area(plane_poly_start, parea, poly_sign, pcx, pcy, a)
    rb, xb, yb = _plane_area(plane_poly_start, parea, poly_sign, pcx, pcy, b)
    ra /= np.pi
    rb /= np.pi
    rl = 0.0
    rh = 0.0
    if nlo >= 0:
        rl = _plane_area(plane_poly_start, parea, poly_sign, pcx, pcy, nlo)[0] / np.pi
    if nhi >= 0:
        rh = _plane_area(plane_poly_start, parea, poly_sign, pcx, pcy, nhi)[0] / np.pi
    top = max(ra, rb)
    if top <= 0.0:
        return 0.0
    ta = _thickest(plane_poly_start, half_thick, a)
    tb = _thickest(plane_poly_start, half_thick, b)
    thick = min(ta, tb)
    shift = 0.0
    if thick >= 0.5 * np.sqrt(top):
        shift = ((xb - xa) ** 2 + (yb - ya) ** 2) / (8.0 * np.sqrt(top))
    ma, mb = _slopes(rl, ra, rb, rh, nlo >= 0, nhi >= 0, h0, h1, h2)
    # the cubic's excess over the larger plane: where top - cubic dips below zero
    _t1, _t2, m = _dip(top - ra, top - rb, -ma * h1, -mb * h1)
    grow = 0.0 if m >= 0.0 else -m / (2.0 * np.sqrt(top))
    # the same through the thickest polygon's half thickness squared: a section whose width
    # grows while its length does not (a cylinder lying along x: rectangles, their areas linear
    # in the width, but the width squared quadratic in z)
    ta *= ta
    tb *= tb
    tt = max(ta, tb)
    if tt > 0.0:
        tl = _thickest(plane_poly_start, half_thick, nlo) ** 2
        th = _thickest(plane_poly_start, half_thick, nhi) ** 2
        ma, mb = _slopes(tl, ta, tb, th, nlo >= 0, nhi >= 0, h0, h1, h2)
        _t1, _t2, m = _dip(tt - ta, tt - tb, -ma * h1, -mb * h1)
        if m < 0.0:
            grow = max(grow, -m / (2.0 * np.sqrt(tt)))
    return shift + grow


@inline_kernel
def _inside_beyond(geo, nlo, nhi, j, x):
    """Whether ``x`` on row ``j`` is inside either plane beyond the layer (``nlo``, ``nhi``; -1:
    none): there a dip of the cubic is only its overshoot, no bulge (:func:`_bulge`)."""
    for k in (nlo, nhi):
        if k >= 0 and _inside_at(geo[13], geo[14], geo[15], geo[16], geo[17], k, j, x):
            return True
    return False


@loop_kernel
def _bulge(n_el, hist, grid, row, cz, fb, geo, lay, j, x_e, dirn, lim, covered_row, ex0, ex1,
           moment, v_lo, v_hi):
    """The bulge beyond an outline between two planes: the columns outside both planes, next to
    the crossing at ``x_e`` and on its side ``dirn`` (+1: greater x) up to ``lim`` away, where the
    interpolated surface passes beyond both outlines (:func:`_dip`): the equator of a sphere
    between two planes. It reaches as far as the cubic still dips below zero (found by doubling
    steps, then regula falsi) and is sampled at ``s = R (1 - u^2)`` for ``u`` at the middles of
    equal steps: its height falls like the square root of the distance to its reach ``R``, which
    this makes smooth. Returns ``n_el``, ``moment``, ``v_lo``, ``v_hi`` (:func:`_column`).

    A bulge is a section larger
    between the planes than on them and on the planes beyond (``nlo``, ``nhi``): where the point
    lies inside either of those, the search is skipped (there the cubic may dip only by
    overshooting, as where the outline of a growing section stays put for two planes). A wall is
    no exception: the implicit values leave it out of their distances, which grow beyond it all
    the same; an outline copied on both planes is a wall too, and a sphere's equator half-way
    between the planes bulges beyond it."""
    row_dy = row[4]
    a, b, nlo, nhi, z0, z1, h0, h1, h2 = lay
    x_out = x_e + dirn * 1e-6 * row_dy
    if _inside_beyond(geo, nlo, nhi, j, x_out):
        return n_el, moment, v_lo, v_hi
    _t1, _t2, f_in = _bulge_at(fb, geo, lay, x_e, j)
    # a dip within rounding of zero holds no volume
    if not f_in < -1e-9 * (1.0 + abs(fb[0][2]) + abs(fb[0][3])):
        return n_el, moment, v_lo, v_hi
    s_in = 0.0
    s_out = -1.0
    f_out = 0.0
    s = min(0.5 * row_dy, lim)
    for _ in range(16):
        _t1, _t2, f = _bulge_at(fb, geo, lay, x_e + dirn * s, j)
        if not f < 0.0:
            s_out = s
            f_out = f
            break
        s_in = s
        f_in = f
        if s >= lim:
            break
        s = min(2.0 * s, lim)
    reach = s_in
    if s_out > 0.0:
        for _ in range(3):
            sn = s_in + (s_out - s_in) * f_in / (f_in - f_out)
            _t1, _t2, f = _bulge_at(fb, geo, lay, x_e + dirn * sn, j)
            if f < 0.0:
                s_in = sn
                f_in = f
            else:
                s_out = sn
                f_out = f
        reach = s_in + (s_out - s_in) * f_in / (f_in - f_out)
    if reach <= 0.0:
        return n_el, moment, v_lo, v_hi
    n_s = min(max(int(np.ceil(2.0 * reach / row_dy)), 2), 8)
    for i in range(n_s):
        u_lo = i / n_s
        u_hi = (i + 1) / n_s
        u_m = (i + 0.5) / n_s
        x_m = x_e + dirn * reach * (1.0 - u_m * u_m)
        t1, t2, f = _bulge_at(fb, geo, lay, x_m, j)
        if not f < 0.0:
            continue
        xa = x_e + dirn * reach * (1.0 - u_hi * u_hi)
        xb = x_e + dirn * reach * (1.0 - u_lo * u_lo)
        xs0 = min(xa, xb)
        xs1 = max(xa, xb)
        covered = covered_row and ex0 <= xs0 and xs1 <= ex1
        n_el, moment, v_lo, v_hi = _column(n_el, hist, grid, row, cz, covered, xs0, xs1, x_m,
                                           z0 + t1 * h1, z0 + t2 * h1, 1.0, 0.0, 0.0, 0.0, 0.0,
                                           moment, v_lo, v_hi)
    return n_el, moment, v_lo, v_hi


@loop_kernel
def _bulge_row(n_el, hist, grid, row, cz, fb, geo, lay, y, j, j_edge, in_edge, x0, x1, piece,
               covered_row, ex0, ex1, moment, v_lo, v_hi):
    """The bulge in a band at ``y`` (``row``: its y cell, height and band), beyond both planes'
    outlines, over ``[x0, x1]`` (the x range of row ``j_edge``, the nearest with crossings): the
    columns of :func:`_dip` at pieces at most ``piece`` long, where the planes beyond the layer
    show the same body (:func:`_bulge_at`) and hold no part of the point (as in :func:`_bulge`).
    ``j``: a scan row beyond both planes' rows, for their crossings. A band within row
    ``j_edge``'s (``in_edge``) searches only where that row is inside a or b: its stretches
    outside both are :func:`_bulge`'s, over the whole row. Returns ``n_el``, ``moment``,
    ``v_lo``, ``v_hi`` updated and whether the band holds any."""
    # the searches place row j at row_y0 + (j + 0.5) row_dy: the lattice is shifted to put it at y
    (points_xy, poly_offsets, poly_of_v, half_thick, poly_sign, origin, dims, cell_off, seg, seg_v,
     wall, plane_wall, cell, row0, nrow, row_base, row_off, cross, cross_v, row_y0, row_dy) = geo
    geo = (points_xy, poly_offsets, poly_of_v, half_thick, poly_sign, origin, dims, cell_off, seg,
           seg_v, wall, plane_wall, cell, row0, nrow, row_base, row_off, cross, cross_v,
           y - (j + 0.5) * row_dy, row_dy)
    a = lay[0]
    b = lay[1]
    z0 = lay[4]
    h1 = lay[7]
    nlo = lay[2]
    nhi = lay[3]
    fv = fb[0]
    n = max(1, int(np.ceil((x1 - x0) / piece)))
    found = False
    for i in range(n):
        xa = x0 + i * (x1 - x0) / n
        xb = x1 if i == n - 1 else x0 + (i + 1) * (x1 - x0) / n
        xm = 0.5 * (xa + xb)
        skip = in_edge and not (_inside_at(row0, nrow, row_base, row_off, cross, a, j_edge, xm)
                                or _inside_at(row0, nrow, row_base, row_off, cross, b, j_edge, xm))
        if skip or _inside_beyond(geo, nlo, nhi, j, xm):
            continue
        t1, t2, f = _bulge_at(fb, geo, lay, xm, j)
        # a dip within rounding of zero holds no volume
        if not f < -1e-9 * (1.0 + abs(fv[2]) + abs(fv[3])):
            continue
        found = True
        covered = covered_row and ex0 <= xa and xb <= ex1
        n_el, moment, v_lo, v_hi = _column(n_el, hist, grid, row, cz, covered, xa, xb, xm,
                                           z0 + t1 * h1, z0 + t2 * h1, 1.0, 0.0, 0.0, 0.0, 0.0,
                                           moment, v_lo, v_hi)
    return n_el, moment, v_lo, v_hi, found


@inline_kernel
def _zcells(zs, z0, z1, zi0, zi1, zt, zsc, zh):
    """Split ``[z0, z1]`` at the z nodes; per piece: cell, fraction of its centre, 1/spacing,
    height. Returns the number of pieces."""
    ns = 0
    zlo = z0
    m = _right(zs, z0)
    while True:
        zhi = z1
        if m < zs.size and zs[m] < z1:
            zhi = zs[m]
        if zhi > zlo:
            i0, i1, t, sc = _axis(zs, m, 0.5 * (zlo + zhi))
            zi0[ns] = i0
            zi1[ns] = i1
            zt[ns] = t
            zsc[ns] = sc
            zh[ns] = zhi - zlo
            ns += 1
        if zhi >= z1:
            break
        zlo = zhi
        m += 1
    return ns


@inline_kernel
def _row_at_or_above(row_y0, row_dy, v):
    """Smallest ``j`` whose row centre ``row_y0 + (j + 0.5) * row_dy`` is ``>= v``."""
    j = int(np.ceil((v - row_y0) / row_dy - 0.5))
    while row_y0 + (j + 0.5) * row_dy < v:
        j += 1
    while row_y0 + (j - 0.5) * row_dy >= v:
        j -= 1
    return j


@inline_kernel
def _update(acc, val):
    if val < acc[3]:
        acc[3] = val
    if val > acc[4]:
        acc[4] = val


@inline_kernel
def _frac(c, i0, i1, v):
    """Fraction of ``v`` between nodes ``i0`` and ``i1`` of axis ``c``, clamped to [0, 1]."""
    if i1 == i0:
        return 0.0
    return min(max((v - c[i0]) / (c[i1] - c[i0]), 0.0), 1.0)


@inline_kernel
def _bilinear(dose, k0, k1, tz, j0, j1, i0, i1, tx, ty):
    """Dose at fractions ``tx``, ``ty`` of cell ``(i0:i1, j0:j1)`` at height fraction ``tz``."""
    a0 = dose[k0, j0, i0] + tz * (dose[k1, j0, i0] - dose[k0, j0, i0])
    a1 = dose[k0, j0, i1] + tz * (dose[k1, j0, i1] - dose[k0, j0, i1])
    b0 = dose[k0, j1, i0] + tz * (dose[k1, j1, i0] - dose[k0, j1, i0])
    b1 = dose[k0, j1, i1] + tz * (dose[k1, j1, i1] - dose[k0, j1, i1])
    c0 = a0 + tx * (a1 - a0)
    c1 = b0 + tx * (b1 - b0)
    return c0 + ty * (c1 - c0)


@inline_kernel
def _edge_vector(points_xy, v, a, b):
    """Start ``(x1, y1)`` and vector ``(dx, dy)`` of the edge from vertex ``v`` of polygon
    ``a:b``."""
    w = v + 1 if v + 1 < b else a
    x1 = points_xy[v, 0]
    y1 = points_xy[v, 1]
    return x1, y1, points_xy[w, 0] - x1, points_xy[w, 1] - y1


@loop_kernel
def _edge_extremes(points_xy, poly_offsets, p_first, p_end, z, dose, xs, ys, zs, extent, ts, acc):
    """Exact dose extremes along the edges of polygons ``p_first:p_end`` at height ``z`` (into
    ``acc[3:5]``).

    At fixed z the dose is bilinear in each grid cell, so along a piece of an edge between grid
    lines it is quadratic: its extremes are the piece's ends or the parabola's vertex. Parts outside
    the covered region are skipped, and so are cells whose corner doses cannot beat ``acc[3:5]``.
    """
    k0, k1, tz, sz = _axis(zs, _right(zs, z), z)
    for p in range(p_first, p_end):
        a = poly_offsets[p]
        b = poly_offsets[p + 1]
        for v in range(a, b):
            x1, y1, dx, dy = _edge_vector(points_xy, v, a, b)
            # the grid nodes around the whole edge: when none can beat the extremes found so
            # far, no piece of the edge can either
            i_lo = max(_right(xs, min(x1, x1 + dx)) - 1, 0)
            i_hi = min(_left(xs, max(x1, x1 + dx)), xs.size - 1)
            j_lo = max(_right(ys, min(y1, y1 + dy)) - 1, 0)
            j_hi = min(_left(ys, max(y1, y1 + dy)), ys.size - 1)
            lo_v, hi_v = block_extremes(dose, k0, k1 + 1, j_lo, j_hi + 1, i_lo, i_hi + 1)
            if lo_v >= acc[3] and hi_v <= acc[4]:
                continue
            n = 0
            for axis in range(2):
                c = xs if axis == 0 else ys
                c1 = x1 if axis == 0 else y1
                dc = dx if axis == 0 else dy
                if dc == 0.0:
                    continue
                lo_c = min(c1, c1 + dc)
                hi_c = max(c1, c1 + dc)
                i = _right(c, lo_c)
                while i < c.size and c[i] < hi_c:
                    ts[n] = (c[i] - c1) / dc
                    n += 1
                    i += 1
                for e in range(2):
                    lim = extent[axis, e]
                    if lo_c < lim < hi_c:
                        ts[n] = (lim - c1) / dc
                        n += 1
            for q in range(1, n):
                t = ts[q]
                i = q
                while i > 0 and ts[i - 1] > t:
                    ts[i] = ts[i - 1]
                    i -= 1
                ts[i] = t
            t0 = 0.0
            for q in range(n + 1):
                t1 = ts[q] if q < n else 1.0
                if t1 <= t0:
                    continue
                tm = 0.5 * (t0 + t1)
                xm = x1 + tm * dx
                ym = y1 + tm * dy
                if (extent[0, 0] <= xm <= extent[0, 1]) and (extent[1, 0] <= ym <= extent[1, 1]):
                    i0, i1, tx, sx = _axis(xs, _right(xs, xm), xm)
                    j0, j1, ty, sy = _axis(ys, _right(ys, ym), ym)
                    lo_v = np.inf
                    hi_v = -np.inf
                    for kk in (k0, k1):
                        for jj in (j0, j1):
                            for ii in (i0, i1):
                                lo_v = min(lo_v, dose[kk, jj, ii])
                                hi_v = max(hi_v, dose[kk, jj, ii])
                    if lo_v < acc[3] or hi_v > acc[4]:
                        xa = x1 + t0 * dx
                        ya = y1 + t0 * dy
                        xb = x1 + t1 * dx
                        yb = y1 + t1 * dy
                        f0 = _bilinear(dose, k0, k1, tz, j0, j1, i0, i1, _frac(xs, i0, i1, xa),
                                       _frac(ys, j0, j1, ya))
                        fm = _bilinear(dose, k0, k1, tz, j0, j1, i0, i1, tx, ty)
                        f1 = _bilinear(dose, k0, k1, tz, j0, j1, i0, i1, _frac(xs, i0, i1, xb),
                                       _frac(ys, j0, j1, yb))
                        _update(acc, f0)
                        _update(acc, f1)
                        qa = 2.0 * f1 - 4.0 * fm + 2.0 * f0
                        qb = 4.0 * fm - 3.0 * f0 - f1
                        if qa != 0.0:
                            u = -qb / (2.0 * qa)
                            if 0.0 < u < 1.0:
                                _update(acc, f0 + u * (qb + qa * u))
                t0 = t1


@inline_kernel
def _twin(points_xy, poly_offsets, p, q_first, q_end):
    """The first of the polygons ``q_first:q_end`` with exactly polygon ``p``'s vertices, or -1."""
    a = poly_offsets[p]
    n = poly_offsets[p + 1] - a
    for q in range(q_first, q_end):
        c = poly_offsets[q]
        if poly_offsets[q + 1] - c != n:
            continue
        same = True
        for i in range(n):
            if (points_xy[a + i, 0] != points_xy[c + i, 0]
                    or points_xy[a + i, 1] != points_xy[c + i, 1]):
                same = False
                break
        if same:
            return q
    return -1


@loop_kernel
def _node_extremes(line0, nline, base, off, cross, ka, kb, z, dose, xs, zs, acc):
    """Dose extremes at the grid nodes ``(x_i, y_j)`` inside plane ``ka``'s region (and ``kb``'s
    when ``kb >= 0``) at height ``z`` (into ``acc[3:5]``); ``line*``/``cross``: the planes'
    crossings with the node lines ``y = ys[j]`` (:func:`_plane_lines`)."""
    k0, k1, tz, sz = _axis(zs, _right(zs, z), z)
    for jn in range(line0[ka], line0[ka] + nline[ka]):
        qa = off[base[ka] + jn - line0[ka]]
        ea = off[base[ka] + jn - line0[ka] + 1]
        qb = 0
        eb = 0
        if kb >= 0:
            if not (line0[kb] <= jn < line0[kb] + nline[kb]):
                continue
            qb = off[base[kb] + jn - line0[kb]]
            eb = off[base[kb] + jn - line0[kb] + 1]
        # sweep the two crossing lists: the node line's parts inside ka (and kb)
        in_a = False
        in_b = kb < 0
        xprev = 0.0
        while qa < ea or qb < eb:
            if qb >= eb or (qa < ea and cross[qa] <= cross[qb]):
                xn = cross[qa]
                from_a = True
            else:
                xn = cross[qb]
                from_a = False
            if in_a and in_b:
                i0 = _left(xs, xprev)
                i1 = _right(xs, xn)
                # local extremes: a reduction the compiler can vectorise
                mn = acc[3]
                mx = acc[4]
                for i in range(i0, i1):
                    v = dose[k0, jn, i] + tz * (dose[k1, jn, i] - dose[k0, jn, i])
                    mn = min(mn, v)
                    mx = max(mx, v)
                acc[3] = mn
                acc[4] = mx
            if from_a:
                in_a = not in_a
                qa += 1
            else:
                in_b = not in_b
                qb += 1
            xprev = xn


@inline_kernel
def _in_polygon(points_xy, poly_offsets, q, x, y):
    """Whether ``(x, y)`` lies inside polygon ``q`` (even-odd, a ray towards +x)."""
    a = poly_offsets[q]
    b = poly_offsets[q + 1]
    inside = False
    for v in range(a, b):
        w = v + 1 if v + 1 < b else a
        ya = points_xy[v, 1]
        yb = points_xy[w, 1]
        if (ya <= y < yb) or (yb <= y < ya):
            xa = points_xy[v, 0]
            if xa + (y - ya) * (points_xy[w, 0] - xa) / (yb - ya) > x:
                inside = not inside
    return inside


@kernel
def _polygon_table(points_xy, poly_offsets, plane_poly_start):
    """Per polygon: half thickness ``L``, sign (+1 outer, -1 hole), area, centroid, y range, and
    the side of its edges its region lies on (+1 left, -1 right, 0 for a polygon of no area).

    A polygon is a hole when its first vertex lies inside an odd number of the plane's other
    polygons (the even-odd rule of the scan lines).
    """
    npoly = poly_offsets.size - 1
    half_thick = np.zeros(npoly)
    sign = np.ones(npoly)
    side = np.zeros(npoly)
    area = np.zeros(npoly)
    cx = np.zeros(npoly)
    cy = np.zeros(npoly)
    ylo = np.zeros(npoly)
    yhi = np.zeros(npoly)
    for p in range(plane_poly_start[0], plane_poly_start[plane_poly_start.size - 1]):
        a = poly_offsets[p]
        b = poly_offsets[p + 1]
        area2 = 0.0
        sx = 0.0
        sy = 0.0
        per = 0.0
        x0 = np.inf
        x1 = -np.inf
        y0 = np.inf
        y1 = -np.inf
        for v in range(a, b):
            w = v + 1 if v + 1 < b else a
            xa = points_xy[v, 0]
            ya = points_xy[v, 1]
            xb = points_xy[w, 0]
            yb = points_xy[w, 1]
            cr = xa * yb - xb * ya
            area2 += cr
            sx += (xa + xb) * cr
            sy += (ya + yb) * cr
            per += np.sqrt((xb - xa) ** 2 + (yb - ya) ** 2)
            x0 = min(x0, xa)
            x1 = max(x1, xa)
            y0 = min(y0, ya)
            y1 = max(y1, ya)
        ar = 0.5 * abs(area2)
        area[p] = ar
        if area2 != 0.0:
            side[p] = 1.0 if area2 > 0.0 else -1.0
            cx[p] = sx / (3.0 * area2)
            cy[p] = sy / (3.0 * area2)
        else:
            cx[p] = 0.5 * (x0 + x1)
            cy[p] = 0.5 * (y0 + y1)
        ylo[p] = y0
        yhi[p] = y1
        lt = 0.5 * min(x1 - x0, y1 - y0)
        if per > 0.0 and 2.0 * ar / per < lt:
            lt = 2.0 * ar / per
        half_thick[p] = lt
    for k in range(plane_poly_start.size - 1):
        p0 = plane_poly_start[k]
        p1 = plane_poly_start[k + 1]
        if p1 - p0 < 2:
            continue
        for p in range(p0, p1):
            px = points_xy[poly_offsets[p], 0]
            py = points_xy[poly_offsets[p], 1]
            inside = False
            for q in range(p0, p1):
                if q == p or py < ylo[q] or py > yhi[q]:
                    continue
                if _in_polygon(points_xy, poly_offsets, q, px, py):
                    inside = not inside
            if inside:
                sign[p] = -1.0
    for p in range(plane_poly_start[0], plane_poly_start[plane_poly_start.size - 1]):
        side[p] *= sign[p]
    return half_thick, sign, area, cx, cy, ylo, yhi, side


@kernel
def _plane_rows(points_xy, poly_offsets, plane_poly_start, row_y0, row_dy):
    """:func:`_plane_lines` on the scan rows ``row_y0 + (j + 0.5) * row_dy``, indexed by ``j``."""
    ylo = np.inf
    yhi = -np.inf
    for v in range(poly_offsets[plane_poly_start[0]],
                   poly_offsets[plane_poly_start[plane_poly_start.size - 1]]):
        ylo = min(ylo, points_xy[v, 1])
        yhi = max(yhi, points_xy[v, 1])
    j0 = _row_at_or_above(row_y0, row_dy, ylo)
    j1 = max(_row_at_or_above(row_y0, row_dy, yhi), j0)
    ly = np.empty(j1 - j0)
    for j in range(j0, j1):
        ly[j - j0] = row_y0 + (j + 0.5) * row_dy
    row0, nrow, row_base, row_off, cross, cross_v = _plane_lines(
        points_xy, poly_offsets, plane_poly_start, ly)
    for k in range(row0.size):
        row0[k] += j0
    return row0, nrow, row_base, row_off, cross, cross_v


@inline_kernel
def _edge_cells(points_xy, v, a, b, ox, oy, ncx, ncy, cell):
    """Cell ranges covered by the bounding box of the edge from vertex ``v`` (polygon ``a:b``)."""
    w = v + 1 if v + 1 < b else a
    x1 = points_xy[v, 0]
    y1 = points_xy[v, 1]
    x2 = points_xy[w, 0]
    y2 = points_xy[w, 1]
    i0 = min(max(int(np.floor((min(x1, x2) - ox) / cell)), 0), ncx - 1)
    i1 = min(max(int(np.floor((max(x1, x2) - ox) / cell)), 0), ncx - 1)
    j0 = min(max(int(np.floor((min(y1, y2) - oy) / cell)), 0), ncy - 1)
    j1 = min(max(int(np.floor((max(y1, y2) - oy) / cell)), 0), ncy - 1)
    return i0, i1, j0, j1


@kernel
def _edge_grid(points_xy, poly_offsets, plane_poly_start, parea, cell):
    """Edges of every plane bucketed in square cells of side ``cell`` over the plane's bounding box.

    Plane ``k``'s grid starts at ``origin[k]`` and has ``dims[k] = (ncx, ncy, base)``; cell
    ``(i, j)`` holds entries ``cell_off[r]:cell_off[r + 1]``, ``r = base + j * ncx + i``: end points
    ``seg[e] = (x1, y1, x2, y2)`` and first vertex ``seg_v[e]``. A polygon of zero area bounds
    nothing and is left out, unless the plane has nothing else (a contour
    drawn down to a line or a point at the tip of a shape is what the shape shrinks to).
    """
    n_planes = plane_poly_start.size - 1
    use = np.ones(poly_offsets.size - 1, dtype=np.bool_)
    for k in range(n_planes):
        real = False
        for p in range(plane_poly_start[k], plane_poly_start[k + 1]):
            if parea[p] > 0.0:
                real = True
        if real:
            for p in range(plane_poly_start[k], plane_poly_start[k + 1]):
                use[p] = parea[p] > 0.0
    origin = np.zeros((n_planes, 2))
    dims = np.zeros((n_planes, 3), dtype=np.int64)
    total = 0
    for k in range(n_planes):
        x0 = np.inf
        x1 = -np.inf
        y0 = np.inf
        y1 = -np.inf
        for v in range(poly_offsets[plane_poly_start[k]], poly_offsets[plane_poly_start[k + 1]]):
            x0 = min(x0, points_xy[v, 0])
            x1 = max(x1, points_xy[v, 0])
            y0 = min(y0, points_xy[v, 1])
            y1 = max(y1, points_xy[v, 1])
        dims[k, 2] = total
        if x1 < x0:  # a plane without polygons (left out of this table): no cells
            continue
        origin[k, 0] = x0
        origin[k, 1] = y0
        dims[k, 0] = int(np.floor((x1 - x0) / cell)) + 1
        dims[k, 1] = int(np.floor((y1 - y0) / cell)) + 1
        total += dims[k, 0] * dims[k, 1]
    counts = np.zeros(total + 1, dtype=np.int64)
    for k in range(n_planes):
        for p in range(plane_poly_start[k], plane_poly_start[k + 1]):
            if not use[p]:
                continue
            a = poly_offsets[p]
            b = poly_offsets[p + 1]
            for v in range(a, b):
                i0, i1, j0, j1 = _edge_cells(points_xy, v, a, b, origin[k, 0], origin[k, 1],
                                             dims[k, 0], dims[k, 1], cell)
                for jj in range(j0, j1 + 1):
                    for ii in range(i0, i1 + 1):
                        counts[dims[k, 2] + jj * dims[k, 0] + ii + 1] += 1
    cell_off = np.cumsum(counts)
    seg = np.empty((cell_off[-1], 4))
    seg_v = np.empty(cell_off[-1], dtype=np.int64)
    fill = cell_off[:-1].copy()
    for k in range(n_planes):
        for p in range(plane_poly_start[k], plane_poly_start[k + 1]):
            if not use[p]:
                continue
            a = poly_offsets[p]
            b = poly_offsets[p + 1]
            for v in range(a, b):
                w = v + 1 if v + 1 < b else a
                i0, i1, j0, j1 = _edge_cells(points_xy, v, a, b, origin[k, 0], origin[k, 1],
                                             dims[k, 0], dims[k, 1], cell)
                for jj in range(j0, j1 + 1):
                    for ii in range(i0, i1 + 1):
                        r = dims[k, 2] + jj * dims[k, 0] + ii
                        e = fill[r]
                        seg[e, 0] = points_xy[v, 0]
                        seg[e, 1] = points_xy[v, 1]
                        seg[e, 2] = points_xy[w, 0]
                        seg[e, 3] = points_xy[w, 1]
                        seg_v[e] = v
                        fill[r] += 1
    return origin, dims, cell_off, seg, seg_v


@kernel
def _walls(points_xy, poly_offsets, plane_poly_start, side, layer_a, layer_b, origin, dims,
           cell_off, seg, seg_v, poly_of_v, cell):
    """Edges that are walls between the two planes of an interpolated layer: per vertex (the
    edge from it to the next), bit ``WALL_UP`` when the edge lies on the line of an edge of the
    plane above in the layer, overlapping it, with the region on the same side (within
    ``WALL_TOL``), and bit ``WALL_DOWN`` when it does so with one of the plane below.

    Such a pair bounds a face parallel to z (a flat end of a cylinder lying in the axial plane, a
    box's side): between the planes the region keeps to that line, however the rest of its
    outline moves.
    """
    wall = np.zeros(points_xy.shape[0], dtype=np.int8)
    # every pair found (the edges' first vertices, lower plane first), grown as needed
    pairs = np.empty((64, 2), dtype=np.int64)
    n_pairs = 0
    tol = WALL_TOL
    for li in range(layer_a.size):
        ka = layer_a[li]
        kb = layer_b[li]
        if ka == kb or dims[kb, 0] == 0:
            continue
        ox = origin[kb, 0]
        oy = origin[kb, 1]
        ncx = dims[kb, 0]
        ncy = dims[kb, 1]
        base = dims[kb, 2]
        for p in range(plane_poly_start[ka], plane_poly_start[ka + 1]):
            if side[p] == 0.0:
                continue
            a = poly_offsets[p]
            b = poly_offsets[p + 1]
            # a polygon repeated as it is (an extruded outline), bounding the region on the
            # same side: every edge, with its copy
            tw = _twin(points_xy, poly_offsets, p, plane_poly_start[kb], plane_poly_start[kb + 1])
            if tw >= 0 and side[tw] == side[p]:
                if n_pairs + (b - a) > pairs.shape[0]:
                    pairs = _grown(pairs, n_pairs + (b - a))
                for v in range(a, b):
                    pairs[n_pairs, 0] = v
                    pairs[n_pairs, 1] = poly_offsets[tw] + v - a
                    n_pairs += 1
                continue
            for v in range(a, b):
                x1, y1, dx, dy = _edge_vector(points_xy, v, a, b)
                ln = np.sqrt(dx * dx + dy * dy)
                if ln <= tol:
                    continue
                ux = dx / ln
                uy = dy / ln
                i0 = min(max(int(np.floor((min(x1, x1 + dx) - tol - ox) / cell)), 0), ncx - 1)
                i1 = min(max(int(np.floor((max(x1, x1 + dx) + tol - ox) / cell)), 0), ncx - 1)
                j0 = min(max(int(np.floor((min(y1, y1 + dy) - tol - oy) / cell)), 0), ncy - 1)
                j1 = min(max(int(np.floor((max(y1, y1 + dy) + tol - oy) / cell)), 0), ncy - 1)
                for jj in range(j0, j1 + 1):
                    for ii in range(i0, i1 + 1):
                        r = base + jj * ncx + ii
                        for q in range(cell_off[r], cell_off[r + 1]):
                            # the other edge's ends lie on this edge's line
                            d1 = (seg[q, 0] - x1) * uy - (seg[q, 1] - y1) * ux
                            d2 = (seg[q, 2] - x1) * uy - (seg[q, 3] - y1) * ux
                            if abs(d1) > tol or abs(d2) > tol:
                                continue
                            t1 = (seg[q, 0] - x1) * ux + (seg[q, 1] - y1) * uy
                            t2 = (seg[q, 2] - x1) * ux + (seg[q, 3] - y1) * uy
                            # overlapping along it, by half the shorter of the two at least (a
                            # corner touching the next edge's line is no wall)
                            overlap = min(ln, max(t1, t2)) - max(0.0, min(t1, t2))
                            if overlap <= tol or overlap < 0.5 * min(ln, abs(t2 - t1)):
                                continue
                            # with the region on the same side
                            u = seg_v[q]
                            if (t2 - t1) * side[p] * side[poly_of_v[u]] <= 0.0:
                                continue
                            if n_pairs == pairs.shape[0]:
                                pairs = _grown(pairs, n_pairs + 1)
                            pairs[n_pairs, 0] = v
                            pairs[n_pairs, 1] = u
                            n_pairs += 1
    for i in range(n_pairs):
        wall[pairs[i, 0]] |= WALL_UP
        wall[pairs[i, 1]] |= WALL_DOWN
    # a wall that goes on through the next layer (with any of the edges it pairs with): the outer
    # planes of the cubic leave it out too
    for i in range(n_pairs):
        v = pairs[i, 0]
        u = pairs[i, 1]
        if (wall[u] & WALL_UP) != 0:
            wall[v] |= WALL_UP_ON
        if (wall[v] & WALL_DOWN) != 0:
            wall[u] |= WALL_DOWN_ON
    return wall


@kernel
def _grown(pairs, n):
    """``pairs`` copied into an array of at least ``n`` rows (twice as many as before)."""
    out = np.empty((max(n, 2 * pairs.shape[0]), 2), dtype=np.int64)
    out[:pairs.shape[0]] = pairs
    return out


@inline_kernel
def _nearest_edge(origin, dims, cell_off, seg, seg_v, poly_of_v, wall, mask, cell, k, x, y, best,
                  best_p):
    """Squared distance from ``(x, y)`` to plane ``k``'s nearest edge, and that edge's polygon;
    edges with a wall bit of ``mask`` (:func:`_walls`) left out.

    ``best``/``best_p``: a known squared distance to the boundary and its polygon (or inf, -1).
    Cells are visited in rings of growing Chebyshev distance until no unvisited cell can be nearer.
    """
    ox = origin[k, 0]
    oy = origin[k, 1]
    ncx = dims[k, 0]
    ncy = dims[k, 1]
    base = dims[k, 2]
    ci = int(np.floor((x - ox) / cell))
    cj = int(np.floor((y - oy) / cell))
    r = max(0, -ci, ci - ncx + 1, -cj, cj - ncy + 1)
    rmax = max(ci, ncx - 1 - ci, cj, ncy - 1 - cj)
    while r <= rmax:
        if r >= 1 and ((r - 1) * cell) ** 2 >= best:
            break
        for jj in range(max(cj - r, 0), min(cj + r, ncy - 1) + 1):
            edge_row = jj == cj - r or jj == cj + r
            step = 1 if edge_row else 2 * r
            ii = ci - r
            while ii <= ci + r:
                if 0 <= ii < ncx:
                    # distance from the point to the cell, a lower bound for its edges
                    gx = max(ox + ii * cell - x, x - (ox + (ii + 1) * cell), 0.0)
                    gy = max(oy + jj * cell - y, y - (oy + (jj + 1) * cell), 0.0)
                    if gx * gx + gy * gy < best:
                        rr = base + jj * ncx + ii
                        for q in range(cell_off[rr], cell_off[rr + 1]):
                            if mask != 0 and (wall[seg_v[q]] & mask) != 0:
                                continue
                            d2 = _segment_d2(x, y, seg[q, 0], seg[q, 1], seg[q, 2], seg[q, 3])
                            if d2 < best:
                                best = d2
                                best_p = poly_of_v[seg_v[q]]
                if r == 0:
                    break
                ii += step
        r += 1
    return best, best_p


@inline_kernel
def _segment_d2(x, y, x1, y1, x2, y2):
    """Squared distance from ``(x, y)`` to the segment ``(x1, y1)-(x2, y2)``."""
    dx = x2 - x1
    dy = y2 - y1
    l2 = dx * dx + dy * dy
    t = 0.0
    if l2 > 0.0:
        t = ((x - x1) * dx + (y - y1) * dy) / l2
        t = min(max(t, 0.0), 1.0)
    ex = x1 + t * dx - x
    ey = y1 + t * dy - y
    return ex * ex + ey * ey


@inline_kernel
def _crossing_edge(poly_offsets, poly_of_v, cross_v, q):
    """The two vertices of the edge that made scan-line crossing ``q``."""
    v = cross_v[q]
    p = poly_of_v[v]
    return v, (v + 1 if v + 1 < poly_offsets[p + 1] else poly_offsets[p])


@inline_kernel
def _phi(points_xy, poly_offsets, poly_of_v, half_thick, poly_sign, origin, dims, cell_off, seg,
         seg_v, wall, mask, cell, row0, nrow, row_base, row_off, cross, cross_v, k, x, j, row_y0,
         row_dy):
    """Implicit value of plane ``k``'s region at ``x`` on row ``j``: ``s (s + 2 L)``, negative
    inside (the hole's formula flips the roles of inside and outside), the sign of the nearest
    polygon (+1 outer, -1 hole), and ``s``, mm.

    ``s`` is the distance to the nearest edge that has no wall bit of ``mask``: a wall shared with
    the other plane of the layer bounds the region between the planes as it is, so the rest of
    the outline alone says where the surface lies (a plane of walls only: every edge). The sign
    returned is that of the nearest polygon, walls included."""
    y = row_y0 + (j + 0.5) * row_dy
    inside = False
    best = np.inf
    best_p = -1
    best0 = np.inf
    best0_p = -1
    if nrow[k] > 0:
        # the row's (sorted) crossings: the inside test, and the edges of the two crossings
        # around x a first bound on the distance. A row beyond the plane's rows is outside it;
        # the edges crossing the plane's nearest row give the bound there
        jr = min(max(j, row0[k]), row0[k] + nrow[k] - 1)
        r = row_base[k] + jr - row0[k]
        q0 = row_off[r]
        q1 = row_off[r + 1]
        m = q0 + np.searchsorted(cross[q0:q1], x, side="left")
        inside = jr == j and (m - q0) % 2 == 1
        for q in range(max(m - 1, q0), min(m + 1, q1)):
            v, w = _crossing_edge(poly_offsets, poly_of_v, cross_v, q)
            d2 = _segment_d2(x, y, points_xy[v, 0], points_xy[v, 1], points_xy[w, 0],
                             points_xy[w, 1])
            if d2 < best0:
                best0 = d2
                best0_p = poly_of_v[v]
            if d2 < best and (wall[v] & mask) == 0:
                best = d2
                best_p = poly_of_v[v]
    d2, p = _nearest_edge(origin, dims, cell_off, seg, seg_v, poly_of_v, wall, mask, cell, k, x, y,
                          best, best_p)
    if p < 0:
        d2, p = _nearest_edge(origin, dims, cell_off, seg, seg_v, poly_of_v, wall, 0, cell, k, x, y,
                              best0, best0_p)
    s = np.sqrt(d2)
    if inside:
        s = -s
    lt = half_thick[p]
    sg = poly_sign[p]
    u = sg * s
    if u < -lt:
        u = -lt
    # the sign returned says whether the nearest polygon is a hole (a hole that ends between the
    # planes): that of the nearest edge of all, walls included
    sg_near = sg
    if mask != 0 and sg < 0.0:
        _d2, p_all = _nearest_edge(origin, dims, cell_off, seg, seg_v, poly_of_v, wall, 0, cell,
                                   k, x, y, best0, best0_p)
        sg_near = poly_sign[p_all]
    return sg * u * (u + 2.0 * lt), sg_near, s


@inline_kernel
def _phi4(fv, fs, fd, points_xy, poly_offsets, poly_of_v, half_thick, poly_sign, origin, dims,
          cell_off, seg, seg_v, wall, plane_wall, cell, row0, nrow, row_base, row_off, cross,
          cross_v, a, b, nlo, nhi, x, j, row_y0, row_dy):
    """:func:`_phi` at ``x`` on row ``j`` on planes ``a``, ``b``, ``nlo``, ``nhi`` (a missing
    plane, ``-1``: value 0, sign 1, distance 0) into ``fv``, ``fs``, ``fd``; each plane leaves
    out the walls of its role (``ROLE_WALLS``: plane a its walls with b, b those with a)."""
    for w_ in range(4):
        k = a if w_ == 0 else (b if w_ == 1 else (nlo if w_ == 2 else nhi))
        if k < 0:
            fv[w_] = 0.0
            fs[w_] = 1.0
            fd[w_] = 0.0
            continue
        mask = plane_wall[k] & ROLE_WALLS[w_]
        fv[w_], fs[w_], fd[w_] = _phi(points_xy, poly_offsets, poly_of_v, half_thick, poly_sign,
                                      origin, dims, cell_off, seg, seg_v, wall, mask, cell, row0,
                                      nrow, row_base, row_off, cross, cross_v, k, x, j, row_y0,
                                      row_dy)


@loop_kernel
def _phi4_call(fv, fs, fd, points_xy, poly_offsets, poly_of_v, half_thick, poly_sign, origin,
               dims, cell_off, seg, seg_v, wall, plane_wall, cell, row0, nrow, row_base, row_off,
               cross, cross_v, a, b, nlo, nhi, x, j, row_y0, row_dy):
    """:func:`_phi4` as a call: :func:`_bulge` evaluates it at several places, each of which would
    otherwise hold a copy of four distance searches."""
    _phi4(fv, fs, fd, points_xy, poly_offsets, poly_of_v, half_thick, poly_sign, origin, dims,
          cell_off, seg, seg_v, wall, plane_wall, cell, row0, nrow, row_base, row_off, cross,
          cross_v, a, b, nlo, nhi, x, j, row_y0, row_dy)


@inline_kernel
def _inside_at(row0, nrow, row_base, row_off, cross, k, j, x):
    """Whether ``x`` on row ``j`` is inside plane ``k``'s region (even-odd on the row's
    crossings)."""
    if not row0[k] <= j < row0[k] + nrow[k]:
        return False
    r = row_base[k] + j - row0[k]
    q0 = row_off[r]
    q1 = row_off[r + 1]
    return np.searchsorted(cross[q0:q1], x, side="left") % 2 == 1


@inline_kernel
def _hole_reach(p0, p1, d1, p2, d2):
    """How far a hole reaches beyond its last plane at a point: the zero ahead of the hole's
    implicit values ``p0`` on its last plane, ``p1`` a distance ``d1`` behind it and ``p2`` a further
    ``d2`` behind (``d2 = 0``: not known). Quadratic through the three (exact for a round end), else
    linear through two; -1 when they show no closing trend."""
    if p0 <= 0.0:
        return 0.0
    if d2 > 0.0:
        # f(s) = p0 + bq s + cq s^2 through s = 0, -d1, -(d1 + d2)
        g1 = (p0 - p1) / d1
        g2 = (p1 - p2) / d2
        cq = (g1 - g2) / (d1 + d2)
        bq = g1 + cq * d1
        if cq < 0.0:
            disc = bq * bq - 4.0 * cq * p0
            return (-bq - np.sqrt(disc)) / (2.0 * cq)
        if bq < 0.0:
            disc = bq * bq - 4.0 * cq * p0
            if disc >= 0.0:
                if cq == 0.0:
                    return -p0 / bq
                return (-bq - np.sqrt(disc)) / (2.0 * cq)
    if p1 > p0:
        return p0 * d1 / (p1 - p0)
    return -1.0


@inline_kernel
def _hermite(t, p0, p1, m0, m1):
    t2 = t * t
    t3 = t2 * t
    f = ((2 * t3 - 3 * t2 + 1) * p0 + (t3 - 2 * t2 + t) * m0 + (3 * t2 - 2 * t3) * p1
         + (t3 - t2) * m1)
    fp = (6 * t2 - 6 * t) * (p0 - p1) + (3 * t2 - 4 * t + 1) * m0 + (3 * t2 - 2 * t) * m1
    return f, fp


@inline_kernel
def _slopes(pl, pa, pb, ph, has_lo, has_hi, h0, h1, h2):
    """Derivatives in z at planes a and b of the implicit values ``pa``, ``pb`` (``pl``/``ph``
    on the planes below/above, used when ``has_lo``/``has_hi``, at distances ``h0``/``h2``; ``h1``
    the layer's thickness): three-point, so exact when the values are quadratic in z."""
    d1 = (pb - pa) / h1
    d0 = (pa - pl) / h0 if has_lo else 0.0
    d2 = (ph - pb) / h2 if has_hi else 0.0
    if has_lo:
        ma = (h1 * d0 + h0 * d1) / (h0 + h1)
    elif has_hi:
        ma = ((2.0 * h1 + h2) * d1 - h1 * d2) / (h1 + h2)
    else:
        ma = d1
    if has_hi:
        mb = (h2 * d1 + h1 * d2) / (h1 + h2)
    elif has_lo:
        mb = ((2.0 * h1 + h0) * d1 - h1 * d0) / (h0 + h1)
    else:
        mb = d1
    return ma, mb


@inline_kernel
def _hermite_root(p0, p1, m0, m1, lo, hi, rising, t):
    """The zero in ``[lo, hi]`` of the cubic Hermite through ``p0`` (t = 0) and ``p1`` (t = 1) with
    slopes ``m0``, ``m1`` (per unit t), which changes sign there (upwards if ``rising``):
    Newton steps from ``t`` kept inside a shrinking bracket."""
    for _ in range(60):
        f, fp = _hermite(t, p0, p1, m0, m1)
        if not rising:
            f = -f
            fp = -fp
        if f == 0.0:
            return t
        if f < 0.0:
            lo = t
        else:
            hi = t
        if hi - lo < 1e-12:
            break
        tn = t - f / fp if fp > 0.0 else -1.0
        if tn <= lo or tn >= hi:
            tn = 0.5 * (lo + hi)
        if abs(tn - t) < 1e-13:
            return tn
        t = tn
    return t


@inline_kernel
def _dip(pa, pb, ma, mb):
    """Where the cubic Hermite through ``pa`` (t = 0) and ``pb`` (t = 1), both ``>= 0`` (a point
    outside both planes), with slopes ``ma``, ``mb`` per unit t, is negative: the point lies inside
    the surface between the planes (a round body's bulge). Returns ``t1, t2, m``: the interval and
    the cubic's minimum over ``[0, 1]`` (``t1 > t2`` when ``m >= 0``: no dip)."""
    # p'(t) = A t^2 + B t + C
    qa = 6.0 * (pa - pb) + 3.0 * (ma + mb)
    qb = -6.0 * (pa - pb) - 4.0 * ma - 2.0 * mb
    qc = ma
    m = min(pa, pb)
    tm = -1.0
    for i in range(2):
        tc = -1.0
        if qa == 0.0:
            if i == 0 and qb != 0.0:
                tc = -qc / qb
        else:
            # the stable pair of roots: qa is ~0 where the values are nearly quadratic in z
            disc = qb * qb - 4.0 * qa * qc
            if disc >= 0.0:
                qq = -0.5 * (qb + (np.sqrt(disc) if qb >= 0.0 else -np.sqrt(disc)))
                if i == 0:
                    tc = qq / qa
                elif qq != 0.0:
                    tc = qc / qq
        if 0.0 < tc < 1.0:
            f, _fp = _hermite(tc, pa, pb, ma, mb)
            if f < m:
                m = f
                tm = tc
    if m >= 0.0 or tm < 0.0:
        return 1.0, 0.0, m
    t1 = 0.0 if pa <= 0.0 and ma <= 0.0 else _hermite_root(pa, pb, ma, mb, 0.0, tm, False,
                                                            0.5 * tm)
    t2 = 1.0 if pb <= 0.0 and mb >= 0.0 else _hermite_root(pa, pb, ma, mb, tm, 1.0, True,
                                                            0.5 * (tm + 1.0))
    return t1, t2, m


@inline_kernel
def _surface_t(pl, pa, pb, ph, has_lo, has_hi, h0, h1, h2):
    """Zero in ``[0, 1]`` of the monotone cubic through ``pa`` (t = 0) and ``pb`` (t = 1).

    ``pl``/``ph`` are the values at the planes below/above (used when ``has_lo``/``has_hi``), at
    distances ``h0``/``h2``; ``h1`` is the layer's thickness. ``pa`` and ``pb`` have opposite signs.
    """
    dd = pb - pa
    if dd == 0.0:
        return 0.5
    d1 = dd / h1
    ma, mb = _slopes(pl, pa, pb, ph, has_lo, has_hi, h0, h1, h2)
    # Fritsch-Carlson: the cubic stays monotone between the planes, so it has one zero
    al = max(ma / d1, 0.0)
    be = max(mb / d1, 0.0)
    n2 = al * al + be * be
    if n2 > 9.0:
        f = 3.0 / np.sqrt(n2)
        al *= f
        be *= f
    # orient so that the cubic increases
    sg = 1.0 if dd > 0.0 else -1.0
    q0 = sg * pa
    q1 = sg * pb
    m0 = al * sg * dd
    m1 = be * sg * dd
    return _hermite_root(q0, q1, m0, m1, 0.0, 1.0, True, -q0 / (q1 - q0))


@kernel
def _row_weights(points_xy, poly_offsets, plane_poly_start, poly_side, skip, row0, nrow, row_base,
                 row_off, cross, row_y0, row_dy):
    """Per plane and scan row: exact area of the region in the row's band / length x row_dy.

    The scan line at the band's centre stands for the whole band, which is exact while the
    region's width changes linearly across the band; at a flat top or bottom (an edge along x) the
    error is of first order. The exact band areas come from the edges (the integral of x dy over
    each edge's part inside the band); a band whose centre misses the region hands its area to the
    nearest band that has a scan interval. Polygons marked in ``skip`` are left out: thin outlines
    (between rows), kept whole elsewhere, and thin holes in them.
    """
    wrow = np.ones(row_off.size - 1)
    for k in range(plane_poly_start.size - 1):
        if nrow[k] == 0:
            continue
        ylo = np.inf
        yhi = -np.inf
        for v in range(poly_offsets[plane_poly_start[k]], poly_offsets[plane_poly_start[k + 1]]):
            ylo = min(ylo, points_xy[v, 1])
            yhi = max(yhi, points_xy[v, 1])
        b0 = int(np.floor((ylo - row_y0) / row_dy))
        b1 = int(np.floor((yhi - row_y0) / row_dy))
        nb = b1 - b0 + 1
        area = np.zeros(nb)
        length = np.zeros(nb)
        for j in range(max(b0, row0[k]), min(b1 + 1, row0[k] + nrow[k])):
            r = row_base[k] + j - row0[k]
            for q in range(row_off[r], row_off[r + 1] - 1, 2):
                length[j - b0] += (cross[q + 1] - cross[q]) * row_dy
        perimeter = 0.0
        for p in range(plane_poly_start[k], plane_poly_start[k + 1]):
            if skip[p]:
                continue
            a = poly_offsets[p]
            b = poly_offsets[p + 1]
            for v in range(a, b):
                w = v + 1 if v + 1 < b else a
                perimeter += np.sqrt((points_xy[w, 0] - points_xy[v, 0]) ** 2
                                     + (points_xy[w, 1] - points_xy[v, 1]) ** 2)
            f = poly_side[p]
            if f == 0.0:
                continue
            for v in range(a, b):
                w = v + 1 if v + 1 < b else a
                x1 = points_xy[v, 0]
                y1 = points_xy[v, 1]
                x2 = points_xy[w, 0]
                y2 = points_xy[w, 1]
                if y1 == y2:
                    continue
                ya = min(y1, y2)
                yb = max(y1, y2)
                sgn = 1.0 if y2 > y1 else -1.0
                ba = max(int(np.floor((ya - row_y0) / row_dy)), b0)
                bb = min(int(np.floor((yb - row_y0) / row_dy)), b1)
                for bnd in range(ba, bb + 1):
                    u0 = max(ya, row_y0 + bnd * row_dy)
                    u1 = min(yb, row_y0 + (bnd + 1) * row_dy)
                    if u1 > u0:
                        um = 0.5 * (u0 + u1)
                        xm = x1 + (um - y1) * (x2 - x1) / (y2 - y1)
                        area[bnd - b0] += f * sgn * (u1 - u0) * xm
        # (a band hands on its area and keeps none: the total below stays the plane's area.
        # Counted twice, it failed that test for a polygon a few rows high with a flat top or
        # bottom, whose plain scan lines then lost up to 40 % of its area)
        for i in range(nb):
            if length[i] > 0.0 or area[i] == 0.0:
                continue
            for d in range(1, nb):
                if i - d >= 0 and length[i - d] > 0.0:
                    area[i - d] += area[i]
                    area[i] = 0.0
                    break
                if i + d < nb and length[i + d] > 0.0:
                    area[i + d] += area[i]
                    area[i] = 0.0
                    break
        # self-intersecting or overlapping polygons break the integral's even-odd bookkeeping;
        # that shows as a total far beyond what the midpoint rule can miss (half a row along
        # the whole outline): keep the plain scan lines then
        if abs(area.sum() - length.sum()) > 0.5 * perimeter * row_dy:
            continue
        for j in range(max(b0, row0[k]), min(b1 + 1, row0[k] + nrow[k])):
            i = j - b0
            if length[i] > 0.0 and area[i] > 0.0:
                wrow[row_base[k] + j - row0[k]] = area[i] / length[i]
    return wrow


@inline_kernel
def _pchip_slope(kx, kt, n, i):
    """Fritsch-Carlson slope at knot ``i`` of the piecewise cubic through ``(kx, kt)[:n]``."""
    if n < 2:
        return 0.0
    if i == 0 or i == n - 1:
        # one-sided three-point slope, kept monotone
        if n == 2:
            return (kt[1] - kt[0]) / (kx[1] - kx[0])
        if i == 0:
            h0 = kx[1] - kx[0]
            h1 = kx[2] - kx[1]
            d0 = (kt[1] - kt[0]) / h0
            d1 = (kt[2] - kt[1]) / h1
        else:
            h0 = kx[n - 1] - kx[n - 2]
            h1 = kx[n - 2] - kx[n - 3]
            d0 = (kt[n - 1] - kt[n - 2]) / h0
            d1 = (kt[n - 2] - kt[n - 3]) / h1
        m = ((2.0 * h0 + h1) * d0 - h0 * d1) / (h0 + h1)
        if m * d0 <= 0.0:
            return 0.0
        if d0 * d1 <= 0.0 and abs(m) > 3.0 * abs(d0):
            return 3.0 * d0
        return m
    h0 = kx[i] - kx[i - 1]
    h1 = kx[i + 1] - kx[i]
    d0 = (kt[i] - kt[i - 1]) / h0
    d1 = (kt[i + 1] - kt[i]) / h1
    if d0 * d1 <= 0.0:
        return 0.0
    w0 = 2.0 * h1 + h0
    w1 = h1 + 2.0 * h0
    return (w0 + w1) / (w0 / d0 + w1 / d1)


@inline_kernel
def _pchip(kx, kt, n, i, x):
    """Monotone piecewise cubic through the knots ``(kx, kt)[:n]`` at ``x`` in knot interval
    ``i``."""
    h = kx[i + 1] - kx[i]
    u = (x - kx[i]) / h
    m0 = _pchip_slope(kx, kt, n, i) * h
    m1 = _pchip_slope(kx, kt, n, i + 1) * h
    f, _ = _hermite(u, kt[i], kt[i + 1], m0, m1)
    return f


@inline_kernel
def _surface_at(kx, kt, n_k, kq, x):
    """The surface's height fraction at ``x`` along a part (:func:`_pchip` through the knots
    ``kx``, ``kt``; held beyond them), and the knot interval to start from for a larger ``x``."""
    while kq < n_k - 2 and kx[kq + 1] < x:
        kq += 1
    if n_k == 1 or x <= kx[0]:
        return kt[0], kq
    if x >= kx[n_k - 1]:
        return kt[n_k - 1], kq
    return _pchip(kx, kt, n_k, kq, x), kq


@inline_kernel
def _block_layers(layer_z0, layer_z1, li, c0, c1):
    """First and last of the contiguous layers around layer ``li`` that overlap ``[c0, c1]``."""
    lf = li
    while lf > 0 and layer_z0[lf] > c0 and layer_z1[lf - 1] == layer_z0[lf]:
        lf -= 1
    ll = li
    while ll < layer_z0.size - 1 and layer_z1[ll] < c1 and layer_z0[ll + 1] == layer_z1[ll]:
        ll += 1
    return lf, ll


@inline_kernel
def _row_intersection(pa, pb, j, row0, nrow, row_base, row_off, cross, qpos, qend, qin, out_lo,
                      out_hi):
    """x-intervals of scan row ``j`` inside every plane ``pa..pb`` (even-odd per plane).
    Returns their number."""
    for k in range(pa, pb + 1):
        if not (row0[k] <= j < row0[k] + nrow[k]):
            return 0
        r = row_base[k] + j - row0[k]
        qpos[k] = row_off[r]
        qend[k] = row_off[r + 1]
        qin[k] = 0
    need = pb - pa + 1
    inside = 0
    n = 0
    xstart = 0.0
    while True:
        best = -1
        bx = np.inf
        for k in range(pa, pb + 1):
            if qpos[k] < qend[k] and cross[qpos[k]] < bx:
                bx = cross[qpos[k]]
                best = k
        if best < 0:
            break
        was_all = inside == need
        if qin[best] == 0:
            qin[best] = 1
            inside += 1
        else:
            qin[best] = 0
            inside -= 1
        qpos[best] += 1
        if inside == need and not was_all:
            xstart = bx
        elif was_all and inside != need and bx > xstart:
            out_lo[n] = xstart
            out_hi[n] = bx
            n += 1
    return n


@kernel
def structure_tables(points_xy, poly_offsets, plane_poly_start, layer_a, layer_b, ys, row_y0,
                     row_dy):
    """The per-structure tables :func:`structure_dvh_layers` reads (edge tables, scan-line
    crossings, row weights, the distance-search grid) for the planes of ``plane_poly_start``
    (planes given no polygons get empty tables). Returns them as one tuple, to be passed on
    unchanged."""
    n_planes = plane_poly_start.size - 1
    npoly = poly_offsets.size - 1
    # only the polygons of the planes given (plane_poly_start may leave planes out): every loop
    # over polygons or vertices runs over p_first:p_end
    p_first = plane_poly_start[0]
    p_end = plane_poly_start[n_planes]
    poly_of_v = np.zeros(points_xy.shape[0], dtype=np.int64)
    for p in range(p_first, p_end):
        poly_of_v[poly_offsets[p]:poly_offsets[p + 1]] = p
    half_thick, poly_sign, parea, pcx, pcy, pylo, pyhi, poly_side = _polygon_table(
        points_xy, poly_offsets, plane_poly_start)
    row0, nrow, row_base, row_off, cross, cross_v = _plane_rows(
        points_xy, poly_offsets, plane_poly_start, row_y0, row_dy)
    nl0, nnl, nl_base, nl_off, ncross, _ = _plane_lines(
        points_xy, poly_offsets, plane_poly_start, ys)
    plane_ylo = np.empty(n_planes)
    plane_yhi = np.empty(n_planes)
    for k in range(n_planes):
        plane_ylo[k] = np.inf
        plane_yhi[k] = -np.inf
        for p in range(plane_poly_start[k], plane_poly_start[k + 1]):
            plane_ylo[k] = min(plane_ylo[k], pylo[p])
            plane_yhi[k] = max(plane_yhi[k], pyhi[p])
    # a polygon thinner than the row spacing may fall between rows. An outline is kept as one
    # element at its centroid, of area thin_area (its own less that of the thin holes in it), so
    # that its volume and dose are not lost. A thin hole in an outline the rows cross takes its
    # area out of the band weights of its rows instead (_row_weights): as an element it added
    # its volume, and its dose (the hole's) counted as the region's
    thin = np.zeros(npoly, dtype=np.bool_)
    for p in range(p_first, p_end):
        j = _row_at_or_above(row_y0, row_dy, pylo[p])
        thin[p] = row_y0 + (j + 0.5) * row_dy >= pyhi[p] and parea[p] > 0.0
    thin_area = np.zeros(npoly)
    row_skip = thin.copy()
    for k in range(n_planes):
        for p in range(plane_poly_start[k], plane_poly_start[k + 1]):
            if thin[p] and poly_sign[p] > 0.0:
                thin_area[p] = parea[p]
        for h in range(plane_poly_start[k], plane_poly_start[k + 1]):
            if not (thin[h] and poly_sign[h] < 0.0):
                continue
            # the innermost thin outline holding the hole's first vertex (the rule that made it
            # a hole): its centroid may lie outside it, or inside an island within it
            host = -1
            vx = points_xy[poly_offsets[h], 0]
            vy = points_xy[poly_offsets[h], 1]
            for q in range(plane_poly_start[k], plane_poly_start[k + 1]):
                if (q != h and thin[q] and poly_sign[q] > 0.0 and parea[q] > parea[h]
                        and (host < 0 or parea[q] < parea[host])
                        and _in_polygon(points_xy, poly_offsets, q, vx, vy)):
                    host = q
            if host >= 0:
                thin_area[host] = max(thin_area[host] - parea[h], 0.0)
            else:
                row_skip[h] = False
    cell = _search_cell(row_dy)
    wrow = _row_weights(points_xy, poly_offsets, plane_poly_start, poly_side, row_skip, row0, nrow,
                        row_base, row_off, cross, row_y0, row_dy)
    # the wall bits of each plane's edges together (none: a plane's searches skip the test)
    plane_wall = np.zeros(n_planes, dtype=np.int8)
    interpolated = False
    for li in range(layer_a.size):
        if layer_a[li] != layer_b[li]:
            interpolated = True
    if interpolated:
        origin, dims, cell_off, seg, seg_v = _edge_grid(
            points_xy, poly_offsets, plane_poly_start, parea, cell)
        wall = _walls(points_xy, poly_offsets, plane_poly_start, poly_side, layer_a, layer_b,
                      origin, dims, cell_off, seg, seg_v, poly_of_v, cell)
        for k in range(n_planes):
            for v in range(poly_offsets[plane_poly_start[k]],
                           poly_offsets[plane_poly_start[k + 1]]):
                plane_wall[k] |= wall[v]
    else:
        origin = np.zeros((1, 2))
        dims = np.zeros((1, 3), dtype=np.int64)
        cell_off = np.zeros(2, dtype=np.int64)
        seg = np.zeros((1, 4))
        seg_v = np.zeros(1, dtype=np.int64)
        wall = np.zeros(points_xy.shape[0], dtype=np.int8)
    return (poly_of_v, half_thick, poly_sign, parea, pcx, pcy, pylo, pyhi, row0, nrow, row_base,
            row_off, cross, cross_v, nl0, nnl, nl_base, nl_off, ncross, plane_ylo, plane_yhi,
            thin_area, wrow, origin, dims, cell_off, seg, seg_v, wall, plane_wall)


@inline_kernel
def _search_cell(row_dy):
    """Side of the distance search's cells, mm: about the size of the distances searched."""
    return 4.0 * row_dy


@loop_kernel
def _structure_dvh_layers_core(points_xy, poly_offsets, plane_poly_start, planes_z, layer_a,
                               layer_b, layer_z0, layer_z1, below, above, dose, xs, ys, zs, extent,
                               row_y0, row_dy, bin_lo, bin_width, n_bins, tables, l_first, l_end,
                               work):
    """The loops of :func:`structure_dvh_layers`, which allocates their working arrays
    (``work``) and receives the histogram in ``ramp2``, ``step1`` and ``acc``."""
    (ramp2, step1, acc, lz_i0, lz_i1, lz_t, lz_s, lz_h, lz_tau, lz_w, cz_i0, cz_i1, cz_t, cz_s,
     cz_h, fv, fs, fd, blk_ok, blk_lf, blk_ll, blk_z0, blk_z1, n_iv, iv_ptr, iv_lo, iv_hi, qpos,
     qend, qin, kx, kt, ts_buf, bc_row0, bc_a, bc_b, bc_n, bc_lo, bc_hi, blk_col,
     blk_cell, elems) = work
    n_el = 0
    # from the sheared elements (_element): dose x volume beyond their histogrammed values, and
    # their middles' extreme doses
    moment = 0.0
    v_lo = np.inf
    v_hi = -np.inf
    lo = bin_lo
    hi = bin_lo + n_bins * bin_width
    inv_bw = 1.0 / bin_width
    ex0 = extent[0, 0]
    ex1 = extent[0, 1]
    ey0 = extent[1, 0]
    ey1 = extent[1, 1]
    ez0 = extent[2, 0]
    ez1 = extent[2, 1]
    nx = xs.size
    n_planes = planes_z.size
    (poly_of_v, half_thick, poly_sign, parea, pcx, pcy, pylo, pyhi, row0, nrow, row_base,
     row_off, cross, cross_v, nl0, nnl, nl_base, nl_off, ncross, plane_ylo, plane_yhi,
     thin_area, wrow, origin, dims, cell_off, seg, seg_v, wall, plane_wall) = tables
    cell = _search_cell(row_dy)
    hist = (elems, acc, ramp2, step1, lo, hi, bin_width, inv_bw)
    grid = (dose, xs, zs, ez0, ez1)
    cz = (cz_i0, cz_i1, cz_t, cz_s, cz_h)
    geo = (points_xy, poly_offsets, poly_of_v, half_thick, poly_sign, origin, dims, cell_off, seg,
           seg_v, wall, plane_wall, cell, row0, nrow, row_base, row_off, cross, cross_v, row_y0,
           row_dy)
    fb = (fv, fs, fd)
    for li in range(l_first, l_end):
        a = layer_a[li]
        b = layer_b[li]
        z0 = layer_z0[li]
        z1 = layer_z1[li]
        if z1 <= z0:
            continue
        slab = a == b
        zc0 = max(z0, ez0)
        zc1 = min(z1, ez1)
        cthick = zc1 - zc0 if zc1 > zc0 else 0.0
        n_lz = 0
        if cthick > 0.0:
            n_lz = _zcells(zs, zc0, zc1, lz_i0, lz_i1, lz_t, lz_s, lz_h)
            zz = zc0
            for q in range(n_lz):
                lz_tau[q] = (zz + 0.5 * lz_h[q] - z0) / (z1 - z0)
                zz += lz_h[q]
                # the z cell of this piece and the layers sharing it
                blk_ok[q] = False
                if lz_s[q] > 0.0:
                    c0 = zs[lz_i0[q]]
                    c1 = zs[lz_i1[q]]
                    lf, ll = _block_layers(layer_z0, layer_z1, li, c0, c1)
                    if ll > lf:
                        blk_ok[q] = True
                        blk_lf[q] = lf
                        blk_ll[q] = ll
                        blk_z0[q] = max(c0, layer_z0[lf])
                        blk_z1[q] = min(c1, layer_z1[ll])
        # thin polygons: a slab's over the whole layer; between planes, each plane's over the
        # half of the layer next to it
        zm = 0.5 * (z0 + z1)
        for side in range(1 if slab else 2):
            k = a if side == 0 else b
            tz0 = z0 if (slab or side == 0) else zm
            tz1 = z1 if (slab or side == 1) else zm
            for p in range(plane_poly_start[k], plane_poly_start[k + 1]):
                area = thin_area[p]
                if not area > 0.0:
                    continue
                if not ((ex0 <= pcx[p] <= ex1) and (ey0 <= pcy[p] <= ey1)):
                    acc[1] += area * (tz1 - tz0)
                    continue
                c0 = max(tz0, ez0)
                c1 = min(tz1, ez1)
                acc[1] += area * ((tz1 - tz0) - max(c1 - c0, 0.0))
                if c1 <= c0:
                    continue
                ncz = _zcells(zs, c0, c1, cz_i0, cz_i1, cz_t, cz_s, cz_h)
                ix0, ix1, tx, sx = _axis(xs, _right(xs, pcx[p]), pcx[p])
                iy0, iy1, ty, sy = _axis(ys, _right(ys, pcy[p]), pcy[p])
                size = np.sqrt(area)
                for q in range(ncz):
                    n_el, _dm, _v = _element(elems, n_el, acc, ramp2, step1, lo, hi,
                                             bin_width, inv_bw, dose, ix0, ix1, tx, sx, iy0, iy1,
                                             ty, sy, cz_i0[q], cz_i1[q], cz_t[q], cz_s[q],
                                             area * cz_h[q], size, size, cz_h[q], 0.0, 0.0, 0.0,
                                             0.0)

        ylo = min(plane_ylo[a], plane_ylo[b])
        yhi = max(plane_yhi[a], plane_yhi[b])
        ja = min(row0[a], row0[b])
        jb = max(row0[a] + nrow[a], row0[b] + nrow[b])
        h1 = planes_z[b] - planes_z[a]
        nlo = below[a]
        nhi = above[b]
        h0 = planes_z[a] - planes_z[nlo] if nlo >= 0 else 0.0
        h2 = planes_z[nhi] - planes_z[b] if nhi >= 0 else 0.0
        lay = (a, b, nlo, nhi, z0, z1, h0, h1, h2)
        # the surface may pass beyond both outlines (a bulge) where it has a curvature in z (a
        # neighbouring plane gives one). It is looked for where the sections' areas say it can
        # reach BULGE_MIN_ROWS: a large organ's are a few micrometres (and its volume, in
        # proportion, less still), not worth the search
        reach_l = 0.0
        if not slab and (nlo >= 0 or nhi >= 0):
            reach_l = _bulge_reach(plane_poly_start, parea, poly_sign, pcx, pcy, half_thick,
                                   lay)
        bulgy = reach_l > BULGE_MIN_ROWS * row_dy
        # along a scan line a bulge reaches farther than across the outline where the outline
        # runs along x; past a few times the areas' estimate it is another part's business
        reach_max = min(BULGE_REACH_ROWS * row_dy, 8.0 * reach_l + row_dy)
        for jj in range(2 * ja, 2 * jb):
            # each row once; a row whose band the grid's cover ends in (its centre on the cover's
            # edge, half a grid spacing beyond the last nodes) twice: the part inside, then the
            # part outside, its volume to the uncovered
            j = jj >> 1
            yr = row_y0 + (j + 0.5) * row_dy
            # the part of the band (within the layer's y range) inside the cover; by that part,
            # not by the centre, which on the edge may round either way. Within 1e-9 of none or
            # all it is none or all: rounding makes no second pass
            b_lo = max(yr - 0.5 * row_dy, ylo)
            b_hi = min(yr + 0.5 * row_dy, yhi)
            if not b_hi > b_lo:
                b_lo = yr - 0.5 * row_dy
                b_hi = yr + 0.5 * row_dy
            f_in = min(max((min(b_hi, ey1) - max(b_lo, ey0)) / (b_hi - b_lo), 0.0), 1.0)
            if f_in < 1e-9:
                f_in = 0.0
            elif f_in > 1.0 - 1e-9:
                f_in = 1.0
            row_in = f_in > 0.0
            cover = 1.0
            outside_pass = (jj & 1) == 1
            if outside_pass:
                if not (row_in and f_in < 1.0):
                    continue
                row_in = False
                cover = 1.0 - f_in
            elif row_in:
                cover = f_in
            # a row band reaching past the outline spreads dose only over the part inside
            band = min(row_dy, 2.0 * (yr - ylo), 2.0 * (yhi - yr))
            iy0, iy1, ty, sy = _axis(ys, _right(ys, yr), yr)
            qa = 0
            ea = 0
            wa = 1.0
            if row0[a] <= j < row0[a] + nrow[a]:
                r = row_base[a] + j - row0[a]
                qa = row_off[r]
                ea = row_off[r + 1]
                wa = wrow[r]
            qb = 0
            eb = 0
            wb = wa
            if not slab and row0[b] <= j < row0[b] + nrow[b]:
                r = row_base[b] + j - row0[b]
                qb = row_off[r]
                eb = row_off[r + 1]
                wb = wrow[r]
            wa *= cover
            wb *= cover
            # band-area weights (_row_weights), linear in z between the planes
            w_cov = 0.0
            for q in range(n_lz):
                lz_w[q] = wa + (wb - wa) * lz_tau[q]
                w_cov += lz_h[q] * lz_w[q]
            w_all = (z1 - z0) * 0.5 * (wa + wb)
            # blocks of this row: cells inside every plane of the layers sharing a z cell. The
            # first of those layers histograms them; every one of them skips them below
            for q in range(n_lz):
                n_iv[q] = 0
                iv_ptr[q] = 0
                if not (blk_ok[q] and row_in):
                    continue
                lf = blk_lf[q]
                ll = blk_ll[q]
                # every layer sharing the z cell needs the row's blocks: computed once, kept per
                # row in one of two slots (z cells of one layer alternate in parity)
                jr = j - bc_row0
                sl = lz_i0[q] % 2
                if not 0 <= jr < bc_n.shape[0]:
                    n_iv[q] = _row_intersection(layer_a[lf], layer_b[ll], j, row0, nrow,
                                                row_base, row_off, cross, qpos, qend, qin,
                                                iv_lo[q], iv_hi[q])
                elif bc_a[jr, sl] == layer_a[lf] and bc_b[jr, sl] == layer_b[ll]:
                    n_iv[q] = bc_n[jr, sl]
                    for t in range(n_iv[q]):
                        iv_lo[q, t] = bc_lo[jr, sl, t]
                        iv_hi[q, t] = bc_hi[jr, sl, t]
                else:
                    n_iv[q] = _row_intersection(layer_a[lf], layer_b[ll], j, row0, nrow,
                                                row_base, row_off, cross, qpos, qend, qin,
                                                iv_lo[q], iv_hi[q])
                    bc_a[jr, sl] = layer_a[lf]
                    bc_b[jr, sl] = layer_b[ll]
                    bc_n[jr, sl] = n_iv[q]
                    for t in range(n_iv[q]):
                        bc_lo[jr, sl, t] = iv_lo[q, t]
                        bc_hi[jr, sl, t] = iv_hi[q, t]
                if lf != li or n_iv[q] == 0:
                    continue
                kz0 = lz_i0[q]
                kz1 = lz_i1[q]
                zb0 = blk_z0[q]
                zb1 = blk_z1[q]
                # volume per mm^2 of the block column: band weights integrated over its layers
                wz = 0.0
                # and its first moment in z: its dose is taken at its centroid, off the middle
                # where the band weights of its layers differ (a plane's flat top in the row)
                wzz = 0.0
                w_first = -1.0
                uniform = True
                yb_lo = np.inf
                yb_hi = -np.inf
                for l2 in range(lf, ll + 1):
                    o0 = max(zb0, layer_z0[l2])
                    o1 = min(zb1, layer_z1[l2])
                    if o1 <= o0:
                        continue
                    ka = layer_a[l2]
                    kb = layer_b[l2]
                    w_a = wrow[row_base[ka] + j - row0[ka]]
                    w_b = wrow[row_base[kb] + j - row0[kb]]
                    tau = (0.5 * (o0 + o1) - layer_z0[l2]) / (layer_z1[l2] - layer_z0[l2])
                    w_m = w_a + (w_b - w_a) * tau
                    wz += (o1 - o0) * w_m
                    # (w linear in z over the layer: its moment about the piece's middle)
                    wzz += (o1 - o0) * (w_m * 0.5 * (o0 + o1) + (w_b - w_a) * (o1 - o0) ** 2
                                        / (12.0 * (layer_z1[l2] - layer_z0[l2])))
                    if w_first < 0.0:
                        w_first = w_a
                    uniform = uniform and w_a == w_first and w_b == w_first
                    yb_lo = min(yb_lo, plane_ylo[ka], plane_ylo[kb])
                    yb_hi = max(yb_hi, plane_yhi[ka], plane_yhi[kb])
                wz *= cover
                wzz *= cover
                bband = min(row_dy, 2.0 * (yr - yb_lo), 2.0 * (yb_hi - yr))
                zcb = 0.5 * (zb0 + zb1)
                if not uniform and wz > 0.0:
                    zcb = min(max(wzz / wz, zb0), zb1)
                tzb = (zcb - zs[kz0]) / (zs[kz1] - zs[kz0])
                szb = 1.0 / (zs[kz1] - zs[kz0])
                for t in range(n_iv[q]):
                    # the whole x cells of the interval: each grid line's dose is read once for
                    # its two cells
                    i0 = _left(xs, iv_lo[q, t])
                    i1 = i0
                    while i1 + 1 < nx and xs[i1 + 1] <= iv_hi[q, t]:
                        i1 += 1
                    if i1 > i0:
                        # the elements buffered so far go first: the same order as one by one
                        _tally_run(elems, n_el, acc, ramp2, step1, lo, hi, bin_width, inv_bw)
                        n_el = 0
                        _block_run(dose, xs, i0, i1, iy0, iy1, ty, sy, kz0, kz1, tzb, szb, row_dy,
                                   wz, bband, zb1 - zb0, blk_col, blk_cell, acc, ramp2, step1, lo,
                                   hi, bin_width, inv_bw)
            in_a = False
            in_b = slab
            xprev = 0.0
            prev_from_a = True
            c_prev = 0.0
            wall_prev = 0
            seen = False
            row_t = (iy0, iy1, ty, sy, row_dy, band)
            while qa < ea or qb < eb:
                if qb >= eb or (qa < ea and cross[qa] <= cross[qb]):
                    xn = cross[qa]
                    from_a = True
                    qn = qa
                else:
                    xn = cross[qb]
                    from_a = False
                    qn = qb
                # the slope dx/dy of the crossing's edge shapes the elements that end there
                # (_element); between planes, also the columns of a part that ends there
                v1, v2 = _crossing_edge(poly_offsets, poly_of_v, cross_v, qn)
                c_n = ((points_xy[v2, 0] - points_xy[v1, 0])
                       / (points_xy[v2, 1] - points_xy[v1, 1]))
                wall_n = wall[v1]
                if (in_a or (in_b and not slab)) and xn > xprev:
                    full = in_a and in_b
                    # the segment in three parts: before, inside and beyond the covered x range
                    for part in range(3):
                        if part == 0:
                            pa_ = xprev
                            pb_ = min(xn, ex0)
                        elif part == 1:
                            pa_ = max(xprev, ex0)
                            pb_ = min(xn, ex1)
                        else:
                            pa_ = max(xprev, ex1)
                            pb_ = xn
                        if pb_ <= pa_:
                            continue
                        covered = part == 1 and row_in
                        if full:
                            if not covered:
                                acc[1] += (pb_ - pa_) * row_dy * w_all
                                continue
                            acc[1] += (pb_ - pa_) * row_dy * (w_all - w_cov)
                        if full:
                            x_lo = pa_
                            m = _right(xs, pa_)
                            while True:
                                x_hi = pb_
                                if m < nx and xs[m] < pb_:
                                    x_hi = xs[m]
                                lp = x_hi - x_lo
                                if lp > 0.0:
                                    c_lo = c_prev if x_lo == xprev else 0.0
                                    c_hi = c_n if x_hi == xn else 0.0
                                    inner = 1 <= m < nx
                                    has_axis = False
                                    # the grid node up to which every z piece is in a block
                                    blocked = inner and n_lz > 0
                                    m_end = nx
                                    for q in range(n_lz):
                                        if inner and n_iv[q] > 0:
                                            # a piece of a block cell: histogrammed as a block
                                            t = iv_ptr[q]
                                            while t < n_iv[q] and iv_hi[q, t] < xs[m]:
                                                t += 1
                                            iv_ptr[q] = t
                                            if (t < n_iv[q] and iv_lo[q, t] <= xs[m - 1]
                                                    and xs[m] <= iv_hi[q, t]):
                                                m_end = min(m_end, _right(xs, iv_hi[q, t]) - 1)
                                                continue
                                        blocked = False
                                        if not has_axis:
                                            ix0, ix1, tx, sx = _axis(xs, m, 0.5 * (x_lo + x_hi))
                                            has_axis = True
                                        # ends on an outline: sheared elements
                                        n_el, dm, v = _element(
                                            elems, n_el, acc, ramp2, step1, lo, hi, bin_width,
                                            inv_bw, dose, ix0, ix1, tx, sx, iy0, iy1, ty, sy,
                                            lz_i0[q], lz_i1[q], lz_t[q], lz_s[q],
                                            lp * row_dy * lz_h[q] * lz_w[q], lp, band, lz_h[q],
                                            c_lo, c_hi, 0.0, 0.0)
                                        moment += dm
                                        v_lo = min(v_lo, v)
                                        v_hi = max(v_hi, v)
                                    # the cells up to there hold no element: jump over them
                                    if blocked and m < m_end < nx and xs[m_end] <= pb_:
                                        m = m_end
                                        x_hi = xs[m]
                                if x_hi >= pb_:
                                    break
                                x_lo = x_hi
                                m += 1
                            continue
                        # inside one plane only: the column under the interpolated surface.
                        # Its height is known where the part ends on an outline (none on the
                        # inside plane's, full on the other's); in between the surface is found
                        # at samples SAMPLE_ROWS rows apart and taken as linear between them
                        t_none = 0.0 if in_a else 1.0
                        t_full = 1.0 - t_none
                        length = pb_ - pa_
                        n_c = int(np.ceil(length / (SAMPLE_ROWS * row_dy)))
                        # an end on the inside plane's own outline where that edge is a wall
                        # (_walls) has no known height: it is sampled
                        own = WALL_UP if in_a else WALL_DOWN
                        wall_lo = (pa_ == xprev and prev_from_a == in_a
                                   and (wall_prev & own) != 0)
                        wall_hi = pb_ == xn and from_a == in_a and (wall_n & own) != 0
                        n_k = 0
                        if pa_ == xprev and not wall_lo:
                            kx[0] = pa_
                            kt[0] = t_none if prev_from_a == in_a else t_full
                            n_k = 1
                        # a short part from one outline to the other: a steep wall, linear
                        if (n_k == 1 and pb_ == xn and not wall_hi
                                and length < SHORT_PART_ROWS * row_dy
                                and kt[0] != (t_none if from_a == in_a else t_full)):
                            n_c = 0
                        # a wall end is a sample too (its height is that of the surface the
                        # rest of the outline makes there)
                        n_lo = 1 if wall_lo else 0
                        for ci in range(-n_lo, n_c + (1 if wall_hi else 0)):
                            # (just inside the part, so that the scan line's side holds)
                            if ci < 0:
                                xc = pa_ + 1e-6 * length
                            elif ci == n_c:
                                xc = pb_ - 1e-6 * length
                            else:
                                xc = pa_ + (ci + 0.5) * length / n_c
                            _phi4(fv, fs, fd, points_xy, poly_offsets, poly_of_v, half_thick,
                                  poly_sign, origin, dims, cell_off, seg, seg_v, wall,
                                  plane_wall, cell, row0, nrow, row_base, row_off, cross,
                                  cross_v, a, b, nlo, nhi, xc, j, row_y0, row_dy)
                            # the scan line decides the side; a distance of ~0 cannot flip it
                            if in_a:
                                fv[0] = min(fv[0], 0.0)
                                fv[1] = max(fv[1], 0.0)
                            else:
                                fv[0] = max(fv[0], 0.0)
                                fv[1] = min(fv[1], 0.0)
                            kx[n_k] = xc
                            if (fs[0] < 0.0) != (fs[1] < 0.0) and (fs[0] < 0.0) != in_a:
                                # a hole that ends between the planes (outside on one plane
                                # because of a hole, inside on the other with no hole near).
                                # The other plane's value is the distance to the outer outline,
                                # no trend of the hole's; the hole's own values on the planes
                                # behind its last one say where it closes (exact for a round
                                # end); without them it closes half-way, like an end plane
                                if in_a:  # the hole is on plane b, closing downwards
                                    k2 = above[nhi] if nhi >= 0 else -1
                                    p0, p1, s1, d1 = fv[1], fv[3], fs[3], h2
                                else:  # on plane a, closing upwards
                                    k2 = below[nlo] if nlo >= 0 else -1
                                    p0, p1, s1, d1 = fv[0], fv[2], fs[2], h0
                                # the plane behind must hold the hole at this point too
                                trend = s1 < 0.0 and p1 > 0.0
                                p2 = 0.0
                                d2 = 0.0
                                if trend and k2 >= 0:
                                    p2, s2, _d2 = _phi(points_xy, poly_offsets, poly_of_v,
                                                       half_thick, poly_sign, origin, dims,
                                                       cell_off, seg, seg_v, wall, 0, cell,
                                                       row0, nrow, row_base, row_off, cross,
                                                       cross_v, k2, xc, j, row_y0, row_dy)
                                    if s2 < 0.0 and p2 > 0.0:
                                        d2 = abs(planes_z[k2]
                                                 - planes_z[k2 - 1 if in_a else k2 + 1])
                                u = _hole_reach(p0, p1, d1, p2, d2) if trend else -1.0
                                if u < 0.0:
                                    kt[n_k] = 0.5
                                elif in_a:
                                    kt[n_k] = max(1.0 - u / h1, 0.0)
                                else:
                                    kt[n_k] = min(u / h1, 1.0)
                            else:
                                # a plane beyond the layer whose nearest outline is of the other
                                # kind (outer or hole) than the layer's plane next to it, and
                                # more than a spacing farther, shows another surface: beyond a
                                # hole that closes past plane b, the distance to the outer
                                # outline, no trend of the hole's. It gives no slope (a hole that
                                # opens into a bay, a ring becoming a C, keeps its outline near)
                                kt[n_k] = _surface_t(
                                    fv[2], fv[0], fv[1], fv[3],
                                    nlo >= 0 and ((fs[2] < 0.0) == (fs[0] < 0.0)
                                                  or abs(fd[2]) <= abs(fd[0]) + h0),
                                    nhi >= 0 and ((fs[3] < 0.0) == (fs[1] < 0.0)
                                                  or abs(fd[3]) <= abs(fd[1]) + h2), h0, h1, h2)
                            n_k += 1
                        if pb_ == xn and not wall_hi:
                            kx[n_k] = pb_
                            kt[n_k] = t_none if from_a == in_a else t_full
                            n_k += 1
                        c_pa = c_prev if pa_ == xprev else 0.0
                        c_pb = c_n if pb_ == xn else 0.0
                        nsub = int(np.ceil(length / row_dy))
                        ls = length / nsub
                        t_e0, kq = _surface_at(kx, kt, n_k, 0, pa_)
                        c_s1 = c_pa
                        for si in range(nsub):
                            xs0 = pa_ + si * ls
                            xs1 = pb_ if si == nsub - 1 else pa_ + (si + 1) * ls
                            xc = 0.5 * (xs0 + xs1)
                            t, kq = _surface_at(kx, kt, n_k, kq, xc)
                            # the column's end on the surface slopes along x
                            t_e1, kq = _surface_at(kx, kt, n_k, kq, xs1)
                            s_x = (t_e1 - t_e0) * (z1 - z0) / (xs1 - xs0)
                            t_e0 = t_e1
                            # the part's columns lean with its two outlines: the slope of the
                            # cuts between them is linear along the part
                            c_s0 = c_s1
                            c_s1 = c_pa + (c_pb - c_pa) * (xs1 - pa_) / length
                            zsurf = z0 + t * (z1 - z0)
                            c0 = z0 if in_a else zsurf
                            c1 = zsurf if in_a else z1
                            wd = wa if in_a else wb
                            # the column's end on the surface slopes along x
                            s_lo = 0.0 if in_a else s_x
                            s_hi = s_x if in_a else 0.0
                            n_el, moment, v_lo, v_hi = _column(
                                n_el, hist, grid, (iy0, iy1, ty, sy, row_dy, band), cz, covered,
                                xs0, xs1, xc, c0, c1, wd, c_s0, c_s1, s_lo, s_hi, moment, v_lo,
                                v_hi)
                if bulgy and not in_a and not in_b and not outside_pass:
                    # outside both planes: the bulges beyond the outlines at its two ends
                    lim = min(0.5 * (xn - xprev), reach_max) if seen else reach_max
                    if seen and not _face(wall_prev, prev_from_a):
                        n_el, moment, v_lo, v_hi = _bulge(
                            n_el, hist, grid, row_t, cz, fb, geo, lay, j, xprev, 1.0, lim,
                            row_in, ex0, ex1, moment, v_lo, v_hi)
                    if not _face(wall_n, from_a):
                        n_el, moment, v_lo, v_hi = _bulge(
                            n_el, hist, grid, row_t, cz, fb, geo, lay, j, xn, -1.0, lim, row_in,
                            ex0, ex1, moment, v_lo, v_hi)
                if from_a:
                    in_a = not in_a
                    qa += 1
                else:
                    in_b = not in_b
                    qb += 1
                xprev = xn
                c_prev = c_n
                wall_prev = wall_n
                prev_from_a = from_a
                seen = True
            if bulgy and seen and not outside_pass and not _face(wall_prev, prev_from_a):
                n_el, moment, v_lo, v_hi = _bulge(
                    n_el, hist, grid, row_t, cz, fb, geo, lay, j, xprev, 1.0, reach_max, row_in,
                    ex0, ex1, moment, v_lo, v_hi)
        if bulgy:
            # beyond both outlines' y extent no scan line has crossings to start from: a bulge
            # there (above a section's flat top, as of a cylinder lying along x; the tip of a
            # round one) is looked for over the x range of the last row with crossings, in
            # bands a quarter of a row high from the outlines' extreme y outwards until a band
            # shows none (it is often thinner than a row)
            dyb = 0.25 * row_dy
            n_out = int(np.ceil(reach_max / dyb))
            for side in range(2):
                j_edge = jb - 1 if side == 1 else ja
                y_edge = (max(plane_yhi[a], plane_yhi[b]) if side == 1
                          else min(plane_ylo[a], plane_ylo[b]))
                x_l = np.inf
                x_h = -np.inf
                for k in (a, b):
                    if row0[k] <= j_edge < row0[k] + nrow[k]:
                        r = row_base[k] + j_edge - row0[k]
                        if row_off[r + 1] > row_off[r]:
                            x_l = min(x_l, cross[row_off[r]])
                            x_h = max(x_h, cross[row_off[r + 1] - 1])
                if not x_h > x_l:
                    continue
                # a row beyond both planes' rows, for their crossings; row j_edge's band
                j_look = jb if side == 1 else ja - 1
                e_lo = row_y0 + j_edge * row_dy
                for step in range(n_out):
                    yr = y_edge + (step + 0.5) * dyb * (1.0 if side == 1 else -1.0)
                    iy0, iy1, ty, sy = _axis(ys, _right(ys, yr), yr)
                    n_el, moment, v_lo, v_hi, found = _bulge_row(
                        n_el, hist, grid, (iy0, iy1, ty, sy, dyb, dyb), cz, fb, geo, lay, yr,
                        j_look, j_edge, e_lo <= yr <= e_lo + row_dy, x_l, x_h, row_dy,
                        ey0 <= yr <= ey1, ex0, ex1, moment, v_lo, v_hi)
                    if not found:
                        break
    _tally_run(elems, n_el, acc, ramp2, step1, lo, hi, bin_width, inv_bw)
    acc[2] += moment
    # (none when every element of these layers was a whole cell of a block: a box whose sides
    # lie on grid lines; +-inf here would be taken as its extremes)
    if v_lo <= v_hi:
        _update(acc, v_lo)
        _update(acc, v_hi)
    # surface-exact extremes, after the elements so that their centres prune most cells: a slab's
    # region at its ends and at the z nodes inside it; a plane's region on the plane; nodes inside
    # both planes at the z nodes between them
    for li in range(l_first, l_end):
        a = layer_a[li]
        b = layer_b[li]
        z0 = layer_z0[li]
        z1 = layer_z1[li]
        if z1 <= z0:
            continue
        zc0 = max(z0, ez0)
        zc1 = min(z1, ez1)
        zn = _right(zs, zc0)
        if a == b and zc1 > zc0:
            zz = zc0
            while True:
                _edge_extremes(points_xy, poly_offsets, plane_poly_start[a],
                               plane_poly_start[a + 1], zz, dose, xs, ys, zs, extent, ts_buf, acc)
                _node_extremes(nl0, nnl, nl_base, nl_off, ncross, a, -1, zz, dose, xs, zs, acc)
                if zz >= zc1:
                    break
                zz = zs[zn] if (zn < zs.size and zs[zn] < zc1) else zc1
                zn += 1
        elif a != b:
            if ez0 <= z0 <= ez1:
                _edge_extremes(points_xy, poly_offsets, plane_poly_start[a],
                               plane_poly_start[a + 1], z0, dose, xs, ys, zs, extent, ts_buf, acc)
                _node_extremes(nl0, nnl, nl_base, nl_off, ncross, a, -1, z0, dose, xs, zs, acc)
            while zn < zs.size and zs[zn] < zc1:
                _node_extremes(nl0, nnl, nl_base, nl_off, ncross, a, b, zs[zn], dose, xs, zs, acc)
                # an outline repeated on both planes is a wall: no samples between the planes
                # cover it, so its edges are candidates at the z nodes too
                for p in range(plane_poly_start[a], plane_poly_start[a + 1]):
                    if _twin(points_xy, poly_offsets, p, plane_poly_start[b],
                             plane_poly_start[b + 1]) >= 0:
                        _edge_extremes(points_xy, poly_offsets, p, p + 1, zs[zn], dose, xs, ys,
                                       zs, extent, ts_buf, acc)
                zn += 1


@kernel
def structure_dvh_layers(points_xy, poly_offsets, plane_poly_start, planes_z, layer_a, layer_b,
                         layer_z0, layer_z1, below, above, dose, xs, ys, zs, extent, row_y0,
                         row_dy, bin_lo, bin_width, n_bins, tables, l_first, l_end):
    """Histogram one structure's dose over the layers ``l_first:l_end``.

    Parameters
    ----------
    points_xy : (n, 2) float64
        Polygon vertices, mm, polygons grouped by plane in plane order.
    poly_offsets : (npoly + 1,) int64
        Vertex ranges of the polygons.
    plane_poly_start : (nplanes + 1,) int64
        Polygon ranges of the planes.
    planes_z : (nplanes,) float64
        Plane positions, mm, ascending.
    layer_a, layer_b : (nlayers,) int64
        Planes bounding each layer: equal for a slab of plane ``a``, ``b = a + 1`` for an
        interpolated layer.
    layer_z0, layer_z1 : (nlayers,) float64
        z extent of each layer, mm (``planes_z[a]``, ``planes_z[b]`` for an interpolated layer).
    below, above : (nplanes,) int64
        Neighbouring plane in the same run (no gap), or -1: the outer points of the cubic.
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
    acc = np.zeros(6)
    acc[3] = np.inf
    acc[4] = -np.inf
    n_planes = planes_z.size
    nzb = zs.size + 2
    lz_i0 = np.empty(nzb, dtype=np.int64)
    lz_i1 = np.empty(nzb, dtype=np.int64)
    lz_t = np.empty(nzb)
    lz_s = np.empty(nzb)
    lz_h = np.empty(nzb)
    lz_tau = np.empty(nzb)
    lz_w = np.empty(nzb)
    cz_i0 = np.empty(nzb, dtype=np.int64)
    cz_i1 = np.empty(nzb, dtype=np.int64)
    cz_t = np.empty(nzb)
    cz_s = np.empty(nzb)
    cz_h = np.empty(nzb)
    fv = np.empty(4)
    fs = np.ones(4)
    fd = np.zeros(4)
    blk_ok = np.zeros(nzb, dtype=np.bool_)
    blk_lf = np.zeros(nzb, dtype=np.int64)
    blk_ll = np.zeros(nzb, dtype=np.int64)
    blk_z0 = np.zeros(nzb)
    blk_z1 = np.zeros(nzb)
    max_cross = 2
    row_off = tables[11]
    for r in range(row_off.size - 1):
        max_cross = max(max_cross, row_off[r + 1] - row_off[r])
    n_iv = np.zeros(nzb, dtype=np.int64)
    iv_ptr = np.zeros(nzb, dtype=np.int64)
    iv_lo = np.empty((nzb, max_cross // 2 + 2))
    iv_hi = np.empty((nzb, max_cross // 2 + 2))
    qpos = np.zeros(n_planes, dtype=np.int64)
    qend = np.zeros(n_planes, dtype=np.int64)
    qin = np.zeros(n_planes, dtype=np.int64)
    nkn = int((points_xy[:, 0].max() - points_xy[:, 0].min()) / (SAMPLE_ROWS * row_dy)) + 8
    kx = np.empty(nkn)
    kt = np.empty(nkn)
    ts_buf = np.empty(xs.size + ys.size + 8)
    blk_col = np.empty((3, xs.size + 1))
    blk_cell = np.empty((3, xs.size + 1))
    elems = np.empty((3, ELEMENT_BUFFER))
    # the blocks of each scan row, kept for the layers that share a z cell (two slots per row)
    row0 = tables[8]
    nrow = tables[9]
    bc_row0 = 1 << 62
    bc_end = -(1 << 62)
    for k in range(row0.size):
        if nrow[k] > 0:
            bc_row0 = min(bc_row0, row0[k])
            bc_end = max(bc_end, row0[k] + nrow[k])
    n_bc = max(bc_end - bc_row0, 1)
    bc_a = np.full((n_bc, 2), -1, dtype=np.int64)
    bc_b = np.full((n_bc, 2), -1, dtype=np.int64)
    bc_n = np.zeros((n_bc, 2), dtype=np.int64)
    bc_lo = np.empty((n_bc, 2, max_cross // 2 + 2))
    bc_hi = np.empty((n_bc, 2, max_cross // 2 + 2))
    work = (ramp2, step1, acc, lz_i0, lz_i1, lz_t, lz_s, lz_h, lz_tau, lz_w, cz_i0, cz_i1,
            cz_t, cz_s, cz_h, fv, fs, fd, blk_ok, blk_lf, blk_ll, blk_z0, blk_z1, n_iv, iv_ptr,
            iv_lo, iv_hi, qpos, qend, qin, kx, kt, ts_buf, bc_row0, bc_a, bc_b, bc_n, bc_lo,
            bc_hi, blk_col, blk_cell, elems)
    _structure_dvh_layers_core(points_xy, poly_offsets, plane_poly_start, planes_z, layer_a,
                               layer_b, layer_z0, layer_z1, below, above, dose, xs, ys, zs,
                               extent, row_y0, row_dy, bin_lo, bin_width, n_bins, tables,
                               l_first, l_end, work)
    stats = np.empty(6)
    stats[:] = acc
    return ramp2, step1, stats


@kernel
def block_extremes(dose, k0, k1, j0, j1, i0, i1):
    """Min and max of ``dose[k0:k1, j0:j1, i0:i1]`` in one pass (the block must not be empty)."""
    mn = dose[k0, j0, i0]
    mx = mn
    for k in range(k0, k1):
        for j in range(j0, j1):
            for i in range(i0, i1):
                v = dose[k, j, i]
                mn = min(mn, v)
                mx = max(mx, v)
    return mn, mx


@kernel
def brick_extremes(dose, size):
    """Min and max of the dose over bricks of ``size`` nodes per axis: brick ``(a, b, c)`` holds
    nodes ``[a * size, (a + 1) * size)`` along z (and likewise along y and x)."""
    nz, ny, nx = dose.shape
    bz = (nz + size - 1) // size
    by = (ny + size - 1) // size
    bx = (nx + size - 1) // size
    bmin = np.full((bz, by, bx), np.inf)
    bmax = np.full((bz, by, bx), -np.inf)
    for k in range(nz):
        for j in range(ny):
            for i in range(nx):
                v = dose[k, j, i]
                a = k // size
                b = j // size
                c = i // size
                if v < bmin[a, b, c]:
                    bmin[a, b, c] = v
                if v > bmax[a, b, c]:
                    bmax[a, b, c] = v
    return bmin, bmax


@kernel
def cumulative_curve(ramp2, step1, n_bins, covered_cc):
    """Cumulative DVH (cc) at the histogram's edges ``0 .. n_bins`` from the kernel's second
    differences ``ramp2`` and point masses ``step1`` (mm^3): ``covered - below``, clipped to
    ``[0, covered]`` and made non-increasing."""
    out = np.empty(n_bins + 1)
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    run = covered_cc
    for k in range(n_bins + 1):
        s1 += ramp2[k]
        s2 += s1
        s3 += step1[k]
        c = min(max(covered_cc - (s2 + s3) / 1000.0, 0.0), covered_cc)
        run = min(run, c)
        out[k] = run
    return out


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
        i0, i1, tx, sx = _axis(xs, _right(xs, x), x)
        j0, j1, ty, sy = _axis(ys, _right(ys, y), y)
        k0, k1, tz, sz = _axis(zs, _right(zs, z), z)
        out[p] = _trilinear_cell(dose, i0, i1, tx, sx, j0, j1, ty, sy, k0, k1, tz, sz)[0]
    return out
