"""Protocol and constraint YAML files -> validated, merged :class:`Protocol` objects.

Three kinds of file share one schema (``sbrt-qa protocol schema`` prints it as JSON Schema):

``kind: protocol``
    The trial: prescription rules, which ROIs are targets and how they are classed (PVTT or
    extrahepatic), target coverage rules, conformity grading (RTOG 0915/0813 style), and
    ``include:`` of constraint sets. ``include`` paths are relative to the including file.
``kind: constraint_set``
    Organ-at-risk constraints, derived structures and name aliases (may ``include`` others).
``kind: site``
    Passed separately (``--site``): overrides constraints or coverage rules by ``id`` (new limit,
    ``enabled: false``, ``required``, ``applies_to``; each with a ``reason``), adds constraints,
    adds aliases and an explicit structure -> ROI-name ``mapping``.

A constraint in YAML::

    - id: tg101.duodenum.d5cc        # stable, unique after includes
      structure: Duodenum            # TG-263 name, or a derived structure (Liver-GTV)
      metric: D5cc                   # grammar of sbrt_qa.metrics
      comparison: "<"                # "<", "<=", ">", ">=" (quote: YAML reads > as a block)
      limit:
        per_protocol: 18 Gy          # the unit must be the metric's output unit (Gy, cc or %)
        minor: 20 Gy                 # optional: up to this value (inclusive) a minor deviation
      source: AAPM TG-101 (Benedict 2010) Table III, 5 fx

Grading of a value against a limit (``Rule.grade``): meeting ``per_protocol`` is ``"pass"``;
otherwise, up to and including ``minor`` it is ``"minor"``; beyond ``minor``, or when there is no
``minor``, it is ``"major"``. UK SABR wording is accepted instead: ``optimal`` means
``per_protocol`` and ``mandatory`` means ``minor`` (the last acceptable value).

Validation reports every problem it finds, each with file, line and key path, e.g.
``constraints/x.yaml:42: constraints[3].limit.per_protocol: '18 Gyy' is not a dose: write e.g.
'18 Gy'``. The library never prints; :func:`load_protocol` raises :class:`ProtocolError`.
"""

from __future__ import annotations

import bisect
import difflib
import math
import operator
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer,
                      PlainValidator, TypeAdapter, ValidationError, ValidationInfo,
                      WithJsonSchema, field_validator, model_validator)

from .errors import ProtocolError
from .metrics import Metric, parse_metric
from .names import normalise_name

__all__ = [
    "DEFAULT_PROTOCOL_FILE", "ConformityRules", "Constraint", "ConstraintSetFile",
    "DerivedStructure", "DoseRange", "Limit", "Override", "PrescriptionRules", "Protocol",
    "ProtocolFile", "ProtocolIssue", "Quantity", "Rule", "SiteFile", "TargetRules",
    "default_constraints_dir", "load_protocol", "protocol_json_schema",
    "validate_protocol_file",
]

DEFAULT_PROTOCOL_FILE = "trial_bclc_c_sbrt.yaml"
CONSTRAINTS_DIR_ENV = "SBRT_QA_CONSTRAINTS_DIR"

TargetClass = Literal["pvtt", "extrahepatic"]
TARGET_CLASSES: tuple[str, ...] = ("pvtt", "extrahepatic")
Grade = Literal["pass", "minor", "major"]
Comparison = Literal["<", "<=", ">", ">="]
SELECTORS = ("@gtv", "@targets")
CONFORMITY_KINDS = ("r100", "r50", "d2cm", "outside_105")

_COMPARE = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_ID_RE = r"^[a-z0-9][a-z0-9_.\-]*$"


# --- quantities: "18 Gy", "700 cc", "95 %" ---------------------------------------------------

@dataclass(frozen=True)
class Quantity:
    """A number with its unit, as written in the YAML (``18 Gy``, ``700 cc``, ``95 %``).

    Parameters
    ----------
    value : float
        Non-negative.
    unit : {"Gy", "cc", "%"}
    """

    value: float
    unit: str

    def __str__(self) -> str:
        return f"{self.value:g} {self.unit}"


_UNITS = {"gy": "Gy", "cc": "cc", "%": "%"}
_WHAT = {"Gy": "a dose", "cc": "a volume", "%": "a percentage", None: "a quantity"}
_IN_UNIT = {"Gy": "a dose in Gy", "cc": "a volume in cc", "%": "a percentage"}
_EXAMPLE = {"Gy": "18", "cc": "700", "%": "95"}
_NUMBER_THEN_REST = re.compile(r"\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*(.*?)\s*")
_METRIC_UNIT_KEY = "sbrt_qa.metric_unit"  # validation-context slot: (out_unit, metric text)


def _examples(number: str, expected: str | None) -> str:
    if expected is not None:
        return f"'{number} {expected}'"
    return f"'{number} Gy', '{number} cc' or '{number} %'"


def _parse_quantity(raw: Any, expected: str | None, metric: str | None = None) -> Quantity:
    """Parse ``raw`` as a quantity whose unit must be ``expected`` (any known unit if None)."""
    if isinstance(raw, Quantity):
        number, unit, text = raw.value, raw.unit, str(raw)
    elif isinstance(raw, (int, float)) and not isinstance(raw, bool):
        raise ValueError(f"{raw!r} has no unit: write e.g. {_examples(f'{raw:g}', expected)}")
    else:
        m = _NUMBER_THEN_REST.fullmatch(raw) if isinstance(raw, str) else None
        word = m.group(2).casefold() if m else ""
        if word == "cgy":
            raise ValueError(f"{raw!r}: write doses in Gy, e.g. '{float(m.group(1)) / 100:g} Gy'")
        if word not in _UNITS:
            example = _examples(m.group(1) if m else _EXAMPLE.get(expected, "18"), expected)
            how = "e.g." if expected is not None else "a number and a unit, e.g."
            raise ValueError(f"{raw!r} is not {_WHAT[expected]}: write {how} {example}")
        number, unit, text = float(m.group(1)), _UNITS[word], raw
    if number < 0:
        raise ValueError(f"{text!r} must not be negative")
    if expected is not None and unit != expected:
        source = f"{metric} gives" if metric else "this value must be"
        raise ValueError(f"{text!r} is {_WHAT[unit]}, but {source} {_IN_UNIT[expected]}: "
                         f"write e.g. '{number:g} {expected}'")
    return Quantity(number, unit)


