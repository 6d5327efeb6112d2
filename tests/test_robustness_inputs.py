"""Issue 8, the bad-input suite: one test per hostile input of the issue's list.

Images, data files, JSONL inputs, checkpoints and configs. Each test runs the command line
in-process and asserts the exit code and that the message names the place (file:line, image
id and path, config key) and what to do; inputs mner accepts are checked for what it makes of
them. The cases and these test names are listed in ``docs/robustness.md``.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mner.data.formats import read_file
from mner.data.images import ImageStore
from model_fixtures import encoders, maf_config, one_thread, random_image  # noqa: F401
from test_robustness import model_dir, one_line_error, run, write  # noqa: F401  (fixtures, helpers)


# ================================================================================ images
def _jpeg(color=(9, 9, 9), size=(64, 64)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG")
    return buf.getvalue()


def _bomb_png(width=30_000, height=30_000) -> bytes:
    """A 100-byte PNG whose header claims ``width x height`` pixels (nothing is decoded)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


REFUSED_IMAGES = {
    # case: (file bytes, kind, what the message says to do)
    "zero-byte": (b"", "empty", "download it again"),
    "truncated": (_jpeg()[:400], "truncated", "the file ends early; download it again"),
    "corrupt": (_jpeg()[:4] + bytes(range(256)) * 4, "corrupt", "PIL cannot read it"),
    "text-named-jpg": (b"this is a text file, not a photo\n", "corrupt", "PIL cannot read it"),
    "decompression-bomb": (_bomb_png(), "too-large", "--max-image-pixels N"),
}


def _validate_one_image(tmp_path: Path, data: bytes | None, name: str = "7.jpg") -> tuple[int, dict, Path]:
    images = tmp_path / "img"
    images.mkdir(exist_ok=True)
    if data is not None:
        (images / name).write_bytes(data)
    corpus = write(tmp_path / "t.txt", f"IMGID:{Path(name).stem}\nNova\tB-PER\n\n")
    code, out, err = run("data", "validate", corpus, "--images", images, "--json")
    return code, json.loads(out), corpus


@pytest.mark.parametrize("case", sorted(REFUSED_IMAGES))
def test_refused_image(tmp_path, case):
    data, kind, todo = REFUSED_IMAGES[case]
    code, rep, corpus = _validate_one_image(tmp_path, data, "7.png" if case == "decompression-bomb" else "7.jpg")
    assert code == 1 and not rep["ok"]
    [issue] = rep["issues"]
    assert (issue["code"], issue["file"], issue["line"], issue["tweet"]) == (f"image-{kind}", str(corpus), 1, "7")
    assert str(tmp_path / "img" / "7.") in issue["message"] and todo in issue["message"]
    # the same image as a predict input is an error naming it, or a counted blank
    assert ImageStore(tmp_path / "img").resolve("7") is not None


def test_refused_image_decompression_bomb_is_refused_before_decoding(tmp_path):
    (tmp_path / "b.png").write_bytes(_bomb_png())
    with pytest.raises(Exception) as info:
        ImageStore(tmp_path).open("b")
    assert "900000000 pixels > max_pixels 89478485" in str(info.value)


def _exif_rotated() -> bytes:
    img = Image.new("RGB", (20, 10), (200, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif.tobytes())
    return buf.getvalue()


def _png(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", **kw)
    return buf.getvalue()


def _palette_transparent() -> bytes:
    img = Image.new("P", (4, 4), 0)
    img.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    img.putpixel((0, 0), 1)
    return _png(img, transparency=0)


def _animated() -> bytes:
    buf = io.BytesIO()
    frames = [Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))]
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buf.getvalue()


def _cmyk() -> bytes:
    buf = io.BytesIO()
    Image.new("CMYK", (8, 8), (0, 0, 0, 0)).save(buf, "JPEG")
    return buf.getvalue()


ACCEPTED_IMAGES = {
    # case: (file bytes, file name, (size, pixel (0, 0), pixel (1, 1)) after conversion)
    "cmyk": (_cmyk(), "7.jpg", ((8, 8), (255, 255, 255), (255, 255, 255))),
    "16-bit": (_png(Image.fromarray(np.full((6, 6), 65535, np.uint16))), "7.png", ((6, 6), (255, 255, 255), (255, 255, 255))),
    "palette-with-transparency": (_palette_transparent(), "7.png", ((4, 4), (10, 200, 30), (255, 255, 255))),
    "animated": (_animated(), "7.gif", ((8, 8), (255, 0, 0), (255, 0, 0))),
    "exif-rotated": (_exif_rotated(), "7.jpg", ((10, 20), None, None)),
}


@pytest.mark.parametrize("case", sorted(ACCEPTED_IMAGES))
def test_accepted_image_is_converted_to_rgb(tmp_path, case):
    data, name, (size, p00, p11) = ACCEPTED_IMAGES[case]
    code, rep, _ = _validate_one_image(tmp_path, data, name)
    assert code == 0 and rep["issues"] == []
    img = ImageStore(tmp_path / "img").open("7")
    assert img.mode == "RGB" and img.size == size
    close = lambda a, b: all(abs(x - y) <= 3 for x, y in zip(a, b))  # noqa: E731  (JPEG rounding)
    if p00 is not None:
        assert close(img.getpixel((0, 0)), p00) and close(img.getpixel((1, 1)), p11)


