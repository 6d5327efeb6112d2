"""One batch of tweets through a :class:`~mner.pipeline.Pipeline`, with what the service and
``mner explain`` add: the image-text match probability and each entity's attention
(:mod:`mner.explain.inspector`). No web framework here: ``mner explain`` uses it without the
serve extra."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PIL import Image

from mner import __version__
from mner.data.tokenize import tokenize_text
from mner.explain.inspector import Inspector, entity_explanation

__all__ = ["InferenceItem", "Predictor"]


@dataclass
class InferenceItem:
    """One input of the model: text, a decoded image (or None), a caption, explain or not."""

    text: str
    image: Image.Image | bytes | None = None   # bytes until decoded (off the event loop)
    caption: str | None = None
    explain: bool = False
    where: str = ""                              # "items[3]", "image": named in refusals


class Predictor:
    """A pipeline plus what the service adds: match probability and explanations per item.

    ``predictor(items)`` -> one ``{"entities", "match_probability"}`` per item; called by the
    batcher's worker thread (one at a time)."""

    def __init__(self, pipeline):
        self.pipeline = pipeline
        # MAF's match probability and attention; a few-shot pipeline (bound to a support set, whose
        # tweets go through the same forward) has neither
        episodic = getattr(pipeline, "task", "supervised") == "episodic"
        self.inspector = Inspector(None if episodic else pipeline.model)
        self.views = tuple(pipeline.views)
        caption_encoder = getattr(pipeline.model, "caption_encoder", None)
        self._caption_tokenizer = getattr(caption_encoder, "tokenizer", None)

    def __call__(self, items: list[InferenceItem]) -> list[dict[str, Any]]:
        explain = any(it.explain for it in items)
        with self.inspector.capture(attention=explain) as rec:
            entities = self.pipeline([it.text for it in items], image=[it.image for it in items],
                                     caption=[it.caption for it in items])
        rows = rec.rows()
        out, k = [], 0
        for item, ents in zip(items, entities):
            row: dict[str, Any] = {}
            if tokenize_text(item.text)[0]:   # the pipeline ran the model on non-empty texts only
                row = rows[k] if k < len(rows) else {}
                k += 1
            present = {"pixels": item.image is not None, "caption": item.caption is not None}
            match = row.get("match")
            if match is not None and not any(present[v] for v in self.views):
                match = None  # no image: nothing to match (the model's gate sees an empty view)
            if item.explain:
                tokens = self._caption_tokens(item.caption) if present["caption"] else None
                ents = [dict(e, explanation=entity_explanation(row, e, present, tokens)) for e in ents]
            out.append({"entities": ents, "match_probability": None if match is None else round(match, 4)})
        return out

    def _caption_tokens(self, caption: str) -> list[str] | None:
        tok = self._caption_tokenizer
        if tok is None:
            return None
        ids = tok(caption, add_special_tokens=True, verbose=False)["input_ids"]
        return tok.convert_ids_to_tokens(ids)

    def info(self) -> dict[str, Any]:
        model = self.pipeline.model
        cfg = model.config
        info = self.pipeline.info()
        labels = info.get("labels") or [f"B-{t}" for t in info.get("types") or ()]
        encoders = {}
        for part in ("text_encoder", "image_encoder", "caption_encoder"):
            sub = getattr(cfg, part, None)
            if sub is not None and (part == "text_encoder" or part.split("_")[0] in
                                    {"image" if "pixels" in self.views else "", "caption" if "caption" in self.views else ""}):
                encoders[part.removesuffix("_encoder")] = getattr(sub, "name", None)
        return {**info, "entity_types": sorted({l[2:] for l in labels if l != "O"}), "encoders": encoders,
                "match_probability": self.inspector.has_match, "explanations": self.inspector.has_attention,
                "mner_version": __version__}
