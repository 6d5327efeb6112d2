"""Linear-chain conditional random field: the tag decoder of MAF and MOUSING.

A sentence ``S`` (with image ``I``) is encoded into per-word features ``H``; a model turns them
into emission scores ``E`` (batch, words, tags). The CRF scores a whole tag sequence ``y`` as the
MAF paper writes it::

    P(y | S, I) = exp( sum_i E_{h_i, y_i} + sum_i T_{y_i, y_{i+1}} ) / Z(H)

    Z(H) = sum over all tag sequences y' of exp( sum_i E_{h_i, y'_i} + sum_i T_{y'_i, y'_{i+1}} )

and trains with the negative log-likelihood over a data set ``D``::

    L_mner = -1/|D| sum_{(S, I, y) in D} log P(y | S, I)

Here ``T`` also has a start row and an end column (``start[j]`` scores a sequence that begins
with tag ``j``, ``end[j]`` one that ends with it), as in pytorch-crf; both may be left out.

The two models use the CRF differently, so the math is a set of functions that take the
transition scores as arguments:

* MAF (supervised): ``E = Linear(H)`` over a fixed label set; :class:`CRF` owns learned
  ``transitions``, ``start_transitions`` and ``end_transitions`` and calls the functions.
* MOUSING (few-shot): ``E`` = minus distances to class prototypes, the label set changes with
  every episode, and the episode's transition matrix is built from a few label-agnostic scores;
  it calls :func:`crf_log_likelihood`, :func:`viterbi_decode` and :func:`crf_marginals` directly
  with that matrix (:func:`allowed_transitions` and :func:`apply_constraints` add the tagging
  scheme's constraints).

Conventions (all functions):

* batch first: ``emissions`` (B, T, C) float, ``tags`` (B, T) integer, ``mask`` (B, T) bool;
* ``transitions[i, j]`` scores tag ``i`` followed by tag ``j``; ``start`` / ``end`` are (C,) or
  ``None`` (no start / end scores);
* masks are right-padded: row ``b`` is True for its first ``length_b`` positions, then False.
  A length of 0 is allowed (its log-likelihood and log-partition are 0, its path is ``[]``).
  ``mask=None`` means every position is valid. Emissions and tags at padded positions are
  never read (they may hold anything, e.g. tag ``-100``, or NaN emissions);
* half-precision emissions are computed in float32; results have the promoted float dtype.

Constraints are *added* scores, never infinities: a disallowed transition gets
:data:`DISALLOWED` (``-1e4``). The log-partition then carries the disallowed paths with weight
``exp(-1e4) = 0``, Viterbi never picks them while an allowed path exists, and all gradients stay
finite (no ``-inf - -inf = NaN``). A gold sequence that itself breaks the constraints costs
about ``1e4`` in its loss: IOB1 data and the orphan ``I-`` tags of Twitter-2015 (an ``I-x``
after ``O``) must be made well-formed first (``mner.tagging.convert_tags(tags, "iob1" or
"iob2", "iob2")``) to train a constrained CRF, or the constraints kept to decoding only (the
functional API).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import Tensor, nn

from mner.tagging.schemes import normalize_scheme, parse_tag

__all__ = [
    "CRF",
    "DISALLOWED",
    "allowed_transitions",
    "apply_constraints",
    "crf_log_likelihood",
    "crf_log_partition",
    "crf_marginals",
    "viterbi_decode",
]

#: Score added to a transition (or start / end) that the tagging scheme forbids. Finite, so that
#: gradients stay finite (exp(-1e4) is exactly 0 in float32 and float64, so forbidden paths add
#: nothing to Z); large enough that a forbidden path can win Viterbi only if, without the
#: penalty, it beat every allowed path by more than 1e4, far beyond any sane emission scale.
DISALLOWED = -1e4

#: Schemes with transition constraints (canonical names of mner.tagging.schemes) and the
#: prefixes their labels may use besides ``O``.
_PREFIXES = {"iob2": "BI", "bioes": "BIES"}
_REDUCTIONS = ("none", "sum", "mean", "token_mean")


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------

#: Largest number of elements of the per-step score tensor (steps, C, C, B) built at once;
#: longer inputs are processed in chunks of time steps (only very large tag sets need that).
_CHUNK_ELEMENTS = 1 << 22


class _Inputs(NamedTuple):
    emissions: Tensor  # (T, C, B) contiguous, time first and batch last
    mask: Tensor  # (B, T) bool
    lengths: Tensor  # (B,) long
    full: bool  # every position valid
    transitions: Tensor  # (C, C)
    start: Tensor | None  # (C,)
    end: Tensor | None  # (C,)


def _prepare(
    emissions: Tensor,
    mask: Tensor | None,
    transitions: Tensor,
    start: Tensor | None,
    end: Tensor | None,
    tags: Tensor | None = None,
    clean_padding: bool = True,
) -> _Inputs:
    """Check shapes, mask and tags; bring everything to one float dtype and the inner layout.

    ``clean_padding`` zeroes the emissions at padded positions, which may hold anything (NaN,
    inf) and must not reach a sum or its gradient; Viterbi does without (it never reads them).
    """
    if not isinstance(emissions, Tensor) or emissions.dim() != 3:
        shape = tuple(emissions.shape) if isinstance(emissions, Tensor) else type(emissions)
        raise ValueError(f"emissions must be a (batch, seq_len, num_tags) tensor, got {shape}")
    if not emissions.is_floating_point():
        raise ValueError(f"emissions must be a float tensor, got {emissions.dtype}")
    batch, seq_len, num_tags = emissions.shape
    if num_tags == 0:
        raise ValueError("emissions have 0 tags; a CRF needs at least one tag")
    if transitions.shape != (num_tags, num_tags):
        raise ValueError(
            f"transitions must be ({num_tags}, {num_tags}) to match the {num_tags} tags of "
            f"emissions {tuple(emissions.shape)}, got {tuple(transitions.shape)}"
        )
    for name, vec in (("start", start), ("end", end)):
        if vec is not None and vec.shape != (num_tags,):
            raise ValueError(
                f"{name} scores must be ({num_tags},) to match emissions "
                f"{tuple(emissions.shape)}, got {tuple(vec.shape)}"
            )

    dtype = torch.promote_types(emissions.dtype, transitions.dtype)
    if dtype in (torch.float16, torch.bfloat16):
        dtype = torch.float32
    transitions = transitions.to(dtype)
    start = None if start is None else start.to(dtype)
    end = None if end is None else end.to(dtype)

    if mask is None:
        mask = torch.ones(batch, seq_len, dtype=torch.bool, device=emissions.device)
        lengths = torch.full((batch,), seq_len, dtype=torch.long, device=emissions.device)
        full = True
    else:
        if mask.shape != (batch, seq_len):
            raise ValueError(
                f"mask must be (batch, seq_len) = {(batch, seq_len)} like emissions, "
                f"got {tuple(mask.shape)}"
            )
        if mask.is_floating_point() or mask.is_complex():
            raise ValueError(f"mask must be bool (or integer 0/1), got {mask.dtype}")
        if mask.dtype != torch.bool:
            mask = mask != 0
        if seq_len > 1:
            gaps = mask[:, 1:] > mask[:, :-1]  # a valid position right after a padded one
            if bool(gaps.any()):
                row, pos = (int(v) for v in gaps.nonzero()[0])
                if not bool(mask[row, 0]):
                    raise ValueError(
                        f"mask row {row} starts with padding (position 0 is False) but "
                        f"position {pos + 1} is True; a non-empty sequence must start at "
                        "position 0 (masks are right-padded: True for the first `length` "
                        "positions, then False)"
                    )
                raise ValueError(
                    f"mask row {row} is not right-padded: position {pos} is False but "
                    f"position {pos + 1} is True; masks must be True for the first "
                    "`length` positions, then False"
                )
        lengths = mask.sum(dim=1)
        full = bool(lengths.eq(seq_len).all())

    if tags is not None:
        if tags.shape != (batch, seq_len):
            raise ValueError(
                f"tags must be (batch, seq_len) = {(batch, seq_len)} like emissions, "
                f"got {tuple(tags.shape)}"
            )
        if tags.is_floating_point() or tags.is_complex() or tags.dtype == torch.bool:
            raise ValueError(f"tags must be an integer tensor, got {tags.dtype}")
        bad = mask & ((tags < 0) | (tags >= num_tags))
        if bool(bad.any()):
            row, pos = (int(v) for v in bad.nonzero()[0])
            raise ValueError(
                f"tag {int(tags[row, pos])} at row {row}, position {pos} is out of range: "
                f"tags at valid (mask=True) positions must lie in [0, {num_tags})"
            )

    # Inner layout (T, C, B): the recursions reduce over the leading tag axis of a (C, C, B)
    # block, which the CPU kernels vectorise along the batch.
    emissions = emissions.to(dtype)
    if clean_padding and not full:
        emissions = emissions.masked_fill(~mask.unsqueeze(2), 0.0)
    emissions = emissions.permute(1, 2, 0).contiguous()
    return _Inputs(emissions, mask, lengths, full, transitions, start, end)


def _at_last(x: Tensor, inp: _Inputs) -> Tensor:
    """Rows of a (T, C, B) tensor at each sequence's last valid position, as (C, B)."""
    if inp.full:
        return x[-1]
    last = (inp.lengths - 1).clamp(min=0)  # an empty sequence reads position 0, then is zeroed
    return x.gather(0, last.view(1, 1, -1).expand(1, x.shape[1], -1)).squeeze(0)


