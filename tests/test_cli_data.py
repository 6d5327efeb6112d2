"""``mner data stats|validate|convert|sample`` and ``mner score`` end to end (in-process)."""

from __future__ import annotations

import json

import pytest

from mner.cli import main
from mner.data.captions import CaptionStore, attach_captions
from mner.data.formats import DataFormatError, read_file
from mner.resources import sample_corpus_dir

SAMPLE = sample_corpus_dir()
SAMPLE_IMAGES = SAMPLE.parent / "images"


def run_json(capsys, *argv) -> tuple[int, dict]:
    code = main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_sample_stats(capsys):
    code, out = run_json(capsys, "data", "stats", str(SAMPLE), "--images", str(SAMPLE_IMAGES))
    assert code == 0
    s = out["splits"]
    assert [s[k]["tweets"] for k in ("train", "valid", "test")] == [12, 4, 6]
    assert s["test"]["entities_b"] == {"LOC": 6, "MISC": 1, "ORG": 2, "PER": 3}
    # the orphan I-ORG of tweet s106 is no B- but is a conlleval entity
    assert s["train"]["orphan_i"] == 1
    assert s["train"]["total_entities_conlleval"] == s["train"]["total_b"] + 1
    assert s["valid"]["images"] == {"found": 3, "missing": 1, "no_image": 0}
    assert s["train"]["captions"]["found"] == 12
    assert any("found next to the corpus" in n for n in out["notes"])


def test_stats_table_names_columns(capsys):
    assert main(["data", "stats", str(SAMPLE), "--captions", "none"]) == 0
    out = capsys.readouterr().out
    assert "B-PER" in out and "orphan I-" in out and "captions: not used" in out


def test_twitter2015_counts(capsys, data_dir):
    code, out = run_json(capsys, "data", "stats", str(data_dir / "twitter2015"))
    s = out["splits"]
    assert [s[k]["tweets"] for k in ("train", "valid", "test")] == [4000, 1000, 3257]
    assert [s[k]["total_b"] for k in ("train", "valid", "test")] == [6166, 1541, 5072]
    assert s["test"]["total_entities_conlleval"] == 5207
    assert s["test"]["captions"]["missing"] == 0
    assert s["train"]["captions"]["empty"] == 1 and s["valid"]["captions"]["empty"] == 1
    assert s["test"]["entities_b"] == {"LOC": 1697, "ORG": 839, "OTHER": 720, "PER": 1816}


def test_validate_sample(capsys):
    code, out = run_json(capsys, "data", "validate", str(SAMPLE))
    assert code == 0 and out["ok"]
    codes = {(i["code"], i["tweet"], i["line"]) for i in out["issues"]}
    assert ("orphan-i", "s106", 57) in codes
    assert ("invisible-token", "s109", 92) in codes
    # warnings fail under --strict
    assert main(["data", "validate", str(SAMPLE), "--strict"]) == 1
    capsys.readouterr()
    # the missing image of s204 is an error under the default policy, a warning under blank
    code, out = run_json(capsys, "data", "validate", str(SAMPLE), "--images", str(SAMPLE_IMAGES))
    missing = [i for i in out["issues"] if i["code"] == "image-missing"]
    assert code == 1 and [(i["tweet"], i["severity"]) for i in missing] == [("s204", "error")]
    code, out = run_json(capsys, "data", "validate", str(SAMPLE), "--images", str(SAMPLE_IMAGES),
                         "--missing-images", "blank")
    assert code == 0


