"""Episodes as data: :class:`Episode`, its JSONL format (every malformed line named by
file:line) and the ``mner fewshot episodes|check`` commands end to end (in-process)."""

from __future__ import annotations

import hashlib
import json
import types as pytypes
from pathlib import Path

import pytest

from fewshot_fixtures import write_tiny_corpus
from mner.cli import main
from mner.data.episodes import (
    Episode,
    EpisodeFormatError,
    iter_episodes,
    read_episodes,
    summarize_episodes,
    write_episodes,
)
from mner.data.example import Example
from mner.errors import MNERError


def ex(id: str, text: str, tags: str, image: str | None = None, caption: str | None = None) -> Example:
    return Example(id=id, tokens=tuple(text.split(" ")), tags=tuple(tags.split()), image=image, caption=caption)


def episode(**kw) -> Episode:
    d = dict(
        types=("PER", "LOC"),
        support=(ex("1", "Obama in Paris", "B-PER O B-LOC", "1.jpg", "a man"),
                 ex("2", "Jean Dupont", "B-PER I-PER")),
        query=(ex("3", "Rome and Lyon", "B-LOC O B-LOC", None, "a city"),
               ex("4", "Zoë at Café", "B-PER O B-LOC", "4")),
    )
    d.update(kw)
    return Episode(**d)


# ----------------------------------------------------------------------------- Episode


def test_labels_in_types_order():
    assert episode().labels == ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")
    assert episode(types=("LOC", "PER")).labels == ("O", "B-LOC", "I-LOC", "B-PER", "I-PER")


def test_validate_accepts_a_good_episode():
    ep = episode()
    assert ep.validate() is ep


@pytest.mark.parametrize("change, needle", [
    (dict(types=("PER",)), "'B-LOC', outside the episode's types"),
    (dict(support=(ex("9", "a b", "O I-PER"),)), "not IOB2"),
    (dict(support=(ex("9", "a b", "B-PER I-LOC"),)), "not IOB2"),
    (dict(support=()), "support set is empty"),
    (dict(query=()), "query set is empty"),
    (dict(types=()), "no entity types"),
    (dict(types=("PER", "LOC", "PER")), "listed twice"),
    (dict(query=(Example(id="9", tokens=("a",)),)), "no tags"),
])
def test_validate_names_source_and_tweet(change, needle):
    ep = episode(**change)
    ep = Episode(ep.types, ep.support, ep.query, source="eps.jsonl:7")
    with pytest.raises(MNERError) as err:
        ep.validate()
    msg = str(err.value)
    assert needle in msg and "eps.jsonl:7" in msg
    if "tweet" in needle or "IOB2" in needle or "outside" in needle:
        assert "tweet" in msg


def test_source_is_not_compared():
    a = episode()
    assert a == Episode(a.types, a.support, a.query, source="x.jsonl:1")


# ----------------------------------------------------------------------------- JSONL


def test_round_trip_and_bytes(tmp_path):
    eps = [episode(), episode(types=("LOC", "PER"))]
    path = write_episodes(eps, tmp_path / "a.jsonl")
    back = read_episodes(path)
    assert back == eps
    assert back[1].labels == ("O", "B-LOC", "I-LOC", "B-PER", "I-PER")
    assert back[0].source == f"{path}:1"
    assert back[1].query[1].source == f"{path}:2 query[1]"
    assert back[0].support[0].caption == "a man" and back[0].support[1].image is None
    # byte-deterministic: same bytes again, fixed key order, raw UTF-8, \n line ends
    data = path.read_bytes()
    write_episodes(back, tmp_path / "b.jsonl")
    assert (tmp_path / "b.jsonl").read_bytes() == data
    assert data.count(b"\n") == 2 and b"\r" not in data and data.endswith(b"\n")
    assert "Zoë".encode() in data and b"\\u" not in data
    first = json.loads(data.split(b"\n")[0])
    assert list(first) == ["types", "support", "query"]
    assert list(first["support"]) == ["id", "word", "label", "image", "caption"]
    assert first["support"]["label"] == [["B-PER", "O", "B-LOC"], ["B-PER", "I-PER"]]
    assert first["query"]["image"] == [None, "4"]
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write leaves no temporary file


