"""The few-shot side of mner: episodic training, evaluation over episodes, and tagging new entity
types from a support set.

* :mod:`mner.fewshot.experiment`: ``mner fewshot train CONFIG.yaml``: source-type episodes resampled
  every epoch, model selection on dev episodes of the target types, a test episode file scored at the end.
* :mod:`mner.fewshot.evaluation`: entity-level P/R/F1 pooled over the query sets of many episodes.
* :mod:`mner.fewshot.pipeline`: :class:`FewShotPipeline`: a checkpoint + a few annotated tweets of
  any new type -> entities in new tweets.

The episodes themselves are data (:mod:`mner.data.episodes`, :mod:`mner.data.sampling`); the models
are in :mod:`mner.models.fewshot` (baselines) and :mod:`mner.models.mousing`.
"""
