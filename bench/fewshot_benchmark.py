"""Few-shot MNER on the real benchmarks, cell by cell: dataset x split x model x K x seed.

The protocol is ``docs/models/mousing.md``'s: for each dataset and each of the six target-type pairs
(Per+Loc ... Org+Others), a model is trained on episodes of the two *source* types drawn from the
train split (target mentions relabelled O), selected on the dev episodes of the target types
(valid split) and scored on 500 test episodes of the target types (test split), entity-level micro
P/R/F1 pooled over every query tweet of every episode (conlleval mode), under two protocols: ours
(support and query drawn greedily N-way K~2K: every query tweet holds a target mention) and the
poster's (the same supports, 10 query tweets drawn at random from the split, with or without target
mentions). A second selection rule is recorded beside the first: the checkpoint best on dev
episodes of the *source* types (no target-type label read). The episode files are written once by
``mner fewshot protocol`` (seed 1) into ``runs/episodes/<dataset>/`` (not committed: the same seed
rewrites the same bytes; each cell records their sha256) and read by every model.

Every MOUSING cell (the model and its ablations) also stores its diagnostics on the test episodes
(``mner.fewshot.diagnose``): word-visual edges, intervention masks in training and at test, the
agreement of the two views, and F1 with real, shuffled and no captions.

A finished cell is stored in ``bench/results/fewshot/<cell>.json`` (committed), with its test
predictions on both protocols (``bench/results/fewshot/predictions/<cell>.jsonl.gz``: one line per
test episode, its protocol, index and the tags of its query tweets; :func:`stored_predictions`
reads them back and checks they score the cell's F1), and skipped next time, unless
``--rerun-stale`` and it ran another code version or configuration than the benchmark's now
(:mod:`runner`, shared with ``maf_benchmark.py``); a run folder of another code version is not
resumed. The page ``docs/results/mousing.md`` and the README's few-shot block are regenerated from
all stored cells after each one.
NNShot and StructShot share one trained encoder: the ``nnshot`` cell also stores the ``structshot``
cell (the same checkpoint decoded with StructShot's abstract transitions, tau chosen on dev).
The cells of the earlier code (BIO baselines, a graph measured after the learned projections) are
kept in ``bench/results/fewshot-v1/``; the page no longer reads them.

    .venv/bin/python bench/fewshot_benchmark.py --datasets twitter2017 --models mousing --splits Per+Loc
    .venv/bin/python bench/fewshot_benchmark.py --rerun-stale --datasets twitter2017 --splits Org+Others --models mousing
    .venv/bin/python bench/fewshot_benchmark.py --report          # only rebuild the page

The output ends with one JSON line: the cells run now and the table's average F1 per model.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cells as cellmeta  # noqa: E402  (bench/cells.py: what every cell records, shared with maf_benchmark.py)
import runner  # noqa: E402  (bench/runner.py: the loop that runs cells, shared with maf_benchmark.py)
from cells import git_commit, machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "fewshot"
PREDICTIONS = "predictions"  # the folder of the stored test predictions, inside RESULTS
PAGE = ROOT / "docs" / "results" / "mousing.md"
DATA = Path(os.environ.get("MNER_DATA", ROOT.parent / "shared" / "data"))
EPISODES = ROOT / "runs" / "episodes"

SPLITS = {"Per+Loc": ("PER", "LOC"), "Per+Org": ("PER", "ORG"), "Per+Others": ("PER", "MISC"),
          "Loc+Org": ("LOC", "ORG"), "Loc+Others": ("LOC", "MISC"), "Org+Others": ("ORG", "MISC")}
# model name -> (model_type, model config); MOUSING's graph: similarities in the encoders' shared space
# (words and caption tokens as states of one frozen MiniLM) with delta 0.5, chosen by the diagnostics and dev F1
# (docs/models/mousing.md, "Why this graph")
# The cells decode O against its prototype, as the stored seed-37 cells were scored (new checkpoints default
# to the nearest O support words, docs/results/mousing-precision.md): every seed of a row is one decoder
MOUSING = {"visual_view": "caption", "graph": {"space": "frozen", "delta": 0.5}, "o_distance": "prototype"}
MODELS = {
    "protobert": ("protobert", {}),
    "nnshot": ("nnshot", {}),
    "proto-maf": ("proto-maf", {"visual_view": "caption"}),
    "mousing": ("mousing", MOUSING),
    "mousing-no-image": ("mousing", {**MOUSING, "no_image": True}),
    "mousing-no-intervention": ("mousing", {**MOUSING, "no_intervention": True}),
    "mousing-no-multiview": ("mousing", {**MOUSING, "no_multiview": True}),
    "mousing-no-mcis": ("mousing", {**MOUSING, "no_mcis": True}),
    "mousing-random": ("mousing", {**MOUSING, "intervention": {"mode": "random"}}),
    "mousing-gaussian": ("mousing", {**MOUSING, "intervention": {"mode": "gaussian"}}),
}
# evaluated from another model's checkpoint: StructShot from NNShot's encoder (tau on dev), and each
# prototype model decoded with an O bias chosen on dev (``o_bias``: a prototype decoder trained on the
# source types over-predicts entities of unseen ones; the bias trades recall for precision)
CALIBRATED = {"protobert-cal": "protobert", "proto-maf-cal": "proto-maf", "mousing-cal": "mousing"}
#: MOUSING's checkpoint decoded as new checkpoints decode: the O column scored against the 2 nearest O
#: support words (``docs/results/mousing-precision.md``: chosen on the dev episodes of all six
#: Twitter-2017 splits). The MOUSING row keeps the prototype O it was trained and selected with (one
#: decoder per row), so every MOUSING cell also stores this decoding of the same checkpoints.
NEAREST_O = {"o_distance": "nearest", "o_neighbours": 2}
DECODED = {"mousing-nearest-o": ("mousing", NEAREST_O)}
MOUSING_FAMILY = {"mousing", "mousing-no-image", "mousing-no-intervention", "mousing-no-multiview", "mousing-no-mcis",
                  "mousing-random", "mousing-gaussian"}
DERIVED = {"structshot": "nnshot", **CALIBRATED, **{name: base for name, (base, _) in DECODED.items()}}
NAMES = {"protobert": "ProtoBERT", "nnshot": "NNShot", "structshot": "StructShot",
         "proto-maf": "ProtoMAF (multimodal prototypes)", "mousing": "MOUSING",
         "mousing-no-image": "w/o Image", "mousing-no-intervention": "w/o Intervention",
         "mousing-no-multiview": "w/o Multi-view", "mousing-no-mcis": "w/o MCIS",
         "mousing-random": "w/ Random Intervention", "mousing-gaussian": "w/ Gaussian Intervention",
         "protobert-cal": "ProtoBERT + O bias (dev)", "proto-maf-cal": "ProtoMAF + O bias (dev)",
         "mousing-cal": "MOUSING + O bias (dev)", "mousing-nearest-o": "MOUSING, nearest-O decoder"}
ORDER = ["protobert", "nnshot", "structshot", "proto-maf", "mousing", "mousing-nearest-o", "protobert-cal",
         "proto-maf-cal", "mousing-cal"]
ABLATIONS = ["mousing-no-image", "mousing-no-intervention", "mousing-no-multiview", "mousing-no-mcis",
             "mousing-random", "mousing-gaussian", "mousing"]
# The poster's F1 (its protocol details, K among them, are unknown).
POSTER = {
    "twitter2015": {"protobert": [18.52, 22.26, 20.71, 15.89, 14.80, 17.83, 18.34],
                    "nnshot": [18.65, 27.24, 28.21, 20.81, 28.78, 25.90, 24.93],
                    "structshot": [18.66, 30.41, 28.37, 24.87, 31.13, 29.05, 27.08],
                    "mousing": [34.86, 28.43, 35.32, 30.10, 36.62, 27.99, 31.22]},
    "twitter2017": {"protobert": [12.60, 23.26, 14.03, 21.95, 18.67, 15.87, 17.73],
                    "nnshot": [24.27, 29.82, 25.29, 23.23, 23.82, 22.78, 24.86],
                    "structshot": [25.41, 29.39, 22.89, 24.45, 24.20, 27.22, 25.59],
                    "mousing": [34.12, 28.10, 27.14, 24.12, 24.85, 25.79, 27.35]},
}
POSTER_ABLATION = {"mousing-no-image": 26.72, "mousing-no-intervention": 25.00, "mousing-no-multiview": 25.72,
                   "mousing-no-mcis": 19.06, "mousing-random": 30.24, "mousing-gaussian": 30.47, "mousing": 33.18}
# StructShot's tau, a power of the transition rows as in its reference (< 1 flattens, > 1 sharpens)
TEMPERATURES = (0.01, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
# fine near 0: the learned emission scale is large (on Twitter-2015 Per+Loc a bias of 1 already
# halved MOUSING's dev F1), negative values let the dev episodes ask for more entities, not fewer
O_BIASES = (-1.0, -0.5, -0.25, -0.1, 0.0, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.0)

# Training budget per cell (2 CPU cores): episodes per epoch x epochs, episodes per step.
TRAIN = {"epochs": 4, "train_episodes": 100, "batch_size": 2, "eval_batch_size": 8,
         "learning_rate": 5e-5, "head_learning_rate": 1e-3}


# The code a few-shot cell runs (data and episodes, encoders, every model, processing, tagging,
# training, the few-shot experiment, evaluation and diagnostics), hashed into its code fingerprint;
# serving, batch tagging, the CLI and the significance test can change without making a cell stale.
CODE = cellmeta.Fingerprint(
    ("mner/__init__.py", "mner/config.py", "mner/crf.py", "mner/errors.py", "mner/data/", "mner/encoders/",
     "mner/models/", "mner/processing/", "mner/tagging/", "mner/training/", "mner/fewshot/"),
    ("mner/tagging/significance.py", "mner/fewshot/pipeline.py"))
#: same-host re-runs of stored cells at newer code (every figure identical): the evidence that two
#: code versions train alike (:class:`cells.Versions`)
EQUIVALENCE_FILE = ROOT / "bench" / "results" / "fewshot-equivalence.json"


#: the parts of a cell's experiment that depend on the checkout's location (its output folder, the data
#: and episode files): left out when a stored cell's configuration is compared with the benchmark's now
VOLATILE = ("training.output_dir", "data.corpus", "episodes.dev", "episodes.test", "episodes.dev_source")
#: what a stored cell's configuration meant where it did not name a key: the seed-37 cells ran before
#: ``o_distance`` was written out, when its default was ``prototype`` (what :data:`MOUSING` pins)
IMPLIED = {"model.o_distance": "prototype"}


def code_versions() -> cellmeta.Versions:
    versions = cellmeta.Versions(CODE)
    if EQUIVALENCE_FILE.is_file():
        versions.add_evidence(json.loads(EQUIVALENCE_FILE.read_text()))
    return versions


def _version_lines(cells: list[dict]) -> list[str]:
    """The page's paragraph on the code versions of the cells (see :mod:`cells`)."""
    versions = code_versions()
    current = cellmeta.code_fingerprint(CODE)
    groups: dict[str | None, list[dict]] = {}
    for c in cells:
        groups.setdefault(versions.of(c), []).append(c)
    parts = []
    for fp, members in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        commits = sorted({c.get("git_commit") or "unknown" for c in members})
        same = " (the code here now)" if fp == current else (
            f" (counts as the code here now)" if versions.same(fp, current) else "")
        parts.append(f"`{fp or 'unknown'}`{same}: {len(members)} cells, commit(s) {', '.join(commits)}")
    lines = [f"Code versions (`bench/cells.py`: a hash of the source files a few-shot cell runs; a cell stored "
             f"without one gets it from its commit): " + "; ".join(parts) + f". The code here now is `{current}`."]
    main_commit = {fp: sorted({c.get("git_commit") for c in members})[0] for fp, members in groups.items() if fp}
    ordered = sorted(groups, key=lambda fp: -len(groups[fp]))
    if len(ordered) > 1 and ordered[0]:
        for fp in ordered[1:]:
            if fp and not versions.same(fp, ordered[0]):
                diff = cellmeta.changed_files(CODE, main_commit[fp], main_commit[ordered[0]])
                if diff is not None:
                    lines.append(f"`{fp}` ({main_commit[fp]}) and `{ordered[0]}` ({main_commit[ordered[0]]}) differ in "
                                 f"{len(diff)} file(s): " + ", ".join(f"`{d}`" for d in diff) + ".")
    pairs: dict[tuple, list[dict]] = {}
    if EQUIVALENCE_FILE.is_file():
        for e in json.loads(EQUIVALENCE_FILE.read_text()):
            a, b = versions.of(e["old"]), versions.of(e["new"])
            if a and b and a != b and versions.same(a, b):
                pairs.setdefault((a, e["old"]["git_commit"], b, e["new"]["git_commit"], e["machine"]), []).append(e)
    for (a, ca, b, cb, where), entries in pairs.items():
        runs = ", ".join(f"`{e['cell']}` (test F1 {100 * e['new']['test_f1']:.2f})" for e in entries)
        # ``except``: the figures of the record that were not the same to the last digit, and why
        but = "; ".join(e["except"] for e in entries if e.get("except"))
        lines.append(f"Code `{b}` (commit {cb}) counts as `{a}` (commit {ca}): re-run at {cb} on one machine ({where}), "
                     f"{runs} gave every figure of the stored cell to the last digit"
                     + (f" except {but}" if but else "") + f" (`{EQUIVALENCE_FILE.relative_to(ROOT)}`).")
    return [x for line in lines for x in (line, "")][:-1]


