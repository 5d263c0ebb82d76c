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
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from kairos_curate.data import corruptions
from kairos_curate.data.fashion_mnist import CLASS_NAMES, load_fashion_mnist
from kairos_curate.data.scenario_config import ScenarioConfig
from kairos_curate.data.sources import ArrayImageSource, FileImageSource, ImageSource, image_arrays
from kairos_curate.io import atomic_path, write_json

__all__ = [
    "PoolVariant",
    "Scenario",
    "ScenarioConfig",
    "add_pool_noise",
    "build_scenario",
    "changed_rows",
    "check_no_leakage",
    "load_pool_variant",
    "load_scenario",
    "pixel_hashes",
]

SPLITS = ("pool", "reference", "test")


@dataclass
class Scenario:
    """A built scenario: the sample table, the images and the (separate) truth table.

    Images are stored one of two ways: the offline default keeps every image in one ``uint8``
    array (``pixels``); a scenario built from real datasets keeps files (the sample table's
    ``path`` column: the user's untouched originals, or PNG copies that a corruption changed).
    :meth:`source` hides the difference from every stage.

    Attributes:
        samples: one row per image: ``id``, ``split`` (pool/reference/test), ``label`` (task
            class index, the label a user sees), ``class_name``, ``source``, and ``path`` for
            file-backed scenarios.
        pixels: uint8 ``(len(samples), H, W[, 3])``, row-aligned with ``samples`` (pool rows are
            the corrupted images), or ``None`` for a file-backed scenario.
        truth: pool rows only: ``id``, ``off_task``, ``origin`` (what the image really is: a
            Fashion-MNIST class or an iNaturalist species), ``true_label`` (task index or -1),
            ``label_flipped``, ``corruption``, ``severity``, ``noisy`` (any of the above).
        class_names: names of the task classes, indexed by ``label``.
        info: the config, counts and the pixel-std unit of the noise severities.
    """

    samples: pd.DataFrame
    pixels: np.ndarray | None
    truth: pd.DataFrame
    class_names: list[str]
    info: dict[str, Any]

    def __post_init__(self) -> None:
        if self.pixels is None and "path" not in self.samples.columns:
            raise ValueError("a scenario needs either a pixel array or a 'path' column in its sample table")

    @property
    def file_backed(self) -> bool:
        """Whether the images are files (real datasets) rather than one in-memory array."""
        return self.pixels is None

    def split_mask(self, split: str) -> np.ndarray:
        """Boolean mask of the rows of ``split``."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return (self.samples["split"] == split).to_numpy()

    def table(self, split: str) -> pd.DataFrame:
        """The sample rows of ``split`` (no ground truth)."""
        return self.samples.loc[self.split_mask(split)].reset_index(drop=True)

    def source(self, split: str) -> ArrayImageSource | FileImageSource:
        """The images of ``split`` (lazy for file-backed scenarios)."""
        mask = self.split_mask(split)
        ids = self.samples.loc[mask, "id"].to_numpy()
        if self.pixels is not None:
            return ArrayImageSource(ids, self.pixels[mask])
        return FileImageSource(ids, self.samples.loc[mask, "path"].tolist())

    def content_hashes(self, split: str, progress: bool = False) -> np.ndarray:
        """A content hash per image of ``split`` (pixel bytes, or file bytes for files)."""
        source = self.source(split)
        if isinstance(source, ArrayImageSource):
            return pixel_hashes(source.pixels)
        return file_hashes(source.paths, progress=progress, desc=f"hashing {split} files")

    def thumbnails(self, split: str, rows: Sequence[int] | np.ndarray, size: int = 96) -> list[np.ndarray]:
        """Images ``rows`` of ``split`` for display: stored pixels as they are, files as RGB
        arrays fitted into ``size`` x ``size`` (aspect kept, centred on black)."""
        source = self.source(split)
        if isinstance(source, ArrayImageSource):
            return [source.pixels[int(i)] for i in rows]
        return [fit_thumbnail(source.load_image(int(i)), size) for i in rows]

    def save(self, folder: str | Path, truth_path: str | Path) -> None:
        """Write ``samples.parquet``, ``scenario.json`` and (array scenarios) ``pixels.npz``.

        The truth table goes to its own file ``truth_path``, outside ``folder``, so that the
        pipeline's selection stages can depend on the scenario without ever reading the truth.
        Image paths inside ``folder`` (corrupted copies) are stored relative to it, so the folder
        can be moved (DVC's cache, a scratch copy); other paths stay absolute.
        """
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        samples = self.samples.copy()
        if "path" in samples.columns:
            samples["path"] = [_relative_to(p, out) for p in samples["path"]]
        with atomic_path(out / "samples.parquet") as tmp:
            samples.to_parquet(tmp, index=False)
        with atomic_path(truth_path) as tmp:
            self.truth.to_parquet(tmp, index=False)
        if self.pixels is not None:
            with atomic_path(out / "pixels.npz") as tmp, open(tmp, "wb") as handle:
                np.savez_compressed(handle, ids=self.samples["id"].to_numpy(dtype=str), pixels=self.pixels)
        storage = "files" if self.pixels is None else "array"
        write_json(out / "scenario.json", {"class_names": self.class_names, "storage": storage, **self.info})


def load_scenario(folder: str | Path, truth_path: str | Path | None = None) -> Scenario:
    """Load a scenario written by :meth:`Scenario.save`.

    The truth table is only read when ``truth_path`` is given (evaluation code); selection code
    loads without it and gets an empty table.
    """
    src = Path(folder)
    needed = [src / name for name in ("samples.parquet", "scenario.json")]
    if truth_path is not None:
        needed.append(Path(truth_path))
    for path in needed:
        if not path.exists():
            raise FileNotFoundError(f"{path} not found; run `dvc repro prepare` to build the scenario")
    info = json.loads((src / "scenario.json").read_text())
    class_names = list(info.pop("class_names"))
    storage = info.pop("storage", "array")
    samples = pd.read_parquet(src / "samples.parquet")
    pixels = None
    if storage == "array":
        if not (src / "pixels.npz").exists():
            raise FileNotFoundError(f"{src / 'pixels.npz'} not found; run `dvc repro prepare` to build the scenario")
        with np.load(src / "pixels.npz", allow_pickle=False) as data:
            ids, pixels = data["ids"].astype(str), data["pixels"]
        if not np.array_equal(ids, samples["id"].to_numpy(dtype=str)):
            raise ValueError(f"{src}: pixels.npz and samples.parquet are out of sync; rerun `dvc repro prepare`")
    else:
        samples["path"] = [_absolute(p, src) for p in samples["path"]]
    truth = pd.read_parquet(truth_path) if truth_path is not None else pd.DataFrame()
    return Scenario(samples=samples, pixels=pixels, truth=truth, class_names=class_names, info=info)


def _relative_to(path: str, folder: Path) -> str:
    p = Path(path)
    try:
        return p.resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        return str(p)


def _absolute(path: str, folder: Path) -> str:
    p = Path(path)
    return str(p if p.is_absolute() else folder / p)


def fit_thumbnail(image: Image.Image, size: int) -> np.ndarray:
    """``image`` shrunk to fit ``size`` x ``size`` (aspect kept), centred on black, as RGB uint8."""
    img = image.convert("RGB")
    img.thumbnail((size, size))
    canvas = Image.new("RGB", (size, size))
    canvas.paste(img, ((size - img.width) // 2, (size - img.height) // 2))
    return np.asarray(canvas, dtype=np.uint8)


def file_hashes(paths: Sequence[str | Path], progress: bool = False, desc: str = "hashing files") -> np.ndarray:
    """SHA-1 of each file's bytes (exact copies of an image share it whatever their names)."""
    from tqdm import tqdm

    return np.asarray(
        [
            hashlib.sha1(Path(p).read_bytes()).hexdigest()
            for p in tqdm(paths, desc=desc, disable=not progress, unit="file")
        ]
    )


def write_png(image: np.ndarray, folder: Path, sample_id: str) -> str:
    """Write ``image`` losslessly as ``folder/<safe id>.png`` (atomically); return the path."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", sample_id)[:120]
    digest = hashlib.sha1(sample_id.encode()).hexdigest()[:8]  # keeps ids that differ only in symbols apart
    path = folder / f"{name}-{digest}.png"
    with atomic_path(path) as tmp:
        # Level 1: noisy images barely compress, and level 6 took 2.5x as long for 10% less disk.
        Image.fromarray(np.asarray(image, dtype=np.uint8)).save(tmp, format="PNG", compress_level=1)
    return str(path)


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
        raise ValueError(
            f"{what}: asked for {n} images but only {candidates.size} are available; "
            "lower the per-class sizes in params.yaml"
        )
    return rng.permutation(candidates)[:n]


def inject_pool_problems(
    off_task: np.ndarray,
    shown_label: np.ndarray,
    n_classes: int,
    noise_fraction: float,
    severities: Sequence[float],
    flip_fraction: float,
    rng: np.random.Generator,
    add_noise: Callable[[np.ndarray, float], np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Choose which pool images get Gaussian pixel noise and which get a flipped label.

    ``noise_fraction`` of the pool gets noise, split evenly over ``severities``;
    ``add_noise(rows, severity)`` applies it (to an array or to files) and returns the rows it
    changed. Then ``flip_fraction`` of the on-task images *without* pixel noise get a uniformly
    flipped label, so each pool image has at most one kind of problem and detection can be scored
    per kind.

    Returns:
        ``(shown_label, corruption, severity, label_flipped)`` per pool row.
    """
    n = off_task.size
    corruption = np.full(n, "none", dtype=object)
    severity = np.zeros(n)
    noisy_rows = corruptions.choose_indices(n, noise_fraction, rng)
    for sev, rows in zip(severities, np.array_split(rng.permutation(noisy_rows), len(severities)), strict=False):
        if rows.size == 0:
            continue
        changed = add_noise(np.sort(rows), float(sev))
        corruption[changed] = "gaussian_noise"
        severity[changed] = sev
    flip_candidates = np.flatnonzero(~off_task & (corruption == "none"))
    n_flip = round(flip_fraction * int((~off_task).sum()))
    flip_rows = np.sort(_take(rng, flip_candidates, min(n_flip, flip_candidates.size), "label flips"))
    flips = corruptions.flip_labels(shown_label, flip_rows, classes=list(range(n_classes)), mode="uniform", rng=rng)
    label_flipped = np.zeros(n, dtype=bool)
    label_flipped[flips.indices] = True
    return np.asarray(flips.labels, dtype=np.int64), corruption, severity, label_flipped


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
        chosen = _take(
            rng, cand, config.reference_per_class + config.pool_per_task_class, f"class {CLASS_NAMES[c]!r} (train)"
        )
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
        [
            task_index[config.offtask_labels[int(c)]] if o else task_index[int(c)]
            for c, o in zip(fm_class, off_task, strict=True)
        ],
        dtype=np.int64,
    )

    pool_pixels = train.pixels[pool]
    unit_std = corruptions.pixel_std(pool_pixels)  # severity unit: std of the clean pool's pixels

    def add_noise(rows: np.ndarray, sev: float) -> np.ndarray:
        nonlocal pool_pixels
        result = corruptions.gaussian_noise(pool_pixels, rows, severity=sev, rng=rng, unit_std=unit_std)
        pool_pixels = result.images
        return result.indices

    problems = inject_pool_problems(
        off_task,
        shown_label,
        len(task_index),
        config.pixel_noise_fraction,
        config.pixel_noise_severities,
        config.label_flip_fraction,
        rng,
        add_noise,
    )
    shown_label, corruption, severity, label_flipped = problems

    class_names = [CLASS_NAMES[c] for c in config.task_classes]
    frames = []
    for split, idx, src, labels in (
        ("pool", pool, "fashion-mnist:train", shown_label),
        (
            "reference",
            reference,
            "fashion-mnist:train",
            np.asarray([task_index[int(c)] for c in train.labels[reference]]),
        ),
        ("test", test, "fashion-mnist:t10k", np.asarray([task_index[int(c)] for c in t10k.labels[test]])),
    ):
        prefix = "fmnist-train" if src.endswith("train") else "fmnist-t10k"
        frames.append(
            pd.DataFrame(
                {
                    "id": [f"{prefix}-{i:05d}" for i in idx],
                    "split": split,
                    "label": labels.astype(np.int64),
                    "class_name": [class_names[label] for label in labels],
                    "source": src,
                }
            )
        )
    samples = pd.concat(frames, ignore_index=True)
    pixels = np.concatenate([pool_pixels, train.pixels[reference], t10k.pixels[test]])
    truth = pd.DataFrame(
        {
            "id": samples.loc[samples["split"] == "pool", "id"].to_numpy(),
            "off_task": off_task,
            "origin": [CLASS_NAMES[c] for c in fm_class],
            "true_label": true_label.astype(np.int64),
            "label_flipped": label_flipped,
            "corruption": corruption.astype(str),
            "severity": severity,
        }
    )
    truth["noisy"] = truth["off_task"] | truth["label_flipped"] | (truth["corruption"] != "none")
    info = {
        "config": {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in asdict(config).items()},
        "severity_unit_pixel_std": unit_std,
        "counts": {
            "pool": int(pool.size),
            "reference": int(reference.size),
            "test": int(test.size),
            "pool_off_task": int(off_task.sum()),
            "pool_pixel_noise": int((corruption != "none").sum()),
            "pool_label_flipped": int(label_flipped.sum()),
            "pool_noisy": int(truth["noisy"].sum()),
        },
    }
    return Scenario(samples=samples, pixels=pixels, truth=truth, class_names=class_names, info=info)


