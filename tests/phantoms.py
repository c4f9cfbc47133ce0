"""Analytic phantoms: structures and dose fields whose DVH is known, and a DICOM RT writer.

A :class:`Phantom` is a set of fine regular polygons (``N_VERTICES`` a circle) on axial planes a
fixed spacing apart: a sphere, a cylinder, a cone (all axes along z), a tube (two contours a
plane, the inner one a hole), two islands in one ROI, or a sub-cc sphere. The truth always refers
to the polygons actually written, under the slab convention of the engine and of Nelms 2015: each
plane stands for a slab reaching half-way to its neighbours, the end planes extending half a
spacing outwards.

Truth
-----
:func:`linear_truth`
    Fields linear along x, y or z. Exact (floating point only): the area of a polygon on one side
    of a line is ``oint (u - c)_+ dv`` by Green's theorem, a closed form per edge; along z each
    slab spreads its volume uniformly between the doses of its faces. Trilinear interpolation is
    exact for a linear field, so this is also the exact DVH of the grid.
:func:`sampled_truth`
    Any field, by quadrature on the analytic cross-sections: per slab ``n_z`` sub-planes, per
    annulus ``n_theta`` x ``n_r`` polar cells between the exact polygon radii, each carrying its
    exact area times its thickness and sampled once at a stratified (low-discrepancy) point;
    the weighted samples are histogrammed at 0.001 Gy. The dose is usually the trilinear
    interpolant of the grid (:func:`grid_dose_fn`, the engine's stated convention, evaluated by
    ``naive.trilinear_many``). Dmin and Dmax are taken over the samples and over the points where
    a trilinear field's extremes can lie (polygon boundary at the slab faces and z nodes, grid
    nodes inside). ``tests/test_phantoms.py`` shows the quadrature within 0.03 Gy of
    :func:`linear_truth` at gradients up to 3 Gy/mm (0.02 Gy measured) and stable to 0.02 Gy under
    refinement: an order of magnitude below the 0.2 Gy tolerance of the DVH tests.

Standard cases
--------------
:func:`case` gives ``(phantom, grid, truth)`` for the six shapes x five fields (linear along x, y,
z; cone-shaped fall-off; Gaussian) on realistic 2-3 mm grids; :func:`assert_close` holds the
tolerances of the DVH tests and records the worst errors (shown by ``pytest -v``).

DICOM
-----
:func:`write_rtstruct`, :func:`write_rtdose`, :func:`write_rtplan` write minimal but valid files
(file meta, SOP classes, UIDs) with the options the loader must handle: patient orientations,
relative/absolute frame offsets, integer scaling, summation types, units.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

import naive
from sbrt_qa.models import DoseGrid, Structure

N_VERTICES = 720
#: angle of the first vertex of every circle, rad (keeps vertices off symmetry axes)
VERTEX_PHASE = 0.0123
#: vertex coordinates are rounded to this many decimals so that in-memory and DICOM agree
DECIMALS = 6


# --------------------------------------------------------------------------- geometry

@dataclass(frozen=True)
class Annulus:
    """A disc (``r_in == 0``) or a concentric ring in one plane, mm."""

    cx: float
    cy: float
    r_out: float
    r_in: float = 0.0


def regular_polygon(cx, cy, r, n=N_VERTICES, *, clockwise=False):
    """Vertices (n, 2) of a regular n-gon inscribed in the circle, rounded to ``DECIMALS``."""
    t = VERTEX_PHASE + 2 * np.pi * np.arange(n) / n
    if clockwise:
        t = t[::-1]
    return np.round(np.column_stack([cx + r * np.cos(t), cy + r * np.sin(t)]), DECIMALS)


def polygon_radius(r, theta, n=N_VERTICES):
    """Distance from the centre to the regular n-gon of circumradius ``r`` along angle ``theta``."""
    edge = 2 * np.pi / n
    phi = np.mod(theta - VERTEX_PHASE, edge) - edge / 2
    return r * np.cos(edge / 2) / np.cos(phi)


def signed_area(p):
    x, y = p[:, 0], p[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


@dataclass(frozen=True, eq=False)
class Phantom:
    """Polygons on equally spaced axial planes, with the slab convention.

    ``polygons`` holds ``(plane index, vertices (n, 2), sign)``: sign +1 for an outline, -1 for a
    hole (even-odd nesting depth). ``annuli`` (per plane) is kept when the polygons are regular
    n-gons of known circles, for :func:`sampled_truth`.
    """

    name: str
    planes_z_mm: np.ndarray
    spacing_mm: float
    polygons: tuple
    annuli: tuple | None = None
    n_vertices: int = N_VERTICES
    #: z limits of the slabs, when clipped to a dose grid (default: half-way convention)
    slab_override: tuple | None = None

    @property
    def slab_lo_hi(self):
        if self.slab_override is not None:
            return self.slab_override
        z = self.planes_z_mm
        return z - self.spacing_mm / 2, z + self.spacing_mm / 2

    @property
    def thickness_mm(self):
        lo, hi = self.slab_lo_hi
        return hi - lo

    def plane_area_mm2(self):
        a = np.zeros(self.planes_z_mm.size)
        for k, p, s in self.polygons:
            a[k] += s * abs(signed_area(p))
        return a

    @property
    def volume_cc(self) -> float:
        return float(np.dot(self.plane_area_mm2(), self.thickness_mm)) / 1000.0

    @property
    def bounds_mm(self) -> np.ndarray:
        pts = np.concatenate([p for _, p, _ in self.polygons])
        lo, hi = self.slab_lo_hi
        return np.array([[pts[:, 0].min(), pts[:, 0].max()], [pts[:, 1].min(), pts[:, 1].max()],
                         [lo.min(), hi.max()]])

    def structure(self, name: str | None = None, roi_number: int = 1) -> Structure:
        return Structure.from_polygons(name or self.name,
                                       [(self.planes_z_mm[k], p) for k, p, _ in self.polygons],
                                       roi_number=roi_number)

    def contours_3d(self):
        """``(n, 3)`` arrays of the polygons in patient coordinates, for an RTSTRUCT."""
        out = []
        for k, p, _ in self.polygons:
            z = np.full((p.shape[0], 1), self.planes_z_mm[k])
            out.append(np.hstack([p, z]))
        return out

    def clipped(self, axis: int, lo: float = -np.inf, hi: float = np.inf) -> "Phantom":
        """The part with ``lo <= coordinate <= hi`` along x (0), y (1) or z (2)."""
        if axis == 2:
            slo, shi = self.slab_lo_hi
            nlo, nhi = np.maximum(slo, lo), np.minimum(shi, hi)
            keep = nhi > nlo
            index = -np.ones(keep.size, dtype=int)
            index[keep] = np.arange(keep.sum())
            polys = tuple((int(index[k]), p, s) for k, p, s in self.polygons if keep[k])
            return replace(self, name=self.name + " clipped", planes_z_mm=self.planes_z_mm[keep],
                           polygons=polys, annuli=None, slab_override=(nlo[keep], nhi[keep]))
        polys = []
        for k, p, s in self.polygons:
            q = _clip_halfplane(p, axis, lo, upper=True) if np.isfinite(lo) else p
            if q is not None and np.isfinite(hi):
                q = _clip_halfplane(q, axis, hi, upper=False)
            if q is not None and abs(signed_area(q)) > 0:
                polys.append((k, q, s))
        return replace(self, name=self.name + " clipped", polygons=tuple(polys), annuli=None)


def _clip_halfplane(p, axis, c, *, upper):
    """Sutherland-Hodgman clip of a polygon to ``coord >= c`` (upper) or ``coord <= c``."""
    sgn = 1.0 if upper else -1.0
    out = []
    n = len(p)
    for i in range(n):
        a, b = p[i], p[(i + 1) % n]
        ia = sgn * (a[axis] - c) >= 0
        ib = sgn * (b[axis] - c) >= 0
        if ia:
            out.append(a)
        if ia != ib:
            t = (c - a[axis]) / (b[axis] - a[axis])
            out.append(a + t * (b - a))
    return np.array(out) if len(out) >= 3 else None


def _plane_positions(z_lo, z_hi, spacing, phase):
    """Lattice planes ``phase + k * spacing`` within [z_lo, z_hi] (inclusive, 1e-9 slack)."""
    k0 = math.ceil((z_lo - phase) / spacing - 1e-9)
    k1 = math.floor((z_hi - phase) / spacing + 1e-9)
    return np.round(phase + spacing * np.arange(k0, k1 + 1), DECIMALS)


def from_annuli(name, planes, annuli_per_plane, spacing, n_vertices=N_VERTICES) -> Phantom:
    """Phantom from a list of annuli per plane; planes without area are dropped."""
    keep = [i for i, a in enumerate(annuli_per_plane) if a]
    planes = np.asarray(planes, dtype=np.float64)[keep]
    annuli = tuple(tuple(annuli_per_plane[i]) for i in keep)
    polys = []
    for k, ring in enumerate(annuli):
        for a in ring:
            polys.append((k, regular_polygon(a.cx, a.cy, a.r_out, n_vertices), 1))
            if a.r_in > 0:
                hole = regular_polygon(a.cx, a.cy, a.r_in, n_vertices, clockwise=True)
                polys.append((k, hole, -1))
    return Phantom(name, planes, float(spacing), tuple(polys), annuli, n_vertices)


MIN_RADIUS_MM = 0.05


def sphere(radius=15.0, centre=(0.0, 0.0, 0.0), *, spacing=2.5, phase=0.3, name="Sphere",
           n_vertices=N_VERTICES) -> Phantom:
    cx, cy, cz = centre
    z = _plane_positions(cz - radius, cz + radius, spacing, cz + phase)
    rings = []
    for zk in z:
        r2 = radius ** 2 - (zk - cz) ** 2
        rings.append([Annulus(cx, cy, math.sqrt(r2))] if r2 > MIN_RADIUS_MM ** 2 else [])
    return from_annuli(name, z, rings, spacing, n_vertices)


def sphere_cc(volume_cc=0.5, centre=(0.0, 0.0, 0.0), **kw) -> Phantom:
    """A sphere of the given analytic volume (its slab volume differs slightly)."""
    radius = (3 * volume_cc * 1000.0 / (4 * math.pi)) ** (1 / 3)
    kw.setdefault("name", f"Sphere {volume_cc:g}cc")
    return sphere(radius, centre, **kw)


def cylinder(radius=12.0, length=30.0, centre=(0.0, 0.0, 0.0), *, spacing=2.5, phase=0.0,
             r_in=0.0, name="Cylinder", n_vertices=N_VERTICES) -> Phantom:
    """Axis along z; planes at the lattice points within +-length/2 (end caps per the slab rule)."""
    cx, cy, cz = centre
    z = _plane_positions(cz - length / 2, cz + length / 2, spacing, cz + phase)
    return from_annuli(name, z, [[Annulus(cx, cy, radius, r_in)] for _ in z], spacing, n_vertices)


def tube(r_out=15.0, r_in=7.0, length=24.0, centre=(0.0, 0.0, 0.0), **kw) -> Phantom:
    """A hollow cylinder: two contours a plane, the inner one a hole."""
    kw.setdefault("name", "Tube")
    return cylinder(r_out, length, centre, r_in=r_in, **kw)


def cone(base_radius=15.0, height=30.0, centre=(0.0, 0.0, 0.0), *, spacing=2.5, phase=0.0,
         name="Cone", n_vertices=N_VERTICES) -> Phantom:
    """Axis along z, base at ``centre z - height / 2``, apex at ``+ height / 2``."""
    cx, cy, cz = centre
    base = cz - height / 2
    z = _plane_positions(base, base + height, spacing, cz + phase)
    rings = []
    for zk in z:
        r = base_radius * (1 - (zk - base) / height)
        rings.append([Annulus(cx, cy, r)] if r > MIN_RADIUS_MM else [])
    return from_annuli(name, z, rings, spacing, n_vertices)


def islands(radius=8.0, radius2=6.0, separation=24.0, centre=(0.0, 0.0, 0.0), *, spacing=2.5,
            phase=0.3, name="Islands", n_vertices=N_VERTICES) -> Phantom:
    """Two disjoint spheres side by side in x, in one ROI.

    Unequal radii keep every dose quantile well defined in a field along x (with equal halves
    ``D50%`` would fall in the dose gap between the islands).
    """
    cx, cy, cz = centre
    z = _plane_positions(cz - radius, cz + radius, spacing, cz + phase)
    rings = []
    for zk in z:
        ring = []
        for r0, x0 in ((radius, cx - separation / 2), (radius2, cx + separation / 2)):
            r2 = r0 ** 2 - (zk - cz) ** 2
            if r2 > MIN_RADIUS_MM ** 2:
                ring.append(Annulus(x0, cy, math.sqrt(r2)))
        rings.append(ring)
    return from_annuli(name, z, rings, spacing, n_vertices)


def standard_phantoms(spacing=2.5, centre=(1.3, -2.1, 0.7)) -> dict[str, Phantom]:
    """The six shapes of the DVH tests, off the grid's symmetry on purpose."""
    return {
        "sphere": sphere(15.0, centre, spacing=spacing),
        "cylinder": cylinder(12.0, 30.0, centre, spacing=spacing),
        "cone": cone(15.0, 30.0, centre, spacing=spacing),
        "tube": tube(15.0, 7.0, 24.0, centre, spacing=spacing),
        "islands": islands(8.0, 6.0, 24.0, centre, spacing=spacing),
        "sphere_0.5cc": sphere_cc(0.5, centre, spacing=spacing, phase=0.4),
    }


