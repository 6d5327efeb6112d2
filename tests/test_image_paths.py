"""One image loader for every path (issue 23, item 4): the same image file gives the model the same
pixel tensor through the library (``Pipeline``, the processor), ``mner predict`` (``--image`` and
``--input``), the service (``/predict`` with base64 JSON and multipart, ``/fewshot/predict``), the
batch tagger (``mner tag``'s prepare step) and the few-shot pipeline (``FewShotPipeline``,
``mner predict FEWSHOT --support``).

Every file here is one that a plain ``Image.open(...).convert("RGB")`` gets wrong: a 16-bit PNG (it
would clip to white), a JPEG with an EXIF rotation (it would stay sideways), an RGBA PNG with
transparent pixels and a palette PNG with a transparent colour (they would keep the hidden colour
instead of white) and a CMYK JPEG. What each must look like is written out here with numpy, apart
from the loader; then every tensor the model's evaluation transform hands the image encoder is
recorded and compared, exactly, with that transform applied to the expected RGB image.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from mner.cli.main import main
from mner.data.example import Example
from mner.data.images import ImageError, ImageStore, load_image
from mner.encoders.transforms import EvalTransform
from mner.models import MAFModel
from mner.pipeline import Pipeline
from mner.serve import ServeConfig, create_app
from model_fixtures import encoders, maf_config, one_thread  # noqa: F401  (fixtures)

pytestmark = pytest.mark.usefixtures("one_thread")

W, H = 48, 40          # not square: a path that forgets the EXIF rotation crops another part
TEXT = "Merkel in Berlin"
NAMES = ("g16", "exif", "rgba", "palette", "cmyk")
FILES = {"g16": "g16.png", "exif": "exif.jpg", "rgba": "rgba.png", "palette": "palette.png", "cmyk": "cmyk.jpg"}


def _write_images(folder: Path) -> dict[str, np.ndarray]:
    """The five files in ``folder``; returns the RGB array (H, W, 3) each must become, computed
    without mner's loader."""
    rng = np.random.default_rng(23)
    expected: dict[str, np.ndarray] = {}
    # 16-bit grey: the full 0..65535 range; 8 bits are value / 257
    grey16 = rng.integers(0, 65536, (H, W), dtype=np.uint16)
    Image.fromarray(grey16).save(folder / FILES["g16"])
    assert Image.open(folder / FILES["g16"]).mode.startswith("I")
    expected["g16"] = np.repeat(np.round(grey16 / 257.0).astype(np.uint8)[..., None], 3, axis=2)
    # EXIF orientation 6: the camera was turned; shown rotated 90 degrees clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(folder / FILES["exif"], exif=exif,
                                                                           quality=95)
    with Image.open(folder / FILES["exif"]) as raw:
        expected["exif"] = np.asarray(raw.convert("RGB").transpose(Image.Transpose.ROTATE_270))
    assert expected["exif"].shape == (W, H, 3)
    # RGBA: a third of the pixels fully transparent (white), the others opaque (their colour)
    rgba = rng.integers(0, 256, (H, W, 4), dtype=np.uint8)
    rgba[..., 3] = np.where(rng.random((H, W)) < 1 / 3, 0, 255)
    Image.fromarray(rgba, "RGBA").save(folder / FILES["rgba"])
    expected["rgba"] = np.where(rgba[..., 3:] == 0, 255, rgba[..., :3]).astype(np.uint8)
    # palette: 16 colours, index 0 transparent (white)
    palette = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    index = rng.integers(0, 16, (H, W), dtype=np.uint8)
    p = Image.fromarray(index, "P")
    p.putpalette(palette.flatten().tolist())
    p.save(folder / FILES["palette"], transparency=0)
    expected["palette"] = np.where(index[..., None] == 0, 255, palette[index]).astype(np.uint8)
    # CMYK JPEG: PIL's own CMYK -> RGB conversion of the decoded file
    cmyk = rng.integers(0, 256, (H, W, 4), dtype=np.uint8)
    Image.fromarray(cmyk, "CMYK").save(folder / FILES["cmyk"], quality=95)
    with Image.open(folder / FILES["cmyk"]) as raw:
        assert raw.mode == "CMYK"
        expected["cmyk"] = np.asarray(raw.convert("RGB"))
    return expected


