"""Metric grammar and evaluation, checked against DVHs whose metrics are known analytically."""

import math
import re

import numpy as np
import pytest

from sbrt_qa.errors import MetricSyntaxError
from sbrt_qa.metrics import Metric, MetricValue, evaluate_metric, format_value, parse_metric
from sbrt_qa.models import DVH


def uniform_dvh(volume_cc=10.0, covered_cc=10.0):
    """``covered_cc`` with dose spread uniformly over 10-30 Gy: V(d) = covered (30 - d) / 20."""
    dose = np.linspace(10.0, 30.0, 2001)
    return DVH("uniform", dose, covered_cc * (30.0 - dose) / 20.0, volume_cc=volume_cc,
               covered_volume_cc=covered_cc, dmin_gy=10.0, dmax_gy=30.0, dmean_gy=20.0)


def two_level_dvh():
    """4 cc at exactly 10 Gy and 6 cc at exactly 30 Gy (two point masses, a dose gap between)."""
    return DVH("two_level", np.array([10.0, 10.0, 30.0, 30.0]), np.array([10.0, 6.0, 6.0, 0.0]),
               volume_cc=10.0, covered_volume_cc=10.0, dmin_gy=10.0, dmax_gy=30.0, dmean_gy=22.0)


def point_mass_dvh():
    """5 cc all at exactly 20 Gy."""
    return DVH("point", np.array([20.0, 20.0]), np.array([5.0, 0.0]), volume_cc=5.0,
               covered_volume_cc=5.0, dmin_gy=20.0, dmax_gy=20.0, dmean_gy=20.0)


def empty_dvh():
    return DVH("outside", np.array([0.0, 1.0]), np.array([0.0, 0.0]), volume_cc=3.0,
               covered_volume_cc=0.0, dmin_gy=math.nan, dmax_gy=math.nan, dmean_gy=math.nan)


def value(dvh, text, rx_gy=None):
    return evaluate_metric(dvh, text, rx_gy=rx_gy)


# --- parsing -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, kind, x, x_unit, out_unit, needs_rx", [
    ("Dmax", "Dmax", None, None, "Gy", False),
    ("Dmin", "Dmin", None, None, "Gy", False),
    ("Dmean", "Dmean", None, None, "Gy", False),
    ("Max", "Dmax", None, None, "Gy", False),
    ("Min[Gy]", "Dmin", None, None, "Gy", False),
    ("Mean[Gy]", "Dmean", None, None, "Gy", False),
    ("Dmean[Gy]", "Dmean", None, None, "Gy", False),
    ("Max[%]", "Dmax", None, None, "%", True),
    ("D95%", "D", 95.0, "%", "Gy", False),
    ("D95%[%]", "D", 95.0, "%", "%", True),
    ("D0.03cc", "D", 0.03, "cc", "Gy", False),
    ("D0.035cc[Gy]", "D", 0.035, "cc", "Gy", False),
    ("D2CC", "D", 2.0, "cc", "Gy", False),
    ("D.5cc", "D", 0.5, "cc", "Gy", False),
    ("D0%", "D", 0.0, "%", "Gy", False),
    ("D100%", "D", 100.0, "%", "Gy", False),
    ("DC700cc", "DC", 700.0, "cc", "Gy", False),
    ("DC700cc[Gy]", "DC", 700.0, "cc", "Gy", False),
    ("DC10%[%]", "DC", 10.0, "%", "%", True),
    ("V20Gy[%]", "V", 20.0, "Gy", "%", False),
    ("V12.5Gy[cc]", "V", 12.5, "Gy", "cc", False),
    ("V20GY[CC]", "V", 20.0, "Gy", "cc", False),
    ("V20gy[cc]", "V", 20.0, "Gy", "cc", False),
    ("V100%[%]", "V", 100.0, "%", "%", True),
    ("V110%[%]", "V", 110.0, "%", "%", True),
    ("V90%[cc]", "V", 90.0, "%", "cc", True),
    ("CV15Gy[cc]", "CV", 15.0, "Gy", "cc", False),
    ("CV21Gy[%]", "CV", 21.0, "Gy", "%", False),
    ("CV50%[cc]", "CV", 50.0, "%", "cc", True),
])
def test_parse_valid(text, kind, x, x_unit, out_unit, needs_rx):
    m = parse_metric(text)
    assert (m.kind, m.x, m.x_unit, m.out_unit, m.needs_rx) == (kind, x, x_unit, out_unit, needs_rx)
    assert m.text == text
    assert m.is_dose == (kind not in ("V", "CV"))


