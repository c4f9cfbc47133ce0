"""Tests of sbrt_qa.protocol: the shipped YAML, validation with lines, includes, site overrides,
conformity grading (values computed by hand from the table in clinical REFERENCE.md)."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import pytest

from sbrt_qa.errors import ProtocolError
from sbrt_qa.protocol import (Constraint, Protocol, Quantity, default_constraints_dir,
                              load_protocol, protocol_json_schema, validate_protocol_file)

CONSTRAINTS = Path(__file__).resolve().parent.parent / "constraints"

MINI_PROTOCOL = """\
kind: protocol
name: mini
include: [set.yaml]
prescription:
  fractions: 5
  total_dose: {min: 25 Gy, max: 40 Gy}
  dose_per_fraction: {min: 5 Gy, max: 8 Gy}
  max_targets_per_patient: 10
  staged_courses_allowed: true
  source: test
targets:
  interpreted_types: [PTV]
  name_patterns: ["^PTV"]
  exclude_patterns: ["opt"]
  pvtt_patterns: ["pvtt|portal"]
  gtv_interpreted_types: [GTV]
  gtv_patterns: ["^GTV"]
coverage:
  - id: mini.ptv.v100
    metric: V100%[%]
    comparison: ">="
    limit: {per_protocol: 95 %, minor: 90 %}
    source: test
conformity:
  source: test
  r100: {per_protocol: 1.2, minor: 1.5}
  outside_105: {per_protocol: 15 %}
  dmax_inside_ptv: true
  beyond_last_row: major
  rows:
    - {ptv: 10 cc, r50: [5.0, 6.0], d2cm: [50 %, 60 %]}
    - {ptv: 20 cc, r50: [4.0, 5.0], d2cm: [60 %, 70 %]}
"""

MINI_SET = """\
kind: constraint_set
name: set
fractions: 5
alpha_beta: 3 Gy
constraints:
  - id: set.duodenum.d5cc
    structure: Duodenum
    metric: D5cc
    comparison: "<"
    limit: {per_protocol: 18 Gy, minor: 20 Gy}
    source: test
  - id: set.cord.max
    structure: SpinalCord
    metric: D0.035cc
    comparison: "<"
    limit: {per_protocol: 30 Gy}
    alpha_beta: 2 Gy
    fractions: 3
    source: test
  - id: set.liver_gtv.cv15gy
    structure: Liver-GTV
    metric: CV15Gy[cc]
    comparison: ">="
    limit: {per_protocol: 700 cc}
    required: true
    applies_to: [pvtt]
    source: test
derived_structures:
  - name: Liver-GTV
    union: [Liver]
    minus: ["@gtv"]
    minus_fallback: ["@targets"]
    description: normal liver
aliases:
  SpinalCord: [cord]
