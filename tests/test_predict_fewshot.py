"""Few-shot checkpoints through the plain commands (issue 23): ``mner predict FEWSHOT --support S``
tags the support's types exactly as ``mner fewshot predict`` does (same lines); without ``--support``,
and with ``--support`` for a model of fixed types, one line and exit code 2; ``mner tag`` and
``mner serve`` refuse a few-shot checkpoint in one line that says what to use instead.

NNShot, untrained, tags a query that repeats support words with the support's tags (each word's
nearest support word is itself), so the entities are known in advance."""

from __future__ import annotations

import json

import pytest

from fewshot_fixtures import fewshot_model, tiny_bert  # noqa: F401  (fixture)
from model_fixtures import encoders, maf_config, one_thread  # noqa: F401  (fixtures)
from mner.cli.main import main
from mner.data.example import Example
from mner.data.formats import write_jsonl

pytestmark = pytest.mark.usefixtures("one_thread")

CAPTION = "a bowl of food on a table"
SUPPORT = [("i love ramen", "ramen"), ("pad thai for lunch", "pad thai"), ("🍜 tacos with anna", "tacos"),
           ("best sushi in town", "sushi")]


def _support() -> list[Example]:
    out = []
    for i, (text, dish) in enumerate(SUPPORT):
        words, d = text.split(), dish.split()
        start = next(j for j in range(len(words)) if words[j:j + len(d)] == d)
        tags = ["O"] * len(words)
        tags[start:start + len(d)] = ["B-DISH"] + ["I-DISH"] * (len(d) - 1)
        out.append(Example(f"s{i}", words, tags, caption=CAPTION))
    return out


@pytest.fixture(scope="module")
def files(tiny_bert, tmp_path_factory):
    root = tmp_path_factory.mktemp("predict_fewshot")
    fewshot_model(tiny_bert, "nnshot").save_pretrained(root / "nnshot")
    write_jsonl(_support(), root / "dish.jsonl")
    inputs = root / "in.jsonl"
    inputs.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in [
        {"id": "a", "text": "🍜 tacos  with anna", "caption": CAPTION},   # offsets count code points
        {"id": "b", "text": "pad thai for lunch", "caption": CAPTION}]), encoding="utf-8")
    return {"root": root, "ckpt": root / "nnshot", "support": root / "dish.jsonl", "inputs": inputs}


def run(argv, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("mner: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_predict_with_a_support_set_tags_its_types_as_fewshot_predict_does(files, capsys):
    text = ["--text", "i love ramen", "--caption", CAPTION]
    code, out, err = run(["predict", files["ckpt"], "--support", files["support"], *text], capsys)
    assert code == 0, err
    record = json.loads(out)
    assert [(e["text"], e["type"], e["start"], e["end"]) for e in record["entities"]] == [("ramen", "DISH", 7, 12)]
    assert "types DISH" in err
    assert run(["fewshot", "predict", files["ckpt"], "--support", files["support"], *text], capsys)[1] == out

    code, out, err = run(["predict", files["ckpt"], "--support", files["support"], "--input", files["inputs"]], capsys)
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["id"] for r in records] == ["a", "b"]
    got = [[(e["text"], e["type"], e["start"], e["end"]) for e in r["entities"]] for r in records]
    assert got == [[("tacos", "DISH", 2, 7)], [("pad thai", "DISH", 0, 8)]]
    assert records[0]["text"][2:7] == "tacos"   # code points into the text as given (the emoji is one)
    same = run(["fewshot", "predict", files["ckpt"], "--support", files["support"], "--input", files["inputs"]], capsys)
    assert same[0] == 0 and same[1] == out

    # the decoding options of mner fewshot predict reach the model: an O bias of 100 leaves no entity
    code, out, err = run(["predict", files["ckpt"], "--support", files["support"], *text, "--o-bias", "100"], capsys)
    assert code == 0 and json.loads(out)["entities"] == []

    written = files["root"] / "out.jsonl"
    code, out, err = run(["predict", files["ckpt"], "--support", files["support"], "--input", files["inputs"],
                          "--output", written], capsys)
    assert code == 0 and out == "" and written.read_text(encoding="utf-8") == same[1]


def test_predict_of_a_fewshot_checkpoint_without_support_says_to_pass_it(files, capsys):
    code, out, err = run(["predict", files["ckpt"], "--text", "Pizza with the Lakers"], capsys)
    assert code == 2 and out == ""
    line = one_line_error(err)
    assert "--support FILE" in line and "'nnshot'" in line and str(files["ckpt"]) in line


def test_support_with_a_model_of_fixed_types_is_refused(encoders, files, capsys):
    from mner.models import MAFModel

    maf = files["root"] / "maf"
    MAFModel(maf_config(encoders, view="caption")).save_pretrained(maf)
    code, out, err = run(["predict", maf, "--support", files["support"], "--text", "Obama in Paris"], capsys)
    assert code == 2 and out == ""
    line = one_line_error(err)
    assert f"--support {files['support']}" in line and "'maf'" in line and "fixed set of entity types" in line
    code, out, err = run(["predict", maf, "--o-bias", "2", "--text", "Obama in Paris"], capsys)
    assert code == 2 and "--o-bias" in one_line_error(err) and "few-shot" in one_line_error(err)
    # and without --support it still tags as before
    code, out, err = run(["predict", maf, "--text", "Obama in Paris", "--caption", "a man"], capsys)
    assert code == 0 and "entities" in json.loads(out)


def test_tag_refuses_a_fewshot_checkpoint_in_one_line(files, capsys):
    out_dir = files["root"] / "tagged"
    code, out, err = run(["tag", files["ckpt"], files["inputs"], "--out", out_dir], capsys)
    assert code == 2 and out == ""
    line = one_line_error(err)
    assert "not available yet" in line
    assert f"mner predict {files['ckpt']} --support S.jsonl --input FILE.jsonl" in line
    assert not out_dir.exists()   # refused before anything was read or written


def test_serve_refuses_a_fewshot_checkpoint_in_one_line(files, capsys):
    code, out, err = run(["serve", files["ckpt"], "--port", "1"], capsys)
    assert code == 2
    line = one_line_error(err)
    assert f"--fewshot {files['ckpt']}" in line and "--support" in line
