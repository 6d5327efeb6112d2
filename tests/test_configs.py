"""The shipped ``configs/``: every file loads through the loader its command uses (``mner train`` or
``mner fewshot train``), and each recipe that the README quotes an F1 for is exactly the
benchmark cell that measured that F1 (so the expected F1 is the configuration's, not a neighbour's)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mner.config import load_yaml, to_dict
from mner.experiment import load_experiment
from mner.fewshot.experiment import FEWSHOT_MODELS, load_fewshot
from mner.tasks import recipe_task

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))

sys.path.insert(0, str(ROOT / "bench"))
import maf_benchmark as bench  # noqa: E402

# recipe file -> the benchmark row it reproduces (dataset, variant, encoder, schedule), as the benchmark lists them
RECIPES = {Path(path).name: recipe for path, recipe in bench.RECIPES.items()}


def test_there_are_shipped_configs():
    assert CONFIGS, "configs/ holds no YAML file"


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads(path):
    raw = load_yaml(str(path))
    task = recipe_task(raw)   # the model_type picks the recipe mner train runs
    assert task.name == ("episodic" if raw.get("model_type") in FEWSHOT_MODELS() else "supervised")
    assert type(task.load_recipe(raw)) is type(load_fewshot(path) if task.name == "episodic" else load_experiment(path))
    if raw.get("model_type") in FEWSHOT_MODELS():
        cfg = load_fewshot(path)
        assert cfg.episodes.target_types, f"{path.name}: a few-shot config names its target types"
    else:
        cfg = load_experiment(path)
        assert cfg.training.output_dir.startswith("runs/"), f"{path.name}: train into runs/"
    assert cfg.data.corpus, f"{path.name}: names its corpus"


def _comparable(cfg) -> dict:
    """An experiment as a dict without what depends on where it runs (folders, progress bars)."""
    out = {"model_type": cfg.model_type, "model": to_dict(cfg.model), "data": to_dict(cfg.data),
           "training": to_dict(cfg.training)}
    out["data"].pop("corpus")
    for key in ("output_dir", "progress", "log_every"):
        out["training"].pop(key)
    return out


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_a_recipe_is_the_benchmark_cell_the_readme_quotes(name, tmp_path):
    r = RECIPES[name]
    recipe = load_experiment(ROOT / "configs" / name)
    cell = load_experiment(r.experiment(37, tmp_path / "run"))
    assert _comparable(recipe) == _comparable(cell)
    assert Path(recipe.data.corpus).name == r.dataset
    # the README shows the command and quotes the F1 of the stored cells of that row (mean ± std)
    readme = [line for line in (ROOT / "README.md").read_text().splitlines() if f"configs/{name}" in line]
    assert readme, f"the README does not show how to run {name}"
    cells = [c for c in bench.load_cells() if (c["dataset"], c["variant"], c["encoder"]) == (r.dataset, r.variant, r.encoder)
             and bench.comparable_config(c["config"]) == bench.comparable_config(r.experiment(c["seed"], tmp_path / "run"))]
    older = ""
    if not cells:  # a recipe measured only by cells of an older code version says so
        cells, older = (bench.older_recipe_cells(bench.load_cells(), r.dataset, r.variant, r.encoder, r.patience, r.epochs),
                        "older code version")
    assert cells, f"no stored benchmark cell ran {name}'s configuration"
    expected = bench._ms([c["test"]["f1"] for c in cells])
    assert any(f"expect {expected} (" in line and older in line for line in readme), \
        f"the README should quote {expected} for {name}" + (f" as from an {older}" if older else "")
