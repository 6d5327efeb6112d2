"""Examples -> a batch of tensors (the "processor" step of file -> example -> processor -> batch ->
model), in the spirit of transformers' ``processing_*.py``: examples in, tensors out.

:class:`TaggingProcessor` tokenizes the words (:class:`~mner.encoders.tokenization.WordTokenizer`),
encodes the gold tags with a :class:`~mner.tagging.labels.LabelSet` (the processor's own, or one
given per call: a few-shot episode brings its labels), adds the caption as a second text segment
where the model reads it so (``caption_segment``), and asks its
:class:`~mner.processing.visual.VisualProcessor` (if any) for the visual side: file I/O, image
transforms, the feature cache and the frozen encoders all run here, never in a model.

Every model's ``processor()`` returns one; ``processor.collate(train)`` is the ``collate_fn`` of a
DataLoader.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import torch
from PIL import Image

from mner.data.example import Example
from mner.encoders.tokenization import WordBatch, WordTokenizer
from mner.errors import MNERError
from mner.processing.visual import VisualInputs, VisualProcessor
from mner.tagging.labels import LabelSet

__all__ = ["IGNORE_INDEX", "TaggingBatch", "TaggingProcessor", "encode_tags"]

#: Tag id of padding words (and of words without gold tags).
IGNORE_INDEX = -100


@dataclass
class TaggingBatch:
    """A batch for a tagging model.

    Attributes:
        ids: tweet ids, in batch order (informational only: a tweet may appear twice, e.g. in two
            episodes; results are matched by position).
        words: the tokenized words (``words.word_mask`` (B, W) marks real words).
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

    def without_tags(self) -> "TaggingBatch":
        """A copy without the gold tags (the caller's batch is left as it is)."""
        return dataclasses.replace(self, tags=None)


def encode_tags(examples: Sequence[Example], labels: LabelSet, shape: tuple[int, int]) -> torch.Tensor | None:
    """``(B, W)`` tag ids of ``examples`` (:data:`IGNORE_INDEX` at padding), or None when some
    example has no tags. A tag outside ``labels`` raises :class:`~mner.errors.MNERError` naming the tweet."""
    if any(ex.tags is None for ex in examples):
        return None
    tags = torch.full(shape, IGNORE_INDEX, dtype=torch.long)
    for i, ex in enumerate(examples):
        try:
            tags[i, : len(ex.tags)] = torch.tensor(labels.encode(ex.tags))
        except KeyError as err:
            raise MNERError(f"{ex.where}: {err.args[0]}") from None
    return tags


class TaggingProcessor:
    """A list of :class:`Example` -> :class:`TaggingBatch`.

    Args:
        tokenizer: splits words into sub-tokens.
        labels: the default label set of the gold tags (None: a model whose labels come with each
            call, e.g. per episode).
        visual: the visual processor (None: text only).
        caption_segment: read each tweet's caption (``Example.caption``) as a second text segment
            of at most this many sub-tokens after the words (0: no second segment; a tweet without
            a caption gets none).
    """

    def __init__(self, tokenizer: WordTokenizer, labels: LabelSet | None = None,
                 visual: VisualProcessor | None = None, caption_segment: int = 0):
        self.tokenizer = tokenizer
        self.labels = labels
        self.visual = visual
        self.caption_segment = caption_segment

    @property
    def views(self) -> tuple[str, ...]:
        """The component views of the visual side (``()`` for a text-only model)."""
        return tuple(self.visual.views) if self.visual is not None else ()

    def __call__(self, examples: Sequence[Example], *, labels: LabelSet | None = None, train: bool = False,
                 images: Sequence[Image.Image | None] | None = None) -> TaggingBatch:
        """The batch of ``examples``.

        Args:
            labels: encode the gold tags with this label set (default: the processor's own). Tags
                are encoded only when every example has tags and a label set is known.
            train: training mode (augmentation of a trainable image encoder's input).
            images: per example a PIL image or None, overriding ``Example.image`` (the pipeline's
                in-memory images).
        """
        if not examples:
            raise ValueError("TaggingProcessor: an empty batch")
        for ex in examples:
            if not ex.tokens:
                raise MNERError(f"{ex.where}: a tweet without tokens cannot be tagged; remove it "
                                "(mner data validate lists such tweets)")
        words = self.tokenizer([list(ex.tokens) for ex in examples],
                               [ex.caption for ex in examples] if self.caption_segment else None,
                               self.caption_segment or None)
        labels = labels if labels is not None else self.labels
        tags = encode_tags(examples, labels, tuple(words.word_mask.shape)) if labels is not None else None
        visual = self.visual(examples, train=train, images=images) if self.visual is not None else None
        return TaggingBatch([ex.id for ex in examples], words, tags, visual)

    def collate(self, train: bool = False) -> Callable[[Sequence[Example]], TaggingBatch]:
        """A picklable ``collate_fn`` for a DataLoader of examples."""
        return functools.partial(self, train=train)

    def precompute(self, examples: Iterable[Example], progress: bool = True, desc: str = "visual features") -> dict:
        """Fill the feature cache with the frozen features of ``examples`` (nothing for text only)."""
        if self.visual is None:
            return {}
        return self.visual.precompute(examples, progress=progress, desc=desc)