@pytest.fixture(scope="module")
def setup(encoders, tmp_path_factory):
    from fewshot_fixtures import fewshot_model

    root = tmp_path_factory.mktemp("image_paths")
    folder = root / "images"
    folder.mkdir()
    expected = _write_images(folder)
    torch.manual_seed(0)
    maf = MAFModel(maf_config(encoders, view="pixels")).eval()
    maf.save_pretrained(root / "maf")
    fs = fewshot_model(encoders["bert"], "proto-maf", visual_view="pixels",
                       image_encoder={"name": str(encoders["resnet"]), "pretrained": False, "image_size": 32}).eval()
    fs.save_pretrained(root / "fewshot")
    pipe = Pipeline(maf)
    transform = pipe.processor.visual._eval_transform
    assert isinstance(transform, EvalTransform)
    assert fs.processor().tagging.visual._eval_transform == transform
    return {"root": root, "folder": folder, "expected": expected, "pipe": pipe, "fewshot": fs,
            "transform": transform}


@pytest.fixture()
def seen(monkeypatch):
    """Every tensor the evaluation transform hands an image encoder, in order."""
    tensors: list[torch.Tensor] = []
    original = EvalTransform.__call__

    def record(self, image):
        out = original(self, image)
        tensors.append(out.clone())
        return out

    monkeypatch.setattr(EvalTransform, "__call__", record)
    return tensors


def _want(setup, name: str) -> torch.Tensor:
    """What the encoder must get for file ``name``: the model's transform of the expected RGB image."""
    return _transform(setup["transform"], Image.fromarray(setup["expected"][name], "RGB"))


def _transform(transform: EvalTransform, image: Image.Image) -> torch.Tensor:
    from mner.data.images import resize_shorter
    from mner.encoders.transforms import to_tensor

    # EvalTransform's own steps, spelt out (the recorder patches __call__)
    image = resize_shorter(image, max(transform.resize_to, transform.image_size), transform.interpolation)
    left, top = (image.size[0] - transform.image_size) // 2, (image.size[1] - transform.image_size) // 2
    image = image.crop((left, top, left + transform.image_size, top + transform.image_size))
    return to_tensor(image, transform.mean, transform.std)


def _same(seen: list[torch.Tensor], want: list[torch.Tensor], path: str) -> None:
    assert len(seen) == len(want), (path, len(seen), len(want))
    for k, (got, exp) in enumerate(zip(seen, want)):
        assert torch.equal(got, exp), f"{path}: tensor {k} differs (max {float((got - exp).abs().max()):.4f})"
    seen.clear()


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


# ============================================================================ the loader itself
@pytest.mark.parametrize("name", NAMES)
def test_the_loader_gives_the_expected_rgb_from_a_file_and_from_its_bytes(setup, name):
    path = setup["folder"] / FILES[name]
    for source in (path, str(path), path.read_bytes()):
        img = load_image(source)
        assert img.mode == "RGB"
        assert np.array_equal(np.asarray(img), setup["expected"][name]), (name, type(source).__name__)
    assert np.array_equal(np.asarray(ImageStore(setup["folder"]).open(name)), setup["expected"][name])


def test_the_loader_refuses_with_the_same_kinds_from_bytes_and_files(tmp_path):
    good = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(good, "JPEG", quality=95)
    cases = {"empty": b"", "corrupt": b"this is not an image at all" * 10, "truncated": good.getvalue()[:300]}
    for kind, raw in cases.items():
        (tmp_path / f"{kind}.jpg").write_bytes(raw)
        for source in (raw, tmp_path / f"{kind}.jpg"):
            with pytest.raises(ImageError) as info:
                load_image(source, "tweet-1")
            assert info.value.kind == kind and "tweet-1" in str(info.value)
    with pytest.raises(ImageError) as info:
        load_image(good.getvalue(), max_pixels=64 * 63)
    assert info.value.kind == "too-large" and info.value.size == (64, 64)
    with pytest.raises(ImageError) as info:
        load_image(good.getvalue(), max_bytes=100)
    assert info.value.kind == "too-many-bytes"
    with pytest.raises(ImageError) as info:
        load_image(good.getvalue(), formats=("PNG",))
    assert info.value.kind == "unsupported-format" and info.value.format == "JPEG"
    with pytest.raises(ImageError) as info:
        load_image(tmp_path / "nope.jpg")
    assert info.value.kind == "missing"


# ============================================================================ every path
def test_library_pipeline_and_processor(setup, seen):
    pipe = setup["pipe"]
    for name in NAMES:
        path = setup["folder"] / FILES[name]
        pipe(TEXT, image=str(path))                  # a path given to the pipeline
        pipe(TEXT, image=path)
        # the processor of evaluation and training: Example.image resolved by the image store
        pipe.processor([Example("1", TEXT.split(), image=str(path))])
        _same(seen, [_want(setup, name)] * 3, f"library {name}")


