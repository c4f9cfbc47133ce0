"""Synthetic DICOM RT cases for the benchmarks, written with pydicom into a folder.

* :func:`write_liver_case`: an SBRT liver plan: a ~1.5 L ellipsoid liver, a PTV and GTV inside
  it, a few OARs and a body outline, 200-vertex contours every 2 mm, and a steep SBRT-like dose
  (50 Gy to the PTV rim, ~62 Gy centre) on a 2.5 mm grid stored as uint32 with DoseGridScaling.
* :func:`write_big_grid_case`: a 1 mm grid of 512 x 512 x 200 (uint32) and one sphere, for the
  peak-memory measurement.

Coordinates are DICOM patient coordinates (mm, HFS axial). Nothing here depends on sbrt-qa, so
the benchmark inputs stay independent of the code under test.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

RTDOSE_SOP = "1.2.840.10008.5.1.4.1.1.481.2"
RTSTRUCT_SOP = "1.2.840.10008.5.1.4.1.1.481.3"
N_VERTICES = 200
PLANE_SPACING_MM = 2.0
LIVER_GRID_MM = 2.5
PTV_CENTRE_MM = (-70.0, 10.0, 5.0)
PTV_RADIUS_MM = 20.0

#: name -> (kind, centre (x, y, z) mm, semi-axes (a, b, c) mm, RTROIInterpretedType)
LIVER_STRUCTURES = {
    "Body": ("ellipsoid_cyl", (0.0, 0.0, 0.0), (170.0, 120.0, 140.0), "EXTERNAL"),
    "Liver": ("ellipsoid", (-60.0, 0.0, 0.0), (100.0, 70.0, 51.0), "ORGAN"),
    "PTV": ("ellipsoid", PTV_CENTRE_MM, (PTV_RADIUS_MM,) * 3, "PTV"),
    "GTV": ("ellipsoid", PTV_CENTRE_MM, (15.0, 15.0, 15.0), "GTV"),
    "Stomach": ("ellipsoid", (45.0, -20.0, 10.0), (40.0, 30.0, 45.0), "ORGAN"),
    "Duodenum": ("ellipsoid", (5.0, 15.0, -25.0), (15.0, 12.0, 30.0), "ORGAN"),
    "Kidney_R": ("ellipsoid", (-75.0, 70.0, -45.0), (30.0, 25.0, 55.0), "ORGAN"),
    "SpinalCord": ("ellipsoid_cyl", (0.0, 80.0, 0.0), (6.0, 6.0, 130.0), "ORGAN"),
}


def _meta(sop_class: str, sop_uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def _base(path: Path, sop_class: str, modality: str, study_uid: str, frame_uid: str) -> FileDataset:
    sop_uid = generate_uid()
    ds = FileDataset(str(path), {}, file_meta=_meta(sop_class, sop_uid), preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.Modality = modality
    ds.PatientID = "SBRTQA-BENCH"
    ds.PatientName = "Benchmark^Synthetic"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = generate_uid()
    ds.FrameOfReferenceUID = frame_uid
    ds.StudyDate = "20240101"
    ds.Manufacturer = "sbrt-qa benchmarks"
    return ds


def _ellipse(cx: float, cy: float, a: float, b: float, n: int = N_VERTICES) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    return np.column_stack([cx + a * np.cos(t), cy + b * np.sin(t)])


def structure_polygons(kind: str, centre, axes, spacing_mm: float = PLANE_SPACING_MM):
    """``[(z_mm, vertices (n, 2))]`` of an ellipsoid (or an elliptic cylinder) on planes at
    multiples of ``spacing_mm``."""
    cx, cy, cz = centre
    a, b, c = axes
    k0 = math.ceil((cz - c) / spacing_mm + 1e-9)
    k1 = math.floor((cz + c) / spacing_mm - 1e-9)
    out = []
    for k in range(k0, k1 + 1):
        z = k * spacing_mm
        s = 1.0 if kind == "ellipsoid_cyl" else math.sqrt(max(0.0, 1.0 - ((z - cz) / c) ** 2))
        if s * min(a, b) < 0.5:
            continue
        out.append((z, _ellipse(cx, cy, a * s, b * s)))
    return out


def _contour_data(z: float, pts: np.ndarray) -> list[str]:
    xyz = np.column_stack([pts, np.full(len(pts), z)])
    return [f"{v:.3f}" for v in xyz.ravel()]


def write_rtstruct(path: Path, structures: dict, study_uid: str, frame_uid: str) -> Path:
    """Write an RTSTRUCT; ``structures`` maps name -> (polygons, interpreted type)."""
    ds = _base(path, RTSTRUCT_SOP, "RTSTRUCT", study_uid, frame_uid)
    ds.StructureSetLabel = "BENCH"
    ref = Dataset()
    ref.FrameOfReferenceUID = frame_uid
    ds.ReferencedFrameOfReferenceSequence = Sequence([ref])
    rois, contours, observations = [], [], []
    for number, (name, (polys, rtype)) in enumerate(structures.items(), start=1):
        roi = Dataset()
        roi.ROINumber = number
        roi.ReferencedFrameOfReferenceUID = frame_uid
        roi.ROIName = name
        roi.ROIGenerationAlgorithm = "MANUAL"
        rois.append(roi)
        rc = Dataset()
        rc.ReferencedROINumber = number
        rc.ROIDisplayColor = [(53 * number) % 256, (97 * number) % 256, (151 * number) % 256]
        items = []
        for z, pts in polys:
            c = Dataset()
            c.ContourGeometricType = "CLOSED_PLANAR"
            c.NumberOfContourPoints = len(pts)
            c.ContourData = _contour_data(z, pts)
            items.append(c)
        rc.ContourSequence = Sequence(items)
        contours.append(rc)
        obs = Dataset()
        obs.ObservationNumber = number
        obs.ReferencedROINumber = number
        obs.RTROIInterpretedType = rtype
        obs.ROIInterpreter = ""
        observations.append(obs)
    ds.StructureSetROISequence = Sequence(rois)
    ds.ROIContourSequence = Sequence(contours)
    ds.RTROIObservationsSequence = Sequence(observations)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_rtdose(path: Path, counts: np.ndarray, scaling_gy: float, origin_mm, spacing_mm,
                 study_uid: str, frame_uid: str) -> Path:
    """Write an RTDOSE from a ``[z, y, x]`` uint32 array of counts (dose = counts * scaling)."""
    nz, ny, nx = counts.shape
    ds = _base(path, RTDOSE_SOP, "RTDOSE", study_uid, frame_uid)
    ds.ImagePositionPatient = [f"{v:.4f}" for v in origin_mm]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [f"{spacing_mm[1]:g}", f"{spacing_mm[0]:g}"]  # row spacing (y), column (x)
    ds.SliceThickness = f"{spacing_mm[2]:g}"
    ds.NumberOfFrames = nz
    ds.GridFrameOffsetVector = [f"{k * spacing_mm[2]:g}" for k in range(nz)]
    ds.FrameIncrementPointer = pydicom.tag.Tag("GridFrameOffsetVector")
    ds.Rows, ds.Columns = ny, nx
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 32
    ds.HighBit = 31
    ds.PixelRepresentation = 0
    ds.DoseUnits = "GY"
    ds.DoseType = "PHYSICAL"
    ds.DoseSummationType = "PLAN"
    ds.DoseGridScaling = f"{scaling_gy:.6g}"
    ds.PixelData = np.ascontiguousarray(counts, dtype="<u4").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def sbrt_dose_gy(x, y, z, *, rx_gy: float = 50.0, peak_gy: float = 62.5,
                 centre=PTV_CENTRE_MM, radius_mm: float = PTV_RADIUS_MM,
                 falloff_mm: float = 9.0, bath_gy: float = 4.0, body_axes=(170.0, 120.0)):
    """SBRT-like dose (Gy) at broadcastable coordinates: a hot core, ``rx_gy`` at the PTV
    surface, an exponential fall-off (~20 %/mm at the rim, like a 5-field SBRT plan), a broad
    low-dose bath, zero outside the body ellipse."""
    r = np.sqrt((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + ((z - centre[2]) / 1.1) ** 2)
    inside = peak_gy - (peak_gy - rx_gy) * (r / radius_mm) ** 2
    outside = rx_gy * np.exp(-(r - radius_mm) / falloff_mm) + bath_gy * np.exp(-((r / 90.0) ** 2))
    d = np.where(r <= radius_mm, inside + bath_gy * np.exp(-((r / 90.0) ** 2)), outside)
    body = (x / body_axes[0]) ** 2 + (y / body_axes[1]) ** 2 <= 1.0
    return np.where(body, d, 0.0)


def write_liver_case(out_dir, *, grid_mm: float = LIVER_GRID_MM) -> dict:
    """Write the liver SBRT case (``rtstruct.dcm``, ``rtdose.dcm``) into ``out_dir``.

    Returns
    -------
    dict
        ``dir``, ``rtstruct``, ``rtdose`` (paths), ``roi_numbers`` (name -> ROI number),
        ``shape`` of the dose grid (z, y, x), ``n_contour_values``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    study_uid, frame_uid = generate_uid(), generate_uid()
    structures = {name: (structure_polygons(kind, c, ax), rtype)
                  for name, (kind, c, ax, rtype) in LIVER_STRUCTURES.items()}
    ss = write_rtstruct(out / "rtstruct.dcm", structures, study_uid, frame_uid)
    # grid: body-covering box, node spacing grid_mm, origin on a half-node offset from 0 so that
    # contour planes (multiples of 2 mm) do not all sit on dose nodes
    x = np.arange(-180.0, 180.0 + 1e-9, grid_mm) + 0.25
    y = np.arange(-130.0, 130.0 + 1e-9, grid_mm) + 0.25
    z = np.arange(-150.0, 150.0 + 1e-9, grid_mm) + 0.25
    dose = sbrt_dose_gy(x[None, None, :], y[None, :, None], z[:, None, None])
    scaling = 1e-6
    counts = np.rint(dose / scaling).astype(np.uint32)
    rd = write_rtdose(out / "rtdose.dcm", counts, scaling, (x[0], y[0], z[0]),
                      (grid_mm, grid_mm, grid_mm), study_uid, frame_uid)
    n_values = sum(3 * len(p) for polys, _ in structures.values() for _, p in polys)
    return {"dir": out, "rtstruct": ss, "rtdose": rd,
            "roi_numbers": {n: i for i, n in enumerate(structures, start=1)},
            "shape": counts.shape, "n_contour_values": n_values}


