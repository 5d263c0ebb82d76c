"""Brute-force and property tests for kairos_curate.data.corruptions."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from PIL import Image

from kairos_curate.data import corruptions as C


def _grey(n: int = 12, h: int = 16, w: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w), dtype=np.uint8)


def _rgb(n: int = 12, h: int = 16, w: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


CALLS = {
    "gaussian_noise": {"severity": 0.5},
    "motion_blur": {"length": 5, "angle": 30.0},
    "sensor_noise": {"photons": 20.0, "read_noise": 3.0},
    "jpeg_artefacts": {"quality": 10},
    "duplicate": {},
    "near_duplicate": {},
}


# ------------------------------------------------------------------ common contract


@pytest.mark.parametrize("make", [_grey, _rgb], ids=["grey", "rgb"])
@pytest.mark.parametrize("name", sorted(CALLS))
def test_only_given_rows_change_and_input_untouched(name: str, make) -> None:
    images = make()
    before = images.copy()
    indices = np.array([7, 2, 5])
    idx_before = indices.copy()
    res = C.apply_corruption(name, images, indices, np.random.default_rng(1), **CALLS[name])
    assert_array_equal(images, before)  # input not modified
    assert_array_equal(indices, idx_before)
    assert res.images is not images
    assert res.images.dtype == np.uint8 and res.images.shape == images.shape
    assert_array_equal(res.indices, [2, 5, 7])
    assert res.indices.dtype == np.int64
    untouched = np.setdiff1d(np.arange(len(images)), res.indices)
    assert_array_equal(res.images[untouched], images[untouched])
    # every corrupted row differs from its original (random textures, strong settings)
    for i in res.indices:
        assert not np.array_equal(res.images[i], images[i]), (name, i)
    assert res.kind == name
    assert all(isinstance(v, (int, float, str)) for v in res.params.values())


@pytest.mark.parametrize("name", sorted(CALLS))
def test_empty_indices_return_copy(name: str) -> None:
    images = _grey()
    res = C.apply_corruption(name, images, [], np.random.default_rng(0), **CALLS[name])
    assert_array_equal(res.images, images)
    assert res.images is not images
    assert res.indices.size == 0


@pytest.mark.parametrize("name", ["gaussian_noise", "sensor_noise", "near_duplicate"])
def test_seeded_reproducible_and_seed_dependent(name: str) -> None:
    images = _grey()
    a = C.apply_corruption(name, images, [1, 2], np.random.default_rng(5), **CALLS[name])
    b = C.apply_corruption(name, images, [2, 1], np.random.default_rng(5), **CALLS[name])
    c = C.apply_corruption(name, images, [1, 2], np.random.default_rng(6), **CALLS[name])
    assert_array_equal(a.images, b.images)  # index order does not matter
    assert not np.array_equal(a.images, c.images)


@pytest.mark.parametrize(
    "indices, match",
    [
        ([0, 12], "out of range"),
        ([-1], "out of range"),
        ([1, 1], "repeated"),
        ([[1, 2]], "1-D"),
        ([0.5], "integers"),
        (np.array([True, False]), "boolean"),
    ],
)
def test_bad_indices(indices, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        C.gaussian_noise(_grey(), indices, severity=1.0, rng=np.random.default_rng(0))


@pytest.mark.parametrize(
    "images, match",
    [
        (np.zeros((2, 4, 4), dtype=np.float32), "uint8"),
        (np.zeros((4, 4), dtype=np.uint8), "shape"),
        (np.zeros((2, 4, 4, 4), dtype=np.uint8), "shape"),
    ],
)
def test_bad_images(images, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        C.motion_blur(images, [0], length=3, angle=0)


def test_rng_required_where_random() -> None:
    with pytest.raises(ValueError, match="Generator"):
        C.gaussian_noise(_grey(), [0], severity=1.0, rng=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Generator"):
        C.sensor_noise(_grey(), [0], photons=10, read_noise=1, rng=42)  # type: ignore[arg-type]


# ------------------------------------------------------------------ pixel_std / gaussian


def test_pixel_std_brute_force() -> None:
    for images in (_grey(seed=3), _rgb(seed=4)):
        vals = [float(v) for v in images.ravel()]
        mean = sum(vals) / len(vals)
        brute = (sum((v - mean) ** 2 for v in vals) / len(vals)) ** 0.5
        assert_allclose(C.pixel_std(images), brute, rtol=1e-12)


@pytest.mark.parametrize("shape", [(3, 64, 64), (3, 64, 64, 3)])
@pytest.mark.parametrize("severity, unit", [(0.1, 90.0), (0.5, 40.0), (1.0, 20.0)])
def test_gaussian_noise_std_matches_severity(shape, severity: float, unit: float) -> None:
    # flat mid-grey image: the noise stays far from the clipping bounds (|z| < 128 / sigma)
    images = np.full(shape, 128, dtype=np.uint8)
    res = C.gaussian_noise(images, [0, 2], severity=severity, rng=np.random.default_rng(0), unit_std=unit)
    diff = res.images[[0, 2]].astype(np.float64) - 128.0
    sigma = severity * unit
    n = diff.size
    # std of the rounded noise: sqrt(sigma^2 + 1/12); sampling error ~ sigma / sqrt(2n)
    expected = np.sqrt(sigma**2 + 1.0 / 12.0)
    assert abs(diff.std() - expected) < 5 * expected / np.sqrt(2 * n)
    assert abs(diff.mean()) < 5 * expected / np.sqrt(n)
    assert_allclose(res.params["sigma"], sigma)
    assert_array_equal(res.images[1], images[1])


def test_gaussian_noise_default_unit_is_pixel_std() -> None:
    images = _grey(n=6, h=32, w=32)
    res = C.gaussian_noise(images, [0], severity=0.2, rng=np.random.default_rng(0))
    assert_allclose(res.params["unit_std"], np.std(images.astype(np.float64)))
    assert_allclose(res.params["sigma"], 0.2 * np.std(images.astype(np.float64)))


def test_gaussian_noise_brute_force_values() -> None:
    images = _rgb(n=4, h=5, w=6)
    res = C.gaussian_noise(images, [3, 1], severity=0.7, rng=np.random.default_rng(9), unit_std=50)
    rng = np.random.default_rng(9)
    noise = rng.normal(0.0, 35.0, size=(2, 5, 6, 3))  # rows in sorted order: 1, 3
    expect = images.copy()
    for j, i in enumerate([1, 3]):
        for pos in np.ndindex(5, 6, 3):
            v = round(float(images[i][pos]) + float(noise[j][pos]))
            expect[i][pos] = min(255, max(0, v))
    assert_array_equal(res.images, expect)


def test_severity_saturates_on_fashion_like_images() -> None:
    # With severity 3 the noise std (3 x pixel std) exceeds the 0-255 range; the poster levels
    # 3, 6 and 9 then give nearly the same pixel distribution - this is why milder levels exist.
    rng = np.random.default_rng(0)
    images = np.where(rng.random((50, 28, 28)) < 0.5, 0, 200).astype(np.uint8)
    unit = C.pixel_std(images)
    frac_clipped = []
    for s in (3, 6, 9):
        out = C.gaussian_noise(images, np.arange(50), severity=s, rng=rng, unit_std=unit).images
        frac_clipped.append(np.isin(out, [0, 255]).mean())
    assert min(frac_clipped) > 0.5
    mild = C.gaussian_noise(images, np.arange(50), severity=0.1, rng=rng, unit_std=unit).images
    assert np.mean(mild == 255) < 0.01


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"severity": -0.1}, "severity"),
        ({"severity": float("nan")}, "severity"),
        ({"severity": 1.0, "unit_std": 0.0}, "unit_std"),
        ({"severity": 1.0, "unit_std": -3.0}, "unit_std"),
    ],
)
def test_gaussian_noise_bad_params(kwargs, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        C.gaussian_noise(_grey(), [0], rng=np.random.default_rng(0), **kwargs)


def test_gaussian_noise_constant_images_need_unit() -> None:
    with pytest.raises(ValueError, match="unit_std"):
        C.gaussian_noise(np.full((2, 4, 4), 7, np.uint8), [0], severity=1, rng=np.random.default_rng(0))


# ------------------------------------------------------------------ motion blur


def _brute_convolve_reflect(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Direct 2-D convolution with scipy's 'reflect' (half-sample symmetric) boundary."""
    h, w = img.shape
    r = kernel.shape[0] // 2

    def refl(i: int, n: int) -> int:
        while i < 0 or i >= n:
            i = -i - 1 if i < 0 else 2 * n - i - 1
        return i

    out = np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            acc = 0.0
            for dy in range(-r, r + 1):
                for dx in range(-r, r + 1):
                    # convolution: kernel flipped relative to the offset
                    acc += kernel[r - dy, r - dx] * float(img[refl(y + dy, h), refl(x + dx, w)])
            out[y, x] = acc
    return out


