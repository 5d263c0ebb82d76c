"""The audit gallery: one self-contained HTML page of pool samples, grouped by issue type.

It opens with a summary per issue type (how many were flagged and the calibrated rule), then
one section per type with its most severe samples (class names, the suggested label of a likely
mislabelled sample, the pixel check that fired), the near-duplicate groups with the copy kept,
and the lowest- and highest-valued samples for contrast.

Thumbnails are PNGs inlined as base64 ``data:`` URLs, so the page is a single file that opens
anywhere (and passes the headless-browser check: every ``<img>`` decodes, no console errors).
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from kairos_curate.data.sources import ImageSource
from kairos_curate.io import atomic_write

__all__ = ["render_audit_html", "thumbnail_data_url"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1280px;
padding:0 1em 2em;color:#1f2328;line-height:1.4}
h1{margin:.6em 0 .2em;font-size:1.6em;border-bottom:3px solid #2f6f4f}h2{color:#2f6f4f;margin:1.4em 0 .4em}
.summary{display:flex;flex-wrap:wrap;gap:.5em 1.5em;background:#f6f8fa;border:1px solid #d0d7de;
border-radius:6px;padding:.6em 1em;font-size:.92em}.summary b{font-size:1.15em}
.howto{font-size:.85em;color:#57606a;margin:.4em 0}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:8px}
.card{border:1px solid #d0d7de;border-radius:6px;padding:4px;font-size:.72em;background:#fff}
.card.low{border-color:#cf222e;background:#fff5f5}.card.high{border-color:#2f6f4f;background:#f3fbf6}
.card.dup{border-color:#bf8700;background:#fffbea}
.card img{display:block;margin:0 auto 3px;image-rendering:pixelated;width:96px;height:96px;object-fit:contain}
.noimg{width:96px;height:96px;margin:0 auto 3px;display:flex;align-items:center;justify-content:center;
background:#eee;color:#888}.card .id{font-weight:600;word-break:break-all}
.card table{border-collapse:collapse;width:100%}.card td{padding:0 2px}.card td.v{text-align:right;
font-variant-numeric:tabular-nums}.flag{color:#cf222e;word-break:break-all}
.group{border-left:4px solid #bf8700;padding-left:.6em;margin:.8em 0}
table.issues{border-collapse:collapse;margin:.6em 0;font-size:.92em}table.issues th,table.issues td{
border:1px solid #d0d7de;padding:.25em .6em;text-align:left;vertical-align:top}table.issues td.n{text-align:right;
font-variant-numeric:tabular-nums;font-weight:600}table.issues tr.off td{color:#8c959f}
.card.issue{border-color:#cf222e;background:#fff5f5}.note{color:#57606a;font-style:italic}
"""


def thumbnail_data_url(image: Image.Image, size: int = 64) -> str:
    """A PNG ``data:`` URL of ``image`` scaled so its longest side is ``size`` pixels."""
    img = image.convert("RGB")
    scale = size / max(img.size)
    new = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    resample = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.LANCZOS
    img = img.resize(new, resample)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.4g}"
    return html.escape(str(value))


def _card(row: pd.Series, sid: str, thumb: str | None, kind: str, extra: Sequence[tuple[str, Any]] = ()) -> str:
    image = f"<img alt='{html.escape(sid)}' src='{thumb}'>" if thumb else "<div class='noimg'>no image</div>"
    cells: list[tuple[str, Any]] = []
    if "class_name" in row.index:
        cells.append(("class", row["class_name"]))
    elif "label" in row.index:
        cells.append(("label", row["label"]))
    cells.extend(extra)
    cells += [("rank", int(row["rank"])), ("value", row["value"]), ("b", row["b"]), ("a", row["a"])]
    if not pd.isna(row.get("label_term", np.nan)):
        cells.append(("label term", row["label_term"]))
    body = "".join(f"<tr><td>{html.escape(k)}</td><td class='v'>{_fmt(v)}</td></tr>" for k, v in cells)
    flag = f"<div class='flag'>{html.escape(str(row['flag']))}</div>" if row.get("flag") else ""
    return f"<div class='card {kind}'>{image}<div class='id'>{html.escape(sid)}</div><table>{body}</table>{flag}</div>"


