"""Issue 8, fuzzing with hypothesis (bounded: the whole file runs in a few seconds).

- readers and writers: random unicode tokens, tags, ids and captions; read -> write -> read gives
  the same examples in every format, and a writer refuses (with :class:`MNERError`) what its
  format cannot hold instead of writing a file that reads back differently;
- tag schemes: conversions keep the entities, round trips are exact;
- offsets: token offsets slice the text back to each token, entity offsets to the entity;
- the image loader on mutated image bytes: an RGB image or an :class:`ImageError` of a
  documented kind, nothing else.
"""

from __future__ import annotations

import io
import string

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from mner.data.example import Example
from mner.data.formats import read_file, write_file
from mner.data.images import ImageError, ImageStore
from mner.data.tokenize import tokenize_text
from mner.errors import MNERError
from mner.pipeline import Pipeline
from mner.tagging import convert_tags, get_spans, spans_to_tags

FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# any character but the format's separators (TAB, line ends); surrogates cannot be UTF-8
token_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\t\n\r")
#: tokens that look like something else in some format (a tweet start, a document marker, a
#: metadata line, blanks, separators of other systems, a byte-order mark)
TRICKY = ["IMGID:1", "IMGID:", "-DOCSTART-", "# id = x", "# image = y", "", " ", "\u00a0", "\u2028", "\u0085",
          "\ufeff", "\ufeffIMGID:2", "{", "O"]
tokens = st.one_of(st.text(token_chars, min_size=0, max_size=8), st.sampled_from(TRICKY))
types = st.text(string.ascii_uppercase, min_size=1, max_size=4)
tags = st.one_of(st.just("O"), st.builds(lambda p, t: f"{p}-{t}", st.sampled_from("BI"), types))
ids = st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=10)


@st.composite
def examples(draw, fmt: str):
    n = draw(st.integers(1, 4))
    out = []
    for k in range(n):
        toks = draw(st.lists(tokens, min_size=1, max_size=6))
        tg = draw(st.lists(tags, min_size=len(toks), max_size=len(toks)))
        tid = f"{draw(ids)}{k}"  # unique ids
        if fmt == "twitter":
            out.append(Example(tid, toks, tg, image=tid))
        elif fmt == "conll":
            caption = draw(st.none() | st.text(token_chars, max_size=10))
            image = draw(st.none() | ids)
            out.append(Example(tid, toks, tg, image=image, caption=caption))
        else:
            # JSON holds any string: TABs and line ends in tokens too
            toks = draw(st.lists(st.text(max_size=8), min_size=len(toks), max_size=len(toks)))
            out.append(Example(tid, toks, draw(st.none() | st.just(tg)), image=draw(st.none() | ids),
                               caption=draw(st.none() | st.text(max_size=10))))
    return out


def _round_trip(tmp_path_factory, exs, fmt: str, suffix: str):
    path = tmp_path_factory.mktemp("rt") / f"data{suffix}"
    try:
        write_file(exs, path, fmt)
    except MNERError as err:  # a token the format cannot hold: refused, never written wrong
        assert "cannot be written" in str(err) and "write JSONL" in str(err)
        return None
    return read_file(path, fmt)


@pytest.mark.parametrize("fmt, suffix", [("twitter", ".txt"), ("conll", ".conll"), ("jsonl", ".jsonl")])
def test_fuzz_write_read_round_trip(tmp_path_factory, fmt, suffix):
    @FUZZ
    @given(examples(fmt))
    def check(exs):
        back = _round_trip(tmp_path_factory, exs, fmt, suffix)
        if back is None:
            return
        assert back == exs
        again = _round_trip(tmp_path_factory, back, fmt, suffix)
        assert again == back

    check()


@st.composite
def span_sets(draw):
    length = draw(st.integers(0, 12))
    spans, pos = [], 0
    while pos < length:
        start = draw(st.integers(pos, length))
        if start >= length:
            break
        end = draw(st.integers(start + 1, min(length, start + 4)))
        spans.append((start, end, draw(st.sampled_from(["PER", "LOC", "ORG", "MISC"]))))
        pos = end
    return length, spans


@FUZZ
@given(span_sets(), st.lists(tags, max_size=12))
def test_fuzz_scheme_conversions_keep_the_spans(span_set, any_tags):
    length, spans = span_set
    iob2 = spans_to_tags(spans, length, "iob2")
    assert [s.key for s in get_spans(iob2, mode="strict")] == spans
    for scheme in ("bioes", "iob1"):
        there = convert_tags(iob2, "iob2", scheme)
        assert convert_tags(there, scheme, "iob2") == iob2
    bioes = convert_tags(iob2, "iob2", "bioes")
    assert [s.key for s in get_spans(bioes, mode="strict", scheme="bioes")] == spans
    # any tag sequence (orphan I- included): the conversion keeps its conlleval entities
    read = [s.key for s in get_spans(any_tags, mode="conlleval")]
    assert [s.key for s in get_spans(convert_tags(any_tags, "iob2", "bioes"), mode="strict", scheme="bioes")] == read
    assert [s.key for s in get_spans(convert_tags(any_tags, "iob2", "iob2"), mode="strict")] == read


@FUZZ
@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=40), st.data())
def test_fuzz_offsets_slice_the_text(text, data):
    toks, offs = tokenize_text(text)
    assert len(toks) == len(offs)
    for tok, (s, e) in zip(toks, offs):
        assert text[s:e] == tok and tok
    assume(toks)
    tg = data.draw(st.lists(tags, min_size=len(toks), max_size=len(toks)))
    ex = Example("1", toks, text=text, offsets=offs)
    ents = Pipeline._entities(ex, tg, [1.0] * len(toks))
    assert [(e["token_start"], e["token_end"], e["type"]) for e in ents] == [s.key for s in get_spans(tg)]
    for e in ents:
        assert e["text"] == text[e["start"]:e["end"]]
        assert e["start"] == offs[e["token_start"]][0] and e["end"] == offs[e["token_end"] - 1][1]
        assert e["text"].startswith(toks[e["token_start"]]) and e["text"].endswith(toks[e["token_end"] - 1])


def _seed_images() -> dict[str, bytes]:
    out = {}
    img = Image.new("RGB", (12, 9), (10, 200, 30))
    for fmt in ("JPEG", "PNG", "GIF", "BMP"):
        buf = io.BytesIO()
        img.save(buf, fmt)
        out[fmt] = buf.getvalue()
    return out


SEEDS = _seed_images()
KINDS = {"missing", "empty", "corrupt", "truncated", "too-large", "not-a-file"}


@st.composite
def mutated_images(draw):
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[i:]
        else:
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


def test_fuzz_image_loader_on_mutated_bytes(tmp_path):
    store = ImageStore(tmp_path, max_pixels=1_000_000)

    @FUZZ
    @given(mutated_images())
    def check(data):
        (tmp_path / "x.img").write_bytes(data)
        try:
            img = store.open("x.img")
        except ImageError as err:
            assert err.kind in KINDS and "x.img" in str(err)
        else:
            assert img.mode == "RGB" and img.size[0] * img.size[1] <= 1_000_000

    check()
