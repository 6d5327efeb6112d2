"""The HTTP service of ``mner serve``: a FastAPI app around one :class:`~mner.pipeline.Pipeline`.

Routes: ``POST /predict`` (JSON ``{"text", "image" (base64), "caption", "explain"}``, a batch
``{"items": [...]}``, or a multipart form with ``text`` and an ``image`` file), ``GET /health``
(alive), ``GET /ready`` (model loaded and warm), ``GET /model`` (labels, encoders, views,
version, limits, the model card of :mod:`.card`), ``GET /metrics`` (Prometheus, :mod:`.metrics`),
``GET /examples`` (the page's examples, their images at ``/examples/{k}/image``), the few-shot
side (``POST /fewshot/predict``, ``/fewshot/export``, ``/fewshot/import``: :mod:`.fewshot`), the
web page at ``/`` and the OpenAPI schema at ``/openapi.json`` with Swagger UI at ``/docs`` (its
assets served from the installed ``fastapi-offline`` package: no CDN).

Offsets (``start``, ``end`` of an entity or a span) count Unicode code points, as Python's ``str``
indexes; JavaScript's strings count UTF-16 units, so a page converts (an emoji outside the Basic
Multilingual Plane is one code point and two UTF-16 units).

The model is loaded once, at start-up, and warmed by one prediction before ``/ready`` says so:
in the app's lifespan (before the port opens), or with ``load_in_background=True`` (``mner
serve``) after it, so ``/health`` answers during the load and ``/ready`` says 503 until warm.
Requests are gathered into model batches by :class:`.MicroBatcher`. Every refusal is JSON
``{"error", "status", "message"}`` (see :mod:`mner.serve.limits`); an unexpected failure
answers 500 with a request id that the server's log repeats with the traceback, which never
reaches the client.

A batch ``{"items": [...]}`` is answered per item: 200 with one result per item, in order, each
carrying its ``index``; an item that fails (invalid fields, a text or image refused, the model
refusing it, or a bug while tagging it) gets an error object ``{"index", "error", "status",
"message"}`` in its place (the body a single request would get, its ``status`` the one that
request would answer) and ``"errors"`` counts them; the other items are tagged as usual. Only
what concerns the request as a whole refuses it all (a body that is not JSON or too large,
``items`` not a list, empty or too long, the queue full, the model not ready, the timeout).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import json
import logging
import time
import uuid
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from starlette.exceptions import HTTPException as StarletteHTTPException

from mner import __version__
from mner.errors import is_user_error
from mner.serve.batching import MicroBatcher, QueueFull
from mner.serve.card import examples as packaged_examples
from mner.serve.card import model_card
from mner.serve.fewshot import (FewShotRequest, SupportSet, fewshot_info, read_support_jsonl, support_examples,
                                support_jsonl)
from mner.serve.limits import ServeConfig, ServeError, check_text, decode_base64, open_image
from mner.serve.metrics import CONTENT_TYPE, Metrics, MetricsMiddleware
from mner.explain.predictor import InferenceItem, Predictor

__all__ = ["InferenceItem", "Predictor", "create_app"]

log = logging.getLogger("mner.serve")

STATIC = resources.files("mner.serve") / "static"
#: Swagger UI's files (JavaScript, CSS), shipped by the fastapi-offline package: /docs needs no CDN
SWAGGER = resources.files("fastapi_offline") / "static"

#: what an offset counts, said in the schema and the docs
OFFSET_UNIT = ("Unicode code points (Python str indices), not UTF-16 units: in JavaScript convert, "
               "e.g. Array.from(text.slice(0, i)).length")


# ================================================================================ schemas
class PredictRequest(BaseModel):
    """One tweet: its text, an optional base64 image and caption, and whether to explain."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(description="the tweet (entity offsets count its Unicode code points)")
    image: str | None = Field(None, description="the image file's bytes, base64 (a data: URL prefix is allowed)")
    caption: str | None = Field(None, description="an image caption (models with a caption view)")
    explain: bool = Field(False, description="add each entity's attention over the image regions / caption words")


