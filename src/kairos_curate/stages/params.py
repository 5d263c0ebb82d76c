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
from kairos_curate.data.scenario_config import (
    ExtraProblemsConfig,
    RealScenarioConfig,
    ScenarioConfig,
)
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
    "SuiteParams",
    "SuiteProfile",
    "SuiteScenarioParams",
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

    #: 1000-1002 were held out until their results had been seen; 2000-2002 replaced them.
    development: list[int] = [0, 1, 2, 1000, 1001, 1002, 3, 4, 5]
    held_out: list[int] = [2000, 2001, 2002]

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


#: Keys of a ``suite.selections`` entry that are not the policy's parameters.
SUITE_SELECTION_KEYS = ("method", "method_params", "policy", "keep_counts_from", "oracle", "role")
#: What a suite selection is for: the report groups rows by it.
SUITE_ROLES = ("control", "ceiling", "ablation")
#: Evaluators of a suite selection: the logistic probe on embeddings, and the two fine-tuning methods.
SUITE_EVALUATORS = ("probe", "lora", "partial")


def _gated(method: str, **params: Any) -> dict[str, Any]:
    return {"method": method, "policy": "gated_cover", **params}


class SuiteScenarioParams(Section):
    """One scenario of the selection suite: ``scenario.fashion_mnist`` with overrides, plus extra problems."""

    #: Fields of ``scenario.fashion_mnist`` to override (``seed`` is the study seed, not a field here).
    scenario: dict[str, Any] = {}
    extra: ExtraProblemsConfig = Field(default_factory=ExtraProblemsConfig)

    @field_validator("scenario")
    @classmethod
    def _fields(cls, v: dict[str, Any]) -> dict[str, Any]:
        known = set(ScenarioConfig.__dataclass_fields__) - {"seed"}
        unknown = sorted(set(v) - known)
        if unknown:
            raise ValueError(
                f"unknown scenario.fashion_mnist field(s) {unknown} (the seed comes from `seeds`); "
                f"known: {', '.join(sorted(known))}"
            )
        return v


class SuiteProfile(Section):
    """The small configuration the default ``dvc repro`` runs (``suite.profile: small``)."""

    scenarios: list[str] = ["default", "clean"]
    budgets: list[float] = [0.2]
    selections: list[str] = [
        "calibrated",
        "herding_kairos",
        "herding_random_values",
        "random",
        "knn_shapley_cover",
        "oracle",
        "oracle_cover",
    ]
    evaluators: list[Literal["probe", "lora", "partial"]] = ["probe", "lora"]
    trials: int = 1
    #: The first this many seeds of ``seeds.development`` and of ``seeds.held_out``.
    seeds_per_split: int = 2


