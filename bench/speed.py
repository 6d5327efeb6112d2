"""Speed ratios measured in one run, on the same inputs.

1. **Feature cache**: time of the same MAF training steps (collate + forward + backward + AdamW)
   when the frozen visual encoder's features come from the cache vs when it recomputes them at
   every step. Two settings: the pixels view on the demo corpus (EfficientNet-Lite0 over
   224x224 photos) and the caption view on Twitter-2017 (a frozen MiniLM over BLIP-2 captions;
   skipped with a note when the benchmark files are absent).
2. **Pipeline overhead**: ``Pipeline`` on a batch of raw inputs (texts + images) vs the bare
   encoders' forward pass on the same batch (text encoder on the tokenized words + image encoder
   on the preprocessed pixels, no grad). Overhead = pipeline / bare - 1, for images given as PIL
   images in memory and as file paths (decoding included).

Every time is the median of ``--repeats`` timings after a warm-up, the compared functions
timed in turns; every ratio is the median of the per-turn ratios, so that a load that comes
and goes on a shared machine hits both sides alike.

    .venv/bin/python bench/speed.py

The last line of the output is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MNER_DATA", ROOT.parent / "shared" / "data"))


def paired_times(fns: dict, repeats: int) -> dict[str, float]:
    """Median time of each function, timed in turns (a, b, c, a, b, c, ...) after a warm-up,
    so that a load that comes and goes hits all of them alike; plus the median of each one's
    ratio to the first, pair by pair (``ratio_<name>``)."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    first = next(iter(fns))
    out = {name: statistics.median(ts) for name, ts in times.items()}
    for name in fns:
        out[f"ratio_{name}"] = statistics.median(t / b for t, b in zip(times[name], times[first]))
    return out


def train_steps(model, collate, examples, batch_size: int, steps: int) -> callable:
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    batches = [examples[i * batch_size:(i + 1) * batch_size] for i in range(steps)]

    def run():
        model.train()
        for chunk in batches:
            out = model(collate(chunk))
            out.loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

    return run


def cache_ratio(view: str, examples, image_store, repeats: int, batch_size: int, steps: int) -> dict:
    from mner.encoders.cache import FeatureCache
    from mner.models import MAFConfig, MAFModel
    from mner.tagging.labels import LabelSet

    labels = LabelSet.from_tag_sequences(ex.tags for ex in examples)
    torch.manual_seed(0)
    model = MAFModel(MAFConfig(labels=list(labels.labels), visual_view=view))
    cached = FeatureCache()
    model.processor(image_store, cached).precompute(examples, progress=False)
    fast = train_steps(model, model.processor(image_store, cached).collate(train=True), examples,
                       batch_size, steps)
    nocache = FeatureCache(max_in_memory=0)  # every lookup misses: the encoder runs at every step
    slow = train_steps(model, model.processor(image_store, nocache).collate(train=True), examples,
                       batch_size, steps)
    t = paired_times({"cached": fast, "recompute": slow}, repeats)
    return {"view": view, "steps": steps, "batch_size": batch_size, "cached_s": t["cached"],
            "recompute_s": t["recompute"], "speedup": t["ratio_recompute"]}


def pipeline_overhead(examples, image_dir: Path, repeats: int, batch: int) -> dict:
    from PIL import Image

    from mner.models import MAFConfig, MAFModel
    from mner.pipeline import Pipeline
    from mner.tagging.labels import LabelSet

    labels = LabelSet.from_tag_sequences(ex.tags for ex in examples)
    torch.manual_seed(0)
    model = MAFModel(MAFConfig(labels=list(labels.labels), visual_view="pixels")).eval()
    pipe = Pipeline(model, batch_size=batch)  # turns on model's fused image encoder: the bare passes run it too
    exs = examples[:batch]
    texts = [" ".join(ex.tokens) for ex in exs]
    paths = [image_dir / f"{ex.image}.jpg" for ex in exs]
    pil = [Image.open(p).convert("RGB") for p in paths]
    tok = model.text_encoder.tokenizer
    transform = model.image_encoder.eval_transform()

    def bare():
        with torch.no_grad():
            words = tok([t.split(" ") for t in texts])
            model.text_encoder(words)
            model.image_encoder(torch.stack([transform(im) for im in pil]))

    def bare_forward_only():
        with torch.no_grad():
            model.text_encoder(words_pre)
            model.image_encoder(pixels_pre)

    words_pre = tok([t.split(" ") for t in texts])
    pixels_pre = torch.stack([transform(im) for im in pil])
    t = paired_times({"forward": bare_forward_only, "bare": bare, "pil": lambda: pipe(texts, image=pil),
                      "paths": lambda: pipe(texts, image=paths)}, repeats)
    return {"batch": batch, "encoders_forward_s": t["forward"], "encoders_with_preprocessing_s": t["bare"],
            "pipeline_pil_s": t["pil"], "pipeline_paths_s": t["paths"],
            "overhead_vs_forward_pil": t["ratio_pil"] - 1, "overhead_vs_forward_paths": t["ratio_paths"] - 1,
            "overhead_vs_preprocessed_pil": t["ratio_pil"] / t["ratio_bare"] - 1,
            "pipeline_inputs_per_s": batch / t["pil"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    from mner.data.formats import read_file
    from mner.data.images import ImageStore
    from mner.demo import build_demo_corpus

    figures: dict = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        tweets = build_demo_corpus(Path(tmp) / "demo", sizes=(args.batch_size * args.steps, 8, 64))
        store = ImageStore(tweets.parent / "images")
        train = read_file(tweets / "train.txt")
        figures["cache_pixels"] = cache_ratio("pixels", train, store, args.repeats, args.batch_size, args.steps)
        print(f"feature cache, pixels view (demo corpus): {figures['cache_pixels']['recompute_s']:.2f} s "
              f"recomputing vs {figures['cache_pixels']['cached_s']:.2f} s cached for {args.steps} steps: "
              f"{figures['cache_pixels']['speedup']:.1f}x", flush=True)
        if (DATA / "twitter2017").is_dir():
            from mner.data.captions import CaptionStore, attach_captions

            real = read_file(DATA / "twitter2017" / "train.txt", type_map="OTHER=MISC")[: args.batch_size * args.steps]
            real, _ = attach_captions(real, CaptionStore.from_file(DATA / "captions" / "twitter2017_blip2.txt"))
            figures["cache_caption"] = cache_ratio("caption", real, None, args.repeats, args.batch_size, args.steps)
            print(f"feature cache, caption view (Twitter-2017): {figures['cache_caption']['recompute_s']:.2f} s "
                  f"recomputing vs {figures['cache_caption']['cached_s']:.2f} s cached: "
                  f"{figures['cache_caption']['speedup']:.1f}x", flush=True)
        else:
            print(f"feature cache, caption view: skipped, no benchmark files at {DATA}")
        test = read_file(tweets / "test.txt")
        figures["pipeline"] = pipe = pipeline_overhead(test, tweets.parent / "images", args.repeats, args.batch_size)
        print(f"pipeline ({pipe['batch']} inputs): {pipe['pipeline_pil_s']:.3f} s with PIL images, "
              f"{pipe['pipeline_paths_s']:.3f} s with paths; bare encoders' forward {pipe['encoders_forward_s']:.3f} s "
              f"(with tokenization and image preprocessing {pipe['encoders_with_preprocessing_s']:.3f} s); "
              f"overhead {100 * pipe['overhead_vs_forward_pil']:.0f} % (PIL), {100 * pipe['overhead_vs_forward_paths']:.0f} % (paths)")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
