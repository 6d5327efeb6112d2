"""Training: the trainer's outputs and early stopping, config errors, the image policies,
learning what only the image tells, two processes, and resuming after a kill."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mner.config import ConfigError
from mner.data.corpus import Corpus
from mner.data.images import ImageStore, MissingImagesError
from mner.demo import build_demo_corpus
from mner.encoders import FeatureCache
from mner.data.prepare import DataConfig, prepare_data
from mner.experiment import load_experiment, train
from mner.models import MAFModel, load_model
from mner.tagging import score
from model_fixtures import (  # noqa: F401  (fixtures)
    LABELS,
    encoders,
    experiment,
    maf_config,
    one_thread,
    read_jsonl,
    sample_paths,
    subprocess_env,
    write_yaml,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _quiet(*_args) -> None:
    pass


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """A small demo corpus: 48 / 16 / 16 tweets."""
    return build_demo_corpus(tmp_path_factory.mktemp("demo"), seed=0, sizes=(48, 16, 16))


def _train_events(run: Path) -> list[dict]:
    return [r for r in read_jsonl(run / "metrics.jsonl") if r["event"] == "train"]


# ============================================================================ the trainer
def test_training_lowers_the_loss_and_writes_its_outputs(encoders, demo, tmp_path):
    run = tmp_path / "run"
    cfg = load_experiment(experiment(encoders, demo, run, images=demo.parent / "images",
                                     training={"epochs": 3, "batch_size": 8}))
    summary = train(cfg, log=_quiet)

    # what it wrote
    for name in ("best/config.json", "best/model.safetensors", "last/COMPLETE", "last/trainer_state.json",
                 "last/training_state.safetensors", "metrics.jsonl", "train_result.json", "experiment.json",
                 "test_report.json", "predictions/test.conll"):
        assert (run / name).is_file(), f"{name} missing"
    result = json.loads((run / "train_result.json").read_text())
    assert result["epochs_run"] == 3 and result["global_step"] == 18 and not result["stopped_early"]
    assert (run / "last" / "COMPLETE").read_text() == "18"
    best = json.loads((run / "best" / "config.json").read_text())
    assert best["trained"]["epoch"] == result["best_epoch"]
    assert best["config"]["labels"] == LABELS
    assert isinstance(load_model(run / "best"), MAFModel) and isinstance(load_model(run), MAFModel)

    # what it logged: every step (log_every 1) with the loss parts, and one evaluation per epoch
    steps = _train_events(run)
    assert [r["step"] for r in steps] == list(range(1, 19))
    assert all({"loss_mner", "loss_ca", "loss_cm", "lr"} <= set(r) for r in steps)
    evals = [r for r in read_jsonl(run / "metrics.jsonl") if r["event"] == "eval"]
    assert [r["epoch"] for r in evals] == [1, 2, 3] and all(0.0 <= r["f1"] <= 1.0 for r in evals)
    first = sum(r["loss"] for r in steps[:3]) / 3
    last = sum(r["loss"] for r in steps[-3:]) / 3
    assert last < 0.7 * first, f"the loss did not go down: {first:.3f} -> {last:.3f}"

    # the summary scores the best model on test, and agrees with what it wrote
    report = json.loads((run / "test_report.json").read_text())
    assert summary["test_f1"] == pytest.approx(report["micro"]["f1"])
    assert summary["best_epoch"] == result["best_epoch"] and summary["epochs_run"] == 3


def test_early_stopping_stops(encoders, demo, tmp_path):
    run = tmp_path / "run"
    # learning rate 0: the dev score never improves after the first epoch
    cfg = load_experiment(experiment(encoders, demo, run, model={"no_image": True},
                                     data={"max_train": 8},
                                     training={"epochs": 6, "learning_rate": 0.0, "head_learning_rate": 0.0,
                                               "early_stopping_patience": 2}))
    summary = train(cfg, log=_quiet)
    result = json.loads((run / "train_result.json").read_text())
    assert result["stopped_early"] is True and result["epochs_run"] == 3 and summary["epochs_run"] == 3
    assert result["best_epoch"] == 1
    assert len([r for r in read_jsonl(run / "metrics.jsonl") if r["event"] == "eval"]) == 3


@pytest.mark.parametrize("raw,key", [
    ({"training": {"epochz": 3}}, "training.epochz"),
    ({"model": {"text_encoder": {"poolin": "mean"}}}, "model.text_encoder.poolin"),
    ({"data": {"imagez": "x"}}, "data.imagez"),
    ({"trainer": {}}, "trainer"),
    ({"training": {"mixed_precision": "fp8"}}, "mixed_precision"),
    ({"training": {"warmup_ratio": 1.5}}, "warmup_ratio"),
    ({"model": {"visual_view": "pictures"}}, "visual_view"),
    ({"model": {"text_encoder": {"pooling": "last"}}}, "pooling"),
    ({"model": {"negative_swap": "text"}}, "negative_swap"),
    ({"model_type": "umt"}, "model_type"),
])
def test_config_errors_name_the_key(raw, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_experiment(raw)


def test_config_overrides_and_yaml_errors(tmp_path):
    cfg = load_experiment({"training": {"epochs": 2}}, ["training.epochs=5", "model.no_image=true",
                                                        "model.text_encoder.casing_dim=8"])
    assert cfg.training.epochs == 5 and cfg.model.no_image is True and cfg.model.text_encoder.casing_dim == 8
    with pytest.raises(ConfigError, match=r"training\.epohcs"):
        load_experiment({}, ["training.epohcs=5"])
    with pytest.raises(ConfigError, match="key=value"):
        load_experiment({}, ["training.epochs"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  epochs: [1,\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:\d+: not valid YAML"):
        load_experiment(bad)


def test_config_value_of_the_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match="epochs"):
        load_experiment({"training": {"epochs": "three"}})


@pytest.mark.parametrize("raw,key", [({"training": {"learning_rate": "fast"}}, "learning_rate"),
                                     ({"data": {"missing_images": "ignore"}}, "missing_images")])
def test_config_bad_values_are_refused_when_loaded(raw, key):
    with pytest.raises(ConfigError, match=key):
        load_experiment(raw)



@pytest.mark.parametrize("env,expected", [("~/mner-cache", "home/mner-cache"), ("", "home/.cache/mner"),
                                          (None, "home/.cache/mner")])
def test_auto_feature_cache_lies_in_the_mner_cache_folder(env, expected, tmp_path, monkeypatch):
    """``feature_cache: auto`` is ``<cache_dir()>/features``: ``~`` in $MNER_CACHE is expanded and an
    empty $MNER_CACHE means the default folder, as for the encoders' cache."""
    from mner.encoders.offline import cache_dir
    from mner.encoders.cache import feature_cache

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if env is None:
        monkeypatch.delenv("MNER_CACHE", raising=False)
    else:
        monkeypatch.setenv("MNER_CACHE", env)
    assert feature_cache("auto").folder == tmp_path / expected / "features" == cache_dir() / "features"