def _type_extra(row: pd.Series, issue: str) -> list[tuple[str, Any]]:
    """The lines a card of ``issue`` shows about it."""
    if issue == "corrupted":
        kind = str(row.get("corruption", ""))
        extra: list[tuple[str, Any]] = [("check", kind)]
        column = {
            "noisy": "noise_sigma",
            "blurry": "sharpness",
            "dark": "brightness",
            "light": "brightness",
            "low_information": "entropy",
        }.get(kind)
        if column and column in row.index:
            extra.append((column, row[column]))
        return extra
    if issue == "off_task":
        return [("-log(b/a)", row["off_task_score"]), ("p", row["off_task_p"])]
    if issue == "mislabelled":
        return [
            ("suggested", row.get("suggested_class_name", "")),
            ("confidence", row["suggested_confidence"]),
            ("p", row["mislabelled_p"]),
        ]
    return []


def _severity_order(table: pd.DataFrame, issue: str) -> np.ndarray:
    """Rows flagged with ``issue``, most severe first (smallest p-value, then highest score)."""
    flagged = np.flatnonzero(table[f"is_{issue}"].to_numpy(dtype=bool))
    if issue == "near_duplicate":
        return flagged
    p = table[f"{issue}_p"].to_numpy(dtype=np.float64)[flagged]
    score = np.nan_to_num(table[f"{issue}_score"].to_numpy(dtype=np.float64)[flagged], nan=0.0, posinf=1e300)
    return flagged[np.lexsort((-score, p))]


