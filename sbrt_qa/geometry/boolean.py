"""Structure algebra per contour plane with shapely: derived structures such as Liver-GTV.

Each plane's contours are combined by the even-odd rule into one shapely geometry; the result
is written back as rings (exteriors and holes) which, read again by the even-odd rule, give the
same region. Planes of the subtracted structures are matched to the base structure's planes
within a quarter of the base spacing; the result has the base structure's planes, so its
volume follows the same slab convention as every other structure.
"""

from __future__ import annotations

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon

from ..models import Structure

#: rings smaller than this (mm^2) are slivers from the boolean operation
MIN_RING_AREA_MM2 = 1e-3


def plane_geometries(structure: Structure) -> dict[float, shapely.Geometry]:
    """One shapely geometry per plane z (rounded to 0.001 mm), even-odd combined."""
    out: dict[float, shapely.Geometry] = {}
    for z, pts in structure.polygons():
        key = round(z, 3)
        poly = shapely.make_valid(Polygon(pts))
        out[key] = poly if key not in out else out[key].symmetric_difference(poly)
    return out


def _rings(geom) -> list[np.ndarray]:
    rings = []
    polys = [geom] if isinstance(geom, Polygon) else [g for g in getattr(geom, "geoms", []) if isinstance(g, (Polygon, MultiPolygon))]
    for p in polys:
        if isinstance(p, MultiPolygon):
            rings += _rings(p)
            continue
        if p.is_empty or p.area < MIN_RING_AREA_MM2:
            continue
        rings.append(np.asarray(p.exterior.coords)[:-1])
        for hole in p.interiors:
            if Polygon(hole).area >= MIN_RING_AREA_MM2:
                rings.append(np.asarray(hole.coords)[:-1])
    return rings


def _match(z: float, others: dict[float, shapely.Geometry], tol: float):
    if not others:
        return None
    keys = np.fromiter(others.keys(), dtype=np.float64)
    i = int(np.argmin(np.abs(keys - z)))
    return others[float(keys[i])] if abs(keys[i] - z) <= tol else None


def _spacing(structure: Structure) -> float:
    z = structure.planes_z_mm
    return float(np.median(np.diff(z))) if z.size > 1 else 1.0


def subtract(base: Structure, others: list[Structure], name: str) -> Structure:
    """``base`` minus the union of ``others``, plane by plane.

    Parameters
    ----------
    base : Structure
    others : list of Structure
    name : str
        Name of the result, e.g. ``"Liver-GTV"``.
    """
    tol = 0.25 * _spacing(base)
    cut = [plane_geometries(o) for o in others if not o.is_empty]
    polys = []
    for z, g in sorted(plane_geometries(base).items()):
        parts = [m for m in (_match(z, c, tol) for c in cut) if m is not None]
        if parts:
            g = g.difference(shapely.union_all(parts))
        polys += [(z, r) for r in _rings(g)]
    return Structure.from_polygons(name, polys, roi_number=-1, interpreted_type="DERIVED")


def union(structures: list[Structure], name: str) -> Structure:
    """Union of structures, plane by plane (planes of all inputs)."""
    planes: dict[float, list] = {}
    for s in structures:
        for z, g in plane_geometries(s).items():
            planes.setdefault(z, []).append(g)
    polys = []
    for z in sorted(planes):
        polys += [(z, r) for r in _rings(shapely.union_all(planes[z]))]
    return Structure.from_polygons(name, polys, roi_number=-1, interpreted_type="DERIVED")
