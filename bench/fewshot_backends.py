"""A few-shot checkpoint on each inference backend (issue 26, item 1 for few-shot models): torch,
its ONNX Runtime fp32 export and its int8 export (``mner export``: the per-tweet encoder as ONNX
graphs, the episode step in PyTorch), scored on the same test episodes in one run.

    OMP_NUM_THREADS=1 .venv/bin/python bench/fewshot_backends.py \\
        --checkpoint runs/bench-fewshot/twitter2017__Org+Others__mousing__k5__seed37/best \\
        --episodes runs/episodes/twitter2017/Org+Others/test-k5.jsonl

For each backend: entity-level micro P/R/F1 pooled over the episodes' query tweets (conlleval, as
``bench/fewshot_benchmark.py`` scores a cell), the share of query words tagged as torch tags them,
and the episodes per second of ``predict_episodes`` (each distinct tweet encoded once, then every
episode's head), with one torch thread and one ONNX Runtime thread. The output ends with one JSON
line of these figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cells import git_commit, machine  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, required=True, help="a few-shot checkpoint (a model folder)")
    ap.add_argument("--episodes", type=Path, required=True, help="the test episodes (mner fewshot protocol)")
    ap.add_argument("--exports", type=Path, default=None,
                    help="where the exports go (default: a temporary folder, removed after)")
    ap.add_argument("--limit", type=int, default=None, help="score the first N episodes only")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers.utils import logging as hf_logging

    from mner.backends.onnx_export import export_checkpoint
    from mner.backends.onnx_runtime import load_exported
    from mner.data.episodes import read_episodes
    from mner.fewshot.evaluation import predict_episodes, score_episodes
    from mner.models import load_model

    hf_logging.set_verbosity_error()
    torch.set_num_threads(1)
    episodes = read_episodes(args.episodes)[: args.limit]
    tmp = tempfile.TemporaryDirectory() if args.exports is None else None
    root = Path(tmp.name) if tmp else args.exports
    figures: dict = {"checkpoint": str(args.checkpoint), "episodes": str(args.episodes), "n_episodes": len(episodes),
                     "machine": machine(), "git_commit": git_commit(), "backends": {}}
    models = {"torch": lambda: load_model(args.checkpoint)}
    for name, quantize in (("onnx-fp32", None), ("onnx-int8", "int8")):
        t0 = time.perf_counter()
        folder = export_checkpoint(args.checkpoint, root / name, quantize=quantize)
        figures.setdefault("export_seconds", {})[name] = round(time.perf_counter() - t0, 1)
        models[name] = lambda folder=folder: load_exported(folder, threads=1)
    reference = None
    for name, make in models.items():
        model = make()
        preds = predict_episodes(model, episodes, model.processor(), batch_size=8)
        rep = score_episodes(episodes, preds)
        words = [t for ep in preds.tags for q in ep for t in q]
        if reference is None:
            reference = words
        same = sum(a == b for a, b in zip(words, reference)) / max(1, len(words))
        figures["backends"][name] = {"precision": rep.micro.precision, "recall": rep.micro.recall, "f1": rep.micro.f1,
                                     "words_tagged_as_torch": same, "episodes_per_second": preds.episodes_per_second}
        print(f"{name}: F1 {100 * rep.micro.f1:.2f} (P {100 * rep.micro.precision:.2f}, R {100 * rep.micro.recall:.2f}), "
              f"{100 * same:.2f} % of words tagged as torch, {preds.episodes_per_second:.2f} episodes/s", flush=True)
    if tmp:
        tmp.cleanup()
    torch_eps = figures["backends"]["torch"]["episodes_per_second"]
    figures["speedup_vs_torch"] = {k: round(v["episodes_per_second"] / torch_eps, 3) for k, v in figures["backends"].items()}
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
