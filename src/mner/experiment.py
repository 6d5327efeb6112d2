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

:func:`prepare_data` reads the corpus (captions, images and their policies applied, every
count reported), :func:`train` builds the model with its label set from the training data,
fills the feature cache once, trains, and scores the best model on the test split.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from mner.config import ConfigError, apply_overrides, from_dict, load_yaml, to_dict
from mner.data.captions import CaptionStore, resolve_caption_file
from mner.data.corpus import Corpus
from mner.data.example import Example
from mner.data.images import ImageStore
from mner.models import MODELS
from mner.tagging import convert_tags
from mner.tagging.labels import LabelSet
from mner.training.config import TrainingConfig

__all__ = ["DataConfig", "ExperimentConfig", "load_experiment", "prepare_data", "train", "feature_cache"]


@dataclass
class DataConfig:
    """Where the data is and how to read it.

    Attributes:
        corpus: a folder with train/valid/test files (any supported format).
        train, valid, test: single files (override the corpus' splits).
        format: ``auto``, ``twitter``, ``conll`` or ``jsonl``.
        type_map: rename entity types while reading (e.g. ``OTHER=MISC``).
        captions: a caption file, ``auto`` (next to the corpus, see ``mner data stats``), or
            None / ``none`` (see :func:`mner.data.captions.resolve_caption_file`).
        images: the image folder (None: no pixels).
        missing_images: ``error`` | ``blank`` | ``drop`` for tweets whose image is missing or unreadable.
        check_images: decode every image before training (finds broken files up front).
        max_train: use only the first N training tweets (quick runs); None = all.
        feature_cache: folder of the frozen-feature cache; ``auto`` = ``$MNER_CACHE/features``
            (default ``~/.cache/mner/features``); None = in memory only.
    """

    corpus: str | None = None
    train: str | None = None
    valid: str | None = None
    test: str | None = None
    format: str = "auto"
    type_map: str | None = None
    captions: str | None = "auto"
    images: str | None = None
    missing_images: str = "error"
    check_images: bool = True
    max_train: int | None = None
    feature_cache: str | None = "auto"

    def __post_init__(self) -> None:
        from mner.data.formats import FORMATS
        from mner.data.images import POLICIES

        if self.format not in ("auto",) + FORMATS:
            raise ConfigError(f"data.format {self.format!r}: choose auto, {', '.join(FORMATS)}")
        if self.missing_images not in POLICIES:
            raise ConfigError(f"data.missing_images {self.missing_images!r}: choose {', '.join(POLICIES)}")
        if self.max_train is not None and self.max_train < 1:
            raise ConfigError(f"data.max_train must be >= 1, got {self.max_train}")


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


def feature_cache(spec: str | None):
    from mner.encoders.cache import FeatureCache

    if spec is None:
        return FeatureCache()
    if spec == "auto":
        from mner.encoders.offline import cache_dir

        return FeatureCache(cache_dir() / "features")
    return FeatureCache(spec)


@dataclass
class PreparedData:
    splits: dict[str, list[Example]]
    notes: list[str]
    image_store: ImageStore | None


def prepare_data(cfg: DataConfig, needs_images: bool = False, needs_captions: bool = False,
                 log=print) -> PreparedData:
    """Read the splits, attach captions, apply the image policy, read tags the conlleval way."""
    notes: list[str] = []
    corpus = None
    if cfg.corpus is not None:
        corpus = Corpus.from_folder(cfg.corpus, type_map=cfg.type_map, format=cfg.format)
    splits: dict[str, list[Example]] = dict(corpus.splits) if corpus is not None else {}
    files = dict(corpus.files) if corpus is not None else {}
    from mner.data.formats import read_file

    for name in ("train", "valid", "test"):
        path = getattr(cfg, name)
        if path is not None:
            splits[name] = read_file(path, cfg.format, cfg.type_map)
            files[name] = Path(path)
    if not splits:
        raise ConfigError("data: give a corpus folder (data.corpus) or split files (data.train, ...)")
    if cfg.max_train is not None and "train" in splits:
        splits["train"] = splits["train"][: cfg.max_train]
        notes.append(f"train: first {len(splits['train'])} tweets only (data.max_train)")
    work = Corpus(splits, files, Path(cfg.corpus) if cfg.corpus else None)

    caption_file, caption_note = resolve_caption_file(
        cfg.captions, Path(cfg.corpus) if cfg.corpus else next(iter(files.values())))
    notes.append(caption_note)
    if caption_file is not None:
        work = work.with_captions(CaptionStore.from_file(caption_file))
        for split, rep in work.reports.items():
            notes.append(f"{split} {rep['captions'].summary()}")
    elif needs_captions:
        raise ConfigError("this model reads captions: give a caption file (data.captions, or --captions FILE)")

    store = None
    if cfg.images is not None:
        store = ImageStore(cfg.images)
        work = work.with_images(store, cfg.missing_images, check_content=cfg.check_images)
        for split, rep in work.reports.items():
            notes.append(f"{split} {rep['images'].summary()}")
    elif needs_images:
        if cfg.missing_images != "blank":
            raise ConfigError("this model looks at pixels: give the image folder (data.images, or --images DIR), "
                             "or choose missing_images blank to go on without any image")
        work = Corpus({k: [ex.replace(image=None) for ex in v] for k, v in work.splits.items()}, work.files, work.root)
        notes.append("images: no image folder; every tweet is kept without image (missing_images: blank)")

    out: dict[str, list[Example]] = {}
    for split, exs in work.splits.items():
        fixed, n = [], 0
        for ex in exs:
            if ex.tags is None:
                fixed.append(ex)
                continue
            tags = convert_tags(ex.tags, "iob1", "iob2")
            if tuple(tags) != ex.tags:
                n += sum(a != b for a, b in zip(tags, ex.tags))
                ex = ex.replace(tags=tuple(tags))
            fixed.append(ex)
        if n:
            notes.append(f"{split}: {n} I- tags without B- read as entity starts (B-), as conlleval reads them")
        out[split] = fixed
    for n in notes:
        log(n)
    return PreparedData(out, notes, store)


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
