"""Pool variants for the method comparison, built from a prepared scenario per noise setting.

Ground truth is used to *build* a variant and, later, to *score* methods on it; it is never
passed to a valuation method. The *base* of a variant is a seeded sample of ``base_size`` pool
rows that the prepared scenario left clean in pixels and on-task, with their true labels
restored. Pixel settings corrupt a ``noise_fraction`` of the base's images with
:mod:`kairos_curate.data.corruptions` (only those rows are embedded anew, through the embedding
cache); label settings flip labels (nothing to embed); ``off_task`` appends off-task pool images
with their plausible wrong labels; ``mix`` combines them; ``default`` is the prepared pool itself.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from kairos_curate.data import corruptions
from kairos_curate.data.noise_settings import SettingSpec
from kairos_curate.data.scenario import Scenario
from kairos_curate.data.sources import image_arrays

__all__ = ["KINDS", "Variant", "VariantBuilder"]

#: Ground-truth kinds of problem a variant row can carry (besides ``clean``).
KINDS = ("pixel noise", "label flipped", "off-task")


@dataclass
class Variant:
    """One pool variant: what methods see (``x``, ``y``) and what only scoring sees (``kind``).

    Attributes
    ----------
    setting, seed : str, int
        Which setting and seed built it.
    ids : numpy.ndarray
        Sample ids (the same id may carry corrupted pixels in another variant).
    x : numpy.ndarray
        ``(N, d)`` embeddings.
    y : numpy.ndarray
        ``(N,)`` labels as shown to the methods.
    kind : numpy.ndarray
        ``(N,)`` ground truth: ``clean``, ``pixel noise``, ``label flipped`` or ``off-task``.
    embedded : int
        Images that needed a forward pass or a cache lookup for this variant.
    """

    setting: str
    seed: int
    ids: np.ndarray
    x: np.ndarray
    y: np.ndarray
    kind: np.ndarray
    embedded: int = 0

    @property
    def bad(self) -> np.ndarray:
        """Rows with any injected problem."""
        return np.asarray(self.kind != "clean")


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(name.encode())])


class VariantBuilder:
    """Build the pool variants of the noise settings from a prepared scenario.

    Parameters
    ----------
    scenario
        Loaded with its truth table.
    pool_x, ref_x, test_x
        Embeddings of the prepared pool, reference and test rows (row order of the scenario).
    embed
        ``embed(ids, images) -> (N, d)`` embeddings of new images (a stacked array or a list of
        arrays of different sizes; cached by id + content hash).
    base_size
        Clean on-task rows drawn per variant.
    noise_fraction
        Share of the base corrupted (pixel settings), share of the variant that is off-task
        (``off_task``), total share of problems in ``mix``.
    """

    def __init__(
        self,
        scenario: Scenario,
        pool_x: np.ndarray,
        ref_x: np.ndarray,
        test_x: np.ndarray,
        embed: Callable[[np.ndarray, Any], np.ndarray],
        *,
        base_size: int,
        noise_fraction: float,
    ) -> None:
        if scenario.truth.empty:
            raise ValueError("building pool variants needs the scenario's truth table; load it with truth_path")
        if not 0.0 < noise_fraction < 1.0:
            raise ValueError(f"compare.noise_fraction must lie in (0, 1); got {noise_fraction}")
        pool = scenario.table("pool")
        truth = pool[["id"]].merge(scenario.truth, on="id", how="left")
        self.scenario = scenario
        self.pool = pool
        self.pool_x = pool_x
        self.embed = embed
        self.noise_fraction = float(noise_fraction)
        # Images are decoded only for the rows a setting corrupts (real pools are large photos).
        self.source = scenario.source("pool")
        unit = scenario.info.get("severity_unit_pixel_std")
        self.unit_std = (
            float(unit)
            if unit
            else corruptions.pixel_std_of(image_arrays(self.source, np.arange(min(256, len(self.source)))))
        )
        self.n_classes = len(scenario.class_names)
        self.default_kind = np.full(len(pool), "clean", dtype=object)
        self.default_kind[(truth["corruption"] != "none").to_numpy()] = "pixel noise"
        self.default_kind[truth["label_flipped"].to_numpy()] = "label flipped"
        self.default_kind[truth["off_task"].to_numpy()] = "off-task"
        no_pixel = (truth["corruption"] == "none").to_numpy()
        on_task = ~truth["off_task"].to_numpy()
        self.base_rows = np.flatnonzero(no_pixel & on_task)
        self.offtask_rows = np.flatnonzero(no_pixel & ~on_task)
        self.true_label = truth["true_label"].to_numpy().astype(np.int64)
        self.base_size = min(int(base_size), self.base_rows.size)
        if self.base_size < 10 * self.n_classes:
            raise ValueError(
                f"compare.base_size: only {self.base_size} clean on-task pool rows; need >= {10 * self.n_classes}"
            )
        self.confusion = self._confusion(
            ref_x,
            scenario.table("reference")["label"].to_numpy(),
            test_x,
            scenario.table("test")["label"].to_numpy(),
        )

    def _confusion(
        self, ref_x: np.ndarray, y_ref: np.ndarray, test_x: np.ndarray, y_test: np.ndarray
    ) -> dict[int, int]:
        """Each class's most-confused class, from a reference-trained probe on the test set."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import confusion_matrix
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, user_api="blas"):
            pred = LogisticRegression(max_iter=300).fit(ref_x, y_ref).predict(test_x)
        classes = list(range(self.n_classes))
        return corruptions.confusion_from_matrix(confusion_matrix(y_test, pred, labels=classes), classes)

    def build(self, spec: SettingSpec, seed: int) -> Variant:
        """The variant of ``spec`` for ``seed`` (deterministic given both)."""
        if spec.family == "default":
            return Variant(
                spec.name,
                seed,
                self.pool["id"].to_numpy(dtype=str),
                self.pool_x,
                self.pool["label"].to_numpy().astype(np.int64),
                self.default_kind.astype(str),
            )
        rng = _rng(seed, spec.name)
        rows = np.sort(rng.choice(self.base_rows, size=self.base_size, replace=False))
        ids = self.pool["id"].to_numpy(dtype=str)[rows]
        x = self.pool_x[rows].copy()
        y = self.true_label[rows].copy()
        kind = np.full(rows.size, "clean", dtype=object)
        n_bad = max(1, round(self.noise_fraction * rows.size))
        embedded = 0

        def corrupt(name: str, idx: np.ndarray, **kw: Any) -> None:
            # Each corruption draws its randomness row by row in sorted order, so corrupting only
            # the chosen rows gives the same images as corrupting them inside the whole batch.
            nonlocal embedded
            idx = np.sort(idx)
            images, changed = corruptions.corrupt_each(
                name, image_arrays(self.source, rows[idx]), np.arange(idx.size), rng, **kw
            )
            hit = idx[changed]
            new = images[changed] if isinstance(images, np.ndarray) else [images[j] for j in changed]
            x[hit] = self.embed(ids[hit], new)
            kind[hit] = "pixel noise"
            embedded += int(hit.size)

        def flip(idx: np.ndarray, mode: str) -> None:
            nonlocal y
            res = corruptions.flip_labels(
                y,
                np.sort(idx),
                classes=list(range(self.n_classes)),
                mode=mode,
                confusion=self.confusion if mode == "confusable" else None,
                rng=rng,
            )
            y = res.labels
            kind[res.indices] = "label flipped"

        if spec.family == "gaussian":
            corrupt(
                "gaussian_noise",
                rng.choice(rows.size, n_bad, replace=False),
                severity=spec.level,
                unit_std=self.unit_std,
            )
        elif spec.family == "motion_blur":
            corrupt(
                "motion_blur",
                rng.choice(rows.size, n_bad, replace=False),
                length=int(spec.level),
                angle=float(rng.uniform(0.0, 180.0)),
            )
        elif spec.family == "sensor_noise":
            corrupt(
                "sensor_noise",
                rng.choice(rows.size, n_bad, replace=False),
                photons=spec.level,
                read_noise=10.0,
            )
        elif spec.family == "flip":
            flip(
                rng.choice(rows.size, max(1, round(spec.level / 100 * rows.size)), replace=False),
                spec.mode,
            )
        elif spec.family in ("off_task", "mix"):
            share = self.noise_fraction if spec.family == "off_task" else self.noise_fraction / 4
            if spec.family == "mix":
                quarter = max(1, round(share * rows.size))
                parts = np.array_split(rng.permutation(rows.size)[: 3 * quarter], 3)
                corrupt("gaussian_noise", parts[0], severity=1.0, unit_std=self.unit_std)
                corrupt("motion_blur", parts[1], length=5, angle=float(rng.uniform(0.0, 180.0)))
                flip(parts[2], "uniform")
            n_off = min(self.offtask_rows.size, max(1, round(share / (1 - share) * rows.size)))
            off = np.sort(rng.choice(self.offtask_rows, size=n_off, replace=False))
            ids = np.concatenate([ids, self.pool["id"].to_numpy(dtype=str)[off]])
            x = np.concatenate([x, self.pool_x[off]])
            y = np.concatenate([y, self.pool["label"].to_numpy().astype(np.int64)[off]])
            kind = np.concatenate([kind, np.full(off.size, "off-task", dtype=object)])
        else:  # pragma: no cover - parse_setting admits nothing else
            raise ValueError(spec.family)
        return Variant(spec.name, seed, ids, x, y, kind.astype(str), embedded)
