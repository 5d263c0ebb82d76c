"""Stage ``benchmark``: how well each valuation method finds injected problems, and what it buys.

For every *noise setting* (see :func:`parse_setting`) and seed, a variant of the pool is built
from the prepared scenario, every method of :data:`kairos_curate.baselines.METHODS` values it, and
the values are scored three ways:

1. **Detection** - lowest value = most suspicious; AUROC, average precision, precision/recall
   among the ``k`` most suspicious (``k`` = number injected, and budgets of 10% / 20% of the
   pool), the fraction-found vs fraction-inspected curve.
2. **Downstream of selection** - the top-``k`` subset under each selection policy (global,
   per-class, herding) vs ``random_draws`` uniform random subsets, an *oracle* subset drawn from
   truly clean samples (the only row that uses ground truth) and the full pool; a logistic-
   regression probe on the frozen embeddings, scored on the clean test set.
3. **Point removal** - drop the highest/lowest valued samples in steps and retrain the probe.

How the variants are built (ground truth is used to *build* and *score* them, never passed to a
method): the *base* is a seeded sample of ``base_size`` pool rows that the prepared scenario
left clean in pixels and on-task, with their true labels restored. Pixel settings corrupt a
``noise_fraction`` of the base's images with :mod:`kairos_curate.data.corruptions` (only those
rows are embedded anew; every other row comes from the embedding cache, keyed by id and content
hash); label settings flip labels (no pixels change, nothing to embed); ``off_task`` appends
off-task pool images with their plausible wrong labels; ``mix`` combines them; ``default`` is the
prepared pool itself.
"""

from __future__ import annotations

import time
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from kairos_curate.baselines.methods import METHODS, ValuationInputs, run_method
from kairos_curate.config import PATHS, none_if_default, parse_bool, parse_list
from kairos_curate.data import corruptions
from kairos_curate.data.scenario import Scenario, load_scenario
from kairos_curate.data.sources import image_arrays, images_source
from kairos_curate.evaluation import (
    detection_curve,
    detection_metrics,
    mean_std,
    probe_metrics,
    removal_curve,
    winner_table,
)
from kairos_curate.io import atomic_path, write_json
from kairos_curate.pipeline.value import aligned_embeddings

__all__ = [
    "SettingSpec",
    "Variant",
    "VariantBuilder",
    "auroc_heatmap",
    "downstream_rows",
    "parse_setting",
    "problem_masks",
    "removal_figure",
    "run",
    "summarise",
]

KINDS = ("pixel noise", "label flipped", "off-task")
SUMMARY_METRICS = (
    "auroc",
    "average_precision",
    "precision_at_k_bad",
    "recall_at_k_bad",
    "precision_at_budget_10pct",
    "recall_at_budget_10pct",
    "precision_at_budget_20pct",
    "recall_at_budget_20pct",
    "seconds",
)


# ----------------------------------------------------------------------------- noise settings


@dataclass(frozen=True)
class SettingSpec:
    """A parsed noise-setting name.

    Attributes
    ----------
    name : str
        As written in ``params.yaml`` (e.g. ``"gaussian_3"``, ``"flip_confusable_20"``).
    family : str
        ``default``, ``gaussian``, ``motion_blur``, ``sensor_noise``, ``flip``, ``off_task``, ``mix``.
    level : float
        Severity (gaussian, in clean-pool pixel stds), blur length (pixels), photons at full
        scale (sensor noise) or flip percentage; 0 when unused.
    mode : str
        ``uniform`` / ``confusable`` for flips, else ``""``.
    """

    name: str
    family: str
    level: float = 0.0
    mode: str = ""


