"""CLIP's joint space for words and image patches (MOUSING's "unified representation").

The poster builds its multimodal graph on CLIP: "we use the CLIP model to extract text word
representations and image patch representations", so that word and patch nodes are compared by
cosine similarity in one space. CLIP trains only its *pooled* vectors to meet there; the usual way to
bring token-level states into that space (as dense-prediction work on CLIP does) is to pass them
through the same heads: a word's state of the text tower (whose last layer norm is already applied)
through ``text_projection``, a patch's state of the vision tower through ``post_layernorm`` and
``visual_projection``. :class:`ClipSpace` holds those three heads, copied from a CLIP checkpoint, and
maps both kinds of token into the ``projection_dim``-wide joint space.

With the offline encoders (MiniLM words, EfficientNet regions or caption tokens) there is no joint
space, and MOUSING learns a projection for each side instead (``shared_space: learned``).
"""

from __future__ import annotations

import torch
from torch import nn

from mner.errors import MNERError

__all__ = ["ClipSpace"]


class ClipSpace(nn.Module):
    """CLIP's projection heads (see the module docstring).

    Args:
        clip_config: a transformers ``CLIPConfig`` (the full model's, with text and vision configs).
        trainable: fine-tune the heads (False keeps CLIP's space as it is).
    """

    def __init__(self, clip_config, trainable: bool = False):
        super().__init__()
        tc, vc = clip_config.text_config, clip_config.vision_config
        self.projection_dim = int(clip_config.projection_dim)
        self.text_hidden = int(tc.hidden_size)
        self.vision_hidden = int(vc.hidden_size)
        self.text_projection = nn.Linear(tc.hidden_size, self.projection_dim, bias=False)
        self.post_layernorm = nn.LayerNorm(vc.hidden_size, eps=vc.layer_norm_eps)
        self.visual_projection = nn.Linear(vc.hidden_size, self.projection_dim, bias=False)
        self.clip_config = clip_config
        for p in self.parameters():
            p.requires_grad = trainable

    @classmethod
    def from_pretrained(cls, name: str, trainable: bool = False) -> "ClipSpace":
        """The heads of the CLIP checkpoint ``name`` (a hub name or a folder)."""
        from transformers import AutoConfig, CLIPModel

        config = AutoConfig.from_pretrained(name)
        if getattr(config, "model_type", "") != "clip":
            raise MNERError(f"shared_space clip needs a full CLIP checkpoint; {name!r} is a "
                            f"{getattr(config, 'model_type', '?')!r} model (e.g. openai/clip-vit-base-patch32)")
        clip = CLIPModel.from_pretrained(name)
        space = cls(config, trainable)
        space.text_projection.load_state_dict(clip.text_projection.state_dict())
        space.visual_projection.load_state_dict(clip.visual_projection.state_dict())
        space.post_layernorm.load_state_dict(clip.vision_model.post_layernorm.state_dict())
        return space

    def words(self, states: torch.Tensor) -> torch.Tensor:
        """``(..., text_hidden)`` word states of CLIP's text tower -> the joint space."""
        return self.text_projection(states)

    def patches(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(..., vision_hidden)`` patch states of CLIP's vision tower -> the joint space."""
        return self.visual_projection(self.post_layernorm(tokens))
