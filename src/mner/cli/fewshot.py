"""``mner fewshot episodes|protocol|check|train|evaluate|predict|diagnose``: the few-shot side (``docs/models/mousing.md``).

Episodes as data (``episodes``, ``protocol``, ``check``): each subcommand is one
``_add_<name>(fsub)`` that declares its options and one ``cmd_<name>(args)`` that runs it. The
models (``train``, ``evaluate``, ``predict``) are declared together in :func:`register_models`. OTHER (Twitter-2015) and MISC (Twitter-2017) are one type: the
corpus is read with the type map ``OTHER=MISC`` and ``--types`` accepts OTHER for MISC.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mner.cli.data import positive_int
from mner.data.images import DEFAULT_MAX_PIXELS, POLICIES
from mner.errors import MNERError


def register(sub: argparse._SubParsersAction) -> None:
    fs = sub.add_parser("fewshot", help="few-shot NER: episodes, training, evaluation and tagging from a support set")
    fsub = fs.add_subparsers(dest="fewshot_command", metavar="SUBCOMMAND", required=True)
    _add_episodes(fsub)
    _add_protocol(fsub)
    _add_check(fsub)
    register_models(fsub)
    _add_diagnose(fsub)


# ----------------------------------------------------------------------------- episodes


def _add_episodes(fsub: argparse._SubParsersAction) -> None:
    p = fsub.add_parser("episodes", help="sample N-way K~2K episodes from one split into a JSONL file")
    p.add_argument("data_dir", type=Path, metavar="DATA_DIR",
                   help="a corpus folder with train/valid/test files (OTHER is read as MISC)")
    p.add_argument("--split", default="test", help="split to draw from (default: test)")
    p.add_argument("--types", required=True, metavar="T1,T2",
                   help="target types, e.g. PER,LOC (OTHER means MISC), or a pair name like Per+Others")
    p.add_argument("--k", type=positive_int, required=True, help="K: each type gets K to 2K mentions")
    p.add_argument("--query-k", type=positive_int, default=None, metavar="N",
                   help="K of a greedy query set (default: --k)")
    p.add_argument("--query", choices=("greedy", "random"), default="greedy",
                   help="how the query set is drawn: 'greedy' (ours, K~2K mentions per type; default) or "
                        "'random' (the poster's: the same supports, --query-size tweets drawn at random "
                        "from the whole split, with or without target mentions)")
    p.add_argument("--query-size", type=positive_int, default=None, metavar="N",
                   help="query tweets per episode with --query random (default 10)")
    p.add_argument("--episodes", type=positive_int, default=500, help="episodes to write (default 500)")
    p.add_argument("--seed", type=int, default=1, help="sampler seed (default 1)")
    p.add_argument("--out", type=Path, required=True, metavar="FILE.jsonl", help="episode file to write")
    p.add_argument("--captions", default="auto", metavar="auto|none|FILE",
                   help="captions to attach: 'auto' (default) finds <parent>/captions/<folder>_*.txt")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_episodes)


def cmd_episodes(args) -> int:
    from mner.data.episodes import file_sha256, summarize_episodes, write_episodes
    from mner.data.sampling import (
        EpisodeSampler, PROTOCOL_TYPE_MAP, load_protocol_corpus, format_summary, parse_types,
    )

    if args.query == "greedy" and args.query_size is not None:
        raise MNERError("--query-size is the size of a random query; add --query random, or leave it out")
    if args.query == "random" and args.query_k is not None:
        raise MNERError("--query-k is K of a greedy query; with --query random give --query-size instead")
    types = parse_types(args.types)
    corpus, _, cap_note = load_protocol_corpus(args.data_dir, args.captions)
    if args.split not in corpus.splits:
        raise MNERError(f"{args.data_dir}: no split {args.split!r} (it has {', '.join(corpus.splits)}); "
                        "choose one with --split")
    sampler = EpisodeSampler(corpus[args.split], types, args.k, query_k=args.query_k, query=args.query,
                             query_size=args.query_size, seed=args.seed)
    episodes = sampler.sample_many(args.episodes)
    write_episodes(episodes, args.out)
    summary = summarize_episodes(episodes)
    sha = file_sha256(args.out)
    if args.json:
        print(json.dumps({
            "out": str(args.out), "sha256": sha, "corpus": str(args.data_dir), "split": args.split,
            "type_map": PROTOCOL_TYPE_MAP, "types": list(types), "k": args.k, "query": args.query,
            "query_k": None if args.query == "random" else args.query_k or args.k,
            "query_size": sampler.query_size, "seed": args.seed, "captions": cap_note, **summary,
        }, indent=2, ensure_ascii=False))
        return 0
    print(f"{args.out}: {format_summary(summary)}")
    print(f"sha256 {sha}")
    return 0


# ----------------------------------------------------------------------------- protocol


def _add_protocol(fsub: argparse._SubParsersAction) -> None:
    p = fsub.add_parser("protocol", help="write the six target-pair splits' test and dev episodes of one dataset",
                        description="For each target pair and K write <pair>/test-k{K}.jsonl (ours: greedy "
                                    "K~2K query), test-poster-k{K}.jsonl (the poster's: the same supports, a "
                                    "random query), dev-k{K}.jsonl (ours, target types) and "
                                    "dev-source-k{K}.jsonl (ours, the two source types), and a manifest.json.")
    p.add_argument("data_dir", type=Path, metavar="DATA_DIR", help="a corpus folder with train/valid/test files")
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="folder for <pair>/{test,test-poster,dev,dev-source}-k{K}.jsonl")
    p.add_argument("--k", type=positive_int, nargs="+", default=[1, 5], metavar="K",
                   help="values of K (default: 1 5)")
    p.add_argument("--test-episodes", type=positive_int, default=500, help="episodes per test file (default 500)")
    p.add_argument("--dev-episodes", type=positive_int, default=100, help="episodes per dev file (default 100)")
    p.add_argument("--seed", type=int, default=1, help="sampler seed (default 1)")
    p.add_argument("--poster-query-size", type=positive_int, default=10, metavar="N",
                   help="query tweets per episode of the poster-protocol files (default 10, ours)")
    p.set_defaults(func=cmd_protocol)


def cmd_protocol(args) -> int:
    from mner.data.sampling import write_protocol

    manifest = write_protocol(
        args.data_dir, args.out, ks=tuple(args.k), test_episodes=args.test_episodes,
        dev_episodes=args.dev_episodes, seed=args.seed, poster_query_size=args.poster_query_size,
    )
    print(f"{len(manifest['files'])} episode files; manifest {args.out / 'manifest.json'}")
    return 0


# ----------------------------------------------------------------------------- check


def _add_check(fsub: argparse._SubParsersAction) -> None:
    p = fsub.add_parser("check", help="validate an episode file and its sampler invariants")
    p.add_argument("file", type=Path, metavar="FILE.jsonl")
    p.add_argument("--k", type=positive_int, default=None,
                   help="check K <= mentions <= 2K per type in support and query "
                        "(default: only that each type is mentioned)")
    p.add_argument("--query-k", type=positive_int, default=None, metavar="N",
                   help="K of a greedy query set (default: --k)")
    p.add_argument("--query", choices=("greedy", "random"), default="greedy",
                   help="the file's query protocol: 'greedy' (ours; default) or 'random' (the poster's, "
                        "e.g. test-poster-k{K}.jsonl: the query is checked for disjointness and its types "
                        "only, not for K~2K)")
    p.add_argument("--query-size", type=positive_int, default=None, metavar="N",
                   help="with --query random: check that every query has N tweets")
    p.add_argument("--max-show", type=positive_int, default=50, help="violations to print (default 50)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=cmd_check)


def cmd_check(args) -> int:
    from mner.data.episodes import iter_episodes, summarize_episodes
    from mner.data.sampling import episode_violations, format_summary

    if args.query == "greedy" and args.query_size is not None:
        raise MNERError(f"{args.file}: --query-size checks a random query; add --query random, or leave it out")
    if args.query == "random" and args.query_k is not None:
        raise MNERError(f"{args.file}: --query-k checks a greedy query; a random query is checked with "
                        "--query-size")
    errors: list = []
    violations: list[str] = []
    episodes = []
    for ep in iter_episodes(args.file, errors=errors):
        episodes.append(ep)
        violations += [f"{ep.source}: {v}" for v in episode_violations(
            ep, args.k, args.query_k, query=args.query, query_size=args.query_size)]
    violations = [str(e) for e in errors] + violations
    summary = summarize_episodes(episodes)
    if args.json:
        print(json.dumps({"file": str(args.file), "ok": not violations, "k": args.k, "query": args.query,
                          "violations": violations, **summary}, indent=2, ensure_ascii=False))
        return 1 if violations else 0
    for v in violations[: args.max_show]:
        print(v)
    if len(violations) > args.max_show:
        print(f"... {len(violations) - args.max_show} more ({len(violations)} in all; --max-show N or --json)")
    print(f"{args.file}: {format_summary(summary)}")
    print(f"{len(violations)} violations; result: " + ("FAILED" if violations else "ok"))
    return 1 if violations else 0


# ---------------------------------------------------------------------------------------------
# train / evaluate / predict
# ---------------------------------------------------------------------------------------------

def register_models(fs) -> None:
    """``mner fewshot train | evaluate | predict``."""
    p = fs.add_parser("train", help="train a few-shot model on source-type episodes",
                      description="Train a few-shot model (mousing, protobert, nnshot, proto-maf) from a YAML "
                                  "config with model:, data:, episodes: and training: sections (see "
                                  "configs/fewshot-*.yaml): episodes of the source types drawn anew every "
                                  "epoch, the best checkpoint chosen on dev episodes of the target types, "
                                  "the test episodes (episodes.test) scored at the end. Resumes from "
                                  "<output_dir>/last.")
    p.add_argument("config", help="the YAML config file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set episodes.k=1 (repeatable)")
    p.add_argument("--output-dir", default=None, help="shorthand for --set training.output_dir=DIR")
    p.set_defaults(func=cmd_train)

    p = fs.add_parser("evaluate", help="score a few-shot model on an episode file",
                      description="Decode the query set of every episode of EPISODES given its support set, "
                                  "and print entity-level P/R/F1 pooled over all query tweets.")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("episodes", type=Path, help="an episode file (JSONL, mner fewshot episodes)")
    p.add_argument("--mode", default="conlleval", choices=("conlleval", "strict"))
    _add_decoding(p)
    p.add_argument("--images", default=None, metavar="DIR", help="image folder (models with the pixels view)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="episodes per batch")
    p.add_argument("--limit", type=positive_int, default=None, help="only the first N episodes")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_evaluate)

    p = fs.add_parser("predict", help="tag new tweets with the types of a support set",
                      description="Tag --text (with --image/--caption) or a JSONL file of inputs with the "
                                  "entity types of SUPPORT: a few annotated tweets of each new type (JSONL "
                                  "with tokens and tags, CoNLL or Twitter format). Writes JSONL: each input "
                                  "with its entities (text, type, char start/end, confidence).")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--support", type=Path, required=True, help="annotated tweets of the new types")
    p.add_argument("--support-format", default="auto")
    p.add_argument("--text", default=None)
    p.add_argument("--image", default=None)
    p.add_argument("--caption", default=None)
    p.add_argument("--input", type=Path, default=None, help="JSONL file of inputs")
    p.add_argument("--images", default=None, metavar="DIR",
                   help="folder the support's image ids and the relative image paths of --input are in (default "
                        "for --input: the input file's folder; absolute paths in it are opened as given)")
    p.add_argument("--missing-images", default="error", choices=POLICIES,
                   help="what to do with an input of --input whose image is missing or unreadable: error "
                        "(default: stop, naming the input line), blank (tag it without image) or drop (leave it out)")
    p.add_argument("--max-image-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help=f"larger images are refused as possible decompression bombs (default {DEFAULT_MAX_PIXELS})")
    p.add_argument("--output", type=Path, default=None, help="write JSONL here (default: standard output)")
    p.add_argument("--batch-size", type=positive_int, default=16)
    _add_decoding(p)
    p.set_defaults(func=cmd_predict)


def add_support(p, what: str, images: str) -> None:
    """``--support FILE`` and ``--support-format`` of a command that takes any checkpoint (``mner
    predict``, ``tag``, ``serve``): ``what`` the command does with it, ``images`` where the support's
    relative image references are read."""
    p.add_argument("--support", type=Path, default=None, metavar="FILE",
                   help="few-shot checkpoints (mousing, protobert, nnshot, proto-maf): the annotated tweets that "
                        f"define the entity types (JSONL with tokens and tags, CoNLL or Twitter format); {what}; "
                        f"its relative image references are read inside {images}")
    p.add_argument("--support-format", default="auto", help="format of --support (default: detected)")


def _add_decoding(p: argparse.ArgumentParser) -> None:
    """The decoding options ``evaluate`` and ``predict`` share."""
    p.add_argument("--decoder", default=None, choices=("argmax", "structshot"),
                   help="NNShot checkpoints: decode as NNShot (argmax) or StructShot")
    p.add_argument("--temperature", type=float, default=None, help="StructShot's tau (default: the checkpoint's)")
    p.add_argument("--o-bias", type=float, default=None, metavar="B",
                   help="add B to the O emission before decoding (trades recall for precision; "
                        "default: the checkpoint's o_bias, 0 unless set)")
    p.add_argument("--min-confidence", type=float, default=None, metavar="T",
                   help="drop predicted entities whose confidence (smallest CRF marginal of their words) is "
                        "below T, in [0, 1) (default: the checkpoint's min_confidence, 0 unless set)")
    p.add_argument("--transition-scale", type=float, default=None, metavar="TAU",
                   help="MOUSING checkpoints: multiply the learned CRF transition scores by TAU >= 0 "
                        "(default: the checkpoint's transition_scale, 1 unless set)")
    p.add_argument("--o-distance", default=None, choices=("prototype", "nearest"),
                   help="MOUSING checkpoints: score O against the O prototype (the poster's) or the nearest O "
                        "support words (default: the checkpoint's o_distance)")
    p.add_argument("--o-neighbours", type=positive_int, default=None, metavar="K",
                   help="MOUSING checkpoints with --o-distance nearest: average the K nearest O support words "
                        "(default: the checkpoint's o_neighbours)")


def _apply_decoding(model, args) -> None:
    """``--decoder``, ``--temperature``, ``--o-bias``, ``--min-confidence``, ``--transition-scale``,
    ``--o-distance`` and ``--o-neighbours`` set on the loaded model's config
    (:func:`mner.fewshot.decoding.apply_decoding`)."""
    from mner.fewshot.decoding import DECODING_OPTIONS, apply_decoding

    apply_decoding(model, {name: getattr(args, name, None) for name in DECODING_OPTIONS})


def cmd_train(args) -> int:
    from mner.fewshot.experiment import load_fewshot, train_fewshot

    overrides = list(args.overrides)
    if args.output_dir:
        overrides.append(f"training.output_dir={args.output_dir}")
    summary = train_fewshot(load_fewshot(args.config, overrides))
    if summary:
        print(json.dumps(summary))
    return 0


def cmd_evaluate(args) -> int:
    from mner.data.episodes import read_episodes
    from mner.data.images import ImageStore
    from mner.errors import UsageError
    from mner.fewshot.evaluation import predict_episodes, score_episodes
    from mner.fewshot.pipeline import load_fewshot_model
    from mner.tasks import task_of

    # an export folder (mner export) runs on ONNX Runtime
    model = load_fewshot_model(args.checkpoint, getattr(args, "backend", None), "cpu")
    if task_of(model).name != "episodic":
        raise UsageError(f"{args.checkpoint}: a {model.model_type!r} model is not a few-shot model; "
                         "use mner evaluate")
    _apply_decoding(model, args)
    episodes = read_episodes(args.episodes)
    if args.limit:
        episodes = episodes[: args.limit]
    store = ImageStore(args.images) if args.images else None
    preds = predict_episodes(model, episodes, model.processor(store), args.batch_size,
                             progress=not args.json)
    report = score_episodes(episodes, preds, args.mode)
    if args.json:
        print(json.dumps({"checkpoint": str(args.checkpoint), "episodes": str(args.episodes),
                          "count": len(episodes), "precision": report.micro.precision,
                          "recall": report.micro.recall, "f1": report.micro.f1,
                          "episodes_per_second": preds.episodes_per_second, **report.to_dict()}, indent=2))
    else:
        print(f"{len(episodes)} episodes, {sum(len(e.query) for e in episodes)} query tweets pooled "
              f"({preds.episodes_per_second:.1f} episodes/s)")
        print(report.format())
    return 0


def cmd_predict(args) -> int:
    """``mner fewshot predict``: an alias of ``mner predict CHECKPOINT --support FILE`` (its ``--images``
    is ``mner predict``'s ``--image-dir``)."""
    from mner.cli.infer import cmd_predict as predict

    values = dict(vars(args))
    values["image_dir"] = Path(values.pop("images")) if values.get("images") is not None else None
    values.setdefault("backend", None)
    return predict(argparse.Namespace(**values))


# ----------------------------------------------------------------------------- diagnose


def _add_diagnose(fsub: argparse._SubParsersAction) -> None:
    p = fsub.add_parser("diagnose", help="does a MOUSING checkpoint use its graph, intervention and captions?",
                        description="On the episodes of EPISODES: the share of word-visual pairs that are graph "
                                    "edges, the intervention masks at test and in training, the agreement of the "
                                    "two views, and F1 with the real, shuffled and no captions (every few-shot "
                                    "model with a caption view gets the caption controls).")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("episodes", type=Path, help="an episode file (JSONL, mner fewshot episodes)")
    p.add_argument("--images", default=None, metavar="DIR", help="image folder (models with the pixels view)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="episodes per batch")
    p.add_argument("--limit", type=positive_int, default=None, help="only the first N episodes")
    p.add_argument("--seed", type=int, default=0, help="of the caption shuffle and the training-mode masks")
    p.add_argument("--json", action="store_true", help="print the diagnostics as JSON")
    p.set_defaults(func=cmd_diagnose)


def cmd_diagnose(args) -> int:
    from mner.data.episodes import read_episodes
    from mner.data.images import ImageStore
    from mner.errors import UsageError
    from mner.fewshot.diagnose import diagnose, format_diagnostics
    from mner.models import load_model
    from mner.models.episodic import EpisodicTagger

    model = load_model(args.checkpoint)
    if not isinstance(model, EpisodicTagger):
        raise UsageError(f"{args.checkpoint}: a {model.model_type!r} model is not a few-shot model; "
                         "use mner evaluate for it")
    episodes = read_episodes(args.episodes)
    if args.limit:
        episodes = episodes[: args.limit]
    store = ImageStore(args.images) if args.images else None
    report = diagnose(model, episodes, model.processor(store), args.batch_size, seed=args.seed)
    if args.json:
        print(json.dumps({"checkpoint": str(args.checkpoint), "episodes_file": str(args.episodes), **report},
                         indent=2))
    else:
        print(format_diagnostics(report))
    return 0
