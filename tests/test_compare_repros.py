"""scripts/compare_repros.py: identical outputs pass, any real difference fails, timings do not count."""

from __future__ import annotations

import importlib.util
import json

import pandas as pd

from .conftest import ROOT

spec = importlib.util.spec_from_file_location("compare_repros", ROOT / "scripts" / "compare_repros.py")
compare_repros = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_repros)


def _tree(root, accuracy, seconds):
    (root / "reports/metrics").mkdir(parents=True)
    (root / "reports/tables").mkdir(parents=True)
    (root / "data/values").mkdir(parents=True)
    (root / "reports/metrics/finetune.json").write_text(json.dumps({"acc": accuracy, "train_time_s": seconds}))
    pd.DataFrame({"acc": [accuracy], "accuracy_std": [0.01], "seconds": [seconds]}).to_csv(
        root / "reports/tables/t.csv", index=False
    )
    (root / "data/values/selections.json").write_text("[1, 2]")
    return root


def test_timings_aside_identical_trees_pass_and_a_changed_number_fails(tmp_path, capsys):
    a = _tree(tmp_path / "a", 0.9, 1.0)
    b = _tree(tmp_path / "b", 0.9, 7.0)  # only timings differ
    assert compare_repros.main([str(a), str(b)]) == 0
    c = _tree(tmp_path / "c", 0.9000001, 1.0)
    assert compare_repros.main([str(a), str(c)]) == 1
    out = capsys.readouterr().out
    assert "DIFF  reports/metrics/finetune.json" in out and "DIFF  reports/tables/t.csv" in out
    assert not compare_repros.is_timing("accuracy_std") and compare_repros.is_timing("train_time_s")
