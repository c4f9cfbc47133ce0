"""Geometry: contours -> occupancy masks on grids; structure algebra (Liver-GTV, expansions)."""

from .boolean import subtract, union
from .mask import rasterize

__all__ = ["rasterize", "subtract", "union"]
