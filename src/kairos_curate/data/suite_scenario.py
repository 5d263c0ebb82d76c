"""Scenarios of the selection suite: the default scenario with other sizes, plus extra problems.

A suite scenario (``suite.scenarios.<name>`` in ``params.yaml``) is ``scenario.fashion_mnist``
with some fields overridden (built by :func:`~kairos_curate.data.scenario.build_scenario`, with
the study seed as its seed) and, optionally, problems that the default scenario does not make
(:class:`~kairos_curate.data.scenario_config.ExtraProblemsConfig`): motion blur, sensor noise,
labels flipped to the most-confused class, a rare class, near duplicates.

What a user has and what only evaluation may read are kept in separate objects: a
:class:`SuiteScenario` holds the pool, reference and test as :class:`Split` (ids, images,
labels as shown) and, apart, the pool's :class:`PoolTruth` (what each row really is). Valuation
and selection code receive splits only.

Every random choice of :func:`with_extra_problems` draws from one generator seeded with
``[seed, crc32(name)]``, in a fixed order: pixel problems on clean rows (motion blur, then
sensor noise), then confusable flips on the rows still clean, then the rare class (genuine
images of that class removed), then near duplicates appended.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from kairos_curate.data import corruptions
from kairos_curate.data.scenario import Scenario, build_scenario
from kairos_curate.data.scenario_config import ExtraProblemsConfig, ScenarioConfig

__all__ = [
    "KINDS",
    "PoolTruth",
    "Split",
    "SuiteScenario",
    "confusion_map",
    "extras_rng",
    "suite_base",
    "with_extra_problems",
]

#: Ground-truth kinds of a suite pool row (the first is the only good one).
KINDS = ("clean", "pixel noise", "label flipped", "off-task", "near-duplicate")


@dataclass(frozen=True)
class Split:
    """Images of one split as a user has them: ids, ``uint8`` pixels, labels as shown."""

    ids: np.ndarray
    pixels: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def take(self, rows: np.ndarray) -> Split:
        """The rows ``rows``, in that order."""
        return Split(self.ids[rows], self.pixels[rows], self.labels[rows])


@dataclass(frozen=True)
class PoolTruth:
    """What each pool row really is (evaluation only; never passed to valuation or selection).

    Attributes:
        kind: one of :data:`KINDS` per row.
        true_label: the task class the image really shows (-1 for off-task images).
        detail: the specific problem (``gaussian_noise``, ``motion_blur``, ``sensor_noise``,
            ``flip_uniform``, ``flip_confusable``, ``off_task``, ``near_duplicate`` or ``none``).
        duplicate_of: for a near copy, the pool row it copies; -1 otherwise.
    """

    kind: np.ndarray
    true_label: np.ndarray
    detail: np.ndarray
    duplicate_of: np.ndarray

    @property
    def clean(self) -> np.ndarray:
        """Rows without any problem."""
        return np.asarray(self.kind == "clean")

    def take(self, rows: np.ndarray) -> PoolTruth:
        """The rows ``rows``, in that order (``duplicate_of`` re-indexed, -1 where the source left)."""
        where = np.full(self.kind.shape[0], -1, dtype=np.int64)
        where[rows] = np.arange(rows.size)
        dup = self.duplicate_of[rows]
        return PoolTruth(
            self.kind[rows], self.true_label[rows], self.detail[rows], np.where(dup >= 0, where[np.maximum(dup, 0)], -1)
        )

    def counts(self) -> dict[str, int]:
        """Rows per kind (every kind, 0 included)."""
        return {k: int(np.sum(self.kind == k)) for k in KINDS}


@dataclass(frozen=True)
class SuiteScenario:
    """One scenario of the suite for one seed: pool / reference / test, and the pool's truth apart."""

    name: str
    seed: int
    pool: Split
    reference: Split
    test: Split
    class_names: list[str]
    truth: PoolTruth
    #: Fashion-MNIST class index of each task class (index = task label).
    task_classes: tuple[int, ...]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        """Number of task classes."""
        return len(self.class_names)


