"""Issue 24, hostile input, second round: the library and command-line cases (1-8, 13-16, 18, 19).

Each test reproduces its case of the issue and asserts the exit code, the message (the place:
file:line, tweet id, option) and that nothing was lost or replaced. The cases are listed, with
these test names, in ``docs/robustness.md``.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from PIL import Image

from batch_fixtures import make_model, tag_options
from fewshot_fixtures import fewshot_model
from model_fixtures import encoders, maf_config, one_thread, random_image, subprocess_env  # noqa: F401
from test_robustness import model_dir, one_line_error, run, write  # noqa: F401  (fixtures, helpers)
from tiny_models import make_tiny_bert, make_tiny_resnet, write_preprocessor_config

from mner.batch import read_output, run_tag
from mner.data.example import TextError
from mner.data.formats import read_file, read_jsonl
from mner.data.tokenize import tokenize_text
from mner.errors import MNERError

pytestmark = pytest.mark.usefixtures("one_thread")


def _jsonl(path: Path, *objs) -> Path:
    return write(path, "".join(json.dumps(o) + "\n" for o in objs))


def _errors(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "errors.jsonl").read_text(encoding="utf-8").split("\n") if line]


@pytest.fixture(scope="module")
def tag_model(tmp_path_factory) -> Path:
    """A tiny random MAF (image regions and captions) for ``mner tag``."""
    return make_model(tmp_path_factory.mktemp("tagmodel"))


# ============================================================= 1. thin images, bounded memory
_MEASURE = textwrap.dedent("""
    import json, os, resource, sys
    model, image, how = sys.argv[1:4]
    if how == "predict":   # the library and the command line: mner predict --text --image
        from mner.cli import main
        assert main(["predict", model, "--text", "Paris in spring", "--image", image]) == 0
    else:                  # mner tag's CPU side: decode and resize (never imports torch)
        from mner.batch.prepare import PrepareSettings, prepare_rows
        from mner.batch.sources import Record
        rec = Record(1, 1, json.dumps({"text": "Paris", "image": os.path.abspath(image)}))
        out = prepare_rows(os.path.abspath("in.jsonl"), "jsonl", [rec], PrepareSettings(resize=(256, "bicubic")))
        assert out.rows and not out.failed, out.failed
        assert "torch" not in sys.modules
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
""")
#: the most a 1x8000 or 8000x1 image may add to the peak memory of tagging a 224x224 one (MiB).
#: Measured: +0 MiB (predict) and +10 MiB (mner tag's decoding) now; +2,100 MiB and +5,000 MiB before
#: the fix (the short side resized to 256 pixels made a 256 x 2,048,000 image).
THIN_IMAGE_BUDGET_MB = 100


@pytest.fixture(scope="module")
def model_224(tmp_path_factory) -> Path:
    """A tiny random MAF whose image transform is the real one: resize 256, centre crop 224."""
    from mner.encoders import IMAGENET_MEAN, IMAGENET_STD, ImageEncoderConfig
    from mner.models import MAFModel

    root = tmp_path_factory.mktemp("m224")
    enc = {"bert": make_tiny_bert(root / "bert", max_position_embeddings=64), "resnet": make_tiny_resnet(root / "resnet")}
    write_preprocessor_config(enc["resnet"], image_size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD, shortest_edge=256)
    torch.manual_seed(0)
    cfg = maf_config(enc, view="pixels", image_encoder=ImageEncoderConfig(name=str(enc["resnet"]), pretrained=False,
                                                                          image_size=224))
    return Path(MAFModel(cfg).save_pretrained(root / "model"))


def _peak_mb(model: Path, image: Path, how: str, tmp_path: Path) -> float:
    proc = subprocess.run([sys.executable, "-c", _MEASURE, str(model), str(image), how], cwd=tmp_path,
                          env=subprocess_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return int(proc.stdout.strip().splitlines()[-1]) / 1024


def test_thin_images_cost_what_a_square_one_does(model_224, tmp_path):
    images = {}
    for w, h in ((224, 224), (1, 8000), (8000, 1)):
        images[(w, h)] = tmp_path / f"{w}x{h}.png"
        Image.new("RGB", (w, h), (200, 30, 40)).save(images[(w, h)])
    assert images[(1, 8000)].stat().st_size < 200  # a tiny file: every byte and pixel limit lets it in
    for how in ("predict", "prepare"):
        square = _peak_mb(model_224, images[(224, 224)], how, tmp_path)
        for shape in ((1, 8000), (8000, 1)):
            thin = _peak_mb(model_224, images[shape], how, tmp_path)
            assert thin - square < THIN_IMAGE_BUDGET_MB, (how, shape, square, thin)


def test_resize_is_unchanged_for_photos_and_bounded_for_thin_images():
    import numpy as np

    from mner.data.images import MAX_ASPECT, resize_shorter
    from mner.encoders.transforms import EvalTransform

    rng = np.random.default_rng(0)
    for w, h in ((640, 480), (1200, 250), (90, 1400)):  # within the cap: exactly a plain resize
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        scale = 256 / min(w, h)
        plain = img.resize((max(256, round(w * scale)), max(256, round(h * scale))), Image.Resampling.BICUBIC)
        assert np.array_equal(np.asarray(resize_shorter(img, 256)), np.asarray(plain))
    for w, h in ((1, 8000), (8000, 1), (3, 89_000)):
        out = resize_shorter(Image.new("RGB", (w, h), (1, 2, 3)), 256)
        assert sorted(out.size) == [256, MAX_ASPECT * 256]
        assert EvalTransform()(Image.new("RGB", (w, h), (1, 2, 3))).shape == (3, 224, 224)


# ============================================================ 2. one row never stops a job
def test_tag_records_every_row_it_cannot_tag_and_goes_on(tag_model, tmp_path, monkeypatch):
    import mner.batch.prepare as prepare
    import mner.batch.tagging as tagging

    inputs = write(tmp_path / "in.jsonl", "\n".join([
        '{"id": "a", "text": "Rome is big"}',
        '{"id": "b", "text": "Paris \\ud800 Berlin"}',      # valid JSON, not Unicode text
        '{"id": "c", "text": "Oslo kaboom"}',             # fails where nobody foresaw, while parsing
        '{"id": "d", "text": "Lima boom"}',               # fails where nobody foresaw, in the model
        '{"id": "e", "text": "Kyiv is far"}']) + "\n")
    real_tokenize, real_tag_batch = prepare.tokenize_text, tagging.tag_batch

    def tokenize(text):
        if "kaboom" in text:
            raise KeyError("an unforeseen parsing failure")
        return real_tokenize(text)

    def tag_batch(pipeline, rows):
        if any("boom" in (r.get("text") or "") for r in rows):
            raise RuntimeError("an unforeseen model failure")
        return real_tag_batch(pipeline, rows)

    monkeypatch.setattr(prepare, "tokenize_text", tokenize)
    monkeypatch.setattr(tagging, "tag_batch", tag_batch)
    out = tmp_path / "out"
    code, stdout, err = run("tag", tag_model, inputs, "--out", out, "--workers", "0", "--no-progress",
                            "--format", "jsonl", "--batch-size", "8")
    assert code == 1 and "Traceback" not in err, err
    assert "mner tag: 3 rows could not be tagged (listed in" in err
    summary = json.loads(stdout.strip().split("\n")[-1])
    assert (summary["read"], summary["tagged"], summary["failed"]) == (5, 2, 3)
    assert summary["failed_by_reason"] == {"internal-error": 2, "malformed": 1}
    assert [r["id"] for r in read_output(out)] == ["a", "e"]  # the rows after the bad ones are tagged
    errors = {e["id"]: e for e in _errors(out)}
    assert [(e["id"], e["line"], e["reason"]) for e in errors.values()] == [
        ("b", 2, "malformed"), ("c", 3, "internal-error"), ("d", 4, "internal-error")]
    assert "unpaired surrogate U+D800 at character 6" in errors["b"]["detail"]
    # the exception and the line of code that raised it
    assert errors["c"]["detail"].startswith("KeyError: 'an unforeseen parsing failure' (at ")
    assert errors["d"]["detail"].startswith("RuntimeError: an unforeseen model failure (at ")
    assert "test_robustness_round2.py" in errors["d"]["detail"] and "tag_batch" in errors["d"]["detail"]
    # --max-errors N stops once more than N rows failed, saying so; the finished shards are kept
    code, stdout, err = run("tag", tag_model, inputs, "--out", tmp_path / "stop", "--workers", "0", "--no-progress",
                            "--format", "jsonl", "--max-errors", "1", "--shard-size", "2", "--batch-size", "2")
    line = one_line_error(err)
    assert code == 2 and "stopped: 3 rows of this run could not be tagged, more than --max-errors 1" in line
    assert "in.jsonl:4: internal-error: RuntimeError: an unforeseen model failure" in line
    manifest = json.loads((tmp_path / "stop" / "_manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["shards"]["done"] == 1  # rows a, b: kept


@pytest.mark.slow
def test_tag_with_ray_records_a_row_that_is_not_unicode(tag_model, tmp_path):
    pytest.importorskip("ray")
    inputs = write(tmp_path / "in.jsonl", '{"id": "a", "text": "Rome"}\n{"id": "b", "text": "Paris \\ud800"}\n'
                                          '{"id": "c", "text": "Oslo"}\n')
    for engine in ("local", "ray"):
        out = tmp_path / engine
        summary = run_tag(tag_options(tag_model, inputs, out, engine=engine, concurrency=1, format="jsonl"))
        assert (summary["tagged"], summary["failed"], summary["status"]) == (2, 1, "complete"), engine
        [error] = _errors(out)
        assert (error["line"], error["reason"]) == (2, "malformed") and "U+D800" in error["detail"], engine


def test_predict_input_line_that_cannot_be_tagged_is_named(model_dir, tmp_path):
    inputs = write(tmp_path / "in.jsonl", '{"text": "Rome"}\n{"text": "Paris \\ud800 Berlin"}\n')
    output = write(tmp_path / "out.jsonl", "previous output\n")
    code, out, err = run("predict", model_dir, "--input", inputs, "--output", output)
    assert code == 2 and one_line_error(err) == (
        f"mner: error: {inputs}:2: tweet '2': its text holds an unpaired surrogate U+D800 at character 6 (not "
        "Unicode text: a JSON \\ud800-style escape without its pair, or bytes that are not UTF-8); fix it in the input")
    assert output.read_text() == "previous output\n" and sorted(p.name for p in tmp_path.iterdir()) == [
        "in.jsonl", "out.jsonl"]
    # bytes that are not UTF-8 on the command line arrive as surrogates (surrogateescape)
    code, out, err = run("predict", model_dir, "--text", b"Paris \xff".decode("utf-8", "surrogateescape"))
    assert code == 2 and "--text/--caption/--image: its text holds an unpaired surrogate U+DCFF" in one_line_error(err)
    # the library: an MNERError naming the field, never a tokenizer's TypeError
    from mner.pipeline import Pipeline

    with pytest.raises(TextError, match=r"its text holds an unpaired surrogate U\+D800 at character 6"):
        Pipeline.from_pretrained(model_dir, device="cpu")("Paris \ud800 Berlin")


# ============================================================ 3. fewshot predict's images
@pytest.fixture(scope="module")
def fewshot_pixels(encoders, tmp_path_factory) -> Path:
    """A tiny random ProtoMAF that looks at pixels."""
    torch.manual_seed(0)
    model = fewshot_model(encoders["bert"], "proto-maf", visual_view="pixels",
                          image_encoder={"name": str(encoders["resnet"]), "pretrained": False, "image_size": 32})
    return Path(model.save_pretrained(tmp_path_factory.mktemp("fs") / "model"))


def test_fewshot_predict_input_images_resolve_like_predict(fewshot_pixels, tmp_path, monkeypatch):
    inputs_dir = tmp_path / "inputs"
    inputs_dir.mkdir()
    random_image(1).save(inputs_dir / "a.jpg")
    random_image(2).save(tmp_path / "outside.jpg")
    support = _jsonl(tmp_path / "support.jsonl", {"tokens": ["Pad", "thai"], "tags": ["B-DISH", "I-DISH"]})
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # relative paths are the input file's, not the working folder's
    base = ("fewshot", "predict", fewshot_pixels, "--support", support)
    # relative to the input file's folder
    good = _jsonl(inputs_dir / "in.jsonl", {"text": "Pad thai", "image": "a.jpg"})
    code, out, err = run(*base, "--input", good)
    assert code == 0, err
    assert json.loads(out)["image"] == "a.jpg"
    # outside the folder: refused under every policy, naming the line, nothing opened
    bad = _jsonl(inputs_dir / "bad.jsonl", {"text": "x"}, {"text": "Pad thai", "image": "../outside.jpg"})
    for policy in ("error", "blank", "drop"):
        code, out, err = run(*base, "--input", bad, "--missing-images", policy)
        assert code == 2 and f"{bad}:2: image '2' (../outside.jpg): outside" in one_line_error(err), policy
    # --images is the folder then; a missing image's hint names options the command has
    missing = _jsonl(inputs_dir / "missing.jsonl", {"text": "Pad thai", "image": "nope.jpg"})
    code, out, err = run(*base, "--input", missing)
    assert code == 2 and "--missing-images blank" in err and "Traceback" not in err
    code, out, err = run(*base, "--input", missing, "--missing-images", "blank")
    assert code == 0 and "1 missing" in err and json.loads(out)["entities"] is not None
    code, out, err = run(*base, "--input", good, "--images", tmp_path)
    assert code == 2 and f"image '1' ({tmp_path / 'a.jpg'}): missing" in err
    code, out, err = run("fewshot", "predict", "--help")
    assert "--missing-images" in out and "--max-image-pixels" in out


# ============================================================ 4, 6. outputs: links, devices, full disks
def test_outputs_write_through_links_and_stream_to_devices(model_dir, tmp_path):
    target = write(tmp_path / "real" / "preds.jsonl", "old\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    code, out, err = run("predict", model_dir, "--text", "Paris", "--output", link)
    assert code == 0 and link.is_symlink() and os.readlink(link) == str(target)
    assert json.loads(target.read_text())["text"] == "Paris"
    # a device: streamed to (through a link, so that nothing in /dev is at stake if this regresses)
    null = tmp_path / "null.jsonl"
    null.symlink_to("/dev/null")
    code, out, err = run("predict", model_dir, "--text", "Paris", "--output", null)
    assert code == 0 and null.is_symlink() and stat.S_ISCHR(os.stat("/dev/null").st_mode)
    # a FIFO: streamed to, still a FIFO
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    code, out, err = run("predict", model_dir, "--text", "Paris", "--output", fifo)
    got = reader.communicate(timeout=60)[0]
    assert code == 0 and stat.S_ISFIFO(os.stat(fifo).st_mode) and json.loads(got)["text"] == "Paris"
    # data convert too: through the link, the link kept
    source = write(tmp_path / "a.txt", "IMGID:1\nParis\tB-LOC\n\n")
    code, out, err = run("data", "convert", source, link, "--to", "jsonl")
    assert code == 0 and link.is_symlink() and json.loads(target.read_text())["tokens"] == ["Paris"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["preds.jsonl"]  # no temporary file left


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this system")
def test_full_disk_gives_one_line_and_leaves_no_partial_file(model_dir, fewshot_pixels, tmp_path, monkeypatch):
    full = tmp_path / "full.jsonl"
    full.symlink_to("/dev/full")
    support = _jsonl(tmp_path / "support.jsonl", {"tokens": ["Pad", "thai"], "tags": ["B-DISH", "I-DISH"]})
    for argv in (("predict", model_dir, "--text", "Paris"),
                 ("fewshot", "predict", fewshot_pixels, "--support", support, "--text", "Pad thai")):
        code, out, err = run(*argv, "--output", full)
        assert code == 2 and one_line_error(err) == (
            f"mner: error: {full}: could not write the predictions to this device (No space left on device)"), argv
        assert full.is_symlink()
    # a disk that fills half-way (ENOSPC at the flush): the file there is untouched, no temporary file
    import mner.fileio as fileio

    def no_room(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fileio.os, "fsync", no_room)
    output = write(tmp_path / "out" / "preds.jsonl", "previous complete output\n")
    code, out, err = run("fewshot", "predict", fewshot_pixels, "--support", support, "--text", "Pad thai",
                         "--output", output)
    assert code == 2 and one_line_error(err) == (
        f"mner: error: {output}: could not write the predictions (No space left on device); nothing was written "
        "there: free some space or choose another --output")
    assert output.read_text() == "previous complete output\n" and os.listdir(output.parent) == ["preds.jsonl"]


# ============================================================ 5. words by grapheme cluster
def test_tokenizer_keeps_grapheme_clusters_and_offsets_index_the_text(model_dir):
    cases = {
        "Montre\u0301al is nice": ["Montre\u0301al", "is", "nice"],               # decomposed é
        "नमस्ते दिल्ली": ["नमस्ते", "दिल्ली"],                                            # Hindi: vowel signs, virama
        "ภาษาไทย ดี": ["ภาษาไทย", "ดี"],                                            # Thai: vowel marks
        "we \U0001F468\u200d\U0001F469\u200d\U0001F467 love 1\ufe0f\u20e3 \u2764\ufe0f": [
            "we", "\U0001F468\u200d\U0001F469\u200d\U0001F467", "love", "1\ufe0f\u20e3", "\u2764\ufe0f"],
        "\u05e9\u05dc\u05d5\u05dd Tel-Aviv": ["\u05e9\u05dc\u05d5\u05dd", "Tel-Aviv"],  # RTL
    }
    for text, want in cases.items():
        tokens, offsets = tokenize_text(text)
        assert tokens == want, text
        assert [text[s:e] for s, e in offsets] == tokens
    # the library's entities never cut a word of the text as given
    from mner.pipeline import Pipeline

    import regex

    pipe = Pipeline.from_pretrained(model_dir, device="cpu")
    text = "Montre\u0301al and नमस्ते \U0001F468\u200d\U0001F469\u200d\U0001F467 \u05e9\u05dc\u05d5\u05dd"
    clusters = {0} | {m.end() for m in regex.finditer(r"\X", text)}
    entities = pipe(text)
    assert entities  # the tiny model tags something: the check below is not vacuous
    for ent in entities:
        assert text[ent["start"]:ent["end"]] == ent["text"]
        assert ent["start"] in clusters and ent["end"] in clusters, ent


# ============================================================ 7. the input changes under mner tag
def test_tag_notices_its_input_changed_while_it_ran(tag_model, tmp_path, monkeypatch):
    import mner.batch.engine_local as job  # the local engine calls its own tag_window name

    inputs = _jsonl(tmp_path / "in.jsonl", *({"id": str(i), "text": f"Paris number {i}"} for i in range(6)))
    real = job.tag_window
    calls = []

    def tag_window_then_edit(pipeline, prepared):
        calls.append(1)
        if len(calls) == 1:  # someone edits the input after the first window
            with open(inputs, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"id": "late", "text": "Rome"}) + "\n")
        return real(pipeline, prepared)

    monkeypatch.setattr(job, "tag_window", tag_window_then_edit)
    out = tmp_path / "out"
    code, stdout, err = run("tag", tag_model, inputs, "--out", out, "--workers", "0", "--no-progress",
                            "--shard-size", "2", "--batch-size", "2", "--format", "jsonl")
    line = one_line_error(err)
    assert code == 2 and f"{inputs}: the input changed while mner tag ran (size" in line
    assert "an input changed: tag it again with --overwrite" in err
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["shards"]["done"] == 0  # no shard of the changed file kept
    # the same content-changing edit that keeps size and modification time: caught by the hash at the end
    monkeypatch.setattr(job, "tag_window", real)
    inputs2 = _jsonl(tmp_path / "in2.jsonl", {"id": "1", "text": "Paris"}, {"id": "2", "text": "Rome"})
    before = os.stat(inputs2)

    def swap(pipeline, prepared):
        inputs2.write_text(inputs2.read_text().replace("Rome", "Oslo"))
        os.utime(inputs2, ns=(before.st_atime_ns, before.st_mtime_ns))
        return real(pipeline, prepared)

    monkeypatch.setattr(job, "tag_window", swap)
    code, stdout, err = run("tag", tag_model, inputs2, "--out", tmp_path / "out2", "--workers", "0", "--no-progress",
                            "--format", "jsonl")
    assert code == 2 and "its bytes differ, with the same size and modification time" in one_line_error(err)


# ============================================================ 8, 16. data convert refuses what it cannot write
@pytest.mark.parametrize("line, target, said", [
    ({"id": "a\nIMGID:evil", "tokens": ["Paris"], "tags": ["B-LOC"]}, "out.txt",
     "in.jsonl:1): id 'a\\nIMGID:evil' holds a line break and cannot be written in the twitter format"),
    ({"id": "a\tb", "tokens": ["Paris"], "tags": ["B-LOC"]}, "out.txt", "id 'a\\tb' holds a TAB"),
    ({"id": "a", "image": "x\ny.jpg", "tokens": ["Paris"], "tags": ["B-LOC"]}, "out.conll",
     "image 'x\\ny.jpg' holds a line break and cannot be written in the conll format"),
    ({"id": "a", "tokens": ["Paris", "x\ud800"], "tags": ["B-LOC", "O"]}, "out.conll",
     "in.jsonl:1: tweet 'a': token 1 holds an unpaired surrogate U+D800 at character 1"),
    ({"id": "a", "tokens": ["Paris", "x\ud800"], "tags": ["B-LOC", "O"]}, "out.jsonl", "token 1 holds an unpaired"),
])
def test_data_convert_refuses_what_its_target_cannot_hold(tmp_path, line, target, said):
    source = write(tmp_path / "in.jsonl", json.dumps(line) + "\n")
    code, out, err = run("data", "convert", source, tmp_path / target)
    assert code == 2 and said in one_line_error(err) and "\n" not in one_line_error(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]  # no target, no .tmp file


# ============================================================ 13. text and tokens
def test_predict_input_with_text_and_tokens_keeps_the_text(model_dir, tmp_path):
    text = "Paris  is   nice"
    inputs = _jsonl(tmp_path / "in.jsonl", {"text": text, "tokens": ["Paris", "is", "nice"]})
    code, out, err = run("predict", model_dir, "--input", inputs)
    record = json.loads(out)
    assert code == 0 and record["text"] == text
    for ent in record["entities"]:
        assert text[ent["start"]:ent["end"]] == ent["text"]
    [ex] = read_jsonl(inputs, require_tokens=False)
    assert ex.text == text and ex.offsets == ((0, 5), (7, 9), (12, 16))


# ============================================================ 14. JSONL split on "\n" only
def test_readers_split_jsonl_on_newlines_only(tag_model, tmp_path):
    ids = ["a\u2028b", "c\u0085d", "e\u2029f"]
    inputs = _jsonl(tmp_path / "in.jsonl", *({"id": i, "text": f"Paris {i}"} for i in ids))
    summary = run_tag(tag_options(tag_model, inputs, tmp_path / "out", format="jsonl", image_root=None))
    assert summary["tagged"] == 3
    assert [r["id"] for r in read_output(tmp_path / "out")] == ids
    assert [ex.id for ex in read_jsonl(inputs, require_tokens=False)] == ids


# ============================================================ 15, 18. malformed tags: one line
@pytest.mark.parametrize("tag", ["X-PER", "I-", "PER"])
def test_data_stats_malformed_tag_is_one_line_at_its_line(tmp_path, tag):
    data = write(tmp_path / "t.txt", f"IMGID:1\nNova\tB-PER\n\nIMGID:2\nParis\tB-LOC\nis\t{tag}\n\n")
    code, out, err = run("data", "stats", data)
    assert code == 2 and one_line_error(err).startswith(
        f"mner: error: {data}:6: malformed tag {tag!r} (token 'is', tweet 2); expected 'O' or '<B|I|E|S>-<TYPE>'")
    assert "mner data validate lists every problem" in err


def test_support_file_reads_bioes_and_iob1_and_names_a_malformed_tag(fewshot_pixels, tmp_path):
    from mner.fewshot.pipeline import FewShotPipeline

    support = _jsonl(tmp_path / "s.jsonl",
                     {"tokens": ["Pad", "thai", "here"], "tags": ["B-DISH", "E-DISH", "O"]},      # BIOES
                     {"tokens": ["ramen", "now"], "tags": ["S-DISH", "O"]},
                     {"tokens": ["pho", "ok"], "tags": ["I-DISH", "O"]})                        # IOB1
    pipe = FewShotPipeline.from_pretrained(fewshot_pixels, support, device="cpu")
    assert [ex.tags for ex in pipe.support] == [("B-DISH", "I-DISH", "O"), ("B-DISH", "O"), ("B-DISH", "O")]
    conll = write(tmp_path / "s.conll", "Pad\tB-DISH\nthai\tX-DISH\n\n")
    code, out, err = run("fewshot", "predict", fewshot_pixels, "--support", conll, "--text", "Pad thai")
    assert code == 2 and one_line_error(err).startswith(
        f"mner: error: {conll}:2: support tag 'X-DISH' of token 'thai' (tweet 1) is malformed")


# ============================================================ 19. devices are no input files
def test_predict_and_tag_refuse_devices_and_fifos(model_dir, tag_model, tmp_path):
    zero = tmp_path / "z.jsonl"
    zero.symlink_to("/dev/zero")
    fifo = tmp_path / "f.jsonl"
    os.mkfifo(fifo)
    for path, kind in (("/dev/zero", "a character device"), (zero, "a character device"), (fifo, "a named pipe (FIFO)")):
        code, out, err = run("predict", model_dir, "--input", path)
        assert code == 2 and one_line_error(err).startswith(f"mner: error: {path}: {kind}, not a regular file"), path
        code, out, err = run("tag", tag_model, path, "--out", tmp_path / "out", "--no-progress")
        assert code == 2 and one_line_error(err).startswith(f"mner: error: {path}: {kind}, not a regular file"), path
        assert not (tmp_path / "out").exists()
    with pytest.raises(MNERError, match="a character device, not a regular file"):
        read_file("/dev/zero", "jsonl")
