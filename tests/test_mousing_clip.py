"""MOUSING in CLIP's joint space (``shared_space: clip``), the poster's setting, on a tiny random
full CLIP checkpoint: the words come from CLIP's text tower and the patches from its vision tower,
both mapped by CLIP's own heads (copied from the checkpoint, not learned anew), then the graph."""

from __future__ import annotations

import pytest
import torch

from model_fixtures import one_thread, random_image  # noqa: F401
from mner.config import from_dict
from mner.data.episodes import Episode
from mner.data.example import Example
from mner.encoders import IMAGENET_MEAN, IMAGENET_STD
from mner.errors import MNERError
from mner.models import MOUSINGConfig, MOUSINGModel, load_model
from tiny_models import make_tiny_tokenizer, tiny_vocab, write_preprocessor_config

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    """A tiny random CLIPModel with a word-level-capable fast tokenizer and an image processor config."""
    from transformers import CLIPConfig, CLIPModel

    path = tmp_path_factory.mktemp("clip") / "clip"
    tower = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2)
    config = CLIPConfig(text_config=dict(tower, vocab_size=len(tiny_vocab()), max_position_embeddings=64,
                                         bos_token_id=2, eos_token_id=3, pad_token_id=0),
                        vision_config=dict(tower, image_size=32, patch_size=8), projection_dim=16)
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(str(path))
    make_tiny_tokenizer(path)
    write_preprocessor_config(path, image_size=32, mean=IMAGENET_MEAN, std=IMAGENET_STD, shortest_edge=36)
    return path


def _episodes(tmp_path):
    paths = []
    for i in range(4):
        p = tmp_path / f"img{i}.png"
        random_image(i).save(p)
        paths.append(str(p))

    def ex(i, words, tags, image):
        return Example(i, words.split(), tags.split(), image=image)

    return [Episode(("PER", "LOC"), (ex("s1", "john in paris", "B-PER O B-LOC", paths[0]),
                                     ex("s2", "mary at london", "B-PER O B-LOC", paths[1])),
                    (ex("q1", "paris with john", "B-LOC O B-PER", paths[2]),
                     ex("q2", "anna in rome", "B-PER O B-LOC", None)))]


def _model(clip_dir, **extra):
    raw = {"shared_space": "clip", "visual_view": "pixels", "dropout": 0.0,
           "text_encoder": {"name": str(clip_dir), "casing_dim": 0},
           "image_encoder": {"name": str(clip_dir), "pretrained": True}, **extra}
    torch.manual_seed(0)
    return MOUSINGModel(from_dict(MOUSINGConfig, raw, "model"))


def test_words_and_patches_meet_in_clips_space(clip_dir, tmp_path):
    from transformers import CLIPModel

    model = _model(clip_dir, no_mcis=True, update={"layers": 0}).eval()   # no graph update: the nodes come out
    clip = CLIPModel.from_pretrained(str(clip_dir)).eval()
    # the heads are CLIP's own, the width is CLIP's projection width, nothing learned in between
    assert torch.equal(model.clip_space.text_projection.weight, clip.text_projection.weight)
    assert torch.equal(model.clip_space.visual_projection.weight, clip.visual_projection.weight)
    assert not hasattr(model, "text_proj") and not hasattr(model, "visual_proj")
    batch = model.processor()(_episodes(tmp_path))
    part = batch.query
    with torch.no_grad():
        words, _, _ = model.encode(part)
        # a word node is CLIP's text-tower state of its first sub-token through text_projection
        states = clip.text_model(input_ids=part.words.input_ids,
                                 attention_mask=part.words.attention_mask).last_hidden_state
        first = states.gather(1, part.words.word_starts[..., None].expand(-1, -1, states.shape[-1]))
        expected = clip.text_projection(first)
        # a patch node is CLIP's vision-tower patch state through post_layernorm and visual_projection
        feats = part.visual.features["pixels"]
        patches = model.clip_space.patches(feats.tokens)
        expected_patches = clip.visual_projection(clip.vision_model.post_layernorm(feats.tokens))
    mask = part.words.word_mask
    assert words.shape[-1] == 16
    assert torch.allclose(words[mask], expected[mask], atol=1e-5)
    assert torch.allclose(patches, expected_patches, atol=1e-5)
    assert part.visual.present["pixels"].tolist() == [True, False]


def test_clip_space_trains_saves_and_loads(clip_dir, tmp_path):
    model = _model(clip_dir)
    batch = model.processor()(_episodes(tmp_path), train=True)
    model.train()
    out = model(batch)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert model.clip_space.text_projection.weight.grad is None  # CLIP's heads stay CLIP's
    assert model.graph is not None
    model.eval()
    model.save_pretrained(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    with torch.no_grad():
        a = model(model.processor()(_episodes(tmp_path))).emissions
        b = loaded(loaded.processor()(_episodes(tmp_path))).emissions
    assert torch.equal(a, b)


def test_clip_space_refusals():
    with pytest.raises(MNERError, match="visual_view: pixels"):
        from_dict(MOUSINGConfig, {"shared_space": "clip", "visual_view": "caption"}, "model")
    with pytest.raises(MNERError, match="shared_space"):
        from_dict(MOUSINGConfig, {"shared_space": "joint"}, "model")
