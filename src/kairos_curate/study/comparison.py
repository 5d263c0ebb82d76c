"""The method comparison: which valuation method finds which problem, and what its selection buys.

For every noise setting and seed, a pool variant is built (:mod:`kairos_curate.data.variants`),
every registered method named in the plan values it (through :func:`kairos_curate.valuation.value`;
no method sees ground truth), and the values are scored three ways:

1. **detection** (:mod:`.detection`) - AUROC, average precision, precision/recall at k;
2. **downstream** (:mod:`.downstream`) - a probe trained on each method's selections vs random,
   oracle and full-pool subsets (on the settings the plan names);
3. **point removal** - the probe retrained after removing the highest / lowest valued fractions
   (on one setting, first seed).

:func:`run_comparison` returns every run row and :func:`summarise_comparison` the tables
(mean ± std over seeds).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from kairos_curate.data.noise_settings import SettingSpec
from kairos_curate.data.variants import Variant, VariantBuilder
from kairos_curate.evaluation import removal_curve, winner_table
from kairos_curate.selection import SelectionSpec
from kairos_curate.study.detection import SUMMARY_METRICS, detection_rows, suspicion_curve
from kairos_curate.study.downstream import LinearProbe, downstream_rows
from kairos_curate.study.tables import summarise
from kairos_curate.valuation import METHODS, ValuationInputs, value
from kairos_curate.valuation.result import ValuationResult

__all__ = ["ComparisonPlan", "ComparisonRuns", "ComparisonTables", "run_comparison", "summarise_comparison"]


@dataclass(frozen=True)
class ComparisonPlan:
    """What the comparison runs (the ``compare`` and ``value`` sections of ``params.yaml``).

    Attributes
    ----------
    methods
        Registered valuation methods.
    settings
        Noise settings (parsed).
    seeds
        Seeds of the variants (deterministic methods run once on the ``default`` setting).
    downstream_settings
        Settings on which the downstream probe runs.
    removal_setting
        The setting of the point-removal curves.
    removal_fractions
        Fractions removed.
    selections
        Named selections every method's values go through downstream.
    budget
        Downstream subset size as a fraction of the variant.
    random_draws
        Uniform random subsets per downstream setting and seed.
    """

    methods: Sequence[str]
    settings: Sequence[SettingSpec]
    seeds: Sequence[int]
    downstream_settings: Sequence[str]
    removal_setting: str
    removal_fractions: Sequence[float]
    selections: Mapping[str, SelectionSpec]
    budget: float
    random_draws: int

    def __post_init__(self) -> None:
        unknown = sorted(set(self.methods) - set(METHODS))
        if unknown:
            raise ValueError(f"compare.methods: unknown {unknown}; known: {sorted(METHODS)}")
        names = [s.name for s in self.settings]
        missing = sorted(set(self.downstream_settings) - set(names))
        if missing:
            raise ValueError(f"compare.downstream_settings {missing} are not in compare.settings")
        if self.removal_setting not in names:
            raise ValueError(f"compare.removal_setting {self.removal_setting!r} is not in compare.settings")
        if not self.seeds:
            raise ValueError("compare.n_seeds must be >= 1")

    @property
    def default_setting(self) -> str:
        """The setting shown as "the prepared pool" (``default`` if present, else the first)."""
        return next((s.name for s in self.settings if s.family == "default"), self.settings[0].name)


@dataclass
class ComparisonRuns:
    """Every run row of a comparison."""

    detection: list[dict[str, Any]] = field(default_factory=list)
    downstream: list[dict[str, Any]] = field(default_factory=list)
    removal: list[dict[str, Any]] = field(default_factory=list)
    #: setting -> method -> (fraction inspected, fraction found), first seed
    curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    embedded: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


def _value_variant(
    plan: ComparisonPlan, variant: Variant, spec: SettingSpec, seed: int, ref_x: np.ndarray, y_ref: np.ndarray
) -> dict[str, ValuationResult]:
    """Every method's valuation of ``variant``; deterministic methods once on the prepared pool."""
    out = {}
    for name in plan.methods:
        if spec.family == "default" and seed != plan.seeds[0] and not METHODS[name].seeded:
            continue  # the default pool is the same for every seed
        out[name] = value(name, ValuationInputs(variant.x, variant.y, ref_x, y_ref, seed, ids=variant.ids))
    return out


