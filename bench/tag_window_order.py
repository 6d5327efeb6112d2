"""``mner tag`` with windows cut by length (the default) against consecutive rows (issue 26, item 4).

Both runs tag the same JSONL file with the same model, in this process, one after the other in
turns (``--turns``, order swapped every turn), ``--workers 0`` and one torch thread each, so that a
change of load touches both. Figures:

- **padding**: the share of padded sub-token positions in the text encoder's batches, counted
  from the model's own tokenizer over the windows each order cuts (exact, independent of load);
- **time**: whole ``run_tag`` calls (reading, tokenizing, model, CRF, writing); ratio = input-order
  time / length-order time, the median of the per-turn ratios;
- **sanity**: the rows written, in file order, have the same entities (types and offsets) under
  both orders, and the largest confidence difference.

Data: the tweets of Twitter-2017 (train + valid + test, read in place from ``$MNER_DATA`` or
``../shared/data``), text only. Model: the text-only MAF (MiniLM, untrained head: speed does not
depend on the weights), or ``--model`` (a checkpoint; a caption-view model reads the ``caption``
field, which this file does not carry).

    OMP_NUM_THREADS=1 .venv/bin/python bench/tag_window_order.py            # --tweets 1000 for a quick look

The last line of the output is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/: maf_benchmark's machine()

ROOT = Path(__file__).resolve().parents[1]
LABELS = ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def text_only_model(work: Path) -> Path:
    import torch

    from mner.encoders import TextEncoderConfig
    from mner.models import MAFConfig, MAFModel

    folder = work / "text-only"
    if not (folder / "model.safetensors").is_file():
        torch.manual_seed(0)
        MAFModel(MAFConfig(labels=LABELS, text_encoder=TextEncoderConfig(name="minilm"), no_image=True)).save_pretrained(folder)
    return folder


def padding_share(path: Path, model: Path, batch_size: int, shard_size: int, order: str) -> dict:
    """Padded and real sub-token positions of the text encoder over the windows of ``order``."""
    from mner.batch.job import WindowPlan
    from mner.batch.sources import Columns, expand_inputs, plan_shards
    from mner.data.tokenize import tokenize_text
    from mner.pipeline import Pipeline

    tokenizer = Pipeline.from_pretrained(model, device="cpu").model.text_encoder.tokenizer
    cut = WindowPlan(batch_size, order, Columns(), tokenizer.tokenizer)  # as mner tag cuts them
    _, shards = plan_shards(expand_inputs([path]), shard_size, Columns())
    real = padded = 0
    for shard in shards:
        for window in cut(shard):
            words = [w for w in (tokenize_text(json.loads(r.raw)["text"])[0] for r in window) if w]
            if words:  # the batch the text encoder sees (rows without a word are not tagged)
                mask = tokenizer(words).attention_mask
                real += int(mask.sum())
                padded += mask.numel() - int(mask.sum())
    return {"real": real, "padded": padded, "share": round(padded / max(1, real + padded), 4)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tweets", type=int, default=None, help="the first N tweets (default: all)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--shard-size", type=int, default=1000)
    p.add_argument("--turns", type=int, default=2)
    p.add_argument("--model", type=Path, default=None)
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-window-order")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch

    torch.set_num_threads(1)
    from maf_benchmark import machine
    from tag_benchmark import benchmark_texts

    from mner.batch import read_output, run_tag
    from mner.batch.job import TagOptions

    args.work.mkdir(parents=True, exist_ok=True)
    texts, source = benchmark_texts(args.work)
    texts = texts[: args.tweets] if args.tweets else texts
    path = args.work / "tweets.jsonl"
    path.write_text("".join(json.dumps({"id": f"t{i}", "text": t}, ensure_ascii=False) + "\n"
                            for i, t in enumerate(texts)), encoding="utf-8")
    model = args.model or text_only_model(args.work)
    log(f"{len(texts)} tweets ({source}); model {model}; batch {args.batch_size}, shards of {args.shard_size}")
    padding = {o: padding_share(path, model, args.batch_size, args.shard_size, o) for o in ("input", "length")}
    log(f"padding: {padding}")
    times: dict[str, list[float]] = {"input": [], "length": []}
    rows: dict[str, list[dict]] = {}
    for turn in range(args.turns):
        for order in (("input", "length") if turn % 2 == 0 else ("length", "input")):
            out = args.work / f"out-{order}"
            opts = TagOptions(checkpoint=model, inputs=[path], out=out, batch_size=args.batch_size,
                              shard_size=args.shard_size, window_order=order, workers=0, threads=1,
                              overwrite=True, progress=False, format="jsonl")
            t0 = time.perf_counter()
            run_tag(opts, log=lambda _msg: None)
            times[order].append(time.perf_counter() - t0)
            rows[order] = read_output(out)
            log(f"turn {turn + 1} {order}: {times[order][-1]:.1f} s")
    ratios = [i / le for i, le in zip(times["input"], times["length"])]
    a, b = rows["input"], rows["length"]
    same = sum([(e["type"], e["start"], e["end"]) for e in x["entities"]] == [(e["type"], e["start"], e["end"])
                                                                               for e in y["entities"]]
               for x, y in zip(a, b)) / max(1, len(a))
    diff = max((abs(e["confidence"] - f["confidence"]) for x, y in zip(a, b)
                for e, f in zip(x["entities"], y["entities"])), default=0.0)
    figures = {
        "tweets": len(texts), "batch_size": args.batch_size, "machine": machine(),
        "padding_share_input": padding["input"]["share"], "padding_share_length": padding["length"]["share"],
        "seconds_input": [round(t, 2) for t in times["input"]], "seconds_length": [round(t, 2) for t in times["length"]],
        "speedup_length_over_input": round(statistics.median(ratios), 3),
        "rows_in_file_order": [r["row"] for r in b] == sorted(r["row"] for r in b),
        "same_entities_share": round(same, 4), "max_confidence_difference": diff,
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
