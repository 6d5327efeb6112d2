"""An experiment: data + model + training, from one YAML file (``mner train CONFIG.yaml``).

The YAML has three sections (every key optional, unknown keys refused)::

    model_type: maf
    model:                       # MAFConfig
      visual_view: caption
      text_encoder: {name: minilm}
    data:                        # DataConfig
      corpus: ../shared/data/twitter2017
    training:                    # TrainingConfig
      epochs: 10
      output_dir: runs/maf-2017

The data is read by the data layer (:func:`mner.data.prepare.prepare_data`: captions, images and
their policies applied, every count reported); :func:`train` builds the model with its label set
from the training data, fills the feature cache once through the model's processor, trains, and
scores the best model on the test split.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from mner.config import ConfigError, apply_overrides, from_dict, load_yaml, to_dict
from mner.data.prepare import DataConfig, prepare_data
from mner.encoders.cache import feature_cache
from mner.models import MODELS
from mner.tagging.labels import LabelSet
from mner.training.config import TrainingConfig

__all__ = ["ExperimentConfig", "load_experiment", "train"]


@dataclass
class ExperimentConfig:
    model_type: str = "maf"
    model: Any = None
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)


def load_experiment(source: str | Path | dict, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """An :class:`ExperimentConfig` from a YAML file (or dict) and ``--set`` overrides."""
    raw = load_yaml(str(source)) if not isinstance(source, dict) else dict(source)
    raw = apply_overrides(raw, overrides)
    known = {"model_type", "model", "data", "training"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"unknown config section(s) {unknown}; the sections are {sorted(known)}")
    model_type = raw.get("model_type", "maf")
    if model_type not in MODELS:
        raise ConfigError(f"model_type {model_type!r}: this mner knows {sorted(MODELS)}")
    model_cfg = from_dict(MODELS[model_type].config_class, raw.get("model"), "model")
    return ExperimentConfig(model_type, model_cfg, from_dict(DataConfig, raw.get("data"), "data"),
                            from_dict(TrainingConfig, raw.get("training"), "training"))


def train(cfg: ExperimentConfig, log=print) -> dict[str, Any]:
    """Train, select on dev, score the best model on test; return a summary dict."""
    from mner.evaluation import dev_metrics, evaluate_examples, predict_tags, write_predictions
    from mner.training.trainer import Trainer, make_accelerator

    acc = make_accelerator(cfg.training)
    say = log if acc.is_main_process else (lambda *_: None)
    model_cls = MODELS[cfg.model_type]
    mcfg = cfg.model
    views = getattr(mcfg, "visual_view", None) if not getattr(mcfg, "no_image", False) else None
    data = prepare_data(cfg.data, needs_images=views in ("pixels", "both"),
                        needs_captions=views in ("caption", "both"), log=say)
    if "train" not in data.splits:
        raise ConfigError("no training split: give data.train, or a corpus folder with a train file")
    label_source = [ex.tags for s in ("train", "valid") for ex in data.splits.get(s, []) if ex.tags]
    mcfg.labels = list(LabelSet.from_tag_sequences(label_source).labels)
    say(f"labels: {' '.join(mcfg.labels)}")
    from accelerate.utils import set_seed

    set_seed(cfg.training.seed)  # the new layers' initial weights come from this seed
    model = model_cls(mcfg)
    say(f"model: {getattr(mcfg, 'variant', cfg.model_type)}, {model.num_parameters() / 1e6:.1f} M parameters "
        f"({model.num_parameters(trainable_only=True) / 1e6:.1f} M trainable)")
    cache = feature_cache(cfg.data.feature_cache)
    processor = model.processor(data.image_store, cache, cfg.training.seed)
    if processor.views:
        with acc.main_process_first():
            for split, exs in data.splits.items():
                processor.precompute(exs, progress=cfg.training.progress and acc.is_main_process,
                                     desc=f"visual features ({split})")
        say(f"feature cache: {cache.stats()}")
    train_collate = processor.collate(train=True)
    eval_collate = processor.collate(train=False)
    valid = data.splits.get("valid")
    trainer = Trainer(model, cfg.training, data.splits["train"], valid, train_collate, eval_collate,
                      dev_metrics(valid) if valid else None, accelerator=acc)
    out_dir = Path(cfg.training.output_dir)
    if acc.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "experiment.json").write_text(json.dumps(
            {"model_type": cfg.model_type, "model": to_dict(mcfg), "data": to_dict(cfg.data),
             "training": to_dict(cfg.training)}, indent=2))
    result = trainer.train()
    summary: dict[str, Any] = {"output_dir": str(out_dir), "best_epoch": result.best_epoch,
                               "dev_f1": result.best_metric, "epochs_run": result.epochs_run,
                               "seconds_per_epoch": result.seconds_per_epoch, "resumed_from_step": result.resumed_from_step}
    test = data.splits.get("test")
    if test and acc.is_main_process:
        best = model_cls.from_pretrained(out_dir / "best")
        collate = best.processor(data.image_store, cache).collate(train=False)
        from torch.utils.data import DataLoader

        loader = DataLoader(test, batch_size=cfg.training.eval_batch_size, collate_fn=collate)
        preds = predict_tags(best.to(acc.device), loader)
        report = evaluate_examples(test, preds)
        write_predictions(test, preds, out_dir / "predictions" / "test.conll")
        (out_dir / "test_report.json").write_text(json.dumps(report.to_dict(), indent=2))
        say("test:\n" + report.format())
        summary.update({"test_precision": report.micro.precision, "test_recall": report.micro.recall,
                        "test_f1": report.micro.f1,
                        "test_f1_per_type": {t: s.f1 for t, s in report.per_type.items()}})
    acc.wait_for_everyone()
    return summary if acc.is_main_process else {}