# --------------------------------------------------------------------------- dose fields

@dataclass(frozen=True)
class LinearField:
    """``value_gy + gradient_gy_per_mm * (coordinate[axis] - ref_mm)``; axis 0 x, 1 y, 2 z."""

    axis: int
    gradient_gy_per_mm: float
    value_gy: float = 25.0
    ref_mm: float = 0.0

    def __call__(self, x, y, z):
        c = (x, y, z)[self.axis]
        c = np.asarray(c, dtype=np.float64)
        return self.value_gy + self.gradient_gy_per_mm * (c - self.ref_mm)


@dataclass(frozen=True)
class ConeField:
    """``max(d0 - k r, 0)`` with ``r`` the distance from ``centre``: an SBRT-like fall-off."""

    centre: tuple
    d0_gy: float = 45.0
    k_gy_per_mm: float = 1.5

    def __call__(self, x, y, z):
        cx, cy, cz = self.centre
        r = np.sqrt((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2)
        return np.maximum(self.d0_gy - self.k_gy_per_mm * r, 0.0)


@dataclass(frozen=True)
class GaussianField:
    """``d0 exp(-r^2 / (2 sigma^2))``."""

    centre: tuple
    d0_gy: float = 40.0
    sigma_mm: float = 12.0

    def __call__(self, x, y, z):
        cx, cy, cz = self.centre
        r2 = (x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2
        return self.d0_gy * np.exp(-r2 / (2 * self.sigma_mm ** 2))


def node_axis(lo, hi, step, shift):
    """Nodes ``shift + k * step`` from at or below ``lo`` to at or above ``hi``."""
    k0 = math.floor((lo - shift) / step)
    k1 = math.ceil((hi - shift) / step)
    return np.round(shift + step * np.arange(k0, k1 + 1), DECIMALS)


def dose_grid(fn, bounds_mm, spacing_mm=(2.5, 2.5, 2.5), *, margin_mm=5.0,
              shift_mm=(0.37, -0.61, 0.23), z_mm=None, frame_uid=None) -> DoseGrid:
    """Sample ``fn(x, y, z)`` on a grid whose nodes cover ``bounds_mm`` plus a margin.

    ``z_mm`` replaces the regular z nodes (e.g. uneven spacing).
    """
    b = np.asarray(bounds_mm, dtype=np.float64)
    axes = [node_axis(b[i, 0] - margin_mm, b[i, 1] + margin_mm, spacing_mm[i], shift_mm[i])
            for i in range(3)]
    if z_mm is not None:
        axes[2] = np.asarray(z_mm, dtype=np.float64)
    zz, yy, xx = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    dose = np.ascontiguousarray(fn(xx, yy, zz), dtype=np.float64)
    return DoseGrid(dose, axes[0], axes[1], axes[2], frame_of_reference_uid=frame_uid)


def grid_dose_fn(grid: DoseGrid):
    """The trilinear interpolant of ``grid`` as a vectorised ``fn(x, y, z)`` (naive formula)."""
    def fn(x, y, z):
        x, y, z = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (x, y, z)))
        return naive.trilinear_many(grid.dose_gy, grid.x_mm, grid.y_mm, grid.z_mm, x, y, z)
    return fn


