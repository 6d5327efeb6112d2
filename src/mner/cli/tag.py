"""``mner tag CHECKPOINT INPUT... --out DIR``: tag many tweets into a resumable, sharded output
folder, on this machine (``--engine local``) or on Ray (``--engine ray``). See
docs/batch-tagging.md and :mod:`mner.batch`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mner.backends import BACKENDS
from mner.cli.data import nonnegative_int, positive_int
from mner.cli.fewshot import _add_decoding, add_support
from mner.data.images import DEFAULT_MAX_PIXELS


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tag", help="tag many tweets (JSONL, CSV, Parquet) into a resumable output folder, locally or on Ray",
        description="Tag every row of INPUT (files or folders of JSONL, CSV, Parquet, or Twitter/CoNLL .txt) "
                    "with the model in CHECKPOINT (a few-shot checkpoint tags the entity types of --support "
                    "FILE). Writes sharded Parquet (or JSONL) into --out, with "
                    "errors.jsonl (every row that could not be tagged, and why) and _manifest.json (inputs, "
                    "model, counts). Stopped runs resume: run the same command again. The last line printed "
                    "is one JSON object with the counts and the throughput. Exit code 0: every row tagged "
                    "(or dropped or blanked by --image-policy); 1: some rows could not be tagged (see "
                    "errors.jsonl); 2: the run was refused or stopped (an input changed under it, "
                    "--max-errors, --strict).")
    p.add_argument("checkpoint", type=Path, help="a model folder (or a training run)")
    p.add_argument("inputs", type=Path, nargs="+", metavar="INPUT")
    p.add_argument("--out", type=Path, required=True, help="output folder (new, or one mner tag wrote: it resumes)")
    add_support(p, "read once, a restart must give the same support set", "--image-root (default: its own folder)")
    p.add_argument("--engine", default="local", choices=("local", "ray"),
                   help="local: worker processes on this machine, each with its own copy of the model on "
                        "the CPU (default); ray: Ray Data")
    p.add_argument("--format", default="parquet", choices=("parquet", "jsonl"), help="output format (default parquet)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="tweets per model batch (default 32)")
    p.add_argument("--shard-size", type=positive_int, default=1000,
                   help="rows per output shard, the unit of resuming (default 1000)")
    p.add_argument("--window-order", default="length", choices=("length", "input"),
                   help="how a shard's rows are cut into model batches: length (default: rows of similar "
                        "length together, less padding) or input (consecutive rows); the output is in file "
                        "order either way")
    _add_decoding(p.add_argument_group("few-shot checkpoints (with --support): decoding"))
    g = p.add_argument_group("input columns (CSV, Parquet, JSONL)")
    for role, default in (("text", "text"), ("tokens", "tokens"), ("image", "image"), ("id", "id"),
                          ("caption", "caption")):
        g.add_argument(f"--{role}-column", default=None, metavar="NAME", help=f"default {default!r}")
    g = p.add_argument_group("images")
    g.add_argument("--image-root", type=Path, default=None,
                   help="folder that relative image paths are in (default: each input file's folder)")
    g.add_argument("--image-policy", "--missing-images", dest="image_policy", default="error", choices=("error", "blank", "drop"),
                   help="a row whose image is missing or unreadable: error (default: not tagged, listed in "
                        "errors.jsonl), blank (tagged without its image) or drop (left out, counted)")
    g.add_argument("--max-image-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help=f"larger images are refused as possible decompression bombs (default {DEFAULT_MAX_PIXELS})")
    g = p.add_argument_group("running")
    g.add_argument("--strict", action="store_true",
                   help="stop at the first row that cannot be tagged, in file order (windows in input order; "
                        "default: list it in errors.jsonl, go on)")
    g.add_argument("--max-errors", type=nonnegative_int, default=None, metavar="N",
                   help="stop once more than N rows of this run could not be tagged (default: no limit; every "
                        "such row is listed in errors.jsonl and the run ends with exit code 1)")
    g.add_argument("--overwrite", action="store_true",
                   help="delete what an earlier run wrote into --out and start again")
    g.add_argument("--workers", type=nonnegative_int, default=None,
                   help="local: worker processes. On the CPU each loads its own copy of the model (memory grows "
                        "by one model per worker: pick fewer for a big model or little RAM) and parses, decodes "
                        "and tags whole batches (default: one per CPU core, at most 4); on a GPU they only "
                        "decode images for the model in this process (default: cores - 1, at most 4; none for "
                        "a text-only model). 0: everything in this process")
    g.add_argument("--threads", type=positive_int, default=None,
                   help="torch threads of each worker's model (local on the CPU; default: cores // workers), "
                        "of the model in this process (local on a GPU, or --workers 0) or of each actor (ray)")
    g.add_argument("--device", default=None, help="local: cpu, cuda, cuda:1 ... (default: cuda when available)")
    g.add_argument("--backend", default=None, choices=BACKENDS,
                   help="torch (a checkpoint) or onnxruntime (a folder written by mner export, run by ONNX Runtime on "
                        "the CPU; no explanations there); default: detected from CHECKPOINT")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = p.add_argument_group("ray engine")
    g.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="join this Ray cluster (e.g. ray://head:10001 or auto); default: start Ray on this machine")
    g.add_argument("--concurrency", type=positive_int, default=None,
                   help="actors in the pool, each with a copy of the model (default: one per GPU, or CPUs - 1)")
    g.add_argument("--gpus-per-actor", type=_positive_float, default=None,
                   help="GPUs per actor (default: 1 when the cluster has GPUs, else 0)")
    g.add_argument("--cpus-per-actor", type=_positive_float, default=1.0, help="CPUs per actor (default 1)")
    p.set_defaults(func=cmd_tag)


def cmd_tag(args) -> int:
    from mner.batch.job import TagOptions
    from mner.batch.run import run_tag
    from mner.fewshot.decoding import DECODING_OPTIONS, given_decoding
    from mner.batch.sources import Columns

    names = {role: getattr(args, f"{role}_column") for role in ("id", "text", "tokens", "image", "caption")}
    columns = Columns(**{k: v for k, v in names.items() if v is not None},
                      explicit=tuple(k for k, v in names.items() if v is not None))
    opts = TagOptions(
        checkpoint=args.checkpoint, inputs=args.inputs, out=args.out, engine=args.engine, format=args.format,
        batch_size=args.batch_size, shard_size=args.shard_size, window_order=args.window_order,
        columns=columns, image_root=args.image_root,
        image_policy=args.image_policy, max_image_pixels=args.max_image_pixels, strict=args.strict,
        max_errors=args.max_errors,
        overwrite=args.overwrite, workers=args.workers, threads=args.threads, device=args.device, backend=args.backend,
        ray_address=args.ray_address, concurrency=args.concurrency, gpus_per_actor=args.gpus_per_actor,
        cpus_per_actor=args.cpus_per_actor, progress=False if args.no_progress else None,
        support=args.support, support_format=args.support_format,
        decoding=given_decoding({name: getattr(args, name) for name in DECODING_OPTIONS}))
    summary = run_tag(opts)
    failed = summary["failed_by_reason"]
    print(f"read {summary['read']}, tagged {summary['tagged']}, failed {summary['failed']}"
          + (f" ({', '.join(f'{k} {v}' for k, v in failed.items())})" if failed else "")
          + f", dropped {summary['dropped']}, tagged without image {summary['blanked']}; "
          f"{summary['rows_this_run']} rows in {summary['seconds']:.1f} s this run"
          + (f"; errors: {args.out / 'errors.jsonl'}" if summary["failed"] else ""), file=sys.stderr)
    if summary["failed"]:
        print(f"mner tag: {summary['failed']} rows could not be tagged (listed in {args.out / 'errors.jsonl'} with "
              "their line and reason); exit code 1", file=sys.stderr)
    print(json.dumps(summary, ensure_ascii=False))
    return 1 if summary["failed"] else 0
