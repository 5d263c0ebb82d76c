"""iNaturalist 2021 adapters: the official folder layout and exported tables.

Official layout (https://github.com/visipedia/inat_comp/tree/master/2021)::

    <root>/train.json          COCO-style: images, annotations, categories
    <root>/train/<image_dir_name>/<uuid>.jpg
    <root>/val.json, <root>/val/...   (and train_mini.json, train_mini/ ...)

``images[*].file_name`` is relative to ``<root>`` (``"train/00001_Animalia_.../x.jpg"``);
each category carries its taxonomy (``kingdom``, ``phylum``, ``class``, ``order``, ``family``,
``genus``, ``specific_epithet``) and its scientific ``name``, which the taxonomy mapping sees as
``species``.

Exported table: a CSV/TSV/Parquet file (or a DataFrame) with one row per image, a column with
the image path (relative to ``image_root``) or the encoded image bytes, a species column, and
optionally taxonomy columns named after the levels (``order``, ``family``, ...) and an id
column.

Both return a :class:`~kairos_curate.data.adapters.LoadedDataset` whose ``label`` is the task
category from the taxonomy mapping (``resources/insect_taxonomy.yaml`` unless another file is
given) or ``"off-task"``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from kairos_curate.data.adapters import (
    LoadedDataset,
    SkippedEntry,
    Taxonomy,
    _as_taxonomy,
    _finish,
)
from kairos_curate.io import atomic_write

__all__ = ["SOURCE", "TAXONOMY_FIELDS", "load_inaturalist", "load_inaturalist_table"]

#: ``source`` column value of iNaturalist rows.
SOURCE = "inaturalist2021"

#: Taxonomy fields read from iNaturalist categories (``species`` comes from ``name``).
TAXONOMY_FIELDS = ("kingdom", "phylum", "class", "order", "family", "genus")

_INAT_URL = "https://github.com/visipedia/inat_comp/tree/master/2021"


def _restrict(ds: LoadedDataset, categories: Iterable[str] | None, off_task: str) -> LoadedDataset:
    return ds if categories is None else ds.restrict_labels(categories, off_task)


def load_inaturalist(
    root: str | os.PathLike[str],
    split: str = "train",
    *,
    annotations: str | os.PathLike[str] | None = None,
    taxonomy: Taxonomy | str | os.PathLike[str] | None = None,
    categories: Sequence[str] | None = None,
    verify: bool = False,
) -> LoadedDataset:
    """Load an iNaturalist 2021 split from the official folder layout.

    Parameters
    ----------
    root
        The folder holding ``<split>.json`` and the ``<split>/`` image folder.
    split
        ``"train"``, ``"val"``, ``"train_mini"`` (any name with that layout works).
    annotations
        The COCO-style JSON file; default ``<root>/<split>.json``.
    taxonomy
        A :class:`Taxonomy` or the path of a mapping YAML; default the packaged mapping.
    categories
        If given, mapped categories outside this list become off-task (e.g. the reference's
        classes).
    verify
        Decode every image and skip the unreadable ones (slow on the full dataset). Missing
        files are always skipped.

    Returns
    -------
    LoadedDataset
        ``id`` is ``"inat:<image id>"``; extra columns ``category_id`` and the taxonomy fields.
        Entries skipped (missing/unreadable file, no or conflicting annotation, unknown
        category) are in ``.skipped`` and announced with a warning.

    Raises
    ------
    FileNotFoundError
        If ``root``, the JSON file or an image folder named in it does not exist.
    ValueError
        If the JSON file is not valid or lacks ``images``/``annotations``/``categories``.
    """
    tax = _as_taxonomy(taxonomy)
    root_p = Path(root)
    if not root_p.is_dir():
        raise FileNotFoundError(
            f"iNaturalist root folder {root_p} does not exist; it must hold {split}.json and {split}/ (see {_INAT_URL})"
        )
    json_p = Path(annotations) if annotations is not None else root_p / f"{split}.json"
    if not json_p.is_file():
        raise FileNotFoundError(
            f"iNaturalist annotation file {json_p} not found; download {split}.json.tar.gz from "
            f"{_INAT_URL} and extract it into {root_p}, or pass annotations=<path>"
        )
    try:
        doc = json.loads(json_p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{json_p} is not valid JSON: {err}") from err
    missing = [k for k in ("images", "annotations", "categories") if k not in doc]
    if not isinstance(doc, dict) or missing:
        raise ValueError(
            f"{json_p} lacks the COCO keys {missing or ['images', 'annotations', 'categories']}; "
            "is it an iNaturalist 2021 annotation file?"
        )

    cat_info: dict[Any, dict[str, Any]] = {}
    for cat in doc["categories"]:
        if "id" not in cat or "name" not in cat:
            raise ValueError(f"{json_p}: category without id/name: {cat!r}")
        taxon = {f: cat.get(f) for f in TAXONOMY_FIELDS}
        taxon["species"] = cat["name"]
        cat_info[cat["id"]] = {**taxon, "label": tax.map_taxon(taxon)}

    ann: dict[Any, set[Any]] = {}
    for a in doc["annotations"]:
        ann.setdefault(a.get("image_id"), set()).add(a.get("category_id"))

    top_dirs = {
        Path(str(im["file_name"])).parts[0]
        for im in doc["images"]
        if im.get("file_name") and len(Path(str(im["file_name"])).parts) > 1
    }
    for d in sorted(top_dirs):
        if not (root_p / d).is_dir():
            raise FileNotFoundError(
                f"image folder {root_p / d} (named by {json_p.name}) does not exist; extract "
                f"{d}.tar.gz from {_INAT_URL} into {root_p}"
            )

    rows: list[dict[str, Any]] = []
    skipped: list[SkippedEntry] = []
    for im in doc["images"]:
        image_id = im.get("id")
        ident = f"inat:{image_id}"
        file_name = im.get("file_name")
        if image_id is None or not file_name:
            skipped.append(SkippedEntry(ident, str(file_name), "image entry without id/file_name"))
            continue
        path = root_p / str(file_name)
        cats = ann.get(image_id, set())
        if not cats:
            skipped.append(SkippedEntry(ident, str(path), "no annotation"))
            continue
        if len(cats) > 1:
            skipped.append(
                SkippedEntry(
                    ident,
                    str(path),
                    f"conflicting annotations: categories {sorted(map(str, cats))}",
                )
            )
            continue
        cat_id = next(iter(cats))
        if cat_id not in cat_info:
            skipped.append(SkippedEntry(ident, str(path), f"unknown category id {cat_id}"))
            continue
        if not path.is_file():
            skipped.append(SkippedEntry(ident, str(path), "missing file"))
            continue
        info = cat_info[cat_id]
        rows.append(
            {
                "id": ident,
                "path": str(path.resolve()),
                "label": info["label"],
                "species": info["species"],
                "source": SOURCE,
                "category_id": cat_id,
                **{f: info[f] for f in TAXONOMY_FIELDS},
            }
        )
    ds = _finish(
        rows,
        skipped,
        verify=verify,
        taxonomy=tax,
        what=f"iNaturalist {json_p}",
        extra_columns=("category_id", *TAXONOMY_FIELDS),
    )
    return _restrict(ds, categories, tax.off_task)


# --------------------------------------------------------------------------------------------
# exported tables

_PATH_COLUMNS = ("path", "image_path", "file_path", "filepath", "file_name", "filename", "image")
_BYTES_COLUMNS = ("image_bytes", "bytes", "image", "img")
_SPECIES_COLUMNS = ("species", "scientific_name", "taxon_name", "name")
_ID_COLUMNS = ("id", "image_id", "uuid")


def _read_table(table: str | os.PathLike[str] | pd.DataFrame) -> tuple[pd.DataFrame, Path | None]:
    if isinstance(table, pd.DataFrame):
        return table.reset_index(drop=True), None
    p = Path(table)
    if not p.is_file():
        raise FileNotFoundError(f"iNaturalist export table {p} not found")
    suffix = p.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(p).reset_index(drop=True), p
        if suffix in (".csv", ".tsv", ".txt"):
            return pd.read_csv(p, sep="\t" if suffix == ".tsv" else ","), p
    except Exception as err:
        raise ValueError(f"cannot read iNaturalist export table {p}: {err}") from err
    raise ValueError(f"iNaturalist export table {p}: unsupported format {suffix!r} (use .csv, .tsv or .parquet)")


def _image_bytes(value: Any) -> bytes | None:
    if isinstance(value, dict):  # Hugging Face datasets' Image feature: {"bytes": ..., "path": ...}
        value = value.get("bytes")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value) or None
    return None


def _is_bytes_column(series: pd.Series) -> bool:
    first = series.dropna()
    return bool(len(first)) and _image_bytes(first.iloc[0]) is not None


def _pick(frame: pd.DataFrame, given: str | None, candidates: Sequence[str], what: str) -> str | None:
    if given is not None:
        if given not in frame.columns:
            raise ValueError(f"{what} column {given!r} not in the table; columns: {list(frame.columns)}")
        return given
    lower = {str(c).lower(): c for c in frame.columns}
    for cand in candidates:
        if cand in lower:
            return str(lower[cand])
    return None


def _extension(data: bytes) -> str:
    if data.startswith(b"\xff\xd8"):
        return ".jpg"
    if data.startswith(b"\x89PNG"):
        return ".png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return ".gif"
    return ".img"


def load_inaturalist_table(
    table: str | os.PathLike[str] | pd.DataFrame,
    *,
    image_root: str | os.PathLike[str] | None = None,
    extract_dir: str | os.PathLike[str] | None = None,
    taxonomy: Taxonomy | str | os.PathLike[str] | None = None,
    categories: Sequence[str] | None = None,
    path_column: str | None = None,
    bytes_column: str | None = None,
    species_column: str | None = None,
    id_column: str | None = None,
    verify: bool = False,
    source: str = SOURCE,
) -> LoadedDataset:
    """Load an exported iNaturalist table (paths or image bytes + species).

    Columns are found by name (case-insensitive) unless given: path ``path``/``image_path``/
    ``file_path``/``file_name``/``image``; bytes ``image_bytes``/``bytes``/``image`` (raw bytes or
    a Hugging Face ``{"bytes": ..., "path": ...}`` struct); species ``species``/
    ``scientific_name``/``taxon_name``/``name``; id ``id``/``image_id``/``uuid``. Taxonomy
    columns named after the mapping's levels (``order``, ``family``, ...) are used when present;
    without them only ``species`` rules can match.

    Parameters
    ----------
    table
        A ``.csv``, ``.tsv`` or ``.parquet`` file, or a DataFrame.
    image_root
        Folder relative image paths are resolved against; default the table's folder (the
        working directory for a DataFrame).
    extract_dir
        Required when the table holds image bytes: each image is written there once, as
        ``<id>_<hash>.<ext>`` (atomically; an existing identical file is reused), so that the
        images can be read lazily like any other file.
    taxonomy
        A :class:`Taxonomy` or a mapping YAML path; default the packaged mapping.
    categories
        If given, mapped categories outside this list become off-task.
    path_column, bytes_column, species_column, id_column
        Override the column detection.
    verify
        Decode every image and skip unreadable ones. Missing files are always skipped.
    source
        Value of the ``source`` column.

    Returns
    -------
    LoadedDataset
        ``id`` is ``"inat:<id column>"``, else ``"inat:<path as written>"``, else
        ``"inat:row<k>"`` (row number in the table).

    Raises
    ------
    FileNotFoundError
        If the table file is missing.
    ValueError
        If no species column or no path/bytes column is found, ids repeat, or bytes are given
        without ``extract_dir``.
    """
    tax = _as_taxonomy(taxonomy)
    frame, table_path = _read_table(table)
    what = f"iNaturalist table {table_path or '(DataFrame)'}"
    species_col = _pick(frame, species_column, _SPECIES_COLUMNS, "species")
    if species_col is None:
        raise ValueError(
            f"{what} has no species column (looked for {list(_SPECIES_COLUMNS)}); columns: "
            f"{list(frame.columns)}; pass species_column="
        )
    bytes_col = bytes_column
    if bytes_col is not None:
        _pick(frame, bytes_col, (), "bytes")
    else:
        cand = _pick(frame, None, _BYTES_COLUMNS, "bytes")
        bytes_col = cand if cand is not None and _is_bytes_column(frame[cand]) else None
    path_col = None
    if bytes_col is None:
        path_col = _pick(frame, path_column, _PATH_COLUMNS, "path")
        if path_col is None:
            raise ValueError(
                f"{what} has neither an image path column (looked for {list(_PATH_COLUMNS)}) nor "
                f"an image bytes column (looked for {list(_BYTES_COLUMNS)}); columns: "
                f"{list(frame.columns)}; pass path_column= or bytes_column="
            )
    elif extract_dir is None:
        raise ValueError(
            f"{what} holds image bytes in column {bytes_col!r}; pass extract_dir=<folder> where "
            "they are written once as files"
        )
    id_col = _pick(frame, id_column, _ID_COLUMNS, "id")
    root = Path(image_root) if image_root is not None else (table_path.parent if table_path else Path.cwd())

    lower = {str(c).lower(): c for c in frame.columns}
    tax_cols = {lvl: lower[lvl] for lvl in tax.levels if lvl in lower and lvl != "species"}
    taxa = pd.DataFrame({lvl: frame[col] for lvl, col in tax_cols.items()}, index=frame.index)
    taxa["species"] = frame[species_col]
    labels = tax.map_frame(taxa)

    out_dir = Path(extract_dir) if extract_dir is not None else None
    rows: list[dict[str, Any]] = []
    skipped: list[SkippedEntry] = []
    for k, (ix, rec) in enumerate(frame.iterrows()):
        if id_col is not None and pd.notna(rec[id_col]):
            ident = f"inat:{rec[id_col]}"
        elif path_col is not None and pd.notna(rec[path_col]):
            ident = f"inat:{rec[path_col]}"
        else:
            ident = f"inat:row{k}"
        species = rec[species_col]
        if pd.isna(species) or not str(species).strip():
            skipped.append(SkippedEntry(ident, "", "no species"))
            continue
        if bytes_col is not None:
            assert out_dir is not None
            data = _image_bytes(rec[bytes_col])
            if data is None:
                skipped.append(SkippedEntry(ident, "", "no image bytes"))
                continue
            safe = re.sub(r"[^A-Za-z0-9._-]+", "_", ident)[:80]
            digest = hashlib.sha1(data).hexdigest()[:12]
            path = out_dir / f"{safe}_{digest}{_extension(data)}"
            if not (path.is_file() and path.stat().st_size == len(data)):
                with atomic_write(path) as handle:
                    handle.write(data)
        else:
            assert path_col is not None
            raw = rec[path_col]
            if pd.isna(raw) or not str(raw).strip():
                skipped.append(SkippedEntry(ident, "", "no image path"))
                continue
            path = Path(str(raw))
            if not path.is_absolute():
                path = root / path
            if not path.is_file():
                skipped.append(SkippedEntry(ident, str(path), "missing file"))
                continue
        rows.append(
            {
                "id": ident,
                "path": str(path.resolve()),
                "label": labels.loc[ix],
                "species": str(species),
                "source": source,
                **{lvl: rec[col] for lvl, col in tax_cols.items()},
            }
        )
    ds = _finish(rows, skipped, verify=verify, taxonomy=tax, what=what, extra_columns=tuple(tax_cols))
    return _restrict(ds, categories, tax.off_task)