def test_image_a_directory_a_link_loop_and_an_outside_path(tmp_path):
    images = tmp_path / "img"
    images.mkdir()
    (images / "d.jpg").mkdir()
    (images / "loop.jpg").symlink_to("loop.jpg")
    random_image(0).save(tmp_path / "secret.jpg")
    corpus = write(tmp_path / "t.conll", "# image = d.jpg\nA\tO\n\n# image = loop.jpg\nB\tO\n\n"
                                         "# image = ../secret.jpg\nC\tO\n\n")
    code, out, err = run("data", "validate", corpus, "--images", images, "--json")
    got = [(i["line"], i["code"], i["message"].split(":", 1)[0]) for i in json.loads(out)["issues"]]
    assert code == 1 and got == [(2, "image-not-a-file", "image not-a-file"), (5, "image-not-a-file", "image not-a-file"),
                                 (8, "image-outside", "image outside")]


# ================================================================================ data files
def _validate(tmp_path, name: str, data: bytes | str, *extra) -> tuple[int, dict, Path]:
    path = write(tmp_path / name, data)
    code, out, err = run("data", "validate", path, "--json", *extra)
    assert "Traceback" not in err
    return code, (json.loads(out) if out else {"err": err}), path


def _issues(rep: dict) -> list[tuple]:
    return [(i["line"], i["code"]) for i in rep["issues"]]


def test_data_non_utf8_bytes(tmp_path):
    path = write(tmp_path / "x.txt", b"IMGID:1\nNov\xe9\tB-PER\n\n")
    code, out, err = run("data", "validate", path)
    assert code == 2 and f"{path}:2: not valid UTF-8 (byte 0xe9 at offset 11) (re-encode the file as UTF-8)" in one_line_error(err)


def test_data_bom_and_crlf_read_as_without(tmp_path):
    plain = write(tmp_path / "p.txt", "IMGID:1\nNova\tB-PER\nin\tO\n\n")
    both = write(tmp_path / "b.txt", b"\xef\xbb\xbf" + plain.read_bytes().replace(b"\n", b"\r\n"))
    assert read_file(both) == read_file(plain)
    code, rep, _ = _validate(tmp_path, "b2.txt", both.read_bytes())
    assert code == 0 and rep["issues"] == []


def test_data_tabless_line(tmp_path):
    code, rep, path = _validate(tmp_path, "t.txt", "IMGID:1\nNova B-PER\nin\tO\n\n")
    assert code == 1 and _issues(rep) == [(2, "format")]
    assert "expected token<TAB>tag" in rep["issues"][0]["message"] and "separate the columns with a TAB" in rep["issues"][0]["message"]


def test_data_extra_columns(tmp_path):
    code, rep, _ = _validate(tmp_path, "t.txt", "IMGID:1\nNova\tB-PER\nin\tO\tO\n\n")
    assert code == 1 and _issues(rep) == [(3, "format")] and "same columns" in rep["issues"][0]["message"]


def test_data_empty_token(tmp_path):
    code, rep, _ = _validate(tmp_path, "t.txt", "IMGID:1\nNova\tB-PER\n\tO\n\n")
    assert code == 1 and _issues(rep) == [(3, "empty-token")] and "give the token" in rep["issues"][0]["message"]


def test_data_unknown_tags(tmp_path):
    code, rep, _ = _validate(tmp_path, "t.txt", "IMGID:1\nNova\tB-PET\nin\tX-LOC\n\n", "--types", "PER,LOC")
    assert code == 1 and _issues(rep) == [(3, "bad-tag"), (2, "unknown-type")]
    assert "--map-types" in rep["issues"][1]["message"] and "'X-LOC'" in rep["issues"][0]["message"]


def test_data_orphan_i_is_a_warning_that_strict_fails(tmp_path):
    code, rep, _ = _validate(tmp_path, "t.txt", "IMGID:1\nin\tO\nParis\tI-LOC\n\n")
    assert code == 0 and _issues(rep) == [(3, "orphan-i")] and "conlleval" in rep["issues"][0]["message"]
    code, rep, _ = _validate(tmp_path, "t.txt", "IMGID:1\nin\tO\nParis\tI-LOC\n\n", "--strict")
    assert code == 1 and not rep["ok"]


def test_data_thousand_token_tweet_every_token_tagged(tmp_path, model_dir):
    tags = ["B-PER", "I-PER", "O", "B-LOC"] * 250
    lines = "".join(f"w{i}\t{t}\n" for i, t in enumerate(tags))
    code, rep, path = _validate(tmp_path, "long.txt", f"IMGID:1\n{lines}\n")
    assert code == 0 and rep["tweets"] == {"long": 1} and len(read_file(path)[0].tokens) == 1000
    # the tiny model (64 positions) tags every word of it: long texts are encoded in windows
    inputs = write(tmp_path / "long.jsonl", json.dumps({"id": "1", "tokens": [f"w{i}" for i in range(1000)]}) + "\n")
    code, out, err = run("predict", model_dir, "--input", inputs, "--missing-images", "blank")
    assert code == 0, err
    ents = json.loads(out)["entities"]
    assert all(0 <= e["token_start"] < e["token_end"] <= 1000 for e in ents)


