"""Readers of user files shared by every CLI command: label tables, image folders and arrays.

One place decides what a label file or an image collection may look like, so ``value``,
``audit``, ``embed`` (and any later command) accept and refuse the same inputs with the same
messages. Every error names the file (and the line or row) and says how to fix it; ``option``
is how the user passed the file (a CLI flag such as ``--pool-labels``, or an argument name).

Label files
    ``.csv`` / ``.parquet`` with columns ``id`` and ``label`` (matched by id), or ``.txt`` (one
    label per line) / ``.npy`` (a 1-D array) in row order. Empty labels, a blank line inside a
    ``.txt`` file and an id listed twice with two different labels are errors (an id listed
    twice with the same label is accepted). Labels are stripped of surrounding whitespace.
Image collections
    A folder searched recursively for :data:`IMAGE_SUFFIXES` (hidden files and folders are
    skipped), or an ``.npz`` with arrays ``ids`` and ``pixels`` (``uint8``, ``(N, H, W)``,
    ``(N, H, W, 1)`` or ``(N, H, W, 3)``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from kairos_curate.data.sources import ArrayImageSource, FileImageSource
from kairos_curate.io import check_input_file, npz_array, open_npz

__all__ = [
    "IMAGE_SUFFIXES",
    "LABEL_SUFFIXES",
    "list_image_files",
    "load_image_source",
    "open_images",
    "pixels_array",
    "read_label_table",
    "read_labels",
]

#: File name endings treated as images in a folder (lower case; matching ignores case).
IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp")

#: Label file types: tables matched by id, and row-aligned lists.
LABEL_SUFFIXES = (".csv", ".parquet", ".txt", ".npy")


# ----------------------------------------------------------------------------- labels


def _is_blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and not np.isfinite(value):
        return True
    return isinstance(value, str) and not value.strip()


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _read_table(path: Path, option: str) -> tuple[list[str], list[Any], str, int]:
    """Rows of an ``id,label`` table: ids, labels, the unit of row numbers and their offset."""
    import pandas as pd

    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            # only an empty field is missing: a class called "NA" or "null" stays a class
            table = pd.read_csv(path, dtype={"id": str}, keep_default_na=False, na_values=[""])
            unit, offset = "line", 2  # header is line 1
        else:
            table = pd.read_parquet(path)
            unit, offset = "row", 0
    except (ValueError, OSError, UnicodeDecodeError) as err:
        raise ValueError(
            f"{option} {path} is not a readable {suffix} table ({err}); write a table with columns id,label"
        ) from None
    except Exception as err:  # pandas' parser errors do not share one base class
        raise ValueError(
            f"{option} {path} is not a readable {suffix} table "
            f"({type(err).__name__}: {err}); write a table with columns id,label"
        ) from None
    if "id" not in table.columns or "label" not in table.columns:
        raise ValueError(f"{option} {path} must have columns 'id' and 'label'; found {list(table.columns)}")
    ids = table["id"].tolist()
    labels = table["label"].tolist()
    return ids, labels, unit, offset


def read_label_table(path: str | os.PathLike[str], option: str) -> dict[str, Any]:
    """``{id: label}`` from a ``.csv``/``.parquet`` file with columns ``id`` and ``label``.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        Wrong type or columns, an empty id or label, or an id listed twice with different labels
        (the message names the file and both lines).
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{option} file {p} not found")
    if p.suffix.lower() not in (".csv", ".parquet"):
        raise ValueError(f"{option} {p}: unsupported type {p.suffix!r}; use .csv or .parquet with columns id,label")
    check_input_file(p, option, "label table")
    ids, labels, unit, offset = _read_table(p, option)
    mapping: dict[str, Any] = {}
    first_row: dict[str, int] = {}
    for row, (sid, label) in enumerate(zip(ids, labels, strict=True)):
        where = f"{option} {p} {unit} {row + offset}"
        if _is_blank(sid):
            raise ValueError(f"{where}: empty id; every row needs an id")
        key = str(_clean(sid))
        if _is_blank(label):
            raise ValueError(f"{where} (id {key}): empty label; give every id a label or drop the row")
        value = _clean(label)
        if key in mapping and mapping[key] != value:
            raise ValueError(
                f"{where}: id {key} is listed twice with different labels ({mapping[key]!r} at "
                f"{unit} {first_row[key] + offset}, {value!r} here); keep one row per id"
            )
        mapping.setdefault(key, value)
        first_row.setdefault(key, row)
    return mapping