def cell_name(dataset: str, split: str, model: str, k: int, seed: int) -> str:
    return f"{dataset}__{split}__{model}__k{k}__seed{seed}"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def episode_files(dataset: str, split: str, k: int) -> dict[str, Path]:
    """The protocol's episode files of one split (written once, seed 1): ``dev``, ``dev_source``,
    ``test`` (ours) and ``test_poster``."""
    from mner.data.sampling import write_protocol

    out = EPISODES / dataset / split
    files = {"dev": out / f"dev-k{k}.jsonl", "dev_source": out / f"dev-source-k{k}.jsonl",
             "test": out / f"test-k{k}.jsonl", "test_poster": out / f"test-poster-k{k}.jsonl"}
    if not all(f.is_file() for f in files.values()):
        write_protocol(DATA / dataset, EPISODES / dataset, ks=(k,), seed=1)
    return files


def experiment(dataset: str, split: str, model: str, k: int, seed: int, run_dir: Path, train: dict,
               files: dict[str, Path] | None = None) -> dict:
    """The experiment of a cell (``files``: its episode files; default: written by the protocol if
    missing)."""
    model_type, mcfg = MODELS[model]
    files = episode_files(dataset, split, k) if files is None else files
    return {
        "model_type": model_type,
        "model": {"text_encoder": {"name": "minilm"}, "caption_encoder": {"name": "minilm"}, **mcfg},
        "data": {"corpus": str(DATA / dataset), "type_map": "OTHER=MISC", "captions": "auto"},
        "episodes": {"target_types": list(SPLITS[split]), "k": k, "train_episodes": train["train_episodes"],
                     "dev": str(files["dev"]), "test": str(files["test"]), "dev_source": str(files["dev_source"]),
                     "seed": 1},
        "training": {"output_dir": str(run_dir), "epochs": train["epochs"], "batch_size": train["batch_size"],
                     "eval_batch_size": train["eval_batch_size"], "learning_rate": train["learning_rate"],
                     "head_learning_rate": train["head_learning_rate"], "seed": seed, "progress": False,
                     "log_every": 25, "tensorboard": False},
    }


#: per checkpoint folder (and the size and time of its files), the rows of the distinct-tweet chunks
#: its model has encoded (``predict_episodes(encoded=...)``): a cell decodes one checkpoint many ways on
#: the same episode files (the tau and O-bias grids, nearest-O, diagnostics, both protocols), and each
#: chunk is encoded once; the predictions are those of encoding it every time (a test checks it). One
#: side effect: a processor that skipped a reused chunk encodes its captions later in other batches, so the
#: diagnostics' graph statistics (which read them) moved after the eighth digit (fewshot-equivalence.json)
_ENCODED: dict[tuple, dict] = {}


def _encoded(folder: Path) -> dict:
    """The chunk rows of the checkpoint in ``folder`` (see :data:`_ENCODED`)."""
    folder = Path(folder).resolve()
    stamp = tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(folder.iterdir()) if f.is_file())
    return _ENCODED.setdefault((str(folder), stamp), {})


def _score(model, episodes, batch_size: int, keep: list | None = None,
           encoded: dict | None = None) -> tuple[dict, float]:
    """The model's scores on ``episodes`` and its episodes per second; ``keep`` receives the tags;
    ``encoded``: the rows its checkpoint has encoded so far (:func:`_encoded`)."""
    from mner.fewshot.evaluation import predict_episodes, score_episodes

    preds = predict_episodes(model, episodes, model.processor(), batch_size, encoded=encoded)
    rep = score_episodes(episodes, preds)
    if keep is not None:
        keep.extend(preds.tags)
    return ({"precision": rep.micro.precision, "recall": rep.micro.recall, "f1": rep.micro.f1,
             "per_type": {t: s.f1 for t, s in rep.per_type.items()},
             "episode_counts": _episode_counts(episodes, preds)}, preds.episodes_per_second)