def _limit_quantity(value: Any, info: ValidationInfo) -> Quantity:
    expected, metric = None, None
    if isinstance(info.context, dict):
        expected, metric = info.context.get(_METRIC_UNIT_KEY) or (None, None)
    return _parse_quantity(value, expected, metric)


def _quantity_type(unit: str | None, description: str):
    units = "Gy|cc|%" if unit is None else re.escape(unit)
    validator = (PlainValidator(_limit_quantity) if unit is None
                 else PlainValidator(lambda v: _parse_quantity(v, unit)))
    return Annotated[Quantity, validator, PlainSerializer(str, return_type=str),
                     WithJsonSchema({"type": "string", "description": description,
                                     "pattern": rf"^\s*(\d+(\.\d*)?|\.\d+)\s*({units})\s*$"})]


LimitValue = _quantity_type(None, "A number and the metric's output unit: '18 Gy', '700 cc', "
                                  "'95 %'.")
DoseGy = _quantity_type("Gy", "A dose: a number and 'Gy', e.g. '18 Gy'.")
VolumeCc = _quantity_type("cc", "A volume: a number and 'cc', e.g. '700 cc'.")
Percent = _quantity_type("%", "A percentage: a number and '%', e.g. '95 %'.")


def _check_regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"{pattern!r} is not a valid regular expression: {exc}") from None
    return pattern


Pattern = Annotated[str, AfterValidator(_check_regex),
                    Field(description="Python regular expression, searched case-insensitively.")]
