"""Issue 8, faults: training killed with SIGKILL at six points across two epochs, and full disks.

The kills are real: the run goes on in a forked child process, which sends itself SIGKILL at the
chosen point (after a step, in the middle of writing a checkpoint, between the two renames that
put a checkpoint in place). After every kill the run folder is inspected (every checkpoint under
its own name loads; the rest is only temporary folders), then the run is resumed and must end
with exactly the metrics and the weights of an uninterrupted run.

The full disks are real too where it is cheap: a forked child with a file-size limit
(``RLIMIT_FSIZE``: a write past it fails with EFBIG, as a full disk fails with ENOSPC), and a
write monkeypatched to fail with ENOSPC half-way. Each gives a one-line error naming the file or
folder, and what was there before is untouched.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import multiprocessing
import os
import resource
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import mner.models.checkpoint as checkpoint
from mner.cli import main
from mner.data.prepare import DataConfig, prepare_data
from mner.encoders.cache import FeatureCache
from mner.models import MAFModel, load_model
from mner.models.checkpoint import CheckpointError
from model_fixtures import encoders, maf_config, one_thread, sample_paths  # noqa: F401  (fixtures)

pytestmark = pytest.mark.usefixtures("one_thread")
FORK = multiprocessing.get_context("fork")


def _quiet(*_args) -> None:
    pass


@pytest.fixture(scope="module")
def sample_data():
    paths = sample_paths()
    cfg = DataConfig(corpus=str(paths["tweets"]), images=str(paths["images"]), captions=None,
                     missing_images="blank", feature_cache=None)
    return prepare_data(cfg, needs_images=True, log=_quiet)


def _trainer(encoders, data, out: Path, on_step_end=()):
    """Two epochs of three steps on the sample corpus, a checkpoint after every step, resuming."""
    from mner.evaluation import dev_metrics
    from mner.training import Trainer, TrainingConfig

    torch.manual_seed(0)
    model = MAFModel(maf_config(encoders, negative_fraction=0.5))
    # as `mner train` does (mner.experiment): the frozen features of every split computed first, in
    # file order, so that they do not depend on which batches a killed run had seen (a frozen
    # encoder's output moves in the last bits with the batch it is computed in)
    processor = model.processor(data.image_store, FeatureCache())
    for exs in data.splits.values():
        processor.precompute(exs, progress=False)
    config = TrainingConfig(output_dir=str(out), epochs=2, batch_size=4, eval_batch_size=16, learning_rate=1e-3,
                            head_learning_rate=3e-3, seed=3, save_every_steps=1, resume=True, cpu=True,
                            progress=False, tensorboard=False, log_every=1)
    valid = data.splits["valid"]
    return Trainer(model, config, data.splits["train"], valid,
                   processor.collate(train=True), processor.collate(train=False), dev_metrics(valid),
                   on_step_end=list(on_step_end))


def _kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _kill_after_step(step: int):
    def callback(trainer):
        if trainer.global_step == step:
            _kill_self()
    return [callback]


def _patch_kill_in_save_state(nth: int) -> None:
    """SIGKILL inside the ``nth`` training-state write (the model of that save is written, its
    optimizer state half)."""
    import mner.training.trainer as trainer_module

    real, calls = trainer_module.save_training_state, {"n": 0}

    def save(folder, components):
        calls["n"] += 1
        if calls["n"] == nth:
            (Path(folder) / "training_state.safetensors").write_bytes(b"half")
            _kill_self()
        return real(folder, components)

    trainer_module.save_training_state = save


def _patch_kill_between_renames(name: str, nth: int) -> None:
    """SIGKILL between the two renames of the ``nth`` save of ``<run>/<name>``: the previous
    folder is moved aside, the new one not yet in place."""
    real, calls = checkpoint.replace_folder, {"n": 0}

    def replace(source: Path, target: Path) -> None:
        if target.name == name:
            calls["n"] += 1
            if calls["n"] == nth and target.exists():
                os.replace(target, target.with_name(f".{target.name}.old-deadbeef"))
                _kill_self()
        return real(source, target)

    checkpoint.replace_folder = replace


#: where the run is killed: (name, after-step callback step, patch)
KILL_POINTS = {
    "after step 1 (epoch 1, before any checkpoint)": (1, None),
    "while writing the checkpoint of step 2": (None, lambda: _patch_kill_in_save_state(2)),
    "after step 3 (end of epoch 1, before its evaluation)": (3, None),
    "between the renames of the epoch-1 save of last/": (None, lambda: _patch_kill_between_renames("last", 3)),
    "after step 5 (epoch 2)": (5, None),
    "while writing the final checkpoint (step 6)": (None, lambda: _patch_kill_in_save_state(6)),
}


def _run_killed(encoders, data, out: Path, point: str) -> int:
    step, patch = KILL_POINTS[point]

    def child() -> None:
        if patch is not None:
            patch()
        _trainer(encoders, data, out, _kill_after_step(step) if step else ()).train()
        os._exit(0)

    proc = FORK.Process(target=child)
    proc.start()
    proc.join(300)
    if proc.is_alive():
        proc.kill()
        pytest.fail(f"{point}: the run hung")
    return proc.exitcode


def _inspect(run: Path, point: str) -> None:
    """Every checkpoint under its own name is complete and loads; everything else is a temporary
    folder of a save (``.last.tmp-*``, ``..last.tmp-*``) or a complete previous one (``.last.old-*``)."""
    for entry in run.iterdir():
        if entry.name in ("last", "best"):
            load_model(entry)
            if entry.name == "last":
                state = json.loads((entry / "trainer_state.json").read_text())
                assert int((entry / "COMPLETE").read_text()) == state["trainer"]["global_step"], point
        elif entry.name.startswith("."):
            assert ".tmp-" in entry.name or ".old-" in entry.name, (point, entry.name)
            if ".old-" in entry.name:
                load_model(entry)
        else:
            assert entry.is_file() and entry.name in ("metrics.jsonl",), (point, entry.name)
            for line in entry.read_text().splitlines():
                json.loads(line)


def _comparable(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if "seconds" not in k and "per_second" not in k} for r in history]


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys()
    differ = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not differ, f"{len(differ)} of {len(wa)} tensors differ, e.g. {differ[:3]}"


@pytest.fixture(scope="module")
def uninterrupted(encoders, sample_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    result = _trainer(encoders, sample_data, out).train()
    assert result.global_step == 6 and result.epochs_run == 2
    return out, result


def test_kill_and_resume_equals_an_uninterrupted_run(encoders, sample_data, uninterrupted, tmp_path):
    reference, expected = uninterrupted
    for k, point in enumerate(KILL_POINTS):
        run = tmp_path / f"run{k}"
        assert _run_killed(encoders, sample_data, run, point) == -signal.SIGKILL, point
        assert not (run / "train_result.json").exists(), point
        _inspect(run, point)
        result = _trainer(encoders, sample_data, run).train()
        assert (result.global_step, result.epochs_run, result.best_epoch) == \
               (expected.global_step, expected.epochs_run, expected.best_epoch), point
        assert result.best_metric == expected.best_metric, point
        assert _comparable(result.history) == _comparable(expected.history), point
        _same_weights(run / "last", reference / "last")
        _same_weights(run / "best", reference / "best")
        assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == [], point


# ================================================================================ full disks
def _in_limited_child(limit: int, fn) -> tuple[int, str, str]:
    """``fn()`` (an exit code) in a forked child whose files may not grow past ``limit`` bytes;
    (exit code, stdout, stderr)."""
    queue = FORK.Queue()

    def child() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = fn()
            except SystemExit as exc:
                code = exc.code
            except Exception as exc:  # noqa: BLE001 - reported to the parent
                code, _ = 99, err.write(f"{type(exc).__name__}: {exc}")
        queue.put((code, out.getvalue(), err.getvalue()))

    proc = FORK.Process(target=child)
    proc.start()
    got = queue.get(timeout=300)
    proc.join(60)
    return got


@pytest.fixture(scope="module")
def saved_model(encoders, tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return MAFModel(maf_config(encoders)).save_pretrained(tmp_path_factory.mktemp("saved") / "model")


def test_disk_full_while_saving_a_model_keeps_the_previous_one(encoders, saved_model, tmp_path, monkeypatch):
    before = load_file(str(saved_model / "model.safetensors"))
    torch.manual_seed(1)
    other = MAFModel(maf_config(encoders))

    def save():
        try:
            other.save_pretrained(saved_model)
        except CheckpointError as err:
            print(err, file=__import__("sys").stderr)
            return 2
        return 0

    code, out, err = _in_limited_child(20_000, save)  # the weights are larger
    assert code == 2, err
    assert err.startswith(f"{saved_model}: could not save (File too large); nothing was replaced: the checkpoint "
                          "already there is untouched; free some space")
    _same_weights_as(saved_model, before)
    assert [p.name for p in saved_model.parent.iterdir()] == ["model"]

    # ENOSPC half-way through the weights, in process
    def half_then_full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\0" * 100)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)

    monkeypatch.setattr(checkpoint, "save_file", half_then_full)
    with pytest.raises(CheckpointError, match=r"could not save \(No space left on device\); nothing was replaced"):
        other.save_pretrained(saved_model)
    _same_weights_as(saved_model, before)
    assert [p.name for p in saved_model.parent.iterdir()] == ["model"]
    # a model that never was saved: said so
    with pytest.raises(CheckpointError, match="no folder was written"):
        other.save_pretrained(tmp_path / "new")
    assert not (tmp_path / "new").exists() and list(tmp_path.iterdir()) == []


def _same_weights_as(folder: Path, weights: dict) -> None:
    loaded = load_model(folder).state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in weights.items())


def test_disk_full_while_writing_predictions(saved_model, tmp_path):
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps({"id": str(i), "text": f"Nova meets Kira in Paris number {i}"}) + "\n"
                              for i in range(40)))
    output = tmp_path / "out.jsonl"
    output.write_text("previous complete output\n")
    argv = ["predict", str(saved_model), "--input", str(inputs), "--output", str(output)]
    code, out, err = _in_limited_child(1000, lambda: main(argv))
    assert code == 2, err
    assert f"mner: error: {output}: could not write the predictions (File too large); nothing was written there" in err
    assert output.read_text() == "previous complete output\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]
    # with room, the whole file, renamed into place
    assert main(argv) == 0 and len(output.read_text().splitlines()) == 40


def test_disk_full_while_converting_data(tmp_path):
    source = tmp_path / "a.txt"
    source.write_text("".join(f"IMGID:{i}\nNova\tB-PER\nin\tO\nParis\tB-LOC\n\n" for i in range(200)))
    target = tmp_path / "a.jsonl"
    code, out, err = _in_limited_child(2000, lambda: main(["data", "convert", str(source), str(target)]))
    assert code == 2 and f"mner: error: {target}: could not write (File too large); nothing was written there" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_predict_output_that_is_a_folder(saved_model, tmp_path):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["predict", str(saved_model), "--text", "Nova", "--output", str(tmp_path)])
    assert code == 2 and f"--output {tmp_path}: is a folder; give a file name" in err.getvalue()
