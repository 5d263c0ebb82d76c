"""Image sources: a uniform, lazy view of images with stable ids.

Everything that reads pixels (embedding, fine-tuning, the audit gallery) takes an
:class:`ImageSource`, so the offline default (arrays in memory) and real datasets (files on
disk) share one code path.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = ["ArrayImageSource", "FileImageSource", "ImageSource", "UnreadableImageError"]


class UnreadableImageError(OSError):
    """An image file exists but cannot be decoded."""


@runtime_checkable
class ImageSource(Protocol):
    """A sized, indexable collection of images with unique string ids."""

    @property
    def ids(self) -> np.ndarray:
        """Unique string id of every image, in order."""
        ...

    def __len__(self) -> int: ...

    def load_image(self, index: int) -> Image.Image:
        """Decode image ``index`` as an RGB PIL image."""
        ...

    def content_hash(self, index: int) -> str:
        """A hash of the stored bytes of image ``index`` (for cache keys and leak checks)."""
        ...


class ArrayImageSource:
    """Images held as a ``uint8`` array ``(N, H, W)`` (grey) or ``(N, H, W, 3)`` (RGB)."""

    def __init__(self, ids: Sequence[str] | np.ndarray, pixels: np.ndarray) -> None:
        pixels = np.asarray(pixels)
        if pixels.dtype != np.uint8 or pixels.ndim not in (3, 4):
            raise ValueError(
                f"pixels must be uint8 (N, H, W) or (N, H, W, 3); got {pixels.dtype} {pixels.shape}"
            )
        id_arr = np.asarray([str(i) for i in ids])
        if id_arr.shape[0] != pixels.shape[0]:
            raise ValueError(f"{id_arr.shape[0]} ids for {pixels.shape[0]} images")
        if len(set(id_arr.tolist())) != id_arr.shape[0]:
            raise ValueError("image ids must be unique")
        self._ids = id_arr
        self.pixels = pixels

    @property
    def ids(self) -> np.ndarray:
        return self._ids

    def __len__(self) -> int:
        return int(self.pixels.shape[0])

    def load_image(self, index: int) -> Image.Image:
        return Image.fromarray(self.pixels[index]).convert("RGB")

    def content_hash(self, index: int) -> str:
        return hashlib.sha1(np.ascontiguousarray(self.pixels[index]).tobytes()).hexdigest()

    def subset(self, indices: np.ndarray | Sequence[int]) -> ArrayImageSource:
        """A new source holding only ``indices`` (in that order)."""
        idx = np.asarray(indices, dtype=np.int64)
        return ArrayImageSource(self._ids[idx], self.pixels[idx])


class FileImageSource:
    """Images stored as files (JPEG/PNG/...), decoded lazily with PIL."""

    def __init__(self, ids: Sequence[str] | np.ndarray, paths: Sequence[str | Path]) -> None:
        id_arr = np.asarray([str(i) for i in ids])
        if id_arr.shape[0] != len(paths):
            raise ValueError(f"{id_arr.shape[0]} ids for {len(paths)} paths")
        if len(set(id_arr.tolist())) != id_arr.shape[0]:
            raise ValueError("image ids must be unique")
        self._ids = id_arr
        self.paths = [Path(p) for p in paths]

    @property
    def ids(self) -> np.ndarray:
        return self._ids

    def __len__(self) -> int:
        return len(self.paths)

    def load_image(self, index: int) -> Image.Image:
        path = self.paths[index]
        try:
            with Image.open(path) as img:
                return img.convert("RGB")
        except FileNotFoundError:
            raise FileNotFoundError(f"image file {path} (id {self._ids[index]}) is missing") from None
        except (UnidentifiedImageError, OSError) as err:
            raise UnreadableImageError(
                f"cannot decode image {path} (id {self._ids[index]}): {err}; "
                "remove it from the dataset or replace the file"
            ) from err

    def content_hash(self, index: int) -> str:
        return hashlib.sha1(self.paths[index].read_bytes()).hexdigest()

    def subset(self, indices: np.ndarray | Sequence[int]) -> FileImageSource:
        """A new source holding only ``indices`` (in that order)."""
        idx = np.asarray(indices, dtype=np.int64)
        return FileImageSource(self._ids[idx], [self.paths[i] for i in idx])
