"""MOUSING's over-prediction (issue 27, item 4): decoding options chosen on dev episodes, no retraining.

A stored MOUSING cell of ``bench/fewshot_benchmark.py`` predicts too many entities (test precision 19
to 46 %, recall 30 to 55 % on Twitter-2017, K = 5). This study takes each cell's trained checkpoint
(``<runs>/<cell>/best``) as it is and changes only how it decodes, one option at a time, each a
config field (a stored checkpoint loads with the values it was trained and scored with):

* ``o_bias``: B added to the O emission (``EpisodicConfig.o_bias``), the benchmark's grid extended
  above its top (2.0);
* ``min_confidence``: a span-level threshold on the confidence ``mner fewshot predict`` reports (the
  smallest CRF marginal of the span's words; ``EpisodicConfig.min_confidence``);
* ``transition_scale``: StructShot's tau as a scale of the learned transition scores
  (``MOUSINGConfig.transition_scale``), a grid that reaches below 0.01 and, since the learned scores
  are small, far above 1;
* ``o_distance: nearest``: the O column scored against the nearest O support words instead of the
  O prototype (``MOUSINGConfig.o_distance``, ``o_neighbours`` = k);
* two combinations: nearest O with an O bias, and nearest O with a confidence threshold.

Each option's value is chosen per split on the cell's 100 dev episodes of the target types
(``config.episodes.dev`` of the stored cell), the way the benchmark chooses the O bias: the highest
dev F1, ties to the value nearest the default. One value per option for every split (what a config
default must be) is chosen on the mean dev F1 over the splits. Test (the cell's 500 test episodes)
is scored once per chosen value; nothing is chosen on it.

Every distinct tweet is encoded once per episode file (as ``mner.fewshot.evaluation.predict_episodes``
does), and each setting runs only the model's own ``head`` and ``decode_output`` with its config set:
the library's decoding, not a re-implementation. Two checks keep that honest: the default decoding
must reproduce each stored cell's test P/R/F1 and per-episode counts exactly, and the setting chosen
overall is scored again through the benchmark's own ``_score`` (encoding included), which must give
the same counts.

    .venv/bin/python bench/fewshot_precision.py --runs /work/bench-wt2/runs/bench-fewshot \\
        --datasets twitter2017 --threads 1

Writes ``docs/results/mousing-precision.md`` (``--out``; ``--no-page`` to only print) and, with
``--json FILE``, every figure (grids, choices, per-episode counts); the output ends with one JSON
line of the main figures. ``--user-types`` also scores the six checkpoints on the
user-defined types of ``bench/data/user-types`` through ``mner fewshot predict``, before and after.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fewshot_benchmark import (O_BIASES, RESULTS, SPLITS, TEMPERATURES, _episode_counts, _score, cell_name,  # noqa: E402
                               git_commit, machine)

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "results" / "mousing-precision.md"

#: The decoding fields studied and their values as trained (a setting is a dict of some of them).
DEFAULTS = {"o_bias": 0.0, "min_confidence": 0.0, "transition_scale": 1.0, "o_distance": "prototype",
            "o_neighbours": 1}
#: ``mner fewshot predict`` flag of each field (the user-types rows run the CLI).
FLAGS = {"o_bias": "--o-bias", "min_confidence": "--min-confidence", "transition_scale": "--transition-scale",
         "o_distance": "--o-distance", "o_neighbours": "--o-neighbours"}

# The benchmark's O-bias grid and its extension above its top (2.0, where its choices hit the edge).
O_BIAS_GRID = tuple(sorted(set(O_BIASES) | {3.0, 4.0, 6.0, 8.0, 12.0}))
CONFIDENCES = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
# StructShot's tau grid, extended below 0.01 (0 = the IOB2 constraints alone) and above 5: the learned
# transition scores are about 0.1 in size, so only large scales let them weigh against the emissions
TAUS = tuple(sorted(set(TEMPERATURES) | {0.0, 0.001, 0.003, 1.0, 10.0, 30.0, 100.0}))
NEIGHBOURS = (1, 2, 3, 5, 10)
COMBINED_BIASES = (-0.5, -0.25, -0.1, 0.0, 0.1, 0.25, 0.5, 1.0)
COMBINED_CONFIDENCES = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7)


def _nearest(k: int) -> dict:
    return {"o_distance": "nearest", "o_neighbours": k}


#: option -> its grid of settings (the default decoding is in every grid).
OPTIONS: dict[str, list[dict]] = {
    "o_bias": [{"o_bias": b} for b in O_BIAS_GRID],
    "min_confidence": [{"min_confidence": t} for t in CONFIDENCES],
    "transition_scale": [{"transition_scale": t} for t in TAUS],
    "o_distance": [{"o_distance": "prototype"}] + [_nearest(k) for k in NEIGHBOURS],
    "nearest + o_bias": [{}] + [{**_nearest(k), "o_bias": b} for k in NEIGHBOURS[:4] for b in COMBINED_BIASES],
    "nearest + min_confidence": [{}] + [{**_nearest(k), "min_confidence": t} for k in NEIGHBOURS[:4]
                                        for t in COMBINED_CONFIDENCES],
}
DESCRIPTIONS = {
    "o_bias": "B added to the O emission before Viterbi (`o_bias`)",
    "min_confidence": "entities whose confidence (smallest CRF marginal of their words) is below t dropped "
                      "(`min_confidence`)",
    "transition_scale": "the learned transition scores times tau (`transition_scale`, StructShot's tau)",
    "o_distance": "O scored against the mean of its k nearest O support words instead of the O prototype "
                  "(`o_distance: nearest`, `o_neighbours: k`)",
    "nearest + o_bias": "nearest O (k) and an O bias together",
    "nearest + min_confidence": "nearest O (k) and a confidence threshold together",
}


def full(setting: dict) -> dict:
    """A setting with every studied field (the unnamed ones at their trained value)."""
    return {**DEFAULTS, **setting}


def key(setting: dict) -> str:
    """A setting's name: its fields that differ from the default (``default`` for none)."""
    s = full(setting)
    parts = []
    if s["o_distance"] != "prototype":
        parts.append(f"nearest k={s['o_neighbours']}")
    for name in ("o_bias", "min_confidence", "transition_scale"):
        if s[name] != DEFAULTS[name]:
            parts.append(f"{name} {s[name]:g}")
    return ", ".join(parts) or "default"