class BatchRequest(BaseModel):
    """The envelope of a batch: each item is validated on its own (:class:`PredictRequest`), so
    one bad item fails alone."""

    model_config = ConfigDict(extra="forbid")
    items: list[Any] = Field(description="the tweets, each a PredictRequest object")


class Entity(BaseModel):
    text: str
    type: str
    start: int = Field(description="offset of the entity's first character, in " + OFFSET_UNIT)
    end: int = Field(description="offset after the entity's last character (exclusive), in " + OFFSET_UNIT)
    token_start: int
    token_end: int
    confidence: float = Field(description="smallest CRF marginal of the span's tags")
    explanation: dict[str, Any] | None = None


class PredictResponse(BaseModel):
    entities: list[Entity]
    match_probability: float | None = Field(description="MAF's image-text match probability (None: no image "
                                            "view or no matching module)")
    time_ms: float


class ErrorBody(BaseModel):
    error: str = Field(description="a short code word (bad_base64, text_too_long, ...)")
    status: int = Field(description="the HTTP status")
    message: str = Field(description="what was wrong, where, and what to do")


class BatchItemResult(PredictResponse):
    index: int = Field(description="the item's position in items")


class BatchItemError(ErrorBody):
    """An item of a batch that failed: the body a single request would get, with the item's
    index; ``status`` is the status that request would answer (the batch itself answers 200)."""

    index: int = Field(description="the item's position in items")


class BatchResponse(BaseModel):
    results: list[BatchItemResult | BatchItemError] = Field(
        description="one per item, in order: the item's entities, or an error object (it has \"error\")")
    errors: int = Field(description="how many items failed (their results are error objects)")
    time_ms: float


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None):
    return JSONResponse({"error": code, "status": status, "message": message}, status_code=status, headers=headers)


# ================================================================================ body limit
class BodyLimit:
    """ASGI middleware: a body larger than ``max_bytes`` is refused with 413 while it is read
    (from ``Content-Length`` at once, else as the chunks arrive), before anything parses it; a
    body that has not arrived whole within ``timeout_s`` is refused with 408 and the connection
    is closed (a client that sends half a body and waits holds nothing for long)."""

    def __init__(self, app, max_bytes: int, timeout_s: float = 60.0):
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await self._refuse(int(length), scope, receive, send)
        chunks, size = [], 0
        try:
            async with asyncio.timeout(self.timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_bytes:
                        break
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            expected = f" of {int(length):,}" if length is not None and length.isdigit() else ""
            response = _error(408, "body_timeout",
                              f"the request body did not arrive within {self.timeout_s:g} s ({size:,}{expected} "
                              "bytes came); send the request again, with a smaller image on a slow connection",
                              headers={"Connection": "close"})
            return await response(scope, receive, send)
        if size > self.max_bytes:
            return await self._refuse(size, scope, receive, send, more=True)
        body, sent = b"".join(chunks), [False]

        async def replay():
            if not sent[0]:
                sent[0] = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, size, scope, receive, send, more=False):
        mib = 1024 * 1024
        at_least = "at least " if more else ""
        response = _error(413, "body_too_large",
                          f"request body is {at_least}{size / mib:.1f} MiB, more than the limit of "
                          f"{self.max_bytes / mib:.1f} MiB; send a smaller image or fewer items, or "
                          "start the server with a larger --max-body-mb",
                          headers={"Connection": "close"})
        await response(scope, receive, send)


