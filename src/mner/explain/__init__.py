"""What a prediction shows beside its entities, shared by the service, ``mner explain``,
``mner report``, ``mner tag`` and the visual controls, and importing none of them:

* :mod:`.inspector`: MAF's image-text match probability and the cross-modal attention, read from
  the forward pass the pipeline already runs (:class:`Inspector`);
* :mod:`.predictor`: one batch of tweets through a pipeline with those extras (:class:`Predictor`);
* :mod:`.palette`: the colours of entity types and the attention scale (one palette file, read by
  the web page too).
"""

from mner.explain.inspector import Capture, Inspector, entity_explanation
from mner.explain.predictor import InferenceItem, Predictor

__all__ = ["Capture", "InferenceItem", "Inspector", "Predictor", "entity_explanation"]
