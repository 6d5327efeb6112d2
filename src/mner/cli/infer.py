"""``mner evaluate CHECKPOINT DATA`` and ``mner predict CHECKPOINT``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mner.data.formats import FORMATS
from mner.data.images import POLICIES
from mner.errors import MNERError, UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score a trained model on labelled data and write its predictions",
                       description="Decode DATA (a file, or a corpus folder with --split) with the model "
                                   "in CHECKPOINT (a model folder or a training run), print the "
                                   "entity-level report and write predictions next to gold in CoNLL "
                                   "columns (token, gold, predicted).")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("data", type=Path)
    p.add_argument("--split", default="test", help="split of a corpus folder (default test)")
    p.add_argument("--format", default="auto", choices=("auto",) + FORMATS)
    p.add_argument("--map-types", default=None, metavar="SPEC", help="e.g. OTHER=MISC")
    p.add_argument("--captions", default="auto", metavar="FILE", help="caption file, auto or none")
    p.add_argument("--images", default=None, metavar="DIR", help="image folder")
    p.add_argument("--missing-images", default="error", choices=POLICIES)
    p.add_argument("--mode", default="conlleval", choices=("conlleval", "strict"))
    p.add_argument("--out", type=Path, default=None,
                   help="predictions file (default: <checkpoint>/predictions/<data name>.conll)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="tag new text (+ image) with a trained model",
                       description="Tag one text (--text, with --image/--caption) or a JSONL file of "
                                   '{"text": ..., "image": ..., "caption": ...} lines (or "tokens" '
                                   "instead of text). Writes JSONL: each input with its entities "
                                   "(text, type, char start/end, confidence).")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--text", default=None)
    p.add_argument("--image", default=None, help="image file for --text")
    p.add_argument("--caption", default=None, help="caption for --text (models with a caption view)")
    p.add_argument("--input", type=Path, default=None, help="JSONL file of inputs")
    p.add_argument("--image-dir", type=Path, default=None, help="folder that relative image paths of --input are in")
    p.add_argument("--output", type=Path, default=None, help="write JSONL here (default: standard output)")
    p.add_argument("--batch-size", type=int, default=16)
    p.set_defaults(func=cmd_predict)


def cmd_evaluate(args) -> int:
    from torch.utils.data import DataLoader

    from mner.data.prepare import DataConfig, prepare_data
    from mner.evaluation import evaluate_examples, predict_tags, write_predictions
    from mner.models import load_model

    model = load_model(args.checkpoint)
    views = model.views
    is_dir = args.data.is_dir()
    cfg = DataConfig(corpus=str(args.data) if is_dir else None, test=None if is_dir else str(args.data),
                     format=args.format, type_map=args.map_types,
                     captions=args.captions,
                     images=args.images, missing_images=args.missing_images, feature_cache=None)
    log = (lambda *_: None) if args.json else (lambda m: print(m, file=sys.stderr))
    data = prepare_data(cfg, needs_images="pixels" in views, needs_captions="caption" in views, log=log)
    split = args.split if is_dir else "test"
    if split not in data.splits:
        raise UsageError(f"{args.data}: no split {split!r} (it has {', '.join(data.splits)})")
    examples = data.splits[split]
    label_set = getattr(model, "label_set", None)
    if label_set is None:
        raise UsageError(f"{args.checkpoint}: a {model.model_type!r} model has no label set of its own; "
                         "evaluate it on episodes with its own command")
    unknown = {t for ex in examples for t in ex.tags or () if t not in label_set.labels}
    if unknown:
        raise MNERError(f"{args.data}: tags {sorted(unknown)} are not in the model's label set "
                        f"{list(label_set.labels)}; use --map-types (e.g. OTHER=MISC)")
    collate = model.processor(image_store=data.image_store).collate(train=False)
    preds = predict_tags(model, DataLoader(examples, batch_size=args.batch_size, collate_fn=collate))
    report = evaluate_examples(examples, preds, mode=args.mode)
    name = args.data.name if not is_dir else f"{args.data.name}-{split}"
    out = args.out or args.checkpoint / "predictions" / f"{Path(name).stem}.conll"
    write_predictions(examples, preds, out)
    if args.json:
        print(json.dumps({"checkpoint": str(args.checkpoint), "data": str(args.data), "split": split,
                          "predictions": str(out), "precision": report.micro.precision,
                          "recall": report.micro.recall, "f1": report.micro.f1, **report.to_dict()}, indent=2))
    else:
        print(report.format())
        print(f"predictions: {out}")
    return 0


def cmd_predict(args) -> int:
    from mner.data.formats import read_jsonl
    from mner.pipeline import Pipeline

    if (args.text is None) == (args.input is None):
        raise UsageError("give either --text (with --image/--caption) or --input FILE.jsonl")
    pipe = Pipeline.from_pretrained(args.checkpoint, batch_size=args.batch_size)
    if args.text is not None:
        records = [{"id": "1", "text": args.text, "image": args.image, "caption": args.caption}]
        examples = [pipe._example(0, args.text, args.caption)]
        images = [args.image]
    else:
        examples = read_jsonl(args.input, require_tokens=False)
        records = [ex.to_dict() for ex in examples]
        images = []
        for ex in examples:
            if ex.image is None:
                images.append(None)
            else:
                path = Path(ex.image)
                if not path.is_absolute():
                    path = (args.image_dir or args.input.parent) / path
                images.append(path)
    if "pixels" not in pipe.views and any(img is not None for img in images):
        print(f"note: this model does not look at pixels (views: {', '.join(pipe.views) or 'none'}); "
              "images are ignored", file=sys.stderr)
    if "caption" in pipe.views:
        missing = sum(ex.caption is None for ex in examples)
        if missing:
            print(f"note: {missing} of {len(examples)} inputs have no caption; the model tags them "
                  "without a caption view", file=sys.stderr)
    results = pipe.predict(examples, images if "pixels" in pipe.views else None)
    lines = []
    for rec, ex, ents in zip(records, examples, results):
        rec = {k: v for k, v in rec.items() if v is not None and k not in ("tokens", "offsets")}
        rec.setdefault("text", ex.text)
        lines.append(json.dumps({**rec, "entities": ents}, ensure_ascii=False))
    text = "\n".join(lines) + "\n"
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
        print(f"wrote {len(lines)} predictions to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
