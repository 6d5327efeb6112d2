"""``mner serve CHECKPOINT``: the HTTP service and web page (:mod:`mner.serve`) under uvicorn.

Binds to loopback (127.0.0.1) unless ``--host`` says otherwise; the first log line says where
it listens and whether other machines can reach it. Every numeric option is range-checked by the
argument parser (NaN and infinity refused), and the limits together by
:class:`~mner.serve.limits.ServeConfig`, so a bad setting stops it at start with one line. With
one worker (the default) the port opens before the model loads: ``/health`` answers during the
load, ``/ready`` says 503 until the model is warm, and a model that fails to load ends the
process with status 1. Needs the ``serve`` extra
(``pip install 'mner[serve]'``)."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
from pathlib import Path

from mner.backends import BACKENDS
from mner.errors import UsageError

MIB = 1024 * 1024
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _integer(low: int, high: int | None = None):
    """An argparse type: an integer in ``[low, high]`` (a one-line refusal otherwise)."""
    span = f"from {low:,} to {high:,}" if high is not None else f"{low:,} or more"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer {span}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be an integer {span}, got {value:,}")
        return value

    return parse


def _real(low: float, high: float, *, inclusive: bool):
    """An argparse type: a finite number above ``low`` (or equal to it when ``inclusive``) and
    at most ``high``; NaN and infinity are refused (``float()`` accepts both)."""
    span = f"{'at least' if inclusive else 'more than'} {low:g} and at most {high:,g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number {span}, got {text!r}") from None
        if not math.isfinite(value) or value < low or (value == low and not inclusive) or value > high:
            raise argparse.ArgumentTypeError(f"must be a finite number {span}, got {text!r}")
        return value

    return parse


DAY, TIB_IN_MIB = 86_400.0, 1024.0 * 1024.0
SECONDS, MEBIBYTES, COUNT = _real(0, DAY, inclusive=False), _real(0, TIB_IN_MIB, inclusive=False), _integer(1)


def register(sub: argparse._SubParsersAction) -> None:
    from mner.serve.limits import ServeConfig

    d = ServeConfig()
    p = sub.add_parser("serve", help="serve a trained model over HTTP, with a web page",
                       description="Serve the model in CHECKPOINT (a few-shot one with --support FILE): POST /predict (JSON, base64 image, batch "
                                   "or multipart), GET /health, /ready, /model, /metrics (Prometheus), the web page at / "
                                   "and the OpenAPI schema at /docs. Loopback only unless --host says otherwise. "
                                   "The port opens at once; the model loads and warms after it (/ready says when).")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--backend", default=None, choices=BACKENDS,
                   help="torch (a checkpoint) or onnxruntime (a folder written by mner export, run by ONNX Runtime "
                        "on the CPU; no match probability or explanations yet); default: detected from CHECKPOINT")
    p.add_argument("--fewshot", type=Path, default=None, metavar="CHECKPOINT",
                   help="a few-shot model: the web page's second tab defines new types with it")
    from mner.cli.fewshot import _add_decoding, add_support

    add_support(p, "served bound to it, POST /predict and the page tag its types, and the New types tab uses the "
                "same model", "its own folder")
    _add_decoding(p.add_argument_group("few-shot checkpoints (with --support): decoding"))
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=_integer(1, 65535), default=8000, help="TCP port, 1 to 65535 (default 8000)")
    p.add_argument("--workers", type=_integer(1, 1024), default=1, help="processes, each loading the model once (default 1)")
    p.add_argument("--threads", type=_integer(1, 1024), default=None, help="torch threads per worker")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--max-batch-size", type=COUNT, default=d.max_batch_size, help="most items per model batch")
    p.add_argument("--max-wait-ms", type=_real(0, 60_000, inclusive=True), default=d.max_wait_ms,
                   help="longest wait for a batch to fill, in milliseconds (0 to 60000, shorter than --timeout)")
    p.add_argument("--max-queue", type=COUNT, default=d.max_queue,
                   help="most waiting items (503 beyond); at least --max-batch-items")
    p.add_argument("--timeout", type=SECONDS, default=d.timeout_s, help="seconds a request may wait (504 beyond)")
    p.add_argument("--body-timeout", type=SECONDS, default=d.body_timeout_s,
                   help="seconds a request's body may take to arrive (408 and the connection closed beyond)")
    p.add_argument("--max-body-mb", type=MEBIBYTES, default=d.max_body_bytes / MIB, help="request body limit (413)")
    p.add_argument("--max-image-mb", type=MEBIBYTES, default=d.max_image_bytes / MIB, help="image file limit (413)")
    p.add_argument("--max-image-pixels", type=COUNT, default=d.max_image_pixels, help="width x height limit (422)")
    p.add_argument("--max-text-chars", type=COUNT, default=d.max_text_chars, help="text length limit (422)")
    p.add_argument("--max-batch-items", type=COUNT, default=d.max_batch_items, help="items per batch request (422)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.set_defaults(func=cmd_serve)


def config_from_args(args) -> "ServeConfig":  # noqa: F821
    from mner.serve.limits import ServeConfig

    try:
        return ServeConfig(max_body_bytes=int(args.max_body_mb * MIB), max_image_bytes=int(args.max_image_mb * MIB),
                           max_image_pixels=args.max_image_pixels, max_text_chars=args.max_text_chars,
                           max_batch_items=args.max_batch_items, max_batch_size=args.max_batch_size,
                           max_wait_ms=args.max_wait_ms, max_queue=args.max_queue, timeout_s=args.timeout,
                           body_timeout_s=args.body_timeout)
    except ValueError as err:
        raise UsageError(f"mner serve: {err}") from None


def cmd_serve(args) -> int:
    try:
        import uvicorn  # noqa: F401
        import fastapi  # noqa: F401
    except ImportError as err:
        raise UsageError(f"mner serve needs the serve extra ({err.name} is missing): "
                         "pip install 'mner[serve]' (scripts/setup.sh installs it)") from None
    from mner.backends import resolve_backend
    from mner.models import MODELS
    from mner.models.checkpoint import read_config, resolve_model_dir
    from mner.models.tagger import CRFTagger
    from mner.tasks import checkpoint_task

    # an export folder (mner export) runs on ONNX Runtime: the pipeline detects it (a wrong --backend: one line)
    if resolve_backend(args.checkpoint, args.backend) == "torch":
        args.checkpoint = resolve_model_dir(args.checkpoint)        # a model folder or a run's best/
    elif args.device not in (None, "cpu"):
        raise UsageError(f"--device {args.device}: the onnxruntime backend (an export folder) runs on the CPU")
    task, model_type = checkpoint_task(args.checkpoint)
    task.check_support(args.checkpoint, model_type, args.support)   # a few-shot model serves a support set
    if task.needs_support:
        if args.fewshot is not None:
            raise UsageError(f"--fewshot {args.fewshot}: {args.checkpoint} is itself a few-shot model, and it "
                             "answers the New types tab (POST /fewshot/predict): leave --fewshot out")
        from mner.fewshot.pipeline import read_support

        read_support(args.support, args.support_format)   # a malformed support file: one line, before listening
        args.support = args.support.resolve()
    if args.workers < 1:
        raise UsageError("--workers must be 1 or more")
    if args.fewshot is not None:
        args.fewshot = resolve_model_dir(args.fewshot)
        fs_type = read_config(args.fewshot).get("model_type")
        if fs_type in MODELS and issubclass(MODELS[fs_type], CRFTagger):
            raise UsageError(f"--fewshot {args.fewshot}: a {fs_type!r} model has a fixed label set; give a "
                             "few-shot model (mousing, protobert, nnshot, proto-maf)")
    from mner.fewshot.decoding import DECODING_OPTIONS, given_decoding

    decoding = given_decoding({name: getattr(args, name) for name in DECODING_OPTIONS})
    if decoding and args.support is None:
        name = next(iter(decoding))
        raise UsageError(f"--{name.replace('_', '-')}: a decoding option of a few-shot CHECKPOINT served with --support; "
                         f"{args.checkpoint} is a model with a fixed set of entity types: leave it out")
    cfg = config_from_args(args)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    log = logging.getLogger("mner.serve")
    scope = ("loopback only: other machines cannot reach it; --host 0.0.0.0 to expose it"
             if args.host in LOOPBACK else f"bound to {args.host}: reachable from other machines")
    log.info("mner serve: http://%s:%d (%s)", args.host if ":" not in args.host else f"[{args.host}]",
             args.port, scope)
    import uvicorn

    kwargs = dict(host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=5)
    if args.workers == 1:  # listen first: the model loads and warms after the port opens (/ready says when)
        from mner.serve.app import create_app

        server: list = []

        def stop():  # the model failed to load: the log says why; end the process, non-zero
            server[0].should_exit = True

        app = create_app(args.checkpoint, config=cfg, device=args.device, threads=args.threads,
                         fewshot=args.fewshot, load_in_background=True, on_load_failed=stop, support=args.support,
                         support_format=args.support_format, decoding=decoding)
        server.append(uvicorn.Server(uvicorn.Config(app, **kwargs)))
        server[0].run()
        if app.state.mner.load_error is not None:
            return 1
    else:  # each worker process builds its app from the environment (uvicorn imports the factory)
        os.environ["MNER_SERVE_SPEC"] = json.dumps({"checkpoint": str(args.checkpoint), "config": cfg.public(),
                                                    "device": args.device, "threads": args.threads,
                                                    "fewshot": str(args.fewshot) if args.fewshot else None,
                                                    "support": str(args.support) if args.support else None,
                                                    "support_format": args.support_format,
                                                    "decoding": decoding})
        uvicorn.run("mner.serve.app:app_from_env", factory=True, workers=args.workers, **kwargs)
    return 0


