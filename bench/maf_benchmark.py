"""MAF on the real benchmarks, cell by cell: dataset x variant x encoder x seed.

Each cell trains one model on Twitter-2015 or Twitter-2017 (text side from ``../shared/data``,
the visual side is the caption view: one BLIP-2 caption per image, since the tweet images are not
on this machine), selects the best epoch on the dev split and scores it on the test split. A
finished cell's result is stored in ``bench/results/maf/<cell>.json`` (committed) with its test
predictions (``bench/results/maf/predictions/<cell>.conll.gz``: token, gold, pred columns,
``# id =`` lines; ``mner score FILE`` reads it) and skipped next time; an interrupted cell resumes
from its last epoch (``runs/bench/<cell>/last``; its record lists every run that trained it). After
every cell the results page ``docs/results/maf.md`` is regenerated from all stored cells, so the
table can be filled over several runs and machines. The page tests MAF against the text-only CRF
(and each variant against its reference) on the stored predictions of the seeds both have
(:mod:`mner.tagging.significance`).

    .venv/bin/python bench/maf_benchmark.py                          # every missing cell
    .venv/bin/python bench/maf_benchmark.py --datasets twitter2017 --variants text-only maf --seeds 37 38 39
    .venv/bin/python bench/maf_benchmark.py --encoders mpnet --patience 3 --max-epochs 20   # until dev F1 stops rising
    .venv/bin/python bench/maf_benchmark.py --rerun-stale --threads 1    # re-run cells of another code version
    .venv/bin/python bench/maf_benchmark.py --report                 # only rebuild the page
    .venv/bin/python bench/maf_benchmark.py --add-dev-curves         # curves of older cells, from runs/bench
    .venv/bin/python bench/maf_benchmark.py --add-controls           # controls of older cells, from runs/bench
    .venv/bin/python bench/maf_benchmark.py --retrain-controls --encoders mpnet   # ... whose model is gone

Each cell records its wall time, the machine, the torch thread count, the git commit, a
fingerprint of the mner code it ran (:func:`code_fingerprint`) and its dev F1 after each epoch
(:func:`dev_curve`); the page names the code version(s) its cells come from. Each new cell also
stores its **controls** (:mod:`mner.controls`, :func:`cell_controls`): test F1 with the real
captions, with them shuffled among the test tweets and with none, and the match probability of
MAF's matching module with real and shuffled captions (mean, std, AUC); the page's *Controls*
section shows them. The output ends with one JSON line: the cells run now and the table's F1 per
row (mean over seeds).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cells as cellmeta  # noqa: E402  (bench/cells.py: what every cell records, shared with fewshot_benchmark.py)
import runner  # noqa: E402  (bench/runner.py: the loop that runs cells, shared with fewshot_benchmark.py)
from cells import git_commit, machine  # noqa: E402,F401  (re-exported: other bench scripts import them from here)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "maf"
PREDICTIONS = "predictions"  # the folder of the stored test predictions, inside RESULTS
PAGE = ROOT / "docs" / "results" / "maf.md"
DATA = Path(os.environ.get("MNER_DATA", ROOT.parent / "shared" / "data"))

# The loss weights of the table's MAF cells: alpha = beta = 0.19, i.e. L_ca and L_cm at half the
# weight that the authors' code gives them (a misreading of its lambda form, found after the
# cells ran). Pinned so that the stored cells stay reproducible. The Loss weights section of the
# page decided on the dev split (three seeds, Twitter-2017) that MAFConfig's default stays the
# code's 0.62 : 0.38 : 0.38 (alpha = beta = 0.2754): the two are not told apart, so the faithful
# value stays. The `maf-code-weights` variant and the ablations train with that default.
TABLE_WEIGHTS = {"alpha": 0.19, "beta": 0.19}
VARIANTS = {
    "text-only": {"no_image": True},
    "maf": TABLE_WEIGHTS,
    "maf-no-ca": {"no_alignment": True},
    "maf-no-cm": {"no_matching": True},
    "maf-no-ca-cm": {"no_alignment": True, "no_matching": True},
    "maf-code-weights": {},
    # variants that depart from the paper (issue 22): each its own row
    "maf-cm-similarity": {**TABLE_WEIGHTS, "matching_score": "similarity"},
    "maf-caption-segment": {**TABLE_WEIGHTS, "caption_segment": 64},
}
VARIANT_NAMES = {"text-only": "text-only CRF", "maf": "MAF", "maf-no-ca": "MAF w/o CA",
                 "maf-no-cm": "MAF w/o CM", "maf-no-ca-cm": "MAF w/o CA+CM",
                 "maf-code-weights": "MAF, the code's loss weights",
                 "maf-cm-similarity": "MAF, CM by similarity (variant)",
                 "maf-caption-segment": "MAF, caption as a second segment (variant)"}
ENCODERS = {"minilm": "minilm", "mpnet": "mpnet"}
ENCODER_NAMES = {"minilm": "MiniLM-L6", "mpnet": "MPNet-base"}
# Epochs per dataset and encoder (the paper: 24 / 23 epochs with BERT-base on a GPU). MPNet's
# forward+backward costs 6.5x MiniLM's on 2 CPU cores (measured: 12.9 s vs 2.0 s for 32 x 40
# tokens, one thread), so its cells get the 2 epochs a CPU session can afford; pass --epochs on a GPU.
EPOCHS = {("twitter2015", "minilm"): 8, ("twitter2017", "minilm"): 10,
          ("twitter2015", "mpnet"): 2, ("twitter2017", "mpnet"): 2}
# The paper's numbers (BERT-base-cased, ResNet-152 on the real images): P, R, F1, per-type F1.
PAPER = {
    ("twitter2015", "text-only"): (69.22, 74.59, 71.81, {"PER": 84.74, "LOC": 80.51, "ORG": 60.27, "MISC": 37.29}),
    ("twitter2015", "maf"): (71.86, 75.10, 73.42, {"PER": 84.67, "LOC": 81.18, "ORG": 63.35, "MISC": 41.82}),
    ("twitter2015", "maf-no-ca"): (70.89, 75.44, 73.09, None),
    ("twitter2015", "maf-no-cm"): (70.96, 74.73, 72.80, None),
    ("twitter2015", "maf-no-ca-cm"): (70.32, 74.71, 72.45, None),
    ("twitter2017", "text-only"): (83.32, 83.57, 83.44, {"PER": 90.25, "LOC": 83.05, "ORG": 81.13, "MISC": 62.21}),
    ("twitter2017", "maf"): (86.13, 86.38, 86.25, {"PER": 91.51, "LOC": 85.80, "ORG": 85.10, "MISC": 68.79}),
    ("twitter2017", "maf-no-ca"): (83.75, 84.68, 84.21, None),
    ("twitter2017", "maf-no-cm"): (85.40, 84.46, 84.93, None),
    ("twitter2017", "maf-no-ca-cm"): (82.90, 84.30, 83.60, None),
}
# The paper has one full MAF row: both of our loss weightings are read against it.
PAPER_VARIANT = {"maf-code-weights": "maf"}


def paper_figures(dataset: str, variant: str) -> tuple | None:
    """The paper's (P, R, F1, per-type F1) for a variant of ours, or None where the paper has no row."""
    return PAPER.get((dataset, PAPER_VARIANT.get(variant, variant)))


TYPES = ("PER", "LOC", "ORG", "MISC")
# Which labels our files carry, and the published figures the targets compare against.
LABELS = (
    "the files are the public UMT release (`../shared/data/README.md`), the **original labels** that "
    "the MAF paper also used: Twitter-2015's test split keeps its 135 I- tags without a B- before them "
    "(read as entity starts, as conlleval does, so its gold has 5207 entities). HVPNeT's repository "
    "ships a *repaired* Twitter-2015 (orphan I- tags and some entity types corrected by its authors, "
    "zjunlp/HVPNeT issue #6); HVPNeT's 75.32 is on those labels, 73.27 on the original ones (as a user "
    "of its code measured), so the original-label figure is the one to compare with here.")
TARGETS = {
    "twitter2015": (("the MAF paper (BERT-base, real images)", 73.42), ("HVPNeT, original labels", 73.27)),
    "twitter2017": (("the MAF paper (BERT-base, real images)", 86.25), ("HVPNeT", 86.87)),
}
# Early stopping (--patience): at most this many epochs unless --max-epochs says otherwise. The
# learning rate decays linearly over the maximum, so an early-stopped cell never reaches the end of
# its schedule; its row says "early stopping" and each cell records the epochs it ran.
MAX_EPOCHS = 20
# In a cell's run folder: one JSON line per process that trained it (machine, threads, code, times).
RUNS_FILE = "bench_runs.jsonl"
# The rows of the page, in this order (the code's loss weights next to the table's MAF).
REPORT_ORDER = ("text-only", "maf", "maf-code-weights", "maf-no-ca", "maf-no-cm", "maf-no-ca-cm")
# What the significance table tests: (system B, its reference A); the gain is F1(B) - F1(A).
# The ablations train with MAFConfig's default weights, so they are tested against the full model
# with those weights (`maf-code-weights`), not against the 0.19 rows.
COMPARISONS = (("maf", "text-only"), ("maf-code-weights", "text-only"), ("maf-code-weights", "maf"),
               ("maf-no-ca", "maf-code-weights"), ("maf-no-cm", "maf-code-weights"),
               ("maf-no-ca-cm", "maf-code-weights"),
               ("maf-cm-similarity", "maf"),  # the variants against the table's MAF (the same 0.19 weights)
               ("maf-caption-segment", "maf"))
