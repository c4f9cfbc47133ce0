"""Loading plan folders written from analytic phantoms (``tests/phantoms.py``).

Every geometry variant must put the same physical dose at the same physical point: the loaded
grid is compared node by node with the one written, and its DVH with the analytic truth.
"""

import shutil

import numpy as np
import pydicom
import pytest

import naive
import phantoms as ph
from sbrt_qa import compute_dvh, load_plan
from sbrt_qa.dicom import read_dose_grid
from sbrt_qa.dvh._kernels import trilinear_points
from sbrt_qa.errors import DicomError, PlanLinkError
from sbrt_qa.models import DoseGrid

N_VERTICES = 180  # the truth follows the written polygons, so fewer vertices only speed it up
CENTRE = (4.3, -7.9, 12.6)
PEAK = (6.0, -5.0, 10.0)


@pytest.fixture(scope="module")
def sphere():
    return ph.sphere(12.0, CENTRE, spacing=2.5, n_vertices=N_VERTICES, name="PTV")


@pytest.fixture(scope="module")
def gaussian_grid(sphere):
    """An off-centre Gaussian on a non-cubic grid (nx != ny, three different spacings)."""
    f = ph.GaussianField(PEAK, 40.0, 12.0)
    return ph.dose_grid(f, sphere.bounds_mm, (2.5, 2.0, 3.0), margin_mm=4.0)


@pytest.fixture(scope="module")
def gaussian_truth(sphere, gaussian_grid):
    return ph.sampled_truth(sphere, ph.grid_dose_fn(gaussian_grid), grid=gaussian_grid)


@pytest.fixture(scope="module")
def linear_field():
    return ph.LinearField(2, 1.2, 30.0, CENTRE[2])


@pytest.fixture(scope="module")
def rtstruct_template(tmp_path_factory, sphere):
    """One RTSTRUCT (ROI 1 "PTV") and its UIDs, copied into each test's folder."""
    uids = ph.Uids()
    path = ph.write_rtstruct(tmp_path_factory.mktemp("template") / "RS.dcm",
                             [ph.Roi.of(sphere, 1, "PTV")], uids)
    return path, uids


def new_folder(tmp_path, rtstruct_template, name="plan"):
    """A folder holding a copy of the RTSTRUCT; returns (folder, uids)."""
    src, uids = rtstruct_template
    folder = tmp_path / name
    folder.mkdir()
    shutil.copy(src, folder / "RS.dcm")
    return folder, ph.Uids(frame=uids.frame, study=uids.study, structure_set=uids.structure_set)


def write_plan(folder, grid, uids, *, fractions=5, **dose_kw):
    ph.write_rtplan(folder / "RP.dcm", uids, fractions=fractions)
    return ph.write_rtdose(folder / "RD.dcm", grid, uids, plan_uid=uids.plan, **dose_kw)


def slab_dvh(plan, name="PTV"):
    return ph.engine_dvh(plan.structure(name), plan.dose)


def codes(plan):
    return [f.code for f in plan.findings]


def assert_same_grid(loaded: DoseGrid, written: DoseGrid, atol_gy=1e-6):
    for axis in ("x_mm", "y_mm", "z_mm"):
        a, b = getattr(loaded, axis), getattr(written, axis)
        assert a.shape == b.shape and np.allclose(a, b, rtol=0, atol=1e-6)
    assert loaded.dose_gy.shape == written.dose_gy.shape
    assert np.allclose(loaded.dose_gy, written.dose_gy, rtol=0, atol=atol_gy)


# --------------------------------------------------------------------------- geometry

