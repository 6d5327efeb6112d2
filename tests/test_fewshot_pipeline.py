"""Tagging a brand-new entity type from five annotated tweets: ``FewShotPipeline`` and
``mner fewshot predict``, on tiny random encoders.

NNShot, untrained: a query tweet that repeats a support tweet has, word for word, the support's
embeddings (eval mode, no dropout), so each word's nearest support word is itself and the tagger
must give back the support's tags. MOUSING (prototypes): trained for a few episodic steps on the
five tweets, it must then tag them as annotated through the pipeline."""

from __future__ import annotations

import json

import pytest

from fewshot_fixtures import FEWSHOT_VARIANTS, fewshot_model, tiny_bert  # noqa: F401
from model_fixtures import one_thread  # noqa: F401
from mner.cli.main import main
from mner.data.example import Example
from mner.data.formats import write_jsonl
from mner.errors import MNERError
from mner.fewshot.pipeline import FewShotPipeline

pytestmark = pytest.mark.usefixtures("one_thread")

SUPPORT = [
    ("ramen", "i love ramen"),
    ("pad thai", "pad thai for lunch"),
    ("ramen", "ramen again tonight"),
    ("tacos", "tacos with anna"),
    ("sushi", "best sushi in town"),
]


def support_examples() -> list[Example]:
    out = []
    for i, (dish, text) in enumerate(SUPPORT):
        words = text.split()
        d = dish.split()
        start = next(j for j in range(len(words)) if words[j:j + len(d)] == d)
        tags = ["O"] * len(words)
        tags[start] = "B-DISH"
        for j in range(start + 1, start + len(d)):
            tags[j] = "I-DISH"
        out.append(Example(f"s{i}", words, tags, caption="a bowl of food on a table"))
    return out


def _fit(model, steps: int = 30):
    """A few episodic steps on DISH episodes built from the five support tweets."""
    import torch

    from mner.data.episodes import Episode

    sup = support_examples()
    episodes = [Episode(("DISH",), tuple(sup[:3]), tuple(sup[3:])), Episode(("DISH",), tuple(sup[2:]), tuple(sup[:2]))]
    batch = model.processor()(episodes, train=True)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        model(batch).loss.backward()
        opt.step()
    return model.eval()


@pytest.mark.parametrize("variant", ["nnshot", "mousing"])
def test_pipeline_tags_a_new_type_from_five_tweets(tiny_bert, variant):
    model = fewshot_model(tiny_bert, variant)
    if variant == "mousing":
        model = _fit(model)
    pipe = FewShotPipeline(model, support_examples())
    assert pipe.types == ["DISH"]
    ents = pipe("pad thai for lunch", caption="a bowl of food on a table")
    assert [(e["text"], e["type"], e["start"], e["end"]) for e in ents] == [("pad thai", "DISH", 0, 8)]
    assert 0.0 < ents[0]["confidence"] <= 1.0
    batch = pipe(["i love ramen", "best sushi in town", ""], caption="a bowl of food on a table")
    assert [[e["text"] for e in b] for b in batch] == [["ramen"], ["sushi"], []]


@pytest.mark.parametrize("variant", sorted(FEWSHOT_VARIANTS))
def test_the_support_set_is_encoded_once_with_the_same_entities(tiny_bert, variant):
    """Issue 23: the episodic pipeline encodes its support set once; every later batch runs the
    encoder on its queries only, and the entities (confidences included) are those of the whole
    model run on each episode."""
    import torch

    torch.manual_seed(0)
    model = fewshot_model(tiny_bert, variant).eval()
    texts = ["pad thai for lunch", "🍜 ramen with anna tonight", "best sushi in town", "nothing to eat", "tacos"]
    whole = FewShotPipeline(model, support_examples(), batch_size=2, cache_support=False)
    once = FewShotPipeline(model, support_examples(), batch_size=2)
    calls = []
    handle = model.register_forward_pre_hook(lambda *_: calls.append("forward"))
    encoded = []
    original = model.encode
    model.encode = lambda part, train=False: (encoded.append(part.words.word_mask.shape[0]), original(part, train))[1]
    try:
        got = once(texts, caption="a bowl of food on a table")
        again = once(texts[:2], caption="a bowl of food on a table")
    finally:
        handle.remove()
        del model.encode
    # three batches of queries, then one: the support (5 tweets) encoded once, before the first
    assert encoded == [5, 2, 2, 1, 2] and calls == []
    assert got == whole(texts, caption="a bowl of food on a table")
    assert again == got[:2]


def test_pipeline_refuses_unusable_support(tiny_bert):
    model = fewshot_model(tiny_bert, "protobert")
    with pytest.raises(MNERError, match="empty"):
        FewShotPipeline(model, [])
    with pytest.raises(MNERError, match="no entity"):
        FewShotPipeline(model, [Example("a", ["just", "words"], ["O", "O"])])
    with pytest.raises(MNERError, match="without tags"):
        FewShotPipeline(model, [Example("a", ["ramen"])])


def test_cli_predict_from_a_support_file(tiny_bert, tmp_path, capsys):
    model = fewshot_model(tiny_bert, "nnshot")
    model.save_pretrained(tmp_path / "model")
    support = tmp_path / "dish.jsonl"
    write_jsonl(support_examples(), support)
    code = main(["fewshot", "predict", str(tmp_path / "model"), "--support", str(support),
                 "--text", "tacos with anna", "--caption", "a bowl of food on a table"])
    assert code == 0
    captured = capsys.readouterr()
    record = json.loads(captured.out.strip().splitlines()[-1])
    assert [(e["text"], e["type"]) for e in record["entities"]] == [("tacos", "DISH")]
    assert "types DISH" in captured.err
    assert main(["fewshot", "predict", str(tmp_path / "model"), "--support", str(support)]) == 2
