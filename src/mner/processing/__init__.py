"""Processing: examples -> tensors, out of the model layer.

- :mod:`.visual`: the visual side (image regions, caption tokens, both), with file I/O, image
  transforms, the feature cache and the frozen encoders;
- :mod:`.tagging`: :class:`TaggingProcessor`, words + gold tags + visual side -> :class:`TaggingBatch`;
- :mod:`.episodes`: few-shot episodes -> an episode batch (the few-shot models' processor).

Every model's ``processor()`` returns its processor; the model sees tensors only.
"""

from mner.processing.tagging import IGNORE_INDEX, TaggingBatch, TaggingProcessor
from mner.processing.visual import VIEWS, VisualInputs, VisualProcessor, view_names

__all__ = ["IGNORE_INDEX", "VIEWS", "TaggingBatch", "TaggingProcessor", "VisualInputs", "VisualProcessor",
           "view_names"]