# ============================================================================ missing images
def _sample_data(policy: str, **extra) -> DataConfig:
    paths = sample_paths()
    return DataConfig(corpus=str(paths["tweets"]), images=str(paths["images"]), captions=None,
                      missing_images=policy, feature_cache=None, **extra)


def test_missing_image_error_names_the_tweet():
    with pytest.raises(MissingImagesError, match="s204") as err:
        prepare_data(_sample_data("error"), needs_images=True, log=_quiet)
    assert "--missing-images blank" in str(err.value) and err.value.report.missing == ["s204"]


@pytest.mark.parametrize("policy", ["blank", "drop"])
def test_missing_image_policies_train_and_report(encoders, tmp_path, policy):
    data = prepare_data(_sample_data(policy), needs_images=True, log=_quiet)
    valid = {ex.id: ex for ex in data.splits["valid"]}
    note = next(n for n in data.notes if n.startswith("valid images"))
    assert "1 missing" in note and f"policy {policy!r}" in note
    if policy == "blank":
        assert "1 tweets kept without image" in note
        assert len(valid) == 4 and valid["s204"].image is None
        assert all(ex.image is not None for k, ex in valid.items() if k != "s204")
    else:
        assert "1 tweets dropped" in note
        assert len(valid) == 3 and "s204" not in valid
    assert len(data.splits["train"]) == 12 and len(data.splits["test"]) == 6

    # and a training run goes through, with the counts in its log
    paths = sample_paths()
    lines: list[str] = []
    cfg = load_experiment(experiment(encoders, paths["tweets"], tmp_path / "run", images=paths["images"],
                                     data={"missing_images": policy}))
    summary = train(cfg, log=lambda m: lines.append(str(m)))
    action = "1 tweets kept without image" if policy == "blank" else "1 tweets dropped"
    image_lines = [line for line in lines if " images: " in line]
    assert image_lines == ["train images: 12 found, 0 missing, 0 unreadable",
                           f"valid images: 3 found, 1 missing, 0 unreadable; policy {policy!r}: {action}",
                           "test images: 6 found, 0 missing, 0 unreadable"]
    # the 12 + 3 + 6 images found are encoded once each; the missing one never is
    assert any(line.startswith("feature cache:") and "'misses': 21," in line for line in lines)
    assert summary["dev_f1"] is not None and summary["test_f1"] is not None
    assert json.loads((tmp_path / "run" / "test_report.json").read_text())["n_sequences"] == 6
    assert json.loads((tmp_path / "run" / "experiment.json").read_text())["data"]["missing_images"] == policy


