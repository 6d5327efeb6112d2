"""The controls of a model's visual view (:mod:`mner.controls`, ``mner evaluate --controls``): F1
with real, shuffled and no images / captions, and the matching module's probability and AUC, on
tiny random MAF models."""

from __future__ import annotations

import contextlib
import io
import json
import random
import statistics

import pytest
import torch

from mner.cli import main
from mner.controls import remove_views, rank_auc, shuffle_views, visual_controls
from mner.data.example import Example
from mner.models import MAFModel
from model_fixtures import encoders, maf_config, one_thread, random_image, sample_paths  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")


# ================================================================================ the AUC
@pytest.mark.parametrize("pos,neg,auc", [
    ([0.9, 0.8], [0.1, 0.2, 0.3], 1.0),            # perfect
    ([0.1, 0.2], [0.8, 0.9], 0.0),                 # inverted
    ([0.5, 0.5], [0.5, 0.5, 0.5], 0.5),            # all tied
    ([0.5, 0.7], [0.5, 0.1], 3.5 / 4),             # (0.5, 0.5) a tie: 0.5; the three other pairs won
    ([0.3], [0.3, 0.2, 0.4, 0.3], (0.5 + 1 + 0 + 0.5) / 4),
])
def test_rank_auc_hand_computed(pos, neg, auc):
    assert rank_auc(pos, neg) == pytest.approx(auc)


def test_rank_auc_is_the_pairwise_win_rate_and_none_when_a_side_is_empty():
    rng = random.Random(3)
    pos = [round(rng.random(), 1) for _ in range(30)]  # one decimal: many ties
    neg = [round(rng.random() * 0.8, 1) for _ in range(25)]
    pairs = [1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg]
    assert rank_auc(pos, neg) == pytest.approx(sum(pairs) / len(pairs))
    assert rank_auc([], [0.3]) is None and rank_auc([0.3], []) is None


# ================================================================================ the views
def _tweets() -> list[Example]:
    """Six tweets: images i0..i4 and captions (tweets 1 and 4 share one caption text); tweet 5 has neither."""
    caps = ["a dog", "a cat on a sofa", "a city", "two men", "a cat on a sofa", None]
    return [Example(f"t{i}", ("w",), ("O",), image=None if c is None else f"i{i}", caption=c)
            for i, c in enumerate(caps)]


def test_shuffled_views_are_a_seeded_permutation_of_the_tweets_with_a_view():
    exs = _tweets()
    out, n, kept = shuffle_views(exs, ("caption",), seed=1)
    assert n == 5 and out[5].caption is None  # the tweet without a caption gets none
    assert sorted(e.caption for e in out[:5]) == sorted(e.caption for e in exs[:5])  # the same captions, moved
    assert [e.caption for e in out] != [e.caption for e in exs]
    assert [e.image for e in out] == [e.image for e in exs]  # a caption model: the images stay
    assert [e.tokens for e in out] == [e.tokens for e in exs] and [e.id for e in out] == [e.id for e in exs]
    assert kept == sum(a.caption == b.caption for a, b in zip(out[:5], exs[:5]))
    # seeded: the same seed gives the same permutation, another seed another one
    assert shuffle_views(exs, ("caption",), seed=1)[0] == out
    assert any(shuffle_views(exs, ("caption",), seed=s)[0] != out for s in (2, 3, 4))


def test_a_shared_caption_counts_as_kept_and_both_views_move_together():
    exs = _tweets()
    for seed in range(20):
        out, n, kept = shuffle_views(exs, ("pixels", "caption"), seed)
        # image and caption travel together: every new (image, caption) pair is a tweet's
        assert {(e.image, e.caption) for e in out[:5]} == {(e.image, e.caption) for e in exs[:5]}
        fixed = sum(a.image == b.image for a, b in zip(out[:5], exs[:5]))
        assert kept == fixed
        out_c, _, kept_c = shuffle_views(exs, ("caption",), seed)  # the same permutation
        swapped_twins = sum({out_c[i].caption, exs[i].caption} == {"a cat on a sofa"} and out[i].image != exs[i].image
                            for i in (1, 4))
        assert kept_c == fixed + swapped_twins  # tweets 1 and 4 swapped keep their caption text


