"""Metric-based few-shot emissions: class prototypes (ProtoBERT, MOUSING) and nearest support
token (NNShot, StructShot), as pure tensor code over a batch of episodes.

Prototypical networks (Snell et al., 2017), the MOUSING poster's prototype equation::

    c^m = 1/|S^m| sum_{(x_k, y_k) in S^m} G_e(x_k)

    p(y_w = m | x^q) = exp(-d(G_e(x_q), c^m)) / sum_m' exp(-d(G_e(x_q), c^m'))

with ``d`` the squared Euclidean distance; :func:`prototype_scores` returns the logits
``-d(G_e(x_q), c^m)``. NNShot (Yang & Katiyar, EMNLP 2020) replaces the prototype by the nearest
support token of the class: logit ``-min_{x_k in S^m} d(G_e(x_q), G_e(x_k))``
(:func:`nearest_neighbour_scores`).

Episode conventions (fixed; the models rely on them). A batch holds ``E`` episodes of one N-way
setting, all tagged in one scheme (:mod:`mner.processing.episodes`), so class ``c`` has the same
role everywhere:

* ``scheme="bio"`` (the default of every function here): labels ``("O", "B-t1", "I-t1", ...,
  "B-tN", "I-tN")``, ``0 = O``, ``1 + 2j = B`` of type ``j``, ``2 + 2j = I`` of type ``j``
  (``C = 2N + 1`` classes);
* ``scheme="io"`` (Few-NERD's ProtoBERT, NNShot and StructShot, Ding et al., ACL 2021): labels
  ``("O", "I-t1", ..., "I-tN")``, ``0 = O``, ``1 + j`` = type ``j`` (``C = N + 1``).

* support: ``s`` (S, W, d) word embeddings of all episodes' support tweets, ``s_tags`` (S, W)
  long in ``[0, C)`` or ``-100`` (padding), ``s_episode`` (S,) long, the episode of each tweet;
* query: ``q`` (Q, W', d), ``q_mask`` (Q, W') bool, ``q_episode`` (Q,) long.

Support tokens of one episode never influence another episode's scores.

Empty classes **(ours)**: under ``bio``, a class with no support token in its episode (an ``I-``
class when every support mention is one word long, say) falls back to its *type*: the mean
(prototypes) or the nearest (NNShot) over the support tokens of the type's ``B-`` and ``I-``
classes together, which is the other class of the type since this one is empty. When the whole
type (or ``O``) is empty, prototypes fall back to the zero vector and nearest-neighbour scores to
:data:`EMPTY_CLASS_SCORE`, a large negative finite score. Under ``io`` a class *is* its type: there
is nothing to fall back to, and an empty class keeps the zero prototype / the empty score.

Half-precision inputs are computed in float32; scores come back as float32.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = [
    "EMPTY_CLASS_SCORE",
    "IGNORE_INDEX",
    "EpisodeCrossEntropy",
    "class_prototypes",
    "nearest_neighbour_scores",
    "prototype_scores",
    "squared_euclidean",
    "type_fallback",
]

#: Tag of padding positions in ``s_tags`` and in query tags.
IGNORE_INDEX = -100

#: Nearest-neighbour score of a class with no support token in its episode, neither itself nor
#: the other class of its type: finite (no ``-inf`` reaches a softmax or a CRF), and low enough
#: that such a class is never predicted while any other class has a support token.
EMPTY_CLASS_SCORE = -1e4

_HALF = (torch.float16, torch.bfloat16)

#: The class layouts of an episode (module docstring); ``mner.processing.episodes.EPISODE_SCHEMES``.
_SCHEMES = ("bio", "io")


def _compute_dtype(*tensors: Tensor) -> torch.dtype:
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return torch.float32 if dtype in _HALF else dtype


def squared_euclidean(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise squared Euclidean distances ``d[..., i, j] = |a[..., i, :] - b[..., j, :]|^2``.

    ``a`` (..., n, d) and ``b`` (..., m, d) -> (..., n, m); the leading dimensions broadcast
    (``a`` (Q, W, d) against ``b`` (Q, C, d) gives (Q, W, C)). Computed by the expansion
    ``|a|^2 - 2 a.b + |b|^2`` (one matmul, no (n, m, d) intermediate) and clamped at 0, which
    rounding can undershoot. Half-precision inputs are computed and returned in float32.
    """
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(
            f"squared_euclidean: feature sizes differ, a {tuple(a.shape)} vs b {tuple(b.shape)}"
        )
    dtype = _compute_dtype(a, b)
    a, b = a.to(dtype), b.to(dtype)
    aa = (a * a).sum(-1).unsqueeze(-1)  # (..., n, 1)
    bb = (b * b).sum(-1).unsqueeze(-2)  # (..., 1, m)
    return (aa - 2.0 * (a @ b.transpose(-1, -2)) + bb).clamp_min(0.0)


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


