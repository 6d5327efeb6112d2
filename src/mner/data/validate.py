"""``mner data validate``: every quirk of a corpus, with file and line.

Each finding is an :class:`Issue` with a severity:

``error``
    the data cannot be used as it is: malformed lines, unknown tags, empty tokens, tweets
    without tokens, duplicate ids, an image id in two splits, images that are missing (under
    the ``error`` policy) or unreadable, a file with no tweet (0 bytes, or only blank lines).
``warning``
    usable, but worth knowing: ``I-`` without ``B-`` (read as an entity start by conlleval),
    tokens made only of invisible characters (they produce no sub-tokens and are encoded as
    the unknown token), tweet texts repeated across splits, empty or missing captions.
``info``
    format notes, e.g. a file that does not end with a blank line.

The exit code of the command is non-zero when there is an error (or, with ``--strict``, a
warning).
"""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from mner.data.captions import CaptionStore, attach_captions
from mner.data.corpus import corpus_files
from mner.data.example import Example
from mner.data.formats import DataFormatError, detect_format, read_file
from mner.data.images import DEFAULT_MAX_PIXELS, ImageError, ImageStore
from mner.tagging import orphan_positions, tag_problems

__all__ = ["Issue", "validate_corpus", "is_invisible_token"]

SEVERITIES = ("error", "warning", "info")


