"""``mner score GOLD [PRED]``: entity-level P/R/F1 of predictions against gold."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mner.data.example import Example
from mner.data.formats import FORMATS, read_file
from mner.errors import MNERError
from mner.tagging import score


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="entity-level precision/recall/F1 of PRED against GOLD",
        description="Score predicted tags against gold tags, entity by entity. GOLD and PRED "
                    "may be in any supported format; tweets are matched by id and their tokens "
                    "must agree. With only GOLD, the file must have a gold and a predicted "
                    "column (token, gold, pred: what `mner evaluate` writes).",
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
    p.set_defaults(func=cmd_score)


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
        gold = read_file(args.gold, args.format, args.map_types, tag_column=-2)
        pred = read_file(args.gold, args.format, args.map_types, tag_column=-1)
        names = (f"{args.gold} (gold column)", f"{args.gold} (pred column)")
    else:
        gold = read_file(args.gold, args.format, args.map_types)
        pred = read_file(args.pred, args.format, args.map_types)
        names = (str(args.gold), str(args.pred))
    pred = align(gold, pred, *names)
    for ex in gold:
        if ex.tags is None:
            raise MNERError(f"{names[0]}: tweet {ex.id} has no gold tags")
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
