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
products (text and caption encoders). The head (small, and where the tags are decided) stays in
fp32. The image encoder, whose convolutions dynamic int8 does not cover (and has no fast CPU
kernel for), is quantized only when ``--int8-graphs`` names it, and then statically, from
calibration images the user points at (``--calibration``; :mod:`mner.backends.calibration`):
int8 weights and uint8 activations with ranges measured beforehand, as QDQ pairs. Asked without
calibration images, it is refused. ``mner_export.json`` lists what was quantized, each graph's
method, and the calibration images (names, one sha256 over them).

Few-shot models (MOUSING, ProtoMAF, ProtoBERT, NNShot / StructShot) have no label set of their own:
their classes come with each support set. Their export holds the per-tweet half of the model, the
part whose output depends on the tweet alone (:meth:`~mner.models.episodic.EpisodicTagger.encode`),
as ONNX graphs: ``text_encoder.onnx`` and the visual encoders as above, and ``encoder.onnx``, the
model's own ``encode`` from the text transformer's states (and, for MOUSING's ``graph.space:
frozen``, the sub-token ids its frozen text model reads) and the visual features to the word
representations (``rep0``, ``rep1``, ...; MOUSING: both views of its graph update). The episode
step, which builds the classes from the support's representations and scores the query
(prototypes, nearest neighbours, CRF), stays in PyTorch (:meth:`~mner.models.episodic.EpisodicTagger.head`):
its weights are saved as ``head.safetensors`` (everything but the encoders) beside the encoders'
assets, and it is small. The support set is encoded once by the exported graphs, then every batch
of queries (:class:`mner.fewshot.pipeline.FewShotPipeline`). MOUSING with ``intervention.mode:
random`` is refused: its test-time masks are drawn by PyTorch's generator, seeded per tweet, which a
graph cannot replay.
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
from PIL import Image
from torch import nn

from mner import __version__
from mner.backends import EXPORT_CONFIG, EXPORT_FORMAT, is_export_folder
from mner.backends.calibration import DEFAULT_CALIBRATION_SIZE, CalibrationSet, calibration_set
from mner.encoders.features import VisualFeatures
from mner.encoders.tokenization import WordBatch
from mner.errors import MNERError, UsageError
from mner.models.checkpoint import (CONFIG_NAME, WEIGHTS_NAME, CheckpointError, atomic_folder, read_config,
                                    resolve_model_dir, save_state_dict)

__all__ = ["DEFAULT_OPSET", "ENCODER_MODULES", "HEAD_WEIGHTS", "INT8_GRAPHS", "INT8_GRAPH_CHOICES", "INT8_OP_TYPES",
           "QUANTIZATIONS", "STATIC_INT8_GRAPHS", "encoder_inputs", "export_checkpoint", "file_sha256", "head_inputs",
           "quantize_export", "require_onnx"]

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
#: The graphs ``--int8-graphs`` may name (``encoder``: a few-shot model's per-tweet graph).
INT8_GRAPH_CHOICES = ("text_encoder", "caption_encoder", "image_encoder", "head", "encoder")
#: The graphs int8 quantizes statically, from calibration images (the others: dynamically).
STATIC_INT8_GRAPHS = ("image_encoder",)
CRF_NAME = "crf.safetensors"
#: A few-shot export's PyTorch weights of the episode step (all but the encoders' weights).
HEAD_WEIGHTS = "head.safetensors"
#: The modules of a few-shot model whose work the exported graphs do: their weights are not in
#: :data:`HEAD_WEIGHTS` (``graph_text``: MOUSING's frozen text model when it has no caption encoder).
ENCODER_MODULES = ("text_encoder", "caption_encoder", "image_encoder", "graph_text")


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


