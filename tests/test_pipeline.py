"""The inference pipeline: raw strings and token lists, character offsets, per-item images and
captions in a batch, PIL images and paths, inputs longer than the text model, empty input."""

from __future__ import annotations

import pytest
import torch

from mner.data.tokenize import tokenize_text
from mner.errors import MNERError
from mner.models import Decoded, MAFModel
from mner.pipeline import Pipeline
from model_fixtures import ForwardRecorder, encoders, maf_config, one_thread, random_image  # noqa: F401  (fixtures)

pytestmark = pytest.mark.usefixtures("one_thread")


def _every_word_a_person(model: MAFModel) -> MAFModel:
    """Emissions that make every word its own PER entity (B-PER everywhere)."""
    with torch.no_grad():
        model.emissions.weight.zero_()
        model.emissions.bias.fill_(-20.0)
        model.emissions.bias[model.label_set.index("B-PER")] = 20.0
    return model


@pytest.fixture(scope="module")
def both_model(encoders) -> MAFModel:
    torch.manual_seed(0)
    return MAFModel(maf_config(encoders, view="both")).eval()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipeline-images")
    pil = [random_image(s, size=48) for s in range(3)]
    paths = []
    for i, img in enumerate(pil):
        paths.append(folder / f"img{i}.png")  # PNG: the file holds exactly the PIL image's pixels
        img.save(paths[-1])
    return pil, paths


# ============================================================================ offsets
def test_entities_point_into_the_raw_string(encoders):
    torch.manual_seed(0)
    pipe = Pipeline(_every_word_a_person(MAFModel(maf_config(encoders, no_image=True))))
    text = "  RT @user:  Obama\tmeets   Merkel in Berlin!! http://t.co/x  "
    entities = pipe(text)
    tokens, offsets = tokenize_text(text)
    assert [e["text"] for e in entities] == tokens
    for k, e in enumerate(entities):
        assert text[e["start"]:e["end"]] == e["text"]
        assert (e["start"], e["end"]) == offsets[k] and (e["token_start"], e["token_end"]) == (k, k + 1)
        assert e["type"] == "PER" and 0.99 <= e["confidence"] <= 1.0
    covered = {i for e in entities for i in range(e["start"], e["end"])}
    assert covered == {i for i, ch in enumerate(text) if not ch.isspace()}


def test_multi_word_spans_and_their_confidence(encoders, monkeypatch):
    torch.manual_seed(0)
    model = MAFModel(maf_config(encoders, no_image=True))
    pipe = Pipeline(model)
    text = "Barack  Obama visits New\tYork !"
    tags = ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O"]
    confidences = [0.9, 0.7, 0.99, 0.6, 0.8, 0.5]
    monkeypatch.setattr(model, "decode", lambda batch, confidences_=False, **kw: Decoded([tags], [confidences]))
    entities = pipe(text)
    assert [(e["text"], e["type"], e["start"], e["end"]) for e in entities] == [
        ("Barack  Obama", "PER", 0, 13), ("New\tYork", "LOC", 21, 29)]
    assert [e["confidence"] for e in entities] == [0.7, 0.6]  # the span's least sure word
    assert all(text[e["start"]:e["end"]] == e["text"] for e in entities)


def test_token_input_offsets_into_the_joined_tokens(encoders):
    torch.manual_seed(0)
    pipe = Pipeline(_every_word_a_person(MAFModel(maf_config(encoders, no_image=True))))
    tokens = ["RT", "@user", ":", "New", "York", "!"]
    entities = pipe(tokens, is_split_into_words=True)
    joined = " ".join(tokens)
    assert [e["text"] for e in entities] == tokens
    assert all(joined[e["start"]:e["end"]] == e["text"] for e in entities)
    batch = pipe([tokens, ["Paris"]], is_split_into_words=True)
    assert len(batch) == 2 and batch[0] == entities and [e["text"] for e in batch[1]] == ["Paris"]
    # a list of strings without is_split_into_words is a batch of texts
    texts = pipe(["New York", "Paris"])
    assert [[e["text"] for e in ents] for ents in texts] == [["New", "York"], ["Paris"]]


