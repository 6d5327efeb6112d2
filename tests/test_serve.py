"""``mner serve``: every route and status code of the service, its limits, micro-batching under
concurrency (answers equal to the bare pipeline's), explanations, and the command line."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import logging
import socket
import threading
import time

import httpx
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from mner.errors import MNERError
from mner.models import MAFModel
from mner.pipeline import Pipeline
from mner.serve import ServeConfig, create_app
from mner.serve.batching import MicroBatcher, QueueFull
from model_fixtures import encoders, maf_config, one_thread, random_image  # noqa: F401  (fixtures)

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = ["Obama meets Merkel in Berlin", "Paris at night", "New York !", "RT @user: Apple buys Beats",
         "   ", "Handsome Rob after a fish dinner"]


def png(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.fixture(scope="module")
def pipe(encoders) -> Pipeline:
    torch.manual_seed(0)
    return Pipeline(MAFModel(maf_config(encoders, view="pixels")).eval())


@pytest.fixture(scope="module")
def client(pipe):
    with TestClient(create_app(pipeline=pipe, config=ServeConfig(max_wait_ms=1))) as c:
        yield c


def close(a: list[dict], b: list[dict]) -> None:
    """The same entities (text, type, offsets), confidences within rounding."""
    key = lambda ents: [(e["text"], e["type"], e["start"], e["end"], e["token_start"], e["token_end"]) for e in ents]
    assert key(a) == key(b)
    for x, y in zip(a, b):
        assert abs(x["confidence"] - y["confidence"]) <= 2e-4


def error(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["status"] == status and body["error"] == code and body["message"]
    assert "Traceback" not in r.text
    return body


# ============================================================================ routes
def test_health_ready_model_and_schema(client, pipe):
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json() == {"status": "ready"}
    info = client.get("/model").json()
    assert info["labels"] == list(pipe.model.label_set.labels)
    assert info["entity_types"] == ["LOC", "MISC", "ORG", "PER"]
    assert info["views"] == ["pixels"] and set(info["encoders"]) == {"text", "image"}
    assert info["mner_version"] and info["limits"]["max_batch_size"] == 16
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}
    assert {"413", "415", "422", "503", "504"} <= set(schema["paths"]["/predict"]["post"]["responses"])
    ok = schema["paths"]["/predict"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert {x["$ref"].rsplit("/", 1)[1] for x in ok["anyOf"]} == {"PredictResponse", "BatchResponse"}
    assert {"results", "errors"} <= set(schema["components"]["schemas"]["BatchResponse"]["required"])
    assert {"index", "error", "status", "message"} <= set(schema["components"]["schemas"]["BatchItemError"]["required"])
    error(client.get("/nowhere"), 404, "not_found")


def test_predict_json_multipart_and_batch_equal_the_bare_pipeline(client, pipe):
    img = random_image(3, size=48)
    raw = png(img)
    bare = pipe("Obama meets Merkel in Berlin", image=img)
    r = client.post("/predict", json={"text": "Obama meets Merkel in Berlin", "image": b64(raw)})
    assert r.status_code == 200
    body = r.json()
    close(body["entities"], bare)
    assert 0.0 <= body["match_probability"] <= 1.0 and body["time_ms"] > 0
    # the same with a data: URL, and as a multipart form with the file
    r2 = client.post("/predict", json={"text": "Obama meets Merkel in Berlin",
                                       "image": "data:image/png;base64," + b64(raw)})
    assert r2.json()["entities"] == body["entities"]
    r3 = client.post("/predict", data={"text": "Obama meets Merkel in Berlin"},
                     files={"image": ("x.png", raw, "image/png")})
    assert r3.status_code == 200 and r3.json()["entities"] == body["entities"]
    assert r3.json()["match_probability"] == body["match_probability"]
    # a batch: one answer per item, in order; no image -> no match probability; blank -> nothing
    items = [{"text": t, "image": b64(raw) if i % 2 else None} for i, t in enumerate(TEXTS)]
    r4 = client.post("/predict", json={"items": items})
    assert r4.status_code == 200
    results = r4.json()["results"]
    assert len(results) == len(TEXTS)
    for i, (t, res) in enumerate(zip(TEXTS, results)):
        close(res["entities"], pipe(t, image=img if i % 2 else None))
        assert (res["match_probability"] is None) == (i % 2 == 0 or not t.strip())
    assert results[4]["entities"] == []


def test_explanation_weights_over_image_regions(client):
    raw = png(random_image(5, size=48))
    r = client.post("/predict", json={"text": "Obama meets Merkel in Berlin", "image": b64(raw), "explain": True})
    ents = r.json()["entities"]
    assert ents, "the tiny model tags something"
    for e in ents:
        px = e["explanation"]["pixels"]
        h, w = px["grid"]
        assert len(px["weights"]) == h * w and abs(sum(px["weights"]) - 1.0) < 1e-3
        assert min(px["weights"]) >= 0
    # without an image there is nothing to look at
    r = client.post("/predict", json={"text": "Obama meets Merkel in Berlin", "explain": True})
    assert all(e["explanation"] is None for e in r.json()["entities"])


def test_explanation_equals_the_attention_computed_by_hand(encoders):
    """The served weights are the interaction's head-averaged attention of the entity's words."""
    torch.manual_seed(1)
    model = MAFModel(maf_config(encoders, view="both")).eval()
    with torch.no_grad():  # every word a person: an entity per word
        model.emissions.weight.zero_()
        model.emissions.bias.fill_(-20.0)
        model.emissions.bias[model.label_set.index("B-PER")] = 20.0
    pipe = Pipeline(model)
    seen = {}

    def grab(module, args, kwargs, out):  # a = softmax(W_q T (W_k V)^T / sqrt(d/m)), mean over heads
        t, v = args[0][0], args[1][0]
        d, m = t.shape[-1], module.num_heads
        wq, wk = module.in_proj_weight[:d], module.in_proj_weight[d:2 * d]
        bq, bk = module.in_proj_bias[:d], module.in_proj_bias[d:2 * d]
        q = (t @ wq.T + bq).view(-1, m, d // m).transpose(0, 1)             # (m, W, d/m)
        k = (v @ wk.T + bk).view(-1, m, d // m).transpose(0, 1)             # (m, R, d/m)
        scores = q @ k.transpose(1, 2) / (d // m) ** 0.5
        scores = scores.masked_fill(kwargs["key_padding_mask"][0][None, None, :], float("-inf"))
        seen["w"] = scores.softmax(-1).mean(0)                              # (W, R)

    img = random_image(2, size=48)
    handle = model.interaction.blocks[-1].attention.register_forward_hook(grab, with_kwargs=True)
    pipe("Obama in Paris", image=img, caption="a man on a bridge")
    handle.remove()
    with TestClient(create_app(pipeline=pipe)) as c:
        body = c.post("/predict", json={"text": "Obama in Paris", "image": b64(png(img)),
                                        "caption": "a man on a bridge", "explain": True}).json()
    ents = body["entities"]
    assert [e["text"] for e in ents] == ["Obama", "in", "Paris"]
    w = seen["w"]                                      # (W, R): pixels regions then caption tokens
    regions = len(ents[0]["explanation"]["pixels"]["weights"])
    caption = ents[0]["explanation"]["caption"]
    assert caption["tokens"][0] == "[CLS]" and caption["tokens"][-1] == "[SEP]"
    n_cap = len(caption["tokens"])
    for k, e in enumerate(ents):
        px = w[k, :regions] / w[k, :regions].sum()
        cap = w[k, regions:regions + n_cap] / w[k, regions:regions + n_cap].sum()
        assert e["explanation"]["pixels"]["weights"] == pytest.approx(px.tolist(), abs=1e-4)
        assert e["explanation"]["caption"]["weights"] == pytest.approx(cap.tolist(), abs=1e-4)


# ============================================================================ limits
@pytest.fixture(scope="module")
def strict(pipe):
    cfg = ServeConfig(max_body_bytes=200_000, max_image_bytes=50_000, max_image_pixels=64 * 64,
                      max_text_chars=50, max_batch_items=3, max_wait_ms=1)
    with TestClient(create_app(pipeline=pipe, config=cfg)) as c:
        yield c


def test_body_too_large_is_refused_while_reading(strict):
    body = error(strict.post("/predict", content=b"{" + b" " * 300_000 + b"}",
                             headers={"content-type": "application/json"}), 413, "body_too_large")
    assert "0.2 MiB" in body["message"] and "--max-body-mb" in body["message"]

    def chunks():  # no Content-Length: counted chunk by chunk
        for _ in range(40):
            yield b" " * 10_000

    error(strict.post("/predict", content=chunks(), headers={"content-type": "application/json"}),
          413, "body_too_large")


def test_image_limits(strict):
    noisy = Image.frombytes("RGB", (160, 160), bytes(torch.randint(0, 256, (160 * 160 * 3,), dtype=torch.uint8).tolist()))
    big = png(noisy)
    assert 50_000 < len(big) < 150_000
    error(strict.post("/predict", json={"text": "a", "image": b64(big)}), 413, "image_too_large")
    error(strict.post("/predict", data={"text": "a"}, files={"image": ("b.png", big, "image/png")}),
          413, "image_too_large")
    many = png(Image.new("RGB", (100, 50)))  # 5,000 pixels > 4,096, few bytes
    body = error(strict.post("/predict", json={"text": "a", "image": b64(many)}), 422, "image_too_many_pixels")
    assert "100 x 50" in body["message"]
    body = error(strict.post("/predict", json={"text": "a", "image": b64(b"GIF89a? no, plain text")}),
                 415, "unsupported_image")
    assert "JPEG" in body["message"]
    error(strict.post("/predict", json={"text": "a", "image": b64(png(Image.new("RGB", (8, 8)), "PPM"))}),
          415, "unsupported_image")
    good = png(random_image(1, size=32))
    error(strict.post("/predict", json={"text": "a", "image": b64(good[: len(good) // 2])}), 422, "corrupt_image")
    error(strict.post("/predict", json={"text": "a", "image": "not base64 !!"}), 422, "bad_base64")


def test_text_batch_and_request_shape_limits(strict):
    body = error(strict.post("/predict", json={"text": "x" * 51}), 422, "text_too_long")
    assert "51" in body["message"] and "50" in body["message"]
    error(strict.post("/predict", json={"items": [{"text": "a"}] * 4}), 422, "batch_too_large")
    error(strict.post("/predict", json={"items": []}), 422, "empty_batch")
    for shape in ({"items": "a"}, {"items": {"text": "a"}}, {"items": [{"text": "a"}], "text": "b"}):
        error(strict.post("/predict", json=shape), 422, "invalid_request")   # the envelope: the request as a whole
    body = error(strict.post("/predict", json={"txt": "a"}), 422, "invalid_request")
    assert "text" in body["message"] and "txt" in body["message"]
    error(strict.post("/predict", content=b"{bad json", headers={"content-type": "application/json"}),
          422, "invalid_json")
    error(strict.post("/predict", content=b"hello", headers={"content-type": "text/plain"}),
          415, "unsupported_media_type")
    error(strict.post("/predict", data={"caption": "no text"}), 422, "invalid_request")
    error(strict.get("/predict"), 405, "method_not_allowed")


# ============================================================================ a batch, answered per item
def _post_json(c, body) -> httpx.Response:
    """``body`` sent as ASCII JSON (a lone surrogate travels as its ``\\ud800`` escape)."""
    import json

    return c.post("/predict", content=json.dumps(body).encode(), headers={"content-type": "application/json"})


def test_a_batch_is_answered_per_item(client, pipe):
    """Issue 25.10: one bad item rejected a whole batch; each item now gets its own answer, a
    failing one the error body (and status) it would get alone, named by its index."""
    img = random_image(4, size=48)
    good = "Obama meets Merkel in Berlin"
    bad = [{"text": "Paris at night", "image": "not base64 !!"},         # refused while parsing
           {"caption": "a tweet without its text"},                      # fails validation
           {"text": "Rob \ud800 in Paris"},                             # refused while parsing (not Unicode text)
           {"text": "New York", "image": b64(b"plain text, not an image")},   # refused while decoding
           None]                                                         # not an object
    items = bad[:2] + [{"text": good, "image": b64(png(img))}] + bad[2:]
    r = _post_json(client, {"items": items})
    assert r.status_code == 200, r.text
    assert "Traceback" not in r.text
    body = r.json()
    results = body["results"]
    assert [res["index"] for res in results] == list(range(len(items)))
    assert body["errors"] == len(bad) == sum("error" in res for res in results)
    # the good item is tagged as if it came alone
    assert "error" not in results[2] and results[2]["time_ms"] > 0
    close(results[2]["entities"], pipe(good, image=img))
    assert results[2]["match_probability"] is not None
    expected = {0: (422, "bad_base64"), 1: (422, "invalid_request"), 3: (422, "invalid_text"),
                4: (415, "unsupported_image"), 5: (422, "invalid_request")}
    for k, (status, code) in expected.items():
        res = results[k]
        assert (res["status"], res["error"]) == (status, code), res
        assert res["message"].startswith(f"invalid item: items[{k}]" if code == "invalid_request" else f"items[{k}]")
        assert "entities" not in res
    assert "items[1].text: Field required" in results[1]["message"]
    assert "unpaired surrogate U+D800 at character 4" in results[3]["message"]
    # alone, each bad item is refused with the same status and code (its message unprefixed)
    for k, item in zip((0, 1, 3, 4, 5), bad):
        alone = error(_post_json(client, item), *expected[k])
        assert not alone["message"].startswith("items[")
    # a caption is Unicode text too: refused while parsing, naming it
    alone = error(_post_json(client, {"text": "Paris", "caption": "a \udc00 photo"}), 422, "invalid_text")
    assert alone["message"].startswith("caption holds an unpaired surrogate U+DC00 at character 2")
    # a batch whose every item fails is still answered item by item
    r = client.post("/predict", json={"items": [{"txt": "a"}, {"text": "b", "image": "%%"}]})
    assert r.status_code == 200 and r.json()["errors"] == 2
    assert [res["error"] for res in r.json()["results"]] == ["invalid_request", "bad_base64"]


class Picky:
    """A pipeline stand-in that fails on some texts: "boom" is a bug of ours, "user" the user's."""

    def __init__(self, pipe):
        self.pipe, self.model, self.views = pipe, pipe.model, pipe.views

    def info(self):
        return self.pipe.info()

    outputs_match = outputs_attentions = False

    def run(self, examples, images=None, **kwargs):
        if any("boom" in ex.text for ex in examples):
            raise RuntimeError("secret internal detail")
        if any("user" in ex.text for ex in examples):
            raise MNERError("this tweet cannot be tagged: fix it")
        return self.pipe.run(examples, images, **kwargs)