@pytest.mark.parametrize("length, angle", [(3, 0.0), (4, 90.0), (5, 45.0), (6, 20.0)])
def test_motion_blur_brute_force(length: int, angle: float) -> None:
    images = _rgb(n=3, h=7, w=9, seed=2)
    res = C.motion_blur(images, [1], length=length, angle=angle)
    kernel = C.motion_blur_kernel(length, angle)
    for ch in range(3):
        expect = np.clip(np.rint(_brute_convolve_reflect(images[1, :, :, ch], kernel)), 0, 255)
        assert_array_equal(res.images[1, :, :, ch], expect.astype(np.uint8))


def test_motion_blur_kernel_shapes() -> None:
    assert_allclose(C.motion_blur_kernel(1, 33.0), [[1.0]])
    k3 = C.motion_blur_kernel(3, 0.0)
    assert_allclose(k3[1], [1 / 3, 1 / 3, 1 / 3])
    assert_allclose(k3[[0, 2]], 0.0)
    k4 = C.motion_blur_kernel(4, 0.0)
    assert_allclose(k4[2], [1 / 8, 1 / 4, 1 / 4, 1 / 4, 1 / 8])
    assert_allclose(C.motion_blur_kernel(5, 90.0), C.motion_blur_kernel(5, 0.0).T, atol=1e-12)
    assert_allclose(C.motion_blur_kernel(5, 180.0), C.motion_blur_kernel(5, 0.0), atol=1e-12)
    for length, angle in [(2, 10.0), (7, 30.0), (9, 135.0)]:
        k = C.motion_blur_kernel(length, angle)
        assert_allclose(k.sum(), 1.0)
        assert_allclose(k, k[::-1, ::-1])
        assert k.shape[0] % 2 == 1
    # 45 degrees: weight on the anti-diagonal (up-right), per image row/column convention
    k45 = C.motion_blur_kernel(3, 45.0)
    assert_allclose(np.fliplr(k45).trace(), 1.0)


