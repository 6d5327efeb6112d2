"""What a model's output carries beside the tags (issue 23, item 3): MAF's match probability
``y^_m`` and, asked for as transformers' ``output_attentions``, the cross-modal interaction's
attention, read by the pipeline, the service, the batch tagger and the controls from the forward
that tagged the tweet (no forward hooks in ``src/``: ``tests/test_layout.py``).

Each test here would fail if the field were absent, constant or computed on other inputs: the
values are checked against the modules they come from, run by hand on the same tensors.
"""

from __future__ import annotations

import pytest
import torch

from mner.batch.tagging import tag_batch
from mner.data.example import Example
from mner.models import MAFModel
from mner.pipeline import Pipeline
from model_fixtures import encoders, maf_config, one_thread, random_image  # noqa: F401  (fixtures)

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = ["Obama meets Merkel in Berlin", "Paris 🌃 at night", "New York"]


@pytest.fixture(scope="module")
def maf(encoders):
    torch.manual_seed(3)
    return MAFModel(maf_config(encoders, view="both")).eval()


def _inputs():
    images = [random_image(0, size=48), random_image(1, size=48), None]
    captions = ["a man on a bridge", "a city at night", None]       # the third tweet has no view
    return images, captions


def _examples(captions):
    return [Pipeline._example(i, t, c) for i, (t, c) in enumerate(zip(TEXTS, captions))]


def test_match_probability_is_the_matching_modules_own_output(maf):
    images, captions = _inputs()
    seen = []
    handle = maf.matching.register_forward_hook(lambda _m, _a, out: seen.append(torch.sigmoid(out.float())))
    try:
        preds = Pipeline(maf).run(_examples(captions), images)
    finally:
        handle.remove()
    (expected,) = seen
    assert preds[0].match_probability == pytest.approx(float(expected[0]), abs=1e-7)
    assert preds[1].match_probability == pytest.approx(float(expected[1]), abs=1e-7)
    assert preds[0].match_probability != preds[1].match_probability
    assert preds[2].match_probability is None          # no image, no caption: nothing to match


def test_attentions_are_the_attention_modules_weights_and_change_nothing_else(maf):
    images, captions = _inputs()
    pipe = Pipeline(maf)
    plain = pipe.run(_examples(captions), images)
    seen = {}

    def grab(_module, args, kwargs, _out):             # the inputs of the last block's attention
        seen["args"], seen["mask"] = args[:3], kwargs["key_padding_mask"]

    block = maf.interaction.blocks[-1].attention
    handle = block.register_forward_hook(grab, with_kwargs=True)
    try:
        explained = pipe.run(_examples(captions), images, output_attentions=True)
    finally:
        handle.remove()
    with torch.no_grad():                              # the module's own weights (need_weights=True)
        seen["w"] = block(*seen["args"], key_padding_mask=seen["mask"], need_weights=True,
                          average_attn_weights=True)[1]
    assert [p.entities for p in explained] == [p.entities for p in plain]          # confidences too
    assert [p.match_probability for p in explained] == [p.match_probability for p in plain]
    assert all(p.attention is None for p in plain)
    layout = explained[0].visual_layout
    assert [v for v, _ in layout] == ["pixels", "caption"] and all(n > 0 for _, n in layout)
    for k, p in enumerate(explained):
        words = len(_examples(captions)[k].tokens)
        assert p.attention.shape == (words, sum(n for _, n in layout))
        torch.testing.assert_close(p.attention, seen["w"][k, :words].float(), atol=1e-6, rtol=1e-5)
        assert torch.allclose(p.attention.sum(-1), torch.ones(words), atol=1e-5)


def test_a_text_only_model_and_an_episodic_one_have_no_extras(encoders):
    torch.manual_seed(0)
    text_only = MAFModel(maf_config(encoders, no_image=True))
    assert not text_only.outputs_match and not text_only.outputs_attentions
    (pred,) = Pipeline(text_only).run([Example("0", ("Obama",), text="Obama", offsets=((0, 5),))],
                                      output_attentions=True)
    assert pred.match_probability is None and pred.attention is None


def test_the_batch_tagger_and_the_controls_read_the_same_probability(maf):
    images, captions = _inputs()
    preds = Pipeline(maf).run(_examples(captions), images)
    rows = [{"id": str(i), "text": t, "image": img, "caption": c}
            for i, (t, img, c) in enumerate(zip(TEXTS, images, captions))]
    tagged = tag_batch(Pipeline(maf, batch_size=8), rows)
    assert [r["match_probability"] for r in tagged] == [
        None if p.match_probability is None else round(p.match_probability, 4) for p in preds]

    from torch.utils.data import DataLoader

    from mner.evaluation import predict_tags

    examples = [Example(str(i), ex.tokens, ("O",) * len(ex.tokens), caption=ex.caption)
                for i, ex in enumerate(_examples(captions))]
    processor = maf.processor()
    loader = DataLoader(examples, batch_size=8, collate_fn=lambda exs: processor(exs, images=images))
    got = predict_tags(maf, loader).match_probability
    assert got[:2] == pytest.approx([preds[0].match_probability, preds[1].match_probability], abs=1e-7)
    assert len(got) == 3        # the controls read one per tweet, the tweet without a view included
