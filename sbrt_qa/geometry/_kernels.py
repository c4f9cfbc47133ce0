"""Pure numba kernels for geometry: even-odd rasterisation of contour slabs onto grid nodes."""

from __future__ import annotations

import numpy as np

from .._jit import kernel


@kernel
def rasterize_nodes(points_xy, poly_offsets, plane_poly_start, slab_lo, slab_hi, xs, ys, zs):
    """Occupancy of grid nodes, ``[z, y, x]`` uint8 (1 inside).

    A node is inside when its z lies in a plane's slab ``[slab_lo, slab_hi)`` and its (x, y) is
    inside that plane's contours by the even-odd rule; a node exactly on an edge at the row's
    crossing counts as inside when it is at or right of a left crossing and left of a right one
    (half-open, like the DVH kernel).
    """
    nz = zs.size
    ny = ys.size
    nx = xs.size
    mask = np.zeros((nz, ny, nx), dtype=np.uint8)
    nmax = points_xy.shape[0]
    cross = np.empty(nmax + 1)
    n_planes = slab_lo.size
    for k in range(n_planes):
        # z nodes covered by this slab
        z_first = np.searchsorted(zs, slab_lo[k], side="left")
        z_last = np.searchsorted(zs, slab_hi[k], side="left")
        if z_last <= z_first:
            continue
        for j in range(ny):
            yr = ys[j]
            nc = 0
            for p in range(plane_poly_start[k], plane_poly_start[k + 1]):
                a = poly_offsets[p]
                b = poly_offsets[p + 1]
                for v in range(a, b):
                    w = v + 1 if v + 1 < b else a
                    y1 = points_xy[v, 1]
                    y2 = points_xy[w, 1]
                    if (y1 <= yr and yr < y2) or (y2 <= yr and yr < y1):
                        xc = points_xy[v, 0] + (yr - y1) * (points_xy[w, 0] - points_xy[v, 0]) / (y2 - y1)
                        q = nc
                        while q > 0 and cross[q - 1] > xc:
                            cross[q] = cross[q - 1]
                            q -= 1
                        cross[q] = xc
                        nc += 1
            for q in range(0, nc - 1, 2):
                i0 = np.searchsorted(xs, cross[q], side="left")
                i1 = np.searchsorted(xs, cross[q + 1], side="left")
                for zk in range(z_first, z_last):
                    for i in range(i0, i1):
                        mask[zk, j, i] ^= 1
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
