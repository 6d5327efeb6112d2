"""Few-shot NER baselines over episodes (ProtoBERT, NNShot, StructShot) and the decoding math
they share with MOUSING:

- :mod:`.metric`: class prototypes with the type fallback, prototype and nearest-neighbour
  scores (squared Euclidean), the token cross-entropy of ProtoBERT / NNShot;
- :mod:`.abstract_transitions`: label-agnostic CRF transitions mapped onto an episode's labels,
  learned (MOUSING) or estimated from the source data (StructShot).

The CRF itself is :mod:`mner.crf`'s.
"""

from mner.models.fewshot.abstract_transitions import (
    ABSTRACT_KINDS,
    AbstractTransitions,
    StructShotTransitions,
    estimate_abstract_transitions,
    expand_abstract,
    split_over_types,
)
from mner.models.fewshot.metric import (
    EMPTY_CLASS_SCORE,
    IGNORE_INDEX,
    EpisodeCrossEntropy,
    class_prototypes,
    nearest_neighbour_scores,
    prototype_scores,
    squared_euclidean,
    type_fallback,
)

__all__ = [
    "ABSTRACT_KINDS",
    "EMPTY_CLASS_SCORE",
    "IGNORE_INDEX",
    "AbstractTransitions",
    "EpisodeCrossEntropy",
    "StructShotTransitions",
    "class_prototypes",
    "estimate_abstract_transitions",
    "expand_abstract",
    "nearest_neighbour_scores",
    "prototype_scores",
    "split_over_types",
    "squared_euclidean",
    "type_fallback",
]
