"""The poster's scenario on real data: an iNaturalist 2021 pool against the Insects reference.

``scenario.source: inaturalist`` in ``params.yaml`` builds the same kind of :class:`Scenario`
as the offline default, from files:

* **reference** and **test**: the Insects Image Dataset (one folder per class; the folders
  define the task classes). Exact copies (same file bytes) are kept once; then, per class,
  ``reference_per_class`` images go to the reference and ``test_per_class`` others to the
  test set, sampled without replacement, so the two never share an image (by id or content).
* **pool**: iNaturalist (the official folder layout, or an exported table). Species map to the
  task categories through the taxonomy YAML; species of no task category, or of a category the
  reference lacks, are *off-task*. An off-task image either enters the pool with a uniformly
  drawn task label (``offtask_label: random`` - what a weak labeller or a scraper gives; the
  truth table remembers that it is off-task) or is left out (``drop``). Pool images whose file
  bytes equal a reference or test image are dropped (and counted), so no evaluation image
  leaks into training.
* optional **pixel noise** and **label flips** on the pool, as in the default; a corrupted
  image is written as a PNG copy under the prepared folder, the user's files are never touched.

The sample table stores every image's content hash (SHA-1 of the file), so that a changed image
under ``data/raw`` changes the prepared output and DVC reruns the stages after ``prepare``.

Relative dataset paths are resolved against the project root.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kairos_curate.data import corruptions
from kairos_curate.data.adapters import LoadedDataset, class_overlap, load_taxonomy
from kairos_curate.data.inaturalist import load_inaturalist, load_inaturalist_table
from kairos_curate.data.insects import load_insects
from kairos_curate.data.scenario import (
    Scenario,
    _unique_content,
    file_hashes,
    inject_pool_problems,
    noise_files,
    write_png,
)
from kairos_curate.data.scenario_config import OFFTASK_LABEL_MODES, RealScenarioConfig
from kairos_curate.data.sources import image_arrays

__all__ = ["OFFTASK_LABEL_MODES", "RealScenarioConfig", "build_real_scenario"]

#: Pool images sampled (seeded) to estimate the pixel std that is the unit of noise severity.
UNIT_SAMPLE = 256


def _resolve(path: str, root: Path, param: str, what: str) -> Path:
    p = Path(path)
    p = p if p.is_absolute() else root / p
    if not p.exists():
        raise FileNotFoundError(
            f"scenario.inaturalist.{param}: {what} {p} does not exist; put the data there (see the README, "
            f"'Poster-scale configuration') or point scenario.inaturalist.{param} at it"
        )
    return p


def _load_pool(config: RealScenarioConfig, root: Path, taxonomy: Any) -> LoadedDataset:
    if config.inat_table is not None:
        table = _resolve(config.inat_table, root, "inat_table", "iNaturalist table")
        return load_inaturalist_table(
            table, taxonomy=taxonomy, verify=config.verify, extract_dir=root / "data" / "cache" / "inat_images"
        )
    assert config.inat_root is not None
    folder = _resolve(config.inat_root, root, "inat_root", "iNaturalist folder")
    return load_inaturalist(folder, config.inat_split, taxonomy=taxonomy, verify=config.verify)


def build_real_scenario(
    config: RealScenarioConfig, out_folder: str | Path, root: str | Path = ".", progress: bool = True
) -> Scenario:
    """Build the iNaturalist/Insects scenario (see the module docstring).

    Args:
        config: the parameters.
        out_folder: the prepared folder (``data/prepared``); corrupted pool images are written
            to ``out_folder/images``.
        root: project root, against which relative dataset paths resolve.
        progress: show progress bars (file hashing, corruptions).

    Returns:
        A file-backed :class:`Scenario`; ``info["skipped"]`` counts what the adapters skipped.
    """
    base = Path(root)
    rng = np.random.default_rng(config.seed)
    taxonomy = load_taxonomy(
        None if config.taxonomy is None else _resolve(config.taxonomy, base, "taxonomy", "taxonomy mapping")
    )
    insects_root = _resolve(config.insects_root, base, "insects_root", "Insects dataset folder")
    insects = load_insects(
        insects_root, split=config.insects_split, taxonomy=taxonomy, unknown_classes="error", verify=config.verify
    )
    present = set(insects.frame["label"])
    class_names = [c for c in taxonomy.categories if c in present]
    task_index = {c: i for i, c in enumerate(class_names)}

    # Reference and test: one copy of each distinct file, then disjoint per-class samples.
    order = np.argsort(insects.frame["id"].to_numpy(dtype=str), kind="stable")
    insect_hashes = file_hashes(insects.images.paths, progress=progress, desc="hashing Insects files")
    unique = order[_unique_content(insect_hashes[order], set())]
    ref_rows, test_rows = [], []
    labels = insects.frame["label"].to_numpy(dtype=str)
    for name in class_names:
        cand = unique[labels[unique] == name]
        need = config.reference_per_class + config.test_per_class
        if cand.size < need:
            raise ValueError(
                f"Insects class {name!r} has {cand.size} distinct images in {insects_root} but "
                f"scenario.inaturalist.reference_per_class + scenario.inaturalist.test_per_class = {need}; lower them"
            )
        chosen = rng.permutation(cand)[:need]
        ref_rows.append(np.sort(chosen[: config.reference_per_class]))
        test_rows.append(np.sort(chosen[config.reference_per_class :]))
    reference, test = np.concatenate(ref_rows), np.concatenate(test_rows)
    held_out = set(insect_hashes[reference].tolist()) | set(insect_hashes[test].tolist())

    # Coverage (the poster's mapping table): categories of the pool as mapped vs the reference's,
    # before pool categories the reference lacks become off-task.
    mapped = _load_pool(config, base, taxonomy)
    coverage = class_overlap(mapped, insects, off_task=taxonomy.off_task)
    gaps = coverage.index[coverage["status"] == "reference only"].tolist()
    if gaps:
        warnings.warn(
            f"no iNaturalist pool image maps to the reference class(es) {gaps}: the pool cannot "
            "teach them; check the taxonomy mapping",
            stacklevel=2,
        )
    pool_ds = mapped.restrict_labels(class_names, taxonomy.off_task)
    frame = pool_ds.frame
    off_task_all = frame["label"].to_numpy(dtype=str) == taxonomy.off_task
    rows = np.arange(len(frame))
    if config.offtask_label == "drop":
        rows = rows[~off_task_all]
    if config.pool_size and config.pool_size < rows.size:
        rows = np.sort(rng.choice(rows, size=config.pool_size, replace=False))
    if rows.size == 0:
        raise ValueError(
            "the iNaturalist pool is empty after mapping species to the reference's classes "
            f"{class_names}; check the taxonomy mapping and scenario.inaturalist.offtask_label"
        )
    pool_hashes = file_hashes([pool_ds.images.paths[i] for i in rows], progress=progress, desc="hashing pool files")
    leaked = np.isin(pool_hashes, list(held_out))
    rows, pool_hashes = rows[~leaked], pool_hashes[~leaked]
    pool_table = frame.iloc[rows].reset_index(drop=True)
    off_task = off_task_all[rows]
    true_label = np.asarray(
        [-1 if o else task_index[lab] for lab, o in zip(pool_table["label"], off_task, strict=True)], dtype=np.int64
    )
    shown_label = true_label.copy()
    shown_label[off_task] = rng.integers(0, len(class_names), size=int(off_task.sum()))

    paths = pool_table["path"].astype(str).tolist()
    sample = np.sort(
        rng.choice(
            np.flatnonzero(~off_task) if (~off_task).any() else np.arange(rows.size),
            size=min(UNIT_SAMPLE, int((~off_task).sum()) or rows.size),
            replace=False,
        )
    )
    pool_source = pool_ds.images.subset(rows)
    unit_std = corruptions.pixel_std_of(image_arrays(pool_source, sample))
    image_dir = Path(out_folder) / "images"

    def write(row: int, image: np.ndarray) -> None:
        image_dir.mkdir(parents=True, exist_ok=True)
        paths[row] = write_png(image, image_dir, str(pool_table.loc[row, "id"]))
        pool_hashes[row] = file_hashes([paths[row]])[0]

    def add_noise(noise_rows: np.ndarray, sev: float) -> np.ndarray:
        return noise_files(pool_source, noise_rows, sev, unit_std, rng, write)

    shown_label, corruption, severity, label_flipped = inject_pool_problems(
        off_task,
        shown_label,
        len(class_names),
        config.pixel_noise_fraction,
        config.pixel_noise_severities,
        config.label_flip_fraction,
        rng,
        add_noise,
    )

    frames = [
        pd.DataFrame(
            {
                "id": pool_table["id"].to_numpy(dtype=str),
                "split": "pool",
                "label": shown_label,
                "class_name": [class_names[i] for i in shown_label],
                "source": pool_table["source"].to_numpy(),
                "path": paths,
                "content_hash": pool_hashes,
            }
        )
    ]
    for split, split_rows in (("reference", reference), ("test", test)):
        sub = insects.frame.iloc[split_rows]
        lab = np.asarray([task_index[c] for c in sub["label"]], dtype=np.int64)
        frames.append(
            pd.DataFrame(
                {
                    "id": sub["id"].to_numpy(dtype=str),
                    "split": split,
                    "label": lab,
                    "class_name": [class_names[i] for i in lab],
                    "source": sub["source"].to_numpy(),
                    "path": sub["path"].astype(str).to_numpy(),
                    "content_hash": insect_hashes[split_rows],
                }
            )
        )
    samples = pd.concat(frames, ignore_index=True)
    species = pool_table["species"].astype(object).where(pool_table["species"].notna(), pool_table["label"])
    truth = pd.DataFrame(
        {
            "id": pool_table["id"].to_numpy(dtype=str),
            "off_task": off_task,
            "origin": species.astype(str).to_numpy(),
            "true_label": true_label,
            "label_flipped": label_flipped,
            "corruption": corruption.astype(str),
            "severity": severity,
        }
    )
    truth["noisy"] = truth["off_task"] | truth["label_flipped"] | (truth["corruption"] != "none")
    info = {
        "source": "inaturalist",
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()},
        "taxonomy_version": taxonomy.version,
        "taxonomy_path": taxonomy.path,
        "severity_unit_pixel_std": unit_std,
        "skipped": {"inaturalist": len(pool_ds.skipped), "insects": len(insects.skipped)},
        "pool_dropped_equal_to_reference_or_test": int(leaked.sum()),
        "pool_off_task_available": int(off_task_all.sum()),
        "coverage": coverage.reset_index().astype({"pool_species": "float"}).to_dict("records"),
        "counts": {
            "pool": len(pool_table),
            "reference": int(reference.size),
            "test": int(test.size),
            "pool_off_task": int(off_task.sum()),
            "pool_pixel_noise": int((corruption != "none").sum()),
            "pool_label_flipped": int(label_flipped.sum()),
            "pool_noisy": int(truth["noisy"].sum()),
        },
    }
    return Scenario(samples=samples, pixels=None, truth=truth, class_names=class_names, info=info)