def test_input_longer_than_the_text_model_is_tagged_over_every_word(encoders, monkeypatch):
    torch.manual_seed(0)
    model = _every_word_a_person(MAFModel(maf_config(encoders, text="bert16", view="pixels")))
    assert model.text_encoder.max_length == 16
    words = [f"w{i}x" for i in range(60)]  # ~2 sub-tokens each: far beyond 16 positions
    text = " ".join(words)
    recorder = ForwardRecorder(model, monkeypatch)
    entities = Pipeline(model)(text, image=random_image(1))
    batch, _ = recorder.calls[-1]
    assert batch.words.input_ids.shape[1] > 16
    assert [e["text"] for e in entities] == words
    assert entities[-1]["end"] == len(text) and all(text[e["start"]:e["end"]] == e["text"] for e in entities)


def test_empty_input(both_model):
    pipe = Pipeline(both_model)
    assert pipe("") == []
    assert pipe([], is_split_into_words=True) == []
    out = pipe(["", "Obama in Paris", ""], caption=[None, "a man", None])
    assert out[0] == [] and out[2] == [] and isinstance(out[1], list)
    assert out[1] == pipe("Obama in Paris", caption="a man")  # the empty items change nothing


def test_whitespace_only_input_gives_no_entity(both_model):
    pipe = Pipeline(both_model)
    assert pipe("   \t ") == []
    assert pipe(["Obama in Paris", " "])[1] == []


# ============================================================================ images and captions
def test_batch_routes_each_item_its_own_image_and_caption(both_model, images, monkeypatch):
    pil, paths = images
    pipe = Pipeline(both_model)
    texts = ["Rob after a fish dinner", "Rob after a fish dinner", "Kai in Paris today"]
    imgs = [pil[0], None, paths[2]]
    caps = ["a cat on a sofa", "a man with a camera", None]
    recorder = ForwardRecorder(both_model, monkeypatch)
    batch_out = pipe(texts, image=imgs, caption=caps)
    batch_em = recorder.emissions()
    batch, _ = recorder.calls[-1]
    assert batch.visual.present["pixels"].tolist() == [True, False, True]
    assert batch.visual.present["caption"].tolist() == [True, True, False]
    for i in range(3):
        single = pipe(texts[i], image=imgs[i], caption=caps[i])
        assert single == batch_out[i]
        torch.testing.assert_close(recorder.emissions()[0], batch_em[i], atol=1e-5, rtol=1e-5)
    # the same text with the other item's image and caption is tagged from other evidence
    pipe(texts[0], image=imgs[1], caption=caps[1])
    assert not torch.allclose(recorder.emissions()[0], batch_em[0], atol=1e-4)
    # one image and caption for all the texts
    pipe(texts, image=paths[2], caption="a cat on a sofa")
    batch, _ = recorder.calls[-1]
    tokens = batch.visual.features["pixels"].tokens
    assert torch.equal(tokens[0], tokens[1]) and torch.equal(tokens[0], tokens[2])
    with pytest.raises(MNERError, match="3 texts but 2 images"):
        pipe(texts, image=imgs[:2])


def test_image_as_pil_or_path_is_the_same_image(both_model, images, monkeypatch):
    pil, paths = images
    pipe = Pipeline(both_model)
    recorder = ForwardRecorder(both_model, monkeypatch)
    by_pil = pipe("Luna looks amazing", image=pil[1], caption="a cat")
    em_pil = recorder.emissions()[0]
    by_path = pipe("Luna looks amazing", image=paths[1], caption="a cat")
    by_str = pipe("Luna looks amazing", image=str(paths[1]), caption="a cat")
    assert by_pil == by_path == by_str
    assert torch.equal(recorder.emissions()[0], em_pil)
    # other image modes are converted (grey here), not refused: tagged exactly as the same grey
    # image converted to RGB beforehand, and from other evidence than the colour image
    grey = pil[1].convert("L")
    by_grey = pipe("Luna looks amazing", image=grey, caption="a cat")
    em_grey = recorder.emissions()[0]
    assert by_grey == pipe("Luna looks amazing", image=grey.convert("RGB"), caption="a cat")
    assert torch.equal(recorder.emissions()[0], em_grey)
    assert not torch.allclose(em_grey, em_pil)
    none = pipe("Luna looks amazing", image=None, caption=None)
    assert isinstance(none, list)
    assert not torch.allclose(recorder.emissions()[0], em_pil)


