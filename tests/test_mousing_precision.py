"""MOUSING's decoding options against over-prediction (issue 27, item 4; docs/results/mousing-precision.md).

Each option is a config field whose default is the decoder as trained. The tests check that each does
what it names, in the direction it claims, on tiny random models: the span threshold never adds an
entity and keeps exactly the entities at or above it; the transition scale multiplies the learned
scores only (1 is the trained decoder, the constraints stay); nearest O scores the O column against
the O support words and nothing else; the fields survive save/load and the CLI; checkpoints written
before the fields existed decode as they did.
"""

from __future__ import annotations

import json

import pytest
import torch

from fewshot_fixtures import episode_pair, fewshot_model, tiny_bert  # noqa: F401
from model_fixtures import one_thread  # noqa: F401
from mner.crf import DISALLOWED
from mner.errors import MNERError
from mner.models.fewshot.metric import squared_euclidean
from mner.tagging import get_spans

pytestmark = pytest.mark.usefixtures("one_thread")

NEW_FIELDS = ("min_confidence", "transition_scale", "o_distance", "o_neighbours")


def _spans(tags: list[list[str]]) -> set[tuple]:
    return {(i, *s.key) for i, row in enumerate(tags) for s in get_spans(row)}


def _decode(model, batch, **fields):
    before = {k: getattr(model.config, k) for k in fields}
    for k, v in fields.items():
        setattr(model.config, k, v)
    try:
        return model.decode(batch, confidences=True)
    finally:
        for k, v in before.items():
            setattr(model.config, k, v)


@pytest.mark.parametrize("variant", ["mousing", "protobert"])
def test_a_higher_confidence_threshold_never_predicts_more_and_keeps_exactly_the_confident_spans(tiny_bert, variant):
    torch.manual_seed(0)
    model = fewshot_model(tiny_bert, variant).eval()
    model.config.o_bias = -3.0                       # many entities to drop
    batch = model.processor()(episode_pair())
    base = _decode(model, batch)
    assert base.tags == _decode(model, batch, min_confidence=0.0).tags
    confidence = {(i, *s.key): min(base.confidences[i][s.start:s.end])
                  for i, row in enumerate(base.tags) for s in get_spans(row)}
    assert len(confidence) >= 3
    previous = _spans(base.tags)
    for t in (0.2, 0.4, 0.5, 0.6, 0.8, 0.99):
        out = _decode(model, batch, min_confidence=t)
        kept = _spans(out.tags)
        assert kept <= previous                      # never a new entity
        assert kept == {s for s, c in confidence.items() if c >= t}
        for i, row in enumerate(out.tags):           # a kept span's words keep their tags and confidences
            for j, tag in enumerate(row):
                if tag != "O":
                    assert tag == base.tags[i][j] and out.confidences[i][j] == base.confidences[i][j]
        previous = kept
    assert any(c < 0.99 for c in confidence.values()) and _spans(_decode(model, batch, min_confidence=0.99).tags) \
        < _spans(base.tags)
    with pytest.raises(MNERError, match="min_confidence"):
        type(model.config)(min_confidence=1.0)


def test_the_transition_scale_multiplies_the_learned_scores_and_keeps_the_constraints(tiny_bert):
    torch.manual_seed(0)
    model = fewshot_model(tiny_bert, "mousing").eval()
    with torch.no_grad():
        model.decoder.abstract.scores.copy_(torch.randn(15))
    labels = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")
    trained = model.decoder.abstract(labels)
    same = model.decoder.transitions(labels, 1.0)
    assert all(torch.equal(a, b) for a, b in zip(trained, same))
    for tau in (0.0, 0.003, 2.5, 100.0):
        for a, b in zip(trained, model.decoder.transitions(labels, tau)):
            forbidden = a <= DISALLOWED / 2
            assert torch.equal(b <= DISALLOWED / 2, forbidden)                  # O->I stays forbidden
            torch.testing.assert_close(b[~forbidden], tau * a[~forbidden])
    # at decoding: 1 is today's decoder exactly, the loss never changes
    batch = model.processor()(episode_pair(), train=True)
    base = model(batch)
    model.config.transition_scale = 1.0
    assert torch.equal(model(batch).emissions, base.emissions)
    model.config.transition_scale = 7.0
    scaled = model(batch)
    assert torch.equal(scaled.loss, base.loss)
    torch.testing.assert_close(scaled.transitions[scaled.transitions > DISALLOWED / 2],
                               7.0 * base.transitions[base.transitions > DISALLOWED / 2])
    # a scale large enough lets the transitions decide: O->O and start->O far above the rest -> all O
    model.config.transition_scale = 1.0
    with torch.no_grad():
        model.decoder.abstract.scores.zero_()
        model.decoder.abstract.scores[[0, 10, 12]] = 1.0                        # O->O, start->O, O->end
    assert any(t != "O" for row in _decode(model, batch, o_bias=-3.0).tags for t in row)
    assert all(set(row) == {"O"} for row in _decode(model, batch, o_bias=-3.0, transition_scale=1e3).tags)
    for bad in (-1.0, float("inf")):
        with pytest.raises(MNERError, match="transition_scale"):
            type(model.config)(transition_scale=bad)


