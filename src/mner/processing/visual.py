"""The visual side of a tweet, in any of three views: image regions, caption tokens, or both.

This is processing, not modelling: file I/O, image transforms, the feature cache and the frozen
encoders run here, inside the ``collate_fn``; a model only ever sees the tensors of
:class:`VisualInputs`.

A model of this project sees the image as a set of *visual tokens* plus a global vector
(:class:`~mner.encoders.features.VisualFeatures`). Where they come from is a view:

``pixels``
    the region grid of a (frozen) image encoder over the tweet's photo: 7x7 = 49 regions for
    EfficientNet-Lite0 / ResNet at 224 px;
``caption``
    the sub-token states of a (frozen) text encoder over an image-derived caption (e.g. BLIP-2):
    image content as text, usable where the pixels are missing;
``both``
    both of the above, side by side (the model projects each to its width, then concatenates).

:class:`VisualProcessor` turns examples into :class:`VisualInputs`. With frozen encoders the
features come from a :class:`~mner.encoders.cache.FeatureCache`, so an epoch never recomputes them
(:meth:`VisualProcessor.precompute` fills it once, with a progress bar). With a trainable image
encoder the processor returns pixel tensors (augmented for training) and the model runs the
encoder itself.

A tweet without an image (``Example.image is None``, e.g. after the ``blank`` missing-image policy)
or without a caption gets an empty view: no visual token (``mask`` all False) and a zero global
vector, with ``present`` False. Nothing is substituted.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import torch
from PIL import Image

from mner.config import ConfigError
from mner.data.example import Example
from mner.data.images import ImageStore, to_rgb
from mner.encoders.cache import FeatureCache, encode_with_cache
from mner.encoders.caption import CaptionEncoder, caption_key
from mner.encoders.features import VisualFeatures
from mner.encoders.image import ImageEncoder

__all__ = ["VIEWS", "VisualInputs", "VisualProcessor", "view_names"]

VIEWS = ("pixels", "caption", "both")


def view_names(view: str) -> tuple[str, ...]:
    """The component views of a view setting: ``both`` -> ``("pixels", "caption")``."""
    if view not in VIEWS:
        raise ConfigError(f"unknown visual view {view!r}; choose one of {', '.join(VIEWS)}")
    return ("pixels", "caption") if view == "both" else (view,)


@dataclass
class VisualInputs:
    """What a batch carries for the visual side.

    Attributes:
        features: per component view, precomputed (frozen-encoder) features.
        pixel_values: ``(B, 3, S, S)`` images for a trainable image encoder (else None);
            rows of tweets without an image are zero.
        present: per component view, ``(B,)`` bool: the tweet has that view.
    """

    features: dict[str, VisualFeatures] = field(default_factory=dict)
    pixel_values: torch.Tensor | None = None
    present: dict[str, torch.Tensor] = field(default_factory=dict)

    def to(self, device: torch.device | str) -> "VisualInputs":
        return VisualInputs(
            {k: v.to(device) for k, v in self.features.items()},
            self.pixel_values.to(device) if self.pixel_values is not None else None,
            {k: v.to(device) for k, v in self.present.items()},
        )


def _empty_features(n: int, dim: int) -> VisualFeatures:
    return VisualFeatures(torch.zeros(n, 1, dim), torch.zeros(n, 1, dtype=torch.bool), torch.zeros(n, dim))


def _merge(n: int, rows: list[int], feats: VisualFeatures | None, dim: int) -> VisualFeatures:
    """Place features of ``rows`` into a batch of ``n`` (other rows empty)."""
    out = _empty_features(n, dim)
    if feats is None or not rows:
        return out
    if len(rows) == n:
        return feats
    r = feats.tokens.shape[1]
    tokens = torch.zeros(n, r, dim, dtype=feats.tokens.dtype)
    mask = torch.zeros(n, r, dtype=torch.bool)
    pooled = torch.zeros(n, dim, dtype=feats.pooled.dtype)
    idx = torch.tensor(rows)
    tokens[idx], mask[idx], pooled[idx] = feats.tokens, feats.mask, feats.pooled
    return VisualFeatures(tokens, mask, pooled)


class VisualProcessor:
    """Examples -> :class:`VisualInputs` for one view setting (shared by MAF and the few-shot models).

    Args:
        view: ``pixels``, ``caption`` or ``both``.
        image_encoder: needed for ``pixels``/``both``.
        caption_encoder: needed for ``caption``/``both`` (frozen).
        image_store: resolves ``Example.image`` references (ids or paths).
        cache: where frozen features live (an in-memory cache when None).
        seed: of the training-time augmentation (trainable image encoder only).
    """

    def __init__(self, view: str, image_encoder: ImageEncoder | None = None,
                 caption_encoder: CaptionEncoder | None = None, image_store: ImageStore | None = None,
                 cache: FeatureCache | None = None, seed: int = 0, batch_size: int = 32):
        self.views = view_names(view)
        if "pixels" in self.views and image_encoder is None:
            raise ConfigError("the pixels view needs an image encoder")
        if "caption" in self.views and caption_encoder is None:
            raise ConfigError("the caption view needs a caption encoder")
        self.image_encoder = image_encoder
        self.caption_encoder = caption_encoder
        self.image_store = image_store or ImageStore(None)
        self.cache = cache if cache is not None else FeatureCache()
        self.rng = random.Random(seed)
        self.batch_size = batch_size
        self._eval_transform = image_encoder.eval_transform() if image_encoder is not None else None
        self._train_transform = image_encoder.train_transform() if image_encoder is not None else None

    @property
    def pixels_trainable(self) -> bool:
        return "pixels" in self.views and bool(self.image_encoder.config.trainable)

    # ------------------------------------------------------------------------------ images
    def _image_path(self, ex: Example) -> Path:
        path = self.image_store.resolve(ex.image)
        if path is None:
            # the policy was not applied upstream: open() raises the clear missing-image error
            self.image_store.open(ex.image, ex.id)
        return path

    def _image_key(self, ex: Example) -> str:
        path = self._image_path(ex).resolve()
        st = path.stat()
        return f"{path}|{st.st_size}|{st.st_mtime_ns}"

    def _load_images(self, paths: Sequence[str], train: bool) -> torch.Tensor:
        out = []
        for key in paths:
            path = Path(key.split("|", 1)[0])
            img = self.image_store.open_path(path, path.stem)
            out.append(self._transform(img, train))
        return torch.stack(out)

    def _transform(self, img: Image.Image, train: bool) -> torch.Tensor:
        if train:
            return self._train_transform(img, self.rng)
        return self._eval_transform(img)

    # ------------------------------------------------------------------------------ main
    def __call__(self, examples: Sequence[Example], train: bool = False,
                 images: Sequence[Image.Image | None] | None = None) -> VisualInputs:
        """Visual inputs of a batch. ``images`` (PIL or None per example) overrides
        ``Example.image`` (used by the pipeline for in-memory images)."""
        n = len(examples)
        out = VisualInputs()
        if "pixels" in self.views:
            if images is not None:
                rows = [i for i, img in enumerate(images) if img is not None]
            else:
                rows = [i for i, ex in enumerate(examples) if ex.image is not None]
            out.present["pixels"] = torch.zeros(n, dtype=torch.bool)
            out.present["pixels"][rows] = True
            enc = self.image_encoder
            if self.pixels_trainable:
                size = enc.image_size
                pix = torch.zeros(n, 3, size, size)
                for i in rows:
                    img = images[i] if images is not None else self.image_store.open(examples[i].image, examples[i].id)
                    pix[i] = self._transform(to_rgb(img), train)
                out.pixel_values = pix
            elif images is not None:
                feats = None
                if rows:
                    with torch.no_grad():
                        batch = torch.stack([self._eval_transform(to_rgb(images[i])) for i in rows])
                        feats = enc(batch).to("cpu", torch.float32)
                out.features["pixels"] = _merge(n, rows, feats, enc.output_dim)
            else:
                keys = [self._image_key(examples[i]) for i in rows]
                feats = encode_with_cache(enc, keys, lambda ks: self._load_images(ks, False), self.cache,
                                          signature=self._eval_transform, batch_size=self.batch_size,
                                          device="cpu") if rows else None
                out.features["pixels"] = _merge(n, rows, feats, enc.output_dim)
        if "caption" in self.views:
            enc = self.caption_encoder
            rows = [i for i, ex in enumerate(examples) if ex.caption is not None]
            out.present["caption"] = torch.zeros(n, dtype=torch.bool)
            out.present["caption"][rows] = True
            captions = {caption_key(examples[i].caption): examples[i].caption for i in rows}
            keys = [caption_key(examples[i].caption) for i in rows]
            feats = encode_with_cache(enc, keys, lambda ks: [captions[k] for k in ks], self.cache,
                                      signature="caption", batch_size=self.batch_size,
                                      device="cpu") if rows else None
            out.features["caption"] = _merge(n, rows, feats, enc.output_dim)
        return out

    def precompute(self, examples: Iterable[Example], progress: bool = True, desc: str = "visual features") -> dict:
        """Encode every example's image/caption once into the cache (frozen encoders only)."""
        examples = list(examples)
        if not examples or self.pixels_trainable and self.views == ("pixels",):
            return self.cache.stats()
        from tqdm.auto import tqdm

        step = self.batch_size * 4
        bar = tqdm(total=len(examples), desc=desc, disable=not progress, unit="tweet")
        views = tuple(v for v in self.views if not (v == "pixels" and self.pixels_trainable))
        saved, self.views = self.views, views
        try:
            for start in range(0, len(examples), step):
                chunk = examples[start:start + step]
                self(chunk, train=False)
                bar.update(len(chunk))
        finally:
            self.views = saved
            bar.close()
        return self.cache.stats()
