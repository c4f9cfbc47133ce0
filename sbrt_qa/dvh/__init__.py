"""The DVH engine: numba kernels (``_kernels``) and the public :func:`compute_dvh`."""

from .core import compute_dvh, compute_dvhs, dvh_of_structure, dvhs_of_structures, slabs

__all__ = ["compute_dvh", "compute_dvhs", "dvh_of_structure", "dvhs_of_structures", "slabs"]
