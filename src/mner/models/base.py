"""What every tagging model of mner shares: outputs, decoding, saving and loading.

A tagging model maps a :class:`~mner.models.batch.TaggingBatch` to CRF emissions and a loss
(``forward``), and emissions to tags (``decode``). The trainer, the evaluator and the pipeline
use only this interface, never a model's internals.

Saving: ``save_pretrained(folder)`` writes ``config.json`` + ``model.safetensors`` + the assets
that rebuild the pretrained encoders offline (see :mod:`mner.models.checkpoint`);
``TaggingModel.from_pretrained(folder)`` (or :func:`mner.models.load_model`) reads it back
with no network.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from mner.config import from_dict, to_dict
from mner.crf import CRF
from mner.models.batch import TaggingBatch, TaggingCollator
from mner.models.checkpoint import (
    WEIGHTS_NAME,
    CheckpointError,
    atomic_folder,
    load_state_dict,
    read_config,
    resolve_model_dir,
    save_state_dict,
    write_config,
)
from mner.tagging.labels import LabelSet

__all__ = ["TaggerOutput", "Decoded", "TaggingModel"]


@dataclass
class TaggerOutput:
    """``loss``: the total training loss (None without gold tags); ``emissions`` (B, W, C);
    ``mask`` (B, W) real words; ``losses``: the named parts of the loss (floats, for logging)."""

    loss: torch.Tensor | None
    emissions: torch.Tensor
    mask: torch.Tensor
    losses: dict[str, float] = field(default_factory=dict)


@dataclass
class Decoded:
    """Decoded tags per tweet, and per word the marginal probability of its tag (or None)."""

    tags: list[list[str]]
    confidences: list[list[float]] | None = None


class TaggingModel(nn.Module):
    """Base class: subclasses set ``model_type`` and ``config_class`` and implement
    ``forward``, ``collator``, ``_save_assets`` and ``_from_assets``."""

    model_type: ClassVar[str] = ""
    config_class: ClassVar[type] = object
    crf: CRF

    def __init__(self, config: Any):
        super().__init__()
        self.config = config
        self.label_set = LabelSet(tuple(config.labels))

    # ---------------------------------------------------------------------------- interface
    def forward(self, batch: TaggingBatch) -> TaggerOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def collator(self, train: bool = False, **options: Any) -> TaggingCollator:  # pragma: no cover
        raise NotImplementedError

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """``{"pretrained": [...], "new": [...]}``: the trainer may give them different learning
        rates. Frozen parameters are left out."""
        return {"new": [p for p in self.parameters() if p.requires_grad]}

    @torch.no_grad()
    def decode(self, batch: TaggingBatch, confidences: bool = False) -> Decoded:
        """Viterbi tags per tweet (and each word's marginal probability of its tag).

        The batch is moved to the model's device first (a plain DataLoader gives CPU batches).
        Gold tags are left out: in eval mode they would only add a loss nobody reads."""
        batch = dataclasses.replace(batch, tags=None).to(next(self.parameters()).device)
        was_training = self.training
        self.eval()
        try:
            out = self(batch)
        finally:
            self.train(was_training)
        em = out.emissions.float()
        paths = self.crf.decode(em, out.mask)
        tags = [self.label_set.decode(p) for p in paths]
        conf = None
        if confidences:
            marg = self.crf.marginals(em, out.mask)
            conf = [[float(marg[i, j, t]) for j, t in enumerate(p)] for i, p in enumerate(paths)]
        return Decoded(tags, conf)

    def crf_loss(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``L_mner``: mean negative log-likelihood per tweet. The CRF never reads the tags at
        padded positions (:data:`~mner.models.batch.IGNORE_INDEX` there is fine); an ignored tag
        at a real word is an error, not a silent tag 0."""
        return self.crf(emissions.float(), tags, mask, reduction="mean")

    # ---------------------------------------------------------------------------- saving
    def save_pretrained(self, folder: str | Path, extra: dict[str, Any] | None = None) -> Path:
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        with atomic_folder(folder) as tmp:
            write_config(tmp, self.model_type, to_dict(self.config), **(extra or {}))
            save_state_dict(self.state_dict(), tmp / WEIGHTS_NAME)
            self._save_assets(tmp / "assets")
        return folder

    def _save_assets(self, folder: Path) -> None:  # pragma: no cover - per model
        raise NotImplementedError

    @classmethod
    def _from_assets(cls, config: Any, assets: Path) -> "TaggingModel":  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def from_pretrained(cls, path: str | Path, map_location: str | torch.device = "cpu") -> "TaggingModel":
        """Load a model folder (or a training run's ``best/``) written by :meth:`save_pretrained`."""
        folder = resolve_model_dir(path)
        data = read_config(folder)
        if cls.model_type and data["model_type"] != cls.model_type:
            raise CheckpointError(f"{folder}: a {data['model_type']!r} model, not {cls.model_type!r}")
        config = from_dict(cls.config_class, data["config"], "config")
        model = cls._from_assets(config, folder / "assets")
        state = load_state_dict(folder / WEIGHTS_NAME)
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as err:  # shapes that do not fit
            first = str(err).split("\n\t")[1] if "\n\t" in str(err) else str(err)
            raise CheckpointError(f"{folder / WEIGHTS_NAME}: weights do not fit the config: {first.strip()}") from None
        if missing or unexpected:
            raise CheckpointError(
                f"{folder / WEIGHTS_NAME}: weights do not fit the config "
                f"(missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''})"
            )
        model.to(map_location)
        model.eval()
        return model

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)
