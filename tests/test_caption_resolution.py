"""One caption-option resolver (none / auto / a path) for every command and prepare_data."""

from __future__ import annotations

import json

import pytest

from mner.cli import main
from mner.data.captions import CaptionStore, resolve_caption_file
from mner.data.prepare import DataConfig, prepare_data
from mner.resources import sample_corpus_dir

SAMPLE = sample_corpus_dir()


@pytest.mark.parametrize("spec", [None, "none", "None", "NONE", " none "])
def test_none_in_any_case_means_no_captions(spec):
    assert resolve_caption_file(spec, SAMPLE) == (None, "captions: not used")


@pytest.mark.parametrize("spec", ["auto", "Auto"])
def test_auto_looks_next_to_the_corpus(spec, tmp_path):
    found, note = resolve_caption_file(spec, SAMPLE)
    assert found is not None and found.parent.name == "captions" and "found next to" in note
    # a file of the corpus looks next to its folder
    assert resolve_caption_file(spec, SAMPLE / "test.txt")[0] == found
    assert resolve_caption_file(spec, tmp_path) == (
        None, "captions: none found next to the corpus (give a file: --captions FILE, data.captions)")


def test_a_path_must_exist(tmp_path):
    with pytest.raises(FileNotFoundError, match="caption file not found.*'auto'.*'none'"):
        resolve_caption_file(str(tmp_path / "caps.txt"), SAMPLE)
    (tmp_path / "caps.txt").write_text("1.jpg :x\n")
    assert resolve_caption_file(str(tmp_path / "caps.txt"), SAMPLE)[0] == tmp_path / "caps.txt"


@pytest.mark.parametrize("spec", ["None", "none"])
def test_prepare_data_reads_none_as_no_captions(spec):
    data = prepare_data(DataConfig(test=str(SAMPLE / "test.txt"), captions=spec, feature_cache=None),
                        log=lambda *_: None)
    assert all(ex.caption is None for ex in data.splits["test"])
    assert "captions: not used" in data.notes


def test_prepare_data_and_stats_agree_on_auto(capsys):
    data = prepare_data(DataConfig(corpus=str(SAMPLE), feature_cache=None), log=lambda *_: None)
    found, note = resolve_caption_file("auto", SAMPLE)
    assert found is not None and note in data.notes
    # prepare_data attached the captions of the file that 'auto' found, tweet by tweet
    store = CaptionStore.from_file(found)
    assert set(data.splits) == {"train", "valid", "test"}
    for split, examples in data.splits.items():
        assert examples and [ex.caption for ex in examples] == [store.get_caption(ex.id) for ex in examples], split
        assert all(ex.caption for ex in examples), split
    # `mner data stats` resolves 'auto' to the same file and reports the same captions
    assert main(["data", "stats", str(SAMPLE), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert note in stats["notes"]
    for split, examples in data.splits.items():
        caps = stats["splits"][split]["captions"]
        assert (caps["found"], caps["empty"], caps["missing"]) == (len(examples), 0, 0), split


class _Stop(Exception):
    pass


def test_evaluate_passes_none_in_any_case(monkeypatch, tmp_path):
    """``mner evaluate --captions None`` used to open a file named None."""
    import mner.data.prepare
    import mner.models

    class FakeModel:
        views = ()

    seen = {}

    def stop_after(cfg, **kw):
        seen["data"] = real(cfg, **kw)
        raise _Stop

    real = mner.data.prepare.prepare_data
    import mner.tasks

    monkeypatch.setattr(mner.models, "load_model", lambda _: FakeModel())
    monkeypatch.setattr(mner.tasks, "checkpoint_task", lambda _: (mner.tasks.TASKS["supervised"], "maf"))
    monkeypatch.setattr(mner.data.prepare, "prepare_data", stop_after)
    with pytest.raises(_Stop):
        main(["evaluate", str(tmp_path), str(SAMPLE / "test.txt"), "--captions", "None", "--json"])
    assert all(ex.caption is None for ex in seen["data"].splits["test"])
