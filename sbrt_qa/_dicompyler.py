"""Bridge to dicompyler-core, the reference open-source calculator used in cross-checks.

dicompyler-core 0.5.6 imports ``pydicom.dicomio.read_file``, which pydicom 3 removed; the alias is
set here, once, before dicompylercore is imported. Import this module (not dicompylercore
directly) wherever dicompyler-core is needed. It is an optional (test) dependency.
"""

from __future__ import annotations

import math

import numpy as np
import pydicom
import pydicom.dicomio

if not hasattr(pydicom.dicomio, "read_file"):
    pydicom.dicomio.read_file = pydicom.dcmread

from dicompylercore import dvh as _dc_dvh  # noqa: E402  (needs the alias above)
from dicompylercore import dvhcalc as _dc_dvhcalc  # noqa: E402

DEFAULT_BIN_WIDTH_GY = 0.01


def dicompyler_dvh(dvh, *, bin_width_gy: float = DEFAULT_BIN_WIDTH_GY) -> "_dc_dvh.DVH":
    """Convert a :class:`sbrt_qa.models.DVH` to a ``dicompylercore.dvh.DVH``.

    Parameters
    ----------
    dvh : sbrt_qa.models.DVH
    bin_width_gy : float, optional
        Width of dicompyler's dose bins, Gy. Its bins start at 0 Gy.

    Returns
    -------
    dicompylercore.dvh.DVH
        Cumulative, dose in Gy, volume in cm3 (the covered volume): ``counts[i]`` is the volume
        receiving at least ``bins[i]``.
    """
    if dvh.covered_volume_cc <= 0 or not math.isfinite(dvh.dmax_gy):
        counts = np.zeros(1)
        bins = np.array([0.0, bin_width_gy])
    else:
        n = max(1, int(math.ceil(dvh.dmax_gy / bin_width_gy)) + 1)
        bins = bin_width_gy * np.arange(n + 1)
        # the same curve as DVH.volume_at_dose_cc, at every bin edge
        counts = np.interp(-bins[:-1], -dvh.dose_gy[::-1], dvh.cumulative_cc[::-1],
                           left=0.0, right=dvh.covered_volume_cc)
    return _dc_dvh.DVH(counts, bins, dvh_type="cumulative", dose_units="Gy",
                       volume_units="cm3", name=dvh.name)


def get_dvh(rtss_path, rtdose_path, roi_number: int, **kwargs) -> "_dc_dvh.DVH":
    """dicompyler-core's own DVH of one ROI (``dicompylercore.dvhcalc.get_dvh``).

    Parameters
    ----------
    rtss_path, rtdose_path : str or Path
        The RTSTRUCT and RTDOSE files.
    roi_number : int
        ROINumber of the structure.
    **kwargs
        Passed on (``interpolation_resolution``, ``use_structure_extents``, ...).

    Returns
    -------
    dicompylercore.dvh.DVH
        Cumulative, Gy, cm3.
    """
    return _dc_dvhcalc.get_dvh(str(rtss_path), str(rtdose_path), int(roi_number), **kwargs)
