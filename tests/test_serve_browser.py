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
            shown = page.eval_on_selector_all("#fs-tweet .entity", "els => els.map(e => [e.firstChild.textContent, e.dataset.type])")
            support = [Example("s0", ("Pad", "thai", "at", "Nong's", "tonight"), ("B-DISH", "I-DISH", "O", "O", "O")),
                       Example("s1", ("Green", "curry", "with", "Anna"), ("B-DISH", "I-DISH", "O", "B-PER"))]
            bare = FewShotPipeline(fewshot, support)("Massaman curry with Tom tonight")
            assert shown == [[e["text"], e["type"]] for e in bare]
            assert page.is_hidden("#error")
            page.screenshot(path=str(_out() / "new_types.png"), full_page=True)
        finally:
            browser.close()


# ================================================================ issue 25: offsets, view, state, tabs
def _u16(text: str, i: int) -> int:
    """The UTF-16 index (a JavaScript string's) of code point ``i`` of ``text``."""
    return len(text[:i].encode("utf-16-le")) // 2


def _error_text(page) -> str:
    return page.evaluate("[...document.querySelectorAll('.error')].map(e => e.hidden ? '' : e.textContent).join('')")


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
            page.fill("#text", EMOJI_TEXT)
            page.click("#tag")
            page.wait_for_selector("#tweet .entity")
            shown = page.eval_on_selector_all("#tweet .entity", "els => els.map(e => [e.firstChild.textContent, e.dataset.type])")
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
            shown = page.eval_on_selector_all("#fs-tweet .entity", "els => els.map(e => [e.firstChild.textContent, e.dataset.type])")
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
