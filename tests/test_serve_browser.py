"""The web page end to end in a real headless browser: Debian's ``chromium`` driven by
Playwright (pointed at the system browser: Playwright's own download does not work offline).

The test types a tweet, uploads an image, clicks Tag, reads the highlighted entities from the
page (equal to the bare pipeline's), opens an entity's explanation with the keyboard, and saves a
screenshot to ``$MNER_TEST_OUTPUT/serve_browser/`` (default ``build/test-output``; the path is
printed). scripts/setup.sh installs chromium; a missing browser fails the test, never skips it.
"""

from __future__ import annotations

import contextlib
import json
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


@contextlib.contextmanager
def _serving(app):
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started:
        assert time.time() < deadline, "the server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def server(pipe, fewshot):
    with _serving(create_app(pipeline=pipe, config=ServeConfig(max_wait_ms=1), fewshot_model=fewshot)) as url:
        yield url


@pytest.fixture(scope="module")
def plain_server(pipe):
    """A server without a few-shot model."""
    with _serving(create_app(pipeline=pipe, config=ServeConfig(max_wait_ms=1))) as url:
        yield url


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
            shown = _entities(page, "#fs-tweet")
            support = [Example("s0", ("Pad", "thai", "at", "Nong's", "tonight"), ("B-DISH", "I-DISH", "O", "O", "O")),
                       Example("s1", ("Green", "curry", "with", "Anna"), ("B-DISH", "I-DISH", "O", "B-PER"))]
            bare = FewShotPipeline(fewshot, support)("Massaman curry with Tom tonight")
            assert shown == [[e["text"], e["type"]] for e in bare]
            assert page.is_hidden("#error")
            page.screenshot(path=str(_out() / "new_types.png"), full_page=True)
        finally:
            browser.close()


def test_a_fewshot_model_served_with_its_support_set_tags_on_both_tabs(fewshot):
    """Issue 23: ``mner serve FEWSHOT_CKPT --support S`` (here its pipeline): the main tab tags the
    support's types, and the New types tab works with the same model."""
    from playwright.sync_api import sync_playwright

    from mner.data.example import Example
    from mner.fewshot.pipeline import FewShotPipeline

    support = [Example("s0", ("Pad", "thai", "at", "Nong's", "tonight"), ("B-DISH", "I-DISH", "O", "O", "O")),
               Example("s1", ("Green", "curry", "with", "Anna"), ("B-DISH", "I-DISH", "O", "B-PER"))]
    pipe = FewShotPipeline(fewshot, support)
    text = "Massaman curry with Tom tonight 🍛"
    want = [[e["text"], e["type"]] for e in pipe(text)]
    assert want, "the tiny model tags something here (else the comparison below shows nothing)"
    with _serving(create_app(pipeline=pipe, config=ServeConfig(max_wait_ms=1))) as url, sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            _ready(page, url)
            shown = _tag(page, text, "#result:not([hidden])")
            assert shown == want
            assert page.is_hidden("#error")
            page.wait_for_selector("#tabs:not([hidden])")            # the same model answers the New types tab
            page.click("#tab-fewshot")
            page.fill("#fs-example", "Green curry with Anna")
            page.evaluate("() => { const t = document.getElementById('fs-example'); t.setSelectionRange(0, 11); }")
            page.fill("#fs-type", "DISH")
            page.click("#fs-mark")
            page.click("#fs-add")
            page.fill("#fs-text", text)
            page.click("#fs-tag")
            page.wait_for_selector("#fs-result:not([hidden])")
            alone = FewShotPipeline(fewshot, [Example("s0", ("Green", "curry", "with", "Anna"),
                                                      ("B-DISH", "I-DISH", "O", "O"))])(text)
            shown = _entities(page, "#fs-tweet")
            assert shown == [[e["text"], e["type"]] for e in alone]
        finally:
            browser.close()


# ================================================================ issue 25: offsets, view, state, tabs
def _u16(text: str, i: int) -> int:
    """The UTF-16 index (a JavaScript string's) of code point ``i`` of ``text``."""
    return len(text[:i].encode("utf-16-le")) // 2


def _error_text(page) -> str:
    return page.evaluate("[...document.querySelectorAll('.error')].map(e => e.hidden ? '' : e.textContent).join('')")


def _entities(page, where: str = "#tweet") -> list[list[str]]:
    """The highlighted entities drawn in ``where``: ``[[text, type], ...]`` in order."""
    return page.eval_on_selector_all(f"{where} .entity", "els => els.map(e => [e.firstChild.textContent, e.dataset.type])")


def _tag(page, text: str, ready: str) -> list[list[str]]:
    """Type ``text`` into the tag tab, press Tag, wait for ``ready``; the entities drawn."""
    page.fill("#text", text)
    page.click("#tag")
    page.wait_for_selector(ready)
    return _entities(page)


def _ready(page, url: str) -> None:
    page.goto(url + "/")
    page.wait_for_function("document.getElementById('model-line').textContent.startsWith('Model')")