# The page's tests: pooled over the common seeds, approximate randomization for p (fewer
# assumptions), the paired bootstrap for the confidence interval; fixed seed, so the page is
# rebuilt to the same bytes.
SIGNIFICANCE_RESAMPLES = 10_000
SIGNIFICANCE_SEED = 1
# The code a supervised MAF cell runs (data, encoders, MAF and its base classes, tagging, training),
# hashed into the cell's code fingerprint; the rest (few-shot models, serving, the CLI, this
# benchmark's page) can change without making the stored cells stale.
FINGERPRINTED = ("mner/__init__.py", "mner/config.py", "mner/crf.py", "mner/errors.py", "mner/evaluation.py",
                 "mner/experiment.py", "mner/data/", "mner/encoders/", "mner/models/__init__.py",
                 "mner/models/assets.py", "mner/models/base.py", "mner/models/checkpoint.py",
                 "mner/models/encoder_stack.py", "mner/models/tagger.py",
                 "mner/models/maf/", "mner/processing/__init__.py", "mner/processing/tagging.py",
                 "mner/processing/visual.py", "mner/tagging/", "mner/training/")
NOT_FINGERPRINTED = ("mner/data/episodes.py", "mner/data/sampling.py", "mner/tagging/significance.py")
CODE = cellmeta.Fingerprint(FINGERPRINTED, NOT_FINGERPRINTED)


def cell_name(dataset: str, variant: str, encoder: str, seed: int, patience: int | None = None) -> str:
    """``<dataset>__<variant>__<encoder>[__early-stop]__seed<seed>``: early-stopped cells are other
    cells than fixed-epoch ones (another row of the page)."""
    schedule = "__early-stop" if patience is not None else ""
    return f"{dataset}__{variant}__{encoder}{schedule}__seed{seed}"


def schedule_of(cell: dict) -> str:
    """The training length of a cell in words: ``10 epochs`` or ``early stopping (patience 3, <= 20 epochs)``."""
    es = cell.get("early_stopping")
    if es:
        return f"early stopping (patience {es['patience']}, <= {es['max_epochs']} epochs)"
    return f"{cell['epochs']} epochs"


def code_fingerprint(src: Path | None = None) -> str:
    """A hash of the source files of :data:`FINGERPRINTED` (less :data:`NOT_FINGERPRINTED`) in
    ``src`` (default: the folder that holds the mner package this process imports): two cells
    with the same fingerprint ran the same training code, whatever else was committed between them
    (:func:`cells.code_fingerprint`)."""
    return cellmeta.code_fingerprint(CODE, src)