def parse_setting(name: str) -> SettingSpec:
    """Parse a setting name.

    Known forms: ``default``, ``gaussian_<severity>``, ``motion_blur_<length>``,
    ``sensor_noise_<photons>``, ``flip_uniform_<percent>``, ``flip_confusable_<percent>``,
    ``off_task``, ``mix``.
    """
    text = str(name).strip()
    try:
        if text in ("default", "off_task", "mix"):
            return SettingSpec(text, text)
        if text.startswith("gaussian_"):
            return SettingSpec(text, "gaussian", float(text.removeprefix("gaussian_")))
        if text.startswith("motion_blur_"):
            return SettingSpec(text, "motion_blur", float(int(text.removeprefix("motion_blur_"))))
        if text.startswith("sensor_noise_"):
            return SettingSpec(text, "sensor_noise", float(text.removeprefix("sensor_noise_")))
        for mode in ("uniform", "confusable"):
            if text.startswith(f"flip_{mode}_"):
                pct = float(text.removeprefix(f"flip_{mode}_"))
                if not 0 < pct < 100:
                    raise ValueError
                return SettingSpec(text, "flip", pct, mode)
    except ValueError:
        pass
    raise ValueError(
        f"benchmark.settings: cannot read {text!r}; use default, gaussian_<std>, "
        "motion_blur_<length>, sensor_noise_<photons>, flip_uniform_<pct>, "
        "flip_confusable_<pct>, off_task or mix"
    )


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