def test_parse_strips_surrounding_whitespace():
    m = parse_metric("  V20Gy[cc]\t\n")
    assert m.text == "V20Gy[cc]"
    assert (m.kind, m.x, m.out_unit) == ("V", 20.0, "cc")


def test_parse_is_cached():
    assert parse_metric("D95%") is parse_metric("D95%")


def _message(text, *fragments):
    return ".*".join([re.escape(f'"{text}": ')] + [re.escape(f) for f in fragments])


@pytest.mark.parametrize("text, fragments", [
    ("D95x", ["unexpected 'x' at position 3; expected '%' or 'cc'"]),
    ("D95", ["D95 needs a unit: write D95% or D95cc (at position 3)"]),
    ("V20Gy", ["V20Gy needs a unit: write V20Gy[%] or V20Gy[cc] (at position 5)"]),
    ("CV21Gy", ["CV21Gy needs a unit: write CV21Gy[%] or CV21Gy[cc]"]),
    ("V100%", ["V100% needs a unit: write V100%[%] or V100%[cc]"]),
    ("V20", ["V20 needs a unit: write V20Gy[%] or V20Gy[cc], or V20%[...]", "at position 3"]),
    ("V20Gy%", ["unexpected '%' at position 5; expected '['", "write V20Gy[%] or V20Gy[cc]"]),
    ("V20Gy[Gy]", ["unexpected 'G' at position 6", "V20Gy is a volume"]),
    ("V20Gy[%", ["unexpected end at position 7; expected ']'"]),
    ("V20Gy[%]x", ["unexpected 'x' at position 8; expected the end"]),
    ("V20Gy[cc ]", ["unexpected ' ' at position 8; expected ']'"]),
    ("D95%[cc]", ["unexpected 'c' at position 5", "D95% is a dose: write D95%[Gy] or D95%[%]"]),
    ("D20Gy", ["unexpected 'G' at position 3", "write V20Gy[%] or V20Gy[cc]"]),
    ("DC15Gy", ["unexpected 'G' at position 4", "below 15 Gy write CV15Gy[%] or CV15Gy[cc]"]),
    ("V2cc", ["unexpected 'c' at position 2", "hottest 2 cc write D2cc"]),
    ("CV700cc[cc]", ["unexpected 'c' at position 5", "coldest 700 cc write DC700cc"]),
    ("D120%", ["volume 120 % at position 1", "between 0 and 100"]),
    ("DC100.5%", ["volume 100.5 % at position 2", "between 0 and 100"]),
    ("D-5%", ["unexpected '-' at position 1", "cannot be negative"]),
    ("V-5Gy[cc]", ["unexpected '-' at position 1", "cannot be negative"]),
    ("D+5%", ["unexpected '+' at position 1; expected a number after 'D'"]),
    ("D5.cc", ["unexpected 'c' at position 3; expected a digit after the decimal point"]),
    ("D.cc", ["unexpected 'c' at position 2; expected a digit after the decimal point"]),
    ("D0,5cc", ["unexpected ',' at position 2", "use '.' as the decimal separator"]),
    ("D2\u00b2cc", ["unexpected '\u00b2' at position 2; expected '%' or 'cc'"]),
    ("D\u0663cc", ["unexpected '\u0663' at position 1; expected a number after 'D'"]),
    ("D1e-3cc", ["unexpected 'e' at position 2; expected '%' or 'cc'"]),
    ("D 95%", ["unexpected ' ' at position 1; expected a number after 'D'"]),
    ("dmax", ["unexpected 'd' at position 0", "case-sensitive: 'Dmax', not 'dmax'"]),
    ("d95%", ["unexpected 'd' at position 0", "case-sensitive: 'D', not 'd'"]),
    ("DMean", ["unexpected 'M' at position 1", "case-sensitive: 'Dmean', not 'DMean'"]),
    ("X20", ["unexpected 'X' at position 0; expected D, DC, V, CV, Dmax"]),
    ("Dmaxx", ["unexpected 'x' at position 4; expected '[Gy]', '[%]' or the end"]),
    ("Dmax[cc]", ["unexpected 'c' at position 5", "Dmax is a dose: write Dmax[Gy] or Dmax[%]"]),
    ("Mean[", ["unexpected end at position 5; expected 'Gy' or '%'"]),
    ("Dmean[%", ["unexpected end at position 7; expected ']'"]),
])
def test_parse_errors_point_at_the_bad_character(text, fragments):
    with pytest.raises(MetricSyntaxError, match=_message(text, *fragments)):
        parse_metric(text)


