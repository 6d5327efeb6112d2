"""``mner report RUN_DIR [RUN_DIR ...] --out DIR``: pictures of training runs and a small HTML index.

Per run (what ``mner train`` writes: ``metrics.jsonl``, ``test_report.json``,
``predictions/test.conll``, ``experiment.json``, ``best/``):

* learning curves: the training loss and its parts (``loss_mner``, ``loss_cm``, ``loss_ca``) per
  step, the dev F1 (overall and per type) per epoch;
* a confusion matrix of entity types on the test predictions: a gold span whose boundaries a
  predicted span shares counts in (gold type, predicted type); a gold span no prediction shares
  is *missed*; a predicted span no gold span shares is *spurious*;
* the worst test tweets (most missed + spurious + mistyped spans) with their text, and for the
  worst ones that have an image, what each entity looked at (:func:`.explain.explain_figure`),
  the gold entities drawn beside the predicted ones. The images are found wherever the report is
  made from (:func:`image_folder`): ``--images DIR``, else the run's recorded image folder, a
  relative one resolved against the folder the training ran in (read from the recorded
  ``output_dir``), the run folder itself, the working directory and the recorded corpus folder;

and, over all runs, the test F1 per type side by side. Plots with matplotlib (Agg: no display).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mner.errors import MNERError
from mner.tagging import get_spans

__all__ = ["Run", "TweetPrediction", "confusion", "image_folder", "read_run", "worst_tweets", "write_report"]

MISSED, SPURIOUS = "missed", "spurious"


@dataclass
class TweetPrediction:
    id: str
    image: str | None
    tokens: list[str]
    gold: list[str]
    pred: list[str]

    def spans(self, tags: list[str]) -> dict[tuple[int, int], str]:
        return {(s.start, s.end): s.label for s in get_spans(tags, mode="conlleval")}

    def errors(self) -> int:
        g, p = self.spans(self.gold), self.spans(self.pred)
        return sum(1 for k, t in g.items() if p.get(k) != t) + sum(1 for k in p if k not in g)


@dataclass
class Run:
    folder: Path
    name: str
    metrics: list[dict] = field(default_factory=list)
    test_report: dict | None = None
    predictions: list[TweetPrediction] = field(default_factory=list)
    experiment: dict | None = None


def read_run(folder: str | Path) -> Run:
    """The files of a training run (each optional but ``metrics.jsonl`` or ``test_report.json``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MNERError(f"{folder}: no such run folder; give the output_dir of `mner train`")
    run = Run(folder, folder.name)
    metrics = folder / "metrics.jsonl"
    if metrics.is_file():
        for n, line in enumerate(metrics.read_text(encoding="utf-8").split("\n"), 1):
            if line.strip():
                try:
                    run.metrics.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise MNERError(f"{metrics}:{n}: not a JSON line ({err.msg}); the run's log is damaged") from None
    if (folder / "test_report.json").is_file():
        run.test_report = json.loads((folder / "test_report.json").read_text(encoding="utf-8"))
    if (folder / "experiment.json").is_file():
        run.experiment = json.loads((folder / "experiment.json").read_text(encoding="utf-8"))
    preds = folder / "predictions" / "test.conll"
    if preds.is_file():
        run.predictions = _read_predictions(preds)
    if not run.metrics and run.test_report is None:
        raise MNERError(f"{folder}: neither metrics.jsonl nor test_report.json; is this the output_dir of `mner train`?")
    return run


def _read_predictions(path: Path) -> list[TweetPrediction]:
    out: list[TweetPrediction] = []
    meta: dict[str, str] = {}
    rows: list[list[str]] = []

    def flush():
        nonlocal meta, rows
        if rows:
            out.append(TweetPrediction(meta.get("id", str(len(out) + 1)), meta.get("image"),
                                       [r[0] for r in rows], [r[-2] for r in rows], [r[-1] for r in rows]))
        meta, rows = {}, []

    # lines end at "\n" only (a token may hold U+2028 or U+0085, which splitlines() cuts at)
    for n, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1):
        line = line.removesuffix("\r")
        if not line.strip():
            flush()
        elif line.startswith("# ") and "=" in line and not rows:
            key, _, value = line[2:].partition("=")
            meta[key.strip()] = value.strip()
        else:
            cols = line.split("\t")
            if len(cols) < 3:
                raise MNERError(f"{path}:{n}: expected token, gold and predicted tag separated by tabs, got {line!r}")
            rows.append(cols)
    flush()
    return out