class SuiteParams(Section):
    """``suite``: the scenario suite of the selection study (scenario x seed x budget x selection).

    ``profile``: ``small`` runs :attr:`small` (the default ``dvc repro``), ``full`` every scenario,
    budget, selection, evaluator and trial below over all seeds of ``seeds``, ``disabled`` nothing.
    A selection entry names a valuation ``method`` (with ``method_params``), a selection ``policy``
    with its parameters inline, optionally ``keep_counts_from: <other selection>`` (passes that
    selection's per-class ``keep_counts`` to ``select``), ``oracle: true`` (selects among the truly
    clean rows: reads ground truth, a ceiling) and ``role`` (``control``, ``ceiling``, ``ablation``).
    """

    profile: Literal["small", "full", "disabled"] = "small"
    scenarios: dict[str, SuiteScenarioParams] = Field(
        default_factory=lambda: {
            "default": SuiteScenarioParams(),
            "clean": SuiteScenarioParams(
                scenario={"pool_per_offtask_class": 0, "pixel_noise_fraction": 0.0, "label_flip_fraction": 0.0}
            ),
        }
    )
    budgets: list[float] = [0.05, 0.1, 0.2, 0.4]
    selections: dict[str, dict[str, Any]] = {
        "calibrated": _gated("kairos_calibrated"),
        "herding_random_values": {"method": "random", "policy": "herding", "drop_fraction": 0.5},
        "herding_kairos": {"method": "kairos_class_conditional", "policy": "herding", "drop_fraction": 0.5},
        "random": {"method": "random", "policy": "global"},
        "per_class_random": {"method": "random", "policy": "per_class"},
        "knn_shapley_cover": _gated("knn_shapley", keep="matched", keep_counts_from="calibrated"),
        "lava_cover": _gated("lava", keep="matched", keep_counts_from="calibrated"),
        "confident_learning_cover": _gated("confident_learning", keep="matched", keep_counts_from="calibrated"),
        "random_values_cover": _gated("random", keep="matched", keep_counts_from="calibrated"),
        "cl_filter_cover": _gated("confident_learning", keep="flags"),
        "oracle": {"method": "random", "policy": "global", "oracle": True, "role": "ceiling"},
        "oracle_cover": _gated("random", keep="all", oracle=True, role="ceiling"),
        "no_label_gate": _gated("kairos_calibrated", method_params={"gates": "feature"}, role="ablation"),
        "no_feature_gate": _gated("kairos_calibrated", method_params={"gates": "label"}, role="ablation"),
        "no_gate": _gated("kairos_calibrated", keep="all", role="ablation"),
        "no_dedup": _gated("kairos_calibrated", dedup=False, role="ablation"),
        "fixed_drop": _gated("kairos_calibrated", keep="fraction", role="ablation"),
        "storey_gate": _gated("kairos_calibrated", method_params={"keep_rule": "storey"}, role="ablation"),
    }
    #: The selection under test; ``baseline`` and ``ceiling`` anchor the gap closed (random -> oracle).
    primary: str = "calibrated"
    baseline: str = "random"
    ceiling: str = "oracle"
    evaluators: list[Literal["probe", "lora", "partial"]] = ["probe", "lora", "partial"]
    #: Fine-tuning runs per scenario, seed, budget and selection (the probe is deterministic: one).
    trials: int = 3
    small: SuiteProfile = SuiteProfile()
    #: Probe: logistic regression on this many principal components of the embeddings.
    probe_dim: int = 64
    #: CPU threads for torch and BLAS while the suite runs (0 = leave as is).
    threads: int = 1

    @field_validator("budgets")
    @classmethod
    def _budgets(cls, v: list[float]) -> list[float]:
        if not v or any(not 0.0 < b <= 1.0 for b in v):
            raise ValueError(f"budgets must be fractions in (0, 1], got {v}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> SuiteParams:
        problems = []
        for name, entry in self.selections.items():
            if not isinstance(entry, dict) or "method" not in entry or "policy" not in entry:
                problems.append(f"selections.{name}: needs a 'method' and a 'policy' key, got {entry!r}")
                continue
            role = entry.get("role", "control")
            if role not in SUITE_ROLES:
                problems.append(f"selections.{name}.role: {role!r} is not one of {SUITE_ROLES}")
            if entry.get("oracle", False) and role != "ceiling":
                problems.append(f"selections.{name}: an oracle reads ground truth; give it role: ceiling")
            source = entry.get("keep_counts_from")
            if source is not None:
                if source not in self.selections:
                    problems.append(f"selections.{name}.keep_counts_from: {source!r} is not a selection")
                elif self.selections[source].get("keep_counts_from") is not None:
                    problems.append(
                        f"selections.{name}.keep_counts_from: {source!r} takes its own counts from "
                        "another selection; name the original"
                    )
        for key in ("primary", "baseline", "ceiling"):
            if getattr(self, key) not in self.selections:
                problems.append(f"{key}: {getattr(self, key)!r} is not one of the selections")
        if self.ceiling in self.selections and not self.selections[self.ceiling].get("oracle", False):
            problems.append(f"ceiling: {self.ceiling!r} must be an oracle selection (oracle: true)")
        if self.trials < 1 or self.small.trials < 1 or self.small.seeds_per_split < 1:
            problems.append("trials, small.trials and small.seeds_per_split must be >= 1")
        for key, full in (("scenarios", self.scenarios), ("selections", self.selections)):
            unknown = [n for n in getattr(self.small, key) if n not in full]
            if unknown:
                problems.append(f"small.{key}: {unknown} are not in suite.{key}")
        missing = [s for s in self.small.budgets if s not in self.budgets]
        if missing:
            problems.append(f"small.budgets: {missing} are not in suite.budgets")
        for name in self.small.selections:
            source = self.selections.get(name, {}).get("keep_counts_from")
            if source is not None and source not in self.small.selections:
                problems.append(f"small.selections: {name!r} takes keep counts from {source!r}, which is not listed")
        absent = [
            getattr(self, k)
            for k in ("primary", "baseline", "ceiling")
            if getattr(self, k) not in self.small.selections
        ]
        if absent:
            problems.append(f"small.selections must include the primary, baseline and ceiling; missing {absent}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def active(self, seeds: SeedsParams) -> dict[str, Any]:
        """What the chosen profile runs: scenarios, budgets, selections, evaluators, trials and seeds
        (``{"development": [...], "held_out": [...]}``); empty lists for ``disabled``."""
        if self.profile == "disabled":
            return {
                "scenarios": [],
                "budgets": [],
                "selections": [],
                "evaluators": [],
                "trials": 0,
                "seeds": {"development": [], "held_out": []},
            }
        if self.profile == "full":
            return {
                "scenarios": list(self.scenarios),
                "budgets": list(self.budgets),
                "selections": list(self.selections),
                "evaluators": list(self.evaluators),
                "trials": self.trials,
                "seeds": {"development": list(seeds.development), "held_out": list(seeds.held_out)},
            }
        n = self.small.seeds_per_split
        return {
            "scenarios": list(self.small.scenarios),
            "budgets": list(self.small.budgets),
            "selections": list(self.small.selections),
            "evaluators": list(self.small.evaluators),
            "trials": self.small.trials,
            "seeds": {"development": list(seeds.development[:n]), "held_out": list(seeds.held_out[:n])},
        }


class SelectionsPart(Section):
    """The keys of ``value`` the method comparison reads (its selections, at the same budget)."""

    budget: float = ValueParams.model_fields["budget"].default
    selections: dict[str, dict[str, Any]] = ValueParams.model_fields["selections"].default


class FashionMnistPart(Section):
    """The key of ``scenario`` the selection suite reads: the base its scenarios override."""

    fashion_mnist: ScenarioConfig = Field(default_factory=ScenarioConfig)


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
    #: The selection suite runs in this stage: its scenarios, seeds, and the encoder it embeds with.
    suite: SuiteParams = Field(default_factory=SuiteParams)
    seeds: SeedsParams = Field(default_factory=SeedsParams)
    embed: EmbedParams = Field(default_factory=EmbedParams)
    scenario: FashionMnistPart = Field(default_factory=FashionMnistPart)


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
    "finetune": (FinetuneStage, ("finetune", "value.primary", "suite", "seeds", "embed", "scenario.fashion_mnist")),
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
