"""Few-shot NER baselines over episodes (ProtoBERT, NNShot, StructShot) and the decoding math
they share with MOUSING:

- :mod:`.metric`: class prototypes with the type fallback, prototype and nearest-neighbour
  scores (squared Euclidean), the token cross-entropy of ProtoBERT / NNShot;
- :mod:`.abstract_transitions`: label-agnostic CRF transitions mapped onto an episode's labels,
  learned (MOUSING) or estimated from the source data (StructShot: the reference's seven IO kinds
  with tau as a power of the transition rows, or our 15-kind BIO reading).

The baselines tag with Few-NERD's IO scheme by default (``scheme: io``; ``scheme: bio`` keeps
the earlier BIO versions), see :mod:`mner.processing.episodes`.

The CRF itself is :mod:`mner.crf`'s.
"""

from mner.models.fewshot.abstract_transitions import (
    ABSTRACT_KINDS,
    IO_ABSTRACT_KINDS,
    AbstractTransitions,
    StructShotIOTransitions,
    StructShotTransitions,
    estimate_abstract_transitions,
    estimate_io_transitions,
    expand_abstract,
    project_io_transitions,
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
    "IO_ABSTRACT_KINDS",
    "AbstractTransitions",
    "EpisodeCrossEntropy",
    "StructShotIOTransitions",
    "StructShotTransitions",
    "class_prototypes",
    "estimate_abstract_transitions",
    "estimate_io_transitions",
    "expand_abstract",
    "nearest_neighbour_scores",
    "project_io_transitions",
    "prototype_scores",
    "split_over_types",
    "squared_euclidean",
    "type_fallback",
]