def _check_classes(num_classes: int, scheme: str = "bio") -> None:
    if scheme not in _SCHEMES:
        raise ValueError(f"scheme must be one of {', '.join(_SCHEMES)}, got {scheme!r}")
    if scheme == "io":
        if num_classes < 1:
            raise ValueError(
                f"num_classes must be N + 1 (O, then I- of each of N types), got {num_classes}"
            )
        return
    if num_classes < 1 or num_classes % 2 != 1:
        raise ValueError(
            f"num_classes must be 2N + 1 (O, then B-/I- of each of N types), got {num_classes}"
        )


def _check_support(
    s: Tensor,
    s_tags: Tensor,
    s_episode: Tensor,
    num_episodes: int,
    num_classes: int,
    scheme: str = "bio",
) -> None:
    _check_classes(num_classes, scheme)
    if s.dim() != 3 or s_tags.shape != s.shape[:2] or s_episode.shape != s.shape[:1]:
        raise ValueError(
            "support must be s (S, W, d), s_tags (S, W), s_episode (S,); got s "
            f"{tuple(s.shape)}, s_tags {tuple(s_tags.shape)}, s_episode {tuple(s_episode.shape)}"
        )
    bad = (s_tags != IGNORE_INDEX) & ((s_tags < 0) | (s_tags >= num_classes))
    if bool(bad.any()):
        tweet, word = (int(v) for v in bad.nonzero()[0])
        raise ValueError(
            f"support tag {int(s_tags[tweet, word])} at support tweet {tweet}, word {word} is "
            f"out of range: tags must lie in [0, {num_classes}) or be {IGNORE_INDEX} (padding); "
            "build them with the episode's label list (O, B-t1, I-t1, ... under bio; O, I-t1, "
            "... under io)"
        )
    _check_episodes(s_episode, num_episodes, "s_episode")


def _check_episodes(episode: Tensor, num_episodes: int, name: str) -> None:
    bad = (episode < 0) | (episode >= num_episodes)
    if bool(bad.any()):
        row = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"{name}[{row}] = {int(episode[row])} is not an episode index in [0, {num_episodes})"
        )


def _infer_episodes(*episodes: Tensor) -> int:
    return max((int(e.max()) + 1 for e in episodes if e.numel()), default=0)


# --------------------------------------------------------------------------------------------
# Prototypes
# --------------------------------------------------------------------------------------------


def class_prototypes(
    s: Tensor,
    s_tags: Tensor,
    s_episode: Tensor,
    num_episodes: int,
    num_classes: int,
    scheme: str = "bio",
) -> tuple[Tensor, Tensor]:
    """Prototype ``c^m`` of every class of every episode: the mean of its support tokens.

    ``s`` (S, W, d), ``s_tags`` (S, W) in ``[0, C)`` or -100, ``s_episode`` (S,) ->
    ``(protos (E, C, d), counts (E, C))`` with ``counts[e, m] = |S^m|`` of episode ``e``
    (float). A class without support token gets the zero vector and count 0 (see
    :func:`type_fallback`). Sums by one ``index_add`` over the flat ``episode * C + class``
    index: no Python loop over tokens or episodes. Differentiable in ``s``. ``scheme`` (``bio``
    or ``io``, module docstring) only decides which ``num_classes`` are valid: the mean is the
    same in both.
    """
    _check_support(s, s_tags, s_episode, num_episodes, num_classes, scheme)
    dtype = _compute_dtype(s)
    valid = s_tags != IGNORE_INDEX
    tokens = s[valid].to(dtype)  # (n, d)
    slot = (s_episode.unsqueeze(1) * num_classes + s_tags)[valid]  # (n,)
    sums = tokens.new_zeros(num_episodes * num_classes, s.shape[-1]).index_add(0, slot, tokens)
    counts = tokens.new_zeros(num_episodes * num_classes).index_add(
        0, slot, tokens.new_ones(slot.shape[0])
    )
    protos = sums / counts.clamp_min(1.0).unsqueeze(1)
    return protos.view(num_episodes, num_classes, -1), counts.view(num_episodes, num_classes)