# --------------------------------------------------------------------------- truth

@dataclass
class Truth:
    """The exact (or converged) DVH of a phantom in a field: volumes in cc, doses in Gy."""

    volume_cc: float
    dmin_gy: float
    dmax_gy: float
    dmean_gy: float
    volume_at_dose_cc: object  # callable dose_gy -> cc receiving at least that dose
    dose_at_percent: object  # callable percent -> Gy
    extra: dict = field(default_factory=dict)

    def volume_at_dose_percent(self, dose_gy: float) -> float:
        return 100.0 * self.volume_at_dose_cc(dose_gy) / self.volume_cc

    def dose_at_volume_cc(self, volume_cc: float) -> float:
        return self.dose_at_percent(100.0 * volume_cc / self.volume_cc)


def _edge_positive_part_integral(u1, u2, c):
    """``int_0^1 (u1 + t (u2 - u1) - c)_+ dt`` per edge (vectorised, exact)."""
    a = u1 - c
    b = u2 - c
    ap = np.maximum(a, 0.0)
    bp = np.maximum(b, 0.0)
    d = a - b
    safe = np.where(d == 0, 1.0, d)
    return np.where(d == 0, ap, (ap * ap - bp * bp) / (2 * safe))


def area_above(p, axis, c):
    """Area of polygon ``p`` where ``coordinate[axis] >= c`` (exact; Green's theorem)."""
    o = 1.0 if signed_area(p) > 0 else -1.0
    q = np.roll(p, -1, axis=0)
    if axis == 0:  # area = oint (x - c)_+ dy
        part = _edge_positive_part_integral(p[:, 0], q[:, 0], c)
        return o * float(np.sum(part * (q[:, 1] - p[:, 1])))
    # area = -oint (y - c)_+ dx
    part = _edge_positive_part_integral(p[:, 1], q[:, 1], c)
    return -o * float(np.sum(part * (q[:, 0] - p[:, 0])))