def _episode_counts(episodes, preds) -> list[list[int]]:
    """Per episode ``[correct, predicted, gold]`` entity counts (conlleval): what a paired
    significance test over episodes resamples."""
    from mner.tagging import score

    out = []
    for ep, tags in zip(episodes, preds.tags):
        rep = score([list(x.tags) for x in ep.query], tags)
        m = rep.micro
        out.append([int(m.tp), int(m.predicted), int(m.support)])
    return out


def _test_files(cfg: dict) -> dict[str, Path]:
    """The test episode files of a cell's two protocols: ``ours`` and ``poster``."""
    test = Path(cfg["episodes"]["test"])
    return {"ours": test, "poster": test.with_name(test.name.replace("test-k", "test-poster-k"))}


def _tests(model, cfg: dict, batch_size: int = 8, tags: dict | None = None, encoded: dict | None = None) -> dict:
    """The model scored on both protocols' test files of its cell; ``tags`` receives each protocol's
    predicted tags (per episode, per query tweet); ``encoded``: as for :func:`_score`."""
    from mner.data.episodes import read_episodes

    out = {}
    for name, path in _test_files(cfg).items():
        keep: list = []
        scores, eps = _score(model, read_episodes(path), batch_size, keep, encoded)
        out[name] = {**scores, "episodes_per_second": eps, "sha256": sha256(path)}
        if tags is not None:
            tags[name] = keep
    return out


def store_predictions(tags: dict[str, list], target: Path) -> dict:
    """Store a cell's test predictions (``tags``: protocol -> per episode, per query tweet, the tags)
    as ``target``: one JSON line per episode, ``{"protocol", "episode", "tags"}``, gzip with no
    timestamp (the same predictions give the same bytes); return the cell's record of the file."""
    lines = [json.dumps({"protocol": protocol, "episode": i, "tags": [list(t) for t in episode]},
                        ensure_ascii=False, separators=(",", ":"))
             for protocol, episodes in tags.items() for i, episode in enumerate(episodes)]
    return cellmeta.store_gzip(("\n".join(lines) + "\n").encode("utf-8"), target, ROOT,
                               **{f"{p}_episodes": len(e) for p, e in tags.items()})


def stored_predictions(cell: dict, episodes_dir: Path | None = None) -> dict[str, list] | str:
    """A cell's stored test predictions, protocol -> per episode the tags of its query tweets, checked:
    the file is the one the cell recorded (sha256), the episode files are the ones it was scored on
    (``episodes_dir``: where they are now, default the cell's own paths), and each protocol's tags
    score the cell's F1 exactly. Otherwise, why not."""
    from mner.data.episodes import read_episodes
    from mner.fewshot.evaluation import EpisodePredictions, score_episodes

    rec = cell.get("predictions")
    if not rec:
        return "no stored predictions (cells stored before they were kept: re-run)"
    data = cellmeta.StoredFile.from_dict(rec, cell["cell"]).read(ROOT)
    if isinstance(data, str):
        return data
    tags: dict[str, list] = {}
    for line in data.decode("utf-8").splitlines():
        row = json.loads(line)
        tags.setdefault(row["protocol"], []).append([list(t) for t in row["tags"]])
    for protocol, path in _test_files(cell["config"]).items():
        if episodes_dir is not None:
            path = episodes_dir / path.name
        key = "test" if protocol == "ours" else "test_poster"
        if not path.is_file() or sha256(path) != cell[key]["sha256"]:
            return f"{path}: not the episode file the cell was scored on"
        eps = read_episodes(path)
        try:
            rep = score_episodes(eps, EpisodePredictions(tags=tags.get(protocol, [])))
        except ValueError as exc:
            return f"{rec['path']}: {protocol}: {exc}"
        if rep.micro.f1 != cell[key]["f1"]:
            return f"{rec['path']}: {protocol} scores {100 * rep.micro.f1:.4f}, the cell says {100 * cell[key]['f1']:.4f}"
    return tags


def structshot_cell(base: dict, run_dir: Path, results: Path = RESULTS) -> dict:
    """StructShot from the NNShot cell's best checkpoint: tau chosen on the dev episodes (and, for the
    source-selected checkpoint, on the source-type dev episodes)."""
    from mner.data.episodes import read_episodes
    from mner.models import load_model

    cfg = base["config"]
    dev = read_episodes(cfg["episodes"]["dev"])
    t0 = time.perf_counter()

    def choose(folder: Path, episodes) -> tuple:
        model = load_model(folder)
        model.config.decoder = "structshot"
        tuning = {}
        encoded = _encoded(folder)
        for tau in TEMPERATURES:
            model.config.temperature = tau
            tuning[str(tau)] = _score(model, episodes, 8, encoded=encoded)[0]["f1"]
        tau = max(TEMPERATURES, key=lambda t: (tuning[str(t)], -abs(math.log(t))))
        model.config.temperature = tau
        return model, tau, tuning

    model, tau, tuning = choose(run_dir / "best", dev)
    tags: dict = {}
    tests = _tests(model, cfg, tags=tags, encoded=_encoded(run_dir / "best"))
    out = dict(base)
    name = base["cell"].replace("__nnshot__", "__structshot__")
    out.update({"cell": name, "model": "structshot",
                "test": tests["ours"], "test_poster": tests["poster"], "dev_f1": tuning[str(tau)], "temperature": tau,
                "dev_f1_by_temperature": tuning, "temperature_grid": list(TEMPERATURES),
                "test_episodes_per_second": tests["ours"]["episodes_per_second"],
                "command": base["command"] + "  (the nnshot cell stores this one)"})
    out["predictions"] = store_predictions(tags, results / PREDICTIONS / f"{name}.jsonl.gz")
    sel = base.get("selected_on_source")
    if sel is not None:
        smodel, stau, stuning = choose(run_dir / "best-source_f1", read_episodes(cfg["episodes"]["dev_source"]))
        stests = (_tests(smodel, cfg, encoded=_encoded(run_dir / "best-source_f1"))
                  if sel["epoch"] != base["best_epoch"] or stau != tau else tests)
        out["selected_on_source"] = {**sel, "temperature": stau, "dev_source_f1_by_temperature": stuning,
                                     "test": stests["ours"], "test_poster": stests["poster"]}
    out["wall_seconds"] = base["wall_seconds"] + time.perf_counter() - t0
    return out


def calibrated_cell(base: dict, run_dir: Path) -> dict:
    """A prototype model's best checkpoint decoded with the O bias that scores best on the dev episodes
    (ties: the bias nearer 0; 0 is in the grid, so on dev it never does worse than no bias)."""
    from mner.data.episodes import read_episodes
    from mner.models import load_model

    cfg = base["config"]
    dev = read_episodes(cfg["episodes"]["dev"])
    model = load_model(run_dir / "best")
    t0 = time.perf_counter()
    tuning = {}
    encoded = _encoded(run_dir / "best")
    for bias in O_BIASES:
        model.config.o_bias = bias
        tuning[str(bias)] = _score(model, dev, 8, encoded=encoded)[0]["f1"]
    bias = max(O_BIASES, key=lambda b: (tuning[str(b)], -abs(b)))
    model.config.o_bias = bias
    tests = _tests(model, cfg, encoded=encoded)
    scores, eps = tests["ours"], tests["ours"]["episodes_per_second"]
    name = base["model"] + "-cal"
    out = dict(base)
    # the base model's predictions, diagnostics and source-selected checkpoint, not this decoding's
    for key in ("predictions", "diagnostics", "selected_on_source"):
        out.pop(key, None)
    out.update({"cell": _derived_name(base, name), "model": name,
                "test": scores, "test_poster": tests["poster"], "poster_scored": True,
                "dev_f1": tuning[str(bias)], "o_bias": bias, "dev_f1_by_o_bias": tuning,
                "o_bias_grid": list(O_BIASES),
                "test_episodes_per_second": eps, "wall_seconds": base["wall_seconds"] + time.perf_counter() - t0,
                "calibrated_at": git_commit(),
                "command": base["command"] + f"  (the {base['model']} cell stores this one)"})
    return out


