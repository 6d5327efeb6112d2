"""``mner score GOLD [PRED] [--compare PRED_B]``: entity-level P/R/F1 of predictions against
gold, and with ``--compare`` a paired significance test of a second system against the first
(:mod:`mner.tagging.significance`). Any file may be gzip-compressed (``.gz``)."""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from mner.data.example import Example
from mner.data.formats import FORMATS, detect_format, read_file
from mner.errors import MNERError
from mner.tagging import score
from mner.tagging.significance import METHODS, compare


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="entity-level precision/recall/F1 of PRED against GOLD",
        description="Score predicted tags against gold tags, entity by entity. GOLD and PRED "
                    "may be in any supported format; tweets are matched by id and their tokens "
                    "must agree. With only GOLD, the file must have a gold and a predicted "
                    "column (token, gold, pred: what `mner evaluate` writes). With --compare, a "
                    "second system's predictions on the same tweets are scored too and tested "
                    "against the first (paired, tweet by tweet). Files ending in .gz are read "
                    "compressed.",
    )
    p.add_argument("gold", type=Path)
    p.add_argument("pred", type=Path, nargs="?", default=None)
    p.add_argument("--mode", default="conlleval", choices=("conlleval", "strict"),
                   help="conlleval (default, the papers'): lenient, an I- after O starts an "
                        "entity; strict: IOB2, only B- starts an entity")
    p.add_argument("--format", default="auto", choices=("auto",) + FORMATS)
    p.add_argument("--map-types", default=None, metavar="SPEC",
                   help="rename entity types in both files (e.g. OTHER=MISC)")
    p.add_argument("--json", action="store_true", help="print JSON (fractions in [0, 1])")
    p.add_argument("--compare", type=Path, default=None, metavar="PRED_B",
                   help="system B: its predictions on the same tweets (a pred file, or token gold pred "
                        "columns, whose gold must equal GOLD's); prints both F1s, the gain of B over A "
                        "(PRED, or GOLD's pred column), its p-value and, for the bootstrap, a confidence "
                        "interval")
    p.add_argument("--significance", default="bootstrap", choices=METHODS,
                   help="with --compare: paired bootstrap over tweets (default; p-value and interval) "
                        "or approximate randomization (p-value)")
    p.add_argument("--resamples", type=int, default=10_000, help="with --compare: resamples (default 10000)")
    p.add_argument("--seed", type=int, default=0, help="with --compare: seed of the resampling (default 0)")
    p.add_argument("--confidence", type=float, default=0.95,
                   help="with --compare: level of the bootstrap interval (default 0.95)")
    p.set_defaults(func=cmd_score)


@contextlib.contextmanager
def _plain(path: Path) -> Iterator[Path]:
    """``path`` itself, or for ``*.gz`` a decompressed copy (named like it without ``.gz``, so
    that the format is detected from its name as usual) in a temporary folder."""
    if path.suffix.lower() != ".gz":
        yield path
        return
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with tempfile.TemporaryDirectory(prefix="mner-score-") as tmp:
        plain = Path(tmp) / path.name[:-3]
        try:
            with gzip.open(path, "rb") as src, open(plain, "wb") as dst:
                shutil.copyfileobj(src, dst)
        except (OSError, EOFError) as err:
            raise MNERError(f"{path}: not a readable gzip file ({err})") from None
        try:
            yield plain
        except MNERError as err:  # name the compressed file, not the temporary copy
            raise MNERError(str(err).replace(str(plain), f"{path} (decompressed)")) from None


def _read(path: Path, fmt: str, type_map, tag_column: int = -1) -> list[Example]:
    with _plain(path) as plain:
        return read_file(plain, fmt, type_map, tag_column=tag_column)


