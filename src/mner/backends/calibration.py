"""Static int8 of an exported image encoder (``mner export ... --int8-graphs image_encoder
--calibration DATA``): the calibration images and ONNX Runtime's ``quantize_static``.

Dynamic int8 (``quantize_dynamic``) covers matrix products, with activations quantized on the fly;
a convolutional image encoder (EfficientNet-Lite0, ResNet) has none. It is quantized statically
instead: int8 weights (per output channel unless per tensor is asked for) and uint8 activations
whose ranges (MinMax) are measured beforehand on calibration images, written as
QuantizeLinear / DequantizeLinear pairs around each operator (QDQ), which ONNX Runtime's CPU
provider runs as integer convolutions.

The calibration images are read only where the user points (:func:`calibration_set`): a folder of
images, or a data file of the project's formats (or a corpus folder: its training split) whose
tweets' images are in an image folder; ``size`` of them, spread evenly over the list. Each is
opened by :func:`mner.data.images.load_image` and transformed by the image encoder's own eval
transform, as the pipeline does before the encoder.

Settings, measured on the quickstart's EfficientNet-Lite0 on a 2-core AMD EPYC (AVX2, no VNNI;
docs/benchmarks/inference.md): uint8 activations (int8 ones ran no faster than fp32 there);
``reduce_range`` (7-bit weights: without VNNI the uint8 x int8 products can saturate their 16-bit
sums, and the features were further from fp32 without it); the convolution that reads the pixels
(the stem) stays fp32, which halved the features' error for a little speed.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from mner.data.images import EXTENSIONS, ImageStore, load_image
from mner.errors import UsageError

if TYPE_CHECKING:
    import torch
    from PIL import Image

__all__ = ["CALIBRATION_METHOD", "DEFAULT_CALIBRATION_SIZE", "CalibrationSet", "calibration_set",
           "quantize_image_encoder"]

#: How many calibration images ``--calibration-size`` takes by default.
DEFAULT_CALIBRATION_SIZE = 128
#: ONNX Runtime's calibration method (the range of each activation over the calibration images).
CALIBRATION_METHOD = "MinMax"
#: The input of an exported image encoder (:mod:`mner.backends.onnx_export`).
PIXELS = "pixel_values"
#: Images per calibration run of the graph.
BATCH_SIZE = 16
#: The split of a corpus folder the calibration images come from.
SPLIT = "train"


@dataclass(frozen=True)
class CalibrationSet:
    """The image files static int8 is calibrated on, and where they came from.

    ``source``: what the user gave (a folder of images, a data file or a corpus folder);
    ``image_folder``: the images' folder; ``split``: the split of a corpus folder, else None;
    ``available``: how many images the source names (``files`` is a sample of them)."""

    source: Path
    image_folder: Path
    split: str | None
    files: tuple[Path, ...]
    available: int

    def record(self) -> dict[str, Any]:
        """The ``calibration`` entry of ``mner_export.json``: where the images came from, their names
        (relative to the image folder) and one sha256 over the names and bytes of all, in order."""
        digest = hashlib.sha256()
        for path in self.files:
            digest.update(path.name.encode("utf-8") + b"\0" + hashlib.sha256(path.read_bytes()).digest())
        return {"method": CALIBRATION_METHOD, "images": len(self.files), "available": self.available,
                "source": str(self.source), "split": self.split, "image_folder": str(self.image_folder),
                "files": [str(p.relative_to(self.image_folder)) for p in self.files], "sha256": digest.hexdigest()}

    def pixels(self, transform: Callable[[Image.Image], torch.Tensor]) -> np.ndarray:
        """The images as the pipeline feeds them to the encoder: each opened by :func:`load_image`,
        then ``transform`` (the encoder's eval transform); ``(N, 3, P, P)`` float32."""
        return np.stack([transform(load_image(path, path.stem)).numpy() for path in self.files]).astype(np.float32)


def _spread(items: list, size: int) -> list:
    """``size`` items spread evenly over ``items`` (all of them when there are no more)."""
    if len(items) <= size:
        return items
    return [items[i * len(items) // size] for i in range(size)]


def calibration_set(source: str | Path, images: str | Path | None = None,
                    size: int = DEFAULT_CALIBRATION_SIZE) -> CalibrationSet:
    """The calibration images of ``source``: a folder of images (``images`` None: every image file
    in it, by name), or a data file or corpus folder (its train split) whose tweets' image ids are
    resolved in the image folder ``images`` (each image once, in the file's order). ``size`` of them,
    spread evenly over the list. Refused with a one-line :class:`UsageError`: a source that does not
    exist, no image at all, a tweet's image missing from ``images``, a data file without ``images``."""
    from mner.data.corpus import corpus_files
    from mner.data.formats import read_file

    source = Path(source)
    if size < 1:
        raise UsageError(f"--calibration-size {size}: give at least 1 image")
    if not source.exists():
        raise UsageError(f"--calibration {source}: no such file or folder")
    if source.is_dir() and images is None:  # a folder of images
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in EXTENSIONS and p.is_file())
        if not files:
            raise UsageError(f"--calibration {source}: no image file in it ({', '.join(EXTENSIONS)}); a data "
                             "file or corpus folder needs --calibration-images DIR")
        return CalibrationSet(source, source, None, tuple(_spread(files, size)), len(files))
    if images is None:
        raise UsageError(f"--calibration {source}: a data file; give the folder of its images with "
                         "--calibration-images DIR")
    if not Path(images).is_dir():
        raise UsageError(f"--calibration-images {images}: no such folder")
    store = ImageStore(Path(images))
    data, chosen = source, None
    if source.is_dir():
        files = corpus_files(source)
        if SPLIT not in files:
            raise UsageError(f"--calibration {source}: no {SPLIT} split (it has {', '.join(files)})")
        data, chosen = files[SPLIT], SPLIT
    refs = list(dict.fromkeys(ex.image for ex in read_file(data) if ex.image is not None))
    if not refs:
        raise UsageError(f"--calibration {data}: no tweet with an image")
    paths = []
    for ref in _spread(refs, size):
        path = store.resolve(ref)
        if path is None:
            raise UsageError(f"--calibration {data}: image {ref!r} is not in {images}; give the folder of its "
                             "images with --calibration-images DIR")
        paths.append(path)
    return CalibrationSet(source, Path(images), chosen, tuple(paths), len(refs))


class _Batches:
    """ONNX Runtime's calibration data reader (its ``get_next``) over the calibration pixels."""

    def __init__(self, pixels: np.ndarray):
        self._batches = iter([{PIXELS: pixels[i:i + BATCH_SIZE]} for i in range(0, len(pixels), BATCH_SIZE)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def quantize_image_encoder(source: Path, target: Path, pixels: np.ndarray, per_channel: bool) -> dict[str, Any]:
    """Static int8 (QDQ) of the image encoder graph ``source`` into ``target``, calibrated on
    ``pixels`` (see the module docstring); returns what was done, for ``mner_export.json``."""
    import onnx
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType, quant_pre_process,
                                          quantize_static)

    with tempfile.TemporaryDirectory(prefix="mner-int8-") as tmp:
        ready = Path(tmp) / "ready.onnx"
        # shape inference and ONNX Runtime's graph optimisations first, as quantize_static asks
        quant_pre_process(str(source), str(ready))
        stem = [node.name for node in onnx.load(str(ready), load_external_data=False).graph.node
                if node.op_type == "Conv" and PIXELS in node.input]
        quantize_static(str(ready), str(target), _Batches(pixels), quant_format=QuantFormat.QDQ,
                        per_channel=per_channel, reduce_range=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=getattr(CalibrationMethod, CALIBRATION_METHOD),
                        nodes_to_exclude=stem)
    return {"format": "QDQ", "weights": "int8 (7-bit range)", "activations": "uint8 (calibrated, per tensor)",
            "reduce_range": True, "fp32_nodes": stem}
