"""Issue 8, hostile input: the seven numbered reproductions and the "Also found" list.

Each test runs the command line in-process (as ``mner ...`` would) and asserts the exit code and
that the message names the place (file:line, image id, option) and what to do. The cases are
listed, with these test names, in ``docs/robustness.md``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from pathlib import Path

import pytest
import torch
from PIL import Image

from mner.cli import main
from mner.data.example import Example
from mner.data.images import ImageError, ImageStore, MissingImagesError, apply_image_policy
from mner.errors import MNERError
from model_fixtures import encoders, maf_config, one_thread, random_image, read_jsonl, sample_paths  # noqa: F401

README = Path(__file__).resolve().parents[1] / "README.md"


def run(*argv) -> tuple[int, str, str]:
    """``mner ARGV`` in-process: (exit code, stdout, stderr); argparse's exit is caught too."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    return path


def one_line_error(err: str) -> str:
    """The error line of stderr (notes may come before it); no traceback."""
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("mner: error: ")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def model_dir(encoders, tmp_path_factory) -> Path:
    """A tiny random MAF that looks at pixels, saved as a model folder."""
    from mner.models import MAFModel

    torch.manual_seed(0)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    folder = MAFModel(maf_config(encoders, view="pixels")).save_pretrained(tmp_path_factory.mktemp("m") / "model")
    torch.set_num_threads(before)
    return Path(folder)


@pytest.fixture
def images(tmp_path) -> Path:
    folder = tmp_path / "img"
    folder.mkdir()
    random_image(1).save(folder / "1.jpg")
    random_image(2).save(tmp_path / "outside.jpg")
    return folder


# ============================================================ 1. paths that leave the image folder
def test_r1_imgid_with_dotdot_is_refused_at_its_line(tmp_path, images):
    data = write(tmp_path / "o.txt", "IMGID:1\nNova\tB-PER\n\nIMGID:../outside\nNova\tB-PER\n\n")
    code, out, err = run("data", "validate", data, "--images", images, "--json")
    rep = json.loads(out)
    assert code == 1 and not rep["ok"]
    issue = next(i for i in rep["issues"] if i["line"] == 4)
    assert issue["severity"] == "error" and "'../outside'" in issue["message"]
    assert "outside the image folder" in issue["message"] and "no '..'" in issue["message"]
    # nothing outside the folder was opened: no image issue for it, no "found" for it
    assert not [i for i in rep["issues"] if i["code"].startswith("image-")]
    code, out, err = run("data", "stats", data, "--images", images)
    assert code == 2 and f"{data}:4: IMGID '../outside' names a file outside the image folder" in one_line_error(err)


def test_r1_absolute_imgid_is_refused(tmp_path, images):
    data = write(tmp_path / "a.txt", f"IMGID:{tmp_path / 'outside'}\nNova\tB-PER\n\n")
    code, out, err = run("data", "convert", data, tmp_path / "a.jsonl")
    assert code == 2 and f"{data}:1: IMGID" in one_line_error(err) and "no absolute path" in err


def test_r1_conll_image_outside_the_folder_is_refused_under_every_policy(tmp_path, images):
    data = write(tmp_path / "o.conll", "# image = ../outside.jpg\nNova\tB-PER\n\n")
    code, out, err = run("data", "validate", data, "--images", images, "--missing-images", "blank")
    assert code == 1 and f"{data}:2: [tweet 1] error: image outside: ../outside.jpg" in out
    assert "move the image into the folder" in out
    ex = Example("t1", ("Nova",), image="../outside.jpg", source="o.jsonl:7")
    for policy in ("error", "blank", "drop"):
        with pytest.raises(MNERError, match=r"^o\.jsonl:7: image 't1' \(\.\./outside\.jpg\): outside"):
            apply_image_policy([ex], ImageStore(images), policy)
    # an absolute path inside the folder is the folder's; one elsewhere is not
    assert ImageStore(images).resolve(str(images / "1.jpg")) == images / "1.jpg"
    with pytest.raises(ImageError, match="outside"):
        ImageStore(images).resolve(str(tmp_path / "outside.jpg"))


def test_r1_predict_input_image_outside_image_dir_is_refused(tmp_path, images, model_dir):
    inputs = write(tmp_path / "in.jsonl", '{"id": "a", "text": "Nova"}\n{"id": "b", "text": "Nova", '
                                          '"image": "../outside.jpg"}\n')
    code, out, err = run("predict", model_dir, "--input", inputs, "--image-dir", images)
    assert code == 2 and out == ""
    assert f"{inputs}:2: image 'b' (../outside.jpg): outside" in one_line_error(err)


