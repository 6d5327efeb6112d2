"""Is a MAF benchmark cell reproducible? Small trainings of the benchmark's configuration, compared bit for bit.

Each run is a fresh process that trains the benchmark's MAF (or another variant) on the first
``--train`` tweets of a dataset for ``--epochs`` epochs, with ``--dev`` / ``--test`` tweets for
model selection and scoring, the caption features in memory (no disk cache shared between runs),
and records: a hash of the initial weights, the loss of every optimizer step, the dev and test F1,
a hash of the final weights, the thread count. ``check`` runs the same configuration several times
(the same seed) with the thread counts given, and says which runs agree bit for bit and, where
they do not, the first step whose loss differs and the largest weight difference.

    OMP_NUM_THREADS=1 .venv/bin/python bench/maf_determinism.py check --threads 1 1 2
    # another version of the code (e.g. the commit of a stored cell), run by the same driver:
    git archive d74d14a src | tar -x -C /tmp/old && \\
      OMP_NUM_THREADS=1 .venv/bin/python bench/maf_determinism.py check --threads 1 --src /tmp/old/src

The output ends with one JSON line: each run's figures and the verdict. Data: ``$MNER_DATA``
(default ``../shared/data``); nothing is written into the repository unless ``--out`` says so.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from maf_benchmark import DATA, experiment  # noqa: E402


def _weights_digest(state: dict) -> tuple[str, str]:
    """(hash by name, hash of the sorted tensor hashes: the same weights under other names agree)."""
    import torch

    by_name = hashlib.sha256()
    each = []
    for name in sorted(state):
        t = state[name].detach().to(torch.float32).contiguous().cpu()
        raw = t.numpy().tobytes()
        by_name.update(name.encode() + b"\0" + raw)
        each.append(hashlib.sha256(raw).hexdigest())
    return by_name.hexdigest()[:16], hashlib.sha256("".join(sorted(each)).encode()).hexdigest()[:16]


def _subset(dataset: str, dev: int, test: int, folder: Path) -> tuple[Path, Path]:
    from mner.data.formats import read_file, write_twitter

    paths = []
    for split, n in (("valid", dev), ("test", test)):
        exs = read_file(DATA / dataset / f"{split}.txt")[:n]
        path = folder / f"{split}.txt"
        write_twitter(exs, path)
        paths.append(path)
    return paths[0], paths[1]


def run_one(args) -> dict:
    """One training in this process (``run``); prints and returns its figures."""
    import torch

    torch.set_num_threads(args.threads)
    if args.deterministic:
        torch.use_deterministic_algorithms(True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    import mner
    from mner.experiment import load_experiment, train
    from mner.training import trainer as trainer_mod

    initial = {}
    original = trainer_mod.Trainer.train

    def train_and_record(self):
        initial["digest"] = _weights_digest(self.model.state_dict())
        return original(self)

    trainer_mod.Trainer.train = train_and_record
    out = Path(args.out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        valid, test = _subset(args.dataset, args.dev, args.test, Path(tmp))
        raw = experiment(args.dataset, args.variant, "minilm", args.seed, args.epochs, out)
        raw["data"] = {"train": str(DATA / args.dataset / "train.txt"), "valid": str(valid), "test": str(test),
                       "type_map": "OTHER=MISC", "max_train": args.train, "feature_cache": None,
                       "captions": str(DATA / "captions" / f"{args.dataset}_blip2.txt")}
        raw["training"].update({"log_every": 1, "resume": False, "tensorboard": False})
        t0 = time.perf_counter()
        summary = train(load_experiment(raw), log=lambda *_: None)
        wall = time.perf_counter() - t0
    from safetensors.torch import load_file

    final = load_file(str(out / "last" / "model.safetensors"))
    losses = [r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
              if r.get("event") == "train"]
    result = {"code": str(Path(mner.__file__).resolve().parents[1]), "threads": torch.get_num_threads(),
              "deterministic": args.deterministic, "seed": args.seed, "variant": args.variant,
              "initial_weights": initial["digest"][0], "initial_weights_unnamed": initial["digest"][1],
              "losses": losses, "dev_f1": summary["dev_f1"], "test_f1": summary.get("test_f1"),
              "final_weights": _weights_digest(final)[0], "final_weights_unnamed": _weights_digest(final)[1],
              "weights_file": str(out / "last" / "model.safetensors"), "wall_seconds": round(wall, 1)}
    print(json.dumps(result))
    return result


def _max_weight_difference(a: str, b: str) -> float | None:
    from safetensors.torch import load_file

    wa, wb = load_file(a), load_file(b)
    if wa.keys() != wb.keys():
        return None
    return max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wa)


def check(args) -> int:
    runs = []
    with tempfile.TemporaryDirectory(prefix="maf-determinism-") as tmp:
        for k, threads in enumerate(args.threads):
            env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                       HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
            if args.src:
                env["PYTHONPATH"] = args.src + os.pathsep + env.get("PYTHONPATH", "")
            cmd = [sys.executable, str(Path(__file__).resolve()), "run", "--out-dir", f"{tmp}/run{k}",
                   "--threads", str(threads), "--dataset", args.dataset, "--variant", args.variant,
                   "--train", str(args.train), "--dev", str(args.dev), "--test", str(args.test),
                   "--epochs", str(args.epochs), "--seed", str(args.seed)] + (["--deterministic"] if args.deterministic else [])
            print(f"== run {k}: {threads} thread(s){' (' + args.src + ')' if args.src else ''}", flush=True)
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
                return proc.returncode
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            r = runs[-1]
            print(f"   initial {r['initial_weights']}, final {r['final_weights']}, dev F1 {r['dev_f1']:.6f}, "
                  f"test F1 {r['test_f1']:.6f}, {len(r['losses'])} steps, {r['wall_seconds']} s", flush=True)
        if args.reference:
            runs.insert(0, json.loads(Path(args.reference).read_text()))
        ref = runs[0]
        verdicts = []
        for k, r in enumerate(runs[1:], start=1):
            same = r["final_weights"] == ref["final_weights"]
            first = next((i + 1 for i, (x, y) in enumerate(zip(ref["losses"], r["losses"])) if x != y), None)
            diff = None
            if not same and Path(ref["weights_file"]).is_file():
                diff = _max_weight_difference(ref["weights_file"], r["weights_file"])
            verdicts.append({"run": k, "threads": r["threads"], "identical_weights": same,
                             "same_initial_weights": r["initial_weights"] == ref["initial_weights"],
                             "same_initial_weights_unnamed": r["initial_weights_unnamed"] == ref["initial_weights_unnamed"],
                             "first_differing_step_loss": first, "max_abs_weight_difference": diff,
                             "dev_f1_difference": r["dev_f1"] - ref["dev_f1"],
                             "test_f1_difference": (r["test_f1"] or 0) - (ref["test_f1"] or 0)})
            v = verdicts[-1]
            print(f"run {k} vs run 0: {'identical weights' if same else 'weights differ'}; initial weights "
                  f"{'same' if v['same_initial_weights'] else 'differ'}; first step with another loss: {first}; "
                  f"max |dw| {diff}; dev F1 {100 * v['dev_f1_difference']:+.4f}, test F1 "
                  f"{100 * v['test_f1_difference']:+.4f}")
        if args.out:
            Path(args.out).write_text(json.dumps({"runs": runs, "verdicts": verdicts}, indent=1) + "\n")
    print(json.dumps({"runs": [{k: v for k, v in r.items() if k != "losses"} | {"first_losses": r["losses"][:3]}
                               for r in runs], "verdicts": verdicts}))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    for name in ("run", "check"):
        p = sub.add_parser(name)
        p.add_argument("--dataset", default="twitter2017", choices=("twitter2015", "twitter2017"))
        p.add_argument("--variant", default="maf")
        p.add_argument("--train", type=int, default=300, help="first N training tweets")
        p.add_argument("--dev", type=int, default=100)
        p.add_argument("--test", type=int, default=100)
        p.add_argument("--epochs", type=int, default=1)
        p.add_argument("--seed", type=int, default=37)
        p.add_argument("--deterministic", action="store_true", help="torch.use_deterministic_algorithms(True)")
    sub.choices["run"].add_argument("--threads", type=int, default=1)
    sub.choices["run"].add_argument("--out-dir", required=True)
    c = sub.choices["check"]
    c.add_argument("--threads", type=int, nargs="+", default=[1, 1, 2], help="one run per entry, this many threads")
    c.add_argument("--src", default=None, help="run another version of mner (its src folder first on the path)")
    c.add_argument("--reference", default=None, help="a JSON of one earlier run to compare against (run 0)")
    c.add_argument("--out", default=None, help="also write the runs and verdicts to this JSON file")
    args = ap.parse_args(argv)
    if args.command == "run":
        run_one(args)
        return 0
    return check(args)


if __name__ == "__main__":
    sys.exit(main())