@pytest.mark.parametrize("frame_order", ["ascending", "descending"])
@pytest.mark.parametrize("orientation", ["HFS", "FFS", "HFP", "FFP"])
def test_patient_orientations(tmp_path, rtstruct_template, gaussian_grid, gaussian_truth,
                              orientation, frame_order):
    folder, uids = new_folder(tmp_path, rtstruct_template)
    path = write_plan(folder, gaussian_grid, uids, orientation=orientation, frame_order=frame_order)
    ds = pydicom.dcmread(path)
    assert [float(v) for v in ds.ImageOrientationPatient] == list(ph.ORIENTATIONS[orientation])
    offsets = [float(v) for v in ds.GridFrameOffsetVector]
    assert offsets[0] == 0 and (np.all(np.diff(offsets) > 0) or np.all(np.diff(offsets) < 0))

    plan = load_plan(folder)
    # the same physical dose at the same physical point, node by node
    assert_same_grid(plan.dose, gaussian_grid)
    # and between nodes: the dose at the peak, by the loaded grid and by the written one
    at_peak = trilinear_points(plan.dose.dose_gy, plan.dose.x_mm, plan.dose.y_mm, plan.dose.z_mm,
                               np.array([PEAK]), 0.0)[0]
    expected = naive.trilinear_point(gaussian_grid.dose_gy, gaussian_grid.x_mm, gaussian_grid.y_mm,
                                     gaussian_grid.z_mm, *PEAK)
    assert at_peak == pytest.approx(expected, abs=1e-5)
    assert at_peak == pytest.approx(40.0, abs=1.0)  # a flipped axis would put ~20 Gy here
    ph.assert_close(slab_dvh(plan), gaussian_truth, f"{orientation} {frame_order}")


def test_orientations_give_the_same_dvh(tmp_path, rtstruct_template, gaussian_grid):
    dvhs = {}
    for orientation in ph.ORIENTATIONS:
        folder, uids = new_folder(tmp_path, rtstruct_template, orientation)
        write_plan(folder, gaussian_grid, uids, orientation=orientation)
        dvhs[orientation] = compute_dvh(load_plan(folder), "PTV")
    ref = dvhs["HFS"]
    for orientation, d in dvhs.items():
        assert d.volume_cc == pytest.approx(ref.volume_cc, rel=1e-9), orientation
        for attr in ("dmin_gy", "dmax_gy", "dmean_gy"):
            assert getattr(d, attr) == pytest.approx(getattr(ref, attr), abs=1e-6), orientation
        for pct in (99, 95, 50, 2):
            v = pct / 100 * ref.covered_volume_cc
            assert d.dose_at_volume_gy(v) == pytest.approx(ref.dose_at_volume_gy(v), abs=1e-6)


@pytest.mark.parametrize("frame_order", ["ascending", "descending"])
def test_absolute_frame_offsets(tmp_path, rtstruct_template, gaussian_grid, frame_order):
    folder, uids = new_folder(tmp_path, rtstruct_template)
    path = write_plan(folder, gaussian_grid, uids, offsets="absolute", frame_order=frame_order)
    ds = pydicom.dcmread(path)
    assert float(ds.GridFrameOffsetVector[0]) == float(ds.ImagePositionPatient[2]) != 0
    assert_same_grid(load_plan(folder).dose, gaussian_grid)


@pytest.mark.parametrize("offsets", ["relative", "absolute"])
def test_uneven_frame_spacing(tmp_path, rtstruct_template, sphere, linear_field, offsets):
    z = np.array([-3.0, -1.0, 2.0, 3.0, 6.5, 9.0, 11.0, 12.0, 15.5, 17.0, 21.0, 24.0, 27.0, 30.5])
    grid = ph.dose_grid(linear_field, sphere.bounds_mm, (2.5, 2.5, 2.5), z_mm=z)
    folder, uids = new_folder(tmp_path, rtstruct_template)
    write_plan(folder, grid, uids, offsets=offsets)
    plan = load_plan(folder)
    assert_same_grid(plan.dose, grid)
    ph.assert_close(slab_dvh(plan), ph.linear_truth(sphere, linear_field, grid), "uneven z")


def test_dose_grid_scaling_16_bit(tmp_path, rtstruct_template, sphere, linear_field):
    grid = ph.dose_grid(linear_field, sphere.bounds_mm, (2.5, 2.5, 2.5))
    folder, uids = new_folder(tmp_path, rtstruct_template)
    path = write_plan(folder, grid, uids, bits=16, scaling=0.001)
    ds = pydicom.dcmread(path)
    assert ds.BitsAllocated == 16 and float(ds.DoseGridScaling) == 0.001
    assert ds.pixel_array.max() > 30000  # the scaling is really applied
    plan = load_plan(folder)
    assert_same_grid(plan.dose, grid, atol_gy=0.0005 + 1e-9)
    ph.assert_close(slab_dvh(plan), ph.linear_truth(sphere, linear_field, grid), "16 bit")


