"""Match the protocol's structure names (TG-263) to a plan's ROI names, never guessing.

For each wanted name, in this order:

1. ``mapping`` (a site's explicit structure -> ROI name): the ROI of exactly that name. If the
   plan has no such ROI, a warning says so and matching goes on by name.
2. Name: ROIs whose *normalised* name equals the wanted one's. Normalising ignores case,
   spaces, ``_`` and ``-``: ``Spinal Cord``, ``SPINAL_CORD`` and ``spinalcord`` all match
   ``SpinalCord``. ``how`` is ``"exact"`` when the ROI name is identical, else ``"normalised"``.
3. Aliases (the protocol's lists, e.g. ``SpinalCord: [cord]``), normalised the same way, among
   ROIs no other wanted name matched in steps 1-2.

Two or more candidate ROIs in one step is ambiguous: no match, and an ``error`` finding (name
the right one in the site ``mapping``). With no match, ROIs whose normalised name is similar
(``difflib`` ratio >= 0.8, e.g. ``Duodenun`` for ``Duodenum``) are reported as a ``warning``
finding, never used.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from .models import Finding

__all__ = ["FUZZY_CUTOFF", "NameMatch", "NameResolution", "normalise_name", "resolve_names"]

FUZZY_CUTOFF = 0.8
_IGNORED = re.compile(r"[\s_\-]+")


def normalise_name(name: str) -> str:
    """Case-fold ``name``, drop spaces, ``_`` and ``-``: ``"Spinal_Cord"`` -> ``"spinalcord"``."""
    return _IGNORED.sub("", name).casefold()


@dataclass(frozen=True)
class NameMatch:
    """How one wanted structure name was matched.

    Parameters
    ----------
    wanted : str
        The protocol's structure name.
    roi : str or None
        The plan's ROI name, or None when nothing matched (or the match was ambiguous).
    how : {"mapping", "exact", "normalised", "alias"} or None
    findings : tuple of Finding
    """

    wanted: str
    roi: str | None
    how: str | None
    findings: tuple[Finding, ...] = ()


@dataclass(frozen=True)
class NameResolution:
    """Result of :func:`resolve_names`: one :class:`NameMatch` per wanted name, in order."""

    matches: dict[str, NameMatch]

    def roi(self, wanted: str) -> str | None:
        """The ROI name matched to ``wanted``, or None."""
        return self.matches[wanted].roi

    @property
    def mapping(self) -> dict[str, str]:
        """Wanted name -> ROI name, for the matched names only."""
        return {w: m.roi for w, m in self.matches.items() if m.roi is not None}

    @property
    def findings(self) -> tuple[Finding, ...]:
        """Every finding, in wanted-name order."""
        return tuple(f for m in self.matches.values() for f in m.findings)


def _ambiguous(wanted: str, rois: list[str], step: str) -> Finding:
    listed = ", ".join(repr(r) for r in rois)
    return Finding("error", "roi_name_ambiguous",
                   f"{len(rois)} ROIs match {wanted} by {step} ({listed}); none is used: name "
                   f"the right one in the site file (mapping: {{{wanted}: <ROI name>}})",
                   structure=wanted)


def _near_misses(wanted: str, names: set[str], rois: list[str]) -> list[Finding]:
    scored = []
    for roi in dict.fromkeys(rois):
        norm = normalise_name(roi)
        ratio = max(difflib.SequenceMatcher(None, n, norm).ratio() for n in names)
        if ratio >= FUZZY_CUTOFF:
            scored.append((ratio, roi))
    return [Finding("warning", "roi_name_near_miss",
                    f"no ROI matches {wanted}; {roi!r} is close (similarity {ratio:.2f}) but is "
                    f"not used: if it is the {wanted}, rename it or map it in the site file "
                    f"(mapping: {{{wanted}: {roi}}})", structure=wanted)
            for ratio, roi in sorted(scored, key=lambda t: (-t[0], t[1]))]


def resolve_names(roi_names: list[str], wanted: list[str], aliases: dict[str, list[str]],
                  mapping: dict[str, str] | None = None) -> NameResolution:
    """Match wanted structure names to the plan's ROI names (see the module docstring).

    Parameters
    ----------
    roi_names : list of str
        The plan's ROI names (an RTSTRUCT may repeat a name; repeats are ambiguous).
    wanted : list of str
        Structure names the protocol needs (TG-263: ``SpinalCord``, ``Duodenum`` ...).
    aliases : dict of str to list of str
        Structure name -> other names it goes by.
    mapping : dict of str to str, optional
        Structure name -> ROI name; wins over everything else.

    Returns
    -------
    NameResolution

    Examples
    --------
    >>> r = resolve_names(["SPINAL_CORD", "Duodenun", "bowelbag"],
    ...                   ["SpinalCord", "Duodenum", "Bag_Bowel"], {"Bag_Bowel": ["bowelbag"]})
    >>> [(m.roi, m.how) for m in r.matches.values()]
    [('SPINAL_CORD', 'normalised'), (None, None), ('bowelbag', 'alias')]
    >>> r.findings[0].code
    'roi_name_near_miss'
    """
    mapping = mapping or {}
    rois = list(roi_names)
    by_norm: dict[str, list[str]] = {}
    for roi in rois:
        by_norm.setdefault(normalise_name(roi), []).append(roi)

    matches: dict[str, NameMatch] = {}
    notes: dict[str, list[Finding]] = {}
    claimed: set[str] = set()
    for name in dict.fromkeys(wanted):
        notes[name] = found = []
        if name in mapping:
            target = mapping[name]
            hits = [r for r in rois if r == target]
            if len(hits) == 1:
                matches[name] = NameMatch(name, target, "mapping")
                claimed.add(target)
                continue
            if hits:
                found.append(_ambiguous(name, hits, "the site mapping (repeated ROI name)"))
                matches[name] = NameMatch(name, None, None, tuple(found))
                continue
            found.append(Finding("warning", "mapped_roi_missing",
                                 f"the site maps {name} to ROI {target!r}, which the plan does "
                                 f"not have; matching {name} by name instead", structure=name))
        hits = by_norm.get(normalise_name(name), [])
        if len(hits) == 1:
            matches[name] = NameMatch(name, hits[0], "exact" if hits[0] == name else
                                      "normalised", tuple(found))
            claimed.add(hits[0])
        elif hits:
            found.append(_ambiguous(name, hits, "name"))
            matches[name] = NameMatch(name, None, None, tuple(found))

    for name in dict.fromkeys(wanted):
        if name in matches:
            continue
        found = notes[name]
        alias_norms = {normalise_name(a) for a in aliases.get(name, ())}
        free = [r for r in rois if r not in claimed]
        hits = [r for r in free if normalise_name(r) in alias_norms]
        if len(hits) == 1:
            matches[name] = NameMatch(name, hits[0], "alias", tuple(found))
            continue
        if hits:
            found.append(_ambiguous(name, hits, "alias"))
        else:
            found.extend(_near_misses(name, {normalise_name(name)} | alias_norms, free))
        matches[name] = NameMatch(name, None, None, tuple(found))
    return NameResolution({name: matches[name] for name in dict.fromkeys(wanted)})
