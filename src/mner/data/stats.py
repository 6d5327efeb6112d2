"""Corpus statistics: what ``mner data stats`` prints.

Entities are counted two ways, because the benchmark files differ between them:
``entities_b`` counts ``B-`` tags (how the papers' dataset tables count), ``entities``
counts conlleval chunks (how the papers' scorer counts: an orphan ``I-`` starts an entity).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

from mner.data.example import Example
from mner.tagging import get_spans, orphan_positions

__all__ = ["SplitStats", "split_stats"]


@dataclass
class SplitStats:
    tweets: int = 0
    tokens: int = 0
    entities_b: dict[str, int] = field(default_factory=dict)
    entities: dict[str, int] = field(default_factory=dict)
    orphan_i: int = 0
    unlabelled: int = 0
    max_tokens: int = 0
    images: dict | None = None
    captions: dict | None = None

    @property
    def total_b(self) -> int:
        return sum(self.entities_b.values())

    @property
    def total_entities(self) -> int:
        return sum(self.entities.values())

    def to_dict(self) -> dict:
        d = {
            "tweets": self.tweets,
            "tokens": self.tokens,
            "max_tokens": self.max_tokens,
            "entities_b": dict(sorted(self.entities_b.items())),
            "total_b": self.total_b,
            "entities_conlleval": dict(sorted(self.entities.items())),
            "total_entities_conlleval": self.total_entities,
            "orphan_i": self.orphan_i,
            "unlabelled_tweets": self.unlabelled,
        }
        if self.images is not None:
            d["images"] = self.images
        if self.captions is not None:
            d["captions"] = self.captions
        return d


def split_stats(examples: Sequence[Example]) -> SplitStats:
    st = SplitStats(tweets=len(examples))
    b_counts: Counter[str] = Counter()
    chunk_counts: Counter[str] = Counter()
    for ex in examples:
        st.tokens += len(ex.tokens)
        st.max_tokens = max(st.max_tokens, len(ex.tokens))
        if ex.tags is None:
            st.unlabelled += 1
            continue
        b_counts.update(tag[2:] for tag in ex.tags if tag.startswith("B-"))
        st.orphan_i += len(orphan_positions(ex.tags))
        chunk_counts.update(span.label for span in get_spans(ex.tags, mode="conlleval"))
    st.entities_b = dict(b_counts)
    st.entities = dict(chunk_counts)
    return st