NonEmpty = Annotated[str, Field(min_length=1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- rules and constraints -------------------------------------------------------------------

class Limit(_Model):
    """Tiers of a limit. Either ``per_protocol`` [+ ``minor``] or ``optimal`` [+ ``mandatory``].

    ``minor`` (``mandatory``) is the value up to which (inclusive) a miss is a minor deviation;
    beyond it, or when it is absent, a miss of ``per_protocol`` (``optimal``) is major.
    """

    per_protocol: LimitValue | None = None
    minor: LimitValue | None = None
    optimal: LimitValue | None = None
    mandatory: LimitValue | None = None

    @model_validator(mode="after")
    def _one_tier_scheme(self) -> "Limit":
        if self.per_protocol is None and self.optimal is None:
            raise ValueError("give 'per_protocol' (with an optional 'minor') or 'optimal' "
                             "(with an optional 'mandatory')")
        if self.per_protocol is not None and self.optimal is not None:
            raise ValueError("give 'per_protocol' or 'optimal', not both: they mean the same")
        if self.per_protocol is not None and self.mandatory is not None:
            raise ValueError("'mandatory' pairs with 'optimal'; with 'per_protocol' write 'minor'")
        if self.optimal is not None and self.minor is not None:
            raise ValueError("'minor' pairs with 'per_protocol'; with 'optimal' write 'mandatory'")
        if self.minor_limit is not None and self.minor_limit.unit != self.pass_limit.unit:
            raise ValueError(f"{self.tier_names[1]} ({self.minor_limit}) and "
                             f"{self.tier_names[0]} ({self.pass_limit}) must have the same unit")
        return self

    @property
    def pass_limit(self) -> Quantity:
        """The per-protocol (optimal) limit."""
        return self.per_protocol if self.per_protocol is not None else self.optimal

    @property
    def minor_limit(self) -> Quantity | None:
        """The minor-deviation (mandatory) bound, or None: a miss is then major."""
        return self.minor if self.per_protocol is not None else self.mandatory

    @property
    def tier_names(self) -> tuple[str, str]:
        """``("per_protocol", "minor")`` or ``("optimal", "mandatory")``, as written."""
        return ("per_protocol", "minor") if self.per_protocol is not None else (
            "optimal", "mandatory")


class Rule(_Model):
    """A graded metric with a limit; applied to every target when used as a coverage rule."""

    id: Annotated[str, Field(pattern=_ID_RE, description="Stable unique id, e.g. "
                                                         "'tg101.duodenum.d5cc'.")]
    metric: Annotated[str, Field(description="TG-263 metric, e.g. 'D5cc', 'V20Gy[%]', "
                                             "'CV21Gy[cc]', 'V100%[%]' (sbrt_qa.metrics).")]
    comparison: Comparison
    limit: Limit
    source: NonEmpty
    verified: bool = Field(True, description="False where the value comes only from secondary "
                                             "sources (say so in a note).")
    note: str | None = None
    enabled: bool = True

    @field_validator("metric")
    @classmethod
    def _metric_parses(cls, value: str) -> str:
        return parse_metric(value).text

    @field_validator("limit", mode="wrap")
    @classmethod
    def _limit_in_metric_unit(cls, value, handler, info: ValidationInfo) -> Limit:
        metric = info.data.get("metric")
        out_unit = parse_metric(metric).out_unit if metric else None
        ctx = info.context if isinstance(info.context, dict) else None
        if ctx is None:
            limit = handler(value)
        else:  # lets each tier name the metric's unit in its own error, at its own key
            previous = ctx.get(_METRIC_UNIT_KEY)
            ctx[_METRIC_UNIT_KEY] = (out_unit, metric)
            try:
                limit = handler(value)
            finally:
                ctx[_METRIC_UNIT_KEY] = previous
        tiers = [(n, q) for n, q in zip(limit.tier_names, (limit.pass_limit, limit.minor_limit))
                 if q is not None]
        for name, q in tiers:
            if out_unit is not None and q.unit != out_unit:
                raise ValueError(f"{name}: '{q}' is {_WHAT[q.unit]}, but {metric} gives "
                                 f"{_IN_UNIT[out_unit]}: write e.g. '{q.value:g} {out_unit}'")
        comparison, minor = info.data.get("comparison"), limit.minor_limit
        if comparison is not None and minor is not None:
            upper = comparison in ("<", "<=")
            if (minor.value <= limit.pass_limit.value) if upper else (
                    minor.value >= limit.pass_limit.value):
                side = "above" if upper else "below"
                raise ValueError(f"{limit.tier_names[1]} ({minor}) must lie {side} "
                                 f"{limit.tier_names[0]} ({limit.pass_limit}) for "
                                 f"'{comparison}': it is the more lenient bound")
        return limit

    @property
    def parsed_metric(self) -> Metric:
        """The parsed metric (kind, x, x_unit, out_unit, needs_rx)."""
        return parse_metric(self.metric)

    @property
    def unit(self) -> str:
        """Unit of the metric's value and of the limits: ``"Gy"``, ``"cc"`` or ``"%"``."""
        return self.parsed_metric.out_unit

    def grade(self, value: float) -> Grade:
        """Grade a metric value against the limit.

        Parameters
        ----------
        value : float
            The metric's value in :attr:`unit` (Gy, cc or %).

        Returns
        -------
        {"pass", "minor", "major"}
            ``"pass"`` when ``value <comparison> per_protocol`` holds; ``"minor"`` when it
            does not but ``value`` is within ``minor`` (inclusive); else ``"major"``.

        Raises
        ------
        ValueError
            If ``value`` is NaN: a value that was not evaluated cannot be graded.
        """
        if math.isnan(value):
            raise ValueError(f"{self.id}: cannot grade NaN (the metric was not evaluated)")
        if _COMPARE[self.comparison](value, self.limit.pass_limit.value):
            return "pass"
        minor = self.limit.minor_limit
        if minor is not None:
            within = value <= minor.value if self.comparison in ("<", "<=") else (
                value >= minor.value)
            if within:
                return "minor"
        return "major"

    def describe(self) -> str:
        """One line such as ``D5cc < 18 Gy (minor up to 20 Gy)``."""
        text = f"{self.metric} {self.comparison} {self.limit.pass_limit}"
        minor = self.limit.minor_limit
        if minor is not None:
            text += f" ({self.limit.tier_names[1]} up to {minor})"
        return text


class Constraint(Rule):
    """A limit on one (TG-263 named or derived) structure.

    ``required``: when the constraint applies (see ``applies_to``) and its structure is missing,
    the plan is not evaluable; otherwise the check is only not evaluated. ``alpha_beta`` and
    ``fractions`` (the fractionation the limit is written for) let staged courses be compared
    in EQD2. ``dose_quantity`` says whether the metric's dose (the ``x`` of ``V<x>Gy``, or the
    value of a dose metric) is physical, EQD2 or BED with ``alpha_beta``. ``scope`` ``total``
    is the dose of all courses of the plan; ``course`` is each course on its own (the worst one
    is graded).
    """

    structure: NonEmpty
    required: bool = False
    applies_to: tuple[TargetClass, ...] = Field(TARGET_CLASSES, min_length=1, description=(
        "Target classes for which the constraint is checked (default: both)."))
    alpha_beta: DoseGy | None = None
    fractions: Annotated[int, Field(ge=1)] | None = None
    dose_quantity: Literal["physical", "eqd2", "bed"] = "physical"
    scope: Literal["total", "course"] = "total"

    @model_validator(mode="after")
    def _biological_dose_needs_alpha_beta(self) -> "Constraint":
        if self.dose_quantity != "physical" and self.alpha_beta is None:
            raise ValueError(f"dose_quantity {self.dose_quantity} needs 'alpha_beta' "
                             "(e.g. alpha_beta: 3 Gy)")
        return self

    def applies(self, target_classes) -> bool:
        """True when enabled and one of ``target_classes`` is in :attr:`applies_to`."""
        return self.enabled and any(c in self.applies_to for c in target_classes)


# --- trial-level rules -------------------------------------------------------------------------

class DoseRange(_Model):
    """Inclusive dose range, Gy."""

    min: DoseGy
    max: DoseGy

    @model_validator(mode="after")
    def _ordered(self) -> "DoseRange":
        if self.min.value > self.max.value:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        return self

    def contains(self, dose_gy: float) -> bool:
        """True when ``min <= dose_gy <= max`` (Gy)."""
        return self.min.value <= dose_gy <= self.max.value


class PrescriptionRules(_Model):
    """Prescription rules per SBRT course, and the target count per patient."""

    fractions: Annotated[int, Field(ge=1, description="Every course has exactly this many.")]
    total_dose: DoseRange
    dose_per_fraction: DoseRange
    max_targets_per_patient: Annotated[int, Field(ge=1, description=(
        "Over all courses of the patient."))]
    staged_courses_allowed: bool
    source: NonEmpty


class TargetRules(_Model):
    """Which ROIs are targets, their class (PVTT or extrahepatic), and which are GTVs.

    Patterns are Python regular expressions searched case-insensitively in the ROI name.
    """

    interpreted_types: tuple[str, ...] = Field(description="RTROIInterpretedType values that "
                                                           "make an ROI a target, e.g. [PTV].")
    name_patterns: tuple[Pattern, ...]
    exclude_patterns: tuple[Pattern, ...] = Field((), description=(
        "Never a target (helper ROIs such as PTV_opt), whatever the type or name."))
    pvtt_patterns: tuple[Pattern, ...] = Field(description="A target matching one is PVTT; "
                                                           "every other target is extrahepatic.")
    gtv_interpreted_types: tuple[str, ...]
    gtv_patterns: tuple[Pattern, ...]


class ConformityRow(_Model):
    """One row of the RTOG 0915/0813 table: limits for a PTV volume.

    ``r50`` and ``d2cm`` are ``[none, minor]``: below ``none`` is per protocol, up to ``minor``
    (inclusive) a minor deviation, beyond it major. D2cm is in % of the prescription.
    """

    ptv: VolumeCc
    r50: tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]]
    d2cm: tuple[Percent, Percent]

    @model_validator(mode="after")
    def _none_below_minor(self) -> "ConformityRow":
        if self.r50[0] > self.r50[1]:
            raise ValueError(f"r50: none limit {self.r50[0]} is above the minor limit "
                             f"{self.r50[1]}")
        if self.d2cm[0].value > self.d2cm[1].value:
            raise ValueError(f"d2cm: none limit {self.d2cm[0]} is above the minor limit "
                             f"{self.d2cm[1]}")
        return self


class RatioTiers(_Model):
    """Tiers of a dimensionless ratio where smaller is better (R100)."""

    per_protocol: Annotated[float, Field(gt=0, description="value < this: per protocol")]
    minor: Annotated[float, Field(gt=0, description="value <= this: minor; above: major")]


class PercentTiers(_Model):
    """Tiers of a percentage where smaller is better."""

    per_protocol: Percent
    minor: Percent | None = None


