"""The configuration of a training run (model-independent)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mner.config import ConfigError

__all__ = ["TrainingConfig"]


@dataclass
class TrainingConfig:
    """How to train. Defaults follow the MAF authors' code where it says (learning rate 5e-5,
    10 % warmup, weight decay 0.01, seed 37) and common practice elsewhere.

    Attributes:
        output_dir: where ``best/``, ``last/`` and ``metrics.jsonl`` go.
        epochs: passes over the training data (the paper: 24 on Twitter-2015, 23 on 2017).
        batch_size, eval_batch_size: per process (the paper: 64 / 16).
        learning_rate: of the pretrained encoder(s).
        head_learning_rate: of the new layers (interaction, matching, alignment, gate, CRF);
            None = ``learning_rate``.
        weight_decay, warmup_ratio, max_grad_norm: AdamW decay (not on biases and norms), linear
            warmup share of all steps, gradient clipping (0 disables).
        mixed_precision: ``auto`` (bf16 on a GPU that has it, else none), ``no``, ``fp16``, ``bf16``.
        seed: seeds Python, NumPy, torch (all devices) and the data order.
        early_stopping_patience: stop after this many evaluations without dev improvement (None:
            never); evaluations are at epoch ends, and every ``eval_every_steps`` steps when set.
        eval_every_steps: also evaluate (best-model selection, early stopping count) every N
            optimizer steps inside an epoch; None = at epoch ends only.
        shuffle: shuffle a map-style training set every epoch (off for a dataset that is random
            already, e.g. episodes resampled each epoch; an IterableDataset is never shuffled).
        metric: the dev metric that picks the best epoch (a key of the evaluation's result).
        also_select_on: further metrics of the evaluation's result, each keeping its own best model
            in ``<output_dir>/best-<metric>/`` (a second model-selection rule, e.g. on dev episodes of
            other types); ``best/`` and early stopping follow ``metric`` alone.
        log_every: optimizer steps between two log lines.
        num_workers: DataLoader worker processes (0: load in the main process).
        resume: continue from ``<output_dir>/last`` when it exists.
        save_every_steps: also save ``last/`` every N steps inside an epoch (None: at epoch ends).
        max_steps: stop after this many optimizer steps (smoke tests).
        cpu: force the CPU even where a GPU is present.
        progress: show a progress bar.
        tensorboard: also write TensorBoard events when TensorBoard is installed.
    """

    output_dir: str = "runs/maf"
    epochs: int = 10
    batch_size: int = 32
    eval_batch_size: int = 64
    learning_rate: float = 5e-5
    head_learning_rate: float | None = None
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    mixed_precision: str = "auto"
    seed: int = 37
    early_stopping_patience: int | None = None
    eval_every_steps: int | None = None
    shuffle: bool = True
    metric: str = "f1"
    also_select_on: list[str] = field(default_factory=list)
    log_every: int = 20
    num_workers: int = 0
    resume: bool = True
    save_every_steps: int | None = None
    max_steps: int | None = None
    cpu: bool = False
    progress: bool = True
    tensorboard: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.eval_batch_size < 1:
            raise ConfigError("epochs, batch_size and eval_batch_size must be >= 1")
        if self.mixed_precision not in ("auto", "no", "fp16", "bf16"):
            raise ConfigError(f"mixed_precision {self.mixed_precision!r}: choose auto, no, fp16 or bf16")
        if self.eval_every_steps is not None and self.eval_every_steps < 1:
            raise ConfigError(f"eval_every_steps must be >= 1 (or null: at epoch ends only), got {self.eval_every_steps}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
