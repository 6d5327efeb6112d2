"""The greedy N-way K~2K sampler: its invariants (on hand-made pools and on the benchmark),
its refusals (fast, never a hang), its own RNG, EpisodeDataset and the protocol files."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from mner.data.episodes import Episode, file_sha256, read_episodes, write_episodes
from mner.data.example import Example
from mner.data.sampling import (
    PAIR_NAMES,
    POSTER_QUERY_SIZE,
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


# ----------------------------------------------------------------------------- poster's query


def assert_poster_invariants(ep: Episode, types: tuple[str, ...], k: int, size: int) -> None:
    """The poster's protocol: a greedy K~2K support, a query of ``size`` tweets disjoint from it,
    only target types; the query is not held to K~2K."""
    assert ep.types == types
    ep.validate()
    c = mentions(ep.support)
    for t in types:
        assert k <= c[t] <= 2 * k, (t, c, k)
    assert all(count_mentions(e.tags) for e in ep.support)
    assert len(ep.query) == size
    assert set(mentions(ep.query)) <= set(types)
    assert not {e.id for e in ep.support} & {e.id for e in ep.query}
    assert not {" ".join(e.tokens) for e in ep.support} & {" ".join(e.tokens) for e in ep.query}
    assert episode_violations(ep, k, query="random", query_size=size) == []


def test_poster_query_same_supports_random_query():
    pool = synthetic_pool(120)
    types = ("PER", "LOC")
    ours = EpisodeSampler(pool, types, 1, seed=5).sample_many(40)
    poster = EpisodeSampler(pool, types, 1, query="random", query_size=7, seed=5).sample_many(40)
    # episode i of both protocols has one support (a paired comparison); the queries differ
    assert [ep.support for ep in poster] == [ep.support for ep in ours]
    assert [ep.query for ep in poster] != [ep.query for ep in ours]
    for ep in poster:
        assert_poster_invariants(ep, types, 1, 7)
    query = [e for ep in poster for e in ep.query]
    # tweets without a target mention are drawn (all O) and kept; so are tweets with one
    assert any(not count_mentions(e.tags) for e in query)
    assert any(count_mentions(e.tags) for e in query)
    # ours never draws one: its greedy query tweets all hold a target mention
    assert all(count_mentions(e.tags) for ep in ours for e in ep.query)
    # mentions of other types (ORG) are relabelled O, whole entities at a time
    original = {e.id: e for e in pool}
    relabelled = [e for e in query if "B-ORG" in original[e.id].tags]
    assert relabelled
    for e in query:
        assert e.tags == restrict_types(original[e.id], types).tags


def test_poster_query_default_size_seed_and_global_state():
    pool = synthetic_pool(120)
    random.seed(99)
    state = random.getstate()
    a = EpisodeSampler(pool, ["PER", "ORG"], 2, query="random", seed=1).sample_many(10)
    assert random.getstate() == state
    assert all(len(ep.query) == POSTER_QUERY_SIZE == 10 for ep in a)
    assert EpisodeSampler(pool, ["PER", "ORG"], 2, query="random", seed=1).sample_many(10) == a
    assert EpisodeSampler(pool, ["PER", "ORG"], 2, query="random", seed=2).sample_many(10) != a
    # with rng= (EpisodeDataset's way) the query is drawn from that RNG too: still deterministic
    s = EpisodeSampler(pool, ["PER", "ORG"], 2, query="random", seed=7)
    assert s.sample(rng=random.Random(3)) == s.sample(rng=random.Random(3))


def test_poster_query_is_uniform_over_the_split():
    # every tweet is drawn, and tweets without a target mention come in at their share of the pool
    pool = synthetic_pool(120)
    types = ("PER", "LOC")
    sampler = EpisodeSampler(pool, types, 1, query="random", seed=0)
    eps = sampler.sample_many(300)
    drawn = Counter(e.id for ep in eps for e in ep.query)
    assert set(drawn) == {e.id for e in pool}
    empty = {e.id for e in sampler.pool if not count_mentions(e.tags)}
    share_pool = len(empty) / len(pool)
    share_query = sum(n for i, n in drawn.items() if i in empty) / sum(drawn.values())
    assert 0.1 < share_pool < 0.9 and abs(share_query - share_pool) < 0.05, (share_pool, share_query)


def test_poster_query_disjoint_by_text():
    # every text twice under two ids: a support tweet's twin is never in the query
    pool = []
    for i in range(12):
        pool += [ex(f"a{i}", f"Ann{i} in Rome", "B-PER O B-LOC"), ex(f"b{i}", f"Ann{i} in Rome", "B-PER O B-LOC")]
        pool += [ex(f"c{i}", f"nothing {i}", "O O"), ex(f"d{i}", f"nothing {i}", "O O")]
    sampler = EpisodeSampler(pool, ["PER", "LOC"], 1, query="random", query_size=20, seed=0)
    for ep in sampler.sample_many(30):
        assert_poster_invariants(ep, ("PER", "LOC"), 1, 20)


@pytest.mark.parametrize("kw, needle", [
    (dict(query_size=10), "query_size is the size of a random query"),
    (dict(query="random", query_k=2), "query_k is K of a greedy query"),
    (dict(query="poster"), "query must be one of greedy, random"),
    (dict(query="random", query_size=0), "query_size must be an integer >= 1"),
    (dict(query="random", query_size=True), "query_size must be an integer >= 1"),
    # 79 distinct texts in the pool, a support of at most N*K = 2 tweets: 77 always fit
    (dict(query="random", query_size=78), "the query needs 78 tweets besides a support of up to 2, "
                                          "but the pool has only 79 distinct texts"),
])
def test_poster_query_bad_arguments(kw, needle):
    with pytest.raises(MNERError, match=needle):
        EpisodeSampler(synthetic_pool(120), ["PER", "LOC"], 1, **kw)


def test_poster_query_largest_size_that_always_fits():
    pool = synthetic_pool(120)
    assert len({" ".join(e.tokens) for e in pool}) == 79
    sampler = EpisodeSampler(pool, ["PER", "LOC"], 1, query="random", query_size=77, seed=0)
    for ep in sampler.sample_many(20):
        assert_poster_invariants(ep, ("PER", "LOC"), 1, 77)


def test_violations_of_a_poster_episode():
    support = (ex("1", "Ann in Rome", "B-PER O B-LOC"),)
    query = (ex("2", "nothing here", "O O"), ex("3", "Bo Cy Di", "B-PER B-PER B-PER"))
    ep = Episode(("PER", "LOC"), support, query)
    assert episode_violations(ep, 1, query="random", query_size=2) == []
    assert episode_violations(ep, 1, query="random") == []  # size unchecked
    assert episode_violations(ep, 1, query="random", query_size=3) == [
        "query: 2 tweets, not the 3 of a random query"]
    # checked as ours, its query breaks K~2K and holds a tweet the greedy rule never adds
    greedy = episode_violations(ep, 1)
    assert "query: 3 mentions of PER, outside K~2K = 1~2" in greedy
    assert "query: 0 mentions of LOC, outside K~2K = 1~2" in greedy
    assert any(v.startswith("query: 1 of 2 tweets have no mention of a target type (tweet 2)")
               and "--query random" in v for v in greedy)
    # the support is held to K~2K in both; disjointness too
    bad = Episode(("PER", "LOC"), support + (ex("4", "x", "O"),), (support[0], ex("5", "Ann in Rome", "O O O")))
    got = episode_violations(bad, 1, query="random", query_size=2)
    assert ("support: 1 of 2 tweets have no mention of a target type (tweet 4); "
            "the greedy rule never adds such a tweet") in got
    assert "tweet 1 is in both support and query" in got
    assert "query tweet 5 has the text of support tweet 1" in got
    # a tag of another type is refused in a random query as in ours
    other = Episode(("PER", "LOC"), support, (ex("6", "Acme", "B-ORG"),))
    assert "outside the episode's types" in episode_violations(other, 1, query="random")[0]
    for kw, needle in ((dict(query="random", query_k=1), "query_k is K of a greedy query"),
                       (dict(query_size=2), "query_size is the size of a random query"),
                       (dict(query="x"), "query must be one of")):
        with pytest.raises(MNERError, match=needle):
            episode_violations(ep, 1, **kw)


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


#: sha256 of our protocol's files of write_tiny_corpus (ks=(1,), 4 test / 2 dev episodes, seed 1),
#: as written before the poster's protocol and the source dev files were added: adding them
#: must not change a byte of ours.
OURS_TINY_SHA256 = {
    "Per+Loc/test-k1.jsonl": "638d881137fe1815968658cc1b83ff3f60031129cbf35737d0c7afd5753781f3",
    "Per+Loc/dev-k1.jsonl": "cb75848d8ecca312d32a5e96bb76ae19009db918d0345513ceeeb2a938b72ea6",
    "Per+Org/test-k1.jsonl": "67876fff839f46bfeb42d3b8014427a899238369a84019b2aa38e54f98d522d2",
    "Per+Org/dev-k1.jsonl": "a94d347e3409e06fbb61edc63a46e400ee13965851437322b74b637666dfd59d",
    "Per+Others/test-k1.jsonl": "fcb26fba02718d0d99eadfe099319fcfdc2649f9e6c02ebc494f634bff6075d7",
    "Per+Others/dev-k1.jsonl": "8b087a506c60206d019adfa521f310d03f88ba0acda0499215386d070b51ea01",
    "Loc+Org/test-k1.jsonl": "b8ed04d45f9685f76e11dc33ec2b2156ed68c92da15e3384e0f7457d6071372c",
    "Loc+Org/dev-k1.jsonl": "c2242fbd7e2b23fa94524fab99bb43b762559b68e5872c2e22d9244fb34db616",
    "Loc+Others/test-k1.jsonl": "a8b1123e70e6f95149aa9a583351de6d82118aaab800cf6224a337bd520e1fd1",
    "Loc+Others/dev-k1.jsonl": "c1799c6b41d1b4bedbbd621d74f0cd38ab92c5e7eb92e5a05895feb8e1b673b6",
    "Org+Others/test-k1.jsonl": "40559749c5a606bc5613981a7852e4e8c8b789d90f68b841ff3e33a8029cdc1e",
    "Org+Others/dev-k1.jsonl": "7a6567302fef0a39fdea7daef1532a9580e6ddabee920adb3bdb5ff2641948ac",
}
KINDS = ("test", "test-poster", "dev", "dev-source")


def test_write_protocol_files_manifest_and_skip(tmp_path):
    data = write_tiny_corpus(tmp_path / "data")
    out = tmp_path / "episodes"
    logs: list[str] = []
    manifest = write_protocol(data, out, ks=(1,), test_episodes=4, dev_episodes=2, seed=1, log=logs.append)
    files = manifest["files"]
    assert sorted(files) == sorted(f"{PAIR_NAMES[p]}/{kind}-k1.jsonl" for p in TARGET_PAIRS for kind in KINDS)
    assert json.loads((out / "manifest.json").read_text(encoding="utf-8")) == manifest
    for rel, entry in files.items():
        path = out / rel
        kind = rel.split("/")[1].removesuffix("-k1.jsonl")
        assert entry["sha256"] == file_sha256(path)
        assert entry["k"] == 1 and entry["seed"] == 1 and entry["mner_version"]
        eps = read_episodes(path)
        assert len(eps) == entry["episodes"] == (4 if kind.startswith("test") else 2)
        pair = next(p for p in TARGET_PAIRS if PAIR_NAMES[p] == rel.split("/")[0])
        types = tuple(entry["types"])
        assert "OTHER" not in types
        assert types == (source_types(pair) if kind == "dev-source" else pair)
        split = "test" if kind.startswith("test") else "valid"
        assert entry["split"] == split
        poster = kind == "test-poster"
        assert entry["protocol"] == ("poster" if poster else "ours")
        assert entry["query_size"] == (POSTER_QUERY_SIZE if poster else None)
        assert entry["query_k"] == (None if poster else 1)
        for ep in eps:
            if poster:
                assert_poster_invariants(ep, types, 1, POSTER_QUERY_SIZE)
            else:
                assert_invariants(ep, types, 1)
            for e in ep.support + ep.query:
                assert e.id.startswith(split)
                assert e.caption == f"a photo of {e.id}" and e.image == e.id
        if poster:  # the same supports as ours, a random query
            ours = read_episodes(out / rel.replace("test-poster", "test"))
            assert [ep.support for ep in eps] == [ep.support for ep in ours]
        if kind == "dev-source":  # only the source types' mentions are left in a source dev file
            assert set(mentions(e for ep in eps for e in ep.support + ep.query)) == set(source_types(pair))
    # ours: the same bytes as before the poster's protocol was added
    assert {rel: e["sha256"] for rel, e in files.items() if e["protocol"] == "ours"
            and "dev-source" not in rel} == OURS_TINY_SHA256
    assert not any("skipped" in line for line in logs)
    # a second run skips every file; a changed file is written again
    before = (out / "Per+Loc" / "test-poster-k1.jsonl").read_bytes()
    (out / "Per+Loc" / "test-poster-k1.jsonl").write_text("tampered\n", encoding="utf-8")
    logs.clear()
    again = write_protocol(data, out, ks=(1,), test_episodes=4, dev_episodes=2, seed=1, log=logs.append)
    assert again == manifest
    assert sum("skipped" in line for line in logs) == 23
    assert (out / "Per+Loc" / "test-poster-k1.jsonl").read_bytes() == before  # same seed, same bytes
    # another query size rewrites the poster's files only
    logs.clear()
    other = write_protocol(data, out, ks=(1,), test_episodes=4, dev_episodes=2, seed=1, poster_query_size=3,
                           log=logs.append)
    rewritten = [line for line in logs if "skipped" not in line and line.startswith(str(out))]
    assert len(rewritten) == 6 and all("test-poster-k1.jsonl" in line for line in rewritten)
    assert all(other["files"][f"{PAIR_NAMES[p]}/test-poster-k1.jsonl"]["query_size"] == 3 for p in TARGET_PAIRS)
    assert all(len(ep.query) == 3 for ep in read_episodes(out / "Loc+Org" / "test-poster-k1.jsonl"))
    # other parameters are not "up to date"
    logs.clear()
    write_protocol(data, out, ks=(1,), test_episodes=4, dev_episodes=2, seed=2, log=logs.append)
    assert not any("skipped" in line for line in logs)


def test_write_protocol_reads_a_manifest_from_before_the_poster_protocol(tmp_path):
    # a manifest whose entries lack "protocol" and "query_size" (as written before): our files
    # are up to date, not written again; their entries gain the new keys
    data = write_tiny_corpus(tmp_path / "data")
    out = tmp_path / "episodes"
    write_protocol(data, out, ks=(1,), test_episodes=4, dev_episodes=2, log=lambda s: None)
    path = out / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["files"] = {rel: {k: v for k, v in e.items() if k not in ("protocol", "query_size")}
                         for rel, e in manifest["files"].items() if rel in OURS_TINY_SHA256}
    path.write_text(json.dumps(manifest), encoding="utf-8")
    logs: list[str] = []
    again = write_protocol(data, out, ks=(1,), test_episodes=4, dev_episodes=2, log=logs.append)
    skipped = {line.split(": ")[0] for line in logs if "skipped" in line}
    assert skipped == {str(out / rel) for rel in OURS_TINY_SHA256}
    assert all(again["files"][rel]["protocol"] == "ours" for rel in OURS_TINY_SHA256)


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
    manifest = write_protocol(data_dir / "twitter2017", tmp_path, ks=(5,), log=lambda s: None)
    files = manifest["files"]
    assert len(files) == 24
    # ours: the bytes the stored benchmark cells were scored on (their episodes.test_sha256 and
    # dev_sha256, bench/results/fewshot-v1/twitter2017__Per+Loc__*__k5__seed37.json)
    assert files["Per+Loc/test-k5.jsonl"]["sha256"] == (
        "1514103614290e08738c816ac4fe8a44565834f288f6572759ea5fd4b06513ba")
    assert files["Per+Loc/dev-k5.jsonl"]["sha256"] == (
        "7276815d278b5b950f815efb7110cc1e16d8a5200a0312b6205a4ffda78f613b")
    eps = read_episodes(tmp_path / "Per+Others" / "test-k5.jsonl")
    assert len(eps) == 500 and eps[0].types == ("PER", "MISC")
    for ep in eps[:20]:
        assert_invariants(ep, ("PER", "MISC"), 5)
    poster = read_episodes(tmp_path / "Per+Others" / "test-poster-k5.jsonl")
    assert [ep.support for ep in poster] == [ep.support for ep in eps]
    for ep in poster[:20]:
        assert_poster_invariants(ep, ("PER", "MISC"), 5, POSTER_QUERY_SIZE)
    query = [e for ep in poster for e in ep.query]
    assert 0 < sum(not count_mentions(e.tags) for e in query) < len(query)
    source = read_episodes(tmp_path / "Per+Others" / "dev-source-k5.jsonl")
    assert len(source) == 100 and all(ep.types == ("LOC", "ORG") for ep in source)


def test_cli_protocol(tmp_path, capsys):
    from mner.cli import main

    data = write_tiny_corpus(tmp_path / "data")
    argv = ["fewshot", "protocol", str(data), "--out", str(tmp_path / "eps"), "--k", "1",
            "--test-episodes", "3", "--dev-episodes", "2", "--seed", "4"]
    assert main([*argv, "--poster-query-size", "6"]) == 0
    out = capsys.readouterr().out
    assert "24 episode files" in out and "Org+Others/dev-k1.jsonl: 2 episodes" in out
    assert "Org+Others/test-poster-k1.jsonl: 3 episodes, " in out and "6.00 query tweets on average" in out
    assert "Per+Loc/test-k1.jsonl: 3 episodes" in out and "100.0% of query tweets with a target mention" in out
    manifest = json.loads((tmp_path / "eps" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["files"]["Per+Others/test-k1.jsonl"]["types"] == ["PER", "MISC"]
    assert manifest["files"]["Per+Others/dev-source-k1.jsonl"]["types"] == ["LOC", "ORG"]
    assert manifest["files"]["Per+Others/test-poster-k1.jsonl"]["query_size"] == 6
    pair = tmp_path / "eps" / "Per+Others"
    for name, extra in (("test-k1.jsonl", []), ("dev-k1.jsonl", []), ("dev-source-k1.jsonl", []),
                        ("test-poster-k1.jsonl", ["--query", "random", "--query-size", "6"])):
        assert main(["fewshot", "check", str(pair / name), "--k", "1", *extra]) == 0, name
        assert "0 violations; result: ok" in capsys.readouterr().out
    # a poster file checked as ours fails, and says how to check it
    assert main(["fewshot", "check", str(pair / "test-poster-k1.jsonl"), "--k", "1"]) == 1
    out = capsys.readouterr().out
    assert "tweets have no mention of a target type" in out and "--query random" in out
    assert "result: FAILED" in out
    # a wrong query size, and a broken poster file (a query tweet also in the support), fail
    assert main(["fewshot", "check", str(pair / "test-poster-k1.jsonl"), "--query", "random",
                 "--query-size", "5"]) == 1
    assert "query: 6 tweets, not the 5 of a random query" in capsys.readouterr().out
    eps = read_episodes(pair / "test-poster-k1.jsonl")
    broken = [Episode(ep.types, ep.support, ep.query[:-1] + ep.support[:1]) for ep in eps]
    write_episodes(broken, tmp_path / "broken.jsonl")
    assert main(["fewshot", "check", str(tmp_path / "broken.jsonl"), "--k", "1", "--query", "random"]) == 1
    assert f"tweet {eps[0].support[0].id} is in both support and query" in capsys.readouterr().out
    assert main([*argv, "--poster-query-size", "6"]) == 0
    assert capsys.readouterr().out.count("up to date") == 24