def type_fallback(protos: Tensor, counts: Tensor, scheme: str = "bio") -> Tensor:
    """Fill the prototypes of empty classes from their type **(ours)**.

    ``protos`` (E, C, d), ``counts`` (E, C) as :func:`class_prototypes` returns them ->
    ``protos`` (E, C, d). Under ``bio``, a class ``B-t`` or ``I-t`` with count 0 takes the
    prototype of type ``t``: the mean over the support tokens of ``B-t`` and ``I-t`` together,
    ``(n_B c_B + n_I c_I) / (n_B + n_I)``, i.e. the other class of the type since this one is
    empty. If the whole type is empty, or ``O`` is (never in practice: every support tweet has
    O words), the prototype stays the zero vector. Classes with tokens are unchanged.

    Under ``io`` each type is one class, so there is no other class to fall back to: ``protos``
    come back unchanged (an empty type keeps the zero vector).
    """
    num_classes = protos.shape[1]
    _check_classes(num_classes, scheme)
    if num_classes == 1 or scheme == "io":
        return protos
    weighted = protos * counts.unsqueeze(-1)
    type_sum = weighted[:, 1::2] + weighted[:, 2::2]  # (E, N, d)
    type_count = counts[:, 1::2] + counts[:, 2::2]  # (E, N)
    type_proto = type_sum / type_count.clamp_min(1.0).unsqueeze(-1)
    per_class = type_proto.repeat_interleave(2, dim=1)  # (E, 2N, d): B-t and I-t of each type
    entity = torch.where(counts[:, 1:].unsqueeze(-1) > 0, protos[:, 1:], per_class)
    return torch.cat([protos[:, :1], entity], dim=1)


def prototype_scores(q: Tensor, q_episode: Tensor, protos: Tensor) -> Tensor:
    """Logits ``-d(G_e(x_q), c^m)`` (Q, W', C) of every query word against its episode's
    prototypes: ``q`` (Q, W', d), ``q_episode`` (Q,), ``protos`` (E, C, d).

    Their softmax over ``m`` is the poster's ``p(y_w = m | x^q)``.
    """
    if q.dim() != 3 or q_episode.shape != q.shape[:1] or protos.dim() != 3:
        raise ValueError(
            "prototype_scores needs q (Q, W', d), q_episode (Q,), protos (E, C, d); got q "
            f"{tuple(q.shape)}, q_episode {tuple(q_episode.shape)}, protos {tuple(protos.shape)}"
        )
    _check_episodes(q_episode, protos.shape[0], "q_episode")
    return -squared_euclidean(q, protos[q_episode])


# --------------------------------------------------------------------------------------------
# Nearest neighbour
# --------------------------------------------------------------------------------------------


