"""The ``onnxruntime`` backend: an export folder (``mner export``, :mod:`mner.backends.onnx_export`)
run by ONNX Runtime on the CPU, behind the interface the pipeline uses of a model.

:class:`OnnxTagger` has what :class:`~mner.pipeline.Pipeline` reads of a fixed-label tagger
(``model_type``, ``config``, ``label_set``, ``views``, ``processor()``, ``decode()``) and nothing
else. Its processor is the torch backend's own :class:`~mner.processing.tagging.TaggingProcessor`
and :class:`~mner.processing.visual.VisualProcessor`, given encoders whose forward is an ONNX
Runtime session (:class:`OnnxCaptionEncoder`, :class:`OnnxImageEncoder`), so batching, the feature
cache (and its float16 storage) and the image transforms are the same code; so are the long-input
windows (:func:`~mner.encoders.text.run_in_windows`) and the CRF decoding
(:func:`~mner.models.base.decode_output`).

:class:`OnnxEpisodicTagger` is the same for a few-shot export: the tweets' processor with the exported
encoders, ``encode`` (a tweet's word representations) by the exported graphs, and the episode step
(``head``: prototypes, distances, CRF; ``decode_output``) by the model's own PyTorch code and weights,
so :class:`~mner.fewshot.pipeline.FewShotPipeline` runs it as it runs the PyTorch model, encoding
the support set once.

Threads: each session runs ``threads`` intra-op threads (default: torch's current setting, so the
one-thread settings of ``mner tag`` and the tests apply to both backends alike).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from accelerate import init_empty_weights
from torch import nn

from mner.backends import EXPORT_CONFIG, EXPORT_FORMAT
from mner.config import from_dict
from mner.encoders.caption import tokenize_captions
from mner.encoders.features import VisualFeatures
from mner.encoders.text import run_in_windows
from mner.encoders.tokenization import WordTokenizer
from mner.encoders.transforms import EvalTransform, TrainTransform
from mner.errors import MNERError
from mner.models.base import Decoded, TaggerOutput, decode_output
from mner.models.checkpoint import CONFIG_NAME, CheckpointError, load_state_dict, read_config

__all__ = ["OnnxCaptionEncoder", "OnnxEpisodicTagger", "OnnxImageEncoder", "OnnxTagger", "load_exported",
           "read_export_config"]


def read_export_config(folder: str | Path) -> dict[str, Any]:
    """``mner_export.json`` of an export folder, checked for its format."""
    path = Path(folder) / EXPORT_CONFIG
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{folder}: not an ONNX export (no {EXPORT_CONFIG}); write one with mner export") from None
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        raise CheckpointError(f"{path}: format {data.get('format') if isinstance(data, dict) else None!r}, this mner "
                              f"reads {EXPORT_FORMAT!r}; export the checkpoint again with this mner")
    return data


class _Session:
    """One ONNX Runtime session: torch tensors in (by input name, only those the graph has), torch
    tensors out."""

    def __init__(self, path: Path, threads: int):
        import onnxruntime as ort

        if not path.is_file():
            raise CheckpointError(f"{path}: graph missing; the export is incomplete, export it again")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.path = path

    def __call__(self, **inputs: torch.Tensor) -> list[torch.Tensor]:
        feed = {name: inputs[name].detach().cpu().contiguous().numpy() for name in self.inputs}
        return [torch.from_numpy(np.ascontiguousarray(x)) for x in self.session.run(self.outputs, feed)]


class _Frozen:
    """What :func:`~mner.encoders.cache.check_cacheable` asks of a frozen encoder's config."""

    trainable = False

    def __init__(self, **fields: Any):
        self.__dict__.update(fields)


