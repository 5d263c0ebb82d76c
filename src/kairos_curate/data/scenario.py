"""The offline default scenario: a noisy pool, a clean reference and a clean test set.

It mirrors the poster's setup on Fashion-MNIST:

* some classes form the task (the poster's insect categories), the rest are *off-task* (the
  poster's other iNaturalist species);
* the **pool** holds task images plus off-task images that carry a plausible but wrong task label
  (as scraped or weakly labelled data does), a fraction of pool images get pixel noise and a
  fraction get their label flipped;
* the **reference** is a small clean set per task class, sampled without replacement from images
  that never enter the pool;
* the **test** set is clean, comes from the other Fashion-MNIST split, and shares no image
  (by index or by pixel hash) with the pool or the reference.

What was done to each pool image is kept in a separate *truth* table that selection code never
receives; it exists only to score detection and to build the labelled oracle rows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kairos_curate.config import none_if_default, parse_list, parse_map
from kairos_curate.data import corruptions
from kairos_curate.data.fashion_mnist import CLASS_NAMES, load_fashion_mnist
from kairos_curate.data.sources import ArrayImageSource
from kairos_curate.io import atomic_path, write_json

__all__ = [
    "PoolVariant",
    "Scenario",
    "ScenarioConfig",
    "add_pool_noise",
    "build_scenario",
    "load_pool_variant",
    "load_scenario",
    "pixel_hashes",
]

SPLITS = ("pool", "reference", "test")


@dataclass(frozen=True)
class ScenarioConfig:
    """Parameters of the default scenario (the ``scenario`` section of ``params.yaml``).

    Attributes:
        task_classes: Fashion-MNIST class indices that form the task.
        offtask_classes: classes whose images enter the pool as off-task samples.
        offtask_labels: for each off-task class, the task class whose label it carries in the
            pool (a wrong but plausible label). Keys and values are Fashion-MNIST indices.
        pool_per_task_class: pool images drawn per task class.
        pool_per_offtask_class: pool images drawn per off-task class.
        reference_per_class: clean reference images per task class.
        test_per_class: clean test images per task class (from the ``t10k`` split).
        pixel_noise_fraction: fraction of pool images that get Gaussian pixel noise.
        pixel_noise_severities: noise levels in units of the clean pool's pixel std; the noisy
            images are split evenly across them.
        label_flip_fraction: fraction of the pool's on-task images whose label is flipped
            uniformly to another task class (drawn among images without pixel noise).
        seed: seed of every random choice in the scenario.
        fashion_mnist_dir: folder with the IDX files (``None``: the Debian package's folder).
    """

    task_classes: tuple[int, ...] = (0, 1, 3, 5, 7, 8)
    offtask_classes: tuple[int, ...] = (2, 4, 6, 9)
    offtask_labels: Mapping[int, int] = field(default_factory=lambda: {2: 0, 4: 3, 6: 0, 9: 7})
    pool_per_task_class: int = 500
    pool_per_offtask_class: int = 300
    reference_per_class: int = 40
    test_per_class: int = 300
    pixel_noise_fraction: float = 0.1
    pixel_noise_severities: tuple[float, ...] = (0.5, 1.0, 3.0)
    label_flip_fraction: float = 0.1
    seed: int = 0
    fashion_mnist_dir: str | None = None

    def __post_init__(self) -> None:
        task, off = set(self.task_classes), set(self.offtask_classes)
        if len(task) < 2:
            raise ValueError("scenario.task_classes needs at least two classes")
        if task & off:
            raise ValueError(f"classes {sorted(task & off)} are both task and off-task")
        if not task.union(off) <= set(range(len(CLASS_NAMES))):
            raise ValueError(f"Fashion-MNIST classes are 0..{len(CLASS_NAMES) - 1}")
        offtask_labels = {int(k): int(v) for k, v in self.offtask_labels.items()}
        missing = off - set(offtask_labels)
        if missing:
            raise ValueError(f"scenario.offtask_labels has no task label for off-task classes {sorted(missing)}")
        if not set(offtask_labels.values()) <= task:
            raise ValueError("scenario.offtask_labels must map to task classes")
        object.__setattr__(self, "offtask_labels", offtask_labels)
        for name in ("pool_per_task_class", "reference_per_class", "test_per_class"):
            if getattr(self, name) < 1:
                raise ValueError(f"scenario.{name} must be >= 1")
        if self.pool_per_offtask_class < 0:
            raise ValueError("scenario.pool_per_offtask_class must be >= 0")
        for name in ("pixel_noise_fraction", "label_flip_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"scenario.{name} must be in [0, 1]")
        if self.pixel_noise_fraction > 0 and not self.pixel_noise_severities:
            raise ValueError("scenario.pixel_noise_severities is empty but pixel_noise_fraction > 0")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ScenarioConfig:
        """Build from the ``scenario`` section of ``params.yaml`` (or the notebook's parameters).

        Lists may be comma-separated strings (``"0,1,3"``), maps ``"2:0,4:3"``; unknown keys
        are rejected so that a typo in ``params.yaml`` does not pass silently.
        """
        known = set(cls.__dataclass_fields__)
        unknown = set(params) - known
        if unknown:
            raise ValueError(f"unknown scenario parameter(s) {sorted(unknown)}; known: {sorted(known)}")
        kwargs = dict(params)
        for name in ("task_classes", "offtask_classes"):
            if name in kwargs:
                kwargs[name] = tuple(parse_list(kwargs[name], int, f"scenario.{name}"))
        if "pixel_noise_severities" in kwargs:
            kwargs["pixel_noise_severities"] = tuple(
                parse_list(kwargs["pixel_noise_severities"], float, "scenario.pixel_noise_severities"))
        if "offtask_labels" in kwargs:
            kwargs["offtask_labels"] = parse_map(kwargs["offtask_labels"], int, int, "scenario.offtask_labels")
        if "fashion_mnist_dir" in kwargs:
            kwargs["fashion_mnist_dir"] = none_if_default(kwargs["fashion_mnist_dir"])
        return cls(**kwargs)


@dataclass
class Scenario:
    """A built scenario: the sample table, the pixels and the (separate) truth table.

    Attributes:
        samples: one row per image: ``id``, ``split`` (pool/reference/test), ``label`` (task
            class index, the label a user sees), ``class_name``, ``source``.
        pixels: uint8 ``(len(samples), 28, 28)``, row-aligned with ``samples`` (pool rows are
            the corrupted images).
        truth: pool rows only: ``id``, ``off_task``, ``true_label`` (task index or -1),
            ``label_flipped``, ``corruption``, ``severity``, ``noisy`` (any of the above).
        class_names: names of the task classes, indexed by ``label``.
        info: the config, counts and the pixel-std unit of the noise severities.
    """

    samples: pd.DataFrame
    pixels: np.ndarray
    truth: pd.DataFrame
    class_names: list[str]
    info: dict[str, Any]

    def split_mask(self, split: str) -> np.ndarray:
        """Boolean mask of the rows of ``split``."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return (self.samples["split"] == split).to_numpy()

    def table(self, split: str) -> pd.DataFrame:
        """The sample rows of ``split`` (no ground truth)."""
        return self.samples.loc[self.split_mask(split)].reset_index(drop=True)

    def source(self, split: str) -> ArrayImageSource:
        """The images of ``split`` as an :class:`ArrayImageSource`."""
        mask = self.split_mask(split)
        return ArrayImageSource(self.samples.loc[mask, "id"].to_numpy(), self.pixels[mask])

    def save(self, folder: str | Path, truth_path: str | Path) -> None:
        """Write ``samples.parquet``, ``pixels.npz`` and ``scenario.json`` to ``folder``.

        The truth table goes to its own file ``truth_path``, outside ``folder``, so that the
        pipeline's selection stages can depend on the scenario without ever reading the truth.
        """
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "samples.parquet") as tmp:
            self.samples.to_parquet(tmp, index=False)
        with atomic_path(truth_path) as tmp:
            self.truth.to_parquet(tmp, index=False)
        with atomic_path(out / "pixels.npz") as tmp, open(tmp, "wb") as handle:
            np.savez_compressed(handle, ids=self.samples["id"].to_numpy(dtype=str), pixels=self.pixels)
        write_json(out / "scenario.json", {"class_names": self.class_names, **self.info})


def load_scenario(folder: str | Path, truth_path: str | Path | None = None) -> Scenario:
    """Load a scenario written by :meth:`Scenario.save`.

    The truth table is only read when ``truth_path`` is given (evaluation code); selection code
    loads without it and gets an empty table.
    """
    src = Path(folder)
    needed = [src / name for name in ("samples.parquet", "pixels.npz", "scenario.json")]
    if truth_path is not None:
        needed.append(Path(truth_path))
    for path in needed:
        if not path.exists():
            raise FileNotFoundError(f"{path} not found; run `dvc repro prepare` to build the scenario")
    samples = pd.read_parquet(src / "samples.parquet")
    with np.load(src / "pixels.npz", allow_pickle=False) as data:
        ids, pixels = data["ids"].astype(str), data["pixels"]
    if not np.array_equal(ids, samples["id"].to_numpy(dtype=str)):
        raise ValueError(f"{src}: pixels.npz and samples.parquet are out of sync; rerun `dvc repro prepare`")
    info = json.loads((src / "scenario.json").read_text())
    class_names = list(info.pop("class_names"))
    truth = pd.read_parquet(truth_path) if truth_path is not None else pd.DataFrame()
    return Scenario(samples=samples, pixels=pixels, truth=truth, class_names=class_names, info=info)


def pixel_hashes(pixels: np.ndarray) -> np.ndarray:
    """SHA-1 of each image's bytes (used to keep splits disjoint by content, not only by id)."""
    return np.asarray([hashlib.sha1(np.ascontiguousarray(p).tobytes()).hexdigest() for p in pixels])


def _unique_content(hashes: np.ndarray, forbidden: set[str]) -> np.ndarray:
    """Indices whose hash is the first of its kind and not in ``forbidden``."""
    seen: set[str] = set(forbidden)
    keep = []
    for i, h in enumerate(hashes):
        if h not in seen:
            keep.append(i)
            seen.add(h)
    return np.asarray(keep, dtype=np.int64)


def _take(rng: np.random.Generator, candidates: np.ndarray, n: int, what: str) -> np.ndarray:
    if n > candidates.size:
        raise ValueError(f"{what}: asked for {n} images but only {candidates.size} are available; "
                         "lower the per-class sizes in params.yaml")
    return rng.permutation(candidates)[:n]


def build_scenario(config: ScenarioConfig) -> Scenario:
    """Build the default scenario from Fashion-MNIST (see the module docstring)."""
    rng = np.random.default_rng(config.seed)
    train = load_fashion_mnist("train", config.fashion_mnist_dir)
    t10k = load_fashion_mnist("t10k", config.fashion_mnist_dir)
    task_index = {c: i for i, c in enumerate(config.task_classes)}

    # Pool and reference come from the train split, test from t10k; any t10k image whose pixels
    # also occur in train is dropped, and only the first copy of a repeated train image is used.
    train_hashes = pixel_hashes(train.pixels)
    t10k_hashes = pixel_hashes(t10k.pixels)
    train_ok = _unique_content(train_hashes, set())
    test_ok = _unique_content(t10k_hashes, set(train_hashes.tolist()))

    pool_idx: list[np.ndarray] = []
    ref_idx: list[np.ndarray] = []
    test_idx: list[np.ndarray] = []
    for c in config.task_classes:
        cand = train_ok[train.labels[train_ok] == c]
        chosen = _take(rng, cand, config.reference_per_class + config.pool_per_task_class,
                       f"class {CLASS_NAMES[c]!r} (train)")
        ref_idx.append(chosen[: config.reference_per_class])
        pool_idx.append(chosen[config.reference_per_class :])
        test_cand = test_ok[t10k.labels[test_ok] == c]
        test_idx.append(_take(rng, test_cand, config.test_per_class, f"class {CLASS_NAMES[c]!r} (test)"))
    for c in config.offtask_classes:
        cand = train_ok[train.labels[train_ok] == c]
        pool_idx.append(_take(rng, cand, config.pool_per_offtask_class, f"off-task class {CLASS_NAMES[c]!r}"))

    pool = np.sort(np.concatenate(pool_idx))
    reference = np.sort(np.concatenate(ref_idx))
    test = np.sort(np.concatenate(test_idx))

    fm_class = train.labels[pool]
    off_task = np.isin(fm_class, config.offtask_classes)
    true_label = np.where(off_task, -1, [task_index.get(int(c), -1) for c in fm_class])
    shown_label = np.asarray(
        [task_index[config.offtask_labels[int(c)]] if o else task_index[int(c)]
         for c, o in zip(fm_class, off_task, strict=True)], dtype=np.int64)

    pool_pixels = train.pixels[pool]
    unit_std = corruptions.pixel_std(pool_pixels)  # severity unit: std of the clean pool's pixels
    corruption = np.full(pool.size, "none", dtype=object)
    severity = np.zeros(pool.size)
    noisy_rows = corruptions.choose_indices(pool.size, config.pixel_noise_fraction, rng)
    for sev, rows in zip(config.pixel_noise_severities,
                         np.array_split(rng.permutation(noisy_rows), len(config.pixel_noise_severities)),
                         strict=False):
        if rows.size == 0:
            continue
        result = corruptions.gaussian_noise(pool_pixels, np.sort(rows), severity=float(sev), rng=rng,
                                            unit_std=unit_std)
        pool_pixels = result.images
        corruption[result.indices] = result.kind
        severity[result.indices] = sev

    # Label flips go to on-task images without pixel noise, so each pool image has at most one
    # kind of ground-truth problem and detection can be scored per kind.
    flip_candidates = np.flatnonzero(~off_task & (corruption == "none"))
    n_flip = round(config.label_flip_fraction * int((~off_task).sum()))
    flip_rows = np.sort(_take(rng, flip_candidates, min(n_flip, flip_candidates.size), "label flips"))
    flips = corruptions.flip_labels(shown_label, flip_rows, classes=list(range(len(task_index))),
                                    mode="uniform", rng=rng)
    shown_label = flips.labels
    label_flipped = np.zeros(pool.size, dtype=bool)
    label_flipped[flips.indices] = True

    class_names = [CLASS_NAMES[c] for c in config.task_classes]
    frames = []
    for split, idx, src, labels in (
        ("pool", pool, "fashion-mnist:train", shown_label),
        ("reference", reference, "fashion-mnist:train", np.asarray([task_index[int(c)] for c in train.labels[reference]])),
        ("test", test, "fashion-mnist:t10k", np.asarray([task_index[int(c)] for c in t10k.labels[test]])),
    ):
        prefix = "fmnist-train" if src.endswith("train") else "fmnist-t10k"
        frames.append(pd.DataFrame({
            "id": [f"{prefix}-{i:05d}" for i in idx],
            "split": split,
            "label": labels.astype(np.int64),
            "class_name": [class_names[label] for label in labels],
            "source": src,
        }))
    samples = pd.concat(frames, ignore_index=True)
    pixels = np.concatenate([pool_pixels, train.pixels[reference], t10k.pixels[test]])
    truth = pd.DataFrame({
        "id": samples.loc[samples["split"] == "pool", "id"].to_numpy(),
        "off_task": off_task,
        "fashion_class": [CLASS_NAMES[c] for c in fm_class],
        "true_label": true_label.astype(np.int64),
        "label_flipped": label_flipped,
        "corruption": corruption.astype(str),
        "severity": severity,
    })
    truth["noisy"] = truth["off_task"] | truth["label_flipped"] | (truth["corruption"] != "none")
    info = {
        "config": {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in asdict(config).items()},
        "severity_unit_pixel_std": unit_std,
        "counts": {
            "pool": int(pool.size), "reference": int(reference.size), "test": int(test.size),
            "pool_off_task": int(off_task.sum()), "pool_pixel_noise": int((corruption != "none").sum()),
            "pool_label_flipped": int(label_flipped.sum()), "pool_noisy": int(truth["noisy"].sum()),
        },
    }
    return Scenario(samples=samples, pixels=pixels, truth=truth, class_names=class_names, info=info)


@dataclass
class PoolVariant:
    """The pool with extra pixel noise: same ids and labels, some images changed.

    Used for the poster's "robustness to noise" experiments: curation is re-run on this pool
    and compared with training on it in full or at random.
    """

    ids: np.ndarray
    pixels: np.ndarray
    truth: pd.DataFrame
    info: dict[str, Any]

    def source(self) -> ArrayImageSource:
        """The variant's images."""
        return ArrayImageSource(self.ids, self.pixels)

    def save(self, pixels_path: str | Path, truth_path: str | Path) -> None:
        """Write the pixels (``.npz`` with ids) and the variant's truth table atomically."""
        with atomic_path(pixels_path) as tmp, open(tmp, "wb") as handle:
            np.savez_compressed(handle, ids=self.ids, pixels=self.pixels)
        with atomic_path(truth_path) as tmp:
            self.truth.to_parquet(tmp, index=False)


def add_pool_noise(scenario: Scenario, fraction: float, severities: Sequence[float], seed: int) -> PoolVariant:
    """Add Gaussian pixel noise to ``fraction`` of the pool images that have no pixel noise yet.

    The severities are in the scenario's unit (the clean pool's pixel std) and split evenly
    over the chosen images. Needs the scenario's truth table (to pick images without noise and
    to record what was done); the returned truth has the same columns, updated.
    """
    if scenario.truth.empty:
        raise ValueError("add_pool_noise needs the scenario's truth table (load_scenario(..., truth_path))")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"noise fraction must be in [0, 1], got {fraction}")
    if fraction > 0 and not severities:
        raise ValueError("at least one noise severity is needed")
    rng = np.random.default_rng(seed)
    pool = scenario.table("pool")[["id"]].merge(scenario.truth, on="id", how="left")
    pixels = scenario.pixels[scenario.split_mask("pool")]
    candidates = np.flatnonzero((pool["corruption"] == "none").to_numpy())
    n = round(fraction * pool.shape[0])
    rows = _take(rng, candidates, min(n, candidates.size), "extra pool noise")
    truth = pool.copy()
    unit = float(scenario.info["severity_unit_pixel_std"])
    for sev, chunk in zip(severities, np.array_split(rng.permutation(rows), len(severities)), strict=False):
        if chunk.size == 0:
            continue
        result = corruptions.gaussian_noise(pixels, np.sort(chunk), severity=float(sev), rng=rng, unit_std=unit)
        pixels = result.images
        truth.loc[result.indices, "corruption"] = result.kind
        truth.loc[result.indices, "severity"] = float(sev)
    truth["noisy"] = truth["off_task"] | truth["label_flipped"] | (truth["corruption"] != "none")
    info = {"fraction": fraction, "severities": list(map(float, severities)), "seed": seed,
            "added": int(rows.size), "pool_noisy": int(truth["noisy"].sum())}
    return PoolVariant(ids=pool["id"].to_numpy(dtype=str), pixels=pixels, truth=truth, info=info)


def load_pool_variant(pixels_path: str | Path, truth_path: str | Path | None = None) -> PoolVariant:
    """Load a :class:`PoolVariant` (truth only when ``truth_path`` is given)."""
    path = Path(pixels_path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; run `dvc repro prepare` to build the noisy pool")
    with np.load(path, allow_pickle=False) as data:
        ids, pixels = data["ids"].astype(str), data["pixels"]
    truth = pd.read_parquet(truth_path) if truth_path is not None else pd.DataFrame()
    return PoolVariant(ids=ids, pixels=pixels, truth=truth, info={})


def class_counts(scenario: Scenario) -> pd.DataFrame:
    """Shown-label counts per task class and split (what a user sees, no ground truth)."""
    counts = scenario.samples.groupby(["class_name", "split"]).size().unstack(fill_value=0)
    return counts.reindex(index=scenario.class_names, columns=list(SPLITS), fill_value=0)


def ids_of(scenario: Scenario, split: str) -> Sequence[str]:
    """Ids of ``split`` in row order."""
    return scenario.table(split)["id"].tolist()
