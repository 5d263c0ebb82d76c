"""The audit gallery: one self-contained HTML page of pool samples with their KAIROS terms.

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
    image = (f"<img alt='{html.escape(sid)}' src='{thumb}'>" if thumb
             else "<div class='noimg'>no image</div>")
    cells = [("rank", int(row["rank"])), ("value", row["value"]), ("b", row["b"]), ("a", row["a"])]
    if not pd.isna(row.get("label_term", np.nan)):
        cells.append(("label term", row["label_term"]))
    if "label" in row.index:
        cells.insert(0, ("label", row["label"]))
    cells.extend(extra)
    body = "".join(f"<tr><td>{html.escape(k)}</td><td class='v'>{_fmt(v)}</td></tr>" for k, v in cells)
    flag = f"<div class='flag'>{html.escape(str(row['flag']))}</div>" if row.get("flag") else ""
    return f"<div class='card {kind}'>{image}<div class='id'>{html.escape(sid)}</div><table>{body}</table>{flag}</div>"


def render_audit_html(path: str | Path, table: pd.DataFrame, order: np.ndarray, *, groups_idx: Sequence[np.ndarray],
                      id_arr: np.ndarray, images: ImageSource | None, n_lowest: int, n_highest: int,
                      max_groups: int, thumb_size: int, info: dict[str, Any], title: str,
                      embeddings: np.ndarray | None = None, progress: bool = False) -> Path:
    """Write the audit page (see :func:`kairos_curate.audit.audit`, which calls this).

    Parameters
    ----------
    path
        Output HTML file (written atomically).
    table
        Per-sample table indexed by id with ``rank``, ``value``, ``b``, ``a``, ``label_term``,
        ``flag`` (and ``label``).
    order
        Pool row indices from most to least valuable.
    groups_idx
        Near-duplicate groups as row indices, best-valued member first.
    id_arr
        Pool ids in row order.
    images
        Image source holding (some of) the pool ids, or ``None``.
    n_lowest, n_highest, max_groups, thumb_size, title
        What to show (see :func:`kairos_curate.audit.audit`).
    info
        Summary counts shown at the top.
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
    needed = sorted({*lowest.tolist(), *highest.tolist(), *(i for g in shown_groups for i in g.tolist())})
    thumbs: dict[int, str | None] = {}
    lookup = {str(s): k for k, s in enumerate(images.ids.tolist())} if images is not None else {}
    for i in tqdm(needed, desc="thumbnails", disable=not progress, unit="img"):
        k = lookup.get(str(id_arr[i]))
        thumbs[i] = thumbnail_data_url(images.load_image(k), thumb_size) if images is not None and k is not None else None

    rows = table.reset_index(drop=True)

    def card(i: int, kind: str, extra: Sequence[tuple[str, Any]] = ()) -> str:
        return _card(rows.iloc[i], str(id_arr[i]), thumbs.get(i), kind, extra)

    summary = [
        ("pool samples", info["pool"]), ("reference samples", info["reference"]),
        ("flagged low value", f"{info['low_value']} ({info['flag_rule']})"),
        ("near-duplicate groups", f"{info['dup_groups']} (cosine &gt; {info['dup_threshold']:g}; "
                                  f"{info['dup_flagged']} extra copies flagged; highest pairwise cosine "
                                  f"{info.get('max_similarity', float('nan')):.4f})"),
        ("kept", f"{info['kept']} of {info['pool']}"),
        ("label mode", html.escape(str(info["label_mode"]))), ("RBF bandwidth", f"{info['bandwidth']:.4g}"),
        ("images", html.escape(str(info["images"]))),
    ]
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<meta name='viewport' content='width=device-width,initial-scale=1'><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<div class='summary'>" + "".join(f"<span>{k}: <b>{v}</b></span>" for k, v in summary) + "</div>",
        "<p class='howto'>Value = KAIROS value (higher = pulls the pool towards the reference): "
        "<code>b</code> = mean kernel to the reference, <code>a</code> = mean kernel to the pool "
        "(redundancy), label term = what the labels change. Rank 1 = most valuable. "
        "<code>flags.csv</code> next to this page lists every sample with its flag and <code>keep</code>; "
        "train on the rows with <code>keep == True</code>.</p>",
        f"<h2>Lowest-valued {lowest.size} samples (most suspicious first)</h2>",
        "<div class='grid'>" + "".join(card(i, "low") for i in lowest.tolist()) + "</div>",
        f"<h2>Highest-valued {highest.size} samples (for contrast)</h2>",
        "<div class='grid'>" + "".join(card(i, "high") for i in highest.tolist()) + "</div>",
        f"<h2>Near-duplicate groups ({len(shown_groups)} of {len(groups_idx)} shown, largest first)</h2>",
    ]
    if not groups_idx:
        parts.append(f"<p>No two pool embeddings have cosine similarity above {info['dup_threshold']:g}.</p>")
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
        parts.append(f"<div class='group'><b>group {g + 1}</b>: {members.size} samples, kept "
                     f"<code>{html.escape(str(id_arr[keep_i]))}</code> (best value)"
                     f"<div class='grid'>{''.join(cards)}</div></div>")
    parts.append("</body></html>")
    target = Path(path)
    with atomic_write(target, "w") as handle:
        handle.write("\n".join(parts))
    return target
