"""End-to-end: the poster's configuration through the real `dvc repro`, on fake data.

configs/poster.yaml is applied with scripts/apply_params.py exactly as `make repro-poster` does,
then only sizes and the encoder are shrunk for a CPU: the iNaturalist/Insects adapters feed the
prepare stage from folder trees under data/raw, torchvision ResNet-50 (random weights from a local
file, as a user would place the real ones) embeds the images and is fine-tuned by LoRA on
layer4 + fc. CLIP ViT-L-14 is swapped for the same ResNet-50 file: at 1.7 GB it is too large for
CI (its loading code is tested in test_embedding.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ..conftest import copy_project
from ..fake_datasets import make_inat_tree, make_insects_tree
from .test_pipeline_e2e import _dvc, init_and_repro

pytestmark = pytest.mark.slow

CPU_SIZES = [
    "scenario.inaturalist.reference_per_class=5",
    "scenario.inaturalist.test_per_class=8",
    "embed.encoder=torchvision:resnet50",
    "embed.weights=models/torchvision/resnet50.pth",
    "embed.image_size=64",
    "embed.batch_size=32",
    "value.budget=0.3",
    "compare.methods=[kairos_feature, kairos_class_conditional, knn_shapley, nearest_reference, random]",
    "compare.settings=[default, gaussian_3, flip_uniform_20, off_task]",
    "compare.n_seeds=1",
    "compare.base_size=60",
    "compare.downstream_settings=[default]",
    "compare.threads=1",
    "finetune.image_size=64",
    "finetune.methods=[lora]",
    "finetune.epochs=2",
    "finetune.trials=1",
    "finetune.random_draws=2",
    "finetune.batch_size=32",
    "finetune.size_fractions=[0.5, 1.0]",
    "finetune.subsets=[full, random, calibrated, oracle]",
    "finetune.noisy_subsets=[full, calibrated]",
]


def _tree_hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def poster(tmp_path_factory):
    import torch
    import torchvision

    dest = tmp_path_factory.mktemp("poster")
    copy_project(dest)
    (dest / "params.yaml").write_text((Path(__file__).resolve().parents[2] / "params.yaml").read_text())
    make_inat_tree(dest / "data/raw/inaturalist", per_species=20, offtask_per_species=10)
    make_insects_tree(dest / "data/raw/insects", per_class=13)
    weights = dest / "models/torchvision/resnet50.pth"
    weights.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), weights)
    raw_before = _tree_hashes(dest / "data/raw")
    for args in (["configs/poster.yaml"], [a for item in CPU_SIZES for a in ("--set", item)]):
        subprocess.run(
            [sys.executable, "scripts/apply_params.py", *args],
            cwd=dest,
            check=True,
            env={**os.environ, "PYTHONPATH": str(dest / "src")},
        )
    init_and_repro(dest)
    assert _tree_hashes(dest / "data/raw") == raw_before, "the pipeline changed the user's raw data"
    return dest


def test_poster_configuration_runs_on_real_file_layouts(poster):
    params = yaml.safe_load((poster / "params.yaml").read_text())
    assert params["scenario"]["source"] == "inaturalist" and params["finetune"]["backbone"] == "torchvision:resnet50"
    prepare = json.loads((poster / "reports/metrics/prepare.json").read_text())
    assert prepare["source"] == "inaturalist"
    assert prepare["pool"] == 4 * 20 + 2 * 10 and prepare["pool_off_task"] == 20
    assert prepare["reference"] == 4 * 5 and prepare["test"] == 4 * 8
    assert prepare["noisy_variant"]["added"] == round(0.3 * prepare["pool"])
    assert (poster / "data/prepared_noisy/pool_noisy.parquet").exists()
    assert len(list((poster / "data/prepared_noisy/images").glob("*.png"))) == prepare["noisy_variant"]["added"]
    embed = json.loads((poster / "reports/metrics/embed.json").read_text())
    assert embed["encoder"] == "torchvision:resnet50" and embed["dim"] == 2048
    finetune = json.loads((poster / "reports/metrics/finetune.json").read_text())
    assert finetune["backbone"] == "torchvision:resnet50" and "layer4" in str(finetune["trained_layers"])
    summary = pd.read_csv(poster / "reports/tables/finetune_summary.csv")
    assert {("original", s) for s in ("full", "random", "calibrated", "oracle")} | {
        ("noisy", "full"),
        ("noisy", "calibrated"),
    } <= set(zip(summary["pool"], summary["subset"], strict=True))
    assert summary["accuracy_mean"].between(0, 1).all()
    settings = pd.read_csv(poster / "reports/tables/compare_noise_settings.csv")
    assert set(settings["setting"]) == {"default", "gaussian_3", "flip_uniform_20", "off_task"}
    auroc = settings[settings["problem"] == "any problem"].set_index(["setting", "method"])["auroc_mean"]
    # 3-std noise on real-size photos is far from every reference image, even for random weights
    assert auroc[("gaussian_3", "kairos_feature")] > 0.8
    assert auroc[("flip_uniform_20", "kairos_class_conditional")] > auroc[("flip_uniform_20", "kairos_feature")]
    html = (poster / "reports/capstone.html").read_text()
    assert "iNaturalist 2021" in html and "was not produced" not in html
    flags = pd.read_csv(poster / "reports/audit/flags.csv")
    assert len(flags) == prepare["pool"]


def test_poster_second_repro_does_nothing(poster):
    assert "Running stage" not in _dvc(poster, "repro").stdout


def test_new_raw_data_reruns_prepare(poster):
    extra = poster / "data/raw/insects/ants/extra.jpg"
    extra.write_bytes((poster / "data/raw/insects/ants/0000.jpg").read_bytes()[:-1] + b"\xd9")
    try:
        status = json.loads(_dvc(poster, "status", "--json").stdout)
        assert "prepare" in status
    finally:
        extra.unlink()
