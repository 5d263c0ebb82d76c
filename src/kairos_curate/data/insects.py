"""Insects Image Dataset adapter: one folder per class (the clean reference of the poster).

Layout::

    <root>/<class name>/<image files>       (nested sub-folders inside a class are allowed)

The class folder's name becomes the task category: a folder named like a category of the
taxonomy mapping (case-insensitive, e.g. ``ant`` -> ``Ant``) or listed in its
``reference_aliases`` (``Ants`` -> ``Ant``), or mapped explicitly with ``class_map``. Hidden
files and folders (names starting with ``.``) are ignored; any other non-image file, and any
file lying directly in ``<root>``, is reported in ``.skipped``. A class folder without images
is an error, since it would silently drop a task class.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kairos_curate.data.adapters import (
    IMAGE_EXTENSIONS,
    LoadedDataset,
    SkippedEntry,
    Taxonomy,
    _as_taxonomy,
    _finish,
)

__all__ = ["SOURCE", "load_insects"]

#: ``source`` column value of Insects Image Dataset rows.
SOURCE = "insects"


def _visible(path: Path, base: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(base).parts)


def load_insects(
    root: str | os.PathLike[str],
    *,
    split: str | None = None,
    taxonomy: Taxonomy | str | os.PathLike[str] | None = None,
    class_map: Mapping[str, str] | None = None,
    unknown_classes: str = "warn",
    verify: bool = False,
) -> LoadedDataset:
    """Load the Insects Image Dataset (or any one-folder-per-class image tree).

    Parameters
    ----------
    root
        The dataset folder.
    split
        Optional sub-folder holding the class folders (e.g. ``"train"``).
    taxonomy
        A :class:`Taxonomy` or a mapping YAML path, used to recognise class folder names;
        default the packaged mapping.
    class_map
        Explicit folder name -> category, checked first.
    unknown_classes
        What to do with a class folder that names no category: ``"warn"`` (keep the folder name
        as its label and warn - no pool image can carry that label) or ``"error"``.
    verify
        Decode every image and skip unreadable ones (reported in ``.skipped``).

    Returns
    -------
    LoadedDataset
        ``id`` is ``"insects:<class folder>/<path inside it>"``, ``species`` is ``None``, extra
        column ``class_folder``.

    Raises
    ------
    FileNotFoundError
        If the folder does not exist.
    ValueError
        If it has no class folders, a class folder has no (readable) images, or a class is
        unknown with ``unknown_classes="error"``.
    """
    if unknown_classes not in ("warn", "error"):
        raise ValueError(f"unknown_classes must be 'warn' or 'error'; got {unknown_classes!r}")
    tax = _as_taxonomy(taxonomy)
    base = Path(root) / split if split is not None else Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"Insects dataset folder {base} does not exist; it must hold one folder per class")
    what = f"Insects dataset {base}"
    class_dirs = sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise ValueError(f"{what} has no class folders (expected <root>/<class>/<images>)")
    explicit = {k.strip().lower(): v for k, v in (class_map or {}).items()}

    rows: list[dict[str, Any]] = []
    skipped: list[SkippedEntry] = []
    for p in sorted(base.iterdir()):
        if p.is_file() and not p.name.startswith("."):
            skipped.append(SkippedEntry(f"insects:{p.name}", str(p), "not in a class folder"))
    unknown: list[str] = []
    for cdir in class_dirs:
        name = cdir.name
        label = explicit.get(name.strip().lower()) or tax.reference_category(name)
        if label is None:
            unknown.append(name)
            label = name
        files = sorted(f for f in cdir.rglob("*") if f.is_file() and _visible(f, cdir))
        images = []
        for f in files:
            ident = f"insects:{name}/{f.relative_to(cdir).as_posix()}"
            if f.suffix.lower() in IMAGE_EXTENSIONS:
                images.append((ident, f))
            else:
                skipped.append(SkippedEntry(ident, str(f), f"not an image file (extension {f.suffix or 'none'!r})"))
        if not images:
            raise ValueError(
                f"{what}: class folder {cdir} has no image files "
                f"(extensions {sorted(IMAGE_EXTENSIONS)}); add images or remove the folder"
            )
        for ident, f in images:
            rows.append(
                {
                    "id": ident,
                    "path": str(f.resolve()),
                    "label": label,
                    "species": None,
                    "source": SOURCE,
                    "class_folder": name,
                }
            )
    if unknown:
        msg = (
            f"{what}: class folder(s) {unknown} name no task category of the taxonomy mapping "
            f"{tax.path or '(in memory)'} (categories {list(tax.categories)}); add them to its "
            "categories and rules or to reference_aliases, or pass class_map="
        )
        if unknown_classes == "error":
            raise ValueError(msg)
        warnings.warn(msg + "; their folder names are used as labels", stacklevel=2)
    ds = _finish(rows, skipped, verify=verify, taxonomy=tax, what=what, extra_columns=("class_folder",))
    empty = sorted(set(c.name for c in class_dirs) - set(ds.frame["class_folder"]))
    if empty:
        raise ValueError(
            f"{what}: no readable image left in class folder(s) {empty}; see the reasons: "
            + "; ".join(f"{s.path}: {s.reason}" for s in ds.skipped[:5])
        )
    return ds
