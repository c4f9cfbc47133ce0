"""Conformity and dose fall-off of SBRT targets: R100, Paddick CI, R50, Paddick GI, D2cm, hot spot.

Computed on a local grid around each PTV (0.75-2 mm, finer for smaller PTVs, dose by trilinear
interpolation), masks by the slab convention of the DVH engine:

* PIV100 / PIV50: volume inside BODY (or the dose grid, if there is no BODY) receiving at least
  100 % / 50 % of the target's prescription, within ``MARGIN_MM`` of the PTV. With several
  targets each point is attributed to its nearest PTV, so a neighbour's isodose is not counted.
* R100 = PIV100 / PTV volume (RTOG conformity index), Paddick CI = TV_PIV^2 / (TV x PIV100),
  R50 = PIV50 / PTV volume, Paddick GI = PIV50 / PIV100.
* D2cm: maximum dose at 2 cm or more from the PTV (within ``MARGIN_MM``, nearest-PTV points only),
  in % of the prescription (RTOG 0915).
* Outside 105 %: volume outside the PTV receiving more than 105 % of Rx, % of the PTV volume.
* Hot spot: the location of the maximum dose within 2 cm of the PTV, and whether it is inside.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .models import DoseGrid, Structure

LOCAL_SPACING_MM = 0.75
MAX_SPACING_MM = 2.0
MARGIN_MM = 30.0
D2CM_MM = 20.0


@dataclass(frozen=True)
class Conformity:
    """Conformity figures of one target (volumes in cc, doses in Gy, D2cm in % of Rx)."""

    target: str
    rx_gy: float
    ptv_cc: float
    piv100_cc: float
    piv50_cc: float
    tv_piv_cc: float
    r100: float
    paddick_ci: float
    r50: float
    paddick_gi: float
    d2cm_gy: float
    d2cm_pct: float
    hotspot_gy: float
    hotspot_mm: tuple[float, float, float]
    hotspot_in_ptv: bool
    region_truncated: bool
    outside_105_pct: float


def _axis(lo: float, hi: float, step: float) -> np.ndarray:
    n = int(math.ceil((hi - lo) / step)) + 1
    return lo + step * np.arange(n)


def conformity(target: Structure, ptv_cc: float, tv_piv_cc: float, rx_gy: float, dose: DoseGrid, *,
               body: Structure | None = None, other_targets: list[Structure] = (),
               default_thickness_mm: float | None = None,
               spacing_mm: float | None = None, margin_mm: float = MARGIN_MM) -> Conformity:
    """Conformity figures of one target.

    Parameters
    ----------
    target : Structure
        The PTV.
    ptv_cc : float
        PTV volume from the DVH engine, cc.
    tv_piv_cc : float
        PTV volume receiving at least the prescription (``V100%[cc]`` of the PTV), cc.
    rx_gy : float
        The target's prescription dose, Gy.
    dose : DoseGrid
    body : Structure, optional
        External contour; without it the dose grid's extent bounds the isodose volumes.
    other_targets : list of Structure
        Other PTVs of the plan (points nearer to them are not attributed to this target).
    """
    from .geometry import rasterize
    from .geometry._kernels import trilinear_grid

    if spacing_mm is None:
        # ~30 samples across the PTV, 0.75-2 mm: isodose volumes within ~1 % of converged
        d_eq = (6.0 * max(ptv_cc, 1e-3) * 1000.0 / math.pi) ** (1.0 / 3.0)
        spacing_mm = min(MAX_SPACING_MM, max(LOCAL_SPACING_MM, d_eq / 30.0))
    b = target.bounds_mm
    ext = dose.extent_mm
    lo = np.maximum(b[:, 0] - margin_mm, ext[:, 0])
    hi = np.minimum(b[:, 1] + margin_mm, ext[:, 1])
    truncated = bool(np.any(b[:, 0] - margin_mm < ext[:, 0]) or np.any(b[:, 1] + margin_mm > ext[:, 1]))
    xs, ys, zs = (_axis(lo[i], hi[i], spacing_mm) for i in range(3))
    kw = {"default_thickness_mm": default_thickness_mm}
    ptv = rasterize(target, xs, ys, zs, **kw)
    d = trilinear_grid(dose.dose_gy, dose.x_mm, dose.y_mm, dose.z_mm, xs, ys, zs, 0.0)
    sampling = (spacing_mm,) * 3
    dist = ndimage.distance_transform_edt(~ptv, sampling=sampling) if ptv.any() else np.full(ptv.shape, np.inf)
    region = dist <= margin_mm
    if body is not None and not body.is_empty:
        region &= rasterize(body, xs, ys, zs, **kw) | ptv
    for o in other_targets:
        ob = o.bounds_mm
        if np.any(ob[:, 0] > hi + margin_mm) or np.any(ob[:, 1] < lo - margin_mm):
            continue
        om = rasterize(o, xs, ys, zs, **kw)
        if om.any():
            region &= dist <= ndimage.distance_transform_edt(~om, sampling=sampling)
            region |= ptv
    voxel_cc = spacing_mm ** 3 / 1000.0
    piv100 = float(np.count_nonzero(region & (d >= rx_gy))) * voxel_cc
    piv50 = float(np.count_nonzero(region & (d >= 0.5 * rx_gy))) * voxel_cc
    outside105 = float(np.count_nonzero(region & ~ptv & (d >= 1.05 * rx_gy))) * voxel_cc
    far = region & (dist >= D2CM_MM)
    d2cm = float(d[far].max()) if far.any() else math.nan
    near = region & (dist < D2CM_MM)
    idx = np.unravel_index(int(np.argmax(np.where(near, d, -np.inf))), d.shape)
    hot = float(d[idx])
    nan = math.nan
    return Conformity(
        target=target.name, rx_gy=rx_gy, ptv_cc=ptv_cc, piv100_cc=piv100, piv50_cc=piv50,
        tv_piv_cc=tv_piv_cc,
        r100=piv100 / ptv_cc if ptv_cc > 0 else nan,
        paddick_ci=tv_piv_cc ** 2 / (ptv_cc * piv100) if ptv_cc > 0 and piv100 > 0 else nan,
        r50=piv50 / ptv_cc if ptv_cc > 0 else nan,
        paddick_gi=piv50 / piv100 if piv100 > 0 else nan,
        d2cm_gy=d2cm, d2cm_pct=100.0 * d2cm / rx_gy if rx_gy else nan,
        hotspot_gy=hot, hotspot_mm=(float(xs[idx[2]]), float(ys[idx[1]]), float(zs[idx[0]])),
        hotspot_in_ptv=bool(ptv[idx]), region_truncated=truncated,
        outside_105_pct=100.0 * outside105 / ptv_cc if ptv_cc > 0 else nan)
