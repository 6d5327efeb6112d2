"""The trainer on synthetic data and a one-weight model (no encoder): what it accepts as training
data (a Dataset as it is, a Sequence, an IterableDataset), ``set_epoch``, evaluation every N steps
with best-model selection and early stopping, items per second."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, IterableDataset

import mner.models.checkpoint as checkpoint
import mner.training.trainer as trainer_module
from mner.config import ConfigError
from mner.errors import MNERError
from mner.models.checkpoint import save_state_dict
from mner.training import Trainer, TrainingConfig


class TinyModel(nn.Module):
    """loss = (w * mean(x) - 1)^2: one weight, any batch of numbers."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, batch: torch.Tensor):
        loss = ((self.w * batch.float().mean()) - 1.0).pow(2).sum()
        return SimpleNamespace(loss=loss, losses={"part": float(loss.detach())})

    def save_pretrained(self, folder: Path, extra: dict | None = None) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_state_dict(self.state_dict(), folder / checkpoint.WEIGHTS_NAME)
        (folder / "config.json").write_text(json.dumps({"extra": extra or {}}))
        return folder


class Numbers(Dataset):
    """A map-style dataset that records ``set_epoch`` and refuses to be turned into a list."""

    def __init__(self, n: int):
        self.n = n
        self.epochs: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> float:
        if not 0 <= i < self.n:
            raise IndexError(i)
        return float(i + 1)

    def __iter__(self):
        raise AssertionError("the trainer must use the dataset as it is, not list() it")


class Stream(IterableDataset):
    """An iterable dataset without a length that records what it yields per epoch."""

    def __init__(self, n: int):
        self.n = n
        self.epoch = 0
        self.yielded: list[tuple[int, float]] = []

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        for i in range(self.n):
            value = float(10 * self.epoch + i)
            self.yielded.append((self.epoch, value))
            yield value


class WithLen(Stream):
    """The same with a length (the trainer then knows the steps per epoch)."""

    def __len__(self) -> int:
        return self.n


def collate(items) -> torch.Tensor:
    return torch.tensor(items)


def _config(out: Path, **options) -> TrainingConfig:
    base = dict(output_dir=str(out), epochs=2, batch_size=2, eval_batch_size=4, learning_rate=0.1, seed=1,
                progress=False, tensorboard=False, log_every=1, resume=False, cpu=True, warmup_ratio=0.0)
    base.update(options)
    return TrainingConfig(**base)


def _scripted(values: list[float]):
    """An ``evaluate`` callback that returns the given dev F1 values one after another."""
    calls: list[int] = []

    def evaluate(model, loader, accelerator=None) -> dict:
        calls.append(1)
        return {"f1": values[len(calls) - 1]}

    evaluate.calls = calls
    return evaluate


def _records(out: Path, event: str) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["event"] == event]


def test_a_dataset_is_used_as_it_is_and_told_each_epoch(tmp_path):
    data = Numbers(10)
    result = Trainer(TinyModel(), _config(tmp_path, epochs=3), data, None, collate).train()
    # accelerate's loader passes set_epoch on too: called (at least once) before each epoch, in order
    assert sorted(set(data.epochs)) == [0, 1, 2] and data.epochs == sorted(data.epochs)
    assert result.global_step == 15 and result.epochs_run == 3


def test_train_records_count_items_not_tweets(tmp_path):
    Trainer(TinyModel(), _config(tmp_path, epochs=1, batch_size=4), list(range(1, 11)), None, collate).train()
    train = _records(tmp_path, "train")
    assert [r["step"] for r in train] == [1, 2, 3]
    assert all("items_per_s" in r and "tweets_per_s" not in r and r["items_per_s"] > 0 for r in train)
    assert all("loss_part" in r for r in train)


def test_an_iterable_dataset_is_read_in_its_own_order_every_epoch(tmp_path):
    data = WithLen(4)
    result = Trainer(TinyModel(), _config(tmp_path, epochs=2, shuffle=True), data, None, collate).train()
    assert result.global_step == 4  # 2 batches of 2 per epoch
    assert data.yielded == [(0, 0.0), (0, 1.0), (0, 2.0), (0, 3.0), (1, 10.0), (1, 11.0), (1, 12.0), (1, 13.0)]


