"""The engine's shape between contour planes against the true solids of the sample anatomy.

``sbrt_qa.samples`` builds every organ as an implicit solid and contours it on planes 2 mm
apart, so the true volume between two planes is known, which no phantom of circles gives for
shapes like a stomach or a chest wall. Per plane, the volume of its slab (half-way to its
neighbours) is compared as a change from the slab model (the plane's area x thickness):

* truth: the solid's section area integrated over the slab (Simpson's rule on a 0.5 mm
  lattice), less the area of its section on the plane x thickness;
* engine: its slab volume with ``interpolate=True`` less the one with ``interpolate=False``
  (each engine DVH read in a dose field along z, whose dose at a slab's ends is its z).

Both leave out each plane's own area, so the contours' approximation of the sections (marching
squares, resampled) cancels; what is left is how the volume between the planes is shared out.
The slab model's own error is the truth's change itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import sbrt_qa
from sbrt_qa import samples
from sbrt_qa.dvh.core import dvh_of_structure
from sbrt_qa.models import DoseGrid

PLAN = Path(__file__).resolve().parents[1] / "sample_rtplans" / "01_pvtt_per_protocol"


@pytest.fixture(scope="module")
def plan():
    return sbrt_qa.load_plan(PLAN)


@pytest.fixture(scope="module")
def organs():
    return samples.build_organs()


def engine_slab_cc(structure, interpolate: bool):
    """Planes, their spacing and the engine's volume per slab, cc."""
    planes = np.unique(np.round(structure.planes_z_mm, 3))
    h = float(np.median(np.diff(planes)))
    p = structure.points_xy_mm
    x = np.arange(p[:, 0].min() - 5, p[:, 0].max() + 5, 2.5)
    y = np.arange(p[:, 1].min() - 5, p[:, 1].max() + 5, 2.5)
    z = np.arange(planes[0] - 5, planes[-1] + 5.01, 2.5)
    dose = np.broadcast_to((z - z[0])[:, None, None], (z.size, y.size, x.size)).copy()
    d = dvh_of_structure(structure, DoseGrid(dose, x, y, z), interpolate=interpolate)
    edges = np.concatenate([[planes[0] - h / 2], 0.5 * (planes[1:] + planes[:-1]),
                            [planes[-1] + h / 2]])
    return planes, h, -np.diff(np.interp(edges - z[0], d.dose_gy, d.cumulative_cc))


def true_change_cc(shape, planes, h, xy_box, *, lattice_mm=0.5, n=2, lipschitz=1.5):
    """Per plane: the solid's volume in the slab less its section's area x ``h``, cc.

    The section areas are counted on a lattice; between two heights only points near the
    surface can change side (``|sdf|`` within ``lipschitz`` x the height moved since they were
    last evaluated), so only those are evaluated again. The end planes' outer halves are the
    slab model's, as in the engine's convention."""
    (x0, x1), (y0, y1) = xy_box
    xs = np.arange(x0 - 3, x1 + 3, lattice_mm) + lattice_mm / 2
    ys = np.arange(y0 - 3, y1 + 3, lattice_mm) + lattice_mm / 2
    gx, gy = (a.ravel() for a in np.meshgrid(xs, ys))
    offsets = [s * h / 2 * i / (2 * n) for s in (-1, 1) for i in range(2 * n + 1)]
    heights = sorted({round(float(zk + o), 6) for zk in planes for o in offsets})
    f = shape(gx, gy, np.float64(heights[0]))
    zf = np.full(gx.size, heights[0])
    area = {}
    for zz in heights:
        near = np.abs(f) <= lipschitz * (zz - zf) + 1e-9
        if near.any():
            f[near] = shape(gx[near], gy[near], np.float64(zz))
            zf[near] = zz
        area[zz] = float((f < 0).sum()) * lattice_mm ** 2
    w = np.ones(2 * n + 1)
    w[1:-1:2] = 4
    w[2:-1:2] = 2
    a_k = np.array([area[round(float(zk), 6)] for zk in planes])
    slab = np.zeros(planes.size)
    for k, zk in enumerate(planes):
        for s, j in ((-1, k - 1), (1, k + 1)):
            if not 0 <= j < planes.size:
                slab[k] += a_k[k] * h / 2
                continue
            a = [area[round(float(zk + s * h / 2 * i / (2 * n)), 6)] for i in range(2 * n + 1)]
            slab[k] += (h / 2) / (6 * n) * float(np.dot(w, a))
    return (slab - a_k * h) / 1000.0


def compare(plan, organs, name, **kw):
    st = plan.structure(name)
    planes, h, interpolated = engine_slab_cc(st, True)
    _, _, slab = engine_slab_cc(st, False)
    p = st.points_xy_mm
    truth = true_change_cc(organs[name], planes, h, ((p[:, 0].min(), p[:, 0].max()),
                                                     (p[:, 1].min(), p[:, 1].max())), **kw)
    engine = interpolated - slab
    return {"volume_cc": float(slab.sum()), "slab_err_cc": float(np.abs(truth).sum()),
            "engine_err_cc": float(np.abs(engine - truth).sum()),
            "total_err_cc": float(abs(engine.sum() - truth.sum()))}


# measured (sum over slabs of |error|, cc; slab model / engine): Kidney_L 0.27 / 0.24,
# Duodenum 0.53 / 0.44, Stomach 1.43 / 0.95, Heart 0.93 / 0.83
@pytest.mark.parametrize("name", ["Kidney_L", "Duodenum", "Stomach", "Heart"])
def test_interpolation_shares_the_volume_between_planes_as_the_true_solid_does(plan, organs,
                                                                                 name):
    r = compare(plan, organs, name)
    assert r["slab_err_cc"] > 0.002 * r["volume_cc"]  # the planes do differ from the solid
    assert r["engine_err_cc"] < r["slab_err_cc"], r
    assert r["total_err_cc"] < 0.003 * r["volume_cc"], r


def test_the_chest_wall_between_its_planes(plan, organs):
    # a curved shell 10-20 mm thick whose sections turn from rings into C shapes near the lung
    # apex: the engine is within 0.5 % of its volume here (slab model 0.25 %); an attempt at
    # thin walls that made rings of C shapes put 1.15 % there. Its distance function bends more
    # than the organs' above: the narrow band is widened
    r = compare(plan, organs, "Chestwall", lipschitz=3.0)
    assert r["engine_err_cc"] < 0.006 * r["volume_cc"], r
    assert r["total_err_cc"] < 0.003 * r["volume_cc"], r
