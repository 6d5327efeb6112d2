"""Few-shot episodes as data: :class:`Episode` and its JSONL file format.

An N-way K-shot episode (MOUSING's FMNER task, ``docs/mousing.md`` "Protocol") is a set of
target entity ``types``, a labelled ``support`` set and a ``query`` set of tweets, each tweet an
:class:`~mner.data.example.Example` tagged in IOB2 with only the target types (others are O).
A tweet may hold no mention at all (all O): the poster's protocol draws its query tweets at
random, with or without target mentions.
The episodes of a split are sampled once (:mod:`mner.data.sampling`), written as JSONL and
reused by every model, so that all models see the same episodes.

File format
-----------
One episode per line: Few-NERD's keys with BIO labels, plus what a multimodal episode needs
(``id``, ``image``, ``caption``; ``image`` and ``caption`` entries may be ``null``)::

    {"types": ["PER", "LOC"],
     "support": {"id": [...], "word": [[...]], "label": [[...]], "image": [...], "caption": [...]},
     "query": {...}}

:func:`write_episodes` writes it byte-deterministically (this key order, ``ensure_ascii=False``,
``\\n`` line ends, UTF-8) and atomically. :func:`read_episodes` / :func:`iter_episodes` read it;
every malformed line raises :class:`EpisodeFormatError` naming ``file:line`` and what is wrong.
Lines are split on ``\\n`` only (tokens may hold U+2028 and other separators); blank lines are
skipped. The tweets of an episode read from ``ep.jsonl`` line 4 get
``source="ep.jsonl:4 support[3]"``, so an error about a tweet names its file, line and place.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from mner.data.example import Example
from mner.errors import MNERError
from mner.fileio import write_output
from mner.tagging.schemes import parse_tag, tag_problems

__all__ = [
    "Episode",
    "EpisodeFormatError",
    "SET_KEYS",
    "episode_to_dict",
    "file_sha256",
    "iter_episodes",
    "read_episodes",
    "summarize_episodes",
    "write_episodes",
]

#: The keys of a support / query object, in the order they are written.
SET_KEYS = ("id", "word", "label", "image", "caption")
_EPISODE_KEYS = ("types", "support", "query")


class EpisodeFormatError(MNERError):
    """A malformed episode file line. ``file`` and ``line`` (1-based) say where."""

    def __init__(self, file: str | Path, line: int | None, message: str, hint: str = ""):
        self.file = str(file)
        self.line = line
        self.message = message
        self.hint = hint
        where = f"{self.file}:{line}" if line is not None else self.file
        super().__init__(f"{where}: {message}" + (f" ({hint})" if hint else ""))


@dataclass(frozen=True)
class Episode:
    """One N-way K-shot episode.

    Attributes:
        types: the N target entity types, in the order that fixes :attr:`labels`.
        support: the labelled tweets the model adapts on (IOB2 tags of ``types`` only).
        query: the tweets the model tags (gold IOB2 tags of ``types`` only, for scoring).
        source: where the episode came from (``"file:line"``), for error messages; not
            compared.
    """

    types: tuple[str, ...]
    support: tuple[Example, ...]
    query: tuple[Example, ...]
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "types", tuple(self.types))
        object.__setattr__(self, "support", tuple(self.support))
        object.__setattr__(self, "query", tuple(self.query))

    @property
    def labels(self) -> tuple[str, ...]:
        """``("O", "B-t1", "I-t1", "B-t2", "I-t2", ...)`` in :attr:`types` order.

        This order is fixed: episodic models index their N*2+1 classes by it."""
        out = ["O"]
        for t in self.types:
            out += [f"B-{t}", f"I-{t}"]
        return tuple(out)

    @property
    def where(self) -> str:
        return f"episode {self.source}" if self.source else "episode"

    def validate(self) -> "Episode":
        """Raise :class:`~mner.errors.MNERError` unless the episode is well-formed: at least one
        type, no type twice, a non-empty support and query, and every tweet tagged, each tag
        ``O`` or ``B-``/``I-`` of one of :attr:`types`, IOB2-well-formed (no ``I-X`` that
        continues no ``X``). The message names the episode's source and the tweet id.
        Returns the episode (so it can be chained)."""
        problem = self.first_problem()
        if problem is not None:
            raise MNERError(f"{self.where}: {problem}")
        return self

    def first_problem(self) -> str | None:
        """What :meth:`validate` would raise about, without the episode's name; None if well-formed."""
        if not self.types:
            return "no entity types; an episode needs at least one"
        dup = [t for t, n in Counter(self.types).items() if n > 1]
        if dup:
            return f"type {dup[0]!r} is listed twice in types {list(self.types)}"
        for t in self.types:
            try:
                parse_tag(f"B-{t}")
            except ValueError:
                return f"{t!r} is not a usable entity type name"
        allowed = set(self.labels)
        for name in ("support", "query"):
            exs = getattr(self, name)
            if not exs:
                return f"the {name} set is empty; an episode needs a support and a query tweet"
            for i, ex in enumerate(exs):
                place = f"{name}[{i}] (tweet {ex.id})"
                if ex.tags is None:
                    return f"{place}: no tags; every tweet of an episode is labelled"
                for j, tag in enumerate(ex.tags):
                    if tag not in allowed:
                        return (
                            f"{place}: label {j} ({ex.tokens[j]!r}) is {tag!r}, outside the "
                            f"episode's types {list(self.types)} (labels {', '.join(self.labels)}); "
                            "keep only the episode's types (mner.data.sampling.restrict_types)"
                        )
                problems = tag_problems(ex.tags, "iob2")
                if problems:
                    j, msg = problems[0]
                    return (
                        f"{place}: labels are not IOB2 at label {j}: {msg}; convert them "
                        "(mner.tagging.convert_tags(tags, 'iob1', 'iob2') turns orphan I- into B-)"
                    )
        return None


