"""The models of mner and how to load any of them from a folder.

``load_model(path)`` reads ``config.json``'s ``model_type`` and returns the right class's
``from_pretrained``. :data:`MODELS` is the registry: ``maf`` (:mod:`mner.models.maf`). Every
model is an :class:`MNERModel` (:mod:`mner.models.base`); a fixed-label CRF tagger is a
:class:`CRFTagger` (:mod:`mner.models.tagger`).
"""

from __future__ import annotations

from pathlib import Path

from mner.models.base import Decoded, MNERModel, TaggerOutput
from mner.models.checkpoint import CheckpointError, read_config, resolve_model_dir
from mner.models.maf import MAFConfig, MAFModel
from mner.models.tagger import CRFTagger, TaggingModel

__all__ = ["MODELS", "CRFTagger", "CheckpointError", "Decoded", "MAFConfig", "MAFModel", "MNERModel",
           "TaggerOutput", "TaggingModel", "load_model"]

#: model_type -> class, one line per model.
MODELS: dict[str, type[MNERModel]] = {
    MAFModel.model_type: MAFModel,
}


def load_model(path: str | Path, map_location: str = "cpu") -> MNERModel:
    folder = resolve_model_dir(path)
    model_type = read_config(folder)["model_type"]
    if model_type not in MODELS:
        raise CheckpointError(f"{folder}: unknown model type {model_type!r}; this mner knows {sorted(MODELS)}")
    return MODELS[model_type].from_pretrained(folder, map_location)
