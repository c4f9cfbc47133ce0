"""Small helpers shared by the DICOM readers: tag names in messages, required elements, raw DS."""

from __future__ import annotations

import numpy as np
import pydicom
from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.tag import Tag

from ..errors import DicomError

RTPLAN_SOP = "1.2.840.10008.5.1.4.1.1.481.5"
RTDOSE_SOP = "1.2.840.10008.5.1.4.1.1.481.2"
RTSTRUCT_SOP = "1.2.840.10008.5.1.4.1.1.481.3"
ION_PLAN_SOP = "1.2.840.10008.5.1.4.1.1.481.8"


def tag_name(keyword: str) -> str:
    """``"DoseGridScaling (3004,000E)"`` for a keyword."""
    t = Tag(tag_for_keyword(keyword))
    return f"{keyword} ({t.group:04X},{t.element:04X})"


def require(ds, keyword: str, path):
    """Return ``ds.<keyword>`` or raise a DicomError naming the file and tag."""
    value = ds.get(keyword, None)
    if value is None or (hasattr(value, "__len__") and len(value) == 0 and not isinstance(value, (int, float))):
        raise DicomError(f"required element is missing or empty", path=path, tag=tag_name(keyword))
    return value


def as_float(value, keyword: str, path) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise DicomError(f"value {value!r} is not a number", path=path, tag=tag_name(keyword)) from None


def floats(value, keyword: str, path, n: int | None = None) -> np.ndarray:
    """A multi-valued DS/FD element as a float array, checking its length."""
    try:
        arr = np.array([float(v) for v in (value if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else [value])], dtype=np.float64)
    except (TypeError, ValueError):
        raise DicomError(f"value {value!r} is not numeric", path=path, tag=tag_name(keyword)) from None
    if n is not None and arr.size != n:
        raise DicomError(f"expected {n} values, found {arr.size}", path=path, tag=tag_name(keyword))
    return arr


def raw_ds_values(item, tag: int, path) -> bytes | None:
    """The undecoded bytes of a DS element (fast path), or None if absent.

    Decoding ContourData through pydicom's DS class costs ~3 us a value; parsing the raw
    backslash-separated bytes with numpy is an order of magnitude faster.
    """
    elem = item.get_item(tag)
    if elem is None:
        return None
    value = elem.value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if value is None:
        return b""
    # already decoded (e.g. a dataset built in memory): re-encode
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return "\\".join(str(v) for v in value).encode()
    return str(value).encode()


def parse_ds_bytes(raw: bytes, path, keyword: str) -> np.ndarray:
    """Parse backslash-separated decimal strings into float64."""
    if not raw:
        return np.zeros(0)
    try:
        return np.array(raw.replace(b"\x00", b"").split(b"\\"), dtype=np.float64)
    except ValueError:
        raise DicomError("holds a value that is not a decimal number", path=path,
                         tag=tag_name(keyword)) from None


__all__ = ["tag_name", "require", "as_float", "floats", "raw_ds_values", "parse_ds_bytes",
           "keyword_for_tag", "RTPLAN_SOP", "RTDOSE_SOP", "RTSTRUCT_SOP", "ION_PLAN_SOP"]
