"""The DVH engine's DEFAULT mode (shape-based interpolation) against analytic truth.

``dvh_of_structure`` interpolates the shape between contour planes and extends the end planes half
a spacing outwards (``sbrt_qa/dvh/core.py``): the convention of the Nelms 2015 analytic benchmark,
whose truth these tests reproduce. ``tests/test_dvh.py`` tests the slab model
(``interpolate=False``) against slab truth; this file tests the default.

Phantoms
    Continuous analytic solids given by their axial sections: *tracks*, each the affine image
    ``c(z) + M(z) q`` of the unit disc (minus the concentric disc ``|q| < rho(z)``, a hole) or of
    the square ``[-1, 1]^2``: spheres (r 12 mm; planes missing the poles, through both poles, and
    0.03 mm from one), a cylinder, a cone and a tube (annulus) along z, two spheres in one ROI,
    0.5 cc spheres (1, 2, 3 mm planes), a rotated ellipsoid, a cylinder tilted 35 degrees from z
    and one lying in the axial plane; plane spacings 1, 2 and 3 mm. Contours are the sections at
    the lattice planes ``phase + k h`` (720-vertex polygons; a section thinner than 0.05 mm, such
    as a pole, is not drawn). ``test_phantom_geometry`` checks them against the solids' implicit
    equations.
Truth region
    With ``z_1``, ``z_n`` the first and last planes holding a contour and ``h`` the spacing::

        {solid and z_1 <= z <= z_n}
          + {section(z_1) x [z_1 - h/2, z_1]} + {section(z_n) x [z_n, z_n + h/2]}

    (a 720-gon differs from its circle by 1.3e-5 of the area and 1e-4 mm of the radius:
    ignored). An island or a hole whose own end contours lie inside ``[z_1, z_n]`` is part of the
    solid there, tip included: ``test_islands_ending_inside``, kept apart from the main cases.
Dose
    Grids of 2-3 mm. The engine uses trilinear interpolation of the grid, so the truth does too:
    for linear fields (reproduced exactly inside the node hull) it is that of the field; radial
    fields (a Gaussian and a piecewise-linear fall-off, up to ~3 Gy/mm) are evaluated as the
    trilinear interpolant of the grid.
Linear fields (``linear_truth``), along x, y, z and oblique
    The DVH depends only on ``s = n . p``. The volume with ``s >= c`` is the z integral (midpoint
    rule, 0.02 mm; exact ramps for a field along z) of closed-form section areas beyond a line
    (circular segment of the ellipse, trapezoidal law of the parallelogram), on 4001 values of
    ``c``; Dmean from the section centroids, Dmin/Dmax from support functions at the sampled z and
    the exact cap faces. Against a 5x finer z rule and 5x more values of ``c``: < 1e-4 Gy,
    < 2e-4 percentage points, < 2e-4 % of volume.
Radial fields (``quadrature_truth``)
    Stratified quadrature of the trilinear dose: polar (or square) in-plane cells of 0.3 mm (finer
    below 5 cc: 0.14 mm at 0.5 cc) carrying their exact areas, slabs 0.42 of that in z, one
    low-discrepancy point per cell; Dmin/Dmax over the samples, the section boundaries (2048
    points at every slab, plane, z node and cap face), the grid nodes inside the region and the
    in-plane nodes on the cap faces. Measured when writing this file: against 10x more samples
    < 0.01 Gy, < 0.02 percentage points, < 0.002 % of volume on every radial case; against
    ``linear_truth`` on the linear fields of every phantom < 0.025 Gy and < 0.05 percentage points
    (``test_quadrature_truth_agrees_with_linear_truth`` keeps a few of these).

Tolerances (the project's acceptance criteria, never loosened here): 0.2 Gy on Dmean and D98%,
D95%, D50%, D2%; 0.3 Gy on Dmin and Dmax; 1 percentage point on V at the truth's D90%, D50% and
D10%; 1 % on volume. ``pytest -v`` prints the worst error per metric type over this file.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import pytest

from sbrt_qa.dvh import dvh_of_structure
from sbrt_qa.dvh._kernels import trilinear_points
from sbrt_qa.models import DoseGrid, Structure

N_VERTICES = 720
VERTEX_PHASE = 0.0123
MIN_SECTION_MM = 0.05

DOSE_TOL_GY = 0.2
EXTREME_TOL_GY = 0.3
V_TOL_PP = 1.0
VOLUME_TOL_PCT = 1.0
PERCENTS = (98, 95, 50, 2)
V_PERCENTS = (90, 50, 10)

#: worst |engine - truth| per (test group, metric type) over this module: (error, label)
WORST: dict[tuple[str, str], tuple[float, str]] = {}


# --------------------------------------------------------------------------- sections (tracks)

@dataclass(frozen=True)
class Section:
    """Sections of one track at an array of z: ``c + M q`` (disc or square), minus ``|q| < rho``."""

    kind: str  # "disc" or "square"
    cx: np.ndarray
    cy: np.ndarray
    m: np.ndarray  # (n, 2, 2)
    valid: np.ndarray  # (n,) bool
    rho: np.ndarray  # (n,) hole radius in units of the disc (0: no hole)

    @property
    def det(self):
        return np.abs(self.m[:, 0, 0] * self.m[:, 1, 1] - self.m[:, 0, 1] * self.m[:, 1, 0])

    @property
    def area(self):
        """Area of each section, mm^2 (0 where not valid)."""
        if self.kind == "disc":
            a = math.pi * self.det * (1.0 - self.rho ** 2)
        else:
            a = 4.0 * self.det
        return np.where(self.valid, a, 0.0)

    @property
    def min_half_width(self):
        """Smallest singular value of ``M`` (half the section's thinnest width)."""
        return np.array([np.linalg.svd(m, compute_uv=False)[-1] for m in self.m])


def _scaled(m, s):
    return m * np.asarray(s, dtype=np.float64)[:, None, None]


def _disc(cx, cy, m, valid, rho=None):
    n = valid.size
    return Section("disc", np.broadcast_to(np.asarray(cx, float), (n,)).copy(),
                   np.broadcast_to(np.asarray(cy, float), (n,)).copy(), m, valid,
                   np.zeros(n) if rho is None else np.where(valid, rho, 0.0))


class Sphere:
    """Solid sphere, optionally hollow (``r_in``: a concentric spherical hole)."""

    def __init__(self, r, centre, r_in=0.0):
        self.r, self.c, self.r_in = float(r), tuple(map(float, centre)), float(r_in)
        self.z_range = (self.c[2] - self.r, self.c[2] + self.r)

    def at(self, z):
        dz2 = (np.asarray(z, float) - self.c[2]) ** 2
        rr = np.sqrt(np.maximum(self.r ** 2 - dz2, 0.0))
        valid = rr > 0
        rin = np.sqrt(np.maximum(self.r_in ** 2 - dz2, 0.0))
        rho = np.where(valid, rin / np.where(valid, rr, 1.0), 0.0)
        return _disc(self.c[0], self.c[1], _scaled(np.broadcast_to(np.eye(2), (rr.size, 2, 2)),
                                                   rr), valid, rho)

    def implicit(self, x, y, z):
        d = np.sqrt((x - self.c[0]) ** 2 + (y - self.c[1]) ** 2 + (z - self.c[2]) ** 2)
        f = d / self.r - 1.0
        return np.maximum(f, 1.0 - d / self.r_in) if self.r_in > 0 else f


class ZCylinder:
    """Cylinder (or tube, ``r_in``) along z, from ``z0`` to ``z1``."""

    def __init__(self, r, cx, cy, z0, z1, r_in=0.0):
        self.r, self.cx, self.cy, self.r_in = float(r), float(cx), float(cy), float(r_in)
        self.z_range = (float(z0), float(z1))

    def at(self, z):
        z = np.asarray(z, float)
        valid = (z >= self.z_range[0]) & (z <= self.z_range[1])
        m = _scaled(np.broadcast_to(np.eye(2), (z.size, 2, 2)), np.where(valid, self.r, 0.0))
        return _disc(self.cx, self.cy, m, valid, np.full(z.size, self.r_in / self.r))

    def implicit(self, x, y, z):
        d = np.hypot(x - self.cx, y - self.cy)
        f = d / self.r - 1.0
        return np.maximum(f, 1.0 - d / self.r_in) if self.r_in > 0 else f


class Cone:
    """Cone along z: radius ``r_base`` at ``z_base`` down to 0 at ``z_base + height``."""

    def __init__(self, r_base, cx, cy, z_base, height):
        self.r, self.cx, self.cy, self.zb, self.hgt = map(float, (r_base, cx, cy, z_base, height))
        self.z_range = (self.zb, self.zb + self.hgt)

    def at(self, z):
        z = np.asarray(z, float)
        rr = self.r * (1.0 - (z - self.zb) / self.hgt)
        valid = (z >= self.zb) & (rr > 0)
        rr = np.where(valid, rr, 0.0)
        return _disc(self.cx, self.cy, _scaled(np.broadcast_to(np.eye(2), (z.size, 2, 2)), rr),
                     valid)

    def implicit(self, x, y, z):
        return np.hypot(x - self.cx, y - self.cy) / (self.r * (1.0 - (z - self.zb) / self.hgt)) - 1


def rotation(ax_deg, ay_deg, az_deg):
    """``Rz @ Ry @ Rx`` (degrees)."""
    a, b, c = np.radians([ax_deg, ay_deg, az_deg])
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


class Ellipsoid:
    """``centre + A u``, ``|u| <= 1``, ``A = R diag(semi_axes)`` (any orientation).

    The section at height z is the image of the disc ``{r3 . u = z - cz}`` of the unit ball
    (``r3`` the third row of ``A``): centre ``A_xy u0``, ``u0 = t r3 / |r3|^2``, radius
    ``sqrt(1 - t^2 / |r3|^2)`` in the plane orthogonal to ``r3``.
    """

    def __init__(self, semi_axes, rot, centre):
        self.a = np.asarray(rot, float) @ np.diag(semi_axes)
        self.c = np.asarray(centre, float)
        r3 = self.a[2]
        n3 = float(np.linalg.norm(r3))
        self.r3, self.n3 = r3, n3
        e1 = np.cross(r3, [1.0, 0.0, 0.0] if abs(r3[0]) < 0.9 * n3 else [0.0, 1.0, 0.0])
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(r3 / n3, e1)
        self.basis = self.a[:2] @ np.column_stack([e1, e2])  # (2, 2)
        self.z_range = (self.c[2] - n3, self.c[2] + n3)

    def at(self, z):
        t = np.asarray(z, float) - self.c[2]
        rad = np.sqrt(np.maximum(1.0 - (t / self.n3) ** 2, 0.0))
        valid = rad > 0
        u0 = t[:, None] * self.r3[None, :] / self.n3 ** 2  # (n, 3)
        cxy = self.c[:2][None, :] + u0 @ self.a[:2].T
        m = _scaled(np.broadcast_to(self.basis, (t.size, 2, 2)), rad)
        return _disc(cxy[:, 0], cxy[:, 1], m, valid)

    def implicit(self, x, y, z):
        q = np.linalg.solve(self.a, np.stack([x - self.c[0], y - self.c[1], z - self.c[2]]))
        return np.sqrt((q ** 2).sum(axis=0)) - 1.0


class ObliqueCylinder:
    """A circular cylinder of radius ``r`` whose axis is tilted ``tilt`` degrees from z towards
    azimuth ``azimuth``, cut by the axial planes ``z0``, ``z1``: elliptic sections sliding along
    the azimuth."""

    def __init__(self, r, tilt_deg, azimuth_deg, centre, z0, z1):
        self.r = float(r)
        self.t = math.radians(tilt_deg)
        ph = math.radians(azimuth_deg)
        self.u = np.array([math.cos(ph), math.sin(ph)])
        self.v = np.array([-math.sin(ph), math.cos(ph)])
        self.c = np.asarray(centre, float)
        self.z_range = (float(z0), float(z1))

    def at(self, z):
        z = np.asarray(z, float)
        valid = (z >= self.z_range[0]) & (z <= self.z_range[1])
        shift = math.tan(self.t) * (z - self.c[2])
        cxy = self.c[:2][None, :] + shift[:, None] * self.u[None, :]
        m0 = np.column_stack([self.u * self.r / math.cos(self.t), self.v * self.r])
        m = _scaled(np.broadcast_to(m0, (z.size, 2, 2)), valid.astype(float))
        return _disc(cxy[:, 0], cxy[:, 1], m, valid)

    def implicit(self, x, y, z):
        d = np.array([*(math.sin(self.t) * self.u), math.cos(self.t)])
        q = np.stack([x - self.c[0], y - self.c[1], z - self.c[2]])
        along = np.tensordot(d, q, axes=1)
        radial = np.sqrt(((q - along[None] * d.reshape((3,) + (1,) * along.ndim)) ** 2).sum(0))
        return radial / self.r - 1.0


class LyingCylinder:
    """A circular cylinder lying in the axial plane (axis at ``azimuth`` degrees from x, length
    ``length``): rectangular sections of half-width ``sqrt(r^2 - (z - cz)^2)``."""

    def __init__(self, r, length, azimuth_deg, centre):
        self.r, self.hl = float(r), float(length) / 2
        ph = math.radians(azimuth_deg)
        self.u = np.array([math.cos(ph), math.sin(ph)])
        self.v = np.array([-math.sin(ph), math.cos(ph)])
        self.c = np.asarray(centre, float)
        self.z_range = (self.c[2] - self.r, self.c[2] + self.r)

    def at(self, z):
        z = np.asarray(z, float)
        w = np.sqrt(np.maximum(self.r ** 2 - (z - self.c[2]) ** 2, 0.0))
        valid = w > 0
        m = np.empty((z.size, 2, 2))
        m[:, :, 0] = self.hl * self.u[None, :] * valid[:, None]
        m[:, :, 1] = w[:, None] * self.v[None, :]
        return Section("square", np.full(z.size, self.c[0]), np.full(z.size, self.c[1]), m,
                       valid, np.zeros(z.size))

    def implicit(self, x, y, z):
        qx, qy, qz = x - self.c[0], y - self.c[1], z - self.c[2]
        along = qx * self.u[0] + qy * self.u[1]
        across = qx * self.v[0] + qy * self.v[1]
        return np.maximum(np.hypot(across, qz) / self.r - 1.0, np.abs(along) / self.hl - 1.0)


# --------------------------------------------------------------------------- phantoms

@dataclass(frozen=True, eq=False)
class Phantom:
    name: str
    tracks: tuple
    spacing: float
    planes: np.ndarray  # planes holding a contour, ascending

    @property
    def z1(self):
        return float(self.planes[0])

    @property
    def zn(self):
        return float(self.planes[-1])

    def sections(self, z):
        """Sections of the truth region at ``z``: the solid between the end planes, the end
        planes' sections on the caps."""
        zc = np.clip(np.asarray(z, float), self.z1, self.zn)
        return [t.at(zc) for t in self.tracks]

    def implicit(self, x, y, z):
        """The solid's implicit function: < 0 inside, 0 on its surface."""
        return np.min([t.implicit(x, y, z) for t in self.tracks], axis=0)

    def structure(self) -> Structure:
        t = VERTEX_PHASE + 2 * np.pi * np.arange(N_VERTICES) / N_VERTICES
        unit = np.column_stack([np.cos(t), np.sin(t)])
        square = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
        polys = []
        for z in self.planes:
            for s in (tr.at(np.array([z])) for tr in self.tracks):
                if not s.valid[0] or s.min_half_width[0] < MIN_SECTION_MM:
                    continue
                c, m = np.array([s.cx[0], s.cy[0]]), s.m[0]
                ref = unit if s.kind == "disc" else square
                polys.append((z, c + ref @ m.T))
                if s.rho[0] * s.min_half_width[0] >= MIN_SECTION_MM:
                    polys.append((z, c + (s.rho[0] * unit[::-1]) @ m.T))
        return Structure.from_polygons(self.name, polys)

    @property
    def bounds_mm(self):
        """Bounding box of the truth region (from the sections), mm."""
        z = np.linspace(self.z1, self.zn, 801)
        lo, hi = np.full(2, np.inf), np.full(2, -np.inf)
        for s in self.sections(z):
            ext = np.abs(s.m).sum(axis=2)  # half-extents along x, y (exact for squares)
            if s.kind == "disc":
                ext = np.sqrt((s.m ** 2).sum(axis=2))
            c = np.column_stack([s.cx, s.cy])
            ok = s.valid
            lo = np.minimum(lo, (c - ext)[ok].min(axis=0))
            hi = np.maximum(hi, (c + ext)[ok].max(axis=0))
        h = self.spacing / 2
        return np.array([[lo[0], hi[0]], [lo[1], hi[1]], [self.z1 - h, self.zn + h]])

    def contains(self, x, y, z):
        """Inside the truth region (points on the boundary count)."""
        x, y, z = (np.asarray(v, float).ravel() for v in (x, y, z))
        h = self.spacing / 2
        inside = np.zeros(x.size, dtype=bool)
        zin = (z >= self.z1 - h) & (z <= self.zn + h)
        for s in self.sections(z):
            det = s.m[:, 0, 0] * s.m[:, 1, 1] - s.m[:, 0, 1] * s.m[:, 1, 0]
            ok = s.valid & (np.abs(det) > 0)
            d = np.where(ok, det, 1.0)
            px, py = x - s.cx, y - s.cy
            qx = (s.m[:, 1, 1] * px - s.m[:, 0, 1] * py) / d
            qy = (-s.m[:, 1, 0] * px + s.m[:, 0, 0] * py) / d
            if s.kind == "disc":
                r2 = qx * qx + qy * qy
                inn = (r2 <= 1.0) & (r2 >= s.rho ** 2)
            else:
                inn = (np.abs(qx) <= 1.0) & (np.abs(qy) <= 1.0)
            inside |= ok & inn
        return inside & zin


def lattice_planes(z_range, spacing, phase):
    lo, hi = z_range
    k0 = math.ceil((lo - phase) / spacing - 1e-9)
    k1 = math.floor((hi - phase) / spacing + 1e-9)
    return np.round(phase + spacing * np.arange(k0, k1 + 1), 6)


def make_phantom(name, tracks, spacing, phase) -> Phantom:
    lo = min(t.z_range[0] for t in tracks)
    hi = max(t.z_range[1] for t in tracks)
    keep = []
    for z in lattice_planes((lo, hi), spacing, phase):
        for t in tracks:
            s = t.at(np.array([z]))
            if s.valid[0] and s.min_half_width[0] >= MIN_SECTION_MM:
                keep.append(z)
                break
    planes = np.array(keep)
    assert np.allclose(np.diff(planes), spacing), "planes must be contiguous"
    return Phantom(name, tuple(tracks), float(spacing), planes)


C = (1.3, -2.1, 0.7)


def _phantoms() -> dict[str, tuple[Phantom, tuple]]:
    """name -> (phantom, dose grid spacing x/y/z)."""
    cx, cy, cz = C
    R12 = 12.0
    r_half_cc = (3 * 500.0 / (4 * math.pi)) ** (1 / 3)  # 0.5 cc: r = 4.92 mm
    out = {
        # planes miss the poles: the first 0.3 mm above the bottom pole, the last 1.7 mm below
        # the top one
        "sphere_r12_sp2_offpole": (make_phantom("Sphere", [Sphere(R12, C)], 2.0, cz + 0.3),
                                   (2.5, 2.5, 2.5)),
        # planes through the centre and both poles; the poles hold no contour (a point), so
        # the end planes are one spacing inside the sphere
        "sphere_r12_sp3_poles": (make_phantom("Sphere", [Sphere(R12, C)], 3.0, cz),
                                 (3.0, 3.0, 3.0)),
        # a tiny end contour 0.03 mm below the top pole (r 0.85 mm), the bottom plane 0.97 mm
        # above the bottom pole
        "sphere_r12_sp1_nearpole": (make_phantom("Sphere", [Sphere(R12, C)], 1.0, cz + 0.97),
                                    (2.0, 2.0, 2.0)),
        "cylinder_z": (make_phantom("Cylinder", [ZCylinder(10.0, cx, cy, cz - 15, cz + 15)],
                                    2.0, cz), (2.5, 2.0, 3.0)),
        # base (r 15) and apex on planes; the apex holds no contour, so the last contour
        # (r 1.5 mm) is 3 mm below it
        "cone_z": (make_phantom("Cone", [Cone(15.0, cx, cy, cz - 15, 30.0)], 3.0, cz),
                   (2.0, 2.5, 3.0)),
        "tube": (make_phantom("Tube", [ZCylinder(14.0, cx, cy, cz - 12, cz + 12, r_in=6.0)], 2.0,
                              cz + 0.5), (2.5, 2.5, 2.0)),
        # two spheres in one ROI on the same planes (radii 8 and 7.8: both have contours from
        # -7.7 to +6.3 mm about the centre)
        "islands": (make_phantom("Islands", [Sphere(8.0, (cx - 10, cy - 4, cz)),
                                             Sphere(7.8, (cx + 9, cy + 5, cz))], 2.0, cz + 0.3),
                    (3.0, 3.0, 2.0)),
        "sphere_0.5cc_sp1": (make_phantom("Sphere 0.5cc", [Sphere(r_half_cc, C)], 1.0, cz + 0.4),
                             (2.0, 2.0, 2.0)),
        "sphere_0.5cc_sp2": (make_phantom("Sphere 0.5cc", [Sphere(r_half_cc, C)], 2.0, cz + 0.4),
                             (2.0, 2.0, 2.0)),
        "sphere_0.5cc_sp3": (make_phantom("Sphere 0.5cc", [Sphere(r_half_cc, C)], 3.0, cz),
                             (2.5, 2.5, 2.5)),
        "ellipsoid_oblique": (make_phantom("Ellipsoid", [Ellipsoid((15.0, 9.0, 6.0),
                                                                   rotation(25, 40, 30), C)],
                                           2.0, cz + 0.45), (2.5, 2.5, 2.5)),
        "cylinder_oblique": (make_phantom("Oblique cylinder",
                                          [ObliqueCylinder(8.0, 35.0, 20.0, C, cz - 12, cz + 12)],
                                          2.0, cz + 0.3), (2.5, 2.5, 2.5)),
        "cylinder_lying": (make_phantom("Lying cylinder", [LyingCylinder(9.0, 30.0, 30.0, C)],
                                        3.0, cz + 0.5), (3.0, 3.0, 3.0)),
        "islands_unequal": (make_phantom("Islands", [Sphere(9.0, (cx - 11, cy - 3, cz)),
                                                     Sphere(5.5, (cx + 10, cy + 4, cz + 1.5))],
                                         2.0, cz + 0.3), (2.5, 2.5, 2.5)),
        "shell": (make_phantom("Shell", [Sphere(14.0, C, r_in=7.0)], 3.0, cz + 1.0),
                  (3.0, 3.0, 3.0)),
    }
    return out


@functools.lru_cache(maxsize=None)
def phantoms():
    return _phantoms()


# --------------------------------------------------------------------------- dose fields

@dataclass(frozen=True)
class Linear:
    """``d0 + g (n . p - s0)``, ``n`` a unit vector."""

    n: tuple
    g: float
    d0: float
    s0: float

    def __call__(self, x, y, z):
        return self.d0 + self.g * (self.n[0] * x + self.n[1] * y + self.n[2] * z - self.s0)


@dataclass(frozen=True)
class Gaussian:
    """``d0 exp(-(r / w)^2)``."""

    centre: tuple
    d0: float = 40.0
    w: float = 15.0

    def __call__(self, x, y, z):
        r2 = sum((v - c) ** 2 for v, c in zip((x, y, z), self.centre))
        return self.d0 * np.exp(-r2 / self.w ** 2)


@dataclass(frozen=True)
class PiecewiseRadial:
    """``d0`` within ``r_flat``, then falling ``slope`` Gy/mm, never below 0."""

    centre: tuple
    d0: float = 45.0
    r_flat: float = 3.0
    slope: float = 2.5

    def __call__(self, x, y, z):
        r = np.sqrt(sum((v - c) ** 2 for v, c in zip((x, y, z), self.centre)))
        return np.maximum(self.d0 - self.slope * np.maximum(r - self.r_flat, 0.0), 0.0)


DIRECTIONS = {"x": (1.0, 0.0, 0.0), "y": (0.0, -1.0, 0.0), "z": (0.0, 0.0, 1.0),
              "oblique": tuple(np.array([0.6, 0.48, -0.64]) / np.linalg.norm([0.6, 0.48, -0.64]))}


def linear_field(p: Phantom, direction: str) -> Linear:
    """10-40 Gy over the structure, at most 3 Gy/mm."""
    n = np.asarray(DIRECTIONS[direction])
    b = p.bounds_mm
    corners = np.array([[b[0, i], b[1, j], b[2, k]] for i in (0, 1) for j in (0, 1)
                        for k in (0, 1)])
    s = corners @ n
    g = min(3.0, 30.0 / (s.max() - s.min()))
    return Linear(tuple(n), g, 25.0, float(0.5 * (s.max() + s.min())))


def radial_field(p: Phantom, kind: str):
    b = p.bounds_mm
    centre = tuple(b.mean(axis=1) + np.array([2.1, -1.7, 1.3]))
    size = float(np.max(b[:, 1] - b[:, 0]))
    if kind == "gaussian":
        # steepest 0.86 d0 / w: 2.3 Gy/mm at w 15 mm, 2.9 Gy/mm for the small ones (w 12 mm)
        return Gaussian(centre, 40.0, 15.0 if size > 15 else 12.0)
    if kind == "steep":
        # an SBRT fall-off: 5 Gy/mm straight out from near the middle, 10 Gy at the farthest
        # corner of the structure
        far = np.maximum(np.abs(b[:, 0] - centre), np.abs(b[:, 1] - centre))
        r_max = float(np.linalg.norm(far))
        return PiecewiseRadial(centre, 10.0 + 5.0 * r_max, 0.0, 5.0)
    return PiecewiseRadial(centre, 45.0, 3.0 if size > 15 else 1.0, 2.5 if size > 15 else 3.0)


def dose_grid(fn, p: Phantom, spacing, margin=1.5, shift=(0.37, -0.61, 0.23)) -> DoseGrid:
    """``fn`` sampled on nodes ``shift + k spacing`` covering the truth region plus ``margin``."""
    b = p.bounds_mm
    axes = []
    for i in range(3):
        k0 = math.floor((b[i, 0] - margin - shift[i]) / spacing[i])
        k1 = math.ceil((b[i, 1] + margin - shift[i]) / spacing[i])
        axes.append(np.round(shift[i] + spacing[i] * np.arange(k0, k1 + 1), 6))
    zz, yy, xx = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    dose = np.ascontiguousarray(fn(xx, yy, zz), dtype=np.float64)
    return DoseGrid(dose, axes[0], axes[1], axes[2])


def trilinear(grid: DoseGrid):
    """The trilinear interpolant of the grid as a vectorised ``fn(x, y, z)`` for points inside
    the node hull (checked). Evaluated by the engine's ``trilinear_points`` kernel for speed; it is
    compared with scipy's ``RegularGridInterpolator`` in ``test_trilinear_helper_matches_scipy``."""
    def fn(x, y, z):
        x, y, z = np.broadcast_arrays(*(np.asarray(v, float) for v in (x, y, z)))
        pts = np.column_stack([x.ravel(), y.ravel(), z.ravel()])
        out = trilinear_points(grid.dose_gy, grid.x_mm, grid.y_mm, grid.z_mm, pts, np.nan)
        if np.isnan(out).any():
            raise ValueError("a truth sample lies outside the dose grid's node hull")
        return out.reshape(x.shape)
    return fn


# --------------------------------------------------------------------------- truth

@dataclass
class Truth:
    """A cumulative DVH: ``above_cc[i]`` receives at least ``dose_gy[i]`` (ascending doses)."""

    volume_cc: float
    dmin_gy: float
    dmax_gy: float
    dmean_gy: float
    dose_gy: np.ndarray
    above_cc: np.ndarray

    def v_percent(self, d):
        return 100.0 * float(np.interp(d, self.dose_gy, self.above_cc)) / self.volume_cc

    def d_percent(self, p):
        v = p / 100.0 * self.volume_cc
        return float(np.interp(v, self.above_cc[::-1], self.dose_gy[::-1]))


def z_slabs(p: Phantom, dz):
    """Midpoints and widths of slabs of at most ``dz`` over the truth region (caps included)."""
    h = p.spacing / 2
    mids, widths = [], []
    for a, b in ((p.z1 - h, p.z1), (p.z1, p.zn), (p.zn, p.zn + h)):
        if b <= a:
            continue
        n = max(1, math.ceil((b - a) / dz - 1e-9))
        e = np.linspace(a, b, n + 1)
        mids.append(0.5 * (e[1:] + e[:-1]))
        widths.append(np.diff(e))
    return np.concatenate(mids), np.concatenate(widths)


def _disc_fraction_above(t):
    """Fraction of the unit disc with ``q . e >= t``."""
    t = np.clip(t, -1.0, 1.0)
    return (np.arccos(t) - t * np.sqrt(1.0 - t * t)) / math.pi


def _square_fraction_above(a, b, t):
    """Fraction of ``[-1, 1]^2`` with ``a q1 + b q2 >= t`` (``a, b >= 0``): the trapezoidal law
    of a sum of two uniforms, by positive parts."""
    a = np.maximum(a, 1e-12)
    b = np.maximum(b, 1e-12)
    pp = lambda v: np.maximum(v, 0.0) ** 2  # noqa: E731
    f = (pp(a + b - t) - pp(a - b - t) - pp(b - a - t) + pp(-a - b - t)) / (8.0 * a * b)
    return np.clip(f, 0.0, 1.0)


def linear_truth(p: Phantom, f: Linear, *, dz=0.02, n_nodes=4001) -> Truth:
    """Exact-to-quadrature DVH of a linear field over the truth region (module docstring)."""
    n = np.asarray(f.n, float)
    nxy, nz = n[:2], float(n[2])
    axy = float(np.linalg.norm(nxy))
    zm, w = z_slabs(p, dz)
    secs = p.sections(zm)
    h = p.spacing / 2
    # support of s = n . p: per slab and track, centre and half-width (+ the exact cap faces)
    cap_z = np.array([p.z1 - h, p.z1, p.zn, p.zn + h])
    cap_secs = p.sections(cap_z)
    s_lo, s_hi = np.inf, -np.inf
    vol = 0.0
    moment = 0.0
    parts = []
    for sec, cs in zip(secs, cap_secs):
        area = sec.area
        sc = sec.cx * nxy[0] + sec.cy * nxy[1] + nz * zm
        vol += float(np.dot(w, area))
        moment += float(np.dot(w * area, sc))
        mtn = np.einsum("kij,i->kj", sec.m, nxy)  # (a, b) = M^T n_xy
        if sec.kind == "disc":
            half = np.sqrt((mtn ** 2).sum(axis=1))
        else:
            half = np.abs(mtn).sum(axis=1)
        if axy < 1e-12:
            zh = 0.5 * w
        else:
            zh = np.zeros_like(w)
        ok = sec.valid
        s_lo = min(s_lo, float((sc - half - zh)[ok].min()))
        s_hi = max(s_hi, float((sc + half + zh)[ok].max()))
        # exact cap faces
        cmtn = np.einsum("kij,i->kj", cs.m, nxy)
        chalf = (np.sqrt((cmtn ** 2).sum(axis=1)) if cs.kind == "disc"
                 else np.abs(cmtn).sum(axis=1))
        csc = cs.cx * nxy[0] + cs.cy * nxy[1] + nz * cap_z
        if cs.valid.any():
            s_lo = min(s_lo, float((csc - chalf)[cs.valid].min()))
            s_hi = max(s_hi, float((csc + chalf)[cs.valid].max()))
        parts.append((sec, area, sc, mtn, half))
    c = np.linspace(s_lo, s_hi, n_nodes)
    above = np.zeros(n_nodes)
    for sec, area, sc, mtn, half in parts:
        ok = sec.valid & (area > 0)
        if not ok.any():
            continue
        wa = (w * area)[ok]
        scv = sc[ok]
        if axy < 1e-12:  # along z: each slab spreads uniformly over its extent
            frac = np.clip((scv[:, None] + 0.5 * w[ok][:, None] - c[None, :]) / w[ok][:, None],
                           0.0, 1.0)
            above += wa @ frac
            continue
        if sec.kind == "disc":
            r_out = half[ok]
            rho = sec.rho[ok]
            full = math.pi * sec.det[ok]
            t = (c[None, :] - scv[:, None]) / r_out[:, None]
            a_out = full[:, None] * _disc_fraction_above(t)
            has = rho > 0
            a_in = np.zeros_like(a_out)
            if has.any():
                t_in = t[has] / rho[has][:, None]
                a_in[has] = (full[has] * rho[has] ** 2)[:, None] * _disc_fraction_above(t_in)
            frac_area = a_out - a_in
        else:
            ab = np.abs(mtn[ok])
            frac_area = (4.0 * sec.det[ok])[:, None] * _square_fraction_above(
                ab[:, 0:1], ab[:, 1:2], c[None, :] - scv[:, None])
        above += w[ok] @ frac_area
    above = np.minimum.accumulate(np.clip(above, 0.0, vol))
    above[0] = vol
    doses = f.d0 + f.g * (c - f.s0)
    return Truth(volume_cc=vol / 1000.0, dmin_gy=float(doses[0]), dmax_gy=float(doses[-1]),
                 dmean_gy=f.d0 + f.g * (moment / vol - f.s0), dose_gy=doses,
                 above_cc=above / 1000.0)


_R3 = (0.8191725133961645, 0.6710436067037893, 0.5497004779019703)  # Roberts' R3 sequence


def _reference_cells(sec: Section, k: int, cell_mm: float):
    """Stratified in-plane points of section ``k``: reference coordinates (q1, q2), weights."""
    m = sec.m[k]
    sv = np.linalg.svd(m, compute_uv=False)
    if sec.kind == "disc":
        rho = float(sec.rho[k])
        n_t = max(32, int(math.ceil(2 * math.pi * sv[0] / cell_mm)))
        n_r = max(2, int(math.ceil((1.0 - rho) * sv[0] / cell_mm)))
        dt = 2 * math.pi / n_t
        re = np.linspace(rho, 1.0, n_r + 1)
        ra = np.repeat(re[:-1], n_t)
        rb = np.repeat(re[1:], n_t)
        ti = np.tile(np.arange(n_t), n_r)
        wt = 0.5 * (rb * rb - ra * ra) * dt
        return ("disc", ra, rb, ti * dt, dt), wt
    # the square's sides are the columns of m: cells about cell_mm along each
    n1 = max(2, int(math.ceil(2 * np.linalg.norm(m[:, 0]) / cell_mm)))
    n2 = max(2, int(math.ceil(2 * np.linalg.norm(m[:, 1]) / cell_mm)))
    i1 = np.repeat(np.arange(n1), n2)
    i2 = np.tile(np.arange(n2), n1)
    wt = np.full(i1.size, 4.0 / (n1 * n2))
    return ("square", i1, i2, n1, n2), wt


def quadrature_truth(p: Phantom, grid: DoseGrid, *, cell_mm=None, boundary_points=2048,
                     resolution_gy=0.002) -> Truth:
    """DVH of the grid's trilinear dose over the truth region by stratified quadrature.

    ``cell_mm`` (in-plane cell size; slabs are 0.42 of it) defaults to 0.3 mm for 5 cc and over,
    finer for smaller volumes (0.14 mm at 0.5 cc), so that every case has >= ~0.5 M samples.
    """
    fn = trilinear(grid)
    if cell_mm is None:
        zc, wc = z_slabs(p, 0.5)
        vol_cc = sum(float(np.dot(wc, sec.area)) for sec in p.sections(zc)) / 1000.0
        cell_mm = float(np.clip(0.3 * (vol_cc / 5.0) ** (1 / 3), 0.12, 0.3))
    dz = 0.42 * cell_mm
    zm, w = z_slabs(p, dz)
    z_lo = zm - 0.5 * w
    secs = p.sections(zm)
    xs, ys, zs, ws = [], [], [], []
    counter = 0
    for k in range(zm.size):
        for sec in secs:
            if not sec.valid[k] or sec.area[k] <= 0:
                continue
            ref, wt = _reference_cells(sec, k, cell_mm)
            npt = wt.size
            idx = counter + np.arange(1, npt + 1)
            counter += npt
            u = np.mod(idx * _R3[0], 1.0)
            v = np.mod(idx * _R3[1], 1.0)
            s = np.mod(idx * _R3[2], 1.0)
            if ref[0] == "disc":
                _, ra, rb, t0, dt = ref
                r = np.sqrt(ra * ra + u * (rb * rb - ra * ra))
                t = t0 + v * dt
                q = np.column_stack([r * np.cos(t), r * np.sin(t)])
            else:
                _, i1, i2, n1, n2 = ref
                q = np.column_stack([-1.0 + 2.0 * (i1 + u) / n1, -1.0 + 2.0 * (i2 + v) / n2])
            pts = np.array([sec.cx[k], sec.cy[k]]) + q @ sec.m[k].T
            det = abs(np.linalg.det(sec.m[k]))
            scale = sec.area[k] / (det * wt.sum())  # exact section area (== 1 up to rounding)
            xs.append(pts[:, 0])
            ys.append(pts[:, 1])
            zs.append(z_lo[k] + s * w[k])
            ws.append(wt * det * scale * w[k])
    x, y, z, wgt = (np.concatenate(a) for a in (xs, ys, zs, ws))
    dose = fn(x, y, z)
    vol = float(wgt.sum())
    dmean = float(np.dot(dose, wgt) / vol)
    # extremes: samples, boundaries, grid nodes inside, in-plane nodes on the cap faces
    ext = [dose.min(), dose.max()]
    h = p.spacing / 2
    zb = np.concatenate([zm, [p.z1, p.zn],
                         grid.z_mm[(grid.z_mm > p.z1 - h) & (grid.z_mm < p.zn + h)],
                         [p.z1 - h, p.zn + h]])
    th = 2 * np.pi * (np.arange(boundary_points) + 0.5) / boundary_points
    ring = np.column_stack([np.cos(th), np.sin(th)])
    per = boundary_points // 4
    tt = -1.0 + 2.0 * (np.arange(per) + 0.5) / per
    one = np.ones(per)
    box = np.concatenate([np.column_stack([tt, -one]), np.column_stack([one, tt]),
                          np.column_stack([-tt, one]), np.column_stack([-one, -tt]),
                          [[-1, -1], [1, -1], [1, 1], [-1, 1]]])
    bx, by, bz = [], [], []
    for sec in p.sections(zb):
        ok = sec.valid
        refs = [box] if sec.kind == "square" else [ring] + (
            [None] if (sec.rho[ok] > 0).any() else [])
        for ref in refs:
            if ref is None:  # holes: the inner circles
                ok = sec.valid & (sec.rho > 0)
                ref_k = sec.rho[ok][:, None, None] * ring[None]
            else:
                ref_k = np.broadcast_to(ref, (int(ok.sum()),) + ref.shape)
            pts = np.einsum("kpj,kij->kpi", ref_k, sec.m[ok])
            bx.append((pts[:, :, 0] + sec.cx[ok][:, None]).ravel())
            by.append((pts[:, :, 1] + sec.cy[ok][:, None]).ravel())
            bz.append(np.repeat(zb[ok], ref_k.shape[1]))
    d = fn(np.concatenate(bx), np.concatenate(by), np.concatenate(bz))
    ext += [d.min(), d.max()]
    zz, yy, xx = np.meshgrid(grid.z_mm, grid.y_mm, grid.x_mm, indexing="ij")
    inside = p.contains(xx, yy, zz).reshape(xx.shape)
    if inside.any():
        ext += [grid.dose_gy[inside].min(), grid.dose_gy[inside].max()]
    for zf in (p.z1 - h, p.zn + h):
        yy2, xx2 = np.meshgrid(grid.y_mm, grid.x_mm, indexing="ij")
        zz2 = np.full(xx2.shape, zf)
        ins = p.contains(xx2, yy2, zz2)
        if ins.any():
            d = fn(xx2.ravel()[ins], yy2.ravel()[ins], zz2.ravel()[ins])
            ext += [d.min(), d.max()]
    dmin, dmax = float(min(ext)), float(max(ext))
    lo = math.floor(dose.min() / resolution_gy) * resolution_gy
    nb = int(math.ceil((dose.max() - lo) / resolution_gy)) + 1
    idx = np.clip(((dose - lo) / resolution_gy).astype(np.int64), 0, nb - 1)
    per_bin = np.bincount(idx, weights=wgt, minlength=nb)
    edges = lo + resolution_gy * np.arange(nb + 1)
    above = np.append(np.cumsum(per_bin[::-1])[::-1], 0.0)
    return Truth(volume_cc=vol / 1000.0, dmin_gy=dmin, dmax_gy=dmax, dmean_gy=dmean,
                 dose_gy=edges, above_cc=above / 1000.0)


# --------------------------------------------------------------------------- cases

LINEAR = ("linear_x", "linear_y", "linear_z", "linear_oblique")
RADIAL = ("gaussian", "piecewise")
FIELDS = LINEAR + RADIAL
#: phantoms with an island or a hole that ends on planes inside [z_1, z_n]
ENDING_INSIDE = ("islands_unequal", "shell")


@functools.lru_cache(maxsize=None)
def case(shape: str, field: str):
    """``(phantom, grid, truth)`` of one shape in one field (cached)."""
    p, spacing = phantoms()[shape]
    if field.startswith("linear_"):
        f = linear_field(p, field[len("linear_"):])
        grid = dose_grid(f, p, spacing)
        truth = linear_truth(p, f)
    else:
        f = radial_field(p, field)
        grid = dose_grid(f, p, spacing)
        truth = quadrature_truth(p, grid)
    return p, grid, truth


def compare(dvh, truth: Truth) -> dict[str, float]:
    """``{metric: engine - truth}``: volume in %, V in percentage points, doses in Gy."""
    cov = dvh.covered_volume_cc
    e = {"volume[%]": 100.0 * (dvh.volume_cc - truth.volume_cc) / truth.volume_cc,
         "Dmean": dvh.dmean_gy - truth.dmean_gy,
         "Dmin": dvh.dmin_gy - truth.dmin_gy,
         "Dmax": dvh.dmax_gy - truth.dmax_gy}
    for pc in PERCENTS:
        e[f"D{pc}%"] = dvh.dose_at_volume_gy(pc / 100.0 * cov) - truth.d_percent(pc)
    for pc in V_PERCENTS:
        d = truth.d_percent(pc)
        e[f"V{d:.2f}Gy[%]"] = 100.0 * dvh.volume_at_dose_cc(d) / cov - truth.v_percent(d)
    return e


def _kind(metric):
    """Metric type and tolerance."""
    if metric.startswith("volume"):
        return "volume [%]", VOLUME_TOL_PCT
    if metric.startswith("V"):
        return "V [pp]", V_TOL_PP
    if metric in ("Dmin", "Dmax"):
        return "Dmin/Dmax [Gy]", EXTREME_TOL_GY
    return "Dmean/Dx% [Gy]", DOSE_TOL_GY


def assert_close(dvh, truth: Truth, label: str, group: str = "main"):
    """Assert every metric within tolerance (the message lists all errors); record the worst."""
    errors = compare(dvh, truth)
    bad = []
    for k, err in errors.items():
        kind, tol = _kind(k)
        key = (group, kind)
        if key not in WORST or abs(err) > abs(WORST[key][0]):
            WORST[key] = (err, f"{label} {k}")
        if not abs(err) <= tol:
            bad.append(f"{k}: {err:+.4f} (tolerance {tol})")
    detail = ", ".join(f"{k} {v:+.3f}" for k, v in errors.items())
    assert not bad, f"{label}: {'; '.join(bad)}\n  all errors: {detail}"
    return errors


@pytest.fixture(scope="module", autouse=True)
def _worst_summary(request):
    yield
    rep = request.config.pluginmanager.get_plugin("terminalreporter")
    if rep is None or not WORST or request.config.option.verbose <= 0:
        return
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        rep.write_line("")
        rep.write_sep("-", "default (interpolated) DVH: worst |engine - analytic truth| per metric")
        for (group, kind), (err, label) in sorted(WORST.items()):
            rep.write_line(f"{group:14s} {kind:15s} {err:+.4f}  ({label})")


def engine_dvh(p: Phantom, grid: DoseGrid):
    """The engine's DVH in its default mode."""
    dvh = dvh_of_structure(p.structure(), grid)
    assert not [f for f in dvh.findings if f.code == "structure_outside_dose_grid"]
    assert dvh.covered_volume_cc == pytest.approx(dvh.volume_cc, rel=1e-9)
    return dvh


# --------------------------------------------------------------------------- the engine

MAIN = [(shape, field) for shape in _phantoms() if shape not in ENDING_INSIDE
        for field in FIELDS]


@pytest.mark.parametrize("shape,field", MAIN)
def test_default_dvh_matches_the_analytic_truth(shape, field):
    p, grid, truth = case(shape, field)
    assert_close(engine_dvh(p, grid), truth, f"{shape} {field}")


@pytest.mark.parametrize("shape,field", [(s, f) for s in ENDING_INSIDE for f in FIELDS])
def test_islands_ending_inside(shape, field):
    """An island (a 5.5 mm sphere beside a 9 mm one) or a hole (a hollow sphere, 14/7 mm) whose
    own first and last contours lie inside the structure's [z_1, z_n]: the truth is the analytic
    solid there, so the island or the hole ends where the sphere does (between its last contour
    and the next plane), not half a spacing beyond its last contour. Contours alone do not say
    where that is, so this asks more of the interpolation than the Nelms benchmark does."""
    p, grid, truth = case(shape, field)
    assert_close(engine_dvh(p, grid), truth, f"{shape} {field}", group="ending inside")


STEEP = [(shape, "steep") for shape in _phantoms() if shape not in ENDING_INSIDE]


@pytest.mark.parametrize("shape,field", STEEP)
def test_default_dvh_in_a_steep_fall_off(shape, field):
    """Every shape in a 5 Gy/mm radial fall-off (SBRT edges reach 3-6 Gy/mm): the cold and hot
    tails come from the boundary's elements, whose extent across a scan row's band spreads
    ``gradient x band`` of dose."""
    p, grid, truth = case(shape, field)
    assert_close(engine_dvh(p, grid), truth, f"{shape} {field}", group="steep")


@pytest.mark.parametrize("slope", [4.0, 6.0])
def test_target_edge_in_a_steep_fall_off(slope):
    """A 30 mm target whose dose falls ``slope`` Gy/mm from its middle: D98 and D95 sit on the
    outermost 0.1 to 0.25 mm of it. An element that ends on an oblique outline is a trapezoid
    across its row band, and the column under the interpolated surface has a sloping top: as
    boxes (the row-centre section held across the band) they spread their dose beyond the
    outline: D98 came out 0.14 Gy cold at 4 Gy/mm and 0.21 Gy at 6 Gy/mm, Dmean 0.016 and
    0.025 Gy. Held to 0.01 mm of boundary (0.01 Gy per Gy/mm); the trapezoids and sloping tops
    give 0.014 and 0.021 Gy."""
    p = make_phantom("Sphere", [Sphere(15.0, C)], 2.0, C[2] + 0.3)
    f = PiecewiseRadial(tuple(np.array(C) + [0.2, -0.3, 0.1]), 10.0 + 17.0 * slope, 0.0, slope)
    grid = dose_grid(f, p, (2.5, 2.5, 2.5))
    e = compare(engine_dvh(p, grid), quadrature_truth(p, grid))
    tol = 0.01 * slope
    assert abs(e["D98%"]) <= tol and abs(e["D95%"]) <= tol, e
    assert abs(e["Dmean"]) <= 0.0025 * slope, e


@pytest.mark.parametrize("r,length,spacing,azimuth", [(9.0, 30.0, 3.0, 30.0),
                                                       (6.0, 12.0, 2.0, 30.0),
                                                       (5.0, 10.0, 2.0, 30.0),
                                                       (4.0, 8.0, 2.0, 60.0)])
def test_flat_ends_between_planes(r, length, spacing, azimuth):
    """A cylinder lying in the axial plane ends in flat faces parallel to z: on every plane its
    section ends on the same two lines. Between two planes the section's rows beyond the smaller
    one are columns under the interpolated surface; where such a column meets a flat end, the
    face holds it at full height (the end edges are walls, ``_walls``). Interpolating the signed
    distance to the whole outline instead rounded the face off, in a 5 Gy/mm fall-off: volume
    0.26 / 0.54 / 0.74 / 1.10 % low, D95 0.001 / 0.091 / 0.095 / 0.117 Gy high, Dmean 0.019 /
    0.047 / 0.053 / 0.058 Gy high. With walls: volume 0.05 / 0.20 / 0.34 / 0.57 % low (what is
    left comes from the round sides, sampled by two to four planes), D95 within 0.03 Gy."""
    p = make_phantom("Lying cylinder", [LyingCylinder(r, length, azimuth, C)], spacing,
                     C[2] + 0.5)
    f = PiecewiseRadial(tuple(np.array(C) + [0.2, -0.3, 0.1]), 10.0 + 5.0 * r, 0.0, 5.0)
    grid = dose_grid(f, p, (2.5, 2.5, 2.5))
    e = compare(engine_dvh(p, grid), quadrature_truth(p, grid))
    assert abs(e["volume[%]"]) <= 0.6, e
    assert abs(e["D95%"]) <= 0.03 and abs(e["D98%"]) <= 0.03, e
    assert abs(e["Dmean"]) <= 0.025, e


@pytest.mark.parametrize("spacing,phase", [(3.0, 0.5), (3.0, 0.25), (2.5, 0.5), (2.0, 0.5)])
@pytest.mark.parametrize("field", ["x", "radial"])
def test_sphere_bulges_between_planes(spacing, phase, field):
    """A 0.5 cc sphere whose equator lies between two planes (``phase`` of a spacing above the
    lower one): between them its section is larger than on either, so the surface passes beyond
    both outlines (``_bulge``). Treating a point outside both planes as outside throughout lost
    that volume: at 3 mm spacing with the equator half-way, 2.66 % of the volume, D98 0.27 Gy and
    Dmin/Dmax 0.70 Gy off in a 1 Gy/mm field; now 0.28 %, 0.007 Gy and 0.04 Gy (a quarter of the
    way: 0.79 -> 0.53 %; 2.5 mm: 1.55 -> 0.08 %; 2 mm: 0.82 -> 0.08 %)."""
    r = (3 * 500.0 / (4 * math.pi)) ** (1 / 3)
    p = make_phantom("Sphere 0.5cc", [Sphere(r, C)], spacing, C[2] + phase * spacing)
    f = (linear_field(p, "x") if field == "x" else
         PiecewiseRadial(tuple(np.array(C) + [0.2, -0.3, 0.1]), 10.0 + 5.0 * r, 0.0, 5.0))
    grid = dose_grid(f, p, (2.5, 2.5, 2.5))
    e = compare(engine_dvh(p, grid), quadrature_truth(p, grid))
    assert abs(e["volume[%]"]) <= 0.6, e
    assert abs(e["D98%"]) <= 0.08 and abs(e["D95%"]) <= 0.06, e
    assert abs(e["Dmin"]) <= 0.1 and abs(e["Dmax"]) <= 0.1, e


def test_no_bulge_towards_another_part():
    """A small part on two planes only, the plane below holding another, larger part 30 mm away:
    the plane below shows no body near the small one, so it gives no curvature there
    (``_bulge_at``). Taking it as one bulged the small part over the gap: +14.9 % of the ROI's
    volume (1.7 times the small sphere's). What is left, +1.95 %, is the small sphere drawn by
    two contours (nothing says where it is round between them)."""
    cx, cy, cz = C
    small = Sphere(2.6, (cx, cy, cz))
    large = Sphere(6.0, (cx + 30.0, cy, cz - 10.3))
    p = make_phantom("Two parts", [small, large], 3.0, cz - 1.5)
    grid = dose_grid(linear_field(p, "x"), p, (2.5, 2.5, 2.5))
    e = compare(engine_dvh(p, grid), quadrature_truth(p, grid))
    assert abs(e["volume[%]"]) <= 2.5, e


@pytest.mark.parametrize("r_out,r_in,spacing,phase", [
    (8.82, 3.75, 2.0, 0.81), (10.81, 4.22, 2.5, 0.80), (12.0, 5.0, 3.0, 0.9)])
def test_hollow_sphere_near_its_hole_poles(r_out, r_in, spacing, phase):
    """A hollow sphere in a 5 Gy/mm radial field peaking in its hole. Near the hole's poles a
    point in the one-plane part next to the hole is nearest to the hole on plane b but to the
    outer outline, far off, on the plane beyond (the hole has closed): that value belongs to
    another surface and gave the hole's cubic a wrong slope. Such a plane now gives no slope.
    Before: volume -0.27 / -0.64 / -0.28 %, Dmax -0.60 / -0.14 / -0.08 Gy (the first beyond the
    0.3 Gy tolerance); now -0.03 / -0.49 / -0.10 % and -0.21 / -0.14 / -0.08 Gy."""
    p = make_phantom("Hollow sphere", [Sphere(r_out, C, r_in=r_in)], spacing,
                     C[2] + phase * spacing)
    f = PiecewiseRadial(tuple(np.array(C) + [0.2, -0.3, 0.1]), 20.0, 0.0, 5.0)
    grid = dose_grid(f, p, (2.5, 2.5, 2.5))
    e = compare(engine_dvh(p, grid), quadrature_truth(p, grid))
    assert abs(e["volume[%]"]) <= 0.6, e
    assert abs(e["Dmax"]) <= 0.25 and abs(e["Dmin"]) <= 0.05, e
    assert max(abs(e[m]) for m in ("Dmean", "D98%", "D95%", "D50%", "D2%")) <= 0.05, e


@pytest.mark.parametrize("z_plane", [0.81, 0.61, 0.5])
def test_lying_cylinder_bulges_beyond_its_flat_top(z_plane):
    """A cylinder r 3 mm lying along x, planes 2 mm apart, its axis between two of them: there
    its section is wider than on either plane, beyond both outlines' y extent, where no scan
    line has crossings to start a bulge search from. It is looked for over the x range of the
    last row with crossings, in bands a quarter of a row high (the bulge is thinner than a row),
    and the planes' thickest polygons (rectangles: width squared quadratic in z, not the area)
    say how far it may reach (``_bulge_reach``). Before: volume -1.64 / -0.91 / -0.36 %; now
    -0.89 / -0.62 / -0.16 %."""
    p = make_phantom("Lying cylinder", [LyingCylinder(3.0, 12.0, 0.0, C)], 2.0, C[2] + z_plane)
    f = PiecewiseRadial(tuple(np.array(C) + [0.2, -0.3, 0.1]), 25.0, 0.0, 5.0)
    grid = dose_grid(f, p, (2.5, 2.5, 2.5))
    e = compare(engine_dvh(p, grid), quadrature_truth(p, grid))
    assert abs(e["volume[%]"]) <= 1.0, e
    assert max(abs(e[m]) for m in ("Dmean", "D98%", "D95%", "D50%")) <= 0.05, e
    assert abs(e["D2%"]) <= 0.12 and abs(e["Dmax"]) <= 0.05 and abs(e["Dmin"]) <= 0.05, e


def test_no_bulge_past_a_flat_face():
    """The flat end of a cylinder lying along x is a face across all its planes (``_face``):
    near its corners the implicit values follow the curved top and bulged past it by 0.11 mm,
    so Dmin and Dmax in a 2.5 Gy/mm field along x were 0.28 Gy beyond the field's values at the
    ends; now exact."""
    p = make_phantom("Lying cylinder", [LyingCylinder(3.0, 12.0, 0.0, C)], 2.0, C[2] + 0.81)
    grid = dose_grid(linear_field(p, "x"), p, (2.5, 2.5, 2.5))
    e = compare(engine_dvh(p, grid), quadrature_truth(p, grid))
    assert abs(e["Dmin"]) <= 0.01 and abs(e["Dmax"]) <= 0.01, e
    assert abs(e["volume[%]"]) <= 1.0, e


# --------------------------------------------------------------------------- the truth itself

@pytest.mark.parametrize("shape", list(_phantoms()))
def test_phantom_geometry(shape):
    """Contours and sections lie on the analytic solid; the contour areas are the sections'
    areas; the truth's volume is the integral of the section areas (adaptive quadrature) plus the
    caps; the planes are the lattice planes where the solid has a section."""
    from scipy.integrate import quad

    p, _ = phantoms()[shape]
    s = p.structure()
    # every vertex on the surface (holes included)
    for z, poly in s.polygons():
        f = p.implicit(poly[:, 0], poly[:, 1], np.full(len(poly), z))
        assert np.abs(f).max() < 1e-9, f"contour at z = {z} off the surface"
    # sections between the planes too
    zr = np.random.default_rng(1).uniform(p.z1, p.zn, 7)
    t = np.linspace(0.0, 2 * np.pi, 97)
    ring = np.column_stack([np.cos(t), np.sin(t)])
    for sec in p.sections(zr):
        for k in np.flatnonzero(sec.valid):
            ref = ring if sec.kind == "disc" else np.array([[-1, -1], [1, -0.3], [0.2, 1.0]])
            pts = np.array([sec.cx[k], sec.cy[k]]) + ref @ sec.m[k].T
            f = p.implicit(pts[:, 0], pts[:, 1], np.full(len(pts), zr[k]))
            if sec.kind == "square":  # a point on an edge: on the surface, never outside
                assert f.max() < 1e-9
            else:
                assert np.abs(f).max() < 1e-9
            if sec.rho[k] > 0:
                pts = np.array([sec.cx[k], sec.cy[k]]) + sec.rho[k] * ring @ sec.m[k].T
                f = p.implicit(pts[:, 0], pts[:, 1], np.full(len(pts), zr[k]))
                assert np.abs(f).max() < 1e-9
    # contour areas (shoelace, even-odd) against the section areas
    for z in p.planes:
        polys = [poly for zp, poly in s.polygons() if zp == z]
        got = sum(_shoelace(poly) * (-1 if _inside_another(poly, polys) else 1) for poly in polys)
        want = sum(float(sec.area[0]) for sec in p.sections(np.array([z])))
        assert got == pytest.approx(want, rel=5e-5, abs=1e-3), f"area at z = {z}"
    assert np.array_equal(np.unique(s.polygon_z_mm), p.planes)
    # volume: adaptive quadrature of the section areas, plus the caps
    def area_at(z):
        return sum(float(sec.area[0]) for sec in p.sections(np.array([z])))
    breaks = sorted({b for tr in p.tracks for b in tr.z_range if p.z1 < b < p.zn}
                    | {c for tr in p.tracks if isinstance(tr, Sphere) and tr.r_in > 0
                       for c in (tr.c[2] - tr.r_in, tr.c[2] + tr.r_in) if p.z1 < c < p.zn})
    edges = [p.z1, *breaks, p.zn]
    inner = sum(quad(area_at, a, b, epsabs=1e-9, epsrel=1e-11, limit=200)[0]
                for a, b in zip(edges[:-1], edges[1:]))
    exact = inner + 0.5 * p.spacing * (area_at(p.z1) + area_at(p.zn))
    f = linear_field(p, "x")
    assert linear_truth(p, f).volume_cc * 1000.0 == pytest.approx(exact, rel=2e-5)
    # the planes: every lattice plane with a section thicker than 0.05 mm, and no other
    lo = min(tr.z_range[0] for tr in p.tracks)
    hi = max(tr.z_range[1] for tr in p.tracks)
    for z in lattice_planes((lo, hi), p.spacing, p.planes[0]):
        thick = any(sec.valid[0] and sec.min_half_width[0] >= MIN_SECTION_MM
                    for sec in (tr.at(np.array([z])) for tr in p.tracks))
        assert thick == (z in set(p.planes.tolist()))


def _shoelace(poly):
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)))


