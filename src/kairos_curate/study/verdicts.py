"""The report's verdicts, computed: curated vs random vs full vs oracle, compute saved, sizes curve.

Every sentence here is built from result tables; none is typed by hand. Sentences use a small
inline markup that both report renderings understand: ``code`` in backticks and **bold**.
A difference counts only when it exceeds the summed standard deviations (:func:`compare`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = [
    "KeyResults",
    "compare",
    "compute_saved",
    "gap_closed",
    "key_results",
    "noise_verdicts",
    "pm",
    "sweep_sentence",
]


def pm(mean: float, std: float, digits: int = 3) -> str:
    """``mean ± std`` with ``digits`` decimals."""
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def compare(a: pd.Series, b: pd.Series, metric: str = "accuracy") -> str:
    """``"beat"``, ``"lost to"`` or ``"was within noise of"``: mean difference vs the summed stds."""
    diff = float(a[f"{metric}_mean"] - b[f"{metric}_mean"])
    noise = float(np.nan_to_num(a[f"{metric}_std"]) + np.nan_to_num(b[f"{metric}_std"]))
    if diff > noise:
        return "beat"
    if diff < -noise:
        return "lost to"
    return "was within noise of"


def gap_closed(curated: pd.Series, random: pd.Series, oracle: pd.Series, metric: str = "accuracy") -> float:
    """Share of the random-to-oracle gap the curated subset closes (NaN when there is no gap)."""
    gap = float(oracle[f"{metric}_mean"] - random[f"{metric}_mean"])
    if gap <= 0:
        return float("nan")
    return float(curated[f"{metric}_mean"] - random[f"{metric}_mean"]) / gap


def compute_saved(summary: pd.DataFrame) -> pd.DataFrame:
    """Each subset vs the full pool, per method: train-time ratio, time saved, AUC retained.

    ``summary`` holds one pool (columns ``subset``, ``method``, ``n_selected`` and the metric
    means). One row per method and non-full subset: ``train time (s)`` of the subset and of the
    full pool, ``speed-up`` (full / subset), ``time saved`` (1 - subset / full), ``AUC retained``
    (subset / full), and the F1 and accuracy differences (subset - full).
    """
    rows = []
    for method, group in summary.groupby("method", sort=False):
        table = group.set_index("subset")
        if "full" not in table.index:
            continue
        full = table.loc["full"]
        for subset, row in table.iterrows():
            if subset == "full":
                continue
            ratio = float(row["train_time_s_mean"] / full["train_time_s_mean"])
            rows.append(
                {
                    "method": method,
                    "subset": subset,
                    "N": int(row["n_selected"]),
                    "full N": int(full["n_selected"]),
                    "train time (s)": float(row["train_time_s_mean"]),
                    "full train time (s)": float(full["train_time_s_mean"]),
                    "speed-up": 1.0 / ratio if ratio > 0 else float("inf"),
                    "time saved": 1.0 - ratio,
                    "AUC retained": float(row["auc_mean"] / full["auc_mean"]),
                    "F1 - full F1": float(row["macro_f1_mean"] - full["macro_f1_mean"]),
                    "accuracy - full accuracy": float(row["accuracy_mean"] - full["accuracy_mean"]),
                }
            )
    return pd.DataFrame(rows)


def sweep_sentence(sweep: pd.DataFrame, level: float = 0.98) -> str:
    """The sizes curve in one sentence.

    Names the smallest fraction of the curated set whose mean accuracy reaches ``level`` of the
    best mean accuracy along the curve, and its share of the best point's training time.
    """
    frame = sweep.sort_values("fraction")
    best = frame.loc[frame["accuracy_mean"].idxmax()]
    enough = frame[frame["accuracy_mean"] >= level * best["accuracy_mean"]].iloc[0]
    if enough["fraction"] == best["fraction"]:
        return (
            f"Accuracy peaks at the top {best['fraction']:.0%} of the curated set "
            f"({int(best['n_selected'])} samples, {best['accuracy_mean']:.3f}); every smaller cut stays "
            f"below {level:.0%} of it."
        )
    return (
        f"The top {enough['fraction']:.0%} of the curated set ({int(enough['n_selected'])} samples) reaches "
        f"{enough['accuracy_mean'] / best['accuracy_mean']:.1%} of the best accuracy on this curve "
        f"({best['accuracy_mean']:.3f} at {best['fraction']:.0%}) with "
        f"{enough['train_time_s_mean'] / best['train_time_s_mean']:.0%} of its training time."
    )


@dataclass
class KeyResults:
    """The first-screen box: a headline, bullet lines, and a tone (good / mixed / bad / info)."""

    headline: str
    lines: list[str] = field(default_factory=list)
    tone: str = "info"


def _detection_line(detection: pd.DataFrame, method: str) -> str | None:
    any_problem = detection[detection["problem"] == "any problem"].set_index("method")
    if method not in any_problem.index:
        return None
    best = any_problem["auroc_mean"].idxmax()
    row = any_problem.loc[method]
    tail = (
        "the best of the methods compared"
        if best == method
        else f"best method: `{best}` at {any_problem.loc[best, 'auroc_mean']:.3f}"
    )
    precision = (
        f"; among the k lowest-valued samples (k = number of problems), "
        f"{row['precision_at_k_bad_mean']:.0%} are real problems"
        if "precision_at_k_bad_mean" in any_problem.columns
        else ""
    )
    return (
        f"Finding injected problems: the lowest KAIROS values (`{method}`) flag noisy, mislabelled and "
        f"off-task pool samples with AUROC {row['auroc_mean']:.3f} ({tail}){precision}."
    )


def key_results(
    summary: pd.DataFrame | None,
    *,
    primary: str,
    method: str,
    detection: pd.DataFrame | None = None,
    value_method: str = "kairos_feature",
    sweep_text: str | None = None,
    pool_size: int | None = None,
    noisy: pd.DataFrame | None = None,
) -> KeyResults:
    """The poster's "Key Result", computed, and honest when curation loses.

    Parameters
    ----------
    summary
        Fine-tuning summary of the original pool (columns ``subset``, ``kind``, ``method``...),
        or ``None`` if fine-tuning has not run.
    primary
        Name of the primary curated selection.
    method
        Fine-tuning method of the headline (``lora``).
    detection
        Detection summary of the prepared pool, for the detection bullet.
    value_method
        The value stage's valuation method (named in the detection bullet).
    sweep_text
        The sizes-curve sentence.
    pool_size
        Pool size, to state the curated fraction.
    noisy
        Fine-tuning summary of the noisy pool variant, if any.
    """
    lines: list[str] = []
    if detection is not None:
        line = _detection_line(detection, value_method)
        if line:
            lines.append(line)
    if summary is None or summary.empty:
        return KeyResults(
            "Fine-tuning results are missing: run `dvc repro finetune` to compare curated, random "
            "and full training sets.",
            lines,
        )
    notes = []
    methods = list(dict.fromkeys(summary["method"]))
    shown_method = method if method in methods else methods[0]
    if shown_method != method:
        notes.append(f"method `{method}` not in the results; showing `{shown_method}`")
    table = summary[summary["method"] == shown_method].set_index("subset")
    curated = table.index[table["kind"] == "curated"].tolist()
    if not curated:
        return KeyResults(
            f"No curated selection was fine-tuned with {shown_method}; add a name of "
            "`value.selections` to `finetune.subsets`.",
            lines,
        )
    shown = primary if primary in curated else curated[0]
    if shown != primary:
        notes.append(f"selection `{primary}` not in the results; showing `{shown}`")
    row = table.loc[shown]
    n = int(row["n_selected"])
    share = f", {n / pool_size:.0%} of the pool" if pool_size else ""
    name = f"KAIROS-curated (`{shown}` selection, N={n}{share}), {shown_method}"
    tone = "info"
    verdict_random = None
    if "random" in table.index:
        rnd = table.loc["random"]
        verdict_random = compare(row, rnd)
        tone = {"beat": "good", "lost to": "bad"}.get(verdict_random, "mixed")
        lines.insert(
            0,
            f"Against random subsets of the same size: {name} **{verdict_random}** random "
            f"(accuracy {pm(row['accuracy_mean'], row['accuracy_std'])} vs "
            f"{pm(rnd['accuracy_mean'], rnd['accuracy_std'])}; F1 "
            f"{pm(row['macro_f1_mean'], row['macro_f1_std'])} vs "
            f"{pm(rnd['macro_f1_mean'], rnd['macro_f1_std'])}).",
        )
    if "full" in table.index:
        full = table.loc["full"]
        retained = row["auc_mean"] / full["auc_mean"]
        saved = 1.0 - row["train_time_s_mean"] / full["train_time_s_mean"]
        f1_word = "higher" if row["macro_f1_mean"] > full["macro_f1_mean"] else "lower"
        headline = (
            f"{name} retained {retained:.1%} of the full pool's AUC ({row['auc_mean']:.3f} vs "
            f"{full['auc_mean']:.3f}) while {'reducing' if saved >= 0 else 'increasing'} training time by "
            f"{abs(saved):.1%} ({row['train_time_s_mean']:.1f} s vs {full['train_time_s_mean']:.1f} s), "
            f"with {f1_word} F1 ({row['macro_f1_mean']:.3f} vs {full['macro_f1_mean']:.3f})."
        )
        lines.append(
            f"Against the full pool (N={int(full['n_selected'])}): accuracy "
            f"{pm(row['accuracy_mean'], row['accuracy_std'])} vs "
            f"{pm(full['accuracy_mean'], full['accuracy_std'])} - curated {compare(row, full)} full."
        )
    else:
        headline = (
            f"{name}: accuracy {pm(row['accuracy_mean'], row['accuracy_std'])}, AUC "
            f"{pm(row['auc_mean'], row['auc_std'])} (no full-pool run to compare with)."
        )
    if verdict_random == "lost to":
        headline = (
            "Curation did not pay off in this run: the curated subset lost to random subsets of the same "
            "size. " + headline
        )
    elif verdict_random == "was within noise of":
        headline = "Curated and random subsets of the same size were within noise of each other. " + headline
    if "oracle" in table.index and "random" in table.index:
        orc = table.loc["oracle"]
        closed = gap_closed(row, table.loc["random"], orc)
        closed_text = (
            f"; the curated subset closed {closed:.0%} of the random-to-oracle gap" if np.isfinite(closed) else ""
        )
        lines.append(
            f"Ceiling: the oracle subset (same size, known-clean by ground truth; not a method) reached "
            f"accuracy {pm(orc['accuracy_mean'], orc['accuracy_std'])}{closed_text}."
        )
    others = [c for c in curated if c != shown]
    if others and "random" in table.index:
        rnd = table.loc["random"]
        lines.append(
            "Other KAIROS selections vs random: "
            + "; ".join(
                f"`{c}` {compare(table.loc[c], rnd)} random ({table.loc[c, 'accuracy_mean']:.3f})" for c in others
            )
            + "."
        )
    if noisy is not None and not noisy.empty:
        lines += [f"Robustness: {v}" for v in noise_verdicts(noisy[noisy["method"] == shown_method])]
    if sweep_text:
        lines.append(f"Sizes curve: {sweep_text}")
    if notes:
        lines.append("Note: " + "; ".join(notes) + ".")
    return KeyResults(headline, lines, tone)


def noise_verdicts(noisy: pd.DataFrame) -> list[str]:
    """One sentence per method: curated selections vs random and full on the noisy pool."""
    out = []
    for method, group in noisy.groupby("method", sort=False):
        table = group.set_index("subset")
        parts = []
        for subset in table.index[table["kind"] == "curated"]:
            row = table.loc[subset]
            for other in ("random", "full"):
                if other in table.index:
                    parts.append(
                        f"`{subset}` {compare(row, table.loc[other])} {other} "
                        f"({row['accuracy_mean']:.3f} vs {table.loc[other, 'accuracy_mean']:.3f})"
                    )
        if parts:
            out.append(f"On the noisy pool with {method} (accuracy): " + "; ".join(parts) + ".")
    return out
