"""Pixel-level corruptions and label noise with ground truth.

Every function here is pure: it never modifies its inputs, returns a *new* array in which only
the requested rows differ from the input, and reports exactly which rows it changed. The caller
(the scenario) applies them to the pool only and keeps the returned indices and parameters in
the truth table, which selection code never sees.

Images are ``uint8`` arrays ``(N, H, W)`` (greyscale) or ``(N, H, W, 3)`` (RGB) on the usual
0-255 scale; every function accepts both.

Severity unit ("standard deviations")
-------------------------------------
The poster corrupts images with Gaussian noise at "3, 6 and 9 standard deviations". Here that
unit is defined precisely: **one severity unit is the standard deviation of all pixel values of
the clean images, on the 0-255 scale** (:func:`pixel_std`: every pixel of every image, and every
channel for RGB, pooled into one population standard deviation). A severity ``s`` adds
independent noise ``N(0, (s * unit_std)**2)`` to every pixel (and channel) before rounding and
clipping to ``[0, 255]``.

On Fashion-MNIST the pixel std is about 90, so severity 3 already means a per-pixel noise std of
about 270 - more than the whole 0-255 range; after clipping the images become almost pure
salt-and-pepper noise and severities 3, 6 and 9 look alike. Milder levels (0.1 to 1) are where
detection becomes hard; the scenario uses both. Pass ``unit_std`` explicitly (the clean pool's
:func:`pixel_std`) so that every severity level shares one unit, whatever rows are corrupted.

Registry
--------
:data:`CORRUPTIONS` maps names (as written in ``params.yaml``) to functions, and
:func:`apply_corruption` calls one by name with a Generator, so a configuration such as
``{"name": "motion_blur", "length": 7, "angle": 30}`` needs no code.
"""

from __future__ import annotations

import inspect
import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

__all__ = [
    "CORRUPTIONS",
    "CorruptionResult",
    "LabelNoiseResult",
    "apply_corruption",
    "choose_indices",
    "confusion_from_matrix",
    "corrupt_each",
    "duplicate",
    "flip_labels",
    "gaussian_noise",
    "jpeg_artefacts",
    "motion_blur",
    "motion_blur_kernel",
    "pixel_std",
    "pixel_std_of",
    "sensor_noise",
]

#: Default standard deviation (grey levels, 0-255 scale) of the perturbation that turns an exact
#: duplicate into a near duplicate.
NEAR_DUPLICATE_STD = 2.0


@dataclass(frozen=True)
class CorruptionResult:
    """The outcome of a pixel corruption.

    Attributes
    ----------
    images
        A new ``uint8`` array with the same shape as the input: a copy of the input in which
        the rows in ``indices`` are replaced by their corrupted versions. The input is never
        modified.
    indices
        ``int64``, sorted, unique: the rows that were corrupted.
    kind
        The corruption's name, e.g. ``"gaussian_noise"`` (a key of :data:`CORRUPTIONS`).
    params
        The parameters used (scalars only), for the truth table and reports.
    sources
        For duplicates only: ``sources[i]`` is the row that ``indices[i]`` was copied from;
        ``None`` for every other corruption.
    """

    images: np.ndarray
    indices: np.ndarray
    kind: str
    params: dict[str, float | int | str]
    sources: np.ndarray | None = field(default=None)


@dataclass(frozen=True)
class LabelNoiseResult:
    """The outcome of a label flip.

    Attributes
    ----------
    labels
        A new label array (same dtype and shape as the input) with the flipped rows changed.
    indices
        ``int64``, sorted: the rows whose label actually changed (a subset of the requested
        rows).
    kind
        ``"label_flip_uniform"`` or ``"label_flip_confusable"``.
    params
        Parameters used, including how many rows were requested and how many changed.
    """

    labels: np.ndarray
    indices: np.ndarray
    kind: str
    params: dict[str, float | int | str]


# --------------------------------------------------------------------------------------------
# validation helpers