def test_a_failure_in_the_model_fails_its_batch_item_alone(pipe, caplog):
    """A bug while tagging one item of a batch is that item's 500 (with the id the log repeats),
    a user error its 422; the items batched with it are answered; alone, a bug is still a 500."""
    app = create_app(pipeline=Picky(pipe), config=ServeConfig(max_wait_ms=20))
    with TestClient(app, raise_server_exceptions=False) as c, caplog.at_level(logging.ERROR, logger="mner.serve"):
        items = [{"text": "Obama in Paris"}, {"text": "boom in Berlin"}, {"text": "a user in Rome"},
                 {"text": "Merkel in Berlin"}]
        r = c.post("/predict", json={"items": items})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["errors"] == 2 and "secret" not in r.text and "Traceback" not in r.text
        close(body["results"][0]["entities"], pipe("Obama in Paris"))
        close(body["results"][3]["entities"], pipe("Merkel in Berlin"))
        bug, user = body["results"][1], body["results"][2]
        assert (bug["index"], bug["status"], bug["error"]) == (1, 500, "internal_error")
        rid = bug["message"].split("(id ")[1].split(")")[0]
        assert rid in caplog.text and "secret internal detail" in caplog.text and "items[1]" in caplog.text
        assert (user["index"], user["status"], user["error"]) == (2, 422, "unprocessable")
        assert user["message"] == "items[2]: this tweet cannot be tagged: fix it"
        # alone: the bug is the request's 500, the user error its 422
        body = error(c.post("/predict", json={"text": "boom"}), 500, "internal_error")
        assert "secret" not in body["message"]
        body = error(c.post("/predict", json={"text": "user"}), 422, "unprocessable")
        assert body["message"] == "this tweet cannot be tagged: fix it"
        m = _samples(c.get("/metrics").text)
    assert m[("mner_batch_item_errors_total", (("code", "internal_error"), ("status", "500")))] == 1
    assert m[("mner_batch_item_errors_total", (("code", "unprocessable"), ("status", "422")))] == 1


