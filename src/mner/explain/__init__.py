"""What a prediction shows beside its entities, shared by the service, ``mner explain``,
``mner report``, ``mner tag`` and the visual controls, and importing none of them:

* :mod:`.attention`: an entity's explanation, from the cross-modal attention that the model's
  output carries (:meth:`mner.pipeline.Pipeline.run` with ``output_attentions``);
* :mod:`.predictor`: one batch of tweets through a pipeline with the match probability and the
  explanations (:class:`Predictor`);
* :mod:`.palette`: the colours of entity types and the attention scale (one palette file, read by
  the web page too).
"""

from mner.explain.attention import entity_explanation
from mner.explain.predictor import InferenceItem, Predictor

__all__ = ["InferenceItem", "Predictor", "entity_explanation"]
