"""Discover the RT objects of a plan folder, link them by UID and build a :class:`Plan`."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from ..dose import scaled, sum_grids
from ..errors import DicomError, PlanLinkError
from ..models import Course, Finding, Plan
from ._common import tag_name
from .rtdose import DoseHeader, read_dose_grid, read_dose_header
from .rtplan import read_course
from .rtstruct import read_structures, structure_set_frame_uid

log = logging.getLogger(__name__)

RT_MODALITIES = ("RTPLAN", "RTDOSE", "RTSTRUCT")
_HEADER_TAGS = ["Modality", "SOPClassUID", "SOPInstanceUID", "PatientID"]


#: first bytes of a DICOM dataset written without the 128-byte preamble and file meta (an
#: element of group 0008 or 0002, little endian), as some older RT exporters do
_BARE_DATASET_STARTS = (b"\x08\x00", b"\x02\x00")


def _dcmread(path: Path, **kwargs):
    """``pydicom.dcmread`` that also accepts a bare dataset (no preamble, no file meta).

    Only files that start like a dataset are forced, so that other files are not misread.
    """
    try:
        return pydicom.dcmread(path, **kwargs)
    except InvalidDicomError:
        with open(path, "rb") as fh:
            if fh.read(2) not in _BARE_DATASET_STARTS:
                raise
        return pydicom.dcmread(path, force=True, **kwargs)


def _scan(folder: Path) -> dict[str, list[tuple[Path, object]]]:
    """Files of the folder (recursively) by RT modality, with their header datasets."""
    found: dict[str, list] = {m: [] for m in RT_MODALITIES}
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for fname in sorted(files):
            p = Path(root) / fname
            try:
                ds = _dcmread(p, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
            except (InvalidDicomError, OSError, EOFError, ValueError, TypeError):
                log.debug("not a readable DICOM file: %s", p)
                continue
            mod = str(ds.get("Modality", "")).upper()
            if mod in found:
                found[mod].append((p, ds))
    return found


def _read_full(path: Path, *, pixels: bool):
    try:
        return _dcmread(path, stop_before_pixels=not pixels)
    except Exception as exc:  # pydicom raises many types for damaged files
        raise DicomError(f"cannot read: {exc}", path=path) from exc


def load_plan(path, *, normalisation_gy: float | None = None) -> Plan:
    """Load a plan folder: RTSTRUCT, RTDOSE and (optionally) RTPLAN files, any file names.

    Files are found by Modality and linked by UID: RTDOSE -> RTPLAN
    (ReferencedRTPlanSequence), RTPLAN -> RTSTRUCT (ReferencedStructureSetSequence). Several
    RTPLANs (staged courses) each keep their own dose; the plan's ``dose`` is their physical sum.
    CT images and other objects are ignored.

    Parameters
    ----------
    path : str or Path
        The plan folder (searched recursively).
    normalisation_gy : float, optional
        Absolute dose of relative value 1.0, for RTDOSE files with ``DoseUnits RELATIVE``.

    Returns
    -------
    Plan

    Raises
    ------
    DicomError
        A file is unreadable or lacks a required element (the message names file and tag).
    PlanLinkError
        The objects do not belong together (patient, frame of reference, ambiguous structure set).
    """
    folder = Path(path)
    if not folder.is_dir():
        raise DicomError("not a folder (give the folder holding the plan's RT files)", path=folder)
    found = _scan(folder)
    findings: list[Finding] = []
    if not found["RTSTRUCT"]:
        raise PlanLinkError("no RTSTRUCT (structure set) found", path=folder)

    # patient
    pids = {str(ds.get("PatientID", "")) for files in found.values() for _, ds in files}
    pids.discard("")
    if len(pids) > 1:
        raise PlanLinkError(f"files of several patients in one folder: {sorted(pids)}", path=folder,
                            tag=tag_name("PatientID"))
    patient_id = pids.pop() if pids else ""

    # plans
    plan_ds = {}
    for p, hdr in found["RTPLAN"]:
        uid = str(hdr.get("SOPInstanceUID", ""))
        if uid in plan_ds:
            findings.append(Finding("warning", "duplicate_file", f"RTPLAN {uid} appears twice; "
                                    f"{p} ignored", path=str(p)))
            continue
        plan_ds[uid] = (p, _read_full(p, pixels=False))

    # structure set
    ss_files = {str(h.get("SOPInstanceUID", "")): p for p, h in found["RTSTRUCT"]}
    referenced = {ds.ReferencedStructureSetSequence[0].get("ReferencedSOPInstanceUID")
                  for _, ds in plan_ds.values() if ds.get("ReferencedStructureSetSequence")}
    referenced.discard(None)
    in_folder = [u for u in referenced if u in ss_files]
    if len(in_folder) > 1:
        raise PlanLinkError(f"the plans reference {len(in_folder)} different structure sets "
                            f"({', '.join(str(ss_files[u]) for u in in_folder)}); give one per folder",
                            path=folder, tag=tag_name("ReferencedStructureSetSequence"))
    if in_folder:
        ss_path = ss_files[in_folder[0]]
    elif len(ss_files) == 1:
        ss_path = next(iter(ss_files.values()))
        if referenced:
            findings.append(Finding("warning", "structure_set_not_referenced",
                                    f"the plan references structure set {sorted(referenced)[0]}, not "
                                    f"in the folder; using {ss_path.name}", path=str(ss_path)))
    else:
        raise PlanLinkError(f"{len(ss_files)} RTSTRUCT files and none referenced by an RTPLAN: "
                            f"cannot tell which to use ({', '.join(p.name for p in ss_files.values())})",
                            path=folder)
    if len(ss_files) > 1:
        findings.append(Finding("info", "structure_sets_ignored",
                                f"{len(ss_files) - 1} other RTSTRUCT file(s) ignored; using "
                                f"{ss_path.name}", path=str(ss_path)))
    ss = _read_full(ss_path, pixels=False)
    structures, f = read_structures(ss, ss_path)
    findings += f
    ss_frame = structure_set_frame_uid(ss)
    roi_names = {s.roi_number: s.name for s in structures.values()}

    courses: dict[str, Course] = {}
    for uid, (p, ds) in plan_ds.items():
        course, f = read_course(ds, p, roi_names)
        courses[uid] = course
        findings += f

    # doses
    # the scan read only a few tags; the links (ReferencedRTPlanSequence) need the full header
    headers: list[DoseHeader] = [read_dose_header(_read_full(p, pixels=False), p)
                                 for p, _ in found["RTDOSE"]]
    if not headers:
        findings.append(Finding("error", "no_dose", "no RTDOSE found: no DVH can be computed",
                                path=str(folder)))

    frames = {("RTSTRUCT", str(ss_path)): ss_frame}
    for h in headers:
        frames[("RTDOSE", h.path)] = h.frame_of_reference_uid
    for c in courses.values():
        frames[("RTPLAN", c.path)] = c.frame_of_reference_uid
    known = {v for v in frames.values() if v}
    if len(known) > 1:
        detail = "; ".join(f"{m} {Path(p).name}: {u}" for (m, p), u in frames.items())
        raise PlanLinkError(f"objects lie in different frames of reference ({detail})", path=folder,
                            tag=tag_name("FrameOfReferenceUID"))
    if not ss_frame:
        findings.append(Finding("warning", "frame_of_reference_missing",
                                "the structure set names no frame of reference: it cannot be "
                                "verified that contours and dose share coordinates", path=str(ss_path)))

    by_plan: dict[str | None, list[DoseHeader]] = {}
    for h in headers:
        key = h.referenced_plan_uid if h.referenced_plan_uid in courses else None
        if h.referenced_plan_uid and key is None:
            findings.append(Finding("warning", "dose_plan_missing",
                                    f"RTDOSE references RTPLAN {h.referenced_plan_uid}, not in the "
                                    "folder: its dose is used without a prescription", path=h.path))
        by_plan.setdefault(key, []).append(h)

    multi = [h for h in headers if h.summation_type == "MULTI_PLAN"]
    course_list: list[Course] = []
    for uid, course in courses.items():
        hs = [h for h in by_plan.get(uid, []) if h.summation_type != "MULTI_PLAN"]
        dose, f = _course_dose(hs, course, normalisation_gy)
        findings += f
        course_list.append(_with_dose(course, dose))
    standalone = [h for h in by_plan.get(None, []) if h.summation_type != "MULTI_PLAN"]
    for h in standalone:
        dose, f = _course_dose([h], None, normalisation_gy)
        findings += f
        course_list.append(Course(sop_instance_uid=h.sop_instance_uid, label=Path(h.path).name,
                                  dose=dose, path=h.path))

    if multi:
        if len(multi) > 1:
            raise PlanLinkError("more than one MULTI_PLAN RTDOSE: cannot tell which is the total",
                                path=folder, tag=tag_name("DoseSummationType"))
        total = read_dose_grid(_read_full(Path(multi[0].path), pixels=True), multi[0].path,
                               normalisation_gy=normalisation_gy)
    else:
        doses = [c.dose for c in course_list if c.dose is not None]
        if not doses:
            total = None
        elif len(doses) == 1:
            total = doses[0]
        else:
            total, f = sum_grids(doses, summation_type="MULTI_PLAN")
            findings += f
            findings.append(Finding("info", "courses_summed",
                                    f"{len(doses)} courses' doses summed physically "
                                    "(no EQD2 conversion)", path=str(folder)))

    planes = [np.diff(s.planes_z_mm) for s in structures.values() if s.planes_z_mm.size > 1]
    spacing = float(np.median(np.concatenate(planes))) if planes else None
    course_list.sort(key=lambda c: _course_order(c, courses))
    return Plan(path=str(folder), patient_id=patient_id,
                patient_name=str(ss.get("PatientName", "") or ""),
                frame_of_reference_uid=ss_frame or (known.pop() if known else None),
                structures=structures, dose=total, courses=tuple(course_list),
                findings=tuple(findings),
                structure_set_label=str(ss.get("StructureSetLabel", "") or ""),
                structure_set_file=str(ss_path), contour_spacing_mm=spacing)


def _course_order(course: Course, courses: dict[str, Course]) -> tuple:
    """Earlier courses first: a course referencing another comes after it."""
    depth = 0
    seen = set()
    c = course
    while c is not None and c.referenced_plans and depth < 20:
        uid = c.referenced_plans[0][0]
        if uid in seen:
            break
        seen.add(uid)
        c = courses.get(uid)
        depth += 1
    return (depth, course.label)


def _with_dose(course: Course, dose) -> Course:
    from dataclasses import replace

    return replace(course, dose=dose)


def _course_dose(headers: list[DoseHeader], course: Course | None, normalisation_gy):
    """The total dose of one course from its RTDOSE files."""
    findings: list[Finding] = []
    if not headers:
        if course is not None:
            findings.append(Finding("warning", "course_without_dose",
                                    f"no RTDOSE references plan {course.label!r}", path=course.path))
        return None, findings
    kinds = {h.summation_type for h in headers}
    plan_level = [h for h in headers if h.summation_type == "PLAN"]
    if len(plan_level) > 1:
        raise PlanLinkError(f"{len(plan_level)} PLAN doses reference the same RTPLAN "
                            f"({', '.join(Path(h.path).name for h in plan_level)})",
                            path=plan_level[0].path, tag=tag_name("ReferencedRTPlanSequence"))
    if plan_level:
        if len(kinds) > 1:
            findings.append(Finding("info", "partial_doses_ignored",
                                    "a PLAN dose is present; BEAM/FRACTION doses of the same plan "
                                    "are not added to it", path=plan_level[0].path))
        h = plan_level[0]
        return read_dose_grid(_read_full(Path(h.path), pixels=True), h.path,
                              normalisation_gy=normalisation_gy), findings
    fractions_known = course is not None and course.fractions
    grids = []
    for h in headers:
        g = read_dose_grid(_read_full(Path(h.path), pixels=True), h.path,
                           normalisation_gy=normalisation_gy)
        if h.summation_type == "FRACTION":
            if not fractions_known:
                findings.append(Finding(
                    "warning", "fraction_dose_unscaled",
                    f"DoseSummationType FRACTION {tag_name('DoseSummationType')[len('DoseSummationType '):]} "
                    "and no linked RTPLAN with NumberOfFractionsPlanned: doses are PER FRACTION",
                    path=h.path))
            else:
                g = scaled(g, float(course.fractions), "PLAN")
                findings.append(Finding("info", "fraction_dose_scaled",
                                        f"FRACTION dose multiplied by {course.fractions} fractions",
                                        path=h.path))
        elif h.summation_type not in ("BEAM", "PLAN", ""):
            raise DicomError(f"DoseSummationType {h.summation_type!r} is not supported for a "
                             "course dose (PLAN, FRACTION, BEAM, MULTI_PLAN are)", path=h.path,
                             tag=tag_name("DoseSummationType"))
        grids.append(g)
    if len(grids) == 1:
        return grids[0], findings
    total, f = sum_grids(grids, summation_type="PLAN")
    findings += f
    findings.append(Finding("info", "beam_doses_summed", f"{len(grids)} {'/'.join(sorted(kinds))} "
                            "doses summed for the plan", path=headers[0].path))
    return total, findings