@dataclass(frozen=True)
class Issue:
    severity: str
    code: str
    message: str
    file: str | None = None
    line: int | None = None
    tweet: str | None = None

    def format(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else (self.file or "")
        tweet = f" [tweet {self.tweet}]" if self.tweet else ""
        return f"{where}:{tweet} {self.severity}: {self.message} ({self.code})".lstrip(": ")

    def to_dict(self) -> dict:
        return asdict(self)


def is_invisible_token(token: str) -> bool:
    """True for a token made only of whitespace, control/format characters, variation
    selectors or U+FFFD: the usual tokenizers give it no sub-token at all."""
    for ch in token:
        if ch == "\ufffd" or "\ufe00" <= ch <= "\ufe0f":
            continue
        if unicodedata.category(ch) in ("Cc", "Cf", "Zs", "Zl", "Zp", "Mn", "Co", "Cn"):
            continue
        return False
    return True


def _source_line(ex: Example) -> int | None:
    """1-based line where the example starts (its ``source``): the line after ``IMGID:`` in
    the twitter format, the first token's line in CoNLL, the object's line in JSONL."""
    if not ex.source:
        return None
    return int(ex.source.rsplit(":", 1)[1])


def _ends_with_blank_line(path: Path) -> bool:
    """Whether the file ends with an empty line, with ``\n`` or ``\r\n`` line ends (any size)."""
    with open(path, "rb") as fh:
        size = fh.seek(0, 2)
        fh.seek(max(0, size - 4))
        tail = fh.read()
    return tail.replace(b"\r\n", b"\n").endswith(b"\n\n")


def _check_file(path: Path, fmt: str, allowed_types: set[str] | None, out: list[Issue],
                type_map: str | Mapping[str, str] | None = None) -> list[Example]:
    errors: list[DataFormatError] = []
    token_lines: list[tuple[int, ...]] = []  # per example, the line of each token
    examples = read_file(path, fmt, type_map, errors=errors, token_lines=token_lines)
    assert len(token_lines) == len(examples)
    f = str(path)
    for err in errors:
        out.append(Issue("error", "format", err.message + (f" ({err.hint})" if err.hint else ""), f, err.line))
    if not examples and not errors:
        size = path.stat().st_size
        out.append(Issue("error", "empty-file",
                         ("the file is empty (0 bytes)" if size == 0 else f"no tweet in the file ({size} bytes)")
                         + ": give a file with at least one tweet, or remove it from the corpus", f))
    elif fmt == "twitter" and not _ends_with_blank_line(path):
        out.append(Issue("info", "no-final-blank-line",
                         "file does not end with a blank line (the last tweet is still read)", f))
    seen: dict[str, int] = {}
    for ex, lines in zip(examples, token_lines):
        line0 = _source_line(ex)
        if ex.id in seen:
            out.append(Issue("error", "duplicate-id",
                             f"tweet id {ex.id!r} already used at line {seen[ex.id]}: give each tweet its own id",
                             f, line0, ex.id))
        seen.setdefault(ex.id, line0 or 0)
        if not ex.tokens:
            out.append(Issue("error", "empty-tweet", "tweet has no tokens: add its token lines or remove it",
                             f, line0, ex.id))
        for i, tok in enumerate(ex.tokens):
            if tok == "":
                out.append(Issue("error", "empty-token", "empty token: give the token before the TAB, or remove "
                                 "the line", f, lines[i], ex.id))
            elif is_invisible_token(tok):
                names = "+".join(f"U+{ord(c):04X}" for c in tok)
                out.append(Issue("warning", "invisible-token",
                                 f"token {names} has no visible character: tokenizers give it no "
                                 "sub-token; mner encodes it as the unknown token",
                                 f, lines[i], ex.id))
        if ex.tags is None:
            continue
        orphans = set(orphan_positions(ex.tags))
        for i in sorted(orphans):
            out.append(Issue("warning", "orphan-i",
                             f"{ex.tags[i]} without a B- before it (conlleval reads it as an entity start)",
                             f, lines[i], ex.id))
        for i, msg in tag_problems(ex.tags):
            if i not in orphans:
                out.append(Issue("error", "bad-tag", msg, f, lines[i], ex.id))
        if allowed_types is not None:
            for i, tag in enumerate(ex.tags):
                typ = tag.partition("-")[2]
                if tag != "O" and typ not in allowed_types:
                    out.append(Issue("error", "unknown-type",
                                     f"entity type {typ!r} not in {sorted(allowed_types)}: rename it "
                                     "with --map-types (e.g. OTHER=MISC) or allow it with --types",
                                     f, lines[i], ex.id))
    return examples


def validate_corpus(
    path: str | Path,
    image_dir: str | Path | None = None,
    captions: CaptionStore | None = None,
    missing_images: str = "error",
    allowed_types: Sequence[str] | None = None,
    format: str = "auto",
    type_map: str | Mapping[str, str] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[list[Issue], dict[str, list[Example]]]:
    """Check a corpus folder (or one file); return the issues and the examples read.

    ``format`` and ``type_map`` are those of :func:`~mner.data.formats.read_file`: the files
    are checked as they will be read (``allowed_types`` applies to the mapped types).
    """
    path = Path(path)
    files = corpus_files(path)
    issues: list[Issue] = []
    types = set(allowed_types) if allowed_types else None
    # each file's format, detected once
    fmts = {split: detect_format(f) if format == "auto" else format for split, f in files.items()}
    splits = {split: _check_file(f, fmts[split], types, issues, type_map)
              for split, f in files.items()}

    # Across splits: image ids must not leak; repeated texts are worth knowing.
    owner: dict[str, str] = {}
    texts: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for split, exs in splits.items():
        for ex in exs:
            key = ex.image or ex.id
            if key in owner and owner[key] != split:
                issues.append(Issue("error", "image-in-two-splits",
                                    f"image {key!r} is used in {owner[key]} and {split}",
                                    str(files[split]), _source_line(ex), ex.id))
            owner.setdefault(key, split)
            texts[" ".join(ex.tokens)].append((split, ex.id))
    for text, where in texts.items():
        split_names = {s for s, _ in where}
        if len(split_names) > 1:
            issues.append(Issue("warning", "text-in-two-splits",
                                f"the same tweet text is in {', '.join(f'{s}:{i}' for s, i in where)}: "
                                f"{text[:60]!r}"))

    if image_dir is not None:
        store = ImageStore(Path(image_dir), max_pixels=max_pixels)
        for split, exs in splits.items():
            fmt = fmts[split]
            for ex in exs:
                if ex.image is None:
                    continue
                try:
                    store.open(ex.image, ex.id).close()
                except ImageError as err:
                    if err.kind == "missing":
                        sev = "error" if missing_images == "error" else "warning"
                        msg = f"image missing: {err.path}" + (
                            f" ({ImageError.HINTS['missing']})" if sev == "error" else f" (policy {missing_images!r})")
                    else:
                        sev, msg = "error", f"image {err.kind}: {err.path}: {err.detail}"
                        msg += f" ({ImageError.HINTS[err.kind]})"
                    line = _source_line(ex)
                    if line is not None and fmt == "twitter":
                        line -= 1  # the IMGID line
                    issues.append(Issue(sev, f"image-{err.kind}", msg, str(files[split]), line,
                                        ex.id))
    if captions is not None:
        for split, exs in splits.items():
            # the lookup training uses (image id, else tweet id), so both agree
            attached, _ = attach_captions(exs, captions)
            for ex, cap_ex in zip(exs, attached):
                if cap_ex.caption is None:
                    issues.append(Issue("warning", "caption-missing", "no caption for this image",
                                        str(files[split]), None, ex.id))
                elif cap_ex.caption == "":
                    own = ex.caption is not None  # the data file gave it, not the caption file
                    where = str(files[split]) if own else (str(captions.path) if captions.path else None)
                    issues.append(Issue("warning", "caption-empty", "the caption is empty",
                                        where, None, ex.id))
    return issues, splits


def summarize(issues: Iterable[Issue]) -> dict[str, int]:
    counts = {s: 0 for s in SEVERITIES}
    for i in issues:
        counts[i.severity] += 1
    return counts