def first_moment(p, axis):
    """``int int coordinate[axis] dA`` over polygon ``p`` (exact)."""
    o = 1.0 if signed_area(p) > 0 else -1.0
    q = np.roll(p, -1, axis=0)
    if axis == 0:
        x1, x2 = p[:, 0], q[:, 0]
        return o * float(np.sum((x1 * x1 + x1 * x2 + x2 * x2) / 6.0 * (q[:, 1] - p[:, 1])))
    y1, y2 = p[:, 1], q[:, 1]
    return -o * float(np.sum((y1 * y1 + y1 * y2 + y2 * y2) / 6.0 * (q[:, 0] - p[:, 0])))


def _bisect_quantile(vfun, total, lo, hi, percent):
    """Dose d with ``vfun(d) = percent % of total`` for a non-increasing ``vfun``."""
    target = percent / 100.0 * total
    if percent >= 100.0:
        return lo
    if percent <= 0.0:
        return hi
    a, b = lo, hi
    for _ in range(80):
        m = 0.5 * (a + b)
        if vfun(m) >= target:
            a = m
        else:
            b = m
    return 0.5 * (a + b)


def linear_truth(phantom: Phantom, f: LinearField, grid: DoseGrid | None = None) -> Truth:
    """Exact DVH of a phantom in a linear field (see the module docstring).

    If ``grid`` is given, the phantom must lie inside its node hull, where trilinear
    interpolation reproduces the field exactly.
    """
    if grid is not None:
        b = phantom.bounds_mm
        for i, c in enumerate((grid.x_mm, grid.y_mm, grid.z_mm)):
            if b[i, 0] < c[0] or b[i, 1] > c[-1]:
                raise ValueError("the phantom leaves the grid's node hull: the truth would not "
                                 "be exact")
    g = f.gradient_gy_per_mm
    t = phantom.thickness_mm
    area = phantom.plane_area_mm2()
    volume = float(np.dot(area, t))
    lo, hi = phantom.slab_lo_hi
    polys = phantom.polygons
    if f.axis in (0, 1):
        ax = f.axis
        moment = sum(s * t[k] * first_moment(p, ax) for k, p, s in polys)
        dmean = f.value_gy + g * (moment / volume - f.ref_mm)
        coords = np.concatenate([p[:, ax] for _, p, _ in polys])
        dvals = f.value_gy + g * (coords - f.ref_mm)
        dmin, dmax = float(dvals.min()), float(dvals.max())

        def vfun(d):
            if g == 0:
                return volume if d <= f.value_gy else 0.0
            c = f.ref_mm + (d - f.value_gy) / g
            above = sum(s * t[k] * area_above(p, ax, c) for k, p, s in polys)
            return above if g > 0 else volume - above
    else:
        da = f(0, 0, lo)
        db = f(0, 0, hi)
        dlo, dhi = np.minimum(da, db), np.maximum(da, db)
        w = area * t
        dmean = float(np.dot(w, 0.5 * (da + db)) / volume)
        dmin, dmax = float(dlo.min()), float(dhi.max())

        def vfun(d):
            span = np.where(dhi > dlo, dhi - dlo, 1.0)
            frac = np.where(dhi > dlo, np.clip((dhi - d) / span, 0.0, 1.0), (dlo >= d) * 1.0)
            return float(np.dot(w, frac))

    return Truth(volume_cc=volume / 1000.0, dmin_gy=dmin, dmax_gy=dmax, dmean_gy=dmean,
                 volume_at_dose_cc=lambda d: vfun(d) / 1000.0,
                 dose_at_percent=lambda p: _bisect_quantile(vfun, volume, dmin, dmax, p))


def quadrature_points(phantom: Phantom, *, n_theta=720, n_r=32, n_z=6):
    """Yield ``(x, y, z, weight_mm3)`` per slab and annulus (see the module docstring).

    Cells of ``dtheta x dr x dz`` carry their exact polar area times ``dz``; the sample point of
    each cell is placed at low-discrepancy offsets (stratified, deterministic), which avoids the
    aliasing a regular lattice causes in dose quantiles.
    """
    if phantom.annuli is None:
        raise ValueError("quadrature needs the analytic annuli (not available after clipping)")
    lo, hi = phantom.slab_lo_hi
    dtheta = 2 * np.pi / n_theta
    theta_mid = (np.arange(n_theta) + 0.5) * dtheta
    n = phantom.n_vertices
    ncell = n_theta * n_r
    for k, ring in enumerate(phantom.annuli):
        dz = (hi[k] - lo[k]) / n_z
        for a in ring:
            rho_out = polygon_radius(a.r_out, theta_mid, n)
            rho_in = polygon_radius(a.r_in, theta_mid, n) if a.r_in > 0 else np.zeros(n_theta)
            dr = (rho_out - rho_in) / n_r
            ra = rho_in[:, None] + np.arange(n_r)[None, :] * dr[:, None]
            rb = ra + dr[:, None]
            w2 = 0.5 * (rb * rb - ra * ra) * dtheta
            exact = abs(signed_area(regular_polygon(a.cx, a.cy, a.r_out, n)))
            if a.r_in > 0:
                exact -= abs(signed_area(regular_polygon(a.cx, a.cy, a.r_in, n)))
            w2 = (w2 * (exact / w2.sum())).ravel()
            ra, rb = ra.ravel(), rb.ravel()
            tm = np.repeat(theta_mid, n_r)
            for i in range(n_z):
                seq = np.arange(ncell) + i * ncell + 1
                u = np.mod(seq * 0.6180339887498949, 1.0)
                v = np.mod(seq * 0.7548776662466927, 1.0)
                w = np.mod(seq * 0.5698402909980532, 1.0)
                r = np.sqrt(ra * ra + u * (rb * rb - ra * ra))
                t = tm + (v - 0.5) * dtheta
                z = lo[k] + (i + w) * dz
                yield a.cx + r * np.cos(t), a.cy + r * np.sin(t), z, w2 * dz


