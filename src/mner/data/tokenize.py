"""Raw text -> tokens with character offsets (inference input).

The benchmarks come pre-tokenized; users type raw tweets. This tokenizer splits a tweet the
way the Twitter-2015/2017 files do in the common cases: URLs, @mentions and #hashtags stay
whole, words keep inner apostrophes and hyphens (``don't``, ``5-7``, ``Jean-Luc``), numbers keep
their separators (``3.5``, ``10:30``), every other visible character is a token of its own.
Offsets index the *original* string, so entity spans map back to the user's text exactly.
"""

from __future__ import annotations

import re

__all__ = ["tokenize_text"]

_TOKEN = re.compile(
    r"""
    (?:https?://|www\.)[^\s]+?(?=[.,;:!?)\]"']*(?:\s|$))   # URL, trailing punctuation left out
  | [@#][\w]+                                             # @mention, #hashtag
  | \d+(?:[.,:/-]\d+)*                                     # numbers, times, dates
  | \w+(?:['\u2019-]\w+)*                                  # words, don't, Jean-Luc
  | \S                                                     # any other visible character
    """,
    re.VERBOSE | re.UNICODE,
)


def tokenize_text(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Split ``text`` into tokens; return them and their ``(start, end)`` offsets."""
    tokens: list[str] = []
    offsets: list[tuple[int, int]] = []
    for m in _TOKEN.finditer(text):
        tokens.append(m.group())
        offsets.append((m.start(), m.end()))
    return tokens, offsets
