"""``mner train CONFIG.yaml [--set key=value ...]``."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model from a YAML config",
        description="Train from a YAML config with model:, data: and training: sections "
                    "(see configs/ for examples). The config's model_type picks the recipe (mner.tasks): a "
                    "model with its own entity types (maf) is trained on the corpus; a few-shot model "
                    "(mousing, protobert, nnshot, proto-maf) on episodes of its source types, with the "
                    "config's episodes: section (as mner fewshot train). Runs on one process, or on several with "
                    "`accelerate launch --num_processes N [--cpu] -m mner train CONFIG.yaml`. "
                    "Continues from <output_dir>/last when it exists (training.resume).",
    )
    p.add_argument("config", help="the YAML config file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set training.epochs=3 (repeatable)")
    p.add_argument("--output-dir", default=None, help="shorthand for --set training.output_dir=DIR")
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    from mner.config import apply_overrides, load_yaml
    from mner.tasks import recipe_task

    overrides = list(args.overrides)
    if args.output_dir:
        overrides.append(f"training.output_dir={args.output_dir}")
    raw = load_yaml(str(args.config))
    task = recipe_task(apply_overrides(raw, overrides))  # the recipe of the model's task: corpus or episodes
    summary = task.trainer()(task.load_recipe(raw, overrides))
    if summary:  # the main process only, when several train together
        print(json.dumps(summary))
    return 0