def _extreme_candidates(phantom: Phantom, grid: DoseGrid | None, extra_points=()):
    """Points where the min and max of a trilinear (or smooth) field over the phantom can lie.

    The trilinear interpolant is linear in z between z nodes and bilinear in-plane within a cell,
    so over one slab its extremes lie at the slab faces or z nodes, on the polygon boundary
    (vertices and 4 points an edge, a 0.03 mm step for 0.13 mm edges) or at in-plane grid nodes
    inside the polygon. ``extra_points`` adds, per slab, e.g. a smooth field's peak.
    """
    lo, hi = phantom.slab_lo_hi
    xs, ys, zs = [], [], []
    by_plane: dict[int, list] = {}
    for k, p, _ in phantom.polygons:
        by_plane.setdefault(k, []).append(p)
    for k, polys in by_plane.items():
        zc = [lo[k], hi[k]]
        if grid is not None:
            zc += [z for z in grid.z_mm if lo[k] < z < hi[k]]
        pts = []
        for p in polys:
            q = np.roll(p, -1, axis=0)
            for t in (0.0, 0.2, 0.4, 0.6, 0.8):
                pts.append(p + t * (q - p))
        pts = np.concatenate(pts)
        if grid is not None:
            b0, b1 = pts.min(axis=0), pts.max(axis=0)
            gx = grid.x_mm[(grid.x_mm >= b0[0]) & (grid.x_mm <= b1[0])]
            gy = grid.y_mm[(grid.y_mm >= b0[1]) & (grid.y_mm <= b1[1])]
            if gx.size and gy.size:
                nx, ny = np.meshgrid(gx, gy)
                inside = naive.point_in_polygons(nx, ny, polys)
                pts = np.concatenate([pts, np.column_stack([nx[inside], ny[inside]])])
        for (px, py, pz) in extra_points:
            zc_ = min(max(pz, lo[k]), hi[k])
            if naive.point_in_polygons(np.array([px]), np.array([py]), polys)[0]:
                xs.append(np.array([px]))
                ys.append(np.array([py]))
                zs.append(np.array([zc_]))
        for z in zc:
            xs.append(pts[:, 0])
            ys.append(pts[:, 1])
            zs.append(np.full(pts.shape[0], z))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(zs)


def sampled_truth(phantom: Phantom, fn, *, grid: DoseGrid | None = None, extra_points=(),
                  n_theta=720, n_r=32, n_z=6) -> Truth:
    """DVH of ``fn`` over the phantom by quadrature (see the module docstring).

    Parameters
    ----------
    fn : callable
        Vectorised ``fn(x, y, z)`` in Gy, e.g. :func:`grid_dose_fn` of the grid.
    grid : DoseGrid, optional
        Adds the grid's nodes to the candidates for Dmin/Dmax.
    extra_points : sequence of (x, y, z)
        More Dmin/Dmax candidates (a smooth field's peak).
    """
    doses, weights = [], []
    for x, y, z, w in quadrature_points(phantom, n_theta=n_theta, n_r=n_r, n_z=n_z):
        doses.append(fn(x, y, z))
        weights.append(w)
    s = naive.SampledDVH(np.concatenate(doses), np.concatenate(weights))
    cx, cy, cz = _extreme_candidates(phantom, grid, extra_points)
    ext = fn(cx, cy, cz)
    dmin = min(float(ext.min()), s.dmin_gy)
    dmax = max(float(ext.max()), s.dmax_gy)
    scale = phantom.volume_cc / s.volume_cc  # 1 up to rounding: the weights are exact areas
    return Truth(volume_cc=phantom.volume_cc, dmin_gy=dmin, dmax_gy=dmax, dmean_gy=s.dmean_gy,
                 volume_at_dose_cc=lambda d: s.volume_at_dose_cc(d) * scale,
                 dose_at_percent=s.dose_at_percent, extra={"samples": s})


# --------------------------------------------------------------------------- standard cases
# The analytic tolerances of the DVH tests, once:
# 0.2 Gy on Dmean and D98/D95/D50/D2 (% of the covered volume), 0.3 Gy on Dmin and Dmax,
# 1 percentage point on V<dose>[%], 1 % on volume.

DOSE_TOL_GY = 0.2
EXTREME_TOL_GY = 0.3
V_TOL_PP = 1.0
VOLUME_TOL_PCT = 1.0
PERCENTS = (98, 95, 50, 2)

#: worst |error| per metric type over the session, for the summary (-v)
WORST: dict[str, tuple[float, str]] = {}

