"""The label set of a tagger: IOB2 tags <-> integer ids.

Built from the entity types (``LabelSet.from_types(["LOC", "ORG", "PER"])`` gives ``O, B-LOC,
I-LOC, B-ORG, ...``) or from training data. Only real tags are labels: no ``[CLS]``, ``[SEP]``
or ``X`` sub-token label (the reference MAF code puts them in its CRF); word-level tagging on
first sub-tokens makes them unnecessary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from mner.tagging.schemes import parse_tag

__all__ = ["LabelSet"]


@dataclass(frozen=True)
class LabelSet:
    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", tuple(self.labels))
        if not self.labels or self.labels[0] != "O":
            raise ValueError(f"a label set starts with 'O'; got {self.labels[:3]}")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"duplicate labels in {self.labels}")
        for i, tag in enumerate(self.labels):
            parse_tag(tag, i)

    @classmethod
    def from_types(cls, types: Iterable[str]) -> "LabelSet":
        labels = ["O"]
        for t in sorted(set(types)):
            labels += [f"B-{t}", f"I-{t}"]
        return cls(tuple(labels))

    @classmethod
    def from_tag_sequences(cls, seqs: Iterable[Sequence[str]]) -> "LabelSet":
        return cls.from_types(parse_tag(t)[1] for seq in seqs for t in seq if t != "O")

    @property
    def types(self) -> list[str]:
        return sorted({parse_tag(t)[1] for t in self.labels if t != "O"})

    def __len__(self) -> int:
        return len(self.labels)

    def index(self, tag: str) -> int:
        try:
            return self._index[tag]
        except KeyError:
            raise KeyError(f"tag {tag!r} is not in the label set {list(self.labels)}") from None

    @property
    def _index(self) -> dict[str, int]:
        cache = self.__dict__.get("_index_cache")
        if cache is None:
            cache = {t: i for i, t in enumerate(self.labels)}
            object.__setattr__(self, "_index_cache", cache)
        return cache

    def encode(self, tags: Sequence[str]) -> list[int]:
        return [self.index(t) for t in tags]

    def decode(self, ids: Sequence[int]) -> list[str]:
        return [self.labels[i] for i in ids]
