"""The phantom generator and its truth, checked independently of the DVH engine.

These tests are what lets the DVH tests trust the truth: exact formulas against closed forms,
the quadrature against the exact linear truth, and the quadrature's convergence.
"""

import math

import numpy as np
import pydicom
import pytest

import naive
import phantoms as ph

N = ph.N_VERTICES


def ngon_area(r, n=N):
    return 0.5 * n * r * r * math.sin(2 * math.pi / n)


# --------------------------------------------------------------------------- geometry

def test_regular_polygon_area_and_radius():
    p = ph.regular_polygon(1.0, 2.0, 10.0)
    assert p.shape == (N, 2)
    assert ph.signed_area(p) == pytest.approx(ngon_area(10.0), rel=1e-7)
    assert ph.signed_area(ph.regular_polygon(0, 0, 10.0, clockwise=True)) < 0
    # the polar radius at a vertex is the circumradius, at an edge midpoint the apothem
    assert ph.polygon_radius(10.0, ph.VERTEX_PHASE) == pytest.approx(10.0)
    assert ph.polygon_radius(10.0, ph.VERTEX_PHASE + math.pi / N) == pytest.approx(
        10.0 * math.cos(math.pi / N))


def test_sphere_volume_is_the_slab_sum_of_its_sections():
    s = ph.sphere(15.0, (0.0, 0.0, 0.0), spacing=2.5, phase=0.3)
    z = s.planes_z_mm
    assert np.allclose(np.diff(z), 2.5)
    assert z.min() > -15 and z.max() < 15 and z.min() - 2.5 < -15 and z.max() + 2.5 > 15
    expected = sum(ngon_area(math.sqrt(225.0 - zk * zk)) * 2.5 for zk in z) / 1000.0
    assert s.volume_cc == pytest.approx(expected, rel=1e-6)
    # the slab model of a sphere is close to, not equal to, the analytic volume
    assert s.volume_cc == pytest.approx(4 / 3 * math.pi * 15 ** 3 / 1000, rel=0.02)


def test_cylinder_has_slab_end_caps():
    c = ph.cylinder(12.0, 30.0, (0.0, 0.0, 0.0), spacing=3.0, phase=0.0)
    assert c.planes_z_mm.tolist() == pytest.approx(np.arange(-15.0, 15.1, 3.0).tolist())
    # 11 planes x 3 mm = 33 mm of slabs, not 30 mm
    assert c.volume_cc == pytest.approx(ngon_area(12.0) * 33.0 / 1000.0, rel=1e-7)


def test_tube_hole_and_islands_add():
    t = ph.tube(15.0, 7.0, 24.0, spacing=2.5)
    outer = ph.cylinder(15.0, 24.0, spacing=2.5)
    inner = ph.cylinder(7.0, 24.0, spacing=2.5)
    assert len(t.polygons) == 2 * t.planes_z_mm.size
    assert sorted({s for _, _, s in t.polygons}) == [-1, 1]
    assert t.volume_cc == pytest.approx(outer.volume_cc - inner.volume_cc, rel=1e-9)
    i = ph.islands(8.0, 6.0, 24.0, spacing=2.0)
    a = ph.sphere(8.0, (-12.0, 0.0, 0.0), spacing=2.0)
    b = ph.sphere(6.0, (12.0, 0.0, 0.0), spacing=2.0)
    assert i.volume_cc == pytest.approx(a.volume_cc + b.volume_cc, rel=1e-9)


def test_sub_cc_sphere():
    s = ph.sphere_cc(0.5, spacing=2.0)
    assert 0.45 < s.volume_cc < 0.55
    assert s.planes_z_mm.size >= 4


def test_cone_sections_shrink_linearly():
    c = ph.cone(15.0, 30.0, (0.0, 0.0, 0.0), spacing=2.0)
    r = [math.sqrt(ph.signed_area(p) / ngon_area(1.0)) for _, p, _ in c.polygons]
    expected = 15.0 * (1 - (c.planes_z_mm + 15.0) / 30.0)
    assert np.allclose(r, expected, atol=1e-5)


