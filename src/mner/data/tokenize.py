"""Raw text -> tokens with character offsets (inference input).

The benchmarks come pre-tokenized; users type raw tweets. This tokenizer splits a tweet the
way the Twitter-2015/2017 files do in the common cases: URLs, @mentions and #hashtags stay
whole, words keep inner apostrophes and hyphens (``don't``, ``5-7``, ``Jean-Luc``), numbers keep
their separators (``3.5``, ``10:30``), every other visible character is a token of its own.
Offsets index the *original* string (in code points, as Python indexes it), so entity spans map
back to the user's text exactly.

Tokens never cut a grapheme cluster (what a reader sees as one character, Unicode UAX #29): a
combining mark stays with its letter (a decomposed ``Montre\\u0301al`` is one word, as the
composed ``Montréal`` is), Devanagari and Thai vowel signs and viramas stay in their word, and an
emoji with its skin tone, variation selector or zero-width-joiner sequence (``👨‍👩‍👧``), a flag or a
keycap (``1️⃣``) is one token. Words are runs of Unicode word characters in the sense of UTS #18
(letters, marks, digits, connector punctuation, joiners) and of other numerals (``²``, ``½``, which
``re``'s ``\\w`` took too), matched with the ``regex`` module (a dependency of ``transformers``;
its ``\\w`` and ``\\X`` follow Unicode where ``re``'s ``\\w`` leaves marks out). A script written without spaces (Thai, Chinese) is one token per run of letters:
splitting it into words needs a dictionary, which this tokenizer does not have.
"""

from __future__ import annotations

import regex

__all__ = ["tokenize_text"]

_TOKEN = regex.compile(
    r"""
    (?:https?://|www\.)[^\s]+?(?=[.,;:!?)\]"']*(?:\s|$))   # URL, trailing punctuation left out
  | [@\#][\w\p{N}]+                                       # @mention, #hashtag
  | \d+(?:[.,:/-]\d+)*                                     # numbers, times, dates
  | [\w\p{N}]+(?:['\u2019-][\w\p{N}]+)*                    # words, don't, Jean-Luc, x²
  | (?!\s)\X                                               # any other visible grapheme cluster
    """,
    regex.VERBOSE | regex.UNICODE,
)
_CLUSTER = regex.compile(r"\X")


def tokenize_text(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Split ``text`` into tokens; return them and their ``(start, end)`` offsets."""
    spans: list[list[int]] = []
    for m in _TOKEN.finditer(text):
        spans.append([m.start(), m.end()])
    if spans and not text.isascii():
        spans = _whole_clusters(text, spans)
    return [text[s:e] for s, e in spans], [(s, e) for s, e in spans]


def _whole_clusters(text: str, spans: list[list[int]]) -> list[list[int]]:
    """Join tokens that touch inside one grapheme cluster (``1`` + a keycap's marks)."""
    bounds = {m.end() for m in _CLUSTER.finditer(text)}
    out: list[list[int]] = []
    for s, e in spans:
        if out and out[-1][1] == s and s not in bounds:
            out[-1][1] = e
        else:
            out.append([s, e])
    return out