# ================================================================================ app
def create_app(checkpoint: str | Path | None = None, *, pipeline=None, config: ServeConfig | None = None,
               device: str | None = None, threads: int | None = None, fewshot: str | Path | None = None,
               fewshot_model=None, load_in_background: bool = False, on_load_failed=None,
               card_from: str | Path | None = None, support: str | Path | None = None,
               support_format: str = "auto", decoding: dict | None = None):
    """The FastAPI app serving ``pipeline`` (or the model in ``checkpoint``, loaded at start-up),
    and, given ``fewshot`` (a few-shot checkpoint, loaded at start-up) or ``fewshot_model``, the
    few-shot side (``POST /fewshot/predict``, :mod:`mner.serve.fewshot`).

    With ``load_in_background`` the start-up returns at once and the model loads and warms in a
    task of the event loop: the server listens meanwhile (``/health`` answers, ``/ready`` and
    ``/predict`` say 503 ``not_ready``). A load that fails is logged with its traceback, ``/ready``
    answers 503 ``load_failed`` with the reason, and ``on_load_failed()`` is called (``mner
    serve`` stops the server with it).

    The model card (``GET /model``'s ``card``, :func:`mner.serve.card.model_card`) reads the
    training run of ``checkpoint``, or of ``card_from`` for a ``pipeline`` served from memory.

    A few-shot ``checkpoint`` (the episodic task, :mod:`mner.tasks`) is served bound to the support
    set ``support`` (a file; its relative image references inside its folder): ``POST /predict``
    and the page tag the support's types, and the same model answers ``POST /fewshot/predict``
    (the page's New types tab) with the support set each request sends. ``decoding``: its few-shot
    decoding options (:mod:`mner.fewshot.decoding`).

    Run it with uvicorn (``mner serve``) or test it with ``fastapi.testclient.TestClient`` used as
    a context manager (so the start-up runs)."""
    if (checkpoint is None) == (pipeline is None):
        raise ValueError("create_app: give a checkpoint or a pipeline (one of them)")
    cfg = config or ServeConfig()

    class State:
        predictor: Predictor | None = None
        batcher: MicroBatcher | None = None
        decoder: concurrent.futures.ThreadPoolExecutor | None = None
        fewshot = fewshot_model
        fewshot_runner: concurrent.futures.ThreadPoolExecutor | None = None
        ready = False
        load_error: str | None = None
        card: dict | None = None
        examples: list[dict] | None = None
        examples_lock = asyncio.Lock()

    state = State()
    metrics = Metrics(queue_depth=lambda: state.batcher.waiting if state.batcher is not None else 0,
                      ready=lambda: 1.0 if state.ready else 0.0)

    async def load_and_warm():
        import torch

        if threads:
            torch.set_num_threads(threads)
        pipe = pipeline
        if pipe is None:
            from mner.pipeline import Pipeline

            t0 = time.perf_counter()
            pipe = await asyncio.to_thread(
                functools.partial(Pipeline.from_pretrained, checkpoint, device, cfg.max_batch_size, support=support,
                                  support_format=support_format,
                                  support_images=Path(support).parent if support is not None else None))
            log.info("model %s loaded in %.1f s", checkpoint, time.perf_counter() - t0)
        if getattr(pipe, "task", "supervised") == "episodic":
            from mner.fewshot.decoding import apply_decoding

            apply_decoding(pipe.model, decoding or {})
            log.info("support set %s: %d tweets, types %s", support or "(given)", len(pipe.support), ", ".join(pipe.types))
            if state.fewshot is None and fewshot is None:  # the New types tab runs the same model
                state.fewshot = pipe.model
        # image decoding: two threads of its own (a bounded number of allocator arenas)
        state.decoder = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="mner-decode")
        if state.fewshot is None and fewshot is not None:
            from mner.models import load_model

            state.fewshot = await asyncio.to_thread(load_model, fewshot, device or "cpu")
            log.info("few-shot model %s loaded", fewshot)
        if state.fewshot is not None:
            state.fewshot.eval()
            state.fewshot_runner = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mner-fewshot")
        predictor = Predictor(pipe)
        state.batcher = MicroBatcher(predictor, cfg.max_batch_size, cfg.max_wait_ms, cfg.max_queue,
                                     on_batch=metrics.on_batch)
        await state.batcher.start()
        warm = InferenceItem("Warm up", Image.new("RGB", (32, 32), (127, 127, 127)), "a grey square")
        await asyncio.gather(*state.batcher.submit([warm]))
        state.card = await asyncio.to_thread(model_card, predictor.info(),
                                             checkpoint if checkpoint is not None else card_from)
        state.predictor = predictor
        state.ready = True
        log.info("ready: %s", json.dumps({k: v for k, v in state.predictor.info().items() if k != "labels"}))

    async def load_in_task():
        try:
            await load_and_warm()
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - said by /ready and the log; the server is stopped
            state.load_error = f"{type(err).__name__}: {err}"
            log.error("the model could not be loaded: %s", state.load_error, exc_info=err)
            if on_load_failed is not None:
                on_load_failed()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        task = None
        if load_in_background:
            task = asyncio.create_task(load_in_task(), name="mner-load")
        else:
            await load_and_warm()
        try:
            yield
        finally:
            state.ready = False
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if state.batcher is not None:
                await state.batcher.stop()
            if state.decoder is not None:
                state.decoder.shutdown(wait=True)
            if state.fewshot_runner is not None:
                state.fewshot_runner.shutdown(wait=True)

    app = FastAPI(title="mner", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Multimodal named entity recognition: tag a tweet and its image. Entity and "
                              f"span offsets (start, end) count {OFFSET_UNIT}.")
    app.state.mner = state
    app.state.metrics = metrics
    app.add_middleware(BodyLimit, max_bytes=cfg.max_body_bytes, timeout_s=cfg.body_timeout_s)
    # outermost: counts the body limit's refusals too (matched to their route by the router)
    app.add_middleware(MetricsMiddleware, metrics=metrics, router=app.router)

    # ------------------------------------------------------------------------------ errors
    @app.exception_handler(ServeError)
    async def on_serve_error(_request, err: ServeError):
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(_request, err):
        code = {404: "not_found", 405: "method_not_allowed"}.get(err.status_code, "http_error")
        message = (f"no such route; the service has {', '.join(ROUTES)}" if err.status_code == 404
                   else str(err.detail))
        return _error(err.status_code, code, message, headers=getattr(err, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def on_invalid(_request, err):
        return _error(422, "invalid_request", _validation_message(err.errors()))

    @app.exception_handler(Exception)
    async def on_crash(request, err):
        rid = uuid.uuid4().hex[:12]
        log.error("request %s %s failed (id %s)", request.method, request.url.path, rid, exc_info=err)
        return _error(500, "internal_error", f"the server failed on this request (id {rid}); its log has the "
                      "details. Retry, and report the id if it keeps failing")

    # ------------------------------------------------------------------------------ routes
    @app.get("/health", summary="alive")
    async def health():
        return {"status": "ok"}

    @app.get("/ready", summary="model loaded and warm", responses={503: {"model": ErrorBody}})
    async def ready():
        if state.load_error is not None:
            return _error(503, "load_failed", f"the model could not be loaded ({state.load_error}); "
                          "the server's log has the details")
        if not state.ready:
            return _error(503, "not_ready", "the model is still loading; retry in a few seconds",
                          headers={"Retry-After": str(cfg.retry_after_s)})
        return {"status": "ready"}

    @app.get("/model", summary="labels, encoders, views, version, limits")
    async def model_info():
        if state.predictor is None:
            raise ServeError(503, "not_ready", "the model is still loading; retry in a few seconds",
                             {"Retry-After": str(cfg.retry_after_s)})
        return {**state.predictor.info(), "limits": cfg.public(), "batching": state.batcher.stats(),
                "fewshot": fewshot_info(state.fewshot, fewshot) if state.fewshot is not None else None,
                "offsets": "code points", "card": state.card}

    async def examples_list() -> list[dict]:
        async with state.examples_lock:      # built once, on first use (the demo photos take a few seconds)
            if state.examples is None:
                state.examples = await asyncio.to_thread(packaged_examples)
        return state.examples

    @app.get("/examples", summary="tweets to try: the quickstart's sentence with two photos, the sample corpus")
    async def examples():
        items = await examples_list()
        return {"examples": [{"text": e["text"], "caption": e["caption"], "source": e["source"],
                              "image": f"/examples/{k}/image" if e["image"] is not None else None}
                             for k, e in enumerate(items)]}

    @app.get("/examples/{k}/image", summary="the image of example k (JPEG)", response_class=Response)
    async def example_image(k: int):
        items = await examples_list()
        if not 0 <= k < len(items) or items[k]["image"] is None:
            raise ServeError(404, "not_found", f"there is no example image {k}; GET /examples lists them")
        return Response(items[k]["image"], media_type="image/jpeg")

    @app.get("/metrics", summary="Prometheus metrics: requests by route and status, latency and batch-size "
             "histograms, queue depth", response_class=Response)
    async def prometheus_metrics():
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    body_doc = {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"oneOf": [PredictRequest.model_json_schema(),
                                                  _batch_schema()]}},
        "multipart/form-data": {"schema": {"type": "object", "required": ["text"], "properties": {
            "text": {"type": "string"}, "image": {"type": "string", "format": "binary"},
            "caption": {"type": "string"}, "explain": {"type": "boolean"}}}},
    }}}
    error_doc = {s: {"model": ErrorBody} for s in (413, 415, 422, 503, 504)}

    @app.post("/predict", summary="tag one tweet (or a batch, answered per item) with its image",
              openapi_extra=body_doc, responses={200: {"model": PredictResponse | BatchResponse}, **error_doc})
    async def predict(request: Request):
        t0 = time.perf_counter()
        if not state.ready:
            raise ServeError(503, "not_ready", "the model is still loading; retry in a few seconds",
                             {"Retry-After": str(cfg.retry_after_s)})
        slots, batch = await _parse(request, cfg)
        if not batch and isinstance(slots[0], ServeError):
            raise slots[0]
        if any(isinstance(it, InferenceItem) and isinstance(it.image, bytes) for it in slots):
            # decoded off the event loop; a bad image becomes its item's error
            slots = await asyncio.get_running_loop().run_in_executor(state.decoder, _decode_images, slots, cfg)
            if not batch and isinstance(slots[0], ServeError):
                raise slots[0]
        good = [k for k, it in enumerate(slots) if isinstance(it, InferenceItem)]
        try:
            futures = state.batcher.submit([slots[k] for k in good])
        except QueueFull:
            raise ServeError(503, "queue_full", f"the server is busy ({state.batcher.waiting} items wait, "
                             f"the queue holds {cfg.max_queue}); retry after {cfg.retry_after_s} s",
                             {"Retry-After": str(cfg.retry_after_s)}) from None
        if not batch:
            result = (await _answer(asyncio.gather(*futures), cfg.timeout_s, "retry, send fewer items"))[0]
            return dict(result, time_ms=round((time.perf_counter() - t0) * 1000, 2))
        answers = await _answer(asyncio.gather(*futures, return_exceptions=True), cfg.timeout_s,
                                "retry, send fewer items") if futures else []
        for k, answer in zip(good, answers):
            slots[k] = _item_failure(answer, request, slots[k].where) if isinstance(answer, BaseException) else answer
        ms = round((time.perf_counter() - t0) * 1000, 2)
        results = []
        for k, slot in enumerate(slots):
            if isinstance(slot, ServeError):
                metrics.item_errors.labels(str(slot.status), slot.code).inc()
                results.append({"index": k, **slot.body()})
            else:
                results.append({"index": k, **slot, "time_ms": ms})
        return {"results": results, "errors": sum(isinstance(s, ServeError) for s in slots), "time_ms": ms}

    fewshot_doc = {"requestBody": {"required": True, "content": {
        "application/json": {"schema": FewShotRequest.model_json_schema()}}}}

    @app.post("/fewshot/predict", summary="tag a tweet with new types defined by a few annotated tweets",
              openapi_extra=fewshot_doc, responses={200: {"model": PredictResponse}, **error_doc})
    async def fewshot_predict(request: Request):
        t0 = time.perf_counter()
        if not state.ready:
            raise ServeError(503, "not_ready", "the model is still loading; retry in a few seconds",
                             {"Retry-After": str(cfg.retry_after_s)})
        if state.fewshot is None:
            raise ServeError(404, "no_fewshot_model", "this server has no few-shot model; start it with "
                             "mner serve CHECKPOINT --fewshot FEWSHOT_CHECKPOINT")
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            raise ServeError(415, "unsupported_media_type", "send the support set and the tweet as application/json")
        try:
            req = FewShotRequest.model_validate(_json(await request.body()))
        except ValidationError as err:
            raise ServeError(422, "invalid_request", _validation_message(err.errors())) from None
        support = support_examples(req, cfg)
        check_text(req.text, cfg, "text")
        # images: decoded (off the event loop) for a model that reads them; an image's file name is
        # never opened here, only the bytes sent
        pixels = "pixels" in (getattr(state.fewshot, "views", ()) or ())
        raws = [decode_base64(tw.image, cfg, f"support[{i}].image") if pixels and tw.image else None
                for i, tw in enumerate(req.support)]
        raws.append(decode_base64(req.image, cfg, "image") if pixels and req.image else None)
        wheres = [f"support[{i}].image" for i in range(len(req.support))] + ["image"]

        def decode():
            return [open_image(raw, cfg, where) if raw is not None else None for raw, where in zip(raws, wheres)]

        images = await asyncio.get_running_loop().run_in_executor(state.decoder, decode)
        support = [ex.replace(image=img) for ex, img in zip(support, images)]

        def run():
            from mner.fewshot.pipeline import FewShotPipeline

            pipe = FewShotPipeline(state.fewshot, support)
            return pipe(req.text, image=images[-1], caption=req.caption), pipe.types

        ents, types = await _answer(asyncio.get_running_loop().run_in_executor(state.fewshot_runner, run),
                                    cfg.timeout_s, "retry with fewer example tweets")
        return {"entities": ents, "types": list(types), "match_probability": None,
                "time_ms": round((time.perf_counter() - t0) * 1000, 2)}

    @app.post("/fewshot/export", summary="the page's support set as JSONL (what mner fewshot predict --support reads)",
              response_class=Response, openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": SupportSet.model_json_schema()}}}},
              responses={200: {"content": {"application/x-ndjson": {}}}, 422: {"model": ErrorBody}})
    async def fewshot_export(request: Request):
        try:
            req = SupportSet.model_validate(_json(await request.body()))
        except ValidationError as err:
            raise ServeError(422, "invalid_request", _validation_message(err.errors())) from None
        body = support_jsonl(support_examples(req, cfg))
        return Response(body, media_type="application/x-ndjson",
                        headers={"Content-Disposition": 'attachment; filename="support.jsonl"'})

    @app.post("/fewshot/import", summary="a support set file (JSONL with tokens and tags) as the page's spans",
              openapi_extra={"requestBody": {"required": True, "content": {"application/x-ndjson": {
                  "schema": {"type": "string"}}}}},
              responses={422: {"model": ErrorBody}})
    async def fewshot_import(request: Request, name: str = "the file"):
        try:
            raw = (await request.body()).decode("utf-8")
        except UnicodeDecodeError:
            raise ServeError(422, "bad_support_file", f"{name} is not UTF-8 text; load a JSONL file (one JSON object "
                             "a line, with tokens and tags)") from None
        support = await asyncio.to_thread(read_support_jsonl, raw, cfg, name[:200])
        return {"support": support}

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(str(STATIC / "index.html"), media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon():
        return FileResponse(str(STATIC / "favicon.svg"), media_type="image/svg+xml")

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return get_swagger_ui_html(openapi_url=app.openapi_url, title="mner: API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/static/favicon.svg")

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    app.mount("/docs-assets", StaticFiles(directory=str(SWAGGER)), name="docs-assets")
    ROUTES = ["/", "/health", "/ready", "/model", "/metrics", "/examples", "POST /predict", "POST /fewshot/predict",
              "POST /fewshot/export", "POST /fewshot/import", "/docs", "/openapi.json"]
    return app


async def _answer(awaitable, timeout_s: float, hint: str):
    """The awaited answer; a timeout is a 504 (with ``hint``), a user error a 422, a bug raises."""
    try:
        return await asyncio.wait_for(awaitable, timeout_s)
    except asyncio.TimeoutError:
        raise ServeError(504, "timeout", f"no answer within {timeout_s:g} s; {hint}, "
                         "or start the server with a larger --timeout") from None
    except ServeError:
        raise
    except Exception as err:  # noqa: BLE001
        if is_user_error(err):
            raise ServeError(422, "unprocessable", str(err)) from None
        raise


def _item_failure(err: BaseException, request, where: str) -> ServeError:
    """A batch item's failure in the model as its error: a user error is 422 ``unprocessable``
    (as a single request's); anything else is a bug, logged with its traceback under an id and
    answered as that item's 500 ``internal_error`` (the other items keep their answers)."""
    if isinstance(err, ServeError):
        return err
    if is_user_error(err):
        return ServeError(422, "unprocessable", f"{where}: {err}")
    rid = uuid.uuid4().hex[:12]
    log.error("request %s %s: %s failed (id %s)", request.method, request.url.path, where, rid, exc_info=err)
    return ServeError(500, "internal_error", f"{where}: the server failed on this item (id {rid}); its log has "
                      "the details. Retry, and report the id if it keeps failing")


def _batch_schema() -> dict:
    return {"type": "object", "required": ["items"], "additionalProperties": False,
            "properties": {"items": {"type": "array", "items": PredictRequest.model_json_schema()}}}


def _validation_message(errors, where: str = "") -> str:
    """Pydantic's errors in one line; ``where`` (``items[3]``) names a batch item."""
    parts = []
    for e in errors[:5]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
        loc = ".".join(x for x in (where, loc) if x)
        parts.append(f"{loc or 'body'}: {e.get('msg')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    if where:
        return ("invalid item: " + "; ".join(parts) + more +
                '. Send each item as {"text": "...", "image": "<base64>"} (see /docs)')
    return ("invalid request: " + "; ".join(parts) + more +
            '. Send {"text": "...", "image": "<base64>"} or {"items": [...]} (see /docs)')


async def _parse(request, cfg: ServeConfig) -> tuple[list[InferenceItem | ServeError], bool]:
    """The items of a request (JSON, JSON batch or multipart form) and whether it was a batch.

    A problem of the request as a whole raises its :class:`ServeError`; in a batch, an item
    that fails its checks is that item's ServeError in the list (a single request raises it)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        data = _json(await request.body())
        if isinstance(data, dict) and "items" in data:
            try:
                req = BatchRequest.model_validate(data)
            except ValidationError as err:
                raise ServeError(422, "invalid_request", _validation_message(err.errors())) from None
            if len(req.items) > cfg.max_batch_items:
                raise ServeError(422, "batch_too_large",
                                 f"the batch has {len(req.items)} items, more than the limit of "
                                 f"{cfg.max_batch_items}; split it into smaller requests")
            if not req.items:
                raise ServeError(422, "empty_batch", '"items" is empty; send at least one item')
            return [_batch_item(raw, cfg, f"items[{i}]") for i, raw in enumerate(req.items)], True
        try:
            return [_item(PredictRequest.model_validate(data), cfg, "")], False
        except ValidationError as err:
            raise ServeError(422, "invalid_request", _validation_message(err.errors())) from None
    if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        from starlette.datastructures import UploadFile

        try:
            form = await request.form(max_files=1, max_fields=10)
        except Exception as err:  # noqa: BLE001 - a malformed form is the sender's
            raise ServeError(422, "invalid_form", f"the multipart form cannot be read ({err}); send the "
                             "fields text (and image, a file)") from None
        text = form.get("text")
        if not isinstance(text, str):
            raise ServeError(422, "invalid_request", "form field text is missing; send the tweet as field "
                             "'text' (and the image file as field 'image')")
        upload = form.get("image")
        image = None
        if isinstance(upload, UploadFile):
            image = await upload.read() or None
        elif isinstance(upload, str) and upload:
            image = decode_base64(upload, cfg, "image")
        caption = form.get("caption") if isinstance(form.get("caption"), str) else None
        explain = str(form.get("explain", "")).lower() in {"1", "true", "yes", "on"}
        return [InferenceItem(check_text(text, cfg), image, caption or None, explain, "image")], False
    raise ServeError(415, "unsupported_media_type",
                     f"content type {ctype or '(none)'} is not accepted; send application/json "
                     "or multipart/form-data")


def _json(raw: bytes) -> Any:
    """The parsed body, or a 422 ``invalid_json`` (malformed, not UTF-8, or nested too deeply)."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ServeError(422, "invalid_json", "the JSON body is nested too deeply; send a flat object such as "
                         '{"text": "...", "image": "<base64>"}') from None
    except (ValueError, UnicodeDecodeError) as err:
        raise ServeError(422, "invalid_json", f"the body is not valid JSON ({err}); send "
                         '{"text": "...", "image": "<base64>"}') from None


def _item(req: PredictRequest, cfg: ServeConfig, where: str) -> InferenceItem:
    check_text(req.text, cfg, where)
    if req.caption is not None:
        check_text(req.caption, cfg, where, "caption")
    raw = decode_base64(req.image, cfg, where) if req.image else None
    return InferenceItem(req.text, raw, req.caption, req.explain, where)


def _batch_item(raw: Any, cfg: ServeConfig, where: str) -> InferenceItem | ServeError:
    """One batch item, validated and checked on its own: its refusal is returned, not raised."""
    try:
        return _item(PredictRequest.model_validate(raw), cfg, where)
    except ValidationError as err:
        return ServeError(422, "invalid_request", _validation_message(err.errors(), where))
    except ServeError as err:
        return err


def _decode_images(slots: list[InferenceItem | ServeError], cfg: ServeConfig) -> list[InferenceItem | ServeError]:
    """Each item's image bytes -> an RGB image; an image that cannot be used becomes its item's
    ServeError (the others are decoded all the same)."""
    out: list[InferenceItem | ServeError] = []
    for it in slots:
        if isinstance(it, InferenceItem) and isinstance(it.image, bytes):
            try:
                it.image = open_image(it.image, cfg, it.where)
            except ServeError as err:
                it = err
        out.append(it)
    return out


def app_from_env():
    """The app of one ``mner serve --workers N`` process, from ``MNER_SERVE_SPEC`` (JSON)."""
    import os

    spec = json.loads(os.environ["MNER_SERVE_SPEC"])   # each worker loads in its start-up, before it accepts
    return create_app(spec["checkpoint"], config=ServeConfig(**spec["config"]), device=spec.get("device"),
                      threads=spec.get("threads"), fewshot=spec.get("fewshot"), support=spec.get("support"),
                      support_format=spec.get("support_format", "auto"), decoding=spec.get("decoding"))
