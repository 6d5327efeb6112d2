"""Images: a file or its bytes -> the RGB :class:`PIL.Image.Image` a model sees, or a clear error.

:func:`load_image` is the one image loader of mner: the library (:class:`~mner.pipeline.Pipeline`,
the processors), ``mner predict``, ``mner explain`` and ``mner report``, the batch tagger's prepare
step, the few-shot pipeline and the service (``mner serve``, which maps its :class:`ImageError` to
HTTP statuses in :func:`mner.serve.limits.open_image`) all turn a file or its bytes into pixels
through it, so the same file gives the same pixels on every path. An image already in memory (a
PIL image given to a pipeline) is converted by :func:`to_rgb` only: its pixels are the caller's.

:class:`ImageStore` resolves ``<image_dir>/<id>.jpg`` (and the other extensions in
``EXTENSIONS``, and a path given directly) and opens the file with :func:`load_image`:

* modes are converted, never guessed at by the model: ``L``/``1``/``I;16``/``I``/``F`` (grey,
  16-bit and float grey are rescaled to 8 bits), ``P`` (palette; with transparency it is
  composited), ``RGBA``/``LA``/``PA`` (composited on white), ``CMYK``, ``YCbCr``, ``LAB``,
  ``HSV``; the EXIF orientation is applied;
* refused, with an :class:`ImageError` naming the image id and the path: zero-byte files,
  files PIL cannot identify (corrupt), truncated files, and decompression bombs (more than
  ``max_pixels`` pixels, checked *before* decoding); a directory, a broken link or a symlink
  loop where an image should be (``not-a-file``, never called "missing"); where the caller sets
  them (the service does), more bytes than ``max_bytes`` (``too-many-bytes``) and a format outside
  ``formats`` (``unsupported-format``);
* very thin images (a 1 x 8000 banner) are not refused: the models' resize keeps at most
  :data:`MAX_ASPECT` times the shorter side (:func:`resize_shorter`), so their cost is bounded;
* an image reference names a file *inside* the image folder: a reference that leaves it
  (``../x``, or an absolute path elsewhere unless the store was made with ``allow_absolute=True``) is
  refused (``outside``) whatever the policy, so that no file outside the folder is ever read.
  Links inside the folder are followed (whoever put them there chose their target).

What happens to a tweet whose image is missing or unreadable is a policy the user picks
(:data:`POLICIES`), applied by :func:`apply_image_policy`:

* ``error`` (default): stop with the list of affected tweets;
* ``blank``: keep the tweet with ``image=None``; models see "no image" (an all-zero visual
  input with an empty mask), exactly as for a tweet that never had one;
* ``drop``: remove the tweet (note: on a test split this changes what is evaluated).

The :class:`ImageReport` it returns always carries the counts and ids, and every command
prints it. Nothing is substituted silently (the reference MAF code replaced about 77 failed
images per dataset with one fixed picture, without a word).
"""

from __future__ import annotations

import errno
import io
import os
import re
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal, Sequence

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from mner.data.example import Example
from mner.errors import MNERError

__all__ = [
    "EXTENSIONS",
    "POLICIES",
    "ImageError",
    "ImageStore",
    "ImageReport",
    "MAX_ASPECT",
    "apply_image_policy",
    "load_image",
    "resize_shorter",
    "to_rgb",
]

EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff")
POLICIES = ("error", "blank", "drop")
Policy = Literal["error", "blank", "drop"]
#: PIL's own default limit (about 89.5 megapixels), applied before decoding.
DEFAULT_MAX_PIXELS = 89_478_485
_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


class ImageError(MNERError):
    """An image that cannot be used. ``kind`` is one of ``missing``, ``empty``,
    ``corrupt``, ``truncated``, ``too-large`` (pixels), ``not-a-file``, ``outside``, and, only where
    the caller sets those limits (:func:`load_image`'s ``max_bytes`` and ``formats``: the service),
    ``too-many-bytes`` and ``unsupported-format``.

    What :func:`load_image` learnt before it stopped travels with the error, for callers that word
    their own refusals (the service): ``format`` (PIL's name, once identified), ``size`` (width,
    height, once the header is read), ``nbytes`` and ``unrecognised`` (PIL knows no format that
    reads the file)."""

    HINTS = {
        "missing": "put the file in the image folder, or choose --missing-images blank|drop",
        "empty": "the file has zero bytes; download it again",
        "corrupt": "PIL cannot read it; download it again or remove it",
        "truncated": "the file ends early; download it again",
        "too-large": "refused as a possible decompression bomb; shrink the image (or raise the limit: "
                     "--max-image-pixels N of mner predict and mner data validate, ImageStore(max_pixels=N))",
        "not-a-file": "put an image file there (a folder, a broken link or a link loop is no image)",
        "outside": "an image reference names a file inside the image folder; move the image "
                   "into the folder and give its path relative to it",
        "too-many-bytes": "send a smaller (re-encoded or resized) image",
        "unsupported-format": "convert it, e.g. to JPEG or PNG",
    }

    def __init__(self, kind: str, image_id: str, path: str | Path | None, detail: str = "", *,
                 format: str | None = None, size: tuple[int, int] | None = None, nbytes: int | None = None,
                 unrecognised: bool = False):
        self.kind = kind
        self.image_id = image_id
        self.path = str(path) if path is not None else None
        self.detail = detail
        self.format, self.size, self.nbytes, self.unrecognised = format, size, nbytes, unrecognised
        where = f"image {image_id!r}" + (f" ({self.path})" if self.path else "")
        msg = f"{where}: {kind}" + (f": {detail}" if detail else "")
        super().__init__(f"{msg}; {self.HINTS.get(kind, '')}".rstrip("; "))