def _check_images(images: np.ndarray) -> np.ndarray:
    arr = np.asarray(images)
    if arr.dtype != np.uint8:
        raise ValueError(
            f"images must be uint8 on the 0-255 scale; got dtype {arr.dtype} "
            "(convert with np.clip(x, 0, 255).astype(np.uint8))"
        )
    if not (arr.ndim == 3 or (arr.ndim == 4 and arr.shape[-1] == 3)):
        raise ValueError(f"images must have shape (N, H, W) (grey) or (N, H, W, 3) (RGB); got {arr.shape}")
    return arr


def _check_indices(indices: np.ndarray | Sequence[int], n: int, name: str = "indices") -> np.ndarray:
    """Validate row indices: 1-D integers in ``[0, n)``, no repeats. Returns them as int64."""
    idx = np.asarray(indices)
    if idx.size == 0:
        return np.zeros(0, dtype=np.int64)
    if idx.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of row numbers; got shape {idx.shape}")
    if not np.issubdtype(idx.dtype, np.integer):
        if np.issubdtype(idx.dtype, np.bool_):
            raise ValueError(f"{name} must be row numbers, not a boolean mask (use np.flatnonzero)")
        raise ValueError(f"{name} must be integers; got dtype {idx.dtype}")
    idx = idx.astype(np.int64)
    bad = idx[(idx < 0) | (idx >= n)]
    if bad.size:
        raise ValueError(
            f"{name} out of range for {n} rows: {bad[:5].tolist()}{' ...' if bad.size > 5 else ''} (valid: 0..{n - 1})"
        )
    if np.unique(idx).size != idx.size:
        raise ValueError(f"{name} contains repeated rows; each row can be corrupted once per call")
    return idx


def _check_rng(rng: Any, func: str) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise ValueError(
            f"{func} needs rng=np.random.Generator (e.g. np.random.default_rng(seed)); got {type(rng).__name__}"
        )
    return rng


