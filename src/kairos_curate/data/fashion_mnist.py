"""Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package (the offline default images).

The package installs gzipped IDX files under ``/usr/share/datasets/fashion-mnist``; ``make setup``
installs it. Another folder holding the same four files can be given instead.
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "CLASS_NAMES",
    "DEFAULT_DIR",
    "FashionMNIST",
    "load_fashion_mnist",
]

DEFAULT_DIR = Path(os.environ.get("KAIROS_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "t10k": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


@dataclass(frozen=True)
class FashionMNIST:
    """One split of Fashion-MNIST: ``pixels`` uint8 ``(N, 28, 28)``, ``labels`` int64 ``(N,)``."""

    split: str
    pixels: np.ndarray
    labels: np.ndarray


def _read_idx(path: Path, expected_magic: int) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    magic = struct.unpack(">I", data[:4])[0]
    if magic != expected_magic:
        raise ValueError(f"{path} is not an IDX file of the expected type (magic {magic:#x})")
    ndim = magic & 0xFF
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: expected {int(np.prod(shape))} values, got {array.size}")
    return array.reshape(shape)


def load_fashion_mnist(split: str, root: str | os.PathLike[str] | None = None) -> FashionMNIST:
    """Load the ``"train"`` (60k) or ``"t10k"`` (10k) split from gzipped IDX files.

    Raises:
        FileNotFoundError: the files are absent; the message says how to install them.
    """
    if split not in _FILES:
        raise ValueError(f"split must be one of {sorted(_FILES)}, got {split!r}")
    folder = Path(root) if root is not None else DEFAULT_DIR
    image_file, label_file = (folder / name for name in _FILES[split])
    for path in (image_file, label_file):
        if not path.exists():
            raise FileNotFoundError(
                f"Fashion-MNIST file {path} not found. Install the offline default images with "
                "`make setup` (it runs `apt-get install dataset-fashion-mnist`), or point "
                "`scenario.fashion_mnist.fashion_mnist_dir` in params.yaml (or $KAIROS_FASHION_MNIST_DIR) at a "
                "folder holding the four *-ubyte.gz files."
            )
    pixels = _read_idx(image_file, 0x00000803)
    labels = _read_idx(label_file, 0x00000801).astype(np.int64)
    if pixels.shape[0] != labels.shape[0]:
        raise ValueError(f"{image_file} and {label_file} hold different numbers of samples")
    return FashionMNIST(split=split, pixels=pixels, labels=labels)