@dataclass
class PoolVariant:
    """The pool with extra pixel noise: same ids and labels, some images changed.

    Used for the poster's "robustness to noise" experiments: curation is re-run on this pool
    and compared with training on it in full or at random. Images are a ``uint8`` array
    (``pixels``) for array scenarios, or file ``paths`` (the pool's own files, PNG copies for
    the changed images) for file-backed ones.
    """

    ids: np.ndarray
    pixels: np.ndarray | None
    truth: pd.DataFrame
    info: dict[str, Any]
    paths: list[str] | None = None

    def source(self) -> ArrayImageSource | FileImageSource:
        """The variant's images."""
        if self.pixels is not None:
            return ArrayImageSource(self.ids, self.pixels)
        if self.paths is None:
            raise ValueError("a pool variant needs pixels or paths")
        return FileImageSource(self.ids, self.paths)

    def save(self, folder: str | Path, truth_path: str | Path) -> None:
        """Write ``folder/pool_noisy.npz`` (pixels with ids) or ``folder/pool_noisy.parquet``
        (ids and paths; paths inside ``folder`` relative to it), and the truth, atomically."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        if self.pixels is not None:
            with atomic_path(out / VARIANT_ARRAY) as tmp, open(tmp, "wb") as handle:
                np.savez_compressed(handle, ids=self.ids, pixels=self.pixels)
        else:
            assert self.paths is not None
            table = pd.DataFrame({"id": self.ids, "path": [_relative_to(p, out) for p in self.paths]})
            with atomic_path(out / VARIANT_TABLE) as tmp:
                table.to_parquet(tmp, index=False)
        with atomic_path(truth_path) as tmp:
            self.truth.to_parquet(tmp, index=False)


#: File names of a saved :class:`PoolVariant` inside its folder.
VARIANT_ARRAY, VARIANT_TABLE = "pool_noisy.npz", "pool_noisy.parquet"


def add_pool_noise(
    scenario: Scenario, fraction: float, severities: Sequence[float], seed: int, image_dir: str | Path | None = None
) -> PoolVariant:
    """Add Gaussian pixel noise to ``fraction`` of the pool images that have no pixel noise yet.

    The severities are in the scenario's unit (the clean pool's pixel std) and split evenly
    over the chosen images. Needs the scenario's truth table (to pick images without noise and
    to record what was done); the returned truth has the same columns, updated. For a
    file-backed scenario the changed images are written as PNG files into ``image_dir``.
    """
    if scenario.truth.empty:
        raise ValueError("add_pool_noise needs the scenario's truth table (load_scenario(..., truth_path))")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"noise fraction must be in [0, 1], got {fraction}")
    if fraction > 0 and not severities:
        raise ValueError("at least one noise severity is needed")
    if scenario.file_backed and image_dir is None:
        raise ValueError("add_pool_noise on a file-backed scenario needs image_dir for the changed images")
    rng = np.random.default_rng(seed)
    pool = scenario.table("pool")[["id"]].merge(scenario.truth, on="id", how="left")
    source = scenario.source("pool")
    candidates = np.flatnonzero((pool["corruption"] == "none").to_numpy())
    n = round(fraction * pool.shape[0])
    chosen = _take(rng, candidates, min(n, candidates.size), "extra pool noise")
    rows = np.sort(chosen)
    truth = pool.copy()
    unit = float(scenario.info["severity_unit_pixel_std"])
    ids = pool["id"].to_numpy(dtype=str)
    file_backed = isinstance(source, FileImageSource)
    folder = Path(image_dir) if image_dir is not None else Path(".")
    if isinstance(source, FileImageSource):
        folder.mkdir(parents=True, exist_ok=True)
        paths = [str(p) for p in source.paths]
    else:
        pixels = source.pixels.copy()
    for sev, chunk in zip(severities, np.array_split(rng.permutation(chosen), len(severities)), strict=False):
        if chunk.size == 0:
            continue
        if file_backed:

            def write(row: int, image: np.ndarray) -> None:
                paths[row] = write_png(image, folder, ids[row])

            changed = noise_files(source, np.sort(chunk), float(sev), unit, rng, write)
        else:
            result = corruptions.gaussian_noise(pixels, np.sort(chunk), severity=float(sev), rng=rng, unit_std=unit)
            pixels, changed = result.images, result.indices
        truth.loc[changed, "corruption"] = "gaussian_noise"
        truth.loc[changed, "severity"] = float(sev)
    truth["noisy"] = truth["off_task"] | truth["label_flipped"] | (truth["corruption"] != "none")
    info = {
        "fraction": fraction,
        "severities": list(map(float, severities)),
        "seed": seed,
        "added": int(rows.size),
        "pool_noisy": int(truth["noisy"].sum()),
    }
    if file_backed:
        return PoolVariant(ids=ids, pixels=None, truth=truth, info=info, paths=paths)
    return PoolVariant(ids=ids, pixels=pixels, truth=truth, info=info)


def noise_files(
    source: ImageSource,
    rows: np.ndarray,
    severity: float,
    unit_std: float,
    rng: np.random.Generator,
    write: Callable[[int, np.ndarray], None],
    chunk: int = 128,
) -> np.ndarray:
    """Gaussian noise on the images ``rows`` (sorted) of a file source, ``chunk`` decoded at a time.

    Each noisy image is handed to ``write(row, image)`` and dropped, so memory stays bounded on
    pools of large photos. Rows are processed in ascending order with one generator, so the
    result does not depend on ``chunk``. Returns the rows changed.
    """
    changed: list[np.ndarray] = []
    for start in range(0, rows.size, chunk):
        part = rows[start : start + chunk]
        images, hit = corruptions.corrupt_each(
            "gaussian_noise",
            image_arrays(source, part),
            np.arange(part.size),
            rng,
            severity=severity,
            unit_std=unit_std,
        )
        for j in hit:
            write(int(part[j]), images[j])
        changed.append(part[hit])
    return np.concatenate(changed) if changed else np.zeros(0, dtype=np.int64)


def load_pool_variant(folder: str | Path, truth_path: str | Path | None = None) -> PoolVariant:
    """Load a :class:`PoolVariant` saved into ``folder`` (truth only when ``truth_path`` is given)."""
    src = Path(folder)
    truth = pd.read_parquet(truth_path) if truth_path is not None else pd.DataFrame()
    if (src / VARIANT_ARRAY).exists():
        with np.load(src / VARIANT_ARRAY, allow_pickle=False) as data:
            ids, pixels = data["ids"].astype(str), data["pixels"]
        return PoolVariant(ids=ids, pixels=pixels, truth=truth, info={})
    if (src / VARIANT_TABLE).exists():
        table = pd.read_parquet(src / VARIANT_TABLE)
        return PoolVariant(
            ids=table["id"].to_numpy(dtype=str),
            pixels=None,
            truth=truth,
            info={},
            paths=[_absolute(p, src) for p in table["path"]],
        )
    raise FileNotFoundError(
        f"{src / VARIANT_ARRAY} (or {VARIANT_TABLE}) not found; run `dvc repro prepare` to build the noisy pool"
    )


def class_counts(scenario: Scenario) -> pd.DataFrame:
    """Shown-label counts per task class and split (what a user sees, no ground truth)."""
    counts = scenario.samples.groupby(["class_name", "split"]).size().unstack(fill_value=0)
    return counts.reindex(index=scenario.class_names, columns=list(SPLITS), fill_value=0)


def ids_of(scenario: Scenario, split: str) -> Sequence[str]:
    """Ids of ``split`` in row order."""
    return scenario.table(split)["id"].tolist()


def check_no_leakage(scenario: Scenario) -> None:
    """Raise if two of pool, reference and test share an id or an image (by content hash)."""
    pairs = (("test", "pool"), ("test", "reference"), ("reference", "pool"))
    ids = {split: set(scenario.table(split)["id"]) for split in ("pool", "reference", "test")}
    for a, b in pairs:
        if ids[a] & ids[b]:
            raise RuntimeError(
                f"leakage: {len(ids[a] & ids[b])} ids in both {a} and {b}, e.g. {sorted(ids[a] & ids[b])[:3]}"
            )
    hashes = {split: set(scenario.content_hashes(split).tolist()) for split in ("pool", "reference", "test")}
    for a, b in pairs:
        if hashes[a] & hashes[b]:
            raise RuntimeError(
                f"leakage: {len(hashes[a] & hashes[b])} image(s) appear (by content hash) in both {a} and {b}"
            )


def changed_rows(pool: ImageSource, variant: ImageSource) -> np.ndarray:
    """Rows whose image differs between the pool and a variant of it (same ids, same order)."""
    if isinstance(pool, ArrayImageSource) and isinstance(variant, ArrayImageSource):
        return np.flatnonzero((variant.pixels != pool.pixels).reshape(len(pool), -1).any(axis=1))
    if isinstance(pool, FileImageSource) and isinstance(variant, FileImageSource):
        # A variant points unchanged rows at the pool's own files; compare bytes only where not.
        return np.asarray(
            [
                i
                for i, (a, b) in enumerate(zip(pool.paths, variant.paths, strict=True))
                if a != b and pool.content_hash(i) != variant.content_hash(i)
            ],
            dtype=np.int64,
        )
    return np.asarray([i for i in range(len(pool)) if pool.content_hash(i) != variant.content_hash(i)], dtype=np.int64)
