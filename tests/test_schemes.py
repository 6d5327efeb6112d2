"""Tag schemes: parsing, chunking in both modes, conversions, tag problems, spans."""

from __future__ import annotations

import dataclasses
import random

import pytest
from seqeval.metrics.sequence_labeling import get_entities
from seqeval.scheme import IOB2, IOBES, Tokens

from mner.tagging import (
    Span,
    convert_tags,
    entity_types,
    get_spans,
    normalize_scheme,
    parse_tag,
    spans_to_tags,
    tag_problems,
    with_char_offsets,
)


def keys(tags, mode="conlleval", scheme="iob2"):
    return [s.key for s in get_spans(tags, mode=mode, scheme=scheme)]


def random_tags(rng: random.Random, prefixes: str, types=("PER", "LOC", "ORG")) -> list[str]:
    """A random (often ill-formed) tag sequence of length 0..30."""
    types = types[: rng.choice((2, 3))]
    n = rng.randint(0, 30)
    p_o = rng.random()
    return [
        "O" if rng.random() < p_o else f"{rng.choice(prefixes)}-{rng.choice(types)}"
        for _ in range(n)
    ]


def random_spans(rng: random.Random, n: int, types=("PER", "LOC", "ORG")) -> list[tuple]:
    """Random non-overlapping spans over n tokens (adjacent ones included)."""
    spans, i = [], 0
    while i < n:
        if rng.random() < 0.4:
            end = min(n, i + rng.randint(1, 4))
            spans.append((i, end, rng.choice(types)))
            i = end
        else:
            i += 1
    return spans


# ----------------------------------------------------------------------------- parsing


def test_parse_tag():
    assert parse_tag("O") == ("O", "")
    assert parse_tag("B-PER") == ("B", "PER")
    assert parse_tag("S-LOC") == ("S", "LOC")
    # the type is everything after the first hyphen
    assert parse_tag("I-B-X") == ("I", "B-X")


@pytest.mark.parametrize(
    "bad", ["B", "X-PER", "PER", "", "B-", "O-PER", "b-PER", "BI-PER", "B-PER ", "B- PER", "-PER"]
)
def test_malformed_tags_raise_with_position(bad):
    tags = ["O", "B-PER", bad]
    for mode, scheme in [("conlleval", "iob2"), ("strict", "iob2"), ("strict", "bioes")]:
        with pytest.raises(ValueError, match=r"tag 2 .*" + repr(bad).replace("[", r"\[")):
            get_spans(tags, mode=mode, scheme=scheme)
    with pytest.raises(ValueError, match="tag 2"):
        convert_tags(tags, "iob2", "bioes")
    with pytest.raises(ValueError, match="sequence 1: tag 2"):
        entity_types([["O"], tags])


def test_non_string_tag_raises():
    with pytest.raises(ValueError, match="tag 1 is None"):
        get_spans(["O", None])
    with pytest.raises(TypeError):
        get_spans("B-PER")


def test_unknown_mode_and_scheme():
    with pytest.raises(ValueError, match="unknown mode"):
        get_spans(["O"], mode="lenient")
    with pytest.raises(ValueError, match="unknown tag scheme"):
        get_spans(["O"], scheme="bilou")
    with pytest.raises(ValueError, match="strict mode reads iob2 or bioes"):
        get_spans(["O"], mode="strict", scheme="iob1")
    assert normalize_scheme("BIO") == "iob2"
    assert normalize_scheme("IOBES") == "bioes"


# ----------------------------------------------------------------------------- conlleval mode


