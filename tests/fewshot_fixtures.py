"""Shared helpers of the few-shot tests: hand-made episodes, a tiny four-type corpus, tiny
few-shot model configs.

Import the fixtures you use into a test module::

    from fewshot_fixtures import tiny_bert  # noqa: F401  (fixture)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mner.data.episodes import Episode
from mner.data.example import Example
from mner.encoders import CaptionEncoderConfig, TextEncoderConfig
from mner.models import MODELS
from tiny_models import make_tiny_bert

__all__ = ["tiny_bert", "episode_pair", "fewshot_model", "FEWSHOT_VARIANTS", "write_tiny_corpus"]

#: Every few-shot configuration the tests build: name -> (model_type, config options). The
#: baselines tag IO by default (Few-NERD); ``-bio`` are their earlier BIO versions.
FEWSHOT_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "protobert": ("protobert", {}),
    "nnshot": ("nnshot", {}),
    "protobert-bio": ("protobert", {"scheme": "bio"}),
    "nnshot-bio": ("nnshot", {"scheme": "bio"}),
    "proto-maf": ("proto-maf", {"hidden_dim": 16, "interaction_heads": 2}),
    "mousing": ("mousing", {"hidden_dim": 16}),
    "mousing-no-image": ("mousing", {"hidden_dim": 16, "no_image": True}),
    "mousing-no-intervention": ("mousing", {"hidden_dim": 16, "no_intervention": True}),
    "mousing-no-multiview": ("mousing", {"hidden_dim": 16, "no_multiview": True}),
    "mousing-no-mcis": ("mousing", {"hidden_dim": 16, "no_mcis": True}),
    "mousing-random": ("mousing", {"hidden_dim": 16, "intervention": {"mode": "random"}}),
    "mousing-gaussian": ("mousing", {"hidden_dim": 16, "intervention": {"mode": "gaussian"}}),
}


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    """A tiny random BERT folder (hidden 32, 2 layers): text and caption encoder of the tests."""
    return make_tiny_bert(tmp_path_factory.mktemp("fewshot_bert") / "bert", max_position_embeddings=64)


def ex(i: str, words: str, tags: str, caption: str | None = "a photo of a man in a city") -> Example:
    return Example(i, words.split(), tags.split(), caption=caption)


def episode_pair() -> list[Episode]:
    """Two 2-way episodes with different types (PER/LOC and ORG/MISC), hand-made."""
    ep1 = Episode(("PER", "LOC"),
                  (ex("s1", "john went to paris", "B-PER O O B-LOC"),
                   ex("s2", "mary smith at london", "B-PER I-PER O B-LOC")),
                  (ex("q1", "paris with john", "B-LOC O B-PER"),
                   ex("q2", "hello new york", "O B-LOC I-LOC")))
    ep2 = Episode(("ORG", "MISC"),
                  (ex("s3", "apple and google", "B-ORG O B-ORG"),
                   ex("s4", "the olympics are on", "O B-MISC O O", caption=None)),
                  (ex("q3", "google at the olympics", "B-ORG O O B-MISC"),))
    return [ep1, ep2]


def fewshot_model(bert: Path, variant: str, **options: Any):
    """A tiny random few-shot model of ``variant`` (a key of :data:`FEWSHOT_VARIANTS`)."""
    from mner.config import from_dict

    model_type, opts = FEWSHOT_VARIANTS[variant]
    cls = MODELS[model_type]
    raw = {"text_encoder": {"name": str(bert), "casing_dim": 4}, "caption_encoder": {"name": str(bert)},
           "dropout": 0.0, **opts, **options}
    return cls(from_dict(cls.config_class, raw, "model"))


_TRAIN = """IMGID:{i}
{a}\tB-{A}
meets\tO
{b}\tB-{B}
today\tO
"""


def write_tiny_corpus(folder: Path) -> Path:
    """A corpus in the Twitter format with four types (PER, LOC, ORG, OTHER), each split holding
    tweets that pair every two types, so that 2-way K=1 episodes of any pair can be drawn."""
    names = {"PER": ["john", "mary", "obama", "anna"], "LOC": ["paris", "london", "rome", "tokyo"],
             "ORG": ["google", "apple", "nasa", "fifa"], "OTHER": ["olympics", "oscars", "christmas", "superbowl"]}
    types = list(names)
    folder.mkdir(parents=True, exist_ok=True)
    for split, reps in (("train", 3), ("valid", 2), ("test", 2)):
        blocks, n = [], 0
        for r in range(reps):
            for x in range(4):
                for y in range(4):
                    if x == y:
                        continue
                    A, B = types[x], types[y]
                    blocks.append(_TRAIN.format(i=f"{split}{n}", a=names[A][(r + y) % 4], A=A,
                                                b=names[B][(r + x) % 4], B=B))
                    n += 1
        (folder / f"{split}.txt").write_text("\n".join(blocks), encoding="utf-8")
    return folder
