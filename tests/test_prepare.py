"""The data layer's preparation step (mner.data.prepare): IOB1 -> IOB2, and that reading data
needs no training code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import mner
from mner.config import ConfigError
from mner.data.example import Example
from mner.data.prepare import DataConfig, prepare_data, to_iob2
from mner.resources import sample_corpus_dir

SRC = Path(mner.__file__).parent


def test_to_iob2_counts_every_changed_tag_and_keeps_the_rest():
    a = Example("a", ("Rob", "Stark", "in", "New", "York"), ("I-PER", "I-PER", "O", "I-LOC", "I-LOC"))
    b = Example("b", ("x", "y"), ("B-ORG", "I-ORG"))  # already IOB2: the same object comes back
    c = Example("c", ("no", "tags"))
    d = Example("d", ("A", "B"), ("I-PER", "I-LOC"))  # a type change starts an entity too
    out, changed = to_iob2([a, b, c, d])
    assert [ex.tags for ex in out] == [("B-PER", "I-PER", "O", "B-LOC", "I-LOC"), ("B-ORG", "I-ORG"), None,
                                       ("B-PER", "B-LOC")]
    assert changed == 2 + 2
    assert out[1] is b and out[2] is c and a.tags[0] == "I-PER"  # inputs untouched


def test_prepare_data_reports_the_conversion(tmp_path):
    (tmp_path / "train.txt").write_text("IMGID:1\nRob\tI-PER\nStark\tI-PER\nwins\tO\n\n", encoding="utf-8")
    notes: list[str] = []
    data = prepare_data(DataConfig(train=str(tmp_path / "train.txt"), captions=None, feature_cache=None),
                        log=notes.append)
    assert data.splits["train"][0].tags == ("B-PER", "I-PER", "O")
    assert "train: 1 I- tags without B- read as entity starts (B-), as conlleval reads them" in notes


def test_prepare_data_refuses_a_model_view_without_its_data():
    cfg = DataConfig(test=str(sample_corpus_dir() / "test.txt"), captions=None, feature_cache=None)
    with pytest.raises(ConfigError, match="caption file"):
        prepare_data(cfg, needs_captions=True, log=lambda *_: None)
    with pytest.raises(ConfigError, match="image folder"):
        prepare_data(cfg, needs_images=True, log=lambda *_: None)


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
    return names


@pytest.mark.parametrize("module", ["cli/infer.py", "data/prepare.py", "evaluation.py", "pipeline.py"])
def test_reading_and_evaluating_do_not_import_the_training_recipe(module):
    assert not {m for m in _imported_modules(SRC / module) if m.startswith(("mner.experiment", "mner.training"))}
