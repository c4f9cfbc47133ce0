"""Pure numba kernels for geometry: even-odd rasterisation of contour slabs onto grid nodes."""

from __future__ import annotations

import numpy as np

from .._jit import inline_kernel, kernel


@inline_kernel
def _first_not_below(ly, v):
    """``np.searchsorted(ly, v, side="left")`` on the ascending array ``ly``: a guess from its
    mean spacing, then a walk; one step on the uniform lines of a grid or of the scan rows, where
    numba's binary search (not inlined) took 5 % of a structure's DVH time."""
    n = ly.size
    g = 0
    if n > 1 and ly[n - 1] > ly[0]:
        u = (v - ly[0]) * (n - 1) / (ly[n - 1] - ly[0])
        if u >= float(n):
            g = n
        elif u > 0.0:
            g = int(u)
    while g > 0 and ly[g - 1] >= v:
        g -= 1
    while g < n and ly[g] < v:
        g += 1
    return g


@inline_kernel
def _line_crossings(points_xy, poly_offsets, plane_poly_start, ly, line0, base, fill, cross,
                    cross_v, count_only):
    """The crossings of every edge with the lines ``ly``: counted into ``fill[r + 1]`` (line
    ``r``) when ``count_only``, else written at ``fill[r]`` (then advanced)."""
    for k in range(plane_poly_start.size - 1):
        for p in range(plane_poly_start[k], plane_poly_start[k + 1]):
            a = poly_offsets[p]
            b = poly_offsets[p + 1]
            for v in range(a, b):
                w = v + 1 if v + 1 < b else a
                xa = points_xy[v, 0]
                ya = points_xy[v, 1]
                xb = points_xy[w, 0]
                yb = points_xy[w, 1]
                if ya == yb:
                    continue
                ia = _first_not_below(ly, min(ya, yb))
                ib = _first_not_below(ly, max(ya, yb))
                for i in range(ia, ib):
                    r = base[k] + i - line0[k]
                    if count_only:
                        fill[r + 1] += 1
                    else:
                        cross[fill[r]] = xa + (ly[i] - ya) * (xb - xa) / (yb - ya)
                        cross_v[fill[r]] = v
                        fill[r] += 1


@kernel
def plane_lines(points_xy, poly_offsets, plane_poly_start, ly):
    """Sorted crossings of every plane's edges with the lines ``y = ly[i]`` (ascending), as CSR.

    Line ``i`` of plane ``k`` (``line0[k] <= i < line0[k] + nline[k]``) has its crossings in
    ``cross[off[r]:off[r + 1]]``, ``r = base[k] + i - line0[k]``; ``cross_v`` holds the first vertex
    of each crossing's edge. An edge crosses the lines with ``min(y1, y2) <= y < max(y1, y2)``.
    """
    n_planes = plane_poly_start.size - 1
    line0 = np.zeros(n_planes, dtype=np.int64)
    nline = np.zeros(n_planes, dtype=np.int64)
    base = np.zeros(n_planes + 1, dtype=np.int64)
    for k in range(n_planes):
        ylo = np.inf
        yhi = -np.inf
        for v in range(poly_offsets[plane_poly_start[k]], poly_offsets[plane_poly_start[k + 1]]):
            ylo = min(ylo, points_xy[v, 1])
            yhi = max(yhi, points_xy[v, 1])
        i0 = _first_not_below(ly, ylo)
        i1 = _first_not_below(ly, yhi)
        line0[k] = i0
        nline[k] = max(i1 - i0, 0)
        base[k + 1] = base[k] + nline[k]
    counts = np.zeros(base[n_planes] + 1, dtype=np.int64)
    _line_crossings(points_xy, poly_offsets, plane_poly_start, ly, line0, base, counts,
                    np.empty(0), np.empty(0, dtype=np.int64), True)
    off = np.cumsum(counts)
    cross = np.empty(off[-1])
    cross_v = np.empty(off[-1], dtype=np.int64)
    fill = off[:-1].copy()
    _line_crossings(points_xy, poly_offsets, plane_poly_start, ly, line0, base, fill, cross,
                    cross_v, False)
    for r in range(off.size - 1):
        for q in range(off[r] + 1, off[r + 1]):
            c = cross[q]
            cv = cross_v[q]
            i = q
            while i > off[r] and cross[i - 1] > c:
                cross[i] = cross[i - 1]
                cross_v[i] = cross_v[i - 1]
                i -= 1
            cross[i] = c
            cross_v[i] = cv
    return line0, nline, base, off, cross, cross_v