def _inside_another(poly, polys):
    """Even-odd: the polygon's first vertex lies inside an odd number of the other polygons."""
    x0, y0 = poly[0]
    n = 0
    for other in polys:
        if other is poly:
            continue
        xs, ys = other[:, 0], other[:, 1]
        xn, yn = np.roll(xs, -1), np.roll(ys, -1)
        crosses = (ys <= y0) != (yn <= y0)
        xc = xs + (y0 - ys) * (xn - xs) / np.where(yn == ys, 1.0, yn - ys)
        n += int(np.count_nonzero(crosses & (xc > x0)) % 2)
    return n % 2 == 1


def test_the_planes_hit_or_miss_the_poles_as_intended():
    ph = phantoms()
    cz, r = C[2], 12.0
    p = ph["sphere_r12_sp3_poles"][0]
    assert (p.z1, p.zn) == pytest.approx((cz - r + 3.0, cz + r - 3.0))  # poles: no contour
    assert lattice_planes((cz - r, cz + r), 3.0, cz)[[0, -1]] == pytest.approx([cz - r, cz + r])
    p = ph["sphere_r12_sp1_nearpole"][0]
    assert (cz + r - p.zn, p.z1 - (cz - r)) == pytest.approx((0.03, 0.97))
    p = ph["sphere_r12_sp2_offpole"][0]
    assert (cz + r - p.zn, p.z1 - (cz - r)) == pytest.approx((1.7, 0.3))
    v = ph["sphere_0.5cc_sp1"][0]
    assert 0.49 < linear_truth(v, linear_field(v, "x")).volume_cc < 0.53


