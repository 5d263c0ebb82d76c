"""Configurations of the two scenario sources (``scenario.fashion_mnist``, ``scenario.inaturalist``).

Validated strictly on construction (pydantic dataclasses): a string is not a number, unknown
keys are typos; YAML lists fill the tuple fields (see :func:`kairos_curate.config.validate_params`).
Light on purpose: the stages' parameter models import this module, not the scenario builders.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
from typing import Any

from pydantic import ConfigDict
from pydantic.dataclasses import dataclass as config_dataclass

from kairos_curate.config import validate_params

__all__ = [
    "OFFTASK_LABEL_MODES",
    "STRICT",
    "ExtraProblemsConfig",
    "RealScenarioConfig",
    "ScenarioConfig",
    "check_shared_fields",
]

#: Fashion-MNIST has ten classes, 0..9.
N_FASHION_MNIST_CLASSES = 10


def check_shared_fields(config: Any, where: str) -> None:
    """Checks of the keys that both sources (``scenario.fashion_mnist``, ``scenario.inaturalist``) share."""
    for name in ("reference_per_class", "test_per_class"):
        if getattr(config, name) < 1:
            raise ValueError(f"{where}.{name} must be >= 1")
    for name in ("pixel_noise_fraction", "label_flip_fraction"):
        if not 0.0 <= getattr(config, name) <= 1.0:
            raise ValueError(f"{where}.{name} must be in [0, 1]")
    if config.pixel_noise_fraction > 0 and not config.pixel_noise_severities:
        raise ValueError(f"{where}.pixel_noise_severities is empty but pixel_noise_fraction > 0")


#: Strict validation: no unknown keys, no type coercion.
STRICT = ConfigDict(extra="forbid", strict=True)


@config_dataclass(frozen=True, config=STRICT)
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
            raise ValueError("scenario.fashion_mnist.task_classes needs at least two classes")
        if task & off:
            raise ValueError(f"classes {sorted(task & off)} are both task and off-task")
        if not task.union(off) <= set(range(N_FASHION_MNIST_CLASSES)):
            raise ValueError(f"Fashion-MNIST classes are 0..{N_FASHION_MNIST_CLASSES - 1}")
        offtask_labels = {int(k): int(v) for k, v in self.offtask_labels.items()}
        missing = off - set(offtask_labels)
        if missing:
            raise ValueError(
                f"scenario.fashion_mnist.offtask_labels has no task label for off-task classes {sorted(missing)}"
            )
        if not set(offtask_labels.values()) <= task:
            raise ValueError("scenario.fashion_mnist.offtask_labels must map to task classes")
        object.__setattr__(self, "offtask_labels", offtask_labels)
        if self.pool_per_task_class < 1:
            raise ValueError("scenario.fashion_mnist.pool_per_task_class must be >= 1")
        if self.pool_per_offtask_class < 0:
            raise ValueError("scenario.fashion_mnist.pool_per_offtask_class must be >= 0")
        check_shared_fields(self, "scenario.fashion_mnist")

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None, where: str = "scenario.fashion_mnist") -> ScenarioConfig:
        """Build from the ``scenario.fashion_mnist`` section of ``params.yaml`` (YAML types, strict)."""
        return validate_params(cls, params, where)


OFFTASK_LABEL_MODES = ("random", "drop")


@config_dataclass(frozen=True, config=STRICT)
class RealScenarioConfig:
    """Parameters of the real-data scenario (``scenario.*`` with ``source: inaturalist``).

    Attributes:
        inat_root: folder of the official iNaturalist 2021 layout (``<split>.json`` and
            ``<split>/``); ignored when ``inat_table`` is set.
        inat_split: the split name (``train``, ``train_mini``, ``val``).
        inat_table: an exported table (CSV/TSV/Parquet with image paths + species) instead of
            the folder layout; relative image paths resolve against the table's folder.
        insects_root: the Insects Image Dataset (one folder per class).
        insects_split: optional sub-folder of ``insects_root`` holding the class folders.
        taxonomy: species -> category mapping YAML (``None``: the packaged one).
        pool_size: pool images kept, a seeded sample (0 = every usable image).
        offtask_label: ``random`` (off-task images carry a uniformly drawn task label) or
            ``drop`` (they stay out of the pool).
        reference_per_class: clean reference images per task class.
        test_per_class: clean test images per task class (never in the reference).
        pixel_noise_fraction, pixel_noise_severities, label_flip_fraction: synthetic pool
            problems, as in the default scenario (0 = the real pool as it is).
        verify: decode every image first and skip unreadable ones (slow on the full dataset;
            a broken file otherwise fails later, in the embedding stage, naming the file).
        seed: seed of every random choice.
    """

    inat_root: str | None = "data/raw/inaturalist"
    inat_split: str = "train"
    inat_table: str | None = None
    insects_root: str = "data/raw/insects"
    insects_split: str | None = None
    taxonomy: str | None = None
    pool_size: int = 0
    offtask_label: str = "random"
    reference_per_class: int = 40
    test_per_class: int = 300
    pixel_noise_fraction: float = 0.0
    pixel_noise_severities: tuple[float, ...] = (3.0, 6.0, 9.0)
    label_flip_fraction: float = 0.0
    verify: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.offtask_label not in OFFTASK_LABEL_MODES:
            raise ValueError(
                f"scenario.inaturalist.offtask_label must be one of {OFFTASK_LABEL_MODES}; got {self.offtask_label!r}"
            )
        if self.inat_root is None and self.inat_table is None:
            raise ValueError(
                "set scenario.inaturalist.inat_root (official layout) or scenario.inaturalist.inat_table (exported table)"
            )
        if self.pool_size < 0:
            raise ValueError("scenario.inaturalist.pool_size must be >= 0 (0 = all)")
        check_shared_fields(self, "scenario.inaturalist")

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None, where: str = "scenario.inaturalist") -> RealScenarioConfig:
        """Build from the ``scenario.inaturalist`` section of ``params.yaml`` (YAML types, strict)."""
        return validate_params(cls, params, where)


@config_dataclass(frozen=True, config=STRICT)
class ExtraProblemsConfig:
    """Pool problems that :func:`~kairos_curate.data.scenario.build_scenario` does not make itself,
    added on top by :func:`~kairos_curate.data.suite_scenario.with_extra_problems` (a scenario of the
    selection suite, ``suite.scenarios.<name>.extra``). All zero: nothing is added.

    Attributes:
        motion_blur_fraction: share of the pool (drawn among its clean rows) blurred by a linear
            motion of ``motion_blur_length`` pixels at a random angle per image.
        motion_blur_length: blur length in pixels.
        sensor_noise_fraction: share of the pool (clean rows) with Poisson shot noise at
            ``sensor_noise_photons`` photons at full scale plus Gaussian read noise.
        sensor_noise_photons: photons at full scale (fewer = noisier).
        sensor_read_noise: read-noise std in grey levels.
        confusable_flip_fraction: share of the clean rows (after the pixel problems) whose label
            moves to its class's most-confused class (a reference-trained probe's confusion on the
            test set).
        rare_class: a Fashion-MNIST task class of which only ``rare_keep`` genuine pool images stay
            (wrong labels pointing *into* it stay); ``None``: no rare class.
        rare_keep: genuine images of ``rare_class`` kept.
        duplicate_sources_per_class: clean pool images per class that get near copies appended.
        copies_per_source: near copies appended per source image.
        near_duplicate_std: std (grey levels) of the perturbation that makes a copy a near copy.
    """

    motion_blur_fraction: float = 0.0
    motion_blur_length: int = 5
    sensor_noise_fraction: float = 0.0
    sensor_noise_photons: float = 20.0
    sensor_read_noise: float = 10.0
    confusable_flip_fraction: float = 0.0
    rare_class: int | None = None
    rare_keep: int = 50
    duplicate_sources_per_class: int = 0
    copies_per_source: int = 0
    near_duplicate_std: float = 2.0

    def __post_init__(self) -> None:
        for name in ("motion_blur_fraction", "sensor_noise_fraction", "confusable_flip_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.motion_blur_fraction + self.sensor_noise_fraction > 1.0:
            raise ValueError("motion_blur_fraction + sensor_noise_fraction must not exceed 1")
        if self.motion_blur_length < 1:
            raise ValueError(f"motion_blur_length must be >= 1 pixel, got {self.motion_blur_length}")
        if self.sensor_noise_photons <= 0 or self.sensor_read_noise < 0:
            raise ValueError("sensor_noise_photons must be > 0 and sensor_read_noise >= 0")
        if self.rare_class is not None and not 0 <= self.rare_class < N_FASHION_MNIST_CLASSES:
            raise ValueError(f"rare_class must be a Fashion-MNIST class 0..{N_FASHION_MNIST_CLASSES - 1}")
        if self.rare_keep < 0:
            raise ValueError(f"rare_keep must be >= 0, got {self.rare_keep}")
        if self.duplicate_sources_per_class < 0 or self.copies_per_source < 0:
            raise ValueError("duplicate_sources_per_class and copies_per_source must be >= 0")
        if (self.duplicate_sources_per_class > 0) != (self.copies_per_source > 0):
            raise ValueError("near duplicates need both duplicate_sources_per_class and copies_per_source > 0")
        if self.near_duplicate_std <= 0:
            raise ValueError(f"near_duplicate_std must be > 0 grey levels, got {self.near_duplicate_std}")

    @property
    def any(self) -> bool:
        """Whether anything is added."""
        return bool(
            self.motion_blur_fraction
            or self.sensor_noise_fraction
            or self.confusable_flip_fraction
            or self.rare_class is not None
            or self.duplicate_sources_per_class
        )

    @property
    def needs_confusion(self) -> bool:
        """Confusable flips need each class's most-confused class."""
        return self.confusable_flip_fraction > 0
