"""Encoder assets of a checkpoint: what rebuilds a pretrained encoder offline, minus its weights.

The weights of every encoder are in the checkpoint's ``model.safetensors``; the assets are the
architecture and the preprocessing: the transformers ``config.json``, the tokenizer files, and the
image ``preprocessor_config.json``. Loading builds each encoder with random weights from them (no
network, no download) and the checkpoint's weights then replace those.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from mner.encoders.image import ImageEncoder, ImageEncoderConfig
from mner.encoders.tokenization import WordTokenizer
from mner.models.checkpoint import CheckpointError

__all__ = ["save_text_assets", "load_text_parts", "save_image_assets", "load_image_encoder", "save_encoder_assets",
           "load_encoders"]


def save_text_assets(model, tokenizer, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _require(folder: Path) -> None:
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"{folder}: encoder assets missing (config.json); the checkpoint is incomplete")


def load_text_parts(folder: Path, word_level: bool = False):
    """(model with random weights, tokenizer) from a text encoder's assets."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    _require(folder)
    config = AutoConfig.from_pretrained(folder)
    model = AutoModel.from_config(config)
    tokenizer = WordTokenizer.from_pretrained(str(folder)) if word_level else AutoTokenizer.from_pretrained(folder)
    return model, tokenizer


def save_image_assets(encoder: ImageEncoder, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mner_image_encoder.json").write_text(
        json.dumps({"kind": encoder.kind, "name": encoder.config.name, "image_size": encoder.image_size}, indent=2)
    )
    if encoder.kind == "efficientnet":
        return  # the architecture is fully named by the config (efficientnet-lite0 and its size)
    encoder.backbone.config.save_pretrained(folder)
    pre = encoder.preprocessing
    resize = encoder.eval_transform().resize_to  # the effective one (a default when the model has none)
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "do_center_crop": True,
        "crop_size": {"height": pre.image_size, "width": pre.image_size},
        "size": {"shortest_edge": resize},
        "image_mean": list(pre.mean),
        "image_std": list(pre.std),
        "resample": {"bilinear": 2, "bicubic": 3}.get(pre.interpolation, 3),
    }, indent=2))


def load_image_encoder(config: ImageEncoderConfig, folder: Path) -> ImageEncoder:
    """An image encoder with random weights, built from its assets (or its offline name)."""
    if config.name.lower().startswith("efficientnet-"):
        return ImageEncoder(dataclasses.replace(config, pretrained=False))
    _require(folder)
    return ImageEncoder(dataclasses.replace(config, name=str(folder), pretrained=False))


def save_encoder_assets(model, folder: Path) -> None:
    """The assets of a model's encoders (``text_encoder``, and ``caption_encoder`` /
    ``image_encoder`` where the model has them) under ``folder``."""
    save_text_assets(model.text_encoder.model, model.text_encoder.tokenizer.tokenizer, folder / "text_encoder")
    if getattr(model, "caption_encoder", None) is not None:
        save_text_assets(model.caption_encoder.model, model.caption_encoder.tokenizer, folder / "caption_encoder")
    if getattr(model, "image_encoder", None) is not None:
        save_image_assets(model.image_encoder, folder / "image_encoder")


def load_encoders(config, assets: Path) -> dict:
    """The encoders that :func:`save_encoder_assets` described, rebuilt offline with random
    weights (the checkpoint's replace them): ``{"text_encoder", "caption_encoder", "image_encoder"}``
    keyword arguments for a model's constructor; ``config.views`` says which visual ones exist."""
    from mner.encoders.caption import CaptionEncoder
    from mner.encoders.text import TextEncoder

    model, tok = load_text_parts(assets / "text_encoder", word_level=True)
    out = {"text_encoder": TextEncoder(config.text_encoder, model=model, tokenizer=tok),
           "caption_encoder": None, "image_encoder": None}
    if "caption" in config.views:
        cm, ct = load_text_parts(assets / "caption_encoder")
        out["caption_encoder"] = CaptionEncoder(config.caption_encoder, model=cm, tokenizer=ct)
    if "pixels" in config.views:
        out["image_encoder"] = load_image_encoder(config.image_encoder, assets / "image_encoder")
    return out
