"""The configuration of MAF (Xu et al., WSDM 2023), with the defaults of the authors' code.

Loss (slides): ``L = alpha * L_ca + beta * L_cm + (1 - alpha - beta) * L_mner``. The authors'
code writes it ``L = lambda * L_crf + (1 - lambda) * (L_cm + L_ca)`` with lambda = 0.62: weights
0.62 : 0.38 : 0.38, which sum to 1.38. In the slides' normalised form that is
alpha = beta = 0.38 / 1.38 (about 0.275, leaving 0.449 for L_mner): the same gradients up to the
factor 1.38, which AdamW does not see. Those are the defaults here.

Ablations of the paper are switches: ``no_alignment`` (w/o CA), ``no_matching`` (w/o CM), both
(w/o CA + CM), and ``no_image``: the text-only CRF tagger through the same code path (text
encoder -> emissions -> CRF; no visual side at all), the "BERT-CRF" row of the paper.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mner.config import ConfigError
from mner.encoders.caption import CaptionEncoderConfig
from mner.encoders.image import ImageEncoderConfig
from mner.encoders.text import TextEncoderConfig
from mner.processing.visual import VIEWS, view_names

__all__ = ["CODE_AUX_WEIGHT", "MAFConfig"]

# lambda = 0.62 of the authors' code, as the slides' alpha = beta: (1 - 0.62) / (1 + (1 - 0.62))
CODE_AUX_WEIGHT = 0.38 / 1.38


@dataclass
class MAFConfig:
    """Every choice of a MAF model.

    Attributes:
        labels: the tag set, ``O`` first (set from the training data by ``mner train``).
        text_encoder: the (fine-tuned) text encoder; the paper uses BERT-base-cased.
        visual_view: ``pixels`` (image regions, the paper), ``caption`` (caption tokens: image
            content as text), or ``both``.
        image_encoder: the image encoder of the pixels view (frozen by default, as in the paper;
            the paper uses ResNet-152, the offline default is EfficientNet-Lite0).
        caption_encoder: the frozen text encoder of the caption view.
        hidden_dim: width ``d`` of the interaction; None = the text encoder's hidden size.
        interaction_heads, interaction_layers, ffn_dim: the cross-attention block (CI).
        dropout: dropout in CI, CM and before the emission layer.
        matching_pooling: how CM reads ``[T; C]``: ``mean`` (default, any length), ``max``, or
            ``flatten`` (the reference code's flatten over ``matching_max_len`` words).
        matching_score: ``classifier`` (the paper: a linear layer on ``pool([T; C])``) or
            ``similarity`` (a variant: the cosine of the tweet's and the view's pooled vectors,
            see :mod:`mner.models.maf.cross_modal_matching`).
        negative_fraction: share of a training batch turned into swapped negatives (2k / N);
            the authors' code uses 16 of 64 = 0.25.
        negative_swap: ``image`` (swap the visual tokens before CI, the paper's words) or
            ``interaction`` (swap the CI outputs, the authors' code).
        alignment_dim: width of the shared space of CA; None = ``hidden_dim``.
        temperature, direction_weight: tau and lambda_c of CA (0.179 and 0.7 in the code).
        alpha, beta: weights of L_ca and L_cm; L_mner gets ``1 - alpha - beta``. Default: the
            ratio of the authors' code (see the module docstring).
        no_alignment, no_matching, no_image: the ablations.
        caption_segment: a variant (issue 22): the text encoder also reads the tweet's caption as a
            second text segment of at most this many sub-tokens after the words (``[CLS] tweet
            [SEP] caption [SEP]``), as caption-based MNER models feed it to BERT; 0 (the paper):
            the caption reaches the model through the caption view only. Needs the caption view.
        crf_constraints: ``iob2`` forbids O -> I-x and B-x/I-x -> I-y in the CRF; None allows all.
    """

    labels: list[str] = field(default_factory=lambda: ["O"])
    text_encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    visual_view: str = "pixels"
    image_encoder: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    caption_encoder: CaptionEncoderConfig = field(default_factory=CaptionEncoderConfig)
    hidden_dim: int | None = None
    interaction_heads: int = 12
    interaction_layers: int = 1
    ffn_dim: int | None = None
    dropout: float = 0.1
    matching_pooling: str = "mean"
    matching_max_len: int = 128
    matching_score: str = "classifier"
    negative_fraction: float = 0.25
    negative_swap: str = "image"
    alignment_dim: int | None = None
    temperature: float = 0.179
    direction_weight: float = 0.7
    alpha: float = CODE_AUX_WEIGHT
    beta: float = CODE_AUX_WEIGHT
    no_alignment: bool = False
    no_matching: bool = False
    no_image: bool = False
    crf_constraints: str | None = "iob2"
    caption_segment: int = 0

    def __post_init__(self) -> None:
        if self.visual_view not in VIEWS:
            raise ConfigError(f"visual_view {self.visual_view!r}: choose one of {', '.join(VIEWS)}")
        if self.matching_score not in ("classifier", "similarity"):
            raise ConfigError(f"matching_score {self.matching_score!r}: choose classifier or similarity")
        if self.negative_swap not in ("image", "interaction"):
            raise ConfigError(f"negative_swap {self.negative_swap!r}: choose image or interaction")
        if not 0.0 <= self.negative_fraction < 1.0:
            raise ConfigError(f"negative_fraction must be in [0, 1), got {self.negative_fraction}")
        if self.alpha < 0 or self.beta < 0 or self.alpha + self.beta >= 1:
            raise ConfigError(f"alpha {self.alpha} and beta {self.beta} must be >= 0 with alpha + beta < 1")
        if self.caption_segment < 0:
            raise ConfigError(f"caption_segment must be >= 0 (sub-tokens of the caption; 0: off), got {self.caption_segment}")
        if self.caption_segment and "caption" not in self.views:
            raise ConfigError("caption_segment reads the tweet's caption: it needs the caption view "
                              "(visual_view: caption or both, without no_image)")
        if self.caption_segment and self.matching_score == "similarity":
            raise ConfigError("caption_segment with matching_score similarity: that CM pools the text encoder's "
                              "sub-tokens, which would hold the caption itself; choose one of the two variants")
        if isinstance(self.labels, tuple):
            self.labels = list(self.labels)

    @property
    def views(self) -> tuple[str, ...]:
        """The visual views the model reads: none for ``no_image``, else those of ``visual_view``."""
        return () if self.no_image else view_names(self.visual_view)

    @property
    def variant(self) -> str:
        """The paper's name of this configuration."""
        name = self._variant()
        return name + ", caption as a second segment" if self.caption_segment else name

    def _variant(self) -> str:
        if self.no_image:
            return "text-only CRF"
        if self.no_alignment and self.no_matching:
            return "MAF w/o CA+CM"
        if self.no_alignment:
            return "MAF w/o CA" + (", CM by similarity" if self.matching_score == "similarity" else "")
        if self.no_matching:
            return "MAF w/o CM"
        if self.matching_score == "similarity":
            return "MAF, CM by similarity"
        return "MAF"
