"""User-defined types: few-shot checkpoints scored on types a user defines, through the user's own path.

The data (``bench/data/user-types/``, its README) is ours, not from a benchmark: three types a user
might define (PRODUCT, EVENT, WORK), one support file of 18 annotated tweets (6 per type) and 136
query tweets with gold tags: tweets of one new type, of two, tweets with only person, place and
company names (never to be tagged), and tweets with no name at all.

Each checkpoint is run exactly as a user runs it: ``mner fewshot predict CKPT --support support.jsonl
--input input.jsonl --output predictions.jsonl`` (in-process, through :func:`mner.cli.main.main`,
the CLI's own entry point), where ``input.jsonl`` holds only what a user has, each query tweet's
``id``, ``text`` and ``caption`` (no tokens, no tags). The predicted entities (character offsets into
the text) are mapped onto the gold tokens and scored per type and micro with
:func:`mner.tagging.score` (conlleval; the entities are well-formed, so strict gives the same).
False positives are also counted where a user notices them first: on a person, place or company
name (``other_tags`` of the query file), and in tweets with no name at all.

Checkpoints: the paths given, or else every finished ``twitter2017__*__k5__seed37/best`` under
``runs/bench-fewshot`` (and under each ``--runs DIR``); finished means its cell is stored in
``bench/results/fewshot/`` (a checkpoint still training is never read). An NNShot checkpoint is also
decoded as StructShot (its cell's tau) and a prototype checkpoint with its dev-chosen O bias (its
``-cal`` cell), when ``mner fewshot predict`` has the options for it (``--decoder``/``--temperature``,
``--o-bias``); otherwise the page says they were not scored.

    .venv/bin/python bench/user_types.py --runs /work/bench-wt --threads 1
    .venv/bin/python bench/user_types.py runs/my-mousing/best --out /tmp/user-types.md

Writes ``docs/results/user-types.md`` (``--out``) and its rows as data, ``bench/results/user-types.json``
(``--json``: the few-shot results page summarises them); the output ends with one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fewshot_benchmark import NAMES, ORDER, RESULTS, SPLITS, git_commit, machine, sha256  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench" / "data" / "user-types"
PAGE = ROOT / "docs" / "results" / "user-types.md"
#: the rows of the page as data, beside it (the few-shot results page summarises them)
RESULT = ROOT / "bench" / "results" / "user-types.json"
CELLS = "twitter2017__*__k5__seed37"
TYPES = ("PRODUCT", "EVENT", "WORK")


# ----------------------------------------------------------------------------- data


def read_gold(path: Path):
    """The query tweets with their gold tags and other-name tags (``other_tags``), read by mner's reader."""
    from mner.data.formats import read_jsonl

    examples = read_jsonl(path)
    other = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            obj = json.loads(line)
            other[str(obj.get("id", n))] = obj.get("other_tags") or ["O"] * len(obj["tokens"])
    return examples, [other[ex.id] for ex in examples]


def write_input(examples, path: Path) -> None:
    """What a user gives ``predict``: each tweet's id, text and caption."""
    lines = [json.dumps({"id": ex.id, "text": ex.text, "caption": ex.caption}, ensure_ascii=False)
             for ex in examples]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def entities_to_tags(ex, entities: list[dict]) -> list[str]:
    """IOB2 tags over the gold tokens of ``ex`` for predicted entities given by char offsets into its
    text (Unicode code points). An entity whose ends are not token ends is an error: the data's test
    makes mner's tokenizer split every query text into exactly its gold tokens."""
    from mner.tagging import spans_to_tags

    starts = {s: i for i, (s, _) in enumerate(ex.offsets)}
    ends = {e: i for i, (_, e) in enumerate(ex.offsets)}
    spans = []
    for ent in entities:
        s, e = ent["start"], ent["end"]
        if ex.text[s:e] != ent["text"]:
            raise ValueError(f"{ex.where}: predicted entity {ent['text']!r} at [{s}, {e}) is {ex.text[s:e]!r} in the "
                             "gold text")
        if s not in starts or e not in ends or starts[s] > ends[e]:
            raise ValueError(f"{ex.where}: predicted entity {ent['text']!r} at [{s}, {e}) does not fall on the "
                             f"gold tokens {list(ex.tokens)}")
        spans.append((starts[s], ends[e] + 1, ent["type"]))
    return spans_to_tags(spans, len(ex.tokens))


