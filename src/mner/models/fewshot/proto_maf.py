"""ProtoMAF: a multimodal prototype baseline (prototypes over MAF-style fused word features).

The poster compares MOUSING with multimodal NER models turned into prototype learners
(ProtoUMGF, ProtoHVPNet). This is the project's such baseline, built from MAF's own modules so
that MOUSING's graph is the only difference that remains: the words ``T`` (fine-tuned text
encoder, projected to width d) attend to the visual tokens ``V`` (caption tokens and/or image
regions, frozen, projected to d) with MAF's cross-modal interaction ``C = CI(T, V)``
(:mod:`mner.models.maf.cross_modal_interaction`), the fusion gate ``H = [T; g * C]``
(:mod:`mner.models.maf.fusion_gate`) mixes them, a linear map brings ``H`` back to d, and the
decoder is MOUSING's prototype-based CRF (:mod:`mner.models.mousing.prototype_crf`): class
prototypes of the support words, emissions ``-d(h, c_m)``, label-agnostic transitions learned on
the source episodes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mner.errors import MNERError
from mner.models.base import TaggerOutput
from mner.models.episodic import EpisodicConfig, EpisodicTagger
from mner.models.maf.cross_modal_interaction import CrossModalInteraction
from mner.models.maf.fusion_gate import FusionGate
from mner.models.mousing.prototype_crf import PrototypeCRF
from mner.processing.episodes import EpisodeBatch
from mner.processing.tagging import TaggingBatch

__all__ = ["ProtoMAFConfig", "ProtoMAFModel"]


@dataclass
class ProtoMAFConfig(EpisodicConfig):
    """Attributes:
        hidden_dim: the shared width d.
        interaction_heads, interaction_layers: MAF's cross-attention block.
        learn_transitions: learn the abstract transitions (else zeros: prototype arg max with the
            IOB2 constraints).
    """

    no_image: bool = False
    hidden_dim: int = 256
    interaction_heads: int = 4
    interaction_layers: int = 1
    learn_transitions: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hidden_dim < 1 or self.hidden_dim % self.interaction_heads:
            raise MNERError(f"hidden_dim ({self.hidden_dim}) must be >= 1 and divisible by interaction_heads "
                            f"({self.interaction_heads})")


class ProtoMAFModel(EpisodicTagger):
    model_type = "proto-maf"
    config_class = ProtoMAFConfig

    def __init__(self, config: ProtoMAFConfig, **encoders):
        super().__init__(config, **encoders)
        d = config.hidden_dim
        self.text_proj = nn.Linear(self.text_encoder.output_dim, d)
        if self.views:
            self.visual_proj = nn.ModuleDict({v: nn.Linear(self.visual_dims[v], d) for v in self.views})
            self.interaction = CrossModalInteraction(d, config.interaction_heads, None, config.dropout,
                                                     config.interaction_layers)
            self.fusion = FusionGate(d)
            self.fused_proj = nn.Linear(2 * d, d)
        self.decoder = PrototypeCRF(learn_transitions=config.learn_transitions)

    def embed(self, part: TaggingBatch) -> torch.Tensor:
        states, _ = self.words(part)
        text = self.text_proj(self.dropout(states))                                   # T
        if not self.views:
            return text
        v_tokens, v_mask = self.visual_nodes(part.visual, self.visual_proj)            # V
        c = self.interaction(text, v_tokens, v_mask)                                   # C = CI(T, V)
        return self.fused_proj(self.dropout(self.fusion(text, c)))                     # H = [T; g * C]

    def encode(self, part: TaggingBatch, train: bool = False) -> tuple[torch.Tensor]:
        return (self.embed(part),)

    def head(self, batch: EpisodeBatch, support: tuple, query: tuple) -> TaggerOutput:
        em = self.decoder.emissions(support[0], batch.support.tags, batch.support_episode, query[0],
                                    batch.query_episode, batch.num_classes)
        losses = {}
        loss = None
        if batch.query.tags is not None:
            loss = losses["crf"] = self.decoder.loss(em, batch.query.tags, batch.query.words.word_mask, batch.labels[0])
        return self.output(batch, loss, em, losses, transitions=self.decoder.transitions(batch.labels[0]))
