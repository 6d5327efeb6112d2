"""What a fixed-label CRF tagger adds to :class:`~mner.models.base.MNERModel`: one label set
(from its config) and a learned linear-chain CRF over it (:mod:`mner.crf`).

``L_mner`` is the CRF's mean negative log-likelihood per tweet; :meth:`CRFTagger.output` fills
:class:`~mner.models.base.TaggerOutput` with the CRF's constrained transitions and the label set
for every row, so that the shared ``decode`` needs nothing else. MAF is one
(:class:`~mner.models.maf.MAFModel`).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from mner.crf import CRF
from mner.models.base import MNERModel, TaggerOutput
from mner.tagging.labels import LabelSet

__all__ = ["CRFTagger", "TaggingModel"]


class CRFTagger(MNERModel):
    """A tagger with one label set (``config.labels``) and a learned CRF ``self.crf``.

    Subclasses create the CRF with :meth:`build_crf` where their parameter order wants it
    (MAF: last, after the emission layer, so that a seed gives the weights it always gave)."""

    crf: CRF

    def __init__(self, config: Any):
        super().__init__(config)
        self.label_set = LabelSet(tuple(config.labels))

    def build_crf(self, constraints: str | None = "iob2") -> CRF:
        """The CRF over this tagger's label set (``constraints``: ``iob2``, ``bioes`` or None)."""
        return CRF(len(self.label_set), labels=self.label_set.labels, constraints=constraints)

    def crf_loss(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``L_mner``: mean negative log-likelihood per tweet. The CRF never reads the tags at
        padded positions (:data:`~mner.processing.tagging.IGNORE_INDEX` there is fine); an ignored
        tag at a real word is an error, not a silent tag 0."""
        return self.crf(emissions.float(), tags, mask, reduction="mean")

    def output(self, loss: torch.Tensor | None, emissions: torch.Tensor, mask: torch.Tensor,
               losses: Mapping[str, torch.Tensor | float]) -> TaggerOutput:
        """The :class:`TaggerOutput` of a forward: the CRF's constrained transitions and, for each
        of the ``B`` rows of ``emissions`` (B, W, C), this tagger's labels."""
        transitions, start, end = self.crf.scores()
        # one label tuple per row; not while torch.export traces the forward (mner export reads only
        # the emissions): counting the rows there would fix the exported graph's batch size
        rows = 1 if torch.compiler.is_exporting() else emissions.shape[0]
        return TaggerOutput(loss, emissions, mask, {k: float(v.detach()) if torch.is_tensor(v) else float(v)
                                                     for k, v in losses.items()},
                            transitions=transitions, start=start, end=end,
                            labels=[self.label_set.labels] * rows)


#: The name this class had before few-shot models (``mner.models.base.TaggingModel``).
TaggingModel = CRFTagger