def _finite_number(value: Any, name: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number; got {value!r}") from None
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite; got {value!r}")
    return out


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """Round to nearest and clip to ``[0, 255]``."""
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _result(
    images: np.ndarray,
    idx: np.ndarray,
    new_rows: np.ndarray,
    kind: str,
    params: dict[str, float | int | str],
    sources: np.ndarray | None = None,
) -> CorruptionResult:
    out = images.copy()
    order = np.argsort(idx, kind="stable")
    idx_sorted = idx[order]
    if idx.size:
        out[idx_sorted] = new_rows[order]
    src = None if sources is None else sources[order]
    return CorruptionResult(images=out, indices=idx_sorted.astype(np.int64), kind=kind, params=params, sources=src)


# --------------------------------------------------------------------------------------------
# pixel corruptions


def pixel_std(images: np.ndarray) -> float:
    """Population standard deviation of all pixel values, on the 0-255 scale.

    This is the unit of Gaussian-noise severity: every pixel of every image (and every channel
    of RGB images) is pooled into one population, and its standard deviation (``ddof=0``) is
    returned, computed in float64.

    Parameters
    ----------
    images
        ``uint8`` ``(N, H, W)`` or ``(N, H, W, 3)``.

    Returns
    -------
    float
        The standard deviation in grey levels (about 90 for Fashion-MNIST).
    """
    arr = _check_images(images)
    if arr.size == 0:
        raise ValueError("pixel_std of an empty image array is undefined")
    return float(np.std(arr, dtype=np.float64))


def gaussian_noise(
    images: np.ndarray,
    indices: np.ndarray | Sequence[int],
    *,
    severity: float,
    rng: np.random.Generator,
    unit_std: float | None = None,
) -> CorruptionResult:
    """Add i.i.d. Gaussian noise of ``severity`` "standard deviations" to the chosen rows.

    Every pixel (and channel) of each row in ``indices`` gets ``N(0, sigma**2)`` added, with
    ``sigma = severity * unit_std``; the result is rounded to the nearest integer and clipped to
    ``[0, 255]``.

    Parameters
    ----------
    images
        ``uint8`` ``(N, H, W)`` or ``(N, H, W, 3)``; not modified.
    indices
        Rows to corrupt (distinct, in ``[0, N)``).
    severity
        Noise level in units of ``unit_std`` (>= 0). The poster uses 3, 6, 9; on Fashion-MNIST
        these saturate, so milder levels such as 0.1-1 are informative too.
    rng
        Source of randomness.
    unit_std
        The unit, in grey levels. Defaults to :func:`pixel_std` of ``images`` (all rows of the
        array passed in). Pass the clean pool's value explicitly to keep one unit across calls.

    Returns
    -------
    CorruptionResult
        ``params`` holds ``severity``, ``unit_std`` and ``sigma`` (grey levels).
    """
    arr = _check_images(images)
    idx = np.sort(_check_indices(indices, arr.shape[0]))
    rng = _check_rng(rng, "gaussian_noise")
    severity = _finite_number(severity, "severity")
    if severity < 0:
        raise ValueError(f"severity must be >= 0 (in units of the pixel std); got {severity}")
    if unit_std is None:
        unit = pixel_std(arr)
        if unit == 0:
            raise ValueError(
                "the images are constant (pixel std 0), so a severity unit cannot be derived "
                "from them; pass unit_std (grey levels) explicitly"
            )
    else:
        unit = _finite_number(unit_std, "unit_std")
        if unit <= 0:
            raise ValueError(f"unit_std must be > 0 grey levels; got {unit_std}")
    sigma = severity * unit
    rows = arr[idx].astype(np.float64)
    rows += rng.normal(0.0, sigma, size=rows.shape) if sigma > 0 else 0.0
    params: dict[str, float | int | str] = {
        "severity": severity,
        "unit_std": unit,
        "sigma": sigma,
    }
    return _result(arr, idx, _to_uint8(rows), "gaussian_noise", params)


def motion_blur_kernel(length: int, angle: float) -> np.ndarray:
    """The normalised line kernel used by :func:`motion_blur`.

    The kernel models a camera moving ``length`` pixels in a straight line at ``angle`` degrees
    counter-clockwise from the horizontal (0 = horizontal blur, 90 = vertical), centred on the
    kernel's middle pixel: the weight of each pixel is the length of the segment
    ``[-length/2, length/2]`` that falls inside that pixel's unit square, normalised to sum 1.
    The length is measured with ``64 * length`` equally spaced midpoint samples, which is exact
    for horizontal and vertical blurs (length 3 gives ``[1/3, 1/3, 1/3]``, length 4 gives
    ``[1/8, 1/4, 1/4, 1/4, 1/8]``) and within ``1/64`` of a pixel otherwise. The kernel is square
    with odd side ``2 * ceil(length/2 - 1/2) + 1``, point-symmetric, and sums to 1 (so flat
    regions keep their value); ``length == 1`` gives the identity.

    Parameters
    ----------
    length
        Blur length in pixels (>= 1).
    angle
        Direction in degrees.

    Returns
    -------
    numpy.ndarray
        float64 ``(k, k)`` kernel.
    """
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)):
        raise ValueError(f"length must be an integer number of pixels; got {length!r}")
    length = int(length)
    if length < 1:
        raise ValueError(f"length must be >= 1 pixel (1 = no blur); got {length}")
    angle = _finite_number(angle, "angle")
    radius = math.ceil(length / 2.0 - 0.5)
    size = 2 * radius + 1
    n_samples = 64 * length
    t = -length / 2.0 + (np.arange(n_samples) + 0.5) * (length / n_samples)
    theta = math.radians(angle)
    # x to the right, y up; the row index grows downwards. Rounding to 9 decimals removes
    # floating-point dust such as cos(90 deg) = 6e-17 before picking the nearest pixel.
    cols = np.rint(np.round(radius + t * math.cos(theta), 9)).astype(np.int64)
    rows = np.rint(np.round(radius - t * math.sin(theta), 9)).astype(np.int64)
    kernel = np.zeros((size, size), dtype=np.float64)
    np.add.at(kernel, (np.clip(rows, 0, size - 1), np.clip(cols, 0, size - 1)), 1.0)
    kernel = 0.5 * (kernel + kernel[::-1, ::-1])
    return kernel / kernel.sum()


