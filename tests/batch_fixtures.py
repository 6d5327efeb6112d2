"""Shared helpers of the batch-tagging tests (``test_batch_tag.py``, ``test_batch_ray.py``): a tiny
random MAF that predicts some entities, the sample corpus written as JSONL / CSV / Parquet with
captions and image paths relative to the sample's image folder, and a run of ``mner tag``."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import torch

from model_fixtures import sample_paths, tiny_maf

__all__ = ["make_model", "sample_rows", "write_inputs", "tag_options", "output_and_errors"]


def make_model(folder: Path, seed_shift: float = 3.0) -> Path:
    """A tiny random MAF (image regions and captions) whose B-LOC emissions are raised by
    ``seed_shift``: it predicts entities with confidences that depend on the image and caption."""
    model, _ = tiny_maf(folder / "encoders")
    with torch.no_grad():
        model.emissions.bias[model.label_set.index("B-LOC")] += seed_shift
    return model.save_pretrained(folder / f"model-{seed_shift:g}")


def sample_rows() -> list[dict[str, Any]]:
    """The 22 tweets of the sample corpus as input rows: id, text, image (relative to the sample's
    image folder, s204's is missing there), caption (for the tweets of the caption file)."""
    from mner.data.captions import CaptionStore
    from mner.data.formats import read_file

    paths = sample_paths()
    captions = CaptionStore.from_file(paths["captions"])
    rows = []
    for split in ("train", "valid", "test"):
        for ex in read_file(paths["tweets"] / f"{split}.txt"):
            rows.append({"id": ex.id, "text": ex.text, "image": f"{ex.id}.jpg", "caption": captions.get(ex.id)})
    return rows


def write_inputs(folder: Path, rows: list[dict[str, Any]], stem: str = "tweets") -> dict[str, Path]:
    """``rows`` as ``stem``.jsonl, .csv and .parquet in ``folder``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    jsonl = folder / f"{stem}.jsonl"
    jsonl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    path_csv = folder / f"{stem}.csv"
    with open(path_csv, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "text", "image", "caption"])
        writer.writeheader()
        for r in rows:
            writer.writerow({k: ("" if r.get(k) is None else r[k]) for k in writer.fieldnames})
    parquet = folder / f"{stem}.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet, row_group_size=7)
    return {"jsonl": jsonl, "csv": path_csv, "parquet": parquet}


def tag_options(model: Path, inputs, out: Path, **kw):
    from mner.batch.job import TagOptions

    base = dict(checkpoint=model, inputs=list(inputs) if isinstance(inputs, (list, tuple)) else [inputs], out=out,
                image_root=sample_paths()["images"], batch_size=4, shard_size=5, workers=0, progress=False)
    base.update(kw)
    return TagOptions(**base)


def output_and_errors(out: Path) -> tuple[list[dict], list[dict]]:
    from mner.batch import read_output

    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text(encoding="utf-8").splitlines() if line]
    return read_output(out), errors
