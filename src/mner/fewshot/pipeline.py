"""Tag new entity types from a few annotated tweets: the episodic task's pipeline.

>>> pipe = Pipeline.from_pretrained("runs/mousing", support="dish.jsonl")   # doctest: +SKIP
>>> pipe("Pad thai at Nong's tonight", image="food.jpg")                     # doctest: +SKIP
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
from mner.pipeline import Pipeline, Prediction, backend_device
from mner.tagging import convert_tags
from mner.tagging.schemes import parse_tag

__all__ = ["FewShotPipeline", "load_fewshot_model", "read_support", "support_tags", "support_types"]


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


class FewShotPipeline(Pipeline):
    """A few-shot tagger bound to a support set (see the module docstring): the episodic task's
    :class:`~mner.pipeline.Pipeline`, which ``Pipeline.from_pretrained(path, support=...)`` returns
    for a few-shot checkpoint. The support set is checked, and its images opened, once
    (``support_images``: the images already opened, one per support tweet, e.g. shipped to the
    workers of ``mner tag``)."""

    task = "episodic"

    def __init__(self, model, support: Sequence[Example], batch_size: int = 16,
                 device: str | torch.device | None = None, image_store: ImageStore | None = None,
                 support_images: Sequence | None = None, cache_support: bool = True):
        from mner.tasks import task_of

        if task_of(model).name != "episodic":
            raise MNERError(f"a {model.model_type!r} model is not a few-shot model; use mner.Pipeline for it")
        if batch_size < 1:
            raise MNERError(f"batch_size must be >= 1, got {batch_size}")
        self.model = fuse_image_encoders(model.eval())  # frozen conv backbones folded (mner.Pipeline's default)
        self.fuse_images = True
        # ``torch``, or ``onnxruntime`` for an exported few-shot model (:class:`~mner.backends.onnx_runtime.OnnxEpisodicTagger`)
        self.backend, self.device = backend_device(model, device)
        self.model.to(self.device)
        self.batch_size = batch_size
        # resolves the support's image ids (inside its folder, when it has one)
        self.image_store = image_store or ImageStore(None)
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
        self.processor = model.processor(self.image_store)
        self.views = self.processor.views
        if support_images is not None and len(support_images) != len(fixed):
            raise MNERError(f"{len(fixed)} support tweets but {len(support_images)} support images: give one per tweet")
        self._support_images: list | None = list(support_images) if support_images is not None else None
        #: encode the support set once (a tweet's representation does not depend on the episode it is in,
        #: ``EpisodicTagger.encode``): every later batch runs the encoder on its queries only
        self.cache_support = cache_support
        self._support_reps: tuple | None = None

    @property
    def store(self) -> ImageStore:
        """The store that resolves the support's image ids (an alias of ``image_store``)."""
        return self.image_store

    @classmethod
    def from_pretrained(cls, path: str | Path, support: str | Path | Sequence[Example], *,
                        format: str = "auto", images: str | Path | None = None,
                        device: str | torch.device | None = None, batch_size: int = 16,
                        backend: str | None = None) -> "FewShotPipeline":
        """``backend``: ``torch`` or ``onnxruntime`` (an export folder of ``mner export``); None picks
        it by what ``path`` is."""
        if isinstance(support, (str, Path)):
            support = read_support(support, format)
        return cls(load_fewshot_model(path, backend, device), support, batch_size, device,
                   ImageStore(images) if images is not None else None)

    def support_images(self) -> list | None:
        """The support's images (PIL, or None per tweet without one), opened once; None for a model
        that does not look at pixels."""
        if "pixels" not in self.views:
            return None
        if self._support_images is None:
            self._support_images = [self._image(ex.image) for ex in self.support]
        return self._support_images

    @torch.no_grad()
    def run(self, examples: Sequence[Example], images: Sequence | None = None, *,
            output_attentions: bool = False) -> list[Prediction]:
        """Entities of each example: its episode is the support set + a batch of examples as queries.
        An episodic model's output carries no match probability and no attention: ``output_attentions``
        changes nothing."""
        examples = list(examples)
        if images is not None and len(images) != len(examples):
            raise MNERError(f"{len(examples)} examples but {len(images)} images: give one per example")
        results: list[Prediction] = [Prediction([]) for _ in examples]
        todo = [i for i, ex in enumerate(examples) if ex.tokens]
        pixels = "pixels" in self.views
        support_imgs = self.support_images()
        for start in range(0, len(todo), self.batch_size):
            idx = todo[start:start + self.batch_size]
            query = [examples[i] for i in idx]
            q_imgs = None
            if pixels:
                refs = [images[i] for i in idx] if images is not None else [ex.image for ex in query]
                q_imgs = [self._image(r) for r in refs]
            episode = Episode(tuple(self.types), tuple(self.support), tuple(query), source="pipeline")
            batch = self.processor([episode], train=False, query_images=q_imgs, support_images=support_imgs)
            batch = batch.to(self.device).without_tags()
            if self.cache_support:  # the model's forward (head over encode), the support encoded once
                if self._support_reps is None:
                    self._support_reps = self.model.encode(batch.support, False)
                out = self.model.head(batch, self._support_reps, self.model.encode(batch.query, False))
            else:
                out = self.model(batch)
            # the model's own decoding (Viterbi, marginals, its decoding options such as min_confidence):
            # IOB2 tags whatever the model's classes, and each word's marginal of its tag
            decoded = self.model.decode_output(out, confidences=True)
            for row, i in enumerate(idx):
                results[i] = Prediction(Pipeline._entities(examples[i], decoded.tags[row], decoded.confidences[row]))
        return results

    def _image(self, ref):
        """A PIL image; a :class:`~pathlib.Path` is a file the caller resolved (``mner predict --input``
        resolves them), opened as given; a string is an image id or path resolved by ``image_store``
        (inside its folder, when it has one)."""
        if ref is None:
            return None
        if hasattr(ref, "mode"):
            return to_rgb(ref)
        if isinstance(ref, Path):
            return ImageStore(None, max_pixels=self.image_store.max_pixels).open(ref, str(ref))
        return self.image_store.open(ref, str(ref))

    def info(self) -> dict[str, Any]:
        return {"model_type": self.model.model_type, "task": self.task, "types": list(self.types),
                "support": len(self.support), "views": list(self.views), "backend": self.backend}


def load_fewshot_model(path: str | Path, backend: str | None = None, device: str | torch.device | None = None):
    """The few-shot model of ``path``: the PyTorch checkpoint, or with the ``onnxruntime`` backend (an
    export folder) its :class:`~mner.backends.onnx_runtime.OnnxEpisodicTagger` (on the CPU)."""
    from mner.backends import resolve_backend

    if resolve_backend(path, backend) == "onnxruntime":
        from mner.backends.onnx_runtime import OnnxEpisodicTagger

        return OnnxEpisodicTagger.from_pretrained(path)
    from mner.models import load_model

    return load_model(path, map_location=device or ("cuda" if torch.cuda.is_available() else "cpu"))


def read_support(path: str | Path, format: str = "auto") -> list[Example]:
    """A support set file (JSONL with tokens and tags, CoNLL or Twitter format), every tag checked:
    a malformed one is an :class:`MNERError` naming its file:line."""
    from mner.data.formats import read_file

    lines: list = []
    support = read_file(path, format, token_lines=lines)
    for ex, ex_lines in zip(support, lines):
        if ex.tags is not None:
            support_tags(ex, ex_lines)
    return support
