"""``mner train CONFIG.yaml [--set key=value ...]``."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model from a YAML config",
        description="Train from a YAML config with model:, data: and training: sections "
                    "(see configs/ for examples). Runs on one process, or on several with "
                    "`accelerate launch --num_processes N [--cpu] -m mner train CONFIG.yaml`. "
                    "Continues from <output_dir>/last when it exists (training.resume).",
    )
    p.add_argument("config", help="the YAML config file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set training.epochs=3 (repeatable)")
    p.add_argument("--output-dir", default=None, help="shorthand for --set training.output_dir=DIR")
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    from mner.experiment import load_experiment, train

    overrides = list(args.overrides)
    if args.output_dir:
        overrides.append(f"training.output_dir={args.output_dir}")
    cfg = load_experiment(args.config, overrides)
    summary = train(cfg)
    if summary:  # the main process only, when several train together
        print(json.dumps(summary))
    return 0