@pytest.mark.parametrize("axis", [0, 1])
def test_area_above_matches_polygon_clipping(axis):
    rng = np.random.default_rng(1)
    # a non-convex star and a circle, both orientations
    t = np.linspace(0, 2 * np.pi, 23, endpoint=False)
    rho = 10 + 4 * np.sin(5 * t)
    star = np.column_stack([rho * np.cos(t), rho * np.sin(t)])
    for poly in (star, star[::-1], ph.regular_polygon(2.0, -1.0, 9.0)):
        for c in rng.uniform(-15, 15, 12):
            clipped = ph._clip_halfplane(poly, axis, c, upper=True)
            expected = abs(ph.signed_area(clipped)) if clipped is not None else 0.0
            assert ph.area_above(poly, axis, c) == pytest.approx(expected, abs=1e-9)


def test_area_above_a_circle_is_a_circular_segment():
    r, c = 10.0, 4.0
    segment = r * r * math.acos(c / r) - c * math.sqrt(r * r - c * c)
    p = ph.regular_polygon(0.0, 0.0, r, 4 * N)
    assert ph.area_above(p, 0, c) == pytest.approx(segment, rel=1e-5)
    assert ph.area_above(p, 1, -c) == pytest.approx(math.pi * r * r - segment, rel=1e-5)


def test_first_moment_is_area_times_centroid():
    p = ph.regular_polygon(3.0, -2.0, 5.0)
    a = ph.signed_area(p)
    assert ph.first_moment(p, 0) == pytest.approx(3.0 * a, rel=1e-9)
    assert ph.first_moment(p, 1) == pytest.approx(-2.0 * a, rel=1e-9)
    assert ph.first_moment(p[::-1], 0) == pytest.approx(3.0 * a, rel=1e-9)


def test_clipped_phantom_volumes():
    s = ph.sphere(10.0, spacing=2.0)
    left = s.clipped(0, hi=2.5)
    right = s.clipped(0, lo=2.5)
    assert left.volume_cc + right.volume_cc == pytest.approx(s.volume_cc, rel=1e-9)
    below = s.clipped(2, hi=3.0)
    above = s.clipped(2, lo=3.0)
    assert below.volume_cc + above.volume_cc == pytest.approx(s.volume_cc, rel=1e-9)
    lo, hi = below.slab_lo_hi
    assert hi.max() == 3.0


# --------------------------------------------------------------------------- dose grids

def test_dose_grid_covers_the_bounds_with_a_margin():
    p = ph.sphere(10.0, (1.0, 2.0, 3.0))
    f = ph.LinearField(0, 1.0, 20.0, 1.0)
    g = ph.dose_grid(f, p.bounds_mm, (2.5, 2.0, 3.0), margin_mm=3.0)
    b = p.bounds_mm
    for i, c in enumerate((g.x_mm, g.y_mm, g.z_mm)):
        assert c[0] <= b[i, 0] - 3.0 and c[-1] >= b[i, 1] + 3.0
    assert np.allclose(np.diff(g.x_mm), 2.5) and np.allclose(np.diff(g.z_mm), 3.0)
    assert g.dose_gy.shape == (g.z_mm.size, g.y_mm.size, g.x_mm.size)
    assert g.dose_gy[0, 0, 3] == pytest.approx(20.0 + (g.x_mm[3] - 1.0))


