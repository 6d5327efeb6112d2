"""Label-agnostic ("abstract") CRF transitions mapped onto an episode's labels.

StructShot (Yang & Katiyar, EMNLP 2020, section 3 and appendix) cannot learn a transition
matrix for the target types, which it sees only in the support set; instead it estimates
transition probabilities between *abstract* tags from the source data and spreads them over the
episode's labels. MOUSING's prototype CRF decoder (mousing.md, 3.) learns the same abstract
scores on source episodes **(ours, after StructShot)**.

Abstract kinds between IOB2 tags (``x``, ``y`` entity types, ``same`` = same type)::

    O->O  O->B  B->O  I->O  B->I(same)  I->I(same)
    B->B(same)  B->B(other)  I->B(same)  I->B(other)
    start->O  start->B  O->end  B->end  I->end

named :data:`ABSTRACT_KINDS` in that order. A transition between two concrete labels takes the
score of its kind; the moves IOB2 forbids (``O->I``, ``B-x/I-x -> I-y`` with ``y != x``,
``start->I``) get :data:`mner.crf.DISALLOWED` through :func:`mner.crf.allowed_transitions` and
:func:`mner.crf.apply_constraints`, so the result goes straight into
:func:`mner.crf.crf_log_likelihood` and :func:`mner.crf.viterbi_decode`.

Three users:

* :func:`expand_abstract`: scores of the 15 kinds -> ``(transitions (C, C), start (C,),
  end (C,))`` for any IOB2 label tuple, differentiable in the scores;
* :class:`AbstractTransitions`: the 15 scores as a learned parameter (init 0);
* :func:`estimate_abstract_transitions` + :class:`StructShotTransitions`: StructShot's fixed
  log-probabilities over the 15 IOB2 kinds **(ours: a BIO reading of StructShot)**, estimated by
  counting on the source training tags, with the mass of moves towards "some type" split evenly
  over the episode's types (see :func:`split_over_types`), and a temperature on the emission
  softmax. The ``scheme: bio`` StructShot of :mod:`mner.models.fewshot.nnshot`.

StructShot as its reference code decodes it (asappresearch/structshot ``viterbi.py``, the same
code as Few-NERD's ``util/viterbi.py``) works on **IO** tags (``O``, ``I-t``) instead:

* :data:`IO_ABSTRACT_KINDS`: seven kinds, ``start->O  start->I  O->O  O->I  I->O  I->I(same)
  I->I(other)`` (the reference's ``s_o, s_i, o_o, o_i, i_o, i_i, x_y``), no end;
* :func:`estimate_io_transitions`: their probabilities, counted on the source tags read as IO,
  each "from" row normalised;
* :func:`project_io_transitions` + :class:`StructShotIOTransitions`: the projection onto an
  episode's N types (``o_i / N``, ``s_i / N``, ``x_y / (N - 1)``), then the temperature tau as a
  *power of each transition row*, ``P' = P^tau / sum_row P^tau``, and ``log P'`` as the
  transition scores; the emissions are NNShot's log class probabilities with no temperature.
  The ``scheme: io`` StructShot (the default).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

from mner.crf import DISALLOWED, allowed_transitions, apply_constraints, viterbi_decode
from mner.tagging import parse_tag

__all__ = [
    "ABSTRACT_KINDS",
    "IO_ABSTRACT_KINDS",
    "AbstractTransitions",
    "StructShotIOTransitions",
    "StructShotTransitions",
    "estimate_abstract_transitions",
    "estimate_io_transitions",
    "expand_abstract",
    "project_io_transitions",
    "split_over_types",
]

#: The abstract transition kinds, in the order of the score vectors.
ABSTRACT_KINDS: tuple[str, ...] = (
    "O->O",
    "O->B",
    "B->O",
    "I->O",
    "B->I",  # same type (another type is forbidden)
    "I->I",  # same type
    "B->B(same)",
    "B->B(other)",
    "I->B(same)",
    "I->B(other)",
    "start->O",
    "start->B",
    "O->end",
    "B->end",
    "I->end",
)
_KIND_INDEX = {kind: i for i, kind in enumerate(ABSTRACT_KINDS)}
_NUM_KINDS = len(ABSTRACT_KINDS)
_FORBIDDEN = _NUM_KINDS  # index of an extra zero slot; the constraints add DISALLOWED there

#: Kinds whose target is "a B of some type" (split over N types) and "a B of another type"
#: (split over N - 1 types) by :func:`split_over_types`.
_TO_ANY_TYPE = ("O->B", "start->B")
_TO_OTHER_TYPE = ("B->B(other)", "I->B(other)")


def _parse_labels(labels: Sequence[str]) -> list[tuple[str, str]]:
    parsed = []
    for i, label in enumerate(labels):
        try:
            prefix, entity_type = parse_tag(label, i)
        except ValueError:
            prefix, entity_type = None, ""
        if prefix not in ("O", "B", "I"):
            raise ValueError(
                f"label {label!r} at index {i} of {tuple(labels)} is not an IOB2 tag; episode "
                "labels are ('O', 'B-t1', 'I-t1', ...)"
            )
        parsed.append((prefix, entity_type))
    return parsed


def _kind(prev: tuple[str, str], cur: tuple[str, str]) -> int:
    """Index of the abstract kind of the move ``prev -> cur`` between two parsed labels, or
    ``_FORBIDDEN``."""
    (pp, pt), (cp, ct) = prev, cur
    if cp == "O":
        return _KIND_INDEX[f"{pp}->O"]
    if cp == "I":
        return _KIND_INDEX[f"{pp}->I"] if pp in "BI" and pt == ct else _FORBIDDEN
    if pp == "O":
        return _KIND_INDEX["O->B"]
    return _KIND_INDEX[f"{pp}->B({'same' if pt == ct else 'other'})"]


@lru_cache(maxsize=64)
def _index_tables(labels: tuple[str, ...]) -> tuple[Tensor, Tensor, Tensor, tuple]:
    """Kind index of every (C, C) transition and of every start / end score, plus the IOB2
    ``allowed`` masks; cached per label tuple (CPU tensors)."""
    parsed = _parse_labels(labels)
    trans = torch.tensor([[_kind(a, b) for b in parsed] for a in parsed], dtype=torch.long)
    start = torch.tensor(
        [_KIND_INDEX[f"start->{p}"] if p != "I" else _FORBIDDEN for p, _ in parsed],
        dtype=torch.long,
    )
    end = torch.tensor([_KIND_INDEX[f"{p}->end"] for p, _ in parsed], dtype=torch.long)
    return trans, start, end, allowed_transitions(labels, "iob2")


def _as_vector(scores: Mapping[str, float | Tensor] | Tensor) -> Tensor:
    if isinstance(scores, Tensor):
        if scores.shape != (_NUM_KINDS,):
            raise ValueError(
                f"abstract scores must be a ({_NUM_KINDS},) tensor in the order of "
                f"ABSTRACT_KINDS, got {tuple(scores.shape)}"
            )
        return scores
    unknown = sorted(set(scores) - set(ABSTRACT_KINDS))
    missing = [k for k in ABSTRACT_KINDS if k not in scores]
    if unknown or missing:
        raise ValueError(
            f"abstract scores: unknown kinds {unknown}, missing kinds {missing}; give one score "
            f"for each of {list(ABSTRACT_KINDS)}"
        )
    values = [scores[k] for k in ABSTRACT_KINDS]
    if any(isinstance(v, Tensor) for v in values):
        ref = next(v for v in values if isinstance(v, Tensor))
        return torch.stack([torch.as_tensor(v, dtype=ref.dtype, device=ref.device) for v in values])
    return torch.tensor(values, dtype=torch.float32)


def expand_abstract(
    scores: Mapping[str, float | Tensor] | Tensor, labels: Sequence[str]
) -> tuple[Tensor, Tensor, Tensor]:
    """Map abstract scores onto an episode's labels.

    ``scores``: a dict ``{kind: score}`` over all of :data:`ABSTRACT_KINDS`, or a (15,) tensor in
    that order. ``labels``: IOB2 labels in any order, e.g. ``("O", "B-PER", "I-PER", "B-LOC",
    "I-LOC")`` (C = len(labels)). Returns ``(transitions (C, C), start (C,), end (C,))``:
    ``transitions[i, j]`` is the score of the kind of ``labels[i] -> labels[j]``, ``start[j]``
    of ``start -> labels[j]``, ``end[i]`` of ``labels[i] -> end``; IOB2-forbidden entries are
    :data:`~mner.crf.DISALLOWED`. Every entry is a copy of one score (no per-type split here;
    see :func:`split_over_types`), so gradients sum over the entries of a kind.
    """
    vector = _as_vector(scores)
    trans_idx, start_idx, end_idx, allowed = _index_tables(tuple(labels))
    device = vector.device
    padded = torch.cat([vector, vector.new_zeros(1)])  # forbidden -> 0, then + DISALLOWED
    return apply_constraints(
        padded[trans_idx.to(device)],
        padded[start_idx.to(device)],
        padded[end_idx.to(device)],
        allowed,
    )


class AbstractTransitions(nn.Module):
    """The 15 abstract transition scores as one learned parameter ``scores`` (15,), init 0
    (or ``init``, a dict or tensor as :func:`expand_abstract` takes).

    ``forward(labels) -> (transitions (C, C), start (C,), end (C,))``, IOB2-constrained.
    """

    def __init__(self, init: Mapping[str, float] | Tensor | None = None) -> None:
        super().__init__()
        start = torch.zeros(_NUM_KINDS) if init is None else _as_vector(init).detach().float()
        self.scores = nn.Parameter(start.clone())

    def forward(self, labels: Sequence[str]) -> tuple[Tensor, Tensor, Tensor]:
        return expand_abstract(self.scores, labels)

    def as_dict(self) -> dict[str, float]:
        """The current scores by kind name (for logs and reports)."""
        return dict(zip(ABSTRACT_KINDS, self.scores.detach().tolist()))


# --------------------------------------------------------------------------------------------
# StructShot: estimated from the source data
# --------------------------------------------------------------------------------------------

#: The abstract kinds that follow each "from" state; each row is one probability distribution.
_ROWS: dict[str, tuple[str, ...]] = {
    "start": ("start->O", "start->B"),
    "O": ("O->O", "O->B", "O->end"),
    "B": ("B->O", "B->I", "B->B(same)", "B->B(other)", "B->end"),
    "I": ("I->O", "I->I", "I->B(same)", "I->B(other)", "I->end"),
}


def estimate_abstract_transitions(
    tag_sequences: Sequence[Sequence[str]], smoothing: float = 1.0
) -> dict[str, float]:
    """StructShot's abstract transition log-probabilities, counted on source IOB2 tags.

    For each "from" state (start, O, B, I) the kinds that may follow it form one distribution
    (the "to" side includes the end of the sentence)::

        P(kind | from) = (count(kind) + smoothing) / (count(from -> anything) + smoothing * K)

    with ``K`` the number of kinds of that row (2 for start, 3 for O, 5 for B and I); e.g.
    ``P(O->B) = count(O -> B-any) / count(O -> anything)`` without smoothing, where ``anything``
    includes the end. ``B->B(other)`` counts a ``B-x`` followed by ``B-y`` with ``y != x``;
    ``B->B(same)`` a ``B-x`` followed by ``B-x`` (two adjacent mentions of one type). Types are
    whatever the source data has; only their equality matters.

    Returns ``{kind: log-probability}`` over all :data:`ABSTRACT_KINDS`; a kind of probability 0
    (``smoothing=0`` and no count) gets :data:`~mner.crf.DISALLOWED` instead of ``-inf``.
    Empty sequences are skipped. Raises ValueError for a tag sequence that is not well-formed
    IOB2 (an ``I-x`` that does not continue an ``x`` mention: convert the tags first with
    ``mner.tagging.convert_tags``), or for a state that never occurs while ``smoothing`` is 0.
    """
    if smoothing < 0:
        raise ValueError(f"smoothing must be >= 0, got {smoothing}")
    counts = dict.fromkeys(ABSTRACT_KINDS, 0)
    for n, tags in enumerate(tag_sequences):
        if len(tags) == 0:
            continue
        parsed = []
        for i, tag in enumerate(tags):
            try:
                parsed.append(parse_tag(tag, i))
            except ValueError as err:
                raise ValueError(f"tag sequence {n}: {err}") from None
        prev = ("start", "")
        for i, cur in enumerate(parsed):
            if cur[0] not in ("O", "B", "I"):
                raise ValueError(f"tag sequence {n}, position {i}: {tags[i]!r} is not an IOB2 tag")
            if prev[0] == "start":
                if cur[0] == "I":
                    kind = _FORBIDDEN
                else:
                    kind = _KIND_INDEX[f"start->{cur[0]}"]
            else:
                kind = _kind(prev, cur)
            if kind == _FORBIDDEN:
                raise ValueError(
                    f"tag sequence {n}, position {i}: {tags[i]!r} after "
                    f"{'the start' if prev[0] == 'start' else repr(tags[i - 1])} is not valid "
                    "IOB2; convert the source tags with mner.tagging.convert_tags(tags, 'iob1', "
                    "'iob2') (or drop the orphan I- tags) before estimating transitions"
                )
            counts[ABSTRACT_KINDS[kind]] += 1
            prev = cur
        counts[f"{prev[0]}->end"] += 1

    log_probs: dict[str, float] = {}
    for state, kinds in _ROWS.items():
        total = sum(counts[k] for k in kinds) + smoothing * len(kinds)
        if total == 0:
            raise ValueError(
                f"no transition out of {state!r} in the {len(tag_sequences)} tag sequences and "
                "smoothing=0: its probabilities are undefined; use smoothing > 0"
            )
        for k in kinds:
            p = (counts[k] + smoothing) / total
            log_probs[k] = math.log(p) if p > 0 else DISALLOWED
    return {k: log_probs[k] for k in ABSTRACT_KINDS}


def split_over_types(log_probs: Mapping[str, float], num_types: int) -> dict[str, float]:
    """StructShot's mapping of abstract probabilities onto ``num_types`` target types.

    As in the StructShot appendix, an abstract move whose target is a ``B`` of *some* type has
    its probability mass split evenly over the types it may reach: ``O->B`` and ``start->B``
    over the ``N`` types (``P(O -> B-t) = P(O->B) / N``), ``B->B(other)`` and ``I->B(other)``
    over the ``N - 1`` other types. So every concrete row of the expanded matrix is again a
    distribution. With ``N = 1`` there is no other type and the "other" moves keep their value
    but never occur (that mass is simply lost). All other kinds are unchanged.
    """
    if num_types < 1:
        raise ValueError(f"num_types must be >= 1, got {num_types}")
    out = dict(log_probs)
    for k in _TO_ANY_TYPE:
        out[k] = log_probs[k] - math.log(num_types)
    if num_types > 1:
        for k in _TO_OTHER_TYPE:
            out[k] = log_probs[k] - math.log(num_types - 1)
    return out


class StructShotTransitions(nn.Module):
    """StructShot's fixed transitions and emission temperature (nothing is learned).

    ``estimate``: the dict of :func:`estimate_abstract_transitions` (log-probabilities);
    ``temperature``: StructShot's ``tau`` on the emission softmax.

    * ``forward(labels) -> (transitions (C, C), start (C,), end (C,))``: the estimate split over
      the label set's N types (:func:`split_over_types`), expanded and IOB2-constrained;
    * ``emissions(scores (..., C)) -> log softmax(scores / tau)``: the NNShot logits turned into
      log emission probabilities for the Viterbi;
    * ``decode(scores (Q, W', C), mask (Q, W'), labels) -> list[list[int]]``: both, then Viterbi.
    """

    def __init__(self, estimate: Mapping[str, float], temperature: float = 1.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"StructShot temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.register_buffer("log_probs", _as_vector(estimate).detach().float().clone())

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"

    def forward(self, labels: Sequence[str]) -> tuple[Tensor, Tensor, Tensor]:
        labels = tuple(labels)
        num_types = len({t for p, t in _parse_labels(labels) if p != "O"})
        split = split_over_types(dict(zip(ABSTRACT_KINDS, self.log_probs.tolist())), max(num_types, 1))
        vector = torch.tensor([split[k] for k in ABSTRACT_KINDS], device=self.log_probs.device)
        return expand_abstract(vector, labels)

    def emissions(self, scores: Tensor) -> Tensor:
        dtype = torch.float32 if scores.dtype in (torch.float16, torch.bfloat16) else scores.dtype
        return torch.log_softmax(scores.to(dtype) / self.temperature, dim=-1)

    @torch.no_grad()
    def decode(self, scores: Tensor, mask: Tensor | None, labels: Sequence[str]) -> list[list[int]]:
        return viterbi_decode(self.emissions(scores), mask, *self(labels))[0]


# --------------------------------------------------------------------------------------------
# StructShot over IO tags: the reference code's seven kinds
# --------------------------------------------------------------------------------------------

#: StructShot's abstract kinds between IO tags, in the order of the reference code's
#: ``(s_o, s_i, o_o, o_i, i_o, i_i, x_y)``. ``I->I(same)`` continues a mention of one type,
#: ``I->I(other)`` moves to another type.
IO_ABSTRACT_KINDS: tuple[str, ...] = (
    "start->O",
    "start->I",
    "O->O",
    "O->I",
    "I->O",
    "I->I(same)",
    "I->I(other)",
)

#: The IO kinds that follow each "from" state; each row is one probability distribution.
_IO_ROWS: dict[str, tuple[str, ...]] = {
    "start": ("start->O", "start->I"),
    "O": ("O->O", "O->I"),
    "I": ("I->O", "I->I(same)", "I->I(other)"),
}

#: What the reference puts in place of a zero probability before the log (``1e-6``).
IO_ZERO_FLOOR = 1e-6


def estimate_io_transitions(
    tag_sequences: Sequence[Sequence[str]], smoothing: float = 0.0
) -> dict[str, float]:
    """StructShot's seven IO transition probabilities, counted on source tags.

    Each tag is read as IO, by its type alone (``B-x`` and ``I-x`` are both ``I-x``, so two
    adjacent mentions of one type count as ``I->I(same)``), as the reference code counts Few-NERD's
    IO data (``get_abstract_transitions``): the first tag of a sequence counts ``start->O`` or
    ``start->I``; each adjacent pair ``O->O``, ``O->I``, ``I->O``, ``I->I(same)`` (same type) or
    ``I->I(other)``. There is no end kind. Each "from" row is normalised::

        P(kind | from) = (count(kind) + smoothing) / (count(from -> anything) + smoothing * K)

    with ``K`` the number of kinds of the row (2 for start and O, 3 for I), so ``s_o + s_i = 1``,
    ``o_o + o_i = 1`` and ``i_o + i_i + x_y = 1``. ``smoothing`` defaults to 0, the reference's
    plain relative frequencies (a kind never seen has probability 0; :func:`project_io_transitions`
    floors it as the reference does, so no ``log(0)`` is taken).

    Returns ``{kind: probability}`` over :data:`IO_ABSTRACT_KINDS` (probabilities, not logs: tau
    is applied as their power). Empty sequences are skipped. Raises ValueError for a malformed tag,
    or for a state that never occurs while ``smoothing`` is 0 (e.g. source data without entities).
    """
    if smoothing < 0:
        raise ValueError(f"smoothing must be >= 0, got {smoothing}")
    counts = dict.fromkeys(IO_ABSTRACT_KINDS, 0)
    for n, tags in enumerate(tag_sequences):
        prev: str | None = "start"  # "start", None (O) or the entity type
        for i, tag in enumerate(tags):
            try:
                prefix, entity_type = parse_tag(tag, i)
            except ValueError as err:
                raise ValueError(f"tag sequence {n}: {err}") from None
            cur = None if prefix == "O" else entity_type
            if prev == "start":
                kind = "start->O" if cur is None else "start->I"
            elif prev is None:
                kind = "O->O" if cur is None else "O->I"
            elif cur is None:
                kind = "I->O"
            else:
                kind = "I->I(same)" if cur == prev else "I->I(other)"
            counts[kind] += 1
            prev = cur

    probs: dict[str, float] = {}
    for state, kinds in _IO_ROWS.items():
        total = sum(counts[k] for k in kinds) + smoothing * len(kinds)
        if total == 0:
            raise ValueError(
                f"no transition out of {state!r} in the {len(tag_sequences)} tag sequences and "
                "smoothing=0: its probabilities are undefined (does the source data have entities?)"
            )
        for k in kinds:
            probs[k] = (counts[k] + smoothing) / total
    return {k: probs[k] for k in IO_ABSTRACT_KINDS}


def _io_vector(probs: Mapping[str, float]) -> list[float]:
    unknown = sorted(set(probs) - set(IO_ABSTRACT_KINDS))
    missing = [k for k in IO_ABSTRACT_KINDS if k not in probs]
    if unknown or missing:
        raise ValueError(
            f"IO transition probabilities: unknown kinds {unknown}, missing kinds {missing}; give "
            f"one probability for each of {list(IO_ABSTRACT_KINDS)} (estimate_io_transitions)"
        )
    values = [float(probs[k]) for k in IO_ABSTRACT_KINDS]
    if any(not 0.0 <= v <= 1.0 for v in values):
        raise ValueError(
            f"IO transition probabilities must lie in [0, 1], got {dict(zip(IO_ABSTRACT_KINDS, values))}"
        )
    return values


def _parse_io_labels(labels: Sequence[str]) -> list[str | None]:
    """The type of each IO label (None for ``O``)."""
    out: list[str | None] = []
    for i, label in enumerate(labels):
        try:
            prefix, entity_type = parse_tag(label, i)
        except ValueError:
            prefix, entity_type = None, ""
        if prefix not in ("O", "I"):
            raise ValueError(
                f"label {label!r} at index {i} of {tuple(labels)} is not an IO tag; IO episode "
                "labels are ('O', 'I-t1', 'I-t2', ...)"
            )
        out.append(None if prefix == "O" else entity_type)
    return out


def project_io_transitions(
    probs: Mapping[str, float], labels: Sequence[str], temperature: float = 1.0
) -> tuple[Tensor, Tensor]:
    """StructShot's projection of the seven IO probabilities onto an episode's labels, with tau.

    ``probs``: :func:`estimate_io_transitions`' dict. ``labels``: IO labels in any order, e.g.
    ``("O", "I-PER", "I-LOC")`` (C = len(labels), N = the number of types). As the reference's
    ``project_target_transitions``, the probability of a move is::

        start -> O = s_o     start -> I-t = s_i / N
        O -> O     = o_o     O -> I-t     = o_i / N
        I-t -> O   = i_o     I-t -> I-t   = i_i      I-t -> I-u = x_y / (N - 1)   (u != t)

    (no end). Then tau (``temperature``) is applied to each row, start included, as a power:
    ``P'[r] = P[r]^tau / sum_j P[r, j]^tau``; tau = 1 leaves the rows as they are (they already
    sum to 1), a smaller tau flattens them, a larger one sharpens them. A zero of ``P'`` becomes
    :data:`IO_ZERO_FLOOR` (1e-6) before the log, as in the reference.

    With ``N = 1`` there is no other type: the reference divides by ``N - 1 = 0`` there; here the
    ``I->I(other)`` mass is simply dropped and the renormalisation of the I row spreads it over
    ``I->O`` and ``I->I(same)`` **(ours)**.

    Returns ``(transitions (C, C), start (C,))``: ``log P'`` of ``labels[i] -> labels[j]`` and of
    ``start -> labels[j]``, float32.
    """
    if not temperature > 0:
        raise ValueError(f"StructShot's tau must be > 0, got {temperature}")
    s_o, s_i, o_o, o_i, i_o, i_i, x_y = _io_vector(probs)
    types = _parse_io_labels(labels)
    n = len({t for t in types if t is not None})

    def to(target: str | None, from_o: float, from_i_any: float) -> float:
        return from_o if target is None else from_i_any / n

    rows = [[to(t, s_o, s_i) for t in types]]  # start
    for src in types:
        if src is None:
            rows.append([to(t, o_o, o_i) for t in types])
        else:
            rows.append([i_o if t is None else i_i if t == src else x_y / (n - 1) for t in types])
    p = torch.tensor(rows, dtype=torch.float64)  # (1 + C, C): start, then the labels
    powered = p.pow(temperature)
    total = powered.sum(1, keepdim=True)
    p = powered / torch.where(total > 0, total, torch.ones_like(total))
    log_p = torch.where(p > 0, p, torch.full_like(p, IO_ZERO_FLOOR)).log().float()
    return log_p[1:], log_p[0]


class StructShotIOTransitions(nn.Module):
    """StructShot as the reference code decodes it: IO transitions with tau as their power
    (nothing is learned).

    ``estimate``: the dict of :func:`estimate_io_transitions` (probabilities); ``temperature``:
    StructShot's tau, applied to the transition rows (:func:`project_io_transitions`).

    * ``forward(labels, device=None) -> (transitions (C, C), start (C,), None)``: the projection
      onto the IO label set (no end scores), on ``device`` (default CPU);
    * ``emissions(scores (..., C)) -> log softmax(scores)``: NNShot's logits as log class
      probabilities, with *no* temperature (the reference's ``log(softmax(scores))``);
    * ``decode(scores (Q, W', C), mask (Q, W'), labels) -> list[list[int]]``: both, then Viterbi.

    The estimate is kept as Python floats (the probabilities of the config, exactly).
    """

    def __init__(self, estimate: Mapping[str, float], temperature: float = 1.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"StructShot temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.estimate = dict(zip(IO_ABSTRACT_KINDS, _io_vector(estimate)))

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"

    def forward(
        self, labels: Sequence[str], device: torch.device | str | None = None
    ) -> tuple[Tensor, Tensor, None]:
        trans, start = project_io_transitions(self.estimate, tuple(labels), self.temperature)
        return trans.to(device), start.to(device), None

    def emissions(self, scores: Tensor) -> Tensor:
        dtype = torch.float32 if scores.dtype in (torch.float16, torch.bfloat16) else scores.dtype
        return torch.log_softmax(scores.to(dtype), dim=-1)

    @torch.no_grad()
    def decode(self, scores: Tensor, mask: Tensor | None, labels: Sequence[str]) -> list[list[int]]:
        return viterbi_decode(self.emissions(scores), mask, *self(labels, scores.device))[0]
