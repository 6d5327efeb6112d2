"""The seeded greedy N-way K~2K episode sampler (Few-NERD, Ding et al. 2021, Sec. 4.2 / Alg. 1)
and the few-shot protocol of ``docs/mousing.md`` ("Protocol").

Greedy N-way K~2K rule (Few-NERD's Algorithm 1), applied to the support set and then to the
query set: go through the candidate tweets in a random order and add a tweet when it has a
mention of a type still below K and adding it pushes no type above 2K; the set is done when
every type has at least K mentions. A candidate is a tweet with at least one mention of a
target type (after :func:`restrict_types`). Support and query are disjoint by tweet id and by
text (``" ".join(tokens)``: some benchmark texts appear under two ids).

What this sampler does that Few-NERD's code does not (its known defects):

- its own ``random.Random(seed)``; the global :mod:`random` state is never touched;
- bounded: a pass that ends unsatisfied is retried with a fresh order at most
  ``max_attempts`` times, then :class:`~mner.errors.MNERError`; a request that cannot be met
  at all (too few mentions, or no tweet addable without exceeding 2K) is refused before any
  attempt;
- the 2K bound is checked on every type of the tweet being added, so no type ever ends
  above 2K;
- mentions are counted the BIO way (:func:`count_mentions`): ``B-PER B-PER`` is two mentions.

The pool is read in IOB2 with the benchmark's orphan ``I-`` tags read as ``B-`` (as conlleval
reads them: ``convert_tags(tags, "iob1", "iob2")``), once at construction.

Two query protocols (``query=``):

- ``"greedy"`` (ours, the default): the query set is drawn by the greedy K~2K rule too, so every
  query tweet holds a target mention.
- ``"random"`` (the MOUSING poster's: "randomly sample a few instances as query set"): the
  episode's support is exactly the one the greedy protocol draws with the same seed (its greedy
  query is drawn and set aside, so episode *i* of both protocols has one support: a paired
  comparison), and the query is ``query_size`` tweets (default :data:`POSTER_QUERY_SIZE`, ours)
  drawn uniformly without replacement from the whole split, with or without target mentions,
  disjoint from the support by id and text, by a second ``random.Random`` of the sampler.

In both, tweets keep only the target types' tags: mentions of the other types are relabelled O
(:func:`restrict_types`), so a query tweet may be all O.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import torch.utils.data

from mner.data.episodes import Episode, file_sha256, summarize_episodes, write_episodes
from mner.data.example import Example
from mner.errors import MNERError
from mner.fileio import write_output
from mner.tagging.schemes import convert_tags, parse_tag

__all__ = [
    "ALL_TYPES",
    "EpisodeDataset",
    "EpisodeSampler",
    "PAIR_NAMES",
    "POSTER_QUERY_SIZE",
    "QUERY_MODES",
    "TARGET_PAIRS",
    "TYPE_ALIASES",
    "count_mentions",
    "episode_violations",
    "format_summary",
    "load_protocol_corpus",
    "pair_name",
    "parse_types",
    "restrict_types",
    "source_types",
    "write_protocol",
]

#: The four types of Twitter-2015/2017 once OTHER is read as MISC (``type_map="OTHER=MISC"``).
ALL_TYPES = ("PER", "LOC", "ORG", "MISC")
#: Names accepted for a type in ``--types``: Twitter-2015's OTHER is Twitter-2017's MISC.
TYPE_ALIASES = {"OTHER": "MISC", "OTHERS": "MISC"}
#: The six target pairs of the protocol; the other two types of each are its source types.
TARGET_PAIRS: tuple[tuple[str, str], ...] = (
    ("PER", "LOC"), ("PER", "ORG"), ("PER", "MISC"), ("LOC", "ORG"), ("LOC", "MISC"), ("ORG", "MISC"),
)
#: The split names of the poster's table, by target pair.
PAIR_NAMES: dict[tuple[str, str], str] = dict(zip(
    TARGET_PAIRS, ("Per+Loc", "Per+Org", "Per+Others", "Loc+Org", "Loc+Others", "Org+Others"),
))
#: The type map the protocol reads both datasets with, so that every file says MISC.
PROTOCOL_TYPE_MAP = "OTHER=MISC"
#: How a query set is drawn: ``"greedy"`` (ours, N-way K~2K) or ``"random"`` (the poster's).
QUERY_MODES = ("greedy", "random")
#: Query tweets per episode in the poster's protocol (ours: the poster says "a few instances").
POSTER_QUERY_SIZE = 10


# ----------------------------------------------------------------------------- tags


def restrict_types(example: Example, types: Iterable[str]) -> Example:
    """``example`` with the tags of every type not in ``types`` set to ``O`` (IOB2 in, IOB2 out:
    a whole entity is removed, so no ``I-`` is left orphaned). An untagged example is returned
    as is."""
    if example.tags is None:
        return example
    keep = set(types)
    tags = tuple(
        t if t == "O" or parse_tag(t, j)[1] in keep else "O" for j, t in enumerate(example.tags)
    )
    return example if tags == example.tags else example.replace(tags=tags)


def count_mentions(tags: Sequence[str] | None) -> Counter:
    """Mentions per type, the BIO way: each ``B-X`` starts one (``B-PER B-PER`` is two, not
    one merged mention). IOB2 tags are assumed (convert orphan ``I-`` to ``B-`` first)."""
    counts: Counter = Counter()
    for tag in tags or ():
        if tag.startswith("B-"):
            counts[tag[2:]] += 1
    return counts


def parse_types(spec: str | Sequence[str]) -> tuple[str, ...]:
    """Target types from ``"PER,LOC"``, a pair name (``"Per+Others"``) or a sequence, with
    ``OTHER`` read as ``MISC`` (:data:`TYPE_ALIASES`). Raises MNERError for an empty list or a
    type given twice."""
    if isinstance(spec, str):
        by_name = {name.lower(): pair for pair, name in PAIR_NAMES.items()}
        if spec.strip().lower() in by_name:
            return by_name[spec.strip().lower()]
        items = [s.strip() for s in spec.split(",")]
    else:
        items = [str(s).strip() for s in spec]
    types = tuple(TYPE_ALIASES.get(t.upper(), t) for t in items if t)
    if not types:
        raise MNERError(f"no entity types in {spec!r}; give them like PER,LOC")
    dup = [t for t, n in Counter(types).items() if n > 1]
    if dup:
        raise MNERError(
            f"type {dup[0]} is given twice in {spec!r} (OTHER and MISC are one type); give each once"
        )
    return types


def _check_types(types: Sequence[str]) -> tuple[str, ...]:
    """``types`` as a tuple, as given (no alias), refusing none, a repeat or a bad name."""
    if isinstance(types, str):
        raise TypeError("types is a sequence of type names, e.g. ('PER', 'LOC'), not one string")
    out = tuple(types)
    if not out:
        raise MNERError("no target types given; an episode needs at least one")
    dup = [t for t, n in Counter(out).items() if n > 1]
    if dup:
        raise MNERError(f"type {dup[0]!r} is given twice in {list(out)}; give each type once")
    for t in out:
        try:
            parse_tag(f"B-{t}")
        except ValueError:
            raise MNERError(f"{t!r} is not a usable entity type name") from None
    return out


def pair_name(pair: Sequence[str]) -> str:
    """``("PER", "MISC")`` -> ``"Per+Others"``."""
    key = tuple(TYPE_ALIASES.get(t, t) for t in pair)
    if key not in PAIR_NAMES:
        raise MNERError(f"{'+'.join(pair)} is not a target pair of the protocol; choose one of "
                        + ", ".join(PAIR_NAMES.values()))
    return PAIR_NAMES[key]  # type: ignore[index]


def source_types(target_pair: Sequence[str]) -> tuple[str, str]:
    """The two protocol types that are not in ``target_pair`` (in :data:`ALL_TYPES` order)."""
    name = pair_name(target_pair)  # validates
    pair = next(p for p, n in PAIR_NAMES.items() if n == name)
    rest = tuple(t for t in ALL_TYPES if t not in pair)
    return rest  # type: ignore[return-value]


# ----------------------------------------------------------------------------- sampler


class EpisodeSampler:
    """Seeded greedy N-way K~2K sampler of :class:`~mner.data.episodes.Episode` s.

    Args:
        pool: the tweets to draw from (one split); every tweet must be tagged. They are read
            in IOB2 (orphan ``I-`` as ``B-``) and restricted to ``types`` once, here.
        types: the N target types, in the order of the episodes' labels.
        k: K of the support set (each type gets K to 2K mentions).
        query_k: K of the greedy query set (default ``k``).
        query: ``"greedy"`` (ours) or ``"random"`` (the poster's: the greedy support, then
            ``query_size`` tweets drawn at random from the whole pool; see the module's doc).
        query_size: tweets of a random query (default :data:`POSTER_QUERY_SIZE`); only with
            ``query="random"``.
        seed: seed of the sampler's own ``random.Random`` (the random query has a second one,
            seeded ``f"{seed}:query"``).
        max_attempts: greedy passes tried per episode before giving up with MNERError.
    """

    def __init__(
        self,
        pool: Sequence[Example],
        types: Sequence[str],
        k: int,
        *,
        query_k: int | None = None,
        query: str = "greedy",
        query_size: int | None = None,
        seed: int = 0,
        max_attempts: int = 200,
    ) -> None:
        self.types = _check_types(types)
        if query not in QUERY_MODES:
            raise MNERError(f"EpisodeSampler: query must be one of {', '.join(QUERY_MODES)}, got {query!r}")
        if query == "greedy" and query_size is not None:
            raise MNERError("EpisodeSampler: query_size is the size of a random query; "
                            "give it with query='random' (a greedy query has K~2K mentions per type)")
        if query == "random" and query_k is not None:
            raise MNERError("EpisodeSampler: query_k is K of a greedy query; a random query has "
                            "query_size tweets, give that instead")
        if query == "random" and query_size is None:
            query_size = POSTER_QUERY_SIZE
        for name, val in (("k", k), ("query_k", k if query_k is None else query_k),
                          ("query_size", 1 if query_size is None else query_size),
                          ("max_attempts", max_attempts)):
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise MNERError(f"EpisodeSampler: {name} must be an integer >= 1, got {val!r}")
        self.k = k
        self.query_k = k if query_k is None else query_k
        self.query = query
        self.query_size = query_size
        self.max_attempts = max_attempts
        self.seed = seed
        self.rng = random.Random(seed)
        #: orders the random query; apart from ``rng`` so that the supports are the greedy ones
        self.query_rng = random.Random(f"{seed}:query")
        self.pool: list[Example] = []
        for ex in pool:
            if ex.tags is None:
                raise MNERError(
                    f"{ex.where}: has no tags; the episode pool must be labelled tweets "
                    "(read a train/valid/test file, not unlabelled input)"
                )
            try:
                tags = tuple(convert_tags(ex.tags, "iob1", "iob2"))
            except ValueError as err:
                raise MNERError(f"{ex.where}: {err}") from None
            ex = ex if tags == ex.tags else ex.replace(tags=tags)
            self.pool.append(restrict_types(ex, self.types))
        self._counts = [count_mentions(ex.tags) for ex in self.pool]
        self._texts = [" ".join(ex.tokens) for ex in self.pool]
        #: indices of the tweets with at least one target mention
        self.candidates = [i for i, c in enumerate(self._counts) if c]
        self.mentions: Counter = Counter()
        for c in self._counts:
            self.mentions.update(c)
        self._check_feasible()

    # -- refusal before any attempt -------------------------------------------------
    def describe_pool(self) -> str:
        per_type = ", ".join(f"{t} {self.mentions[t]}" for t in self.types)
        return (f"the pool has {len(self.pool)} tweets, {len(self.candidates)} with a target "
                f"mention; mentions: {per_type}")

    def _request(self) -> str:
        q = "" if self.query_k == self.k else f" (query K={self.query_k})"
        if self.query == "random":
            q = f" (random query of {self.query_size} tweets)"
        return f"a {len(self.types)}-way K={self.k}{q} episode of {', '.join(self.types)}"

    def _check_feasible(self) -> None:
        k, qk = self.k, self.query_k

        def usable(bound: int) -> Counter:
            out: Counter = Counter()
            for i in self.candidates:
                c = self._counts[i]
                if all(n <= bound for n in c.values()):
                    out.update(c)
            return out

        hint = "lower K, pick other types, or draw from a larger split"
        for t in self.types:
            if self.mentions[t] < k + qk:
                raise MNERError(
                    f"cannot sample {self._request()}: type {t} has {self.mentions[t]} mentions "
                    f"but support and query need at least {k} + {qk}; {self.describe_pool()}; {hint}"
                )
        for name, kk in (("support", k), ("query", qk)):
            fits = usable(2 * kk)
            for t in self.types:
                if fits[t] < kk:
                    raise MNERError(
                        f"cannot sample {self._request()}: the {name} set needs {kk} to {2 * kk} "
                        f"mentions of {t}, but the tweets that can be added without exceeding "
                        f"{2 * kk} mentions of a type hold only {fits[t]} mentions of {t} "
                        f"(the others hold more than {2 * kk} mentions of one type); "
                        f"{self.describe_pool()}; {hint}"
                    )
        both = usable(2 * max(k, qk))
        for t in self.types:
            if both[t] < k + qk:
                raise MNERError(
                    f"cannot sample {self._request()}: the tweets that fit the 2K bound hold only "
                    f"{both[t]} mentions of {t}, fewer than {k} + {qk}; {self.describe_pool()}; {hint}"
                )
        if self.query == "random":
            # a greedy support has at most N*K tweets (each one lowers a type still below K), so
            # N*K + query_size distinct texts always leave query_size tweets for the query
            texts, most = len(set(self._texts)), len(self.types) * k
            if texts < most + self.query_size:
                raise MNERError(
                    f"cannot sample {self._request()}: the query needs {self.query_size} tweets "
                    f"besides a support of up to {most}, but the pool has only {texts} distinct "
                    f"texts; {self.describe_pool()}; lower the query size or K, or draw from a "
                    "larger split"
                )

    # -- sampling -------------------------------------------------------------------
    def _greedy(self, order: Sequence[int], k: int, excluded: Callable[[int], bool]) -> list[int] | None:
        have: Counter = Counter()
        chosen: list[int] = []
        need = set(self.types)  # types still below K
        for i in order:
            c = self._counts[i]
            if excluded(i) or not any(t in need for t in c):
                continue
            if any(have[t] + n > 2 * k for t, n in c.items()):
                continue
            chosen.append(i)
            have.update(c)
            need = {t for t in need if have[t] < k}
            if not need:
                return chosen
        return None

    def sample(self, rng: random.Random | None = None, query_rng: random.Random | None = None) -> Episode:
        """One episode: support, then query, each by the greedy rule; ``rng`` (default: the
        sampler's own) orders the candidates. Raises MNERError after ``max_attempts`` passes
        that ended unsatisfied.

        With ``query="random"`` the greedy query is then replaced by ``query_size`` tweets that
        ``query_rng`` draws (default: the sampler's ``query_rng``, or ``rng`` when ``rng`` is
        given) from the tweets not in the support by id or text."""
        own = rng is None
        rng = self.rng if rng is None else rng
        episode = self._sample_greedy(rng)
        if self.query == "greedy":
            return episode
        if query_rng is None:
            query_rng = self.query_rng if own else rng
        ids = {ex.id for ex in episode.support}
        texts = {" ".join(ex.tokens) for ex in episode.support}
        rest = [i for i, ex in enumerate(self.pool) if ex.id not in ids and self._texts[i] not in texts]
        if len(rest) < self.query_size:  # refused up front; kept as a guard
            raise MNERError(f"could not sample {self._request()}: only {len(rest)} tweets are left "
                            f"for the query; {self.describe_pool()}; lower the query size")
        query = tuple(self.pool[i] for i in query_rng.sample(rest, self.query_size))
        return Episode(self.types, episode.support, query)

    def _sample_greedy(self, rng: random.Random) -> Episode:
        order = list(self.candidates)
        for _ in range(self.max_attempts):
            rng.shuffle(order)
            support = self._greedy(order, self.k, lambda i: False)
            if support is None:
                continue
            ids = {self.pool[i].id for i in support}
            texts = {self._texts[i] for i in support}
            rng.shuffle(order)
            query = self._greedy(
                order, self.query_k,
                lambda i: self.pool[i].id in ids or self._texts[i] in texts,
            )
            if query is None:
                continue
            return Episode(
                self.types, tuple(self.pool[i] for i in support), tuple(self.pool[i] for i in query)
            )
        raise MNERError(
            f"could not sample {self._request()} in {self.max_attempts} attempts: every greedy "
            f"pass ended with a type below K; {self.describe_pool()}; lower K, pick other types, "
            "draw from a larger split or raise max_attempts"
        )

    def sample_many(self, n: int) -> list[Episode]:
        """``n`` episodes drawn one after another with the sampler's own RNG."""
        return [self.sample() for _ in range(n)]


class EpisodeDataset(torch.utils.data.Dataset):
    """Episodes resampled every epoch, for episodic training (e.g. on source types).

    Item ``i`` of epoch ``e`` is drawn with ``random.Random(f"{seed}:{e}:{i}")``, so it does
    not depend on which items were drawn before or in which order (DataLoader workers,
    shuffling, resuming). Call :meth:`set_epoch` before each epoch. Items are
    :class:`~mner.data.episodes.Episode` objects: use a ``collate_fn`` that keeps them as they
    are (``lambda batch: batch``).
    """

    def __init__(
        self,
        pool: Sequence[Example],
        types: Sequence[str],
        k: int,
        episodes_per_epoch: int,
        seed: int,
        query_k: int | None = None,
        max_attempts: int = 200,
    ) -> None:
        if isinstance(episodes_per_epoch, bool) or not isinstance(episodes_per_epoch, int) or episodes_per_epoch < 1:
            raise MNERError(f"EpisodeDataset: episodes_per_epoch must be an integer >= 1, got {episodes_per_epoch!r}")
        self.sampler = EpisodeSampler(pool, types, k, query_k=query_k, seed=seed, max_attempts=max_attempts)
        self.episodes_per_epoch = episodes_per_epoch
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.episodes_per_epoch

    def __getitem__(self, i: int) -> Episode:
        n = self.episodes_per_epoch
        if not -n <= i < n:
            raise IndexError(f"episode {i} out of range: {n} episodes per epoch")
        i %= n
        return self.sampler.sample(rng=random.Random(f"{self.seed}:{self.epoch}:{i}"))


# ----------------------------------------------------------------------------- checking


def episode_violations(
    episode: Episode,
    k: int | None = None,
    query_k: int | None = None,
    *,
    query: str = "greedy",
    query_size: int | None = None,
) -> list[str]:
    """The sampler invariants ``episode`` breaks, as messages naming tweet ids (empty if none):
    a malformed episode (:meth:`Episode.validate`), tags of other types, support and query
    sharing a tweet id or a text, and in the support a type with fewer than K or more than 2K
    mentions (without ``k``: with no mention) or, with ``k``, a tweet with no target mention
    (the greedy rule never adds one).

    The query is checked by the protocol ``query`` names: ``"greedy"`` (ours) as the support,
    with ``query_k`` (default ``k``); ``"random"`` (the poster's) only for its size, when
    ``query_size`` is given: its tweets may hold any number of target mentions, or none."""
    if query not in QUERY_MODES:
        raise MNERError(f"query must be one of {', '.join(QUERY_MODES)}, got {query!r}")
    if query == "random" and query_k is not None:
        raise MNERError("query_k is K of a greedy query; a random query is checked for its size "
                        "(query_size) only")
    if query == "greedy" and query_size is not None:
        raise MNERError("query_size is the size of a random query; check it with query='random'")
    out: list[str] = []
    problem = episode.first_problem()
    if problem is not None:
        return [problem]
    qk = k if query_k is None else query_k
    sets = (("support", k), ("query", qk)) if query == "greedy" else (("support", k),)
    for name, kk in sets:
        exs = getattr(episode, name)
        counts: Counter = Counter()
        for ex in exs:
            counts.update(count_mentions(ex.tags))
        for t in episode.types:
            n = counts[t]
            if kk is None and n == 0:
                out.append(f"{name}: no mention of {t}")
            elif kk is not None and not kk <= n <= 2 * kk:
                out.append(f"{name}: {n} mentions of {t}, outside K~2K = {kk}~{2 * kk}")
        empty = [ex.id for ex in exs if not count_mentions(ex.tags)]
        if kk is not None and empty:
            hint = ("; a poster-protocol query (drawn at random) may hold such tweets: check it as one "
                    "(mner fewshot check --query random)" if name == "query" else "")
            out.append(f"{name}: {len(empty)} of {len(exs)} tweets have no mention of a target type "
                       f"(tweet {', '.join(empty[:5])}{', ...' if len(empty) > 5 else ''}); the greedy "
                       f"rule never adds such a tweet{hint}")
    if query == "random" and query_size is not None and len(episode.query) != query_size:
        out.append(f"query: {len(episode.query)} tweets, not the {query_size} of a random query")
    ids = {ex.id for ex in episode.support}
    texts = {" ".join(ex.tokens): ex.id for ex in episode.support}
    for ex in episode.query:
        if ex.id in ids:
            out.append(f"tweet {ex.id} is in both support and query")
        text = " ".join(ex.tokens)
        if text in texts and texts[text] != ex.id:
            out.append(f"query tweet {ex.id} has the text of support tweet {texts[text]}")
    return out


# ----------------------------------------------------------------------------- protocol


def load_protocol_corpus(data_dir: str | Path, captions: str | Path | None = "auto"):
    """The corpus at ``data_dir`` read as the protocol reads it (OTHER as MISC), with the
    captions ``captions`` names attached (``"auto"``, ``"none"`` or a file; see
    :func:`~mner.data.captions.resolve_caption_file`). Returns (corpus, caption file, note)."""
    from mner.data.captions import CaptionStore, resolve_caption_file
    from mner.data.corpus import Corpus

    corpus = Corpus.from_folder(data_dir, type_map=PROTOCOL_TYPE_MAP)
    found, note = resolve_caption_file(captions, data_dir)
    if found is not None:
        corpus = corpus.with_captions(CaptionStore.from_file(found))
    return corpus, found, note


#: What a manifest entry written before a key existed means by its absence.
_MANIFEST_DEFAULTS = {"protocol": "ours"}


def write_protocol(
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    ks: Sequence[int] = (1, 5),
    test_episodes: int = 500,
    dev_episodes: int = 100,
    seed: int = 1,
    poster_query_size: int = POSTER_QUERY_SIZE,
    log: Callable[[str], object] = print,
) -> dict:
    """Write the protocol's episode files for one dataset folder (train/valid/test files).

    For each of the six :data:`TARGET_PAIRS` and each K in ``ks``, in ``out_dir/<pair name>/``:

    - ``test-k{K}.jsonl``: ``test_episodes`` episodes from the test split, our protocol
      (greedy K~2K support and query);
    - ``test-poster-k{K}.jsonl``: as many from the test split, the poster's protocol: the same
      supports as ``test-k{K}``, each with a query of ``poster_query_size`` tweets drawn at
      random from the whole split (``query="random"``);
    - ``dev-k{K}.jsonl``: ``dev_episodes`` from valid, our protocol (model selection);
    - ``dev-source-k{K}.jsonl``: ``dev_episodes`` from valid over the pair's two *source* types
      (:func:`source_types`), our protocol: selection without target-type labels.

    Only the file's types are kept (others -> O), each file drawn by its own
    :class:`EpisodeSampler` seeded with ``seed``. OTHER is read as MISC; captions found next to
    the corpus are attached; ``image`` is the tweet's image id.

    ``out_dir/manifest.json`` records each file's sha256, episode count, seed, K, types, split,
    protocol (``"ours"`` or ``"poster"``) and query size (poster), the split file's sha256 and
    the mner version that wrote it. A file that exists with the sha256 of its manifest entry,
    made with the same parameters from the same split file, is skipped (delete it, or the
    folder, to write it again); an entry written before the protocol was recorded reads as
    ours. Returns the manifest.
    """
    from mner import __version__

    data_dir, out_dir = Path(data_dir), Path(out_dir)
    for name, val in (("test_episodes", test_episodes), ("dev_episodes", dev_episodes),
                      ("poster_query_size", poster_query_size)):
        if val < 1:
            raise MNERError(f"write_protocol: {name} must be >= 1, got {val}")
    if not ks or any(k < 1 for k in ks):
        raise MNERError(f"write_protocol: every K must be >= 1, got {list(ks)}")
    corpus, cap_file, cap_note = load_protocol_corpus(data_dir)
    log(f"corpus: {data_dir} (OTHER read as MISC); {cap_note}")
    for split in ("test", "valid"):
        if split not in corpus.splits:
            raise MNERError(f"{data_dir}: no {split} split; the protocol needs test and valid files")
    manifest_path = out_dir / "manifest.json"
    old: dict = {}
    if manifest_path.is_file():
        try:
            old = json.loads(manifest_path.read_text(encoding="utf-8")).get("files", {})
        except (json.JSONDecodeError, AttributeError):
            raise MNERError(f"{manifest_path}: not a valid manifest; delete it to write the files again") from None
    split_sha = {s: file_sha256(corpus.files[s]) for s in ("test", "valid")}
    files: dict[str, dict] = {}
    for pair in TARGET_PAIRS:
        name = PAIR_NAMES[pair]
        for k in ks:
            for kind, split, n, types, protocol in (
                ("test", "test", test_episodes, pair, "ours"),
                ("test-poster", "test", test_episodes, pair, "poster"),
                ("dev", "valid", dev_episodes, pair, "ours"),
                ("dev-source", "valid", dev_episodes, source_types(pair), "ours"),
            ):
                rel = f"{name}/{kind}-k{k}.jsonl"
                path = out_dir / rel
                poster = protocol == "poster"
                entry = {
                    "split": split,
                    "split_file": corpus.files[split].name,
                    "split_sha256": split_sha[split],
                    "types": list(types),
                    "k": k,
                    "query_k": None if poster else k,
                    "seed": seed,
                    "episodes": n,
                    "captions": cap_file.name if cap_file is not None else None,
                    "protocol": protocol,
                    "query_size": poster_query_size if poster else None,
                }
                prev = old.get(rel)
                if (
                    prev is not None and path.is_file()
                    and {key: prev.get(key, _MANIFEST_DEFAULTS.get(key)) for key in entry} == entry
                    and prev.get("sha256") == file_sha256(path)
                ):
                    files[rel] = {**prev, **entry}
                    log(f"{path}: up to date (sha256 {prev['sha256'][:12]}), skipped")
                    continue
                sampler = EpisodeSampler(
                    corpus[split], types, k, seed=seed, query="random" if poster else "greedy",
                    query_size=poster_query_size if poster else None,
                )
                episodes = sampler.sample_many(n)
                write_episodes(episodes, path)
                entry["sha256"] = file_sha256(path)
                entry["mner_version"] = __version__
                files[rel] = entry
                log(f"{path}: {format_summary(summarize_episodes(episodes))}")
    manifest = {"dataset": data_dir.name, "type_map": PROTOCOL_TYPE_MAP, "files": files}
    out_dir.mkdir(parents=True, exist_ok=True)
    write_output(manifest_path, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", what="the manifest")
    return manifest


def format_summary(summary: Mapping) -> str:
    """One line from :func:`~mner.data.episodes.summarize_episodes`."""
    per_type = ", ".join(
        f"{t} {summary['support_mentions'][t]:.2f}/{summary['query_mentions'].get(t, 0):.2f}"
        for t in summary["support_mentions"]
    )
    return (
        f"{summary['episodes']} episodes, {summary['support_tweets']:.2f} support / "
        f"{summary['query_tweets']:.2f} query tweets on average, mentions per episode "
        f"(support/query): {per_type}; {summary['query_with_mention']:.1%} of query tweets "
        "with a target mention"
    )
