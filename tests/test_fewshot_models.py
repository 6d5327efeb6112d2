"""The few-shot models (ProtoBERT, NNShot/StructShot, ProtoMAF, MOUSING and its ablations) on tiny
random encoders and hand-made episodes: the episode processor, forward/decode, what each ablation
switch changes, a few episodic steps, save/load, episodic scoring and the few-shot pipeline."""

from __future__ import annotations

import json

import pytest
import torch

from fewshot_fixtures import FEWSHOT_VARIANTS, episode_pair, ex, fewshot_model, tiny_bert  # noqa: F401
from model_fixtures import one_thread  # noqa: F401
from mner.data.episodes import Episode
from mner.errors import MNERError
from mner.fewshot.evaluation import EpisodePredictions, predict_episodes, score_episodes
from mner.models import TaggerOutput, load_model
from mner.models.fewshot.abstract_transitions import ABSTRACT_KINDS, IO_ABSTRACT_KINDS
from mner.processing.episodes import encode_episode_tags
from mner.processing.tagging import IGNORE_INDEX
from mner.tagging import score

pytestmark = pytest.mark.usefixtures("one_thread")


def test_episode_processor_encodes_tags_with_each_episodes_labels(tiny_bert):
    model = fewshot_model(tiny_bert, "protobert-bio")
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


def test_episode_processor_encodes_io_tags_for_an_io_model(tiny_bert):
    model = fewshot_model(tiny_bert, "protobert")
    assert model.config.scheme == "io" and model.scheme == "io"  # Few-NERD's tagging is the default
    ep1, ep2 = episode_pair()
    batch = model.processor()([ep1, ep2])
    assert batch.scheme == "io"
    assert batch.labels == [("O", "I-PER", "I-LOC"), ("O", "I-ORG", "I-MISC")] and batch.num_classes == 3
    # "mary smith at london" B-PER I-PER O B-LOC: B- and I- are one class
    assert batch.support.tags[1, :4].tolist() == [1, 1, 0, 2]
    assert batch.support.tags[3, :4].tolist() == [0, 2, 0, 0]  # "the olympics are on"
    assert batch.query.tags[1, :3].tolist() == [0, 2, 2]  # "hello new york" O B-LOC I-LOC
    assert batch.query.tags[2, :4].tolist() == [1, 0, 0, 2]
    assert batch.without_tags().scheme == "io" and batch.to("cpu").scheme == "io"
    # two adjacent mentions of one type become one run; the padding stays -100
    tweet = ex("t", "paris london and rome", "B-LOC B-LOC O B-LOC")
    tags = encode_episode_tags([tweet], [0], [batch.labels[0]], (1, 5), "io")
    assert tags.tolist() == [[2, 2, 0, 2, IGNORE_INDEX]]
    # a BIO model's processor is unchanged, and a batch of the other scheme is refused
    bio = fewshot_model(tiny_bert, "protobert-bio")
    assert bio.processor()([ep1]).labels == [ep1.labels]
    with pytest.raises(MNERError, match="'bio' episode batch for a model that tags 'io'"):
        model(bio.processor()([ep1]))


def test_io_decoded_tags_are_iob2_and_score_in_strict_mode(tiny_bert):
    model = fewshot_model(tiny_bert, "protobert")
    labels = ("O", "I-a", "I-b")
    path = [1, 1, 2, 0, 1, 2, 2]
    emissions = torch.nn.functional.one_hot(torch.tensor([path]), 3).float()
    out = TaggerOutput(None, emissions, torch.ones(1, 7, dtype=torch.bool), labels=[labels], scheme="io")
    got = model.decode_output(out).tags
    # a run of one type is one entity (B- then I-), a change of type starts a new one
    assert got == [["B-a", "I-a", "B-b", "O", "B-a", "B-b", "I-b"]]
    gold = [["B-a", "I-a", "B-b", "O", "B-a", "B-b", "I-b"]]
    assert score(gold, got, mode="strict").micro.f1 == 1.0
    raw = [[labels[c] for c in path]]  # what the classes say before the conversion
    assert score(gold, raw, mode="strict").micro.f1 < 1.0
    bio_out = TaggerOutput(None, emissions, out.mask, labels=[labels])  # iob2 (default): unchanged names
    assert model.decode_output(bio_out).tags == raw

    # end to end: NNShot with the support as its own query finds every support word's class
    for variant in ("nnshot", "nnshot-bio"):
        torch.manual_seed(0)
        nn_model = fewshot_model(tiny_bert, variant).eval()
        ep1, _ = episode_pair()
        episodes = [Episode(ep1.types, ep1.support, ep1.support)]
        preds = predict_episodes(nn_model, episodes, nn_model.processor())
        assert preds.tags == [[list(x.tags) for x in ep1.support]], variant
        assert score_episodes(episodes, preds, mode="strict").micro.f1 == 1.0


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
    for tags, labels in zip(decoded.tags, batch.query_labels):  # IOB2 tags of the row's types
        assert set(tags) <= {"O"} | {f"{p}-{label[2:]}" for label in labels if label != "O" for p in "BI"}
        if model.scheme == "io":  # IO decodes to well-formed IOB2 (an argmax over BIO classes may not)
            assert not any(t.startswith("I-") and (j == 0 or tags[j - 1][2:] != t[2:]) for j, t in enumerate(tags))


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