def closeness(setting: dict) -> tuple:
    """How far a setting is from the decoder as trained (ties on dev go to the nearest)."""
    s = full(setting)
    tau = s["transition_scale"]
    return (s["o_distance"] != "prototype", s["o_neighbours"] if s["o_distance"] != "prototype" else 0,
            abs(s["o_bias"]), s["min_confidence"], abs(math.log(tau)) if tau > 0 else math.inf)


def choose(grid: list[dict], f1: dict[str, float]) -> dict:
    """The benchmark's rule: the highest dev F1, ties to the setting nearest the default."""
    return max(grid, key=lambda s: (f1[key(s)], tuple(-x for x in closeness(s))))


# ----------------------------------------------------------------------------- decoding


class Encoded:
    """An episode file with every distinct tweet encoded once: per episode batch, what the model's
    ``head`` reads (the batch without its visual features, which only the encoder reads, and the
    support and query representations), recorded from ``predict_episodes`` itself."""

    def __init__(self, model, episodes, batch_size: int = 8):
        from mner.fewshot.evaluation import predict_episodes

        self.model, self.episodes, self.batches = model, episodes, []

        def record(batch, support, query):
            light = replace(batch, support=replace(batch.support, visual=None), query=replace(batch.query, visual=None))
            self.batches.append((light, support, query))
            return model.head(batch, support, query)

        t0 = time.perf_counter()
        self.default = predict_episodes(model, episodes, model.processor(), batch_size, head=record)
        self.seconds = time.perf_counter() - t0

    def predict(self, setting: dict):
        """The predictions with the model's config set to ``setting`` (restored afterwards)."""
        import torch

        from mner.fewshot.evaluation import EpisodePredictions

        cfg = self.model.config
        before = {k: getattr(cfg, k) for k in full(setting)}
        try:
            for k, v in full(setting).items():
                setattr(cfg, k, v)
            out = []
            with torch.no_grad():
                for batch, support, query in self.batches:
                    decoded = self.model.decode_output(self.model.head(batch, support, query))
                    per = [[] for _ in range(len(batch))]
                    for e, tags in zip(batch.query_episode.tolist(), decoded.tags):
                        per[e].append(tags)
                    out += per
        finally:
            for k, v in before.items():
                setattr(cfg, k, v)
        return EpisodePredictions(out)

    def score(self, setting: dict) -> dict:
        from mner.fewshot.evaluation import score_episodes

        preds = self.predict(setting)
        rep = score_episodes(self.episodes, preds)
        m = rep.micro
        return {"precision": m.precision, "recall": m.recall, "f1": m.f1, "predicted": int(m.predicted),
                "gold": int(m.support), "correct": int(m.tp), "episode_counts": _episode_counts(self.episodes, preds)}


