"""What every few-shot (episodic) tagger of mner shares.

A few-shot tagger has no label set of its own: each :class:`~mner.processing.episodes.EpisodeBatch`
brings its episodes' labels (``O, B-t1, I-t1, B-t2, I-t2, ...``, or ``O, I-t1, I-t2, ...`` for a
model that tags IO as Few-NERD: :attr:`EpisodicTagger.scheme`), and the CRF transitions (if any)
are built for those labels at every forward pass. Decoded tags are IOB2 either way
(:meth:`~mner.models.base.TaggerOutput.path_tags`). ``forward(batch)`` returns a
:class:`~mner.models.base.TaggerOutput` whose rows are the *query* tweets, with the episode's
labels per row and the transitions Viterbi should use; the shared ``decode`` of
:class:`~mner.models.base.MNERModel` does the rest.

``forward`` is two steps, so that evaluation can encode every distinct tweet once however many
episodes it appears in: ``encode(part)`` maps one side of the batch (support or query tweets) to
per-word representations that depend on that tweet alone (a tuple of ``(B, W, ...)`` tensors), and
``head(batch, support, query)`` builds the episode's classes from the support representations and
scores the query (prototypes, nearest neighbours, CRF).

:class:`EpisodicTagger` reads a tweet through the encoders every model of the project shares
(:class:`~mner.models.encoder_stack.EncoderStack`, as MAF does: a text encoder fine-tuned on the
source episodes and, for the multimodal ones, a frozen visual view: image regions, caption tokens
or both), wraps their processor in the episode processor, and decodes with the episode's labels.
Subclasses implement ``encode`` and ``head``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from mner.crf import crf_marginals, viterbi_decode
from mner.encoders.cache import FeatureCache
from mner.encoders.caption import CaptionEncoder, CaptionEncoderConfig
from mner.encoders.image import ImageEncoder, ImageEncoderConfig
from mner.encoders.text import TextEncoder, TextEncoderConfig
from mner.errors import MNERError
from mner.models.base import Decoded, MNERModel, TaggerOutput
from mner.models.encoder_stack import EncoderStack
from mner.processing.episodes import EpisodeBatch, EpisodeProcessor
from mner.processing.tagging import TaggingBatch, TaggingProcessor
from mner.processing.visual import VIEWS, VisualInputs, view_names
from mner.tagging import get_spans, normalize_scheme

if TYPE_CHECKING:  # a type only: the model layer does not import the data layer
    from mner.data.images import ImageStore

__all__ = ["EpisodicConfig", "EpisodicTagger"]


@dataclass
class EpisodicConfig:
    """The encoder side shared by every few-shot model.

    Attributes:
        text_encoder: the word encoder (fine-tuned on the source episodes by default).
        visual_view: ``pixels`` (image regions), ``caption`` (caption tokens) or ``both``; only read
            by the multimodal models.
        image_encoder, caption_encoder: the frozen encoders of the visual views.
        no_image: text only (the baselines; MOUSING's "w/o Image" ablation).
        dropout: on the word features before the metric space.
        o_bias: decoding only **(ours)**: added to the ``O`` column of the query emissions before
            decoding (and the confidences), never to the training loss. A prototype or
            nearest-neighbour decoder trained on source types over-predicts entities of unseen
            types; a positive bias trades recall for precision. Chosen on the dev episodes like
            StructShot's tau (``bench/fewshot_benchmark.py``); 0 (default) = off.
        min_confidence: decoding only **(ours)**: a span-level confidence threshold ``t``. After
            Viterbi, a predicted entity whose confidence is below ``t`` is dropped (its words
            become ``O``); the confidence of an entity is what ``mner fewshot predict`` reports, the
            smallest CRF marginal ``min_{w in span} p(y_w = path_w | x)`` of its words' tags
            (:func:`mner.crf.crf_marginals`, over the same emissions and transitions Viterbi
            used, after ``o_bias``). Higher ``t`` never adds an entity. In [0, 1); 0 (default) =
            off. Studied on dev episodes in ``docs/results/mousing-precision.md``.
    """

    text_encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    visual_view: str = "caption"
    image_encoder: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    caption_encoder: CaptionEncoderConfig = field(default_factory=CaptionEncoderConfig)
    no_image: bool = True
    dropout: float = 0.1
    o_bias: float = 0.0
    min_confidence: float = 0.0

    def __post_init__(self) -> None:
        if self.visual_view not in VIEWS:
            raise MNERError(f"visual_view {self.visual_view!r}: choose one of {', '.join(VIEWS)}")
        if not 0.0 <= self.dropout < 1.0:
            raise MNERError(f"dropout must be in [0, 1), got {self.dropout}")
        if not math.isfinite(self.o_bias):
            raise MNERError(f"o_bias must be a finite number, got {self.o_bias}")
        if not 0.0 <= self.min_confidence < 1.0:
            raise MNERError(f"min_confidence must be in [0, 1) (a CRF marginal; 0 = off), got {self.min_confidence}")

    @property
    def views(self) -> tuple[str, ...]:
        return () if self.no_image else view_names(self.visual_view)


class EpisodicTagger(EncoderStack, MNERModel):
    """Base class of the few-shot taggers (see the module docstring)."""

    config_class = EpisodicConfig
    #: The classes of an episode, ``bio`` (O, B-t, I-t per type) or ``io`` (O, I-t per type); the
    #: processor encodes the episodes with it (:mod:`mner.processing.episodes`). A model that
    #: reads it from its config sets it in ``__init__``.
    scheme: str = "bio"

    def __init__(self, config: EpisodicConfig, *, text_encoder: TextEncoder | None = None,
                 image_encoder: ImageEncoder | None = None, caption_encoder: CaptionEncoder | None = None):
        super().__init__(config)
        self.build_text_encoder(text_encoder)
        self.build_visual_encoders(image_encoder, caption_encoder, frozen_image=True)
        self.dropout = nn.Dropout(config.dropout)

    # ------------------------------------------------------------------------------ data
    def processor(self, image_store: ImageStore | None = None, cache: FeatureCache | None = None,
                  seed: int = 0) -> EpisodeProcessor:
        return EpisodeProcessor(TaggingProcessor(self.text_encoder.tokenizer, None,
                                                 self.visual_processor(image_store, cache, seed)), self.scheme)

    # ------------------------------------------------------------------------------ model
    def forward(self, batch: EpisodeBatch) -> TaggerOutput:
        train = self.training and batch.query.tags is not None
        return self.head(batch, self.encode(batch.support, train), self.encode(batch.query, train))

    def encode(self, part: TaggingBatch, train: bool = False) -> tuple[torch.Tensor | None, ...]:  # pragma: no cover
        """Per-word representations of one side of the batch, each ``(B, W, ...)``; a tweet's rows
        depend on that tweet alone. ``train``: a training step with gold tags."""
        raise NotImplementedError

    def head(self, batch: EpisodeBatch, support: tuple, query: tuple) -> TaggerOutput:  # pragma: no cover
        """The episode step: classes from the support representations, the query scored."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------ pieces
    def words(self, part: TaggingBatch):
        """Word features of one side of the batch: ``(states (B, W, H), mask (B, W))``."""
        feats = self.text_encoder(part.words)
        return feats.states, feats.mask

    def visual_nodes(self, visual: VisualInputs | None, proj: nn.ModuleDict) -> tuple[torch.Tensor, torch.Tensor]:
        """The frozen visual tokens of every view, each projected by ``proj[view]`` to the model's
        width and concatenated: ``(tokens (B, R, d), mask (B, R))``. A tweet without that view has
        no token."""
        tokens, mask, _ = self.project_visual(self.visual_features(visual), proj)
        return tokens, mask

    def output(self, batch: EpisodeBatch, loss: torch.Tensor | None, emissions: torch.Tensor,
               losses: dict[str, torch.Tensor], transitions: tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]
               | None = None) -> TaggerOutput:
        """The query rows' output; ``transitions`` None: zero transitions (per-word argmax). The
        labels keep the batch's scheme (``io`` labels decode to IOB2 tags in
        :meth:`~mner.models.base.TaggerOutput.path_tags`)."""
        if batch.scheme != self.scheme:
            raise MNERError(f"a {batch.scheme!r} episode batch for a model that tags {self.scheme!r}; build the "
                            "batches with the model's own processor (model.processor())")
        mask = batch.query.words.word_mask
        c = emissions.shape[-1]
        if self.config.o_bias:                         # class 0 is O in every episode's label tuple
            emissions = torch.cat([emissions[..., :1] + self.config.o_bias, emissions[..., 1:]], -1)
        if transitions is None:
            transitions = (emissions.new_zeros(c, c), None, None)
        trans, start, end = transitions
        return TaggerOutput(loss, emissions, mask, {k: float(v.detach()) for k, v in losses.items()},
                            transitions=trans, start=start, end=end, labels=batch.query_labels,
                            scheme=normalize_scheme(batch.scheme))

    @torch.no_grad()
    def decode_output(self, out: TaggerOutput, confidences: bool = False) -> Decoded:
        """Viterbi (:meth:`MNERModel.decode_output`), then the span-level threshold
        ``min_confidence`` (see :class:`EpisodicConfig`): each entity of the Viterbi path whose
        smallest CRF marginal is below it becomes ``O`` (a dropped word's confidence is then the
        marginal of ``O`` there, class 0 of every episode). Without a threshold, exactly the shared
        decoding."""
        t = self.config.min_confidence
        if not t:
            return super().decode_output(out, confidences)
        em = out.emissions.float()
        trans = out.transitions if out.transitions is not None else em.new_zeros(em.shape[-1], em.shape[-1])
        paths = viterbi_decode(em, out.mask, trans, out.start, out.end)[0]
        marg = crf_marginals(em, out.mask, trans, out.start, out.end)
        tags, conf = [], []
        for i, path in enumerate(paths):
            row = list(out.path_tags(i, path))
            c = [float(marg[i, j, k]) for j, k in enumerate(path)]
            for span in get_spans(row, mode="conlleval"):
                if min(c[span.start:span.end]) < t:
                    for j in range(span.start, span.end):
                        row[j], c[j] = "O", float(marg[i, j, 0])
            tags.append(row)
            conf.append(c)
        return Decoded(tags, conf if confidences else None)
