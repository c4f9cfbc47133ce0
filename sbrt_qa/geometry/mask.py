"""Contours -> occupancy masks on rectilinear grids (slab convention, even-odd rule)."""

from __future__ import annotations

import numpy as np

from ..models import Structure


def rasterize(structure: Structure, x_mm: np.ndarray, y_mm: np.ndarray, z_mm: np.ndarray, *,
              default_thickness_mm: float | None = None) -> np.ndarray:
    """Boolean ``[z, y, x]`` mask of the grid nodes inside ``structure``.

    Uses the same slab convention as the DVH engine (:func:`sbrt_qa.dvh.slabs`) and the
    even-odd rule across all polygons of a plane (holes, islands).

    Parameters
    ----------
    structure : Structure
    x_mm, y_mm, z_mm : ndarray
        Ascending node coordinates, mm.
    default_thickness_mm : float, optional
        Slab thickness of a single-plane structure, mm.

    Examples
    --------
    >>> sq = Structure.from_polygons("sq", [(0.0, [(0, 0), (4, 0), (4, 4), (0, 4)])])
    >>> c = np.arange(-1.0, 6.0)
    >>> int(rasterize(sq, c, c, np.array([0.0]), default_thickness_mm=2).sum())
    16
    """
    from ..dvh.core import _sorted_geometry, slabs
    from ._kernels import rasterize_nodes

    shape = (z_mm.size, y_mm.size, x_mm.size)
    if structure.is_empty:
        return np.zeros(shape, dtype=bool)
    points, offsets, plane_start, planes = _sorted_geometry(structure)
    lo, hi, _ = slabs(planes, default_thickness_mm)
    m = rasterize_nodes(points, offsets, plane_start, lo, hi, np.ascontiguousarray(x_mm, dtype=np.float64),
                        np.ascontiguousarray(y_mm, dtype=np.float64), np.ascontiguousarray(z_mm, dtype=np.float64))
    return m.view(bool)
