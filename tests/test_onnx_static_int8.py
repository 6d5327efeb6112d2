"""Static int8 of the exported image encoder (issue 26, item 3): ``mner export --quantize int8
--int8-graphs ... image_encoder --calibration DATA`` on a tiny random pixels-view MAF (a 2-stage
ResNet image encoder): QDQ nodes in the graph, features close to fp32, the calibration recorded in
``mner_export.json``, the same from the fp32 export (``quantize_export``), and the refusals, each in
one line. Offline, a few seconds."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from mner.backends import EXPORT_CONFIG
from mner.backends.onnx_export import export_checkpoint, quantize_export
from mner.backends.onnx_runtime import load_exported
from mner.cli.main import main
from mner.errors import MNERError
from mner.models import MAFModel
from mner.pipeline import Pipeline
from model_fixtures import encoders, maf_config, one_thread, random_image  # noqa: F401  (fixtures)

pytestmark = pytest.mark.usefixtures("one_thread")

#: The largest difference allowed between an int8 and the fp32 feature, relative to the largest fp32
#: feature of the batch (measured: 0.031 for the region tokens, 0.017 for the pooled vector on this
#: tiny model; EfficientNet-Lite0 of the quickstart: see docs/benchmarks/inference.md).
TOLERANCE = 0.1
TRAIN = [f"train-{i:02d}" for i in range(12)]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """A training file of twelve tweets (Twitter format) with their images, a folder of other images
    (calibration from a folder), and held-out images for the comparison."""
    root = tmp_path_factory.mktemp("calibration")
    images, loose, held_out = root / "images", root / "loose", root / "held-out"
    for folder in (images, loose, held_out):
        folder.mkdir()
    for i, name in enumerate(TRAIN):
        random_image(100 + i, size=36 + i).save(images / f"{name}.jpg")
        random_image(200 + i).save(loose / f"photo-{i:02d}.png")
    for i in range(6):
        random_image(300 + i, size=48).save(held_out / f"{i}.jpg")
    train = root / "train.txt"
    train.write_text("".join(f"IMGID:{name}\nKai\tB-PER\nin\tO\nParis\tB-LOC\n\n" for name in TRAIN))
    return {"train": train, "images": images, "loose": loose, "held_out": held_out}


@pytest.fixture(scope="module")
def checkpoint(encoders, tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return MAFModel(maf_config(encoders, view="pixels")).save_pretrained(tmp_path_factory.mktemp("ckpt") / "pixels")


@pytest.fixture(scope="module")
def fp32(checkpoint, tmp_path_factory) -> Path:
    return export_checkpoint(checkpoint, tmp_path_factory.mktemp("fp32") / "export")


@pytest.fixture(scope="module")
def int8(checkpoint, data, tmp_path_factory) -> Path:
    """``mner export``: dynamic int8 text encoder and static int8 image encoder, calibrated on 8 of the
    12 training images."""
    out = tmp_path_factory.mktemp("int8") / "export"
    assert main(["export", str(checkpoint), "--out", str(out), "--quantize", "int8", "--int8-graphs", "text_encoder",
                 "image_encoder", "--calibration", str(data["train"]), "--calibration-images", str(data["images"]),
                 "--calibration-size", "8"]) == 0
    return out


def _features(export: Path, pixels: np.ndarray) -> list[np.ndarray]:
    """The image encoder graph's outputs (tokens, pooled) on ``pixels``, one thread."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(export / "image_encoder.onnx"), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"pixel_values": pixels})


def _held_out_pixels(export: Path, folder: Path) -> np.ndarray:
    """The held-out images as the exported pipeline feeds them to its image encoder."""
    from mner.data.images import load_image

    transform = load_exported(export).image_encoder.eval_transform()
    return np.stack([transform(load_image(p, p.stem)).numpy() for p in sorted(folder.iterdir())])


def _ops(path: Path) -> Counter:
    return Counter(node.op_type for node in onnx.load(str(path)).graph.node)


def _initializers(path: Path) -> dict[str, bytes]:
    """A graph's constants (weights, scales, zero points) by name (the nodes' metadata, which holds the
    exporter's stack traces, left out)."""
    return {t.name: t.SerializeToString() for t in onnx.load(str(path)).graph.initializer}


def test_static_int8_puts_qdq_in_the_image_encoder_and_stays_close_to_fp32(fp32, int8, data):
    ops = _ops(int8 / "image_encoder.onnx")
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0 and ops["Conv"] > 0, ops
    assert "QuantizeLinear" not in _ops(fp32 / "image_encoder.onnx")
    assert "MatMulInteger" in _ops(int8 / "text_encoder.onnx")  # the text encoder: dynamic, as before
    pixels = _held_out_pixels(fp32, data["held_out"])
    for ref, got in zip(_features(fp32, pixels), _features(int8, pixels)):
        diff = np.abs(ref - got).max()
        assert 0 < diff <= TOLERANCE * np.abs(ref).max(), (diff, np.abs(ref).max())
    # the exported pipeline runs the int8 graphs end to end
    tagged = Pipeline.from_pretrained(int8)(["Kai in Paris", "RT @user : London"],
                                            image=[random_image(1), None])
    assert len(tagged) == 2


