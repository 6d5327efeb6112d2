"""``mner export CHECKPOINT --out DIR [--quantize int8 [--int8-graphs ... image_encoder --calibration DATA]]``:
the model's forward pass up to the emissions as ONNX graphs for the onnxruntime backend
(:mod:`mner.backends.onnx_export`; static int8 of the image encoder: :mod:`mner.backends.calibration`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from mner.backends.calibration import DEFAULT_CALIBRATION_SIZE
    from mner.backends.onnx_export import DEFAULT_OPSET, INT8_GRAPH_CHOICES, QUANTIZATIONS
    from mner.cli.data import positive_int

    p = sub.add_parser(
        "export", help="export a trained tagger to ONNX (optionally int8) for the onnxruntime backend",
        description="Write the model in CHECKPOINT (a model folder or a training run) to DIR as ONNX graphs: "
                    "the text encoder, the caption or image encoder of its visual view, and the emission head "
                    "(CRF decoding and span building stay in mner). DIR also holds the tokenizer files, the "
                    "CRF scores and mner_export.json (backend, quantization, opset, sha256 of the checkpoint's "
                    "weights). mner predict DIR (and Pipeline.from_pretrained(DIR)) run it with ONNX Runtime. "
                    "A few-shot checkpoint's per-tweet encoder is exported the same way and its episode step "
                    "(prototypes, CRF) kept in PyTorch: mner predict DIR --support FILE runs it.")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--out", type=Path, required=True, help="the export folder (new, or an earlier export: replaced)")
    p.add_argument("--quantize", default=None, choices=QUANTIZATIONS,
                   help="int8: dynamic int8 weights of the transformer graphs (ONNX Runtime quantize_dynamic); "
                        "default: fp32")
    p.add_argument("--int8-graphs", nargs="+", default=None, choices=INT8_GRAPH_CHOICES, metavar="GRAPH",
                   help="with --quantize int8: the graphs to quantize (default: text_encoder caption_encoder; "
                        f"choices: {', '.join(INT8_GRAPH_CHOICES)}); image_encoder is quantized statically "
                        "(ONNX Runtime quantize_static, QDQ) and needs --calibration; another graph with no MatMul "
                        "or Attention operator stays fp32, and mner_export.json says so; see "
                        "docs/benchmarks/inference.md for what each costs in F1")
    p.add_argument("--per-tensor", action="store_true",
                   help="with --quantize int8: one scale per weight matrix instead of one per output channel")
    p.add_argument("--calibration", type=Path, default=None, metavar="DATA",
                   help="with --int8-graphs ... image_encoder: the images its static int8 is calibrated on: a "
                        "folder of images, or a data file (or a corpus folder: its train split) whose tweets' "
                        "images are in --calibration-images DIR; files are read only there")
    p.add_argument("--calibration-images", type=Path, default=None, metavar="DIR",
                   help="the image folder of a --calibration data file or corpus folder")
    p.add_argument("--calibration-size", type=positive_int, default=DEFAULT_CALIBRATION_SIZE, metavar="N",
                   help=f"calibration images taken, spread evenly over the list (default {DEFAULT_CALIBRATION_SIZE})")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from mner.backends import EXPORT_CONFIG
    from mner.backends.onnx_export import INT8_GRAPHS, export_checkpoint
    from mner.errors import UsageError

    if (args.per_tensor or args.int8_graphs or args.calibration) and args.quantize is None:
        raise UsageError("--per-tensor, --int8-graphs and --calibration are settings of --quantize int8: add "
                         "--quantize int8")
    out = export_checkpoint(args.checkpoint, args.out, quantize=args.quantize, per_channel=not args.per_tensor,
                            int8_graphs=tuple(args.int8_graphs or INT8_GRAPHS), calibration=args.calibration,
                            calibration_images=args.calibration_images, calibration_size=args.calibration_size,
                            opset=args.opset, log=lambda m: print(m, file=sys.stderr, flush=True))
    config = json.loads((out / EXPORT_CONFIG).read_text(encoding="utf-8"))
    print(json.dumps({"export": str(out), "model_type": config["model_type"], "views": config["views"],
                      "quantization": (config["quantization"] or {}).get("weights", "fp32"),
                      "graphs": sorted(config["graphs"]), "opset": config["opset"],
                      "source_weights_sha256": config["source"]["weights_sha256"]}))
    return 0
