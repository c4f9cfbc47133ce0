"""Plain data objects that flow through sbrt-qa: DICOM -> models -> DVH -> metrics -> evaluation.

Conventions, stated once for the whole package:

* Dose is in Gy, volume in cc (cm^3), lengths and coordinates in mm, in the DICOM patient
  coordinate system (x to the patient's left, y posterior, z superior).
* 3-D arrays are indexed ``[z, y, x]``; their coordinate vectors ascend.
* A structure reaches half a contour spacing beyond its first and last planes; between planes
  the DVH engine interpolates the shape (or, optionally, uses slabs reaching half-way to the
  neighbouring planes); see :mod:`sbrt_qa.dvh.core`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

SEVERITIES = ("info", "warning", "error")


@dataclass(frozen=True)
class Finding:
    """Something noticed about the input that the user must see.

    Parameters
    ----------
    severity : {"info", "warning", "error"}
        ``error`` means something could not be evaluated.
    code : str
        Stable machine-readable identifier, e.g. ``"structure_outside_dose_grid"``.
    message : str
        Human-readable explanation, with units.
    path : str, optional
        The file the finding is about.
    structure : str, optional
        The structure (ROI) name the finding is about.
    """

    severity: str
    code: str
    message: str
    path: str | None = None
    structure: str | None = None

    def __post_init__(self):
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, not {self.severity!r}")

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True, eq=False)
class DoseGrid:
    """A dose distribution on a rectilinear grid in patient coordinates.

    Parameters
    ----------
    dose_gy : ndarray, shape (nz, ny, nx), float64, C-contiguous
        Absolute dose in Gy at the grid nodes (the voxel centres).
    x_mm, y_mm, z_mm : ndarray
        Ascending node coordinates along each axis, mm. Spacing may be uneven in z.
    frame_of_reference_uid : str or None
    summation_type : str
        DICOM DoseSummationType of the source (``PLAN``, ``FRACTION`` scaled to the plan, ``BEAM``
        summed, or ``MULTI_PLAN`` for a sum of courses).
    source_files : tuple of str
        The RTDOSE files this grid came from.
    """

    dose_gy: np.ndarray
    x_mm: np.ndarray
    y_mm: np.ndarray
    z_mm: np.ndarray
    frame_of_reference_uid: str | None = None
    summation_type: str = "PLAN"
    source_files: tuple[str, ...] = ()

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.dose_gy.shape

    @property
    def max_gy(self) -> float:
        return float(self.dose_gy.max()) if self.dose_gy.size else 0.0

    @property
    def extent_mm(self) -> np.ndarray:
        """Covered region ``[[xmin, xmax], [ymin, ymax], [zmin, zmax]]``: nodes +- half a voxel."""
        out = []
        for c in (self.x_mm, self.y_mm, self.z_mm):
            h0 = (c[1] - c[0]) / 2 if c.size > 1 else 0.5
            h1 = (c[-1] - c[-2]) / 2 if c.size > 1 else 0.5
            out.append([c[0] - h0, c[-1] + h1])
        return np.array(out)


@dataclass(frozen=True, eq=False)
class Structure:
    """A region of interest made of closed planar contours.

    Contours are stored flat for the kernels: polygon ``i`` has vertices
    ``points_xy_mm[polygon_offsets[i]:polygon_offsets[i + 1]]`` and lies in the plane
    ``z = polygon_z_mm[i]``. Several polygons on one plane combine by the even-odd rule (a polygon
    inside another is a hole).
    """

    name: str
    roi_number: int
    points_xy_mm: np.ndarray
    polygon_offsets: np.ndarray
    polygon_z_mm: np.ndarray
    interpreted_type: str = ""
    color: tuple[int, int, int] | None = None
    source_file: str | None = None

    @property
    def n_polygons(self) -> int:
        return int(self.polygon_z_mm.size)

    @property
    def is_empty(self) -> bool:
        return self.n_polygons == 0

    @property
    def planes_z_mm(self) -> np.ndarray:
        """Sorted unique z of the contour planes, mm."""
        return np.unique(self.polygon_z_mm)

    def polygons(self) -> Iterator[tuple[float, np.ndarray]]:
        """Yield ``(z_mm, vertices (n, 2))`` for each polygon."""
        for i in range(self.n_polygons):
            a, b = self.polygon_offsets[i], self.polygon_offsets[i + 1]
            yield float(self.polygon_z_mm[i]), self.points_xy_mm[a:b]

    @property
    def bounds_mm(self) -> np.ndarray:
        """``[[xmin, xmax], [ymin, ymax], [zmin, zmax]]`` of the contour vertices, mm."""
        p = self.points_xy_mm
        return np.array([[p[:, 0].min(), p[:, 0].max()], [p[:, 1].min(), p[:, 1].max()],
                         [self.polygon_z_mm.min(), self.polygon_z_mm.max()]])

    @classmethod
    def from_polygons(cls, name: str, polygons, roi_number: int = 0, **kwargs) -> "Structure":
        """Build from an iterable of ``(z_mm, vertices (n, 2))``."""
        polygons = [(float(z), np.asarray(p, dtype=np.float64).reshape(-1, 2)) for z, p in polygons]
        polygons = [(z, p) for z, p in polygons if len(p) >= 3]
        offsets = np.zeros(len(polygons) + 1, dtype=np.int64)
        if polygons:
            offsets[1:] = np.cumsum([len(p) for _, p in polygons])
            pts = np.ascontiguousarray(np.concatenate([p for _, p in polygons]))
        else:
            pts = np.zeros((0, 2))
        zs = np.array([z for z, _ in polygons], dtype=np.float64)
        return cls(name=name, roi_number=roi_number, points_xy_mm=pts, polygon_offsets=offsets,
                   polygon_z_mm=zs, **kwargs)


@dataclass(frozen=True)
class TargetPrescription:
    """One target dose reference of an RTPLAN (DoseReferenceSequence item)."""

    dose_gy: float | None
    description: str = ""
    roi_number: int | None = None
    roi_name: str | None = None
    uid: str | None = None


@dataclass(frozen=True, eq=False)
class Course:
    """One RTPLAN (a treatment course) with its dose, if an RTDOSE references it."""

    sop_instance_uid: str
    label: str
    name: str = ""
    fractions: int | None = None
    fraction_group_fractions: tuple[int | None, ...] = ()
    beam_dose_per_fraction_gy: float | None = None
    targets: tuple[TargetPrescription, ...] = ()
    total_prescription_gy: float | None = None
    referenced_plans: tuple[tuple[str, str], ...] = ()
    structure_set_uid: str | None = None
    frame_of_reference_uid: str | None = None
    approval_status: str = ""
    plan_intent: str = ""
    dose: DoseGrid | None = None
    path: str | None = None

    @property
    def prescription_gy(self) -> float | None:
        """Highest target prescription dose of the course, or the overview total, Gy."""
        doses = [t.dose_gy for t in self.targets if t.dose_gy is not None]
        if doses:
            return max(doses)
        return self.total_prescription_gy


@dataclass(frozen=True, eq=False)
class Plan:
    """Everything loaded from one plan folder.

    ``dose`` is the total physical dose of all courses in the folder (each course's grid summed
    on the first grid); ``courses`` keep each RTPLAN with its own dose.
    """

    path: str
    patient_id: str
    patient_name: str
    frame_of_reference_uid: str | None
    structures: dict[str, Structure]
    dose: DoseGrid | None
    courses: tuple[Course, ...] = ()
    findings: tuple[Finding, ...] = ()
    structure_set_label: str = ""
    structure_set_file: str | None = None
    contour_spacing_mm: float | None = None

    def structure(self, name: str) -> Structure:
        """Return the structure called ``name`` (exact match first, then case-insensitive)."""
        from .errors import StructureNotFoundError

        if name in self.structures:
            return self.structures[name]
        folded = [s for n, s in self.structures.items() if n.casefold() == name.casefold()]
        if len(folded) == 1:
            return folded[0]
        raise StructureNotFoundError(
            f"no structure {name!r}; the plan has: {', '.join(self.structures) or 'none'}",
            path=self.structure_set_file or self.path)

    @property
    def label(self) -> str:
        return " + ".join(c.label for c in self.courses) if self.courses else ""

    def referenced_prescription(self, structure: Structure) -> tuple[float, Course] | None:
        """``(dose Gy, course)`` of the first RTPLAN target dose reference naming this ROI."""
        for c in self.courses:
            for t in c.targets:
                if t.roi_number == structure.roi_number and t.dose_gy:
                    return t.dose_gy, c
        return None


@dataclass(frozen=True, eq=False)
class DVH:
    """A cumulative dose-volume histogram of one structure.

    Parameters
    ----------
    name : str
    dose_gy : ndarray
        Ascending dose values, Gy. ``dose_gy[0] <= dmin_gy`` and ``dose_gy[-1] >= dmax_gy``.
    cumulative_cc : ndarray
        Volume receiving at least ``dose_gy[i]``, cc; non-increasing, ``cumulative_cc[0]`` equals
        ``covered_volume_cc`` and ``cumulative_cc[-1]`` is 0. Exact at these nodes; linear
        in between.
    volume_cc : float
        Whole structure volume (slab convention), cc, including any part outside the dose grid.
    covered_volume_cc : float
        Part of the volume inside the dose grid, cc. All dose metrics refer to this part.
    dmin_gy, dmax_gy, dmean_gy : float
        Over the covered volume.
    findings : tuple of Finding
    """

    name: str
    dose_gy: np.ndarray
    cumulative_cc: np.ndarray
    volume_cc: float
    covered_volume_cc: float
    dmin_gy: float
    dmax_gy: float
    dmean_gy: float
    findings: tuple[Finding, ...] = field(default=())

    @property
    def uncovered_volume_cc(self) -> float:
        return max(self.volume_cc - self.covered_volume_cc, 0.0)

    @property
    def cumulative_percent(self) -> np.ndarray:
        """Cumulative curve as % of the covered volume."""
        if self.covered_volume_cc <= 0:
            return np.zeros_like(self.cumulative_cc)
        return 100.0 * self.cumulative_cc / self.covered_volume_cc

    def volume_at_dose_cc(self, dose_gy: float) -> float:
        """Volume receiving at least ``dose_gy``, cc."""
        if self.covered_volume_cc <= 0:
            return 0.0
        # reversed so that at a repeated dose node (a point mass) the value before the step wins
        return float(np.interp(-dose_gy, -self.dose_gy[::-1], self.cumulative_cc[::-1],
                               left=0.0, right=self.covered_volume_cc))

    def dose_at_volume_gy(self, volume_cc: float) -> float:
        """Minimum dose to the hottest ``volume_cc``, Gy (``D<v>cc``)."""
        if self.covered_volume_cc <= 0:
            return float("nan")
        if volume_cc <= 0:
            return self.dmax_gy
        if volume_cc >= self.covered_volume_cc:
            return self.dmin_gy
        cum = self.cumulative_cc
        # last node still receiving the volume; the curve is linear to the next node
        j = int(np.count_nonzero(cum >= volume_cc)) - 1
        if j < 0:
            return self.dmax_gy
        if j >= cum.size - 1:
            return self.dmin_gy
        t = (cum[j] - volume_cc) / (cum[j] - cum[j + 1])
        d = self.dose_gy[j] + t * (self.dose_gy[j + 1] - self.dose_gy[j])
        return float(min(max(d, self.dmin_gy), self.dmax_gy))

    def coldest_dose_gy(self, volume_cc: float) -> float:
        """Maximum dose within the coldest ``volume_cc``, Gy (``DC<v>cc``)."""
        if self.covered_volume_cc <= 0:
            return float("nan")
        if volume_cc <= 0:
            return self.dmin_gy
        if volume_cc >= self.covered_volume_cc:
            return self.dmax_gy
        v = self.covered_volume_cc - volume_cc
        cum, dose = self.cumulative_cc, self.dose_gy
        k = int(np.count_nonzero(cum > v))  # first node with cum <= v
        t = (cum[k - 1] - v) / (cum[k - 1] - cum[k])
        d = dose[k - 1] + t * (dose[k] - dose[k - 1])
        return float(min(max(d, self.dmin_gy), self.dmax_gy))

    def metric(self, metric: str, rx_gy: float | None = None) -> float:
        """Evaluate a metric such as ``"D95%"``, ``"V20Gy[cc]"`` or ``"Dmean"``.

        Parameters
        ----------
        metric : str
            TG-263 style metric, see :mod:`sbrt_qa.metrics`.
        rx_gy : float, optional
            Prescription dose, Gy, for metrics relative to it (``V100%[%]``, ``D95%[%]``).

        Returns
        -------
        float
            In the unit the metric names (Gy, %, cc).
        """
        from .metrics import evaluate_metric

        return evaluate_metric(self, metric, rx_gy=rx_gy).value

    def to_dicompyler(self):
        """Return a ``dicompylercore.dvh.DVH`` (cumulative, Gy, cm3) of this curve."""
        from ._dicompyler import dicompyler_dvh

        return dicompyler_dvh(self)


RESULTS = ("pass", "minor", "major", "not_evaluated")
CATEGORIES = ("prescription", "target", "conformity", "oar", "eligibility")
VERDICTS = ("per_protocol", "minor_deviation", "major_deviation", "not_evaluable")


@dataclass(frozen=True)
class CheckResult:
    """One graded check of a plan against the protocol.

    ``value`` is in ``unit``; ``limit`` is the human-readable rule with units (e.g.
    ``"< 18 Gy (minor <= 20 Gy)"``); ``limit_value``/``comparison`` are the per-protocol
    threshold in ``unit`` for plots.
    """

    id: str
    category: str
    structure: str | None
    metric: str | None
    value: float | None
    unit: str | None
    limit: str | None
    result: str
    source: str | None
    message: str
    comparison: str | None = None
    limit_value: float | None = None
    roi_name: str | None = None

    def __post_init__(self):
        if self.result not in RESULTS:
            raise ValueError(f"result must be one of {RESULTS}, not {self.result!r}")
        if self.category not in CATEGORIES:
            raise ValueError(f"category must be one of {CATEGORIES}, not {self.category!r}")

    def to_dict(self) -> dict:
        v = self.value
        if v is not None and not np.isfinite(v):
            v = None
        return {"id": self.id, "category": self.category, "structure": self.structure,
                "metric": self.metric, "value": None if v is None else round(float(v), 4),
                "unit": self.unit, "limit": self.limit, "result": self.result,
                "source": self.source, "message": self.message, "roi_name": self.roi_name}
