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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "atomic_path",
    "atomic_write",
    "load_embeddings",
    "save_embeddings",
    "write_json",
]


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
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{target.stem}.", suffix=target.suffix or ".tmp", dir=target.parent
        )
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
    if target.suffix == ".npz":
        with atomic_path(target) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, ids=ids_arr, embeddings=emb)
    elif target.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        flat = pa.array(np.ascontiguousarray(emb).reshape(-1))
        column = pa.FixedSizeListArray.from_arrays(flat, emb.shape[1])
        table = pa.table({"id": pa.array(ids_arr.tolist()), "embedding": column})
        with atomic_path(target) as tmp:
            pq.write_table(table, tmp)
    else:
        raise ValueError(f"unsupported embedding file type {target.suffix!r} for {target}; "
                         "use .npz or .parquet")


def load_embeddings(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Load ``(ids, embeddings)`` from ``.npz``, ``.parquet`` or ``.npy`` (see module docs).

    Raises:
        FileNotFoundError: the file does not exist (the message says which stage makes it).
        ValueError: the file is not an ``(N, d)`` embedding table with one id per row.
    """
    source = Path(path)
    if not source.exists():
        raise FileNotFoundError(
            f"embedding file {source} not found; run `dvc repro embed` (or `kairos-curate embed`) "
            "to create it, or pass the path of your own .npz/.parquet/.npy embeddings"
        )
    if source.suffix == ".npz":
        with np.load(source, allow_pickle=False) as data:
            if "embeddings" not in data or "ids" not in data:
                raise ValueError(f"{source} must contain arrays 'ids' and 'embeddings'; "
                                 f"found {sorted(data.files)}")
            ids, emb = data["ids"].astype(str), data["embeddings"]
    elif source.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(source)
        if "id" not in table.column_names or "embedding" not in table.column_names:
            raise ValueError(f"{source} must have columns 'id' and 'embedding'; "
                             f"found {table.column_names}")
        ids = np.asarray(table.column("id").to_pylist(), dtype=str)
        emb = np.stack([np.asarray(v, dtype=np.float32) for v in
                        table.column("embedding").to_pylist()]) if len(ids) else np.zeros((0, 0))
    elif source.suffix == ".npy":
        emb = np.load(source, allow_pickle=False)
        id_file = source.with_suffix(".ids.txt")
        if id_file.exists():
            ids = np.asarray(id_file.read_text().splitlines(), dtype=str)
        else:
            ids = np.arange(emb.shape[0]).astype(str)
    else:
        raise ValueError(f"unsupported embedding file type {source.suffix!r} for {source}; "
                         "use .npz, .parquet or .npy")
    if emb.ndim != 2:
        raise ValueError(f"{source}: embeddings must be a 2-D (N, d) matrix, got shape {emb.shape}")
    if emb.shape[0] != ids.shape[0]:
        raise ValueError(f"{source}: {emb.shape[0]} embedding rows but {ids.shape[0]} ids")
    if len(set(ids.tolist())) != ids.shape[0]:
        raise ValueError(f"{source}: ids are not unique")
    return ids, emb