def test_writers_of_the_same_file_at_once_each_use_their_own_temporary_file(tmp_path):
    """Two benchmark runners that write one protocol's episode files at the same moment: each
    writes a temporary file of its own and renames it into place, so neither fails and the file
    holds one whole version (a shared temporary name let one rename the other's half-written file
    away, and the other then failed with FileNotFoundError)."""
    import threading

    versions = [[episode()] * 40, [episode(types=("LOC", "PER"))] * 40]
    path, errors, start = tmp_path / "test-k5.jsonl", [], threading.Barrier(4)

    def writer(eps):
        start.wait()
        for _ in range(40):
            try:
                write_episodes(eps, path)
            except Exception as err:  # noqa: BLE001 - the failure this test is about
                errors.append(err)

    threads = [threading.Thread(target=writer, args=(versions[i % 2],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert read_episodes(path) in versions and not list(tmp_path.glob(".*.tmp"))


def test_query_tweets_without_a_mention_round_trip(tmp_path):
    # the poster's protocol draws query tweets at random: some hold no target mention (all O),
    # one query may hold none at all; such an episode is well-formed and reads back as written
    none = (ex("5", "good morning all", "O O O", "5", "a cup"), ex("6", "RT @user", "O O"))
    eps = [episode(query=none), episode(query=none[:1] + episode().query)]
    for ep in eps:
        assert ep.validate() is ep
    path = write_episodes(eps, tmp_path / "p.jsonl")
    assert read_episodes(path) == eps
    assert json.loads(path.read_text(encoding="utf-8").splitlines()[0])["query"]["label"] == [
        ["O", "O", "O"], ["O", "O"]]
    # a tag of another type is still refused in such a query
    with pytest.raises(MNERError, match=r"query\[1\] \(tweet 6\).*'B-ORG', outside the episode's types"):
        episode(query=(none[0], ex("6", "RT @acme", "O B-ORG"))).validate()


def test_tokens_with_unicode_line_separators_round_trip(tmp_path):
    odd = Example(id="7", tokens=("a\u2028b", "\u0085", "c"), tags=("B-PER", "I-PER", "O"))
    ep = episode(support=(odd,))
    path = write_episodes([ep], tmp_path / "u.jsonl")
    assert path.read_bytes().count(b"\n") == 1
    assert read_episodes(path) == [ep]


def test_iter_episodes_streams(tmp_path):
    path = write_episodes([episode()] * 3, tmp_path / "a.jsonl")
    it = iter_episodes(path)
    assert isinstance(it, pytypes.GeneratorType)
    assert next(it) == episode()
    assert len(list(it)) == 2


def test_write_refuses_a_bad_episode(tmp_path):
    with pytest.raises(MNERError, match="outside the episode's types"):
        write_episodes([episode(types=("PER",))], tmp_path / "a.jsonl")
    assert not (tmp_path / "a.jsonl").exists()


def _good() -> dict:
    from mner.data.episodes import episode_to_dict

    return episode_to_dict(episode())


def _set(d: dict, path: tuple, value) -> dict:
    cur = d
    for key in path[:-1]:
        cur = cur[key]
    if value is _DELETE:
        del cur[path[-1]]
    else:
        cur[path[-1]] = value
    return d


_DELETE = object()

MALFORMED = {
    "bad json": ('{"types": ["PER"', "not valid JSON"),
    "not an object": ("[1, 2]", "expected a JSON object"),
    "missing types": ((("types",), _DELETE), "missing key 'types'"),
    "missing support": ((("support",), _DELETE), "missing key 'support'"),
    "missing query": ((("query",), _DELETE), "missing key 'query'"),
    "missing word": ((("support", "word"), _DELETE), "support: missing key 'word'"),
    "missing label": ((("query", "label"), _DELETE), "query: missing key 'label'"),
    "missing id": ((("query", "id"), _DELETE), "query: missing key 'id'"),
    "unknown key": ((("query", "words"), []), "query: unknown key 'words'"),
    "lists of different lengths": ((("support", "label"), [["B-PER", "O", "B-LOC"]]),
                                   "lists of different lengths: 2 'word' but 1 'label'"),
    "image list length": ((("query", "image"), [None]), "2 'word' but 1 'image'"),
    "words vs labels": ((("support", "label", 1), ["B-PER"]), "tweet 2: 2 words but 1 labels"),
    "label outside types": ((("types",), ["PER"]), "support[0] (tweet 1): label 2 ('Paris') is 'B-LOC', outside"),
    "not iob2": ((("support", "label", 1), ["O", "I-PER"]), "support[1] (tweet 2): labels are not IOB2"),
    "empty support": ((("support",), {"id": [], "word": [], "label": [], "image": [], "caption": []}),
                      "support: empty set"),
    "empty query": ((("query",), {"id": [], "word": [], "label": []}), "query: empty set"),
    "empty types": ((("types",), []), "'types' must be a non-empty list"),
    "word not strings": ((("support", "word", 0), ["a", 1, "c"]), "word[0] (tweet 1) must be a list of strings"),
    "bad caption": ((("support", "caption", 0), 5), "caption[0] (tweet 1) is 5"),
    "bad id": ((("support", "id", 0), None), "id 0 is None"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_line_names_file_and_line(tmp_path, case):
    spec, needle = MALFORMED[case]
    good = json.dumps(_good(), ensure_ascii=False)
    bad = spec if isinstance(spec, str) else json.dumps(_set(_good(), *spec))
    path = tmp_path / "eps.jsonl"
    path.write_text(f"{good}\n\n{bad}\n{good}\n", encoding="utf-8")  # a blank line 2 is skipped
    with pytest.raises(EpisodeFormatError) as err:
        read_episodes(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}:3: "), msg
    assert needle in msg, msg
    assert err.value.line == 3 and isinstance(err.value, MNERError)
    # with an errors list, the bad line is reported and the others are read
    errors: list = []
    assert len(list(iter_episodes(path, errors=errors))) == 2
    assert [e.line for e in errors] == [3]


def test_empty_file_and_bad_utf8(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(EpisodeFormatError, match=r"empty\.jsonl: no episodes in the file"):
        read_episodes(empty)
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(json.dumps(_good()).encode() + b"\n\xff\xfe\n")
    with pytest.raises(EpisodeFormatError, match=r"bad\.jsonl:2: not valid UTF-8"):
        read_episodes(bad)
    with pytest.raises(MNERError, match="no such episode file"):
        read_episodes(tmp_path / "missing.jsonl")


def test_summary_known_answer():
    s = summarize_episodes([episode(), episode(query=(ex("5", "a", "O"),))])
    assert s == {
        "episodes": 2, "support_tweets": 2.0, "query_tweets": 1.5,
        "support_mentions": {"PER": 2.0, "LOC": 1.0}, "query_mentions": {"PER": 0.5, "LOC": 1.5},
        "query_with_mention": 0.667,  # 2 of the 3 query tweets
    }


# ----------------------------------------------------------------------------- CLI


def test_cli_check_lists_violations(tmp_path, capsys):
    shared = ex("1", "Obama in Paris", "B-PER O B-LOC")
    bad = episode(
        support=(shared, ex("2", "A B C", "B-PER B-PER B-PER")),  # PER 4 > 2K with K=1
        query=(shared, ex("3", "Obama in Paris", "B-PER O B-LOC")),  # same id, same text
    )
    good = write_episodes([episode()] * 2, tmp_path / "good.jsonl")
    assert main(["fewshot", "check", str(good)]) == 0
    assert "0 violations; result: ok" in capsys.readouterr().out
    assert main(["fewshot", "check", str(good), "--k", "1"]) == 1  # its query has 3 LOC
    assert f"{good}:2: query: 3 mentions of LOC, outside K~2K = 1~2" in capsys.readouterr().out
    path = write_episodes([episode(), bad], tmp_path / "e.jsonl")
    assert main(["fewshot", "check", str(path), "--k", "1"]) == 1
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.startswith(f"{path}:")]
    assert f"{path}:2: support: 4 mentions of PER, outside K~2K = 1~2" in lines
    assert f"{path}:2: tweet 1 is in both support and query" in lines
    assert f"{path}:2: query tweet 3 has the text of support tweet 1" in lines
    assert [ln for ln in lines if ln.startswith(f"{path}:1:")] == [
        f"{path}:1: query: 3 mentions of LOC, outside K~2K = 1~2"]
    assert "result: FAILED" in out
    # a malformed line is a violation too, named by file:line
    path.write_text(path.read_text(encoding="utf-8") + "{oops\n", encoding="utf-8")
    assert main(["fewshot", "check", str(path), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert not report["ok"] and any(v.startswith(f"{path}:3: not valid JSON") for v in report["violations"])


@pytest.mark.parametrize("argv", [
    ["--k", "0"], ["--k", "x"], ["--k", "1", "--episodes", "0"], ["--k", "1", "--query-k", "-1"],
])
def test_cli_range_checks(tmp_path, argv, capsys):
    with pytest.raises(SystemExit) as err:
        main(["fewshot", "episodes", str(tmp_path), "--types", "PER,LOC", "--out", str(tmp_path / "a.jsonl"), *argv])
    assert err.value.code == 2
    assert ">= 1" in capsys.readouterr().err


def test_cli_episodes_poster_query(tmp_path, capsys):
    corpus = write_tiny_corpus(tmp_path / "corpus")
    argv = ["fewshot", "episodes", str(corpus), "--types", "PER,LOC", "--k", "1", "--episodes", "20",
            "--captions", "none", "--query", "random", "--query-size", "4"]
    assert main([*argv, "--out", str(tmp_path / "a.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "20 episodes" in out and "4.00 query tweets on average" in out
    assert main([*argv, "--out", str(tmp_path / "b.jsonl"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["query"] == "random" and report["query_size"] == 4 and report["query_k"] is None
    assert 0 < report["query_with_mention"] < 1
    a = (tmp_path / "a.jsonl").read_bytes()
    assert (tmp_path / "b.jsonl").read_bytes() == a  # same seed, same bytes
    eps = read_episodes(tmp_path / "a.jsonl")
    assert all(len(ep.query) == 4 for ep in eps)
    # query tweets with no PER or LOC (an ORG and an OTHER: both relabelled O) are kept
    blank = [x for ep in eps for x in ep.query if set(x.tags) == {"O"}]
    assert blank and all(x.tokens[0] in ("google", "apple", "nasa", "fifa", "olympics", "oscars",
                                         "christmas", "superbowl") for x in blank)
    # the same supports as ours with the same seed
    ours = [x for x in argv if x not in ("--query", "random", "--query-size", "4")]
    assert main([*ours, "--out", str(tmp_path / "c.jsonl")]) == 0
    assert [ep.support for ep in read_episodes(tmp_path / "c.jsonl")] == [ep.support for ep in eps]
    capsys.readouterr()
    assert main(["fewshot", "check", str(tmp_path / "a.jsonl"), "--k", "1", "--query", "random",
                 "--query-size", "4"]) == 0
    assert "0 violations; result: ok" in capsys.readouterr().out
    assert main(["fewshot", "check", str(tmp_path / "a.jsonl"), "--k", "1"]) == 1
    assert "check it as one (mner fewshot check --query random)" in capsys.readouterr().out
    assert main(["fewshot", "check", str(tmp_path / "c.jsonl"), "--k", "1"]) == 0  # ours, as today


@pytest.mark.parametrize("cmd, extra, needle", [
    ("episodes", ["--query-size", "4"], "--query-size is the size of a random query; add --query random"),
    ("episodes", ["--query", "random", "--query-k", "2"], "--query-k is K of a greedy query"),
    ("episodes", ["--query", "random", "--query-size", "40"], "the query needs 40 tweets besides a support"),
    ("check", ["--query-size", "4"], "--query-size checks a random query; add --query random"),
    ("check", ["--query", "random", "--query-k", "2"], "--query-k checks a greedy query"),
])
def test_cli_poster_options_refused(tmp_path, capsys, cmd, extra, needle):
    corpus = write_tiny_corpus(tmp_path / "corpus")
    good = write_episodes([episode()], tmp_path / "good.jsonl")
    if cmd == "episodes":
        argv = ["fewshot", "episodes", str(corpus), "--types", "PER,LOC", "--k", "1", "--episodes", "2",
                "--captions", "none", "--out", str(tmp_path / "a.jsonl"), *extra]
    else:
        argv = ["fewshot", "check", str(good), "--k", "1", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err
    if cmd == "check":
        assert str(good) in err
    assert not (tmp_path / "a.jsonl").exists()
    with pytest.raises(SystemExit):  # not a protocol
        main(["fewshot", cmd, str(good), "--query", "poster"])


@pytest.mark.slow
def test_cli_episodes_twice_identical_and_checked(tmp_path, capsys, data_dir):
    argv = ["fewshot", "episodes", str(data_dir / "twitter2017"), "--split", "test", "--types", "PER,LOC",
            "--k", "5", "--episodes", "50", "--seed", "1"]
    assert main([*argv, "--out", str(tmp_path / "a.jsonl")]) == 0
    out = capsys.readouterr().out
    assert main([*argv, "--out", str(tmp_path / "b.jsonl")]) == 0
    capsys.readouterr()
    a, b = (tmp_path / "a.jsonl").read_bytes(), (tmp_path / "b.jsonl").read_bytes()
    assert a == b and a.count(b"\n") == 50
    assert f"sha256 {hashlib.sha256(a).hexdigest()}" in out
    assert "50 episodes" in out and "PER" in out and "LOC" in out
    assert main(["fewshot", "check", str(tmp_path / "a.jsonl"), "--k", "5"]) == 0
    assert "0 violations; result: ok" in capsys.readouterr().out
    eps = read_episodes(tmp_path / "a.jsonl")
    assert all(e.types == ("PER", "LOC") for e in eps)
    assert all(x.caption is not None for e in eps for x in e.support + e.query)  # captions auto-found
    assert eps[0].support[0].image == eps[0].support[0].id  # the tweet's image id
    # another seed, other episodes; OTHER is MISC on Twitter-2015
    assert main([*argv[:-1], "2", "--out", str(tmp_path / "c.jsonl")]) == 0
    assert (tmp_path / "c.jsonl").read_bytes() != a
    argv15 = ["fewshot", "episodes", str(data_dir / "twitter2015"), "--types", "OTHER,ORG", "--k", "1",
              "--episodes", "5", "--out", str(tmp_path / "d.jsonl"), "--captions", "none"]
    assert main(argv15) == 0
    eps = read_episodes(tmp_path / "d.jsonl")
    assert eps[0].types == ("MISC", "ORG") and eps[0].support[0].caption is None


@pytest.mark.slow
def test_cli_refuses_an_impossible_request(tmp_path, capsys, data_dir):
    code = main(["fewshot", "episodes", str(data_dir / "twitter2017"), "--types", "PER,MISC", "--k", "200",
                 "--episodes", "1", "--out", str(tmp_path / "a.jsonl")])
    assert code == 2
    err = capsys.readouterr().err
    assert "type MISC has" in err and "200 + 200" in err and "lower K" in err
    assert not (tmp_path / "a.jsonl").exists()