@pytest.mark.parametrize(
    "tags, expected",
    [
        ([], []),
        (["O", "O", "O"], []),
        (["B-PER"], [(0, 1, "PER")]),
        (["B-PER", "I-PER"], [(0, 2, "PER")]),  # entity at the very end
        (["I-PER"], [(0, 1, "PER")]),  # orphan I- at the start
        (["O", "I-PER", "I-PER", "O"], [(1, 3, "PER")]),  # orphan I- after O starts one
        (["B-PER", "O", "I-PER"], [(0, 1, "PER"), (2, 3, "PER")]),
        (["B-PER", "I-LOC"], [(0, 1, "PER"), (1, 2, "LOC")]),  # B-X I-Y: two entities
        (["B-PER", "I-PER", "I-LOC", "I-LOC"], [(0, 2, "PER"), (2, 4, "LOC")]),
        (["B-PER", "B-PER"], [(0, 1, "PER"), (1, 2, "PER")]),
        (["I-PER", "B-PER"], [(0, 1, "PER"), (1, 2, "PER")]),
        (["B-PER", "B-LOC", "I-LOC"], [(0, 1, "PER"), (1, 3, "LOC")]),
        # IOB1: B- only between adjacent entities of the same type
        (["I-PER", "I-PER", "B-PER", "I-PER", "O"], [(0, 2, "PER"), (2, 4, "PER")]),
        # BIOES
        (["B-PER", "E-PER", "S-LOC"], [(0, 2, "PER"), (2, 3, "LOC")]),
        (["B-PER", "I-PER", "E-PER", "O", "S-PER"], [(0, 3, "PER"), (4, 5, "PER")]),
        (["S-PER", "S-PER"], [(0, 1, "PER"), (1, 2, "PER")]),  # conlleval.pl would merge
        (["B-PER", "E-PER", "B-PER", "E-PER"], [(0, 2, "PER"), (2, 4, "PER")]),  # ditto
        (["E-PER", "E-PER"], [(0, 1, "PER"), (1, 2, "PER")]),
        (["S-PER", "I-PER", "E-PER"], [(0, 1, "PER"), (1, 3, "PER")]),
        (["E-PER", "I-PER"], [(0, 1, "PER"), (1, 2, "PER")]),
        (["B-PER", "I-PER"], [(0, 2, "PER")]),  # B- without E-: still one entity
        (["O", "E-LOC", "O"], [(1, 2, "LOC")]),
    ],
)
def test_conlleval_chunking(tags, expected):
    assert keys(tags) == expected
    # the reading does not depend on the scheme named
    for scheme in ("iob1", "io", "bioes"):
        assert keys(tags, scheme=scheme) == expected


# ----------------------------------------------------------------------------- strict mode


@pytest.mark.parametrize(
    "tags, expected",
    [
        ([], []),
        (["O", "O"], []),
        (["I-PER"], []),
        (["O", "I-PER", "I-PER"], []),  # orphan I-s belong to no entity
        (["B-PER", "I-PER"], [(0, 2, "PER")]),
        (["B-PER", "I-LOC", "I-LOC"], [(0, 1, "PER")]),  # B-X I-Y: I-Y is an orphan
        (["B-PER", "I-PER", "B-PER"], [(0, 2, "PER"), (2, 3, "PER")]),
        (["B-PER", "O", "I-PER"], [(0, 1, "PER")]),
        (["B-PER", "B-LOC", "I-LOC", "I-PER"], [(0, 1, "PER"), (1, 3, "LOC")]),
        (["I-PER", "B-PER", "I-PER"], [(1, 3, "PER")]),
    ],
)
def test_strict_iob2_chunking(tags, expected):
    assert keys(tags, mode="strict") == expected


@pytest.mark.parametrize("bad", ["E-PER", "S-PER"])
def test_strict_iob2_rejects_bioes_prefixes(bad):
    with pytest.raises(ValueError, match="tag 1 .*scheme='bioes'"):
        get_spans(["B-PER", bad], mode="strict", scheme="iob2")


@pytest.mark.parametrize(
    "tags, expected",
    [
        ([], []),
        (["S-PER"], [(0, 1, "PER")]),
        (["S-PER", "S-PER"], [(0, 1, "PER"), (1, 2, "PER")]),
        (["B-PER", "E-PER"], [(0, 2, "PER")]),
        (["B-PER", "I-PER", "I-PER", "E-PER", "S-LOC"], [(0, 4, "PER"), (4, 5, "LOC")]),
        (["B-PER", "I-PER"], []),  # no E-
        (["B-PER", "O"], []),
        (["B-PER", "E-LOC"], []),
        (["B-PER", "I-LOC", "E-LOC"], []),
        (["I-PER", "E-PER"], []),
        (["E-PER"], []),
        (["B-PER", "E-PER", "E-PER"], [(0, 2, "PER")]),
        (["B-PER", "B-PER", "E-PER"], [(1, 3, "PER")]),
        (["B-PER", "I-PER", "S-LOC", "B-PER", "E-PER"], [(2, 3, "LOC"), (3, 5, "PER")]),
    ],
)
def test_strict_bioes_chunking(tags, expected):
    assert keys(tags, mode="strict", scheme="bioes") == expected
    assert keys(tags, mode="strict", scheme="iobes") == expected


def test_spans_equal_seqeval_on_random_sequences():
    """Per sequence: conlleval == seqeval's default chunking, strict == its Tokens."""
    rng = random.Random(1234)
    for _ in range(3000):
        tags = random_tags(rng, "BI")
        expected = [(s, e + 1, t) for t, s, e in get_entities(tags)]
        assert keys(tags) == expected, tags
        expected = [(e.start, e.end, e.tag) for e in Tokens(tags, IOB2).entities]
        assert keys(tags, mode="strict") == expected, tags
    for _ in range(3000):
        tags = random_tags(rng, "BIES")
        expected = [(s, e + 1, t) for t, s, e in get_entities(tags)]
        assert keys(tags, scheme="bioes") == expected, tags
        expected = [(e.start, e.end, e.tag) for e in Tokens(tags, IOBES).entities]
        assert keys(tags, mode="strict", scheme="bioes") == expected, tags