def _columns(path: Path) -> int:
    """Columns of the first token line of a column file (1 for JSONL: no gold column)."""
    with _plain(path) as plain:
        if detect_format(plain) == "jsonl":
            return 1
        with open(plain, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                line = line.rstrip("\r\n")
                if not line.strip() or line.startswith(("IMGID:", "# ", "-DOCSTART-")):
                    continue
                return len(line.split("\t")) if "\t" in line else len(line.split())
    return 0


def align(gold: list[Example], pred: list[Example], gold_name: str, pred_name: str) -> list[Example]:
    """``pred`` reordered to match ``gold`` by tweet id, with matching tokens; raise otherwise."""
    by_id = {ex.id: ex for ex in pred}
    if len(by_id) != len(pred):
        raise MNERError(f"{pred_name}: tweet ids are not unique; cannot match tweets to {gold_name}")
    missing = [ex.id for ex in gold if ex.id not in by_id]
    extra = sorted(set(by_id) - {ex.id for ex in gold})
    if missing or extra:
        raise MNERError(
            f"{pred_name} and {gold_name} hold different tweets: "
            f"{len(missing)} missing from {pred_name} (e.g. {missing[:5]}), "
            f"{len(extra)} not in {gold_name} (e.g. {extra[:5]})"
        )
    out = []
    for g in gold:
        p = by_id[g.id]
        if p.tokens != g.tokens:
            i = next((k for k, (a, b) in enumerate(zip(g.tokens, p.tokens)) if a != b),
                     min(len(g.tokens), len(p.tokens)))
            raise MNERError(
                f"tweet {g.id}: tokens differ at position {i} "
                f"({gold_name}: {g.tokens[i:i + 1]}, {pred_name}: {p.tokens[i:i + 1]}; "
                f"{len(g.tokens)} vs {len(p.tokens)} tokens); predictions must keep the gold tokenization"
            )
        if p.tags is None:
            raise MNERError(f"{pred_name}: tweet {g.id} has no tags")
        out.append(p)
    return out


def cmd_score(args) -> int:
    if args.pred is None:
        gold = _read(args.gold, args.format, args.map_types, tag_column=-2)
        pred = _read(args.gold, args.format, args.map_types, tag_column=-1)
        names = (f"{args.gold} (gold column)", f"{args.gold} (pred column)")
    else:
        gold = _read(args.gold, args.format, args.map_types)
        pred = _read(args.pred, args.format, args.map_types)
        names = (str(args.gold), str(args.pred))
    pred = align(gold, pred, *names)
    for ex in gold:
        if ex.tags is None:
            raise MNERError(f"{names[0]}: tweet {ex.id} has no gold tags")
    if args.compare is not None:
        return _compare(args, gold, pred, names)
    try:
        report = score([g.tags for g in gold], [p.tags for p in pred], mode=args.mode,
                       ids=[g.id for g in gold])
    except ValueError as err:  # a malformed tag in one of the files (score names the tweet and tag)
        raise MNERError(f"{names[0]} / {names[1]}: {err}") from err
    if args.json:
        overall = {k: getattr(report.micro, k) for k in ("precision", "recall", "f1")}
        print(json.dumps({"gold": names[0], "pred": names[1], "tweets": len(gold), **overall,
                          **report.to_dict()}, indent=2))
    else:
        print(f"gold: {names[0]}\npred: {names[1]}\ntweets: {len(gold)}")
        print(report.format())
    return 0


def _check_gold_column(path: Path, args, gold: list[Example], aligned: list[Example], name: str) -> None:
    """A prediction file with token, gold and pred columns must carry GOLD's tags in its gold
    column: predictions made on other gold (another type map, another release) are not paired."""
    if path == args.gold or _columns(path) < 3:
        return
    own = {ex.id: ex.tags for ex in _read(path, args.format, args.map_types, tag_column=-2)}
    for g, p in zip(gold, aligned):
        if own.get(p.id) != g.tags:
            raise MNERError(f"{name}: tweet {g.id}: its gold column differs from {args.gold}'s tags; "
                            "both systems must be scored on the same gold (same file, same --map-types)")


def _compare(args, gold: list[Example], pred: list[Example], names: tuple[str, str]) -> int:
    if args.resamples < 1:
        raise MNERError(f"--resamples must be >= 1, got {args.resamples}")
    if not 0.0 < args.confidence < 1.0:
        raise MNERError(f"--confidence must be in (0, 1), got {args.confidence}")
    name_b = str(args.compare)
    other = align(gold, _read(args.compare, args.format, args.map_types), names[0], name_b)
    if args.pred is not None:
        _check_gold_column(args.pred, args, gold, pred, names[1])
    _check_gold_column(args.compare, args, gold, other, name_b)
    gold_tags = [g.tags for g in gold]
    ids = [g.id for g in gold]
    try:
        reports = [score(gold_tags, [p.tags for p in ps], mode=args.mode, ids=ids) for ps in (pred, other)]
        result = compare(gold_tags, [p.tags for p in pred], [p.tags for p in other], method=args.significance,
                         resamples=args.resamples, seed=args.seed, confidence=args.confidence, mode=args.mode)
    except ValueError as err:
        raise MNERError(f"{names[0]} / {names[1]} / {name_b}: {err}") from err
    if args.json:
        systems = {key: {"file": name, **{k: getattr(r.micro, k) for k in ("precision", "recall", "f1")},
                         **r.to_dict()}
                   for key, name, r in (("a", names[1], reports[0]), ("b", name_b, reports[1]))}
        print(json.dumps({"gold": names[0], "tweets": len(gold), "mode": args.mode, **systems,
                          "gain": result.difference, "significance": result.to_dict()}, indent=2))
        return 0
    print(f"gold: {names[0]}\nA: {names[1]}\nB: {name_b}\ntweets: {len(gold)}")
    print(reports[0].mode_line)
    for key, r in (("A", reports[0]), ("B", reports[1])):
        m = r.micro
        print(f"{key}: precision {100 * m.precision:.2f}, recall {100 * m.recall:.2f}, f1 {100 * m.f1:.2f} "
              f"({m.tp} correct of {m.predicted} predicted, {m.support} gold)")
    print("\n".join(result.format("A", "B").splitlines()[2:]))
    return 0
