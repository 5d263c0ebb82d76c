"""Typed parameters of every stage: the one place each default lives.

Each section of ``params.yaml`` has a model here (or, for the scenario sources, next to the code
they configure). :func:`load_stage_params` validates exactly the sections a stage reads
(:data:`STAGE_SECTIONS`, which is also each stage's ``params:`` list in ``dvc.yaml``; a test
keeps the two equal), strictly: an unknown key or a string where a number belongs is an error
naming the key. Plug-in names (valuation methods, selection policies) and each method's and
policy's parameters are checked against their registries by the stage that uses them (the
``load()`` of each stage module), so this module imports no heavy code.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kairos_curate.config import load_params, project_root, validate_params
from kairos_curate.data.scenario_config import RealScenarioConfig, ScenarioConfig
from kairos_curate.training.config import FinetuneConfig

__all__ = [
    "STAGE_MODELS",
    "STAGE_SECTIONS",
    "CompareParams",
    "CompareStage",
    "EmbedParams",
    "EmbedStage",
    "EngineParams",
    "FinetuneParams",
    "FinetuneStage",
    "PrepareStage",
    "ReportParams",
    "ReportStage",
    "ScenarioParams",
    "SeedsParams",
    "ValueParams",
    "ValueStage",
    "load_stage_params",
    "stage_data",
]


class Section(BaseModel):
    """A ``params.yaml`` section: strict types, no unknown keys, read-only."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class SeedsParams(Section):
    """Seeds of the selection study: policies are tuned on ``development`` only."""

    development: list[int] = [0, 1, 2]
    held_out: list[int] = [1000, 1001, 1002]

    @model_validator(mode="after")
    def _disjoint(self) -> SeedsParams:
        shared = set(self.development) & set(self.held_out)
        if shared:
            raise ValueError(f"seeds {sorted(shared)} are both development and held-out seeds")
        return self


class NoisyVariantParams(Section):
    """The pool again with extra Gaussian pixel noise (the poster's robustness experiments)."""

    #: Share of the pool's clean images that get noise.
    fraction: float = 0.3
    #: Severities, in units of the clean pool's pixel std, split evenly over those images.
    severities: list[float] = [0.5, 1.0]


class ScenarioParams(Section):
    """``scenario``: which source builds the pool / reference / test, and how."""

    source: Literal["fashion_mnist", "inaturalist"] = "fashion_mnist"
    fashion_mnist: ScenarioConfig = Field(default_factory=ScenarioConfig)
    inaturalist: RealScenarioConfig = Field(default_factory=RealScenarioConfig)
    noisy_variant: NoisyVariantParams = NoisyVariantParams()

    @property
    def config(self) -> ScenarioConfig | RealScenarioConfig:
        """The configuration of the chosen source."""
        return self.fashion_mnist if self.source == "fashion_mnist" else self.inaturalist


class EmbedParams(Section):
    """``embed``: the frozen encoder."""

    #: ``efficientnet-lite0`` (offline default), ``open_clip:ViT-L-14``, ``torchvision:resnet50``.
    encoder: str = "efficientnet-lite0"
    #: Local weights file; ``null`` for encoders whose weights ship with a package.
    weights: str | None = None
    image_size: int = 96
    batch_size: int = 64
    normalize: bool = True
    device: str = "auto"
    #: Seed of the t-SNE / PCA projections.
    seed: int = 0


class EngineParams(Section):
    """``engine``: where the ``embed`` and ``value`` stages compute (one process, or Ray).

    ``local`` (the default) is the single-process path, unchanged and without a Ray import.
    ``ray`` embeds on Ray Data (:func:`kairos_curate.engine.embedding.embed_with_engine`) and
    values with the KAIROS methods as shard tasks on Ray
    (:func:`kairos_curate.engine.valuation.value_method_with_engine`); the other valuation
    methods run in the driver process either way.
    """

    #: ``local`` (this process) or ``ray`` (a Ray cluster).
    name: Literal["local", "ray"] = "local"
    #: With ``ray``: ``null`` starts a local cluster on this machine, ``auto`` joins the one
    #: started with ``ray start``, ``ray://HEAD:10001`` a remote head node.
    ray_address: str | None = None
    #: CPUs of a local Ray cluster (``null``: every core); ignored when joining a cluster.
    num_cpus: int | None = None
    #: value: pool rows per shard task of the exact sharded path (and of the sketch's passes).
    shard_size: int = 8192
    #: value: pools with more rows than this are valued with the Nyström sketch (KAIROS methods,
    #: on this engine) instead of exactly; ``null``: always exact.
    sketch_above: int | None = None
    #: value: Nyström landmarks (half from the reference) when the sketch is used.
    landmarks: int = 1000
    #: embed with ``ray``: encoder actors (``null``: one per GPU, else CPUs - 1).
    num_actors: int | None = None
    #: embed with ``ray``: rows per Parquet shard written to the embedding cache.
    embed_shard_size: int = 2048

    @field_validator("num_cpus", "shard_size", "sketch_above", "landmarks", "num_actors", "embed_shard_size")
    @classmethod
    def _positive(cls, v: int | None) -> int | None:
        if v is not None and v < 1:
            raise ValueError(f"must be a positive integer (or null where allowed), got {v}")
        return v

    @model_validator(mode="after")
    def _address(self) -> EngineParams:
        if self.name == "local" and self.ray_address:
            raise ValueError(f"ray_address {self.ray_address!r} is set but name is 'local'; set name: ray")
        return self

    def value_path(self, method_family: str, n_pool: int) -> str:
        """How the value stage computes: ``"local"`` (today's :func:`~kairos_curate.valuation.value`),
        or ``"exact"`` / ``"nystrom"`` through the engine (KAIROS methods only)."""
        if method_family != "kairos":
            return "local"
        if self.sketch_above is not None and n_pool > self.sketch_above:
            return "nystrom"
        return "exact" if self.name == "ray" else "local"