def confusion(preds: list[TweetPrediction]) -> tuple[list[str], list[str], np.ndarray]:
    """Rows: gold types + ``spurious``; columns: predicted types + ``missed`` (see the module docstring)."""
    types = sorted({t for p in preds for t in list(p.spans(p.gold).values()) + list(p.spans(p.pred).values())})
    rows, cols = types + [SPURIOUS], types + [MISSED]
    m = np.zeros((len(rows), len(cols)), dtype=int)
    for p in preds:
        g, q = p.spans(p.gold), p.spans(p.pred)
        for k, t in g.items():
            m[rows.index(t), cols.index(q[k]) if k in q else len(cols) - 1] += 1
        for k, t in q.items():
            if k not in g:
                m[len(rows) - 1, cols.index(t)] += 1
    return rows, cols, m


def worst_tweets(preds: list[TweetPrediction], k: int = 10) -> list[TweetPrediction]:
    """The ``k`` tweets with the most span errors (ties: file order), errors > 0 only."""
    ranked = sorted((p for p in preds if p.errors() > 0), key=lambda p: -p.errors())
    return ranked[:k]


# ================================================================================ pictures
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curves(run: Run, out: Path) -> Path:
    plt = _plt()
    train = [e for e in run.metrics if e.get("event") == "train"]
    evals = [e for e in run.metrics if e.get("event") == "eval"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    for key in ("loss", "loss_mner", "loss_cm", "loss_ca"):
        pts = [(e["step"], e[key]) for e in train if key in e]
        if pts:
            a.plot(*zip(*pts), label=key, lw=2 if key == "loss" else 1)
    a.set_xlabel("step")
    a.set_ylabel("training loss")
    a.set_title(f"{run.name}: loss and its parts")
    if train:
        a.legend(fontsize=8)
    for key in sorted({k for e in evals for k in e if k == "f1" or k.startswith("f1_")}):
        pts = [(e["epoch"], e[key]) for e in evals if key in e]
        b.plot(*zip(*pts), marker="o", label="F1" if key == "f1" else key[3:], lw=2.5 if key == "f1" else 1)
    b.set_xlabel("epoch")
    b.set_ylabel("dev F1")
    b.set_ylim(0, 1.02)
    b.set_title("dev F1 per epoch")
    if evals:
        b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def plot_type_f1(runs: list[Run], out: Path) -> Path:
    plt = _plt()
    reports = [(r.name, r.test_report) for r in runs if r.test_report]
    types = sorted({t for _, rep in reports for t in rep.get("per_type", {})})
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(types) * max(1, len(reports)) / 2 + 2), 4), dpi=100)
    width = 0.8 / max(1, len(reports))
    x = np.arange(len(types) + 1)
    for i, (name, rep) in enumerate(reports):
        vals = [rep["per_type"].get(t, {}).get("f1", 0.0) for t in types] + [rep.get("micro", {}).get("f1", 0.0)]
        bars = ax.bar(x + (i - (len(reports) - 1) / 2) * width, vals, width, label=name)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(x, types + ["micro"])
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("test F1")
    ax.set_title("test F1 per type")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def plot_confusion(run: Run, out: Path) -> Path:
    plt = _plt()
    rows, cols, m = confusion(run.predictions)
    fig, ax = plt.subplots(figsize=(1.1 * len(cols) + 2, 1.0 * len(rows) + 1.5), dpi=100)
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    top = m.max() or 1
    for i in range(len(rows)):
        for j in range(len(cols)):
            ax.text(j, i, str(m[i, j]), ha="center", va="center", color="white" if m[i, j] > top / 2 else "black")
    ax.set_title(f"{run.name}: entity types on test")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def image_folder(run: Run, images: str | Path | None = None) -> tuple[Path | None, list[Path]]:
    """The run's image folder and the places looked at (see the module docstring).

    ``images`` (``--images``) wins and must exist. Otherwise, for the recorded ``data.images``
    (``experiment.json``): as recorded when absolute; when relative, against the folder the
    training ran in (the run folder's path less the recorded ``output_dir``), inside the run folder
    when the recorded path starts with the recorded ``output_dir`` (a moved run), against the
    working directory; then an ``images`` folder beside or inside the recorded corpus folder,
    resolved the same ways."""
    if images is not None:
        path = Path(images)
        if not path.is_dir():
            raise MNERError(f"--images {images}: no such folder; give the folder of the run's tweet images")
        return path, [path]
    data = (run.experiment or {}).get("data") or {}
    out_dir = ((run.experiment or {}).get("training") or {}).get("output_dir")
    run_abs = run.folder.resolve()

    def places(recorded: str | None) -> list[Path]:
        if not recorded:
            return []
        rec = Path(recorded)
        if rec.is_absolute():
            return [rec]
        found: list[Path] = []
        if out_dir and not Path(out_dir).is_absolute():
            parts = Path(out_dir).parts
            if len(parts) <= len(run_abs.parts) and run_abs.parts[-len(parts):] == parts:
                found.append(Path(*run_abs.parts[:-len(parts)]) / rec)     # the training's working folder
            if rec.parts[:len(parts)] == parts:
                found.append(run_abs.joinpath(*rec.parts[len(parts):]))     # inside the (moved) run folder
        found.append(Path.cwd() / rec)
        return found

    tried: list[Path] = places(data.get("images"))
    for corpus in places(data.get("corpus")):
        tried += [corpus.parent / "images", corpus / "images"]
    seen: list[Path] = []
    for path in tried:
        if path not in seen:
            seen.append(path)
            if path.is_dir():
                return path, seen
    return None, seen


