"""Atomic file writes and the on-disk embedding format.

Every write in the project goes through :func:`atomic_write` so that an interrupted run never
leaves a half-written file where a finished one is expected, and a user's file is only replaced
once its successor is complete.

Embedding files hold row ids next to the vectors, so a table can always be traced back to its
samples. Three formats are read:

* ``.npz`` with arrays ``ids`` (str) and ``embeddings`` (float, ``(N, d)``) - the native format;
* ``.parquet`` with a string column ``id`` and one fixed-size list column ``embedding``;
* ``.npy`` holding only the ``(N, d)`` matrix, with ids in a sibling ``<name>.ids.txt`` (one per
  line) or, if that file is absent, the row numbers as ids.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "EMBEDDING_SUFFIXES",
    "atomic_path",
    "atomic_write",
    "check_input_file",
    "check_output_paths",
    "load_embeddings",
    "npz_array",
    "open_npz",
    "save_embeddings",
    "write_json",
]

#: File types :func:`load_embeddings` reads (:func:`save_embeddings` writes the first two).
EMBEDDING_SUFFIXES = (".npz", ".parquet", ".npy")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publish(tmp_name: str, target: Path) -> None:
    """Give the finished temporary file normal permissions and rename it over ``target``."""
    os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp creates 0600; finished files are ordinary
    os.replace(tmp_name, target)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[Any]:
    """Open a temporary file next to ``path`` and rename it over ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        _publish(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def atomic_path(path: str | os.PathLike[str]) -> contextlib.AbstractContextManager[Path]:
    """Yield a temporary path for writers that need a file name (pandas, matplotlib, numpy)."""

    @contextlib.contextmanager
    def _ctx() -> Iterator[Path]:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=target.suffix or ".tmp", dir=target.parent)
        os.close(fd)
        try:
            yield Path(tmp_name)
            _publish(tmp_name, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise

    return _ctx()


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON, atomically."""
    with atomic_write(path, "w") as handle:
        json.dump(obj, handle, indent=2, sort_keys=True, default=_json_default)
        handle.write("\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def _named(name: str | None, path: Path) -> str:
    """How an error message refers to a file: ``--pool pool.npz`` or ``embedding file pool.npz``."""
    return f"{name} {path}" if name else f"embedding file {path}"


def check_input_file(path: str | os.PathLike[str], name: str, what: str = "file") -> Path:
    """Return ``path`` if it is an existing, non-empty regular file; else say what is wrong.

    Parameters
    ----------
    path
        The file the user gave.
    name
        How messages refer to it (a CLI flag such as ``--pool``, or an argument name).
    what
        What the file should hold, for the message (``"embedding file"``, ``"label table"``).

    Raises
    ------
    FileNotFoundError
        The path does not exist.
    ValueError
        It is a folder, not a regular file, or empty (0 bytes).
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{name} {p} not found; pass the path of an existing {what}")
    if p.is_dir():
        raise ValueError(f"{name} {p} is a folder, not a file; pass the {what} inside it")
    if not p.is_file():
        raise ValueError(f"{name} {p} is not a regular file (a device or pipe?); pass a {what}")
    if p.stat().st_size == 0:
        raise ValueError(
            f"{name} {p} is empty (0 bytes); regenerate it or pass the right {what} (an interrupted copy or write?)"
        )
    return p


def _same_file(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` name one file: same resolved path, symlink or hard link."""
    with contextlib.suppress(OSError):
        if a.resolve() == b.resolve():
            return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output_paths(
    outputs: Mapping[str, str | os.PathLike[str]],
    inputs: Mapping[str, str | os.PathLike[str] | None],
    *,
    force: bool,
    force_flag: str = "--force",
) -> None:
    """Refuse output paths that would destroy an input or silently replace an earlier output.

    Call before any work: nothing is written here.

    Parameters
    ----------
    outputs
        ``{name: path}`` of every file the command will write; the name (``--out``,
        ``--out (selection)``) is used in messages.
    inputs
        ``{name: path}`` of every file or folder the command reads (``None`` entries are skipped).
    force
        Allow replacing existing outputs (never inputs).
    force_flag
        The option that sets ``force``, for the message.

    Raises
    ------
    ValueError
        An output is the same file as an input (same path, symlink or hard link), lies inside
        an input file's "folder" (a file), is an existing folder, or exists and ``force`` is
        false.
    """
    given = {k: Path(v) for k, v in inputs.items() if v is not None}
    for oname, opath in outputs.items():
        out = Path(opath)
        for iname, inp in given.items():
            if _same_file(out, inp):
                raise ValueError(
                    f"{oname} {out} is the same file as {iname} {inp}; refusing to overwrite an "
                    "input: write the output to another path"
                )
        if out.is_dir():
            raise ValueError(
                f"{oname} {out} is an existing folder; give a file name, e.g. "
                f"{out / ('output' + (out.suffix or '.out'))}"
            )
        for parent in out.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise ValueError(
                        f"{oname} {out}: {parent} is a file, not a folder; choose an output path in a folder"
                    )
                break
        if out.exists() and not force:
            raise ValueError(f"{oname} {out} already exists; pass {force_flag} to replace it, or choose another path")


def save_embeddings(path: str | os.PathLike[str], ids: Any, embeddings: np.ndarray) -> None:
    """Save ``embeddings`` (``(N, d)``) with their row ``ids`` to ``.npz`` or ``.parquet``."""
    target = Path(path)
    ids_arr = np.asarray([str(i) for i in ids])
    emb = np.asarray(embeddings)
    if emb.ndim != 2 or emb.shape[0] != ids_arr.shape[0]:
        raise ValueError(
            f"embeddings must be (N, d) with one id per row; got shape {emb.shape} "
            f"and {ids_arr.shape[0]} ids for {target}"
        )
    suffix = target.suffix.lower()
    if suffix == ".npz":
        with atomic_path(target) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, ids=ids_arr, embeddings=emb)
    elif suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        flat = pa.array(np.ascontiguousarray(emb).reshape(-1))
        column = pa.FixedSizeListArray.from_arrays(flat, emb.shape[1])
        table = pa.table({"id": pa.array(ids_arr.tolist(), type=pa.string()), "embedding": column})
        with atomic_path(target) as tmp:
            pq.write_table(table, tmp)
    else:
        raise ValueError(f"unsupported embedding file type {target.suffix!r} for {target}; use .npz or .parquet")


def open_npz(path: str | os.PathLike[str], name: str, what: str = ".npz archive") -> Any:
    """Open an ``.npz`` file for reading without ever unpickling; clear errors for bad files.

    Returns the ``np.lib.npyio.NpzFile`` (use it as a context manager).

    Raises
    ------
    FileNotFoundError, ValueError
        Missing, a folder, empty, or not a zip archive (named, with what to do).
    """
    p = check_input_file(path, name, what)
    if not zipfile.is_zipfile(p):
        raise ValueError(
            f"{name} {p} is not an .npz archive (not a zip file); write it with numpy.savez "
            "(kairos-curate never loads pickled files)"
        )
    try:
        return np.load(p, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{name} {p} is a damaged .npz archive ({err}); regenerate it") from None


def npz_array(data: Any, key: str, path: str | os.PathLike[str], name: str) -> np.ndarray:
    """Array ``key`` of an open ``.npz``; object (pickled) and damaged members are clear errors."""
    try:
        return np.asarray(data[key])
    except ValueError as err:
        if "allow_pickle" in str(err) or "Object arrays" in str(err):
            raise ValueError(
                f"{name} {path}: array {key!r} holds Python objects (dtype=object, stored as a "
                "pickle, which kairos-curate never loads); save it as a plain array, e.g. "
                f"np.savez(path, {key}=np.asarray(values, dtype=str))"
            ) from None
        raise ValueError(f"{name} {path}: array {key!r} cannot be read ({err}); regenerate the file") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise ValueError(f"{name} {path}: array {key!r} is damaged ({err}); regenerate the file") from None


def _string_ids(raw: np.ndarray, where: str) -> np.ndarray:
    if raw.ndim != 1:
        raise ValueError(f"{where}: ids must be a 1-D array (one id per row), got shape {raw.shape}")
    if raw.dtype.kind not in "USiu":
        raise ValueError(
            f"{where}: ids must be strings or integers, got dtype {raw.dtype}; "
            "save them with np.asarray(ids, dtype=str)"
        )
    ids = raw.astype(str)
    blank = np.flatnonzero(np.char.str_len(np.char.strip(ids)) == 0) if ids.size else np.zeros(0, int)
    if blank.size:
        raise ValueError(
            f"{where}: {blank.size} empty id(s), e.g. at row {int(blank[0])}; every row needs a non-empty id"
        )
    return ids


def _numeric_matrix(raw: np.ndarray, where: str) -> np.ndarray:
    if raw.dtype.kind not in "fiu":
        raise ValueError(f"{where}: embeddings must be numbers (float), got dtype {raw.dtype}")
    if raw.ndim != 2:
        raise ValueError(f"{where}: embeddings must be a 2-D (N, d) matrix, got shape {raw.shape}")
    return raw if raw.dtype.kind == "f" else raw.astype(np.float32)


def _load_parquet(source: Path, where: str) -> tuple[np.ndarray, np.ndarray]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(source)
    except (pa.ArrowException, OSError, ValueError) as err:
        raise ValueError(f"{where} is not a readable Parquet file ({err}); regenerate it") from None
    if "id" not in table.column_names or "embedding" not in table.column_names:
        raise ValueError(f"{where} must have columns 'id' and 'embedding'; found {table.column_names}")
    id_col = table.column("id")
    if id_col.null_count:
        row = int(np.flatnonzero(np.asarray(id_col.is_null()))[0])
        raise ValueError(f"{where}: column 'id' is empty at row {row}; every row needs an id")
    ids = _string_ids(np.asarray(id_col.to_pylist()), where)
    col = table.column("embedding").combine_chunks()
    if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type) or pa.types.is_fixed_size_list(col.type)):
        raise ValueError(f"{where}: column 'embedding' must hold one list of numbers per row, got type {col.type}")
    if not (pa.types.is_floating(col.type.value_type) or pa.types.is_integer(col.type.value_type)):
        raise ValueError(f"{where}: column 'embedding' must hold numbers, got {col.type}")
    if len(ids) == 0:
        return ids, np.zeros((0, 0), dtype=np.float32)
    if col.null_count:
        row = int(np.flatnonzero(np.asarray(col.is_null()))[0])
        raise ValueError(f"{where}: row {row} (id {ids[row]}) has no embedding")
    lengths = np.asarray(pc.list_value_length(col))
    if (lengths != lengths[0]).any():
        row = int(np.flatnonzero(lengths != lengths[0])[0])
        raise ValueError(
            f"{where}: rows have different lengths (ragged): row 0 has {int(lengths[0])} values but "
            f"row {row} (id {ids[row]}) has {int(lengths[row])}; every embedding needs the same dimension"
        )
    values = pc.list_flatten(col)
    if values.null_count:
        raise ValueError(f"{where}: column 'embedding' has empty (null) numbers inside its lists")
    flat = np.asarray(values.to_numpy(zero_copy_only=False))
    emb = flat.astype(np.float32, copy=False).reshape(len(ids), int(lengths[0]))
    return ids, emb


def load_embeddings(path: str | os.PathLike[str], name: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Load ``(ids, embeddings)`` from ``.npz``, ``.parquet`` or ``.npy`` (see module docs).

    Parameters
    ----------
    path
        The embedding file.
    name
        How messages refer to the file (the CLI passes its flag, e.g. ``--pool``).

    Raises:
        FileNotFoundError: the file does not exist (the message says which stage makes it).
        ValueError: the file is not an ``(N, d)`` table of finite numbers with one unique,
            non-empty id per row (the message names the file, the row and the fix).
    """
    source = Path(path)
    where = _named(name, source)
    if not source.exists():
        raise FileNotFoundError(
            f"{where} not found; run `dvc repro embed` (or `kairos-curate embed`) "
            "to create it, or pass the path of your own .npz/.parquet/.npy embeddings"
        )
    suffix = source.suffix.lower()
    if suffix not in EMBEDDING_SUFFIXES:
        raise ValueError(f"unsupported embedding file type {source.suffix!r} for {source}; use .npz, .parquet or .npy")
    check_input_file(source, name or "embedding file", "embedding file")
    if suffix == ".npz":
        with open_npz(source, name or "embedding file", "embedding file (.npz)") as data:
            if "embeddings" not in data.files or "ids" not in data.files:
                raise ValueError(f"{where} must contain arrays 'ids' and 'embeddings'; found {sorted(data.files)}")
            ids = _string_ids(npz_array(data, "ids", source, name or "embedding file"), where)
            emb = _numeric_matrix(npz_array(data, "embeddings", source, name or "embedding file"), where)
    elif suffix == ".parquet":
        ids, emb = _load_parquet(source, where)
    else:
        try:
            raw = np.load(source, allow_pickle=False)
        except ValueError as err:
            if "pickle" in str(err) or "Object arrays" in str(err):
                raise ValueError(
                    f"{where} is not a plain .npy array (a pickle, which kairos-curate "
                    "never loads); save the (N, d) matrix with numpy.save"
                ) from None
            raise ValueError(f"{where} is not a readable .npy file ({err})") from None
        except (OSError, EOFError) as err:
            raise ValueError(f"{where} is not a readable .npy file ({err}); regenerate it") from None
        if not isinstance(raw, np.ndarray):
            raise ValueError(f"{where} is not a .npy array")
        emb = _numeric_matrix(raw, where)
        id_file = source.with_suffix(".ids.txt")
        if id_file.exists():
            lines = id_file.read_text().splitlines()
            while lines and not lines[-1].strip():
                lines.pop()  # a trailing newline or blank lines at the very end
            ids = _string_ids(np.asarray(lines, dtype=str), f"{where} (ids from {id_file})")
        else:
            ids = np.arange(emb.shape[0]).astype(str)
    if emb.ndim != 2:
        raise ValueError(f"{where}: embeddings must be a 2-D (N, d) matrix, got shape {emb.shape}")
    if emb.shape[0] != ids.shape[0]:
        raise ValueError(f"{where}: {emb.shape[0]} embedding rows but {ids.shape[0]} ids")
    if emb.shape[0] == 0 or emb.shape[1] == 0:
        raise ValueError(f"{where} holds no embeddings (shape {emb.shape}); embed some images first")
    uniq, counts = np.unique(ids, return_counts=True)
    if uniq.shape[0] != ids.shape[0]:
        dup = str(uniq[counts > 1][0])
        rows = np.flatnonzero(ids == dup)[:3].tolist()
        raise ValueError(
            f"{where}: ids are not unique ({int((counts > 1).sum())} repeated, e.g. "
            f"{dup!r} at rows {rows}); give every row its own id"
        )
    finite = np.isfinite(emb).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ValueError(
            f"{where}: {bad.size} row(s) hold NaN or inf, e.g. row {int(bad[0])} "
            f"(id {ids[bad[0]]}); drop or re-embed those rows"
        )
    return ids, emb