def _o_distances(model, batch):
    """Per view, the squared distances (Q, W', n_O) of each query word to the O support words of its
    episode, computed word by word."""
    s_views, q_views = model.encode(batch.support), model.encode(batch.query)
    out = []
    for v in (0, 1):
        s, q = s_views[v], q_views[v]
        rows = []
        for i in range(q.shape[0]):
            e = int(batch.query_episode[i])
            mine = batch.support_episode == e
            o_words = s[mine][batch.support.tags[mine] == 0]
            rows.append(squared_euclidean(q[i], o_words))
        out.append(rows)
    return out, s_views, q_views


def test_nearest_o_scores_the_o_column_against_the_o_support_words_and_nothing_else(tiny_bert):
    torch.manual_seed(0)
    model = fewshot_model(tiny_bert, "mousing", o_distance="prototype", o_neighbours=1).eval()
    batch = model.processor()(episode_pair(), train=True)
    with torch.no_grad():
        base = model(batch)
        model.config.o_distance = "nearest"
        near = model(batch)
        (d1, d2), s_views, q_views = _o_distances(model, batch)
        alpha = model.decoder.scale
        mask = batch.query.words.word_mask
        for i in range(len(d1)):
            want = -alpha * (d1[i].min(-1).values + d2[i].min(-1).values) / 2
            torch.testing.assert_close(near.emissions[i, :, 0][mask[i]], want[mask[i]])
        assert torch.equal(near.emissions[..., 1:], base.emissions[..., 1:])   # entity prototypes untouched
        assert torch.equal(near.loss, base.loss)                                # never the training loss
        assert not torch.equal(near.emissions[..., 0][mask], base.emissions[..., 0][mask])
        # a larger k never raises the O score (the mean of more of the smallest distances)
        previous = near.emissions[..., 0]
        for k in (2, 3, 100):
            model.config.o_neighbours = k
            cur = model(batch).emissions[..., 0]
            assert bool((cur[mask] <= previous[mask] + 1e-5).all())
            previous = cur
        # k >= every O word: the mean distance to the O words = the prototype's distance plus the O
        # words' spread around their mean (so the prototype is the trained decoder, shifted per episode)
        for i in range(len(d1)):
            e = int(batch.query_episode[i])
            spread = []
            for v, sv in ((0, s_views[0]), (1, s_views[1])):
                mine = batch.support_episode == e
                o_words = sv[mine][batch.support.tags[mine] == 0]
                spread.append(((o_words - o_words.mean(0)) ** 2).sum(-1).mean())
            want = base.emissions[i, :, 0] - alpha * (spread[0] + spread[1]) / 2
            torch.testing.assert_close(previous[i][mask[i]], want[mask[i]], rtol=1e-4, atol=1e-4)
    with pytest.raises(MNERError, match="o_distance"):
        type(model.config)(o_distance="farthest")
    with pytest.raises(MNERError, match="o_neighbours"):
        type(model.config)(o_neighbours=0)


@pytest.mark.parametrize("variant", ["mousing-no-multiview", "mousing-no-mcis"])
def test_nearest_o_reads_the_one_decoded_view_of_the_one_view_variants(tiny_bert, variant):
    torch.manual_seed(0)
    model = fewshot_model(tiny_bert, variant, o_distance="nearest", o_neighbours=1).eval()
    batch = model.processor()(episode_pair())
    with torch.no_grad():
        out = model(batch)
        (_, d2), _, _ = _o_distances(model, batch)
        mask = batch.query.words.word_mask
        for i in range(len(d2)):
            torch.testing.assert_close(out.emissions[i, :, 0][mask[i]],
                                       (-model.decoder.scale * d2[i].min(-1).values)[mask[i]])


def test_the_fields_round_trip_through_save_and_load_and_decode_alike(tiny_bert, tmp_path):
    from mner.models import load_model

    torch.manual_seed(0)
    fields = {"min_confidence": 0.4, "transition_scale": 0.5, "o_distance": "nearest", "o_neighbours": 3,
              "o_bias": 0.25}
    model = fewshot_model(tiny_bert, "mousing", **fields).eval()
    folder = model.save_pretrained(tmp_path / "m")
    saved = json.loads((folder / "config.json").read_text())["config"]
    assert {k: saved[k] for k in fields} == fields
    loaded = load_model(folder).eval()
    assert {k: getattr(loaded.config, k) for k in fields} == fields
    batch = model.processor()(episode_pair())
    a, b = model.decode(batch, confidences=True), loaded.decode(batch, confidences=True)
    assert a.tags == b.tags and a.confidences == b.confidences