def read_labels(path: str | os.PathLike[str], ids: np.ndarray, option: str) -> np.ndarray:
    """One label per row of ``ids`` from ``path`` (see the module docs for the formats).

    Tables are matched by id (every id needs a row; extra rows are ignored); ``.txt`` and
    ``.npy`` files are taken in row order and need exactly one label per row.

    Raises
    ------
    FileNotFoundError, ValueError
        As :func:`read_label_table`, plus a wrong count, a blank or missing label (named by
        line or row), an object ``.npy`` or an unsupported type.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{option} file {p} not found")
    suffix = p.suffix.lower()
    if suffix not in LABEL_SUFFIXES:
        raise ValueError(f"{option} {p}: unsupported type {p.suffix!r}; use .csv, .parquet, .npy or .txt")
    if suffix in (".csv", ".parquet"):
        mapping = read_label_table(p, option)
        missing = [i for i in ids.tolist() if i not in mapping]
        if missing:
            raise ValueError(
                f"{option} {p} has no label for {len(missing)} id(s), e.g. {missing[:5]}; give one row per embedding id"
            )
        return np.asarray([mapping[i] for i in ids.tolist()])
    check_input_file(p, option, "label file")
    if suffix == ".npy":
        try:
            labels = np.load(p, allow_pickle=False)
        except ValueError as err:
            if "pickle" in str(err) or "Object arrays" in str(err):
                raise ValueError(
                    f"{option} {p} holds Python objects (a pickle, never loaded); save the "
                    "labels as a plain array, e.g. np.save(path, np.asarray(labels, dtype=str))"
                ) from None
            raise ValueError(f"{option} {p} is not a readable .npy file ({err})") from None
        except (OSError, EOFError) as err:
            raise ValueError(f"{option} {p} is not a readable .npy file ({err})") from None
        if labels.ndim != 1:
            raise ValueError(f"{option} {p} must be a 1-D array of labels, got shape {labels.shape}")
        if labels.dtype.kind not in "USiub" and labels.dtype.kind != "f":
            raise ValueError(f"{option} {p}: labels must be strings or numbers, got dtype {labels.dtype}")
        if labels.dtype.kind == "f" and not np.isfinite(labels).all():
            row = int(np.flatnonzero(~np.isfinite(labels))[0])
            raise ValueError(f"{option} {p} row {row}: label is NaN/inf; give every row a label")
        if labels.dtype.kind in "US":
            labels = np.char.strip(labels.astype(str))
            blank = np.flatnonzero(np.char.str_len(labels) == 0)
            if blank.size:
                raise ValueError(f"{option} {p} row {int(blank[0])}: empty label; give every row a label")
    else:
        try:
            lines = p.read_text().splitlines()
        except UnicodeDecodeError as err:
            raise ValueError(f"{option} {p} is not a text file ({err}); one label per line, UTF-8") from None
        while lines and not lines[-1].strip():
            lines.pop()  # a trailing newline / blank lines at the very end are harmless
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                raise ValueError(
                    f"{option} {p} line {number} is empty; every line must hold the label "
                    "of one row, in row order (remove the blank line)"
                )
        labels = np.asarray([line.strip() for line in lines])
    if labels.shape[0] != ids.shape[0]:
        raise ValueError(
            f"{option} {p} has {labels.shape[0]} labels but there are {ids.shape[0]} embedding rows; one label per row"
        )
    return labels


# ----------------------------------------------------------------------------- images


def list_image_files(folder: str | os.PathLike[str], option: str = "--images") -> list[Path]:
    """Image files under ``folder`` (recursive, sorted; hidden files and folders skipped).

    Raises
    ------
    FileNotFoundError
        The folder holds no file ending in one of :data:`IMAGE_SUFFIXES`.
    """
    root = Path(folder)
    files = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        # a dangling symlink is kept, so that it is reported as missing rather than ignored
        if path.suffix.lower() in IMAGE_SUFFIXES and (path.is_file() or (path.is_symlink() and not path.exists())):
            files.append(path)
    if not files:
        raise FileNotFoundError(f"{option} folder {root} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    return sorted(files)


def pixels_array(pixels: np.ndarray, where: str) -> np.ndarray:
    """Check an ``(N, H, W[, C])`` pixel array; ``C = 1`` is squeezed to grey.

    Raises
    ------
    ValueError
        Not ``uint8``, or a shape/channel count that is not grey or RGB (the message says how
        to convert).
    """
    if pixels.dtype != np.uint8:
        hint = (
            "scale 16-bit data to 8 bits, e.g. (pixels // 257).astype(np.uint8)"
            if pixels.dtype == np.uint16
            else "scale floats in [0, 1] with (pixels * 255).round().astype(np.uint8)"
            if pixels.dtype.kind == "f"
            else "convert them to uint8 0..255"
        )
        raise ValueError(f"{where}: pixels must be uint8 (0..255), got {pixels.dtype}; {hint}")
    if pixels.ndim == 4 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim == 4 and pixels.shape[-1] != 3:
        fix = (
            "drop the alpha channel: pixels[..., :3]"
            if pixels.shape[-1] == 4
            else "give grey (N, H, W) or RGB (N, H, W, 3) images"
        )
        raise ValueError(f"{where}: pixels have {pixels.shape[-1]} channels (shape {pixels.shape}); {fix}")
    if pixels.ndim not in (3, 4):
        raise ValueError(f"{where}: pixels must be (N, H, W) grey or (N, H, W, 3) RGB, got shape {pixels.shape}")
    if pixels.shape[0] == 0 or pixels.shape[1] == 0 or pixels.shape[2] == 0:
        raise ValueError(f"{where}: no images (pixels have shape {pixels.shape})")
    return pixels


def _npz_images(path: Path, option: str) -> tuple[np.ndarray, Any]:
    """``(ids, NpzFile)`` of an images ``.npz``; the caller reads the pixels it needs."""
    data = open_npz(path, option, "images .npz")
    key = "pixels" if "pixels" in data.files else "images" if "images" in data.files else None
    if "ids" not in data.files or key is None:
        found = sorted(data.files)
        data.close()
        raise ValueError(f"{option} {path} must contain arrays 'ids' and 'pixels'; found {found}")
    raw = npz_array(data, "ids", path, option)
    if raw.ndim != 1 or raw.dtype.kind not in "USiu":
        data.close()
        raise ValueError(f"{option} {path}: 'ids' must be a 1-D array of strings, got {raw.dtype} {raw.shape}")
    return raw.astype(str), data


def open_images(path: str | os.PathLike[str], option: str = "--images") -> ArrayImageSource | FileImageSource:
    """Open ``path`` as an image source: an ``.npz`` (ids + pixels) or a folder of image files.

    Ids are the ``ids`` array, or each file's path relative to the folder.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist, or the folder holds no image files.
    ValueError
        Not an ``.npz`` or folder; the ``.npz`` lacks ``ids``/``pixels``, has the wrong dtype
        or shape, or ids that repeat.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(
            f"{option} {p} does not exist; pass a folder of images or an .npz with arrays ids and pixels"
        )
    if p.is_dir():
        files = list_image_files(p, option)
        return FileImageSource([f.relative_to(p).as_posix() for f in files], files)
    if p.suffix.lower() != ".npz":
        raise ValueError(f"{option} must be a .npz file or a folder of images; got {p}")
    ids, data = _npz_images(p, option)
    with data:
        key = "pixels" if "pixels" in data.files else "images"
        pixels = pixels_array(npz_array(data, key, p, option), f"{option} {p}")
    if ids.shape[0] != pixels.shape[0]:
        raise ValueError(f"{option} {p}: {ids.shape[0]} ids for {pixels.shape[0]} images; one id per image")
    uniq, counts = np.unique(ids, return_counts=True)
    if uniq.shape[0] != ids.shape[0]:
        raise ValueError(
            f"{option} {p}: ids are not unique (e.g. {str(uniq[counts > 1][0])!r}); give every image its own id"
        )
    return ArrayImageSource(ids, pixels)


