"""One call from a user's images to a training set: read, embed, value, select, audit, write.

:func:`curate` takes a pool and a clean reference, each an ImageFolder tree (one sub-folder per
class, the ``torchvision.datasets.ImageFolder`` convention) or a manifest (CSV/Parquet with
``path``, ``label`` and optionally ``id``), and

1. reads both, decoding every image once: unreadable files are listed with the reason and left
   out; pool classes the reference lacks are an error that names them;
2. embeds them with a frozen encoder (content-keyed cache: an interrupted run resumes);
3. values the pool with KAIROS (class-conditional: every sample against its class's reference)
   and, when the selection names its own method (the primary does: ``kairos_calibrated``,
   reference-calibrated p-values), with that method too;
4. selects ``budget`` samples with the project's primary selection (:data:`PRIMARY_SELECTION`:
   ``gated_cover`` - per class drop the estimated bad count, collapse near copies, herd towards
   the retained pool); ``value`` / ``rank`` / ``reason`` in ``curated.csv`` refer to the values
   the selection used;
5. audits the pool (:func:`kairos_curate.audit.audit`: issue types, gallery);
6. writes into ``out_dir``: ``curated.csv`` (every pool file: ``id, path, label, selected,
   order, value, rank, issues, reason``; selected rows first, in selection order),
   ``values.csv`` (every KAIROS term per sample, then the selection method's columns prefixed
   ``<method>.``), ``audit/audit.html`` + ``audit/flags.csv``,
   ``unreadable.csv`` (if any) and ``summary.json``; with ``link_dir`` the selected files as an
   ImageFolder tree of symbolic links (``torchvision.datasets.ImageFolder(link_dir)``).

Nothing a user owns is overwritten: an existing output folder is refused unless ``force`` is
given *and* it is a previous kairos-curate output (it holds the marker file
:data:`MARKER`); an output inside (or equal to) an input folder is refused.

>>> result = curate("photos/pool", "photos/reference", "curated", budget=0.3)  # doctest: +SKIP
>>> result.selected.head()                                                        # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from kairos_curate.data.sources import FileImageSource
from kairos_curate.io import atomic_path, write_json

if TYPE_CHECKING:
    from kairos_curate.selection import Selection

__all__ = [
    "IMG_EXTENSIONS",
    "MARKER",
    "PRIMARY_SELECTION",
    "CurateError",
    "CurateResult",
    "ImageSet",
    "curate",
    "curated_source",
    "parse_budget",
    "read_image_set",
]

#: The project's primary selection (a registered policy, its parameters and the valuation method
#: it needs), used by ``curate`` unless told otherwise; the one place to change it. Same as
#: ``value.selections.calibrated`` in ``params.yaml``.
PRIMARY_SELECTION: dict[str, Any] = {"policy": "gated_cover", "method": "kairos_calibrated"}

#: File endings torchvision's ImageFolder loads (``torchvision.datasets.folder.IMG_EXTENSIONS``).
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

#: Marker file that identifies a folder written by :func:`curate` (so ``force`` may replace it).
MARKER = ".kairos-curate-output"

_MANIFEST_SUFFIXES = (".csv", ".tsv", ".parquet")


class CurateError(ValueError):
    """Bad input or a refused output: the message names the file or option and the fix."""


@dataclass
class ImageSet:
    """Images read from an ImageFolder tree or a manifest.

    Attributes
    ----------
    name : str
        ``"pool"`` or ``"reference"`` (used in messages).
    spec : pathlib.Path
        The folder or manifest given.
    kind : str
        ``"folder"`` or ``"manifest"``.
    table : pandas.DataFrame
        The readable images: ``id``, ``path`` (absolute), ``label`` (str).
    unreadable : pandas.DataFrame
        Files left out: ``id``, ``path``, ``label``, ``reason``.
    classes : list of str
        Every class seen (for a folder: every sub-folder, empty ones included), sorted.
    empty_classes : list of str
        Classes without a readable image.
    ignored_files : int
        Files skipped because their ending is not an image ending (folders only).
    """

    name: str
    spec: Path
    kind: str
    table: pd.DataFrame
    unreadable: pd.DataFrame
    classes: list[str]
    empty_classes: list[str]
    ignored_files: int = 0

    def __len__(self) -> int:
        return len(self.table)

    def source(self) -> FileImageSource:
        """The readable images as a lazy :class:`~kairos_curate.data.sources.FileImageSource`."""
        return FileImageSource(self.table["id"].tolist(), self.table["path"].tolist())

    def class_counts(self) -> dict[str, int]:
        """Readable images per class, every class included."""
        counts = self.table["label"].value_counts()
        return {c: int(counts.get(c, 0)) for c in self.classes}

    def image_dirs(self) -> set[Path]:
        """Folders that hold input images (outputs may not go inside them)."""
        dirs = {Path(p).resolve().parent for p in self.table["path"]}
        dirs |= {Path(p).resolve().parent for p in self.unreadable["path"]}
        if self.kind == "folder":
            dirs.add(self.spec.resolve())
        return dirs


@dataclass
class CurateResult:
    """What :func:`curate` did (or, with ``dry_run``, would do).

    Attributes
    ----------
    curated : pandas.DataFrame
        One row per pool file (``curated.csv``): ``id, path, label, selected, order, value,
        rank, issues, reason``; empty for a dry run.
    values : pandas.DataFrame
        The KAIROS terms per readable pool sample (``values.csv``), indexed by id.
    pool, reference : ImageSet
        What was read.
    k : int
        Number of samples selected (the budget as a count).
    policy : dict
        The selection policy and its parameters.
    selection : Any
        The :class:`~kairos_curate.selection.Selection` (``None`` for a dry run).
    audit : Any
        The :class:`~kairos_curate.audit.AuditResult` (``None`` if skipped or a dry run).
    paths : dict of str to pathlib.Path
        Files and folders written.
    plan : list of str
        The steps, as printed by a dry run.
    timings : dict of str to float
        Seconds per step.
    warnings : list of str
        Empty classes, selection warnings and the like.
    """

    curated: pd.DataFrame
    values: pd.DataFrame
    pool: ImageSet
    reference: ImageSet
    k: int
    policy: dict[str, Any]
    selection: Any = None
    audit: Any = None
    paths: dict[str, Path] = field(default_factory=dict)
    plan: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    dry_run: bool = False

    @property
    def selected(self) -> pd.DataFrame:
        """The selected rows of :attr:`curated`, in selection order."""
        if self.curated.empty:
            return self.curated
        return self.curated[self.curated["selected"]].reset_index(drop=True)


# -------------------------------------------------------------------------------------------- reading


def _check_image(path: Path) -> str | None:
    """Why ``path`` cannot be used (``None`` if it decodes fully)."""
    from PIL import Image

    if not path.exists():
        return "missing file"
    if not path.is_file():
        return "not a regular file"
    try:
        with Image.open(path) as img:
            img.load()
            if img.width < 1 or img.height < 1:
                return "empty image"
    except Exception as err:  # PIL raises many types for broken files
        return f"{type(err).__name__}: {err}"
    return None


def _verify(rows: pd.DataFrame, name: str, progress: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    reasons = [
        _check_image(Path(p))
        for p in tqdm(rows["path"], desc=f"reading {name} images", disable=not progress, unit="img")
    ]
    bad = np.asarray([r is not None for r in reasons], dtype=bool)
    unreadable = rows[bad].assign(reason=[r for r in reasons if r is not None]).reset_index(drop=True)
    return rows[~bad].reset_index(drop=True), unreadable


def _read_folder(root: Path, name: str) -> tuple[pd.DataFrame, list[str], int]:
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise CurateError(
            f"--{name} folder {root} has no class sub-folders; an ImageFolder tree holds one "
            f"sub-folder per class ({root}/<class>/<image>), or pass a manifest (CSV/Parquet with "
            "columns path,label)"
        )
    rows: list[tuple[str, str, str]] = []
    ignored = 0
    for cls in classes:
        for dirpath, dirnames, filenames in os.walk(root / cls, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for fname in sorted(filenames):
                if fname.startswith("."):
                    continue
                path = Path(dirpath) / fname
                if path.suffix.lower() not in IMG_EXTENSIONS:
                    ignored += 1
                    continue
                rows.append((path.relative_to(root).as_posix(), str(path.resolve()), cls))
    return pd.DataFrame(rows, columns=["id", "path", "label"]), classes, ignored


def _read_manifest(path: Path, name: str) -> pd.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            table = pd.read_parquet(path)
        else:
            table = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype=str, keep_default_na=False)
    except Exception as err:
        raise CurateError(f"--{name} manifest {path} cannot be read: {err}") from err
    missing = [c for c in ("path", "label") if c not in table.columns]
    if missing:
        raise CurateError(
            f"--{name} manifest {path} lacks column(s) {missing}; found {list(table.columns)}. A "
            "manifest needs 'path' (absolute, or relative to the manifest's folder) and 'label', "
            "optionally 'id'"
        )
    table = table.copy()
    table["label"] = table["label"].astype(str).str.strip()
    empty = table.index[(table["label"] == "") | table["label"].isin(["nan", "None"])].tolist()
    if empty:
        raise CurateError(
            f"--{name} manifest {path}: {len(empty)} row(s) without a label, e.g. rows "
            f"{[i + 2 for i in empty[:5]]} (line numbers); give every image its class"
        )
    base = path.resolve().parent
    table["path"] = [
        str((base / p).resolve()) if not Path(p).is_absolute() else str(Path(p)) for p in table["path"].astype(str)
    ]
    if "id" in table.columns:
        table["id"] = table["id"].astype(str)
    else:
        table["id"] = [
            Path(p).relative_to(base).as_posix() if Path(p).is_relative_to(base) else p for p in table["path"]
        ]
    dups = table.loc[table["id"].duplicated(), "id"].head(3).tolist()
    if dups:
        raise CurateError(f"--{name} manifest {path}: ids are not unique, e.g. {dups}; give each row its own id")
    return table[["id", "path", "label"]].reset_index(drop=True)


def read_image_set(
    spec: str | os.PathLike[str], name: str = "pool", *, verify: bool = True, progress: bool = False
) -> ImageSet:
    """Read an ImageFolder tree or a manifest; decode every image once (``verify``).

    Parameters
    ----------
    spec
        A folder (``<spec>/<class>/**/<image>``; id = path relative to ``spec``) or a ``.csv``/
        ``.tsv``/``.parquet`` manifest with ``path``, ``label`` and optionally ``id`` (default id:
        the path relative to the manifest's folder).
    name
        ``"pool"`` or ``"reference"``, for messages.
    verify
        Decode every image fully; the ones that fail go to :attr:`ImageSet.unreadable` with
        the reason. Without it only missing files are caught.
    progress
        Show a progress bar.

    Raises
    ------
    CurateError
        The input is missing, has no class folders, lacks manifest columns or labels, repeats
        ids, or holds no readable image.
    """
    path = Path(spec).expanduser()
    if not path.exists():
        raise CurateError(
            f"--{name} {path} does not exist; give an ImageFolder tree (one sub-folder per class) "
            "or a manifest (.csv/.parquet with path,label)"
        )
    ignored = 0
    if path.is_dir():
        kind = "folder"
        rows, classes, ignored = _read_folder(path, name)
    elif path.suffix.lower() in _MANIFEST_SUFFIXES:
        kind = "manifest"
        rows = _read_manifest(path, name)
        classes = sorted(rows["label"].unique().tolist())
    else:
        raise CurateError(f"--{name} {path} is neither a folder nor a manifest ({', '.join(_MANIFEST_SUFFIXES)})")
    if verify:
        table, unreadable = _verify(rows, name, progress)
    else:
        exists = np.asarray([Path(p).is_file() for p in rows["path"]], dtype=bool)
        table = rows[exists].reset_index(drop=True)
        unreadable = rows[~exists].assign(reason="missing file").reset_index(drop=True)
    if table.empty:
        raise CurateError(
            f"--{name} {path} holds no readable image ({len(unreadable)} unreadable, {ignored} "
            f"files without an image ending {IMG_EXTENSIONS})"
        )
    present = set(table["label"])
    empty = [c for c in classes if c not in present]
    return ImageSet(
        name=name,
        spec=path,
        kind=kind,
        table=table,
        unreadable=unreadable,
        classes=classes,
        empty_classes=empty,
        ignored_files=ignored,
    )


def parse_budget(budget: int | float | str, n_pool: int) -> int:
    """The budget as a count: an integer count (``500``), a fraction in ``(0, 1]`` (``0.3``) or a
    percentage (``"30%"``) of the ``n_pool`` readable pool images."""
    text = str(budget).strip()
    try:
        if text.endswith("%"):
            value = float(text[:-1]) / 100.0
            is_fraction = True
        elif isinstance(budget, (int, np.integer)) and not isinstance(budget, bool):
            value, is_fraction = float(budget), False
        else:
            value = float(text)
            is_fraction = "." in text or "e" in text.lower()
    except ValueError:
        raise CurateError(
            f"--budget {budget!r}: give a count (500), a fraction of the pool (0.3) or a percentage (30%)"
        ) from None
    if is_fraction:
        if not 0.0 < value <= 1.0:
            raise CurateError(f"--budget {budget!r}: a fraction must be in (0, 1]")
        return max(1, round(value * n_pool))
    if value != int(value) or value < 1:
        raise CurateError(f"--budget {budget!r}: a count must be a whole number >= 1")
    if int(value) > n_pool:
        raise CurateError(
            f"--budget {int(value)} exceeds the {n_pool} readable pool images; give at most "
            f"{n_pool}, or a fraction such as 0.3"
        )
    return int(value)


# -------------------------------------------------------------------------------------------- outputs


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def _check_output(path: Path, what: str, inputs: Sequence[ImageSet], force: bool) -> None:
    """Refuse an output that is or lies in an input folder, or that exists (unless ``force`` on
    a previous kairos-curate output)."""
    for image_set in inputs:
        if image_set.kind == "manifest" and path.resolve() == image_set.spec.resolve():
            raise CurateError(f"{what} {path} is the --{image_set.name} manifest; choose another folder")
        for folder in image_set.image_dirs():
            if _is_within(path, folder):
                raise CurateError(
                    f"{what} {path} is inside the --{image_set.name} images ({folder}); the input "
                    "is never written to: choose a folder outside it"
                )
    for image_set in inputs:
        if _is_within(image_set.spec, path):
            raise CurateError(
                f"{what} {path} contains the --{image_set.name} input {image_set.spec}; choose a folder outside it"
            )
    if not path.exists():
        return
    if not path.is_dir():
        raise CurateError(f"{what} {path} exists and is not a folder; choose a new folder")
    if not any(path.iterdir()):
        return
    if not force:
        raise CurateError(
            f"{what} {path} already exists and is not empty; choose a new folder, or pass --force "
            "to replace a previous kairos-curate output there"
        )
    if not (path / MARKER).exists():
        raise CurateError(
            f"{what} {path} is not empty and was not written by kairos-curate (no {MARKER} file); "
            "--force only replaces kairos-curate's own outputs: choose a new folder"
        )


def _clear_output(path: Path) -> None:
    """Remove a previous kairos-curate output folder (checked by :func:`_check_output`)."""
    if path.exists() and (path / MARKER).exists():
        shutil.rmtree(path)


def _safe_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._ -]+", "_", text).strip(" .")
    return name or "_"


def _link_tree(selected: pd.DataFrame, link_dir: Path, mode: str, progress: bool) -> int:
    """The selected files as ``link_dir/<class>/<file>`` (symlinks, hard links or copies)."""
    link_dir.mkdir(parents=True, exist_ok=True)
    (link_dir / MARKER).write_text("written by kairos-curate curate --link-dir\n")
    used: set[str] = set()
    for row in tqdm(
        selected.itertuples(index=False), total=len(selected), desc="linking", disable=not progress, unit="file"
    ):
        src = Path(row.path)
        cls = _safe_name(str(row.label))
        stem = _safe_name(str(row.id).replace("/", "__"))
        if not stem.lower().endswith(src.suffix.lower()):
            stem += src.suffix.lower()
        name = stem
        k = 1
        while f"{cls}/{name}" in used:
            name = f"{Path(stem).stem}-{k}{Path(stem).suffix}"
            k += 1
        used.add(f"{cls}/{name}")
        target = link_dir / cls / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if mode == "symlink":
            target.symlink_to(src.resolve())
        elif mode == "hardlink":
            os.link(src, target)
        else:
            shutil.copy2(src, target)
    return len(used)


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kairos-curate" / "embeddings"


# -------------------------------------------------------------------------------------------- curate


def _reasons(
    values: pd.DataFrame, selection: Selection, labels: np.ndarray, k: int, issues: pd.Series | None
) -> tuple[list[str], np.ndarray]:
    """Why each readable pool sample was kept or dropped, and its selection order (0 = not kept)."""
    n = len(values)
    chosen = selection.indices
    order = np.zeros(n, dtype=np.int64)
    order[chosen] = np.arange(1, chosen.size + 1)
    eligible = selection.eligible
    value = values["value"].to_numpy()
    ids = values.index.to_numpy(dtype=str)
    in_class_rank = np.zeros(n, dtype=np.int64)
    class_size = np.zeros(n, dtype=np.int64)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        ranked = rows[np.lexsort((ids[rows], -value[rows]))]
        in_class_rank[ranked] = np.arange(1, rows.size + 1)
        class_size[rows] = rows.size
    reasons = []
    name = selection.policy
    copies = np.zeros(n, dtype=bool)
    copies[np.asarray(selection.info.get("collapsed_rows", []), dtype=np.int64)] = True
    for i in range(n):
        where = f"value rank {in_class_rank[i]} of {class_size[i]} in class {str(labels[i])!r}"
        if order[i]:
            text = f"kept: pick {order[i]} of {k} by {name} ({where})"
        elif copies[i]:
            text = f"dropped: near copy of another sample of its class, collapsed by {name} ({where})"
        elif eligible is not None and not eligible[i]:
            text = f"dropped: did not pass the value gate of {name} ({where})"
        else:
            text = f"dropped: not picked by {name} within the budget of {k} ({where})"
        if issues is not None and issues.iloc[i]:
            text += f"; audit: {issues.iloc[i]}"
        reasons.append(text)
    return reasons, order


def curate(
    pool: str | os.PathLike[str],
    reference: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    budget: int | float | str,
    link_dir: str | os.PathLike[str] | None = None,
    link_mode: str = "symlink",
    selection: Mapping[str, Any] | None = None,
    encoder: str = "efficientnet-lite0",
    weights: str | os.PathLike[str] | None = None,
    image_size: int | None = None,
    device: str = "auto",
    batch_size: int = 64,
    cache_dir: str | os.PathLike[str] | None = None,
    label_mode: str = "class_conditional",
    bandwidth: float | str = "median",
    run_audit: bool = True,
    alpha: float = 0.01,
    force: bool = False,
    dry_run: bool = False,
    seed: int = 0,
    progress: bool | None = None,
    log: Any = None,
    engine: Any = None,
) -> CurateResult:
    """From a pool and a reference of image files to a curated training set (see the module docs).

    Parameters
    ----------
    pool, reference
        ImageFolder trees or manifests (:func:`read_image_set`).
    out_dir
        Output folder (created; refused if it exists, unless ``force`` replaces a previous
        kairos-curate output; refused inside an input).
    budget
        Samples to keep: a count, a fraction of the readable pool or a percentage (``"30%"``).
    link_dir
        Also write the selected files as an ImageFolder tree of links there (same rules as
        ``out_dir``). Only classes with a selected file get a folder.
    link_mode
        ``"symlink"`` (default), ``"hardlink"`` or ``"copy"``.
    selection
        ``{"policy": <registered policy>, <its parameter>: <value>, ...}``; default
        :data:`PRIMARY_SELECTION`.
    encoder, weights, image_size, device, batch_size
        The frozen encoder (:func:`kairos_curate.embedding.load_encoder`) and how it runs.
    cache_dir
        Embedding cache (default ``$XDG_CACHE_HOME/kairos-curate/embeddings``); reruns and
        interrupted runs reuse it.
    label_mode, bandwidth
        KAIROS label mode and RBF bandwidth (:func:`kairos_curate.valuation.kairos_values`).
    run_audit, alpha
        Audit the pool into ``out_dir/audit`` (issue types at false-flag rate ``alpha``).
    force
        Replace a previous kairos-curate output in ``out_dir`` / ``link_dir``.
    dry_run
        Read and check the inputs and outputs, print the plan, write nothing.
    seed
        Seed of the median heuristic and the selection.
    progress
        Progress bars (default: when stderr is a terminal).
    log
        Callable for the step messages (default: ``print``); ``None`` uses print.

    engine
        Where embedding, the KAIROS kernel sums and herding run: ``None`` or ``"local"`` (this
        process), ``"ray"`` (a local Ray cluster) or an engine from
        :func:`kairos_curate.engine.get_engine` (e.g. one joined to an existing cluster). Same
        results as local (to float tolerance); methods without a distributed path run here.

    Returns
    -------
    CurateResult

    Raises
    ------
    CurateError
        Bad inputs (named), pool classes missing from the reference (named), a bad budget, or a
        refused output.
    """
    say = log if log is not None else print
    show = sys.stderr.isatty() if progress is None else bool(progress)
    from kairos_curate.selection import SelectionSpec

    chosen_policy = dict(PRIMARY_SELECTION if selection is None else selection)
    try:
        spec = SelectionSpec.from_mapping("selection", chosen_policy)
    except ValueError as err:
        raise CurateError(f"--policy / --policy-param: {err}") from None
    if link_mode not in ("symlink", "hardlink", "copy"):
        raise CurateError(f"--link-mode {link_mode!r}: choose symlink, hardlink or copy")
    timings: dict[str, float] = {}
    notes: list[str] = []

    t0 = time.perf_counter()
    pool_set = read_image_set(pool, "pool", progress=show)
    ref_set = read_image_set(reference, "reference", progress=show)
    timings["read"] = time.perf_counter() - t0
    for image_set in (pool_set, ref_set):
        if len(image_set.unreadable):
            lines = [f"  {r.path}: {r.reason}" for r in image_set.unreadable.head(20).itertuples()]
            more = f"\n  ... and {len(image_set.unreadable) - 20} more" if len(image_set.unreadable) > 20 else ""
            note = (
                f"{len(image_set.unreadable)} unreadable {image_set.name} image(s) left out:\n"
                + "\n".join(lines)
                + more
            )
            notes.append(note)
            say(note)
        if image_set.empty_classes:
            note = (
                f"{image_set.name} class(es) without a readable image: {image_set.empty_classes} (in {image_set.spec})"
            )
            notes.append(note)
            say(note)
    ref_classes = {c for c, n in ref_set.class_counts().items() if n > 0}
    missing = sorted({c for c, n in pool_set.class_counts().items() if n > 0} - ref_classes)
    if missing:
        counts = pool_set.class_counts()
        raise CurateError(
            f"pool class(es) missing from the reference: {', '.join(repr(c) for c in missing)} "
            f"({', '.join(str(counts[c]) for c in missing)} pool image(s)); KAIROS values every "
            f"sample against its class's reference images: add reference images of these classes "
            f"to {ref_set.spec}, or take them out of the pool"
        )
    unused = sorted(ref_classes - set(pool_set.table["label"]))
    if unused:
        notes.append(f"reference class(es) with no pool image: {unused}")
    k = parse_budget(budget, len(pool_set))

    out = Path(out_dir).expanduser()
    links = Path(link_dir).expanduser() if link_dir is not None else None
    _check_output(out, "--out", (pool_set, ref_set), force)
    if links is not None:
        _check_output(links, "--link-dir", (pool_set, ref_set), force)
        if _is_within(links, out) or _is_within(out, links):
            raise CurateError(f"--link-dir {links} and --out {out} must be separate folders")
    cache = Path(cache_dir).expanduser() if cache_dir is not None else _default_cache_dir()

    plan = [
        f"pool: {len(pool_set)} readable images in {len(pool_set.classes)} classes from {pool_set.spec} "
        f"({pool_set.kind}); {len(pool_set.unreadable)} unreadable; per class {pool_set.class_counts()}",
        f"reference: {len(ref_set)} readable images from {ref_set.spec} ({ref_set.kind}); "
        f"{len(ref_set.unreadable)} unreadable; per class {ref_set.class_counts()}",
        f"embed with {encoder} (image size {image_size or 'the model default'}, device {device}), cache {cache}",
        f"value with KAIROS (label mode {label_mode}, bandwidth {bandwidth})"
        + (f", and with {spec.method} for the selection" if spec.method else ""),
        f"select {k} of {len(pool_set)} ({k / len(pool_set):.1%}) with policy {chosen_policy}",
        f"audit the pool into {out / 'audit'} (alpha {alpha})" if run_audit else "no audit",
        f"write {out / 'curated.csv'}, {out / 'values.csv'}, {out / 'summary.json'}"
        + (f", {out / 'unreadable.csv'}" if len(pool_set.unreadable) + len(ref_set.unreadable) else ""),
        f"link the {k} selected files into {links} ({link_mode}; ImageFolder layout)" if links else "no --link-dir",
    ]
    if dry_run:
        say("dry run: nothing is written. Plan:")
        for step in plan:
            say(f"  - {step}")
        return CurateResult(
            curated=pd.DataFrame(),
            values=pd.DataFrame(),
            pool=pool_set,
            reference=ref_set,
            k=k,
            policy=chosen_policy,
            plan=plan,
            timings=timings,
            warnings=notes,
            dry_run=True,
        )

    from kairos_curate.embedding import embed_source, load_encoder
    from kairos_curate.engine import get_engine
    from kairos_curate.selection import select
    from kairos_curate.valuation import kairos_values

    t = time.perf_counter()
    enc = load_encoder(encoder, weights=weights, image_size=image_size, device=device)
    pool_src, ref_src = pool_set.source(), ref_set.source()
    say(
        f"embedding {len(pool_src)} pool and {len(ref_src)} reference images with {enc.name} "
        f"({enc.preprocess.image_size}px, {enc.device}); cache {cache}"
    )
    runner = None if engine in (None, "local") else get_engine(engine)
    if runner is None or runner.name == "local":
        pool_ids, x_pool = embed_source(
            pool_src, enc, batch_size=batch_size, cache_dir=cache, progress=show, desc="embed pool"
        )
        _, x_ref = embed_source(
            ref_src, enc, batch_size=batch_size, cache_dir=cache, progress=show, desc="embed reference"
        )
    else:
        from kairos_curate.engine.embedding import EncoderSpec, embed_with_engine

        spec_enc = EncoderSpec(
            encoder, weights=None if weights is None else str(weights), image_size=image_size, device=device
        )
        pool_ids, x_pool = embed_with_engine(
            pool_src, spec_enc, engine=runner, batch_size=batch_size, cache_dir=cache, progress=show
        )
        _, x_ref = embed_with_engine(
            ref_src, spec_enc, engine=runner, batch_size=batch_size, cache_dir=cache, progress=show
        )
    timings["embed"] = time.perf_counter() - t

    t = time.perf_counter()
    y_pool = pool_set.table["label"].to_numpy(dtype=str)
    y_ref = ref_set.table["label"].to_numpy(dtype=str)
    mode = None if label_mode in (None, "none") else label_mode
    if runner is None or runner.name == "local":
        res = kairos_values(
            x_pool,
            x_ref,
            bandwidth,
            pool_labels=y_pool,
            reference_labels=y_ref,
            label_mode=mode,
            device=device,
            seed=seed,
            progress=show,
        )
    else:  # exact kernel sums as shard tasks on the engine (same values to float tolerance)
        from kairos_curate.engine.valuation import value_with_engine

        res = value_with_engine(
            x_pool,
            x_ref,
            bandwidth,
            engine=runner,
            pool_labels=y_pool,
            reference_labels=y_ref,
            label_mode=mode,
            device=device,
            seed=seed,
        )
    values = res.to_frame(pool_ids)
    ranked = values  # the values the selection ranks by (its own method's, if it names one)
    sel_res = res
    if spec.method is not None:
        from kairos_curate.valuation import ValuationInputs, value

        sel_res = value(
            spec.method,
            ValuationInputs(x_pool, y_pool, x_ref, y_ref, seed, ids=pool_ids, device=device),
            spec.method_params,
        )
        ranked = sel_res.to_frame(pool_ids)
        extra = ranked.drop(columns=[c for c in ("label", "rank") if c in ranked.columns])
        values = values.join(extra.add_prefix(f"{spec.method}."))
    timings["value"] = time.perf_counter() - t
    say(
        f"valued {len(values)} samples (bandwidth {res.bandwidth:.4g}, label mode {mode}"
        + (f"; {spec.method} for the selection" if spec.method else "")
        + f") in {timings['value']:.1f}s"
    )

    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # recorded in selection.warnings and printed below
        chosen = select(
            sel_res,
            k,
            policy=spec.policy_instance(),
            labels=y_pool,
            ids=pool_ids,
            embeddings=x_pool,
            reference=x_ref,
            reference_labels=y_ref,
            device=device,
            seed=seed,
            engine=runner,
        )
    timings["select"] = time.perf_counter() - t
    for msg in chosen.warnings:
        notes.append(msg)
        say(f"selection: {msg}")
    say(
        f"selected {chosen.indices.size} with {spec.policy} in {timings['select']:.1f}s; "
        f"per class {chosen.class_counts}"
    )

    if force:
        _clear_output(out)
        if links is not None:
            _clear_output(links)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by kairos-curate curate\n")

    audit_result = None
    issues = None
    if run_audit:
        from kairos_curate.audit import audit

        t = time.perf_counter()
        audit_result = audit(
            x_pool,
            x_ref,
            pool_src,
            pool_ids,
            labels=y_pool,
            reference_labels=y_ref,
            out_dir=out / "audit",
            reference_images=ref_src,
            alpha=alpha,
            label_mode=mode,
            bandwidth=res.bandwidth,
            title=f"KAIROS data audit: {pool_set.spec.name}",
            device=device,
            seed=seed,
            progress=show,
        )
        issues = audit_result.table["issues"].reindex(pool_ids)
        timings["audit"] = time.perf_counter() - t
        found = ", ".join(f"{t_} {n}" for t_, n in audit_result.info["issues"].items())
        say(f"audit: {found}; gallery {audit_result.html_path}")

    reasons, order = _reasons(ranked, chosen, y_pool, k, issues)
    curated = pd.DataFrame(
        {
            "id": pool_ids,
            "path": pool_set.table["path"].to_numpy(),
            "label": y_pool,
            "selected": order > 0,
            "order": order,
            "value": ranked["value"].to_numpy(),
            "rank": ranked["rank"].to_numpy(),
            "issues": issues.to_numpy() if issues is not None else "",
            "reason": reasons,
        }
    )
    if len(pool_set.unreadable):
        bad = pool_set.unreadable
        curated = pd.concat(
            [
                curated,
                pd.DataFrame(
                    {
                        "id": bad["id"],
                        "path": bad["path"],
                        "label": bad["label"],
                        "selected": False,
                        "order": 0,
                        "value": np.nan,
                        "rank": 0,
                        "issues": "unreadable",
                        "reason": [f"dropped: unreadable image ({r})" for r in bad["reason"]],
                    }
                ),
            ],
            ignore_index=True,
        )
    curated = curated.assign(_key=np.where(curated["order"] > 0, curated["order"], 10**12 + curated["rank"]))
    curated = curated.sort_values(["_key", "id"]).drop(columns="_key").reset_index(drop=True)
    values_out = values.assign(selected=order > 0, order=order)

    paths: dict[str, Path] = {
        "out": out,
        "curated": out / "curated.csv",
        "values": out / "values.csv",
        "summary": out / "summary.json",
    }
    with atomic_path(paths["curated"]) as tmp:
        curated.to_csv(tmp, index=False)
    with atomic_path(paths["values"]) as tmp:
        values_out.to_csv(tmp)
    unreadable = pd.concat(
        [pool_set.unreadable.assign(split="pool"), ref_set.unreadable.assign(split="reference")], ignore_index=True
    )
    if len(unreadable):
        paths["unreadable"] = out / "unreadable.csv"
        with atomic_path(paths["unreadable"]) as tmp:
            unreadable.to_csv(tmp, index=False)
    if audit_result is not None:
        paths["audit"] = audit_result.html_path
        paths["flags"] = audit_result.flags_path
    if links is not None:
        t = time.perf_counter()
        n_links = _link_tree(curated[curated["selected"]], links, link_mode, show)
        timings["link"] = time.perf_counter() - t
        paths["link_dir"] = links
        say(f"linked {n_links} files into {links} ({link_mode}); torchvision.datasets.ImageFolder({str(links)!r})")
    summary = {
        "pool": str(pool_set.spec),
        "reference": str(ref_set.spec),
        "n_pool": len(pool_set),
        "n_reference": len(ref_set),
        "unreadable": len(unreadable),
        "k": k,
        "budget": str(budget),
        "policy": chosen_policy,
        "encoder": enc.fingerprint,
        "label_mode": str(mode),
        "bandwidth": res.bandwidth,
        "class_counts_selected": {str(c): int(n) for c, n in chosen.class_counts.items()},
        "audit": audit_result.info["issues"] if audit_result is not None else None,
        "timings_s": timings,
        "warnings": notes,
    }
    write_json(paths["summary"], summary)
    say(
        f"wrote {paths['curated']} ({k} selected of {len(curated)} files), {paths['values']}"
        + (f", {paths['audit']}" if audit_result is not None else "")
    )
    return CurateResult(
        curated=curated,
        values=values_out,
        pool=pool_set,
        reference=ref_set,
        k=k,
        policy=chosen_policy,
        selection=chosen,
        audit=audit_result,
        paths=paths,
        plan=plan,
        timings=timings,
        warnings=notes,
    )


def curated_source(
    manifest: str | os.PathLike[str], *, selected_only: bool = True, classes: Sequence[str] | None = None
) -> tuple[FileImageSource, np.ndarray, list[str]]:
    """The images of a ``curated.csv`` as a source with integer labels, ready for training.

    Labels are indices into ``classes`` (default: the sorted labels of the whole manifest, the
    torchvision ImageFolder convention), so a model trained on the curated rows predicts the
    same classes as one trained on all of them.

    Returns
    -------
    source, labels, classes
    """
    table = pd.read_csv(manifest, dtype={"id": str, "label": str})
    missing = [c for c in ("id", "path", "label") if c not in table.columns]
    if missing:
        raise CurateError(f"{manifest} lacks column(s) {missing}; expected a curated.csv written by kairos-curate")
    names = list(classes) if classes is not None else sorted(table["label"].unique().tolist())
    if selected_only and "selected" in table.columns:
        table = table[table["selected"].astype(str).str.lower().isin(("true", "1"))]
    unknown = sorted(set(table["label"]) - set(names))
    if unknown:
        raise CurateError(f"{manifest}: labels {unknown} are not among classes {names}")
    index = {c: i for i, c in enumerate(names)}
    labels = np.asarray([index[c] for c in table["label"]], dtype=np.int64)
    return FileImageSource(table["id"].tolist(), table["path"].tolist()), labels, names
