"""Hyper-parameters of one fine-tuning run (light: the stages' parameter models import it)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_THREADS", "FinetuneConfig"]

#: Intra-op CPU threads used for training and stem features unless configured otherwise. Fixed
#: (not "all cores") so that results do not depend on the machine's core count (see
#: :mod:`kairos_curate.training.determinism`).
DEFAULT_THREADS = 2


@dataclass(frozen=True)
class FinetuneConfig:
    """Hyper-parameters of one fine-tuning run (the ``finetune`` section of ``params.yaml``)."""

    method: str = "lora"  # "lora" or "partial"
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_targets: str = "^conv_head$"
    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 3e-3
    val_fraction: float = 0.2
    device: str = "auto"
    #: Intra-op CPU threads during the run (0: leave torch's setting; not reproducible across
    #: machines with different core counts).
    threads: int = DEFAULT_THREADS

    def __post_init__(self) -> None:
        if self.method not in ("lora", "partial"):
            raise ValueError(f"finetune method must be 'lora' or 'partial', got {self.method!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.learning_rate <= 0:
            raise ValueError("finetune.epochs, batch_size and learning_rate must be positive")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError("val_fraction must be in (0, 1)")
        if self.threads < 0:
            raise ValueError(f"finetune.threads must be >= 0 (0 = leave as is), got {self.threads}")