class ConformityRules(_Model):
    """RTOG 0915/0813-style conformity grading.

    ``r100``: prescription isodose volume / PTV volume. ``rows``: R50 (50 % isodose volume /
    PTV volume) and D2cm (maximum dose 2 cm from the PTV, % of Rx) by PTV volume, interpolated
    linearly between rows; a PTV smaller than the first row uses the first row; a PTV larger
    than the last row is graded per ``beyond_last_row`` (``major``, or ``last_row`` to clamp).
    ``outside_105``: volume outside the PTV above 105 % of Rx, in % of the PTV volume.
    ``dmax_inside_ptv``: the plan's maximum dose must lie inside a PTV.
    """

    source: NonEmpty
    r100: RatioTiers
    outside_105: PercentTiers
    dmax_inside_ptv: bool
    beyond_last_row: Literal["major", "last_row"]
    rows: tuple[ConformityRow, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _ascending(self) -> "ConformityRules":
        if self.r100.minor < self.r100.per_protocol:
            raise ValueError(f"r100: minor ({self.r100.minor}) is below per_protocol "
                             f"({self.r100.per_protocol})")
        ptv = [r.ptv.value for r in self.rows]
        if any(b <= a for a, b in zip(ptv, ptv[1:])):
            raise ValueError(f"rows must be in strictly ascending PTV volume, got {ptv}")
        return self

    def limits(self, kind: str, ptv_cc: float) -> tuple[float, float | None] | None:
        """The ``(none, minor)`` limits of ``kind`` for a PTV volume.

        Parameters
        ----------
        kind : {"r100", "r50", "d2cm", "outside_105"}
        ptv_cc : float
            PTV volume, cc (used by ``r50`` and ``d2cm``).

        Returns
        -------
        tuple of float or None
            ``(none, minor)``: a value below ``none`` passes, up to ``minor`` (inclusive) is a
            minor deviation (``minor`` None: no minor tier). Ratio for r100/r50, % of Rx for
            d2cm, % of the PTV volume for outside_105. Interpolated limits are rounded to 9
            decimals. None when ``ptv_cc`` is beyond the last row and ``beyond_last_row`` is
            ``major``.
        """
        if kind == "r100":
            return self.r100.per_protocol, self.r100.minor
        if kind == "outside_105":
            minor = self.outside_105.minor
            return self.outside_105.per_protocol.value, None if minor is None else minor.value
        if kind not in ("r50", "d2cm"):
            raise ValueError(f"kind must be one of {', '.join(CONFORMITY_KINDS)}, not {kind!r}")
        if not (math.isfinite(ptv_cc) and ptv_cc > 0):
            raise ValueError(f"ptv_cc must be a positive volume in cc, not {ptv_cc!r}")

        def pair(row: ConformityRow) -> tuple[float, float]:
            return row.r50 if kind == "r50" else (row.d2cm[0].value, row.d2cm[1].value)

        rows = self.rows
        if ptv_cc <= rows[0].ptv.value:
            return pair(rows[0])
        if ptv_cc > rows[-1].ptv.value:
            return None if self.beyond_last_row == "major" else pair(rows[-1])
        hi = bisect.bisect_left([r.ptv.value for r in rows], ptv_cc)  # rows[hi-1] < ptv <= rows[hi]
        lo_ptv, hi_ptv = rows[hi - 1].ptv.value, rows[hi].ptv.value
        t = (ptv_cc - lo_ptv) / (hi_ptv - lo_ptv)
        a, b = pair(rows[hi - 1]), pair(rows[hi])
        # rounded so that a value on a boundary (4.9 at 10.3 cc) is not split by binary noise
        # (4.8999999999999995)
        return round(a[0] + t * (b[0] - a[0]), 9), round(a[1] + t * (b[1] - a[1]), 9)

    def grade(self, kind: str, ptv_cc: float, value: float) -> Grade:
        """Grade a conformity value; see :meth:`limits` for kinds and units."""
        if math.isnan(value):
            raise ValueError(f"{kind}: cannot grade NaN (the value was not evaluated)")
        limits = self.limits(kind, ptv_cc)
        if limits is None:
            return "major"
        none, minor = limits
        if value < none:
            return "pass"
        if minor is not None and value <= minor:
            return "minor"
        return "major"


class DerivedStructure(_Model):
    """A structure built from others: union of ``union`` minus union of ``minus``.

    Names are structure names (resolved like any other) or selectors: ``@gtv`` (every ROI the
    target rules call a GTV) and ``@targets`` (every target ROI). ``minus_fallback`` is used
    instead of ``minus`` when nothing in ``minus`` is in the plan (e.g. subtract the PTV when
    there is no GTV). If any ``union`` member is missing, the derived structure is missing.
    ``use_plan_roi``: when the plan has an ROI of this name, use it instead of deriving one.
    """

    name: NonEmpty
    union: tuple[NonEmpty, ...] = Field(min_length=1)
    minus: tuple[NonEmpty, ...] = ()
    minus_fallback: tuple[NonEmpty, ...] = ()
    use_plan_roi: bool = False
    description: NonEmpty

    @field_validator("union", "minus", "minus_fallback")
    @classmethod
    def _known_selectors(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        for name in names:
            if name.startswith("@") and name not in SELECTORS:
                raise ValueError(f"unknown selector {name!r}: use one of {', '.join(SELECTORS)}")
        return names

    @property
    def inputs(self) -> tuple[str, ...]:
        """Every structure name (not selector) this definition reads."""
        return tuple(n for n in self.union + self.minus + self.minus_fallback
                     if not n.startswith("@"))


Aliases = dict[NonEmpty, tuple[NonEmpty, ...]]


# --- file models -------------------------------------------------------------------------------

class ConstraintSetFile(_Model):
    """A ``kind: constraint_set`` file. ``fractions`` and ``alpha_beta`` are defaults for its
    constraints (those that set their own keep them)."""

    kind: Literal["constraint_set"]
    name: NonEmpty
    description: str = ""
    include: tuple[NonEmpty, ...] = ()
    fractions: Annotated[int, Field(ge=1)] | None = None
    alpha_beta: DoseGy | None = None
    constraints: tuple[Constraint, ...] = ()
    derived_structures: tuple[DerivedStructure, ...] = ()
    aliases: Aliases = Field(default_factory=dict, description=(
        "TG-263 structure name -> other names sites use for it."))


class ProtocolFile(ConstraintSetFile):
    """A ``kind: protocol`` file: a constraint set plus the trial-level rules."""

    kind: Literal["protocol"]
    prescription: PrescriptionRules
    targets: TargetRules
    coverage: tuple[Rule, ...] = Field(description="Checked on every target, relative to its "
                                                   "prescription.")
    conformity: ConformityRules


class Override(_Model):
    """A site's change to one constraint or coverage rule, found by ``id``."""

    id: NonEmpty
    reason: NonEmpty
    limit: Limit | None = None
    enabled: bool | None = None
    required: bool | None = None
    applies_to: tuple[TargetClass, ...] | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> "Override":
        if self.changes() == {}:
            raise ValueError("an override must change 'limit', 'enabled', 'required' or "
                             "'applies_to'")
        return self

    def changes(self) -> dict[str, Any]:
        """The fields this override sets."""
        return {k: getattr(self, k) for k in ("limit", "enabled", "required", "applies_to")
                if getattr(self, k) is not None}


class SiteFile(_Model):
    """A ``kind: site`` file (``--site``)."""

    kind: Literal["site"]
    name: NonEmpty
    description: str = ""
    overrides: tuple[Override, ...] = ()
    constraints: tuple[Constraint, ...] = ()
    aliases: Aliases = Field(default_factory=dict)
    mapping: dict[NonEmpty, NonEmpty] = Field(default_factory=dict, description=(
        "Structure name -> the plan's ROI name; wins over every other way of matching."))


_FILE_MODELS: dict[str, type[_Model]] = {
    "protocol": ProtocolFile, "constraint_set": ConstraintSetFile, "site": SiteFile}
_AnyFile = Annotated[Union[ProtocolFile, ConstraintSetFile, SiteFile],
                     Field(discriminator="kind")]


def protocol_json_schema() -> dict:
    """JSON Schema of protocol, constraint-set and site files (one, chosen by ``kind``).

    Returns
    -------
    dict
        Draft 2020-12 JSON Schema, as pydantic generates it.
    """
    schema = TypeAdapter(_AnyFile).json_schema()
    schema["title"] = "sbrt-qa protocol, constraint set or site file"
    return schema


# --- the merged protocol -----------------------------------------------------------------------

class Protocol(_Model):
    """A protocol with its includes resolved and a site's overrides applied.

    ``constraints`` holds every constraint, disabled ones included (``enabled`` False); use
    :meth:`active_constraints` to get what must be checked. ``overrides`` are the site's
    changes, for reports.
    """

    name: str
    description: str
    path: str
    files: tuple[str, ...]
    prescription: PrescriptionRules
    targets: TargetRules
    coverage: tuple[Rule, ...]
    conformity: ConformityRules
    constraints: tuple[Constraint, ...]
    derived_structures: tuple[DerivedStructure, ...]
    aliases: dict[str, tuple[str, ...]]
    mapping: dict[str, str]
    site: str | None = None
    overrides: tuple[Override, ...] = ()

    def classify_target(self, roi_name: str) -> TargetClass:
        """``"pvtt"`` if ``roi_name`` matches a PVTT pattern, else ``"extrahepatic"``."""
        return "pvtt" if _matches(self.targets.pvtt_patterns, roi_name) else "extrahepatic"

    def is_target(self, roi_name: str, interpreted_type: str | None = None) -> bool:
        """True when the ROI is a target (by RTROIInterpretedType or name), not excluded."""
        t = self.targets
        if _matches(t.exclude_patterns, roi_name):
            return False
        return _type_in(interpreted_type, t.interpreted_types) or _matches(t.name_patterns,
                                                                            roi_name)

    def is_gtv(self, roi_name: str, interpreted_type: str | None = None) -> bool:
        """True when the ROI is a GTV (by RTROIInterpretedType or name pattern)."""
        t = self.targets
        return _type_in(interpreted_type, t.gtv_interpreted_types) or _matches(t.gtv_patterns,
                                                                                roi_name)

    def grade_conformity(self, kind: str, ptv_cc: float, value: float) -> Grade:
        """Grade R100, R50, D2cm or outside-105 % for one PTV.

        Parameters
        ----------
        kind : {"r100", "r50", "d2cm", "outside_105"}
        ptv_cc : float
            PTV volume, cc.
        value : float
            Ratio for r100 and r50; % of Rx for d2cm; % of the PTV volume for outside_105.

        Returns
        -------
        {"pass", "minor", "major"}
            See :class:`ConformityRules`. A PTV larger than the table's last row is ``"major"``
            for r50 and d2cm (unless the protocol says ``beyond_last_row: last_row``).

        Examples
        --------
        R50 limits at 10.3 cc lie between the 7.4 cc row (5.1 / 6.0) and the 13.2 cc row
        (4.7 / 5.8): none = 5.1 + (10.3 - 7.4) / (13.2 - 7.4) * (4.7 - 5.1) = 4.9.

        >>> p = load_protocol()
        >>> p.grade_conformity("r50", 10.3, 4.85), p.grade_conformity("r50", 10.3, 4.95)
        ('pass', 'minor')
        """
        return self.conformity.grade(kind, ptv_cc, value)

    def conformity_limits(self, kind: str, ptv_cc: float) -> tuple[float, float | None] | None:
        """``(none, minor)`` limits for one PTV; see :meth:`ConformityRules.limits`."""
        return self.conformity.limits(kind, ptv_cc)

    def rule(self, rule_id: str) -> Rule:
        """The constraint or coverage rule with this id (KeyError if none)."""
        for rule in self.constraints + self.coverage:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)

    def active_constraints(self, target_classes=TARGET_CLASSES) -> tuple[Constraint, ...]:
        """Enabled constraints that apply to a plan with targets of these classes."""
        return tuple(c for c in self.constraints if c.applies(target_classes))

    def derived(self, name: str) -> DerivedStructure | None:
        """The derived-structure definition called ``name``, or None."""
        return next((d for d in self.derived_structures if d.name == name), None)

    def wanted_structures(self, target_classes=TARGET_CLASSES) -> tuple[str, ...]:
        """Structure names to look up among the plan's ROIs for the active constraints.

        Derived structures are replaced by their inputs (and kept themselves when
        ``use_plan_roi`` is set), recursively; order is first use.
        """
        out: dict[str, None] = {}

        def add(name: str) -> None:
            d = self.derived(name)
            if d is None or d.use_plan_roi:
                out.setdefault(name)
            if d is not None:
                for n in d.inputs:
                    add(n)

        for c in self.active_constraints(target_classes):
            add(c.structure)
        return tuple(out)

    def aliases_for(self, structure: str) -> tuple[str, ...]:
        """Alias list of a structure (empty if none)."""
        return self.aliases.get(structure, ())


def _matches(patterns, name: str) -> bool:
    return any(re.search(p, name, re.IGNORECASE) for p in patterns)


def _type_in(interpreted_type: str | None, types) -> bool:
    return bool(interpreted_type) and interpreted_type.strip().upper() in {
        t.upper() for t in types}


# --- reading YAML with line numbers ------------------------------------------------------------

@dataclass(frozen=True)
class ProtocolIssue:
    """One problem found in a protocol, constraint-set or site file.

    Parameters
    ----------
    path : str
        The file.
    line : int or None
        1-based line of the offending key (or of its nearest enclosing key).
    key : str
        Key path such as ``constraints[3].limit.per_protocol``; empty for the whole file.
    message : str
    """

    path: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that records the 1-based line of every key path and duplicate keys."""

    def __init__(self, stream):
        super().__init__(stream)
        self.key_lines: dict[tuple, int] = {}
        self.duplicate_keys: list[tuple[tuple, int, int]] = []

    def compose_document(self):
        node = super().compose_document()
        self._record(node, (), set())
        return node

    def _record(self, node, path: tuple, active: set) -> None:
        self.key_lines.setdefault(path, node.start_mark.line + 1)
        if id(node) in active:  # a recursive anchor
            return
        active = active | {id(node)}
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "<<":
                    continue
                key, line = key_node.value, key_node.start_mark.line + 1
                if key in seen:
                    self.duplicate_keys.append((path + (key,), line, seen[key]))
                else:
                    seen[key] = line
                self.key_lines[path + (key,)] = line
                self._record(value_node, path + (key,), active)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._record(item, path + (i,), active)


def _key_path(loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f"{'.' if out else ''}{part}"
    return out


@dataclass
class _Source:
    """One YAML file: its data, key lines, and what validating it gave."""

    path: str
    data: Any
    lines: dict[tuple, int]
    issues: list[ProtocolIssue]
    model: Any = None
    includes: list["_Source"] = field(default_factory=list)

    def line(self, loc: tuple) -> int | None:
        """Line of ``loc``, or of its nearest enclosing key that is in the file."""
        return next((self.lines[loc[:n]] for n in range(len(loc), -1, -1)
                     if loc[:n] in self.lines), None)

    def where(self, loc: tuple) -> str:
        line = self.line(loc)
        return f"{self.path}:{line}" if line else self.path

    def issue(self, loc, message: str) -> None:
        loc = tuple(loc)
        self.issues.append(ProtocolIssue(self.path, self.line(loc), _key_path(loc), message))

    def raw(self, *loc, default=None):
        """Raw value at ``loc`` (or ``default`` where the data has another shape)."""
        value = self.data
        for part in loc:
            if isinstance(part, int) and isinstance(value, list) and 0 <= part < len(value):
                value = value[part]
            elif isinstance(part, str) and isinstance(value, dict) and part in value:
                value = value[part]
            else:
                return default
        return value

    def items(self, key: str):
        """``(index, dict)`` of the mappings in the list at ``key``."""
        value = self.raw(key)
        if isinstance(value, list):
            yield from ((i, v) for i, v in enumerate(value) if isinstance(v, dict))


def _read_yaml(path: str, issues: list[ProtocolIssue]) -> _Source | None:
    src = _Source(path, None, {}, issues)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        src.issue((), "file not found")
        return None
    except (OSError, UnicodeDecodeError) as exc:
        src.issue((), f"cannot read the file: {exc}")
        return None
    loader = _LineLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        text_lines = text.splitlines()
        hint = ""
        if line and line <= len(text_lines) and re.search(r":\s*[<>]", text_lines[line - 1]):
            hint = " (quote comparisons: comparison: \">=\")"
        issues.append(ProtocolIssue(path, line, "", f"not valid YAML: {exc.problem}{hint}"))
        return None
    except yaml.YAMLError as exc:
        src.issue((), f"not valid YAML: {exc}")
        return None
    finally:
        loader.dispose()
    src.data, src.lines = data, loader.key_lines
    for loc, line, first in loader.duplicate_keys:
        issues.append(ProtocolIssue(path, line, _key_path(loc),
                                    f"duplicate key (first at line {first}); YAML would keep "
                                    "only the last"))
    if not isinstance(data, dict):
        src.issue((), "the file must be a mapping with a 'kind' key (protocol, constraint_set "
                      "or site)")
        return None
    return src


# --- validation --------------------------------------------------------------------------------

def _all_model_keys() -> set[str]:
    models = [Limit, Rule, Constraint, DoseRange, PrescriptionRules, TargetRules, ConformityRow,
              RatioTiers, PercentTiers, ConformityRules, DerivedStructure, ConstraintSetFile,
              ProtocolFile, Override, SiteFile]
    return {name for m in models for name in m.model_fields}


_KNOWN_KEYS = _all_model_keys()


def _message(err: dict) -> str:
    kind, loc = err["type"], err["loc"]
    if kind == "missing":
        return f"missing required key {loc[-1]!r}"
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), sorted(_KNOWN_KEYS), n=1, cutoff=0.75)
        return f"unknown key {loc[-1]!r}" + (f"; did you mean {close[0]!r}?" if close else "")
    if kind in ("value_error", "assertion_error") and "error" in err.get("ctx", {}):
        return str(err["ctx"]["error"])
    shown = repr(err.get("input"))
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    if kind == "string_pattern_mismatch" and loc[-1] == "id":
        return (f"{shown} is not a valid id: use lower-case letters, digits, '.', '_' and '-', "
                "e.g. 'tg101.duodenum.d5cc'")
    return f"{shown}: {re.sub(r'^[A-Z][a-z]* should', 'must', err['msg'])}"


def _validate(model, data, src: _Source, prefix: tuple = ()):
    """Validate ``data`` with ``model``; report errors in ``src`` under ``prefix``."""
    try:
        return model.model_validate(data, context={})
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            src.issue(prefix + tuple(err["loc"]), _message(err))
        return None


def _load_tree(path: str, issues: list[ProtocolIssue], stack: tuple[Path, ...] = (),
               want: tuple[str, ...] = ("protocol", "constraint_set", "site")) -> _Source | None:
    """Read and validate ``path`` and, recursively, its includes."""
    src = _read_yaml(path, issues)
    if src is None:
        return None
    kind = src.data.get("kind")
    if kind not in _FILE_MODELS:
        src.issue(("kind",), f"kind must be protocol, constraint_set or site, not {kind!r}"
                  if "kind" in src.data else "missing 'kind': protocol, constraint_set or site")
        return None
    if kind not in want:
        src.issue(("kind",), f"this file is a {kind}; expected {' or '.join(want)} here")
        return None
    src.model = _validate(_FILE_MODELS[kind], src.data, src)
    here = Path(path).resolve()
    include = src.raw("include", default=[]) if kind != "site" else []
    for i, name in enumerate(include if isinstance(include, list) else []):
        if not isinstance(name, str):
            continue  # reported by the schema
        child_path = str(Path(path).parent / name)
        if Path(child_path).resolve() in stack + (here,):
            src.issue(("include", i), f"{name!r} includes itself (through "
                                      f"{' -> '.join(p.name for p in stack + (here,))})")
            continue
        if not Path(child_path).is_file():
            src.issue(("include", i), f"no file {name!r} next to this one ({child_path})")
            continue
        child = _load_tree(child_path, issues, stack + (here,), want=("constraint_set",))
        if child is not None:
            src.includes.append(child)
    return src


def _flatten(src: _Source) -> list[_Source]:
    """The file and its includes, includes first (depth-first, in include order)."""
    out = []
    for child in src.includes:
        out.extend(_flatten(child))
    out.append(src)
    return out


def _preorder(src: _Source):
    yield src.path
    for child in src.includes:
        yield from _preorder(child)


def _cross_checks(sources: list[_Source], site: _Source | None) -> None:
    """Checks across files, run on the raw data so that every problem is reported."""
    first_id: dict[str, tuple[_Source, tuple]] = {}
    raw_rules: dict[str, tuple[str, dict]] = {}  # id -> (list key, raw dict) of the protocol
    first_derived: dict[str, tuple[_Source, tuple]] = {}
    derived_inputs: dict[str, set[str]] = {}
    alias_owner: dict[str, tuple[str, _Source, tuple]] = {}
    structures: set[str] = set()

    def claim_id(s: _Source, key: str, i: int, item: dict) -> None:
        rid = item.get("id")
        if not isinstance(rid, str):
            return
        if rid in first_id:
            s.issue((key, i, "id"), f"duplicate id {rid!r}; first defined at "
                                    f"{first_id[rid][0].where(first_id[rid][1])}")
        else:
            first_id[rid] = (s, (key, i, "id"))

    for s in sources:
        for key in ("coverage", "constraints"):
            for i, item in s.items(key):
                claim_id(s, key, i, item)
                if isinstance(item.get("id"), str):
                    raw_rules.setdefault(item["id"], (key, item))
                if isinstance(item.get("structure"), str):
                    structures.add(item["structure"])
        for i, item in s.items("derived_structures"):
            name = item.get("name")
            if not isinstance(name, str):
                continue
            if name in first_derived:
                s.issue(("derived_structures", i, "name"),
                        f"derived structure {name!r} is already defined at "
                        f"{first_derived[name][0].where(first_derived[name][1])}")
                continue
            first_derived[name] = (s, ("derived_structures", i, "name"))
            parts = [n for k in ("union", "minus", "minus_fallback")
                     for n in (item.get(k) if isinstance(item.get(k), list) else [])
                     if isinstance(n, str)]
            derived_inputs[name] = set(parts)
            structures.add(name)
            structures.update(n for n in parts if not n.startswith("@"))
    for s in sources + ([site] if site is not None else []):
        aliases = s.raw("aliases")
        for structure, names in (aliases.items() if isinstance(aliases, dict) else ()):
            for j, alias in enumerate(names if isinstance(names, list) else []):
                if not isinstance(alias, str):
                    continue
                norm = normalise_name(alias)
                owner = alias_owner.get(norm)
                if owner is not None and owner[0] != structure:
                    s.issue(("aliases", structure, j),
                            f"alias {alias!r} is already an alias of {owner[0]!r} "
                            f"({owner[1].where(owner[2])}); one name cannot mean two structures")
                alias_owner.setdefault(norm, (structure, s, ("aliases", structure, j)))
                clash = next((n for n in structures if n != structure
                              and normalise_name(n) == norm), None)
                if clash is not None:
                    s.issue(("aliases", structure, j),
                            f"alias {alias!r} of {structure!r} is the name of another "
                            f"structure used by the protocol ({clash!r})")

    # cycles among derived structures
    def cycle_from(name: str, trail: tuple[str, ...]) -> tuple[str, ...] | None:
        for nxt in sorted(derived_inputs.get(name, ())):
            if nxt in trail:
                return trail + (nxt,)
            if nxt in derived_inputs:
                found = cycle_from(nxt, trail + (nxt,))
                if found:
                    return found
        return None

    for name, (s, loc) in first_derived.items():
        found = cycle_from(name, (name,))
        if found and found[0] == name:
            s.issue(loc, f"derived structure {name!r} depends on itself: "
                         f"{' -> '.join(found)}")

    if site is None:
        return
    for i, item in site.items("constraints"):
        claim_id(site, "constraints", i, item)
        if isinstance(item.get("structure"), str):
            structures.add(item["structure"])
    for i, item in site.items("overrides"):
        rid = item.get("id")
        if not isinstance(rid, str):
            continue
        if rid not in raw_rules:
            close = difflib.get_close_matches(rid, sorted(raw_rules), n=1, cutoff=0.8)
            site.issue(("overrides", i, "id"),
                       f"no constraint or coverage rule has id {rid!r}"
                       + (f"; did you mean {close[0]!r}?" if close else ""))
            continue
        key, target = raw_rules[rid]
        if key == "coverage":
            for name in ("required", "applies_to"):
                if name in item:
                    site.issue(("overrides", i, name),
                               f"{rid!r} is a coverage rule, checked on every target: only "
                               "'limit' and 'enabled' can be overridden")
        model = Rule if key == "coverage" else Constraint
        if "limit" in item and _valid(model, target) and _valid(Limit, item["limit"]):
            try:  # the new limit must fit the overridden rule's metric and comparison
                model.model_validate({**target, "limit": item["limit"]}, context={})
            except ValidationError as exc:
                for err in exc.errors(include_url=False):
                    loc = tuple(err["loc"])
                    site.issue(("overrides", i) + (loc if loc[:1] == ("limit",) else ("limit",)),
                               _message(err))
    mapping = site.raw("mapping")
    for name in (mapping if isinstance(mapping, dict) else {}):
        if isinstance(name, str) and name not in structures:
            close = difflib.get_close_matches(name, sorted(structures), n=1, cutoff=0.8)
            site.issue(("mapping", name), f"{name!r} is not a structure of the protocol"
                       + (f"; did you mean {close[0]!r}?" if close else ""))


def _valid(model, data) -> bool:
    try:
        model.model_validate(data, context={})
    except ValidationError:
        return False
    return True


def _check(path, site) -> tuple[_Source | None, _Source | None, list[ProtocolIssue]]:
    issues: list[ProtocolIssue] = []
    root = _load_tree(str(path), issues)
    site_src = None if site is None else _load_tree(str(site), issues, want=("site",))
    if root is not None and root.data.get("kind") == "site":
        return root, site_src, issues  # a site file alone: its ids are checked with a protocol
    _cross_checks(_flatten(root) if root is not None else [], site_src)
    return root, site_src, issues


def _ordered(issues: list[ProtocolIssue]) -> list[ProtocolIssue]:
    order = {p: i for i, p in enumerate(dict.fromkeys(x.path for x in issues))}
    return sorted(issues, key=lambda x: (order[x.path], x.line or 0))


def validate_protocol_file(path, *, site=None) -> list[ProtocolIssue]:
    """Validate a protocol, constraint-set or site file and everything it includes.

    Parameters
    ----------
    path : str or Path
        The file. Included files are validated too and report their own file.
    site : str or Path, optional
        A site file to check together with the protocol (override ids must exist, an
        overriding limit must be in the constrained metric's unit, mapping keys must be
        structures of the protocol).

    Returns
    -------
    list of ProtocolIssue
        Every problem found (empty when the file is valid), each with file, line and key path;
        ordered by file, then line.
    """
    _, _, issues = _check(path, site)
    return _ordered(issues)


def default_constraints_dir() -> Path:
    """The folder of the shipped protocol files: ``$SBRT_QA_CONSTRAINTS_DIR`` if set, else
    ``constraints/`` next to the ``sbrt_qa`` package."""
    env = os.environ.get(CONSTRAINTS_DIR_ENV)
    if env:
        return Path(env)
    import sbrt_qa

    return Path(sbrt_qa.__file__).resolve().parent.parent / "constraints"


def load_protocol(path=None, *, site=None) -> Protocol:
    """Load a protocol: validate it, resolve includes, apply a site's overrides.

    Parameters
    ----------
    path : str or Path, optional
        A ``kind: protocol`` YAML file. Default: ``trial_bclc_c_sbrt.yaml`` in
        :func:`default_constraints_dir`.
    site : str or Path, optional
        A ``kind: site`` YAML file.

    Returns
    -------
    Protocol

    Raises
    ------
    ProtocolError
        When any file is invalid. ``path`` and ``key`` name the first problem; the message
        gives its line and lists every other problem (see :func:`validate_protocol_file`).
    """
    path = default_constraints_dir() / DEFAULT_PROTOCOL_FILE if path is None else Path(path)
    root, site_src, issues = _check(path, site)
    if root is not None and not issues and not isinstance(root.model, ProtocolFile):
        issues.append(ProtocolIssue(str(path), root.lines.get(("kind",)), "kind",
                                    f"this file is a {root.data.get('kind')}; load_protocol "
                                    "needs a kind: protocol file (include constraint sets "
                                    "from one)"))
    if issues:
        issues = _ordered(issues)
        first = issues[0]
        message = first.message + (f" (line {first.line})" if first.line else "")
        if len(issues) > 1:
            message += f"; {len(issues) - 1} more problem(s):\n" + "\n".join(
                str(i) for i in issues[1:])
        raise ProtocolError(message, path=first.path, key=first.key or None)
    return _assemble(root, site_src)


def _constraints_of(src: _Source) -> list[Constraint]:
    f = src.model
    defaults = {k: getattr(f, k) for k in ("fractions", "alpha_beta")
                if getattr(f, k) is not None}
    return [c.model_copy(update={k: v for k, v in defaults.items() if getattr(c, k) is None})
            for c in f.constraints]


def _merge_aliases(into: dict[str, tuple[str, ...]], more: dict[str, tuple[str, ...]]) -> None:
    for structure, names in more.items():
        into[structure] = tuple(dict.fromkeys(into.get(structure, ()) + tuple(names)))


def _assemble(root: _Source, site: _Source | None) -> Protocol:
    sources = _flatten(root)
    pf: ProtocolFile = root.model
    constraints: list[Constraint] = []
    derived: list[DerivedStructure] = []
    aliases: dict[str, tuple[str, ...]] = {}
    for s in sources:
        constraints.extend(_constraints_of(s))
        derived.extend(s.model.derived_structures)
        _merge_aliases(aliases, s.model.aliases)
    coverage = list(pf.coverage)
    mapping: dict[str, str] = {}
    overrides: tuple[Override, ...] = ()
    if site is not None:
        sf: SiteFile = site.model
        overrides = sf.overrides
        for o in sf.overrides:  # a new limit was checked against the rule's metric already
            for rules in (constraints, coverage):
                rules[:] = [r.model_copy(update=o.changes()) if r.id == o.id else r
                            for r in rules]
        constraints.extend(sf.constraints)
        _merge_aliases(aliases, sf.aliases)
        mapping = dict(sf.mapping)
    return Protocol(
        name=pf.name, description=pf.description, path=root.path,
        files=tuple(_preorder(root)) + ((site.path,) if site is not None else ()),
        prescription=pf.prescription, targets=pf.targets, coverage=tuple(coverage),
        conformity=pf.conformity, constraints=tuple(constraints),
        derived_structures=tuple(derived), aliases=aliases, mapping=mapping,
        site=None if site is None else site.model.name, overrides=overrides)