# shape -> (contour spacing, dose grid spacing x/y/z), mm: a spread of realistic combinations
GEOMETRY = {
    "sphere": (2.5, (2.5, 2.5, 2.5)),
    "cylinder": (3.0, (3.0, 3.0, 3.0)),
    "cone": (2.0, (2.0, 2.5, 3.0)),
    "tube": (2.5, (2.5, 2.0, 2.5)),
    "islands": (2.0, (3.0, 3.0, 2.0)),
    "sphere_0.5cc": (2.0, (2.0, 2.0, 2.0)),
}
SHAPES = tuple(GEOMETRY)
FIELDS = ("linear_x", "linear_y", "linear_z", "cone", "gaussian")
CENTRE = (1.3, -2.1, 0.7)


@functools.lru_cache(maxsize=None)
def phantom(shape: str) -> Phantom:
    spacing, _ = GEOMETRY[shape]
    return standard_phantoms(spacing=spacing, centre=CENTRE)[shape]


def field_for(shape: str, kind: str):
    """A realistic field for a phantom: 15-45 Gy over the structure, up to 3 Gy/mm."""
    p = phantom(shape)
    b = p.bounds_mm
    centre = b.mean(axis=1)
    if kind.startswith("linear_"):
        axis = "xyz".index(kind[-1])
        half = (b[axis, 1] - b[axis, 0]) / 2
        g = min(3.0, 15.0 / half) * (-1.0 if axis == 1 else 1.0)
        return LinearField(axis, g, 30.0, float(centre[axis]))
    small = shape == "sphere_0.5cc"
    if kind == "cone":
        return ConeField(tuple(centre + (3.0, -2.0, 1.5)), 45.0, 3.0 if small else 1.5)
    if kind == "gaussian":
        return GaussianField(tuple(centre + (-2.0, 3.0, -1.0)), 40.0, 8.0 if small else 12.0)
    raise ValueError(kind)


@functools.lru_cache(maxsize=None)
def case(shape: str, kind: str):
    """``(phantom, grid, truth)`` of one shape in one field (cached for the session)."""
    p = phantom(shape)
    f = field_for(shape, kind)
    _, grid_spacing = GEOMETRY[shape]
    grid = dose_grid(f, p.bounds_mm, grid_spacing, margin_mm=3.0)
    if isinstance(f, LinearField):
        truth = linear_truth(p, f, grid)
    else:
        truth = sampled_truth(p, grid_dose_fn(grid), grid=grid)
    return p, grid, truth


def engine_dvh(structure, grid, **kwargs):
    """The engine's DVH under the slab model, the convention the truth is computed in.

    If the engine offers other models of the shape between planes (``interpolate``), the slab
    model is asked for explicitly.
    """
    import inspect

    from sbrt_qa.dvh import dvh_of_structure

    if "interpolate" in inspect.signature(dvh_of_structure).parameters:
        kwargs.setdefault("interpolate", False)
    return dvh_of_structure(structure, grid, **kwargs)


def v_doses(truth) -> list[float]:
    """Doses at which to compare V[%]: where the truth has 90, 50 and 10 % of the volume."""
    return [truth.dose_at_percent(p) for p in (90, 50, 10)]


def record(kind: str, err: float, label: str):
    if kind not in WORST or abs(err) > abs(WORST[kind][0]):
        WORST[kind] = (err, label)


def compare(dvh, truth, label: str = "", *, check_volume=True) -> dict[str, float]:
    """All metric errors of an engine DVH against a truth, recorded for the summary.

    Returns ``{metric: engine - truth}``; volumes in %, V in percentage points, doses in Gy.
    """
    cov = dvh.covered_volume_cc
    errors = {}
    if check_volume:
        errors["volume[%]"] = 100.0 * (dvh.volume_cc - truth.volume_cc) / truth.volume_cc
    errors["Dmean"] = dvh.dmean_gy - truth.dmean_gy
    errors["Dmin"] = dvh.dmin_gy - truth.dmin_gy
    errors["Dmax"] = dvh.dmax_gy - truth.dmax_gy
    for p in PERCENTS:
        errors[f"D{p}%"] = dvh.dose_at_volume_gy(p / 100.0 * cov) - truth.dose_at_percent(p)
    for d in v_doses(truth):
        engine_pct = 100.0 * dvh.volume_at_dose_cc(d) / cov
        errors[f"V{d:.2f}Gy[%]"] = engine_pct - truth.volume_at_dose_percent(d)
    for k, e in errors.items():
        kind = ("volume" if k.startswith("volume") else "V[%]" if k.startswith("V")
                else "Dmin/Dmax" if k in ("Dmin", "Dmax") else "Dmean/Dx%")
        record(kind, e, f"{label} {k}")
    return errors


def assert_close(dvh, truth, label: str = "", **kw):
    """Assert every metric is within the analytic tolerances (message lists all errors)."""
    errors = compare(dvh, truth, label, **kw)
    bad = []
    for k, e in errors.items():
        tol = (VOLUME_TOL_PCT if k.startswith("volume") else V_TOL_PP if k.startswith("V")
               else EXTREME_TOL_GY if k in ("Dmin", "Dmax") else DOSE_TOL_GY)
        if not (abs(e) <= tol):
            bad.append(f"{k}: {e:+.4f} (tolerance {tol})")
    detail = ", ".join(f"{k} {e:+.3f}" for k, e in errors.items())
    assert not bad, f"{label}: {'; '.join(bad)}\n  all errors: {detail}"
    return errors


# --------------------------------------------------------------------------- DICOM writing

ORIENTATIONS = {  # PatientPosition -> ImageOrientationPatient
    "HFS": (1, 0, 0, 0, 1, 0),
    "FFS": (-1, 0, 0, 0, 1, 0),
    "HFP": (-1, 0, 0, 0, -1, 0),
    "FFP": (1, 0, 0, 0, -1, 0),
}
RTSTRUCT_SOP = "1.2.840.10008.5.1.4.1.1.481.3"
RTDOSE_SOP = "1.2.840.10008.5.1.4.1.1.481.2"
RTPLAN_SOP = "1.2.840.10008.5.1.4.1.1.481.5"
CT_SOP = "1.2.840.10008.5.1.4.1.1.2"


