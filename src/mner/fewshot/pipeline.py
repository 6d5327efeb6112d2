"""Tag new entity types from a few annotated tweets: ``FewShotPipeline``.

>>> pipe = FewShotPipeline.from_pretrained("runs/mousing", support="dish.jsonl")   # doctest: +SKIP
>>> pipe("Pad thai at Nong's tonight", image="food.jpg")                            # doctest: +SKIP
[{'text': 'Pad thai', 'type': 'DISH', 'start': 0, 'end': 8, 'confidence': 0.91, ...}]

The support set is any annotated data mner reads (a JSONL file with ``tokens``/``tags``, a CoNLL or
Twitter-format file, or a list of :class:`~mner.data.example.Example`); its entity types become the
episode's types, whatever they are called (``DISH``, ``DRUG``, ...). Each call builds one episode
(the support set + the inputs as its query set) and decodes it with the checkpoint's few-shot model.
Outputs are entity dicts as :class:`mner.pipeline.Pipeline` returns them (char offsets, confidence
= the smallest CRF marginal of the span's tags), decoded by the model's own ``decode_output`` (so its
decoding options, e.g. ``min_confidence``, act here as in evaluation).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from mner.data.episodes import Episode
from mner.data.example import Example
from mner.data.images import ImageStore, to_rgb
from mner.encoders.image import fuse_image_encoders
from mner.errors import MNERError
from mner.pipeline import Pipeline, input_examples
from mner.tagging import convert_tags
from mner.tagging.schemes import parse_tag

__all__ = ["FewShotPipeline", "support_tags", "support_types"]


def support_tags(ex: Example, lines: Sequence[int] | None = None) -> list[str]:
    """The IOB2 tags of a support tweet, its entities read as every reader of mner reads them (the
    conlleval reading: IOB2, IOB1 with its leading ``I-``, IO and BIOES with ``S-``/``E-`` alike).
    A malformed tag (``X-PER``, ``I-``) is an :class:`MNERError` naming the tweet, or the file:line
    of the tag when ``lines`` (the line of each token) is given."""
    for i, tag in enumerate(ex.tags or ()):
        try:
            parse_tag(tag, i)
        except ValueError:
            file = ex.source.rsplit(":", 1)[0] if ex.source and ":" in ex.source else None
            where = f"{file}:{lines[i]}" if lines is not None and file else ex.where
            raise MNERError(f"{where}: support tag {tag!r} of token {ex.tokens[i]!r} (tweet {ex.id}) is malformed; "
                            "expected 'O' or '<B|I|E|S>-<TYPE>', e.g. 'B-DISH' (IOB2, IOB1 and BIOES are read)"
                            ) from None
    return convert_tags(ex.tags, "bioes", "iob2")


def support_types(support: Sequence[Example]) -> list[str]:
    """The entity types of a support set, in order of first appearance."""
    types: list[str] = []
    for ex in support:
        for t in ex.tags or ():
            if t != "O" and t[2:] not in types:
                types.append(t[2:])
    return types


class FewShotPipeline:
    """A few-shot tagger bound to a support set (see the module docstring)."""

    def __init__(self, model, support: Sequence[Example], batch_size: int = 16,
                 device: str | torch.device | None = None, image_store: ImageStore | None = None):
        from mner.models.episodic import EpisodicTagger

        if not isinstance(model, EpisodicTagger):
            raise MNERError(f"a {model.model_type!r} model is not a few-shot model; use mner.Pipeline for it")
        self.model = fuse_image_encoders(model.eval())  # frozen conv backbones folded (mner.Pipeline's default)
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model.to(self.device)
        self.batch_size = batch_size
        self.store = image_store or ImageStore(None)
        support = list(support)
        if not support:
            raise MNERError("the support set is empty: give a few annotated tweets of each new type")
        fixed = []
        for ex in support:
            if ex.tags is None:
                raise MNERError(f"{ex.where}: a support tweet without tags; the support set must be annotated")
            fixed.append(ex.replace(tags=tuple(support_tags(ex))))
        self.support = fixed
        self.types = support_types(fixed)
        if not self.types:
            raise MNERError("the support set has no entity: annotate at least one mention of each new type")
        self.processor = model.processor(self.store)

    @classmethod
    def from_pretrained(cls, path: str | Path, support: str | Path | Sequence[Example], *,
                        format: str = "auto", images: str | Path | None = None,
                        device: str | torch.device | None = None, batch_size: int = 16) -> "FewShotPipeline":
        from mner.models import load_model

        if isinstance(support, (str, Path)):
            from mner.data.formats import read_file

            lines: list = []
            support = read_file(support, format, token_lines=lines)
            for ex, ex_lines in zip(support, lines):  # a malformed tag named by its file:line
                if ex.tags is not None:
                    support_tags(ex, ex_lines)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return cls(load_model(path, map_location=device), support, batch_size, device,
                   ImageStore(images) if images is not None else None)

    def __call__(self, text, image=None, caption=None, is_split_into_words: bool = False):
        """Entities of one input or of each input of a batch, as :meth:`mner.pipeline.Pipeline.__call__`."""
        single, examples, images = input_examples(text, image, caption, is_split_into_words)
        out = self.predict(examples, images)
        return out[0] if single else out

    @torch.no_grad()
    def predict(self, examples: Sequence[Example], images: Sequence | None = None) -> list[list[dict]]:
        results: list[list[dict]] = [[] for _ in examples]
        todo = [i for i, ex in enumerate(examples) if ex.tokens]
        pixels = "pixels" in self.processor.views
        support_imgs = [self._image(ex.image) for ex in self.support] if pixels else None
        for start in range(0, len(todo), self.batch_size):
            idx = todo[start:start + self.batch_size]
            query = [examples[i] for i in idx]
            q_imgs = None
            if pixels:
                refs = [images[i] for i in idx] if images is not None else [ex.image for ex in query]
                q_imgs = [self._image(r) for r in refs]
            episode = Episode(tuple(self.types), tuple(self.support), tuple(query), source="pipeline")
            batch = self.processor([episode], train=False, query_images=q_imgs, support_images=support_imgs)
            batch = batch.to(self.device)
            # the model's own decoding (Viterbi, marginals, its decoding options such as min_confidence):
            # IOB2 tags whatever the model's classes, and each word's marginal of its tag
            decoded = self.model.decode_output(self.model(batch.without_tags()), confidences=True)
            for row, i in enumerate(idx):
                results[i] = Pipeline._entities(examples[i], decoded.tags[row], decoded.confidences[row])
        return results

    def _image(self, ref):
        """A PIL image; a :class:`~pathlib.Path` is a file the caller resolved (``mner fewshot predict
        --input`` resolves them as ``mner predict --input`` does), opened as given; a string is an
        image id or path resolved by ``self.store`` (inside its folder, when it has one)."""
        if ref is None:
            return None
        if hasattr(ref, "mode"):
            return to_rgb(ref)
        if isinstance(ref, Path):
            return ImageStore(None, max_pixels=self.store.max_pixels).open(ref, str(ref))
        return self.store.open(ref, str(ref))

    def info(self) -> dict[str, Any]:
        return {"model_type": self.model.model_type, "types": list(self.types), "support": len(self.support),
                "views": list(self.processor.views)}
