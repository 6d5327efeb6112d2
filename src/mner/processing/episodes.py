"""Episodes -> tensors: the processor of the few-shot models (examples in, tensors out).

An :class:`~mner.data.episodes.Episode` holds a support set and a query set over its own entity
types. A batch of episodes becomes one :class:`EpisodeBatch`: the support tweets of every
episode side by side in one :class:`~mner.processing.tagging.TaggingBatch`, the query tweets in
another, and for each tweet the index of its episode. Gold tags are encoded with *their
episode's* labels in the episode's type order, so that class ``c`` plays the same role in every
episode of the batch. The episodes of a batch must therefore have the same number of types.

The labels depend on the model's tagging scheme (:data:`EPISODE_SCHEMES`, see
:func:`episode_labels`):

* ``bio``: ``("O", "B-t1", "I-t1", "B-t2", "I-t2", ...)``, ``C = 2N + 1`` classes: 0 = O,
  1 + 2j = B of type j, 2 + 2j = I of type j (MOUSING, ProtoMAF, and the baselines with
  ``scheme: bio``);
* ``io``: ``("O", "I-t1", "I-t2", ...)``, ``C = N + 1`` classes: 0 = O, 1 + j = type j. Few-NERD
  (Ding et al., ACL 2021) trains and decodes ProtoBERT, NNShot and StructShot this way. The gold
  tags of an episode file are IOB2; for an IO model ``B-t`` and ``I-t`` both become ``I-t``
  (``mner.tagging.convert_tags(tags, "iob2", "io")``), so two adjacent mentions of one type
  become one.

Words and the visual side (image regions, caption tokens) are built by the shared
:class:`~mner.processing.tagging.TaggingProcessor`, exactly as for the supervised models.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Sequence

import torch

from mner.data.episodes import Episode
from mner.data.example import Example
from mner.errors import MNERError
from mner.processing.tagging import IGNORE_INDEX, TaggingBatch, TaggingProcessor
from mner.tagging import convert_tags

__all__ = ["EPISODE_SCHEMES", "EpisodeBatch", "EpisodeProcessor", "check_scheme", "encode_episode_tags",
           "episode_labels"]

#: The tagging schemes of an episode's classes (module docstring).
EPISODE_SCHEMES = ("bio", "io")


def check_scheme(scheme: str) -> str:
    """``scheme`` if it is one of :data:`EPISODE_SCHEMES`, else MNERError."""
    if scheme not in EPISODE_SCHEMES:
        raise MNERError(f"tagging scheme {scheme!r}: choose one of {', '.join(EPISODE_SCHEMES)} (bio: O, B-t, I-t "
                        "per type; io: O, I-t per type, as Few-NERD)")
    return scheme


def episode_labels(types: Sequence[str], scheme: str = "bio") -> tuple[str, ...]:
    """The class names of an episode of ``types``: ``("O", "B-t1", "I-t1", ...)`` under ``bio``
    (:attr:`mner.data.episodes.Episode.labels`), ``("O", "I-t1", "I-t2", ...)`` under ``io``."""
    if check_scheme(scheme) == "io":
        return ("O",) + tuple(f"I-{t}" for t in types)
    out = ["O"]
    for t in types:
        out += [f"B-{t}", f"I-{t}"]
    return tuple(out)


@dataclass
class EpisodeBatch:
    """A batch of E episodes.

    Attributes:
        support: the support tweets of all episodes (tags always present: they define the classes).
        query: the query tweets of all episodes (tags None when decoding unlabelled input).
        support_episode: ``(S,)`` long, the episode of each support tweet.
        query_episode: ``(Q,)`` long, the episode of each query tweet.
        labels: per episode, its label tuple (all of the same length: ``C = 2N + 1`` under ``bio``,
            ``N + 1`` under ``io``).
        scheme: the tagging scheme of ``labels`` and of the encoded tags (:data:`EPISODE_SCHEMES`).
    """

    support: TaggingBatch
    query: TaggingBatch
    support_episode: torch.Tensor
    query_episode: torch.Tensor
    labels: list[tuple[str, ...]]
    scheme: str = "bio"

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.labels[0])

    @property
    def query_labels(self) -> list[tuple[str, ...]]:
        """The label tuple of each query tweet (each row of the model's emissions)."""
        return [self.labels[e] for e in self.query_episode.tolist()]

    def to(self, device: torch.device | str) -> "EpisodeBatch":
        return EpisodeBatch(self.support.to(device), self.query.to(device), self.support_episode.to(device),
                            self.query_episode.to(device), list(self.labels), self.scheme)

    def without_tags(self) -> "EpisodeBatch":
        """The batch without the *query's* gold tags (the support's define the classes and stay)."""
        return replace(self, query=self.query.without_tags())


def encode_episode_tags(examples: Sequence[Example], episode_of: Sequence[int], labels: Sequence[Sequence[str]],
                        shape: tuple[int, int], scheme: str = "bio") -> torch.Tensor | None:
    """``(B, W)`` tag ids of ``examples``, each with the labels of its episode; None if any has no tags.

    The examples carry IOB2 tags; under ``scheme="io"`` they are first converted to IO (``B-t`` and
    ``I-t`` both become ``I-t``) and looked up in IO ``labels`` (:func:`episode_labels`)."""
    if any(ex.tags is None for ex in examples):
        return None
    io = check_scheme(scheme) == "io"
    tags = torch.full(shape, IGNORE_INDEX, dtype=torch.long)
    for i, (ex, e) in enumerate(zip(examples, episode_of)):
        index = {t: c for c, t in enumerate(labels[e])}
        wanted = _io_tags(ex) if io else ex.tags
        unknown = next((j for j, t in enumerate(wanted) if t not in index), None)
        if unknown is not None:
            raise MNERError(f"{ex.where}: tag {ex.tags[unknown]!r} is not one of this episode's labels "
                            f"{list(labels[e])}; an episode's tweets may only carry its own types")
        tags[i, : len(ex.tags)] = torch.tensor([index[t] for t in wanted], dtype=torch.long)
    return tags


def _io_tags(ex: Example) -> list[str]:
    try:
        return convert_tags(ex.tags, "iob2", "io")
    except ValueError as err:
        raise MNERError(f"{ex.where}: {err}; episode tags must be IOB2") from None


class EpisodeProcessor:
    """``collate_fn`` of the few-shot models: a list of episodes -> :class:`EpisodeBatch`.

    Args:
        tagging: the shared word + visual processor (its own label set is not used).
        scheme: the classes of the model, ``bio`` or ``io`` (:func:`episode_labels`); the model
            that builds the processor (``EpisodicTagger.processor``) passes its own.
    """

    def __init__(self, tagging: TaggingProcessor, scheme: str = "bio"):
        self.tagging = tagging
        self.scheme = check_scheme(scheme)

    @property
    def views(self) -> tuple[str, ...]:
        return self.tagging.views

    def precompute(self, examples: Sequence[Example], progress: bool = True, desc: str = "visual features"):
        return self.tagging.precompute(examples, progress=progress, desc=desc)

    def __call__(self, episodes: Sequence[Episode], train: bool = False,
                 query_images: Sequence | None = None, support_images: Sequence | None = None) -> EpisodeBatch:
        if not episodes:
            raise MNERError("an empty batch of episodes")
        n_types = {len(ep.types) for ep in episodes}
        if len(n_types) > 1:
            raise MNERError(f"episodes of one batch must have the same number of types; got {sorted(n_types)} "
                            "(use a batch size of 1, or one N per episode file)")
        labels = [episode_labels(ep.types, self.scheme) for ep in episodes]
        support = [ex for ep in episodes for ex in ep.support]
        query = [ex for ep in episodes for ex in ep.query]
        s_ep = [e for e, ep in enumerate(episodes) for _ in ep.support]
        q_ep = [e for e, ep in enumerate(episodes) for _ in ep.query]
        for e, ep in enumerate(episodes):
            if not ep.support or not ep.query:
                raise MNERError(f"{ep.source or f'episode {e}'}: an episode needs a support and a query set")
        s_batch = self.tagging(support, train=train, images=support_images)
        q_batch = self.tagging(query, train=train, images=query_images)
        s_tags = encode_episode_tags(support, s_ep, labels, tuple(s_batch.words.word_mask.shape), self.scheme)
        if s_tags is None:
            missing = next(ex for ex in support if ex.tags is None)
            raise MNERError(f"{missing.where}: a support tweet without tags; the support set must be annotated")
        s_batch = replace(s_batch, tags=s_tags)
        q_batch = replace(q_batch, tags=encode_episode_tags(query, q_ep, labels,
                                                             tuple(q_batch.words.word_mask.shape), self.scheme))
        return EpisodeBatch(s_batch, q_batch, torch.tensor(s_ep, dtype=torch.long),
                            torch.tensor(q_ep, dtype=torch.long), labels, self.scheme)

    def collate(self, train: bool = False):
        """A picklable ``collate_fn`` for a DataLoader of episodes."""
        return functools.partial(self, train=train)
