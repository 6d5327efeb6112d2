"""Static int8 of an exported image encoder against its fp32 graph (issue 26, item 3): the largest
feature difference on the images of some splits, and the throughput ratio of the image encoder
graph alone.

    OMP_NUM_THREADS=1 .venv/bin/python bench/image_int8_speed.py FP32_EXPORT INT8_EXPORT \\
        --data runs/quickstart/demo-data/tweets --images runs/quickstart/demo-data/images

Each split's tweet images are opened by :func:`mner.data.images.load_image` and transformed by the
fp32 export's own image transform, as the pipeline does. Speed: one ONNX Runtime thread per
session; the speed split's first images in batches of ``--batch-size``, each batch run by both
graphs in turn (the order alternating from round to round, so that a change of load touches both),
``--rounds`` rounds after one untimed; the ratio is the median over the timed pairs of fp32 time /
int8 time (on a loaded machine, compare ratios, not times). ``--torch CHECKPOINT``: the checkpoint's
own image encoder in PyTorch (one thread, batch norms folded and channels-last, as the pipelines run
it) takes its turn on each batch too: the median of torch time / fp32 graph time, and the largest
pooled-feature difference between the two. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np


def _session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _pixels(export: Path, data: Path, images: Path, split: str) -> np.ndarray:
    """The split's tweet images (each once) as the export's pipeline feeds them to its image encoder."""
    from mner.backends.onnx_runtime import load_exported
    from mner.data.corpus import corpus_files
    from mner.data.formats import read_file
    from mner.data.images import ImageStore

    transform = load_exported(export, threads=1).image_encoder.eval_transform()
    store = ImageStore(images)
    refs = dict.fromkeys(ex.image for ex in read_file(corpus_files(data)[split]) if ex.image is not None)
    return np.stack([transform(store.open(ref)).numpy() for ref in refs])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("fp32", type=Path, help="the fp32 export")
    parser.add_argument("int8", type=Path, help="the export whose image encoder is static int8")
    parser.add_argument("--data", type=Path, required=True, help="corpus folder")
    parser.add_argument("--images", type=Path, required=True, help="its image folder")
    parser.add_argument("--splits", nargs="+", default=["valid", "test"], help="splits of the feature comparison")
    parser.add_argument("--speed-split", default="test")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=4, help="batches timed per round (default 4)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--torch", type=Path, default=None, metavar="CHECKPOINT",
                        help="also time the checkpoint's PyTorch image encoder (fused, one thread) on the same batches")
    args = parser.parse_args()
    runners = {}
    if args.torch is not None:
        import torch

        from mner.models import load_model

        torch.set_num_threads(1)
        encoder = load_model(args.torch).image_encoder.eval()
        encoder.fuse_for_inference(True)

        def run_torch(batch: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return encoder(torch.from_numpy(batch)).pooled.numpy()

        runners["torch"] = run_torch

    fp32, int8 = _session(args.fp32 / "image_encoder.onnx"), _session(args.int8 / "image_encoder.onnx")
    features = {}
    for split in args.splits:
        pixels = _pixels(args.fp32, args.data, args.images, split)
        ref, got = [], []
        for i in range(0, len(pixels), args.batch_size):
            ref.append(fp32.run(None, {"pixel_values": pixels[i:i + args.batch_size]}))
            got.append(int8.run(None, {"pixel_values": pixels[i:i + args.batch_size]}))
        split_stats = {"images": len(pixels)}
        for k, name in enumerate(("tokens", "pooled")):
            a = np.concatenate([r[k] for r in ref])
            b = np.concatenate([g[k] for g in got])
            diff = np.abs(a - b)
            split_stats[name] = {"max_abs_diff": round(float(diff.max()), 4),
                                 "mean_abs_diff": round(float(diff.mean()), 5),
                                 "max_abs_fp32": round(float(np.abs(a).max()), 4)}
        a, b = np.concatenate([r[1] for r in ref]), np.concatenate([g[1] for g in got])
        cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        split_stats["pooled"]["cosine_min"] = round(float(cosine.min()), 4)
        split_stats["pooled"]["cosine_mean"] = round(float(cosine.mean()), 4)
        features[split] = split_stats

    pixels = _pixels(args.fp32, args.data, args.images, args.speed_split)
    batches = [pixels[i:i + args.batch_size] for i in range(0, args.batches * args.batch_size, args.batch_size)]
    if any(len(b) < args.batch_size for b in batches):
        parser.error(f"{args.speed_split}: fewer than {args.batches} x {args.batch_size} images")
    runners = {"fp32": lambda b: fp32.run(None, {"pixel_values": b})[1],
               "int8": lambda b: int8.run(None, {"pixel_values": b})[1], **runners}
    ratios, torch_ratios, times = [], [], {name: [] for name in runners}
    torch_diff = 0.0
    for round_ in range(args.rounds + 1):
        order = list(runners) if round_ % 2 == 0 else list(runners)[::-1]
        for batch in batches:
            took, pooled = {}, {}
            for name in order:
                start = time.perf_counter()
                pooled[name] = runners[name](batch)
                took[name] = time.perf_counter() - start
            if round_:  # the first round warms them up
                ratios.append(took["fp32"] / took["int8"])
                if "torch" in took:
                    torch_ratios.append(took["torch"] / took["fp32"])
                    torch_diff = max(torch_diff, float(np.abs(pooled["torch"] - pooled["fp32"]).max()))
                for name in took:
                    times[name].append(took[name])
    speed = {"split": args.speed_split, "batch_size": args.batch_size, "pairs": len(ratios),
             "median_ratio_fp32_over_int8": round(statistics.median(ratios), 3),
             "median_batch_s": {k: round(statistics.median(v), 4) for k, v in times.items()}}
    if torch_ratios:
        speed.update(median_ratio_torch_over_fp32_graph=round(statistics.median(torch_ratios), 3),
                     torch_vs_fp32_graph_max_pooled_diff=float(f"{torch_diff:.3g}"))
    print(json.dumps({"fp32": str(args.fp32), "int8": str(args.int8), "features": features, "speed": speed}))


if __name__ == "__main__":
    main()