def motion_blur(
    images: np.ndarray,
    indices: np.ndarray | Sequence[int],
    *,
    length: int,
    angle: float,
    rng: np.random.Generator | None = None,
) -> CorruptionResult:
    """Linear motion blur of ``length`` pixels at ``angle`` degrees.

    Each chosen image (each channel separately) is convolved with :func:`motion_blur_kernel`;
    borders are handled by mirror reflection (``scipy.ndimage`` mode ``"reflect"``), so a
    constant image stays constant. The result is rounded and clipped to ``uint8``.

    Parameters
    ----------
    images
        ``uint8`` ``(N, H, W)`` or ``(N, H, W, 3)``; not modified.
    indices
        Rows to blur.
    length
        Blur length in pixels (>= 1; 1 leaves the image unchanged).
    angle
        Direction in degrees counter-clockwise from the horizontal.
    rng
        Unused (the blur is deterministic); accepted so that every corruption can be called
        through :func:`apply_corruption` with the same arguments.

    Returns
    -------
    CorruptionResult
        ``params`` holds ``length`` and ``angle``.
    """
    arr = _check_images(images)
    idx = np.sort(_check_indices(indices, arr.shape[0]))
    kernel = motion_blur_kernel(length, angle)
    rows = arr[idx].astype(np.float64)
    if idx.size:
        k = kernel[None, :, :, None] if arr.ndim == 4 else kernel[None, :, :]
        rows = ndimage.convolve(rows, k, mode="reflect")
    params: dict[str, float | int | str] = {"length": int(length), "angle": float(angle)}
    return _result(arr, idx, _to_uint8(rows), "motion_blur", params)


def sensor_noise(
    images: np.ndarray,
    indices: np.ndarray | Sequence[int],
    *,
    photons: float,
    read_noise: float,
    rng: np.random.Generator,
) -> CorruptionResult:
    """Camera sensor noise: Poisson shot noise plus Gaussian read noise.

    A pixel of value ``x`` (0-255) is treated as an expected photon count
    ``lam = photons * x / 255``; the observed count ``K ~ Poisson(lam)`` is scaled back
    (``K * 255 / photons``) and Gaussian read noise ``N(0, read_noise**2)`` (grey levels) is
    added, then the value is rounded and clipped. The noise is signal dependent: its variance at
    level ``x`` is ``255 * x / photons + read_noise**2`` (before clipping); fewer photons means
    more noise (a darker scene or a smaller sensor).

    Parameters
    ----------
    images
        ``uint8`` ``(N, H, W)`` or ``(N, H, W, 3)``; not modified.
    indices
        Rows to corrupt.
    photons
        Expected photon count of a full-scale (255) pixel (> 0); e.g. 10 is very noisy, 1000
        mild.
    read_noise
        Standard deviation of the additive read noise in grey levels (>= 0).
    rng
        Source of randomness.

    Returns
    -------
    CorruptionResult
        ``params`` holds ``photons`` and ``read_noise``.
    """
    arr = _check_images(images)
    idx = np.sort(_check_indices(indices, arr.shape[0]))
    rng = _check_rng(rng, "sensor_noise")
    photons = _finite_number(photons, "photons")
    read_noise = _finite_number(read_noise, "read_noise")
    if photons <= 0:
        raise ValueError(f"photons (expected count at full scale) must be > 0; got {photons}")
    if read_noise < 0:
        raise ValueError(f"read_noise (grey levels) must be >= 0; got {read_noise}")
    lam = arr[idx].astype(np.float64) * (photons / 255.0)
    rows = rng.poisson(lam).astype(np.float64) * (255.0 / photons)
    if read_noise > 0:
        rows += rng.normal(0.0, read_noise, size=rows.shape)
    params: dict[str, float | int | str] = {"photons": photons, "read_noise": read_noise}
    return _result(arr, idx, _to_uint8(rows), "sensor_noise", params)


