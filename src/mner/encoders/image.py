"""The image encoder: a (by default frozen) vision backbone turned into region vectors.

Backbones, chosen by name and, for transformers checkpoints, by the config's ``model_type``:

=====================  ==========================================  ==============================
name / model_type      regions (``tokens``)                        ``pooled``
=====================  ==========================================  ==============================
``efficientnet-lite0`` ``extract_features`` grid: 7x7 x 1280 @224  mean of the grid
``resnet``             ``last_hidden_state`` grid (7x7 x 2048 for   pooler output (grid average)
                       ResNet-152 @224, MAF's regions)
``vit``                patch tokens                                the CLS token state
``clip`` (full model)  patch tokens of the vision tower             ``pooler_output`` (CLS after
or ``clip_vision_model``                                           the post layer norm)
=====================  ==========================================  ==============================

Preprocessing (mean, std, size) comes from the checkpoint's ``preprocessor_config.json`` when it
has one (found through transformers' file resolution, so hub names and folders both work), else
ImageNet values; :meth:`ImageEncoder.eval_transform` / :meth:`ImageEncoder.train_transform` build the
matching PIL transforms.

Fast inference (:meth:`ImageEncoder.fuse_for_inference`, turned on by :class:`~mner.pipeline.Pipeline`):
a frozen convolutional backbone (EfficientNet-Lite, ResNet) runs, in eval mode without gradients, as a
copy whose batch norms are folded into the convolutions before them (torch's ``fuse_conv_bn_eval``)
and whose tensors are channels-last (oneDNN's fast layout for convolutions on the CPU): about 2x
faster for EfficientNet-Lite0 on batches of 32 images at one thread (2.05x in
``docs/benchmarks/tagging.md``), features within 1e-4 of the plain backbone's.
The copy is not part of the module (``state_dict`` and checkpoints hold the plain weights), is
rebuilt when a weight changes (``load_state_dict``), and is never used in training mode, with
gradients, or for a trainable backbone; the encoder's ``fingerprint`` names it, so cached features
of the two paths never mix.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

from mner.errors import MNERError
from mner.encoders.features import VisualFeatures
from mner.encoders.fingerprint import WeightsDigest
from mner.encoders.frozen import FrozenBackboneMixin
from mner.encoders.offline import IMAGE_ALIASES, efficientnet_lite0_weights, efficientnet_module
from mner.encoders.transforms import IMAGENET_MEAN, IMAGENET_STD, EvalTransform, TrainTransform

__all__ = ["ImageEncoderConfig", "ImageEncoder", "Preprocessing", "SUPPORTED_MODEL_TYPES", "fold_batch_norms",
           "fuse_image_encoders"]

SUPPORTED_MODEL_TYPES = ("resnet", "vit", "clip", "clip_vision_model")
_EFFICIENTNET_LITE = tuple(f"efficientnet-lite{i}" for i in range(5))
_PIL_RESAMPLE_NAMES = {2: "bilinear", 3: "bicubic"}


@dataclass
class ImageEncoderConfig:
    """How to build an :class:`ImageEncoder`.

    Attributes:
        name: ``"efficientnet-lite0"`` (offline default), or a transformers ResNet / ViT / CLIP
            checkpoint by hub name (``"microsoft/resnet-152"``, ``"google/vit-base-patch16-224"``,
            ``"openai/clip-vit-base-patch32"``) or folder.
        image_size: input side in pixels; ``None`` = the model's own (224 for all the above).
        pretrained: load the weights; False builds the same architecture randomly initialised
            (tests; a transformers name still needs its ``config.json``).
        trainable: fine-tune the backbone. False (default) freezes it: no gradient, always in eval
            mode (batch-norm statistics never move), which also makes its features cacheable.
    """

    name: str = "efficientnet-lite0"
    image_size: int | None = None
    pretrained: bool = True
    trainable: bool = False

    def __post_init__(self) -> None:
        if self.image_size is not None and self.image_size < 8:
            raise ValueError(f"ImageEncoderConfig.image_size must be >= 8 pixels, not {self.image_size}")


@dataclass(frozen=True)
class Preprocessing:
    """What the backbone expects of its input."""

    image_size: int = 224
    resize: int | None = None
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bicubic"


def _side(value: Any) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, Mapping):
        for key in ("shortest_edge", "height"):
            if value.get(key):
                return int(value[key])
    return None


def read_preprocessing(name: str, default_size: int, image_size: int | None) -> Preprocessing:
    """Preprocessing of a transformers checkpoint from its ``preprocessor_config.json`` (if any)."""
    from transformers.utils import cached_file

    try:
        path = cached_file(name, "preprocessor_config.json", _raise_exceptions_for_missing_entries=False,
                           _raise_exceptions_for_connection_errors=False)
    except (OSError, ValueError):
        path = None
    if path is None:
        size = image_size or default_size
        return Preprocessing(image_size=size)
    with open(path, encoding="utf-8") as handle:
        cfg = json.load(handle)
    size_cfg = cfg.get("size")
    crop = _side(cfg.get("crop_size")) if cfg.get("do_center_crop", True) else None
    native = crop or _side(size_cfg) or default_size
    if isinstance(size_cfg, Mapping) and size_cfg.get("shortest_edge"):
        resize = int(size_cfg["shortest_edge"])
        if cfg.get("crop_pct"):
            resize = int(round(resize / float(cfg["crop_pct"])))
    else:
        resize = native  # (height, width) resize: no margin to crop
    size = image_size or native
    if size != native:
        resize = int(round(resize * size / native))
    return Preprocessing(
        image_size=size,
        resize=max(resize, size),
        mean=tuple(float(v) for v in cfg.get("image_mean") or IMAGENET_MEAN),
        std=tuple(float(v) for v in cfg.get("image_std") or IMAGENET_STD),
        interpolation=_PIL_RESAMPLE_NAMES.get(cfg.get("resample"), "bicubic"),
    )


@contextlib.contextmanager
def _quiet_transformers():
    """Silence transformers' load report (a CLIP checkpoint's text tower is expected to go unused)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


