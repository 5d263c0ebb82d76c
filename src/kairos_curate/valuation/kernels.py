"""Blocked RBF kernel sums: the only place where pairwise kernels are evaluated.

The RBF kernel ``k(x, y) = exp(-||x - y||^2 / (2 sigma^2))`` is evaluated tile by tile, one
GEMM per tile, and reduced to row (and column) sums on the fly, so the ``N x N`` matrix is
never materialised. Numerics:

* inputs are shifted by a common vector (the kernel is translation invariant) so that the
  expansion ``||x||^2 + ||y||^2 - 2 x.y`` does not cancel catastrophically, then scaled by
  ``sqrt(log2 e) / sigma`` so that each tile is ``2 ** (x'.y' - h_x - h_y)`` (``exp2`` is about
  twice as fast as ``exp`` on CPU); exponents are clamped at 0 (a squared distance is never
  negative) and the diagonal of a self tile is set to exactly 1;
* a tile is computed in float32 and reduced with torch's pairwise summation; tile sums are
  accumulated in float64 across tiles;
* tile edges come from a memory budget (two float32 tiles fit in it), capped so that a tile
  stays cache-sized on CPU;
* in the pool-pool sum only the upper block triangle is evaluated, and a diagonal tile is split
  recursively into two half-size diagonal tiles and one off-diagonal tile down to 256 rows, so
  the wasted lower halves of diagonal tiles cost ``N * 256 / 2`` entries instead of
  ``N * tile / 2`` (measured in ``benchmarks/bench_kairos.py``).

The same code runs on CPU and CUDA (``device="auto"`` picks CUDA when available).

Precision (``KernelSpace.precision``): ``"fp32"`` (default) keeps full float32 products (on
CUDA TF32 is switched off for the GEMMs). ``"tf32"`` and ``"bf16"`` round the prepared operands
to TF32 (10-bit mantissa) or bfloat16 (7-bit mantissa) and accumulate in float32; the half
squared norms ``h`` and the epilogue stay float32. On CUDA they run as TF32 tensor-core GEMMs
and as bfloat16 GEMMs with float32 output; on the CPU the same numerics are emulated (operands
rounded, then float32 GEMM: a product of two such numbers is exact in float32), so their
ranking error can be measured anywhere, but they are only faster on a GPU.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from kairos_curate.devices import resolve_device

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "PRECISIONS",
    "KernelSpace",
    "as_float64_matrix",
    "as_float_matrix",
    "choose_tile",
    "cross_sums",
    "resolve_device",
    "round_mantissa",
    "self_sums",
]

#: Default bound on the extra memory of the tile buffers (bytes).
DEFAULT_MEMORY_BUDGET = 256 * 2**20

_LOG2E = 1.0 / math.log(2.0)
_CPU_TILE_CAP = 2048
_CUDA_TILE_CAP = 8192
#: Smallest diagonal tile of the recursive split in :func:`self_sums`.
_DIAGONAL_MIN = 256

#: GEMM precisions of the kernel tiles (see module docs).
PRECISIONS = ("fp32", "tf32", "bf16")


def round_mantissa(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Round float32 values to ``bits`` explicit mantissa bits (nearest, ties to even).

    ``bits=7`` gives bfloat16 values, ``bits=10`` TF32 values, both held in float32.
    """
    if x.dtype != torch.float32:
        raise ValueError(f"round_mantissa needs a float32 tensor, got {x.dtype}")
    if not 0 <= bits <= 23:
        raise ValueError(f"bits must lie in [0, 23], got {bits}")
    if bits == 23:
        return x.clone()
    drop = 23 - bits
    i = x.contiguous().view(torch.int32)
    half = 1 << (drop - 1)
    lsb = (i >> drop) & 1
    rounded = ((i + (half - 1) + lsb) >> drop) << drop
    return rounded.view(torch.float32).reshape(x.shape)


def choose_tile(memory_budget_bytes: int, device: torch.device, block_size: int | None = None) -> int:
    """Edge length of a square float32 tile so that two tiles fit in ``memory_budget_bytes``.

    Parameters
    ----------
    memory_budget_bytes
        Bound on the bytes of the tile buffers.
    device
        CPU tiles are capped at 2048 (cache-sized epilogue), CUDA tiles at 8192.
    block_size
        Explicit tile edge; overrides the budget when given.
    """
    if block_size is not None:
        if int(block_size) < 1:
            raise ValueError(f"block_size must be a positive integer, got {block_size}")
        return int(block_size)
    if memory_budget_bytes <= 0:
        raise ValueError(f"memory_budget_bytes must be positive, got {memory_budget_bytes}")
    edge = int(math.sqrt(memory_budget_bytes / (2 * 4)))
    cap = _CUDA_TILE_CAP if device.type == "cuda" else _CPU_TILE_CAP
    edge = min(edge, cap)
    if edge >= 256:
        edge -= edge % 128
    return max(edge, 16)


