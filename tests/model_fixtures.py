"""Shared helpers of the model, training, pipeline and CLI tests: tiny encoders, MAF configs,
experiment dicts, images, a one-thread setting for a busy CPU, and :data:`CONTRACT_FIXTURES`, the
tiny builder of every registered model for the shared contract suite (``test_model_contract.py``).

Import the fixtures you use into a test module (pytest then finds them there)::

    from model_fixtures import encoders, one_thread  # noqa: F401  (fixtures)

Why one thread: these tiny models do a few milliseconds of work per step; on a CPU shared with
other jobs, torch's default of one thread per core made a 40-step run take 27 s instead of
0.4 s (thread oversubscription). Subprocesses get ``OMP_NUM_THREADS=1`` for the same reason.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from mner.encoders import CaptionEncoderConfig, ImageEncoderConfig, TextEncoderConfig
from mner.models import MAFConfig
from mner.encoders import IMAGENET_MEAN, IMAGENET_STD
from tiny_models import make_tiny_bert, make_tiny_clip, make_tiny_resnet, write_preprocessor_config

__all__ = [
    "CONTRACT_FIXTURES",
    "LABELS",
    "SWITCHES",
    "VIEWS",
    "encoders",
    "one_thread",
    "maf_config",
    "model_section",
    "experiment",
    "write_yaml",
    "random_image",
    "subprocess_env",
    "read_jsonl",
    "sample_paths",
]

#: The tag set of the benchmarks (what ``mner train`` builds from them).
LABELS = ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
VIEWS = ("pixels", "caption", "both")
#: The ablation switches of the paper, as MAFConfig keyword arguments.
SWITCHES = {
    "full": {},
    "no_alignment": {"no_alignment": True},
    "no_matching": {"no_matching": True},
    "no_alignment+no_matching": {"no_alignment": True, "no_matching": True},
    "no_image": {"no_image": True},
}


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for the module (see the module docstring)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def encoders(tmp_path_factory) -> dict[str, Path]:
    """Tiny random encoder folders: ``bert`` (hidden 32, 2 layers, 64 positions; also the caption
    encoder), ``bert16`` (16 positions: long inputs need windows), ``resnet`` (2 stages, 16-d
    regions, with a ``preprocessor_config.json``: resize 36, crop 32), ``resnet_bare`` (the same
    without a preprocessor config), ``clip`` (a full CLIP checkpoint with a preprocessor config,
    32-d patch tokens)."""
    root = tmp_path_factory.mktemp("encoders")
    folders = {
        "bert": make_tiny_bert(root / "bert", max_position_embeddings=64),
        "bert16": make_tiny_bert(root / "bert16", max_position_embeddings=16),
        "resnet": make_tiny_resnet(root / "resnet"),
        "resnet_bare": make_tiny_resnet(root / "resnet_bare"),
        "clip": make_tiny_clip(root / "clip", image_size=32, patch_size=8),
    }
    for name in ("resnet", "clip"):
        write_preprocessor_config(folders[name], image_size=32, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                                  shortest_edge=36)
    return folders


def maf_config(enc: dict[str, Path], labels=LABELS, view: str = "pixels", image: str = "resnet",
               text: str = "bert", **options: Any) -> MAFConfig:
    """A MAF config on the tiny encoders (interaction width 32, 2 heads, FFN 32)."""
    base: dict[str, Any] = dict(
        labels=list(labels),
        text_encoder=TextEncoderConfig(name=str(enc[text]), casing_dim=4),
        visual_view=view,
        image_encoder=ImageEncoderConfig(name=str(enc[image]), pretrained=False, image_size=32),
        caption_encoder=CaptionEncoderConfig(name=str(enc["bert"])),
        interaction_heads=2,
        ffn_dim=32,
    )
    base.update(options)
    return MAFConfig(**base)


def model_section(enc: dict[str, Path], view: str = "pixels", image: str = "resnet", **options: Any) -> dict:
    """The ``model:`` section of an experiment YAML on the tiny encoders."""
    section = {
        "visual_view": view,
        "interaction_heads": 2,
        "ffn_dim": 32,
        "text_encoder": {"name": str(enc["bert"]), "casing_dim": 4},
        "image_encoder": {"name": str(enc[image]), "pretrained": False, "image_size": 32},
        "caption_encoder": {"name": str(enc["bert"])},
    }
    section.update(options)
    return section


def experiment(enc: dict[str, Path], corpus: Path, out: Path, *, images: Path | None = None,
               captions: str | None = None, model: dict | None = None, data: dict | None = None,
               training: dict | None = None) -> dict:
    """A whole experiment dict (what a YAML file holds): tiny encoders, in-memory feature cache,
    CPU, no progress bar, no TensorBoard, a fresh run (``resume: false``)."""
    cfg = {
        "model_type": "maf",
        "model": model_section(enc, **(model or {})),
        "data": {"corpus": str(corpus), "images": str(images) if images else None, "captions": captions,
                 "feature_cache": None, **(data or {})},
        "training": {"output_dir": str(out), "epochs": 1, "batch_size": 4, "eval_batch_size": 16,
                     "learning_rate": 1e-3, "head_learning_rate": 3e-3, "seed": 7, "progress": False,
                     "tensorboard": False, "log_every": 1, "resume": False, "cpu": True,
                     **(training or {})},
    }
    if images is None and cfg["model"].get("visual_view") in ("pixels", "both") and not cfg["model"].get("no_image"):
        cfg["data"].setdefault("missing_images", "blank")
    return cfg


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def random_image(seed: int, size: int = 40) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


def subprocess_env(tmp: Path) -> dict[str, str]:
    """Environment of an ``mner`` subprocess: offline, one thread, caches inside ``tmp``."""
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MNER_CACHE": str(tmp / "mner-cache"),
                "HF_HOME": str(tmp / "hf-home"), "PYTHONUNBUFFERED": "1"})
    env.pop("MNER_DEBUG", None)
    return env


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def sample_paths() -> dict[str, Path]:
    """The packaged sample corpus: its tweets folder, images folder and caption file."""
    from mner.resources import sample_corpus_dir

    tweets = sample_corpus_dir()
    return {"tweets": tweets, "images": tweets.parent / "images",
            "captions": tweets.parent / "captions" / "tweets_blip2.txt"}


class ForwardRecorder:
    """Wraps a model's forward (through ``monkeypatch``) and keeps each batch it saw and each
    output it gave, in ``calls``."""

    def __init__(self, model, monkeypatch):
        self.calls: list[tuple] = []
        self._forward = model.forward
        monkeypatch.setattr(model, "forward", self)

    def __call__(self, batch):
        out = self._forward(batch)
        self.calls.append((batch, out))
        return out

    def emissions(self, k: int = -1) -> list[torch.Tensor]:
        """Per tweet of call ``k``, the emissions of its real words."""
        batch, out = self.calls[k]
        return [out.emissions[i][out.mask[i]] for i in range(len(batch))]


# ================================================================================ model contract
def tiny_maf(folder: Path) -> tuple[Any, list]:
    """A tiny random MAF (both views: image regions and captions; seed 0) on tiny encoders built
    under ``folder``, and three labelled tweets with images and captions (one without either)."""
    from mner.data.example import Example
    from mner.models import MAFModel
    from tiny_models import make_tiny_bert as bert, make_tiny_resnet as resnet

    folder = Path(folder)
    enc = {"bert": folder / "bert", "resnet": folder / "resnet"}
    if not (enc["bert"] / "config.json").is_file():
        bert(enc["bert"], max_position_embeddings=64)
        resnet(enc["resnet"])
        write_preprocessor_config(enc["resnet"], image_size=32, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                                  shortest_edge=36)
    texts = [("Obama", "meets", "Merkel", "in", "Berlin"), ("Paris", "at", "night"), ("New", "York")]
    tags = [("B-PER", "O", "B-PER", "O", "B-LOC"), ("B-LOC", "O", "O"), ("B-LOC", "I-LOC")]
    examples = []
    for i, (tokens, gold) in enumerate(zip(texts, tags)):
        image = None
        if i < 2:
            image = folder / f"t{i}.png"
            random_image(i).save(image)
        examples.append(Example(f"t{i}", tokens, gold, image=str(image) if image else None,
                                caption=f"a photo number {i}" if i < 2 else None))
    torch.manual_seed(0)
    return MAFModel(maf_config(enc, view="both")), examples


def tiny_fewshot(variant: str) -> Callable[[Path], tuple[Any, list]]:
    """The builder of a tiny random few-shot model (a ``fewshot_fixtures.FEWSHOT_VARIANTS`` key,
    seed 0, text and caption encoder a tiny BERT under the folder) with two hand-made episodes."""

    def build(folder: Path) -> tuple[Any, list]:
        from fewshot_fixtures import episode_pair, fewshot_model
        from tiny_models import make_tiny_bert as bert

        path = Path(folder) / "bert"
        if not (path / "config.json").is_file():
            bert(path, max_position_embeddings=64)
        torch.manual_seed(0)
        return fewshot_model(path, variant), episode_pair()

    return build


#: model_type -> a function that builds a tiny random model (seeded) under a folder and returns it
#: with a few training inputs (tweets, or episodes for a few-shot model) that
#: ``model.processor()(inputs, train=True)`` turns into a batch. Every model of
#: ``mner.models.MODELS`` needs one line here: the contract suite fails without it.
CONTRACT_FIXTURES: dict[str, Callable[[Path], tuple[Any, list]]] = {
    "maf": tiny_maf,
    "mousing": tiny_fewshot("mousing"),
    "protobert": tiny_fewshot("protobert"),
    "nnshot": tiny_fewshot("nnshot"),
    "proto-maf": tiny_fewshot("proto-maf"),
}
