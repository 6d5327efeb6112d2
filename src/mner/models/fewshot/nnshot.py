"""NNShot and StructShot (Yang and Katiyar, EMNLP 2020).

NNShot: a query word takes the class of its nearest support word, ``score_m(x) = -min_{s in S_m}
||f(x) - f(s)||^2``, arg max over classes. StructShot decodes NNShot's scores with a CRF whose
transitions are *abstract*: a few label-agnostic probabilities estimated by counting the source
training data and mapped onto each episode's labels
(:mod:`mner.models.fewshot.abstract_transitions`).

With ``scheme: io`` (the default, as Few-NERD and StructShot's reference code) the classes are O
and one per type, and StructShot is the reference's: seven IO kinds (start->O, start->I, O->O,
O->I, I->O, I->I same type, I->I other type), ``O -> I-t = o_i / N``, ``I-t -> I-u = x_y / (N - 1)``,
..., tau applied as a power of each transition row (``P^tau``, renormalised), and the emissions
NNShot's log class probabilities ``log softmax(score)`` with no temperature
(:class:`~mner.models.fewshot.abstract_transitions.StructShotIOTransitions`). With ``scheme: bio``
**(ours, the earlier version)** the classes are O, B-t, I-t per type and StructShot uses 15 IOB2
kinds (O->B, B->I of the same type, ..., with the ends) and tau on the emissions,
``log softmax(score / tau)`` (:class:`~mner.models.fewshot.abstract_transitions.StructShotTransitions`).
Either way tau is chosen on dev episodes.

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
from mner.models.fewshot.abstract_transitions import (
    ABSTRACT_KINDS,
    IO_ABSTRACT_KINDS,
    StructShotIOTransitions,
    StructShotTransitions,
    estimate_abstract_transitions,
    estimate_io_transitions,
)
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
        temperature: StructShot's tau: under ``scheme: io`` the power of the transition rows
            (reference code), under ``scheme: bio`` the divisor of the emission scores.
        transitions: the abstract transitions estimated from the source training data (set by
            ``mner fewshot train``; needed by the ``structshot`` decoder): under ``io`` the
            probabilities of the 7 :data:`~mner.models.fewshot.abstract_transitions.IO_ABSTRACT_KINDS`,
            under ``bio`` the log-probabilities of the 15
            :data:`~mner.models.fewshot.abstract_transitions.ABSTRACT_KINDS`.
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
        if self.transitions is not None:
            kinds = IO_ABSTRACT_KINDS if self.scheme == "io" else ABSTRACT_KINDS
            if set(self.transitions) != set(kinds):
                raise MNERError(f"transitions: the {self.scheme} StructShot needs one value for each of {list(kinds)}, "
                                f"got {sorted(self.transitions)}; estimate them with the model's fit_transitions")


class NNShotModel(ProtoBERTModel):
    model_type = "nnshot"
    config_class = NNShotConfig

    def scores(self, batch: EpisodeBatch, support: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        return nearest_neighbour_scores(query, batch.query_episode, support, batch.support.tags,
                                        batch.support_episode, batch.num_classes, scheme=self.scheme)

    def fit_transitions(self, tag_sequences: Sequence[Sequence[str]]) -> None:
        """StructShot: estimate the abstract transitions of the model's scheme from the source
        training tags (IOB2): the 7 IO probabilities, unsmoothed as the reference
        (:func:`~mner.models.fewshot.abstract_transitions.estimate_io_transitions`), or the 15 BIO
        log-probabilities with add-one smoothing
        (:func:`~mner.models.fewshot.abstract_transitions.estimate_abstract_transitions`)."""
        estimate = estimate_io_transitions if self.scheme == "io" else estimate_abstract_transitions
        self.config.transitions = {k: float(v) for k, v in estimate(tag_sequences).items()}

    def head(self, batch: EpisodeBatch, support: tuple, query: tuple) -> TaggerOutput:
        out = super().head(batch, support, query)
        if self.config.decoder == "argmax":
            return out
        if self.config.transitions is None:
            raise MNERError("the structshot decoder needs the abstract transitions of the source data; "
                            "this checkpoint has none (train it with mner fewshot train)")
        if self.scheme == "io":                                                        # the reference's StructShot
            structshot = StructShotIOTransitions(self.config.transitions, self.config.temperature)
            out.emissions = structshot.emissions(out.emissions)                        # log softmax(s)
            out.transitions, out.start, out.end = structshot(batch.labels[0], out.emissions.device)  # log P^tau
            return out
        structshot = StructShotTransitions(self.config.transitions, self.config.temperature).to(out.emissions.device)
        out.emissions = structshot.emissions(out.emissions)                            # log softmax(s / tau)
        out.transitions, out.start, out.end = structshot(batch.labels[0])
        return out
