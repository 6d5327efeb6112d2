"""The task registry (:mod:`mner.tasks`): every registered model type belongs to exactly one task,
which is what the entry points ask (support set or not, which recipe trains it, what it is scored on)."""

from __future__ import annotations

import pytest

from mner.errors import UsageError
from mner.models import MODELS, CRFTagger, EpisodicTagger
from mner.tasks import TASKS, recipe_task, task_of, task_of_type


def test_every_model_type_belongs_to_exactly_one_task():
    for name, cls in MODELS.items():
        owners = [t.name for t in TASKS.values() if t.accepts(cls)]
        assert owners == [task_of_type(name).name], name
        assert name in task_of(cls).model_types()
    assert TASKS["supervised"].base_class() is CRFTagger and TASKS["episodic"].base_class() is EpisodicTagger
    assert set(TASKS["supervised"].model_types()) == {"maf"}
    assert set(TASKS["episodic"].model_types()) == {"mousing", "protobert", "nnshot", "proto-maf"}
    assert TASKS["episodic"].needs_support and not TASKS["supervised"].needs_support


def test_support_is_asked_of_the_task_that_needs_it(tmp_path):
    with pytest.raises(UsageError, match=r"ckpt: a few-shot 'mousing' model .* pass --support FILE"):
        TASKS["episodic"].check_support("ckpt", "mousing", None)
    with pytest.raises(UsageError, match=r"--support s.jsonl: ckpt is a 'maf' model with a fixed set of entity types"):
        TASKS["supervised"].check_support("ckpt", "maf", "s.jsonl")
    with pytest.raises(UsageError, match=r"^--support s.jsonl: no such file$"):
        TASKS["episodic"].check_support("ckpt", "mousing", "s.jsonl")
    (tmp_path / "s.jsonl").write_text("")
    TASKS["episodic"].check_support("ckpt", "mousing", tmp_path / "s.jsonl")   # both fine
    TASKS["episodic"].check_support("ckpt", "mousing", [])                    # examples, not a file
    TASKS["supervised"].check_support("ckpt", "maf", None)


def test_a_recipe_is_routed_by_its_model_type():
    assert recipe_task({"model_type": "mousing"}).name == "episodic"
    assert recipe_task({}).name == "supervised"   # maf is the default
    with pytest.raises(UsageError, match="name it with model_type"):
        recipe_task({"episodes": {"k": 1}})
    with pytest.raises(UsageError, match="this mner knows"):
        recipe_task({"model_type": "bilstm"})
    # a few-shot model type goes to the episodic recipe (before, mner train failed inside the collate)
    assert type(TASKS["episodic"].load_recipe({"model_type": "nnshot"})).__name__ == "FewShotConfig"
    assert type(TASKS["supervised"].load_recipe({"model_type": "maf"})).__name__ == "ExperimentConfig"
    assert TASKS["episodic"].trainer().__name__ == "train_fewshot" and TASKS["supervised"].trainer().__name__ == "train"
