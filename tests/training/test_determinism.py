"""Fine-tuning is a function of its inputs and seed: bit-identical across processes, threads and CPUs.

The drift between two `make repro` runs came from numerics, not from unseeded randomness: the
CPU's instruction set (AVX-512 or not) and the number of intra-op threads change the order of
the reductions in ATen/oneDNN/MKL, and training amplifies the last bits (see
kairos_curate.training.determinism). Here fresh processes that differ in their default thread
count and in the instruction set the host offers (simulated by capping it from outside, as on a
CPU without AVX-512) fine-tune the same tiny configuration, stem features included, and must agree
on every metric and every computed probability, bit for bit. Two controls show that without the
pins the same comparison fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import hashlib, json, sys
import numpy as np
import torch
from kairos_curate.training.determinism import pin_cpu_isa

threads, pin = int(sys.argv[1]), sys.argv[2] == "pin"
if pin:
    assert pin_cpu_isa("avx2")  # first thing, as the finetune stage does
from kairos_curate.data.sources import ArrayImageSource
from kairos_curate.training import finetune
from kairos_curate.training.backbones import load_backbone
from kairos_curate.training.finetune import FinetuneConfig, compute_stem_features, train_run

# Instrument: a digest of every probability the run computes (validation after each epoch, then
# test), so that a difference in the last bit of any model anywhere in the run shows.
digest = hashlib.sha256()
predict = finetune._predict
def recording_predict(*args, **kwargs):
    probs = predict(*args, **kwargs)
    digest.update(probs.tobytes())
    return probs
finetune._predict = recording_predict

rng = np.random.default_rng(0)
n, classes = 120, 3
labels = np.arange(n) % classes
pixels = rng.integers(0, 60, (n, 32, 32, 3), dtype=np.uint8)
for i, c in enumerate(labels):  # a bright bar whose position depends on the class, plus noise
    pixels[i, 4 + 9 * c: 10 + 9 * c, 3:29] += np.uint8(150)
source = ArrayImageSource([f"s{i}" for i in range(n)], pixels)
backbone = load_backbone("efficientnet-lite0", image_size=64)  # 2x2 maps: at 1x1 AVX2 and AVX-512 agree
features = compute_stem_features(backbone, source, batch_size=32, progress=False, threads=threads)
out = {"default_threads": torch.get_num_threads(), "capability": torch.backends.cpu.get_cpu_capability(),
       "features_sha": hashlib.sha256(features.contiguous().numpy().tobytes()).hexdigest()}
for method in ("lora", "partial"):
    config = FinetuneConfig(method=method, epochs=3, batch_size=16, learning_rate=1e-2, threads=threads)
    res = train_run(backbone, features, labels, np.arange(90), features[90:], labels[90:], classes, config, seed=7)
    row = res.as_dict()
    row.pop("train_time_s")
    out[method] = {k: repr(v) for k, v in row.items()}  # repr: every bit of a float
    out[method]["probabilities_sha"] = digest.hexdigest()
print(json.dumps(out))
"""


