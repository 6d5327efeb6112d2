"""The few-shot pipeline's support set encoded once against encoded with every batch (issue 23).

``FewShotPipeline(cache_support=True)`` (the default) runs the encoder on the support tweets at its
first batch only; ``cache_support=False`` runs the whole model on each episode (support + a batch
of queries), as before. Both pipelines tag the same queries in one process, alternated, one thread;
the figure is the ratio of their best times, and the entities must be equal.

    .venv/bin/python bench/fewshot_support_cache.py CHECKPOINT [--support S] [--queries Q]

Ends with one JSON line of its figures.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
USER_TYPES = ROOT / "bench" / "data" / "user-types"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", help="a few-shot checkpoint (e.g. a bench/fewshot_benchmark.py run's best/)")
    ap.add_argument("--support", default=str(USER_TYPES / "support.jsonl"))
    ap.add_argument("--queries", default=str(USER_TYPES / "query.jsonl"))
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args(argv)

    import torch

    from mner.data.formats import read_file
    from mner.fewshot.pipeline import FewShotPipeline, read_support
    from mner.models import load_model

    torch.set_num_threads(1)
    support = read_support(args.support)
    queries = list(read_file(args.queries))
    model = load_model(args.checkpoint, map_location="cpu")
    pipes = {cached: FewShotPipeline(model, support, batch_size=args.batch_size, device="cpu", cache_support=cached)
             for cached in (True, False)}
    times: dict[bool, list[float]] = {True: [], False: []}
    out = {}
    for _ in range(args.reps):
        for cached in (False, True):
            start = time.perf_counter()
            out[cached] = pipes[cached].predict(queries)
            times[cached].append(time.perf_counter() - start)
    best = {cached: min(t) for cached, t in times.items()}
    figures = {"checkpoint": args.checkpoint, "model_type": model.model_type, "support_tweets": len(support),
               "queries": len(queries), "batch_size": args.batch_size, "reps": args.reps,
               "seconds_encode_every_batch": round(best[False], 3), "seconds_encode_once": round(best[True], 3),
               "speedup": round(best[False] / best[True], 2), "same_entities": out[True] == out[False]}
    print(f"support encoded once: {figures['speedup']}x ({best[False]:.2f} s -> {best[True]:.2f} s for "
          f"{len(queries)} queries), same entities: {figures['same_entities']}")
    print(json.dumps(figures))
    return 0 if figures["same_entities"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