def _gold_entities(tokens: list[str], tags: list[str], text: str) -> list[dict]:
    """The gold spans of a tweet whose text is its tokens joined by spaces, as entity dicts."""
    starts, at = [], 0
    for tok in tokens:
        starts.append(at)
        at += len(tok) + 1
    spans = get_spans(tags, mode="conlleval")
    return [{"start": starts[s.start], "end": starts[s.end - 1] + len(tokens[s.end - 1]), "type": s.label,
             "text": text[starts[s.start]:starts[s.end - 1] + len(tokens[s.end - 1])]} for s in spans]


def _explain_worst(run: Run, worst: list[TweetPrediction], out_dir: Path, k: int,
                   images: str | Path | None = None) -> tuple[list[tuple[str, Path]], str]:
    """Explanation pictures of the ``k`` worst tweets with an image, gold beside the predictions
    (and a note on what was not drawn)."""
    if k <= 0:
        return [], ""
    if not (run.folder / "best").is_dir() and not (run.folder / "config.json").is_file():
        return [], "no model in the run folder: no attention pictures"
    folder, tried = image_folder(run, images)
    if folder is None:
        recorded = ((run.experiment or {}).get("data") or {}).get("images")
        where = ", ".join(str(p) for p in tried) or "nowhere (experiment.json records no image folder)"
        return [], (f"the run's image folder (recorded as {recorded}) is not here: looked in {where}; "
                    "give --images DIR for attention pictures")
    from mner.data.images import ImageStore
    from mner.pipeline import Pipeline
    from mner.report.explain import explain_figure
    from mner.explain.predictor import InferenceItem, Predictor

    predictor = Predictor(Pipeline.from_pretrained(run.folder, device="cpu"))
    store = ImageStore(folder)
    drawn, missing = [], 0
    for p in worst:
        if len(drawn) >= k or p.image is None:
            continue
        try:
            image = store.open(p.image, p.id)
        except Exception:  # noqa: BLE001 - a missing picture skips this tweet only (counted below)
            missing += 1
            continue
        text = " ".join(p.tokens)
        result = predictor([InferenceItem(text, image, None, explain=True)])[0]
        png = explain_figure(text, result, image, out_dir / f"{run.name}-explain-{len(drawn)}.png",
                             gold=_gold_entities(p.tokens, p.gold, text))
        drawn.append((p.id, png))
    note = "" if drawn else "none of the worst tweets has an image"
    if missing:
        note = (note + "; " if note else "") + f"{missing} of the worst tweets' images are not in {folder}"
    return drawn, note


