"""Stage ``report``: assemble the capstone report from the other stages' outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from kairos_curate.config import PATHS
from kairos_curate.pipeline.finetune import poster_table
from kairos_curate.reporting.report import (
    Report,
    Section,
    load_metrics,
    provenance,
    stage_wall_times,
)

__all__ = ["build_report", "run"]


def _csv(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; run `dvc repro` so the earlier stages write it")
    return pd.read_csv(path)


def _pm(mean: float, std: float, digits: int = 3) -> str:
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def build_report(root: str | Path = ".", title: str = "KAIROS curation report") -> Report:
    """Build the report object from metrics, tables and figures under ``root``."""
    base = Path(root)
    metrics = load_metrics(base)
    for stage in ("prepare", "embed", "value", "benchmark", "finetune"):
        if stage not in metrics:
            raise FileNotFoundError(f"{base / PATHS.metrics / (stage + '.json')} not found; run `dvc repro {stage}`")
    prep, emb, val, ft = (metrics[s] for s in ("prepare", "embed", "value", "finetune"))
    figures = base / PATHS.figures
    tables = base / PATHS.tables
    report = Report(title)

    report.sections.append(Section("The challenge", [
        "A large noisy pool and a small clean reference: which few samples are worth training on? "
        "KAIROS values each pool sample by how much it pulls the pool's embedding distribution towards the "
        "reference (maximum mean discrepancy, MMD); we select a subset by value and fine-tune on it, and compare "
        "against the full pool, random subsets of the same size and a ground-truth oracle.",
    ]))
    report.sections.append(Section("Datasets", [
        f"Pool: {prep['pool']} images, of which {prep['pool_off_task']} off-task "
        f"({prep['pool_off_task_fraction']:.1%}), {prep['pool_pixel_noise']} with pixel noise and "
        f"{prep['pool_label_flipped']} with flipped labels ({prep['pool_noisy_fraction']:.1%} have a problem). "
        f"Reference: {prep['reference']} clean images; test: {prep['test']} clean images that share no image "
        f"with either. Noise severities are in units of the clean pool's pixel std "
        f"({prep['severity_unit_pixel_std']:.1f} on the 0-255 scale).",
        figures / "01_eda" / "class_overlap.png",
        figures / "01_eda" / "pool_problems.png",
    ]))
    report.sections.append(Section("Embeddings", [
        f"Encoder <code>{emb['encoder']}</code> ({emb['dim']}-d, {emb['image_size']} px, device {emb['device']}), "
        f"{emb['images_per_second']:.0f} images/s over the whole stage.",
        figures / "02_embed" / "tsne.png",
        figures / "02_embed" / "nearest_reference_distance.png",
    ]))
    sel = pd.DataFrame([{"policy": p, **v} for p, v in val["selections"].items()])
    report.sections.append(Section("KAIROS valuation and selection", [
        f"Label mode <code>{val['label_mode']}</code>, RBF bandwidth {val['bandwidth']:.4g}, "
        f"k = {val['k']} of {val['pool_size']} pool samples ({val['k'] / val['pool_size']:.0%}).",
        sel,
        figures / "03_value" / "selection_histograms.png",
    ]))
    det = _csv(tables / "benchmark_detection.csv")
    det_view = pd.DataFrame({
        "method": det["method"], "problem": det["problem"], "runs": det["runs"],
        "AUROC": [_pm(m, s) for m, s in zip(det["auroc_mean"], det["auroc_std"], strict=True)],
        "AP": [_pm(m, s) for m, s in zip(det["average_precision_mean"], det["average_precision_std"], strict=True)],
        "time (s)": [_pm(m, s, 2) for m, s in zip(det["seconds_mean"], det["seconds_std"], strict=True)],
    })
    report.sections.append(Section("Finding the injected problems", [
        "Lowest value = most suspicious. Deterministic methods run once on this pool (runs = 1, std 0); "
        "random runs over several seeds.",
        det_view,
        figures / "04_benchmark" / "found_vs_inspected.png",
    ]))
    summary = _csv(tables / "finetune_summary.csv")
    blocks: list[Any] = [
        f"Backbone <code>{ft['backbone']}</code>; {ft['trained_layers']}; frozen-stem outputs cached: "
        f"{ft['stem_outputs_cached']}. Each row: mean ± std over {ft['trials']} trials (random: also over "
        f"{ft['random_draws']} draws), each trial with its own 80/20 train/validation split; test on the clean "
        "held-out set. The oracle row uses ground truth and is a ceiling, not a method.",
        poster_table(summary),
        figures / "05_finetune" / "finetune_metrics.png",
    ]
    if (figures / "05_finetune" / "sizes_sweep.png").exists():
        blocks.append(figures / "05_finetune" / "sizes_sweep.png")
    report.sections.append(Section("Fine-tuning on curated vs full vs random subsets", blocks))
    report.sections.append(Section("What the numbers say", [_verdict(summary)]))
    report.sections.append(Section("Limitations", [
        "The default scenario is Fashion-MNIST with EfficientNet-Lite0, chosen to run offline on two CPU cores; "
        "it mirrors the poster's design (task classes vs off-task classes, pixel noise, label flips) but not its "
        "data. KAIROS assumes the reference is a gold standard: a biased reference propagates its bias into the "
        "selection. The RBF bandwidth (median heuristic) and the label weight change rankings.",
    ]))
    prov = provenance(base)
    walls = stage_wall_times(base / "reports" / "notebooks")
    report.sections.append(Section("Provenance", [
        pd.DataFrame([{"item": k, "value": v} for k, v in prov.items()]),
        walls if not walls.empty else "stage wall times unavailable (notebooks not rendered by papermill)",
    ]))
    return report


def _verdict(summary: pd.DataFrame) -> str:
    """One honest paragraph comparing curated selections with random and full, from the table."""
    lines = []
    for method, group in summary.groupby("method", sort=False):
        table = group.set_index("config")
        if "random" not in table.index:
            continue
        rnd = table.loc["random"]
        for config in [c for c in table.index if c.startswith("kairos_")]:
            row = table.loc[config]
            diff = row["accuracy_mean"] - rnd["accuracy_mean"]
            verdict = "beat" if diff > rnd["accuracy_std"] + row["accuracy_std"] else (
                "lost to" if diff < -(rnd["accuracy_std"] + row["accuracy_std"]) else "was within noise of")
            text = (f"{method}: {config} ({int(row['n_selected'])} samples) {verdict} random at equal size "
                    f"(accuracy {_pm(row['accuracy_mean'], row['accuracy_std'])} vs "
                    f"{_pm(rnd['accuracy_mean'], rnd['accuracy_std'])})")
            if "full" in table.index:
                full = table.loc["full"]
                text += (f"; full pool {_pm(full['accuracy_mean'], full['accuracy_std'])} in "
                         f"{full['train_time_s_mean']:.1f} s vs {row['train_time_s_mean']:.1f} s")
            if "oracle" in table.index:
                text += f"; oracle {_pm(table.loc['oracle', 'accuracy_mean'], table.loc['oracle', 'accuracy_std'])}"
            lines.append(text + ".")
    return "<br>".join(lines) if lines else "No curated-vs-random comparison in this run."


def run(params: dict[str, Any], root: str | Path = ".") -> Path:
    """Write ``reports/capstone.html`` and ``reports/capstone.md``; return the HTML path."""
    base = Path(root)
    report = build_report(base, str(params.get("title", "KAIROS curation report")))
    html_path = base / "reports" / "capstone.html"
    report.write(html_path, base / "reports" / "capstone.md")
    return html_path
