"""Fine-tuning runs: LoRA or partial unfreezing of a backbone's tail on a selected subset.

Each run re-loads the pretrained tail, splits the selected samples 80/20 into train and
validation with the run's own seed, keeps the epoch with the best validation macro-F1 (model
selection never sees the test set) and reports accuracy, macro-F1 and one-vs-rest AUC on the
held-out test set. Train time covers the epochs (training and the validation passes used for
model selection), not feature caching or testing.

Reproducibility: a run is a function of its inputs, its config and its seed, bit for bit, on a
given CPU type and torch version (tested across processes): the split, the head's and the LoRA
adapters' initialisation, the batch order (a seeded generator; no DataLoader) and dropout all
come from the seed; the intra-op thread count is pinned (``FinetuneConfig.threads``, see
:mod:`kairos_curate.training.determinism` for why it matters); deterministic kernels are
enforced; ties for the best validation macro-F1 go to the earliest epoch. Stem features are
computed in full batches (padded), so an image's features do not depend on its batch.
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch import nn
from tqdm import tqdm

from kairos_curate.data.sources import ImageSource
from kairos_curate.devices import resolve_device
from kairos_curate.evaluation import classification_metrics
from kairos_curate.io import atomic_path
from kairos_curate.training.backbones import Backbone
from kairos_curate.training.config import FinetuneConfig
from kairos_curate.training.determinism import DEFAULT_THREADS, deterministic, numerics_info

__all__ = ["FinetuneConfig", "RunResult", "compute_stem_features", "numerics_info", "resolve_device", "train_run"]


@dataclass
class RunResult:
    """Outcome of one run: test metrics, train time and what was trained."""

    accuracy: float
    macro_f1: float
    auc: float
    train_time_s: float
    trainable_params: int
    n_train: int
    n_val: int
    best_epoch: int
    val_macro_f1: float

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (one results-table row)."""
        return asdict(self)


def _features_key(backbone: Backbone, source: ImageSource, threads: int | None = DEFAULT_THREADS) -> str:
    digest = hashlib.sha256()
    digest.update(f"{backbone.name}|{backbone.cut}|{sorted(backbone.info.items())}".encode())
    numerics = numerics_info(threads)
    digest.update(f"|padded|{numerics['torch']}|{numerics['cpu_capability']}|{numerics['threads']}".encode())
    for i in range(len(source)):
        digest.update(f"{source.ids[i]}:{source.content_hash(i)};".encode())
    return digest.hexdigest()[:24]