def load_image_source(
    path: str | os.PathLike[str], ids: np.ndarray, option: str = "--images"
) -> ArrayImageSource | FileImageSource:
    """Images for ``ids`` from an ``.npz`` (ids + pixels; extra ids ignored) or a folder.

    Folder files match an id by relative path, relative path without extension, or file name
    stem (when that stem is unique).

    Raises
    ------
    FileNotFoundError, ValueError
        Missing path, wrong type, bad arrays, or no image matching any of ``ids``.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{option} {p} not found; pass an .npz with ids+pixels or a folder of images")
    wanted = [str(i) for i in ids]
    if p.is_dir():
        files = list_image_files(p, option)
        by_key: dict[str, Path] = {}
        stems: dict[str, list[Path]] = {}
        for f in files:
            rel = f.relative_to(p).as_posix()
            by_key[rel] = f
            by_key.setdefault(rel.rsplit(".", 1)[0], f)
            stems.setdefault(f.stem, []).append(f)
        for stem, found in stems.items():
            if len(found) == 1:
                by_key.setdefault(stem, found[0])
        matched = [(i, by_key[i]) for i in wanted if i in by_key]
        if not matched:
            raise ValueError(
                f"{option} folder {p}: no image file matches a pool id (e.g. {wanted[0]!r}); "
                "name files <id>.<ext> or by their relative path"
            )
        return FileImageSource([m[0] for m in matched], [m[1] for m in matched])
    if p.suffix.lower() != ".npz":
        raise ValueError(f"{option} {p} must be an .npz file (ids, pixels) or a folder of images")
    all_ids, data = _npz_images(p, option)
    with data:
        index = {sid: k for k, sid in enumerate(all_ids.tolist())}
        rows = [index[i] for i in wanted if i in index]
        if not rows:
            raise ValueError(f"{option} {p} holds none of the pool ids (e.g. {wanted[0]!r})")
        key = "pixels" if "pixels" in data.files else "images"
        pixels = npz_array(data, key, p, option)
        if pixels.shape[0] != all_ids.shape[0]:
            raise ValueError(f"{option} {p}: {all_ids.shape[0]} ids for {pixels.shape[0]} images")
        pixels = pixels_array(pixels[np.asarray(rows)], f"{option} {p}")
    return ArrayImageSource(all_ids[rows], pixels)