def render_audit_html(
    path: str | Path,
    table: pd.DataFrame,
    order: np.ndarray,
    *,
    groups_idx: Sequence[np.ndarray],
    id_arr: np.ndarray,
    images: ImageSource | None,
    issue_summary: pd.DataFrame,
    n_lowest: int,
    n_highest: int,
    max_groups: int,
    thumb_size: int,
    info: dict[str, Any],
    title: str,
    image_rows: np.ndarray | None = None,
    n_per_type: int = 24,
    embeddings: np.ndarray | None = None,
    progress: bool = False,
) -> Path:
    """Write the audit page (see :func:`kairos_curate.audit.audit`, which calls this).

    Parameters
    ----------
    path
        Output HTML file (written atomically).
    table
        Per-sample table indexed by id, in pool row order, with the columns of
        :attr:`kairos_curate.audit.AuditResult.table`.
    order
        Pool row indices from most to least valuable.
    groups_idx
        Near-duplicate groups as row indices, kept (best-valued) member first.
    id_arr
        Pool ids in row order.
    images
        Image source holding (some of) the pool ids, or ``None``.
    issue_summary
        One row per issue type (``issue_type``, ``label``, ``checked``, ``flagged``, ``rule``).
    n_lowest, n_highest, max_groups, thumb_size, title, n_per_type
        What to show (see :func:`kairos_curate.audit.audit`).
    info
        Summary counts shown at the top.
    image_rows
        Row of each pool sample in ``images`` (-1: none); default: matched by id.
    embeddings
        Pool embeddings, to show each duplicate's cosine similarity to its group's kept member.
    progress
        Show a progress bar over thumbnails.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    n = id_arr.shape[0]
    lowest = order[::-1][: min(n_lowest, n)]
    highest = order[: min(n_highest, n)]
    shown_groups = list(groups_idx[:max_groups])
    per_type = {
        t: _severity_order(table, t)[:n_per_type]
        for t in issue_summary["issue_type"]
        if t != "near_duplicate" and f"is_{t}" in table.columns
    }
    needed = sorted(
        {
            *lowest.tolist(),
            *highest.tolist(),
            *(i for g in shown_groups for i in g.tolist()),
            *(i for rows in per_type.values() for i in rows.tolist()),
        }
    )
    if image_rows is None:
        lookup = {str(s): k for k, s in enumerate(images.ids.tolist())} if images is not None else {}
        image_rows = np.asarray([lookup.get(str(s), -1) for s in id_arr.tolist()], dtype=np.int64)
    thumbs: dict[int, str | None] = {}
    for i in tqdm(needed, desc="thumbnails", disable=not progress, unit="img"):
        k = int(image_rows[i])
        thumb = None
        if images is not None and k >= 0:
            try:
                thumb = thumbnail_data_url(images.load_image(k), thumb_size)
            except OSError:  # an unreadable image: the card says so instead of a picture
                thumb = None
        thumbs[i] = thumb

    rows = table.reset_index(drop=True)

    def card(i: int, kind: str, extra: Sequence[tuple[str, Any]] = ()) -> str:
        return _card(rows.iloc[i], str(id_arr[i]), thumbs.get(i), kind, extra)

    summary_rows = []
    for _, r in issue_summary.iterrows():
        share = f"{r['flagged'] / n:.1%}" if n else "-"
        summary_rows.append(
            f"<tr class='{'' if r['checked'] else 'off'}'><td><a href='#{r['issue_type']}'>{html.escape(str(r['label']))}"
            f"</a></td><td class='n'>{int(r['flagged'])}</td><td class='n'>{share}</td>"
            f"<td>{html.escape(str(r['rule']))}</td></tr>"
        )
    general = [
        ("pool samples", info["pool"]),
        ("reference samples", info["reference"]),
        ("kept (no issue, not low-valued)", f"{info['kept']} of {info['pool']}"),
        ("low value", f"{info['low_value']} ({info['flag_rule']})"),
        ("label mode", html.escape(str(info["label_mode"]))),
        ("RBF bandwidth", f"{info['bandwidth']:.4g}"),
        ("images", html.escape(str(info["images"]))),
    ]
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<meta name='viewport' content='width=device-width,initial-scale=1'><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<table class='issues'><tr><th>issue type</th><th>flagged</th><th>share</th>"
        "<th>rule (calibrated on the clean reference)</th></tr>" + "".join(summary_rows) + "</table>",
        "<div class='summary'>" + "".join(f"<span>{k}: <b>{v}</b></span>" for k, v in general) + "</div>",
        "<p class='howto'>Each issue type has its own threshold, calibrated on the clean reference so that about "
        f"{info.get('alpha', 0.01):.0%} of clean samples would be flagged per type. Corrupted, off-task and "
        "mislabelled are exclusive, in that order. Value = KAIROS value (higher = pulls the pool towards the "
        "reference): <code>b</code> = mean kernel to the reference, <code>a</code> = mean kernel to the pool. "
        "<code>flags.csv</code> next to this page lists every sample with every score, p-value and flag; train on "
        "the rows with <code>keep == True</code>.</p>",
    ]
    for _, r in issue_summary.iterrows():
        issue = str(r["issue_type"])
        if issue == "near_duplicate":
            continue
        shown = per_type.get(issue, np.zeros(0, dtype=np.int64))
        parts.append(
            f"<h2 id='{issue}'>{html.escape(str(r['label']))}: {int(r['flagged'])} flagged"
            + (f" (the {shown.size} most severe shown)" if shown.size < int(r["flagged"]) else "")
            + "</h2>"
        )
        if not r["checked"]:
            parts.append(f"<p class='note'>{html.escape(str(r['rule']))}</p>")
        if shown.size:
            parts.append(
                "<div class='grid'>"
                + "".join(card(i, "issue", _type_extra(rows.iloc[i], issue)) for i in shown.tolist())
                + "</div>"
            )
        elif r["checked"]:
            parts.append("<p class='note'>None flagged.</p>")
    parts.append(
        f"<h2 id='near_duplicate'>Near-duplicate groups: {len(groups_idx)} "
        f"({len(shown_groups)} shown, largest first; {info['dup_flagged']} extra copies flagged)</h2>"
    )
    parts.append(f"<p class='howto'>{html.escape(str(info.get('dup_rule', '')))}.</p>")
    if not groups_idx:
        parts.append("<p class='note'>No near-duplicates found.</p>")
    unit = None
    if embeddings is not None:
        x = np.asarray(embeddings, dtype=np.float64)
        unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    for g, members in enumerate(shown_groups):
        keep_i = int(members[0])
        cards = []
        for i in members.tolist():
            extra: list[tuple[str, Any]] = []
            if unit is not None and i != keep_i:
                extra.append(("cos to kept", float(unit[i] @ unit[keep_i])))
            cards.append(card(i, "high" if i == keep_i else "dup", extra))
        parts.append(
            f"<div class='group'><b>group {g + 1}</b>: {members.size} samples, keep "
            f"<code>{html.escape(str(id_arr[keep_i]))}</code> (best value)"
            f"<div class='grid'>{''.join(cards)}</div></div>"
        )
    parts += [
        f"<h2 id='lowest'>Lowest-valued {lowest.size} samples (most suspicious first)</h2>",
        "<div class='grid'>" + "".join(card(i, "low") for i in lowest.tolist()) + "</div>",
        f"<h2 id='highest'>Highest-valued {highest.size} samples (for contrast)</h2>",
        "<div class='grid'>" + "".join(card(i, "high") for i in highest.tolist()) + "</div>",
        "</body></html>",
    ]
    target = Path(path)
    with atomic_write(target, "w") as handle:
        handle.write("\n".join(parts))
    return target
