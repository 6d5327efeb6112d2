#!/usr/bin/env python
"""Screenshots of the web page for ``docs/serve.md``, made offline in headless chromium.

    .venv/bin/python scripts/screenshots.py                  # runs/quickstart when it is there, else a tiny model
    .venv/bin/python scripts/screenshots.py --model runs/quickstart --fewshot runs/mousing-2017-per-loc
    .venv/bin/python scripts/screenshots.py --tiny           # the tiny model even when runs/quickstart is there

Writes ``docs/images/serve-desktop.png`` (1366 px wide) and ``docs/images/serve-phone.png`` (375 px
wide), whole pages: the model card, *Try an example* pressed once (the quickstart's sentence with
the face photo), the tagged tweet and the first entity's explanation; and
``docs/images/serve-new-types.png`` (1366 px) when the server has a few-shot model.

The model: ``--model`` (a checkpoint or a training run folder), by default ``runs/quickstart``
when it holds a model. Without one, the tiny random model of ``tests/test_serve_browser.py``
(tiny BERT and ResNet built on the spot, every word tagged PER, random attention) and a tiny
random protobert few-shot model: the pictures then show the page, not a trained model (its card
says "not measured"). The chromium is Debian's (``scripts/setup.sh`` installs it; ``MNER_CHROMIUM``
names another); nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "runs" / "quickstart"


def tiny_models(folder: Path):
    """The browser tests' tiny MAF (every word PER) and a tiny protobert few-shot model."""
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    from fewshot_fixtures import fewshot_model
    from model_fixtures import maf_config
    from tiny_models import make_tiny_bert, make_tiny_resnet, write_preprocessor_config

    from mner.encoders import IMAGENET_MEAN, IMAGENET_STD
    from mner.models import MAFModel
    from mner.pipeline import Pipeline

    enc = {"bert": make_tiny_bert(folder / "bert", max_position_embeddings=64), "resnet": make_tiny_resnet(folder / "resnet")}
    write_preprocessor_config(enc["resnet"], image_size=32, mean=IMAGENET_MEAN, std=IMAGENET_STD, shortest_edge=36)
    torch.manual_seed(0)
    model = MAFModel(maf_config(enc, view="pixels")).eval()
    with torch.no_grad():
        model.emissions.weight.zero_()
        model.emissions.bias.fill_(-20.0)
        model.emissions.bias[model.label_set.index("B-PER")] = 20.0
    torch.manual_seed(0)
    return Pipeline(model), fewshot_model(enc["bert"], "protobert").eval()


@contextlib.contextmanager
def serving(app):
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not server.started:
        if time.time() > deadline:
            raise SystemExit("the server did not start in 60 s")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def shoot(url: str, out: Path, chromium: str, fewshot: bool) -> list[Path]:
    from playwright.sync_api import sync_playwright

    written = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            for name, width, height in (("serve-desktop", 1366, 768), ("serve-phone", 375, 667)):
                page = browser.new_page(viewport={"width": width, "height": height})
                outside = []
                page.on("request", lambda r: outside.append(r.url) if not r.url.startswith((url, "data:", "blob:")) else None)
                page.goto(url + "/")
                page.wait_for_function("document.getElementById('model-line').textContent.startsWith('Model')",
                                       timeout=120_000)
                with page.expect_response(lambda r: r.url.endswith("/predict"), timeout=120_000):
                    page.click("#example")
                page.wait_for_function("!document.getElementById('example').disabled")
                if page.eval_on_selector_all("#tweet .entity", "els => els.length"):
                    page.click("#tweet .entity >> nth=0")
                    page.wait_for_selector("#explanation:not([hidden])")
                page.wait_for_timeout(300)          # the heatmap's image decodes
                page.evaluate("window.scrollTo(0, 0)")
                path = out / f"{name}.png"
                page.screenshot(path=str(path), full_page=True)
                if outside:
                    raise SystemExit(f"the page asked for something outside the server: {outside}")
                written.append(path)
                if fewshot and width > 1000:
                    page.click("#tab-fewshot")
                    for text, spans in (("Pad thai at Nong's tonight", [("Pad thai", "DISH"), ("Nong's", "PLACE")]),
                                        ("Green curry with Anna at Kim's", [("Green curry", "DISH"), ("Kim's", "PLACE")])):
                        page.fill("#fs-example", text)
                        for words, etype in spans:
                            s = text.index(words)
                            page.eval_on_selector("#fs-example", "(b, [s, e]) => { b.focus(); b.setSelectionRange(s, e); }",
                                                  [s, s + len(words)])
                            page.fill("#fs-type", etype)
                            page.click("#fs-mark")
                        page.click("#fs-add")
                    page.fill("#fs-text", "Massaman curry at Tom's tonight")
                    page.click("#fs-tag")
                    page.wait_for_selector("#fs-result:not([hidden])", timeout=120_000)
                    page.evaluate("window.scrollTo(0, 0)")
                    path = out / "serve-new-types.png"
                    page.screenshot(path=str(path), full_page=True)
                    written.append(path)
                page.close()
        finally:
            browser.close()
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=None, help="checkpoint or training run (default: runs/quickstart when present)")
    ap.add_argument("--fewshot", type=Path, default=None, help="a few-shot checkpoint for the New types tab")
    ap.add_argument("--tiny", action="store_true", help="the tiny random model, even when runs/quickstart is there")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = ap.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch

    torch.set_num_threads(1)
    from mner.serve import ServeConfig, create_app

    chromium = os.environ.get("MNER_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).is_file():
        raise SystemExit(f"no chromium at {chromium}: run scripts/setup.sh as root, or set MNER_CHROMIUM")
    model = args.model
    if model is None and not args.tiny and ((QUICKSTART / "best" / "config.json").is_file()
                                           or (QUICKSTART / "config.json").is_file()):
        model = QUICKSTART
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mner-screenshots-") as tmp:
        config = ServeConfig(max_wait_ms=1)
        if model is not None:
            print(f"model: {model}" + (f", few-shot model: {args.fewshot}" if args.fewshot else ""))
            app = create_app(model, config=config, device="cpu", fewshot=args.fewshot)
            fewshot = args.fewshot is not None
        else:
            print("model: the tiny random model of the browser tests (no runs/quickstart here)")
            pipe, fs = tiny_models(Path(tmp))
            app = create_app(pipeline=pipe, config=config, fewshot_model=fs)
            fewshot = True
        with serving(app) as url:
            for path in shoot(url, args.out, chromium, fewshot):
                print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
