"""Domain exceptions. Each carries the file and, where it applies, the DICOM tag or YAML key."""

from __future__ import annotations


class SbrtQaError(Exception):
    """Base class of every error sbrt-qa raises on bad input.

    Parameters
    ----------
    message : str
        What is wrong and, where possible, how to fix it.
    path : str, optional
        The file (or folder) the problem is in.
    tag : str, optional
        The DICOM keyword and tag, e.g. ``"DoseGridScaling (3004,000E)"``.
    key : str, optional
        The YAML key path, e.g. ``"constraint_sets.tg101[3].limit"``.
    """

    def __init__(self, message: str, *, path=None, tag: str | None = None, key: str | None = None):
        self.message = message
        self.path = None if path is None else str(path)
        self.tag = tag
        self.key = key
        super().__init__(str(self))

    def __str__(self) -> str:
        where = []
        if self.path:
            where.append(self.path)
        if self.tag:
            where.append(self.tag)
        if self.key:
            where.append(f"key {self.key}")
        return f"{': '.join(where)}: {self.message}" if where else self.message


class DicomError(SbrtQaError):
    """A DICOM file is missing, unreadable, or lacks or misuses a required element."""


class PlanLinkError(DicomError):
    """The RT objects in a plan folder cannot be linked (UIDs, frame of reference)."""


class MetricSyntaxError(SbrtQaError, ValueError):
    """A DVH metric string does not follow the grammar (``D95%``, ``V20Gy[cc]`` ...)."""


class ProtocolError(SbrtQaError):
    """A protocol or constraint YAML file is invalid."""


class StructureNotFoundError(SbrtQaError, KeyError):
    """A structure asked for by name is not in the plan."""

    def __str__(self) -> str:  # KeyError would repr() the message otherwise
        return SbrtQaError.__str__(self)
