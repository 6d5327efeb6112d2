"""Load test of ``mner serve``: N concurrent clients on loopback, a fixed number of requests
(a share of them with an image), bounded in count and time; the bare ``Pipeline`` on the same
inputs in the same run for the served/bare throughput ratio.

1. the bare pipeline (in this process, same torch threads as the server) tags every input in
   batches of ``--max-batch-size``, timed after a warm-up: the throughput the model itself allows
   (measured again after the served run; the ratio uses the mean of both);
2. ``mner serve`` starts as a subprocess on a free 127.0.0.1 port (loopback only);
3. ``--warmup`` uncounted requests under the same load; resident memory ``rss_start``;
4. ``--clients`` threads send the ``--requests`` requests (JSON, base64 images), each request as
   soon as its client got the previous answer, until all are sent or ``--max-seconds`` passed;
   resident memory after the first half (``rss_mid``) and at the end (``rss_end``);
5. the server is stopped (always, also on failure or Ctrl-C).

Inputs: tweet-like texts and images (JPEGs from ``--images DIR``, else synthetic 320x240
JPEGs), the same for both sides. The last line of the output is one JSON object: throughput,
p50/p95/p99 latency, errors, RSS at start and end, the bare throughput and the ratio.

    .venv/bin/python bench/serve_load.py /tmp/qs_after/best --clients 8 --requests 400

``--latency-vs OTHER`` (issue 26: single-tweet latency of ``mner serve`` on another backend): both
``checkpoint`` and ``OTHER`` (e.g. its ONNX export) are served at once, and one client sends each
request to one server and then to the other (the first server first on even requests, the other
on odd ones), so that a load that comes and goes touches both alike; p50/p90 per server and the
ratio of the p50s (OTHER / checkpoint), after ``--warmup`` uncounted requests to each.

    .venv/bin/python bench/serve_load.py runs/quickstart --latency-vs q-onnx --requests 200 --images DIR
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx
import psutil
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
TEXTS = [
    "Obama meets Merkel in Berlin to talk trade",
    "RT @nytimes: Apple buys Beats for $3 billion",
    "Handsome Rob after a fish dinner in Paris",
    "Lakers beat the Celtics 102 - 99 at Staples Center #NBA",
    "Going to see Taylor Swift at Madison Square Garden tonight !!",
    "Snow in New York again , Central Park is white",
    "Manchester United sign a new striker from Barcelona",
    "@BBCNews reports flooding in York and Leeds",
]


def log(msg: str) -> None:
    print(f"serve_load: {msg}", file=sys.stderr, flush=True)


def inputs(n: int, image_share: float, image_dir: Path | None) -> list[tuple[str, bytes | None]]:
    """``n`` (text, JPEG bytes or None) pairs, deterministic."""
    if image_dir is not None:
        files = sorted(image_dir.glob("*.jpg"))[:16]
        if not files:
            sys.exit(f"serve_load: no .jpg file in {image_dir}")
        jpegs = [f.read_bytes() for f in files]
    else:
        g = torch.Generator().manual_seed(0)
        jpegs = []
        for _ in range(8):
            small = torch.randint(0, 256, (24, 32, 3), generator=g, dtype=torch.uint8).numpy()
            buf = io.BytesIO()
            Image.fromarray(small).resize((320, 240), Image.BILINEAR).save(buf, "JPEG", quality=85)
            jpegs.append(buf.getvalue())
    every = max(1, round(1 / image_share)) if image_share > 0 else 0
    return [(f"{TEXTS[k % len(TEXTS)]} #{k}", jpegs[k % len(jpegs)] if every and k % every == 0 else None)
            for k in range(n)]


def bare_throughput(checkpoint: Path, items, batch_size: int, threads: int) -> float:
    from mner.pipeline import Pipeline

    torch.set_num_threads(threads)
    pipe = Pipeline.from_pretrained(checkpoint, device="cpu", batch_size=batch_size)
    def image(raw):  # decoded per call, as the server does
        return None if raw is None else Image.open(io.BytesIO(raw)).convert("RGB")

    pipe([t for t, _ in items[:batch_size]], image=[image(r) for _, r in items[:batch_size]])  # warm-up
    t0 = time.perf_counter()
    for s in range(0, len(items), batch_size):
        chunk = items[s:s + batch_size]
        pipe([t for t, _ in chunk], image=[image(r) for _, r in chunk])
    return len(items) / (time.perf_counter() - t0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, round(q / 100 * (len(xs) - 1))))
    return xs[k]


def load(base: str, bodies: list[bytes], clients: int, stop_at: float) -> tuple[list[float], dict[str, int]]:
    """Send every body from ``clients`` threads (each waits for its answer before the next),
    until all are sent or ``stop_at``: latencies (ms) of the 200s, counts of the others."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    next_k, lock = [0], threading.Lock()

    def client():
        with httpx.Client(base_url=base, timeout=60, headers={"content-type": "application/json"}) as c:
            while True:
                with lock:
                    k = next_k[0]
                    if k >= len(bodies) or time.time() > stop_at:
                        return
                    next_k[0] += 1
                t0 = time.perf_counter()
                try:
                    r = c.post("/predict", content=bodies[k])
                    ok, why = r.status_code == 200, str(r.status_code)
                except httpx.HTTPError as err:
                    ok, why = False, type(err).__name__
                dt = (time.perf_counter() - t0) * 1000
                with lock:
                    if ok:
                        latencies.append(dt)
                    else:
                        errors[why] = errors.get(why, 0) + 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors


