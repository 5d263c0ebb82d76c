"""Smoke test of benchmarks/bench_kairos.py --quick (keeps the benchmark script working)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_kairos.py"


@pytest.mark.slow
def test_bench_quick_writes_report(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_kairos", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "kairos.json"
    assert module.main(["--quick", "--device", "cpu", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["quick"] is True
    ex = report["exact_blocked"]
    assert ex["seconds"] > 0 and ex["fraction_of_gemm_rate"] > 0
    assert report["naive_vs_blocked"]["max_abs_value_difference"] < 1e-4
    assert [r["n_features"] for r in report["rff"]] == [256, 1024]
    assert "fraction of GEMM rate" in (tmp_path / "kairos.md").read_text()