def test_io_model_save_load_round_trip(tiny_bert, tmp_path):
    torch.manual_seed(0)
    model = fewshot_model(tiny_bert, "nnshot", decoder="structshot", temperature=0.3).eval()
    model.fit_transitions([e.tags for ep in episode_pair() for e in ep.support])
    assert list(model.config.transitions) == list(IO_ABSTRACT_KINDS)
    model.save_pretrained(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())["config"]
    assert saved["scheme"] == "io" and saved["transitions"] == model.config.transitions
    loaded = load_model(tmp_path / "m")
    assert loaded.config == model.config and loaded.scheme == "io"
    batch = model.processor()(episode_pair())
    with torch.no_grad():
        a, b = model(batch), loaded(loaded.processor()(episode_pair()))
    assert a.labels[0] == ("O", "I-PER", "I-LOC")
    assert torch.equal(a.emissions, b.emissions) and torch.equal(a.transitions, b.transitions)
    assert loaded.decode(batch).tags == model.decode(batch).tags


@pytest.mark.parametrize("variant", ["protobert-bio", "nnshot-bio"])
def test_a_checkpoint_without_scheme_loads_as_bio_and_decodes_as_before(tiny_bert, tmp_path, variant):
    """Checkpoints saved before the ``scheme`` field were trained with BIO classes."""
    torch.manual_seed(0)
    model = fewshot_model(tiny_bert, variant).eval()
    if variant == "nnshot-bio":
        model.fit_transitions([e.tags for ep in episode_pair() for e in ep.support])
        assert list(model.config.transitions) == list(ABSTRACT_KINDS)
        model.config.decoder = "structshot"
    model.save_pretrained(tmp_path / "old")
    path = tmp_path / "old" / "config.json"
    data = json.loads(path.read_text())
    del data["config"]["scheme"]  # as written before the field existed
    path.write_text(json.dumps(data))
    loaded = load_model(tmp_path / "old")
    assert loaded.config.scheme == "bio" and loaded.scheme == "bio" and loaded.config == model.config
    batch = loaded.processor()(episode_pair())
    assert batch.labels[0] == ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")
    with torch.no_grad():
        a, b = model(model.processor()(episode_pair())), loaded(batch)
    assert torch.equal(a.emissions, b.emissions)
    assert torch.equal(a.transitions, b.transitions)
    assert loaded.decode(batch).tags == model.decode(batch).tags
    # a checkpoint that names its scheme keeps it
    data["config"]["scheme"] = "io"
    if "transitions" in data["config"]:
        data["config"]["transitions"] = None  # the BIO estimate would not fit an IO model
    path.write_text(json.dumps(data))
    assert load_model(tmp_path / "old").config.scheme == "io"