def test_positions_count_in_the_stripped_string():
    with pytest.raises(MetricSyntaxError, match=_message("D95x", "'x' at position 3")):
        parse_metric("   D95x  ")


@pytest.mark.parametrize("text", ["", "   "])
def test_parse_empty(text):
    with pytest.raises(MetricSyntaxError, match="empty metric; expected one of D, DC, V"):
        parse_metric(text)


def test_parse_non_string():
    with pytest.raises(MetricSyntaxError, match="a metric must be a string, not list"):
        parse_metric(["D95%"])


def test_metric_syntax_error_is_a_value_error():
    with pytest.raises(ValueError):
        parse_metric("D95")


# --- evaluation on a uniform 10-30 Gy distribution ---------------------------------------------

@pytest.mark.parametrize("text, rx_gy, expected, unit", [
    ("Dmax", None, 30.0, "Gy"),
    ("Max[Gy]", None, 30.0, "Gy"),
    ("Dmin", None, 10.0, "Gy"),
    ("Dmean", None, 20.0, "Gy"),
    ("Mean", None, 20.0, "Gy"),
    ("D50%", None, 20.0, "Gy"),
    ("D95%", None, 11.0, "Gy"),
    ("D0%", None, 30.0, "Gy"),
    ("D100%", None, 10.0, "Gy"),
    ("D2cc", None, 26.0, "Gy"),
    ("D0.035cc", None, 29.93, "Gy"),
    ("D0cc", None, 30.0, "Gy"),
    ("D7cc", None, 16.0, "Gy"),
    ("DC7cc", None, 24.0, "Gy"),      # hottest 7 cc and coldest 7 cc differ
    ("DC2cc", None, 14.0, "Gy"),
    ("DC2cc[Gy]", None, 14.0, "Gy"),
    ("DC20%", None, 14.0, "Gy"),
    ("DC0cc", None, 10.0, "Gy"),
    ("V20Gy[%]", None, 50.0, "%"),
    ("V20Gy[cc]", None, 5.0, "cc"),
    ("V12.5Gy[cc]", None, 8.75, "cc"),
    ("V5Gy[cc]", None, 10.0, "cc"),   # below Dmin: everything
    ("V35Gy[%]", None, 0.0, "%"),     # above Dmax: nothing
    ("CV15Gy[cc]", None, 2.5, "cc"),
    ("CV15Gy[%]", None, 25.0, "%"),
    ("CV5Gy[cc]", None, 0.0, "cc"),
    ("CV35Gy[cc]", None, 10.0, "cc"),
    ("V100%[%]", 20.0, 50.0, "%"),
    ("V100%[cc]", 20.0, 5.0, "cc"),
    ("V110%[%]", 20.0, 40.0, "%"),    # 22 Gy
    ("CV50%[cc]", 30.0, 2.5, "cc"),   # below 15 Gy
    ("CV50%[%]", 30.0, 25.0, "%"),
    ("D95%[%]", 25.0, 44.0, "%"),     # 11 Gy of 25 Gy
    ("D2cc[%]", 20.0, 130.0, "%"),
    ("DC2cc[%]", 20.0, 70.0, "%"),
    ("Dmean[%]", 25.0, 80.0, "%"),
    ("Max[%]", 25.0, 120.0, "%"),
    ("Min[%]", 25.0, 40.0, "%"),
    ("D50%", 99.0, 20.0, "Gy"),       # rx given but not needed: ignored
])
def test_uniform_distribution(text, rx_gy, expected, unit):
    mv = value(uniform_dvh(), text, rx_gy)
    assert mv.unit == unit
    assert mv.value == pytest.approx(expected, abs=1e-9)