class ImageEncoder(FrozenBackboneMixin, nn.Module):
    """Region features of images (see the module docstring).

    ``forward(pixel_values (B, 3, S, S)) -> VisualFeatures(tokens (B, R, D), mask (B, R), pooled (B, D))``.
    """

    backbone_attr = "backbone"

    def __init__(self, config: ImageEncoderConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ImageEncoderConfig()
        self._digest = WeightsDigest()
        self._fuse = False
        self._fused: tuple[tuple, nn.Module] | None = None  # (weights' storage and versions, folded copy)
        name = config.name
        if name.lower().startswith("efficientnet-"):
            self.kind = "efficientnet"
            self.backbone, self.preprocessing, self.output_dim = self._load_efficientnet(config)
        else:
            self.backbone, self.preprocessing, self.output_dim = self._load_transformers(config)
        self.freeze_backbone()

    # ----------------------------------------------------------------------------------------- build
    def _load_efficientnet(self, config: ImageEncoderConfig):
        name = config.name.lower()
        if name not in _EFFICIENTNET_LITE:
            raise MNERError(f"unknown EfficientNet {config.name!r}; this encoder knows {list(_EFFICIENTNET_LITE)}")
        if config.pretrained and name not in IMAGE_ALIASES:
            raise MNERError(f"no offline weights for {config.name!r}: only efficientnet-lite0 ships them; "
                             "use pretrained=False for a random one")
        module = efficientnet_module()
        size = config.image_size or int(module.EfficientNet.get_image_size(name))
        model = module.EfficientNet.from_name(name, image_size=size)
        if config.pretrained:
            state = torch.load(efficientnet_lite0_weights(), map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        dim = model._conv_head.out_channels
        model._fc = nn.Identity()  # classifier head: unused, the encoder stops at extract_features
        side = math.ceil(size / 32)  # 'same' padding: each of the 5 stride-2 stages rounds up
        self._grid = (side, side)
        return model, Preprocessing(image_size=size), dim

    def _load_transformers(self, config: ImageEncoderConfig):
        from transformers import AutoConfig, CLIPVisionModel, ResNetModel, ViTModel

        hf_config = AutoConfig.from_pretrained(config.name)
        model_type = hf_config.model_type
        if model_type == "resnet":
            self.kind, cls, model_config, kwargs = "resnet", ResNetModel, hf_config, {}
        elif model_type == "vit":
            self.kind, cls, model_config, kwargs = "vit", ViTModel, hf_config, {"add_pooling_layer": False}
        elif model_type in ("clip", "clip_vision_model"):
            vision = hf_config.vision_config if model_type == "clip" else hf_config
            self.kind, cls, model_config, kwargs = "clip", CLIPVisionModel, vision, {}
        else:
            raise MNERError(f"{config.name!r} is a {model_type!r} model; the image encoder supports "
                             f"efficientnet-lite0 and the transformers model types {list(SUPPORTED_MODEL_TYPES)}")
        if config.pretrained:
            with _quiet_transformers() if self.kind == "clip" else contextlib.nullcontext():
                model = cls.from_pretrained(config.name, **kwargs)
        else:
            model = cls(model_config, **kwargs)
        native = int(getattr(model_config, "image_size", 224) or 224)
        pre = read_preprocessing(config.name, native, config.image_size)
        size = pre.image_size
        self._native_size = native
        if self.kind == "resnet":
            side = _conv_out(size, 7, 2, 3)       # embedder convolution
            side = _conv_out(side, 3, 2, 1)       # max pool
            for stage in range(len(model_config.depths)):
                if stage > 0 or model_config.downsample_in_first_stage:
                    side = _conv_out(side, 3, 2, 1)
            self._grid = (side, side)
            dim = model_config.hidden_sizes[-1]
        else:
            side = size // model_config.patch_size
            self._grid = (side, side)
            dim = model_config.hidden_size
        return model, pre, dim

    # ------------------------------------------------------------------------------------ properties
    @property
    def image_size(self) -> int:
        return self.preprocessing.image_size

    @property
    def num_regions(self) -> int:
        """Regions per image at ``image_size`` (49 for the 224-pixel defaults)."""
        return self._grid[0] * self._grid[1]

    @property
    def grid(self) -> tuple[int, int]:
        return self._grid

    @property
    def device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    @property
    def fingerprint(self) -> str:
        """Model name + a hash of the weights (+ input size): equal fingerprints give equal features."""
        fused = ":fused" if self._fuse_active() and not self.training else ""
        return f"image:{self.config.name}:{self.kind}:size={self.image_size}:sha256={self._digest(self.backbone)}{fused}"

    # -------------------------------------------------------------------------------- fast inference
    def fuse_for_inference(self, enabled: bool = True) -> "ImageEncoder":
        """Run inference through a batch-norm-folded, channels-last copy of the backbone (see the
        module docstring); a no-op for a trainable or non-convolutional backbone. Returns self."""
        self._fuse = bool(enabled)
        self._fused = None
        return self

    def _fuse_active(self) -> bool:
        return self._fuse and not self.config.trainable and self.kind in ("efficientnet", "resnet")

    def _versions(self) -> tuple[tuple[int, int], ...]:
        # a weight written in place bumps its version; .to() and load_state_dict(assign=True) give new storage
        return tuple((t.data_ptr(), t._version) for t in self.backbone.state_dict(keep_vars=True).values())

    def _inference_backbone(self) -> nn.Module:
        versions = self._versions()
        if self._fused is None or self._fused[0] != versions:
            self._fused = (versions, fold_batch_norms(self.backbone).to(memory_format=torch.channels_last))
        return self._fused[1]

    def eval_transform(self) -> EvalTransform:
        pre = self.preprocessing
        return EvalTransform(image_size=pre.image_size, resize=pre.resize, mean=pre.mean, std=pre.std,
                             interpolation=pre.interpolation)

    def train_transform(self, **options: Any) -> TrainTransform:
        """A :class:`TrainTransform` with this model's size and normalisation (``options`` override)."""
        pre = self.preprocessing
        base = dict(image_size=pre.image_size, mean=pre.mean, std=pre.std, interpolation=pre.interpolation)
        base.update(options)
        return TrainTransform(**base)

    # ------------------------------------------------------------------------------------- forward
    def forward(self, pixel_values: torch.Tensor) -> VisualFeatures:
        if pixel_values.dim() != 4 or pixel_values.shape[1] != 3:
            raise ValueError(f"ImageEncoder expects pixel_values (B, 3, H, W); got {tuple(pixel_values.shape)}")
        if tuple(pixel_values.shape[2:]) != (self.image_size, self.image_size):
            raise ValueError(f"ImageEncoder {self.config.name!r} expects {self.image_size}x{self.image_size} images "
                             f"(its transforms make them); got {pixel_values.shape[3]}x{pixel_values.shape[2]}")
        param = next(self.backbone.parameters())
        x = pixel_values.to(device=param.device, dtype=param.dtype)
        backbone = self.backbone
        if self._fuse_active() and not self.training and not torch.is_grad_enabled():
            backbone = self._inference_backbone()
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.set_grad_enabled(self.config.trainable and torch.is_grad_enabled()):
            if self.kind == "efficientnet":
                grid = backbone.extract_features(x)
                tokens = grid.flatten(2).transpose(1, 2).contiguous()
                pooled = tokens.mean(1)
            elif self.kind == "resnet":
                out = backbone(pixel_values=x)
                tokens = out.last_hidden_state.flatten(2).transpose(1, 2).contiguous()
                pooled = out.pooler_output.flatten(1).contiguous()
            else:
                resized = self.image_size != self._native_size
                out = self.backbone(pixel_values=x, interpolate_pos_encoding=resized)
                tokens = out.last_hidden_state[:, 1:]
                pooled = out.last_hidden_state[:, 0] if self.kind == "vit" else out.pooler_output
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return VisualFeatures(tokens=tokens, mask=mask, pooled=pooled)


def fold_batch_norms(module: nn.Module) -> nn.Module:
    """An eval-mode copy of ``module`` in which every ``BatchNorm2d`` that directly follows a
    ``Conv2d`` is folded into it (torch's ``fuse_conv_bn_eval``) and replaced by ``Identity``.

    "Follows" is read off the attribute order of each submodule, the order both supported
    convolutional backbones declare their layers in (EfficientNet-Lite's ``_expand_conv``/``_bn0``,
    ``_depthwise_conv``/``_bn1``, ``_project_conv``/``_bn2``, ``_conv_stem``/``_bn0``,
    ``_conv_head``/``_bn1``; transformers ResNet's ``convolution``/``normalization``), checked by
    a forward pass in the tests. Our own: torch's ``fuse_modules`` needs the exact ``nn.Conv2d``
    type and EfficientNet-Lite's convolutions are a subclass of it."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = copy.deepcopy(module).eval()
    for parent in list(folded.modules()):
        children = list(parent.named_children())
        conv_name = None
        for name, child in children:
            if isinstance(child, nn.Conv2d):
                conv_name = name
            elif isinstance(child, nn.BatchNorm2d) and conv_name is not None:
                conv = getattr(parent, conv_name)
                if conv.out_channels == child.num_features and child.track_running_stats:
                    setattr(parent, conv_name, fuse_conv_bn_eval(conv, child))
                    setattr(parent, name, nn.Identity())
                conv_name = None
            elif not isinstance(child, (nn.Identity, nn.ZeroPad2d)):
                conv_name = None
    return folded


def fuse_image_encoders(model: nn.Module, enabled: bool = True) -> nn.Module:
    """:meth:`ImageEncoder.fuse_for_inference` on every image encoder of ``model`` (the pipelines'
    switch); returns ``model``."""
    for module in model.modules():
        if isinstance(module, ImageEncoder):
            module.fuse_for_inference(enabled)
    return model
