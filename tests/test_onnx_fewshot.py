"""Few-shot models on the onnxruntime backend (issue 26, item 1): ``mner export`` writes a few-shot
checkpoint's per-tweet encoder as ONNX graphs and keeps its episode step in PyTorch
(:class:`~mner.backends.onnx_runtime.OnnxEpisodicTagger`); the support set is encoded once by the
graphs. On tiny random models of every few-shot type: the same tags as PyTorch through the
pipeline, the episode evaluation and the command line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fewshot_fixtures import FEWSHOT_VARIANTS, episode_pair, fewshot_model
from mner.backends import EXPORT_CONFIG
from mner.backends.onnx_export import ENCODER_MODULES, HEAD_WEIGHTS, export_checkpoint
from mner.backends.onnx_runtime import OnnxEpisodicTagger, OnnxTagger, load_exported
from mner.cli.main import main
from mner.errors import MNERError
from mner.fewshot.evaluation import predict_episodes
from mner.fewshot.pipeline import FewShotPipeline
from mner.models import load_model
from mner.models.checkpoint import CheckpointError, load_state_dict
from mner.pipeline import Pipeline
from model_fixtures import one_thread  # noqa: F401  (fixture)
from tiny_models import make_tiny_bert

pytestmark = pytest.mark.usefixtures("one_thread")

#: every registered few-shot type, and MOUSING's variants whose per-tweet computation differs (no
#: image: its own frozen text model; w/o MCIS: one view). Random intervention is refused (below).
VARIANTS = ["protobert", "nnshot", "proto-maf", "mousing", "mousing-no-image", "mousing-no-mcis"]
QUERIES = ["Obama meets Merkel in Paris 😀", "apple and google at the olympics", "Zoë in São Paulo", "x"]


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("fs-onnx-bert") / "bert", max_position_embeddings=64)


@pytest.fixture(scope="module")
def pairs(bert, tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """(checkpoint, fp32 export) of a tiny random model of each variant (seed 0)."""
    root = tmp_path_factory.mktemp("fs-onnx")
    out = {}
    for variant in VARIANTS:
        torch.manual_seed(0)
        ckpt = fewshot_model(bert, variant).save_pretrained(root / variant)
        out[variant] = (ckpt, export_checkpoint(ckpt, root / f"{variant}-onnx"))
    return out


def _support():
    return [ex for ep in episode_pair() for ex in ep.support]


def _entities(results):
    return [[(e["text"], e["type"], e["start"], e["end"]) for e in ents] for ents in results]


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_export_tags_as_the_checkpoint(variant, pairs):
    ckpt, exported = pairs[variant]
    torch_pipe = FewShotPipeline(load_model(ckpt), _support())
    onnx_pipe = Pipeline.from_pretrained(exported, support=_support())     # detected: an export folder
    assert isinstance(onnx_pipe, FewShotPipeline) and onnx_pipe.backend == "onnxruntime"
    assert isinstance(onnx_pipe.model, OnnxEpisodicTagger) and onnx_pipe.types == torch_pipe.types
    captions = ["a man and a woman in a city", None, "a street", None]
    # the representations of each tweet: the graphs' against the model's own encode
    batch = torch_pipe.processor.tagging([torch_pipe._example(i, t, c) for i, (t, c) in
                                          enumerate(zip(QUERIES, captions))])
    with torch.no_grad():
        want = torch_pipe.model.encode(batch, False)
    got = onnx_pipe.model.encode(onnx_pipe.processor.tagging([onnx_pipe._example(i, t, c) for i, (t, c) in
                                                             enumerate(zip(QUERIES, captions))]))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert (g is None) == (w is None)
        if w is not None:
            torch.testing.assert_close(g, w, atol=1e-4, rtol=1e-4)
    # the entities (text, type, code-point offsets) through the pipeline, the support encoded once
    results = {name: [pipe(t, caption=c) for t, c in zip(QUERIES, captions)]
               for name, pipe in (("torch", torch_pipe), ("onnx", onnx_pipe))}
    assert _entities(results["onnx"]) == _entities(results["torch"])
    conf = {name: [e["confidence"] for ents in res for e in ents] for name, res in results.items()}
    assert conf["onnx"] == pytest.approx(conf["torch"], abs=1e-3)
    assert onnx_pipe._support_reps is not None


@pytest.mark.parametrize("variant", ["nnshot", "mousing"])
def test_episodes_decode_alike_and_decoding_options_act(variant, pairs):
    ckpt, exported = pairs[variant]
    model, onnx = load_model(ckpt), load_exported(exported)
    episodes = episode_pair()
    want = predict_episodes(model, episodes, model.processor()).tags
    assert predict_episodes(onnx, episodes, onnx.processor()).tags == want
    onnx.config.o_bias = 1e6   # the model's own config: O wins everywhere
    assert all(t == "O" for ep in predict_episodes(onnx, episodes, onnx.processor()).tags for q in ep for t in q)


def test_the_folder_holds_the_encoder_graphs_and_the_episode_steps_weights(pairs):
    ckpt, exported = pairs["mousing"]
    exp = json.loads((exported / EXPORT_CONFIG).read_text())
    assert exp["task"] == "episodic" and exp["labels"] is None and exp["model_type"] == "mousing"
    assert set(exp["graphs"]) == {"text_encoder", "caption_encoder", "encoder"}
    assert exp["encoding"] == {"outputs": 3, "none": [2], "max_length": exp["encoding"]["max_length"]}
    head = load_state_dict(exported / HEAD_WEIGHTS)
    full = load_model(ckpt).state_dict()
    assert head and all(k.split(".", 1)[0] not in ENCODER_MODULES for k in head)
    assert set(head) == {k for k in full if k.split(".", 1)[0] not in ENCODER_MODULES}
    assert exp["source"]["weights_sha256"]
    with pytest.raises(CheckpointError, match="few-shot model"):
        OnnxTagger.from_pretrained(exported)
    with pytest.raises(MNERError, match="inference only"):
        load_exported(exported).encode(None, train=True)


def test_random_intervention_is_refused_in_one_line(bert, tmp_path, capsys):
    assert "mousing-random" in FEWSHOT_VARIANTS
    ckpt = fewshot_model(bert, "mousing-random").save_pretrained(tmp_path / "random")
    capsys.readouterr()
    assert main(["export", str(ckpt), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "intervention.mode random" in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_int8_export_of_a_fewshot_model_runs(pairs, tmp_path):
    ckpt, _ = pairs["protobert"]
    q = export_checkpoint(ckpt, tmp_path / "q", quantize="int8")
    exp = json.loads((q / EXPORT_CONFIG).read_text())
    assert exp["quantization"]["graphs"] == ["text_encoder"] and "encoder" in exp["quantization"]["fp32_graphs"]
    pipe = Pipeline.from_pretrained(q, support=_support())
    assert [isinstance(r, list) for r in (pipe(t) for t in QUERIES)] == [True] * len(QUERIES)


def test_mner_predict_and_tag_run_an_export_with_a_support_set(pairs, tmp_path, capsys):
    ckpt, exported = pairs["protobert"]
    support = tmp_path / "support.jsonl"
    support.write_text("".join(json.dumps({"tokens": list(ex.tokens), "tags": list(ex.tags)}) + "\n"
                               for ex in _support()))
    printed = {}
    for name, folder in (("torch", ckpt), ("onnx", exported)):
        assert main(["predict", str(folder), "--support", str(support), "--text", QUERIES[0]]) == 0
        printed[name] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["entities"]
    assert [(e["text"], e["type"], e["start"], e["end"]) for e in printed["onnx"]] == \
        [(e["text"], e["type"], e["start"], e["end"]) for e in printed["torch"]]
    # without --support: one line saying to pass it
    assert main(["predict", str(exported), "--text", QUERIES[0]]) == 2
    assert "--support" in capsys.readouterr().err
    # the torch backend on an export, the onnxruntime backend on a checkpoint: one line each
    assert main(["predict", str(exported), "--support", str(support), "--text", "x", "--backend", "torch"]) == 2
    assert main(["predict", str(ckpt), "--support", str(support), "--text", "x", "--backend", "onnxruntime"]) == 2
    assert "not an ONNX export" in capsys.readouterr().err
    # mner tag: the same rows as the checkpoint's
    from mner.batch import read_output

    rows = tmp_path / "in.jsonl"
    rows.write_text("".join(json.dumps({"id": f"r{i}", "text": t}) + "\n" for i, t in enumerate(QUERIES * 2)))
    outs = {}
    for name, folder in (("torch", ckpt), ("onnx", exported)):
        outs[name] = tmp_path / f"tag-{name}"
        assert main(["tag", str(folder), "--support", str(support), str(rows), "--out", str(outs[name]),
                     "--workers", "0", "--batch-size", "3", "--no-progress", "--format", "jsonl"]) == 0
    capsys.readouterr()
    keys = lambda out: [(r["id"], [(e["type"], e["start"], e["end"]) for e in r["entities"]]) for r in out]
    assert keys(read_output(outs["onnx"])) == keys(read_output(outs["torch"]))


def test_mner_serve_serves_a_fewshot_export_with_its_support_set(pairs, tmp_path):
    from fastapi.testclient import TestClient

    from mner.serve.app import create_app

    ckpt, exported = pairs["nnshot"]
    support = tmp_path / "support.jsonl"
    support.write_text("".join(json.dumps({"tokens": list(ex.tokens), "tags": list(ex.tags)}) + "\n"
                               for ex in _support()))
    expected = FewShotPipeline(load_model(ckpt), _support())(QUERIES[1])
    with TestClient(create_app(exported, support=support)) as client:
        assert client.get("/ready").json() == {"status": "ready"}
        body = client.post("/predict", json={"text": QUERIES[1]}).json()
        info = client.get("/model").json()
    assert info["backend"] == "onnxruntime" and info["task"] == "episodic"
    assert _entities([body["entities"]]) == _entities([expected])