def test_trilinear_many_matches_the_explicit_formula():
    rng = np.random.default_rng(7)
    xs = np.array([0.0, 2.0, 4.5, 7.0])
    ys = np.array([-3.0, 0.0, 3.0])
    zs = np.array([1.0, 2.0, 5.0, 6.0, 9.0])
    dose = rng.uniform(0, 40, (zs.size, ys.size, xs.size))
    pts = np.column_stack([rng.uniform(0, 7, 200), rng.uniform(-3, 3, 200), rng.uniform(1, 9, 200)])
    pts[:4] = [[0, -3, 1], [7, 3, 9], [2, 0, 5], [4.5, 3, 6]]  # nodes and hull corners
    fast = naive.trilinear_many(dose, xs, ys, zs, pts[:, 0], pts[:, 1], pts[:, 2])
    slow = [naive.trilinear_point(dose, xs, ys, zs, *p) for p in pts]
    assert np.allclose(fast, slow, rtol=0, atol=1e-12)
    assert fast[2] == dose[2, 1, 1]


def test_point_in_polygons_even_odd_and_boundary_rule():
    sq = np.array([[0, 0], [4, 0], [4, 4], [0, 4]], dtype=float)
    hole = np.array([[1, 1], [1, 3], [3, 3], [3, 1]], dtype=float)
    x = np.array([0.5, 2.0, 3.5, 5.0, 0.0, 4.0, 2.0, 2.0])
    y = np.array([0.5, 2.0, 3.5, 2.0, 2.0, 2.0, 0.0, 4.0])
    got = naive.point_in_polygons(x, y, [sq, hole])
    # left edge in, right edge out; bottom edge in, top edge out (half-open rules)
    assert got.tolist() == [True, False, True, False, True, False, True, False]


# --------------------------------------------------------------------------- truth

def test_linear_truth_closed_forms():
    # a cylinder in a field along its axis: uniform dose spread over the slab extent
    c = ph.cylinder(10.0, 30.0, spacing=3.0, phase=0.0)
    f = ph.LinearField(2, 1.0, 25.0, 0.0)
    t = ph.linear_truth(c, f)
    assert t.dmin_gy == pytest.approx(25.0 - 16.5)
    assert t.dmax_gy == pytest.approx(25.0 + 16.5)
    assert t.dmean_gy == pytest.approx(25.0)
    assert t.dose_at_percent(50) == pytest.approx(25.0)
    assert t.dose_at_percent(95) == pytest.approx(25.0 - 16.5 + 0.05 * 33.0)
    assert t.volume_at_dose_percent(30.0) == pytest.approx(100 * (41.5 - 30.0) / 33.0)
    # a sphere in a field across: by symmetry the median is the centre dose
    s = ph.sphere(12.0, (2.0, 0.0, 0.0), spacing=2.0)
    t = ph.linear_truth(s, ph.LinearField(0, 2.0, 30.0, 2.0))
    assert t.dmean_gy == pytest.approx(30.0, abs=1e-9)
    assert t.dose_at_percent(50) == pytest.approx(30.0, abs=1e-6)
    # the widest section is the plane nearest the centre (z = 0.3 mm)
    x_max = max(q[:, 0].max() for _, q, _ in s.polygons)
    assert x_max == pytest.approx(2.0 + math.sqrt(144.0 - 0.09), abs=1e-4)
    assert t.dmax_gy == pytest.approx(30.0 + 2.0 * (x_max - 2.0), abs=1e-9)


def test_linear_truth_refuses_a_grid_that_does_not_cover_the_phantom():
    s = ph.sphere(10.0)
    f = ph.LinearField(0, 1.0, 25.0)
    g = ph.dose_grid(f, [[-5, 5], [-5, 5], [-5, 5]], margin_mm=0.0)
    with pytest.raises(ValueError, match="node hull"):
        ph.linear_truth(s, f, g)


QUADRATURE_CASES = [("tube", "linear_x"), ("islands", "linear_y"), ("cone", "linear_z"),
                    ("sphere_0.5cc", "linear_y"), ("cylinder", "linear_x")]