def decoded_cell(base: dict, run_dir: Path, name: str, results: Path = RESULTS) -> dict:
    """The base cell's checkpoints decoded with the options of :data:`DECODED` ``[name]`` (no choice
    made: the options are fixed): test F1 on both protocols with its predictions, dev F1, and the
    checkpoint selected on source-type dev episodes decoded alike. The epoch is the base cell's (chosen
    with the decoding it was trained with)."""
    from mner.data.episodes import read_episodes
    from mner.models import load_model

    _, options = DECODED[name]
    cfg = base["config"]
    t0 = time.perf_counter()

    def load(folder: Path):
        model = load_model(folder)
        for key, value in options.items():
            setattr(model.config, key, value)
        return model

    model, encoded = load(run_dir / "best"), _encoded(run_dir / "best")
    dev_f1 = _score(model, read_episodes(cfg["episodes"]["dev"]), 8, encoded=encoded)[0]["f1"]
    tags: dict = {}
    tests = _tests(model, cfg, tags=tags, encoded=encoded)
    target = _derived_name(base, name)
    out = {k: v for k, v in base.items() if k != "diagnostics"}   # the diagnostics are the base decoding's
    out.update({"cell": target, "model": name, "decoding": dict(options), "dev_f1": dev_f1,
                "test": tests["ours"], "test_poster": tests["poster"],
                "test_episodes_per_second": tests["ours"]["episodes_per_second"],
                "command": base["command"] + f"  (the {base['model']} cell stores this one)"})
    out["predictions"] = store_predictions(tags, results / PREDICTIONS / f"{target}.jsonl.gz")
    sel = base.get("selected_on_source")
    if sel is not None:
        stests = tests if sel["epoch"] == base["best_epoch"] else _tests(
            load(run_dir / "best-source_f1"), cfg, encoded=_encoded(run_dir / "best-source_f1"))
        out["selected_on_source"] = {**sel, "test": stests["ours"], "test_poster": stests["poster"]}
    out["wall_seconds"] = base["wall_seconds"] + time.perf_counter() - t0
    return out


def _current(path: Path) -> bool:
    """A stored O-bias cell chosen over today's grid and scored on both protocols (one chosen over an
    older grid, or stored before the O-bias cells were scored on the poster's protocol, is made again)."""
    if not path.is_file():
        return False
    cell = json.loads(path.read_text())
    return cell.get("o_bias_grid") == list(O_BIASES) and cell.get("test_poster") is not None


def add_predictions(runs_dir: Path | None = None, datasets: list[str] | None = None,
                    models: list[str] | None = None) -> tuple[list[str], dict[str, str]]:
    """Give stored cells recorded before test predictions were kept theirs, from the best checkpoint
    of their run folder (``<runs_dir>/<cell>/best``; StructShot: the NNShot cell's, decoded with the
    cell's tau) where it is still here and is the model that made the cell: its F1 on both protocols'
    test episodes (the files of :data:`EPISODES`, which must have the cell's sha256) must be the
    cell's, exactly. Returns the cells filled and, for the others, why not."""
    from mner.models import load_model

    runs_dir = ROOT / "runs" / "bench-fewshot" if runs_dir is None else runs_dir
    added, missing = [], {}
    for path in sorted(RESULTS.glob("*.json")):
        cell = cellmeta.Cell.load(path).to_dict()
        if (cell.get("predictions") or (datasets and cell["dataset"] not in datasets)
                or (models and cell["model"] not in models and DERIVED.get(cell["model"]) not in models)):
            continue
        if cell["model"] in CALIBRATED:
            missing[cell["cell"]] = "an O-bias cell (superseded decoding): not filled"
            continue
        base = cell["cell"].replace("__structshot__", "__nnshot__")
        checkpoint = runs_dir / base / "best"
        if not (checkpoint / "config.json").is_file():
            missing[cell["cell"]] = f"no checkpoint {checkpoint}"
            continue
        cfg = json.loads(json.dumps(cell["config"]))
        cfg["episodes"]["test"] = str(EPISODES / cell["dataset"] / cell["split"] / Path(cfg["episodes"]["test"]).name)
        files = _test_files(cfg)
        wrong = [f.name for f, key in ((files["ours"], "test"), (files["poster"], "test_poster"))
                 if not f.is_file() or sha256(f) != cell[key]["sha256"]]
        if wrong:
            missing[cell["cell"]] = f"episode files {', '.join(wrong)} under {EPISODES} are not the cell's (mner fewshot protocol)"
            continue
        model = load_model(checkpoint)
        if cell["model"] == "structshot":
            model.config.decoder, model.config.temperature = "structshot", cell["temperature"]
        tags: dict = {}
        tests = _tests(model, cfg, tags=tags)
        if tests["ours"]["f1"] != cell["test"]["f1"] or tests["poster"]["f1"] != cell["test_poster"]["f1"]:
            missing[cell["cell"]] = (f"{checkpoint} scores {100 * tests['ours']['f1']:.4f} / {100 * tests['poster']['f1']:.4f}, "
                                     f"the cell says {100 * cell['test']['f1']:.4f} / {100 * cell['test_poster']['f1']:.4f}: "
                                     "not the model that made it")
            continue
        cell["predictions"] = store_predictions(tags, RESULTS / PREDICTIONS / f"{cell['cell']}.jsonl.gz")
        cellmeta.Cell.from_dict(cell, str(path)).store(path)
        added.append(cell["cell"])
        print(f"== {cell['cell']}: predictions added from {checkpoint}", flush=True)
    return added, missing


def _derived_name(base: dict, name: str) -> str:
    return base["cell"].replace(f"__{base['model']}__", f"__{name}__")


def _episodes_here(base: dict) -> dict:
    """``base`` with its episode files where they are on this machine: the paths it names, or else the
    protocol's files under :data:`EPISODES` (written if missing: the same seed gives the same bytes),
    which must be the test file it was scored on (sha256)."""
    cfg = json.loads(json.dumps(base["config"]))
    files = None
    for key in ("dev", "test", "dev_source"):
        if key in cfg["episodes"] and not Path(cfg["episodes"][key]).is_file():
            files = files or episode_files(base["dataset"], base["split"], base["k"])
            cfg["episodes"][key] = str(files[key])
    test = Path(cfg["episodes"]["test"])
    if sha256(test) != base["episodes"]["test_sha256"]:
        raise SystemExit(f"{base['cell']}: {test} is not the test episode file the cell was scored on (sha256); "
                         "write the protocol's files with the seed the cell used (mner fewshot protocol)")
    return {**base, "config": cfg}


def derive_missing(models: list[str], datasets: list[str], train: dict, runs_dir: Path | None = None,
                   splits: list[str] | None = None, ks: list[int] | None = None,
                   seeds: list[int] | None = None) -> list[dict]:
    """The derived cells of stored cells that lack them (cells stored before the derivation existed):
    the O-bias cells (:data:`CALIBRATED`, chosen again over a changed grid) and the other decodings
    (:data:`DECODED`).

    The stored cell's checkpoint is read from ``<runs_dir>/<cell>/best`` (default
    ``runs/bench-fewshot``) when it is still on this machine; otherwise the cell is retrained with its
    own command (same seed) into ``runs/bench-fewshot/<cell>`` first, and the retrained test F1 is
    recorded beside the stored one (a reproducibility check). ``splits``, ``ks``, ``seeds``: only the
    stored cells of these (default: all)."""
    runs_dir = ROOT / "runs" / "bench-fewshot" if runs_dir is None else runs_dir
    made = []
    for base in load_cells():
        if (base["model"] not in models or base["dataset"] not in datasets or (splits and base["split"] not in splits)
                or (ks and base["k"] not in ks) or (seeds and base["seed"] not in seeds)):
            continue
        wanted = [n for n, src in CALIBRATED.items()
                  if src == base["model"] and not _current(RESULTS / f"{_derived_name(base, n)}.json")]
        wanted += [n for n, (src, _) in DECODED.items()
                   if src == base["model"] and not (RESULTS / f"{_derived_name(base, n)}.json").is_file()]
        if not wanted:
            continue
        _ENCODED.clear()
        run_dir = runs_dir / base["cell"]
        retrained = None
        if not (run_dir / "best").is_dir():
            print(f"== {base['cell']}: checkpoint not on this machine, retraining it", flush=True)
            again = run_cell(base["dataset"], base["split"], base["model"], base["k"], base["seed"], train,
                             derive=False)[0]
            run_dir = Path(again["config"]["training"]["output_dir"])
            retrained = {"test_f1": again["test"]["f1"], "git_commit": again["git_commit"],
                         "identical": again["test"]["f1"] == base["test"]["f1"]}
        base = _episodes_here(base)
        for name in wanted:
            path = RESULTS / f"{_derived_name(base, name)}.json"
            if name in CALIBRATED:
                cell = calibrated_cell(base, run_dir)
                what = f"o_bias {cell['o_bias']}"
            else:
                cell = decoded_cell(base, run_dir, name, RESULTS)
                what = ", ".join(f"{k} {v}" for k, v in cell["decoding"].items())
            if retrained is not None:
                cell["retrained"] = retrained
            cellmeta.Cell.from_dict(cell, str(path)).store(path)
            print(f"== {cell['cell']}: {what}, test F1 {100 * cell['test']['f1']:.2f}"
                  + (f" (retrained base F1 {100 * retrained['test_f1']:.2f} vs stored {100 * base['test']['f1']:.2f})"
                     if retrained else ""), flush=True)
            made.append(cell)
        write_report()
    return made


