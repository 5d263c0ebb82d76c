"""Stage ``report``: assemble the capstone report from the other stages' outputs.

Every number in the report is read from ``reports/metrics/*.json`` and ``reports/tables/*.csv``;
every comparison (curated vs random vs full, compute saved, AUC retained, the sizes curve) is
computed here. The metrics of ``required`` stages must exist (a clear error names the stage to
run); other inputs are optional and their absence becomes a visible note naming the stage.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kairos_curate.config import PATHS, parse_bool, parse_list
from kairos_curate.reporting.report import (
    Callout,
    Figure,
    Note,
    Report,
    Section,
    load_metrics,
    provenance,
    stage_wall_times,
)

__all__ = [
    "REQUIRED_METRICS",
    "build_report",
    "compare",
    "compute_saved",
    "detection_table",
    "finetune_table",
    "key_results",
    "run",
    "split_noise_rows",
    "sweep_summary",
]

REQUIRED_METRICS = ("prepare", "embed", "value")
_METRICS = (("accuracy", "Accuracy"), ("macro_f1", "F1 (macro)"), ("auc", "AUC (OvR)"),
            ("train_time_s", "Train time (s)"))
_LABEL_MODE_METHOD = {"none": "kairos_feature", "residual": "kairos_residual",
                      "class_conditional": "kairos_class_conditional"}


def _e(value: Any) -> str:
    return html.escape(str(value))


def _pm(mean: float, std: float, digits: int = 3) -> str:
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _get(metrics: dict[str, Any], stage: str, key: str) -> Any:
    try:
        return metrics[stage][key]
    except KeyError:
        raise ValueError(f"{PATHS.metrics / (stage + '.json')} lacks {key!r}; it was written by an older "
                         f"version of the stage: rerun `dvc repro {stage}`") from None


def _read_csv(path: Path, stage: str, missing: list[str]) -> pd.DataFrame | None:
    if not path.exists():
        missing.append(f"<code>{_e(path.name)}</code> (run <code>dvc repro {stage}</code>)")
        return None
    frame = pd.read_csv(path)
    return frame if not frame.empty else None


def split_noise_rows(summary: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split fine-tuning rows into the original pool and the pool with added noise.

    Noise rows are those whose ``config`` starts with ``noise``/``noisy`` (``noisy_full``,
    ``noise:kairos_per_class``...) or, if the table has a ``pool_variant``/``noise`` column,
    whose value there is not ``clean``/``none``/empty. Noise configs are returned with the prefix
    removed so that both halves use the same config names.
    """
    column = next((c for c in ("pool_variant", "noise") if c in summary.columns), None)
    if column is not None:
        flag = ~summary[column].fillna("").astype(str).str.lower().isin(("", "clean", "none", "original"))
    else:
        flag = summary["config"].astype(str).str.match(r"^nois(e|y)[_:\-]")
    noisy = summary[flag].copy()
    noisy["config"] = noisy["config"].astype(str).str.replace(r"^nois(e|y)[_:\-]", "", regex=True)
    return summary[~flag].copy(), noisy


def compare(a: pd.Series, b: pd.Series, metric: str = "accuracy") -> str:
    """``"beat"``, ``"lost to"`` or ``"was within noise of"``: mean difference vs the summed stds."""
    diff = float(a[f"{metric}_mean"] - b[f"{metric}_mean"])
    noise = float(np.nan_to_num(a[f"{metric}_std"]) + np.nan_to_num(b[f"{metric}_std"]))
    if diff > noise:
        return "beat"
    if diff < -noise:
        return "lost to"
    return "was within noise of"


