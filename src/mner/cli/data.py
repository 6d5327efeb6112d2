"""``mner data stats|validate|convert|sample``."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from mner.data.captions import CaptionStore, resolve_caption_file
from mner.data.corpus import Corpus
from mner.data.formats import FORMATS, TYPE_MAP_PRESETS, DataFormatError, read_file, write_file
from mner.data.images import DEFAULT_MAX_PIXELS, POLICIES, ImageStore
from mner.data.stats import split_stats
from mner.data.validate import summarize, validate_corpus
from mner.resources import sample_corpus_dir
from mner.tagging.schemes import parse_tag


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a batch size, a count)."""
    return _int_at_least(text, 1)


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _int_at_least(text, 0)


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer: give an integer >= {low}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"{value} is too small: give an integer >= {low}")
    return value


def add_corpus_options(p: argparse.ArgumentParser, images: bool = True, image_policy: bool = True) -> None:
    p.add_argument("--format", default="auto", choices=("auto",) + FORMATS,
                   help="file format (default: detected from the file)")
    p.add_argument("--map-types", default=None, metavar="SPEC",
                   help="rename entity types while reading: a preset "
                        f"({', '.join(k for k in TYPE_MAP_PRESETS if k != 'none')}) or pairs "
                        "like OTHER=MISC. Default: keep types as written")
    p.add_argument("--captions", default="auto", metavar="FILE",
                   help="caption file '<id>.jpg :<caption>' per line; 'auto' (default) uses "
                        "<parent>/captions/<folder>_*.txt when there is exactly one; 'none' disables")
    if images:
        p.add_argument("--images", default=None, metavar="DIR",
                       help="folder of tweet images (<id>.jpg, .png, ...)")
    if images and image_policy:
        p.add_argument("--missing-images", default="error", choices=POLICIES,
                       help="what to do with a tweet whose image is missing or unreadable "
                            "(default: error)")