def jpeg_artefacts(
    images: np.ndarray,
    indices: np.ndarray | Sequence[int],
    *,
    quality: int,
    rng: np.random.Generator | None = None,
) -> CorruptionResult:
    """Compress the chosen rows as JPEG at ``quality`` and decode them again.

    Uses Pillow's encoder with its defaults (baseline JPEG; 4:2:0 chroma subsampling for RGB,
    a single luminance channel for grey images), so the artefacts are the familiar 8x8 block
    and ringing artefacts of low-quality JPEG.

    Parameters
    ----------
    images
        ``uint8`` ``(N, H, W)`` or ``(N, H, W, 3)``; not modified.
    indices
        Rows to compress.
    quality
        JPEG quality, an integer in ``1..95`` (lower = stronger artefacts; Pillow advises
        against values above 95).
    rng
        Unused (JPEG is deterministic); accepted for :func:`apply_corruption`.

    Returns
    -------
    CorruptionResult
        ``params`` holds ``quality``.
    """
    arr = _check_images(images)
    idx = np.sort(_check_indices(indices, arr.shape[0]))
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)):
        raise ValueError(f"quality must be an integer in 1..95; got {quality!r}")
    if not 1 <= int(quality) <= 95:
        raise ValueError(f"quality must be in 1..95 (lower = stronger artefacts); got {quality}")
    quality = int(quality)
    rows = np.empty((idx.size, *arr.shape[1:]), dtype=np.uint8)
    mode = "RGB" if arr.ndim == 4 else "L"
    for j, i in enumerate(idx):
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(arr[i])).save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        with Image.open(buf) as img:
            rows[j] = np.asarray(img.convert(mode), dtype=np.uint8)
    params: dict[str, float | int | str] = {"quality": quality}
    return _result(arr, idx, rows, "jpeg_artefacts", params)


def duplicate(
    images: np.ndarray,
    indices: np.ndarray | Sequence[int],
    *,
    sources: np.ndarray | Sequence[int] | None = None,
    near: bool = False,
    near_std: float = NEAR_DUPLICATE_STD,
    rng: np.random.Generator | None = None,
) -> CorruptionResult:
    """Overwrite rows with copies of other rows (exact or near duplicates).

    Row ``indices[i]`` becomes a copy of row ``sources[i]`` of the *input*. With ``near=True``
    the copy is perturbed by i.i.d. Gaussian noise of standard deviation ``near_std`` grey levels
    (default 2.0, i.e. under 1% of the 0-255 range; rounded and clipped), which keeps it
    visually identical to its source but breaks byte-level equality, as a re-encoded or
    re-uploaded image would. A perturbed copy that rounds back to its source exactly is
    redrawn, so a near duplicate never equals its source byte for byte.

    Parameters
    ----------
    images
        ``uint8`` ``(N, H, W)`` or ``(N, H, W, 3)``; not modified.
    indices
        Rows to overwrite.
    sources
        One source row per entry of ``indices`` (repeats allowed). No source may itself be in
        ``indices`` (a duplicate's source stays an original). If ``None``, sources are drawn
        uniformly with replacement from the rows not in ``indices`` using ``rng``.
    near
        Perturb the copies slightly (needs ``rng``).
    near_std
        Standard deviation of the near-duplicate perturbation in grey levels (> 0).
    rng
        Needed when ``near`` is true or ``sources`` is ``None``.

    Returns
    -------
    CorruptionResult
        ``kind`` is ``"duplicate"`` or ``"near_duplicate"``; ``sources`` is aligned with the
        sorted ``indices``; ``params`` holds ``near_std`` (0 for exact copies).
    """
    arr = _check_images(images)
    n = arr.shape[0]
    idx = _check_indices(indices, n)
    if sources is None:
        idx = np.sort(idx)
        rng = _check_rng(rng, "duplicate (with sources=None)")
        pool = np.setdiff1d(np.arange(n, dtype=np.int64), idx)
        if idx.size and pool.size == 0:
            raise ValueError("every row is in indices, so no row is left to duplicate from")
        src = pool[rng.integers(0, pool.size, size=idx.size)] if idx.size else np.zeros(0, dtype=np.int64)
    else:
        src_arr = np.asarray(sources)
        if src_arr.size == 0:
            src_arr = np.zeros(0, dtype=np.int64)
        if src_arr.shape != (idx.size,):
            raise ValueError(
                f"sources must have one row number per index: {idx.size} indices, sources of shape {src_arr.shape}"
            )
        if src_arr.size and not np.issubdtype(src_arr.dtype, np.integer):
            raise ValueError(f"sources must be integers; got dtype {src_arr.dtype}")
        src = src_arr.astype(np.int64)
        bad = src[(src < 0) | (src >= n)]
        if bad.size:
            raise ValueError(f"sources out of range for {n} rows: {bad[:5].tolist()}")
        clash = np.intersect1d(src, idx)
        if clash.size:
            raise ValueError(
                f"rows {clash[:5].tolist()} are both a source and a target; a duplicate's "
                "source must stay an original row"
            )
    order = np.argsort(idx, kind="stable")
    idx, src = idx[order], src[order]
    rows = arr[src].copy()
    params: dict[str, float | int | str] = {"near_std": 0.0}
    kind = "duplicate"
    if near:
        rng = _check_rng(rng, "duplicate(near=True)")
        near_std = _finite_number(near_std, "near_std")
        if near_std <= 0:
            raise ValueError(f"near_std must be > 0 grey levels; got {near_std}")
        clean = rows
        rows = _to_uint8(clean.astype(np.float64) + rng.normal(0.0, near_std, size=rows.shape))
        # A tiny or saturated image can come out byte-identical to its source; redraw those.
        for _ in range(100):
            same = np.flatnonzero(np.all((rows == clean).reshape(rows.shape[0], int(np.prod(rows.shape[1:]))), axis=1))
            if same.size == 0:
                break
            noise = rng.normal(0.0, near_std, size=(same.size, *rows.shape[1:]))
            rows[same] = _to_uint8(clean[same].astype(np.float64) + noise)
        else:
            raise ValueError(f"near_std={near_std} is too small to change these images after rounding; raise near_std")
        params = {"near_std": near_std}
        kind = "near_duplicate"
    return _result(arr, idx, rows, kind, params, sources=src)