def as_float_matrix(x: Any, name: str) -> np.ndarray:
    """Validate an ``(n, d)`` array or tensor; float32/float64 input is kept without a copy.

    Other dtypes are converted to float64.

    Raises
    ------
    ValueError
        Not 2-D, empty, or containing NaN/inf (the offending rows are named).
    """
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype not in (torch.float32, torch.float64):
            x = x.double()
        x = x.numpy()
    try:
        arr = np.asarray(x)
        if arr.dtype not in (np.float32, np.float64):
            arr = arr.astype(np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a numeric (n, d) array or tensor: {err}") from err
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (n, d) matrix, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); it needs at least one row and column")
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        shown = ", ".join(str(int(i)) for i in bad[:10])
        more = f" and {bad.size - 10} more" if bad.size > 10 else ""
        raise ValueError(
            f"{name} has NaN or inf values in {bad.size} row(s): {shown}{more}; "
            "drop or repair those rows before valuation"
        )
    return arr


def check_same_dim(pool_dim: int, reference_dim: int, pool_name: str = "pool") -> None:
    """Raise if the pool and the reference embeddings have different dimensions."""
    if pool_dim != reference_dim:
        raise ValueError(
            f"{pool_name} has dimension {pool_dim} but reference has {reference_dim}; embed both with the same encoder"
        )


def as_float64_matrix(x: Any, name: str) -> np.ndarray:
    """Like :func:`as_float_matrix`, returning a C-contiguous float64 copy when needed."""
    return np.ascontiguousarray(as_float_matrix(x, name), dtype=np.float64)