@dataclass
class Uids:
    """The UIDs that tie one phantom plan together."""

    frame: str = field(default_factory=lambda: _uid())
    study: str = field(default_factory=lambda: _uid())
    structure_set: str = field(default_factory=lambda: _uid())
    plan: str = field(default_factory=lambda: _uid())


def _uid():
    from pydicom.uid import generate_uid

    return generate_uid()


def _ds(v):
    """A decimal string value of at most 16 characters."""
    s = f"{float(v):.6f}".rstrip("0").rstrip(".")
    if s in ("", "-0"):
        s = "0"
    if len(s) > 16:
        s = f"{float(v):.10g}"
    return s


def _base(modality, sop_class, sop_uid, uids: Uids, patient_id):
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.Modality = modality
    ds.PatientName = "Phantom^Analytic"
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyInstanceUID = uids.study
    ds.SeriesInstanceUID = _uid()
    ds.StudyDate = "20240101"
    ds.StudyTime = "120000"
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.Manufacturer = "sbrt-qa tests"
    return ds


def _save(ds, path):
    import pydicom

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


@dataclass
class Roi:
    """One ROI for :func:`write_rtstruct`.

    ``contours`` is a list of ``(n, 3)`` point arrays, or of ``(geometric type, array)``.
    """

    number: int
    name: str
    contours: list
    interpreted_type: str = "ORGAN"

    @classmethod
    def of(cls, phantom: Phantom, number: int, name: str | None = None, kind="PTV"):
        return cls(number, name or phantom.name, phantom.contours_3d(), kind)


def write_rtstruct(path, rois, uids: Uids, *, patient_id="PHANTOM", frame_location="referenced"):
    """Write an RTSTRUCT.

    ``frame_location``: ``"referenced"`` (ReferencedFrameOfReferenceSequence and the ROI items,
    the usual form), ``"roi_only"`` (only StructureSetROISequence items, like the Nelms files), or
    ``"none"``.
    """
    import pydicom
    from pydicom.sequence import Sequence

    ds = _base("RTSTRUCT", RTSTRUCT_SOP, uids.structure_set, uids, patient_id)
    ds.StructureSetLabel = "Phantom"
    ds.StructureSetDate = "20240101"
    ds.StructureSetTime = "120000"
    if frame_location == "referenced":
        ref = pydicom.Dataset()
        ref.FrameOfReferenceUID = uids.frame
        ds.ReferencedFrameOfReferenceSequence = Sequence([ref])
    ssroi, contours, obs = [], [], []
    for roi in rois:
        item = pydicom.Dataset()
        item.ROINumber = roi.number
        if frame_location in ("referenced", "roi_only"):
            item.ReferencedFrameOfReferenceUID = uids.frame
        item.ROIName = roi.name
        item.ROIGenerationAlgorithm = "MANUAL"
        ssroi.append(item)
        rc = pydicom.Dataset()
        rc.ReferencedROINumber = roi.number
        rc.ROIDisplayColor = [255, 0, 0]
        seq = []
        for c in roi.contours:
            gtype, pts = c if isinstance(c, tuple) else ("CLOSED_PLANAR", c)
            ci = pydicom.Dataset()
            ci.ContourGeometricType = gtype
            ci.NumberOfContourPoints = len(pts)
            ci.ContourData = [_ds(v) for v in np.asarray(pts, dtype=np.float64).ravel()]
            seq.append(ci)
        if seq:
            rc.ContourSequence = Sequence(seq)
        contours.append(rc)
        ob = pydicom.Dataset()
        ob.ObservationNumber = roi.number
        ob.ReferencedROINumber = roi.number
        ob.RTROIInterpretedType = roi.interpreted_type
        ob.ROIInterpreter = ""
        obs.append(ob)
    ds.StructureSetROISequence = Sequence(ssroi)
    ds.ROIContourSequence = Sequence(contours)
    ds.RTROIObservationsSequence = Sequence(obs)
    return _save(ds, path)