def test_checkpoints_without_the_fields_decode_as_they_were_trained(tiny_bert, tmp_path):
    """A checkpoint written before the fields existed (every stored benchmark cell) loads with the
    decoder it was trained and scored with, whatever today's defaults for new checkpoints are."""
    from mner.models import load_model

    torch.manual_seed(0)
    model = fewshot_model(tiny_bert, "mousing").eval()
    folder = model.save_pretrained(tmp_path / "old")
    cfg = json.loads((folder / "config.json").read_text())
    for name in NEW_FIELDS:
        cfg["config"].pop(name)
    (folder / "config.json").write_text(json.dumps(cfg))
    old = load_model(folder).eval()
    assert (old.config.min_confidence, old.config.transition_scale, old.config.o_distance,
            old.config.o_neighbours) == (0.0, 1.0, "prototype", 1)
    as_trained = fewshot_model(tiny_bert, "mousing", o_distance="prototype").eval()
    as_trained.load_state_dict(model.state_dict())
    batch = model.processor()(episode_pair())
    assert old.decode(batch).tags == as_trained.decode(batch).tags
    with torch.no_grad():
        assert torch.equal(old(batch).emissions, as_trained(batch).emissions)


def test_new_mousing_checkpoints_decode_with_the_dev_chosen_o_distance(tiny_bert, tmp_path):
    """What ``mner fewshot train`` writes for a new MOUSING model: ``o_distance: nearest`` (k = 2),
    chosen on dev episodes (docs/results/mousing-precision.md); it is saved explicitly, so it loads so."""
    from mner.models import load_model
    from mner.models.mousing import MOUSINGConfig

    assert (MOUSINGConfig().o_distance, MOUSINGConfig().o_neighbours) == ("nearest", 2)
    model = fewshot_model(tiny_bert, "mousing")
    folder = model.save_pretrained(tmp_path / "new")
    assert json.loads((folder / "config.json").read_text())["config"]["o_distance"] == "nearest"
    assert load_model(folder).config.o_distance == "nearest"


def test_the_cli_sets_each_field_and_refuses_bad_values(tiny_bert, tmp_path, capsys):
    from mner.cli.main import main
    from mner.data.episodes import write_episodes

    torch.manual_seed(0)
    folder = fewshot_model(tiny_bert, "mousing").save_pretrained(tmp_path / "m")
    episodes = tmp_path / "episodes.jsonl"
    write_episodes(episode_pair(), episodes)
    args = ["fewshot", "evaluate", str(folder), str(episodes), "--json"]
    assert main(args + ["--o-distance", "nearest", "--o-neighbours", "2", "--transition-scale", "0",
                        "--min-confidence", "0.5", "--o-bias", "0.1"]) == 0
    assert json.loads(capsys.readouterr().out)["micro"]["predicted"] >= 0
    assert main(args + ["--min-confidence", "0.999999"]) == 0      # nothing left
    assert json.loads(capsys.readouterr().out)["micro"]["predicted"] == 0
    assert main(args + ["--transition-scale", "-1"]) == 2
    assert main(args + ["--min-confidence", "1"]) == 2
    protobert = fewshot_model(tiny_bert, "protobert").save_pretrained(tmp_path / "p")
    assert main(["fewshot", "evaluate", str(protobert), str(episodes), "--o-distance", "nearest"]) == 2
    capsys.readouterr()


def test_the_pipeline_decodes_with_the_models_threshold(tiny_bert):
    from mner.fewshot.pipeline import FewShotPipeline

    torch.manual_seed(0)
    model = fewshot_model(tiny_bert, "mousing", o_bias=-3.0).eval()
    support = [x for ep in episode_pair()[:1] for x in ep.support]
    pipe = FewShotPipeline(model, support)
    texts = ["paris with john", "hello new york", "john smith went to rome"]
    before = pipe(texts)
    assert sum(map(len, before)) >= 2
    model.config.min_confidence = 0.6
    after = pipe(texts)
    key = [{(e["start"], e["end"], e["type"]) for e in ents} for ents in after]
    for ents_b, k in zip(before, key):
        assert k == {(e["start"], e["end"], e["type"]) for e in ents_b if e["confidence"] >= 0.6 - 5e-5}
    assert all(e["confidence"] >= 0.6 - 5e-5 for ents in after for e in ents)