class OnnxCaptionEncoder(nn.Module):
    """The exported caption encoder, with :class:`~mner.encoders.caption.CaptionEncoder`'s interface
    as the visual processor uses it (``tokenize``, ``forward`` -> :class:`VisualFeatures`,
    ``fingerprint``, ``output_dim``)."""

    def __init__(self, session: _Session, tokenizer, settings: Mapping[str, Any], digest: str):
        super().__init__()
        self.session = session
        self.tokenizer = tokenizer
        self.max_length = int(settings["max_length"])
        self.output_dim = int(settings["output_dim"])
        self.config = _Frozen(pooling=settings["pooling"], max_length=self.max_length)
        self.fingerprint = f"caption-onnx:pooling={settings['pooling']}:max_length={self.max_length}:sha256={digest}"

    def tokenize(self, captions: Sequence[str | None]) -> dict[str, torch.Tensor]:
        return tokenize_captions(self.tokenizer, captions, self.max_length)

    def forward(self, captions: Sequence[str | None] | Mapping[str, torch.Tensor]) -> VisualFeatures:
        inputs = dict(captions) if isinstance(captions, Mapping) else self.tokenize(captions)
        tokens, pooled = self.session(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        return VisualFeatures(tokens=tokens, mask=inputs["attention_mask"].bool(), pooled=pooled)


class OnnxImageEncoder(nn.Module):
    """The exported image encoder, with :class:`~mner.encoders.image.ImageEncoder`'s interface as the
    visual processor uses it (``eval_transform``, ``forward`` -> :class:`VisualFeatures`,
    ``fingerprint``, ``output_dim``). Frozen: a backbone fine-tuned in training runs as it was saved."""

    def __init__(self, session: _Session, settings: Mapping[str, Any], digest: str):
        super().__init__()
        self.session = session
        self.settings = dict(settings)
        self.output_dim = int(settings["output_dim"])
        self.image_size = int(settings["image_size"])
        self.kind = settings["kind"]
        self.config = _Frozen(name=settings["name"], image_size=self.image_size)
        self.fingerprint = f"image-onnx:{settings['name']}:size={self.image_size}:sha256={digest}"

    def eval_transform(self) -> EvalTransform:
        s = self.settings
        return EvalTransform(image_size=self.image_size, resize=s["resize"], mean=tuple(s["mean"]),
                             std=tuple(s["std"]), interpolation=s["interpolation"])

    def train_transform(self, **options: Any) -> TrainTransform:
        s = self.settings
        base = dict(image_size=self.image_size, mean=tuple(s["mean"]), std=tuple(s["std"]),
                    interpolation=s["interpolation"])
        base.update(options)
        return TrainTransform(**base)

    def forward(self, pixel_values: torch.Tensor) -> VisualFeatures:
        tokens, pooled = self.session(pixel_values=pixel_values.float())
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool)
        return VisualFeatures(tokens=tokens, mask=mask, pooled=pooled)


