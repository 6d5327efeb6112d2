"""Prototype-based CRF decoder, MOUSING poster "Prototype-based CRF decoder" (mousing.md, 3.-4.).

Prototype of class ``m`` of an episode, the mean of the (updated) support word embeddings of
that class (poster)::

    c^m = 1/|S^m| sum_{(x_k, y_k) in S^m} G_e(x_k)

and a distribution over classes for each query word by a softmax over distances (poster)::

    p(y_w = m | x^q, G_e) = exp(-d(G_e(x_q), c^m)) / sum_m' exp(-d(G_e(x_q), c^m'))

with ``d`` the squared Euclidean distance. The decoder is a linear-chain CRF over the emissions
``E[w, m] = -alpha * d(G_e(x_w), c^m)`` and trains with the poster's two-view loss::

    L_CRF = CE(D(P | G1), y) + CE(D(P | G2), y)

where each ``CE(D(P | G), y)`` is the CRF negative log-likelihood of the query tags
(:meth:`PrototypeCRF.loss`, called once per view by the model). At inference the model averages
the two views' emissions and calls :meth:`PrototypeCRF.decode` (Viterbi).

**(ours)**, documented in mousing.md:

* transitions: label-agnostic abstract scores (O->O, O->B, B->I, ..., after StructShot) learned
  on source episodes and mapped onto each episode's labels
  (:class:`mner.models.fewshot.abstract_transitions.AbstractTransitions`), IOB2-constrained;
  with ``learn_transitions=False`` they stay 0 and only the IOB2 constraints act;
* the emission scale ``alpha``: a learned positive scalar (``exp`` of a parameter, init
  ``scale_init``) multiplying ``-d``, so that distances (which grow with the embedding width)
  and transition scores live on one scale; a scale of 1 is the poster's softmax as written;
* empty classes fall back to their type's prototype
  (:func:`mner.models.fewshot.metric.type_fallback`).

Tensors follow the episode conventions of :mod:`mner.models.fewshot.metric` (class ``0 = O``,
``1 + 2j = B-`` and ``2 + 2j = I-`` of type ``j``), so one label tuple (any episode's) gives the
transitions of the whole batch. The CRF math is :mod:`mner.crf`'s.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from mner.crf import crf_log_likelihood, viterbi_decode
from mner.models.fewshot.abstract_transitions import AbstractTransitions
from mner.models.fewshot.metric import class_prototypes, prototype_scores, type_fallback

__all__ = ["PrototypeCRF"]


class PrototypeCRF(nn.Module):
    """Prototype emissions + a CRF with abstract transitions.

    Args:
        learn_transitions: learn the 15 abstract transition scores (else frozen at 0: the CRF
            then only enforces IOB2).
        scale_init: initial emission scale ``alpha`` (> 0).
        learn_scale: learn ``alpha`` (else it stays ``scale_init``).
    """

    def __init__(
        self, learn_transitions: bool = True, scale_init: float = 1.0, learn_scale: bool = True
    ) -> None:
        super().__init__()
        if not scale_init > 0:
            raise ValueError(f"PrototypeCRF scale_init must be > 0, got {scale_init}")
        self.abstract = AbstractTransitions()
        self.abstract.scores.requires_grad_(learn_transitions)
        self.log_scale = nn.Parameter(
            torch.tensor(math.log(scale_init)), requires_grad=learn_scale
        )

    @property
    def scale(self) -> Tensor:
        """The emission scale ``alpha = exp(log_scale)`` (scalar tensor)."""
        return self.log_scale.exp()

    def transitions(self, labels: Sequence[str]) -> tuple[Tensor, Tensor, Tensor]:
        """The episode's constrained ``(transitions (C, C), start (C,), end (C,))``."""
        return self.abstract(labels)

    def emissions(
        self,
        s: Tensor,
        s_tags: Tensor,
        s_episode: Tensor,
        q: Tensor,
        q_episode: Tensor,
        num_classes: int,
        num_episodes: int | None = None,
    ) -> Tensor:
        """``-alpha * d(q_w, c^m)`` (Q, W', C) against the query's episode's prototypes.

        Support ``s`` (S, W, d), ``s_tags`` (S, W), ``s_episode`` (S,); query ``q`` (Q, W', d),
        ``q_episode`` (Q,). ``num_episodes`` defaults to one more than the largest episode index.
        Float32 for half inputs.
        """
        if num_episodes is None:
            num_episodes = max(int(s_episode.max()) if s_episode.numel() else -1,
                               int(q_episode.max()) if q_episode.numel() else -1) + 1
        protos = type_fallback(*class_prototypes(s, s_tags, s_episode, num_episodes, num_classes))
        scores = prototype_scores(q, q_episode, protos)
        return scores * self.scale.to(scores.dtype)

    def _check_labels(self, emissions: Tensor, labels: Sequence[str]) -> None:
        if emissions.dim() != 3 or emissions.shape[-1] != len(labels):
            raise ValueError(
                f"emissions {tuple(emissions.shape)} do not match the {len(labels)} labels "
                f"{tuple(labels)}; expected (Q, W', {len(labels)})"
            )

    def loss(
        self, emissions: Tensor, q_tags: Tensor, q_mask: Tensor, labels: Sequence[str]
    ) -> Tensor:
        """Mean CRF negative log-likelihood per query tweet (one view's ``CE(D(P|G), y)``).

        ``emissions`` (Q, W', C), ``q_tags`` (Q, W') in ``[0, C)`` at ``q_mask`` positions
        (anything, e.g. -100, elsewhere), ``q_mask`` (Q, W') bool right-padded, ``labels``
        the episode label tuple (C labels).
        """
        self._check_labels(emissions, labels)
        nll = -crf_log_likelihood(emissions, q_tags, q_mask, *self.transitions(labels))
        return nll.mean()

    @torch.no_grad()
    def decode(self, emissions: Tensor, q_mask: Tensor, labels: Sequence[str]) -> list[list[int]]:
        """Viterbi tag ids of every query tweet (``q_mask[b].sum()`` ids each)."""
        self._check_labels(emissions, labels)
        return viterbi_decode(emissions, q_mask, *self.transitions(labels))[0]
