"""``mner export CKPT --out DIR [--quantize int8]``: a supervised checkpoint's forward pass, up to
the emission scores, as ONNX graphs that ONNX Runtime runs (:mod:`mner.backends.onnx_runtime`).

What is exported (each graph by ``torch.onnx.export``'s ``torch.export``-based exporter, with
dynamic batch and length axes):

============================  =========================================  ============================
graph                         inputs                                     outputs
============================  =========================================  ============================
``text_encoder.onnx``         ``input_ids``, ``attention_mask`` (B, S)   ``token_states`` (B, S, H)
``caption_encoder.onnx``      ``input_ids``, ``attention_mask`` (B, S)   ``tokens`` (B, S, D),
(caption view)                                                           ``pooled`` (B, D)
``image_encoder.onnx``        ``pixel_values`` (B, 3, P, P)              ``tokens`` (B, R, D),
(pixels view)                                                            ``pooled`` (B, D)
``head.onnx``                 ``token_states``, ``attention_mask``,      ``emissions`` (B, W, C); MAF
                              ``word_starts``, ``word_ends``,            with CM: ``match_probability``
                              ``word_mask``, ``casing`` and per view     (B,)
                              ``<view>_tokens``, ``_mask``, ``_pooled``
============================  =========================================  ============================

The text encoder's transformer is its own graph so that an input longer than the model's limit is
still encoded in overlapping windows (:func:`mner.encoders.text.run_in_windows`) as in PyTorch; the
head is the model's own ``forward`` on those states (:attr:`WordBatch.token_states`), so nothing of
MAF is written twice. Processing (tokenizers, image transforms, the feature cache), the CRF's
Viterbi and marginals and the span building stay in Python, shared with the torch backend; the
CRF's constrained scores are saved beside the graphs (``crf.safetensors``).

The folder also holds the model's ``config.json``, the tokenizer files (``assets/``) and
``mner_export.json``: backend, quantization, opset, the versions that wrote it, and the sha256 of
the source checkpoint's weights file.

``--quantize int8``: ONNX Runtime's dynamic quantization (``quantize_dynamic``: int8 weights,
per output channel by default, activations quantized on the fly) of the transformer graphs' matrix
products (text and caption encoders). The head (small, and where the tags are decided) and a
convolutional image encoder (dynamic int8 convolutions have no fast CPU kernel) stay in fp32;
``mner_export.json`` lists what was quantized.

Few-shot models (MOUSING and its baselines) are not exported yet: their labels and prototypes come
with each support set, and this first part covers the taggers with a label set of their own.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import warnings
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from mner import __version__
from mner.backends import EXPORT_CONFIG, EXPORT_FORMAT, is_export_folder
from mner.encoders.features import VisualFeatures
from mner.encoders.tokenization import WordBatch
from mner.errors import MNERError, UsageError
from mner.models.checkpoint import (CONFIG_NAME, WEIGHTS_NAME, CheckpointError, atomic_folder, read_config,
                                    resolve_model_dir, save_state_dict)

__all__ = ["DEFAULT_OPSET", "INT8_GRAPHS", "INT8_GRAPH_CHOICES", "INT8_OP_TYPES", "QUANTIZATIONS", "export_checkpoint", "file_sha256",
           "head_inputs", "quantize_export", "require_onnx"]

logger = logging.getLogger(__name__)

#: The ONNX opset the graphs target (ONNX Runtime 1.18 and later run it).
DEFAULT_OPSET = 18
#: ``--quantize`` choices.
QUANTIZATIONS = ("int8",)
#: The operators dynamic int8 quantizes (matrix products; ``Attention`` where a graph has fused it).
INT8_OP_TYPES = ("MatMul", "Attention")
#: The operators a dynamically quantized graph holds in their place (how a quantized graph is told from one
#: that had nothing to quantize).
INT8_QUANTIZED_OPS = ("MatMulInteger", "DynamicQuantizeMatMul", "QAttention", "DynamicQuantizeLinear",
                      "MatMulIntegerToFloat")
#: The graphs ``--quantize int8`` quantizes: the transformers (see the module docstring).
INT8_GRAPHS = ("text_encoder", "caption_encoder")
#: The graphs ``--int8-graphs`` may name.
INT8_GRAPH_CHOICES = ("text_encoder", "caption_encoder", "image_encoder", "head")
CRF_NAME = "crf.safetensors"


def require_onnx() -> None:
    """Raise a one-line :class:`UsageError` unless the ``onnx`` extra is installed."""
    for name in ("onnx", "onnxruntime", "onnxscript"):
        try:
            __import__(name)
        except ImportError:
            raise UsageError(f"the ONNX Runtime backend needs the onnx extra ({name} is missing): "
                             "pip install 'mner[onnx]' (scripts/setup.sh installs it)") from None


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def head_inputs(views: tuple[str, ...]) -> list[str]:
    """The input names of ``head.onnx``, in order, for a model with visual ``views``."""
    names = ["token_states", "attention_mask", "word_starts", "word_ends", "word_mask", "casing"]
    for view in views:
        names += [f"{view}_tokens", f"{view}_mask", f"{view}_pooled"]
    return names


def head_outputs(match: bool) -> list[str]:
    """The output names of ``head.onnx``: the emissions, and the match probability of a model with one."""
    return ["emissions", "match_probability"] if match else ["emissions"]


# ---------------------------------------------------------------------------------- graphs
class _TextBackbone(nn.Module):
    """The text encoder's transformer: sub-token states of one window."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder._run(input_ids, attention_mask)