def test_orphans_are_the_difference_between_modes():
    """On B/I/O tags, conlleval reads one entity per B- and per orphan I-, strict per B-."""
    rng = random.Random(7)
    for _ in range(2000):
        tags = random_tags(rng, "BI")
        orphans = [i for i, msg in tag_problems(tags) if "orphan" in msg]
        n_b = sum(t.startswith("B-") for t in tags)
        assert len(get_spans(tags, mode="strict")) == n_b
        assert len(get_spans(tags)) == n_b + len(orphans)
        assert sorted(s.start for s in get_spans(tags)) == sorted(
            [i for i, t in enumerate(tags) if t.startswith("B-")] + orphans
        )


# ----------------------------------------------------------------------------- spans


def test_span_dataclass():
    s = Span(2, 4, "PER")
    assert s.key == (2, 4, "PER") and len(s) == 2
    assert s.char_start is None and s.char_end is None and s.text is None and s.score is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.start = 3
    with pytest.raises(ValueError, match="start < end"):
        Span(3, 3, "PER")
    with pytest.raises(ValueError, match="start < end"):
        Span(-1, 2, "PER")


def test_with_char_offsets():
    tokens = ["RT", "@user", ":", "Barack", "Obama", "\u00a0", "in", "New", "York"]
    offsets, pos = [], 0
    for tok in tokens:
        offsets.append((pos, pos + len(tok)))
        pos += len(tok) + 1
    text = " ".join(tokens)
    tags = ["O", "O", "O", "B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC"]
    spans = with_char_offsets(get_spans(tags), offsets, text)
    assert [(s.label, s.text) for s in spans] == [("PER", "Barack Obama"), ("LOC", "New York")]
    assert all(text[s.char_start:s.char_end] == s.text for s in spans)
    assert spans[0].key == (3, 5, "PER")
    scored = with_char_offsets([Span(0, 1, "X", score=0.5)], offsets, text)
    assert scored[0].score == 0.5 and scored[0].text == "RT"
    with pytest.raises(ValueError, match="ends past"):
        with_char_offsets([Span(8, 10, "LOC")], offsets, text)


def test_spans_to_tags():
    spans = [(0, 2, "PER"), (2, 3, "PER"), (4, 5, "LOC")]
    assert spans_to_tags(spans, 6) == ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "O"]
    assert spans_to_tags(spans, 6, "bioes") == ["B-PER", "E-PER", "S-PER", "O", "S-LOC", "O"]
    assert spans_to_tags(spans, 6, "iob1") == ["I-PER", "I-PER", "B-PER", "O", "I-LOC", "O"]
    assert spans_to_tags(spans, 6, "io") == ["I-PER", "I-PER", "I-PER", "O", "I-LOC", "O"]
    assert spans_to_tags([Span(1, 2, "X")], 2) == ["O", "B-X"]
    assert spans_to_tags([], 0) == []
    with pytest.raises(ValueError, match="overlaps"):
        spans_to_tags([(0, 2, "PER"), (1, 3, "LOC")], 4)
    with pytest.raises(ValueError, match="does not fit"):
        spans_to_tags([(3, 5, "PER")], 4)


# ----------------------------------------------------------------------------- conversions


def test_convert_examples():
    iob2 = ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "I-LOC", "I-LOC", "B-ORG"]
    assert convert_tags(iob2, "iob2", "bioes") == [
        "B-PER", "E-PER", "S-PER", "O", "B-LOC", "I-LOC", "E-LOC", "S-ORG"]
    assert convert_tags(iob2, "bio", "iob1") == [
        "I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-LOC", "I-LOC", "I-ORG"]
    assert convert_tags(iob2, "iob2", "io") == [
        "I-PER", "I-PER", "I-PER", "O", "I-LOC", "I-LOC", "I-LOC", "I-ORG"]
    # io -> iob2 cannot split adjacent same-type entities
    assert convert_tags(convert_tags(iob2, "iob2", "io"), "io", "iob2") == [
        "B-PER", "I-PER", "I-PER", "O", "B-LOC", "I-LOC", "I-LOC", "B-ORG"]
    # iob1 -> iob2: an I- that starts an entity becomes B-
    assert convert_tags(["I-PER", "I-LOC", "O", "I-LOC"], "iob1", "iob2") == [
        "B-PER", "B-LOC", "O", "B-LOC"]
    # an orphan I- of iob2 is read as an entity start
    assert convert_tags(["O", "I-PER", "I-PER"], "iob2", "iob2") == ["O", "B-PER", "I-PER"]
    assert convert_tags([], "iob2", "bioes") == []


