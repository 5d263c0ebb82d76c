"""Bit-reproducible numerics for fine-tuning: pinned threads, deterministic kernels, seeds.

Why this exists (measured on the 2-core CPU machines of this project, EfficientNet-Lite0 tail,
the default ``finetune`` stage's ``full/lora`` run): with everything seeded, two processes that
use the same number of intra-op threads give bit-identical metrics, whatever else runs on the
machine, but the *number of threads* changes the order of the floating-point reductions in
oneDNN's convolutions and MKL's GEMMs, and eight epochs of training amplify the last-bit
differences into different models: accuracy 0.8928 with 2 threads, 0.9094 with 1, 0.9094 with
3, 0.8939 with 4 (seed 0; the 3-trial means 0.8941 / 0.9009 / 0.9033 / 0.8983). The thread
count torch picks by default is the number of CPUs the process may use, which differs between
machines, containers and CPU affinity masks; so the stage pins it. Forcing another instruction
set (``ONEDNN_MAX_CPU_ISA=AVX2`` or ``MKL_CBWR=AVX2``) changes the results as well: runs on CPUs
with other vector units are not bit-comparable, which :func:`numerics_info` records.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from kairos_curate.training.config import DEFAULT_THREADS

__all__ = ["DEFAULT_THREADS", "deterministic", "numerics_info", "seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's global and torch's (CPU and every CUDA device) generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - for third-party code that draws from it
    torch.manual_seed(seed)


def numerics_info(threads: int | None = DEFAULT_THREADS) -> dict[str, Any]:
    """What decides the last bits of a run: torch version, CPU vector unit, threads, device.

    Two runs whose ``numerics_info`` differ are not expected to agree bit for bit.
    """
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": int(threads) if threads else torch.get_num_threads(),
        "threads_pinned": bool(threads),
        "deterministic_algorithms": True,
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


@contextlib.contextmanager
def deterministic(threads: int | None = DEFAULT_THREADS, seed: int | None = None) -> Iterator[None]:
    """Run the block with pinned intra-op threads and deterministic kernels; restore afterwards.

    Parameters
    ----------
    threads
        Intra-op threads (``torch.set_num_threads``, which also sets MKL's and OpenMP's);
        ``None`` or 0 leaves the current setting (results then depend on the machine).
    seed
        If given, :func:`seed_everything` is called first.

    Notes
    -----
    ``torch.use_deterministic_algorithms(True)`` makes an op without a deterministic
    implementation raise instead of silently varying (it matters on CUDA: scatter/index_add
    backward, cuBLAS workspaces - ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` is set if unset; cuDNN
    autotuning is switched off).
    """
    if threads is not None and int(threads) < 0:
        raise ValueError(f"threads must be >= 0 (0 = leave as is), got {threads}")
    previous_threads = torch.get_num_threads()
    previous_det = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    previous_cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    try:
        if threads:
            torch.set_num_threads(int(threads))
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        if seed is not None:
            seed_everything(int(seed))
        yield
    finally:
        if threads and torch.get_num_threads() != previous_threads:
            torch.set_num_threads(previous_threads)
        torch.use_deterministic_algorithms(previous_det, warn_only=previous_warn)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous_cudnn