def test_io_structshot_is_the_reference_decoder(tiny_bert):
    model = fewshot_model(tiny_bert, "nnshot").eval()
    batch = model.processor()(episode_pair())
    with torch.no_grad():
        nn_scores = model(batch).emissions
    model.fit_transitions([["B-PER", "I-PER", "O"], ["O", "B-LOC", "B-PER"], ["O", "O"]])
    # by hand: start->O 2, start->I 1 | O->O 1, O->I 1 | I->O 1, I->I(same) 1, I->I(other) 1
    assert model.config.transitions == pytest.approx({"start->O": 2 / 3, "start->I": 1 / 3, "O->O": 1 / 2,
                                                      "O->I": 1 / 2, "I->O": 1 / 3, "I->I(same)": 1 / 3,
                                                      "I->I(other)": 1 / 3})
    model.config.decoder = "structshot"
    outs = {}
    for tau in (1.0, 0.2):
        model.config.temperature = tau
        with torch.no_grad():
            outs[tau] = model(batch)
    # emissions: NNShot's log-probabilities whatever tau; tau acts on the transitions
    for out in outs.values():
        torch.testing.assert_close(out.emissions, torch.log_softmax(nn_scores, -1))
        assert out.transitions.shape == (3, 3) and out.start.shape == (3,) and out.end is None
    o, i_per, i_loc = 0, 1, 2
    assert outs[1.0].transitions[o, i_per].exp().item() == pytest.approx(1 / 2 / 2)  # o_i / N
    assert outs[1.0].transitions[i_per, i_loc].exp().item() == pytest.approx(1 / 3)  # x_y / (N - 1)
    assert not torch.allclose(outs[1.0].transitions, outs[0.2].transitions)
    decoded = model.decode(batch).tags
    assert all(set(t) <= {"O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"}
               for t in decoded)
    # transitions of the other scheme are refused up front
    bio_estimate = {k: -1.0 for k in ABSTRACT_KINDS}
    with pytest.raises(MNERError, match="the io StructShot needs"):
        type(model.config)(transitions=bio_estimate)
    assert type(model.config)(scheme="bio", transitions=bio_estimate).scheme == "bio"


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
    model = fewshot_model(tiny_bert, "nnshot-bio", decoder="structshot").eval()
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


@pytest.mark.parametrize("variant", ["nnshot", "mousing"])
def test_a_checkpoint_decoded_again_reuses_its_encoded_chunks_and_predicts_the_same(tiny_bert, variant):
    """``encoded=``: one model decoded several ways on the same episodes (a grid of decoding options,
    diagnostics) encodes each chunk of distinct tweets once; every decoding predicts what it predicts
    without the dict, and other episodes are still encoded."""
    from mner.fewshot.diagnose import diagnose
    from mner.fewshot.evaluation import predict_episodes

    torch.manual_seed(0)
    model = fewshot_model(tiny_bert, variant)
    if variant == "nnshot":
        model.fit_transitions([e.tags for ep in episode_pair() for e in ep.support])
    ep1, ep2 = episode_pair()
    episodes = [ep1, ep2, ep1]
    calls = []
    encode = model.encode
    model.encode = lambda part, train=False: calls.append(part) or encode(part, train)
    proc = model.processor()
    encoded: dict = {}
    options = ([("decoder", "nnshot"), ("decoder", "structshot"), ("temperature", 0.05)] if variant == "nnshot"
               else [("o_bias", 0.0), ("o_bias", 1.5), ("o_distance", "nearest")])
    for i, (key, value) in enumerate(options):
        setattr(model.config, key, value)
        before = len(calls)
        reused = predict_episodes(model, episodes, proc, batch_size=2, encode_batch_size=2, encoded=encoded)
        encodes = len(calls) - before
        fresh = predict_episodes(model, episodes, proc, batch_size=2, encode_batch_size=2)
        assert reused.tags == fresh.tags, (key, value)
        assert encodes == (len(encoded) if i == 0 else 0)   # the first call encodes every chunk, no later one
    assert len(encoded) >= 2
    # other episodes (another chunking of the tweets) are encoded, and their rows added
    n = len(encoded)
    swapped = [Episode(ep2.types, ep2.query, ep2.support)]
    other = predict_episodes(model, swapped, proc, batch_size=2, encode_batch_size=3, encoded=encoded)
    assert other.tags == predict_episodes(model, swapped, proc, batch_size=2, encode_batch_size=3).tags
    assert len(encoded) > n
    if variant == "mousing":
        assert diagnose(model, episodes, proc, encoded=encoded) == diagnose(model, episodes, proc)


@pytest.mark.parametrize("variant", ["protobert", "protobert-bio", "mousing"])
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