@pytest.mark.parametrize(
    "tags, source",
    [(["B-PER", "E-PER"], "iob2"), (["S-PER"], "iob1"), (["B-PER"], "io")],
)
def test_convert_rejects_foreign_prefixes(tags, source):
    with pytest.raises(ValueError, match=f"is not a prefix of {source}"):
        convert_tags(tags, source, "bioes")


def test_round_trips():
    rng = random.Random(99)
    for _ in range(2000):
        n = rng.randint(0, 30)
        spans = random_spans(rng, n)
        iob2 = spans_to_tags(spans, n, "iob2")
        assert keys(iob2) == spans
        assert keys(iob2, mode="strict") == spans
        bioes = convert_tags(iob2, "iob2", "bioes")
        assert keys(bioes, mode="strict", scheme="bioes") == spans
        assert convert_tags(bioes, "bioes", "iob2") == iob2
        assert convert_tags(bioes, "bioes", "bioes") == bioes
        iob1 = convert_tags(iob2, "iob2", "iob1")
        assert keys(iob1, scheme="iob1") == spans
        assert convert_tags(iob1, "iob1", "iob2") == iob2
        # io: exact unless two entities of the same type touch, which io merges
        io = convert_tags(iob2, "iob2", "io")
        back = convert_tags(io, "io", "iob2")
        touching = any(a[1] == b[0] and a[2] == b[2] for a, b in zip(spans, spans[1:]))
        assert (back == iob2) == (not touching)
        merged = []
        for s in spans:
            if merged and merged[-1][1] == s[0] and merged[-1][2] == s[2]:
                merged[-1] = (merged[-1][0], s[1], s[2])
            else:
                merged.append(s)
        assert keys(back) == merged


# ----------------------------------------------------------------------------- problems, types


def test_tag_problems_iob2():
    assert tag_problems([]) == []
    assert tag_problems(["O", "B-PER", "I-PER", "B-LOC", "O"]) == []
    probs = tag_problems(["I-PER", "B-PER", "I-LOC", "O", "I-LOC", "I-LOC", "S-PER", "Q"])
    assert [i for i, _ in probs] == [0, 2, 4, 6, 7]
    assert "orphan 'I-PER'" in probs[0][1]
    assert "orphan 'I-LOC'" in probs[1][1]
    assert "S- is not a prefix of iob2" in probs[3][1]
    assert "malformed tag 'Q'" in probs[4][1]


def test_tag_problems_other_schemes():
    assert tag_problems(["I-PER", "I-PER", "B-PER", "O"], "iob1") == []
    assert [i for i, _ in tag_problems(["O", "B-PER", "I-PER"], "iob1")] == [1]
    assert tag_problems(["I-PER", "O", "I-LOC"], "io") == []
    assert [i for i, _ in tag_problems(["B-PER", "I-PER"], "io")] == [0]
    assert tag_problems(["S-PER", "B-LOC", "I-LOC", "E-LOC", "O"], "bioes") == []
    probs = tag_problems(["B-PER", "O", "I-LOC", "E-PER", "B-ORG", "E-LOC"], "bioes")
    assert [i for i, _ in probs] == [0, 2, 2, 3, 4, 5]


def test_entity_types():
    assert entity_types([]) == []
    assert entity_types([["O"], ["B-PER", "I-LOC"], ["S-MISC", "O"]]) == ["LOC", "MISC", "PER"]
    with pytest.raises(TypeError):
        entity_types(["B-PER", "O"])


def test_orphan_positions_agree_with_tag_problems():
    import random

    from mner.tagging import orphan_positions

    assert orphan_positions(["O", "I-PER", "I-PER", "B-LOC", "I-ORG", "I-ORG"]) == [1, 4]
    assert orphan_positions(["I-X"]) == [0] and orphan_positions([]) == []
    rng = random.Random(5)
    for _ in range(2000):
        tags = [rng.choice(["O", "B-A", "I-A", "B-B", "I-B"]) for _ in range(rng.randrange(12))]
        from_problems = [i for i, msg in tag_problems(tags, "iob2") if msg.startswith("orphan")]
        assert orphan_positions(tags) == from_problems, tags


def test_orphan_positions_skip_malformed_tags():
    from mner.tagging import orphan_positions

    # "I-" and "I-PER " are malformed, not orphans; a malformed tag continues nothing
    assert orphan_positions(["I-", "I-PER ", "O", "I-PER"]) == [3]
    assert orphan_positions(["B-PER ", "I-PER"]) == [1]
    rng = random.Random(7)
    pool = ["O", "B-A", "I-A", "I-B", "I-", "I-A ", "B-", "X-A", "E-A", "S-B", "-"]
    for _ in range(2000):
        tags = [rng.choice(pool) for _ in range(rng.randrange(12))]
        from_problems = [i for i, msg in tag_problems(tags, "iob2") if msg.startswith("orphan")]
        assert orphan_positions(tags) == from_problems, tags