def test_data_empty_tweet(tmp_path):
    code, rep, _ = _validate(tmp_path, "t.txt", "IMGID:1\nNova\tB-PER\n\nIMGID:2\n\n")
    assert code == 1 and _issues(rep) == [(5, "empty-tweet")] and "add its token lines" in rep["issues"][0]["message"]


def test_data_imgid_without_id(tmp_path):
    code, rep, _ = _validate(tmp_path, "t.txt", "IMGID:\nNova\tB-PER\n\n")
    assert code == 1 and _issues(rep) == [(1, "format")] and "give each tweet its image id" in rep["issues"][0]["message"]


def test_data_no_trailing_newline(tmp_path):
    code, rep, path = _validate(tmp_path, "t.txt", "IMGID:1\nNova\tB-PER")
    assert code == 0 and _issues(rep) == [(None, "no-final-blank-line")]
    assert read_file(path)[0].tokens == ("Nova",)


@pytest.mark.parametrize("data, said", [(b"", "the file is empty (0 bytes)"), (b"\n", "no tweet in the file (1 bytes)"),
                                        (b"x", "expected token<TAB>tag")])
def test_data_zero_and_one_byte_files(tmp_path, data, said):
    code, rep, path = _validate(tmp_path, "t.txt", data)
    assert code == 1 and said in rep["issues"][0]["message"]


# ================================================================================ JSONL inputs
@pytest.mark.parametrize("line, said", [
    ("{oops", "not valid JSON: Expecting property name enclosed in double quotes (one JSON object per line)"),
    ("[1, 2]", "expected a JSON object"),
    ('{"id": "a"}', "missing field 'tokens' (each line needs \"tokens\" (a list of words) or \"text\")"),
    ('{"id": "a", "text": ["Nova"]}', 'field "text" must be a string, got an array ["Nova"] (fix the "text" of this line)'),
])
def test_jsonl_input_lines(tmp_path, model_dir, line, said):
    inputs = write(tmp_path / "in.jsonl", '{"text": "fine"}\n' + line + "\n")
    code, out, err = run("predict", model_dir, "--input", inputs)
    assert code == 2 and out == "" and f"{inputs}:2: {said}" in one_line_error(err)


# ================================================================================ checkpoints
@pytest.fixture
def copied_model(model_dir, tmp_path) -> Path:
    return Path(shutil.copytree(model_dir, tmp_path / "ck"))


def _predict_error(folder: Path) -> str:
    code, out, err = run("predict", folder, "--text", "Nova in Paris")
    assert code == 2 and out == ""
    return one_line_error(err)


def test_checkpoint_pickle_as_safetensors(copied_model):
    torch.save({"w": torch.zeros(2)}, copied_model / "model.safetensors")
    err = _predict_error(copied_model)
    assert f"{copied_model / 'model.safetensors'}: a pickle (torch.save) under a safetensors name" in err
    assert "safetensors.torch.save_file" in err


def test_checkpoint_truncated_weights(copied_model):
    weights = copied_model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    err = _predict_error(copied_model)
    assert f"{weights}: not a readable safetensors file" in err and "save or copy it again" in err


def test_checkpoint_unknown_model_type(copied_model):
    cfg = json.loads((copied_model / "config.json").read_text())
    (copied_model / "config.json").write_text(json.dumps({**cfg, "model_type": "gpt-17"}))
    err = _predict_error(copied_model)
    assert f"{copied_model}: unknown model type 'gpt-17'; this mner knows [" in err and "'maf'" in err


def test_checkpoint_config_not_json(copied_model):
    (copied_model / "config.json").write_text("model_type: maf\n")
    assert f"{copied_model / 'config.json'}: not valid JSON" in _predict_error(copied_model)


def test_checkpoint_folder_without_config(copied_model):
    (copied_model / "config.json").unlink()
    err = _predict_error(copied_model)
    assert f"{copied_model}: not an mner model folder (expected config.json and model.safetensors" in err


# ================================================================================ configs
@pytest.mark.parametrize("content, said", [
    ("model:\n  visual_veiw: pixels\n", "unknown config key model.visual_veiw; known keys of model: "),
    ("model: [\n  a: b\n", ":3: not valid YAML"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", ": not a text file (byte 0x89 at offset 0 is not UTF-8); give a YAML config file"),
    ("- 1\n- 2\n", ": the top level must be a mapping (model:, data:, training:)"),
])
def test_config_files(tmp_path, content, said):
    cfg = write(tmp_path / "c.yaml", content)
    code, out, err = run("train", cfg)
    line = one_line_error(err)
    assert code == 2 and said in line
    if said.startswith(":"):
        assert f"{cfg}{said}" in line