def run_cell(dataset: str, split: str, model: str, k: int, seed: int, train: dict,
             derive: bool = True, calibrate: bool = False, raw: dict | None = None,
             results: Path = RESULTS, fingerprint: str | None = None) -> list[dict]:
    """Train one cell and return its records (the NNShot cell's StructShot too). ``raw`` replaces the
    cell's experiment (tests: a tiny model); ``results`` is where its predictions go; ``fingerprint``:
    of the code this process imported (default: of the files now)."""
    from mner.fewshot.experiment import load_fewshot, train_fewshot

    name = cell_name(dataset, split, model, k, seed)
    if raw is None:
        raw = experiment(dataset, split, model, k, seed, ROOT / "runs" / "bench-fewshot" / name, train)
    run_dir = Path(raw["training"]["output_dir"])
    commit = git_commit()
    fingerprint = fingerprint or cellmeta.code_fingerprint(CODE)
    t0 = time.perf_counter()
    summary = train_fewshot(load_fewshot(raw))
    wall = time.perf_counter() - t0
    command = (f".venv/bin/python bench/fewshot_benchmark.py --datasets {dataset} --splits {split} "
               f"--models {model} --k {k} --seeds {seed}")
    test_file = Path(raw["episodes"]["test"])
    from mner.data.episodes import read_episodes

    test_eps = read_episodes(test_file)
    try:
        shown = test_file.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        shown = str(test_file)
    cell = {
        "cell": name, "dataset": dataset, "split": split, "model": model, "k": k, "seed": seed,
        "command": command, "config": raw, "summary": summary,
        "test": None, "dev_f1": summary["dev_f1"], "best_epoch": summary["best_epoch"],
        "episodes": {"test": shown, "test_sha256": sha256(test_file),
                     "dev_sha256": sha256(Path(raw["episodes"]["dev"])), "test_count": len(test_eps)},
        "train_episodes": train["epochs"] * train["train_episodes"],
        "train_episodes_per_second": (train["epochs"] * train["train_episodes"]) / max(1e-9, sum(summary["seconds_per_epoch"])),
        "test_episodes_per_second": summary.get("test_episodes_per_second"),
        "seconds_per_epoch": summary["seconds_per_epoch"], "wall_seconds": wall,
        "machine": machine(), "git_commit": commit, "code_fingerprint": fingerprint,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    from mner.models import load_model

    best = load_model(run_dir / "best")
    _ENCODED.clear()
    encoded = _encoded(run_dir / "best")
    tags: dict = {}
    tests = _tests(best, raw, tags=tags, encoded=encoded)
    cell["test"], cell["test_poster"] = tests["ours"], tests["poster"]
    cell["predictions"] = store_predictions(tags, results / PREDICTIONS / f"{name}.jsonl.gz")
    cell["test_f1_at_training"] = summary["test_f1"]   # the same model and file; caption features recomputed
    source = json.loads((run_dir / "best-source_f1" / "config.json").read_text()).get("trained", {})
    sel = {"epoch": source.get("epoch"), "dev_source_f1": (source.get("dev") or {}).get("source_f1")}
    stests = tests if sel["epoch"] == cell["best_epoch"] else _tests(
        load_model(run_dir / "best-source_f1"), raw, encoded=_encoded(run_dir / "best-source_f1"))
    cell["selected_on_source"] = {**sel, "test": stests["ours"], "test_poster": stests["poster"]}
    if model in MOUSING_FAMILY:
        from mner.fewshot.diagnose import diagnose

        t1 = time.perf_counter()
        cell["diagnostics"] = diagnose(best, test_eps, best.processor(), encoded=encoded)
        cell["diagnostics"]["seconds"] = time.perf_counter() - t1
    cell["wall_seconds"] = time.perf_counter() - t0
    cells = [cell]
    if derive and model == "nnshot":
        cells.append(structshot_cell(cell, run_dir, results))
    if derive:
        cells += [decoded_cell(cell, run_dir, name, results) for name, (src, _) in DECODED.items() if src == model]
    if derive and calibrate and f"{model}-cal" in CALIBRATED:
        cells.append(calibrated_cell(cell, run_dir))
    _ENCODED.clear()
    return cells


def load_cells(results: Path | None = None) -> list[dict]:
    """The stored cells, each checked against the schema (:class:`cells.Cell`)."""
    return cellmeta.load_cells(RESULTS if results is None else results)


def _ms(values: list[float]) -> str:
    if not values:
        return "-"
    m = 100 * statistics.mean(values)
    return f"{m:.2f}" if len(values) == 1 else f"{m:.2f} ± {100 * statistics.stdev(values):.2f}"


def _f1(c: dict, protocol: str = "ours", selection: str = "dev") -> float | None:
    """A cell's test F1 under a protocol (``ours`` | ``poster``) and a selection rule (``dev``: the
    target-type dev episodes | ``source``: the source-type dev episodes)."""
    src = c if selection == "dev" else c.get("selected_on_source")
    if src is None:
        return None
    t = src.get("test") if protocol == "ours" else src.get("test_poster")
    return None if t is None else t["f1"]


def _rerun_differs(cells: list[dict]) -> bool:
    """Whether one of ``cells`` was derived from a re-training that did not give its base cell's F1."""
    return any((c.get("retrained") or {}).get("identical") is False for c in cells)


def _seed_averages(by: dict, dataset: str, k: int, model: str, protocol: str, selection: str) -> dict[int, float]:
    """Per seed that has a cell (with this figure) on each of the six splits, the model's average F1
    over the six; the seeds of fewer splits are left out."""
    per_split = [{c["seed"]: _f1(c, protocol, selection) for c in by.get((dataset, k, model, s), [])} for s in SPLITS]
    seeds = set.intersection(*({seed for seed, f in p.items() if f is not None} for p in per_split))
    return {seed: statistics.mean(p[seed] for p in per_split) for seed in sorted(seeds)}


def _table(by: dict, dataset: str, k: int, models: list[str], protocol: str, selection: str,
           figures: dict, poster: bool = True) -> list[str]:
    lines = ["| model | " + " | ".join(SPLITS) + " | Avg. |" + (" poster Avg. |" if poster else ""),
             "|---|" + "---|" * (len(SPLITS) + 1 + poster)]
    for model in models:
        row, means = [], []
        for split in SPLITS:
            group = by.get((dataset, k, model, split), [])
            f = [v for v in (_f1(c, protocol, selection) for c in group) if v is not None]
            # derived from a re-training of a checkpoint that is gone, which did not give the cell's F1
            row.append(_ms(f) + ("†" if _rerun_differs(group) else ""))
            if f:
                means.append(statistics.mean(f))
        per_seed = _seed_averages(by, dataset, k, model, protocol, selection)
        if per_seed:   # over the seeds with all six splits: the statistic the significance test reports
            mean = 100 * statistics.mean(per_seed.values())
            avg = f"{mean:.2f}"
            figures[f"{dataset}/k{k}/{protocol}/{selection}/{model}"] = round(mean, 2)
            if len(per_seed) > 1:
                std = 100 * statistics.stdev(per_seed.values())
                avg += f" ± {std:.2f}"
                figures[f"{dataset}/k{k}/{protocol}/{selection}/{model}/std"] = round(std, 2)
            if any(len(by.get((dataset, k, model, s), [])) > len(per_seed) for s in SPLITS):
                avg += " (seed" + ("s " if len(per_seed) > 1 else " ") + ", ".join(map(str, per_seed)) + ")"
        elif not means:
            avg = "-"
        else:
            avg = f"({100 * statistics.mean(means):.2f} over {len(means)})"
        ref = POSTER.get(dataset, {}).get(model)
        lines.append(f"| {NAMES[model]} | " + " | ".join(row) + f" | **{avg}** |"
                     + (f" {ref[-1] if ref else '-'} |" if poster else ""))
    return lines


def _diagnostics_rows(cells: list[dict]) -> list[str]:
    lines = ["| cell | word-visual pairs that are edges | tweets with a word-visual edge | word-word pairs that are edges "
             "| masks at test: mean / < 0.5 | masks in training: mean / < 0.5 | mask std across environments (training) "
             "| G1 vs G2 tags alike | F1 real / shuffled / no captions | tags changed by shuffling |",
             "|---|---|---|---|---|---|---|---|---|---|"]

    def pct(v):
        return "-" if v is None else f"{100 * v:.1f} %"

    for c in sorted(cells, key=lambda c: c["cell"]):
        d = c.get("diagnostics")
        if not d:
            continue
        g, t, v, cap = d.get("graph", {}), d.get("train_masks", {}), d.get("views"), d.get("captions", {})
        masks = (f"{g['mask_mean']:.3f} / {pct(g['mask_below_half'])}" if "mask_mean" in g else "none")
        tmasks = (f"{t['mask_mean']:.3f} / {pct(t['mask_below_half'])}" if "mask_mean" in t else "none")
        std = f"{t['mask_std_across_environments']:.3f}" if "mask_std_across_environments" in t else "-"
        lines.append(
            f"| {c['cell']} | {pct(g.get('word_visual_edge_share'))} | {pct(g.get('tweets_with_word_visual_edge'))} | "
            f"{pct(g.get('word_word_edge_share'))} | {masks} | {tmasks} | {std} | "
            f"{pct(v['g1_vs_g2']) if v else 'one view'} | "
            + (f"{100 * cap['f1_real']:.2f} / {100 * cap['f1_shuffled']:.2f} / {100 * cap['f1_none']:.2f} | "
               f"{pct(cap['tags_changed_by_shuffling'])} |" if cap else "- | - |"))
    return lines


BASELINES = ("protobert", "nnshot", "structshot", "proto-maf")


def _seeds_with_all_splits(by: dict, dataset: str, k: int, model: str) -> list[int]:
    """The seeds for which ``model`` has a cell on every split."""
    seeds = [sorted(c["seed"] for c in by.get((dataset, k, model, s), [])) for s in SPLITS]
    return sorted(set(seeds[0]).intersection(*seeds[1:])) if all(seeds) else []


def paired_test(by: dict, dataset: str, k: int, model_a: str, model_b: str, protocol: str):
    """B against A on the test episodes of all six splits (their seeds in common): approximate
    randomization that swaps the two models' output on one episode in every seed at once, on the
    statistic the table reports (the mean of the per-split F1 over splits and seeds;
    :func:`mner.tagging.significance.grouped_randomization`). ``(result, seeds)``, or None where
    the two have no seed with all six splits or their cells lack the per-episode counts."""
    from mner.tagging.significance import grouped_randomization

    key = "test" if protocol == "ours" else "test_poster"
    seeds = sorted(set(_seeds_with_all_splits(by, dataset, k, model_a))
                   & set(_seeds_with_all_splits(by, dataset, k, model_b)))
    if not seeds:
        return None

    def counts(model):
        out = []
        for seed in seeds:
            row = []
            for s in SPLITS:
                c = next(c for c in by[(dataset, k, model, s)] if c["seed"] == seed)
                row += (c.get(key) or {}).get("episode_counts") or []
            out.append(row)
        return out

    ca, cb = counts(model_a), counts(model_b)
    if not ca[0] or len(ca[0]) != len(cb[0]):
        return None
    groups = [s for s in SPLITS for _ in range(len(ca[0]) // len(SPLITS))]
    return grouped_randomization(ca, cb, groups, resamples=10_000, seed=0), seeds


def _protocol_name(protocol: str) -> str:
    return "ours" if protocol == "ours" else "the poster's"


def significance_rows(by: dict, dataset: str, k: int, figures: dict) -> list[str]:
    """MOUSING against the best baseline of each protocol (the highest average over the six splits),
    by :func:`paired_test`."""
    lines = []
    for protocol in ("ours", "poster"):
        key = "test" if protocol == "ours" else "test_poster"

        def average(model):
            seeds = _seeds_with_all_splits(by, dataset, k, model)
            vals = [c[key]["f1"] for s in SPLITS for c in by.get((dataset, k, model, s), []) if c["seed"] in seeds]
            return statistics.mean(vals) if seeds else None

        done = {m: average(m) for m in BASELINES if _seeds_with_all_splits(by, dataset, k, m)}
        if not done:
            continue
        best = max(done, key=done.get)
        for model in ("mousing", *DECODED):
            if not _seeds_with_all_splits(by, dataset, k, model):
                continue
            tested = paired_test(by, dataset, k, best, model, protocol)
            if tested is None:
                continue
            res, seeds = tested
            figures[f"{dataset}/k{k}/{protocol}/p_{model}_vs_{best}"] = res.p_value
            figures[f"{dataset}/k{k}/{protocol}/gain_{model}_vs_{best}"] = round(100 * res.difference, 2)
            lines.append(f"| {dataset} | {k} | {_protocol_name(protocol)} | {NAMES[model]} | "
                         f"{NAMES[best]} | {100 * res.f1_a:.2f} | {100 * res.f1_b:.2f} | {100 * res.difference:+.2f} | "
                         f"{res.p_value:.4f} | {len(seeds)} ({', '.join(map(str, seeds))}) | {res.n_sequences} |")
    return lines


def ablation_significance_rows(by: dict, dataset: str, k: int, figures: dict) -> list[str]:
    """Each ablation against MOUSING, under both protocols, by :func:`paired_test` (the same test
    episodes, so the comparison is paired): the change the ablation makes and its p-value, beside
    the change the poster's table reports. Empty until an ablation has all six splits."""
    rows = []
    for model in ABLATIONS[:-1]:
        for protocol in ("ours", "poster"):
            tested = paired_test(by, dataset, k, "mousing", model, protocol)
            if tested is None:
                continue
            res, seeds = tested
            figures[f"{dataset}/k{k}/{protocol}/change_{model}_vs_mousing"] = round(100 * res.difference, 2)
            figures[f"{dataset}/k{k}/{protocol}/p_{model}_vs_mousing"] = res.p_value
            poster = POSTER_ABLATION[model] - POSTER_ABLATION["mousing"]
            rows.append(f"| {NAMES[model]} | {_protocol_name(protocol)} | {100 * res.f1_b:.2f} | "
                        f"{100 * res.f1_a:.2f} | {100 * res.difference:+.2f} | {res.p_value:.4f} | "
                        f"{len(seeds)} ({', '.join(map(str, seeds))}) | {poster:+.2f} |")
    if not rows:
        return []
    return ["Each ablation against MOUSING on the same test episodes: approximate randomization (10,000 "
            "resamples, seed 0) over the episodes of the six splits, as for the baselines below; *change*: "
            "the ablation's average minus MOUSING's; *poster*: the change in the poster's ablation table (one "
            "dataset, its protocol). The p-value holds each trained model fixed: it says whether the test "
            "episodes alone could give the change, not whether another training run would (with one seed, the "
            "training run's own noise is not in it).", "",
            "| ablation | protocol | its F1 | MOUSING | change | p | seeds | poster |",
            "|---|---|---|---|---|---|---|---|", *rows, ""]


def decoder_rows(by: dict, dataset: str, k: int) -> list[str]:
    """Precision and recall per split of MOUSING under its two decoders (the prototype O it was trained
    with, the nearest-O decoder of new checkpoints) beside StructShot's, on the seeds where the split has
    a nearest-O cell (the same checkpoints: the comparison is paired). Empty where none has."""
    name = "mousing-nearest-o"
    seeds = {s: {c["seed"] for c in by.get((dataset, k, name, s), [])} for s in SPLITS}
    if not any(seeds.values()):
        return []

    def pr(model: str, split: str, key: str) -> str:
        cs = [c for c in by.get((dataset, k, model, split), []) if c["seed"] in seeds[split] and c.get(key)]
        if not seeds[split] or len(cs) != len(seeds[split]):
            return "-"
        return (f"{100 * statistics.mean(c[key]['precision'] for c in cs):.1f} / "
                f"{100 * statistics.mean(c[key]['recall'] for c in cs):.1f}"
                + ("†" if _rerun_differs(cs) else ""))

    lines = [f"### {dataset}, K = {k}: precision / recall of the two MOUSING decoders", "",
             "MOUSING's checkpoints decoded with the prototype O they were trained with and with the nearest-O "
             "decoder, beside StructShot, on the seeds where a split has a nearest-O cell (per split: "
             + "; ".join(f"{s} {', '.join(map(str, sorted(v)))}" for s, v in seeds.items() if v)
             + "); P / R, mean over those seeds.", "",
             "| model | protocol | " + " | ".join(SPLITS) + " |", "|---|---|" + "---|" * len(SPLITS)]
    for model in ("structshot", "mousing", name):
        for key, protocol in (("test", "ours"), ("test_poster", "the poster's")):
            lines.append(f"| {NAMES[model]} | {protocol} | " + " | ".join(pr(model, s, key) for s in SPLITS) + " |")
    return lines + [""]


#: the rows of bench/user_types.py (docs/results/user-types.md), summarised on this page
USER_TYPES = ROOT / "bench" / "results" / "user-types.json"


def user_types_rows(path: Path, figures: dict) -> list[str]:
    """The page's summary of the user-defined types (``bench/user_types.py``'s stored rows): per model
    and decoding, the mean and spread over the checkpoints scored of micro P, R and F1 and of the
    false positives on person, place and company names. Empty where none is stored."""
    if not path.is_file():
        return []
    result = json.loads(path.read_text(encoding="utf-8"))
    by: dict[str, list[dict]] = {}
    for r in result["rows"]:
        by.setdefault(r["model"], []).append(r)
    if not by:
        return []

    def ms(values):
        m = statistics.mean(values)
        return f"{m:.1f}" if len(values) == 1 else f"{m:.1f} ± {statistics.stdev(values):.1f}"

    data = result["data"]
    lines = ["## User-defined types (PRODUCT, EVENT, WORK)", "",
             f"Every Twitter-2017 checkpoint above run as a user runs it on types it never saw: `mner fewshot "
             f"predict CKPT --support support.jsonl --input input.jsonl` with the {data['support_tweets']} support "
             f"tweets and {data['query_tweets']} query tweets ({data['query_mentions']} mentions) of "
             "`bench/data/user-types/` (written for mner; one 3-way episode). Mean ± std over the checkpoints "
             "scored (one per split); per type and per checkpoint, and the command: "
             f"`docs/results/user-types.md` (`bench/user_types.py`, {len(result['rows'])} rows, commit "
             f"{result['git_commit']}).", "",
             "| model | checkpoints | P | R | F1 | predicted / gold | false positives on other names |",
             "|---|---|---|---|---|---|---|"]
    order = [m for m in ("protobert", "nnshot", "structshot", "proto-maf", "mousing") if m in by]
    for model in order + sorted(set(by) - set(order)):
        rows = by[model]
        micro = [r["micro"] for r in rows]
        f1 = [100 * m["f1"] for m in micro]
        figures[f"user-types/{model}/f1"] = round(statistics.mean(f1), 2)
        lines.append(f"| {NAMES.get(model, model)} | {len(rows)} | {ms([100 * m['precision'] for m in micro])} | "
                     f"{ms([100 * m['recall'] for m in micro])} | {ms(f1)} | "
                     f"{ms([m['predicted'] for m in micro])} / {micro[0]['support']} | "
                     f"{ms([r['false_positives']['on_other_names'] for r in rows])} |")
    return lines


def _by_key(cells: list[dict]) -> dict[tuple, list[dict]]:
    """The cells grouped by (dataset, K, model, split), the key every table reads."""
    by: dict[tuple, list[dict]] = {}
    for c in cells:
        by.setdefault((c["dataset"], c["k"], c["model"], c["split"]), []).append(c)
    return by


def report(cells: list[dict]) -> tuple[str, dict]:
    by = _by_key(cells)
    lines = [
        "# MOUSING and the few-shot baselines on Twitter-2015 and Twitter-2017",
        "",
        "Generated by `bench/fewshot_benchmark.py` from the stored cells in `bench/results/fewshot/` "
        "(do not edit by hand). Protocol: `docs/models/mousing.md`. Each cell: one training run on "
        "source-type episodes (4 epochs x 100 episodes), the best epoch-end checkpoint on 100 dev episodes of "
        "the target types, scored on 500 test episodes of the target types; entity-level micro F1 pooled over "
        "all query tweets (conlleval mode). Offline MiniLM-L6 text encoder, caption view (BLIP-2 captions; the "
        "tweet images are not on this machine). The baselines tag IO, as in Few-NERD; StructShot's tau is a "
        "power of its transition rows, as in its reference, chosen on dev. Mean ± std over seeds where there "
        "are several; the average is over the seeds that have all six splits (mean ± std of their per-seed "
        "averages; the seeds are named where a split has more), as the significance test below takes them. *MOUSING, nearest-O decoder*: the MOUSING row's own "
        "checkpoints decoded as new `mner fewshot train` checkpoints decode (the O column against the 2 nearest O "
        "support words, `docs/results/mousing-precision.md`), stored by every MOUSING cell run since; †: "
        "decoded from a re-training of a cell whose checkpoint was gone that did not give the cell's test F1 "
        "to the last digit (the cell's `retrained` says by how much). "
        "`-`: not run yet.",
        "",
        "Two test protocols, the same trained checkpoints and the same supports: **ours** (the query set drawn "
        "greedily N-way K~2K, so every query tweet holds a target mention) and **the poster's** (10 query tweets "
        "drawn at random from the test split, with or without target mentions). In both, mentions of the two "
        "non-target types are relabelled O.",
        "",
    ]
    figures: dict = {}
    for dataset in ("twitter2015", "twitter2017"):
        for k in sorted({5} | {c["k"] for c in cells if c["dataset"] == dataset}):
            # K = 5: the five models always (`-` where a cell is missing); other rows where they have a cell
            main = [m for m in ORDER if (k == 5 and m in ORDER[:5]) or any(by.get((dataset, k, m, s)) for s in SPLITS)]
            lines += [f"## {dataset}, K = {k}, our protocol", ""]
            lines += _table(by, dataset, k, main, "ours", "dev", figures)
            for model, values in POSTER.get(dataset, {}).items():
                lines.append(f"| *poster: {NAMES[model]}* | " + " | ".join(f"*{v:.2f}*" for v in values[:-1])
                             + f" | *{values[-1]:.2f}* | |")
            lines += ["", f"## {dataset}, K = {k}, the poster's protocol", ""]
            lines += _table(by, dataset, k, main, "poster", "dev", figures)
            lines += ["", f"### {dataset}, K = {k}: selected on source-type dev episodes (our protocol / the "
                      "poster's)", "",
                      "The checkpoint best on 100 dev episodes of the *source* types (StructShot's tau too): a "
                      "selection that reads no target-type label.", ""]
            lines += _table(by, dataset, k, main, "ours", "source", figures, poster=False)
            lines += [""]
            lines += _table(by, dataset, k, main, "poster", "source", figures, poster=False)
            lines.append("")
            if any(by.get((dataset, k, m, s)) for m in ABLATIONS[:-1] for s in SPLITS):
                lines += [f"## {dataset}, K = {k}: ablations (our protocol / the poster's)", ""]
                lines += _table(by, dataset, k, ABLATIONS, "ours", "dev", figures, poster=False)
                lines += [""]
                lines += _table(by, dataset, k, ABLATIONS, "poster", "dev", figures, poster=False)
                lines.append("")
                lines += ablation_significance_rows(by, dataset, k, figures)
    for dataset in ("twitter2015", "twitter2017"):
        for k in sorted({c["k"] for c in cells if c["dataset"] == dataset}):
            lines += decoder_rows(by, dataset, k)
    sig = [row for dataset in ("twitter2015", "twitter2017")
           for k in sorted({c["k"] for c in cells if c["dataset"] == dataset}) for row in significance_rows(by, dataset, k, figures)]
    lines += ["## MOUSING against the best baseline: paired significance", "",
              "Approximate randomization (10,000 resamples, seed 0) over the test episodes of the six splits "
              "(per-episode entity counts), swapping MOUSING's and the baseline's output on an episode in every "
              "seed at once; the statistic is the table's: the mean over splits and seeds of the per-split micro "
              "F1 difference. The best baseline is the one with the highest average under that protocol. Shown "
              "when both have all six splits.", "",
              "| dataset | K | protocol | MOUSING decoded | best baseline | its F1 | MOUSING | gain | p | seeds | episodes |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += sig or ["| - | - | - | - | - | - | - | - | - | - | - |"]
    lines.append("")
    lines += ["Poster ablation (one dataset, F1): " + ", ".join(f"{NAMES[m]} {v}" for m, v in POSTER_ABLATION.items()),
              "", "## Does MOUSING act? Diagnostics of every MOUSING cell (500 test episodes, our protocol)", "",
              "Computed by `mner fewshot diagnose` (`mner.fewshot.diagnose`) on the cell's best checkpoint. "
              "Edges: the share of word-caption pairs with cosine >= delta (Eq. 2), of tweets with at least one "
              "such edge, of word-word pairs; masks over the off-diagonal edges of G1, at test (deterministic) and "
              "in training mode (sampled); the share of query words tagged alike by view G1 alone and view G2 "
              "alone; F1 with the real captions, with the captions shuffled among the test tweets (seeded), and "
              "with none.", ""]
    lines += _diagnostics_rows(cells)
    user_types = user_types_rows(USER_TYPES, figures)
    if user_types:
        lines += [""] + user_types
    lines += ["", "## How each cell was run", ""] + _version_lines(cells) + ["",
              "| cell | command | best epoch | dev F1 | test F1 (ours) | test F1 (poster's) | selected on source: epoch, test F1 (ours) | train episodes/s | train + dev s | wall | machine | commit | test episodes sha256 |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in sorted(cells, key=lambda c: c["cell"]):
        sel = c.get("selected_on_source") or {}
        poster_f1, source_f1 = _f1(c, "poster"), _f1(c, "ours", "source")
        source = "-" if source_f1 is None else f"{sel.get('epoch')}, {100 * source_f1:.2f}"
        lines.append(f"| {c['cell']} | `{c['command']}` | {c['best_epoch']} | {100 * (c['dev_f1'] or 0):.2f} | "
                     f"{100 * c['test']['f1']:.2f} | {'-' if poster_f1 is None else f'{100 * poster_f1:.2f}'} | "
                     f"{source} | "
                     f"{c['train_episodes_per_second']:.2f} | {sum(c['seconds_per_epoch']):.0f} | "
                     f"{c['wall_seconds'] / 60:.0f} min | "
                     f"{c['machine']} | {c['git_commit']} | `{c['episodes']['test_sha256'][:16]}` |")
    notes = ROOT / "docs" / "results" / "mousing-notes.md"
    if notes.is_file():
        lines += ["", notes.read_text().rstrip()]
    return "\n".join(lines) + "\n", figures


README_START, README_END = "<!-- fewshot-results: start (bench/fewshot_benchmark.py) -->", "<!-- fewshot-results: end -->"


def readme_block(cells: list[dict], figures: dict) -> str:
    """The README's few-shot block: each model's average F1 over the six splits (K = 5, selected on
    dev episodes) on both datasets under both protocols, the poster's numbers, the seeds, and
    MOUSING against the best baseline with its p-value (from :func:`report`'s ``figures``)."""
    def avg(dataset: str, protocol: str, model: str) -> str:
        v = figures.get(f"{dataset}/k5/{protocol}/dev/{model}")
        std = figures.get(f"{dataset}/k5/{protocol}/dev/{model}/std")
        return "-" if v is None else f"{v:.2f}" + ("" if std is None else f" ± {std:.2f}")

    by = _by_key(cells)

    def seeds(model: str) -> str:
        """The seeds of the averages (those with all six splits), per dataset where they differ."""
        found = [", ".join(map(str, _seed_averages(by, d, 5, model, "ours", "dev"))) or "-"
                 for d in ("twitter2015", "twitter2017")]
        return found[0] if found[0] == found[1] else f"{found[0]} / {found[1]}"

    lines = [README_START,
             "| model (average over the six splits) | Twitter-2015: ours | the poster's protocol | poster's numbers "
             "| Twitter-2017: ours | the poster's protocol | poster's numbers | seeds |",
             "|---|---|---|---|---|---|---|---|"]
    shown = [m for m in DECODED if any(f"{d}/k5/ours/dev/{m}" in figures for d in ("twitter2015", "twitter2017"))]
    for model in BASELINES + ("mousing", *shown):
        paper = [POSTER.get(d, {}).get(model) for d in ("twitter2015", "twitter2017")]
        lines.append(f"| {NAMES[model]} | {avg('twitter2015', 'ours', model)} | {avg('twitter2015', 'poster', model)} | "
                     f"{paper[0][-1] if paper[0] else '-'} | {avg('twitter2017', 'ours', model)} | "
                     f"{avg('twitter2017', 'poster', model)} | {paper[1][-1] if paper[1] else '-'} | {seeds(model)} |")
    tests = []
    for dataset in ("twitter2015", "twitter2017"):
        for protocol in ("ours", "poster"):
            key = next((k for k in figures if k.startswith(f"{dataset}/k5/{protocol}/p_mousing_vs_")), None)
            if key is None:
                continue
            best = key.rsplit("_vs_", 1)[1]
            gain = figures[f"{dataset}/k5/{protocol}/gain_mousing_vs_{best}"]
            tests.append(f"Twitter-{dataset[-4:]}, {'our protocol' if protocol == 'ours' else 'the poster' + chr(39) + 's'}: "
                         f"{gain:+.2f} against {NAMES[best]} (p = {figures[key]:.4f})")
    lines += ["", "MOUSING against the best baseline (paired approximate randomization over the test episodes, "
              "`docs/results/mousing.md`): " + ("; ".join(tests) if tests else "not measured yet") + ".",
              README_END]
    return "\n".join(lines)


def write_report() -> dict:
    cells = load_cells()
    text, figures = report(cells)
    runner.write_page(PAGE, text)
    runner.replace_block(ROOT / "README.md", README_START, README_END, readme_block(cells, figures))
    return figures


def plans(args: argparse.Namespace, train: dict, current: str) -> list[runner.Plan]:
    """The cells of the command line, in order (seed, K, dataset, model, split)."""
    out = []
    for seed in args.seeds:
        for k in args.k:
            for dataset in args.datasets:
                for model in args.models:
                    for split in args.splits:
                        name = cell_name(dataset, split, model, k, seed)
                        files = {key: Path(key) for key in ("dev", "dev_source", "test", "test_poster")}

                        def run(dataset=dataset, split=split, model=model, k=k, seed=seed) -> list[dict]:
                            return run_cell(dataset, split, model, k, seed, train, fingerprint=current,
                                            calibrate=True)

                        out.append(runner.Plan(
                            name=name, path=RESULTS / f"{name}.json", run=run,
                            run_dir=ROOT / "runs" / "bench-fewshot" / name,
                            config=experiment(dataset, split, model, k, seed, Path("."), train, files=files)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["twitter2017", "twitter2015"])
    ap.add_argument("--splits", nargs="+", default=list(SPLITS), choices=list(SPLITS))
    ap.add_argument("--models", nargs="+", default=["protobert", "nnshot", "proto-maf", "mousing"],
                    choices=list(MODELS))
    ap.add_argument("--k", nargs="+", type=int, default=[5])
    ap.add_argument("--seeds", nargs="+", type=int, default=[37])
    ap.add_argument("--epochs", type=int, default=TRAIN["epochs"])
    ap.add_argument("--train-episodes", type=int, default=TRAIN["train_episodes"])
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default: torch's own; 1 when other jobs share the cores: "
                         "oversubscribed cores slowed an epoch 11x here)")
    ap.add_argument("--rerun-stale", action="store_true",
                    help="re-run stored cells of another code version (fingerprint) or configuration than the "
                         "benchmark's now (the old result is kept in the new cell's 'previous')")
    ap.add_argument("--report", action="store_true", help="only rebuild the results page")
    ap.add_argument("--derive", action="store_true",
                    help="only add the derived cells (O bias: " + ", ".join(CALIBRATED) + "; decodings: "
                         + ", ".join(DECODED) + ") of the stored cells of --datasets, --splits, --models, --k and --seeds that "
                         "lack them, from the checkpoints in --runs (retraining a checkpoint no longer on this machine)")
    ap.add_argument("--add-predictions", action="store_true",
                    help="give stored cells of --datasets / --models without stored predictions those of the best "
                         "checkpoint in their run folder (--runs/<cell>/best), where it scores the cell's F1 exactly")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench-fewshot",
                    help="the folder of the cells' run folders (default runs/bench-fewshot)")
    ap.add_argument("--max-cells", type=int, default=None, help="stop after this many new cells")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    train = dict(TRAIN, epochs=args.epochs, train_episodes=args.train_episodes)
    ran = []
    if args.add_predictions:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        ran, missing = add_predictions(args.runs, args.datasets, args.models)
        for name, why in missing.items():
            print(f"== {name}: no predictions ({why})")
    elif args.derive:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        ran = [c["cell"] for c in derive_missing(args.models, args.datasets, train, args.runs, args.splits, args.k,
                                                 args.seeds)]
    elif not args.report:
        if not (DATA / "twitter2015").is_dir():
            raise SystemExit(f"benchmark data not found at {DATA} (set MNER_DATA)")
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        RESULTS.mkdir(parents=True, exist_ok=True)
        # the fingerprint of the files when the training code is imported (a later commit changes
        # neither the code this process runs nor what its cells record)
        current = cellmeta.code_fingerprint(CODE)
        ran = runner.run_plans(plans(args, train, current), current=current, versions=code_versions(),
                               volatile=VOLATILE, implied=IMPLIED, rerun_stale=args.rerun_stale, max_cells=args.max_cells,
                               after_cell=write_report)
    figures = write_report()
    print(f"results page: {PAGE.relative_to(ROOT)}")
    print(runner.final_line(ran, "avg_f1", figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
