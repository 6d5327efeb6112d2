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

Decoding options **(ours)**, never part of the training loss; each a field of
:class:`~mner.models.mousing.config.MOUSINGConfig`, chosen on dev episodes in
``docs/results/mousing-precision.md`` (defaults: the decoder as trained, except that new MOUSING
checkpoints decode O against its nearest support words, which dev chose; checkpoints saved before
that field load as trained):

* ``transition_scale`` ``tau`` (:meth:`PrototypeCRF.transitions`): the learned abstract scores
  ``a_k`` are multiplied by ``tau`` before they are mapped onto the episode's labels and the IOB2
  constraints added, ``T = expand(tau * a)``: the power ``exp(a_k)^tau`` of the transition
  potentials, StructShot's tau (which powers its transition probabilities,
  :func:`mner.models.fewshot.abstract_transitions.project_io_transitions`) without its row
  renormalisation, so that ``tau = 1`` is the trained decoder exactly; ``tau = 0`` leaves only the
  constraints. The forbidden moves stay forbidden at every ``tau``;
* ``o_distance: nearest`` (:meth:`PrototypeCRF.o_neighbour_emissions`): the O column scores a
  query word against the O support words themselves instead of their mean,
  ``E[w, O] = -alpha * 1/k sum_{k nearest x in S^O} d(G_e(x_w), G_e(x))`` (k = ``o_neighbours``;
  k = 1 is NNShot's nearest neighbour for O alone). O is every word that is no entity of the
  episode's types (function words, verbs, hashtags, names of the other types): a mixture of
  unlike words whose mean can lie farther from an O word than an entity prototype does. The
  entity classes keep their prototypes.

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
from mner.models.fewshot.abstract_transitions import AbstractTransitions, expand_abstract
from mner.models.fewshot.metric import class_prototypes, prototype_scores, squared_euclidean, type_fallback

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

    def transitions(self, labels: Sequence[str], scale: float = 1.0) -> tuple[Tensor, Tensor, Tensor]:
        """The episode's constrained ``(transitions (C, C), start (C,), end (C,))``; ``scale``
        (tau, >= 0) multiplies the learned abstract scores before the constraints are added
        (module docstring); 1 is the trained decoder exactly."""
        if scale == 1.0:
            return self.abstract(labels)
        if not scale >= 0:
            raise ValueError(f"PrototypeCRF transition scale must be >= 0, got {scale}")
        return expand_abstract(self.abstract.scores * scale, labels)

    def o_neighbour_emissions(
        self,
        s: Tensor,
        s_tags: Tensor,
        s_episode: Tensor,
        q: Tensor,
        q_episode: Tensor,
        k: int = 1,
        num_episodes: int | None = None,
    ) -> Tensor:
        """The O column ``(Q, W')`` scored against the O support words of the query's episode:
        ``-alpha`` times the mean of the ``k`` smallest squared distances (fewer when the episode
        has fewer O words). Shapes as :meth:`emissions`; class 0 is O in every episode. An episode
        without any O support word (never in practice) keeps its O prototype's score (the zero
        vector's, as :func:`~mner.models.fewshot.metric.type_fallback` leaves it).

        The O support words are sorted by episode into a padded ``(E, T, d)`` table, each query
        reads its own episode's row: one batched distance, no loop over episodes or words."""
        if k < 1:
            raise ValueError(f"o_neighbours must be >= 1, got {k}")
        if num_episodes is None:
            num_episodes = max(int(s_episode.max()) if s_episode.numel() else -1,
                               int(q_episode.max()) if q_episode.numel() else -1) + 1
        is_o = s_tags == 0
        tok_ep = s_episode.unsqueeze(1).expand_as(s_tags)[is_o]
        order = torch.sort(tok_ep, stable=True).indices
        tokens, tok_ep = s[is_o][order], tok_ep[order]
        per_episode = torch.bincount(tok_ep, minlength=num_episodes)
        slot = torch.arange(tok_ep.shape[0], device=s.device) - (per_episode.cumsum(0) - per_episode)[tok_ep]
        width = max(int(per_episode.max()) if tok_ep.numel() else 0, 1)
        table = tokens.new_zeros(num_episodes, width, s.shape[-1]).index_put((tok_ep, slot), tokens)
        filled = torch.zeros(num_episodes, width, dtype=torch.bool, device=s.device).index_put(
            (tok_ep, slot), torch.ones_like(tok_ep, dtype=torch.bool))
        dist = squared_euclidean(q, table[q_episode])                                  # (Q, W', T)
        dist = dist.masked_fill(~filled[q_episode].unsqueeze(1), float("inf"))
        near = dist.topk(min(k, width), dim=-1, largest=False).values                 # (Q, W', k)
        real = torch.isfinite(near)
        mean = near.masked_fill(~real, 0.0).sum(-1) / real.sum(-1).clamp_min(1)
        proto = torch.zeros(1, 1, s.shape[-1], dtype=dist.dtype, device=s.device)      # an empty O: zero prototype
        empty = -squared_euclidean(q, proto.expand(q.shape[0], 1, -1)).squeeze(-1)
        scores = torch.where(real.any(-1), -mean, empty)
        return scores * self.scale.to(scores.dtype)

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
