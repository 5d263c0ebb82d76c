"""The selection suite: scenario x seed x budget x selection, each selection evaluated downstream.

For every scenario of the plan (``suite.scenarios``: overrides of the default scenario plus extra
problems, :mod:`kairos_curate.data.suite_scenario`) and every seed (``seeds.development`` and
``seeds.held_out``, kept apart in every table), the scenario is built and embedded (through the
shared embedding cache). Then, per budget, every selection values the pool with the valuation
method it names (:func:`kairos_curate.valuation.value`, which never sees ground truth) and selects
with :func:`kairos_curate.selection.select` and the policy it names. Each subset is described
(precision = share truly clean, problems that survived, per-class counts, how well it covers the
clean pool) and evaluated: a logistic probe on the embeddings and LoRA / partial fine-tuning of
the backbone's tail on cached stem outputs (:func:`kairos_curate.training.finetune.train_run`).

The *oracle* selections (``oracle: true``) value and select among the truly clean rows only:
they are the only rows that read ground truth, a ceiling and not a method, and are labelled so
(``uses_ground_truth``). Describing a subset reads the truth too, after the selection is made.

A selection whose valuation method or policy is not registered in this installation is skipped,
and the skip is a row of :attr:`SuiteRuns.skipped` (shown by the report), never silent.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kairos_curate.data.scenario_config import ExtraProblemsConfig, ScenarioConfig
from kairos_curate.data.sources import ArrayImageSource
from kairos_curate.data.suite_scenario import (
    KINDS,
    PoolTruth,
    Split,
    SuiteScenario,
    confusion_map,
    suite_base,
    with_extra_problems,
)
from kairos_curate.selection import POLICIES, select
from kairos_curate.study.downstream import LinearProbe
from kairos_curate.study.suite_margins import RANDOM_VALUED_HERDING, margin_against, random_valued_herding
from kairos_curate.study.tables import summarise
from kairos_curate.valuation import METHODS, ValuationInputs, get_method, value
from kairos_curate.valuation.result import ValuationResult

__all__ = [
    "FineTuner",
    "SuitePlan",
    "SuiteRuns",
    "SuiteSelection",
    "SuiteTables",
    "describe_subset",
    "estimate_seconds",
    "run_suite",
    "summarise_suite",
]

#: Keys of a selection entry that are not the policy's parameters.
SPEC_KEYS = ("method", "method_params", "policy", "keep_counts_from", "oracle", "role")
#: Metrics of an evaluated subset, summarised as mean ± std over (seed x trial).
METRICS = ("accuracy", "macro_f1", "auc", "precision", "min_class_count", "classes_covered", "clean_coverage_dist")
#: The gap closed is only computed where the ceiling beats the baseline by at least this much.
MIN_GAP = 0.005
#: ``embed(ids, pixels) -> (N, d)`` embeddings (the stage's encoder, through the embedding cache).
Embed = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class SuiteSelection:
    """One named selection of the suite: a valuation method, a policy and their parameters.

    Attributes:
        name: as in ``suite.selections``.
        method, method_params: the registered valuation method and its parameters.
        policy, policy_params: the registered selection policy and its parameters.
        keep_counts_from: another selection whose valuation reports per-class ``keep_counts``
            (``result.info["keep_counts"]``); they are passed to ``select(keep_counts=...)``.
        oracle: value and select among the truly clean rows only (reads ground truth).
        role: ``primary``, ``control``, ``ceiling`` or ``ablation``.
    """

    name: str
    method: str
    policy: str
    method_params: dict[str, Any] = field(default_factory=dict)
    policy_params: dict[str, Any] = field(default_factory=dict)
    keep_counts_from: str | None = None
    oracle: bool = False
    role: str = "control"

    @classmethod
    def from_mapping(cls, name: str, entry: Mapping[str, Any], *, primary: bool = False) -> SuiteSelection:
        """From a ``suite.selections`` entry (policy parameters inline)."""
        return cls(
            name=name,
            method=str(entry["method"]),
            policy=str(entry["policy"]),
            method_params=dict(entry.get("method_params") or {}),
            policy_params={k: v for k, v in entry.items() if k not in SPEC_KEYS},
            keep_counts_from=entry.get("keep_counts_from"),
            oracle=bool(entry.get("oracle", False)),
            role="primary" if primary else str(entry.get("role", "control")),
        )

    @property
    def uses_ground_truth(self) -> bool:
        """Only oracle selections read the truth to choose."""
        return self.oracle

    def unavailable(self) -> str | None:
        """Why this selection cannot run in this installation (``None``: it can)."""
        missing = []
        if self.method not in METHODS:
            missing.append(f"valuation method {self.method!r}")
        if self.policy not in POLICIES:
            missing.append(f"selection policy {self.policy!r}")
        return " and ".join(missing) + " not registered" if missing else None

    def check(self) -> None:
        """Validate the method's and the policy's parameters (when both are registered)."""
        if self.unavailable() is None:
            get_method(self.method, self.method_params)
            POLICIES.create(self.policy, self.policy_params)


@dataclass(frozen=True)
class SuitePlan:
    """What :func:`run_suite` runs (the active profile of ``suite`` with the ``seeds``)."""

    scenarios: Mapping[str, tuple[Mapping[str, Any], ExtraProblemsConfig]]
    seeds: Mapping[str, Sequence[int]]
    budgets: Sequence[float]
    selections: Mapping[str, SuiteSelection]
    evaluators: Sequence[str]
    trials: int
    primary: str
    baseline: str
    ceiling: str
    probe_dim: int = 64

    def skipped(self) -> dict[str, str]:
        """Selection name -> why it is skipped (its plug-in, or its ``keep_counts_from`` source's)."""
        out = {name: reason for name, s in self.selections.items() if (reason := s.unavailable())}
        for name, s in self.selections.items():
            if name not in out and s.keep_counts_from is not None and s.keep_counts_from in out:
                out[name] = f"takes keep counts from {s.keep_counts_from!r}, which is skipped"
        return out

    def runnable(self) -> list[SuiteSelection]:
        """The selections that run, each ``keep_counts_from`` source before its users."""
        skipped = self.skipped()
        ready = [s for n, s in self.selections.items() if n not in skipped]
        return sorted(ready, key=lambda s: s.keep_counts_from is not None)

    @property
    def fine_tuning(self) -> list[str]:
        """The fine-tuning evaluators of the plan."""
        return [e for e in self.evaluators if e != "probe"]


class FineTuner:
    """LoRA / partial fine-tuning of a backbone's tail on one scenario, stem outputs cached.

    Parameters
    ----------
    backbone
        :func:`~kairos_curate.training.backbones.load_backbone`'s result.
    configs
        Evaluator (``lora``/``partial``) -> its hyper-parameters.
    cache_dir
        Where stem outputs are stored (keyed by backbone, numerics and every image's id + hash).
    device
        Device of the stem pass.
    threads
        Intra-op CPU threads of the stem pass (``None``: the library's default). On a shared CPU one
        thread is several times faster than two.
    """

    def __init__(
        self,
        backbone: Any,
        configs: Mapping[str, Any],
        cache_dir: str | Path | None = None,
        device: str = "auto",
        threads: int | None = None,
    ) -> None:
        self.backbone, self.configs, self.cache_dir, self.device = backbone, dict(configs), cache_dir, device
        self.threads = threads

    def features(self, split: Split) -> Any:
        """Stem outputs of ``split``'s images (row = split row)."""
        from kairos_curate.training.config import DEFAULT_THREADS
        from kairos_curate.training.finetune import compute_stem_features

        return compute_stem_features(
            self.backbone,
            ArrayImageSource(split.ids, split.pixels),
            device=self.device,
            cache_dir=self.cache_dir,
            progress=False,
            threads=DEFAULT_THREADS if self.threads is None else self.threads,
        )

    def run(
        self,
        evaluator: str,
        pool_features: Any,
        labels: np.ndarray,
        rows: np.ndarray,
        test_features: Any,
        test_labels: np.ndarray,
        n_classes: int,
        seed: int,
    ) -> dict[str, float]:
        """One run: accuracy, macro-F1, AUC on the test set and the train time."""
        from kairos_curate.training.finetune import train_run

        r = train_run(
            self.backbone,
            pool_features,
            labels,
            rows,
            test_features,
            test_labels,
            n_classes,
            self.configs[evaluator],
            seed=seed,
        )
        return {"accuracy": r.accuracy, "macro_f1": r.macro_f1, "auc": r.auc, "train_s": r.train_time_s}


@dataclass
class SuiteRuns:
    """Every row of a suite run: one per evaluated subset (and trial), the per-scenario setup
    costs, and the skipped selections."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    setups: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)


def describe_subset(
    rows: np.ndarray, labels: np.ndarray, truth: PoolTruth, x: np.ndarray, n_classes: int
) -> dict[str, Any]:
    """What a subset holds, against the truth (evaluation only, after selection).

    ``precision`` is the share of truly clean rows; ``n_<kind>`` counts each problem that
    survived; ``count_c<c>`` the rows per shown label; ``classes_covered`` the classes with at
    least one truly clean row; ``clean_coverage_dist`` the mean distance of a truly clean pool row
    to the nearest selected row with the same shown label (lower = the subset spans the clean pool
    better; a class with nothing selected counts 2, the largest distance of unit vectors).
    """
    rows = np.asarray(rows, dtype=np.int64)
    kinds = truth.kind[rows]
    clean_sel = kinds == "clean"
    out: dict[str, Any] = {"k": int(rows.size), "precision": float(clean_sel.mean()) if rows.size else float("nan")}
    for kind in KINDS[1:]:
        out[f"n_{kind.replace(' ', '_').replace('-', '_')}"] = int(np.sum(kinds == kind))
    counts = np.bincount(labels[rows], minlength=n_classes)
    clean_counts = np.bincount(labels[rows][clean_sel], minlength=n_classes)
    out.update({f"count_c{c}": int(counts[c]) for c in range(n_classes)})
    out["min_class_count"] = int(counts.min())
    out["classes_covered"] = int(np.sum(clean_counts > 0))
    out["clean_coverage_dist"] = _clean_coverage(rows, labels, truth.clean, x, n_classes)
    return out


def _clean_coverage(rows: np.ndarray, labels: np.ndarray, clean: np.ndarray, x: np.ndarray, n_classes: int) -> float:
    total, n = 0.0, 0
    pool_clean = np.flatnonzero(clean)
    for c in range(n_classes):
        q = x[pool_clean[labels[pool_clean] == c]].astype(np.float64)
        s = x[rows[labels[rows] == c]].astype(np.float64)
        if q.shape[0] == 0:
            continue
        n += q.shape[0]
        if s.shape[0] == 0:
            total += 2.0 * q.shape[0]
            continue
        d2 = (q * q).sum(1)[:, None] + (s * s).sum(1)[None, :] - 2.0 * q @ s.T
        total += float(np.sqrt(np.maximum(d2.min(axis=1), 0.0)).sum())
    return total / max(n, 1)


@dataclass
class _Prepared:
    """One scenario for one seed, embedded (and its stem outputs, if anything fine-tunes)."""

    scenario: SuiteScenario
    pool_x: np.ndarray
    ref_x: np.ndarray
    test_x: np.ndarray
    probe: LinearProbe | None
    features: tuple[Any, Any] | None
    tuner: FineTuner | None
    setup: dict[str, Any]


def _prepare(
    plan: SuitePlan, name: str, seed: int, split: str, base: ScenarioConfig, embed: Embed, tuner: FineTuner | None
) -> _Prepared:
    overrides, extras = plan.scenarios[name]
    t0 = time.perf_counter()
    sc = suite_base(name, seed, base, overrides)
    t1 = time.perf_counter()
    ref_x, test_x = embed(sc.reference.ids, sc.reference.pixels), embed(sc.test.ids, sc.test.pixels)
    t2 = time.perf_counter()
    confusion = (
        confusion_map(ref_x, sc.reference.labels, test_x, sc.test.labels, sc.n_classes)
        if extras.needs_confusion
        else None
    )
    sc = with_extra_problems(sc, extras, confusion)
    t3 = time.perf_counter()
    pool_x = embed(sc.pool.ids, sc.pool.pixels)
    t4 = time.perf_counter()
    probe = (
        LinearProbe(pool_x, ref_x, test_x, sc.test.labels, sc.n_classes, dim=plan.probe_dim, seed=seed)
        if "probe" in plan.evaluators
        else None
    )
    features = (tuner.features(sc.pool), tuner.features(sc.test)) if tuner is not None and plan.fine_tuning else None
    t5 = time.perf_counter()
    setup = {
        "split": split,
        "scenario": name,
        "seed": seed,
        "n_pool": len(sc.pool),
        "n_reference": len(sc.reference),
        "n_test": len(sc.test),
        "bad_share": float(1.0 - sc.truth.clean.mean()),
        **{f"pool_{k.replace(' ', '_').replace('-', '_')}": v for k, v in sc.truth.counts().items()},
        "build_s": (t1 - t0) + (t3 - t2),
        "embed_s": (t2 - t1) + (t4 - t3),
        "stems_s": t5 - t4,
    }
    return _Prepared(sc, pool_x, ref_x, test_x, probe, features, tuner, setup)


def _valuate(
    spec: SuiteSelection, prep: _Prepared, seed: int, cache: dict[str, tuple[ValuationResult, np.ndarray]]
) -> tuple[ValuationResult, np.ndarray, float]:
    """The valuation a selection names, and the pool rows it covers (all, or the truly clean ones
    for an oracle); cached per scenario and seed (values do not depend on the budget)."""
    key = json.dumps([spec.method, spec.method_params, spec.oracle], sort_keys=True, default=str)
    if key in cache:
        return (*cache[key], 0.0)
    sc = prep.scenario
    rows = np.flatnonzero(sc.truth.clean) if spec.oracle else np.arange(len(sc.pool))
    t0 = time.perf_counter()
    result = value(
        spec.method,
        ValuationInputs(
            prep.pool_x[rows], sc.pool.labels[rows], prep.ref_x, sc.reference.labels, seed, ids=sc.pool.ids[rows]
        ),
        spec.method_params,
    )
    cache[key] = (result, rows)
    return result, rows, time.perf_counter() - t0


def _choose(
    spec: SuiteSelection,
    prep: _Prepared,
    k: int,
    seed: int,
    result: ValuationResult,
    rows: np.ndarray,
    keep_counts: Any,
) -> tuple[np.ndarray, list[str]]:
    sc = prep.scenario
    extra = {} if keep_counts is None else {"keep_counts": keep_counts}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starved classes show up as min_class_count; notes are kept
        chosen = select(
            result,
            min(k, rows.size),
            policy=spec.policy,
            labels=sc.pool.labels[rows],
            ids=sc.pool.ids[rows],
            reference_labels=sc.reference.labels,
            embeddings=prep.pool_x[rows],
            reference=prep.ref_x,
            seed=seed,
            **spec.policy_params,
            **extra,
        )
    return rows[chosen.indices], list(chosen.warnings)


def run_suite(
    plan: SuitePlan,
    base: ScenarioConfig,
    embed: Embed,
    tuner: FineTuner | None = None,
    *,
    log: Callable[[str], None] | None = None,
) -> SuiteRuns:
    """Run ``plan`` (see the module docs); ``log`` gets one line per scenario and seed."""
    out = SuiteRuns()
    skipped = plan.skipped()
    for name, reason in skipped.items():
        s = plan.selections[name]
        out.skipped.append(
            {"selection": name, "method": s.method, "policy": s.policy, "role": s.role, "reason": reason}
        )
    specs = plan.runnable()
    if plan.fine_tuning and tuner is None:
        raise ValueError(f"evaluators {plan.fine_tuning} need a FineTuner")
    for split, seeds in plan.seeds.items():
        for seed in seeds:
            for name in plan.scenarios:
                started = time.perf_counter()
                prep = _prepare(plan, name, int(seed), split, base, embed, tuner)
                out.setups.append(prep.setup)
                out.runs += _scenario_rows(plan, specs, prep, int(seed), split)
                if log is not None:
                    log(
                        f"[suite] {name} seed {seed} ({split}): N={prep.setup['n_pool']}, "
                        f"bad {prep.setup['bad_share']:.1%}, {time.perf_counter() - started:.1f} s"
                    )
    return out


def _scenario_rows(
    plan: SuitePlan, specs: Sequence[SuiteSelection], prep: _Prepared, seed: int, split: str
) -> list[dict[str, Any]]:
    sc = prep.scenario
    n = len(sc.pool)
    cache: dict[str, tuple[ValuationResult, np.ndarray]] = {}
    results: dict[str, ValuationResult] = {}
    rows_out: list[dict[str, Any]] = []
    for budget in plan.budgets:
        k = max(sc.n_classes, round(float(budget) * n))
        for spec in specs:
            result, rows, value_s = _valuate(spec, prep, seed, cache)
            results[spec.name] = result
            keep_counts = None
            if spec.keep_counts_from is not None:
                keep_counts = results[spec.keep_counts_from].info.get("keep_counts")
                if keep_counts is None:
                    raise ValueError(
                        f"suite selection {spec.name!r}: keep_counts_from {spec.keep_counts_from!r}, "
                        f"but its method {plan.selections[spec.keep_counts_from].method!r} reports no "
                        "keep_counts in its result.info"
                    )
            t0 = time.perf_counter()
            chosen, notes = _choose(spec, prep, k, seed, result, rows, keep_counts)
            select_s = time.perf_counter() - t0
            base_row = {
                "split": split,
                "scenario": sc.name,
                "seed": seed,
                "budget": float(budget),
                "selection": spec.name,
                "role": spec.role,
                "method": spec.method,
                "policy": spec.policy,
                "uses_ground_truth": spec.uses_ground_truth,
                "value_s": value_s,
                "select_s": select_s,
                "notes": len(notes),
                **describe_subset(chosen, sc.pool.labels, sc.truth, prep.pool_x, sc.n_classes),
            }
            rows_out += _evaluate(plan, prep, chosen, seed, base_row)
    return rows_out


def _evaluate(
    plan: SuitePlan, prep: _Prepared, chosen: np.ndarray, seed: int, base_row: dict[str, Any]
) -> list[dict[str, Any]]:
    sc, out = prep.scenario, []
    for evaluator in plan.evaluators:
        if evaluator == "probe":
            assert prep.probe is not None
            t0 = time.perf_counter()
            m = prep.probe(prep.pool_x[chosen], sc.pool.labels[chosen])
            out.append(
                {
                    **base_row,
                    "evaluator": "probe",
                    "trial": 0,
                    "accuracy": m["accuracy"],
                    "macro_f1": m["macro_f1"],
                    "auc": m.get("auc", float("nan")),
                    "train_s": time.perf_counter() - t0,
                }
            )
            continue
        assert prep.features is not None and prep.tuner is not None
        for trial in range(plan.trials):
            m = prep.tuner.run(
                evaluator,
                prep.features[0],
                sc.pool.labels,
                chosen,
                prep.features[1],
                sc.test.labels,
                sc.n_classes,
                seed=100 * seed + trial,
            )
            out.append({**base_row, "evaluator": evaluator, "trial": trial, **m})
    return out


@dataclass
class SuiteTables:
    """The suite's tables (see :func:`summarise_suite`)."""

    summary: pd.DataFrame
    checks: pd.DataFrame
    ablations: pd.DataFrame


def summarise_suite(runs: pd.DataFrame, plan: SuitePlan) -> SuiteTables:
    """Mean ± std over (seed x trial), development and held-out seeds apart.

    ``summary``: per split x scenario x budget x evaluator x selection, every metric of
    :data:`METRICS` and the gap closed, ``100 (x - baseline) / (ceiling - baseline)`` in accuracy
    (NaN where the ceiling beats the baseline by less than :data:`MIN_GAP`).
    ``checks``: per split x scenario x budget x evaluator, the primary against the best control
    (highest mean accuracy among ``control`` rows), against the baseline and against herding over
    random values (:func:`random_valued_herding`, where the plan has it): margin, combined std
    ``sqrt(std_a^2 + std_b^2)``, ``wins`` (margin > combined std) and ``no_harm`` (margin >
    -combined std). ``ablations``: each ablation minus the primary, with the combined std.
    Both also carry the paired view (:func:`margin_against`): the per-seed difference of the two
    selections' trial means, its mean and std over seeds and the number of seeds the first won.
    The verdicts (``wins``, ``no_harm``) stay on the combined std, the issue's criterion: its std
    includes the spread between seeds (pool and test draw) that both selections share, which the
    paired std leaves out.
    """
    if runs.empty:
        empty = pd.DataFrame()
        return SuiteTables(empty, empty, empty)
    keys = ["split", "scenario", "budget", "evaluator", "selection"]
    summary = summarise(runs, keys, METRICS, carry=("role", "method", "policy", "uses_ground_truth", "k"))
    summary["gap_closed"] = np.nan
    groups = ["split", "scenario", "budget", "evaluator"]
    per_seed = runs.groupby([*groups, "seed", "selection"], sort=False)["accuracy"].mean().unstack("selection")
    checks, ablations = [], []
    for key, grp in summary.groupby(groups, sort=False):
        by = grp.set_index("selection")
        where = dict(zip(groups, key, strict=True))
        if plan.baseline in by.index and plan.ceiling in by.index:
            lo, hi = by.at[plan.baseline, "accuracy_mean"], by.at[plan.ceiling, "accuracy_mean"]
            if hi - lo >= MIN_GAP:
                summary.loc[grp.index, "gap_closed"] = 100.0 * (grp["accuracy_mean"] - lo) / (hi - lo)
        if plan.primary not in by.index:
            continue
        primary = by.loc[plan.primary]
        controls = grp[grp["role"] == "control"].set_index("selection")
        against = []
        if len(controls):
            against.append(("best control", controls.loc[controls["accuracy_mean"].idxmax()]))
        if plan.baseline in by.index:
            against.append(("baseline", by.loc[plan.baseline]))
        herd_random = random_valued_herding(grp)
        if herd_random is not None and herd_random != plan.primary:
            against.append((RANDOM_VALUED_HERDING, by.loc[herd_random]))
        seeds = per_seed.loc[key]
        for label, other in against:
            checks.append({**where, "against": label, **margin_against(primary, other, seeds)})
        for _, row in grp[grp["role"] == "ablation"].set_index("selection").iterrows():
            ablations.append({**where, **margin_against(row, primary, seeds)})
    return SuiteTables(summary, pd.DataFrame(checks), pd.DataFrame(ablations))


def estimate_seconds(
    runs: pd.DataFrame,
    setups: pd.DataFrame,
    *,
    scenarios: int,
    seeds: int,
    budgets: Sequence[float],
    selections: int,
    evaluators: Sequence[str],
    trials: int,
    pool_size: float | None = None,
) -> dict[str, Any]:
    """Seconds a plan of these sizes would take, from measured per-run costs.

    Setup (build, embed, stem outputs) is per scenario and seed; valuation and selection per
    scenario, seed, budget and selection; a probe fit per subset; a fine-tuning run per subset
    and trial, its cost proportional to the subset size (measured seconds per selected sample; a
    fine-tuning evaluator that was not measured is assumed to cost what the measured ones did, and
    is listed under ``assumed_like_measured``).
    """
    n_pool = float(pool_size if pool_size is not None else setups["n_pool"].mean())
    n_runs = scenarios * seeds
    setup = float((setups["build_s"] + setups["embed_s"] + setups["stems_s"]).mean()) * n_runs
    first = runs.drop_duplicates(["split", "scenario", "seed", "budget", "selection"])
    choose = float((first["value_s"] + first["select_s"]).mean()) * n_runs * len(budgets) * selections
    per_sample = {
        ev: float((rows["train_s"] / rows["k"].clip(lower=1)).mean()) for ev, rows in runs.groupby("evaluator")
    }
    tuned = [v for ev, v in per_sample.items() if ev != "probe"]
    train, assumed = 0.0, []
    for ev in evaluators:
        if ev not in per_sample:  # not measured: a fine-tuning evaluator costs what the measured ones did
            if ev == "probe" or not tuned:
                continue
            per_sample[ev] = float(np.mean(tuned))
            assumed.append(ev)
        reps = 1 if ev == "probe" else trials
        train += per_sample[ev] * sum(b * n_pool for b in budgets) * n_runs * selections * reps
    return {
        "setup_s": setup,
        "value_select_s": choose,
        "evaluate_s": train,
        "total_s": setup + choose + train,
        "assumed_like_measured": assumed,
    }
