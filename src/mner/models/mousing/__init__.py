"""MOUSING (Lu et al., few-shot multimodal NER with multimodal causal intervention graphs), one
file per module of the poster:

- :mod:`.similarity_graph`: multimodal graph construction, cosine edges thresholded at delta (Eq. 2);
- :mod:`.causal_intervention`: MCIS intervention graph generation, V environments (Eq. 6) of
  relaxed-Bernoulli edge masks at temperature gamma (Eq. 7), and the ablation modes;
- :mod:`.multiview_update`: MCIS multi-view graph updating, L residual graph layers (Eq. 9) on
  G1 and on G2;
- :mod:`.prototype_crf`: the prototype-based CRF decoder (prototype equation, Eq. of L_CRF);
- :mod:`.modeling_mousing`: the whole model, ``forward`` top to bottom (:class:`MOUSINGModel`);
- :mod:`.config`: the config dataclasses.
"""

from mner.models.mousing.causal_intervention import EdgeScorer, InterventionGenerator, InterventionOut
from mner.models.mousing.config import GraphConfig, InterventionConfig, MOUSINGConfig, UpdateConfig
from mner.models.mousing.modeling_mousing import MOUSINGModel
from mner.models.mousing.multiview_update import GraphLayer, MultiViewOut, MultiViewUpdate
from mner.models.mousing.prototype_crf import PrototypeCRF
from mner.models.mousing.similarity_graph import (
    GraphOut,
    SimilarityGraph,
    cosine_adjacency,
    normalize_adjacency,
    threshold_edges,
)

__all__ = [
    "EdgeScorer",
    "GraphConfig",
    "GraphLayer",
    "GraphOut",
    "InterventionConfig",
    "InterventionGenerator",
    "InterventionOut",
    "MOUSINGConfig",
    "MOUSINGModel",
    "MultiViewOut",
    "MultiViewUpdate",
    "PrototypeCRF",
    "SimilarityGraph",
    "UpdateConfig",
    "cosine_adjacency",
    "normalize_adjacency",
    "threshold_edges",
]
