"""Slow, obviously-correct reference versions of what the DVH kernels do.

Nothing here is clever: point-in-polygon is the even-odd crossing count of a ray, trilinear
interpolation is the eight-corner weighted sum written out, and a DVH is a sorted list of weighted
samples. Tests compare the numba kernels against these on small cases.

Boundary rule of :func:`point_in_polygons` (the same as the engine's scan lines): an edge is
crossed by the ray ``{(t, y): t > x}`` when ``min(y1, y2) <= y < max(y1, y2)``, so horizontal
edges never count and a vertex is counted once.
"""

from __future__ import annotations

import numpy as np


def _cell_1d(coords, v):
    """Index ``i`` and fraction ``t`` with ``v = coords[i] + t (coords[i+1] - coords[i])``."""
    n = len(coords)
    if n == 1:
        return 0, 0.0
    for i in range(n - 1):
        if coords[i] <= v <= coords[i + 1]:
            return i, (v - coords[i]) / (coords[i + 1] - coords[i])
    raise ValueError(f"{v} is outside [{coords[0]}, {coords[-1]}]")


def trilinear_point(dose, xs, ys, zs, x, y, z, outside_value=0.0):
    """Trilinear dose at one point, by the explicit eight-corner formula.

    ``dose`` is indexed ``[z, y, x]``; points outside the node hull get ``outside_value``.
    """
    if not (xs[0] <= x <= xs[-1] and ys[0] <= y <= ys[-1] and zs[0] <= z <= zs[-1]):
        return outside_value
    i, tx = _cell_1d(xs, x)
    j, ty = _cell_1d(ys, y)
    k, tz = _cell_1d(zs, z)
    total = 0.0
    for dk, wz in ((0, 1 - tz), (1, tz)):
        for dj, wy in ((0, 1 - ty), (1, ty)):
            for di, wx in ((0, 1 - tx), (1, tx)):
                w = wx * wy * wz
                if w != 0.0:
                    total += w * dose[k + dk, j + dj, i + di]
    return float(total)


def trilinear_many(dose, xs, ys, zs, x, y, z):
    """Vectorised :func:`trilinear_point` for points inside the node hull (checked).

    Used by the phantom truth to evaluate millions of quadrature points; tested against
    :func:`trilinear_point`.
    """
    x, y, z = (np.asarray(v, dtype=np.float64) for v in (x, y, z))
    for c, v, name in ((xs, x, "x"), (ys, y, "y"), (zs, z, "z")):
        if v.size and (v.min() < c[0] - 1e-9 or v.max() > c[-1] + 1e-9):
            raise ValueError(f"{name} outside the node hull [{c[0]}, {c[-1]}]")

    def cell(c, v):
        if c.size == 1:
            return np.zeros(v.shape, dtype=np.int64), np.zeros(v.shape), 0
        i = np.clip(np.searchsorted(c, v, side="right") - 1, 0, c.size - 2)
        return i, np.clip((v - c[i]) / (c[i + 1] - c[i]), 0.0, 1.0), 1

    nz, ny, nx = dose.shape
    i, tx, sx = cell(xs, x)
    j, ty, sy = cell(ys, y)
    k, tz, sz = cell(zs, z)
    flat = np.ascontiguousarray(dose, dtype=np.float64).ravel()
    base = (k * ny + j) * nx + i
    sx, sy, sz = sx, sy * nx, sz * nx * ny  # flat strides to the upper neighbours

    def corner(offset):
        return np.take(flat, base + offset)

    # the same eight-corner weighted sum, as nested linear interpolations
    c00 = corner(0) + tx * (corner(sx) - corner(0))
    c01 = corner(sy) + tx * (corner(sy + sx) - corner(sy))
    c10 = corner(sz) + tx * (corner(sz + sx) - corner(sz))
    c11 = corner(sz + sy) + tx * (corner(sz + sy + sx) - corner(sz + sy))
    c0 = c00 + ty * (c01 - c00)
    c1 = c10 + ty * (c11 - c10)
    return c0 + tz * (c1 - c0)