def test_the_export_config_records_each_graphs_method_and_the_calibration(int8, data):
    config = json.loads((int8 / EXPORT_CONFIG).read_text())
    q = config["quantization"]
    assert q["method"] == "dynamic+static" and q["methods"] == {"text_encoder": "dynamic", "image_encoder": "static"}
    assert q["graphs"] == ["text_encoder", "image_encoder"] and q["fp32_graphs"] == ["head"]
    static = q["static"]
    assert static["format"] == "QDQ" and static["activations"].startswith("uint8") and static["reduce_range"] is True
    assert len(static["fp32_nodes"]) == 1  # the stem convolution, which reads the pixels
    calibration = static["calibration"]
    chosen = [TRAIN[i * 12 // 8] for i in range(8)]  # 8 of 12, spread evenly
    assert calibration["method"] == "MinMax" and calibration["images"] == 8 and calibration["available"] == 12
    assert calibration["files"] == [f"{name}.jpg" for name in chosen]
    assert calibration["source"] == str(data["train"]) and calibration["image_folder"] == str(data["images"])
    digest = hashlib.sha256()
    for name in calibration["files"]:
        digest.update(name.encode() + b"\0" + hashlib.sha256((data["images"] / name).read_bytes()).digest())
    assert calibration["sha256"] == digest.hexdigest()
    image = config["graphs"]["image_encoder"]
    assert image["sha256"] == hashlib.sha256((int8 / image["file"]).read_bytes()).hexdigest()


def test_static_int8_from_the_fp32_export_and_from_a_folder_of_images(fp32, int8, data, tmp_path):
    out = quantize_export(fp32, tmp_path / "img8", graphs=("image_encoder",), calibration=data["images"],
                          calibration_size=8)
    q = json.loads((out / EXPORT_CONFIG).read_text())["quantization"]
    assert q["methods"] == {"image_encoder": "static"} and q["dynamic"] is None
    assert q["static"]["calibration"]["split"] is None and q["static"]["calibration"]["available"] == 12
    # a folder of the same images, taken by name: the same eight, the same transform, the same int8
    # weights, scales and zero points
    assert q["static"]["calibration"]["files"] == json.loads((int8 / EXPORT_CONFIG).read_text())[
        "quantization"]["static"]["calibration"]["files"]
    assert _initializers(out / "image_encoder.onnx") == _initializers(int8 / "image_encoder.onnx")
    for name in ("text_encoder.onnx", "head.onnx"):
        assert (out / name).read_bytes() == (fp32 / name).read_bytes()
    # a corpus folder gives its train split; another folder of images another calibration
    corpus = quantize_export(fp32, tmp_path / "corpus", graphs=("image_encoder",), calibration=data["train"].parent,
                             calibration_images=data["images"], calibration_size=8)
    record = json.loads((corpus / EXPORT_CONFIG).read_text())["quantization"]["static"]["calibration"]
    assert record["split"] == "train" and record["files"] == q["static"]["calibration"]["files"]
    loose = quantize_export(fp32, tmp_path / "loose", graphs=("image_encoder",), calibration=data["loose"])
    record = json.loads((loose / EXPORT_CONFIG).read_text())["quantization"]["static"]["calibration"]
    assert record["images"] == 12 and record["files"][0] == "photo-00.png"
    assert _initializers(loose / "image_encoder.onnx") != _initializers(out / "image_encoder.onnx")


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("mner: error:") and "\n" not in err and "Traceback" not in err, err
    return err


def test_the_image_encoder_in_int8_without_calibration_is_refused_in_one_line(checkpoint, fp32, data, tmp_path,
                                                                                capsys):
    out = tmp_path / "x"
    base = ["export", str(checkpoint), "--out", str(out)]
    assert main([*base, "--quantize", "int8", "--int8-graphs", "text_encoder", "image_encoder"]) == 2
    err = _one_line_error(capsys)
    assert "--int8-graphs image_encoder" in err and "add --calibration" in err
    with pytest.raises(MNERError, match="add --calibration"):
        quantize_export(fp32, tmp_path / "y", graphs=("image_encoder",))
    # calibration images where nothing is calibrated, or without --quantize
    assert main([*base, "--quantize", "int8", "--calibration", str(data["images"])]) == 2
    assert "add --quantize int8 --int8-graphs ... image_encoder" in _one_line_error(capsys)
    assert main([*base, "--calibration", str(data["images"])]) == 2
    assert "add --quantize int8" in _one_line_error(capsys)
    # a data file needs its image folder, and each of its images there
    graphs = ["--quantize", "int8", "--int8-graphs", "image_encoder"]
    assert main([*base, *graphs, "--calibration", str(data["train"])]) == 2
    assert "--calibration-images DIR" in _one_line_error(capsys)
    assert main([*base, *graphs, "--calibration", str(data["train"]), "--calibration-images", str(data["loose"])]) == 2
    assert "'train-00' is not in" in _one_line_error(capsys)
    assert main([*base, *graphs, "--calibration", str(data["held_out"] / "0.jpg")[:-4]]) == 2
    assert "no such file or folder" in _one_line_error(capsys)
    assert not out.exists() and not (tmp_path / "y").exists()
