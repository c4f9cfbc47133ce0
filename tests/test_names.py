"""Tests of sbrt_qa.names: ROI name resolution that never guesses."""

from __future__ import annotations

import pytest

from sbrt_qa.names import normalise_name, resolve_names
from sbrt_qa.protocol import load_protocol

ALIASES = {"SpinalCord": ["cord"], "Bowel_Large": ["large_bowel", "Colon"],
           "External": ["BODY"]}


@pytest.mark.parametrize("name, expected", [
    ("Spinal Cord", "spinalcord"), ("SPINAL_CORD", "spinalcord"), ("spinal-cord", "spinalcord"),
    ("Liver-GTV", "livergtv"), ("Liver _ GTV", "livergtv"), ("Kidney_L", "kidneyl"),
    ("\tBowel  Small ", "bowelsmall")])
def test_normalise_name(name, expected):
    assert normalise_name(name) == expected


@pytest.mark.parametrize("roi, how", [
    ("SpinalCord", "exact"), ("Spinal Cord", "normalised"), ("SPINAL_CORD", "normalised"),
    ("spinalcord", "normalised"), ("spinal-cord", "normalised")])
def test_case_spaces_underscores_and_hyphens_are_ignored(roi, how):
    r = resolve_names(["Liver", roi, "PTV_1"], ["SpinalCord"], ALIASES)
    m = r.matches["SpinalCord"]
    assert (m.roi, m.how, m.findings) == (roi, how, ())


def test_alias_match():
    r = resolve_names(["CORD", "Body", "Colon"], ["SpinalCord", "External", "Bowel_Large"],
                      ALIASES)
    assert [(m.roi, m.how) for m in r.matches.values()] == [
        ("CORD", "alias"), ("Body", "alias"), ("Colon", "alias")]
    assert r.mapping == {"SpinalCord": "CORD", "External": "Body", "Bowel_Large": "Colon"}
    assert r.findings == ()


def test_two_rois_normalising_to_one_name_are_ambiguous():
    r = resolve_names(["Spinal Cord", "SPINAL_CORD", "Liver"], ["SpinalCord", "Liver"], ALIASES)
    m = r.matches["SpinalCord"]
    assert (m.roi, m.how) == (None, None)
    (finding,) = m.findings
    assert (finding.severity, finding.code, finding.structure) == (
        "error", "roi_name_ambiguous", "SpinalCord")
    assert finding.message == (
        "2 ROIs match SpinalCord by name ('Spinal Cord', 'SPINAL_CORD'); none is used: name the "
        "right one in the site file (mapping: {SpinalCord: <ROI name>})")
    assert r.roi("Liver") == "Liver"
    assert r.findings == (finding,)


def test_an_exact_name_does_not_break_the_tie():
    r = resolve_names(["SpinalCord", "spinal cord"], ["SpinalCord"], ALIASES)
    assert r.roi("SpinalCord") is None
    assert r.findings[0].code == "roi_name_ambiguous"


def test_a_repeated_roi_name_is_ambiguous():
    r = resolve_names(["Liver", "Liver"], ["Liver"], {})
    assert r.roi("Liver") is None
    assert "2 ROIs match Liver by name ('Liver', 'Liver')" in r.findings[0].message


def test_two_alias_matches_are_ambiguous():
    r = resolve_names(["cord", "CORD "], ["SpinalCord"], ALIASES)
    assert r.roi("SpinalCord") is None
    assert r.findings[0].message.startswith("2 ROIs match SpinalCord by alias ('cord', 'CORD ')")


def test_a_name_match_wins_over_an_alias_match():
    r = resolve_names(["Colon", "Bowel_Large"], ["Bowel_Large"], ALIASES)
    assert (r.roi("Bowel_Large"), r.matches["Bowel_Large"].how) == ("Bowel_Large", "exact")
    assert r.findings == ()


def test_an_alias_never_takes_an_roi_another_structure_matched_by_name():
    r = resolve_names(["Colon"], ["Bowel_Large", "Colon"], ALIASES)
    assert r.roi("Colon") == "Colon"
    assert r.roi("Bowel_Large") is None


