"""The frozen-backbone behaviour shared by the text, image and caption encoders."""

from __future__ import annotations

__all__ = ["FrozenBackboneMixin"]


class FrozenBackboneMixin:
    """For an ``nn.Module`` encoder whose pretrained part (the attribute named ``backbone_attr``)
    is frozen unless ``self.config.trainable``.

    :meth:`freeze_backbone` (called at the end of ``__init__``) turns the part's gradients off and
    puts it in eval mode; :meth:`train` keeps it in eval mode, so dropout stays off and batch-norm
    statistics never move. List the mixin before ``nn.Module`` among the bases.
    """

    backbone_attr = "model"

    def freeze_backbone(self) -> None:
        if not self.config.trainable:
            backbone = getattr(self, self.backbone_attr)
            backbone.requires_grad_(False)
            backbone.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        if not self.config.trainable:
            getattr(self, self.backbone_attr).eval()
        return self
