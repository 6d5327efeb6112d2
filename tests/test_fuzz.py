"""Issue 8, fuzzing with hypothesis (bounded: the whole file runs in a few seconds).

- readers and writers: random unicode tokens, tags, ids and captions; read -> write -> read gives
  the same examples in every format, and a writer refuses (with :class:`MNERError`) what its
  format cannot hold instead of writing a file that reads back differently;
- tag schemes: conversions keep the entities, round trips are exact;
- offsets: token offsets slice the text back to each token, entity offsets to the entity;
- the image loader on mutated image bytes: an RGB image or an :class:`ImageError` of a
  documented kind, nothing else;
- the Unicode tweets really hold (issue 24): unpaired surrogates, combining marks, zero-width-joiner
  emoji sequences, right-to-left text, U+2028 / U+0085, variation selectors. The library
  (``Pipeline``), the command line (``mner predict``, ``mner data convert``) and the batch tagger's
  per-window code give entities or a user error (``MNERError``: one line, exit code 2), never a
  traceback; every entity's offsets slice the text as given back to the entity's text, never
  inside a grapheme cluster; read -> write -> read is identical (or the writer refuses).
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
#: what real tweets hold (issue 24): combining marks (a decomposed é, Devanagari and Thai vowel
#: signs), zero-width-joiner emoji sequences, flags, keycaps, variation selectors, right-to-left
#: text and marks, line and paragraph separators, NEL
UNICODE = ["e\u0301", "Montre\u0301al", "\u0301", "\u0915\u093f", "\u0928\u092e\u0938\u094d\u0924\u0947",
           "\u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22", "\u0e01\u0e34",
           "\U0001F468\u200d\U0001F469\u200d\U0001F467", "\u200d", "\u200c", "\U0001F44D\U0001F3FD",
           "\U0001F1EB\U0001F1F7", "1\ufe0f\u20e3", "\u2764\ufe0f", "\ufe0f", "\ufe0e",
           "\u05e9\u05dc\u05d5\u05dd", "\u0627\u0644\u0639\u0631\u0628\u064a\u0629", "\u200f", "\u202e",
           "\u2066", "\u2028", "\u2029", "\u0085"]
#: what a JSON ``\\ud800`` escape without its pair, or bytes that are not UTF-8 read with
#: ``surrogateescape``, make of a string
SURROGATES = ["\ud800", "\udbff", "\udc80", "\udcff", "\udfff"]
tokens = st.one_of(st.text(token_chars, min_size=0, max_size=8), st.sampled_from(TRICKY), st.sampled_from(UNICODE),
                   st.lists(st.sampled_from(UNICODE + list("aZ9#@'-")), min_size=1, max_size=4).map("".join))
types = st.text(string.ascii_uppercase, min_size=1, max_size=4)
tags = st.one_of(st.just("O"), st.builds(lambda p, t: f"{p}-{t}", st.sampled_from("BI"), types))
ids = st.one_of(st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=10),
                # ids a format may not hold (line breaks, TABs, spaces around): written right or refused
                st.lists(st.sampled_from(UNICODE + ["a", "7", "\n", "\t", "\r", " ", "IMGID:x", "# id = y"]),
                         min_size=1, max_size=4).map("".join))
#: a tweet: words, the pieces above, and now and then an unpaired surrogate
tweet_texts = st.lists(st.one_of(st.sampled_from(UNICODE + ["Paris", "Nova", " ", "  ", "#tag", "@user", "'", "-",
                                                            "http://t.co/x", "3.5", "\n", "\t"]),
                                 st.text(max_size=3)), max_size=10).map("".join)
tweet_texts_with_surrogates = st.builds(lambda t, s, k: t[:k] + s + t[k:], tweet_texts, st.sampled_from(SURROGATES),
                                        st.integers(0, 40))


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


# ------------------------------------------------------------------------ Unicode that tweets hold
import json  # noqa: E402

import regex  # noqa: E402

from mner.data.example import TextError  # noqa: E402
from mner.data.formats import read_jsonl  # noqa: E402
from model_fixtures import encoders, one_thread  # noqa: E402,F401  (fixtures)
from test_robustness import model_dir, run  # noqa: E402,F401  (fixture, helper)

FEW = settings(max_examples=25, deadline=None, derandomize=True,
               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _no_cut(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` begins and ends at grapheme cluster boundaries."""
    bounds = {0} | {m.end() for m in regex.finditer(r"\X", text)}
    return start in bounds and end in bounds