@pytest.mark.parametrize("shape", [(2, 10, 12), (2, 10, 12, 3)])
def test_motion_blur_constant_image_unchanged_and_mean_kept(shape) -> None:
    images = np.full(shape, 77, dtype=np.uint8)
    res = C.motion_blur(images, [0, 1], length=7, angle=63.0)
    assert_array_equal(res.images, images)
    # on a texture the mean is kept up to border and rounding effects
    tex = _grey(n=1, h=64, w=64, seed=5)
    out = C.motion_blur(tex, [0], length=5, angle=0.0).images
    assert abs(out.astype(float).mean() - tex.astype(float).mean()) < 1.0
    assert out.astype(float).std() < tex.astype(float).std()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"length": 0, "angle": 0}, "length"),
        ({"length": 2.5, "angle": 0}, "length"),
        ({"length": 3, "angle": float("inf")}, "angle"),
    ],
)
def test_motion_blur_bad_params(kwargs, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        C.motion_blur(_grey(), [0], **kwargs)


# ------------------------------------------------------------------ sensor noise


@pytest.mark.parametrize("level, photons, read", [(128, 100.0, 2.0), (60, 30.0, 0.0), (200, 1000.0, 5.0)])
def test_sensor_noise_mean_and_variance(level: int, photons: float, read: float) -> None:
    images = np.full((2, 128, 128), level, dtype=np.uint8)
    res = C.sensor_noise(images, [1], photons=photons, read_noise=read, rng=np.random.default_rng(3))
    x = res.images[1].astype(np.float64)
    var = 255.0 * level / photons + read**2 + 1.0 / 12.0  # shot + read + rounding
    n = x.size
    assert abs(x.mean() - level) < 5 * np.sqrt(var / n)
    assert abs(x.var() - var) < 5 * var * np.sqrt(2.0 / n) + 0.5
    assert_array_equal(res.images[0], images[0])


def test_sensor_noise_black_is_only_read_noise() -> None:
    images = np.zeros((1, 8, 8), dtype=np.uint8)
    res = C.sensor_noise(images, [0], photons=5.0, read_noise=0.0, rng=np.random.default_rng(0))
    assert_array_equal(res.images, images)  # Poisson(0) = 0, no read noise


def test_sensor_noise_brute_force_values() -> None:
    images = _grey(n=3, h=4, w=5)
    res = C.sensor_noise(images, [2], photons=40.0, read_noise=1.5, rng=np.random.default_rng(4))
    rng = np.random.default_rng(4)
    k = rng.poisson(images[2].astype(np.float64) * 40.0 / 255.0)
    noise = rng.normal(0.0, 1.5, size=(1, 4, 5))[0]
    expect = np.clip(np.rint(k * 255.0 / 40.0 + noise), 0, 255).astype(np.uint8)
    assert_array_equal(res.images[2], expect)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"photons": 0.0, "read_noise": 1.0}, "photons"),
        ({"photons": 5.0, "read_noise": -1}, "read_noise"),
    ],
)
def test_sensor_noise_bad_params(kwargs, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        C.sensor_noise(_grey(), [0], rng=np.random.default_rng(0), **kwargs)


# ------------------------------------------------------------------ JPEG


@pytest.mark.parametrize("make", [_grey, _rgb], ids=["grey", "rgb"])
def test_jpeg_matches_pillow_roundtrip_and_quality_orders_error(make) -> None:
    images = make(n=2, h=32, w=32, seed=8)
    errors = []
    for q in (5, 30, 95):
        res = C.jpeg_artefacts(images, [1], quality=q)
        buf = io.BytesIO()
        Image.fromarray(images[1]).save(buf, format="JPEG", quality=q)
        expect = np.asarray(Image.open(io.BytesIO(buf.getvalue())))
        assert_array_equal(res.images[1], expect)
        errors.append(np.abs(res.images[1].astype(float) - images[1]).mean())
    assert errors[0] > errors[1] > errors[2]


@pytest.mark.parametrize("quality", [0, 96, 50.5, True])
def test_jpeg_bad_quality(quality) -> None:
    with pytest.raises(ValueError, match="quality"):
        C.jpeg_artefacts(_grey(), [0], quality=quality)


# ------------------------------------------------------------------ duplicates


@pytest.mark.parametrize("make", [_grey, _rgb], ids=["grey", "rgb"])
def test_exact_duplicates_equal_their_source(make) -> None:
    images = make()
    res = C.duplicate(images, [9, 4], sources=[0, 1])
    assert_array_equal(res.indices, [4, 9])
    assert_array_equal(res.sources, [1, 0])  # aligned with the sorted indices
    assert_array_equal(res.images[9], images[0])
    assert_array_equal(res.images[4], images[1])
    assert res.kind == "duplicate"


def test_near_duplicates_are_close_but_not_equal() -> None:
    images = np.full((4, 32, 32), 100, dtype=np.uint8)
    images[0] = _grey(n=1, h=32, w=32)[0]
    res = C.duplicate(images, [3], sources=[0], near=True, near_std=2.0, rng=np.random.default_rng(0))
    d = res.images[3].astype(float) - images[0].astype(float)
    assert not np.array_equal(res.images[3], images[0])
    inner = (images[0] > 10) & (images[0] < 245)  # away from clipping
    assert abs(d[inner].std() - np.sqrt(4.0 + 1 / 12)) < 0.3
    assert res.kind == "near_duplicate"
    assert res.params["near_std"] == 2.0


def test_duplicate_sources_drawn_from_non_targets() -> None:
    images = _grey(n=30)
    targets = np.arange(0, 30, 2)
    res = C.duplicate(images, targets, rng=np.random.default_rng(1))
    assert res.sources is not None
    assert not np.isin(res.sources, targets).any()
    for i, s in zip(res.indices, res.sources, strict=True):
        assert_array_equal(res.images[i], images[s])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sources": [1]}, "one row number per index"),
        ({"sources": [1, 40]}, "out of range"),
        ({"sources": [3, 1]}, "both a source and a target"),
        ({"sources": [1, 2], "near": True}, "Generator"),
        (
            {"sources": [1, 2], "near": True, "near_std": 0.0, "rng": np.random.default_rng(0)},
            "near_std",
        ),
        ({}, "Generator"),
    ],
)
def test_duplicate_bad_params(kwargs, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        C.duplicate(_grey(), [3, 5], **kwargs)


# ------------------------------------------------------------------ label flips


def test_uniform_flips_never_keep_label_and_are_uniform() -> None:
    classes = [0, 1, 2, 3]
    labels = np.tile(np.array(classes), 3000)
    idx = np.arange(labels.size)
    res = C.flip_labels(labels, idx, classes=classes, rng=np.random.default_rng(0))
    assert np.all(res.labels != labels)
    assert_array_equal(res.indices, idx)
    # each (old -> new) pair with new != old has probability 1/3
    for c in classes:
        new = res.labels[labels == c]
        counts = np.array([(new == d).sum() for d in classes if d != c], dtype=float)
        expected = new.size / 3
        assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))


