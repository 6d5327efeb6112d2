"""The few-shot models (ProtoBERT, NNShot/StructShot, ProtoMAF, MOUSING and its ablations) on tiny
random encoders and hand-made episodes: the episode processor, forward/decode, what each ablation
switch changes, a few episodic steps, save/load, episodic scoring and the few-shot pipeline."""

from __future__ import annotations

import pytest
import torch

from fewshot_fixtures import FEWSHOT_VARIANTS, episode_pair, ex, fewshot_model, tiny_bert  # noqa: F401
from model_fixtures import one_thread  # noqa: F401
from mner.data.episodes import Episode
from mner.errors import MNERError
from mner.fewshot.evaluation import EpisodePredictions, score_episodes
from mner.models import load_model
from mner.processing.tagging import IGNORE_INDEX

pytestmark = pytest.mark.usefixtures("one_thread")


def test_episode_processor_encodes_tags_with_each_episodes_labels(tiny_bert):
    model = fewshot_model(tiny_bert, "protobert")
    ep1, ep2 = episode_pair()
    batch = model.processor()([ep1, ep2])
    assert batch.labels == [("O", "B-PER", "I-PER", "B-LOC", "I-LOC"), ("O", "B-ORG", "I-ORG", "B-MISC", "I-MISC")]
    assert batch.support_episode.tolist() == [0, 0, 1, 1]
    assert batch.query_episode.tolist() == [0, 0, 1]
    # "mary smith at london" in episode 1: B-PER I-PER O B-LOC
    assert batch.support.tags[1, :4].tolist() == [1, 2, 0, 3]
    # "the olympics are on" in episode 2: MISC is its second type
    assert batch.support.tags[3, :4].tolist() == [0, 3, 0, 0]
    assert batch.query.tags[2, :4].tolist() == [1, 0, 0, 3]
    assert (batch.support.tags[0, 4:] == IGNORE_INDEX).all()
    assert batch.query_labels[2] == batch.labels[1]
    assert batch.without_tags().query.tags is None and batch.without_tags().support.tags is not None


def test_episode_processor_refusals(tiny_bert):
    proc = fewshot_model(tiny_bert, "protobert").processor()
    ep1, _ = episode_pair()
    three = Episode(("PER", "LOC", "ORG"), ep1.support, ep1.query)
    with pytest.raises(MNERError, match="same number of types"):
        proc([ep1, three])
    bad = Episode(("PER", "LOC"), (ex("x", "apple inc", "B-ORG I-ORG"),) + ep1.support, ep1.query)
    with pytest.raises(MNERError, match="x.*'B-ORG' is not one of this episode's labels"):
        proc([bad])
    unlabelled = Episode(("PER", "LOC"), (ep1.support[0].replace(tags=None),), ep1.query)
    with pytest.raises(MNERError, match="support tweet without tags"):
        proc([unlabelled])


@pytest.mark.parametrize("variant", list(FEWSHOT_VARIANTS))
def test_forward_backward_and_decode(tiny_bert, variant):
    torch.manual_seed(0)
    model = fewshot_model(tiny_bert, variant)
    batch = model.processor()(episode_pair(), train=True)
    model.train()
    out = model(batch)
    assert out.loss is not None and torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert out.emissions.shape[:2] == out.mask.shape and out.emissions.shape[0] == 3
    assert out.labels == batch.query_labels
    decoded = model.decode(batch)
    assert [len(t) for t in decoded.tags] == [3, 3, 4]
    for tags, labels in zip(decoded.tags, batch.query_labels):
        assert set(tags) <= set(labels)


def test_ablation_switches_change_only_what_they_name(tiny_bert):
    full = fewshot_model(tiny_bert, "mousing")
    keys = set(full.state_dict())
    assert full.intervention.mode == "learned" and full.update.num_layers == 2 and full.views == ("caption",)

    def only(variant, removed_prefixes=(), **expect):
        m = fewshot_model(tiny_bert, variant)
        gone = keys - set(m.state_dict())
        assert {k for k in gone if not k.startswith(tuple(removed_prefixes))} == set(), variant
        assert all(any(k.startswith(p) for k in gone) for p in removed_prefixes), variant
        assert set(m.state_dict()) <= keys
        for attr, value in expect.items():
            obj = m
            for part in attr.split("__"):
                obj = getattr(obj, part)
            assert obj == value, (variant, attr)
        return m

    only("mousing-no-image", ["visual_proj.", "caption_encoder."], views=())
    only("mousing-no-intervention", ["intervention."], intervention__mode="none")
    only("mousing-random", ["intervention."], intervention__mode="random")
    only("mousing-gaussian", ["intervention."], intervention__mode="gaussian")
    only("mousing-no-mcis", ["update."], update__num_layers=0)
    nm = only("mousing-no-multiview")
    assert nm.config.no_multiview and nm.config.variant == "MOUSING w/o Multi-view"
    # no_multiview decodes and trains on the intervened view only: one CRF loss, not two
    batch = nm.processor()(episode_pair(), train=True)
    nm.train()
    assert set(nm(batch).losses) == {"crf", "invariance"}
    full.train()
    assert set(full(batch).losses) == {"crf_g1", "crf_g2", "invariance"}


