"""``bench/cells.py``: what every benchmark cell records about the code it ran (issue 23, item 6).

The fingerprint of a checkout's files, the same fingerprint read back from git for a commit (so a
cell stored before its benchmark recorded one gets it), and the code versions a same-host re-run
shows to be one (:class:`cells.Versions`). Built on a throw-away git repository.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import cells  # noqa: E402

SPEC = cells.Fingerprint(("mner/models/", "mner/crf.py"), ("mner/models/skip.py",))


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


def _write(repo: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = repo / "src" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.fixture()
def repo(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q")
    _git(root, "config", "user.email", "t@example.org")
    _git(root, "config", "user.name", "t")
    _write(root, {"mner/models/a.py": "a = 1\n", "mner/models/skip.py": "s = 1\n", "mner/crf.py": "c = 1\n",
                  "mner/serve/app.py": "x = 1\n"})
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "one")
    return root


def test_the_fingerprint_covers_the_named_files_only(repo):
    before = cells.code_fingerprint(SPEC, repo / "src")
    _write(repo, {"mner/serve/app.py": "x = 2\n", "mner/models/skip.py": "s = 2\n", "mner/models/notes.txt": "n"})
    assert cells.code_fingerprint(SPEC, repo / "src") == before
    _write(repo, {"mner/models/a.py": "a = 2\n"})
    assert cells.code_fingerprint(SPEC, repo / "src") != before
    _write(repo, {"mner/models/a.py": "a = 1\n", "mner/models/new.py": ""})      # a new covered file counts
    assert cells.code_fingerprint(SPEC, repo / "src") != before


def test_a_commit_gives_the_fingerprint_of_its_checkout(repo):
    one = _git(repo, "rev-parse", "--short", "HEAD")
    at_one = cells.code_fingerprint(SPEC, repo / "src")
    _write(repo, {"mner/models/a.py": "a = 3\n"})
    _git(repo, "commit", "-q", "-am", "two")
    two = _git(repo, "rev-parse", "--short", "HEAD")
    assert cells.fingerprint_at(SPEC, one, repo) == at_one
    assert cells.fingerprint_at(SPEC, two, repo) == cells.code_fingerprint(SPEC, repo / "src") != at_one
    assert cells.changed_files(SPEC, one, two, repo) == ["mner/models/a.py"]
    assert cells.fingerprint_at(SPEC, "0" * 40, repo) is None                  # not in this repository
    assert cells.git_commit(repo) == two


def test_a_rerun_that_agrees_makes_two_versions_one(repo):
    one = _git(repo, "rev-parse", "--short", "HEAD")
    _write(repo, {"mner/crf.py": "c = 2\n"})
    _git(repo, "commit", "-q", "-am", "two")
    two = _git(repo, "rev-parse", "--short", "HEAD")
    _write(repo, {"mner/crf.py": "c = 3\n"})
    _git(repo, "commit", "-q", "-am", "three")
    three = _git(repo, "rev-parse", "--short", "HEAD")
    fp = {c: cells.fingerprint_at(SPEC, c, repo) for c in (one, two, three)}
    assert len(set(fp.values())) == 3

    class At(cells.Versions):  # the test repository instead of mner's
        def of(self, cell):
            return cell.get("code_fingerprint") or cells.fingerprint_at(self.spec, cell["git_commit"], repo)

    versions = At(SPEC)
    figures = {"dev_f1": 0.5, "test_f1": 0.25}
    versions.add_evidence([{"old": {"git_commit": one, **figures}, "new": {"git_commit": two, **figures}},
                           {"old": {"git_commit": two, **figures},                       # a re-run that moved
                            "new": {"git_commit": three, "dev_f1": 0.5, "test_f1": 0.2501}}])
    assert versions.same(fp[two], fp[one]) and versions.canonical(fp[two]) == fp[one]
    assert not versions.same(fp[three], fp[one])
    versions.add_evidence([{"old": {"code_fingerprint": fp[two], **figures}, "new": {"code_fingerprint": fp[three], **figures}}])
    assert versions.canonical(fp[three]) == fp[one]                          # the chain is followed
    assert versions.of({"code_fingerprint": "abc"}) == "abc" and not versions.same(None, None)


def test_the_maf_benchmark_hashes_as_before():
    """The fingerprint moved to ``bench/cells.py``: the MAF benchmark's definition is unchanged
    (its covered files, and the value a checkout gives)."""
    import maf_benchmark

    assert maf_benchmark.CODE == cells.Fingerprint(maf_benchmark.FINGERPRINTED, maf_benchmark.NOT_FINGERPRINTED)
    assert maf_benchmark.code_fingerprint() == cells.code_fingerprint(maf_benchmark.CODE)
    assert maf_benchmark.machine is cells.machine and maf_benchmark.git_commit is cells.git_commit


def test_a_few_shot_cell_records_its_code():
    import fewshot_benchmark

    spec = fewshot_benchmark.CODE
    for rel in ("mner/models/episodic.py", "mner/models/encoder_stack.py", "mner/models/mousing/modeling_mousing.py",
                "mner/fewshot/experiment.py", "mner/processing/episodes.py", "mner/data/episodes.py"):
        assert spec.covers(rel), rel
    for rel in ("mner/serve/app.py", "mner/batch/job.py", "mner/cli/fewshot.py", "mner/tagging/significance.py"):
        assert not spec.covers(rel), rel
