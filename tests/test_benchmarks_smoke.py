"""benchmarks/run.py keeps working (smoke-sized run; speed targets are never asserted in tests)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_quick_nelms_section_runs_and_writes_json(tmp_path):
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks.run import run_benchmarks
    finally:
        sys.path.remove(str(ROOT))
    out = tmp_path / "bench.json"
    results = run_benchmarks(quick=True, sections=("nelms",), json_path=out, echo=False)
    saved = json.loads(out.read_text())
    assert saved["summary"] == json.loads(json.dumps(results["summary"]))
    if results["nelms"].get("skipped"):
        pytest.skip(f"Nelms data absent: {results['nelms']['skipped']}")
    names = {s["name"]: s for s in results["summary"]}
    assert names["sbrt_qa_fail_pct_all"]["status"] == "PASS"
    assert names["sbrt_qa_fail_pct_all"]["measured"] <= 3.0
