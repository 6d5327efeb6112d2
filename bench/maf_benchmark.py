"""MAF on the real benchmarks, cell by cell: dataset x variant x encoder x seed.

Each cell trains one model on Twitter-2015 or Twitter-2017 (text side from ``../shared/data``,
the visual side is the caption view: one BLIP-2 caption per image, since the tweet images are not
on this machine), selects the best epoch on the dev split and scores it on the test split. A
finished cell's result is stored in ``bench/results/maf/<cell>.json`` (committed) and skipped
next time; an interrupted cell resumes from its last epoch (``runs/bench/<cell>/last``). After
every cell the results page ``docs/results/maf.md`` is regenerated from all stored cells, so the
table can be filled over several runs and machines.

    .venv/bin/python bench/maf_benchmark.py                          # every missing cell
    .venv/bin/python bench/maf_benchmark.py --datasets twitter2017 --variants text-only maf
    .venv/bin/python bench/maf_benchmark.py --report                 # only rebuild the page

The output ends with one JSON line: the cells run now and the table's F1 per cell (mean over seeds).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "maf"
PAGE = ROOT / "docs" / "results" / "maf.md"
DATA = Path(os.environ.get("MNER_DATA", ROOT.parent / "shared" / "data"))

# The loss weights of the table's MAF cells: alpha = beta = 0.19, i.e. L_ca and L_cm at half the
# weight that the authors' code gives them (a misreading of its lambda form, found after the
# cells ran; MAFConfig's default is now the code's 0.62 : 0.38 : 0.38). Pinned so that the
# stored cells stay reproducible; the `maf-code-weights` variant trains with the default.
TABLE_WEIGHTS = {"alpha": 0.19, "beta": 0.19}
VARIANTS = {
    "text-only": {"no_image": True},
    "maf": TABLE_WEIGHTS,
    "maf-no-ca": {"no_alignment": True, **TABLE_WEIGHTS},
    "maf-no-cm": {"no_matching": True, **TABLE_WEIGHTS},
    "maf-no-ca-cm": {"no_alignment": True, "no_matching": True, **TABLE_WEIGHTS},
    "maf-code-weights": {},
}
VARIANT_NAMES = {"text-only": "text-only CRF", "maf": "MAF", "maf-no-ca": "MAF w/o CA",
                 "maf-no-cm": "MAF w/o CM", "maf-no-ca-cm": "MAF w/o CA+CM",
                 "maf-code-weights": "MAF, the code's loss weights"}
ENCODERS = {"minilm": "minilm", "mpnet": "mpnet"}
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
TYPES = ("PER", "LOC", "ORG", "MISC")


def cell_name(dataset: str, variant: str, encoder: str, seed: int) -> str:
    return f"{dataset}__{variant}__{encoder}__seed{seed}"


def machine() -> str:
    import torch

    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    desc = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}"
    if torch.cuda.is_available():
        desc += f", GPU {torch.cuda.get_device_name(0)}"
    return desc


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def experiment(dataset: str, variant: str, encoder: str, seed: int, epochs: int, run_dir: Path) -> dict:
    return {
        "model_type": "maf",
        "model": {"visual_view": "caption", "text_encoder": {"name": ENCODERS[encoder]},
                  "caption_encoder": {"name": "minilm"}, **VARIANTS[variant]},
        "data": {"corpus": str(DATA / dataset), "type_map": "OTHER=MISC", "captions": "auto"},
        "training": {"output_dir": str(run_dir), "epochs": epochs, "batch_size": 32, "eval_batch_size": 64,
                     "learning_rate": 5e-5, "head_learning_rate": 1e-3, "seed": seed, "progress": False,
                     "log_every": 50},
    }


def run_cell(dataset: str, variant: str, encoder: str, seed: int, epochs: int) -> dict:
    from mner.experiment import load_experiment, train

    name = cell_name(dataset, variant, encoder, seed)
    run_dir = ROOT / "runs" / "bench" / name
    raw = experiment(dataset, variant, encoder, seed, epochs, run_dir)
    commit = git_commit()  # the code this process imports, before any later commit
    t0 = time.perf_counter()
    summary = train(load_experiment(raw))
    wall = time.perf_counter() - t0
    command = (f".venv/bin/python bench/maf_benchmark.py --datasets {dataset} --variants {variant} "
               f"--encoders {encoder} --seeds {seed}")
    return {
        "cell": name, "dataset": dataset, "variant": variant, "encoder": encoder, "seed": seed,
        "epochs": epochs, "command": command, "config": raw, "summary": summary,
        "test": {"precision": summary["test_precision"], "recall": summary["test_recall"], "f1": summary["test_f1"],
                 "per_type": summary["test_f1_per_type"]},
        "dev_f1": summary["dev_f1"], "best_epoch": summary["best_epoch"],
        "seconds_per_epoch": summary["seconds_per_epoch"], "wall_seconds": wall,
        "resumed_from_step": summary.get("resumed_from_step"),
        "machine": machine(), "git_commit": commit,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def load_cells() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))]


def _ms(values: list[float]) -> str:
    if not values:
        return "-"
    m = 100 * statistics.mean(values)
    if len(values) == 1:
        return f"{m:.2f}"
    return f"{m:.2f} ± {100 * statistics.stdev(values):.2f}"


def report(cells: list[dict]) -> tuple[str, dict]:
    groups: dict[tuple, list[dict]] = {}
    for c in cells:
        groups.setdefault((c["dataset"], c["encoder"], c["variant"]), []).append(c)
    lines = [
        "# MAF on Twitter-2015 and Twitter-2017: our numbers beside the paper's",
        "",
        "Generated by `bench/maf_benchmark.py` from the stored cells in `bench/results/maf/` "
        "(do not edit by hand). Each cell: one training run, best epoch on the dev split, scored on "
        "the test split, entity-level micro P/R/F1 in conlleval mode (an I- after O starts an "
        "entity), Twitter-2015's OTHER read as MISC. Mean ± standard deviation over seeds where "
        "there are several (the `seeds` column).",
        "",
        "What differs from the paper, on purpose or by necessity:",
        "",
        "- **visual side**: the tweet images are not on this machine, so the visual view is the "
        "*caption view*: one BLIP-2 caption per image (`../shared/data/captions`), encoded by a "
        "frozen MiniLM as visual tokens. The paper uses ResNet-152 regions of the real images.",
        "- **text encoder**: the offline MiniLM-L6 (22.7 M parameters, uncased, plus a casing "
        "feature) or MPNet-base (109 M, uncased); the paper fine-tunes BERT-base-cased.",
        "- **training**: fewer epochs on 2 CPU cores (column `epochs`; the paper runs 24 / 23), "
        "batch 32, learning rate 5e-5 for the encoder and 1e-3 for the new layers, warmup 10 %.",
        "- **loss weights**: the rows MAF and MAF w/o ... ran with alpha = beta = 0.19, i.e. "
        "L_mner : L_cm : L_ca = 0.62 : 0.19 : 0.19, half the auxiliary weight of the authors' code "
        "(`0.62 L_crf + 0.38 (L_cm + L_ca)`): we misread its lambda form and found it after these "
        "cells ran. MAFConfig's default is now the code's ratio (alpha = beta = 0.38 / 1.38); the "
        "row *MAF, the code's loss weights* trains with that default.",
        "",
        "## Test results",
        "",
        "| dataset | encoder | model | seeds | epochs | P | R | F1 | PER | LOC | ORG | MISC | s / epoch | paper P / R / F1 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = list(VARIANTS)
    figures = {}
    for (dataset, encoder, variant), cs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], order.index(kv[0][2]))):
        p = [c["test"]["precision"] for c in cs]
        r = [c["test"]["recall"] for c in cs]
        f = [c["test"]["f1"] for c in cs]
        per = {t: [c["test"]["per_type"].get(t, 0.0) for c in cs] for t in TYPES}
        spe = statistics.mean(s for c in cs for s in c["seconds_per_epoch"])
        paper = PAPER.get((dataset, variant))
        paper_s = f"{paper[0]:.2f} / {paper[1]:.2f} / {paper[2]:.2f}" if paper else "-"
        lines.append(
            f"| {dataset} | {encoder} | {VARIANT_NAMES[variant]} | {', '.join(str(c['seed']) for c in cs)} | "
            f"{cs[0]['epochs']} | {_ms(p)} | {_ms(r)} | **{_ms(f)}** | "
            + " | ".join(_ms(per[t]) for t in TYPES) + f" | {spe:.0f} | {paper_s} |"
        )
        figures[f"{dataset}/{encoder}/{variant}"] = round(100 * statistics.mean(f), 2)
    lines += [
        "",
        "Paper per-type F1 (PER / LOC / ORG / MISC): BERT-CRF 84.74 / 80.51 / 60.27 / 37.29 (2015), "
        "90.25 / 83.05 / 81.13 / 62.21 (2017); MAF 84.67 / 81.18 / 63.35 / 41.82 (2015), "
        "91.51 / 85.80 / 85.10 / 68.79 (2017).",
        "",
        "## How each cell was run",
        "",
        "| cell | command | best epoch | dev F1 | wall time | machine | commit | finished |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in sorted(cells, key=lambda c: c["cell"]):
        lines.append(f"| {c['cell']} | `{c['command']}` | {c['best_epoch']} | {100 * c['dev_f1']:.2f} | "
                     f"{c['wall_seconds'] / 60:.0f} min | {c['machine']} | {c['git_commit']} | {c['finished']} |")
    notes = ROOT / "docs" / "results" / "maf-notes.md"
    if notes.is_file():
        lines += ["", notes.read_text().rstrip()]
    return "\n".join(lines) + "\n", figures


def write_report() -> dict:
    text, figures = report(load_cells())
    PAGE.parent.mkdir(parents=True, exist_ok=True)
    PAGE.write_text(text)
    return figures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["twitter2017", "twitter2015"])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--encoders", nargs="+", default=["minilm"], choices=list(ENCODERS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[37])
    ap.add_argument("--epochs", type=int, default=None, help="override the epochs of every cell")
    ap.add_argument("--report", action="store_true", help="only rebuild the results page")
    ap.add_argument("--max-cells", type=int, default=None, help="stop after this many new cells")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ran = []
    if not args.report:
        if not (DATA / "twitter2015").is_dir():
            raise SystemExit(f"benchmark data not found at {DATA} (set MNER_DATA)")
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        RESULTS.mkdir(parents=True, exist_ok=True)
        for seed in args.seeds:
            for encoder in args.encoders:
                for dataset in args.datasets:
                    for variant in args.variants:
                        name = cell_name(dataset, variant, encoder, seed)
                        path = RESULTS / f"{name}.json"
                        if path.is_file():
                            print(f"== {name}: stored, skipped")
                            continue
                        if args.max_cells is not None and len(ran) >= args.max_cells:
                            continue
                        epochs = args.epochs or EPOCHS[(dataset, encoder)]
                        print(f"== {name}: training ({epochs} epochs)", flush=True)
                        result = run_cell(dataset, variant, encoder, seed, epochs)
                        path.write_text(json.dumps(result, indent=2) + "\n")
                        ran.append(name)
                        print(f"== {name}: test F1 {100 * result['test']['f1']:.2f}", flush=True)
                        write_report()
    figures = write_report()
    print(f"results page: {PAGE.relative_to(ROOT)}")
    print(json.dumps({"ran": ran, "test_f1": figures}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
