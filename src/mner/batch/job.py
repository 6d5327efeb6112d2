"""What a ``mner tag`` run and its engines share: the options (:class:`TagOptions`), the pipeline
each process loads (:func:`load_pipeline`, :func:`bound_pipeline`), the windows and their tagging
(:func:`tag_window`), and the collector that commits each shard when all of its windows are tagged
(:class:`Collector`). The run itself, which picks the engine, is :mod:`mner.batch.run`: the engines
import this module, and it imports no engine.

The unit of work is a *window*: ``batch_size`` rows of a shard. Its rows are prepared (parsed,
tokenized, images decoded: :func:`mner.batch.prepare.prepare_rows`) on the CPU side and its
taggable rows go through the model as one batch (:func:`tag_window`). By default a shard's rows
are cut into windows by length (``window_order="length"``: shortest first, ties in file order; a
row's length is its number of sub-tokens under the model's tokenizer,
:func:`mner.batch.prepare.row_lengths`), so that a batch pads its tweets to a similar length;
``"input"`` cuts consecutive rows. Either way the shard is written in file order, and windows
depend only on the shard, the batch size and the order (:class:`WindowPlan`), so both engines
run the model on exactly the same batches and write the same rows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from mner.batch.prepare import PrepareSettings, Prepared, describe_exception, failure, row_lengths
from mner.batch.shards import OutputFolder
from mner.batch.sources import Columns, InputWatch, Record, Shard, read_shard
from mner.data.images import DEFAULT_MAX_PIXELS
from mner.errors import MNERError

__all__ = ["ENGINES", "Outcome", "TagOptions", "WINDOW_ORDERS", "WindowPlan", "tag_window", "window_plan", "windows"]

ENGINES = ("local", "ray")
#: how a shard's rows are cut into model batches (see the module docstring)
WINDOW_ORDERS = ("length", "input")


@dataclass
class TagOptions:
    """Everything ``mner tag`` is told (see ``mner tag --help``)."""

    checkpoint: Path
    inputs: Sequence[Path]
    out: Path
    engine: str = "local"
    format: str = "parquet"
    batch_size: int = 32
    shard_size: int = 1000
    window_order: str = "length"        # "length": batches of rows of similar length; "input": consecutive rows
    columns: Columns = field(default_factory=Columns)
    image_root: Path | None = None
    image_policy: str = "error"
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    strict: bool = False
    max_errors: int | None = None       # stop once more rows than this could not be tagged in this run
    overwrite: bool = False
    workers: int | None = None          # local: worker processes (None: default_workers()); on the CPU each
                                        # holds a model replica, on a GPU they only decode images; 0: none
    threads: int | None = None          # torch threads of each replica worker (local, CPU: default cores //
                                        # workers), of the model's process (local, GPU) or of each actor (ray)
    device: str | None = None
    backend: str | None = None          # torch or onnxruntime (an export folder, mner export); None: detected
    ray_address: str | None = None
    concurrency: int | None = None      # ray: actors in the pool
    gpus_per_actor: float | None = None
    cpus_per_actor: float = 1.0
    progress: bool | None = None        # None: a bar when standard error is a terminal
    support: Path | None = None         # few-shot checkpoints: the support set file (its types are tagged)
    support_format: str = "auto"
    decoding: dict[str, Any] = field(default_factory=dict)  # few-shot decoding options (mner.fewshot.decoding)
    #: the support set as read once by the main process (its tweets and their images), which the
    #: workers and actors receive instead of reading the file again (filled by :func:`load_pipeline`)
    support_set: tuple[list, list | None] | None = None

    def output_options(self) -> dict[str, Any]:
        """The options that change what is written (compared on a restart)."""
        options = {"format": self.format, "shard_size": self.shard_size, "columns": self.columns.to_dict(),
                   "image_root": str(Path(self.image_root).resolve()) if self.image_root else None,
                   "image_policy": self.image_policy, "max_image_pixels": self.max_image_pixels}
        if self.support is not None:  # another support set tags other types: a restart must use the same
            import hashlib

            options["support"] = {"sha256": hashlib.sha256(Path(self.support).read_bytes()).hexdigest(),
                                  "format": self.support_format}
        if self.decoding:  # they change the tags
            options["decoding"] = dict(self.decoding)
        return options


@dataclass
class Outcome:
    """One tagged window: output rows, rows that failed, and per-reason counts."""

    rows: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    dropped: dict[str, int]
    blanked: dict[str, int]
    read: int


def windows(records: Sequence[Record], batch_size: int, order: str = "length",
            lengths: Sequence[int] | None = None) -> list[Sequence[Record]]:
    """The windows of a shard's ``records`` (see the module docstring): ``batch_size`` rows each, in
    length order (``order="length"``, shortest first by ``lengths``, ties in file order) or file
    order (``"input"``)."""
    if order not in WINDOW_ORDERS:
        raise MNERError(f"window order {order!r}: choose one of {', '.join(WINDOW_ORDERS)}")
    if order == "length":
        if lengths is None or len(lengths) != len(records):
            raise ValueError("length-ordered windows need one length per record")
        records = [records[i] for i in sorted(range(len(records)), key=lambda i: lengths[i])]  # stable: ties keep file order
    return [records[i:i + batch_size] for i in range(0, len(records), batch_size)] or [records]


@dataclass
class WindowPlan:
    """How a shard's rows are cut into windows (see the module docstring); picklable, made once per
    run (:func:`window_plan`) and used where the windows are cut: the main process (local engine) or
    the Ray tasks that read the shards. ``tokenizer``: the model's sub-word tokenizer, which
    measures the rows (:func:`mner.batch.prepare.row_lengths`)."""

    batch_size: int
    order: str = "length"
    columns: Columns = field(default_factory=Columns)
    tokenizer: Any = None

    def __call__(self, shard: Shard) -> list[Sequence[Record]]:
        """The windows of one shard, read from its file: what both engines tag."""
        records = read_shard(shard, self.columns)
        lengths = row_lengths(shard.format, records, self.columns, self.tokenizer) if self.order == "length" else None
        return windows(records, self.batch_size, self.order, lengths)


def window_plan(opts: TagOptions, pipe) -> WindowPlan:
    """The run's :class:`WindowPlan`, with the tokenizer of ``pipe``'s model (a few-shot pipeline's
    episode processor wraps the tagging processor that holds it)."""
    processor = getattr(pipe.processor, "tagging", pipe.processor)
    words = getattr(processor, "tokenizer", None)
    return WindowPlan(opts.batch_size, opts.window_order, opts.columns, getattr(words, "tokenizer", None))


def tag_window(pipeline, prepared: Prepared) -> Outcome:
    """Tag the prepared rows of one window with ``pipeline`` (one model batch).

    When the batch fails in a way nobody foresaw, each row is tagged alone: the rows that fail
    alone go to ``errors.jsonl`` as ``internal-error`` (with the exception's type and message), the
    others are tagged (alone, so a confidence may differ in its last digit from a batched run)."""
    from mner.batch.tagging import tag_batch

    failed = list(prepared.failed)
    try:
        rows = tag_batch(pipeline, prepared.rows) if prepared.rows else []
    except Exception:  # noqa: BLE001 - find the rows that fail; the others are tagged
        rows = []
        lines = prepared.lines or [None] * len(prepared.rows)
        for row, line in zip(prepared.rows, lines):
            try:
                rows += tag_batch(pipeline, [row])
            except Exception as err:  # noqa: BLE001 - recorded with the exception, the job goes on
                failed.append(failure(row.get("file"), row.get("row"), line, row.get("id"), "internal-error",
                                      describe_exception(err)))
        failed.sort(key=lambda f: f["row"] if isinstance(f.get("row"), int) else 0)
    return Outcome(rows, failed, dict(prepared.dropped), dict(prepared.blanked), prepared.read)


def _file_order(row: dict[str, Any]) -> int:
    """A written row's (or failure's) place in its shard: its row number in the file."""
    return row["row"] if isinstance(row.get("row"), int) else 0


class Collector:
    """Gathers the windows of each shard (in any order) and commits a shard once all are in."""

    def __init__(self, folder: OutputFolder, strict: bool, progress, batch_size: int, engine: str,
                 max_errors: int | None = None, watch: InputWatch | None = None):
        self.folder = folder
        self.strict = strict
        self.max_errors = max_errors
        self.watch = watch
        self.progress = progress
        self.batch_size = batch_size
        self.engine = engine
        self.open: dict[int, list[Outcome | None]] = {}
        self.rows_done = 0
        self.shards_done = 0
        self.failed = 0  # rows of this run that could not be tagged

    @staticmethod
    def _where(bad: dict[str, Any]) -> str:
        return f"{bad['file']}:{bad['line']}" if bad.get("line") is not None else f"{bad['file']} row {bad['row']}"

    def add(self, shard: Shard, window: int, n_windows: int, outcome: Outcome) -> None:
        if self.strict and outcome.failed:
            bad = outcome.failed[0]
            raise MNERError(f"{self._where(bad)}: {bad['reason']}: {bad['detail']} (--strict stops at the first row "
                            "that cannot be tagged; without it such rows go to errors.jsonl and the run goes on)")
        self.failed += len(outcome.failed)
        if self.max_errors is not None and self.failed > self.max_errors:
            bad = outcome.failed[-1]
            raise MNERError(f"stopped: {self.failed} rows of this run could not be tagged, more than --max-errors "
                            f"{self.max_errors}; the last: {self._where(bad)}: {bad['reason']}: {bad['detail']}. "
                            "The finished shards are kept (errors.jsonl lists their rows that could not be tagged): "
                            "fix the input or raise --max-errors, and run the same command again")
        parts = self.open.setdefault(shard.index, [None] * n_windows)
        parts[window] = outcome
        self.rows_done += outcome.read
        if self.progress is not None:
            self.progress.update(outcome.read)
        if all(p is not None for p in parts):
            del self.open[shard.index]
            self.commit(shard, parts)

    def commit(self, shard: Shard, parts: list[Outcome]) -> None:
        if self.watch is not None:  # a shard read from a file that changed is not committed
            self.watch.check(shard.path)
        rows = sorted((r for p in parts for r in p.rows), key=_file_order)  # windows may be cut by length
        failed = sorted((f for p in parts for f in p.failed), key=_file_order)
        counts: dict[str, Any] = {"read": sum(p.read for p in parts), "tagged": len(rows), "failed": len(failed)}
        by: dict[str, dict[str, int]] = {"failed": {}, "dropped": {}, "blanked": {}}
        for f in failed:
            by["failed"][f["reason"]] = by["failed"].get(f["reason"], 0) + 1
        for p in parts:
            for key in ("dropped", "blanked"):
                for reason, n in getattr(p, key).items():
                    by[key][reason] = by[key].get(reason, 0) + n
        counts["dropped"] = sum(by["dropped"].values())
        counts["blanked"] = sum(by["blanked"].values())
        if counts["read"] != counts["tagged"] + counts["failed"] + counts["dropped"] or counts["read"] != shard.count:
            raise RuntimeError(f"shard {shard.name}: {counts} do not add up to its {shard.count} rows")
        for key, value in by.items():
            counts[f"{key}_by_reason"] = value
        counts.update(batch_size=self.batch_size, engine=self.engine)
        self.folder.commit(shard, rows, failed, counts)
        self.shards_done += 1


def load_pipeline(opts: TagOptions, device: str | None = None):
    """The model of ``opts.checkpoint`` as a :class:`~mner.pipeline.Pipeline` that runs whole windows
    (``opts`` checked by :func:`check_task` first).

    A few-shot checkpoint is bound to the support set of ``opts.support``: the first call (the main
    process) reads the file and opens its images (relative ones inside ``--image-root``, default the
    support file's folder) and keeps them in ``opts.support_set``; the workers and actors, given
    ``opts``, use what it read (:func:`bound_pipeline`)."""
    from mner.pipeline import Pipeline

    device = device or opts.device
    if opts.support is None:   # check_task (run once, by run_tag) refused a few-shot model without one
        pipe = Pipeline.from_pretrained(opts.checkpoint, device=device, batch_size=opts.batch_size,
                                        backend=opts.backend)
        if getattr(pipe.model, "label_set", None) is None:
            raise MNERError(f"{opts.checkpoint}: a {pipe.model.model_type!r} model has no entity types of its own; "
                            "mner tag runs models that have")
        return pipe
    if opts.support_set is not None:
        return bound_pipeline(str(opts.checkpoint), opts.support_set, opts.decoding, opts.batch_size, device)
    from mner.data.images import ImageStore
    from mner.fewshot.pipeline import read_support

    root = opts.image_root if opts.image_root is not None else Path(opts.support).parent
    pipe = bound_pipeline(str(opts.checkpoint), (read_support(opts.support, opts.support_format), None),
                          opts.decoding, opts.batch_size, device, ImageStore(root, max_pixels=opts.max_image_pixels))
    opts.support_set = (pipe.support, pipe.support_images())
    return pipe


def bound_pipeline(path: str, support_set: tuple, decoding: dict, batch_size: int, device: str | None,
                   image_store=None):
    """The few-shot pipeline of the model in ``path`` bound to ``support_set`` (the support tweets
    and their opened images, as the main process read them; images None: opened from
    ``image_store``), with the few-shot ``decoding`` options: what the main process, the local
    workers and the Ray actors each build."""
    import torch

    from mner.fewshot.decoding import apply_decoding
    from mner.fewshot.pipeline import FewShotPipeline, load_fewshot_model

    model = load_fewshot_model(path, None, device)   # an export folder runs on ONNX Runtime
    device = "cpu" if getattr(model, "backend", "torch") != "torch" else (
        device or ("cuda" if torch.cuda.is_available() else "cpu"))
    apply_decoding(model, decoding or {})
    examples, images = support_set
    return FewShotPipeline(model, examples, batch_size, device, image_store, support_images=images)


def check_task(opts: TagOptions):
    """The task of ``opts.checkpoint`` and its model type, refusing in one line, before anything
    is read or written, a support set with a model of fixed types or none with a few-shot one."""
    from mner.tasks import checkpoint_task

    task, model_type = checkpoint_task(opts.checkpoint)
    task.check_support(opts.checkpoint, model_type, opts.support)
    if opts.decoding and not task.needs_support:
        name = next(iter(opts.decoding))
        raise MNERError(f"--{name.replace('_', '-')}: a decoding option of few-shot checkpoints; {opts.checkpoint} "
                        "is a model with a fixed set of entity types: leave it out")
    if task.needs_support:   # the backend of the few-shot pipelines the workers build: by what the folder is
        from mner.backends import resolve_backend

        resolve_backend(opts.checkpoint, opts.backend)   # a pairing that cannot run: one line
    return task, model_type


def prepare_settings(opts: TagOptions, pipe) -> PrepareSettings:
    pixels = "pixels" in pipe.views
    resize = None
    visual = getattr(pipe.processor, "visual", None)
    if pixels and visual is not None and getattr(visual, "image_encoder", None) is not None:
        t = visual.image_encoder.eval_transform()
        resize = (max(t.resize_to, t.image_size), t.interpolation)
    return PrepareSettings(columns=opts.columns, policy=opts.image_policy,
                           image_root=str(Path(opts.image_root).resolve()) if opts.image_root else None,
                           max_pixels=opts.max_image_pixels, pixels=pixels, resize=resize)


def cpu_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system tells it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_workers(replicas: bool = True) -> int:
    """Worker processes of the local engine. ``replicas`` (a CPU device): one per core, each
    running its own copy of the model, at most 4; otherwise (the model on a GPU, in the main
    process) image-decoding workers: one core is left to the main process, at most 4."""
    cores = cpu_cores()
    return min(4, cores) if replicas else max(0, min(4, cores - 1))