def test_cli_predict_text_and_input(setup, seen, tmp_path, capsys):
    ckpt = setup["root"] / "maf"
    for name in NAMES:
        assert main(["predict", str(ckpt), "--text", TEXT, "--image", str(setup["folder"] / FILES[name])]) == 0
        _same(seen, [_want(setup, name)], f"mner predict --image {name}")
    inputs = setup["folder"] / "inputs.jsonl"
    inputs.write_text("".join(json.dumps({"text": TEXT, "image": FILES[n]}) + "\n" for n in NAMES), encoding="utf-8")
    assert main(["predict", str(ckpt), "--input", str(inputs), "--batch-size", "8"]) == 0
    _same(seen, [_want(setup, n) for n in NAMES], "mner predict --input")
    capsys.readouterr()


def test_service_json_and_multipart(setup, seen):
    with TestClient(create_app(pipeline=setup["pipe"], config=ServeConfig(max_wait_ms=1))) as client:
        seen.clear()  # the start-up warm-up's own image
        for name in NAMES:
            path = setup["folder"] / FILES[name]
            r = client.post("/predict", json={"text": TEXT, "image": _b64(path)})
            assert r.status_code == 200, r.text
            r = client.post("/predict", data={"text": TEXT}, files={"image": (FILES[name], path.read_bytes())})
            assert r.status_code == 200, r.text
            _same(seen, [_want(setup, name)] * 2, f"service {name}")
        # and a batch of all five, in order
        r = client.post("/predict", json={"items": [{"text": TEXT, "image": _b64(setup["folder"] / FILES[n])}
                                                    for n in NAMES]})
        assert r.status_code == 200 and r.json()["errors"] == 0, r.text
        _same(seen, [_want(setup, n) for n in NAMES], "service batch")


def test_batch_tagger(setup, seen, tmp_path):
    from mner.batch.job import TagOptions
    from mner.batch.run import run_tag

    inputs = tmp_path / "rows.jsonl"
    inputs.write_text("".join(json.dumps({"id": n, "text": TEXT, "image": str(setup["folder"] / FILES[n])}) + "\n"
                              for n in NAMES), encoding="utf-8")
    summary = run_tag(TagOptions(checkpoint=setup["root"] / "maf", inputs=[inputs], out=tmp_path / "out",
                                 format="jsonl", batch_size=8, workers=0, progress=False, image_root=setup["folder"]),
                      log=lambda _: None)
    assert summary["tagged"] == len(NAMES) and summary["failed"] == 0
    _same(seen, [_want(setup, n) for n in NAMES], "mner tag")


def test_fewshot_pipeline_cli_and_service(setup, seen, tmp_path, capsys):
    from mner.fewshot.pipeline import FewShotPipeline

    fs = setup["fewshot"]
    for name in NAMES:
        path = setup["folder"] / FILES[name]
        support = [Example("s0", ("Pad", "thai", "tonight"), ("B-DISH", "I-DISH", "O"), image=str(path))]
        FewShotPipeline(fs, support)("Green curry tonight", image=str(path))
        _same(seen, [_want(setup, name)] * 2, f"FewShotPipeline {name}")   # the support's image, the query's
    # mner predict FEWSHOT --support: support images inside --image-dir, the query's given on the command line
    support_file = tmp_path / "dish.jsonl"
    support_file.write_text(json.dumps({"tokens": ["Pad", "thai", "tonight"], "tags": ["B-DISH", "I-DISH", "O"],
                                        "image": FILES["exif"]}) + "\n", encoding="utf-8")
    for name in NAMES:
        code = main(["predict", str(setup["root"] / "fewshot"), "--support", str(support_file), "--image-dir",
                     str(setup["folder"]), "--text", "Green curry tonight", "--image", FILES[name]])
        assert code == 0
        _same(seen, [_want(setup, "exif"), _want(setup, name)], f"mner predict FEWSHOT {name}")
    capsys.readouterr()
    # the service's few-shot route: the support's image and the tweet's, as bytes
    with TestClient(create_app(pipeline=setup["pipe"], fewshot_model=fs, config=ServeConfig(max_wait_ms=1))) as client:
        seen.clear()  # the start-up warm-up's own image
        for name in NAMES:
            b64 = _b64(setup["folder"] / FILES[name])
            r = client.post("/fewshot/predict", json={
                "support": [{"text": "Pad thai tonight", "entities": [{"start": 0, "end": 8, "type": "DISH"}],
                             "image": b64}],
                "text": "Green curry tonight", "image": b64})
            assert r.status_code == 200, r.text
            _same(seen, [_want(setup, name)] * 2, f"service /fewshot/predict {name}")