def test_validate_reports_every_problem_with_lines(tmp_path, capsys):
    (tmp_path / "train.txt").write_text(
        "IMGID:1\nParis\tB-LOC\n\tO\nx\tX-PER\n\n"
        "IMGID:1\nbad line\n\n"
        "IMGID:2\nfoo\tB-PER\n"
    )
    (tmp_path / "test.txt").write_text("IMGID:2\nfoo\tB-PER\n\n")
    code, out = run_json(capsys, "data", "validate", str(tmp_path), "--captions", "none")
    assert code == 1
    found = {(i["code"], i["line"]) for i in out["issues"]}
    assert ("empty-token", 3) in found
    assert ("bad-tag", 4) in found
    assert ("format", 7) in found
    assert ("duplicate-id", None) not in found and any(c == "duplicate-id" for c, _ in found)
    assert any(c == "image-in-two-splits" for c, _ in found)
    assert ("no-final-blank-line", None) in found
    # text output: one line per issue with file:line
    assert main(["data", "validate", str(tmp_path), "--captions", "none"]) == 1
    text = capsys.readouterr().out
    assert f"{tmp_path / 'train.txt'}:3:" in text and "result: FAILED" in text


def test_score_gold_against_itself_and_predictions(capsys):
    gold = SAMPLE / "test.txt"
    code, out = run_json(capsys, "score", str(gold), str(gold))
    assert code == 0 and out["f1"] == 1.0 and out["mode"] == "conlleval"
    pred = SAMPLE.parent / "predictions" / "test.txt"
    code, out = run_json(capsys, "score", str(gold), str(pred))
    # 12 gold entities; 13 predicted (B-ORG I-LOC on "Apple Park" is two chunks), 9 correct
    assert (out["precision"], out["recall"]) == (9 / 13, 9 / 12)
    code, out = run_json(capsys, "score", str(gold), str(pred), "--mode", "strict")
    assert (out["precision"], out["recall"]) == (9 / 12, 9 / 12)  # the orphan I-LOC is no entity
    assert main(["score", str(gold), str(pred)]) == 0
    text = capsys.readouterr().out
    assert "mode: conlleval" in text


def test_score_refuses_mismatched_files(tmp_path, capsys):
    (tmp_path / "g.txt").write_text("IMGID:1\nNew\tB-LOC\nYork\tI-LOC\n\n")
    (tmp_path / "p.txt").write_text("IMGID:1\nNew\tB-LOC\nYork!\tI-LOC\n\n")
    (tmp_path / "q.txt").write_text("IMGID:9\nNew\tB-LOC\nYork\tI-LOC\n\n")
    assert main(["score", str(tmp_path / "g.txt"), str(tmp_path / "p.txt")]) == 2
    assert "tweet 1: tokens differ at position 1" in capsys.readouterr().err
    assert main(["score", str(tmp_path / "g.txt"), str(tmp_path / "q.txt")]) == 2
    assert "different tweets" in capsys.readouterr().err


def test_score_single_file_with_gold_and_pred_columns(tmp_path, capsys):
    (tmp_path / "gp.conll").write_text("New\tB-LOC\tB-LOC\nYork\tI-LOC\tO\n\n")
    code, out = run_json(capsys, "score", str(tmp_path / "gp.conll"), "--mode", "strict")
    assert code == 0 and out["mode"] == "strict" and out["precision"] == 0.0 and out["recall"] == 0.0


def _fields(examples) -> list[tuple]:
    return [(e.id, e.tokens, e.tags, e.image) for e in examples]


