"""``mner quickstart [--out DIR]``: the main job, with nothing but the install.

1. builds the demo corpus (:mod:`mner.demo`) from photographs shipped with installed packages;
2. trains the text-only CRF tagger and MAF (pixels view, EfficientNet-Lite0 regions) with the
   offline MiniLM encoder on it;
3. scores both on the test split: the names in it can only be typed by looking at the image;
4. saves MAF in DIR (``Pipeline.from_pretrained(DIR)`` loads it) and tags one sentence with two
   different images;
5. ends with one JSON line: ``{"text_only_f1", "maf_f1", "model"}`` (fractions).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from mner.cli.data import nonnegative_int, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quickstart", help="train and compare text-only vs MAF on a built-in demo corpus (a few minutes on a CPU)")
    p.add_argument("--out", type=Path, default=Path("runs/quickstart"), help="where the model goes (default runs/quickstart)")
    p.add_argument("--epochs", type=positive_int, default=12)
    p.add_argument("--seed", type=nonnegative_int, default=37)
    p.add_argument("--text-encoder", default="minilm", help="text encoder (default: the offline MiniLM)")
    p.add_argument("--image-encoder", default="efficientnet-lite0", help="image encoder (default: the offline EfficientNet-Lite0)")
    p.add_argument("--fresh", action="store_true", help="retrain even if DIR holds finished runs")
    p.set_defaults(func=cmd_quickstart)


def _config(args, data_dir: Path, out: Path, no_image: bool) -> dict:
    return {
        "model_type": "maf",
        "model": {"visual_view": "pixels", "no_image": no_image,
                  "text_encoder": {"name": args.text_encoder},
                  "image_encoder": {"name": args.image_encoder}},
        "data": {"corpus": str(data_dir), "images": str(data_dir.parent / "images"), "captions": None,
                 "feature_cache": str(args.out / "feature-cache")},
        "training": {"output_dir": str(out), "epochs": args.epochs, "batch_size": 16, "eval_batch_size": 64,
                     "learning_rate": 5e-5, "head_learning_rate": 1e-3, "seed": args.seed, "progress": False,
                     "log_every": 10, "resume": not args.fresh},
    }


def cmd_quickstart(args) -> int:
    import shutil

    from mner.demo import build_demo_corpus, demo_pair
    from mner.experiment import load_experiment, train
    from mner.pipeline import Pipeline

    t0 = time.perf_counter()
    out: Path = args.out
    if args.fresh and out.exists():
        for sub in ("best", "last", "text-only"):
            shutil.rmtree(out / sub, ignore_errors=True)
    data_dir = build_demo_corpus(out / "demo-data", seed=0)
    print(f"== demo corpus: {data_dir.parent} (see mner/demo.py for how it is built)")
    results = {}
    for name, no_image, run_dir in (("text-only CRF", True, out / "text-only"), ("MAF (pixels)", False, out)):
        print(f"\n== training {name}")
        cfg = load_experiment(_config(args, data_dir, run_dir, no_image))
        summary = train(cfg)
        results[name] = summary
    to, maf = results["text-only CRF"]["test_f1"], results["MAF (pixels)"]["test_f1"]
    print("\n== test F1 on the demo corpus (names whose type only the image tells)")
    print(f"text-only CRF: {100 * to:.2f}")
    print(f"MAF (pixels):  {100 * maf:.2f}")
    print("the image matters" if maf > to else "MAF did not beat the text-only tagger on this run")

    pipe = Pipeline.from_pretrained(out)
    sentence, person, cat = demo_pair()
    print(f"\n== one sentence, two images: {sentence!r}")
    for label, img in (("with a photo of a person", person), ("with a photo of a cat", cat)):
        ents = pipe(sentence, image=img)
        shown = ", ".join(f"{e['text']} -> {e['type']} ({e['confidence']:.2f})" for e in ents) or "no entity"
        print(f"{label}: {shown}")
    print(f"\nmodel saved in {out} (load it with Pipeline.from_pretrained({str(out)!r}) or "
          f"mner predict {out} --text ... --image ...); {time.perf_counter() - t0:.0f} s in all")
    print(json.dumps({"text_only_f1": to, "maf_f1": maf, "model": str(out)}))
    return 0