ISA_CAP = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def _run(threads: int, pin: bool, omp: str | None, host_caps: dict[str, str] | None = None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", *ISA_CAP):
        env.pop(name, None)
    if omp is not None:
        env.update(OMP_NUM_THREADS=omp, MKL_NUM_THREADS=omp)
    env.update(host_caps or {})
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(threads), "pin" if pin else "native"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runs() -> dict[str, dict]:
    return {
        "pinned, 1 default thread": _run(2, True, "1"),
        # another host: the machine's default thread count, and no AVX-512 on offer
        "pinned, other host": _run(2, True, None, ISA_CAP),
        "threads not pinned": _run(0, True, "1"),
        "instruction set not pinned": _run(2, False, "1"),
    }


def test_processes_on_different_threads_and_cpus_agree_bit_for_bit(runs):
    a, b = runs["pinned, 1 default thread"], runs["pinned, other host"]
    assert a["default_threads"] == 1 and a["capability"] == b["capability"] == "AVX2"
    assert a["features_sha"] == b["features_sha"]
    for method in ("lora", "partial"):
        assert a[method] == b[method], method  # every metric and probability, every bit (no timings)
    assert float(a["lora"]["accuracy"]) > 1 / 3  # it learned something: not a degenerate case


def test_the_comparison_fails_without_pinned_threads(runs):
    """Control: left at one thread (what torch picks in a 1-CPU container) the run differs in its
    last bits from the pinned 2-thread run, so the test above would catch an unpinned run."""
    pinned, unpinned = runs["pinned, 1 default thread"], runs["threads not pinned"]
    assert unpinned["default_threads"] == 1
    assert pinned["lora"]["probabilities_sha"] != unpinned["lora"]["probabilities_sha"]


def test_the_comparison_fails_without_a_pinned_instruction_set(runs):
    """Control: with the host's own vector unit (AVX-512 here) the same run differs."""
    native = runs["instruction set not pinned"]
    if native["capability"] == "AVX2":
        pytest.skip("this CPU has no AVX-512: native and pinned runs are the same")
    assert native["lora"]["probabilities_sha"] != runs["pinned, 1 default thread"]["lora"]["probabilities_sha"]


def test_pinning_too_late_says_so():
    from kairos_curate.training.determinism import pin_cpu_isa

    assert pin_cpu_isa("native") is False and pin_cpu_isa(None) is False
    with pytest.raises(ValueError, match="cpu isa must be one of"):
        pin_cpu_isa("avx9")
    torch.ones(3).sum()  # kernels already ran in this process
    if torch.backends.cpu.get_cpu_capability() != "AVX2":
        saved = {k: os.environ.get(k) for k in ISA_CAP}
        try:
            with pytest.warns(RuntimeWarning, match="could not pin the CPU kernels to AVX2"):
                assert pin_cpu_isa("avx2") is False
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def test_run_restores_the_callers_torch_settings():
    from kairos_curate.training.determinism import deterministic

    before = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
    with deterministic(1, seed=3):
        assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled()
        first = torch.rand(3)
    with deterministic(1, seed=3):
        assert torch.equal(torch.rand(3), first)
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == before
    with pytest.raises(ValueError, match="threads"), deterministic(-1):
        pass


def test_stem_features_do_not_depend_on_the_batch_an_image_falls_in():
    """Padding every forward pass to a full batch: the last, short batch is computed like the others
    (at one thread oneDNN otherwise picks another algorithm for a small batch)."""
    from kairos_curate.data.sources import ArrayImageSource
    from kairos_curate.training.backbones import load_backbone
    from kairos_curate.training.finetune import compute_stem_features

    backbone = load_backbone("efficientnet-lite0", image_size=32)
    rng = np.random.default_rng(1)
    source = ArrayImageSource([f"i{k}" for k in range(40)], rng.integers(0, 256, (40, 20, 20), dtype=np.uint8))
    whole = compute_stem_features(backbone, source, batch_size=16, progress=False, threads=1)
    tail = compute_stem_features(backbone, source.subset(np.arange(37, 40)), batch_size=16, progress=False, threads=1)
    assert torch.equal(whole[37:], tail)


def test_tail_pooling_matches_adaptive_avg_pool_bit_for_bit():
    """The tails pool with a plain mean (deterministic on CUDA); on the CPU it is the same function."""
    from kairos_curate.training.backbones import _GlobalAvgPool

    x = torch.randn(17, 1280, 3, 3, generator=torch.Generator().manual_seed(0))
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    y = x.detach().clone().requires_grad_()
    a, b = torch.nn.AdaptiveAvgPool2d(1)(x), _GlobalAvgPool()(y)
    grad = torch.randn_like(a)
    assert torch.equal(a, b)
    assert torch.equal(torch.autograd.grad(a, x, grad)[0], torch.autograd.grad(b, y, grad)[0])
