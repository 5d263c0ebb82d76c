"""The capstone report's content: which sections, tables, figures and computed sentences.

Every number comes from ``reports/metrics/*.json`` and ``reports/tables/*.csv``; every verdict
from :mod:`kairos_curate.study.verdicts`. The metrics of the ``required`` stages must exist (a
clear error names the stage to run); other inputs are optional and their absence becomes a
visible note naming the stage. Rendering is :mod:`.report`'s (Jinja2 templates).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from kairos_curate.config import PATHS
from kairos_curate.reporting.report import (
    NOTEBOOK_STAGE,
    Callout,
    Figure,
    Flow,
    Note,
    Report,
    Section,
    load_metrics,
    provenance,
    stage_wall_times,
)
from kairos_curate.reporting.tables import (
    detection_table,
    poster_table,
    suite_checks_table,
    suite_table,
    sweep_table,
)
from kairos_curate.study.decisions import load_decisions
from kairos_curate.study.suite_verdicts import suite_key_lines
from kairos_curate.study.verdicts import (
    compute_saved,
    key_results,
    noise_verdicts,
    sweep_sentence,
)

__all__ = ["ALWAYS_REQUIRED", "build_capstone"]

#: Stages whose metrics the report cannot do without.
ALWAYS_REQUIRED = ("prepare", "embed", "value")


def _get(metrics: dict[str, Any], stage: str, key: str) -> Any:
    try:
        return metrics[stage][key]
    except KeyError:
        raise ValueError(
            f"{PATHS.metrics / (stage + '.json')} lacks {key!r}; it was written by an older "
            f"version of the stage: rerun `dvc repro {stage}`"
        ) from None


def _read_csv(path: Path, stage: str, missing: list[str]) -> pd.DataFrame | None:
    if not path.exists():
        missing.append(f"`{path.name}` (run `dvc repro {stage}`)")
        return None
    frame = pd.read_csv(path)
    return frame if not frame.empty else None


def _notebook_links(root: Path) -> list[str]:
    """One link per exported notebook page (relative to ``reports/``)."""
    out = []
    for stem, stage in NOTEBOOK_STAGE.items():
        page = root / PATHS.notebooks / f"{stem}.html"
        if page.exists():
            out.append(f"[{stem}](notebooks/{stem}.html) - stage `{stage}`")
    return out


def build_capstone(
    root: str | Path = ".",
    title: str = "KAIROS curation report",
    *,
    required: Sequence[str] = ALWAYS_REQUIRED,
    primary: str = "herding",
    primary_method: str = "lora",
) -> Report:
    """The capstone report of the project under ``root``.

    Parameters
    ----------
    root
        Project root.
    title
        Report title.
    required
        Stages whose ``reports/metrics/<stage>.json`` must exist (``prepare``, ``embed`` and
        ``value`` always are). Missing optional inputs become notes naming the stage to run.
    primary, primary_method
        The curated selection and fine-tuning method of the key-results headline.

    Raises
    ------
    FileNotFoundError
        A required metrics file is missing (the message names the stage to run).
    ValueError
        A metrics file lacks a key the report needs (rerun that stage).
    """
    base = Path(root)
    metrics = load_metrics(base)
    for stage in dict.fromkeys([*ALWAYS_REQUIRED, *required]):
        if stage not in metrics:
            raise FileNotFoundError(
                f"{base / PATHS.metrics / (stage + '.json')} not found; the report needs it: run `dvc repro {stage}`"
            )
    prep, emb, val = metrics["prepare"], metrics["embed"], metrics["value"]
    comp, ft = metrics.get("compare"), metrics.get("finetune")
    figures, tables = base / PATHS.figures, base / PATHS.tables
    missing = [
        f"`reports/metrics/{stage}.json` (run `dvc repro {stage}`)"
        for stage, present in (("compare", comp), ("finetune", ft))
        if not present
    ]
    detection = _read_csv(tables / "compare_detection.csv", "compare", missing) if comp else None
    summary_all = _read_csv(tables / "finetune_summary.csv", "finetune", missing) if ft else None
    sweep = _read_csv(tables / "finetune_sweep.csv", "finetune", missing) if ft else None
    summary = noisy = None
    if summary_all is not None:
        summary = summary_all[summary_all["pool"] == "original"]
        noisy = summary_all[summary_all["pool"] == "noisy"]
    sweep_text = sweep_sentence(sweep) if sweep is not None else None
    pool = int(_get(metrics, "prepare", "pool"))
    method = str(_get(metrics, "value", "method"))
    prov = provenance(base)

    report = Report(
        title,
        subtitle=(
            f"Generated {prov['date (UTC)']} UTC from the pipeline's metrics and tables at git "
            f"`{prov['git revision']}`. Pool of {pool} images valued against {prep['reference']} clean reference "
            f"images with `{emb['encoder']}` embeddings" + (f"; fine-tuned `{ft['backbone']}`." if ft else ".")
        ),
    )
    keys = key_results(
        summary,
        primary=primary,
        method=primary_method,
        detection=detection,
        value_method=method,
        sweep_text=sweep_text,
        pool_size=pool,
        noisy=noisy,
    )
    suite = metrics.get("suite")
    if suite is not None and suite.get("profile") != "disabled":
        frames = _suite_tables(tables)
        keys.lines += suite_key_lines(
            frames["summary"], frames["checks"], primary=str(suite["primary"]), ceiling=str(suite["ceiling"])
        )
    report.lead.append(Callout("Key results", keys.headline, keys.lines, keys.tone))
    if missing:
        report.lead.append(Note("Optional inputs missing, their sections are incomplete: " + "; ".join(missing) + "."))

    report.sections.append(
        Section(
            "The challenge",
            [
                f"A large noisy pool and a small clean reference: which few samples are worth training on? Here "
                f"{prep['pool_noisy_fraction']:.0%} of the {pool} pool images have a problem a user cannot see in the "
                f"labels: {prep['pool_off_task']} are off-task images carrying a plausible task label, "
                f"{prep['pool_pixel_noise']} carry pixel noise and {prep['pool_label_flipped']} have a flipped label. "
                "KAIROS values each pool sample by how much it pulls the pool's embedding distribution towards the reference "
                "(maximum mean discrepancy, MMD); we select a subset, fine-tune on it, and compare against the full pool, "
                "random subsets of the same size and a ground-truth oracle.",
            ],
        )
    )
    report.sections.append(_datasets(prep, figures))
    report.sections.append(
        Section(
            "The pipeline",
            [
                Flow(
                    [
                        ("prepare", f"{prep['pool']} pool, {prep['reference']} reference, {prep['test']} test images"),
                        ("embed", f"`{emb['encoder']}`, {emb['dim']}-d"),
                        ("value", f"`{method}`, {len(val['selections'])} selections of {val['k']}"),
                        ("compare", f"{len(comp['methods'])} methods vs ground truth" if comp else "not run"),
                        ("finetune", f"`{ft['backbone']}`, {ft['trials']} trials" if ft else "not run"),
                        ("report", "this page"),
                    ]
                ),
                f"Embeddings: `{emb['encoder']}` ({emb['dim']}-d, {emb['image_size']} px, device `{emb['device']}`, "
                f"{emb['images_per_second']:.0f} images/s over the stage). Valuation: `{method}` "
                f"(label mode `{val['label_mode']}`), RBF bandwidth {val['bandwidth']:.4g}, {val['value_seconds']:.2f} s "
                "for the whole pool."
                + (
                    f" Fine-tuning: `{ft['backbone']}`, trained layers: {ft['trained_layers']}; frozen-stem outputs cached: "
                    f"{ft['stem_outputs_cached']}."
                    if ft
                    else ""
                ),
                *(
                    ["The rendered notebook of every stage, with its figures:", links]
                    if (links := _notebook_links(base))
                    else [Note("No exported notebook pages yet: run `dvc repro`.")]
                ),
            ],
        )
    )
    report.sections.append(_valuation(val, figures))
    report.sections.append(_robustness(detection, noisy, figures))
    report.sections.append(_finetuning(summary, ft, figures))
    report.sections.append(_sizes(sweep, sweep_text, figures))
    report.sections.append(_suite(metrics.get("suite"), tables, figures))
    report.sections.append(_compute(summary, figures))
    report.sections.append(_audit(base))
    report.sections.append(_limitations(prep, val, ft, comp))
    report.sections.append(_provenance(base, prov))
    return report


def _datasets(prep: dict[str, Any], figures: Path) -> Section:
    counts = pd.DataFrame(
        [
            {
                "split": "pool (noisy, to curate)",
                "images": prep["pool"],
                "with a problem": f"{prep['pool_noisy']} ({prep['pool_noisy_fraction']:.1%})",
            },
            {"split": "reference (clean, defines the task)", "images": prep["reference"], "with a problem": "0"},
            {"split": "test (clean, held out)", "images": prep["test"], "with a problem": "0"},
        ]
    )
    if prep.get("source", "fashion_mnist") == "fashion_mnist":
        source = [
            "Images: Fashion-MNIST (the offline default); task classes stand for the poster's insect "
            "categories, off-task classes for its other species."
        ]
    else:
        skipped = prep.get("skipped", {})
        source = [
            f"Images: the pool is iNaturalist 2021, species mapped to the task categories by the taxonomy "
            f"mapping (version {prep.get('taxonomy_version', '?')}); reference and test are disjoint samples "
            f"of the Insects Image Dataset. {prep.get('pool_dropped_equal_to_reference_or_test', 0)} pool "
            f"images identical to a reference or test image were dropped; the adapters skipped "
            f"{skipped.get('inaturalist', 0)} iNaturalist and {skipped.get('insects', 0)} Insects entries "
            "(missing or unreadable files)."
        ]
    return Section(
        "Datasets and class overlap",
        [
            f"{prep['n_task_classes']} task classes. The reference and the test set share no image with the pool "
            f"(checked by id and content hash). Pixel-noise severities are in units of the clean pool's pixel std "
            f"({prep['severity_unit_pixel_std']:.1f} on the 0-255 scale). Ground truth is used only for evaluation.",
            *source,
            counts,
            Figure(
                figures / "01_prepare" / "class_overlap.png",
                "Class overlap: genuine vs off-task images per shown label",
            ),
            Figure(figures / "01_prepare" / "pool_problems.png", "Pool images per ground-truth problem"),
            Figure(figures / "02_embed" / "tsne.png", "t-SNE of pool and reference embeddings"),
            Figure(
                figures / "02_embed" / "nearest_reference_distance.png",
                "Distance to the nearest reference image by ground-truth category",
            ),
        ],
    )


def _valuation(val: dict[str, Any], figures: Path) -> Section:
    sel = pd.DataFrame([{"selection": name, **v} for name, v in val["selections"].items()])
    blocks: list[Any] = [
        f"k = {val['k']} of {val['pool_size']} pool samples ({val['k'] / val['pool_size']:.0%}) selected by each "
        f"named selection (`value.selections`; primary: `{val['primary']}`); a selection that leaves a task class "
        "empty or starved is flagged (warnings).",
        sel,
        Figure(figures / "03_value" / "value_terms.png", "Value terms"),
        Figure(figures / "03_value" / "selection_histograms.png", "Class histogram of each selection"),
    ]
    starved = [name for name, v in val["selections"].items() if v.get("classes_missing", 0)]
    if starved:
        blocks.insert(2, Note(f"Selections {', '.join(starved)} left at least one task class empty."))
    return Section("Valuation results", blocks)


def _robustness(detection: pd.DataFrame | None, noisy: pd.DataFrame | None, figures: Path) -> Section:
    blocks: list[Any] = []
    if detection is not None:
        blocks += [
            "How well the lowest values find each injected problem (AUROC, mean ± std; deterministic methods run "
            "once, std 0; random over several seeds). Rows sorted by AUROC on all problems.",
            detection_table(detection, "auroc"),
            "Precision at k (k = number of injected problems of that kind):",
            detection_table(detection, "precision_at_k_bad"),
            Figure(figures / "04_compare" / "found_vs_inspected.png", "Fraction found vs fraction inspected"),
            Figure(figures / "04_compare" / "auroc_by_setting.png", "Detection AUROC by noise setting and method"),
        ]
    else:
        blocks.append(Note("Detection results missing: run `dvc repro compare`."))
    if noisy is not None and not noisy.empty:
        blocks += [
            "Fine-tuning on the pool with added pixel noise (the poster's robustness table); every subset is "
            "curated by its own valuation of the noisy pool:",
            poster_table(noisy),
            *noise_verdicts(noisy),
        ]
    return Section("Robustness to noise", blocks)


def _finetuning(summary: pd.DataFrame | None, ft: dict[str, Any] | None, figures: Path) -> Section:
    title = "Fine-tuning: curated vs full vs random"
    if summary is None or ft is None:
        return Section(title, [Note("Fine-tuning results missing: run `dvc repro finetune`.")])
    blocks: list[Any] = [
        f"Mean ± std over {ft['trials']} trials (random: also over {ft['random_draws']} draws), each trial with "
        "its own 80/20 train/validation split and freshly re-loaded pretrained weights; test on the clean held-out "
        "set. The oracle row uses ground truth and is a ceiling, not a method.",
    ]
    for method, group in summary.groupby("method", sort=False):
        blocks += [f"**{method}**", poster_table(group)]
    blocks.append(Figure(figures / "05_finetune" / "finetune_metrics.png", "Fine-tuning metrics by subset"))
    return Section(title, blocks)


def _sizes(sweep: pd.DataFrame | None, sweep_text: str | None, figures: Path) -> Section:
    title = "Results across data sizes"
    if sweep is None:
        return Section(
            title, [Note("Sizes sweep missing: set `finetune.size_fractions` and run `dvc repro finetune`.")]
        )
    return Section(
        title,
        [
            "The primary selection, best-first, cut at growing fractions and trained the same way.",
            sweep_table(sweep),
            sweep_text or "",
            Figure(figures / "05_finetune" / "sizes_sweep.png", "Metrics across curated sizes"),
        ],
    )


def _suite_tables(tables: Path) -> dict[str, pd.DataFrame | None]:
    out: dict[str, pd.DataFrame | None] = {}
    for name in ("summary", "checks", "ablations", "skipped"):
        try:
            out[name] = pd.read_csv(tables / f"suite_{name}.csv")
        except (FileNotFoundError, pd.errors.EmptyDataError):
            out[name] = None
    return out


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def _suite(suite: dict[str, Any] | None, tables: Path, figures: Path) -> Section:
    """The selection suite: every scenario x selection at the report budget, the done-when checks,
    the budget curve, the ablations, and every skipped selection (never silently left out)."""
    title = "Selection suite: many scenarios, development and held-out seeds"
    if suite is None:
        return Section(
            title, [Note("Suite results missing: run `dvc repro finetune` (`suite.profile` small or full).")]
        )
    if suite["profile"] == "disabled":
        return Section(title, [Note("Not run: `suite.profile` is `disabled` in params.yaml.")])
    frames = _suite_tables(tables)
    seeds = suite["seeds"]
    blocks: list[Any] = [
        f"Profile `{suite['profile']}`: scenarios {', '.join(f'`{s}`' for s in suite['scenarios'])}; development seeds "
        f"{seeds['development']} and held-out seeds {seeds['held_out']} (never looked at while choosing a policy; "
        f"reported in separate columns); budgets {', '.join(f'{b:.0%}' for b in suite['budgets'])}; evaluators "
        f"{', '.join(suite['evaluators'])}; {suite['trials']} fine-tuning trial(s) per subset. Mean ± std over seed x "
        f"trial. Gap closed: 0% = `{suite['baseline']}`, 100% = `{suite['ceiling']}`. Precision = share of truly clean "
        "samples in the subset. Rows marked *uses ground truth* are ceilings, not methods. Fine-tuning trains the "
        "backbone's tail on cached stem outputs (exact: the stem is frozen).",
        f"This run took {_minutes(suite['seconds'])}"
        + (
            f"; the full profile is estimated at {_minutes(suite['estimated_full_seconds']['total_s'])} from this run's "
            "per-run costs (setup per scenario and seed, valuation and selection per subset, training time per "
            "selected sample)."
            if "estimated_full_seconds" in suite
            else "."
        ),
    ]
    skipped = frames["skipped"]
    if skipped is not None and not skipped.empty:
        blocks.append(
            Note(
                f"{len(skipped)} selection(s) did not run because a plug-in they name is not registered "
                "in this installation: "
                + "; ".join(f"`{r.selection}` ({r.reason})" for r in skipped.itertuples())
                + "."
            )
        )
    summary = frames["summary"]
    if summary is None or summary.empty:
        blocks.append(Note("No suite results: every selection was skipped or nothing ran."))
        return Section(title, blocks)
    budgets = sorted(summary["budget"].unique())
    budget = min(budgets, key=lambda b: abs(b - 0.2))
    for evaluator in dict.fromkeys(summary["evaluator"]):
        blocks += [f"**{evaluator}** at budget {budget:.0%}", suite_table(summary, str(evaluator), float(budget))]
    checks = frames["checks"]
    if checks is not None and not checks.empty:
        blocks += [
            f"Done-when checks: `{suite['primary']}` against the best control, against "
            f"`{suite['baseline']}` and against herding over random values; it *wins* where the margin "
            "exceeds the combined std sqrt(std_a^2 + std_b^2). The paired column is the per-seed "
            "difference (trial means, same scenario draw), mean ± std over seeds: it leaves out the "
            "spread between seeds that both selections share, so it resolves smaller gaps; the verdict "
            "does not use it.",
            suite_checks_table(checks),
        ]
    else:
        blocks.append(Note(f"No done-when checks: the primary selection `{suite['primary']}` did not run."))
    blocks.append(
        Figure(
            figures / "05_finetune" / "suite_budget_curve.png",
            "Accuracy vs budget on the default scenario (solid: development seeds, dashed: held-out)",
        )
    )
    ablations = frames["ablations"]
    if ablations is not None and not ablations.empty:
        blocks += [
            f"Ablations: each minus `{suite['primary']}` (negative = the removed part helped):",
            suite_checks_table(ablations.assign(against="primary")),
        ]
    blocks += [
        "How the primary was chosen - every method choice of the selection study in the order it was made, the "
        "seeds it was decided on and the seeds whose results were already known (`decided on: none` = a choice "
        "about cost, not the method):",
        load_decisions().rename(columns={"decided_on": "decided on", "seen": "results seen"}),
    ]
    return Section(title, blocks)


def _compute(summary: pd.DataFrame | None, figures: Path) -> Section:
    title = "Compute saved"
    saved = compute_saved(summary) if summary is not None else pd.DataFrame()
    if saved.empty:
        return Section(
            title,
            [
                Note(
                    "Needs a `full` row in the fine-tuning results: run `dvc repro finetune` with "
                    "`full` in `finetune.subsets`."
                )
            ],
        )
    shown = saved.assign(
        **{
            "speed-up": [f"{v:.1f}x" for v in saved["speed-up"]],
            "time saved": [f"{v:.1%}" for v in saved["time saved"]],
            "AUC retained": [f"{v:.1%}" for v in saved["AUC retained"]],
        }
    )
    return Section(
        title,
        [
            "Training time of each subset relative to the full pool (same method, means over trials): speed-up = "
            "full / subset, time saved = 1 - subset / full, AUC retained = subset AUC / full AUC.",
            shown,
            Figure(
                figures / "06_report" / "compute_vs_accuracy.png",
                "Compute vs accuracy: every subset and method, with the sizes curve",
            ),
        ],
    )


def _audit(base: Path) -> Section:
    flags_path = base / "reports" / "audit" / "flags.csv"
    command = (
        "`kairos-curate audit --pool data/embeddings/pool.npz --reference data/embeddings/reference.npz "
        "--images data/prepared/pixels.npz --out reports/audit`"
    )
    if not flags_path.exists():
        return Section(
            "Data audit",
            [
                f"Not run yet. The poster's future work, an automated auditing layer that "
                f"names each sample's problem before training: {command}."
            ],
        )
    flags = pd.read_csv(flags_path)
    counts = ", ".join(
        f"{int(flags[f'is_{t}'].astype(bool).sum())} {t.replace('_', '-')}"
        for t in ("corrupted", "off_task", "mislabelled", "near_duplicate")
        if f"is_{t}" in flags
    )
    blocks: list[Any] = [
        f"The poster's future work, an automated auditing layer: {command} names each pool sample's problem - "
        "corrupted, off-task, likely mislabelled (with the suggested label), near-duplicate - each flag calibrated on "
        "the clean reference so that about the same small share of clean samples is flagged per type "
        "([audit/audit.html](audit/audit.html), `flags.csv`). Last audit: "
        f"{len(flags)} samples; flagged {counts}; {int(flags['keep'].astype(bool).sum())} kept.",
    ]
    scores_path = base / PATHS.tables / "audit_scores.csv"
    if scores_path.exists():
        scores = pd.read_csv(scores_path)
        blocks += [
            "Each type's flag against the scenario's ground truth (the audit never read it):",
            scores[
                [
                    c
                    for c in (
                        "issue_type",
                        "n_true",
                        "n_flagged",
                        "precision",
                        "recall",
                        "auroc",
                        "suggestion_accuracy",
                    )
                    if c in scores.columns
                ]
            ],
        ]
    return Section("Data audit", blocks)


def _limitations(
    prep: dict[str, Any], val: dict[str, Any], ft: dict[str, Any] | None, comp: dict[str, Any] | None
) -> Section:
    lines = [
        (
            "The default scenario is Fashion-MNIST with EfficientNet-Lite0, chosen to run offline on two CPU cores; it "
            "mirrors the poster's design (task classes vs off-task classes, pixel noise, label flips) but not its data."
            if prep.get("source", "fashion_mnist") == "fashion_mnist"
            else "Off-task iNaturalist images enter the pool with a task label drawn at random (scenario.offtask_label), "
            "a stand-in for a weak labeller; which species count as off-task follows the taxonomy mapping."
        ),
        "KAIROS assumes the reference is a gold standard: a biased reference propagates its bias into the selection.",
        f"Values depend on the RBF bandwidth ({val['bandwidth']:.4g}, median heuristic) and on the label mode "
        f"(`{val['label_mode']}` here); the feature term alone cannot see flipped labels.",
    ]
    if ft:
        lines.append(
            f"Fine-tuning trained {ft['trained_layers']} with the frozen stem's outputs cached "
            f"({ft['stem_outputs_cached']}); {ft['trials']} trials give wide error bars."
        )
    if comp:
        lines.append(
            "Deterministic detection methods ran once on one pool: their std is 0 and says nothing "
            "about variation across pools."
        )
    return Section("Limitations", [lines])


def _provenance(base: Path, prov: dict[str, str]) -> Section:
    walls = stage_wall_times(base / PATHS.notebooks)
    if not walls.empty:
        walls = pd.concat(
            [
                walls,
                pd.DataFrame(
                    [{"stage": "total", "notebook": "", "wall time (s)": walls["wall time (s)"].sum(), "ended": ""}]
                ),
            ],
            ignore_index=True,
        )
    return Section(
        "Provenance",
        [
            pd.DataFrame([{"item": k, "value": v} for k, v in prov.items()]),
            walls
            if not walls.empty
            else Note(
                "Stage wall times unavailable: the notebooks in `reports/notebooks/` "
                "were not rendered by papermill (run `dvc repro`)."
            ),
        ],
    )
