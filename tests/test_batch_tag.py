"""``mner tag`` with the local engine: the same entities as the pipeline, every input format,
rows that cannot be tagged (errors.jsonl, counts, policies, --strict), refusing a changed model,
inputs or options under an existing output folder, resuming after a kill, the CLI; worker processes
that each hold a model replica (CPU) or only decode images (the GPU design)."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from batch_fixtures import make_model, output_and_errors, sample_rows, tag_options, write_inputs
from model_fixtures import one_thread, random_image, sample_paths, subprocess_env  # noqa: F401  (fixtures)

from mner.batch import read_output, run_tag, tag_batch
from mner.batch.sources import Columns, expand_inputs, plan_shards, read_shard
from mner.cli import main
from mner.errors import MNERError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("batch")
    model = make_model(tmp)
    rows = sample_rows()
    files = write_inputs(tmp / "inputs", rows)
    return {"tmp": tmp, "model": model, "rows": rows, "files": files}


def _run(argv: list) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def _expected(model: Path, rows: list[dict], batch_size: int, shard_size: int, order: str = "length") -> list[dict]:
    """What the pipeline (and the service's match probability) gives for ``rows``, run in the
    windows mner tag cuts (``batch_size`` rows of a ``shard_size`` shard; ``order="length"``: the
    shard's rows by their number of sub-tokens, ties in file order), rows whose image is missing
    left out, in file order."""
    from mner.pipeline import Pipeline
    from mner.explain.predictor import InferenceItem, Predictor

    from mner.data.tokenize import tokenize_text

    images = sample_paths()["images"]
    pipe = Pipeline.from_pretrained(model, device="cpu")
    subwords = pipe.model.text_encoder.tokenizer.tokenizer
    predictor = Predictor(pipe)
    out = []
    for s in range(0, len(rows), shard_size):
        shard = list(enumerate(rows[s:s + shard_size], start=s))
        if order == "length":  # sub-tokens under the model's tokenizer, [CLS] and [SEP] included
            shard.sort(key=lambda ir: len(subwords(tokenize_text(ir[1]["text"])[0], is_split_into_words=True)["input_ids"]))
        for w in range(0, len(shard), batch_size):
            window = [(i, r) for i, r in shard[w:w + batch_size] if (images / r["image"]).is_file()]
            if not window:
                continue
            items = [InferenceItem(r["text"], image=Image.open(images / r["image"]).convert("RGB"), caption=r["caption"])
                     for _, r in window]
            for (i, r), res in zip(window, predictor(items)):
                ents = [{k: e[k] for k in ("text", "type", "start", "end", "confidence")} for e in res["entities"]]
                out.append({"id": r["id"], "row": i + 1, "entities": ents, "match_probability": res["match_probability"]})
    return sorted(out, key=lambda r: r["row"])


# ------------------------------------------------------------------------------ local engine
def test_local_engine_gives_the_pipelines_entities_row_by_row(setup):
    out = setup["tmp"] / "local"
    summary = run_tag(tag_options(setup["model"], setup["files"]["jsonl"], out))
    rows, errors = output_and_errors(out)
    expected = _expected(setup["model"], setup["rows"], batch_size=4, shard_size=5)
    assert [{k: r[k] for k in ("id", "row", "entities", "match_probability")} for r in rows] == expected
    assert sum(len(r["entities"]) for r in rows) > 10 and len({r["match_probability"] for r in rows}) > 5
    assert all(r["file"] == str(setup["files"]["jsonl"].resolve()) and r["image_problem"] is None for r in rows)
    # the sample's tweet s204 has no image file: not tagged, listed with its line and why
    assert [(e["id"], e["row"], e["line"], e["reason"]) for e in errors] == [("s204", 16, 16, "image-missing")]
    assert summary["read"] == 22 and summary["tagged"] == 21 and summary["failed"] == 1
    assert summary["failed_by_reason"] == {"image-missing": 1} and summary["shards"] == 5
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["counts"]["tagged"] == 21
    assert manifest["inputs"][0]["rows"] == 22 and manifest["inputs"][0]["size"] == setup["files"]["jsonl"].stat().st_size
    assert manifest["model"]["sha256"] and manifest["mner_version"]
    # tagging in a worker process (its own copy of the model, on as many threads) gives the same bytes
    out2 = setup["tmp"] / "local-workers"
    run_tag(tag_options(setup["model"], setup["files"]["jsonl"], out2, workers=1, threads=1))
    assert read_output(out2) == rows


def test_windows_in_input_order_write_the_same_rows(setup):
    """--window-order input cuts consecutive rows (the pipeline run window by window agrees to the
    last digit); the length order writes the same rows in the same file order."""
    out = setup["tmp"] / "input-order"
    run_tag(tag_options(setup["model"], setup["files"]["jsonl"], out, window_order="input"))
    rows, errors = output_and_errors(out)
    expected = _expected(setup["model"], setup["rows"], batch_size=4, shard_size=5, order="input")
    assert [{k: r[k] for k in ("id", "row", "entities", "match_probability")} for r in rows] == expected
    run_tag(tag_options(setup["model"], setup["files"]["jsonl"], setup["tmp"] / "length-order"))
    by_length, errors_by_length = output_and_errors(setup["tmp"] / "length-order")
    assert [r["row"] for r in rows] == sorted(r["row"] for r in rows) == [r["row"] for r in by_length]
    assert _entity_keys(rows) == _entity_keys(by_length) and errors == errors_by_length
    for a, b in zip(rows, by_length):
        assert [e["confidence"] for e in a["entities"]] == pytest.approx([e["confidence"] for e in b["entities"]],
                                                                          abs=2e-4)


def test_length_windows_group_rows_of_similar_length(setup):
    from mner.batch.job import window_plan, windows
    from mner.batch.prepare import row_lengths
    from mner.batch.sources import Record
    from mner.data.example import Example
    from mner.pipeline import Pipeline

    records = [Record(i + 1, i + 1, "") for i in range(7)]
    got = [[r.row for r in w] for w in windows(records, 3, "length", [30, 5, 18, 5, 40, 12, 2])]
    assert got == [[7, 2, 4], [6, 3, 1], [5]]                        # shortest first, ties in file order
    assert [[r.row for r in w] for w in windows(records, 3, "input")] == [[1, 2, 3], [4, 5, 6], [7]]
    assert windows([], 3, "length", []) == [[]]
    with pytest.raises(MNERError, match="window order"):
        windows(records, 3, "random")

    lines = ['{"text": "Paris"}', '{"text": "New York at night"}', 'not json', '{"text": ""}',
             '{"text": "zzzqqq xkcd", "id": "%s"}' % ("x" * 80)]
    jsonl = [Record(i + 1, i + 1, line) for i, line in enumerate(lines)]
    chars = row_lengths("jsonl", jsonl, Columns())
    assert chars == [6, 18, 0, 0, 12]                                # the words' characters; 0: cannot be tagged
    pipe = Pipeline.from_pretrained(setup["model"], device="cpu")
    subwords = pipe.model.text_encoder.tokenizer.tokenizer
    assert window_plan(tag_options(setup["model"], [], Path(".")), pipe).tokenizer is subwords
    counted = row_lengths("jsonl", jsonl, Columns(), subwords)
    expected = [len(subwords(w, is_split_into_words=True)["input_ids"]) for w in
                (["Paris"], ["New", "York", "at", "night"], ["zzzqqq", "xkcd"])]
    assert [counted[i] for i in (0, 1, 4)] == expected and counted[2] == counted[3] == 0
    assert expected[2] > 4                                           # rare words: more sub-tokens than words
    cols = Columns(text="body", tokens="words")
    table = [Record(1, None, {"body": "ab cd", "id": "x" * 50}), Record(2, None, {"words": ["ab", "c"]})]
    assert row_lengths("parquet", table, cols) == [6, 5]
    conll = [Record(1, 3, Example("e", ("New", "York")))]
    assert row_lengths("text", conll, Columns()) == [9]


def _entity_keys(rows: list[dict]) -> list[tuple]:
    return [(r["id"], r["file"], r["row"], r["image_problem"], r["match_probability"] is None,
             [(e["type"], e["start"], e["end"], e["text"]) for e in r["entities"]]) for r in rows]


def test_replica_workers_write_the_rows_of_one_process(setup, tmp_path):
    """--workers 2 on the CPU: two processes, each with its own model, tag the windows; the rows,
    errors and counts are those of --workers 0 (the confidences to the last digit with the same
    torch threads, within rounding with others)."""
    from mner.batch.job import cpu_cores

    rows = [dict(r, id=f"{r['id']}-{k}") for k in range(2) for r in setup["rows"]]  # 44 rows, 9 shards
    inputs = write_inputs(tmp_path / "in", rows)["jsonl"]
    one = run_tag(tag_options(setup["model"], inputs, tmp_path / "one", workers=0))
    want, want_errors = output_and_errors(tmp_path / "one")
    lines: list[str] = []
    two = run_tag(tag_options(setup["model"], inputs, tmp_path / "two", workers=2), log=lines.append)
    got, errors = output_and_errors(tmp_path / "two")
    threads = max(1, cpu_cores() // 2)
    assert any(f"2 worker process(es), each holding one model replica (cpu) and running it on {threads} torch"
               in line for line in lines), lines
    assert _entity_keys(got) == _entity_keys(want) and len(got) == 42 and errors == want_errors
    assert sum(len(r["entities"]) for r in got) > 20
    for a, b in zip(got, want):
        assert a["match_probability"] == pytest.approx(b["match_probability"], abs=2e-4)
        assert [e["confidence"] for e in a["entities"]] == pytest.approx([e["confidence"] for e in b["entities"]],
                                                                          abs=2e-4)
    if threads == 1:  # the one_thread fixture's: the same bytes
        assert got == want
    counts = ("read", "tagged", "failed", "dropped", "blanked", "failed_by_reason", "shards")
    assert {k: two[k] for k in counts} == {k: one[k] for k in counts}
    assert two["read"] == 44 == two["tagged"] + two["failed"] + two["dropped"] and two["failed"] == 2
    # --strict: the first bad row in input order stops the run, as in one process
    with pytest.raises(MNERError, match=r"tweets.jsonl:16: image-missing"):
        run_tag(tag_options(setup["model"], inputs, tmp_path / "strict", workers=2, strict=True))



def test_on_a_gpu_the_workers_only_decode_for_the_model_in_this_process(setup, tmp_path, monkeypatch):
    """The plan: replicas on the CPU, one model in the main process on a GPU; that GPU design
    (decoding workers, the model here) run on the CPU writes the same rows."""
    import mner.batch.engine_local as local
    from mner.batch.job import cpu_cores, default_workers
    from mner.batch.prepare import PrepareSettings

    opts = tag_options(setup["model"], setup["files"]["jsonl"], tmp_path / "x", workers=None)
    assert local.plan_local(opts, PrepareSettings(), "cpu") == local.LocalPlan(
        default_workers(), max(1, cpu_cores() // default_workers()), True, "cpu")
    gpu = local.plan_local(opts, PrepareSettings(), "cuda:0")
    assert not gpu.replicas and gpu.workers == default_workers(replicas=False) and gpu.device == "cuda:0"
    assert local.plan_local(opts, PrepareSettings(pixels=False), "cuda").workers == 0  # nothing to decode
    assert local.plan_local(dataclasses.replace(opts, workers=0, threads=3), PrepareSettings(), "cpu") == \
        local.LocalPlan(0, 3, False, "cpu")

    monkeypatch.setattr(local, "plan_local", lambda opts, settings, device: local.LocalPlan(1, 1, False, "cpu"))
    lines: list[str] = []
    run_tag(tag_options(setup["model"], setup["files"]["jsonl"], tmp_path / "gpu-design"), log=lines.append)
    assert any("the model in this process (cpu, 1 torch thread(s)), 1 image-decoding worker" in line
               for line in lines), lines
    run_tag(tag_options(setup["model"], setup["files"]["jsonl"], tmp_path / "one", workers=0))
    assert output_and_errors(tmp_path / "gpu-design") == output_and_errors(tmp_path / "one")

def test_errors_in_replica_workers_reach_the_main_process(setup, tmp_path, monkeypatch):
    """A user's error in a worker stays a one-line MNERError; a bug keeps the worker's traceback."""
    import shutil

    import mner.batch.run as job  # the run calls prepare_settings by its own name
    from mner.batch.engine_local import _picklable
    from mner.data.images import ImageError

    model = tmp_path / "model"
    shutil.copytree(setup["model"], model)
    inputs = setup["files"]["jsonl"]

    def move_the_model(line: str) -> None:  # after the main process loaded it, before the workers do
        if line.startswith("local:"):
            model.rename(tmp_path / "moved")

    with pytest.raises(MNERError) as err:
        run_tag(tag_options(model, inputs, tmp_path / "user", workers=1), log=move_the_model)
    assert "no such model folder" in str(err.value) and "\n" not in str(err.value)
    assert json.loads((tmp_path / "user" / "_manifest.json").read_text())["status"] == "failed"
    # an MNERError that pickle cannot rebuild travels as a plain MNERError with its message
    assert not _picklable(ImageError("missing", "x", None)) and _picklable(MNERError("x"))

    real = job.prepare_settings
    monkeypatch.setattr(job, "prepare_settings", lambda opts, pipe: dataclasses.replace(
        real(opts, pipe), resize=("not-a-size", "bicubic")))  # a bug that only shows in the workers
    # a failure nobody foresaw is its row's (issue 24): recorded with the exception and where it was
    # raised, the other rows go on
    summary = run_tag(tag_options(setup["model"], inputs, tmp_path / "bug", workers=1))
    assert summary["failed_by_reason"] == {"image-missing": 1, "internal-error": 21}
    _, errors = output_and_errors(tmp_path / "bug")
    detail = next(e["detail"] for e in errors if e["reason"] == "internal-error")
    assert detail.startswith("TypeError: ") and "mner/data/images.py" in detail and "resize_shorter" in detail


def test_every_input_format_gives_the_same_rows_and_both_output_formats_round_trip(setup):
    import pyarrow.parquet as pq

    tmp = setup["tmp"]
    ref = read_output(tmp / "local") if (tmp / "local").is_dir() else None
    outs = {}
    for fmt in ("csv", "parquet"):
        outs[fmt] = tmp / f"from-{fmt}"
        run_tag(tag_options(setup["model"], setup["files"][fmt], outs[fmt]))
    outs["jsonl-out"] = tmp / "jsonl-out"
    run_tag(tag_options(setup["model"], setup["files"]["jsonl"], outs["jsonl-out"], format="jsonl"))
    strip = [[{k: v for k, v in r.items() if k != "file"} for r in read_output(o)] for o in outs.values()]
    assert strip[0] == strip[1] == strip[2] and len(strip[0]) == 21
    if ref is not None:
        assert strip[0] == [{k: v for k, v in r.items() if k != "file"} for r in ref]
    # the JSONL output holds the same rows as the Parquet one, the Parquet folder reads as one table
    assert (outs["jsonl-out"] / "data" / "part-000000.jsonl").is_file()
    table = pq.read_table(outs["parquet"] / "data")
    assert table.num_rows == 21 and table.column_names == ["id", "file", "row", "entities", "match_probability",
                                                           "image_problem"]
    # the benchmark format: the sample's own files (no captions there), found in its folder
    sample = tmp / "sample-txt"
    summary = run_tag(tag_options(setup["model"], [sample_paths()["tweets"]], sample))
    assert summary["read"] == 22 and summary["failed_by_reason"] == {"image-missing": 1}
    assert {r["id"] for r in read_output(sample)} == {r["id"] for r in setup["rows"]} - {"s204"}


def test_reading_a_shard_seeks_to_its_rows(tmp_path):
    csv_path = tmp_path / "t.csv"
    csv_path.write_text('id,text\n1,"two\nlines"\n\n2,plain\n3,"a ""quote"""\n4,x\n5,y\n', encoding="utf-8")
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text('{"text": "a"}\n\n{"text": "b"}\n{"text": "c"}\n   \n{"text": "d"}\n', encoding="utf-8")
    inputs, shards = plan_shards(expand_inputs([csv_path, jsonl]), 2, Columns())
    assert [f.rows for f in inputs] == [5, 4] and [(s.file, s.start, s.count) for s in shards] == [
        (0, 0, 2), (0, 2, 2), (0, 4, 1), (1, 0, 2), (1, 2, 2)]
    records = [r for s in shards for r in read_shard(s)]
    assert [(r.row, r.line) for r in records[:5]] == [(1, 2), (2, 5), (3, 6), (4, 7), (5, 8)]
    assert records[0].raw == {"id": "1", "text": "two\nlines"} and records[2].raw["text"] == 'a "quote"'
    assert [(r.row, r.line, json.loads(r.raw)["text"]) for r in records[5:]] == [
        (1, 1, "a"), (2, 3, "b"), (3, 4, "c"), (4, 6, "d")]
    assert records[6].where == f"{jsonl.resolve()}:3"


def test_presized_images_give_the_transforms_tensors():
    """Decoding resizes to the transform's shorter side; the transform then gives the same tensor."""
    from mner.batch.prepare import presize
    from mner.encoders.transforms import EvalTransform

    for transform in (EvalTransform(image_size=32), EvalTransform(), EvalTransform(image_size=64, resize=80,
                                                                                   interpolation="bilinear")):
        short = (max(transform.resize_to, transform.image_size), transform.interpolation)
        for size in ((40, 40), (96, 60), (301, 200), (17, 500), (1200, 900)):
            img = random_image(size[0] % 7, size=max(size)).resize(size)
            assert (transform(presize(img, short)) == transform(img)).all(), (transform, size)


def test_tag_batch_takes_plain_texts_and_image_paths(setup):
    """What a Spark or Ray Data user wraps: rows with a text and an image path, no decoding first."""
    from mner.pipeline import Pipeline

    images = sample_paths()["images"]
    pipe = Pipeline.from_pretrained(setup["model"], device="cpu")
    rows = [{"id": "x", "text": "Paris in the spring", "image": str(images / "s101.jpg"), "caption": "a city"},
            {"id": "y", "tokens": ["New", "York"], "image": None}]
    out = tag_batch(pipe, rows)
    expected = pipe(["Paris in the spring", "New York"], image=[images / "s101.jpg", None], caption=["a city", None])
    assert [r["entities"] for r in out] == [[{k: e[k] for k in ("text", "type", "start", "end", "confidence")}
                                             for e in ents] for ents in expected]
    assert out[0]["id"] == "x" and 0 < out[0]["match_probability"] < 1 and out[1]["match_probability"] is None
    assert tag_batch(pipe, []) == []


# ---------------------------------------------------------------------- rows that fail
def _bad_inputs(tmp: Path) -> tuple[Path, Path]:
    images = tmp / "images"
    images.mkdir(parents=True, exist_ok=True)
    random_image(1).save(images / "ok.png")
    (images / "empty.jpg").write_bytes(b"")
    (tmp / "outside.jpg").write_bytes((images / "ok.png").read_bytes())
    lines = [
        b'{"id": "a", "text": "Paris in spring", "image": "ok.png"}',       # 1 ok
        b'{"id": "b", "text": "oops"',                                       # 2 not JSON
        b'[1, 2]',                                                           # 3 not an object
        b'',                                                                 # 4 blank: no row
        b'{"id": "e", "text": "   "}',                                       # 5 empty text
        b'{"id": "f", "caption": "a cat"}',                                  # 6 no text
        b'{"id": "g", "text": 5}',                                           # 7 wrong type
        b'{"id": "h", "text": "Rome at night", "image": "nope.jpg"}',        # 8 missing image
        b'{"id": "i", "text": "Oslo", "image": "empty.jpg"}',                # 9 zero-byte image
        b'{"id": "j", "text": "Nice", "image": "../outside.jpg"}',           # 10 outside the folder
        b'{"id": "k", "tokens": ["New", "York"]}',                           # 11 ok, no image
        b'{"id": "l", "tokens": []}',                                        # 12 empty tokens
        b'{"id": "m", "text": "caf\xff"}',                                   # 13 not UTF-8
    ]
    path = tmp / "bad.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, images


def test_rows_that_cannot_be_tagged_go_to_errors_jsonl_with_reasons_and_counts(setup, tmp_path):
    path, images = _bad_inputs(tmp_path)
    out = tmp_path / "out"
    summary = run_tag(tag_options(setup["model"], path, out, image_root=images, shard_size=4, batch_size=3))
    rows, errors = output_and_errors(out)
    assert [r["id"] for r in rows] == ["a", "k"]
    got = [(e["line"], e["id"], e["reason"]) for e in errors]
    assert got == [(2, None, "malformed"), (3, None, "malformed"), (5, "e", "empty-text"), (6, "f", "no-text"),
                   (7, "g", "malformed"), (8, "h", "image-missing"), (9, "i", "image-empty"),
                   (10, "j", "image-outside"), (12, "l", "empty-text"), (13, None, "malformed")]
    assert all(e["file"] == str(path.resolve()) and e["detail"] for e in errors)
    assert [e["row"] for e in errors] == [2, 3, 4, 5, 6, 7, 8, 9, 11, 12]  # rows count non-blank lines
    assert "not valid JSON" in errors[0]["detail"] and "UTF-8" in errors[-1]["detail"]
    assert summary["read"] == 12 and summary["tagged"] == 2 and summary["failed"] == 10 and summary["dropped"] == 0
    assert summary["failed_by_reason"] == {"empty-text": 2, "image-empty": 1, "image-missing": 1,
                                           "image-outside": 1, "malformed": 4, "no-text": 1}
    assert json.loads((out / "_manifest.json").read_text())["counts"]["failed_by_reason"] == summary["failed_by_reason"]

    # blank: tagged without the image, and said so; an image outside the folder is never read
    summary = run_tag(tag_options(setup["model"], path, tmp_path / "blank", image_root=images, image_policy="blank"))
    rows, errors = output_and_errors(tmp_path / "blank")
    assert [(r["id"], r["image_problem"]) for r in rows] == [("a", None), ("h", "missing"), ("i", "empty"), ("k", None)]
    assert rows[1]["match_probability"] is None and "image-outside" in {e["reason"] for e in errors}
    assert summary["blanked_by_reason"] == {"image-empty": 1, "image-missing": 1} and summary["tagged"] == 4
    # drop: left out, counted per reason
    summary = run_tag(tag_options(setup["model"], path, tmp_path / "drop", image_root=images, image_policy="drop"))
    assert [r["id"] for r in read_output(tmp_path / "drop")] == ["a", "k"]
    assert summary["dropped"] == 2 and summary["dropped_by_reason"] == {"image-empty": 1, "image-missing": 1}
    assert summary["read"] == summary["tagged"] + summary["failed"] + summary["dropped"]
    # --strict: the first bad row stops the run, named by file and line
    with pytest.raises(MNERError, match=r"bad.jsonl:2: malformed: not valid JSON"):
        run_tag(tag_options(setup["model"], path, tmp_path / "strict", image_root=images, strict=True))


def test_unknown_columns_and_inputs_are_refused_with_one_line(setup, tmp_path):
    jsonl = setup["files"]["jsonl"]
    code, out, err = _run(["tag", setup["model"], jsonl, "--out", tmp_path / "o", "--text-column", "body",
                           "--no-progress"])
    assert code == 2 and out == "" and err.count("\n") == 1 and "no field 'body'" in err and "'text'" in err
    code, out, err = _run(["tag", setup["model"], setup["files"]["csv"], "--out", tmp_path / "o",
                           "--image-column", "photo", "--no-progress"])
    assert code == 2 and "no column 'photo'" in err
    code, out, err = _run(["tag", setup["model"], tmp_path / "nothing.jsonl", "--out", tmp_path / "o"])
    assert code == 2 and "no such file" in err
    (tmp_path / "notes.md").write_text("x")
    code, out, err = _run(["tag", setup["model"], tmp_path / "notes.md", "--out", tmp_path / "o"])
    assert code == 2 and "unknown input format '.md'" in err
    (tmp_path / "array.json").write_text('[{"text": "Paris"}]\n')
    code, out, err = _run(["tag", setup["model"], tmp_path / "array.json", "--out", tmp_path / "o"])
    assert code == 2 and "array.json:1: a JSON array, not JSON Lines" in err
    code, out, err = _run(["tag", setup["model"], setup["files"]["jsonl"], setup["files"]["jsonl"], "--out",
                           tmp_path / "o"])
    assert code == 2 and "given twice" in err
    assert not (tmp_path / "o").exists()  # nothing written by a refused run


def test_a_folder_input_reads_its_files_in_name_order_and_says_what_it_left_out(setup, tmp_path):
    folder = tmp_path / "in"
    write_inputs(folder, setup["rows"][:3], stem="b")
    write_inputs(folder, setup["rows"][3:5], stem="a")
    (folder / "README.md").write_text("about these tweets")
    (folder / "_old.jsonl").write_text("{}\n")
    lines = []
    summary = run_tag(tag_options(setup["model"], folder, tmp_path / "out"), log=lines.append)
    assert summary["read"] == 3 * 3 + 3 * 2  # a.csv, a.jsonl, a.parquet, b.csv, b.jsonl, b.parquet
    assert [Path(f).name for f in dict.fromkeys(r["file"] for r in read_output(tmp_path / "out"))] == [
        "a.csv", "a.jsonl", "a.parquet", "b.csv", "b.jsonl", "b.parquet"]
    assert any("6 input file(s); 2 other entries" in line for line in lines)


def test_cli_prints_counts_and_a_final_json_line(setup, tmp_path):
    out = tmp_path / "cli"
    code, stdout, err = _run(["tag", setup["model"], setup["files"]["jsonl"], "--out", out, "--image-root",
                              sample_paths()["images"], "--workers", "0", "--no-progress", "--batch-size", "8"])
    assert code == 1, err  # a row could not be tagged: said, counted, exit code 1 (issue 24)
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["read"] == 22 and summary["tagged"] == 21 and summary["engine"] == "local"
    assert summary["tweets_per_second"] > 0 and "failed 1 (image-missing 1)" in err
    assert "mner tag: 1 rows could not be tagged (listed in" in err
    # the same command again: nothing left to do, the same counts
    code, stdout, err = _run(["tag", setup["model"], setup["files"]["jsonl"], "--out", out, "--image-root",
                              sample_paths()["images"], "--workers", "0", "--no-progress"])
    again = json.loads(stdout.strip().splitlines()[-1])
    assert code == 1 and again["shards_skipped"] == again["shards"] == 1 and again["rows_this_run"] == 0
    assert again["tagged"] == 21


def test_ray_engine_without_ray_says_how_to_install_it(monkeypatch):
    from mner.batch.engine_ray import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MNERError, match=r"pip install 'mner\[distributed\]'"):
        import_ray()


# ----------------------------------------------------------------- refusing, resuming
def test_a_changed_model_inputs_or_options_under_an_existing_folder_are_refused(setup, tmp_path):
    rows = setup["rows"][:8]
    files = write_inputs(tmp_path / "in", rows)
    out = tmp_path / "out"
    opts = dict(shard_size=3)
    run_tag(tag_options(setup["model"], files["jsonl"], out, **opts))
    other = make_model(setup["tmp"], seed_shift=4.0)
    with pytest.raises(MNERError, match=r"was tagged with another model .*Give a new --out, or --overwrite"):
        run_tag(tag_options(other, files["jsonl"], out, **opts))
    with pytest.raises(MNERError, match=r"other options \(image_policy 'error' -> 'blank'\)"):
        run_tag(tag_options(setup["model"], files["jsonl"], out, image_policy="blank", **opts))
    with pytest.raises(MNERError, match=r"new input .*tweets.csv"):
        run_tag(tag_options(setup["model"], [files["jsonl"], files["csv"]], out, **opts))
    with open(files["jsonl"], "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"id": "new", "text": "one more"}) + "\n")
    with pytest.raises(MNERError, match=r"tweets.jsonl changed since the folder was started \(size"):
        run_tag(tag_options(setup["model"], files["jsonl"], out, **opts))
    # nothing was written by the refused runs; --overwrite starts again
    assert json.loads((out / "_manifest.json").read_text())["counts"]["read"] == 8
    summary = run_tag(tag_options(other, files["jsonl"], out, overwrite=True, **opts))
    assert summary["read"] == 9 and summary["shards_skipped"] == 0
    # a folder mner tag did not write is never written into
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("x")
    with pytest.raises(MNERError, match="did not write"):
        run_tag(tag_options(setup["model"], files["jsonl"], foreign, overwrite=True))


def _tag_in_subprocess(tmp: Path, model: Path, inputs: Path, out: Path, crash: str,
                       workers: int = 0) -> subprocess.CompletedProcess:
    env = subprocess_env(tmp)
    env["MNER_TAG_CRASH_AFTER"] = crash
    cmd = [sys.executable, "-m", "mner", "tag", str(model), str(inputs), "--out", str(out), "--image-root",
           str(sample_paths()["images"]), "--shard-size", "5", "--batch-size", "4", "--workers", str(workers),
           "--threads", "1", "--no-progress"]
    # capture_output: run() returns once every holder of the pipes is gone, workers included
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("crash", ["1", "2:before-mark"])
def test_a_killed_run_started_again_writes_every_row_exactly_once(setup, tmp_path, crash):
    rows = [dict(r, id=f"{r['id']}-{k}") for k in range(3) for r in setup["rows"]]  # 66 rows, 14 shards
    inputs = write_inputs(tmp_path / "in", rows)["jsonl"]
    reference = tmp_path / "reference"
    run_tag(tag_options(setup["model"], inputs, reference))

    out = tmp_path / "killed"
    proc = _tag_in_subprocess(tmp_path, setup["model"], inputs, out, crash)
    assert proc.returncode == 137, proc.stderr[-2000:]
    marks = sorted(p.name for p in (out / "_shards").glob("part-*.json"))
    data = sorted(p.name for p in (out / "data").glob("part-*"))
    if crash == "1":  # killed right after its first shard was committed
        assert marks == ["part-000000.json"] and data == ["part-000000.parquet"]
    else:  # killed between writing the second shard's data and its mark: that shard is not done
        assert marks == ["part-000000.json"] and data == ["part-000000.parquet", "part-000001.parquet"]
    assert json.loads((out / "_manifest.json").read_text())["status"] == "running"

    summary = run_tag(tag_options(setup["model"], inputs, out))
    assert summary["shards_skipped"] == 1 and summary["rows_this_run"] == 66 - 5
    got, errors = output_and_errors(out)
    want, want_errors = output_and_errors(reference)
    assert got == want and errors == want_errors
    assert len({r["id"] for r in got}) == len(got) == 63 and summary["read"] == 66 and summary["failed"] == 3
    assert not [p for p in out.rglob(".*.tmp")]


def test_a_killed_run_with_replica_workers_started_again_writes_every_row_exactly_once(setup, tmp_path):
    """The main process dies (os._exit) after its first committed shard while two workers, each
    with a model, hold windows: the workers exit with it, and a restart with workers again skips
    the finished shard and writes the uninterrupted run's rows."""
    rows = [dict(r, id=f"{r['id']}-{k}") for k in range(3) for r in setup["rows"]]  # 66 rows, 14 shards
    inputs = write_inputs(tmp_path / "in", rows)["jsonl"]
    reference = tmp_path / "reference"
    run_tag(tag_options(setup["model"], inputs, reference, threads=1))

    out = tmp_path / "killed"
    proc = _tag_in_subprocess(tmp_path, setup["model"], inputs, out, "1", workers=2)
    assert proc.returncode == 137, proc.stderr[-2000:]
    assert "2 worker process(es), each holding one model replica (cpu) and running it on 1 torch thread" in proc.stderr
    assert sorted(p.name for p in (out / "_shards").glob("part-*.json")) == ["part-000000.json"]
    assert json.loads((out / "_manifest.json").read_text())["status"] == "running"

    summary = run_tag(tag_options(setup["model"], inputs, out, workers=2, threads=1))
    assert summary["shards_skipped"] == 1 and summary["rows_this_run"] == 66 - 5 and summary["status"] == "complete"
    got, errors = output_and_errors(out)
    want, want_errors = output_and_errors(reference)
    assert got == want and errors == want_errors
    assert len({r["id"] for r in got}) == len(got) == 63 and summary["read"] == 66 and summary["failed"] == 3
    assert not [p for p in out.rglob(".*.tmp")]


def test_a_second_run_on_the_same_folder_is_refused_while_the_first_holds_it(setup, tmp_path):
    import fcntl

    out = tmp_path / "busy"
    out.mkdir()
    fd = os.open(out / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(MNERError, match="another mner tag is writing"):
            run_tag(tag_options(setup["model"], setup["files"]["jsonl"], out))
    finally:
        os.close(fd)