def test_hottest_and_coldest_volumes_beyond_the_structure():
    # the DVH's own convention: a volume larger than the structure gives Dmin (hottest) or
    # Dmax (coldest)
    assert value(uniform_dvh(), "D20cc").value == pytest.approx(10.0)
    assert value(uniform_dvh(), "DC20cc").value == pytest.approx(30.0)


def test_percentages_refer_to_the_covered_volume():
    dvh = uniform_dvh(volume_cc=12.0, covered_cc=10.0)  # 2 cc outside the dose grid
    assert value(dvh, "D50%").value == pytest.approx(20.0)
    assert value(dvh, "V20Gy[%]").value == pytest.approx(50.0)
    assert value(dvh, "CV15Gy[%]").value == pytest.approx(25.0)
    assert value(dvh, "DC20%").value == pytest.approx(14.0)


@pytest.mark.parametrize("x_cc", [0.5, 2.0, 3.3, 7.0, 9.5])
def test_coldest_volume_and_critical_volume_agree(x_cc):
    # "x cc below d" holds exactly when DC<x>cc <= d, and CV at DC<x>cc gives back x
    dvh = uniform_dvh()
    dc = value(dvh, f"DC{x_cc}cc").value
    assert value(dvh, f"CV{dc}Gy[cc]").value == pytest.approx(x_cc, abs=1e-9)
    d = value(dvh, f"D{x_cc}cc").value
    assert value(dvh, f"V{d}Gy[cc]").value == pytest.approx(x_cc, abs=1e-9)


def test_evaluate_accepts_a_parsed_metric():
    m = parse_metric("D2cc")
    assert isinstance(m, Metric)
    assert evaluate_metric(uniform_dvh(), m) == MetricValue(pytest.approx(26.0), "Gy")


def test_dvh_metric_method_uses_this_module():
    dvh = uniform_dvh()
    assert dvh.metric("D2cc") == pytest.approx(26.0)
    assert dvh.metric("V100%[%]", rx_gy=20.0) == pytest.approx(50.0)