class ValueParams(Section):
    """``value``: the valuation method and the named selections made from its values."""

    #: A registered valuation method (``kairos_class_conditional``, ``kairos_feature``...).
    method: str = "kairos_class_conditional"
    #: That method's parameters (see its ``Params``), e.g. ``{bandwidth: median}``.
    method_params: dict[str, Any] = {}
    #: Size of every selection, as a fraction of the pool.
    budget: float = 0.2
    #: Selection name -> ``{policy: <registered policy>, <its parameter>: <value>...}``, optionally
    #: with ``method: <registered valuation method>`` (and ``method_params``) when the selection
    #: needs its own values instead of ``method``'s.
    selections: dict[str, dict[str, Any]] = {
        "global": {"policy": "global"},
        "per_class": {"policy": "per_class"},
        "herding": {"policy": "herding", "drop_fraction": 0.5},
        "calibrated": {"policy": "gated_cover", "method": "kairos_calibrated"},
    }
    #: The selection the fine-tuning sweep and the report's headline are about.
    primary: str = "calibrated"
    #: Warn when a class gets less than this share of its proportional quota.
    min_class_share: float = 0.5
    seed: int = 0

    @field_validator("budget")
    @classmethod
    def _budget(cls, v: float) -> float:
        if not 0.0 < v <= 1.0:
            raise ValueError(f"must lie in (0, 1], got {v}")
        return v

    @model_validator(mode="after")
    def _primary(self) -> ValueParams:
        if self.primary not in self.selections:
            raise ValueError(f"primary: {self.primary!r} is not one of the selections {sorted(self.selections)}")
        return self


class CompareParams(Section):
    """``compare``: the method comparison over noise settings (detection, downstream probe)."""

    methods: list[str] = [
        "kairos_feature",
        "kairos_residual",
        "kairos_class_conditional",
        "knn_shapley",
        "nearest_reference",
        "lava",
        "confident_learning",
        "random",
    ]
    #: Noise settings (see :mod:`kairos_curate.data.noise_settings`).
    settings: list[str] = ["default"]
    n_seeds: int = 3
    seed: int = 0
    #: Clean on-task pool rows drawn per setting and seed (the kernel methods cost O(N^2)).
    base_size: int = 1000
    #: Share of the base with pixel noise; of off-task rows (off_task); of all problems (mix).
    noise_fraction: float = 0.2
    random_draws: int = 3
    downstream_settings: list[str] = ["default"]
    removal_setting: str = "default"
    removal_fractions: list[float] = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    #: Probe: logistic regression on this many principal components of the embeddings.
    probe_dim: int = 64
    #: CPU threads for torch and BLAS inside the stage (0 = leave as is).
    threads: int = 1


_FT = FinetuneConfig  # the library's defaults of the training hyper-parameters


class FinetuneParams(Section):
    """``finetune``: the fine-tuning grid."""

    backbone: str = "efficientnet-lite0"
    weights: str | None = None
    image_size: int = 96
    methods: list[Literal["lora", "partial"]] = ["lora", "partial"]
    lora_rank: int = _FT.lora_rank
    lora_alpha: int = _FT.lora_alpha
    lora_dropout: float = _FT.lora_dropout
    lora_targets: str = _FT.lora_targets
    epochs: int = _FT.epochs
    batch_size: int = _FT.batch_size
    learning_rate: float = _FT.learning_rate
    trials: int = 3
    random_draws: int = 3
    #: ``full``, ``random``, ``oracle`` or names of ``value.selections``.
    subsets: list[str] = ["full", "random", "oracle"]
    #: The same on the noisy pool variant, valued and selected on that pool.
    noisy_subsets: list[str] = []
    #: Sizes sweep: top fractions of the primary selection (first method only).
    size_fractions: list[float] = []
    device: str = "auto"
    seed: int = 0

    def config(self, method: str) -> FinetuneConfig:
        """The training hyper-parameters of one run with ``method``."""
        return FinetuneConfig(
            method=method,
            lora_rank=self.lora_rank,
            lora_alpha=self.lora_alpha,
            lora_dropout=self.lora_dropout,
            lora_targets=self.lora_targets,
            epochs=self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            device=self.device,
        )