# ----------------------------------------------------------------------------- writing


def _set_to_dict(examples: Iterable[Example]) -> dict:
    exs = list(examples)
    return {
        "id": [ex.id for ex in exs],
        "word": [list(ex.tokens) for ex in exs],
        "label": [list(ex.tags) if ex.tags is not None else None for ex in exs],
        "image": [ex.image for ex in exs],
        "caption": [ex.caption for ex in exs],
    }


def episode_to_dict(episode: Episode) -> dict:
    """The JSON object of one episode, keys in the file's fixed order."""
    return {
        "types": list(episode.types),
        "support": _set_to_dict(episode.support),
        "query": _set_to_dict(episode.query),
    }


def write_episodes(episodes: Iterable[Episode], path: str | Path) -> Path:
    """Write ``episodes`` as JSONL to ``path``, atomically (a temporary file beside it renamed
    into place) and byte-deterministically. Each episode is validated first, so a file this
    writes always reads back. Returns the path."""
    path = Path(path)
    lines = []
    for ep in episodes:
        ep.validate()
        lines.append(json.dumps(episode_to_dict(ep), ensure_ascii=False))
    if not lines:
        raise MNERError(f"{path}: no episodes to write")
    # a temporary file of its own beside it (mkstemp), so two processes writing the same file at
    # once do not write into each other's temporary file: the last rename wins, whole
    write_output(path, "\n".join(lines) + "\n", what="episodes")
    return path


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- reading


def _parse_set(obj: object, name: str, path: Path, n: int) -> tuple[Example, ...]:
    def fail(msg: str, hint: str = "") -> EpisodeFormatError:
        return EpisodeFormatError(path, n, f"{name}: {msg}", hint)

    if not isinstance(obj, dict):
        raise fail(f"expected an object with keys {', '.join(SET_KEYS)}, got {type(obj).__name__}")
    for key in ("id", "word", "label"):
        if key not in obj:
            raise fail(f"missing key {key!r}", f"a set has {', '.join(SET_KEYS)} (image, caption may be left out)")
    unknown = sorted(set(obj) - set(SET_KEYS))
    if unknown:
        raise fail(f"unknown key {unknown[0]!r}", f"a set has {', '.join(SET_KEYS)}")
    words, labels = obj["word"], obj["label"]
    if not isinstance(words, list):
        raise fail(f"'word' must be a list, got {type(words).__name__}")
    size = len(words)
    for key in SET_KEYS:
        if key not in obj:
            continue  # image / caption left out: all null
        val = obj[key]
        if not isinstance(val, list):
            raise fail(f"{key!r} must be a list, got {type(val).__name__}")
        if len(val) != size:
            raise fail(
                f"lists of different lengths: {size} 'word' but {len(val)} {key!r}",
                "give one entry per tweet in every list",
            )
    if size == 0:
        raise fail("empty set (no tweets)", "every episode needs a support and a query tweet")
    ids, images = obj["id"], obj.get("image") or [None] * size
    captions = obj.get("caption") or [None] * size
    out = []
    for i in range(size):
        toks, tags, tid = words[i], labels[i], ids[i]
        place = f"{name}[{i}]"
        if isinstance(tid, bool) or not isinstance(tid, (str, int)):
            raise fail(f"id {i} is {tid!r}; ids are strings")
        tid = str(tid)
        if not isinstance(toks, list) or not all(isinstance(t, str) for t in toks):
            raise fail(f"word[{i}] (tweet {tid}) must be a list of strings")
        if not toks:
            raise fail(f"word[{i}] (tweet {tid}) is empty; a tweet needs at least one word")
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise fail(f"label[{i}] (tweet {tid}) must be a list of strings")
        if len(tags) != len(toks):
            raise fail(
                f"tweet {tid}: {len(toks)} words but {len(tags)} labels",
                "give one label per word",
            )
        for key, val in (("image", images[i]), ("caption", captions[i])):
            if val is not None and not isinstance(val, str):
                raise fail(f"{key}[{i}] (tweet {tid}) is {val!r}; expected a string or null")
        out.append(Example(
            id=tid, tokens=tuple(toks), tags=tuple(tags), image=images[i], caption=captions[i],
            source=f"{path}:{n} {place}",
        ))
    return tuple(out)