class Gate:
    """A pipeline stand-in that blocks until opened (to fill the queue, to time out)."""

    def __init__(self, pipe, fail: Exception | None = None):
        self.pipe, self.fail = pipe, fail
        self.model, self.views = pipe.model, pipe.views
        self.open = threading.Event()
        self.open.set()

    def info(self):
        return self.pipe.info()

    outputs_match = outputs_attentions = False

    def run(self, *args, **kwargs):
        assert self.open.wait(10)
        if self.fail is not None:
            raise self.fail
        return self.pipe.run(*args, **kwargs)


async def _serving(app):
    """The app's lifespan entered by hand (httpx's ASGI transport does not run it)."""
    ctx = app.router.lifespan_context(app)
    await ctx.__aenter__()
    return ctx


def test_queue_full_is_503_with_retry_after_and_nothing_is_dropped(pipe):
    gate = Gate(pipe)
    app = create_app(pipeline=gate, config=ServeConfig(max_queue=1, max_batch_size=1, max_wait_ms=0,
                                                              max_batch_items=1))

    async def main():
        ctx = await _serving(app)
        state = app.state.mner
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            gate.open.clear()
            first = asyncio.create_task(c.post("/predict", json={"text": "Obama in Paris"}))
            while state.batcher.batches < 2:       # warm-up, then the first request runs
                await asyncio.sleep(0.005)
            second = asyncio.create_task(c.post("/predict", json={"text": "Merkel in Berlin"}))
            while state.batcher.waiting < 1:
                await asyncio.sleep(0.005)
            third = await c.post("/predict", json={"text": "Paris"})
            gate.open.set()
            answers = [await first, await second]
        await ctx.__aexit__(None, None, None)
        return third, answers

    third, answers = asyncio.run(main())
    error(third, 503, "queue_full")
    assert third.headers["retry-after"] == "1"
    assert [a.status_code for a in answers] == [200, 200]
    close(answers[1].json()["entities"], pipe("Merkel in Berlin"))


def test_timeout_is_504_and_the_server_goes_on(pipe):
    gate = Gate(pipe)
    app = create_app(pipeline=gate, config=ServeConfig(timeout_s=0.2, max_wait_ms=0))
    with TestClient(app) as c:
        gate.open.clear()
        body = error(c.post("/predict", json={"text": "Obama in Paris"}), 504, "timeout")
        assert "--timeout" in body["message"]
        gate.open.set()
        r = c.post("/predict", json={"text": "Obama in Paris"})
        assert r.status_code == 200
        close(r.json()["entities"], pipe("Obama in Paris"))


