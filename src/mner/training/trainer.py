"""A trainer that does not know which model it trains.

It needs a model whose ``forward(batch)`` returns an object with ``.loss`` (and optionally a
``.losses`` dict of floats to log), a ``save_pretrained(folder)``, optionally a
``param_groups()`` (``{"pretrained": [...], "new": [...]}``: two learning rates), the
training and evaluation data with their collate functions, and an ``evaluate(model, loader,
accelerator) -> dict`` that returns metrics including ``config.metric``.

The training data is whatever the model's processor batches: tweets for a supervised tagger,
episodes for a few-shot one. It may be a map-style :class:`~torch.utils.data.Dataset` or a
Sequence (used as it is, shuffled each epoch unless ``shuffle`` is off), or an
:class:`~torch.utils.data.IterableDataset` (read in its own order). Before each epoch the trainer
calls ``train_data.set_epoch(epoch)`` when it has one (an episode dataset resamples there). Logs
and speed count *items*, whatever the dataset yields.

Evaluation (dev metrics, best-model selection, early stopping) runs at every epoch end and, with
``eval_every_steps``, also every N optimizer steps.

Resuming is bit-exact for map-style data: the sampler order is a function of the seed and the
epoch, and the batches already done are skipped. An IterableDataset is read again from the
start of the epoch and its first batches are skipped; unless its items are a function of
``set_epoch`` alone, a resumed run sees other items in that epoch than the killed one did
(the epoch is, in effect, restarted with new draws).

Built on :mod:`accelerate`: the same code runs on a CPU, a GPU, several GPUs or nodes
(``accelerate launch --num_processes 2 --cpu -m mner train ...``), with mixed precision where the
device has it. Everything else a training run needs: AdamW with a linear warmup/decay schedule,
gradient clipping, best-on-dev selection, early stopping, a JSONL metrics log (and TensorBoard
when it is installed), a progress bar with loss and speed, full seeding, and resuming from the
last checkpoint after a kill.

Output folder::

    <output_dir>/best/          the best model on the dev set (config.json + model.safetensors)
    <output_dir>/last/          the latest model + training state (resume)
    <output_dir>/metrics.jsonl  one JSON object per log step and per evaluation
    <output_dir>/train_result.json
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset

from mner.errors import MNERError
from mner.models.checkpoint import WEIGHTS_NAME, atomic_folder, interrupted_saves, load_state_dict
from mner.training.config import TrainingConfig
from mner.training.state import load_training_state, rng_state, save_training_state, set_rng_state

__all__ = ["Trainer", "TrainResult"]


@dataclass
class TrainResult:
    best_metric: float | None
    best_epoch: int | None
    epochs_run: int
    global_step: int
    stopped_early: bool
    resumed_from_step: int | None
    seconds_per_epoch: list[float] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    output_dir: str = ""
    best_step: int | None = None

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


class _Log:
    """metrics.jsonl (+ TensorBoard when installed), main process only."""

    def __init__(self, folder: Path, enabled: bool, tensorboard: bool):
        self.enabled = enabled
        self.path = folder / "metrics.jsonl"
        self.writer = None
        self.note = ""
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(folder / "tensorboard"))
            except ImportError:
                self.note = "TensorBoard is not installed: metrics go to metrics.jsonl only"

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.writer is not None:
            step = record.get("step", 0)
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("step", "epoch"):
                    self.writer.add_scalar(f"{record.get('event', 'train')}/{key}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _no_decay(name: str, param: nn.Parameter) -> bool:
    return param.dim() < 2 or name.endswith(".bias") or "norm" in name.lower()


class Trainer:
    """See the module docstring.

    Args:
        model: the model to train (any ``nn.Module`` with the interface above).
        config: the :class:`TrainingConfig`.
        train_data: a map-style Dataset or Sequence, or an IterableDataset, of training items
            (tweets, episodes, ...); ``set_epoch(epoch)`` is called before each epoch if it has one.
        eval_data: the dev items (a Dataset or Sequence), or None.
        train_collate, eval_collate: their ``collate_fn``.
        evaluate: ``evaluate(model, loader, accelerator) -> {"f1": ..., ...}`` (dev metrics).
        accelerator: an existing :class:`accelerate.Accelerator` (one is made otherwise).
        on_step_end: optional callbacks ``f(trainer)`` after each optimizer step.
    """

    def __init__(self, model: nn.Module, config: TrainingConfig, train_data: Any, eval_data: Any | None,
                 train_collate: Callable, eval_collate: Callable | None = None,
                 evaluate: Callable[..., dict] | None = None, accelerator=None,
                 on_step_end: Sequence[Callable[["Trainer"], None]] = ()):
        from accelerate.utils import set_seed

        self.config = config
        self.accelerator = accelerator or make_accelerator(config)
        set_seed(config.seed)
        # AdamW's second moments of rarely seen embedding rows decay into subnormal floats,
        # which a CPU computes ~100x slower (measured here: an epoch went from 6 s to 90 s)
        torch.set_flush_denormal(True)
        self.model = model
        self.train_data = train_data
        self.eval_data = eval_data
        self.train_collate = train_collate
        self.eval_collate = eval_collate or train_collate
        self.evaluate_fn = evaluate
        self.on_step_end = list(on_step_end)
        self.output_dir = Path(config.output_dir)
        self.global_step = 0
        self.epoch = 0
        self.step_in_epoch = 0
        self.best_step: int | None = None
        if evaluate is not None and eval_data is None:
            raise ValueError("an evaluate function needs eval_data")

    # ------------------------------------------------------------------------------ setup
    def _optimizer(self) -> torch.optim.Optimizer:
        cfg = self.config
        groups_fn = getattr(self.model, "param_groups", None)
        groups = groups_fn() if callable(groups_fn) else {"new": [p for p in self.model.parameters() if p.requires_grad]}
        names = {id(p): n for n, p in self.model.named_parameters()}
        lr = {"pretrained": cfg.learning_rate, "new": cfg.head_learning_rate or cfg.learning_rate}
        param_groups = []
        for group, params in groups.items():
            if not params:
                continue
            decay = [p for p in params if not _no_decay(names.get(id(p), ""), p)]
            plain = [p for p in params if _no_decay(names.get(id(p), ""), p)]
            for ps, wd in ((decay, cfg.weight_decay), (plain, 0.0)):
                if ps:
                    param_groups.append({"params": ps, "lr": lr.get(group, cfg.learning_rate), "weight_decay": wd})
        if not param_groups:
            raise MNERError("the model has no trainable parameter: every part is frozen; make one trainable "
                            "(e.g. the text encoder) in the model config")
        return torch.optim.AdamW(param_groups, lr=cfg.learning_rate)

    @property
    def iterable(self) -> bool:
        """Whether the training data is an IterableDataset (read in its own order)."""
        return isinstance(self.train_data, IterableDataset)

    def _loaders(self) -> tuple[DataLoader, DataLoader | None]:
        cfg = self.config
        g = torch.Generator()
        g.manual_seed(cfg.seed)
        train = DataLoader(self.train_data, batch_size=cfg.batch_size, shuffle=cfg.shuffle and not self.iterable,
                           collate_fn=self.train_collate, num_workers=cfg.num_workers, generator=g,
                           worker_init_fn=_seed_worker, drop_last=False)
        evald = None
        if self.eval_data is not None:
            evald = DataLoader(self.eval_data, batch_size=cfg.eval_batch_size, shuffle=False,
                               collate_fn=self.eval_collate, num_workers=cfg.num_workers)
        return train, evald

    def _steps_per_epoch(self, loader) -> int | None:
        """Optimizer steps per epoch (per process); None for an iterable dataset without a length."""
        try:
            n = len(loader)
        except TypeError:
            return None
        return math.ceil(n / self.accelerator.num_processes)

    # ------------------------------------------------------------------------------ checkpoints
    def _save(self, name: str, with_state: bool, extra: dict | None = None) -> None:
        """Write ``<output_dir>/<name>``: the model, and with ``with_state`` the training state and
        a ``COMPLETE`` marker (the global step, written last), all into a temporary folder first,
        then swapped in whole (:class:`~mner.models.checkpoint.atomic_folder`). Once it is in
        place, what killed saves left behind is removed."""
        acc = self.accelerator
        acc.wait_for_everyone()
        if acc.is_main_process:
            with atomic_folder(self.output_dir / name) as staging:
                self._write_checkpoint(staging, with_state, extra)
            self._remove_leftovers(name)
        acc.wait_for_everyone()

    def _write_checkpoint(self, staging: Path, with_state: bool, extra: dict | None) -> None:
        acc = self.accelerator
        acc.unwrap_model(self.model).save_pretrained(staging, extra=extra)
        if with_state:
            components = {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": rng_state(),
                "trainer": {
                    "global_step": self.global_step, "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
                    "best_metric": self.best_metric, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs,
                    "best_step": self.best_step, "extra_best": self.extra_best,
                    "history": self.history, "seconds_per_epoch": self.seconds_per_epoch,
                    "num_processes": acc.num_processes, "config": _plain(self.config),
                },
            }
            if acc.scaler is not None:
                components["scaler"] = acc.scaler.state_dict()
            save_training_state(staging, components)
            (staging / "COMPLETE").write_text(str(self.global_step))

    def _remove_leftovers(self, name: str) -> None:
        """Remove what saves of ``name`` that a kill interrupted left (temporary and previous
        folders, :func:`~mner.models.checkpoint.interrupted_saves`)."""
        temporary, previous = interrupted_saves(self.output_dir / name)
        for folder in temporary + previous:
            shutil.rmtree(folder, ignore_errors=True)

    def _find_resume(self) -> Path | None:
        last = self.output_dir / "last"
        if (last / "COMPLETE").is_file():
            return last
        # a kill between the two renames of a save leaves the previous last/ as .last.old-<uuid>;
        # of several (leftovers of earlier kills), the one with the highest step
        best, best_step = None, -1
        for old in interrupted_saves(last)[1]:
            try:
                step = int((old / "COMPLETE").read_text())
            except (OSError, ValueError):
                continue
            if step > best_step:
                best, best_step = old, step
        return best

    def _resume(self, folder: Path) -> None:
        state = load_training_state(folder)
        t = state["trainer"]
        if t.get("num_processes") != self.accelerator.num_processes:
            raise RuntimeError(
                f"{folder}: saved by a run with {t.get('num_processes')} processes; resume it with the same "
                f"number (this run has {self.accelerator.num_processes}) or start a new output_dir"
            )
        self.accelerator.unwrap_model(self.model).load_state_dict(load_state_dict(folder / WEIGHTS_NAME))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if "scaler" in state and self.accelerator.scaler is not None:
            self.accelerator.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        self.global_step, self.epoch, self.step_in_epoch = t["global_step"], t["epoch"], t["step_in_epoch"]
        self.best_metric, self.best_epoch, self.bad_epochs = t["best_metric"], t["best_epoch"], t["bad_epochs"]
        self.history, self.seconds_per_epoch = t["history"], t["seconds_per_epoch"]
        self.best_step = t.get("best_step")
        self.extra_best = dict(t.get("extra_best") or {})

    # ------------------------------------------------------------------------------ evaluation
    def _evaluate(self, eval_loader, record: dict[str, Any], seconds: float | None) -> bool:
        """Run the dev evaluation into ``record``; update the best metric and the count of
        evaluations without improvement. True when it improved (or when there is no evaluation:
        every epoch end is then the best)."""
        cfg, acc = self.config, self.accelerator
        if self.evaluate_fn is None:
            self.best_epoch, self.best_step = self.epoch + 1, self.global_step
            return True
        metrics = self.evaluate_fn(self.model, eval_loader, acc)
        record.update(metrics)
        for name in cfg.also_select_on:                       # further selection rules, each its own best
            other = metrics[name]
            if self.extra_best.get(name) is None or other > self.extra_best[name]:
                self.extra_best[name] = other
                self._save(f"best-{name}", with_state=False, extra={"trained": {
                    "epoch": self.epoch + 1, "step": self.global_step, "dev": {name: other}}})
        value = metrics[cfg.metric]
        improved = self.best_metric is None or value > self.best_metric
        if improved:
            self.best_metric, self.best_epoch, self.best_step, self.bad_epochs = value, self.epoch + 1, self.global_step, 0
        else:
            self.bad_epochs += 1
        where = f"epoch {self.epoch + 1}" if seconds is not None else f"step {self.global_step}"
        acc.print(f"{where}: dev {cfg.metric} {100 * value:.2f}{' (best)' if improved else ''}"
                  + (f", {seconds:.0f} s" if seconds is not None else ""))
        return improved

    def _save_best(self) -> None:
        self._save("best", with_state=False, extra={"trained": {"epoch": self.best_epoch, "step": self.global_step,
                                                                "dev": {self.config.metric: self.best_metric}}})

    def _patience_spent(self) -> bool:
        patience = self.config.early_stopping_patience
        return patience is not None and self.bad_epochs >= patience

    # ------------------------------------------------------------------------------ training
    def train(self) -> TrainResult:
        from tqdm.auto import tqdm
        from transformers import get_linear_schedule_with_warmup

        cfg, acc = self.config, self.accelerator
        if acc.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        acc.wait_for_everyone()
        log = _Log(self.output_dir, acc.is_main_process, cfg.tensorboard)
        if log.note:
            acc.print(log.note)
        train_loader, eval_loader = self._loaders()
        steps_per_epoch = self._steps_per_epoch(train_loader)
        if steps_per_epoch is None:
            if cfg.max_steps is None:
                raise MNERError("the training data has no length (an IterableDataset without __len__): "
                                "set training.max_steps, or give the dataset a __len__")
            total_steps = cfg.max_steps
        else:
            total_steps = steps_per_epoch * cfg.epochs
            if cfg.max_steps is not None:
                total_steps = min(total_steps, cfg.max_steps)
        self.optimizer = self._optimizer()
        # accelerate steps a prepared scheduler once per process per step: schedule in global steps
        sched = get_linear_schedule_with_warmup(self.optimizer, int(cfg.warmup_ratio * total_steps * acc.num_processes),
                                                total_steps * acc.num_processes)
        if eval_loader is not None:
            self.model, self.optimizer, train_loader, eval_loader, self.scheduler = acc.prepare(
                self.model, self.optimizer, train_loader, eval_loader, sched)
        else:
            self.model, self.optimizer, train_loader, self.scheduler = acc.prepare(
                self.model, self.optimizer, train_loader, sched)
        self.best_metric: float | None = None
        self.best_epoch: int | None = None
        self.best_step = None
        self.extra_best: dict[str, float] = {}
        self.bad_epochs = 0  # evaluations without improvement (at epoch ends and every eval_every_steps)
        self.history: list[dict] = []
        self.seconds_per_epoch: list[float] = []
        resumed = None
        if cfg.resume:
            found = self._find_resume()
            if found is not None:
                self._resume(found)
                resumed = self.global_step
                acc.print(f"resumed from {found} at epoch {self.epoch + 1}, step {self.global_step}")
        elif acc.is_main_process:  # a fresh run: no checkpoint of an earlier run may stay to resume from
            shutil.rmtree(self.output_dir / "last", ignore_errors=True)
            self._remove_leftovers("last")
        stopped_early = False
        done = self.global_step >= total_steps
        while self.epoch < cfg.epochs and not done:
            self.model.train()
            set_epoch = getattr(self.train_data, "set_epoch", None)
            if callable(set_epoch):
                set_epoch(self.epoch)
            if hasattr(train_loader, "set_epoch"):
                train_loader.set_epoch(self.epoch)
            loader = train_loader
            if self.step_in_epoch:
                loader = acc.skip_first_batches(train_loader, self.step_in_epoch)
            bar = tqdm(total=steps_per_epoch, initial=self.step_in_epoch, disable=not (cfg.progress and acc.is_local_main_process),
                       desc=f"epoch {self.epoch + 1}/{cfg.epochs}", unit="step", dynamic_ncols=True)
            t0 = time.perf_counter()
            run_loss, run_parts, run_n, run_items, t_log = 0.0, {}, 0, 0, time.perf_counter()
            for batch in loader:
                out = self.model(batch)
                acc.backward(out.loss)
                if cfg.max_grad_norm:
                    acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.global_step += 1
                self.step_in_epoch += 1
                loss = float(out.loss.detach())
                if not math.isfinite(loss):
                    raise FloatingPointError(f"loss is {loss} at step {self.global_step}; lower the learning rate "
                                             "or check the data (mner data validate)")
                run_loss += loss
                run_n += 1
                run_items += len(batch)
                for k, v in getattr(out, "losses", {}).items():
                    run_parts[k] = run_parts.get(k, 0.0) + v
                bar.update(1)
                if self.global_step % cfg.log_every == 0 or self.step_in_epoch == steps_per_epoch:
                    self._log_train(log, bar, run_loss, run_parts, run_n, run_items, t_log)
                    run_loss, run_parts, run_n, run_items, t_log = 0.0, {}, 0, 0, time.perf_counter()
                for cb in self.on_step_end:
                    cb(self)
                epoch_end = steps_per_epoch is not None and self.step_in_epoch >= steps_per_epoch
                last_step = self.global_step >= total_steps  # the epoch-end evaluation follows at once
                if cfg.eval_every_steps and self.evaluate_fn is not None and not (epoch_end or last_step) \
                        and self.global_step % cfg.eval_every_steps == 0:
                    record: dict[str, Any] = {"event": "eval", "epoch": self.epoch + 1, "step": self.global_step}
                    improved = self._evaluate(eval_loader, record, None)
                    self.model.train()
                    log.write(record)
                    self.history.append({k: v for k, v in record.items() if not isinstance(v, dict)})
                    if improved:
                        self._save_best()
                    if self._patience_spent():
                        stopped_early = done = True
                        self._save("last", with_state=True)
                        acc.print(f"early stopping: no dev improvement in {self.bad_epochs} evaluations")
                        break
                if cfg.save_every_steps and self.global_step % cfg.save_every_steps == 0 and not epoch_end:
                    self._save("last", with_state=True)
                if self.global_step >= total_steps:
                    done = True
                    break
            if run_n and steps_per_epoch is None and not stopped_early:  # an epoch of unknown length: its tail
                self._log_train(log, bar, run_loss, run_parts, run_n, run_items, t_log)
            bar.close()
            if stopped_early:
                break
            seconds = time.perf_counter() - t0
            self.seconds_per_epoch.append(seconds)
            record = {"event": "eval", "epoch": self.epoch + 1, "step": self.global_step, "epoch_seconds": seconds}
            improved = self._evaluate(eval_loader, record, seconds)
            log.write(record)
            self.history.append({k: v for k, v in record.items() if not isinstance(v, dict)})
            self.epoch += 1
            self.step_in_epoch = 0
            if improved:
                self._save_best()
            self._save("last", with_state=True)
            if self._patience_spent():
                stopped_early = True
                acc.print(f"early stopping: no dev improvement in {self.bad_epochs} evaluations")
                break
        log.close()
        result = TrainResult(self.best_metric, self.best_epoch, self.epoch, self.global_step, stopped_early, resumed,
                             self.seconds_per_epoch, self.history, str(self.output_dir), self.best_step)
        if acc.is_main_process:
            (self.output_dir / "train_result.json").write_text(json.dumps(result.to_dict(), indent=2))
        return result

    def _log_train(self, log: _Log, bar, run_loss: float, run_parts: dict, run_n: int, run_items: int,
                   t_log: float) -> None:
        """One ``train`` record: mean loss (and parts) since the last one, learning rate, items/s."""
        dt = max(time.perf_counter() - t_log, 1e-9)
        rec = {"event": "train", "step": self.global_step, "epoch": self.epoch + 1,
               "loss": run_loss / run_n, "lr": self.scheduler.get_last_lr()[0],
               "items_per_s": run_items * self.accelerator.num_processes / dt}
        rec.update({f"loss_{k}": v / run_n for k, v in run_parts.items()})
        log.write(rec)
        bar.set_postfix(loss=f"{rec['loss']:.3f}", items_s=f"{rec['items_per_s']:.0f}")


def make_accelerator(config: TrainingConfig):
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, DistributedDataParallelKwargs

    mp = config.mixed_precision
    if mp == "auto":
        mp = "bf16" if (not config.cpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported()) else "no"
    # find_unused_parameters: pretrained encoders carry layers the tagger never uses (BERT's
    # pooler); without it distributed training stops at the second step
    return Accelerator(mixed_precision=mp, cpu=config.cpu,
                       dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=config.seed),
                       kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])


def _seed_worker(worker_id: int) -> None:
    import random

    import numpy as np

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def _plain(obj: Any) -> Any:
    from mner.config import to_dict

    return to_dict(obj)
