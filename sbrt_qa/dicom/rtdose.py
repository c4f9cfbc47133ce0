"""RTDOSE -> :class:`~sbrt_qa.models.DoseGrid`.

Geometry handled: axis-aligned orientations with either sign (HFS, FFS, HFP, FFP), relative and
absolute GridFrameOffsetVector, uneven frame spacing. The grid is reordered so that its
coordinate vectors ascend; the array is ``[z, y, x]`` float64 in Gy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import DicomError
from ..models import DoseGrid
from ._common import as_float, floats, require, tag_name

#: direction cosines within this of +-1 / 0 count as axis-aligned
ORIENTATION_TOLERANCE = 1e-4
#: no external-beam dose grid holds more (Gy; an SBRT course peaks below 100 Gy): above it the
#: values are in other units (cGy labelled GY) or the DoseGridScaling is wrong. Input
#: validation, not a clinical limit
MAX_PLAUSIBLE_DOSE_GY = 1000.0


@dataclass(frozen=True)
class DoseHeader:
    """What the linker needs from an RTDOSE before its pixels are read."""

    path: str
    sop_instance_uid: str
    frame_of_reference_uid: str | None
    summation_type: str
    dose_type: str
    units: str
    referenced_plan_uid: str | None
    referenced_fraction_group: int | None
    referenced_beam: int | None


def read_dose_header(ds, path) -> DoseHeader:
    plan_uid = fg = beam = None
    ref = ds.get("ReferencedRTPlanSequence") or []
    if len(ref):
        plan_uid = str(ref[0].get("ReferencedSOPInstanceUID", "") or "") or None
        fgs = ref[0].get("ReferencedFractionGroupSequence") or []
        if len(fgs):
            fg = fgs[0].get("ReferencedFractionGroupNumber")
            beams = fgs[0].get("ReferencedBeamSequence") or []
            if len(beams):
                beam = beams[0].get("ReferencedBeamNumber")
    return DoseHeader(
        path=str(path),
        sop_instance_uid=str(ds.get("SOPInstanceUID", "")),
        frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "") or "") or None,
        summation_type=str(ds.get("DoseSummationType", "") or "").upper(),
        dose_type=str(ds.get("DoseType", "") or "").upper(),
        units=str(ds.get("DoseUnits", "") or "").upper(),
        referenced_plan_uid=plan_uid,
        referenced_fraction_group=None if fg is None else int(fg),
        referenced_beam=None if beam is None else int(beam),
    )


def _axis_sign(cosines: np.ndarray, path) -> tuple[int, int]:
    """(axis index 0/1/2, sign) of an axis-aligned direction-cosine triplet."""
    a = int(np.argmax(np.abs(cosines)))
    if abs(abs(cosines[a]) - 1) > ORIENTATION_TOLERANCE or np.any(
            np.abs(np.delete(cosines, a)) > ORIENTATION_TOLERANCE):
        raise DicomError(f"oblique dose grid orientation {list(np.round(cosines, 6))} is not "
                         "supported: only axis-aligned grids (HFS, FFS, HFP, FFP)", path=path,
                         tag=tag_name("ImageOrientationPatient"))
    return a, int(np.sign(cosines[a]))


def read_dose_grid(ds, path, *, normalisation_gy: float | None = None) -> DoseGrid:
    """Read a full RTDOSE dataset into a DoseGrid in Gy.

    Parameters
    ----------
    ds : pydicom.Dataset
        The RTDOSE with pixel data.
    path : str
        Its file, for messages.
    normalisation_gy : float, optional
        For ``DoseUnits RELATIVE``: the absolute dose in Gy of relative value 1.0.

    Raises
    ------
    DicomError
        Missing geometry, oblique orientation, unknown units, inconsistent frame offsets.
    """
    path = str(path)
    units = str(require(ds, "DoseUnits", path)).upper()
    factor = 1.0
    if units == "RELATIVE":
        if normalisation_gy is None:
            raise DicomError("DoseUnits is RELATIVE: give the absolute dose of relative 1.0 "
                             "(normalisation in Gy) to use this grid", path=path,
                             tag=tag_name("DoseUnits"))
        factor = float(normalisation_gy)
    elif units == "CGY":  # not in the standard, but written by some exporters
        factor = 0.01
    elif units != "GY":
        raise DicomError(f"unknown DoseUnits {units!r} (the standard allows GY or RELATIVE)",
                         path=path, tag=tag_name("DoseUnits"))
    if str(ds.get("DoseType", "PHYSICAL")).upper() == "ERROR":
        raise DicomError("DoseType ERROR is a dose difference, not a dose", path=path,
                         tag=tag_name("DoseType"))

    rows = int(require(ds, "Rows", path))
    cols = int(require(ds, "Columns", path))
    frames_value = ds.get("NumberOfFrames")
    frames = 1 if frames_value is None or str(frames_value).strip() == "" else int(frames_value)
    for keyword, n in (("Rows", rows), ("Columns", cols), ("NumberOfFrames", frames)):
        if n < 1:
            raise DicomError(f"{keyword} is {n}: a dose grid needs at least one", path=path,
                             tag=tag_name(keyword))
    ipp = floats(require(ds, "ImagePositionPatient", path), "ImagePositionPatient", path, 3)
    iop = floats(require(ds, "ImageOrientationPatient", path), "ImageOrientationPatient", path, 6)
    spacing = floats(require(ds, "PixelSpacing", path), "PixelSpacing", path, 2)
    scaling = as_float(ds.get("DoseGridScaling", 1.0), "DoseGridScaling", path)
    if "DoseGridScaling" not in ds and str(ds.get("BitsAllocated", 32)) != "32":
        raise DicomError("integer dose without DoseGridScaling", path=path,
                         tag=tag_name("DoseGridScaling"))
    if not (math.isfinite(scaling) and scaling > 0):
        raise DicomError(f"DoseGridScaling {scaling} must be a positive number", path=path,
                         tag=tag_name("DoseGridScaling"))
    if np.any(spacing <= 0):
        raise DicomError(f"PixelSpacing {list(spacing)} must be positive", path=path,
                         tag=tag_name("PixelSpacing"))

    row_dir, col_dir = iop[:3], iop[3:]
    row_axis, row_sign = _axis_sign(row_dir, path)   # moving along a row: column index grows
    col_axis, col_sign = _axis_sign(col_dir, path)   # moving down a column: row index grows
    if (row_axis, col_axis) != (0, 1):
        raise DicomError("only axial dose grids are supported (rows along x, columns along y); "
                         f"ImageOrientationPatient is {list(iop)}", path=path,
                         tag=tag_name("ImageOrientationPatient"))
    normal_z = row_sign * col_sign  # z component of row x col for axis-aligned axial grids

    if frames > 1:
        offsets = floats(require(ds, "GridFrameOffsetVector", path), "GridFrameOffsetVector", path)
        if offsets.size != frames:
            raise DicomError(f"{offsets.size} offsets for {frames} frames", path=path,
                             tag=tag_name("GridFrameOffsetVector"))
        if offsets[0] == 0:
            z = ipp[2] + normal_z * offsets
        elif abs(offsets[0] - ipp[2]) < 1e-3:
            # absolute form (C.8.8.3.2 case b): the offsets are the z coordinates themselves
            z = offsets.copy()
        else:
            raise DicomError(f"first offset {offsets[0]} is neither 0 (relative) nor the "
                             f"ImagePositionPatient z {ipp[2]} (absolute)", path=path,
                             tag=tag_name("GridFrameOffsetVector"))
    else:
        z = np.array([ipp[2]])
    if np.unique(z).size != z.size:
        raise DicomError("two frames at the same z", path=path, tag=tag_name("GridFrameOffsetVector"))

    x = ipp[0] + row_sign * spacing[1] * np.arange(cols)
    y = ipp[1] + col_sign * spacing[0] * np.arange(rows)

    raw = _pixels(ds, path, frames, rows, cols)
    # reorder to ascending coordinates with views; one copy happens in the scaling below
    if row_sign < 0:
        raw, x = raw[:, :, ::-1], x[::-1]
    if col_sign < 0:
        raw, y = raw[:, ::-1, :], y[::-1]
    order = np.argsort(z, kind="stable")
    if np.any(order != np.arange(z.size)):
        if np.all(order == np.arange(z.size)[::-1]):
            raw = raw[::-1]
        else:
            raw = raw[order]
        z = z[order]
    dose = np.empty(raw.shape, dtype=np.float64)
    np.multiply(raw, scaling * factor, out=dose, casting="unsafe")
    if not np.all(np.isfinite(dose)):
        raise DicomError("dose grid holds non-finite values", path=path, tag=tag_name("PixelData"))
    peak = float(np.abs(dose).max()) if dose.size else 0.0
    if peak > MAX_PLAUSIBLE_DOSE_GY:
        raise DicomError(f"dose grid reaches {peak:.4g} Gy, not a "
                         f"radiotherapy dose (over {MAX_PLAUSIBLE_DOSE_GY:g} Gy): values in cGy, "
                         "or a wrong DoseGridScaling?", path=path,
                         tag=tag_name("DoseGridScaling"))
    return DoseGrid(dose_gy=dose, x_mm=np.ascontiguousarray(x), y_mm=np.ascontiguousarray(y),
                    z_mm=np.ascontiguousarray(z), frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "") or "") or None,
                    summation_type=str(ds.get("DoseSummationType", "PLAN")).upper(),
                    source_files=(path,))


def _pixels(ds, path, frames: int, rows: int, cols: int) -> np.ndarray:
    if "PixelData" not in ds or not ds.PixelData:
        raise DicomError("RTDOSE has no dose values", path=path, tag=tag_name("PixelData"))
    bits = int(ds.get("BitsAllocated", 0) or 0)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    n = frames * rows * cols
    ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    uncompressed = ts is None or not ts.is_compressed
    if uncompressed and bits in (16, 32) and (ts is None or ts.is_little_endian):
        # zero-copy view on the file's bytes: no decoded copy of the whole grid
        dtype = np.dtype(("<i" if signed else "<u") + str(bits // 8))
        buf = ds.PixelData
        # (one byte more is the padding to an even length; more than that means the header's
        # NumberOfFrames, Rows or Columns do not describe these values)
        if not n * dtype.itemsize <= len(buf) <= n * dtype.itemsize + 1:
            raise DicomError(f"PixelData holds {len(buf)} bytes, {n * dtype.itemsize} expected "
                             f"for {frames} x {rows} x {cols} values of {bits} bits", path=path,
                             tag=tag_name("PixelData"))
        return np.frombuffer(buf, dtype=dtype, count=n).reshape(frames, rows, cols)
    try:
        arr = ds.pixel_array
    except Exception as exc:  # pydicom raises several types for undecodable pixel data
        raise DicomError(f"cannot decode dose values: {exc}", path=path, tag=tag_name("PixelData")) from exc
    arr = np.asarray(arr)
    if arr.size != n:
        raise DicomError(f"PixelData holds {arr.size} values, {n} expected for {frames} x {rows} "
                         f"x {cols}", path=path, tag=tag_name("PixelData"))
    return arr.reshape(frames, rows, cols)
