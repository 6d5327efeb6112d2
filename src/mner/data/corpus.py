"""A corpus: the train / valid / test splits of one dataset, found in a folder.

``Corpus.from_folder("../shared/data/twitter2015")`` finds ``train``, ``valid`` (also ``dev``,
``val``, ``validation``) and ``test`` files with any of the extensions in
:data:`SPLIT_EXTENSIONS`, in any supported format. A path to a single file gives a corpus with
one split named after the file. Captions and image checks are attached with
:meth:`Corpus.with_captions` and :meth:`Corpus.with_images`, which return a new corpus and
record their reports in ``Corpus.reports``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

from mner.data.captions import CaptionStore, attach_captions
from mner.data.example import Example
from mner.data.formats import detect_format, read_file
from mner.data.images import ImageStore, apply_image_policy
from mner.errors import MNERError

__all__ = ["Corpus", "SPLIT_ALIASES", "SPLIT_EXTENSIONS", "corpus_files", "find_split_files"]

SPLIT_ALIASES: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "valid": ("valid", "dev", "val", "validation"),
    "test": ("test",),
}
SPLIT_EXTENSIONS = (".txt", ".conll", ".tsv", ".bio", ".jsonl", ".json", ".ndjson")


def find_split_files(folder: str | Path) -> dict[str, Path]:
    """``{"train": path, "valid": path, "test": path}`` for the splits present in ``folder``.

    Raises if a split has two candidate files (e.g. ``dev.txt`` and ``valid.txt``): picking
    one silently would be a guess.
    """
    folder = Path(folder)
    found: dict[str, Path] = {}
    for split, names in SPLIT_ALIASES.items():
        cands = [
            folder / f"{name}{ext}"
            for name in names
            for ext in SPLIT_EXTENSIONS
            if (folder / f"{name}{ext}").is_file()
        ]
        if len(cands) > 1:
            raise MNERError(
                f"{folder}: split {split!r} has several files: "
                + ", ".join(c.name for c in cands)
                + "; keep one"
            )
        if cands:
            found[split] = cands[0]
    return found


def corpus_files(path: str | Path) -> dict[str, Path]:
    """The files of the corpus at ``path``: ``{stem: path}`` for one file, else the split files
    of the folder (:func:`find_split_files`). Raises FileNotFoundError, saying which, when
    ``path`` does not exist or the folder holds no split file."""
    path = Path(path)
    if path.is_file():
        return {path.stem: path}
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or folder")
    files = find_split_files(path)
    if not files:
        raise FileNotFoundError(
            f"{path}: no train/valid/test files found (looked for "
            f"{{train,valid,dev,test}}{{{','.join(SPLIT_EXTENSIONS)}}})"
        )
    return files


@dataclass(frozen=True)
class Corpus(Mapping[str, list[Example]]):
    """Named splits of examples, the files they came from (and their formats), and check
    reports."""

    splits: dict[str, list[Example]]
    files: dict[str, Path] = field(default_factory=dict)
    root: Path | None = None
    reports: dict[str, dict[str, object]] = field(default_factory=dict)
    formats: dict[str, str] = field(default_factory=dict)  # split -> format its file was read in

    @classmethod
    def from_folder(
        cls,
        path: str | Path,
        type_map: str | Mapping[str, str] | None = None,
        format: str = "auto",
    ) -> "Corpus":
        path = Path(path)
        files = corpus_files(path)
        root = path.parent if path.is_file() else path
        fmts = {s: detect_format(f) if format == "auto" else format for s, f in files.items()}
        splits = {s: read_file(f, fmts[s], type_map) for s, f in files.items()}
        return cls(splits, files, root, formats=fmts)

    # Mapping interface -------------------------------------------------------------
    def __getitem__(self, split: str) -> list[Example]:
        try:
            return self.splits[split]
        except KeyError:
            raise KeyError(
                f"no split {split!r} in {self.root or 'corpus'} (it has {', '.join(self.splits)})"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.splits)

    def __len__(self) -> int:
        return len(self.splits)

    @property
    def train(self) -> list[Example]:
        return self["train"]

    @property
    def valid(self) -> list[Example]:
        return self["valid"]

    @property
    def test(self) -> list[Example]:
        return self["test"]

    # Attachments --------------------------------------------------------------------
    def with_captions(self, store: CaptionStore) -> "Corpus":
        splits, reports = {}, {}
        for name, exs in self.splits.items():
            splits[name], rep = attach_captions(exs, store)
            reports[name] = rep
        return self._derive(splits, "captions", reports)

    def with_images(
        self, store: ImageStore, policy: str = "error", check_content: bool = True
    ) -> "Corpus":
        """Apply a missing-image policy to every split (see :mod:`mner.data.images`)."""
        splits, reports = {}, {}
        for name, exs in self.splits.items():
            splits[name], rep = apply_image_policy(exs, store, policy, check_content)  # type: ignore[arg-type]
            reports[name] = rep
        return self._derive(splits, "images", reports)

    def _derive(self, splits: dict, key: str, reports: dict) -> "Corpus":
        new_reports = {k: dict(v) for k, v in self.reports.items()}
        for split, rep in reports.items():
            new_reports.setdefault(split, {})[key] = rep
        return dataclasses.replace(self, splits=splits, reports=new_reports)