class _Caption(nn.Module):
    """The frozen caption encoder: masked sub-token states and the pooled vector."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.encoder({"input_ids": input_ids, "attention_mask": attention_mask})
        return feats.tokens, feats.pooled


class _Image(nn.Module):
    """The image encoder: region vectors and the pooled vector of a batch of transformed images."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.encoder(pixel_values)
        return feats.tokens, feats.pooled


class _Head(nn.Module):
    """The model's own ``forward`` from the text transformer's states (and the visual features the
    processor computes) to the emissions: the word pooling and casing of the text encoder, and for
    MAF the projections, interaction, matching, fusion gate and emission layer."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.views = tuple(model.views)

    def forward(self, token_states, attention_mask, word_starts, word_ends, word_mask, casing, *visual):
        from mner.processing.tagging import TaggingBatch
        from mner.processing.visual import VisualInputs

        # input_ids and replaced are not read when the states are given: the mask stands in for them
        words = WordBatch(attention_mask, attention_mask, word_starts, word_ends, word_mask, casing,
                          word_mask, token_states=token_states)
        features, present = {}, {}
        for k, view in enumerate(self.views):
            tokens, mask, pooled = visual[3 * k: 3 * k + 3]
            features[view] = VisualFeatures(tokens, mask, pooled)
            present[view] = mask.any(dim=1)
        inputs = VisualInputs(features, None, present) if self.views else None
        out = self.model(TaggingBatch([], words, None, inputs))
        if self.outputs_match:  # MAF's y^_m, an output of the graph as of the model's forward
            return out.emissions, out.match_probability
        return out.emissions

    @property
    def outputs_match(self) -> bool:
        return bool(getattr(self.model, "outputs_match", False))


def _export(module: nn.Module, args: tuple, path: Path, input_names: list[str], output_names: list[str],
            dynamic: tuple, opset: int) -> None:
    """One graph through ``torch.onnx.export`` (the ``torch.export``-based exporter), saved to ``path``
    with its weights inside (the graphs here are far below ONNX's 2 GB file limit)."""
    with warnings.catch_warnings(), _quiet_exporter():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module.eval(), args, dynamo=True, input_names=input_names,
                                    output_names=output_names, dynamic_shapes=dynamic, opset_version=opset,
                                    verbose=False, report=False)
    program.save(str(path), external_data=False)
    _check_dynamic(path, dynamic)


def _check_dynamic(path: Path, dynamic: tuple) -> None:
    """Refuse a graph whose input axes meant to be dynamic came out fixed: the exporter falls back
    to a static shape when the traced code specialises an axis, and such a graph would refuse every
    other batch size at run time."""
    import onnx

    flat: list[dict] = []
    for spec in dynamic:
        flat.extend(spec if isinstance(spec, tuple) else (spec,))
    graph = onnx.load(str(path), load_external_data=False).graph
    for value, spec in zip(graph.input, flat):
        dims = value.type.tensor_type.shape.dim
        fixed = [axis for axis in spec if dims[axis].HasField("dim_value")]
        if fixed:
            raise RuntimeError(f"{path.name}: input {value.name!r} has fixed axes {fixed} that should be dynamic "
                               "(the traced code specialised them); this is a bug of mner export")