def write_big_grid_case(out_dir, *, shape=(200, 512, 512), grid_mm: float = 1.0,
                        sphere_radius_mm: float = 30.0) -> dict:
    """Write a large 1 mm RTDOSE (uint32) and an RTSTRUCT holding one sphere inside it.

    The dose is built one frame at a time so the writer holds only the uint32 counts.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    study_uid, frame_uid = generate_uid(), generate_uid()
    nz, ny, nx = shape
    x = (np.arange(nx) - (nx - 1) / 2) * grid_mm
    y = (np.arange(ny) - (ny - 1) / 2) * grid_mm
    z = (np.arange(nz) - (nz - 1) / 2) * grid_mm
    centre = (10.0, 5.0, 0.0)
    scaling = 1e-6
    counts = np.empty(shape, dtype=np.uint32)
    body_axes = (x[-1] * 0.95, y[-1] * 0.95)
    for k in range(nz):
        d = sbrt_dose_gy(x[None, :], y[:, None], z[k], centre=centre, body_axes=body_axes)
        counts[k] = np.rint(d / scaling)
    polys = structure_polygons("ellipsoid", centre, (sphere_radius_mm,) * 3, spacing_mm=grid_mm)
    ss = write_rtstruct(out / "rtstruct.dcm", {"Target": (polys, "PTV")}, study_uid, frame_uid)
    rd = write_rtdose(out / "rtdose.dcm", counts, scaling, (x[0], y[0], z[0]),
                      (grid_mm, grid_mm, grid_mm), study_uid, frame_uid)
    return {"dir": out, "rtstruct": ss, "rtdose": rd, "roi_numbers": {"Target": 1},
            "shape": shape, "grid_bytes_float64": int(np.prod(shape)) * 8}