"""


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line of ``text`` containing ``needle``."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.fixture
def mini(tmp_path):
    """Write the mini protocol; return a function that rewrites one of its files."""
    (tmp_path / "protocol.yaml").write_text(MINI_PROTOCOL)
    (tmp_path / "set.yaml").write_text(MINI_SET)

    def write(name: str, old: str | None = None, new: str = "", text: str | None = None) -> str:
        path = tmp_path / name
        if text is None:
            text = path.read_text()
            assert old in text, old
            text = text.replace(old, new, 1)
        path.write_text(text)
        return text

    write.dir = tmp_path
    return write


# --- the shipped protocol --------------------------------------------------------------------

@pytest.fixture(scope="module")
def trial() -> Protocol:
    return load_protocol()


def test_shipped_files_validate_without_issues():
    for name in ("trial_bclc_c_sbrt.yaml", "tg101_5fx.yaml", "liver_hcc.yaml",
                 "sites_extra.yaml", "site_example.yaml"):
        assert validate_protocol_file(CONSTRAINTS / name) == []
    example = CONSTRAINTS / "site_example.yaml"
    assert validate_protocol_file(CONSTRAINTS / "trial_bclc_c_sbrt.yaml", site=example) == []
    p = load_protocol(site=example)
    assert (p.site, p.overrides, p.mapping) == ("Example site", (), {})
    assert p.constraints == load_protocol().constraints


def test_default_protocol_is_the_trial_file(trial):
    assert Path(trial.path) == CONSTRAINTS / "trial_bclc_c_sbrt.yaml"
    assert default_constraints_dir() == CONSTRAINTS
    assert [Path(f).name for f in trial.files] == [
        "trial_bclc_c_sbrt.yaml", "tg101_5fx.yaml", "liver_hcc.yaml", "sites_extra.yaml"]


def test_trial_prescription_rules(trial):
    rx = trial.prescription
    assert rx.fractions == 5
    assert (rx.total_dose.min, rx.total_dose.max) == (Quantity(25, "Gy"), Quantity(40, "Gy"))
    assert (rx.dose_per_fraction.min.value, rx.dose_per_fraction.max.value) == (5, 8)
    assert rx.total_dose.contains(25.0) and rx.total_dose.contains(40.0)
    assert not rx.total_dose.contains(40.01) and not rx.dose_per_fraction.contains(4.99)
    assert rx.max_targets_per_patient == 10
    assert rx.staged_courses_allowed is True


@pytest.mark.parametrize("roi, expected", [
    ("PTV_PVTT", "pvtt"), ("ptv portal vein", "pvtt"), ("PTV_Thrombus", "pvtt"),
    ("PTV_PORTAL", "pvtt"), ("PTV_lung_1", "extrahepatic"), ("PTV_T10", "extrahepatic"),
    ("PTV_adrenal_L", "extrahepatic"), ("PTV_node", "extrahepatic")])
def test_classify_target(trial, roi, expected):
    assert trial.classify_target(roi) == expected


@pytest.mark.parametrize("roi, interpreted, expected", [
    ("PTV1", "", True), ("ptv_lung", None, True), ("Lesion 1", "PTV", True),
    ("lesion 1", "ptv", True), ("PTV_opt", "PTV", False), ("PTV_ring", "", False),
    ("GTV", "GTV", False), ("Liver", "ORGAN", False), ("zPTV", "", False)])
def test_is_target(trial, roi, interpreted, expected):
    assert trial.is_target(roi, interpreted) is expected


def test_is_gtv(trial):
    assert trial.is_gtv("GTV_PVTT") and trial.is_gtv("iGTV") and trial.is_gtv("tumour", "GTV")
    assert not trial.is_gtv("PTV_PVTT", "PTV") and not trial.is_gtv("Liver-GTV", "ORGAN")


def test_trial_coverage_rules(trial):
    rows = {r.id: (r.metric, r.comparison, str(r.limit.pass_limit), r.limit.minor_limit)
            for r in trial.coverage}
    assert rows == {
        "trial.ptv.v100": ("V100%[%]", ">=", "95 %", None),
        "trial.ptv.v90": ("V90%[%]", ">=", "99 %", None),
        "trial.ptv.dmax_low": ("Dmax[%]", ">=", "111 %", None),
        "trial.ptv.dmax_high": ("Dmax[%]", "<=", "167 %", None)}
    v100 = trial.rule("trial.ptv.v100")
    assert v100.parsed_metric.needs_rx
    assert [v100.grade(v) for v in (95.0, 94.99)] == ["pass", "major"]
    assert trial.conformity.dmax_inside_ptv is True


TG101 = [  # id, structure, metric, comparison, per_protocol (REFERENCE.md, TG-101 5 fx)
    ("tg101.spinalcord.d0_35cc", "SpinalCord", "D0.35cc", "<", "23 Gy"),
    ("tg101.spinalcord.d1_2cc", "SpinalCord", "D1.2cc", "<", "14.5 Gy"),
    ("tg101.spinalcord.max", "SpinalCord", "D0.035cc", "<", "30 Gy"),
    ("tg101.caudaequina.d5cc", "CaudaEquina", "D5cc", "<", "30 Gy"),
    ("tg101.caudaequina.max", "CaudaEquina", "D0.035cc", "<", "32 Gy"),
    ("tg101.sacralplex.d5cc", "SacralPlex", "D5cc", "<", "30 Gy"),
    ("tg101.sacralplex.max", "SacralPlex", "D0.035cc", "<", "32 Gy"),
    ("tg101.esophagus.d5cc", "Esophagus", "D5cc", "<", "19.5 Gy"),
    ("tg101.esophagus.max", "Esophagus", "D0.035cc", "<", "35 Gy"),
    ("tg101.brachialplex_l.d3cc", "BrachialPlex_L", "D3cc", "<", "27 Gy"),
    ("tg101.brachialplex_l.max", "BrachialPlex_L", "D0.035cc", "<", "30.5 Gy"),
    ("tg101.brachialplex_r.d3cc", "BrachialPlex_R", "D3cc", "<", "27 Gy"),
    ("tg101.brachialplex_r.max", "BrachialPlex_R", "D0.035cc", "<", "30.5 Gy"),
    ("tg101.heart.d15cc", "Heart", "D15cc", "<", "32 Gy"),
    ("tg101.heart.max", "Heart", "D0.035cc", "<", "38 Gy"),
    ("tg101.greatves.d10cc", "GreatVes", "D10cc", "<", "47 Gy"),
    ("tg101.greatves.max", "GreatVes", "D0.035cc", "<", "53 Gy"),
    ("tg101.trachea.d4cc", "Trachea", "D4cc", "<", "16.5 Gy"),
    ("tg101.trachea.max", "Trachea", "D0.035cc", "<", "40 Gy"),
    ("tg101.bronchus_main.d4cc", "Bronchus_Main", "D4cc", "<", "16.5 Gy"),
    ("tg101.bronchus_main.max", "Bronchus_Main", "D0.035cc", "<", "40 Gy"),
    ("tg101.rib.d1cc", "Rib", "D1cc", "<", "35 Gy"),
    ("tg101.rib.max", "Rib", "D0.035cc", "<", "43 Gy"),
    ("tg101.skin.d10cc", "Skin", "D10cc", "<", "36.5 Gy"),
    ("tg101.skin.max", "Skin", "D0.035cc", "<", "39.5 Gy"),
    ("tg101.stomach.d10cc", "Stomach", "D10cc", "<", "18 Gy"),
    ("tg101.stomach.max", "Stomach", "D0.035cc", "<", "32 Gy"),
    ("tg101.duodenum.d5cc", "Duodenum", "D5cc", "<", "18 Gy"),
    ("tg101.duodenum.d10cc", "Duodenum", "D10cc", "<", "12.5 Gy"),
    ("tg101.duodenum.max", "Duodenum", "D0.035cc", "<", "32 Gy"),
    ("tg101.bowel_small.d5cc", "Bowel_Small", "D5cc", "<", "19.5 Gy"),
    ("tg101.bowel_small.max", "Bowel_Small", "D0.035cc", "<", "35 Gy"),
    ("tg101.bowel_large.d20cc", "Bowel_Large", "D20cc", "<", "25 Gy"),
    ("tg101.bowel_large.max", "Bowel_Large", "D0.035cc", "<", "38 Gy"),
    ("tg101.rectum.d20cc", "Rectum", "D20cc", "<", "25 Gy"),
    ("tg101.rectum.max", "Rectum", "D0.035cc", "<", "38 Gy"),
    ("tg101.bladder_wall.d15cc", "Bladder_Wall", "D15cc", "<", "18.3 Gy"),
    ("tg101.bladder_wall.max", "Bladder_Wall", "D0.035cc", "<", "38 Gy"),
    ("tg101.kidney_hilum_l.v23gy", "Kidney_Hilum_L", "V23Gy[%]", "<", "66.67 %"),
    ("tg101.kidney_hilum_r.v23gy", "Kidney_Hilum_R", "V23Gy[%]", "<", "66.67 %"),
    ("tg101.lungs.cv12_5gy", "Lungs", "CV12.5Gy[cc]", ">=", "1500 cc"),
    ("tg101.lungs.cv13_5gy", "Lungs", "CV13.5Gy[cc]", ">=", "1000 cc"),
    ("tg101.liver.cv21gy", "Liver", "CV21Gy[cc]", ">=", "700 cc"),
    ("tg101.kidney_cortex.cv17_5gy", "Kidney_Cortex", "CV17.5Gy[cc]", ">=", "200 cc"),
]

OTHERS = [  # REFERENCE.md: RTOG 1112 pattern, hilar PVTT (unverified), Sahgal 2019
    ("rtog1112.liver_gtv.cv15gy", "Liver-GTV", "CV15Gy[cc]", ">=", "700 cc"),
    ("rtog1112.liver_gtv.dmean", "Liver-GTV", "Dmean", "<", "15 Gy"),
    ("rtog1112.stomach.d0_5cc", "Stomach", "D0.5cc", "<", "30 Gy"),
    ("rtog1112.duodenum.d0_5cc", "Duodenum", "D0.5cc", "<", "30 Gy"),
    ("rtog1112.esophagus.d0_5cc", "Esophagus", "D0.5cc", "<", "30 Gy"),
    ("rtog1112.bowel_small.d0_5cc", "Bowel_Small", "D0.5cc", "<", "30 Gy"),
    ("rtog1112.bowel_large.d0_5cc", "Bowel_Large", "D0.5cc", "<", "30 Gy"),
    ("rtog1112.spinalcord.d0_5cc", "SpinalCord", "D0.5cc", "<", "25 Gy"),
    ("hilar_pvtt.chbt.v_bed10_40gy", "CHBT", "V40Gy[cc]", "<", "37 cc"),
    ("hilar_pvtt.chbt.v_bed10_30gy", "CHBT", "V30Gy[cc]", "<", "45 cc"),
    ("sahgal2019.spinalcord.dmax", "SpinalCord", "Dmax", "<=", "25.3 Gy"),
    ("sahgal2019.spinalcanal.reirr_cumulative_eqd2", "SpinalCanal", "Dmax", "<=", "70 Gy"),
    ("sahgal2019.spinalcanal.reirr_course_eqd2", "SpinalCanal", "Dmax", "<=", "25 Gy"),
]


def test_every_constraint_is_as_in_the_reference(trial):
    got = [(c.id, c.structure, c.metric, c.comparison, str(c.limit.per_protocol))
           for c in trial.constraints]
    assert got == TG101 + OTHERS
    assert all(c.limit.minor_limit is None for c in trial.constraints)  # no source gives one
    assert all(c.fractions == 5 for c in trial.constraints)


def test_unverified_values_stay_unverified(trial):
    unverified = {c.id for c in trial.constraints if not c.verified}
    assert unverified == {row[0] for row in OTHERS
                          if row[0].startswith(("rtog1112.", "hilar_pvtt."))}
    assert all("nverified" in trial.rule(i).note for i in unverified)


def test_constraint_attributes_for_the_evaluator(trial):
    cord = trial.rule("tg101.spinalcord.max")
    assert cord.alpha_beta == Quantity(2, "Gy") and cord.fractions == 5
    assert trial.rule("tg101.duodenum.d5cc").alpha_beta == Quantity(3, "Gy")
    liver = trial.rule("rtog1112.liver_gtv.cv15gy")
    assert liver.required and liver.applies_to == ("pvtt",) and liver.unit == "cc"
    chbt = trial.rule("hilar_pvtt.chbt.v_bed10_40gy")
    assert (chbt.dose_quantity, chbt.alpha_beta.value) == ("bed", 10)
    reirr = trial.rule("sahgal2019.spinalcanal.reirr_course_eqd2")
    assert (reirr.enabled, reirr.dose_quantity, reirr.scope) == (False, "eqd2", "course")
    active = {c.id for c in trial.active_constraints(("extrahepatic",))}
    assert "tg101.duodenum.d5cc" in active and "rtog1112.liver_gtv.cv15gy" not in active
    assert "sahgal2019.spinalcanal.reirr_course_eqd2" not in active
    assert "rtog1112.liver_gtv.cv15gy" in {c.id for c in trial.active_constraints(("pvtt",))}


def test_derived_structures_and_wanted_names(trial):
    liver = trial.derived("Liver-GTV")
    assert (liver.union, liver.minus, liver.minus_fallback, liver.use_plan_roi) == (
        ("Liver",), ("@gtv",), ("@targets",), False)
    assert trial.derived("Lungs-GTV").union == ("Lungs",)
    assert trial.derived("Lungs").use_plan_roi and trial.derived("Lungs").union == (
        "Lung_L", "Lung_R")
    wanted = trial.wanted_structures()
    assert "Liver-GTV" not in wanted and "Liver" in wanted  # derived, from Liver
    assert {"Lungs", "Lung_L", "Lung_R", "Kidney_Cortex", "Kidney_Cortex_L"} <= set(wanted)
    assert "CHBT" not in trial.wanted_structures(("extrahepatic",))
    assert "SpinalCanal" not in wanted  # its constraints are disabled


def test_aliases_from_the_reference(trial):
    assert trial.aliases_for("SpinalCord") == ("cord",)
    assert trial.aliases_for("External") == ("BODY",)
    assert "Colon" in trial.aliases_for("Bowel_Large")
    assert trial.aliases_for("Skin") == ()
    assert trial.mapping == {} and trial.site is None


# --- conformity (REFERENCE.md table, interpolated by hand) ----------------------------------

@pytest.mark.parametrize("kind, ptv_cc, none, minor", [
    # 7.4 cc: 5.1/6.0, 13.2 cc: 4.7/5.8; t = (10.3 - 7.4) / 5.8 = 0.5
    ("r50", 10.3, 5.1 + 0.5 * (4.7 - 5.1), 6.0 + 0.5 * (5.8 - 6.0)),  # 4.9, 5.9
    # 22 cc: 54/63, 34 cc: 58/68; t = 0.5
    ("d2cm", 28.0, 56.0, 65.5),
    # 50 cc: 4.0/5.0, 70 cc: 3.5/4.8; t = 0.25
    ("r50", 55.0, 3.875, 4.95),
    ("r50", 1.0, 5.9, 7.5),  # below the first row: the first row
    ("d2cm", 0.5, 50.0, 57.0),
    ("r50", 50.0, 4.0, 5.0),  # on a row
    ("d2cm", 163.0, 77.0, 94.0),  # the last row itself
    ("r100", 500.0, 1.2, 1.5),
    ("outside_105", 10.0, 15.0, None),
])
def test_conformity_limits(trial, kind, ptv_cc, none, minor):
    got = trial.conformity_limits(kind, ptv_cc)
    assert got[0] == pytest.approx(none, abs=1e-12)
    assert got[1] == (None if minor is None else pytest.approx(minor, abs=1e-12))


def test_r50_at_10_3_cc_is_4_9(trial):
    assert trial.conformity_limits("r50", 10.3)[0] == pytest.approx(4.9, abs=1e-12)


@pytest.mark.parametrize("kind, ptv_cc, value, grade", [
    ("r50", 10.3, 4.89, "pass"), ("r50", 10.3, 4.9, "minor"), ("r50", 10.3, 5.9, "minor"),
    ("r50", 10.3, 5.91, "major"),
    ("d2cm", 28.0, 55.9, "pass"), ("d2cm", 28.0, 56.0, "minor"), ("d2cm", 28.0, 65.6, "major"),
    ("r100", 5.0, 1.19, "pass"), ("r100", 5.0, 1.2, "minor"), ("r100", 5.0, 1.5, "minor"),
    ("r100", 5.0, 1.51, "major"),
    ("outside_105", 5.0, 14.9, "pass"), ("outside_105", 5.0, 15.0, "major"),
    ("r50", 163.0, 2.8, "pass"),
    ("r50", 163.1, 1.0, "major"),  # beyond the last row: major, whatever the value
    ("d2cm", 400.0, 10.0, "major"),
    ("r100", 400.0, 1.0, "pass"),  # R100 does not depend on the PTV volume
])
def test_grade_conformity(trial, kind, ptv_cc, value, grade):
    assert trial.grade_conformity(kind, ptv_cc, value) == grade


def test_beyond_the_last_row_is_none(trial):
    assert trial.conformity_limits("r50", 163.1) is None


def test_grade_conformity_rejects_bad_input(trial):
    with pytest.raises(ValueError, match="kind must be one of r100, r50, d2cm, outside_105"):
        trial.grade_conformity("r75", 10.0, 1.0)
    with pytest.raises(ValueError, match="cannot grade NaN"):
        trial.grade_conformity("r50", 10.0, math.nan)
    with pytest.raises(ValueError, match="ptv_cc must be a positive volume in cc, not 0"):
        trial.grade_conformity("d2cm", 0.0, 50.0)


def test_beyond_last_row_can_clamp(mini):
    mini("protocol.yaml", "beyond_last_row: major", "beyond_last_row: last_row")
    p = load_protocol(mini.dir / "protocol.yaml")
    assert p.conformity_limits("r50", 30.0) == (4.0, 5.0)
    assert p.grade_conformity("r50", 30.0, 4.5) == "minor"


# --- grading of rules ------------------------------------------------------------------------

def _rule(comparison, per_protocol, minor=None, metric="D5cc"):
    limit = {"per_protocol": per_protocol}
    if minor is not None:
        limit["minor"] = minor
    return Constraint(id="t.x", structure="X", metric=metric, comparison=comparison,
                      limit=limit, source="test")


@pytest.mark.parametrize("comparison, value, grade", [
    ("<", 17.99, "pass"), ("<", 18.0, "minor"), ("<", 20.0, "minor"), ("<", 20.01, "major"),
    ("<=", 18.0, "pass"), ("<=", 18.01, "minor"),
])
def test_upper_limit_grades(comparison, value, grade):
    assert _rule(comparison, "18 Gy", "20 Gy").grade(value) == grade


@pytest.mark.parametrize("comparison, value, grade", [
    (">=", 95.0, "pass"), (">=", 94.9, "minor"), (">=", 90.0, "minor"), (">=", 89.9, "major"),
    (">", 95.0, "minor"), (">", 95.1, "pass"),
])
def test_lower_limit_grades(comparison, value, grade):
    assert _rule(comparison, "95 %", "90 %", metric="V100%[%]").grade(value) == grade


def test_no_minor_tier_means_major():
    assert _rule("<", "18 Gy").grade(18.0) == "major"
    with pytest.raises(ValueError, match="cannot grade NaN"):
        _rule("<", "18 Gy").grade(math.nan)


def test_optimal_and_mandatory_map_to_per_protocol_and_minor():
    rule = Constraint(id="uk.x", structure="X", metric="D5cc", comparison="<",
                      limit={"optimal": "18 Gy", "mandatory": "20 Gy"}, source="test")
    assert rule.limit.pass_limit == Quantity(18, "Gy")
    assert rule.limit.minor_limit == Quantity(20, "Gy")
    assert rule.limit.tier_names == ("optimal", "mandatory")
    assert [rule.grade(v) for v in (17, 19, 21)] == ["pass", "minor", "major"]
    assert rule.describe() == "D5cc < 18 Gy (mandatory up to 20 Gy)"


def test_programmatic_constraint_checks_units_too():
    with pytest.raises(ValueError, match=re.escape(
            "per_protocol: '700 cc' is a volume, but D5cc gives a dose in Gy: write e.g. "
            "'700 Gy'")):
        _rule("<", "700 cc")


# --- the mini protocol: includes, defaults ----------------------------------------------------

def test_mini_protocol_loads_with_include_and_defaults(mini):
    p = load_protocol(mini.dir / "protocol.yaml")
    assert [c.id for c in p.constraints] == [
        "set.duodenum.d5cc", "set.cord.max", "set.liver_gtv.cv15gy"]
    duodenum, cord, _ = p.constraints
    assert (duodenum.fractions, duodenum.alpha_beta) == (5, Quantity(3, "Gy"))  # file defaults
    assert (cord.fractions, cord.alpha_beta) == (3, Quantity(2, "Gy"))  # its own kept
    assert p.aliases == {"SpinalCord": ("cord",)}
    assert [Path(f).name for f in p.files] == ["protocol.yaml", "set.yaml"]


def test_env_var_moves_the_default_folder(tmp_path, monkeypatch):
    for f in CONSTRAINTS.glob("*.yaml"):
        shutil.copy(f, tmp_path)
    trial = tmp_path / "trial_bclc_c_sbrt.yaml"
    trial.write_text(trial.read_text().replace("name: BCLC-C HCC SBRT", "name: Moved BCLC-C"))
    monkeypatch.setenv("SBRT_QA_CONSTRAINTS_DIR", str(tmp_path))
    assert default_constraints_dir() == tmp_path
    assert load_protocol().name.startswith("Moved BCLC-C")


def test_include_path_is_relative_to_the_including_file(mini):
    sub = mini.dir / "sets"
    sub.mkdir()
    (mini.dir / "set.yaml").rename(sub / "set.yaml")
    (sub / "more.yaml").write_text(
        "kind: constraint_set\nname: more\nconstraints:\n  - id: more.rib.d1cc\n"
        "    structure: Rib\n    metric: D1cc\n    comparison: \"<\"\n"
        "    limit: {per_protocol: 35 Gy}\n    source: test\n")
    mini("sets/set.yaml", "name: set\n", "name: set\ninclude: [more.yaml]\n")
    mini("protocol.yaml", "include: [set.yaml]", "include: [sets/set.yaml]")
    p = load_protocol(mini.dir / "protocol.yaml")
    assert p.constraints[0].id == "more.rib.d1cc"  # includes come first
    assert [Path(f).name for f in p.files] == ["protocol.yaml", "set.yaml", "more.yaml"]


# --- validation: every problem, with file, line and key --------------------------------------

BAD_SET = """\
kind: constraint_set
name: bad
constraints:
  - id: bad.duodenum.d5cc
    structure: Duodenum
    metric: D5cc
    comparison: "<"
    limit: {per_protocol: 18 Gyy}
    source: test
  - id: bad.lungs.cv
    structure: Lungs
    metric: CV12.5Gy[cc]
    comparison: ">="
    limit:
      per_protocol: 12.5 Gy
    source: test
  - id: bad.x
    structure: X
    metric: d5cc
    comparision: "<"
    limit: {per_protocol: 18}
  - id: bad.duodenum.d5cc
    structure: Duodenum
    metric: D5cc
    comparison: "=<"
    limit: {per_protocol: 20 Gy}
    source: test
