"""`sbrt-qa check` on the bundled sample plans finds exactly the deviations they are known to contain."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pydicom
import pytest
import yaml
from click.testing import CliRunner

from sbrt_qa.cli import EXIT_VERDICT, main
from sbrt_qa.dicom import load_plan
from sbrt_qa.evaluate import evaluate_plan
from sbrt_qa.protocol import load_protocol

SAMPLES = Path(__file__).resolve().parent.parent / "sample_rtplans"
CASES = sorted(p for p in SAMPLES.iterdir() if (p / "expected.yaml").is_file())


@pytest.fixture(scope="module")
def protocol():
    return load_protocol()


@pytest.fixture(scope="module")
def evaluations(protocol):
    return {case.name: evaluate_plan(load_plan(case), protocol) for case in CASES}


def _matches(check, exp) -> bool:
    return (check.category == exp["category"] and check.result == exp["result"]
            and (exp.get("structure") is None or check.structure == exp["structure"])
            and (exp.get("metric") is None or check.metric == exp["metric"]))


def test_there_are_sample_plans():
    assert len(CASES) >= 7


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_sample_deviations_are_exactly_the_expected_ones(case, evaluations):
    expected = yaml.safe_load((case / "expected.yaml").read_text())
    ev = evaluations[case.name]
    assert ev.verdict == expected["verdict"]
    flagged = [c for c in ev.checks if c.result != "pass"]
    unexpected = [(c.category, c.structure, c.metric, c.result) for c in flagged
                  if not any(_matches(c, e) for e in expected["deviations"])]
    missing = [e for e in expected["deviations"] if not any(_matches(c, e) for c in flagged)]
    assert unexpected == [], f"deviations found but not expected: {unexpected}"
    assert missing == [], f"expected deviations not found: {missing}"


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_no_pass_without_a_value(case, evaluations):
    for c in evaluations[case.name].checks:
        if c.result == "pass":
            assert c.value is not None, c
        assert c.unit is not None


def test_prescription_summary_of_staged_plan(evaluations):
    ev = evaluations["03_staged_pvtt_then_lungs"]
    assert ev.plan["n_courses"] == 2
    assert {round(c["total_dose_gy"], 2) for c in ev.plan["courses"]} == {35.0, 40.0}
    assert ev.plan["total_dose_gy"] == pytest.approx(40.0)
    assert ev.plan["fractions"] == 5
    assert ev.plan["dose_per_fraction_gy"] == pytest.approx(8.0)


def test_check_json_shape_and_exit_code():
    case = SAMPLES / "05_oar_deviations"
    r = CliRunner().invoke(main, ["check", str(case), "--format", "json"])
    assert r.exit_code == EXIT_VERDICT["major_deviation"] == 11
    d = json.loads(r.output)
    assert d["verdict"] == "major_deviation"
    assert {"patient_id", "plan_label", "fractions", "total_dose_gy", "dose_per_fraction_gy"} <= set(d["plan"])
    keys = {"id", "category", "structure", "metric", "value", "unit", "limit", "result", "source", "message"}
    assert d["checks"] and all(keys <= set(c) for c in d["checks"])
    cord = [c for c in d["checks"] if c["structure"] == "SpinalCord" and c["metric"] == "D0.035cc"]
    assert cord and cord[0]["result"] == "major" and cord[0]["unit"] == "Gy" and cord[0]["value"] > 30


def test_exit_codes_per_verdict():
    runner = CliRunner()
    assert runner.invoke(main, ["check", str(SAMPLES / "01_pvtt_per_protocol"), "--format", "csv"]).exit_code == 0
    r = runner.invoke(main, ["check", str(SAMPLES / "07_missing_oar_ptv_outside_grid")])
    assert r.exit_code == 12
    assert "NOT EVALUABLE" in r.output and "Duodenum" in r.output


def test_input_error_names_the_file(tmp_path):
    bad = tmp_path / "plan"
    bad.mkdir()
    (bad / "junk.dcm").write_bytes(b"not dicom")
    r = CliRunner().invoke(main, ["check", str(bad)])
    assert r.exit_code == 3
    assert "no RTSTRUCT" in r.output and str(bad) in r.output


def test_html_is_self_contained_and_escapes_dicom_strings(tmp_path):
    src = SAMPLES / "01_pvtt_per_protocol"
    plan = tmp_path / "plan"
    shutil.copytree(src, plan)
    rs = next(p for p in plan.glob("RS*.dcm"))
    ds = pydicom.dcmread(rs)
    item = next(i for i in ds.StructureSetROISequence if i.ROIName == "Stomach")
    item.ROIName = "Stomach<script>alert(1)</script>"
    ds.RTPlanLabel = "x"
    ds.save_as(rs)
    out = tmp_path / "r.html"
    site = tmp_path / "site.yaml"
    site.write_text("kind: site\nname: test site\nmapping: {Stomach: 'Stomach<script>alert(1)</script>'}\n")
    r = CliRunner().invoke(main, ["check", str(plan), "--site", str(site), "--format", "html", "-o", str(out)])
    assert r.exit_code == 0, r.output
    text = out.read_text()
    assert "<script>" not in text
    assert "Stomach&lt;script&gt;" in text
    assert "<svg" in text and "http://" not in text.replace("http://www.w3.org/2000/svg", "")
    assert "PER PROTOCOL" in text


def test_protocol_validate_reports_line_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: constraint_set\nname: x\nconstraints:\n  - id: a.b\n    structure: Cord\n"
                   "    metric: D0.035cc\n    comparison: '<'\n    limit: {per_protocol: 30 Gyy}\n"
                   "    source: test\n")
    r = CliRunner().invoke(main, ["protocol", "validate", str(bad)])
    assert r.exit_code == 3
    assert "bad.yaml:8" in r.output and "constraints[0].limit" in r.output


def test_protocol_schema_is_json():
    r = CliRunner().invoke(main, ["protocol", "schema"])
    assert r.exit_code == 0
    assert "properties" in json.loads(r.output) or "oneOf" in json.loads(r.output)


def test_target_figures_reported(evaluations):
    t = {t.name: t for t in evaluations["02_pvtt_lung_spine"].targets}
    f = t["PTV_Lung_LUL"].figures
    assert t["PTV_Lung_LUL"].target_class == "extrahepatic" and t["PTV_PVTT"].target_class == "pvtt"
    assert 9 < f["volume_cc"] < 14
    assert f["d98_gy"] < f["d95_gy"] < f["dmax_gy"]
    assert 1.0 < f["r100"] < 1.2 and 0.8 < f["paddick_ci"] <= 1.0
    assert f["r50"] > f["r100"] and f["paddick_gi"] > 1
    assert f["hotspot_in_ptv"] is True


def test_dose_grid_inconsistent_with_prescription_is_a_finding(tmp_path, protocol):
    plan = tmp_path / "plan"
    shutil.copytree(SAMPLES / "01_pvtt_per_protocol", plan)
    rp = next(plan.glob("RP*.dcm"))
    ds = pydicom.dcmread(rp)
    ds.DoseReferenceSequence[0].TargetPrescriptionDose = 70.0  # twice the dose in the grid
    ds.save_as(rp)
    ev = evaluate_plan(load_plan(plan), protocol)
    assert any(f.code == "dose_grid_vs_prescription" for f in ev.findings)
    assert ev.verdict == "major_deviation"  # 70 Gy is outside 25-40 Gy and coverage fails


def test_dvh_command_json_has_the_pinned_shape_and_the_engine_values():
    import sbrt_qa

    case = SAMPLES / "02_pvtt_lung_spine"
    metrics = "Dmean,D95%,V20Gy[%],D0.03cc"
    r = CliRunner().invoke(main, ["dvh", str(case), "--metrics", metrics, "--structure", "Liver",
                                  "--structure", "Spinal Cord", "--structure", "NoSuchROI",
                                  "--format", "json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert [s["name"] for s in out["structures"]] == ["Liver", "Spinal Cord", "NoSuchROI"]
    plan = sbrt_qa.load_plan(case)
    for s in out["structures"][:2]:
        assert set(s["metrics"]) == set(metrics.split(","))
        d = sbrt_qa.compute_dvh(plan, s["name"])
        assert s["volume_cc"] == pytest.approx(d.volume_cc, abs=1e-4)  # JSON keeps 4 decimals
        assert s["metrics"]["Dmean"] == pytest.approx(d.metric("Dmean"), abs=1e-4)
        assert s["metrics"]["D95%"] == pytest.approx(d.metric("D95%"), abs=1e-4)
    missing = out["structures"][2]
    assert missing["volume_cc"] is None and all(v is None for v in missing["metrics"].values())
    assert any(f["code"] == "structure_not_found" and f["structure"] == "NoSuchROI"
               for f in out["findings"])