def finetune_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The poster's table (the finetune stage's own :func:`~kairos_curate.pipeline.finetune.poster_table`)."""
    from kairos_curate.pipeline.finetune import poster_table

    return poster_table(summary)


def compute_saved(summary: pd.DataFrame) -> pd.DataFrame:
    """Curated (and random) vs full, per method: train-time ratio, time saved, AUC retained.

    Returns one row per method and non-full config, with ``train time (s)`` of the subset and of
    the full pool, ``speed-up`` (full / subset), ``time saved`` (1 - subset / full),
    ``AUC retained`` (subset / full) and the F1 and accuracy differences (subset - full).
    """
    rows = []
    for method, group in summary.groupby("method", sort=False):
        table = group.set_index("config")
        if "full" not in table.index:
            continue
        full = table.loc["full"]
        for config, row in table.iterrows():
            if config == "full":
                continue
            ratio = float(row["train_time_s_mean"] / full["train_time_s_mean"])
            rows.append({
                "method": method, "config": config, "N": int(row["n_selected"]), "full N": int(full["n_selected"]),
                "train time (s)": float(row["train_time_s_mean"]), "full train time (s)": float(full["train_time_s_mean"]),
                "speed-up": 1.0 / ratio if ratio > 0 else float("inf"), "time saved": 1.0 - ratio,
                "AUC retained": float(row["auc_mean"] / full["auc_mean"]),
                "F1 - full F1": float(row["macro_f1_mean"] - full["macro_f1_mean"]),
                "accuracy - full accuracy": float(row["accuracy_mean"] - full["accuracy_mean"]),
            })
    return pd.DataFrame(rows)


def _fraction(config: str) -> float:
    match = re.search(r"([0-9.]+)$", str(config))
    return float(match.group(1)) if match else float("nan")


def sweep_summary(sweep: pd.DataFrame, level: float = 0.98) -> tuple[pd.DataFrame, str]:
    """The sizes curve as a table and one computed sentence.

    The sentence names the smallest fraction of the curated set whose mean accuracy reaches
    ``level`` of the best mean accuracy along the curve, and its share of the best point's
    training time.
    """
    frame = sweep.copy()
    frame["fraction"] = [_fraction(c) for c in frame["config"]]
    frame = frame.sort_values("fraction")
    table = pd.DataFrame({"fraction of curated set": [f"{f:.0%}" for f in frame["fraction"]],
                          "N": frame["n_selected"].astype(int).to_numpy()})
    for metric, label in _METRICS:
        digits = 2 if metric == "train_time_s" else 3
        table[label] = [_pm(m, s, digits) for m, s in zip(frame[f"{metric}_mean"], frame[f"{metric}_std"],
                                                          strict=True)]
    best = frame.loc[frame["accuracy_mean"].idxmax()]
    enough = frame[frame["accuracy_mean"] >= level * best["accuracy_mean"]].iloc[0]
    if enough["fraction"] == best["fraction"]:
        return table, (f"Accuracy peaks at the top {best['fraction']:.0%} of the curated set "
                       f"({int(best['n_selected'])} samples, {best['accuracy_mean']:.3f}); every smaller cut stays "
                       f"below {level:.0%} of it.")
    text = (f"The top {enough['fraction']:.0%} of the curated set ({int(enough['n_selected'])} samples) reaches "
            f"{enough['accuracy_mean'] / best['accuracy_mean']:.1%} of the best accuracy on this curve "
            f"({best['accuracy_mean']:.3f} at {best['fraction']:.0%}) with "
            f"{enough['train_time_s_mean'] / best['train_time_s_mean']:.0%} of its training time.")
    return table, text


def detection_table(detection: pd.DataFrame, metric: str = "auroc") -> pd.DataFrame:
    """Methods x problems, ``mean ± std`` of ``metric`` (runs > 1 only for seeded methods)."""
    cells = detection.assign(cell=[_pm(m, s) for m, s in zip(detection[f"{metric}_mean"],
                                                             detection[f"{metric}_std"], strict=True)])
    table = cells.pivot(index="method", columns="problem", values="cell")
    order = [p for p in ("any problem", "pixel noise", "label flipped", "off-task") if p in table.columns]
    table = table[order + [c for c in table.columns if c not in order]]
    best = detection[detection["problem"] == (order[0] if order else detection["problem"].iloc[0])]
    ranking = best.sort_values(f"{metric}_mean", ascending=False)["method"].tolist()
    out = table.loc[ranking].reset_index()
    out.columns.name = None
    return out


def key_results(summary: pd.DataFrame | None, *, primary_config: str, primary_method: str,
                detection: pd.DataFrame | None = None, label_mode: str = "none",
                sweep_text: str | None = None, pool_size: int | None = None,
                noisy: pd.DataFrame | None = None) -> Callout:
    """The first-screen box: the poster's "Key Result", computed, and honest when curation loses.

    Parameters
    ----------
    summary
        ``finetune_summary.csv`` (original-pool rows), or ``None`` if fine-tuning has not run.
    primary_config, primary_method
        The curated configuration and method the headline is about (falls back to the first
        ``kairos_*`` config / the first method in the table, and says so).
    detection
        ``benchmark_detection.csv`` for the detection bullet, if available.
    label_mode
        The value stage's label mode (names the KAIROS variant in the detection bullet).
    sweep_text
        The sizes-curve sentence, if available.
    pool_size
        Pool size, to state the curated fraction.
    noisy
        Fine-tuning rows on the pool with added noise (prefix removed), if any.
    """
    lines: list[str] = []
    if detection is not None:
        any_problem = detection[detection["problem"] == "any problem"].set_index("method")
        method = _LABEL_MODE_METHOD.get(label_mode, "kairos_feature")
        if method in any_problem.index:
            best = any_problem["auroc_mean"].idxmax()
            row = any_problem.loc[method]
            tail = ("the best of the methods compared" if best == method else
                    f"best method: <code>{_e(best)}</code> at {any_problem.loc[best, 'auroc_mean']:.3f}")
            precision = (f"; among the k lowest-valued samples (k = number of problems), "
                         f"{row['precision_at_k_bad_mean']:.0%} are real problems"
                         if "precision_at_k_bad_mean" in any_problem.columns else "")
            lines.append(f"Finding injected problems: the lowest KAIROS values (<code>{_e(method)}</code>) flag "
                         f"noisy, mislabelled and off-task pool samples with AUROC {row['auroc_mean']:.3f} "
                         f"({tail}){precision}.")
    if summary is None or summary.empty:
        return Callout("Key results", "Fine-tuning results are missing: run <code>dvc repro finetune</code> to "
                       "compare curated, random and full training sets.", lines, "info")
    notes = []
    methods = list(dict.fromkeys(summary["method"]))
    method = primary_method if primary_method in methods else methods[0]
    if method != primary_method:
        notes.append(f"method <code>{_e(primary_method)}</code> not in the results; showing <code>{_e(method)}</code>")
    table = summary[summary["method"] == method].set_index("config")
    curated = [c for c in table.index if str(c).startswith("kairos_")]
    if not curated:
        return Callout("Key results", f"No KAIROS-curated configuration was fine-tuned with {_e(method)}; add "
                       "<code>kairos_&lt;policy&gt;</code> to <code>finetune.configs</code>.", lines, "info")
    config = primary_config if primary_config in curated else curated[0]
    if config != primary_config:
        notes.append(f"config <code>{_e(primary_config)}</code> not in the results; showing <code>{_e(config)}</code>")
    row = table.loc[config]
    n = int(row["n_selected"])
    share = f", {n / pool_size:.0%} of the pool" if pool_size else ""
    name = f"KAIROS-curated (<code>{_e(config.removeprefix('kairos_'))}</code> policy, N={n}{share}), {_e(method)}"
    tone = "info"
    verdict_random = None
    if "random" in table.index:
        rnd = table.loc["random"]
        verdict_random = compare(row, rnd)
        tone = {"beat": "good", "lost to": "bad"}.get(verdict_random, "mixed")
        lines.insert(0, f"Against random subsets of the same size: {name} <b>{verdict_random}</b> random "
                        f"(accuracy {_pm(row['accuracy_mean'], row['accuracy_std'])} vs "
                        f"{_pm(rnd['accuracy_mean'], rnd['accuracy_std'])}; F1 "
                        f"{_pm(row['macro_f1_mean'], row['macro_f1_std'])} vs "
                        f"{_pm(rnd['macro_f1_mean'], rnd['macro_f1_std'])}).")
    if "full" in table.index:
        full = table.loc["full"]
        retained = row["auc_mean"] / full["auc_mean"]
        saved = 1.0 - row["train_time_s_mean"] / full["train_time_s_mean"]
        f1_word = "higher" if row["macro_f1_mean"] > full["macro_f1_mean"] else "lower"
        headline = (f"{name} retained {retained:.1%} of the full pool's AUC ({row['auc_mean']:.3f} vs "
                    f"{full['auc_mean']:.3f}) while {'reducing' if saved >= 0 else 'increasing'} training time by "
                    f"{abs(saved):.1%} ({row['train_time_s_mean']:.1f} s vs {full['train_time_s_mean']:.1f} s), "
                    f"with {f1_word} F1 ({row['macro_f1_mean']:.3f} vs {full['macro_f1_mean']:.3f}).")
        lines.append(f"Against the full pool (N={int(full['n_selected'])}): accuracy "
                     f"{_pm(row['accuracy_mean'], row['accuracy_std'])} vs {_pm(full['accuracy_mean'], full['accuracy_std'])}"
                     f" - curated {compare(row, full)} full.")
    else:
        headline = (f"{name}: accuracy {_pm(row['accuracy_mean'], row['accuracy_std'])}, AUC "
                    f"{_pm(row['auc_mean'], row['auc_std'])} (no full-pool run to compare with).")
    if verdict_random == "lost to":
        headline = ("Curation did not pay off in this run: the curated subset lost to random subsets of the same "
                    "size. " + headline)
    elif verdict_random == "was within noise of":
        headline = "Curated and random subsets of the same size were within noise of each other. " + headline
    if "oracle" in table.index and "random" in table.index:
        orc, rnd = table.loc["oracle"], table.loc["random"]
        gap = orc["accuracy_mean"] - rnd["accuracy_mean"]
        closed = (row["accuracy_mean"] - rnd["accuracy_mean"]) / gap if gap > 0 else float("nan")
        closed_text = f"; the curated subset closed {closed:.0%} of the random-to-oracle gap" if np.isfinite(closed) else ""
        lines.append(f"Ceiling: the oracle subset (same size, known-clean by ground truth; not a method) reached "
                     f"accuracy {_pm(orc['accuracy_mean'], orc['accuracy_std'])}{closed_text}.")
    others = [c for c in curated if c != config]
    if others and "random" in table.index:
        rnd = table.loc["random"]
        lines.append("Other KAIROS selection policies vs random: " + "; ".join(
            f"<code>{_e(c.removeprefix('kairos_'))}</code> {compare(table.loc[c], rnd)} random "
            f"({table.loc[c, 'accuracy_mean']:.3f})" for c in others) + ".")
    if noisy is not None and not noisy.empty:
        lines += [f"Robustness: {v}" for v in _noise_verdicts(noisy[noisy["method"] == method])]
    if sweep_text:
        lines.append(f"Sizes curve: {sweep_text}")
    if notes:
        lines.append("Note: " + "; ".join(notes) + ".")
    return Callout("Key results", headline, lines, tone)


def _noise_verdicts(noisy: pd.DataFrame) -> list[str]:
    """One computed sentence per method: curated configs vs random and full on the noisy pool."""
    out = []
    for method, group in noisy.groupby("method", sort=False):
        table = group.set_index("config")
        parts = []
        for config in [c for c in table.index if str(c).startswith("kairos_")]:
            row = table.loc[config]
            for other in ("random", "full"):
                if other in table.index:
                    parts.append(f"<code>{_e(config)}</code> {compare(row, table.loc[other])} {other} "
                                 f"({row['accuracy_mean']:.3f} vs {table.loc[other, 'accuracy_mean']:.3f})")
        if parts:
            out.append(f"On the noisy pool with {_e(method)} (accuracy): " + "; ".join(parts) + ".")
    return out


def _compute_figure(summary: pd.DataFrame, sweep: pd.DataFrame | None, path: Path) -> Path:
    """Accuracy vs train time for every config and method (and the sizes curve); saved to ``path``."""
    import matplotlib.pyplot as plt

    from kairos_curate.reporting.plots import save_figure

    fig, ax = plt.subplots(figsize=(7, 4.2))
    markers = ["o", "s", "^", "D", "v"]
    for k, (method, group) in enumerate(summary.groupby("method", sort=False)):
        ax.errorbar(group["train_time_s_mean"], group["accuracy_mean"], xerr=group["train_time_s_std"],
                    yerr=group["accuracy_std"], fmt=markers[k % len(markers)], capsize=3, label=str(method))
        for _, row in group.iterrows():
            ax.annotate(str(row["config"]), (row["train_time_s_mean"], row["accuracy_mean"]), fontsize=7,
                        xytext=(4, 3), textcoords="offset points")
    if sweep is not None and not sweep.empty:
        frame = sweep.assign(fraction=[_fraction(c) for c in sweep["config"]]).sort_values("fraction")
        ax.plot(frame["train_time_s_mean"], frame["accuracy_mean"], "--", color="grey", label="sizes curve")
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("train time (s, log scale)")
    ax.set_ylabel("test accuracy")
    ax.set_title("Compute vs accuracy")
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path


def _flow(prep: dict[str, Any], emb: dict[str, Any], val: dict[str, Any], bench: dict[str, Any] | None,
          ft: dict[str, Any] | None) -> str:
    boxes = [
        ("prepare", f"{prep['pool']} pool, {prep['reference']} reference, {prep['test']} test images"),
        ("embed", f"{_e(emb['encoder'])}, {emb['dim']}-d"),
        ("value", f"KAIROS ({_e(val['label_mode'])}), top {val['k']}"),
        ("benchmark", f"{len({k.split('/')[0] for k in bench['auroc']})} methods vs ground truth"
         if bench else "not run"),
        ("finetune", f"{_e(ft['backbone'])}, {ft['trials']} trials" if ft else "not run"),
        ("report", "this page"),
    ]
    inner = "<span> → </span>".join(f"<div><b>{name}</b> {text}</div>" for name, text in boxes)
    return f"<div class='flow'>{inner}</div>"


def build_report(root: str | Path = ".", title: str = "KAIROS curation report", *,
                 required: Sequence[str] = REQUIRED_METRICS, primary_config: str = "kairos_per_class",
                 primary_method: str = "lora") -> Report:
    """Build the report from metrics, tables and figures under ``root``.

    Parameters
    ----------
    root
        Project root.
    title
        Report title.
    required
        Stages whose ``reports/metrics/<stage>.json`` must exist (``prepare``, ``embed`` and
        ``value`` always are). Missing optional inputs become notes naming the stage to run.
    primary_config, primary_method
        The curated configuration and fine-tuning method of the key-results headline.

    Raises
    ------
    FileNotFoundError
        A required metrics file is missing (the message names the stage to run).
    ValueError
        A metrics file lacks a key the report needs (rerun that stage).
    """
    base = Path(root)
    metrics = load_metrics(base)
    for stage in dict.fromkeys([*REQUIRED_METRICS, *required]):
        if stage not in metrics:
            raise FileNotFoundError(f"{base / PATHS.metrics / (stage + '.json')} not found; the report needs it: "
                                    f"run `dvc repro {stage}`")
    prep, emb, val = metrics["prepare"], metrics["embed"], metrics["value"]
    bench, ft = metrics.get("benchmark"), metrics.get("finetune")
    figures, tables = base / PATHS.figures, base / PATHS.tables
    missing: list[str] = []
    detection = _read_csv(tables / "benchmark_detection.csv", "benchmark", missing) if bench else None
    summary_all = _read_csv(tables / "finetune_summary.csv", "finetune", missing) if ft else None
    sweep = _read_csv(tables / "finetune_sweep.csv", "finetune", missing) if ft else None
    summary, noisy = split_noise_rows(summary_all) if summary_all is not None else (None, None)
    sweep_tab, sweep_text = sweep_summary(sweep) if sweep is not None else (None, None)
    for stage, present in (("benchmark", bench), ("finetune", ft)):
        if not present:
            missing.insert(0, f"<code>reports/metrics/{stage}.json</code> (run <code>dvc repro {stage}</code>)")

    report = Report(title)
    pool, label_mode = int(_get(metrics, "prepare", "pool")), str(_get(metrics, "value", "label_mode"))
    prov = provenance(base)
    report.lead.append(
        f"Generated {prov['date (UTC)']} UTC from the pipeline's metrics and tables at git "
        f"<code>{_e(prov['git revision'])}</code>. Pool of {pool} images valued against {prep['reference']} clean "
        f"reference images with <code>{_e(emb['encoder'])}</code> embeddings"
        + (f"; fine-tuned <code>{_e(ft['backbone'])}</code>." if ft else "."))
    report.lead.append(key_results(summary, primary_config=primary_config, primary_method=primary_method,
                                   detection=detection, label_mode=label_mode, sweep_text=sweep_text,
                                   pool_size=pool, noisy=noisy))
    if missing:
        report.lead.append(Note("Optional inputs missing, their sections are incomplete: " + "; ".join(missing) + "."))

    report.sections.append(Section("The challenge", [
        f"A large noisy pool and a small clean reference: which few samples are worth training on? Here "
        f"{prep['pool_noisy_fraction']:.0%} of the {pool} pool images have a problem a user cannot see in the "
        f"labels: {prep['pool_off_task']} are off-task images carrying a plausible task label, "
        f"{prep['pool_pixel_noise']} carry pixel noise and {prep['pool_label_flipped']} have a flipped label. "
        "KAIROS values each pool sample by how much it pulls the pool's embedding distribution towards the reference "
        "(maximum mean discrepancy, MMD); we keep the top-valued subset, fine-tune on it, and compare against the full "
        "pool, random subsets of the same size and a ground-truth oracle.",
    ]))
    counts = pd.DataFrame([
        {"split": "pool (noisy, to curate)", "images": prep["pool"],
         "with a problem": f"{prep['pool_noisy']} ({prep['pool_noisy_fraction']:.1%})"},
        {"split": "reference (clean, defines the task)", "images": prep["reference"], "with a problem": "0"},
        {"split": "test (clean, held out)", "images": prep["test"], "with a problem": "0"},
    ])
    report.sections.append(Section("Datasets and class overlap", [
        f"{prep['n_task_classes']} task classes. The reference and the test set share no image with the pool "
        f"(checked by id and content hash). Pixel-noise severities are in units of the clean pool's pixel std "
        f"({prep['severity_unit_pixel_std']:.1f} on the 0-255 scale). Ground truth is used only for evaluation.",
        *_source_lines(prep),
        counts,
        Figure(figures / "01_eda" / "class_overlap.png", "Class overlap: genuine vs off-task images per shown label"),
        Figure(figures / "01_eda" / "pool_problems.png", "Pool images per ground-truth problem"),
        Figure(figures / "02_embed" / "tsne.png", "t-SNE of pool and reference embeddings"),
        Figure(figures / "02_embed" / "nearest_reference_distance.png",
               "Distance to the nearest reference image by ground-truth category"),
    ]))
    report.sections.append(Section("The pipeline", [
        _flow(prep, emb, val, bench, ft),
        f"Embeddings: <code>{_e(emb['encoder'])}</code> ({emb['dim']}-d, {emb['image_size']} px, device "
        f"{_e(emb['device'])}, {emb['images_per_second']:.0f} images/s over the stage). Valuation: KAIROS with label "
        f"mode <code>{_e(label_mode)}</code>, RBF bandwidth {val['bandwidth']:.4g}, {val['value_seconds']:.2f} s for "
        f"the whole pool."
        + (f" Fine-tuning: <code>{_e(ft['backbone'])}</code>, trained layers: {_e(ft['trained_layers'])}; frozen-stem "
           f"outputs cached: {_e(ft['stem_outputs_cached'])}." if ft else ""),
    ]))
    sel = pd.DataFrame([{"policy": p, **v} for p, v in val["selections"].items()])
    value_blocks: list[Any] = [
        f"k = {val['k']} of {val['pool_size']} pool samples ({val['k'] / val['pool_size']:.0%}) selected with each "
        "policy; a policy that leaves a task class empty or starved is flagged (warnings).",
        sel,
        Figure(figures / "03_value" / "value_terms.png", "KAIROS value terms"),
        Figure(figures / "03_value" / "selection_histograms.png", "Class histogram of each selection"),
    ]
    starved = [p for p, v in val["selections"].items() if v.get("classes_missing", 0)]
    if starved:
        value_blocks.insert(2, Note(f"Selection policies {', '.join(starved)} left at least one task class empty."))
    report.sections.append(Section("Valuation results", value_blocks))

    robust: list[Any] = []
    if detection is not None:
        robust += [
            "How well the lowest values find each injected problem (AUROC, mean ± std; deterministic methods run "
            "once, std 0; random over several seeds). Rows sorted by AUROC on all problems.",
            detection_table(detection, "auroc"),
            "Precision at k (k = number of injected problems of that kind):",
            detection_table(detection, "precision_at_k_bad"),
            Figure(figures / "04_benchmark" / "found_vs_inspected.png", "Fraction found vs fraction inspected"),
            Figure(figures / "04_benchmark" / "auroc_by_setting.png", "Detection AUROC by noise setting and method"),
        ]
    else:
        robust.append(Note("Detection results missing: run <code>dvc repro benchmark</code>."))
    if noisy is not None and not noisy.empty:
        robust += ["Fine-tuning on the pool with added pixel noise (the poster's robustness table); every subset is "
                   "curated by its own valuation of the noisy pool:", finetune_table(noisy), *_noise_verdicts(noisy)]
    report.sections.append(Section("Robustness to noise", robust))

    if summary is not None and ft is not None:
        ft_blocks: list[Any] = [
            f"Mean ± std over {ft['trials']} trials (random: also over {ft['random_draws']} draws), each trial with "
            "its own 80/20 train/validation split and freshly re-loaded pretrained weights; test on the clean held-out "
            "set. The oracle row uses ground truth and is a ceiling, not a method.",
        ]
        for method, group in summary.groupby("method", sort=False):
            ft_blocks += [f"<b>{_e(method)}</b>", finetune_table(group)]
        ft_blocks.append(Figure(figures / "05_finetune" / "finetune_metrics.png", "Fine-tuning metrics by config"))
        report.sections.append(Section("Fine-tuning: curated vs full vs random", ft_blocks))
    else:
        report.sections.append(Section("Fine-tuning: curated vs full vs random",
                                       [Note("Fine-tuning results missing: run <code>dvc repro finetune</code>.")]))

    if sweep_tab is not None:
        report.sections.append(Section("Results across data sizes", [
            "The curated selection, best-first, cut at growing fractions and trained the same way.",
            sweep_tab, sweep_text or "",
            Figure(figures / "05_finetune" / "sizes_sweep.png", "Metrics and train time across curated sizes"),
        ]))
    else:
        report.sections.append(Section("Results across data sizes", [
            Note("Sizes sweep missing: set <code>finetune.size_fractions</code> and run <code>dvc repro finetune</code>.")]))

    if summary is not None and not compute_saved(summary).empty:
        saved = compute_saved(summary)
        shown = saved.assign(**{
            "speed-up": [f"{v:.1f}x" for v in saved["speed-up"]],
            "time saved": [f"{v:.1%}" for v in saved["time saved"]],
            "AUC retained": [f"{v:.1%}" for v in saved["AUC retained"]],
        })
        fig_path = _compute_figure(summary, sweep, figures / "06_report" / "compute_vs_accuracy.png")
        report.sections.append(Section("Compute saved", [
            "Training time of each subset relative to the full pool (same method, means over trials): speed-up = "
            "full / subset, time saved = 1 - subset / full, AUC retained = subset AUC / full AUC.",
            shown, Figure(fig_path, "Compute vs accuracy: every config and method, with the sizes curve"),
        ]))
    else:
        report.sections.append(Section("Compute saved", [
            Note("Needs a <code>full</code> row in the fine-tuning results: run <code>dvc repro finetune</code> "
                 "with <code>full</code> in <code>finetune.configs</code>.")]))

    flags_path = base / "reports" / "audit" / "flags.csv"
    audit_cmd = ("<code>kairos-curate audit --pool data/embeddings/pool.npz --reference data/embeddings/reference.npz "
                 "--images data/prepared/pixels.npz --out reports/audit</code>")
    if flags_path.exists():
        flags = pd.read_csv(flags_path)
        reasons = flags["flag"].fillna("").astype(str)
        report.sections.append(Section("Data audit", [
            f"The poster's future work, an automated auditing layer: {audit_cmd} writes a gallery of the lowest-valued "
            "and near-duplicate pool samples (<a href='audit/audit.html'>audit/audit.html</a>) and "
            f"<code>flags.csv</code>. Last audit: {len(flags)} samples, {int(reasons.str.contains('low_value').sum())} "
            f"flagged low_value, {int(reasons.str.contains('near_duplicate_of').sum())} flagged as near-duplicates, "
            f"{int(flags['keep'].astype(bool).sum())} kept.",
        ]))
    else:
        report.sections.append(Section("Data audit", [
            f"Not run yet. The poster's future work, an automated auditing layer that flags low-value samples before "
            f"training: {audit_cmd}."]))

    limitations = [
        ("The default scenario is Fashion-MNIST with EfficientNet-Lite0, chosen to run offline on two CPU cores; it "
         "mirrors the poster's design (task classes vs off-task classes, pixel noise, label flips) but not its data."
         if prep.get("source", "fashion_mnist") == "fashion_mnist" else
         "Off-task iNaturalist images enter the pool with a task label drawn at random (scenario.offtask_label), "
         "a stand-in for a weak labeller; which species count as off-task follows the taxonomy mapping."),
        "KAIROS assumes the reference is a gold standard: a biased reference propagates its bias into the selection.",
        f"Values depend on the RBF bandwidth ({val['bandwidth']:.4g}, median heuristic) and on the label mode "
        f"(<code>{_e(label_mode)}</code> here); the feature term alone cannot see flipped labels.",
    ]
    if ft:
        limitations.append(f"Fine-tuning trained {_e(ft['trained_layers'])} with the frozen stem's outputs cached "
                           f"({_e(ft['stem_outputs_cached'])}); {ft['trials']} trials give wide error bars.")
    if bench:
        limitations.append("Deterministic detection methods ran once on one pool: their std is 0 and says nothing "
                           "about variation across pools.")
    report.sections.append(Section("Limitations", [limitations]))

    walls = stage_wall_times(base / "reports" / "notebooks")
    if not walls.empty:
        walls = pd.concat([walls, pd.DataFrame([{"stage": "total", "notebook": "",
                                                 "wall time (s)": walls["wall time (s)"].sum(), "ended": ""}])],
                          ignore_index=True)
    report.sections.append(Section("Provenance", [
        pd.DataFrame([{"item": k, "value": v} for k, v in prov.items()]),
        walls if not walls.empty else Note("Stage wall times unavailable: the notebooks in "
                                           "<code>reports/notebooks/</code> were not rendered by papermill "
                                           "(run <code>dvc repro</code>)."),
    ]))
    return report


def _source_lines(prep: dict[str, Any]) -> list[str]:
    """What the pool and the reference were built from (real datasets: what was dropped or skipped)."""
    if prep.get("source", "fashion_mnist") == "fashion_mnist":
        return ["Images: Fashion-MNIST (the offline default); task classes stand for the poster's insect "
                "categories, off-task classes for its other species."]
    skipped = prep.get("skipped", {})
    return [f"Images: the pool is iNaturalist 2021, species mapped to the task categories by the taxonomy mapping "
            f"(version {_e(str(prep.get('taxonomy_version', '?')))}); reference and test are disjoint samples of the "
            f"Insects Image Dataset. {prep.get('pool_dropped_equal_to_reference_or_test', 0)} pool images identical "
            f"to a reference or test image were dropped; the adapters skipped {skipped.get('inaturalist', 0)} "
            f"iNaturalist and {skipped.get('insects', 0)} Insects entries (missing or unreadable files)."]


def run_audit(root: str | Path = ".", flag_fraction: float = 0.1, seed: int = 0) -> Path:
    """Audit the prepared pool (the poster's auditing layer): gallery + ``flags.csv`` in ``reports/audit``.

    Uses what a user has: pool and reference embeddings, their labels and the pixels; never the
    truth table.
    """
    from kairos_curate.audit import audit
    from kairos_curate.data.scenario import load_scenario
    from kairos_curate.pipeline.value import aligned_embeddings

    base = Path(root)
    scenario = load_scenario(base / PATHS.prepared)
    pool, ref = scenario.table("pool"), scenario.table("reference")
    pool_ids = pool["id"].to_numpy(dtype=str)
    result = audit(aligned_embeddings(base / PATHS.embeddings / "pool.npz", pool_ids),
                   aligned_embeddings(base / PATHS.embeddings / "reference.npz", ref["id"].to_numpy(dtype=str)),
                   scenario.source("pool"), pool_ids, labels=pool["label"].to_numpy(),
                   reference_labels=ref["label"].to_numpy(), out_dir=base / "reports" / "audit",
                   flag_fraction=flag_fraction, title="KAIROS data audit: the prepared pool", seed=seed)
    return Path(result.html_path)


def run(params: dict[str, Any], root: str | Path = ".") -> Path:
    """Write ``reports/capstone.html`` and ``reports/capstone.md``; return the HTML path.

    ``params`` (the ``report`` section): ``title``, ``required_metrics`` (comma-separated stages),
    ``primary_config``, ``primary_method``, ``audit`` (first audit the default pool into
    ``reports/audit/``, which the report then summarises; needs the prepared data and embeddings),
    ``audit_flag_fraction``, ``seed``, ``screenshot`` (check the pages in headless Chromium and
    save their first screens under ``reports/screenshots/``).
    """
    base = Path(root)
    required = parse_list(params.get("required_metrics", ",".join(REQUIRED_METRICS)), str, "report.required_metrics")
    screenshot = parse_bool(params.get("screenshot", False), "report.screenshot")
    audit_html = None
    if parse_bool(params.get("audit", False), "report.audit"):
        audit_html = run_audit(base, float(params.get("audit_flag_fraction", 0.1)), int(params.get("seed", 0)))
    report = build_report(base, str(params.get("title", "KAIROS curation report")), required=required,
                          primary_config=str(params.get("primary_config", "kairos_per_class")),
                          primary_method=str(params.get("primary_method", "lora")))
    html_path = base / "reports" / "capstone.html"
    report.write(html_path, base / "reports" / "capstone.md")
    if screenshot:
        from kairos_curate.reporting.browser import check_page, find_chromium

        if find_chromium() is None:
            raise FileNotFoundError("report.screenshot is true but no Chromium was found: run `make setup` "
                                    "(installs Debian's chromium), set $CHROMIUM, or set report.screenshot: false")
        pages = [(html_path, "capstone.png")] + ([(audit_html, "audit.png")] if audit_html is not None else [])
        for page, shot in pages:
            check = check_page(page, base / "reports" / "screenshots" / shot)
            print(f"browser check of {page}: {len(check.images)} images, {len(check.broken_images)} broken, "
                  f"{len(check.console_errors)} console errors")
            if not check.ok:
                raise RuntimeError(f"{page} failed the browser check: broken images "
                                   f"{check.broken_images}, console errors {check.console_errors}")
    return html_path