def test_integer_dose_without_scaling_is_an_error(tmp_path, rtstruct_template, sphere,
                                                  linear_field):
    grid = ph.dose_grid(linear_field, sphere.bounds_mm)
    folder, uids = new_folder(tmp_path, rtstruct_template)
    path = write_plan(folder, grid, uids, bits=16, scaling=0.001)
    ds = pydicom.dcmread(path)
    del ds.DoseGridScaling
    ds.save_as(path)
    with pytest.raises(DicomError, match=r"RD\.dcm.*DoseGridScaling \(3004,000E\)"):
        load_plan(folder)


@pytest.mark.parametrize("keyword, value, tag", [
    ("Rows", 0, r"Rows \(0028,0010\)"), ("Columns", 0, r"Columns \(0028,0011\)"),
    ("NumberOfFrames", 0, r"NumberOfFrames \(0028,0008\)"),
    ("DoseGridScaling", -0.001, r"DoseGridScaling \(3004,000E\)"),
    ("DoseGridScaling", 0.0, r"DoseGridScaling \(3004,000E\)")])
def test_an_empty_or_negative_dose_grid_is_an_error(tmp_path, rtstruct_template, sphere,
                                                     linear_field, keyword, value, tag):
    # found by mutating sample plans: Rows or Columns 0 failed with an IndexError deep in the
    # DVH code; a negative scaling gave negative doses
    grid = ph.dose_grid(linear_field, sphere.bounds_mm)
    folder, uids = new_folder(tmp_path, rtstruct_template)
    path = write_plan(folder, grid, uids, bits=16, scaling=0.001)
    ds = pydicom.dcmread(path)
    setattr(ds, keyword, value)
    ds.save_as(path)
    with pytest.raises(DicomError, match=r"RD\.dcm.*" + tag):
        load_plan(folder)


def test_a_dose_in_centigray_labelled_gray_is_an_error(tmp_path, rtstruct_template, sphere,
                                                       linear_field):
    # values in cGy under DoseUnits GY (a scaling 100 times too large): every organ limit would
    # fail by far; a grid beyond 1000 Gy is refused as input instead
    grid = ph.dose_grid(lambda x, y, z: 100.0 * linear_field(x, y, z), sphere.bounds_mm)
    assert 1000.0 < grid.dose_gy.max() < 10000.0
    folder, uids = new_folder(tmp_path, rtstruct_template)
    write_plan(folder, grid, uids)
    with pytest.raises(DicomError, match=r"RD\.dcm.*DoseGridScaling \(3004,000E\).*Gy"):
        load_plan(folder)


@pytest.mark.parametrize("frames", [1, 3, "absent"])
def test_more_dose_values_than_the_header_describes_is_an_error(tmp_path, rtstruct_template,
                                                                sphere, linear_field, frames):
    # a wrong NumberOfFrames once read the first frames of the grid silently as the whole
    grid = ph.dose_grid(linear_field, sphere.bounds_mm)
    folder, uids = new_folder(tmp_path, rtstruct_template)
    path = write_plan(folder, grid, uids, bits=16, scaling=0.001)
    ds = pydicom.dcmread(path)
    assert int(ds.NumberOfFrames) > 3
    if frames == "absent":
        del ds.NumberOfFrames
    else:
        ds.NumberOfFrames = frames
    if frames in ("absent", 1):
        del ds.GridFrameOffsetVector
    else:
        ds.GridFrameOffsetVector = list(ds.GridFrameOffsetVector)[:frames]
    ds.save_as(path)
    with pytest.raises(DicomError, match=r"RD\.dcm.*PixelData \(7FE0,0010\).*bytes"):
        load_plan(folder)


