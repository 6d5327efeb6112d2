"""A few-shot experiment from one YAML file (``mner fewshot train CONFIG.yaml``).

The YAML has four sections (every key optional, unknown keys refused)::

    model_type: mousing                 # mousing | protobert | nnshot | proto-maf
    model: {...}                        # the model's config dataclass
    data:                               # mner.data.prepare.DataConfig (corpus, captions, images, ...)
      corpus: ../shared/data/twitter2017
      type_map: OTHER=MISC
    episodes:                           # EpisodeConfig: which types, how many shots, which files
      target_types: [PER, LOC]
      k: 5
    training: {...}                     # TrainingConfig; batch_size = episodes per step

Training follows the protocol of ``docs/models/mousing.md``: the source types are the corpus'
types other than the targets; the training pool is the train split with every target mention
relabelled O; each epoch draws ``train_episodes`` new N-way K~2K episodes of the source types from
it (:class:`~mner.data.sampling.EpisodeDataset`). The model is selected on dev episodes of the
*target* types (a file, or sampled once from the valid split), and the best model is scored on the
test episode file when one is given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from mner.config import apply_overrides, from_dict, load_yaml, to_dict
from mner.data.episodes import Episode, read_episodes, write_episodes
from mner.data.prepare import DataConfig, prepare_data
from mner.data.sampling import EpisodeDataset, EpisodeSampler, restrict_types
from mner.errors import MNERError
from mner.training.config import TrainingConfig

__all__ = ["EpisodeConfig", "FewShotConfig", "load_fewshot", "train_fewshot", "FEWSHOT_MODELS"]

#: Aliases accepted for the one type the two benchmarks name differently.
TYPE_ALIASES = {"OTHER": "MISC", "OTHERS": "MISC"}


def canonical_type(t: str) -> str:
    return TYPE_ALIASES.get(t.strip().upper(), t.strip().upper())


@dataclass
class EpisodeConfig:
    """Which episodes a few-shot run trains and is selected on.

    Attributes:
        target_types: the N types of the test (and dev) episodes; never seen in training.
        source_types: the training types; None = every type of the training split but the targets.
        k: shots of the training episodes (support and query are N-way K~2K).
        query_k: K of the training episodes' query sets; None = ``k``.
        train_episodes: episodes drawn per epoch (new ones every epoch).
        dev: a dev episode file; None = ``dev_episodes`` sampled from the valid split once.
        dev_episodes: how many to sample when ``dev`` is None.
        dev_k: K of the sampled dev episodes; None = ``k``.
        test: a test episode file scored with the best model at the end (optional).
        dev_source: a file of dev episodes of the *source* types (``mner fewshot protocol`` writes
            ``dev-source-k{K}.jsonl``): when given, each evaluation also scores them
            (``source_f1``) and the model best on them is kept in ``best-source_f1/``, a
            selection that never reads a target-type label (optional).
        seed: of every episode sampled here (the training seed is ``training.seed``).
    """

    target_types: list[str] = field(default_factory=list)
    source_types: list[str] | None = None
    k: int = 5
    query_k: int | None = None
    train_episodes: int = 200
    dev: str | None = None
    dev_episodes: int = 100
    dev_k: int | None = None
    test: str | None = None
    dev_source: str | None = None
    seed: int = 1

    def __post_init__(self) -> None:
        self.target_types = [canonical_type(t) for t in self.target_types]
        if self.source_types is not None:
            self.source_types = [canonical_type(t) for t in self.source_types]
            both = sorted(set(self.source_types) & set(self.target_types))
            if both:
                raise MNERError(f"episodes: types {both} are both source and target; the few-shot task "
                                "keeps them apart")
        for name in ("k", "train_episodes", "dev_episodes"):
            if getattr(self, name) < 1:
                raise MNERError(f"episodes.{name} must be >= 1, got {getattr(self, name)}")


def _default_data() -> DataConfig:
    return DataConfig(type_map="OTHER=MISC")


@dataclass
class FewShotConfig:
    model_type: str = "mousing"
    model: Any = None
    data: DataConfig = field(default_factory=_default_data)
    episodes: EpisodeConfig = field(default_factory=EpisodeConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)


def FEWSHOT_MODELS() -> dict[str, type]:
    from mner.models import MODELS
    from mner.models.episodic import EpisodicTagger

    return {k: v for k, v in MODELS.items() if issubclass(v, EpisodicTagger)}


def load_fewshot(source: str | Path | dict, overrides: Sequence[str] = ()) -> FewShotConfig:
    """A :class:`FewShotConfig` from a YAML file (or dict) and ``--set`` overrides."""
    raw = load_yaml(str(source)) if not isinstance(source, dict) else dict(source)
    raw = apply_overrides(raw, overrides)
    known = {"model_type", "model", "data", "episodes", "training"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise MNERError(f"unknown config section(s) {unknown}; the sections are {sorted(known)}")
    models = FEWSHOT_MODELS()
    model_type = raw.get("model_type", "mousing")
    if model_type not in models:
        raise MNERError(f"model_type {model_type!r}: the few-shot models are {sorted(models)}")
    data = dict(raw.get("data") or {})
    data.setdefault("type_map", "OTHER=MISC")
    return FewShotConfig(model_type, from_dict(models[model_type].config_class, raw.get("model"), "model"),
                         from_dict(DataConfig, data, "data"), from_dict(EpisodeConfig, raw.get("episodes"), "episodes"),
                         from_dict(TrainingConfig, raw.get("training"), "training"))


def _types_of(examples) -> set[str]:
    return {t[2:] for ex in examples for t in (ex.tags or ()) if t != "O"}


def build_episodes(cfg: FewShotConfig, log=print):
    """Read the data; return (train dataset, source pool, dev episodes, test episodes, image store)."""
    ep = cfg.episodes
    mcfg = cfg.model
    views = () if getattr(mcfg, "no_image", True) else mcfg.views
    data = prepare_data(cfg.data, needs_images="pixels" in views, needs_captions="caption" in views, log=log)
    if "train" not in data.splits:
        raise MNERError("data: the few-shot training needs a train split (the source-type episodes come from it)")
    if not ep.target_types:
        raise MNERError("episodes.target_types: name the N target types, e.g. [PER, LOC]")
    train_types = _types_of(data.splits["train"])
    missing = sorted(set(ep.target_types) - train_types - _types_of(data.splits.get("valid", [])))
    if missing:
        log(f"note: target types {missing} do not occur in train/valid")
    source = ep.source_types or sorted(train_types - set(ep.target_types))
    if not source:
        raise MNERError(f"no source type left: the training split has only {sorted(train_types)}")
    pool = [restrict_types(ex, source) for ex in data.splits["train"]]
    train_set = EpisodeDataset(pool, source, ep.k, ep.train_episodes, ep.seed, query_k=ep.query_k)
    log(f"source types {source} ({len(pool)} training tweets, target mentions relabelled O); "
        f"target types {ep.target_types}; {ep.train_episodes} training episodes per epoch, K={ep.k}")
    if ep.dev is not None:
        dev = read_episodes(ep.dev)
    elif "valid" in data.splits:
        dev = EpisodeSampler(data.splits["valid"], ep.target_types, ep.dev_k or ep.k,
                             seed=ep.seed + 1000).sample_many(ep.dev_episodes)
    else:
        dev = None
    test = read_episodes(ep.test) if ep.test is not None else None
    if ep.dev_source is not None:
        dev_source = read_episodes(ep.dev_source)
        types = sorted(set(t for e in dev_source for t in e.types))
        if set(types) & set(ep.target_types):
            raise MNERError(f"episodes.dev_source: {ep.dev_source} has the target types "
                            f"{sorted(set(types) & set(ep.target_types))}; it must hold source-type episodes only")
    for name, eps in (("dev", dev), ("test", test)):
        if eps and sorted(set(t for e in eps for t in e.types)) != sorted(ep.target_types):
            raise MNERError(f"episodes.{name}: its episodes have types "
                            f"{sorted(set(t for e in eps for t in e.types))}, not the target types {ep.target_types}")
    return train_set, pool, dev, test, data.image_store


def train_fewshot(cfg: FewShotConfig, log=print) -> dict[str, Any]:
    """Train episodically, select on dev episodes, score the test episodes; a summary dict."""
    from accelerate.utils import set_seed

    from mner.encoders.cache import feature_cache
    from mner.fewshot.evaluation import episode_metrics, predict_episodes, score_episodes
    from mner.training.trainer import Trainer, make_accelerator

    cfg.training.shuffle = False  # the episode dataset is random already
    acc = make_accelerator(cfg.training)
    say = log if acc.is_main_process else (lambda *_: None)
    train_set, pool, dev, test, store = build_episodes(cfg, say)
    model_cls = FEWSHOT_MODELS()[cfg.model_type]
    set_seed(cfg.training.seed)
    model = model_cls(cfg.model)
    if hasattr(model, "fit_transitions"):
        model.fit_transitions([ex.tags for ex in pool])
    say(f"model: {getattr(cfg.model, 'variant', cfg.model_type)}, {model.num_parameters() / 1e6:.1f} M parameters "
        f"({model.num_parameters(trainable_only=True) / 1e6:.1f} M trainable)")
    cache = feature_cache(cfg.data.feature_cache)
    processor = model.processor(store, cache, cfg.training.seed)
    if processor.views:
        tweets = list(pool) + [ex for eps in (dev or [], test or []) for e in eps for ex in e.support + e.query]
        with acc.main_process_first():
            processor.precompute(tweets, progress=cfg.training.progress and acc.is_main_process)
    out_dir = Path(cfg.training.output_dir)
    evaluate = episode_metrics(dev, processor, batch_size=cfg.training.eval_batch_size) if dev else None
    if evaluate is not None and cfg.episodes.dev_source is not None:
        target_eval = evaluate
        source_eval = episode_metrics(read_episodes(cfg.episodes.dev_source), processor,
                                      batch_size=cfg.training.eval_batch_size)

        def evaluate(model, loader=None, accelerator=None) -> dict:        # noqa: F811
            out = target_eval(model, loader, accelerator)
            out.update({f"source_{k}": v for k, v in source_eval(model, loader, accelerator).items()})
            return out

        if "source_f1" not in cfg.training.also_select_on:
            cfg.training.also_select_on = [*cfg.training.also_select_on, "source_f1"]
    trainer = Trainer(model, cfg.training, train_set, dev, processor.collate(train=True),
                      processor.collate(train=False), evaluate, accelerator=acc)
    if acc.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "experiment.json").write_text(json.dumps(
            {"model_type": cfg.model_type, "model": to_dict(cfg.model), "data": to_dict(cfg.data),
             "episodes": to_dict(cfg.episodes), "training": to_dict(cfg.training)}, indent=2))
    result = trainer.train()
    summary: dict[str, Any] = {"output_dir": str(out_dir), "best_epoch": result.best_epoch,
                               "dev_f1": result.best_metric, "epochs_run": result.epochs_run,
                               "global_step": result.global_step,
                               "seconds_per_epoch": result.seconds_per_epoch}
    if test and acc.is_main_process:
        best = model_cls.from_pretrained(out_dir / "best").to(acc.device)
        proc = best.processor(store, cache)
        preds = predict_episodes(best, test, proc, cfg.training.eval_batch_size)
        report = score_episodes(test, preds)
        (out_dir / "test_report.json").write_text(json.dumps(report.to_dict(), indent=2))
        say("test episodes:\n" + report.format())
        summary.update({"test_precision": report.micro.precision, "test_recall": report.micro.recall,
                        "test_f1": report.micro.f1, "test_episodes_per_second": preds.episodes_per_second})
    acc.wait_for_everyone()
    return summary if acc.is_main_process else {}
