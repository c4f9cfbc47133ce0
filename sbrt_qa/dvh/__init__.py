"""The DVH engine: numba kernels (``_kernels``) and the public :func:`compute_dvh`."""

from .core import compute_dvh, dvh_of_structure, slabs

__all__ = ["compute_dvh", "dvh_of_structure", "slabs"]
