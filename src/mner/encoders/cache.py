"""A feature cache for frozen encoders, so an epoch never recomputes a frozen image/caption encoder.

An entry is keyed by the encoder's ``fingerprint`` (model name + weights hash), the item's id (an
image id, or :func:`~mner.encoders.caption.caption_key` of a caption) and the input transform's
``signature``. Entries live in memory and, when a folder is given, in one safetensors file each
(``<folder>/<key[:2]>/<key>.safetensors``; never pickle) so another process or a later run reuses
them. Values are stored as float16 by default; what :func:`encode_with_cache` returns is always the
stored value, so the first epoch and every later one see identical features.

Only frozen encoders may be cached: the features of a trainable one change as it trains.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Hashable, Sequence

import torch
from torch import nn

from mner.encoders.features import VisualFeatures

__all__ = ["FeatureCache", "encode_with_cache", "check_cacheable", "feature_cache"]

logger = logging.getLogger(__name__)

_FORMAT = "mner-features-1"


def check_cacheable(encoder: nn.Module) -> str:
    """Raise unless ``encoder`` is frozen and has a ``fingerprint``; return the fingerprint."""
    config = getattr(encoder, "config", None)
    trainable = bool(getattr(config, "trainable", False)) or any(p.requires_grad for p in encoder.parameters())
    if trainable:
        raise ValueError(
            f"refusing to cache the features of a trainable {type(encoder).__name__} "
            f"({getattr(config, 'name', '?')!r}): they change at every step; build it with "
            "trainable=False or encode without the cache"
        )
    fingerprint = getattr(encoder, "fingerprint", None)
    if not isinstance(fingerprint, str) or not fingerprint:
        raise TypeError(f"{type(encoder).__name__} has no fingerprint string to key the cache with")
    return fingerprint


class FeatureCache:
    """Stores one item's visual features (``tokens (R, D)`` without padding, ``pooled (D,)``) per key.

    Args:
        folder: where to persist entries (created on demand); ``None`` keeps them in memory only.
        dtype: storage dtype (float16 by default; float32 or bfloat16 also work).
        max_in_memory: most entries kept in memory (least recently used dropped first; they stay on
            disk); ``None`` = no limit.
    """

    def __init__(self, folder: str | Path | None = None, *, dtype: torch.dtype = torch.float16,
                 max_in_memory: int | None = None) -> None:
        if not dtype.is_floating_point:
            raise ValueError(f"FeatureCache: dtype must be a floating point type, not {dtype}")
        self.folder = Path(folder) if folder is not None else None
        self.dtype = dtype
        self.max_in_memory = max_in_memory
        self._memory: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.disk_hits = 0

    # ----------------------------------------------------------------------------------------- keys
    @staticmethod
    def make_key(fingerprint: str, item: Hashable, signature: str = "") -> str:
        """The entry key of ``item`` encoded by the encoder ``fingerprint`` after transform ``signature``."""
        text = "\x1f".join((fingerprint, str(item), signature))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def _path(self, key: str) -> Path:
        assert self.folder is not None
        return self.folder / key[:2] / f"{key}.safetensors"

    # -------------------------------------------------------------------------------------- storage
    def __len__(self) -> int:
        return len(self._memory)

    def __contains__(self, key: str) -> bool:
        return key in self._memory or (self.folder is not None and self._path(key).is_file())

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "disk_hits": self.disk_hits, "in_memory": len(self)}

    def _remember(self, key: str, value: tuple[torch.Tensor, torch.Tensor]) -> None:
        self._memory[key] = value
        self._memory.move_to_end(key)
        if self.max_in_memory is not None:
            while len(self._memory) > self.max_in_memory:
                self._memory.popitem(last=False)

    def get(self, key: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(tokens (R, D), pooled (D,))`` stored under ``key``, or None (``hits``/``misses`` are counted by
        :func:`encode_with_cache`; ``disk_hits`` here)."""
        value = self._memory.get(key)
        if value is not None:
            self._memory.move_to_end(key)
            return value
        if self.folder is None:
            return None
        path = self._path(key)
        if not path.is_file():
            return None
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                meta = handle.metadata() or {}
                if meta.get("format") != _FORMAT or meta.get("key") != key:
                    raise ValueError(f"not an entry for key {key}")
                value = (handle.get_tensor("tokens"), handle.get_tensor("pooled"))
        except Exception as err:  # a torn or foreign file: recompute and overwrite it
            logger.warning("ignoring unreadable cache entry %s (%s)", path, err)
            return None
        self._remember(key, value)
        self.disk_hits += 1
        return value

    def put(self, key: str, tokens: torch.Tensor, pooled: torch.Tensor, **meta: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Store one item (``tokens (R, D)`` with no padding rows, ``pooled (D,)``); returns the stored pair."""
        if tokens.dim() != 2 or pooled.dim() != 1 or tokens.shape[1] != pooled.shape[0]:
            raise ValueError(f"FeatureCache.put: need tokens (R, D) and pooled (D,); "
                             f"got {tuple(tokens.shape)} and {tuple(pooled.shape)}")
        value = (tokens.detach().to("cpu", self.dtype).contiguous(), pooled.detach().to("cpu", self.dtype).contiguous())
        self._remember(key, value)
        if self.folder is not None:
            from safetensors.torch import save_file

            path = self._path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
            metadata = {"format": _FORMAT, "key": key, **{k: str(v) for k, v in meta.items()}}
            try:
                save_file({"tokens": value[0], "pooled": value[1]}, str(tmp), metadata=metadata)
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        return value


def _signature_text(signature: Any) -> str:
    if isinstance(signature, str):
        return signature
    if getattr(signature, "deterministic", True) is False:
        raise ValueError(f"refusing to cache features of a random transform ({type(signature).__name__}): "
                         "each epoch must see a new augmentation; cache only with the eval transform")
    text = getattr(signature, "signature", None)
    if not isinstance(text, str):
        raise TypeError(f"signature must be a string or a transform with a .signature; got {type(signature).__name__}")
    return text


def encode_with_cache(encoder: nn.Module, items: Sequence[Hashable], load: Callable[[list], Any],
                      cache: FeatureCache, *, signature: Any = "", batch_size: int = 32,
                      device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> VisualFeatures:
    """Features of ``items`` from ``cache``, computing only the missing ones with ``encoder``.

    Args:
        encoder: a frozen encoder with a ``fingerprint`` (an :class:`~mner.encoders.image.ImageEncoder`
            or :class:`~mner.encoders.caption.CaptionEncoder`); a trainable one is refused.
        items: the batch's item ids (image ids, or :func:`~mner.encoders.caption.caption_key` values).
        load: ``load(missing_ids) -> encoder input`` for a list of missing ids (a pixel tensor
            ``(n, 3, S, S)`` for an image encoder, a list of caption strings for a caption encoder).
        cache: where entries live.
        signature: the input transform (its ``signature``) or a signature string; a random
            (training) transform is refused.
        batch_size: most items per encoder call.
        device, dtype: of the returned tensors (CPU, float32 by default).

    Returns:
        :class:`VisualFeatures` for ``items`` in order, regions padded to the longest (mask False).
    """
    fingerprint = check_cacheable(encoder)
    sig = _signature_text(signature)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, not {batch_size}")
    if not items:
        raise ValueError("encode_with_cache: no items")
    keys = [cache.make_key(fingerprint, item, sig) for item in items]
    found: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    missing: dict[str, Hashable] = {}
    for key, item in zip(keys, items):
        if key in found or key in missing:
            continue
        value = cache.get(key)
        if value is None:
            missing[key] = item
            cache.misses += 1
        else:
            found[key] = value
            cache.hits += 1
    pending = list(missing.items())
    for start in range(0, len(pending), batch_size):
        chunk = pending[start:start + batch_size]
        ids = [item for _, item in chunk]
        with torch.no_grad():
            out = encoder(load(ids))
        if not isinstance(out, VisualFeatures) or len(out) != len(chunk):
            raise ValueError(f"{type(encoder).__name__} returned {type(out).__name__} for {len(chunk)} loaded "
                             "items; expected VisualFeatures with one row per item (check the loader)")
        for i, (key, item) in enumerate(chunk):
            keep = out.mask[i]
            found[key] = cache.put(key, out.tokens[i, keep], out.pooled[i], fingerprint=fingerprint,
                                   item=str(item), signature=sig)
    values = [found[key] for key in keys]
    longest = max(v[0].shape[0] for v in values)
    dim = values[0][1].shape[0]
    tokens = torch.zeros((len(values), longest, dim), dtype=dtype)
    mask = torch.zeros((len(values), longest), dtype=torch.bool)
    for i, (t, _) in enumerate(values):
        tokens[i, : t.shape[0]] = t.to(dtype)
        mask[i, : t.shape[0]] = True
    pooled = torch.stack([p for _, p in values]).to(dtype)
    features = VisualFeatures(tokens=tokens, mask=mask, pooled=pooled)
    return features.to(device) if device is not None else features


def feature_cache(spec: str | Path | None) -> FeatureCache:
    """The cache a ``feature_cache`` setting names: None = in memory only, ``auto`` =
    ``<cache_dir()>/features`` (``$MNER_CACHE``, default ``~/.cache/mner``), else that folder."""
    if spec is None:
        return FeatureCache()
    if spec == "auto":
        from mner.encoders.offline import cache_dir

        return FeatureCache(cache_dir() / "features")
    return FeatureCache(spec)
