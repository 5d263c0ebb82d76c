"""scripts/apply_params.py: overrides land in params.yaml without losing comments or user files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT

_spec = importlib.util.spec_from_file_location("apply_params", ROOT / "scripts" / "apply_params.py")
assert _spec is not None and _spec.loader is not None
apply_params = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(apply_params)


def test_poster_config_names_only_existing_keys_and_keeps_comments(tmp_path: Path) -> None:
    original = (ROOT / "params.yaml").read_text()
    overrides = yaml.safe_load((ROOT / "configs" / "poster.yaml").read_text())
    new = apply_params.apply_overrides(original, overrides)
    before, after = yaml.safe_load(original), yaml.safe_load(new)
    for section, values in after.items():
        for key, value in values.items():
            expected = overrides.get(section, {}).get(key, before[section][key])
            assert value == expected, f"{section}.{key}"
    comments = [line for line in original.splitlines() if line.lstrip().startswith("#")]
    assert comments == [line for line in new.splitlines() if line.lstrip().startswith("#")]
    assert after["finetune"]["lora_targets"] == r"^(fc|layer4\.\d+\.conv\d)$"


def test_main_backs_up_and_rejects_unknown_keys(tmp_path: Path, capsys) -> None:
    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text())
    assert apply_params.main(["--set", "finetune.epochs=3", "--params", str(params)]) == 0
    backups = list(tmp_path.glob("params.yaml.bak-*"))
    assert len(backups) == 1 and backups[0].read_text() == (ROOT / "params.yaml").read_text()
    assert yaml.safe_load(params.read_text())["finetune"]["epochs"] == 3
    assert apply_params.main(["--set", "finetune.epoch=3", "--params", str(params)]) == 2
    assert "finetune.epoch" in capsys.readouterr().err
    assert yaml.safe_load(params.read_text())["finetune"]["epochs"] == 3  # unchanged by the failed call


def test_bad_set_syntax() -> None:
    with pytest.raises(ValueError, match=r"section\.key=value"):
        apply_params._parse_set(["epochs=3"])