def _check_entities(text: str, entities: list[dict]) -> None:
    for e in entities:
        assert e["text"] == text[e["start"]:e["end"]] and e["text"]
        assert _no_cut(text, e["start"], e["end"]), (text, e)


@FUZZ
@given(st.one_of(tweet_texts, tweet_texts_with_surrogates))
def test_fuzz_unicode_tokens_slice_the_text_and_keep_clusters(text):
    toks, offs = tokenize_text(text)
    for tok, (s, e) in zip(toks, offs):
        assert text[s:e] == tok and tok and not tok.isspace()
    for (_, e), (s, _) in zip(offs, offs[1:]):  # tokens that touch meet at a cluster boundary
        assert e < s or _no_cut(text, s, s)


def test_fuzz_unicode_library_cli_and_batch_never_traceback(model_dir, one_thread, tmp_path):
    from mner.batch.job import tag_window
    from mner.batch.prepare import PrepareSettings, prepare_rows
    from mner.batch.sources import Record
    from mner.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(model_dir, device="cpu")

    @FUZZ
    @given(st.one_of(tweet_texts, tweet_texts_with_surrogates))
    def library(text):
        bad = any(c in text for c in SURROGATES)
        try:
            entities = pipe(text)
        except TextError as err:  # a user error naming the field and the character
            assert bad and "unpaired surrogate" in str(err)
            return
        assert not bad
        _check_entities(text, entities)
        # the batch tagger's code on the same text (as a JSONL row): tagged, or a counted failure
        rec = Record(1, 1, json.dumps({"id": "x", "text": text}))
        outcome = tag_window(pipe, prepare_rows(str(tmp_path / "in.jsonl"), "jsonl", [rec],
                                                PrepareSettings(pixels=False)))
        assert len(outcome.rows) + len(outcome.failed) == 1
        if outcome.rows:
            _check_entities(text, outcome.rows[0]["entities"])
        else:
            assert outcome.failed[0]["reason"] == "empty-text" and not text.strip()

    library()

    @FEW
    @given(st.one_of(tweet_texts, tweet_texts_with_surrogates))
    def cli(text):
        line = tmp_path / "in.jsonl"
        line.write_text(json.dumps({"text": text}) + "\n", encoding="utf-8")  # JSON escapes the surrogates
        for argv in (("predict", model_dir, f"--text={text}"), ("predict", model_dir, "--input", line)):
            code, out, err = run(*argv)
            assert "Traceback" not in err and code in (0, 2), (argv, err)
            if code == 2:
                assert any(c in text for c in SURROGATES) and "unpaired surrogate" in err
                continue
            record = json.loads(out)
            assert record["text"] == text
            _check_entities(text, record["entities"])

    cli()


@FUZZ
@given(st.lists(st.one_of(tokens, st.sampled_from(SURROGATES)), min_size=1, max_size=5), st.data())
def test_fuzz_strings_that_are_not_unicode_are_refused_where_they_enter(tmp_path_factory, toks, data):
    path = tmp_path_factory.mktemp("sur") / "in.jsonl"
    caption = data.draw(st.none() | st.sampled_from(SURROGATES) | st.sampled_from(UNICODE))
    obj = {"id": "t", "tokens": toks, "tags": ["O"] * len(toks), "caption": caption}
    path.write_text(json.dumps(obj) + "\n", encoding="utf-8")
    strings = list(toks) + ([caption] if caption else [])
    bad = any(c in s for s in strings for c in SURROGATES)
    try:
        [ex] = read_jsonl(path)
    except MNERError as err:  # read_jsonl names the line; data convert prints it as one line
        assert bad and f"{path}:1: tweet 't': " in str(err) and "unpaired surrogate" in str(err)
        code, out, err = run("data", "convert", path, path.with_suffix(".conll"))
        assert code == 2 and "Traceback" not in err and not path.with_suffix(".conll").exists()
        return
    assert not bad and ex.tokens == tuple(toks)
