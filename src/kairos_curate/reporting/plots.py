"""Every figure of the notebooks and the report, drawn from result objects and tables.

Functions that draw one panel take ``ax=None`` (a new figure when omitted) and return the axes;
functions that lay out several panels return the figure. None of them computes results: they
plot what the study modules produced. :func:`save_figure` writes a PNG atomically and leaves the
figure open, so a notebook also shows it inline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

from kairos_curate.data import corruptions
from kairos_curate.data.scenario import Scenario
from kairos_curate.io import atomic_path

__all__ = [
    "auroc_heatmap",
    "bar_with_errors",
    "compute_vs_accuracy",
    "corruption_gallery",
    "corruption_grid",
    "detection_curves",
    "detection_curves_by_setting",
    "downstream_bars",
    "embedding_scatter",
    "figure_of",
    "finetune_metrics",
    "image_grid",
    "projection_figure",
    "removal_figure",
    "sample_grid",
    "save_figure",
    "selection_histograms",
    "sizes_sweep",
    "suite_budget_curve",
    "value_histogram",
    "value_terms",
]


def _axes(ax: Axes | None, figsize: tuple[float, float] = (6, 4)) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def figure_of(ax: Axes) -> Figure:
    """The top-level figure an axes belongs to."""
    fig = ax.get_figure(root=True)
    assert isinstance(fig, Figure)
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Save ``fig`` atomically as PNG and return the path."""
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    return target


def image_grid(
    images: np.ndarray | Sequence[np.ndarray],
    titles: Sequence[str] | None = None,
    *,
    ncols: int = 10,
    row_labels: Sequence[str] | None = None,
    cell: float = 0.9,
) -> Figure:
    """A grid of greyscale or RGB uint8 images (row-major), optional titles and row labels."""
    n = len(images)
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * cell, nrows * cell * 1.1), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        if i < n:
            ax.imshow(images[i], cmap="gray" if images[i].ndim == 2 else None, vmin=0, vmax=255)
            if titles is not None:
                ax.set_title(titles[i], fontsize=6)
        if row_labels is not None and i % ncols == 0 and i // ncols < len(row_labels):
            ax.set_ylabel(row_labels[i // ncols], fontsize=7, rotation=0, ha="right", va="center")
    fig.tight_layout()
    return fig


def embedding_scatter(
    points: np.ndarray,
    groups: Sequence[Any] | np.ndarray,
    *,
    ax: Axes | None = None,
    title: str = "",
    order: Sequence[Any] | None = None,
    size: float = 4.0,
) -> Axes:
    """2-D scatter of projected embeddings coloured by ``groups``."""
    ax = _axes(ax, (6, 5))
    groups_arr = np.asarray(groups)
    labels = list(order) if order is not None else sorted(set(groups_arr.tolist()), key=str)
    palette = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    for i, label in enumerate(labels):
        mask = groups_arr == label
        if mask.any():
            ax.scatter(
                points[mask, 0],
                points[mask, 1],
                s=size,
                alpha=0.6,
                color=palette(i % palette.N),
                label=f"{label} ({int(mask.sum())})",
                linewidths=0,
            )
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, markerscale=3, loc="best", frameon=False)
    return ax


def value_histogram(
    values: np.ndarray,
    groups: Sequence[Any] | np.ndarray | None = None,
    *,
    ax: Axes | None = None,
    bins: int = 50,
    title: str = "",
    xlabel: str = "value",
) -> Axes:
    """Histogram of values, split by ``groups`` when given (densities, so sizes compare)."""
    ax = _axes(ax)
    vals = np.asarray(values, dtype=np.float64)
    edges = np.histogram_bin_edges(vals, bins=bins).tolist()
    if groups is None:
        ax.hist(vals, bins=edges, color="C0", alpha=0.8)
    else:
        groups_arr = np.asarray(groups)
        for label in sorted(set(groups_arr.tolist()), key=str):
            mask = groups_arr == label
            ax.hist(vals[mask], bins=edges, alpha=0.55, density=True, label=f"{label} ({int(mask.sum())})")
        ax.legend(fontsize=7, frameon=False)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    return ax


def detection_curves(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]], *, ax: Axes | None = None, title: str = ""
) -> Axes:
    """Fraction of bad samples found vs fraction inspected, one line per method."""
    ax = _axes(ax, (5, 4.5))
    for name, (inspected, found) in curves.items():
        ax.plot(inspected, found, label=name)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":", label="chance")
    ax.set_xlabel("fraction of pool inspected (lowest value first)")
    ax.set_ylabel("fraction of injected problems found")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_title(title)
    ax.legend(fontsize=7, frameon=False)
    return ax


