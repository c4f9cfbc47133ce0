"""DVH metrics written the TG-263 way (``D95%``, ``D0.035cc``, ``V20Gy[cc]``, ``CV21Gy[cc]`` ...).

Grammar
-------
Surrounding whitespace is removed; no spaces are allowed inside. Metric names are case-sensitive
(``Dmax``, not ``dmax``); unit words are not (``cc``/``CC``, ``Gy``/``GY``/``gy``).

- ``Dmax``, ``Dmin``, ``Dmean`` (aliases ``Max``, ``Min``, ``Mean``): maximum, minimum, mean dose.
- ``D<x>%``, ``D<x>cc``: minimum dose to the hottest x % of the volume, or x cc.
- ``DC<x>%``, ``DC<x>cc``: maximum dose to the coldest x % of the volume, or x cc.
- ``V<x>Gy[%]``, ``V<x>Gy[cc]``: volume receiving at least x Gy, in % of the volume or cc.
- ``V<x>%[%]``, ``V<x>%[cc]``: volume receiving at least x % of the prescription (needs Rx).
- ``CV<x>Gy[cc]``, ``CV<x>Gy[%]``, ``CV<x>%[cc]``, ``CV<x>%[%]``: volume receiving *less* than
  x Gy or x % of the prescription (critical-volume rules).

A dose metric may end in ``[Gy]`` (the default) or ``[%]`` (% of the prescription, needs Rx).
A volume metric (V, CV) must end in ``[%]`` or ``[cc]``. ``x`` is a non-negative decimal number:
``0.035``, ``12.5`` and ``.5`` are accepted; ``5.``, ``1e-3``, ``0,5`` and signs are not. The
percentage of volume in ``D<x>%`` and ``DC<x>%`` must lie in 0-100; a percentage of the
prescription may exceed 100 (``V110%[%]``).

"Volume" always means the part of the structure inside the dose grid
(:attr:`sbrt_qa.models.DVH.covered_volume_cc`).

Pitfall: ``D700cc`` is the dose to the *hottest* 700 cc, ``DC700cc`` to the *coldest*. "At least
700 cc of Liver-GTV below 15 Gy" is ``CV15Gy[cc] >= 700`` or, equivalently, ``DC700cc < 15``.

Errors name the offending character by its 0-based position in the stripped string::

    "D95x": unexpected 'x' at position 3; expected '%' or 'cc'
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from .errors import MetricSyntaxError

__all__ = ["Metric", "MetricValue", "parse_metric", "evaluate_metric", "format_value"]

_DOSE_KINDS = ("Dmax", "Dmin", "Dmean", "D", "DC")

# longest first, so that "Dmean" is not read as "D" + number and "DC" not as "D"
_STATISTICS = (("Dmean", "Dmean"), ("Dmax", "Dmax"), ("Dmin", "Dmin"),
               ("Mean", "Dmean"), ("Max", "Dmax"), ("Min", "Dmin"))
_PREFIXES = (("DC", "DC"), ("CV", "CV"), ("D", "D"), ("V", "V"))
_NAMES = "D, DC, V, CV, Dmax, Dmin, Dmean, Max, Min or Mean"


@dataclass(frozen=True)
class Metric:
    """A parsed DVH metric.

    Parameters
    ----------
    text : str
        The metric as given, surrounding whitespace removed.
    kind : {"Dmax", "Dmin", "Dmean", "D", "DC", "V", "CV"}
        ``Max``, ``Min`` and ``Mean`` are stored as ``Dmax``, ``Dmin`` and ``Dmean``.
    x : float or None
        The number in the metric; None for Dmax, Dmin and Dmean.
    x_unit : {"%", "cc", "Gy"} or None
        What ``x`` is in. For D and DC, ``"%"`` is % of the volume; for V and CV it is % of the
        prescription dose.
    out_unit : {"Gy", "%", "cc"}
        What the value is in. For dose kinds ``"%"`` is % of the prescription; for V and CV it
        is % of the volume.
    needs_rx : bool
        True when ``x`` or the value is relative to the prescription dose.
    """

    text: str
    kind: str
    x: float | None
    x_unit: str | None
    out_unit: str
    needs_rx: bool

    @property
    def is_dose(self) -> bool:
        """True when the value is a dose (Gy or % of the prescription), False for a volume."""
        return self.kind in _DOSE_KINDS


@dataclass(frozen=True)
class MetricValue:
    """The value of a metric on one DVH.

    Parameters
    ----------
    value : float
        NaN when the structure has no volume inside the dose grid.
    unit : {"Gy", "%", "cc"}
    """

    value: float
    unit: str

    def __str__(self) -> str:
        return format_value(self)


class _Scanner:
    """Cursor over the stripped metric text that builds positioned error messages."""

    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    @property
    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def at_digit(self, offset: int = 0) -> bool:
        """ASCII digit at the cursor (``str.isdigit`` also accepts e.g. superscripts)."""
        return "0" <= self.text[self.pos + offset:self.pos + offset + 1] <= "9"

    def take(self, word: str, *, fold: bool = False) -> bool:
        """Consume ``word`` if it comes next (case-insensitively with ``fold``)."""
        got = self.text[self.pos:self.pos + len(word)]
        if got == word or (fold and got.casefold() == word.casefold()):
            self.pos += len(word)
            return True
        return False

    def looking_at(self, word: str) -> bool:
        return self.text[self.pos:self.pos + len(word)].casefold() == word.casefold()

    def error(self, message: str) -> MetricSyntaxError:
        return MetricSyntaxError(f'"{self.text}": {message}')

    def unexpected(self, expected: str, hint: str = "") -> MetricSyntaxError:
        what = "end" if self.at_end else repr(self.peek())
        message = f"unexpected {what} at position {self.pos}; expected {expected}"
        return self.error(f"{message} ({hint})" if hint else message)


def _case_hint(text: str) -> str:
    """A hint when ``text`` starts with a metric name spelled in the wrong case."""
    for word, _ in _STATISTICS + _PREFIXES:
        got = text[:len(word)]
        if got.casefold() == word.casefold() and got != word:
            return f"metric names are case-sensitive: {word!r}, not {got!r}"
    return ""


def _read_number(sc: _Scanner, after: str) -> tuple[float, int]:
    """Read ``x`` at the cursor; return it and its start position."""
    start = sc.pos
    if sc.peek() == "-":
        raise sc.unexpected("a number", "the number cannot be negative")
    while sc.at_digit():
        sc.pos += 1
    if sc.peek() == ".":
        sc.pos += 1
        if not sc.at_digit():
            raise sc.unexpected("a digit after the decimal point")
        while sc.at_digit():
            sc.pos += 1
    if sc.pos == start:
        raise sc.unexpected(f"a number after {after!r}", _case_hint(sc.text))
    if sc.peek() == "," and sc.at_digit(1):
        raise sc.unexpected("a unit", "use '.' as the decimal separator")
    return float(sc.text[start:sc.pos]), start


def _read_dose_output(sc: _Scanner) -> str:
    """Optional ``[Gy]`` or ``[%]`` after a dose metric; Gy when absent."""
    if sc.at_end:
        return "Gy"
    head = sc.text[:sc.pos]
    if not sc.take("["):
        raise sc.unexpected("'[Gy]', '[%]' or the end")
    if sc.take("%"):
        unit = "%"
    elif sc.take("Gy", fold=True):
        unit = "Gy"
    elif sc.looking_at("cc"):
        raise sc.unexpected("'Gy' or '%'",
                            f"{head} is a dose: write {head}[Gy] or {head}[%]")
    else:
        raise sc.unexpected("'Gy' or '%'")
    if not sc.take("]"):
        raise sc.unexpected("']'")
    return unit


def _read_volume_output(sc: _Scanner) -> str:
    """Mandatory ``[%]`` or ``[cc]`` after a V or CV metric."""
    head = sc.text[:sc.pos]
    how = f"write {head}[%] or {head}[cc]"
    if sc.at_end:
        raise sc.error(f"{head} needs a unit: {how} (at position {sc.pos})")
    if not sc.take("["):
        raise sc.unexpected("'['", how)
    if sc.take("%"):
        unit = "%"
    elif sc.take("cc", fold=True):
        unit = "cc"
    elif sc.looking_at("Gy"):
        raise sc.unexpected("'%' or 'cc'", f"{head} is a volume: {how}")
    else:
        raise sc.unexpected("'%' or 'cc'")
    if not sc.take("]"):
        raise sc.unexpected("']'")
    return unit


def _read_volume_x_unit(sc: _Scanner, kind: str, num: str) -> str:
    """``%`` or ``cc`` after the number of a D or DC metric."""
    if sc.take("%"):
        return "%"
    if sc.take("cc", fold=True):
        return "cc"
    if sc.at_end:
        raise sc.error(f"{sc.text} needs a unit: write {sc.text}% or {sc.text}cc "
                       f"(at position {sc.pos})")
    if sc.looking_at("Gy"):
        volume_kind, where = ("V", "receiving") if kind == "D" else ("CV", "below")
        raise sc.unexpected("'%' or 'cc'", (
            f"{kind}<x> takes a volume, e.g. {kind}95% or {kind}2cc; for the volume {where} "
            f"{num} Gy write {volume_kind}{num}Gy[%] or {volume_kind}{num}Gy[cc]"))
    raise sc.unexpected("'%' or 'cc'")


def _read_dose_x_unit(sc: _Scanner, kind: str, num: str) -> str:
    """``Gy`` or ``%`` (of the prescription) after the number of a V or CV metric."""
    if sc.take("%"):
        return "%"
    if sc.take("Gy", fold=True):
        return "Gy"
    if sc.at_end:
        raise sc.error(f"{sc.text} needs a unit: write {sc.text}Gy[%] or {sc.text}Gy[cc], "
                       f"or {sc.text}%[...] for % of the prescription (at position {sc.pos})")
    if sc.looking_at("cc"):
        dose_kind, where = ("D", "hottest") if kind == "V" else ("DC", "coldest")
        raise sc.unexpected("'Gy' or '%'", (
            f"{kind}<x> takes a dose, e.g. {kind}20Gy[cc]; for the dose to the {where} {num} cc "
            f"write {dose_kind}{num}cc"))
    raise sc.unexpected("'Gy' or '%'")


def _parse(text: str) -> Metric:
    sc = _Scanner(text.strip())
    if sc.at_end:
        raise MetricSyntaxError(f"empty metric; expected one of {_NAMES}, e.g. D95% or V20Gy[cc]")

    x = x_unit = None
    for word, kind in _STATISTICS:
        if sc.take(word):
            out_unit = _read_dose_output(sc)
            break
    else:
        for word, kind in _PREFIXES:
            if sc.take(word):
                break
        else:
            raise sc.unexpected(_NAMES, _case_hint(sc.text))
        x, x_pos = _read_number(sc, word)
        num = sc.text[x_pos:sc.pos]
        if kind in _DOSE_KINDS:
            x_unit = _read_volume_x_unit(sc, kind, num)
            if x_unit == "%" and x > 100:
                raise sc.error(f"the volume {num} % at position {x_pos} is more than the whole "
                               "structure; a percentage of the volume must be between 0 and 100")
            out_unit = _read_dose_output(sc)
        else:
            x_unit = _read_dose_x_unit(sc, kind, num)
            out_unit = _read_volume_output(sc)
    if not sc.at_end:
        raise sc.unexpected("the end")

    needs_rx = (out_unit == "%") if kind in _DOSE_KINDS else (x_unit == "%")
    return Metric(text=sc.text, kind=kind, x=x, x_unit=x_unit, out_unit=out_unit,
                  needs_rx=needs_rx)


_parse_cached = functools.lru_cache(maxsize=4096)(_parse)


def parse_metric(text: str) -> Metric:
    """Parse a TG-263 style metric string (see the module docstring for the grammar).

    Parameters
    ----------
    text : str
        E.g. ``"D95%"``, ``"D0.035cc"``, ``"V20Gy[cc]"``, ``"CV15Gy[cc]"``, ``"DC700cc"``,
        ``"Dmean[%]"``. Surrounding whitespace is ignored. Results are cached.

    Returns
    -------
    Metric

    Raises
    ------
    MetricSyntaxError
        When ``text`` is not a metric; the message quotes the stripped string and gives the
        0-based position of the first character that does not fit, with a hint where one helps.

    Examples
    --------
    >>> parse_metric("V12.5Gy[cc]")
    Metric(text='V12.5Gy[cc]', kind='V', x=12.5, x_unit='Gy', out_unit='cc', needs_rx=False)
    >>> parse_metric("D95%[%]").needs_rx
    True
    """
    if not isinstance(text, str):
        raise MetricSyntaxError(f"a metric must be a string, not {type(text).__name__}: {text!r}")
    return _parse_cached(text)


def evaluate_metric(dvh, metric: str | Metric, *, rx_gy: float | None = None) -> MetricValue:
    """Evaluate a metric on a cumulative DVH.

    Parameters
    ----------
    dvh : sbrt_qa.models.DVH
        Every volume refers to its ``covered_volume_cc`` (the part inside the dose grid).
    metric : str or Metric
        See the module docstring.
    rx_gy : float, optional
        Prescription dose, Gy. Required by metrics relative to it (``V100%[%]``, ``D95%[%]``,
        ``Dmax[%]``); ignored by the others.

    Returns
    -------
    MetricValue
        Dose in Gy or % of ``rx_gy``; volume in cc or % of the covered volume. NaN when the
        covered volume is zero.

    Raises
    ------
    MetricSyntaxError
        When the metric does not parse, or needs a prescription dose and ``rx_gy`` is missing
        or not positive.

    Notes
    -----
    ``D<x>cc`` is ``dvh.dose_at_volume_gy(x)``; ``D<x>%`` takes ``x`` % of the covered volume.
    ``DC<x>cc`` is the maximum dose within the coldest ``x`` cc: ``dvh.coldest_dose_gy(x)``.
    ``CV<x>Gy[cc]`` is ``covered - dvh.volume_at_dose_cc(x)``. A volume larger than the covered
    volume gives Dmin for D and Dmax for DC (whatever the DVH returns there).

    Examples
    --------
    >>> import numpy as np
    >>> from sbrt_qa.models import DVH
    >>> dose = np.linspace(10.0, 30.0, 201)
    >>> dvh = DVH("uniform", dose, 10.0 * (30.0 - dose) / 20.0, 10.0, 10.0, 10.0, 30.0, 20.0)
    >>> print(evaluate_metric(dvh, "D2cc"), evaluate_metric(dvh, "V100%[%]", rx_gy=20.0))
    26.00 Gy 50.0 %
    """
    m = metric if isinstance(metric, Metric) else parse_metric(metric)
    if m.needs_rx:
        if rx_gy is None:
            raise MetricSyntaxError(f'"{m.text}" needs a prescription dose (--rx): it is '
                                    "relative to the prescription")
        if not (math.isfinite(rx_gy) and rx_gy > 0):
            raise MetricSyntaxError(f'"{m.text}" needs a positive prescription dose (--rx), '
                                    f"not {rx_gy} Gy")
    covered = float(dvh.covered_volume_cc)
    if not covered > 0:
        return MetricValue(float("nan"), m.out_unit)

    if m.is_dose:
        if m.kind == "Dmax":
            dose = dvh.dmax_gy
        elif m.kind == "Dmin":
            dose = dvh.dmin_gy
        elif m.kind == "Dmean":
            dose = dvh.dmean_gy
        else:
            volume = m.x if m.x_unit == "cc" else m.x / 100.0 * covered
            if m.kind == "DC":
                dose = dvh.coldest_dose_gy(volume)
            else:
                dose = dvh.dose_at_volume_gy(volume)
        dose = float(dose)
        value = dose if m.out_unit == "Gy" else 100.0 * dose / rx_gy
    else:
        dose = m.x if m.x_unit == "Gy" else m.x / 100.0 * rx_gy
        volume = float(dvh.volume_at_dose_cc(dose))
        if m.kind == "CV":
            volume = max(covered - volume, 0.0)
        value = volume if m.out_unit == "cc" else 100.0 * volume / covered
    return MetricValue(value, m.out_unit)


def format_value(mv: MetricValue) -> str:
    """Format a metric value with its unit for tables and reports.

    Parameters
    ----------
    mv : MetricValue

    Returns
    -------
    str
        Gy with 2 decimals (``"23.41 Gy"``), % with 1 (``"95.2 %"``), cc with 2 (``"12.30 cc"``)
        or 3 below 1 cc (``"0.035 cc"``); ``"n/a"`` for NaN.
    """
    v = mv.value
    if math.isnan(v):
        return "n/a"
    if mv.unit == "%":
        decimals = 1
    elif mv.unit == "cc" and abs(v) < 1:
        decimals = 3
    else:
        decimals = 2
    return f"{v:.{decimals}f} {mv.unit}"
