"""The tile engine: recursive diagonal split, float64 brute force, TF32/bf16 numerics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from kairos_curate.valuation import kairos_values
from kairos_curate.valuation.kernels import (
    KernelSpace,
    cross_sums,
    round_mantissa,
    self_sums,
)


def rbf(a: np.ndarray, b: np.ndarray, sigma: float) -> np.ndarray:
    d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return np.exp(-d2 / (2.0 * sigma**2))


@pytest.mark.parametrize("tile", [300, 600, 2048])
def test_self_sums_recursive_diagonal_matches_brute_force(tile):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(700, 5))
    space = KernelSpace.create(2.0, x.mean(0), "cpu", block_size=tile)
    assert_allclose(self_sums(space, space.prepare(x)), rbf(x, x, 2.0).sum(1), rtol=2e-6)


def test_progress_counts_evaluated_entries():
    class Count:
        n = 0

        def update(self, k: int) -> None:
            self.n += k

    rng = np.random.default_rng(1)
    x = rng.normal(size=(1000, 3))
    space = KernelSpace.create(1.0, x.mean(0), "cpu", block_size=1000)
    bar = Count()
    self_sums(space, space.prepare(x), progress=bar)
    # 1000 -> 500 + 500 -> 250 x 4 leaves: 4 * 250^2 + 2 * 250^2 + 500^2 entries
    assert bar.n == 4 * 250**2 + 2 * 250 * 250 + 500 * 500
    assert bar.n < 1000 * (1000 + 256) // 2 + 1000


@pytest.mark.parametrize(("bits", "dtype"), [(7, torch.bfloat16)])
def test_round_mantissa_matches_torch_bfloat16(bits, dtype):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(10_000, generator=gen) * 10.0 ** torch.randint(-5, 5, (10_000,), generator=gen)
    assert torch.equal(round_mantissa(x, bits), x.to(dtype).float())


def test_round_mantissa_tf32_error_bound_and_errors():
    x = torch.randn(5000, generator=torch.Generator().manual_seed(1))
    r = round_mantissa(x, 10)
    rel = ((r - x).abs() / x.abs()).max().item()
    assert rel <= 2.0**-11 + 1e-9  # half an ulp of a 10-bit mantissa
    # low 13 mantissa bits are zero
    assert int((r.view(torch.int32) & 0x1FFF).abs().max()) == 0
    with pytest.raises(ValueError, match="float32"):
        round_mantissa(x.double(), 7)
    with pytest.raises(ValueError, match="bits"):
        round_mantissa(x, 30)


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_reduced_precision_is_close_to_float64(precision):
    rng = np.random.default_rng(2)
    pool = rng.normal(size=(400, 32))
    ref = rng.normal(size=(120, 32)) + 0.3
    sigma = 6.0
    res = kairos_values(pool, ref, sigma, device="cpu", precision=precision)
    b = rbf(pool, ref, sigma).mean(1)
    a = rbf(pool, pool, sigma).mean(1)
    tol = {"tf32": 1e-3, "bf16": 1e-2}[precision]
    assert_allclose(res.b, b, rtol=tol)
    assert_allclose(res.a, a, rtol=tol)
    assert res.info["precision"] == precision
    exact = kairos_values(pool, ref, sigma, device="cpu")
    # fp32 is far more accurate than the reduced formats
    assert np.abs(exact.a - a).max() < np.abs(res.a - a).max()


def test_precision_is_validated():
    with pytest.raises(ValueError, match="precision"):
        KernelSpace.create(1.0, np.zeros(2), "cpu", precision="fp16")


def test_cross_sums_columns_match_brute_force():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(90, 4)), rng.normal(size=(70, 4))
    space = KernelSpace.create(1.3, a.mean(0), "cpu", block_size=32)
    rows, cols = cross_sums(space, space.prepare(a), space.prepare(b), want_cols=True)
    k = rbf(a, b, 1.3)
    assert_allclose(rows, k.sum(1), rtol=1e-5)
    assert cols is not None
    assert_allclose(cols, k.sum(0), rtol=1e-5)
