"""Figures used by the notebooks and the report. Every function takes ``ax=None`` and returns it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: notebooks and DVC stages render to files
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from kairos_curate.io import atomic_path

__all__ = [
    "bar_with_errors",
    "detection_curves",
    "embedding_scatter",
    "image_grid",
    "save_figure",
    "value_histogram",
]


def _axes(ax: Axes | None, figsize: tuple[float, float] = (6, 4)) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Save ``fig`` atomically as PNG and return the path."""
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    return target


def image_grid(images: np.ndarray | Sequence[np.ndarray], titles: Sequence[str] | None = None, *, ncols: int = 10,
               row_labels: Sequence[str] | None = None, cell: float = 0.9) -> Figure:
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


def embedding_scatter(points: np.ndarray, groups: Sequence[Any] | np.ndarray, *, ax: Axes | None = None, title: str = "",
                      order: Sequence[Any] | None = None, size: float = 4.0) -> Axes:
    """2-D scatter of projected embeddings coloured by ``groups``."""
    ax = _axes(ax, (6, 5))
    groups_arr = np.asarray(groups)
    labels = list(order) if order is not None else sorted(set(groups_arr.tolist()), key=str)
    palette = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    for i, label in enumerate(labels):
        mask = groups_arr == label
        if mask.any():
            ax.scatter(points[mask, 0], points[mask, 1], s=size, alpha=0.6, color=palette(i % palette.N),
                       label=f"{label} ({int(mask.sum())})", linewidths=0)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, markerscale=3, loc="best", frameon=False)
    return ax


def value_histogram(values: np.ndarray, groups: Sequence[Any] | np.ndarray | None = None, *, ax: Axes | None = None,
                    bins: int = 50, title: str = "", xlabel: str = "value") -> Axes:
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


def detection_curves(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], *, ax: Axes | None = None,
                     title: str = "") -> Axes:
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


def bar_with_errors(table: pd.DataFrame, *, x: str, mean: str, std: str, hue: str | None = None,
                    ax: Axes | None = None, title: str = "", ylabel: str = "") -> Axes:
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