def _removal_rows(
    plan: ComparisonPlan, variant: Variant, results: Mapping[str, ValuationResult], probe: LinearProbe
) -> list[dict[str, Any]]:
    features = probe.features(variant.x)
    rows = []
    for name, result in results.items():
        for direction in ("high", "low"):
            for r in removal_curve(
                result.values,
                features,
                variant.y,
                probe.test_z,
                probe.y_test,
                plan.removal_fractions,
                probe.n_classes,
                remove=direction,
            ):
                rows.append({"setting": variant.setting, "method": name, "remove": direction, **r})
    return rows


def run_comparison(
    plan: ComparisonPlan,
    builder: VariantBuilder,
    ref_x: np.ndarray,
    y_ref: np.ndarray,
    probe: LinearProbe,
    *,
    log: Callable[[str], None] | None = None,
) -> ComparisonRuns:
    """Run the comparison of ``plan`` (see the module docs); ``log`` gets one line per setting."""
    runs = ComparisonRuns()
    for spec in plan.settings:
        start = time.perf_counter()
        t_methods = t_down = 0.0
        for seed in plan.seeds:
            variant = builder.build(spec, seed)
            runs.embedded += variant.embedded
            t1 = time.perf_counter()
            results = _value_variant(plan, variant, spec, seed, ref_x, y_ref)
            for result in results.values():
                runs.detection += detection_rows(variant, result)
                if seed == plan.seeds[0]:
                    runs.curves.setdefault(spec.name, {})[result.method] = suspicion_curve(variant, result)
            t_methods += time.perf_counter() - t1
            t1 = time.perf_counter()
            if spec.name in plan.downstream_settings:
                rows = downstream_rows(
                    variant,
                    results,
                    ref_x,
                    y_ref,
                    probe,
                    budget=plan.budget,
                    selections=plan.selections,
                    random_draws=plan.random_draws,
                    n_classes=probe.n_classes,
                    seed=seed,
                )
                runs.downstream += [{"setting": spec.name, "seed": seed, **row} for row in rows]
            if spec.name == plan.removal_setting and seed == plan.seeds[0]:
                runs.removal += _removal_rows(plan, variant, results, probe)
            t_down += time.perf_counter() - t1
        runs.seconds[spec.name] = time.perf_counter() - start
        if log is not None:
            log(
                f"[compare] {spec.name}: {runs.seconds[spec.name]:.1f} s (methods {t_methods:.1f} s, "
                f"downstream/removal {t_down:.1f} s)"
            )
    return runs


@dataclass
class ComparisonTables:
    """The comparison's tables (each a DataFrame; mean ± std over seeds where summarised)."""

    detection_runs: pd.DataFrame
    settings: pd.DataFrame
    summary: pd.DataFrame
    winners: pd.DataFrame
    downstream_runs: pd.DataFrame
    downstream: pd.DataFrame
    removal: pd.DataFrame
    curve: pd.DataFrame


def summarise_comparison(plan: ComparisonPlan, runs: ComparisonRuns) -> ComparisonTables:
    """Summaries of :func:`run_comparison`'s rows.

    ``settings``: per setting x method x problem; ``summary``: the default setting alone;
    ``winners``: per setting, the best method on all problems (random excluded), its margin, and
    the best KAIROS method against the best other (negative = KAIROS loses); ``downstream``: per
    setting x method x selection; ``curve``: found vs inspected on the default setting.
    """
    detail = pd.DataFrame(runs.detection)
    settings = summarise(detail, ["setting", "method", "problem"], SUMMARY_METRICS)
    default = plan.default_setting
    summary = settings[settings["setting"] == default].drop(columns="setting").reset_index(drop=True)
    any_problem = settings[settings["problem"] == "any problem"]
    contenders = [m for m in plan.methods if m != "random"]
    winners = winner_table(
        any_problem, contenders=contenders or None, family={m: METHODS[m].family for m in plan.methods}
    )
    down_runs = pd.DataFrame(runs.downstream)
    downstream = (
        summarise(down_runs, ["setting", "method", "policy"], ("accuracy", "macro_f1", "bad_share", "min_class_count"))
        if len(down_runs)
        else pd.DataFrame()
    )
    curve = pd.DataFrame(
        [
            {"method": m, "inspected": x, "found": f}
            for m, (xs, fs) in runs.curves.get(default, {}).items()
            for x, f in zip(xs, fs, strict=True)
        ]
    )
    return ComparisonTables(
        detail, settings, summary, winners, down_runs, downstream, pd.DataFrame(runs.removal), curve
    )
