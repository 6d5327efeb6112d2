"""The encoders every model of mner reads, written once: MAF and the few-shot taggers share them.

A model of mner reads a tweet through a *text encoder* (:class:`~mner.encoders.text.TextEncoder`:
word states ``T``, the first sub-token of each word, casing mixed in) and, if it is multimodal,
through one or two *visual views* (:mod:`mner.processing.visual`): image regions from an
:class:`~mner.encoders.image.ImageEncoder` (``pixels``), caption tokens from a frozen
:class:`~mner.encoders.caption.CaptionEncoder` (``caption``), or both. :class:`EncoderStack` holds
them under the same attribute names in every model (``text_encoder``, ``image_encoder``,
``caption_encoder``: the names of the checkpoint's weights and assets) and gives every model the
same:

- construction (:meth:`EncoderStack.build_text_encoder`, :meth:`EncoderStack.build_visual_encoders`,
  two steps so that a model keeps the parameter order its seeds were trained with: MAF builds its
  text projection between them);
- processor side (:meth:`EncoderStack.visual_processor`: the views' inputs of a list of examples);
- visual tokens of a batch (:meth:`EncoderStack.visual_features`: the image encoder run on pixels
  where it is trained, cached frozen features otherwise; a tweet without the view has no token and
  a zero global vector) and their projection to the model's width
  (:meth:`EncoderStack.project_visual`);
- learning-rate groups (:meth:`EncoderStack.param_groups`: the pretrained encoders apart from the
  new layers);
- assets of a checkpoint (:meth:`EncoderStack._save_assets`, :meth:`EncoderStack._from_assets`,
  through :mod:`mner.models.assets`).

It is a mixin of :class:`~mner.models.base.MNERModel` subclasses, not a module of its own: the
encoders stay direct children of the model, so checkpoints keep their weight names.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from mner.encoders.cache import FeatureCache
from mner.encoders.caption import CaptionEncoder
from mner.encoders.features import VisualFeatures
from mner.encoders.image import ImageEncoder
from mner.encoders.text import TextEncoder
from mner.errors import MNERError
from mner.models.assets import load_encoders, save_encoder_assets
from mner.processing.visual import VisualInputs, VisualProcessor

if TYPE_CHECKING:  # a type only: the model layer does not import the data layer
    from mner.data.images import ImageStore

__all__ = ["EncoderStack"]


class EncoderStack:
    """The text encoder and the visual views' encoders of a model (see the module docstring).

    The model's config has ``text_encoder``, ``visual_view``, ``image_encoder``,
    ``caption_encoder`` and a ``views`` property (``()`` for a text-only model)."""

    text_encoder: TextEncoder
    image_encoder: ImageEncoder | None
    caption_encoder: CaptionEncoder | None
    views: tuple[str, ...]
    config: Any

    def build_text_encoder(self, text_encoder: TextEncoder | None = None) -> TextEncoder:
        """``self.text_encoder``: the one given (loading a checkpoint, sharing one) or a new one."""
        self.text_encoder = text_encoder or TextEncoder(self.config.text_encoder)
        return self.text_encoder

    def build_visual_encoders(self, image_encoder: ImageEncoder | None = None,
                              caption_encoder: CaptionEncoder | None = None, *, frozen_image: bool = False) -> None:
        """``self.views`` and the encoder of each: ``image_encoder`` for ``pixels``,
        ``caption_encoder`` for ``caption``, None where the model does not read the view.
        ``frozen_image``: the model reads cached image features only (the few-shot models), so a
        trainable image encoder is an error."""
        self.views = self.config.views
        self.image_encoder = None
        self.caption_encoder = None
        if "pixels" in self.views:
            self.image_encoder = image_encoder or ImageEncoder(self.config.image_encoder)
            if frozen_image and self.image_encoder.config.trainable:
                raise MNERError(f"{type(self).__name__} reads a frozen image encoder; set image_encoder.trainable: false")
        if "caption" in self.views:
            self.caption_encoder = caption_encoder or CaptionEncoder(self.config.caption_encoder)

    @property
    def visual_dims(self) -> dict[str, int]:
        """Width of each view's tokens (0 for a view the model does not read)."""
        return {"pixels": getattr(self.image_encoder, "output_dim", 0),
                "caption": getattr(self.caption_encoder, "output_dim", 0)}

    # ------------------------------------------------------------------------------ data
    def visual_processor(self, image_store: ImageStore | None = None, cache: FeatureCache | None = None,
                         seed: int = 0) -> VisualProcessor | None:
        """The processor of the model's visual views (None for a text-only model)."""
        if not self.views:
            return None
        return VisualProcessor(self.config.visual_view, self.image_encoder, self.caption_encoder,
                               image_store, cache, seed)

    # ------------------------------------------------------------------------------ model
    def visual_features(self, visual: VisualInputs | None) -> list[tuple[str, VisualFeatures]]:
        """The visual tokens of each view of the model, in the model's view order: the image
        encoder's output on the batch's pixels where the processor sent pixels (a trained image
        encoder), the processor's frozen features otherwise. A tweet without the view has no token
        (mask False) and a zero global vector."""
        if not self.views:
            return []
        if visual is None:
            raise MNERError("this model reads a visual view, but the batch has none (build batches with "
                            "model.processor())")
        out = []
        for view in self.views:
            if view == "pixels" and visual.pixel_values is not None:
                feats = self.image_encoder(visual.pixel_values)
            else:
                feats = visual.features[view]
            present = visual.present[view]
            out.append((view, VisualFeatures(feats.tokens, feats.mask & present[:, None],
                                             feats.pooled * present[:, None].to(feats.pooled.dtype))))
        return out

    @staticmethod
    def project_visual(features: list[tuple[str, VisualFeatures]], proj: nn.ModuleDict
                       ) -> tuple[torch.Tensor, torch.Tensor, tuple[tuple[str, int], ...]]:
        """The visual tokens of every view (:meth:`visual_features`), each projected by
        ``proj[view]`` to the model's width and concatenated: ``(tokens (B, R, d), mask (B, R),
        layout)``, ``layout`` the views in order with their number of tokens: ``((view, R_view), ...)``."""
        tokens, masks, layout = [], [], []
        for view, feats in features:
            tokens.append(proj[view](feats.tokens.to(proj[view].weight.dtype)))
            masks.append(feats.mask)
            layout.append((view, tokens[-1].shape[1]))
        return torch.cat(tokens, 1), torch.cat(masks, 1), tuple(layout)

    # ------------------------------------------------------------------------------ training
    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """``pretrained``: the text encoder's and the image encoder's weights (where trained);
        ``new``: every other trainable parameter. Frozen parameters are left out."""
        pretrained = {id(p) for p in self.text_encoder.model.parameters()}
        if self.image_encoder is not None:
            pretrained |= {id(p) for p in self.image_encoder.parameters()}
        groups: dict[str, list[nn.Parameter]] = {"pretrained": [], "new": []}
        for p in self.parameters():
            if p.requires_grad:
                groups["pretrained" if id(p) in pretrained else "new"].append(p)
        return groups

    # ------------------------------------------------------------------------------ saving
    def _save_assets(self, folder: Path) -> None:
        save_encoder_assets(self, folder)

    @classmethod
    def _from_assets(cls, config: Any, assets: Path, **parts):
        return cls(config, **load_encoders(config, assets), **parts)
