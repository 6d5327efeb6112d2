"""``mner evaluate CHECKPOINT DATA`` and ``mner predict CHECKPOINT``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mner.backends import BACKENDS
from mner.cli.data import nonnegative_int, positive_int
from mner.cli.fewshot import _add_decoding, add_support
from mner.data.formats import FORMATS
from mner.data.images import DEFAULT_MAX_PIXELS, POLICIES
from mner.errors import MNERError, UsageError
from mner.fileio import write_output


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score a trained model on labelled data and write its predictions",
                       description="Decode DATA (a file, or a corpus folder with --split: only that "
                                   "split is read) with the model in CHECKPOINT (a model folder, a "
                                   "training run, or an ONNX export folder: run by ONNX Runtime), print the entity-level report and, with --out, "
                                   "write predictions next to gold in CoNLL columns (token, gold, "
                                   "predicted). Nothing is written into the checkpoint folder. A few-shot "
                                   "checkpoint (mousing, protobert, nnshot, proto-maf) is scored on an episode file "
                                   "instead (DATA: mner fewshot episodes|protocol), as mner fewshot evaluate does.")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("data", type=Path, help="labelled data (a file, or a corpus folder); an episode file (JSONL) "
                                           "for a few-shot checkpoint")
    p.add_argument("--split", default="test", help="split of a corpus folder (default test)")
    p.add_argument("--format", default="auto", choices=("auto",) + FORMATS)
    p.add_argument("--map-types", default=None, metavar="SPEC", help="e.g. OTHER=MISC")
    p.add_argument("--captions", default="auto", metavar="FILE", help="caption file, auto or none")
    p.add_argument("--images", default=None, metavar="DIR", help="image folder")
    p.add_argument("--missing-images", default="error", choices=POLICIES)
    p.add_argument("--mode", default="conlleval", choices=("conlleval", "strict"))
    p.add_argument("--out", type=Path, default=None,
                   help="write the predictions to this file (default: none written)")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="tweets per batch (default 64); for a few-shot checkpoint, episodes per batch (default 8)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    g = p.add_argument_group("few-shot checkpoints (DATA an episode file)")
    g.add_argument("--limit", type=positive_int, default=None, help="only the first N episodes")
    _add_decoding(g)
    p.add_argument("--controls", action="store_true",
                   help="also decode with the visual view (images / captions) shuffled among the tweets and "
                        "with none, and report F1 for each and the matching module's match probability "
                        "(mean, std, AUC of real vs shuffled pairs); see mner.controls")
    p.add_argument("--control-seed", type=nonnegative_int, default=None, metavar="N",
                   help="with --controls: seed of the shuffled control's permutation (default 0)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="tag new text (+ image) with a trained model (or its ONNX export)",
                       description="Tag one text (--text, with --image/--caption) or a JSONL file of "
                                   '{"text": ..., "image": ..., "caption": ...} lines (or "tokens" '
                                   "instead of text). Writes JSONL: each input with its entities "
                                   "(text, type, char start/end, confidence). A few-shot checkpoint "
                                   "(mousing, protobert, nnshot, proto-maf) tags the entity types of "
                                   "--support FILE, as mner fewshot predict does.")
    p.add_argument("checkpoint", type=Path)
    add_support(p, "it tags their types", "--image-dir")
    p.add_argument("--text", default=None)
    p.add_argument("--image", default=None, help="image file for --text")
    p.add_argument("--caption", default=None, help="caption for --text (models with a caption view)")
    p.add_argument("--input", type=Path, default=None, help="JSONL file of inputs")
    p.add_argument("--image-dir", type=Path, default=None, help="folder that relative image paths of --input are in")
    p.add_argument("--output", type=Path, default=None, help="write JSONL here (default: standard output)")
    p.add_argument("--missing-images", default="error", choices=POLICIES,
                   help="what to do with an input whose image is missing or unreadable: error (default: "
                        "stop, naming the input line), blank (tag it without image) or drop (leave it out)")
    p.add_argument("--max-image-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help=f"larger images are refused as possible decompression bombs (default {DEFAULT_MAX_PIXELS})")
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--backend", default=None, choices=BACKENDS,
                   help="torch (a checkpoint) or onnxruntime (a folder written by mner export); default: "
                        "detected from CHECKPOINT")
    # the decoding options of mner fewshot predict, for few-shot checkpoints
    _add_decoding(p.add_argument_group("few-shot checkpoints (with --support)"))
    p.set_defaults(func=cmd_predict)


def _decoding_options() -> list[str]:
    """The ``args`` names of the few-shot decoding options (:mod:`mner.fewshot.decoding`)."""
    from mner.fewshot.decoding import DECODING_OPTIONS

    return list(DECODING_OPTIONS)


def cmd_evaluate(args) -> int:
    from torch.utils.data import DataLoader

    from mner.data.corpus import corpus_files
    from mner.data.prepare import DataConfig, prepare_data
    from mner.evaluation import evaluate_examples, predict_tags, write_predictions
    from mner.models import load_model

    if args.control_seed is not None and not args.controls:
        raise UsageError("--control-seed is the seed of --controls: add --controls")
    from mner.tasks import checkpoint_task

    task, model_type = checkpoint_task(args.checkpoint)
    if task.name == "episodic":  # scored on episodes, as mner fewshot evaluate scores it
        return _evaluate_episodes(args, model_type)
    if args.limit is not None:
        raise UsageError(f"--limit: the number of episodes scored of a few-shot checkpoint; {args.checkpoint} is a "
                         f"{model_type or 'fixed-label'} model scored on a labelled split: leave it out")
    given = [name for name in _decoding_options() if getattr(args, name, None) is not None]
    if given:
        raise UsageError(f"--{given[0].replace('_', '-')}: a decoding option of few-shot checkpoints; "
                         f"{args.checkpoint} is a model with a fixed set of entity types: leave it out")
    if args.batch_size is None:
        args.batch_size = 64
    from mner.backends import is_export_folder

    if is_export_folder(args.checkpoint):  # an ONNX export (mner export): scored as it runs, on ONNX Runtime
        from mner.backends.onnx_runtime import OnnxTagger

        if args.controls:
            raise UsageError(f"--controls: {args.checkpoint} is an ONNX export; the controls read the PyTorch "
                             "model's modules: give the checkpoint it was exported from")
        model = OnnxTagger.from_pretrained(args.checkpoint)
    else:
        model = load_model(args.checkpoint)
    views = model.views
    is_dir = args.data.is_dir()
    split = args.split if is_dir else "test"
    data_file = args.data
    if is_dir:  # only the split that is scored is read (and its images decoded)
        files = corpus_files(args.data)
        if split not in files:
            raise UsageError(f"{args.data}: no split {split!r} (it has {', '.join(files)}); choose one with --split")
        data_file = files[split]
    if "pixels" in views and args.images is None and args.missing_images != "blank":
        near = (args.data if is_dir else args.data.parent).parent / "images"
        raise UsageError(
            f"{args.checkpoint}: this model looks at pixels: give the image folder with --images DIR"
            + (f" (there is one next to the data: --images {near})" if near.is_dir() else "")
            + ", or --missing-images blank to score it without any image")
    cfg = DataConfig(test=str(data_file), format=args.format, type_map=args.map_types,
                     captions=args.captions,
                     images=args.images, missing_images=args.missing_images, feature_cache=None)
    log = (lambda *_: None) if args.json else (lambda m: print(m, file=sys.stderr))
    data = prepare_data(cfg, needs_images="pixels" in views, needs_captions="caption" in views, log=log)
    examples = data.splits["test"]
    label_set = getattr(model, "label_set", None)
    if label_set is None:
        raise UsageError(f"{args.checkpoint}: a {model.model_type!r} model has no label set of its own; "
                         "evaluate it on episodes with its own command")
    unknown = {t for ex in examples for t in ex.tags or () if t not in label_set.labels}
    if unknown:
        raise MNERError(f"{data_file}: tags {sorted(unknown)} are not in the model's label set "
                        f"{list(label_set.labels)}; use --map-types (e.g. OTHER=MISC)")
    controls = None
    if args.controls:
        from mner.controls import visual_controls

        controls = visual_controls(model, examples, image_store=data.image_store, seed=args.control_seed or 0,
                                   batch_size=args.batch_size, mode=args.mode)
        preds, report = controls.predictions, controls.report
    else:
        collate = model.processor(image_store=data.image_store).collate(train=False)
        preds = predict_tags(model, DataLoader(examples, batch_size=args.batch_size, collate_fn=collate))
        report = evaluate_examples(examples, preds, mode=args.mode)
    out = args.out
    if out is not None:
        write_predictions(examples, preds, out)
    if args.json:
        print(json.dumps({"checkpoint": str(args.checkpoint), "data": str(args.data), "split": split,
                          "predictions": str(out) if out else None, "precision": report.micro.precision,
                          "recall": report.micro.recall, "f1": report.micro.f1, **report.to_dict(),
                          **({"controls": controls.to_dict()} if controls is not None else {})}, indent=2))
    else:
        print(report.format())
        if controls is not None:
            print(controls.format())
        print(f"predictions: {out}" if out else "predictions: not written (--out FILE writes them)")
    return 0


def _evaluate_episodes(args, model_type: str) -> int:
    """``mner evaluate FEWSHOT_CKPT EPISODES.jsonl``: ``mner fewshot evaluate``, after refusing the
    options of labelled splits that episodes do not have."""
    from mner.cli.fewshot import cmd_evaluate as evaluate_episodes

    defaults = {"split": "test", "format": "auto", "map_types": None, "captions": "auto", "missing_images": "error",
                "out": None, "controls": False}
    for name, default in defaults.items():
        if getattr(args, name) != default:
            hint = (f"mner fewshot diagnose {args.checkpoint} EPISODES measures what the visual view is worth"
                    if name == "controls" else "an episode file carries its tweets, captions and image ids")
            raise UsageError(f"--{name.replace('_', '-')}: {args.checkpoint} is a few-shot {model_type!r} model, "
                             f"scored on an episode file; {hint}: leave it out")
    if args.data.is_dir():
        raise UsageError(f"{args.data}: a folder; a few-shot {model_type!r} model is scored on an episode file "
                         "(mner fewshot protocol writes them)")
    values = dict(vars(args))
    values.update(episodes=args.data, batch_size=args.batch_size or 8)
    return evaluate_episodes(argparse.Namespace(**values))


def _needs_support(args) -> bool:
    """Whether CHECKPOINT is a few-shot model (the episodic task: it tags the types of ``--support``);
    refuses, in one line, a few-shot model without ``--support``, and ``--support`` or a few-shot
    decoding option with a model of fixed types."""
    from mner.tasks import checkpoint_task

    task, model_type = checkpoint_task(args.checkpoint)
    task.check_support(args.checkpoint, model_type, args.support)
    given = [name for name in _decoding_options() if getattr(args, name, None) is not None]
    if not task.needs_support and given:
        kind = f"a {model_type!r} model" if model_type else "this model"
        raise UsageError(f"--{given[0].replace('_', '-')}: a decoding option of few-shot checkpoints; {args.checkpoint} "
                         f"is {kind} with a fixed set of entity types: leave it out")
    return task.needs_support


def cmd_predict(args) -> int:
    from mner.data.example import TextError
    from mner.data.images import ImageStore, apply_image_policy
    from mner.pipeline import Pipeline, read_input_file

    if (args.text is None) == (args.input is None):
        raise UsageError("give either --text (with --image/--caption) or --input FILE.jsonl")
    if args.output is not None and args.output.is_dir():
        raise UsageError(f"--output {args.output}: is a folder; give a file name")
    fewshot = _needs_support(args)
    # one pipeline for any checkpoint; a few-shot one is bound to the support set (its image ids in --image-dir)
    pipe = Pipeline.from_pretrained(args.checkpoint, batch_size=args.batch_size, backend=args.backend,
                                    support=args.support, support_format=args.support_format,
                                    support_images=args.image_dir)
    if fewshot:
        from mner.cli.fewshot import _apply_decoding

        _apply_decoding(pipe.model, args)
        pipe.image_store.max_pixels = args.max_image_pixels
        print(f"support: {len(pipe.support)} tweets, types {', '.join(pipe.types)}", file=sys.stderr)
    else:
        pipe.image_store = ImageStore(None, max_pixels=args.max_image_pixels)
    if args.text is not None:
        records = [{"id": "1", "text": args.text, "image": args.image, "caption": args.caption}]
        try:
            examples = [pipe._example(0, args.text, args.caption).replace(image=args.image, source="--text")]
        except TextError as err:  # e.g. bytes that are not UTF-8 on the command line
            raise UsageError(f"--text/--caption/--image: {err.detail}") from None
        # a path on the command line is the user's own: opened as given (or inside --image-dir)
        store = ImageStore(args.image_dir, max_pixels=args.max_image_pixels)
        if args.image is not None and args.image_dir is None and ".." in Path(args.image).parts:
            print(f"note: --image {args.image} is read as {Path(args.image).resolve()} (a path on the command "
                  "line is opened as given; --image-dir DIR refuses images outside DIR)", file=sys.stderr)
    else:
        # relative image paths stay inside the image folder; absolute ones are the user's own
        inputs = read_input_file(args.input, args.image_dir, pixels="pixels" in pipe.views,
                                 policy=args.missing_images, max_pixels=args.max_image_pixels)
        records, examples = inputs.records, inputs.examples
    with_image = sum(ex.image is not None for ex in examples)
    images = None
    if "pixels" not in pipe.views:
        if with_image:
            print(f"note: this model does not look at pixels (views: {', '.join(pipe.views) or 'none'}); "
                  "images are ignored", file=sys.stderr)
    elif args.input is not None:
        for note in inputs.notes:
            print(note, file=sys.stderr)
        images = inputs.images
    else:
        if with_image < len(examples):
            print(f"note: {len(examples) - with_image} of {len(examples)} inputs have no image; this model "
                  "looks at pixels and tags them with no visual input", file=sys.stderr)
        kept, report = apply_image_policy(examples, store, args.missing_images)
        if report.affected:
            print(report.summary(), file=sys.stderr)
        examples = kept
        images = [store.resolve(ex.image, ex.id) if ex.image is not None else None for ex in examples]
    if "caption" in pipe.views:
        missing = sum(ex.caption is None for ex in examples)
        if missing:
            print(f"note: {missing} of {len(examples)} inputs have no caption; the model tags them "
                  "without a caption view", file=sys.stderr)
    results = pipe.predict(examples, images)
    lines = []
    for rec, ex, ents in zip(records, examples, results):
        rec = {k: v for k, v in rec.items() if v is not None and k not in ("tokens", "offsets", "tags")}
        rec.setdefault("text", ex.text)
        lines.append(json.dumps({**rec, "entities": ents}, ensure_ascii=False))
    text = "\n".join(lines) + ("\n" if lines else "")
    if args.output:
        write_output(args.output, text, what="the predictions", hint="free some space or choose another --output")
        print(f"wrote {len(lines)} predictions to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
