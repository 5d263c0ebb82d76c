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

__all__ = ["OFFTASK_LABEL_MODES", "STRICT", "RealScenarioConfig", "ScenarioConfig", "check_shared_fields"]

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
