"""Tag schemes and entity spans: tags -> :class:`Span` and back.

This is the last step of the data flow (file -> Example -> batch -> model -> tags -> entity
spans). Tags are strings: ``"O"``, or ``"<P>-<TYPE>"`` with the prefix ``P`` one of
``B I E S`` (``B-PER``, ``I-LOC``, ``S-MISC``); the type is everything after the first
hyphen and may itself hold hyphens. Anything else (``"B"``, ``"X-PER"``, ``"PER"``, ``""``)
is malformed and raises :class:`ValueError` naming its position.

Schemes (names are case-insensitive; ``bio`` is ``iob2``, ``iobes`` is ``bioes``):

``iob2``
    ``B-`` starts every entity, ``I-`` continues it. The benchmark files use it.
``iob1``
    ``I-`` everywhere; ``B-`` only on the first token of an entity that directly follows an
    entity of the same type.
``io``
    ``I-`` only; two adjacent entities of the same type cannot be told apart.
``bioes``
    ``S-`` for a one-token entity, else ``B- I-* E-``.

Reading modes of :func:`get_spans`:

``"conlleval"`` (lenient; the default, and what the MNER papers report)
    The chunking of the CoNLL ``conlleval.pl`` script as extended for ``S-``/``E-`` by
    seqeval's default mode. Every non-``O`` tag belongs to exactly one entity; an entity
    starts at a ``B-`` or ``S-``, after ``O``, after an ``E-`` or ``S-``, or where the type
    changes, so an ``I-`` after ``O`` starts an entity (an "orphan" ``I-`` is counted). One
    reading serves IOB1, IOB2, IO and BIOES input alike; ``scheme`` only has to be a known
    name.
``"strict"``
    Only well-formed entities count, as in seqeval's ``mode="strict"``. With
    ``scheme="iob2"`` an entity is ``B-X I-X*``; an ``I-`` that does not continue a ``B-``/``I-``
    of its type belongs to no entity, and ``E-``/``S-`` tags are an error. With
    ``scheme="bioes"`` an entity is ``S-X`` or ``B-X I-X* E-X``; anything else belongs to no
    entity.

The 2015 benchmark has orphan ``I-`` tags (135 in test): the two modes count 5207 and 5072
gold entities there. :func:`tag_problems` lists such quirks for the data validator.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterable, Sequence

__all__ = [
    "MODES",
    "SCHEMES",
    "Span",
    "convert_tags",
    "entity_types",
    "get_spans",
    "normalize_scheme",
    "parse_tag",
    "spans_to_tags",
    "tag_problems",
    "with_char_offsets",
]

#: Canonical scheme names (see the module docstring).
SCHEMES = ("iob1", "iob2", "io", "bioes")
#: Reading modes of :func:`get_spans` and :func:`mner.tagging.metrics.score`.
MODES = ("conlleval", "strict")

_ALIASES = {
    "iob1": "iob1",
    "iob2": "iob2",
    "bio": "iob2",
    "io": "io",
    "bioes": "bioes",
    "iobes": "bioes",
}
#: Prefixes each scheme may use (besides "O").
_ALLOWED = {"iob1": "BI", "iob2": "BI", "io": "I", "bioes": "BIES"}

_EXPECTED = "expected 'O' or '<B|I|E|S>-<TYPE>', e.g. 'B-PER'"

# tag -> (prefix, type); "O" -> ("O", ""). Only well-formed tags are cached; the cache is
# bounded so that a stream of garbage cannot grow it without end.
_PARSED: dict[str, tuple[str, str]] = {"O": ("O", "")}
_PARSED_MAX = 10_000


@dataclass(frozen=True)
class Span:
    """One entity: tokens ``start`` to ``end`` (exclusive) of type ``label``.

    Attributes:
        start: index of the first token.
        end: index one past the last token (``end - start`` tokens).
        label: the entity type, without prefix (``"PER"``).
        char_start, char_end: character range in the text (see :func:`with_char_offsets`).
        text: ``text[char_start:char_end]``.
        score: a confidence, when the producer has one.
    """

    start: int
    end: int
    label: str
    char_start: int | None = None
    char_end: int | None = None
    text: str | None = None
    score: float | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end:
            raise ValueError(
                f"span ({self.start}, {self.end}, {self.label!r}): need 0 <= start < end "
                "(end is exclusive)"
            )

    @property
    def key(self) -> tuple[int, int, str]:
        """``(start, end, label)``: what entity-level scoring compares."""
        return (self.start, self.end, self.label)

    def __len__(self) -> int:
        return self.end - self.start


def with_char_offsets(
    spans: Iterable[Span], offsets: Sequence[tuple[int, int]], text: str
) -> list[Span]:
    """Copies of ``spans`` with ``char_start``, ``char_end`` and ``text`` filled in.

    ``offsets[i]`` is the ``(start, end)`` character range of token ``i`` in ``text``
    (as :attr:`mner.data.Example.offsets`).
    """
    out = []
    for span in spans:
        if span.end > len(offsets):
            raise ValueError(
                f"span ({span.start}, {span.end}, {span.label!r}) ends past the "
                f"{len(offsets)} token offsets given"
            )
        cs, ce = offsets[span.start][0], offsets[span.end - 1][1]
        out.append(dataclasses.replace(span, char_start=cs, char_end=ce, text=text[cs:ce]))
    return out


def normalize_scheme(scheme: str) -> str:
    """The canonical name of ``scheme`` (``"BIO"`` -> ``"iob2"``); ValueError if unknown."""
    name = _ALIASES.get(str(scheme).lower())
    if name is None:
        raise ValueError(
            f"unknown tag scheme {scheme!r}; choose one of {', '.join(SCHEMES)} "
            "(aliases: bio = iob2, iobes = bioes)"
        )
    return name


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose 'conlleval' (lenient) or 'strict'")
    return mode


def _parse_new(tag: object, pos: int) -> tuple[str, str]:
    """Parse a tag not yet in the cache; raise ValueError naming ``pos`` if malformed."""
    if not isinstance(tag, str):
        raise ValueError(f"tag {pos} is {tag!r}, not a string; {_EXPECTED}")
    prefix, sep, typ = tag.partition("-")
    if tag == "O":
        return ("O", "")
    if len(prefix) != 1 or prefix not in "BIES" or not sep:
        raise ValueError(f"tag {pos} is malformed: {tag!r}; {_EXPECTED}")
    if not typ or typ != typ.strip():
        raise ValueError(
            f"tag {pos} is malformed: {tag!r} (empty type or whitespace around it); {_EXPECTED}"
        )
    parsed = (prefix, typ)
    if len(_PARSED) < _PARSED_MAX:
        _PARSED[tag] = parsed
    return parsed


def parse_tag(tag: str, pos: int = 0) -> tuple[str, str]:
    """``"B-PER"`` -> ``("B", "PER")``, ``"O"`` -> ``("O", "")``.

    Raises ValueError for a malformed tag, naming ``pos`` (its index in the sequence).
    """
    parsed = _PARSED.get(tag) if isinstance(tag, str) else None
    return parsed if parsed is not None else _parse_new(tag, pos)


def _parse_all(tags: Sequence[str]) -> list[tuple[str, str]]:
    cache = _PARSED
    out = []
    for i, tag in enumerate(tags):
        parsed = cache.get(tag) if isinstance(tag, str) else None
        out.append(parsed if parsed is not None else _parse_new(tag, i))
    return out


# ----------------------------------------------------------------------------- chunking
# The three readers below return (start, end, type) tuples; metrics use them directly.


def _chunks_conlleval(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    out = []
    cur = None  # type of the open entity, None after "O"
    begin = 0
    prev_prefix = "O"
    for i, (prefix, typ) in enumerate(_parse_all(tags)):
        if prefix == "O":
            if cur is not None:
                out.append((begin, i, cur))
                cur = None
        elif cur is None or typ != cur or prefix in "BS" or prev_prefix in "ES":
            if cur is not None:
                out.append((begin, i, cur))
            begin, cur = i, typ
        prev_prefix = prefix
    if cur is not None:
        out.append((begin, len(tags), cur))
    return out


def _chunks_strict_iob2(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    out = []
    cur = None  # type of the open B-X I-X* entity
    begin = 0
    for i, (prefix, typ) in enumerate(_parse_all(tags)):
        if prefix == "I" and typ == cur:
            continue
        if cur is not None:
            out.append((begin, i, cur))
            cur = None
        if prefix == "B":
            begin, cur = i, typ
        elif prefix in "ES":
            raise ValueError(
                f"tag {i} is {tags[i]!r}: {prefix}- is not an IOB2 prefix; read BIOES tags "
                "with scheme='bioes'"
            )
    if cur is not None:
        out.append((begin, len(tags), cur))
    return out


def _chunks_strict_bioes(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    out = []
    cur = None  # type of the open B-X I-X* prefix of an entity, waiting for its E-X
    begin = 0
    for i, (prefix, typ) in enumerate(_parse_all(tags)):
        if prefix == "I":
            if typ != cur:
                cur = None
        elif prefix == "E":
            if typ == cur:
                out.append((begin, i + 1, typ))
            cur = None
        elif prefix == "B":
            begin, cur = i, typ
        elif prefix == "S":
            out.append((i, i + 1, typ))
            cur = None
        else:
            cur = None
    return out


def _chunker(mode: str, scheme: str):
    """The chunking function for ``mode`` and ``scheme`` (both validated here)."""
    _check_mode(mode)
    scheme = normalize_scheme(scheme)
    if mode == "conlleval":
        return _chunks_conlleval
    if scheme == "iob2":
        return _chunks_strict_iob2
    if scheme == "bioes":
        return _chunks_strict_bioes
    raise ValueError(
        f"strict mode reads iob2 or bioes tags, not {scheme}; convert them first "
        f"(convert_tags(tags, {scheme!r}, 'iob2')) or use mode='conlleval'"
    )


def get_spans(tags: Sequence[str], mode: str = "conlleval", scheme: str = "iob2") -> list[Span]:
    """The entities of one tag sequence, in order (see the module docstring for the modes).

    >>> [s.key for s in get_spans(["I-PER", "I-PER", "O", "B-LOC"])]
    [(0, 2, 'PER'), (3, 4, 'LOC')]
    >>> [s.key for s in get_spans(["I-PER", "I-PER", "O", "B-LOC"], mode="strict")]
    [(3, 4, 'LOC')]
    """
    if isinstance(tags, str):
        raise TypeError("get_spans takes a sequence of tags, not one string")
    return [Span(s, e, t) for s, e, t in _chunker(mode, scheme)(tags)]


def spans_to_tags(spans: Iterable[Span | tuple[int, int, str]], length: int,
                  scheme: str = "iob2") -> list[str]:
    """Tags of a sequence of ``length`` tokens holding ``spans`` (which must not overlap).

    ``spans`` may be :class:`Span` objects or ``(start, end, label)`` tuples.
    """
    scheme = normalize_scheme(scheme)
    keys = sorted(s.key if isinstance(s, Span) else tuple(s) for s in spans)
    tags = ["O"] * length
    prev_end, prev_type = -1, None
    for start, end, label in keys:
        if not 0 <= start < end <= length:
            raise ValueError(
                f"span ({start}, {end}, {label!r}) does not fit a sequence of {length} tokens"
            )
        if start < prev_end:
            raise ValueError(f"span ({start}, {end}, {label!r}) overlaps the span before it")
        if scheme == "iob2":
            tags[start] = f"B-{label}"
            for k in range(start + 1, end):
                tags[k] = f"I-{label}"
        elif scheme == "bioes":
            if end - start == 1:
                tags[start] = f"S-{label}"
            else:
                tags[start] = f"B-{label}"
                for k in range(start + 1, end - 1):
                    tags[k] = f"I-{label}"
                tags[end - 1] = f"E-{label}"
        else:
            for k in range(start, end):
                tags[k] = f"I-{label}"
            if scheme == "iob1" and start == prev_end and label == prev_type:
                tags[start] = f"B-{label}"
        prev_end, prev_type = end, label
    return tags


def convert_tags(tags: Sequence[str], source: str, target: str) -> list[str]:
    """Re-encode ``tags`` from scheme ``source`` to scheme ``target``.

    The entities are read in the conlleval way (for iob1 that is the standard reading: an
    ``I-`` that starts an entity becomes ``B-`` in iob2) and written in ``target``. So:

    - iob2 -> bioes -> iob2 and iob1 <-> iob2 give the input back exactly;
    - an orphan ``I-`` of iob2 input is read as the start of an entity (it comes back as
      ``B-``), and ill-formed bioes (``B-X`` with no ``E-X``) as the entity it begins;
    - iob2 -> io is lossy: adjacent entities of the same type (``B-X B-X``) become one
      (``I-X I-X``), and io -> iob2 gives back ``B-X I-X``. Everything else round-trips.

    Raises ValueError for a malformed tag or a prefix that ``source`` does not use.
    """
    source, target = normalize_scheme(source), normalize_scheme(target)
    if isinstance(tags, str):
        raise TypeError("convert_tags takes a sequence of tags, not one string")
    allowed = _ALLOWED[source]
    for i, (prefix, _) in enumerate(_parse_all(tags)):
        if prefix != "O" and prefix not in allowed:
            raise ValueError(
                f"tag {i} is {tags[i]!r}: {prefix}- is not a prefix of {source} "
                f"(it uses {', '.join(p + '-' for p in allowed)} and O)"
            )
    return spans_to_tags(_chunks_conlleval(tags), len(tags), target)


def tag_problems(tags: Sequence[str], scheme: str = "iob2") -> list[tuple[int, str]]:
    """``(index, message)`` for each tag that is not well-formed under ``scheme``.

    Reported: malformed tags, prefixes ``scheme`` does not use, and tags that break its
    grammar: for iob2 an ``I-X`` that continues no ``B-X``/``I-X`` (an orphan: conlleval
    counts it as the start of an entity, strict mode drops it); for iob1 a ``B-X`` that does
    not directly follow an ``X`` entity; for bioes a ``B-``/``I-`` not followed by the same
    type's ``I-``/``E-``, and an ``I-``/``E-`` not preceded by the same type's ``B-``/``I-``.
    Never raises for bad tags (it reports them); the list is sorted by index.
    """
    scheme = normalize_scheme(scheme)
    allowed = _ALLOWED[scheme]
    parsed: list[tuple[str, str] | None] = []
    problems: list[tuple[int, str]] = []
    for i, tag in enumerate(tags):
        try:
            p = parse_tag(tag, i)
        except ValueError:
            problems.append((i, f"malformed tag {tag!r}; {_EXPECTED}"))
            parsed.append(None)
            continue
        if p[0] != "O" and p[0] not in allowed:
            problems.append((i, f"{tag!r}: {p[0]}- is not a prefix of {scheme}"))
            parsed.append(None)
            continue
        parsed.append(p)
    n = len(parsed)
    for i, p in enumerate(parsed):
        if p is None or p[0] == "O":
            continue
        prefix, typ = p
        prev = parsed[i - 1] if i > 0 else ("O", "")
        nxt = parsed[i + 1] if i + 1 < n else ("O", "")
        continues = prev is not None and prev[1] == typ and prev[0] in "BI"
        if scheme == "iob2" and prefix == "I" and not continues:
            problems.append((i, f"orphan {tags[i]!r}: no B-{typ} or I-{typ} before it "
                                "(conlleval counts it as an entity start, strict mode drops it)"))
        elif scheme == "iob1" and prefix == "B" and not continues:
            problems.append((i, f"{tags[i]!r} does not follow a {typ} entity; iob1 uses B- only "
                                "between two adjacent entities of the same type"))
        elif scheme == "bioes":
            if prefix in "IE" and not continues:
                problems.append((i, f"{tags[i]!r} with no B-{typ} or I-{typ} before it"))
            if prefix in "BI" and not (nxt is not None and nxt[1] == typ and nxt[0] in "IE"):
                problems.append((i, f"{tags[i]!r} with no I-{typ} or E-{typ} after it"))
    problems.sort(key=lambda item: item[0])
    return problems


def orphan_positions(tags: Sequence[str]) -> list[int]:
    """Indices of the ``I-X`` tags that continue no ``B-X``/``I-X`` (IOB2 orphans): conlleval
    reads each as the start of an entity, strict mode drops it. Twitter-2015 has 374 of them.

    Only tags that :func:`parse_tag` accepts count (the rule of :func:`tag_problems` for
    iob2): a malformed tag such as ``"I-"`` or ``"I-PER "`` is no orphan but a malformed tag,
    and a malformed tag continues no entity."""
    out = []
    prev: tuple[str, str] | None = ("O", "")  # None: the previous tag is malformed
    for i, tag in enumerate(tags):
        try:
            cur: tuple[str, str] | None = parse_tag(tag, i)
        except ValueError:
            cur = None
        if cur is not None and cur[0] == "I" and not (
            prev is not None and prev[1] == cur[1] and prev[0] in "BI"
        ):
            out.append(i)
        prev = cur
    return out


def entity_types(tag_seqs: Iterable[Sequence[str]]) -> list[str]:
    """The sorted entity types used by the tags of ``tag_seqs`` (ValueError if malformed)."""
    types: set[str] = set()
    for n, seq in enumerate(tag_seqs):
        if isinstance(seq, str):
            raise TypeError("entity_types takes sequences of tags (a list of lists)")
        try:
            parsed = _parse_all(seq)
        except ValueError as err:
            raise ValueError(f"sequence {n}: {err}") from None
        types.update(typ for prefix, typ in parsed if prefix != "O")
    return sorted(types)
