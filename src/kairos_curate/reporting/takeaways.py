"""The closing "what this shows" of each rendered notebook, built from that stage's own results.

Each function returns Markdown (a short paragraph or a few bullets); no number in it is typed by
hand. The notebooks display it with ``IPython.display.Markdown``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from kairos_curate.data.scenario import Scenario
from kairos_curate.study.verdicts import compare, key_results, pm

__all__ = ["compare_takeaways", "embed_takeaways", "finetune_takeaways", "prepare_takeaways", "value_takeaways"]


def _bullets(lines: list[str]) -> str:
    return "\n".join(f"- {line}" for line in lines)


def prepare_takeaways(scenario: Scenario, overlap: pd.DataFrame) -> str:
    """Pool composition and where off-task images crowd a class."""
    c = scenario.info["counts"]
    lines = [
        f"The pool holds {c['pool']} images, {c['pool_noisy'] / c['pool']:.0%} of them with a problem a user "
        f"cannot see in the labels: {c['pool_off_task']} off-task, {c['pool_pixel_noise']} with pixel noise, "
        f"{c['pool_label_flipped']} with a flipped label.",
        f"The clean reference has {c['reference']} images and the held-out test set {c['test']}; neither shares "
        "an image with the pool.",
    ]
    if len(overlap) and overlap["pool images"].sum():
        share = overlap["off-task"] / overlap["pool images"].clip(lower=1)
        worst = overlap.loc[share.idxmax()]
        lines.append(
            f"Off-task images crowd `{worst['class']}` most: {int(worst['off-task'])} of its "
            f"{int(worst['pool images'])} pool images ({share.max():.0%}); a fixed per-class drop "
            "fraction cannot fit every class."
        )
    return _bullets(lines)


def embed_takeaways(metrics: dict[str, Any], distance: np.ndarray, groups: np.ndarray) -> str:
    """Throughput, and whether problems sit farther from the reference than clean images."""
    lines = [
        f"`{metrics['encoder']}` embedded {sum(v for k, v in metrics.items() if k.endswith('_images'))} images "
        f"({metrics['dim']}-d) at {metrics['images_per_second']:.0f} images/s on `{metrics['device']}`."
    ]
    clean = float(np.median(distance[groups == "clean"])) if (groups == "clean").any() else float("nan")
    for group in sorted(set(groups.tolist()) - {"clean"}):
        med = float(np.median(distance[groups == group]))
        word = "farther from" if med > clean else "no farther from"
        lines.append(
            f"{group}: median nearest-reference distance {med:.3f} vs {clean:.3f} for clean images, "
            f"{word} the reference ({'a signal a reference-based value can use' if med > clean else 'no signal for a distance-based value'})."
        )
    return _bullets(lines)


def value_takeaways(out: dict[str, Any]) -> str:
    """Cost of the valuation and how each selection covers the classes."""
    m = out["metrics"]
    lines = [
        f"`{m['method']}` valued {m['pool_size']} pool samples in {m['value_seconds']:.2f} s "
        f"(bandwidth {m['bandwidth']:.4g})."
    ]
    for name, sel in m["selections"].items():
        state = (
            f"left {sel['classes_missing']} class(es) empty"
            if sel["classes_missing"]
            else f"smallest class {sel['smallest_class_count']} of {m['k']}"
        )
        own = f", values of `{sel['method']}`" if sel.get("method", m["method"]) != m["method"] else ""
        lines.append(
            f"`{name}` (policy `{sel['policy']}`{own}){' [primary]' if name == m['primary'] else ''}: {state}"
            + (f", {sel['warnings']} warning(s)" if sel["warnings"] else "")
            + "."
        )
    return _bullets(lines)


def compare_takeaways(tables: Any) -> str:
    """Who detects best on the prepared pool, where KAIROS loses, and what selections buy."""
    lines = []
    summary = tables.summary[tables.summary["problem"] == "any problem"].sort_values("auroc_mean", ascending=False)
    if len(summary):
        best = summary.iloc[0]
        lines.append(
            f"On the prepared pool `{best['method']}` flags injected problems best (AUROC "
            f"{pm(best['auroc_mean'], best['auroc_std'])})."
        )
    winners = tables.winners
    if len(winners):
        losing = winners[winners["kairos_minus_other"] < 0]["setting"].tolist()
        lines.append(
            f"The best KAIROS method beats the best other method in {len(winners) - len(losing)} of "
            f"{len(winners)} noise settings"
            + (f"; it loses in {', '.join(f'`{s}`' for s in losing)}." if losing else ".")
        )
    down = tables.downstream
    if len(down):
        for setting, group in down.groupby("setting", sort=False):
            table = group.set_index(["method", "policy"])
            rnd = group[group["method"] == "random_k"]
            orc = group[group["method"] == "oracle_k (uses truth)"]
            methods = group[~group["method"].isin(["random_k", "oracle_k (uses truth)", "full pool"])]
            if methods.empty or rnd.empty:
                continue
            top = methods.loc[methods["accuracy_mean"].idxmax()]
            text = (
                f"`{setting}`: the best selection is `{top['method']}` / `{top['policy']}` at probe accuracy "
                f"{pm(top['accuracy_mean'], top['accuracy_std'])}, vs random {pm(rnd['accuracy_mean'].iloc[0], rnd['accuracy_std'].iloc[0])}"
            )
            if not orc.empty:
                text += f" and oracle {pm(orc['accuracy_mean'].iloc[0], orc['accuracy_std'].iloc[0])}"
            random_values = table.index.isin([("random", top["policy"])])
            if random_values.any():
                same = group[(group["method"] == "random") & (group["policy"] == top["policy"])].iloc[0]
                text += (
                    f"; the same policy over random values scores "
                    f"{pm(same['accuracy_mean'], same['accuracy_std'])} (the values "
                    f"{'matter' if compare(top, same) == 'beat' else 'do not decide the selection'})"
                )
            lines.append(text + ".")
    return _bullets(lines)


def finetune_takeaways(summary: pd.DataFrame, primary: str, method: str) -> str:
    """The primary selection against random, full and the oracle (the key-results verdict)."""
    original = summary[summary["pool"] == "original"]
    keys = key_results(original, primary=primary, method=method)
    return _bullets([keys.headline, *keys.lines])