def test_oblique_orientation_is_refused(tmp_path, rtstruct_template, gaussian_grid):
    folder, uids = new_folder(tmp_path, rtstruct_template)
    c, s = np.cos(0.2), np.sin(0.2)
    write_plan(folder, gaussian_grid, uids, iop=(c, s, 0.0, -s, c, 0.0))
    with pytest.raises(DicomError,
                       match=r"RD\.dcm.*ImageOrientationPatient \(0020,0037\).*oblique"):
        load_plan(folder)


def test_sagittal_grid_is_refused(tmp_path, rtstruct_template, gaussian_grid):
    folder, uids = new_folder(tmp_path, rtstruct_template)
    write_plan(folder, gaussian_grid, uids, iop=(0, 1, 0, 0, 0, -1))
    with pytest.raises(DicomError, match=r"ImageOrientationPatient \(0020,0037\)"):
        load_plan(folder)


def test_frame_offsets_neither_relative_nor_absolute(tmp_path, rtstruct_template, gaussian_grid):
    folder, uids = new_folder(tmp_path, rtstruct_template)
    bad = 5.0 + 3.0 * np.arange(gaussian_grid.z_mm.size)
    write_plan(folder, gaussian_grid, uids, offsets=bad)
    with pytest.raises(DicomError, match=r"RD\.dcm.*GridFrameOffsetVector \(3004,000C\)"):
        load_plan(folder)


