"""Inference backends side by side (issue 26): torch fp32, torch dynamic int8, ONNX Runtime fp32 and
ONNX Runtime int8, on the same tweets in one run.

For a trained MAF checkpoint (default: the caption view, the only visual view with data on this
machine) it measures, per backend:

The backends take turns (round by round for throughput, tweet by tweet for latency), so that a
load that changes during the run touches them alike.

* ``tweets_per_s``: ``Pipeline.predict`` over the first ``--n`` test tweets in batches of
  ``--batch-size`` (tokenizing, the caption encoder, the text encoder, the head, CRF decoding and
  span building: everything a user waits for; the caption feature cache is emptied before each
  run, so every caption is encoded);
* ``p50_ms`` / ``p90_ms``: single-tweet latency (``Pipeline.predict`` on one tweet) over
  ``--latency-n`` tweets, after ``--warmup`` untimed calls;
* ``f1`` (and precision, recall) on the whole test split, conlleval counting, and ``delta_f1``
  against torch fp32;
* for the ONNX Runtime backends, ``floor_tweets_per_s``: the export's sessions alone, replaying the
  very calls (same inputs, same order) that one ``Pipeline.predict`` run made of them, right after
  each of the pipeline's throughput runs (the best replay), so
  ``pipeline_overhead`` = floor / pipeline throughput is what tokenizing, batching, the feature
  cache, CRF decoding and span building add above the bare exported forward;
* with ``--memory``: ``peak_rss_mb``, the peak resident memory of a fresh process that loads the
  backend and runs the throughput tweets once (each backend in its own process).

Backends: ``torch-fp32`` the checkpoint as trained; ``torch-int8`` the same model after
``torch.ao.quantization.quantize_dynamic`` of its text and caption encoders (their ``nn.Linear``
layers: int8 weights, dynamic activations; the head stays fp32, as in ``onnx-int8``);
``onnx-fp32`` / ``onnx-int8`` folders written by ``mner export`` (``--quantize int8``: dynamic int8
weights, per channel, in the text and caption encoders; the head stays fp32). The exports are made
by this script into ``--exports`` unless they are there already (their ``mner_export.json`` must
name the checkpoint's weights: a stale export is refused).

Every figure is measured on the machine it runs on, with ``--threads`` torch / ONNX Runtime threads
(default 1). The output ends with one JSON line of all figures.

    .venv/bin/python bench/inference_backends.py --checkpoint runs/bench/twitter2017__maf__minilm__seed37 \\
        --exports /tmp/inference-exports
    .venv/bin/python bench/inference_backends.py --checkpoint ... --exports ... --int8-variants   # which int8
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MNER_DATA", ROOT.parent / "shared" / "data"))
BACKENDS = ("torch-fp32", "torch-int8", "onnx-fp32", "onnx-int8")


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def load_test(dataset: str, split: str):
    from mner.data.prepare import DataConfig, prepare_data

    folder = DATA / dataset
    cfg = DataConfig(test=str(folder / f"{split}.txt"), type_map="OTHER=MISC", captions="auto",
                     feature_cache=None)
    data = prepare_data(cfg, needs_images=False, needs_captions=True, log=lambda *_: None)
    return data.splits["test"]


def ensure_export(checkpoint: Path, folder: Path, quantize: str | None) -> Path:
    from mner.backends import EXPORT_CONFIG
    from mner.backends.onnx_export import export_checkpoint, file_sha256
    from mner.models.checkpoint import WEIGHTS_NAME, resolve_model_dir

    source = resolve_model_dir(checkpoint)
    want = file_sha256(source / WEIGHTS_NAME)
    if (folder / EXPORT_CONFIG).is_file():
        config = json.loads((folder / EXPORT_CONFIG).read_text())
        if config["source"]["weights_sha256"] != want or (config["quantization"] or {}).get("weights") != quantize:
            sys.exit(f"{folder}: an export of other weights or another quantization; remove it or choose --exports")
        return folder
    print(f"exporting {source} -> {folder} ({quantize or 'fp32'})", file=sys.stderr, flush=True)
    return export_checkpoint(source, folder, quantize=quantize)


def build(backend: str, checkpoint: Path, exports: Path, batch_size: int):
    import torch

    from mner.models import load_model
    from mner.pipeline import Pipeline

    if backend == "torch-fp32":
        return Pipeline(load_model(checkpoint), batch_size=batch_size, device="cpu")
    if backend == "torch-int8":
        model = load_model(checkpoint)
        for encoder in (model.text_encoder, getattr(model, "caption_encoder", None)):  # as onnx-int8: the head stays fp32
            if encoder is not None:
                torch.ao.quantization.quantize_dynamic(encoder.model, {torch.nn.Linear}, dtype=torch.qint8,
                                                       inplace=True)
        return Pipeline(model, batch_size=batch_size, device="cpu")
    return Pipeline.from_pretrained(exports / backend, batch_size=batch_size)


def reset_cache(pipe) -> None:
    from mner.encoders.cache import FeatureCache

    visual = getattr(pipe.processor, "visual", None)
    if visual is not None:
        visual.cache = FeatureCache()


def throughput(pipes: dict, examples, repeats: int, calls: dict | None = None) -> dict[str, float]:
    """Tweets per second of each pipeline over ``examples``: the best of ``repeats`` runs, the
    backends taking turns within each round (a load that changes during the run touches all alike).
    ``calls``: an export's recorded session calls (:func:`record_calls`), replayed right after each
    of its pipeline's runs: its floor, under the same load, as ``"<name>/floor"``."""
    calls = calls or {}
    best = {name: float("inf") for name in [*pipes, *(f"{n}/floor" for n in calls)]}
    for _ in range(repeats):
        for name, pipe in pipes.items():
            reset_cache(pipe)
            start = time.perf_counter()
            pipe.predict(examples)
            best[name] = min(best[name], time.perf_counter() - start)
            if name in calls:
                best[f"{name}/floor"] = min(best[f"{name}/floor"], replay(_run, calls[name], 1))
    return {name: len(examples) / seconds for name, seconds in best.items()}