def test_missing_image_error_stops_training(encoders, tmp_path):
    paths = sample_paths()
    cfg = load_experiment(experiment(encoders, paths["tweets"], tmp_path / "run", images=paths["images"],
                                     data={"missing_images": "error"}))
    with pytest.raises(MissingImagesError, match="s204"):
        train(cfg, log=_quiet)
    assert not (tmp_path / "run" / "best").exists()


# ============================================================================ the image matters
def _name_slot(ex) -> int:
    """Position of the made-up name in a demo tweet (the entity only the photo can type)."""
    return next(i for i, (tok, tag) in enumerate(zip(ex.tokens, ex.tags))
                if tag != "O" and tok not in ("London", "Google"))


def _name_f1(examples, predicted) -> float:
    """Entity F1 on the ambiguous names only: every other position is set to O on both sides."""
    gold, pred = [], []
    for ex, tags in zip(examples, predicted):
        i = _name_slot(ex)
        gold.append(["O"] * i + [ex.tags[i]] + ["O"] * (len(ex.tags) - i - 1))
        pred.append(["O"] * i + [tags[i]] + ["O"] * (len(tags) - i - 1))
    return score(gold, pred).micro.f1


def _fit(model, examples, store, steps: int, seed: int) -> None:
    """The same plain loop for both models: AdamW, text encoder at 1e-4, new layers at 3e-3,
    batches of 16 in a seeded order."""
    collate = model.processor(store, FeatureCache()).collate(train=True)
    groups = model.param_groups()
    optim = torch.optim.AdamW([{"params": groups["pretrained"], "lr": 1e-4},
                               {"params": groups["new"], "lr": 3e-3}], weight_decay=0.0)
    order = torch.Generator().manual_seed(seed)
    model.train()
    step = 0
    while step < steps:
        perm = torch.randperm(len(examples), generator=order).tolist()
        for start in range(0, len(examples) - 15, 16):
            loss = model(collate([examples[i] for i in perm[start:start + 16]])).loss
            optim.zero_grad()
            loss.backward()
            optim.step()
            step += 1
            if step == steps:
                return


def test_image_dependent_names_are_learned_only_with_the_image(encoders, tmp_path_factory):
    """In the demo corpus a name's type (PER / LOC / MISC) is decided by the photo alone. With the
    same random tiny encoders and the same 200 steps (~3 s each), MAF (pixels) must type the
    unseen test names far better than the text-only tagger.

    Measured while writing this test (name F1, demo seeds 0-1 x init seeds 0-2): MAF 0.67-0.87,
    text-only 0.18-0.45, the gap never below 0.32. The random tiny CLIP/ViT/ResNet regions are
    photo-specific enough (a linear probe on their mean types 80-90 % of the test photos), while a
    random EfficientNet-Lite0's features are ~1e-9 in size and useless; a text learning rate of
    1e-3 lets the text side memorise the training tweets, and 40 steps are too few.
    """
    data_dir = build_demo_corpus(tmp_path_factory.mktemp("demo192"), seed=0, sizes=(192, 2, 30))
    corpus = Corpus.from_folder(data_dir)
    store = ImageStore(data_dir.parent / "images")
    train_set, test_set = corpus.splits["train"], corpus.splits["test"]
    scores = {}
    for name, options in (("text-only", {"no_image": True}), ("maf", {})):
        torch.manual_seed(0)
        model = MAFModel(maf_config(encoders, image="clip", dropout=0.0, **options))
        _fit(model, train_set, store, steps=200, seed=0)
        collate = model.processor(store).collate(train=False)
        scores[name] = _name_f1(test_set, model.decode(collate(test_set)).tags)
    assert scores["maf"] > scores["text-only"] + 0.2, scores
    assert scores["maf"] >= 0.5, scores