def test_not_ready_before_the_model_is_loaded(tmp_path):
    app = create_app(tmp_path / "no-model-yet")  # lifespan not run: nothing loaded

    async def main():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            return await c.get("/ready"), await c.post("/predict", json={"text": "a"}), await c.get("/health")

    ready, predict, health = asyncio.run(main())
    error(ready, 503, "not_ready")
    error(predict, 503, "not_ready")
    assert ready.headers["retry-after"] == "1" and health.status_code == 200


def test_failures_are_json_without_traceback(pipe, caplog):
    gate = Gate(pipe)
    with TestClient(create_app(pipeline=gate), raise_server_exceptions=False) as c:
        gate.fail = RuntimeError("secret internal detail")
        with caplog.at_level(logging.ERROR, logger="mner.serve"):
            body = error(c.post("/predict", json={"text": "Obama"}), 500, "internal_error")
        assert "secret" not in body["message"]
        rid = body["message"].split("(id ")[1].split(")")[0]
        assert rid in caplog.text and "secret internal detail" in caplog.text
        gate.fail = MNERError("3 texts but 2 images: give one per text")
        body = error(c.post("/predict", json={"text": "Obama"}), 422, "unprocessable")
        assert "one per text" in body["message"]
        gate.fail = None
        assert c.post("/predict", json={"text": "Obama"}).status_code == 200


# ============================================================================ batching
def test_batcher_gathers_up_to_the_max_batch_size_and_answers_every_item():
    seen = []

    def double(items):
        seen.append(len(items))
        time.sleep(0.01)
        return [2 * x for x in items]

    async def main():
        b = MicroBatcher(double, max_batch_size=4, max_wait_ms=20, max_queue=100)
        await b.start()
        futures = b.submit(list(range(10)))
        with pytest.raises(QueueFull):
            b.submit(list(range(95)))  # 95 > the room left: refused as a whole
        results = await asyncio.gather(*futures)
        await b.stop()
        return results

    assert asyncio.run(main()) == [2 * x for x in range(10)]
    assert seen == [4, 4, 2]


def test_a_failing_item_fails_alone():
    def fn(items):
        if any(x < 0 for x in items):
            raise ValueError(f"negative: {items}")
        return items

    async def main():
        b = MicroBatcher(fn, max_batch_size=8, max_wait_ms=20)
        await b.start()
        out = await asyncio.gather(*b.submit([1, -1, 2]), return_exceptions=True)
        await b.stop()
        return out

    out = asyncio.run(main())
    assert out[0] == 1 and out[2] == 2 and isinstance(out[1], ValueError)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_200_requests_from_20_clients_over_a_real_server(pipe):
    """uvicorn on a free loopback port; every answer equals the bare pipeline's on that input."""
    import uvicorn

    imgs = [png(random_image(s, size=40)) for s in range(4)]
    inputs = [(TEXTS[k % len(TEXTS)] + f" #{k}", k % 4 if k % 3 else None) for k in range(200)]
    app = create_app(pipeline=pipe, config=ServeConfig(max_batch_size=8, max_wait_ms=5))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 30
        while not server.started:
            assert time.time() < deadline, "server did not start"
            time.sleep(0.02)
        answers: dict[int, httpx.Response] = {}

        def client(worker: int):
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
                for k in range(worker, 200, 20):
                    text, im = inputs[k]
                    answers[k] = c.post("/predict", json={"text": text, "image": None if im is None else b64(imgs[im])})

        workers = [threading.Thread(target=client, args=(w,)) for w in range(20)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
        sizes = app.state.mner.batcher.size_counts
        stats = httpx.get(f"http://127.0.0.1:{port}/model").json()["batching"]
    finally:
        server.should_exit = True
        thread.join(10)
    assert sorted(answers) == list(range(200))
    assert all(r.status_code == 200 for r in answers.values())
    pil = [Image.open(io.BytesIO(b)).convert("RGB") for b in imgs]
    bare = pipe([t for t, _ in inputs], image=[None if i is None else pil[i] for _, i in inputs])
    for k in range(200):
        close(answers[k].json()["entities"], bare[k])
    assert max(sizes) > 1 and max(sizes) <= 8  # requests were gathered, never beyond the knob
    assert sum(k * n for k, n in sizes.items()) == 201   # the warm-up and every request, each once
    assert stats["items"] == 201 and stats["largest_batch"] == max(sizes) and stats["waiting"] == 0


# ============================================================================ command line
def test_cli_serve_binds_loopback_and_says_so_first(monkeypatch, tmp_path, caplog, pipe):
    import uvicorn

    from mner.cli.main import build_parser

    pipe.model.save_pretrained(tmp_path / "run" / "best")   # a training run: its best/ is served
    calls = {}
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: calls.update(host=self.config.host, port=self.config.port))
    args = build_parser().parse_args(["serve", str(tmp_path / "run"), "--max-image-mb", "1", "--port", "8123"])
    with caplog.at_level(logging.INFO, logger="mner.serve"):
        assert args.func(args) == 0
    assert calls["host"] == "127.0.0.1" and calls["port"] == 8123
    first = [r.getMessage() for r in caplog.records if r.name == "mner.serve"][0]
    assert "127.0.0.1:8123" in first and "loopback only" in first
    from mner.cli.main import main

    assert main(["serve", str(tmp_path / "nothing")]) == 2
    fewshot = tmp_path / "fewshot"
    fewshot.mkdir()
    (fewshot / "config.json").write_text('{"model_type": "mousing", "config": {}}')
    (fewshot / "model.safetensors").write_bytes(b"")
    assert main(["serve", str(fewshot)]) == 2
    with pytest.raises(SystemExit) as exit_:
        main(["serve", str(tmp_path / "run"), "--max-queue", "0"])
    assert exit_.value.code == 2


# ============================================================================ few-shot side
@pytest.fixture(scope="module")
def fewshot_client(pipe, tmp_path_factory):
    from fewshot_fixtures import fewshot_model
    from tiny_models import make_tiny_bert

    bert = make_tiny_bert(tmp_path_factory.mktemp("fs") / "bert", max_position_embeddings=64)
    torch.manual_seed(0)
    model = fewshot_model(bert, "protobert").eval()
    with TestClient(create_app(pipeline=pipe, fewshot_model=model)) as c:
        yield c, model


SUPPORT = [{"text": "Pad thai at Nong's tonight", "entities": [{"start": 0, "end": 8, "type": "DISH"}]},
           {"text": "Green curry with Anna", "entities": [{"start": 0, "end": 11, "type": "DISH"},
                                                          {"start": 17, "end": 21, "type": "PER"}]}]