@kernel
def rasterize_nodes(points_xy, poly_offsets, plane_poly_start, slab_lo, slab_hi, xs, ys, zs):
    """Occupancy of grid nodes, ``[z, y, x]`` uint8 (1 inside).

    A node is inside when its z lies in a plane's slab ``[slab_lo, slab_hi)`` and its (x, y) is
    inside that plane's contours by the even-odd rule, with the crossing rules of
    :func:`plane_lines` (the DVH engine's): an edge crosses the row ``y`` when
    ``min(y1, y2) <= y < max(y1, y2)``, and a node counts from a left crossing (inclusive) to a
    right one (exclusive).
    """
    mask = np.zeros((zs.size, ys.size, xs.size), dtype=np.uint8)
    line0, nline, base, off, cross, _ = plane_lines(points_xy, poly_offsets, plane_poly_start, ys)
    for k in range(slab_lo.size):
        z_first = np.searchsorted(zs, slab_lo[k], side="left")
        z_last = np.searchsorted(zs, slab_hi[k], side="left")
        if z_last <= z_first:
            continue
        for r in range(base[k], base[k] + nline[k]):
            j = line0[k] + r - base[k]
            for q in range(off[r], off[r + 1] - 1, 2):
                i0 = np.searchsorted(xs, cross[q], side="left")
                i1 = np.searchsorted(xs, cross[q + 1], side="left")
                mask[z_first:z_last, j, i0:i1] = 1
    return mask


@kernel
def _axis_cells(coords, q):
    """Cell index and fraction of each query coordinate; -1 where outside the node hull."""
    n = coords.size
    idx = np.empty(q.size, dtype=np.int64)
    frac = np.empty(q.size)
    for i in range(q.size):
        v = q[i]
        if n == 1:
            idx[i] = 0 if v == coords[0] else -1
            frac[i] = 0.0
            continue
        if v < coords[0] or v > coords[n - 1]:
            idx[i] = -1
            frac[i] = 0.0
            continue
        j = np.searchsorted(coords, v, side="right") - 1
        if j > n - 2:
            j = n - 2
        idx[i] = j
        frac[i] = (v - coords[j]) / (coords[j + 1] - coords[j])
    return idx, frac


@kernel
def trilinear_grid(dose, xs, ys, zs, qx, qy, qz, outside_value):
    """Trilinear dose on the rectilinear grid ``qz x qy x qx`` (``[z, y, x]``), Gy.

    Cell lookups are done once per axis, so this costs a few ns per point. Points outside the
    node hull of ``dose`` get ``outside_value``.
    """
    ix, fx = _axis_cells(xs, qx)
    iy, fy = _axis_cells(ys, qy)
    iz, fz = _axis_cells(zs, qz)
    nx1 = 1 if xs.size > 1 else 0
    ny1 = 1 if ys.size > 1 else 0
    nz1 = 1 if zs.size > 1 else 0
    out = np.empty((qz.size, qy.size, qx.size))
    for k in range(qz.size):
        kk = iz[k]
        tz = fz[k]
        for j in range(qy.size):
            jj = iy[j]
            ty = fy[j]
            for i in range(qx.size):
                ii = ix[i]
                if kk < 0 or jj < 0 or ii < 0:
                    out[k, j, i] = outside_value
                    continue
                tx = fx[i]
                c00 = dose[kk, jj, ii] + tx * (dose[kk, jj, ii + nx1] - dose[kk, jj, ii])
                c01 = dose[kk, jj + ny1, ii] + tx * (dose[kk, jj + ny1, ii + nx1] - dose[kk, jj + ny1, ii])
                c10 = dose[kk + nz1, jj, ii] + tx * (dose[kk + nz1, jj, ii + nx1] - dose[kk + nz1, jj, ii])
                c11 = dose[kk + nz1, jj + ny1, ii] + tx * (dose[kk + nz1, jj + ny1, ii + nx1] - dose[kk + nz1, jj + ny1, ii])
                c0 = c00 + ty * (c01 - c00)
                c1 = c10 + ty * (c11 - c10)
                out[k, j, i] = c0 + tz * (c1 - c0)
    return out
