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