def test_remove_views_removes_what_the_model_reads():
    exs = _tweets()
    assert all(e.caption is None and e.image == x.image for e, x in zip(remove_views(exs, ("caption",)), exs))
    assert all(e.image is None and e.caption == x.caption for e, x in zip(remove_views(exs, ("pixels",)), exs))
    assert all(e.image is None and e.caption is None for e in remove_views(exs, ("pixels", "caption")))
    assert remove_views(exs, ()) == exs


# ================================================================================ on tiny models
_TEXTS = [["Obama", "visits", "Paris", "today"], ["the", "cat", "Tom", "sleeps"], ["Google", "opens", "in", "London"],
          ["a", "dog", "named", "Rex"], ["New", "York", "at", "night"], ["Trump", "and", "Merkel"],
          ["Apple", "store", "photo"], ["people", "in", "Berlin"], ["Milo", "after", "dinner"],
          ["London", "wedding", "people"]]


def _tags(tokens):
    return ["B-PER" if t[0].isupper() and i == 0 else "O" for i, t in enumerate(tokens)]


@pytest.fixture(scope="module")
def tweets(tmp_path_factory) -> list[Example]:
    """Ten tagged tweets with image files and captions; the fourth has neither."""
    folder = tmp_path_factory.mktemp("images")
    out = []
    for i, tokens in enumerate(_TEXTS):
        path = folder / f"t{i}.png"
        random_image(i).save(path)
        visual = i != 3
        out.append(Example(f"t{i}", tuple(tokens), tuple(_tags(tokens)), image=str(path) if visual else None,
                           caption=f"a photo number {i}" if visual else None))
    return out


class _Recording:
    """A processor whose collate keeps the examples of every batch it builds."""

    def __init__(self, processor):
        self.processor, self.seen = processor, []

    def collate(self, train=False):
        inner = self.processor.collate(train)

        def collate(examples):
            self.seen.append(list(examples))
            return inner(examples)

        return collate


def _match(model, examples) -> list[float]:
    """CM's probability per tweet, computed here from the model's modules (eval mode)."""
    seen = []
    handle = model.matching.register_forward_hook(lambda m, a, out: seen.append(torch.sigmoid(out)))
    with torch.no_grad():
        model.decode(model.processor()(examples))
    handle.remove()
    return torch.cat(seen).tolist()


@pytest.mark.parametrize("view", ["caption", "pixels", "both"])
def test_controls_decode_real_shuffled_and_no_views(encoders, tweets, view):
    torch.manual_seed(0)
    model = MAFModel(maf_config(encoders, view=view)).eval()
    views = model.views
    rec = _Recording(model.processor())
    c = visual_controls(model, tweets, rec, seed=5, batch_size=4)
    batches = [sum(rec.seen[k:k + 3], []) for k in (0, 3, 6)]  # three decodings of 10 tweets in batches of 4
    assert len(rec.seen) == 9
    real, shuffled, none = batches
    assert real == tweets
    expected, n, kept = shuffle_views(tweets, views, seed=5)
    assert shuffled == expected and (c.shuffled_tweets, c.kept_own) == (n, kept) == (9, kept)
    assert sum(a != b for a, b in zip(shuffled, tweets)) == 9 - kept >= 6  # the views really moved
    assert all(e.image is None for e in none) == ("pixels" in views)
    assert all(e.caption is None for e in none) == ("caption" in views)
    # the F1s are those of decoding each list; CM's figures those of its own probabilities
    from mner.evaluation import evaluate_examples, predict_tags
    from torch.utils.data import DataLoader

    def f1(exs):
        loader = DataLoader(exs, batch_size=4, collate_fn=model.processor().collate(False))
        return evaluate_examples(tweets, predict_tags(model, loader)).micro.f1

    assert (c.f1_real, c.f1_shuffled, c.f1_none) == (f1(tweets), f1(shuffled), f1(none))
    p_real, p_shuffled, p_none = _match(model, tweets), _match(model, shuffled), _match(model, none)
    has = [i for i in range(10) if i != 3]
    compared = [i for i in has if shuffled[i] != tweets[i]]  # pairs that kept their own view are left out
    m = c.match
    assert m.tweets == 9 and m.compared == len(compared) == 9 - kept
    assert m.real_mean == pytest.approx(statistics.fmean(p_real[i] for i in has), abs=1e-6)
    assert m.shuffled_mean == pytest.approx(statistics.fmean(p_shuffled[i] for i in has), abs=1e-6)
    assert m.real_std == pytest.approx(statistics.pstdev(p_real[i] for i in has), abs=1e-6)
    assert m.none_mean == pytest.approx(statistics.fmean(p_none), abs=1e-6)
    assert m.auc == pytest.approx(rank_auc([p_real[i] for i in compared], [p_shuffled[i] for i in compared]), abs=1e-6)
    assert m.real_higher == sum(p_real[i] > p_shuffled[i] for i in compared)
    assert m.real_mean != m.shuffled_mean  # a random CM does see another view
    json.dumps(c.to_dict())
    assert "F1 shuffled" in c.format() and "CM AUC real vs shuffled" in c.format()