def encoder_inputs(views: tuple[str, ...]) -> list[str]:
    """The input names of a few-shot export's ``encoder.onnx`` (before the exporter drops those a
    model does not read), in order, for a model with visual ``views``."""
    return ["input_ids", *head_inputs(views)]


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

        # input_ids and replaced are not read when the states are given: the mask stands in for them
        words = WordBatch(attention_mask, attention_mask, word_starts, word_ends, word_mask, casing,
                          word_mask, token_states=token_states)
        out = self.model(TaggingBatch([], words, None, _visual_inputs(self.views, visual)))
        if self.outputs_match:  # MAF's y^_m, an output of the graph as of the model's forward
            return out.emissions, out.match_probability
        return out.emissions

    @property
    def outputs_match(self) -> bool:
        return bool(getattr(self.model, "outputs_match", False))


class _Encode(nn.Module):
    """A few-shot model's own ``encode`` (eval mode) from the text transformer's states (and the
    sub-token ids, for a frozen text model of MOUSING's graph) and the visual features to its
    per-word representations; the ``None`` entries of its tuple are left out (``nones``: where)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.views = tuple(model.views)
        self.nones: tuple[int, ...] = ()

    def forward(self, input_ids, token_states, attention_mask, word_starts, word_ends, word_mask, casing, *visual):
        from mner.processing.tagging import TaggingBatch

        words = WordBatch(input_ids, attention_mask, word_starts, word_ends, word_mask, casing, word_mask,
                          token_states=token_states)
        out = self.model.encode(TaggingBatch([], words, None, _visual_inputs(self.views, visual)), False)
        self.nones = tuple(i for i, o in enumerate(out) if o is None)
        return tuple(o for o in out if o is not None)


def _visual_inputs(views: tuple[str, ...], visual: tuple):
    """The processor's :class:`VisualInputs` from a graph's flat visual inputs (tokens, mask, pooled per view)."""
    from mner.processing.visual import VisualInputs

    if not views:
        return None
    features, present = {}, {}
    for k, view in enumerate(views):
        tokens, mask, pooled = visual[3 * k: 3 * k + 3]
        features[view] = VisualFeatures(tokens, mask, pooled)
        present[view] = mask.any(dim=1)
    return VisualInputs(features, None, present)


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
    _check_dynamic(path, dynamic, input_names)


def _check_dynamic(path: Path, dynamic: tuple, input_names: list[str]) -> None:
    """Refuse a graph whose input axes meant to be dynamic came out fixed: the exporter falls back
    to a static shape when the traced code specialises an axis, and such a graph would refuse every
    other batch size at run time. (An input the graph does not read is dropped by the exporter.)"""
    import onnx

    flat: list[dict] = []
    for spec in dynamic:
        flat.extend(spec if isinstance(spec, tuple) else (spec,))
    specs = dict(zip(input_names, flat))
    graph = onnx.load(str(path), load_external_data=False).graph
    for value in graph.input:
        spec = specs.get(value.name, {})
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
    from mner.data.example import Example

    examples = [Example("export-1", ("Obama", "meets", "Merkel", "in", "Berlin", "today", "!"),
                        caption="two people shaking hands in front of flags"),
                Example("export-2", ("Paris", "at", "night"), caption="a city at night")]
    images = [Image.new("RGB", (40, 30), (200, 30, 40)), Image.new("RGB", (30, 40), (20, 90, 220))]
    processor = model.processor()
    processor = getattr(processor, "tagging", processor)  # a few-shot model's: its tweets' processor
    return processor(examples, images=images if "pixels" in model.views else None)


def _calibration(names, calibration: str | Path | None, images: str | Path | None,
                 size: int) -> CalibrationSet | None:
    """The calibration images of the static int8 graphs among ``names``, found before any work is
    done; a static graph without them, or calibration images with none, is refused in one line."""
    static = [name for name in names if name in STATIC_INT8_GRAPHS]
    if static and calibration is None:
        raise UsageError(f"--int8-graphs {static[0]}: quantized statically, from calibration images: add "
                         "--calibration DIR (a folder of images) or --calibration DATA --calibration-images DIR "
                         "(e.g. the training split and its image folder)")
    if calibration is None:
        if images is not None:
            raise UsageError("--calibration-images: the image folder of --calibration DATA: add --calibration DATA")
        return None
    if not static:
        raise UsageError(f"--calibration: the images that calibrate {' and '.join(STATIC_INT8_GRAPHS)}: add "
                         f"--quantize int8 --int8-graphs ... {STATIC_INT8_GRAPHS[0]}")
    return calibration_set(calibration, images, size)


def _quantize_graphs(folder: Path, graphs: dict[str, dict], names, per_channel: bool, log: Callable[[str], None],
                     calibration: CalibrationSet | None = None,
                     transform: Callable[[Image.Image], torch.Tensor] | None = None) -> dict:
    """Int8 quantization, in place, of the graphs ``names`` of ``folder`` (those it has): dynamic, or
    static from ``calibration``'s images through ``transform`` for :data:`STATIC_INT8_GRAPHS`;
    returns the ``quantization`` entry of :data:`EXPORT_CONFIG`."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    import onnx

    from mner.backends.calibration import quantize_image_encoder

    done, unchanged, methods = [], {}, {}
    dynamic = static = None
    for name in names:
        if name not in graphs:
            continue
        path = folder / graphs[name]["file"]
        fp32 = path.with_suffix(".fp32.onnx")
        path.rename(fp32)
        if name in STATIC_INT8_GRAPHS:
            log(f"quantize: {name} (static int8, QDQ, calibrated on {len(calibration.files)} images)")
            with _quiet_exporter():
                static = quantize_image_encoder(fp32, path, calibration.pixels(transform), per_channel)
            static["calibration"] = calibration.record()
            fp32.unlink()
            done.append(name)
            methods[name] = "static"
            continue
        log(f"quantize: {name} (dynamic int8, {'per channel' if per_channel else 'per tensor'})")
        dynamic = {"activations": "uint8 (dynamic)", "op_types": list(INT8_OP_TYPES)}
        with _quiet_exporter():
            quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8, per_channel=per_channel,
                             op_types_to_quantize=list(INT8_OP_TYPES))
        # a graph with nothing dynamic int8 covers comes out with no integer operator: it stays fp32
        # and is listed as such
        integer = sum(node.op_type in INT8_QUANTIZED_OPS for node in onnx.load(str(path), load_external_data=False).graph.node)
        if integer:
            fp32.unlink()
            done.append(name)
            methods[name] = "dynamic"
        else:
            path.unlink()
            fp32.rename(path)
            unchanged[name] = f"no {' or '.join(INT8_OP_TYPES)} operator that dynamic int8 quantizes; kept fp32"
            log(f"quantize: {name} has no {' or '.join(INT8_OP_TYPES)} operator; kept fp32")
    return {"method": "+".join(m for m in ("dynamic", "static") if m in methods.values()) or "none",
            "methods": methods, "weights": "int8", "per_channel": per_channel, "graphs": done,
            "fp32_graphs": [g for g in graphs if g not in done], "not_quantized": unchanged,
            "dynamic": dynamic, "static": static}