# --- point masses ------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("Dmean", 22.0),
    ("D50%", 30.0),       # the hottest 5 cc all get 30 Gy
    ("D6cc", 30.0),
    ("D8cc", 10.0),
    ("D100%", 10.0),
    ("D0.035cc", 30.0),
    ("DC3cc", 10.0),      # the coldest 3 cc all get 10 Gy
    ("DC5cc", 30.0),      # the coldest 5 cc include 1 cc at 30 Gy
    ("DC50%", 30.0),
    ("V5Gy[cc]", 10.0),
    ("V20Gy[cc]", 6.0),   # in the dose gap
    ("V20Gy[%]", 60.0),
    ("V29.9Gy[cc]", 6.0),
    ("V30.1Gy[cc]", 0.0),
    ("CV20Gy[cc]", 4.0),
    ("CV20Gy[%]", 40.0),
    ("CV9Gy[cc]", 0.0),
])
def test_two_point_masses(text, expected):
    assert value(two_level_dvh(), text).value == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("text, expected", [
    ("D50%", 20.0), ("D0.035cc", 20.0), ("DC1cc", 20.0), ("DC99%", 20.0),
    ("V19.99Gy[cc]", 5.0), ("V20.01Gy[cc]", 0.0), ("CV20.01Gy[%]", 100.0), ("CV19Gy[cc]", 0.0),
    ("V100%[%]", 100.0),
])
def test_single_point_mass(text, expected):
    assert value(point_mass_dvh(), text, rx_gy=19.99).value == pytest.approx(expected, abs=1e-9)


def test_volume_at_exactly_a_point_mass_dose():
    assert value(point_mass_dvh(), "V20Gy[cc]").value == pytest.approx(5.0)


def test_coldest_volume_ending_exactly_at_a_dose_gap():
    assert value(two_level_dvh(), "DC4cc").value == pytest.approx(10.0)


# --- no covered volume, prescription errors ----------------------------------------------------

@pytest.mark.parametrize("text, unit", [
    ("Dmax", "Gy"), ("Dmean", "Gy"), ("D95%", "Gy"), ("D2cc", "Gy"), ("DC700cc", "Gy"),
    ("V20Gy[%]", "%"), ("V20Gy[cc]", "cc"), ("CV15Gy[cc]", "cc"), ("CV15Gy[%]", "%"),
    ("V100%[%]", "%"), ("Dmean[%]", "%"),
])
def test_no_covered_volume_gives_nan(text, unit):
    mv = value(empty_dvh(), text, rx_gy=25.0)
    assert math.isnan(mv.value)
    assert mv.unit == unit


@pytest.mark.parametrize("text", ["V100%[%]", "V90%[cc]", "CV50%[cc]", "D95%[%]", "DC2cc[%]",
                                  "Dmax[%]", "Mean[%]"])
def test_missing_prescription(text):
    with pytest.raises(MetricSyntaxError,
                       match=re.escape(f'"{text}" needs a prescription dose (--rx)')):
        value(uniform_dvh(), text)


def test_missing_prescription_is_reported_even_without_covered_volume():
    with pytest.raises(MetricSyntaxError, match=r"needs a prescription dose \(--rx\)"):
        value(empty_dvh(), "V100%[%]")


@pytest.mark.parametrize("rx_gy", [0.0, -5.0, math.nan, math.inf])
def test_prescription_must_be_positive(rx_gy):
    with pytest.raises(MetricSyntaxError, match=r'"V100%\[%\]" needs a positive prescription'):
        value(uniform_dvh(), "V100%[%]", rx_gy)


def test_syntax_error_from_evaluate():
    with pytest.raises(MetricSyntaxError, match=_message("V20Gy", "needs a unit")):
        value(uniform_dvh(), "V20Gy")


# --- formatting --------------------------------------------------------------------------------

@pytest.mark.parametrize("v, unit, text", [
    (23.4149, "Gy", "23.41 Gy"),
    (0.5, "Gy", "0.50 Gy"),
    (95.24, "%", "95.2 %"),
    (100.0, "%", "100.0 %"),
    (12.3, "cc", "12.30 cc"),
    (1.0, "cc", "1.00 cc"),
    (0.0354, "cc", "0.035 cc"),
    (0.0, "cc", "0.000 cc"),
    (math.nan, "Gy", "n/a"),
])
def test_format_value(v, unit, text):
    assert format_value(MetricValue(v, unit)) == text


def test_metric_value_str_is_formatted():
    assert str(value(uniform_dvh(), "D2cc")) == "26.00 Gy"
    assert str(value(uniform_dvh(), "V20Gy[%]")) == "50.0 %"
