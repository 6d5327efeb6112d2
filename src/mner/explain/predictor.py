"""One batch of tweets through a :class:`~mner.pipeline.Pipeline`, with what the service and
``mner explain`` add: the image-text match probability and each entity's attention
(:mod:`mner.explain.attention`), both read from the output of the forward that tagged them. No
web framework here: ``mner explain`` uses it without the serve extra."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PIL import Image

from mner import __version__
from mner.explain.attention import entity_explanation
from mner.pipeline import input_examples

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
        self.views = tuple(pipeline.views)
        caption_encoder = getattr(pipeline.model, "caption_encoder", None)
        self._caption_tokenizer = getattr(caption_encoder, "tokenizer", None)

    def __call__(self, items: list[InferenceItem]) -> list[dict[str, Any]]:
        explain = any(it.explain for it in items)
        _, examples, images = input_examples([it.text for it in items], [it.image for it in items],
                                             [it.caption for it in items])
        predictions = self.pipeline.run(examples, images, output_attentions=explain)
        out = []
        for item, pred in zip(items, predictions):
            ents = pred.entities
            if item.explain:
                present = {"pixels": item.image is not None, "caption": item.caption is not None}
                tokens = self._caption_tokens(item.caption) if present["caption"] else None
                ents = [dict(e, explanation=entity_explanation(pred, e, present, tokens)) for e in ents]
            match = pred.match_probability
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
                "match_probability": self.pipeline.outputs_match, "explanations": self.pipeline.outputs_attentions,
                "mner_version": __version__}
