"""Inference backends: where a trained tagger's forward pass runs.

``torch`` (the default) runs the checkpoint's PyTorch modules. ``onnxruntime`` runs an export
folder written by ``mner export`` (:func:`mner.backends.onnx_export.export_checkpoint`): the
encoders and the emission head as ONNX graphs, optionally int8-quantized, run by ONNX Runtime on
the CPU (:class:`mner.backends.onnx_runtime.OnnxTagger`). Either way the same processor builds the
batches and the same CRF code decodes the emissions (:func:`mner.models.base.decode_output`), so
both give the same entities, offsets and output schema.

An export folder is recognised by its :data:`EXPORT_CONFIG` file; :func:`resolve_backend` picks
the backend of a path (``backend=None``: by what the folder is) and refuses a pairing that cannot
work with one line saying what to do.
"""

from __future__ import annotations

from pathlib import Path

from mner.errors import MNERError

__all__ = ["BACKENDS", "EXPORT_CONFIG", "EXPORT_FORMAT", "is_export_folder", "resolve_backend"]

#: The backends ``Pipeline.from_pretrained`` and the command line accept.
BACKENDS = ("torch", "onnxruntime")
#: The file that makes a folder an export (backend, quantization, opset, the source's fingerprint).
EXPORT_CONFIG = "mner_export.json"
#: Written into :data:`EXPORT_CONFIG`; a reader refuses a format it does not know.
EXPORT_FORMAT = "mner-onnx/1"


def is_export_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder written by ``mner export``."""
    return (Path(path) / EXPORT_CONFIG).is_file()


def resolve_backend(path: str | Path, backend: str | None = None) -> str:
    """The backend that runs ``path``: ``backend`` if given and possible, else ``onnxruntime`` for an
    export folder and ``torch`` for a checkpoint. A pairing that cannot run raises :class:`MNERError`."""
    exported = is_export_folder(path)
    if backend is None:
        return "onnxruntime" if exported else "torch"
    if backend not in BACKENDS:
        raise MNERError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "torch" and exported:
        raise MNERError(f"{path}: an ONNX export (mner export) runs with the onnxruntime backend; leave "
                        "--backend out (it is detected) or give the source checkpoint for torch")
    if backend == "onnxruntime" and not exported:
        raise MNERError(f"{path}: not an ONNX export; the onnxruntime backend runs what mner export writes: "
                        f"mner export {path} --out DIR [--quantize int8], then use DIR")
    return backend