class ReportParams(Section):
    """``report``: the capstone report."""

    title: str = "Curating fine-tuning data with KAIROS"
    #: Stages whose ``reports/metrics/<stage>.json`` must exist.
    required_metrics: list[str] = ["prepare", "embed", "value", "compare", "finetune"]
    #: Fine-tuning method of the key-results headline.
    primary_method: Literal["lora", "partial"] = "lora"
    #: Check the pages in headless Chromium and save their first screens.
    screenshot: bool = True
    #: Audit the prepared pool first (``reports/audit/``).
    audit: bool = True
    audit_flag_fraction: float = 0.1
    seed: int = 0


class SelectionsPart(Section):
    """The keys of ``value`` the method comparison reads (its selections, at the same budget)."""

    budget: float = ValueParams.model_fields["budget"].default
    selections: dict[str, dict[str, Any]] = ValueParams.model_fields["selections"].default


class PrimaryPart(Section):
    """The key of ``value`` that the fine-tuning sweep and the report read."""

    primary: str = ValueParams.model_fields["primary"].default


class PrepareStage(Section):
    """Parameters of the ``prepare`` stage."""

    scenario: ScenarioParams = Field(default_factory=ScenarioParams)


class EmbedStage(Section):
    """Parameters of the ``embed`` stage."""

    embed: EmbedParams = Field(default_factory=EmbedParams)
    engine: EngineParams = EngineParams()


class ValueStage(Section):
    """Parameters of the ``value`` stage."""

    value: ValueParams = Field(default_factory=ValueParams)
    engine: EngineParams = EngineParams()


class CompareStage(Section):
    """Parameters of the ``compare`` stage."""

    compare: CompareParams = Field(default_factory=CompareParams)
    embed: EmbedParams = Field(default_factory=EmbedParams)
    value: SelectionsPart = Field(default_factory=SelectionsPart)


class FinetuneStage(Section):
    """Parameters of the ``finetune`` stage."""

    finetune: FinetuneParams = Field(default_factory=FinetuneParams)
    value: PrimaryPart = Field(default_factory=PrimaryPart)


class ReportStage(Section):
    """Parameters of the ``report`` stage."""

    report: ReportParams = Field(default_factory=ReportParams)
    value: PrimaryPart = Field(default_factory=PrimaryPart)


#: Stage -> (its parameter model, the ``params.yaml`` keys it reads = its ``params:`` in dvc.yaml).
STAGE_MODELS: dict[str, tuple[type[Section], tuple[str, ...]]] = {
    "prepare": (PrepareStage, ("scenario",)),
    "embed": (EmbedStage, ("embed", "engine")),
    "value": (ValueStage, ("value", "engine")),
    "compare": (CompareStage, ("compare", "embed", "value.budget", "value.selections")),
    "finetune": (FinetuneStage, ("finetune", "value.primary")),
    "report": (ReportStage, ("report", "value.primary")),
}
#: Stage -> the ``params.yaml`` keys it reads.
STAGE_SECTIONS = {stage: keys for stage, (_, keys) in STAGE_MODELS.items()}


def _pick(data: Mapping[str, Any], key: str) -> tuple[bool, Any]:
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def stage_data(stage: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Only the keys of ``params`` that ``stage`` reads, nested as in ``params.yaml``."""
    if stage not in STAGE_SECTIONS:
        raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGE_SECTIONS)}")
    out: dict[str, Any] = {}
    for key in STAGE_SECTIONS[stage]:
        found, node = _pick(params, key)
        if not found:
            continue
        *parents, leaf = key.split(".")
        target = out
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = node
    return out


def load_stage_params(stage: str, params: Mapping[str, Any] | None = None, path: str | Path | None = None) -> Any:
    """Validate the keys ``stage`` reads; returns the stage's model (:data:`STAGE_MODELS`).

    Parameters
    ----------
    stage
        A key of :data:`STAGE_MODELS`.
    params
        The parameters (as papermill passes them to a notebook: only the stage's keys, or all of
        ``params.yaml``); ``None`` reads ``params.yaml`` (``path``, else the project root's).
    path
        ``params.yaml`` to read when ``params`` is ``None``.

    Raises
    ------
    ParamsError
        Unknown key or wrong type; the message names each key.
    """
    if stage not in STAGE_MODELS:
        raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGE_MODELS)}")
    if params is None:
        params = load_params(path or project_root() / "params.yaml")
    return validate_params(STAGE_MODELS[stage][0], stage_data(stage, params), "")