def test_uniform_flip_only_given_rows_and_input_untouched() -> None:
    labels = np.array([0, 1, 2, 0, 1, 2, 0], dtype=np.int32)
    before = labels.copy()
    res = C.flip_labels(labels, [5, 1], classes=[0, 1, 2], rng=np.random.default_rng(3))
    assert_array_equal(labels, before)
    assert res.labels.dtype == labels.dtype
    assert_array_equal(res.indices, [1, 5])
    keep = np.setdiff1d(np.arange(7), [1, 5])
    assert_array_equal(res.labels[keep], labels[keep])
    assert np.all(res.labels[[1, 5]] != labels[[1, 5]])
    assert np.isin(res.labels, [0, 1, 2]).all()


def test_uniform_flip_of_label_outside_classes() -> None:
    labels = np.array([9, 9, 9, 9])
    res = C.flip_labels(labels, [0, 1, 2, 3], classes=[0, 1], rng=np.random.default_rng(0))
    assert np.isin(res.labels, [0, 1]).all()
    assert_array_equal(res.indices, [0, 1, 2, 3])


def test_confusable_flips_follow_map_and_report_changed_only() -> None:
    labels = np.array([0, 1, 2, 3, 0, 2])
    confusion = {0: 2, 1: 1, 2: 0}  # 1 maps to itself, 3 has no entry
    res = C.flip_labels(labels, [0, 1, 2, 3, 5], classes=[0, 1, 2, 3], mode="confusable", confusion=confusion)
    assert_array_equal(res.labels, [2, 1, 0, 3, 0, 0])
    assert_array_equal(res.indices, [0, 2, 5])
    assert res.params["requested"] == 5 and res.params["changed"] == 3
    assert res.kind == "label_flip_confusable"


