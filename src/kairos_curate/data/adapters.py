"""Shared pieces of the real-dataset adapters (iNaturalist 2021, Insects Image Dataset).

* :class:`Taxonomy` / :func:`load_taxonomy`: the versioned, user-editable species -> task
  category mapping (``resources/insect_taxonomy.yaml`` by default).
* :class:`LoadedDataset`: what every adapter returns - a table (one row per image: ``id``,
  ``path``, ``label``, ``species``, ``source``, plus any taxonomy columns), a lazy
  :class:`~kairos_curate.data.sources.FileImageSource` over the same rows, and the entries that
  were skipped, each with its reason.
* :func:`class_overlap`: the class-overlap table (pool categories vs reference categories).
"""

from __future__ import annotations

import importlib.resources
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from PIL import Image

from kairos_curate.data.sources import FileImageSource

__all__ = [
    "COLUMNS",
    "OFF_TASK",
    "LoadedDataset",
    "SkippedEntry",
    "Taxonomy",
    "TaxonomyRule",
    "check_image",
    "class_overlap",
    "default_taxonomy_path",
    "load_taxonomy",
]

#: Label of images whose species maps to no task category (the taxonomy file may rename it).
OFF_TASK = "off-task"

#: Columns every adapter's table has, in this order (taxonomy columns may follow).
COLUMNS = ("id", "path", "label", "species", "source")

#: File extensions treated as images by the folder adapters (lower case).
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})


# --------------------------------------------------------------------------------------------
# taxonomy


@dataclass(frozen=True)
class TaxonomyRule:
    """One mapping rule: all ``conditions`` (level, value) must hold for ``category``."""

    category: str
    conditions: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Taxonomy:
    """A species -> task category mapping (see ``resources/insect_taxonomy.yaml``).

    Attributes
    ----------
    version
        The file's ``version`` field (recorded with every prepared dataset).
    levels
        Taxonomy levels from the least to the most specific.
    categories
        The task categories, in the file's order.
    rules
        The mapping rules.
    off_task
        Label given to species that no rule matches.
    reference_aliases
        Lower-case reference folder name -> category.
    path
        Where the mapping was read from.
    """

    version: str
    levels: tuple[str, ...]
    categories: tuple[str, ...]
    rules: tuple[TaxonomyRule, ...]
    off_task: str = OFF_TASK
    reference_aliases: Mapping[str, str] = field(default_factory=dict)
    path: str = ""

    def _specificity(self, rule: TaxonomyRule) -> tuple[int, int]:
        return (max(self.levels.index(lvl) for lvl, _ in rule.conditions), len(rule.conditions))

    def map_taxon(self, taxon: Mapping[str, Any]) -> str:
        """The task category of one species, or :attr:`off_task`.

        Parameters
        ----------
        taxon
            Level name -> value (e.g. ``{"order": "Coleoptera", "family": "Coccinellidae"}``);
            missing or empty levels never match a condition.

        Returns
        -------
        str
            The category of the most specific matching rule, or :attr:`off_task`.

        Raises
        ------
        ValueError
            If two equally specific rules with different categories both match.
        """
        norm = {k: _norm(v) for k, v in taxon.items()}
        matches = [
            r
            for r in self.rules
            if all(norm.get(lvl) is not None and norm.get(lvl) == _norm(val) for lvl, val in r.conditions)
        ]
        if not matches:
            return self.off_task
        best = max(self._specificity(r) for r in matches)
        winners = {r.category for r in matches if self._specificity(r) == best}
        if len(winners) > 1:
            tied = [dict(r.conditions) for r in matches if self._specificity(r) == best]
            raise ValueError(
                f"taxonomy {self.path or '(in memory)'}: rules {tied} are equally specific and "
                f"map {dict(taxon)} to different categories {sorted(winners)}; make one rule "
                "more specific (add a condition at a lower level)"
            )
        return winners.pop()

    def map_frame(self, frame: pd.DataFrame) -> pd.Series:
        """Map every row of ``frame`` (columns named after :attr:`levels`; missing ones ignored).

        Each distinct combination of taxonomy values is mapped once.
        """
        cols = [lvl for lvl in self.levels if lvl in frame.columns]
        if not cols:
            raise ValueError(
                f"no taxonomy column in the table (need at least one of {list(self.levels)}); "
                f"its columns are {list(frame.columns)}"
            )
        keys = frame[cols].astype(object).where(frame[cols].notna(), None)
        tuples = [tuple(row) for row in keys.itertuples(index=False, name=None)]
        cache: dict[tuple[Any, ...], str] = {}
        out = []
        for t in tuples:
            if t not in cache:
                cache[t] = self.map_taxon(dict(zip(cols, t, strict=True)))
            out.append(cache[t])
        return pd.Series(out, index=frame.index, name="label", dtype=object)

    def reference_category(self, name: str) -> str | None:
        """The category a reference class folder ``name`` stands for, or ``None`` if unknown.

        A folder named like a category (case-insensitively) or listed in ``reference_aliases``
        is recognised.
        """
        key = _norm(name)
        if key is None:
            return None
        for cat in self.categories:
            if _norm(cat) == key:
                return cat
        return self.reference_aliases.get(key)