@dataclass
class Server:
    """A running ``mner serve``: its process and base URL."""

    process: subprocess.Popen
    base: str


def request_bodies(items) -> list[bytes]:
    """The ``/predict`` JSON body of each (text, image bytes or None)."""
    return [json.dumps({"text": t, "image": None if r is None else base64.b64encode(r).decode()}).encode()
            for t, r in items]


@contextlib.contextmanager
def serving(checkpoint: Path, args, env: dict, warm_items) -> Iterator[Server]:
    """``mner serve checkpoint`` on a free loopback port, ready and warmed up with ``warm_items``;
    yields it (:class:`Server`); stopped on exit (also on failure or Ctrl-C)."""
    port = free_port()
    cmd = [sys.executable, "-m", "mner", "serve", str(checkpoint), "--host", "127.0.0.1", "--port", str(port),
           "--threads", str(args.threads), "--device", "cpu", "--max-batch-size", str(args.max_batch_size),
           "--max-wait-ms", str(args.max_wait_ms), "--max-queue", str(max(256, 2 * args.clients)),
           "--log-level", "warning"]
    server = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        with httpx.Client(base_url=base, timeout=5) as c:
            while True:
                if server.poll() is not None:
                    sys.exit(f"serve_load: the server exited ({server.returncode}): {server.stderr.read()[-2000:]}")
                try:
                    if c.get("/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.time() > deadline:
                    sys.exit("serve_load: the server was not ready within 120 s")
                time.sleep(0.2)
            for body in request_bodies(warm_items):  # warm-up, as the bare side had
                c.post("/predict", content=body, headers={"content-type": "application/json"})
        yield Server(server, base)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()


def latency_pair(args, items, env) -> dict:
    """Single-request latency of two servers, requests alternating between them (``--latency-vs``)."""
    bodies = request_bodies(items)
    names = {"checkpoint": args.checkpoint, "other": args.latency_vs}
    times: dict[str, list[float]] = {name: [] for name in names}
    answers: dict[str, list] = {name: [] for name in names}
    with serving(args.checkpoint, args, env, items[:args.max_batch_size]) as a, \
            serving(args.latency_vs, args, env, items[:args.max_batch_size]) as b:
        clients = {"checkpoint": httpx.Client(base_url=a.base, timeout=60, headers={"content-type": "application/json"}),
                   "other": httpx.Client(base_url=b.base, timeout=60, headers={"content-type": "application/json"})}
        warm = min(args.warmup, len(bodies))
        log(f"latency: {warm} uncounted, then {len(bodies)} single requests to each server, alternating")
        for k, body in enumerate(bodies[:warm] + bodies):
            for name in (("checkpoint", "other") if k % 2 == 0 else ("other", "checkpoint")):
                t0 = time.perf_counter()
                r = clients[name].post("/predict", content=body)
                dt = (time.perf_counter() - t0) * 1000
                r.raise_for_status()
                if k >= warm:
                    times[name].append(dt)
                    answers[name].append([(e["type"], e["start"], e["end"]) for e in r.json()["entities"]])
        models = {name: c.get("/model").json() for name, c in clients.items()}
        for c in clients.values():
            c.close()
    result = {"requests": len(bodies), "with_image": sum(r is not None for _, r in items), "threads": args.threads}
    for name in names:
        result[name] = {"path": str(names[name]), "backend": models[name].get("backend"),
                        "p50_ms": round(percentile(times[name], 50), 1), "p90_ms": round(percentile(times[name], 90), 1)}
    result["p50_other_over_checkpoint"] = round(result["other"]["p50_ms"] / result["checkpoint"]["p50_ms"], 3)
    result["same_entities"] = round(sum(x == y for x, y in zip(answers["checkpoint"], answers["other"]))
                                    / max(1, len(bodies)), 4)
    result["machine"] = (f"{platform.machine()} {psutil.cpu_count()} cpu, {platform.python_implementation()} "
                         f"{platform.python_version()}, torch {torch.__version__}, load {os.getloadavg()[0]:.1f}")
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--image-share", type=float, default=0.5, help="share of requests with an image")
    ap.add_argument("--images", type=Path, default=None, help="folder of .jpg files (default: synthetic)")
    ap.add_argument("--max-seconds", type=float, default=300, help="stop sending after this long")
    ap.add_argument("--warmup", type=int, default=200, help="uncounted requests before the run")
    ap.add_argument("--max-batch-size", type=int, default=16)
    ap.add_argument("--max-wait-ms", type=float, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the server and the bare pipeline")
    ap.add_argument("--latency-vs", type=Path, default=None, metavar="OTHER",
                    help="instead: single-request latency of serving CHECKPOINT and OTHER, requests alternating")
    args = ap.parse_args(argv)
    if args.requests > 100_000 or args.clients > 256:
        sys.exit("serve_load: at most 100,000 requests and 256 clients")
    items = inputs(args.requests, args.image_share, args.images)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false")

    if args.latency_vs is not None:
        print(json.dumps(latency_pair(args, items, env)), flush=True)
        return 0
    log(f"bare pipeline on {len(items)} inputs (batches of {args.max_batch_size}, {args.threads} thread(s))")
    bare_before = bare_throughput(args.checkpoint, items, args.max_batch_size, args.threads)
    log(f"bare: {bare_before:.1f} items/s")

    with serving(args.checkpoint, args, env, items[:args.max_batch_size]) as server:
        base = server.base
        proc = psutil.Process(server.process.pid)
        bodies = request_bodies(items)
        # warm-up under the same load (allocator pools, every batch size), not counted
        warm = min(len(bodies), args.warmup)
        log(f"warm-up: {warm} requests from {args.clients} clients")
        load(base, bodies[:warm], args.clients, time.time() + args.max_seconds)
        rss_start = proc.memory_info().rss / 2**20
        log(f"{args.clients} clients, {len(bodies)} requests ({sum(r is not None for _, r in items)} with an image)")
        t0 = time.perf_counter()
        mid = len(bodies) // 2
        lat1, err1 = load(base, bodies[:mid], args.clients, time.time() + args.max_seconds)
        rss_mid = proc.memory_info().rss / 2**20
        lat2, err2 = load(base, bodies[mid:], args.clients, time.time() + args.max_seconds - (time.perf_counter() - t0))
        seconds = time.perf_counter() - t0
        rss_end = proc.memory_info().rss / 2**20
        with httpx.Client(base_url=base, timeout=5) as c:
            batching = c.get("/model").json().get("batching", {})
        latencies = lat1 + lat2
        errors = {k: err1.get(k, 0) + err2.get(k, 0) for k in set(err1) | set(err2)}
    # the bare pipeline again: a load on a shared machine that comes and goes hits both sides
    bare_after = bare_throughput(args.checkpoint, items, args.max_batch_size, args.threads)
    bare = (bare_before + bare_after) / 2
    log(f"bare again: {bare_after:.1f} items/s")
    sent = len(latencies) + sum(errors.values())
    served = len(latencies) / seconds
    result = {
        "requests": sent, "clients": args.clients, "with_image": sum(r is not None for _, r in items[:sent]),
        "seconds": round(seconds, 2), "throughput_rps": round(served, 2),
        "p50_ms": round(percentile(latencies, 50), 1), "p95_ms": round(percentile(latencies, 95), 1),
        "p99_ms": round(percentile(latencies, 99), 1), "errors": sum(errors.values()), "error_kinds": errors,
        "rss_start_mb": round(rss_start, 1), "rss_mid_mb": round(rss_mid, 1), "rss_end_mb": round(rss_end, 1),
        "bare_rps": round(bare, 2), "bare_rps_before_after": [round(bare_before, 2), round(bare_after, 2)], "served_over_bare": round(served / bare, 3),
        "served_batches": batching, "max_batch_size": args.max_batch_size, "max_wait_ms": args.max_wait_ms, "threads": args.threads,
        "machine": f"{platform.machine()} {psutil.cpu_count()} cpu, {platform.python_implementation()} "
                   f"{platform.python_version()}, torch {torch.__version__}",
    }
    print(json.dumps(result), flush=True)
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
