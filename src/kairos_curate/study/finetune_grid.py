"""The fine-tuning grid: which subsets are trained, with which methods, how many trials.

A :class:`Subset` is a named set of pool rows, one per draw: the ``full`` pool, ``random``
draws of the curated size, a ``curated`` selection of the value stage (by its name in
``value.selections``), the ``oracle`` (drawn from truly clean rows: the only subset that reads
ground truth; a ceiling, not a method), or a ``sweep`` (the best-first top fraction of the
primary selection, class proportions kept). Every subset x method x trial is one run with its
own 80/20 split and freshly re-loaded pretrained weights (:func:`~kairos_curate.training.finetune.train_run`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from kairos_curate.data.scenario import changed_rows
from kairos_curate.data.sources import ImageSource
from kairos_curate.progress import progress_bar
from kairos_curate.study.tables import summarise
from kairos_curate.training.backbones import Backbone
from kairos_curate.training.finetune import FinetuneConfig, compute_stem_features, train_run

__all__ = [
    "BUILTIN_SUBSETS",
    "METRICS",
    "Subset",
    "build_subsets",
    "run_grid",
    "summarise_grid",
    "sweep_subsets",
    "top_fraction_per_class",
    "variant_features",
]

#: Subset names that are not selections of the value stage.
BUILTIN_SUBSETS = ("full", "random", "oracle")
#: Metrics of a run, summarised as mean ± std.
METRICS = ("accuracy", "macro_f1", "auc", "train_time_s")
#: Columns that identify a subset in the run and summary tables.
SUBSET_KEYS = ("pool", "subset", "kind", "fraction")


@dataclass(frozen=True)
class Subset:
    """A named training subset of one pool.

    Attributes
    ----------
    name
        ``full``, ``random``, ``oracle`` or the value stage's selection name.
    kind
        ``full``, ``random``, ``curated``, ``oracle`` or ``sweep``.
    draws
        Pool row indices, one array per draw (several for ``random``).
    pool
        Which pool the rows index: ``original`` or ``noisy`` (the robustness variant).
    fraction
        For ``sweep``: the top fraction of the selection; 1 otherwise.
    """

    name: str
    kind: str
    draws: list[np.ndarray] = field(default_factory=list)
    pool: str = "original"
    fraction: float = 1.0

    @property
    def uses_ground_truth(self) -> bool:
        """Only the oracle is drawn with the truth table."""
        return self.kind == "oracle"


def build_subsets(
    names: Sequence[str],
    selections: Mapping[str, Any],
    pool_ids: np.ndarray,
    k: int,
    random_draws: int,
    seed: int,
    truth: pd.DataFrame | None,
    *,
    pool: str = "original",
) -> list[Subset]:
    """The subsets ``names`` of one pool, in order.

    Parameters
    ----------
    names
        ``full``, ``random``, ``oracle`` or names of ``selections``.
    selections
        The value stage's ``selections.json`` (selection name -> its ``ids``).
    pool_ids
        Ids of the pool rows (row order of the features).
    k
        Curated size (random and oracle draw this many).
    random_draws
        Number of random draws.
    seed
        Seed of the random and oracle draws (one generator, drawn in the order of ``names``).
    truth
        Truth table (``id``, ``noisy``); needed by ``oracle`` only.
    pool
        ``original`` or ``noisy``.
    """
    index = {sid: i for i, sid in enumerate(pool_ids.tolist())}
    rng = np.random.default_rng(seed)
    out = []
    for name in names:
        if name == "full":
            out.append(Subset(name, "full", [np.arange(pool_ids.size)], pool))
        elif name == "random":
            draws = [np.sort(rng.choice(pool_ids.size, size=k, replace=False)) for _ in range(random_draws)]
            out.append(Subset(name, "random", draws, pool))
        elif name == "oracle":
            if truth is None:
                raise ValueError("the oracle subset needs the truth table")
            clean = ~truth.set_index("id").loc[pool_ids, "noisy"].to_numpy(dtype=bool)
            rows = np.sort(rng.choice(np.flatnonzero(clean), size=min(k, int(clean.sum())), replace=False))
            out.append(Subset(name, "oracle", [rows], pool))
        elif name in selections:
            rows = np.asarray([index[i] for i in selections[name]["ids"]], dtype=np.int64)
            out.append(Subset(name, "curated", [rows], pool))
        else:
            raise ValueError(
                f"finetune subset {name!r} is neither {', '.join(BUILTIN_SUBSETS)} nor a selection of "
                f"the value stage (value.selections has {', '.join(sorted(selections))})"
            )
    return out


def top_fraction_per_class(ordered: np.ndarray, labels: np.ndarray, fraction: float) -> np.ndarray:
    """The first ``fraction`` of each class's rows in ``ordered`` (best first), classes kept in proportion.

    A selection stores its rows best-first, but per-class and herding selections list one class
    after another, so a plain prefix would train on the first classes only.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"finetune.size_fractions must be in (0, 1], got {fraction}")
    rows = np.asarray(ordered, dtype=np.int64)
    keep = np.zeros(rows.size, dtype=bool)
    for label in np.unique(labels[rows]):
        members = np.flatnonzero(labels[rows] == label)
        keep[members[: max(1, round(fraction * members.size))]] = True
    return rows[keep]


