"""Examples -> a batch of tensors (the "batch" step of file -> example -> batch -> model).

:class:`TaggingCollator` is the ``collate_fn`` of every tagging model of the project: it
tokenizes the words (:class:`~mner.encoders.tokenization.WordTokenizer`), encodes the gold tags
with the model's :class:`~mner.tagging.labels.LabelSet` and asks the model's
:class:`~mner.models.visual.VisualProvider` (if any) for the visual side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from mner.data.example import Example
from mner.errors import MNERError
from mner.encoders.tokenization import WordBatch, WordTokenizer
from mner.models.visual import VisualInputs, VisualProvider
from mner.tagging.labels import LabelSet

__all__ = ["IGNORE_INDEX", "TaggingBatch", "TaggingCollator"]

#: Tag id of padding words (and of words without gold tags).
IGNORE_INDEX = -100


@dataclass
class TaggingBatch:
    """A batch for a tagging model.

    Attributes:
        ids: tweet ids, in batch order.
        words: the tokenized words (``words.word_mask`` marks real words).
        tags: ``(B, W)`` gold tag ids, :data:`IGNORE_INDEX` at padding; None without gold.
        visual: the visual side, or None for a text-only model.
    """

    ids: list[str]
    words: WordBatch
    tags: torch.Tensor | None = None
    visual: VisualInputs | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def to(self, device: torch.device | str) -> "TaggingBatch":
        return TaggingBatch(
            list(self.ids),
            self.words.to(device),
            self.tags.to(device) if self.tags is not None else None,
            self.visual.to(device) if self.visual is not None else None,
        )


class TaggingCollator:
    """``collate_fn``: a list of :class:`Example` -> :class:`TaggingBatch`.

    Args:
        tokenizer: splits words into sub-tokens.
        labels: the model's label set (gold tags outside it raise an error naming the tweet).
        visual: the visual provider (None: text only).
        train: training mode (augmentation for a trainable image encoder).
    """

    def __init__(self, tokenizer: WordTokenizer, labels: LabelSet, visual: VisualProvider | None = None,
                 train: bool = False):
        self.tokenizer = tokenizer
        self.labels = labels
        self.visual = visual
        self.train = train

    def __call__(self, examples: Sequence[Example]) -> TaggingBatch:
        if not examples:
            raise ValueError("empty batch")
        for ex in examples:
            if not ex.tokens:
                raise MNERError(f"{ex.where}: a tweet without tokens cannot be tagged; remove it "
                                 "(mner data validate lists such tweets)")
        words = self.tokenizer([list(ex.tokens) for ex in examples])
        tags = None
        if all(ex.tags is not None for ex in examples):
            tags = torch.full(words.word_mask.shape, IGNORE_INDEX, dtype=torch.long)
            for i, ex in enumerate(examples):
                try:
                    tags[i, : len(ex.tags)] = torch.tensor(self.labels.encode(ex.tags))
                except KeyError as err:
                    raise MNERError(f"{ex.where}: {err.args[0]}") from None
        visual = self.visual(examples, train=self.train) if self.visual is not None else None
        return TaggingBatch([ex.id for ex in examples], words, tags, visual)
