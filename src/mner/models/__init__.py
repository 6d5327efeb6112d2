"""The models of mner and how to load any of them from a folder.

``load_model(path)`` reads ``config.json``'s ``model_type`` and returns the right class's
``from_pretrained``. :data:`MODELS` is the registry: ``maf`` (:mod:`mner.models.maf`), the few-shot
``mousing`` (:mod:`mner.models.mousing`) and its baselines ``protobert``, ``nnshot`` (NNShot and
StructShot) and ``proto-maf`` (:mod:`mner.models.fewshot`). Every
model is an :class:`MNERModel` (:mod:`mner.models.base`); a fixed-label CRF tagger is a
:class:`CRFTagger` (:mod:`mner.models.tagger`).
"""

from __future__ import annotations

from pathlib import Path

from mner.models.base import Decoded, MNERModel, TaggerOutput
from mner.models.checkpoint import CheckpointError, read_config, resolve_model_dir
from mner.models.episodic import EpisodicConfig, EpisodicTagger
from mner.models.fewshot.nnshot import NNShotConfig, NNShotModel
from mner.models.fewshot.proto_maf import ProtoMAFConfig, ProtoMAFModel
from mner.models.fewshot.protobert import ProtoBERTConfig, ProtoBERTModel
from mner.models.maf import MAFConfig, MAFModel
from mner.models.mousing import MOUSINGConfig, MOUSINGModel
from mner.models.tagger import CRFTagger, TaggingModel

__all__ = ["MODELS", "CRFTagger", "CheckpointError", "Decoded", "EpisodicConfig", "EpisodicTagger", "MAFConfig",
           "MAFModel", "MNERModel", "MOUSINGConfig", "MOUSINGModel", "NNShotConfig", "NNShotModel",
           "ProtoBERTConfig", "ProtoBERTModel", "ProtoMAFConfig", "ProtoMAFModel", "TaggerOutput",
           "TaggingModel", "checkpoint_class", "load_model"]

#: model_type -> class, one line per model.
MODELS: dict[str, type[MNERModel]] = {
    MAFModel.model_type: MAFModel,
    MOUSINGModel.model_type: MOUSINGModel,
    ProtoBERTModel.model_type: ProtoBERTModel,
    NNShotModel.model_type: NNShotModel,
    ProtoMAFModel.model_type: ProtoMAFModel,
}


def checkpoint_class(path: str | Path) -> type[MNERModel]:
    """The class of the model in ``path`` (a model folder or a training run), read from its
    ``config.json`` without loading any weight: what a command asks before it loads a model, e.g.
    ``issubclass(checkpoint_class(path), EpisodicTagger)`` (a few-shot model, which needs a support set)."""
    folder = resolve_model_dir(path)
    model_type = read_config(folder)["model_type"]
    if model_type not in MODELS:
        raise CheckpointError(f"{folder}: unknown model type {model_type!r}; this mner knows {sorted(MODELS)}")
    return MODELS[model_type]


def load_model(path: str | Path, map_location: str = "cpu") -> MNERModel:
    return checkpoint_class(path).from_pretrained(resolve_model_dir(path), map_location)