#: The longest side :func:`resize_shorter` makes, in multiples of the shorter side (ours). Photos
#: are far within it (a 32:9 panorama is 3.6), so their pixels are those of a plain resize; only
#: the centre of a thinner image is resized, the part the centre crop can reach and some margin.
MAX_ASPECT = 16


def resize_shorter(image: Image.Image, short: int, interpolation: str = "bicubic",
                   max_aspect: int = MAX_ASPECT) -> Image.Image:
    """Resize ``image`` so that its shorter side is ``short`` pixels and the other in proportion
    (at least ``short``), keeping at most ``max_aspect * short`` pixels of the longer side: the
    centre of it, resampled at the same scale from the matching box of the source (PIL computes
    only the pixels it outputs). The cost is therefore bounded by ``short`` whatever the aspect
    ratio; below the cap the result is exactly a plain ``image.resize``."""
    w, h = image.size
    scale = short / min(w, h)
    new_w, new_h = max(short, round(w * scale)), max(short, round(h * scale))
    cap = max_aspect * short
    resample = _RESAMPLE[interpolation]
    if max(new_w, new_h) <= cap:
        return image.resize((new_w, new_h), resample=resample)
    box = [0.0, 0.0, float(w), float(h)]
    size = [new_w, new_h]
    long_axis = 0 if new_w > cap else 1
    length, new_length = (w, new_w) if long_axis == 0 else (h, new_h)
    extent = cap * length / new_length  # source pixels under the kept centre, at the same scale
    box[long_axis] = (length - extent) / 2
    box[long_axis + 2] = box[long_axis] + extent
    size[long_axis] = cap
    return image.resize(tuple(size), resample=resample, box=tuple(box))


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB (see the module docstring)."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if mode.startswith("I;16"):
            arr = arr / 257.0
        elif mode == "F":
            arr = arr * 255.0 if arr.size and np.nanmax(arr) <= 1.0 else arr
        else:  # 32-bit integer grey: 16-bit PNGs often open as "I"
            peak = float(arr.max()) if arr.size else 0.0
            if peak > 255:
                arr = arr / (257.0 if peak <= 65535 else peak / 255.0)
        arr = np.clip(np.nan_to_num(arr), 0, 255).round().astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
        if mode == "RGB":
            return img
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def load_image(source: bytes | str | os.PathLike, image_id: str | None = None, *,
               max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int | None = None,
               formats: Sequence[str] | None = None) -> Image.Image:
    """The RGB image a model sees, from a file (a path) or the file's bytes: the one image loader of
    mner (see the module docstring). Raises :class:`ImageError` naming ``image_id`` (and the path).

    In order: a zero-byte source is ``empty``; more than ``max_bytes`` bytes (None: no limit) is
    ``too-many-bytes``; what PIL cannot identify is ``corrupt`` (``unrecognised``); a format not in
    ``formats`` (PIL's names; None: any) is ``unsupported-format``; more than ``max_pixels`` pixels is
    ``too-large``, read from the header before any pixel is decoded (PIL's own hard limit, twice
    ``PIL.Image.MAX_IMAGE_PIXELS``, too); then the pixels are decoded (``truncated`` or ``corrupt``
    when they cannot be), the EXIF orientation is applied (:func:`PIL.ImageOps.exif_transpose`) and
    the mode converted by :func:`to_rgb` (16-bit and float grey rescaled to 8 bits, alpha and
    transparent palettes composited on white, CMYK and the others converted)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        raw = bytes(source)
        path, nbytes, opened = None, len(raw), io.BytesIO(raw)
        image_id = str(image_id) if image_id is not None else "(bytes)"
    else:
        path = Path(source)
        image_id = str(image_id) if image_id is not None else str(path)
        if not path.is_file():
            problem = _not_a_file(path)
            raise ImageError("not-a-file" if problem else "missing", image_id, path, problem)
        nbytes, opened = path.stat().st_size, path
    if nbytes == 0:
        raise ImageError("empty", image_id, path, nbytes=0)
    if max_bytes is not None and nbytes > max_bytes:
        raise ImageError("too-many-bytes", image_id, path, f"{nbytes} bytes > max_bytes {max_bytes}", nbytes=nbytes)
    known: dict = {"nbytes": nbytes}
    try:
        with warnings.catch_warnings():
            # PIL's own warning limit is not mner's: max_pixels is checked just below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(opened)
        with img:  # closes the file (or buffer) on the way out; the converted copy is returned
            w, h = img.size
            known.update(format=img.format, size=(w, h))
            if formats is not None and img.format not in formats:
                raise ImageError("unsupported-format", image_id, path,
                                 f"{img.format} is not one of {', '.join(formats)}", **known)
            if w * h > max_pixels:
                raise ImageError("too-large", image_id, path,
                                 f"{w}x{h} = {w * h} pixels > max_pixels {max_pixels}", **known)
            if ImageFile.LOAD_TRUNCATED_IMAGES:
                raise ImageError("truncated", image_id, path, "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set by "
                                 "another library; truncated files cannot be detected", **known)
            img.load()
            return to_rgb(ImageOps.exif_transpose(img))
    except ImageError:
        raise
    except Image.DecompressionBombError as err:  # over PIL's hard limit (twice its own)
        found = re.search(r"\((\d+) pixels\)", str(err))
        size = f"{found.group(1)} pixels" if found else "too many pixels"
        raise ImageError("too-large", image_id, path,
                         f"{size} > max_pixels {max_pixels}" if found and int(found.group(1)) > max_pixels
                         else f"{size}, over PIL's hard limit of {2 * (Image.MAX_IMAGE_PIXELS or 0)} pixels "
                              "(twice PIL.Image.MAX_IMAGE_PIXELS)", **known) from None
    except UnidentifiedImageError:
        raise ImageError("corrupt", image_id, path, "not a recognised image format", unrecognised=True,
                         **known) from None
    except OSError as err:
        kind = "truncated" if "truncated" in str(err).lower() else "corrupt"
        raise ImageError(kind, image_id, path, str(err), **known) from None
    except (SyntaxError, ValueError, EOFError, struct.error, IndexError) as err:  # broken headers or data
        raise ImageError("corrupt", image_id, path, str(err) or type(err).__name__, **known) from None


@dataclass
class ImageStore:
    """Finds and opens tweet images.

    Args:
        root: the image folder (``None``: only paths given directly can be opened).
        extensions: tried in order after the bare name.
        max_pixels: larger images are refused before decoding.
    """

    root: Path | None = None
    extensions: Sequence[str] = EXTENSIONS
    max_pixels: int = DEFAULT_MAX_PIXELS
    allow_absolute: bool = False

    def __post_init__(self) -> None:
        if self.max_pixels < 1:
            raise MNERError(f"max_pixels must be >= 1, got {self.max_pixels}")
        if self.root is not None:
            self.root = Path(self.root)
            if not self.root.is_dir():
                raise FileNotFoundError(f"{self.root}: image folder not found")

    def resolve(self, ref: str | Path, image_id: str | None = None) -> Path | None:
        """The file for an image reference (an id or a path), or None if there is none.

        Raises :class:`ImageError` ``outside`` for a reference that leaves the image folder and
        ``not-a-file`` for a folder, broken link or link loop where the image should be."""
        ref = str(ref)
        image_id = str(image_id if image_id is not None else ref)
        candidates: list[Path] = []
        direct = Path(ref)
        if self.root is not None and not (direct.is_absolute() and self.allow_absolute):
            root = os.path.abspath(self.root)
            target = os.path.normpath(os.path.join(root, ref))  # an absolute ref replaces root
            if os.path.commonpath([root, target]) != root:
                raise ImageError("outside", image_id, ref,
                                 f"resolves outside the image folder {self.root}")
        if direct.is_absolute() or self.root is None:
            candidates.append(direct)
        if self.root is not None:
            candidates.append(self.root / ref)
            candidates.extend(self.root / f"{ref}{ext}" for ext in self.extensions)
        for cand in candidates:
            if cand.is_file():
                return cand
        for cand in candidates:
            problem = _not_a_file(cand)
            if problem:
                raise ImageError("not-a-file", image_id, cand, problem)
        return None

    def open(self, ref: str | Path, image_id: str | None = None) -> Image.Image:
        """Open and convert an image; raise :class:`ImageError` when it cannot be used."""
        image_id = str(image_id if image_id is not None else ref)
        path = self.resolve(ref, image_id)
        if path is None:
            raise ImageError("missing", image_id, self._expected_path(ref))
        return self.open_path(path, image_id)

    def open_path(self, path: Path, image_id: str) -> Image.Image:
        """Open a resolved file with :func:`load_image` (this store's ``max_pixels``)."""
        return load_image(path, image_id, max_pixels=self.max_pixels)

    def _expected_path(self, ref: str | Path) -> Path:
        if self.root is None:
            return Path(ref)
        return self.root / (str(ref) if Path(str(ref)).suffix else f"{ref}{self.extensions[0]}")


def _not_a_file(path: Path) -> str:
    """Why ``path`` (which is no regular file) is not an image file, or "" when nothing is there."""
    try:
        path.stat()
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "a symbolic link loop"
        if os.path.islink(path):
            return f"a broken symbolic link (to {os.readlink(path)})"
        return ""
    if path.is_dir():
        return "a folder, not an image file"
    return "not a regular file"


@dataclass
class ImageReport:
    """What an image check found: counts and the affected tweet ids."""

    policy: str
    checked: int = 0
    found: int = 0
    no_image: int = 0  # examples whose image field is None
    missing: list[str] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)  # tweet id -> error
    action: str = ""

    @property
    def affected(self) -> int:
        return len(self.missing) + len(self.unreadable)

    def summary(self) -> str:
        s = (
            f"images: {self.found} found, {len(self.missing)} missing, "
            f"{len(self.unreadable)} unreadable"
        )
        if self.no_image:
            s += f", {self.no_image} tweets without an image reference"
        if self.affected:
            s += f"; policy {self.policy!r}: {self.action}"
        return s

    def to_dict(self) -> dict:
        return {
            "policy": self.policy,
            "checked": self.checked,
            "found": self.found,
            "missing": len(self.missing),
            "unreadable": len(self.unreadable),
            "no_image": self.no_image,
            "affected": self.affected,
            "action": self.action,
            "missing_ids": self.missing[:50],
            "unreadable_ids": dict(list(self.unreadable.items())[:50]),
        }