def nearest_neighbour_scores(
    q: Tensor,
    q_episode: Tensor,
    s: Tensor,
    s_tags: Tensor,
    s_episode: Tensor,
    num_classes: int,
    num_episodes: int | None = None,
    scheme: str = "bio",
) -> Tensor:
    """NNShot logits (Q, W', C): ``-min`` squared distance from each query word to the support
    tokens of class ``m`` *of the query's episode*.

    Shapes as in the module docstring; ``num_episodes`` defaults to one more than the largest
    episode index. Under ``bio`` empty classes take their type's other class's score, else
    :data:`EMPTY_CLASS_SCORE`; under ``io`` an empty class (type) gets :data:`EMPTY_CLASS_SCORE`
    (module docstring); never ``-inf``.

    No Python loop, neither over words nor over episodes: the real support tokens are sorted by
    episode into a padded (E, T, d) table (T = most support tokens of one episode), each query
    reads its own episode's row, one batched matmul gives the (Q, W', T) distances, and the
    per-class minimum is a masked ``amin`` over T. Cost ``Q W' T d`` (plus a (Q, W', T, C)
    bool-masked copy), never distances to other episodes' tokens.
    """
    if num_episodes is None:
        num_episodes = _infer_episodes(s_episode, q_episode)
    _check_support(s, s_tags, s_episode, num_episodes, num_classes, scheme)
    if q.dim() != 3 or q_episode.shape != q.shape[:1] or q.shape[-1] != s.shape[-1]:
        raise ValueError(
            f"query must be q (Q, W', {s.shape[-1]}) and q_episode (Q,); got q "
            f"{tuple(q.shape)}, q_episode {tuple(q_episode.shape)}"
        )
    _check_episodes(q_episode, num_episodes, "q_episode")
    device = s.device
    valid = s_tags != IGNORE_INDEX
    tok_ep = s_episode.unsqueeze(1).expand_as(s_tags)[valid]  # (n,)
    order = torch.sort(tok_ep, stable=True).indices
    tokens, tok_ep, tok_cls = s[valid][order], tok_ep[order], s_tags[valid][order]
    per_episode = torch.bincount(tok_ep, minlength=num_episodes)  # (E,)
    offsets = per_episode.cumsum(0) - per_episode
    slot = torch.arange(tok_ep.shape[0], device=device) - offsets[tok_ep]
    width = max(int(per_episode.max()) if num_episodes else 0, 1)

    table = tokens.new_zeros(num_episodes, width, s.shape[-1]).index_put((tok_ep, slot), tokens)
    classes = torch.full((num_episodes, width), -1, dtype=torch.long, device=device)
    classes = classes.index_put((tok_ep, slot), tok_cls)  # -1 marks padding

    dist = squared_euclidean(q, table[q_episode])  # (Q, W', T)
    member = classes[q_episode].unsqueeze(-1) == torch.arange(num_classes, device=device)
    masked = dist.unsqueeze(-1).masked_fill(~member.unsqueeze(1), float("inf"))  # (Q,W',T,C)
    nearest = masked.amin(dim=2)  # (Q, W', C); inf where the class has no token

    if num_classes > 1 and scheme == "bio":  # empty B-/I- class -> the nearest token of its type
        type_nearest = torch.minimum(nearest[..., 1::2], nearest[..., 2::2])
        entity = nearest[..., 1:]
        entity = torch.where(torch.isinf(entity), type_nearest.repeat_interleave(2, -1), entity)
        nearest = torch.cat([nearest[..., :1], entity], dim=-1)
    empty = torch.isinf(nearest)
    return torch.where(empty, nearest.new_full((), EMPTY_CLASS_SCORE), -nearest.masked_fill(empty, 0.0))


# --------------------------------------------------------------------------------------------
# Loss
# --------------------------------------------------------------------------------------------


class EpisodeCrossEntropy(nn.Module):
    """Token-level cross-entropy over metric logits (ProtoBERT and NNShot training).

    ``forward(scores (Q, W', C), tags (Q, W'), mask (Q, W') | None) -> scalar``: the mean of
    ``-log softmax(scores)[tag]`` over the real tokens (tag != -100 and, when given, mask
    True). With no real token the loss is 0 (still attached to ``scores``' graph).
    Computed in float32 for half scores.
    """

    def forward(self, scores: Tensor, tags: Tensor, mask: Tensor | None = None) -> Tensor:
        if scores.dim() != 3 or tags.shape != scores.shape[:2]:
            raise ValueError(
                f"EpisodeCrossEntropy needs scores (Q, W', C) and tags (Q, W'); got scores "
                f"{tuple(scores.shape)}, tags {tuple(tags.shape)}"
            )
        tags = tags.long()
        if mask is not None:
            tags = tags.masked_fill(~mask.bool(), IGNORE_INDEX)
        scores = scores.to(_compute_dtype(scores))
        if not bool((tags != IGNORE_INDEX).any()):
            return scores.sum() * 0.0
        return F.cross_entropy(
            scores.reshape(-1, scores.shape[-1]), tags.reshape(-1), ignore_index=IGNORE_INDEX
        )