def test_fewshot_predict_equals_the_fewshot_pipeline(fewshot_client):
    from mner.data.example import Example
    from mner.fewshot.pipeline import FewShotPipeline

    c, model = fewshot_client
    assert c.get("/model").json()["fewshot"]["model_type"] == "protobert"
    r = c.post("/fewshot/predict", json={"support": SUPPORT, "text": "Massaman curry with Tom tonight"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["types"] == ["DISH", "PER"]
    support = [Example("s0", ("Pad", "thai", "at", "Nong's", "tonight"), ("B-DISH", "I-DISH", "O", "O", "O")),
               Example("s1", ("Green", "curry", "with", "Anna"), ("B-DISH", "I-DISH", "O", "B-PER"))]
    bare = FewShotPipeline(model, support)("Massaman curry with Tom tonight")
    close(body["entities"], bare)


def test_fewshot_refusals(fewshot_client, client):
    c, _ = fewshot_client
    post = lambda support, text="Tom": c.post("/fewshot/predict", json={"support": support, "text": text})
    error(post([]), 422, "empty_support")
    error(post([{"text": "Pad thai", "entities": []}]), 422, "no_entity")
    body = error(post([{"text": "Pad thai", "entities": [{"start": 0, "end": 30, "type": "DISH"}]}]), 422, "bad_span")
    assert body["message"].startswith("support[0].entities[0]")
    error(post([{"text": "Pad thai", "entities": [{"start": 0, "end": 3, "type": "two words"}]}]), 422, "bad_type_name")
    error(post([{"text": "Pad  thai", "entities": [{"start": 3, "end": 5, "type": "DISH"}]}]), 422, "bad_span")
    error(post([{"text": "Pad thai", "entities": [{"start": 0, "end": 8, "type": "DISH"},
                                                  {"start": 4, "end": 8, "type": "X"}]}]), 422, "overlapping_spans")
    error(post(SUPPORT, text="x" * 3000), 422, "text_too_long")
    error(c.post("/fewshot/predict", json={"text": "a"}), 422, "invalid_request")
    # a server without a few-shot model says how to start one
    body = error(client.post("/fewshot/predict", json={"support": SUPPORT, "text": "Tom"}), 404, "no_fewshot_model")
    assert "--fewshot" in body["message"]


# ============================================================================ hostile settings and bodies
@contextlib.contextmanager
def _uvicorn(app):
    """``app`` under uvicorn on a free loopback port, in a thread; yields the base URL."""
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 30
        while not server.started:
            assert time.time() < deadline, "server did not start"
            assert thread.is_alive(), "server stopped at start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


@pytest.mark.parametrize("option, value", [
    ("--max-wait-ms", "nan"), ("--max-wait-ms", "-1"), ("--max-wait-ms", "inf"), ("--timeout", "nan"),
    ("--timeout", "0"), ("--timeout", "inf"), ("--body-timeout", "nan"), ("--max-body-mb", "inf"),
    ("--max-body-mb", "1e308"), ("--max-image-mb", "1e400"), ("--max-image-mb", "-2"), ("--threads", "-1"),
    ("--threads", "0"), ("--workers", "0"), ("--port", "70000"), ("--port", "0"), ("--port", "-1"),
    ("--max-batch-size", "1.5"), ("--max-queue", "0"), ("--max-text-chars", "nan"), ("--max-image-pixels", "-5"),
])
def test_numeric_options_are_range_checked_by_the_parser(option, value, capsys):
    """Issue 24.9/24.10: NaN, infinity, out-of-range ports and counts stop at the parser, in one line."""
    from mner.cli.main import build_parser

    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["serve", "run", f"{option}={value}"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: must be" in err and "Traceback" not in err


def test_numeric_options_in_range_are_taken():
    from mner.cli.main import build_parser

    args = build_parser().parse_args(["serve", "run", "--port", "65535", "--max-wait-ms", "0", "--timeout", "0.5",
                                      "--body-timeout", "2", "--max-body-mb", "0.5", "--threads", "1"])
    assert (args.port, args.max_wait_ms, args.timeout, args.body_timeout, args.max_body_mb, args.threads) == \
        (65535, 0.0, 0.5, 2.0, 0.5, 1)


def test_serve_with_nan_wait_exits_at_once(tmp_path):
    """Issue 24.9: ``mner serve --max-wait-ms nan`` hung (nothing listening, SIGTERM ignored)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "mner.cli.main", "serve", str(tmp_path), "--max-wait-ms", "nan"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "--max-wait-ms: must be a finite number" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("kwargs, words", [
    ({"max_wait_ms": float("nan")}, "finite"), ({"timeout_s": float("inf")}, "finite"),
    ({"max_body_bytes": 1.5}, "integer"), ({"max_batch_size": True}, "integer"),
    ({"max_queue": 10, "max_batch_items": 20}, "could never be queued"),
    ({"max_wait_ms": 5000, "timeout_s": 2}, "shorter than the timeout"),
])
def test_serve_config_refuses_settings_that_cannot_work(kwargs, words):
    """Issue 24.12: a queue smaller than the largest batch request answered 503 forever; refused at start."""
    with pytest.raises(ValueError, match=words):
        ServeConfig(**kwargs)


def test_cli_refuses_a_queue_smaller_than_a_batch(tmp_path, pipe, capsys):
    from mner.cli.main import main

    pipe.model.save_pretrained(tmp_path / "run" / "best")
    assert main(["serve", str(tmp_path / "run"), "--max-queue", "10", "--max-batch-items", "20"]) == 2
    err = capsys.readouterr().err
    assert "could never be queued" in err and "--max-queue" in err and "Traceback" not in err


def test_the_largest_batch_request_fits_an_empty_queue(pipe):
    cfg = ServeConfig(max_queue=4, max_batch_items=4, max_batch_size=2, max_wait_ms=1)
    with TestClient(create_app(pipeline=pipe, config=cfg)) as c:
        r = c.post("/predict", json={"items": [{"text": t} for t in TEXTS[:4]]})
    assert r.status_code == 200 and len(r.json()["results"]) == 4


def test_a_half_sent_body_is_408_and_the_connection_closes(pipe):
    """Issue 24.11: a body that stops half-way is answered 408 after --body-timeout, and closed."""
    app = create_app(pipeline=pipe, config=ServeConfig(body_timeout_s=0.5, max_wait_ms=1))
    with _uvicorn(app) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            t0 = time.perf_counter()
            s.sendall(b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 100\r\n\r\n{\"text\": ")
            got = b""
            while chunk := s.recv(65536):   # ends when the server closes the connection
                got += chunk
            waited = time.perf_counter() - t0
        head, _, body = got.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), got
        assert b"connection: close" in head.lower()
        answer = __import__("json").loads(body)
        assert answer["error"] == "body_timeout" and "0.5 s" in answer["message"] and "9 of 100" in answer["message"]
        assert 0.4 < waited < 10
        # the server goes on: a whole body is answered
        r = httpx.post(url + "/predict", json={"text": "Obama in Paris"}, timeout=30)
        assert r.status_code == 200
        metrics = httpx.get(url + "/metrics").text
    assert 'mner_requests_total{method="POST",route="/predict",status="408"} 1.0' in metrics


@pytest.mark.parametrize("body", [
    "[" * 100_000 + "]" * 100_000,
    '{"text": "a", "caption": ' + '{"a": ' * 50_000 + "1" + "}" * 50_000 + "}",
    '{"items": [' + "[" * 100_000 + "]" * 100_000 + "]}",
])
def test_deeply_nested_json_is_422_not_500(body, client, fewshot_client):
    """Issue 24.17: JSON nested beyond Python's recursion limit answered 500."""
    for c, route in ((client, "/predict"), (fewshot_client[0], "/fewshot/predict")):
        answer = error(c.post(route, content=body.encode(), headers={"content-type": "application/json"}),
                       422, "invalid_json")
        assert "nested too deeply" in answer["message"]
    assert client.post("/predict", json={"text": "Obama"}).status_code == 200


# ============================================================================ docs, favicon, metrics
def test_docs_render_from_local_assets(client):
    """Issue 25.6: /docs loaded Swagger UI from a CDN; its assets now come from an installed package."""
    import re

    page = client.get("/docs")
    assert page.status_code == 200 and "swagger" in page.text.lower()
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", page.text)
    urls += re.findall(r"""url\s*:\s*['"]([^'"]+)['"]""", page.text)
    assert urls and all(u.startswith("/") and not u.startswith("//") for u in urls), urls
    assert "cdn" not in page.text
    for u in urls:
        r = client.get(u)
        assert r.status_code == 200, u
    js = client.get("/docs-assets/swagger-ui-bundle.js")
    assert len(js.content) > 100_000 and "SwaggerUIBundle" in js.text[:2000]


def test_favicon_answers(client):
    """Issue 25.13: the favicon request answered 404 on every load."""
    import re

    r = client.get("/favicon.ico")
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml") and b"<svg" in r.content
    icon = re.search(r'<link rel="icon" href="([^"]+)"', client.get("/").text).group(1)
    assert client.get(icon).status_code == 200


def _samples(text: str) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_in_prometheus_text(pipe):
    """Issue 25.10: requests by route and status, latency and batch-size histograms, queue depth."""
    with TestClient(create_app(pipeline=pipe, config=ServeConfig(max_wait_ms=20))) as c:
        assert c.post("/predict", json={"text": "Obama in Paris"}).status_code == 200
        assert c.post("/predict", json={"items": [{"text": "a b"}, {"text": "c"}, {"text": "d e f"}]}).status_code == 200
        assert c.post("/predict", json={"txt": "a"}).status_code == 422
        for k in range(3):
            assert c.get(f"/no/such/path/{k}").status_code == 404
        r = c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    m = _samples(r.text)
    req = lambda route, method, status: m.get(("mner_requests_total", (("method", method), ("route", route),
                                                                       ("status", status))))
    assert req("/predict", "POST", "200") == 2 and req("/predict", "POST", "422") == 1
    assert req("unmatched", "GET", "404") == 3          # one series, whatever the paths
    assert not any("no/such" in str(k) for k in m)
    assert m[("mner_request_duration_seconds_count", (("route", "/predict"),))] == 3
    assert m[("mner_batch_size_count", ())] == 3                  # the warm-up, one tweet, one batch of 3
    assert m[("mner_batch_size_sum", ())] == 5
    assert m[("mner_batch_size_bucket", (("le", "2.0"),))] == 2
    assert m[("mner_batch_duration_seconds_count", ())] == 3
    assert m[("mner_queue_depth", ())] == 0 and m[("mner_ready", ())] == 1


def test_metrics_show_the_queue_depth(pipe):
    gate = Gate(pipe)
    app = create_app(pipeline=gate, config=ServeConfig(max_batch_size=1, max_wait_ms=0))

    async def main():
        ctx = await _serving(app)
        state = app.state.mner
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            gate.open.clear()
            running = [asyncio.create_task(c.post("/predict", json={"text": t})) for t in ("a", "b", "c")]
            while state.batcher.waiting < 2:
                await asyncio.sleep(0.005)
            text = (await c.get("/metrics")).text
            gate.open.set()
            await asyncio.gather(*running)
        await ctx.__aexit__(None, None, None)
        return text

    assert _samples(asyncio.run(main()))[("mner_queue_depth", ())] == 2


# ============================================================================ listen first, ready when warm
def test_the_port_opens_before_the_model_loads(pipe, tmp_path, monkeypatch):
    """Issue 25.10: /health answers during the load, /ready and /predict say 503 until warm."""
    from mner.pipeline import Pipeline as P

    pipe.model.save_pretrained(tmp_path / "model")
    loading, release = threading.Event(), threading.Event()
    real = P.from_pretrained.__func__

    def slow(cls, *args, **kwargs):
        loading.set()
        assert release.wait(30)
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(P, "from_pretrained", classmethod(slow))
    app = create_app(tmp_path / "model", config=ServeConfig(max_wait_ms=1), load_in_background=True)
    with _uvicorn(app) as url:
        assert loading.wait(30)
        assert httpx.get(url + "/health").json() == {"status": "ok"}
        error(httpx.get(url + "/ready"), 503, "not_ready")
        error(httpx.post(url + "/predict", json={"text": "Obama"}), 503, "not_ready")
        error(httpx.get(url + "/model"), 503, "not_ready")
        assert "mner_ready 0.0" in httpx.get(url + "/metrics").text
        release.set()
        deadline = time.time() + 60
        while httpx.get(url + "/ready").status_code != 200:
            assert time.time() < deadline, "never ready"
            time.sleep(0.05)
        r = httpx.post(url + "/predict", json={"text": "Obama meets Merkel in Berlin"}, timeout=30)
        assert r.status_code == 200
        close(r.json()["entities"], pipe("Obama meets Merkel in Berlin"))


def test_a_model_that_fails_to_load_says_so_and_stops_the_server(tmp_path, caplog):
    stopped = threading.Event()
    app = create_app(tmp_path / "no-model", load_in_background=True, on_load_failed=stopped.set)
    with caplog.at_level(logging.ERROR, logger="mner.serve"), TestClient(app) as c:
        assert stopped.wait(30)
        body = error(c.get("/ready"), 503, "load_failed")
        assert "no-model" in body["message"] and c.get("/health").status_code == 200
    assert "could not be loaded" in caplog.text


def test_cli_serve_ends_with_status_1_when_the_model_fails_to_load(tmp_path, pipe, monkeypatch):
    from mner.cli.main import main
    from mner.pipeline import Pipeline as P

    pipe.model.save_pretrained(tmp_path / "run" / "best")

    def broken(cls, *args, **kwargs):
        raise OSError("model.safetensors is truncated")

    monkeypatch.setattr(P, "from_pretrained", classmethod(broken))
    assert main(["serve", str(tmp_path / "run"), "--port", str(_free_port()), "--log-level", "error"]) == 1


# ============================================================================ offsets
def test_offsets_count_code_points_and_the_schema_says_so(encoders):
    """Issue 25.1: offsets are code points (an emoji is one), stated in the API's schema."""
    torch.manual_seed(0)
    model = MAFModel(maf_config(encoders, view="pixels")).eval()
    with torch.no_grad():  # every word a person: an entity per word
        model.emissions.weight.zero_()
        model.emissions.bias.fill_(-20.0)
        model.emissions.bias[model.label_set.index("B-PER")] = 20.0
    text = "\U0001F600\U0001F469\u200d\U0001F469\u200d\U0001F467 Obama in Montre\u0301al \U0001F1EB\U0001F1F7 Paris"
    with TestClient(create_app(pipeline=Pipeline(model), config=ServeConfig(max_wait_ms=1))) as client:
        ents = client.post("/predict", json={"text": text}).json()["entities"]
        schema = client.get("/openapi.json").json()
    assert {"Obama", "Paris"} <= {e["text"] for e in ents}
    assert all(text[e["start"]:e["end"]] == e["text"] for e in ents)
    obama = next(e for e in ents if e["text"] == "Obama")
    assert obama["start"] == 7          # code points: 1 + 5 (the ZWJ family) + a space; in UTF-16 it is 11
    entity = schema["components"]["schemas"]["Entity"]["properties"]
    assert "code points" in entity["start"]["description"] and "UTF-16" in entity["start"]["description"]
    assert "code points" in schema["info"]["description"]


# ============================================================================ issue 25.5: model card, examples
def _write_run(folder, *, demo: bool, test_f1: float | None = None, dev: str | None = None):
    """A training run folder as ``mner train`` / ``mner quickstart`` leave it (the files the card reads)."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / "demo-data" / "tweets" if demo else folder.parent / "corpus" / "tweets"
    corpus.mkdir(parents=True, exist_ok=True)
    if demo:
        (corpus.parent / "VERSION").write_text("demo 1 seed 0 sizes (360, 72, 144)")
    (folder / "experiment.json").write_text(json.dumps({"model_type": "maf", "data": {"corpus": str(corpus)},
                                                        "training": {"output_dir": str(folder)}}))
    if test_f1 is not None:
        (folder / "test_report.json").write_text(json.dumps({
            "mode": "conlleval", "n_sequences": 144, "micro": {"f1": test_f1},
            "per_type": {"PER": {"f1": 0.9}, "MISC": {"f1": 0.25}}}))
    if dev == "train_result":
        (folder / "train_result.json").write_text(json.dumps({"best_metric": 0.6125, "best_epoch": 3}))
    if dev == "metrics":
        (folder / "metrics.jsonl").write_text('{"event": "train", "loss": 2.0}\n'
                                             '{"event": "eval", "epoch": 1, "f1": 0.31, "f1_PER": 0.4}\n'
                                             '{"event": "eval", "epoch": 2, "f1": 0.47, "f1_PER": 0.5}\n'
                                             '{"event": "eval", "epoch": 3, "f1": 0.44}\n')
    return folder


def test_model_card_reads_the_runs_own_files(tmp_path, pipe):
    from mner.serve.card import DEMO_MISC, TYPE_MEANINGS, model_card, run_folder

    info = {"model_type": "maf", "variant": "MAF", "views": ["pixels"], "entity_types": ["LOC", "MISC", "ORG", "PER"],
            "encoders": {"text": "minilm", "image": "efficientnet-lite0"}}
    # the quickstart: a demo corpus, a test report, a text-only tagger beside it
    quick = _write_run(tmp_path / "quickstart", demo=True, test_f1=0.8125)
    _write_run(quick / "text-only", demo=False, test_f1=0.3375)
    pipe.model.save_pretrained(quick / "best")
    assert run_folder(quick) == quick and run_folder(quick / "best") == quick
    card = model_card(info, quick / "best")
    assert card["demo"] is True and card["trained_on"].endswith("demo-data/tweets")
    assert card["scores"]["f1"] == 0.8125 and card["scores"]["file"] == "test_report.json"
    assert card["scores"]["split"] == "test" and card["scores"]["per_type"] == {"PER": 0.9, "MISC": 0.25}
    assert card["baseline"]["f1"] == 0.3375
    assert card["types"]["MISC"] == DEMO_MISC and card["types"]["PER"] == TYPE_MEANINGS["PER"]
    assert "image" in card["reads"]
    # another run: no test report -> the best dev F1 of train_result.json, then of metrics.jsonl
    other = _write_run(tmp_path / "runs" / "a", demo=False, dev="train_result")
    card = model_card(info, other)
    assert card["demo"] is False and card["scores"] == {"split": "dev", "f1": 0.6125, "file": "train_result.json",
                                                       "epoch": 3, "per_type": {}}
    assert card["types"]["MISC"] == TYPE_MEANINGS["MISC"] and card["baseline"] is None
    logged = _write_run(tmp_path / "runs" / "b", demo=False, dev="metrics")
    assert model_card(info, logged)["scores"] == {"split": "dev", "f1": 0.47, "file": "metrics.jsonl", "epoch": 2,
                                                  "per_type": {"PER": 0.5}}
    # a bare model folder or a model from memory: no run, no number
    pipe.model.save_pretrained(tmp_path / "bare")
    for where in (tmp_path / "bare", None):
        card = model_card(info, where)
        assert card["run"] is None and card["scores"] is None and card["demo"] is False
    # served: GET /model carries the card of the checkpoint's run
    with TestClient(create_app(quick, config=ServeConfig(max_wait_ms=1), device="cpu")) as c:
        served = c.get("/model").json()["card"]
    assert served["demo"] is True and served["scores"]["f1"] == 0.8125 and served["run"] == str(quick)


def test_examples_are_the_packaged_tweets_and_photos(client):
    from mner.demo import demo_pair

    listed = client.get("/examples").json()["examples"]
    sentence, person, cat = demo_pair()
    assert [e["text"] for e in listed[:2]] == [sentence, sentence]      # one sentence, two photos
    assert len(listed) >= 8 and "Jordan takes the last shot for the Bulls" in [e["text"] for e in listed]
    sizes = []
    for e in listed:
        assert e["image"] is not None and e["source"]
        r = client.get(e["image"])
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        sizes.append(Image.open(io.BytesIO(r.content)).size)
    assert sizes[0] == person.size and sizes[1] == cat.size
    error(client.get(f"/examples/{len(listed)}/image"), 404, "not_found")


# ============================================================================ issue 25.9: the support set as a file
EMOJI_SUPPORT = [{"text": "\U0001F35C\U0001F35C ramen with Anna \U0001F469\u200d\U0001F469\u200d\U0001F467 tonight",
                  "entities": [{"start": 3, "end": 8, "type": "DISH"}, {"start": 14, "end": 18, "type": "PER"}],
                  "caption": "a bowl of noodles"},
                 {"text": "Cafe\u0301 latte at Zoe\u0308's", "entities": [{"start": 0, "end": 11, "type": "DISH"}],
                  "image_name": "latte.jpg"}]


def test_support_set_export_is_what_fewshot_predict_reads_and_loads_back(fewshot_client, tmp_path):
    from mner.data.formats import read_file
    from mner.serve.fewshot import FewShotRequest, support_examples

    c, _ = fewshot_client
    for support in (SUPPORT, EMOJI_SUPPORT):
        r = c.post("/fewshot/export", json={"support": support})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/x-ndjson")
        assert 'filename="support.jsonl"' in r.headers["content-disposition"]
        path = tmp_path / "support.jsonl"
        path.write_bytes(r.content)
        # the file mner fewshot predict --support reads: the same tokens and IOB2 tags as a prediction builds
        want = support_examples(FewShotRequest(support=support, text="x"), ServeConfig())
        got = read_file(path, "auto")
        assert [(ex.tokens, ex.tags, ex.caption, ex.text, ex.image) for ex in got] == \
               [(ex.tokens, ex.tags, ex.caption, ex.text, ex.image) for ex in want]
        # and loaded back: the same spans, in code points
        back = c.post("/fewshot/import?name=support.jsonl", content=r.content,
                      headers={"content-type": "application/x-ndjson"})
        assert back.status_code == 200, back.text
        assert back.json()["support"] == [{"text": s["text"], "entities": s["entities"], "caption": s.get("caption"),
                                           "image_name": s.get("image_name")} for s in support]


def test_support_files_written_by_hand_load_and_bad_ones_say_where(fewshot_client):
    c, _ = fewshot_client
    load = lambda text, name="dish.jsonl": c.post(f"/fewshot/import?name={name}", content=text.encode(),
                                                  headers={"content-type": "application/x-ndjson"})
    # tokens only, BIOES tags: the text is the tokens joined, the spans cover the words
    r = load('{"tokens": ["Pad", "thai", "at", "Nong\'s"], "tags": ["B-DISH", "E-DISH", "O", "S-PLACE"]}\n')
    assert r.status_code == 200, r.text
    assert r.json()["support"] == [{"text": "Pad thai at Nong's", "caption": None, "image_name": None,
                                    "entities": [{"start": 0, "end": 8, "type": "DISH"},
                                                 {"start": 12, "end": 18, "type": "PLACE"}]}]
    body = error(load('{"tokens": ["a"], "tags": ["O"]}\n{oops\n'), 422, "bad_support_file")
    assert "dish.jsonl:2" in body["message"] and "mner-support-" not in body["message"]
    error(load('{"tokens": ["a", "b"], "tags": ["O"]}\n'), 422, "bad_support_file")
    error(load('{"tokens": ["a"]}\n'), 422, "bad_support_file")
    error(load("\n\n"), 422, "empty_support")
    error(c.post("/fewshot/import", content=b"\xff\xfe", headers={"content-type": "application/x-ndjson"}),
          422, "bad_support_file")
    error(c.post("/fewshot/export", json={"support": [{"text": "Pad thai", "entities": []}]}), 422, "no_entity")


def test_fewshot_images_per_example_and_for_the_tweet(encoders, tmp_path_factory):
    """Issue 25.9: an image (and caption) per example reaches a few-shot model that reads images;
    an image's file name is never opened by the server."""
    from fewshot_fixtures import fewshot_model
    from tiny_models import make_tiny_bert

    from mner.data.example import Example
    from mner.fewshot.pipeline import FewShotPipeline

    bert = make_tiny_bert(tmp_path_factory.mktemp("fsi") / "bert", max_position_embeddings=64)
    torch.manual_seed(0)
    model = fewshot_model(bert, "proto-maf", visual_view="pixels",
                          image_encoder={"name": str(encoders["resnet"]), "pretrained": False, "image_size": 32}).eval()
    imgs = [random_image(k, size=48) for k in (1, 2, 3)]
    support = [dict(SUPPORT[0], image=b64(png(imgs[0])), image_name="/etc/passwd"),
               dict(SUPPORT[1], image=b64(png(imgs[1])))]
    with TestClient(create_app(pipeline=Pipeline(MAFModel(maf_config(encoders)).eval()), fewshot_model=model)) as c:
        assert c.get("/model").json()["fewshot"]["views"] == ["pixels"]
        r = c.post("/fewshot/predict", json={"support": support, "text": "Massaman curry with Tom",
                                             "image": b64(png(imgs[2]))})
        assert r.status_code == 200, r.text
        bad = c.post("/fewshot/predict", json={"support": [dict(SUPPORT[0], image=b64(b"not an image"))], "text": "x"})
    error(bad, 415, "unsupported_image")
    assert bad.json()["message"].startswith("support[0].image")
    examples = [Example("s0", ("Pad", "thai", "at", "Nong's", "tonight"), ("B-DISH", "I-DISH", "O", "O", "O"), image=imgs[0]),
                Example("s1", ("Green", "curry", "with", "Anna"), ("B-DISH", "I-DISH", "O", "B-PER"), image=imgs[1])]
    bare = FewShotPipeline(model, examples)("Massaman curry with Tom", image=imgs[2])
    close(r.json()["entities"], bare)
    without = FewShotPipeline(model, [ex.replace(image=None) for ex in examples])("Massaman curry with Tom")
    assert [e["confidence"] for e in bare] != [e["confidence"] for e in without] or bare != without
