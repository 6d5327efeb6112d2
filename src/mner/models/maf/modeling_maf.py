"""MAF: a general Matching and Alignment Framework for multimodal NER (Xu et al., WSDM 2023).

``forward`` reads top to bottom as the paper's figure:

1. text encoder -> word states ``T`` (first sub-token per word, casing features mixed in by a
   linear layer since the offline encoders are uncased) and ``t_0``;
2. visual view -> visual tokens ``V`` projected to width ``d`` (one projection per component
   view) and a global vector;
3. training only: cross-modal matching draws negatives (2k swapped pairs);
4. cross-modal interaction ``C = CI(T, V)`` (:mod:`.cross_modal_interaction`);
5. cross-modal matching ``y^_m``, ``M = y^_m * C``, ``L_cm`` (:mod:`.cross_modal_matching`);
6. fusion gate ``H = [T; g * M]`` (:mod:`.fusion_gate`), emissions ``Linear(H)``;
7. CRF negative log-likelihood ``L_mner`` over the batch *with* its negatives
   (:class:`~mner.models.tagger.CRFTagger`: the label set, the CRF, the decoding inputs);
8. cross-modal alignment ``L_ca`` on the matched pairs (:mod:`.cross_modal_alignment`);
9. ``L = alpha L_ca + beta L_cm + (1 - alpha - beta) L_mner``.

With ``no_image`` steps 2-5 and 8 vanish: ``H = T`` and the model is the text-only CRF tagger.
The ``caption_segment`` variant changes step 1 only: the processor appends the caption as a second
text segment, which the text encoder reads beside the words.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from mner.encoders.cache import FeatureCache
from mner.encoders.caption import CaptionEncoder
from mner.encoders.image import ImageEncoder
from mner.encoders.text import TextEncoder
from mner.models.base import TaggerOutput
from mner.models.encoder_stack import EncoderStack
from mner.models.maf.config import MAFConfig
from mner.models.maf.cross_modal_alignment import AlignmentProjection, ContrastiveAlignmentLoss
from mner.models.maf.cross_modal_interaction import CrossModalInteraction
from mner.models.maf.cross_modal_matching import (CrossModalMatching, MatchingLoss, SimilarityMatching,
                                                  sample_negatives)
from mner.models.maf.fusion_gate import FusionGate
from mner.models.tagger import CRFTagger
from mner.processing.tagging import TaggingBatch, TaggingProcessor
from mner.processing.visual import VisualInputs

if TYPE_CHECKING:  # the processor's image store: the model itself never reads files
    from mner.data.images import ImageStore

__all__ = ["MAFModel"]


class MAFModel(EncoderStack, CRFTagger):
    model_type = "maf"
    config_class = MAFConfig

    @property
    def outputs_match(self) -> bool:
        """The output carries ``y^_m`` (a model with a visual view and its matching module)."""
        return bool(self.views) and not self.config.no_matching

    @property
    def outputs_attentions(self) -> bool:
        """``forward(batch, output_attentions=True)`` gives the interaction's attention (a visual view)."""
        return bool(self.views)

    def __init__(self, config: MAFConfig, *, text_encoder: TextEncoder | None = None,
                 image_encoder: ImageEncoder | None = None, caption_encoder: CaptionEncoder | None = None):
        super().__init__(config)
        self.build_text_encoder(text_encoder)
        hidden = self.text_encoder.hidden_size
        d = config.hidden_dim or hidden
        self.text_proj = nn.Linear(self.text_encoder.output_dim, d)   # before the visual encoders: a seed's order
        self.build_visual_encoders(image_encoder, caption_encoder)
        self.dropout = nn.Dropout(config.dropout)
        num_labels = len(self.label_set)
        if self.views:
            dims = self.visual_dims
            self.visual_proj = nn.ModuleDict({v: nn.Linear(dims[v], d) for v in self.views})
            self.interaction = CrossModalInteraction(d, config.interaction_heads, config.ffn_dim,
                                                     config.dropout, config.interaction_layers)
            if not config.no_matching and config.matching_score == "similarity":  # a variant
                self.matching = SimilarityMatching(self.text_encoder.hidden_size, sum(dims[v] for v in self.views))
            elif not config.no_matching:
                self.matching = CrossModalMatching(d, config.matching_pooling, config.matching_max_len,
                                                   config.dropout)
            if not config.no_matching:
                self.matching_loss = MatchingLoss()
            if not config.no_alignment:
                p = config.alignment_dim or d
                self.align_text = AlignmentProjection(hidden, p)
                self.align_visual = AlignmentProjection(sum(dims[v] for v in self.views), p)
                self.alignment_loss = ContrastiveAlignmentLoss(config.temperature, config.direction_weight)
            self.fusion = FusionGate(d)
            self.emissions = nn.Linear(2 * d, num_labels)
        else:
            self.emissions = nn.Linear(d, num_labels)
        self.crf = self.build_crf(config.crf_constraints)  # last: the parameter order a seed always gave

    # ------------------------------------------------------------------------------ data
    def processor(self, image_store: ImageStore | None = None, cache: FeatureCache | None = None,
                  seed: int = 0) -> TaggingProcessor:
        """Words, gold tags (this model's label set) and the visual view(s) of a list of examples."""
        return TaggingProcessor(self.text_encoder.tokenizer, self.label_set,
                                self.visual_processor(image_store, cache, seed), self.config.caption_segment)

    # ------------------------------------------------------------------------------ model
    def _visual(self, visual: VisualInputs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, tuple]:
        """Projected visual tokens (B, R, d), their mask, the raw global vector, presence (B,) and
        the layout of the tokens, view after view: ``((view, R_view), ...)``."""
        features = self.visual_features(visual)
        tokens, mask, layout = self.project_visual(features, self.visual_proj)
        pooled = torch.cat([feats.pooled.to(self.text_proj.weight.dtype) for _, feats in features], -1)
        present = torch.stack([visual.present[v] for v in self.views], 0).any(0)
        return tokens, mask, pooled, present, layout

    def forward(self, batch: TaggingBatch, output_attentions: bool = False) -> TaggerOutput:
        """The output of the module docstring's steps; it carries ``y^_m`` (match probability) and,
        with ``output_attentions``, the interaction's attention of each word over the visual tokens."""
        cfg = self.config
        words = self.text_encoder(batch.words)
        mask = words.mask
        text = self.text_proj(words.states)                                            # T (B, W, d)
        losses: dict[str, torch.Tensor] = {}
        tags = batch.tags
        match = attentions = None
        layout: tuple = ()
        if not self.views:
            emissions = self.emissions(self.dropout(text))
        else:
            v_tokens, v_mask, v_global, present, views = self._visual(batch.visual)   # V, global
            n = text.shape[0]
            train_negatives = self.training and not cfg.no_matching and tags is not None
            if train_negatives:
                perm, match_labels = sample_negatives(n, cfg.negative_fraction, device=text.device)
                # a pair is a match only where both sides have visual content: a tweet without
                # image (or caption) teaches the gate to close, as for a swapped image
                match_labels = match_labels * (present & present[perm]).to(match_labels.dtype)
            else:
                perm = torch.arange(n, device=text.device)
                match_labels = torch.ones(n, device=text.device)
            swap_image = cfg.negative_swap == "image"
            c = self.interaction(text, v_tokens[perm] if swap_image else v_tokens,     # C = CI(T, V_swapped)
                                 v_mask[perm] if swap_image else v_mask, output_attentions)
            if output_attentions:  # (int() of a size only here: it would fix the axis of an exported graph)
                c, attentions = c
                layout = tuple((v, int(n)) for v, n in views)
            if not swap_image:
                c = c[perm]                                                            # swapped C (code)
                attentions = attentions[perm] if attentions is not None else None
            if cfg.no_matching:
                m = c                                                                  # M = C
            else:
                if cfg.matching_score == "similarity":                                 # variant
                    logits = self.matching(words.tokens, batch.words.attention_mask.to(text.device),
                                           v_global[perm], present[perm])
                else:
                    logits = self.matching(text, c, mask)                              # y^_m
                match = torch.sigmoid(logits.detach().float())
                m = torch.sigmoid(logits)[:, None, None].to(c.dtype) * c               # M = y^_m * C
                if train_negatives:
                    losses["cm"] = self.matching_loss(logits.float(), match_labels)
            h = self.fusion(text, m)                                                   # H = [T; g * M]
            emissions = self.emissions(self.dropout(h))
            if self.training and not cfg.no_alignment and tags is not None:
                z_t = self.align_text(torch.tanh(words.sentence))                     # T_s = tanh(t_0)
                z_v = self.align_visual(v_global)
                losses["ca"] = self.alignment_loss(z_t.float(), z_v.float(), present)
        loss = None
        if tags is not None:
            losses["mner"] = self.crf_loss(emissions, tags, mask)
            if self.views and self.training:
                # L = alpha L_ca + beta L_cm + (1 - alpha - beta) L_mner; an ablated term is
                # dropped, the weights of the others stay (the code's lambda form)
                loss = (1.0 - cfg.alpha - cfg.beta) * losses["mner"]
                if "ca" in losses:
                    loss = loss + cfg.alpha * losses["ca"]
                if "cm" in losses:
                    loss = loss + cfg.beta * losses["cm"]
            else:
                loss = losses["mner"]
        out = self.output(loss, emissions, mask, losses)
        out.match_probability, out.attentions, out.visual_layout = match, attentions, layout
        return out