def emission_scale(model, dev: Encoded) -> dict:
    """What the decoder has learned: the emission scale alpha, the size of the learned transition
    scores, and on the dev episodes how far the best entity emission of a word lies above its O
    emission (quantiles over query words) and the share of words where it does."""
    import torch

    gaps = []
    with torch.no_grad():
        for batch, support, query in dev.batches:
            out = model.head(batch, support, query)
            em = out.emissions.float()
            gaps.append((em[..., 1:].max(-1).values - em[..., 0])[out.mask])
    gap = torch.cat(gaps)
    q = torch.quantile(gap, torch.tensor([0.5, 0.9, 0.99]))
    scores = model.decoder.abstract.scores.detach()
    return {"alpha": float(model.decoder.scale.detach()), "max_abs_transition_score": float(scores.abs().max()),
            "entity_minus_o_median": float(q[0]), "entity_minus_o_p90": float(q[1]), "entity_minus_o_p99": float(q[2]),
            "words_entity_above_o": float((gap > 0).float().mean()), "words": int(gap.numel())}


# ----------------------------------------------------------------------------- one split


def study_split(dataset: str, split: str, k: int, seed: int, runs: Path, log=print) -> dict:
    from mner.data.episodes import read_episodes
    from mner.models import load_model

    name = cell_name(dataset, split, "mousing", k, seed)
    cell = json.loads((RESULTS / f"{name}.json").read_text())
    ckpt = runs / name / "best"
    model = load_model(ckpt).eval()
    trained = {f: getattr(model.config, f) for f in DEFAULTS}
    if trained != DEFAULTS:
        raise SystemExit(f"{ckpt}: decodes with {trained}, not the defaults {DEFAULTS}; the study starts from them")
    files = cell["config"]["episodes"]
    dev, test = Encoded(model, read_episodes(files["dev"])), Encoded(model, read_episodes(files["test"]))
    log(f"== {name}: encoded dev ({dev.seconds:.0f} s) and test ({test.seconds:.0f} s)")
    before = test.score({})
    if before["episode_counts"] != _episode_counts(test.episodes, test.default):
        raise SystemExit(f"{name}: replaying the recorded batches does not give predict_episodes' own predictions")
    stored = cell["test"]
    reproduced = {"stored": {m: stored[m] for m in ("precision", "recall", "f1")},
                  "identical": before["f1"] == stored["f1"] and before["precision"] == stored["precision"]
                  and before["episode_counts"] == stored["episode_counts"],
                  "dev_f1_stored": cell["dev_f1"]}
    grids: dict[str, dict[str, dict]] = {}
    chosen: dict[str, dict] = {}
    for option, grid in OPTIONS.items():
        scores = {}
        for setting in grid:
            if key(setting) not in scores:
                s = dev.score(setting)
                scores[key(setting)] = {m: s[m] for m in ("precision", "recall", "f1", "predicted", "gold")}
        grids[option] = scores
        best = choose(grid, {kk: v["f1"] for kk, v in scores.items()})
        chosen[option] = {"setting": full(best), "name": key(best), "dev": scores[key(best)]}
    tested: dict[str, dict] = {"default": before}
    for option, c in chosen.items():
        if c["name"] not in tested:
            tested[c["name"]] = test.score(c["setting"])
        c["test"] = {m: tested[c["name"]][m] for m in ("precision", "recall", "f1", "predicted", "gold")}
    log(f"   test before P {100 * before['precision']:.2f} R {100 * before['recall']:.2f} F1 {100 * before['f1']:.2f}"
        f" (stored {100 * stored['f1']:.2f}, identical: {reproduced['identical']}); "
        + "; ".join(f"{o}: {c['name']} dev {100 * c['dev']['f1']:.2f} test {100 * c['test']['f1']:.2f}"
                    for o, c in chosen.items()))
    return {"cell": name, "split": split, "checkpoint": str(ckpt), "dev_file": files["dev"], "test_file": files["test"],
            "dev_episodes": len(dev.episodes), "test_episodes": len(test.episodes),
            "before": {"dev": grids["o_bias"][key({})], "test": {m: before[m] for m in
                                                                   ("precision", "recall", "f1", "predicted", "gold")}},
            "reproduced": reproduced, "decoder": emission_scale(model, dev), "grids": grids, "chosen": chosen,
            "_model": model, "_dev": dev, "_test": test}