def threads_record(deterministic: bool) -> dict:
    import torch

    return {"torch_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "deterministic_algorithms": deterministic}


def experiment(dataset: str, variant: str, encoder: str, seed: int, epochs: int, run_dir: Path,
               patience: int | None = None) -> dict:
    """The experiment dict of a cell (``epochs``: the maximum when ``patience`` is set)."""
    raw = {
        "model_type": "maf",
        "model": {"visual_view": "caption", "text_encoder": {"name": ENCODERS[encoder]},
                  "caption_encoder": {"name": "minilm"}, **VARIANTS[variant]},
        # the caption features in memory, computed by the cell itself: a shared disk cache holds for
        # each caption whatever run encoded it first, in whatever batch (padding changes the last
        # bits, and the float16 rounding of some values with them), so the cell's input would
        # depend on the machine's history (docs/results/maf-notes.md, *Reproducibility*)
        "data": {"corpus": str(DATA / dataset), "type_map": "OTHER=MISC", "captions": "auto",
                 "feature_cache": None},
        "training": {"output_dir": str(run_dir), "epochs": epochs, "batch_size": 32, "eval_batch_size": 64,
                     "learning_rate": 5e-5, "head_learning_rate": 1e-3, "seed": seed, "progress": False,
                     "log_every": 50},
    }
    if patience is not None:
        raw["training"]["early_stopping_patience"] = patience
    return raw


#: the parts of a cell's experiment that depend on the checkout's location (its output folder, the
#: data folder): left out when a stored cell's configuration is compared with the benchmark's now
VOLATILE = ("training.output_dir", "data.corpus")


def comparable_config(raw: dict | None) -> dict | None:
    """A cell's experiment without what depends on the checkout's location (:data:`VOLATILE`), to tell
    whether a stored cell ran the configuration the benchmark runs now."""
    return cellmeta.comparable_config(raw, VOLATILE)


def current_config(cell: dict) -> dict | None:
    """The experiment the benchmark would run now for a stored cell (None for a variant it no longer has)."""
    if cell["variant"] not in VARIANTS or cell["encoder"] not in ENCODERS:
        return None
    es = cell.get("early_stopping") or {}
    return experiment(cell["dataset"], cell["variant"], cell["encoder"], cell["seed"], cell["epochs"], Path("."),
                      es.get("patience"))


#: the code versions of the stored cells and what showed two of them to be one (:class:`cells.Versions`),
#: filled by :func:`register_equivalents`
VERSIONS = cellmeta.Versions(CODE)
#: code versions shown to train exactly as an earlier one: fingerprint -> (the earlier fingerprint it
#: stands for, the re-run cell that showed it); a view of :data:`VERSIONS` for the page
EQUIVALENT: dict[str, tuple[str, str]] = {}
#: same-machine evidence that two code versions train alike (see :func:`register_equivalents`)
EQUIVALENCE_FILE = ROOT / "bench" / "results" / "maf-equivalence.json"
#: fingerprint -> the entry of that evidence that made it equivalent
EQUIVALENCE_RUNS: dict[str, dict] = {}


def register_equivalents(cells: list[dict], evidence: list[dict] | None = None) -> dict[str, tuple[str, str]]:
    """A cell re-run (``--rerun-stale``) on new code that gave exactly its stored dev and test F1 shows
    the new code trains as the old did: the two fingerprints are then one version of the table (a
    refactor keeps the numbers, and the re-run is the evidence). Fills :data:`VERSIONS` and
    :data:`EQUIVALENT`.

    A stored cell may not reproduce on another machine even at its own code (the host's float
    kernels); then the evidence is a pair of re-runs on one machine, the old code and the new, that
    gave the same dev and test F1 to the last bit: ``evidence`` (default: the entries of
    :data:`EQUIVALENCE_FILE`), each ``{"cell", "old": {"code_fingerprint", "dev_f1", "test_f1", ...},
    "new": {...}, ...}``; an entry whose two runs differ shows nothing."""
    global VERSIONS
    if evidence is None:
        evidence = json.loads(EQUIVALENCE_FILE.read_text()) if EQUIVALENCE_FILE.is_file() else []
    VERSIONS = cellmeta.Versions(CODE)
    VERSIONS.add_evidence(evidence)
    VERSIONS.add_reruns(cells)
    EQUIVALENT.clear()
    EQUIVALENT.update({new: (old, VERSIONS.shown_by[new]) for new, old in VERSIONS.equivalent.items()})
    EQUIVALENCE_RUNS.clear()
    EQUIVALENCE_RUNS.update(VERSIONS.evidence)
    return dict(EQUIVALENT)


def _rerun_sentence(new: str, old: str, cell: str, commit: str, dev_f1: float, test_f1: float,
                    stored: dict | None = None, note: str = "") -> str:
    """The page's sentence for a re-run of a stored cell on code ``new`` that gave exactly the stored
    dev and test F1, so ``new`` counts as ``old``: the cell's own re-run (``stored`` None: the cell
    now holds the re-run), or an evidence entry whose stored run (``stored``: its commit and code)
    a later re-run replaced."""
    figures = f"dev F1 ({100 * dev_f1:.4f}) and test F1 ({100 * test_f1:.4f})"
    if stored is None:
        gave, source = f"exactly its stored {figures}", ""
    else:
        gave = (f"exactly the {figures} of the cell stored then (commit {stored['git_commit']}, "
                f"code `{stored['code_fingerprint']}`)")
        source = f" ({note}; `bench/results/maf-equivalence.json`)"
    return (f"Code `{new}` counts as `{old}`: re-running `{cell}` on it (commit {commit}) gave {gave}, "
            f"so the changes between them did not change what MAF trains{source}.")


def canonical(fingerprint: str | None) -> str | None:
    """The fingerprint a code version stands for (itself, unless shown equivalent to an earlier one)."""
    return VERSIONS.canonical(fingerprint) if fingerprint else fingerprint


def same_code(a: str | None, b: str | None) -> bool:
    return canonical(a) == canonical(b)


def stale_reasons(cell: dict, fingerprint: str) -> list[str]:
    """Why a stored cell is not what the benchmark would produce now: another code version (not shown
    equivalent), another configuration (e.g. after a change of the table's loss weights)."""
    return cellmeta.stale_reasons(cell, fingerprint, VERSIONS, current_config(cell), VOLATILE)


def store_predictions(source: Path, target: Path) -> dict:
    """Store the test predictions that training wrote (``<run>/predictions/test.conll``: token,
    gold, pred; ``# id =`` lines) as ``target`` (gzip, no timestamp: the same predictions give the
    same bytes), without the image and caption lines; return its path (relative to the repository
    when inside it), sha256, size and tweet count, for the cell's JSON."""
    out: list[str] = []
    tweets = 0
    after_id = False
    for line in source.read_text(encoding="utf-8").split("\n"):
        if after_id and line.startswith(("# image = ", "# caption = ")):
            continue  # metadata of the tweet: not needed to score, and the bulk of the file
        after_id = line.startswith("# id = ")
        tweets += after_id
        out.append(line)
    return cellmeta.store_gzip("\n".join(out).encode("utf-8"), target, ROOT, tweets=tweets)


def dev_curve(cell: dict, run_result: dict) -> list[float] | str:
    """The dev F1 after each epoch of ``cell``, from the trainer's ``history`` of per-epoch
    evaluations in its ``train_result.json`` (kept across resumes by the trainer's state), or why
    not. The result must be of the run that made the record: one evaluation per epoch run, each
    epoch's seconds the record's, and the best value the record's dev F1 at its best epoch, all exact."""
    history = run_result.get("history") or []
    ran = cell.get("epochs_run", cell["epochs"])
    epochs = [e.get("epoch") for e in history]
    if epochs != list(range(1, ran + 1)):
        return f"evaluations of epochs {epochs}, the cell ran {ran}"
    if [e["epoch_seconds"] for e in history] != cell["seconds_per_epoch"]:
        return "another run's epoch times"
    curve = [e["f1"] for e in history]
    if curve[cell["best_epoch"] - 1] != cell["dev_f1"] or max(curve) != cell["dev_f1"]:
        return f"best dev F1 {max(curve)}, the cell says {cell['dev_f1']} at epoch {cell['best_epoch']}"
    return curve


def add_dev_curves(cells_dir: Path | None = None, runs_dir: Path | None = None) -> tuple[list[str], dict[str, str]]:
    """Give stored cells recorded before ``dev_f1_per_epoch`` existed their curve, from their run
    folder (``runs/bench/<cell>``) where it is still here and is the run that made the record
    (:func:`dev_curve`). Returns the cells filled and, for the others without one, why not."""
    cells_dir = RESULTS if cells_dir is None else cells_dir
    runs_dir = ROOT / "runs" / "bench" if runs_dir is None else runs_dir
    added, missing = [], {}
    for path in sorted(cells_dir.glob("*.json")):
        cell = json.loads(path.read_text())
        if cell.get("dev_f1_per_epoch"):
            continue
        result = runs_dir / cell["cell"] / "train_result.json"
        if not result.is_file():
            missing[cell["cell"]] = f"no {result}"
            continue
        curve = dev_curve(cell, json.loads(result.read_text()))
        if isinstance(curve, str):
            missing[cell["cell"]] = f"{result}: {curve}"
            continue
        cell["dev_f1_per_epoch"] = curve
        path.write_text(json.dumps(cell, indent=2) + "\n")
        added.append(cell["cell"])
    return added, missing


# The seed of the controls' permutation of the test captions (every cell the same permutation).
CONTROL_SEED = 0


def cell_controls(raw: dict, checkpoint: Path) -> dict:
    """The controls of a cell's model (:func:`mner.controls.experiment_controls` on the test split,
    features computed as its training computed them), as stored in the cell's JSON."""
    from mner.controls import experiment_controls

    controls = experiment_controls(raw, checkpoint, "test", seed=CONTROL_SEED)
    return {**controls.to_dict(), "git_commit": git_commit(),
            "computed": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def stored_experiment(cell: dict) -> dict:
    """A copy of a stored cell's experiment, its data folder read from :data:`DATA` where the one it
    recorded (another machine's) is not here."""
    raw = json.loads(json.dumps(cell["config"]))
    if not Path(raw["data"]["corpus"]).is_dir() and (DATA / cell["dataset"]).is_dir():
        raw["data"]["corpus"] = str(DATA / cell["dataset"])
    return raw


def add_controls(cells_dir: Path | None = None, runs_dir: Path | None = None) -> tuple[list[str], dict[str, str]]:
    """Give stored cells without controls theirs, from the best checkpoint of their run folder
    (``runs/bench/<cell>/best``) where it is still here and is the model that made the cell: its
    real-caption test F1 must be the cell's, exactly. The data folder of a cell recorded on another
    machine is read from :data:`DATA`. Returns the cells filled and, for the others, why not."""
    cells_dir = RESULTS if cells_dir is None else cells_dir
    runs_dir = ROOT / "runs" / "bench" if runs_dir is None else runs_dir
    added, missing = [], {}
    for path in sorted(cells_dir.glob("*.json")):
        cell = json.loads(path.read_text())
        if cell.get("controls"):
            continue
        checkpoint = runs_dir / cell["cell"] / "best"
        if not (checkpoint / "config.json").is_file():
            missing[cell["cell"]] = f"no checkpoint {checkpoint}"
            continue
        raw = stored_experiment(cell)
        controls = cell_controls(raw, checkpoint)
        if controls["f1_real"] != cell["test"]["f1"]:
            missing[cell["cell"]] = (f"{checkpoint} scores {100 * controls['f1_real']:.2f} on test, the cell says "
                                     f"{100 * cell['test']['f1']:.2f}: not the model that made it")
            continue
        cell["controls"] = controls
        path.write_text(json.dumps(cell, indent=2) + "\n")
        added.append(cell["cell"])
    return added, missing


# Where the models re-trained only for their controls go (never runs/bench: they did not make a cell).
CONTROL_RUNS = ROOT / "runs" / "bench-controls"


def retrain_controls(names: list[str], cells_dir: Path | None = None, runs_dir: Path | None = None,
                     fingerprint: str | None = None) -> list[str]:
    """Controls for stored cells whose model is gone (trained before cells kept their controls, the
    run folder since deleted): each cell's stored configuration (its ``config``) trained again here,
    at the code now, into ``runs/bench-controls/<cell>`` (an interrupted run resumes from its last
    epoch), and the controls of that model stored in the cell, marked ``retrained`` with that
    model's own dev and test F1, machine, threads and code. A re-run on another host need not give
    the stored F1 to the last digit (docs/results/maf.md, *Reproducibility*), so the cell's own
    figures are left as they are and the page shows both. Returns the cells filled."""
    from mner.experiment import load_experiment, train

    cells_dir = RESULTS if cells_dir is None else cells_dir
    runs_dir = CONTROL_RUNS if runs_dir is None else runs_dir
    filled = []
    for name in names:
        path = cells_dir / f"{name}.json"
        cell = json.loads(path.read_text())
        if cell.get("controls"):
            continue
        raw = stored_experiment(cell)
        run_dir = runs_dir / name
        raw["training"]["output_dir"] = str(run_dir)
        print(f"== {name}: re-training its configuration for the controls ({run_dir})", flush=True)
        t0 = time.perf_counter()
        summary = train(load_experiment(raw))
        wall = time.perf_counter() - t0
        controls = cell_controls(raw, run_dir / "best")
        controls["retrained"] = {
            "test_f1": summary["test_f1"], "dev_f1": summary["dev_f1"], "best_epoch": summary["best_epoch"],
            "epochs_run": summary["epochs_run"], "wall_seconds": wall,
            "resumed_from_step": summary.get("resumed_from_step"), "machine": machine(),
            **threads_record(False), "git_commit": git_commit(),
            "code_fingerprint": fingerprint or code_fingerprint(), "run_dir": str(run_dir.relative_to(ROOT))
            if run_dir.is_relative_to(ROOT) else str(run_dir)}
        cell["controls"] = controls
        path.write_text(json.dumps(cell, indent=2) + "\n")
        print(f"== {name}: controls from the re-trained model (its test F1 {100 * summary['test_f1']:.2f}, "
              f"the cell's {100 * cell['test']['f1']:.2f}): real {100 * controls['f1_real']:.2f}, shuffled "
              f"{100 * controls['f1_shuffled']:.2f}, none {100 * controls['f1_none']:.2f}", flush=True)
        filled.append(name)
    return filled


def run_cell(dataset: str, variant: str, encoder: str, seed: int, epochs: int, patience: int | None = None,
             raw: dict | None = None, results: Path | None = None, deterministic: bool = False,
             fingerprint: str | None = None) -> dict:
    """Train one cell and return its record (the caller stores it). ``raw`` replaces the cell's
    experiment (tests: a tiny model); ``results`` is where its predictions go (default :data:`RESULTS`);
    ``fingerprint``: of the code this process imported (default: of the files now)."""
    from mner.experiment import load_experiment, train

    results = RESULTS if results is None else results

    name = cell_name(dataset, variant, encoder, seed, patience)
    if raw is None:
        raw = experiment(dataset, variant, encoder, seed, epochs, ROOT / "runs" / "bench" / name, patience)
    run_dir = Path(raw["training"]["output_dir"])
    commit = git_commit()  # the code this process imports, before any later commit
    fingerprint = fingerprint or code_fingerprint()
    # Each process that works on the cell appends a line here, so a cell resumed across sessions (or
    # machines) records every run that trained part of it, not only the one that finished it.
    run_dir.mkdir(parents=True, exist_ok=True)
    runs_file = run_dir / RUNS_FILE
    with runs_file.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                             "machine": machine(), "git_commit": commit, "code_fingerprint": fingerprint,
                             **threads_record(deterministic)}) + "\n")
    t0 = time.perf_counter()
    summary = train(load_experiment(raw))
    wall = time.perf_counter() - t0
    runs = [json.loads(line) for line in runs_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    runs[-1].update({"wall_seconds": wall, "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    run = json.loads((run_dir / "train_result.json").read_text())
    predictions = store_predictions(run_dir / "predictions" / "test.conll", results / PREDICTIONS / f"{name}.conll.gz")
    command = (f".venv/bin/python bench/maf_benchmark.py --datasets {dataset} --variants {variant} "
               f"--encoders {encoder} --seeds {seed}")
    if patience is not None:
        command += f" --patience {patience} --max-epochs {epochs}"
    record = {
        "cell": name, "dataset": dataset, "variant": variant, "encoder": encoder, "seed": seed,
        "epochs": epochs, "epochs_run": summary["epochs_run"], "stopped_early": run["stopped_early"],
        "early_stopping": {"patience": patience, "max_epochs": epochs} if patience is not None else None,
        "command": command, "config": raw, "summary": summary,
        "test": {"precision": summary["test_precision"], "recall": summary["test_recall"], "f1": summary["test_f1"],
                 "per_type": summary["test_f1_per_type"]},
        "predictions": predictions,
        "dev_f1": summary["dev_f1"], "best_epoch": summary["best_epoch"],
        "seconds_per_epoch": summary["seconds_per_epoch"], "wall_seconds": wall,
        "resumed_from_step": summary.get("resumed_from_step"), "runs": runs,
        "machine": machine(), **threads_record(deterministic),
        "git_commit": commit, "code_fingerprint": fingerprint,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    curve = dev_curve(record, run)
    if isinstance(curve, str):  # kept without a curve rather than losing hours of training over it
        print(f"   {name}: dev F1 per epoch not recorded: {curve}", file=sys.stderr, flush=True)
    else:
        record["dev_f1_per_epoch"] = curve
    controls = cell_controls(raw, run_dir / "best")
    if controls["f1_real"] != record["test"]["f1"]:  # kept, and said: the page shows both
        print(f"   {name}: the controls' real-caption F1 {100 * controls['f1_real']:.2f} is not the test F1 "
              f"{100 * record['test']['f1']:.2f}", file=sys.stderr, flush=True)
    record["controls"] = controls
    return record


def _wall_and_machine(cell: dict) -> tuple[str, str]:
    """The page's wall time and machine of a cell. A resumed cell's time is the sum of its epochs
    (dev evaluation included; every run that trained part of it), its machines those runs used."""
    if cell.get("resumed_from_step") is None:
        return f"{cell_minutes(cell):.0f} min", cell["machine"]
    runs = cell.get("runs") or []
    machines = list(dict.fromkeys(r["machine"] for r in runs)) or [cell["machine"]]
    n = f"{len(runs)} runs, " if runs else ""
    return (f"{cell_minutes(cell):.0f} min of epochs ({n}resumed at step {cell['resumed_from_step']})",
            "; ".join(machines))


def load_cells(results: Path | None = None) -> list[dict]:
    """The stored cells, each checked against the schema (:class:`cells.Cell`)."""
    return cellmeta.load_cells(RESULTS if results is None else results)


def _ms(values: list[float]) -> str:
    if not values:
        return "-"
    m = 100 * statistics.mean(values)
    if len(values) == 1:
        return f"{m:.2f}"
    return f"{m:.2f} ± {100 * statistics.stdev(values):.2f}"


def _version(cell: dict) -> str:
    """The code version of a cell: its fingerprint (the one it stands for, when shown equivalent), or
    its commit for cells stored before there was one."""
    fp = canonical(cell.get("code_fingerprint"))
    return f"code `{fp}`" if fp else f"commit {cell['git_commit']} (no fingerprint)"


def _short(p: float) -> str:
    return f"{p:.4f}" if p >= 1e-3 else f"{p:.1e}"


class _StoredPredictions:
    """The stored test predictions of cells, read once each: ``(ids, gold, pred)`` or a reason why not."""

    def __init__(self, root: Path | None = None):
        self.root = ROOT if root is None else root
        self.cache: dict[str, tuple | str] = {}

    def get(self, cell: dict) -> tuple | str:
        name = cell["cell"]
        if name not in self.cache:
            self.cache[name] = self._read(cell)
        return self.cache[name]

    def _read(self, cell: dict) -> tuple | str:
        import tempfile

        from mner.data.formats import read_conll
        from mner.tagging import score

        rec = cell.get("predictions")
        if not rec:
            return "no stored predictions (re-run)"
        data = cellmeta.StoredFile.from_dict(rec, cell["cell"]).read(self.root)
        if isinstance(data, str):
            return data
        with tempfile.TemporaryDirectory() as tmp:
            plain = Path(tmp) / "test.conll"
            plain.write_bytes(data)
            gold = read_conll(plain, tag_column=-2)
            pred = read_conll(plain, tag_column=-1)
        g, p = [ex.tags for ex in gold], [ex.tags for ex in pred]
        f1 = score(g, p).f1
        if abs(f1 - cell["test"]["f1"]) > 1e-12:
            return f"{rec['path']}: scores {100 * f1:.2f}, the cell says {100 * cell['test']['f1']:.2f}"
        return [ex.id for ex in gold], g, p


def significance_rows(groups: dict[tuple, list[dict]], stored: _StoredPredictions,
                      tested: dict | None = None) -> list[str]:
    """Markdown rows of the significance table (see :data:`COMPARISONS`). ``tested`` (when given)
    receives ``(dataset, encoder, schedule, B, A) -> (seeds, mean gain, pooled p or None)``."""
    from mner.tagging.significance import compare, compare_runs

    rows = []
    tested = {} if tested is None else tested
    for (dataset, encoder, schedule, variant_b), cells_b in groups.items():
        for b, a in COMPARISONS:
            if b != variant_b or (dataset, encoder, schedule, a) not in groups:
                continue
            by_seed_a = {c["seed"]: c for c in groups[(dataset, encoder, schedule, a)]}
            by_seed_b = {c["seed"]: c for c in cells_b}
            seeds = sorted(by_seed_a.keys() & by_seed_b.keys())
            head = f"| {dataset} | {encoder} | {schedule} | {VARIANT_NAMES[b]} vs {VARIANT_NAMES[a]} | "
            if not seeds:
                rows.append(head + "none | - | - | - | - | - | - |")
                continue
            gains = [by_seed_b[s]["test"]["f1"] - by_seed_a[s]["test"]["f1"] for s in seeds]
            tested[(dataset, encoder, schedule, b, a)] = (seeds, statistics.mean(gains), None)
            paper_a, paper_b = paper_figures(dataset, a), paper_figures(dataset, b)
            same_paper_row = PAPER_VARIANT.get(a, a) == PAPER_VARIANT.get(b, b)  # our two weightings
            paper = (f"{paper_b[2] - paper_a[2]:+.2f}" if paper_a and paper_b and not same_paper_row
                     and encoder == "minilm" else "-")
            gain_cols = (f"{', '.join(map(str, seeds))} | **{100 * statistics.mean(gains):+.2f}** | "
                         + ", ".join(f"{100 * g:+.2f}" for g in gains) + f" | {paper} | ")
            read = {s: (stored.get(by_seed_a[s]), stored.get(by_seed_b[s])) for s in seeds}
            missing = [c["cell"] for s in seeds for c, r in zip((by_seed_a[s], by_seed_b[s]), read[s])
                       if isinstance(r, str)]
            if missing:
                reasons = sorted({r for s in seeds for r in read[s] if isinstance(r, str)})
                rows.append(head + gain_cols + f"{'; '.join(reasons)}: {', '.join(missing)} | - | - |")
                continue
            ids, gold = read[seeds[0]][0][0], read[seeds[0]][0][1]
            if any(r[0] != ids or r[1] != gold for s in seeds for r in read[s]):
                rows.append(head + gain_cols + "predictions not on the same tweets and gold | - | - |")
                continue
            runs_a = [read[s][0][2] for s in seeds]
            runs_b = [read[s][1][2] for s in seeds]
            kw = {"resamples": SIGNIFICANCE_RESAMPLES, "seed": SIGNIFICANCE_SEED}
            ar = compare_runs(gold, runs_a, runs_b, method="randomization", **kw)
            boot = compare_runs(gold, runs_a, runs_b, method="bootstrap", **kw)
            per_seed = [compare(gold, x, y, method="randomization", **kw).p_value for x, y in zip(runs_a, runs_b)]
            tested[(dataset, encoder, schedule, b, a)] = (seeds, statistics.mean(gains), ar.p_value)
            rows.append(head + gain_cols + f"**{_short(ar.p_value)}** | [{100 * boot.ci_low:+.2f}, "
                        f"{100 * boot.ci_high:+.2f}] | " + ", ".join(_short(p) for p in per_seed) + " |")
    return rows


def _schedule_rank(schedule: str) -> tuple:
    """Early-stopped rows before fixed-epoch ones, then the longer schedule first."""
    digits = "".join(ch if ch.isdigit() else " " for ch in schedule).split()
    return (not schedule.startswith("early"), -int(digits[-1]) if digits else 0)


def target_rows(groups: dict[tuple, list[dict]], tested: dict, current: str | None = None) -> list[str]:
    """The issue's targets, measured (:data:`TARGETS`): met, missed by how much, or not measured yet."""
    lines = ["", "## Targets", "",
             "Measured from the tables above, either way. *MAF above the text-only CRF*: the mean gain "
             "over the seeds both rows have, with its pooled p-value (significant at 0.05 or not); "
             "a target needs three seeds to count as met. *Offline MPNet MAF at or above ...*: the MPNet "
             "MAF row of that dataset (the early-stopped row where there is one, else the longest "
             "schedule), its mean over seeds.", "",
             "| dataset | target | measured | reference | result |", "|---|---|---|---|---|"]
    for dataset in ("twitter2015", "twitter2017"):
        schedules = sorted({k[2] for k in tested if k[0] == dataset and k[1] == "minilm"
                            and k[3:] == ("maf", "text-only")}, key=_schedule_rank)
        if not schedules:
            lines.append(f"| {dataset} | MAF above the text-only CRF (MiniLM, three seeds) | - | - | not measured |")
        for schedule in schedules:
            seeds, gain, p = tested[(dataset, "minilm", schedule, "maf", "text-only")]
            if p is None:
                verdict = "no stored predictions, no p-value"
            else:
                verdict = ("above" if gain > 0 else "below" if gain < 0 else "equal") + (
                    f", significant (p = {_short(p)})" if p < 0.05 else f", not significant (p = {_short(p)})")
            if len(seeds) < 3:
                verdict += f"; {len(seeds)} seed{'s' if len(seeds) > 1 else ''} of 3, not settled"
            used = [c for v in ("maf", "text-only") for c in groups[(dataset, "minilm", schedule, v)] if c["seed"] in seeds]
            if current is not None and any(not same_code(c.get("code_fingerprint"), current) for c in used):
                verdict += "; ran another version of the code"
            lines.append(f"| {dataset} | MAF above the text-only CRF (MiniLM, {schedule}) | "
                         f"{100 * gain:+.2f} ({_seeds(seeds)}) | 0 | {verdict} |")
        rows = sorted((k for k in groups if k[0] == dataset and k[1] == "mpnet" and k[3] == "maf"),
                      key=lambda k: _schedule_rank(k[2]))
        for name, ref in TARGETS[dataset]:
            if not rows:
                lines.append(f"| {dataset} | offline MPNet MAF at or above {name} | - | {ref:.2f} | not run |")
                continue
            cs = groups[rows[0]]
            f1 = 100 * statistics.mean(c["test"]["f1"] for c in cs)
            diff = round(f1, 2) - ref
            verdict = f"met (+{diff:.2f})" if diff >= 0 else f"missed by {-diff:.2f}"
            if len(cs) < 3:
                verdict += f"; {len(cs)} seed{'s' if len(cs) > 1 else ''}"
            if current is not None and any(not same_code(c.get("code_fingerprint"), current) for c in cs):
                verdict += "; ran another version of the code"
            lines.append(f"| {dataset} | offline MPNet MAF at or above {name} | {f1:.2f} ({rows[0][2]}, "
                         f"{_seeds(c['seed'] for c in cs)}) | {ref:.2f} | {verdict} |")
    return lines


def _seeds(seeds) -> str:
    """``seed 37`` or ``seeds 37, 38, 39``."""
    seeds = list(seeds)
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"


def _weights(variant: str) -> float:
    """The alpha (= beta) a MAF variant trains with: the table's pinned value or MAFConfig's default."""
    from mner.models.maf.config import MAFConfig

    return VARIANTS[variant].get("alpha", MAFConfig.alpha)


def loss_weight_rows(groups: dict[tuple, list[dict]], tested: dict, current: str | None = None) -> tuple[list[str], dict]:
    """The loss-weight decision, measured: ``maf`` (:data:`TABLE_WEIGHTS`) against
    ``maf-code-weights`` (MAFConfig's default) on the seeds both have. The weighting is a
    hyperparameter, so it is chosen on the **dev** split (the seeds' best-epoch dev F1); the test
    split and its paired test are shown beside it, not used to choose. The authors' value (the
    faithful one) stays unless the table's is higher on the mean *and* on every seed. A decision
    needs three common seeds of the code here now. Returns the page's lines and
    ``{(dataset, encoder, schedule): (winning variant or None, reason)}``."""
    from mner.models.maf.config import CODE_AUX_WEIGHT, MAFConfig

    default = MAFConfig.alpha
    default_s = f"{default:.4f}" + (" (the authors' code: 0.38 / 1.38)" if default == CODE_AUX_WEIGHT else "")
    lines = ["", "## Loss weights", "",
             "Which alpha = beta the MAF rows (and MAFConfig's default) should use: the table's "
             f"alpha = beta = {_weights('maf'):.2f} (row *MAF*) against the authors' code's "
             f"{CODE_AUX_WEIGHT:.4f} (row *{VARIANT_NAMES['maf-code-weights']}*), same seeds. A loss weight is a "
             "hyperparameter, so it is chosen on the **dev** split (best-epoch dev F1 of each seed); the "
             "test F1 and the paired test on it are shown beside, not used to choose. The authors' value "
             "is the faithful one and stays unless the other is higher on the mean dev F1 *and* on every "
             "seed (otherwise the two are not told apart from seed noise). A decision needs three common "
             "seeds that ran the code here now. MAFConfig's default now: "
             f"alpha = beta = {default_s}.", "",
             "| dataset | encoder | training | alpha = beta | seeds | dev F1 | dev F1 per seed | test F1 | "
             "test gain of the code's weights (p) | decision |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    decisions: dict = {}
    for (dataset, encoder, schedule, variant), cs_code in groups.items():
        if variant != "maf-code-weights" or (dataset, encoder, schedule, "maf") not in groups:
            continue
        by_table = {c["seed"]: c for c in groups[(dataset, encoder, schedule, "maf")]}
        by_code = {c["seed"]: c for c in cs_code}
        seeds = sorted(by_table.keys() & by_code.keys())
        if not seeds:
            continue
        dev = {v: [by[s]["dev_f1"] for s in seeds] for v, by in (("maf", by_table), ("maf-code-weights", by_code))}
        used = [by[s] for by in (by_table, by_code) for s in seeds]
        if len(seeds) < 3:
            winner, reason = None, f"not decided: {len(seeds)} common seed{'s' if len(seeds) > 1 else ''} of 3"
        elif current is not None and any(not same_code(c.get("code_fingerprint"), current) for c in used):
            winner, reason = None, "not decided: cells of another code version"
        else:
            means = {v: statistics.mean(d) for v, d in dev.items()}
            table_wins = sum(a > b for a, b in zip(dev["maf"], dev["maf-code-weights"]))
            says = (f"dev F1 {100 * means['maf']:.2f} with 0.19 vs {100 * means['maf-code-weights']:.2f} with the "
                    f"code's, 0.19 higher on {table_wins} of {len(seeds)} seeds")
            if means["maf"] > means["maf-code-weights"] and table_wins == len(seeds):
                winner, reason = "maf", f"**{_weights('maf'):.4g}**: {says}"
            elif means["maf"] > means["maf-code-weights"]:
                # better on the mean but not on every seed: not told apart from seed noise, so the
                # authors' value (a faithful default) stays
                winner = "maf-code-weights"
                reason = (f"**{_weights(winner):.4g}** (the authors'): {says}, not on every seed: the two are "
                          "not told apart, the faithful value stays")
            else:
                winner, reason = "maf-code-weights", f"**{_weights('maf-code-weights'):.4g}** (the authors'): {says}"
            reason += ("; MAFConfig's default is this" if abs(_weights(winner) - default) < 1e-12
                       else "; MAFConfig's default is not this yet")
        decisions[(dataset, encoder, schedule)] = (winner, reason)
        t = tested.get((dataset, encoder, schedule, "maf-code-weights", "maf"))
        gain = "-" if t is None or t[0] != seeds else (
            f"{100 * t[1]:+.2f} ({'p = ' + _short(t[2]) if t[2] is not None else 'no p-value'})")
        for v, by in (("maf", by_table), ("maf-code-weights", by_code)):
            first = v == "maf"
            lines.append(
                f"| {dataset} | {encoder} | {schedule} | {_weights(v):.4g} | {', '.join(map(str, seeds))} | "
                f"**{_ms(dev[v])}** | {', '.join(f'{100 * x:.2f}' for x in dev[v])} | "
                f"{_ms([by[s]['test']['f1'] for s in seeds])} | {'' if first else gain} | {'' if first else reason} |")
    if not decisions:
        lines.append("| - | - | - | - | - | - | - | - | - | not measured: no seed has both weightings |")
    return lines, decisions


def report(cells: list[dict], root: Path | None = None, tested: dict | None = None) -> tuple[str, dict]:
    """The results page and its figures; ``tested`` (when given) receives the significance results
    (see :func:`significance_rows`)."""
    root = ROOT if root is None else root
    register_equivalents(cells)
    groups: dict[tuple, list[dict]] = {}
    for c in sorted(cells, key=lambda c: c["seed"]):
        groups.setdefault((c["dataset"], c["encoder"], schedule_of(c), c["variant"]), []).append(c)
    order = list(REPORT_ORDER) + [v for v in VARIANTS if v not in REPORT_ORDER]
    groups = dict(sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2], order.index(kv[0][3]))))
    lines = [
        "# MAF on Twitter-2015 and Twitter-2017: our numbers beside the paper's",
        "",
        "Generated by `bench/maf_benchmark.py` from the stored cells in `bench/results/maf/` "
        "(do not edit by hand). Each cell: one training run, best epoch on the dev split, scored on "
        "the test split, entity-level micro P/R/F1 in conlleval mode (an I- after O starts an "
        "entity), Twitter-2015's OTHER read as MISC. Mean ± standard deviation over seeds where "
        "there are several (the `seeds` column), and each seed's F1.",
        "",
        "What differs from the paper, on purpose or by necessity:",
        "",
        "- **visual side**: the tweet images are not on this machine, so the visual view is the "
        "*caption view*: one BLIP-2 caption per image (`../shared/data/captions`), encoded by a "
        "frozen MiniLM as visual tokens. The paper uses ResNet-152 regions of the real images.",
        "- **text encoder**: the offline MiniLM-L6 (22.7 M parameters, uncased, plus a casing "
        "feature) or MPNet-base (109 M, uncased); the paper fine-tunes BERT-base-cased.",
        "- **training**: fewer epochs on 2 CPU cores (column `training`; the paper runs 24 / 23), "
        "batch 32, learning rate 5e-5 for the encoder and 1e-3 for the new layers, warmup 10 %. "
        "With early stopping the schedule spans the maximum number of epochs and a cell stops "
        "once dev F1 has not risen for `patience` epochs (the epochs each cell ran: last table).",
        "- **loss weights**: the rows *MAF* run with alpha = beta = 0.19, i.e. "
        "L_mner : L_cm : L_ca = 0.62 : 0.19 : 0.19, half the auxiliary weight of the authors' code "
        "(`0.62 L_crf + 0.38 (L_cm + L_ca)`): we misread its lambda form and found it after the "
        "first cells ran. MAFConfig's default is the code's ratio (alpha = beta = 0.38 / 1.38), kept "
        "after the measurement of section *Loss weights*; the rows *MAF, the code's loss weights* and "
        "the ablations (*MAF w/o ...*) train with that default, and the ablations are tested against "
        "*MAF, the code's loss weights*. Ablation cells stored before that change (alpha = beta = 0.19) "
        "are listed as run with another configuration.",
        f"- **labels**: {LABELS}",
        "",
    ]
    current = code_fingerprint()
    versions: dict[str, list[str]] = {}
    for c in sorted(cells, key=lambda c: c["cell"]):
        versions.setdefault(_version(c), []).append(c["cell"])
    lines += ["## Code version", ""]
    for new, (old, evidence) in sorted(EQUIVALENT.items()):
        if new in EQUIVALENCE_RUNS:
            e = EQUIVALENCE_RUNS[new]
            if not any(canonical(c.get("code_fingerprint")) == old for c in cells):
                continue  # evidence about code versions none of these cells ran
            if e.get("rerun_of_stored"):   # a --rerun-stale re-run whose cell a later re-run replaced
                lines += [_rerun_sentence(new, old, evidence, e["new"]["git_commit"], e["new"]["dev_f1"],
                                          e["new"]["test_f1"], stored=e["old"], note=e.get("note", "")), ""]
                continue
            stored = next((c for c in cells if c["cell"] == e["cell"]), None)
            # the stored cell gives the re-runs' figures (it ran on this host) or not (another host's)
            same = stored is not None and (stored["dev_f1"], stored["test"]["f1"]) == (e["new"]["dev_f1"],
                                                                                      e["new"]["test_f1"])
            why = "" if same else "the stored cell itself, from another host, does not reproduce exactly there: "
            lines += [f"Code `{new}` counts as `{old}`: `{evidence}` re-run on one machine ({e['machine']}) at "
                      f"commit {e['old']['git_commit']} (code `{e['old']['code_fingerprint']}`) and at commit "
                      f"{e['new']['git_commit']} gave the same dev F1 ({100 * e['new']['dev_f1']:.4f}) and test F1 "
                      f"({100 * e['new']['test_f1']:.4f}) to the last bit, so the changes between them did not "
                      f"change what MAF trains ({why}{e.get('note', '')}; `bench/results/maf-equivalence.json`).", ""]
            continue
        cell = next(c for c in cells if c["cell"] == evidence)
        lines += [_rerun_sentence(new, old, evidence, cell["git_commit"], cell["dev_f1"], cell["test"]["f1"]), ""]
    if len(versions) == 1:
        (version, names), = versions.items()
        commits = sorted({c["git_commit"] for c in cells})
        lines.append(f"Every cell ran the same code: {version} (git commit{'s' if len(commits) > 1 else ''} "
                     f"{', '.join(commits)}; the fingerprint hashes the training code, so commits that only "
                     "add results or touch other parts share it).")
    elif versions:
        lines += [
            f"**This table mixes {len(versions)} versions of the code**: its rows compare cells that did "
            "not run the same code, and a difference between rows may come from the code, not the model. "
            f"The code here now is `{current}`; `--rerun-stale` re-runs every cell of another version.",
            "",
            "| code version | git commits | cells |",
            "|---|---|---|",
        ]
        for version, names in versions.items():
            commits = sorted({c["git_commit"] for c in cells if _version(c) == version})
            shown = "-" if version.startswith("commit ") else ", ".join(commits)
            lines.append(f"| {version} | {shown} | {', '.join(names)} |")
    stale = [c["cell"] for c in cells if not same_code(c.get("code_fingerprint"), current)]
    if stale and len(stale) < len(cells):
        lines += ["", f"Cells of another version than the code here now (`{current}`): {', '.join(stale)}."]
    elif stale:
        lines += ["", f"No cell ran the code here now (`{current}`)."]
    other_config = [c["cell"] for c in cells if "configuration" in stale_reasons(c, current)]
    if other_config:
        lines += ["", "Cells whose configuration is not what the benchmark runs now (an older data or "
                  f"model setting; `--rerun-stale` re-runs them too): {', '.join(other_config)}."]
    lines += [
        "",
        "## Test results",
        "",
        "| dataset | encoder | training | model | seeds | P | R | F1 | F1 per seed | PER | LOC | ORG | MISC | s / epoch | paper P / R / F1 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    figures = {}
    for (dataset, encoder, schedule, variant), cs in groups.items():
        p = [c["test"]["precision"] for c in cs]
        r = [c["test"]["recall"] for c in cs]
        f = [c["test"]["f1"] for c in cs]
        per = {t: [c["test"]["per_type"].get(t, 0.0) for c in cs] for t in TYPES}
        spe = statistics.mean(s for c in cs for s in c["seconds_per_epoch"])
        paper = paper_figures(dataset, variant)
        paper_s = f"{paper[0]:.2f} / {paper[1]:.2f} / {paper[2]:.2f}" if paper else "-"
        training = schedule
        if any(c.get("early_stopping") for c in cs):
            training += ", ran " + ", ".join(str(c.get("epochs_run", "?")) for c in cs)
        per_seed = ", ".join(f"{100 * c['test']['f1']:.2f}" for c in cs) if len(cs) > 1 else "-"
        lines.append(
            f"| {dataset} | {encoder} | {training} | {VARIANT_NAMES[variant]} | "
            f"{', '.join(str(c['seed']) for c in cs)} | {_ms(p)} | {_ms(r)} | **{_ms(f)}** | {per_seed} | "
            + " | ".join(_ms(per[t]) for t in TYPES) + f" | {spe:.0f} | {paper_s} |"
        )
        key = f"{dataset}/{encoder}/{variant}" + ("" if schedule.endswith(" epochs") else "/early-stop")
        figures[key] = round(100 * statistics.mean(f), 2)
    lines += [
        "",
        "Paper per-type F1 (PER / LOC / ORG / MISC): BERT-CRF 84.74 / 80.51 / 60.27 / 37.29 (2015), "
        "90.25 / 83.05 / 81.13 / 62.21 (2017); MAF 84.67 / 81.18 / 63.35 / 41.82 (2015), "
        "91.51 / 85.80 / 85.10 / 68.79 (2017).",
        "",
        "## Which differences are real",
        "",
        "Each row tests a model B against a reference A (same dataset, encoder and training length) "
        "on the stored test predictions of the seeds both have. Gain: F1(B) - F1(A), the mean over "
        "those seeds, and each seed's. p: two-sided **approximate randomization** over test tweets, "
        "pooled over the seeds (a tweet's outputs are swapped between A and B in every seed at "
        f"once), {SIGNIFICANCE_RESAMPLES} resamples, seed {SIGNIFICANCE_SEED}; CI: the 95 % interval "
        "of the mean gain from a **paired bootstrap** over test tweets (the same draw of tweets for "
        "every seed), same resamples and seed; p per seed: the same randomization test on one seed "
        "pair. Both treat the test tweets as the sample; the spread between seeds (the gains per "
        "seed) is the other half of the uncertainty. `mner.tagging.significance` says more; "
        "`mner score A.conll.gz --compare B.conll.gz` reruns one pair.",
        "",
        "| dataset | encoder | training | B vs A | seeds | gain (mean) | gain per seed | paper gain | p (randomization) | 95 % CI (bootstrap) | p per seed |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    tested = {} if tested is None else tested
    lines += significance_rows(groups, _StoredPredictions(root), tested)
    lines += target_rows(groups, tested, current)
    lines += loss_weight_rows(groups, tested, current)[0]
    reruns = [c for c in cells if c.get("previous")]
    if reruns:
        lines += [
            "",
            "## Cells re-run on another version of the code",
            "",
            "| cell | before: code, F1 | now: code, F1 | change |",
            "|---|---|---|---|",
        ]
        for c in sorted(reruns, key=lambda c: c["cell"]):
            old = c["previous"]
            lines.append(f"| {c['cell']} | {_version(old)}, {100 * old['test_f1']:.2f} | {_version(c)}, "
                         f"{100 * c['test']['f1']:.2f} | {100 * (c['test']['f1'] - old['test_f1']):+.2f} |")
    lines += [
        "",
        "## How each cell was run",
        "",
        "| cell | command | best epoch | epochs run | dev F1 | wall time | machine | torch threads | code | commit | finished | predictions |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in sorted(cells, key=lambda c: c["cell"]):
        ran = c.get("epochs_run", c["epochs"])
        ran_s = f"{ran}{' (stopped early)' if c.get('stopped_early') else ''}"
        threads = c.get("torch_threads", "-")
        if c.get("deterministic_algorithms"):
            threads = f"{threads}, deterministic"
        preds = c.get("predictions")
        preds_s = f"`{Path(preds['path']).name}`" if preds else "-"
        wall, where = _wall_and_machine(c)
        lines.append(f"| {c['cell']} | `{c['command']}` | {c['best_epoch']} | {ran_s} | {100 * c['dev_f1']:.2f} | "
                     f"{wall} | {where} | {threads} | {c.get('code_fingerprint') or '-'} | "
                     f"{c['git_commit']} | {c['finished']} | {preds_s} |")
    lines += controls_rows(groups)
    lines += dev_curve_rows(cells)
    notes = root / "docs" / "results" / "maf-notes.md"
    if notes.is_file():
        lines += ["", notes.read_text().rstrip()]
    return "\n".join(lines) + "\n", figures


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def controls_rows(groups: dict[tuple, list[dict]]) -> list[str]:
    """The page's *Controls* section: per stored cell (in the order of the test table), test F1
    with the real captions, shuffled and none, and the matching module's probabilities and AUC
    (:mod:`mner.controls`); ``-`` where a cell has not stored them. A text-only cell has no visual
    view: its three F1s are its test F1."""
    lines = ["", "## Controls", "",
             "What the caption view is worth and whether MAF's matching module (CM) matches, per cell, on "
             "the test split: F1 decoded with the **real** captions (the test F1), with the captions "
             f"**shuffled** among the test tweets (one seeded permutation, seed {CONTROL_SEED}; *kept*: tweets "
             "that got their own caption text back, since Twitter captions repeat) and with **none** (no "
             "caption for any tweet: an empty visual view). *real - shuffled* is what the caption's content "
             "is worth. CM: the mean match probability with the real and with the shuffled captions (its "
             "standard deviation over the tweets), and the rank AUC of real against shuffled pairs (0.5: CM "
             "does not tell a tweet's caption from another's; pairs that kept their own caption left out). "
             "The text-only CRF has no visual view: its three F1s are its test F1. `-`: not stored for "
             "this cell (cells store them since the controls exist; `.venv/bin/python bench/maf_benchmark.py "
             "--add-controls` computes them for stored cells whose run folder `runs/bench/<cell>` is here, "
             "`--retrain-controls` for those whose run folder is gone). "
             "For any checkpoint: `.venv/bin/mner evaluate CHECKPOINT DATA --split test --controls` "
             "(`mner.controls`).", "",
             "| cell | model | F1 real | F1 shuffled (kept) | F1 none | real - shuffled | CM real | CM shuffled | "
             "CM AUC |",
             "|---|---|---|---|---|---|---|---|---|"]
    retrained = []
    for (_dataset, _encoder, _schedule, variant), cs in groups.items():
        for c in cs:
            head = f"| {c['cell']} | {VARIANT_NAMES.get(variant, variant)} | "
            ctl = c.get("controls")
            if variant == "text-only" or (ctl and not ctl.get("views")):
                f1 = _pct(c["test"]["f1"])
                lines.append(head + f"{f1} | {f1} (no visual view) | {f1} | +0.00 | - | - | - |")
                continue
            if not ctl:
                lines.append(head + f"{_pct(c['test']['f1'])} | - | - | - | - | - | - |")
                continue
            m = ctl.get("match")
            cm_real = f"{m['real_mean']:.3f} ({m['real_std']:.3f})" if m else "- (no CM)"
            cm_shuffled = f"{m['shuffled_mean']:.3f} ({m['shuffled_std']:.3f})" if m else "-"
            auc = f"{m['auc']:.3f}" if m and m.get("auc") is not None else "-"
            mark = "†" if ctl.get("retrained") else ""
            if mark:
                retrained.append(c)
            lines.append(head + f"{_pct(ctl['f1_real'])}{mark} | {_pct(ctl['f1_shuffled'])} ({ctl['kept_own']}) | "
                         f"{_pct(ctl['f1_none'])} | {100 * (ctl['f1_real'] - ctl['f1_shuffled']):+.2f} | "
                         f"{cm_real} | {cm_shuffled} | {auc} |")
    if retrained:
        lines += ["", "† The controls of a re-trained model: the cell's own checkpoint was gone (the cell "
                  "predates stored controls), so its stored configuration was trained again "
                  "(`.venv/bin/python bench/maf_benchmark.py --retrain-controls` with the cell's options) and the "
                  "three F1s and CM's figures are that model's. Its test F1 is not the cell's to the last digit "
                  "(a re-run on another host; *Reproducibility* below):", ""]
        for c in retrained:
            r = c["controls"]["retrained"]
            lines.append(f"- `{c['cell']}`: re-trained test F1 {_pct(r['test_f1'])} (dev {_pct(r['dev_f1'])}, "
                         f"best epoch {r['best_epoch']}), the cell's {_pct(c['test']['f1'])} (dev "
                         f"{_pct(c['dev_f1'])}); {r['machine']}, {r['torch_threads']} thread(s), code "
                         f"`{r['code_fingerprint']}`, commit {r['git_commit']}, {r['wall_seconds'] / 60:.0f} min.")
    return lines


def dev_curve_rows(cells: list[dict]) -> list[str]:
    """The page's section of dev F1 after each epoch (best in bold), for the cells that recorded it:
    where a schedule stopped, or would have gone on rising."""
    with_curve = sorted((c for c in cells if c.get("dev_f1_per_epoch")), key=lambda c: c["cell"])
    if not with_curve:
        return []
    lines = ["", "## Dev F1 per epoch", "",
             "The dev F1 after each epoch of the cells that recorded it (the best epoch, the one "
             "tested, in bold); `rising at the end`: the best epoch is the last one run, so a longer "
             "schedule might go higher.", "",
             "| cell | training | dev F1 after each epoch | best epoch | |", "|---|---|---|---|---|"]
    for c in with_curve:
        curve, best = c["dev_f1_per_epoch"], c["best_epoch"]
        shown = ", ".join(f"**{100 * f:.2f}**" if e == best else f"{100 * f:.2f}" for e, f in enumerate(curve, 1))
        if c.get("stopped_early"):
            end = f"stopped early after epoch {len(curve)}"
        elif best == len(curve):
            end = "rising at the end"
        else:
            end = "-"
        lines.append(f"| {c['cell']} | {schedule_of(c)} | {shown} | {best} | {end} |")
    without = [c["cell"] for c in cells if not c.get("dev_f1_per_epoch")]
    if without:
        lines += ["", f"Cells without a stored curve ({len(without)}: recorded before cells stored it, "
                  "their run folder gone): the best epoch's dev F1 is in the last table."]
    return lines


# The README's results block (between these markers) is rebuilt with the page: its MiniLM rows and
# the recipes' expected F1 come from the stored cells (tests/test_configs.py checks the quotes).
README_START, README_END = "<!-- maf-results: start (bench/maf_benchmark.py) -->", "<!-- maf-results: end -->"
class Recipe(NamedTuple):
    """A shipped config that is exactly one benchmark row: its dataset, variant and encoder and its
    schedule (the encoder's :data:`EPOCHS`, or early stopping with ``patience`` over at most
    ``max_epochs``). Its training time is not written here: the README quotes the stored cells'
    (:func:`recipe_duration`)."""
    dataset: str
    variant: str
    encoder: str
    patience: int | None = None
    max_epochs: int | None = None

    @property
    def epochs(self) -> int:
        return self.max_epochs if self.patience is not None else EPOCHS[(self.dataset, self.encoder)]

    def experiment(self, seed: int, run_dir: Path) -> dict:
        return experiment(self.dataset, self.variant, self.encoder, seed, self.epochs, run_dir, self.patience)


# recipe file -> the benchmark row it is, exactly; tests/test_configs.py checks both.
RECIPES = {"configs/maf-twitter2017-minilm.yaml": Recipe("twitter2017", "maf", "minilm"),
           "configs/maf-twitter2015-minilm.yaml": Recipe("twitter2015", "maf", "minilm"),
           "configs/maf-twitter2017-mpnet.yaml": Recipe("twitter2017", "maf", "mpnet", patience=3, max_epochs=10),
           "configs/maf-twitter2015-mpnet.yaml": Recipe("twitter2015", "maf", "mpnet")}


def cell_minutes(cell: dict) -> float:
    """A cell's training time in minutes: its wall time, or for a cell resumed across runs the sum
    of its epochs (dev evaluation included), as the page's last table gives it."""
    if cell.get("resumed_from_step") is None:
        return cell["wall_seconds"] / 60
    return sum(cell["seconds_per_epoch"]) / 60


def recipe_duration(cells: list[dict]) -> str:
    """What training a recipe took, from its stored cells: ``24 to 26 min`` (`` (7 to 10 epochs)``
    for early stopping, whose length varies by seed), as measured here: 2 CPU cores, one thread
    per run, one to three other runs beside it (so a range, not a speed)."""
    def span(values: list[int], unit: str) -> str:
        lo, hi = min(values), max(values)
        return f"{lo} {unit}" if lo == hi else f"{lo} to {hi} {unit}"

    text = span([round(cell_minutes(c)) for c in cells], "min")
    if any(c.get("early_stopping") for c in cells):
        text += f" ({span([c['epochs_run'] for c in cells], 'epochs')})"
    return f"{text} measured on 2 CPU cores, one thread, beside one to three other training runs"


def _schedule_of(cell: dict) -> tuple[int, int | None]:
    """A stored cell's (epochs, patience): the maximum and the patience when it stopped early."""
    return cell["epochs"], (cell.get("early_stopping") or {}).get("patience")


def recipe_cells(cells: list[dict], dataset: str, variant: str, encoder: str, patience: int | None = None,
                 epochs: int | None = None) -> list[dict]:
    """The stored cells (by seed) that ran exactly the configuration the benchmark runs now for that
    row (``epochs``: the encoder's :data:`EPOCHS`, or the maximum with ``patience``)."""
    epochs = epochs or EPOCHS[(dataset, encoder)]

    def same(c: dict) -> bool:
        return comparable_config(c.get("config")) == comparable_config(
            experiment(dataset, variant, encoder, c["seed"], epochs, Path("run"), patience))

    return sorted((c for c in cells if (c["dataset"], c["variant"], c["encoder"]) == (dataset, variant, encoder)
                   and same(c)), key=lambda c: c["seed"])


def older_recipe_cells(cells: list[dict], dataset: str, variant: str, encoder: str, patience: int | None = None,
                       epochs: int | None = None) -> list[dict]:
    """The stored cells of that row with the recipe's schedule, whatever their code or data
    setting (the page lists them as another version): what a recipe quotes before it is re-run."""
    schedule = (epochs or EPOCHS[(dataset, encoder)], patience)
    return sorted((c for c in cells if (c["dataset"], c["variant"], c["encoder"]) == (dataset, variant, encoder)
                   and _schedule_of(c) == schedule), key=lambda c: c["seed"])


def readme_block(cells: list[dict], tested: dict) -> str:
    """The README's results block: the MiniLM comparison rows (mean ± std over the seeds of the
    cells that ran the benchmark's configuration), MAF's gain with its p-value (``tested``, from
    :func:`report`), the MPNet rows, and the one-command recipes with the F1 to expect."""
    def f1(cs: list[dict]) -> str:
        if not cs:
            return "not run"
        n = "" if len(cs) == 3 else f" ({len(cs)} seed{'s' if len(cs) > 1 else ''})"
        return _ms([c["test"]["f1"] for c in cs]) + n

    def gain(dataset: str) -> str:
        key = (dataset, "minilm", f"{EPOCHS[(dataset, 'minilm')]} epochs", "maf", "text-only")
        if key not in tested:
            return "-"
        seeds, mean_gain, p = tested[key]
        return (f"{100 * mean_gain:+.2f} ({'p = ' + _short(p) if p is not None else 'no p-value'}, "
                f"{_seeds(seeds)})")

    def mpnet(dataset: str, variant: str, patience: int | None = None, epochs: int | None = None) -> str:
        # the MPNet cells as they are (their configuration may be older: the page flags them)
        return f1(older_recipe_cells(cells, dataset, variant, "mpnet", patience, epochs))

    # early-stopped MPNet rows, one per schedule that has cells
    early = sorted({(s[1], s[0]) for c in cells if c["encoder"] == "mpnet" for s in [_schedule_of(c)] if s[1]})

    rows = {(d, v): recipe_cells(cells, d, v, "minilm") for d in ("twitter2015", "twitter2017") for v in ("text-only", "maf")}
    lines = [
        README_START,
        "| encoder (epochs 2015 / 2017) | model | Twitter-2015 | Twitter-2017 |",
        "|---|---|---|---|",
        f"| MiniLM-L6 (8 / 10) | text-only CRF | {f1(rows['twitter2015', 'text-only'])} | {f1(rows['twitter2017', 'text-only'])} |",
        f"| MiniLM-L6 (8 / 10) | MAF | {f1(rows['twitter2015', 'maf'])} | {f1(rows['twitter2017', 'maf'])} |",
        f"| MiniLM-L6 (8 / 10) | MAF's gain (p) | {gain('twitter2015')} | {gain('twitter2017')} |",
        f"| MPNet-base (2 / 2) | text-only CRF | {mpnet('twitter2015', 'text-only')} | {mpnet('twitter2017', 'text-only')} |",
        f"| MPNet-base (2 / 2) | MAF | {mpnet('twitter2015', 'maf')} | {mpnet('twitter2017', 'maf')} |",
        *(f"| MPNet-base (early stopping, patience {p}, <= {n}) | {VARIANT_NAMES[v]} | {mpnet('twitter2015', v, p, n)} "
          f"| {mpnet('twitter2017', v, p, n)} |" for p, n in early for v in ("text-only", "maf")),
        "| BERT-base, real images (paper) | BERT-CRF / MAF | 71.81 / 73.42 | 83.44 / 86.25 |",
        "",
        "A tagger as measured above, in one command (each recipe is exactly the benchmark's MAF cell; "
        "the F1 to expect is that row's, mean ± std over its seeds):",
        "",
        "```bash",
    ]
    for path, r in RECIPES.items():
        row = (cells, r.dataset, r.variant, r.encoder, r.patience, r.epochs)
        cs, older = recipe_cells(*row), ""
        if not cs:  # only cells of an older configuration or code: quoted as such until they are re-run
            cs, older = older_recipe_cells(*row), ", of an older code version"
        expect = (f"expect {_ms([c['test']['f1'] for c in cs])} ({_seeds(c['seed'] for c in cs)}{older}; "
                  f"{recipe_duration(cs)})" if cs else "not measured yet")
        lines.append(f".venv/bin/mner train {path}    # Twitter-{r.dataset[-4:]}, {ENCODER_NAMES[r.encoder]}, {expect}")
    return "\n".join(lines + ["```", README_END])


def write_report() -> dict:
    cells = load_cells()
    tested: dict = {}
    text, figures = report(cells, tested=tested)
    runner.write_page(PAGE, text)
    runner.replace_block(ROOT / "README.md", README_START, README_END, readme_block(cells, tested))
    return figures


def plans(args: argparse.Namespace, current: str) -> list[runner.Plan]:
    """The cells of the command line, in the table's order (seed, encoder, dataset, variant)."""
    commit = git_commit()
    out = []
    for seed in args.seeds:
        for encoder in args.encoders:
            for dataset in args.datasets:
                for variant in args.variants:
                    name = cell_name(dataset, variant, encoder, seed, args.patience)
                    epochs = ((args.max_epochs or MAX_EPOCHS) if args.patience is not None
                              else args.epochs or EPOCHS[(dataset, encoder)])

                    def run(dataset=dataset, variant=variant, encoder=encoder, seed=seed, epochs=epochs) -> list[dict]:
                        result = run_cell(dataset, variant, encoder, seed, epochs, args.patience,
                                          deterministic=args.deterministic, fingerprint=current)
                        result["git_commit"] = commit  # the code this process imported
                        return [result]

                    out.append(runner.Plan(
                        name=name, path=RESULTS / f"{name}.json", run=run, run_dir=ROOT / "runs" / "bench" / name,
                        config=experiment(dataset, variant, encoder, seed, epochs, Path("."), args.patience),
                        describe=f"training ({epochs} epochs{', early stopping' if args.patience else ''})"))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["twitter2017", "twitter2015"])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--encoders", nargs="+", default=["minilm"], choices=list(ENCODERS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[37])
    ap.add_argument("--epochs", type=int, default=None, help="override the epochs of every cell")
    ap.add_argument("--patience", type=int, default=None,
                    help="early stopping: stop after this many epochs without a better dev F1 (cells named "
                         "__early-stop, their own rows)")
    ap.add_argument("--max-epochs", type=int, default=None,
                    help=f"with --patience: at most this many epochs (default {MAX_EPOCHS})")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1): a cell's numbers depend on the thread count (another "
                         "count sums in another order), so every cell of the table should use the same; each "
                         "cell records it")
    ap.add_argument("--deterministic", action="store_true",
                    help="torch.use_deterministic_algorithms(True) (recorded in the cell)")
    ap.add_argument("--rerun-stale", action="store_true",
                    help="re-run stored cells of another code version (fingerprint) or configuration than "
                         "the benchmark's now (the old result is kept in the new cell's 'previous')")
    ap.add_argument("--report", action="store_true", help="only rebuild the results page")
    ap.add_argument("--add-dev-curves", action="store_true",
                    help="give stored cells without a dev F1 per epoch the one of their run folder "
                         "(runs/bench/<cell>, where it is the run that made the cell), then rebuild the page")
    ap.add_argument("--retrain-controls", action="store_true",
                    help="for the stored cells selected by --datasets/--variants/--encoders/--seeds (and "
                         "--patience for the early-stopped ones) that have no controls and no run folder: "
                         "train each cell's configuration again into runs/bench-controls/<cell> and store "
                         "the controls of that model, marked as re-trained with its own F1 (the cell's "
                         "figures are kept)")
    ap.add_argument("--add-controls", action="store_true",
                    help="give stored cells without controls (F1 with real / shuffled / no captions, the matching "
                         "module's AUC) those of the best checkpoint in their run folder (runs/bench/<cell>/best, "
                         "where it is the model that made the cell), then rebuild the page")
    ap.add_argument("--max-cells", type=int, default=None, help="stop after this many new cells")
    args = ap.parse_args(argv)
    if args.patience is not None and args.epochs is not None:
        ap.error("--epochs fixes the epochs; with --patience give --max-epochs")
    if args.max_epochs is not None and args.patience is None:
        ap.error("--max-epochs needs --patience (without it, --epochs sets the epochs)")
    if args.patience is not None and args.patience < 1:
        ap.error("--patience must be >= 1")
    if args.threads < 1:
        ap.error("--threads must be >= 1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ran = []
    if args.retrain_controls:
        import torch
        from transformers.utils import logging as hf_logging

        torch.set_num_threads(args.threads)
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        fingerprint = code_fingerprint()
        wanted = {cell_name(d, v, e, seed, args.patience) for seed in args.seeds for e in args.encoders
                  for d in args.datasets for v in args.variants}
        names = [c["cell"] for c in load_cells() if c["cell"] in wanted and c["variant"] != "text-only"
                 and not c.get("controls")]
        print(f"== {len(names)} stored cells without controls to re-train: {', '.join(names) or 'none'}")
        for name in names:
            retrain_controls([name], fingerprint=fingerprint)
            write_report()
    elif args.add_controls:
        import torch

        torch.set_num_threads(args.threads)
        added, missing = add_controls()
        for name in added:
            print(f"== {name}: controls added from runs/bench/{name}/best")
        for name, why in missing.items():
            print(f"== {name}: no controls ({why})")
    elif args.add_dev_curves:
        added, missing = add_dev_curves()
        for name in added:
            print(f"== {name}: dev F1 per epoch added from runs/bench/{name}")
        for name, why in missing.items():
            print(f"== {name}: no dev F1 per epoch ({why})")
    elif not args.report:
        if not (DATA / "twitter2015").is_dir():
            raise SystemExit(f"benchmark data not found at {DATA} (set MNER_DATA)")
        import torch
        from transformers.utils import logging as hf_logging

        torch.set_num_threads(args.threads)
        if args.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # what deterministic cuBLAS needs
            torch.use_deterministic_algorithms(True)
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        RESULTS.mkdir(parents=True, exist_ok=True)
        # the fingerprint of the files as they are when the training code is imported: a commit
        # made by someone else while the cells run changes neither the code this process runs
        # nor the fingerprint its cells record
        current = code_fingerprint()
        register_equivalents(load_cells())
        import importlib

        for module in ("mner.experiment", "mner.evaluation", "mner.models", "mner.training.trainer"):
            importlib.import_module(module)
        ran = runner.run_plans(plans(args, current), current=current, versions=VERSIONS, volatile=VOLATILE,
                               rerun_stale=args.rerun_stale, max_cells=args.max_cells, after_cell=write_report,
                               version_of=_version)
    figures = write_report()
    print(f"results page: {PAGE.relative_to(ROOT)}")
    print(runner.final_line(ran, "test_f1", figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