def _norm(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    text = str(value).strip().lower()
    return text or None


def default_taxonomy_path() -> Path:
    """Path of the taxonomy file shipped with the package."""
    return Path(str(importlib.resources.files("kairos_curate").joinpath("resources/insect_taxonomy.yaml")))


def load_taxonomy(path: str | os.PathLike[str] | None = None) -> Taxonomy:
    """Read and validate a taxonomy mapping file.

    Parameters
    ----------
    path
        A YAML file in the format of ``resources/insect_taxonomy.yaml``; ``None`` = that file.

    Returns
    -------
    Taxonomy

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file is malformed: no ``version``, no ``rules``, a rule with an unknown level or
        category or no condition, or two identical rules with different categories.
    """
    p = Path(path) if path is not None else default_taxonomy_path()
    if not p.is_file():
        raise FileNotFoundError(
            f"taxonomy mapping file {p} not found; copy {default_taxonomy_path()} there and edit it"
        )
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"taxonomy mapping file {p} is not valid YAML: {err}") from err
    if not isinstance(doc, dict):
        raise ValueError(f"taxonomy mapping file {p} must be a YAML mapping with version/rules")
    where = f"taxonomy mapping file {p}"
    if doc.get("version") in (None, ""):
        raise ValueError(f'{where} has no `version:` field; add one (e.g. version: "1.0")')
    levels = tuple(str(x) for x in doc.get("levels") or ())
    if not levels:
        raise ValueError(f"{where}: `levels` must list the taxonomy levels, e.g. [order, family]")
    categories = tuple(str(x) for x in doc.get("categories") or ())
    if not categories:
        raise ValueError(f"{where}: `categories` must list the task categories")
    if len(set(categories)) != len(categories):
        raise ValueError(f"{where}: `categories` has repeated names")
    off_task = str(doc.get("off_task", OFF_TASK))
    if off_task in categories:
        raise ValueError(f"{where}: off_task label {off_task!r} is also a category")
    raw_rules = doc.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise ValueError(f"{where}: `rules` must be a non-empty list")
    rules: list[TaxonomyRule] = []
    seen: dict[frozenset[tuple[str, str]], str] = {}
    for k, raw in enumerate(raw_rules):
        if not isinstance(raw, dict) or "category" not in raw:
            raise ValueError(f"{where}: rule {k} must be a mapping with a `category` key: {raw!r}")
        cat = str(raw["category"])
        if cat not in categories:
            raise ValueError(f"{where}: rule {k} maps to {cat!r}, which is not in `categories` {list(categories)}")
        conds = tuple((str(lvl), str(val)) for lvl, val in raw.items() if lvl != "category")
        if not conds:
            raise ValueError(f"{where}: rule {k} ({cat}) has no condition")
        unknown = [lvl for lvl, _ in conds if lvl not in levels]
        if unknown:
            raise ValueError(f"{where}: rule {k} ({cat}) uses unknown level(s) {unknown}; levels are {list(levels)}")
        key = frozenset((lvl, _norm(val) or "") for lvl, val in conds)
        if key in seen and seen[key] != cat:
            raise ValueError(
                f"{where}: rule {k} has the same conditions as an earlier rule but maps to "
                f"{cat!r} instead of {seen[key]!r}"
            )
        seen[key] = cat
        rules.append(TaxonomyRule(category=cat, conditions=conds))
    aliases_raw = doc.get("reference_aliases") or {}
    if not isinstance(aliases_raw, dict):
        raise ValueError(f"{where}: `reference_aliases` must be a mapping folder name -> category")
    aliases: dict[str, str] = {}
    for name, cat in aliases_raw.items():
        if str(cat) not in categories:
            raise ValueError(f"{where}: reference alias {name!r} -> {cat!r} names an unknown category")
        aliases[_norm(name) or ""] = str(cat)
    return Taxonomy(
        version=str(doc["version"]),
        levels=levels,
        categories=categories,
        rules=tuple(rules),
        off_task=off_task,
        reference_aliases=aliases,
        path=str(p),
    )


