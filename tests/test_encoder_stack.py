"""One encoder stack for every model (issue 23, item 5): MAF and the few-shot taggers build, run,
group and save their encoders through :class:`mner.models.encoder_stack.EncoderStack`.

Checked: every registered model is one and overrides none of its pieces; a tweet without a view
has no visual token and a zero global vector whatever the model; a trained image encoder runs
once per forward (MAF's tokens and global vector come from the same run); the few-shot models
refuse a trainable image encoder; no model module builds an encoder of its own (the layout rule);
and the pieces give what the models computed before they shared them (the tokens projected view
by view, the layout).
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn

from mner.encoders.image import ImageEncoderConfig
from mner.errors import MNERError
from mner.models import MODELS
from mner.models.encoder_stack import EncoderStack
from model_fixtures import CONTRACT_FIXTURES, encoders, maf_config, one_thread, tiny_maf  # noqa: F401  (fixtures)

pytestmark = pytest.mark.usefixtures("one_thread")

SHARED = ("build_text_encoder", "build_visual_encoders", "visual_dims", "visual_processor", "visual_features",
          "project_visual", "param_groups")


@pytest.mark.parametrize("model_type", sorted(MODELS))
def test_every_model_reads_through_the_one_encoder_stack(model_type):
    cls = MODELS[model_type]
    assert issubclass(cls, EncoderStack)
    overridden = [name for name in SHARED if getattr(cls, name) is not getattr(EncoderStack, name)]
    assert overridden == [], f"{cls.__name__} re-implements {overridden}"


@pytest.mark.parametrize("model_type", sorted(MODELS))
def test_encoders_are_the_named_children_of_every_model(model_type, tmp_path):
    model, _ = CONTRACT_FIXTURES[model_type](tmp_path)
    children = dict(model.named_children())
    assert children["text_encoder"] is model.text_encoder
    for view, name in (("pixels", "image_encoder"), ("caption", "caption_encoder")):
        enc = getattr(model, name)
        assert (enc is not None) == (view in model.views)
        if enc is not None:
            assert children[name] is enc
    groups = model.param_groups()
    text = {id(p) for p in model.text_encoder.model.parameters()}
    assert {id(p) for p in groups["pretrained"]} == text            # tiny models: frozen visual encoders
    assert not {id(p) for p in groups["new"]} & text
    assert all(p.requires_grad for g in groups.values() for p in g)


def test_a_tweet_without_a_view_has_no_token_and_a_zero_global_vector(tmp_path):
    model, examples = tiny_maf(tmp_path)                              # both views; tweet 2 has neither
    model.eval()
    batch = model.processor()(examples)
    features = model.visual_features(batch.visual)
    assert [v for v, _ in features] == ["pixels", "caption"]
    for _, feats in features:
        assert feats.mask[:2].any(1).all() and not feats.mask[2].any()
        assert torch.count_nonzero(feats.pooled[2]) == 0 and torch.count_nonzero(feats.pooled[:2]) > 0
    tokens, mask, layout = model.project_visual(features, model.visual_proj)
    assert layout == tuple((v, f.tokens.shape[1]) for v, f in features)
    assert tokens.shape[:2] == mask.shape == (3, sum(r for _, r in layout))
    start = 0
    for view, feats in features:                                        # view after view, its own projection
        r = feats.tokens.shape[1]
        assert torch.equal(tokens[:, start:start + r], model.visual_proj[view](feats.tokens))
        assert torch.equal(mask[:, start:start + r], feats.mask)
        start += r


def test_a_trained_image_encoder_runs_once_per_forward(encoders, monkeypatch):  # noqa: F811
    from mner.data.example import Example
    from model_fixtures import random_image

    torch.manual_seed(0)
    cfg = maf_config(encoders, view="pixels")
    cfg = dataclasses.replace(cfg, image_encoder=dataclasses.replace(cfg.image_encoder, trainable=True))
    from mner.models import MAFModel

    model = MAFModel(cfg)
    calls = []
    inner = type(model.image_encoder).forward

    def counted(self, pixels):
        calls.append(pixels.shape[0])
        return inner(self, pixels)

    monkeypatch.setattr(type(model.image_encoder), "forward", counted)
    image = Path(encoders["bert"]).parent / "pixels-once.png"
    random_image(3).save(image)
    examples = [Example("a", ["Obama", "in", "Paris"], ["B-PER", "O", "B-LOC"], image=str(image)),
                Example("b", ["New", "York"], ["B-LOC", "I-LOC"], image=str(image))]
    batch = model.processor()(examples, train=True)
    assert batch.visual.pixel_values is not None                       # pixels, not cached features
    model.train()
    out = model(batch)
    out.loss.backward()
    assert calls == [2]
    assert any(p.grad is not None for p in model.image_encoder.parameters())


def test_the_few_shot_models_refuse_a_trainable_image_encoder(encoders):  # noqa: F811
    from mner.encoders.caption import CaptionEncoderConfig
    from mner.encoders.text import TextEncoderConfig
    from mner.models import ProtoMAFConfig, ProtoMAFModel

    cfg = ProtoMAFConfig(text_encoder=TextEncoderConfig(name=str(encoders["bert"])), visual_view="pixels",
                         image_encoder=ImageEncoderConfig(name=str(encoders["resnet"]), pretrained=False,
                                                          image_size=32, trainable=True),
                         caption_encoder=CaptionEncoderConfig(name=str(encoders["bert"])), hidden_dim=8,
                         interaction_heads=2)
    with pytest.raises(MNERError, match="frozen image encoder"):
        ProtoMAFModel(cfg)


def test_a_batch_without_its_view_is_an_error(tmp_path):
    model, _ = CONTRACT_FIXTURES["proto-maf"](tmp_path)
    if not model.views:
        pytest.fail("the proto-maf fixture should read a visual view")
    with pytest.raises(MNERError, match="model.processor"):
        model.visual_features(None)


SRC = Path(__file__).resolve().parents[1] / "src" / "mner" / "models"
ENCODERS = {"TextEncoder", "ImageEncoder", "CaptionEncoder"}
#: where a model module may build an encoder: the stack itself, the assets (an encoder rebuilt from a
#: checkpoint), and MOUSING's frozen copy of its text encoder for the graph's similarity space
ALLOWED = {"encoder_stack.py", "assets.py", "mousing/modeling_mousing.py"}


def test_no_model_module_builds_an_encoder_of_its_own():
    building = set()
    for f in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ENCODERS:
                building.add(f.relative_to(SRC).as_posix())
    assert building - ALLOWED == set()
    assert {"encoder_stack.py"} <= building                            # the scan sees calls


def test_mousing_builds_only_its_frozen_graph_copy():
    tree = ast.parse((SRC / "mousing" / "modeling_mousing.py").read_text(encoding="utf-8"))
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ENCODERS]
    assert [c.func.id for c in calls] == ["CaptionEncoder"]
    assert any(k.arg == "model" for k in calls[0].keywords)            # a copy of the text encoder's model


def test_project_visual_is_the_per_view_linear_map():
    from mner.encoders.features import VisualFeatures

    torch.manual_seed(0)
    proj = nn.ModuleDict({"pixels": nn.Linear(3, 4), "caption": nn.Linear(5, 4)})
    f1 = VisualFeatures(torch.randn(2, 2, 3), torch.tensor([[True, False], [True, True]]), torch.randn(2, 3))
    f2 = VisualFeatures(torch.randn(2, 3, 5), torch.tensor([[True, True, False], [False, False, False]]),
                        torch.randn(2, 5))
    tokens, mask, layout = EncoderStack.project_visual([("pixels", f1), ("caption", f2)], proj)
    assert layout == (("pixels", 2), ("caption", 3))
    assert torch.equal(tokens, torch.cat([proj["pixels"](f1.tokens), proj["caption"](f2.tokens)], 1))
    assert torch.equal(mask, torch.cat([f1.mask, f2.mask], 1))