def problem_masks(kind: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{problem: (is_bad, included)}``: all problems together, and each kind against clean rows."""
    kind = np.asarray(kind)
    clean = kind == "clean"
    out = {"any problem": (~clean, np.ones(kind.shape, dtype=bool))}
    present = [k for k in KINDS if (kind == k).any()]
    if len(present) > 1:
        for k in present:
            out[k] = (kind == k, (kind == k) | clean)
    return {name: m for name, m in out.items() if m[0].any() and not m[0][m[1]].all()}


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
            raise ValueError(
                "the benchmark needs the scenario's truth table; load it with truth_path"
            )
        if not 0.0 < noise_fraction < 1.0:
            raise ValueError(f"benchmark.noise_fraction must lie in (0, 1); got {noise_fraction}")
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
        self.unit_std = float(unit) if unit else corruptions.pixel_std_of(
            image_arrays(self.source, np.arange(min(256, len(self.source))))
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
                f"benchmark.base_size: only {self.base_size} clean on-task pool rows; need >= "
                f"{10 * self.n_classes}"
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
        return corruptions.confusion_from_matrix(
            confusion_matrix(y_test, pred, labels=classes), classes
        )

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


# ----------------------------------------------------------------------------- downstream


def downstream_rows(
    variant: Variant,
    values: dict[str, np.ndarray],
    ref_x: np.ndarray,
    y_ref: np.ndarray,
    probe: Callable[[np.ndarray, np.ndarray], dict[str, float]],
    *,
    top_frac: float,
    policies: Sequence[str],
    random_draws: int,
    n_classes: int,
    seed: int,
    herding_drop: float = 0.5,
    include_baselines: bool = True,
) -> list[dict[str, Any]]:
    """Train the probe on each method's top-k subset (per policy) and on the reference rows.

    Selection sees values, labels and embeddings only; ``variant.kind`` is used for the oracle
    row and for the share of bad samples in each subset.

    Parameters
    ----------
    variant
        The pool variant.
    values
        Method name -> ``(N,)`` values.
    ref_x, y_ref
        Reference embeddings and labels (class quotas and herding).
    probe
        ``probe(train_x, train_y) -> metrics`` on the clean test set.
    top_frac
        Subset size as a fraction of the variant.
    policies
        Selection policies for every method.
    random_draws
        Uniform random subsets of size ``k``.
    n_classes
        Number of task classes (for the smallest class count).
    seed
        Seed of the random and oracle draws.
    herding_drop
        ``drop_fraction`` of the herding policy: herd among each class's top ``1 - herding_drop``
        by value. With 0 herding never looks at the values, so every method gets the same subset.
    include_baselines
        Add the ``random``, ``oracle`` and ``full`` rows.

    Returns
    -------
    list of dict
        ``method``, ``policy``, ``draw``, ``k``, ``accuracy``, ``macro_f1``, ``bad_share``,
        ``min_class_count``.
    """
    from kairos_curate.valuation import select

    n = variant.y.shape[0]
    k = max(n_classes, round(float(top_frac) * n))
    rows: list[dict[str, Any]] = []

    def record(method: str, policy: str, draw: int, idx: np.ndarray) -> None:
        m = probe(variant.x[idx], variant.y[idx])
        counts = np.bincount(variant.y[idx], minlength=n_classes)
        rows.append(
            {
                "method": method,
                "policy": policy,
                "draw": draw,
                "k": int(idx.size),
                "accuracy": m["accuracy"],
                "macro_f1": m["macro_f1"],
                "bad_share": float(variant.bad[idx].mean()),
                "min_class_count": int(counts.min()),
            }
        )

    for name, vals in values.items():
        for policy in policies:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # starved classes show up as min_class_count
                chosen = select(
                    vals,
                    k,
                    policy=policy,
                    labels=variant.y,
                    ids=variant.ids,
                    reference_labels=y_ref,
                    embeddings=variant.x,
                    reference=ref_x,
                    seed=seed,
                    drop_fraction=float(herding_drop) if policy == "herding" else 0.0,
                )
            record(name, policy, 0, chosen.indices)
    if include_baselines:
        rng = np.random.default_rng([int(seed), 7])
        for draw in range(int(random_draws)):
            record("random_k", "uniform", draw, rng.choice(n, size=k, replace=False))
        clean = np.flatnonzero(~variant.bad)
        record(
            "oracle_k (uses truth)",
            "uniform",
            0,
            rng.choice(clean, size=min(k, clean.size), replace=False),
        )
        record("full pool", "all", 0, np.arange(n))
    return rows


# ----------------------------------------------------------------------------- summaries


def summarise(frame: pd.DataFrame, keys: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Mean and sample std of ``metrics`` over the rows of each ``keys`` group (``runs`` = rows)."""
    out = []
    for key, grp in frame.groupby(list(keys), sort=False):
        row: dict[str, Any] = dict(
            zip(keys, key if isinstance(key, tuple) else (key,), strict=True)
        )
        row["runs"] = len(grp)
        for metric in metrics:
            if metric in grp:
                row[f"{metric}_mean"], row[f"{metric}_std"] = mean_std(grp[metric])
        out.append(row)
    return pd.DataFrame(out)


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


# ----------------------------------------------------------------------------- the stage


def _encoder_embed(
    params: dict[str, Any], base: Path
) -> Callable[[np.ndarray, Any], np.ndarray]:
    """``embed(ids, pixels)`` with the stage's encoder, loaded on first use, through the cache."""
    state: dict[str, Any] = {}

    def embed(ids: np.ndarray, pixels: np.ndarray | list[np.ndarray]) -> np.ndarray:
        from kairos_curate.embedding import embed_source, load_encoder

        if "encoder" not in state:
            state["encoder"] = load_encoder(
                str(params["encoder"]),
                weights=none_if_default(params.get("weights")),
                image_size=int(params["image_size"]),
                device=str(params.get("device", "auto")),
            )
        _, x = embed_source(
            images_source(ids, pixels),
            state["encoder"],
            batch_size=int(params["batch_size"]),
            normalize=parse_bool(params["normalize"], "embed.normalize"),
            cache_dir=base / PATHS.embedding_cache,
            progress=False,
            num_workers=0,
        )
        return x

    return embed


def run(params: dict[str, Any], root: str | Path = ".", progress: bool = True) -> dict[str, Any]:
    """Run the benchmark (see the module docstring); write tables and metrics; return frames.

    Parameters
    ----------
    params
        ``methods``, ``settings``, ``n_seeds``, ``seed``, ``base_size``, ``noise_fraction``,
        ``top_frac``, ``policies``, ``herding_drop``, ``random_draws``, ``downstream_settings``,
        ``removal_setting``, ``removal_fractions``, ``probe_dim``, ``threads`` (CPU threads for
        torch and BLAS during the stage; 0 leaves them as they are), and the encoder settings
        ``encoder``, ``weights``, ``image_size``, ``batch_size``, ``normalize``, ``device``.
    root
        Project root.
    progress
        Print one line per setting.

    Returns
    -------
    dict
        ``detail``, ``summary`` (default setting), ``settings`` (all settings), ``winners``,
        ``downstream``, ``downstream_runs``, ``removal``, ``curves``, ``metrics``.
    """
    import torch
    from threadpoolctl import threadpool_limits

    threads = int(params.get("threads", 0))
    if threads < 0:
        raise ValueError(f"benchmark.threads must be >= 0 (0 = leave as is); got {threads}")
    if threads == 0:
        return _run(params, Path(root), progress)
    # Many small kernels and fits: on a few shared cores one thread each avoids oversubscription.
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(threads):
            return _run(params, Path(root), progress)
    finally:
        torch.set_num_threads(previous)


def _run(params: dict[str, Any], base: Path, progress: bool) -> dict[str, Any]:
    from sklearn.decomposition import PCA
    from threadpoolctl import threadpool_limits

    started = time.perf_counter()
    methods = parse_list(params["methods"], str, "benchmark.methods")
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"benchmark.methods: unknown {unknown}; known: {sorted(METHODS)}")
    specs = [parse_setting(s) for s in parse_list(params["settings"], str, "benchmark.settings")]
    names = [s.name for s in specs]
    down = parse_list(params["downstream_settings"], str, "benchmark.downstream_settings")
    missing = sorted(set(down) - set(names))
    if missing:
        raise ValueError(f"benchmark.downstream_settings {missing} are not in benchmark.settings")
    removal_setting = str(params["removal_setting"])
    if removal_setting not in names:
        raise ValueError(
            f"benchmark.removal_setting {removal_setting!r} is not in benchmark.settings"
        )
    policies = parse_list(params["policies"], str, "benchmark.policies")
    seeds = [int(params["seed"]) + i for i in range(int(params["n_seeds"]))]
    if not seeds:
        raise ValueError("benchmark.n_seeds must be >= 1")

    scenario = load_scenario(base / PATHS.prepared, base / PATHS.truth)
    pool, ref, test = scenario.table("pool"), scenario.table("reference"), scenario.table("test")
    pool_x = aligned_embeddings(
        base / PATHS.embeddings / "pool.npz", pool["id"].to_numpy(dtype=str)
    )
    ref_x = aligned_embeddings(
        base / PATHS.embeddings / "reference.npz", ref["id"].to_numpy(dtype=str)
    )
    test_x = aligned_embeddings(
        base / PATHS.embeddings / "test.npz", test["id"].to_numpy(dtype=str)
    )
    y_ref, y_test = ref["label"].to_numpy(), test["label"].to_numpy()
    n_classes = len(scenario.class_names)
    builder = VariantBuilder(
        scenario,
        pool_x,
        ref_x,
        test_x,
        _encoder_embed(params, base),
        base_size=int(params["base_size"]),
        noise_fraction=float(params["noise_fraction"]),
    )

    # Probe features: an unsupervised PCA of pool + reference embeddings (no labels, no test rows).
    with threadpool_limits(1, user_api="blas"):
        pca = PCA(
            n_components=min(int(params["probe_dim"]), pool_x.shape[1]),
            svd_solver="randomized",
            random_state=int(params["seed"]),
        ).fit(np.concatenate([pool_x, ref_x]))
        test_z = pca.transform(test_x)

    def probe(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        with threadpool_limits(1, user_api="blas"):
            z = pca.transform(x)
        return probe_metrics(z, y, test_z, y_test, n_classes)

    det_rows: list[dict[str, Any]] = []
    down_rows: list[dict[str, Any]] = []
    curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    removal: list[dict[str, Any]] = []
    embedded = 0
    fractions = parse_list(params["removal_fractions"], float, "benchmark.removal_fractions")
    for spec in specs:
        t0 = time.perf_counter()
        t_methods = t_down = 0.0
        for seed in seeds:
            variant = builder.build(spec, seed)
            embedded += variant.embedded
            masks = problem_masks(variant.kind)
            n = variant.y.shape[0]
            ks = {
                "k_bad": int(variant.bad.sum()),
                "budget_10pct": round(0.1 * n),
                "budget_20pct": round(0.2 * n),
            }
            values: dict[str, np.ndarray] = {}
            t1 = time.perf_counter()
            for name in methods:
                # The default pool is the same for every seed: deterministic methods run once.
                if spec.family == "default" and seed != seeds[0] and not METHODS[name].seeded:
                    continue
                out = run_method(name, ValuationInputs(variant.x, variant.y, ref_x, y_ref, seed))
                values[name] = out.values
                suspicion = -out.values
                for problem, (bad, included) in masks.items():
                    m = detection_metrics(suspicion[included], bad[included], ks)
                    det_rows.append(
                        {
                            "setting": spec.name,
                            "method": name,
                            "seed": seed,
                            "problem": problem,
                            "n": n,
                            "seconds": out.seconds,
                            **m,
                        }
                    )
                if seed == seeds[0]:
                    curves.setdefault(spec.name, {})[name] = detection_curve(
                        suspicion, masks["any problem"][0]
                    )
            t_methods += time.perf_counter() - t1
            t1 = time.perf_counter()
            if spec.name in down:
                for row in downstream_rows(
                    variant,
                    values,
                    ref_x,
                    y_ref,
                    probe,
                    top_frac=float(params["top_frac"]),
                    policies=policies,
                    random_draws=int(params["random_draws"]),
                    n_classes=n_classes,
                    seed=seed,
                    herding_drop=float(params.get("herding_drop", 0.5)),
                ):
                    down_rows.append({"setting": spec.name, "seed": seed, **row})
            if spec.name == removal_setting and seed == seeds[0]:
                for name, vals in values.items():
                    for direction in ("high", "low"):
                        for r in removal_curve(
                            vals,
                            pca.transform(variant.x),
                            variant.y,
                            test_z,
                            y_test,
                            fractions,
                            n_classes,
                            remove=direction,
                        ):
                            removal.append(
                                {"setting": spec.name, "method": name, "remove": direction, **r}
                            )
            t_down += time.perf_counter() - t1
        if progress:
            print(
                f"[benchmark] {spec.name}: {time.perf_counter() - t0:.1f} s (methods {t_methods:.1f} s, "
                f"downstream/removal {t_down:.1f} s)",
                flush=True,
            )

    detail = pd.DataFrame(det_rows)
    settings = summarise(detail, ["setting", "method", "problem"], SUMMARY_METRICS)
    default_name = next((s.name for s in specs if s.family == "default"), names[0])
    summary = (
        settings[settings["setting"] == default_name].drop(columns="setting").reset_index(drop=True)
    )
    any_problem = settings[settings["problem"] == "any problem"]
    contenders = [m for m in methods if m != "random"]
    winners = winner_table(any_problem, contenders=contenders or None)
    down_runs = pd.DataFrame(down_rows)
    downstream = (
        summarise(
            down_runs,
            ["setting", "method", "policy"],
            ("accuracy", "macro_f1", "bad_share", "min_class_count"),
        )
        if down_rows
        else pd.DataFrame()
    )
    removal_frame = pd.DataFrame(removal)
    curve_frame = pd.DataFrame(
        [
            {"method": m, "inspected": x, "found": f}
            for m, (xs, fs) in curves.get(default_name, {}).items()
            for x, f in zip(xs, fs, strict=True)
        ]
    )

    tables = base / PATHS.tables
    _write_csv(summary, tables / "benchmark_detection.csv")
    _write_csv(detail, tables / "benchmark_detection_runs.csv")
    _write_csv(settings, tables / "benchmark_noise_settings.csv")
    _write_csv(winners, tables / "benchmark_winners.csv")
    _write_csv(downstream, tables / "benchmark_downstream.csv")
    _write_csv(down_runs, tables / "benchmark_downstream_runs.csv")
    _write_csv(removal_frame, tables / "benchmark_point_removal.csv")
    _write_csv(curve_frame, tables / "benchmark_found_vs_inspected.csv")

    method_seconds = (
        detail.groupby("method")["seconds"].mean() if len(detail) else pd.Series(dtype=float)
    )
    metrics = {
        "n_pool": len(pool),
        "seeds": seeds,
        "settings": names,
        "methods": methods,
        "base_size": builder.base_size,
        "noise_fraction": builder.noise_fraction,
        "images_embedded_or_looked_up": embedded,
        "stage_seconds": time.perf_counter() - started,
        "method_seconds_mean": {k: float(v) for k, v in method_seconds.items()},
        "auroc": {
            f"{r['setting']}/{r['method']}": {
                "mean": r["auroc_mean"],
                "std": r["auroc_std"],
                "runs": r["runs"],
            }
            for r in any_problem.to_dict("records")
        },
        "winners": {
            r["setting"]: {
                "winner": r["winner"],
                "margin": r["margin"],
                "kairos_minus_other": r["kairos_minus_other"],
            }
            for r in winners.to_dict("records")
        },
    }
    if len(downstream):
        metrics["downstream_accuracy"] = {
            f"{r['setting']}/{r['method']}/{r['policy']}": r["accuracy_mean"]
            for r in downstream.to_dict("records")
        }
    write_json(base / PATHS.metrics / "benchmark.json", metrics)
    return {
        "detail": detail,
        "summary": summary,
        "settings": settings,
        "winners": winners,
        "downstream": downstream,
        "downstream_runs": down_runs,
        "removal": removal_frame,
        "curves": curves,
        "metrics": metrics,
    }


# ----------------------------------------------------------------------------- figures


def auroc_heatmap(
    settings: pd.DataFrame, *, problem: str = "any problem", ax: Axes | None = None
) -> Axes:
    """Mean AUROC per noise setting (rows) and method (columns), annotated."""
    import matplotlib.pyplot as plt

    table = settings[settings["problem"] == problem].pivot(
        index="setting", columns="method", values="auroc_mean"
    )
    table = table.reindex(index=list(dict.fromkeys(settings["setting"])))
    table = table[[c for c in dict.fromkeys(settings["method"]) if c in table.columns]]
    if ax is None:
        _, ax = plt.subplots(figsize=(1.1 * table.shape[1] + 3, 0.4 * table.shape[0] + 1.5))
    im = ax.imshow(table.to_numpy(dtype=float), vmin=0.0, vmax=1.0, cmap="RdYlGn", aspect="auto")
    ax.set_xticks(range(table.shape[1]), table.columns, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(table.shape[0]), table.index, fontsize=8)
    for i in range(table.shape[0]):
        for j in range(table.shape[1]):
            v = table.iat[i, j]
            if np.isfinite(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7)
    ax.figure.colorbar(im, ax=ax, label="AUROC (0.5 = chance)")
    ax.set_title(f"Detection AUROC, {problem} (mean over seeds)")
    return ax


def removal_figure(removal: pd.DataFrame, metric: str = "accuracy") -> Figure:
    """Point-removal curves: probe ``metric`` vs fraction removed, highest-first and lowest-first."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, direction, title in zip(
        axes,
        ("high", "low"),
        (
            "remove most valuable first (lower = better)",
            "remove least valuable first (higher = better)",
        ),
        strict=True,
    ):
        sub = removal[removal["remove"] == direction]
        for method, grp in sub.groupby("method", sort=False):
            ax.plot(grp["fraction"], grp[metric], marker="o", ms=3, label=method)
        ax.set_xlabel("fraction of the pool removed")
        ax.set_title(title, fontsize=9)
    axes[0].set_ylabel(f"probe {metric} on the clean test set")
    axes[1].legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig
