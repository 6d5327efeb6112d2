"""Caption store: image id -> an image-derived caption (image content as text).

File format (the RiVEG release of BLIP-2 captions for Twitter-2015/2017): one line per image,
``<id>.jpg :<caption>``. A caption may be empty (two 2015 images have one); it is kept as the
empty string and counted, never replaced. :func:`attach_captions` puts captions on examples
and reports how many were found, empty and missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from mner.data.example import Example
from mner.data.formats import DataFormatError, _read_lines
from mner.data.images import EXTENSIONS

__all__ = ["CaptionStore", "CaptionReport", "attach_captions", "find_caption_file", "resolve_caption_file"]


def _image_key(ref: str) -> str:
    """``"123.jpg"`` and ``"123"`` and ``"/x/123.jpg"`` all give ``"123"``."""
    name = Path(ref).name
    stem, dot, ext = name.rpartition(".")
    return stem if dot and f".{ext.lower()}" in EXTENSIONS else name


@dataclass
class CaptionStore(Mapping[str, str]):
    """Captions by image id. ``path`` is the file they came from (or None)."""

    captions: dict[str, str] = field(default_factory=dict)
    path: Path | None = None

    @classmethod
    def from_file(cls, path: str | Path) -> "CaptionStore":
        path = Path(path)
        captions: dict[str, str] = {}
        for n, line in enumerate(_read_lines(path), start=1):
            if not line.strip():
                continue
            name, sep, caption = line.partition(" :")
            if not sep:
                name, sep, caption = line.partition(":")
            if not sep or not name.strip():
                raise DataFormatError(path, n, f"expected '<id>.jpg :<caption>', got {line!r}")
            key = _image_key(name.strip())
            caption = caption.strip()
            if key in captions and captions[key] != caption:
                raise DataFormatError(
                    path, n, f"image {key!r} has two different captions",
                    "keep one caption per image",
                )
            captions[key] = caption
        return cls(captions, path)

    def get_caption(self, image_ref: str | None) -> str | None:
        if image_ref is None:
            return None
        return self.captions.get(_image_key(str(image_ref)))

    def __getitem__(self, key: str) -> str:
        return self.captions[_image_key(key)]

    def __iter__(self) -> Iterator[str]:
        return iter(self.captions)

    def __len__(self) -> int:
        return len(self.captions)


@dataclass
class CaptionReport:
    found: int = 0
    empty: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"captions: {self.found} found ({len(self.empty)} empty), "
            f"{len(self.missing)} missing"
        )

    def to_dict(self) -> dict:
        return {
            "found": self.found,
            "empty": len(self.empty),
            "missing": len(self.missing),
            "empty_ids": self.empty[:50],
            "missing_ids": self.missing[:50],
        }


def attach_captions(
    examples: Iterable[Example], store: CaptionStore
) -> tuple[list[Example], CaptionReport]:
    """Give each example its caption (looked up by image id, else by tweet id).

    Examples already carrying a caption keep it. Missing captions stay ``None`` and are
    counted; what a model does without one is the model's documented choice.
    """
    report = CaptionReport()
    out = []
    for ex in examples:
        if ex.caption is None:
            cap = store.get_caption(ex.image) if ex.image is not None else None
            if cap is None:
                cap = store.get_caption(ex.id)
            if cap is not None:
                ex = ex.replace(caption=cap)
        if ex.caption is None:
            report.missing.append(ex.id)
        else:
            report.found += 1
            if ex.caption == "":
                report.empty.append(ex.id)
        out.append(ex)
    return out, report


def find_caption_file(corpus_dir: str | Path) -> Path | None:
    """The caption file for a corpus folder laid out like ``../shared/data``:
    ``<parent>/captions/<folder name>_*.txt`` (exactly one match), else None."""
    corpus_dir = Path(corpus_dir)
    cap_dir = corpus_dir.parent / "captions"
    if not cap_dir.is_dir():
        return None
    matches = sorted(cap_dir.glob(f"{corpus_dir.name}_*.txt"))
    return matches[0] if len(matches) == 1 else None


def resolve_caption_file(spec: str | Path | None, data_path: str | Path) -> tuple[Path | None, str]:
    """The caption file a caption option names for the data at ``data_path`` (a corpus folder
    or one file), and a note saying where it came from (or why there is none).

    ``spec`` is ``None`` or ``"none"`` (any case: no captions), ``"auto"`` (any case:
    :func:`find_caption_file` next to the corpus, None when there is none) or a path, which
    must be a file. Every command and :func:`mner.data.prepare.prepare_data` resolve through here.
    """
    if spec is None or str(spec).strip().lower() == "none":
        return None, "captions: not used"
    if str(spec).strip().lower() == "auto":
        data_path = Path(data_path)
        found = find_caption_file(data_path if data_path.is_dir() else data_path.parent)
        if found is None:
            return None, "captions: none found next to the corpus (give a file: --captions FILE, data.captions)"
        return found, f"captions: {found} (found next to the corpus)"
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(
            f"{spec}: caption file not found; give a caption file ('<id>.jpg :<caption>' per "
            "line), 'auto' (look next to the corpus) or 'none'"
        )
    return path, f"captions: {spec}"
