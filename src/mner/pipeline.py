"""Inference on new text + image pairs: ``Pipeline.from_pretrained(path)(text, image)``.

>>> pipe = Pipeline.from_pretrained("runs/quickstart")            # doctest: +SKIP
>>> pipe("Handsome Rob after a fish dinner", image="rob.jpg")     # doctest: +SKIP
[{'text': 'Rob', 'type': 'MISC', 'start': 9, 'end': 12, 'confidence': 0.97, ...}]

Inputs: a text (a string, tokenized by :func:`mner.data.tokenize.tokenize_text`, offsets into
the string) or a list of tokens (offsets into the tokens joined by spaces); an image as a
path, a PIL image, or None; a caption (for models with a caption view) or None. Lists of each
make a batch. Long texts are encoded in overlapping windows by the text encoder (never cut).
A frozen convolutional image encoder runs batch-norm-folded and channels-last (about 2x faster on
the CPU, features within 1e-4 of the plain backbone's; ``fuse_images=False`` turns it off, see
:meth:`mner.encoders.ImageEncoder.fuse_for_inference`).

Output per input: a list of entities ``{"text", "type", "start", "end", "token_start",
"token_end", "confidence"}`` with character offsets (``end`` exclusive) and the confidence of
the span: the smallest CRF marginal probability of its tags (the model's belief that each of
its words carries that tag; an upper bound of the probability of the whole span).

Backends (:mod:`mner.backends`): ``backend="torch"`` runs the checkpoint's PyTorch modules;
``backend="onnxruntime"`` runs a folder written by ``mner export`` (ONNX graphs, fp32 or int8) on
the CPU. An export folder is detected, so ``Pipeline.from_pretrained("q-onnx")`` needs no
argument. Both give the same entities, offsets and schema (confidences may differ in the last
digits; int8 may change some tags: measure it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image

from mner.data.example import Example
from mner.data.images import DEFAULT_MAX_PIXELS, ImageStore, apply_image_policy, to_rgb
from mner.data.tokenize import tokenize_text
from mner.encoders.image import fuse_image_encoders
from mner.errors import MNERError
from mner.models import load_model
from mner.models.base import Decoded, MNERModel
from mner.tagging import get_spans

__all__ = ["InputFile", "Pipeline", "Prediction", "backend_device", "input_examples", "read_input_file"]

TextInput = str | Sequence[str]
ImageInput = str | Path | Image.Image | None


def input_examples(text, image=None, caption=None, is_split_into_words: bool = False
                   ) -> tuple[bool, list[Example], list]:
    """One input or a batch (see :meth:`Pipeline.__call__`) -> ``(single, examples, images)``:
    one :class:`Example` per text and one image reference per text (a single value is given to all)."""
    single = isinstance(text, str) or (is_split_into_words and all(isinstance(t, str) for t in text))
    texts = [text] if single else list(text)

    def per_input(value, name):
        if single:
            return [value]
        if isinstance(value, (list, tuple)):
            if len(value) != len(texts):
                raise MNERError(f"{len(texts)} texts but {len(value)} {name}s: give one per text")
            return list(value)
        return [value] * len(texts)

    images, captions = per_input(image, "image"), per_input(caption, "caption")
    return single, [Pipeline._example(i, t, c) for i, (t, c) in enumerate(zip(texts, captions))], images


@dataclass
class InputFile:
    """The inputs of a JSONL file (:func:`read_input_file`): one output ``record`` per kept input
    (its fields, the text its entities' offsets index included), its :class:`Example`, its image
    file (None: no image), and ``notes`` for the user (image counts, policy decisions)."""

    records: list[dict]
    examples: list[Example]
    images: list[Path | None]
    notes: list[str] = field(default_factory=list)


def read_input_file(path: str | Path, image_dir: str | Path | None = None, *, pixels: bool = True,
                    policy: str = "error", max_pixels: int = DEFAULT_MAX_PIXELS) -> InputFile:
    """Read a JSONL file of inputs (``{"text"|"tokens", "image"?, "caption"?, "id"?}`` lines) the way
    every command that tags one does (``mner predict --input``, ``mner fewshot predict --input``).

    * A line with a ``"text"`` keeps it: the output record holds that text and the entity offsets
      index it (with ``"tokens"`` only, the tokens joined by spaces); see
      :func:`mner.data.formats.read_jsonl`, which also names the line of any malformed input.
    * Image paths: a relative path names a file inside ``image_dir`` (default: the input file's
      folder; one that resolves outside it is refused under every policy), an absolute path is the
      user's own. Only when the model looks at ``pixels`` are images opened, and those that cannot be
      used follow ``policy`` (``error``: stop naming the line; ``blank``; ``drop``), counted in ``notes``.
    """
    from mner.data.formats import read_jsonl

    path = Path(path)
    examples = read_jsonl(path, require_tokens=False)
    records = []
    for ex in examples:
        rec = {k: v for k, v in ex.to_dict().items() if v is not None and k not in ("tokens", "offsets", "tags")}
        rec["text"] = ex.text
        records.append(rec)
    store = ImageStore(image_dir if image_dir is not None else path.parent, max_pixels=max_pixels,
                       allow_absolute=True)
    notes: list[str] = []
    with_image = sum(ex.image is not None for ex in examples)
    if not pixels:
        return InputFile(records, examples, [None] * len(examples), notes)
    if with_image < len(examples):
        notes.append(f"note: {len(examples) - with_image} of {len(examples)} inputs have no image; this model "
                     "looks at pixels and tags them with no visual input")
    kept, report = apply_image_policy(examples, store, policy)
    if report.affected:
        notes.append(report.summary())
    if policy == "drop":  # the examples kept are the very objects read; "blank" keeps them all
        keep = {id(ex) for ex in kept}
        records = [r for r, ex in zip(records, examples) if id(ex) in keep]
    images = [Path(os.path.abspath(store.resolve(ex.image, ex.id))) if ex.image is not None else None for ex in kept]
    return InputFile(records, kept, images, notes)


@dataclass
class Prediction:
    """What :meth:`Pipeline.run` gives for one input: its entities (``text``, ``type``, ``start``,
    ``end`` code points into the text, ``token_start``, ``token_end``, ``confidence``) and what the
    model's forward gave beside them (:class:`~mner.models.base.TaggerOutput`): the image-text match
    probability (None: no such module, or no visual view for this input) and, when asked for, the
    ``(W, R)`` attention of each word over the visual tokens laid out as ``visual_layout``
    (``((view, R_view), ...)``)."""

    entities: list[dict]
    match_probability: float | None = None
    attention: torch.Tensor | None = None
    visual_layout: tuple[tuple[str, int], ...] = ()


def backend_device(model, device: str | torch.device | None) -> tuple[str, torch.device]:
    """A pipeline's backend (``torch``, or ``onnxruntime`` for an exported model: :mod:`mner.backends`)
    and device (default: the model's); an exported model runs on the CPU, another device is refused."""
    backend = getattr(model, "backend", "torch")
    if backend != "torch":
        if device is not None and torch.device(device).type != "cpu":
            raise MNERError(f"the {backend} backend runs on the CPU; leave the device out (got {device})")
        device = "cpu"
    return backend, torch.device(device) if device is not None else next(model.parameters()).device


class Pipeline:
    """A trained tagger ready for raw inputs (see the module docstring)."""

    #: the task of its model (:mod:`mner.tasks`): ``supervised``, or ``episodic`` (a few-shot pipeline)
    task: str = "supervised"

    def __init__(self, model: MNERModel, batch_size: int = 16, device: str | torch.device | None = None,
                 image_store: ImageStore | None = None, fuse_images: bool = True):
        if batch_size < 1:
            raise MNERError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model.eval()
        # opens image paths given to the pipeline (as given: no folder; its max_pixels applies)
        self.image_store = image_store or ImageStore(None)
        self.backend, self.device = backend_device(model, device)
        self.model.to(self.device)
        self.batch_size = batch_size
        # examples -> tensors; images given to the pipeline (PIL, or paths resolved by the
        # caller) replace Example.image through the processor's ``images``
        self.processor = model.processor()
        self.views = self.processor.views
        # a frozen convolutional image encoder runs as a batch-norm-folded, channels-last copy
        # (about 2x faster on the CPU, features within 1e-4; ImageEncoder.fuse_for_inference)
        self.fuse_images = fuse_images
        fuse_image_encoders(self.model, fuse_images)

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device | None = None, batch_size: int = 16,
                        fuse_images: bool = True, backend: str | None = None, *,
                        support: str | Path | Sequence[Example] | None = None, support_format: str = "auto",
                        support_images: str | Path | None = None) -> "Pipeline":
        """The pipeline of a checkpoint (a model folder or a training run) or of an export folder.

        ``backend``: ``torch`` or ``onnxruntime``; None picks it by what ``path`` is (an export
        folder runs on ONNX Runtime). A pairing that cannot run is refused with one line.

        A few-shot checkpoint (the episodic task, :mod:`mner.tasks`) tags the entity types of
        ``support``: a support set file (JSONL with tokens and tags, CoNLL or Twitter format, read as
        ``support_format``) or a list of annotated :class:`Example`; the image ids of the support
        are found in ``support_images`` (a folder). It returns a
        :class:`~mner.fewshot.pipeline.FewShotPipeline`, a Pipeline bound to that support set.
        ``support`` with a model of fixed types, or none with a few-shot one, is refused in one line."""
        from mner.backends import resolve_backend
        from mner.tasks import TASKS, checkpoint_task

        onnx = resolve_backend(path, backend) == "onnxruntime"
        task, model_type = checkpoint_task(path)
        task.check_support(path, model_type, support, "support=")
        if task.needs_support:
            from mner.fewshot.pipeline import FewShotPipeline

            return FewShotPipeline.from_pretrained(path, support, format=support_format, images=support_images,
                                                   device=device, batch_size=batch_size,
                                                   backend="onnxruntime" if onnx else "torch")
        if onnx:
            from mner.backends.onnx_runtime import OnnxTagger

            return cls(OnnxTagger.from_pretrained(path), batch_size=batch_size, device=device,
                       fuse_images=fuse_images)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return cls(load_model(path, map_location=device), batch_size=batch_size, device=device,
                   fuse_images=fuse_images)

    # ------------------------------------------------------------------------------ inputs
    @staticmethod
    def _example(i: int, text: TextInput, caption: str | None) -> Example:
        if isinstance(text, str):
            tokens, offsets = tokenize_text(text)
            return Example(str(i), tokens, caption=caption, text=text, offsets=offsets)
        tokens = [str(t) for t in text]
        return Example(str(i), tokens, caption=caption)

    def _image(self, image: ImageInput) -> Image.Image | None:
        if image is None or isinstance(image, Image.Image):
            return to_rgb(image) if image is not None else None
        return self.image_store.open(Path(image))

    # ------------------------------------------------------------------------------ main
    def __call__(self, text: TextInput | Sequence[TextInput], image: ImageInput | Sequence[ImageInput] = None,
                 caption: str | None | Sequence[str | None] = None,
                 is_split_into_words: bool = False) -> list[dict] | list[list[dict]]:
        """Entities of one input, or of each input of a batch.

        One input: ``text`` a string (or a token list with ``is_split_into_words=True``), ``image``
        a path / PIL image / None, ``caption`` a string or None. A batch: ``text`` a list of
        strings (or of token lists), ``image`` and ``caption`` lists of the same length (or one
        value for all).
        """
        single, examples, images = input_examples(text, image, caption, is_split_into_words)
        results = self.predict(examples, images)
        return results[0] if single else results

    def predict(self, examples: Sequence[Example], images: Sequence[ImageInput] | None = None) -> list[list[dict]]:
        """Entities of each example (images: per example, overriding ``Example.image``), in input order.

        More examples than ``batch_size`` are batched by length (shortest first, ties in input
        order), so that a batch pads its texts to similar lengths; results come back in input order."""
        return [p.entities for p in self.run(examples, images)]

    @torch.no_grad()
    def run(self, examples: Sequence[Example], images: Sequence[ImageInput] | None = None, *,
            output_attentions: bool = False) -> list[Prediction]:
        """:meth:`predict` with what the model's forward gives beside the entities: one
        :class:`Prediction` per example (its match probability; its attention over the visual
        tokens with ``output_attentions``, for a model that has one: :attr:`outputs_attentions`)."""
        examples = list(examples)
        images = list(images) if images is not None else None
        if images is not None and len(images) != len(examples):
            raise MNERError(f"{len(examples)} examples but {len(images)} images: give one per example")
        order = list(range(len(examples)))
        if len(examples) > self.batch_size:
            order.sort(key=lambda i: sum(len(t) + 1 for t in examples[i].tokens))
        out: list[Prediction | None] = [None] * len(examples)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            todo = [i for i in idx if examples[i].tokens]
            for i in idx:
                if not examples[i].tokens:
                    out[i] = Prediction([])
            if not todo:
                continue
            imgs = None
            if "pixels" in self.views:
                refs = [images[i] for i in todo] if images is not None else [examples[i].image for i in todo]
                imgs = [self._image(ref) for ref in refs]
            batch = self.processor([examples[i] for i in todo], images=imgs)
            decoded = self.model.decode(batch, confidences=True, output_attentions=output_attentions)
            for k, i in enumerate(todo):
                out[i] = self._prediction(examples[i], decoded, k, batch)
        return out  # type: ignore[return-value]

    @property
    def outputs_attentions(self) -> bool:
        """Whether :meth:`run` can give attentions (a model with a cross-modal attention)."""
        return bool(getattr(self.model, "outputs_attentions", False))

    @property
    def outputs_match(self) -> bool:
        """Whether :meth:`run` gives a match probability (for the tweets with a visual view)."""
        return bool(getattr(self.model, "outputs_match", False))

    def _prediction(self, ex: Example, decoded: Decoded, k: int, batch: Any) -> "Prediction":
        """Row ``k`` of a decoded batch as a :class:`Prediction`. A tweet with none of the model's
        views has no match probability: the model saw an empty view, there was nothing to match."""
        match = decoded.match_probability[k] if decoded.match_probability is not None else None
        visual = getattr(batch, "visual", None)
        if match is not None and visual is not None and not any(bool(p[k]) for p in visual.present.values()):
            match = None
        # (W, R) of this tweet's words; R is the batch's visual tokens (a padded one gets weight 0)
        attn = decoded.attentions[k][:len(decoded.tags[k])] if decoded.attentions is not None else None
        return Prediction(self._entities(ex, decoded.tags[k], decoded.confidences[k]), match, attn,
                          decoded.visual_layout)

    @staticmethod
    def _entities(ex: Example, tags: list[str], conf: list[float]) -> list[dict]:
        ents = []
        for span in get_spans(tags, mode="conlleval"):
            s, e = ex.offsets[span.start][0], ex.offsets[span.end - 1][1]
            ents.append({
                "text": ex.text[s:e], "type": span.label, "start": s, "end": e,
                "token_start": span.start, "token_end": span.end,
                "confidence": round(min(conf[span.start:span.end]), 4),
            })
        return ents

    def info(self) -> dict[str, Any]:
        cfg = self.model.config
        label_set = getattr(self.model, "label_set", None)
        return {"model_type": self.model.model_type, "task": self.task,
                "labels": list(label_set.labels) if label_set else None,
                "views": list(self.views), "variant": getattr(cfg, "variant", None), "backend": self.backend}
