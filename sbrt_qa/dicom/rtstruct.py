"""RTSTRUCT -> :class:`~sbrt_qa.models.Structure` objects."""

from __future__ import annotations

import logging

import numpy as np

from ..errors import DicomError
from ..models import Finding, Structure
from ._common import parse_ds_bytes, raw_ds_values, tag_name

log = logging.getLogger(__name__)

CONTOUR_DATA = 0x30060050
CONTOUR_GEOMETRIC_TYPE = 0x30060042
#: contours lying further than this from a plane (mm) make the ROI non-axial
PLANAR_TOLERANCE_MM = 0.01
#: RTROIInterpretedType values of point-like ROIs, which have no volume by design
POINT_TYPES = ("MARKER", "ISOCENTER", "REGISTRATION", "FIXATION", "CONTROL")


def structure_set_frame_uid(ds) -> str | None:
    """The frame of reference of an RTSTRUCT.

    Taken from ReferencedFrameOfReferenceSequence, else from the StructureSetROISequence items
    (some exporters, and the Nelms benchmark files, carry it only there), else the top level.
    """
    for item in ds.get("ReferencedFrameOfReferenceSequence", []) or []:
        uid = item.get("FrameOfReferenceUID")
        if uid:
            return str(uid)
    for item in ds.get("StructureSetROISequence", []) or []:
        uid = item.get("ReferencedFrameOfReferenceUID")
        if uid:
            return str(uid)
    uid = ds.get("FrameOfReferenceUID")
    return str(uid) if uid else None


def read_structures(ds, path) -> tuple[dict[str, Structure], list[Finding]]:
    """Read every ROI of an RTSTRUCT dataset.

    Parameters
    ----------
    ds : pydicom.Dataset
        The RTSTRUCT, fully read.
    path : str
        Its file, for messages.

    Returns
    -------
    structures : dict of str to Structure
        Keyed by ROI name; a duplicate name gets the suffix `` (ROI <number>)``.
    findings : list of Finding
        Empty ROIs, skipped POINT/OPEN_PLANAR contours, duplicate names, non-axial contours.
    """
    findings: list[Finding] = []
    path = str(path)
    if "StructureSetROISequence" not in ds:
        raise DicomError("RTSTRUCT has no ROI definitions", path=path,
                         tag=tag_name("StructureSetROISequence"))
    names: dict[int, str] = {}
    for item in ds.StructureSetROISequence:
        number = _roi_number(item, "ROINumber", "an ROI definition", path)
        names[number] = str(item.get("ROIName", "") or f"ROI {number}").strip()
    types: dict[int, str] = {}
    for item in ds.get("RTROIObservationsSequence", []) or []:
        if item.get("ReferencedROINumber") not in (None, ""):
            number = _roi_number(item, "ReferencedROINumber", "an ROI observation", path)
            types[number] = str(item.get("RTROIInterpretedType", "") or "").upper()

    contours_by_roi: dict[int, tuple] = {}
    for roi_item in ds.get("ROIContourSequence", []) or []:
        number = _roi_number(roi_item, "ReferencedROINumber", "an ROI contour item", path)
        name = names.get(number, f"ROI {number}")
        color = roi_item.get("ROIDisplayColor")
        color = tuple(int(c) for c in color) if color is not None and len(color) == 3 else None
        raws, skipped = [], {}
        for c in roi_item.get("ContourSequence", []) or []:
            gtype = _geometric_type(c, path)
            if gtype not in ("CLOSED_PLANAR", "CLOSEDPLANAR_XOR"):
                skipped[gtype] = skipped.get(gtype, 0) + 1
                continue
            raw = raw_ds_values(c, CONTOUR_DATA, path)
            if not raw:
                continue
            raws.append(raw)
        for gtype, n in skipped.items():
            findings.append(Finding("warning", "contour_type_skipped",
                                    f"{n} {gtype} contour(s) of {name!r} skipped: only CLOSED_PLANAR "
                                    "contours enclose a volume", path=path, structure=name))
        contours_by_roi[number] = (raws, color)

    structures: dict[str, Structure] = {}
    for number, name in names.items():
        raws, color = contours_by_roi.get(number, ([], None))
        polygons = _polygons(raws, name, path, findings)
        key = name
        if key in structures:
            key = f"{name} (ROI {number})"
            findings.append(Finding("warning", "duplicate_roi_name",
                                    f"ROI name {name!r} is used more than once; ROI {number} is "
                                    f"listed as {key!r}", path=path, structure=name))
        s = Structure.from_polygons(key, polygons, roi_number=number,
                                    interpreted_type=types.get(number, ""), color=color,
                                    source_file=path)
        if s.is_empty and s.interpreted_type in POINT_TYPES:
            findings.append(Finding("info", "point_roi_skipped",
                                    f"ROI {key!r} is a {s.interpreted_type} point, not a volume",
                                    path=path, structure=key))
        elif s.is_empty:
            findings.append(Finding("warning", "empty_roi",
                                    f"ROI {key!r} has no closed contours: it has no volume and "
                                    "cannot be evaluated", path=path, structure=key))
        structures[key] = s
    return structures, findings


def _roi_number(item, keyword: str, what: str, path) -> int:
    """The integer ROI number ``item.<keyword>``; a DicomError naming the tag when it is
    missing, empty or not a whole number."""
    value = item.get(keyword)
    try:
        if value in (None, ""):
            raise ValueError
        number = float(value)
        if number != int(number):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise DicomError(f"{what} lacks its ROI number (found {value!r})", path=path,
                         tag=tag_name(keyword)) from None
    return int(number)


def _geometric_type(item, path) -> str:
    """ContourGeometricType of a contour item, from its raw bytes (pydicom's value conversion
    costs more than the contour data itself); CLOSED_PLANAR when absent."""
    raw = raw_ds_values(item, CONTOUR_GEOMETRIC_TYPE, path)
    if raw is None:
        return "CLOSED_PLANAR"
    return raw.decode("ascii", "replace").strip(" \x00").upper()


def _polygons(raws: list[bytes], name: str, path: str, findings: list[Finding]):
    if not raws:
        return []
    # one parse for the whole ROI: per-contour numpy calls cost more than the parsing itself
    values = parse_ds_bytes(b"\\".join(raws), path, "ContourData")
    lengths = np.array([r.count(b"\\") + 1 for r in raws])
    if values.size != lengths.sum() or np.any(lengths % 3):
        raise DicomError(f"contour of ROI {name!r} does not hold x\\y\\z triplets", path=path,
                         tag=tag_name("ContourData"))
    if not np.all(np.isfinite(values)):
        raise DicomError(f"contour of ROI {name!r} holds a value that is not a finite number "
                         "(NaN or infinity)", path=path, tag=tag_name("ContourData"))
    out = []
    start = 0
    non_planar = 0
    for n in lengths:
        pts = values[start:start + n].reshape(-1, 3)
        start += n
        z = pts[:, 2]
        if z.max() - z.min() > PLANAR_TOLERANCE_MM:
            non_planar += 1
            continue
        if pts.shape[0] < 3:
            continue
        out.append((float(z.mean()), pts[:, :2]))
    if non_planar:
        findings.append(Finding("error", "non_axial_contour",
                                f"{non_planar} contour(s) of {name!r} are not in an axial plane and "
                                "were left out: its volume is incomplete", path=path, structure=name))
    return out