@pytest.mark.parametrize("shape, kind", QUADRATURE_CASES)
def test_quadrature_agrees_with_the_exact_linear_truth(shape, kind):
    p, grid, exact = ph.case(shape, kind)
    q = ph.sampled_truth(p, ph.grid_dose_fn(grid), grid=grid)
    assert q.volume_cc == pytest.approx(exact.volume_cc, rel=1e-12)
    assert q.dmean_gy == pytest.approx(exact.dmean_gy, abs=1e-3)
    assert q.dmin_gy == pytest.approx(exact.dmin_gy, abs=1e-6)
    assert q.dmax_gy == pytest.approx(exact.dmax_gy, abs=1e-6)
    for pct in (99, 98, 95, 50, 5, 2, 1):
        assert q.dose_at_percent(pct) == pytest.approx(exact.dose_at_percent(pct), abs=0.03), pct
    for d in ph.v_doses(exact):
        assert q.volume_at_dose_percent(d) == pytest.approx(exact.volume_at_dose_percent(d),
                                                           abs=0.05)


@pytest.mark.parametrize("shape, kind", [("sphere_0.5cc", "cone"), ("tube", "gaussian")])
def test_quadrature_converges(shape, kind):
    p, grid, truth = ph.case(shape, kind)
    fine = ph.sampled_truth(p, ph.grid_dose_fn(grid), grid=grid, n_theta=1440, n_r=48, n_z=9)
    assert fine.dmean_gy == pytest.approx(truth.dmean_gy, abs=2e-3)
    assert fine.dmin_gy == pytest.approx(truth.dmin_gy, abs=1e-9)
    assert fine.dmax_gy == pytest.approx(truth.dmax_gy, abs=1e-9)
    for pct in (99, 98, 95, 50, 2, 1):
        assert fine.dose_at_percent(pct) == pytest.approx(truth.dose_at_percent(pct), abs=0.02), pct


def test_extremes_of_the_trilinear_field_are_found():
    # the cone field's peak lies inside the sphere: the trilinear maximum there is a grid node
    # value, which the candidate set contains
    p, grid, truth = ph.case("sphere", "cone")
    inside = []
    for k, z in enumerate(grid.z_mm):
        for j, y in enumerate(grid.y_mm):
            for i, x in enumerate(grid.x_mm):
                if (x - 1.3) ** 2 + (y + 2.1) ** 2 + (z - 0.7) ** 2 < 12.0 ** 2:
                    inside.append(grid.dose_gy[k, j, i])
    assert truth.dmax_gy >= max(inside) - 1e-9


# --------------------------------------------------------------------------- DICOM writer

def test_written_files_are_valid_dicom(tmp_path):
    p = ph.sphere(8.0, spacing=2.5, n_vertices=64)
    f = ph.LinearField(0, 1.0, 25.0)
    g = ph.dose_grid(f, p.bounds_mm)
    u = ph.Uids()
    ss = ph.write_rtstruct(tmp_path / "rs.dcm", [ph.Roi.of(p, 1, "PTV")], u)
    rd = ph.write_rtdose(tmp_path / "rd.dcm", g, u, plan_uid=u.plan)
    rp = ph.write_rtplan(tmp_path / "rp.dcm", u)
    for path, sop in ((ss, ph.RTSTRUCT_SOP), (rd, ph.RTDOSE_SOP), (rp, ph.RTPLAN_SOP)):
        ds = pydicom.dcmread(path)  # no force: the preamble and file meta must be valid
        assert ds.file_meta.MediaStorageSOPClassUID == sop == ds.SOPClassUID
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    ds = pydicom.dcmread(ss)
    contour = ds.ROIContourSequence[0].ContourSequence[0]
    pts = np.array(contour.ContourData, dtype=float).reshape(-1, 3)
    assert np.array_equal(pts[:, :2], p.polygons[0][1])
    assert int(contour.NumberOfContourPoints) == 64
    ds = pydicom.dcmread(rd)
    dose = ds.pixel_array.astype(float) * float(ds.DoseGridScaling)
    assert np.allclose(dose, g.dose_gy, atol=1e-6)
    assert [float(v) for v in ds.ImagePositionPatient] == pytest.approx(
        [g.x_mm[0], g.y_mm[0], g.z_mm[0]])
