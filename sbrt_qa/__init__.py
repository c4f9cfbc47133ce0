"""sbrt-qa: SBRT plan QA — DICOM RT loading, accurate DVHs, protocol constraint checks."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["load_plan", "compute_dvh", "__version__"]


def __getattr__(name):
    # lazy: `import sbrt_qa` stays cheap (no numba, no pydicom) until a function is used
    if name == "load_plan":
        from .dicom import load_plan

        return load_plan
    if name == "compute_dvh":
        from .dvh import compute_dvh

        return compute_dvh
    raise AttributeError(f"module 'sbrt_qa' has no attribute {name!r}")