def read_predictions(path: Path, gold) -> list[list[str]]:
    """Predicted tags per gold tweet from ``predict``'s JSONL output (one line per input, same order)."""
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if [str(r["id"]) for r in records] != [ex.id for ex in gold]:
        raise ValueError(f"{path}: the predictions' ids are not the query's, in its order")
    out = []
    for ex, rec in zip(gold, records):
        # predict writes "text" only when it differs from the tokens joined by spaces; the entities' own
        # texts are checked against the gold text in any case
        if rec.get("text", ex.text) != ex.text:
            raise ValueError(f"{ex.where}: predict read the text {rec['text']!r}, the gold text is {ex.text!r}")
        out.append(entities_to_tags(ex, rec["entities"]))
    return out


def score_predictions(gold, other, pred, types=TYPES) -> dict:
    """Per-type and micro P/R/F1 (conlleval) and where the false positives fall."""
    from mner.tagging import get_spans, score

    report = score([list(ex.tags) for ex in gold], pred, mode="conlleval", ids=[ex.id for ex in gold])
    fp = {"total": 0, "on_other_names": 0, "in_tweets_without_names": 0, "wrong_type": 0}
    for ex, oth, tags in zip(gold, other, pred):
        g = {s.key for s in get_spans(list(ex.tags))}
        g_bounds = {(s, e) for s, e, _ in g}
        names = [(s.start, s.end) for s in get_spans(oth)]
        for s in get_spans(tags):
            if s.key in g:
                continue
            fp["total"] += 1
            fp["wrong_type"] += (s.start, s.end) in g_bounds
            fp["on_other_names"] += any(s.start < e and a < s.end for a, e in names)
            fp["in_tweets_without_names"] += not g and not names
    types = list(types) + sorted(set(report.per_type) - set(types))
    return {"per_type": {t: (report.per_type[t].to_dict() if t in report.per_type else
                             {"precision": 0.0, "recall": 0.0, "f1": 0.0, "tp": 0, "predicted": 0, "support": 0})
                         for t in types},
            "micro": report.micro.to_dict(), "false_positives": fp}


# ----------------------------------------------------------------------------- checkpoints


def predict_options() -> set[str]:
    """The options ``mner fewshot predict`` accepts (read from its --help)."""
    import re

    from mner.cli.main import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.suppress(SystemExit):
        main(["fewshot", "predict", "--help"])
    return set(re.findall(r"--[a-z][a-z-]*", buf.getvalue()))


