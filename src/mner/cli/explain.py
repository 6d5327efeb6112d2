"""``mner explain CHECKPOINT --text ... [--image ...] --out FILE.png``: what each entity of one
tweet looked at (the web page's explanation as a picture, :mod:`mner.report.explain`; a few-shot
checkpoint with ``--support``: its entities, with no attention to draw);
``mner report RUN_DIR [RUN_DIR ...] --out DIR``: pictures of training runs (:mod:`mner.report.runs`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mner.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="draw what each entity of a tweet looked at (PNG)",
                       description="Tag one tweet (with its image and/or caption) and draw, for each entity, "
                                   "the cross-modal interaction's attention over the image regions (a heatmap) "
                                   "or the caption's words (bars). Prints the entities as JSON.")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--text", required=True)
    p.add_argument("--image", type=Path, default=None)
    p.add_argument("--caption", default=None)
    p.add_argument("--out", type=Path, required=True, help="the PNG to write")
    p.add_argument("--max-entities", type=int, default=6)
    from mner.cli.fewshot import add_support

    add_support(p, "the tweet is tagged with their types (a few-shot model has no cross-modal attention to "
                   "draw: the picture shows the entities)", "the support file's folder")
    p.set_defaults(func=cmd_explain)
    register_report(sub)


def cmd_explain(args) -> int:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("mner explain needs matplotlib: pip install 'mner[report]' (scripts/setup.sh installs it)") from None
    if args.out.suffix.lower() != ".png":
        raise UsageError(f"--out {args.out}: give a .png file")
    from mner.data.images import ImageStore
    from mner.pipeline import Pipeline
    from mner.report.explain import explain_figure
    from mner.explain.predictor import InferenceItem, Predictor

    from mner.cli.infer import _needs_support

    _needs_support(args)   # a few-shot model without --support, or --support with MAF: one line
    pipe = Pipeline.from_pretrained(args.checkpoint, support=args.support, support_format=args.support_format,
                                    support_images=args.support.parent if args.support is not None else None)
    image = ImageStore(None).open(args.image) if args.image is not None else None
    predictor = Predictor(pipe)
    result = predictor([InferenceItem(args.text, image, args.caption, explain=True)])[0]
    explain_figure(args.text, result, image, args.out, max_entities=args.max_entities,
                   attention=pipe.outputs_attentions)
    slim = [{k: v for k, v in e.items() if k != "explanation"} for e in result["entities"]]
    print(json.dumps({"entities": slim, "match_probability": result["match_probability"],
                      "explanations": pipe.outputs_attentions, "out": str(args.out)}, ensure_ascii=False))
    return 0


def register_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="pictures of training runs and an HTML index",
                       description="Learning curves (loss parts, dev F1 per epoch), test F1 per type of the "
                                   "runs side by side, a confusion matrix of entity types (with missed and "
                                   "spurious), the worst test tweets and what their entities looked at.")
    p.add_argument("runs", type=Path, nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", type=Path, required=True, help="folder for the PNGs and index.html")
    p.add_argument("--worst", type=int, default=10, help="worst test tweets to list (default 10)")
    p.add_argument("--explain", type=int, default=3, help="worst tweets with an image to draw (default 3)")
    p.add_argument("--images", type=Path, default=None,
                   help="the folder of the runs' tweet images (default: the run's recorded image folder, a "
                        "relative one found from the folder the training ran in, or beside its corpus)")
    p.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("mner report needs matplotlib: pip install 'mner[report]' (scripts/setup.sh installs it)") from None
    from mner.report.runs import write_report

    index = write_report(args.runs, args.out, worst=args.worst, explain=args.explain, images=args.images)
    print(json.dumps({"index": str(index), "files": sorted(p.name for p in args.out.iterdir())}))
    return 0
