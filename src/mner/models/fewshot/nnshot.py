"""NNShot and StructShot (Yang and Katiyar, EMNLP 2020).

NNShot: a query word takes the class of its nearest support word, ``score_m(x) = -min_{s in S_m}
||f(x) - f(s)||^2``, arg max over classes. StructShot decodes NNShot's scores with a CRF whose
transitions are *abstract*: a few label-agnostic probabilities (O->O, O->B, B->I of the same type,
...) estimated by counting the source training data and mapped onto each episode's labels
(:mod:`mner.models.fewshot.abstract_transitions`); the emissions are NNShot's class probabilities
rescaled by a temperature tau, ``log softmax(score / tau)``, and tau is chosen on dev episodes.

One trained encoder serves both (as in Few-NERD, where both are trained episodically with the
nearest-neighbour cross-entropy): ``decoder: argmax`` is NNShot, ``decoder: structshot`` is
StructShot; ``mner fewshot evaluate --decoder`` switches a checkpoint between them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from mner.errors import MNERError
from mner.models.base import TaggerOutput
from mner.models.fewshot.abstract_transitions import StructShotTransitions, estimate_abstract_transitions
from mner.models.fewshot.metric import nearest_neighbour_scores
from mner.models.fewshot.protobert import ProtoBERTConfig, ProtoBERTModel
from mner.processing.episodes import EpisodeBatch

__all__ = ["DECODERS", "NNShotConfig", "NNShotModel"]

DECODERS = ("argmax", "structshot")


@dataclass
class NNShotConfig(ProtoBERTConfig):
    """NNShot / StructShot.

    Attributes:
        decoder: ``argmax`` (NNShot) or ``structshot`` (Viterbi with abstract transitions).
        temperature: StructShot's tau on the emission scores.
        transitions: the abstract transition log-probabilities estimated from the source training
            data (set by ``mner fewshot train``; needed by the ``structshot`` decoder).
    """

    decoder: str = "argmax"
    temperature: float = 1.0
    transitions: dict[str, float] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.decoder not in DECODERS:
            raise MNERError(f"decoder {self.decoder!r}: choose one of {', '.join(DECODERS)}")
        if self.temperature <= 0:
            raise MNERError(f"temperature must be > 0, got {self.temperature}")


class NNShotModel(ProtoBERTModel):
    model_type = "nnshot"
    config_class = NNShotConfig

    def scores(self, batch: EpisodeBatch, support: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        return nearest_neighbour_scores(query, batch.query_episode, support, batch.support.tags,
                                        batch.support_episode, batch.num_classes)

    def fit_transitions(self, tag_sequences: Sequence[Sequence[str]]) -> None:
        """StructShot: estimate the abstract transitions from the source training tags."""
        self.config.transitions = {k: float(v) for k, v in estimate_abstract_transitions(tag_sequences).items()}

    def head(self, batch: EpisodeBatch, support: tuple, query: tuple) -> TaggerOutput:
        out = super().head(batch, support, query)
        if self.config.decoder == "argmax":
            return out
        if self.config.transitions is None:
            raise MNERError("the structshot decoder needs the abstract transitions of the source data; "
                            "this checkpoint has none (train it with mner fewshot train)")
        structshot = StructShotTransitions(self.config.transitions, self.config.temperature).to(out.emissions.device)
        out.emissions = structshot.emissions(out.emissions)                            # log softmax(s / tau)
        out.transitions, out.start, out.end = structshot(batch.labels[0])
        return out