def _pair_chunks(emissions: Tensor, transitions: Tensor):
    """Yield ``(t0, pair)`` over time chunks of the (T', C, B) ``emissions``, where
    ``pair[k, i, j, b] = emissions[t0 + k, i, b] + transitions[i, j]``: the score of leaving
    tag ``i`` (emitted at step ``t0 + k``) for tag ``j``.
    """
    steps, num_tags, batch = emissions.shape
    size = max(1, _CHUNK_ELEMENTS // (num_tags * num_tags * max(batch, 1)))
    trans = transitions.unsqueeze(2)
    for t0 in range(0, steps, size):
        yield t0, emissions[t0 : t0 + size].unsqueeze(2) + trans


def _initial(inp: _Inputs) -> Tensor:
    """(C, B) score before the first emission: the start scores, or zeros."""
    num_tags, batch = inp.emissions.shape[1:]
    if inp.start is None:
        return inp.emissions.new_zeros(num_tags, batch)
    return inp.start.unsqueeze(1).expand(num_tags, batch)


def _with_end(x: Tensor, inp: _Inputs) -> Tensor:
    return x if inp.end is None else x + inp.end.unsqueeze(1)


# --------------------------------------------------------------------------------------------
# Functional core
# --------------------------------------------------------------------------------------------


def _forward_scores(inp: _Inputs) -> Tensor:
    """Forward algorithm in log space. Returns ``prefix`` (T, C, B) with
    ``prefix[t, j, b] + emissions[t, j, b]`` = log-sum of the scores of all tag prefixes
    ``y_0..y_t`` ending in ``y_t = j`` (start and emissions included; the classical alpha).

    Masks are not applied: step ``t`` only reads steps ``<= t``, so the values at a sequence's
    valid positions are exact; callers read nothing past a sequence's end.
    """
    prefix = _initial(inp)
    prefixes = [prefix]
    for _, pair in _pair_chunks(inp.emissions[:-1], inp.transitions):
        for step in pair.unbind(0):
            # (C_i, 1, B) + (C_i, C_j, B) -> log-sum-exp over i -> (C_j, B)
            prefix = torch.logsumexp(prefix.unsqueeze(1) + step, dim=0)
            prefixes.append(prefix)
    return torch.stack(prefixes)


def _log_partition(inp: _Inputs) -> tuple[Tensor, Tensor]:
    """(log Z (B,), prefix (T, C, B) of :func:`_forward_scores`)."""
    prefix = _forward_scores(inp)
    last = _at_last(prefix, inp) + _at_last(inp.emissions, inp)
    log_z = torch.logsumexp(_with_end(last, inp), dim=0)
    if not inp.full:
        log_z = log_z.masked_fill(inp.lengths == 0, 0.0)
    return log_z, prefix


def _gold_score(inp: _Inputs, tags: Tensor) -> Tensor:
    """Score of the given tags: sum_i E[i, y_i] + sum_i T[y_i, y_i+1] (+ start, + end)."""
    mask, lengths = inp.mask, inp.lengths
    tags = tags.long()
    if not inp.full:
        tags = tags.masked_fill(~mask, 0)  # padded positions may hold anything (e.g. -100)
    batch, seq_len = tags.shape
    # emissions are (T, C, B): E[t, y[b, t], b]
    emit = inp.emissions.gather(1, tags.t().unsqueeze(1)).squeeze(1)  # (T, B); 0 when padded
    score = emit.sum(dim=0)
    if seq_len > 1:
        trans = inp.transitions[tags[:, :-1], tags[:, 1:]]  # (B, T-1)
        if not inp.full:
            trans = trans.masked_fill(~mask[:, 1:], 0.0)
        score = score + trans.sum(dim=1)
    if inp.start is not None:
        score = score + inp.start[tags[:, 0]]
    if inp.end is not None:
        last = (lengths - 1).clamp(min=0)
        score = score + inp.end[tags.gather(1, last.unsqueeze(1)).squeeze(1)]
    if not inp.full:
        score = score.masked_fill(lengths == 0, 0.0)
    return score


def crf_log_partition(
    emissions: Tensor,
    mask: Tensor | None,
    transitions: Tensor,
    start: Tensor | None = None,
    end: Tensor | None = None,
) -> Tensor:
    """``log Z`` per sequence (B,): the log-sum-exp of the scores of all tag sequences.

    Computed by the forward algorithm in log space; 0 for an empty sequence.
    """
    inp = _prepare(emissions, mask, transitions, start, end)
    if inp.emissions.shape[0] == 0:
        return inp.emissions.new_zeros(inp.emissions.shape[2])
    return _log_partition(inp)[0]


def crf_log_likelihood(
    emissions: Tensor,
    tags: Tensor,
    mask: Tensor | None,
    transitions: Tensor,
    start: Tensor | None = None,
    end: Tensor | None = None,
) -> Tensor:
    """``log P(y | x)`` per sequence (B,): gold score minus ``log Z`` (0 for an empty sequence).

    The loss is its negation; :class:`CRF` reduces it. Tags at padded positions are ignored.
    """
    inp = _prepare(emissions, mask, transitions, start, end, tags=tags)
    if inp.emissions.shape[0] == 0:
        return inp.emissions.new_zeros(inp.emissions.shape[2])
    return _gold_score(inp, tags) - _log_partition(inp)[0]


@torch.no_grad()
def viterbi_decode(
    emissions: Tensor,
    mask: Tensor | None,
    transitions: Tensor,
    start: Tensor | None = None,
    end: Tensor | None = None,
) -> tuple[list[list[int]], Tensor]:
    """Best tag sequence of every sequence and its score.

    Returns ``(best_paths, best_scores)``: ``best_paths[b]`` is a list of ``length_b`` tag ids
    (``[]`` for an empty sequence), ``best_scores`` (B,) the paths' scores (0 when empty). Runs
    without autograd: ``best_scores`` carries no gradient (score a path with
    :func:`crf_log_likelihood` for that). Ties go to the lowest tag id.

    The batch moves together. The recursion keeps only the running maxima (one add and one
    ``amax`` per step); the back-pointers of all steps are then recovered at once, as the
    first tag whose candidate equals the maximum, into a (T-1, C, B) tensor. Padded steps get
    identity back-pointers, so every sequence is traced back from the last column by one
    gather over the batch per step, and the paths become Python lists once, at the end.
    """
    # padded positions are never read back: their maxima and pointers are discarded, and the
    # pointers are replaced by the identity (NaN keys clamp to a valid tag, see below)
    inp = _prepare(emissions, mask, transitions, start, end, clean_padding=False)
    seq_len, num_tags, batch = inp.emissions.shape
    if seq_len == 0:
        return [[] for _ in range(batch)], inp.emissions.new_zeros(batch)
    tag_ids = torch.arange(num_tags, device=inp.emissions.device)
    tag_keys = tag_ids.to(inp.emissions.dtype).view(1, num_tags, 1, 1)

    # best[t, j, b]: best score of a prefix y_0..y_t with y_t = j, without y_t's emission
    best = torch.empty_like(inp.emissions)
    best[0] = _initial(inp)
    rows_in = best.unsqueeze(2).unbind(0)  # best[t] as (C_i, 1, B)
    rows_out = best.unbind(0)
    pointers = []
    for t0, pair in _pair_chunks(inp.emissions[:-1], inp.transitions):
        for k, step in enumerate(pair.unbind(0), start=t0):
            torch.amax(rows_in[k] + step, dim=0, out=rows_out[k + 1])
        # back-pointer = first i whose candidate equals the max: recompute the same sums
        # (bit-identical), key = C * [cand < max] + i, take the min over i. In place, so
        # that one (k, C, C, B) buffer serves (fresh large buffers cost page faults).
        t1 = t0 + pair.shape[0]
        key = best[t0:t1].unsqueeze(2) + pair  # candidates (k, C_i, C_j, B)
        key.sub_(best[t0 + 1 : t1 + 1].unsqueeze(1)).sign_().mul_(-num_tags).add_(tag_keys)
        pointers.append(key.amin(dim=1))  # (k, C_j, B)

    final = _with_end(_at_last(best, inp) + _at_last(inp.emissions, inp), inp)
    best_scores, last_tag = final.max(dim=0)  # (B,)
    if not inp.full:
        best_scores = best_scores.masked_fill(inp.lengths == 0, 0.0)

    tag = last_tag.unsqueeze(0)  # (1, B)
    path = [tag]
    if seq_len > 1:
        # NaN keys (all candidates infinite, or garbage padding) become an arbitrary valid tag
        back = torch.cat(pointers).long().clamp_(0, num_tags - 1)  # (T-1, C, B)
        if not inp.full:
            back = torch.where(inp.mask.t()[1:].unsqueeze(1), back, tag_ids.view(1, -1, 1))
        for t in range(seq_len - 2, -1, -1):
            tag = back[t].gather(0, tag)
            path.append(tag)
        path.reverse()
    rows = torch.cat(path).t().tolist()
    if inp.full:
        return rows, best_scores
    return [row[:n] for row, n in zip(rows, inp.lengths.tolist())], best_scores


def crf_marginals(
    emissions: Tensor,
    mask: Tensor | None,
    transitions: Tensor,
    start: Tensor | None = None,
    end: Tensor | None = None,
) -> Tensor:
    """Posterior tag probabilities ``P(y_t = j | x)`` (B, T, C) by forward-backward in log space.

    Rows of padded positions are 0; rows of valid positions sum to 1. Used for span confidence.
    """
    inp = _prepare(emissions, mask, transitions, start, end)
    seq_len, num_tags, batch = inp.emissions.shape
    if seq_len == 0:
        return inp.emissions.new_zeros(batch, 0, num_tags)
    log_z, prefix = _log_partition(inp)
    alpha = prefix + inp.emissions

    # beta[t, i, b] = log-sum of the scores of all suffixes y_t+1.. after y_t = i (end included)
    final = _with_end(inp.emissions.new_zeros(num_tags, batch), inp)
    beta = final
    betas = [beta]
    trans = inp.transitions.unsqueeze(2)  # (C_i, C_j, 1)
    valid = inp.mask.t().unsqueeze(1)  # (T, 1, B)
    for t in range(seq_len - 2, -1, -1):
        nxt = torch.logsumexp(trans + (inp.emissions[t + 1] + beta).unsqueeze(0), dim=1)
        beta = nxt if inp.full else torch.where(valid[t + 1], nxt, final)  # last: end only
        betas.append(beta)
    betas.reverse()
    marginals = (alpha + torch.stack(betas) - log_z).exp().permute(2, 0, 1)
    return marginals if inp.full else marginals.masked_fill(~inp.mask.unsqueeze(2), 0.0)


# --------------------------------------------------------------------------------------------
# Tagging-scheme constraints
# --------------------------------------------------------------------------------------------


def _parse_label(label: str, index: int, scheme: str) -> tuple[str, str]:
    """``(prefix, type)`` of a label (``("O", "")`` for ``O``), read by
    :func:`mner.tagging.parse_tag`; ValueError if it is malformed or not a tag of ``scheme``."""
    try:
        prefix, entity_type = parse_tag(label, index)
    except ValueError:
        prefix = None
    if prefix == "O" or (prefix is not None and prefix in _PREFIXES[scheme]):
        return prefix, entity_type
    expected = "O, B-<type> or I-<type>" if scheme == "iob2" else "O or B-/I-/E-/S-<type>"
    raise ValueError(
        f"label {label!r} at index {index} is not a {scheme.upper()} tag (expected {expected}); "
        "keep [CLS]/[SEP]/X and padding out of the CRF label set"
    )


def allowed_transitions(
    labels: Sequence[str], scheme: str = "iob2"
) -> tuple[Tensor, Tensor, Tensor]:
    """Which transitions a tagging scheme allows, as bool tensors ``(trans_ok, start_ok, end_ok)``.

    ``trans_ok[i, j]`` is True when ``labels[i]`` may be followed by ``labels[j]`` (shape (C, C));
    ``start_ok`` (C,) and ``end_ok`` (C,) say which tags may begin and end a sentence.

    * ``"iob2"``: ``I-x`` only after ``B-x`` or ``I-x`` (so not after ``O``, not after ``B-y`` /
      ``I-y`` of another type, not first). Any tag may end a sentence.
    * ``"bioes"``: after ``O``, ``E-x`` or ``S-x`` (and at the start) only ``O``, ``B-y`` or
      ``S-y``; after ``B-x`` or ``I-x`` only ``I-x`` or ``E-x``; a sentence ends with ``O``,
      ``E-x`` or ``S-x``.

    Labels are ``O`` or ``<prefix>-<type>`` (the type may itself contain ``-``). Scheme names
    are case-insensitive; ``bio`` means ``iob2`` and ``iobes`` means ``bioes``.
    """
    try:
        canonical = normalize_scheme(scheme)
    except ValueError:
        canonical = None
    if canonical not in _PREFIXES:
        raise ValueError(
            f"unknown tagging scheme {scheme!r} for CRF constraints; choose one of "
            "['bio', 'bioes', 'iob2', 'iobes'] (IOB1 and IO tags have no transition constraints)"
        )
    scheme = canonical
    parsed = [_parse_label(label, i, scheme) for i, label in enumerate(labels)]
    n = len(parsed)
    trans_ok = torch.zeros(n, n, dtype=torch.bool)
    start_ok = torch.zeros(n, dtype=torch.bool)
    end_ok = torch.zeros(n, dtype=torch.bool)
    if scheme == "iob2":
        for j, (pj, tj) in enumerate(parsed):
            start_ok[j] = pj != "I"
            end_ok[j] = True
            for i, (pi, ti) in enumerate(parsed):
                trans_ok[i, j] = pj != "I" or (pi in "BI" and ti == tj)
    else:
        for j, (pj, tj) in enumerate(parsed):
            starts_chunk = pj in ("O", "B", "S")
            start_ok[j] = starts_chunk
            end_ok[j] = pj in ("O", "E", "S")
            for i, (pi, ti) in enumerate(parsed):
                if pi in ("B", "I"):  # inside a chunk: continue or close the same type
                    trans_ok[i, j] = pj in ("I", "E") and ti == tj
                else:  # outside a chunk
                    trans_ok[i, j] = starts_chunk
    return trans_ok, start_ok, end_ok


def apply_constraints(
    transitions: Tensor,
    start: Tensor | None,
    end: Tensor | None,
    allowed: tuple[Tensor, Tensor, Tensor],
    penalty: float = DISALLOWED,
) -> tuple[Tensor, Tensor, Tensor]:
    """Add ``penalty`` to the disallowed entries of ``allowed = (trans_ok, start_ok, end_ok)``.

    ``start`` / ``end`` of ``None`` count as zeros, so the result always has start and end
    scores. Differentiable in ``transitions``, ``start`` and ``end`` (for MOUSING's per-episode
    matrices as for :class:`CRF`'s parameters).
    """
    trans_ok, start_ok, end_ok = (a.to(transitions.device) for a in allowed)
    zero = transitions.new_zeros(())
    transitions = transitions + torch.where(trans_ok, zero, penalty)
    start = (zero if start is None else start) + torch.where(start_ok, zero, penalty)
    end = (zero if end is None else end) + torch.where(end_ok, zero, penalty)
    return transitions, start, end


# --------------------------------------------------------------------------------------------
# Module
# --------------------------------------------------------------------------------------------


class CRF(nn.Module):
    """A linear-chain CRF with learned transition scores (MAF's tag decoder).

    Args:
        num_tags: number of tags ``C``.
        labels: the tag names, index-aligned with the emission columns; needed for constraints.
        constraints: ``"iob2"``, ``"bioes"`` or ``None``; disallowed transitions get
            :data:`DISALLOWED` added (in the loss, decoding and marginals alike). Constraints are
            buffers rebuilt from ``labels`` (not saved in the state dict).
        use_start_end: learn ``start_transitions`` and ``end_transitions`` (else they are
            ``None`` and only the constraints, if any, score the start and end).

    Parameters ``transitions`` (C, C; ``[i, j]`` scores ``i -> j``), ``start_transitions`` (C,)
    and ``end_transitions`` (C,) start uniform in [-0.1, 0.1], as in pytorch-crf, so that a
    state dict copied across gives the same results.
    """

    def __init__(
        self,
        num_tags: int,
        labels: Sequence[str] | None = None,
        constraints: str | None = None,
        use_start_end: bool = True,
    ) -> None:
        super().__init__()
        if num_tags <= 0:
            raise ValueError(f"num_tags must be positive, got {num_tags}")
        if labels is not None:
            labels = tuple(labels)
            if len(labels) != num_tags:
                raise ValueError(f"{len(labels)} labels given for num_tags={num_tags}")
        if constraints is not None and labels is None:
            raise ValueError(f"constraints={constraints!r} need the labels (pass labels=...)")
        self.num_tags = num_tags
        self.labels = labels
        self.constraints = constraints
        self.use_start_end = use_start_end
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags))
        if use_start_end:
            self.start_transitions = nn.Parameter(torch.empty(num_tags))
            self.end_transitions = nn.Parameter(torch.empty(num_tags))
        else:
            self.register_parameter("start_transitions", None)
            self.register_parameter("end_transitions", None)
        if constraints is not None:
            zeros = (torch.zeros(num_tags, num_tags), torch.zeros(num_tags), torch.zeros(num_tags))
            allowed = allowed_transitions(labels, constraints)
            penalties = apply_constraints(*zeros, allowed)
            for name, penalty in zip(("transition", "start", "end"), penalties):
                self.register_buffer(f"{name}_penalty", penalty, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw all transition scores uniformly from [-0.1, 0.1]."""
        for p in (self.transitions, self.start_transitions, self.end_transitions):
            if p is not None:
                nn.init.uniform_(p, -0.1, 0.1)

    def extra_repr(self) -> str:
        return (
            f"num_tags={self.num_tags}, constraints={self.constraints!r}, "
            f"use_start_end={self.use_start_end}"
        )

    def scores(self) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """The (transitions, start, end) scores in use: parameters plus constraint penalties."""
        trans, start, end = self.transitions, self.start_transitions, self.end_transitions
        if self.constraints is None:
            return trans, start, end
        trans = trans + self.transition_penalty
        start = self.start_penalty if start is None else start + self.start_penalty
        end = self.end_penalty if end is None else end + self.end_penalty
        return trans, start, end

    def _check_tags(self, emissions: Tensor) -> None:
        if emissions.dim() == 3 and emissions.shape[2] != self.num_tags:
            raise ValueError(
                f"emissions have {emissions.shape[2]} tag scores per position but this CRF "
                f"has num_tags={self.num_tags}"
            )

    def forward(
        self,
        emissions: Tensor,
        tags: Tensor,
        mask: Tensor | None = None,
        reduction: str = "mean",
    ) -> Tensor:
        """Negative log-likelihood of ``tags``: ``-log P(y | x)``.

        ``reduction``: ``"none"`` (B,), ``"sum"``, ``"mean"`` (over sequences, = L_mner on the
        batch) or ``"token_mean"`` (sum over sequences divided by the number of valid tokens).
        """
        if reduction not in _REDUCTIONS:
            raise ValueError(f"unknown reduction {reduction!r}; choose one of {_REDUCTIONS}")
        self._check_tags(emissions)
        nll = -crf_log_likelihood(emissions, tags, mask, *self.scores())
        if reduction == "none":
            return nll
        if reduction == "sum":
            return nll.sum()
        if reduction == "mean":
            return nll.mean()
        tokens = nll.new_tensor(tags.numel()) if mask is None else mask.sum()
        return nll.sum() / tokens.clamp(min=1)

    @torch.no_grad()
    def decode(self, emissions: Tensor, mask: Tensor | None = None) -> list[list[int]]:
        """Viterbi: the best tag ids of every sequence (``length_b`` ids each)."""
        self._check_tags(emissions)
        return viterbi_decode(emissions, mask, *self.scores())[0]

    def marginals(self, emissions: Tensor, mask: Tensor | None = None) -> Tensor:
        """Posterior tag probabilities (B, T, C); padded rows are 0."""
        self._check_tags(emissions)
        return crf_marginals(emissions, mask, *self.scores())
