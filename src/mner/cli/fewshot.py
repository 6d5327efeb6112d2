"""``mner fewshot episodes|protocol|check``: few-shot episodes as data (``docs/mousing.md``).

Each subcommand is one ``_add_<name>(fsub)`` that declares its options and one
``cmd_<name>(args)`` that runs it; later subcommands (train, evaluate, predict) are added the
same way in :func:`register`. OTHER (Twitter-2015) and MISC (Twitter-2017) are one type: the
corpus is read with the type map ``OTHER=MISC`` and ``--types`` accepts OTHER for MISC.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mner.errors import MNERError


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    fs = sub.add_parser("fewshot", help="few-shot NER: sample, write and check episodes")
    fsub = fs.add_subparsers(dest="fewshot_command", metavar="SUBCOMMAND", required=True)
    _add_episodes(fsub)
    _add_protocol(fsub)
    _add_check(fsub)


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
                   help="K of the query set (default: --k)")
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

    types = parse_types(args.types)
    corpus, _, cap_note = load_protocol_corpus(args.data_dir, args.captions)
    if args.split not in corpus.splits:
        raise MNERError(f"{args.data_dir}: no split {args.split!r} (it has {', '.join(corpus.splits)}); "
                        "choose one with --split")
    sampler = EpisodeSampler(corpus[args.split], types, args.k, query_k=args.query_k, seed=args.seed)
    episodes = sampler.sample_many(args.episodes)
    write_episodes(episodes, args.out)
    summary = summarize_episodes(episodes)
    sha = file_sha256(args.out)
    if args.json:
        print(json.dumps({
            "out": str(args.out), "sha256": sha, "corpus": str(args.data_dir), "split": args.split,
            "type_map": PROTOCOL_TYPE_MAP, "types": list(types), "k": args.k,
            "query_k": args.query_k or args.k, "seed": args.seed, "captions": cap_note, **summary,
        }, indent=2, ensure_ascii=False))
        return 0
    print(f"{args.out}: {format_summary(summary)}")
    print(f"sha256 {sha}")
    return 0


# ----------------------------------------------------------------------------- protocol


def _add_protocol(fsub: argparse._SubParsersAction) -> None:
    p = fsub.add_parser("protocol", help="write the six target-pair splits' test and dev episodes of one dataset")
    p.add_argument("data_dir", type=Path, metavar="DATA_DIR", help="a corpus folder with train/valid/test files")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for <pair>/{test,dev}-k{K}.jsonl")
    p.add_argument("--k", type=positive_int, nargs="+", default=[1, 5], metavar="K",
                   help="values of K (default: 1 5)")
    p.add_argument("--test-episodes", type=positive_int, default=500, help="episodes per test file (default 500)")
    p.add_argument("--dev-episodes", type=positive_int, default=100, help="episodes per dev file (default 100)")
    p.add_argument("--seed", type=int, default=1, help="sampler seed (default 1)")
    p.set_defaults(func=cmd_protocol)


def cmd_protocol(args) -> int:
    from mner.data.sampling import write_protocol

    manifest = write_protocol(
        args.data_dir, args.out, ks=tuple(args.k), test_episodes=args.test_episodes,
        dev_episodes=args.dev_episodes, seed=args.seed,
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
                   help="K of the query set (default: --k)")
    p.add_argument("--max-show", type=positive_int, default=50, help="violations to print (default 50)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=cmd_check)


def cmd_check(args) -> int:
    from mner.data.episodes import iter_episodes, summarize_episodes
    from mner.data.sampling import episode_violations, format_summary

    errors: list = []
    violations: list[str] = []
    episodes = []
    for ep in iter_episodes(args.file, errors=errors):
        episodes.append(ep)
        violations += [f"{ep.source}: {v}" for v in episode_violations(ep, args.k, args.query_k)]
    violations = [str(e) for e in errors] + violations
    summary = summarize_episodes(episodes)
    if args.json:
        print(json.dumps({"file": str(args.file), "ok": not violations, "k": args.k,
                          "violations": violations, **summary}, indent=2, ensure_ascii=False))
        return 1 if violations else 0
    for v in violations[: args.max_show]:
        print(v)
    if len(violations) > args.max_show:
        print(f"... {len(violations) - args.max_show} more ({len(violations)} in all; --max-show N or --json)")
    print(f"{args.file}: {format_summary(summary)}")
    print(f"{len(violations)} violations; result: " + ("FAILED" if violations else "ok"))
    return 1 if violations else 0