def _cell(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def find_checkpoints(runs: list[Path], pattern: str = CELLS, log=print) -> list[tuple[str, Path]]:
    """``(cell, best/)`` for every finished cell matching ``pattern`` under each runs folder (a
    ``runs/bench-fewshot`` folder, or a checkout that has one)."""
    found: dict[Path, str] = {}
    for root in runs:
        folder = root / "runs" / "bench-fewshot" if (root / "runs" / "bench-fewshot").is_dir() else root
        for best in sorted(folder.glob(f"{pattern}/best")):
            cell = best.parent.name
            if not (best / "config.json").is_file():
                continue
            if _cell(cell) is None:
                log(f"skipped {best}: its cell is not stored in {RESULTS} (still training?)")
                continue
            found.setdefault(best.resolve(), cell)
    return [(cell, path) for path, cell in found.items()]


def cell_label(cell: str) -> str:
    """``Per+Loc cell: trained on ORG, MISC; seed 37``: a benchmark checkpoint is trained on the two types
    its split does not name."""
    dataset, split, _, k, seed = cell.split("__")
    source = [t for t in ("PER", "LOC", "ORG", "MISC") if t not in SPLITS.get(split, ())]
    return f"{dataset} {split} cell: trained on {', '.join(source)}; {k.upper()}, seed {seed[4:]}"


def decodings(cell: str | None, model_type: str, options: set[str]) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """The rows of one checkpoint: ``(model name, extra predict options)``, and the notes of what
    could not be scored."""
    base = cell.split("__")[2] if cell else model_type
    rows, notes = [(base, [])], []
    if cell is None:
        return rows, notes
    if model_type == "nnshot":
        ss = _cell(cell.replace("__nnshot__", "__structshot__"))
        if ss is not None:
            if {"--decoder", "--temperature"} <= options:
                rows.append(("structshot", ["--decoder", "structshot", "--temperature", str(ss["temperature"])]))
            else:
                notes.append(f"{cell}: StructShot (tau {ss['temperature']}) not scored: `mner fewshot predict` "
                             "has no --decoder/--temperature")
    cal = _cell(cell.replace(f"__{base}__", f"__{base}-cal__"))
    if cal is not None:
        if "--o-bias" in options:
            rows.append((f"{base}-cal", ["--o-bias", str(cal["o_bias"])]))
        else:
            notes.append(f"{cell}: {base} + O bias {cal['o_bias']} not scored: `mner fewshot predict` has no --o-bias")
    return rows, notes


def run_predict(checkpoint: Path, support: Path, inputs: Path, output: Path, extra: list[str]) -> list[str]:
    """``mner fewshot predict`` through the CLI's entry point; returns its argv."""
    from mner.cli.main import main

    argv = ["fewshot", "predict", str(checkpoint), "--support", str(support), "--input", str(inputs),
            "--output", str(output), *extra]
    code = main(argv)
    if code != 0:
        raise SystemExit(f"mner {' '.join(argv)} exited with code {code}")
    return argv


# ----------------------------------------------------------------------------- report


def _rel(arg: str) -> str:
    """A path inside the checkout as a relative path (for the page)."""
    try:
        return str(Path(arg).resolve().relative_to(ROOT)) if "/" in arg else arg
    except ValueError:
        return arg


def _prf(s: dict) -> str:
    return f"{100 * s['precision']:.1f} / {100 * s['recall']:.1f} / **{100 * s['f1']:.1f}**"


def _order(row: dict) -> tuple:
    m = row["model"]
    return (ORDER.index(m) if m in ORDER else len(ORDER), m, row["checkpoint"])


def table(rows: list[dict], types: list[str]) -> list[str]:
    lines = ["| model | checkpoint | " + " | ".join(f"{t} P / R / F1" for t in types)
             + " | micro P / R / F1 | predicted / gold | false positives: all / on other names / in tweets "
               "without names / wrong type |",
             "|---|---|" + "---|" * (len(types) + 3)]
    for r in sorted(rows, key=_order):
        fp, m = r["false_positives"], r["micro"]
        lines.append(f"| {NAMES.get(r['model'], r['model'])} | {r['label']} | "
                     + " | ".join(_prf(r["per_type"][t]) for t in types)
                     + f" | {_prf(m)} | {m['predicted']} / {m['support']} | {fp['total']} / {fp['on_other_names']} / "
                       f"{fp['in_tweets_without_names']} / {fp['wrong_type']} |")
    return lines


def page(result: dict, command: str) -> str:
    rows, types = result["rows"], result["types"]
    data = result["data"]
    lines = [
        "# User-defined types: PRODUCT, EVENT, WORK",
        "",
        "Generated by `bench/user_types.py` (do not edit by hand). Data: `bench/data/user-types/` (written "
        "for mner, not from a benchmark; its README has the types' guidelines and counts): a support file "
        f"of {data['support_tweets']} tweets ({', '.join(f'{t} {n}' for t, n in data['support_per_type'].items())} "
        f"tweets) and {data['query_tweets']} query tweets ({data['query_mentions']} gold mentions). Every "
        "checkpoint is run as a user runs it, `mner fewshot predict CKPT --support support.jsonl --input "
        "input.jsonl`, the input holding each query tweet's id, text and caption only; the entities it writes "
        "are scored against the gold tags, entity-level (conlleval), in percent. One episode of three types "
        "(the support file's), while the benchmark checkpoints were trained on 2-way episodes of two source "
        "types. Captions only (no images).",
        "",
        f"- command: `{command}`",
        f"- data: `support.jsonl` sha256 `{data['support_sha256']}`, `query.jsonl` sha256 `{data['query_sha256']}`",
        f"- machine: {result['machine']}; torch threads {result['threads']}; git commit {result['git_commit']}; "
        f"{result['finished']}",
        "",
    ]
    lines += table(rows, types) if rows else ["No checkpoint was scored."]
    lines += ["", "False positives: predicted entities that match no gold entity; *on other names*: overlapping a "
              "person, place or company name (`other_tags`), *in tweets without names*: in the "
              f"{data['tweets_without_names']} tweets with no name at all, *wrong type*: the span of a gold entity "
              "with another type.", ""]
    if result["not_scored"]:
        lines += ["Not scored:", ""] + [f"- {n}" for n in result["not_scored"]] + [""]
    if rows:
        r = sorted(rows, key=_order)[0]
        lines += ["Each row's predict call (the first as an example):", "",
                  f"    mner {' '.join(r['argv'])}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="*", type=Path,
                    help="few-shot checkpoints (default: the finished cells' best/ under runs/bench-fewshot "
                         "and each --runs DIR)")
    ap.add_argument("--runs", action="append", type=Path, default=[], metavar="DIR",
                    help="another runs/bench-fewshot folder (or a checkout holding one) to take checkpoints from")
    ap.add_argument("--cells", default=CELLS, metavar="GLOB", help=f"cell names to take (default {CELLS})")
    ap.add_argument("--support", type=Path, default=DATA / "support.jsonl")
    ap.add_argument("--query", type=Path, default=DATA / "query.jsonl")
    ap.add_argument("--out", type=Path, default=PAGE, help="the results page (default docs/results/user-types.md)")
    ap.add_argument("--json", type=Path, default=RESULT,
                    help="the rows as data, written with the page (default bench/results/user-types.json)")
    ap.add_argument("--no-page", action="store_true", help="print only, write no page (nor --json)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--predictions", type=Path, default=None, metavar="DIR",
                    help="keep each row's predict output here (<model>__<cell or folder>.jsonl)")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    command = ".venv/bin/python bench/user_types.py " + " ".join(sys.argv[1:] if argv is None else argv)

    if args.checkpoints:   # a benchmark cell's best/ keeps its cell's name (and its StructShot / O-bias rows)
        targets = [(p.parent.name if p.name == "best" and p.parent.name.count("__") == 4 else None, p)
                   for p in args.checkpoints]
    else:
        targets = find_checkpoints([ROOT / "runs" / "bench-fewshot", *args.runs], args.cells,
                                   log=lambda m: print(m, file=sys.stderr))
    gold, other = read_gold(args.query)
    from mner.data.formats import read_file
    from mner.fewshot.pipeline import support_types
    from mner.tagging import get_spans

    support = read_file(args.support)
    types = support_types(support)
    options = predict_options()
    rows, not_scored = [], []
    with tempfile.TemporaryDirectory(prefix="user-types-") as tmp:
        inputs = Path(tmp) / "input.jsonl"
        write_input(gold, inputs)
        for cell, ckpt in targets:
            model_type = json.loads((ckpt / "config.json").read_text())["model_type"]
            decs, notes = decodings(cell, model_type, options)
            not_scored += notes
            for name, extra in decs:
                out = Path(tmp) / f"pred-{len(rows)}.jsonl"
                if args.predictions:
                    args.predictions.mkdir(parents=True, exist_ok=True)
                    out = args.predictions / f"{name}__{cell or ckpt.name}.jsonl"
                t0 = time.perf_counter()
                argv_used = run_predict(ckpt, args.support, inputs, out, extra)
                scores = score_predictions(gold, other, read_predictions(out, gold), types)
                rows.append({"model": name, "model_type": model_type, "cell": cell, "checkpoint": str(ckpt),
                             "label": cell_label(cell) if cell else str(ckpt),
                             "decoding": extra,
                             "argv": [{str(out): "predictions.jsonl", str(inputs): "input.jsonl"}.get(a, _rel(a))
                                      for a in argv_used],
                             "seconds": round(time.perf_counter() - t0, 2), **scores})
                m = scores["micro"]
                print(f"== {name} {ckpt}: P {100 * m['precision']:.1f} R {100 * m['recall']:.1f} "
                      f"F1 {100 * m['f1']:.1f}", file=sys.stderr, flush=True)
    q_mentions = sum(len(get_spans(list(ex.tags))) for ex in gold)
    result = {
        "types": types,
        "data": {"support": str(args.support), "query": str(args.query), "support_sha256": sha256(args.support),
                 "query_sha256": sha256(args.query), "support_tweets": len(support),
                 "support_per_type": {t: sum(any(tag[2:] == t for tag in ex.tags) for ex in support) for t in types},
                 "query_tweets": len(gold), "query_mentions": q_mentions,
                 "tweets_without_names": sum(set(ex.tags) == {"O"} and set(o) == {"O"}
                                             for ex, o in zip(gold, other))},
        "machine": machine(), "threads": args.threads, "git_commit": git_commit(),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "rows": rows, "not_scored": not_scored,
    }
    print("\n".join(table(rows, types)) if rows else "no checkpoint scored")
    for n in not_scored:
        print(f"not scored: {n}")
    if not args.no_page:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(page(result, command) + "\n", encoding="utf-8")
        print(f"results page: {args.out}")
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**result, "command": command}, indent=1) + "\n", encoding="utf-8")
    figures = {"data_sha256": {"support": result["data"]["support_sha256"], "query": result["data"]["query_sha256"]},
               "rows": [{"model": r["model"], "checkpoint": r["checkpoint"], "decoding": r["decoding"],
                         "micro": {k: round(r["micro"][k], 4) for k in ("precision", "recall", "f1")},
                         "per_type_f1": {t: round(r["per_type"][t]["f1"], 4) for t in types},
                         "false_positives": r["false_positives"]} for r in sorted(rows, key=_order)],
               "not_scored": not_scored}
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