def quantize_export(source: str | Path, out: str | Path, *, per_channel: bool = True,
                    graphs: tuple[str, ...] = INT8_GRAPHS, calibration: str | Path | None = None,
                    calibration_images: str | Path | None = None, calibration_size: int = DEFAULT_CALIBRATION_SIZE,
                    log: Callable[[str], None] | None = None) -> Path:
    """An int8 copy of the fp32 export ``source`` in ``out``: the graphs ``graphs`` (those the export
    has) quantized, the others as they are; ``mner_export.json`` says which and how. The image
    encoder is quantized statically, from ``calibration_size`` images of ``calibration`` (and
    ``calibration_images``; see :func:`mner.backends.calibration.calibration_set`) through the
    exported model's own image transform. Quantizing is ONNX to ONNX, so variants (per channel or per
    tensor, which graphs) need no new export from torch."""
    from mner.backends.onnx_runtime import load_exported

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
    calib = _calibration(graphs, calibration, calibration_images, calibration_size)
    # the exported pipeline's own image transform (what it applies before the image encoder graph)
    transform = load_exported(source, threads=1).image_encoder.eval_transform() if calib is not None else None
    with atomic_folder(out) as tmp:
        shutil.copytree(source, tmp, dirs_exist_ok=True)
        config["quantization"] = _quantize_graphs(tmp, config["graphs"], graphs, per_channel, log, calib, transform)
        for name in config["quantization"]["graphs"]:
            config["graphs"][name]["sha256"] = file_sha256(tmp / config["graphs"][name]["file"])
        (tmp / EXPORT_CONFIG).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return out