def write_rtdose(path, grid: DoseGrid, uids: Uids, *, orientation="HFS", frame_order=None,
                 offsets="relative", bits=32, scaling=None, units="GY", summation="PLAN",
                 plan_uid=None, beam_number=None, iop=None, factor=1.0, patient_id="PHANTOM",
                 frame_uid=None, sop_uid=None):
    """Write ``grid`` (times ``factor``) as an RTDOSE.

    Parameters
    ----------
    orientation : {"HFS", "FFS", "HFP", "FFP"}
        Sets ImageOrientationPatient; rows and columns are stored in the matching order.
    frame_order : {"ascending", "descending"}, optional
        Order of the frames in patient z. Default: along the image normal (row x column), so
        that the relative offsets are positive.
    offsets : {"relative", "absolute"} or sequence
        GridFrameOffsetVector form (a: from 0 along the normal; b: patient z), or the values.
    bits : {16, 32}
        Unsigned integer storage; ``scaling`` defaults to fill the range.
    units : {"GY", "RELATIVE", "CGY"}
        Written as given; the stored values are ``dose * factor`` (for RELATIVE give
        ``factor = 1 / normalisation_gy``).
    factor : float
        Multiplies the dose (a beam's share, a fraction, a normalisation).
    iop : sequence of 6, optional
        Overrides the orientation (e.g. oblique).
    """
    import pydicom
    from pydicom.sequence import Sequence

    sop_uid = sop_uid or _uid()
    ds = _base("RTDOSE", RTDOSE_SOP, sop_uid, uids, patient_id)
    ds.FrameOfReferenceUID = frame_uid or uids.frame
    ds.PositionReferenceIndicator = ""
    sx, _, _, _, sy, _ = ORIENTATIONS[orientation]
    ds.PatientPosition = orientation
    normal_z = sx * sy
    dose = np.asarray(grid.dose_gy, dtype=np.float64) * factor
    x, y, z = grid.x_mm, grid.y_mm, grid.z_mm
    if sx < 0:
        dose, x = dose[:, :, ::-1], x[::-1]
    if sy < 0:
        dose, y = dose[:, ::-1, :], y[::-1]
    if frame_order is None:
        frame_order = "ascending" if normal_z > 0 else "descending"
    if frame_order == "descending":
        dose, z = dose[::-1], z[::-1]
    if dose.min() < 0:
        raise ValueError("negative doses cannot be stored unsigned")
    maxint = 2 ** bits - 1
    if scaling is None:
        scaling = max(float(dose.max()), 1e-12) / maxint
    pixels = np.round(dose / scaling)
    if pixels.max() > maxint:
        raise ValueError("DoseGridScaling too small for the bit depth")
    pixels = pixels.astype(np.uint32 if bits == 32 else np.uint16)
    nz, ny, nx = pixels.shape
    ds.ImagePositionPatient = [_ds(x[0]), _ds(y[0]), _ds(z[0])]
    iop = ORIENTATIONS[orientation] if iop is None else iop
    ds.ImageOrientationPatient = [_ds(v) for v in iop]
    ds.PixelSpacing = [_ds(abs(y[1] - y[0])), _ds(abs(x[1] - x[0]))]
    ds.SliceThickness = ""
    if isinstance(offsets, str) and offsets == "relative":
        off = normal_z * (z - z[0])
    elif isinstance(offsets, str) and offsets == "absolute":
        off = z
    else:
        off = np.asarray(offsets, dtype=np.float64)
    ds.GridFrameOffsetVector = [_ds(v) for v in off]
    ds.NumberOfFrames = nz
    ds.FrameIncrementPointer = pydicom.tag.Tag("GridFrameOffsetVector")
    ds.Rows = ny
    ds.Columns = nx
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.DoseUnits = units
    ds.DoseType = "PHYSICAL"
    ds.DoseSummationType = summation
    ds.DoseGridScaling = f"{scaling:.10g}"
    if plan_uid:
        ref = pydicom.Dataset()
        ref.ReferencedSOPClassUID = RTPLAN_SOP
        ref.ReferencedSOPInstanceUID = plan_uid
        if beam_number is not None:
            fg = pydicom.Dataset()
            fg.ReferencedFractionGroupNumber = 1
            b = pydicom.Dataset()
            b.ReferencedBeamNumber = beam_number
            fg.ReferencedBeamSequence = Sequence([b])
            ref.ReferencedFractionGroupSequence = Sequence([fg])
        ds.ReferencedRTPlanSequence = Sequence([ref])
    ds.PixelData = np.ascontiguousarray(pixels).astype("<u4" if bits == 32 else "<u2").tobytes()
    return _save(ds, path)


def write_rtplan(path, uids: Uids, *, fractions=5, rx_gy=40.0, n_beams=1, target_roi=1,
                 label="PHANTOM", patient_id="PHANTOM", frame_uid=None,
                 structure_set_uid=None):
    """Write a minimal RTPLAN: one fraction group, ``n_beams`` beams, one target prescription."""
    import pydicom
    from pydicom.sequence import Sequence

    ds = _base("RTPLAN", RTPLAN_SOP, uids.plan, uids, patient_id)
    ds.FrameOfReferenceUID = frame_uid or uids.frame
    ds.PositionReferenceIndicator = ""
    ds.RTPlanLabel = label
    ds.RTPlanName = label
    ds.RTPlanDate = "20240101"
    ds.RTPlanTime = "120000"
    ds.RTPlanGeometry = "PATIENT"
    ds.PlanIntent = "CURATIVE"
    ds.ApprovalStatus = "APPROVED"
    rss = pydicom.Dataset()
    rss.ReferencedSOPClassUID = RTSTRUCT_SOP
    rss.ReferencedSOPInstanceUID = structure_set_uid or uids.structure_set
    ds.ReferencedStructureSetSequence = Sequence([rss])
    dr = pydicom.Dataset()
    dr.DoseReferenceNumber = 1
    dr.DoseReferenceUID = _uid()
    dr.DoseReferenceStructureType = "VOLUME"
    dr.DoseReferenceDescription = "PTV"
    dr.DoseReferenceType = "TARGET"
    dr.ReferencedROINumber = target_roi
    dr.TargetPrescriptionDose = _ds(rx_gy)
    ds.DoseReferenceSequence = Sequence([dr])
    fg = pydicom.Dataset()
    fg.FractionGroupNumber = 1
    fg.NumberOfFractionsPlanned = fractions
    fg.NumberOfBeams = n_beams
    fg.NumberOfBrachyApplicationSetups = 0
    refs = []
    beams = []
    for b in range(1, n_beams + 1):
        rb = pydicom.Dataset()
        rb.ReferencedBeamNumber = b
        rb.BeamDose = _ds(rx_gy / fractions / n_beams)
        rb.BeamMeterset = "100"
        refs.append(rb)
        beam = pydicom.Dataset()
        beam.BeamNumber = b
        beam.BeamName = f"Arc{b}"
        beam.BeamType = "DYNAMIC"
        beam.RadiationType = "PHOTON"
        beam.TreatmentDeliveryType = "TREATMENT"
        beam.NumberOfControlPoints = 0
        beams.append(beam)
    fg.ReferencedBeamSequence = Sequence(refs)
    ds.FractionGroupSequence = Sequence([fg])
    ds.BeamSequence = Sequence(beams)
    return _save(ds, path)


def write_ct_like(path, uids: Uids, *, patient_id="PHANTOM"):
    """A small non-RT DICOM image (modality CT) that the loader must ignore."""
    ds = _base("CT", CT_SOP, _uid(), uids, patient_id)
    ds.FrameOfReferenceUID = uids.frame
    ds.Rows = 2
    ds.Columns = 2
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.ImagePositionPatient = ["0", "0", "0"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.PixelSpacing = ["1", "1"]
    ds.PixelData = np.zeros(4, dtype="<u2").tobytes()
    return _save(ds, path)
