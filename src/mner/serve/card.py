"""What the web page says about the served model (its *model card*) and the examples it offers.

:func:`model_card` reads the training run the checkpoint came from, never a number typed in here:

* what the model is: its kind, variant, views and encoders (from the model itself);
* what it was trained on: the corpus recorded in the run's ``experiment.json`` (``mner train``
  and ``mner quickstart`` write it), and whether that corpus is the quickstart's demo corpus
  (a ``demo-data`` folder with the ``VERSION`` stamp :func:`mner.demo.build_demo_corpus` writes):
  then the card says plainly that the model is a toy;
* how good it measured: the test F1 (micro and per type) of ``test_report.json``, else the best
  dev F1 of ``train_result.json``, else the best dev F1 logged in ``metrics.jsonl``, with the file
  named; and for the quickstart, the text-only tagger it trained beside it (``text-only/``);
* what each entity type means.

The run folder is the checkpoint itself when it holds those files (``mner serve runs/quickstart``)
or the folder above it (``mner serve runs/quickstart/best``). A model served from memory (tests)
or a bare model folder has no run: the card says so.

:func:`examples` are the tweets of the page's *Try an example* button, from what the package
ships: the quickstart's sentence with an unseen face photo and with a cat photo
(:func:`mner.demo.demo_pair`, from scikit-image's pictures when it is installed) and the invented
tweets of the sample corpus (``mner/resources/sample``) with their placeholder pictures and
captions.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

__all__ = ["RUN_FILES", "TYPE_MEANINGS", "examples", "model_card", "run_folder"]

#: the files of a training run the card reads (any one makes a folder a run)
RUN_FILES = ("test_report.json", "train_result.json", "metrics.jsonl", "experiment.json")

#: what the usual entity types mean (the benchmarks' annotation guidelines, in a sentence)
TYPE_MEANINGS = {
    "PER": "people: a person's name or nickname",
    "LOC": "places: countries, cities, streets, mountains, landmarks",
    "ORG": "organisations: companies, teams, bands, parties, institutions",
    "MISC": "other names: events, products, works, nationalities and the like",
    "OTHER": "other names: events, products, works, nationalities and the like",
}
#: what MISC means in the quickstart's demo corpus (mner.demo: animals and things)
DEMO_MISC = "animals and things: in the demo corpus, a name given to a cat, a horse, a cup of coffee, a motorcycle, a flower"

_KINDS = {"maf": "MAF (Multimodal Alignment and Fusion): a text encoder whose words attend to the image, with a CRF",
          "tagger": "a text tagger with a CRF"}


def run_folder(checkpoint: str | Path | None) -> Path | None:
    """The training run ``checkpoint`` belongs to (see the module docstring), or None."""
    if checkpoint is None:
        return None
    path = Path(checkpoint)
    for folder in (path, path.parent):
        if folder.is_dir() and any((folder / f).is_file() for f in RUN_FILES):
            return folder
    return None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _is_demo(run: Path, experiment: dict | None) -> bool:
    """Was this run trained on the quickstart's demo corpus?"""
    stamps = [run / "demo-data" / "VERSION", run.parent / "demo-data" / "VERSION"]
    corpus = ((experiment or {}).get("data") or {}).get("corpus")
    if corpus:
        stamps.append(Path(corpus).parent / "VERSION")
        if Path(corpus).parent.name == "demo-data":
            return True
    for stamp in stamps:
        try:
            if stamp.is_file() and stamp.read_text(encoding="utf-8").startswith("demo "):
                return True
        except OSError:
            continue
    return False


