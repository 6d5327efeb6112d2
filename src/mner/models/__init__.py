"""The models of mner and how to load any of them from a folder.

``load_model(path)`` reads ``config.json``'s ``model_type`` and returns the right class's
``from_pretrained``. Models: ``maf`` (:mod:`mner.models.maf`).
"""

from __future__ import annotations

from pathlib import Path

from mner.models.base import Decoded, TaggerOutput, TaggingModel
from mner.models.checkpoint import CheckpointError, read_config, resolve_model_dir
from mner.models.maf import MAFConfig, MAFModel

__all__ = ["MODELS", "CheckpointError", "Decoded", "MAFConfig", "MAFModel", "TaggerOutput",
           "TaggingModel", "load_model"]

MODELS: dict[str, type[TaggingModel]] = {MAFModel.model_type: MAFModel}


def load_model(path: str | Path, map_location: str = "cpu") -> TaggingModel:
    folder = resolve_model_dir(path)
    model_type = read_config(folder)["model_type"]
    if model_type not in MODELS:
        raise CheckpointError(f"{folder}: unknown model type {model_type!r}; this mner knows {sorted(MODELS)}")
    return MODELS[model_type].from_pretrained(folder, map_location)
