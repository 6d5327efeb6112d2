"""The web page end to end in a real headless browser: Debian's ``chromium`` driven by
Playwright (pointed at the system browser: Playwright's own download does not work offline).

The test types a tweet, uploads an image, clicks Tag, reads the highlighted entities from the
page (equal to the bare pipeline's), opens an entity's explanation with the keyboard, and saves a
screenshot to ``$MNER_TEST_OUTPUT/serve_browser/`` (default ``build/test-output``; the path is
printed). scripts/setup.sh installs chromium; a missing browser fails the test, never skips it.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
import torch

from mner.models import MAFModel
from mner.pipeline import Pipeline
from mner.serve import ServeConfig, create_app
from model_fixtures import encoders, maf_config, one_thread, random_image  # noqa: F401  (fixtures)

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("MNER_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
TEXT = "Obama meets Merkel in Berlin"


@pytest.fixture(scope="module")
def pipe(encoders) -> Pipeline:
    torch.manual_seed(0)
    model = MAFModel(maf_config(encoders, view="pixels")).eval()
    with torch.no_grad():  # deterministic highlights: persons and locations by word position
        model.emissions.weight.zero_()
        model.emissions.bias.fill_(-20.0)
        model.emissions.bias[model.label_set.index("B-PER")] = 20.0
    return Pipeline(model)


@pytest.fixture(scope="module")
def fewshot(tmp_path_factory):
    from fewshot_fixtures import fewshot_model
    from tiny_models import make_tiny_bert

    bert = make_tiny_bert(tmp_path_factory.mktemp("fs") / "bert", max_position_embeddings=64)
    torch.manual_seed(0)
    return fewshot_model(bert, "protobert").eval()


@pytest.fixture(scope="module")
def server(pipe, fewshot):
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(pipeline=pipe, config=ServeConfig(max_wait_ms=1), fewshot_model=fewshot),
                                        host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started:
        assert time.time() < deadline, "the server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


def _browser(p):
    assert Path(CHROMIUM).is_file(), (f"no chromium at {CHROMIUM}: run scripts/setup.sh as root (it runs "
                                      "apt-get install chromium) or set MNER_CHROMIUM")
    return p.chromium.launch(executable_path=CHROMIUM, headless=True,
                             args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])


def _out() -> Path:
    out = Path(os.environ.get("MNER_TEST_OUTPUT", ROOT / "build" / "test-output")) / "serve_browser"
    out.mkdir(parents=True, exist_ok=True)
    return out


def test_tag_a_tweet_with_its_image_in_chromium(server, pipe, tmp_path):
    from playwright.sync_api import sync_playwright

    image = tmp_path / "photo.png"
    random_image(4, size=96).save(image)
    out = _out()
    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844})   # a phone-sized screen
            requests = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(server + "/")
            page.wait_for_function("document.getElementById('model-line').textContent.startsWith('Model')")
            page.fill("#text", TEXT)
            page.set_input_files("#image", str(image))
            page.wait_for_selector("#preview:not([hidden])")
            page.click("#tag")
            page.wait_for_selector("#tweet .entity")
            shown = page.eval_on_selector_all(
                "#tweet .entity", "els => els.map(e => [e.firstChild.textContent, e.dataset.type, e.title])")
            expected = pipe(TEXT, image=str(image))
            assert [(t, ty) for t, ty, _ in shown] == [(e["text"], e["type"]) for e in expected]
            assert all(title.startswith(f"{ty}, confidence ") for _, ty, title in shown)
            assert page.inner_text("#tweet").replace("PER", "").split() == TEXT.split()
            assert page.inner_text("#match").startswith("The image fits the text: 0.")
            # keyboard: Tab to the second entity, Enter opens what it looked at
            page.focus("#tweet .entity >> nth=0")
            page.keyboard.press("Tab")
            page.keyboard.press("Enter")
            page.wait_for_selector("#heat-wrap:not([hidden])")
            assert page.get_attribute("#tweet .entity >> nth=1", "aria-pressed") == "true"
            assert page.inner_text("#explanation-title").startswith(f"What \u201c{shown[1][0]}\u201d")
            w, h = page.eval_on_selector("#heatmap", "c => [c.width, c.height]")
            assert w * h > 1 and float(page.get_attribute("#heatmap", "data-max")) > 0
            shot = out / "tagged_tweet.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot: {shot}")
            assert shot.stat().st_size > 5000
            assert all(u.startswith(server) or u.startswith("data:") for u in requests), requests  # no CDN
        finally:
            browser.close()


def test_define_new_types_by_keyboard_and_tag_with_them(server, fewshot):
    """The few-shot tab: two examples annotated by keyboard selection, then a new tweet tagged."""
    from playwright.sync_api import sync_playwright

    from mner.data.example import Example
    from mner.fewshot.pipeline import FewShotPipeline

    def annotate(page, text: str, spans: list[tuple[str, str]]):
        page.fill("#fs-example", text)
        for words, etype in spans:
            start = text.index(words)
            page.focus("#fs-example")
            page.keyboard.press("Control+Home")
            for _ in range(start):
                page.keyboard.press("ArrowRight")
            for _ in range(len(words)):
                page.keyboard.press("Shift+ArrowRight")
            page.fill("#fs-type", etype)
            page.focus("#fs-mark")
            page.keyboard.press("Enter")
        page.focus("#fs-add")
        page.keyboard.press("Enter")

    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844})
            page.goto(server + "/")
            page.wait_for_selector("#tabs:not([hidden])")
            page.focus("#tab-tag")
            page.keyboard.press("ArrowRight")                     # to the "New types" tab
            page.wait_for_selector("#panel-fewshot:not([hidden])")
            annotate(page, "Pad thai at Nong's tonight", [("Pad thai", "DISH")])
            annotate(page, "Green curry with Anna", [("Green curry", "DISH"), ("Anna", "PER")])
            listed = page.eval_on_selector_all("#fs-support li", "els => els.map(li => "
                                               "[...li.querySelectorAll('.entity')].map(e => [e.firstChild.textContent, e.dataset.type]))")
            assert listed == [[["Pad thai", "DISH"]], [["Green curry", "DISH"], ["Anna", "PER"]]]
            page.fill("#fs-text", "Massaman curry with Tom tonight")
            page.click("#fs-tag")
            page.wait_for_selector("#fs-result:not([hidden])")
            shown = page.eval_on_selector_all("#fs-tweet .entity", "els => els.map(e => [e.firstChild.textContent, e.dataset.type])")
            support = [Example("s0", ("Pad", "thai", "at", "Nong's", "tonight"), ("B-DISH", "I-DISH", "O", "O", "O")),
                       Example("s1", ("Green", "curry", "with", "Anna"), ("B-DISH", "I-DISH", "O", "B-PER"))]
            bare = FewShotPipeline(fewshot, support)("Massaman curry with Tom tonight")
            assert shown == [[e["text"], e["type"]] for e in bare]
            assert page.is_hidden("#error")
            page.screenshot(path=str(_out() / "new_types.png"), full_page=True)
        finally:
            browser.close()
