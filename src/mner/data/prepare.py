"""Reading a corpus for a model: splits, captions, the missing-image policy, IOB1 -> IOB2.

The data layer's last step before a processor (file -> :class:`~mner.data.example.Example`):
:func:`prepare_data` reads the splits of a :class:`DataConfig`, attaches the captions, applies
the missing-image policy and reads the tags the conlleval way (:func:`to_iob2`), reporting every
count as a note. Training (:mod:`mner.experiment`), ``mner evaluate`` and the few-shot side all
read data through it; none of them needs the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from mner.config import ConfigError
from mner.data.captions import CaptionStore, resolve_caption_file
from mner.data.corpus import Corpus
from mner.data.example import Example
from mner.data.formats import FORMATS, read_file
from mner.data.images import POLICIES, ImageStore
from mner.tagging import convert_tags

__all__ = ["DataConfig", "PreparedData", "prepare_data", "to_iob2"]


@dataclass
class DataConfig:
    """Where the data is and how to read it.

    Attributes:
        corpus: a folder with train/valid/test files (any supported format).
        train, valid, test: single files (override the corpus' splits).
        format: ``auto``, ``twitter``, ``conll`` or ``jsonl``.
        type_map: rename entity types while reading (e.g. ``OTHER=MISC``).
        captions: a caption file, ``auto`` (next to the corpus, see ``mner data stats``), or
            None / ``none`` (see :func:`mner.data.captions.resolve_caption_file`).
        images: the image folder (None: no pixels).
        missing_images: ``error`` | ``blank`` | ``drop`` for tweets whose image is missing or unreadable.
        check_images: decode every image before training (finds broken files up front).
        max_train: use only the first N training tweets (quick runs); None = all.
        feature_cache: folder of the frozen-feature cache; ``auto`` = ``$MNER_CACHE/features``
            (default ``~/.cache/mner/features``); None = in memory only
            (:func:`mner.encoders.cache.feature_cache`).
    """

    corpus: str | None = None
    train: str | None = None
    valid: str | None = None
    test: str | None = None
    format: str = "auto"
    type_map: str | None = None
    captions: str | None = "auto"
    images: str | None = None
    missing_images: str = "error"
    check_images: bool = True
    max_train: int | None = None
    feature_cache: str | None = "auto"

    def __post_init__(self) -> None:
        if self.format not in ("auto",) + FORMATS:
            raise ConfigError(f"data.format {self.format!r}: choose auto, {', '.join(FORMATS)}")
        if self.missing_images not in POLICIES:
            raise ConfigError(f"data.missing_images {self.missing_images!r}: choose {', '.join(POLICIES)}")
        if self.max_train is not None and self.max_train < 1:
            raise ConfigError(f"data.max_train must be >= 1, got {self.max_train}")


@dataclass
class PreparedData:
    """The splits as read (``{"train": [...], ...}``), the notes said while reading them, and the
    image store (None without an image folder)."""

    splits: dict[str, list[Example]]
    notes: list[str]
    image_store: ImageStore | None


def to_iob2(examples: Sequence[Example]) -> tuple[list[Example], int]:
    """``examples`` with their tags read the conlleval way (an ``I-`` without ``B-`` starts an
    entity, written ``B-``: IOB1 -> IOB2), and how many tags changed. Examples without tags
    are kept as they are."""
    out, changed = [], 0
    for ex in examples:
        if ex.tags is None:
            out.append(ex)
            continue
        tags = convert_tags(ex.tags, "iob1", "iob2")
        if tuple(tags) != ex.tags:
            changed += sum(a != b for a, b in zip(tags, ex.tags))
            ex = ex.replace(tags=tuple(tags))
        out.append(ex)
    return out, changed


def prepare_data(cfg: DataConfig, needs_images: bool = False, needs_captions: bool = False,
                 log: Callable[[str], object] = print) -> PreparedData:
    """Read the splits, attach captions, apply the image policy, read tags the conlleval way.

    ``needs_images`` / ``needs_captions``: the model reads that view (a missing image folder or
    caption file is then an error, unless the policy is ``blank``)."""
    notes: list[str] = []
    corpus = None
    if cfg.corpus is not None:
        corpus = Corpus.from_folder(cfg.corpus, type_map=cfg.type_map, format=cfg.format)
    splits: dict[str, list[Example]] = dict(corpus.splits) if corpus is not None else {}
    files = dict(corpus.files) if corpus is not None else {}

    for name in ("train", "valid", "test"):
        path = getattr(cfg, name)
        if path is not None:
            splits[name] = read_file(path, cfg.format, cfg.type_map)
            files[name] = Path(path)
    if not splits:
        raise ConfigError("data: give a corpus folder (data.corpus) or split files (data.train, ...)")
    if cfg.max_train is not None and "train" in splits:
        splits["train"] = splits["train"][: cfg.max_train]
        notes.append(f"train: first {len(splits['train'])} tweets only (data.max_train)")
    work = Corpus(splits, files, Path(cfg.corpus) if cfg.corpus else None)

    caption_file, caption_note = resolve_caption_file(
        cfg.captions, Path(cfg.corpus) if cfg.corpus else next(iter(files.values())))
    notes.append(caption_note)
    if caption_file is not None:
        work = work.with_captions(CaptionStore.from_file(caption_file))
        for split, rep in work.reports.items():
            notes.append(f"{split} {rep['captions'].summary()}")
    elif needs_captions:
        raise ConfigError("this model reads captions: give a caption file (data.captions, or --captions FILE)")

    store = None
    if cfg.images is not None:
        store = ImageStore(cfg.images)
        work = work.with_images(store, cfg.missing_images, check_content=cfg.check_images)
        for split, rep in work.reports.items():
            notes.append(f"{split} {rep['images'].summary()}")
    elif needs_images:
        if cfg.missing_images != "blank":
            raise ConfigError("this model looks at pixels: give the image folder (data.images, or --images DIR), "
                              "or choose missing_images blank to go on without any image")
        work = Corpus({k: [ex.replace(image=None) for ex in v] for k, v in work.splits.items()}, work.files, work.root)
        notes.append("images: no image folder; every tweet is kept without image (missing_images: blank)")

    out: dict[str, list[Example]] = {}
    for split, exs in work.splits.items():
        out[split], n = to_iob2(exs)
        if n:
            notes.append(f"{split}: {n} I- tags without B- read as entity starts (B-), as conlleval reads them")
    for n in notes:
        log(n)
    return PreparedData(out, notes, store)