def global_choice(splits: list[dict]) -> dict[str, dict]:
    """Per option, the one setting with the highest mean dev F1 over the splits (ties: nearest the
    default), and its dev and test scores on each split."""
    out = {}
    for option, grid in OPTIONS.items():
        mean = {key(s): statistics.mean(r["grids"][option][key(s)]["f1"] for r in splits) for s in grid}
        best = choose(grid, mean)
        per = {}
        for r in splits:
            test = r["_test"].score(best)
            per[r["split"]] = {"dev": r["grids"][option][key(best)],
                               "test": {m: test[m] for m in ("precision", "recall", "f1", "predicted", "gold")},
                               "test_episode_counts": test["episode_counts"]}
        out[option] = {"setting": full(best), "name": key(best), "mean_dev_f1": mean[key(best)],
                       "mean_dev_f1_default": mean["default"],
                       "splits_dev_better": sum(p["dev"]["f1"] > r["before"]["dev"]["f1"] for p, r in
                                                zip(per.values(), splits)),
                       "mean_test_f1": statistics.mean(p["test"]["f1"] for p in per.values()), "per_split": per}
    return out


def verify(r: dict, setting: dict, counts: list) -> bool:
    """The setting scored through the benchmark's own ``_score`` (every tweet encoded again): the same
    per-episode counts as the study's decoding of the recorded batches."""
    model = r["_model"]
    before = {k: getattr(model.config, k) for k in full(setting)}
    try:
        for k, v in full(setting).items():
            setattr(model.config, k, v)
        scores, _ = _score(model, r["_test"].episodes, 8)
    finally:
        for k, v in before.items():
            setattr(model.config, k, v)
    return scores["episode_counts"] == counts


# ----------------------------------------------------------------------------- user-defined types


def user_types(dataset: str, k: int, seed: int, runs: Path, settings: dict[str, dict], log=print) -> list[dict]:
    """Each split's checkpoint on ``bench/data/user-types`` through ``mner fewshot predict``, once per
    setting (every studied field passed as a flag), with the most frequent false-positive words."""
    from user_types import DATA, read_gold, read_predictions, run_predict, score_predictions, write_input

    from mner.tagging import get_spans

    gold, other = read_gold(DATA / "query.jsonl")
    rows = []
    with tempfile.TemporaryDirectory(prefix="precision-user-types-") as tmp:
        inputs = Path(tmp) / "input.jsonl"
        write_input(gold, inputs)
        for split in SPLITS:
            ckpt = runs / cell_name(dataset, split, "mousing", k, seed) / "best"
            if not ckpt.is_dir():
                continue
            for label, setting in settings.items():
                flags = [x for f, v in full(setting).items() for x in (FLAGS[f], str(v))]
                out = Path(tmp) / f"{split}-{label}.jsonl"
                argv = run_predict(ckpt, DATA / "support.jsonl", inputs, out, flags)
                pred = read_predictions(out, gold)
                s = score_predictions(gold, other, pred)
                wrong = Counter()
                for ex, tags in zip(gold, pred):
                    g = {sp.key for sp in get_spans(list(ex.tags))}
                    for sp in get_spans(tags):
                        if sp.key not in g:
                            wrong[" ".join(ex.tokens[sp.start:sp.end])] += 1
                rows.append({"split": split, "setting": label, "name": key(setting), "micro": s["micro"],
                             "false_positives": s["false_positives"], "top_false_positives": wrong.most_common(5),
                             "argv": argv})
                log(f"   user types, {split} cell, {label} ({key(setting)}): P {100 * s['micro']['precision']:.1f} "
                    f"R {100 * s['micro']['recall']:.1f} F1 {100 * s['micro']['f1']:.1f}; "
                    f"top false positives {wrong.most_common(3)}")
    return rows


