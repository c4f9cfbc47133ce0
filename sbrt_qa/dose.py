"""Operations on dose grids: compare geometry, resample, sum (beams, courses)."""

from __future__ import annotations

import numpy as np

from .models import DoseGrid, Finding

COORD_TOLERANCE_MM = 1e-3


def same_geometry(a: DoseGrid, b: DoseGrid) -> bool:
    """True when both grids have the same nodes (within 0.001 mm)."""
    return (a.shape == b.shape
            and all(np.allclose(p, q, atol=COORD_TOLERANCE_MM)
                    for p, q in ((a.x_mm, b.x_mm), (a.y_mm, b.y_mm), (a.z_mm, b.z_mm))))


def resample(grid: DoseGrid, x_mm: np.ndarray, y_mm: np.ndarray, z_mm: np.ndarray) -> np.ndarray:
    """Trilinear dose of ``grid`` at the nodes of another rectilinear grid, Gy.

    Nodes outside ``grid``'s node hull get 0 Gy (no dose was computed there).
    """
    from .geometry._kernels import trilinear_grid

    return trilinear_grid(grid.dose_gy, grid.x_mm, grid.y_mm, grid.z_mm, np.asarray(x_mm, float),
                          np.asarray(y_mm, float), np.asarray(z_mm, float), 0.0)


def sum_grids(grids: list[DoseGrid], *, summation_type: str) -> tuple[DoseGrid, list[Finding]]:
    """Physical sum of dose grids.

    Grids with identical nodes are added directly. Otherwise all are resampled (trilinear) onto a
    grid spanning their union at the finest spacing of each axis, taking 0 Gy outside each
    grid's own nodes; a finding says so.
    """
    findings: list[Finding] = []
    first = grids[0]
    sources = tuple(f for g in grids for f in g.source_files)
    if all(same_geometry(first, g) for g in grids[1:]):
        total = first.dose_gy.copy()
        for g in grids[1:]:
            total += g.dose_gy
        return DoseGrid(total, first.x_mm, first.y_mm, first.z_mm, first.frame_of_reference_uid,
                        summation_type, sources), findings
    axes = []
    for name in ("x_mm", "y_mm", "z_mm"):
        lo = min(float(getattr(g, name)[0]) for g in grids)
        hi = max(float(getattr(g, name)[-1]) for g in grids)
        step = min(float(np.median(np.diff(getattr(g, name)))) for g in grids if getattr(g, name).size > 1)
        n = int(np.floor((hi - lo) / step + 1e-6)) + 1
        axes.append(lo + step * np.arange(n))
    total = np.zeros((axes[2].size, axes[1].size, axes[0].size))
    for g in grids:
        total += resample(g, axes[0], axes[1], axes[2])
    findings.append(Finding("info", "dose_grids_resampled",
                            f"{len(grids)} dose grids with different geometry were summed on a "
                            f"common grid of {axes[0][1] - axes[0][0]:.2f} x "
                            f"{axes[1][1] - axes[1][0]:.2f} x {axes[2][1] - axes[2][0]:.2f} mm "
                            "(trilinear; 0 Gy outside each grid)"))
    return DoseGrid(total, axes[0], axes[1], axes[2], first.frame_of_reference_uid,
                    summation_type, sources), findings


def scaled(grid: DoseGrid, factor: float, summation_type: str) -> DoseGrid:
    """The grid times ``factor`` (e.g. a FRACTION dose times the number of fractions)."""
    return DoseGrid(grid.dose_gy * factor, grid.x_mm, grid.y_mm, grid.z_mm,
                    grid.frame_of_reference_uid, summation_type, grid.source_files)