"""


def test_validation_reports_every_problem_with_its_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(BAD_SET)
    issues = validate_protocol_file(path)
    got = [(i.line, i.key, i.message) for i in issues]
    assert got == [
        (8, "constraints[0].limit.per_protocol", "'18 Gyy' is not a dose: write e.g. '18 Gy'"),
        (15, "constraints[1].limit.per_protocol",
         "'12.5 Gy' is a dose, but CV12.5Gy[cc] gives a volume in cc: write e.g. '12.5 cc'"),
        (17, "constraints[2].comparison", "missing required key 'comparison'"),
        (17, "constraints[2].source", "missing required key 'source'"),
        (19, "constraints[2].metric",
         "\"d5cc\": unexpected 'd' at position 0; expected D, DC, V, CV, Dmax, Dmin, Dmean, "
         "Max, Min or Mean (metric names are case-sensitive: 'D', not 'd')"),
        (20, "constraints[2].comparision",
         "unknown key 'comparision'; did you mean 'comparison'?"),
        (21, "constraints[2].limit.per_protocol",
         "18 has no unit: write e.g. '18 Gy', '18 cc' or '18 %'"),
        (22, "constraints[3].id", f"duplicate id 'bad.duodenum.d5cc'; first defined at "
                                  f"{path}:4"),
        (25, "constraints[3].comparison", "'=<': must be '<', '<=', '>' or '>='"),
    ]
    assert all(i.path == str(path) for i in issues)
    assert str(issues[0]) == (f"{path}:8: constraints[0].limit.per_protocol: '18 Gyy' is not "
                              "a dose: write e.g. '18 Gy'")


def test_load_protocol_raises_the_first_problem_and_lists_the_rest(mini):
    text = mini("set.yaml", "per_protocol: 18 Gy,", "per_protocol: 18 Gyy,")
    mini("set.yaml", "metric: D0.035cc", "metric: D0.035")
    with pytest.raises(ProtocolError, match=re.escape(
            "'18 Gyy' is not a dose: write e.g. '18 Gy' (line 10); 1 more problem(s):")) as err:
        load_protocol(mini.dir / "protocol.yaml")
    assert line_of(text, "18 Gyy") == 10
    assert err.value.path == str(mini.dir / "set.yaml")
    assert err.value.key == "constraints[0].limit.per_protocol"
    assert (f"set.yaml:{line_of(text, 'D0.035cc')}: constraints[1].metric: \"D0.035\": D0.035 "
            "needs a unit") in str(err.value)


def _expect(mini, file, old, new, message, key=None, needle=None):
    """Edit one file of the mini protocol; load must raise ``message`` at ``key``/``needle``."""
    text = mini(file, old, new)
    with pytest.raises(ProtocolError, match=message) as err:
        load_protocol(mini.dir / "protocol.yaml")
    if key is not None:
        assert err.value.key == key
    if needle is not None:
        assert f"(line {line_of(text, needle)})" in err.value.message
    return err.value


@pytest.mark.parametrize("old, new, message, key, needle", [
    ("limit: {per_protocol: 18 Gy, minor: 20 Gy}", "limit: {per_protocol: 18 Gy, minor: 16 Gy}",
     r"limit: minor \(16 Gy\) must lie above per_protocol \(18 Gy\) for '<': it is the more "
     "lenient bound", "constraints[0].limit", "minor: 16 Gy"),
    ("limit: {per_protocol: 700 cc}", "limit: {per_protocol: 700 cc, minor: 800 cc}",
     r"minor \(800 cc\) must lie below per_protocol \(700 cc\) for '>='",
     "constraints[2].limit", "minor: 800 cc"),
    ("limit: {per_protocol: 18 Gy, minor: 20 Gy}", "limit: {per_protocol: 18 Gy, optimal: 17 Gy}",
     "give 'per_protocol' or 'optimal', not both: they mean the same", "constraints[0].limit",
     None),
    ("limit: {per_protocol: 18 Gy, minor: 20 Gy}",
     "limit: {per_protocol: 18 Gy, mandatory: 20 Gy}",
     "'mandatory' pairs with 'optimal'; with 'per_protocol' write 'minor'", None, None),
    ("limit: {per_protocol: 18 Gy, minor: 20 Gy}", "limit: {minor: 20 Gy}",
     r"give 'per_protocol' \(with an optional 'minor'\) or 'optimal'", None, None),
    ("limit: {per_protocol: 18 Gy, minor: 20 Gy}", "limit: {per_protocol: 1800 cGy}",
     re.escape("'1800 cGy': write doses in Gy, e.g. '18 Gy'"),
     "constraints[0].limit.per_protocol", None),
    ("limit: {per_protocol: 18 Gy, minor: 20 Gy}", "limit: {per_protocol: -18 Gy}",
     "'-18 Gy' must not be negative", None, None),
    ("limit: {per_protocol: 700 cc}", "limit: {per_protocol: 70 %}",
     re.escape("'70 %' is a percentage, but CV15Gy[cc] gives a volume in cc: write e.g. '70 cc'"),
     "constraints[2].limit.per_protocol", "70 %"),
    ("alpha_beta: 3 Gy", "alpha_beta: 3", re.escape("3 has no unit: write e.g. '3 Gy'"),
     "alpha_beta", "alpha_beta: 3"),
    ("    alpha_beta: 2 Gy\n", "    alpha_beta: 2 Gray\n",
     re.escape("'2 Gray' is not a dose: write e.g. '2 Gy'"), "constraints[1].alpha_beta", None),
    ("    fractions: 3\n", "    fractions: 3\n    dose_quantity: eqd2\n    alpha_beta: null\n",
     "dose_quantity eqd2 needs 'alpha_beta'", "constraints[1]", None),
    ("    alpha_beta: 2 Gy\n", "    alpha_beta: 2 Gy\n    dose_quantity: bed2\n",
     "'bed2': must be 'physical', 'eqd2' or 'bed'", "constraints[1].dose_quantity", "bed2"),
    ("applies_to: [pvtt]", "applies_to: [liver]",
     "'liver': must be 'pvtt' or 'extrahepatic'", "constraints[2].applies_to[0]", None),
    ("applies_to: [pvtt]", "applies_to: []", "must have at least 1 item",
     "constraints[2].applies_to", "applies_to: []"),
    ("id: set.cord.max", "id: Set Cord", "'Set Cord' is not a valid id: use lower-case letters, "
     "digits, '.', '_' and '-'", "constraints[1].id", "Set Cord"),
    ("    source: test\n  - id: set.cord.max", "  - id: set.cord.max",
     "missing required key 'source'", "constraints[0].source", "id: set.duodenum.d5cc"),
    ("required: true", "requierd: true",
     "unknown key 'requierd'; did you mean 'required'\\?", "constraints[2].requierd",
     "requierd"),
    ("comparison: \"<\"", "comparision: \"<\"",
     "missing required key 'comparison'", "constraints[0].comparison", "id: set.duodenum"),
    ("metric: D5cc", "metric: D5", re.escape('"D5": D5 needs a unit: write D5% or D5cc'),
     "constraints[0].metric", "metric: D5"),
    ("metric: D5cc", "metric: V20Gy", "V20Gy needs a unit", None, None),
    ('minus: ["@gtv"]', 'minus: ["@gvt"]', "unknown selector '@gvt': use one of @gtv, @targets",
     "derived_structures[0].minus", "@gvt"),
    ("    description: normal liver\n", "",
     "missing required key 'description'", "derived_structures[0].description", None),
    ("name: set\n", "name: set\nname: again\n",
     r"duplicate key \(first at line 2\); YAML would keep only the last", "name", "again"),
    ("kind: constraint_set", "kind: constraint-set",
     "kind must be protocol, constraint_set or site, not 'constraint-set'", "kind", None),
    ("kind: constraint_set", "kind: protocol",
     "this file is a protocol; expected constraint_set here", "kind", None),
    ("  SpinalCord: [cord]", "  SpinalCord: cord", "'cord': must be a valid tuple",
     "aliases.SpinalCord", None),
])
def test_constraint_set_errors(mini, old, new, message, key, needle):
    _expect(mini, "set.yaml", old, new, message, key, needle)


@pytest.mark.parametrize("old, new, message, key", [
    ("fractions: 5\n", "fractions: 0\n", "0: must be greater than or equal to 1",
     "prescription.fractions"),
    ("total_dose: {min: 25 Gy, max: 40 Gy}", "total_dose: {min: 45 Gy, max: 40 Gy}",
     r"min \(45 Gy\) is above max \(40 Gy\)", "prescription.total_dose"),
    ("total_dose: {min: 25 Gy, max: 40 Gy}", "total_dose: {min: 25 cc, max: 40 Gy}",
     "'25 cc' is a volume, but this value must be a dose in Gy", "prescription.total_dose.min"),
    ('pvtt_patterns: ["pvtt|portal"]', 'pvtt_patterns: ["pvtt|(portal"]',
     "'pvtt|\\(portal' is not a valid regular expression", "targets.pvtt_patterns[0]"),
    ("    - {ptv: 20 cc, r50: [4.0, 5.0], d2cm: [60 %, 70 %]}",
     "    - {ptv: 5 cc, r50: [4.0, 5.0], d2cm: [60 %, 70 %]}",
     r"rows must be in strictly ascending PTV volume, got \[10.0, 5.0\]", "conformity"),
    ("r50: [5.0, 6.0]", "r50: [6.5, 6.0]", "r50: none limit 6.5 is above the minor limit 6.0",
     "conformity.rows[0]"),
    ("d2cm: [50 %, 60 %]", "d2cm: [50 Gy, 60 %]",
     "'50 Gy' is a dose, but this value must be a percentage", "conformity.rows[0].d2cm[0]"),
    ("beyond_last_row: major", "beyond_last_row: clamp",
     "'clamp': must be 'major' or 'last_row'", "conformity.beyond_last_row"),
    ("include: [set.yaml]", "include: [sets.yaml]", "no file 'sets.yaml' next to this one",
     "include[0]"),
    ("include: [set.yaml]", "include: [set.yaml, protocol.yaml]",
     "'protocol.yaml' includes itself", "include[1]"),
    ("limit: {per_protocol: 95 %, minor: 90 %}", "limit: {per_protocol: 95 Gy}",
     "'95 Gy' is a dose, but V100%\\[%\\] gives a percentage", "coverage[0].limit.per_protocol"),
    ("  - id: mini.ptv.v100", "  - id: set.cord.max",
     "duplicate id 'set.cord.max'; first defined at .*set.yaml:12", "coverage[0].id"),
])
def test_protocol_errors(mini, old, new, message, key):
    _expect(mini, "protocol.yaml", old, new, message, key)


def test_unquoted_comparison_gets_a_hint(mini):
    text = mini("set.yaml", 'comparison: ">="', "comparison: >=")
    err = _expect(mini, "set.yaml", "name: set", "name: set",
                  "not valid YAML: expected chomping or indentation indicators, but found '='"
                  " \\(quote comparisons: comparison: \">=\"\\)")
    assert f"(line {line_of(text, 'comparison: >=')})" in err.message


def test_duplicate_id_across_included_files(mini):
    (mini.dir / "two.yaml").write_text(
        "kind: constraint_set\nname: two\nconstraints:\n"
        "  - id: set.duodenum.d5cc\n    structure: Duodenum\n    metric: D10cc\n"
        "    comparison: \"<\"\n    limit: {per_protocol: 12.5 Gy}\n    source: test\n")
    mini("protocol.yaml", "include: [set.yaml]", "include: [set.yaml, two.yaml]")
    with pytest.raises(ProtocolError, match=r"duplicate id 'set.duodenum.d5cc'; first defined "
                                            r"at .*set\.yaml:6 \(line 4\)") as err:
        load_protocol(mini.dir / "protocol.yaml")
    assert err.value.path == str(mini.dir / "two.yaml")
    assert err.value.key == "constraints[0].id"


def test_derived_structure_errors(mini):
    text = mini("set.yaml", "aliases:",
                "  - name: Lungs\n    union: [Lungs-GTV]\n    description: a\n"
                "  - name: Lungs-GTV\n    union: [Lungs]\n    description: b\n"
                "  - name: Liver-GTV\n    union: [Liver]\n    description: again\naliases:")
    issues = validate_protocol_file(mini.dir / "protocol.yaml")
    messages = [i.message for i in issues]
    assert messages == [
        "derived structure 'Lungs' depends on itself: Lungs -> Lungs-GTV -> Lungs",
        "derived structure 'Lungs-GTV' depends on itself: Lungs-GTV -> Lungs -> Lungs-GTV",
        f"derived structure 'Liver-GTV' is already defined at {mini.dir / 'set.yaml'}:"
        f"{line_of(text, 'name: Liver-GTV')}",
    ]
    assert [i.key for i in issues] == ["derived_structures[1].name",
                                       "derived_structures[2].name",
                                       "derived_structures[3].name"]


def test_alias_errors(mini):
    text = mini("set.yaml", "  SpinalCord: [cord]", "  SpinalCord: [cord]\n  CaudaEquina: [CORD]\n"
                                             "  Stomach: [duodenum]")
    issues = validate_protocol_file(mini.dir / "protocol.yaml")
    assert [(i.key, i.message) for i in issues] == [
        ("aliases.CaudaEquina[0]", f"alias 'CORD' is already an alias of 'SpinalCord' "
                                   f"({mini.dir / 'set.yaml'}:{line_of(text, '[cord]')}); "
                                   "one name cannot mean two "
                                   "structures"),
        ("aliases.Stomach[0]", "alias 'duodenum' of 'Stomach' is the name of another structure "
                               "used by the protocol ('Duodenum')"),
    ]
    assert [i.line for i in issues] == [line_of(text, "CaudaEquina"), line_of(text, "Stomach:")]
    assert [i.line for i in issues] == [36, 37]


def test_file_level_errors(tmp_path):
    missing = tmp_path / "nothere.yaml"
    with pytest.raises(ProtocolError, match="file not found") as err:
        load_protocol(missing)
    assert err.value.path == str(missing)
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ProtocolError, match="the file must be a mapping with a 'kind' key"):
        load_protocol(tmp_path / "list.yaml")
    (tmp_path / "nokind.yaml").write_text("name: x\n")
    with pytest.raises(ProtocolError, match="missing 'kind': protocol, constraint_set or site"):
        load_protocol(tmp_path / "nokind.yaml")
    with pytest.raises(ProtocolError, match="this file is a constraint_set; load_protocol needs "
                                            "a kind: protocol file"):
        load_protocol(CONSTRAINTS / "tg101_5fx.yaml")


# --- site files --------------------------------------------------------------------------------

SITE = """\
kind: site
name: Test Hospital
overrides:
  - id: set.duodenum.d5cc
    limit: {per_protocol: 17 Gy, minor: 19 Gy}
    reason: local policy
  - id: set.cord.max
    enabled: false
    reason: no cord near these targets
  - id: mini.ptv.v100
    limit: {per_protocol: 97 %}
    reason: local policy