# ----------------------------------------------------------------------------- report


def _p(x: float) -> str:
    return f"{100 * x:.2f}"


def _prf(s: dict) -> str:
    return f"{100 * s['precision']:.1f} / {100 * s['recall']:.1f} / **{100 * s['f1']:.2f}**"


def page(result: dict) -> str:
    splits = result["splits"]
    names = [r["split"] for r in splits]
    glob = result["global"]
    overall = result["overall"]
    lines = [
        "# MOUSING's over-prediction: decoding options chosen on dev episodes",
        "",
        "Generated by `bench/fewshot_precision.py` (do not edit by hand; issue 27, item 4). Evaluation only: "
        f"the trained checkpoints of the stored {result['dataset']} K = {result['k']}, seed {result['seed']} MOUSING "
        "cells (`bench/results/fewshot/`), decoded with each option below; nothing is retrained. Every option is a "
        "config field, and a stored checkpoint loads with the values it was trained and scored with "
        "(docs/models/mousing.md, \"Decoding options\"). "
        "Each value is chosen on the cell's 100 dev episodes of the target types (the benchmark's rule: highest "
        "dev F1, ties to the value nearest the default); the cell's 500 test episodes are scored once per chosen "
        "value. Entity-level micro P / R / F1 pooled over all query tweets (conlleval), in percent, our protocol.",
        "",
        f"- command: `{result['command']}`"
        + (f" (this page written again from its `--json` by `{result['rendered_with']}`, at commit {git_commit()})"
           if result.get("rendered_with") else ""),
        f"- code: git commit {result['git_commit']}"
        + (f" (uncommitted edits of other sessions under src/ at the time: {', '.join(result['dirty_src'])})"
           if result["dirty_src"] else ""),
        f"- checkpoints: `{result['runs']}/<cell>/best`, trained at commit "
        f"{', '.join(sorted(set(result['trained_at'])))}",
        f"- machine: {result['machine']}, torch threads {result['threads']}; other benchmark processes were "
        f"running on the same cores (load average {result['load_average']:.1f} at the start); {result['finished']}, "
        f"{result['wall_seconds'] / 60:.0f} min",
        "",
        "## Equivalence with the stored cells",
        "",
        "The default decoding of today's code against each stored cell's test scores (and its per-episode "
        "counts of correct, predicted and gold entities):",
        "",
        "| split | stored P / R / F1 | today P / R / F1 | identical |",
        "|---|---|---|---|",
    ]
    for r in splits:
        lines.append(f"| {r['split']} | {_prf(r['reproduced']['stored'])} | {_prf(r['before']['test'])} | "
                     f"{'yes' if r['reproduced']['identical'] else '**no**'} |")
    lines += ["", "The setting chosen overall, scored again through `bench/fewshot_benchmark.py`'s `_score` "
              "(every tweet encoded again) gives the same per-episode counts as the study's decoding of the "
              "recorded batches: " + ", ".join(f"{s} {'yes' if v else '**no**'}" for s, v in result["verified"].items())
              + ".", ""]
    lines += ["## What the decoder learned", "",
              "alpha: the learned emission scale (`-alpha * d`, initialised at 1); transitions: the largest learned "
              "abstract transition score in absolute value (initialised at 0); on the dev episodes, the best entity "
              "emission of a query word minus its O emission (median, 90th and 99th percentile over the words) and "
              "the share of words where it is positive (an entity wins before the CRF).", "",
              "| split | alpha | largest transition score | entity - O: median / p90 / p99 | words where an entity "
              "beats O |", "|---|---|---|---|---|"]
    for r in splits:
        d = r["decoder"]
        lines.append(f"| {r['split']} | {d['alpha']:.3f} | {d['max_abs_transition_score']:.3f} | "
                     f"{d['entity_minus_o_median']:.2f} / {d['entity_minus_o_p90']:.2f} / {d['entity_minus_o_p99']:.2f} | "
                     f"{100 * d['words_entity_above_o']:.1f} % of {d['words']} |")
    lines += ["", "## Test before and after each option, chosen on dev per split", "",
              "P / R / F1 on the 500 test episodes; in brackets the value dev chose for that split.", "",
              "| option | " + " | ".join(names) + " | Avg. F1 |", "|---|" + "---|" * (len(names) + 1)]
    lines.append("| default (as trained) | " + " | ".join(_prf(r["before"]["test"]) for r in splits)
                 + f" | **{_p(statistics.mean(r['before']['test']['f1'] for r in splits))}** |")
    for option in OPTIONS:
        cells = [f"{_prf(r['chosen'][option]['test'])} ({r['chosen'][option]['name']})" for r in splits]
        avg = statistics.mean(r["chosen"][option]["test"]["f1"] for r in splits)
        lines.append(f"| {option} | " + " | ".join(cells) + f" | **{_p(avg)}** |")
    lines += ["", "## One value per option for every split (chosen on the mean dev F1)", "",
              "What a config default must be: one value. Dev F1 is the mean over the six splits' dev episodes; "
              "test P / R / F1 per split at that value.", "",
              "| option | value | mean dev F1 (default " + _p(glob["o_bias"]["mean_dev_f1_default"]) + ") | splits "
              "better on dev | " + " | ".join(names) + " | Avg. test F1 |", "|---|---|---|---|" + "---|" * (len(names) + 1)]
    for option, g in glob.items():
        lines.append(f"| {option} | {g['name']} | {_p(g['mean_dev_f1'])} | {g['splits_dev_better']} of {len(splits)} | "
                     + " | ".join(_prf(g["per_split"][s]["test"]) for s in names) + f" | **{_p(g['mean_test_f1'])}** |")
    lines += ["", f"**Dev chooses overall: {overall['option']} ({overall['name']})**: mean dev F1 "
              f"{_p(overall['mean_dev_f1'])} against {_p(overall['mean_dev_f1_default'])} as trained, better on dev "
              f"in {overall['splits_dev_better']} of {len(splits)} splits; on test (scored once) the average F1 goes "
              f"from {_p(overall['mean_test_f1_default'])} to {_p(overall['mean_test_f1'])}, precision from "
              f"{_p(overall['mean_test_p_default'])} to {_p(overall['mean_test_p'])}, recall from "
              f"{_p(overall['mean_test_r_default'])} to {_p(overall['mean_test_r'])} (means over the splits).", ""]
    from mner.models.mousing import MOUSINGConfig

    now = MOUSINGConfig()
    new = {f: getattr(now, f) for f in DEFAULTS}
    text = ("**Defaults.** New MOUSING checkpoints (`mner fewshot train`) decode with "
            + ", ".join(f"`{f}: {v}`" for f, v in new.items())
            + "; a checkpoint whose config lacks `o_distance` (every stored cell, written before the field "
            "existed) loads with the decoder it was trained and scored with, `o_distance: prototype` "
            "(`MOUSINGModel.upgrade_config`), and `bench/fewshot_benchmark.py` keeps `o_distance: prototype` "
            "for its cells so that every seed of a row is one decoder.")
    dev_new = next((g[key(new)] for g in (r["grids"] for r in splits) for g in g.values() if key(new) in g), None)
    if new != DEFAULTS and dev_new is not None:
        per = [next(g[key(new)]["f1"] for g in r["grids"].values() if key(new) in g) for r in splits]
        better = sum(f > r["before"]["dev"]["f1"] for f, r in zip(per, splits))
        text += (f" That setting ({key(new)}) scores a mean dev F1 of {_p(statistics.mean(per))}, better than the "
                 f"decoder as trained on {better} of {len(splits)} splits.")
        if key(new) != overall["name"]:
            text += (f" It is not dev's overall choice ({overall['name']}, {_p(overall['mean_dev_f1'])}): the "
                     "default takes the option that wins on dev at its own one-value choice and leaves out what "
                     f"the overall choice adds on top, which gains {_p(overall['mean_dev_f1'] - statistics.mean(per))} "
                     "mean dev F1 (an O bias is in the emissions' units, which depend on each trained model's "
                     "distance scale).")
    lines += [text, ""]
    lines += ["## Dev F1 of every value (100 dev episodes per split)", ""]
    for option, grid in OPTIONS.items():
        lines += [f"### {option}: {DESCRIPTIONS[option]}", "",
                  "| value | " + " | ".join(names) + " | mean |", "|---|" + "---|" * (len(names) + 1)]
        seen = []
        for s in grid:
            if key(s) in seen:
                continue
            seen.append(key(s))
            vals = [r["grids"][option][key(s)]["f1"] for r in splits]
            marks = ["**" + _p(v) + "**" if r["chosen"][option]["name"] == key(s) else _p(v) for v, r in zip(vals, splits)]
            lines.append(f"| {key(s)} | " + " | ".join(marks) + f" | {_p(statistics.mean(vals))} |")
        lines += ["", "Bold: the value dev chose for that split.", ""]
    ut = result.get("user_types")
    if ut:
        lines += ["## User-defined types (PRODUCT, EVENT, WORK) before and after", "",
                  "`bench/data/user-types/` (18 support tweets, 136 query tweets) through `mner fewshot predict "
                  "CKPT --support support.jsonl --input input.jsonl` with every studied field given as a flag "
                  "(`bench/user_types.py`'s data, scoring and false-positive counts): before = the decoder as "
                  f"trained, after = dev's overall choice ({overall['name']}), new default = what new checkpoints "
                  "decode with, where it differs. One 3-way episode, where the checkpoints were trained on "
                  "2-way ones.", "",
                  "| checkpoint | decoding | P / R / F1 | predicted / gold | false positives: all / on other names / "
                  "in tweets without names | most frequent false positives |", "|---|---|---|---|---|---|"]
        for row in ut:
            m, fp = row["micro"], row["false_positives"]
            top = ", ".join(f"{w!r} {n}" for w, n in row["top_false_positives"])
            lines.append(f"| {row['split']} cell | {row['setting']} ({row['name']}) | {_prf(m)} | {m['predicted']} / "
                         f"{m['support']} | {fp['total']} / {fp['on_other_names']} / {fp['in_tweets_without_names']} | "
                         f"{top} |")
        lines += [""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench-fewshot",
                    help="the folder of the cells' run folders (<runs>/<cell>/best)")
    ap.add_argument("--datasets", nargs="+", default=["twitter2017"])
    ap.add_argument("--splits", nargs="+", default=list(SPLITS), choices=list(SPLITS))
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--seed", type=int, default=37)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the cores are shared)")
    ap.add_argument("--user-types", action="store_true", help="also score bench/data/user-types before and after")
    ap.add_argument("--out", type=Path, default=PAGE, help="the results page (default docs/results/mousing-precision.md)")
    ap.add_argument("--json", type=Path, default=None, metavar="FILE", help="also store every figure here")
    ap.add_argument("--no-page", action="store_true", help="print only, write no page")
    ap.add_argument("--render", type=Path, default=None, metavar="FILE",
                    help="only write the page again from a --json FILE of an earlier run (nothing is decoded)")
    args = ap.parse_args(argv)
    if args.render is not None:
        result = json.loads(args.render.read_text())
        result["rendered_with"] = ".venv/bin/python bench/fewshot_precision.py " + " ".join(
            sys.argv[1:] if argv is None else argv)
        args.out.write_text(page(result))
        print(f"page: {args.out}")
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    command = ".venv/bin/python bench/fewshot_precision.py " + " ".join(sys.argv[1:] if argv is None else argv)
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=ROOT, capture_output=True,
                           text=True).stdout.splitlines()
    figures = {}
    for dataset in args.datasets:
        t0 = time.perf_counter()
        load = os.getloadavg()[0]
        splits = [study_split(dataset, s, args.k, args.seed, args.runs) for s in args.splits]
        glob = global_choice(splits)
        order = list(OPTIONS)   # ties between options: the earlier (simpler) one
        best = max(glob, key=lambda o: (glob[o]["mean_dev_f1"], -order.index(o)))
        g = glob[best]
        verified = {r["split"]: verify(r, g["setting"], g["per_split"][r["split"]]["test_episode_counts"]) for r in splits}

        def mean(metric, which="after"):
            src = [g["per_split"][r["split"]]["test"] if which == "after" else r["before"]["test"] for r in splits]
            return statistics.mean(s[metric] for s in src)

        overall = {"option": best, "name": g["name"], "setting": g["setting"], "mean_dev_f1": g["mean_dev_f1"],
                   "mean_dev_f1_default": g["mean_dev_f1_default"], "splits_dev_better": g["splits_dev_better"],
                   "mean_test_f1": mean("f1"), "mean_test_f1_default": mean("f1", "before"),
                   "mean_test_p": mean("precision"), "mean_test_p_default": mean("precision", "before"),
                   "mean_test_r": mean("recall"), "mean_test_r_default": mean("recall", "before")}
        result = {"dataset": dataset, "k": args.k, "seed": args.seed, "command": command, "git_commit": git_commit(),
                  "dirty_src": [line[3:] for line in dirty], "runs": str(args.runs), "machine": machine(),
                  "threads": args.threads, "load_average": load,
                  "trained_at": [json.loads((RESULTS / f"{r['cell']}.json").read_text())["git_commit"] for r in splits],
                  "splits": splits, "global": glob, "overall": overall, "verified": verified}
        if args.user_types:
            from mner.models.mousing import MOUSINGConfig

            settings = {"before": {}, "after": g["setting"]}
            new = {f: getattr(MOUSINGConfig(), f) for f in DEFAULTS}
            if new not in (DEFAULTS, full(g["setting"])):
                settings["new default"] = new
            result["user_types"] = user_types(dataset, args.k, args.seed, args.runs, settings)
        result["wall_seconds"] = time.perf_counter() - t0
        result["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        for r in splits:
            for private in ("_model", "_dev", "_test"):
                r.pop(private)
        print(f"\n{dataset}: test P / R / F1 before and after (per split, chosen on dev per split)")
        for r in splits:
            print(f"  {r['split']:<11} before {_prf(r['before']['test'])}  "
                  + "  ".join(f"{o}: {_prf(r['chosen'][o]['test'])} [{r['chosen'][o]['name']}]" for o in OPTIONS))
        print(f"  overall dev choice: {best} ({g['name']}), mean dev F1 {_p(g['mean_dev_f1'])} vs "
              f"{_p(g['mean_dev_f1_default'])}, test F1 {_p(overall['mean_test_f1_default'])} -> {_p(overall['mean_test_f1'])}")
        if args.json is not None:
            path = args.json if len(args.datasets) == 1 else args.json.with_name(f"{args.json.stem}-{dataset}.json")
            path.write_text(json.dumps(result) + "\n")
        if not args.no_page:
            out = args.out if len(args.datasets) == 1 else args.out.with_name(f"{args.out.stem}-{dataset}.md")
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(page(result))
            print(f"page: {out}")
        figures[dataset] = {
            "reproduced": all(r["reproduced"]["identical"] for r in splits), "verified": all(verified.values()),
            "overall": {k: (round(100 * v, 2) if isinstance(v, float) else v) for k, v in overall.items()
                        if k != "setting"},
            "test_f1_before": {r["split"]: round(100 * r["before"]["test"]["f1"], 2) for r in splits},
            "test_f1_after": {r["split"]: round(100 * g["per_split"][r["split"]]["test"]["f1"], 2) for r in splits},
            "per_split_choice": {r["split"]: {o: r["chosen"][o]["name"] for o in OPTIONS} for r in splits}}
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
