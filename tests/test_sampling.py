"""The greedy N-way K~2K sampler: its invariants (on hand-made pools and on the benchmark),
its refusals (fast, never a hang), its own RNG, EpisodeDataset and the protocol files."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from mner.data.episodes import Episode, file_sha256, read_episodes
from mner.data.example import Example
from mner.data.sampling import (
    PAIR_NAMES,
    TARGET_PAIRS,
    EpisodeDataset,
    EpisodeSampler,
    count_mentions,
    episode_violations,
    pair_name,
    parse_types,
    restrict_types,
    source_types,
    write_protocol,
)
from mner.errors import MNERError


def ex(id: str, text: str, tags: str) -> Example:
    return Example(id=id, tokens=tuple(text.split(" ")), tags=tuple(tags.split()), source=f"pool.txt:{id}")


def synthetic_pool(n: int = 60, seed: int = 0) -> list[Example]:
    """Tweets with 0-3 mentions of PER/LOC/ORG, some adjacent, some texts repeated."""
    rng = random.Random(seed)
    pool = []
    for i in range(n):
        toks, tags = [], []
        for _ in range(rng.randint(0, 3)):
            typ = rng.choice(("PER", "LOC", "ORG"))
            length = rng.randint(1, 2)
            toks += [f"w{rng.randint(0, 5)}" for _ in range(length)]
            tags += [f"B-{typ}"] + [f"I-{typ}"] * (length - 1)
            if rng.random() < 0.5:
                toks.append("and")
                tags.append("O")
        toks.append("!")
        tags.append("O")
        pool.append(Example(id=f"t{i}", tokens=tuple(toks), tags=tuple(tags)))
    return pool


def mentions(exs) -> Counter:
    c: Counter = Counter()
    for e in exs:
        c.update(count_mentions(e.tags))
    return c


def assert_invariants(ep: Episode, types: tuple[str, ...], k: int, qk: int | None = None) -> None:
    qk = k if qk is None else qk
    assert ep.types == types
    ep.validate()
    for exs, kk in ((ep.support, k), (ep.query, qk)):
        c = mentions(exs)
        assert set(c) <= set(types)  # only target types
        for t in types:
            assert kk <= c[t] <= 2 * kk, (t, c, kk)
        for e in exs:  # every tweet was added for a reason: it has a target mention
            assert count_mentions(e.tags)
    assert not {e.id for e in ep.support} & {e.id for e in ep.query}
    assert not {" ".join(e.tokens) for e in ep.support} & {" ".join(e.tokens) for e in ep.query}
    assert episode_violations(ep, k, qk) == []


# ----------------------------------------------------------------------------- tags


def test_restrict_types_known_answer():
    e = ex("1", "Obama visits Paris with Apple Inc", "B-PER O B-LOC O B-ORG I-ORG")
    assert restrict_types(e, ["PER", "ORG"]).tags == ("B-PER", "O", "O", "O", "B-ORG", "I-ORG")
    assert restrict_types(e, ["LOC"]).tags == ("O", "O", "B-LOC", "O", "O", "O")
    assert restrict_types(e, ["PER", "LOC", "ORG"]) is e
    assert restrict_types(e, ["LOC"]).source == e.source  # still names where it came from


def test_count_mentions_the_bio_way():
    assert count_mentions(["B-PER", "B-PER"]) == Counter(PER=2)
    assert count_mentions(["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "B-PER"]) == Counter(PER=2, LOC=1)
    assert count_mentions(["O", "O"]) == Counter()


def test_adjacent_same_type_mentions_are_two_in_the_sampler():
    # with K=1 a tweet holding "B-PER B-PER" has 2 PER: allowed (<= 2K), and never merged to 1
    pool = [ex("a", "Ann Bob", "B-PER B-PER"), ex("b", "Cy", "B-PER"), ex("c", "Dee Eve", "B-PER B-PER")]
    sampler = EpisodeSampler(pool, ["PER"], 1, seed=3)
    seen = Counter()
    for _ in range(30):
        ep = sampler.sample()
        assert_invariants(ep, ("PER",), 1)
        for e in ep.support + ep.query:
            seen[e.id] += 1
            assert mentions([e])["PER"] == (2 if e.id in "ac" else 1)
    assert set(seen) == {"a", "b", "c"}
    # but with three adjacent mentions the tweet can never fit K=1 (3 > 2K)
    pool3 = pool + [ex("d", "F G H", "B-PER B-PER B-PER")]
    s3 = EpisodeSampler(pool3, ["PER"], 1, seed=0)
    assert all("d" not in {e.id for e in s3.sample().support + s3.sample().query} for _ in range(20))


def test_orphan_i_read_as_b_and_other_types_dropped():
    pool = [ex("a", "x Ann", "O I-PER"), ex("b", "Bo in Rome", "B-PER O B-LOC"), ex("c", "Cy", "B-ORG")]
    sampler = EpisodeSampler(pool, ["PER"], 1, seed=0)
    assert sampler.pool[0].tags == ("O", "B-PER")
    assert sampler.pool[1].tags == ("B-PER", "O", "O")
    assert sampler.candidates == [0, 1]  # c has no PER mention
    ep = sampler.sample()
    assert {e.id for e in ep.support + ep.query} == {"a", "b"}
    assert_invariants(ep, ("PER",), 1)


# ----------------------------------------------------------------------------- sampler


@pytest.mark.parametrize("k, qk", [(1, None), (2, None), (1, 3)])
def test_invariants_on_a_synthetic_pool(k, qk):
    pool = synthetic_pool(120)
    types = ("PER", "LOC")
    sampler = EpisodeSampler(pool, types, k, query_k=qk, seed=5)
    for ep in sampler.sample_many(40):
        assert_invariants(ep, types, k, qk)


def test_greedy_rule_never_adds_a_useless_tweet():
    # K=1: once PER is satisfied, a tweet with only PER is never added (it has no type below K)
    pool = [ex(str(i), f"p{i}", "B-PER") for i in range(10)] + [ex(f"l{i}", f"l{i}", "B-LOC") for i in range(10)]
    sampler = EpisodeSampler(pool, ["PER", "LOC"], 1, seed=0)
    for ep in sampler.sample_many(20):
        assert mentions(ep.support) == Counter(PER=1, LOC=1) == mentions(ep.query)
        assert len(ep.support) == len(ep.query) == 2


def test_support_and_query_disjoint_by_text():
    # pairs of tweets with the same text under two ids: never one in support and one in query
    pool = []
    for i in range(8):
        pool += [ex(f"a{i}", f"Ann{i} in Rome", "B-PER O B-LOC"), ex(f"b{i}", f"Ann{i} in Rome", "B-PER O B-LOC")]
    sampler = EpisodeSampler(pool, ["PER", "LOC"], 1, seed=0)
    for ep in sampler.sample_many(50):
        assert_invariants(ep, ("PER", "LOC"), 1)


def test_same_seed_same_episodes_other_seed_other_episodes():
    pool = synthetic_pool(120)
    a = EpisodeSampler(pool, ["PER", "ORG"], 2, seed=1).sample_many(10)
    b = EpisodeSampler(pool, ["PER", "ORG"], 2, seed=1).sample_many(10)
    c = EpisodeSampler(pool, ["PER", "ORG"], 2, seed=2).sample_many(10)
    assert a == b and a != c
    assert len({tuple(e.id for e in ep.support) for ep in a}) > 1  # episodes differ from each other


def test_global_random_state_untouched_and_rng_argument():
    pool = synthetic_pool(80)
    random.seed(1234)
    state = random.getstate()
    s = EpisodeSampler(pool, ["PER", "LOC"], 1, seed=0)
    s.sample_many(5)
    EpisodeDataset(pool, ["PER", "LOC"], 1, 3, seed=0)[2]
    assert random.getstate() == state
    # sample(rng=...) orders by the given RNG, whatever the sampler's own seed
    other = EpisodeSampler(pool, ["PER", "LOC"], 1, seed=99)
    assert s.sample(rng=random.Random(7)) == other.sample(rng=random.Random(7))


def test_untagged_tweet_is_refused():
    with pytest.raises(MNERError, match=r"tweet u \(in.txt:4\): has no tags"):
        EpisodeSampler([Example(id="u", tokens=("a",), source="in.txt:4")], ["PER"], 1)


@pytest.mark.parametrize("pool, types, k, needle", [
    ([ex("a", "Ann", "B-PER")], ["PER"], 1, "type PER has 1 mentions but support and query need at least 1 + 1"),
    ([ex(str(i), "A B C", "B-PER B-PER B-PER") for i in range(50)], ["PER"], 1,
     "the tweets that can be added without exceeding 2 mentions of a type hold only 0 mentions of PER"),
    ([ex("a", "Ann", "B-PER"), ex("b", "Bo", "B-PER")], ["PER", "LOC"], 1, "type LOC has 0 mentions"),
])
def test_impossible_request_refused_at_once(pool, types, k, needle):
    t = time.perf_counter()
    with pytest.raises(MNERError) as err:
        EpisodeSampler(pool, types, k, max_attempts=10**9)
    assert time.perf_counter() - t < 1.0
    msg = str(err.value)
    assert needle in msg and "lower K" in msg and f"the pool has {len(pool)} tweets" in msg


def test_unsatisfiable_passes_end_after_max_attempts():
    # feasible on paper (2 PER mentions for 1 + 1), but both tweets have one text: the query
    # can never be disjoint from the support; the sampler gives up after max_attempts passes
    pool = [ex("x", "Ann in Rome", "B-PER O B-LOC"), ex("y", "Ann in Rome", "B-PER O B-LOC")]
    sampler = EpisodeSampler(pool, ["PER", "LOC"], 1, max_attempts=7)
    t = time.perf_counter()
    with pytest.raises(MNERError) as err:
        sampler.sample()
    assert time.perf_counter() - t < 1.0
    msg = str(err.value)
    assert "in 7 attempts" in msg and "PER, LOC" in msg and "K=1" in msg
    assert "mentions: PER 2, LOC 2" in msg and "raise max_attempts" in msg


@pytest.mark.parametrize("kw", [dict(k=0), dict(k=1, query_k=0), dict(k=1, max_attempts=0), dict(k=True)])
def test_bad_arguments(kw):
    with pytest.raises(MNERError, match="must be an integer >= 1"):
        EpisodeSampler(synthetic_pool(), ["PER"], **kw)


def test_types_given_twice_or_none():
    with pytest.raises(MNERError, match="given twice"):
        EpisodeSampler(synthetic_pool(), ["PER", "PER"], 1)
    with pytest.raises(MNERError, match="no target types"):
        EpisodeSampler(synthetic_pool(), [], 1)


# ----------------------------------------------------------------------------- dataset


def test_episode_dataset_deterministic_and_order_independent():
    pool = synthetic_pool(120)
    ds = EpisodeDataset(pool, ["PER", "LOC"], 1, episodes_per_epoch=6, seed=3)
    assert len(ds) == 6
    forward = [ds[i] for i in range(6)]
    backward = [ds[i] for i in reversed(range(6))][::-1]
    assert forward == backward
    assert ds[-1] == forward[5]
    fresh = EpisodeDataset(pool, ["PER", "LOC"], 1, episodes_per_epoch=6, seed=3)
    assert [fresh[i] for i in (4, 0, 2)] == [forward[4], forward[0], forward[2]]
    ds.set_epoch(1)
    epoch1 = [ds[i] for i in range(6)]
    assert epoch1 != forward  # resampled every epoch
    for ep in epoch1:
        assert_invariants(ep, ("PER", "LOC"), 1)
    ds.set_epoch(0)
    assert [ds[i] for i in range(6)] == forward
    other = EpisodeDataset(pool, ["PER", "LOC"], 1, episodes_per_epoch=6, seed=4)
    assert [other[i] for i in range(6)] != forward
    with pytest.raises(IndexError):
        ds[6]


def test_episode_dataset_in_a_dataloader():
    from torch.utils.data import DataLoader

    ds = EpisodeDataset(synthetic_pool(120), ["PER", "LOC"], 1, episodes_per_epoch=4, seed=0)
    batches = list(DataLoader(ds, batch_size=2, collate_fn=lambda b: b))
    assert [ep for b in batches for ep in b] == [ds[i] for i in range(4)]


# ----------------------------------------------------------------------------- protocol


def test_protocol_names():
    assert [PAIR_NAMES[p] for p in TARGET_PAIRS] == [
        "Per+Loc", "Per+Org", "Per+Others", "Loc+Org", "Loc+Others", "Org+Others"]
    assert source_types(("PER", "LOC")) == ("ORG", "MISC")
    assert source_types(("LOC", "MISC")) == ("PER", "ORG")
    assert source_types(("PER", "OTHER")) == ("LOC", "ORG")
    assert pair_name(("ORG", "MISC")) == "Org+Others"
    assert parse_types("PER,OTHER") == ("PER", "MISC")
    assert parse_types(" loc , misc,other ") == ("loc", "misc", "MISC")  # case kept; OTHER is MISC
    assert parse_types("Per+Others") == ("PER", "MISC")
    for bad, needle in (("OTHER,MISC", "given twice"), (",", "no entity types")):
        with pytest.raises(MNERError, match=needle):
            parse_types(bad)
    with pytest.raises(MNERError, match="not a target pair"):
        pair_name(("PER", "PER"))


def write_tiny_corpus(root: Path) -> Path:
    """A Twitter-format corpus with every type (OTHER for MISC, as Twitter-2015 writes it) and
    a caption file next to it, like ../shared/data."""
    rng = random.Random(0)
    folder = root / "twitter2099"
    folder.mkdir(parents=True)
    captions = []
    for split, n in (("train", 4), ("valid", 24), ("test", 40)):
        lines = []
        for i in range(n):
            tid = f"{split}{i}"
            lines.append(f"IMGID:{tid}")
            for typ in rng.sample(("PER", "LOC", "ORG", "OTHER"), rng.randint(1, 2)):
                lines += [f"{typ.lower()}{i}\tB-{typ}", f"x{i}\tO"]
            lines.append("")
            captions.append(f"{tid}.jpg :a photo of {tid}")
        (folder / f"{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "captions").mkdir()
    (root / "captions" / "twitter2099_blip2.txt").write_text("\n".join(captions) + "\n", encoding="utf-8")
    return folder


def test_write_protocol_files_manifest_and_skip(tmp_path):
    data = write_tiny_corpus(tmp_path / "data")
    out = tmp_path / "episodes"
    logs: list[str] = []
    manifest = write_protocol(data, out, ks=(1,), test_episodes=4, dev_episodes=2, seed=1, log=logs.append)
    files = manifest["files"]
    assert sorted(files) == sorted(f"{PAIR_NAMES[p]}/{kind}-k1.jsonl" for p in TARGET_PAIRS for kind in ("test", "dev"))
    assert json.loads((out / "manifest.json").read_text(encoding="utf-8")) == manifest
    for rel, entry in files.items():
        path = out / rel
        assert entry["sha256"] == file_sha256(path)
        assert entry["k"] == 1 and entry["seed"] == 1 and entry["mner_version"]
        eps = read_episodes(path)
        assert len(eps) == entry["episodes"] == (4 if rel.endswith("test-k1.jsonl") else 2)
        pair = tuple(entry["types"])
        assert pair_name(pair) == rel.split("/")[0] and "OTHER" not in pair
        split = "test" if "test-" in rel else "valid"
        assert entry["split"] == split
        for ep in eps:
            assert_invariants(ep, pair, 1)
            for e in ep.support + ep.query:
                assert e.id.startswith(split)
                assert e.caption == f"a photo of {e.id}" and e.image == e.id
    assert not any("skipped" in line for line in logs)
    # a second run skips every file; a changed file is written again
    before = (out / "Per+Loc" / "test-k1.jsonl").read_bytes()
    (out / "Per+Loc" / "test-k1.jsonl").write_text("tampered\n", encoding="utf-8")
    logs.clear()
    again = write_protocol(data, out, ks=(1,), test_episodes=4, dev_episodes=2, seed=1, log=logs.append)
    assert again == manifest
    assert sum("skipped" in line for line in logs) == 11
    assert (out / "Per+Loc" / "test-k1.jsonl").read_bytes() == before  # same seed, same bytes
    # other parameters are not "up to date"
    logs.clear()
    write_protocol(data, out, ks=(1,), test_episodes=4, dev_episodes=2, seed=2, log=logs.append)
    assert not any("skipped" in line for line in logs)


# ----------------------------------------------------------------------------- benchmark


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["twitter2015", "twitter2017"])
def test_invariants_on_the_benchmark(data_dir, dataset):
    from mner.data.corpus import Corpus

    corpus = Corpus.from_folder(data_dir / dataset, type_map="OTHER=MISC")
    if dataset == "twitter2015":  # 3 test texts repeat under another id: disjointness by text matters
        texts = Counter(" ".join(e.tokens) for e in corpus.test)
        assert sum(n - 1 for n in texts.values() if n > 1) == 3
    for pair in TARGET_PAIRS:
        for k in (1, 5):
            sampler = EpisodeSampler(corpus.test, pair, k, seed=1)
            episodes = sampler.sample_many(20)
            for ep in episodes:
                assert_invariants(ep, pair, k)
    sampler = EpisodeSampler(corpus.test, ("PER", "LOC"), 5, seed=1)
    episodes = sampler.sample_many(10)
    assert sampler.sample_many(10) != episodes
    assert EpisodeSampler(corpus.test, ("PER", "LOC"), 5, seed=1).sample_many(10) == episodes
    assert EpisodeSampler(corpus.test, ("PER", "LOC"), 5, seed=2).sample_many(10) != episodes


@pytest.mark.slow
def test_write_protocol_on_the_benchmark(data_dir, tmp_path):
    manifest = write_protocol(data_dir / "twitter2017", tmp_path, ks=(5,), test_episodes=5,
                              dev_episodes=2, log=lambda s: None)
    assert len(manifest["files"]) == 12
    eps = read_episodes(tmp_path / "Per+Others" / "test-k5.jsonl")
    assert len(eps) == 5 and eps[0].types == ("PER", "MISC")
    for ep in eps:
        assert_invariants(ep, ("PER", "MISC"), 5)


def test_cli_protocol(tmp_path, capsys):
    from mner.cli import main

    data = write_tiny_corpus(tmp_path / "data")
    argv = ["fewshot", "protocol", str(data), "--out", str(tmp_path / "eps"), "--k", "1",
            "--test-episodes", "3", "--dev-episodes", "2", "--seed", "4"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "12 episode files" in out and "Org+Others/dev-k1.jsonl: 2 episodes" in out
    manifest = json.loads((tmp_path / "eps" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["files"]["Per+Others/test-k1.jsonl"]["types"] == ["PER", "MISC"]
    assert main(["fewshot", "check", str(tmp_path / "eps" / "Per+Others" / "test-k1.jsonl"), "--k", "1"]) == 0
    assert main(argv) == 0
    assert capsys.readouterr().out.count("up to date") == 12