def test_a_model_without_matching_has_no_match_figures(encoders, tweets):
    torch.manual_seed(0)
    model = MAFModel(maf_config(encoders, view="caption", no_matching=True)).eval()
    c = visual_controls(model, tweets, batch_size=4)
    assert c.match is None and c.to_dict()["match"] is None
    assert "cross-modal matching: none in this model" in c.format()


def test_a_text_only_model_gives_one_f1_three_times(encoders, tweets):
    torch.manual_seed(0)
    model = MAFModel(maf_config(encoders, no_image=True)).eval()
    rec = _Recording(model.processor())
    c = visual_controls(model, tweets, rec, batch_size=4)
    assert len(rec.seen) == 3  # decoded once: nothing to shuffle
    assert c.views == () and c.f1_real == c.f1_shuffled == c.f1_none and c.match is None
    assert "no visual view" in c.format()


def test_controls_need_a_view_to_shuffle(encoders, tweets):
    from mner.errors import MNERError

    torch.manual_seed(0)
    model = MAFModel(maf_config(encoders, view="pixels")).eval()
    with pytest.raises(MNERError, match="no tweet has an image"):
        visual_controls(model, remove_views(tweets, ("pixels",)))


# ================================================================================ the command
def _run(argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def saved(encoders, tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    both = MAFModel(maf_config(encoders, view="both")).save_pretrained(root / "both")
    pixels = MAFModel(maf_config(encoders, view="pixels")).save_pretrained(root / "pixels")
    text = MAFModel(maf_config(encoders, no_image=True)).save_pretrained(root / "text")
    return {"both": both, "pixels": pixels, "text": text}


def test_evaluate_controls_prints_and_returns_0(saved):
    paths = sample_paths()
    args = ["evaluate", saved["both"], paths["tweets"], "--split", "test", "--images", paths["images"],
            "--captions", paths["captions"], "--missing-images", "blank", "--controls"]
    code, out, err = _run(args)
    assert code == 0, err
    assert "controls (6 tweets, view: images + captions)" in out and "CM AUC real vs shuffled" in out
    assert "F1 shuffled images + captions" in out and "F1 no images + captions" in out
    code, out, err = _run(args + ["--json", "--control-seed", "3"])
    assert code == 0, err
    report = json.loads(out)
    ctl = report["controls"]
    assert ctl["f1_real"] == report["f1"] and ctl["shuffle_seed"] == 3 and ctl["tweets"] == 6
    assert set(ctl["match"]) >= {"real_mean", "shuffled_mean", "real_std", "auc", "real_higher"}


def test_evaluate_controls_of_a_text_only_checkpoint_and_a_clear_error(saved):
    paths = sample_paths()
    code, out, err = _run(["evaluate", saved["text"], paths["tweets"], "--controls", "--json"])
    assert code == 0, err
    ctl = json.loads(out)["controls"]
    assert ctl["views"] == [] and ctl["f1_real"] == ctl["f1_shuffled"] == ctl["f1_none"] == json.loads(out)["f1"]
    # a pixels model scored without any image: nothing to shuffle, one line, exit 2
    code, out, err = _run(["evaluate", saved["pixels"], paths["tweets"], "--missing-images", "blank", "--controls"])
    code, out, err2 = _run(["evaluate", saved["text"], paths["tweets"], "--control-seed", "3"])
    assert code == 2 and err2 == "mner: error: --control-seed is the seed of --controls: add --controls\n"
    last = err.strip().splitlines()[-1]
    assert code == 2 and "Traceback" not in err
    assert last == ("mner: error: no tweet has an image: the controls compare the real view with a shuffled one; "
                    "give the images (--images DIR)")


# ================================================================================ the caption as a segment
def test_the_caption_segment_variant_reads_the_caption_as_text_and_the_controls_move_it(encoders, tweets, tmp_path):
    """``caption_segment``: the tweet's caption enters the text encoder after the words (so the
    shuffled control changes the text input too), nothing else of the batch changes, and the
    variant saves, loads and decodes as it was; without the caption view it is a clear error."""
    from mner.config import ConfigError
    from mner.models import load_model

    torch.manual_seed(0)
    plain = MAFModel(maf_config(encoders, view="caption")).eval()
    torch.manual_seed(0)
    model = MAFModel(maf_config(encoders, view="caption", caption_segment=9)).eval()
    assert model.config.variant == "MAF, caption as a second segment"
    a, b = plain.processor()(tweets), model.processor()(tweets)
    assert torch.equal(a.words.word_starts, b.words.word_starts) and torch.equal(a.tags, b.tags)
    # the fourth tweet has no caption; the tiny vocabulary spells "a photo number 0" in 9 pieces
    assert b.words.num_context == 9 and b.words.num_context_cut == 0
    longer = b.words.attention_mask.sum(1) - a.words.attention_mask.sum(1)
    assert longer[3] == 0 and bool((longer[[i for i in range(10) if i != 3]] == 9 + 1).all())  # 9 pieces + [SEP]
    # the caption's words are in the text input: another caption, other ids
    shuffled, _, _ = shuffle_views(tweets, ("caption",), seed=5)
    c = model.processor()(shuffled)
    moved = [i for i in range(10) if shuffled[i].caption != tweets[i].caption]
    assert moved and all(not torch.equal(b.words.input_ids[i], c.words.input_ids[i]) for i in moved)
    # the same weights read other inputs: other emissions than the paper's model
    with torch.no_grad():
        assert not torch.allclose(plain(a).emissions, model(b).emissions)
    ctl = visual_controls(model, tweets, batch_size=4)
    assert ctl.views == ("caption",) and ctl.shuffled_tweets == 9
    folder = model.save_pretrained(tmp_path / "segment")
    loaded = load_model(folder).eval()
    assert loaded.config.caption_segment == 9
    with torch.no_grad():
        assert loaded.decode(loaded.processor()(tweets)) == model.decode(model.processor()(tweets))
    for bad in ({"view": "pixels"}, {"view": "caption", "no_image": True}):
        with pytest.raises(ConfigError, match="caption_segment reads the tweet's caption"):
            maf_config(encoders, caption_segment=8, **bad)
    assert MAFModel(maf_config(encoders, view="caption", caption_segment=4)).processor()(tweets).words.num_context_cut == 9
    with pytest.raises(ConfigError, match="choose one of the two variants"):
        maf_config(encoders, view="caption", caption_segment=9, matching_score="similarity")
    with pytest.raises(ConfigError, match="caption_segment must be >= 0"):
        maf_config(encoders, view="caption", caption_segment=-1)