def bar_with_errors(
    table: pd.DataFrame,
    *,
    x: str,
    mean: str,
    std: str,
    hue: str | None = None,
    ax: Axes | None = None,
    title: str = "",
    ylabel: str = "",
) -> Axes:
    """Grouped bars of ``mean`` with ``std`` error bars."""
    ax = _axes(ax, (7, 4))
    xs = list(dict.fromkeys(table[x].tolist()))
    hues = list(dict.fromkeys(table[hue].tolist())) if hue else [None]
    width = 0.8 / len(hues)
    for j, h in enumerate(hues):
        sub = table if h is None else table[table[hue] == h]
        sub = sub.set_index(x).reindex(xs)
        pos = np.arange(len(xs)) + (j - (len(hues) - 1) / 2) * width
        ax.bar(pos, sub[mean], width=width, yerr=sub[std], capsize=3, label=None if h is None else str(h))
    ax.set_xticks(np.arange(len(xs)))
    ax.set_xticklabels(xs, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if hue:
        ax.legend(fontsize=7, frameon=False)
    return ax


# ----------------------------------------------------------------------------- scenario (EDA)


def _blank_like(images: list[np.ndarray]) -> np.ndarray:
    return np.zeros_like(images[0]) if images else np.zeros((8, 8), dtype=np.uint8)


def sample_grid(scenario: Scenario, split: str = "reference", per_class: int = 8, seed: int = 0) -> Figure:
    """``per_class`` random images of each task class in ``split``."""
    rng = np.random.default_rng(seed)
    table = scenario.table(split)
    chosen: list[int | None] = []
    for label in range(len(scenario.class_names)):
        rows = np.flatnonzero(table["label"].to_numpy() == label)
        pick: list[int | None] = list(rng.choice(rows, size=min(per_class, rows.size), replace=False))
        chosen.extend(pick + [None] * (per_class - len(pick)))
    shown = scenario.thumbnails(split, [i for i in chosen if i is not None])
    blank = _blank_like(shown)
    it = iter(shown)
    images = [next(it) if i is not None else blank for i in chosen]
    return image_grid(images, ncols=per_class, row_labels=scenario.class_names)


def corruption_grid(scenario: Scenario, per_kind: int = 8, seed: int = 0) -> Figure:
    """Pool images per ground-truth problem: clean, each noise severity, label flips, off-task."""
    rng = np.random.default_rng(seed)
    pool = scenario.table("pool").merge(scenario.truth, on="id")
    kinds: list[tuple[str, np.ndarray]] = [("clean", (~pool["noisy"]).to_numpy())]
    for sev in sorted(pool.loc[pool["corruption"] != "none", "severity"].unique()):
        kinds.append(
            (f"noise {sev:g} std", ((pool["corruption"] == "gaussian_noise") & (pool["severity"] == sev)).to_numpy())
        )
    kinds.append(("label flipped", pool["label_flipped"].to_numpy()))
    kinds.append(("off-task", pool["off_task"].to_numpy()))
    picks = []
    for _, mask in kinds:
        rows = np.flatnonzero(mask)
        picks.append(rng.choice(rows, size=min(per_kind, rows.size), replace=False) if rows.size else np.array([], int))
    shown = iter(scenario.thumbnails("pool", np.concatenate(picks).astype(np.int64)))
    images: list[np.ndarray] = []
    titles, labels = [], []
    for (name, _), pick in zip(kinds, picks, strict=True):
        for i in pick:
            images.append(next(shown))
            titles.append(str(pool.loc[i, "class_name"]))
        labels.append(name)
        titles.extend([""] * (per_kind - pick.size))
        images.extend([None] * (per_kind - pick.size))  # type: ignore[list-item]
    blank = _blank_like([img for img in images if img is not None])
    return image_grid([img if img is not None else blank for img in images], titles, ncols=per_kind, row_labels=labels)


GALLERY = (
    ("gaussian_noise", {"severity": 0.1}),
    ("gaussian_noise", {"severity": 0.5}),
    ("gaussian_noise", {"severity": 1.0}),
    ("gaussian_noise", {"severity": 3.0}),
    ("gaussian_noise", {"severity": 6.0}),
    ("gaussian_noise", {"severity": 9.0}),
    ("motion_blur", {"length": 3, "angle": 0.0}),
    ("motion_blur", {"length": 7, "angle": 45.0}),
    ("sensor_noise", {"photons": 50.0, "read_noise": 5.0}),
    ("sensor_noise", {"photons": 5.0, "read_noise": 10.0}),
    ("jpeg_artefacts", {"quality": 30}),
    ("jpeg_artefacts", {"quality": 5}),
)


def corruption_gallery(scenario: Scenario, n_images: int = 6, seed: int = 0) -> Figure:
    """Every pixel corruption at several severities, applied to the same clean reference images.

    Display only (the images shown are copies): it shows where each corruption starts to destroy
    the image. Gaussian severities are in units of the clean pool's pixel std; the poster's 3/6/9
    saturate on Fashion-MNIST, hence the milder levels.
    """
    rng = np.random.default_rng(seed)
    n_ref = int(scenario.split_mask("reference").sum())
    pick = np.sort(rng.choice(n_ref, size=min(n_images, n_ref), replace=False))
    chosen = np.stack(scenario.thumbnails("reference", pick, size=128))
    rows = np.arange(chosen.shape[0])
    unit = float(scenario.info["severity_unit_pixel_std"])
    images, labels = [chosen], ["clean"]
    for kind, kwargs in GALLERY:
        extra = {"unit_std": unit} if kind == "gaussian_noise" else {}
        result = corruptions.apply_corruption(kind, chosen, rows, rng, **kwargs, **extra)
        images.append(result.images)
        labels.append(kind.replace("_", " ") + " " + ", ".join(f"{k}={v:g}" for k, v in kwargs.items()))
    return image_grid(np.concatenate(images), ncols=chosen.shape[0], row_labels=labels)


# ----------------------------------------------------------------------------- method comparison


def auroc_heatmap(settings: pd.DataFrame, *, problem: str = "any problem", ax: Axes | None = None) -> Axes:
    """Mean AUROC per noise setting (rows) and method (columns), annotated."""
    import matplotlib.pyplot as plt

    table = settings[settings["problem"] == problem].pivot(index="setting", columns="method", values="auroc_mean")
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


def detection_curves_by_setting(
    curves: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]], ncols: int = 4
) -> Figure:
    """One found-vs-inspected panel per noise setting (``curves``: setting -> method -> curve)."""
    names = list(curves)
    nrows = max(1, (len(names) + ncols - 1) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 3.6 * nrows), squeeze=False)
    for ax, name in zip(axes.ravel(), names, strict=False):
        detection_curves(curves[name], ax=ax, title=name)
        legend = ax.get_legend()
        if legend is not None:
            legend.set_visible(name == names[0])
    for ax in axes.ravel()[len(names) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def downstream_bars(downstream: pd.DataFrame, setting: str, *, ax: Axes | None = None) -> Axes:
    """Probe accuracy of every method x selection (and the baselines) on one noise setting."""
    sub = (
        downstream[downstream["setting"] == setting]
        .assign(label=lambda d: d["method"] + " / " + d["policy"])
        .sort_values("accuracy_mean")
    )
    ax = bar_with_errors(
        sub,
        x="label",
        mean="accuracy_mean",
        std="accuracy_std",
        ax=ax,
        title=f"Probe accuracy on the clean test set - {setting}",
        ylabel="accuracy",
    )
    ax.set_ylim(max(0.0, float(sub["accuracy_mean"].min()) - 0.1), 1.0)
    ax.tick_params(axis="x", labelrotation=75, labelsize=7)
    return ax


# ----------------------------------------------------------------------------- embeddings and values


def projection_figure(
    points: np.ndarray, source: np.ndarray, labels: np.ndarray, class_names: Sequence[str], method: str = "tsne"
) -> Figure:
    """Projected pool and reference embeddings, coloured by source and by shown class."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    embedding_scatter(
        points, source, ax=axes[0], title=f"{method.upper()}: pool vs reference", order=["pool", "reference"]
    )
    embedding_scatter(points, labels, ax=axes[1], title=f"{method.upper()}: shown class", order=class_names)
    fig.tight_layout()
    return fig


def value_terms(frame: pd.DataFrame, columns: Sequence[str] = ("b", "a", "value"), group: str = "class_name") -> Figure:
    """Histograms of the value terms (columns of a values table), split by ``group``."""
    fig, axes = plt.subplots(1, len(columns), figsize=(4.7 * len(columns), 3.5), squeeze=False)
    for ax, column in zip(axes.ravel(), columns, strict=True):
        value_histogram(
            frame[column].to_numpy(), frame[group].to_numpy(), ax=ax, xlabel=column, title=f"{column} by shown class"
        )
    fig.tight_layout()
    return fig


def selection_histograms(histograms: pd.DataFrame, k: int, *, ax: Axes | None = None) -> Axes:
    """Selected images per class (rows) and selection (columns)."""
    ax = _axes(ax, (8, 3.5))
    histograms.plot.bar(ax=ax, rot=20)
    ax.set_ylabel("selected images")
    ax.set_title(f"Selections of k={k}, by class")
    return ax


# ----------------------------------------------------------------------------- fine-tuning


def finetune_metrics(summary: pd.DataFrame, metrics: Sequence[str] = ("accuracy", "macro_f1", "auc")) -> Figure:
    """Mean ± std of each metric per subset, one bar per fine-tuning method."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.8), squeeze=False)
    for ax, metric in zip(axes.ravel(), metrics, strict=True):
        bar_with_errors(
            summary,
            x="subset",
            mean=f"{metric}_mean",
            std=f"{metric}_std",
            hue="method",
            ax=ax,
            title=metric,
            ylabel=metric,
        )
    fig.tight_layout()
    return fig


def sizes_sweep(sweep: pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """Quality vs size along the sizes sweep (top fractions of the primary selection)."""
    ax = _axes(ax, (6, 3.8))
    frame = sweep.sort_values("fraction")
    for metric in ("accuracy", "macro_f1", "auc"):
        ax.errorbar(
            frame["n_selected"],
            frame[f"{metric}_mean"],
            yerr=frame[f"{metric}_std"],
            marker="o",
            capsize=3,
            label=metric,
        )
    ax.set_xlabel(f"training samples (top fractions of `{frame['subset'].iloc[0]}`)")
    ax.legend(frameon=False)
    ax.set_title("Quality vs curated subset size")
    return ax


def compute_vs_accuracy(summary: pd.DataFrame, sweep: pd.DataFrame | None = None, *, ax: Axes | None = None) -> Axes:
    """Accuracy vs train time (log scale) for every subset and method, with the sizes curve."""
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    ax = _axes(ax, (7, 4.2))
    markers = ["o", "s", "^", "D", "v"]
    for k, (method, group) in enumerate(summary.groupby("method", sort=False)):
        ax.errorbar(
            group["train_time_s_mean"],
            group["accuracy_mean"],
            xerr=group["train_time_s_std"],
            yerr=group["accuracy_std"],
            fmt=markers[k % len(markers)],
            capsize=3,
            label=str(method),
        )
        for _, row in group.iterrows():
            ax.annotate(
                str(row["subset"]),
                (row["train_time_s_mean"], row["accuracy_mean"]),
                fontsize=7,
                xytext=(4, 3),
                textcoords="offset points",
            )
    if sweep is not None and not sweep.empty:
        frame = sweep.sort_values("fraction")
        ax.plot(frame["train_time_s_mean"], frame["accuracy_mean"], "--", color="grey", label="sizes curve")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("train time (s, log scale)")
    ax.set_ylabel("test accuracy")
    ax.set_title("Compute vs accuracy")
    ax.legend(fontsize=8, frameon=False)
    figure_of(ax).tight_layout()
    return ax


def _is_grey(colour: Any) -> bool:
    """A colour with equal red, green and blue (the cycle's grey, kept for the ground-truth ceilings)."""
    r, g, b = to_rgb(colour)
    return max(r, g, b) - min(r, g, b) < 0.02


def suite_budget_curve(
    summary: pd.DataFrame,
    *,
    scenario: str = "default",
    evaluator: str | None = None,
    metric: str = "accuracy",
    selections: Sequence[str] | None = None,
    ax: Axes | None = None,
) -> Axes:
    """The selection suite's budget curve: ``metric`` (mean ± std over seed x trial) vs budget for
    each selection on one scenario and evaluator; development seeds solid, held-out dashed.

    ``evaluator`` defaults to the first fine-tuning evaluator present (else the probe); oracle
    rows (they read ground truth) are drawn in black and grey with their own markers; every other
    selection gets its own colour of the cycle (grey left out); the legend sits outside the axes.
    """
    ax = _axes(ax, (7, 4.2))
    frame = summary[summary["scenario"] == scenario]
    if evaluator is None:
        present = list(dict.fromkeys(frame["evaluator"]))
        evaluator = next((e for e in present if e != "probe"), present[0] if present else "probe")
    frame = frame[frame["evaluator"] == evaluator]
    names = list(selections) if selections is not None else list(dict.fromkeys(frame["selection"]))
    cycle = [c for c in plt.rcParams["axes.prop_cycle"].by_key()["color"] if not _is_grey(c)]
    ceiling_styles = [("black", "s"), ("grey", "^"), ("dimgrey", "D")]
    methods = ceilings = 0
    for name in names:
        rows = frame[frame["selection"] == name]
        truth = bool(rows["uses_ground_truth"].any()) if len(rows) else False
        if truth:
            colour, marker = ceiling_styles[ceilings % len(ceiling_styles)]
            ceilings += 1
        else:
            colour, marker = cycle[methods % len(cycle)], "o"
            methods += 1
        for split, style, nudge in (("development", "-", 0.97), ("held_out", "--", 1.03)):  # side by side
            part = rows[rows["split"] == split].sort_values("budget")
            if part.empty:
                continue
            label = (
                f"{name}{' (uses truth)' if truth else ''}"
                if split == "development" or "development" not in set(rows["split"])
                else None
            )
            ax.errorbar(
                part["budget"] * nudge,
                part[f"{metric}_mean"],
                yerr=part[f"{metric}_std"].fillna(0.0),
                fmt=style,
                marker=marker,
                capsize=3,
                color=colour,
                label=label,
            )
    ax.set_xscale("log")
    budgets = sorted(frame["budget"].unique())
    ax.set_xticks(budgets, [f"{b:.0%}" for b in budgets])
    if budgets:
        ax.set_xlim(budgets[0] * 0.8, budgets[-1] * 1.25)
    ax.minorticks_off()
    ax.set_xlabel("budget (share of the pool)")
    ax.set_ylabel(f"test {metric}")
    ax.set_title(f"Selection suite: {scenario}, {evaluator} (solid: development seeds, dashed: held-out)", fontsize=9)
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure_of(ax).tight_layout()
    return ax