def test_missing_image_file_is_a_clear_error(both_model, tmp_path):
    from mner.data.images import ImageError

    with pytest.raises(ImageError, match="missing"):
        Pipeline(both_model)("Obama", image=tmp_path / "nope.jpg")


def test_from_pretrained_gives_the_same_entities(both_model, images, tmp_path):
    pil, paths = images
    folder = both_model.save_pretrained(tmp_path / "model")
    loaded = Pipeline.from_pretrained(folder, device="cpu")
    pipe = Pipeline(both_model)
    args = (["Obama in Paris", "Rob after a fish dinner"],)
    kwargs = {"image": [paths[0], pil[2]], "caption": ["a man", None]}
    assert loaded(*args, **kwargs) == pipe(*args, **kwargs)
    assert loaded.info() == {"model_type": "maf", "task": "supervised", "labels": list(both_model.label_set.labels),
                             "views": ["pixels", "caption"], "variant": "MAF", "backend": "torch"}


def test_pipeline_runs_the_image_encoder_fused_with_the_same_entities(both_model, images, monkeypatch):
    pil, paths = images
    args = (["Obama in Paris", "Rob after a fish dinner", "Kai"],)
    kwargs = {"image": [paths[0], pil[2], paths[1]], "caption": ["a man", None, "a cat"]}
    recorder = ForwardRecorder(both_model, monkeypatch)
    plain_pipe = Pipeline(both_model, fuse_images=False)
    plain = plain_pipe(*args, **kwargs)
    plain_em = recorder.emissions()
    plain_feats = recorder.calls[-1][0].visual.features["pixels"].tokens
    assert not both_model.image_encoder.fingerprint.endswith(":fused")
    fused_pipe = Pipeline(both_model)
    assert both_model.image_encoder.fingerprint.endswith(":fused")
    fused = fused_pipe(*args, **kwargs)
    fused_feats = recorder.calls[-1][0].visual.features["pixels"].tokens
    assert both_model.image_encoder._fused is not None  # the folded copy ran
    assert fused == plain or [[(e["type"], e["start"], e["end"]) for e in x] for x in fused] == \
        [[(e["type"], e["start"], e["end"]) for e in x] for x in plain]
    torch.testing.assert_close(fused_feats, plain_feats, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(recorder.emissions(), plain_em, rtol=1e-4, atol=1e-4)


def test_many_inputs_are_batched_by_length_and_come_back_in_input_order(both_model, images, monkeypatch):
    pil, paths = images
    texts = ["Obama and Merkel and Macron in Paris today with Trudeau", "Kai", "Rob after a fish dinner", "",
             "Luna", "Merkel in Berlin and Madrid"]
    imgs = [paths[0], pil[1], None, None, paths[2], pil[0]]
    caps = ["a man", None, "a cat", None, "a dog", None]
    one_by_one = [Pipeline(both_model)(t, image=i, caption=c) for t, i, c in zip(texts, imgs, caps)]
    pipe = Pipeline(both_model, batch_size=2)
    recorder = ForwardRecorder(both_model, monkeypatch)
    batched = pipe(texts, image=imgs, caption=caps)

    def keys(result):
        return [[(e["text"], e["type"], e["start"], e["end"]) for e in ents] for ents in result]

    assert keys(batched) == keys(one_by_one)  # each input its own entities, in input order
    # batches of similar lengths, shortest first; the empty text never reaches the model
    seen = [int(n) for _, out in recorder.calls for n in out.mask.sum(1).tolist()]  # words per tweet
    assert seen == sorted(seen) and len(seen) == 5 and len(recorder.calls) == 3