def _parse_line(line: str, path: Path, n: int) -> Episode:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as err:
        raise EpisodeFormatError(path, n, f"not valid JSON: {err.msg} (column {err.colno})",
                                 "one JSON object per line") from None
    if not isinstance(obj, dict):
        raise EpisodeFormatError(path, n, f"expected a JSON object, got {type(obj).__name__}")
    for key in _EPISODE_KEYS:
        if key not in obj:
            raise EpisodeFormatError(path, n, f"missing key {key!r}",
                                     'an episode has "types", "support" and "query"')
    types = obj["types"]
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types) or not types:
        raise EpisodeFormatError(path, n, f"'types' must be a non-empty list of strings, got {types!r}")
    types_t = tuple(types)
    support = _parse_set(obj["support"], "support", path, n)
    query = _parse_set(obj["query"], "query", path, n)
    ep = Episode(types_t, support, query, source=f"{path}:{n}")
    problem = ep.first_problem()
    if problem is not None:
        raise EpisodeFormatError(path, n, problem)
    return ep


def iter_episodes(path: str | Path, errors: list | None = None) -> Iterator[Episode]:
    """Yield the episodes of a JSONL file one by one (streaming: one line in memory at a time).

    Raises :class:`EpisodeFormatError` (file:line, what is wrong) at the first malformed line,
    and for a file with no episode. With an ``errors`` list, malformed lines are appended to it
    and skipped instead, so that a checker can report them all."""
    path = Path(path)
    if not path.is_file():
        raise MNERError(f"{path}: no such episode file" + (" (it is a folder)" if path.is_dir() else ""))
    count = 0
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                exc = EpisodeFormatError(path, n, f"not valid UTF-8 (byte {raw[err.start]:#04x})",
                                         "re-encode the file as UTF-8")
                if errors is None:
                    raise exc from None
                errors.append(exc)
                continue
            if n == 1:
                line = line.removeprefix("\ufeff")
            if not line.strip():
                continue
            try:
                ep = _parse_line(line, path, n)
            except EpisodeFormatError as exc:
                if errors is None:
                    raise
                errors.append(exc)
                continue
            count += 1
            yield ep
    if count == 0 and not errors:
        exc = EpisodeFormatError(path, None, "no episodes in the file (it is empty)",
                                 "write episodes with `mner fewshot episodes`")
        if errors is None:
            raise exc
        errors.append(exc)


def read_episodes(path: str | Path) -> list[Episode]:
    """All episodes of a JSONL file (see :func:`iter_episodes` for the errors)."""
    return list(iter_episodes(path))


# ----------------------------------------------------------------------------- summaries


def summarize_episodes(episodes: Iterable[Episode]) -> dict:
    """Episodes, mean tweets per support / query, mean mentions per type in each, and the share
    of query tweets with at least one mention (all of them under the greedy protocol; fewer
    when the query is drawn at random):
    ``{"episodes": n, "support_tweets": 7.2, "query_tweets": 7.0,
    "support_mentions": {"PER": 6.1, ...}, "query_mentions": {...},
    "query_with_mention": 1.0}`` (means per episode; a mention is a ``B-`` tag)."""
    n = 0
    with_mention = 0
    tweets = {"support": 0, "query": 0}
    mentions: dict[str, Counter] = {"support": Counter(), "query": Counter()}
    types: list[str] = []
    for ep in episodes:
        n += 1
        for t in ep.types:
            if t not in types:
                types.append(t)
        for name in ("support", "query"):
            exs = getattr(ep, name)
            tweets[name] += len(exs)
            for ex in exs:
                found = False
                for tag in ex.tags or ():
                    if tag.startswith("B-"):
                        mentions[name][tag[2:]] += 1
                        found = True
                if found and name == "query":
                    with_mention += 1
    d = max(n, 1)
    return {
        "episodes": n,
        "support_tweets": round(tweets["support"] / d, 3),
        "query_tweets": round(tweets["query"] / d, 3),
        "support_mentions": {t: round(mentions["support"][t] / d, 3) for t in types},
        "query_mentions": {t: round(mentions["query"][t] / d, 3) for t in types},
        "query_with_mention": round(with_mention / max(tweets["query"], 1), 3),
    }