def test_r1_predict_text_image_path_is_opened_as_given_and_said(tmp_path, images, model_dir):
    # a path typed on the command line is the user's own: read as given, with a note on '..'
    code, out, err = run("predict", model_dir, "--text", "Nova in Paris", "--image", images / ".." / "outside.jpg")
    assert code == 0 and f"is read as {tmp_path / 'outside.jpg'}" in err
    code, out, err = run("predict", model_dir, "--text", "Nova", "--image", "../outside.jpg", "--image-dir", images)
    assert code == 2 and "--text: image '0' (../outside.jpg): outside" in one_line_error(err)


# ============================================================ 2. a byte-order mark
BOM = b"\xef\xbb\xbf"


def test_r2_bom_twitter_file_is_read_as_twitter(tmp_path):
    data = write(tmp_path / "b.txt", BOM + b"IMGID:1\nNova\tB-PER\n\n")
    code, out, err = run("data", "stats", data, "--json")
    assert code == 0 and json.loads(out)["splits"]["b"]["tweets"] == 1
    assert "twitter format" in json.loads(out)["notes"][0]
    code, out, err = run("data", "convert", data, tmp_path / "b.jsonl")
    assert code == 0 and read_jsonl(tmp_path / "b.jsonl") == [{"id": "1", "tokens": ["Nova"], "tags": ["B-PER"],
                                                                 "image": "1"}]
    pred = write(tmp_path / "p.txt", BOM + b"IMGID:1\nNova\tB-PER\tB-PER\n\n")
    code, out, err = run("score", pred, "--json")
    assert code == 0 and json.loads(out)["f1"] == 1.0


# ============================================================ 3. a stray column
def test_r3_extra_column_is_an_error_at_its_line(tmp_path):
    data = write(tmp_path / "c.txt", "IMGID:1\nNova\tB-PER\nis\tO\tB-LOC\nhere\tO\n\n")
    for argv in (("data", "stats", data), ("score", data, data)):
        code, out, err = run(*argv)
        assert code == 2 and f"{data}:3: 3 TAB-separated columns, but the file's token lines have 2" in one_line_error(err)
        assert "give every token line the same columns" in err
    code, out, err = run("data", "validate", data, "--json")
    rep = json.loads(out)
    assert code == 1 and [(i["line"], i["code"]) for i in rep["issues"]] == [(3, "format")]
    # a consistent gold+pred file is still read (its third column is the prediction)
    gp = write(tmp_path / "gp.conll", "Nova\tB-PER\tB-PER\nis\tO\tO\n\n")
    assert run("score", gp)[0] == 0


# ============================================================ 4. an empty file
def test_r4_zero_byte_file_fails_validation(tmp_path):
    data = write(tmp_path / "z.txt", b"")
    for strict in ((), ("--strict",)):
        code, out, err = run("data", "validate", *strict, data)
        assert code == 1 and "result: FAILED" in out
        assert f"{data}: error: the file is empty (0 bytes): give a file with at least one tweet" in out


# ============================================================ 5. JSONL field types
@pytest.mark.parametrize("line, field, expected", [
    ('{"id": "a", "text": "Nova", "image": 5}', "image", "a string (an image path or id) or null, got a number 5"),
    ('{"id": "a", "text": 123}', "text", "a string, got a number 123"),
    ('{"id": [1], "text": "Nova"}', "id", "a string or an integer, got an array [1]"),
    ('{"id": "a", "tokens": "Nova"}', "tokens", 'a list of strings, got a string "Nova"'),
    ('{"id": "a", "tokens": ["Nova"], "tags": [1]}', "tags", "a list of strings (one tag per token) or null"),
    ('{"id": "a", "text": "Nova", "caption": {}}', "caption", "a string or null, got an object {}"),
])
def test_r5_jsonl_fields_are_type_checked(tmp_path, model_dir, line, field, expected):
    inputs = write(tmp_path / "i.jsonl", '{"id": "ok", "text": "fine"}\n' + line + "\n")
    code, out, err = run("predict", model_dir, "--input", inputs)
    assert code == 2 and out == ""
    assert f'{inputs}:2: field "{field}" must be {expected}' in one_line_error(err)


# ============================================================ 6. a one-byte file
def test_r6_one_newline_file_is_reported_not_crashed(tmp_path):
    data = write(tmp_path / "one.txt", "\n")
    code, out, err = run("data", "validate", "--format", "twitter", data)
    assert code == 1 and "Traceback" not in err
    assert f"{data}: error: no tweet in the file (1 bytes)" in out


# ============================================================ 7. numeric options
@pytest.mark.parametrize("value, message", [("-1", "-1 is too small: give an integer >= 1"),
                                            ("0", "0 is too small: give an integer >= 1"),
                                            ("two", "'two' is not an integer")])