@pytest.mark.parametrize("shape,field", [("tube", "linear_x"), ("ellipsoid_oblique", "linear_y"),
                                         ("cylinder_lying", "linear_oblique"),
                                         ("sphere_0.5cc_sp3", "linear_z"),
                                         ("shell", "linear_oblique")])
def test_quadrature_truth_agrees_with_linear_truth(shape, field):
    """The two independent truths on linear fields (where the trilinear grid is exact): bounds
    the error of the radial cases' quadrature (and checks the closed forms of the linear one)."""
    p, grid, lin = case(shape, field)
    q = quadrature_truth(p, grid)
    assert q.volume_cc == pytest.approx(lin.volume_cc, rel=1e-4)
    assert q.dmean_gy == pytest.approx(lin.dmean_gy, abs=0.01)
    assert q.dmin_gy == pytest.approx(lin.dmin_gy, abs=0.03)
    assert q.dmax_gy == pytest.approx(lin.dmax_gy, abs=0.03)
    for pc in PERCENTS + V_PERCENTS:
        assert q.d_percent(pc) == pytest.approx(lin.d_percent(pc), abs=0.03), f"D{pc}%"
        d = lin.d_percent(pc)
        assert q.v_percent(d) == pytest.approx(lin.v_percent(d), abs=0.1), f"V at D{pc}%"


def test_trilinear_helper_matches_scipy():
    from scipy.interpolate import RegularGridInterpolator

    p, grid, _ = case("ellipsoid_oblique", "gaussian")
    rng = np.random.default_rng(7)
    pts = [rng.uniform(c[0], c[-1], 5000) for c in (grid.x_mm, grid.y_mm, grid.z_mm)]
    pts[0][:3] = grid.x_mm[[0, -1, 3]]  # nodes and hull faces exactly
    ours = trilinear(grid)(*pts)
    rgi = RegularGridInterpolator((grid.z_mm, grid.y_mm, grid.x_mm), grid.dose_gy)
    assert np.allclose(ours, rgi(np.column_stack(pts[::-1])), rtol=0, atol=1e-10)