class _quiet_exporter:
    """Silence the exporter's and the quantizer's chatter (they log at WARNING, the quantizer on the
    root logger)."""

    def __enter__(self):
        self._levels = {}
        for name in ("", "torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "torch.onnx._internal"):
            log = logging.getLogger(name)
            self._levels[name] = log.level
            log.setLevel(logging.ERROR)
        return self

    def __exit__(self, *exc):
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)


def _example_batch(model):
    """A real batch of two made-up tweets (with captions and images for the visual views) from the
    model's own processor: the example inputs the graphs are traced with. Lengths differ between
    the axes and none is 1, so that no dynamic axis is specialised to its example size."""
    from PIL import Image

    from mner.data.example import Example

    examples = [Example("export-1", ("Obama", "meets", "Merkel", "in", "Berlin", "today", "!"),
                        caption="two people shaking hands in front of flags"),
                Example("export-2", ("Paris", "at", "night"), caption="a city at night")]
    images = [Image.new("RGB", (40, 30), (200, 30, 40)), Image.new("RGB", (30, 40), (20, 90, 220))]
    processor = model.processor()
    return processor(examples, images=images if "pixels" in model.views else None)


def _quantize_graphs(folder: Path, graphs: dict[str, dict], names, per_channel: bool,
                     log: Callable[[str], None]) -> dict:
    """Dynamic int8 quantization, in place, of the graphs ``names`` of ``folder`` (those it has);
    returns the ``quantization`` entry of :data:`EXPORT_CONFIG`."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    import onnx

    done, unchanged = [], {}
    for name in names:
        if name not in graphs:
            continue
        log(f"quantize: {name} (dynamic int8, {'per channel' if per_channel else 'per tensor'})")
        path = folder / graphs[name]["file"]
        fp32 = path.with_suffix(".fp32.onnx")
        path.rename(fp32)
        with _quiet_exporter():
            quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8, per_channel=per_channel,
                             op_types_to_quantize=list(INT8_OP_TYPES))
        # a graph with nothing dynamic int8 covers (a convolutional image encoder: Conv is not among
        # INT8_OP_TYPES) comes out with no integer operator: it stays fp32 and is listed as such
        integer = sum(node.op_type in INT8_QUANTIZED_OPS for node in onnx.load(str(path), load_external_data=False).graph.node)
        if integer:
            fp32.unlink()
            done.append(name)
        else:
            path.unlink()
            fp32.rename(path)
            unchanged[name] = f"no {' or '.join(INT8_OP_TYPES)} operator that dynamic int8 quantizes; kept fp32"
            log(f"quantize: {name} has no {' or '.join(INT8_OP_TYPES)} operator; kept fp32")
    return {"method": "dynamic", "weights": "int8", "activations": "uint8 (dynamic)", "per_channel": per_channel,
            "op_types": list(INT8_OP_TYPES), "graphs": done, "fp32_graphs": [g for g in graphs if g not in done],
            "not_quantized": unchanged}


def quantize_export(source: str | Path, out: str | Path, *, per_channel: bool = True,
                    graphs: tuple[str, ...] = INT8_GRAPHS, log: Callable[[str], None] | None = None) -> Path:
    """An int8 copy of the fp32 export ``source`` in ``out``: the graphs ``graphs`` (those the export
    has) dynamically quantized, the others as they are; ``mner_export.json`` says which. Quantizing is
    ONNX to ONNX, so variants (per channel or per tensor, which graphs) need no new export from torch."""
    log = log or (lambda message: None)
    source, out = Path(source), Path(out)
    config = json.loads((source / EXPORT_CONFIG).read_text(encoding="utf-8"))
    if config.get("quantization"):
        raise UsageError(f"{source}: already quantized; quantize the fp32 export")
    unknown = sorted(set(graphs) - set(config["graphs"]))
    if unknown:
        raise UsageError(f"{source}: has no graph {', '.join(unknown)} (it has {', '.join(config['graphs'])})")
    if out.exists() and not (out.is_dir() and (is_export_folder(out) or not any(out.iterdir()))):
        raise UsageError(f"{out}: exists and is not an mner export; choose a new folder")
    with atomic_folder(out) as tmp:
        shutil.copytree(source, tmp, dirs_exist_ok=True)
        config["quantization"] = _quantize_graphs(tmp, config["graphs"], graphs, per_channel, log)
        for name in config["quantization"]["graphs"]:
            config["graphs"][name]["sha256"] = file_sha256(tmp / config["graphs"][name]["file"])
        (tmp / EXPORT_CONFIG).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return out


def export_checkpoint(checkpoint: str | Path, out: str | Path, *, quantize: str | None = None,
                      per_channel: bool = True, int8_graphs: tuple[str, ...] = INT8_GRAPHS,
                      opset: int = DEFAULT_OPSET, log: Callable[[str], None] | None = None) -> Path:
    """Export the model in ``checkpoint`` (a model folder or a training run) to the folder ``out``
    (see the module docstring); returns ``out``. ``quantize``: None (fp32) or ``"int8"``, applied to
    the graphs ``int8_graphs`` (default: both transformer encoders; those the model lacks are skipped,
    but one of them must be there).

    Refused with a one-line :class:`MNERError`: a few-shot model, an ``out`` that is the checkpoint
    itself or an existing folder that is not an export, a missing onnx extra."""
    from mner.models import MODELS
    from mner.models.tagger import CRFTagger

    log = log or (lambda message: None)
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise UsageError(f"--quantize {quantize!r}: choose {', '.join(QUANTIZATIONS)} (or leave it out for fp32)")
    folder = resolve_model_dir(checkpoint)
    model_type = read_config(folder)["model_type"]
    cls = MODELS.get(model_type)
    if cls is None:
        raise CheckpointError(f"{folder}: unknown model type {model_type!r}; this mner knows {sorted(MODELS)}")
    if not issubclass(cls, CRFTagger):
        raise MNERError(f"{folder}: a {model_type!r} few-shot model; mner export covers the models with a label "
                        "set of their own (maf: text-only, caption and pixels views) for now, not few-shot models")
    out = Path(out)
    if out.exists() and out.resolve() == folder.resolve() or folder.resolve() in out.resolve().parents:
        raise UsageError(f"--out {out}: inside the checkpoint {folder}; choose a folder of its own")
    if out.exists() and not (out.is_dir() and (is_export_folder(out) or not any(out.iterdir()))):
        raise UsageError(f"--out {out}: exists and is not an mner export; choose a new folder (an earlier "
                         "export is replaced)")
    unknown = sorted(set(int8_graphs) - set(INT8_GRAPH_CHOICES))
    if unknown:
        raise UsageError(f"--int8-graphs {', '.join(unknown)}: choose among {', '.join(INT8_GRAPH_CHOICES)}")
    require_onnx()
    import onnx
    import onnxruntime

    from mner.models import load_model

    model = load_model(folder, map_location="cpu").eval()
    views = tuple(model.views)
    present = ["text_encoder", *(f"{'image' if v == 'pixels' else v}_encoder" for v in views), "head"]
    if quantize == "int8" and not set(int8_graphs) & set(present):
        raise UsageError(f"{folder}: this model has no {' or '.join(int8_graphs)} graph to quantize "
                         f"(it has {', '.join(present)})")
    batch = _example_batch(model)
    words = batch.words
    text = model.text_encoder
    # the transformer takes at most max_length sub-tokens per call (longer inputs: windows); the head
    # takes the stitched states of any length
    B, W, S = torch.export.Dim("batch"), torch.export.Dim("words"), torch.export.Dim("sequence")
    S_window = torch.export.Dim("window", max=text.max_length)
    graphs: dict[str, dict] = {}
    with atomic_folder(out) as tmp, torch.no_grad():
        log("export: text encoder")
        limit = min(text.max_length, words.input_ids.shape[1])
        _export(_TextBackbone(text), (words.input_ids[:, :limit], words.attention_mask[:, :limit]),
                tmp / "text_encoder.onnx", ["input_ids", "attention_mask"], ["token_states"],
                ({0: B, 1: S_window}, {0: B, 1: S_window}), opset)
        graphs["text_encoder"] = {"file": "text_encoder.onnx"}
        visual_args: list[torch.Tensor] = []
        visual_dynamic: list[dict] = []
        for view in views:
            feats: VisualFeatures = batch.visual.features[view]
            R = torch.export.Dim(f"{view}_regions")
            visual_args += [feats.tokens, feats.mask, feats.pooled]
            visual_dynamic += [{0: B, 1: R}, {0: B, 1: R}, {0: B}]
        if "caption" in views:
            log("export: caption encoder")
            enc = model.caption_encoder
            ids = enc.tokenize(["two people shaking hands in front of flags", "a city at night"])
            Sc = torch.export.Dim("caption_sequence", max=enc.max_length)
            _export(_Caption(enc), (ids["input_ids"], ids["attention_mask"]), tmp / "caption_encoder.onnx",
                    ["input_ids", "attention_mask"], ["tokens", "pooled"], ({0: B, 1: Sc}, {0: B, 1: Sc}), opset)
            graphs["caption_encoder"] = {"file": "caption_encoder.onnx"}
        if "pixels" in views:
            log("export: image encoder")
            enc = model.image_encoder
            size = enc.image_size
            pixels = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
            _export(_Image(enc), (pixels,), tmp / "image_encoder.onnx", ["pixel_values"], ["tokens", "pooled"],
                    ({0: B},), opset)
            graphs["image_encoder"] = {"file": "image_encoder.onnx"}
        log("export: emission head")
        states = text(words).tokens  # (in windows when the example is longer than one call)
        head_args = (states, words.attention_mask, words.word_starts, words.word_ends, words.word_mask,
                     words.casing, *visual_args)
        head_dynamic = ({0: B, 1: S}, {0: B, 1: S}, {0: B, 1: W}, {0: B, 1: W}, {0: B, 1: W}, {0: B, 1: W})
        if visual_dynamic:  # the visual inputs are the head's *args: one nested entry
            head_dynamic += (tuple(visual_dynamic),)
        head = _Head(model)
        _export(head, head_args, tmp / "head.onnx", head_inputs(views), head_outputs(head.outputs_match),
                head_dynamic, opset)
        graphs["head"] = {"file": "head.onnx"}

        quantization = None
        if quantize == "int8":
            quantization = _quantize_graphs(tmp, graphs, int8_graphs, per_channel, log)
        for name, info in graphs.items():
            graph = onnx.load(str(tmp / info["file"]), load_external_data=False)
            info["inputs"] = [i.name for i in graph.graph.input]
            info["outputs"] = [o.name for o in graph.graph.output]
            info["sha256"] = file_sha256(tmp / info["file"])

        transitions, start, end = model.crf.scores()
        save_state_dict({"transitions": transitions, "start": start, "end": end}, tmp / CRF_NAME)
        shutil.copyfile(folder / CONFIG_NAME, tmp / CONFIG_NAME)
        _copy_tokenizers(model, tmp / "assets")
        settings = {"text_encoder": {"max_length": text.max_length, "window_size": text.window_size,
                                     "window_overlap": text.window_overlap}}
        if "caption" in views:
            enc = model.caption_encoder
            settings["caption_encoder"] = {"max_length": enc.max_length, "pooling": enc.config.pooling,
                                           "output_dim": enc.output_dim}
        if "pixels" in views:
            enc = model.image_encoder
            pre = enc.preprocessing
            settings["image_encoder"] = {"kind": enc.kind, "name": enc.config.name, "output_dim": enc.output_dim,
                                         "image_size": pre.image_size, "resize": pre.resize, "mean": list(pre.mean),
                                         "std": list(pre.std), "interpolation": pre.interpolation}
        config = {
            "format": EXPORT_FORMAT,
            "backend": "onnxruntime",
            "model_type": model_type,
            "variant": getattr(model.config, "variant", None),
            "views": list(views),
            "labels": list(model.label_set.labels),
            "quantization": quantization,
            "opset": opset,
            "exporter": "torch.onnx.export(dynamo=True)",
            "versions": {"mner": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
                         "onnxruntime": onnxruntime.__version__},
            "source": {"checkpoint": str(folder.resolve()), "weights": WEIGHTS_NAME,
                       "weights_sha256": file_sha256(folder / WEIGHTS_NAME),
                       "config_sha256": file_sha256(folder / CONFIG_NAME)},
            "graphs": graphs,
            "crf": CRF_NAME,
            **settings,
        }
        (tmp / EXPORT_CONFIG).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return out


def _copy_tokenizers(model, folder: Path) -> None:
    """The tokenizer files (and the transformers config) of the text and caption encoders."""
    text = folder / "text_encoder"
    text.mkdir(parents=True)
    model.text_encoder.tokenizer.tokenizer.save_pretrained(str(text))
    model.text_encoder.model.config.save_pretrained(str(text))
    if getattr(model, "caption_encoder", None) is not None:
        caption = folder / "caption_encoder"
        caption.mkdir(parents=True)
        model.caption_encoder.tokenizer.save_pretrained(str(caption))
        model.caption_encoder.model.config.save_pretrained(str(caption))

