"""Tasks: what a model does, and how every entry point runs it, registered once.

In the spirit of the pipeline task registry of transformers and AllenNLP's registered predictors,
every model type belongs to one task, and the commands (``mner train``, ``evaluate``, ``predict``,
``tag``), :class:`mner.pipeline.Pipeline` and the service ask the task, never the model type:

* ``supervised``: a model with entity types of its own (MAF, a :class:`~mner.models.CRFTagger`).
  Trained on a corpus (a recipe with ``model:``, ``data:``, ``training:``), scored on a labelled
  split, applied to raw text + image pairs.
* ``episodic``: a few-shot model (MOUSING, ProtoBERT, NNShot/StructShot, ProtoMAF, an
  :class:`~mner.models.EpisodicTagger`). Trained on episodes of source types (a recipe with an
  ``episodes:`` section too), scored on an episode file, applied to raw inputs with the entity
  types of a *support set* (a few annotated tweets), which every entry point takes as ``support``
  (``--support FILE`` on the command line).

A model added later belongs to the task of the class it subclasses, and so gets every entry point.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from mner.errors import UsageError

__all__ = ["TASKS", "Task", "checkpoint_task", "recipe_task", "task_of", "task_of_type"]


@dataclass(frozen=True)
class Task:
    """One task: the models it accepts and what its entry points need.

    Attributes:
        name: ``supervised`` or ``episodic``.
        base: the name of the class (in :mod:`mner.models`) every model of the task subclasses.
        needs_support: whether applying a model to raw inputs needs a support set.
        evaluates_on: what ``mner evaluate`` scores it on (a labelled split, or an episode file).
        recipe_sections: the sections of its training recipe (YAML).
    """

    name: str
    base: str
    needs_support: bool
    evaluates_on: str
    recipe_sections: tuple[str, ...]

    def base_class(self) -> type:
        import mner.models

        return getattr(mner.models, self.base)

    def accepts(self, model_cls: type) -> bool:
        return issubclass(model_cls, self.base_class())

    def model_types(self) -> list[str]:
        """The registered model types of this task (:data:`mner.models.MODELS`)."""
        from mner.models import MODELS

        return [name for name, cls in MODELS.items() if self.accepts(cls)]

    # ------------------------------------------------------------------------------ support sets
    def check_support(self, checkpoint: Any, model_type: str | None, support: Any, option: str = "--support") -> None:
        """One line for a support set given to a model that takes none, missing for one that needs
        it, or a support file that does not exist."""
        what = f"a few-shot {model_type!r} model" if model_type else "this model"
        if self.needs_support and support is None:
            given = f"{option}FILE" if option.endswith("=") else f"{option} FILE"
            raise UsageError(f"{checkpoint}: {what} tags the entity types of a support set; pass {given} "
                             "(a few annotated tweets of each type: JSONL with tokens and tags, CoNLL or Twitter "
                             "format)")
        if self.needs_support and isinstance(support, (str, Path)) and not Path(support).is_file():
            shown = f"{option}{support}" if option.endswith("=") else f"{option} {support}"
            raise UsageError(f"{shown}: no such file")
        if not self.needs_support and support is not None:
            kind = f"a {model_type!r} model" if model_type else "a model"
            shown = support if isinstance(support, (str, Path)) else "(given)"
            raise UsageError(f"{option.rstrip('=')} {shown}: {checkpoint} is {kind} with a fixed set of entity types; "
                             f"{option} is for few-shot checkpoints ({', '.join(TASKS['episodic'].model_types())}): "
                             "leave it out")

    # ------------------------------------------------------------------------------ training
    def load_recipe(self, raw: dict, overrides: Sequence[str] = ()) -> Any:
        """The typed config of a training recipe (a dict read from YAML) of this task."""
        if self.name == "supervised":
            from mner.experiment import load_experiment

            return load_experiment(raw, overrides)
        from mner.fewshot.experiment import load_fewshot

        return load_fewshot(raw, overrides)

    def trainer(self) -> Callable[..., dict]:
        """``train(config, log=print) -> summary``: the recipe of this task (corpus or episodes)."""
        if self.name == "supervised":
            from mner.experiment import train

            return train
        from mner.fewshot.experiment import train_fewshot

        return train_fewshot


TASKS: dict[str, Task] = {
    "supervised": Task("supervised", "CRFTagger", needs_support=False, evaluates_on="a labelled split",
                       recipe_sections=("model_type", "model", "data", "training")),
    "episodic": Task("episodic", "EpisodicTagger", needs_support=True, evaluates_on="an episode file",
                     recipe_sections=("model_type", "model", "data", "episodes", "training")),
}


def task_of(model: Any) -> Task:
    """The task of a model, or of a model class."""
    cls = model if isinstance(model, type) else type(model)
    if getattr(model, "backend", "torch") != "torch":  # an exported model (mner export): its export says
        return TASKS[getattr(model, "task", "supervised")]
    for task in TASKS.values():
        if task.accepts(cls):
            return task
    raise TypeError(f"{cls.__name__} belongs to no task: subclass CRFTagger or EpisodicTagger")


def task_of_type(model_type: str) -> Task:
    """The task of a registered model type (``maf``, ``mousing`` ...); one line for an unknown one."""
    from mner.models import MODELS

    if model_type not in MODELS:
        raise UsageError(f"model_type {model_type!r}: this mner knows {', '.join(sorted(MODELS))}")
    return task_of(MODELS[model_type])


def checkpoint_task(path: str | Path) -> tuple[Task, str | None]:
    """The task of the model in ``path`` and its model type, read from its ``config.json`` without
    loading a weight. An ONNX export folder (``mner export``) has the task and type its export
    records (exports written before few-shot models were exported: supervised, type None); a folder
    that is neither raises the loader's one-line :class:`~mner.models.CheckpointError`."""
    from mner.backends import is_export_folder
    from mner.models import checkpoint_class

    if is_export_folder(path):
        from mner.backends.onnx_runtime import read_export_config

        exp = read_export_config(path)
        task = exp.get("task", "supervised")
        return TASKS[task], (exp.get("model_type") if task == "episodic" else None)
    cls = checkpoint_class(path)
    return task_of(cls), cls.model_type


def recipe_task(raw: dict) -> Task:
    """The task of a training recipe (a dict read from YAML, overrides applied): its ``model_type``
    (default ``maf``)."""
    if "model_type" not in raw and "episodes" in raw:
        raise UsageError("a recipe with an episodes: section trains a few-shot model: name it with model_type: "
                         f"({', '.join(TASKS['episodic'].model_types())})")
    model_type = raw.get("model_type", "maf")
    if not isinstance(model_type, str):
        raise UsageError(f"model_type must be a name, got {model_type!r}")
    return task_of_type(model_type)