# ============================================================================ two processes
def _launch(args: list[str], tmp: Path, timeout: int = 120, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=tmp, env={**subprocess_env(tmp), **env},
                          capture_output=True, text=True, timeout=timeout)


def _distributed_config(encoders, tmp: Path, trainable: bool = True) -> Path:
    paths = sample_paths()
    cfg = experiment(encoders, paths["tweets"], tmp / "run", images=paths["images"],
                     data={"missing_images": "blank"})
    cfg["model"]["text_encoder"]["trainable"] = trainable
    return write_yaml(tmp / "cfg.yaml", cfg)


def _check_two_process_run(result: subprocess.CompletedProcess, run: Path) -> None:
    assert result.returncode == 0, result.stderr[-3000:]
    assert isinstance(load_model(run / "best"), MAFModel)
    steps = _train_events(run)
    assert steps and all(math.isfinite(r["loss"]) for r in steps)
    state = json.loads((run / "last" / "trainer_state.json").read_text())["trainer"]
    assert state["num_processes"] == 2
    # 12 training tweets split over 2 processes, 4 per batch: 2 steps (one process would take 3)
    assert state["global_step"] == 2 and [r["step"] for r in steps] == [1, 2]
    assert sum(line.startswith("{") for line in result.stdout.splitlines()) >= 1


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _multi_process_launch(cfg: Path) -> list[str]:
    """accelerate's torchrun launcher, on the CPU (no GPU visible, training.cpu: true)."""
    return ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
            "-m", "mner", "train", str(cfg)]


def test_two_processes_train_a_loadable_model(encoders, tmp_path):
    """Two CPU processes, the text encoder frozen."""
    cfg = _distributed_config(encoders, tmp_path, trainable=False)
    result = _launch(_multi_process_launch(cfg), tmp_path, CUDA_VISIBLE_DEVICES="")
    _check_two_process_run(result, tmp_path / "run")


def test_two_processes_fine_tune_the_text_encoder(encoders, tmp_path):
    cfg = _distributed_config(encoders, tmp_path, trainable=True)
    result = _launch(_multi_process_launch(cfg), tmp_path, CUDA_VISIBLE_DEVICES="")
    _check_two_process_run(result, tmp_path / "run")


