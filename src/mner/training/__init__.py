"""Training: a model-independent trainer on accelerate, its config and resumable state."""

from mner.training.config import TrainingConfig
from mner.training.trainer import Trainer, TrainResult

__all__ = ["TrainingConfig", "Trainer", "TrainResult"]