def _as_taxonomy(taxonomy: Taxonomy | str | os.PathLike[str] | None) -> Taxonomy:
    return taxonomy if isinstance(taxonomy, Taxonomy) else load_taxonomy(taxonomy)


# --------------------------------------------------------------------------------------------
# loaded datasets


@dataclass(frozen=True)
class SkippedEntry:
    """An entry an adapter did not load, and why."""

    id: str
    path: str
    reason: str


@dataclass(frozen=True)
class LoadedDataset:
    """A real dataset as the rest of the pipeline sees it.

    Attributes
    ----------
    frame
        One row per loaded image, columns :data:`COLUMNS` (``id`` stable and unique, ``path``
        absolute, ``label`` a task category or the off-task label, ``species`` the scientific
        name or ``None``, ``source`` the dataset's name) plus any taxonomy columns.
    images
        Lazy images, row ``i`` is ``frame.iloc[i]``.
    skipped
        Entries not loaded (missing or unreadable files, no annotation, ...), with reasons.
    taxonomy_version
        Version of the mapping used for ``label``.
    """

    frame: pd.DataFrame
    images: FileImageSource
    skipped: list[SkippedEntry]
    taxonomy_version: str

    def __post_init__(self) -> None:
        if len(self.frame) != len(self.images):
            raise ValueError(f"{len(self.frame)} table rows for {len(self.images)} images")

    def __len__(self) -> int:
        return len(self.frame)

    def label_counts(self) -> pd.Series:
        """Number of images per label, largest first."""
        return self.frame["label"].value_counts()

    def skipped_frame(self) -> pd.DataFrame:
        """The skipped entries as a table (columns ``id``, ``path``, ``reason``)."""
        return pd.DataFrame([(s.id, s.path, s.reason) for s in self.skipped], columns=["id", "path", "reason"])

    def subset(self, rows: np.ndarray | Sequence[int] | pd.Series) -> LoadedDataset:
        """Keep only ``rows`` (positions, or a boolean mask over the table)."""
        arr = np.asarray(rows)
        idx = np.flatnonzero(arr) if arr.dtype == np.bool_ else arr.astype(np.int64)
        return LoadedDataset(
            frame=self.frame.iloc[idx].reset_index(drop=True),
            images=self.images.subset(idx),
            skipped=list(self.skipped),
            taxonomy_version=self.taxonomy_version,
        )

    def restrict_labels(self, categories: Iterable[str], off_task: str = OFF_TASK) -> LoadedDataset:
        """Relabel every category not in ``categories`` as ``off_task`` (e.g. to the reference's
        classes, so that pool images of categories the reference lacks count as off-task)."""
        keep = set(categories)
        frame = self.frame.copy()
        frame["label"] = frame["label"].where(frame["label"].isin(keep), off_task)
        return LoadedDataset(frame, self.images, list(self.skipped), self.taxonomy_version)