def sweep_subsets(curated: Subset, labels: np.ndarray, fractions: Sequence[float]) -> list[Subset]:
    """The sizes sweep: the top ``fractions`` of a curated selection (best first, per class)."""
    return [
        Subset(curated.name, "sweep", [top_fraction_per_class(curated.draws[0], labels, f)], curated.pool, float(f))
        for f in fractions
    ]


def run_grid(
    subsets: Sequence[Subset],
    features: Mapping[str, torch.Tensor],
    labels: np.ndarray,
    test_features: torch.Tensor,
    test_labels: np.ndarray,
    num_classes: int,
    backbone: Backbone,
    configs: Mapping[str, FinetuneConfig],
    *,
    trials: int,
    seed: int,
    progress: bool = False,
) -> pd.DataFrame:
    """Train every subset x method x trial; one row per run.

    Parameters
    ----------
    subsets
        What to train on (``sweep`` subsets train with the first method only: the curve is
        traced once, not over the whole grid).
    features
        Pool name (``original``/``noisy``) -> stem outputs of that pool (row = pool row).
    labels
        Pool labels as a user sees them (the same ids in both pools).
    test_features, test_labels
        The clean held-out test set.
    num_classes
        Number of task classes.
    backbone
        Gives a freshly re-loaded pretrained tail per run.
    configs
        Method name (``lora``/``partial``) -> its hyper-parameters, in order.
    trials
        Runs per subset draw and method.
    seed
        A run's seed is ``seed + 1000 * draw + trial``.
    progress
        A progress bar over the runs.
    """
    methods = list(configs)
    jobs = [
        (subset, draw, rows, method, trial)
        for subset in subsets
        for draw, rows in enumerate(subset.draws)
        for method in (methods[:1] if subset.kind == "sweep" else methods)
        for trial in range(trials)
    ]
    records = []
    for subset, draw, rows, method, trial in progress_bar(jobs, desc="fine-tuning runs", enabled=progress, unit="run"):
        result = train_run(
            backbone,
            features[subset.pool],
            labels,
            rows,
            test_features,
            test_labels,
            num_classes,
            configs[method],
            seed=seed + 1000 * draw + trial,
        )
        records.append(
            {
                "pool": subset.pool,
                "subset": subset.name,
                "kind": subset.kind,
                "fraction": subset.fraction,
                "method": method,
                "draw": draw,
                "trial": trial,
                "n_selected": int(rows.size),
                "uses_ground_truth": subset.uses_ground_truth,
                **result.as_dict(),
            }
        )
    return pd.DataFrame(records)


def summarise_grid(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(summary, sweep)``: mean ± std over trials (and random draws) per subset and method."""
    keys = [*SUBSET_KEYS, "method"]
    carry = ("n_selected", "trainable_params", "uses_ground_truth")
    is_sweep = runs["kind"] == "sweep"
    summary = summarise(runs[~is_sweep], keys, METRICS, carry)
    sweep = summarise(runs[is_sweep], keys, METRICS, carry) if is_sweep.any() else pd.DataFrame()
    return summary, sweep


def variant_features(
    backbone: Backbone, pool_features: torch.Tensor, pool: ImageSource, variant: ImageSource, device: str
) -> torch.Tensor:
    """Stem outputs of a pool variant: recomputed for the changed images, reused for the rest
    (exact: the stem is frozen and in eval mode)."""
    changed = changed_rows(pool, variant)
    out = pool_features.clone()
    if changed.size:
        out[torch.from_numpy(changed)] = compute_stem_features(
            backbone,
            variant.subset(changed),  # type: ignore[attr-defined]
            device=device,
            progress=False,
        )
    return out
