"""Bit-reproducible numerics for fine-tuning: one instruction set, pinned threads, seeds.

Why this exists (measured on this project's 2-core CPU machines, the default ``finetune`` stage,
EfficientNet-Lite0 tail; everything was already seeded):

* **The instruction set decides the last bits.** ATen, oneDNN and MKL pick their kernels by the
  CPU's vector unit. The two repros that disagreed (``full/lora`` 0.8941 vs 0.9011,
  ``full/partial`` 0.9065 vs 0.9057) are reproduced exactly, on one machine, by running the
  same stage code with and without the AVX-512 kernels: capped at AVX2
  (``ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2``) the three trials give 0.9011 and
  0.9057, natively 0.8941 and 0.9065. So the second repro ran where AVX-512 was not used (a VM
  placed on another host CPU, or one that hides AVX-512). Eight epochs amplify a difference in
  the last bit of a reduction into a different model.
* **So does the thread count.** With the instruction set fixed, two processes with the same
  number of intra-op threads are bit-identical (sequential, concurrent, with perturbed
  allocations), but 1, 2, 3 and 4 threads give ``full/lora`` seed-0 accuracies 0.9094, 0.8928,
  0.9094, 0.8939; torch's default thread count is the number of usable CPUs.

:func:`pin_cpu_isa` caps all three libraries at AVX2 (every x86-64 CPU of the last decade has
it) and :func:`deterministic` pins the threads and enables deterministic kernels; the
``finetune`` stage uses both, and :func:`numerics_info` records what was in effect.
"""

from __future__ import annotations

import contextlib
import os
import random
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from kairos_curate.training.config import DEFAULT_THREADS

__all__ = [
    "CPU_ISA_ENV",
    "DEFAULT_CPU_ISA",
    "DEFAULT_THREADS",
    "deterministic",
    "numerics_info",
    "pin_cpu_isa",
    "seed_everything",
]

#: Instruction set the fine-tuning numerics are pinned to ("native": whatever the CPU has).
DEFAULT_CPU_ISA = "avx2"

#: Environment variables that cap ATen, oneDNN and MKL at one instruction set.
CPU_ISA_ENV = {
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
}


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's global and torch's (CPU and every CUDA device) generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - for third-party code that draws from it
    torch.manual_seed(seed)


def pin_cpu_isa(isa: str | None = DEFAULT_CPU_ISA) -> bool:
    """Cap the CPU kernels of ATen, oneDNN and MKL at ``isa`` for the rest of the process.

    The libraries read these settings when they first run a kernel, so call this before any
    tensor computation (the ``finetune`` stage does, first thing); setting the variables of
    :data:`CPU_ISA_ENV` before Python starts works as well.

    Parameters
    ----------
    isa
        ``"avx2"`` (default), or ``"native"``/``None`` to leave the libraries alone.

    Returns
    -------
    bool
        Whether the cap is in effect (checked on ATen's reported capability). ``False`` with a
        ``RuntimeWarning`` when it came too late (kernels already ran in this process) or the
        CPU lacks the instruction set: results are then only comparable with runs on the same
        kind of CPU.
    """
    if isa is None or isa == "native":
        return False
    if isa not in CPU_ISA_ENV:
        raise ValueError(f"cpu isa must be one of {sorted(CPU_ISA_ENV)} or 'native', got {isa!r}")
    os.environ.update(CPU_ISA_ENV[isa])
    in_effect = torch.backends.cpu.get_cpu_capability().lower() == isa
    if not in_effect:
        warnings.warn(
            f"could not pin the CPU kernels to {isa.upper()} (this process already ran kernels as "
            f"{torch.backends.cpu.get_cpu_capability()}, or the CPU lacks {isa.upper()}); results are "
            f"comparable only with runs on the same kind of CPU. Set "
            f"{' '.join(f'{k}={v}' for k, v in CPU_ISA_ENV[isa].items())} before starting Python.",
            RuntimeWarning,
            stacklevel=2,
        )
    return in_effect


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
        "cpu_isa_caps": {k: os.environ[k] for k in CPU_ISA_ENV[DEFAULT_CPU_ISA] if k in os.environ},
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