#: two emoji, a ZWJ family, decomposed accents (e + U+0301, o + U+0308), a flag, an RTL word
EMOJI_TEXT = ("\U0001F600\U0001F602 Rob \U0001F469\u200d\U0001F469\u200d\U0001F467 meets Anna in Montre\u0301al "
              "\U0001F1EB\U0001F1F7 with Zoe\u0308 \u05e9\u05dc\u05d5\u05dd London")


def test_highlights_with_emoji_zwj_and_combining_marks(server, pipe):
    """Issue 25.1, tag tab: offsets are code points; the page draws them on its UTF-16 string."""
    from playwright.sync_api import sync_playwright

    expected = pipe(EMOJI_TEXT)
    assert {"Rob", "Anna", "London"} <= {e["text"] for e in expected}
    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            _ready(page, server)
            shown = _tag(page, EMOJI_TEXT, "#tweet .entity")
            assert shown == [[e["text"], e["type"]] for e in expected]
            # the whole tweet is drawn once, in order: the text between and inside the highlights
            drawn = page.eval_on_selector("#tweet", "t => [...t.childNodes].map(n => n.nodeType === 3 ? n.textContent "
                                                    ": n.firstChild.textContent).join('')")
            assert drawn == EMOJI_TEXT
        finally:
            browser.close()


def test_new_types_with_emoji_and_combining_marks(server, fewshot):
    """Issue 25.1, New types tab: a selection after emoji is sent in code points and tags the right words."""
    from playwright.sync_api import sync_playwright

    from mner.fewshot.pipeline import FewShotPipeline
    from mner.serve.fewshot import FewShotRequest, support_examples

    examples = [("\U0001F35C\U0001F35C ramen with Anna \U0001F469\u200d\U0001F469\u200d\U0001F467 tonight",
                 [("ramen", "DISH"), ("Anna", "PER")]),
                ("Cafe\u0301 latte at Zoe\u0308's \U0001F1EB\U0001F1F7", [("Cafe\u0301 latte", "DISH"), ("Zoe\u0308's", "PER")])]
    query = "\U0001F600 pho\u031B with Tom \U0001F469\u200d\U0001F469\u200d\U0001F467 and ramen"
    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport={"width": 375, "height": 740})
            sent = []
            page.on("request", lambda r: sent.append(json.loads(r.post_data)) if r.url.endswith("/fewshot/predict") else None)
            _ready(page, server)
            page.click("#tab-fewshot")
            for text, spans in examples:
                page.fill("#fs-example", text)
                for words, etype in spans:
                    start = text.index(words)
                    page.eval_on_selector("#fs-example", "(box, [s, e]) => { box.focus(); box.setSelectionRange(s, e); }",
                                          [_u16(text, start), _u16(text, start + len(words))])
                    page.fill("#fs-type", etype)
                    page.click("#fs-mark")
                assert _error_text(page) == ""
                page.click("#fs-add")
            listed = page.eval_on_selector_all("#fs-support li", "els => els.map(li => [...li.querySelectorAll('.entity')]"
                                               ".map(e => [e.firstChild.textContent, e.dataset.type]))")
            assert listed == [[list(s) for s in spans] for _, spans in examples]
            page.fill("#fs-text", query)
            page.click("#fs-tag")
            page.wait_for_selector("#fs-result:not([hidden])")
            assert _error_text(page) == ""
            shown = _entities(page, "#fs-tweet")
        finally:
            browser.close()
    (body,) = sent
    for tweet, (text, spans) in zip(body["support"], examples):   # the offsets slice the words in code points
        assert tweet["text"] == text
        assert [(text[e["start"]:e["end"]], e["type"]) for e in tweet["entities"]] == spans
    support = support_examples(FewShotRequest.model_validate(body), ServeConfig())
    bare = FewShotPipeline(fewshot, support)(query)
    assert shown == [[e["text"], e["type"]] for e in bare]


IN_VIEW = """(el) => { const r = el.getBoundingClientRect();
  return r.height > 0 && r.top >= 0 && r.top < window.innerHeight; }"""
FULLY_IN_VIEW = """(el) => { const r = el.getBoundingClientRect();
  return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight; }"""


