"""The ONNX Runtime backend (issue 26, first part): ``mner export`` of tiny random MAF checkpoints
(text-only, caption view, pixels view), the exported graphs against PyTorch (emissions within
1e-4, the same entities), int8 export, the backend switch and its detection, and the refusals.

onnxruntime, onnx and onnxscript come with the ``onnx`` extra, which scripts/setup.sh installs: these
tests are part of the normal suite (a missing package fails them, it does not skip them)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import onnx
import pytest
import torch

from mner.backends import EXPORT_CONFIG, resolve_backend
from mner.backends.onnx_export import export_checkpoint
from mner.cli.main import main
from mner.errors import MNERError
from mner.models import MAFModel, load_model
from mner.models.checkpoint import CheckpointError
from mner.pipeline import Pipeline
from model_fixtures import encoders, maf_config, one_thread, random_image  # noqa: F401  (fixtures)

pytestmark = pytest.mark.usefixtures("one_thread")

#: Three tweets of different lengths: the graphs were traced on a batch of two, so a batch of three
#: (and of one) checks the dynamic batch axis; the third has no caption and no image.
TEXTS = ["Obama meets Merkel in Berlin today !", "RT @user : Paris at night", "Kai"]
CAPTIONS = ["two people shaking hands", "a city at night", None]
#: Longer than the 16 positions of the ``bert16`` text encoder: it runs in overlapping windows.
LONG = " ".join(["New York and Paris and London"] * 4)

KINDS = {
    # text-only on the 16-position BERT, so that LONG needs windows
    "text": dict(no_image=True, text="bert16"),
    "caption": dict(view="caption"),
    "pixels": dict(view="pixels"),
    # the caption also read as a second text segment: the exported text encoder takes the pair as it comes
    "segment": dict(view="caption", caption_segment=8),
}


@pytest.fixture(scope="module")
def checkpoints(encoders, tmp_path_factory) -> dict[str, Path]:
    """A saved tiny random MAF checkpoint of each kind (seed 0)."""
    root = tmp_path_factory.mktemp("onnx-ckpt")
    out = {}
    for kind, options in KINDS.items():
        torch.manual_seed(0)
        out[kind] = MAFModel(maf_config(encoders, **options)).save_pretrained(root / kind)
    return out


@pytest.fixture(scope="module")
def exports(checkpoints, tmp_path_factory) -> dict[str, Path]:
    """The fp32 export of each checkpoint."""
    root = tmp_path_factory.mktemp("onnx-export")
    return {kind: export_checkpoint(path, root / kind) for kind, path in checkpoints.items()}


@pytest.fixture(scope="module")
def int8_caption(checkpoints, tmp_path_factory) -> Path:
    return export_checkpoint(checkpoints["caption"], tmp_path_factory.mktemp("onnx-int8") / "caption",
                             quantize="int8")


def _inputs(kind: str, n: int = 3):
    texts = TEXTS[:n] + ([LONG] if kind == "text" else [])
    captions = (CAPTIONS[:n] + [None])[:len(texts)]
    images = [random_image(1), random_image(2), None, None][:len(texts)]
    return texts, captions, images


def _emissions(pipe: Pipeline, texts, captions, images) -> tuple[torch.Tensor, torch.Tensor]:
    examples = [pipe._example(i, t, c) for i, (t, c) in enumerate(zip(texts, captions))]
    batch = pipe.processor(examples, images=[im for im in images] if "pixels" in pipe.views else None)
    with torch.no_grad():
        out = pipe.model(batch.without_tags())
    return out.emissions.float(), out.mask


def _spans(results) -> list[list[tuple]]:
    return [[(e["text"], e["type"], e["start"], e["end"], e["token_start"], e["token_end"]) for e in ents]
            for ents in results]


# ============================================================================== the folder
def test_export_folder_records_backend_quantization_opset_and_fingerprint(checkpoints, exports):
    for kind, folder in exports.items():
        config = json.loads((folder / EXPORT_CONFIG).read_text())
        weights = (checkpoints[kind] / "model.safetensors").read_bytes()
        assert config["backend"] == "onnxruntime" and config["quantization"] is None
        assert config["opset"] == 18 and config["model_type"] == "maf"
        assert config["source"]["weights_sha256"] == hashlib.sha256(weights).hexdigest()
        expected = {"text_encoder", "head"} | ({"caption_encoder"} if kind in ("caption", "segment") else set()) | (
            {"image_encoder"} if kind == "pixels" else set())
        assert set(config["graphs"]) == expected
        for info in config["graphs"].values():
            graph = onnx.load(str(folder / info["file"]))
            onnx.checker.check_model(graph)
            # the batch axis of every input is symbolic: any batch size runs
            for value in graph.graph.input:
                assert value.type.tensor_type.shape.dim[0].dim_param, (info["file"], value.name)
            assert info["sha256"] == hashlib.sha256((folder / info["file"]).read_bytes()).hexdigest()
        assert (folder / "assets" / "text_encoder" / "tokenizer.json").is_file()
        assert not (folder / "model.safetensors").exists()  # the weights live in the graphs only


# ============================================================================== same as torch
@pytest.mark.parametrize("kind", list(KINDS))
def test_onnx_fp32_emissions_and_entities_equal_torch(kind, checkpoints, exports):
    torch_pipe = Pipeline.from_pretrained(checkpoints[kind], device="cpu")
    onnx_pipe = Pipeline.from_pretrained(exports[kind])
    assert onnx_pipe.backend == "onnxruntime" and torch_pipe.backend == "torch"
    for n in (3, 1):  # traced on two tweets: three and one must run as well
        texts, captions, images = _inputs(kind, n)
        em_torch, mask = _emissions(torch_pipe, texts, captions, images)
        em_onnx, mask_onnx = _emissions(onnx_pipe, texts, captions, images)
        assert torch.equal(mask, mask_onnx) and em_torch.shape == em_onnx.shape
        assert (em_torch - em_onnx)[mask].abs().max() < 1e-4
        expected = torch_pipe(texts, image=images, caption=captions)
        got = onnx_pipe(texts, image=images, caption=captions)
        assert sum(map(len, expected)) > 0  # the comparison is not between two empty lists
        assert _spans(got) == _spans(expected)
        assert [[e.keys() for e in ents] for ents in got] == [[e.keys() for e in ents] for ents in expected]
        for ents_t, ents_o in zip(expected, got):
            for a, b in zip(ents_t, ents_o):
                assert abs(a["confidence"] - b["confidence"]) <= 2e-4


def test_a_long_input_runs_in_windows_as_in_torch(checkpoints, exports):
    pipe_t = Pipeline.from_pretrained(checkpoints["text"], device="cpu")
    pipe_o = Pipeline.from_pretrained(exports["text"])
    words = pipe_o.processor([pipe_o._example(0, LONG, None)]).words
    assert words.input_ids.shape[1] > pipe_o.model.max_length  # the windows path, not one call
    em_t, mask = _emissions(pipe_t, [LONG], [None], [None])
    em_o, _ = _emissions(pipe_o, [LONG], [None], [None])
    assert (em_t - em_o)[mask].abs().max() < 1e-4
    expected = pipe_t(LONG)
    assert expected and _spans([pipe_o(LONG)]) == _spans([expected])


def test_the_caption_features_go_through_the_same_cache(exports):
    pipe = Pipeline.from_pretrained(exports["caption"])
    cache = pipe.processor.visual.cache
    pipe(TEXTS, caption=CAPTIONS)
    misses = cache.misses
    pipe(TEXTS, caption=CAPTIONS)
    assert cache.misses == misses and cache.hits >= 2  # the second call encodes no caption again


# ============================================================================== int8
def test_int8_export_quantizes_the_encoders_and_keeps_the_schema(checkpoints, int8_caption):
    config = json.loads((int8_caption / EXPORT_CONFIG).read_text())
    q = config["quantization"]
    assert q["weights"] == "int8" and q["per_channel"] is True and q["method"] == "dynamic" and q["static"] is None
    assert q["methods"] == {"text_encoder": "dynamic", "caption_encoder": "dynamic"}
    assert q["graphs"] == ["text_encoder", "caption_encoder"] and "head" in q["fp32_graphs"]
    for name in ("text_encoder", "caption_encoder"):
        ops = {node.op_type for node in onnx.load(str(int8_caption / config["graphs"][name]["file"])).graph.node}
        assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops, (name, sorted(ops))
    head_ops = {node.op_type for node in onnx.load(str(int8_caption / "head.onnx")).graph.node}
    assert "MatMulInteger" not in head_ops
    pipe_t = Pipeline.from_pretrained(checkpoints["caption"], device="cpu")
    pipe_q = Pipeline.from_pretrained(int8_caption)
    expected, got = pipe_t(TEXTS, caption=CAPTIONS), pipe_q(TEXTS, caption=CAPTIONS)
    assert len(got) == len(expected)
    for ents in got:
        for e in ents:
            assert set(e) == {"text", "type", "start", "end", "token_start", "token_end", "confidence"}
            assert e["type"] in {"PER", "LOC", "ORG", "MISC"} and 0.0 <= e["confidence"] <= 1.0
    em_t, mask = _emissions(pipe_t, TEXTS, CAPTIONS, [None] * 3)
    em_q, _ = _emissions(pipe_q, TEXTS, CAPTIONS, [None] * 3)
    diff = (em_t - em_q)[mask].abs().max()
    assert 0 < diff < 0.5 * em_t[mask].abs().max()  # quantized (not the fp32 graph), and still close


# ============================================================================== switch
def test_the_backend_is_detected_and_a_wrong_pairing_is_refused(checkpoints, exports):
    assert resolve_backend(exports["text"]) == "onnxruntime" and resolve_backend(checkpoints["text"]) == "torch"
    assert Pipeline.from_pretrained(exports["text"], backend="onnxruntime").info()["backend"] == "onnxruntime"
    with pytest.raises(MNERError, match="an ONNX export"):
        Pipeline.from_pretrained(exports["text"], backend="torch")
    with pytest.raises(MNERError, match="mner export"):
        Pipeline.from_pretrained(checkpoints["text"], backend="onnxruntime")
    with pytest.raises(MNERError, match="unknown backend"):
        Pipeline.from_pretrained(checkpoints["text"], backend="tensorrt")
    with pytest.raises(MNERError, match="runs on the CPU"):
        Pipeline.from_pretrained(exports["text"], device="cuda")
    with pytest.raises(CheckpointError, match="an ONNX export"):
        load_model(exports["text"])  # e.g. mner evaluate on an export: says what it is


def test_mner_predict_runs_an_export_like_its_checkpoint(checkpoints, exports, capsys):
    args = ["--text", TEXTS[0], "--caption", CAPTIONS[0]]
    assert main(["predict", str(checkpoints["caption"]), *args]) == 0
    expected = json.loads(capsys.readouterr().out)
    assert main(["predict", str(exports["caption"]), *args]) == 0
    got = json.loads(capsys.readouterr().out)
    assert main(["predict", str(exports["caption"]), "--backend", "onnxruntime", *args]) == 0
    assert json.loads(capsys.readouterr().out) == got
    assert expected["entities"] and _spans([got["entities"]]) == _spans([expected["entities"]])
    assert {k: v for k, v in got.items() if k != "entities"} == {k: v for k, v in expected.items() if k != "entities"}
    assert main(["predict", str(exports["caption"]), "--backend", "torch", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mner: error:") and "\n" not in err and "Traceback" not in err


# ============================================================================== refusals
def test_export_refuses_a_folder_that_is_not_an_export(checkpoints, tmp_path, capsys):
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert main(["export", str(checkpoints["text"]), "--out", str(other)]) == 2
    assert "not an mner export" in capsys.readouterr().err
    assert (other / "keep.txt").read_text() == "mine"
    assert main(["export", str(checkpoints["text"]), "--out", str(tmp_path / "x"), "--per-tensor"]) == 2
    assert "--quantize int8" in capsys.readouterr().err
    code = main(["export", str(checkpoints["text"]), "--out", str(tmp_path / "y"), "--quantize", "int8",
                 "--int8-graphs", "caption_encoder"])
    assert code == 2 and "no caption_encoder graph" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()


def test_int8_variants_are_made_from_the_fp32_export(checkpoints, exports, tmp_path):
    from mner.backends.onnx_export import quantize_export

    source = exports["caption"]
    out = quantize_export(source, tmp_path / "text-int8", per_channel=False, graphs=("text_encoder",))
    config = json.loads((out / EXPORT_CONFIG).read_text())
    q = config["quantization"]
    assert q["graphs"] == ["text_encoder"] and q["per_channel"] is False
    assert set(q["fp32_graphs"]) == {"caption_encoder", "head"}
    assert (out / "caption_encoder.onnx").read_bytes() == (source / "caption_encoder.onnx").read_bytes()
    text = out / "text_encoder.onnx"
    assert config["graphs"]["text_encoder"]["sha256"] == hashlib.sha256(text.read_bytes()).hexdigest()
    assert "MatMulInteger" in {node.op_type for node in onnx.load(str(text)).graph.node}
    assert json.loads((source / EXPORT_CONFIG).read_text())["quantization"] is None  # the source is untouched
    pipe_t = Pipeline.from_pretrained(checkpoints["caption"], device="cpu")
    pipe_q = Pipeline.from_pretrained(out)
    em_t, mask = _emissions(pipe_t, TEXTS, CAPTIONS, [None] * 3)
    em_q, _ = _emissions(pipe_q, TEXTS, CAPTIONS, [None] * 3)
    assert 0 < (em_t - em_q)[mask].abs().max() < 0.5 * em_t[mask].abs().max()
    with pytest.raises(MNERError, match="already quantized"):
        quantize_export(out, tmp_path / "again")
    with pytest.raises(MNERError, match="has no graph image_encoder"):
        quantize_export(source, tmp_path / "again", graphs=("image_encoder",))
    # the convolutional image encoder has nothing dynamic int8 covers: it is quantized statically, from
    # calibration images (tests/test_onnx_static_int8.py), and refused without them
    with pytest.raises(MNERError, match="add --calibration"):
        quantize_export(exports["pixels"], tmp_path / "conv-int8", graphs=("image_encoder",))
    assert not (tmp_path / "conv-int8").exists()


def test_mner_serve_serves_an_export(checkpoints, exports, capsys):
    from fastapi.testclient import TestClient

    from mner.serve.app import create_app

    expected = Pipeline.from_pretrained(checkpoints["caption"], device="cpu")(TEXTS[0], caption=CAPTIONS[0])
    with TestClient(create_app(exports["caption"])) as client:
        assert client.get("/ready").json() == {"status": "ready"}
        body = client.post("/predict", json={"text": TEXTS[0], "caption": CAPTIONS[0]}).json()
        info = client.get("/model").json()
    assert info["backend"] == "onnxruntime" and info["views"] == ["caption"]
    assert expected and _spans([body["entities"]]) == _spans([expected])
    # the command line: a wrong --backend or a GPU for an export is refused in one line, before listening
    for extra in (["--backend", "torch"], ["--device", "cuda"]):
        assert main(["serve", str(exports["caption"]), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("mner: error:") and "\n" not in err


def test_mner_tag_runs_an_export_with_the_checkpoints_entities(checkpoints, exports, tmp_path, capsys):
    from mner.batch import read_output

    rows = [{"id": f"r{i}", "text": text, "caption": caption} for i, (text, caption) in
            enumerate(zip(TEXTS * 3, CAPTIONS * 3))]
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    outs = {}
    for name, model in (("torch", checkpoints["caption"]), ("onnx", exports["caption"])):
        outs[name] = tmp_path / name
        args = ["tag", str(model), str(inputs), "--out", str(outs[name]), "--workers", "0", "--batch-size", "4",
                "--no-progress", "--format", "jsonl"]
        assert main(args) == 0
    capsys.readouterr()
    got, expected = read_output(outs["onnx"]), read_output(outs["torch"])
    keys = lambda out: [(r["id"], [(e["type"], e["start"], e["end"], e["text"]) for e in r["entities"]]) for r in out]
    assert sum(len(r["entities"]) for r in expected) > 0 and keys(got) == keys(expected)
    assert [set(r) for r in got] == [set(r) for r in expected]  # the same columns
    # MAF's match probability, from the exported head as from the checkpoint's forward
    assert [r["match_probability"] is None for r in got] == [r["match_probability"] is None for r in expected]
    pairs = [(g["match_probability"], e["match_probability"]) for g, e in zip(got, expected) if e["match_probability"] is not None]
    assert pairs and [g for g, _ in pairs] == pytest.approx([e for _, e in pairs], abs=2e-4)
    manifest = json.loads((outs["onnx"] / "_manifest.json").read_text())
    assert manifest["model"]["path"] == str(exports["caption"].resolve())
    assert main(["tag", str(exports["caption"]), str(inputs), "--out", str(tmp_path / "x"), "--backend", "torch"]) == 2
    assert "an ONNX export" in capsys.readouterr().err


def test_mner_evaluate_scores_an_export_as_its_checkpoint(checkpoints, exports, tmp_path, capsys):
    gold = tmp_path / "gold.txt"
    gold.write_text("Obama\tB-PER\nmeets\tO\nMerkel\tB-PER\nin\tO\nBerlin\tB-LOC\n\n"
                    "RT\tO\n@user\tO\n:\tO\nParis\tB-LOC\nat\tO\nnight\tO\n\n" + "".join(
                        f"{w}\t{t}\n" for w, t in zip(LONG.split(), ["B-LOC", "I-LOC", "O", "B-LOC", "O", "B-LOC"] * 4)))
    reports = {}
    for name, model in (("torch", checkpoints["text"]), ("onnx", exports["text"])):
        assert main(["evaluate", str(model), str(gold), "--format", "conll", "--json",
                     "--out", str(tmp_path / f"{name}.txt")]) == 0
        reports[name] = json.loads(capsys.readouterr().out)
    assert reports["onnx"]["f1"] == reports["torch"]["f1"]
    assert (tmp_path / "onnx.txt").read_text() == (tmp_path / "torch.txt").read_text()  # the same tags
    assert main(["evaluate", str(exports["text"]), str(gold), "--format", "conll", "--controls"]) == 2
    assert "ONNX export" in capsys.readouterr().err