def test_r7_batch_size_is_range_checked_by_the_parser(tmp_path, value, message):
    inputs = write(tmp_path / "good.jsonl", '{"text": "Nova"}\n')
    for argv in (("predict", tmp_path, "--input", inputs), ("evaluate", tmp_path, inputs)):
        code, out, err = run(*argv, "--batch-size", value)
        assert code == 2 and f"argument --batch-size: {message}" in err and out == ""
    code, out, err = run("data", "validate", inputs, "--max-show", "-1")
    assert code == 2 and "argument --max-show: -1 is too small: give an integer >= 0" in err
    code, out, err = run("predict", tmp_path, "--input", inputs, "--max-image-pixels", "0")
    assert code == 2 and "argument --max-image-pixels: 0 is too small" in err
    code, out, err = run("quickstart", "--epochs", "0", "--out", tmp_path / "qs")
    assert code == 2 and "argument --epochs: 0 is too small: give an integer >= 1" in err
    code, out, err = run("quickstart", "--seed", "-3", "--out", tmp_path / "qs")
    assert code == 2 and "argument --seed: -3 is too small: give an integer >= 0" in err
    assert not (tmp_path / "qs").exists()


# ============================================================ also found
def test_also_predict_has_a_missing_image_policy_naming_the_input_line(tmp_path, images, model_dir):
    inputs = write(tmp_path / "in.jsonl", '{"id": "a", "text": "Nova in Paris", "image": "1.jpg"}\n'
                                          '{"id": "b", "text": "Nova", "image": "nope.jpg"}\n')
    code, out, err = run("predict", model_dir, "--input", inputs, "--image-dir", images)
    assert code == 2 and out == "" and f"{inputs}:2: image 'b' ({images / 'nope.jpg'}): missing" in err
    assert "--missing-images blank" in err
    code, out, err = run("predict", model_dir, "--input", inputs, "--image-dir", images, "--missing-images", "blank")
    assert code == 0 and [r["id"] for r in map(json.loads, out.splitlines())] == ["a", "b"]
    assert "policy 'blank': 1 tweets kept without image" in err
    code, out, err = run("predict", model_dir, "--input", inputs, "--image-dir", images, "--missing-images", "drop")
    assert code == 0 and [r["id"] for r in map(json.loads, out.splitlines())] == ["a"]
    assert "policy 'drop': 1 tweets dropped" in err


def test_also_a_folder_or_a_link_loop_is_not_called_missing(tmp_path, images):
    (images / "d.jpg").mkdir()
    os.symlink("loop.jpg", images / "loop.jpg")
    os.symlink("nowhere.jpg", images / "broken.jpg")
    store = ImageStore(images)
    for ref, why in (("d", "a folder, not an image file"), ("loop", "a symbolic link loop"),
                     ("broken", "a broken symbolic link (to nowhere.jpg)")):
        with pytest.raises(ImageError) as info:
            store.open(ref)
        assert info.value.kind == "not-a-file" and why in str(info.value) and "put an image file there" in str(info.value)
    data = write(tmp_path / "d.txt", "IMGID:d\nNova\tB-PER\n\nIMGID:loop\nX\tO\n\n")
    code, out, err = run("data", "validate", data, "--images", images)
    assert code == 1
    assert f"{data}:1: [tweet d] error: image not-a-file: {images / 'd.jpg'}: a folder" in out
    assert f"{data}:4: [tweet loop] error: image not-a-file: {images / 'loop.jpg'}: a symbolic link loop" in out


def test_also_an_image_model_given_no_image_says_so(tmp_path, model_dir):
    code, out, err = run("predict", model_dir, "--text", "Nova in Paris")
    assert code == 0 and "1 of 1 inputs have no image; this model looks at pixels" in err


def test_also_decompression_bomb_message_quotes_mners_limit_and_the_option(tmp_path, monkeypatch):
    Image.new("RGB", (100, 60)).save(tmp_path / "big.png")
    with pytest.raises(ImageError) as info:
        ImageStore(tmp_path, max_pixels=5000).open("big")
    msg = str(info.value)
    assert info.value.kind == "too-large" and "100x60 = 6000 pixels > max_pixels 5000" in msg
    assert "--max-image-pixels N" in msg
    assert ImageStore(tmp_path, max_pixels=6000).open("big").size == (100, 60)
    # PIL's own limits: its warning is not mner's limit; its hard error is worded with mner's
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 4000)
    assert ImageStore(tmp_path, max_pixels=10_000).open("big").size == (100, 60)  # 6000 > 4000: only PIL's warning
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)
    with pytest.raises(ImageError, match=r"6000 pixels, over PIL's hard limit of 4000 pixels"):
        ImageStore(tmp_path, max_pixels=10_000).open("big")
    with pytest.raises(ImageError, match=r"6000 pixels > max_pixels 5000"):
        ImageStore(tmp_path, max_pixels=5000).open_path(tmp_path / "big.png", "big")
    # the option exists on the commands
    data = write(tmp_path / "t.txt", "IMGID:big\nNova\tB-PER\n\n")
    code, out, err = run("data", "validate", data, "--images", tmp_path, "--max-image-pixels", "5000")
    assert code == 1 and "image too-large" in out and "max_pixels 5000" in out


