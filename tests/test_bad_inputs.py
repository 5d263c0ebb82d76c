"""The bad-input table: every way of handing kairos-curate a wrong input ends in one clear sentence.

Each CLI case runs a command on a private copy of a small valid workspace with one thing wrong,
and checks (1) the exit status, (2) that the message names the file or flag and says what to do
(the listed fragments), (3) that there is no traceback and (4) that the failing command changed
nothing: every file of the workspace keeps its bytes and no file appears. API cases check the
exception type and message of the public function. The README's "What kairos-curate refuses"
lists the classes of inputs covered here.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from kairos_curate.cli import main
from kairos_curate.io import save_embeddings

# ----------------------------------------------------------------------------- workspace

N_POOL, N_REF, DIM = 60, 20, 5


def _write_workspace(root: Path) -> None:
    rng = np.random.default_rng(0)
    pool_ids = [f"p{i:03d}" for i in range(N_POOL)]
    ref_ids = [f"r{i:03d}" for i in range(N_REF)]
    save_embeddings(root / "pool.npz", pool_ids, rng.normal(size=(N_POOL, DIM)).astype(np.float32))
    save_embeddings(root / "ref.npz", ref_ids, rng.normal(size=(N_REF, DIM)).astype(np.float32))
    save_embeddings(root / "pool.parquet", pool_ids, rng.normal(size=(N_POOL, DIM)).astype(np.float32))
    classes = np.array(["ant", "bee", "wasp"])
    pd.DataFrame({"id": pool_ids, "label": classes[np.arange(N_POOL) % 3]}).to_csv(
        root / "pool_labels.csv", index=False
    )
    (root / "ref_labels.txt").write_text("\n".join(classes[np.arange(N_REF) % 3]) + "\n")
    pd.DataFrame(
        {"id": pool_ids + ref_ids, "label": list(classes[np.arange(N_POOL) % 3]) + list(classes[np.arange(N_REF) % 3])}
    ).to_csv(root / "all_labels.csv", index=False)
    np.savez(root / "pixels.npz", ids=np.array(pool_ids), pixels=rng.integers(0, 256, (N_POOL, 12, 12), dtype=np.uint8))
    (root / "imgs").mkdir()
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (14, 14, 3), dtype=np.uint8)).save(root / "imgs" / f"a{i}.png")


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("template")
    _write_workspace(root)
    return root


@pytest.fixture
def ws(template, tmp_path) -> Path:
    root = tmp_path / "ws"
    shutil.copytree(template, root, symlinks=True)
    return root


def _snapshot(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out[rel] = "link->" + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[rel] = "dir"
    return out


# ----------------------------------------------------------------------------- CLI cases


@dataclass
class Case:
    """One row of the table: a workspace change, a command line, what the message must say."""

    id: str
    argv: list[str]
    expect: tuple[str, ...]  # fragments of stderr: the flag or file, and the fix
    setup: Callable[[Path], None] | None = None
    status: int = 2
    needs_no_cuda: bool = False
    unchanged: bool = True  # the workspace is byte-for-byte the same afterwards
    extra: dict = field(default_factory=dict)


V = ["value", "--pool", "{ws}/pool.npz", "--reference", "{ws}/ref.npz", "--device", "cpu", "--no-progress"]
VOUT = [*V, "--out", "{ws}/out/values.parquet"]
VL = [*VOUT, "--pool-labels", "{ws}/pool_labels.csv", "--reference-labels", "{ws}/ref_labels.txt"]
E = ["embed", "--device", "cpu", "--image-size", "32", "--workers", "0", "--quiet", "--no-cache"]
EOUT = [*E, "--images", "{ws}/pixels.npz", "--out", "{ws}/out/emb.npz"]
A = ["audit", "--pool", "{ws}/pool.npz", "--reference", "{ws}/ref.npz", "--device", "cpu", "--no-progress"]
AOUT = [*A, "--out", "{ws}/audit"]


def _w(name: str, data: bytes) -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        (ws / name).parent.mkdir(parents=True, exist_ok=True)
        (ws / name).write_bytes(data)

    return setup


def _npz(name: str, **arrays: object) -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        np.savez(ws / name, **arrays)

    return setup


def _csv(name: str, text: str) -> Callable[[Path], None]:
    return _w(name, text.encode())


def _pool_ids() -> np.ndarray:
    return np.array([f"p{i:03d}" for i in range(N_POOL)])


def _labels_csv(rows: list[tuple[str, str]]) -> str:
    return "id,label\n" + "".join(f"{i},{lab}\n" for i, lab in rows)


_ok_rows = [(f"p{i:03d}", ["ant", "bee", "wasp"][i % 3]) for i in range(N_POOL)]


def _existing_output(ws: Path) -> None:
    (ws / "out").mkdir(exist_ok=True)
    (ws / "out" / "values.parquet").write_bytes(b"an earlier result")


def _symlink(name: str, target: str) -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        (ws / name).symlink_to(ws / target)

    return setup


def _hardlink(name: str, target: str) -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        os.link(ws / target, ws / name)

    return setup


def _parquet_rows(name: str, ids: list[object], rows: list[object]) -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"id": ids, "embedding": rows}), ws / name)

    return setup


def _tiff(name: str, array: np.ndarray) -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        Image.fromarray(array).save(ws / "imgs" / name)

    return setup


def _several(*setups: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        for s in setups:
            s(ws)

    return setup


_rng = np.random.default_rng(5)
_emb = _rng.normal(size=(N_POOL, DIM)).astype(np.float32)
_nan_emb = _emb.copy()
_nan_emb[7, 2] = np.nan

CASES = [
    # --- value: outputs that would destroy an input or an earlier result -------------------------
    Case("value-out-is-pool", [*V, "--out", "{ws}/pool.npz"], ("--out", "must end in .parquet or .csv")),
    Case(
        "value-out-is-pool-parquet",
        [*V, "--pool", "{ws}/pool.parquet", "--out", "{ws}/pool.parquet"],
        ("same file as --pool", "refusing to overwrite an input"),
    ),
    Case(
        "value-out-is-pool-labels",
        [*V, "--pool-labels", "{ws}/pool_labels.csv", "--out", "{ws}/pool_labels.csv"],
        ("pool_labels.csv is the same file as --pool-labels", "another path"),
    ),
    Case(
        "value-out-symlink-to-pool",
        [*V, "--pool", "{ws}/pool.parquet", "--out", "{ws}/link.parquet"],
        ("--out", "same file as --pool"),
        setup=_symlink("link.parquet", "pool.parquet"),
    ),
    Case(
        "value-out-hardlink-to-labels",
        [*V, "--pool-labels", "{ws}/pool_labels.csv", "--out", "{ws}/hard.csv"],
        ("same file as --pool-labels",),
        setup=_hardlink("hard.csv", "pool_labels.csv"),
    ),
    Case(
        "value-out-is-reference",
        [*V, "--reference", "{ws}/pool.parquet", "--pool", "{ws}/pool.npz", "--out", "{ws}/pool.parquet"],
        ("same file as --reference",),
    ),
    Case("value-out-exists", VOUT, ("values.parquet already exists", "pass --force"), setup=_existing_output),
    Case(
        "value-selection-exists",
        [*VOUT, "--top-k", "5"],
        ("values.selection.json already exists", "--force"),
        setup=_w("out/values.selection.json", b"{}"),
    ),
    Case(
        "value-out-is-folder",
        [*V, "--out", "{ws}/imgs.parquet"],
        ("is an existing folder", "give a file name"),
        setup=lambda ws: (ws / "imgs.parquet").mkdir(),
    ),
    Case("value-out-under-a-file", [*V, "--out", "{ws}/pool.npz/values.parquet"], ("is a file, not a folder",)),
    Case("value-out-suffix", [*V, "--out", "{ws}/values.txt"], ("--out must end in .parquet or .csv",)),
    # --- value: arguments checked before anything is written (an earlier table stays) -------------
    Case(
        "value-top-k-zero",
        [*VOUT, "--force", "--top-k", "0"],
        ("--top-k must be an integer >= 1",),
        setup=_existing_output,
    ),
    Case("value-top-k-negative", [*VOUT, "--top-k", "-5"], ("--top-k must be an integer >= 1",)),
    Case(
        "value-top-k-too-large",
        [*VOUT, "--force", "--top-k", "61"],
        ("--top-k 61 is larger than the pool", "at most 60"),
        setup=_existing_output,
    ),
    Case("value-top-frac-zero", [*VOUT, "--top-frac", "0"], ("--top-frac must lie in (0, 1]",)),
    Case(
        "value-top-frac-above-one",
        [*VOUT, "--force", "--top-frac", "1.5"],
        ("--top-frac must lie in (0, 1]",),
        setup=_existing_output,
    ),
    Case("value-top-frac-nan", [*VOUT, "--top-frac", "nan"], ("--top-frac must lie in (0, 1]",)),
    Case(
        "value-drop-fraction-one",
        [*VL, "--top-k", "6", "--policy", "herding", "--drop-fraction", "1"],
        ("--drop-fraction must lie in [0, 1)",),
    ),
    Case(
        "value-drop-fraction-negative",
        [*VL, "--top-k", "6", "--policy", "herding", "--drop-fraction", "-0.1"],
        ("--drop-fraction must lie in [0, 1)",),
    ),
    Case(
        "value-drop-fraction-without-herding",
        [*VL, "--top-k", "6", "--drop-fraction", "0.3"],
        ("--drop-fraction only applies to --policy herding",),
    ),
    Case(
        "value-min-class-share",
        [*VL, "--top-k", "6", "--min-class-share", "2"],
        ("--min-class-share must lie in [0, 1]",),
    ),
    Case(
        "value-policy-needs-labels",
        [*VOUT, "--force", "--top-k", "6", "--policy", "per_class"],
        ("--policy per_class needs --pool-labels",),
        setup=_existing_output,
    ),
    Case(
        "value-herding-needs-reference-labels",
        [*VOUT, "--top-k", "6", "--policy", "herding", "--pool-labels", "{ws}/pool_labels.csv"],
        ("--policy herding needs --reference-labels",),
    ),
    Case(
        "value-policy-without-selection",
        [*VOUT, "--policy", "per_class", "--pool-labels", "{ws}/pool_labels.csv"],
        ("--policy only applies to a selection", "add --top-k or --top-frac"),
    ),
    Case(
        "value-label-mode-needs-labels",
        [*VOUT, "--label-mode", "residual"],
        ("--label-mode residual needs --pool-labels and --reference-labels",),
    ),
    Case(
        "value-class-conditional-one-side",
        [*VOUT, "--label-mode", "class_conditional", "--pool-labels", "{ws}/pool_labels.csv"],
        ("--label-mode class_conditional needs --pool-labels and --reference-labels",),
    ),
    Case("value-lam-range", [*VL, "--label-mode", "residual", "--lam", "1.5"], ("--lam must lie in [0, 1]",)),
    Case(
        "value-lam-without-residual",
        [*VOUT, "--lam", "0.5"],
        ("--lam and --combine only apply to --label-mode residual",),
    ),
    Case("value-bandwidth-negative", [*VOUT, "--bandwidth", "-1"], ("--bandwidth must be a positive number",)),
    Case("value-bandwidth-text", [*VOUT, "--bandwidth", "wide"], ("--bandwidth must be 'median' or a positive",)),
    Case("value-bandwidth-inf", [*VOUT, "--bandwidth", "inf"], ("--bandwidth must be a positive number",)),
    Case(
        "value-bandwidth-underflows",
        [*VOUT, "--force", "--bandwidth", "1e-19"],
        ("--bandwidth=1e-19 is too small", "underflows", "use a bandwidth between", "'median'"),
        setup=_existing_output,
    ),
    Case(
        "value-bandwidth-saturates",
        [*VOUT, "--bandwidth", "1e9"],
        ("--bandwidth=1e+09 is too large", "saturates", "use a bandwidth between"),
    ),
    Case("value-memory-budget", [*VOUT, "--memory-budget-mb", "0"], ("--memory-budget-mb must be a positive",)),
    Case("value-seed-negative", [*VOUT, "--seed", "-1"], ("--seed must be a non-negative integer",)),
    Case(
        "value-cuda-unavailable",
        [*VOUT[:-3], "--no-progress", "--device", "cuda", "--out", "{ws}/out/v.parquet"],
        ("--device cuda", "use --device cpu"),
        needs_no_cuda=True,
    ),
    Case("value-top-k-not-int", [*VOUT, "--top-k", "five"], ("--top-k", "invalid int value")),
    Case("value-top-k-and-frac", [*VOUT, "--top-k", "3", "--top-frac", "0.1"], ("--top-frac", "not allowed with")),
    # --- value: embedding files ------------------------------------------------------------------
    Case("pool-missing", [*VOUT[:2], "{ws}/nope.npz", *VOUT[3:]], ("--pool", "nope.npz not found")),
    Case("pool-zero-bytes", VOUT, ("--pool", "pool.npz is empty (0 bytes)", "regenerate"), setup=_w("pool.npz", b"")),
    Case(
        "pool-is-a-folder",
        [*V[:2], "{ws}/dir.npz", *V[3:], "--out", "{ws}/o.parquet"],
        ("--pool", "dir.npz is a folder, not a file"),
        setup=lambda ws: (ws / "dir.npz").mkdir(),
    ),
    Case(
        "pool-not-a-zip",
        VOUT,
        ("--pool", "not an .npz archive", "numpy.savez"),
        setup=_w("pool.npz", b"id,embedding\np1,0.5\n"),
    ),
    Case(
        "pool-truncated-zip",
        VOUT,
        ("--pool", "pool.npz"),
        setup=lambda ws: (ws / "pool.npz").write_bytes((ws / "ref.npz").read_bytes()[:300]),
    ),
    Case(
        "pool-missing-array",
        VOUT,
        ("--pool", "must contain arrays 'ids' and 'embeddings'", "found ['X']"),
        setup=_npz("pool.npz", X=_emb),
    ),
    Case(
        "pool-object-ids",
        VOUT,
        ("--pool", "'ids' holds Python objects", "dtype=str"),
        setup=_npz("pool.npz", ids=np.array(["a", 1] * 30, dtype=object), embeddings=_emb),
    ),
    Case(
        "pool-1d-embeddings",
        VOUT,
        (
            "--pool",
            "2-D (N, d)",
        ),
        setup=_npz("pool.npz", ids=_pool_ids(), embeddings=_emb[:, 0]),
    ),
    Case(
        "pool-text-embeddings",
        VOUT,
        (
            "--pool",
            "embeddings must be numbers",
        ),
        setup=_npz("pool.npz", ids=_pool_ids(), embeddings=_emb.astype(str)),
    ),
    Case(
        "pool-nan-row",
        VOUT,
        ("--pool", "row 7 (id p007)", "NaN or inf", "drop or re-embed"),
        setup=_npz("pool.npz", ids=_pool_ids(), embeddings=_nan_emb),
    ),
    Case(
        "pool-duplicate-ids",
        VOUT,
        ("--pool", "ids are not unique", "'p000' at rows [0, 1]"),
        setup=_npz("pool.npz", ids=np.array(["p000"] * 2 + list(_pool_ids()[2:])), embeddings=_emb),
    ),
    Case(
        "pool-id-count",
        VOUT,
        (
            "--pool",
            "60 embedding rows but 59 ids",
        ),
        setup=_npz("pool.npz", ids=_pool_ids()[:59], embeddings=_emb),
    ),
    Case(
        "pool-no-rows",
        VOUT,
        (
            "--pool",
            "holds no embeddings",
        ),
        setup=_npz("pool.npz", ids=np.array([], dtype=str), embeddings=np.zeros((0, DIM), np.float32)),
    ),
    Case(
        "pool-empty-id",
        VOUT,
        ("--pool", "empty id", "row 3"),
        setup=_npz("pool.npz", ids=np.array([*_pool_ids()[:3], " ", *_pool_ids()[4:]]), embeddings=_emb),
    ),
    Case(
        "pool-parquet-ragged",
        [*V, "--pool", "{ws}/rag.parquet", "--out", "{ws}/o.parquet"],
        ("--pool", "rag.parquet", "ragged", "row 2 (id c)", "same dimension"),
        setup=_parquet_rows("rag.parquet", ["a", "b", "c"], [[1.0, 2.0, 3.0, 4.0, 5.0]] * 2 + [[1.0, 2.0]]),
    ),
    Case(
        "pool-parquet-null-row",
        [*V, "--pool", "{ws}/null.parquet", "--out", "{ws}/o.parquet"],
        (
            "--pool",
            "row 1 (id b) has no embedding",
        ),
        setup=_parquet_rows("null.parquet", ["a", "b"], [[1.0, 2.0, 3.0, 4.0, 5.0], None]),
    ),
    Case(
        "pool-parquet-columns",
        [*V, "--pool", "{ws}/cols.parquet", "--out", "{ws}/o.parquet"],
        (
            "--pool",
            "must have columns 'id' and 'embedding'",
        ),
        setup=lambda ws: pd.DataFrame({"name": ["a"], "x": [1.0]}).to_parquet(ws / "cols.parquet"),
    ),
    Case(
        "pool-parquet-garbage",
        [*V, "--pool", "{ws}/bad.parquet", "--out", "{ws}/o.parquet"],
        (
            "--pool",
            "bad.parquet is not a readable Parquet file",
        ),
        setup=_w("bad.parquet", b"PAR1 nope"),
    ),
    Case(
        "pool-parquet-text-vectors",
        [*V, "--pool", "{ws}/txt.parquet", "--out", "{ws}/o.parquet"],
        (
            "--pool",
            "must hold numbers",
        ),
        setup=_parquet_rows("txt.parquet", ["a"], [["x", "y"]]),
    ),
    Case(
        "pool-npy-pickled",
        [*V, "--pool", "{ws}/obj.npy", "--out", "{ws}/o.parquet"],
        ("--pool", "obj.npy is not a plain .npy array", "numpy.save"),
        setup=lambda ws: np.save(ws / "obj.npy", np.array([{"a": 1}, 2], dtype=object), allow_pickle=True),
    ),
    Case(
        "pool-npy-ids-count",
        [*V, "--pool", "{ws}/e.npy", "--out", "{ws}/o.parquet"],
        (
            "--pool",
            "60 embedding rows but 2 ids",
        ),
        setup=_several(lambda ws: np.save(ws / "e.npy", _emb), _w("e.ids.txt", b"a\nb\n")),
    ),
    Case(
        "pool-npy-blank-id",
        [*V, "--pool", "{ws}/e.npy", "--out", "{ws}/o.parquet"],
        ("--pool", "e.ids.txt", "empty id"),
        setup=_several(lambda ws: np.save(ws / "e.npy", _emb[:3]), _w("e.ids.txt", b"a\n\nc\n")),
    ),
    Case(
        "pool-npy-zero-bytes",
        [*V, "--pool", "{ws}/z.npy", "--out", "{ws}/o.parquet"],
        (
            "--pool",
            "z.npy is empty (0 bytes)",
        ),
        setup=_w("z.npy", b""),
    ),
    Case(
        "pool-unknown-suffix",
        [*V, "--pool", "{ws}/pool.h5", "--out", "{ws}/o.parquet"],
        ("unsupported embedding file type '.h5'", "use .npz, .parquet or .npy"),
        setup=_w("pool.h5", b"x"),
    ),
    Case(
        "reference-dimension",
        VOUT,
        ("--pool has dimension 5", "pool.npz", "--reference has 3", "ref.npz", "same encoder"),
        setup=lambda ws: save_embeddings(ws / "ref.npz", [f"r{i}" for i in range(4)], np.ones((4, 3))),
    ),
    Case(
        "identical-embeddings",
        VOUT,
        ("--pool", "all 60 rows are the same embedding", "re-embed them"),
        setup=_npz("pool.npz", ids=_pool_ids(), embeddings=np.ones((N_POOL, DIM), np.float32)),
    ),
    # --- value: label files ----------------------------------------------------------------------
    Case(
        "labels-duplicate-conflict",
        [*VOUT, "--pool-labels", "{ws}/dup.csv"],
        (
            "--pool-labels",
            "dup.csv line 4",
            "id p001 is listed twice with different labels",
            "line 3",
            "keep one row per id",
        ),
        setup=_csv("dup.csv", _labels_csv([*_ok_rows[:2], ("p001", "wasp"), *_ok_rows[2:]])),
    ),
    Case(
        "labels-empty-csv-label",
        [*VOUT, "--pool-labels", "{ws}/empty.csv"],
        (
            "--pool-labels",
            "empty.csv line 3 (id p001): empty label",
        ),
        setup=_csv("empty.csv", _labels_csv([_ok_rows[0], ("p001", ""), *_ok_rows[2:]])),
    ),
    Case(
        "labels-blank-csv-label",
        [*VOUT, "--pool-labels", "{ws}/blank.csv"],
        (
            "--pool-labels",
            "line 2 (id p000): empty label",
        ),
        setup=_csv("blank.csv", _labels_csv([("p000", "   "), *_ok_rows[1:]])),
    ),
    Case(
        "labels-empty-id",
        [*VOUT, "--pool-labels", "{ws}/noid.csv"],
        ("--pool-labels", "line 2: empty id"),
        setup=_csv("noid.csv", _labels_csv([("", "ant"), *_ok_rows])),
    ),
    Case(
        "labels-columns",
        [*VOUT, "--pool-labels", "{ws}/cols.csv"],
        ("--pool-labels", "must have columns 'id' and 'label'", "found ['name', 'class']"),
        setup=_csv("cols.csv", "name,class\np000,ant\n"),
    ),
    Case(
        "labels-missing-ids",
        [*VOUT, "--pool-labels", "{ws}/few.csv"],
        ("--pool-labels", "has no label for 50 id(s)", "one row per embedding id"),
        setup=_csv("few.csv", _labels_csv(_ok_rows[:10])),
    ),
    Case(
        "labels-txt-blank-line",
        [*VOUT, "--reference-labels", "{ws}/gap.txt", "--pool-labels", "{ws}/pool_labels.csv"],
        ("--reference-labels", "gap.txt line 3 is empty", "remove the blank line"),
        setup=_w("gap.txt", ("ant\nbee\n\n" + "wasp\n" * 17).encode()),
    ),
    Case(
        "labels-txt-count",
        [*VOUT, "--reference-labels", "{ws}/short.txt", "--pool-labels", "{ws}/pool_labels.csv"],
        (
            "--reference-labels",
            "has 2 labels but there are 20 embedding rows",
        ),
        setup=_w("short.txt", b"a\nb\n"),
    ),
    Case(
        "labels-npy-object",
        [*VOUT, "--pool-labels", "{ws}/obj.npy"],
        ("--pool-labels", "Python objects", "dtype=str"),
        setup=lambda ws: np.save(ws / "obj.npy", np.array(["a", 1] * 30, dtype=object), allow_pickle=True),
    ),
    Case(
        "labels-npy-nan",
        [*VOUT, "--pool-labels", "{ws}/nan.npy"],
        ("--pool-labels", "row 4: label is NaN"),
        setup=lambda ws: np.save(ws / "nan.npy", np.where(np.arange(N_POOL) == 4, np.nan, 1.0)),
    ),
    Case(
        "labels-npy-empty-string",
        [*VOUT, "--pool-labels", "{ws}/es.npy"],
        ("--pool-labels", "row 0: empty label"),
        setup=lambda ws: np.save(ws / "es.npy", np.array([""] + ["a"] * (N_POOL - 1))),
    ),
    Case(
        "labels-unknown-suffix",
        [*VOUT, "--pool-labels", "{ws}/labels.json"],
        ("--pool-labels", "unsupported type '.json'", "use .csv, .parquet, .npy or .txt"),
        setup=_w("labels.json", b"{}"),
    ),
    Case(
        "labels-zero-bytes",
        [*VOUT, "--pool-labels", "{ws}/zero.csv"],
        ("--pool-labels", "zero.csv is empty"),
        setup=_w("zero.csv", b""),
    ),
    Case(
        "labels-folder",
        [*VOUT, "--pool-labels", "{ws}/imgs.csv"],
        ("--pool-labels", "is a folder, not a file"),
        setup=lambda ws: (ws / "imgs.csv").mkdir(),
    ),
    Case(
        "labels-not-text",
        [*VOUT, "--pool-labels", "{ws}/bin.txt"],
        ("--pool-labels", "not a text file"),
        setup=_w("bin.txt", bytes(range(128, 256))),
    ),
    Case(
        "labels-class-missing-from-reference",
        [*VL[:-1], "{ws}/two.txt", "--label-mode", "class_conditional"],
        ("--pool-labels has 1 class(es) absent from --reference-labels", "add reference examples"),
        setup=_w("two.txt", ("ant\nbee\n" * 10).encode()),
    ),
    # --- embed ------------------------------------------------------------------------------------
    Case(
        "embed-out-is-images",
        [*E, "--images", "{ws}/pixels.npz", "--out", "{ws}/pixels.npz"],
        ("same file as --images", "refusing to overwrite an input"),
    ),
    Case(
        "embed-out-symlink-to-images",
        [*E, "--images", "{ws}/pixels.npz", "--out", "{ws}/l.npz"],
        ("--out", "same file as --images"),
        setup=_symlink("l.npz", "pixels.npz"),
    ),
    Case("embed-out-exists", EOUT, ("emb.npz already exists", "pass --force"), setup=_w("out/emb.npz", b"earlier")),
    Case(
        "embed-out-folder",
        [*E, "--images", "{ws}/pixels.npz", "--out", "{ws}/d.npz"],
        ("is an existing folder",),
        setup=lambda ws: (ws / "d.npz").mkdir(),
    ),
    Case(
        "embed-out-suffix",
        [*E, "--images", "{ws}/pixels.npz", "--out", "{ws}/e.csv"],
        ("--out must end in .npz or .parquet",),
    ),
    Case("embed-batch-size", [*EOUT, "--batch-size", "0"], ("--batch-size must be an integer >= 1",)),
    Case("embed-workers", [*EOUT, "--workers", "-1"], ("--workers must be an integer >= 0",)),
    Case("embed-image-size", [*EOUT, "--image-size", "4"], ("--image-size must be an integer >= 16",)),
    Case("embed-flush-seconds", [*EOUT, "--flush-seconds", "0"], ("--flush-seconds must be a positive number",)),
    Case(
        "embed-cache-dir-is-file",
        [*E[:-1], "--images", "{ws}/pixels.npz", "--out", "{ws}/e.npz", "--cache-dir", "{ws}/ref_labels.txt"],
        ("--cache-dir", "ref_labels.txt is a file, not a folder", "--no-cache"),
    ),
    Case(
        "embed-cache-dir-under-a-file",
        [*E[:-1], "--images", "{ws}/pixels.npz", "--out", "{ws}/e.npz", "--cache-dir", "{ws}/pool.npz/cache"],
        ("--cache-dir", "cannot be created or written", "pool.npz is not a writable folder", "--no-cache"),
    ),
    Case("embed-cache-and-no-cache", [*EOUT, "--cache-dir", "{ws}/c"], ("--cache-dir", "not allowed with")),
    Case("embed-weights-missing", [*EOUT, "--weights", "{ws}/nope.pt"], ("--weights", "nope.pt not found")),
    Case(
        "embed-weights-zero-bytes",
        [*EOUT, "--weights", "{ws}/zero.pt"],
        ("--weights", "zero.pt is empty"),
        setup=_w("zero.pt", b""),
    ),
    Case(
        "embed-weights-garbage",
        [*EOUT, "--weights", "{ws}/garbage.pt"],
        ("weights file", "garbage.pt is not a valid efficientnet-lite0 checkpoint", "torch.save"),
        setup=_w("garbage.pt", bytes(range(256)) * 4),
    ),
    Case(
        "embed-images-missing",
        [*E, "--images", "{ws}/none", "--out", "{ws}/e.npz"],
        ("--images", "none does not exist", "folder of images"),
    ),
    Case(
        "embed-images-wrong-type",
        [*E, "--images", "{ws}/ref_labels.txt", "--out", "{ws}/e.npz"],
        ("--images must be a .npz file or a folder",),
    ),
    Case(
        "embed-images-empty-folder",
        [*E, "--images", "{ws}/empty", "--out", "{ws}/e.npz"],
        ("--images folder", "holds no image files"),
        setup=lambda ws: (ws / "empty").mkdir(),
    ),
    Case(
        "embed-images-zero-bytes",
        [*E, "--images", "{ws}/z.npz", "--out", "{ws}/e.npz"],
        ("--images", "z.npz is empty"),
        setup=_w("z.npz", b""),
    ),
    Case(
        "embed-pixels-uint16",
        EOUT,
        ("--images", "pixels must be uint8", "(pixels // 257)"),
        setup=_npz("pixels.npz", ids=_pool_ids()[:3], pixels=np.zeros((3, 8, 8), np.uint16)),
    ),
    Case(
        "embed-pixels-float",
        EOUT,
        ("--images", "pixels must be uint8", "* 255"),
        setup=_npz("pixels.npz", ids=_pool_ids()[:3], pixels=np.zeros((3, 8, 8), np.float32)),
    ),
    Case(
        "embed-pixels-5-channels",
        EOUT,
        ("--images", "5 channels", "RGB (N, H, W, 3)"),
        setup=_npz("pixels.npz", ids=_pool_ids()[:3], pixels=np.zeros((3, 8, 8, 5), np.uint8)),
    ),
    Case(
        "embed-pixels-4-channels",
        EOUT,
        ("--images", "4 channels", "drop the alpha channel"),
        setup=_npz("pixels.npz", ids=_pool_ids()[:3], pixels=np.zeros((3, 8, 8, 4), np.uint8)),
    ),
    Case(
        "embed-pixels-2d",
        EOUT,
        ("--images", "(N, H, W) grey", "got shape (3, 8)"),
        setup=_npz("pixels.npz", ids=_pool_ids()[:3], pixels=np.zeros((3, 8), np.uint8)),
    ),
    Case(
        "embed-pixels-missing",
        EOUT,
        (
            "--images",
            "must contain arrays 'ids' and 'pixels'",
        ),
        setup=_npz("pixels.npz", ids=_pool_ids()[:3]),
    ),
    Case(
        "embed-pixels-object-ids",
        EOUT,
        ("--images", "'ids' holds Python objects"),
        setup=_npz("pixels.npz", ids=np.array([1, "a", 2], dtype=object), pixels=np.zeros((3, 8, 8), np.uint8)),
    ),
    Case(
        "embed-pixels-duplicate-ids",
        EOUT,
        ("--images", "ids are not unique", "'x'"),
        setup=_npz("pixels.npz", ids=np.array(["x", "x", "y"]), pixels=np.zeros((3, 8, 8), np.uint8)),
    ),
    Case(
        "embed-pixels-id-count",
        EOUT,
        ("--images", "2 ids for 3 images"),
        setup=_npz("pixels.npz", ids=np.array(["x", "y"]), pixels=np.zeros((3, 8, 8), np.uint8)),
    ),
    Case(
        "embed-unreadable-image",
        [*E, "--images", "{ws}/imgs", "--out", "{ws}/e.npz"],
        ("a2.png", "cannot decode", "--skip-unreadable"),
        setup=_w("imgs/a2.png", b"\x89PNG broken"),
    ),
    Case(
        "embed-float-tiff-out-of-range",
        [*E, "--images", "{ws}/imgs", "--out", "{ws}/e.npz"],
        ("f.tif", "float image with values in", "rescale it to [0, 1]"),
        setup=_tiff("f.tif", np.full((9, 9), 300.0, np.float32)),
    ),
    Case(
        "embed-int32-tiff",
        [*E, "--images", "{ws}/imgs", "--out", "{ws}/e.npz"],
        ("i.tif", "32-bit integer image", "save it as 8-bit or 16-bit"),
        setup=_tiff("i.tif", np.full((9, 9), 70000, np.int32)),
    ),
    Case(
        "embed-dangling-symlink",
        [*E, "--images", "{ws}/imgs", "--out", "{ws}/e.npz"],
        ("b.png", "is missing; restore it", "--skip-unreadable"),
        setup=lambda ws: (ws / "imgs" / "b.png").symlink_to(ws / "nowhere.png"),
    ),
    Case(
        "embed-unknown-encoder", [*EOUT, "--encoder", "vgg16"], ("unknown encoder spec 'vgg16'", "efficientnet-lite0")
    ),
    Case(
        "embed-cuda-unavailable",
        [*EOUT[:1], "--device", "cuda", *EOUT[3:]],
        ("--device cuda", "use --device cpu"),
        needs_no_cuda=True,
    ),
    # --- audit -------------------------------------------------------------------------------------
    Case("audit-out-is-a-file", [*A, "--out", "{ws}/pool_labels.csv"], ("--out", "exists and is not a folder")),
    Case("audit-flags-exist", AOUT, ("flags.csv already exists", "pass --force"), setup=_w("audit/flags.csv", b"x")),
    Case(
        "audit-labels-is-its-output",
        [*AOUT, "--force", "--labels", "{ws}/audit/flags.csv"],
        ("same file as --labels",),
        setup=_csv("audit/flags.csv", _labels_csv(_ok_rows)),
    ),
    Case("audit-n-lowest", [*AOUT, "--n-lowest", "-1"], ("--n-lowest must be an integer >= 0",)),
    Case("audit-thumb-size", [*AOUT, "--thumb-size", "4"], ("--thumb-size must be an integer >= 8",)),
    Case("audit-flag-fraction", [*AOUT, "--flag-fraction", "1.5"], ("--flag-fraction must lie in [0, 1]",)),
    Case(
        "audit-dup-threshold-high",
        [*AOUT, "--dup-threshold", "2"],
        ("--dup-threshold must be 'auto' or a cosine similarity in (-1, 1]",),
    ),
    Case(
        "audit-dup-threshold-low",
        [*AOUT, "--dup-threshold", "-1"],
        ("--dup-threshold must be 'auto' or a cosine similarity in (-1, 1]",),
    ),
    Case("audit-lam", [*AOUT, "--lam", "2"], ("--lam must lie in [0, 1]",)),
    Case("audit-seed", [*AOUT, "--seed", "-3"], ("--seed must be a non-negative integer",)),
    Case(
        "audit-bandwidth-underflows",
        [*AOUT, "--bandwidth", "1e-19"],
        ("--bandwidth=1e-19 is too small", "use a bandwidth between"),
    ),
    Case(
        "audit-label-mode-needs-labels", [*AOUT, "--label-mode", "residual"], ("--label-mode residual needs --labels",)
    ),
    Case(
        "audit-reference-labels-alone",
        [*AOUT, "--reference-labels", "{ws}/all_labels.csv"],
        ("--reference-labels needs --labels",),
    ),
    Case(
        "audit-labels-conflict",
        [*AOUT, "--labels", "{ws}/dup.csv"],
        ("--labels", "listed twice with different"),
        setup=_csv("dup.csv", _labels_csv([*_ok_rows, ("p000", "bee")])),
    ),
    Case(
        "audit-labels-empty",
        [*AOUT, "--labels", "{ws}/e.csv"],
        ("--labels", "line 2 (id p000): empty label"),
        setup=_csv("e.csv", _labels_csv([("p000", ""), *_ok_rows[1:]])),
    ),
    Case(
        "audit-images-5-channels",
        [*AOUT, "--images", "{ws}/px5.npz"],
        ("--images", "5 channels"),
        setup=_npz("px5.npz", ids=_pool_ids(), pixels=np.zeros((N_POOL, 8, 8, 5), np.uint8)),
    ),
    Case("audit-images-missing", [*AOUT, "--images", "{ws}/nothing"], ("--images", "nothing not found")),
    Case("audit-pool-zero-bytes", AOUT, ("--pool", "pool.npz is empty"), setup=_w("pool.npz", b"")),
    Case(
        "audit-images-no-match",
        [*AOUT, "--images", "{ws}/imgs"],
        ("--images folder", "no image file matches", "name files <id>.<ext>"),
    ),
    # --- the command line itself --------------------------------------------------------------------
    Case("cli-unknown-command", ["scenario"], ("invalid choice: 'scenario'",)),
    Case("cli-no-command", [], ("required: <command>",)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_cli_bad_input(case: Case, ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if case.needs_no_cuda and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    if case.setup is not None:
        case.setup(ws)
    before = _snapshot(ws)
    argv = [a.replace("{ws}", str(ws)) for a in case.argv]
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse: usage errors exit 2 with the flag named
        status = int(exit_.code or 0)
    err = capsys.readouterr().err
    assert status == case.status, err
    assert "Traceback" not in err
    for fragment in case.expect:
        assert fragment in err, f"{fragment!r} not in {err!r}"
    if case.unchanged:
        assert _snapshot(ws) == before, "a failing command changed the workspace"


def test_the_table_is_large_enough():
    assert len(CASES) + len(API_CASES) + 6 >= 100  # + the interruption/concurrency tests below


# ----------------------------------------------------------------------------- API cases


def _api_load_zero(ws: Path) -> None:
    from kairos_curate.io import load_embeddings

    (ws / "z.npz").write_bytes(b"")
    load_embeddings(ws / "z.npz")


def _api_load_not_zip(ws: Path) -> None:
    from kairos_curate.io import load_embeddings

    (ws / "t.npz").write_bytes(b"not a zip at all")
    load_embeddings(ws / "t.npz")


def _api_load_folder(ws: Path) -> None:
    from kairos_curate.io import load_embeddings

    (ws / "f.parquet").mkdir()
    load_embeddings(ws / "f.parquet")


def _api_labels_conflict(ws: Path) -> None:
    from kairos_curate.readers import read_labels

    (ws / "l.csv").write_text(_labels_csv([("a", "x"), ("b", "y"), ("a", "z")]))
    read_labels(ws / "l.csv", np.array(["a", "b"]), "pool_labels")


def _api_label_table_empty(ws: Path) -> None:
    from kairos_curate.readers import read_label_table

    (ws / "l.parquet").parent.mkdir(exist_ok=True)
    pd.DataFrame({"id": ["a", "b"], "label": ["x", None]}).to_parquet(ws / "l.parquet")
    read_label_table(ws / "l.parquet", "labels")


def _api_txt_blank(ws: Path) -> None:
    from kairos_curate.readers import read_labels

    (ws / "l.txt").write_text("x\n\ny\n")
    read_labels(ws / "l.txt", np.array(["a", "b", "c"]), "labels")


def _api_bandwidth_small(ws: Path) -> None:
    from kairos_curate.valuation import kairos_values

    rng = np.random.default_rng(0)
    kairos_values(rng.normal(size=(30, 4)), rng.normal(size=(10, 4)), 1e-19, device="cpu")


def _api_bandwidth_large(ws: Path) -> None:
    from kairos_curate.valuation import kairos_values

    rng = np.random.default_rng(0)
    kairos_values(rng.normal(size=(30, 4)), rng.normal(size=(10, 4)), 1e7, device="cpu")


def _api_output_hardlink(ws: Path) -> None:
    from kairos_curate.io import check_output_paths

    os.link(ws / "pool.npz", ws / "copy.npz")
    check_output_paths({"out": ws / "copy.npz"}, {"pool": ws / "pool.npz"}, force=True)


def _api_output_exists(ws: Path) -> None:
    from kairos_curate.io import check_output_paths

    check_output_paths({"out": ws / "ref.npz"}, {"pool": ws / "pool.npz"}, force=False)


def _api_array_source_channels(ws: Path) -> None:
    from kairos_curate.data.sources import ArrayImageSource

    ArrayImageSource(["a"], np.zeros((1, 4, 4, 5), np.uint8))


def _api_int32_tiff(ws: Path) -> None:
    from kairos_curate.data.sources import FileImageSource

    Image.fromarray(np.full((4, 4), 9, np.int32)).save(ws / "i.tif")
    FileImageSource(["i"], [ws / "i.tif"]).load_image(0)


def _api_float_tiff_range(ws: Path) -> None:
    from kairos_curate.data.sources import FileImageSource

    Image.fromarray(np.full((4, 4), -2.0, np.float32)).save(ws / "f.tif")
    FileImageSource(["f"], [ws / "f.tif"]).load_image(0)


def _api_float_tiff_nan(ws: Path) -> None:
    from kairos_curate.data.sources import FileImageSource

    Image.fromarray(np.full((4, 4), np.nan, np.float32)).save(ws / "n.tif")
    FileImageSource(["n"], [ws / "n.tif"]).load_image(0)


def _api_cache_dir_file(ws: Path) -> None:
    from kairos_curate.data.sources import ArrayImageSource
    from kairos_curate.embedding import embed_images

    embed_images(
        ArrayImageSource(["a"], np.zeros((1, 4, 4), np.uint8)),
        None,  # type: ignore[arg-type]
        cache_dir=ws / "ref_labels.txt",
        progress=False,
    )


def _api_flush_seconds(ws: Path) -> None:
    from kairos_curate.data.sources import ArrayImageSource
    from kairos_curate.embedding import embed_images

    embed_images(
        ArrayImageSource(["a"], np.zeros((1, 4, 4), np.uint8)),
        None,  # type: ignore[arg-type]
        flush_seconds=0,
        progress=False,
    )


def _api_save_suffix(ws: Path) -> None:
    save_embeddings(ws / "e.csv", ["a"], np.ones((1, 2)))


def _api_finetune_threads(ws: Path) -> None:
    from kairos_curate.training.finetune import FinetuneConfig

    FinetuneConfig(threads=-1)


def _api_backbone_garbage(ws: Path) -> None:
    from kairos_curate.training.backbones import load_backbone

    (ws / "g.pth").write_bytes(b"\x00garbage" * 50)
    load_backbone("efficientnet-lite0", weights=ws / "g.pth")


def _api_encoder_garbage(ws: Path) -> None:
    from kairos_curate.embedding import load_encoder

    (ws / "g.pt").write_bytes(b"\x00garbage" * 50)
    load_encoder("torchvision:resnet50", weights=ws / "g.pt")


def _api_identical_rows(ws: Path) -> None:
    from kairos_curate.valuation.bandwidth import usable_bandwidth_range

    usable_bandwidth_range(np.ones((5, 3)), np.ones((2, 3)))


def _api_pixels_array(ws: Path) -> None:
    from kairos_curate.readers import pixels_array

    pixels_array(np.zeros((2, 4, 4), np.uint16), "images.npz")


def _api_hash_unreadable(ws: Path) -> None:
    from kairos_curate.data.sources import FileImageSource

    (ws / "dir.png").mkdir()
    FileImageSource(["d"], [ws / "dir.png"]).content_hash(0)


API_CASES = [
    ("load-zero-bytes", _api_load_zero, ValueError, r"z\.npz is empty \(0 bytes\).*regenerate"),
    ("load-not-zip", _api_load_not_zip, ValueError, r"t\.npz is not an \.npz archive.*numpy\.savez"),
    ("load-folder", _api_load_folder, ValueError, r"f\.parquet is a folder, not a file"),
    ("labels-conflict", _api_labels_conflict, ValueError, r"l\.csv line 4: id a is listed twice.*line 2"),
    ("label-table-empty", _api_label_table_empty, ValueError, r"l\.parquet row 1 \(id b\): empty label"),
    ("txt-blank-line", _api_txt_blank, ValueError, r"l\.txt line 2 is empty"),
    ("bandwidth-underflow", _api_bandwidth_small, ValueError, r"bandwidth=1e-19 is too small.*between"),
    ("bandwidth-saturation", _api_bandwidth_large, ValueError, r"bandwidth=1e\+07 is too large.*'median'"),
    ("output-hardlink", _api_output_hardlink, ValueError, r"copy\.npz is the same file as pool"),
    ("output-exists", _api_output_exists, ValueError, r"ref\.npz already exists; pass --force"),
    ("array-source-channels", _api_array_source_channels, ValueError, r"\(N, H, W, 3\).*\(1, 4, 4, 5\)"),
    ("int32-tiff", _api_int32_tiff, OSError, r"i\.tif.*32-bit integer image"),
    ("float-tiff-range", _api_float_tiff_range, OSError, r"f\.tif.*\[-2, -2\].*rescale"),
    ("float-tiff-nan", _api_float_tiff_nan, OSError, r"n\.tif.*NaN/inf pixels"),
    ("cache-dir-is-file", _api_cache_dir_file, ValueError, r"cache_dir .*ref_labels\.txt is a file"),
    ("flush-seconds", _api_flush_seconds, ValueError, r"flush_seconds must be > 0"),
    ("save-suffix", _api_save_suffix, ValueError, r"unsupported embedding file type '\.csv'.*\.npz or \.parquet"),
    ("finetune-threads", _api_finetune_threads, ValueError, r"finetune\.threads must be >= 0"),
    ("backbone-garbage", _api_backbone_garbage, ValueError, r"g\.pth is not a EfficientNet-Lite0 state dict"),
    ("encoder-garbage", _api_encoder_garbage, ValueError, r"g\.pt is not a valid torchvision:resnet50 checkpoint"),
    ("identical-rows", _api_identical_rows, ValueError, r"every sampled pair of embeddings is identical"),
    ("pixels-uint16", _api_pixels_array, ValueError, r"images\.npz: pixels must be uint8.*// 257"),
    ("hash-folder-named-png", _api_hash_unreadable, OSError, r"cannot read image .*dir\.png"),
]


@pytest.mark.parametrize(("name", "call", "error", "pattern"), API_CASES, ids=[c[0] for c in API_CASES])
def test_api_bad_input(name, call, error, pattern, ws: Path) -> None:
    with pytest.raises(error, match=pattern) as info:
        call(ws)
    assert "weights_only" not in str(info.value) and "allow_pickle" not in str(info.value)


# ----------------------------------------------------------------------------- decoding: no flat images


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    from kairos_curate.data.sources import FileImageSource

    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    rgb = np.asarray(FileImageSource(["g"], [tmp_path / "g16.png"]).load_image(0))
    assert rgb.shape == (64, 64, 3)
    expected = np.rint(ramp / 257.0)
    assert np.abs(rgb[..., 0].astype(float) - expected).max() <= 1
    assert 120 < rgb.mean() < 135  # a ramp, not the flat white PIL's convert("RGB") gives


def test_float_tiff_on_unit_scale_is_scaled(tmp_path):
    from kairos_curate.data.sources import FileImageSource

    ramp = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    Image.fromarray(ramp).save(tmp_path / "f.tif")
    rgb = np.asarray(FileImageSource(["f"], [tmp_path / "f.tif"]).load_image(0))
    assert rgb.min() == 0 and rgb.max() == 255 and 120 < rgb.mean() < 135  # not flat black


def test_csv_label_named_na_is_a_class(tmp_path):
    from kairos_curate.readers import read_label_table

    (tmp_path / "l.csv").write_text("id,label\na,NA\nb,null\nc,x\nc,x\n")
    assert read_label_table(tmp_path / "l.csv", "labels") == {"a": "NA", "b": "null", "c": "x"}


# ----------------------------------------------------------------------------- interruptions, writers


def _value_argv(ws: Path, *extra: str) -> list[str]:
    return [a.replace("{ws}", str(ws)) for a in VOUT] + list(extra)


def test_value_interrupted_by_sigterm_keeps_the_earlier_table(ws, monkeypatch, capsys):
    import kairos_curate.valuation as valuation

    _existing_output(ws)
    compute = valuation.kairos_values

    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # delivered while the command runs
        return compute(*args, **kwargs)

    monkeypatch.setattr(valuation, "kairos_values", terminated)
    assert main(_value_argv(ws, "--force")) == 143
    assert "interrupted by SIGTERM" in capsys.readouterr().err
    assert (ws / "out" / "values.parquet").read_bytes() == b"an earlier result"
    assert sorted(p.name for p in (ws / "out").iterdir()) == ["values.parquet"]  # no temporary file left


def test_value_interrupted_by_ctrl_c(ws, monkeypatch, capsys):
    import kairos_curate.valuation as valuation

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(valuation, "kairos_values", interrupted)
    assert main(_value_argv(ws)) == 130
    assert "interrupted by Ctrl-C" in capsys.readouterr().err
    assert not (ws / "out" / "values.parquet").exists()


def test_internal_error_is_one_line_not_a_traceback(ws, monkeypatch, capsys):
    import kairos_curate.valuation as valuation

    def broken(*args, **kwargs):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(valuation, "kairos_values", broken)
    assert main(_value_argv(ws)) == 1
    err = capsys.readouterr().err
    assert "internal error: ZeroDivisionError: boom" in err and "KAIROS_CURATE_DEBUG=1" in err
    assert "Traceback" not in err
    monkeypatch.setenv("KAIROS_CURATE_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        main(_value_argv(ws))


def test_concurrent_writers_of_one_output_leave_a_complete_file(ws):
    from kairos_curate.io import load_embeddings

    target = ws / "shared.npz"
    payloads = {k: np.full((200, 64), float(k), np.float32) for k in range(4)}
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            for _ in range(5):
                save_embeddings(target, [f"{k}-{i}" for i in range(200)], payloads[k])
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    ids, emb = load_embeddings(target)  # one writer's complete file, never a mix or a torn file
    k = int(ids[0].split("-")[0])
    assert np.array_equal(emb, payloads[k]) and all(i.startswith(f"{k}-") for i in ids)
    assert not [p for p in ws.iterdir() if p.name.startswith(".shared")]  # no temporary files left


def test_concurrent_embed_runs_share_one_cache(ws):
    from kairos_curate.data.sources import ArrayImageSource
    from kairos_curate.embedding import EmbedStats, embed_images, load_encoder

    encoder = load_encoder("efficientnet-lite0", image_size=32, device="cpu")
    rng = np.random.default_rng(3)
    source = ArrayImageSource([f"c{i}" for i in range(24)], rng.integers(0, 256, (24, 10, 10), dtype=np.uint8))
    results: dict[int, np.ndarray] = {}

    def run(k: int) -> None:
        results[k] = embed_images(
            source, encoder, batch_size=4, num_workers=0, cache_dir=ws / "cache", shard_size=4, progress=False
        ).embeddings

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert np.array_equal(results[0], results[1])
    stats = EmbedStats()
    again = embed_images(
        source, encoder, batch_size=4, num_workers=0, cache_dir=ws / "cache", progress=False, stats=stats
    ).embeddings
    assert stats.from_cache == 24 and stats.computed == 0  # the shared cache is complete and readable
    assert np.array_equal(again, results[0])


def test_library_names_become_flags_but_file_names_stay():
    from kairos_curate.cli import flag_message

    names = {"pool_labels": "--pool-labels", "labels=...": "--pool-labels"}
    assert flag_message("pool_labels has 2 classes", names) == "--pool-labels has 2 classes"
    assert flag_message("needs the pool labels (labels=...)", names) == "needs the pool labels (--pool-labels)"
    assert (
        flag_message("--out data/pool_labels.csv is the same file", names)
        == "--out data/pool_labels.csv is the same file"
    )
    assert flag_message("x pool_labels.csv", names) == "x pool_labels.csv"


# ----------------------------------------------------------------------------- --force and accepted inputs


def test_force_replaces_outputs_and_drops_a_stale_selection(ws, capsys):
    _existing_output(ws)
    (ws / "out" / "values.selection.json").write_text("{}")  # from an earlier run with --top-k
    assert main(_value_argv(ws, "--force")) == 0
    assert pd.read_parquet(ws / "out" / "values.parquet").shape[0] == N_POOL
    assert not (ws / "out" / "values.selection.json").exists()  # it described the replaced table
    assert "removed" in capsys.readouterr().out
    assert main(_value_argv(ws, "--force", "--top-k", "5")) == 0
    assert '"k": 5' in (ws / "out" / "values.selection.json").read_text()


def test_embed_force_replaces_its_output(ws):
    argv = [a.replace("{ws}", str(ws)) for a in EOUT]
    assert main(argv) == 0
    assert main(argv) == 2  # exists
    assert main([*argv, "--force"]) == 0


def test_one_channel_pixels_are_grey(ws):
    from kairos_curate.data.sources import ArrayImageSource
    from kairos_curate.readers import open_images

    np.savez(ws / "c1.npz", ids=np.array(["a", "b"]), pixels=np.full((2, 6, 6, 1), 9, np.uint8))
    source = open_images(ws / "c1.npz")
    assert isinstance(source, ArrayImageSource) and source.pixels.shape == (2, 6, 6)
    assert np.asarray(source.load_image(0)).tolist() == np.full((6, 6, 3), 9).tolist()
