"""ProtoBERT: prototypical networks over a fine-tuned text encoder's word features.

Snell et al. (NeurIPS 2017) applied to NER as in Few-NERD (Ding et al., ACL 2021): each word of a
support tweet is embedded by the encoder; the prototype of class ``m`` is the mean of the support
words of that class, ``c_m = 1/|S_m| sum_{x in S_m} f(x)``; a query word gets the scores
``-||f(x) - c_m||^2`` (squared Euclidean) and its tag is their arg max (no CRF, no transition). Trained
on source-type episodes with token-level cross-entropy over those scores. Text only, as the poster
compares it.

The classes are Few-NERD's IO tags by default (``scheme: io``): ``O`` and one class per type
(``I-t``), in training and decoding alike; consecutive words of one type form one entity (the
decoded tags come out as IOB2, ``I-t I-t`` -> ``B-t I-t``). ``scheme: bio`` **(ours, the earlier
version)** uses ``O, B-t, I-t`` per type with the type fallback of empty classes
(:func:`~mner.models.fewshot.metric.type_fallback`); checkpoints saved before the field existed
were trained so and load as ``bio``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mner.errors import MNERError
from mner.models.base import TaggerOutput
from mner.models.episodic import EpisodicConfig, EpisodicTagger
from mner.models.fewshot.metric import EpisodeCrossEntropy, class_prototypes, prototype_scores, type_fallback
from mner.processing.episodes import EpisodeBatch, check_scheme
from mner.processing.tagging import TaggingBatch

__all__ = ["ProtoBERTConfig", "ProtoBERTModel"]


@dataclass
class ProtoBERTConfig(EpisodicConfig):
    """ProtoBERT's choices (see :class:`~mner.models.episodic.EpisodicConfig` for the encoders).

    Attributes:
        hidden_dim: a learned linear map of the word features before the metric space; None keeps
            the encoder's features (Few-NERD's ProtoBERT).
        scheme: the classes, in training and decoding: ``io`` (default; Few-NERD's O + one class per
            type) or ``bio`` (O, B-t, I-t per type: the earlier version, and what a checkpoint
            without this field was trained with).
    """

    hidden_dim: int | None = None
    scheme: str = "io"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hidden_dim is not None and self.hidden_dim < 1:
            raise MNERError(f"hidden_dim must be >= 1 or null, got {self.hidden_dim}")
        check_scheme(self.scheme)


class ProtoBERTModel(EpisodicTagger):
    model_type = "protobert"
    config_class = ProtoBERTConfig

    def __init__(self, config: ProtoBERTConfig, **encoders):
        super().__init__(config, **encoders)
        self.scheme = config.scheme
        width = self.text_encoder.output_dim
        self.proj = nn.Linear(width, config.hidden_dim) if config.hidden_dim else None
        self.loss_fn = EpisodeCrossEntropy()

    def embed(self, part: TaggingBatch) -> torch.Tensor:
        """Word embeddings ``f(x)`` (B, W, d) of one side of the batch."""
        states, _ = self.words(part)
        h = self.dropout(states)
        return self.proj(h) if self.proj is not None else h

    def scores(self, batch: EpisodeBatch, support: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """``(Q, W, C)``: minus the squared distance of each query word to each class prototype."""
        protos, counts = class_prototypes(support, batch.support.tags, batch.support_episode, len(batch),
                                          batch.num_classes, self.scheme)
        return prototype_scores(query, batch.query_episode, type_fallback(protos, counts, self.scheme))

    @classmethod
    def upgrade_config(cls, raw: dict) -> dict:
        """Checkpoints saved before the ``scheme`` field existed were trained with BIO classes: they
        load as ``scheme: bio`` and decode exactly as before."""
        return raw if "scheme" in raw else {**raw, "scheme": "bio"}

    def encode(self, part: TaggingBatch, train: bool = False) -> tuple[torch.Tensor]:
        return (self.embed(part),)

    def head(self, batch: EpisodeBatch, support: tuple, query: tuple) -> TaggerOutput:
        scores = self.scores(batch, support[0], query[0])
        losses = {}
        loss = None
        if batch.query.tags is not None:
            loss = losses["ce"] = self.loss_fn(scores, batch.query.tags)
        return self.output(batch, loss, scores, losses)
