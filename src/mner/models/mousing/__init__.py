"""MOUSING (Lu et al., few-shot multimodal NER with multimodal causal intervention graphs), one
file per module of the poster:

- :mod:`.similarity_graph`: multimodal graph construction, cosine edges thresholded at delta (Eq. 2);
- :mod:`.causal_intervention`: MCIS intervention graph generation, V environments (Eq. 6) of
  relaxed-Bernoulli edge masks at temperature gamma (Eq. 7), and the ablation modes;
- :mod:`.multiview_update`: MCIS multi-view graph updating, L residual graph layers (Eq. 9) on
  G1 and on G2;
- :mod:`.config`: their config dataclasses.
"""

from mner.models.mousing.causal_intervention import EdgeScorer, InterventionGenerator, InterventionOut
from mner.models.mousing.config import GraphConfig, InterventionConfig, UpdateConfig
from mner.models.mousing.multiview_update import GraphLayer, MultiViewOut, MultiViewUpdate
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
    "MultiViewOut",
    "MultiViewUpdate",
    "SimilarityGraph",
    "UpdateConfig",
    "cosine_adjacency",
    "normalize_adjacency",
    "threshold_edges",
]