def test_documented_cpu_launch_runs_two_processes(encoders, tmp_path):
    cfg = _distributed_config(encoders, tmp_path, trainable=False)
    result = _launch(["-m", "accelerate.commands.launch", "--num_processes", "2", "--cpu",
                      "-m", "mner", "train", str(cfg)], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert isinstance(load_model(tmp_path / "run" / "best"), MAFModel)
    assert _train_events(tmp_path / "run")
    _check_two_process_run(result, tmp_path / "run")


# ============================================================================ kill and resume

def _resume_config(encoders, tmp: Path) -> Path:
    paths = sample_paths()
    cfg = experiment(encoders, paths["tweets"], tmp / "unused", images=paths["images"],
                     model={"negative_fraction": 0.5},  # a batch of 4 gets one swapped pair
                     data={"missing_images": "blank"},
                     training={"epochs": 4, "save_every_steps": 1, "resume": True})
    return write_yaml(tmp / "cfg.yaml", cfg)


def _complete_step(run: Path) -> int:
    try:
        return int((run / "last" / "COMPLETE").read_text() or 0)
    except (FileNotFoundError, ValueError):
        return 0


@pytest.fixture(scope="module")
def killed_and_resumed(encoders, tmp_path_factory):
    """``mner train`` killed (SIGKILL) once ``last/`` holds step 2 or later, then run again."""
    tmp = tmp_path_factory.mktemp("resume")
    cfg = _resume_config(encoders, tmp)
    run = tmp / "killed"
    cmd = [sys.executable, "-m", "mner", "train", str(cfg), "--output-dir", str(run)]
    proc = subprocess.Popen(cmd, cwd=tmp, env=subprocess_env(tmp), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    killed_at = 0
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            killed_at = _complete_step(run)
            if killed_at >= 2:
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None and killed_at < 2:
            proc.kill()
        first_output = proc.communicate(timeout=60)[0]
    assert proc.returncode == -signal.SIGKILL, f"the run ended before it could be killed:\n{first_output[-2000:]}"
    assert not (run / "train_result.json").exists()
    resumed = _launch(["-m", "mner", "train", str(cfg), "--output-dir", str(run)], tmp)
    return tmp, cfg, run, killed_at, resumed


def test_killed_training_resumes_and_finishes(killed_and_resumed):
    tmp, cfg, run, killed_at, resumed = killed_and_resumed
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    output = resumed.stdout + resumed.stderr
    assert "resumed from" in output
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert summary["resumed_from_step"] >= killed_at >= 2 and summary["epochs_run"] == 4
    assert _complete_step(run) == 12  # 3 steps per epoch x 4 epochs
    steps = [r["step"] for r in _train_events(run)]
    assert steps[-1] == 12 and set(range(1, 13)) <= set(steps)
    assert isinstance(load_model(run / "best"), MAFModel)


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys()
    differ = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not differ, f"{len(differ)} of {len(wa)} tensors differ, e.g. {differ[:3]}"


def test_resumed_training_equals_an_uninterrupted_run(killed_and_resumed):
    tmp, cfg, run, _, resumed = killed_and_resumed
    assert resumed.returncode == 0
    reference = tmp / "uninterrupted"
    from mner.cli import main

    torch.manual_seed(1234)  # a different global state: train() must seed what matters itself
    assert main(["train", str(cfg), "--output-dir", str(reference)]) == 0
    _assert_same_weights(run / "last", reference / "last")
    _assert_same_weights(run / "best", reference / "best")


def test_same_config_and_seed_give_the_same_model(encoders, tmp_path):
    paths = sample_paths()
    runs = []
    for k, torch_state in enumerate((1, 2)):  # two fresh processes have two different torch RNG states
        torch.manual_seed(torch_state)
        out = tmp_path / f"run{k}"
        train(load_experiment(experiment(encoders, paths["tweets"], out, images=paths["images"],
                                         data={"missing_images": "blank"}, training={"max_steps": 1})),
              log=_quiet)
        runs.append(out)
    _assert_same_weights(runs[0] / "last", runs[1] / "last")


# ============================================================================ resume, in process
class _Crash(Exception):
    """Stands for a kill: raised inside the trainer, nothing after it runs."""


def _crash_at(step: int):
    """An ``on_step_end`` callback that crashes after step ``step`` (before that step's save)."""
    def crash(trainer):
        if trainer.global_step == step:
            raise _Crash
    return crash


@pytest.fixture(scope="module")
def sample_data():
    return prepare_data(_sample_data("blank"), needs_images=True, log=_quiet)


def _trainer(encoders, data, out: Path, init_seed: int, on_step_end=(), resume: bool = True):
    from mner.evaluation import dev_metrics
    from mner.training import Trainer, TrainingConfig

    torch.manual_seed(init_seed)
    model = MAFModel(maf_config(encoders, negative_fraction=0.5))
    cache = FeatureCache()
    config = TrainingConfig(output_dir=str(out), epochs=3, batch_size=4, eval_batch_size=16, learning_rate=1e-3,
                            head_learning_rate=3e-3, seed=3, save_every_steps=1, resume=resume, cpu=True,
                            progress=False, tensorboard=False, log_every=1)
    valid = data.splits["valid"]
    return Trainer(model, config, data.splits["train"], valid,
                   model.processor(data.image_store, cache).collate(train=True),
                   model.processor(data.image_store, cache).collate(train=False), dev_metrics(valid),
                   on_step_end=list(on_step_end))


@pytest.fixture(scope="module")
def uninterrupted(encoders, sample_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted")
    result = _trainer(encoders, sample_data, out, init_seed=0).train()
    assert result.global_step == 9 and result.resumed_from_step is None
    return out


@pytest.mark.parametrize("crash_at", [4, 8])
def test_trainer_resume_is_exact(encoders, sample_data, uninterrupted, tmp_path, crash_at):
    """A crash after step ``crash_at`` (4: just after an epoch's end; 8: mid-epoch), then a new
    model with *other* initial weights resumes: the result is the uninterrupted run's, bit for bit."""
    def crash(trainer):
        if trainer.global_step == crash_at:
            raise _Crash

    with pytest.raises(_Crash):
        _trainer(encoders, sample_data, tmp_path, init_seed=0, on_step_end=[crash]).train()
    assert _complete_step(tmp_path) == crash_at - 1
    result = _trainer(encoders, sample_data, tmp_path, init_seed=1).train()
    assert result.resumed_from_step == crash_at - 1 and result.global_step == 9 and result.epochs_run == 3
    _assert_same_weights(tmp_path / "last", uninterrupted / "last")
    saved = json.loads((tmp_path / "last" / "trainer_state.json").read_text())["trainer"]
    reference = json.loads((uninterrupted / "last" / "trainer_state.json").read_text())["trainer"]
    assert saved["best_metric"] == reference["best_metric"] and saved["best_epoch"] == reference["best_epoch"]


def test_kill_while_saving_last_keeps_a_resumable_checkpoint(encoders, sample_data, tmp_path, monkeypatch):
    import mner.training.trainer as trainer_module

    real = trainer_module.save_training_state
    calls = {"n": 0}

    def killed_on_the_third_save(folder, components):
        calls["n"] += 1
        if calls["n"] == 3:  # the save of step 3: its model is written, its state not yet
            raise _Crash
        return real(folder, components)

    monkeypatch.setattr(trainer_module, "save_training_state", killed_on_the_third_save)
    with pytest.raises(_Crash):
        _trainer(encoders, sample_data, tmp_path, init_seed=0).train()
    assert _hidden(tmp_path) == [], "the failed save left its temporary folder behind"
    (tmp_path / ".last.tmp-0badc0de").mkdir()  # what a SIGKILL in the middle of a save leaves
    monkeypatch.setattr(trainer_module, "save_training_state", real)
    result = _trainer(encoders, sample_data, tmp_path, init_seed=1).train()
    assert result.resumed_from_step == 2
    assert _hidden(tmp_path) == [], "a successful save keeps the leftovers of killed saves"


def _hidden(run: Path) -> list[str]:
    """The temporary folders of the checkpoint saves in ``run`` (none once a save is done)."""
    return sorted(p.name for p in run.iterdir() if p.name.startswith("."))


def test_resume_picks_the_newest_old_checkpoint_and_removes_the_old_ones(encoders, sample_data, uninterrupted,
                                                                          tmp_path):
    """A kill between the two renames of a save leaves ``last/`` only as ``.last.old-<random>``;
    with several of them (an earlier kill's leftover), resume takes the highest step, and the
    next successful save deletes them."""
    run = tmp_path / "run"
    for folder, step in (("early", 3), ("late", 5)):
        with pytest.raises(_Crash):
            _trainer(encoders, sample_data, tmp_path / folder, init_seed=0, on_step_end=[_crash_at(step)]).train()
        assert _complete_step(tmp_path / folder) == step - 1
    run.mkdir()
    # the random suffixes sort the older checkpoint first
    (tmp_path / "early" / "last").rename(run / ".last.old-00000000")
    (tmp_path / "late" / "last").rename(run / ".last.old-ffffffff")
    (run / ".last.old-11111111").mkdir()  # one without its COMPLETE marker is never used
    result = _trainer(encoders, sample_data, run, init_seed=1).train()
    assert result.resumed_from_step == 4 and result.global_step == 9
    _assert_same_weights(run / "last", uninterrupted / "last")
    assert _hidden(run) == []


def test_a_fresh_run_drops_the_old_checkpoints_of_the_folder(encoders, sample_data, tmp_path):
    """``resume: false`` deletes ``last/`` and its ``.last.old-*`` copies at once: a kill before
    the fresh run's first save must not leave the earlier run's checkpoint to resume from."""
    with pytest.raises(_Crash):
        _trainer(encoders, sample_data, tmp_path, init_seed=0, on_step_end=[_crash_at(3)]).train()
    (tmp_path / "last").rename(tmp_path / ".last.old-ffffffff")  # a kill between the renames
    with pytest.raises(_Crash):  # the fresh run: killed before its first save
        _trainer(encoders, sample_data, tmp_path, init_seed=0, on_step_end=[_crash_at(1)],
                 resume=False).train()
    assert not (tmp_path / "last").exists() and _hidden(tmp_path) == []
