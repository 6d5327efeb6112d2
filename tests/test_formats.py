"""Readers and writers: the Twitter format's quirks, CoNLL, JSONL, round trips, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mner.errors import MNERError
from mner.data import Example
from mner.data.formats import (
    DataFormatError,
    detect_format,
    read_conll,
    read_file,
    read_jsonl,
    read_twitter,
    resolve_type_map,
    write_conll,
    write_file,
    write_jsonl,
    write_twitter,
)
from mner.data.tokenize import tokenize_text

TWITTER = (
    "IMGID:101\n"
    "RT\tO\n"
    "@user\tO\n"
    "Kevin\tB-PER\n"
    "Durant\tI-PER\n"
    "\xa0\tO\n"
    "in\tO\n"
    "Oklahoma\tB-LOC\n"
    "\n"
    "IMGID:102\n"
    "#Hopkins\tI-OTHER\n"
    "\u2028sep\tO\n"
    "end\tO"  # no final newline, no final blank line: the 2015 files end like this
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode("utf-8"))
    return p


def test_twitter_reads_every_tweet_and_quirk(tmp_path):
    exs = read_twitter(write(tmp_path, "t.txt", TWITTER))
    assert [e.id for e in exs] == ["101", "102"]
    assert exs[0].tokens == ("RT", "@user", "Kevin", "Durant", "\xa0", "in", "Oklahoma")
    assert exs[0].tags[2:4] == ("B-PER", "I-PER")
    assert exs[0].image == "101"
    # a U+2028 inside a token is not a line break; the last tweet is read without a blank line
    assert exs[1].tokens == ("#Hopkins", "\u2028sep", "end")
    assert exs[1].tags == ("I-OTHER", "O", "O")
    # source is the line of the first token
    assert exs[0].source.endswith("t.txt:2") and exs[1].source.endswith("t.txt:11")


def test_type_map_is_explicit(tmp_path):
    p = write(tmp_path, "t.txt", TWITTER)
    assert read_twitter(p)[1].tags[0] == "I-OTHER"
    assert read_twitter(p, type_map="other->misc")[1].tags[0] == "I-MISC"
    assert read_twitter(p, type_map="other-to-misc")[1].tags[0] == "I-MISC"
    assert read_twitter(p, type_map="OTHER=MISC")[1].tags[0] == "I-MISC"
    assert read_twitter(p, type_map={"PER": "PERSON"})[0].tags[2] == "B-PERSON"
    assert resolve_type_map("OTHER=MISC, PER=PERSON") == {"OTHER": "MISC", "PER": "PERSON"}
    with pytest.raises(MNERError, match="preset"):
        resolve_type_map("nonsense")


def test_twitter_crlf_and_extra_columns(tmp_path):
    p = write(tmp_path, "t.txt", "IMGID:1\r\nParis\tB-LOC\tO\r\nrocks\tO\tO\r\n\r\n")
    gold = read_twitter(p, tag_column=-2)
    pred = read_twitter(p)
    assert gold[0].tokens == ("Paris", "rocks") and gold[0].tags == ("B-LOC", "O")
    assert pred[0].tags == ("O", "O")


@pytest.mark.parametrize(
    "text, line, fragment",
    [
        ("Paris\tB-LOC\n", 1, "outside a tweet"),
        ("IMGID:1\nParis B-LOC\n", 2, "token<TAB>tag"),
        ("IMGID:1\nParis\tB-LOC\nIMGID:2\nx\tO\n", 3, "IMGID line inside a tweet"),
    ],
)
def test_twitter_errors_name_file_and_line(tmp_path, text, line, fragment):
    p = write(tmp_path, "bad.txt", text)
    with pytest.raises(DataFormatError, match=fragment) as info:
        read_twitter(p)
    assert info.value.line == line and str(p) in str(info.value)
    errors: list = []
    read_twitter(p, errors=errors)  # collected instead of raised, for validation
    assert [e.line for e in errors] == [line]


def test_invalid_utf8_names_the_line(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_bytes(b"IMGID:1\nok\tO\nbad\xff\tO\n")
    with pytest.raises(DataFormatError, match="UTF-8") as info:
        read_file(p)
    assert info.value.line == 3


def test_conll_metadata_docstart_and_spaces(tmp_path):
    text = (
        "-DOCSTART- O\n\n"
        "# id = a1\n# image = pics/a1.png\n# caption = a man\n"
        "John B-PER\nlives O\n\n"
        "#hashtag\tO\n# O\n"  # tokens that start with '#' are tokens, not comments
    )
    exs = read_conll(write(tmp_path, "c.conll", text))
    assert exs[0].id == "a1" and exs[0].image == "pics/a1.png" and exs[0].caption == "a man"
    assert exs[0].tokens == ("John", "lives")
    assert exs[1].id == "2" and exs[1].tokens == ("#hashtag", "#")


@pytest.mark.parametrize("fmt, suffix", [("twitter", ".txt"), ("conll", ".conll"), ("jsonl", ".jsonl")])
def test_round_trip_every_format(tmp_path, fmt, suffix):
    exs = read_twitter(write(tmp_path, "t.txt", TWITTER))
    exs = [exs[0].replace(caption="a caption"), exs[1]]
    out = tmp_path / f"out{suffix}"
    write_file(exs, out, fmt)
    assert detect_format(out) == fmt
    back = read_file(out)
    assert [(e.id, e.tokens, e.tags) for e in back] == [(e.id, e.tokens, e.tags) for e in exs]
    if fmt != "twitter":
        assert back[0].caption == "a caption" and back[0].image == "101"


def test_conll_with_predictions(tmp_path):
    exs = [Example("1", ["Paris", "rocks"], ["B-LOC", "O"])]
    out = tmp_path / "p.conll"
    write_conll(exs, out, predictions=[["B-ORG", "O"]])
    assert read_conll(out, tag_column=-2)[0].tags == ("B-LOC", "O")
    assert read_conll(out)[0].tags == ("B-ORG", "O")
    with pytest.raises(ValueError, match="predicted tags"):
        write_conll(exs, out, predictions=[["O"]])


def test_jsonl_raw_text_and_errors(tmp_path):
    p = write(tmp_path, "in.jsonl", json.dumps({"text": "Hi @bob, see Paris!", "image": "x.jpg"}) + "\n")
    with pytest.raises(DataFormatError, match="tokens"):
        read_jsonl(p)
    ex = read_jsonl(p, require_tokens=False)[0]
    assert ex.tokens == ("Hi", "@bob", ",", "see", "Paris", "!")
    assert ex.text == "Hi @bob, see Paris!" and ex.text[slice(*ex.offsets[4])] == "Paris"
    assert ex.id == "1" and ex.image == "x.jpg"
    bad = write(tmp_path, "bad.jsonl", '{"tokens": ["a"]}\n{not json\n{"tokens": "abc"}\n')
    errors: list = []
    good = read_jsonl(bad, errors=errors)
    assert len(good) == 1 and [e.line for e in errors] == [2, 3]


def test_jsonl_preserves_raw_text_offsets(tmp_path):
    toks, offs = tokenize_text("I  love\tNew York")
    ex = Example("q", toks, text="I  love\tNew York", offsets=offs)
    write_jsonl([ex], tmp_path / "o.jsonl")
    back = read_jsonl(tmp_path / "o.jsonl")[0]
    assert back.text == ex.text and back.offsets == ex.offsets


def test_writers_refuse_unwritable_tokens(tmp_path):
    with pytest.raises(MNERError, match="separator"):
        write_twitter([Example("1", ["a\tb"], ["O"])], tmp_path / "x.txt")


def test_example_invariants():
    ex = Example("7", ["New", "York"], ["B-LOC", "I-LOC"])
    assert ex.text == "New York" and ex.offsets == ((0, 3), (4, 8))
    with pytest.raises(ValueError, match="one tag per token"):
        Example("7", ["a", "b"], ["O"])
    with pytest.raises(ValueError, match="outside"):
        Example("7", ["a"], text="a", offsets=[(0, 5)])
    assert ex.replace(tokens=("LA",), tags=("B-LOC",)).offsets == ((0, 2),)


def test_tokenize_text_offsets_cover_tokens():
    text = "RT @CNN: Obama's visit to #Kenya http://t.co/abc1. 10:30pm \ufe0f ok"
    toks, offs = tokenize_text(text)
    assert all(text[s:e] == t for t, (s, e) in zip(toks, offs))
    assert "http://t.co/abc1" in toks and "@CNN" in toks and "#Kenya" in toks and "Obama's" in toks
    assert "\ufe0f" in toks  # kept as a token of its own: never dropped


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".ndjson", ".NDJSON"])
def test_jsonl_suffixes_write_what_they_read(tmp_path, suffix):
    exs = read_twitter(write(tmp_path, "t.txt", TWITTER))
    out = tmp_path / f"out{suffix}"
    write_file(exs, out)  # auto: the suffix picks the format
    assert out.read_text(encoding="utf-8").startswith("{")
    assert detect_format(out) == "jsonl"
    assert [(e.id, e.tokens, e.tags) for e in read_file(out)] == [(e.id, e.tokens, e.tags) for e in exs]


def test_tag_column_never_reads_the_token_column(tmp_path):
    p = write(tmp_path, "two.txt", "IMGID:1\nParis\tB-LOC\nrocks\tO\n\n")
    with pytest.raises(DataFormatError, match="no gold\\+pred columns") as err:
        read_file(p, tag_column=-2)
    assert err.value.file == str(p) and err.value.line == 2
    errors: list = []
    assert read_twitter(p, tag_column=-2, errors=errors)[0].tokens == ()
    assert [e.line for e in errors] == [2, 3]
    c = write(tmp_path, "two.conll", "Paris\tB-LOC\n\n")
    with pytest.raises(DataFormatError, match="token column"):
        read_conll(c, tag_column=0)
    # three columns: -2 is the gold one, as before
    three = write(tmp_path, "three.conll", "Paris\tB-LOC\tO\n\n")
    assert read_file(three, tag_column=-2)[0].tags == ("B-LOC",)


def test_jsonl_refuses_a_tag_column(tmp_path):
    p = write(tmp_path, "g.jsonl", '{"id": "1", "tokens": ["Paris"], "tags": ["B-LOC"]}\n')
    assert read_file(p, tag_column=-1)[0].tags == ("B-LOC",)
    with pytest.raises(DataFormatError, match="no gold\\+pred columns") as err:
        read_file(p, tag_column=-2)
    assert err.value.file == str(p) and "two files" in str(err.value)


def test_corpus_finds_ndjson_splits(tmp_path):
    from mner.data.corpus import Corpus
    from mner.data.formats import write_file

    ex = Example("1", ("Paris",), ("B-LOC",))
    for split in ("train", "valid", "test"):
        write_file([ex], tmp_path / f"{split}.ndjson")
    corpus = Corpus.from_folder(tmp_path)
    assert corpus["test"][0].tags == ("B-LOC",) and set(corpus.splits) == {"train", "valid", "test"}