constraints:
  - id: site.rib.d1cc
    structure: Rib
    metric: D1cc
    comparison: "<"
    limit: {per_protocol: 35 Gy}
    source: local
aliases:
  SpinalCord: [Myelon]
  Rib: [Ribs]
mapping:
  Duodenum: Duod_1
"""


def test_site_overrides_disables_adds_and_maps(mini):
    mini("site.yaml", text=SITE)
    p = load_protocol(mini.dir / "protocol.yaml", site=mini.dir / "site.yaml")
    duodenum = p.rule("set.duodenum.d5cc")
    assert (duodenum.limit.per_protocol, duodenum.limit.minor) == (Quantity(17, "Gy"),
                                                                   Quantity(19, "Gy"))
    assert [duodenum.grade(v) for v in (16.9, 17.0, 19.0, 19.1)] == [
        "pass", "minor", "minor", "major"]
    assert duodenum.alpha_beta == Quantity(3, "Gy")  # untouched fields stay
    assert p.rule("set.cord.max").enabled is False
    assert "set.cord.max" not in {c.id for c in p.active_constraints()}
    assert p.rule("mini.ptv.v100").limit.per_protocol == Quantity(97, "%")
    assert p.rule("mini.ptv.v100").limit.minor is None  # a limit override replaces all tiers
    assert p.constraints[-1].id == "site.rib.d1cc"
    assert p.aliases == {"SpinalCord": ("cord", "Myelon"), "Rib": ("Ribs",)}
    assert p.mapping == {"Duodenum": "Duod_1"}
    assert p.site == "Test Hospital"
    assert [o.reason for o in p.overrides] == ["local policy", "no cord near these targets",
                                               "local policy"]
    assert Path(p.files[-1]).name == "site.yaml"


def test_a_site_file_validates_alone(mini):
    mini("site.yaml", text=SITE)
    assert validate_protocol_file(mini.dir / "site.yaml") == []


@pytest.mark.parametrize("old, new, message, key", [
    ("  - id: set.duodenum.d5cc\n", "  - id: set.duodenum.d5c\n",
     "no constraint or coverage rule has id 'set.duodenum.d5c'; did you mean "
     "'set.duodenum.d5cc'\\?", "overrides[0].id"),
    ("limit: {per_protocol: 17 Gy, minor: 19 Gy}", "limit: {per_protocol: 17 cc}",
     re.escape("'17 cc' is a volume, but D5cc gives a dose in Gy: write e.g. '17 Gy'"),
     "overrides[0].limit.per_protocol"),
    ("limit: {per_protocol: 17 Gy, minor: 19 Gy}", "limit: {per_protocol: 17 Gyy}",
     re.escape("'17 Gyy' is not a quantity: write a number and a unit, e.g. '17 Gy', '17 cc' or "
               "'17 %'"), "overrides[0].limit.per_protocol"),
    ("limit: {per_protocol: 17 Gy, minor: 19 Gy}", "limit: {per_protocol: 17 Gy, minor: 15 Gy}",
     r"minor \(15 Gy\) must lie above per_protocol \(17 Gy\)", "overrides[0].limit"),
    ("    enabled: false\n", "", "an override must change 'limit', 'enabled', 'required' or "
                                 "'applies_to'", "overrides[1]"),
    ("    reason: no cord near these targets\n", "", "missing required key 'reason'",
     "overrides[1].reason"),
    ("    limit: {per_protocol: 97 %}\n", "    required: true\n",
     "'mini.ptv.v100' is a coverage rule, checked on every target: only 'limit' and 'enabled' "
     "can be overridden", "overrides[2].required"),
    ("  - id: site.rib.d1cc", "  - id: set.cord.max",
     "duplicate id 'set.cord.max'; first defined at .*set.yaml:12", "constraints[0].id"),
    ("  Duodenum: Duod_1", "  Duodenun: Duod_1",
     "'Duodenun' is not a structure of the protocol; did you mean 'Duodenum'\\?",
     "mapping.Duodenun"),
    ("  Rib: [Ribs]", "  Rib: [cord]", "alias 'cord' is already an alias of 'SpinalCord'",
     "aliases.Rib[0]"),
    ("kind: site\n", "kind: site\ninclude: [x.yaml]\n", "unknown key 'include'", "include"),
])
def test_site_errors(mini, old, new, message, key):
    text = SITE.replace(old, new, 1)
    assert text != SITE
    mini("site.yaml", text=text)
    with pytest.raises(ProtocolError, match=message) as err:
        load_protocol(mini.dir / "protocol.yaml", site=mini.dir / "site.yaml")
    assert err.value.key == key
    assert err.value.path == str(mini.dir / "site.yaml")
    issues = validate_protocol_file(mini.dir / "protocol.yaml", site=mini.dir / "site.yaml")
    assert [i.key for i in issues] == [key]


def test_site_override_error_line_points_into_the_site_file(mini):
    text = SITE.replace("limit: {per_protocol: 17 Gy, minor: 19 Gy}",
                        "limit:\n      per_protocol: 17 cc")
    mini("site.yaml", text=text)
    (issue,) = validate_protocol_file(mini.dir / "protocol.yaml", site=mini.dir / "site.yaml")
    assert (issue.line, issue.key) == (6, "overrides[0].limit.per_protocol")
    assert line_of(text, "per_protocol: 17 cc") == 6


def test_site_and_protocol_kinds_are_not_interchangeable(mini):
    mini("site.yaml", text=SITE)
    with pytest.raises(ProtocolError, match="this file is a protocol; expected site here"):
        load_protocol(mini.dir / "protocol.yaml", site=mini.dir / "protocol.yaml")
    with pytest.raises(ProtocolError, match="this file is a site; load_protocol needs a kind: "
                                            "protocol file"):
        load_protocol(mini.dir / "site.yaml")


# --- JSON schema ---------------------------------------------------------------------------------

def test_json_schema_describes_the_three_file_kinds():
    schema = protocol_json_schema()
    assert schema["discriminator"]["propertyName"] == "kind"
    assert set(schema["discriminator"]["mapping"]) == {"protocol", "constraint_set", "site"}
    constraint = schema["$defs"]["Constraint"]
    assert {"id", "structure", "metric", "comparison", "limit", "source"} <= set(
        constraint["required"])
    assert constraint["additionalProperties"] is False
    per_protocol = schema["$defs"]["Limit"]["properties"]["per_protocol"]["anyOf"][0]
    assert per_protocol["type"] == "string"
    pattern = re.compile(per_protocol["pattern"])
    assert pattern.match("18 Gy") and pattern.match("95 %") and pattern.match("700 cc")
    assert not pattern.match("18 Gyy") and not pattern.match("18")
