"""Overrides (configs/poster.yaml, --set) land in params.yaml without losing comments or user files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kairos_curate.stages import overrides

from ..conftest import ROOT


def _leaves(node: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in node.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        out.update(_leaves(value, path) if isinstance(value, dict) else {path: value})
    return out


def test_poster_config_changes_only_its_keys_and_keeps_comments_and_layout():
    original = (ROOT / "params.yaml").read_text()
    poster = yaml.safe_load((ROOT / "configs" / "poster.yaml").read_text())
    new, changed = overrides.apply_overrides(original, poster)
    before, after, wanted = _leaves(yaml.safe_load(original)), _leaves(yaml.safe_load(new)), _leaves(poster)
    assert set(after) == set(before)
    for key, value in after.items():
        assert value == wanted.get(key, before[key]), key
    assert sorted(changed) == sorted(k for k in wanted if wanted[k] != before[k])
    comments = [line for line in original.splitlines() if line.lstrip().startswith("#")]
    assert comments == [line for line in new.splitlines() if line.lstrip().startswith("#")]
    # only the changed values' lines differ; untouched lists keep their flow style
    differing = [a for a, b in zip(original.splitlines(), new.splitlines(), strict=True) if a != b]
    assert len(differing) == len(changed)
    assert after["finetune.lora_targets"] == r"^(fc|layer4\.\d+\.conv\d)$"
    assert "severities: [3, 6, 9]" in new and "fashion_mnist_dir: null" in new
    overrides.validate_all(new)


def test_main_backs_up_validates_and_rejects_unknown_keys(tmp_path: Path, capsys) -> None:
    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text())
    assert overrides.main(["--set", "finetune.epochs=3", "--params", str(params)]) == 0
    backups = list(tmp_path.glob("params.yaml.bak-*"))
    assert len(backups) == 1 and backups[0].read_text() == (ROOT / "params.yaml").read_text()
    assert yaml.safe_load(params.read_text())["finetune"]["epochs"] == 3
    assert overrides.main(["--set", "finetune.epoch=3", "--params", str(params)]) == 2
    assert "finetune.epoch: params.yaml has no such key" in capsys.readouterr().err
    assert overrides.main(["--set", "finetune.epochs=three", "--params", str(params)]) == 2
    assert "finetune.epochs: Input should be a valid integer" in capsys.readouterr().err
    assert overrides.main(["--set", "value.method=kairos_nope", "--params", str(params)]) == 2
    assert "unknown valuation method 'kairos_nope'" in capsys.readouterr().err
    assert yaml.safe_load(params.read_text())["finetune"]["epochs"] == 3  # unchanged by the failed calls
    assert overrides.main(["--set", "finetune.epochs=3", "--params", str(params)]) == 0
    assert "already up to date" in capsys.readouterr().out


def test_bad_set_syntax() -> None:
    with pytest.raises(ValueError, match=r"section\.key=value"):
        overrides.parse_set(["epochs=3"])
    assert overrides.parse_set(["a.b.c=[1, 2]", "a.d=x"]) == {"a": {"b": {"c": [1, 2]}, "d": "x"}}