def test_also_crlf_file_has_its_final_blank_line(tmp_path):
    crlf = write(tmp_path / "crlf.txt", "IMGID:1\r\nNova\tB-PER\r\n\r\n")
    code, out, err = run("data", "validate", crlf, "--json")
    assert code == 0 and json.loads(out)["issues"] == []
    lf = write(tmp_path / "lf.txt", "IMGID:1\nNova\tB-PER\n")
    code, out, err = run("data", "validate", lf, "--json")
    assert [i["code"] for i in json.loads(out)["issues"]] == ["no-final-blank-line"]


@pytest.fixture(scope="module")
def sample_with_bad_train_image(tmp_path_factory) -> dict[str, Path]:
    """The sample corpus with one train image replaced by a corrupt file (the valid split already
    misses one image): evaluating the test split must not look at either."""
    import shutil

    paths = sample_paths()
    root = tmp_path_factory.mktemp("sample")
    shutil.copytree(paths["tweets"], root / "tweets")
    shutil.copytree(paths["images"], root / "images")
    first_train = next(line for line in (root / "tweets" / "train.txt").read_text().splitlines()
                       if line.startswith("IMGID:"))[len("IMGID:"):]
    (root / "images" / f"{first_train}.jpg").write_bytes(b"not a jpeg")
    return {"tweets": root / "tweets", "images": root / "images"}


def test_also_evaluate_reads_only_the_scored_split_and_writes_nothing_unasked(model_dir, sample_with_bad_train_image, tmp_path):
    paths = sample_with_bad_train_image
    before = sorted(p.relative_to(model_dir) for p in model_dir.rglob("*"))
    code, out, err = run("evaluate", model_dir, paths["tweets"], "--split", "test", "--images", paths["images"],
                         "--captions", "none", "--json")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["split"] == "test" and rep["predictions"] is None and rep["n_sequences"] == 6
    assert sorted(p.relative_to(model_dir) for p in model_dir.rglob("*")) == before
    # the valid split (one image missing) fails under the error policy when it is the one scored
    code, out, err = run("evaluate", model_dir, paths["tweets"], "--split", "valid", "--images", paths["images"])
    assert code == 2 and "missing" in err
    code, out, err = run("evaluate", model_dir, paths["tweets"], "--split", "dev", "--images", paths["images"])
    assert code == 2 and "no split 'dev' (it has train, valid, test); choose one with --split" in err
    # --out writes the predictions there
    code, out, err = run("evaluate", model_dir, paths["tweets"], "--images", paths["images"], "--out", tmp_path / "p.conll")
    assert code == 0 and (tmp_path / "p.conll").is_file() and f"predictions: {tmp_path / 'p.conll'}" in out


def test_also_evaluate_without_images_names_the_folder_next_to_the_data(model_dir, sample_with_bad_train_image):
    paths = sample_with_bad_train_image
    code, out, err = run("evaluate", model_dir, paths["tweets"] / "test.txt")
    assert code == 2 and f"(there is one next to the data: --images {paths['images']})" in one_line_error(err)
    assert "--missing-images blank" in err


def test_also_readme_samples_are_what_the_code_prints():
    text = README.read_text(encoding="utf-8")
    # the quickstart's last line: the keys it prints, with F1 fractions
    sample = json.loads(re.search(r'`(\{"text_only_f1".*?\})`', text).group(1))
    assert set(sample) == {"text_only_f1", "maf_f1", "model"} and 0 <= sample["text_only_f1"] < sample["maf_f1"] <= 1
    # the pipeline's sample output: every key the pipeline returns, for the sentence of the quickstart
    line = re.search(r"# \[\{'text': .*", text).group(0)
    for key in ("'text'", "'type'", "'start'", "'end'", "'token_start'", "'token_end'", "'confidence'"):
        assert key in line
    assert "demo_pair" in text and "evaluate runs/quickstart runs/quickstart/demo-data/tweets --images " \
                                   "runs/quickstart/demo-data/images" in text