def point_in_polygons(x, y, polygons):
    """Even-odd membership of points in a set of polygons on one plane.

    Parameters
    ----------
    x, y : ndarray
        Sample coordinates, mm (any matching shapes).
    polygons : iterable of (n, 2) arrays
        All polygons of the plane; a point inside an odd number of them is inside.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    inside = np.zeros(np.broadcast(x, y).shape, dtype=bool)
    for poly in polygons:
        p = np.asarray(poly, dtype=np.float64)
        for a in range(len(p)):
            x1, y1 = p[a]
            x2, y2 = p[(a + 1) % len(p)]
            if y1 == y2:
                continue
            spans = ((y1 <= y) & (y < y2)) | ((y2 <= y) & (y < y1))
            xc = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
            inside ^= spans & (xc > x)
    return inside


class SampledDVH:
    """A DVH from weighted dose samples (each sample stands for a small volume).

    The samples are histogrammed into bins ``resolution_gy`` wide; the cumulative curve is exact
    at the bin edges and linear in between (so quantiles carry at most one bin of error).
    Dmean, Dmin and Dmax come from the samples directly.

    Parameters
    ----------
    dose_gy, volume_mm3 : ndarray
        Dose of each sample and the volume it stands for.
    resolution_gy : float
    """

    def __init__(self, dose_gy, volume_mm3, resolution_gy=0.001):
        dose = np.asarray(dose_gy, dtype=np.float64).ravel()
        w = np.asarray(volume_mm3, dtype=np.float64).ravel()
        self.total_mm3 = float(w.sum())
        self.volume_cc = self.total_mm3 / 1000.0
        self.dmean_gy = float(np.dot(dose, w) / self.total_mm3)
        self.dmin_gy = float(dose.min())
        self.dmax_gy = float(dose.max())
        lo = np.floor(self.dmin_gy / resolution_gy) * resolution_gy
        n = int(np.ceil((self.dmax_gy - lo) / resolution_gy)) + 1
        idx = np.clip(((dose - lo) / resolution_gy).astype(np.int64), 0, n - 1)
        per_bin = np.bincount(idx, weights=w, minlength=n)
        self.edges = lo + resolution_gy * np.arange(n + 1)
        # above[i]: volume with dose >= edges[i]
        self.above_mm3 = np.append(np.cumsum(per_bin[::-1])[::-1], 0.0)

    def volume_at_dose_cc(self, dose_gy: float) -> float:
        """Volume receiving at least ``dose_gy``, cc."""
        return float(np.interp(dose_gy, self.edges, self.above_mm3)) / 1000.0

    def volume_at_dose_percent(self, dose_gy: float) -> float:
        return 100.0 * self.volume_at_dose_cc(dose_gy) / self.volume_cc

    def dose_at_volume_cc(self, volume_cc: float) -> float:
        """Minimum dose of the hottest ``volume_cc``, Gy."""
        return float(np.interp(volume_cc * 1000.0, self.above_mm3[::-1], self.edges[::-1]))

    def dose_at_percent(self, percent: float) -> float:
        """``D<percent>%``: the minimum dose of the hottest ``percent`` % of the volume, Gy."""
        return self.dose_at_volume_cc(percent / 100.0 * self.volume_cc)


def slab_limits(planes_z_mm):
    """Half-way slab limits of sorted contour planes (no gaps), end planes +- half a spacing."""
    z = np.asarray(planes_z_mm, dtype=np.float64)
    if z.size == 1:
        raise ValueError("a lone plane has no spacing")
    mids = 0.5 * (z[1:] + z[:-1])
    typical = float(np.median(np.diff(z)))
    lo = np.concatenate([[z[0] - typical / 2], mids])
    hi = np.concatenate([mids, [z[-1] + typical / 2]])
    return lo, hi


def naive_dvh(structure, grid, *, step_mm=0.05, n_z=10):
    """DVH of a (small) structure by brute force: a fine lattice of samples in every slab.

    Each slab (:func:`slab_limits`) gets ``n_z`` sub-planes; each sub-plane a square lattice of
    cell centres ``step_mm`` apart; a sample counts when it is inside the plane's polygons
    (even-odd) and its dose is :func:`trilinear_many`. The whole structure must lie inside the
    grid's node hull.

    Returns
    -------
    SampledDVH
    """
    planes = structure.planes_z_mm
    lo, hi = slab_limits(planes)
    b = structure.bounds_mm
    x0 = np.floor(b[0, 0] / step_mm) * step_mm
    y0 = np.floor(b[1, 0] / step_mm) * step_mm
    nx = int(np.ceil((b[0, 1] - x0) / step_mm)) + 1
    ny = int(np.ceil((b[1, 1] - y0) / step_mm)) + 1
    xx, yy = np.meshgrid(x0 + (np.arange(nx) + 0.5) * step_mm, y0 + (np.arange(ny) + 0.5) * step_mm)
    doses, weights = [], []
    for k, z in enumerate(planes):
        polys = [p for zz, p in structure.polygons() if abs(zz - z) < 1e-6]
        inside = point_in_polygons(xx, yy, polys)
        px, py = xx[inside], yy[inside]
        dz = (hi[k] - lo[k]) / n_z
        for m in range(n_z):
            zm = lo[k] + (m + 0.5) * dz
            doses.append(trilinear_many(grid.dose_gy, grid.x_mm, grid.y_mm, grid.z_mm,
                                        px, py, np.full(px.shape, zm)))
            weights.append(np.full(px.shape, step_mm * step_mm * dz))
    return SampledDVH(np.concatenate(doses), np.concatenate(weights))