def _scores(run: Path) -> dict[str, Any] | None:
    """The run's measured F1 (fractions), and the file it was read from."""
    report = _read_json(run / "test_report.json")
    if isinstance(report, dict) and isinstance(report.get("micro"), dict) and "f1" in report["micro"]:
        return {"split": "test", "f1": report["micro"]["f1"], "file": "test_report.json",
                "tweets": report.get("n_sequences"),
                "per_type": {t: s.get("f1") for t, s in (report.get("per_type") or {}).items() if isinstance(s, dict)}}
    result = _read_json(run / "train_result.json")
    if isinstance(result, dict) and isinstance(result.get("best_metric"), (int, float)):
        return {"split": "dev", "f1": result["best_metric"], "file": "train_result.json",
                "epoch": result.get("best_epoch"), "per_type": {}}
    best: dict | None = None
    try:
        lines = (run / "metrics.jsonl").read_text(encoding="utf-8").split("\n")
    except OSError:
        lines = []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and rec.get("event") == "eval" and isinstance(rec.get("f1"), (int, float)):
            if best is None or rec["f1"] > best["f1"]:
                best = rec
    if best is not None:
        return {"split": "dev", "f1": best["f1"], "file": "metrics.jsonl", "epoch": best.get("epoch"),
                "per_type": {k[3:]: v for k, v in best.items() if k.startswith("f1_")}}
    return None


def model_card(info: dict[str, Any], checkpoint: str | Path | None) -> dict[str, Any]:
    """The card of the model ``info`` describes (:meth:`mner.explain.predictor.Predictor.info`),
    served from ``checkpoint`` (None: from memory)."""
    views = info.get("views") or []
    kind = _KINDS.get(info.get("model_type"), info.get("model_type") or "a model")
    encoders = info.get("encoders") or {}
    reads = ("the tweet's text and its image" if "pixels" in views and "caption" in views else
             "the tweet's text and its image (as regions of pixels)" if "pixels" in views else
             "the tweet's text and a caption of its image" if "caption" in views else "the tweet's text only")
    card: dict[str, Any] = {
        "model": kind, "variant": info.get("variant"), "reads": reads, "encoders": encoders,
        "checkpoint": str(checkpoint) if checkpoint is not None else None, "run": None,
        "trained_on": None, "demo": False, "scores": None, "baseline": None, "types": {},
    }
    run = run_folder(checkpoint)
    experiment = _read_json(run / "experiment.json") if run is not None else None
    if run is not None:
        card["run"] = str(run)
        data = (experiment or {}).get("data") or {}
        card["trained_on"] = data.get("corpus") or data.get("train")
        card["demo"] = _is_demo(run, experiment)
        card["scores"] = _scores(run)
        if card["demo"] and (run / "text-only").is_dir():   # the quickstart trains a text-only tagger beside
            base = _scores(run / "text-only")
            if base is not None:
                card["baseline"] = {"name": "the text-only tagger trained beside it", **base}
    for t in info.get("entity_types") or []:
        meaning = DEMO_MISC if card["demo"] and t == "MISC" else TYPE_MEANINGS.get(t)
        card["types"][t] = meaning or "a type of the model's training data"
    return card


# ================================================================================ examples
def _jpeg(img) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=88)
    return buf.getvalue()


def examples() -> list[dict[str, Any]]:
    """The page's examples: ``{"text", "caption", "image" (JPEG bytes or None), "source"}``."""
    from mner.data.captions import CaptionStore
    from mner.data.formats import read_twitter
    from mner.resources import resource_path

    out: list[dict[str, Any]] = []
    try:
        from mner.demo import demo_pair

        sentence, person, cat = demo_pair()
        out.append({"text": sentence, "image": _jpeg(person), "caption": "a close up of a person's face",
                    "source": "the quickstart's sentence with a face it never saw (Labeled Faces in the Wild)"})
        out.append({"text": sentence, "image": _jpeg(cat), "caption": "a tabby cat looking at the camera",
                    "source": "the same sentence with a photo of a cat"})
    except (ImportError, OSError):   # scikit-image / scikit-learn not installed: the sample tweets only
        pass
    sample = resource_path("sample")
    try:
        captions = CaptionStore.from_file(sample / "captions" / "tweets_blip2.txt")
    except Exception:  # noqa: BLE001 - the captions are a bonus
        captions = None
    for ex in read_twitter(sample / "tweets" / "test.txt"):
        image = sample / "images" / f"{ex.image or ex.id}.jpg"
        out.append({"text": ex.text, "image": image.read_bytes() if image.is_file() else None,
                    "caption": captions.get_caption(ex.image) if captions is not None else None,
                    "source": "an invented tweet of the sample corpus (its picture is a drawn placeholder)"})
    return out