def resolve_captions(path: Path, spec: str | None) -> tuple[CaptionStore | None, str]:
    """The caption store a command should use and a sentence saying where it came from."""
    found, note = resolve_caption_file(spec, path)
    return (CaptionStore.from_file(found) if found is not None else None), note


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="inspect, validate and convert MNER data")
    dsub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    p = dsub.add_parser("stats", help="tweets, tokens, entities per type, images and captions per split")
    p.add_argument("path", type=Path, help="a corpus folder (train/valid/test files) or one file")
    add_corpus_options(p, image_policy=False)  # stats counts missing images; it applies no policy
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_stats)

    p = dsub.add_parser("validate", help="report every problem of a corpus with file:line")
    p.add_argument("path", type=Path, help="a corpus folder (train/valid/test files) or one file")
    add_corpus_options(p)
    p.add_argument("--types", default=None, metavar="T1,T2",
                   help="allowed entity types (default: any)")
    p.add_argument("--strict", action="store_true", help="warnings make the exit code non-zero too")
    p.add_argument("--max-image-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help=f"larger images are refused as possible decompression bombs (default {DEFAULT_MAX_PIXELS})")
    p.add_argument("--max-show", type=nonnegative_int, default=50, help="issues to print per code (default 50)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=cmd_validate)

    p = dsub.add_parser("convert", help="convert between the twitter, conll and jsonl formats")
    p.add_argument("source", type=Path)
    p.add_argument("target", type=Path)
    p.add_argument("--to", default="auto", choices=("auto",) + FORMATS,
                   help="target format (default: from the target's extension)")
    p.add_argument("--format", default="auto", choices=("auto",) + FORMATS, help="source format")
    p.add_argument("--map-types", default=None, metavar="SPEC")
    p.set_defaults(func=cmd_convert)

    p = dsub.add_parser("sample", help="print (or copy out) the small sample corpus that ships with mner")
    p.add_argument("--out", type=Path, default=None, help="copy the sample corpus into this folder")
    p.set_defaults(func=cmd_sample)


def _load(args) -> tuple[Corpus, list[str]]:
    notes = []
    corpus = Corpus.from_folder(args.path, type_map=args.map_types, format=args.format)
    fmts = sorted(set(corpus.formats.values()))
    notes.append(f"corpus: {args.path} ({', '.join(fmts)} format)")
    store, note = resolve_captions(args.path, args.captions)
    notes.append(note)
    if store is not None:
        corpus = corpus.with_captions(store)
    return corpus, notes


def cmd_stats(args) -> int:
    corpus, notes = _load(args)
    image_store = ImageStore(args.images) if args.images else None
    if image_store is None:
        notes.append("images: no image folder given (--images DIR)")
    per_split = {}
    for split, exs in corpus.items():
        _check_tags(corpus, split, args.map_types)
        st = split_stats(exs)
        rep = corpus.reports.get(split, {})
        if "captions" in rep:
            st.captions = rep["captions"].to_dict()
        if image_store is not None:
            found = sum(1 for ex in exs if ex.image is not None and image_store.resolve(ex.image))
            with_ref = sum(1 for ex in exs if ex.image is not None)
            st.images = {"found": found, "missing": with_ref - found, "no_image": len(exs) - with_ref}
        per_split[split] = st
    if args.json:
        print(json.dumps({
            "corpus": str(args.path),
            "files": {s: str(f) for s, f in corpus.files.items()},
            "notes": notes,
            "splits": {s: st.to_dict() for s, st in per_split.items()},
        }, indent=2, ensure_ascii=False))
        return 0
    for n in notes:
        print(n)
    types = sorted({t for st in per_split.values() for t in st.entities_b} |
                   {t for st in per_split.values() for t in st.entities})
    header = ["split", "tweets", "tokens"] + [f"B-{t}" for t in types] + ["B- total", "entities*", "orphan I-"]
    has_caps = any(st.captions is not None for st in per_split.values())
    has_imgs = any(st.images is not None for st in per_split.values())
    if has_caps:
        header += ["captions", "empty", "no caption"]
    if has_imgs:
        header += ["images", "missing"]
    rows = []
    for split, st in per_split.items():
        row = [split, st.tweets, st.tokens] + [st.entities_b.get(t, 0) for t in types]
        row += [st.total_b, st.total_entities, st.orphan_i]
        if has_caps:
            c = st.captions or {"found": 0, "empty": 0, "missing": st.tweets}
            row += [c["found"], c["empty"], c["missing"]]
        if has_imgs:
            row += [st.images["found"], st.images["missing"]]
        rows.append(row)
    print(_table(header, rows))
    print("* entities as the conlleval scorer counts them: an I- without B- starts an entity")
    return 0


def _check_tags(corpus: Corpus, split: str, type_map) -> None:
    """A malformed tag (``X-PER``, ``I-``) is a :class:`DataFormatError` at its file:line (entities
    cannot be counted around it); ``data validate`` lists every such tag."""
    for k, ex in enumerate(corpus[split]):
        for i, tag in enumerate(ex.tags or ()):
            try:
                parse_tag(tag, i)
            except ValueError:
                path = corpus.files[split]
                lines: list = []
                read_file(path, corpus.formats.get(split, "auto"), type_map, token_lines=lines)
                line = lines[k][i] if k < len(lines) and i < len(lines[k]) else None
                raise DataFormatError(path, line, f"malformed tag {tag!r} (token {ex.tokens[i]!r}, tweet {ex.id}); "
                                      "expected 'O' or '<B|I|E|S>-<TYPE>', e.g. 'B-PER'",
                                      "fix the tag; mner data validate lists every problem of the file") from None


def cmd_validate(args) -> int:
    captions, cap_note = resolve_captions(args.path, args.captions)
    issues, splits = validate_corpus(
        args.path, image_dir=args.images, captions=captions, missing_images=args.missing_images,
        allowed_types=args.types.split(",") if args.types else None,
        format=args.format, type_map=args.map_types, max_pixels=args.max_image_pixels,
    )
    counts = summarize(issues)
    failed = counts["error"] > 0 or (args.strict and counts["warning"] > 0)
    if args.json:
        print(json.dumps({
            "corpus": str(args.path),
            "ok": not failed,
            "counts": counts,
            "tweets": {s: len(e) for s, e in splits.items()},
            "issues": [i.to_dict() for i in issues],
        }, indent=2, ensure_ascii=False))
        return 1 if failed else 0
    print(cap_note)
    by_code: dict[str, list] = {}
    for issue in issues:
        by_code.setdefault(issue.code, []).append(issue)
    for code, items in by_code.items():
        for issue in items[: args.max_show]:
            print(issue.format())
        if len(items) > args.max_show:
            print(f"... {len(items) - args.max_show} more {code} ({len(items)} in all; --max-show N or --json for all)")
    tweets = ", ".join(f"{s} {len(e)}" for s, e in splits.items())
    per_code = ", ".join(f"{c} {len(v)}" for c, v in by_code.items()) or "none"
    print(f"tweets: {tweets}")
    print(f"{counts['error']} errors, {counts['warning']} warnings, {counts['info']} notes ({per_code})")
    print("result: " + ("FAILED" if failed else "ok"))
    return 1 if failed else 0


def cmd_convert(args) -> int:
    examples = read_file(args.source, args.format, args.map_types)
    write_file(examples, args.target, args.to)
    print(f"wrote {len(examples)} tweets to {args.target}")
    return 0


def cmd_sample(args) -> int:
    src = sample_corpus_dir()
    if args.out is None:
        print(src)
        return 0
    if args.out.exists() and any(args.out.iterdir()):
        raise FileExistsError(f"{args.out} exists and is not empty; choose another --out")
    shutil.copytree(src, args.out, dirs_exist_ok=True)
    print(args.out)
    return 0


def _table(header: list, rows: list[list]) -> str:
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for k, r in enumerate(cells):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