def test_no_image_ignores_captions_and_full_model_reads_them(tiny_bert):
    eps = episode_pair()
    other = [Episode(e.types, tuple(x.replace(caption="a dog on a beach") for x in e.support),
                     tuple(x.replace(caption="a dog on a beach") for x in e.query)) for e in eps]
    for variant, changes in (("mousing", True), ("mousing-no-image", False), ("proto-maf", True)):
        torch.manual_seed(0)
        m = fewshot_model(tiny_bert, variant).eval()
        proc = m.processor()
        with torch.no_grad():
            a, b = m(proc(eps)).emissions, m(proc(other)).emissions
        assert (not torch.allclose(a, b)) == changes, variant


def test_a_few_episodic_steps_reduce_the_loss(tiny_bert):
    torch.manual_seed(0)
    model = fewshot_model(tiny_bert, "mousing")
    batch = model.processor()(episode_pair(), train=True)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    losses = []
    for _ in range(15):
        out = model(batch)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(float(out.loss.detach()))
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("variant", ["mousing", "nnshot", "proto-maf"])
def test_save_load_round_trip(tiny_bert, tmp_path, variant):
    torch.manual_seed(0)
    model = fewshot_model(tiny_bert, variant).eval()
    if variant == "nnshot":
        model.fit_transitions([e.tags for ep in episode_pair() for e in ep.support])
        model.config.decoder = "structshot"
    batch = model.processor()(episode_pair())
    model.save_pretrained(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert type(loaded) is type(model) and loaded.config == model.config
    with torch.no_grad():
        a, b = model(batch), loaded(loaded.processor()(episode_pair()))
    assert torch.equal(a.emissions, b.emissions)
    assert torch.equal(a.transitions, b.transitions)


def test_structshot_needs_source_transitions_and_changes_decoding(tiny_bert):
    model = fewshot_model(tiny_bert, "nnshot", decoder="structshot").eval()
    batch = model.processor()(episode_pair())
    with pytest.raises(MNERError, match="abstract transitions"):
        model(batch)
    model.fit_transitions([["B-PER", "I-PER", "O"], ["O", "B-LOC", "O"], ["O", "O"]])
    out = model(batch)
    # emissions are log-probabilities (tau-rescaled softmax), transitions forbid O -> I
    assert torch.allclose(out.emissions.exp().sum(-1)[out.mask], torch.ones(int(out.mask.sum())), atol=1e-5)
    o, i_per = 0, 2
    assert out.transitions[o, i_per] <= -1e3 and out.start[i_per] <= -1e3


def test_score_episodes_pools_query_tweets_by_position():
    ep1, ep2 = episode_pair()
    # the same tweet in two episodes: pooled twice, by position
    twice = [ep1, ep1]
    gold = [[list(q.tags) for q in ep.query] for ep in twice]
    perfect = score_episodes(twice, EpisodePredictions(gold))
    assert perfect.micro.f1 == 1.0 and perfect.micro.tp == 6
    half = EpisodePredictions([gold[0], [["O"] * 3, ["O"] * 3]])
    rep = score_episodes(twice, half)
    assert rep.micro.precision == 1.0 and rep.micro.recall == 0.5
    with pytest.raises(ValueError):
        score_episodes([ep1, ep2], EpisodePredictions(gold[:1]))


@pytest.mark.parametrize("variant", ["protobert", "nnshot", "proto-maf", "mousing", "mousing-no-multiview"])
def test_cached_episode_evaluation_equals_the_whole_model_per_episode(tiny_bert, variant):
    """Evaluation encodes each distinct tweet once and runs only the episode head per batch; the
    predictions (and so every score) must be those of the whole model run on each episode."""
    from mner.fewshot.evaluation import predict_episodes

    torch.manual_seed(0)
    model = fewshot_model(tiny_bert, variant)
    if variant == "nnshot":
        model.fit_transitions([e.tags for ep in episode_pair() for e in ep.support])
        model.config.decoder = "structshot"
    ep1, ep2 = episode_pair()
    # the same tweets in several episodes, in batches that pad them to different lengths
    episodes = [ep1, ep2, Episode(ep1.types, ep1.query, ep1.support), ep1, ep2]
    proc = model.processor()
    cached = predict_episodes(model, episodes, proc, batch_size=2)
    whole = predict_episodes(model, episodes, proc, batch_size=3, cache=False)
    assert cached.tags == whole.tags
    assert [len(t) for t in cached.tags] == [len(e.query) for e in episodes]


@pytest.mark.parametrize("variant", ["protobert", "mousing"])
def test_o_bias_shifts_only_the_o_emission_at_decoding_and_never_the_loss(tiny_bert, variant):
    torch.manual_seed(0)
    model = fewshot_model(tiny_bert, variant).eval()
    batch = model.processor()(episode_pair(), train=True)
    base = model(batch)
    model.config.o_bias = 2.5
    biased = model(batch)
    assert torch.allclose(biased.loss, base.loss)
    assert torch.allclose(biased.emissions[..., 0], base.emissions[..., 0] + 2.5)
    assert torch.equal(biased.emissions[..., 1:], base.emissions[..., 1:])
    # a bias large enough makes every query word O; a very negative one leaves no word O
    model.config.o_bias = 1e4
    assert all(set(t) == {"O"} for t in model.decode(batch).tags)
    model.config.o_bias = -1e4
    assert all("O" not in t for t in model.decode(batch).tags)
    with pytest.raises(MNERError, match="o_bias"):
        type(model.config)(o_bias=float("nan"))
