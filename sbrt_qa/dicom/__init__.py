"""DICOM RT input: the only package of sbrt-qa that imports pydicom."""

from .plan import load_plan
from .rtdose import read_dose_grid
from .rtstruct import read_structures

__all__ = ["load_plan", "read_dose_grid", "read_structures"]
