"""``mner serve CHECKPOINT``: the HTTP service and web page (:mod:`mner.serve`) under uvicorn.

Binds to loopback (127.0.0.1) unless ``--host`` says otherwise; the first log line says where
it listens and whether other machines can reach it. Needs the ``serve`` extra
(``pip install 'mner[serve]'``)."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from mner.errors import UsageError

MIB = 1024 * 1024
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(sub: argparse._SubParsersAction) -> None:
    from mner.serve.limits import ServeConfig

    d = ServeConfig()
    p = sub.add_parser("serve", help="serve a trained model over HTTP, with a web page",
                       description="Serve the model in CHECKPOINT: POST /predict (JSON, base64 image, batch "
                                   "or multipart), GET /health, /ready, /model, the web page at / and the "
                                   "OpenAPI schema at /docs. Loopback only unless --host says otherwise.")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--fewshot", type=Path, default=None, metavar="CHECKPOINT",
                   help="a few-shot model: the web page's second tab defines new types with it")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="processes, each loading the model once (default 1)")
    p.add_argument("--threads", type=int, default=None, help="torch threads per worker")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--max-batch-size", type=int, default=d.max_batch_size, help="most items per model batch")
    p.add_argument("--max-wait-ms", type=float, default=d.max_wait_ms, help="longest wait for a batch to fill")
    p.add_argument("--max-queue", type=int, default=d.max_queue, help="most waiting items (503 beyond)")
    p.add_argument("--timeout", type=float, default=d.timeout_s, help="seconds a request may wait (504 beyond)")
    p.add_argument("--max-body-mb", type=float, default=d.max_body_bytes / MIB, help="request body limit (413)")
    p.add_argument("--max-image-mb", type=float, default=d.max_image_bytes / MIB, help="image file limit (413)")
    p.add_argument("--max-image-pixels", type=int, default=d.max_image_pixels, help="width x height limit (422)")
    p.add_argument("--max-text-chars", type=int, default=d.max_text_chars, help="text length limit (422)")
    p.add_argument("--max-batch-items", type=int, default=d.max_batch_items, help="items per batch request (422)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.set_defaults(func=cmd_serve)


def config_from_args(args) -> "ServeConfig":  # noqa: F821
    from mner.serve.limits import ServeConfig

    try:
        return ServeConfig(max_body_bytes=int(args.max_body_mb * MIB), max_image_bytes=int(args.max_image_mb * MIB),
                           max_image_pixels=args.max_image_pixels, max_text_chars=args.max_text_chars,
                           max_batch_items=args.max_batch_items, max_batch_size=args.max_batch_size,
                           max_wait_ms=args.max_wait_ms, max_queue=args.max_queue, timeout_s=args.timeout)
    except ValueError as err:
        raise UsageError(f"mner serve: {err}") from None


def cmd_serve(args) -> int:
    try:
        import uvicorn  # noqa: F401
        import fastapi  # noqa: F401
    except ImportError as err:
        raise UsageError(f"mner serve needs the serve extra ({err.name} is missing): "
                         "pip install 'mner[serve]' (scripts/setup.sh installs it)") from None
    from mner.models import MODELS
    from mner.models.checkpoint import read_config, resolve_model_dir
    from mner.models.tagger import CRFTagger

    args.checkpoint = resolve_model_dir(args.checkpoint)        # a model folder or a run's best/
    model_type = read_config(args.checkpoint).get("model_type")
    cls = MODELS.get(model_type)
    if cls is not None and not issubclass(cls, CRFTagger):
        raise UsageError(f"{args.checkpoint}: a {model_type!r} model tags the types of a support set; "
                         "mner serve serves models with a label set of their own (e.g. maf) for now")
    if args.workers < 1:
        raise UsageError("--workers must be 1 or more")
    if args.fewshot is not None:
        args.fewshot = resolve_model_dir(args.fewshot)
        fs_type = read_config(args.fewshot).get("model_type")
        if fs_type in MODELS and issubclass(MODELS[fs_type], CRFTagger):
            raise UsageError(f"--fewshot {args.fewshot}: a {fs_type!r} model has a fixed label set; give a "
                             "few-shot model (mousing, protobert, nnshot, proto-maf)")
    cfg = config_from_args(args)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    log = logging.getLogger("mner.serve")
    scope = ("loopback only: other machines cannot reach it; --host 0.0.0.0 to expose it"
             if args.host in LOOPBACK else f"bound to {args.host}: reachable from other machines")
    log.info("mner serve: http://%s:%d (%s)", args.host if ":" not in args.host else f"[{args.host}]",
             args.port, scope)
    import uvicorn

    kwargs = dict(host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=5)
    if args.workers == 1:
        from mner.serve.app import create_app

        app = create_app(args.checkpoint, config=cfg, device=args.device, threads=args.threads,
                         fewshot=args.fewshot)
        uvicorn.run(app, **kwargs)
    else:  # each worker process builds its app from the environment (uvicorn imports the factory)
        os.environ["MNER_SERVE_SPEC"] = json.dumps({"checkpoint": str(args.checkpoint), "config": cfg.public(),
                                                    "device": args.device, "threads": args.threads,
                                                    "fewshot": str(args.fewshot) if args.fewshot else None})
        uvicorn.run("mner.serve.app:app_from_env", factory=True, workers=args.workers, **kwargs)
    return 0