def test_confusion_from_matrix() -> None:
    m = np.array([[50, 3, 9], [7, 40, 2], [1, 1, 60]])
    assert C.confusion_from_matrix(m, [10, 11, 12]) == {10: 12, 11: 10, 12: 10}
    with pytest.raises(ValueError, match="square"):
        C.confusion_from_matrix(m[:2], [10, 11, 12])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"classes": [1]}, "two distinct"),
        ({"classes": [0, 1], "mode": "nope"}, "mode"),
        ({"classes": [0, 1], "mode": "confusable"}, "confusion"),
        ({"classes": [0, 1], "mode": "confusable", "confusion": {0: 5}}, "not in classes"),
        ({"classes": [0, 1]}, "Generator"),
    ],
)
def test_flip_labels_bad_params(kwargs, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        C.flip_labels(np.array([0, 1, 0]), [0], **kwargs)


@settings(max_examples=60, deadline=None)
@given(
    labels=st.lists(st.integers(0, 4), min_size=1, max_size=40),
    n_classes=st.integers(2, 5),
    seed=st.integers(0, 2**32 - 1),
    data=st.data(),
)
def test_property_uniform_flip(labels, n_classes, seed, data) -> None:
    lab = np.array(labels)
    idx = data.draw(st.lists(st.integers(0, lab.size - 1), unique=True))
    classes = list(range(n_classes))
    res = C.flip_labels(lab, idx, classes=classes, rng=np.random.default_rng(seed))
    assert_array_equal(res.indices, np.sort(idx))
    assert np.all(res.labels[res.indices] != lab[res.indices])
    assert np.isin(res.labels[res.indices], classes).all()
    other = np.setdiff1d(np.arange(lab.size), res.indices)
    assert_array_equal(res.labels[other], lab[other])


# ------------------------------------------------------------------ choose_indices / registry


def test_choose_indices_count_exclusion_and_reproducibility() -> None:
    rng = np.random.default_rng(0)
    a = C.choose_indices(100, 0.25, rng, exclude=np.arange(50))
    assert a.size == 25 and a.min() >= 50
    assert np.unique(a).size == a.size and np.all(np.diff(a) > 0)
    assert_array_equal(a, C.choose_indices(100, 0.25, np.random.default_rng(0), exclude=np.arange(50)))
    assert C.choose_indices(10, 0.05, rng).size == 1  # half-up rounding
    assert C.choose_indices(10, 0.0, rng).size == 0
    assert_array_equal(C.choose_indices(10, 1.0, rng), np.arange(10))


def test_choose_indices_is_uniform() -> None:
    rng = np.random.default_rng(0)
    counts = np.zeros(10)
    for _ in range(2000):
        counts[C.choose_indices(10, 0.3, rng)] += 1
    assert np.all(np.abs(counts - 600) < 5 * np.sqrt(600 * 0.7))


@pytest.mark.parametrize(
    "n, fraction, exclude, match",
    [
        (10, 1.5, None, "fraction"),
        (10, -0.1, None, "fraction"),
        (-1, 0.5, None, "n must"),
        (10, 0.5, np.arange(8), "only 2 rows"),
    ],
)
def test_choose_indices_bad(n, fraction, exclude, match) -> None:
    with pytest.raises(ValueError, match=match):
        C.choose_indices(n, fraction, np.random.default_rng(0), exclude=exclude)


@settings(max_examples=50, deadline=None)
@given(n=st.integers(0, 200), fraction=st.floats(0, 1), seed=st.integers(0, 1000))
def test_property_choose_indices(n, fraction, seed) -> None:
    out = C.choose_indices(n, fraction, np.random.default_rng(seed))
    assert out.size == int(np.floor(fraction * n + 0.5))
    assert np.unique(out).size == out.size
    assert out.size == 0 or (out.min() >= 0 and out.max() < n)


def test_registry_errors() -> None:
    images = _grey()
    with pytest.raises(ValueError, match="unknown corruption"):
        C.apply_corruption("blur", images, [0], np.random.default_rng(0))
    with pytest.raises(ValueError, match="does not take"):
        C.apply_corruption("motion_blur", images, [0], np.random.default_rng(0), length=3, angle=0, sigma=1)
    with pytest.raises(ValueError, match="needs parameter"):
        C.apply_corruption("motion_blur", images, [0], np.random.default_rng(0), length=3)
    assert set(C.CORRUPTIONS) == set(CALLS)


@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from(sorted(CALLS)),
    rgb=st.booleans(),
    seed=st.integers(0, 1000),
    data=st.data(),
)
def test_property_corruptions_touch_only_indices(name, rgb, seed, data) -> None:
    images = (_rgb if rgb else _grey)(n=8, h=9, w=7, seed=seed)
    idx = data.draw(st.lists(st.integers(0, 7), unique=True, max_size=4))
    before = images.copy()
    res = C.apply_corruption(name, images, idx, np.random.default_rng(seed), **CALLS[name])
    assert_array_equal(images, before)
    assert_array_equal(res.indices, np.sort(idx))
    other = np.setdiff1d(np.arange(8), idx)
    assert_array_equal(res.images[other], images[other])