def test_an_iterable_dataset_without_length_needs_max_steps(tmp_path):
    with pytest.raises(MNERError, match="max_steps"):
        Trainer(TinyModel(), _config(tmp_path), Stream(4), None, collate).train()
    data = Stream(6)
    result = Trainer(TinyModel(), _config(tmp_path / "run", epochs=5, max_steps=4), data, None, collate).train()
    assert result.global_step == 4
    assert [e for e, _ in data.yielded][:6] == [0] * 6  # epoch 0 read whole (3 steps), then epoch 1


def test_shuffle_off_keeps_the_dataset_order(tmp_path):
    seen: list[list[float]] = []

    def recording(items):
        seen.append(list(items))
        return collate(items)

    Trainer(TinyModel(), _config(tmp_path, epochs=1, shuffle=False), Numbers(6), None, recording).train()
    assert seen == [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
    seen.clear()
    Trainer(TinyModel(), _config(tmp_path / "shuffled", epochs=1), Numbers(6), None, recording).train()
    assert sorted(x for b in seen for x in b) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0] and seen != [[1.0, 2.0], [3.0, 4.0],
                                                                                          [5.0, 6.0]]


def test_evaluation_every_n_steps_and_at_epoch_ends(tmp_path):
    # 10 items, batch 2: 5 steps per epoch; every 2 steps: at 2, 4, (5: epoch end), 6, 8, (10: epoch end)
    evaluate = _scripted([0.1, 0.3, 0.2, 0.5, 0.4, 0.45])
    result = Trainer(TinyModel(), _config(tmp_path, eval_every_steps=2), Numbers(10), list(range(4)), collate,
                     evaluate=evaluate).train()
    evals = _records(tmp_path, "eval")
    assert [r["step"] for r in evals] == [2, 4, 5, 6, 8, 10]
    assert [r["epoch"] for r in evals] == [1, 1, 1, 2, 2, 2]
    assert [("epoch_seconds" in r) for r in evals] == [False, False, True, False, False, True]
    assert result.best_metric == 0.5 and result.best_step == 6 and result.best_epoch == 2
    best = json.loads((tmp_path / "best" / "config.json").read_text())["extra"]["trained"]
    assert best == {"epoch": 2, "step": 6, "dev": {"f1": 0.5}}
    assert len(result.history) == 6


def test_without_eval_every_steps_only_epoch_ends_evaluate(tmp_path):
    evaluate = _scripted([0.1, 0.2])
    result = Trainer(TinyModel(), _config(tmp_path), Numbers(10), list(range(4)), collate, evaluate=evaluate).train()
    assert [r["step"] for r in _records(tmp_path, "eval")] == [5, 10]
    assert result.best_step == 10 and result.best_epoch == 2


@pytest.mark.parametrize("patience,stop_step,evals", [(1, 4, 2), (2, 5, 3)])
def test_early_stopping_counts_the_step_evaluations(tmp_path, patience, stop_step, evals):
    evaluate = _scripted([0.5, 0.4, 0.3, 0.2, 0.1, 0.0])
    result = Trainer(TinyModel(), _config(tmp_path, eval_every_steps=2, early_stopping_patience=patience),
                     Numbers(10), list(range(4)), collate, evaluate=evaluate).train()
    assert result.stopped_early and result.global_step == stop_step and len(evaluate.calls) == evals
    assert result.best_step == 2 and result.best_metric == 0.5
    state = json.loads((tmp_path / "last" / "trainer_state.json").read_text())["trainer"]
    assert state["global_step"] == stop_step and state["best_step"] == 2


def test_eval_every_steps_must_be_positive():
    with pytest.raises(ConfigError, match="eval_every_steps"):
        TrainingConfig(eval_every_steps=0)


def test_checkpoint_helpers_are_imported_at_the_top():
    for name in ("atomic_folder", "interrupted_saves", "load_state_dict", "WEIGHTS_NAME"):
        assert getattr(trainer_module, name) is getattr(checkpoint, name)


def test_max_steps_inside_an_epoch_evaluates_once_at_the_end(tmp_path):
    evaluate = _scripted([0.1, 0.2, 0.3])
    result = Trainer(TinyModel(), _config(tmp_path, eval_every_steps=2, max_steps=4), Numbers(10), list(range(4)),
                     collate, evaluate=evaluate).train()
    assert result.global_step == 4
    assert [r["step"] for r in _records(tmp_path, "eval")] == [2, 4] and len(evaluate.calls) == 2