@pytest.mark.parametrize("width, height", [(1366, 768), (375, 667)])
def test_results_and_errors_come_into_view_and_are_announced(plain_server, tmp_path, width, height):
    """Issue 25.2: with an image attached the result started below the fold; errors sat at the bottom."""
    from playwright.sync_api import sync_playwright

    image = tmp_path / "photo.png"
    random_image(7, size=400).save(image)
    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            failed = []
            page.on("response", lambda r: failed.append((r.url, r.status)) if r.status >= 400 else None)
            _ready(page, plain_server)
            assert failed == []                                       # no 404 (favicon) on load
            page.fill("#text", TEXT)
            page.set_input_files("#image", str(image))
            page.wait_for_selector("#preview:not([hidden])")
            page.click("#tag")
            page.wait_for_selector("#tweet .entity")
            page.wait_for_function(f"({IN_VIEW})(document.getElementById('result'))")
            assert page.eval_on_selector("#tweet .entity >> nth=0", FULLY_IN_VIEW)
            assert page.get_attribute("#status", "aria-live") == "polite"
            assert page.inner_text("#status").startswith(f"{len(TEXT.split())} entities: Obama (PER)")
            page.screenshot(path=str(_out() / f"result_in_view_{width}.png"))
            page.focus("#tweet .entity >> nth=0")
            page.keyboard.press("Enter")
            page.wait_for_selector("#explanation:not([hidden])")
            page.wait_for_function(f"({IN_VIEW})(document.getElementById('explanation'))")
            # an error (a text over the server's 2,000 characters): in view, announced, the old result gone
            page.fill("#text", "word " * 401)
            page.click("#tag")
            page.wait_for_function("document.getElementById('error').textContent.length > 0")
            page.wait_for_function(f"({IN_VIEW})(document.getElementById('error'))")
            assert "2,005 characters" in page.inner_text("#error")
            assert page.get_attribute("#error", "role") == "alert"
            assert page.is_hidden("#result") and page.is_hidden("#explanation")
            assert page.eval_on_selector_all("#tweet .entity", "els => els.length") == 0
        finally:
            browser.close()


def _drop(page, name: str, raw: bytes, mime: str = "image/png") -> None:
    """Drop a file on the drop zone, as a drag from the desktop does."""
    import base64

    dt = page.evaluate_handle("""([name, b64, mime]) => {
        const bin = atob(b64), bytes = new Uint8Array(bin.length);
        for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
        const dt = new DataTransfer(); dt.items.add(new File([bytes], name, { type: mime })); return dt; }""",
                              [name, base64.b64encode(raw).decode(), mime])
    page.dispatch_event("#drop", "drop", {"dataTransfer": dt})


