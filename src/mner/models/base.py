"""What every model of mner shares: outputs, decoding, saving and loading.

A model maps a batch of tensors (built by its :meth:`MNERModel.processor`) to CRF emissions, the
transitions Viterbi should use, the names of the emission columns and a loss (``forward``); the
shared :meth:`MNERModel.decode` turns that into tags. The trainer, the evaluator and the pipeline
use only this interface, never a model's internals.

Two kinds of model fit it:

* a fixed-label CRF tagger (:class:`~mner.models.tagger.CRFTagger`, e.g. MAF) has one label set
  and a learned CRF; every row of its output carries the same labels and transitions;
* an episodic (few-shot) tagger gets its labels, and its CRF transitions if any, from each episode
  (:mod:`mner.models.episodic`).

Saving: ``save_pretrained(folder)`` writes ``config.json`` + ``model.safetensors`` + the assets
that rebuild the pretrained encoders offline (see :mod:`mner.models.checkpoint`);
``MNERModel.from_pretrained(folder)`` (or :func:`mner.models.load_model`) reads it back with no
network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence

import torch
from torch import nn

from mner.config import from_dict, to_dict
from mner.crf import crf_marginals, viterbi_decode
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
from mner.tagging import convert_tags

__all__ = ["TaggerOutput", "Decoded", "MNERModel", "decode_output", "extras"]


@dataclass
class TaggerOutput:
    """What a model's ``forward`` returns.

    Attributes:
        loss: the total training loss (None without gold tags).
        emissions: ``(B, W, C)`` per-word tag scores.
        mask: ``(B, W)`` bool, real words.
        losses: the named parts of the loss (floats, for logging).
        transitions: ``(C, C)`` transition scores (``[i, j]`` scores ``i -> j``), constraint
            penalties already added: exactly what Viterbi uses. None: no transition (argmax per word).
        start, end: ``(C,)`` start/end scores, penalised the same way, or None.
        labels: one label tuple per row: column ``c`` of row ``b`` is the tag ``labels[b][c]`` (a
            fixed-label model repeats its label set; an episodic one gives each query its episode's).
        scheme: the tag scheme of ``labels`` (a :data:`mner.tagging.SCHEMES` name): ``iob2``, or
            ``io`` for the few-shot baselines that tag as Few-NERD. Decoded tags always come out
            as IOB2 (:meth:`path_tags`).
        match_probability: ``(B,)`` a model's image-text match probability of each row (MAF's
            ``y^_m``), or None for a model without one.
        attentions: ``(B, W, R)`` each word's attention over the visual tokens (MAF's cross-modal
            interaction, heads averaged), only when the forward was asked for it
            (``output_attentions=True``, as in transformers); else None.
        visual_layout: the visual tokens' columns in order, ``((view, R_view), ...)``: which view
            the columns of ``attentions`` belong to.
    """

    loss: torch.Tensor | None
    emissions: torch.Tensor
    mask: torch.Tensor
    losses: dict[str, float] = field(default_factory=dict)
    transitions: torch.Tensor | None = None
    start: torch.Tensor | None = None
    end: torch.Tensor | None = None
    labels: list[tuple[str, ...]] = field(default_factory=list)
    scheme: str = "iob2"
    match_probability: torch.Tensor | None = None
    attentions: torch.Tensor | None = None
    visual_layout: tuple[tuple[str, int], ...] = ()

    def path_tags(self, row: int, path: Sequence[int]) -> list[str]:
        """The IOB2 tags of a decoded path of column ids of row ``row``: the column names, converted
        from :attr:`scheme` when it is not IOB2 (``io``: a run ``I-t I-t`` becomes one entity
        ``B-t I-t``, a change of type starts a new one). The one place where decoded classes become
        tags, for :meth:`MNERModel.decode_output` and the few-shot pipeline alike."""
        tags = [self.labels[row][c] for c in path]
        return tags if self.scheme == "iob2" else convert_tags(tags, self.scheme, "iob2")


@dataclass
class Decoded:
    """Decoded tags per tweet, per word the marginal probability of its tag (or None), and what the
    forward gave beside the tags (:class:`TaggerOutput`): per tweet the match probability and the
    ``(W, R)`` attention over the visual tokens laid out as ``visual_layout`` (or None)."""

    tags: list[list[str]]
    confidences: list[list[float]] | None = None
    match_probability: list[float] | None = None
    attentions: list[torch.Tensor] | None = None
    visual_layout: tuple[tuple[str, int], ...] = ()


@torch.no_grad()
def decode_output(out: TaggerOutput, confidences: bool = False, who: str = "the model") -> Decoded:
    """Viterbi tags of each row of a :class:`TaggerOutput` (its emissions, mask, transitions and
    labels) and, with ``confidences``, each word's marginal probability of its tag. Shared by every
    model (:meth:`MNERModel.decode_output`) and the ONNX Runtime backend (:mod:`mner.backends`)."""
    em = out.emissions.float()
    trans = out.transitions if out.transitions is not None else em.new_zeros(em.shape[-1], em.shape[-1])
    paths = viterbi_decode(em, out.mask, trans, out.start, out.end)[0]
    if len(out.labels) != len(paths):
        raise RuntimeError(f"{who}.forward gave {len(out.labels)} label tuples for "
                           f"{len(paths)} emission rows; TaggerOutput.labels needs one per row")
    tags = [out.path_tags(i, p) for i, p in enumerate(paths)]
    conf = None
    if confidences:
        marg = crf_marginals(em, out.mask, trans, out.start, out.end)
        conf = [[float(marg[i, j, t]) for j, t in enumerate(p)] for i, p in enumerate(paths)]
    return Decoded(tags, conf, *extras(out))


def extras(out: TaggerOutput) -> tuple[list[float] | None, list[torch.Tensor] | None, tuple]:
    """What :class:`Decoded` carries of an output beside the tags: match probabilities, attentions
    (float32, on the CPU) and their layout."""
    match = None if out.match_probability is None else [float(p) for p in out.match_probability.float().cpu()]
    attn = None if out.attentions is None else list(out.attentions.detach().float().cpu())
    return match, attn, tuple(out.visual_layout)


class MNERModel(nn.Module):
    """Base class of every model: subclasses set ``model_type`` and ``config_class`` and
    implement ``forward``, ``processor``, ``_save_assets`` and ``_from_assets``.

    ``views`` names the visual views the model reads (``()``: text only); subclasses set it."""

    model_type: ClassVar[str] = ""
    config_class: ClassVar[type] = object
    views: tuple[str, ...] = ()

    def __init__(self, config: Any):
        super().__init__()
        self.config = config

    # ---------------------------------------------------------------------------- interface
    #: whether ``forward(batch, output_attentions=True)`` gives :attr:`TaggerOutput.attentions`
    #: (a model with a cross-modal attention; the others take no such argument)
    outputs_attentions: bool = False
    #: whether the output carries :attr:`TaggerOutput.match_probability`
    outputs_match: bool = False

    def forward(self, batch: Any) -> TaggerOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def processor(self, image_store=None, cache=None, seed: int = 0):  # pragma: no cover - abstract
        """The processor that turns this model's inputs (examples, episodes) into its batches;
        ``processor.collate(train)`` is a DataLoader's ``collate_fn``. ``image_store`` resolves
        image references, ``cache`` holds frozen features, ``seed`` seeds training augmentation."""
        raise NotImplementedError

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """``{"pretrained": [...], "new": [...]}``: the trainer may give them different learning
        rates. Frozen parameters are left out."""
        return {"new": [p for p in self.parameters() if p.requires_grad]}

    @torch.no_grad()
    def decode(self, batch: Any, confidences: bool = False, output_attentions: bool = False) -> Decoded:
        """Viterbi tags per emission row (and each word's marginal probability of its tag), with
        what the output carries beside them (:class:`Decoded`); ``output_attentions``: ask a model
        that has them (:attr:`outputs_attentions`) for its attentions.

        The batch is moved to the model's device first (a plain DataLoader gives CPU batches).
        Gold tags are left out (``batch.without_tags()``): in eval mode they would only add a loss
        nobody reads. The transitions, start/end scores and tag names come from the output
        (:class:`TaggerOutput`), so the same code decodes a fixed-label and an episodic model."""
        batch = batch.without_tags().to(next(self.parameters()).device)
        was_training = self.training
        self.eval()
        try:
            out = self(batch, output_attentions=True) if output_attentions and self.outputs_attentions else self(batch)
        finally:
            self.train(was_training)
        return self.decode_output(out, confidences)

    @torch.no_grad()
    def decode_output(self, out: TaggerOutput, confidences: bool = False) -> Decoded:
        """Viterbi over a :class:`TaggerOutput` (its emissions, mask, transitions and labels)."""
        return decode_output(out, confidences, who=type(self).__name__)

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
    def _from_assets(cls, config: Any, assets: Path) -> "MNERModel":  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def upgrade_config(cls, raw: dict[str, Any]) -> dict[str, Any]:
        """A checkpoint's raw config dict made readable by today's config class: a model whose
        defaults changed fills, here, the values that an older checkpoint (one that lacks the new
        field) was trained with, so that it loads and decodes as it did. Default: unchanged."""
        return raw

    @classmethod
    def from_pretrained(cls, path: str | Path, map_location: str | torch.device = "cpu") -> "MNERModel":
        """Load a model folder (or a training run's ``best/``) written by :meth:`save_pretrained`."""
        folder = resolve_model_dir(path)
        data = read_config(folder)
        if cls.model_type and data["model_type"] != cls.model_type:
            raise CheckpointError(f"{folder}: a {data['model_type']!r} model, not {cls.model_type!r}")
        config = from_dict(cls.config_class, cls.upgrade_config(dict(data["config"])), "config")
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

