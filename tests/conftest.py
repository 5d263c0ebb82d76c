"""Shared fixtures: a small real scenario built once per session from Fashion-MNIST."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from kairos_curate.data.fashion_mnist import DEFAULT_DIR

ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("TQDM_DISABLE", "1")

# Property tests draw the same examples on every run: a CI result never depends on luck.
hypothesis_settings.register_profile("kairos", derandomize=True)
hypothesis_settings.load_profile("kairos")


@pytest.fixture(scope="session", autouse=True)
def _private_embedding_cache(tmp_path_factory):
    """`kairos-curate embed` caches by default under ~/.cache; tests use a throw-away folder."""
    previous = os.environ.get("KAIROS_CACHE_DIR")
    os.environ["KAIROS_CACHE_DIR"] = str(tmp_path_factory.mktemp("kairos-cache"))
    yield
    if previous is None:
        os.environ.pop("KAIROS_CACHE_DIR", None)
    else:
        os.environ["KAIROS_CACHE_DIR"] = previous


def _have_fashion_mnist() -> bool:
    return (Path(os.environ.get("KAIROS_FASHION_MNIST_DIR", DEFAULT_DIR)) / "train-images-idx3-ubyte.gz").exists()


requires_fashion_mnist = pytest.mark.skipif(
    not _have_fashion_mnist() and not os.environ.get("CI"),
    reason="Fashion-MNIST not installed (run `make setup`)",
)

#: A small ``scenario.fashion_mnist`` section (YAML types, as params.yaml holds them).
SMALL_SCENARIO = dict(
    task_classes=[0, 1, 3, 5, 7, 8],
    offtask_classes=[2, 4, 6, 9],
    offtask_labels={2: 0, 4: 3, 6: 0, 9: 7},
    pool_per_task_class=40,
    pool_per_offtask_class=20,
    reference_per_class=10,
    test_per_class=15,
    pixel_noise_fraction=0.15,
    pixel_noise_severities=[0.5, 1, 3],
    label_flip_fraction=0.1,
    seed=3,
    fashion_mnist_dir=None,
)


@pytest.fixture(scope="session")
def small_scenario():
    """A scenario of 320 pool / 60 reference / 90 test images (real Fashion-MNIST pixels)."""
    from kairos_curate.data.scenario import ScenarioConfig, build_scenario

    return build_scenario(ScenarioConfig.from_params(SMALL_SCENARIO))


def copy_project(dest: Path) -> None:
    """Copy what `dvc repro` needs (code, notebooks, pipeline, configs) into ``dest``; data/raw
    gets only its README (the user's datasets are never copied)."""
    import shutil

    for name in ("dvc.yaml", "notebooks", "src", "scripts", "configs"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dest / name)
    (dest / "data" / "raw").mkdir(parents=True)
    shutil.copy2(ROOT / "data" / "raw" / "README.md", dest / "data" / "raw" / "README.md")


@pytest.fixture
def builder_and_calls():
    """A :class:`VariantBuilder` over :func:`synthetic_scenario`, its embed calls, the scenario."""
    import numpy as np

    from kairos_curate.data.variants import VariantBuilder

    from .fake_datasets import stand_in_features, synthetic_scenario

    sc = synthetic_scenario()
    calls: list[np.ndarray] = []

    def embed(ids: np.ndarray, pixels: np.ndarray) -> np.ndarray:
        calls.append(np.asarray(ids))
        return stand_in_features(pixels)

    split = {s: sc.split_mask(s) for s in ("pool", "reference", "test")}
    feats = stand_in_features(sc.pixels)
    builder = VariantBuilder(
        sc,
        feats[split["pool"]],
        feats[split["reference"]],
        feats[split["test"]],
        embed,
        base_size=90,
        noise_fraction=0.2,
    )
    return builder, calls, sc