def latency(pipes: dict, examples, warmup: int) -> dict[str, list[float]]:
    """Milliseconds of ``Pipeline.predict`` on one tweet, per pipeline, the backends taking turns on
    each tweet (after ``warmup`` untimed tweets)."""
    times: dict[str, list[float]] = {name: [] for name in pipes}
    for pipe in pipes.values():
        reset_cache(pipe)
    for k, ex in enumerate(examples):
        for name, pipe in pipes.items():
            start = time.perf_counter()
            pipe.predict([ex])
            if k >= warmup:
                times[name].append((time.perf_counter() - start) * 1000)
    return times


class _Recorder:
    """Stands in for an ONNX Runtime session: runs each call and keeps it, to be replayed."""

    def __init__(self, session, calls: list):
        self.session, self.calls = session, calls

    def run(self, outputs, feed):
        self.calls.append((self.session, outputs, feed))
        return self.session.run(outputs, feed)


def record_calls(pipe, examples) -> list:
    """The calls (session, outputs, feed) one ``pipe.predict`` run of an export makes of its ONNX
    Runtime sessions, in order (caption cache emptied first)."""
    calls: list = []
    sessions = pipe.model.sessions.values()
    for s in sessions:
        s.session = _Recorder(s.session, calls)
    try:
        reset_cache(pipe)
        pipe.predict(examples)
    finally:
        for s in sessions:
            s.session = s.session.session
    return calls


