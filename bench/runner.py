"""The one loop that runs benchmark cells, for both benchmark scripts (``maf_benchmark.py``,
``fewshot_benchmark.py``; issue 23, item 6): each script says which cells there are and how one
trains (a :class:`Plan` per cell), the runner does the rest the same way for both:

- a stored cell is skipped, unless ``--rerun-stale`` and it is stale (:func:`cells.stale_reasons`:
  another code version not shown to train alike, or another configuration); a re-run keeps the old
  result in the new cell's ``previous``;
- a run folder left by another code version is removed, not resumed (:func:`fresh_run_dir`);
- each finished cell is checked against the schema and stored (:class:`cells.Cell`), then the page
  (and the README block) is rebuilt (:func:`write_page`, :func:`replace_block`), so a table fills
  over several runs and machines;
- ``--max-cells`` stops after that many new cells; the output ends with one JSON line of figures.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import cells

__all__ = ["Plan", "final_line", "fresh_run_dir", "previous_of", "replace_block", "run_plans", "write_page"]


@dataclass
class Plan:
    """One cell a benchmark would run now: its name, where it is stored, the configuration it would
    train (None: not comparable), its run folder, a line saying what it does, and ``run``, which
    trains it and returns its records (a cell may store more than one: NNShot stores StructShot)."""

    name: str
    path: Path
    config: dict | None
    run_dir: Path | None
    run: Callable[[], list[dict]]
    describe: str = "training"


def previous_of(stored: dict, reasons: list[str]) -> dict:
    """What a re-run cell keeps of the stored cell it replaces."""
    prev = {k: stored.get(k) for k in ("git_commit", "code_fingerprint", "finished")}
    prev.update({"test_f1": stored["test"]["f1"], "dev_f1": stored["dev_f1"],
                 "torch_threads": stored.get("torch_threads"), "stale": reasons, "config": stored.get("config")})
    return prev


def fresh_run_dir(run_dir: Path, fingerprint: str) -> None:
    """A run folder left by another version of the code (or by a run that predates the marker) is
    removed: resuming it would mix two versions in one cell. Same version: it is resumed."""
    marker = run_dir / "code_fingerprint"
    if run_dir.exists() and (not marker.is_file() or marker.read_text().strip() != fingerprint):
        print(f"   {run_dir}: left by another code version, removed (not resumed)", flush=True)
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(fingerprint + "\n")


def run_plans(plans: Iterable[Plan], *, current: str, versions: cells.Versions, volatile: Iterable[str] = (),
              implied: dict | None = None, rerun_stale: bool = False, max_cells: int | None = None,
              after_cell: Callable[[], object] = lambda: None,
              version_of: Callable[[dict], str] | None = None) -> list[str]:
    """Run the plans' missing (or, with ``rerun_stale``, stale) cells; returns the names stored.
    ``current``: the fingerprint of the code this process imported; ``after_cell``: called after each
    stored cell (the page is rebuilt there); ``version_of``: how a log line names a cell's code;
    ``volatile`` and ``implied``: how configurations are compared (:func:`cells.comparable_config`)."""
    ran: list[str] = []
    volatile = tuple(volatile)
    for plan in plans:
        previous = None
        if plan.path.is_file():
            stored = cells.Cell.load(plan.path).to_dict()
            reasons = cells.stale_reasons(stored, current, versions, plan.config, volatile, implied)
            if not (rerun_stale and reasons):
                print(f"== {plan.name}: stored, skipped"
                      + (f" (stale: other {' and '.join(reasons)})" if reasons else ""))
                continue
            previous = previous_of(stored, reasons)
        if max_cells is not None and len(ran) >= max_cells:
            continue
        rerun = f", re-run of {version_of(previous) if version_of else previous.get('git_commit')}" if previous else ""
        print(f"== {plan.name}: {plan.describe}{rerun}", flush=True)
        if plan.run_dir is not None:
            fresh_run_dir(plan.run_dir, current)
        for record in plan.run():
            path = plan.path.with_name(f"{record['cell']}.json")
            if previous and record["cell"] == plan.name:
                record["previous"] = previous
            elif previous and path.is_file():   # a cell stored with it (StructShot with NNShot): its own old result
                record["previous"] = previous_of(cells.Cell.load(path).to_dict(), previous["stale"])
            cells.Cell.from_dict(record, str(path)).store(path)
            ran.append(record["cell"])
            print(f"== {record['cell']}: test F1 {100 * record['test']['f1']:.2f}", flush=True)
        after_cell()
    return ran


def write_page(path: Path, text: str) -> None:
    """Write a generated page."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def replace_block(path: Path, start: str, end: str, block: str) -> bool:
    """Replace the generated block between the ``start`` and ``end`` markers of ``path`` (the README)
    with ``block`` (which carries the markers); False where the file or its markers are not there."""
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if start not in text or end not in text:
        return False
    head, rest = text.split(start, 1)
    path.write_text(head + block + rest.split(end, 1)[1], encoding="utf-8")
    return True


def final_line(ran: list[str], key: str, figures: dict) -> str:
    """The benchmark's last output line: the cells run now and its figures."""
    return json.dumps({"ran": ran, key: figures})