def test_mapping_wins():
    r = resolve_names(["SpinalCord", "Cord_v2"], ["SpinalCord"], ALIASES,
                      mapping={"SpinalCord": "Cord_v2"})
    assert (r.roi("SpinalCord"), r.matches["SpinalCord"].how) == ("Cord_v2", "mapping")


def test_mapping_settles_an_ambiguity():
    r = resolve_names(["Spinal Cord", "SPINAL_CORD"], ["SpinalCord"], ALIASES,
                      mapping={"SpinalCord": "SPINAL_CORD"})
    assert (r.roi("SpinalCord"), r.matches["SpinalCord"].how, r.findings) == (
        "SPINAL_CORD", "mapping", ())


def test_mapping_is_exact():
    r = resolve_names(["spinal cord"], ["SpinalCord"], {}, mapping={"SpinalCord": "Spinal Cord"})
    m = r.matches["SpinalCord"]
    assert (m.roi, m.how) == ("spinal cord", "normalised")  # matched by name, not the mapping
    (finding,) = m.findings
    assert (finding.severity, finding.code) == ("warning", "mapped_roi_missing")
    assert finding.message == ("the site maps SpinalCord to ROI 'Spinal Cord', which the plan "
                               "does not have; matching SpinalCord by name instead")


def test_mapping_to_a_repeated_roi_name_is_ambiguous():
    r = resolve_names(["Cord", "Cord"], ["SpinalCord"], {}, mapping={"SpinalCord": "Cord"})
    assert r.roi("SpinalCord") is None
    assert r.findings[0].code == "roi_name_ambiguous"
    assert "by the site mapping (repeated ROI name)" in r.findings[0].message


def test_a_near_miss_is_suggested_not_used():
    r = resolve_names(["Duodenun", "Liver"], ["Duodenum"], {})
    m = r.matches["Duodenum"]
    assert (m.roi, m.how) == (None, None)
    (finding,) = m.findings
    # difflib ratio of "duodenum" and "duodenun": 2 * 7 matching / 16 characters = 0.875
    assert (finding.severity, finding.code, finding.structure) == (
        "warning", "roi_name_near_miss", "Duodenum")
    assert finding.message == (
        "no ROI matches Duodenum; 'Duodenun' is close (similarity 0.88) but is not used: if it "
        "is the Duodenum, rename it or map it in the site file (mapping: {Duodenum: Duodenun})")


def test_near_misses_of_aliases_are_suggested_best_first():
    r = resolve_names(["cordd", "Spinal Crd", "Heart"], ["SpinalCord"], ALIASES)
    assert r.roi("SpinalCord") is None
    # "spinalcrd" vs "spinalcord": 2 * 9 / 19 = 0.947; "cordd" vs "cord": 2 * 4 / 9 = 0.889
    assert [f.message.split(";")[1].split(" is close")[0] for f in r.findings] == [
        " 'Spinal Crd'", " 'cordd'"]
    assert "(similarity 0.95)" in r.findings[0].message
    assert "(similarity 0.89)" in r.findings[1].message


def test_below_the_cutoff_nothing_is_suggested():
    # "duodenum" vs "duod": 2 * 4 / 12 = 0.67 < 0.8
    r = resolve_names(["Duod", "Liver"], ["Duodenum"], {})
    assert r.roi("Duodenum") is None
    assert r.findings == ()


def test_no_finding_when_a_structure_is_simply_absent():
    r = resolve_names(["Liver"], ["Heart"], {})
    assert r.matches["Heart"].roi is None and r.findings == ()


def test_wanted_order_is_kept_and_repeats_collapse():
    r = resolve_names(["Liver", "Heart"], ["Heart", "Liver", "Heart"], {})
    assert list(r.matches) == ["Heart", "Liver"]


def test_with_the_trial_protocol_aliases():
    p = load_protocol()
    r = resolve_names(["cord", "BODY", "small_bowel", "Duodenun", "Lung_Total"],
                      ["SpinalCord", "External", "Bowel_Small", "Duodenum", "Lungs"], p.aliases)
    assert r.mapping == {"SpinalCord": "cord", "External": "BODY", "Bowel_Small": "small_bowel",
                         "Lungs": "Lung_Total"}
    assert [f.code for f in r.findings] == ["roi_name_near_miss"]