def check_image(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot be used as an image (``None`` if it decodes fully).

    The whole image is decoded (``PIL.Image.load``), so truncated files are caught too.
    """
    p = Path(path)
    if not p.exists():
        return "missing file"
    if not p.is_file():
        return "not a regular file"
    try:
        with Image.open(p) as img:
            img.load()
    except Exception as err:  # PIL raises many types for broken files
        return f"unreadable image: {type(err).__name__}: {err}"
    return None


def _finish(
    rows: list[dict[str, Any]],
    skipped: list[SkippedEntry],
    *,
    verify: bool,
    taxonomy: Taxonomy,
    what: str,
    extra_columns: Sequence[str] = (),
) -> LoadedDataset:
    """Verify images if asked, build the table and the image source, warn about skips."""
    kept: list[dict[str, Any]] = []
    for row in rows:
        reason = check_image(row["path"]) if verify else None
        if reason is None:
            kept.append(row)
        else:
            skipped.append(SkippedEntry(row["id"], str(row["path"]), reason))
    columns = [*COLUMNS, *[c for c in extra_columns if c not in COLUMNS]]
    frame = pd.DataFrame(kept, columns=columns)
    frame["path"] = frame["path"].astype(str)
    if frame["id"].duplicated().any():
        dups = frame.loc[frame["id"].duplicated(), "id"].head(5).tolist()
        raise ValueError(f"{what}: image ids are not unique, e.g. {dups}")
    if skipped:
        reasons = pd.Series([s.reason.split(":")[0] for s in skipped]).value_counts()
        warnings.warn(
            f"{what}: skipped {len(skipped)} entries ({dict(reasons)}); see .skipped for details",
            stacklevel=3,
        )
    images = FileImageSource(frame["id"].tolist(), frame["path"].tolist())
    return LoadedDataset(frame, images, skipped, taxonomy.version)


# --------------------------------------------------------------------------------------------
# class overlap


def _labels_of(obj: Any) -> pd.Series:
    if isinstance(obj, LoadedDataset):
        return obj.frame["label"]
    if isinstance(obj, pd.DataFrame):
        if "label" not in obj.columns:
            raise ValueError(f"table has no 'label' column (columns: {list(obj.columns)})")
        return obj["label"]
    return pd.Series(np.asarray(obj).ravel())


def _species_of(obj: Any) -> pd.DataFrame | None:
    frame = obj.frame if isinstance(obj, LoadedDataset) else obj
    if isinstance(frame, pd.DataFrame) and "species" in frame.columns:
        return frame[["label", "species"]]
    return None


def class_overlap(
    pool: LoadedDataset | pd.DataFrame | Sequence[Any] | np.ndarray,
    reference: LoadedDataset | pd.DataFrame | Sequence[Any] | np.ndarray,
    *,
    off_task: str = OFF_TASK,
) -> pd.DataFrame:
    """The class-overlap table: which categories each dataset covers, with counts.

    Parameters
    ----------
    pool, reference
        A :class:`LoadedDataset`, a table with a ``label`` column, or the labels themselves.
    off_task
        The off-task label (listed last, never counted as overlap).

    Returns
    -------
    pandas.DataFrame
        Indexed by category (the union of both label sets; reference order is sorted, the
        off-task row last), columns ``pool_count``, ``reference_count``, ``pool_share``
        (fraction of the pool), ``pool_species`` (distinct species behind the category in the
        pool, when the pool has a ``species`` column, else ``NA``) and ``status`` (``"both"``,
        ``"pool only"``, ``"reference only"``, or ``"off-task"``).
    """
    p = _labels_of(pool).astype(str)
    r = _labels_of(reference).astype(str)
    pc = p.value_counts()
    rc = r.value_counts()
    cats = sorted((set(pc.index) | set(rc.index)) - {off_task})
    if off_task in pc.index or off_task in rc.index:
        cats.append(off_task)
    table = pd.DataFrame(index=pd.Index(cats, name="category"))
    table["pool_count"] = [int(pc.get(c, 0)) for c in cats]
    table["reference_count"] = [int(rc.get(c, 0)) for c in cats]
    total = max(int(pc.sum()), 1)
    table["pool_share"] = table["pool_count"] / total
    species = _species_of(pool)
    if species is not None:
        named = species.dropna(subset=["species"])
        n_species = named.groupby(named["label"].astype(str))["species"].nunique()
        table["pool_species"] = pd.array([int(n_species.get(c, 0)) for c in cats], dtype="Int64")
    else:
        table["pool_species"] = pd.array([pd.NA] * len(cats), dtype="Int64")

    def status(c: str) -> str:
        if c == off_task:
            return "off-task"
        in_p, in_r = pc.get(c, 0) > 0, rc.get(c, 0) > 0
        return "both" if in_p and in_r else "pool only" if in_p else "reference only"

    table["status"] = [status(c) for c in cats]
    return table