class _Exported(nn.Module):
    """What the two exported models share: the export's config, one ONNX Runtime session per graph,
    the word tokenizer, the text transformer's windows, the exported visual encoders."""

    backend = "onnxruntime"

    def _open(self, folder: str | Path, threads: int | None) -> type:
        """Read ``folder`` and open its sessions; returns the model class of its ``config.json``."""
        from mner.models import MODELS

        folder = Path(folder)
        self.folder = folder
        self.export_config = exp = read_export_config(folder)
        raw = read_config(folder)
        cls = MODELS.get(raw["model_type"])
        if cls is None:
            raise CheckpointError(f"{folder / CONFIG_NAME}: unknown model type {raw['model_type']!r}")
        self.model_type = raw["model_type"]
        self._raw_config = raw["config"]
        self.views = tuple(exp["views"])
        self.quantization = exp.get("quantization")
        threads = threads or torch.get_num_threads()
        graphs = exp["graphs"]
        self.threads = threads
        self.sessions = {name: _Session(folder / info["file"], threads) for name, info in graphs.items()}
        self.tokenizer = WordTokenizer.from_pretrained(str(folder / "assets" / "text_encoder"))
        text = exp["text_encoder"]
        self.max_length, self.window_size = int(text["max_length"]), int(text["window_size"])
        self.window_overlap = int(text["window_overlap"])
        self.caption_encoder = self.image_encoder = None
        if "caption" in self.views:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(str(folder / "assets" / "caption_encoder"))
            self.caption_encoder = OnnxCaptionEncoder(self.sessions["caption_encoder"], tok, exp["caption_encoder"],
                                                      graphs["caption_encoder"]["sha256"][:16])
        if "pixels" in self.views:
            self.image_encoder = OnnxImageEncoder(self.sessions["image_encoder"], exp["image_encoder"],
                                                  graphs["image_encoder"]["sha256"][:16])
        return cls

    @classmethod
    def from_pretrained(cls, folder: str | Path, threads: int | None = None):
        from mner.backends.onnx_export import require_onnx

        require_onnx()
        return cls(folder, threads=threads)

    def _visual_processor(self, image_store=None, cache=None, seed: int = 0):
        from mner.processing.visual import VisualProcessor

        if not self.views:
            return None
        return VisualProcessor(self.config.visual_view, self.image_encoder, self.caption_encoder, image_store, cache,
                               seed)

    def token_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The text transformer's sub-token states; inputs over its limit run in overlapping windows."""
        def run(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return self.sessions["text_encoder"](input_ids=ids, attention_mask=mask)[0]

        if input_ids.shape[1] <= self.max_length:
            return run(input_ids, attention_mask)
        return run_in_windows(run, input_ids, attention_mask, num_prefix=self.tokenizer.num_prefix,
                              num_suffix=self.tokenizer.num_suffix, window_size=self.window_size,
                              overlap=self.window_overlap, pad_token_id=self.tokenizer.pad_token_id)

    def _word_feed(self, batch) -> dict[str, torch.Tensor]:
        """The inputs the head / encoder graph reads of a :class:`TaggingBatch`: the text transformer's
        states, the word pooling and casing, and each view's features."""
        words = batch.words
        feed = {"input_ids": words.input_ids, "token_states": self.token_states(words.input_ids, words.attention_mask),
                "attention_mask": words.attention_mask, "word_starts": words.word_starts,
                "word_ends": words.word_ends, "word_mask": words.word_mask, "casing": words.casing}
        for view in self.views:
            feats = batch.visual.features[view]
            feed.update({f"{view}_tokens": feats.tokens.float(), f"{view}_mask": feats.mask,
                         f"{view}_pooled": feats.pooled.float()})
        return feed

    def extra_repr(self) -> str:
        q = self.quantization
        return f"{self.folder}, {self.model_type}, views={list(self.views)}, " + (
            f"int8 ({', '.join(q['graphs'])})" if q else "fp32")


class OnnxTagger(_Exported):
    """A fixed-label tagger from an export folder (see the module docstring).

    ``OnnxTagger.from_pretrained(folder)``; ``tagger(batch)`` -> :class:`TaggerOutput` (emissions,
    word mask, the CRF's constrained scores, the labels); ``tagger.decode(batch)`` -> tags."""

    task = "supervised"

    def __init__(self, folder: str | Path, threads: int | None = None):
        from mner.tagging.labels import LabelSet

        super().__init__()
        cls = self._open(folder, threads)
        exp = self.export_config
        if exp.get("task", "supervised") != "supervised":
            raise CheckpointError(f"{folder}: the export of a few-shot model; it tags the types of a support set "
                                  "(OnnxEpisodicTagger, Pipeline.from_pretrained(..., support=...))")
        self.config = from_dict(cls.config_class, cls.upgrade_config(dict(self._raw_config)), "config")
        self.label_set = LabelSet(tuple(self.config.labels))
        crf = load_state_dict(Path(folder) / exp["crf"])
        self.transitions, self.start, self.end = crf["transitions"], crf["start"], crf["end"]

    # ------------------------------------------------------------------------------ data
    def processor(self, image_store=None, cache=None, seed: int = 0):
        """The torch backend's processor, with the exported encoders (see the module docstring)."""
        from mner.processing.tagging import TaggingProcessor

        return TaggingProcessor(self.tokenizer, self.label_set, self._visual_processor(image_store, cache, seed),
                                getattr(self.config, "caption_segment", 0))

    # ------------------------------------------------------------------------------ model
    def forward(self, batch) -> TaggerOutput:
        words = batch.words
        feed = self._word_feed(batch)
        head = self.sessions["head"]
        outputs = dict(zip(head.outputs, head(**feed)))
        emissions = outputs["emissions"]
        # the match probability, from a head exported with it (exports before it give emissions only)
        match = outputs.get("match_probability")
        return TaggerOutput(None, emissions, words.word_mask.bool(), transitions=self.transitions, start=self.start,
                            end=self.end, labels=[self.label_set.labels] * emissions.shape[0],
                            match_probability=match)

    #: the exported head has no attention output (explanations need the torch backend)
    outputs_attentions = False

    @property
    def outputs_match(self) -> bool:
        """Whether the exported head gives MAF's match probability (exports of mner 0.x before it do not)."""
        return "match_probability" in self.sessions["head"].outputs

    @torch.no_grad()
    def decode(self, batch, confidences: bool = False, output_attentions: bool = False) -> Decoded:
        """Viterbi tags per tweet (and each word's marginal probability of its tag), as
        :meth:`mner.models.base.MNERModel.decode`, with the match probability of a head exported
        with it (``output_attentions`` changes nothing: the exported head has no attention output)."""
        if batch.visual is not None and batch.visual.pixel_values is not None:
            raise MNERError("the onnxruntime backend takes image features from its processor, not pixels")
        return decode_output(self(batch.without_tags()), confidences, who=type(self).__name__)


class _RunByGraph(nn.Module):
    """In an exported few-shot model, the place of an encoder that the ONNX graphs run: no weights."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name
        # empty: where the model lives, for callers that read a model's device from its parameters (a
        # model whose weights are all the encoders', as NNShot, has no other)
        self.device_marker = nn.Parameter(torch.empty(0), requires_grad=False)

    def forward(self, *args: Any, **kwargs: Any):
        raise RuntimeError(f"{self.name} of an exported model runs in its ONNX graph, not in PyTorch")


class OnnxEpisodicTagger(_Exported):
    """A few-shot tagger from an export folder (see the module docstring): ``encode`` by the exported
    graphs, ``head`` and ``decode_output`` by the model's own PyTorch code (``self.model``, built
    around the saved episode-step weights; its encoders are never run). Its ``config`` is the
    model's, so decoding options set on it (``min_confidence``, ``o_bias``) act as on the torch model."""

    task = "episodic"

    def __init__(self, folder: str | Path, threads: int | None = None):
        from mner.backends.onnx_export import ENCODER_MODULES

        super().__init__()
        cls = self._open(folder, threads)
        folder, exp = Path(folder), self.export_config
        if exp.get("task") != "episodic":
            raise CheckpointError(f"{folder}: the export of a model with its own entity types; load it with OnnxTagger")
        config = from_dict(cls.config_class, cls.upgrade_config(dict(self._raw_config)), "config")
        # built without weights (parameters on the meta device: accelerate's init_empty_weights), the
        # episode step's weights assigned, the encoders (run by the graphs) replaced by placeholders:
        # their parameters are never allocated
        with init_empty_weights(include_buffers=False):
            model = cls._from_assets(config, folder / "assets")
        state = load_state_dict(folder / exp["head_weights"])
        missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
        stray = [k for k in missing if k.split(".", 1)[0] not in ENCODER_MODULES]
        if unexpected or stray:
            raise CheckpointError(f"{folder / exp['head_weights']}: weights do not fit the config (missing "
                                  f"{stray[:5]}, unexpected {unexpected[:5]}); export the checkpoint again")
        for name in ENCODER_MODULES:
            if isinstance(getattr(model, name, None), nn.Module):
                setattr(model, name, _RunByGraph(name))
        self.model = model.eval()
        self.encoding = exp["encoding"]
        self.reads_ids = "input_ids" in self.sessions["encoder"].inputs

    @property
    def config(self):
        return self.model.config

    @property
    def scheme(self) -> str:
        return self.model.scheme

    def processor(self, image_store=None, cache=None, seed: int = 0):
        """The few-shot model's episode processor, over the tweets' processor with the exported encoders."""
        from mner.processing.episodes import EpisodeProcessor
        from mner.processing.tagging import TaggingProcessor

        return EpisodeProcessor(TaggingProcessor(self.tokenizer, None, self._visual_processor(image_store, cache, seed)),
                                self.model.scheme)

    def encode(self, part, train: bool = False) -> tuple:
        """The word representations of one side of an episode batch (a tweet's depend on it alone), by
        the exported graphs: the model's ``encode`` in eval mode."""
        if train:
            raise MNERError("an ONNX export runs inference only; train the PyTorch checkpoint")
        if self.reads_ids and part.words.input_ids.shape[1] > int(self.encoding["max_length"]):
            raise MNERError(f"a tweet of {part.words.input_ids.shape[1]} sub-tokens exceeds the text model's "
                            f"{self.encoding['max_length']}; graph.space frozen reads tweets up to that length")
        reps = iter(self.sessions["encoder"](**self._word_feed(part)))
        return tuple(None if i in self.encoding["none"] else next(reps) for i in range(self.encoding["outputs"]))

    def head(self, batch, support: tuple, query: tuple) -> TaggerOutput:
        return self.model.head(batch, support, query)

    def forward(self, batch) -> TaggerOutput:
        return self.head(batch, self.encode(batch.support), self.encode(batch.query))

    def decode_output(self, out: TaggerOutput, confidences: bool = False) -> Decoded:
        return self.model.decode_output(out, confidences)

    @torch.no_grad()
    def decode(self, batch, confidences: bool = False, output_attentions: bool = False) -> Decoded:
        """Tags of the batch's query tweets, as the PyTorch model decodes them."""
        return self.decode_output(self(batch.without_tags()), confidences)


def load_exported(folder: str | Path, threads: int | None = None) -> OnnxTagger | OnnxEpisodicTagger:
    """The exported model of ``folder``: a fixed-label :class:`OnnxTagger` or a few-shot
    :class:`OnnxEpisodicTagger`, by the export's task."""
    exp = read_export_config(folder)
    cls = OnnxEpisodicTagger if exp.get("task") == "episodic" else OnnxTagger
    return cls.from_pretrained(folder, threads=threads)