def replay(run, calls, repeats: int) -> float:
    """The best of ``repeats`` timed replays of ``calls`` through ``run(session, outputs, feed)``."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for call in calls:
            run(*call)
        best = min(best, time.perf_counter() - start)
    return best


def _run(session, outputs, feed):
    return session.run(outputs, feed)


def openvino_floor(pipe, examples, repeats: int, threads: int) -> dict:
    """The same replay as :func:`floor` with each graph of the export compiled by OpenVINO (CPU,
    ``threads`` inference threads, latency hint) instead of run by ONNX Runtime: tweets per second,
    the ONNX Runtime floor measured in turn with it, and the largest output difference between the
    two runtimes over every call."""
    import numpy as np
    import openvino as ov

    calls = record_calls(pipe, examples)
    core = ov.Core()
    compiled = {}
    for s in pipe.model.sessions.values():
        compiled[id(s.session)] = core.compile_model(str(s.path), "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                                          "PERFORMANCE_HINT": "LATENCY",
                                                                          "INFERENCE_PRECISION_HINT": "f32"})

    def run_ov(session, outputs, feed):
        result = compiled[id(session)](feed)
        return [result[name] for name in outputs]

    diff = 0.0
    for session, outputs, feed in calls:
        for a, b in zip(session.run(outputs, feed), run_ov(session, outputs, feed)):
            diff = max(diff, float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max()))
    ort_s, ov_s = [], []
    for _ in range(repeats):  # in turns
        ort_s.append(replay(_run, calls, 1))
        ov_s.append(replay(run_ov, calls, 1))
    return {"openvino_floor_tweets_per_s": round(len(examples) / min(ov_s), 2),
            "onnxruntime_floor_tweets_per_s": round(len(examples) / min(ort_s), 2),
            "openvino_vs_onnxruntime_floor": round(min(ort_s) / min(ov_s), 3),
            "openvino_max_output_diff": float(f"{diff:.3g}"), "openvino": ov.__version__}


def peak_rss_mb() -> float:
    """This process's peak resident memory (MB): ``VmHWM`` of ``/proc/self/status``, which starts anew
    at exec (``getrusage``'s ``ru_maxrss`` does not: a child started by a large parent reports the
    parent's peak); ``ru_maxrss`` where there is no ``/proc``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def peak_memory(args, backend: str) -> float:
    """Peak resident memory (MB) of a fresh process that builds ``backend`` and predicts the throughput
    tweets once (``--memory-child``)."""
    cmd = [sys.executable, __file__, "--checkpoint", str(args.checkpoint), "--exports", str(args.exports),
           "--dataset", args.dataset, "--split", args.split, "--n", str(args.n), "--batch-size",
           str(args.batch_size), "--threads", str(args.threads), "--memory-child", backend]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_rss_mb"]


def score(pipe, examples, batch_size: int) -> dict:
    from mner.evaluation import evaluate_examples, predict_tags

    reset_cache(pipe)
    loader = [pipe.processor(examples[i:i + batch_size]) for i in range(0, len(examples), batch_size)]
    report = evaluate_examples(examples, predict_tags(pipe.model, loader), mode="conlleval")
    return {"precision": report.micro.precision, "recall": report.micro.recall, "f1": report.micro.f1}


#: int8 variants made from the fp32 export (``--int8-variants``): which graphs, per channel or not.
INT8_VARIANTS = {
    "int8-per-channel": {"per_channel": True, "graphs": ("text_encoder", "caption_encoder")},
    "int8-per-tensor": {"per_channel": False, "graphs": ("text_encoder", "caption_encoder")},
    "int8-text-encoder-only": {"per_channel": True, "graphs": ("text_encoder",)},
    "int8-caption-encoder-only": {"per_channel": True, "graphs": ("caption_encoder",)},
}


def int8_variants(args, checkpoint: Path) -> dict:
    """Dev and test F1 and throughput of each :data:`INT8_VARIANTS` entry against the fp32 export, the
    variants made from it by :func:`mner.backends.onnx_export.quantize_export`."""
    from mner.backends.onnx_export import quantize_export
    from mner.pipeline import Pipeline

    fp32 = ensure_export(checkpoint, args.exports / "onnx-fp32", None)
    for name, options in INT8_VARIANTS.items():
        if not (args.exports / name).is_dir():
            quantize_export(fp32, args.exports / name, **options)
    names = ["onnx-fp32", *INT8_VARIANTS]
    pipes = {name: Pipeline.from_pretrained(args.exports / name, batch_size=args.batch_size) for name in names}
    dev, test = load_test(args.dataset, "valid"), load_test(args.dataset, "test")
    speed = throughput(pipes, test[:args.n], args.repeats)
    rows = {}
    for name, pipe in pipes.items():
        d, t = score(pipe, dev, args.batch_size), score(pipe, test, args.batch_size)
        rows[name] = {"tweets_per_s": round(speed[name], 2), "dev_f1": round(d["f1"], 5), "test_f1": round(t["f1"], 5),
                      **({"per_channel": INT8_VARIANTS[name]["per_channel"],
                          "graphs": list(INT8_VARIANTS[name]["graphs"])} if name in INT8_VARIANTS else {})}
        print(f"{name}: {json.dumps(rows[name])}", file=sys.stderr, flush=True)
    for row in rows.values():
        row["speedup_vs_onnx_fp32"] = round(row["tweets_per_s"] / rows["onnx-fp32"]["tweets_per_s"], 3)
        row["delta_dev_f1_points"] = round(100 * (row["dev_f1"] - rows["onnx-fp32"]["dev_f1"]), 2)
        row["delta_test_f1_points"] = round(100 * (row["test_f1"] - rows["onnx-fp32"]["test_f1"]), 2)
    best = max(INT8_VARIANTS, key=lambda name: rows[name]["dev_f1"])
    return {"variants": rows, "chosen_on_dev_f1": best}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="a trained MAF (caption view) checkpoint or run")
    parser.add_argument("--exports", type=Path, required=True, help="folder of the onnx-fp32 / onnx-int8 exports")
    parser.add_argument("--dataset", default="twitter2017")
    parser.add_argument("--split", default="test")
    parser.add_argument("--n", type=int, default=640, help="tweets of the throughput run")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="throughput runs per backend (the best is kept)")
    parser.add_argument("--latency-n", type=int, default=100, help="single-tweet calls timed per backend")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--no-f1", action="store_true", help="skip F1 on the whole split")
    parser.add_argument("--memory", action="store_true",
                        help="also each backend's peak resident memory, in a fresh process each")
    parser.add_argument("--memory-child", choices=BACKENDS, help=argparse.SUPPRESS)
    parser.add_argument("--openvino", action="store_true",
                        help="instead: the ONNX exports' graphs run by OpenVINO vs ONNX Runtime, the floor replay of "
                             "the throughput tweets (needs the openvino extra: pip install -e '.[openvino]')")
    parser.add_argument("--int8-variants", action="store_true",
                        help="instead: the int8 variants (per channel or per tensor, which graphs) against the fp32 "
                             "export: dev and test F1 and throughput, the variant with the best dev F1 named")
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from transformers.utils import logging as hf_logging

    from mner.backends.onnx_export import file_sha256
    from mner.models.checkpoint import WEIGHTS_NAME, resolve_model_dir

    hf_logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    checkpoint = resolve_model_dir(args.checkpoint)
    args.exports.mkdir(parents=True, exist_ok=True)
    if args.int8_variants:
        summary = {"checkpoint": str(checkpoint), "weights_sha256": file_sha256(checkpoint / WEIGHTS_NAME),
                   "dataset": args.dataset, "n_speed": args.n, "batch_size": args.batch_size, "threads": args.threads,
                   "cpu": cpu_model(), "cores": os.cpu_count(), **int8_variants(args, checkpoint)}
        print(json.dumps(summary))
        return 0
    for backend, quantize in (("onnx-fp32", None), ("onnx-int8", "int8")):
        if backend in args.backends:
            ensure_export(checkpoint, args.exports / backend, quantize)
    examples = load_test(args.dataset, args.split)
    speed_set = examples[:args.n]
    if args.openvino:
        from mner.pipeline import Pipeline

        rows = {}
        for backend in [b for b in args.backends if b.startswith("onnx")]:
            pipe = Pipeline.from_pretrained(args.exports / backend, batch_size=args.batch_size)
            rows[backend] = openvino_floor(pipe, speed_set, max(2, args.repeats), args.threads)
            print(f"{backend}: {json.dumps(rows[backend])}", file=sys.stderr, flush=True)
        print(json.dumps({"checkpoint": str(checkpoint), "n_speed": len(speed_set), "batch_size": args.batch_size,
                          "threads": args.threads, "cpu": cpu_model(), "cores": os.cpu_count(), "openvino": rows}))
        return 0
    if args.memory_child:
        build(args.memory_child, checkpoint, args.exports, args.batch_size).predict(speed_set)
        print(json.dumps({"peak_rss_mb": peak_rss_mb()}))
        return 0
    latency_set = examples[:args.warmup + args.latency_n]
    memory = {backend: peak_memory(args, backend) for backend in args.backends} if args.memory else {}
    pipes = {backend: build(backend, checkpoint, args.exports, args.batch_size) for backend in args.backends}
    calls = {backend: record_calls(pipe, speed_set) for backend, pipe in pipes.items() if backend.startswith("onnx")}
    speed = throughput(pipes, speed_set, args.repeats, calls)
    floors = {backend: speed[f"{backend}/floor"] for backend in calls}
    times = latency(pipes, latency_set, args.warmup)
    results: dict[str, dict] = {}
    for backend, pipe in pipes.items():
        row = {"tweets_per_s": round(speed[backend], 2), "p50_ms": round(statistics.median(times[backend]), 2),
               "p90_ms": round(statistics.quantiles(times[backend], n=10)[-1], 2)}
        if backend in floors:
            row.update(floor_tweets_per_s=round(floors[backend], 2),
                       pipeline_overhead=round(floors[backend] / speed[backend], 3))
        if backend in memory:
            row["peak_rss_mb"] = memory[backend]
        if not args.no_f1:
            row.update({k: round(v, 5) for k, v in score(pipe, examples, args.batch_size).items()})
        results[backend] = row
        print(f"{backend}: {json.dumps(row)}", file=sys.stderr, flush=True)
    base = results.get("torch-fp32")
    if base is not None:
        for row in results.values():
            row["speedup_vs_torch_fp32"] = round(row["tweets_per_s"] / base["tweets_per_s"], 3)
            row["p50_ratio_vs_torch_fp32"] = round(row["p50_ms"] / base["p50_ms"], 3)
            if "f1" in row and "f1" in base:
                row["delta_f1_points"] = round(100 * (row["f1"] - base["f1"]), 2)
    summary = {"checkpoint": str(checkpoint), "weights_sha256": file_sha256(checkpoint / WEIGHTS_NAME),
               "dataset": args.dataset, "split": args.split, "tweets": len(examples), "n_speed": len(speed_set),
               "batch_size": args.batch_size, "latency_n": args.latency_n, "threads": args.threads,
               "cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__, "results": results}
    try:
        import onnxruntime

        summary["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