def test_near_duplicate_never_byte_identical() -> None:
    # 1x1 black images: most single draws round back to 0 and must be redrawn
    images = np.zeros((40, 1, 1), dtype=np.uint8)
    res = C.duplicate(
        images,
        np.arange(1, 40),
        sources=np.zeros(39, dtype=np.int64),
        near=True,
        rng=np.random.default_rng(0),
    )
    assert np.all(res.images[1:] != 0)
    with pytest.raises(ValueError, match="too small"):
        C.duplicate(images, [1], sources=[0], near=True, near_std=1e-3, rng=np.random.default_rng(0))


def test_pixel_std_of_images_of_different_sizes_matches_brute_force() -> None:
    from kairos_curate.data.corruptions import corrupt_each, pixel_std_of

    rng = np.random.default_rng(5)
    images = [rng.integers(0, 256, size=shape, dtype=np.uint8) for shape in [(7, 9, 3), (11, 4, 3), (5, 5)]]
    flat = np.concatenate([img.astype(np.float64).ravel() for img in images])
    np.testing.assert_allclose(pixel_std_of(images), flat.std(), rtol=1e-12)
    stacked = rng.integers(0, 256, size=(4, 6, 6), dtype=np.uint8)
    np.testing.assert_allclose(pixel_std_of(stacked), stacked.astype(np.float64).std(), rtol=1e-12)
    assert np.isclose(pixel_std_of(list(stacked)), pixel_std_of(stacked), rtol=1e-12)
    with pytest.raises(ValueError, match="no images"):
        pixel_std_of([])
    # a list is corrupted image by image; a stacked array in one call, exactly like apply_corruption
    out, changed = corrupt_each("gaussian_noise", images, [0, 2], np.random.default_rng(1), severity=1.0, unit_std=30.0)
    assert changed.tolist() == [0, 2] and out[1] is images[1]
    assert [o.shape for o in out] == [i.shape for i in images] and not np.array_equal(out[0], images[0])
    batch, rows = corrupt_each("gaussian_noise", stacked, [1, 3], np.random.default_rng(2), severity=1.0, unit_std=30.0)
    direct = C.apply_corruption(
        "gaussian_noise", stacked, [1, 3], np.random.default_rng(2), severity=1.0, unit_std=30.0
    )
    np.testing.assert_array_equal(batch, direct.images)
    assert rows.tolist() == [1, 3]
