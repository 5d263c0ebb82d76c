"""Score an audit's issue flags against a ground-truth table: precision and recall per type.

Evaluation only: the truth table is what the scenario did to each pool sample, which the audit
never sees. The default scenario's truth (``data/truth/*.parquet``) has columns ``id``,
``off_task``, ``label_flipped``, ``corruption`` (``none``, ``gaussian_noise``, ...),
``true_label`` and ``noisy``; a ``near_duplicate`` (bool) or ``duplicate_of`` (id or empty)
column, where a scenario injects copies, scores the near-duplicate flags too.

>>> scores = score_audit(result.table, truth)          # doctest: +SKIP
>>> scores[["issue_type", "precision", "recall"]]      # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["TRUTH_OF", "score_audit", "truth_masks"]

#: Issue type -> how its ground truth is read from the truth table (for the docs and the report).
TRUTH_OF = {
    "corrupted": "corruption != 'none'",
    "off_task": "off_task",
    "mislabelled": "label_flipped",
    "near_duplicate": (
        "duplicate_of not empty, or the source of such a copy (scored as group membership: "
        "duplicate_group >= 0); else a near_duplicate column"
    ),
    "any": "noisy (or any of the above)",
}


def _bool(series: pd.Series) -> np.ndarray:
    if series.dtype == bool:
        return series.to_numpy()
    text = series.astype(str).str.strip().str.lower()
    return text.isin(("true", "1", "yes")).to_numpy()


def truth_masks(truth: pd.DataFrame) -> dict[str, np.ndarray | None]:
    """Boolean ground truth per issue type (``None`` where the table has no such column)."""
    masks: dict[str, np.ndarray | None] = {}
    masks["corrupted"] = (
        (truth["corruption"].fillna("none").astype(str) != "none").to_numpy() if "corruption" in truth.columns else None
    )
    masks["off_task"] = _bool(truth["off_task"]) if "off_task" in truth.columns else None
    masks["mislabelled"] = _bool(truth["label_flipped"]) if "label_flipped" in truth.columns else None
    if "duplicate_of" in truth.columns:
        of = truth["duplicate_of"].fillna("").astype(str)
        sources = set(of[of != ""])
        masks["near_duplicate"] = (of.ne("") | truth["id"].astype(str).isin(sources)).to_numpy()
    elif "near_duplicate" in truth.columns:
        masks["near_duplicate"] = _bool(truth["near_duplicate"])
    else:
        masks["near_duplicate"] = None
    if "noisy" in truth.columns:
        masks["any"] = _bool(truth["noisy"])
    else:
        known = [v for k, v in masks.items() if v is not None]
        masks["any"] = np.logical_or.reduce(known) if known else None
    return masks


def _auroc(truth: np.ndarray, score: np.ndarray) -> float:
    ok = np.isfinite(score)
    y, s = truth[ok], score[ok]
    if y.all() or not y.any():
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(s)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def score_audit(flags: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Precision and recall of each issue type's flag against the ground truth.

    Parameters
    ----------
    flags
        The audit's table (:attr:`kairos_curate.audit.AuditResult.table`, indexed by id) or
        ``flags.csv`` read back (an ``id`` column): ``is_<type>`` per type, optionally
        ``<type>_score`` (for the AUROC), ``suggested_label`` (for the suggestion accuracy).
    truth
        Ground truth with an ``id`` column and the columns of :data:`TRUTH_OF`; every audited
        id must be in it.

    Returns
    -------
    pandas.DataFrame
        One row per issue type plus ``any`` (any flag vs any problem): ``issue_type``,
        ``truth`` (the rule of :data:`TRUTH_OF`), ``n_samples``, ``n_true``, ``n_flagged``,
        ``true_positives``, ``precision`` (NaN when nothing is flagged), ``recall`` (NaN when
        the truth has no such sample or no such column), ``auroc`` of the score, and
        ``suggestion_accuracy`` (mislabelled: share of the flagged, truly flipped samples whose
        suggested label is their true label). With a ``duplicate_of`` truth column and the
        audit's ``duplicate_group``, near-duplicates are scored as group membership (a copy and
        its source are both true members; any audit group member counts as flagged).

    Raises
    ------
    ValueError
        No ``id`` in either table, or audited ids missing from the truth table.
    """
    table = flags.reset_index() if "id" not in flags.columns else flags
    if "id" not in table.columns:
        raise ValueError("flags needs an 'id' column or an index named 'id' (the audit table or flags.csv)")
    if "id" not in truth.columns:
        raise ValueError(f"the truth table needs an 'id' column; found {list(truth.columns)}")
    ids = table["id"].astype(str)
    t = truth.assign(id=truth["id"].astype(str)).drop_duplicates("id").set_index("id")
    missing = ids[~ids.isin(t.index)]
    if len(missing):
        raise ValueError(
            f"{len(missing)} audited id(s) are not in the truth table, e.g. {missing.head(3).tolist()}; "
            "score the audit against the truth of the same pool"
        )
    t = t.loc[ids.to_numpy()].reset_index()
    masks = truth_masks(t)
    rows: list[dict[str, Any]] = []
    types = ("corrupted", "off_task", "mislabelled", "near_duplicate")
    any_flag = np.zeros(len(table), dtype=bool)
    group_scoring = "duplicate_of" in t.columns and "duplicate_group" in table.columns
    for issue in types:
        col = f"is_{issue}"
        flagged = _bool(table[col]) if col in table.columns else np.zeros(len(table), dtype=bool)
        if issue == "near_duplicate" and group_scoring:
            # which copy of a pair is the "extra" one is arbitrary: score who is in a group
            flagged = pd.to_numeric(table["duplicate_group"], errors="coerce").fillna(-1).to_numpy() >= 0
        any_flag |= flagged
        rows.append(_row(issue, flagged, masks[issue], table.get(f"{issue}_score")))
        if (
            issue == "mislabelled"
            and masks[issue] is not None
            and "true_label" in t.columns
            and "suggested_label" in table.columns
        ):
            hit = flagged & masks[issue]
            sugg = table["suggested_label"].astype(str).to_numpy()
            true = t["true_label"].astype(str).to_numpy()
            rows[-1]["suggestion_accuracy"] = float((sugg[hit] == true[hit]).mean()) if hit.any() else float("nan")
    rows.append(_row("any", any_flag, masks["any"], None))
    out = pd.DataFrame(rows)
    if "suggestion_accuracy" not in out.columns:
        out["suggestion_accuracy"] = np.nan
    return out


def _row(issue: str, flagged: np.ndarray, truth: np.ndarray | None, score: Any) -> dict[str, Any]:
    n_flagged = int(flagged.sum())
    row: dict[str, Any] = {
        "issue_type": issue,
        "truth": TRUTH_OF[issue],
        "n_samples": int(flagged.size),
        "n_flagged": n_flagged,
    }
    if truth is None:
        row.update(n_true=np.nan, true_positives=np.nan, precision=np.nan, recall=np.nan, auroc=np.nan)
        row["truth"] = f"not in the truth table ({TRUTH_OF[issue]})"
        return row
    tp = int((flagged & truth).sum())
    n_true = int(truth.sum())
    row.update(
        n_true=n_true,
        true_positives=tp,
        precision=tp / n_flagged if n_flagged else float("nan"),
        recall=tp / n_true if n_true else float("nan"),
        auroc=_auroc(truth, np.asarray(score, dtype=np.float64)) if score is not None else float("nan"),
    )
    return row
