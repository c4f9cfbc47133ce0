"""Nelms 2015 analytic DVH benchmark: grade a DVH calculator against the analytic truth.

The data is read from ``../shared/validation/nelms2015`` (or ``$SBRT_QA_NELMS_DIR``) and never
copied into the project. A point fails when it deviates from the analytic value by more than 3 %
(Nelms' criterion), for volume, Dmin, Dmax, Dmean, D99, D95, D5, D1 and D0.03cc.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

METRICS = ("volume_cc", "dmin_cgy", "dmax_cgy", "dmean_cgy", "d99_cgy", "d95_cgy", "d5_cgy",
           "d1_cgy", "d0.03cc_cgy")
TOLERANCE = 0.03
GRIDS = {"Z(AP)": "Linear_AntPost_{}mm_Aligned.dcm", "Y(SI)": "Linear_SupInf_{}mm_Aligned.dcm"}


def default_dir() -> Path:
    env = os.environ.get("SBRT_QA_NELMS_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "validation" / "nelms2015"


@dataclass
class Case:
    structure: str
    contour_spacing: str
    grid_mm: str
    gradient: str
    truth: dict

    @property
    def structure_file(self) -> str:
        return f"structures/{self.structure}.dcm"

    @property
    def dose_file(self) -> str:
        return "dose_grids/" + GRIDS[self.gradient].format(self.grid_mm)

    @property
    def key(self) -> str:
        return f"{self.structure} {self.grid_mm}mm {self.gradient}"


def cases(data_dir: Path, *, contour_spacings=("1mm", "2mm", "3mm", "0.2mm")) -> list[Case]:
    """Runnable rows of analytical.csv (the 0.4 mm dose grids are not distributed)."""
    out = []
    with open(data_dir / "analytical.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["dose_voxel_mm"] not in ("1", "2", "3"):
                continue
            if row["ct_slice_spacing"] not in contour_spacings:
                continue
            truth = {m: float(row[m]) for m in METRICS}
            out.append(Case(row["structure"], row["ct_slice_spacing"], row["dose_voxel_mm"],
                            row["gradient"], truth))
    return out


def grade(case: Case, measured: dict) -> dict:
    """Relative error per metric and whether it passes the 3 % criterion."""
    out = {}
    for m in METRICS:
        t = case.truth[m]
        v = measured[m]
        err = (v - t) / t if t else float("inf")
        out[m] = (v, err, abs(err) <= TOLERANCE)
    return out


def sbrt_qa_metrics(structure, dose, **kwargs) -> dict:
    from sbrt_qa.dvh import dvh_of_structure

    d = dvh_of_structure(structure, dose, **kwargs)
    v = d.covered_volume_cc
    return {"volume_cc": d.volume_cc, "dmin_cgy": 100 * d.dmin_gy, "dmax_cgy": 100 * d.dmax_gy,
            "dmean_cgy": 100 * d.dmean_gy, "d99_cgy": 100 * d.dose_at_volume_gy(0.99 * v),
            "d95_cgy": 100 * d.dose_at_volume_gy(0.95 * v), "d5_cgy": 100 * d.dose_at_volume_gy(0.05 * v),
            "d1_cgy": 100 * d.dose_at_volume_gy(0.01 * v), "d0.03cc_cgy": 100 * d.dose_at_volume_gy(0.03)}


def load_case(data_dir: Path, case: Case, _cache={}):
    import pydicom

    from sbrt_qa.dicom import read_dose_grid, read_structures

    sk = data_dir / case.structure_file
    if sk not in _cache:
        st, _ = read_structures(pydicom.dcmread(sk), sk)
        # the object is the ROI that is not the point ROI (names in the files vary in case/underscores)
        objs = [x for x in st.values() if not x.is_empty]
        _cache[sk] = objs[0]
    dk = data_dir / case.dose_file
    if dk not in _cache:
        _cache[dk] = read_dose_grid(pydicom.dcmread(dk), dk)
    return _cache[sk], _cache[dk]