def test_stale_state_is_cleared(plain_server, tmp_path):
    """Issue 25.3: after an error the old entities stayed; removing the image left a broken icon
    and the error; the file input and the drop zone could name different files."""
    import io

    from playwright.sync_api import sync_playwright

    def png(seed: int) -> bytes:
        buf = io.BytesIO()
        random_image(seed, size=64).save(buf, "PNG")
        return buf.getvalue()

    a = tmp_path / "a.png"
    a.write_bytes(png(1))
    chosen = "els => [els[0].files.length ? els[0].files[0].name : null]"
    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            _ready(page, plain_server)
            page.fill("#text", TEXT)
            page.set_input_files("#image", str(a))
            page.wait_for_function("document.getElementById('drop-label').textContent === 'a.png'")
            page.click("#tag")
            page.wait_for_selector("#tweet .entity")
            # a dropped file: the file input names it too
            _drop(page, "b.png", png(2))
            page.wait_for_function("document.getElementById('drop-label').textContent === 'b.png'")
            assert page.eval_on_selector_all("#image", chosen) == ["b.png"]
            assert "b.png" in page.get_attribute("#preview", "alt")
            # a corrupt image: the server refuses it; the earlier result goes
            _drop(page, "c.png", png(3)[:60])
            page.wait_for_function("document.getElementById('drop-label').textContent === 'c.png'")
            assert page.eval_on_selector_all("#image", chosen) == ["c.png"]
            page.click("#tag")
            page.wait_for_function("document.getElementById('error').textContent.length > 0")
            assert "corrupt" in page.inner_text("#error") or "cannot be read" in page.inner_text("#error")
            assert page.is_hidden("#result") and page.eval_on_selector_all("#tweet .entity", "els => els.length") == 0
            # removing the image clears the image, its name everywhere and its error
            page.click("#clear-image")
            assert page.inner_text("#error") == ""
            assert page.is_hidden("#preview") and page.eval_on_selector("#preview", "i => getComputedStyle(i).display") == "none"
            assert page.get_attribute("#preview", "src") is None and page.get_attribute("#preview", "alt") == ""
            assert page.eval_on_selector_all("#image", chosen) == [None]
            assert page.inner_text("#drop-label") == "Drop an image here" and page.is_hidden("#clear-image")
            # a file that is not an image: refused, and nothing names it as the chosen image
            page.set_input_files("#image", str(a))
            page.wait_for_function("document.getElementById('drop-label').textContent === 'a.png'")
            page.set_input_files("#image", {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"})
            page.wait_for_function("document.getElementById('error').textContent.includes('notes.txt')")
            assert page.is_hidden("#preview") and page.eval_on_selector_all("#image", chosen) == [None]
            assert page.inner_text("#drop-label") == "Drop an image here"
        finally:
            browser.close()


def test_new_types_tab_is_hidden_without_a_fewshot_model(plain_server, server):
    """Issue 25.4: ``#tabs {display: flex}`` overrode ``hidden``: the tab showed on every server."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            _ready(page, plain_server)
            assert page.eval_on_selector("#tabs", "t => t.hidden") is True
            assert page.is_hidden("#tabs") and page.is_hidden("#tab-fewshot")
            assert page.eval_on_selector("#tabs", "t => getComputedStyle(t).display") == "none"
            _ready(page, server)                                       # with one, the tab shows
            assert page.is_visible("#tab-fewshot")
        finally:
            browser.close()


def _contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two CSS rgb()/rgba() colours."""
    import re

    def lum(css):
        r, g, b = (int(x) / 255 for x in re.findall(r"[\d.]+", css)[:3])
        f = lambda c: c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
        return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b)

    hi, lo = sorted((lum(a), lum(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_focus_ring_contrast(plain_server):
    """Issue 25.13: the focus ring had 2.15:1 against the page; WCAG asks 3:1."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            _ready(page, plain_server)
            page.click("#text")
            for _ in range(10):
                page.keyboard.press("Tab")
                if page.evaluate("document.activeElement.id") == "tag":
                    break
            style = page.evaluate("""() => { const s = getComputedStyle(document.activeElement);
                return [document.activeElement.id, s.outlineStyle, parseFloat(s.outlineWidth), s.outlineColor,
                        getComputedStyle(document.body).backgroundColor]; }""")
        finally:
            browser.close()
    element, outline, width, colour, background = style
    assert element == "tag" and outline == "solid" and width >= 2
    assert _contrast(colour, background) >= 3.0, (colour, background)


def test_api_docs_render_with_no_network(plain_server):
    """Issue 25.6: /docs loaded Swagger UI from a CDN and was blank offline."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            outside = []

            def only_the_server(route):
                if route.request.url.startswith(plain_server):
                    route.continue_()
                else:
                    outside.append(route.request.url)
                    route.abort()

            page.route("**/*", only_the_server)
            page.goto(plain_server + "/docs")
            page.wait_for_selector(".opblock-summary-path[data-path='/predict']", timeout=30_000)
            paths = page.eval_on_selector_all(".opblock-summary-path", "els => els.map(e => e.dataset.path)")
        finally:
            browser.close()
    assert outside == []
    assert {"/predict", "/fewshot/predict", "/health", "/ready", "/model", "/metrics"} <= set(paths)


def test_one_palette_for_the_page_and_the_pictures(server):
    """Issue 25.11: LOC and MISC had swapped colours between the page and mner explain/report."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex
    from playwright.sync_api import sync_playwright

    from mner.report.explain import _draw_tweet

    text = "Paris and Rome with Anna at Acme eating ramen"
    spans = [("Paris", "LOC"), ("Rome", "MISC"), ("Anna", "PER"), ("Acme", "ORG"), ("ramen", "DISH")]
    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            _ready(page, server)
            page.click("#tab-fewshot")
            page.fill("#fs-example", text)
            for words, etype in spans:
                start = text.index(words)
                page.eval_on_selector("#fs-example", "(box, [s, e]) => { box.focus(); box.setSelectionRange(s, e); }",
                                      [start, start + len(words)])
                page.fill("#fs-type", etype)
                page.click("#fs-mark")
            page_colours = dict(page.eval_on_selector_all(
                "#fs-current .entity", "els => els.map(e => [e.dataset.type, getComputedStyle(e).backgroundColor])"))
        finally:
            browser.close()
    fig, ax = plt.subplots()
    ents = [{"start": text.index(w), "end": text.index(w) + len(w), "type": t} for w, t in spans]
    _draw_tweet(ax, text, ents)
    picture = {t.get_text().rsplit("[", 1)[1].rstrip("]"): to_hex(t.get_bbox_patch().get_facecolor())
               for t in ax.texts if t.get_bbox_patch() is not None}
    plt.close(fig)
    palette = json.loads((ROOT / "src" / "mner" / "serve" / "static" / "palette.json").read_text())
    rgb = lambda h: "rgb({}, {}, {})".format(*(int(h[i:i + 2], 16) for i in (1, 3, 5)))
    for _, t in spans:
        want = palette["types"].get(t, palette["more"][0])
        assert page_colours[t] == rgb(want) and picture[t] == want, (t, page_colours[t], picture[t], want)


# ================================================================ issue 25: 5 (card, examples), 7, 8, 9
def _demo_run(folder: Path) -> Path:
    """A quickstart-like run folder: the demo corpus stamp, a test report, a text-only run beside it."""
    for sub, f1 in (("", 0.8125), ("text-only", 0.3375)):
        run = folder / sub if sub else folder
        corpus = folder / "demo-data" / "tweets"
        corpus.mkdir(parents=True, exist_ok=True)
        run.mkdir(parents=True, exist_ok=True)
        (run / "experiment.json").write_text(json.dumps({"data": {"corpus": str(corpus)}}))
        (run / "test_report.json").write_text(json.dumps({"n_sequences": 144, "micro": {"f1": f1},
                                                          "per_type": {"PER": {"f1": 0.9}, "MISC": {"f1": 0.25}}}))
    (folder / "demo-data" / "VERSION").write_text("demo 1 seed 0 sizes (360, 72, 144)")
    return folder


@pytest.fixture(scope="module")
def card_server(pipe, tmp_path_factory):
    run = _demo_run(tmp_path_factory.mktemp("card") / "quickstart")
    with _serving(create_app(pipeline=pipe, config=ServeConfig(max_wait_ms=1), card_from=run)) as url:
        yield url


NO_HSCROLL = "document.documentElement.scrollWidth <= document.documentElement.clientWidth"


def test_model_card_says_what_the_model_is_and_that_it_is_a_toy(card_server, plain_server):
    """Issue 25.5: nothing said what the model is, how good it is, or that the demo model is a toy;
    the confidence showed only on hover (phones cannot hover)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport={"width": 375, "height": 740})
            _ready(page, card_server)
            assert page.is_visible("#card-demo") and "toy demo model" in page.inner_text("#card-demo")
            assert "0.81" in page.inner_text("#card-demo")
            assert page.inner_text("#card-summary") == "About this model: MAF, test F1 0.81 (a toy demo)"
            page.click("#card-summary")
            facts = page.inner_text("#card-facts")
            assert "F1 0.81 on its test split (144 tweets); per type: PER 0.90, MISC 0.25" in facts
            assert "read from test_report.json" in facts and "text-only tagger trained beside it: F1 0.34" in facts
            assert "demo-data/tweets (the quickstart's demo corpus)" in facts and "pixels" in facts
            types = page.eval_on_selector_all("#card-types li", "els => els.map(e => e.textContent)")
            assert [t.split()[0] for t in types] == ["LOC", "MISC", "ORG", "PER"]
            assert any(t.startswith("PER people") for t in types) and any("a cat" in t for t in types)
            # confidence without hovering, and the type's meaning beside the result
            page.fill("#text", TEXT)
            page.click("#tag")
            page.wait_for_selector("#entity-list li")
            rows = page.eval_on_selector_all("#entity-list li", "els => els.map(e => e.innerText)")
            assert len(rows) == len(TEXT.split()) and all("confidence 1.00" in r for r in rows)
            assert page.is_visible("#entity-list li .confidence >> nth=0")
            assert "people: a person's name" in page.inner_text("#legend")
            assert page.evaluate(NO_HSCROLL)
            page.screenshot(path=str(_out() / "model_card_375.png"), full_page=True)
            # a model served without its run: the card says there is no measurement
            _ready(page, plain_server)
            assert page.is_hidden("#card-demo")
            assert page.inner_text("#card-summary") == "About this model: MAF, not measured"
            page.click("#card-summary")
            assert "no measurement" in page.inner_text("#card-facts")
        finally:
            browser.close()


def test_try_an_example_tags_the_packaged_sentence_and_photos(plain_server, pipe):
    """Issue 25.5: an example to try, from the photos and sentences the package ships."""
    import base64
    import io

    from PIL import Image
    from playwright.sync_api import sync_playwright

    from mner.demo import demo_pair

    sentence, person, cat = demo_pair()
    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            sent = []
            page.on("request", lambda r: sent.append(json.loads(r.post_data)) if r.url.endswith("/predict") else None)
            _ready(page, plain_server)
            shown = []
            for k in range(2):
                with page.expect_response(lambda r: r.url.endswith("/predict")):
                    page.focus("#example")
                    page.keyboard.press("Enter")                    # by keyboard, as every control
                page.wait_for_function("!document.getElementById('example').disabled")
                assert page.inner_text("#example-source").startswith(f"Example {k + 1} of ")
                shown.append(_entities(page))
                assert page.input_value("#text") == sentence and page.is_visible("#preview")
        finally:
            browser.close()
    assert [b["text"] for b in sent] == [sentence, sentence]
    images = [Image.open(io.BytesIO(base64.b64decode(b["image"].partition(",")[2]))) for b in sent]
    assert [im.size for im in images] == [person.size, cat.size]                  # the face, then the cat
    for im, got in zip(images, shown):
        assert got == [[e["text"], e["type"]] for e in pipe(sentence, image=im.convert("RGB"))]


@pytest.fixture(scope="module")
def attention_model(encoders):
    """A model of its own (its attention is set by the test): every word a person."""
    torch.manual_seed(0)
    model = MAFModel(maf_config(encoders, view="pixels")).eval()
    with torch.no_grad():
        model.emissions.weight.zero_()
        model.emissions.bias.fill_(-20.0)
        model.emissions.bias[model.label_set.index("B-PER")] = 20.0
    return model


@pytest.fixture(scope="module")
def attention_server(attention_model):
    with _serving(create_app(pipeline=Pipeline(attention_model), config=ServeConfig(max_wait_ms=1))) as url:
        yield url


HEAT_ALPHA = """() => { const c = document.getElementById('heatmap');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let m = 0; for (let i = 3; i < d.length; i += 4) m = Math.max(m, d[i]); return m; }"""


def test_explanation_is_relative_to_uniform_and_says_near_uniform(attention_server, attention_model, tmp_path):
    """Issue 25.7: each map was stretched to its own range, so near-uniform attention showed as a
    bold red spot; there was no colour scale and the caption said "brighter" for a redder overlay."""
    from playwright.sync_api import sync_playwright

    from mner.explain.palette import attention_levels, attention_rgba

    image = tmp_path / "photo.png"
    random_image(9, size=96).save(image)
    attention = attention_model.interaction.blocks[-1].attention
    d = attention.embed_dim
    answers = []

    def tag_and_explain(page):
        with page.expect_response(lambda r: r.url.endswith("/predict")) as answer:
            page.click("#tag")
        page.wait_for_selector("#tweet .entity")
        answers.append(answer.value.json())
        page.focus("#tweet .entity >> nth=0")
        page.keyboard.press("Enter")
        page.wait_for_selector("#heat-wrap:not([hidden])")
        page.wait_for_function("document.getElementById('heatmap').dataset.maxRatio !== undefined")

    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            _ready(page, attention_server)
            page.fill("#text", TEXT)
            page.set_input_files("#image", str(image))
            page.wait_for_selector("#preview:not([hidden])")
            with torch.no_grad():        # zero queries: every region gets the same share
                attention.in_proj_weight[:d].zero_()
                attention.in_proj_bias[:d].zero_()
            tag_and_explain(page)
            assert page.is_visible("#uniform-note")
            note = page.inner_text("#uniform-note")
            assert note.startswith("Attention is near uniform") and "at most 1.0 times" in note
            assert page.evaluate(HEAT_ALPHA) == 0                       # a uniform map draws nothing
            assert page.is_visible("#attention-scale")
            ticks = page.eval_on_selector_all("#scale-ticks span", "els => els.map(e => e.textContent)")
            assert ticks == ["1×", "2×", "4×", "8× or more"] and "1×: every region" in page.inner_text("#attention-scale")
            caption = page.inner_text("#heat-caption")
            assert "even share" in caption and "brighter" not in caption and "full red at 8 times" in caption
            page.screenshot(path=str(_out() / "near_uniform.png"), full_page=True)
            with torch.no_grad():        # a constant query against spread keys: a peak of about 4x, a spread below it
                torch.manual_seed(1)
                attention.in_proj_bias[:d].fill_(3.0)
                attention.in_proj_weight[d:2 * d].normal_(0, 0.5)
            tag_and_explain(page)
            assert page.is_hidden("#uniform-note")
            assert float(page.get_attribute("#heatmap", "data-max-ratio")) > 2
            assert page.evaluate(HEAT_ALPHA) > 100
            # each region's opacity is its level on the shared scale (relative to uniform), as the pictures draw it
            alphas = page.evaluate("""() => { const c = document.getElementById('heatmap');
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                const out = []; for (let i = 3; i < d.length; i += 4) out.push(d[i]); return out; }""")
            weights = answers[-1]["entities"][0]["explanation"]["pixels"]["weights"]
            want = [round(255 * attention_rgba(v)[3]) for v in attention_levels(weights)]
            assert len(alphas) == len(want) and max(abs(a - b) for a, b in zip(alphas, want)) <= 1
            page.screenshot(path=str(_out() / "peaked_attention.png"), full_page=True)
        finally:
            browser.close()


def _noise_jpeg(path: Path, w: int, h: int) -> Path:
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").save(path, "JPEG", quality=95)
    return path


def test_a_large_photo_is_shrunk_before_upload(plain_server, tmp_path):
    """Issue 25.8: a phone photo of several MB went up whole (the model sees 224 px)."""
    import base64
    import io

    from PIL import Image
    from playwright.sync_api import sync_playwright

    photo = _noise_jpeg(tmp_path / "phone.jpg", 2400, 1800)
    assert photo.stat().st_size > 2_000_000
    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport={"width": 375, "height": 740})
            bodies = []
            page.on("request", lambda r: bodies.append(r.post_data_buffer) if r.url.endswith("/predict") else None)
            _ready(page, plain_server)
            page.fill("#text", TEXT)
            page.set_input_files("#image", str(photo))
            page.wait_for_selector("#image-note:not([hidden])")
            assert page.inner_text("#image-note").startswith("Shrunk from 2,400 × 1,800 to 448 × 336 pixels")
            assert page.inner_text("#drop-label") == "phone.jpg"
            page.click("#tag")
            page.wait_for_selector("#tweet .entity")
        finally:
            browser.close()
    (body,) = bodies
    assert len(body) < 200_000, len(body)                          # the request, not the 2+ MB photo
    sent = Image.open(io.BytesIO(base64.b64decode(json.loads(body)["image"].partition(",")[2])))
    assert sent.format == "JPEG" and sent.size == (448, 336)


@pytest.fixture(scope="module")
def strict_server(pipe):
    """Small limits: a 20 kB body, 40 characters of text."""
    with _serving(create_app(pipeline=pipe, config=ServeConfig(max_wait_ms=1, max_body_bytes=20_000,
                                                               max_text_chars=40))) as url:
        yield url


def test_errors_speak_to_the_pages_user(strict_server, tmp_path):
    """Issue 25.8: a big photo was answered "start the server with a larger --max-body-mb"."""
    from playwright.sync_api import sync_playwright

    photo = tmp_path / "noise.png"
    random_image(5, size=440).save(photo)                       # under 448 px: sent as it is, ~600 kB
    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            _ready(page, strict_server)
            page.fill("#text", "Obama in Paris")
            page.set_input_files("#image", str(photo))
            page.wait_for_selector("#preview:not([hidden])")
            page.click("#tag")
            page.wait_for_function("document.getElementById('error').textContent.length > 0")
            said = [page.inner_text("#error")]
            assert said[0] == "The photo is too large to send, even shrunk by this page; choose a smaller photo."
            page.click("#clear-image")
            page.fill("#text", "Obama meets Merkel in Berlin and then in Paris again")
            page.click("#tag")
            page.wait_for_function("document.getElementById('error').textContent.length > 0")
            said.append(page.inner_text("#error"))
            assert said[1] == "The tweet is 52 characters long; this page reads at most 40. Shorten it."
        finally:
            browser.close()
    for message in said:
        assert "--" not in message and "server with" not in message


def _select_and_mark(page, text: str, words: str, etype: str) -> None:
    start = text.index(words)
    page.eval_on_selector("#fs-example", "(box, [s, e]) => { box.focus(); box.setSelectionRange(s, e); }",
                          [_u16(text, start), _u16(text, start + len(words))])
    page.fill("#fs-type", etype)
    page.click("#fs-mark")


def _listed(page) -> list:
    return page.eval_on_selector_all("#fs-support li", "els => els.map(li => [...li.querySelectorAll('.entity')]"
                                     ".map(e => [e.firstChild.textContent, e.dataset.type]))")


def test_new_types_unmark_remove_and_edit_examples(server, fewshot):
    """Issue 25.9: no way to unmark a span or remove an example; the few-shot model was not named."""
    from playwright.sync_api import sync_playwright

    from mner.fewshot.pipeline import FewShotPipeline
    from mner.serve.fewshot import FewShotRequest, support_examples

    query = "Massaman curry with Tom tonight"
    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport={"width": 375, "height": 740})
            sent = []
            page.on("request", lambda r: sent.append(json.loads(r.post_data)) if r.url.endswith("/fewshot/predict") else None)
            _ready(page, server)
            page.click("#tab-fewshot")
            assert page.inner_text("#fs-model").startswith("New types are tagged by the few-shot model protobert")
            assert page.is_hidden("#fs-image-row") and page.is_hidden("#fs-caption-row")   # a text-only model
            # example 1: two marks, one unmarked by keyboard (the mark is a button)
            text1 = "Pad thai at Nong's tonight"
            page.fill("#fs-example", text1)
            _select_and_mark(page, text1, "Pad thai", "DISH")
            _select_and_mark(page, text1, "Nong's", "PLACE")
            assert page.eval_on_selector_all("#fs-current .entity", "els => els.length") == 2
            page.focus("#fs-current .entity >> nth=1")
            assert page.get_attribute("#fs-current .entity >> nth=1", "aria-label") == "Nong's: PLACE. Press to unmark"
            page.keyboard.press("Enter")
            assert page.eval_on_selector_all("#fs-current .entity", "els => els.map(e => e.firstChild.textContent)") == ["Pad thai"]
            assert page.inner_text("#status") == "Unmarked Nong's (PLACE)."
            page.click("#fs-add")
            for text, spans in (("Green curry with Anna", [("Green curry", "DISH"), ("Anna", "PER")]),
                                ("Tom Yum at Kim's", [("Tom Yum", "DISH")])):
                page.fill("#fs-example", text)
                for words, etype in spans:
                    _select_and_mark(page, text, words, etype)
                page.click("#fs-add")
            assert len(_listed(page)) == 3
            # remove example 2 by keyboard; the focus stays in the list
            page.focus("#fs-support li >> nth=1 >> .fs-remove")
            assert page.get_attribute("#fs-support li >> nth=1 >> .fs-remove", "aria-label").startswith("Remove example 2: Green")
            page.keyboard.press("Enter")
            assert _listed(page) == [[["Pad thai", "DISH"]], [["Tom Yum", "DISH"]]]
            assert page.evaluate("document.activeElement.className").endswith("fs-remove")
            # edit example 2: back in the editor, a mark added, saved in its place
            page.click("#fs-support li >> nth=1 >> text=Edit")
            assert page.input_value("#fs-example") == "Tom Yum at Kim's" and page.is_visible("#fs-cancel")
            _select_and_mark(page, "Tom Yum at Kim's", "Kim's", "PLACE")
            page.click("#fs-add")
            assert _listed(page) == [[["Pad thai", "DISH"]], [["Tom Yum", "DISH"], ["Kim's", "PLACE"]]]
            page.fill("#fs-text", query)
            page.click("#fs-tag")
            page.wait_for_selector("#fs-result:not([hidden])")
            shown = _entities(page, "#fs-tweet")
            assert page.eval_on_selector_all("#fs-entity-list li", "els => els.length") == len(shown)
            assert page.evaluate(NO_HSCROLL)
        finally:
            browser.close()
    (body,) = sent
    assert body["support"] == [
        {"text": text1, "entities": [{"start": 0, "end": 8, "type": "DISH"}]},
        {"text": "Tom Yum at Kim's", "entities": [{"start": 0, "end": 7, "type": "DISH"}, {"start": 11, "end": 16, "type": "PLACE"}]}]
    bare = FewShotPipeline(fewshot, support_examples(FewShotRequest.model_validate(body), ServeConfig()))(query)
    assert shown == [[e["text"], e["type"]] for e in bare]


@pytest.fixture(scope="module")
def caption_fewshot(tmp_path_factory):
    """A few-shot model that reads captions (proto-MAF, caption view)."""
    from fewshot_fixtures import fewshot_model
    from tiny_models import make_tiny_bert

    bert = make_tiny_bert(tmp_path_factory.mktemp("fsc") / "bert", max_position_embeddings=64)
    torch.manual_seed(0)
    return fewshot_model(bert, "proto-maf").eval()


@pytest.fixture(scope="module")
def caption_fewshot_server(pipe, caption_fewshot):
    with _serving(create_app(pipeline=pipe, config=ServeConfig(max_wait_ms=1), fewshot_model=caption_fewshot)) as url:
        yield url


def test_support_set_export_then_load_gives_the_same_support_set(caption_fewshot_server, caption_fewshot, tmp_path):
    """Issue 25.9: the support set saved as the JSONL ``mner fewshot predict --support`` reads, and
    loaded back; a caption per example for a model that reads captions."""
    from playwright.sync_api import sync_playwright

    from mner.data.formats import read_file
    from mner.fewshot.pipeline import FewShotPipeline
    from mner.serve.fewshot import FewShotRequest, support_examples

    examples = [("\U0001F35C\U0001F35C ramen with Anna \U0001F469\u200d\U0001F469\u200d\U0001F467 tonight",
                 [("ramen", "DISH"), ("Anna", "PER")], "a bowl of noodles"),
                ("Cafe\u0301 latte at Zoe\u0308's", [("Cafe\u0301 latte", "DISH")], None),
                ("Pho with Tom", [("Pho", "DISH"), ("Tom", "PER")], "soup on a table")]
    query = "\U0001F600 ramen with Tom and latte"
    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            sent = []
            page.on("request", lambda r: sent.append(json.loads(r.post_data)) if r.url.endswith("/fewshot/predict") else None)
            _ready(page, caption_fewshot_server)
            page.click("#tab-fewshot")
            assert page.is_visible("#fs-caption-row") and page.is_visible("#fs-query-caption-row")
            assert page.is_hidden("#fs-image-row")
            for text, spans, caption in examples:
                page.fill("#fs-example", text)
                for words, etype in spans:
                    _select_and_mark(page, text, words, etype)
                page.fill("#fs-caption", caption or "")
                page.click("#fs-add")
            listed = _listed(page)
            page.fill("#fs-text", query)
            page.fill("#fs-query-caption", "noodles and coffee")
            page.click("#fs-tag")
            page.wait_for_selector("#fs-result:not([hidden])")
            first = _entities(page, "#fs-tweet")
            with page.expect_download() as download:
                page.click("#fs-export")
            saved = tmp_path / download.value.suggested_filename
            download.value.save_as(saved)
            # every example removed, then the file loaded: the same list, the same request, the same answer
            while page.eval_on_selector_all("#fs-support li", "els => els.length"):
                page.click("#fs-support li >> nth=0 >> .fs-remove")
            assert page.is_visible("#fs-empty")
            page.set_input_files("#fs-load", str(saved))
            page.wait_for_function(f"document.querySelectorAll('#fs-support li').length === {len(examples)}")
            assert _listed(page) == listed
            assert "caption: a bowl of noodles" in page.inner_text("#fs-support li >> nth=0")
            with page.expect_response(lambda r: r.url.endswith("/fewshot/predict")):
                page.click("#fs-tag")
            page.wait_for_function("!document.getElementById('fs-tag').disabled")
            page.wait_for_selector("#fs-result:not([hidden])")
            second = _entities(page, "#fs-tweet")
        finally:
            browser.close()
    assert saved.name == "support.jsonl"
    before, after = sent[0], sent[-1]
    assert len(sent) == 2 and after == before                       # the same support set, the same tweet
    assert [s.get("caption") for s in before["support"]] == [c for *_, c in examples]
    for tweet, (text, spans, _) in zip(before["support"], examples):
        assert [(text[e["start"]:e["end"]], e["type"]) for e in tweet["entities"]] == spans
    # the file is what mner fewshot predict --support reads: tokens and IOB2 tags, captions
    support = support_examples(FewShotRequest.model_validate(before), ServeConfig())
    got = read_file(saved, "auto")
    assert [(ex.tokens, ex.tags, ex.caption) for ex in got] == [(ex.tokens, ex.tags, ex.caption) for ex in support]
    bare = FewShotPipeline(caption_fewshot, support)(query, caption="noodles and coffee")
    assert first == second == [[e["text"], e["type"]] for e in bare]
