"""Checkpoints: ``config.json`` + ``model.safetensors`` + encoder assets; never pickles.

A model folder holds:

* ``config.json``: ``{"model_type": ..., "mner_version": ..., "config": {...}}``, the model's
  typed config as plain JSON;
* ``model.safetensors``: every weight, frozen encoders included, so the folder is complete;
* ``assets/<encoder>/``: what rebuilds each pretrained encoder *without its weights* and
  without a network: the transformers ``config.json``, the tokenizer files, the image
  preprocessing.

Writing is atomic (a temporary folder renamed into place), so a kill never leaves a half
written checkpoint behind, and a full disk (or a file-size limit) raises :class:`CheckpointError`
naming the folder, with the temporary folder removed and the checkpoint already there untouched. Loading refuses folders that hold only pickled weights
(``pytorch_model.bin``, ``*.pt``, ``*.pth``, ``*.ckpt``): unpickling runs code, and the
project's format is safetensors.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from mner import __version__
from mner.errors import MNERError

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "CheckpointError",
    "atomic_folder",
    "interrupted_saves",
    "replace_folder",
    "read_config",
    "resolve_model_dir",
    "save_state_dict",
    "load_state_dict",
    "write_config",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
#: errno values of a write that failed for want of room (a full disk, a quota, a file-size limit).
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


class CheckpointError(MNERError, ValueError):
    """A folder that is not a loadable mner model."""


def resolve_model_dir(path: str | Path) -> Path:
    """The model folder for ``path``: the folder itself, or a training run's ``best/``."""
    path = Path(path)
    if (path / CONFIG_NAME).is_file() and (path / WEIGHTS_NAME).is_file():
        return path
    if (path / "best" / CONFIG_NAME).is_file():
        return path / "best"
    if not path.exists():
        raise CheckpointError(f"{path}: no such model folder")
    if (path / "mner_export.json").is_file():  # mner.backends.EXPORT_CONFIG
        raise CheckpointError(f"{path}: an ONNX export (mner export), not a PyTorch checkpoint: mner predict and "
                              "Pipeline.from_pretrained run it (backend onnxruntime); this command needs the "
                              "checkpoint it was exported from")
    pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES) if path.is_dir() else []
    if pickles and not (path / WEIGHTS_NAME).is_file():
        raise CheckpointError(
            f"{path}: holds pickled weights ({', '.join(pickles)}) and no {WEIGHTS_NAME}; mner loads "
            "safetensors only (unpickling can run arbitrary code). Convert the weights with "
            "safetensors.torch.save_file in a trusted environment"
        )
    raise CheckpointError(
        f"{path}: not an mner model folder (expected {CONFIG_NAME} and {WEIGHTS_NAME}, "
        "or a training run with best/)"
    )


def read_config(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(data, dict) or "model_type" not in data or "config" not in data:
        raise CheckpointError(f"{path}: missing 'model_type' or 'config'; not written by mner")
    return data


def write_config(folder: Path, model_type: str, config: dict[str, Any], **extra: Any) -> None:
    data = {"model_type": model_type, "mner_version": __version__, "config": config, **extra}
    (folder / CONFIG_NAME).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def save_state_dict(state: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """safetensors needs contiguous, unshared tensors: clone the ones that share storage."""
    seen: set[int] = set()
    clean = {}
    for name, tensor in state.items():
        t = tensor.detach()
        ptr = t.untyped_storage().data_ptr() if t.numel() else -1
        if ptr in seen or not t.is_contiguous():
            t = t.contiguous().clone()
        elif ptr != -1:
            seen.add(ptr)
        clean[name] = t.cpu()
    try:
        save_file(clean, str(path), metadata=metadata or {"format": "pt"})
    except OSError:
        raise
    except Exception as err:  # safetensors wraps the OS error of a failed write (disk full) in its own
        found = re.search(r"os error (\d+)", str(err))
        if found is None:
            raise
        code = int(found.group(1))
        raise OSError(code, os.strerror(code), str(path)) from err


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":  # torch.save's zip, or a bare pickle
        raise CheckpointError(f"{path}: a pickle (torch.save) under a safetensors name; mner never unpickles "
                              "(it can run arbitrary code): convert the weights with "
                              "safetensors.torch.save_file in a trusted environment")
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own SafetensorError for torn files
        raise CheckpointError(f"{path}: not a readable safetensors file ({err}); the checkpoint is "
                              "damaged, save or copy it again") from None


def replace_folder(source: Path, target: Path) -> None:
    """Put the finished folder ``source`` in the place of ``target``: two renames, the old
    ``target`` (kept as ``.<name>.old-*`` in between) removed last. A kill between the renames
    leaves the old folder complete under its ``.old`` name (the trainer resumes from it)."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, old)
    os.replace(source, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def interrupted_saves(target: str | Path) -> tuple[list[Path], list[Path]]:
    """What saves of ``target`` that a kill interrupted left beside it: their temporary folders
    (``.<name>.tmp-*``, and ``..<name>.tmp-*``, a checkpoint's own temporary folder written while
    it was itself being staged) and the previous folders kept between the two renames of
    :func:`replace_folder` (``.<name>.old-*``, complete)."""
    target = Path(target)
    name, parent = target.name, target.parent
    temporary = sorted(parent.glob(f".{name}.tmp-*")) + sorted(parent.glob(f"..{name}.tmp-*"))
    return temporary, sorted(parent.glob(f".{name}.old-*"))


class atomic_folder:
    """``with atomic_folder(target) as tmp:`` write into ``tmp``; on success it replaces
    ``target`` (:func:`replace_folder`), on error it is deleted."""

    def __init__(self, target: str | Path):
        self.target = Path(target)
        self.tmp = self.target.with_name(f".{self.target.name}.tmp-{uuid.uuid4().hex[:8]}")

    def __enter__(self) -> Path:
        self.tmp.mkdir(parents=True)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            # the OS error itself, or the one under the CheckpointError of a save nested in this one
            cause = exc if isinstance(exc, OSError) else exc.__cause__ if isinstance(exc, CheckpointError) else None
            if isinstance(cause, OSError) and cause.errno in DISK_FULL_ERRNOS:
                exc = cause
            if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
                raise CheckpointError(
                    f"{self.target}: could not save ({os.strerror(exc.errno)}); nothing was replaced: "
                    + ("the checkpoint already there is untouched" if self.target.exists() else "no folder was written")
                    + "; free some space (or choose another output folder) and save again") from exc
            return
        replace_folder(self.tmp, self.target)