def _near_duplicate(
    images: np.ndarray,
    indices: np.ndarray | Sequence[int],
    *,
    sources: np.ndarray | Sequence[int] | None = None,
    near_std: float = NEAR_DUPLICATE_STD,
    rng: np.random.Generator | None = None,
) -> CorruptionResult:
    """:func:`duplicate` with ``near=True`` (registry entry ``"near_duplicate"``)."""
    return duplicate(images, indices, sources=sources, near=True, near_std=near_std, rng=rng)


# --------------------------------------------------------------------------------------------
# label noise


def flip_labels(
    labels: np.ndarray | Sequence[int],
    indices: np.ndarray | Sequence[int],
    *,
    classes: Sequence[int],
    mode: str = "uniform",
    confusion: Mapping[int, int] | None = None,
    rng: np.random.Generator | None = None,
) -> LabelNoiseResult:
    """Flip the labels of the chosen rows.

    Modes
    -----
    ``"uniform"``
        The new label is drawn uniformly from ``classes`` minus the current label (so it always
        changes). A row whose current label is not in ``classes`` (e.g. an off-task image)
        gets a label drawn uniformly from all of ``classes``.
    ``"confusable"``
        The new label is ``confusion[current]`` (e.g. each class's most-confused class, see
        :func:`confusion_from_matrix`). Rows whose label is not a key of ``confusion``, or maps
        to itself, are left unchanged and are *not* reported in ``indices``
        (``params["changed"]`` < ``params["requested"]`` shows it).

    Parameters
    ----------
    labels
        1-D integer labels; not modified.
    indices
        Rows to flip.
    classes
        The label space new labels are drawn from (at least two distinct values).
    mode
        ``"uniform"`` or ``"confusable"``.
    confusion
        Required for ``"confusable"``: current label -> new label (targets must be in
        ``classes``).
    rng
        Required for ``"uniform"``.

    Returns
    -------
    LabelNoiseResult
        Only rows whose label actually changed are in ``indices``.
    """
    lab = np.asarray(labels)
    if lab.ndim != 1 or (lab.size and not np.issubdtype(lab.dtype, np.integer)):
        raise ValueError(f"labels must be a 1-D integer array; got {lab.dtype} {lab.shape}")
    idx = np.sort(_check_indices(indices, lab.shape[0]))
    cls = np.unique(np.asarray(list(classes)))
    if cls.size < 2:
        raise ValueError(f"classes must hold at least two distinct labels; got {list(classes)}")
    if not np.issubdtype(cls.dtype, np.integer):
        raise ValueError(f"classes must be integers; got {list(classes)}")
    out = lab.copy()
    current = lab[idx]
    if mode == "uniform":
        rng = _check_rng(rng, "flip_labels(mode='uniform')")
        new = np.empty_like(current)
        in_cls = np.isin(current, cls)
        # In-class rows: draw among the other classes via an offset that skips the current one.
        if in_cls.any():
            pos = np.searchsorted(cls, current[in_cls])
            offset = rng.integers(1, cls.size, size=pos.size)
            new[in_cls] = cls[(pos + offset) % cls.size]
        if (~in_cls).any():
            new[~in_cls] = cls[rng.integers(0, cls.size, size=int((~in_cls).sum()))]
        kind = "label_flip_uniform"
    elif mode == "confusable":
        if confusion is None:
            raise ValueError("mode='confusable' needs confusion={label: most_confused_label}")
        targets = np.asarray(list(confusion.values()))
        missing = sorted(set(targets.tolist()) - set(cls.tolist()))
        if missing:
            raise ValueError(f"confusion maps to labels {missing} that are not in classes")
        new = np.array([confusion.get(int(c), int(c)) for c in current], dtype=lab.dtype)
        kind = "label_flip_confusable"
    else:
        raise ValueError(f"mode must be 'uniform' or 'confusable'; got {mode!r}")
    changed = new != current
    out[idx[changed]] = new[changed]
    params: dict[str, float | int | str] = {
        "mode": mode,
        "requested": int(idx.size),
        "changed": int(changed.sum()),
    }
    return LabelNoiseResult(labels=out, indices=idx[changed].astype(np.int64), kind=kind, params=params)


