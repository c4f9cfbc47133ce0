"""RTPLAN -> :class:`~sbrt_qa.models.Course` (prescription, fractions, beam doses, links)."""

from __future__ import annotations

from ..models import Course, Finding, TargetPrescription
from ._common import as_float, tag_name


def read_course(ds, path, roi_names: dict[int, str] | None = None) -> tuple[Course, list[Finding]]:
    """Read the prescription-related content of an RTPLAN.

    Parameters
    ----------
    ds : pydicom.Dataset
    path : str
    roi_names : dict of int to str, optional
        ROI number -> name of the linked structure set, to name the target of each dose
        reference.
    """
    path = str(path)
    findings: list[Finding] = []
    roi_names = roi_names or {}
    label = str(ds.get("RTPlanLabel", "") or "").strip()
    if not label:
        findings.append(Finding("warning", "plan_label_missing",
                                f"RTPLAN has no {tag_name('RTPlanLabel')}", path=path))

    fraction_counts: list[int | None] = []
    beam_dose_total = 0.0
    beam_dose_found = False
    for fg in ds.get("FractionGroupSequence", []) or []:
        n = fg.get("NumberOfFractionsPlanned")
        fraction_counts.append(None if n in (None, "") else int(n))
        for rb in fg.get("ReferencedBeamSequence", []) or []:
            bd = rb.get("BeamDose")
            if bd not in (None, ""):
                beam_dose_total += as_float(bd, "BeamDose", path)
                beam_dose_found = True
    if not fraction_counts:
        findings.append(Finding("error", "fractions_missing",
                                f"RTPLAN has no fraction group {tag_name('FractionGroupSequence')}: "
                                "the number of fractions is unknown", path=path))
    known = [n for n in fraction_counts if n is not None]
    if len(set(known)) > 1:
        findings.append(Finding("warning", "fraction_groups_differ",
                                f"fraction groups plan different numbers of fractions: {known}",
                                path=path))
    fractions = max(known) if known else None

    targets = []
    for item in ds.get("DoseReferenceSequence", []) or []:
        if str(item.get("DoseReferenceType", "")).upper() != "TARGET":
            continue
        dose = item.get("TargetPrescriptionDose")
        roi = item.get("ReferencedROINumber")
        roi = None if roi in (None, "") else int(roi)
        targets.append(TargetPrescription(
            dose_gy=None if dose in (None, "") else as_float(dose, "TargetPrescriptionDose", path),
            description=str(item.get("DoseReferenceDescription", "") or ""),
            roi_number=roi, roi_name=roi_names.get(roi) if roi is not None else None,
            uid=str(item.get("DoseReferenceUID", "") or "") or None))

    total_rx = None
    for item in ds.get("PrescriptionOverviewSequence", []) or []:
        v = item.get("TotalPrescriptionDose")
        if v not in (None, ""):
            total_rx = max(total_rx or 0.0, as_float(v, "TotalPrescriptionDose", path))

    refs = []
    for item in ds.get("ReferencedRTPlanSequence", []) or []:
        uid = str(item.get("ReferencedSOPInstanceUID", "") or "")
        if uid:
            refs.append((uid, str(item.get("RTPlanRelationship", "") or "").upper()))

    ss_uid = None
    rss = ds.get("ReferencedStructureSetSequence", []) or []
    if len(rss):
        ss_uid = str(rss[0].get("ReferencedSOPInstanceUID", "") or "") or None

    if not targets and total_rx is None:
        findings.append(Finding("warning", "prescription_missing",
                                "RTPLAN has no target prescription dose "
                                f"({tag_name('TargetPrescriptionDose')} in a TARGET item of "
                                f"{tag_name('DoseReferenceSequence')})", path=path))
    course = Course(
        sop_instance_uid=str(ds.get("SOPInstanceUID", "")),
        label=label or str(ds.get("RTPlanName", "") or "") or "unnamed plan",
        name=str(ds.get("RTPlanName", "") or ""),
        fractions=fractions,
        fraction_group_fractions=tuple(fraction_counts),
        beam_dose_per_fraction_gy=beam_dose_total if beam_dose_found else None,
        targets=tuple(targets),
        total_prescription_gy=total_rx,
        referenced_plans=tuple(refs),
        structure_set_uid=ss_uid,
        frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "") or "") or None,
        approval_status=str(ds.get("ApprovalStatus", "") or ""),
        plan_intent=str(ds.get("PlanIntent", "") or ""),
        path=path,
    )
    return course, findings

