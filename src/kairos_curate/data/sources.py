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

__all__ = [
    "ArrayImageSource",
    "FileImageSource",
    "ImageListSource",
    "ImageSource",
    "UnreadableImageError",
    "decode_rgb",
    "image_arrays",
    "images_source",
]


class UnreadableImageError(OSError):
    """An image file exists but cannot be decoded."""


_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


def decode_rgb(image: Image.Image, where: str = "image") -> Image.Image:
    """Convert a decoded image of any mode to 8-bit RGB with the right intensity scale.

    PIL's own ``convert("RGB")`` clips 16-bit and 32-bit grey values at 255 and truncates
    floats, so a 16-bit PNG comes out nearly white and a float TIFF black. Here:

    * 16-bit grey (``I;16*``, and ``I`` from a PNG, which is 16-bit at most) is scaled by
      ``255 / 65535``;
    * 32-bit float grey (``F``) must lie in ``[0, 1]`` and is scaled by 255;
    * other 32-bit integer images and floats outside ``[0, 1]`` have no known scale and are
      refused;
    * every other mode goes through PIL's conversion (palette, CMYK, YCbCr, alpha dropped).

    Raises
    ------
    UnreadableImageError
        The mode has no defined conversion; the message names ``where`` and the fix.
    """
    mode = image.mode
    if mode in ("RGB", "L"):
        return image.convert("RGB") if mode == "L" else image
    if mode in _SIXTEEN_BIT or (mode == "I" and image.format == "PNG"):
        arr = np.asarray(image).astype(np.float64)
        if arr.min() < 0 or arr.max() > 65535:
            raise UnreadableImageError(f"{where}: 16-bit image with values outside 0..65535")
        grey = np.rint(arr * (255.0 / 65535.0)).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if mode == "F":
        arr = np.asarray(image, dtype=np.float64)
        if not np.isfinite(arr).all():
            raise UnreadableImageError(f"{where}: float image with NaN/inf pixels; repair or drop it")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 1.0:
            raise UnreadableImageError(
                f"{where}: float image with values in [{lo:.4g}, {hi:.4g}]; only floats on the "
                "[0, 1] scale have a known meaning: rescale it to [0, 1] or save it as 8-bit"
            )
        return Image.fromarray(np.rint(arr * 255.0).astype(np.uint8)).convert("RGB")
    if mode == "I":
        raise UnreadableImageError(
            f"{where}: 32-bit integer image (mode I) has no known intensity scale; save it as 8-bit or 16-bit"
        )
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as err:
        raise UnreadableImageError(
            f"{where}: cannot convert mode {mode} to RGB ({err}); save it as 8-bit RGB or grey"
        ) from err


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
    """Images held as a ``uint8`` array ``(N, H, W)`` (grey) or ``(N, H, W, 3)`` (RGB).

    ``(N, H, W, 1)`` is taken as grey.
    """

    def __init__(self, ids: Sequence[str] | np.ndarray, pixels: np.ndarray) -> None:
        pixels = np.asarray(pixels)
        if pixels.ndim == 4 and pixels.shape[-1] == 1:
            pixels = pixels[..., 0]
        if pixels.dtype != np.uint8 or pixels.ndim not in (3, 4) or (pixels.ndim == 4 and pixels.shape[-1] != 3):
            raise ValueError(f"pixels must be uint8 (N, H, W) or (N, H, W, 3); got {pixels.dtype} {pixels.shape}")
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
                img.load()
                return decode_rgb(img, f"image {path} (id {self._ids[index]})")
        except UnreadableImageError:
            raise
        except FileNotFoundError:
            raise FileNotFoundError(
                f"image file {path} (id {self._ids[index]}) is missing; restore it or remove it from the dataset"
            ) from None
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as err:
            raise UnreadableImageError(
                f"cannot decode image {path} (id {self._ids[index]}): {err}; "
                "remove it from the dataset or replace the file"
            ) from err

    def content_hash(self, index: int) -> str:
        path = self.paths[index]
        try:
            return hashlib.sha1(path.read_bytes()).hexdigest()
        except FileNotFoundError:
            raise FileNotFoundError(
                f"image file {path} (id {self._ids[index]}) is missing; restore it or remove it from the dataset"
            ) from None
        except OSError as err:  # permissions, a folder named like an image, I/O errors
            raise UnreadableImageError(
                f"cannot read image {path} (id {self._ids[index]}): {err.strerror or err}; "
                "fix its permissions or remove it from the dataset"
            ) from err

    def subset(self, indices: np.ndarray | Sequence[int]) -> FileImageSource:
        """A new source holding only ``indices`` (in that order)."""
        idx = np.asarray(indices, dtype=np.int64)
        return FileImageSource(self._ids[idx], [self.paths[i] for i in idx])


class ImageListSource:
    """Decoded images of different sizes, each a ``uint8`` array ``(H, W)`` or ``(H, W, 3)``.

    What real photographs become once loaded and corrupted in memory (the benchmark's noise
    settings): unlike :class:`ArrayImageSource` the images need not share one shape.
    """

    def __init__(self, ids: Sequence[str] | np.ndarray, images: Sequence[np.ndarray]) -> None:
        id_arr = np.asarray([str(i) for i in ids])
        if id_arr.shape[0] != len(images):
            raise ValueError(f"{id_arr.shape[0]} ids for {len(images)} images")
        if len(set(id_arr.tolist())) != id_arr.shape[0]:
            raise ValueError("image ids must be unique")
        for i, img in enumerate(images):
            arr = np.asarray(img)
            if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] == 3)):
                raise ValueError(f"image {id_arr[i]} must be uint8 (H, W) or (H, W, 3); got {arr.dtype} {arr.shape}")
        self._ids = id_arr
        self.images = [np.asarray(img) for img in images]

    @property
    def ids(self) -> np.ndarray:
        return self._ids

    def __len__(self) -> int:
        return len(self.images)

    def load_image(self, index: int) -> Image.Image:
        return Image.fromarray(self.images[index]).convert("RGB")

    def content_hash(self, index: int) -> str:
        # Same rule as ArrayImageSource (hash of the pixel bytes), so both key a cache alike.
        return hashlib.sha1(np.ascontiguousarray(self.images[index]).tobytes()).hexdigest()

    def subset(self, indices: np.ndarray | Sequence[int]) -> ImageListSource:
        """A new source holding only ``indices`` (in that order)."""
        idx = np.asarray(indices, dtype=np.int64)
        return ImageListSource(self._ids[idx], [self.images[i] for i in idx])


def image_arrays(source: ImageSource, rows: np.ndarray | Sequence[int]) -> np.ndarray | list[np.ndarray]:
    """The pixels of ``rows`` as ``uint8`` arrays, for pixel-level corruptions.

    An :class:`ArrayImageSource` gives one stacked array (its stored pixels, grey stays grey);
    any other source gives a list of decoded RGB arrays at their native sizes.
    """
    idx = np.asarray(rows, dtype=np.int64)
    if isinstance(source, ArrayImageSource):
        return source.pixels[idx]
    if isinstance(source, ImageListSource):
        return [source.images[i] for i in idx]
    return [np.asarray(source.load_image(int(i)), dtype=np.uint8) for i in idx]


def images_source(ids: Sequence[str] | np.ndarray, images: np.ndarray | Sequence[np.ndarray]) -> ImageSource:
    """An :class:`ArrayImageSource` for a stacked array, an :class:`ImageListSource` for a list."""
    if isinstance(images, np.ndarray):
        return ArrayImageSource(ids, images)
    return ImageListSource(ids, images)