def suite_base(name: str, seed: int, base: ScenarioConfig, overrides: Mapping[str, Any] | None = None) -> SuiteScenario:
    """Scenario ``name`` for ``seed`` before any extra problem: ``base`` with ``overrides`` and ``seed``.

    ``overrides`` are fields of ``scenario.fashion_mnist`` (YAML types, validated strictly);
    ``seed`` replaces the config's seed, so a study seed builds a different pool, reference and
    test set.
    """
    fields = asdict(base)
    fields.update({k: v for k, v in (overrides or {}).items()})
    fields["seed"] = int(seed)
    config = ScenarioConfig.from_params(_yaml_types(fields), where=f"suite.scenarios.{name}.scenario")
    return from_scenario(name, int(seed), build_scenario(config), tuple(config.task_classes))


def _yaml_types(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Tuples as lists (strict validation takes YAML's types)."""
    return {
        k: list(v) if isinstance(v, tuple) else (dict(v) if isinstance(v, Mapping) else v) for k, v in fields.items()
    }


def from_scenario(name: str, seed: int, scenario: Scenario, task_classes: tuple[int, ...]) -> SuiteScenario:
    """A built (array-backed) scenario split into what a user has and the pool's truth."""
    if scenario.pixels is None or scenario.truth.empty:
        raise ValueError("a suite scenario needs an array-backed scenario with its truth table")

    def split(name_: str) -> Split:
        mask = scenario.split_mask(name_)
        table = scenario.table(name_)
        assert scenario.pixels is not None
        return Split(table["id"].to_numpy(dtype=str), scenario.pixels[mask], table["label"].to_numpy().astype(np.int64))

    pool = split("pool")
    truth = scenario.table("pool")[["id"]].merge(scenario.truth, on="id", how="left")
    kind = np.full(len(pool), "clean", dtype=object)
    detail = np.full(len(pool), "none", dtype=object)
    pixel = (truth["corruption"] != "none").to_numpy()
    flipped = truth["label_flipped"].to_numpy(dtype=bool)
    off = truth["off_task"].to_numpy(dtype=bool)
    kind[pixel], detail[pixel] = "pixel noise", truth["corruption"].to_numpy()[pixel]
    kind[flipped], detail[flipped] = "label flipped", "flip_uniform"
    kind[off], detail[off] = "off-task", "off_task"
    pool_truth = PoolTruth(
        kind.astype(str),
        truth["true_label"].to_numpy().astype(np.int64),
        detail.astype(str),
        np.full(len(pool), -1, dtype=np.int64),
    )
    return SuiteScenario(
        name,
        seed,
        pool,
        split("reference"),
        split("test"),
        list(scenario.class_names),
        pool_truth,
        task_classes,
        {"severity_unit_pixel_std": float(scenario.info["severity_unit_pixel_std"])},
    )


def confusion_map(
    ref_x: np.ndarray, ref_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, n_classes: int
) -> dict[int, int]:
    """Each class's most-confused class: a logistic regression trained on the reference embeddings,
    its confusion matrix on the (clean) test set. Used to *build* confusable flips only."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import confusion_matrix
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):
        pred = LogisticRegression(max_iter=300).fit(ref_x, ref_y).predict(test_x)
    classes = list(range(int(n_classes)))
    return corruptions.confusion_from_matrix(confusion_matrix(test_y, pred, labels=classes), classes)


def extras_rng(name: str, seed: int) -> np.random.Generator:
    """The generator of a scenario's extra problems: ``[seed, crc32(name)]``."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode())])


def with_extra_problems(
    scenario: SuiteScenario, extras: ExtraProblemsConfig, confusion: Mapping[int, int] | None = None
) -> SuiteScenario:
    """``scenario`` with the extra problems of ``extras`` added to its pool (see the module docs).

    Only the pool changes; reference and test stay as built. ``confusion`` (task label -> its
    most-confused task label, :func:`confusion_map`) is needed for confusable flips.
    """
    if not extras.any:
        return scenario
    if extras.needs_confusion and confusion is None:
        raise ValueError(f"scenario {scenario.name!r}: confusable flips need the confusion map (confusion=...)")
    rng = extras_rng(scenario.name, scenario.seed)
    pixels, labels, ids = scenario.pool.pixels.copy(), scenario.pool.labels.copy(), scenario.pool.ids.copy()
    kind, detail = scenario.truth.kind.astype(object), scenario.truth.detail.astype(object)
    true_label, dup_of = scenario.truth.true_label.copy(), scenario.truth.duplicate_of.copy()
    n = ids.size
    added: dict[str, int] = {}

    for fraction, problem in (
        (extras.motion_blur_fraction, "motion_blur"),
        (extras.sensor_noise_fraction, "sensor_noise"),
    ):
        if fraction <= 0:
            continue
        clean = np.flatnonzero(kind == "clean")
        rows = np.sort(rng.choice(clean, size=min(clean.size, round(fraction * n)), replace=False))
        for r in rows:  # one image at a time: the blur angle is drawn per image
            params: dict[str, Any] = (
                {"length": extras.motion_blur_length, "angle": float(rng.uniform(0.0, 180.0))}
                if problem == "motion_blur"
                else {"photons": extras.sensor_noise_photons, "read_noise": extras.sensor_read_noise}
            )
            pixels[r] = corruptions.apply_corruption(problem, pixels[r : r + 1], [0], rng, **params).images[0]
        kind[rows], detail[rows] = "pixel noise", problem
        added[problem] = int(rows.size)

    if extras.confusable_flip_fraction > 0:
        assert confusion is not None
        clean = np.flatnonzero(kind == "clean")
        rows = np.sort(rng.choice(clean, size=round(extras.confusable_flip_fraction * clean.size), replace=False))
        flips = corruptions.flip_labels(
            labels, rows, classes=list(range(scenario.n_classes)), mode="confusable", confusion=confusion
        )
        labels = np.asarray(flips.labels, dtype=np.int64)
        kind[flips.indices], detail[flips.indices] = "label flipped", "flip_confusable"
        added["flip_confusable"] = int(flips.indices.size)

    keep = np.arange(n)
    if extras.rare_class is not None:
        if extras.rare_class not in scenario.task_classes:
            raise ValueError(
                f"scenario {scenario.name!r}: rare_class {extras.rare_class} is not a task class "
                f"{list(scenario.task_classes)}"
            )
        rare = scenario.task_classes.index(extras.rare_class)
        genuine = np.flatnonzero((true_label == rare) & (kind != "off-task"))
        kept = rng.choice(genuine, size=min(extras.rare_keep, genuine.size), replace=False)
        keep = np.setdiff1d(keep, np.setdiff1d(genuine, kept))
        added["rare_class_removed"] = int(n - keep.size)

    pool = Split(ids, pixels, labels).take(keep)
    truth = PoolTruth(kind.astype(str), true_label, detail.astype(str), dup_of).take(keep)

    if extras.duplicate_sources_per_class > 0:
        per, copies = extras.duplicate_sources_per_class, extras.copies_per_source
        clean = truth.kind == "clean"
        sources = []
        for c in range(scenario.n_classes):
            candidates = np.flatnonzero(clean & (pool.labels == c))
            if candidates.size < per:
                raise ValueError(
                    f"scenario {scenario.name!r}: class {scenario.class_names[c]!r} has "
                    f"{candidates.size} clean pool images, fewer than duplicate_sources_per_class={per}"
                )
            sources.append(rng.choice(candidates, size=per, replace=False))
        src = np.repeat(np.concatenate(sources), copies)
        m = len(pool)
        targets = np.arange(m, m + src.size)
        grown = corruptions.duplicate(
            np.concatenate([pool.pixels, pool.pixels[src]]),
            targets,
            sources=src,
            near=True,
            near_std=extras.near_duplicate_std,
            rng=rng,
        )
        copy_ids = np.asarray([f"{pool.ids[s]}-near{j % copies:03d}" for j, s in enumerate(src)])
        pool = Split(
            np.concatenate([pool.ids, copy_ids]), grown.images, np.concatenate([pool.labels, pool.labels[src]])
        )
        truth = PoolTruth(
            np.concatenate([truth.kind, np.full(src.size, "near-duplicate")]),
            np.concatenate([truth.true_label, truth.true_label[src]]),
            np.concatenate([truth.detail, np.full(src.size, "near_duplicate")]),
            np.concatenate([truth.duplicate_of, src]),
        )
        added["near_duplicate"] = int(src.size)

    return replace(scenario, pool=pool, truth=truth, info={**scenario.info, "extra_problems": added})