def confusion_from_matrix(matrix: np.ndarray, classes: Sequence[int]) -> dict[int, int]:
    """Map every class to its most-confused other class.

    Parameters
    ----------
    matrix
        Square confusion matrix ``(C, C)``: ``matrix[i, j]`` counts (or rates) samples of true
        class ``classes[i]`` predicted as ``classes[j]``.
    classes
        The class label of each row/column.

    Returns
    -------
    dict[int, int]
        ``classes[i] -> classes[argmax_{j != i} matrix[i, j]]`` (ties: the lowest ``j``).
    """
    m = np.asarray(matrix, dtype=np.float64)
    cls = list(classes)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] != len(cls):
        raise ValueError(f"matrix must be square with one row per class ({len(cls)}); got shape {m.shape}")
    if len(cls) < 2:
        raise ValueError("need at least two classes")
    off = m.copy()
    np.fill_diagonal(off, -np.inf)
    best = np.argmax(off, axis=1)
    return {int(cls[i]): int(cls[j]) for i, j in enumerate(best)}


# --------------------------------------------------------------------------------------------
# sampling and registry


def choose_indices(
    n: int,
    fraction: float,
    rng: np.random.Generator,
    *,
    exclude: np.ndarray | Sequence[int] | None = None,
) -> np.ndarray:
    """Choose ``round(fraction * n)`` distinct rows uniformly at random, avoiding ``exclude``.

    The count is a fraction of *all* ``n`` rows (so 10% of the pool means the same count
    whatever was excluded); rows in ``exclude`` (e.g. already corrupted) are never chosen.
    Rounding is half-up.

    Parameters
    ----------
    n
        Number of rows (>= 0).
    fraction
        In ``[0, 1]``.
    rng
        Source of randomness.
    exclude
        Rows that must not be chosen.

    Returns
    -------
    numpy.ndarray
        Sorted ``int64`` row numbers.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer; got {n!r}")
    fraction = _finite_number(fraction, "fraction")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1]; got {fraction}")
    rng = _check_rng(rng, "choose_indices")
    k = math.floor(fraction * int(n) + 0.5)
    available = np.arange(int(n), dtype=np.int64)
    if exclude is not None:
        ex = np.asarray(exclude)
        if ex.size:
            if not np.issubdtype(ex.dtype, np.integer):
                raise ValueError(f"exclude must be integer row numbers; got dtype {ex.dtype}")
            available = np.setdiff1d(available, ex.astype(np.int64))
    if k > available.size:
        raise ValueError(
            f"cannot choose {k} rows (fraction {fraction} of {n}): only {available.size} rows "
            "are left after exclude; lower the fraction"
        )
    chosen = rng.choice(available, size=k, replace=False)
    return np.sort(chosen).astype(np.int64)


#: Name -> corruption function, for configuration-driven use (see :func:`apply_corruption`).
CORRUPTIONS: dict[str, Callable[..., CorruptionResult]] = {
    "gaussian_noise": gaussian_noise,
    "motion_blur": motion_blur,
    "sensor_noise": sensor_noise,
    "jpeg_artefacts": jpeg_artefacts,
    "duplicate": duplicate,
    "near_duplicate": _near_duplicate,
}


def apply_corruption(
    name: str,
    images: np.ndarray,
    indices: np.ndarray | Sequence[int],
    rng: np.random.Generator,
    **params: Any,
) -> CorruptionResult:
    """Apply the corruption registered as ``name`` with keyword ``params``.

    Parameters
    ----------
    name
        A key of :data:`CORRUPTIONS`.
    images, indices
        As for every corruption.
    rng
        Passed to the corruption (deterministic ones ignore it).
    **params
        The corruption's keyword parameters, e.g. ``severity=0.5`` or ``length=7, angle=30``.

    Returns
    -------
    CorruptionResult
    """
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; choose one of {sorted(CORRUPTIONS)}")
    func = CORRUPTIONS[name]
    accepted = {
        p.name
        for p in inspect.signature(func).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "rng"
    }
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ValueError(f"corruption {name!r} does not take parameter(s) {unknown}; it takes {sorted(accepted)}")
    required = {
        p.name
        for p in inspect.signature(func).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is inspect.Parameter.empty and p.name != "rng"
    }
    missing = sorted(required - set(params))
    if missing:
        raise ValueError(f"corruption {name!r} needs parameter(s) {missing}")
    return func(images, indices, rng=rng, **params)


def corrupt_each(
    name: str,
    images: np.ndarray | Sequence[np.ndarray],
    indices: np.ndarray | Sequence[int],
    rng: np.random.Generator,
    **params: Any,
) -> tuple[np.ndarray | list[np.ndarray], np.ndarray]:
    """Apply a pixel corruption to a stacked array or to a list of images of different sizes.

    A stacked ``uint8`` array goes through :func:`apply_corruption` in one call (so results
    match it exactly); a list (real photographs at their native sizes) is corrupted image by
    image, each as a batch of one, in ascending index order with the same generator.

    Returns
    -------
    (images, changed)
        The new images (same container type as the input; unchanged rows are the input's
        objects) and the sorted indices that were corrupted.
    """
    if isinstance(images, np.ndarray):
        res = apply_corruption(name, images, indices, rng, **params)
        return res.images, res.indices
    out = list(images)
    idx = np.sort(_check_indices(indices, len(out)))
    for i in idx:
        out[int(i)] = apply_corruption(name, np.asarray(out[int(i)])[None], [0], rng, **params).images[0]
    return out, idx.astype(np.int64)


def pixel_std_of(images: np.ndarray | Sequence[np.ndarray]) -> float:
    """:func:`pixel_std` of a stacked array, or of all pixels of a list of images pooled."""
    if isinstance(images, np.ndarray):
        return pixel_std(images)
    if not images:
        raise ValueError("pixel_std of no images is undefined")
    # Exact value counts instead of one huge float64 array: photos hold ~0.5 M values each.
    counts = np.zeros(256, dtype=np.int64)
    for img in images:
        counts += np.bincount(_check_images(np.asarray(img)[None]).ravel(), minlength=256)
    levels = np.arange(256, dtype=np.float64)
    n = counts.sum()
    mean = float(counts @ levels) / n
    return float(np.sqrt(max(float(counts @ (levels - mean) ** 2) / n, 0.0)))