def write_report(run_dirs: list[str | Path], out: str | Path, worst: int = 10, explain: int = 3,
                 images: str | Path | None = None) -> Path:
    """Write the pictures and ``index.html`` into ``out``; returns the index's path. ``images``:
    the folder of the runs' tweet images (default: found from each run's records, :func:`image_folder`)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = [read_run(d) for d in run_dirs]
    names = [r.name for r in runs]
    for i, r in enumerate(runs):  # two runs called "run" in different folders stay apart
        if names.count(r.name) > 1:
            r.name = f"{r.name}-{i + 1}"
    parts = ["<!doctype html><html lang='en'><meta charset='utf-8'>"
             "<meta name='viewport' content='width=device-width, initial-scale=1'><title>mner report</title>"
             "<style>body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:auto;padding:1rem}"
             "img{max-width:100%}td,th{padding:.2rem .5rem;border-bottom:1px solid #ddd;text-align:left}"
             "table{border-collapse:collapse}</style><h1>mner report</h1>"]
    if any(r.test_report for r in runs):
        png = plot_type_f1(runs, out / "type_f1.png")
        parts.append(f"<h2>Test F1 per type</h2><img src='{png.name}' alt='test F1 per type for each run'>")
    for r in runs:
        parts.append(f"<h2>{html.escape(r.name)}</h2><p>{html.escape(str(r.folder))}</p>")
        if r.metrics:
            png = plot_learning_curves(r, out / f"{r.name}-curves.png")
            parts.append(f"<img src='{png.name}' alt='learning curves of {html.escape(r.name)}'>")
        if r.predictions:
            png = plot_confusion(r, out / f"{r.name}-confusion.png")
            parts.append(f"<img src='{png.name}' alt='confusion matrix of {html.escape(r.name)}'>")
            bad = worst_tweets(r.predictions, worst)
            parts.append("<h3>Worst test tweets</h3><table><tr><th>id</th><th>errors</th><th>text</th>"
                         "<th>gold</th><th>predicted</th></tr>")
            for p in bad:
                fmt = lambda tags: ", ".join(f"{' '.join(p.tokens[s:e])} [{t}]" for (s, e), t in p.spans(tags).items())
                parts.append(f"<tr><td>{html.escape(p.id)}</td><td>{p.errors()}</td>"
                             f"<td>{html.escape(' '.join(p.tokens))}</td><td>{html.escape(fmt(p.gold))}</td>"
                             f"<td>{html.escape(fmt(p.pred))}</td></tr>")
            parts.append("</table>")
            if not bad:
                parts.append("<p>No error on the test split.</p>")
            drawn, note = _explain_worst(r, bad, out, explain, images)
            for tid, png in drawn:
                parts.append(f"<h4>What the entities of {html.escape(tid)} looked at (gold above the "
                             f"predictions)</h4><img src='{png.name}' alt='gold and predicted entities of "
                             f"{html.escape(tid)} and the attention of each predicted one'>")
            if note:
                parts.append(f"<p><em>{html.escape(note)}</em></p>")
    index = out / "index.html"
    index.write_text("\n".join(parts) + "\n</html>\n", encoding="utf-8")
    return index
