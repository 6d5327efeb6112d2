"""``mner tag --engine ray`` on a local Ray (2 CPUs, no dashboard, no network): the same rows, errors
and counts as the local engine, and a run stopped after its first shard finished exactly once.

Ray is a test requirement (``mner[distributed]``, installed by scripts/setup.sh): without it this
module fails at import, it is not skipped."""

from __future__ import annotations

import json

import pytest
import ray

from batch_fixtures import make_model, output_and_errors, sample_rows, tag_options, write_inputs
from model_fixtures import one_thread, sample_paths  # noqa: F401  (fixtures)

from mner.batch import run_tag
from mner.batch.job import Collector

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module (starting one takes seconds); mner tag joins it."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning", log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("batch-ray")
    rows = sample_rows()
    return {"tmp": tmp, "model": make_model(tmp), "rows": rows, "files": write_inputs(tmp / "inputs", rows)}


def _inputs(setup):
    """The sample as JSONL (with captions) and the sample's own Twitter-format folder."""
    return [setup["files"]["jsonl"], sample_paths()["tweets"]]


def test_ray_engine_writes_the_local_engines_rows_errors_and_counts(setup, local_ray):
    tmp = setup["tmp"]
    local = run_tag(tag_options(setup["model"], _inputs(setup), tmp / "local"))
    distributed = run_tag(tag_options(setup["model"], _inputs(setup), tmp / "ray", engine="ray"))
    rows, errors = output_and_errors(tmp / "ray")
    want_rows, want_errors = output_and_errors(tmp / "local")
    assert len(rows) == 42 and rows == want_rows  # row by row: ids, entities, confidences, match probabilities
    assert errors == want_errors and [e["reason"] for e in errors] == ["image-missing"] * 2
    for key in ("read", "tagged", "failed", "dropped", "blanked", "failed_by_reason", "shards"):
        assert distributed[key] == local[key], key
    assert distributed["engine"] == "ray" and distributed["read"] == 44
    manifest = json.loads((tmp / "ray" / "_manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["runs"][-1]["engine"] == "ray"
    assert sorted(p.name for p in (tmp / "ray" / "data").iterdir()) == sorted(
        p.name for p in (tmp / "local" / "data").iterdir())


def test_a_ray_run_stopped_after_its_first_shard_finishes_exactly_once(setup, local_ray, monkeypatch, tmp_path):
    rows = [dict(r, id=f"{r['id']}-{k}") for k in range(2) for r in setup["rows"]]  # 44 rows, 9 shards
    inputs = write_inputs(tmp_path / "in", rows)["jsonl"]
    reference = tmp_path / "reference"
    run_tag(tag_options(setup["model"], inputs, reference))

    commit = Collector.commit

    def stop_after_one(self, shard, parts):
        commit(self, shard, parts)
        raise KeyboardInterrupt  # as Ctrl-C in the driver right after the first shard

    out = tmp_path / "stopped"
    monkeypatch.setattr(Collector, "commit", stop_after_one)
    with pytest.raises(KeyboardInterrupt):
        run_tag(tag_options(setup["model"], inputs, out, engine="ray"))
    monkeypatch.setattr(Collector, "commit", commit)
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["status"] == "stopped" and manifest["shards"]["done"] == 1

    summary = run_tag(tag_options(setup["model"], inputs, out, engine="ray"))
    assert summary["shards_skipped"] == 1 and summary["rows_this_run"] == 44 - 5
    got, errors = output_and_errors(out)
    want, want_errors = output_and_errors(reference)
    assert got == want and errors == want_errors and len({r["id"] for r in got}) == len(got) == 42
    assert summary["read"] == 44 and summary["tagged"] == 42 and summary["failed"] == 2
