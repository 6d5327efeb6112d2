"""Two trainings of the same configuration and seed give the same model, bit for bit: the caption
view the benchmark uses, several epochs with dropout, dev evaluation and best-model selection, and
another global random state before the second (train() must seed everything it uses).
Measured at full scale in docs/results/maf-notes.md (bench/maf_determinism.py)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mner.experiment import load_experiment, train
from model_fixtures import encoders, experiment, one_thread, read_jsonl, sample_paths  # noqa: F401  (fixtures)

pytestmark = pytest.mark.usefixtures("one_thread")


def _weights(folder):
    return load_file(str(folder / "model.safetensors"))


def test_same_seed_same_caption_view_model_bit_for_bit(encoders, tmp_path):
    paths = sample_paths()
    outs, summaries = [], []
    for k, other_state in enumerate((1, 999)):
        torch.manual_seed(other_state)
        random.seed(other_state)
        np.random.seed(other_state)
        out = tmp_path / f"run{k}"
        raw = experiment(encoders, paths["tweets"], out, captions=str(paths["captions"]), model={"view": "caption"},
                         training={"epochs": 2, "seed": 5})
        summaries.append(train(load_experiment(raw), log=lambda *_: None))
        outs.append(out)
    for name in ("last", "best"):
        a, b = _weights(outs[0] / name), _weights(outs[1] / name)
        assert a.keys() == b.keys()
        differ = [k for k in a if not torch.equal(a[k], b[k])]
        assert not differ, f"{name}: {len(differ)} of {len(a)} tensors differ, e.g. {differ[:3]}"
    losses = [[r["loss"] for r in read_jsonl(o / "metrics.jsonl") if r["event"] == "train"] for o in outs]
    assert losses[0] == losses[1] and len(losses[0]) == 6  # 12 tweets, batches of 4, 2 epochs
    for key in ("dev_f1", "test_f1", "best_epoch"):
        assert summaries[0][key] == summaries[1][key]
    # and another seed does give another model (the test would pass vacuously otherwise)
    raw = experiment(encoders, paths["tweets"], tmp_path / "other", captions=str(paths["captions"]),
                     model={"view": "caption"}, training={"epochs": 2, "seed": 6})
    train(load_experiment(raw), log=lambda *_: None)
    other = _weights(tmp_path / "other" / "last")
    assert any(not torch.equal(other[k], v) for k, v in _weights(outs[0] / "last").items())