class MissingImagesError(MNERError):
    """Raised by :func:`apply_image_policy` under the ``error`` policy."""

    def __init__(self, report: ImageReport, errors: list[ImageError], where: Sequence[str] | None = None):
        self.report = report
        self.errors = errors
        where = list(where) if where is not None else [""] * len(errors)
        head = "\n  ".join((f"{w}: {e}" if w else str(e)) for w, e in list(zip(where, errors))[:10])
        more = f"\n  ... and {len(errors) - 10} more" if len(errors) > 10 else ""
        super().__init__(
            f"{report.affected} tweets have no usable image:\n  {head}{more}\n"
            "Fix the files, or choose a policy: --missing-images blank (keep the tweets "
            "without image) or --missing-images drop (remove them)."
        )


def apply_image_policy(
    examples: Iterable[Example],
    store: ImageStore,
    policy: Policy = "error",
    check_content: bool = True,
) -> tuple[list[Example], ImageReport]:
    """Check every example's image and apply ``policy`` to those that cannot be used.

    An image reference that leaves the image folder (``outside``) is an error under every
    policy, naming the example's file:line.

    With ``check_content`` each image is decoded (corrupt/truncated files are found now, not
    in the middle of an epoch); without it only existence is checked.
    """
    if policy not in POLICIES:
        raise MNERError(f"unknown missing-image policy {policy!r}; choose one of {POLICIES}")
    report = ImageReport(policy=policy)
    errors: list[ImageError] = []
    where: list[str] = []
    bad: set[int] = set()  # positions, not ids: a duplicate id must not hit a healthy tweet
    examples = list(examples)
    for k, ex in enumerate(examples):
        if ex.image is None:
            report.no_image += 1
            continue
        report.checked += 1
        try:
            if check_content:
                store.open(ex.image, ex.id).close()
            elif store.resolve(ex.image, ex.id) is None:
                raise ImageError("missing", ex.id, store._expected_path(ex.image))
            report.found += 1
        except ImageError as err:
            if err.kind == "outside":  # never a matter of policy: no file outside the folder is read
                raise MNERError(f"{ex.source or ex.where}: {err}") from None
            errors.append(err)
            where.append(ex.source or "")
            bad.add(k)
            if err.kind == "missing":
                report.missing.append(ex.id)
            else:
                report.unreadable[ex.id] = f"{err.kind}: {err.path}"
    if not bad:
        report.action = "nothing to do"
        return examples, report
    if policy == "error":
        report.action = "stopped"
        raise MissingImagesError(report, errors, where)
    if policy == "blank":
        report.action = f"{len(bad)} tweets kept without image"
        return [ex.replace(image=None) if k in bad else ex for k, ex in enumerate(examples)], report
    report.action = f"{len(bad)} tweets dropped"
    return [ex for k, ex in enumerate(examples) if k not in bad], report
