"""Speed of batch tagging (``mner tag``), ratios measured in one run on the same tweets.

Data: the tweets of Twitter-2017 (train + valid + test, replicated to ``--tweets``; the demo
corpus's texts when the benchmark files are absent), each with one of the demo corpus's image
files (224x224 JPEG crops of the photographs shipped with scikit-image and scikit-learn, see
``mner.demo``), in turn. Models: MAF on the offline encoders (MiniLM + EfficientNet-Lite0, pixels
view), untrained heads (speed does not depend on the weights); its text-only variant
(``no_image``).

1. ``mner tag --engine local`` vs ``mner predict --input`` (today's path), each a whole command
   (start, model loading and writing included), each with the whole machine: predict with torch
   on every core (its default), tag with its defaults (one model replica per core in spawned
   worker processes, each on one torch thread, each decoding its own windows' images). Ratio =
   predict time / tag time. Target >= 2. Also measured: predict with one torch thread
   (``OMP_NUM_THREADS=1``), and tag with ``--workers 0`` (one process, torch on every core, as
   predict): what the replicas add over threads.
2. The text-only mner model (``Pipeline`` on raw texts: tokenizing, MiniLM, CRF, entity spans)
   vs Hugging Face ``pipeline("token-classification")`` on the same MiniLM (random head,
   ``aggregation_strategy="first"``: word-level entities, as mner's first-sub-token words), the
   same texts and batch size, in this process, timed in turns after a warm-up. Ratio = HF time /
   mner time (the median of the per-turn ratios). Target >= 1.
3. ``mner tag --engine ray`` with 2 actors vs ``--engine local``: ratio = local time / ray time
   (above 1: Ray faster). Ray's start (a few seconds) is inside its time, as a user waits for it.
4. (context) The image encoder alone, in this process, one torch thread: EfficientNet-Lite0 on
   batches of 32 demo images as the pipelines now run it (batch norms folded, channels-last;
   ``ImageEncoder.fuse_for_inference``) vs the plain backbone, and the largest feature difference.
   Both commands of ratio 1 run the fused encoder: this figure is what every path gained from it.

5. (``--onnx fp32 int8``) ``mner tag`` on the model's ONNX exports (``mner export``, ``--quantize
   int8``: the text encoder's matrix products in dynamic int8, the image encoder and the head fp32)
   vs ``mner tag`` on the checkpoint (ratio 1's run): whole commands, the same tweets and defaults
   (one replica per core, one thread each, for both backends), in ``--tag-rounds`` rounds whose
   order is reversed every other round. Ratio = median torch tag time / median ONNX tag time; the
   share of tweets whose entities equal torch's (on untrained heads, whose emissions are nearly
   flat, int8's small changes flip many tags: F1 on trained models is
   ``bench/inference_backends.py``'s). And the text-only model's exports through ``Pipeline`` vs
   the HF pipeline as in ratio 2 (issue 26's targets: >= 2.5x today's ``mner tag``, >= 3x the HF
   pipeline).

Sanity checks printed with the figures: tag's entities equal predict's (types and offsets; the
confidences may move in the last digit with another batching) and Ray's rows equal local's.

    .venv/bin/python bench/tag_benchmark.py --tweets 10000      # --tweets 1000 for a quick look
    .venv/bin/python bench/tag_benchmark.py --threads 1 --skip predict ray workers-0 predict-1-thread image-encoder \
        --onnx fp32 int8 --tag-rounds 2                         # issue 26: the ONNX Runtime backend

The last line of the output is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/: maf_benchmark's machine()

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MNER_DATA", ROOT.parent / "shared" / "data"))
LABELS = ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------ data
def benchmark_texts(work: Path) -> tuple[list[str], str]:
    from mner.data.formats import read_file

    folder = DATA / "twitter2017"
    if (folder / "train.txt").is_file():
        texts = [ex.text for split in ("train", "valid", "test") for ex in read_file(folder / f"{split}.txt")]
        return texts, f"Twitter-2017 train+valid+test ({len(texts)} tweets)"
    from mner.demo import build_demo_corpus

    corpus = build_demo_corpus(work / "demo", seed=0)
    texts = [ex.text for split in ("train", "valid", "test") for ex in read_file(corpus / f"{split}.txt")]
    return texts, f"the demo corpus's texts ({len(texts)} tweets; Twitter-2017 not found at {folder})"


def build_inputs(work: Path, n: int) -> tuple[Path, Path, list[str], str]:
    """``tweets.jsonl`` (id, text, image relative to the image folder), the image folder, the texts."""
    from mner.demo import build_demo_corpus

    images = build_demo_corpus(work / "demo", seed=0).parent / "images"
    files = sorted(p.name for p in images.iterdir() if p.suffix == ".jpg")
    texts, source = benchmark_texts(work)
    texts = [texts[i % len(texts)] for i in range(n)]
    path = work / "tweets.jsonl"
    rng = random.Random(0)
    with open(path, "w", encoding="utf-8") as fh:
        for i, text in enumerate(texts):
            fh.write(json.dumps({"id": f"t{i}", "text": text, "image": files[rng.randrange(len(files))]}) + "\n")
    return path, images, texts, f"{source}, replicated to {n}; {len(files)} demo-corpus images (224x224 JPEG)"


def build_models(work: Path) -> tuple[Path, Path]:
    import torch

    from mner.encoders import ImageEncoderConfig, TextEncoderConfig
    from mner.models import MAFConfig, MAFModel

    out = []
    for name, no_image in (("maf", False), ("text-only", True)):
        folder = work / name
        if not (folder / "model.safetensors").is_file():
            torch.manual_seed(0)
            cfg = MAFConfig(labels=LABELS, text_encoder=TextEncoderConfig(name="minilm"), visual_view="pixels",
                            image_encoder=ImageEncoderConfig(name="efficientnet-lite0"), no_image=no_image)
            MAFModel(cfg).save_pretrained(folder)
        out.append(folder)
    return out[0], out[1]


# ---------------------------------------------------------------------------------- timing
def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return seconds, proc.stdout


def env_with(threads: int | None) -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PYTHONUNBUFFERED="1")
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(key, None)
        if threads:
            env[key] = str(threads)
    return env


def entity_keys(ents: list[dict]) -> list[tuple]:
    return [(e["type"], e["start"], e["end"]) for e in ents]


def same_entities(a: list[dict], b: list[dict]) -> float:
    """The share of rows (in order) whose entities have the same types and offsets."""
    if len(a) != len(b):
        return 0.0
    same = sum(entity_keys(x["entities"]) == entity_keys(y["entities"]) for x, y in zip(a, b))
    return round(same / max(1, len(a)), 4)


def build_exports(model: Path, kinds: list[str]) -> dict[str, Path]:
    """``mner export`` of ``model`` for each of ``kinds`` (``fp32``, ``int8``) beside it, made once per
    checkpoint (an export of other weights is made anew)."""
    from mner.backends import EXPORT_CONFIG
    from mner.backends.onnx_export import export_checkpoint, file_sha256

    want = file_sha256(model / "model.safetensors")
    out = {}
    for kind in kinds:
        folder = model.parent / f"{model.name}-onnx-{kind}"
        config = folder / EXPORT_CONFIG
        if not config.is_file() or json.loads(config.read_text())["source"]["weights_sha256"] != want:
            log(f"   exporting {model.name} ({kind}) ...")
            if folder.exists():
                shutil.rmtree(folder)
            export_checkpoint(model, folder, quantize=None if kind == "fp32" else kind)
        out[kind] = folder
    return out


def text_only_ratio(model: Path, texts: list[str], batch_size: int, repeats: int, threads: int,
                    exports: dict[str, Path] | None = None) -> dict:
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline
    from transformers.utils import logging as hf_logging

    from mner.encoders.offline import minilm_path
    from mner.pipeline import Pipeline

    torch.set_num_threads(threads)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    mner_pipe = Pipeline.from_pretrained(model, device="cpu", batch_size=batch_size)
    pipes = {"mner": mner_pipe, **{f"onnx-{kind}": Pipeline.from_pretrained(folder, batch_size=batch_size)
                                   for kind, folder in (exports or {}).items()}}
    path = str(minilm_path())
    torch.manual_seed(0)
    hf_model = AutoModelForTokenClassification.from_pretrained(path, num_labels=len(LABELS)).eval()
    hf_pipe = pipeline("token-classification", model=hf_model, tokenizer=AutoTokenizer.from_pretrained(path),
                       device=-1, aggregation_strategy="first")
    warm = texts[: 2 * batch_size]
    for pipe in pipes.values():
        pipe(warm)
    hf_pipe(warm, batch_size=batch_size)
    runs = {**{name: (lambda pipe=pipe: pipe(texts)) for name, pipe in pipes.items()},
            "hf": lambda: hf_pipe(texts, batch_size=batch_size)}
    times: dict[str, list[float]] = {name: [] for name in runs}
    outputs = {}
    for _ in range(repeats):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            outputs[name] = fn()
            times[name].append(time.perf_counter() - t0)
    ratio = statistics.median(h / m for h, m in zip(times["hf"], times["mner"]))
    out = {"mner_s": statistics.median(times["mner"]), "hf_s": statistics.median(times["hf"]), "ratio": ratio,
           "tweets": len(texts)}
    for name in pipes:
        if name != "mner":
            out[name] = {"s": statistics.median(times[name]),
                         "vs_hf": statistics.median(h / m for h, m in zip(times["hf"], times[name])),
                         "vs_torch": statistics.median(t / m for t, m in zip(times["mner"], times[name])),
                         "same_entities_as_torch": same_entities(
                             [{"entities": row} for row in outputs[name]],
                             [{"entities": row} for row in outputs["mner"]])}
    return out


def image_encoder_ratio(images: Path, batch_size: int, repeats: int) -> dict:
    """Fused (folded + channels-last) vs plain EfficientNet-Lite0 on the same decoded batches, one thread."""
    import torch
    from PIL import Image

    from mner.encoders import ImageEncoder, ImageEncoderConfig

    torch.set_num_threads(1)
    encoder = ImageEncoder(ImageEncoderConfig(name="efficientnet-lite0")).eval()
    transform = encoder.eval_transform()
    files = sorted(p for p in images.iterdir() if p.suffix == ".jpg")[: 4 * batch_size]
    batches = [torch.stack([transform(Image.open(f).convert("RGB")) for f in files[i:i + batch_size]])
               for i in range(0, len(files), batch_size)]
    times = {"fused": [], "plain": []}
    diff = 0.0
    with torch.no_grad():
        for turn in range(repeats + 1):  # the first turn warms up (and builds the folded copy)
            for name in ("plain", "fused"):
                encoder.fuse_for_inference(name == "fused")
                t0 = time.perf_counter()
                outs = [encoder(b).tokens for b in batches]
                if turn:
                    times[name].append(time.perf_counter() - t0)
                if name == "plain":
                    plain = outs
                else:
                    diff = max(diff, max(float((a - b).abs().max()) for a, b in zip(outs, plain)))
    ratio = statistics.median(p / f for p, f in zip(times["plain"], times["fused"]))
    return {"images": len(files), "plain_s": statistics.median(times["plain"]),
            "fused_s": statistics.median(times["fused"]), "ratio": ratio, "max_feature_diff": diff}


def machine() -> str:
    """The benchmarks' one machine description, plus the load when this run started."""
    from maf_benchmark import machine as described

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{described()}, load {load:.1f} at start"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tweets", type=int, default=10_000)
    p.add_argument("--text-tweets", type=int, default=None, help="tweets of the text-only comparison "
                   "(default: --tweets, at most 4000)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3, help="turns of the text-only comparison")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-tag")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads of the text-only comparison (default: every core)")
    p.add_argument("--skip", nargs="*", default=[],
                   choices=["predict", "ray", "workers-0", "predict-1-thread", "text-only", "image-encoder"],
                   help="leave out ratio 1's predict run, the Ray ratio, the text-only ratio or a context run "
                        "(each costs about one tag run)")
    p.add_argument("--tag-rounds", type=int, default=1,
                   help="rounds of the tag runs on the checkpoint and its exports (order reversed every other "
                        "round; medians)")
    p.add_argument("--onnx", nargs="*", default=[], choices=["fp32", "int8"],
                   help="5: mner tag on the model's ONNX exports of these kinds vs mner tag on the checkpoint, "
                        "and the text-only exports vs the HF pipeline")
    args = p.parse_args(argv)
    cores = os.cpu_count() or 1
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    log(f"machine: {machine()}")
    inputs, images, texts, data = build_inputs(work, args.tweets)
    maf, text_only = build_models(work)
    log(f"data: {data}")
    mner = [sys.executable, "-m", "mner"]
    figures: dict = {"tweets": args.tweets, "batch_size": args.batch_size, "cores": cores}

    # 1. tag --engine local vs predict --input, each with the whole machine
    from mner.batch import read_output

    def tag(model: Path, name: str) -> float:
        seconds, out = timed(mner + ["tag", str(model), str(inputs), "--image-root", str(images), "--out",
                                     str(work / name), "--overwrite", "--no-progress",
                                     "--batch-size", str(args.batch_size)], env_with(None))
        log(f"   {seconds:.1f} s ({json.loads(out.strip().splitlines()[-1])['tweets_per_second']} tweets/s "
            f"inside the run)")
        return seconds

    if "predict" not in args.skip:
        log("1. mner predict --input ...")
        t_predict, _ = timed(mner + ["predict", str(maf), "--input", str(inputs), "--image-dir", str(images),
                                     "--output", str(work / "predict.jsonl"), "--batch-size", str(args.batch_size)],
                             env_with(cores))
        log(f"   {t_predict:.1f} s")
    # 1 and 5: tag on the checkpoint and on its ONNX exports, in --tag-rounds rounds, the order reversed
    # in every other round (a load that comes and goes touches all); each figure is the median
    models = {"torch": maf, **{f"onnx_{kind}": folder for kind, folder in build_exports(maf, args.onnx).items()}}
    tag_times: dict[str, list[float]] = {name: [] for name in models}
    for r in range(args.tag_rounds):
        for name in (list(models) if r % 2 == 0 else list(models)[::-1]):
            log(f"{'1' if name == 'torch' else '5'}. mner tag on {name} (round {r + 1}) ...")
            tag_times[name].append(tag(models[name], f"tag-{name}"))
    t_local = statistics.median(tag_times["torch"])
    tagged = read_output(work / "tag-torch")
    figures.update(tag_local_s=round(t_local, 2), tag_rounds=args.tag_rounds)
    if "predict" not in args.skip:
        predicted = [json.loads(line) for line in (work / "predict.jsonl").read_text().splitlines()]
        figures.update(predict_s=round(t_predict, 2), tag_local_vs_predict=round(t_predict / t_local, 3),
                       tag_equals_predict=same_entities(tagged, predicted))
    for name in models:
        if name != "torch":
            t_onnx = statistics.median(tag_times[name])
            figures.update({f"tag_{name}_s": round(t_onnx, 2), f"tag_{name}_vs_tag_torch": round(t_local / t_onnx, 3),
                            f"tag_{name}_vs_tag_torch_per_round": [round(t / o, 3) for t, o in
                                                                  zip(tag_times["torch"], tag_times[name])],
                            f"tag_{name}_equals_torch": same_entities(read_output(work / f"tag-{name}"), tagged)})
    if "workers-0" not in args.skip:
        log("   (context) mner tag --workers 0: one process, torch on every core ...")
        t_single, _ = timed(mner + ["tag", str(maf), str(inputs), "--image-root", str(images), "--out",
                                    str(work / "tag-single"), "--overwrite", "--no-progress", "--workers", "0",
                                    "--batch-size", str(args.batch_size)], env_with(cores))
        log(f"   {t_single:.1f} s")
        figures.update(tag_workers_0_s=round(t_single, 2), tag_local_vs_workers_0=round(t_single / t_local, 3),
                       tag_workers_0_equals_local=same_entities(read_output(work / "tag-single"), tagged))
    if "predict-1-thread" not in args.skip:
        log("   (context) mner predict with one torch thread ...")
        t_predict_1, _ = timed(mner + ["predict", str(maf), "--input", str(inputs), "--image-dir", str(images),
                                       "--output", str(work / "predict-1.jsonl"), "--batch-size",
                                       str(args.batch_size)], env_with(1))
        log(f"   {t_predict_1:.1f} s")
        figures.update(predict_1_thread_s=round(t_predict_1, 2),
                       tag_local_vs_predict_1_thread=round(t_predict_1 / t_local, 3))

    # 3. ray with 2 actors vs local
    if "ray" not in args.skip:
        log("3. mner tag --engine ray --concurrency 2 ...")
        t_ray, out = timed(mner + ["tag", str(maf), str(inputs), "--image-root", str(images), "--out",
                                   str(work / "tag-ray"), "--overwrite", "--no-progress", "--engine", "ray",
                                   "--concurrency", "2", "--cpus-per-actor", "1", "--threads", "1",
                                   "--batch-size", str(args.batch_size)], env_with(None))
        log(f"   {t_ray:.1f} s")
        figures.update(tag_ray_2_actors_s=round(t_ray, 2), ray_2_actors_vs_local=round(t_local / t_ray, 3),
                       ray_equals_local=read_output(work / "tag-ray") == tagged)

    # 2. text-only mner vs the HF token-classification pipeline, same encoder and batch size
    if "text-only" not in args.skip:
        n_text = args.text_tweets or min(args.tweets, 4000)
        log(f"2. text-only mner vs HF pipeline on {n_text} texts, {args.repeats} turns ...")
        threads = args.threads or cores
        text = text_only_ratio(text_only, texts[:n_text], args.batch_size, args.repeats, threads=threads,
                               exports=build_exports(text_only, args.onnx))
        figures.update(text_tweets=n_text, text_threads=threads, mner_text_s=round(text["mner_s"], 2),
                       hf_pipeline_s=round(text["hf_s"], 2), mner_text_vs_hf_pipeline=round(text["ratio"], 3))
        for kind in args.onnx:
            row = text[f"onnx-{kind}"]
            figures.update({f"text_onnx_{kind}_s": round(row["s"], 2),
                            f"text_onnx_{kind}_vs_hf_pipeline": round(row["vs_hf"], 3),
                            f"text_onnx_{kind}_vs_torch": round(row["vs_torch"], 3),
                            f"text_onnx_{kind}_equals_torch": row["same_entities_as_torch"]})
    # 4. (context) the image encoder alone: fused vs plain
    if "image-encoder" not in args.skip:
        log("4. image encoder, fused vs plain ...")
        enc = image_encoder_ratio(images, args.batch_size, args.repeats)
        figures.update(image_encoder_fused_vs_plain=round(enc["ratio"], 3),
                       image_encoder_max_feature_diff=float(f"{enc['max_feature_diff']:.3g}"))
    figures["seconds"] = round(time.perf_counter() - started, 1)
    figures["machine"] = machine()
    figures["data"] = data
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