def test_convert_and_sample(tmp_path, capsys):
    original = read_file(SAMPLE / "train.txt")
    assert len(original) == 12 and all(e.tags for e in original) and any(e.image for e in original)
    assert main(["data", "convert", str(SAMPLE / "train.txt"), str(tmp_path / "t.jsonl")]) == 0
    assert "wrote 12 tweets" in capsys.readouterr().out
    assert _fields(read_file(tmp_path / "t.jsonl")) == _fields(original)
    # and back: the round trip loses nothing either
    assert main(["data", "convert", str(tmp_path / "t.jsonl"), str(tmp_path / "back.txt")]) == 0
    assert _fields(read_file(tmp_path / "back.txt")) == _fields(original)
    capsys.readouterr()
    # `sample` without --out prints where the bundled corpus is; with --out copies it unchanged
    assert main(["data", "sample"]) == 0
    assert capsys.readouterr().out.strip() == str(SAMPLE)
    assert main(["data", "sample", "--out", str(tmp_path / "s")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "s")
    bundled = sorted(p.name for p in SAMPLE.iterdir())
    assert bundled == ["test.txt", "train.txt", "valid.txt"]
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == bundled
    for name in bundled:
        assert (tmp_path / "s" / name).read_bytes() == (SAMPLE / name).read_bytes(), name


@pytest.mark.parametrize("command", ["stats", "validate"])
def test_missing_path_is_one_clear_line(tmp_path, capsys, command):
    assert main(["data", command, str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mner: error:") and "no such file or folder" in err
    # an existing folder without split files is told apart
    assert main(["data", command, str(tmp_path), "--captions", "none"]) == 2
    assert "no train/valid/test files found" in capsys.readouterr().err


def test_caption_store_parses_the_release_format(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("10.jpg :a dog on a beach\n11.jpg :\n")
    store = CaptionStore.from_file(p)
    assert store.get_caption("10") == "a dog on a beach" and store.get_caption("11.jpg") == ""
    exs, rep = attach_captions(read_file(SAMPLE / "valid.txt"), store)
    assert rep.found == 0 and len(rep.missing) == 4
    p.write_text("10.jpg :a\n10.jpg :b\n")
    with pytest.raises(ValueError, match="two different captions"):
        CaptionStore.from_file(p)


def test_validate_malformed_i_tag_is_an_error_not_an_orphan(tmp_path, capsys):
    (tmp_path / "train.txt").write_text("IMGID:1\nParis\tI-\nis\tO\nnice\tI-LOC\n\n")
    code, out = run_json(capsys, "data", "validate", str(tmp_path / "train.txt"), "--captions", "none")
    found = {(i["code"], i["severity"], i["line"]) for i in out["issues"]}
    assert code == 1
    assert ("bad-tag", "error", 2) in found and ("orphan-i", "warning", 2) not in found
    assert ("orphan-i", "warning", 4) in found


@pytest.mark.parametrize("name, text", [
    ("g.jsonl", '{"id": "1", "tokens": ["New", "York"], "tags": ["B-LOC", "I-LOC"]}\n'),
    ("g.txt", "IMGID:1\nNew\tB-LOC\nYork\tI-LOC\n\n"),
])
def test_score_single_file_without_pred_column_is_refused(tmp_path, capsys, name, text):
    (tmp_path / name).write_text(text)
    assert main(["score", str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / name) in err and "no gold+pred columns" in err


def test_caption_file_bom_and_bad_utf8(tmp_path):
    p = tmp_path / "c.txt"
    p.write_bytes("\ufeff10.jpg :a dog\r\n11.png :a cat\r\n".encode("utf-8"))
    store = CaptionStore.from_file(p)
    assert store.get_caption("10") == "a dog" and store.get_caption("11") == "a cat"
    assert sorted(store) == ["10", "11"]
    p.write_bytes(b"10.jpg :a dog\n11.jpg :caf\xe9\n")
    with pytest.raises(DataFormatError, match="not valid UTF-8") as err:
        CaptionStore.from_file(p)
    assert err.value.file == str(p) and err.value.line == 2


def test_validate_reads_with_format_and_map_types(tmp_path, capsys):
    (tmp_path / "train.txt").write_text("IMGID:1\n#Hopkins\tB-OTHER\nrocks\tO\n\n")
    argv = ["data", "validate", str(tmp_path), "--captions", "none", "--types", "PER,LOC,ORG,MISC"]
    code, out = run_json(capsys, *argv)
    assert code == 1 and [i["code"] for i in out["issues"]] == ["unknown-type"]
    code, out = run_json(capsys, *argv, "--map-types", "other-to-misc")
    assert code == 0 and out["issues"] == []
    # a CoNLL file whose first token is "{" is detected as JSONL; --format says otherwise
    (tmp_path / "train.txt").unlink()
    (tmp_path / "train.conll").write_text("{\tO\nParis\tB-LOC\n}\tO\n\n")
    code, out = run_json(capsys, "data", "validate", str(tmp_path), "--captions", "none")
    assert code == 1 and out["issues"][0]["code"] == "format"
    code, out = run_json(capsys, "data", "validate", str(tmp_path), "--captions", "none",
                         "--format", "conll")
    assert code == 0 and out["issues"] == [] and out["tweets"] == {"train": 1}


def test_each_file_format_is_detected_once(monkeypatch, capsys):
    import mner.cli.data
    import mner.data.corpus
    import mner.data.formats
    import mner.data.validate

    real = mner.data.formats.detect_format
    calls: list[str] = []

    def counting(path):
        calls.append(str(path))
        return real(path)

    for mod in (mner.data.formats, mner.data.corpus, mner.data.validate, mner.cli.data):
        if hasattr(mod, "detect_format"):
            monkeypatch.setattr(mod, "detect_format", counting)
    files = sorted(str(SAMPLE / f"{s}.txt") for s in ("train", "valid", "test"))
    for cmd in ("validate", "stats"):
        calls.clear()
        main(["data", cmd, str(SAMPLE), "--images", str(SAMPLE_IMAGES), "--json"])
        capsys.readouterr()
        assert sorted(calls) == files, cmd


def test_validate_finds_captions_as_training_does(tmp_path, capsys):
    # the image has no caption, the tweet id has one: attach_captions falls back to it
    (tmp_path / "train.conll").write_text(
        "# id = t1\n# image = pic9.jpg\nParis\tB-LOC\n\n"
        "# id = t2\n# image = pic8.jpg\nRome\tB-LOC\n\n"
    )
    caps = tmp_path / "caps.txt"
    caps.write_text("t1.jpg :a street\n")
    exs, rep = attach_captions(read_file(tmp_path / "train.conll"), CaptionStore.from_file(caps))
    assert rep.found == 1 and rep.missing == ["t2"]
    code, out = run_json(capsys, "data", "validate", str(tmp_path), "--captions", str(caps))
    assert [(i["code"], i["tweet"]) for i in out["issues"]] == [("caption-missing", "t2")]


def test_stats_takes_no_missing_image_policy(capsys):
    # stats counts found and missing images; it applies no policy, so it takes none
    with pytest.raises(SystemExit):
        main(["data", "stats", str(SAMPLE), "--images", str(SAMPLE_IMAGES), "--missing-images", "drop"])
    assert "unrecognized arguments: --missing-images" in capsys.readouterr().err


@pytest.mark.parametrize("name, text, bad_line", [
    ("train.txt", "IMGID:1\nParis\tB-LOC\nbad line\nx\tX-PER\n\n", 4),
    ("train.conll", "Paris\tB-LOC\nbadline\nx\tX-PER\n\n", 3),
    ("train.jsonl", '{"id": "1", "tokens": ["Paris"], "tags": ["B-LOC"]}\nnot json\n'
                    '{"id": "2", "tokens": ["a", "x"], "tags": ["O", "X-PER"]}\n', 3),
])
def test_validate_lines_after_a_skipped_line(tmp_path, capsys, name, text, bad_line):
    (tmp_path / name).write_text(text)
    code, out = run_json(capsys, "data", "validate", str(tmp_path / name), "--captions", "none")
    found = {(i["code"], i["line"]) for i in out["issues"]}
    assert ("format", bad_line - 1) in found and ("bad-tag", bad_line) in found


def test_readers_record_each_token_line(tmp_path):
    p = tmp_path / "t.conll"
    p.write_text("# id = a\nNew\tB-LOC\n-DOCSTART-\nYork\tI-LOC\n\nx\tO\n")
    lines: list = []
    exs = read_file(p, token_lines=lines)
    assert [e.id for e in exs] == ["a", "2"] and lines == [(2, 4), (6,)]