@dataclass
class KernelSpace:
    """Points mapped to the tile-friendly form ``k(x, y) = 2 ** (x'.y' - h_x - h_y)``.

    Build one per (bandwidth, shift) with :meth:`create` and map every point set with
    :meth:`prepare`; all sums between prepared sets then use the same kernel.
    """

    sigma: float
    shift: np.ndarray
    device: torch.device
    tile: int
    precision: str = "fp32"

    @classmethod
    def create(
        cls,
        sigma: float,
        shift: np.ndarray,
        device: str | torch.device = "auto",
        memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
        block_size: int | None = None,
        precision: str = "fp32",
    ) -> KernelSpace:
        """Create the kernel space for bandwidth ``sigma`` and centring vector ``shift``.

        ``precision`` is ``"fp32"``, ``"tf32"`` or ``"bf16"`` (see module docs).
        """
        if not (math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"bandwidth must be a positive finite number, got {sigma}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        dev = resolve_device(device)
        return cls(
            float(sigma),
            np.asarray(shift, dtype=np.float64),
            dev,
            choose_tile(memory_budget_bytes, dev, block_size),
            precision,
        )

    def prepare(self, x: np.ndarray, chunk: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(x', h)`` on the device: scaled float32 points and half squared norms.

        Rows are shifted and scaled in float64 (torch, multi-threaded) ``chunk`` rows at a
        time, so the only full-size copy is the float32 result. With ``precision="bf16"`` or
        ``"tf32"`` the points are rounded to that format (held as bfloat16 on CUDA); ``h`` is
        always the float32 half squared norm of the unrounded point.
        """
        scale = math.sqrt(_LOG2E) / self.sigma
        n = x.shape[0]
        xs = torch.empty((n, x.shape[1]), dtype=torch.float32)
        h = torch.empty(n, dtype=torch.float32)
        shift = torch.from_numpy(np.asarray(self.shift, dtype=np.float64))
        scratch = np.empty((min(chunk, n), x.shape[1]), dtype=np.float64)  # reused: no page faults
        for start in range(0, n, chunk):
            rows = x[start : start + chunk]
            part = torch.from_numpy(scratch[: rows.shape[0]])
            np.copyto(scratch[: rows.shape[0]], rows)
            part.sub_(shift).mul_(scale)
            xs[start : start + chunk] = part
            h[start : start + chunk] = 0.5 * torch.einsum("ij,ij->i", part, part)
        if self.precision == "bf16":
            xs = round_mantissa(xs, 7)
            if self.device.type == "cuda":
                return xs.to(self.device, torch.bfloat16), h.to(self.device)
        elif self.precision == "tf32" and self.device.type != "cuda":
            xs = round_mantissa(xs, 10)  # CUDA rounds in the tensor cores itself
        return xs.to(self.device), h.to(self.device)

    def buffer(self) -> torch.Tensor:
        """A flat float32 scratch buffer holding one tile."""
        return torch.empty(self.tile * self.tile, dtype=torch.float32, device=self.device)


def _kernel_tile(
    xa: torch.Tensor, ha: torch.Tensor, xb: torch.Tensor, hb: torch.Tensor, buf: torch.Tensor
) -> torch.Tensor:
    """Kernel tile ``k(a_i, b_j)`` written into ``buf`` (one GEMM and an in-place epilogue)."""
    out = buf[: xa.shape[0] * xb.shape[0]].view(xa.shape[0], xb.shape[0])
    if xa.dtype == torch.bfloat16:  # CUDA bf16 GEMM with float32 output
        out.copy_(torch.mm(xa, xb.T, out_dtype=torch.float32))
        out.sub_(hb.unsqueeze(0))
    else:
        torch.addmm(hb.unsqueeze(0), xa, xb.T, beta=-1.0, out=out)
    out.sub_(ha.unsqueeze(1))
    out.clamp_(max=0.0)
    out.exp2_()
    return out


@contextmanager
def _gemm_precision(space: KernelSpace) -> Iterator[None]:
    """Switch CUDA TF32 matmuls on for ``precision="tf32"`` and off otherwise, then restore."""
    if space.device.type != "cuda":
        yield
        return
    matmul = torch.backends.cuda.matmul
    before = matmul.allow_tf32
    matmul.allow_tf32 = space.precision == "tf32"
    try:
        yield
    finally:
        matmul.allow_tf32 = before


def kernel_matrix(
    space: KernelSpace, a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """Full kernel matrix between two prepared sets (for small sets only, e.g. herding rows)."""
    buf = torch.empty(a[0].shape[0] * b[0].shape[0], dtype=torch.float32, device=space.device)
    with _gemm_precision(space):
        return _kernel_tile(a[0], a[1], b[0], b[1], buf)


def _ranges(n: int, step: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, step):
        yield start, min(start + step, n)


def cross_sums(
    space: KernelSpace,
    a: tuple[torch.Tensor, torch.Tensor],
    b: tuple[torch.Tensor, torch.Tensor],
    *,
    want_cols: bool = False,
    progress: Any = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Row sums ``sum_j k(a_i, b_j)`` (and column sums if ``want_cols``) in float64.

    Parameters
    ----------
    space
        Kernel space both sets were prepared in.
    a, b
        Prepared sets ``(x', h)``.
    want_cols
        Also return ``sum_i k(a_i, b_j)``.
    progress
        Optional tqdm-like object; ``update(n)`` is called with the number of kernel entries done.
    """
    xa, ha = a
    xb, hb = b
    rows = torch.zeros(xa.shape[0], dtype=torch.float64, device=space.device)
    cols = torch.zeros(xb.shape[0], dtype=torch.float64, device=space.device) if want_cols else None
    buf = space.buffer()
    with _gemm_precision(space):
        for i0, i1 in _ranges(xa.shape[0], space.tile):
            for j0, j1 in _ranges(xb.shape[0], space.tile):
                k = _kernel_tile(xa[i0:i1], ha[i0:i1], xb[j0:j1], hb[j0:j1], buf)
                rows[i0:i1] += k.sum(dim=1)
                if cols is not None:
                    cols[j0:j1] += k.sum(dim=0)
                if progress is not None:
                    progress.update((i1 - i0) * (j1 - j0))
    return rows.cpu().numpy(), None if cols is None else cols.cpu().numpy()


def self_sums(space: KernelSpace, a: tuple[torch.Tensor, torch.Tensor], *, progress: Any = None) -> np.ndarray:
    """Row sums ``sum_k k(a_i, a_k)`` (self pair included) over the upper block triangle.

    Each off-diagonal tile contributes its row sums to its rows and its column sums to its
    columns; diagonal tiles are split recursively (see module docs), so about
    ``n (n + 256) / 2`` kernel entries are evaluated instead of ``n^2``.
    """
    xa, ha = a
    n = xa.shape[0]
    sums = torch.zeros(n, dtype=torch.float64, device=space.device)
    buf = space.buffer()
    with _gemm_precision(space):
        for i0, i1 in _ranges(n, space.tile):
            _diagonal_sums(xa[i0:i1], ha[i0:i1], sums[i0:i1], buf, progress)
            for j0, j1 in _ranges(n - i1, space.tile):
                j0, j1 = j0 + i1, j1 + i1
                k = _kernel_tile(xa[i0:i1], ha[i0:i1], xa[j0:j1], ha[j0:j1], buf)
                sums[i0:i1] += k.sum(dim=1)
                sums[j0:j1] += k.sum(dim=0)
                if progress is not None:
                    progress.update((i1 - i0) * (j1 - j0))
    return sums.cpu().numpy()


def _diagonal_sums(x: torch.Tensor, h: torch.Tensor, sums: torch.Tensor, buf: torch.Tensor, progress: Any) -> None:
    """Add the within-block row sums of ``x`` to ``sums`` (a view), splitting in halves."""
    n = x.shape[0]
    if n <= _DIAGONAL_MIN:
        k = _kernel_tile(x, h, x, h, buf)
        k.diagonal().fill_(1.0)
        sums += k.sum(dim=1)
        if progress is not None:
            progress.update(n * n)
        return
    mid = n // 2
    _diagonal_sums(x[:mid], h[:mid], sums[:mid], buf, progress)
    _diagonal_sums(x[mid:], h[mid:], sums[mid:], buf, progress)
    k = _kernel_tile(x[:mid], h[:mid], x[mid:], h[mid:], buf)
    sums[:mid] += k.sum(dim=1)
    sums[mid:] += k.sum(dim=0)
    if progress is not None:
        progress.update(mid * (n - mid))