def export_checkpoint(checkpoint: str | Path, out: str | Path, *, quantize: str | None = None,
                      per_channel: bool = True, int8_graphs: tuple[str, ...] = INT8_GRAPHS,
                      calibration: str | Path | None = None, calibration_images: str | Path | None = None,
                      calibration_size: int = DEFAULT_CALIBRATION_SIZE, opset: int = DEFAULT_OPSET,
                      log: Callable[[str], None] | None = None) -> Path:
    """Export the model in ``checkpoint`` (a model folder or a training run) to the folder ``out``
    (see the module docstring); returns ``out``. ``quantize``: None (fp32) or ``"int8"``, applied to
    the graphs ``int8_graphs`` (default: both transformer encoders; those the model lacks are skipped,
    but one of them must be there); the image encoder statically, calibrated on ``calibration_size``
    images of ``calibration`` (see :func:`mner.backends.calibration.calibration_set`) through the
    model's own eval transform.

    Refused with a one-line :class:`MNERError`: a model of neither task, MOUSING with random test-time
    masks, an ``out`` that is the checkpoint itself or an existing folder that is not an export, a
    missing onnx extra, the image encoder in int8 without calibration images."""
    from mner.models import MODELS
    from mner.models.episodic import EpisodicTagger
    from mner.models.tagger import CRFTagger

    log = log or (lambda message: None)
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise UsageError(f"--quantize {quantize!r}: choose {', '.join(QUANTIZATIONS)} (or leave it out for fp32)")
    folder = resolve_model_dir(checkpoint)
    model_type = read_config(folder)["model_type"]
    cls = MODELS.get(model_type)
    if cls is None:
        raise CheckpointError(f"{folder}: unknown model type {model_type!r}; this mner knows {sorted(MODELS)}")
    episodic = issubclass(cls, EpisodicTagger)
    if not (issubclass(cls, CRFTagger) or episodic):
        raise MNERError(f"{folder}: a {model_type!r} model belongs to no task mner export knows")
    intervention = (read_config(folder).get("config") or {}).get("intervention") or {}
    if episodic and isinstance(intervention, dict) and intervention.get("mode") == "random":
        raise MNERError(f"{folder}: MOUSING with intervention.mode random draws its test-time masks with PyTorch's "
                        "generator (seeded per tweet), which an ONNX graph cannot replay; run it with the torch backend")
    out = Path(out)
    if out.exists() and out.resolve() == folder.resolve() or folder.resolve() in out.resolve().parents:
        raise UsageError(f"--out {out}: inside the checkpoint {folder}; choose a folder of its own")
    if out.exists() and not (out.is_dir() and (is_export_folder(out) or not any(out.iterdir()))):
        raise UsageError(f"--out {out}: exists and is not an mner export; choose a new folder (an earlier "
                         "export is replaced)")
    unknown = sorted(set(int8_graphs) - set(INT8_GRAPH_CHOICES))
    if unknown:
        raise UsageError(f"--int8-graphs {', '.join(unknown)}: choose among {', '.join(INT8_GRAPH_CHOICES)}")
    calib = _calibration(int8_graphs if quantize else (), calibration, calibration_images, calibration_size)
    require_onnx()
    import onnx
    import onnxruntime

    from mner.models import load_model

    model = load_model(folder, map_location="cpu").eval()
    views = tuple(model.views)
    present = ["text_encoder", *(f"{'image' if v == 'pixels' else v}_encoder" for v in views),
               "encoder" if episodic else "head"]
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
        states = text(words).tokens  # (in windows when the example is longer than one call)
        head_args = (states, words.attention_mask, words.word_starts, words.word_ends, words.word_mask,
                     words.casing, *visual_args)
        head_dynamic = ({0: B, 1: S}, {0: B, 1: S}, {0: B, 1: W}, {0: B, 1: W}, {0: B, 1: W}, {0: B, 1: W})
        if visual_dynamic:  # the visual inputs are the head's *args: one nested entry
            head_dynamic += (tuple(visual_dynamic),)
        encoding = None
        if episodic:
            log("export: per-tweet encoder (the episode step stays in PyTorch)")
            encode = _Encode(model)
            reps = encode(words.input_ids, *head_args)
            # the sub-token ids are read by MOUSING's frozen text model, which takes one window: the
            # sequence axis is traced up to the transformer's limit (the runtime refuses longer ids)
            S_enc = torch.export.Dim("encoder_sequence", max=text.max_length)
            enc_dynamic = ({0: B, 1: S_enc}, {0: B, 1: S_enc}, {0: B, 1: S_enc}, *head_dynamic[2:])
            _export(encode, (words.input_ids, *head_args), tmp / "encoder.onnx", encoder_inputs(views),
                    [f"rep{i}" for i in range(len(reps))], enc_dynamic, opset)
            graphs["encoder"] = {"file": "encoder.onnx"}
            encoding = {"outputs": len(reps) + len(encode.nones), "none": list(encode.nones),
                        "max_length": text.max_length}
        else:
            log("export: emission head")
            head = _Head(model)
            _export(head, head_args, tmp / "head.onnx", head_inputs(views), head_outputs(head.outputs_match),
                    head_dynamic, opset)
            graphs["head"] = {"file": "head.onnx"}

        quantization = None
        if quantize == "int8":
            transform = model.image_encoder.eval_transform() if "pixels" in views else None
            quantization = _quantize_graphs(tmp, graphs, int8_graphs, per_channel, log, calib, transform)
        for name, info in graphs.items():
            graph = onnx.load(str(tmp / info["file"]), load_external_data=False)
            info["inputs"] = [i.name for i in graph.graph.input]
            info["outputs"] = [o.name for o in graph.graph.output]
            info["sha256"] = file_sha256(tmp / info["file"])

        shutil.copyfile(folder / CONFIG_NAME, tmp / CONFIG_NAME)
        if episodic:  # the episode step's weights, and the encoders' assets to build the model around them
            save_state_dict({k: v for k, v in model.state_dict().items() if k.split(".", 1)[0] not in ENCODER_MODULES},
                            tmp / HEAD_WEIGHTS)
            model._save_assets(tmp / "assets")
        else:
            transitions, start, end = model.crf.scores()
            save_state_dict({"transitions": transitions, "start": start, "end": end}, tmp / CRF_NAME)
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
            "task": "episodic" if episodic else "supervised",
            "views": list(views),
            "labels": None if episodic else list(model.label_set.labels),
            "quantization": quantization,
            "opset": opset,
            "exporter": "torch.onnx.export(dynamo=True)",
            "versions": {"mner": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
                         "onnxruntime": onnxruntime.__version__},
            "source": {"checkpoint": str(folder.resolve()), "weights": WEIGHTS_NAME,
                       "weights_sha256": file_sha256(folder / WEIGHTS_NAME),
                       "config_sha256": file_sha256(folder / CONFIG_NAME)},
            "graphs": graphs,
            **({"head_weights": HEAD_WEIGHTS, "encoding": encoding, "scheme": model.scheme} if episodic
               else {"crf": CRF_NAME}),
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

