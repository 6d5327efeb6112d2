"""Image preprocessing with PIL and torch only (torchvision does not import beside the CPU torch here).

* :class:`EvalTransform`: resize the shorter side, center crop to ``image_size``, scale to [0, 1],
  normalise with the model's mean/std. Deterministic. The long side is resized only as far as
  :data:`~mner.data.images.MAX_ASPECT` times the short one
  (:func:`~mner.data.images.resize_shorter`): a 1x8000 image costs what a
  1x16 one does, not the 256x2,048,000 pixels (1.5 GB) a plain resize of its short side makes.
* :class:`TrainTransform`: random resized crop + horizontal flip, then the same tensor conversion.
  Its randomness comes only from the ``rng`` passed to each call (a ``random.Random`` or a
  ``torch.Generator``), never from a global generator, so a run is reproducible from its seed.

Input images must be RGB PIL images (the data layer converts modes). Each transform has a
``signature`` string that names everything that changes its output, for feature-cache keys.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from mner.data.images import MAX_ASPECT, resize_shorter

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "EvalTransform",
    "TrainTransform",
    "MAX_ASPECT",
    "resize_shorter",
    "to_tensor",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


def _check_rgb(image: Image.Image) -> None:
    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL image, got {type(image).__name__}")
    if image.mode != "RGB":
        raise ValueError(f"expected an RGB image, got mode {image.mode!r} ({image.size[0]}x{image.size[1]}); "
                         "convert it first, e.g. image.convert('RGB')")


def to_tensor(image: Image.Image, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """RGB PIL image -> normalised float tensor ``(3, H, W)``."""
    array = np.asarray(image, dtype=np.float32) / 255.0
    tensor = torch.from_numpy(array.copy()).permute(2, 0, 1)
    mean_t = torch.tensor(mean, dtype=torch.float32)[:, None, None]
    std_t = torch.tensor(std, dtype=torch.float32)[:, None, None]
    return (tensor - mean_t) / std_t


def _fmt(values: Sequence[float]) -> str:
    return ",".join(f"{v:.4g}" for v in values)


@dataclass(frozen=True)
class EvalTransform:
    """Resize the shorter side to ``resize``, center crop ``image_size``, normalise.

    Attributes:
        image_size: side of the square output.
        resize: the shorter side before cropping; ``None`` = ``round(image_size / 0.875)`` (256 for 224).
        mean, std: per-channel normalisation (ImageNet by default).
        interpolation: ``"bicubic"`` or ``"bilinear"``.
    """

    image_size: int = 224
    resize: int | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bicubic"
    deterministic = True

    def __post_init__(self) -> None:
        if self.interpolation not in _RESAMPLE:
            raise ValueError(f"interpolation must be one of {sorted(_RESAMPLE)}, not {self.interpolation!r}")
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    @property
    def resize_to(self) -> int:
        return self.resize if self.resize is not None else int(round(self.image_size / 0.875))

    @property
    def signature(self) -> str:
        return (f"eval:size={self.image_size}:resize={self.resize_to}:{self.interpolation}"
                f":mean={_fmt(self.mean)}:std={_fmt(self.std)}")

    def __call__(self, image: Image.Image) -> torch.Tensor:
        _check_rgb(image)
        image = resize_shorter(image, max(self.resize_to, self.image_size), self.interpolation)
        new_w, new_h = image.size
        left = (new_w - self.image_size) // 2
        top = (new_h - self.image_size) // 2
        image = image.crop((left, top, left + self.image_size, top + self.image_size))
        return to_tensor(image, self.mean, self.std)


def _uniform(rng: random.Random | torch.Generator, low: float, high: float) -> float:
    if isinstance(rng, torch.Generator):
        return low + (high - low) * float(torch.rand((), generator=rng))
    return rng.uniform(low, high)


def _randint(rng: random.Random | torch.Generator, low: int, high: int) -> int:
    """An integer in ``[low, high]``."""
    if isinstance(rng, torch.Generator):
        return int(torch.randint(low, high + 1, (), generator=rng))
    return rng.randint(low, high)


@dataclass(frozen=True)
class TrainTransform:
    """Random resized crop (area ``scale`` x aspect ``ratio``) to ``image_size``, random horizontal
    flip with probability ``flip``, normalise. Call it as ``transform(image, rng)``.

    The default scale keeps at least half of the image: tweets' entities are often small objects.
    """

    image_size: int = 224
    scale: tuple[float, float] = (0.5, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: float = 0.5
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bicubic"
    deterministic = False

    def __post_init__(self) -> None:
        if self.interpolation not in _RESAMPLE:
            raise ValueError(f"interpolation must be one of {sorted(_RESAMPLE)}, not {self.interpolation!r}")
        if not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < low <= high <= 1, not {self.scale}")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < low <= high, not {self.ratio}")
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    @property
    def signature(self) -> str:
        return (f"train:size={self.image_size}:scale={_fmt(self.scale)}:ratio={_fmt(self.ratio)}"
                f":flip={self.flip:g}:{self.interpolation}:mean={_fmt(self.mean)}:std={_fmt(self.std)}")

    def crop_box(self, width: int, height: int, rng: random.Random | torch.Generator) -> tuple[int, int, int, int]:
        """The ``(left, top, right, bottom)`` box of one random resized crop."""
        area = width * height
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * _uniform(rng, *self.scale)
            aspect = math.exp(_uniform(rng, *log_ratio))
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                left = _randint(rng, 0, width - w)
                top = _randint(rng, 0, height - h)
                return left, top, left + w, top + h
        # Fallback: the largest central crop within the ratio range.
        aspect = width / height
        if aspect < self.ratio[0]:
            w, h = width, int(round(width / self.ratio[0]))
        elif aspect > self.ratio[1]:
            w, h = int(round(height * self.ratio[1])), height
        else:
            w, h = width, height
        left, top = (width - w) // 2, (height - h) // 2
        return left, top, left + w, top + h

    def __call__(self, image: Image.Image, rng: random.Random | torch.Generator) -> torch.Tensor:
        if not isinstance(rng, (random.Random, torch.Generator)):
            raise TypeError("TrainTransform needs an explicit rng (random.Random or torch.Generator), "
                            f"got {type(rng).__name__}")
        _check_rgb(image)
        box = self.crop_box(image.size[0], image.size[1], rng)
        image = image.resize((self.image_size, self.image_size), resample=_RESAMPLE[self.interpolation], box=box)
        if _uniform(rng, 0.0, 1.0) < self.flip:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return to_tensor(image, self.mean, self.std)
