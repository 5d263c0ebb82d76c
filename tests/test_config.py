"""Strict parameter validation, atomic writes and the embedding file formats."""

from __future__ import annotations

import os

import numpy as np
import pytest
from numpy.testing import assert_allclose

from kairos_curate.config import ParamsError, none_if_default, parse_bandwidth, validate_params
from kairos_curate.io import atomic_write, load_embeddings, save_embeddings, write_json


def test_validate_params_is_strict_and_names_the_key():
    from pydantic import BaseModel, ConfigDict

    class Model(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)
        n: int = 1
        xs: tuple[float, ...] = ()
        m: dict[int, int] = {}

    assert validate_params(Model, {"n": 2, "xs": [1, 2.5], "m": {"2": 0}}, "s") == Model(n=2, xs=(1.0, 2.5), m={2: 0})
    assert validate_params(Model, None, "s") == Model()
    with pytest.raises(ParamsError, match=r"^invalid parameter s\.n: Input should be a valid integer \(got '2'\)$"):
        validate_params(Model, {"n": "2"}, "s")
    with pytest.raises(ParamsError, match=r"s\.nn: unknown key \(a typo\?\); known keys here: m, n, xs"):
        validate_params(Model, {"nn": 2}, "s")
    with pytest.raises(ParamsError) as err:
        validate_params(Model, {"n": True, "xs": ["a"]}, "s")
    assert err.value.problems == [
        "s.n: Input should be a valid integer (got True)",
        "s.xs.0: Input should be a valid number (got 'a')",
    ]
    with pytest.raises(ParamsError, match="must be a mapping"):
        validate_params(Model, [1], "s")  # type: ignore[arg-type]


def test_spellings_of_none_and_the_bandwidth():
    assert none_if_default("none") is None and none_if_default("default") is None
    assert none_if_default("models/x.pt") == "models/x.pt"
    assert parse_bandwidth("median", "b") == "median" and parse_bandwidth("0.5", "b") == 0.5
    for bad in ("0", "-1", "inf", "nan", "x", True):
        with pytest.raises(ValueError, match="--bw"):
            parse_bandwidth(bad, "--bw")


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("user data")
    with pytest.raises(RuntimeError), atomic_write(target, "w") as handle:
        handle.write("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "user data"
    assert os.listdir(tmp_path) == ["out.txt"]  # no temporary file left behind
    write_json(target.with_suffix(".json"), {"b": np.float32(1.5), "a": np.arange(2)})
    assert target.with_suffix(".json").read_text().startswith('{\n  "a": [\n')
    assert oct(target.with_suffix(".json").stat().st_mode & 0o777) != oct(0o600)


@pytest.mark.parametrize("suffix", [".npz", ".parquet"])
def test_embedding_round_trip(tmp_path, suffix):
    ids = [f"s{i}" for i in range(5)]
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    save_embeddings(tmp_path / f"e{suffix}", ids, x)
    got_ids, got = load_embeddings(tmp_path / f"e{suffix}")
    assert got_ids.tolist() == ids
    assert_allclose(got, x)


def test_npy_embeddings_with_and_without_id_file(tmp_path):
    x = np.ones((3, 2))
    np.save(tmp_path / "e.npy", x)
    ids, _ = load_embeddings(tmp_path / "e.npy")
    assert ids.tolist() == ["0", "1", "2"]
    (tmp_path / "e.ids.txt").write_text("a\nb\nc\n")
    ids, _ = load_embeddings(tmp_path / "e.npy")
    assert ids.tolist() == ["a", "b", "c"]
    (tmp_path / "e.ids.txt").write_text("a\nb\n")
    with pytest.raises(ValueError, match=r"3 embedding rows but 2 ids"):
        load_embeddings(tmp_path / "e.npy")


def test_embedding_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"dvc repro embed"):
        load_embeddings(tmp_path / "missing.npz")
    np.savez(tmp_path / "bad.npz", X=np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"bad\.npz"):
        load_embeddings(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="one id per row"):
        save_embeddings(tmp_path / "x.npz", ["a"], np.ones((2, 2)))
    np.savez(tmp_path / "dup.npz", ids=np.array(["a", "a"]), embeddings=np.ones((2, 2)))
    with pytest.raises(ValueError, match="not unique"):
        load_embeddings(tmp_path / "dup.npz")