@pytest.mark.parametrize("keep", [0.5, 0.0])  # 0: empty, once a TypeError (len(None))
def test_truncated_pixel_data(tmp_path, rtstruct_template, gaussian_grid, keep):
    folder, uids = new_folder(tmp_path, rtstruct_template)
    path = write_plan(folder, gaussian_grid, uids)
    ds = pydicom.dcmread(path)
    ds.PixelData = ds.PixelData[: int(len(ds.PixelData) * keep) // 2 * 2]
    ds.save_as(path)
    with pytest.raises(DicomError, match=r"RD\.dcm.*PixelData \(7FE0,0010\)"):
        load_plan(folder)


# --------------------------------------------------------------------------- dose semantics

def test_fraction_dose_times_the_planned_fractions(tmp_path, rtstruct_template, gaussian_grid):
    folder, uids = new_folder(tmp_path, rtstruct_template)
    write_plan(folder, gaussian_grid, uids, fractions=5, summation="FRACTION", factor=1 / 5)
    plan = load_plan(folder)
    assert plan.courses[0].fractions == 5
    assert_same_grid(plan.dose, gaussian_grid)
    assert "fraction_dose_scaled" in codes(plan)


def test_fraction_dose_without_plan_stays_per_fraction(tmp_path, rtstruct_template,
                                                      gaussian_grid):
    folder, uids = new_folder(tmp_path, rtstruct_template)
    ph.write_rtdose(folder / "RD.dcm", gaussian_grid, uids, summation="FRACTION", factor=1 / 5)
    plan = load_plan(folder)
    per_fraction = DoseGrid(gaussian_grid.dose_gy / 5, gaussian_grid.x_mm, gaussian_grid.y_mm,
                            gaussian_grid.z_mm)
    assert_same_grid(plan.dose, per_fraction)
    found = [f for f in plan.findings if f.code == "fraction_dose_unscaled"]
    assert len(found) == 1 and found[0].severity == "warning"
    assert found[0].path.endswith("RD.dcm") and "(3004,000A)" in found[0].message


def test_beam_doses_are_summed(tmp_path, rtstruct_template, gaussian_grid, gaussian_truth):
    folder, uids = new_folder(tmp_path, rtstruct_template)
    ph.write_rtplan(folder / "RP.dcm", uids, n_beams=3)
    for beam, share in ((1, 0.5), (2, 0.3), (3, 0.2)):
        ph.write_rtdose(folder / f"RD_beam{beam}.dcm", gaussian_grid, uids, plan_uid=uids.plan,
                        summation="BEAM", beam_number=beam, factor=share)
    plan = load_plan(folder)
    assert_same_grid(plan.dose, gaussian_grid, atol_gy=1e-5)
    assert len(plan.dose.source_files) == 3
    assert "beam_doses_summed" in codes(plan)
    ph.assert_close(slab_dvh(plan), gaussian_truth, "3 beams")


def test_beam_doses_on_different_grids(tmp_path, rtstruct_template, sphere, linear_field):
    """Beams on different grids are resampled onto a common one: still exact for a linear field
    where both grids cover the structure."""
    a = ph.dose_grid(linear_field, sphere.bounds_mm, (2.5, 2.5, 2.5), margin_mm=6.0)
    b = ph.dose_grid(linear_field, sphere.bounds_mm, (3.0, 2.0, 2.0), margin_mm=9.0,
                     shift_mm=(1.1, 0.4, -0.9))
    folder, uids = new_folder(tmp_path, rtstruct_template)
    ph.write_rtplan(folder / "RP.dcm", uids, n_beams=2)
    ph.write_rtdose(folder / "RD1.dcm", a, uids, plan_uid=uids.plan, summation="BEAM",
                    beam_number=1, factor=0.6)
    ph.write_rtdose(folder / "RD2.dcm", b, uids, plan_uid=uids.plan, summation="BEAM",
                    beam_number=2, factor=0.4)
    plan = load_plan(folder)
    assert "dose_grids_resampled" in codes(plan)
    ph.assert_close(slab_dvh(plan), ph.linear_truth(sphere, linear_field), "2 beams, 2 grids")


def test_staged_courses_are_summed(tmp_path, rtstruct_template, gaussian_grid, gaussian_truth):
    folder, uids = new_folder(tmp_path, rtstruct_template)
    first = ph.Uids(frame=uids.frame, study=uids.study, structure_set=uids.structure_set)
    second = ph.Uids(frame=uids.frame, study=uids.study, structure_set=uids.structure_set)
    for name, u, share in (("c1", first, 0.75), ("c2", second, 0.25)):
        ph.write_rtplan(folder / f"RP_{name}.dcm", u, label=name.upper())
        ph.write_rtdose(folder / f"RD_{name}.dcm", gaussian_grid, u, plan_uid=u.plan, factor=share)
    plan = load_plan(folder)
    assert sorted(c.label for c in plan.courses) == ["C1", "C2"]
    assert_same_grid(plan.dose, gaussian_grid, atol_gy=1e-5)
    assert "courses_summed" in codes(plan)
    ph.assert_close(slab_dvh(plan), gaussian_truth, "two courses")


def test_relative_dose_needs_a_normalisation(tmp_path, rtstruct_template, gaussian_grid):
    folder, uids = new_folder(tmp_path, rtstruct_template)
    write_plan(folder, gaussian_grid, uids, units="RELATIVE", factor=1 / 50.0)
    with pytest.raises(DicomError, match=r"RD\.dcm.*DoseUnits \(3004,0002\).*RELATIVE"):
        load_plan(folder)
    plan = load_plan(folder, normalisation_gy=50.0)
    assert_same_grid(plan.dose, gaussian_grid, atol_gy=1e-5)


def test_structure_set_and_dose_without_plan(tmp_path, rtstruct_template, gaussian_grid,
                                             gaussian_truth):
    folder, uids = new_folder(tmp_path, rtstruct_template)
    ph.write_rtdose(folder / "RD.dcm", gaussian_grid, uids)
    plan = load_plan(folder)
    assert_same_grid(plan.dose, gaussian_grid)
    assert [c.dose is not None for c in plan.courses] == [True]
    ph.assert_close(slab_dvh(plan), gaussian_truth, "no RTPLAN")


# --------------------------------------------------------------------------- structures

def test_point_open_and_empty_rois(tmp_path, sphere, gaussian_grid):
    uids = ph.Uids()
    contours = sphere.contours_3d()
    rois = [
        ph.Roi.of(sphere, 1, "PTV"),
        ph.Roi(2, "Marker", [("POINT", np.array([[1.0, 2.0, 12.5]]))], "MARKER"),
        ph.Roi(3, "PTV+line", contours[:2] + [("OPEN_PLANAR", contours[3])]),
        ph.Roi(4, "Empty", []),
    ]
    folder = tmp_path / "plan"
    ph.write_rtstruct(folder / "RS.dcm", rois, uids)
    write_plan(folder, gaussian_grid, uids)
    plan = load_plan(folder)
    assert set(plan.structures) == {"PTV", "Marker", "PTV+line", "Empty"}
    skipped = {f.structure for f in plan.findings if f.code == "contour_type_skipped"}
    assert skipped == {"Marker", "PTV+line"}
    empty = {f.structure for f in plan.findings if f.code == "empty_roi"}
    assert empty == {"Empty"}
    points = {f.structure for f in plan.findings if f.code == "point_roi_skipped"}
    assert points == {"Marker"}
    assert plan.structures["PTV+line"].n_polygons == 2
    assert plan.structures["Empty"].is_empty
    dvh = compute_dvh(plan, "Empty")
    assert dvh.volume_cc == 0 and "empty_roi" in [f.code for f in dvh.findings]


def test_duplicate_roi_names(tmp_path, sphere, gaussian_grid):
    uids = ph.Uids()
    small = ph.sphere(5.0, CENTRE, spacing=2.5, n_vertices=N_VERTICES)
    folder = tmp_path / "plan"
    ph.write_rtstruct(folder / "RS.dcm", [ph.Roi.of(sphere, 1, "PTV"), ph.Roi.of(small, 7, "PTV")],
                      uids)
    write_plan(folder, gaussian_grid, uids)
    plan = load_plan(folder)
    assert set(plan.structures) == {"PTV", "PTV (ROI 7)"}
    assert "duplicate_roi_name" in codes(plan)
    assert slab_dvh(plan, "PTV").volume_cc == pytest.approx(sphere.volume_cc, rel=0.01)
    assert slab_dvh(plan, "PTV (ROI 7)").volume_cc == pytest.approx(small.volume_cc, rel=0.01)


def test_frame_of_reference_only_in_roi_items(tmp_path, sphere, gaussian_grid):
    uids = ph.Uids()
    folder = tmp_path / "plan"
    path = ph.write_rtstruct(folder / "RS.dcm", [ph.Roi.of(sphere, 1, "PTV")], uids,
                             frame_location="roi_only")
    assert "ReferencedFrameOfReferenceSequence" not in pydicom.dcmread(path)
    write_plan(folder, gaussian_grid, uids)
    plan = load_plan(folder)
    assert plan.frame_of_reference_uid == uids.frame
    assert "frame_of_reference_missing" not in codes(plan)


def test_structure_set_without_frame_of_reference(tmp_path, sphere, gaussian_grid):
    uids = ph.Uids()
    folder = tmp_path / "plan"
    ph.write_rtstruct(folder / "RS.dcm", [ph.Roi.of(sphere, 1, "PTV")], uids, frame_location="none")
    write_plan(folder, gaussian_grid, uids)
    plan = load_plan(folder)
    assert "frame_of_reference_missing" in codes(plan)


# --------------------------------------------------------------------------- linking

def test_frame_of_reference_mismatch(tmp_path, rtstruct_template, gaussian_grid):
    folder, uids = new_folder(tmp_path, rtstruct_template)
    ph.write_rtdose(folder / "RD.dcm", gaussian_grid, uids, frame_uid=ph._uid())
    with pytest.raises(PlanLinkError, match=r"FrameOfReferenceUID \(0020,0052\).*RD\.dcm"):
        load_plan(folder)


def test_several_patients(tmp_path, rtstruct_template, gaussian_grid):
    folder, uids = new_folder(tmp_path, rtstruct_template)
    ph.write_rtdose(folder / "RD.dcm", gaussian_grid, uids, patient_id="SOMEONE ELSE")
    with pytest.raises(PlanLinkError, match=r"PatientID \(0010,0020\)"):
        load_plan(folder)


def test_no_structure_set(tmp_path, gaussian_grid):
    folder = tmp_path / "plan"
    ph.write_rtdose(folder / "RD.dcm", gaussian_grid, ph.Uids())
    with pytest.raises(PlanLinkError, match="no RTSTRUCT"):
        load_plan(folder)


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf"])
def test_a_contour_value_that_is_not_a_number_is_an_error(tmp_path, rtstruct_template,
                                                          gaussian_grid, bad):
    # not valid DICOM, but it parses as a float: the engine would get NaN vertices
    folder, uids = new_folder(tmp_path, rtstruct_template)
    ds = pydicom.dcmread(folder / "RS.dcm")
    item = ds.ROIContourSequence[0].ContourSequence[2]
    values = [str(v) for v in item.ContourData]
    values[4] = bad
    mode = pydicom.config.settings.writing_validation_mode
    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE
    try:
        with pytest.warns(UserWarning, match="Invalid value for VR DS"):
            item["ContourData"].value = values
        ds.save_as(folder / "RS.dcm")
    finally:
        pydicom.config.settings.writing_validation_mode = mode
    write_plan(folder, gaussian_grid, uids)
    with pytest.raises(DicomError, match=r"RS\.dcm.*ContourData \(3006,0050\).*'PTV'.*finite"):
        load_plan(folder)


@pytest.mark.parametrize("where", ["StructureSetROISequence", "ROIContourSequence"])
def test_an_empty_roi_number_is_an_error(tmp_path, rtstruct_template, gaussian_grid, where):
    # found by mutating sample plans: int(None) failed with a TypeError
    folder, uids = new_folder(tmp_path, rtstruct_template)
    ds = pydicom.dcmread(folder / "RS.dcm")
    keyword = "ROINumber" if where == "StructureSetROISequence" else "ReferencedROINumber"
    ds[where][0][keyword].value = ""
    ds.save_as(folder / "RS.dcm")
    write_plan(folder, gaussian_grid, uids)
    with pytest.raises(DicomError, match=rf"RS\.dcm.*{keyword} \(3006,00(22|84)\)"):
        load_plan(folder)


def test_not_a_folder(tmp_path):
    with pytest.raises(DicomError, match="not a folder"):
        load_plan(tmp_path / "missing")


@pytest.mark.filterwarnings("ignore:End of file reached before delimiter")
def test_other_files_are_ignored(tmp_path, rtstruct_template, gaussian_grid, gaussian_truth):
    folder, uids = new_folder(tmp_path, rtstruct_template)
    write_plan(folder, gaussian_grid, uids)
    (folder / "README.txt").write_text("exported by a TPS\n")
    (folder / "empty").write_bytes(b"")
    (folder / "random.bin").write_bytes(np.random.default_rng(0).bytes(4096))
    (folder / "fake.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 40)
    (folder / "sub").mkdir()
    (folder / "sub" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    ph.write_ct_like(folder / "sub" / "CT.1.dcm", uids)
    plan = load_plan(folder)
    assert_same_grid(plan.dose, gaussian_grid)
    ph.assert_close(slab_dvh(plan), gaussian_truth, "with other files")


def test_files_without_preamble(tmp_path, rtstruct_template, gaussian_grid, gaussian_truth):
    """Bare datasets (no 128-byte preamble, no file meta, implicit VR), as some older exporters
    write them, are RT files too."""
    from pydicom.filebase import DicomFileLike
    from pydicom.filewriter import write_dataset

    folder, uids = new_folder(tmp_path, rtstruct_template)
    write_plan(folder, gaussian_grid, uids)
    for name in ("RS.dcm", "RD.dcm", "RP.dcm"):
        ds = pydicom.dcmread(folder / name)
        with open(folder / name, "wb") as fh:
            fp = DicomFileLike(fh)
            fp.is_little_endian, fp.is_implicit_VR = True, True
            write_dataset(fp, ds)
        assert (folder / name).read_bytes()[:2] == b"\x08\x00"
    plan = load_plan(folder)
    assert len(plan.courses) == 1 and plan.courses[0].fractions == 5
    assert_same_grid(plan.dose, gaussian_grid)
    ph.assert_close(slab_dvh(plan), gaussian_truth, "bare datasets")


def test_read_dose_grid_directly(tmp_path, gaussian_grid):
    path = ph.write_rtdose(tmp_path / "RD.dcm", gaussian_grid, ph.Uids(), orientation="HFP")
    grid = read_dose_grid(pydicom.dcmread(path), path)
    assert_same_grid(grid, gaussian_grid)
    assert grid.source_files == (str(path),)
