"""A sharded, content-addressed on-disk cache of embeddings.

Layout: ``<root>/<sha256(fingerprint)[:16]>/`` holds ``fingerprint.txt`` (the full encoder
fingerprint, for humans) and shard files ``shard-<hash>.npz`` with arrays ``ids`` (str),
``hashes`` (str, the source's content hash of each image) and ``embeddings`` (float32,
``(n, dim)``, *raw* features - L2 normalisation is applied after lookup, so one cache serves
both ``normalize=True`` and ``False``).

A sample is a hit when a shard in the encoder's folder holds its ``(id, content hash)`` pair.
Shards are written atomically as soon as they fill up, so an interrupted run resumes without
recomputing finished shards, and a changed image only misses its own entry: the next run
computes just the changed samples (plus any never seen) and writes them as a new shard.
Shards whose entries are no longer used stay on disk until :meth:`EmbeddingCache.prune`.

Shards may also be Parquet files ``shard-<hash>.parquet`` with columns ``id``, ``hash`` and
``embedding`` (fixed-size float32 list): the Ray Data embedding path writes those
(:mod:`kairos_curate.engine.embedding`), and both kinds are read alike, so a run on either
engine resumes the other's work.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile
from pathlib import Path

import numpy as np

from kairos_curate.io import atomic_write

__all__ = ["EmbeddingCache"]

_log = logging.getLogger(__name__)


def _key(sample_id: str, content_hash: str) -> str:
    return f"{sample_id}\x00{content_hash}"


class EmbeddingCache:
    """Embeddings of one encoder (by fingerprint), stored in shards under ``root``.

    Parameters
    ----------
    root : path
        Cache folder shared by all encoders (one sub-folder per fingerprint).
    fingerprint : str
        The encoder's fingerprint (:attr:`Encoder.fingerprint`).
    dim : int
        Feature dimension; shards of another width are ignored.
    """

    def __init__(self, root: str | os.PathLike[str], fingerprint: str, dim: int) -> None:
        if not fingerprint:
            raise ValueError("fingerprint must be a non-empty string")
        self.root = Path(root)
        self.fingerprint = fingerprint
        self.dim = int(dim)
        self.dir = self.root / hashlib.sha256(fingerprint.encode()).hexdigest()[:16]
        self._index: dict[str, tuple[Path, int]] | None = None

    # -- reading -------------------------------------------------------------------------
    def shard_paths(self) -> list[Path]:
        """Shard files (``.npz`` and ``.parquet``) currently in this encoder's folder (sorted)."""
        if not self.dir.is_dir():
            return []
        return sorted([*self.dir.glob("shard-*.npz"), *self.dir.glob("shard-*.parquet")])

    def _load_index(self) -> dict[str, tuple[Path, int]]:
        index: dict[str, tuple[Path, int]] = {}
        for path in self.shard_paths():
            try:
                if path.suffix == ".parquet":
                    ids, hashes, shape = _parquet_keys(path)
                else:
                    with np.load(path, allow_pickle=False) as data:
                        ids = data["ids"].astype(str)
                        hashes = data["hashes"].astype(str)
                        shape = data["embeddings"].shape
            except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as err:
                _log.warning("ignoring unreadable embedding cache shard %s: %s", path, err)
                continue
            if len(shape) != 2 or shape[1] != self.dim or shape[0] != ids.shape[0]:
                _log.warning("ignoring embedding cache shard %s of shape %s", path, shape)
                continue
            for row, (sid, h) in enumerate(zip(ids.tolist(), hashes.tolist(), strict=True)):
                index[_key(sid, h)] = (path, row)
        return index

    def lookup(self, ids: np.ndarray, hashes: list[str] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Find cached rows.

        Parameters
        ----------
        ids, hashes : array-like of str
            Sample ids and their content hashes (same length).

        Returns
        -------
        found : np.ndarray of bool, shape (N,)
            Which samples are cached.
        embeddings : np.ndarray of float32, shape (N, dim)
            Their raw embeddings (rows of missing samples are zero).
        """
        ids_l = [str(i) for i in ids]
        hashes_l = [str(h) for h in hashes]
        if len(ids_l) != len(hashes_l):
            raise ValueError(f"{len(ids_l)} ids but {len(hashes_l)} content hashes")
        self._index = self._load_index()
        found = np.zeros(len(ids_l), dtype=bool)
        out = np.zeros((len(ids_l), self.dim), dtype=np.float32)
        wanted: dict[Path, list[tuple[int, int]]] = {}
        for i, (sid, h) in enumerate(zip(ids_l, hashes_l, strict=True)):
            hit = self._index.get(_key(sid, h))
            if hit is not None:
                wanted.setdefault(hit[0], []).append((i, hit[1]))
        for path, pairs in wanted.items():
            try:
                if path.suffix == ".parquet":
                    emb = _parquet_embeddings(path)
                else:
                    with np.load(path, allow_pickle=False) as data:
                        emb = data["embeddings"]
            except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as err:
                _log.warning("ignoring unreadable embedding cache shard %s: %s", path, err)
                continue
            dst = np.fromiter((p[0] for p in pairs), dtype=np.int64, count=len(pairs))
            src = np.fromiter((p[1] for p in pairs), dtype=np.int64, count=len(pairs))
            out[dst] = emb[src]
            found[dst] = True
        return found, out

    # -- writing -------------------------------------------------------------------------
    def write_shard(
        self,
        ids: np.ndarray,
        hashes: list[str] | np.ndarray,
        embeddings: np.ndarray,
        fmt: str = "npz",
    ) -> Path:
        """Write one shard atomically; its name is a hash of its ``(id, content hash)`` pairs.

        ``fmt`` is ``"npz"`` (default) or ``"parquet"`` (columns ``id``, ``hash``,
        ``embedding``).
        """
        if fmt not in ("npz", "parquet"):
            raise ValueError(f"fmt must be 'npz' or 'parquet', got {fmt!r}")
        ids_arr = np.asarray([str(i) for i in ids])
        hash_arr = np.asarray([str(h) for h in hashes])
        emb = np.ascontiguousarray(embeddings, dtype=np.float32)
        if emb.shape != (ids_arr.shape[0], self.dim) or hash_arr.shape != ids_arr.shape:
            raise ValueError(
                f"shard must hold one id, one hash and one {self.dim}-d row per sample; got "
                f"{ids_arr.shape[0]} ids, {hash_arr.shape[0]} hashes, embeddings {emb.shape}"
            )
        digest = hashlib.sha256()
        for sid, h in zip(ids_arr.tolist(), hash_arr.tolist(), strict=True):
            digest.update(_key(sid, h).encode() + b"\x01")
        path = self.dir / f"shard-{digest.hexdigest()[:24]}.{fmt}"
        self.dir.mkdir(parents=True, exist_ok=True)
        marker = self.dir / "fingerprint.txt"
        if not marker.exists():
            with atomic_write(marker, "w") as handle:
                handle.write(self.fingerprint + "\n")
        with atomic_write(path, "wb") as handle:
            if fmt == "npz":
                np.savez(handle, ids=ids_arr, hashes=hash_arr, embeddings=emb)
            else:
                _write_parquet(handle, ids_arr, hash_arr, emb)
        return path

    def prune(self, ids: np.ndarray, hashes: list[str] | np.ndarray) -> list[Path]:
        """Delete shards holding none of the given ``(id, hash)`` pairs; return their paths."""
        keep = {_key(str(i), str(h)) for i, h in zip(ids, hashes, strict=True)}
        removed: list[Path] = []
        for path in self.shard_paths():
            try:
                if path.suffix == ".parquet":
                    pid, phash, _ = _parquet_keys(path)
                    used = any(_key(s, h) in keep for s, h in zip(pid, phash, strict=True))
                else:
                    with np.load(path, allow_pickle=False) as data:
                        pairs = zip(
                            data["ids"].astype(str).tolist(),
                            data["hashes"].astype(str).tolist(),
                            strict=True,
                        )
                        used = any(_key(s, h) in keep for s, h in pairs)
            except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile):
                used = False
            if not used:
                path.unlink(missing_ok=True)
                removed.append(path)
        return removed


def _parquet_keys(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """``ids``, ``hashes`` and the embedding shape of a Parquet shard."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path, columns=["id", "hash", "embedding"])
    except Exception as err:  # pyarrow raises its own error types for damaged files
        raise ValueError(f"unreadable Parquet shard: {err}") from err
    emb = table.column("embedding").type
    dim = getattr(emb, "list_size", -1)
    ids = np.asarray(table.column("id").to_pylist(), dtype=str)
    hashes = np.asarray(table.column("hash").to_pylist(), dtype=str)
    return ids, hashes, (table.num_rows, int(dim))


def _parquet_embeddings(path: Path) -> np.ndarray:
    """The ``(n, dim)`` float32 embeddings of a Parquet shard."""
    import pyarrow.parquet as pq

    try:
        col = pq.read_table(path, columns=["embedding"]).column("embedding").combine_chunks()
    except Exception as err:
        raise ValueError(f"unreadable Parquet shard: {err}") from err
    dim = int(col.type.list_size)
    return np.asarray(col.values.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, dim)


def _write_parquet(handle: object, ids: np.ndarray, hashes: np.ndarray, emb: np.ndarray) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    flat = pa.array(emb.reshape(-1), type=pa.float32())
    table = pa.table(
        {
            "id": pa.array(ids.tolist(), type=pa.string()),
            "hash": pa.array(hashes.tolist(), type=pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(flat, emb.shape[1]),
        }
    )
    pq.write_table(table, handle)