@torch.inference_mode()
def compute_stem_features(
    backbone: Backbone,
    source: ImageSource,
    *,
    batch_size: int = 64,
    device: str = "auto",
    cache_dir: str | Path | None = None,
    progress: bool = True,
    desc: str = "stem features",
    threads: int | None = DEFAULT_THREADS,
) -> torch.Tensor:
    """Run the frozen stem once over every image of ``source`` (float32, CPU tensor).

    Every forward pass is a full batch of ``batch_size`` (the last one padded with copies of its
    first image), so an image's features are the same whichever batch it falls in (a pool and a
    variant of it recomputed for its changed rows agree bit for bit). ``threads`` pins the
    intra-op threads as in :class:`FinetuneConfig`.

    With ``cache_dir`` the result is stored under a key of the backbone, its cut, its weights,
    the numerics (torch version, CPU vector unit, threads) and every image's id and content hash,
    so a changed image, backbone or numerics never reuses stale rows.
    """
    cache_file = None
    if cache_dir is not None:
        key = _features_key(backbone, source, threads)
        cache_file = Path(cache_dir) / f"{backbone.name.replace(':', '_')}-{key}.npy"
        if cache_file.exists():
            return _channels_last(torch.from_numpy(np.load(cache_file)))
    dev = resolve_device(device)
    stem = backbone.stem.to(dev).to(memory_format=torch.channels_last)
    chunks = []
    with deterministic(threads):
        for start in tqdm(range(0, len(source), batch_size), desc=desc, disable=not progress, unit="batch"):
            rows = range(start, min(start + batch_size, len(source)))
            batch = torch.stack([backbone.preprocess(source.load_image(i)) for i in rows])
            if len(rows) < batch_size:
                batch = torch.cat([batch, batch[:1].expand(batch_size - len(rows), *batch.shape[1:])])
            batch = batch.to(dev).contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type=dev.type, enabled=dev.type == "cuda"):
                chunks.append(stem(batch).float().cpu()[: len(rows)])
    features = torch.cat(chunks) if chunks else torch.zeros(0)
    if cache_file is not None:
        with atomic_path(cache_file) as tmp, open(tmp, "wb") as handle:
            np.save(handle, features.contiguous().numpy())
    return _channels_last(features)


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """Feature maps in channels-last layout: on CPU, oneDNN's convolutions over small spatial maps
    are about ten times faster in this layout than in NCHW (measured on the 1x1 conv head)."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def _prepare_tail(backbone: Backbone, num_classes: int, config: FinetuneConfig) -> nn.Module:
    tail = backbone.make_tail(num_classes)
    if config.method == "partial":
        for param in tail.parameters():
            param.requires_grad_(True)
        return tail
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.lora_targets,
        modules_to_save=["fc"],
    )
    return get_peft_model(tail, lora)


def _predict(model: nn.Module, features: torch.Tensor, batch_size: int, device: torch.device) -> np.ndarray:
    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, features.shape[0], batch_size * 4):
            logits = model(features[start : start + batch_size * 4].to(device))
            out.append(torch.softmax(logits.float(), dim=1).cpu())
    return torch.cat(out).numpy().astype(np.float64)


def train_run(
    backbone: Backbone,
    features: torch.Tensor,
    labels: np.ndarray,
    selected: Sequence[int] | np.ndarray,
    test_features: torch.Tensor,
    test_labels: np.ndarray,
    num_classes: int,
    config: FinetuneConfig,
    seed: int,
) -> RunResult:
    """Fine-tune a fresh tail on ``features[selected]`` and evaluate it on the test features.

    Args:
        backbone: gives the tail (pretrained weights re-loaded for this run).
        features: stem outputs of the whole pool (row ``i`` = pool sample ``i``).
        labels: the pool's labels as a user sees them (possibly noisy).
        selected: pool rows to train on; split 80/20 train/validation with ``seed``.
        test_features, test_labels: the clean held-out test set.
        num_classes: number of task classes.
        config: run hyper-parameters (``config.threads`` pins the CPU threads).
        seed: seeds the split, the head's initialisation, dropout and batch order.

    The result depends only on these arguments (bit for bit on one CPU type and torch version):
    see the module docs.
    """
    with deterministic(config.threads, seed):
        return _train_run(backbone, features, labels, selected, test_features, test_labels, num_classes, config, seed)


def _train_run(
    backbone: Backbone,
    features: torch.Tensor,
    labels: np.ndarray,
    selected: Sequence[int] | np.ndarray,
    test_features: torch.Tensor,
    test_labels: np.ndarray,
    num_classes: int,
    config: FinetuneConfig,
    seed: int,
) -> RunResult:
    rows = np.asarray(selected, dtype=np.int64)
    if rows.size < 4:
        raise ValueError(f"a fine-tuning run needs at least 4 selected samples, got {rows.size}")
    y = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(y[rows], minlength=num_classes)
    present = int((counts > 0).sum())
    n_val = math.ceil(config.val_fraction * rows.size)
    # a stratified split needs two rows per class and room for every class on both sides;
    # a subset too small for that (small budgets on small pools) is split at random
    feasible = counts[counts > 0].min() >= 2 and n_val >= present and rows.size - n_val >= present
    stratify = y[rows] if feasible else None
    train_rows, val_rows = train_test_split(rows, test_size=config.val_fraction, random_state=seed, stratify=stratify)
    device = resolve_device(config.device)
    torch.manual_seed(seed)
    model = _prepare_tail(backbone, num_classes, config).to(device).to(memory_format=torch.channels_last)
    trainable = int(sum(p.numel() for p in model.parameters() if p.requires_grad))
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)
    loss_fn = nn.CrossEntropyLoss()
    x_train, y_train = _channels_last(features[train_rows]), torch.from_numpy(y[train_rows])
    x_val, y_val = _channels_last(features[val_rows]), y[val_rows]
    generator = torch.Generator().manual_seed(seed)
    use_amp = device.type == "cuda"

    best_f1, best_epoch, best_state = -1.0, 0, None
    start = time.perf_counter()
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(x_train.shape[0], generator=generator)
        for lo in range(0, order.numel(), config.batch_size):
            idx = order[lo : lo + config.batch_size]
            xb, yb = x_train[idx].to(device), y_train[idx].to(device)
            with torch.autocast(device_type=device.type, enabled=use_amp):
                loss = loss_fn(model(xb), yb)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        val_pred = _predict(model, x_val, config.batch_size, device).argmax(axis=1)
        from sklearn.metrics import f1_score

        val_f1 = float(f1_score(y_val, val_pred, average="macro", labels=np.arange(num_classes), zero_division=0))
        if val_f1 > best_f1:
            best_f1, best_epoch = val_f1, epoch + 1
            best_state = copy.deepcopy({k: v.detach().clone() for k, v in model.state_dict().items()})
    if device.type == "cuda":
        torch.cuda.synchronize()
    train_time = time.perf_counter() - start

    assert best_state is not None
    model.load_state_dict(best_state)
    metrics = classification_metrics(
        test_labels, _predict(model, _channels_last(test_features), config.batch_size, device)
    )
    return RunResult(
        accuracy=metrics["accuracy"],
        macro_f1=metrics["macro_f1"],
        auc=metrics["auc"],
        train_time_s=train_time,
        trainable_params=trainable,
        n_train=int(train_rows.size),
        n_val=int(val_rows.size),
        best_epoch=best_epoch,
        val_macro_f1=best_f1,
    )
